//! The two-level cache's rules on a simulated store whose reads, writes and leases fail,
//! stall or return stale or tampered data: callers always get a valid token that the fetch
//! really issued, a first-level hit never touches the store, and a healthy store makes
//! replicas share one fetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use client_credentials::shared_cache::{
    SharedCache, StoreEncryptionKey, StoreError, StoreFuture, StoreKey, TokenStore,
};
use client_credentials::{
    CachePolicy, ClientCredentials, ClientSecret, Token, TokenRequest, TokenSource, TokenUrl,
};
use proptest::prelude::*;

/// How the simulated store answers its next calls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Healthy,
    /// Every call fails.
    Fail,
    /// Every call takes longer than the store timeout.
    Stall,
    /// Reads return the oldest value ever written under the key, whatever its expiry.
    Stale,
    /// Reads return the value with one byte flipped.
    Tampered,
    /// Writes and releases take longer than the store timeout; reads and leases answer.
    StallWrites,
}

/// An in-memory store with expiring values and leases, and a behaviour the test switches.
#[derive(Default)]
struct SimStore {
    state: Mutex<SimState>,
    calls: AtomicUsize,
}

#[derive(Default)]
struct SimState {
    behaviour: Option<Behaviour>,
    values: HashMap<String, (Vec<u8>, Instant)>,
    first_written: HashMap<String, Vec<u8>>,
    leases: HashMap<String, (String, Instant)>,
}

const STORE_TIMEOUT: Duration = Duration::from_millis(20);

#[allow(clippy::disallowed_methods)] // The simulated store keeps its own time, as Redis does.
fn instant() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods)] // The fetch stands in for the server, which reads the clock.
fn wall() -> SystemTime {
    SystemTime::now()
}

impl SimStore {
    fn set(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = Some(behaviour);
    }

    fn behaviour(&self) -> Behaviour {
        self.state
            .lock()
            .unwrap()
            .behaviour
            .unwrap_or(Behaviour::Healthy)
    }

    /// The behaviour's failure or stall, before any call does its work.
    async fn enter(&self) -> Result<Behaviour, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.behaviour() {
            Behaviour::StallWrites => Ok(Behaviour::Healthy),
            Behaviour::Fail => Err(StoreError::Failed("the simulated store is down".into())),
            Behaviour::Stall => {
                tokio::time::sleep(STORE_TIMEOUT * 5).await;
                Err(StoreError::Failed("stalled".into()))
            }
            other => Ok(other),
        }
    }
}

/// When a value or lease set at `now` for `ttl` expires: as Redis does, a time to live too
/// long for the clock is as good as forever.
fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3_600))
}

impl SimStore {
    /// For `StallWrites`: a write or a release that outlasts any store timeout of these tests.
    async fn stall_writes(&self) -> Result<(), StoreError> {
        if self.behaviour() == Behaviour::StallWrites {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Err(StoreError::Failed("stalled".into()));
        }
        Ok(())
    }

    /// Whether anybody holds a lease now.
    fn leased(&self) -> bool {
        let now = instant();
        self.state
            .lock()
            .unwrap()
            .leases
            .values()
            .any(|(_, until)| now < *until)
    }
}

impl TokenStore for SimStore {
    fn read<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let behaviour = self.enter().await?;
            let state = self.state.lock().unwrap();
            Ok(match behaviour {
                Behaviour::Stale => state.first_written.get(key).cloned(),
                _ => state
                    .values
                    .get(key)
                    .filter(|(_, until)| instant() < *until)
                    .map(|(value, _)| value.clone())
                    .map(|mut value| {
                        if behaviour == Behaviour::Tampered {
                            let last = value.len() - 1;
                            value[last] ^= 1;
                        }
                        value
                    }),
            })
        })
    }

    fn write<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.enter().await?;
            self.stall_writes().await?;
            let mut state = self.state.lock().unwrap();
            state
                .first_written
                .entry(key.to_owned())
                .or_insert_with(|| value.to_vec());
            state
                .values
                .insert(key.to_owned(), (value.to_vec(), expiry(instant(), ttl)));
            Ok(())
        })
    }

    fn take_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.state.lock().unwrap();
            let now = instant();
            if state.leases.get(key).is_some_and(|(_, until)| now < *until) {
                return Ok(false);
            }
            state
                .leases
                .insert(key.to_owned(), (holder.to_owned(), expiry(now, ttl)));
            Ok(true)
        })
    }

    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.enter().await?;
            self.stall_writes().await?;
            let mut state = self.state.lock().unwrap();
            if state
                .leases
                .get(key)
                .is_some_and(|(owner, _)| owner == holder)
            {
                state.leases.remove(key);
            }
            Ok(())
        })
    }

    fn renew_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.state.lock().unwrap();
            let now = instant();
            match state.leases.get_mut(key) {
                Some((owner, until)) if owner == holder && now < *until => {
                    *until = expiry(now, ttl);
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }
}

/// Every token the simulated server issued, with when it really expires.
#[derive(Default)]
struct Issued {
    expiry: Mutex<HashMap<String, SystemTime>>,
}

const LIFETIME_SECS: u64 = 1;

fn request() -> TokenRequest {
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

/// A replica: its own first-level cache, fetching from the simulated server, sharing `store`.
fn replica(store: &Arc<SimStore>, issued: &Arc<Issued>) -> TokenSource {
    replica_with(
        store,
        issued,
        Duration::ZERO,
        |policy| policy,
        |shared| shared,
    )
}

/// A replica whose server answers after `delay`, its policy and shared cache set by `policy`
/// and `shared` after the tests' defaults.
fn replica_with(
    store: &Arc<SimStore>,
    issued: &Arc<Issued>,
    delay: Duration,
    policy: impl FnOnce(CachePolicy) -> CachePolicy,
    shared: impl FnOnce(SharedCache) -> SharedCache,
) -> TokenSource {
    let issued = Arc::clone(issued);
    let source = TokenSource::from_fn(request(), move |request| {
        let issued = Arc::clone(&issued);
        async move {
            let sent_at = wall();
            tokio::time::sleep(delay).await;
            let mut expiry = issued.expiry.lock().unwrap();
            let access_token = format!("token-{}", expiry.len());
            expiry.insert(access_token.clone(), sent_at + Duration::from_secs(LIFETIME_SECS));
            drop(expiry);
            let body = format!(
                r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":{LIFETIME_SECS}}}"#
            );
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
            request.parse_response(&response, sent_at)
        }
    })
    .with_policy(policy(
        CachePolicy::new()
            .with_fetch_timeout(Duration::from_secs(2))
            .with_invalidate_min_age(Duration::ZERO),
    ));
    let defaults = SharedCache::new(
        StoreArc(Arc::clone(store)),
        "test",
        StoreEncryptionKey::new([3; 32]),
    )
    .with_store_timeout(STORE_TIMEOUT)
    .with_lease_ttl(Duration::from_millis(200))
    .with_wait(Duration::from_millis(300))
    .with_poll_interval(Duration::from_millis(5));
    source.with_store(shared(defaults))
}

/// The shared store behind each replica's `SharedCache`.
struct StoreArc(Arc<SimStore>);

impl TokenStore for StoreArc {
    fn read<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.0.read(key)
    }
    fn write<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        self.0.write(key, value, ttl)
    }
    fn take_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.0.take_lease(key, holder, ttl)
    }
    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        self.0.release_lease(key, holder)
    }
    fn renew_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.0.renew_lease(key, holder, ttl)
    }
}

/// Law: the token was issued by the server and has not expired by the server's clock.
fn check(issued: &Issued, token: &Token) -> Result<(), TestCaseError> {
    let expiry = issued.expiry.lock().unwrap();
    let Some(real_expiry) = expiry.get(token.access_token().secret()) else {
        return Err(TestCaseError::fail(
            "a token the server never issued was served",
        ));
    };
    prop_assert!(wall() < *real_expiry, "an expired token was served");
    Ok(())
}

#[derive(Debug, Clone)]
enum Step {
    /// Replica `n` asks for a token.
    Call(usize),
    /// Replica `n` invalidates the token it last got, as after a 401.
    Invalidate(usize),
    /// The store behaves so from now on.
    Store(Behaviour),
    Sleep(Duration),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3_usize).prop_map(Step::Call),
        1 => (0..3_usize).prop_map(Step::Invalidate),
        2 => prop_oneof![
            Just(Behaviour::Healthy),
            Just(Behaviour::Fail),
            Just(Behaviour::Stall),
            Just(Behaviour::Stale),
            Just(Behaviour::Tampered),
        ]
        .prop_map(Step::Store),
        2 => (0..400_u64).prop_map(|ms| Step::Sleep(Duration::from_millis(ms))),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Laws, whatever the store does: every call gets a token, the server issued it, it has not
    /// expired; a tampered or stale entry is never served.
    #[test]
    fn every_caller_gets_a_valid_issued_token_whatever_the_store_does(
        steps in proptest::collection::vec(step(), 1..24)
    ) {
        runtime().block_on(async {
            let store = Arc::new(SimStore::default());
            let issued = Arc::new(Issued::default());
            let replicas: Vec<TokenSource> = (0..3).map(|_| replica(&store, &issued)).collect();
            let mut last: Vec<Option<Arc<Token>>> = vec![None; replicas.len()];
            for step in &steps {
                match step {
                    Step::Call(n) => {
                        let token = replicas[*n].token().await;
                        prop_assert!(token.is_ok(), "a call failed: {token:?}");
                        let token = token.unwrap();
                        check(&issued, &token)?;
                        last[*n] = Some(token);
                    }
                    Step::Invalidate(n) => {
                        if let Some(token) = &last[*n] {
                            replicas[*n].invalidate(token);
                        }
                    }
                    Step::Store(behaviour) => store.set(*behaviour),
                    Step::Sleep(pause) => tokio::time::sleep(*pause).await,
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn a_first_level_hit_never_touches_the_store() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        let source = replica(&store, &issued);
        let first = source.token().await.unwrap();
        // The write and the release go on in the background: let them land.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let calls = store.calls.load(Ordering::SeqCst);
        assert!(
            calls >= 3,
            "the miss read, leased and wrote the store: {calls} calls"
        );
        for _ in 0..100 {
            let token = source.token().await.unwrap();
            assert_eq!(token.access_token().secret(), first.access_token().secret());
        }
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            calls,
            "a hit called the store"
        );
    });
}

#[test]
fn replicas_on_a_healthy_store_share_one_fetch_and_fetch_alone_when_it_is_down() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        let replicas: Vec<TokenSource> = (0..3).map(|_| replica(&store, &issued)).collect();
        let tokens = futures_join(&replicas).await;
        assert_eq!(
            issued.expiry.lock().unwrap().len(),
            1,
            "one fetch for three replicas"
        );
        assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
        // The entry's lifetime is what remained of it: a replica never holds it longer.
        let fresh: Vec<TokenSource> = (0..3).map(|_| replica(&store, &issued)).collect();
        store.set(Behaviour::Fail);
        futures_join(&fresh).await;
        assert_eq!(
            issued.expiry.lock().unwrap().len(),
            4,
            "each replica fetched by itself"
        );
        store.set(Behaviour::Healthy);
        let again: Vec<TokenSource> = (0..3).map(|_| replica(&store, &issued)).collect();
        futures_join(&again).await;
        assert_eq!(
            issued.expiry.lock().unwrap().len(),
            4,
            "sharing resumed: no new fetch"
        );
    });
}

/// The replicas' tokens, asked for at once.
async fn futures_join(replicas: &[TokenSource]) -> Vec<String> {
    let tasks: Vec<_> = replicas
        .iter()
        .cloned()
        .map(|source| tokio::spawn(async move { source.token().await.unwrap() }))
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap().access_token().secret().to_owned());
    }
    tokens
}

#[test]
fn an_invalidated_token_is_replaced_for_the_fleet_not_read_back_from_the_store() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        let first = replica(&store, &issued);
        let refused = first.token().await.unwrap();
        assert!(first.invalidate(&refused), "the API refused it: dropped");
        let replaced = first.token().await.unwrap();
        assert_ne!(
            replaced.access_token().secret(),
            refused.access_token().secret(),
            "the refused token came back from the store"
        );
        assert_eq!(issued.expiry.lock().unwrap().len(), 2);
        // Another replica now reads the replacement, without a fetch, once the write that
        // goes on in the background has landed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = replica(&store, &issued).token().await.unwrap();
        assert_eq!(
            other.access_token().secret(),
            replaced.access_token().secret()
        );
        assert_eq!(issued.expiry.lock().unwrap().len(), 2);
    });
}

#[test]
fn a_holder_renews_its_lease_so_a_slow_endpoint_is_asked_once() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        // A fetch three times as long as the lease; the others wait up to a second.
        let mut replicas: Vec<TokenSource> = (0..4)
            .map(|_| {
                replica_with(
                    &store,
                    &issued,
                    Duration::from_millis(600),
                    |policy| policy,
                    |shared| shared.with_wait(Duration::from_secs(1)),
                )
            })
            .collect();
        let first = replicas.remove(0);
        let holder = tokio::spawn(async move { first.token().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let others = replicas;
        let tokens = futures_join(&others).await;
        let held = holder.await.unwrap();
        assert_eq!(
            issued.expiry.lock().unwrap().len(),
            1,
            "the lease outlived its time to live while its holder fetched"
        );
        assert!(
            tokens
                .iter()
                .all(|token| token == held.access_token().secret())
        );
    });
}

#[test]
fn a_holder_returns_its_token_without_waiting_for_a_stalled_store_write_and_release() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        let timeout = Duration::from_millis(500);
        let source = replica_with(
            &store,
            &issued,
            Duration::ZERO,
            |policy| policy,
            |shared| shared.with_store_timeout(timeout),
        );
        store.set(Behaviour::StallWrites);
        let started = instant();
        let token = source.token().await;
        let took = started.elapsed();
        assert!(token.is_ok());
        assert!(
            took < timeout,
            "the caller waited {took:?} for the store's write and release"
        );
    });
}

#[test]
fn a_holder_whose_caller_gives_up_releases_its_lease() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        // A fetch that never ends, under a lease that would outlive the test.
        let source = replica_with(
            &store,
            &issued,
            Duration::from_secs(3_600),
            |policy| policy.with_fetch_timeout(Duration::from_secs(3_600)),
            |shared| shared.with_lease_ttl(Duration::from_secs(60)),
        );
        let caller = tokio::spawn(async move { source.token().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            store.leased(),
            "the caller holds the lease while it fetches"
        );
        caller.abort();
        let _ = caller.await;
        let deadline = instant() + Duration::from_secs(1);
        while store.leased() {
            assert!(
                instant() < deadline,
                "the lease of a cancelled holder was not released"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn durations_of_any_size_never_panic() {
    runtime().block_on(async {
        let store = Arc::new(SimStore::default());
        let issued = Arc::new(Issued::default());
        let replicas: Vec<TokenSource> = (0..2)
            .map(|_| {
                replica_with(
                    &store,
                    &issued,
                    Duration::ZERO,
                    |policy| policy.with_fetch_timeout(Duration::MAX),
                    |shared| {
                        shared
                            .with_store_timeout(Duration::MAX)
                            .with_lease_ttl(Duration::MAX)
                            .with_wait(Duration::MAX)
                            .with_poll_interval(Duration::from_millis(5))
                    },
                )
            })
            .collect();
        // Another process holds the lease for a moment: the replica waits, then takes it.
        let taken = store
            .take_lease(&leased_key(), "another-process", Duration::from_millis(100))
            .await;
        assert_eq!(taken.ok(), Some(true));
        assert!(replicas[0].token().await.is_ok());
        // Once the background write has landed, the other reads the store.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(replicas[1].token().await.is_ok(), "and reads the store");
        assert_eq!(issued.expiry.lock().unwrap().len(), 1);
    });
}

/// The lease key of the replicas' request.
fn leased_key() -> String {
    let key = StoreKey::new("test", &request(), &StoreEncryptionKey::new([3; 32])).unwrap();
    key.lease().to_owned()
}
