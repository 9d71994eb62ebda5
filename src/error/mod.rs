//! The crate's one error type, and the data each failure carries.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

pub(crate) mod assertion;
pub(crate) mod call;
pub(crate) mod discovery;
pub(crate) mod oauth;
pub(crate) mod problem;
pub(crate) mod unexpected;

pub use assertion::AssertionError;
pub use call::CallError;
pub use discovery::DiscoveryError;
pub use oauth::{ErrorCode, OAuthError, RetryAfter};
pub use problem::ResponseProblem;
pub use unexpected::UnexpectedResponse;

/// Everything that can go wrong, from building a request to reading the token.
///
/// Display text says what happened and what to do, and never holds a secret: not the client
/// secret, not an assertion, and not a byte of a successful (2xx) response body, which may hold
/// a token. Use [`Error::is_retryable`] to decide whether to try again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint URL was rejected at construction.
    #[error("invalid token endpoint url: {reason}")]
    InvalidTokenUrl {
        /// Why the URL was rejected.
        reason: &'static str,
    },

    /// A request parameter was rejected when the request was built.
    #[error("invalid token request parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name (never its value, which may be a credential).
        name: String,
        /// Why the parameter was rejected.
        reason: &'static str,
    },

    /// The server answered with an OAuth error response (RFC 6749 §5.2).
    #[error(transparent)]
    OAuth(OAuthError),

    /// The server answered with a status and body that are not an OAuth response, such as a
    /// gateway's HTML error page or a rate limit.
    #[error(transparent)]
    UnexpectedResponse(Box<UnexpectedResponse>),

    /// The server answered with a success status but the body is not a usable token response.
    #[error(
        "the token endpoint answered http {status} but the response is unusable: {problem}; check that the token url points at the token endpoint"
    )]
    InvalidResponse {
        /// The HTTP status of the response.
        status: StatusCode,
        /// What is wrong with it.
        problem: ResponseProblem,
    },

    /// The response body exceeded the configured limit and was not parsed.
    #[error(
        "the token endpoint's response body exceeds the {limit}-byte limit; check the token url, or raise the limit if the server really sends bodies this large"
    )]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The token endpoint answered with a redirect, which is never followed: following it would
    /// hand the client's credentials to another URL. Or the caller's HTTP client followed one
    /// by itself (`followed`), and the response, token included, came from elsewhere: it is
    /// discarded.
    #[error("{}", redirect_message(*status, location.as_deref(), *followed))]
    Redirect {
        /// The HTTP status: the 3xx, or when `followed`, the status of the response from the
        /// final location.
        status: StatusCode,
        /// The `Location` header, or when `followed` the final URL, sanitized and with any
        /// query shown as `?…`, if there was one.
        location: Option<String>,
        /// Whether the HTTP client followed the redirect by itself, sending the request (the
        /// credentials included) to `location`.
        followed: bool,
    },

    /// A signing key was rejected at construction, or cannot be used as asked.
    #[error("the signing key was rejected: {reason}")]
    InvalidKey {
        /// Why the key was rejected (never the key itself).
        reason: &'static str,
    },

    /// A JWT (a client assertion or a DPoP proof) could not be signed.
    #[error(
        "could not sign the jwt: the signer failed; check the key or the signing service (see the source error)"
    )]
    Signing {
        /// The signer's own error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The client's [`AssertionSource`](crate::auth::AssertionSource) gave no assertion that can be
    /// sent: the file is unreadable, not a JWT, or expired, or the callback failed. Found
    /// before the request went out.
    #[error("no usable client assertion for this attempt")]
    ClientAssertion(#[source] AssertionError),

    /// Discovering the authorization server's metadata failed (RFC 8414, OpenID Connect
    /// Discovery).
    #[error(transparent)]
    Discovery(Box<DiscoveryError>),

    /// The token endpoint issued a token that was already due for refresh when it arrived:
    /// its lifetime is no longer than the cache's refresh lead, or ran out in transit. The
    /// token went to the caller whose fetch brought it; a [`TokenCache`](crate::cache::TokenCache)
    /// counts it as a failure and backs off before it asks again.
    #[error(
        "the token endpoint issued a token that lives {}s and was due for refresh on arrival, so the next request waits for a back-off; have the server issue longer-lived tokens, or lower the cache policy's refresh margin",
        lifetime.as_secs()
    )]
    TokenDueOnArrival {
        /// The token's lifetime, as the server gave it (or the cache's default).
        lifetime: Duration,
    },

    /// No answer came from the token endpoint within the cache's
    /// [`fetch_timeout`](crate::CachePolicy::fetch_timeout): a
    /// [`TokenCache`](crate::cache::TokenCache) counts it as a failure and backs off, and every
    /// caller that waited for the fetch gets this error at once.
    #[error(
        "no answer from the token endpoint within the fetch timeout of {}s, so the request backs off; the server may be slow or unreachable: retry later, or raise the cache policy's fetch timeout",
        timeout.as_secs_f64()
    )]
    FetchTimedOut {
        /// The fetch timeout that passed.
        timeout: Duration,
    },

    /// The time an attempt was made at is before 1970, so its JWTs' `iat` and `exp` cannot be
    /// written: the clock that gave it is wrong.
    #[error(
        "the attempt's time is before the unix epoch (1970), so no jwt can be dated: check the clock that gave it"
    )]
    ClockBeforeUnixEpoch,

    /// A response was handed to [`TokenFetch::handle_response`](crate::fetch::TokenFetch::handle_response)
    /// when no attempt awaited one: the fetch's steps were taken out of order.
    #[error(
        "a response was handed in but no attempt awaits one: build each attempt with TokenFetch::http_request before sending it, and hand in each response once"
    )]
    NoAttemptAwaitingResponse,

    /// A DPoP proof was asked for a URI without a scheme and an authority: the proof's `htu`
    /// must be the request's absolute URI (RFC 9449 §4.2).
    #[error(
        "a dpop proof needs the request's absolute uri (RFC 9449 §4.2), with a scheme and a host: pass the full url of the request"
    )]
    UriNotAbsolute,

    /// The access token has characters an HTTP header cannot carry, so it cannot be sent in
    /// `Authorization`: the server issued a token this client cannot use.
    #[error(
        "the access token has characters an http header cannot carry, so it cannot be sent: the authorization server issued an unusable token"
    )]
    TokenNotHeaderSafe,

    /// The authorization server issued a DPoP-bound token (`token_type` `DPoP`) to a client
    /// without a DPoP key, so it cannot be presented: no proof can be signed for it.
    #[error(
        "the token is DPoP-bound but the client has no DPoP key to prove it: give the client its key (ClientCredentials::with_dpop, feature `jwt`)"
    )]
    DpopKeyMissing,

    /// The request could not be sent or the response could not be read.
    #[error("the http exchange with the authorization server failed: {kind}")]
    Transport {
        /// What kind of failure it was.
        kind: TransportKind,
        /// The HTTP client's own error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// The text of [`Error::Redirect`].
fn redirect_message(status: StatusCode, location: Option<&str>, followed: bool) -> String {
    let location = location.unwrap_or("an unspecified location");
    if followed {
        format!(
            "the http client followed a redirect from the token endpoint to {location} (answering http {status}) and sent the request there, credentials included; its response was discarded: build the client with `redirect(Policy::none())` or use `recommended_client()`, configure the final token url, and consider rotating the client's credentials"
        )
    } else {
        format!(
            "the token endpoint answered http {status} redirecting to {location}; redirects are not followed because they would send the credentials elsewhere: configure the final token url instead"
        )
    }
}

impl Error {
    /// The most bytes of any text from the server (an `error_description`, a header, a
    /// challenge's parameter) that an error keeps.
    pub const MAX_SERVER_TEXT_LEN: usize = crate::sanitize::MAX_SERVER_TEXT_LEN;

    /// Whether trying the same request again, later, can succeed.
    ///
    /// True for:
    ///
    /// - transport failures other than TLS ([`TransportKind::Tls`]: a certificate or handshake
    ///   refusal stays refused);
    /// - unexpected responses and discovery failures with HTTP 408, 429 or 5xx;
    /// - OAuth errors with HTTP 408, 429 or 5xx, whatever their code, and OAuth errors coded
    ///   `temporarily_unavailable` or `server_error` (RFC 6749 §5.2, §4.1.2.1) or
    ///   `use_dpop_nonce` (RFC 9449 §8: retry with the nonce) under any status;
    /// - [`Error::TokenDueOnArrival`]: the next token may live longer;
    /// - [`Error::FetchTimedOut`]: the server may answer the next fetch.
    ///
    /// False for everything else: every other OAuth error (the server has decided, and the same
    /// request gets the same answer), redirects, unusable responses, bodies over the limit, and
    /// every error of building a request or of misuse.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::OAuth(e) => {
                *e.code() == ErrorCode::UseDpopNonce
                    || is_retryable_status(e.status())
                    || matches!(
                        e.code().as_str(),
                        "temporarily_unavailable" | "server_error"
                    )
            }
            Self::UnexpectedResponse(e) => is_retryable_status(e.status()),
            Self::Discovery(e) => e.status().is_some_and(is_retryable_status),
            Self::Transport { kind, .. } => *kind != TransportKind::Tls,
            // The next token may live longer; the back-off keeps the asking rare.
            Self::TokenDueOnArrival { .. } => true,
            Self::FetchTimedOut { .. } => true,
            // The platform may yet renew the file; a missing file or a bad one stays bad.
            Self::ClientAssertion(e) => match e {
                AssertionError::Unreadable { source, .. } => !matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ),
                AssertionError::Expired { .. } | AssertionError::Callback(_) => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether no answer came in time: a transport timeout ([`TransportKind::Timeout`]: the
    /// HTTP client's, or an adapter's `timeout`), or a token source's fetch that outlived its
    /// [`fetch_timeout`](crate::CachePolicy::fetch_timeout) ([`Error::FetchTimedOut`]).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::FetchTimedOut { .. }
                | Self::Transport {
                    kind: TransportKind::Timeout,
                    ..
                }
        )
    }

    /// Whether the token endpoint refused the client's credentials: an `invalid_client` error
    /// (RFC 6749 §5.2), or any 401 or 403 from the token endpoint, with an OAuth error of
    /// another code or with a body that is not OAuth at all (some servers answer a failed client
    /// authentication with an empty 403). Retrying with the same credentials will not help: the
    /// secret, key or certificate is wrong, revoked or expired, or the client is not registered.
    ///
    /// A refusal of a client assertion's time ([`is_refusal_about_time`](crate::fetch::is_refusal_about_time))
    /// is a refusal of credentials too, which the attempt loop retries once on the corrected
    /// time before it reaches the caller.
    #[must_use]
    pub fn is_credential_refusal(&self) -> bool {
        let refusing_status = |status: StatusCode| matches!(status.as_u16(), 401 | 403);
        match self {
            Self::OAuth(e) => *e.code() == ErrorCode::InvalidClient || refusing_status(e.status()),
            Self::UnexpectedResponse(e) => refusing_status(e.status()),
            _ => false,
        }
    }

    /// The HTTP status of the response this error came from, if there was one.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::OAuth(e) => Some(e.status()),
            Self::UnexpectedResponse(e) => Some(e.status()),
            Self::InvalidResponse { status, .. } | Self::Redirect { status, .. } => Some(*status),
            Self::Discovery(e) => e.status(),
            _ => None,
        }
    }

    /// The OAuth error, if the server sent one.
    #[must_use]
    pub fn oauth(&self) -> Option<&OAuthError> {
        match self {
            Self::OAuth(e) => Some(e),
            _ => None,
        }
    }

    /// The nonce to retry with, when the token endpoint refused the DPoP proof for want of one:
    /// the OAuth error `use_dpop_nonce` with a `DPoP-Nonce` header (RFC 9449 §8).
    ///
    /// This is the core's retry step: build a new [`Attempt`](crate::Attempt) with this nonce
    /// (and fresh time and entropy), send once more, and do not retry a second time on the same
    /// error. Adapters do this, and keep the nonce for the server's next request (see
    /// [`DpopNonces`](crate::dpop::DpopNonces)).
    #[must_use]
    pub fn dpop_retry_nonce(&self) -> Option<&str> {
        match self {
            Self::OAuth(e) if *e.code() == ErrorCode::UseDpopNonce => e.dpop_nonce(),
            _ => None,
        }
    }

    /// A signing failure, from the signer's error.
    pub(crate) fn signing(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Signing {
            source: source.into(),
        }
    }

    /// How long the server asked the client to wait (`Retry-After`), if it did.
    #[must_use]
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::OAuth(e) => e.retry_after(),
            Self::UnexpectedResponse(e) => e.retry_after(),
            _ => None,
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// The kinds of transport failure an adapter reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// The connection could not be made (refused, unreachable, DNS).
    Connect,
    /// A timeout expired before the response was complete.
    Timeout,
    /// The connection failed after it was made (reset, closed mid-body).
    Io,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// Another failure of the HTTP client.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => {
                "the connection could not be made; check the token url and that the server is up"
            }
            Self::Timeout => "the request timed out; the server may be overloaded, retry later",
            Self::Io => "the connection failed mid-exchange; retry",
            Self::Tls => "tls failed; check the server's certificate and the client's tls setup",
            Self::Other => "the http client or the random source failed; see the source error",
        })
    }
}

impl From<AssertionError> for Error {
    fn from(error: AssertionError) -> Self {
        Self::ClientAssertion(error)
    }
}

impl From<DiscoveryError> for Error {
    fn from(error: DiscoveryError) -> Self {
        Self::Discovery(Box::new(error))
    }
}

#[cfg(test)]
mod tests;
