//! The token source: a [`TokenCache`] behind a lock, shared by every task (or thread) that
//! needs a token, with one fetch at a time and refreshes that nobody holding a valid token waits
//! for. One async type, [`TokenSource`], whatever fetches (any [`Transport`], or a function of
//! yours); the adapters add their constructors in their own files, so this one imports none.
//!
//! The cache decides; this module reads the clock, draws the jitter, sends the cache's
//! tickets through the core's `fetch_token` (or the caller's function), and wakes the callers
//! that wait for a fetch.
//! How it follows the cache's rules ("Sharing it between tasks" in [`TokenCache`]'s docs):
//!
//! - A hit reads the cache's current answer ([`TokenCache::peek_until`], set again under the
//!   cache's lock after every change), compares one reading of a coarse clock and clones an
//!   `Arc`: no allocation, no hashing, and no lock but a read lock on a thread's first get of
//!   each new answer (each thread keeps the answers it last got), so callers on many threads do
//!   not queue behind each other. Anything else locks the cache for one [`TokenCache::poll`].
//!   No lock is held across an await or a fetch.
//! - [`Lookup::Fetch`]: the caller fetches, hands the outcome in, and wakes the waiters. A guard
//!   gives the ticket up ([`TokenCache::abandon`]) if the caller is cancelled (its future
//!   dropped, or a panic in the fetch), and wakes the waiters, one of which then gets a ticket
//!   of its own.
//! - [`Lookup::Pending`]: the caller registers for the wake-up *before* it polls, so none is
//!   lost, and waits for it or for the fetch's deadline.
//! - [`Lookup::Refresh`]: the caller returns the valid token at once; the async sources make
//!   the refresh in a spawned task, the blocking source makes it there and then.
//! - [`Lookup::BackOff`]: the caller fails at once with the shared error.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::Poll;
use std::time::{Instant, SystemTime};

use tokio::sync::Notify;

use crate::cache::policy::CachePolicy;
use crate::cache::{FetchTicket, Lookup, TokenCache};
use crate::client::ClientCredentials;
use crate::endpoint::TokenUrl;
use crate::error::Error;
use crate::io::environment::{
    HitInstant, SystemEnvironment, hit_now, hit_until, monotonic_now, random_word, wall_now,
};
use crate::observe;
use crate::request::{TokenRequest, TokenRequestBuilder};
use crate::secret::ClientSecret;
use crate::session::Session;
use crate::token::Token;
use crate::token_fetch::{Transport, fetch_token};

#[cfg(feature = "reqwest-blocking")]
pub(crate) mod blocking;
#[cfg(feature = "shared-cache")]
pub(crate) mod fleet;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// What a fetch by an adapter gives back.
type Fetched = Result<Token, Error>;

/// What every source answers: a token, or the failure shared by every caller it reached.
pub(crate) type Outcome = Result<Arc<Token>, Arc<Error>>;

/// The next [`Core`]'s identity for the threads' recent hits: never reused (a `u64` counted up
/// does not wrap).
static NEXT_CORE: AtomicU64 = AtomicU64::new(0);

/// How many sources' hits a thread keeps, each in the slot its identity picks.
const RECENT_HITS: usize = 4;

thread_local! {
    /// The hits this thread last got, so that its next get from the same source reads shared
    /// memory but writes none except the token's reference count: no lock, no atomic
    /// read-modify-write, which would cost more than the rest of a get. A hit kept here holds
    /// its token until the thread gets another hit into the slot, or ends.
    static RECENT: RefCell<[Option<RecentHit>; RECENT_HITS]> = const {
        RefCell::new([const { None }; RECENT_HITS])
    };
}

/// A hit a thread got from the source `core`, as of the source's `generation`.
struct RecentHit {
    core: u64,
    generation: u64,
    hit: Arc<Hit>,
}

/// What the clones of one source share, async or blocking: the request, its cache, and the
/// cache's current hit.
struct Core {
    request: TokenRequest,
    policy: CachePolicy,
    cache: Mutex<TokenCache>,
    /// This source among the threads' recent hits.
    id: u64,
    /// The token a hit gets, and until when: set from [`TokenCache::peek_until`] under the
    /// cache's lock after every change, so that a hit neither locks the cache nor hashes the
    /// request.
    hit: RwLock<Option<Arc<Hit>>>,
    /// Counts the changes of `hit`, raised after each: a thread's recent hit of an earlier
    /// generation is read again.
    generation: AtomicU64,
    /// Whether the cache may hold refusals in a row to forget when an API accepts a token, so
    /// that an accepted call costs no lock otherwise.
    refusals: AtomicBool,
}

struct Hit {
    token: Arc<Token>,
    /// On the hit clock; before the cache's moment by [`HIT_CLOCK_MARGIN`] on Linux.
    until: HitInstant,
}

impl Core {
    fn new(request: TokenRequest, policy: CachePolicy) -> Self {
        Self {
            request,
            policy,
            // Seeded, so that sources whose fetches time out together back off apart.
            cache: Mutex::new(TokenCache::new(policy).with_seed(random_word())),
            id: NEXT_CORE.fetch_add(1, Ordering::Relaxed),
            hit: RwLock::new(None),
            generation: AtomicU64::new(0),
            refusals: AtomicBool::new(false),
        }
    }

    /// The cached token, if it is a plain hit now: the fast path, without an allocation, and
    /// after a thread's first hit of a generation without a lock.
    #[inline]
    fn peek(&self) -> Option<Arc<Token>> {
        // Acquire: a generation read here comes after its hit was stored.
        let generation = self.generation.load(Ordering::Acquire);
        let token = RECENT.try_with(|recent| {
            let mut recent = recent.try_borrow_mut().ok()?;
            let slot = &mut recent[(self.id % RECENT_HITS as u64) as usize];
            let current = slot
                .as_ref()
                .is_some_and(|seen| seen.core == self.id && seen.generation == generation);
            if !current {
                *slot = self.shared_hit().map(|hit| RecentHit {
                    core: self.id,
                    generation,
                    hit,
                });
            }
            let hit = &slot.as_ref()?.hit;
            Some((hit_now() < hit.until).then(|| Arc::clone(&hit.token)))
        });
        match token {
            Ok(Some(token)) => token,
            // The thread is ending (or the slots are in use further up its stack).
            _ => {
                let hit = self.shared_hit()?;
                (hit_now() < hit.until).then(|| Arc::clone(&hit.token))
            }
        }
    }

    /// The current hit, under a read lock.
    fn shared_hit(&self) -> Option<Arc<Hit>> {
        // Nothing panics while these locks are held: a poisoned lock holds consistent data.
        self.hit
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Does `change` to the cache, at the time read under its lock, and sets the hit again.
    fn change<R>(&self, change: impl FnOnce(&mut TokenCache, Instant) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = monotonic_now();
        let result = change(&mut cache, now);
        let hit = cache
            .peek_until(&self.request, now)
            .and_then(|(token, until)| {
                Some(Arc::new(Hit {
                    token,
                    until: hit_until(until)?,
                }))
            });
        // Stored under the cache's lock, so that hits are set in the order of the changes.
        *self.hit.write().unwrap_or_else(PoisonError::into_inner) = hit;
        // Release: whoever reads the new generation finds this hit, or a later one.
        self.generation.fetch_add(1, Ordering::Release);
        result
    }

    fn poll(&self) -> Lookup {
        self.change(|cache, now| cache.poll(&self.request, now))
    }

    /// Polls for the caller an API refused `rejected` to, if it was: never `rejected` once the
    /// refusal has taken effect.
    fn poll_replacing(&self, rejected: Option<&Token>) -> Lookup {
        match rejected {
            Some(rejected) => {
                self.change(|cache, now| cache.poll_replacing(&self.request, rejected, now))
            }
            None => self.poll(),
        }
    }

    /// The failure of a fetch given up at its ticket's deadline: the one the cache counts then,
    /// so that the fetcher, handing it in, gets the error its waiters got.
    fn timed_out(&self) -> Error {
        Error::FetchTimedOut {
            timeout: self.policy.fetch_timeout(),
        }
    }

    /// Hands a fetch's outcome to the cache.
    fn complete(&self, ticket: FetchTicket, fetched: Fetched, sent_at: SystemTime) -> Outcome {
        let random = random_word();
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
        let refused = self.change(|cache, _| cache.invalidate(&self.request, rejected));
        if refused {
            self.refusals.store(true, Ordering::Relaxed);
        }
        refused
    }

    /// Tells the cache an API accepted `token`, if a refusal is on record: one atomic read
    /// otherwise, as it is asked after every accepted call.
    fn accepted(&self, token: &Token) -> bool {
        if !self.refusals.load(Ordering::Relaxed) {
            return false;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let forgotten = cache.accepted(&self.request, token);
        if forgotten {
            self.refusals.store(false, Ordering::Relaxed);
        }
        forgotten
    }

    fn force_refresh(&self) -> bool {
        self.change(|cache, _| cache.force_refresh(&self.request))
    }
}

/// A boxed fetch.
type FetchFuture = Pin<Box<dyn Future<Output = Fetched> + Send>>;

/// What fetches for a source: a transport or the caller's function, behind one type. Shared, so
/// that [`TokenSource::with_policy`] can make a new source with the same fetch.
type FetchFn = Arc<dyn Fn(TokenRequest) -> FetchFuture + Send + Sync>;

/// The async source behind [`TokenSource`]: what fetches appears only as a function.
struct AsyncSource {
    core: Core,
    /// Wakes the callers waiting for a fetch, whenever one ends (or is given up).
    changed: Notify,
    fetch: FetchFn,
}

impl AsyncSource {
    fn new(request: TokenRequest, policy: CachePolicy, fetch: FetchFn) -> Arc<Self> {
        Arc::new(Self {
            core: Core::new(request, policy),
            changed: Notify::new(),
            fetch,
        })
    }

    /// A valid token: cached, or fetched by this caller or the one already fetching.
    ///
    /// A hit is answered in the first poll, without the state machine of a miss: that one is
    /// large, and entering and dropping it cost a third of a hit. It is boxed, only on a miss.
    fn token(self: &Arc<Self>) -> impl Future<Output = Outcome> + Send + '_ {
        let mut missed = None;
        std::future::poll_fn(move |cx| {
            let missed = match &mut missed {
                Some(missed) => missed,
                None => {
                    if let Some(token) = self.core.peek() {
                        return Poll::Ready(Ok(token));
                    }
                    missed.insert(Box::pin(self.wait_or_fetch(None)))
                }
            };
            missed.as_mut().poll(cx)
        })
    }

    /// What [`token`](Self::token) does on a miss: polls the cache (for the caller an API
    /// refused `rejected` to, if given), and waits for the fetch under way or makes one.
    async fn wait_or_fetch(self: &Arc<Self>, rejected: Option<&Token>) -> Outcome {
        loop {
            // Registered before the poll: a fetch that ends after it wakes this caller.
            let changed = self.changed.notified();
            match self.core.poll_replacing(rejected) {
                Lookup::Ready(token) => return Ok(token),
                Lookup::Refresh { token, ticket } => {
                    observe::refresh_ahead(&self.core.request);
                    self.refresh(ticket);
                    return Ok(token);
                }
                Lookup::Fetch(ticket) => {
                    let outcome = self.fetch(ticket).await;
                    if let Err(error) = &outcome {
                        observe::back_off_started(&self.core.request, error);
                    }
                    return outcome;
                }
                Lookup::Pending { deadline } => {
                    // At the deadline the cache gives the fetch up: poll again either way.
                    let _ = tokio::time::timeout_at(deadline.into(), changed).await;
                }
                Lookup::BackOff { until, error } => {
                    observe::back_off(&self.core.request, || {
                        until.saturating_duration_since(monotonic_now())
                    });
                    return Err(error);
                }
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
                if let Err(error) = source.fetch(ticket).await {
                    observe::refresh_failed(&source.core.request, &error);
                }
            }));
        } else {
            self.core.abandon(ticket);
            self.changed.notify_waiters();
        }
    }

    /// Makes the ticket's fetch, hands the outcome to the cache and wakes the waiters; gives
    /// the ticket up if dropped first.
    async fn fetch(&self, ticket: FetchTicket) -> Outcome {
        let deadline = ticket.deadline();
        let guard = Abandon {
            source: self,
            ticket: Some(ticket),
        };
        let sent_at = wall_now();
        let fetch = (self.fetch)(self.core.request.clone());
        // The cache's deadline, not a timeout of its own: at that moment the cache counts the
        // failure and answers the waiters with it, and this caller gets the same.
        let fetched = tokio::time::timeout_at(deadline.into(), fetch)
            .await
            .unwrap_or_else(|_elapsed| Err(self.core.timed_out()));
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

/// A valid token on every call, for every task of a service: one [`TokenCache`] shared by all
/// clones, fetching over any [`Transport`] (reqwest's and hyper's clients, or yours) or with a
/// function of yours.
///
/// Ask it for a token before every API call ([`token`](Self::token)):
///
/// - a cached token costs a read lock and an `Arc` clone: no allocation, no waiting, and
///   callers on many threads do not queue behind each other;
/// - when there is no valid token, the first caller fetches one and every other caller waits
///   for that one request (single-flight): a hundred tasks starting at once send one request,
///   not a hundred;
/// - when the token is only due for refresh, the caller gets it at once and the refresh runs in
///   a spawned task: no caller holding a valid token waits for a refresh, and while refreshes
///   fail, the valid token keeps being served;
/// - after a failed fetch, every caller fails at once with the same error, without a request to
///   the server, until the back-off is over; a fetch that outlives
///   [`CachePolicy::fetch_timeout`] is such a failure ([`Error::FetchTimedOut`]), which every
///   caller waiting for it gets at that moment;
/// - if the API refuses a token (HTTP 401), [`invalidate`](Self::invalidate) it: the next call
///   fetches a new one, however many tasks saw the 401 (refusals in a row wait longer each
///   time); while that fetch fails, other APIs' callers keep getting the refused token until
///   it expires, and the refused caller, asking with [`token_replacing`](Self::token_replacing),
///   gets the failure.
///
/// The timing (the refresh margin and its jitter, the lifetime of a token without
/// `expires_in`, back-off, `Retry-After`, the fetch's timeout) is the [`CachePolicy`]'s: see
/// [`with_policy`](Self::with_policy). Cancellation is dropping the future: a cancelled caller
/// (its future dropped mid-fetch) gives its fetch up, and a waiting caller takes over.
///
/// Build it with [`TokenSource::client_secret`] from a token URL and a secret,
/// [`TokenSource::builder`] from a client of your own, or from a built
/// [`TokenRequest`]: [`TokenSource::reqwest`] (feature `reqwest`), [`TokenSource::hyper`]
/// (feature `hyper`), [`TokenSource::new`] over any [`Transport`], or
/// [`TokenSource::from_fn`] with your own fetch. Use it inside a Tokio runtime with the time
/// driver on (`#[tokio::main]` has it): it spawns refreshes, and gives a fetch up after
/// [`CachePolicy::fetch_timeout`], which bounds each whole exchange.
///
/// # Example
///
/// ```no_run
/// # #[cfg(feature = "reqwest")]
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use client_credentials::http::{StatusCode, header::AUTHORIZATION};
/// use client_credentials::{ClientCredentials, ClientSecret, TokenSource, TokenUrl};
///
/// let client = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/oauth/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// );
/// let request = client.token_request().scope("read:things").build()?;
/// let http = client_credentials::reqwest::recommended_client();
/// let tokens = TokenSource::reqwest(http.clone(), request); // clone it into every task
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
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
pub struct TokenSource(Arc<AsyncSource>);

impl TokenSource {
    /// A source of tokens for `request`, fetched over `transport` by the core's one attempt
    /// loop ([`crate::fetch::fetch_token`]), by the default [`CachePolicy`].
    ///
    /// The source owns the [`Session`] its fetches run in: the token endpoint's DPoP nonces and
    /// clock, learnt by one fetch and used by the next, shared by the source's clones and by
    /// the sources [`with_policy`](Self::with_policy) and `with_store` make from it.
    #[must_use]
    pub fn new<T>(transport: T, request: TokenRequest) -> Self
    where
        T: Transport + Send + Sync + 'static,
    {
        let transport = Arc::new(transport);
        let session = Session::new();
        Self::from_fn(request, move |request| {
            let (transport, session) = (Arc::clone(&transport), session.clone());
            async move { fetch_token(&*transport, &request, &session, &SystemEnvironment).await }
        })
    }

    /// A source of tokens for `request`, fetched by `fetch`, your own async function, by the
    /// default [`CachePolicy`]. The source still bounds each fetch by
    /// [`CachePolicy::fetch_timeout`], and drops its future when that passes. What the fetches
    /// learn of the token endpoint (a [`Session`]) is your function's to keep.
    ///
    /// ```no_run
    /// # async fn run(request: client_credentials::TokenRequest) {
    /// let session = client_credentials::fetch::Session::new();
    /// let tokens = client_credentials::TokenSource::from_fn(request, move |request| {
    ///     let session = session.clone(); // one for every fetch of the source
    ///     async move {
    ///     // Any fetch: here the reqwest adapter's, with its own timeout.
    /// #   #[cfg(feature = "reqwest")]
    ///     let http = client_credentials::reqwest::recommended_client();
    /// #   #[cfg(feature = "reqwest")]
    ///     return client_credentials::reqwest::fetch_token_in(&http, &request, &session, client_credentials::reqwest::TIMEOUT).await;
    /// #   #[cfg(not(feature = "reqwest"))]
    /// #   unimplemented!()
    ///     }
    /// });
    /// # let _ = tokens; }
    /// ```
    #[must_use]
    pub fn from_fn<F, Fut>(request: TokenRequest, fetch: F) -> Self
    where
        F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, Error>> + Send + 'static,
    {
        let fetch: FetchFn = Arc::new(move |request| Box::pin(fetch(request)));
        Self(AsyncSource::new(request, CachePolicy::new(), fetch))
    }

    /// The same source by `policy`: same request, same fetch, and a new, empty cache. Call it
    /// on the source just built, before sharing it: clones made before keep the old cache and
    /// policy. It cannot fail: a [`CachePolicy`] is checked when it is built.
    #[must_use]
    pub fn with_policy(self, policy: CachePolicy) -> Self {
        let request = self.0.core.request.clone();
        Self(AsyncSource::new(request, policy, Arc::clone(&self.0.fetch)))
    }

    /// The same source with a second-level cache shared by a fleet of processes: same request,
    /// same fetch and policy, and a new, empty first-level cache. A first-level hit still
    /// never touches the store; a miss or a due refresh reads it first, and only one process
    /// of the fleet fetches from the token endpoint ([`SharedCache`](crate::shared_cache::SharedCache)).
    /// Call it after [`with_policy`](Self::with_policy): the shared cache times its entries
    /// by the policy it finds here.
    ///
    /// Replicas share a token only when they hold the same credential
    /// ([`StoreKey`](crate::shared_cache::StoreKey)). A request whose credential no other process can name
    /// (an assertion source without
    /// [`with_identity`](crate::auth::AssertionSource::with_identity), a JWT signer without a public
    /// key, a mutual TLS client without
    /// [`with_certificate`](crate::ClientCredentials::with_certificate)) is not shared: the
    /// source is returned as it was, and a `tracing` warning says why.
    #[cfg(feature = "shared-cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-cache")))]
    #[must_use]
    pub fn with_store(self, shared: crate::io::source::fleet::SharedCache) -> Self {
        let (request, policy) = (self.0.core.request.clone(), self.0.core.policy);
        let Some(fleet) = crate::io::source::fleet::FleetFetch::new(shared, &request, policy)
        else {
            return self;
        };
        let fleet = Arc::new(fleet);
        let fetch = Arc::clone(&self.0.fetch);
        let shared_fetch: FetchFn = Arc::new(move |request| {
            let (fleet, fetch) = (Arc::clone(&fleet), Arc::clone(&fetch));
            Box::pin(async move { fleet.token(|| fetch(request.clone())).await })
        });
        Self(AsyncSource::new(request, policy, shared_fetch))
    }

    /// A builder of a source from a token URL, a client id and a secret (sent by
    /// `client_secret_basic`), the parameters of its request, and the HTTP client to fetch
    /// with: the shortest way to a token. The URL is checked when the source is built.
    ///
    /// ```no_run
    /// # #[cfg(feature = "reqwest")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use client_credentials::TokenSource;
    ///
    /// let tokens = TokenSource::client_secret("https://idp.example.com/oauth/token", "my-client", "s3cr3t")
    ///     .audience("https://api.example.com")
    ///     .build()?; // the recommended reqwest client (feature `reqwest`)
    /// let token = tokens.token().await?; // cancellation: drop the future
    /// # let _ = token; Ok(()) }
    /// ```
    pub fn client_secret(
        token_url: &str,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> TokenSourceBuilder {
        let client = TokenUrl::new(token_url)
            .map(|url| ClientCredentials::new(url, client_id, ClientSecret::new(secret)));
        TokenSourceBuilder {
            request: client.map(|client| client.token_request()),
            policy: CachePolicy::new(),
        }
    }

    /// A builder of a source for `client`, built yourself (another authentication method,
    /// DPoP, response rules): the parameters of its request, and the HTTP client to fetch with.
    pub fn builder(client: &ClientCredentials) -> TokenSourceBuilder {
        TokenSourceBuilder {
            request: Ok(client.token_request()),
            policy: CachePolicy::new(),
        }
    }

    /// A valid token: the cached one, or one fetched now by this caller or by the caller
    /// already fetching. Cancellation is dropping the future.
    ///
    /// # Errors
    ///
    /// The failure of the fetch this caller made or waited for, or, while the source backs off
    /// after it ([`CachePolicy`]), the same failure again without a request. One failure
    /// reaches every caller that waited for it, hence the `Arc`: read it as an [`Error`]
    /// (`error.is_retryable()`, `error.status()`), or let `?` turn it into a boxed error
    /// (`Arc<Error>` is a `std::error::Error`).
    // The inner future itself, not an `async fn` around it: a cached get is a few dozen
    // instructions, and a second state machine was a quarter of them.
    pub fn token(&self) -> impl Future<Output = Result<Arc<Token>, Arc<Error>>> + Send + '_ {
        self.0.token()
    }

    /// Refuses the cached token if it is `rejected`, the token an API just refused (HTTP 401),
    /// so that the next call fetches a new one. Returns whether this call refused it: a token
    /// already replaced (or refused) stays as it is, so many callers that got a 401 with the
    /// same token cause one new fetch. A back-off under way still applies.
    ///
    /// Refusals in a row back off: each doubles the age a token must reach before its refusal
    /// takes effect ([`CachePolicy::with_invalidate_max_age`]); tell the source of a call an
    /// API accepted ([`accepted`](Self::accepted)) to start again. Until its replacement comes,
    /// a refused token is served to nobody who waits for a fetch; while that fetch fails, it
    /// is served again (until it expires) to callers of other APIs, and
    /// [`token_replacing`](Self::token_replacing) gives the caller it was refused to the
    /// failure.
    pub fn invalidate(&self, rejected: &Token) -> bool {
        let dropped = self.0.core.invalidate(rejected);
        observe::invalidated(&self.0.core.request, dropped);
        dropped
    }

    /// A token for the caller an API just refused `rejected` to, after
    /// [`invalidate`](Self::invalidate): as [`token`](Self::token), but once the refusal has
    /// taken effect never `rejected`. While the fetch of its replacement fails, this fails with
    /// that failure, where [`token`](Self::token) still serves `rejected` to callers of other
    /// APIs. Before the refused token's minimum age, the answer may be `rejected` itself.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn token_replacing(&self, rejected: &Token) -> Result<Arc<Token>, Arc<Error>> {
        if let Some(token) = self.0.core.peek()
            && !token.same_access_token(rejected)
        {
            return Ok(token);
        }
        self.0.wait_or_fetch(Some(rejected)).await
    }

    /// Tells the source that an API accepted `token`: after refusals in a row
    /// ([`invalidate`](Self::invalidate)), the next counts as the first again. Returns whether
    /// there were refusals to forget. Costs one atomic read when there were none, so it may be
    /// called after every accepted call; the tower layer and the middleware do, for the API
    /// that last refused a token.
    pub fn accepted(&self, token: &Token) -> bool {
        self.0.core.accepted(token)
    }

    /// Makes the cached token due for refresh: the next call starts a refresh in the
    /// background and is served the current token until the new one comes. Returns whether
    /// there was a token. A fetch or back-off under way is not cut short.
    pub fn force_refresh(&self) -> bool {
        let had_token = self.0.core.force_refresh();
        observe::forced_refresh(&self.0.core.request, had_token);
        had_token
    }

    /// The token request the source sends.
    #[must_use]
    pub fn request(&self) -> &TokenRequest {
        &self.0.core.request
    }

    /// The source's cache policy.
    #[must_use]
    pub fn policy(&self) -> &CachePolicy {
        &self.0.core.policy
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A [`TokenSource`] from its client up, by [`TokenSource::client_secret`] or
/// [`TokenSource::builder`]: its request's parameters and the source's policy, then what fetches
/// (`build()` for the recommended reqwest client, `reqwest(client)`, `hyper(client)`,
/// [`transport`](Self::transport), [`fetch_fn`](Self::fetch_fn)). Every value is checked when
/// the source is built, into a typed error.
#[must_use = "a builder does nothing until a source is built"]
#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
pub struct TokenSourceBuilder {
    /// The request's parameters, for a client whose token URL was valid.
    request: Result<TokenRequestBuilder, Error>,
    policy: CachePolicy,
}

impl TokenSourceBuilder {
    /// Applies `change` to the request's parameters, unless the token URL was refused.
    fn with(mut self, change: impl FnOnce(TokenRequestBuilder) -> TokenRequestBuilder) -> Self {
        self.request = self.request.map(change);
        self
    }

    /// Asks for one or more scopes (RFC 6749 §3.3), as [`TokenRequestBuilder::scope`].
    pub fn scope(self, scope: impl AsRef<str>) -> Self {
        self.with(|request| request.scope(scope))
    }

    /// Asks for a token for `audience`, as [`TokenRequestBuilder::audience`].
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.with(|request| request.audience(audience))
    }

    /// Asks for a token for the resource server `resource` (RFC 8707), as
    /// [`TokenRequestBuilder::resource`].
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.with(|request| request.resource(resource))
    }

    /// Adds another parameter to the request, as [`TokenRequestBuilder::param`].
    pub fn param(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.with(|request| request.param(name, value))
    }

    /// The source's cache policy instead of the default.
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The token request, checked: what every way of building a source takes. Errors:
    /// [`Error::InvalidTokenUrl`] for the token URL; every error of
    /// [`TokenRequestBuilder::build`].
    fn request(self) -> Result<(TokenRequest, CachePolicy), Error> {
        Ok((self.request?.build()?, self.policy))
    }

    /// Builds the request and a source fetching it over `transport`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTokenUrl`] for the token URL; every error of
    /// [`TokenRequestBuilder::build`].
    pub fn transport<T>(self, transport: T) -> Result<TokenSource, Error>
    where
        T: Transport + Send + Sync + 'static,
    {
        let (request, policy) = self.request()?;
        Ok(TokenSource::new(transport, request).with_policy(policy))
    }

    /// Builds the request and a source fetching it with `fetch`, as [`TokenSource::from_fn`].
    ///
    /// # Errors
    ///
    /// As [`transport`](Self::transport).
    pub fn fetch_fn<F, Fut>(self, fetch: F) -> Result<TokenSource, Error>
    where
        F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, Error>> + Send + 'static,
    {
        let (request, policy) = self.request()?;
        Ok(TokenSource::from_fn(request, fetch).with_policy(policy))
    }
}

impl std::fmt::Debug for TokenSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The request builder's Debug shows parameter names only; the URL shows no query.
        f.debug_struct("TokenSourceBuilder")
            .field("request", &self.request)
            .field("policy", &self.policy)
            .finish()
    }
}
