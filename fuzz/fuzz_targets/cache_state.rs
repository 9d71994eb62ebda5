//! Fuzzes the token cache's state machine with any sequence of polls, peeks, answers, abandons,
//! invalidations, removals and time steps, under any policy (capacity 1 to 5 over four requests
//! included), and checks its laws after every step against a model that knows only what the
//! caller knows:
//!
//! - a token served (`Ready`, `Refresh`, `peek`) is the latest one stored for that request and
//!   has not expired at `now` (nor reached its minimum age, once invalidated); a request with
//!   such a token is always served it;
//! - never two fetches in flight for one request, and no fetch before the back-off of the last
//!   failure (the server's `Retry-After` as far as the policy honours it, else the shortest
//!   back-off the policy allows) has passed;
//! - a token that arrives due for refresh is a failure for back-off (`TokenDueOnArrival`),
//!   whenever the model can tell it was due;
//! - a ticket is for the request polled, and its id is new;
//! - `peek` agrees with `poll`, and keeps its answer until `peek_until`'s moment;
//! - a back-off shows the failure that caused it, ends in the future but within the policy's
//!   bounds, keeps its end until the next failure, and a request with no token, no fetch and no
//!   back-off under way gets a ticket (no deadlock);
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
    ops: Vec<Op>,
}

/// Each setting is the default when `None`. Durations are small, so that time steps reach them.
#[derive(Debug, Arbitrary)]
struct Policy {
    /// Folded into 1..=5: below four requests the cache must forget some, at four or five never.
    capacity: u8,
    invalidate_min_age_ms: Option<u16>,
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
    Peek(Key),
    /// Answers the `ticket`-th outstanding ticket (modulo their number).
    Answer {
        ticket: u8,
        reply: Reply,
        random: u64,
    },
    Abandon(u8),
    /// Invalidates the `token`-th token ever handed out for the key (modulo their number), so
    /// that stale tokens are tried too.
    Invalidate {
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
    /// The ticket the cache counts as this request's fetch (its answer changes the cache),
    /// with when it was handed out: the latest, until it is answered, abandoned or removed.
    current: Option<(u64, Instant)>,
    /// The token the cache holds, with its expiry (counted from the ticket's start, and cut to
    /// the minimum age once invalidated) and when its fetch started.
    cached: Option<Stored>,
    /// The failure the cache backs off with, from the last answer that counted, until the next
    /// ticket for the request (a ticket is only handed out once a back-off is over).
    failure: Option<Failure>,
    /// Every token handed out for this request, for invalidation with stale ones.
    tokens: Vec<Arc<Token>>,
    /// `peek_until`'s answer, kept until the cache changes: until then `peek` keeps it.
    peeked: Option<(Arc<Token>, Instant)>,
    /// The model's count when the request was last polled or given an answer that counts: the
    /// cache forgets the least recently used first.
    used: u64,
}

struct Stored {
    token: Arc<Token>,
    expiry: Option<Instant>,
    started: Instant,
}

/// The error a back-off shows.
enum Shown {
    /// The error the cache handed back for the answer.
    Error(Arc<Error>),
    /// A token due on arrival: the cache makes the error itself, so the model learns its `Arc`
    /// from the first back-off that shows it.
    Due {
        lifetime: Duration,
        error: Option<Arc<Error>>,
    },
}

struct Failure {
    shown: Shown,
    /// Whether the cache surely backs off: false for a token the model cannot tell was due.
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
    fn new(policy: CachePolicy) -> Self {
        let base = Instant::now();
        Self {
            keys: keys(),
            policy,
            cache: TokenCache::new(policy),
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
        self.known[k]
            .cached
            .as_ref()
            .filter(|stored| stored.expiry.is_none_or(|expiry| self.now < expiry))
            .map(|stored| &stored.token)
    }

    fn fetch_active(&self, k: usize) -> bool {
        self.known[k]
            .current
            .is_some_and(|(_, started)| self.now < deadline(started, &self.policy))
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

    /// Nothing holds a fetch for `k` back: the cache must hand out a ticket.
    fn nothing_pending(&self, k: usize) -> bool {
        self.valid(k).is_none() && !self.fetch_active(k) && self.backoff_over(k)
    }

    fn check_served(&self, k: usize, token: &Arc<Token>) {
        let valid = self
            .valid(k)
            .unwrap_or_else(|| panic!("served {token:?} for {k} with no valid token stored"));
        assert!(
            Arc::ptr_eq(valid, token),
            "served a token not stored for {k}"
        );
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
        self.known[k].current = Some((ticket.id(), self.now));
        self.outstanding.push(Outstanding {
            ticket,
            key: k,
            started: self.now,
        });
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

    fn poll(&mut self, k: usize) {
        let before = self.held();
        let peeked = self.cache.peek(&self.keys[k], self.now);
        let answer = self.cache.poll(&self.keys[k], self.now);
        self.check_evicted(k, before);
        self.use_key(k);
        match (&answer, &peeked) {
            (Lookup::Ready(token), Some(peeked)) => assert!(Arc::ptr_eq(token, peeked)),
            (Lookup::Ready(_), None) | (_, Some(_)) => {
                panic!("peek {peeked:?} disagrees with poll {answer:?}")
            }
            _ => {}
        }
        let has_token = self.valid(k).is_some();
        if self.nothing_pending(k) {
            assert!(
                matches!(answer, Lookup::Fetch(_)),
                "{k} has nothing pending, yet the cache answered {answer:?}"
            );
        }
        match answer {
            Lookup::Ready(token) => self.check_served(k, &token),
            Lookup::Refresh { token, ticket } => {
                self.check_served(k, &token);
                self.check_issued(k, ticket);
            }
            Lookup::Fetch(ticket) => {
                assert!(!has_token, "a fetch while a valid token is stored for {k}");
                self.check_issued(k, ticket);
            }
            Lookup::Pending { deadline: until } => {
                assert!(!has_token, "pending while a valid token is stored for {k}");
                let (_, started) = self.known[k].current.expect("pending with no fetch");
                assert!(until > self.now);
                assert_eq!(until, deadline(started, &self.policy));
            }
            Lookup::BackOff { until, error } => {
                assert!(
                    !has_token,
                    "a back-off while a valid token is stored for {k}"
                );
                assert!(until > self.now);
                let failure = self.known[k]
                    .failure
                    .as_mut()
                    .expect("a back-off with no failure");
                match &mut failure.shown {
                    Shown::Error(shown) => {
                        assert!(Arc::ptr_eq(&error, shown), "another failure's back-off")
                    }
                    Shown::Due {
                        lifetime,
                        error: shown,
                    } => {
                        match shown {
                            Some(shown) => {
                                assert!(Arc::ptr_eq(&error, shown), "another failure's back-off");
                            }
                            None => {
                                assert!(
                                    matches!(
                                        *error,
                                        Error::TokenDueOnArrival { lifetime: l } if l == *lifetime
                                    ),
                                    "a back-off with {error:?} after a token due on arrival"
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

    /// The back-off after a failure that counts, as the policy bounds it.
    fn failure(&self, shown: Shown, retryable: bool, retry_after: Option<Duration>) -> Failure {
        let now = self.now;
        let policy = &self.policy;
        let honoured = retry_after.map(|d| d.min(policy.retry_after_max()));
        let (shortest, longest) = if retryable {
            let initial = policy.backoff_initial().min(policy.backoff_max());
            (initial, policy.backoff_max())
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
            not_before: honoured.and_then(|d| now.checked_add(d)),
            min_end: now.checked_add(shortest).expect("a short back-off"),
            max_end: now.checked_add(longest),
            shown_end: None,
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
        // Its answer changes the cache exactly when no later fetch has started since (a late
        // answer still counts), it was not abandoned and its request not forgotten.
        let counts = self.known[k]
            .current
            .is_some_and(|(id, _)| id == ticket.id());
        if counts {
            self.known[k].current = None;
        }
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
                    let lifetime = token.expires_in().unwrap_or(self.policy.default_lifetime());
                    let expiry = started.checked_add(lifetime);
                    // A token whose lifetime ran out in transit is never stored.
                    if expiry.is_none_or(|expiry| expiry > now) {
                        self.known[k].cached = Some(Stored {
                            token,
                            expiry,
                            started,
                        });
                    }
                    // A token due for refresh on arrival is a failure for back-off.
                    self.known[k].failure = match self.due(lifetime, started) {
                        Some(false) => None,
                        due => {
                            let shown = Shown::Due {
                                lifetime,
                                error: None,
                            };
                            let mut failure = self.failure(shown, true, None);
                            failure.certain = due.is_some();
                            Some(failure)
                        }
                    };
                }
            }
            Err(error) => {
                check_error(&error);
                if counts {
                    let retryable = error.is_retryable();
                    let failure = self.failure(Shown::Error(error), retryable, retry_after);
                    self.known[k].failure = Some(failure);
                }
            }
        }
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
                self.poll(key.index());
            }
            Op::Peek(key) => self.peek(key.index()),
            Op::Answer {
                ticket,
                reply,
                random,
            } => self.answer(ticket, reply, random),
            Op::Abandon(index) => {
                if !self.outstanding.is_empty() {
                    let abandoned = self
                        .outstanding
                        .swap_remove(usize::from(index) % self.outstanding.len());
                    let known = &mut self.known[abandoned.key];
                    if known
                        .current
                        .is_some_and(|(id, _)| id == abandoned.ticket.id())
                    {
                        known.current = None;
                    }
                    self.cache.abandon(abandoned.ticket);
                }
            }
            Op::Invalidate { key, token } => {
                let k = key.index();
                let tokens = &self.known[k].tokens;
                if tokens.is_empty() {
                    return;
                }
                let rejected = Arc::clone(&tokens[usize::from(token) % tokens.len()]);
                let stored = self.known[k]
                    .cached
                    .as_ref()
                    .is_some_and(|stored| Arc::ptr_eq(&stored.token, &rejected));
                let dropped = self.cache.invalidate(&self.keys[k], &rejected);
                if self.valid(k).is_some() {
                    assert_eq!(dropped, stored, "invalidate of the stored token");
                } else {
                    assert!(
                        !dropped || stored,
                        "invalidate dropped a token never stored"
                    );
                }
                if dropped {
                    // Served until its minimum age, then dropped.
                    let min_age = self.policy.invalidate_min_age();
                    let stored = self.known[k].cached.as_mut().expect("the stored token");
                    let at = stored.started.checked_add(min_age);
                    stored.expiry = match (stored.expiry, at) {
                        (Some(expiry), Some(at)) => Some(expiry.min(at)),
                        (expiry, at) => expiry.or(at),
                    };
                    if min_age.is_zero() {
                        self.known[k].cached = None;
                    }
                    if self.valid(k).is_none() {
                        assert!(self.cache.peek(&self.keys[k], self.now).is_none());
                    }
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
            }
            Op::Remove(key) => {
                let k = key.index();
                assert_eq!(self.cache.remove(&self.keys[k]), before[k]);
                removed = Some(k);
                self.forget(k);
            }
            Op::PollRefresh => {
                if let Some(ticket) = self.cache.poll_refresh(self.now) {
                    let k = self
                        .keys
                        .iter()
                        .position(|key| key == ticket.request())
                        .expect("a ticket for a known request");
                    assert!(self.valid(k).is_some(), "a refresh without a valid token");
                    self.check_issued(k, ticket);
                }
            }
        }
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
            if let Some(token) = self.cache.peek(&self.keys[k], self.now) {
                self.check_served(k, &token);
            }
        }
        // A token expiring and a fetch's deadline are moments at which an answer changes on
        // its own: `poll_timeout` comes no later than any of them.
        let events = (0..KEYS).flat_map(|k| {
            let expiry = self
                .valid(k)
                .and_then(|_| self.known[k].cached.as_ref()?.expiry);
            let fetch = self.known[k]
                .current
                .filter(|_| self.fetch_active(k))
                .map(|(_, started)| deadline(started, &self.policy));
            [expiry, fetch]
        });
        if let Some(first) = events.flatten().min() {
            let timeout = self.cache.poll_timeout(self.now);
            assert!(
                timeout.is_some_and(|timeout| timeout <= first),
                "poll_timeout {timeout:?} after an expiry or deadline"
            );
        }
    }

    /// A request with no token, no fetch under way and no back-off gets a ticket at once.
    fn check_live(&mut self) {
        for k in 0..KEYS {
            if self.nothing_pending(k) {
                // `poll` asserts the ticket.
                self.poll(k);
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
    let mut model = Model::new(input.policy.build());
    for op in input.ops.into_iter().take(MAX_OPS) {
        model.apply(op);
    }
    model.check_live();
});
