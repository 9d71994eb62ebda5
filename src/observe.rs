//! What the crate tells a `tracing` subscriber (feature `tracing`): the span of each token
//! fetch and the events at the token source's and the middleware's decisions, every one under
//! the target [`TARGET`], with the names the crate docs list ("Tracing").
//!
//! Every span and event of the crate is made here, by plain functions that compile to nothing
//! without the feature, so the callers carry no `#[cfg]`. No function takes a secret: the fields
//! are the client id, the token endpoint's host and path (never its query, which may hold
//! anything), the authentication method's name, counts, statuses, OAuth error codes (sanitized
//! when parsed) and [`Error`]'s Display, which never holds a secret.
//!
//! This is a core-level module: it reads no clock (the fetch span's duration comes from the
//! transport's clock, through the caller) and imports nothing from `io/`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::error::Error;
use crate::request::TokenRequest;
use crate::token::Token;

/// The target of every span and event of the crate.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) const TARGET: &str = "client_credentials";

/// What one run of the attempt loop tells its span, besides its result.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FetchRecord {
    /// How many attempts were built.
    pub(crate) attempts: u8,
    /// The status of the last response, if one came.
    pub(crate) status: Option<StatusCode>,
}

/// Runs `attempts`, the attempt loop of one token fetch for `request`, inside the span
/// `fetch_token`, and records its outcome when it ends; `now` is the transport's clock, read at
/// the start and at the end for `duration_ms` (and only with the feature).
///
/// A fetch dropped before it ends (cancelled, or timed out by its caller) records the outcome
/// `cancelled`.
pub(crate) async fn fetch<F>(
    request: &TokenRequest,
    now: impl Fn() -> SystemTime,
    attempts: F,
) -> Result<Token, Error>
where
    F: Future<Output = (Result<Token, Error>, FetchRecord)>,
{
    #[cfg(feature = "tracing")]
    {
        use tracing::Instrument as _;

        let client = request.client();
        let uri = client.token_url().as_uri();
        let span = tracing::info_span!(
            target: TARGET,
            "fetch_token",
            token_endpoint.host = uri.host().unwrap_or_default(),
            token_endpoint.path = uri.path(),
            client_id = client.client_id(),
            auth_method = client.auth_method().as_str(),
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            http.status = tracing::field::Empty,
            oauth.error = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = now();
        let mut cancelled = Cancelled(Some(span.clone()));
        let (result, record) = attempts.instrument(span.clone()).await;
        cancelled.0 = None;
        span.record("attempts", record.attempts);
        span.record("outcome", fetch_outcome(&result));
        if let Some(status) = record.status {
            span.record("http.status", status.as_u16());
        }
        if let Err(error) = &result
            && let Some(oauth) = error.oauth()
        {
            span.record("oauth.error", oauth.code().as_str());
        }
        span.record("duration_ms", millis(now().duration_since(started)));
        result
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (request, now);
        attempts.await.0
    }
}

/// Marks the fetch span `cancelled` if the fetch is dropped before it ends.
#[cfg(feature = "tracing")]
struct Cancelled(Option<tracing::Span>);

#[cfg(feature = "tracing")]
impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some(span) = self.0.take() {
            span.record("outcome", "cancelled");
        }
    }
}

/// A span's milliseconds: zero for a clock that went backwards, saturated past `u64`.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn millis(elapsed: Result<Duration, std::time::SystemTimeError>) -> u64 {
    elapsed.map_or(0, |elapsed| {
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The `outcome` field of the fetch span: one stable word per kind of result.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn fetch_outcome(result: &Result<Token, Error>) -> &'static str {
    match result {
        Ok(_) => "token",
        Err(Error::OAuth(_)) => "oauth_error",
        Err(Error::UnexpectedResponse(_)) => "unexpected_response",
        Err(Error::InvalidResponse { .. }) => "invalid_response",
        Err(Error::BodyTooLarge { .. }) => "body_too_large",
        Err(Error::Redirect { .. }) => "redirect",
        Err(Error::Transport { .. }) => "transport_error",
        Err(Error::Signing { .. } | Error::InvalidKey { .. }) => "signing_error",
        Err(_) => "error",
    }
}

// The token source's events. The source exists only with feature `token-source` (`io/`, which
// every adapter enables), hence the `allow(dead_code)` on each of them without it.

/// Event `refresh_ahead` (DEBUG): the token of `request` fell due for refresh while still
/// valid, and a refresh ahead of its expiry starts; the token keeps being served meanwhile.
#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
pub(crate) fn refresh_ahead(request: &TokenRequest) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        name: "refresh_ahead",
        target: TARGET,
        client_id = request.client().client_id(),
        "token due for refresh: refreshing ahead of its expiry, the valid token served meanwhile"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = request;
}

/// Event `refresh_failed` (WARN): a refresh ahead of expiry failed with `error`, and the
/// cached token keeps being served while it is valid (the source backs off before it tries
/// again).
#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
pub(crate) fn refresh_failed(request: &TokenRequest, error: &Error) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "refresh_failed",
        target: TARGET,
        client_id = request.client().client_id(),
        retryable = error.is_retryable(),
        error = %error,
        "token refresh failed: the cached token is served while it is valid, and the source backs off"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (request, error);
}

/// Event `back_off_started` (WARN): a fetch for a caller without a valid token failed with
/// `error`; callers fail fast with it until the source's back-off is over.
#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
pub(crate) fn back_off_started(request: &TokenRequest, error: &Error) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "back_off_started",
        target: TARGET,
        client_id = request.client().client_id(),
        retryable = error.is_retryable(),
        error = %error,
        "token fetch failed: callers fail fast with this error until the back-off is over"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (request, error);
}

/// Event `back_off` (DEBUG): a caller failed fast, without a request, with the last fetch's
/// failure, `remaining()` before the back-off is over (asked only with the feature: it reads
/// the caller's clock).
#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
pub(crate) fn back_off(request: &TokenRequest, remaining: impl FnOnce() -> Duration) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        name: "back_off",
        target: TARGET,
        client_id = request.client().client_id(),
        remaining_ms = millis(Ok(remaining())),
        "backing off after a failed fetch: the caller fails fast with its error"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (request, remaining);
}

/// Event `invalidated` (DEBUG): the caller invalidated a token an API refused; `dropped` says
/// whether it was the cached one (else it had already been replaced).
#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
pub(crate) fn invalidated(request: &TokenRequest, dropped: bool) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        name: "invalidated",
        target: TARGET,
        client_id = request.client().client_id(),
        dropped,
        "token invalidated by the caller"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (request, dropped);
}

/// Event `forced_refresh` (DEBUG): the caller made the cached token due for refresh;
/// `had_token` says whether there was one.
#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
pub(crate) fn forced_refresh(request: &TokenRequest, had_token: bool) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        name: "forced_refresh",
        target: TARGET,
        client_id = request.client().client_id(),
        had_token,
        "token refresh forced by the caller"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (request, had_token);
}

/// Event `call_retried` (DEBUG), for the authorized-call middleware: the API refused a call
/// for `reason` (`invalid_token`: its token; `use_dpop_nonce`: its DPoP proof lacked the
/// server's nonce) and the call is sent once more, to the host and path of `uri` (its query is
/// never shown).
#[cfg_attr(
    not(any(feature = "tower", feature = "reqwest-middleware")),
    allow(dead_code)
)]
pub(crate) fn call_retried(reason: &'static str, method: &http::Method, uri: &http::Uri) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        name: "call_retried",
        target: TARGET,
        reason,
        http.method = method.as_str(),
        url.host = uri.host().unwrap_or_default(),
        url.path = uri.path(),
        "api call refused: sending it once more"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (reason, method, uri);
}

/// Event `call_not_replayed` (WARN), for the authorized-call middleware: the API refused a
/// call for `reason` (as [`call_retried`]) but the call is not sent again, for `why`
/// (`method_not_idempotent`, `body_not_replayable`, `already_retried`, `retries_off`), so the
/// refusal goes to the caller.
#[cfg_attr(
    not(any(feature = "tower", feature = "reqwest-middleware")),
    allow(dead_code)
)]
pub(crate) fn call_not_replayed(
    reason: &'static str,
    why: &'static str,
    method: &http::Method,
    uri: &http::Uri,
) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "call_not_replayed",
        target: TARGET,
        reason,
        why,
        http.method = method.as_str(),
        url.host = uri.host().unwrap_or_default(),
        url.path = uri.path(),
        "api call refused and not sent again: the refusal goes to the caller"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (reason, why, method, uri);
}

/// Event `call_token_failed` (WARN), for the authorized-call middleware: no token could be had
/// for a call, which fails with `error` without being sent.
#[cfg_attr(
    not(any(feature = "tower", feature = "reqwest-middleware")),
    allow(dead_code)
)]
pub(crate) fn call_token_failed(error: &Error) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "call_token_failed",
        target: TARGET,
        retryable = error.is_retryable(),
        error = %error,
        "no token for the api call: it fails without being sent"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = error;
}

/// Event `store_failed` (WARN), for the shared cache: a call to the shared store of the entry
/// `key` (a digest, never a secret) failed or timed out, so this process fetches directly.
#[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
pub(crate) fn store_failed(key: &str, error: &(dyn std::error::Error + 'static)) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "store_failed",
        target: TARGET,
        key,
        error,
        "the shared token store failed: fetching directly"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, error);
}

/// Event `store_not_shared` (WARN), for the shared cache: a source was given a store under
/// `namespace`, but its request's credential has no identity another process could compute (an
/// unnamed assertion source, a signer without a public key, a mutual TLS client without its
/// certificate named), so its tokens are not shared.
#[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
pub(crate) fn store_not_shared(namespace: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "store_not_shared",
        target: TARGET,
        namespace,
        "the token source's credential cannot be named across processes, so its tokens are not shared through the store: name it (AssertionSource::with_identity, ClientCredentials::with_certificate)"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = namespace;
}

/// Event `store_hit` (DEBUG), for the shared cache: a first-level miss or due refresh was
/// answered by the fresh entry `key` (a digest, never a secret), with no request to the token
/// endpoint.
#[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
pub(crate) fn store_hit(key: &str) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        name: "store_hit",
        target: TARGET,
        key,
        "the shared token store had a fresh token: no request to the token endpoint"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = key;
}

/// Event `store_entry_refused` (WARN), for the shared cache: the entry `key` did not open
/// (tampered, sealed by another key, or another format), so it is ignored and replaced.
#[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
pub(crate) fn store_entry_refused(key: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "store_entry_refused",
        target: TARGET,
        key,
        "a shared token entry did not open (tampered, another key, or another format): ignored, to be replaced"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = key;
}

/// Event `store_wait_expired` (WARN), for the shared cache: another process held the lease of
/// the entry `key` for longer than this process waits (`waited`), without storing a token, so
/// this process fetches directly.
#[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
pub(crate) fn store_wait_expired(key: &str, waited: Duration) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        name: "store_wait_expired",
        target: TARGET,
        key,
        waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        "another process holds the token request's lease and has not stored a token: fetching directly"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, waited);
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::util::SubscriberInitExt as _;

    use super::*;
    use crate::test_support::{at, at_ms, request_at};

    /// What a fmt subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The text `run` makes a fmt subscriber on this thread write, spans' fields included.
    fn captured(run: impl FnOnce()) -> String {
        // As in `tests/io/observe.rs`: a second dispatcher alive for the whole run, so that a
        // callsite another test's thread hits first is not cached "never" for this one.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let captured = Captured::default();
        let guard = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .finish()
            .set_default();
        run();
        drop(guard);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    /// A request whose token URL has a query, which must never be shown.
    fn request() -> TokenRequest {
        request_at(
            "https://as.example.com/oauth/token?tenant=SECRET-QUERY",
            "the-client",
            "the-secret",
        )
    }

    /// Polls a future once.
    fn poll_once<F: Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn the_fetch_span_records_its_outcome_and_the_transports_duration() {
        let request = request();
        let clock = Mutex::new(vec![at_ms(4_250), at_ms(1_000)]); // read from the end
        let text = captured(|| {
            let attempts = std::future::ready((
                Err(Error::BodyTooLarge { limit: 9 }),
                FetchRecord {
                    attempts: 1,
                    status: Some(StatusCode::OK),
                },
            ));
            let now = || clock.lock().unwrap().pop().unwrap();
            let result = poll_once(fetch(&request, now, attempts)).unwrap();
            assert!(matches!(result, Err(Error::BodyTooLarge { limit: 9 })));
        });
        assert!(
            text.contains(
                r#"fetch_token{token_endpoint.host="as.example.com" token_endpoint.path="/oauth/token" client_id="the-client" auth_method="client_secret_basic" attempts=1 outcome="body_too_large" http.status=200 duration_ms=3250}"#
            ),
            "{text}"
        );
        assert!(!text.contains("SECRET-QUERY"), "{text}");
        assert!(!text.contains("the-secret"), "{text}");
    }

    #[test]
    fn a_fetch_dropped_before_it_ends_is_cancelled() {
        let request = request();
        let text = captured(|| {
            let never = std::future::pending::<(Result<Token, Error>, FetchRecord)>();
            assert!(poll_once(fetch(&request, || at_ms(0), never)).is_none());
        });
        assert!(text.contains(r#"outcome="cancelled""#), "{text}");
        assert!(!text.contains("duration_ms"), "{text}");
    }

    #[test]
    fn the_middleware_events_show_host_and_path_never_the_query() {
        let uri: http::Uri = "https://api.example.com/v1/things?api_key=SECRET-QUERY"
            .parse()
            .unwrap();
        let text = captured(|| {
            call_retried("invalid_token", &http::Method::GET, &uri);
            call_not_replayed(
                "use_dpop_nonce",
                "body_not_replayable",
                &http::Method::POST,
                &uri,
            );
            call_token_failed(&Error::BodyTooLarge { limit: 9 });
        });
        for shown in [
            r#"DEBUG client_credentials: api call refused: sending it once more reason="invalid_token" http.method="GET" url.host="api.example.com" url.path="/v1/things""#,
            r#"WARN client_credentials: api call refused and not sent again: the refusal goes to the caller reason="use_dpop_nonce" why="body_not_replayable" http.method="POST""#,
            "WARN client_credentials: no token for the api call: it fails without being sent retryable=false error=the token endpoint's response body exceeds the 9-byte limit",
        ] {
            assert!(text.contains(shown), "no {shown:?} in {text}");
        }
        assert!(!text.contains("SECRET-QUERY"), "{text}");
    }

    #[test]
    fn a_clock_going_backwards_is_zero_milliseconds() {
        let (later, earlier) = (at(10), at(9));
        assert_eq!(millis(earlier.duration_since(later)), 0);
        assert_eq!(millis(later.duration_since(earlier)), 1000);
        assert_eq!(millis(Ok(Duration::MAX)), u64::MAX);
    }

    #[test]
    fn outcomes_have_stable_names() {
        assert_eq!(
            fetch_outcome(&Err(Error::BodyTooLarge { limit: 1 })),
            "body_too_large"
        );
        assert_eq!(
            fetch_outcome(&Err(Error::Transport {
                kind: crate::error::TransportKind::Io,
                source: "reset".into(),
            })),
            "transport_error"
        );
        assert_eq!(fetch_outcome(&Err(Error::ClockBeforeUnixEpoch)), "error");
    }
}
