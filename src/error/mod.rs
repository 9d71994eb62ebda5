//! The crate's one error type, and the data each failure carries.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::{Map, Value};

use crate::challenge::Challenge;

pub(crate) mod discovery;
use discovery::DiscoveryError;

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
    OAuth(Box<OAuthError>),

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

    /// Discovering the authorization server's metadata failed (RFC 8414, OpenID Connect
    /// Discovery).
    #[error(transparent)]
    Discovery(Box<DiscoveryError>),

    /// The token endpoint issued a token that was already due for refresh when it arrived:
    /// its lifetime is no longer than the cache's refresh lead, or ran out in transit. The
    /// token went to the caller whose fetch brought it; a [`TokenCache`](crate::TokenCache)
    /// counts it as a failure and backs off before it asks again.
    #[error(
        "the token endpoint issued a token that lives {}s and was due for refresh on arrival, so the next request waits for a back-off; have the server issue longer-lived tokens, or lower the cache policy's refresh margin",
        lifetime.as_secs()
    )]
    TokenDueOnArrival {
        /// The token's lifetime, as the server gave it (or the cache's default).
        lifetime: Duration,
    },

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
    /// Whether trying the same request again, later, can succeed.
    ///
    /// True for transport failures other than TLS, for HTTP 408, 429 and 5xx, and for the OAuth
    /// error `use_dpop_nonce` (RFC 9449 §8: retry with the nonce). False for every other OAuth
    /// error: the server has decided, and the same request gets the same answer.
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
    /// [`DpopNonces`](crate::DpopNonces)).
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

/// An OAuth error code (RFC 6749 §5.2 and its extensions), in RFC order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request` (RFC 6749 §5.2).
    InvalidRequest,
    /// `invalid_client` (RFC 6749 §5.2).
    InvalidClient,
    /// `invalid_grant` (RFC 6749 §5.2).
    InvalidGrant,
    /// `unauthorized_client` (RFC 6749 §5.2).
    UnauthorizedClient,
    /// `unsupported_grant_type` (RFC 6749 §5.2).
    UnsupportedGrantType,
    /// `invalid_scope` (RFC 6749 §5.2).
    InvalidScope,
    /// `invalid_target` (RFC 8707 §2).
    InvalidTarget,
    /// `use_dpop_nonce` (RFC 9449 §8).
    UseDpopNonce,
    /// `invalid_dpop_proof` (RFC 9449 §5).
    InvalidDpopProof,
    /// Any other code, kept as the server sent it (sanitized).
    Other(String),
}

impl ErrorCode {
    /// Reads a code as the server sent it.
    #[must_use]
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            "use_dpop_nonce" => Self::UseDpopNonce,
            "invalid_dpop_proof" => Self::InvalidDpopProof,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::Other(code) => code,
        }
    }

    /// What the client's operator can do about it.
    fn advice(&self) -> &'static str {
        match self {
            Self::InvalidRequest => {
                "check the request's parameters against the server's documentation"
            }
            Self::InvalidClient => {
                "check the client id, the secret and the client authentication method"
            }
            Self::InvalidGrant => "check the client's credentials or assertion",
            Self::UnauthorizedClient => {
                "allow the client credentials grant for this client at the authorization server"
            }
            Self::UnsupportedGrantType => {
                "enable the client credentials grant at the authorization server"
            }
            Self::InvalidScope => "request only scopes this client is allowed",
            Self::InvalidTarget => {
                "request only resources or audiences the server knows for this client"
            }
            Self::UseDpopNonce => "retry with the nonce from the DPoP-Nonce header",
            Self::InvalidDpopProof => "check the DPoP proof's key, claims and clock",
            Self::Other(_) => "see the server's description",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error response (RFC 6749 §5.2), with the HTTP context a caller needs to act on it.
///
/// All text from the server is sanitized: control characters dropped and length capped at
/// [`MAX_SERVER_TEXT_LEN`](crate::MAX_SERVER_TEXT_LEN) bytes, and the value after any
/// secret-looking name (`client_secret=…`) redacted, so it is safe to log. Its Debug lists the
/// extra members by name only.
#[derive(Clone)]
pub struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) description: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) challenges: Vec<Challenge>,
    pub(crate) dpop_nonce: Option<String>,
    pub(crate) retry_after: Option<RetryAfter>,
    pub(crate) extra: Map<String, Value>,
}

impl OAuthError {
    /// The HTTP status (400 or 401 per RFC 6749 §5.2; 200 from some servers).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` code.
    #[must_use]
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The `error_description`, sanitized.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The `error_uri`, sanitized.
    #[must_use]
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }

    /// The challenges of the `WWW-Authenticate` header (sent with 401, RFC 6749 §5.2).
    #[must_use]
    pub fn challenges(&self) -> &[Challenge] {
        &self.challenges
    }

    /// The `DPoP-Nonce` header (RFC 9449 §8), to send in the next proof.
    #[must_use]
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop_nonce.as_deref()
    }

    /// The `Retry-After` header, if the server sent one.
    #[must_use]
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.retry_after
    }

    /// Every other member of the error object, such as Entra ID's `error_codes` and
    /// `trace_id`, as the server sent it.
    #[must_use]
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the token endpoint refused the request with `{}` (http {})",
            self.code,
            self.status.as_u16()
        )?;
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        write!(f, "; {}", self.code.advice())
    }
}

impl fmt::Debug for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Extra members are listed by name only, as `Token`'s Debug does: a server may put an
        // `id_token` or an echo of the request next to its error.
        let extra_names: Vec<&str> = self.extra.keys().map(String::as_str).collect();
        f.debug_struct("OAuthError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("description", &self.description)
            .field("uri", &self.uri)
            .field("challenges", &self.challenges)
            .field("dpop_nonce", &self.dpop_nonce)
            .field("retry_after", &self.retry_after)
            .field("extra_names", &extra_names)
            .finish()
    }
}

impl StdError for OAuthError {}

/// A response that is neither a token nor an OAuth error.
#[derive(Debug, Clone)]
pub struct UnexpectedResponse {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<String>,
    pub(crate) retry_after: Option<RetryAfter>,
    pub(crate) excerpt: Option<String>,
}

impl UnexpectedResponse {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Content-Type` header, sanitized.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The `Retry-After` header (sent with 429 and 503), if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.retry_after
    }

    /// The body, capped at [`MAX_EXCERPT_LEN`](crate::MAX_EXCERPT_LEN) bytes: enough to
    /// recognise a gateway's error page. A JSON or form body is described by its member names
    /// ("a json object with members `errorCode`, `errorSummary`"), never its values, any of
    /// which may be a token; any other body is its start, sanitized, with the value after a
    /// secret-looking name (`client_secret=…`, `"access_token":"…"`) redacted.
    #[must_use]
    pub fn excerpt(&self) -> Option<&str> {
        self.excerpt.as_deref()
    }

    fn advice(&self) -> &'static str {
        match self.status.as_u16() {
            429 => "the server is rate limiting this client: wait as long as it asks, then retry",
            404 | 405 => "check that the token url points at the token endpoint",
            401 | 403 => "check the client's credentials and that a proxy is not in the way",
            500..=599 => "the server or a gateway in front of it failed: retry later",
            _ => "check the token url and the server's logs",
        }
    }
}

impl fmt::Display for UnexpectedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the token endpoint answered http {} without an oauth error",
            self.status.as_u16()
        )?;
        if let Some(content_type) = &self.content_type {
            write!(f, " ({content_type})")?;
        }
        if let Some(RetryAfter::Delay(delay)) = self.retry_after {
            write!(f, ", asking to retry after {}s", delay.as_secs())?;
        }
        write!(f, "; {}", self.advice())?;
        if let Some(excerpt) = &self.excerpt {
            write!(f, "; body starts: {excerpt}")?;
        }
        Ok(())
    }
}

impl StdError for UnexpectedResponse {}

/// What is wrong with a success response that is not a usable token.
///
/// None of these ever quotes the body, which may hold a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// The body is neither JSON nor, where tolerated, a form.
    NotJson {
        /// The `Content-Type` header, sanitized.
        content_type: Option<String>,
    },
    /// The body is JSON, or claims to be, but could not be read.
    InvalidJson {
        /// What the JSON reader reported, without quoting the body.
        reason: &'static str,
        /// The line where reading stopped (1-based).
        line: usize,
        /// The column where reading stopped (1-based).
        column: usize,
    },
    /// A member the parser reads has a value of the wrong kind.
    InvalidMember {
        /// The member's name.
        name: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A member appears twice, so which one applies is ambiguous.
    DuplicateMember(&'static str),
    /// There is no `access_token` (RFC 6749 §5.1: REQUIRED).
    MissingAccessToken,
    /// There is no `token_type` (RFC 6749 §5.1: REQUIRED), and the rules are strict.
    MissingTokenType,
    /// `expires_in` is negative.
    NegativeExpiresIn,
    /// The status is a success other than 200 (RFC 6749 §5.1), and the rules are strict.
    UnexpectedSuccessStatus,
    /// The media type is not `application/json` (RFC 6749 §5.1), and the rules are strict.
    UnexpectedContentType {
        /// The `Content-Type` header, sanitized.
        content_type: Option<String>,
    },
}

impl fmt::Display for ResponseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson { content_type } => write!(
                f,
                "the body is not json (content type {})",
                content_type.as_deref().unwrap_or("absent")
            ),
            Self::InvalidJson {
                reason,
                line,
                column,
            } => write!(
                f,
                "the json is invalid at line {line} column {column}: {reason}"
            ),
            Self::InvalidMember { name, expected } => {
                write!(f, "`{name}` is not {expected}")
            }
            Self::DuplicateMember(name) => write!(f, "`{name}` appears more than once"),
            Self::MissingAccessToken => f.write_str("there is no `access_token`"),
            Self::MissingTokenType => f.write_str("there is no `token_type`"),
            Self::NegativeExpiresIn => f.write_str("`expires_in` is negative"),
            Self::UnexpectedSuccessStatus => {
                f.write_str("the status is not 200 and the response rules are strict")
            }
            Self::UnexpectedContentType { content_type } => write!(
                f,
                "the content type is {} rather than application/json and the response rules are strict",
                content_type.as_deref().unwrap_or("absent")
            ),
        }
    }
}

/// A server's `Retry-After` header (RFC 9110 §10.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryAfter {
    /// Retry after this long.
    Delay(Duration),
    /// Retry at this time.
    At(SystemTime),
}

impl RetryAfter {
    /// How long to wait from `now`: zero if the time has passed.
    #[must_use]
    pub fn delay_from(&self, now: SystemTime) -> Duration {
        match *self {
            Self::Delay(delay) => delay,
            Self::At(at) => at.duration_since(now).unwrap_or_default(),
        }
    }
}

impl From<DiscoveryError> for Error {
    fn from(error: DiscoveryError) -> Self {
        Self::Discovery(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for code in [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_target",
            "use_dpop_nonce",
            "invalid_dpop_proof",
            "slow_down",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
        assert_eq!(
            ErrorCode::parse("slow_down"),
            ErrorCode::Other("slow_down".into())
        );
    }

    #[test]
    fn retry_after_delay_from_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            RetryAfter::Delay(Duration::from_secs(5)).delay_from(now),
            Duration::from_secs(5)
        );
        let at = RetryAfter::At(now + Duration::from_secs(7));
        assert_eq!(at.delay_from(now), Duration::from_secs(7));
        assert_eq!(at.delay_from(now + Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn display_is_lower_case_without_trailing_period() {
        let errors = [
            Error::InvalidTokenUrl { reason: "x" },
            Error::BodyTooLarge { limit: 5 },
            Error::Redirect {
                status: StatusCode::FOUND,
                location: None,
                followed: false,
            },
            Error::Redirect {
                status: StatusCode::OK,
                location: Some("https://elsewhere.example/token?…".into()),
                followed: true,
            },
            Error::Transport {
                kind: TransportKind::Timeout,
                source: "boom".into(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn retryable_transport_failures() {
        let transport = |kind| Error::Transport {
            kind,
            source: "x".into(),
        };
        assert!(transport(TransportKind::Connect).is_retryable());
        assert!(transport(TransportKind::Timeout).is_retryable());
        assert!(transport(TransportKind::Io).is_retryable());
        assert!(!transport(TransportKind::Tls).is_retryable());
        assert!(!Error::BodyTooLarge { limit: 1 }.is_retryable());
    }
}
