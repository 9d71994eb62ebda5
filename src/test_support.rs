//! Helpers shared by the unit tests, compiled only for them: times counted from the Unix epoch,
//! token URLs, and the clients and token requests most tests start from.
//!
//! Each helper builds exactly the values it names: a test that needs another URL, client id or
//! secret passes it ([`url`], [`client_at`], [`request_at`]), so a test's values stay visible
//! in the test.

use std::time::{Duration, SystemTime};

use crate::client::ClientCredentials;
use crate::endpoint::TokenUrl;
use crate::request::TokenRequest;
use crate::secret::ClientSecret;

/// The token URL of [`token_url`] and [`client`].
pub(crate) const TOKEN_URL: &str = "https://idp.example.com/token";

/// `secs` seconds after the Unix epoch.
pub(crate) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// `ms` milliseconds after the Unix epoch.
pub(crate) fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `url` as a token URL.
///
/// # Panics
///
/// If `url` is not a valid token URL: a test's own mistake.
pub(crate) fn url(url: &str) -> TokenUrl {
    TokenUrl::new(url).unwrap()
}

/// [`TOKEN_URL`], `https://idp.example.com/token`, as a token URL.
pub(crate) fn token_url() -> TokenUrl {
    url(TOKEN_URL)
}

/// A client at `url`, with the client id `id` and the secret `secret`, sent by
/// `client_secret_basic`.
pub(crate) fn client_at(url: &str, id: &str, secret: &str) -> ClientCredentials {
    ClientCredentials::new(self::url(url), id, ClientSecret::new(secret))
}

/// The client `client` with the secret `secret` at [`TOKEN_URL`].
pub(crate) fn client() -> ClientCredentials {
    client_at(TOKEN_URL, "client", "secret")
}

/// The token request of [`client_at`]`(url, id, secret)`, without any parameter.
pub(crate) fn request_at(url: &str, id: &str, secret: &str) -> TokenRequest {
    client_at(url, id, secret).token_request().build().unwrap()
}

/// The token request, without any parameter, of the client `c` with the secret `s` at
/// `https://as.example.com/token`: the attempt loop's and the clock's tests.
pub(crate) fn request() -> TokenRequest {
    request_at("https://as.example.com/token", "c", "s")
}
