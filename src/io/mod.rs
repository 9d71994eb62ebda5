//! The IO layer: one file per adapter (reqwest, hyper), the token source, and here what they
//! share: the one clock read and the random bytes of each attempt, the deadline of an exchange,
//! and the process's DPoP nonce store. Everything in this layer only translates types and does
//! IO; the decisions are the core's.

use std::time::SystemTime;
#[cfg(feature = "reqwest-blocking")]
use std::time::{Duration, Instant};

use crate::attempt::DpopNonces;
use crate::error::discovery::DiscoveryError;
use crate::error::{Error, TransportKind};

#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub(crate) mod source;

/// The latest DPoP nonce of each server, for every adapter in the process: a nonce learnt by
/// one request serves the next, whichever adapter sends it.
pub(crate) static DPOP_NONCES: DpopNonces = DpopNonces::new();

/// The time of an attempt, read once, just before it is built and sent: its JWTs' `iat` and
/// the token's `sent_at`.
#[allow(clippy::disallowed_methods)] // An adapter does the IO, so it reads the clock for the core.
pub(crate) fn send_time() -> SystemTime {
    SystemTime::now()
}

/// 32 bytes from the operating system's random source, for the `jti` of an attempt's JWTs.
pub(crate) fn entropy() -> Result<[u8; 32], Error> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).map_err(|error| Error::Transport {
        kind: TransportKind::Other,
        source: Box::new(error),
    })?;
    Ok(bytes)
}

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

/// The clock of the blocking adapter's deadlines.
#[cfg(feature = "reqwest-blocking")]
#[allow(clippy::disallowed_methods)] // The blocking adapter bounds its IO in time, so it reads the clock.
fn monotonic_now() -> Instant {
    Instant::now()
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
