//! Cached-token gets per second from 1, 2 and 8 threads: the reqwest `TokenSource` against a
//! `Mutex<Arc<Token>>` (the least a shared token can cost), the same with an expiry check (a
//! hand-rolled cache, which must read the clock as the source does), and a `TokenCache` behind
//! a `Mutex` (what the source would cost without its fast path), in the same run.
//!
//! `cargo bench --bench source --features reqwest`
//!
//! Each configuration runs several rounds, interleaved, and reports the median; compare the
//! ratios, not the absolute figures, on a shared machine.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Instant;

use client_credentials::cache::{Lookup, TokenCache};
use client_credentials::{Token, TokenRequest, TokenSource};
use client_credentials_test_server::TestServer;

/// Gets per round, shared among the round's threads.
const GETS_PER_ROUND: usize = 2_000_000;

/// Rounds per configuration; the median is reported.
const ROUNDS: usize = 7;

const THREADS: [usize; 3] = [1, 2, 8];

/// What is measured: one way to get the shared token.
#[derive(Clone)]
enum Subject {
    Baseline(Arc<Mutex<Arc<Token>>>),
    Checked(Arc<Mutex<(Arc<Token>, Instant)>>),
    Cache(Arc<Mutex<TokenCache>>, TokenRequest),
    Source(TokenSource),
}

impl Subject {
    fn name(&self) -> &'static str {
        match self {
            Self::Baseline(_) => "Mutex<Arc<Token>> (baseline)",
            Self::Checked(_) => "the same, checking expiry",
            Self::Cache(..) => "Mutex<TokenCache>::poll",
            Self::Source(_) => "TokenSource::token (reqwest)",
        }
    }

    /// Gets the token `gets` times on this thread.
    fn run(&self, gets: usize, now: Instant) {
        match self {
            Self::Baseline(token) => {
                for _ in 0..gets {
                    black_box(Arc::clone(&token.lock().unwrap()));
                }
            }
            Self::Checked(token) => {
                for _ in 0..gets {
                    black_box(checked(token));
                }
            }
            Self::Cache(cache, request) => {
                for _ in 0..gets {
                    // The source reads the clock on every get; this reads it once, in its favour.
                    match cache.lock().unwrap().poll(request, now) {
                        Lookup::Ready(token) => drop(black_box(token)),
                        other => panic!("not a hit: {other:?}"),
                    }
                }
            }
            Self::Source(source) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    for _ in 0..gets {
                        black_box(source.token().await.expect("a cached token"));
                    }
                });
            }
        }
    }
}

/// A hand-rolled cache's get: the token, if it has not expired.
#[allow(clippy::disallowed_methods)] // A cache that checks expiry reads the clock.
fn checked(token: &Mutex<(Arc<Token>, Instant)>) -> Option<Arc<Token>> {
    let now = Instant::now();
    let token = token.lock().unwrap();
    (now < token.1).then(|| Arc::clone(&token.0))
}

/// Gets per second over one round of `threads` threads.
#[allow(clippy::disallowed_methods)] // A benchmark times itself.
fn round(subject: &Subject, threads: usize) -> f64 {
    let gets = GETS_PER_ROUND / threads;
    let start = Arc::new(Barrier::new(threads + 1));
    let now = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (subject, start) = (subject.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                subject.run(gets, now);
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for worker in workers {
        worker.join().expect("a worker panicked");
    }
    (gets * threads) as f64 / began.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[allow(clippy::disallowed_methods)] // A benchmark reads the clock to seed the cache.
fn main() {
    let server = TestServer::start();
    let request = server
        .demo_credentials()
        .token_request()
        .scope("read")
        .build()
        .expect("a valid request");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let source = TokenSource::reqwest(
        client_credentials::reqwest::recommended_client(),
        request.clone(),
    );
    let token = runtime
        .block_on(source.token())
        .expect("a token from the test server");

    let mut cache = TokenCache::default();
    let now = Instant::now();
    match cache.poll(&request, now) {
        Lookup::Fetch(ticket) => {
            let fetched = Ok(Token::clone(&token));
            let _ = cache.handle_result(ticket, fetched, token.sent_at(), now, 0);
        }
        other => panic!("an empty cache fetches, not {other:?}"),
    }

    let subjects = [
        Subject::Baseline(Arc::new(Mutex::new(Arc::clone(&token)))),
        Subject::Checked(Arc::new(Mutex::new((
            Arc::clone(&token),
            now + token.expires_in().expect("a lifetime"),
        )))),
        Subject::Cache(Arc::new(Mutex::new(cache)), request),
        Subject::Source(source),
    ];
    println!("cached-token gets per second (median of {ROUNDS} rounds of {GETS_PER_ROUND} gets)");
    for threads in THREADS {
        let mut results = vec![Vec::new(); subjects.len()];
        for _ in 0..ROUNDS {
            for (subject, results) in subjects.iter().zip(&mut results) {
                results.push(round(subject, threads));
            }
        }
        let medians: Vec<f64> = results.into_iter().map(median).collect();
        println!("\n{threads} thread(s):");
        for (subject, rate) in subjects.iter().zip(&medians) {
            println!(
                "  {:<32} {:>8.2} M/s  {:>5.2}x baseline",
                subject.name(),
                rate / 1e6,
                rate / medians[0]
            );
        }
    }
    assert_eq!(server.requests_served(), 1, "every get was a hit");
    drop(runtime);
}
