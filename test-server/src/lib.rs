//! A real OAuth 2.0 token endpoint and protected resource on `127.0.0.1`, started in-process,
//! for tests and demos.
//!
//! [`TestServer`] speaks HTTP/1.1 on an ephemeral loopback port, on a thread of its own with its
//! own tokio runtime, so it works from plain `#[test]` functions and from inside
//! `#[tokio::test]` alike. [`TestServer::start`] returns once the listener is bound, so a
//! request sent right after it is answered: no sleeping, no polling. Dropping the handle stops
//! the server and its thread.
//!
//! It answers `POST /token` as RFC 6749 §4.4 says a token endpoint does, for the clients
//! registered with it ([`TestClient`]); and the same at `POST /{tenant}/oauth2/v2.0/token` (any
//! one path segment as the tenant), the shape of Entra ID's v2.0 endpoint, so that a client
//! built for Entra (its authority the server's [`url`](TestServer::url)`("/")`) reaches it. The
//! DPoP proof's `htu` and an own assertion's `aud` must name the URL the request was sent to:
//!
//! | request | answer |
//! | --- | --- |
//! | valid, by `client_secret_basic` or `client_secret_post` ([§2.3.1]), or a client assertion ([RFC 7523 §2.2]) of a [`TestClient::assertion_jwks`] or [`TestClient::federated`] client | 200, a token ([§5.1]) |
//! | an assertion whose `iss`, signature, `sub` or `aud` does not match what the client trusts, or expired, not yet valid, issued in the future (each by more than [`ASSERTION_LEEWAY`] on the server's clock), without `exp`, or (but for a federated credential not [`single_use`](FederatedCredential::single_use)) without `jti` or with a `jti` seen before | 401 `invalid_client`, the reason in `error_description` |
//! | a repeated parameter other than `resource` ([§3.2]), no form body, no `grant_type`, two authentication methods ([§2.3]) | 400 `invalid_request` |
//! | `grant_type` other than `client_credentials` | 400 `unsupported_grant_type` |
//! | unknown client, wrong secret, no credentials, a method the client may not use | 401 `invalid_client` with `WWW-Authenticate: Basic realm="test-server"` ([§5.2]) |
//! | a client whose grant is not allowed ([`TestClient::grant_allowed`]) | 400 `unauthorized_client` |
//! | a scope the client is not allowed ([§3.3]) | 400 `invalid_scope` |
//! | an `audience` or `resource` the client is not allowed ([RFC 8707 §2]) | 400 `invalid_target` |
//! | a body over [`MAX_REQUEST_BODY_LEN`] | 413 |
//! | a `DPoP` proof ([RFC 9449 §4]) | its checks below; then a token with `token_type` `DPoP` and `cnf.jkt` the key's thumbprint ([RFC 9449 §6]) |
//! | a bad proof; none from a [`TestClient::dpop_bound`] client | 400 `invalid_dpop_proof` |
//! | a proof without the nonce, after [`TestServer::require_token_nonce`] | 400 `use_dpop_nonce` with `DPoP-Nonce` ([RFC 9449 §8]) |
//! | `POST /{tenant}/oauth2/v2.0/token` | as `POST /token`, the same clients, counted by [`TestServer::token_requests`] |
//! | another method on `/token` (or the tenant path); another path | 405; 404 |
//!
//! A DPoP proof is checked as [RFC 9449 §4.3] says: one `DPoP` header; `typ` `dpop+jwt`; `alg`
//! one of ES256, ES384, EdDSA, RS256, PS256 (those the crate's
//! [`PrivateKey`](client_credentials::auth::PrivateKey) signs, and ES384); a public `jwk` (no private member)
//! whose key verifies the signature; `htm` the request's method; `htu` the request's URL
//! without query (scheme and host compared case-insensitively); `iat` within
//! [`DPOP_PROOF_WINDOW`] of the server's clock; a `jti` not seen before (the last
//! [`MAX_DPOP_JTIS`] are remembered, at both endpoints together); and at the resource, `ath`
//! the token's hash and the key the token's `cnf.jkt` names.
//!
//! Any method on any path under [`/api/`](RESOURCE_PATH_PREFIX) is a protected resource. It
//! accepts the server's own unexpired, unrevoked tokens (and those of a [`TrustedIssuer`]),
//! `Bearer` ones by `Authorization: Bearer` ([RFC 6750 §2.1]) and DPoP-bound ones by
//! `Authorization: DPoP` with a proof ([RFC 9449 §7.1]), and answers as a resource server does
//! ([RFC 6750 §3]):
//!
//! | request | answer |
//! | --- | --- |
//! | a valid token | 200 `{"client_id", "scope", "method", "path", "body_len", "token_type"}` (the body read up to [`MAX_REQUEST_BODY_LEN`], 413 past it) |
//! | no `Authorization`, or another scheme | 401, bare challenges: `Bearer realm="test-server", DPoP realm="test-server", algs="…"` |
//! | two `Authorization` headers, an empty or malformed token | 400 `invalid_request` |
//! | an unknown, forged, expired or [revoked](TestServer::revoke) token; a DPoP-bound token as `Bearer`; an unbound one as `DPoP` | 401 `invalid_token` |
//! | a missing or bad proof, or one by another key than the token's | 401 `invalid_dpop_proof` |
//! | a proof without the nonce, after [`TestServer::require_resource_nonce`] | 401 `use_dpop_nonce` with `DPoP-Nonce` ([RFC 9449 §9]) |
//! | a path [`/api/scope/<scope>/…`](SCOPED_PATH_PREFIX) and a token without `<scope>` | 403 `insufficient_scope`, `scope="<scope>"` |
//!
//! Every refusal carries both a `Bearer` and a `DPoP` challenge, since the resource takes both,
//! the DPoP one with `algs` ([RFC 9449 §7.1]); the error, its `error_description` (and `scope`)
//! go in the challenge of the scheme the request used, and in a JSON body. For a resource
//! server of your own (a gRPC service, say), [`TestServer::check_access`] makes the same
//! decision, giving an [`AccessGrant`] or the [`AccessRefusal`] to answer with.
//!
//! The server remembers the last [`MAX_ISSUED_TOKENS`] tokens it issued; an older one is
//! unknown to it.
//!
//! Every answer carries a `Date` ([RFC 9110 §6.6.1]) on the server's clock, which
//! [`TestServerBuilder::clock_skew`] can put ahead of or behind the real time: the tokens'
//! `iat` and `exp`, the freshness of DPoP proofs and the times of client assertions follow it,
//! so a client whose clock disagrees with its server's (and its recovery, see
//! [`ServerClock`](client_credentials::fetch::ServerClock)) can be tested without a cloud account.
//!
//! A parameter sent with an empty value counts as omitted ([§3.1]). A request without `scope`
//! gets every scope the client is allowed. The access token is an unsecured JWT
//! (`{"alg":"none","typ":"at+jwt"}`, [RFC 7519 §6]) whose claims follow [RFC 9068 §2.2] (`iss`,
//! `sub`, `client_id`, `aud`, `scope`, `iat`, `exp`, `jti`), so that a tool can decode and show
//! it. It proves nothing: never accept such a token anywhere (the server's own resource accepts
//! only the very tokens it issued, remembered whole).
//!
//! [`Fault`]s make the server misbehave the way real servers and gateways do: queue one for the
//! next request with [`TestServer::push_fault`], or make every request get one with
//! [`TestServer::set_fault`]. These never apply to the resource, so that a test of token
//! fetching can fault the token endpoint while its API calls go through; queue a fault for the
//! resource with [`TestServer::push_resource_fault`]. [`TestServer::requests_served`] counts
//! the requests that arrived, on any path, faulted or not; [`TestServer::token_requests`] those
//! that reached `/token`, and [`TestServer::resource_requests`] those under `/api/`.
//!
//! # Example
//!
//! In a test, point your client at [`token_url`](TestServer::token_url), make the server
//! misbehave, and check what your code does. With the library's `reqwest` feature the exchange is
//! `client_credentials::reqwest::fetch_token(&http, &request, TIMEOUT).await`; here it goes by
//! hand over a `TcpStream`, to show that any HTTP client will do.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use client_credentials_test_server::{Fault, TestClient, TestServer};
//! use client_credentials::{ClientCredentials, ClientSecret};
//! use client_credentials::error::ErrorCode;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::builder()
//!     .client(TestClient::new("billing", "s3cr3t").scopes(["invoices:read"]))
//!     .start(); // listening once this returns
//! let client = ClientCredentials::new(server.token_url(), "billing", ClientSecret::new("s3cr3t"));
//! let request = client.token_request().scope("invoices:read").build()?;
//! # let send = |request: &client_credentials::TokenRequest| -> std::io::Result<http::Response<Vec<u8>>> {
//! #     use std::io::{Read, Write};
//! #     let attempt = client_credentials::Attempt::new(std::time::SystemTime::UNIX_EPOCH, [0; 32]);
//! #     let http_request = request.http_request(&attempt).map_err(std::io::Error::other)?;
//! #     let mut stream = std::net::TcpStream::connect(server.local_addr())?;
//! #     write!(stream, "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n")?;
//! #     for (name, value) in http_request.headers() {
//! #         write!(stream, "{name}: {}\r\n", value.to_str().unwrap_or_default())?;
//! #     }
//! #     write!(stream, "content-length: {}\r\n\r\n", http_request.body().len())?;
//! #     stream.write_all(http_request.body().secret())?;
//! #     let mut raw = Vec::new();
//! #     stream.read_to_end(&mut raw)?;
//! #     let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
//! #     let head = String::from_utf8_lossy(&raw[..split]).into_owned();
//! #     let mut lines = head.lines();
//! #     let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
//! #     let mut response = http::Response::builder().status(status);
//! #     for (name, value) in lines.filter_map(|l| l.split_once(": ")) {
//! #         response = response.header(name, value);
//! #     }
//! #     Ok(response.body(raw.get(split + 4..).unwrap_or_default().to_vec()).expect("a valid response"))
//! # };
//! # let sent_at = SystemTime::UNIX_EPOCH;
//!
//! // `send`: a plain HTTP/1.1 exchange (hidden here), returning an `http::Response`.
//! let token = request.parse_response(&send(&request)?, sent_at)?;
//! assert_eq!(token.scope(), Some("invoices:read"));
//!
//! server.push_fault(Fault::TooManyRequests { retry_after: Duration::from_secs(2) });
//! let error = request.parse_response(&send(&request)?, sent_at).unwrap_err();
//! assert!(error.is_retryable());
//!
//! let wrong = ClientCredentials::new(server.token_url(), "billing", ClientSecret::new("nope"));
//! let request = wrong.token_request().build()?;
//! let error = request.parse_response(&send(&request)?, sent_at).unwrap_err();
//! assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidClient));
//! assert_eq!(server.requests_served(), 3);
//! # Ok(()) }
//! ```
//!
//! Calling the resource with a token, then revoking it:
//!
//! ```
//! use client_credentials::token::AccessToken;
//! use client_credentials_test_server::TestServer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start();
//! # let send = |path: &str, token: &AccessToken| -> std::io::Result<(u16, String, String)> {
//! #     use std::io::{Read, Write};
//! #     let mut stream = std::net::TcpStream::connect(server.local_addr())?;
//! #     write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {}\r\n\r\n", token.secret())?;
//! #     let mut raw = String::new();
//! #     stream.read_to_string(&mut raw)?;
//! #     let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
//! #     let challenge = raw.lines().find_map(|l| l.strip_prefix("www-authenticate: ")).unwrap_or_default().to_owned();
//! #     let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
//! #     Ok((status, challenge, body))
//! # };
//! # let fetch = |request: &client_credentials::TokenRequest| -> Result<client_credentials::Token, Box<dyn std::error::Error>> {
//! #     use std::io::{Read, Write};
//! #     let attempt = client_credentials::Attempt::new(std::time::SystemTime::UNIX_EPOCH, [0; 32]);
//! #     let http = request.http_request(&attempt)?;
//! #     let mut stream = std::net::TcpStream::connect(server.local_addr())?;
//! #     write!(stream, "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n", http.body().len())?;
//! #     for (name, value) in http.headers() {
//! #         write!(stream, "{name}: {}\r\n", value.to_str()?)?;
//! #     }
//! #     stream.write_all(b"\r\n")?;
//! #     stream.write_all(http.body().secret())?;
//! #     let mut raw = Vec::new();
//! #     stream.read_to_end(&mut raw)?;
//! #     let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
//! #     let status: u16 = String::from_utf8_lossy(&raw[..split]).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
//! #     let response = http::Response::builder().status(status).header("content-type", "application/json").body(raw[split + 4..].to_vec())?;
//! #     Ok(request.parse_response(&response, std::time::SystemTime::UNIX_EPOCH)?)
//! # };
//! let request = server.demo_credentials().token_request().scope("read").build()?;
//! // `fetch`: the token exchange (hidden here); `send`: a GET with `Authorization: Bearer`,
//! // returning the status, the `WWW-Authenticate` header and the body.
//! let token = fetch(&request)?;
//! let (status, _, body) = send("/api/invoices", token.access_token())?;
//! assert_eq!(status, 200);
//! assert!(body.contains(r#""client_id":"demo-client""#));
//!
//! let (status, challenge, _) = send("/api/scope/write/invoices", token.access_token())?;
//! assert_eq!(status, 403);
//! assert!(challenge.contains(r#"error="insufficient_scope""#));
//!
//! assert!(server.revoke(token.access_token()));
//! let (status, challenge, _) = send("/api/invoices", token.access_token())?;
//! assert_eq!(status, 401);
//! assert!(challenge.starts_with(r#"Bearer realm="test-server", error="invalid_token""#));
//! assert_eq!((server.token_requests(), server.resource_requests()), (1, 3));
//! # Ok(()) }
//! ```
//!
//! [§2.3]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3
//! [§2.3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
//! [§3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-3.1
//! [§3.2]: https://www.rfc-editor.org/rfc/rfc6749#section-3.2
//! [§3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
//! [§5.1]: https://www.rfc-editor.org/rfc/rfc6749#section-5.1
//! [§5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
//! [RFC 7523 §2.2]: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
//! [RFC 9110 §6.6.1]: https://www.rfc-editor.org/rfc/rfc9110#section-6.6.1
//! [RFC 7519 §6]: https://www.rfc-editor.org/rfc/rfc7519#section-6
//! [RFC 8707 §2]: https://www.rfc-editor.org/rfc/rfc8707#section-2
//! [RFC 9068 §2.2]: https://www.rfc-editor.org/rfc/rfc9068#section-2.2
//! [RFC 6750 §2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
//! [RFC 6750 §3]: https://www.rfc-editor.org/rfc/rfc6750#section-3
//! [RFC 9449 §4]: https://www.rfc-editor.org/rfc/rfc9449#section-4
//! [RFC 9449 §4.3]: https://www.rfc-editor.org/rfc/rfc9449#section-4.3
//! [RFC 9449 §6]: https://www.rfc-editor.org/rfc/rfc9449#section-6
//! [RFC 9449 §7.1]: https://www.rfc-editor.org/rfc/rfc9449#section-7.1
//! [RFC 9449 §8]: https://www.rfc-editor.org/rfc/rfc9449#section-8
//! [RFC 9449 §9]: https://www.rfc-editor.org/rfc/rfc9449#section-9

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod assertion;
mod body;
mod client;
mod dpop;
mod endpoint;
mod faults;
mod form;
mod jws;
mod refusal;
mod resource;
mod server;
mod tokens;
mod trust;

pub use access::{AccessGrant, AccessRefusal};
pub use assertion::{ASSERTION_LEEWAY, FederatedCredential};
pub use client::{DEMO_AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_SCOPES, TestClient};
pub use dpop::{DPOP_PROOF_WINDOW, MAX_DPOP_JTIS};
pub use endpoint::DEFAULT_EXPIRES_IN;
pub use faults::Fault;
pub use refusal::{MAX_REQUEST_BODY_LEN, REALM};
pub use resource::{RESOURCE_PATH_PREFIX, SCOPED_PATH_PREFIX};
pub use server::{TestServer, TestServerBuilder};
pub use tokens::{MAX_CLOCK_SKEW, MAX_ISSUED_TOKENS};
pub use trust::{JwksError, MAX_JWKS_LEN, TrustedIssuer};

// The README's example.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod assertion_tests;
#[cfg(test)]
mod resource_tests;
#[cfg(test)]
mod tenant_path_tests;
#[cfg(test)]
mod tests;
