//! A real OAuth 2.0 token endpoint on `127.0.0.1`, started in-process, for tests and demos.
//!
//! [`TestServer`] speaks HTTP/1.1 on an ephemeral loopback port, on a thread of its own with its
//! own tokio runtime, so it works from plain `#[test]` functions and from inside
//! `#[tokio::test]` alike. [`TestServer::start`] returns once the listener is bound, so a
//! request sent right after it is answered: no sleeping, no polling. Dropping the handle stops
//! the server and its thread.
//!
//! It answers `POST /token` as RFC 6749 §4.4 says a token endpoint does, for the clients
//! registered with it ([`TestClient`]):
//!
//! | request | answer |
//! | --- | --- |
//! | valid, by `client_secret_basic` or `client_secret_post` ([§2.3.1]) | 200, a token ([§5.1]) |
//! | a repeated parameter other than `resource` ([§3.2]), no form body, no `grant_type`, two authentication methods ([§2.3]) | 400 `invalid_request` |
//! | `grant_type` other than `client_credentials` | 400 `unsupported_grant_type` |
//! | unknown client, wrong secret, no credentials, a method the client may not use | 401 `invalid_client` with `WWW-Authenticate: Basic realm="test-server"` ([§5.2]) |
//! | a client whose grant is not allowed ([`TestClient::grant_allowed`]) | 400 `unauthorized_client` |
//! | a scope the client is not allowed ([§3.3]) | 400 `invalid_scope` |
//! | an `audience` or `resource` the client is not allowed ([RFC 8707 §2]) | 400 `invalid_target` |
//! | a body over [`MAX_REQUEST_BODY_LEN`] | 413 |
//! | another method on `/token`; another path | 405; 404 |
//!
//! A parameter sent with an empty value counts as omitted ([§3.1]). A request without `scope`
//! gets every scope the client is allowed. The access token is an unsecured JWT
//! (`{"alg":"none","typ":"at+jwt"}`, [RFC 7519 §6]) whose claims follow [RFC 9068 §2.2] (`iss`,
//! `sub`, `client_id`, `aud`, `scope`, `iat`, `exp`, `jti`), so that a tool can decode and show
//! it. It proves nothing: never accept such a token anywhere.
//!
//! [`Fault`]s make the server misbehave the way real servers and gateways do: queue one for the
//! next request with [`TestServer::push_fault`], or make every request get one with
//! [`TestServer::set_fault`]. [`TestServer::requests_served`] counts the requests that arrived,
//! on any path, faulted or not.
//!
//! # Example
//!
//! In a test, point your client at [`token_url`](TestServer::token_url), make the server
//! misbehave, and check what your code does. With the `reqwest` feature the exchange is
//! `client_credentials::reqwest::fetch_token(&http, &request).await`; here it goes by hand over a
//! `TcpStream`, to show that any HTTP client will do.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use client_credentials::test_server::{Fault, TestClient, TestServer};
//! use client_credentials::{ClientCredentials, ClientSecret, ErrorCode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::builder()
//!     .client(TestClient::new("billing", "s3cr3t").scopes(["invoices:read"]))
//!     .start(); // listening once this returns
//! let client = ClientCredentials::new(server.token_url(), "billing", ClientSecret::new("s3cr3t"));
//! let request = client.token_request().scope("invoices:read").build()?;
//! # let send = |request: &client_credentials::TokenRequest| -> std::io::Result<http::Response<Vec<u8>>> {
//! #     use std::io::{Read, Write};
//! #     let http_request = request.http_request();
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
//! [§2.3]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3
//! [§2.3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
//! [§3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-3.1
//! [§3.2]: https://www.rfc-editor.org/rfc/rfc6749#section-3.2
//! [§3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
//! [§5.1]: https://www.rfc-editor.org/rfc/rfc6749#section-5.1
//! [§5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
//! [RFC 7519 §6]: https://www.rfc-editor.org/rfc/rfc7519#section-6
//! [RFC 8707 §2]: https://www.rfc-editor.org/rfc/rfc8707#section-2
//! [RFC 9068 §2.2]: https://www.rfc-editor.org/rfc/rfc9068#section-2.2

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::auth::method::AuthMethod;
use crate::endpoint::TokenUrl;
use crate::request::ClientCredentials;
use crate::secret::ClientSecret;

/// The client id of the client [`TestServer::start`] registers.
pub const DEMO_CLIENT_ID: &str = "demo-client";

/// The secret of the demo client. It guards nothing: the server listens on loopback only.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// The scopes the demo client is allowed.
pub const DEMO_SCOPES: [&str; 2] = ["read", "write"];

/// The audience (and RFC 8707 resource) the demo client is allowed.
pub const DEMO_AUDIENCE: &str = "https://api.example.com";

/// The lifetime of the tokens the server issues unless told otherwise, in seconds.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// The largest request body the server reads; a larger one gets 413.
pub const MAX_REQUEST_BODY_LEN: usize = 64 * 1024;

/// The realm of the `WWW-Authenticate` challenge sent with `invalid_client`.
pub const REALM: &str = "test-server";

/// A way for the server to misbehave, as real servers and gateways do.
///
/// A fault applies to whatever request gets it, on any path, before the request is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer with this status and a small HTML page (or no body, for statuses that have none),
    /// as a gateway does.
    Status(StatusCode),
    /// Answer 429 with `Retry-After` in whole seconds (rounded up) and a plain text body.
    TooManyRequests {
        /// The delay sent in `Retry-After`.
        retry_after: Duration,
    },
    /// Answer 503 with `Retry-After` in whole seconds (rounded up) and a plain text body.
    ServiceUnavailable {
        /// The delay sent in `Retry-After`.
        retry_after: Duration,
    },
    /// Answer 302 with this `Location` (left out if it is not a valid header value).
    Redirect {
        /// Where the redirect points.
        location: String,
    },
    /// Answer 307 with this `Location` (left out if it is not a valid header value): a client
    /// that follows it sends the same request, body and credentials included, to the location.
    TemporaryRedirect {
        /// Where the redirect points.
        location: String,
    },
    /// Answer 200 `application/json` with a body of exactly `len` bytes, streamed: a token
    /// response with a huge access token when `len` allows, filler otherwise.
    OversizedBody {
        /// The body's length in bytes.
        len: usize,
    },
    /// Answer 200 with an HTML sign-in page, as a misconfigured URL or a captive portal does.
    HtmlBody,
    /// Answer 200 `application/json` with a `Content-Length` larger than what is sent, then
    /// close the connection.
    CloseMidBody,
    /// Hold the connection open without answering, until the server is dropped.
    NeverAnswer,
    /// Answer 200 `application/json` with a token response (its `Content-Length` exact), but
    /// send its body one byte per `interval`, as a stalled link or a slow-loris server does:
    /// every read gets a byte before a per-read timeout longer than `interval` expires, so only
    /// a deadline on the whole exchange ends it early.
    TrickleBody {
        /// The wait before each byte of the body.
        interval: Duration,
    },
}

/// A client registered with a [`TestServer`]: its credentials and what it is allowed.
///
/// By default it may authenticate by `client_secret_basic` and `client_secret_post`, is
/// allowed the client credentials grant, and no scope, audience or resource.
#[derive(Clone)]
#[must_use]
pub struct TestClient {
    id: String,
    secret: ClientSecret,
    scopes: Vec<String>,
    audiences: Vec<String>,
    resources: Vec<String>,
    grant_allowed: bool,
    methods: Vec<AuthMethod>,
}

impl TestClient {
    /// A client with this id and secret.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: ClientSecret::new(secret),
            scopes: Vec::new(),
            audiences: Vec::new(),
            resources: Vec::new(),
            grant_allowed: true,
            methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
        }
    }

    /// Allows these scopes, in addition to those allowed before. A request without `scope` is
    /// granted all of them.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Allows these values of the `audience` parameter, in addition to those allowed before.
    pub fn audiences<S: Into<String>>(mut self, audiences: impl IntoIterator<Item = S>) -> Self {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Allows these values of the `resource` parameter (RFC 8707), in addition to those allowed
    /// before.
    pub fn resources<S: Into<String>>(mut self, resources: impl IntoIterator<Item = S>) -> Self {
        self.resources.extend(resources.into_iter().map(Into::into));
        self
    }

    /// Whether the client may use the client credentials grant; if not, its requests get
    /// `unauthorized_client`.
    pub fn grant_allowed(mut self, allowed: bool) -> Self {
        self.grant_allowed = allowed;
        self
    }

    /// The authentication methods the client may use, replacing the default (both
    /// `client_secret_basic` and `client_secret_post`). Other methods are never accepted.
    pub fn auth_methods(mut self, methods: impl IntoIterator<Item = AuthMethod>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// The client id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    fn demo() -> Self {
        Self::new(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
            .scopes(DEMO_SCOPES)
            .audiences([DEMO_AUDIENCE])
            .resources([DEMO_AUDIENCE])
    }
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("resources", &self.resources)
            .field("grant_allowed", &self.grant_allowed)
            .field("auth_methods", &self.methods)
            .finish()
    }
}

/// Configures a [`TestServer`] before starting it.
///
/// It starts with the demo client registered ([`DEMO_CLIENT_ID`], [`DEMO_CLIENT_SECRET`],
/// [`DEMO_SCOPES`], [`DEMO_AUDIENCE`]) and tokens that live [`DEFAULT_EXPIRES_IN`] seconds.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestServerBuilder {
    clients: Vec<TestClient>,
    expires_in: Option<u64>,
}

impl TestServerBuilder {
    /// Registers a client, replacing any registered client with the same id (the demo client
    /// too). May be called again for more clients.
    pub fn client(mut self, client: TestClient) -> Self {
        self.clients.retain(|c| c.id != client.id);
        self.clients.push(client);
        self
    }

    /// The `expires_in` of issued tokens, in seconds; `None` leaves it (and the JWT's `exp`)
    /// out, as some servers do.
    pub fn expires_in(mut self, expires_in: Option<u64>) -> Self {
        self.expires_in = expires_in;
        self
    }

    /// Starts the server, returning once it listens.
    ///
    /// # Panics
    ///
    /// If the server cannot start; see [`try_start`](Self::try_start).
    pub fn start(self) -> TestServer {
        self.try_start()
            .unwrap_or_else(|e| panic!("the test server could not start: {e}"))
    }

    /// Starts the server, returning once it listens.
    ///
    /// # Errors
    ///
    /// The IO error if no loopback port can be bound, or the runtime or its thread cannot be
    /// created.
    pub fn try_start(self) -> io::Result<TestServer> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let token_url = TokenUrl::new(&format!("http://{addr}/token"))
            .map_err(|e| io::Error::other(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            clients: self.clients,
            expires_in: self.expires_in,
            requests: AtomicUsize::new(0),
            issued: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    runtime.block_on(async move {
                        tokio::select! {
                            () = accept_loop(listener, shared) => {}
                            _ = stopped => {}
                        }
                    });
                    // Dropping the runtime drops every connection task, closing its socket.
                    drop(runtime);
                }
            })?;
        Ok(TestServer {
            addr,
            token_url,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

/// An embedded token endpoint on `127.0.0.1`; dropping it stops the server and its thread.
///
/// See the [module documentation](self) for what it answers.
pub struct TestServer {
    addr: SocketAddr,
    token_url: TokenUrl,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the demo client ([`DEMO_CLIENT_ID`], [`DEMO_CLIENT_SECRET`],
    /// scopes [`DEMO_SCOPES`], audience and resource [`DEMO_AUDIENCE`]), returning once it
    /// listens.
    ///
    /// # Panics
    ///
    /// If the server cannot start; see [`TestServerBuilder::try_start`].
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A builder, to register other clients or change the tokens' lifetime.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            clients: vec![TestClient::demo()],
            expires_in: Some(DEFAULT_EXPIRES_IN),
        }
    }

    /// The token endpoint: `http://127.0.0.1:PORT/token`.
    #[must_use]
    pub fn token_url(&self) -> TokenUrl {
        self.token_url.clone()
    }

    /// The URL of any path on the server: `http://127.0.0.1:PORT{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The demo client, authenticating by `client_secret_basic` at this server.
    #[must_use]
    pub fn demo_credentials(&self) -> ClientCredentials {
        ClientCredentials::new(
            self.token_url(),
            DEMO_CLIENT_ID,
            ClientSecret::new(DEMO_CLIENT_SECRET),
        )
    }

    /// How many requests have arrived, on any path, including those that got a fault. A request
    /// counts as soon as its head is read, before it is answered.
    #[must_use]
    pub fn requests_served(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Queues a fault: the next request that arrives gets it. Faults are served first in, first
    /// out, one per request, and before the sticky fault of [`set_fault`](Self::set_fault).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults().queue.push_back(fault);
    }

    /// Makes every request get this fault (when none is queued), until it is set to `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.faults().sticky = fault;
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("requests_served", &self.requests_served())
            .finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the server thread has already ended.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has been reported there; don't panic in drop.
            let _ = thread.join();
        }
    }
}

/// What the server's connections share with the handle.
struct Shared {
    issuer: String,
    clients: Vec<TestClient>,
    expires_in: Option<u64>,
    requests: AtomicUsize,
    issued: AtomicU64,
    faults: Mutex<Faults>,
}

#[derive(Default)]
struct Faults {
    queue: VecDeque<Fault>,
    sticky: Option<Fault>,
}

impl Shared {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        // The lock is never held across a panic that matters: the data stays consistent.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_fault(&self) -> Option<Fault> {
        let mut faults = self.faults();
        faults.queue.pop_front().or_else(|| faults.sticky.clone())
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, or a connection reset before it was accepted: back
                // off a little rather than spin, then go on serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            // A connection error (the client went away, a fault closed it) ends this connection
            // only.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle<B>(shared: &Shared, request: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.next_fault() {
        None => {}
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::NeverAnswer) => std::future::pending::<()>().await,
        Some(fault) => return fault_response(fault),
    }
    if request.uri().path() != "/token" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the token endpoint is /token",
        );
    }
    if request.method() != Method::POST {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: the token endpoint takes POST",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    token_endpoint(shared, request)
        .await
        .unwrap_or_else(Refusal::into_response)
}

async fn token_endpoint<B>(
    shared: &Shared,
    request: Request<B>,
) -> Result<Response<ResponseBody>, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let form_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)",
        ));
    }
    let declared_len = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > MAX_REQUEST_BODY_LEN as u64) {
        return Err(Refusal::TooLarge);
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY_LEN).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Refusal::TooLarge),
        Err(_) => return Err(invalid_request("the request body could not be read")),
    };
    let form = Form::parse(&body)?;

    match form.get("grant_type") {
        None => return Err(invalid_request("the grant_type parameter is missing")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_grant_type",
                "this server supports only the client_credentials grant",
            ));
        }
    }
    let client = shared.authenticate(&parts.headers, &form)?;
    if !client.grant_allowed {
        return Err(refuse(
            "unauthorized_client",
            "this client may not use the client_credentials grant",
        ));
    }
    let scopes: Vec<&str> = match form.get("scope") {
        Some(scope) => scope.split(' ').filter(|s| !s.is_empty()).collect(),
        None => client.scopes.iter().map(String::as_str).collect(),
    };
    if let Some(scope) = scopes
        .iter()
        .find(|s| !client.scopes.iter().any(|a| a == *s))
    {
        return Err(refuse(
            "invalid_scope",
            format!("the scope `{scope}` is not allowed for this client"),
        ));
    }
    let audience = form.get("audience");
    if let Some(audience) = audience.filter(|a| !client.audiences.iter().any(|x| x == a)) {
        return Err(refuse(
            "invalid_target",
            format!("the audience `{audience}` is not allowed for this client"),
        ));
    }
    let resources = form.all("resource");
    if let Some(resource) = resources
        .iter()
        .find(|r| !client.resources.iter().any(|x| x == *r))
    {
        return Err(refuse(
            "invalid_target",
            format!("the resource `{resource}` is not allowed for this client"),
        ));
    }
    let targets: Vec<&str> = audience.into_iter().chain(resources).collect();
    Ok(shared.issue(client, &scopes.join(" "), &targets))
}

impl Shared {
    /// Authenticates the client by `client_secret_basic` or `client_secret_post` (RFC 6749
    /// §2.3.1), refusing two methods at once (§2.3).
    fn authenticate(&self, headers: &http::HeaderMap, form: &Form) -> Result<&TestClient, Refusal> {
        let (id, secret, method) = match headers.get(AUTHORIZATION) {
            Some(header) => {
                let (id, secret) = basic_credentials(header).ok_or_else(|| {
                    invalid_client("the authorization header does not hold basic credentials")
                })?;
                if form.get("client_secret").is_some() {
                    return Err(invalid_request(
                        "the client used more than one authentication method (RFC 6749 §2.3)",
                    ));
                }
                if form.get("client_id").is_some_and(|body_id| body_id != id) {
                    return Err(invalid_request(
                        "the client_id parameter differs from the authenticated client",
                    ));
                }
                (id, secret, AuthMethod::ClientSecretBasic)
            }
            None => match (form.get("client_id"), form.get("client_secret")) {
                (Some(id), Some(secret)) => (
                    id.to_owned(),
                    secret.to_owned(),
                    AuthMethod::ClientSecretPost,
                ),
                (Some(_), None) => {
                    return Err(invalid_client("the client sent no secret"));
                }
                (None, _) => return Err(invalid_client("the client did not authenticate")),
            },
        };
        let client = self
            .clients
            .iter()
            .find(|c| c.id == id && c.secret.secret() == secret)
            .ok_or_else(|| invalid_client("client authentication failed"))?;
        if !client.methods.contains(&method) {
            return Err(invalid_client(format!(
                "this client may not authenticate with {}",
                method.as_str()
            )));
        }
        Ok(client)
    }

    /// A successful token response (RFC 6749 §5.1) with an unsecured JWT access token.
    fn issue(&self, client: &TestClient, scope: &str, targets: &[&str]) -> Response<ResponseBody> {
        let issued_at = unix_now();
        let serial = self.issued.fetch_add(1, Ordering::Relaxed);
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(client.id));
        claims.insert("client_id".into(), json!(client.id));
        match targets {
            [] => {}
            [one] => {
                claims.insert("aud".into(), json!(one));
            }
            many => {
                claims.insert("aud".into(), json!(many));
            }
        }
        if !scope.is_empty() {
            claims.insert("scope".into(), json!(scope));
        }
        claims.insert("iat".into(), json!(issued_at));
        if let Some(expires_in) = self.expires_in {
            claims.insert("exp".into(), json!(issued_at.saturating_add(expires_in)));
        }
        claims.insert(
            "jti".into(),
            json!(format!(
                "{}-{serial}",
                self.issuer.rsplit(':').next().unwrap_or_default()
            )),
        );
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
        let mut body = Map::new();
        body.insert("access_token".into(), json!(format!("{header}.{payload}.")));
        body.insert("token_type".into(), json!("Bearer"));
        if let Some(expires_in) = self.expires_in {
            body.insert("expires_in".into(), json!(expires_in));
        }
        if !scope.is_empty() {
            body.insert("scope".into(), json!(scope));
        }
        json_response(StatusCode::OK, &Value::Object(body))
    }
}

/// The current time in seconds since the Unix epoch.
// The server stamps `iat` and `exp` with the real time, as a real token endpoint does; it is the
// one part of the crate that reads the clock outside an adapter.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Decodes `Basic base64(form-encode(id) ":" form-encode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space.
fn form_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A request's form parameters, with empty ones dropped (RFC 6749 §3.1).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if name != "resource" && pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(invalid_request(format!(
                    "the parameter `{name}` is repeated (RFC 6749 §3.2)"
                )));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn fault_response(fault: Fault) -> Response<ResponseBody> {
    match fault {
        Fault::Status(status) => {
            let bodiless = status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            if bodiless {
                response(status, None, ResponseBody::empty())
            } else {
                html(
                    status,
                    &format!(
                        "<!DOCTYPE html>\n<html><head><title>{status}</title></head>\
                     <body><h1>{status}</h1><p>test-server fault</p></body></html>\n"
                    ),
                )
            }
        }
        Fault::TooManyRequests { retry_after } => retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            "too many requests",
        ),
        Fault::ServiceUnavailable { retry_after } => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            "service unavailable",
        ),
        Fault::Redirect { location } => redirect(StatusCode::FOUND, location),
        Fault::TemporaryRedirect { location } => redirect(StatusCode::TEMPORARY_REDIRECT, location),
        Fault::TrickleBody { interval } => response(
            StatusCode::OK,
            Some("application/json"),
            ResponseBody::trickle(Bytes::from_static(TRICKLED_TOKEN), interval),
        ),
        Fault::OversizedBody { len } => response(
            StatusCode::OK,
            Some("application/json"),
            ResponseBody::oversized(len),
        ),
        Fault::HtmlBody => html(
            StatusCode::OK,
            "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
             <body><form method=\"post\"><input name=\"username\"><input name=\"password\" \
             type=\"password\"><button>Sign in</button></form></body></html>\n",
        ),
        Fault::CloseMidBody => {
            let start = Bytes::from_static(br#"{"access_token":"eyJhbGciOiJub25lIn0"#);
            let declared = start.len() + 1024;
            let mut response = response(
                StatusCode::OK,
                Some("application/json"),
                ResponseBody::Truncated {
                    data: Some(start),
                    flushed: false,
                },
            );
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(declared));
            response
        }
        // Handled before a response is built; answered normally if they ever get here.
        Fault::Delay(_) | Fault::NeverAnswer => plain(StatusCode::INTERNAL_SERVER_ERROR, "fault"),
    }
}

fn redirect(status: StatusCode, location: String) -> Response<ResponseBody> {
    let mut response = response(status, None, ResponseBody::empty());
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

fn retry_later(status: StatusCode, retry_after: Duration, text: &str) -> Response<ResponseBody> {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut response = plain(status, text);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A refused token request: an OAuth error (RFC 6749 §5.2), or a body over the limit.
enum Refusal {
    OAuth {
        code: &'static str,
        description: String,
    },
    TooLarge,
}

impl Refusal {
    /// `invalid_client` gets 401 and a `Basic` challenge (RFC 6749 §5.2, RFC 9110 §15.5.2);
    /// every other OAuth error 400.
    fn into_response(self) -> Response<ResponseBody> {
        let (code, description) = match self {
            Self::TooLarge => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is over the {MAX_REQUEST_BODY_LEN}-byte limit"),
                );
            }
            Self::OAuth { code, description } => (code, description),
        };
        let body = json!({ "error": code, "error_description": description });
        if code != "invalid_client" {
            return json_response(StatusCode::BAD_REQUEST, &body);
        }
        let mut response = json_response(StatusCode::UNAUTHORIZED, &body);
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="test-server""#),
        );
        response
    }
}

fn refuse(code: &'static str, description: impl Into<String>) -> Refusal {
    Refusal::OAuth {
        code,
        description: description.into(),
    }
}

fn invalid_request(description: impl Into<String>) -> Refusal {
    refuse("invalid_request", description)
}

fn invalid_client(description: impl Into<String>) -> Refusal {
    refuse("invalid_client", description)
}

fn json_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = response(
        status,
        Some("application/json"),
        ResponseBody::full(body.to_string()),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    response(
        status,
        Some("text/plain; charset=utf-8"),
        ResponseBody::full(format!("{text}\n")),
    )
}

fn html(status: StatusCode, page: &str) -> Response<ResponseBody> {
    response(
        status,
        Some("text/html; charset=utf-8"),
        ResponseBody::full(page.to_owned()),
    )
}

fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Filler for [`Fault::OversizedBody`], sent in slices of this static buffer.
static FILLER: [u8; 16 * 1024] = [b'a'; 16 * 1024];

const OVERSIZED_START: &[u8] = br#"{"access_token":""#;
const OVERSIZED_END: &[u8] = br#"","token_type":"Bearer"}"#;

/// The token response [`Fault::TrickleBody`] sends, byte by byte.
const TRICKLED_TOKEN: &[u8] =
    br#"{"access_token":"trickled-token","token_type":"Bearer","expires_in":3600}"#;

/// The server's response bodies: whole, streamed filler, cut short, or trickled.
enum ResponseBody {
    Full(Option<Bytes>),
    /// `start`, then `filler` bytes of filler, then `end`.
    Oversized {
        start: Option<Bytes>,
        filler: usize,
        end: Option<Bytes>,
    },
    /// Sends its bytes, lets hyper flush them, then fails, which makes hyper close the
    /// connection mid-body.
    Truncated {
        data: Option<Bytes>,
        flushed: bool,
    },
    /// `data`, one byte each time `wait` ends; `wait` restarts for `interval` after each.
    Trickle {
        data: Bytes,
        wait: Pin<Box<tokio::time::Sleep>>,
        interval: Duration,
    },
}

impl ResponseBody {
    fn empty() -> Self {
        Self::Full(None)
    }

    fn full(text: String) -> Self {
        Self::Full(Some(Bytes::from(text)))
    }

    fn trickle(data: Bytes, interval: Duration) -> Self {
        Self::Trickle {
            data,
            wait: Box::pin(tokio::time::sleep(interval)),
            interval,
        }
    }

    fn oversized(len: usize) -> Self {
        let framing = OVERSIZED_START.len() + OVERSIZED_END.len();
        if len >= framing {
            Self::Oversized {
                start: Some(Bytes::from_static(OVERSIZED_START)),
                filler: len - framing,
                end: Some(Bytes::from_static(OVERSIZED_END)),
            }
        } else {
            Self::Oversized {
                start: None,
                filler: len,
                end: None,
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let data = |bytes| Poll::Ready(Some(Ok(Frame::data(bytes))));
        match self.get_mut() {
            Self::Full(bytes) => bytes.take().map_or(Poll::Ready(None), data),
            Self::Oversized { start, filler, end } => {
                if let Some(start) = start.take() {
                    return data(start);
                }
                if *filler > 0 {
                    let n = (*filler).min(FILLER.len());
                    *filler -= n;
                    return data(Bytes::from_static(&FILLER[..n]));
                }
                end.take().map_or(Poll::Ready(None), data)
            }
            Self::Truncated {
                data: bytes,
                flushed,
            } => {
                if let Some(bytes) = bytes.take() {
                    return data(bytes);
                }
                if !*flushed {
                    // Pending once, so that hyper writes out the head and the bytes so far
                    // before the error makes it drop the connection.
                    *flushed = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(io::Error::other(
                    "closing the connection mid-body, as the fault asks",
                ))))
            }
            Self::Trickle {
                data: bytes,
                wait,
                interval,
            } => {
                if bytes.is_empty() {
                    return Poll::Ready(None);
                }
                std::task::ready!(wait.as_mut().poll(cx));
                let deadline = tokio::time::Instant::now() + *interval;
                wait.as_mut().reset(deadline);
                data(bytes.split_to(1))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Oversized { start, filler, end } => {
                start.is_none() && *filler == 0 && end.is_none()
            }
            Self::Truncated { .. } => false,
            Self::Trickle { data, .. } => data.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len) as u64;
        match self {
            Self::Full(bytes) => SizeHint::with_exact(len(bytes)),
            Self::Oversized { start, filler, end } => {
                SizeHint::with_exact(len(start) + *filler as u64 + len(end))
            }
            // Unknown, so that hyper sends the `Content-Length` header as set.
            Self::Truncated { .. } => SizeHint::default(),
            Self::Trickle { data, .. } => SizeHint::with_exact(data.len() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::auth::ClientAuth;
    use crate::error::{Error, ErrorCode};
    use crate::request::TokenRequest;

    /// Sends raw bytes and reads the whole answer (the request must ask to close).
    fn raw_exchange(server: &TestServer, request: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(server.local_addr()).expect("the server listens");
        stream.write_all(request).unwrap();
        read_until_closed(&mut stream)
    }

    /// Reads until the server closes the connection (a reset counts as a close).
    fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut buf = [0; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return raw,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return raw,
                Err(e) => panic!("reading the response failed: {e}"),
            }
        }
    }

    fn parse_raw(raw: &[u8]) -> Response<Vec<u8>> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut response = Response::builder().status(status);
        for line in lines {
            let (name, value) = line.split_once(": ").unwrap();
            response = response.header(name, value);
        }
        response.body(raw[split + 4..].to_vec()).unwrap()
    }

    fn http_bytes(server: &TestServer, request: &TokenRequest) -> Vec<u8> {
        let http_request = request.http_request();
        let mut raw = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            http_request.uri().path(),
            server.local_addr(),
            http_request.body().len()
        );
        for (name, value) in http_request.headers() {
            raw.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(http_request.body().secret());
        raw
    }

    fn send(server: &TestServer, request: &TokenRequest) -> Response<Vec<u8>> {
        parse_raw(&raw_exchange(server, &http_bytes(server, request)))
    }

    fn sent_at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn fetch(server: &TestServer, request: &TokenRequest) -> Result<crate::token::Token, Error> {
        request.parse_response(&send(server, request), sent_at())
    }

    fn demo(server: &TestServer) -> crate::request::TokenRequestBuilder {
        server.demo_credentials().token_request()
    }

    fn oauth_code(result: Result<crate::token::Token, Error>) -> (ErrorCode, u16) {
        let error = result.expect_err("an error response");
        let oauth = error
            .oauth()
            .unwrap_or_else(|| panic!("not an oauth error: {error}"));
        (oauth.code().clone(), oauth.status().as_u16())
    }

    fn claims(token: &crate::token::Token) -> Value {
        let parts: Vec<&str> = token.access_token().secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "an unsecured JWT has an empty signature");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "none", "typ": "at+jwt"}));
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }

    /// A form post with the given body, by `client_secret_post` unless the body says otherwise.
    fn post_form(server: &TestServer, extra_headers: &str, body: &str) -> Response<Vec<u8>> {
        let raw = format!(
            "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             content-type: application/x-www-form-urlencoded\r\n{extra_headers}\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        parse_raw(&raw_exchange(server, raw.as_bytes()))
    }

    fn error_code(response: &Response<Vec<u8>>) -> String {
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        body["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn issues_a_token_by_basic_with_claims_rfc6749_5_1() {
        let server = TestServer::start();
        let request = demo(&server)
            .scope("read")
            .audience(DEMO_AUDIENCE)
            .build()
            .unwrap();
        let response = send(&server, &request);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let token = request.parse_response(&response, sent_at()).unwrap();
        assert_eq!(token.token_type(), &crate::token::TokenType::Bearer);
        assert_eq!(token.scope(), Some("read"));
        assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
        let claims = claims(&token);
        assert_eq!(claims["iss"], json!(server.url("")));
        assert_eq!(claims["sub"], json!(DEMO_CLIENT_ID));
        assert_eq!(claims["client_id"], json!(DEMO_CLIENT_ID));
        assert_eq!(claims["aud"], json!(DEMO_AUDIENCE));
        assert_eq!(claims["scope"], json!("read"));
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64(), Some(iat + 3600));
        assert!(claims["jti"].is_string());
    }

    #[test]
    fn without_scope_grants_every_allowed_scope_rfc6749_3_3() {
        let server = TestServer::start();
        let token = fetch(&server, &demo(&server).build().unwrap()).unwrap();
        assert_eq!(token.scope(), Some("read write"));
        assert!(claims(&token).get("aud").is_none());
        let second = fetch(&server, &demo(&server).build().unwrap()).unwrap();
        assert_ne!(claims(&token)["jti"], claims(&second)["jti"]);
    }

    #[test]
    fn decodes_basic_credentials_rfc6749_2_3_1() {
        let server = TestServer::builder()
            .client(TestClient::new("id:1 é", "p:a ss+%&=").scopes(["x"]))
            .start();
        let client = ClientCredentials::new(
            server.token_url(),
            "id:1 é",
            ClientSecret::new("p:a ss+%&="),
        );
        let token = fetch(&server, &client.token_request().build().unwrap()).unwrap();
        assert_eq!(claims(&token)["sub"], json!("id:1 é"));
        // `+` is a form-encoded space.
        let server = TestServer::builder()
            .client(TestClient::new("a b", "c d"))
            .start();
        let header = format!("authorization: Basic {}\r\n", STANDARD.encode("a+b:c+d"));
        let response = post_form(&server, &header, "grant_type=client_credentials");
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn accepts_client_secret_post() {
        let server = TestServer::start();
        let client = ClientCredentials::with_auth(
            server.token_url(),
            DEMO_CLIENT_ID,
            ClientAuth::SecretPost(ClientSecret::new(DEMO_CLIENT_SECRET)),
        )
        .unwrap();
        let request = client
            .token_request()
            .scope("write")
            .resource(DEMO_AUDIENCE)
            .build()
            .unwrap();
        let token = fetch(&server, &request).unwrap();
        assert_eq!(token.scope(), Some("write"));
        assert_eq!(claims(&token)["aud"], json!(DEMO_AUDIENCE));
    }

    #[test]
    fn invalid_client_is_401_with_a_challenge_rfc6749_5_2() {
        let server = TestServer::builder()
            .client(
                TestClient::new("basic-only", "s").auth_methods([AuthMethod::ClientSecretBasic]),
            )
            .start();
        let wrong_secret = ClientCredentials::new(
            server.token_url(),
            DEMO_CLIENT_ID,
            ClientSecret::new("nope"),
        );
        let request = wrong_secret.token_request().build().unwrap();
        let response = send(&server, &request);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Basic realm="test-server""#
        );
        let error = request.parse_response(&response, sent_at()).unwrap_err();
        let oauth = error.oauth().unwrap();
        assert_eq!(oauth.code(), &ErrorCode::InvalidClient);
        assert_eq!(oauth.challenges()[0].realm(), Some(REALM));
        assert!(!error.to_string().contains("nope"));

        let unknown = ClientCredentials::new(server.token_url(), "who", ClientSecret::new("x"));
        let result = fetch(&server, &unknown.token_request().build().unwrap());
        assert_eq!(oauth_code(result), (ErrorCode::InvalidClient, 401));

        let post_not_allowed = ClientCredentials::with_auth(
            server.token_url(),
            "basic-only",
            ClientAuth::SecretPost(ClientSecret::new("s")),
        )
        .unwrap();
        let result = fetch(&server, &post_not_allowed.token_request().build().unwrap());
        assert_eq!(oauth_code(result), (ErrorCode::InvalidClient, 401));

        let no_secret =
            ClientCredentials::with_auth(server.token_url(), DEMO_CLIENT_ID, ClientAuth::None)
                .unwrap();
        let result = fetch(&server, &no_secret.token_request().build().unwrap());
        assert_eq!(oauth_code(result), (ErrorCode::InvalidClient, 401));

        let response = post_form(
            &server,
            "authorization: Bearer abc\r\n",
            "grant_type=client_credentials",
        );
        assert_eq!(error_code(&response), "invalid_client");
        let response = post_form(&server, "", "grant_type=client_credentials");
        assert_eq!(error_code(&response), "invalid_client");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn unsupported_grant_type_rfc6749_5_2() {
        let server = TestServer::start();
        let response = post_form(
            &server,
            "",
            "grant_type=password&client_id=demo-client&client_secret=demo-secret",
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&response), "unsupported_grant_type");
    }

    #[test]
    fn unauthorized_client_rfc6749_5_2() {
        let server = TestServer::builder()
            .client(TestClient::new("c", "s").grant_allowed(false))
            .start();
        let client = ClientCredentials::new(server.token_url(), "c", ClientSecret::new("s"));
        let result = fetch(&server, &client.token_request().build().unwrap());
        assert_eq!(oauth_code(result), (ErrorCode::UnauthorizedClient, 400));
    }

    #[test]
    fn invalid_scope_rfc6749_5_2() {
        let server = TestServer::start();
        let result = fetch(&server, &demo(&server).scope("read admin").build().unwrap());
        let error = result.unwrap_err();
        let oauth = error.oauth().unwrap();
        assert_eq!(oauth.code(), &ErrorCode::InvalidScope);
        assert!(oauth.description().unwrap().contains("admin"));
    }

    #[test]
    fn invalid_target_rfc8707_2() {
        let server = TestServer::start();
        let by_audience = demo(&server)
            .audience("https://other.example")
            .build()
            .unwrap();
        assert_eq!(
            oauth_code(fetch(&server, &by_audience)),
            (ErrorCode::InvalidTarget, 400)
        );
        let by_resource = demo(&server)
            .resource(DEMO_AUDIENCE)
            .resource("https://other.example")
            .build()
            .unwrap();
        assert_eq!(
            oauth_code(fetch(&server, &by_resource)),
            (ErrorCode::InvalidTarget, 400)
        );
    }

    #[test]
    fn invalid_request_rfc6749_3_2() {
        let server = TestServer::start();
        let creds = "client_id=demo-client&client_secret=demo-secret";
        let repeated = post_form(
            &server,
            "",
            &format!("grant_type=client_credentials&{creds}&scope=read&scope=write"),
        );
        assert_eq!(repeated.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&repeated), "invalid_request");
        // `resource` may repeat (RFC 8707 §2); empty values count as omitted (RFC 6749 §3.1).
        let resources = post_form(
            &server,
            "",
            &format!(
                "grant_type=client_credentials&{creds}&scope=&resource=https%3A%2F%2Fapi.example.com&resource=https%3A%2F%2Fapi.example.com"
            ),
        );
        assert_eq!(resources.status(), StatusCode::OK);
        let missing = post_form(&server, "", creds);
        assert_eq!(error_code(&missing), "invalid_request");
        let basic = format!(
            "authorization: Basic {}\r\n",
            STANDARD.encode("demo-client:demo-secret")
        );
        let two_methods = post_form(
            &server,
            &basic,
            "grant_type=client_credentials&client_secret=demo-secret",
        );
        assert_eq!(error_code(&two_methods), "invalid_request");
        let other_id = post_form(&server, &basic, "grant_type=client_credentials&client_id=x");
        assert_eq!(error_code(&other_id), "invalid_request");
        let json = raw_exchange(
            &server,
            b"POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        );
        assert_eq!(error_code(&parse_raw(&json)), "invalid_request");
    }

    #[test]
    fn other_paths_and_methods() {
        let server = TestServer::start();
        let get = parse_raw(&raw_exchange(
            &server,
            b"GET /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        ));
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get.headers()[ALLOW], "POST");
        let other = parse_raw(&raw_exchange(
            &server,
            b"POST /oauth/token HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        ));
        assert_eq!(other.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn refuses_bodies_over_the_limit() {
        let server = TestServer::start();
        let declared = format!(
            "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
            MAX_REQUEST_BODY_LEN + 1
        );
        let response = parse_raw(&raw_exchange(&server, declared.as_bytes()));
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // Without a length, the body is read through the limit.
        let shared = Arc::clone(&server.shared);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_REQUEST_BODY_LEN + 1]));
        let request = Request::post("/token")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .unwrap();
        let response = runtime.block_on(handle(&shared, request));
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn expires_in_can_be_left_out() {
        let server = TestServer::builder().expires_in(None).start();
        let token = fetch(&server, &demo(&server).build().unwrap()).unwrap();
        assert_eq!(token.expires_in(), None);
        assert!(claims(&token).get("exp").is_none());
    }

    #[test]
    fn status_and_retry_faults() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.push_fault(Fault::Status(StatusCode::BAD_GATEWAY));
        server.push_fault(Fault::TooManyRequests {
            retry_after: Duration::from_millis(1500),
        });
        server.push_fault(Fault::ServiceUnavailable {
            retry_after: Duration::from_secs(7),
        });
        server.push_fault(Fault::Status(StatusCode::NO_CONTENT));

        let bad_gateway = send(&server, &request);
        assert_eq!(bad_gateway.status(), StatusCode::BAD_GATEWAY);
        assert!(
            bad_gateway.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let error = request.parse_response(&bad_gateway, sent_at()).unwrap_err();
        assert!(matches!(error, Error::UnexpectedResponse(_)), "{error:?}");
        assert!(error.is_retryable());

        let limited = send(&server, &request);
        assert_eq!(limited.headers()[RETRY_AFTER], "2");
        let error = request.parse_response(&limited, sent_at()).unwrap_err();
        assert_eq!(error.status(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(
            error.retry_after(),
            Some(crate::error::RetryAfter::Delay(Duration::from_secs(2)))
        );

        let unavailable = send(&server, &request);
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers()[RETRY_AFTER], "7");

        let no_content = send(&server, &request);
        assert_eq!(no_content.status(), StatusCode::NO_CONTENT);
        assert!(no_content.body().is_empty());

        assert!(fetch(&server, &request).is_ok(), "the queue is empty again");
    }

    #[test]
    fn a_trickled_body_arrives_one_byte_at_a_time_and_whole() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.push_fault(Fault::TrickleBody {
            interval: Duration::from_millis(10),
        });
        let mut stream = TcpStream::connect(server.local_addr()).expect("the server listens");
        stream.write_all(&http_bytes(&server, &request)).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0; 8192];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert_ne!(n, 0, "the head arrives");
            raw.extend_from_slice(&buf[..n]);
        }
        let head_len = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        if raw.len() == head_len {
            let n = stream.read(&mut buf).unwrap();
            raw.extend_from_slice(&buf[..n]);
        }
        // Sent whole, the body would be here by now; trickled, it takes 10 ms a byte.
        assert!(raw.len() - head_len < TRICKLED_TOKEN.len() / 2, "{raw:?}");
        raw.extend(read_until_closed(&mut stream));
        let response = parse_raw(&raw);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_LENGTH],
            TRICKLED_TOKEN.len().to_string()
        );
        let token = request.parse_response(&response, sent_at()).unwrap();
        assert_eq!(token.access_token().secret(), "trickled-token");
    }

    #[test]
    fn a_temporary_redirect_is_a_307_with_its_location() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.push_fault(Fault::TemporaryRedirect {
            location: server.url("/elsewhere"),
        });
        let response = send(&server, &request);
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()[LOCATION], server.url("/elsewhere"));
    }

    #[test]
    fn redirect_html_and_delay_faults() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.push_fault(Fault::Redirect {
            location: server.url("/elsewhere"),
        });
        server.push_fault(Fault::HtmlBody);
        server.push_fault(Fault::Delay(Duration::from_millis(20)));

        match fetch(&server, &request) {
            Err(Error::Redirect {
                status, location, ..
            }) => {
                assert_eq!(status, StatusCode::FOUND);
                assert_eq!(location, Some(server.url("/elsewhere")));
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
        let html = send(&server, &request);
        assert_eq!(html.status(), StatusCode::OK);
        assert!(
            html.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(matches!(
            request.parse_response(&html, sent_at()),
            Err(Error::InvalidResponse { .. })
        ));
        assert!(
            fetch(&server, &request).is_ok(),
            "a delay then a normal answer"
        );
    }

    #[test]
    fn oversized_body_fault_streams_exactly_len_bytes() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        let len = 100_000;
        server.push_fault(Fault::OversizedBody { len });
        let response = send(&server, &request);
        assert_eq!(response.body().len(), len);
        assert_eq!(response.headers()[CONTENT_LENGTH], len.to_string().as_str());
        let rules = crate::response::ResponseRules::default().with_max_body_len(len - 1);
        assert!(matches!(
            rules.parse(&response, sent_at()),
            Err(Error::BodyTooLarge { .. })
        ));
        let token = crate::response::ResponseRules::default()
            .with_max_body_len(len)
            .parse(&response, sent_at())
            .unwrap();
        assert!(token.access_token().secret().len() > 99_000);
        server.push_fault(Fault::OversizedBody { len: 5 });
        assert_eq!(send(&server, &request).body(), b"aaaaa");
    }

    #[test]
    fn close_mid_body_fault_sends_less_than_it_declares() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.push_fault(Fault::CloseMidBody);
        let response = send(&server, &request);
        let declared: usize = response.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(response.body().len() < declared);
        assert!(
            fetch(&server, &request).is_ok(),
            "the next connection is served"
        );
    }

    #[test]
    fn never_answer_holds_the_connection_until_the_server_drops() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.push_fault(Fault::NeverAnswer);
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.write_all(&http_bytes(&server, &request)).unwrap();
        // Not a timing assertion: whatever the delay, no answer may come.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0; 1];
        let err = stream.read(&mut buf).expect_err("no answer");
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        stream.set_read_timeout(None).unwrap();
        drop(server);
        assert!(
            read_until_closed(&mut stream).is_empty(),
            "closed without an answer"
        );
    }

    #[test]
    fn sticky_fault_until_cleared_and_queue_first() {
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        server.set_fault(Some(Fault::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        server.push_fault(Fault::Status(StatusCode::BAD_GATEWAY));
        assert_eq!(send(&server, &request).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            send(&server, &request).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            send(&server, &request).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        server.set_fault(None);
        assert_eq!(send(&server, &request).status(), StatusCode::OK);
    }

    #[test]
    fn counts_every_request() {
        let server = TestServer::start();
        assert_eq!(server.requests_served(), 0);
        let request = demo(&server).build().unwrap();
        fetch(&server, &request).unwrap();
        server.push_fault(Fault::Status(StatusCode::BAD_GATEWAY));
        send(&server, &request);
        raw_exchange(
            &server,
            b"GET /elsewhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        // Two requests on one kept-alive connection count twice.
        let mut keep_alive = http_bytes(&server, &request);
        let text = String::from_utf8(keep_alive.clone())
            .unwrap()
            .replace("connection: close\r\n", "");
        keep_alive = text.into_bytes();
        keep_alive.extend_from_slice(&http_bytes(&server, &request));
        let raw = raw_exchange(&server, &keep_alive);
        assert_eq!(
            String::from_utf8_lossy(&raw)
                .matches("HTTP/1.1 200 OK")
                .count(),
            2
        );
        assert_eq!(server.requests_served(), 5);
    }

    #[tokio::test]
    async fn starts_and_stops_inside_a_tokio_runtime() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let server = TestServer::start();
        let request = demo(&server).build().unwrap();
        let mut stream = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        stream
            .write_all(&http_bytes(&server, &request))
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let token = request.parse_response(&parse_raw(&raw), sent_at()).unwrap();
        assert_eq!(token.scope(), Some("read write"));
        drop(server);
    }

    #[test]
    fn handle_is_send_sync_and_debug_hides_secrets() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TestServer>();
        let client = TestClient::new("c", "hunter2");
        assert!(!format!("{client:?}").contains("hunter2"));
        let server = TestServer::start();
        assert!(format!("{server:?}").contains("127.0.0.1"));
        assert_eq!(server.token_url().to_string(), server.url("/token"));
    }
}
