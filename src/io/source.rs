//! The shared token sources of the adapters: a [`TokenCache`] behind a lock, shared by every
//! task (or thread) that needs a token, with one fetch at a time and refreshes that nobody
//! holding a valid token waits for.
//!
//! The cache decides; this module reads the clock, draws the jitter, sends the cache's
//! tickets through an adapter's `fetch_token`, and wakes the callers that wait for a fetch.
//! How it follows the cache's rules ("Sharing it between tasks" in [`TokenCache`]'s docs):
//!
//! - A hit reads the cache's current answer ([`TokenCache::peek_until`], set again under the
//!   cache's lock after every change) under a read lock, compares one instant and clones an
//!   `Arc`: no allocation, no hashing, no cache lock, so callers on many threads do not queue
//!   behind each other. Anything else locks the cache for one [`TokenCache::poll`]. No lock is
//!   held across an await or a fetch.
//! - [`Lookup::Fetch`]: the caller fetches, hands the outcome in, and wakes the waiters. A guard
//!   gives the ticket up ([`TokenCache::abandon`]) if the caller is cancelled (its future
//!   dropped, or a panic in the fetch), and wakes the waiters, one of which then gets a ticket
//!   of its own.
//! - [`Lookup::Pending`]: the caller registers for the wake-up *before* it polls, so none is
//!   lost, and waits for it or for the fetch's deadline.
//! - [`Lookup::Refresh`]: the caller returns the valid token at once; the async sources make
//!   the refresh in a spawned task, the blocking source makes it there and then.
//! - [`Lookup::BackOff`]: the caller fails at once with the shared error.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::Notify;

use crate::cache::{CachePolicy, FetchTicket, Lookup, TokenCache};
use crate::error::{Error, TransportKind};
use crate::request::TokenRequest;
use crate::token::Token;

#[cfg(feature = "reqwest-blocking")]
pub(crate) mod blocking;

/// What a fetch by an adapter gives back.
type Fetched = Result<Token, Error>;

/// What every source answers: a token, or the failure shared by every caller it reached.
pub(crate) type Outcome = Result<Arc<Token>, Arc<Error>>;

/// The instant for the cache's decisions.
#[allow(clippy::disallowed_methods)] // The source does the IO for the cache, so it reads the clock.
fn now() -> Instant {
    Instant::now()
}

/// The wall-clock time a fetch starts: a failure's `Retry-After` date is counted from it.
#[allow(clippy::disallowed_methods)] // The source does the IO for the cache, so it reads the clock.
fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// A random word for the cache's jitter. Jitter only has to differ between processes and
/// tokens, not resist prediction: the operating system's random source when it answers, else
/// std's per-process random hash keys (which `RandomState::new` steps on every call).
fn random() -> u64 {
    getrandom::u64().unwrap_or_else(|_| RandomState::new().hash_one(0_u8))
}

/// What the clones of one source share, async or blocking: the request, its cache, and the
/// cache's current hit.
struct Core {
    request: TokenRequest,
    policy: CachePolicy,
    cache: Mutex<TokenCache>,
    /// The token a hit gets, and until when: set from [`TokenCache::peek_until`] under the
    /// cache's lock after every change, so that a hit neither locks the cache nor hashes the
    /// request.
    hit: RwLock<Option<Hit>>,
}

struct Hit {
    token: Arc<Token>,
    until: Instant,
}

impl Core {
    fn new(request: TokenRequest, policy: CachePolicy) -> Self {
        Self {
            request,
            policy,
            cache: Mutex::new(TokenCache::new(policy)),
            hit: RwLock::new(None),
        }
    }

    /// The cached token, if it is a plain hit at `now`: the fast path, under a read lock.
    fn peek(&self, now: Instant) -> Option<Arc<Token>> {
        // Nothing panics while these locks are held: a poisoned lock holds consistent data.
        let hit = self.hit.read().unwrap_or_else(PoisonError::into_inner);
        hit.as_ref()
            .filter(|hit| now < hit.until)
            .map(|hit| Arc::clone(&hit.token))
    }

    /// Does `change` to the cache, at the time read under its lock, and sets the hit again.
    fn change<R>(&self, change: impl FnOnce(&mut TokenCache, Instant) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        let result = change(&mut cache, now);
        let hit = cache
            .peek_until(&self.request, now)
            .map(|(token, until)| Hit { token, until });
        *self.hit.write().unwrap_or_else(PoisonError::into_inner) = hit;
        result
    }

    fn poll(&self) -> Lookup {
        self.change(|cache, now| cache.poll(&self.request, now))
    }

    /// Hands a fetch's outcome to the cache.
    fn complete(&self, ticket: FetchTicket, fetched: Fetched, sent_at: SystemTime) -> Outcome {
        let random = random();
        self.change(|cache, now| cache.handle_result(ticket, fetched, sent_at, now, random))
    }

    /// The cached token if it has not expired at `now`, whether or not its refresh is due.
    #[cfg(feature = "reqwest-blocking")]
    fn valid(&self, now: Instant) -> Option<Arc<Token>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.valid(&self.request, now)
    }

    fn abandon(&self, ticket: FetchTicket) {
        self.change(|cache, _| cache.abandon(ticket));
    }

    fn invalidate(&self, rejected: &Token) -> bool {
        self.change(|cache, _| cache.invalidate(&self.request, rejected))
    }

    fn force_refresh(&self) -> bool {
        self.change(|cache, _| cache.force_refresh(&self.request))
    }
}

/// A boxed fetch by an async adapter.
type FetchFuture = Pin<Box<dyn Future<Output = Fetched> + Send>>;

/// The async source behind `reqwest::TokenSource` and `hyper::TokenSource`: the adapter
/// appears only as the function that fetches.
pub(crate) struct AsyncSource {
    core: Core,
    /// Wakes the callers waiting for a fetch, whenever one ends (or is given up).
    changed: Notify,
    fetch: Box<dyn Fn(TokenRequest) -> FetchFuture + Send + Sync>,
}

impl AsyncSource {
    pub(crate) fn new<F, Fut>(request: TokenRequest, policy: CachePolicy, fetch: F) -> Arc<Self>
    where
        F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Fetched> + Send + 'static,
    {
        Arc::new(Self {
            core: Core::new(request, policy),
            changed: Notify::new(),
            fetch: Box::new(move |request| Box::pin(fetch(request))),
        })
    }

    pub(crate) fn request(&self) -> &TokenRequest {
        &self.core.request
    }

    pub(crate) fn policy(&self) -> &CachePolicy {
        &self.core.policy
    }

    pub(crate) fn invalidate(&self, rejected: &Token) -> bool {
        self.core.invalidate(rejected)
    }

    pub(crate) fn force_refresh(&self) -> bool {
        self.core.force_refresh()
    }

    /// A valid token: cached, or fetched by this caller or the one already fetching.
    pub(crate) async fn token(self: &Arc<Self>) -> Outcome {
        if let Some(token) = self.core.peek(now()) {
            return Ok(token);
        }
        loop {
            // Registered before the poll: a fetch that ends after it wakes this caller.
            let changed = self.changed.notified();
            match self.core.poll() {
                Lookup::Ready(token) => return Ok(token),
                Lookup::Refresh { token, ticket } => {
                    self.refresh(ticket);
                    return Ok(token);
                }
                Lookup::Fetch(ticket) => return self.fetch(ticket).await,
                Lookup::Pending { deadline } => {
                    // At the deadline the cache gives the fetch up: poll again either way.
                    let _ = tokio::time::timeout_at(deadline.into(), changed).await;
                }
                Lookup::BackOff { error, .. } => return Err(error),
            }
        }
    }

    /// Makes a refresh in a task of its own, so that no caller waits for it.
    fn refresh(self: &Arc<Self>, ticket: FetchTicket) {
        // Outside a Tokio runtime neither adapter can send anything: the ticket is given up
        // and the token served until it expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let source = Arc::clone(self);
            drop(runtime.spawn(async move {
                let _ = source.fetch(ticket).await;
            }));
        } else {
            self.core.abandon(ticket);
            self.changed.notify_waiters();
        }
    }

    /// Makes the ticket's fetch, hands the outcome to the cache and wakes the waiters; gives
    /// the ticket up if dropped first.
    async fn fetch(&self, ticket: FetchTicket) -> Outcome {
        let guard = Abandon {
            source: self,
            ticket: Some(ticket),
        };
        let sent_at = wall_now();
        let fetch = (self.fetch)(self.core.request.clone());
        let fetched = tokio::time::timeout(self.core.policy.fetch_timeout(), fetch)
            .await
            .unwrap_or_else(|elapsed| {
                Err(Error::Transport {
                    kind: TransportKind::Timeout,
                    source: Box::new(elapsed),
                })
            });
        guard.finish(fetched, sent_at)
    }
}

/// Gives a ticket up and wakes the waiters, unless it finishes: the fetch's future was
/// dropped.
struct Abandon<'a> {
    source: &'a AsyncSource,
    ticket: Option<FetchTicket>,
}

impl Abandon<'_> {
    /// Hands the fetch's outcome to the cache and wakes the waiters.
    fn finish(mut self, fetched: Fetched, sent_at: SystemTime) -> Outcome {
        let Some(ticket) = self.ticket.take() else {
            // Not reached: only `finish` takes the ticket, and it consumes the guard.
            return fetched.map(Arc::new).map_err(Arc::new);
        };
        let result = self.source.core.complete(ticket, fetched, sent_at);
        self.source.changed.notify_waiters();
        result
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.source.core.abandon(ticket);
            self.source.changed.notify_waiters();
        }
    }
}

impl std::fmt::Debug for AsyncSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("request", &self.core.request)
            .field("policy", &self.core.policy)
            .finish_non_exhaustive()
    }
}

/// The methods of every async adapter's `TokenSource`, a newtype over `Arc<AsyncSource>`: one
/// definition, so that the adapters' sources cannot drift apart.
macro_rules! async_source_methods {
    () => {
        /// A valid token: the cached one, or one fetched now by this caller or by the caller
        /// already fetching.
        ///
        /// # Errors
        ///
        /// The failure of the fetch this caller made or waited for, or, while the source
        /// backs off after it ([`CachePolicy`]), the same failure again without a request.
        /// One failure reaches every caller that waited for it, hence the `Arc`: read it as
        /// an [`Error`] (`error.is_retryable()`, `error.status()`), or let `?` turn it into a
        /// boxed error (`Arc<Error>` is a `std::error::Error`).
        pub async fn token(&self) -> Result<Arc<Token>, Arc<Error>> {
            self.0.token().await
        }

        /// Drops the cached token if it is `rejected`, the token an API just refused (HTTP
        /// 401), so that the next call fetches a new one. Returns whether it was dropped: a
        /// token already replaced stays, so many callers that got a 401 with the same token
        /// cause one new fetch. A back-off under way still applies.
        pub fn invalidate(&self, rejected: &Token) -> bool {
            self.0.invalidate(rejected)
        }

        /// Makes the cached token due for refresh: the next call starts a refresh in the
        /// background and is served the current token until the new one comes. Returns
        /// whether there was a token. A fetch or back-off under way is not cut short.
        pub fn force_refresh(&self) -> bool {
            self.0.force_refresh()
        }

        /// The token request the source sends.
        #[must_use]
        pub fn request(&self) -> &TokenRequest {
            self.0.request()
        }

        /// The source's cache policy.
        #[must_use]
        pub fn policy(&self) -> &CachePolicy {
            self.0.policy()
        }
    };
}

/// The reqwest adapter's token source, re-exported as `client_credentials::reqwest::TokenSource`.
#[cfg(feature = "reqwest")]
pub(crate) mod for_reqwest {
    use std::fmt;
    use std::sync::Arc;

    use super::AsyncSource;
    use crate::cache::CachePolicy;
    use crate::error::Error;
    use crate::request::TokenRequest;
    use crate::token::Token;

    /// A valid token on every call, for every task of a service: one [`TokenCache`] shared by
    /// all clones, fetching with a [`reqwest::Client`](::reqwest::Client).
    ///
    /// Ask it for a token before every API call ([`token`](Self::token)):
    ///
    /// - a cached token costs a read lock and an `Arc` clone: no allocation, no waiting, and
    ///   callers on many threads do not queue behind each other;
    /// - when there is no valid token, the first caller fetches one and every other caller
    ///   waits for that one request (single-flight): a hundred tasks starting at once send
    ///   one request, not a hundred;
    /// - when the token is only due for refresh, the caller gets it at once and the refresh
    ///   runs in a spawned task: no caller holding a valid token waits for a refresh, and
    ///   while refreshes fail, the valid token keeps being served;
    /// - after a failed fetch, every caller fails at once with the same error, without a
    ///   request to the server, until the back-off is over;
    /// - if the API refuses a token (HTTP 401), [`invalidate`](Self::invalidate) it: the next
    ///   call fetches a new one, however many tasks saw the 401.
    ///
    /// The timing (the refresh margin and its jitter, the lifetime of a token without
    /// `expires_in`, back-off, `Retry-After`) is the [`CachePolicy`]'s: see
    /// [`with_policy`](Self::with_policy). A cancelled caller (its future dropped mid-fetch)
    /// gives its fetch up, and a waiting caller takes over.
    ///
    /// Use it inside a Tokio runtime with the time driver on (`#[tokio::main]` has it), as
    /// reqwest's own timeouts need: it spawns refreshes, and gives a fetch up after
    /// [`CachePolicy::fetch_timeout`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use client_credentials::http::{StatusCode, header::AUTHORIZATION};
    /// use client_credentials::reqwest::TokenSource;
    /// use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let client = ClientCredentials::new(
    ///     TokenUrl::new("https://idp.example.com/oauth/token")?,
    ///     "my-client",
    ///     ClientSecret::new("s3cr3t"),
    /// );
    /// let request = client.token_request().scope("read:things").build()?;
    /// let http = client_credentials::reqwest::recommended_client();
    /// let tokens = TokenSource::new(http.clone(), request); // clone it into every task
    ///
    /// // On every API call:
    /// let token = tokens.token().await?;
    /// let response = http
    ///     .get("https://api.example.com/things")
    ///     .header(AUTHORIZATION, token.authorization_header()?)
    ///     .send()
    ///     .await?;
    /// if response.status() == StatusCode::UNAUTHORIZED {
    ///     tokens.invalidate(&token); // revoked early: the next call gets a new one
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// [`TokenCache`]: crate::TokenCache
    #[derive(Clone)]
    pub struct TokenSource(Arc<AsyncSource>);

    impl TokenSource {
        /// A source of tokens for `request`, fetched with `client` by
        /// [`fetch_token`](crate::io::reqwest::fetch_token), by the default [`CachePolicy`].
        ///
        /// `client` must not follow redirects: use
        /// [`recommended_client`](crate::io::reqwest::recommended_client) or see the
        /// [module docs](crate::io::reqwest#redirects).
        #[must_use]
        pub fn new(client: ::reqwest::Client, request: TokenRequest) -> Self {
            Self::with_policy(client, request, CachePolicy::new())
        }

        /// A source of tokens for `request`, fetched with `client`, by `policy`.
        #[must_use]
        pub fn with_policy(
            client: ::reqwest::Client,
            request: TokenRequest,
            policy: CachePolicy,
        ) -> Self {
            Self(AsyncSource::new(request, policy, move |request| {
                let client = client.clone();
                async move { crate::io::reqwest::fetch_token(&client, &request).await }
            }))
        }

        async_source_methods!();
    }

    impl fmt::Debug for TokenSource {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }
}

/// The hyper adapter's token source, re-exported as `client_credentials::hyper::TokenSource`.
#[cfg(feature = "hyper")]
pub(crate) mod for_hyper {
    use std::fmt;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::Connect;

    use super::AsyncSource;
    use crate::cache::CachePolicy;
    use crate::error::Error;
    use crate::request::TokenRequest;
    use crate::token::Token;

    /// A valid token on every call, for every task of a service: one [`TokenCache`] shared by
    /// all clones, fetching with a hyper [`Client`] over any connector.
    ///
    /// Ask it for a token before every API call ([`token`](Self::token)). A cached token costs
    /// a read lock and an `Arc` clone, without allocation or waiting; when there is none, one
    /// caller fetches and the others wait for that one request; a refresh that falls due runs
    /// in a spawned task while the valid token is served; after a failure, callers fail at
    /// once until the back-off is over; [`invalidate`](Self::invalidate) a token the API
    /// refused (HTTP 401). The timing is the [`CachePolicy`]'s. It works as the reqwest
    /// adapter's `TokenSource` does (feature `reqwest`), whose docs say more. Its type has no
    /// parameter: the connector's type stays inside.
    ///
    /// Use it inside a Tokio runtime with the time driver on: it spawns refreshes, and bounds
    /// every fetch by [`CachePolicy::fetch_timeout`], which is the exchange's timeout.
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use client_credentials::hyper::TokenSource;
    /// use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
    /// use http_body_util::Full;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let client = ClientCredentials::new(
    ///     TokenUrl::new("http://127.0.0.1:8080/token")?, // plain http: loopback only
    ///     "my-client",
    ///     ClientSecret::new("s3cr3t"),
    /// );
    /// let request = client.token_request().scope("read:things").build()?;
    /// let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    /// let tokens = TokenSource::new(http, request);
    ///
    /// let mut api_request = http::Request::get("http://127.0.0.1:8081/things").body(())?;
    /// let token = tokens.token().await?;
    /// token.authorize(&mut api_request)?; // `Authorization: Bearer …`, marked sensitive
    /// # Ok(()) }
    /// ```
    ///
    /// [`TokenCache`]: crate::TokenCache
    #[derive(Clone)]
    pub struct TokenSource(Arc<AsyncSource>);

    impl TokenSource {
        /// A source of tokens for `request`, fetched with `client` by
        /// [`fetch_token`](crate::io::hyper::fetch_token), by the default [`CachePolicy`].
        #[must_use]
        pub fn new<C>(client: Client<C, Full<Bytes>>, request: TokenRequest) -> Self
        where
            C: Connect + Clone + Send + Sync + 'static,
        {
            Self::with_policy(client, request, CachePolicy::new())
        }

        /// A source of tokens for `request`, fetched with `client`, by `policy`.
        #[must_use]
        pub fn with_policy<C>(
            client: Client<C, Full<Bytes>>,
            request: TokenRequest,
            policy: CachePolicy,
        ) -> Self
        where
            C: Connect + Clone + Send + Sync + 'static,
        {
            Self(AsyncSource::new(request, policy, move |request| {
                let client = client.clone();
                // The source bounds the exchange by the policy's fetch timeout.
                async move { crate::io::hyper::fetch_token(&client, &request, None).await }
            }))
        }

        async_source_methods!();
    }

    impl fmt::Debug for TokenSource {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }
}
