//! A response that is neither a token nor an OAuth error: a gateway's page, a rate limit.

use std::error::Error as StdError;
use std::fmt;

use crate::error::oauth::RetryAfter;
use http::StatusCode;

/// A response that is neither a token nor an OAuth error.
#[derive(Debug, Clone)]
pub struct UnexpectedResponse {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<String>,
    pub(crate) retry_after: Option<RetryAfter>,
    pub(crate) excerpt: Option<String>,
}

impl UnexpectedResponse {
    /// The most bytes of a non-success response body that [`excerpt`](Self::excerpt)
    /// keeps.
    pub const MAX_EXCERPT_LEN: usize = crate::sanitize::MAX_EXCERPT_LEN;

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

    /// The body, capped at [`MAX_EXCERPT_LEN`](crate::error::UnexpectedResponse::MAX_EXCERPT_LEN) bytes: enough to
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
