//! Why an authorized call (the tower layer, the reqwest middleware) failed before the API
//! answered it.

use std::sync::Arc;

use super::Error;

/// The error of the HTTP client beneath, boxed.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An authorized call that failed without an answer from the API: the token could not be had or
/// presented, and the request was not sent (it never goes out unauthenticated); or the HTTP
/// client beneath failed.
///
/// The API's refusals are not errors: a 401, a 403 or `insufficient_scope` is the answer the
/// caller gets, with its `WWW-Authenticate` challenge as the API sent it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No token could be had from the source: the request was not sent. The error is shared with
    /// every caller the same failure reached; [`Error::is_retryable`] says whether a later call
    /// may succeed.
    #[error("the call was not sent: no access token could be had: {0}")]
    Token(#[source] Arc<Error>),
    /// The token could not be put on the request (a DPoP proof that could not be signed, a token
    /// an HTTP header cannot carry): the request was not sent.
    #[error("the call was not sent: the access token could not be put on it: {0}")]
    Present(#[source] Error),
    /// The request would have carried the token over plain `http` to a host that is not a
    /// loopback address, where anyone on the way could take it: it was not sent, and no token
    /// was asked for. Use `https`, or allow it by name with
    /// [`CallPolicy::insecure_allow_http`](crate::call::CallPolicy::insecure_allow_http).
    #[error(
        "the call to {host} was not sent: a token goes only over https, or plain http to a loopback host; use https, or allow plain http with CallPolicy::insecure_allow_http"
    )]
    PlainHttp {
        /// The host the request was for.
        host: String,
    },
    /// The HTTP client (the inner service) failed.
    #[error("the http client failed: {0}")]
    Client(#[source] BoxError),
}

impl CallError {
    /// The crate's error, when the token was the problem ([`Token`](Self::Token),
    /// [`Present`](Self::Present)).
    #[must_use]
    pub fn token_error(&self) -> Option<&Error> {
        match self {
            Self::Token(error) => Some(error),
            Self::Present(error) => Some(error),
            Self::PlainHttp { .. } | Self::Client(_) => None,
        }
    }

    /// Whether trying the call again later may succeed: for a token that could not be had, the
    /// token error's [`Error::is_retryable`]; a client failure is left to the caller's judgment
    /// (`false`).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.token_error().is_some_and(Error::is_retryable)
    }
}
