//! The fleet-wide fetch of one token, without IO: what a process does on a first-level miss or
//! a due refresh when its token source shares a [`TokenStore`](crate::TokenStore) with a fleet.
//!
//! [`FleetMachine`] decides; the caller (the IO layer's driver, or a simulation) performs each
//! [`FleetStep`] and hands the answer back, with the time. One machine is one fetch:
//!
//! 1. read the store: a fresh entry that opens is the token (from the store: no fetch);
//! 2. otherwise take the request's lease: the holder reads once more (another holder may just
//!    have written), then fetches from the token endpoint, renewing its lease every third of
//!    its time to live while the fetch lasts, so that a slow endpoint is asked once;
//! 3. a process that finds the lease held sleeps a poll interval, reads again and tries the
//!    lease again, for as long as the lease is held and at most its wait's bound (half the
//!    fetch timeout, less a random tenth, so that waiters who give up do not all fetch at
//!    once): then it fetches by itself;
//! 4. a store that fails (or, in the driver, takes longer than its timeout) means "no store":
//!    the process fetches directly and asks the store nothing more in this fetch;
//! 5. a failure is shared too: the process that fetched writes a negative entry (the failure's
//!    class, and until when: its `Retry-After` as far as the policy honours it, or the policy's
//!    first back-off), and every replica that reads it fails the same way without a request,
//!    its `Retry-After` what remains, so that the fleet asks once per back-off.
//!
//! The token is handed out ([`FleetStep::Done`]) as soon as it is known; what the store still
//! needs (the entry to write, the lease to release) comes with it, for the caller to do without
//! making anyone wait.
//!
//! The machine never serves an entry that does not open, one whose freshness has ended, or the
//! token this process last got (the one the caller now wants replaced: its first level dropped
//! it, or its refresh came due), so an API's refusal replaces a token for the whole fleet.

use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::aead::NONCE_LEN;

use crate::cache::policy::{CachePolicy, later};
use crate::error::Error;
use crate::observe;
use crate::secret::AccessToken;
use crate::store::encryption_key::StoreEncryptionKey;
use crate::store::entry::{EntrySealing, Opened, Refused, open, seal, seal_failure};
use crate::store::key::StoreKey;
use crate::token::Token;

/// The store did not answer: it failed, or (in the driver) took longer than the store timeout.
/// The machine then fetches directly and asks the store nothing more in this fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreDown;

/// Where the token of a finished [`FleetMachine`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    /// A fresh entry in the store, written by another process (or by this one earlier): a hit
    /// of the second level, with no request to the token endpoint. For a failure: a negative
    /// entry, another process's failure whose back-off has not ended.
    Store,
    /// This process's own fetch from the token endpoint (also the origin of every failure).
    Fetch,
}

/// What to do next, as a [`FleetMachine`] says.
#[derive(Debug)]
#[must_use = "a step is what the fleet fetch needs done next: do it and hand the answer back"]
// A step lives for one store call and `Done` comes once per fetch: boxing its outcome would
// add an allocation to every fetch and save nothing.
#[allow(clippy::large_enum_variant)]
pub enum FleetStep {
    /// Read the entry under [`StoreKey::entry`]; answer with [`FleetMachine::handle_read`].
    Read,
    /// Take the lease under [`StoreKey::lease`] for [`FleetMachine::holder`], to expire after
    /// `ttl`, if nobody holds it; answer with [`FleetMachine::handle_lease`].
    TakeLease {
        /// The lease's time to live.
        ttl: Duration,
    },
    /// Sleep until `until` (another process holds the lease); then call
    /// [`FleetMachine::handle_timeout`].
    Sleep {
        /// When to wake: never later than the wait's bound.
        until: Instant,
    },
    /// Fetch the token from the token endpoint (or keep awaiting the fetch already started);
    /// answer with [`FleetMachine::handle_fetched`]. If `renew_at` comes first, call
    /// [`FleetMachine::handle_timeout`] then, without giving the fetch up.
    Fetch {
        /// When the holder's lease must be renewed, if this process holds it.
        renew_at: Option<Instant>,
    },
    /// Extend the lease under [`StoreKey::lease`] to expire after `ttl`, if
    /// [`FleetMachine::holder`] still holds it, while the fetch goes on; answer with
    /// [`FleetMachine::handle_renewed`].
    RenewLease {
        /// The lease's new time to live, from now.
        ttl: Duration,
    },
    /// The fetch is over: the token, or the token endpoint's error. Hand it out at once; then
    /// do `afterwards` without making the caller wait for it.
    Done {
        /// The token, or the failure of this process's fetch (or, from the store, of another's).
        outcome: Result<Token, Error>,
        /// Where the token came from.
        origin: TokenOrigin,
        /// What the store still needs.
        afterwards: Afterwards,
    },
    /// The fetch was already over: an answer came after [`Done`](Self::Done) (the caller took
    /// the steps out of order), and is ignored.
    Ended,
}

/// What the store still needs once a fetch has its outcome: done in the background, each call
/// bounded as any other, and harmless if it fails (an entry not written is fetched again, a
/// lease not released expires).
#[derive(Debug, Default)]
#[must_use = "a lease left held makes the fleet wait for its time to live"]
pub struct Afterwards {
    /// Write `.0` under [`StoreKey::entry`], to expire after `.1` (when the token first comes
    /// due for refresh, or a failure's back-off ends).
    pub write: Option<(Vec<u8>, Duration)>,
    /// Release the lease under [`StoreKey::lease`] if [`FleetMachine::holder`] still holds it.
    pub release: bool,
}

/// What every fetch of one request through one fleet's store shares: the request's store key,
/// how its entries are sealed, the source's [`CachePolicy`] (which times the entries) and the
/// lease's and the wait's timing. Build it once per token source.
#[derive(Clone)]
pub struct FleetConfig {
    key: StoreKey,
    sealing: EntrySealing,
    policy: CachePolicy,
    lease_ttl: Duration,
    wait: Duration,
    poll_interval: Duration,
}

impl FleetConfig {
    /// The default time to live of a lease: 5 s, longer than a token request takes.
    pub const LEASE_TTL: Duration = Duration::from_secs(5);
    /// The default longest wait for another process's fetch: 15 s, half the default
    /// [`CachePolicy::fetch_timeout`] (with another policy, half of its fetch timeout). A
    /// waiter waits only while the lease is held: its holder renews it while it fetches, and a
    /// holder that dies stops renewing it, so that a waiter takes it over within its time to
    /// live.
    pub const WAIT: Duration = Duration::from_secs(15);
    /// The default interval between a waiter's reads of the store: 50 ms.
    pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

    /// The fleet fetch of the request named by `key`, its entries sealed by AES-256-GCM under
    /// `encryption`, timed by `policy`, with the default lease and wait.
    #[must_use]
    pub fn new(key: StoreKey, encryption: StoreEncryptionKey, policy: CachePolicy) -> Self {
        Self::with_sealing(key, EntrySealing::Encrypted(encryption), policy)
    }

    /// As [`new`](Self::new), with entries **in clear**: whoever reads the store can use the
    /// tokens in it. An entry in clear never opens under [`new`](Self::new), and an encrypted
    /// one never opens here.
    #[must_use]
    pub fn insecure_plaintext(key: StoreKey, policy: CachePolicy) -> Self {
        Self::with_sealing(key, EntrySealing::InsecurePlaintext, policy)
    }

    pub(crate) fn with_sealing(key: StoreKey, sealing: EntrySealing, policy: CachePolicy) -> Self {
        Self {
            key,
            sealing,
            policy,
            lease_ttl: Self::LEASE_TTL,
            wait: policy.fetch_timeout() / 2,
            poll_interval: Self::POLL_INTERVAL,
        }
    }

    /// The lease's time to live instead of [`LEASE_TTL`](Self::LEASE_TTL) (at least 1 ms).
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The longest wait for another process's fetch instead of half the policy's
    /// [`fetch_timeout`](CachePolicy::fetch_timeout) ([`WAIT`](Self::WAIT) by default), and
    /// never more, so that the fetch after a wait still has time.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(self.policy.fetch_timeout() / 2);
        self
    }

    /// The interval between a waiter's reads instead of [`POLL_INTERVAL`](Self::POLL_INTERVAL)
    /// (at least 1 ms).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The request's store key: where its entry and its lease live.
    #[must_use]
    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    /// The longest a fetch waits for another process's, after its first read (less a random
    /// tenth of it, drawn for each fetch).
    #[must_use]
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The sealed entry of `token`, fetched and answered by `wall`, and its time to live: to
    /// expire when the token first comes due for refresh in any replica by the policy. `None`
    /// for a token already due (not shared), without a nonce (better not to share than to
    /// reuse one), or one that cannot be sealed.
    fn token_entry(
        &self,
        token: &Token,
        wall: SystemTime,
        nonce: impl FnOnce() -> Option<[u8; NONCE_LEN]>,
    ) -> Option<(Vec<u8>, Duration)> {
        let lifetime = token.expires_in().unwrap_or(self.policy.default_lifetime());
        let sent_at = token.sent_at();
        let expires_at = sent_at.checked_add(lifetime)?;
        let fresh_until = sent_at.checked_add(self.policy.earliest_refresh(lifetime))?;
        let ttl = fresh_until.duration_since(wall).ok()?;
        if ttl < Duration::from_millis(1) {
            return None;
        }
        let value = seal(
            &self.sealing,
            &self.key,
            token,
            expires_at,
            fresh_until,
            nonce()?,
        )?;
        Some((value, ttl))
    }

    /// The sealed negative entry of `error`, answered at `wall`, and its time to live: the
    /// policy's first back-off for it (its `Retry-After` as far as the policy honours it,
    /// without jitter), during which every replica fails the same way without a request.
    /// `None` for a failure of this process's own, or without a nonce.
    fn failure_entry(
        &self,
        error: &Error,
        wall: SystemTime,
        nonce: impl FnOnce() -> Option<[u8; NONCE_LEN]>,
    ) -> Option<(Vec<u8>, Duration)> {
        let ttl = self.policy.backoff(error, 1, Some(wall), 0);
        if ttl < Duration::from_millis(1) {
            return None;
        }
        let until = wall.checked_add(ttl)?;
        let value = seal_failure(&self.sealing, &self.key, error, until, nonce()?)?;
        Some((value, ttl))
    }
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("key", &self.key)
            .field("sealing", &self.sealing)
            .field("lease_ttl", &self.lease_ttl)
            .field("wait", &self.wait)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Who fetches, and so what follows a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The store is down: fetch, and nothing more.
    Direct,
    /// This process holds the lease: renew it while fetching, write what it gets, release.
    Holder,
    /// The wait ran out while another process held the lease: fetch, and write what it gets.
    AfterWait,
}

/// Where a fetch is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Awaiting the first read's answer.
    FirstRead,
    /// Awaiting a waiter's read (after a sleep).
    WaitRead,
    /// Awaiting the holder's read, just after it took the lease; to renew it then.
    HolderRead { renew_at: Instant },
    /// Awaiting the lease's answer.
    Lease,
    /// Asleep until then.
    Sleeping(Instant),
    /// Awaiting the fetch's answer; the holder renews its lease at `renew_at`.
    Fetching {
        role: Role,
        renew_at: Option<Instant>,
    },
    /// The holder's fetch goes on; awaiting the renewal's answer.
    Renewing,
    /// The outcome was handed out.
    Over,
}

/// One fleet-wide fetch of a token, as a state machine: it says what to do next
/// ([`FleetStep`]) and is told what happened, with the time. No IO, no clock, no randomness:
/// the caller performs each step, reads the clocks (`now` for waits, `wall` for entries'
/// expiry) and draws the holder's name and each entry's nonce.
///
/// ```
/// use std::time::{Duration, Instant, SystemTime};
/// use client_credentials::{CachePolicy, ClientCredentials, ClientSecret, TokenUrl};
/// use client_credentials::shared_cache::{
///     FleetConfig, FleetMachine, FleetStep, StoreEncryptionKey, StoreKey, TokenOrigin,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// );
/// let request = client.token_request().build()?;
/// let fleet_key = StoreEncryptionKey::new([7; 32]); // the same in every replica
/// let key = StoreKey::new("billing-prod", &request, &fleet_key).expect("a shareable request");
/// let config = FleetConfig::new(key, fleet_key, CachePolicy::new());
/// let (now, wall) = (Instant::now(), SystemTime::now());
///
/// let mut fetch = FleetMachine::new(&config, None, "holder-1", 42); // 42: a random word
/// assert!(matches!(fetch.start(), FleetStep::Read));
/// // The store is empty: take the lease.
/// assert!(matches!(fetch.handle_read(Ok(None), now, wall), FleetStep::TakeLease { .. }));
/// // Taken: read once more, then fetch from the token endpoint.
/// assert!(matches!(fetch.handle_lease(Ok(true), now), FleetStep::Read));
/// assert!(matches!(fetch.handle_read(Ok(None), now, wall), FleetStep::Fetch { .. }));
/// # let response = http::Response::builder().status(200)
/// #     .header("content-type", "application/json")
/// #     .body(r#"{"access_token":"eyJ...","token_type":"Bearer","expires_in":3600}"#)?;
/// let token = request.parse_response(&response, wall);
/// // The token is this process's at once; the entry to write and the lease to release follow.
/// let step = fetch.handle_fetched(token, wall, || Some([1; 12]));
/// let FleetStep::Done { outcome, origin, afterwards } = step else { panic!() };
/// assert_eq!(outcome?.access_token().secret(), "eyJ...");
/// assert_eq!(origin, TokenOrigin::Fetch);
/// assert!(afterwards.write.is_some() && afterwards.release);
/// # Ok(()) }
/// ```
///
/// An answer the machine is not waiting for (a lease's answer when it asked for a read) is
/// ignored: the step it waits for is said again.
#[derive(Debug)]
#[must_use = "a fleet fetch does nothing until its steps are taken"]
pub struct FleetMachine<'a> {
    config: &'a FleetConfig,
    /// The token this process last got: an entry still holding it is no answer.
    last: Option<AccessToken>,
    holder: &'a str,
    /// A random word, for the jitter of the wait's bound.
    random: u64,
    phase: Phase,
    /// When a waiter stops waiting for another process's fetch.
    deadline: Option<Instant>,
}

impl<'a> FleetMachine<'a> {
    /// A fetch by `config`, for a process whose last token was `last` (the one it wants
    /// replaced, never served back from the store), holding leases as `holder` (a name of
    /// 16 random bytes or more, so that a process releases only its own lease), with `random`,
    /// a random word, for its jitter.
    pub fn new(
        config: &'a FleetConfig,
        last: Option<AccessToken>,
        holder: &'a str,
        random: u64,
    ) -> Self {
        Self {
            config,
            last,
            holder,
            random,
            phase: Phase::FirstRead,
            deadline: None,
        }
    }

    /// The first step: read the store.
    pub fn start(&self) -> FleetStep {
        self.pending()
    }

    /// The name this fetch holds the lease under.
    #[must_use]
    pub fn holder(&self) -> &str {
        self.holder
    }

    /// The store key of the entry and the lease.
    #[must_use]
    pub fn key(&self) -> &StoreKey {
        &self.config.key
    }

    /// Whether this fetch holds the lease (or may: it took it and has not handed out its
    /// outcome). A caller whose fetch is given up before [`FleetStep::Done`] releases it.
    #[must_use]
    pub fn holds_lease(&self) -> bool {
        matches!(
            self.phase,
            Phase::HolderRead { .. }
                | Phase::Renewing
                | Phase::Fetching {
                    role: Role::Holder,
                    ..
                }
        )
    }

    /// The step the machine waits on, said again.
    fn pending(&self) -> FleetStep {
        match self.phase {
            Phase::FirstRead | Phase::WaitRead | Phase::HolderRead { .. } => FleetStep::Read,
            Phase::Lease => FleetStep::TakeLease {
                ttl: self.config.lease_ttl,
            },
            Phase::Sleeping(until) => FleetStep::Sleep { until },
            Phase::Fetching { renew_at, .. } => FleetStep::Fetch { renew_at },
            Phase::Renewing => FleetStep::RenewLease {
                ttl: self.config.lease_ttl,
            },
            Phase::Over => FleetStep::Ended,
        }
    }

    /// Moves to `phase` and says its step.
    fn to(&mut self, phase: Phase) -> FleetStep {
        self.phase = phase;
        self.pending()
    }

    /// Ends the fetch with `outcome`, and what the store still needs.
    fn done(
        &mut self,
        outcome: Result<Token, Error>,
        origin: TokenOrigin,
        afterwards: Afterwards,
    ) -> FleetStep {
        self.phase = Phase::Over;
        FleetStep::Done {
            outcome,
            origin,
            afterwards,
        }
    }

    /// When the holder renews a lease taken or renewed at `now`: a third of its time to live
    /// later, so that two renewals can fail before it expires.
    fn renew_at(&self, now: Instant) -> Instant {
        later(now, self.config.lease_ttl / 3)
    }

    /// The answer to [`FleetStep::Read`], at `now` and `wall` (the wall clock, against which
    /// entries' expiries are read): the stored value, `None` if there is none, or
    /// [`StoreDown`].
    pub fn handle_read(
        &mut self,
        read: Result<Option<Vec<u8>>, StoreDown>,
        now: Instant,
        wall: SystemTime,
    ) -> FleetStep {
        let (holder, renew_at) = match self.phase {
            Phase::FirstRead | Phase::WaitRead => (false, None),
            Phase::HolderRead { renew_at } => (true, Some(renew_at)),
            _ => return self.pending(),
        };
        let found = match read {
            Err(StoreDown) if holder => None,
            Err(StoreDown) => {
                return self.to(Phase::Fetching {
                    role: Role::Direct,
                    renew_at: None,
                });
            }
            Ok(value) => value.and_then(|value| self.open(&value, wall)),
        };
        let release = Afterwards {
            write: None,
            release: holder,
        };
        match (found, holder) {
            (Some(outcome), _) => self.done(outcome, TokenOrigin::Store, release),
            (None, true) => self.to(Phase::Fetching {
                role: Role::Holder,
                renew_at,
            }),
            (None, false) => {
                if self.deadline.is_none() {
                    self.deadline = Some(later(now, self.bound()));
                }
                self.to(Phase::Lease)
            }
        }
    }

    /// This fetch's wait bound: the configured wait less up to a tenth of it, by the random
    /// word, so that waiters who give up together do not all fetch at once.
    fn bound(&self) -> Duration {
        let tenth = u64::try_from((self.config.wait / 10).as_millis()).unwrap_or(u64::MAX);
        let jitter = self.random % tenth.max(1);
        self.config
            .wait
            .saturating_sub(Duration::from_millis(jitter))
    }

    /// The token in `value`, if it opens, is fresh at `wall` and is not the last one, or the
    /// failure whose back-off has not ended. An entry that does not open is absent (and
    /// overwritten by the next write), never served.
    fn open(&self, value: &[u8], wall: SystemTime) -> Option<Result<Token, Error>> {
        match open(&self.config.sealing, &self.config.key, value, wall) {
            Ok(Opened::Token(token)) if self.is_last(&token) => None,
            Ok(Opened::Token(token)) => Some(Ok(token)),
            Ok(Opened::Failure(error)) => Some(Err(error)),
            Err(Refused::Stale) => None,
            Err(Refused::Unreadable) => {
                observe::store_entry_refused(self.config.key.entry());
                None
            }
        }
    }

    /// Whether `token` is the one this process last got (and now wants replaced).
    fn is_last(&self, token: &Token) -> bool {
        self.last
            .as_ref()
            .is_some_and(|last| last.secret() == token.access_token().secret())
    }

    /// The answer to [`FleetStep::TakeLease`] at `now`: whether the lease was taken, or
    /// [`StoreDown`].
    pub fn handle_lease(&mut self, taken: Result<bool, StoreDown>, now: Instant) -> FleetStep {
        if !matches!(self.phase, Phase::Lease) {
            return self.pending();
        }
        match taken {
            Err(StoreDown) => self.to(Phase::Fetching {
                role: Role::Direct,
                renew_at: None,
            }),
            Ok(true) => self.to(Phase::HolderRead {
                renew_at: self.renew_at(now),
            }),
            Ok(false) => {
                let deadline = self.deadline.unwrap_or(now);
                if now >= deadline {
                    observe::store_wait_expired(self.config.key.entry(), self.config.wait);
                    return self.to(Phase::Fetching {
                        role: Role::AfterWait,
                        renew_at: None,
                    });
                }
                let wake = later(now, self.config.poll_interval).min(deadline);
                self.to(Phase::Sleeping(wake))
            }
        }
    }

    /// The time of [`FleetStep::Sleep`] or of [`FleetStep::Fetch`]'s `renew_at` has come at
    /// `now`: after a sleep, read the store again; during the holder's fetch, renew the lease.
    /// Woken early, the same step again.
    pub fn handle_timeout(&mut self, now: Instant) -> FleetStep {
        match self.phase {
            Phase::Sleeping(until) if now >= until => self.to(Phase::WaitRead),
            Phase::Fetching {
                role: Role::Holder,
                renew_at: Some(at),
            } if now >= at => self.to(Phase::Renewing),
            _ => self.pending(),
        }
    }

    /// The answer to [`FleetStep::RenewLease`] at `now`: whether this process still held the
    /// lease (and so renewed it), or [`StoreDown`]. The fetch goes on either way; a lease lost
    /// is not renewed again.
    pub fn handle_renewed(&mut self, renewed: Result<bool, StoreDown>, now: Instant) -> FleetStep {
        if !matches!(self.phase, Phase::Renewing) {
            return self.pending();
        }
        let renew_at = (renewed == Ok(true)).then(|| self.renew_at(now));
        self.to(Phase::Fetching {
            role: Role::Holder,
            renew_at,
        })
    }

    /// The answer to [`FleetStep::Fetch`], at `wall`: the token endpoint's token or error.
    /// `nonce` gives 12 fresh random bytes to seal the entry with (`None` if the random source
    /// failed: the token is then not shared); it is called only when an entry is written.
    pub fn handle_fetched(
        &mut self,
        fetched: Result<Token, Error>,
        wall: SystemTime,
        nonce: impl FnOnce() -> Option<[u8; NONCE_LEN]>,
    ) -> FleetStep {
        let Phase::Fetching { role, .. } = self.phase else {
            return self.pending();
        };
        let write = match (&fetched, role) {
            (_, Role::Direct) => None,
            (Ok(token), _) => self.config.token_entry(token, wall, nonce),
            // Shared, so that the fleet asks once per back-off, not once per replica.
            (Err(error), _) => self.config.failure_entry(error, wall, nonce),
        };
        // A failure releases the lease too: the next process tries at once.
        let release = role == Role::Holder;
        self.done(fetched, TokenOrigin::Fetch, Afterwards { write, release })
    }
}
