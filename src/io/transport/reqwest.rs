//! Sending a [`TokenRequest`] with [`reqwest`] (feature `reqwest`; the blocking
//! client under feature `reqwest-blocking`), and fetching an issuer's metadata.
//!
//! This module only translates types and does the IO: it implements
//! [`Transport`](crate::fetch::Transport) for [`reqwest::Client`](::reqwest::Client), and
//! [`fetch_token`] runs the core's one attempt loop ([`crate::fetch::fetch_token`]) over it. For every
//! attempt it reads the clock and 32 random bytes (from the operating system, by `getrandom`),
//! sends the request the core builds, and hands the response to the core, which says whether to
//! send once more (only for a server's `use_dpop_nonce`, RFC 9449 §8, and only once). The DPoP
//! nonces servers send, and their clocks, are kept by a [`Session`]: [`fetch_token`] runs in a
//! session of its own, [`fetch_token_in`] in yours, so that later requests start with them (as
//! a [`TokenSource`]'s do). In between, the body is read through the client's
//! [`max_body_len`](crate::fetch::ResponseRules::max_body_len) while it streams (a larger
//! `Content-Length` is refused before a byte is read). Failures of the HTTP client become
//! [`Error::Transport`] with a [`TransportKind`] and the reqwest error as the source, boxed, so no
//! reqwest type appears in this crate's error type.
//!
//! # Redirects
//!
//! A redirect from a token endpoint is never followed: a 3xx response is
//! [`Error::Redirect`], naming the `Location`. That only works if the client hands the 3xx back,
//! so **a client of your own must be built with `redirect(Policy::none())`**: reqwest's default
//! policy follows redirects by itself, and on a 307 or 308 it sends the request body, which holds
//! the credentials under `client_secret_post` or an assertion, to the new location.
//! [`recommended_client`] does this for you. The adapter cannot stop a client that follows, but
//! it notices: a response from another URL than the one sent is [`Error::Redirect`] with
//! `followed: true`, naming the final URL, and whatever that server answered (a token included)
//! is discarded.
//!
//! # Example
//!
//! ```no_run
//! use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
//!
//! # async fn run() -> Result<(), client_credentials::Error> {
//! let client = ClientCredentials::new(
//!     TokenUrl::new("https://idp.example.com/oauth/token")?,
//!     "my-client",
//!     ClientSecret::new("s3cr3t"),
//! );
//! let request = client.token_request().scope("read:things").build()?;
//!
//! let http = client_credentials::reqwest::recommended_client(); // build once, share
//! let timeout = client_credentials::reqwest::TIMEOUT; // for the whole exchange
//! let token = client_credentials::reqwest::fetch_token(&http, &request, timeout).await?;
//! println!("{} token, expires at {:?}", token.token_type(), token.expires_at());
//! # Ok(()) }
//! ```
//!
//! A client configured from its issuer alone, by the server's metadata (RFC 8414):
//!
//! ```no_run
//! use client_credentials::ClientSecret;
//! use client_credentials::discovery::{AuthMaterial, Issuer, MetadataRequest};
//!
//! # async fn run() -> Result<(), client_credentials::Error> {
//! let http = client_credentials::reqwest::recommended_client();
//! let discovery = MetadataRequest::oauth(Issuer::new("https://idp.example.com")?);
//! let timeout = client_credentials::reqwest::TIMEOUT;
//! let metadata = client_credentials::reqwest::fetch_metadata(&http, &discovery, timeout).await?;
//! let credentials = AuthMaterial::new().secret(ClientSecret::new("s3cr3t"));
//! let client = metadata.client("my-client", &credentials)?; // the best method the server lists
//! let request = client.token_request().scope("read:things").build()?;
//! let token = client_credentials::reqwest::fetch_token(&http, &request, timeout).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use ::reqwest::redirect::Policy;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Version};

use crate::discovery::metadata::ServerMetadata;
use crate::discovery::request::MetadataRequest;
use crate::error::{Error, TransportKind};
use crate::io::environment::SystemEnvironment;
use crate::io::source::{TokenSource, TokenSourceBuilder};
use crate::io::transport::shared::{is_tls, metadata_error, within};
use crate::request::TokenRequest;
use crate::secret::RequestBody;
use crate::session::Session;
use crate::token::Token;
use crate::token_fetch::Transport;

/// How long [`recommended_client`] waits for a connection (TCP and TLS handshake): 10 seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sound default for the `timeout` of [`fetch_token`] and [`fetch_metadata`] (and their
/// blocking twins), and the total timeout of [`recommended_client`]'s requests: 30 seconds.
pub use crate::io::transport::shared::TIMEOUT;

/// A [`reqwest::ClientBuilder`] with safe defaults for a token endpoint, to adjust before
/// building.
///
/// - redirects off ([`Policy::none`]), so a 3xx comes back as [`Error::Redirect`] instead of
///   sending the credentials elsewhere;
/// - the environment's proxy (`HTTPS_PROXY`, else `ALL_PROXY`, minus `NO_PROXY`) for `https`
///   requests to hosts other than loopback, and no proxy for any other request: a plain `http`
///   request, which a proxy could read and answer, never goes through one (`HTTP_PROXY` is
///   ignored);
/// - a connect timeout of [`CONNECT_TIMEOUT`] and a total timeout of [`TIMEOUT`];
/// - TLS by rustls (with the platform's certificate verifier) when feature `rustls` is on.
///   Without it, and without a TLS feature of reqwest enabled elsewhere in your build, the
///   client speaks plain `http` only, which [`TokenUrl`](crate::TokenUrl) allows for loopback
///   hosts alone, and an `https` token URL fails with [`TransportKind::Connect`].
///
/// ```no_run
/// let http = client_credentials::reqwest::recommended_client_builder()
///     .user_agent("my-service/1.0")
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recommended_client_builder() -> ::reqwest::ClientBuilder {
    let builder = ::reqwest::Client::builder();
    let builder = match environment_proxy() {
        Some(proxy) => builder.proxy(proxy),
        None => builder.no_proxy(),
    };
    let builder = builder
        .redirect(Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT);
    #[cfg(feature = "rustls")]
    let builder = builder.tls_backend_rustls();
    builder
}

/// The proxy of the recommended clients: the environment's `HTTPS_PROXY` (or `https_proxy`,
/// else `ALL_PROXY` or `all_proxy`, as reqwest reads them), for `https` requests only, and
/// never for loopback hosts or those `NO_PROXY` lists. A proxy carries plain `http` in clear,
/// credentials included, and may answer for the server, so `HTTP_PROXY` is ignored, while
/// `https` goes through a proxy as a tunnel it cannot read. A proxy URL reqwest cannot parse
/// is no proxy, as reqwest itself treats one.
fn environment_proxy() -> Option<::reqwest::Proxy> {
    let url = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()))?;
    let listed = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    let bypass = format!("{listed},localhost,127.0.0.0/8,::1");
    let proxy = ::reqwest::Proxy::https(url.as_str()).ok()?;
    Some(proxy.no_proxy(::reqwest::NoProxy::from_string(&bypass)))
}

/// A [`reqwest::Client`] built by [`recommended_client_builder`]: redirects off,
/// [`CONNECT_TIMEOUT`], [`TIMEOUT`], and rustls under feature `rustls`.
///
/// Build it once and share it (it is cheap to clone): it keeps a pool of connections.
///
/// # Panics
///
/// As [`reqwest::Client::new`](::reqwest::Client::new) does, if the TLS backend cannot be
/// initialized. Use [`recommended_client_builder`] and `build()` to get that as an error.
#[must_use]
pub fn recommended_client() -> ::reqwest::Client {
    recommended_client_builder().build().expect(
        "the recommended reqwest client could not be built: its TLS backend failed to initialize",
    )
}

/// Sends `request` with `client` and parses the response into a token, the whole exchange
/// bounded by `timeout` ([`TIMEOUT`] is the sound default).
///
/// `timeout` bounds everything, both attempts included when the server asks for a DPoP nonce:
/// connecting, the response head and every read of the body; the client's own timeouts apply
/// too. It needs a Tokio runtime with its time driver on, as reqwest's own timeouts do.
///
/// The exchange runs in a [`Session`] of its own: a DPoP nonce or a clock offset it learns is
/// not carried to the next call. [`fetch_token_in`] keeps them in a session you hold.
///
/// This is the core's one loop, [`crate::fetch::fetch_token`], over `client`'s
/// [`Transport`](crate::fetch::Transport): every attempt is built afresh, with the time just before
/// sending (the token's [`sent_at`](Token::sent_at), and the `iat` of its JWTs) and 32 random
/// bytes from the operating system: a JWT client signs a new assertion, a DPoP client a new
/// proof. When the server answers `use_dpop_nonce` with a nonce, the request is sent once more
/// with it ([`TokenFetch`](crate::fetch::TokenFetch)). The body is read through the client's
/// [`max_body_len`](crate::fetch::ResponseRules::max_body_len). Dropping the future abandons the
/// exchange: nothing is left running.
///
/// `client` must not follow redirects (see the [module docs](self#redirects)); use
/// [`recommended_client`] or build your own with `redirect(Policy::none())`.
///
/// # Errors
///
/// - [`Error::Transport`] when the exchange fails: [`TransportKind::Connect`] when no connection
///   could be made, [`TransportKind::Timeout`] when `timeout` or a timeout of the client
///   expired, [`TransportKind::Io`] when the connection failed mid-exchange,
///   [`TransportKind::Tls`] when rustls refused the handshake or the certificate,
///   [`TransportKind::Other`] for anything else (the operating system's random source failing
///   included); the reqwest error is the source. A client without TLS refuses an `https` URL
///   as a [`TransportKind::Connect`] failure;
/// - [`Error::BodyTooLarge`] when the body exceeds the limit;
/// - [`Error::Signing`] when a signer fails;
/// - every error of [`TokenRequest::parse_response`]: [`Error::OAuth`], [`Error::Redirect`], …
///
/// ```no_run
/// # async fn run(request: client_credentials::TokenRequest) -> Result<(), client_credentials::Error> {
/// use client_credentials::reqwest::{TIMEOUT, fetch_token, recommended_client};
///
/// let http = recommended_client();
/// match fetch_token(&http, &request, TIMEOUT).await {
///     Ok(token) => println!("got a {} token", token.token_type()),
///     Err(error) if error.is_retryable() => eprintln!("retry later: {error}"),
///     Err(error) => return Err(error),
/// }
/// # Ok(()) }
/// ```
pub async fn fetch_token(
    client: &::reqwest::Client,
    request: &TokenRequest,
    timeout: Duration,
) -> Result<Token, Error> {
    fetch_token_in(client, request, &Session::new(), timeout).await
}

/// As [`fetch_token`], in `session`: each attempt starts with the session's latest DPoP nonce
/// and on the server's time as the session knows it, and what the responses teach is kept
/// there for the next call. Keep one session per client.
///
/// # Errors
///
/// As [`fetch_token`].
pub async fn fetch_token_in(
    client: &::reqwest::Client,
    request: &TokenRequest,
    session: &Session,
    timeout: Duration,
) -> Result<Token, Error> {
    within(
        timeout,
        crate::token_fetch::fetch_token(client, request, session, &SystemEnvironment),
    )
    .await
}

/// Fetches and checks an issuer's metadata (RFC 8414, or OpenID Connect Discovery by
/// [`MetadataRequest::openid`]), reading the body through the request's
/// [`max_body_len`](MetadataRequest::max_body_len), the whole exchange bounded by `timeout` as
/// for [`fetch_token`].
///
/// # Errors
///
/// [`Error::Transport`] as for [`fetch_token`]; [`Error::Discovery`] for a body over the limit
/// and for every error of [`MetadataRequest::parse_response`].
pub async fn fetch_metadata(
    client: &::reqwest::Client,
    request: &MetadataRequest,
    timeout: Duration,
) -> Result<ServerMetadata, Error> {
    let exchange = send(client, request.http_request(), request.max_body_len());
    let response = within(timeout, exchange).await.map_err(metadata_error)?;
    request.parse_response(&response)
}

/// The async client as the core's transport: the adapters' clock and random source, and one
/// request sent and its body read through the limit. `client` must not follow redirects (see the
/// [module docs](self#redirects)).
impl Transport for ::reqwest::Client {
    fn send(
        &self,
        request: http::Request<RequestBody>,
        max_body_len: usize,
    ) -> impl Future<Output = Result<http::Response<Bytes>, Error>> + Send {
        send(self, request, max_body_len)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl TokenSource {
    /// A source of tokens for `request`, fetched with `client` (by the default
    /// [`CachePolicy`](crate::CachePolicy); see [`with_policy`](TokenSource::with_policy)).
    ///
    /// `client` must not follow redirects: use [`recommended_client`] or see the
    /// [module docs](self#redirects).
    #[must_use]
    pub fn reqwest(client: ::reqwest::Client, request: TokenRequest) -> Self {
        Self::new(client, request)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl TokenSourceBuilder {
    /// Builds the request and a source fetching it with [`recommended_client`]'s settings.
    ///
    /// # Errors
    ///
    /// As [`transport`](TokenSourceBuilder::transport), and
    /// [`Error::Transport`] if the client's TLS backend cannot be initialized.
    pub fn build(self) -> Result<TokenSource, Error> {
        let client = recommended_client_builder().build().map_err(transport)?;
        self.reqwest(client)
    }

    /// Builds the request and a source fetching it with `client`, which must not follow
    /// redirects (see the [module docs](self#redirects)).
    ///
    /// # Errors
    ///
    /// As [`transport`](TokenSourceBuilder::transport).
    pub fn reqwest(self, client: ::reqwest::Client) -> Result<TokenSource, Error> {
        self.transport(client)
    }
}

/// One exchange: the request sent, the response read with its body through `limit`.
async fn send(
    client: &::reqwest::Client,
    request: http::Request<RequestBody>,
    limit: usize,
) -> Result<http::Response<Bytes>, Error> {
    let request =
        ::reqwest::Request::try_from(request.map(RequestBody::into_bytes)).map_err(transport)?;
    let sent_to = request.url().clone();
    let mut response = client.execute(request).await.map_err(transport)?;
    refuse_followed_redirect(&sent_to, response.url(), response.status())?;
    if response.status().is_redirection() {
        // Never read: the core refuses a redirect whatever its body, and a body over the limit
        // must not hide the redirect behind `BodyTooLarge`.
        let headers = std::mem::take(response.headers_mut());
        return Ok(http_response(
            (response.status(), response.version(), headers),
            Bytes::new(),
        ));
    }
    let mut body = BytesMut::with_capacity(capacity(response.content_length(), limit)?);
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if chunk.len() > limit - body.len() {
            return Err(Error::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    let headers = std::mem::take(response.headers_mut());
    Ok(http_response(
        (response.status(), response.version(), headers),
        body.freeze(),
    ))
}

/// [`Error::Redirect`] if the response came from another URL than the one the request was sent
/// to: the client followed a redirect by itself and resent the request, credentials included.
/// That cannot be undone, but the answer of wherever it went is never taken for a token.
fn refuse_followed_redirect(
    sent_to: &::reqwest::Url,
    answered_from: &::reqwest::Url,
    status: StatusCode,
) -> Result<(), Error> {
    if sent_to == answered_from {
        return Ok(());
    }
    Err(Error::Redirect {
        status,
        location: Some(redacted(answered_from)),
        followed: true,
    })
}

/// A URL as text, its query shown as `?…` (it may hold an API key), capped and cleaned as all
/// server-chosen text is.
fn redacted(url: &::reqwest::Url) -> String {
    let mut url = url.clone();
    let had_query = url.query().is_some();
    url.set_query(None);
    url.set_fragment(None);
    let mut text = url.to_string();
    if had_query {
        text.push_str("?…");
    }
    crate::sanitize::text(&text, crate::sanitize::MAX_SERVER_TEXT_LEN)
}

/// The status line and headers of a response, as reqwest hands them over.
type Head = (StatusCode, Version, HeaderMap);

/// The buffer to reserve for a body of the declared length, or [`Error::BodyTooLarge`] if that
/// length is over the limit (so not a byte of it is read).
fn capacity(content_length: Option<u64>, limit: usize) -> Result<usize, Error> {
    match content_length.map(usize::try_from) {
        Some(Ok(len)) if len <= limit => Ok(len),
        Some(_) => Err(Error::BodyTooLarge { limit }),
        None => Ok(0),
    }
}

/// The response, body read, as the core takes it.
fn http_response((status, version, headers): Head, body: Bytes) -> http::Response<Bytes> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    response
}

/// A reqwest failure (async or blocking: they share the error type) as this crate's error. Its
/// text ends "for url (…)": the URL's query, which may hold a secret, is taken out.
fn transport(mut error: ::reqwest::Error) -> Error {
    if let Some(url) = error.url_mut() {
        url.set_query(None);
    }
    let kind = if error.is_timeout() {
        TransportKind::Timeout
    } else if error.is_connect() {
        if is_tls(&error) {
            TransportKind::Tls
        } else {
            TransportKind::Connect
        }
    } else if error.is_request() || error.is_body() || error.is_decode() {
        TransportKind::Io
    } else {
        TransportKind::Other
    };
    Error::Transport {
        kind,
        source: Box::new(error),
    }
}

/// Sending a [`TokenRequest`] with reqwest's blocking client (feature `reqwest-blocking`).
///
/// The same translation as the async adapter, over [`reqwest::blocking::Client`], and the same
/// attempt loop: the core's one async [`crate::fetch::fetch_token`], whose transport sends blocking and
/// hands back a ready future, so the loop ends on its first poll without a runtime. The blocking
/// client runs its own runtime on a thread: build and drop it outside of an async context, as
/// reqwest requires.
///
/// ```no_run
/// use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
///
/// # fn main() -> Result<(), client_credentials::Error> {
/// let client = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/oauth/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// );
/// let request = client.token_request().scope("read:things").build()?;
///
/// let http = client_credentials::reqwest::blocking::recommended_client();
/// let timeout = client_credentials::reqwest::TIMEOUT; // for the whole call
/// let token = client_credentials::reqwest::blocking::fetch_token(&http, &request, timeout)?;
/// println!("{} token", token.token_type());
/// # Ok(()) }
/// ```
#[cfg(feature = "reqwest-blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-blocking")))]
pub mod blocking {
    pub use crate::io::source::blocking::TokenSource;

    use std::io::Read;

    use ::reqwest::blocking::{Client, ClientBuilder, Request};
    use ::reqwest::redirect::Policy;
    use bytes::Bytes;

    use std::time::Duration;

    use super::{
        CONNECT_TIMEOUT, TIMEOUT, capacity, environment_proxy, http_response,
        refuse_followed_redirect, transport,
    };
    use crate::cache::policy::CachePolicy;
    use crate::discovery::metadata::ServerMetadata;
    use crate::discovery::request::MetadataRequest;
    use crate::error::{Error, TransportKind};
    use crate::io::environment::SystemEnvironment;
    use crate::io::transport::shared::{Deadline, metadata_error, run_ready};
    use crate::request::TokenRequest;
    use crate::secret::RequestBody;
    use crate::session::Session;
    use crate::token::Token;
    use crate::token_fetch::Transport;

    /// A [`reqwest::blocking::ClientBuilder`] with the same safe defaults as
    /// [`super::recommended_client_builder`]: redirects off, the environment's proxy for
    /// `https` to hosts other than loopback only, [`CONNECT_TIMEOUT`], [`TIMEOUT`], rustls under
    /// feature `rustls`.
    ///
    /// The blocking client applies its timeout to each step (the response head, then each read
    /// of the body) rather than to the whole exchange; [`fetch_token`] and [`TokenSource`]
    /// set a total timeout on each request they send instead.
    pub fn recommended_client_builder() -> ClientBuilder {
        let builder = Client::builder();
        let builder = match environment_proxy() {
            Some(proxy) => builder.proxy(proxy),
            None => builder.no_proxy(),
        };
        let builder = builder
            .redirect(Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT);
        #[cfg(feature = "rustls")]
        let builder = builder.tls_backend_rustls();
        builder
    }

    /// A [`reqwest::blocking::Client`] built by [`recommended_client_builder`].
    ///
    /// # Panics
    ///
    /// As [`reqwest::blocking::Client::new`](Client::new) does: if the TLS backend cannot be
    /// initialized, or when called from within an async runtime.
    #[must_use]
    pub fn recommended_client() -> Client {
        recommended_client_builder()
            .build()
            .expect("the recommended reqwest client could not be built: its TLS backend failed to initialize")
    }

    /// Sends `request` with `client` and parses the response into a token, blocking the thread.
    ///
    /// As [`super::fetch_token`], the same loop: a fresh attempt for every send, the one
    /// `use_dpop_nonce` retry, the same errors, the same body limit, a [`Session`] of its own
    /// ([`fetch_token_in`] for yours), and `client` must not follow redirects.
    ///
    /// The whole call, both attempts included, is bounded by `timeout` ([`TIMEOUT`] is the
    /// sound default): connecting, the response head and every read of the body. reqwest's
    /// blocking client restarts its own timeout for each read of a body, so a server sending one
    /// byte at a time could hold the thread for far longer; this one deadline replaces the
    /// client's timeout for these requests, as a request's own timeout does in reqwest. A
    /// [`TokenSource`] bounds its fetches by its
    /// [`CachePolicy::fetch_timeout`](crate::CachePolicy::fetch_timeout).
    ///
    /// # Errors
    ///
    /// As [`super::fetch_token`]; [`TransportKind::Timeout`] when `timeout` passes.
    pub fn fetch_token(
        client: &Client,
        request: &TokenRequest,
        timeout: Duration,
    ) -> Result<Token, Error> {
        fetch_token_in(client, request, &Session::new(), timeout)
    }

    /// As [`fetch_token`], in `session`, as the async [`super::fetch_token_in`].
    ///
    /// # Errors
    ///
    /// As [`fetch_token`].
    pub fn fetch_token_in(
        client: &Client,
        request: &TokenRequest,
        session: &Session,
        timeout: Duration,
    ) -> Result<Token, Error> {
        let transport = Deadlined {
            client,
            deadline: Deadline::after(timeout),
        };
        // Every await in the loop is on `send`'s ready future: one poll drives it to its end.
        run_ready(crate::token_fetch::fetch_token(
            &transport,
            request,
            session,
            &SystemEnvironment,
        ))
    }

    /// Fetches and checks an issuer's metadata, blocking the thread, as
    /// [`super::fetch_metadata`] does, the whole call bounded by `timeout` as [`fetch_token`]'s
    /// is.
    ///
    /// # Errors
    ///
    /// As [`super::fetch_metadata`].
    pub fn fetch_metadata(
        client: &Client,
        request: &MetadataRequest,
        timeout: Duration,
    ) -> Result<ServerMetadata, Error> {
        let deadline = Deadline::after(timeout);
        let response = send(
            client,
            request.http_request(),
            request.max_body_len(),
            deadline,
        )
        .map_err(metadata_error)?;
        request.parse_response(&response)
    }

    /// The blocking client as the core's transport, every request of one exchange sent by one
    /// deadline. `send` does the blocking IO and returns a ready future.
    struct Deadlined<'a> {
        client: &'a Client,
        deadline: Deadline,
    }

    impl Transport for Deadlined<'_> {
        fn send(
            &self,
            request: http::Request<RequestBody>,
            max_body_len: usize,
        ) -> impl Future<Output = Result<http::Response<Bytes>, Error>> + Send {
            std::future::ready(send(self.client, request, max_body_len, self.deadline))
        }
    }

    impl TokenSource {
        /// A source of tokens for `request`, fetched with `client` by
        /// [`fetch_token`](crate::reqwest::blocking::fetch_token), by the default [`CachePolicy`].
        ///
        /// `client` must not follow redirects: use
        /// [`recommended_client`](crate::reqwest::blocking::recommended_client).
        #[must_use]
        pub fn new(client: Client, request: TokenRequest) -> Self {
            Self::with_policy(client, request, CachePolicy::new())
        }

        /// A source of tokens for `request`, fetched with `client`, by `policy`.
        ///
        /// Each fetch, from connecting to the body's last byte, is bounded by
        /// [`CachePolicy::fetch_timeout`], which replaces the client's own timeout for its
        /// requests (to fetch within less, set less there). A fetch that runs out is a failure
        /// the source backs off from, and every caller waiting for it gets it at once.
        #[must_use]
        pub fn with_policy(client: Client, request: TokenRequest, policy: CachePolicy) -> Self {
            // The source's session: one for all its fetches, whichever thread makes them.
            let session = Session::new();
            Self::from_fetch(request, policy, move |request, within| {
                fetch_token_in(&client, request, &session, within)
            })
        }
    }

    /// One exchange: the request sent, the response read with its body through `limit`, all
    /// of it by `deadline`.
    fn send(
        client: &Client,
        request: http::Request<RequestBody>,
        limit: usize,
        deadline: Deadline,
    ) -> Result<http::Response<Bytes>, Error> {
        let mut request =
            Request::try_from(request.map(RequestBody::into_bytes)).map_err(transport)?;
        // A request's timeout is a total one: reqwest's runtime under the blocking client
        // applies it from connecting to the body's last byte, where the client's own timeout
        // restarts for every read.
        if let Some(left) = deadline.remaining()? {
            *request.timeout_mut() = Some(left);
        }
        let sent_to = request.url().clone();
        let mut response = client.execute(request).map_err(transport)?;
        refuse_followed_redirect(&sent_to, response.url(), response.status())?;
        if response.status().is_redirection() {
            // Never read, as in the async adapter.
            let headers = std::mem::take(response.headers_mut());
            return Ok(http_response(
                (response.status(), response.version(), headers),
                Bytes::new(),
            ));
        }
        let mut body = Vec::with_capacity(capacity(response.content_length(), limit)?);
        // One byte past the limit tells a body at the limit from a larger one.
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        (&mut response)
            .take(cap)
            .read_to_end(&mut body)
            .map_err(read_error)?;
        if body.len() > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        let headers = std::mem::take(response.headers_mut());
        Ok(http_response(
            (response.status(), response.version(), headers),
            body.into(),
        ))
    }

    /// A failure reading the body: reqwest's `Read` wraps its own error in an `io::Error`.
    fn read_error(error: std::io::Error) -> Error {
        let io_kind = error.kind();
        let kind = if io_kind == std::io::ErrorKind::TimedOut {
            TransportKind::Timeout
        } else {
            TransportKind::Io
        };
        match error
            .into_inner()
            .map(|inner| inner.downcast::<::reqwest::Error>())
        {
            Some(Ok(error)) => transport(*error),
            Some(Err(source)) => Error::Transport { kind, source },
            None => Error::Transport {
                kind,
                source: Box::new(std::io::Error::from(io_kind)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        assert_eq!(capacity(None, 10).ok(), Some(0));
        assert_eq!(capacity(Some(10), 10).ok(), Some(10));
        assert!(matches!(
            capacity(Some(11), 10),
            Err(Error::BodyTooLarge { limit: 10 })
        ));
    }

    #[test]
    fn a_redirected_url_is_shown_without_its_query() {
        let url = ::reqwest::Url::parse("https://idp.example/token?api_key=SECRET#x").unwrap();
        assert_eq!(redacted(&url), "https://idp.example/token?…");
        let plain = ::reqwest::Url::parse("http://127.0.0.1:8/token").unwrap();
        assert_eq!(redacted(&plain), "http://127.0.0.1:8/token");
        let error = refuse_followed_redirect(&plain, &url, StatusCode::OK).unwrap_err();
        assert!(!error.to_string().contains("SECRET"), "{error}");
        assert!(refuse_followed_redirect(&plain, &plain, StatusCode::OK).is_ok());
    }
}
