//! The OAuth 2.0 client credentials grant (RFC 6749 §4.4), sans-IO.
//!
//! This crate builds the token request and parses the token response. Its core does no IO,
//! reads no clock and needs no async runtime: you send the request with whatever HTTP client you
//! already have, and pass in the time you sent it. Its one async function,
//! [`fetch_token`](crate::fetch::fetch_token), is the attempt loop over the
//! [`Transport`](crate::fetch::Transport) and the [`Environment`](crate::fetch::Environment)
//! (clock and random source) you give it, polled by any executor; the adapters and the token
//! source, which do IO, come with features.
//!
//! ```text
//!   ClientCredentials ──token_request()…build()──▶ TokenRequest   (validated once)
//!                                                     │
//!                             http_request(&attempt) │  ▲ parse_response(&response, sent_at)
//!                                                     ▼  │
//!                                   your HTTP client ──▶ token endpoint
//! ```
//!
//! # Example
//!
//! From a token URL, a client id, a secret and an audience to a valid token, through a
//! [`TokenSource`] that caches and refreshes it (features `reqwest` and `rustls`):
//!
//! ```no_run
//! # #[cfg(feature = "reqwest")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use client_credentials::TokenSource;
//!
//! let tokens = TokenSource::client_secret("https://idp.example.com/oauth/token", "my-client", "s3cr3t")
//!     .audience("https://api.example.com")
//!     .build()?; // the URL and every parameter checked here; the recommended reqwest client
//! let token = tokens.token().await?; // cancellation: drop the future
//! # let _ = token; Ok(()) }
//! ```
//!
//! Cancellation is dropping the future: a cancelled caller gives its fetch up, and another
//! caller waiting for the token takes over. Any HTTP client can fetch, through the
//! [`Transport`](crate::fetch::Transport) trait and the one attempt loop [`fetch_token`](crate::fetch::fetch_token).
//!
//! # Authorized calls
//!
//! A service's calls to an API get their token from a [`TokenSource`] through a tower layer
//! (`tower::AuthorizeLayer`, feature `tower`: hyper-util's client, tonic's channels) or a
//! `reqwest-middleware` middleware (`reqwest_middleware::AuthorizeMiddleware`, feature
//! `reqwest-middleware`). Both present the token by its type and follow the same rules for the
//! API's 401s ([`CallPolicy`](crate::call::CallPolicy), [`AuthorizedCall`](crate::call::AuthorizedCall)): a refused token is dropped and the request sent
//! again once when it can be replayed; a request whose token cannot be had fails with
//! [`CallError::Token`](crate::error::CallError::Token) and is never sent.
//!
//! # The core, without IO
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use client_credentials::{Attempt, ClientCredentials, ClientSecret, TokenUrl};
//! use client_credentials::token::TokenType;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientCredentials::new(
//!     TokenUrl::new("https://idp.example.com/oauth/token")?,
//!     "my-client",
//!     ClientSecret::new("s3cr3t"),
//! );
//! let request = client
//!     .token_request()
//!     .audience("https://api.example.com")
//!     .scope("read:things")
//!     .build()?; // every parameter is checked here, once
//!
//! # let sent_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! // let sent_at = SystemTime::now(); just before sending
//! // An attempt: its time, and 32 random bytes for what it signs (JWT assertions, DPoP proofs).
//! let attempt = Attempt::new(sent_at, [7; 32]);
//! let http_request = request.http_request(&attempt)?; // an `http::Request`: send it with any client
//! assert_eq!(http_request.method(), "POST");
//! let response = http::Response::builder()
//!     .status(200)
//!     .header("content-type", "application/json")
//!     .body(r#"{"access_token":"eyJhbGciOi...","token_type":"Bearer","expires_in":3600}"#)?;
//!
//! let token = request.parse_response(&response, sent_at)?; // or a typed error
//! assert_eq!(token.token_type(), &TokenType::Bearer);
//! assert_eq!(token.scope(), Some("read:things")); // omitted by the server: as requested
//! assert!(!token.expires_within(sent_at, Duration::from_secs(60)));
//! # Ok(()) }
//! ```
//!
//! # What it implements
//!
//! - The request: `POST`, form body, `grant_type=client_credentials` ([RFC 6749 §4.4.2]),
//!   client authentication by `client_secret_basic` or `client_secret_post` ([§2.3.1]), `none`,
//!   or a signed client assertion ([RFC 7523 §2.2]); `scope` ([§3.3]), `audience`, `resource`
//!   ([RFC 8707]) and any extra parameter.
//! - The response: a token ([§5.1]) or a typed OAuth error ([§5.2], with the `WWW-Authenticate`
//!   challenge of [RFC 9110 §11.6.1] and the `DPoP-Nonce` of [RFC 9449 §8]), or a typed error
//!   saying what else came back. Where real servers deviate from the RFC, [`ResponseRules`](crate::fetch::ResponseRules)
//!   names each tolerance; [`ResponseRules::strict`](crate::fetch::ResponseRules::strict) turns them all off.
//! - Secrets ([`ClientSecret`], [`AccessToken`](crate::token::AccessToken), the request body) redact themselves in `Debug`,
//!   and no error message holds one.
//! - `private_key_jwt` and `client_secret_jwt` ([`JwtAuth`](crate::auth::JwtAuth), [RFC 7523 §2.2]): a fresh
//!   assertion for every [`Attempt`], signed by any [`JwsSigner`](crate::auth::JwsSigner) (built-in RS256, PS256, ES256,
//!   EdDSA and HS256 keys with feature `jwt`); DPoP proofs ([RFC 9449], feature `jwt`) for the
//!   token request and the resource server; server metadata discovery ([RFC 8414]) into
//!   [`ServerMetadata`](crate::discovery::ServerMetadata), which picks the client authentication.
//! - Clock skew: the token endpoint's clock offset is learnt from its `Date` headers
//!   ([RFC 9110 §6.6.1]) into each client's [`ServerClock`](crate::fetch::ServerClock), and each attempt's JWTs are signed
//!   on the server's time; a refusal of an assertion or proof for its time is retried once on
//!   the corrected time ([`is_refusal_about_time`](crate::fetch::is_refusal_about_time)). State fed by responses: the core still
//!   reads no clock.
//! - Mutual TLS ([RFC 8705]): `tls_client_auth` and `self_signed_tls_client_auth`
//!   ([`ClientAuth::TlsClientAuth`](crate::auth::ClientAuth::TlsClientAuth), [`ClientAuth::SelfSignedTlsClientAuth`](crate::auth::ClientAuth::SelfSignedTlsClientAuth)) send the client id
//!   alone, the certificate being your HTTP client's; with a [`ClientCertificate`](crate::auth::ClientCertificate),
//!   [`ServerMetadata`](crate::discovery::ServerMetadata) sends the client to the server's `mtls_endpoint_aliases`.
//!
//! # Tracing
//!
//! With feature `tracing`, the crate tells a [`tracing`](https://docs.rs/tracing) subscriber
//! what it does, every span and event under the target `client_credentials`, with these stable
//! names. No field ever holds a secret, a token, an assertion or a DPoP proof, nor the token
//! URL's query (which may hold anything); errors appear by their Display, which never holds one.
//! Without the feature nothing of this is compiled in.
//!
//! The span `fetch_token` (INFO), around every run of [`fetch_token`](crate::fetch::fetch_token), the one attempt loop of
//! every adapter and token source:
//!
//! | field | value |
//! | --- | --- |
//! | `token_endpoint.host`, `token_endpoint.path` | the token URL's host and path |
//! | `client_id` | the client id |
//! | `auth_method` | the client authentication method ([`AuthMethod::as_str`](crate::auth::AuthMethod::as_str)) |
//! | `attempts` | how many attempts were made (2 after a DPoP nonce retry) |
//! | `outcome` | `token`, `oauth_error`, `unexpected_response`, `invalid_response`, `body_too_large`, `redirect`, `transport_error`, `signing_error`, `error` (any other), or `cancelled` (the future was dropped before the end: by its caller, or by the adapter's or the source's timeout, whose `Error::Transport` comes after the span) |
//! | `http.status` | the status of the last response, if one came |
//! | `oauth.error` | the OAuth error code ([`ErrorCode::as_str`](crate::error::ErrorCode::as_str)), for `oauth_error` |
//! | `duration_ms` | from start to end by [`Environment::now`](crate::fetch::Environment::now) (0 if the clock went backwards) |
//!
//! The events of [`TokenSource`] and the blocking one, each with the `client_id`:
//!
//! | event | level | when | fields |
//! | --- | --- | --- | --- |
//! | `refresh_ahead` | DEBUG | a valid token fell due for refresh, and its refresh starts | |
//! | `refresh_failed` | WARN | that refresh failed; the token is served while it is valid | `retryable`, `error` |
//! | `back_off_started` | WARN | a fetch for callers without a token failed; they fail fast until the back-off is over | `retryable`, `error` |
//! | `back_off` | DEBUG | a caller failed fast, without a request | `remaining_ms` |
//! | `invalidated` | DEBUG | [`TokenSource::invalidate`] | `dropped` |
//! | `forced_refresh` | DEBUG | [`TokenSource::force_refresh`] | `had_token` |
//!
//! The events of the authorized-call middleware, with `http.method`, `url.host` and `url.path`
//! of the call (never its query):
//!
//! | event | level | when | fields |
//! | --- | --- | --- | --- |
//! | `call_retried` | DEBUG | the API refused the call and it is sent once more | `reason`: `invalid_token`, `use_dpop_nonce` or `invalid_dpop_proof` |
//! | `call_not_replayed` | WARN | the API refused the call, whose body cannot be sent again: the refusal goes to the caller | `reason` |
//! | `call_token_failed` | WARN | no token could be had for the call, which fails unsent | `retryable`, `error` |
//!
//! [RFC 6749 §4.4.2]: https://www.rfc-editor.org/rfc/rfc6749#section-4.4.2
//! [§2.3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
//! [§3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
//! [§5.1]: https://www.rfc-editor.org/rfc/rfc6749#section-5.1
//! [§5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
//! [RFC 7523 §2.2]: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
//! [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
//! [RFC 9110 §11.6.1]: https://www.rfc-editor.org/rfc/rfc9110#section-11.6.1
//! [RFC 9110 §6.6.1]: https://www.rfc-editor.org/rfc/rfc9110#section-6.6.1
//! [RFC 9449 §8]: https://www.rfc-editor.org/rfc/rfc9449#section-8
//! [RFC 9449]: https://www.rfc-editor.org/rfc/rfc9449
//! [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
//! [RFC 8705]: https://www.rfc-editor.org/rfc/rfc8705
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The protocol core: no IO, no clock. Private modules, their public items re-exported by the
// role modules below, so that a file can move without moving a public path.
mod attempt;
mod challenge;
mod client;
mod client_auth;
mod clock;
mod endpoint;
mod grant;
mod observe;
mod origin;
mod request;
mod response;
mod sanitize;
mod secret;
mod session;
#[cfg(feature = "shared-cache")]
mod store;
mod token_fetch;

// The IO layer: the adapters and the token source.
#[cfg(feature = "token-source")]
mod io;

// The role modules: each gathers the public items of one role, from wherever they are defined.
// Those of one file or folder are that module; the others are facades here.
pub mod cache;
pub mod call;
pub mod discovery;
pub mod error;
pub mod token;

/// Client authentication (RFC 6749 §2.3): shared secrets, JWT assertions (RFC 7523) and their
/// signing keys, assertion sources (workload identity files and callbacks), and mutual TLS
/// (RFC 8705). [`ClientAuth`](crate::auth::ClientAuth) names the method a [`ClientCredentials`] authenticates with.
pub mod auth {
    pub use crate::client_auth::ClientAuth;
    pub use crate::client_auth::assertion::{AssertionFuture, AssertionProvider, AssertionSource};
    pub use crate::client_auth::jwt::{BoxError, JwsAlgorithm, JwsSigner, JwtAuth, PublicJwk};
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub use crate::client_auth::key::{HmacKey, PrivateKey};
    pub use crate::client_auth::method::AuthMethod;
    pub use crate::client_auth::mtls::ClientCertificate;
    #[cfg(feature = "token-source")]
    #[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
    pub use crate::io::assertion_file::{AssertionFile, entra_scope};
    pub use crate::secret::{ClientAssertion, ClientSecret};

    #[cfg(doc)]
    use crate::ClientCredentials;
}

/// The sans-IO attempt machinery, for driving the token exchange with any HTTP client:
/// [`TokenFetch`](crate::fetch::TokenFetch) (build an attempt, handle its response, retry once for a DPoP nonce or a
/// corrected clock), the [`Transport`](crate::fetch::Transport) that sends, the [`Environment`](crate::fetch::Environment) that tells the time and
/// draws randomness, the [`Session`](crate::fetch::Session) that keeps what the server taught
/// (its DPoP nonces, its clock), and [`fetch_token`](crate::fetch::fetch_token), the one loop
/// that drives them.
pub mod fetch {
    pub use crate::attempt::Attempt;
    pub use crate::clock::{ServerClock, is_refusal_about_time};
    #[cfg(feature = "token-source")]
    #[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
    pub use crate::io::environment::SystemEnvironment;
    pub use crate::response::rules::ResponseRules;
    pub use crate::secret::RequestBody;
    pub use crate::session::Session;
    pub use crate::token_fetch::{Environment, FetchStep, TokenFetch, Transport, fetch_token};
}

/// DPoP (RFC 9449): the key that binds tokens and signs proofs, and the nonces servers demand.
pub mod dpop {
    pub use crate::attempt::{DpopNonces, resource_dpop_retry_nonce};
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub use crate::client_auth::dpop::DpopKey;
}

/// The second level of the token cache, shared by a fleet of processes through a store
/// (feature `shared-cache`): [`SharedCache`](crate::shared_cache::SharedCache), the [`TokenStore`](crate::shared_cache::TokenStore) trait and its Redis
/// implementation (feature `redis`), and how entries are named and sealed.
#[cfg(feature = "shared-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "shared-cache")))]
pub mod shared_cache {
    pub use crate::io::source::fleet::SharedCache;
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use crate::io::source::redis::RedisStore;
    pub use crate::store::encryption_key::StoreEncryptionKey;
    pub use crate::store::fleet::{
        Afterwards, FleetConfig, FleetMachine, FleetStep, StoreDown, TokenOrigin,
    };
    pub use crate::store::key::StoreKey;
    pub use crate::store::{StoreError, StoreFuture, TokenStore};
}

// The adapters, one module each.
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use io::call::middleware as reqwest_middleware;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use io::call::tower;
#[cfg(feature = "__transport")]
pub use io::transport::*;

// Helpers shared by the unit tests.
#[cfg(test)]
mod test_support;

// The root: what a newcomer starts from.
pub use http;
pub use serde_json;

pub use attempt::Attempt;
pub use cache::CachePolicy;
pub use client::ClientCredentials;
pub use endpoint::TokenUrl;
pub use error::Error;
#[cfg(feature = "token-source")]
#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
pub use io::source::{TokenSource, TokenSourceBuilder};
pub use request::{TokenRequest, TokenRequestBuilder};
pub use secret::ClientSecret;
pub use token::Token;

// The README's examples use the adapters, the built-in keys and the Redis store.
#[doc = include_str!("../README.md")]
#[cfg(all(
    doctest,
    feature = "reqwest",
    feature = "rustls",
    feature = "jwt",
    feature = "tower",
    feature = "tonic",
    feature = "reqwest-middleware",
    feature = "redis"
))]
pub struct ReadmeDoctests;
