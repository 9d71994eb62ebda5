//! The authorized-call layers' overhead on a cached token, each against a raw request that sets
//! the same `Authorization` header by hand, by the same HTTP client, in the same run: what the
//! layer adds (the token from the source, presenting it, the DPoP nonce store, the copy kept for
//! a retry, judging the answer) to the API call itself.
//!
//! `cargo bench --bench authorized --features tower,reqwest-middleware`
//!
//! One [`TestServer`] on 127.0.0.1, one client runtime on this thread, one keep-alive connection
//! per client, warmed up before timing; every call is `GET /api/things` on the embedded
//! protected resource, its whole body read. The token is fetched once, before timing, and every
//! call of the layers takes it from the [`TokenSource`]'s cache; the raw side clones the header
//! made from it once (`Token::authorization_header`). Each pair is timed in rounds of
//! [`PER_ROUND`] calls a side, in chunks of [`CHUNK`] that alternate which side goes first, so
//! that the load of a shared machine hits both alike; the table gives the median time per call
//! and the median, quartiles and range of the per-round ratios layer ÷ raw.
//!
//! Two more pairs split the layers' figures, each the header set by hand against the same raw
//! side: the hyper-util client called as a tower `Service` (a clone, `oneshot`), and a
//! `reqwest-middleware` client with no middleware: what calling through tower or
//! `reqwest-middleware` costs by itself, which a layer in them cannot avoid.
//!
//! `AUTHORIZED_PROFILE=<subject>[:<calls>]` (subjects: `tower-layer`, `tower-raw`,
//! `tower-service-raw`, `middleware-layer`, `middleware-raw`, `middleware-chain-raw`) runs one
//! subject in a loop instead, for a profiler.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client_credentials::reqwest_middleware::AuthorizeMiddleware;
use client_credentials::tower::{Authorize, AuthorizeLayer};
use client_credentials::{CachePolicy, TokenSource};
use client_credentials_test_server::TestServer;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::ClientWithMiddleware;
use tower::{Layer as _, ServiceExt as _};

/// Calls per side per round.
const PER_ROUND: usize = 2_000;

/// Calls per side in one go; the side that goes first alternates from chunk to chunk.
const CHUNK: usize = 50;

/// Rounds per pair; the ratios are taken per round.
const ROUNDS: usize = 31;

/// Calls per subject before timing: connections open, pools and allocators warm.
const WARM_UP: usize = 500;

/// The protected resource's path.
const PATH: &str = "/api/things";

/// One way to call the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    /// `AuthorizeLayer` over hyper-util's client.
    TowerLayer,
    /// The same hyper-util client, the header set by hand.
    TowerRaw,
    /// The same hyper-util client called as a tower `Service` (`oneshot` on a clone, as the
    /// layer is), the header set by hand.
    TowerServiceRaw,
    /// `AuthorizeMiddleware` in a `reqwest-middleware` client.
    MiddlewareLayer,
    /// The same `reqwest::Client`, the header set by hand.
    MiddlewareRaw,
    /// The same `reqwest::Client` in a `reqwest-middleware` client with no middleware, the
    /// header set by hand.
    MiddlewareChainRaw,
}

impl Subject {
    const ALL: [Self; 6] = [
        Self::TowerLayer,
        Self::TowerRaw,
        Self::TowerServiceRaw,
        Self::MiddlewareLayer,
        Self::MiddlewareRaw,
        Self::MiddlewareChainRaw,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::TowerLayer => "tower-layer",
            Self::TowerRaw => "tower-raw",
            Self::TowerServiceRaw => "tower-service-raw",
            Self::MiddlewareLayer => "middleware-layer",
            Self::MiddlewareRaw => "middleware-raw",
            Self::MiddlewareChainRaw => "middleware-chain-raw",
        }
    }
}

type Hyper = Client<HttpConnector, Full<Bytes>>;

struct Bench {
    uri: Uri,
    url: reqwest::Url,
    /// `Authorization` for the raw sides, made once from the cached token.
    authorization: HeaderValue,
    tower: Authorize<Hyper>,
    hyper: Hyper,
    middleware: ClientWithMiddleware,
    chain: ClientWithMiddleware,
    reqwest: reqwest::Client,
}

impl Bench {
    /// One call by `subject`: request sent, whole response read. Returns the status.
    async fn call(&self, subject: Subject) -> StatusCode {
        match subject {
            Subject::TowerLayer => {
                let request = Request::get(self.uri.clone())
                    .body(Full::default())
                    .expect("a request");
                let response = self
                    .tower
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("a response through the layer");
                read_hyper(response).await
            }
            Subject::TowerRaw => {
                let request = Request::get(self.uri.clone())
                    .header(AUTHORIZATION, self.authorization.clone())
                    .body(Full::default())
                    .expect("a request");
                let response = self.hyper.request(request).await.expect("a raw response");
                read_hyper(response).await
            }
            Subject::TowerServiceRaw => {
                let request = Request::get(self.uri.clone())
                    .header(AUTHORIZATION, self.authorization.clone())
                    .body(Full::default())
                    .expect("a request");
                let response = self
                    .hyper
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("a raw response by the service");
                read_hyper(response).await
            }
            Subject::MiddlewareLayer => {
                let response = self
                    .middleware
                    .get(self.url.clone())
                    .send()
                    .await
                    .expect("a response through the middleware");
                read_reqwest(response).await
            }
            Subject::MiddlewareRaw => {
                let response = self
                    .reqwest
                    .get(self.url.clone())
                    .header(AUTHORIZATION, self.authorization.clone())
                    .send()
                    .await
                    .expect("a raw response");
                read_reqwest(response).await
            }
            Subject::MiddlewareChainRaw => {
                let response = self
                    .chain
                    .get(self.url.clone())
                    .header(AUTHORIZATION, self.authorization.clone())
                    .send()
                    .await
                    .expect("a raw response through an empty chain");
                read_reqwest(response).await
            }
        }
    }

    /// `n` calls by `subject`, timed: the time they took, and the CPU time the process spent
    /// on them (client and server threads, user and kernel).
    #[allow(clippy::disallowed_methods)] // A benchmark times itself.
    async fn timed(&self, subject: Subject, n: usize) -> Spent {
        let cpu = process_cpu();
        let start = Instant::now();
        for _ in 0..n {
            black_box(self.call(subject).await);
        }
        let wall = start.elapsed();
        Spent {
            wall,
            cpu: process_cpu().saturating_sub(cpu),
        }
    }

    /// One round of a pair: the total time of each side over [`PER_ROUND`] calls.
    async fn round(&self, (layer, raw): (Subject, Subject)) -> (Spent, Spent) {
        let (mut l, mut r) = (Spent::default(), Spent::default());
        for chunk in 0..PER_ROUND / CHUNK {
            if chunk % 2 == 0 {
                l += self.timed(layer, CHUNK).await;
                r += self.timed(raw, CHUNK).await;
            } else {
                r += self.timed(raw, CHUNK).await;
                l += self.timed(layer, CHUNK).await;
            }
        }
        (l, r)
    }
}

/// One of the two things a [`Spent`] holds.
type Measure = fn(&Spent) -> Duration;

/// What some calls took: the time, and the process's CPU time.
#[derive(Clone, Copy, Default)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, other: Self) {
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
}

/// The CPU time of all this process's threads so far (Linux's `/proc/self/task/*/schedstat`,
/// nanoseconds on a CPU), or zero where there is none. On a machine shared with other jobs the
/// wall time of a call is mostly waiting for a CPU; its CPU time is what it costs.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Reads a response whole: hyper's, or the layer's over it (its body passing hyper's frames on).
async fn read_hyper<B>(response: http::Response<B>) -> StatusCode
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    black_box(body);
    status
}

async fn read_reqwest(response: reqwest::Response) -> StatusCode {
    let status = response.status();
    black_box(response.bytes().await.expect("a body"));
    status
}

/// The `q`-quantile of sorted values, by nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn main() {
    let server = TestServer::start();
    let request = server
        .demo_credentials()
        .token_request()
        .build()
        .expect("a valid request");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _context = runtime.enter();
    // The server's tokens live an hour: none is refreshed during the run.
    let tokens = TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
        .with_policy(CachePolicy::new());
    let token = runtime
        .block_on(tokens.token())
        .expect("a token, fetched once before timing");
    let authorization = token
        .authorization_header()
        .expect("a bearer token is a header");

    let url = server.url(PATH);
    let hyper: Hyper = Client::builder(TokioExecutor::new()).build_http();
    let reqwest = reqwest::Client::new();
    let bench = Bench {
        uri: url.parse().expect("a URI"),
        url: reqwest::Url::parse(&url).expect("a URL"),
        authorization,
        tower: AuthorizeLayer::new(tokens.clone()).layer(hyper.clone()),
        hyper,
        middleware: reqwest_middleware::ClientBuilder::new(reqwest.clone())
            .with(AuthorizeMiddleware::new(tokens.clone()))
            .build(),
        chain: reqwest_middleware::ClientBuilder::new(reqwest.clone()).build(),
        reqwest,
    };

    // Both sides of each pair do the same HTTP: the resource accepts every one, and no call
    // but the first `tokens.token()` reached the token endpoint.
    runtime.block_on(async {
        for subject in Subject::ALL {
            assert_eq!(bench.call(subject).await, StatusCode::OK, "{subject:?}");
        }
    });
    assert_eq!(
        server.token_requests(),
        1,
        "one token request, before timing"
    );

    if let Ok(profile) = std::env::var("AUTHORIZED_PROFILE") {
        let (name, n) = profile.split_once(':').unwrap_or((&profile, "5000"));
        let subject = Subject::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .expect("AUTHORIZED_PROFILE names a subject");
        let n: usize = n.parse().expect("AUTHORIZED_PROFILE's count is a number");
        let spent = runtime.block_on(bench.timed(subject, n));
        println!(
            "{name}: {n} calls in {:?} ({:?} of CPU)",
            spent.wall, spent.cpu
        );
        return;
    }

    let before = server.resource_requests();
    runtime.block_on(async {
        for subject in Subject::ALL {
            bench.timed(subject, WARM_UP).await;
        }
    });

    let pairs = [
        (Subject::TowerLayer, Subject::TowerRaw),
        (Subject::MiddlewareLayer, Subject::MiddlewareRaw),
        (Subject::TowerServiceRaw, Subject::TowerRaw),
        (Subject::MiddlewareChainRaw, Subject::MiddlewareRaw),
    ];
    let mut times = vec![(Vec::new(), Vec::new()); pairs.len()];
    for round in 0..ROUNDS {
        // Which pair goes first alternates too.
        for i in 0..pairs.len() {
            let i = (i + round) % pairs.len();
            let (l, r) = runtime.block_on(bench.round(pairs[i]));
            times[i].0.push(l);
            times[i].1.push(r);
        }
    }
    let expected = before + Subject::ALL.len() * WARM_UP + ROUNDS * pairs.len() * 2 * PER_ROUND;
    assert_eq!(
        server.resource_requests(),
        expected,
        "one resource request per call: no retry"
    );
    assert_eq!(
        server.token_requests(),
        1,
        "every call used the cached token"
    );

    println!(
        "authorized GET {PATH} against the embedded server on 127.0.0.1, keep-alive, cached token \
         ({ROUNDS} rounds of {PER_ROUND} calls a side, interleaved in chunks of {CHUNK})"
    );
    let measures: [(&str, Measure); 2] = [
        ("wall time", |spent| spent.wall),
        ("CPU time of the process", |spent| spent.cpu),
    ];
    for (measure, of) in measures {
        if times[0].0.iter().all(|spent| of(spent).is_zero()) {
            continue; // no CPU time on this system
        }
        println!("\n{measure}\n");
        println!("| pair | µs/call | raw µs/call | ÷ raw, median | quartiles | range |");
        println!("|---|---:|---:|---:|---|---|");
        for ((layer, raw), (l, r)) in pairs.iter().zip(&times) {
            let per_call = |spent: &Spent| of(spent).as_secs_f64() / PER_ROUND as f64;
            let (l, r): (Vec<f64>, Vec<f64>) = (
                l.iter().map(per_call).collect(),
                r.iter().map(per_call).collect(),
            );
            let ratios = sorted(l.iter().zip(&r).map(|(l, r)| l / r).collect());
            let (l, r) = (sorted(l), sorted(r));
            println!(
                "| {} ÷ {} | {:.1} | {:.1} | {:.3} | {:.3}–{:.3} | {:.3}–{:.3} |",
                layer.name(),
                raw.name(),
                quantile(&l, 0.5) * 1e6,
                quantile(&r, 0.5) * 1e6,
                quantile(&ratios, 0.5),
                quantile(&ratios, 0.25),
                quantile(&ratios, 0.75),
                ratios[0],
                ratios[ratios.len() - 1],
            );
        }
    }
    drop(bench);
    drop(_context);
    drop(runtime);
}
