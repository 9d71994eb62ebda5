//! Fuzzes the token cache's state machine with any sequence of polls (plain, and for a caller an
//! API refused a token), peeks, answers (the fetcher's own report of a timeout among them),
//! abandons, invalidations, acceptances, removals and time steps, under any policy (capacity 1
//! to 5 over four requests included) and seed, and checks its laws after every step against a
//! model that knows only what the caller knows:
//!
//! - a token served (`Ready`, `Refresh`, `peek`) is the latest one stored for that request and
//!   has not expired at `now`; a request with such a token, not refused, is always served it;
//! - an invalidated token is refused exactly from its minimum age, counted from when its fetch
//!   started and doubled for each refusal in a row up to the policy's maximum, until a call is
//!   accepted: until then it is served as before; from then on a fetch replaces it (never a
//!   refresh), and it is served only while a back-off is under way with no fetch, and never to
//!   `poll_replacing` for it, which gets the back-off; `invalidate` says whether it refused the
//!   cached token (once: not again), `accepted` whether that had refusals in a row to forget;
//! - never two fetches in flight for one request, and no fetch (refused token or not) before the
//!   back-off of the last failure (the server's `Retry-After` as far as the policy honours it,
//!   else the shortest back-off the policy allows after that many failures in a row) has passed;
//! - a fetch unanswered at its ticket's `deadline` (`fetch_timeout` after it was handed out) is
//!   a failure (`FetchTimedOut`) at once, backing off from the deadline: its waiters get it, and
//!   no ticket, until the back-off ends; `peek` and `poll_timeout` foresee it before a poll
//!   counts it. Its late token still counts; its late failure counts no second failure: the
//!   fetcher's own timeout report gets the very error the back-off shows, another error
//!   replaces it and makes the back-off no shorter. Abandoned before the cache looked at it
//!   since its deadline, its timeout may go uncounted, and nothing else is counted;
//! - a token that arrives due for refresh is a failure for back-off (`TokenDueOnArrival`),
//!   whenever the model can tell it was due;
//! - a ticket is for the request polled, its id is new and its deadline is `fetch_timeout` on;
//! - `peek` agrees with `poll` (and with `poll_replacing`, but for the refused token), and keeps
//!   its answer until `peek_until`'s moment; `poll_timeout` comes no later than an expiry, a
//!   fetch's deadline, a refusal taking effect or the end of a back-off under way;
//! - a back-off shows the failure that caused it, ends in the future but within the policy's
//!   bounds, keeps its end until the next failure, and a request with no usable token, no fetch
//!   and no back-off under way gets a ticket (no deadlock);
//! - a request is forgotten only when another, new one comes to a full cache, never one with a
//!   fetch in flight, no more than make room, idle ones before the others and the least
//!   recently used first; the cache holds more than its capacity only while all the others
//!   have fetches in flight;
//! - `handle_response` gives what `TokenRequest::parse_response` gives; a failure is never a
//!   token; every error's `Display` is lower-case.
//!
//! Time only moves forward: every `now` is a non-negative offset from one `Instant` read once.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arbitrary::Arbitrary;
use client_credentials::http;
use client_credentials::{CachePolicy, ClientCredentials, ClientSecret, Error, Token, TokenRequest, TokenUrl};
use client_credentials::cache::{FetchTicket, Lookup, TokenCache};
use client_credentials::error::{RetryAfter, TransportKind};
use libfuzzer_sys::fuzz_target;

/// Distinct cache keys: requests that differ in one field each.
const KEYS: usize = 4;
/// Enough steps to reach every state many times over, few enough to keep runs fast.
const MAX_OPS: usize = 512;

#[derive(Debug, Arbitrary)]
struct Input {
    policy: Policy,
    /// The cache's own random word: the jitter of back-offs after timeouts comes from it.
    seed: u64,
    ops: Vec<Op>,
}

/// Each setting is the default when `None`. Durations are small, so that time steps reach them.
#[derive(Debug, Arbitrary)]
struct Policy {
    /// Folded into 1..=5: below four requests the cache must forget some, at four or five never.
    capacity: u8,
    invalidate_min_age_ms: Option<u16>,
    /// In milliseconds like the minimum, so that refusals in a row reach it (and it may be below
    /// the minimum, which then wins).
    invalidate_max_age_ms: Option<u16>,
    refresh_margin_secs: Option<u16>,
    refresh_fraction: Option<f64>,
    refresh_jitter: Option<f64>,
    default_lifetime_secs: Option<u16>,
    backoff_initial_ms: Option<u16>,
    backoff_max_secs: Option<u16>,
    backoff_jitter: Option<f64>,
    non_retryable_backoff_secs: Option<u16>,
    retry_after_max_secs: Option<u16>,
    fetch_timeout_secs: Option<u16>,
}

impl Policy {
    fn build(&self) -> CachePolicy {
        let secs = |s: u16| Duration::from_secs(s.into());
        let mut policy = CachePolicy::new().with_capacity(1 + usize::from(self.capacity % 5));
        if let Some(ms) = self.invalidate_min_age_ms {
            policy = policy.with_invalidate_min_age(Duration::from_millis(ms.into()));
        }
        if let Some(ms) = self.invalidate_max_age_ms {
            policy = policy.with_invalidate_max_age(Duration::from_millis(ms.into()));
        }
        if let Some(s) = self.refresh_margin_secs {
            policy = policy.with_refresh_margin(secs(s));
        }
        if let Some(f) = self.refresh_fraction {
            policy = policy.with_refresh_fraction(f);
        }
        if let Some(f) = self.refresh_jitter {
            policy = policy.with_refresh_jitter(f);
        }
        if let Some(s) = self.default_lifetime_secs {
            policy = policy.with_default_lifetime(secs(s));
        }
        if let Some(ms) = self.backoff_initial_ms {
            policy = policy.with_backoff_initial(Duration::from_millis(ms.into()));
        }
        if let Some(s) = self.backoff_max_secs {
            policy = policy.with_backoff_max(secs(s));
        }
        if let Some(f) = self.backoff_jitter {
            policy = policy.with_backoff_jitter(f);
        }
        if let Some(s) = self.non_retryable_backoff_secs {
            policy = policy.with_non_retryable_backoff(secs(s));
        }
        if let Some(s) = self.retry_after_max_secs {
            policy = policy.with_retry_after_max(secs(s));
        }
        if let Some(s) = self.fetch_timeout_secs {
            policy = policy.with_fetch_timeout(secs(s));
        }
        policy
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    Advance(Step),
    /// To the cache's `poll_timeout`, to land exactly on expiries, deadlines and back-off ends.
    AdvanceToTimeout,
    Poll(Key),
    /// Polls for the caller an API refused the `token`-th latest token handed out for the key
    /// (modulo their number), so that stale tokens are tried too.
    PollReplacing {
        key: Key,
        token: u8,
    },
    Peek(Key),
    /// Answers the `ticket`-th outstanding ticket (modulo their number).
    Answer {
        ticket: u8,
        reply: Reply,
        random: u64,
    },
    /// The fetcher's own report that the `ticket`-th outstanding ticket's fetch timed out, at
    /// its deadline (time moves there if it has not come) or, when `early`, now.
    TimedOut {
        ticket: u8,
        early: bool,
        random: u64,
    },
    Abandon(u8),
    /// Invalidates the `token`-th latest token ever handed out for the key (modulo their
    /// number), so that stale tokens are tried too.
    Invalidate {
        key: Key,
        token: u8,
    },
    /// Tells the cache an API accepted the `token`-th latest token handed out for the key.
    Accepted {
        key: Key,
        token: u8,
    },
    ForceRefresh(Key),
    Remove(Key),
    PollRefresh,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Key {
    A,
    B,
    C,
    D,
}

impl Key {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Step {
    Millis(u16),
    Seconds(u16),
}

impl Step {
    fn duration(self) -> Duration {
        match self {
            Self::Millis(ms) => Duration::from_millis(ms.into()),
            Self::Seconds(s) => Duration::from_secs(s.into()),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Reply {
    /// A 200 token response with this `expires_in` (absent, huge or zero alike), handed in as
    /// the response itself or, when `parsed`, already parsed (as an adapter hands it in).
    Token {
        expires_in: Option<u64>,
        parsed: bool,
    },
    /// A JSON error response (RFC 6749 §5.2) with a status folded into 300..=599.
    OAuth {
        status: u16,
        code: u8,
        retry_after: Option<RetryAfterHeader>,
    },
    /// An HTML page with a status folded into 300..=599 (a gateway's 502, a 429, a 503).
    Page {
        status: u16,
        retry_after: Option<RetryAfterHeader>,
    },
    /// A 200 that is not a token response.
    Garbage,
    /// No response at all, as an adapter reports it through `handle_failure`.
    Transport(u8),
    /// A body over the adapter's limit, reported through `handle_failure`.
    TooLarge,
}

#[derive(Debug, Arbitrary)]
enum RetryAfterHeader {
    Seconds(u32),
    /// An HTTP date this many seconds after the request was sent.
    DateIn(u16),
    /// A value the parser must ignore.
    Junk(u8),
}

const CODES: [&str; 8] = [
    "invalid_client",
    "invalid_request",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_grant_type",
    "temporarily_unavailable",
    "server_error",
    "slow_down",
];

const JUNK: [&str; 5] = ["soon", "-1", "1.5", "", "Wed, 32 Foo 2026 99:00:00 GMT"];

const TRANSPORT: [TransportKind; 5] = [
    TransportKind::Connect,
    TransportKind::Timeout,
    TransportKind::Io,
    TransportKind::Tls,
    TransportKind::Other,
];

fn keys() -> [TokenRequest; KEYS] {
    let url = |u: &str| TokenUrl::new(u).expect("a valid token url");
    let client = ClientCredentials::new(
        url("https://idp.example.com/token"),
        "client",
        ClientSecret::new("secret"),
    );
    let other = ClientCredentials::new(
        url("https://idp.example.com/token"),
        "other",
        ClientSecret::new("secret"),
    );
    let elsewhere = ClientCredentials::new(
        url("https://other.example.com/token"),
        "client",
        ClientSecret::new("secret"),
    );
    let build = |builder: client_credentials::TokenRequestBuilder| {
        builder.build().expect("a valid token request")
    };
    [
        build(client.token_request().scope("a")),
        build(client.token_request().scope("a").audience("x")),
        build(other.token_request().scope("a")),
        build(elsewhere.token_request().scope("a")),
    ]
}

/// An outstanding ticket, with what the model knows of it.
struct Outstanding {
    ticket: FetchTicket,
    key: usize,
    started: Instant,
}

/// What the caller knows about one request, independently of the cache.
#[derive(Default)]
struct Known {
    /// The fetch the cache counts as this request's (its answer changes the cache): the latest,
    /// until it is answered, abandoned or removed, past its deadline too.
    current: Option<Current>,
    /// The token the cache holds, with its expiry (counted from the ticket's start) and when
    /// its fetch started; kept past its expiry, which the cache may not have noticed yet.
    cached: Option<Stored>,
    /// The failure the cache backs off with, from the last answer that counted, until the next
    /// ticket for the request (a ticket is only handed out once a back-off is over).
    failure: Option<Failure>,
    /// Failures in a row since the last token: at least, at most (the model cannot always tell
    /// a token due on arrival, nor whether an abandoned fetch's timeout was counted).
    failures: (u32, u32),
    /// Tokens refused in a row since a call was accepted.
    refusals: u32,
    /// Every token handed out for this request, for invalidation with stale ones.
    tokens: Vec<Arc<Token>>,
    /// `peek_until`'s answer, kept until the cache changes: until then `peek` keeps it.
    peeked: Option<(Arc<Token>, Instant)>,
    /// The model's count when the request was last polled or given an answer that counts: the
    /// cache forgets the least recently used first.
    used: u64,
}

struct Current {
    id: u64,
    started: Instant,
    /// Its deadline has passed: the model counted the timeout as a failure.
    timed_out: bool,
    /// The cache surely looked at the request since the deadline, and so counted it too: until
    /// then an abandon takes the fetch, and its timeout, away.
    looked: bool,
}

struct Stored {
    token: Arc<Token>,
    expiry: Option<Instant>,
    started: Instant,
    lifetime: Duration,
    /// Made due for refresh (`force_refresh`).
    forced: bool,
    /// When an API's refusal of the token takes effect, once invalidated (`None` past the
    /// `Instant`s the platform has: never).
    refused_at: Option<Instant>,
    /// Whether it was invalidated: it is marked once, whatever the refusals after.
    marked: bool,
}

/// The error a back-off shows.
enum Shown {
    /// The error the cache handed back for the answer.
    Error(Arc<Error>),
    /// An error the cache makes itself: the model learns its `Arc` from the first back-off
    /// that shows it (or from the fetcher's own timeout report during the back-off).
    Made {
        made: Made,
        error: Option<Arc<Error>>,
    },
}

#[derive(Clone, Copy)]
enum Made {
    /// A token of this lifetime due on arrival.
    Due(Duration),
    /// A fetch unanswered at its deadline.
    TimedOut,
}

impl Made {
    fn matches(self, error: &Error, policy: &CachePolicy) -> bool {
        match self {
            Self::Due(lifetime) => {
                matches!(*error, Error::TokenDueOnArrival { lifetime: l } if l == lifetime)
            }
            Self::TimedOut => {
                matches!(*error, Error::FetchTimedOut { timeout } if timeout == policy.fetch_timeout())
            }
        }
    }
}

struct Failure {
    shown: Shown,
    /// Whether the cache surely backs off: false for a token the model cannot tell was due, or
    /// a timeout the cache may not have counted.
    certain: bool,
    /// How long the server's `Retry-After` (as far as honoured) forbids a fetch.
    not_before: Option<Instant>,
    /// The back-off lasts at least until here (when `certain`) and at most until `max_end`;
    /// once a `BackOff` has shown its end, both are that end.
    min_end: Instant,
    max_end: Option<Instant>,
    shown_end: Option<Instant>,
}

/// Within a microsecond: the cache's jitter is in floating point, the model's bounds too.
const SLACK: Duration = Duration::from_micros(1);

/// `duration × fraction` for a fraction in `0.0..=1.0`, never more than `duration` (as the
/// policy's docs count margins and jitter).
fn scaled(duration: Duration, fraction: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * fraction)
        .map_or(duration, |scaled| scaled.min(duration))
}

/// The retryable back-off after the `failures`-th failure in a row, before jitter: the initial
/// one, doubled for each failure before, up to the maximum (as the policy's docs say).
fn retry_base(policy: &CachePolicy, failures: u32) -> Duration {
    let max = policy.backoff_max();
    let mut base = policy.backoff_initial();
    for _ in 1..failures {
        if base >= max {
            break;
        }
        base = base.saturating_mul(2);
    }
    base.min(max)
}

/// The minimum age of a token refused at the `refusals`-th refusal in a row: the policy's
/// minimum, doubled for each refusal before, up to the maximum (never below the minimum).
fn refusal_age(policy: &CachePolicy, refusals: u32) -> Duration {
    let cap = policy.invalidate_max_age().max(policy.invalidate_min_age());
    let mut age = policy.invalidate_min_age();
    for _ in 1..refusals {
        if age >= cap {
            break;
        }
        age = age.saturating_mul(2);
    }
    age.min(cap)
}

/// One more failure in a row.
fn bump((least, most): (u32, u32)) -> (u32, u32) {
    (least.saturating_add(1), most.saturating_add(1))
}

struct Model {
    keys: [TokenRequest; KEYS],
    policy: CachePolicy,
    cache: TokenCache,
    base: Instant,
    now: Instant,
    known: [Known; KEYS],
    outstanding: Vec<Outstanding>,
    ids: HashSet<u64>,
    minted: u64,
    /// Counts polls and answers that count, for `Known::used`.
    uses: u64,
}

impl Model {
    // The one clock read: the cache needs some `Instant`, and only offsets from it matter.
    #[allow(clippy::disallowed_methods)]
    fn new(policy: CachePolicy, seed: u64) -> Self {
        let base = Instant::now();
        Self {
            keys: keys(),
            policy,
            cache: TokenCache::new(policy).with_seed(seed),
            base,
            now: base,
            known: Default::default(),
            outstanding: Vec::new(),
            ids: HashSet::new(),
            minted: 0,
            uses: 0,
        }
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + (self.now - self.base)
    }

    fn use_key(&mut self, k: usize) {
        self.uses += 1;
        self.known[k].used = self.uses;
    }

    /// The model's valid token for request `k` at `now`.
    fn valid(&self, k: usize) -> Option<&Arc<Token>> {
        self.valid_stored(k).map(|stored| &stored.token)
    }

    fn valid_stored(&self, k: usize) -> Option<&Stored> {
        self.known[k]
            .cached
            .as_ref()
            .filter(|stored| stored.expiry.is_none_or(|expiry| self.now < expiry))
    }

    /// Whether request `k`'s valid token is refused at `now`: a new one is due.
    fn refused(&self, k: usize) -> bool {
        self.valid_stored(k)
            .is_some_and(|stored| stored.refused_at.is_some_and(|at| self.now >= at))
    }

    /// Whether request `k` has a token to serve outright: valid and not refused.
    fn usable(&self, k: usize) -> bool {
        self.valid(k).is_some() && !self.refused(k)
    }

    fn fetch_active(&self, k: usize) -> bool {
        self.known[k]
            .current
            .as_ref()
            .is_some_and(|current| self.now < deadline(current.started, &self.policy))
    }

    /// Whether request `k`'s back-off is surely over (or there is none).
    fn backoff_over(&self, k: usize) -> bool {
        self.known[k]
            .failure
            .as_ref()
            .is_none_or(|f| f.max_end.is_some_and(|end| self.now >= end))
    }

    /// Whether request `k`'s back-off is surely under way.
    fn backoff_on(&self, k: usize) -> bool {
        self.known[k]
            .failure
            .as_ref()
            .is_some_and(|f| f.certain && self.now < f.min_end)
    }

    /// Whether the cache surely counts request `k` idle (nothing lost in forgetting it but its
    /// failure count), `Some(false)` if surely not, `None` if the model cannot tell.
    fn idle(&self, k: usize) -> Option<bool> {
        if self.valid(k).is_some() || self.backoff_on(k) {
            Some(false)
        } else if self.backoff_over(k) {
            Some(true)
        } else {
            None
        }
    }

    /// Nothing holds a fetch for `k` back: the cache must hand out a ticket (a refused token
    /// is no reason to wait).
    fn nothing_pending(&self, k: usize) -> bool {
        !self.usable(k) && !self.fetch_active(k) && self.backoff_over(k)
    }

    fn check_served(&self, k: usize, token: &Arc<Token>) {
        let valid = self
            .valid(k)
            .unwrap_or_else(|| panic!("served {token:?} for {k} with no valid token stored"));
        assert!(
            Arc::ptr_eq(valid, token),
            "served a token not stored for {k}"
        );
        // A refused token stands in only while its replacement fails.
        if self.refused(k) {
            assert!(
                !self.fetch_active(k) && !self.backoff_over(k),
                "served {k}'s refused token with no back-off under way"
            );
        }
    }

    fn check_issued(&mut self, k: usize, ticket: FetchTicket) {
        assert!(
            ticket.request() == &self.keys[k],
            "a ticket for another request"
        );
        assert!(
            self.ids.insert(ticket.id()),
            "ticket id {} reused",
            ticket.id()
        );
        assert_eq!(
            ticket.deadline(),
            deadline(self.now, &self.policy),
            "a ticket's deadline is not fetch_timeout on"
        );
        assert!(!self.fetch_active(k), "two fetches in flight for {k}");
        if let Some(failure) = &self.known[k].failure {
            if let Some(not_before) = failure.not_before {
                assert!(
                    self.now >= not_before,
                    "a fetch for {k} before its Retry-After"
                );
            }
            if failure.certain {
                assert!(
                    self.now >= failure.min_end,
                    "a fetch for {k} {:?} before its back-off ends",
                    failure.min_end - self.now
                );
            }
        }
        // A ticket is handed out only once the back-off is over; the next comes with the next
        // failure.
        self.known[k].failure = None;
        self.known[k].current = Some(Current {
            id: ticket.id(),
            started: self.now,
            timed_out: false,
            looked: false,
        });
        self.outstanding.push(Outstanding {
            ticket,
            key: k,
            started: self.now,
        });
    }

    /// Counts the timeout of every current fetch whose deadline has come, as the cache does
    /// the moment it passes: a failure backing off from the deadline.
    fn expire(&mut self) {
        for k in 0..KEYS {
            let Some(current) = &self.known[k].current else {
                continue;
            };
            let at = deadline(current.started, &self.policy);
            if current.timed_out || self.now < at {
                continue;
            }
            let failures = bump(self.known[k].failures);
            let shown = Shown::Made {
                made: Made::TimedOut,
                error: None,
            };
            let failure = self.failure(at, shown, true, None, failures);
            let known = &mut self.known[k];
            known.failures = failures;
            known.failure = Some(failure);
            if let Some(current) = &mut known.current {
                current.timed_out = true;
            }
        }
    }

    /// Which requests the cache holds.
    fn held(&self) -> [bool; KEYS] {
        std::array::from_fn(|k| self.cache.contains(&self.keys[k]))
    }

    /// Forgets what the model knows of request `k` but the tokens handed out: the cache has
    /// forgotten it (removed or evicted), so its next poll starts afresh.
    fn forget(&mut self, k: usize) {
        let tokens = std::mem::take(&mut self.known[k].tokens);
        self.known[k] = Known {
            tokens,
            ..Known::default()
        };
    }
    /// Checks the requests the poll of a new request `polled` made the cache forget, and
    /// forgets them in the model.
    fn check_evicted(&mut self, polled: usize, before: [bool; KEYS]) {
        let after = self.held();
        assert!(after[polled], "{polled} forgotten as it was polled");
        let evicted: Vec<usize> = (0..KEYS).filter(|&k| before[k] && !after[k]).collect();
        let capacity = self.policy.capacity();
        let held_before = before.iter().filter(|&&h| h).count();
        let len = self.cache.len();
        assert_eq!(len, after.iter().filter(|&&h| h).count(), "len disagrees");
        if before[polled] {
            assert!(
                evicted.is_empty(),
                "{evicted:?} forgotten for a held request"
            );
            return;
        }
        if held_before < capacity {
            assert!(
                evicted.is_empty(),
                "{evicted:?} forgotten with room to spare"
            );
        } else {
            assert!(
                evicted.len() <= held_before + 1 - capacity,
                "{evicted:?} forgotten, more than room for one"
            );
        }
        // The others that could have gone: held, with no fetch in flight.
        let candidates: Vec<usize> = (0..KEYS)
            .filter(|&k| after[k] && k != polled && !self.fetch_active(k))
            .collect();
        if len > capacity {
            assert!(
                candidates.is_empty(),
                "{len} requests held, capacity {capacity}, yet {candidates:?} had no fetch in flight"
            );
        }
        for &e in &evicted {
            assert!(
                !self.fetch_active(e),
                "{e} forgotten with a fetch in flight"
            );
            for &r in &candidates {
                let (idle_e, idle_r) = (self.idle(e), self.idle(r));
                assert!(
                    !(idle_r == Some(true) && idle_e == Some(false)),
                    "{e} forgotten before the idle {r}"
                );
                if idle_e.is_some() && idle_e == idle_r {
                    assert!(
                        self.known[e].used < self.known[r].used,
                        "{e} forgotten before {r}, used less recently"
                    );
                }
            }
        }
        for e in evicted {
            self.forget(e);
        }
    }

    /// Polls request `k`, for the caller an API refused `rejected` when there is one
    /// (`poll_replacing`), and checks the answer.
    fn lookup(&mut self, k: usize, rejected: Option<Arc<Token>>) {
        let before = self.held();
        let peeked = self.cache.peek(&self.keys[k], self.now);
        let answer = match &rejected {
            Some(rejected) => self
                .cache
                .poll_replacing(&self.keys[k], rejected, self.now),
            None => self.cache.poll(&self.keys[k], self.now),
        };
        self.check_evicted(k, before);
        self.use_key(k);
        // The poll settled the request: a timeout past is counted, if it was not already.
        if let Some(current) = &mut self.known[k].current
            && current.timed_out
        {
            current.looked = true;
        }
        let valid = self.valid(k).cloned();
        let refused = self.refused(k);
        let usable = self.usable(k);
        // The token may not be the answer: refused, and refused to this very caller.
        let excluded = refused
            && valid
                .as_ref()
                .zip(rejected.as_ref())
                .is_some_and(|(valid, rejected)| Arc::ptr_eq(valid, rejected));
        match (&answer, &peeked) {
            (Lookup::Ready(token), Some(peeked)) => assert!(Arc::ptr_eq(token, peeked)),
            // `peek` answers as `poll` does, for any caller: the refused token in a back-off.
            (Lookup::BackOff { .. }, Some(_)) if excluded => {}
            (Lookup::Ready(_), None) | (_, Some(_)) => {
                panic!("peek {peeked:?} disagrees with {answer:?} (replacing {rejected:?})")
            }
            _ => {}
        }
        if self.nothing_pending(k) {
            assert!(
                matches!(answer, Lookup::Fetch(_)),
                "{k} has nothing pending, yet the cache answered {answer:?}"
            );
        }
        if !usable && self.fetch_active(k) {
            assert!(
                matches!(answer, Lookup::Pending { .. }),
                "{k} has a fetch under way and no usable token, yet the cache answered {answer:?}"
            );
        }
        if !usable && !self.fetch_active(k) && self.backoff_on(k) {
            // The waiters of a failed fetch (a timed-out one too) get the failure, not a
            // ticket; a refused token stands in for all but the caller it was refused to.
            if refused && !excluded {
                assert!(
                    matches!(answer, Lookup::Ready(_)),
                    "{k}'s refused token not served in a back-off: {answer:?}"
                );
            } else {
                assert!(
                    matches!(answer, Lookup::BackOff { .. }),
                    "{k} backs off, yet the cache answered {answer:?}"
                );
            }
        }
        match answer {
            Lookup::Ready(token) => {
                self.check_served(k, &token);
                assert!(!excluded, "poll_replacing answered the token it replaces");
            }
            Lookup::Refresh { token, ticket } => {
                self.check_served(k, &token);
                assert!(!refused, "a refresh of {k}'s refused token, not a fetch");
                self.check_issued(k, ticket);
            }
            Lookup::Fetch(ticket) => {
                assert!(!usable, "a fetch while a usable token is stored for {k}");
                self.check_issued(k, ticket);
            }
            Lookup::Pending { deadline: until } => {
                assert!(!usable, "pending while a usable token is stored for {k}");
                let current = self.known[k].current.as_ref().expect("pending with no fetch");
                assert!(until > self.now);
                assert_eq!(until, deadline(current.started, &self.policy));
            }
            Lookup::BackOff { until, error } => {
                assert!(
                    valid.is_none() || excluded,
                    "a back-off while a valid token is stored for {k}"
                );
                assert!(until > self.now);
                let policy = self.policy;
                let failure = self.known[k]
                    .failure
                    .as_mut()
                    .expect("a back-off with no failure");
                match &mut failure.shown {
                    Shown::Error(shown) => {
                        assert!(Arc::ptr_eq(&error, shown), "another failure's back-off");
                    }
                    Shown::Made { made, error: shown } => {
                        match shown {
                            Some(shown) => {
                                assert!(Arc::ptr_eq(&error, shown), "another failure's back-off");
                            }
                            None => {
                                assert!(
                                    made.matches(&error, &policy),
                                    "a back-off with {error:?} after a failure the cache made"
                                );
                                *shown = Some(Arc::clone(&error));
                            }
                        }
                        failure.certain = true;
                    }
                }
                if let Some(end) = failure.max_end {
                    assert!(until <= end, "a back-off longer than the policy allows");
                }
                if failure.certain {
                    assert!(
                        until >= failure.min_end,
                        "a back-off shorter than the policy's"
                    );
                }
                if let Some(not_before) = failure.not_before {
                    assert!(until >= not_before, "a back-off shorter than Retry-After");
                }
                if let Some(shown_end) = failure.shown_end {
                    assert_eq!(until, shown_end, "a back-off's end moved");
                }
                failure.shown_end = Some(until);
                failure.min_end = until;
                failure.max_end = Some(until);
            }
        }
    }

    fn peek(&mut self, k: usize) {
        let peeked = self.cache.peek(&self.keys[k], self.now);
        let until = self.cache.peek_until(&self.keys[k], self.now);
        match (&peeked, &until) {
            (Some(token), Some((same, until))) => {
                assert!(Arc::ptr_eq(token, same), "peek_until disagrees with peek");
                assert!(*until > self.now, "peek_until's moment has passed");
                self.check_served(k, token);
                self.known[k].peeked = Some((Arc::clone(token), *until));
            }
            (None, None) => {}
            _ => panic!("peek {peeked:?} disagrees with peek_until {until:?}"),
        }
    }

    /// The back-off from `from` after a failure, the `failures`-th in a row (at least, at
    /// most), as the policy bounds it.
    fn failure(
        &self,
        from: Instant,
        shown: Shown,
        retryable: bool,
        retry_after: Option<Duration>,
        failures: (u32, u32),
    ) -> Failure {
        let policy = &self.policy;
        let honoured = retry_after.map(|d| d.min(policy.retry_after_max()));
        let (shortest, longest) = if retryable {
            (
                retry_base(policy, failures.0),
                retry_base(policy, failures.1),
            )
        } else {
            (
                policy.non_retryable_backoff(),
                policy.non_retryable_backoff(),
            )
        };
        // Jitter takes off at most `backoff_jitter` of the back-off.
        let shortest = shortest
            .saturating_sub(scaled(shortest, policy.backoff_jitter()))
            .saturating_sub(SLACK);
        let shortest = shortest.max(honoured.unwrap_or_default());
        let longest = longest.max(honoured.unwrap_or_default());
        Failure {
            shown,
            certain: true,
            not_before: honoured.and_then(|d| from.checked_add(d)),
            min_end: from.checked_add(shortest).expect("a short back-off"),
            max_end: from.checked_add(longest),
            shown_end: None,
        }
    }

    /// A failure of request `k`'s current fetch before its deadline: one more in a row.
    fn fail(&mut self, k: usize, shown: Shown, retryable: bool, retry_after: Option<Duration>) {
        let failures = bump(self.known[k].failures);
        let failure = self.failure(self.now, shown, retryable, retry_after, failures);
        self.known[k].failures = failures;
        self.known[k].failure = Some(failure);
    }

    /// A late failure of request `k`'s fetch, whose timeout counted already: no second failure
    /// in a row; its error replaces the timeout's, and the back-off ends no sooner than either.
    fn fail_late(
        &mut self,
        k: usize,
        shown: Shown,
        retryable: bool,
        retry_after: Option<Duration>,
    ) {
        let failures = self.known[k].failures;
        let mut failure = self.failure(self.now, shown, retryable, retry_after, failures);
        if let Some(old) = self.known[k].failure.take() {
            if old.certain {
                failure.min_end = failure.min_end.max(old.min_end);
            }
            failure.max_end = failure.max_end.zip(old.max_end).map(|(a, b)| a.max(b));
            failure.not_before = failure.not_before.max(old.not_before);
        }
        self.known[k].failure = Some(failure);
    }

    /// Whether an answer to ticket `id` of request `k` counts (no later fetch has started since,
    /// it was not abandoned, its request not forgotten), and whether it comes after its timeout
    /// counted; either way the fetch is current no more.
    fn take_current(&mut self, k: usize, id: u64) -> (bool, bool) {
        match self.known[k].current.take_if(|current| current.id == id) {
            Some(current) => (true, current.timed_out),
            None => (false, false),
        }
    }

    /// Whether a token of `lifetime` whose fetch started at `started` is due for refresh at
    /// `now`: `None` when the jitter the model cannot see decides.
    fn due(&self, lifetime: Duration, started: Instant) -> Option<bool> {
        let policy = &self.policy;
        let elapsed = self.now - started;
        let Some(left) = lifetime.checked_sub(elapsed).filter(|left| !left.is_zero()) else {
            return Some(true);
        };
        // The refresh lead is the margin plus up to `refresh_jitter` of it.
        let margin = scaled(lifetime, policy.refresh_fraction()).min(policy.refresh_margin());
        let most = margin.saturating_add(scaled(margin, policy.refresh_jitter()));
        if margin.saturating_sub(SLACK) >= left {
            Some(true)
        } else if most.saturating_add(SLACK) < left {
            Some(false)
        } else {
            None
        }
    }

    fn answer(&mut self, index: u8, reply: Reply, random: u64) {
        if self.outstanding.is_empty() {
            return;
        }
        let Outstanding {
            ticket,
            key: k,
            started,
        } = self
            .outstanding
            .swap_remove(usize::from(index) % self.outstanding.len());
        // Its answer changes the cache exactly when it is the current fetch: a late answer
        // still counts.
        let (counts, late) = self.take_current(k, ticket.id());
        let before = self.held();
        let (now, sent_at) = (self.now, self.wall());
        let (result, expected, retry_after) = match response(k, &reply, &mut self.minted, sent_at) {
            Some(response) => {
                let expected = ticket.request().parse_response(&response, sent_at);
                let retry_after = expected.as_ref().err().and_then(Error::retry_after);
                let expected = expected.map_err(|e| e.to_string());
                let result = if matches!(reply, Reply::Token { parsed: true, .. }) {
                    let parsed = ticket.request().parse_response(&response, sent_at);
                    self.cache
                        .handle_result(ticket, parsed, sent_at, now, random)
                } else {
                    self.cache
                        .handle_response(ticket, &response, sent_at, now, random)
                };
                // `handle_result` counts as a use of the request, `handle_failure` not.
                if counts {
                    self.use_key(k);
                }
                (
                    result,
                    Some(expected),
                    retry_after.map(|r| r.delay_from(sent_at)),
                )
            }
            None => {
                let error = match &reply {
                    Reply::Transport(kind) => Error::Transport {
                        kind: TRANSPORT[usize::from(*kind) % TRANSPORT.len()],
                        source: "connection refused".into(),
                    },
                    _ => Error::BodyTooLarge { limit: 1024 },
                };
                // Without `sent_at` only a delay could be read; these errors carry none.
                let retry_after = match error.retry_after() {
                    Some(RetryAfter::Delay(delay)) => Some(delay),
                    _ => None,
                };
                let error = self.cache.handle_failure(ticket, error, now, random);
                (Err(error), None, retry_after)
            }
        };
        assert_eq!(
            self.held(),
            before,
            "an answer made the cache forget a request"
        );
        if let Some(expected) = &expected {
            let got = result.as_ref().map_err(|e| e.to_string());
            match (&got, expected) {
                (Ok(token), Ok(parsed)) => assert_eq!(
                    token.access_token().secret(),
                    parsed.access_token().secret()
                ),
                (Err(got), Err(parsed)) => assert_eq!(got, parsed),
                _ => panic!("the cache answered {got:?}, parsing {expected:?}"),
            }
        }
        match result {
            Ok(token) => {
                assert!(
                    matches!(reply, Reply::Token { .. }),
                    "a failure became a token"
                );
                let name = format!("k{k}-");
                assert!(token.access_token().secret().starts_with(&name));
                self.known[k].tokens.push(Arc::clone(&token));
                if counts {
                    // Late or not, a token clears the back-off, a timeout's too.
                    let lifetime = token.expires_in().unwrap_or(self.policy.default_lifetime());
                    let expiry = started.checked_add(lifetime);
                    // A token whose lifetime ran out in transit is never stored.
                    if expiry.is_none_or(|expiry| expiry > now) {
                        self.known[k].cached = Some(Stored {
                            token,
                            expiry,
                            started,
                            lifetime,
                            forced: false,
                            refused_at: None,
                            marked: false,
                        });
                    }
                    // A token due for refresh on arrival is a failure for back-off.
                    let due = self.due(lifetime, started);
                    let failures = bump(self.known[k].failures);
                    self.known[k].failure = match due {
                        Some(false) => {
                            self.known[k].failures = (0, 0);
                            None
                        }
                        due => {
                            let shown = Shown::Made {
                                made: Made::Due(lifetime),
                                error: None,
                            };
                            let mut failure = self.failure(now, shown, true, None, failures);
                            failure.certain = due.is_some();
                            // Not due after all, it started the count again.
                            self.known[k].failures = if due.is_some() {
                                failures
                            } else {
                                (0, failures.1)
                            };
                            Some(failure)
                        }
                    };
                }
            }
            Err(error) => {
                check_error(&error);
                if counts {
                    let retryable = error.is_retryable();
                    let shown = Shown::Error(error);
                    if late {
                        self.fail_late(k, shown, retryable, retry_after);
                    } else {
                        self.fail(k, shown, retryable, retry_after);
                    }
                }
            }
        }
    }

    /// The fetcher's own report that the `index`-th outstanding ticket's fetch timed out: at
    /// its deadline, or now when `early` (a fetcher with a shorter bound of its own).
    fn time_out(&mut self, index: u8, early: bool, random: u64) {
        if self.outstanding.is_empty() {
            return;
        }
        let index = usize::from(index) % self.outstanding.len();
        if !early {
            // A token source gives the fetch up at its deadline, or later if it was busy.
            self.now = self.now.max(self.outstanding[index].ticket.deadline());
            self.expire();
        }
        let Outstanding { ticket, key: k, .. } = self.outstanding.swap_remove(index);
        let (counts, late) = self.take_current(k, ticket.id());
        let timeout = self.policy.fetch_timeout();
        let error = self.cache.handle_failure(
            ticket,
            Error::FetchTimedOut { timeout },
            self.now,
            random,
        );
        check_error(&error);
        assert!(
            Made::TimedOut.matches(&error, &self.policy),
            "a timeout report came back as {error:?}"
        );
        if !counts {
            return;
        }
        if !late {
            // Before its deadline it is a failure like any other.
            self.fail(k, Shown::Error(error), true, None);
            return;
        }
        let on = self.backoff_on(k);
        let failure = self.known[k]
            .failure
            .as_mut()
            .expect("a timed-out fetch with no failure");
        let same = match &failure.shown {
            Shown::Error(shown)
            | Shown::Made {
                error: Some(shown), ..
            } => Some(Arc::ptr_eq(shown, &error)),
            Shown::Made { error: None, .. } => None,
        };
        if on {
            // The cache counted the timeout at the deadline: its own report is the same failure,
            // the very error its waiters got.
            match same {
                Some(same) => assert!(
                    same,
                    "the fetcher's timeout report got another error than its back-off shows"
                ),
                None => failure.shown = Shown::Error(error),
            }
        }
        // Else the back-off may be over: one timeout backs off once, and the report (whatever
        // `Arc` it got) changes nothing.
    }

    /// The `token`-th latest token handed out for request `k` (modulo their number), if any
    /// was: 0 is the latest, most often the one cached.
    fn pick(&self, k: usize, token: u8) -> Option<Arc<Token>> {
        let tokens = &self.known[k].tokens;
        let back = usize::from(token) % tokens.len().max(1);
        tokens.iter().rev().nth(back).map(Arc::clone)
    }

    /// Whether `token` is the one the model knows request `k`'s cache holds (valid or not).
    fn is_stored(&self, k: usize, token: &Arc<Token>) -> bool {
        self.known[k]
            .cached
            .as_ref()
            .is_some_and(|stored| Arc::ptr_eq(&stored.token, token))
    }

    fn apply(&mut self, op: Op) {
        // `peek_until`'s promise holds only while no `&mut` method runs.
        if !matches!(op, Op::Advance(_) | Op::AdvanceToTimeout | Op::Peek(_)) {
            for known in &mut self.known {
                known.peeked = None;
            }
        }
        // Only a poll of a new request makes the cache forget others.
        let before = self.held();
        let mut removed = None;
        let mut polled = false;
        match op {
            Op::Advance(step) => {
                if let Some(now) = self.now.checked_add(step.duration()) {
                    self.now = now;
                }
            }
            Op::AdvanceToTimeout => {
                if let Some(timeout) = self.cache.poll_timeout(self.now) {
                    self.now = self.now.max(timeout);
                }
            }
            Op::Poll(key) => {
                polled = true;
                self.lookup(key.index(), None);
            }
            Op::PollReplacing { key, token } => {
                let k = key.index();
                if let Some(rejected) = self.pick(k, token) {
                    polled = true;
                    self.lookup(k, Some(rejected));
                }
            }
            Op::Peek(key) => self.peek(key.index()),
            Op::Answer {
                ticket,
                reply,
                random,
            } => self.answer(ticket, reply, random),
            Op::TimedOut {
                ticket,
                early,
                random,
            } => self.time_out(ticket, early, random),
            Op::Abandon(index) => {
                if !self.outstanding.is_empty() {
                    let abandoned = self
                        .outstanding
                        .swap_remove(usize::from(index) % self.outstanding.len());
                    let k = abandoned.key;
                    let taken = self.known[k]
                        .current
                        .take_if(|current| current.id == abandoned.ticket.id());
                    // The cache counts a timeout when it looks at the request: abandoned before
                    // it did, the fetch takes its timeout away with it. Else nothing changes.
                    if let Some(current) = taken
                        && current.timed_out
                        && !current.looked
                    {
                        let known = &mut self.known[k];
                        if let Some(failure) = &mut known.failure {
                            failure.certain = false;
                        }
                        known.failures.0 = known.failures.0.saturating_sub(1);
                    }
                    self.cache.abandon(abandoned.ticket);
                }
            }
            Op::Invalidate { key, token } => {
                let k = key.index();
                let Some(rejected) = self.pick(k, token) else {
                    return;
                };
                // Refused once: another refusal of the same token changes nothing, and says so.
                let unmarked = self.known[k]
                    .cached
                    .as_ref()
                    .is_some_and(|stored| Arc::ptr_eq(&stored.token, &rejected) && !stored.marked);
                let marked = self.cache.invalidate(&self.keys[k], &rejected);
                if self.valid(k).is_some() {
                    assert_eq!(marked, unmarked, "invalidate of the stored token");
                } else {
                    // An expired token the cache has not dropped yet is still its own.
                    assert!(
                        !marked || unmarked,
                        "invalidate refused a token not stored, or refused already"
                    );
                }
                if marked {
                    let policy = self.policy;
                    let known = &mut self.known[k];
                    let stored = known.cached.as_mut().expect("the stored token");
                    stored.marked = true;
                    known.refusals = known.refusals.saturating_add(1);
                    let age = refusal_age(&policy, known.refusals);
                    stored.refused_at = stored.started.checked_add(age);
                }
            }
            Op::Accepted { key, token } => {
                let k = key.index();
                let Some(token) = self.pick(k, token) else {
                    return;
                };
                let expected = self.is_stored(k, &token) && self.known[k].refusals > 0;
                let accepted = self.cache.accepted(&self.keys[k], &token);
                if self.valid(k).is_some() {
                    assert_eq!(accepted, expected, "accepted of {k}'s token");
                } else {
                    assert!(!accepted || expected, "accepted forgot refusals not in a row");
                }
                if accepted {
                    self.known[k].refusals = 0;
                }
            }
            Op::ForceRefresh(key) => {
                let k = key.index();
                let had = self.cache.force_refresh(&self.keys[k]);
                if self.valid(k).is_some() {
                    assert!(had, "force_refresh missed a valid token");
                }
                if self.known[k].cached.is_none() {
                    assert!(!had, "force_refresh found a token never stored");
                }
                if had && let Some(stored) = &mut self.known[k].cached {
                    stored.forced = true;
                }
            }
            Op::Remove(key) => {
                let k = key.index();
                assert_eq!(self.cache.remove(&self.keys[k]), before[k]);
                removed = Some(k);
                self.forget(k);
            }
            Op::PollRefresh => match self.cache.poll_refresh(self.now) {
                Some(ticket) => {
                    let k = self
                        .keys
                        .iter()
                        .position(|key| key == ticket.request())
                        .expect("a ticket for a known request");
                    assert!(self.valid(k).is_some(), "a refresh without a valid token");
                    self.check_issued(k, ticket);
                }
                // It looked at every request, and counted every timeout past.
                None => {
                    for known in &mut self.known {
                        if let Some(current) = &mut known.current {
                            current.looked = current.timed_out;
                        }
                    }
                }
            },
        }
        // A deadline passed, by a time step or at once (a zero `fetch_timeout`), is a failure.
        self.expire();
        if !polled {
            let after = self.held();
            for k in 0..KEYS {
                if Some(k) == removed {
                    assert!(!after[k], "{k} held after its removal");
                } else {
                    assert_eq!(after[k], before[k], "{k} forgotten or added, not by a poll");
                }
            }
        }
        self.check_always();
    }

    /// Laws that hold between any two steps.
    fn check_always(&self) {
        let held = self.held();
        assert_eq!(self.cache.len(), held.iter().filter(|&&h| h).count());
        assert_eq!(self.cache.is_empty(), !held.contains(&true));
        let timeout = self.cache.poll_timeout(self.now);
        for (k, held) in held.into_iter().enumerate() {
            if self.fetch_active(k) {
                assert!(held, "{k} forgotten with a fetch in flight");
            }
            if let Some((token, until)) = &self.known[k].peeked
                && self.now < *until
            {
                let peeked = self.cache.peek(&self.keys[k], self.now);
                assert!(
                    peeked.is_some_and(|p| Arc::ptr_eq(&p, token)),
                    "peek changed before peek_until's moment"
                );
            }
            let peeked = self.cache.peek(&self.keys[k], self.now);
            if let Some(token) = &peeked {
                self.check_served(k, token);
            }
            // A token neither due for refresh nor refused (not yet: it is refused exactly
            // from its minimum age) is a hit, and so is any usable one while a fetch or a
            // back-off is under way.
            if let Some(stored) = self.valid_stored(k)
                && !self.refused(k)
            {
                let fresh = !stored.forced && self.due(stored.lifetime, stored.started) == Some(false);
                if fresh || self.fetch_active(k) || self.backoff_on(k) {
                    assert!(
                        peeked.as_ref().is_some_and(|p| Arc::ptr_eq(p, &stored.token)),
                        "peek missed {k}'s usable token: {peeked:?}"
                    );
                }
            }
            // Foreseen before any poll: a refused token stands in during a back-off (a
            // timeout's the moment its deadline passes), and the back-off's end is an event.
            if self.refused(k) && !self.fetch_active(k) && self.backoff_on(k) {
                assert!(
                    peeked.is_some(),
                    "peek missed {k}'s refused token in a back-off"
                );
            }
            if self.backoff_on(k)
                && let Some(end) = self.known[k].failure.as_ref().and_then(|f| f.max_end)
            {
                assert!(
                    timeout.is_some_and(|timeout| timeout <= end),
                    "poll_timeout {timeout:?} after {k}'s back-off ends"
                );
            }
        }
        // A token expiring, a refusal taking effect and a fetch's deadline are moments at which
        // an answer changes on its own: `poll_timeout` comes no later than any of them.
        let events = (0..KEYS).flat_map(|k| {
            let stored = self.valid_stored(k);
            let expiry = stored.and_then(|stored| stored.expiry);
            let refusal = stored
                .and_then(|stored| stored.refused_at)
                .filter(|&at| at > self.now);
            let fetch = self.known[k]
                .current
                .as_ref()
                .filter(|_| self.fetch_active(k))
                .map(|current| deadline(current.started, &self.policy));
            [expiry, refusal, fetch]
        });
        if let Some(first) = events.flatten().min() {
            assert!(
                timeout.is_some_and(|timeout| timeout <= first),
                "poll_timeout {timeout:?} after an expiry, refusal or deadline"
            );
        }
    }

    /// A request with no usable token, no fetch under way and no back-off gets a ticket at
    /// once.
    fn check_live(&mut self) {
        for k in 0..KEYS {
            if self.nothing_pending(k) {
                // `lookup` asserts the ticket.
                self.lookup(k, None);
                self.expire();
                self.check_always();
            }
        }
    }
}

/// When a fetch started at `started` is given up.
fn deadline(started: Instant, policy: &CachePolicy) -> Instant {
    started
        .checked_add(policy.fetch_timeout())
        .expect("a fetch timeout of at most u16::MAX seconds")
}

/// The response a reply stands for, or `None` for a failure without one.
fn response(
    k: usize,
    reply: &Reply,
    minted: &mut u64,
    sent_at: SystemTime,
) -> Option<http::Response<Vec<u8>>> {
    let (status, content_type, body, retry_after) = match reply {
        Reply::Token { expires_in, .. } => {
            *minted += 1;
            let expires_in = expires_in.map_or(String::new(), |s| format!(r#","expires_in":{s}"#));
            let body =
                format!(r#"{{"access_token":"k{k}-{minted}","token_type":"Bearer"{expires_in}}}"#);
            (200, "application/json", body, None)
        }
        Reply::OAuth {
            status,
            code,
            retry_after,
        } => {
            let code = CODES[usize::from(*code) % CODES.len()];
            let body = format!(r#"{{"error":"{code}","error_description":"fuzzed"}}"#);
            (
                300 + status % 300,
                "application/json",
                body,
                retry_after.as_ref(),
            )
        }
        Reply::Page {
            status,
            retry_after,
        } => {
            let body = "<html><body><h1>unavailable</h1></body></html>".to_owned();
            (300 + status % 300, "text/html", body, retry_after.as_ref())
        }
        Reply::Garbage => (200, "application/json", "[1,2".to_owned(), None),
        Reply::Transport(_) | Reply::TooLarge => return None,
    };
    let mut builder = http::Response::builder()
        .status(status)
        .header("content-type", content_type);
    if let Some(retry_after) = retry_after {
        let value = match retry_after {
            RetryAfterHeader::Seconds(s) => s.to_string(),
            RetryAfterHeader::DateIn(s) => {
                httpdate::fmt_http_date(sent_at + Duration::from_secs((*s).into()))
            }
            RetryAfterHeader::Junk(j) => JUNK[usize::from(*j) % JUNK.len()].to_owned(),
        };
        builder = builder.header("retry-after", value);
    }
    Some(builder.body(body.into_bytes()).expect("a valid response"))
}

fn check_error(error: &Error) {
    let text = error.to_string();
    assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
    assert!(!text.ends_with('.'), "{text}");
}

fuzz_target!(|input: Input| {
    let mut model = Model::new(input.policy.build(), input.seed);
    for op in input.ops.into_iter().take(MAX_OPS) {
        model.apply(op);
    }
    model.check_live();
});
