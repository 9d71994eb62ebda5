//! What the HTTP client adapters share: the timeout of an exchange, the classification of an
//! error chain, and the blocking adapter's one-poll driver and deadline.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;
#[cfg(feature = "reqwest-blocking")]
use std::time::Instant;

use crate::error::discovery::DiscoveryError;
use crate::error::{Error, TransportKind};
#[cfg(feature = "reqwest-blocking")]
use crate::io::environment::monotonic_now;

/// The sound default for the `timeout` of every adapter's `fetch_token` and `fetch_metadata`:
/// 30 seconds for the whole exchange, from connecting to the last byte of the last attempt's
/// body. A token endpoint that has not answered by then is down for the caller's purposes.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `exchange` within `timeout`, as the async adapters bound a whole exchange (both
/// attempts); the time is up as [`TransportKind::Timeout`].
pub(crate) async fn within<T>(
    timeout: Duration,
    exchange: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    // tokio saturates a deadline too far to represent: `Duration::MAX` is no timeout.
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|elapsed| Error::Transport {
            kind: TransportKind::Timeout,
            source: Box::new(elapsed),
        })?
}

/// An error and its sources, looking inside `io::Error`s too: an `io::Error`'s `source()` skips
/// the error it wraps, and HTTP clients wrap rustls's `io::Error` in another one.
pub(crate) fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// Whether an `io::Error` of `kind` is in the chain of `error`.
#[cfg(feature = "hyper")]
pub(crate) fn has_io_kind(error: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
    })
}

/// Whether a connect failure is a TLS failure. rustls (through tokio-rustls, as reqwest and
/// hyper-rustls use it) reports a refused handshake or certificate as an `io::Error` of kind
/// `InvalidData` wrapping the rustls error; nothing else on the connect path does.
#[cfg(feature = "reqwest")]
pub(crate) fn is_tls(error: &(dyn StdError + 'static)) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some()
        })
    })
}

/// Drives a future whose every await is on a ready future to its end, by polling it once: the
/// blocking adapter runs the core's one async loop ([`crate::fetch::fetch_token`]) this way,
/// its transport doing the blocking IO inside `send` and returning `std::future::ready`. So no
/// runtime is needed, and the blocking and async adapters cannot drift apart. A future that is
/// still pending after its first poll (nothing in the loop waits, unless a client's
/// `AssertionSource::from_fn` callback does) is a typed error, never a panic nor a hang.
#[cfg(feature = "reqwest-blocking")]
pub(crate) fn run_ready<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(Error::Transport {
            kind: TransportKind::Other,
            source: Box::new(NotReady),
        }),
    }
}

/// The source of the error of a blocking exchange that did not finish on its first poll.
#[cfg(feature = "reqwest-blocking")]
#[derive(Debug, thiserror::Error)]
#[error(
    "the blocking exchange waited for something that was not ready: under the blocking adapter an assertion source's callback must resolve at once; otherwise report this as a bug"
)]
pub(crate) struct NotReady;

/// A metadata body over its limit is the discovery error, which names the right limit to raise.
pub(crate) fn metadata_error(error: Error) -> Error {
    match error {
        Error::BodyTooLarge { limit } => DiscoveryError::BodyTooLarge { limit }.into(),
        other => other,
    }
}

/// When a whole exchange must be over: connecting, the response head and every read of the
/// body, of every attempt. The async adapters get this from their runtime's timers; the blocking
/// one hands what is left of it to each request, as its total timeout.
#[cfg(feature = "reqwest-blocking")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    /// `None` when the timeout is too long to be represented: no deadline.
    at: Option<Instant>,
    timeout: Duration,
}

#[cfg(feature = "reqwest-blocking")]
impl Deadline {
    /// The deadline `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        Self {
            at: monotonic_now().checked_add(timeout),
            timeout,
        }
    }

    /// The time left, or [`TransportKind::Timeout`] if there is none.
    pub(crate) fn remaining(&self) -> Result<Option<Duration>, Error> {
        let Some(at) = self.at else {
            return Ok(None);
        };
        match at.checked_duration_since(monotonic_now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(Error::Transport {
                kind: TransportKind::Timeout,
                source: Box::new(DeadlinePassed(self.timeout)),
            }),
        }
    }
}

/// The source of the timeout of an exchange whose deadline passed between two of its steps.
#[cfg(feature = "reqwest-blocking")]
#[derive(Debug, thiserror::Error)]
#[error("the exchange did not finish within its timeout of {0:?}")]
pub(crate) struct DeadlinePassed(Duration);

#[cfg(all(test, feature = "reqwest-blocking"))]
mod tests {
    use super::*;

    #[test]
    fn a_ready_future_runs_and_a_pending_one_is_a_typed_error() {
        assert_eq!(run_ready(std::future::ready(Ok(7))).ok(), Some(7));
        let error = run_ready(std::future::pending::<Result<(), Error>>()).unwrap_err();
        assert!(matches!(
            error,
            Error::Transport {
                kind: TransportKind::Other,
                ..
            }
        ));
    }

    #[test]
    fn tls_is_an_invalid_data_io_error_with_a_source() {
        use std::io;
        let tls = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert!(is_tls(&tls));
        let bare = io::Error::from(io::ErrorKind::InvalidData);
        assert!(!is_tls(&bare));
        let wrapped = io::Error::other(tls);
        assert!(is_tls(&wrapped));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(!is_tls(&refused));
    }

    #[test]
    fn a_deadline_has_time_left_until_it_passes() {
        let deadline = Deadline::after(Duration::from_secs(3600));
        let left = deadline.remaining().unwrap().unwrap();
        assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3000));
        let passed = Deadline::after(Duration::ZERO).remaining().unwrap_err();
        assert!(matches!(
            passed,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ));
        assert_eq!(
            Deadline::after(Duration::MAX).remaining().ok(),
            Some(None),
            "too far to represent is no deadline"
        );
    }
}
