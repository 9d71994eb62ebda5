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
use crate::request::TokenRequest;
use crate::token::Token;

pub(crate) mod policy;

pub use policy::CachePolicy;
use policy::later;

/// Starts a fetch for `entry`, whose ticket is the next one. `seed` is the cache's random word,
/// from which the fetch's own is drawn, for the back-off should it time out.
fn issue(
    last_ticket: &mut u64,
    seed: u64,
    entry: &mut Entry,
    request: &TokenRequest,
    now: Instant,
    timeout: Duration,
) -> FetchTicket {
    *last_ticket += 1;
    let deadline = later(now, timeout);
    entry.fetch = Some(InFlight {
        id: *last_ticket,
        started: now,
        deadline,
        timed_out: false,
        random: mix(seed, *last_ticket),
    });
    FetchTicket {
        request: request.clone(),
        id: *last_ticket,
        deadline,
    }
}

/// A random word for one fetch, from the cache's and the fetch's number (splitmix64's
/// finalizer): fetches timing out together back off for different times.
fn mix(seed: u64, id: u64) -> u64 {
    let mut z = seed.wrapping_add(id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    /// again. Poll again at `deadline` at the latest: a fetch unanswered by then counts as a
    /// failure ([`Error::FetchTimedOut`]), which that poll answers with [`Lookup::BackOff`].
    Pending {
        /// When the fetch under way times out (its [`CachePolicy::fetch_timeout`]).
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
    deadline: Instant,
}

impl FetchTicket {
    /// The token request to send: build its HTTP request with
    /// [`TokenRequest::http_request`] for each attempt, or run it through
    /// [`TokenFetch`](crate::fetch::TokenFetch) or [`fetch_token`](crate::fetch::fetch_token).
    #[must_use]
    pub fn request(&self) -> &TokenRequest {
        &self.request
    }

    /// The ticket's number, unique within its cache, for logs.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the fetch times out ([`CachePolicy::fetch_timeout`] after the ticket was handed
    /// out): give the fetch up then, and hand [`Error::FetchTimedOut`] to
    /// [`TokenCache::handle_failure`]. By then the cache has counted the failure and answers
    /// waiters with it; handing it in gives the fetcher the same error.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
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
/// - One fetch per request at a time. A fetch given up ([`abandon`](Self::abandon)) frees the
///   way for the next; one not answered within [`CachePolicy::fetch_timeout`] is a failure
///   ([`Error::FetchTimedOut`]) like any other, and the request backs off. A late answer
///   still counts unless another fetch has started since (a late failure without counting
///   twice); otherwise it is parsed for its caller but changes nothing in the cache.
/// - A token an API refused ([`invalidate`](Self::invalidate)) is replaced: from its minimum
///   age on, polls wait for a fetch of a new one. While that fetch fails and the request backs
///   off, the refused token is served again until it expires, to callers of other APIs; the
///   caller it was refused to asks with [`poll_replacing`](Self::poll_replacing) and gets the
///   failure. Refusals in a row double the minimum age, up to
///   [`CachePolicy::with_invalidate_max_age`], until a call is [`accepted`](Self::accepted).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant, SystemTime};
/// use client_credentials::{Attempt, ClientCredentials, ClientSecret, TokenUrl};
/// use client_credentials::cache::{Lookup, TokenCache};
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
    /// Mixed from every random word handed in ([`with_seed`](Self::with_seed) and each
    /// answer's): the jitter of back-offs the cache starts on its own, after a fetch times out.
    seed: u64,
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
    /// Tokens refused in a row ([`TokenCache::invalidate`]) since a call was accepted.
    refusals: u32,
    /// The cache's `clock` when the entry was last polled or given a token.
    last_used: u64,
}

struct Cached {
    token: Arc<Token>,
    started: Instant,
    refresh_at: Instant,
    expires_at: Instant,
    /// When an API's refusal of the token takes effect (its minimum age): from then on a new
    /// token is fetched, and this one is served only while that fails.
    refused_at: Option<Instant>,
}

impl Cached {
    fn refused(&self, now: Instant) -> bool {
        self.refused_at.is_some_and(|at| now >= at)
    }

    fn is(&self, token: &Token) -> bool {
        self.token.same_access_token(token)
    }
}

struct InFlight {
    id: u64,
    started: Instant,
    deadline: Instant,
    /// Whether its deadline passed and the cache counted that as a failure.
    timed_out: bool,
    /// The jitter of the back-off should it time out: drawn when it starts, so that what
    /// `peek` foresees and what `poll` does agree.
    random: u64,
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

    /// A fetch whose deadline has passed, not yet counted as a failure: the next `settle`
    /// counts it.
    fn timed_out_uncounted(&self, now: Instant) -> Option<&InFlight> {
        self.fetch
            .as_ref()
            .filter(|fetch| !fetch.timed_out && now >= fetch.deadline)
    }

    /// When the back-off under way at `now` ends, if one is: the last failure's, or the one a
    /// fetch that timed out starts once counted, foreseen here so that `&self` methods answer
    /// as `poll` does.
    fn backoff_end(&self, now: Instant, policy: &CachePolicy) -> Option<Instant> {
        let until = match (&self.backoff, self.timed_out_uncounted(now)) {
            (Some(backoff), _) => backoff.until,
            (None, Some(fetch)) => {
                let error = Error::FetchTimedOut {
                    timeout: policy.fetch_timeout,
                };
                let failures = self.failures.saturating_add(1);
                let delay = policy.backoff(&error, failures, None, fetch.random);
                later(fetch.deadline, delay)
            }
            (None, None) => return None,
        };
        (now < until).then_some(until)
    }

    /// Counts a fetch that timed out as a failure, and drops what `now` has made obsolete: an
    /// expired token, a back-off that is over. The timed-out fetch is kept, counted, so that
    /// its late answer still counts (without counting twice) unless another fetch has started
    /// since.
    fn settle(&mut self, now: Instant, policy: &CachePolicy) {
        if self.timed_out_uncounted(now).is_some()
            && let Some(fetch) = self.fetch.as_mut()
        {
            fetch.timed_out = true;
            let (deadline, random) = (fetch.deadline, fetch.random);
            let error = Error::FetchTimedOut {
                timeout: policy.fetch_timeout,
            };
            // From the deadline, not from `now`: a poll long after it finds the back-off over,
            // as `backoff_end` foresaw.
            let _ = self.fail(error, None, deadline, policy, random);
        }
        if self.token_valid(now).is_none() {
            self.token = None;
        }
        if self.backoff.as_ref().is_some_and(|b| now >= b.until) {
            self.backoff = None;
        }
    }

    /// Whether forgetting the entry loses nothing but its failure count: it has no valid token
    /// and no back-off under way.
    fn idle(&self, now: Instant, policy: &CachePolicy) -> bool {
        self.token_valid(now).is_none() && self.backoff_end(now, policy).is_none()
    }

    /// Whether the (settled) entry's token is due for a fetch that may start now: its refresh
    /// is due, or an API's refusal of it has taken effect.
    fn refresh_due(&self, now: Instant) -> bool {
        self.fetch_active(now).is_none()
            && self.backoff.is_none()
            && self
                .token
                .as_ref()
                .is_some_and(|c| now >= c.refresh_at || c.refused(now))
    }

    /// The next moment at which a poll would answer differently.
    fn next_event(&self, now: Instant, policy: &CachePolicy) -> Option<Instant> {
        let fetch = self.fetch_active(now).map(|fetch| fetch.deadline);
        let backoff = self.backoff_end(now, policy);
        let Some(cached) = self.token_valid(now) else {
            return fetch.into_iter().chain(backoff).min();
        };
        let refused_at = cached.refused_at.filter(|&at| at > now);
        let next = match fetch.or(backoff) {
            Some(busy) => busy,
            // A refusal in effect with nothing under way: a fetch is due now.
            None if cached.refused(now) => cached.refused_at.unwrap_or(now),
            None => cached.refresh_at,
        };
        let next = refused_at.map_or(next, |at| at.min(next));
        Some(next.min(cached.expires_at))
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
                refused_at: None,
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

    /// The failure of a fetch already counted as timed out, come late: the fetcher's own
    /// report of the timeout gets the error waiters got and changes nothing (its back-off may
    /// be over already: one timeout backs off once); another failure replaces it, and makes
    /// the back-off no shorter, without counting a second failure.
    fn fail_late(
        &mut self,
        error: Error,
        sent_at: Option<SystemTime>,
        now: Instant,
        policy: &CachePolicy,
        random: u64,
    ) -> Arc<Error> {
        if let Error::FetchTimedOut { .. } = error {
            return match &self.backoff {
                Some(backoff) if matches!(*backoff.error, Error::FetchTimedOut { .. }) => {
                    Arc::clone(&backoff.error)
                }
                _ => Arc::new(error),
            };
        }
        let delay = policy.backoff(&error, self.failures.max(1), sent_at, random);
        let until = later(now, delay);
        let until = self.backoff.as_ref().map_or(until, |b| b.until.max(until));
        let error = Arc::new(error);
        self.backoff = Some(Backoff {
            until,
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
            seed: 0,
        }
    }

    /// The cache with `random` as the first random word of the jitter it draws on its own: of
    /// the back-off after a fetch that timed out, which no answer brings a word for. Every
    /// word handed in later (with each answer) is mixed in. Seed each cache of a fleet
    /// differently (`fastrand::u64(..)`, say), so that their fetches timing out together do
    /// not back off in lockstep; the token sources do.
    #[must_use]
    pub fn with_seed(mut self, random: u64) -> Self {
        self.seed = random;
        self
    }

    /// Mixes an answer's random word into the seed.
    fn reseed(&mut self, random: u64) {
        self.seed = mix(self.seed ^ random, 1);
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
        let policy = &self.policy;
        let rank = |entry: &Entry| (!entry.idle(now, policy), entry.last_used);
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
        self.lookup(request, None, now)
    }

    /// Says what to do about `request` at `now` for the caller that an API just refused
    /// `rejected` (and that has [`invalidate`](Self::invalidate)d it): as [`poll`](Self::poll),
    /// except that once the refusal has taken effect, `rejected` is never the answer. While a
    /// fetch of its replacement fails and the request backs off, [`poll`](Self::poll) still
    /// serves `rejected` to callers of other APIs, but this caller gets the failure
    /// ([`Lookup::BackOff`]).
    ///
    /// Before its minimum age ([`CachePolicy::with_invalidate_min_age`]), the refusal has not
    /// taken effect, and the answer may be `rejected` itself: send it again, and it will be
    /// refused again.
    pub fn poll_replacing(
        &mut self,
        request: &TokenRequest,
        rejected: &Token,
        now: Instant,
    ) -> Lookup {
        self.lookup(request, Some(rejected), now)
    }

    fn lookup(&mut self, request: &TokenRequest, rejected: Option<&Token>, now: Instant) -> Lookup {
        let used = self.tick();
        let entry = match self.entries.get_mut(request) {
            Some(entry) => entry,
            None => {
                self.make_room(now);
                self.entries.entry(request.clone()).or_default()
            }
        };
        entry.last_used = used;
        entry.settle(now, &self.policy);
        let (seed, timeout, last_ticket) =
            (self.seed, self.policy.fetch_timeout, &mut self.last_ticket);
        let mut issue = |entry: &mut Entry| issue(last_ticket, seed, entry, request, now, timeout);
        // A refused token is served only while its replacement cannot be had (below), and
        // never to the caller it was refused to.
        let refused = entry.token.as_ref().filter(|cached| cached.refused(now));
        if refused.is_none() {
            if entry.refresh_due(now)
                && let Some(cached) = &entry.token
            {
                let token = Arc::clone(&cached.token);
                return Lookup::Refresh {
                    token,
                    ticket: issue(entry),
                };
            }
            if let Some(cached) = &entry.token {
                return Lookup::Ready(Arc::clone(&cached.token));
            }
        }
        if let Some(fetch) = entry.fetch_active(now) {
            return Lookup::Pending {
                deadline: fetch.deadline,
            };
        }
        if let Some(backoff) = &entry.backoff {
            return match refused {
                Some(cached) if !rejected.is_some_and(|rejected| cached.is(rejected)) => {
                    Lookup::Ready(Arc::clone(&cached.token))
                }
                _ => Lookup::BackOff {
                    until: backoff.until,
                    error: Arc::clone(&backoff.error),
                },
            };
        }
        Lookup::Fetch(issue(entry))
    }

    /// The token [`poll`](Self::poll) would answer [`Lookup::Ready`] with, without changing
    /// anything: a fast path for a cache behind a read-write lock. `None` means: poll.
    #[must_use]
    pub fn peek(&self, request: &TokenRequest, now: Instant) -> Option<Arc<Token>> {
        let entry = self.entries.get(request)?;
        let cached = entry.token_valid(now)?;
        let fetching = entry.fetch_active(now).is_some();
        let backing_off = entry.backoff_end(now, &self.policy).is_some();
        let ready = if cached.refused(now) {
            // Served only while its replacement fails.
            backing_off && !fetching
        } else {
            now < cached.refresh_at || fetching || backing_off
        };
        ready.then(|| Arc::clone(&cached.token))
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
        let until = self.entries.get(request)?.next_event(now, &self.policy)?;
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
    /// token carries its own [`sent_at`](Token::sent_at); one sent later than `sent_at` (after
    /// a wait for another process's fetch, say) counts its lifetime from its own.
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
        self.reseed(random);
        let used = self.tick();
        let Some((entry, fetch)) = self.take_current(&ticket, now) else {
            return result.map(Arc::new).map_err(Arc::new);
        };
        // A new token makes the request worth keeping, however long ago it was polled.
        entry.last_used = used;
        match result {
            Ok(token) => {
                // A token sent later than this ticket's fetch began (fetched by a fleet's lease
                // holder after a wait, or read from a shared store) counts its lifetime from its
                // own `sent_at`, not from the ticket: else it would fall due as early as the
                // wait was long. Never later than now.
                let lag = token.sent_at().duration_since(sent_at).unwrap_or_default();
                let started = fetch
                    .started
                    .checked_add(lag)
                    .map_or(now, |aged| aged.min(now));
                Ok(entry.store(token, started, now, &policy, random))
            }
            Err(error) if fetch.timed_out => {
                Err(entry.fail_late(error, Some(sent_at), now, &policy, random))
            }
            Err(error) => Err(entry.fail(error, Some(sent_at), now, &policy, random)),
        }
    }

    /// Takes a failure to get a response to a ticket's request, such as the
    /// [`Error::Transport`] or [`Error::BodyTooLarge`] an adapter reports, or the
    /// [`Error::FetchTimedOut`] of a fetch given up at its [deadline](FetchTicket::deadline),
    /// and backs off.
    ///
    /// Returns the error, shared with later polls ([`Lookup::BackOff`]): for a timeout the
    /// cache has counted already, the error the waiters got. Responses belong in
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
        self.reseed(random);
        match self.take_current(&ticket, now) {
            Some((entry, fetch)) if fetch.timed_out => {
                entry.fail_late(error, None, now, &policy, random)
            }
            Some((entry, _)) => entry.fail(error, None, now, &policy, random),
            None => Arc::new(error),
        }
    }

    /// Gives a ticket up without an answer (its caller was cancelled, say), so that the next
    /// poll may start another fetch at once. Nothing is counted as a failure, unless the fetch
    /// had already timed out when the cache last looked.
    pub fn abandon(&mut self, ticket: FetchTicket) {
        let _ = self
            .entries
            .get_mut(&ticket.request)
            .and_then(|entry| entry.fetch.take_if(|fetch| fetch.id == ticket.id));
    }

    /// Records that an API refused `rejected`, the token of `request` it was sent (HTTP 401),
    /// so that the next poll fetches a new one. Returns whether this call refused it: false for
    /// a token no longer cached, or refused already.
    ///
    /// A token that has already been replaced stays: many tasks that got a 401 with the same
    /// old token cause at most one new fetch. A back-off under way still applies. A token
    /// younger than its minimum age (from when its fetch started:
    /// [`CachePolicy::invalidate_min_age`], doubled for each refusal in a row, up to
    /// [`CachePolicy::invalidate_max_age`]) is refused once it reaches that age, and served
    /// until then: an API that refuses every token does not turn each call into a token
    /// request.
    ///
    /// A refused token is not forgotten: while the fetch of its replacement fails and the
    /// request backs off, [`poll`](Self::poll) serves it until it expires (other APIs may
    /// accept it), and [`poll_replacing`](Self::poll_replacing) answers the failure.
    pub fn invalidate(&mut self, request: &TokenRequest, rejected: &Token) -> bool {
        let policy = self.policy;
        let Some(entry) = self.entries.get_mut(request) else {
            return false;
        };
        let Some(cached) = entry.token.as_mut().filter(|cached| cached.is(rejected)) else {
            return false;
        };
        if cached.refused_at.is_some() {
            return false;
        }
        entry.refusals = entry.refusals.saturating_add(1);
        // Without a clock of its own the cache cannot tell the token's age here: the refusal
        // takes effect at the token's minimum age, which for an older token has passed.
        let age = policy.invalidate_age(entry.refusals);
        cached.refused_at = Some(later(cached.started, age));
        true
    }

    /// Records that an API accepted `token`, the token of `request` it was sent: the next
    /// refusal counts as the first in a row again ([`invalidate`](Self::invalidate)). Returns
    /// whether there were refusals to forget.
    pub fn accepted(&mut self, request: &TokenRequest, token: &Token) -> bool {
        let Some(entry) = self.entries.get_mut(request) else {
            return false;
        };
        let current = entry.token.as_ref().is_some_and(|cached| cached.is(token));
        if !current || entry.refusals == 0 {
            return false;
        }
        entry.refusals = 0;
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
            .filter_map(|entry| entry.next_event(now, &self.policy))
            .min()
    }

    /// A ticket to refresh some cached token that is due for refresh, if one is: for a
    /// background task that keeps tokens fresh before callers ask. Call it until it answers
    /// `None`. Requests without a valid token are left for callers to fetch.
    pub fn poll_refresh(&mut self, now: Instant) -> Option<FetchTicket> {
        for (request, entry) in &mut self.entries {
            entry.settle(now, &self.policy);
            if entry.refresh_due(now) {
                let timeout = self.policy.fetch_timeout;
                let seed = self.seed;
                return Some(issue(
                    &mut self.last_ticket,
                    seed,
                    entry,
                    request,
                    now,
                    timeout,
                ));
            }
        }
        None
    }

    /// The entry whose current fetch `ticket` is, settled at `now` (a fetch past its deadline
    /// counted as timed out), with that fetch taken out.
    fn take_current(
        &mut self,
        ticket: &FetchTicket,
        now: Instant,
    ) -> Option<(&mut Entry, InFlight)> {
        let policy = self.policy;
        let entry = self.entries.get_mut(&ticket.request)?;
        if entry
            .fetch
            .as_ref()
            .is_none_or(|fetch| fetch.id != ticket.id)
        {
            return None;
        }
        entry.settle(now, &policy);
        let fetch = entry.fetch.take()?;
        Some((entry, fetch))
    }
}

#[cfg(test)]
mod tests;
