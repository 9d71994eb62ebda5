//! The errors of discovering an authorization server's metadata.

use http::StatusCode;

use crate::error::problem::ResponseProblem;

/// What went wrong discovering the server's metadata.
///
/// Server text in it is sanitized (control characters dropped, length capped): safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer identifier was rejected at construction.
    #[error("invalid issuer: {reason}")]
    InvalidIssuer {
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The metadata endpoint answered with a status other than 200 (a redirect included: it is
    /// not followed).
    #[error(
        "the metadata endpoint answered http {}{}; check the issuer, and whether the server publishes the other well-known document (MetadataRequest::oauth or ::openid){}",
        status.as_u16(),
        content_type.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        excerpt.as_deref().map(|e| format!("; body starts: {e}")).unwrap_or_default()
    )]
    UnexpectedStatus {
        /// The HTTP status.
        status: StatusCode,
        /// The `Content-Type` header, sanitized.
        content_type: Option<String>,
        /// The start of the body, sanitized and capped at
        /// [`MAX_EXCERPT_LEN`](crate::error::UnexpectedResponse::MAX_EXCERPT_LEN) bytes.
        excerpt: Option<String>,
    },

    /// The body exceeded the limit and was not parsed.
    #[error(
        "the metadata document exceeds the {limit}-byte limit; check the issuer, or raise the limit with MetadataRequest::with_max_body_len"
    )]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The body is not a JSON object, or a member has the wrong type.
    #[error("the metadata document is unusable: {0}")]
    InvalidDocument(ResponseProblem),

    /// A member the client needs is missing.
    #[error("the metadata document has no `{0}`, which the client needs")]
    MissingMember(&'static str),

    /// The document names another issuer than the one it was fetched for (RFC 8414 §3.3), so
    /// it cannot be trusted.
    #[error(
        "the metadata names the issuer `{found}`, not `{expected}` as requested (RFC 8414 §3.3); configure the issuer exactly as the server names itself"
    )]
    IssuerMismatch {
        /// The issuer requested.
        expected: String,
        /// The issuer the document names, sanitized.
        found: String,
    },

    /// The document's token endpoint (or its mutual TLS alias) is not a usable token URL.
    #[error("the metadata's token endpoint is unusable: {reason}")]
    InvalidTokenEndpoint {
        /// Why, as [`Error::InvalidTokenUrl`](crate::error::Error::InvalidTokenUrl) says it.
        reason: &'static str,
    },

    /// The server supports none of the methods the client's credentials allow.
    #[error(
        "the server supports none of the client authentication methods these credentials allow (it lists: {supported}); give the client a credential for one of them"
    )]
    NoUsableAuthMethod {
        /// The methods the server lists, space-separated and sanitized.
        supported: String,
    },
}

impl DiscoveryError {
    /// The HTTP status of the response, for an unexpected one.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<ResponseProblem> for DiscoveryError {
    fn from(problem: ResponseProblem) -> Self {
        Self::InvalidDocument(problem)
    }
}
