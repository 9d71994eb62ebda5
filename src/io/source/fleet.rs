//! The fleet-wide fetch: the second level of a [`TokenSource`](crate::TokenSource)'s cache,
//! shared through a [`TokenStore`] by every process that asks for the same token.
//!
//! The source calls its fetch only on a first-level miss or a due refresh (a hit never
//! touches the store). This wraps that fetch with the driver of the core's
//! [`FleetMachine`](crate::FleetMachine), which decides everything (read, lease,
//! wait, fetch, write, release: see `store/fleet.rs`); the driver only performs each step,
//! each store call within [`SharedCache::with_store_timeout`] (a call that fails or takes
//! longer means "no store", with a `tracing` warning), reads the clocks and draws the
//! randomness.
//!
//! Entries hold an absolute wall-clock expiry, so replicas must agree on the time to well
//! within the refresh lead (the smaller of 60 s and 10% of a token's lifetime): NTP-synced
//! hosts agree within milliseconds. A replica whose clock runs behind by `d` could use a token
//! up to `d` past its expiry.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::cache::policy::CachePolicy;
use crate::error::Error;
use crate::io::environment::{fill_random, monotonic_now, random_bytes, random_word, wall_now};
use crate::observe;
use crate::request::TokenRequest;
use crate::secret::AccessToken;
use crate::store::encryption_key::StoreEncryptionKey;
use crate::store::entry::EntrySealing;
use crate::store::fleet::{
    Afterwards, FleetConfig, FleetMachine, FleetStep, StoreDown, TokenOrigin,
};
use crate::store::key::StoreKey;
use crate::store::{StoreError, TokenStore};
use crate::token::Token;

/// A second-level token cache shared by a fleet: a [`TokenStore`] (such as
/// [`RedisStore`](crate::shared_cache::RedisStore)), the namespace the fleet's entries live under, and how
/// they are sealed. Give it to [`TokenSource::with_store`](crate::TokenSource::with_store):
/// the whole fleet then sends one token request per token lifetime, and a store that is down
/// or slow only costs each process its own fetches, never an error.
///
/// Every process of the fleet needs the same namespace and [`StoreEncryptionKey`]. Cheap to
/// clone (clones share the store and its connection).
///
/// - A first-level hit never touches the store. On a miss or a due refresh the process reads
///   the store; a fresh entry is its token, with the lifetime that remains of it.
/// - Otherwise one process takes the request's lease ([`with_lease_ttl`](Self::with_lease_ttl))
///   and fetches, renewing the lease while its fetch lasts (if the store can:
///   [`TokenStore::renew_lease`]); the others poll the store
///   ([`with_poll_interval`](Self::with_poll_interval)) for its entry, trying the lease again
///   each time, so a holder that died is replaced when its lease expires, and fetch by
///   themselves after [`with_wait`](Self::with_wait) (half the fetch timeout by default, less
///   a random tenth).
/// - The process that fetched gets its token at once: writing the entry and releasing the
///   lease go on in a task of their own. A holder whose caller gives up (drops its future)
///   releases its lease the same way, so that another process fetches at once.
/// - Entries expire when the token first comes due for refresh by the source's
///   [`CachePolicy`], so no replica reads a token about to expire.
/// - Every store call is bounded ([`with_store_timeout`](Self::with_store_timeout)); a store
///   that fails, stalls or is full means each process fetches for itself, with a `tracing`
///   warning, and sharing resumes once the store answers.
/// - An entry holds the token's absolute expiry in wall-clock time: the fleet's clocks must
///   agree to well within the refresh lead (the smaller of 60 s and 10% of the lifetime by
///   default). NTP-synced hosts agree within milliseconds; a replica whose clock is `d` behind
///   could present a token up to `d` after it expired.
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "shared-cache")))]
pub struct SharedCache {
    store: Arc<dyn TokenStore>,
    namespace: Arc<str>,
    /// Names the entries (always) and seals them (unless in clear).
    key: StoreEncryptionKey,
    sealing: EntrySealing,
    store_timeout: Duration,
    lease_ttl: Duration,
    /// The caller's wait, if set: by default, half the source's fetch timeout.
    wait: Option<Duration>,
    poll_interval: Duration,
}

impl SharedCache {
    /// The longest entry read from or written to the store: 64 KiB, room for a large JWT and
    /// its extras. A longer value is treated as absent.
    pub const MAX_ENTRY_LEN: usize = crate::store::entry::MAX_ENTRY_LEN;

    /// The default bound on each store call: 250 ms. A store on the same network answers in
    /// about a millisecond; one that takes longer is treated as down for this fetch.
    pub const STORE_TIMEOUT: Duration = Duration::from_millis(250);
    /// The default time to live of a lease: 5 s, longer than a token request takes. A holder
    /// that dies frees the request for another process after at most this long.
    pub const LEASE_TTL: Duration = FleetConfig::LEASE_TTL;
    /// The default longest wait for another process's fetch: 15 s, half the default
    /// [`CachePolicy::fetch_timeout`] (with another policy, half of its fetch timeout). A
    /// waiter waits only while the lease is held, and a holder renews it while it fetches.
    pub const WAIT: Duration = FleetConfig::WAIT;
    /// The default interval between a waiter's reads of the store: 50 ms.
    pub const POLL_INTERVAL: Duration = FleetConfig::POLL_INTERVAL;

    /// A shared cache in `store` under `namespace`, its entries encrypted by AES-256-GCM under
    /// `key` (a fresh random nonce per write, the entry's store key as associated data).
    #[must_use]
    ///
    /// The key also names the entries: a store key is a keyed digest of the request, its
    /// credential included ([`StoreKey`]), so replicas share a token only when they hold the
    /// same credential, and the store holds nothing to test a guessed secret against.
    pub fn new(store: impl TokenStore + 'static, namespace: &str, key: StoreEncryptionKey) -> Self {
        let sealing = EntrySealing::Encrypted(key.clone());
        Self::with_sealing(Arc::new(store), namespace, key, sealing)
    }

    /// A shared cache that stores tokens **in clear**: whoever can read the store (a replica,
    /// a backup, a `MONITOR`) can use every token in it. Only for a store nobody else reads;
    /// prefer [`new`](Self::new). A cache that encrypts never serves an entry stored in clear.
    ///
    /// `key` seals nothing here, but still names the entries ([`StoreKey`]): a store key holds
    /// a digest of the credential, which must be keyed so that it cannot be tested against
    /// guessed secrets.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] for a store whose connection is not private
    /// ([`TokenStore::is_private`]: a `RedisStore` opened with
    /// [`RedisStore::insecure_plaintext`](crate::shared_cache::RedisStore::insecure_plaintext)
    /// to another host): tokens in clear over a network in clear are anyone's.
    pub fn insecure_plaintext(
        store: impl TokenStore + 'static,
        namespace: &str,
        key: StoreEncryptionKey,
    ) -> Result<Self, StoreError> {
        if !store.is_private() {
            return Err(StoreError::InvalidUrl(
                "tokens in clear are not sent over a connection in clear: use rediss:// (or a loopback host), or SharedCache::new, which seals them"
                    .into(),
            ));
        }
        Ok(Self::with_sealing(
            Arc::new(store),
            namespace,
            key,
            EntrySealing::InsecurePlaintext,
        ))
    }

    fn with_sealing(
        store: Arc<dyn TokenStore>,
        namespace: &str,
        key: StoreEncryptionKey,
        sealing: EntrySealing,
    ) -> Self {
        Self {
            store,
            namespace: namespace.into(),
            key,
            sealing,
            store_timeout: Self::STORE_TIMEOUT,
            lease_ttl: Self::LEASE_TTL,
            wait: None,
            poll_interval: Self::POLL_INTERVAL,
        }
    }

    /// The bound on each store call instead of [`STORE_TIMEOUT`](Self::STORE_TIMEOUT).
    #[must_use]
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The lease's time to live instead of [`LEASE_TTL`](Self::LEASE_TTL) (at least 1 ms).
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The longest wait for another process's fetch instead of [`WAIT`](Self::WAIT) (half the
    /// source's [`CachePolicy::fetch_timeout`]), after which a process fetches by itself. The
    /// source caps it at half its fetch timeout, so that the fetch after a wait still has
    /// time.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The interval between a waiter's reads of the store instead of [`POLL_INTERVAL`](Self::POLL_INTERVAL) (at
    /// least 1 ms).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("namespace", &self.namespace)
            .field("sealing", &self.sealing)
            .field("store_timeout", &self.store_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("wait", &self.wait)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// A lease holder's name: 16 random bytes in hex, so that a process releases only its own
/// lease.
fn holder_id() -> String {
    random_bytes::<16>()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A fresh nonce for an entry's seal, or `None` without the operating system's random source
/// (better not to share than to reuse a nonce).
fn nonce() -> Option<[u8; 12]> {
    let mut nonce = [0_u8; 12];
    fill_random(&mut nonce).ok()?;
    Some(nonce)
}

/// One source's fleet fetch: the store, its timeout, and the fleet machine's configuration.
/// It drives a [`FleetMachine`] per fetch, performing each step under the store timeout.
pub(crate) struct FleetFetch {
    store: Arc<dyn TokenStore>,
    store_timeout: Duration,
    config: FleetConfig,
    /// The access token this process last got. The source fetches again only when its token
    /// is missing, due or invalidated (an API refused it): the machine then takes an entry
    /// still holding that same token for no answer.
    last: Mutex<Option<AccessToken>>,
}

impl FleetFetch {
    /// The fleet fetch of `request`; `None` (after a warning) for a request whose credential
    /// no other process can name ([`StoreKey::new`]), which is not shared.
    pub(crate) fn new(
        shared: SharedCache,
        request: &TokenRequest,
        policy: CachePolicy,
    ) -> Option<Self> {
        let Some(key) = StoreKey::new(&shared.namespace, request, &shared.key) else {
            observe::store_not_shared(&shared.namespace);
            return None;
        };
        let mut config = FleetConfig::with_sealing(key, shared.sealing, policy)
            .with_lease_ttl(shared.lease_ttl)
            .with_poll_interval(shared.poll_interval);
        if let Some(wait) = shared.wait {
            config = config.with_wait(wait);
        }
        Some(Self {
            store: shared.store,
            store_timeout: shared.store_timeout,
            config,
            last: Mutex::new(None),
        })
    }

    /// A token for the request: from the store, from the process holding the lease, or from
    /// `fetch` (the token endpoint), shared through the store when it answers. The token is
    /// returned as soon as it is known: the entry's write and the lease's release go on in a
    /// task of their own, and so does the release if this future is dropped while it holds
    /// the lease.
    pub(crate) async fn token<F, Fut>(&self, fetch: F) -> Result<Token, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let holder = holder_id();
        let random = random_word();
        let mut machine = FleetMachine::new(&self.config, last, &holder, random);
        let key = self.config.key();
        let mut lease = LeaseGuard {
            afterwards: Afterwards::default(),
            store: self,
            holder: &holder,
        };
        let mut in_flight = None;
        let mut step = machine.start();
        let (outcome, origin) = loop {
            step = match step {
                FleetStep::Read => {
                    let read = self.call(self.store.read(key.entry())).await;
                    machine.handle_read(read, monotonic_now(), wall_now())
                }
                FleetStep::TakeLease { ttl } => {
                    let taken = self
                        .call(self.store.take_lease(key.lease(), &holder, ttl))
                        .await;
                    machine.handle_lease(taken, monotonic_now())
                }
                FleetStep::Sleep { until } => {
                    tokio::time::sleep_until(until.into()).await;
                    machine.handle_timeout(monotonic_now())
                }
                FleetStep::Fetch { renew_at } => {
                    let fetching = in_flight.get_or_insert_with(|| Box::pin(fetch()));
                    let fetched = match renew_at {
                        Some(at) => tokio::time::timeout_at(at.into(), fetching.as_mut())
                            .await
                            .ok(),
                        None => Some(fetching.as_mut().await),
                    };
                    match fetched {
                        Some(fetched) => machine.handle_fetched(fetched, wall_now(), nonce),
                        None => machine.handle_timeout(monotonic_now()),
                    }
                }
                FleetStep::RenewLease { ttl } => {
                    let renewed = self
                        .call(self.store.renew_lease(key.lease(), &holder, ttl))
                        .await;
                    machine.handle_renewed(renewed, monotonic_now())
                }
                FleetStep::Done {
                    outcome,
                    origin,
                    afterwards,
                } => {
                    lease.afterwards = afterwards;
                    break (outcome, origin);
                }
                // Not reached: the loop ends at `Done`. Were it, the endpoint answers.
                FleetStep::Ended => break (fetch().await, TokenOrigin::Fetch),
            };
            // Cancelled from here on, a holder's future releases its lease in a task.
            lease.afterwards.release = machine.holds_lease();
        };
        drop(lease);
        let token = outcome?;
        if origin == TokenOrigin::Store {
            observe::store_hit(key.entry());
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(token.access_token().clone());
        Ok(token)
    }

    /// Runs one store call within the store timeout; [`StoreDown`] (after a warning) if it
    /// failed or timed out.
    async fn call<T>(&self, call: crate::store::StoreFuture<'_, T>) -> Result<T, StoreDown> {
        bounded(self.store_timeout, self.config.key().entry(), call).await
    }
}

/// Runs one store call for the entry `key` within `timeout`; [`StoreDown`] (after a warning)
/// if it failed or timed out.
async fn bounded<T>(
    timeout: Duration,
    key: &str,
    call: crate::store::StoreFuture<'_, T>,
) -> Result<T, StoreDown> {
    let outcome = tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(StoreError::Timeout(timeout)));
    outcome.map_err(|error| {
        observe::store_failed(key, &error);
        StoreDown
    })
}

/// What the store still needs when a fetch ends or is dropped: done in a task of its own, so
/// that nobody waits for it, each call within the store timeout.
struct LeaseGuard<'a> {
    afterwards: Afterwards,
    store: &'a FleetFetch,
    holder: &'a str,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        let Afterwards { write, release } = std::mem::take(&mut self.afterwards);
        if write.is_none() && !release {
            return;
        }
        let store = Arc::clone(&self.store.store);
        let timeout = self.store.store_timeout;
        let key = self.store.config.key().clone();
        let holder = self.holder.to_owned();
        let work = async move {
            if let Some((value, ttl)) = write {
                let _ = bounded(timeout, key.entry(), store.write(key.entry(), &value, ttl)).await;
            }
            if release {
                let call = store.release_lease(key.lease(), &holder);
                let _ = bounded(timeout, key.entry(), call).await;
            }
        };
        // Outside a runtime (not reached: the source runs in one) the lease expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn(work));
        }
    }
}
