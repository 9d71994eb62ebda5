//! The fleet machine in a simulated world, shared by the property tests
//! (`fleet_properties.rs`) and the fuzz target (`fuzz/fuzz_targets/fleet_state.rs`, which
//! includes this file): three replicas whose fetches interleave as the caller says, a store
//! that fails, serves stale or tampered entries, a token endpoint that issues or refuses, and
//! time that moves only when told. [`simulate`] checks the laws at every step and returns the
//! first one broken:
//!
//! - a token served is one the store gave this run (an entry that opened) or its own fetch,
//!   never one that is expired, past its entry's freshness, or the replica's last token;
//! - a tampered entry is never served;
//! - a lease holder ends by writing what it fetched and by releasing the lease;
//! - a waiter never sleeps past its wait's bound, and fetches when the bound has passed;
//! - after the store failed, a run asks it nothing more before its fetch, and fetches;
//! - a run fetches at most once, and ends; an answer out of order changes nothing.

// Each includer uses the part it needs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use client_credentials::http;
use client_credentials::shared_cache::{
    Afterwards, FleetConfig, FleetMachine, FleetStep, StoreDown, StoreEncryptionKey, StoreKey,
    TokenOrigin,
};
use client_credentials::token::AccessToken;
use client_credentials::{
    CachePolicy, ClientCredentials, ClientSecret, Error, Token, TokenRequest, TokenUrl,
};

/// A broken law, said.
pub type Law<T = ()> = Result<T, String>;

/// Fails with the message unless the condition holds.
macro_rules! law {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

pub const REPLICAS: usize = 3;
/// Enough runs per replica for every test case (each `Act` starts at most one).
const MAX_RUNS: usize = 64;

pub fn request() -> TokenRequest {
    ClientCredentials::new(
        TokenUrl::new("https://idp.example.com/token").unwrap(),
        "client",
        ClientSecret::new("secret"),
    )
    .token_request()
    .scope("read")
    .build()
    .unwrap()
}

pub fn config(lease_ms: u64, wait_ms: u64, poll_ms: u64) -> FleetConfig {
    let fleet_key = StoreEncryptionKey::new([3; 32]);
    let key = StoreKey::new("fleet", &request(), &fleet_key).unwrap();
    FleetConfig::new(key, fleet_key, CachePolicy::new())
        .with_lease_ttl(Duration::from_millis(lease_ms))
        .with_wait(Duration::from_millis(wait_ms))
        .with_poll_interval(Duration::from_millis(poll_ms))
}

/// How the simulated store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    /// Every call fails.
    Down,
    /// Reads give the first value ever written, whatever its expiry.
    Stale,
    /// Reads give the value with one byte flipped.
    Tampered,
}

/// How the simulated token endpoint answers.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    /// A new token living this many seconds.
    Issue(u64),
    /// `invalid_client`.
    Refuse,
}

/// One step of the simulation.
#[derive(Debug, Clone)]
pub enum Op {
    /// Replica `n` (modulo [`REPLICAS`]) starts a fetch, or takes its pending step.
    Act(usize),
    /// Replica `n` is handed an answer it did not ask for (kind `k`).
    Misplaced(usize, u8),
    Store(Behaviour),
    Endpoint(Endpoint),
    /// The endpoint answers only after the holder's next lease renewal (`true`), or at once.
    Slow(bool),
    Advance(Duration),
}

/// A stored value: the sealed bytes, when the store drops it, and what the test knows of it.
#[derive(Clone)]
pub struct Stored {
    value: Vec<u8>,
    until: Instant,
    /// The token it holds, or `None` for a failure.
    token: Option<String>,
    /// Until when it is fresh: the token's freshness, or the failure's back-off.
    fresh_until: SystemTime,
}

/// The store, the endpoint and the clocks.
pub struct World {
    now: Instant,
    wall: SystemTime,
    store: Behaviour,
    endpoint: Endpoint,
    slow: bool,
    entry: Option<Stored>,
    first: Option<Stored>,
    lease: Option<(String, Instant)>,
    /// Every token the endpoint issued, with its real expiry.
    pub issued: HashMap<String, SystemTime>,
    nonces: u64,
}

impl World {
    // One reading, as an origin: the simulation's time moves only by its steps.
    #[allow(clippy::disallowed_methods)]
    pub fn new() -> Self {
        Self {
            now: Instant::now(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            store: Behaviour::Healthy,
            endpoint: Endpoint::Issue(60),
            slow: false,
            entry: None,
            first: None,
            lease: None,
            issued: HashMap::new(),
            nonces: 0,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.wall += by;
    }

    fn down(&self) -> bool {
        self.store == Behaviour::Down
    }

    /// A read: the value, and what the test knows of it when it is genuine.
    fn read(&self) -> Result<(Option<Vec<u8>>, Option<Stored>), StoreDown> {
        let stored = match self.store {
            Behaviour::Down => return Err(StoreDown),
            Behaviour::Stale => self.first.clone(),
            Behaviour::Healthy | Behaviour::Tampered => {
                self.entry.clone().filter(|entry| self.now < entry.until)
            }
        };
        Ok(match (stored, self.store) {
            (Some(mut stored), Behaviour::Tampered) => {
                let last = stored.value.len() - 1;
                stored.value[last] ^= 1;
                (Some(stored.value), None)
            }
            (Some(stored), _) => (Some(stored.value.clone()), Some(stored)),
            (None, _) => (None, None),
        })
    }

    fn fetch(&mut self) -> Result<Token, Error> {
        let response = match self.endpoint {
            Endpoint::Issue(secs) => {
                let token = format!("token-{}", self.issued.len());
                self.issued
                    .insert(token.clone(), self.wall + Duration::from_secs(secs));
                json(
                    200,
                    format!(
                        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{secs}}}"#
                    ),
                )
            }
            Endpoint::Refuse => json(400, r#"{"error":"invalid_client"}"#),
        };
        request().parse_response(&response, self.wall)
    }
}

/// What a replica's run has seen, for the laws.
#[derive(Default)]
pub struct Seen {
    /// Genuine entries the store gave this run, and when.
    pub offered: Vec<(Stored, SystemTime)>,
    pub fetched: Option<String>,
    /// Whether the run's fetch failed.
    pub fetch_failed: bool,
    /// When the lease this run holds expires, if it holds one.
    pub lease_until: Option<Instant>,
    pub fetches: u32,
    pub holder: bool,
    pub wrote: bool,
    pub released: bool,
    pub store_failed: bool,
    /// When the wait's bound ends: the first read's answer plus the wait.
    pub bound: Option<Instant>,
}

struct Run<'a> {
    machine: FleetMachine<'a>,
    step: FleetStep,
    seen: Seen,
}

struct Replica<'a> {
    last: Option<AccessToken>,
    run: Option<Run<'a>>,
    runs: usize,
}

fn same_kind(a: &FleetStep, b: &FleetStep) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Replica `run` takes its pending step in `world`; the laws hold at every answer.
fn act(
    world: &mut World,
    config: &FleetConfig,
    last: &mut Option<AccessToken>,
    run: &mut Run<'_>,
) -> Law<bool> {
    let seen = &mut run.seen;
    let step = std::mem::replace(&mut run.step, FleetStep::Ended);
    let next = match step {
        FleetStep::Read => {
            law!(!seen.store_failed, "a read after the store failed");
            let read = world.read();
            // A genuine failure whose back-off has not ended must be served as it is.
            let failure = matches!(&read, Ok((_, Some(stored)))
                if stored.token.is_none() && world.wall < stored.fresh_until);
            if let Ok((_, Some(stored))) = &read {
                seen.offered.push((stored.clone(), world.wall));
            }
            seen.store_failed |= read.is_err();
            seen.bound.get_or_insert_with(|| world.now + config.wait());
            let next = run
                .machine
                .handle_read(read.map(|(value, _)| value), world.now, world.wall);
            if seen.store_failed {
                law!(
                    matches!(next, FleetStep::Fetch { .. }),
                    "a store failure did not fall back to a fetch: {next:?}"
                );
            }
            if failure {
                law!(
                    matches!(
                        next,
                        FleetStep::Done {
                            outcome: Err(_),
                            origin: TokenOrigin::Store,
                            ..
                        }
                    ),
                    "the fleet's failure was not honoured: {next:?}"
                );
            }
            next
        }
        FleetStep::TakeLease { ttl } => {
            law!(!seen.store_failed, "a lease after the store failed");
            let taken = if world.down() {
                Err(StoreDown)
            } else if world
                .lease
                .as_ref()
                .is_some_and(|(_, until)| world.now < *until)
            {
                Ok(false)
            } else {
                world.lease = Some((run.machine.holder().to_owned(), world.now + ttl));
                Ok(true)
            };
            seen.holder |= taken == Ok(true);
            if taken == Ok(true) {
                seen.lease_until = Some(world.now + ttl);
            }
            seen.store_failed |= taken.is_err();
            let next = run.machine.handle_lease(taken, world.now);
            if taken.is_err() {
                law!(
                    matches!(next, FleetStep::Fetch { .. }),
                    "a store failure did not fall back to a fetch: {next:?}"
                );
            }
            if let (Ok(false), FleetStep::Fetch { .. }) = (taken, &next) {
                // The bound less its jitter (at most a tenth).
                let earliest = seen.bound.unwrap() - config.wait() / 10;
                law!(
                    world.now + Duration::from_millis(1) >= earliest,
                    "a waiter gave up before its bound while the lease was held"
                );
            }
            if taken == Ok(false) && world.now >= seen.bound.unwrap() {
                law!(
                    matches!(next, FleetStep::Fetch { .. }),
                    "waited past the bound: {next:?}"
                );
            }
            if let FleetStep::Sleep { until } = next {
                law!(until > world.now, "a sleep that ends before it starts");
                law!(
                    until <= seen.bound.unwrap(),
                    "a sleep past the wait's bound"
                );
            }
            next
        }
        FleetStep::Sleep { until } => {
            law!(!seen.store_failed, "a wait after the store failed");
            world.advance(until.saturating_duration_since(world.now));
            run.machine.handle_timeout(world.now)
        }
        FleetStep::Fetch { renew_at } => {
            if let Some(at) = renew_at {
                law!(seen.holder, "a renewal without the lease");
                law!(
                    seen.lease_until.is_some_and(|until| at < until),
                    "a renewal planned after the lease expires"
                );
                if world.slow {
                    // The endpoint has not answered by the time the lease needs renewing.
                    world.advance(at.saturating_duration_since(world.now));
                    let next = run.machine.handle_timeout(world.now);
                    law!(
                        matches!(next, FleetStep::RenewLease { .. }),
                        "a holder did not renew its lease: {next:?}"
                    );
                    run.step = next;
                    return Ok(false);
                }
            }
            seen.fetches += 1;
            law!(seen.fetches == 1, "a second fetch in one run");
            let fetched = world.fetch();
            seen.fetched = fetched
                .as_ref()
                .ok()
                .map(|t| t.access_token().secret().to_owned());
            seen.fetch_failed = fetched.is_err();
            world.nonces += 1;
            let nonce = world.nonces.to_le_bytes();
            run.machine.handle_fetched(fetched, world.wall, || {
                let mut bytes = [0; 12];
                bytes[..8].copy_from_slice(&nonce);
                Some(bytes)
            })
        }
        FleetStep::RenewLease { ttl } => {
            law!(seen.holder, "a renewal without the lease");
            let holder = run.machine.holder();
            let renewed = if world.down() {
                Err(StoreDown)
            } else if world
                .lease
                .as_ref()
                .is_some_and(|(owner, until)| owner == holder && world.now < *until)
            {
                world.lease = Some((holder.to_owned(), world.now + ttl));
                seen.lease_until = Some(world.now + ttl);
                Ok(true)
            } else {
                Ok(false)
            };
            run.machine.handle_renewed(renewed, world.now)
        }
        FleetStep::Done { .. } | FleetStep::Ended => {
            return Err("a run went on after it ended".into());
        }
    };
    // The laws of an outcome hold when the machine hands it out, and what the store still
    // needs is done at once.
    if let FleetStep::Done {
        outcome,
        origin,
        afterwards,
    } = next
    {
        after(world, run.machine.holder(), seen, afterwards)?;
        check_done(world, last, seen, outcome, origin)?;
        return Ok(true);
    }
    run.step = next;
    Ok(false)
}

/// Does what the store still needs after a run: write its entry, release its lease.
fn after(world: &mut World, holder: &str, seen: &mut Seen, afterwards: Afterwards) -> Law {
    law!(
        afterwards.release == seen.holder,
        "a release by a process that is not the holder, or none by the holder"
    );
    seen.released = afterwards.release;
    if let Some((value, ttl)) = afterwards.write {
        law!(
            seen.fetched.is_some() || seen.fetch_failed,
            "a write without a fetch"
        );
        let token = seen.fetched.clone();
        law!(!ttl.is_zero(), "a write that expires at once");
        seen.wrote = true;
        if !world.down() {
            let stored = Stored {
                value,
                until: world.now + ttl,
                token,
                fresh_until: world.wall + ttl,
            };
            world.first.get_or_insert_with(|| stored.clone());
            world.entry = Some(stored);
        }
    }
    if afterwards.release
        && !world.down()
        && world
            .lease
            .as_ref()
            .is_some_and(|(owner, _)| owner == holder)
    {
        world.lease = None;
    }
    Ok(())
}

/// The laws of a finished run.
fn check_done(
    world: &World,
    last: &mut Option<AccessToken>,
    seen: &Seen,
    outcome: Result<Token, Error>,
    origin: TokenOrigin,
) -> Law {
    if seen.holder {
        law!(seen.released, "a holder ended without releasing");
        // Every failure of the simulated endpoint is the fleet's: shared too.
        if origin == TokenOrigin::Fetch {
            law!(seen.wrote, "a holder ended without writing what it fetched");
        }
    }
    let token = match (outcome, origin) {
        (Ok(token), _) => token,
        (Err(_), TokenOrigin::Fetch) => {
            law!(seen.fetch_failed, "an error that is not the fetch's");
            return Ok(());
        }
        (Err(_), TokenOrigin::Store) => {
            law!(
                seen.offered.iter().any(
                    |(stored, read_at)| stored.token.is_none() && *read_at < stored.fresh_until
                ),
                "a failure that no genuine negative entry in its back-off gave this run"
            );
            return Ok(());
        }
    };
    let secret = token.access_token().secret().to_owned();
    let Some(real_expiry) = world.issued.get(&secret) else {
        return Err("a token the endpoint never issued".into());
    };
    if origin == TokenOrigin::Store {
        law!(
            seen.offered
                .iter()
                .any(|(stored, _)| stored.token.as_ref() == Some(&secret)
                    && world.wall < stored.fresh_until),
            "a store token that no genuine, fresh entry gave this run"
        );
    }
    law!(world.wall < *real_expiry, "an expired token was served");
    law!(
        token.expires_at().is_some_and(|at| at <= *real_expiry),
        "a token served longer than it lives: {:?} > {real_expiry:?} ({origin:?}, at {:?})",
        token.expires_at(),
        world.wall
    );
    law!(
        last.as_ref().is_none_or(|last| last.secret() != secret),
        "the last token was served back"
    );
    if origin == TokenOrigin::Fetch {
        law!(
            seen.fetched.as_ref() == Some(&secret),
            "a fetched token that is not the fetch's"
        );
    }
    *last = Some(token.access_token().clone());
    Ok(())
}

/// An answer of kind `kind` that the machine did not ask for: it must say its step again.
fn misplaced(world: &World, run: &mut Run<'_>, kind: u8) -> Law {
    let asked = match (&run.step, kind % 5) {
        (FleetStep::Read, 0) | (FleetStep::TakeLease { .. }, 1) | (FleetStep::Sleep { .. }, 2) => {
            return Ok(());
        }
        (FleetStep::Fetch { .. }, 3 | 2) | (FleetStep::RenewLease { .. }, 4) => return Ok(()),
        (FleetStep::Done { .. } | FleetStep::Ended, _) => return Ok(()),
        (_, 0) => run.machine.handle_read(Ok(None), world.now, world.wall),
        (_, 1) => run.machine.handle_lease(Ok(true), world.now),
        (_, 2) => run.machine.handle_timeout(world.now),
        (_, 3) => run
            .machine
            .handle_fetched(Err(Error::ClockBeforeUnixEpoch), world.wall, || None),
        (_, _) => run.machine.handle_renewed(Ok(true), world.now),
    };
    law!(
        same_kind(&asked, &run.step),
        "an answer out of order moved the machine: {asked:?} after {:?}",
        run.step
    );
    Ok(())
}

/// Runs `ops` by `config` and then every unfinished run to its end on a healthy store: the
/// first law broken, if any.
pub fn simulate(config: &FleetConfig, ops: &[Op]) -> Law {
    let holders: Vec<Vec<String>> = (0..REPLICAS)
        .map(|n| {
            (0..MAX_RUNS)
                .map(|k| format!("replica-{n}-run-{k}"))
                .collect()
        })
        .collect();
    let mut world = World::new();
    let mut replicas: Vec<Replica<'_>> = (0..REPLICAS)
        .map(|_| Replica {
            last: None,
            run: None,
            runs: 0,
        })
        .collect();
    for op in ops.iter().cloned() {
        match op {
            Op::Act(n) => {
                let replica = &mut replicas[n % REPLICAS];
                if let Some(run) = &mut replica.run {
                    if act(&mut world, config, &mut replica.last, run)? {
                        replica.run = None;
                    }
                } else if replica.runs < MAX_RUNS {
                    let machine = FleetMachine::new(
                        config,
                        replica.last.clone(),
                        &holders[n % REPLICAS][replica.runs],
                        // A random word for the jitter: any will do, so one that varies.
                        (world.nonces + replica.runs as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    );
                    replica.runs += 1;
                    let step = machine.start();
                    law!(
                        matches!(step, FleetStep::Read),
                        "a fetch that does not start with a read"
                    );
                    replica.run = Some(Run {
                        machine,
                        step,
                        seen: Seen::default(),
                    });
                }
            }
            Op::Misplaced(n, kind) => {
                if let Some(run) = &mut replicas[n % REPLICAS].run {
                    misplaced(&world, run, kind)?;
                }
            }
            Op::Store(behaviour) => world.store = behaviour,
            Op::Endpoint(endpoint) => world.endpoint = endpoint,
            Op::Slow(slow) => world.slow = slow,
            Op::Advance(by) => world.advance(by),
        }
    }
    // Every run ends: with a healthy store, each runs to its end within a bounded number
    // of steps (its wait's bound passes as its sleeps move time on).
    world.store = Behaviour::Healthy;
    world.slow = false;
    for replica in &mut replicas {
        if let Some(run) = &mut replica.run {
            let mut steps = 0;
            while !act(&mut world, config, &mut replica.last, run)? {
                steps += 1;
                law!(steps < 100_000, "a run that never ends");
            }
        }
    }
    Ok(())
}

/// A JSON response with this status.
fn json(status: u16, body: impl Into<Vec<u8>>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("a canned response")
}

/// One run by `config` against `world`, to its end: the outcome and where it came from.
pub fn run_to_end(
    world: &mut World,
    config: &FleetConfig,
    last: &mut Option<AccessToken>,
    holder: &str,
) -> Law<(Option<String>, Seen)> {
    let machine = FleetMachine::new(config, last.clone(), holder, 7);
    let step = machine.start();
    let mut run = Run {
        machine,
        step,
        seen: Seen::default(),
    };
    let before = last.clone();
    while !act(world, config, last, &mut run)? {}
    let fetched = (last.as_ref().map(AccessToken::secret)
        != before.as_ref().map(AccessToken::secret))
    .then(|| last.as_ref().map(|t| t.secret().to_owned()))
    .flatten();
    Ok((fetched, run.seen))
}
