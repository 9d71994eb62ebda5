//! Sending a [`TokenRequest`] with [hyper]'s client (feature `hyper`), and fetching an issuer's
//! metadata.
//!
//! [`fetch_token`] sends the request over the caller's [`hyper_util::client::legacy::Client`],
//! with any connector, so TLS stays the caller's choice (`hyper-rustls`, `hyper-tls`, or plain
//! `HttpConnector` for a loopback server). Like the reqwest adapter, it only translates types
//! and does the IO: it implements [`Transport`](crate::fetch::Transport) for the client, and runs the
//! core's one attempt loop ([`crate::fetch::fetch_token`]) over it, reading the clock and 32 random bytes (by
//! `getrandom`) for every attempt and sending once more only when the server asks for a DPoP
//! nonce; the body is read through the client's
//! [`max_body_len`](crate::fetch::ResponseRules::max_body_len) while it streams (by [`Limited`]), and
//! failures become [`Error::Transport`] with a [`TransportKind`] and hyper's error as the
//! source, boxed, so no hyper type appears in this crate's error type.
//!
//! hyper's client never follows redirects, so a 3xx comes back as [`Error::Redirect`], naming
//! the `Location`.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//!
//! # async fn run() -> Result<(), client_credentials::Error> {
//! let client = ClientCredentials::new(
//!     TokenUrl::new("http://127.0.0.1:8080/token")?, // plain http: loopback only
//!     "my-client",
//!     ClientSecret::new("s3cr3t"),
//! );
//! let request = client.token_request().scope("read:things").build()?;
//!
//! // Any connector: wrap `HttpConnector` in `hyper_rustls::HttpsConnector` for https.
//! let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
//! let token =
//!     client_credentials::hyper::fetch_token(&http, &request, Duration::from_secs(30)).await?;
//! println!("{} token, expires at {:?}", token.token_type(), token.expires_at());
//! # Ok(()) }
//! ```

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;

use crate::discovery::metadata::ServerMetadata;
use crate::discovery::request::MetadataRequest;
use crate::error::{Error, TransportKind};
use crate::io::environment::SystemEnvironment;
use crate::io::source::{TokenSource, TokenSourceBuilder};
use crate::io::transport::shared::{chain, has_io_kind, metadata_error, within};
use crate::request::TokenRequest;
use crate::secret::RequestBody;
use crate::session::Session;
use crate::token::Token;
use crate::token_fetch::Transport;

/// Sends `request` with `client` and parses the response into a token.
///
/// `timeout` bounds the whole call, from connecting to the last byte of the body, both attempts
/// included when the server asks for a DPoP nonce ([`TIMEOUT`] is the sound default;
/// `Duration::MAX` leaves it to the connector and the server, which may be forever). It needs a
/// Tokio runtime with its time driver enabled.
///
/// Every attempt is built afresh, with the time just before sending (the token's
/// [`sent_at`](Token::sent_at), and the `iat` of its JWTs) and 32 random bytes from the
/// operating system: a JWT client signs a new assertion, a DPoP client a new proof. When the
/// server answers `use_dpop_nonce` with a nonce, the request is sent once more with it
/// ([`TokenFetch`](crate::fetch::TokenFetch)). The exchange runs in a [`Session`] of its own:
/// a nonce or a clock offset it learns is not carried to the next call, which
/// [`fetch_token_in`] keeps in a session you hold.
/// Dropping the future abandons the exchange: this function spawns nothing, and hyper closes a
/// connection whose request was abandoned rather than reuse it.
///
/// # Errors
///
/// - [`Error::Transport`] when the exchange fails: [`TransportKind::Connect`] when no
///   connection could be made, [`TransportKind::Timeout`] when `timeout` (or the connector's
///   own) expired, [`TransportKind::Io`] when the connection failed mid-exchange,
///   [`TransportKind::Tls`] when the connector reported a TLS failure as an `io::Error` of kind
///   `InvalidData` (as `hyper-rustls` does), [`TransportKind::Other`] for anything else (the
///   operating system's random source failing included); hyper's error is the source;
/// - [`Error::BodyTooLarge`] when the body exceeds the limit;
/// - [`Error::Signing`] when a signer fails;
/// - every error of [`TokenRequest::parse_response`]: [`Error::OAuth`], [`Error::Redirect`], …
pub async fn fetch_token<C>(
    client: &Client<C, Full<Bytes>>,
    request: &TokenRequest,
    timeout: Duration,
) -> Result<Token, Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fetch_token_in(client, request, &Session::new(), timeout).await
}

/// As [`fetch_token`], in `session`: each attempt starts with the session's latest DPoP nonce
/// and on the server's time as the session knows it, and what the responses teach is kept
/// there for the next call. Keep one session per client.
///
/// # Errors
///
/// As [`fetch_token`].
pub async fn fetch_token_in<C>(
    client: &Client<C, Full<Bytes>>,
    request: &TokenRequest,
    session: &Session,
    timeout: Duration,
) -> Result<Token, Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    within(
        timeout,
        crate::token_fetch::fetch_token(client, request, session, &SystemEnvironment),
    )
    .await
}

/// Fetches and checks an issuer's metadata (RFC 8414, or OpenID Connect Discovery by
/// [`MetadataRequest::openid`]), reading the body through the request's
/// [`max_body_len`](MetadataRequest::max_body_len); `timeout` as for [`fetch_token`].
///
/// # Errors
///
/// [`Error::Transport`] as for [`fetch_token`]; [`Error::Discovery`] for a body over the limit
/// and for every error of [`MetadataRequest::parse_response`].
pub async fn fetch_metadata<C>(
    client: &Client<C, Full<Bytes>>,
    request: &MetadataRequest,
    timeout: Duration,
) -> Result<ServerMetadata, Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let exchange = send(client, request.http_request(), request.max_body_len());
    let response = within(timeout, exchange).await.map_err(metadata_error)?;
    request.parse_response(&response)
}

/// The sound default for the `timeout` of [`fetch_token`] and [`fetch_metadata`]: 30 seconds.
pub use crate::io::transport::shared::TIMEOUT;

/// hyper's client, over any connector, as the core's transport: the adapters' clock and random
/// source, and one request sent and its body read through the limit (hyper never follows a
/// redirect).
impl<C> Transport for Client<C, Full<Bytes>>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn send(
        &self,
        request: http::Request<RequestBody>,
        max_body_len: usize,
    ) -> impl Future<Output = Result<http::Response<Bytes>, Error>> + Send {
        send(self, request, max_body_len)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
impl TokenSource {
    /// A source of tokens for `request`, fetched with hyper's `client` over any connector (by
    /// the default [`CachePolicy`](crate::CachePolicy); see
    /// [`with_policy`](TokenSource::with_policy)). Its type has no parameter: the connector's
    /// type stays inside.
    #[must_use]
    pub fn hyper<C>(client: Client<C, Full<Bytes>>, request: TokenRequest) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        Self::new(client, request)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
impl TokenSourceBuilder {
    /// Builds the request and a source fetching it with hyper's `client`.
    ///
    /// # Errors
    ///
    /// As [`transport`](TokenSourceBuilder::transport).
    pub fn hyper<C>(self, client: Client<C, Full<Bytes>>) -> Result<TokenSource, Error>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        self.transport(client)
    }
}

/// One exchange: the request sent, the response read with its body through `limit`.
async fn send<C>(
    client: &Client<C, Full<Bytes>>,
    request: http::Request<RequestBody>,
    limit: usize,
) -> Result<http::Response<Bytes>, Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let request = request.map(|body| Full::new(body.into_bytes()));
    let response = client.request(request).await.map_err(client_error)?;
    let (head, body) = response.into_parts();
    if head.status.is_redirection() {
        // Never read: the core refuses the redirect whatever the body says.
        return Ok(http::Response::from_parts(head, Bytes::new()));
    }
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(Error::BodyTooLarge { limit });
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| body_error(error, limit))?
        .to_bytes();
    Ok(http::Response::from_parts(head, body))
}

/// A failure of the client before the response head arrived.
fn client_error(error: hyper_util::client::legacy::Error) -> Error {
    let kind = classify(&error, error.is_connect());
    Error::Transport {
        kind,
        source: Box::new(error),
    }
}

/// A failure while the body streamed in.
fn body_error(error: Box<dyn StdError + Send + Sync>, limit: usize) -> Error {
    if error.is::<LengthLimitError>() {
        return Error::BodyTooLarge { limit };
    }
    Error::Transport {
        kind: classify(&*error, false),
        source: error,
    }
}

/// The kind of a failure, from the errors in its source chain.
fn classify(error: &(dyn StdError + 'static), connecting: bool) -> TransportKind {
    let io_kind = |kind| has_io_kind(error, kind);
    let hyper_error = chain(error).find_map(|e| e.downcast_ref::<hyper::Error>());
    if io_kind(io::ErrorKind::TimedOut) || hyper_error.is_some_and(hyper::Error::is_timeout) {
        TransportKind::Timeout
    } else if connecting {
        // rustls (through hyper-rustls) wraps a refused handshake or certificate in an
        // `io::Error` of kind `InvalidData`; nothing else on the connect path does.
        if io_kind(io::ErrorKind::InvalidData) {
            TransportKind::Tls
        } else {
            TransportKind::Connect
        }
    } else {
        match hyper_error {
            Some(e) if e.is_parse() || e.is_user() => TransportKind::Other,
            Some(_) => TransportKind::Io,
            None if chain(error).any(|e| e.is::<io::Error>()) => TransportKind::Io,
            None => TransportKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_kind() {
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timeout");
        assert_eq!(classify(&timed_out, true), TransportKind::Timeout);
        let tls = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert_eq!(classify(&tls, true), TransportKind::Tls);
        let wrapped = io::Error::other(tls);
        assert_eq!(classify(&wrapped, true), TransportKind::Tls);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused, true), TransportKind::Connect);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset, false), TransportKind::Io);
        let other: Box<dyn StdError + Send + Sync> = "something else".into();
        assert_eq!(classify(&*other, false), TransportKind::Other);
    }

    #[tokio::test]
    async fn a_length_limit_error_is_body_too_large() {
        let body = Limited::new(Full::new(Bytes::from_static(b"12345678")), 7);
        let error = body.collect().await.err().map(|e| body_error(e, 7));
        assert!(matches!(error, Some(Error::BodyTooLarge { limit: 7 })));
    }
}
