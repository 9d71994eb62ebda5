//! Laws of the token cache over random sequences of time steps, polls and responses: it never
//! serves an expired token, never has two fetches in flight for one request, never serves a
//! token of another request, and honours `Retry-After`; never serves a refused token back to
//! the caller it was refused to once the refusal has surely taken effect; it never holds more
//! requests than its capacity (unless the others all have fetches in flight), and never forgets
//! one with a fetch in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use client_credentials::cache::{FetchTicket, Lookup, TokenCache};
use client_credentials::error::TransportKind;
use client_credentials::{
    CachePolicy, ClientCredentials, ClientSecret, Error, Token, TokenRequest, TokenUrl,
};
use proptest::prelude::*;

use crate::support;

const KEYS: usize = 3;

#[derive(Debug, Clone)]
enum Reply {
    /// A token with this `expires_in`, named after its request.
    Token(Option<u64>),
    /// `invalid_client`: not retryable.
    Refused,
    /// 503: retryable.
    Unavailable,
    /// 429 with `Retry-After` in seconds.
    RateLimited(u64),
    /// A 200 that is not a token.
    Garbage,
    /// No response: a transport failure.
    Transport,
}

#[derive(Debug, Clone)]
enum Op {
    Advance(Duration),
    /// Advance to exactly the cache's `poll_timeout`, to land on expiries and deadlines.
    AdvanceToTimeout,
    Poll(usize),
    Reply {
        ticket: usize,
        reply: Reply,
        random: u64,
    },
    Abandon(usize),
    Invalidate(usize),
    /// Polls as the caller the last refused token of the request was refused to.
    PollReplacing(usize),
    /// An API accepted the last token served for the request.
    Accepted(usize),
    ForceRefresh(usize),
    PollRefresh,
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => proptest::option::weighted(0.8, 0..400u64).prop_map(Reply::Token),
        1 => Just(Reply::Refused),
        1 => Just(Reply::Unavailable),
        1 => (0..600u64).prop_map(Reply::RateLimited),
        1 => Just(Reply::Garbage),
        1 => Just(Reply::Transport),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![0..2_000u64, 0..120_000u64]
            .prop_map(|ms| Op::Advance(Duration::from_millis(ms))),
        2 => Just(Op::AdvanceToTimeout),
        6 => (0..KEYS).prop_map(Op::Poll),
        4 => (any::<usize>(), reply(), any::<u64>())
            .prop_map(|(ticket, reply, random)| Op::Reply { ticket, reply, random }),
        1 => any::<usize>().prop_map(Op::Abandon),
        1 => (0..KEYS).prop_map(Op::Invalidate),
        1 => (0..KEYS).prop_map(Op::PollReplacing),
        1 => (0..KEYS).prop_map(Op::Accepted),
        1 => (0..KEYS).prop_map(Op::ForceRefresh),
        1 => Just(Op::PollRefresh),
    ]
}

fn keys() -> [TokenRequest; KEYS] {
    let url = || TokenUrl::new("https://idp.example.com/token").unwrap();
    let client = ClientCredentials::new(url(), "client", ClientSecret::new("secret"));
    let other = ClientCredentials::new(url(), "other", ClientSecret::new("secret"));
    [
        client.token_request().scope("a").build().unwrap(),
        client
            .token_request()
            .scope("a")
            .audience("x")
            .build()
            .unwrap(),
        other.token_request().scope("a").build().unwrap(),
    ]
}

fn response(status: u16, content_type: &str, body: String) -> http::Response<Vec<u8>> {
    support::responses::with_content_type(status, content_type, body)
}

/// What the test knows independently of the cache.
struct Model {
    keys: [TokenRequest; KEYS],
    cache: TokenCache,
    base: Instant,
    now: Instant,
    /// Tickets handed out and not yet handed back.
    tickets: Vec<FetchTicket>,
    /// For each ticket id: its request and when it was handed out.
    issued: HashMap<u64, (usize, Instant)>,
    /// For each request: its latest ticket, while it has not been handed back.
    current: [Option<u64>; KEYS],
    /// For each request: no fetch before this (the server's `Retry-After`).
    not_before: [Option<Instant>; KEYS],
    /// Each token's expiry, by access token: the server's (a refused token is served to others
    /// while its replacement fails, until then).
    expiry: HashMap<String, Instant>,
    /// When each token's fetch started, by access token.
    started: HashMap<String, Instant>,
    /// The last token served for each request.
    served: [Option<Arc<Token>>; KEYS],
    /// The last token refused for each request.
    refused: [Option<Arc<Token>>; KEYS],
    minted: u64,
}

impl Model {
    fn new() -> Self {
        Self::with_capacity(CachePolicy::new().capacity())
    }

    // The cache needs some `Instant` to count from; only differences from it matter.
    #[allow(clippy::disallowed_methods)]
    fn with_capacity(capacity: usize) -> Self {
        let now = Instant::now();
        Self {
            keys: keys(),
            cache: TokenCache::new(CachePolicy::new().with_capacity(capacity)),
            base: now,
            now,
            tickets: Vec::new(),
            issued: HashMap::new(),
            current: [None; KEYS],
            not_before: [None; KEYS],
            expiry: HashMap::new(),
            started: HashMap::new(),
            served: Default::default(),
            refused: Default::default(),
            minted: 0,
        }
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + (self.now - self.base)
    }

    fn key_of(&self, request: &TokenRequest) -> usize {
        self.keys
            .iter()
            .position(|key| key == request)
            .expect("a ticket for a known request")
    }

    /// Law: a token served for request `k` is that request's, and not expired.
    fn check_served(&mut self, k: usize, token: &Arc<Token>) -> Result<(), TestCaseError> {
        let name = token.access_token().secret();
        prop_assert!(
            name.starts_with(&format!("k{k}-")),
            "{name} served for k{k}"
        );
        let expiry = self.expiry[name];
        prop_assert!(
            self.now < expiry,
            "{name} served {:?} after expiry",
            self.now - expiry
        );
        self.served[k] = Some(Arc::clone(token));
        Ok(())
    }

    /// Law: a new ticket is for the request asked about, no other fetch for that request is
    /// in flight, and the server's `Retry-After` has passed.
    fn check_issued(&mut self, k: usize, ticket: FetchTicket) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.key_of(ticket.request()), k);
        if let Some(previous) = self.current[k] {
            let (_, started) = self.issued[&previous];
            let deadline = started + self.cache.policy().fetch_timeout();
            prop_assert!(self.now >= deadline, "two fetches in flight for k{k}");
        }
        if let Some(not_before) = self.not_before[k] {
            prop_assert!(
                self.now >= not_before,
                "fetch for k{k} before its Retry-After"
            );
        }
        prop_assert!(self.issued.insert(ticket.id(), (k, self.now)).is_none());
        self.current[k] = Some(ticket.id());
        self.tickets.push(ticket);
        Ok(())
    }

    /// The requests with a fetch the cache surely still counts: not handed back, and within
    /// its deadline.
    fn in_flight(&self) -> impl Iterator<Item = usize> + '_ {
        (0..KEYS).filter(|&k| {
            self.current[k].is_some_and(|id| {
                self.now < self.issued[&id].1 + self.cache.policy().fetch_timeout()
            })
        })
    }

    fn poll(&mut self, k: usize, rejected: Option<Arc<Token>>) -> Result<(), TestCaseError> {
        let peeked = self.cache.peek(&self.keys[k], self.now);
        let was_held = self.cache.contains(&self.keys[k]);
        let others_in_flight = self.in_flight().filter(|&j| j != k).count();
        let answer = match &rejected {
            Some(rejected) => self.cache.poll_replacing(&self.keys[k], rejected, self.now),
            None => self.cache.poll(&self.keys[k], self.now),
        };
        if let Some(rejected) = &rejected {
            // Law: a refusal surely in effect (past the longest minimum age) is never answered
            // with the refused token.
            let name = rejected.access_token().secret();
            let surely = self.started[name] + self.cache.policy().invalidate_max_age();
            if self.now >= surely {
                prop_assert!(
                    answer
                        .token()
                        .is_none_or(|token| !Arc::ptr_eq(token, rejected)),
                    "{name} served back to the caller it was refused to"
                );
            }
        }
        // Law: a new request joins a full cache only if every other has a fetch in flight.
        let (len, capacity) = (self.cache.len(), self.cache.policy().capacity());
        prop_assert!(self.cache.contains(&self.keys[k]));
        if !was_held {
            prop_assert!(
                len <= capacity || others_in_flight == len - 1,
                "{len} requests held, capacity {capacity}, {others_in_flight} others in flight"
            );
        }
        match (&answer, &peeked) {
            _ if rejected.is_some() => {}
            (Lookup::Ready(token), Some(peeked)) => prop_assert!(Arc::ptr_eq(token, peeked)),
            (Lookup::Ready(_), None) | (_, Some(_)) => {
                prop_assert!(false, "peek {peeked:?} disagrees with poll {answer:?}")
            }
            _ => {}
        }
        match answer {
            Lookup::Ready(token) => self.check_served(k, &token)?,
            Lookup::Refresh { token, ticket } => {
                self.check_served(k, &token)?;
                self.check_issued(k, ticket)?;
            }
            Lookup::Fetch(ticket) => self.check_issued(k, ticket)?,
            Lookup::Pending { deadline } => prop_assert!(deadline > self.now),
            Lookup::BackOff { until, .. } => prop_assert!(until > self.now),
        }
        Ok(())
    }

    fn reply(&mut self, index: usize, reply: Reply, random: u64) -> Result<(), TestCaseError> {
        if self.tickets.is_empty() {
            return Ok(());
        }
        let ticket = self.tickets.swap_remove(index % self.tickets.len());
        let (k, started) = self.issued[&ticket.id()];
        // The cache surely still counts this fetch: it is the latest and within its deadline.
        let live = self.current[k] == Some(ticket.id())
            && self.now < started + self.cache.policy().fetch_timeout();
        if self.current[k] == Some(ticket.id()) {
            self.current[k] = None;
        }
        let (now, sent_at) = (self.now, self.wall());
        let result = match reply {
            Reply::Token(expires_in) => {
                self.minted += 1;
                let name = format!("k{k}-{}", self.minted);
                let lifetime = expires_in.map_or(self.cache.policy().default_lifetime(), |s| {
                    Duration::from_secs(s)
                });
                self.expiry.insert(name.clone(), started + lifetime);
                self.started.insert(name.clone(), started);
                let expires_in =
                    expires_in.map_or(String::new(), |s| format!(",\"expires_in\":{s}"));
                let body =
                    format!(r#"{{"access_token":"{name}","token_type":"Bearer"{expires_in}}}"#);
                let response = response(200, "application/json", body);
                let token = self
                    .cache
                    .handle_response(ticket, &response, sent_at, now, random);
                let token = token.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(token.access_token().secret(), name.as_str());
                return Ok(());
            }
            Reply::Refused => {
                let body = r#"{"error":"invalid_client"}"#.to_owned();
                let response = response(401, "application/json", body);
                self.cache
                    .handle_response(ticket, &response, sent_at, now, random)
            }
            Reply::Unavailable => {
                let response = response(503, "text/html", "<h1>down</h1>".to_owned());
                self.cache
                    .handle_response(ticket, &response, sent_at, now, random)
            }
            Reply::RateLimited(seconds) => {
                let mut response = response(429, "text/plain", "slow down".to_owned());
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().unwrap());
                let honoured =
                    Duration::from_secs(seconds).min(self.cache.policy().retry_after_max());
                if live {
                    self.not_before[k] = Some(now + honoured);
                }
                self.cache
                    .handle_response(ticket, &response, sent_at, now, random)
            }
            Reply::Garbage => {
                let response = response(200, "application/json", "[1,2".to_owned());
                self.cache
                    .handle_response(ticket, &response, sent_at, now, random)
            }
            Reply::Transport => {
                let error = Error::Transport {
                    kind: TransportKind::Connect,
                    source: "connection refused".into(),
                };
                Err(self.cache.handle_failure(ticket, error, now, random))
            }
        };
        prop_assert!(result.is_err(), "a failure is never a token");
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Advance(step) => self.now += step,
            Op::AdvanceToTimeout => {
                if let Some(timeout) = self.cache.poll_timeout(self.now) {
                    self.now = self.now.max(timeout);
                }
            }
            Op::Poll(k) => self.poll(k, None)?,
            Op::PollReplacing(k) => {
                if let Some(rejected) = self.refused[k].clone() {
                    self.poll(k, Some(rejected))?;
                }
            }
            Op::Accepted(k) => {
                if let Some(token) = &self.served[k] {
                    let _ = self.cache.accepted(&self.keys[k], token);
                }
            }
            Op::Reply {
                ticket,
                reply,
                random,
            } => self.reply(ticket, reply, random)?,
            Op::Abandon(index) => {
                if !self.tickets.is_empty() {
                    let ticket = self.tickets.swap_remove(index % self.tickets.len());
                    let (k, _) = self.issued[&ticket.id()];
                    if self.current[k] == Some(ticket.id()) {
                        self.current[k] = None;
                    }
                    self.cache.abandon(ticket);
                }
            }
            Op::Invalidate(k) => {
                if let Some(token) = self.served[k].take() {
                    if self.cache.invalidate(&self.keys[k], &token) {
                        self.refused[k] = Some(token);
                    } else {
                        // Law: a token is refused once: a second refusal of it changes nothing.
                        prop_assert!(!self.cache.invalidate(&self.keys[k], &token));
                    }
                }
            }
            Op::ForceRefresh(k) => {
                let _ = self.cache.force_refresh(&self.keys[k]);
            }
            Op::PollRefresh => {
                if let Some(ticket) = self.cache.poll_refresh(self.now) {
                    let k = self.key_of(ticket.request());
                    self.check_issued(k, ticket)?;
                }
            }
        }
        for k in 0..KEYS {
            if self.in_flight().any(|j| j == k) {
                // Law: a request with a fetch in flight is never forgotten.
                prop_assert!(
                    self.cache.contains(&self.keys[k]),
                    "k{k} forgotten mid-fetch"
                );
            } else if !self.cache.contains(&self.keys[k]) {
                // Forgotten, back-off and all: nothing holds its next fetch back.
                self.not_before[k] = None;
            }
        }
        if let Some(timeout) = self.cache.poll_timeout(self.now) {
            // Far in the future only if a token lives that long.
            prop_assert!(timeout <= self.now + Duration::from_secs(400));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cache_laws_hold_over_any_sequence(
        capacity in 1..=KEYS + 1,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        // Up to `KEYS` the cache forgets requests to make room; above, never.
        let mut model = Model::with_capacity(capacity);
        for op in ops {
            model.apply(op)?;
        }
    }
}

/// The laws are not vacuous: a plain sequence reaches every answer.
#[test]
fn every_answer_is_reachable() {
    let mut model = Model::new();
    let mut answers = [false; 5];
    let k = 0;
    let mut note = |answer: &Lookup| {
        answers[match answer {
            Lookup::Ready(_) => 0,
            Lookup::Refresh { .. } => 1,
            Lookup::Fetch(_) => 2,
            Lookup::Pending { .. } => 3,
            Lookup::BackOff { .. } => 4,
        }] = true;
    };
    let script = [
        Op::Poll(k),
        Op::Poll(k),
        Op::Reply {
            ticket: 0,
            reply: Reply::Unavailable,
            random: 0,
        },
        Op::Poll(k),
        Op::Advance(Duration::from_secs(1)),
        Op::Poll(k),
        Op::Reply {
            ticket: 0,
            reply: Reply::Token(Some(100)),
            random: 0,
        },
        Op::Poll(k),
        Op::Advance(Duration::from_secs(95)),
        Op::Poll(k),
    ];
    for op in script {
        if let Op::Poll(k) = op {
            let answer = model.cache.poll(&model.keys[k], model.now);
            note(&answer);
            match answer {
                Lookup::Fetch(ticket) | Lookup::Refresh { ticket, .. } => {
                    model.check_issued(k, ticket).unwrap();
                }
                _ => {}
            }
        } else {
            model.apply(op).unwrap();
        }
    }
    assert_eq!(answers, [true; 5]);
}
