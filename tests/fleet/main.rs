//! A fleet on a real Redis: separate OS processes (this test binary run again as a replica,
//! selected by an environment variable), each with its own token source, sharing one Redis
//! and one embedded token server. Needs `REDIS_URL` (set by `scripts/test`, which starts
//! `redis-server`) and `redis-server` on the path for the outage test: without them the tests
//! fail, never skip.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client_credentials::shared_cache::{RedisStore, SharedCache, StoreEncryptionKey};
use client_credentials::{ClientCredentials, ClientSecret, TokenSource, TokenUrl};
use client_credentials_test_server::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Fault, TestServer};

/// The environment variables that make this binary a replica, and its settings.
const CHILD_TOKEN_URL: &str = "FLEET_CHILD_TOKEN_URL";
const CHILD_REDIS_URL: &str = "FLEET_CHILD_REDIS_URL";
const CHILD_NAMESPACE: &str = "FLEET_CHILD_NAMESPACE";
const CHILD_RUN_MS: &str = "FLEET_CHILD_RUN_MS";
const CHILD_LEASE_MS: &str = "FLEET_CHILD_LEASE_MS";
const CHILD_WAIT_MS: &str = "FLEET_CHILD_WAIT_MS";

/// One fleet test at a time: each runs many processes on timing, and CI has 2 cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fleet's key: every replica has the same.
const KEY: [u8; 32] = [0x5a; 32];

/// Runs an in-process fleet test on a runtime of its own, alone among the fleet tests.
fn alone_on_a_runtime<T>(test: impl std::future::Future<Output = T>) -> T {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::runtime::Runtime::new().unwrap().block_on(test)
}

#[allow(clippy::disallowed_methods)] // The tests stand in for the caller, who reads the clock.
fn unix_ms(time: Option<SystemTime>) -> u128 {
    time.unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[allow(clippy::disallowed_methods)] // The tests stand in for the caller, who reads the clock.
fn instant() -> Instant {
    Instant::now()
}

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL is not set: run the tests with scripts/test, which starts redis-server")
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default),
    )
}

/// A replica's token source: the demo client, its own first-level cache, the shared store.
fn replica_source(token_url: &str, redis_url: &str, namespace: &str) -> TokenSource {
    let client = ClientCredentials::new(
        TokenUrl::new(token_url).unwrap(),
        DEMO_CLIENT_ID,
        ClientSecret::new(DEMO_CLIENT_SECRET),
    );
    let request = client.token_request().scope("read").build().unwrap();
    let shared = SharedCache::new(
        RedisStore::new(redis_url).unwrap(),
        namespace,
        StoreEncryptionKey::new(KEY),
    )
    .with_lease_ttl(env_ms(CHILD_LEASE_MS, 5_000))
    .with_wait(env_ms(CHILD_WAIT_MS, 8_000))
    .with_poll_interval(Duration::from_millis(10));
    TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
        .with_store(shared)
}

/// The replica's life: a token every 10 ms for the run, reporting for each token the earliest
/// `sent_at` it saw (a fetch's send time, before the server issued it) and its last use, and
/// every error. The first line says how long the first token took.
fn run_replica(token_url: &str) {
    let redis_url = std::env::var(CHILD_REDIS_URL).unwrap();
    let namespace = std::env::var(CHILD_NAMESPACE).unwrap();
    let run = env_ms(CHILD_RUN_MS, 5_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let source = replica_source(token_url, &redis_url, &namespace);
        let start = instant();
        let mut seen: HashMap<String, (u128, u128)> = HashMap::new();
        let mut first = true;
        while start.elapsed() < run {
            match source.token().await {
                Ok(token) => {
                    if first {
                        println!("fleet-first {}", start.elapsed().as_millis());
                        first = false;
                    }
                    let sent_at = unix_ms(Some(token.sent_at()));
                    let now = unix_ms(None);
                    let entry = seen
                        .entry(token.access_token().secret().to_owned())
                        .or_insert((sent_at, now));
                    entry.0 = entry.0.min(sent_at);
                    entry.1 = entry.1.max(now);
                }
                Err(error) => println!("fleet-error {error}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for (token, (sent_at, last_used)) in seen {
            println!("fleet-token {token} {sent_at} {last_used}");
        }
    });
}

/// Runs the replica role if this process is one; whether it was.
fn as_replica() -> bool {
    match std::env::var(CHILD_TOKEN_URL) {
        Ok(url) => {
            run_replica(&url);
            true
        }
        Err(_) => false,
    }
}

/// In a replica, runs it and gives `None`; in the test itself, the lock that runs one fleet
/// test at a time.
fn coordinator() -> Option<std::sync::MutexGuard<'static, ()>> {
    if as_replica() {
        return None;
    }
    Some(
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// Starts a replica: this binary again, running only `test`, as a replica of `server`.
fn spawn_replica(
    test: &str,
    server: &TestServer,
    redis: &str,
    namespace: &str,
    run: Duration,
    extra: &[(&str, String)],
) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            &format!("{}{test}", test_prefix()),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_TOKEN_URL, server.token_url().to_string())
        .env(CHILD_REDIS_URL, redis)
        .env(CHILD_NAMESPACE, namespace)
        .env(CHILD_RUN_MS, run.as_millis().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in extra {
        command.env(name, value);
    }
    command
        .spawn()
        .expect("the test binary runs again as a replica")
}

/// The replicas' settings for a lease's time to live and a wait.
fn lease_and_wait(lease: Duration, wait: Duration) -> [(&'static str, String); 2] {
    [
        (CHILD_LEASE_MS, lease.as_millis().to_string()),
        (CHILD_WAIT_MS, wait.as_millis().to_string()),
    ]
}

/// Starts `count` replicas, as [`spawn_replica`] does.
fn spawn_replicas(
    count: usize,
    test: &str,
    server: &TestServer,
    redis: &str,
    namespace: &str,
    run: Duration,
    extra: &[(&str, String)],
) -> Vec<Child> {
    (0..count)
        .map(|_| spawn_replica(test, server, redis, namespace, run, extra))
        .collect()
}

/// The test names' module path as the harness knows it (empty: the tests are at the root).
fn test_prefix() -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::"),
        None => String::new(),
    }
}

/// What the replicas reported.
#[derive(Default, Debug)]
struct Report {
    /// Each token: the earliest `sent_at` any replica saw, and its last use by any replica.
    tokens: HashMap<String, (u128, u128)>,
    errors: Vec<String>,
    first_ms: Vec<u128>,
}

fn collect(children: Vec<Child>) -> Report {
    let mut report = Report::default();
    for mut child in children {
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // The harness may print the test's name on the same line, before the replica's.
            let Some(start) = line.find("fleet-") else {
                continue;
            };
            let line = line[start..].to_owned();
            let mut words = line.split(' ');
            match words.next() {
                Some("fleet-token") => {
                    let token = words.next().unwrap().to_owned();
                    let sent_at: u128 = words.next().unwrap().parse().unwrap();
                    let last_used: u128 = words.next().unwrap().parse().unwrap();
                    let entry = report.tokens.entry(token).or_insert((sent_at, last_used));
                    entry.0 = entry.0.min(sent_at);
                    entry.1 = entry.1.max(last_used);
                }
                Some("fleet-error") => report.errors.push(line),
                Some("fleet-first") => report.first_ms.push(words.next().unwrap().parse().unwrap()),
                _ => {}
            }
        }
        assert!(child.wait().unwrap().success(), "a replica failed");
    }
    report
}

/// No replica used a token past its expiry: its last use came before the earliest `sent_at`
/// of its fetch (which precedes its issue) plus its lifetime.
fn assert_never_expired(report: &Report, lifetime: Duration) {
    for (token, (sent_at, last_used)) in &report.tokens {
        assert!(
            *last_used < sent_at + lifetime.as_millis(),
            "token …{} used {} ms after its fetch, past its {lifetime:?} lifetime",
            &token[token.len() - 12..],
            last_used - sent_at
        );
    }
}

fn namespace(test: &str) -> String {
    format!("fleet-test-{test}-{}-{}", std::process::id(), unix_ms(None))
}

const LIFETIME: Duration = Duration::from_secs(2);
/// When a 2 s token first comes due for refresh by the default policy (lead: 10% of the
/// lifetime plus up to half again): 1.7 s after its fetch.
const REFRESH_CYCLE: Duration = Duration::from_millis(1_700);

#[test]
fn eight_processes_send_one_request_per_token_lifetime() {
    let Some(_serial) = coordinator() else {
        return;
    };
    let server = TestServer::builder().expires_in(Some(2)).start();
    let run = Duration::from_secs(7);
    let namespace = namespace("lifetime");
    let children = spawn_replicas(
        8,
        "eight_processes_send_one_request_per_token_lifetime",
        &server,
        &redis_url(),
        &namespace,
        run,
        &[],
    );
    let report = collect(children);
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert_eq!(report.first_ms.len(), 8, "every replica got a token");
    assert_never_expired(&report, LIFETIME);
    let served = server.requests_served();
    // One request per refresh cycle, plus the first: 8 replicas without sharing would send 8
    // times as many. The processes' start-up spreads over a few hundred milliseconds.
    let cycles = (run.as_millis() + 1_000) / REFRESH_CYCLE.as_millis() + 1;
    eprintln!(
        "fleet: 8 replicas over {run:?} of {LIFETIME:?} tokens: {served} requests ({} tokens)",
        report.tokens.len()
    );
    assert!(
        served as u128 <= cycles + 1,
        "{served} requests for at most {cycles} refresh cycles"
    );
    assert!(served >= 3, "{served} requests: tokens were refreshed");
}

/// A `redis-server` of the test's own, on a free port, without persistence.
struct OwnRedis {
    port: u16,
    process: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            process: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.process = Some(process);
        let deadline = instant() + Duration::from_secs(5);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(
                instant() < deadline,
                "redis-server did not listen within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn replicas_keep_getting_tokens_while_redis_is_down_and_share_again_when_it_is_back() {
    let Some(_serial) = coordinator() else {
        return;
    };
    let server = TestServer::builder().expires_in(Some(2)).start();
    let mut redis = OwnRedis::start();
    let namespace = namespace("outage");
    let run = Duration::from_secs(12);
    let children = spawn_replicas(
        8,
        "replicas_keep_getting_tokens_while_redis_is_down_and_share_again_when_it_is_back",
        &server,
        &redis.url(),
        &namespace,
        run,
        &[],
    );
    std::thread::sleep(Duration::from_secs(3));
    let before_outage = server.requests_served();
    redis.stop();
    std::thread::sleep(Duration::from_secs(3));
    let during_outage = server.requests_served() - before_outage;
    redis.restart();
    // The first refresh cycle after the restart may still find replicas reconnecting.
    std::thread::sleep(Duration::from_secs(2));
    let after_restart = server.requests_served();
    let report = collect(children);
    let since_restart = server.requests_served() - after_restart;
    eprintln!(
        "fleet outage: {before_outage} requests before, {during_outage} during 3 s down, {since_restart} in the last ~4 s back"
    );
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert_never_expired(&report, LIFETIME);
    assert!(
        during_outage >= 8,
        "each replica fetched by itself while Redis was down: {during_outage}"
    );
    assert!(
        since_restart <= 3,
        "sharing resumed after the restart: {since_restart} requests in ~4 s"
    );
}

#[test]
fn a_killed_lease_holder_frees_the_request_within_the_lease_ttl() {
    let Some(_serial) = coordinator() else {
        return;
    };
    let test = "a_killed_lease_holder_frees_the_request_within_the_lease_ttl";
    let server = TestServer::builder().expires_in(Some(60)).start();
    let namespace = namespace("holder");
    let lease = Duration::from_millis(1_500);
    let wait = Duration::from_secs(4);
    let settings = lease_and_wait(lease, wait);
    // The holder's request hangs for longer than the test; it is killed mid-fetch.
    server.push_fault(Fault::Delay(Duration::from_secs(30)));
    let mut holder = spawn_replica(
        test,
        &server,
        &redis_url(),
        &namespace,
        Duration::from_secs(20),
        &settings,
    );
    std::thread::sleep(Duration::from_millis(500));
    holder.kill().unwrap(); // SIGKILL
    let _ = holder.wait();
    let killed_at = instant();
    let waiters = spawn_replicas(
        3,
        test,
        &server,
        &redis_url(),
        &namespace,
        Duration::from_millis(300),
        &settings,
    );
    let report = collect(waiters);
    let took = killed_at.elapsed();
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert_eq!(report.first_ms.len(), 3);
    assert_eq!(
        report.tokens.len(),
        1,
        "one of the waiters fetched, the others used its token"
    );
    let slowest = *report.first_ms.iter().max().unwrap();
    eprintln!(
        "fleet holder killed: first tokens after {:?} ms (lease {lease:?}, wait bound {wait:?})",
        report.first_ms
    );
    assert!(
        slowest < lease.as_millis() + 500,
        "a waiter took over within the lease's ttl: {slowest} ms"
    );
    assert!(
        slowest < wait.as_millis(),
        "nobody waited longer than the bound"
    );
    assert!(took < wait + Duration::from_secs(2));
}

#[test]
fn redis_holds_nothing_in_clear_refuses_tampered_entries_and_never_mixes_requests() {
    alone_on_a_runtime(async {
        let server = TestServer::builder()
            .client(
                client_credentials_test_server::TestClient::new("second-client", "second-secret")
                    .scopes(["read", "write"])
                    .audiences(["https://a.example", "https://b.example"])
                    .resources(["https://r.example/"]),
            )
            .start();
        let url = redis_url();
        let namespace = namespace("at-rest");
        let http = client_credentials::reqwest::recommended_client();
        let demo = ClientCredentials::new(
            server.token_url(),
            DEMO_CLIENT_ID,
            ClientSecret::new(DEMO_CLIENT_SECRET),
        );
        let second = ClientCredentials::new(
            server.token_url(),
            "second-client",
            ClientSecret::new("second-secret"),
        );
        let requests = vec![
            demo.token_request().scope("read").build().unwrap(),
            second.token_request().scope("read").build().unwrap(),
            second.token_request().scope("write").build().unwrap(),
            second
                .token_request()
                .audience("https://a.example")
                .build()
                .unwrap(),
            second
                .token_request()
                .audience("https://b.example")
                .build()
                .unwrap(),
            second
                .token_request()
                .resource("https://r.example/")
                .build()
                .unwrap(),
        ];
        let source = |request: &client_credentials::TokenRequest| {
            let shared = SharedCache::new(
                RedisStore::new(&url).unwrap(),
                &namespace,
                StoreEncryptionKey::new(KEY),
            );
            TokenSource::reqwest(http.clone(), request.clone()).with_store(shared)
        };
        let mut tokens = Vec::new();
        for request in &requests {
            tokens.push(
                source(request)
                    .token()
                    .await
                    .unwrap()
                    .access_token()
                    .secret()
                    .to_owned(),
            );
        }
        assert_eq!(
            server.requests_served(),
            requests.len(),
            "one fetch per request"
        );
        // A fresh replica of each request gets that request's token from Redis, no other.
        for (request, token) in requests.iter().zip(&tokens) {
            let again = source(request).token().await.unwrap();
            assert_eq!(again.access_token().secret(), token);
        }
        assert_eq!(server.requests_served(), requests.len(), "all from Redis");

        // Every key and value under the namespace: no token, client id or secret in clear,
        // once the writes and releases that go on in the background have landed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{namespace}:*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(
            keys.len(),
            requests.len(),
            "one entry per request, leases released: {keys:?}"
        );
        for key in &keys {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await
                .unwrap();
            let value = String::from_utf8_lossy(&value);
            for clear in tokens.iter().map(String::as_str).chain([
                DEMO_CLIENT_ID,
                "second-client",
                DEMO_CLIENT_SECRET,
                "second-secret",
                "read",
                "example",
            ]) {
                assert!(
                    !key.contains(clear) && !value.contains(clear),
                    "{clear} in clear under {key}"
                );
            }
            // Token parts are long: no 16-character run of any token is in the value either.
            for token in &tokens {
                assert!(!value.contains(&token[token.len() - 16..]));
            }
        }

        // A tampered entry is refused (never served) and replaced by a fresh fetch.
        let key = &keys[0];
        let mut value: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        let last = value.len() - 1;
        value[last] ^= 1;
        let () = redis::cmd("SET")
            .arg(key)
            .arg(&value)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut connection)
            .await
            .unwrap();
        let owner = requests
            .iter()
            .zip(&tokens)
            .find(|(request, _)| {
                client_credentials::shared_cache::StoreKey::new(
                    &namespace,
                    request,
                    &StoreEncryptionKey::new(KEY),
                )
                .is_some_and(|store_key| store_key.entry() == key)
            })
            .unwrap();
        let fetched = source(owner.0).token().await.unwrap();
        assert_ne!(
            fetched.access_token().secret(),
            owner.1,
            "the tampered entry was not served"
        );
        assert_eq!(
            server.requests_served(),
            requests.len() + 1,
            "a fresh fetch replaced it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let replaced: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_ne!(replaced, value, "the tampered entry was overwritten");
        let reread = source(owner.0).token().await.unwrap();
        assert_eq!(
            reread.access_token().secret(),
            fetched.access_token().secret()
        );
    });
}

/// Hardening: the store key holds the credential. A replica that knows the victim's client id
/// but holds another secret, under the same namespace and fleet key, finds no entry: its
/// request reaches the token server, which refuses it with `invalid_client`.
#[test]
fn a_replica_with_the_wrong_secret_never_reads_the_victims_token_from_redis() {
    alone_on_a_runtime(async {
        let server = TestServer::start();
        let (url, namespace) = (redis_url(), namespace("credential"));
        let source = |secret: &str| {
            let client = ClientCredentials::new(
                server.token_url(),
                DEMO_CLIENT_ID,
                ClientSecret::new(secret),
            );
            let request = client.token_request().scope("read").build().unwrap();
            let shared = SharedCache::new(
                RedisStore::new(&url).unwrap(),
                &namespace,
                StoreEncryptionKey::new(KEY),
            );
            TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
                .with_store(shared)
        };
        let victim = source(DEMO_CLIENT_SECRET).token().await.unwrap();
        assert_eq!(server.token_requests(), 1);
        // A replica with the right secret shares the victim's entry: no request.
        let sharing = source(DEMO_CLIENT_SECRET).token().await.unwrap();
        assert_eq!(
            sharing.access_token().secret(),
            victim.access_token().secret()
        );
        assert_eq!(
            server.token_requests(),
            1,
            "the right secret shares the entry"
        );

        let refused = source("not-the-secret").token().await;
        assert_eq!(
            server.token_requests(),
            2,
            "the wrong secret reached the server"
        );
        match refused.as_ref().map_err(|error| &**error) {
            Err(client_credentials::Error::OAuth(error)) => {
                assert_eq!(
                    error.code(),
                    &client_credentials::error::ErrorCode::InvalidClient
                );
            }
            other => panic!("expected invalid_client, got {other:?}"),
        }
    });
}

#[test]
fn a_slow_token_endpoint_is_asked_once_by_the_whole_fleet() {
    let Some(_serial) = coordinator() else {
        return;
    };
    let test = "a_slow_token_endpoint_is_asked_once_by_the_whole_fleet";
    let server = TestServer::builder().expires_in(Some(60)).start();
    let namespace = namespace("slow");
    // The first request takes three lease lifetimes: its holder renews the lease meanwhile,
    // and the others wait for its token rather than taking the lease over and asking again.
    let lease = Duration::from_millis(1_000);
    server.push_fault(Fault::Delay(Duration::from_secs(3)));
    let settings = lease_and_wait(lease, Duration::from_secs(20));
    let replicas = spawn_replicas(
        8,
        test,
        &server,
        &redis_url(),
        &namespace,
        Duration::from_millis(500),
        &settings,
    );
    let report = collect(replicas);
    eprintln!(
        "fleet slow endpoint: {} requests, first tokens after {:?} ms",
        server.requests_served(),
        report.first_ms
    );
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert_eq!(report.first_ms.len(), 8, "every replica got a token");
    assert_eq!(server.requests_served(), 1, "one request for the fleet");
    assert_eq!(report.tokens.len(), 1);
}

#[test]
fn twenty_replicas_against_a_rate_limit_send_one_request_per_retry_after() {
    let Some(_serial) = coordinator() else {
        return;
    };
    let test = "twenty_replicas_against_a_rate_limit_send_one_request_per_retry_after";
    let server = TestServer::builder().expires_in(Some(60)).start();
    let namespace = namespace("rate-limited");
    // Every request is refused for a minute: the first replica's failure is written to the
    // store, and every other replica fails with it, its `Retry-After` what remains.
    server.set_fault(Some(Fault::TooManyRequests {
        retry_after: Duration::from_secs(60),
    }));
    let replicas = spawn_replicas(
        20,
        test,
        &server,
        &redis_url(),
        &namespace,
        Duration::from_millis(1_500),
        &[],
    );
    let report = collect(replicas);
    eprintln!(
        "fleet rate limited: 20 replicas sent {} requests, {} errors",
        server.requests_served(),
        report.errors.len()
    );
    assert!(report.tokens.is_empty(), "no token was issued");
    assert!(
        report.errors.iter().all(|error| error.contains("429")),
        "every replica failed with the rate limit: {:?}",
        report.errors.first()
    );
    assert_eq!(
        server.requests_served(),
        1,
        "one request for the fleet in the minute the server asked for"
    );
}

/// Hardening: Redis over TLS (`rediss://`, as Azure Cache for Redis, ElastiCache with
/// in-transit encryption and Upstash require), against a real `redis-server` listening on a TLS
/// port only (`REDIS_TLS_URL`, its certificate authority in `REDIS_TLS_CA`, both set by
/// `scripts/test`); and no plaintext by accident. The refusals are of construction only:
/// nothing is sent to the addresses they name.
#[test]
fn replicas_share_a_token_through_redis_over_tls_and_plaintext_is_refused_off_loopback() {
    use client_credentials::shared_cache::StoreError;

    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tls_url = std::env::var("REDIS_TLS_URL").expect(
        "REDIS_TLS_URL is not set: run the tests with scripts/test, which starts a TLS redis-server",
    );
    let ca = std::fs::read(std::env::var("REDIS_TLS_CA").expect("REDIS_TLS_CA is not set"))
        .expect("the TLS redis-server's certificate authority");

    let refused = |result: Result<RedisStore, StoreError>, what: &str| match result {
        Err(StoreError::InvalidUrl(reason)) => reason.to_string(),
        Ok(_) => panic!("{what}: accepted"),
        Err(other) => panic!("{what}: {other}"),
    };
    let text = refused(
        RedisStore::new("redis://:password@10.0.0.5:6379/"),
        "plain, remote",
    );
    assert!(
        text.contains("rediss://") && !text.contains("password@"),
        "{text}"
    );
    refused(
        RedisStore::new("rediss://cache.example.com:6380/#insecure"),
        "no name check",
    );
    refused(
        RedisStore::with_root_certificates("redis://127.0.0.1:6379/", &ca),
        "root certificates without tls",
    );
    assert!(
        RedisStore::new("redis://127.0.0.1:6379/").is_ok(),
        "loopback in clear"
    );
    let remote_in_clear = RedisStore::insecure_plaintext("redis://10.0.0.5:6379/").unwrap();
    assert!(
        SharedCache::insecure_plaintext(remote_in_clear, "ns", StoreEncryptionKey::new(KEY))
            .is_err(),
        "tokens in clear over a connection in clear"
    );
    let tls = RedisStore::with_root_certificates(&tls_url, &ca).unwrap();
    assert!(SharedCache::insecure_plaintext(tls, "ns", StoreEncryptionKey::new(KEY)).is_ok());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = TestServer::start();
        let request = server
            .demo_credentials()
            .token_request()
            .scope("read")
            .build()
            .unwrap();
        let namespace = namespace("tls");
        let replica = |store: RedisStore| {
            TokenSource::reqwest(
                client_credentials::reqwest::recommended_client(),
                request.clone(),
            )
            .with_store(SharedCache::new(
                store,
                &namespace,
                StoreEncryptionKey::new(KEY),
            ))
        };
        let first = replica(RedisStore::with_root_certificates(&tls_url, &ca).unwrap())
            .token()
            .await
            .unwrap();
        let second = replica(RedisStore::with_root_certificates(&tls_url, &ca).unwrap())
            .token()
            .await
            .unwrap();
        assert_eq!(
            first.access_token().secret(),
            second.access_token().secret()
        );
        assert_eq!(server.token_requests(), 1, "shared through the TLS store");

        // The server's certificate is checked: against the system's roots (which do not hold
        // the test authority) the store fails, and a replica fetches for itself.
        let untrusted = replica(RedisStore::new(&tls_url).unwrap())
            .token()
            .await
            .unwrap();
        assert_ne!(
            untrusted.access_token().secret(),
            first.access_token().secret()
        );
        assert_eq!(
            server.token_requests(),
            2,
            "an unverified store is no store"
        );
    });
}

/// Hardening: a value of any size under a request's key costs one bounded read. A 20 MB value
/// used to be downloaded whole, twice on a miss (the read, then the lease holder's re-read),
/// before the 64 KiB check; now Redis sends at most `SharedCache::MAX_ENTRY_LEN` + 1 bytes of it.
#[test]
fn a_huge_value_under_a_requests_key_is_never_downloaded_whole() {
    alone_on_a_runtime(async {
        let server = TestServer::start();
        let url = redis_url();
        let namespace = namespace("huge");
        let request = server
            .demo_credentials()
            .token_request()
            .scope("read")
            .build()
            .unwrap();
        let key = client_credentials::shared_cache::StoreKey::new(
            &namespace,
            &request,
            &StoreEncryptionKey::new(KEY),
        )
        .unwrap();
        let mut connection = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let huge = vec![b'x'; 20 << 20];
        let () = redis::cmd("SET")
            .arg(key.entry())
            .arg(&huge)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut connection)
            .await
            .unwrap();
        let sent_by_redis = |info: String| -> u64 {
            info.lines()
                .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
                .and_then(|value| value.trim().parse().ok())
                .expect("INFO stats names total_net_output_bytes")
        };
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut connection)
            .await
            .unwrap();
        let before = sent_by_redis(info);

        let source =
            TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
                .with_store(SharedCache::new(
                    RedisStore::new(&url).unwrap(),
                    &namespace,
                    StoreEncryptionKey::new(KEY),
                ));
        source
            .token()
            .await
            .expect("a token, fetched: the huge value is no entry");
        assert_eq!(server.token_requests(), 1);

        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut connection)
            .await
            .unwrap();
        let sent = sent_by_redis(info) - before;
        assert!(
            sent < 1 << 20,
            "Redis sent {sent} bytes for one miss over a 20 MB value"
        );
    });
}
