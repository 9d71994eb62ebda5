//! The fleet-wide fetch: the second level of a [`TokenSource`](crate::TokenSource)'s cache,
//! shared through a [`TokenStore`] by every process that asks for the same token.
//!
//! The source calls its fetch only on a first-level miss or a due refresh (a hit never
//! touches the store). This wraps that fetch:
//!
//! 1. read the store: a fresh entry is the token, with the lifetime that remains of it;
//! 2. otherwise take the request's lease (`SET … NX PX`): the holder fetches from the token
//!    endpoint, writes the sealed entry to expire when the token first comes due for refresh,
//!    and releases the lease;
//! 3. a process that finds the lease held polls the store for the holder's entry, trying the
//!    lease again each time (a holder that died frees it when its time to live ends), and
//!    after [`SharedCache::with_wait`] fetches by itself;
//! 4. any store call that fails or takes longer than [`SharedCache::with_store_timeout`]
//!    means "no store": the process fetches directly, with a `tracing` warning, and the next
//!    fetch tries the store again, so sharing resumes by itself.
//!
//! Entries hold an absolute wall-clock expiry, so replicas must agree on the time to well
//! within the refresh lead (the smaller of 60 s and 10% of a token's lifetime): NTP-synced
//! hosts agree within milliseconds. A replica whose clock runs behind by `d` could use a token
//! up to `d` past its expiry.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::policy::CachePolicy;
use crate::error::Error;
use crate::observe;
use crate::request::TokenRequest;
use crate::secret::AccessToken;
use crate::store::encryption_key::StoreEncryptionKey;
use crate::store::entry::{EntrySealing, Refused, open, seal};
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
///   and fetches; the others poll the store ([`with_poll_interval`](Self::with_poll_interval))
///   for its entry, trying the lease again each time, so a holder that died is replaced when
///   its lease expires, and fetch by themselves after [`with_wait`](Self::with_wait).
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
    wait: Duration,
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
    pub const LEASE_TTL: Duration = Duration::from_secs(5);
    /// The default longest wait for another process's fetch: 8 s, so that a waiter outlives a
    /// dead holder's lease and takes it over rather than every waiter fetching at once.
    pub const WAIT: Duration = Duration::from_secs(8);
    /// The default interval between a waiter's reads of the store: 50 ms.
    pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

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
    #[must_use]
    pub fn insecure_plaintext(
        store: impl TokenStore + 'static,
        namespace: &str,
        key: StoreEncryptionKey,
    ) -> Self {
        Self::with_sealing(
            Arc::new(store),
            namespace,
            key,
            EntrySealing::InsecurePlaintext,
        )
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
            wait: Self::WAIT,
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
        self.lease_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The longest wait for another process's fetch instead of [`WAIT`](Self::WAIT), after which a process
    /// fetches by itself. The source caps it at half its [`CachePolicy::fetch_timeout`], so
    /// that the fetch after a wait still has time.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The interval between a waiter's reads of the store instead of [`POLL_INTERVAL`](Self::POLL_INTERVAL) (at
    /// least 1 ms).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
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

#[allow(clippy::disallowed_methods)] // The fleet fetch does IO, so it reads the clock.
fn wall_now() -> SystemTime {
    SystemTime::now()
}

#[allow(clippy::disallowed_methods)] // The fleet fetch does IO, so it reads the clock.
fn now() -> Instant {
    Instant::now()
}

/// A lease holder's name: 16 random bytes in hex, so that a process releases only its own
/// lease. Without the operating system's random source, std's per-process random keys.
fn holder_id() -> String {
    let mut bytes = [0_u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        bytes[..8].copy_from_slice(&state.hash_one(1_u8).to_le_bytes());
        bytes[8..].copy_from_slice(&state.hash_one(2_u8).to_le_bytes());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One source's fleet fetch: its shared cache, its store key, and its policy's timing.
pub(crate) struct FleetFetch {
    shared: SharedCache,
    key: StoreKey,
    policy: CachePolicy,
    /// The access token this process last got. The source fetches again only when its token
    /// is missing, due or invalidated (an API refused it); an entry still holding that same
    /// token is then no answer: it is fetched anew and replaced for the whole fleet.
    last: Mutex<Option<AccessToken>>,
}

/// What a read of the store found.
enum Found {
    Token(Token),
    Nothing,
    StoreDown,
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
        let mut shared = shared;
        shared.wait = shared.wait.min(policy.fetch_timeout() / 2);
        Some(Self {
            shared,
            key,
            policy,
            last: Mutex::new(None),
        })
    }

    /// A token for the request: from the store, from the process holding the lease, or from
    /// `fetch` (the token endpoint), shared through the store when it answers.
    pub(crate) async fn token<F, Fut>(&self, fetch: F) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        let token = self.shared_token(fetch).await?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(token.access_token().clone());
        Ok(token)
    }

    async fn shared_token<F, Fut>(&self, fetch: F) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        match self.read().await {
            Found::Token(token) => return Ok(token),
            Found::StoreDown => return fetch().await,
            Found::Nothing => {}
        }
        let holder = holder_id();
        let deadline = now() + self.shared.wait;
        loop {
            match self
                .call(self.shared.store.take_lease(
                    self.key.lease(),
                    &holder,
                    self.shared.lease_ttl,
                ))
                .await
            {
                Some(true) => return self.fetch_as_holder(fetch, &holder).await,
                Some(false) => {}
                None => return fetch().await,
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                observe::store_wait_expired(self.key.entry(), self.shared.wait);
                let fetched = fetch().await?;
                self.write(&fetched).await;
                return Ok(fetched);
            }
            tokio::time::sleep(self.shared.poll_interval.min(left)).await;
            match self.read().await {
                Found::Token(token) => return Ok(token),
                Found::StoreDown => return fetch().await,
                Found::Nothing => {}
            }
        }
    }

    async fn fetch_as_holder<F, Fut>(&self, fetch: F, holder: &str) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        // Another holder may have stored a token between this process's read and its lease
        // (it releases the lease just after writing): read once more before fetching.
        if let Found::Token(token) = self.read().await {
            let _ = self
                .call(self.shared.store.release_lease(self.key.lease(), holder))
                .await;
            return Ok(token);
        }
        let fetched = fetch().await;
        if let Ok(token) = &fetched {
            self.write(token).await;
        }
        // A failure releases the lease too: the next process tries at once.
        let _ = self
            .call(self.shared.store.release_lease(self.key.lease(), holder))
            .await;
        fetched
    }

    /// Reads and opens the entry. An entry that does not open is absent (and overwritten by
    /// the next write), never served.
    async fn read(&self) -> Found {
        let Some(blob) = self.call(self.shared.store.read(self.key.entry())).await else {
            return Found::StoreDown;
        };
        let Some(blob) = blob else {
            return Found::Nothing;
        };
        match open(&self.shared.sealing, &self.key, &blob, wall_now()) {
            Ok(token) if self.is_last(&token) => Found::Nothing,
            Ok(token) => Found::Token(token),
            Err(Refused::Stale) => Found::Nothing,
            Err(Refused::Unreadable) => {
                observe::store_entry_refused(self.key.entry());
                Found::Nothing
            }
        }
    }

    /// Whether `token` is the one this process last got (and now wants replaced).
    fn is_last(&self, token: &Token) -> bool {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .is_some_and(|last| last.secret() == token.access_token().secret())
    }

    /// Seals and writes `token`'s entry, to expire when the token first comes due for refresh
    /// in any replica by the policy; a token already due is not shared.
    async fn write(&self, token: &Token) {
        let lifetime = token.expires_in().unwrap_or(self.policy.default_lifetime());
        let sent_at = token.sent_at();
        let (Some(expires_at), Some(fresh_until)) = (
            sent_at.checked_add(lifetime),
            sent_at.checked_add(self.policy.earliest_refresh(lifetime)),
        ) else {
            return;
        };
        let Ok(ttl) = fresh_until.duration_since(wall_now()) else {
            return;
        };
        if ttl < Duration::from_millis(1) {
            return;
        }
        let mut nonce = [0_u8; 12];
        if getrandom::fill(&mut nonce).is_err() {
            // No nonce that is certainly new: better not to share than to reuse one.
            return;
        }
        let Some(blob) = seal(
            &self.shared.sealing,
            &self.key,
            token,
            expires_at,
            fresh_until,
            nonce,
        ) else {
            return;
        };
        let _ = self
            .call(self.shared.store.write(self.key.entry(), &blob, ttl))
            .await;
    }

    /// Runs one store call within the store timeout; `None` (after a warning) if it failed.
    async fn call<T>(&self, call: crate::store::StoreFuture<'_, T>) -> Option<T> {
        let outcome = tokio::time::timeout(self.shared.store_timeout, call)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.shared.store_timeout)));
        match outcome {
            Ok(value) => Some(value),
            Err(error) => {
                observe::store_failed(self.key.entry(), &error);
                None
            }
        }
    }
}
