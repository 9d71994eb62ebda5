//! The shared token cache on a loopback Redis (`REDIS_URL`, as `scripts/test` sets it), in one
//! run:
//!
//! 1. token-endpoint requests for N replicas (N = 2, 8, 32; each its own `TokenSource` and
//!    Redis connection, asking for a token every 10 ms) over T token lifetimes, with the shared
//!    cache against without it;
//! 2. a first-level hit with a store against without one (the ratio should be 1.0: a hit
//!    never touches the store);
//! 3. a second-level hit (a replica's first token, read from Redis) beside a fetch from the
//!    embedded token server, in µs.
//!
//! `REDIS_URL=redis://127.0.0.1:6379/ cargo bench --bench fleet --features redis,reqwest`

use std::hint::black_box;
use std::time::{Duration, Instant};

use client_credentials::shared_cache::{RedisStore, SharedCache, StoreEncryptionKey};
use client_credentials::{TokenRequest, TokenSource};
use client_credentials_test_server::TestServer;

/// The token lifetime of the replica runs, in seconds (the embedded server's unit).
const LIFETIME_SECS: u64 = 1;
/// Token lifetimes per replica run.
const LIFETIMES: u64 = 4;
const REPLICAS: [usize; 3] = [2, 8, 32];
/// Hits per round, and rounds (the median is reported).
const HITS: usize = 1_000_000;
const ROUNDS: usize = 7;
/// Second-level hits and endpoint fetches timed, each.
const COLD: usize = 300;

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL: start redis-server (scripts/test does) and set it")
}

#[allow(clippy::disallowed_methods)] // A benchmark times itself.
fn instant() -> Instant {
    Instant::now()
}

fn shared(namespace: &str) -> SharedCache {
    SharedCache::new(
        RedisStore::new(&redis_url()).expect("a Redis URL"),
        namespace,
        StoreEncryptionKey::new([9; 32]),
    )
}

fn source(request: &TokenRequest, store: Option<&str>) -> TokenSource {
    let source = TokenSource::reqwest(
        client_credentials::reqwest::recommended_client(),
        request.clone(),
    );
    match store {
        Some(namespace) => source.with_store(shared(namespace)),
        None => source,
    }
}

fn request(server: &TestServer) -> TokenRequest {
    server
        .demo_credentials()
        .token_request()
        .scope("read")
        .build()
        .expect("a valid request")
}

fn namespace(what: &str) -> String {
    format!(
        "bench-{what}-{}-{}",
        std::process::id(),
        instant().elapsed().as_nanos()
    )
}

/// Requests the server saw while `replicas` replicas asked for a token every 10 ms for
/// `LIFETIMES` token lifetimes.
async fn replica_run(replicas: usize, shared: bool) -> usize {
    let server = TestServer::builder()
        .expires_in(Some(LIFETIME_SECS))
        .start();
    let request = request(&server);
    let namespace = namespace(&format!("replicas-{replicas}"));
    let run = Duration::from_secs(LIFETIME_SECS * LIFETIMES);
    let tasks: Vec<_> = (0..replicas)
        .map(|_| {
            let source = source(&request, shared.then_some(namespace.as_str()));
            tokio::spawn(async move {
                let start = instant();
                while start.elapsed() < run {
                    source.token().await.expect("a token");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a replica panicked");
    }
    server.requests_served()
}

/// Hits per second on `source`, whose token is cached.
async fn hits(source: &TokenSource) -> f64 {
    let start = instant();
    for _ in 0..HITS {
        black_box(source.token().await.expect("a hit"));
    }
    HITS as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!("1. token-endpoint requests over {LIFETIMES} lifetimes of {LIFETIME_SECS} s (a token every 10 ms per replica)");
        println!("   replicas | shared | without | shared ÷ T | without ÷ shared");
        for replicas in REPLICAS {
            let with = replica_run(replicas, true).await;
            let without = replica_run(replicas, false).await;
            println!(
                "   {replicas:>8} | {with:>6} | {without:>7} | {:>10.2} | {:>16.1}",
                with as f64 / LIFETIMES as f64,
                without as f64 / with as f64
            );
        }

        let server = TestServer::start();
        let request = request(&server);
        let plain = source(&request, None);
        let with_store = source(&request, Some(&namespace("hits")));
        plain.token().await.expect("a token");
        with_store.token().await.expect("a token");
        let (mut plain_rates, mut store_rates) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            plain_rates.push(hits(&plain).await);
            store_rates.push(hits(&with_store).await);
        }
        let (plain_rate, store_rate) = (median(plain_rates), median(store_rates));
        println!("\n2. first-level hits (median of {ROUNDS} rounds of {HITS}, interleaved)");
        println!("   without a store {:>6.1} ns, with a store {:>6.1} ns: with ÷ without {:.2}",
            1e9 / plain_rate, 1e9 / store_rate, plain_rate / store_rate);

        // A first-level miss: read from Redis (the entry is there), or fetched from the server.
        // One Redis connection and one HTTP client, both warm; a new, empty source each time.
        let cache = shared(&namespace("cold"));
        let http = client_credentials::reqwest::recommended_client();
        TokenSource::reqwest(http.clone(), request.clone())
            .with_store(cache.clone())
            .token()
            .await
            .expect("a token");
        let before = server.requests_served();
        let (mut redis_us, mut fetch_us) = (Vec::new(), Vec::new());
        for _ in 0..COLD {
            let from_redis = TokenSource::reqwest(http.clone(), request.clone()).with_store(cache.clone());
            let start = instant();
            black_box(from_redis.token().await.expect("a token"));
            redis_us.push(start.elapsed().as_secs_f64() * 1e6);
            let from_server = TokenSource::reqwest(http.clone(), request.clone());
            let start = instant();
            black_box(from_server.token().await.expect("a token"));
            fetch_us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        assert_eq!(server.requests_served() - before, COLD, "every Redis read was a second-level hit");
        let (redis_us, fetch_us) = (median(redis_us), median(fetch_us));
        println!("\n3. a first-level miss (median of {COLD}, interleaved; a new source each, warm connections)");
        println!("   second-level hit on loopback Redis {redis_us:>7.0} µs, fetch from the embedded server {fetch_us:>7.0} µs: fetch ÷ Redis {:.2}",
            fetch_us / redis_us);
    });
}
