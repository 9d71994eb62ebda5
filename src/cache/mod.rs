//! The token cache: a state machine that says, for each token request, whether to use a cached
//! token, fetch a new one, wait for a fetch under way, or back off after a failure.
//!
//! Like the rest of the core it does no IO, reads no clock and draws no random numbers: the
//! caller passes in `now` (an [`Instant`], for every decision), the time a request was sent (a
//! [`SystemTime`], where the server's time matters: the token's `sent_at` and a `Retry-After`
//! date), and a random word wherever jitter is drawn.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::error::oauth::RetryAfter;
use crate::request::TokenRequest;
use crate::token::Token;

/// How the [`TokenCache`] refreshes tokens and backs off after failures.
///
/// Every setting has a documented default ([`CachePolicy::new`]). Fractions are clamped to
/// `0.0..=1.0` (NaN reads as `0.0`), so no setting can make the cache panic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    refresh_margin: Duration,
    refresh_fraction: f64,
    refresh_jitter: f64,
    default_lifetime: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    backoff_jitter: f64,
    non_retryable_backoff: Duration,
    retry_after_max: Duration,
    fetch_timeout: Duration,
    invalidate_min_age: Duration,
    capacity: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl CachePolicy {
    /// The default policy:
    ///
    /// - refresh ahead of expiry by the smaller of 60 s and 10% of the token's lifetime, plus a
    ///   random extra of up to half that margin: a one-hour token is refreshed 60 to 90 s
    ///   before it expires, a two-minute token 12 to 18 s before;
    /// - a token without `expires_in` is kept for 5 minutes;
    /// - after a retryable failure, back off 1 s, doubling with each failure in a row up to
    ///   60 s, less a random part of up to half; never less than the server's `Retry-After`,
    ///   of which at most 5 minutes is honoured;
    /// - after a non-retryable failure (such as `invalid_client`), back off a flat 10 s, less
    ///   up to half at random;
    /// - a fetch not answered within 30 s is given up, and another may start;
    /// - a token that arrives already due for refresh counts as a failure for back-off;
    /// - a token is invalidated no earlier than 1 s after its fetch started;
    /// - a [`TokenCache`] holds at most 1,024 requests.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            refresh_fraction: 0.1,
            refresh_jitter: 0.5,
            default_lifetime: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_jitter: 0.5,
            non_retryable_backoff: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(30),
            invalidate_min_age: Duration::from_secs(1),
            capacity: 1024,
        }
    }

    /// Sets the most a token is refreshed ahead of its expiry (default 60 s), before jitter.
    ///
    /// The margin is the smaller of this and [a fraction](Self::with_refresh_fraction) of the
    /// token's lifetime. It leaves time for the refresh, retries included, and for clock skew
    /// between client and server.
    #[must_use]
    pub const fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Sets the fraction of a token's lifetime that it is at most refreshed ahead of expiry
    /// (default `0.1`). It keeps short-lived tokens from being refreshed all the time: with 60 s
    /// alone, a 90 s token would be refreshed every 30 s.
    #[must_use]
    pub const fn with_refresh_fraction(mut self, fraction: f64) -> Self {
        self.refresh_fraction = unit_interval(fraction);
        self
    }

    /// Sets the random extra refresh lead, as a fraction of the margin (default `0.5`): each
    /// token is refreshed between `margin` and `margin × (1 + jitter)` before it expires, so a
    /// fleet of processes does not refresh in lockstep.
    #[must_use]
    pub const fn with_refresh_jitter(mut self, jitter: f64) -> Self {
        self.refresh_jitter = unit_interval(jitter);
        self
    }

    /// Sets how long a token whose response had no `expires_in` is used (default 5 minutes).
    ///
    /// RFC 6749 §5.1 leaves the lifetime to the server's documentation; a few minutes is short
    /// enough that a token revoked or expired early is not used for long, and long enough that
    /// the server sees a handful of requests an hour.
    #[must_use]
    pub const fn with_default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Sets the back-off after a first retryable failure (default 1 s); it doubles with each
    /// failure in a row, up to [`with_backoff_max`](Self::with_backoff_max).
    #[must_use]
    pub const fn with_backoff_initial(mut self, initial: Duration) -> Self {
        self.backoff_initial = initial;
        self
    }

    /// Sets the longest back-off after retryable failures (default 60 s).
    #[must_use]
    pub const fn with_backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// Sets the random part taken off each back-off, as a fraction of it (default `0.5`): a
    /// back-off of `d` lasts between `d × (1 − jitter)` and `d`.
    #[must_use]
    pub const fn with_backoff_jitter(mut self, jitter: f64) -> Self {
        self.backoff_jitter = unit_interval(jitter);
        self
    }

    /// Sets the back-off after a non-retryable failure (default 10 s), which does not grow.
    ///
    /// Such a failure (`invalid_client`, `invalid_scope`, a bad token URL) repeats until
    /// someone changes the server's or the client's configuration. Trying again every few
    /// seconds costs the server almost nothing, keeps a misconfigured fleet from hammering it,
    /// and picks up a fix at the server within seconds.
    #[must_use]
    pub const fn with_non_retryable_backoff(mut self, backoff: Duration) -> Self {
        self.non_retryable_backoff = backoff;
        self
    }

    /// Sets the most of a server's `Retry-After` that is honoured (default 5 minutes): a
    /// server asking for longer is asked again after this long.
    #[must_use]
    pub const fn with_retry_after_max(mut self, max: Duration) -> Self {
        self.retry_after_max = max;
        self
    }

    /// Sets how long a fetch may stay unanswered before it is given up and another may start
    /// (default 30 s). Give your HTTP client a shorter timeout.
    #[must_use]
    pub const fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Sets the age a token must reach before [`TokenCache::invalidate`] drops it (default
    /// 1 s, counted from when its fetch started).
    ///
    /// An API that refuses every token (a misconfigured audience, say) would otherwise make
    /// each call fetch a new one. A younger token's invalidation is deferred, not refused: it
    /// keeps being served until it reaches this age, then is dropped, and the next poll
    /// fetches. So rejected tokens cost at most one request per this much time.
    #[must_use]
    pub const fn with_invalidate_min_age(mut self, age: Duration) -> Self {
        self.invalidate_min_age = age;
        self
    }

    /// Sets how many requests a [`TokenCache`] holds (default 1,024; at least 1).
    ///
    /// A service that builds a request per tenant would otherwise grow the cache without
    /// limit. When a new request comes to a full cache, one it holds is forgotten: never one
    /// with a fetch in flight, first one with neither a valid token nor a back-off under way,
    /// else the least recently polled. Only while every request it holds has a fetch in
    /// flight does the cache hold more (one per fetch in flight).
    #[must_use]
    pub const fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = if capacity == 0 { 1 } else { capacity };
        self
    }

    /// How many requests a [`TokenCache`] holds.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// The age a token must reach before an invalidation drops it.
    #[must_use]
    pub const fn invalidate_min_age(&self) -> Duration {
        self.invalidate_min_age
    }

    /// The most a token is refreshed ahead of expiry, before jitter.
    #[must_use]
    pub const fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// The fraction of a token's lifetime that it is at most refreshed ahead of expiry.
    #[must_use]
    pub const fn refresh_fraction(&self) -> f64 {
        self.refresh_fraction
    }

    /// The random extra refresh lead, as a fraction of the margin.
    #[must_use]
    pub const fn refresh_jitter(&self) -> f64 {
        self.refresh_jitter
    }

    /// How long a token without `expires_in` is used.
    #[must_use]
    pub const fn default_lifetime(&self) -> Duration {
        self.default_lifetime
    }

    /// The back-off after a first retryable failure.
    #[must_use]
    pub const fn backoff_initial(&self) -> Duration {
        self.backoff_initial
    }

    /// The longest back-off after retryable failures.
    #[must_use]
    pub const fn backoff_max(&self) -> Duration {
        self.backoff_max
    }

    /// The random part taken off each back-off, as a fraction of it.
    #[must_use]
    pub const fn backoff_jitter(&self) -> f64 {
        self.backoff_jitter
    }

    /// The back-off after a non-retryable failure.
    #[must_use]
    pub const fn non_retryable_backoff(&self) -> Duration {
        self.non_retryable_backoff
    }

    /// The most of a `Retry-After` that is honoured.
    #[must_use]
    pub const fn retry_after_max(&self) -> Duration {
        self.retry_after_max
    }

    /// How long a fetch may stay unanswered before another may start.
    #[must_use]
    pub const fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// How far ahead of expiry a token of this lifetime is refreshed.
    fn refresh_lead(&self, lifetime: Duration, random: u64) -> Duration {
        let margin = scale(lifetime, self.refresh_fraction).min(self.refresh_margin);
        margin.saturating_add(scale(margin, self.refresh_jitter * unit(random)))
    }

    /// How long to back off after the `failures`-th failure in a row.
    fn backoff(
        &self,
        error: &Error,
        failures: u32,
        sent_at: Option<SystemTime>,
        random: u64,
    ) -> Duration {
        let base = if error.is_retryable() {
            let doublings = failures.saturating_sub(1).min(31);
            self.backoff_initial
                .checked_mul(1 << doublings)
                .unwrap_or(Duration::MAX)
                .min(self.backoff_max)
        } else {
            self.non_retryable_backoff
        };
        let delay = base.saturating_sub(scale(base, self.backoff_jitter * unit(random)));
        // A date is counted from when the request was sent, so the wait errs long by the round
        // trip; without `sent_at` (a failure reported by `handle_failure`) it cannot be read.
        let asked = match (error.retry_after(), sent_at) {
            (Some(RetryAfter::Delay(delay)), _) => delay,
            (Some(retry_after @ RetryAfter::At(_)), Some(sent_at)) => {
                retry_after.delay_from(sent_at)
            }
            _ => Duration::ZERO,
        };
        delay.max(asked.min(self.retry_after_max))
    }
}

/// A fraction clamped to `0.0..=1.0`, NaN read as `0.0`.
const fn unit_interval(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    }
}

/// A random word as a number in `0.0..1.0`, from its top 53 bits.
fn unit(random: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (random >> 11) as f64 * SCALE
}

/// `duration × fraction` for a fraction in `0.0..=1.0`, never more than `duration`.
fn scale(duration: Duration, fraction: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * fraction)
        .map_or(duration, |scaled| scaled.min(duration))
}

/// `instant + duration`, or the latest instant near it that the platform can represent.
fn later(instant: Instant, mut duration: Duration) -> Instant {
    loop {
        if let Some(later) = instant.checked_add(duration) {
            return later;
        }
        duration /= 2;
    }
}

/// Starts a fetch for `entry`, whose ticket is the next one.
fn issue(
    last_ticket: &mut u64,
    entry: &mut Entry,
    request: &TokenRequest,
    now: Instant,
    timeout: Duration,
) -> FetchTicket {
    *last_ticket += 1;
    entry.fetch = Some(InFlight {
        id: *last_ticket,
        started: now,
        deadline: later(now, timeout),
    });
    FetchTicket {
        request: request.clone(),
        id: *last_ticket,
    }
}

/// What to do about one token request, as answered by [`TokenCache::poll`].
///
/// Only [`Ready`](Self::Ready) and [`Refresh`](Self::Refresh) hand out a token, and only one
/// that has not expired at the `now` given to `poll`.
#[derive(Debug)]
#[must_use = "the answer says whether to use a token, fetch one, wait or give up"]
pub enum Lookup {
    /// Use this token. Cloning the `Arc` is all a cache hit costs.
    Ready(Arc<Token>),
    /// Use this token, which is still valid; its refresh is due, so also send the ticket's
    /// request (in the background, if you can) and hand the response to
    /// [`TokenCache::handle_response`], or give the ticket up with [`TokenCache::abandon`].
    Refresh {
        /// The token to use now.
        token: Arc<Token>,
        /// The fetch to make.
        ticket: FetchTicket,
    },
    /// There is no usable token: send the ticket's request now and hand the response to
    /// [`TokenCache::handle_response`] (or a transport failure to
    /// [`TokenCache::handle_failure`]); if you cannot, give the ticket up with
    /// [`TokenCache::abandon`].
    Fetch(FetchTicket),
    /// There is no usable token and a fetch is under way: wait for it to finish, then poll
    /// again. Poll again at `deadline` at the latest: the fetch is given up then.
    Pending {
        /// When the fetch under way will be given up (its [`CachePolicy::fetch_timeout`]).
        deadline: Instant,
    },
    /// There is no usable token and the last fetch failed: fail with `error`, or wait until
    /// `until` and poll again.
    BackOff {
        /// When the next fetch may start.
        until: Instant,
        /// The failure of the last fetch.
        error: Arc<Error>,
    },
}

impl Lookup {
    /// The token to use, if the answer has one.
    #[must_use]
    pub fn token(&self) -> Option<&Arc<Token>> {
        match self {
            Self::Ready(token) | Self::Refresh { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// Permission to make the one fetch for a token request, handed out by [`TokenCache::poll`].
///
/// While a ticket is outstanding no other fetch for its request starts, until it is handed
/// back (to [`TokenCache::handle_response`], [`TokenCache::handle_failure`] or
/// [`TokenCache::abandon`]) or its [`CachePolicy::fetch_timeout`] runs out. It is not `Clone`:
/// exactly one caller holds it.
#[derive(Debug)]
#[must_use = "a ticket must be used for a fetch or given up with `TokenCache::abandon`"]
pub struct FetchTicket {
    request: TokenRequest,
    id: u64,
}

impl FetchTicket {
    /// The token request to send: build its HTTP request with
    /// [`TokenRequest::http_request`] for each attempt, or run it through
    /// [`TokenFetch`](crate::TokenFetch) or [`fetch_token`](crate::fetch_token).
    #[must_use]
    pub fn request(&self) -> &TokenRequest {
        &self.request
    }

    /// The ticket's number, unique within its cache, for logs.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// A token cache that reads no clock: for each [`TokenRequest`], it says whether to use a
/// cached token, fetch one, wait for a fetch under way, or back off after a failure.
///
/// Tokens are keyed by [`TokenRequest`], whose equality covers everything that shapes a
/// token: the token URL, client id, authentication method, scopes (in any order), audience,
/// resources and extra parameters. Requests that differ in any of these never share a token.
///
/// # The rules
///
/// - A token's lifetime is counted from when its ticket was handed out, not from when the
///   response came, so the cache's idea of its expiry errs early. A token without
///   `expires_in` lives [`CachePolicy::default_lifetime`].
/// - A token is refreshed ahead of expiry, by a margin with jitter
///   ([`CachePolicy::with_refresh_margin`]); until it expires it keeps being served, also while
///   its refresh fails. A token past its expiry is never served.
/// - Failures are never cached as tokens. After a failure the request backs off: exponentially
///   if the failure is retryable ([`Error::is_retryable`]), for a flat time if not, with jitter
///   either way, and never less than the server's `Retry-After` (capped).
/// - One fetch per request at a time. A fetch given up ([`abandon`](Self::abandon)) or not
///   answered within [`CachePolicy::fetch_timeout`] frees the way for the next. A late answer
///   still counts unless another fetch has started since; otherwise it is parsed for its
///   caller but changes nothing in the cache.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant, SystemTime};
/// use client_credentials::{
///     Attempt, ClientCredentials, ClientSecret, Lookup, TokenCache, TokenUrl,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let request = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/oauth/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// )
/// .token_request()
/// .scope("read:things")
/// .build()?;
/// let mut cache = TokenCache::default();
///
/// let now = Instant::now(); // the caller reads the clock, never the cache
/// let ticket = match cache.poll(&request, now) {
///     Lookup::Fetch(ticket) => ticket,
///     other => unreachable!("an empty cache asks for a fetch, not {other:?}"),
/// };
/// # let sent_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// // let sent_at = SystemTime::now(); just before sending
/// let attempt = Attempt::new(sent_at, [7; 32]); // 32 random bytes, for clients that sign
/// let http_request = ticket.request().http_request(&attempt)?; // send it with any HTTP client
/// let response = http::Response::builder()
///     .status(200)
///     .header("content-type", "application/json")
///     .body(r#"{"access_token":"eyJ...","token_type":"Bearer","expires_in":3600}"#)?;
/// let random = 0x9E37_79B9_7F4A_7C15; // e.g. `fastrand::u64(..)`: jitters the refresh time
/// let token = cache.handle_response(ticket, &response, sent_at, now, random)?;
///
/// // From now on, until the token is due for refresh, every poll is a cheap hit.
/// match cache.poll(&request, now + Duration::from_secs(60)) {
///     Lookup::Ready(cached) => assert!(Arc::ptr_eq(&cached, &token)),
///     other => unreachable!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
///
/// # Sharing it between tasks
///
/// A `Send + Sync` token source wraps the cache in a mutex and holds it only for one call at a
/// time, never across an await. A caller locks, [`poll`](Self::poll)s and unlocks; then:
///
/// - on [`Lookup::Ready`], it uses the token;
/// - on [`Lookup::Fetch`], it sends the request without the lock, then locks again to hand the
///   response to [`handle_response`](Self::handle_response) (or an adapter's parsed outcome
///   to [`handle_result`](Self::handle_result)) and returns its result; a guard
///   calls [`abandon`](Self::abandon) if the caller is dropped first. After either, it wakes
///   the waiters. Retries within one exchange (again with a server's DPoP nonce) belong to the
///   same ticket: hand in only the final response;
/// - on [`Lookup::Pending`], it waits to be woken (registering before it unlocks, so no
///   wake-up is lost), or until the deadline, and polls again: it then finds the new token, the
///   failure, or, if the fetch was abandoned, a ticket of its own;
/// - on [`Lookup::BackOff`], it fails at once with the error (or waits, if it prefers);
/// - on [`Lookup::Refresh`], it uses the token and sends the refresh in the background, so a
///   caller holding a valid token never waits for a refresh.
///
/// [`peek`](Self::peek) answers hits under a shared lock, and
/// [`poll_timeout`](Self::poll_timeout) with [`poll_refresh`](Self::poll_refresh) let a
/// background task refresh tokens before any caller asks.
#[derive(Default)]
pub struct TokenCache {
    policy: CachePolicy,
    entries: HashMap<TokenRequest, Entry>,
    last_ticket: u64,
    /// Counts polls and stored tokens: an entry's `last_used` is the count when it was last
    /// used, so recency costs one store per hit.
    clock: u64,
    /// Requests to forget when a new one comes to a full cache, the best last, each with its
    /// `last_used` when chosen: one that has been used since is skipped. Chosen a batch at a
    /// time, so that a full cache scans its entries once per batch, not once per request.
    victims: Vec<(TokenRequest, u64)>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("policy", &self.policy)
            .field("requests", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// What the cache knows about one token request.
#[derive(Default)]
struct Entry {
    token: Option<Cached>,
    fetch: Option<InFlight>,
    backoff: Option<Backoff>,
    /// Failures in a row since the last token.
    failures: u32,
    /// The cache's `clock` when the entry was last polled or given a token.
    last_used: u64,
}

struct Cached {
    token: Arc<Token>,
    started: Instant,
    refresh_at: Instant,
    expires_at: Instant,
}

struct InFlight {
    id: u64,
    started: Instant,
    deadline: Instant,
}

struct Backoff {
    until: Instant,
    error: Arc<Error>,
}

impl Entry {
    fn token_valid(&self, now: Instant) -> Option<&Cached> {
        self.token.as_ref().filter(|cached| now < cached.expires_at)
    }

    fn fetch_active(&self, now: Instant) -> Option<&InFlight> {
        self.fetch.as_ref().filter(|fetch| now < fetch.deadline)
    }

    fn backoff_active(&self, now: Instant) -> Option<&Backoff> {
        self.backoff.as_ref().filter(|backoff| now < backoff.until)
    }

    /// Drops what `now` has made obsolete: an expired token, a back-off that is over. A
    /// timed-out fetch is kept, though no longer counted, so that its late answer still counts
    /// unless another fetch has started since.
    fn settle(&mut self, now: Instant) {
        if self.token_valid(now).is_none() {
            self.token = None;
        }
        if self.backoff_active(now).is_none() {
            self.backoff = None;
        }
    }

    /// Whether forgetting the entry loses nothing but its failure count: it has no valid token
    /// and no back-off under way.
    fn idle(&self, now: Instant) -> bool {
        self.token_valid(now).is_none() && self.backoff_active(now).is_none()
    }

    /// Whether the (settled) entry's token is due for a refresh that may start now.
    fn refresh_due(&self, now: Instant) -> bool {
        self.fetch_active(now).is_none()
            && self.backoff.is_none()
            && self.token.as_ref().is_some_and(|c| now >= c.refresh_at)
    }

    /// The next moment at which a poll would answer differently.
    fn next_event(&self, now: Instant) -> Option<Instant> {
        let fetch = self.fetch_active(now).map(|fetch| fetch.deadline);
        let backoff = self.backoff_active(now).map(|backoff| backoff.until);
        match self.token_valid(now) {
            Some(cached) => Some(
                fetch
                    .or(backoff)
                    .unwrap_or(cached.refresh_at)
                    .min(cached.expires_at),
            ),
            None => fetch.into_iter().chain(backoff).min(),
        }
    }

    fn store(
        &mut self,
        token: Token,
        started: Instant,
        now: Instant,
        policy: &CachePolicy,
        random: u64,
    ) -> Arc<Token> {
        let token = Arc::new(token);
        let lifetime = token.expires_in().unwrap_or(policy.default_lifetime);
        let expires_at = later(started, lifetime);
        let lead = policy.refresh_lead(lifetime, random);
        let refresh_at = later(started, lifetime.saturating_sub(lead));
        if expires_at > now {
            self.token = Some(Cached {
                token: Arc::clone(&token),
                started,
                refresh_at,
                expires_at,
            });
        }
        // A token already due (`expires_in: 0`, or a lifetime within the refresh lead) would
        // otherwise be fetched again on every poll: it counts as a failure, so the next fetch
        // waits for a back-off. Its caller still gets it; an expired one is never served from
        // the cache, a valid one is until it expires.
        if refresh_at <= now {
            let error = Error::TokenDueOnArrival { lifetime };
            // Another word than the refresh lead's, so the two jitters are independent.
            let _ = self.fail(error, None, now, policy, random.rotate_left(32));
        } else {
            self.backoff = None;
            self.failures = 0;
        }
        token
    }

    fn fail(
        &mut self,
        error: Error,
        sent_at: Option<SystemTime>,
        now: Instant,
        policy: &CachePolicy,
        random: u64,
    ) -> Arc<Error> {
        self.failures = self.failures.saturating_add(1);
        let delay = policy.backoff(&error, self.failures, sent_at, random);
        let error = Arc::new(error);
        self.backoff = Some(Backoff {
            until: later(now, delay),
            error: Arc::clone(&error),
        });
        error
    }
}

impl TokenCache {
    /// An empty cache with the given policy.
    #[must_use]
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
            last_ticket: 0,
            clock: 0,
            victims: Vec::new(),
        }
    }

    /// How many requests the cache holds: at most [`CachePolicy::capacity`], unless more have
    /// fetches in flight.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds no request.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the cache holds `request`: a token, a fetch, a back-off or a failure count.
    #[must_use]
    pub fn contains(&self, request: &TokenRequest) -> bool {
        self.entries.contains_key(request)
    }

    /// The next count of the cache's use clock.
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Forgets requests until a new one fits, never one with a fetch in flight.
    fn make_room(&mut self, now: Instant) {
        while self.entries.len() >= self.policy.capacity {
            let Some((victim, last_used)) = self.victims.pop() else {
                if self.choose_victims(now) {
                    continue;
                }
                // Every request has a fetch in flight: the new one joins them.
                return;
            };
            // Chosen earlier: skip it if it has been used since, or a fetch has started.
            let unchanged = self.entries.get(&victim).is_some_and(|entry| {
                entry.last_used == last_used && entry.fetch_active(now).is_none()
            });
            if unchanged {
                self.entries.remove(&victim);
            }
        }
    }

    /// Chooses the next batch of victims, an eighth of the capacity: idle requests first,
    /// then the least recently used. Returns whether there is any.
    fn choose_victims(&mut self, now: Instant) -> bool {
        let rank = |entry: &Entry| (!entry.idle(now), entry.last_used);
        let mut ranks: Vec<(bool, u64)> = self
            .entries
            .values()
            .filter(|entry| entry.fetch_active(now).is_none())
            .map(rank)
            .collect();
        if ranks.is_empty() {
            return false;
        }
        let batch = (self.policy.capacity / 8).clamp(1, ranks.len());
        let (_, &mut worst, _) = ranks.select_nth_unstable(batch - 1);
        // `last_used` differs between entries, so exactly `batch` are chosen.
        let mut victims: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.fetch_active(now).is_none() && rank(entry) <= worst)
            .map(|(request, entry)| (rank(entry), request.clone(), entry.last_used))
            .collect();
        victims.sort_unstable_by_key(|&(rank, _, _)| std::cmp::Reverse(rank));
        self.victims.clear();
        self.victims.extend(
            victims
                .into_iter()
                .map(|(_, request, used)| (request, used)),
        );
        true
    }

    /// The cache's policy.
    #[must_use]
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// Says what to do about `request` at `now`: use a token, fetch one, wait, or back off.
    ///
    /// A hit clones an `Arc` and allocates nothing. A request seen for the first time is
    /// remembered until [`remove`](Self::remove)d, or forgotten to make room for another
    /// ([`CachePolicy::with_capacity`]).
    pub fn poll(&mut self, request: &TokenRequest, now: Instant) -> Lookup {
        let used = self.tick();
        let entry = match self.entries.get_mut(request) {
            Some(entry) => entry,
            None => {
                self.make_room(now);
                self.entries.entry(request.clone()).or_default()
            }
        };
        entry.last_used = used;
        entry.settle(now);
        let fetch_timeout = self.policy.fetch_timeout;
        if entry.refresh_due(now)
            && let Some(cached) = &entry.token
        {
            let token = Arc::clone(&cached.token);
            let ticket = issue(&mut self.last_ticket, entry, request, now, fetch_timeout);
            return Lookup::Refresh { token, ticket };
        }
        if let Some(cached) = &entry.token {
            return Lookup::Ready(Arc::clone(&cached.token));
        }
        if let Some(fetch) = entry.fetch_active(now) {
            return Lookup::Pending {
                deadline: fetch.deadline,
            };
        }
        if let Some(backoff) = &entry.backoff {
            return Lookup::BackOff {
                until: backoff.until,
                error: Arc::clone(&backoff.error),
            };
        }
        Lookup::Fetch(issue(
            &mut self.last_ticket,
            entry,
            request,
            now,
            fetch_timeout,
        ))
    }

    /// The token [`poll`](Self::poll) would answer [`Lookup::Ready`] with, without changing
    /// anything: a fast path for a cache behind a read-write lock. `None` means: poll.
    #[must_use]
    pub fn peek(&self, request: &TokenRequest, now: Instant) -> Option<Arc<Token>> {
        let entry = self.entries.get(request)?;
        let cached = entry.token_valid(now)?;
        let busy = entry.fetch_active(now).is_some() || entry.backoff_active(now).is_some();
        (now < cached.refresh_at || busy).then(|| Arc::clone(&cached.token))
    }

    /// The cached token of `request` if it has not expired at `now`, whether or not its
    /// refresh is due: what a caller whose refresh failed may still use.
    #[cfg_attr(not(feature = "reqwest-blocking"), allow(dead_code))]
    pub(crate) fn valid(&self, request: &TokenRequest, now: Instant) -> Option<Arc<Token>> {
        let cached = self.entries.get(request)?.token_valid(now)?;
        Some(Arc::clone(&cached.token))
    }

    /// The token [`peek`](Self::peek) answers, with the moment until which it keeps answering
    /// it, unless a `&mut self` method changes the cache meanwhile: for a shared source that
    /// keeps the answer where callers find it without locking the cache or hashing the request,
    /// and sets it again after every change. `None` means: poll.
    ///
    /// The moment is the entry's next event (a refresh falling due, a fetch's deadline or a
    /// back-off ending, the token expiring), so it may come before `peek` would change its
    /// answer, never after.
    #[must_use]
    pub fn peek_until(
        &self,
        request: &TokenRequest,
        now: Instant,
    ) -> Option<(Arc<Token>, Instant)> {
        let token = self.peek(request, now)?;
        let until = self.entries.get(request)?.next_event(now)?;
        Some((token, until))
    }

    /// Takes the response to a ticket's request and returns the token or the failure, which
    /// the cache keeps for later polls (a failure only until its back-off is over).
    ///
    /// `sent_at` is the wall-clock time the request was sent: the token's
    /// [`sent_at`](Token::sent_at), and the time a `Retry-After` date is counted from. `now`
    /// is when the response came; `random` is a random word (from `fastrand::u64(..)`, say)
    /// that jitters the refresh time or the back-off.
    ///
    /// A ticket that is no longer current (abandoned, timed out and replaced, or from a
    /// [`remove`](Self::remove)d request) still gets its response parsed, but changes
    /// nothing. So does a token whose lifetime ran out in transit (`expires_in: 0`).
    ///
    /// # Errors
    ///
    /// What [`TokenRequest::parse_response`] returns, shared so that waiters polling later
    /// get the same error in [`Lookup::BackOff`].
    pub fn handle_response(
        &mut self,
        ticket: FetchTicket,
        response: &http::Response<impl AsRef<[u8]>>,
        sent_at: SystemTime,
        now: Instant,
        random: u64,
    ) -> Result<Arc<Token>, Arc<Error>> {
        let parsed = ticket.request.parse_response(response, sent_at);
        self.handle_result(ticket, parsed, sent_at, now, random)
    }

    /// Takes the outcome of a ticket's fetch, already parsed: the token, or the failure (of
    /// the exchange, or of the response, as an adapter's `fetch_token` returns them), and
    /// acts as [`handle_response`](Self::handle_response) does.
    ///
    /// `sent_at` is the wall-clock time the request was sent (read it just before handing the
    /// ticket's request to the adapter): a failure's `Retry-After` date is counted from it. A
    /// token carries its own [`sent_at`](Token::sent_at).
    ///
    /// # Errors
    ///
    /// The failure, shared so that waiters polling later get the same error in
    /// [`Lookup::BackOff`].
    pub fn handle_result(
        &mut self,
        ticket: FetchTicket,
        result: Result<Token, Error>,
        sent_at: SystemTime,
        now: Instant,
        random: u64,
    ) -> Result<Arc<Token>, Arc<Error>> {
        let policy = self.policy;
        let used = self.tick();
        let Some((entry, started)) = self.take_current(&ticket) else {
            return result.map(Arc::new).map_err(Arc::new);
        };
        // A new token makes the request worth keeping, however long ago it was polled.
        entry.last_used = used;
        match result {
            Ok(token) => Ok(entry.store(token, started, now, &policy, random)),
            Err(error) => Err(entry.fail(error, Some(sent_at), now, &policy, random)),
        }
    }

    /// Takes a failure to get a response to a ticket's request, such as the
    /// [`Error::Transport`] or [`Error::BodyTooLarge`] an adapter reports, and backs off.
    ///
    /// Returns the error, shared with later polls ([`Lookup::BackOff`]). Responses belong in
    /// [`handle_response`](Self::handle_response), which also knows when the request was sent:
    /// here a `Retry-After` delay is honoured but a `Retry-After` date cannot be.
    pub fn handle_failure(
        &mut self,
        ticket: FetchTicket,
        error: Error,
        now: Instant,
        random: u64,
    ) -> Arc<Error> {
        let policy = self.policy;
        match self.take_current(&ticket) {
            Some((entry, _)) => entry.fail(error, None, now, &policy, random),
            None => Arc::new(error),
        }
    }

    /// Gives a ticket up without an answer (its caller was cancelled, say), so that the next
    /// poll may start another fetch at once. Nothing is counted as a failure.
    pub fn abandon(&mut self, ticket: FetchTicket) {
        let _ = self.take_current(&ticket);
    }

    /// Drops the cached token of `request` if it is `rejected`, the token an API just refused
    /// (HTTP 401), so that the next poll fetches a new one. Returns whether it was the cached
    /// token, and so is dropped.
    ///
    /// A token that has already been replaced stays: many tasks that got a 401 with the same
    /// old token cause at most one new fetch. A back-off under way still applies. A token
    /// younger than [`CachePolicy::invalidate_min_age`] (from when its fetch started) is
    /// dropped once it reaches that age, and served until then: an API that refuses every
    /// token does not turn each call into a token request.
    pub fn invalidate(&mut self, request: &TokenRequest, rejected: &Token) -> bool {
        let min_age = self.policy.invalidate_min_age;
        let Some(entry) = self.entries.get_mut(request) else {
            return false;
        };
        let Some(cached) = entry.token.as_mut().filter(|cached| {
            cached.token.access_token().secret() == rejected.access_token().secret()
        }) else {
            return false;
        };
        if min_age.is_zero() {
            entry.token = None;
        } else {
            // Without a clock of its own the cache cannot tell the token's age here: it makes
            // the token expire at its minimum age, which for an older token has passed.
            cached.expires_at = cached.expires_at.min(later(cached.started, min_age));
        }
        true
    }

    /// Makes the cached token of `request` due for refresh: the next poll answers
    /// [`Lookup::Refresh`] (the token keeps being served until its replacement comes). Returns
    /// whether there was a token. A fetch or back-off under way is not cut short.
    pub fn force_refresh(&mut self, request: &TokenRequest) -> bool {
        let Some(cached) = self
            .entries
            .get_mut(request)
            .and_then(|entry| entry.token.as_mut())
        else {
            return false;
        };
        cached.refresh_at = cached.started;
        true
    }

    /// Forgets everything about `request`: its token, back-off and any fetch under way (whose
    /// ticket then changes nothing). Returns whether the cache knew it.
    pub fn remove(&mut self, request: &TokenRequest) -> bool {
        self.entries.remove(request).is_some()
    }

    /// The next moment at which some request's answer changes on its own: a refresh falls
    /// due, a back-off or a fetch's deadline ends, or a token expires. `None` if nothing is
    /// pending. A moment at or before `now` means a refresh is due now: see
    /// [`poll_refresh`](Self::poll_refresh).
    #[must_use]
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|entry| entry.next_event(now))
            .min()
    }

    /// A ticket to refresh some cached token that is due for refresh, if one is: for a
    /// background task that keeps tokens fresh before callers ask. Call it until it answers
    /// `None`. Requests without a valid token are left for callers to fetch.
    pub fn poll_refresh(&mut self, now: Instant) -> Option<FetchTicket> {
        for (request, entry) in &mut self.entries {
            entry.settle(now);
            if entry.refresh_due(now) {
                let timeout = self.policy.fetch_timeout;
                return Some(issue(&mut self.last_ticket, entry, request, now, timeout));
            }
        }
        None
    }

    /// The entry whose current fetch `ticket` is, with that fetch taken out, and when it
    /// started.
    fn take_current(&mut self, ticket: &FetchTicket) -> Option<(&mut Entry, Instant)> {
        let entry = self.entries.get_mut(&ticket.request)?;
        let fetch = entry.fetch.take_if(|fetch| fetch.id == ticket.id)?;
        Some((entry, fetch.started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::TokenUrl;
    use crate::error::TransportKind;
    use crate::request::ClientCredentials;
    use crate::secret::ClientSecret;

    const SECOND: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// A simulated clock: instants and wall-clock times counted from one base.
    struct Clock(Instant);

    impl Clock {
        // Tests need some `Instant` to count from; only the differences from it matter.
        #[allow(clippy::disallowed_methods)]
        fn new() -> Self {
            Self(Instant::now())
        }

        fn at(&self, secs: f64) -> Instant {
            self.0 + Duration::from_secs_f64(secs)
        }

        fn wall(&self, now: Instant) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + (now - self.0)
        }
    }

    fn client() -> ClientCredentials {
        ClientCredentials::new(
            TokenUrl::new("https://idp.example.com/token").unwrap(),
            "client",
            ClientSecret::new("secret"),
        )
    }

    fn request() -> TokenRequest {
        client().token_request().scope("read").build().unwrap()
    }

    fn token_response(access_token: &str, expires_in: Option<u64>) -> http::Response<String> {
        let expires_in = expires_in.map_or(String::new(), |s| format!(r#","expires_in":{s}"#));
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"access_token":"{access_token}","token_type":"Bearer"{expires_in}}}"#
            ))
            .unwrap()
    }

    fn error_response(status: u16, retry_after: Option<&str>) -> http::Response<String> {
        let mut response = http::Response::builder().status(status);
        if let Some(retry_after) = retry_after {
            response = response.header("retry-after", retry_after);
        }
        if status == 401 {
            response
                .header("content-type", "application/json")
                .body(r#"{"error":"invalid_client"}"#.to_owned())
        } else {
            response.body("busy".to_owned())
        }
        .unwrap()
    }

    fn fetch(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> FetchTicket {
        match cache.poll(request, now) {
            Lookup::Fetch(ticket) => ticket,
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    /// Asserts that the next poll asks for a fetch, and gives the ticket up.
    fn assert_fetches(cache: &mut TokenCache, request: &TokenRequest, now: Instant) {
        let ticket = fetch(cache, request, now);
        cache.abandon(ticket);
    }

    fn ready(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> Arc<Token> {
        match cache.poll(request, now) {
            Lookup::Ready(token) => token,
            other => panic!("expected a token, got {other:?}"),
        }
    }

    fn refresh(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> FetchTicket {
        match cache.poll(request, now) {
            Lookup::Refresh { ticket, .. } => ticket,
            other => panic!("expected a refresh, got {other:?}"),
        }
    }

    fn backoff_until(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> Instant {
        match cache.poll(request, now) {
            Lookup::BackOff { until, .. } => until,
            other => panic!("expected a back-off, got {other:?}"),
        }
    }

    /// Fetches a token at `now` and delivers it at once, with the given jitter word.
    fn cache_token(
        cache: &mut TokenCache,
        clock: &Clock,
        request: &TokenRequest,
        now: Instant,
        expires_in: Option<u64>,
        random: u64,
    ) -> Arc<Token> {
        let ticket = fetch(cache, request, now);
        let response = token_response("t", expires_in);
        cache
            .handle_response(ticket, &response, clock.wall(now), now, random)
            .unwrap()
    }

    fn secret(token: &Token) -> &str {
        token.access_token().secret()
    }

    #[test]
    fn first_poll_fetches_others_wait_and_hits_share_the_token() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let ticket = fetch(&mut cache, &request, clock.at(0.0));
        assert_eq!(ticket.request(), &request);
        assert!(matches!(
            cache.poll(&request, clock.at(1.0)),
            Lookup::Pending { deadline } if deadline == clock.at(30.0)
        ));
        let response = token_response("abc", Some(3600));
        let now = clock.at(2.0);
        let token = cache
            .handle_response(ticket, &response, clock.wall(clock.at(0.0)), now, 0)
            .unwrap();
        assert_eq!(secret(&token), "abc");
        assert_eq!(token.sent_at(), clock.wall(clock.at(0.0)));
        for secs in [2.0, 100.0, 3000.0] {
            assert!(Arc::ptr_eq(
                &ready(&mut cache, &request, clock.at(secs)),
                &token
            ));
        }
    }

    #[test]
    fn refresh_margin_is_the_smaller_of_60s_and_a_tenth_of_the_lifetime() {
        let clock = Clock::new();
        // (lifetime, margin): 10% of the lifetime up to 60 s. Random 0 adds no jitter.
        for (lifetime, margin) in [
            (3600, 60.0),
            (600, 60.0),
            (300, 30.0),
            (120, 12.0),
            (10, 1.0),
        ] {
            let mut cache = TokenCache::default();
            let request = request();
            let token = cache_token(
                &mut cache,
                &clock,
                &request,
                clock.at(0.0),
                Some(lifetime),
                0,
            );
            let refresh_at = lifetime as f64 - margin;
            let before = ready(&mut cache, &request, clock.at(refresh_at - 0.001));
            assert!(Arc::ptr_eq(&before, &token), "{lifetime}");
            match cache.poll(&request, clock.at(refresh_at)) {
                Lookup::Refresh { token: served, .. } => assert!(Arc::ptr_eq(&served, &token)),
                other => panic!("{lifetime}: expected a refresh, got {other:?}"),
            }
        }
    }

    #[test]
    fn refresh_jitter_stays_between_one_and_one_and_a_half_margins() {
        let clock = Clock::new();
        let request = request();
        let mut seen = Vec::new();
        for random in [
            0,
            1,
            u64::MAX / 7,
            u64::MAX / 3,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut cache = TokenCache::default();
            cache_token(
                &mut cache,
                &clock,
                &request,
                clock.at(0.0),
                Some(3600),
                random,
            );
            let refresh_at = cache.poll_timeout(clock.at(1.0)).unwrap();
            assert!(refresh_at >= clock.at(3600.0 - 90.0), "{random}");
            assert!(refresh_at <= clock.at(3600.0 - 60.0), "{random}");
            seen.push(refresh_at);
        }
        assert_eq!(seen[0], clock.at(3540.0), "random 0 is no jitter");
        assert!(
            seen[6] < clock.at(3510.001),
            "the largest word is almost 1.5 margins"
        );
        let mid = seen[4] - clock.at(3525.0);
        assert!(mid < MS, "half the range for half the words");
        assert!(
            seen.windows(2).all(|pair| pair[0] >= pair[1]),
            "a larger word, an earlier refresh"
        );
        assert!(
            seen[3] < seen[2] && seen[2] < seen[0],
            "different words, different times"
        );
    }

    #[test]
    fn a_token_without_expires_in_lives_five_minutes() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        cache_token(&mut cache, &clock, &request, clock.at(0.0), None, 0);
        ready(&mut cache, &request, clock.at(269.9));
        let ticket = refresh(&mut cache, &request, clock.at(270.0));
        cache.abandon(ticket);
        let ticket = refresh(&mut cache, &request, clock.at(299.9));
        assert!(
            matches!(
                cache.poll(&request, clock.at(300.0)),
                Lookup::Pending { .. }
            ),
            "expired at 300 s: not served"
        );
        cache.abandon(ticket);
        assert_fetches(&mut cache, &request, clock.at(300.0));

        let policy = CachePolicy::new().with_default_lifetime(Duration::from_secs(60));
        let mut cache = TokenCache::new(policy);
        cache_token(&mut cache, &clock, &request, clock.at(0.0), None, 0);
        assert_fetches(&mut cache, &request, clock.at(60.0));
    }

    #[test]
    fn retryable_failures_back_off_exponentially_up_to_the_cap() {
        let clock = Clock::new();
        let request = request();
        for (random, smallest) in [(0, 1.0), (u64::MAX, 0.5)] {
            let mut cache = TokenCache::default();
            let mut now = clock.at(0.0);
            for expected in [1, 2, 4, 8, 16, 32, 60, 60, 60] {
                let expected = Duration::from_secs(expected);
                let ticket = fetch(&mut cache, &request, now);
                let error = cache
                    .handle_response(
                        ticket,
                        &error_response(503, None),
                        clock.wall(now),
                        now,
                        random,
                    )
                    .unwrap_err();
                assert!(error.is_retryable());
                let until = backoff_until(&mut cache, &request, now);
                assert!(until - now <= expected, "{:?} > {expected:?}", until - now);
                assert!(
                    until - now >= expected.mul_f64(smallest),
                    "{:?}",
                    until - now
                );
                backoff_until(&mut cache, &request, until - MS);
                now = until;
            }
            // A success resets the schedule.
            cache_token(&mut cache, &clock, &request, now, Some(3600), random);
            now += Duration::from_secs(3600);
            let ticket = fetch(&mut cache, &request, now);
            let _ =
                cache.handle_response(ticket, &error_response(500, None), clock.wall(now), now, 0);
            assert_eq!(backoff_until(&mut cache, &request, now) - now, SECOND);
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let clock = Clock::new();
        let request = request();
        let now = clock.at(10.0);
        let sent_at = clock.wall(now);
        let date = httpdate::fmt_http_date(sent_at + Duration::from_secs(50));
        for (retry_after, expected) in [
            ("120", 120),
            ("86400", 300),
            (date.as_str(), 50),
            ("0", 1),
            ("soon", 1),
        ] {
            let mut cache = TokenCache::default();
            let ticket = fetch(&mut cache, &request, now);
            let response = error_response(429, Some(retry_after));
            let _ = cache.handle_response(ticket, &response, sent_at, now, 0);
            let until = backoff_until(&mut cache, &request, now);
            assert_eq!(until - now, Duration::from_secs(expected), "{retry_after}");
        }
        // Also on a failure reported without a response, where only a delay can be read.
        let policy = CachePolicy::new().with_retry_after_max(Duration::from_secs(20));
        let mut cache = TokenCache::new(policy);
        let ticket = fetch(&mut cache, &request, now);
        let response = error_response(503, Some("45"));
        let error = request.parse_response(&response, sent_at).unwrap_err();
        let _ = cache.handle_failure(ticket, error, now, 0);
        assert_eq!(
            backoff_until(&mut cache, &request, now) - now,
            Duration::from_secs(20)
        );
    }

    #[test]
    fn non_retryable_failures_back_off_flat_and_keep_the_error() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let mut now = clock.at(0.0);
        for _ in 0..4 {
            let ticket = fetch(&mut cache, &request, now);
            let error = cache
                .handle_response(ticket, &error_response(401, None), clock.wall(now), now, 0)
                .unwrap_err();
            assert!(!error.is_retryable());
            match cache.poll(&request, now + SECOND) {
                Lookup::BackOff { until, error: kept } => {
                    assert_eq!(until - now, Duration::from_secs(10), "flat, not growing");
                    assert!(Arc::ptr_eq(&kept, &error), "waiters get the same error");
                }
                other => panic!("{other:?}"),
            }
            now += Duration::from_secs(10);
        }
        let ticket = fetch(&mut cache, &request, now);
        let _ = cache.handle_response(
            ticket,
            &error_response(401, None),
            clock.wall(now),
            now,
            u64::MAX,
        );
        let jittered = backoff_until(&mut cache, &request, now) - now;
        assert!(jittered >= Duration::from_secs(5) && jittered < Duration::from_secs(10));
    }

    #[test]
    fn transport_failures_back_off_by_their_retryability() {
        let clock = Clock::new();
        let request = request();
        for (kind, expected) in [(TransportKind::Connect, 1), (TransportKind::Tls, 10)] {
            let mut cache = TokenCache::default();
            let now = clock.at(0.0);
            let ticket = fetch(&mut cache, &request, now);
            let error = Error::Transport {
                kind,
                source: "refused".into(),
            };
            let kept = cache.handle_failure(ticket, error, now, 0);
            assert!(matches!(&*kept, Error::Transport { kind: k, .. } if *k == kind));
            let until = backoff_until(&mut cache, &request, now);
            assert_eq!(until - now, Duration::from_secs(expected));
            assert_fetches(&mut cache, &request, until);
        }
    }

    #[test]
    fn a_valid_token_is_served_while_refreshes_fail_and_never_after_expiry() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(120), 0);
        let mut now = clock.at(108.0);
        let mut refreshes = 0;
        while now < clock.at(120.0) {
            match cache.poll(&request, now) {
                Lookup::Ready(served) => assert!(Arc::ptr_eq(&served, &token)),
                Lookup::Refresh {
                    token: served,
                    ticket,
                } => {
                    assert!(Arc::ptr_eq(&served, &token));
                    refreshes += 1;
                    let response = error_response(503, None);
                    let _ = cache.handle_response(ticket, &response, clock.wall(now), now, 0);
                }
                other => panic!("a valid token must be served, got {other:?}"),
            }
            now += Duration::from_millis(250);
        }
        assert_eq!(refreshes, 4, "at 108, 109, 111 and 115 s");
        for secs in [120.0, 121.0, 130.0] {
            assert!(
                cache.poll(&request, clock.at(secs)).token().is_none(),
                "{secs}"
            );
            assert!(cache.peek(&request, clock.at(secs)).is_none(), "{secs}");
        }
    }

    #[test]
    fn invalidate_drops_only_the_rejected_token() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let old = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
        assert!(cache.invalidate(&request, &old));
        let ticket = fetch(&mut cache, &request, clock.at(1.0));
        let response = token_response("new", Some(3600));
        let now = clock.at(2.0);
        let new = cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        // Another task that got a 401 with the old token does not drop the new one.
        assert!(!cache.invalidate(&request, &old));
        assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &new));
        assert!(!cache.invalidate(&client().token_request().build().unwrap(), &new));
    }

    #[test]
    fn force_refresh_refreshes_but_keeps_serving() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        assert!(!cache.force_refresh(&request));
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
        assert!(cache.force_refresh(&request));
        let now = clock.at(5.0);
        let ticket = match cache.poll(&request, now) {
            Lookup::Refresh {
                token: served,
                ticket,
            } => {
                assert!(Arc::ptr_eq(&served, &token));
                ticket
            }
            other => panic!("{other:?}"),
        };
        assert!(
            Arc::ptr_eq(&ready(&mut cache, &request, now), &token),
            "one refresh at a time"
        );
        let _ = cache.handle_response(ticket, &error_response(503, None), clock.wall(now), now, 0);
        // A forced refresh does not cut a back-off short.
        assert!(cache.force_refresh(&request));
        ready(&mut cache, &request, now + Duration::from_millis(999));
        let ticket = refresh(&mut cache, &request, now + SECOND);
        let response = token_response("fresh", Some(3600));
        let fresh = cache.handle_response(ticket, &response, clock.wall(now), now + SECOND, 0);
        assert_eq!(secret(&fresh.unwrap()), "fresh");
        assert_eq!(secret(&ready(&mut cache, &request, now + SECOND)), "fresh");
    }

    #[test]
    fn requests_that_differ_never_share_a_token() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let requests = crate::request::requests_differing_in_each_key_field();
        let now = clock.at(0.0);
        for (i, request) in requests.iter().enumerate() {
            let ticket = fetch(&mut cache, request, now);
            let response = token_response(&format!("token-{i}"), Some(3600));
            cache
                .handle_response(ticket, &response, clock.wall(now), now, 0)
                .unwrap();
        }
        for (i, request) in requests.iter().enumerate() {
            assert_eq!(
                secret(&ready(&mut cache, request, now)),
                format!("token-{i}")
            );
        }
        // The same request, with its scopes in another order, is the same key.
        let same = client()
            .token_request()
            .scope("b a")
            .audience("x")
            .build()
            .unwrap();
        assert_eq!(secret(&ready(&mut cache, &same, now)), "token-0");
    }

    #[test]
    fn an_abandoned_ticket_frees_the_request_and_its_late_answer_changes_nothing() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let now = clock.at(0.0);
        let first = fetch(&mut cache, &request, now);
        let first_again = FetchTicket {
            request: request.clone(),
            id: first.id(),
        };
        cache.abandon(first);
        let second = fetch(&mut cache, &request, now);
        assert_ne!(second.id(), first_again.id());
        // The abandoned fetch's response still reaches its caller, but the cache waits for
        // the current one.
        let late = token_response("late", Some(3600));
        let late = cache
            .handle_response(first_again, &late, clock.wall(now), now, 0)
            .unwrap();
        assert_eq!(secret(&late), "late");
        assert!(matches!(cache.poll(&request, now), Lookup::Pending { .. }));
        let response = token_response("current", Some(3600));
        cache
            .handle_response(second, &response, clock.wall(now), now, 0)
            .unwrap();
        assert_eq!(secret(&ready(&mut cache, &request, now)), "current");
    }

    #[test]
    fn a_fetch_unanswered_past_its_timeout_lets_another_start() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let slow = fetch(&mut cache, &request, clock.at(0.0));
        assert!(matches!(
            cache.poll(&request, clock.at(29.9)),
            Lookup::Pending { .. }
        ));
        let next = fetch(&mut cache, &request, clock.at(30.0));
        let now = clock.at(31.0);
        let error = cache.handle_failure(slow, Error::BodyTooLarge { limit: 1 }, now, 0);
        assert!(matches!(*error, Error::BodyTooLarge { .. }));
        assert!(
            matches!(cache.poll(&request, now), Lookup::Pending { .. }),
            "the stale failure causes no back-off"
        );
        let response = token_response("t", Some(60));
        cache
            .handle_response(next, &response, clock.wall(now), now, 0)
            .unwrap();
        ready(&mut cache, &request, now);
    }

    #[test]
    fn a_late_answer_counts_unless_another_fetch_started() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(600), 0);
        let slow = refresh(&mut cache, &request, clock.at(540.0));
        assert!(cache.poll_refresh(clock.at(569.0)).is_none());
        assert!(
            cache.peek(&request, clock.at(570.0)).is_none(),
            "timed out: due again"
        );
        let now = clock.at(575.0);
        let response = token_response("late", Some(600));
        cache
            .handle_response(slow, &response, clock.wall(now), now, 0)
            .unwrap();
        let late = ready(&mut cache, &request, now);
        assert!(!Arc::ptr_eq(&late, &token));
        assert_eq!(secret(&late), "late");
    }

    #[test]
    fn poll_timeout_and_poll_refresh_drive_a_background_refresher() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let other = client().token_request().build().unwrap();
        assert_eq!(cache.poll_timeout(clock.at(0.0)), None);
        assert!(cache.poll_refresh(clock.at(0.0)).is_none());
        let ticket = fetch(&mut cache, &request, clock.at(0.0));
        assert_eq!(
            cache.poll_timeout(clock.at(0.0)),
            Some(clock.at(30.0)),
            "the deadline"
        );
        let now = clock.at(1.0);
        let response = token_response("t", Some(600));
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        assert_eq!(
            cache.poll_timeout(now),
            Some(clock.at(540.0)),
            "the refresh"
        );
        let ticket = fetch(&mut cache, &other, now);
        let _ = cache.handle_response(ticket, &error_response(503, None), clock.wall(now), now, 0);
        assert_eq!(cache.poll_timeout(now), Some(clock.at(2.0)), "the back-off");
        assert!(cache.poll_refresh(clock.at(539.0)).is_none());
        let due = clock.at(540.0);
        assert_eq!(cache.poll_timeout(due), Some(due), "due now");
        let ticket = cache.poll_refresh(due).unwrap();
        assert_eq!(ticket.request(), &request);
        assert!(cache.poll_refresh(due).is_none(), "one fetch at a time");
        assert_eq!(
            cache.poll_timeout(due),
            Some(clock.at(570.0)),
            "the fetch's deadline"
        );
        ready(&mut cache, &request, due);
        let response = token_response("t2", Some(600));
        cache
            .handle_response(ticket, &response, clock.wall(due), due, 0)
            .unwrap();
        assert_eq!(cache.poll_timeout(due), Some(clock.at(1080.0)));
        assert!(cache.remove(&request));
        assert!(!cache.remove(&request));
        assert_eq!(
            cache.poll_timeout(due),
            None,
            "the other key's back-off is over"
        );
    }

    #[test]
    fn peek_answers_exactly_when_poll_would_be_ready() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        assert!(cache.peek(&request, clock.at(0.0)).is_none());
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(120), 0);
        assert!(Arc::ptr_eq(
            &cache.peek(&request, clock.at(107.9)).unwrap(),
            &token
        ));
        assert!(
            cache.peek(&request, clock.at(108.0)).is_none(),
            "a refresh is due"
        );
        let ticket = refresh(&mut cache, &request, clock.at(108.0));
        assert!(
            cache.peek(&request, clock.at(108.0)).is_some(),
            "refresh under way"
        );
        assert!(cache.peek(&request, clock.at(119.9)).is_some());
        assert!(cache.peek(&request, clock.at(120.0)).is_none(), "expired");
        cache.abandon(ticket);
    }

    #[test]
    fn peek_until_holds_its_answer_until_the_next_event() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        assert!(cache.peek_until(&request, clock.at(0.0)).is_none());
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(120), 0);
        let (peeked, until) = cache.peek_until(&request, clock.at(1.0)).unwrap();
        assert!(Arc::ptr_eq(&peeked, &token));
        assert_eq!(until, clock.at(108.0), "the refresh falls due");
        assert!(cache.peek(&request, until - MS).is_some());
        assert!(cache.peek(&request, until).is_none());
        assert!(cache.peek_until(&request, until).is_none());

        let ticket = refresh(&mut cache, &request, until);
        let (_, busy_until) = cache.peek_until(&request, until).unwrap();
        assert_eq!(
            busy_until,
            clock.at(120.0),
            "the token expires before the deadline"
        );
        let _ = cache.handle_response(
            ticket,
            &error_response(503, Some("5")),
            clock.wall(until),
            until,
            0,
        );
        let (_, backoff_until) = cache.peek_until(&request, until).unwrap();
        assert_eq!(backoff_until, clock.at(113.0), "the back-off ends");
        assert!(cache.peek(&request, backoff_until - MS).is_some());
    }

    #[test]
    fn a_token_expired_on_arrival_is_returned_but_not_cached() {
        let clock = Clock::new();
        // Without a back-off (see the next test), the next poll shows that nothing was cached.
        let mut cache = TokenCache::new(CachePolicy::new().with_backoff_initial(Duration::ZERO));
        let request = request();
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(0), 0);
        assert_eq!(secret(&token), "t");
        assert_fetches(&mut cache, &request, clock.at(0.0));
    }

    #[test]
    fn a_token_due_on_arrival_counts_as_a_failure_for_back_off() {
        let clock = Clock::new();
        let mut cache = TokenCache::new(CachePolicy::new().with_backoff_jitter(0.0));
        let request = request();
        // Expired on arrival: its caller gets it, and the next fetch waits 1 s, then 2 s.
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(0), 0);
        assert_eq!(secret(&token), "t");
        match cache.poll(&request, clock.at(0.5)) {
            Lookup::BackOff { until, error } => {
                assert_eq!(until, clock.at(1.0));
                assert!(
                    matches!(*error, Error::TokenDueOnArrival { lifetime } if lifetime.is_zero())
                );
                assert!(error.is_retryable());
            }
            other => panic!("expected a back-off, got {other:?}"),
        }
        let _ = cache_token(&mut cache, &clock, &request, clock.at(1.0), Some(0), 0);
        assert_eq!(
            backoff_until(&mut cache, &request, clock.at(1.0)),
            clock.at(3.0)
        );

        // Valid but due at once (a 10-second lifetime, all of it the refresh lead): served, and
        // its refresh waits for the back-off of a first failure, 1 s.
        let mut cache = TokenCache::new(
            CachePolicy::new()
                .with_refresh_fraction(1.0)
                .with_refresh_jitter(0.0)
                .with_backoff_jitter(0.0),
        );
        let now = clock.at(0.0);
        let token = cache_token(&mut cache, &clock, &request, now, Some(10), 0);
        assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
        assert!(Arc::ptr_eq(
            &ready(&mut cache, &request, clock.at(0.9)),
            &token
        ));
        assert_eq!(
            cache.peek_until(&request, now).map(|(_, until)| until),
            Some(clock.at(1.0)),
            "the back-off ends"
        );
        let ticket = refresh(&mut cache, &request, clock.at(1.0));
        let response = token_response("long", Some(3600));
        let now = clock.at(1.0);
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        // A token not due on arrival ends the run of failures.
        assert_eq!(secret(&ready(&mut cache, &request, clock.at(2.0))), "long");
    }

    #[test]
    fn invalidating_a_young_token_drops_it_at_its_minimum_age() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        assert_eq!(cache.policy().invalidate_min_age(), SECOND);
        let request = request();
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
        // Rejected 300 times within its first second: still one token, and one fetch after.
        for i in 0..300 {
            let now = clock.at(f64::from(i) / 400.0);
            let served = ready(&mut cache, &request, now);
            assert!(Arc::ptr_eq(&served, &token));
            assert!(cache.invalidate(&request, &served));
        }
        assert!(cache.peek(&request, clock.at(0.999)).is_some());
        assert_eq!(
            cache
                .peek_until(&request, clock.at(0.5))
                .map(|(_, until)| until),
            Some(clock.at(1.0))
        );
        let ticket = fetch(&mut cache, &request, clock.at(1.0));
        let now = clock.at(1.5);
        let response = token_response("next", Some(3600));
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        // A token older than the minimum age is dropped at once.
        let next = ready(&mut cache, &request, clock.at(5.0));
        assert!(cache.invalidate(&request, &next));
        assert!(cache.peek(&request, clock.at(5.0)).is_none());
        assert!(!cache.invalidate(&request, &token), "not the cached token");
        assert_fetches(&mut cache, &request, clock.at(5.0));

        // With no minimum, an invalidated token is dropped at once, whatever its age.
        let mut cache = TokenCache::new(CachePolicy::new().with_invalidate_min_age(Duration::ZERO));
        let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
        assert!(cache.invalidate(&request, &token));
        assert!(!cache.invalidate(&request, &token), "already dropped");
        assert_fetches(&mut cache, &request, clock.at(0.0));
    }

    /// A request unlike any other: a scope of its own.
    fn tenant(i: usize) -> TokenRequest {
        client()
            .token_request()
            .scope(format!("tenant-{i}"))
            .build()
            .unwrap()
    }

    #[test]
    fn memory_stays_flat_over_100_000_distinct_requests() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        assert_eq!(cache.policy().capacity(), 1024);
        // One request has a fetch in flight throughout: its ticket must still count.
        let waiting = request();
        let ticket = fetch(&mut cache, &waiting, clock.at(0.0));
        for i in 0..100_000 {
            let now = clock.at(i as f64 / 100_000.0);
            let request = tenant(i);
            let _ = cache_token(&mut cache, &clock, &request, now, Some(3600), 0);
            assert!(cache.len() <= 1024, "{} requests after {i}", cache.len());
            // The table grows once, to make room for the slots that removals leave behind,
            // then reuses them.
            assert!(
                cache.entries.capacity() <= 4 * 1024,
                "the table grew after {i}"
            );
        }
        assert_eq!(cache.len(), 1024);
        assert!(cache.contains(&waiting));
        let now = clock.at(1.0);
        let response = token_response("kept", Some(3600));
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        assert_eq!(secret(&ready(&mut cache, &waiting, now)), "kept");
    }

    #[test]
    fn a_full_cache_forgets_idle_requests_first_then_the_least_recently_used() {
        let clock = Clock::new();
        let mut cache = TokenCache::new(CachePolicy::new().with_capacity(3));
        let [a, b, c, d, e, f] = [0, 1, 2, 3, 4, 5].map(tenant);
        let now = clock.at(0.0);
        let _ = cache_token(&mut cache, &clock, &a, now, Some(3600), 0);
        let _ = cache_token(&mut cache, &clock, &b, now, Some(10), 0);
        let in_flight = fetch(&mut cache, &c, now);
        // `b` expired, though polled after `a`: it goes first.
        let now = clock.at(20.0);
        let d_ticket = fetch(&mut cache, &d, now);
        assert!(!cache.contains(&b));
        assert_eq!(cache.len(), 3);
        // Then the least recently used, never one with a fetch in flight.
        let e_ticket = fetch(&mut cache, &e, now);
        assert!(!cache.contains(&a));
        assert!(cache.contains(&c) && cache.contains(&d) && cache.contains(&e));
        // All in flight: the new request joins them.
        let f_ticket = fetch(&mut cache, &f, now);
        assert_eq!(cache.len(), 4);
        let response = token_response("c", Some(3600));
        cache
            .handle_response(in_flight, &response, clock.wall(now), now, 0)
            .unwrap();
        assert_eq!(secret(&ready(&mut cache, &c, now)), "c");
        for ticket in [d_ticket, e_ticket, f_ticket] {
            cache.abandon(ticket);
        }
        assert_eq!(CachePolicy::new().with_capacity(0).capacity(), 1);
    }

    #[test]
    fn a_removed_requests_ticket_changes_nothing() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let now = clock.at(0.0);
        let ticket = fetch(&mut cache, &request, now);
        assert!(cache.remove(&request));
        let response = token_response("t", Some(60));
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        assert_fetches(&mut cache, &request, now);
    }

    #[test]
    fn extreme_policies_and_lifetimes_do_not_panic() {
        let clock = Clock::new();
        let request = request();
        let policy = CachePolicy::new()
            .with_refresh_margin(Duration::MAX)
            .with_refresh_fraction(f64::NAN)
            .with_refresh_jitter(7.0)
            .with_default_lifetime(Duration::MAX)
            .with_backoff_initial(Duration::MAX)
            .with_backoff_max(Duration::MAX)
            .with_backoff_jitter(-1.0)
            .with_non_retryable_backoff(Duration::MAX)
            .with_retry_after_max(Duration::MAX)
            .with_fetch_timeout(Duration::MAX)
            // Each token is invalidated at once, so that the next is fetched.
            .with_invalidate_min_age(Duration::ZERO);
        assert_eq!(policy.refresh_fraction(), 0.0);
        assert_eq!(policy.refresh_jitter(), 1.0);
        assert_eq!(policy.backoff_jitter(), 0.0);
        let mut cache = TokenCache::new(policy);
        let now = clock.at(0.0);
        for expires_in in [None, Some(u64::MAX)] {
            let token = cache_token(&mut cache, &clock, &request, now, expires_in, u64::MAX);
            assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
            assert!(cache.invalidate(&request, &token));
        }
        let ticket = fetch(&mut cache, &request, now);
        let response = error_response(503, Some("99999999999999999"));
        let _ = cache.handle_response(ticket, &response, clock.wall(now), now, u64::MAX);
        assert!(backoff_until(&mut cache, &request, now) > now);
        let _ = cache.poll_timeout(now);
    }

    #[test]
    fn handle_result_takes_a_parsed_token_or_failure() {
        let clock = Clock::new();
        let mut cache = TokenCache::new(CachePolicy::new().with_backoff_jitter(0.0));
        let request = request();
        let now = clock.at(0.0);
        let ticket = fetch(&mut cache, &request, now);
        let parsed = request.parse_response(&token_response("parsed", Some(600)), clock.wall(now));
        let token = cache
            .handle_result(ticket, parsed, clock.wall(now), now, 0)
            .unwrap();
        assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
        assert!(cache.peek(&request, clock.at(539.9)).is_some());
        assert!(
            cache.peek(&request, clock.at(540.0)).is_none(),
            "refresh due"
        );

        // A failure's `Retry-After` date counts from `sent_at`.
        let other = client().token_request().build().unwrap();
        let ticket = fetch(&mut cache, &other, now);
        let date = httpdate::fmt_http_date(clock.wall(now) + 30 * SECOND);
        let parsed = other.parse_response(&error_response(503, Some(&date)), clock.wall(now));
        let error = cache
            .handle_result(ticket, parsed, clock.wall(now), now, 0)
            .unwrap_err();
        assert_eq!(error.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(backoff_until(&mut cache, &other, now), clock.at(30.0));

        // A ticket no longer current passes its outcome through and changes nothing.
        let stale = refresh(&mut cache, &request, clock.at(540.0));
        let stale_again = FetchTicket {
            request: request.clone(),
            id: stale.id(),
        };
        cache.abandon(stale);
        let late = Err(Error::BodyTooLarge { limit: 1 });
        let late = cache.handle_result(stale_again, late, clock.wall(now), clock.at(541.0), 0);
        assert!(matches!(*late.unwrap_err(), Error::BodyTooLarge { .. }));
        let ticket = refresh(&mut cache, &request, clock.at(541.0));
        assert!(Arc::ptr_eq(
            &ready(&mut cache, &request, clock.at(541.0)),
            &token
        ));
        cache.abandon(ticket);
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TokenCache>();
        send_sync::<Lookup>();
        send_sync::<FetchTicket>();
        send_sync::<CachePolicy>();
    }

    #[test]
    fn debug_never_shows_the_token() {
        let clock = Clock::new();
        let mut cache = TokenCache::default();
        let request = request();
        let ticket = fetch(&mut cache, &request, clock.at(0.0));
        let ticket_text = format!("{ticket:?}");
        let response = token_response("hunter2", Some(60));
        let now = clock.at(0.0);
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
        let lookup = cache.poll(&request, now);
        for text in [format!("{lookup:?}"), format!("{cache:?}"), ticket_text] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
