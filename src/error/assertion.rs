//! Why an attempt has no usable client assertion from its [`AssertionSource`](crate::auth::AssertionSource):
//! each names the file it came from, never the assertion.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;

/// Why a client assertion from an [`AssertionSource`](crate::auth::AssertionSource) cannot be sent,
/// found before the request goes out, so it never comes back as a puzzling `invalid_client`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// The assertion file could not be read (or its metadata could not be).
    #[error(
        "could not read the client assertion file {}: check that it exists and that this process may read it",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The assertion file is longer than [`AssertionSource::MAX_ASSERTION_LEN`](crate::auth::AssertionSource::MAX_ASSERTION_LEN).
    #[error(
        "the client assertion file {} is longer than {limit} bytes, so it is not an assertion: check the path",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },

    /// The assertion path names something other than a regular file (after following symbolic
    /// links): a directory, a named pipe, a device or a socket. It is refused before it is
    /// opened, since opening a pipe waits for a writer.
    #[error(
        "the client assertion path {} is not a regular file (a directory, pipe, device or socket): point it at the token file",
        path.display()
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
    },

    /// The assertion is not a JWT whose claims hold a numeric `exp` (RFC 7519 §4.1.4).
    #[error(
        "the client assertion {origin} is not a jwt with an `exp` claim ({reason}): check what writes it"
    )]
    Malformed {
        /// Where it came from: the file, or the callback.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The assertion expired before the attempt: whoever writes or mints it has not renewed it.
    #[error(
        "the client assertion {origin} expired {} s before this attempt (its exp is {exp}): check that the platform still renews it",
        now.saturating_sub(*exp)
    )]
    Expired {
        /// Where it came from: the file, or the callback.
        origin: String,
        /// Its `exp`, in seconds since 1970.
        exp: u64,
        /// The attempt's time, in seconds since 1970.
        now: u64,
    },

    /// The callback of [`AssertionSource::from_fn`](crate::auth::AssertionSource::from_fn) failed.
    #[error("the client assertion callback failed: see the source error")]
    Callback(#[source] Box<dyn StdError + Send + Sync>),

    /// An environment variable a workload identity preset needs is missing, empty or not
    /// unicode.
    #[error(
        "the environment variable {name} is missing or empty: the platform's workload identity sets it (check that it is enabled for this workload)"
    )]
    MissingVariable {
        /// The variable.
        name: &'static str,
    },

    /// A client whose assertions come from an [`AssertionSource`](crate::auth::AssertionSource)
    /// was asked for a request without one: build it with
    /// [`TokenFetch::http_request_with_assertion`](crate::fetch::TokenFetch::http_request_with_assertion)
    /// or [`fetch_token`](crate::fetch::fetch_token).
    #[error(
        "this client's assertion comes from an assertion source, and none was given for the attempt: use fetch_token, or TokenFetch::http_request_with_assertion"
    )]
    NotSupplied,
}
