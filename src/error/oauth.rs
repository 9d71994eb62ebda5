//! The OAuth error response (RFC 6749 §5.2): its code, its members, and `Retry-After`.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::challenge::Challenge;
use http::StatusCode;
use serde_json::{Map, Value};

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
        Self::registered(code).unwrap_or_else(|| Self::Other(code.to_owned()))
    }

    /// The code, if it is one of the registered ones named here (none is [`Self::Other`]).
    pub(crate) fn registered(code: &str) -> Option<Self> {
        Some(match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            "use_dpop_nonce" => Self::UseDpopNonce,
            "invalid_dpop_proof" => Self::InvalidDpopProof,
            _ => return None,
        })
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
/// [`MAX_SERVER_TEXT_LEN`](crate::Error::MAX_SERVER_TEXT_LEN) bytes, and the value after any
/// secret-looking name (`client_secret=…`) redacted, so it is safe to log. Its Debug lists the
/// extra members by name only.
///
/// Small enough to be held in [`Error`](crate::Error) without a box: a usual error (a code and
/// a description) is one allocation, the description's; the rarer parts (`error_uri`, the
/// challenges, the DPoP nonce, `Retry-After`, extra members) take one more, only when present.
/// A `401` storm parses many.
#[derive(Clone)]
pub struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) description: Option<Box<str>>,
    pub(crate) details: Option<Box<Details>>,
}

/// The parts of an OAuth error that most responses lack.
#[derive(Clone)]
pub(crate) struct Details {
    pub(crate) uri: Option<String>,
    pub(crate) challenges: Vec<Challenge>,
    pub(crate) dpop_nonce: Option<String>,
    pub(crate) retry_after: Option<RetryAfter>,
    pub(crate) extra: Map<String, Value>,
}

/// What an error without details shows: no challenges, no extra members.
static NO_EXTRA: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

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
        self.details.as_ref()?.uri.as_deref()
    }

    /// The challenges of the `WWW-Authenticate` header (sent with 401, RFC 6749 §5.2).
    #[must_use]
    pub fn challenges(&self) -> &[Challenge] {
        self.details.as_ref().map_or(&[], |d| &d.challenges)
    }

    /// The `DPoP-Nonce` header (RFC 9449 §8), to send in the next proof.
    #[must_use]
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.details.as_ref()?.dpop_nonce.as_deref()
    }

    /// The `Retry-After` header, if the server sent one.
    #[must_use]
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.details.as_ref()?.retry_after
    }

    /// Every other member of the error object, such as Entra ID's `error_codes` and
    /// `trace_id`, as the server sent it.
    #[must_use]
    pub fn extra(&self) -> &Map<String, Value> {
        self.details.as_ref().map_or(&NO_EXTRA, |d| &d.extra)
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
        let extra_names: Vec<&str> = self.extra().keys().map(String::as_str).collect();
        f.debug_struct("OAuthError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("description", &self.description())
            .field("uri", &self.uri())
            .field("challenges", &self.challenges())
            .field("dpop_nonce", &self.dpop_nonce())
            .field("retry_after", &self.retry_after())
            .field("extra_names", &extra_names)
            .finish()
    }
}

impl StdError for OAuthError {}

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
