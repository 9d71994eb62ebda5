//! The server itself: its builder, its thread and runtime, and the accept loop.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use client_credentials::token::AccessToken;
use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
use tokio::sync::oneshot;

use super::access::{AccessGrant, AccessRefusal};
use super::client::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, TestClient};
use super::dpop::SeenJtis;
use super::endpoint::DEFAULT_EXPIRES_IN;
use super::endpoint::{Faults, Shared, handle};
use super::faults::Fault;
use super::resource::AccessState;
use super::tokens::SkewedClock;
use super::trust::{JwksError, TrustedIssuer};

/// Configures a [`TestServer`] before starting it.
///
/// It starts with the demo client registered ([`DEMO_CLIENT_ID`], [`DEMO_CLIENT_SECRET`],
/// [`DEMO_SCOPES`](crate::DEMO_SCOPES), [`DEMO_AUDIENCE`](crate::DEMO_AUDIENCE)) and tokens that live [`DEFAULT_EXPIRES_IN`] seconds.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestServerBuilder {
    clients: Vec<TestClient>,
    expires_in: Option<u64>,
    trusted: Vec<TrustedIssuer>,
    clock: SkewedClock,
}

impl TestServerBuilder {
    /// Skews the server's clock by `seconds` (positive: ahead of the real time), clamped to
    /// [`MAX_CLOCK_SKEW`](crate::MAX_CLOCK_SKEW): the `Date` header of every
    /// response, the issued tokens' `iat` and `exp`, the freshness of DPoP proofs and the
    /// times of client assertions all follow it, so a client whose clock disagrees with its
    /// server's can be tested.
    pub fn clock_skew(mut self, seconds: i64) -> Self {
        self.clock = SkewedClock::skewed(seconds);
        self
    }

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

    /// Makes the resource also accept the JWT access tokens of another issuer (RFC 9068), such
    /// as a real authorization server's: see [`TrustedIssuer`]. May be called again for more
    /// issuers.
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.trusted.retain(|t| t.issuer != issuer.issuer);
        self.trusted.push(issuer);
        self
    }

    /// [`trust`](Self::trust)s `issuer`, its keys read from `jwks_json` (the document at its
    /// `jwks_uri`), for tokens whose `aud` names `audience`.
    ///
    /// # Errors
    ///
    /// As [`TrustedIssuer::new`]: the JWKS is malformed, holds a private or unsupported key,
    /// or has no signing key.
    pub fn trust_issuer(
        self,
        issuer: &str,
        jwks_json: &str,
        audience: &str,
    ) -> Result<Self, JwksError> {
        Ok(self.trust(TrustedIssuer::new(issuer, jwks_json, audience)?))
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
        let issuer = format!("http://{addr}");
        let shared = Arc::new(Shared {
            access: AccessState::new(issuer.clone(), self.trusted),
            issuer,
            clients: self.clients,
            expires_in: self.expires_in,
            requests: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
            resource_requests: AtomicUsize::new(0),
            issued: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            clock: self.clock,
            assertion_jtis: SeenJtis::default(),
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

/// An embedded token endpoint and protected resource on `127.0.0.1`; dropping it stops the
/// server and its thread.
///
/// See the [module documentation](crate) for what it answers.
pub struct TestServer {
    addr: SocketAddr,
    token_url: TokenUrl,
    pub(super) shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the demo client ([`DEMO_CLIENT_ID`], [`DEMO_CLIENT_SECRET`],
    /// scopes [`DEMO_SCOPES`](crate::DEMO_SCOPES), audience and resource [`DEMO_AUDIENCE`](crate::DEMO_AUDIENCE)), returning once it
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
            trusted: Vec::new(),
            clock: SkewedClock::default(),
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

    /// How many requests have arrived at the token endpoint (`/token` or
    /// `/{tenant}/oauth2/v2.0/token`), not counting those
    /// that got a fault.
    #[must_use]
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// How many requests have arrived at the protected resource (under `/api/`), refused or
    /// not, including those that got a resource fault.
    #[must_use]
    pub fn resource_requests(&self) -> usize {
        self.shared.resource_requests.load(Ordering::SeqCst)
    }

    /// Queues a fault: the next request that arrives, on any path but the resource's, gets it.
    /// Faults are served first in, first out, one per request, and before the sticky fault of
    /// [`set_fault`](Self::set_fault).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults().queue.push_back(fault);
    }

    /// Makes every request, on any path but the resource's, get this fault (when none is
    /// queued), until it is set to `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.faults().sticky = fault;
    }

    /// Queues a fault for the protected resource: the next request under `/api/` gets it,
    /// before its token is checked. Served first in, first out, apart from the token
    /// endpoint's faults.
    pub fn push_resource_fault(&self, fault: Fault) {
        self.shared.faults().resource_queue.push_back(fault);
    }

    /// Revokes a token this server issued: the resource refuses it from now on with
    /// `invalid_token`. `false` if the server does not know the token (another server's, or
    /// forgotten past [`MAX_ISSUED_TOKENS`](crate::MAX_ISSUED_TOKENS)) or it was
    /// already revoked.
    pub fn revoke(&self, token: &AccessToken) -> bool {
        self.shared.access.tokens.revoke(token)
    }

    /// Revokes every token this server has issued and still remembers, returning how many were
    /// not already revoked. Tokens of trusted issuers are not affected.
    pub fn revoke_all(&self) -> usize {
        self.shared.access.tokens.revoke_all()
    }

    /// Whether DPoP proofs at the token endpoint must carry the server's nonce (RFC 9449 §8):
    /// one without it gets 400 `use_dpop_nonce` and the nonce in `DPoP-Nonce`. Off by default.
    /// While on, token responses carry the nonce too.
    pub fn require_token_nonce(&self, required: bool) {
        self.shared.access.token_nonce.require(required);
    }

    /// Whether DPoP proofs at the resource must carry the resource's nonce (RFC 9449 §9): one
    /// without it gets 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce", …` and the
    /// nonce in `DPoP-Nonce`. Off by default. While on, the resource's 200s carry the nonce too.
    pub fn require_resource_nonce(&self, required: bool) {
        self.shared.access.resource_nonce.require(required);
    }

    /// Replaces the resource's nonce with a fresh one: proofs with the old one get
    /// `use_dpop_nonce` (while nonces are required).
    pub fn rotate_resource_nonce(&self) {
        self.shared.access.resource_nonce.rotate();
    }

    /// Checks a request's access token exactly as the resource under `/api/` does, for a
    /// resource server of your own (a gRPC service, say) to accept this server's tokens.
    ///
    /// `uri` is the request's: a relative one (`/pkg.Service/Method`, as a server sees it) is
    /// taken as on this server (`http://127.0.0.1:PORT`) for the DPoP proof's `htu`, so a client
    /// that calls your server must make its proofs for an absolute URI you pass here. A path
    /// `/api/scope/<scope>/…` needs that scope; other paths any token of the server's.
    ///
    /// # Errors
    ///
    /// The [`AccessRefusal`] to answer with: its status, `WWW-Authenticate` and `DPoP-Nonce`.
    pub fn check_access(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<AccessGrant, AccessRefusal> {
        self.shared
            .access
            .check(method, uri, headers, self.shared.clock.now())
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

pub(super) async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
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
