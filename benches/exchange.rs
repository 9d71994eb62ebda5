//! The adapters' end-to-end exchange against the embedded loopback server, each against a raw
//! request of the same bytes by the same HTTP client, in the same run: what the adapter adds
//! (building the attempt, the clock, 32 random bytes, the body limit, parsing the token) to
//! the HTTP exchange itself.
//!
//! `cargo bench --bench exchange --features hyper,reqwest`
//!
//! One [`TestServer`] on 127.0.0.1, one client runtime on this thread, one keep-alive connection
//! per client, warmed up before timing. Each pair is timed in rounds of [`PER_ROUND`] exchanges
//! a side, in chunks of [`CHUNK`] that alternate which side goes first, so that the load of a
//! shared machine hits both alike; the table gives the median time per exchange and the median,
//! quartiles and range of the per-round ratios adapter ÷ raw. A second table times the
//! adapters' own work (clock, random bytes, building, parsing, reqwest's conversion) without IO.
//!
//! `EXCHANGE_PROFILE=<subject>[:<exchanges>]` (subjects: `hyper-adapter`, `hyper-raw`,
//! `reqwest-adapter`, `reqwest-raw`) runs one subject in a loop instead, for a profiler.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use client_credentials::fetch::{Session, TokenFetch};
use client_credentials::reqwest::TIMEOUT;
use client_credentials::token::TokenType;
use client_credentials::{Attempt, TokenRequest};
use client_credentials_test_server::TestServer;
use http::{HeaderMap, Method, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Exchanges per side per round.
const PER_ROUND: usize = 2_000;

/// Exchanges per side in one go; the side that goes first alternates from chunk to chunk.
const CHUNK: usize = 100;

/// Rounds per pair; the ratios are taken per round.
const ROUNDS: usize = 21;

/// Exchanges per subject before timing: connections open, pools and allocators warm.
const WARM_UP: usize = 500;

/// One way to get a token from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    HyperAdapter,
    HyperRaw,
    ReqwestAdapter,
    ReqwestRaw,
}

impl Subject {
    const ALL: [Self; 4] = [
        Self::HyperAdapter,
        Self::HyperRaw,
        Self::ReqwestAdapter,
        Self::ReqwestRaw,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::HyperAdapter => "hyper-adapter",
            Self::HyperRaw => "hyper-raw",
            Self::ReqwestAdapter => "reqwest-adapter",
            Self::ReqwestRaw => "reqwest-raw",
        }
    }
}

/// The request's bytes, taken once from `TokenRequest::http_request`, for the raw requests.
struct Raw {
    method: Method,
    uri: Uri,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Bytes,
}

struct Bench {
    request: TokenRequest,
    raw: Raw,
    hyper: Client<HttpConnector, Full<Bytes>>,
    reqwest: reqwest::Client,
}

impl Bench {
    /// One full exchange by `subject`: request sent, whole response read.
    async fn exchange(&self, subject: Subject) {
        match subject {
            Subject::HyperAdapter => {
                let token =
                    client_credentials::hyper::fetch_token(&self.hyper, &self.request, TIMEOUT)
                        .await
                        .expect("a token by the hyper adapter");
                black_box(token);
            }
            Subject::HyperRaw => {
                let mut request = http::Request::new(Full::new(self.raw.body.clone()));
                *request.method_mut() = self.raw.method.clone();
                *request.uri_mut() = self.raw.uri.clone();
                *request.headers_mut() = self.raw.headers.clone();
                let response = self
                    .hyper
                    .request(request)
                    .await
                    .expect("a raw hyper response");
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("a raw hyper body");
                black_box((status, body.to_bytes()));
            }
            Subject::ReqwestAdapter => {
                let token =
                    client_credentials::reqwest::fetch_token(&self.reqwest, &self.request, TIMEOUT)
                        .await
                        .expect("a token by the reqwest adapter");
                black_box(token);
            }
            Subject::ReqwestRaw => {
                let response = self
                    .reqwest
                    .request(self.raw.method.clone(), self.raw.url.clone())
                    .headers(self.raw.headers.clone())
                    .body(self.raw.body.clone())
                    .send()
                    .await
                    .expect("a raw reqwest response");
                let status = response.status();
                let body = response.bytes().await.expect("a raw reqwest body");
                black_box((status, body));
            }
        }
    }

    /// `n` exchanges by `subject`, timed.
    #[allow(clippy::disallowed_methods)] // A benchmark times itself.
    async fn timed(&self, subject: Subject, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.exchange(subject).await;
        }
        start.elapsed()
    }

    /// One round of a pair: the total time of each side over [`PER_ROUND`] exchanges.
    async fn round(&self, (adapter, raw): (Subject, Subject)) -> (Duration, Duration) {
        let (mut a, mut r) = (Duration::ZERO, Duration::ZERO);
        for chunk in 0..PER_ROUND / CHUNK {
            if chunk % 2 == 0 {
                a += self.timed(adapter, CHUNK).await;
                r += self.timed(raw, CHUNK).await;
            } else {
                r += self.timed(raw, CHUNK).await;
                a += self.timed(adapter, CHUNK).await;
            }
        }
        (a, r)
    }
}

/// Checks that the raw requests carry what the adapters send, and that their responses are
/// the token the adapters parse, so that both sides of a pair do the same HTTP. Returns the
/// server's response, for timing the adapters' work without IO.
async fn check(bench: &Bench) -> http::Response<Bytes> {
    let attempt = TokenFetch::new(&bench.request, &Session::new())
        .http_request(SystemTime::UNIX_EPOCH, || Ok([0; 32]))
        .expect("an attempt");
    let raw = &bench.raw;
    assert_eq!(attempt.method(), raw.method);
    assert_eq!(*attempt.uri(), raw.uri);
    assert_eq!(raw.url.as_str(), raw.uri.to_string());
    assert_eq!(*attempt.headers(), raw.headers);
    assert_eq!(attempt.body().secret(), &raw.body[..]);

    let mut request = http::Request::new(Full::new(raw.body.clone()));
    *request.method_mut() = raw.method.clone();
    *request.uri_mut() = raw.uri.clone();
    *request.headers_mut() = raw.headers.clone();
    let (head, body) = bench
        .hyper
        .request(request)
        .await
        .expect("a response")
        .into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    let canned = http::Response::from_parts(head, body);
    let token = bench
        .request
        .parse_response(&canned, SystemTime::UNIX_EPOCH)
        .expect("the raw hyper request gets a token");
    assert_eq!(*token.token_type(), TokenType::Bearer);

    let response = bench
        .reqwest
        .request(raw.method.clone(), raw.url.clone())
        .headers(raw.headers.clone())
        .body(raw.body.clone())
        .send()
        .await
        .expect("a response");
    let mut head = http::Response::builder().status(response.status());
    *head.headers_mut().expect("a builder") = response.headers().clone();
    let response = head
        .body(response.bytes().await.expect("a body"))
        .expect("a response");
    bench
        .request
        .parse_response(&response, SystemTime::UNIX_EPOCH)
        .expect("the raw reqwest request gets a token");
    canned
}

/// Calls per round when timing the adapters' work without IO.
const PART_CALLS: usize = 20_000;

/// The adapters' work outside the HTTP exchange, each part timed alone in a loop (the same
/// rounds, interleaved), in nanoseconds per call: where the difference between a pair goes.
#[allow(clippy::disallowed_methods)] // A benchmark times itself, and times the clock read.
fn parts(bench: &Bench, canned: &http::Response<Bytes>) {
    let raw = &bench.raw;
    let session = Session::new();
    let from_parts = || {
        let mut request = http::Request::new(raw.body.clone());
        *request.method_mut() = raw.method.clone();
        *request.uri_mut() = raw.uri.clone();
        *request.headers_mut() = raw.headers.clone();
        request
    };
    let parts: [(&str, &dyn Fn()); 6] = [
        ("clock: SystemTime::now", &|| {
            black_box(SystemTime::now());
        }),
        ("32 random bytes: getrandom::fill", &|| {
            let mut entropy = [0; 32];
            getrandom::fill(&mut entropy).expect("random bytes");
            black_box(entropy);
        }),
        ("build the attempt: TokenFetch::http_request", &|| {
            let mut exchange = TokenFetch::new(&bench.request, &session);
            black_box(exchange.http_request(SystemTime::UNIX_EPOCH, || Ok([0; 32])))
                .expect("an attempt");
        }),
        ("parse the token: TokenFetch::handle_response", &|| {
            // The attempt is built outside the clock, and its cost is taken off below.
            let mut exchange = TokenFetch::new(&bench.request, &session);
            drop(exchange.http_request(SystemTime::UNIX_EPOCH, || Ok([0; 32])));
            drop(black_box(
                exchange.handle_response(canned).expect("a token"),
            ));
        }),
        ("raw side: http::Request from the parts", &|| {
            black_box(from_parts());
        }),
        ("reqwest: from the parts + Request::try_from", &|| {
            black_box(reqwest::Request::try_from(from_parts())).expect("a reqwest request");
        }),
    ];
    let mut times = vec![Vec::new(); parts.len()];
    for _ in 0..ROUNDS {
        for ((_, part), times) in parts.iter().zip(&mut times) {
            let start = Instant::now();
            for _ in 0..PART_CALLS {
                part();
            }
            times.push(start.elapsed().as_secs_f64() * 1e9 / PART_CALLS as f64);
        }
    }
    let medians: Vec<f64> = times
        .into_iter()
        .map(|t| quantile(&sorted(t), 0.5))
        .collect();
    println!(
        "\nthe adapters' work without IO, ns per call (median of {ROUNDS} rounds of {PART_CALLS})\n"
    );
    println!("| part | ns |");
    println!("|---|---:|");
    for (i, ((name, _), ns)) in parts.iter().zip(&medians).enumerate() {
        let ns = match i {
            3 => ns - medians[2], // parse alone: the attempt's build taken off
            5 => ns - medians[4], // the conversion alone: the raw side's build taken off
            _ => *ns,
        };
        let name = match i {
            3 => "parse the token: TokenFetch::handle_response",
            5 => "reqwest: Request::try_from (the URI parsed again as a URL)",
            _ => name,
        };
        println!("| {name} | {ns:.0} |");
    }
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
        .scope("read")
        .build()
        .expect("a valid request");
    // A static secret signs nothing: the attempt's time and bytes are not read.
    let attempt = Attempt::new(SystemTime::UNIX_EPOCH, [0; 32]);
    let http_request = request
        .http_request(&attempt)
        .expect("a static secret needs no signing");
    let raw = Raw {
        method: http_request.method().clone(),
        uri: http_request.uri().clone(),
        url: reqwest::Url::parse(&http_request.uri().to_string()).expect("a URL"),
        headers: http_request.headers().clone(),
        body: http_request.into_body().into_bytes(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _context = runtime.enter();
    let bench = Bench {
        request,
        raw,
        hyper: Client::builder(TokioExecutor::new()).build_http(),
        reqwest: client_credentials::reqwest::recommended_client(),
    };
    let canned = runtime.block_on(check(&bench));

    if let Ok(profile) = std::env::var("EXCHANGE_PROFILE") {
        let (name, n) = profile.split_once(':').unwrap_or((&profile, "5000"));
        let subject = Subject::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .expect("EXCHANGE_PROFILE names a subject");
        let n: usize = n.parse().expect("EXCHANGE_PROFILE's count is a number");
        let elapsed = runtime.block_on(bench.timed(subject, n));
        println!("{name}: {n} exchanges in {elapsed:?}");
        return;
    }

    let before = server.requests_served();
    runtime.block_on(async {
        for subject in Subject::ALL {
            bench.timed(subject, WARM_UP).await;
        }
    });

    let pairs = [
        (Subject::HyperAdapter, Subject::HyperRaw),
        (Subject::ReqwestAdapter, Subject::ReqwestRaw),
    ];
    let mut times = vec![(Vec::new(), Vec::new()); pairs.len()];
    for round in 0..ROUNDS {
        // Which pair goes first alternates too.
        for i in 0..pairs.len() {
            let i = (i + round) % pairs.len();
            let (a, r) = runtime.block_on(bench.round(pairs[i]));
            times[i].0.push(a.as_secs_f64() / PER_ROUND as f64);
            times[i].1.push(r.as_secs_f64() / PER_ROUND as f64);
        }
    }
    let expected = before + Subject::ALL.len() * WARM_UP + ROUNDS * pairs.len() * 2 * PER_ROUND;
    assert_eq!(
        server.requests_served(),
        expected,
        "one request per exchange"
    );

    println!(
        "full token exchanges against the embedded server on 127.0.0.1, keep-alive \
         ({ROUNDS} rounds of {PER_ROUND} exchanges a side, interleaved in chunks of {CHUNK})\n"
    );
    println!(
        "| adapter | adapter µs/exchange | raw µs/exchange | adapter ÷ raw, median | quartiles | range |"
    );
    println!("|---|---:|---:|---:|---|---|");
    for ((adapter, _), (a, r)) in pairs.iter().zip(times) {
        let ratios = sorted(a.iter().zip(&r).map(|(a, r)| a / r).collect());
        let (a, r) = (sorted(a), sorted(r));
        println!(
            "| {} | {:.1} | {:.1} | {:.3} | {:.3}–{:.3} | {:.3}–{:.3} |",
            adapter.name().trim_end_matches("-adapter"),
            quantile(&a, 0.5) * 1e6,
            quantile(&r, 0.5) * 1e6,
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
    parts(&bench, &canned);
    drop(bench);
    drop(_context);
    drop(runtime);
}
