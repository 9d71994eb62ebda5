//! The client-credentials exchange, side by side: this crate, the `oauth2` crate (5.x) and a
//! hand-written floor, on the same fixtures, in one run.
//!
//! ```text
//! cargo bench --manifest-path benches/compare/Cargo.toml
//! cargo bench --manifest-path benches/compare/Cargo.toml -- full_exchange   # a subset
//! ```
//!
//! Every operation is timed by criterion. Then, for the table, the three of each group are
//! timed again interleaved (`ROUNDS` rounds, each running one batch of each in rotating order,
//! so that a change of load on a shared machine hits all three alike), and run `ALLOC_RUNS`
//! times under a counting allocator. At the end a markdown table gives the median time per
//! operation, the ratios ours ÷ oauth2 and ours ÷ floor (median and quartiles of the rounds'
//! ratios), and the heap allocations per operation, then the targets of BENCHMARKS.md, met or
//! missed.
//!
//! `COMPARE_PROFILE=group/name[:runs]` runs one operation alone in a loop instead, for a
//! profiler: `valgrind --tool=callgrind --toggle-collect='*profile_loop*' <bench binary> --bench`.
//!
//! Fairness:
//! - The transport is the same fake for all three: it takes the request (whatever its body type)
//!   and hands back a fresh copy of a canned `http::Response<Vec<u8>>`, as a real client would
//!   hand back a response it read. `oauth2` reaches it through its `SyncHttpClient` trait.
//! - Before anything is timed, `Fixture::check` asserts that the three send equivalent requests
//!   (method, URL, content type, accept, decoded Basic credentials, the same set of body pairs)
//!   and read the same token and error values.
//! - Each crate is used as its documentation shows: our `TokenRequest` is validated once,
//!   outside the loop (then `http_request(&attempt)` and `parse_response` per exchange); `oauth2` builds
//!   its request per exchange, as its API requires.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use client_credentials::{Attempt, ClientCredentials, TokenRequest};
use client_credentials::auth::ClientAuth;
use client_credentials::error::ErrorCode;
use client_credentials::fetch::RequestBody;
use client_credentials::token::TokenType;
use criterion::Criterion;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method};
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, RequestTokenError, Scope,
    SyncHttpClient, TokenResponse,
};
use serde::Deserialize;

// ---------------------------------------------------------------------------------------------
// A counting allocator: counts allocation calls and bytes while `COUNTING` is on.

struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn record(bytes: usize) {
    // Off while criterion times, so that counting costs the allocation-heavy code nothing extra.
    if COUNTING.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(bytes as u64, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counters touch no memory of the
// caller's.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A growth is a call into the allocator that may copy: counted as an allocation.
        record(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// How many times each operation runs under the counting allocator.
const ALLOC_RUNS: u64 = 10_000;

/// Allocations and bytes allocated per call of `op`.
fn count_allocations<R>(mut op: impl FnMut() -> R) -> (f64, f64) {
    for _ in 0..100 {
        black_box(op()); // first-use initialisation is not part of an operation
    }
    let (allocs, bytes) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    COUNTING.store(true, Relaxed);
    for _ in 0..ALLOC_RUNS {
        black_box(op());
    }
    COUNTING.store(false, Relaxed);
    let per_op = |after: u64, before: u64| (after - before) as f64 / ALLOC_RUNS as f64;
    (
        per_op(ALLOCS.load(Relaxed), allocs),
        per_op(BYTES.load(Relaxed), bytes),
    )
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

const TOKEN_URL: &str = "https://idp.example.com/oauth/token";
const CLIENT_ID: &str = "my-client";
const CLIENT_SECRET: &str = "s3cr3t-Xq9vL2mK7pR4tW8y";
const SCOPES: [&str; 2] = ["read:things", "write:things"];
const SCOPE: &str = "read:things write:things";
const EXPIRES_IN: u64 = 3600;

/// A 907-byte RS256 JWT access token, as Auth0, Okta or Entra ID issue them.
const JWT: &str = concat!(
    "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IlpxM2tHMG1WMnBYOXJUNHdZN3VCMWNONWRGOGhKNm",
    "FMIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8iLCJzdWIiOiJteS1jbGllbnRAY2xpZW50cyIsImF1",
    "ZCI6Imh0dHBzOi8vYXBpLmV4YW1wbGUuY29tIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDAsImp0aS",
    "I6IjhmMTRlNDVmLWNlZWEtNDY3Zi1hOWYzLTViMWM4ZTJkN2E5MCIsImNsaWVudF9pZCI6Im15LWNsaWVudCIsInNj",
    "b3BlIjoicmVhZDp0aGluZ3Mgd3JpdGU6dGhpbmdzIiwiZ3R5IjoiY2xpZW50LWNyZWRlbnRpYWxzIiwiYXpwIjoibX",
    "ktY2xpZW50IiwicGVybWlzc2lvbnMiOlsicmVhZDp0aGluZ3MiLCJ3cml0ZTp0aGluZ3MiXSwidGVuYW50IjoiZXhh",
    "bXBsZS10ZW5hbnQtMDA0MiJ9.bjQLnP-zepicpUTmu3gKLHiQHT-zNzh2hRGjBhevoB1L9RIvNEVUxTveLruM0rfj0",
    "WAK1jHDhaXXzOI8d4VFmtvBtMkA_-SNV1tdpcY4BAEl9l2w_j4kSUt26phkV9mGCE_tCLl4r019GWp0RqhrWACeY2t",
    "hHbFiEbZamq3_KcXlLZxQjFAjRzRNjAetkcvWBor8df9ikvBioJyjgcieced7mprp4wsNvbb1EKJk753ngVAde2uSr",
    "onrBZxat0PbZ1humPrSfaC5lovAOaHvNMk5ubjlI6i--J1HhgjF7PbKNYdY9tJ-bPRScpN5d6dI_Yg5HbZ5ztp9x78",
    "fAF7oeQ",
);

const ERROR_DESCRIPTION: &str = "client authentication failed";

/// Ours, as its docs show: the request of one attempt. A client with a secret signs nothing,
/// so the attempt's time and bytes are not read and this cannot fail.
fn attempt_request(request: &TokenRequest) -> http::Request<RequestBody> {
    request
        .http_request(&Attempt::new(sent_at(), [0; 32]))
        .expect("a client with a secret signs nothing")
}

fn sent_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn canned(status: u16, body: String) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(body.into_bytes())
        .expect("a valid response")
}

/// The fake transport all three share: takes the request, hands back a fresh copy of the canned
/// response (three allocations: the header map's two and the body).
struct Transport(http::Response<Vec<u8>>);

impl Transport {
    fn send<B>(&self, request: http::Request<B>) -> http::Response<Vec<u8>> {
        drop(black_box(request));
        self.0.clone()
    }
}

impl SyncHttpClient for Transport {
    type Error = Infallible;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, Infallible> {
        Ok(self.send(request))
    }
}

/// For `oauth2`'s build-only bench: drops the request and fails at once.
struct DropRequest;

#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request was dropped")
    }
}

impl std::error::Error for Dropped {}

impl SyncHttpClient for DropRequest {
    type Error = Dropped;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, Dropped> {
        drop(black_box(request));
        Err(Dropped)
    }
}

/// For the equivalence check: keeps the request `oauth2` sent.
struct Capture<'a>(&'a Transport, RefCell<Option<HttpRequest>>);

impl SyncHttpClient for Capture<'_> {
    type Error = Infallible;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, Infallible> {
        *self.1.borrow_mut() = Some(request.clone());
        self.0.call(request)
    }
}

// ---------------------------------------------------------------------------------------------
// The three implementations.

type OAuth2Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;
type OAuth2Result<E> =
    Result<oauth2::basic::BasicTokenResponse, RequestTokenError<E, BasicErrorResponse>>;

fn oauth2_client(auth_type: AuthType) -> OAuth2Client {
    BasicClient::new(oauth2::ClientId::new(CLIENT_ID.into()))
        .set_client_secret(oauth2::ClientSecret::new(CLIENT_SECRET.into()))
        .set_token_uri(oauth2::TokenUrl::new(TOKEN_URL.into()).expect("a valid url"))
        .set_auth_type(auth_type)
}

/// One exchange with `oauth2`, as its documentation shows it.
fn oauth2_exchange<C: SyncHttpClient>(client: &OAuth2Client, http: &C) -> OAuth2Result<C::Error> {
    client
        .exchange_client_credentials()
        .add_scope(Scope::new(SCOPES[0].into()))
        .add_scope(Scope::new(SCOPES[1].into()))
        .request(http)
}

/// `oauth2` 5.0.0's response parsing (`endpoint_response` and the checks it calls in
/// `src/endpoint.rs`), which is private: copied step for step, taking the response by
/// reference so that no copy of it is timed.
fn oauth2_parse(response: &HttpResponse) -> OAuth2Result<Infallible> {
    let body = response.body().as_slice();
    if response.status() != http::StatusCode::OK {
        if body.is_empty() {
            return Err(RequestTokenError::Other(
                "server returned empty error response".to_string(),
            ));
        }
        let mut json = serde_json::Deserializer::from_slice(body);
        return Err(match serde_path_to_error::deserialize(&mut json) {
            Ok(error) => RequestTokenError::ServerResponse(error),
            Err(error) => RequestTokenError::Parse(error, body.to_vec()),
        });
    }
    if let Some(content_type) = response.headers().get(CONTENT_TYPE) {
        let json = content_type
            .to_str()
            .ok()
            .filter(|ct| ct.to_lowercase().starts_with("application/json"));
        if json.is_none() {
            return Err(RequestTokenError::Other(format!(
                "unexpected response Content-Type: {content_type:?}, should be `application/json`"
            )));
        }
    }
    if body.is_empty() {
        return Err(RequestTokenError::Other(
            "server returned empty response body".to_string(),
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json)
        .map_err(|e| RequestTokenError::Parse(e, body.to_vec()))
}

/// The floor's request: everything encoded ahead of time.
struct FloorRequest {
    uri: http::Uri,
    authorization: Option<HeaderValue>,
    body: Vec<u8>,
}

impl FloorRequest {
    fn new(basic: bool) -> Self {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !basic {
            form.append_pair("client_id", CLIENT_ID);
            form.append_pair("client_secret", CLIENT_SECRET);
        }
        form.append_pair("scope", SCOPE);
        let authorization = basic.then(|| {
            let credentials = BASE64.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
            let mut value = HeaderValue::try_from(format!("Basic {credentials}")).expect("ascii");
            value.set_sensitive(true);
            value
        });
        Self {
            uri: TOKEN_URL.parse().expect("a valid uri"),
            authorization,
            body: form.finish().into_bytes(),
        }
    }

    /// A hand-built `http::Request<Vec<u8>>`: three allocations (header map, its entries, the
    /// body).
    fn build(&self) -> http::Request<Vec<u8>> {
        let mut request = http::Request::new(self.body.clone());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.reserve(3);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        request
    }
}

/// The floor's token: borrowed strings, nothing checked.
#[derive(Deserialize)]
struct FloorToken<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: Option<u64>,
    scope: Option<&'a str>,
}

#[derive(Deserialize)]
struct FloorError<'a> {
    error: &'a str,
    error_description: Option<&'a str>,
}

fn floor_parse(response: &http::Response<Vec<u8>>) -> Result<FloorToken<'_>, FloorError<'_>> {
    let body = response.body();
    if response.status().is_success() {
        Ok(serde_json::from_slice(body).expect("the token fixture"))
    } else {
        Err(serde_json::from_slice(body).expect("the error fixture"))
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture, and the check that the comparison is honest.

struct Fixture {
    ours_basic: TokenRequest,
    ours_post: TokenRequest,
    oauth2_basic: OAuth2Client,
    oauth2_post: OAuth2Client,
    floor_basic: FloorRequest,
    floor_post: FloorRequest,
    ok: Transport,
    err: Transport,
}

impl Fixture {
    fn new() -> Self {
        let url = || client_credentials::TokenUrl::new(TOKEN_URL).expect("a valid url");
        let secret = || client_credentials::ClientSecret::new(CLIENT_SECRET);
        let basic = ClientCredentials::new(url(), CLIENT_ID, secret());
        let post = ClientCredentials::with_auth(url(), CLIENT_ID, ClientAuth::SecretPost(secret()))
            .expect("a valid client");
        let request = |client: &ClientCredentials| {
            client
                .token_request()
                .scopes(SCOPES)
                .build()
                .expect("a valid request")
        };
        let token = serde_json::json!({
            "access_token": JWT,
            "token_type": "Bearer",
            "expires_in": EXPIRES_IN,
            "scope": SCOPE,
        });
        let error = serde_json::json!({
            "error": "invalid_client",
            "error_description": ERROR_DESCRIPTION,
        });
        Self {
            ours_basic: request(&basic),
            ours_post: request(&post),
            oauth2_basic: oauth2_client(AuthType::BasicAuth),
            oauth2_post: oauth2_client(AuthType::RequestBody),
            floor_basic: FloorRequest::new(true),
            floor_post: FloorRequest::new(false),
            ok: Transport(canned(200, token.to_string())),
            err: Transport(canned(400, error.to_string())),
        }
    }

    /// Panics unless the three send equivalent requests and read the same values.
    fn check(&self) {
        for (ours, theirs, floor) in [
            (&self.ours_basic, &self.oauth2_basic, &self.floor_basic),
            (&self.ours_post, &self.oauth2_post, &self.floor_post),
        ] {
            let capture = Capture(&self.ok, RefCell::new(None));
            let token = oauth2_exchange(theirs, &capture).expect("oauth2 reads the token");
            let sent = capture.1.take().expect("oauth2 sent a request");
            let theirs_seen = Seen::of(&sent, sent.body());
            let ours_request = attempt_request(ours);
            let ours_seen = Seen::of(&ours_request, ours_request.body().secret());
            let floor_request = floor.build();
            let floor_seen = Seen::of(&floor_request, floor_request.body());
            assert_eq!(
                ours_seen, theirs_seen,
                "ours and oauth2 send different requests"
            );
            assert_eq!(
                ours_seen, floor_seen,
                "ours and the floor send different requests"
            );

            let expected_scopes = SCOPES.map(|s| Scope::new(s.into())).to_vec();
            assert_eq!(token.access_token().secret(), JWT);
            assert_eq!(token.token_type(), &BasicTokenType::Bearer);
            assert_eq!(token.expires_in(), Some(Duration::from_secs(EXPIRES_IN)));
            assert_eq!(token.scopes(), Some(&expected_scopes));

            let response = self.ok.send(ours_request);
            let token = ours
                .parse_response(&response, sent_at())
                .expect("ours reads the token");
            assert_eq!(token.access_token().secret(), JWT);
            assert_eq!(token.token_type(), &TokenType::Bearer);
            assert_eq!(token.expires_in(), Some(Duration::from_secs(EXPIRES_IN)));
            assert_eq!(token.scope(), Some(SCOPE));

            let floor_token = floor_parse(&response)
                .ok()
                .expect("the floor reads the token");
            assert_eq!(floor_token.access_token, JWT);
            assert_eq!(floor_token.token_type, "Bearer");
            assert_eq!(floor_token.expires_in, Some(EXPIRES_IN));
            assert_eq!(floor_token.scope, Some(SCOPE));
        }

        let Err(RequestTokenError::ServerResponse(theirs)) =
            oauth2_exchange(&self.oauth2_basic, &self.err)
        else {
            panic!("oauth2 does not read the error response");
        };
        assert_eq!(theirs.error(), &BasicErrorResponseType::InvalidClient);
        assert_eq!(
            theirs.error_description().map(String::as_str),
            Some(ERROR_DESCRIPTION)
        );
        let ours = self
            .ours_basic
            .parse_response(&self.err.0, sent_at())
            .expect_err("ours reads an error");
        let ours = ours.oauth().expect("ours reads an oauth error");
        assert_eq!(ours.code(), &ErrorCode::InvalidClient);
        assert_eq!(ours.description(), Some(ERROR_DESCRIPTION));
        let Err(floor) = floor_parse(&self.err.0) else {
            panic!("the floor does not read the error response");
        };
        assert_eq!(floor.error, "invalid_client");
        assert_eq!(floor.error_description, Some(ERROR_DESCRIPTION));
        assert!(matches!(
            oauth2_parse(&self.err.0),
            Err(RequestTokenError::ServerResponse(_))
        ));
        assert!(oauth2_parse(&self.ok.0).is_ok());
    }
}

/// What a token endpoint would see of a request.
#[derive(Debug, PartialEq)]
struct Seen {
    method: Method,
    uri: String,
    content_type: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    /// The Basic credentials, base64- and form-decoded.
    basic: Option<(String, String)>,
    /// The body's pairs, decoded and sorted: order carries no meaning in a form.
    body: Vec<(String, String)>,
}

impl Seen {
    fn of<B>(request: &http::Request<B>, body: &[u8]) -> Self {
        let decode = |text: &str| -> String {
            form_urlencoded::parse(text.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default()
        };
        let basic = request.headers().get(AUTHORIZATION).map(|value| {
            let value = value.to_str().expect("an ascii header");
            let encoded = value.strip_prefix("Basic ").expect("basic credentials");
            let decoded = BASE64.decode(encoded).expect("valid base64");
            let decoded = String::from_utf8(decoded).expect("utf-8 credentials");
            let (id, secret) = decoded.split_once(':').expect("id:secret");
            (decode(id), decode(secret))
        });
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        pairs.sort();
        Self {
            method: request.method().clone(),
            uri: request.uri().to_string(),
            content_type: request.headers().get(CONTENT_TYPE).cloned(),
            accept: request.headers().get(ACCEPT).cloned(),
            basic,
            body: pairs,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running, and the table.

/// One line of the table: a group of three benchmarks.
struct Row {
    group: &'static str,
    /// The interleaved timing of ours, oauth2 and floor.
    timing: Timing,
    /// Allocations and bytes per operation: ours, oauth2, floor.
    allocations: [(f64, f64); 3],
}

const NAMES: [&str; 3] = ["ours", "oauth2", "floor"];

/// Runs each group: under criterion and the counting allocator, or, with `COMPARE_PROFILE`
/// set, one operation alone in a loop, for `valgrind --tool=callgrind` or `perf`.
struct Runner {
    criterion: Criterion,
    rows: Vec<Row>,
    /// `group/name` and how many runs, from `COMPARE_PROFILE=group/name[:runs]`.
    profile: Option<(String, u64)>,
    /// Criterion only tests, lists or profiles the benchmarks: measure nothing for the table.
    quick: bool,
}

impl Runner {
    fn compare<A, B, C>(
        &mut self,
        group: &'static str,
        mut ours: impl FnMut() -> A,
        mut oauth2: impl FnMut() -> B,
        mut floor: impl FnMut() -> C,
    ) {
        if let Some((target, runs)) = &self.profile {
            match target.strip_prefix(group).and_then(|t| t.strip_prefix('/')) {
                Some("ours") => profile_loop(*runs, &mut ours),
                Some("oauth2") => profile_loop(*runs, &mut oauth2),
                Some("floor") => profile_loop(*runs, &mut floor),
                _ => {}
            }
            return;
        }
        // Criterion calls a closure only for a benchmark its filter selects.
        let mut selected = false;
        let mut benches = self.criterion.benchmark_group(group);
        benches.bench_function(NAMES[0], |b| {
            selected = true;
            b.iter(&mut ours)
        });
        benches.bench_function(NAMES[1], |b| {
            selected = true;
            b.iter(&mut oauth2)
        });
        benches.bench_function(NAMES[2], |b| {
            selected = true;
            b.iter(&mut floor)
        });
        benches.finish();
        if self.quick || !selected {
            return; // filtered out, or criterion is not measuring: no row in the table
        }
        self.rows.push(Row {
            group,
            timing: interleaved(&mut ours, &mut oauth2, &mut floor),
            allocations: [
                count_allocations(&mut ours),
                count_allocations(&mut oauth2),
                count_allocations(&mut floor),
            ],
        });
    }
}

/// The loop a profiler looks at: `valgrind --tool=callgrind --toggle-collect='*profile_loop*'`.
#[inline(never)]
fn profile_loop<R>(runs: u64, op: &mut impl FnMut() -> R) {
    for _ in 0..runs {
        black_box(op());
    }
}

fn main() {
    let fx = Fixture::new();
    fx.check();
    let profile =
        std::env::var("COMPARE_PROFILE")
            .ok()
            .map(|target| match target.split_once(':') {
                Some((target, runs)) => {
                    (target.to_owned(), runs.parse().expect("a number of runs"))
                }
                None => (target, 100_000),
            });
    let criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    // As criterion decides: without `--bench` (as under `cargo test --benches`), or with `--test`,
    // `--list` or `--profile-time`, it does not measure, and neither does the table.
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|arg| arg.split('=').next() == Some(name));
    let quick = !flag("--bench") || flag("--test") || flag("--list") || flag("--profile-time");
    let mut run = Runner {
        criterion,
        rows: Vec::new(),
        profile,
        quick,
    };

    run.compare(
        "full_exchange_basic",
        || {
            let response = fx.ok.send(attempt_request(&fx.ours_basic));
            fx.ours_basic.parse_response(&response, sent_at())
        },
        || oauth2_exchange(&fx.oauth2_basic, &fx.ok),
        || {
            let response = fx.ok.send(fx.floor_basic.build());
            drop(black_box(floor_parse(&response)));
        },
    );
    run.compare(
        "full_exchange_post",
        || {
            let response = fx.ok.send(attempt_request(&fx.ours_post));
            fx.ours_post.parse_response(&response, sent_at())
        },
        || oauth2_exchange(&fx.oauth2_post, &fx.ok),
        || {
            let response = fx.ok.send(fx.floor_post.build());
            drop(black_box(floor_parse(&response)));
        },
    );
    run.compare(
        "error_path",
        || {
            let response = fx.err.send(attempt_request(&fx.ours_basic));
            fx.ours_basic.parse_response(&response, sent_at())
        },
        || oauth2_exchange(&fx.oauth2_basic, &fx.err),
        || {
            let response = fx.err.send(fx.floor_basic.build());
            drop(black_box(floor_parse(&response)));
        },
    );
    run.compare(
        "build_basic",
        || attempt_request(&fx.ours_basic),
        || oauth2_exchange(&fx.oauth2_basic, &DropRequest),
        || fx.floor_basic.build(),
    );
    run.compare(
        "build_post",
        || attempt_request(&fx.ours_post),
        || oauth2_exchange(&fx.oauth2_post, &DropRequest),
        || fx.floor_post.build(),
    );
    run.compare(
        "parse_success",
        || fx.ours_basic.parse_response(&fx.ok.0, sent_at()),
        || oauth2_parse(&fx.ok.0),
        || drop(black_box(floor_parse(&fx.ok.0))),
    );
    run.compare(
        "parse_error",
        || fx.ours_basic.parse_response(&fx.err.0, sent_at()),
        || oauth2_parse(&fx.err.0),
        || drop(black_box(floor_parse(&fx.err.0))),
    );

    if run.profile.is_none() {
        run.criterion.final_summary();
        if !run.quick && !run.rows.is_empty() {
            let mut copy = || fx.ok.0.clone();
            let iterations = calibrate(&mut copy);
            let mut times: Vec<f64> = (0..ROUNDS)
                .map(|_| time_batch(&mut copy, iterations))
                .collect();
            times.sort_by(f64::total_cmp);
            let transport = (times[ROUNDS / 2], count_allocations(&mut copy));
            print_table(&run.rows, transport);
        }
    }
}

/// Rounds of the interleaved timing, and the length of one timed batch.
const ROUNDS: usize = 201;
const BATCH: Duration = Duration::from_micros(500);

/// Times of the three in one group, interleaved so that a change of load on a shared machine
/// hits all three alike: in each round each runs one batch, in rotating order.
struct Timing {
    /// Median nanoseconds per operation: ours, oauth2, floor.
    median_ns: [f64; 3],
    /// Ours ÷ oauth2 and ours ÷ floor: the median of the rounds' ratios, and their quartiles.
    ratios: [[f64; 3]; 2],
}

/// Nanoseconds per operation over one batch.
#[allow(clippy::disallowed_methods)] // a benchmark reads the clock: that is its job
fn time_batch<R>(op: &mut impl FnMut() -> R, iterations: u64) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        black_box(op());
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Iterations that fill a batch; the doubling also warms the operation up.
fn calibrate<R>(op: &mut impl FnMut() -> R) -> u64 {
    let mut iterations = 1;
    while time_batch(op, iterations) * (iterations as f64) < BATCH.as_nanos() as f64 {
        iterations *= 2;
    }
    iterations
}

fn interleaved<A, B, C>(
    ours: &mut impl FnMut() -> A,
    oauth2: &mut impl FnMut() -> B,
    floor: &mut impl FnMut() -> C,
) -> Timing {
    let n = [calibrate(ours), calibrate(oauth2), calibrate(floor)];
    let mut times = [const { Vec::new() }; 3];
    for round in 0..ROUNDS {
        for k in 0..3 {
            match (round + k) % 3 {
                0 => times[0].push(time_batch(ours, n[0])),
                1 => times[1].push(time_batch(oauth2, n[1])),
                _ => times[2].push(time_batch(floor, n[2])),
            }
        }
    }
    let quartiles = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let at = |q: usize| values[(values.len() - 1) * q / 4];
        [at(2), at(1), at(3)]
    };
    let ratio = |other: usize| {
        quartiles(
            times[0]
                .iter()
                .zip(&times[other])
                .map(|(a, b)| a / b)
                .collect(),
        )
    };
    Timing {
        median_ns: [0, 1, 2].map(|i| quartiles(times[i].clone())[0]),
        ratios: [ratio(1), ratio(2)],
    }
}

/// `transport`: the time and allocations of the fake transport's copy of the response.
fn print_table(rows: &[Row], transport: (f64, (f64, f64))) {
    let time = |ns: f64| {
        if ns >= 1000.0 {
            format!("{:.2} µs", ns / 1000.0)
        } else {
            format!("{ns:.0} ns")
        }
    };
    let ratio = |[median, low, high]: [f64; 3]| format!("{median:.2} ({low:.2}–{high:.2})");
    let allocs = |(count, bytes): (f64, f64)| format!("{count:.0} ({bytes:.0} B)");
    println!();
    println!(
        "Median time per operation, interleaved; ratios: median (quartiles) of {ROUNDS} rounds"
    );
    println!();
    println!(
        "| operation | ours | oauth2 | floor | ours ÷ oauth2 | ours ÷ floor | allocations (bytes) per op: ours / oauth2 / floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let [ours, oauth2, floor] = row.timing.median_ns;
        let [vs_oauth2, vs_floor] = row.timing.ratios;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            row.group,
            time(ours),
            time(oauth2),
            time(floor),
            ratio(vs_oauth2),
            ratio(vs_floor),
            allocs(row.allocations[0]),
            allocs(row.allocations[1]),
            allocs(row.allocations[2]),
        );
    }
    let (transport_ns, transport_allocations) = transport;
    println!();
    println!(
        "The fake transport's copy of the canned response, part of every full exchange and error \
         path for all three: {}, {}.",
        time(transport_ns),
        allocs(transport_allocations)
    );
    println!();
    println!("Targets (BENCHMARKS.md, \"Targets\"):");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for row in rows {
        let [vs_oauth2, vs_floor] = row.timing.ratios.map(|r| r[0]);
        if row.group.starts_with("full_exchange") {
            println!(
                "- {}: ≥3× faster than oauth2: {}; within 1.3× of the floor: {}; ≤ 8 allocations: {}",
                row.group,
                verdict(vs_oauth2 <= 1.0 / 3.0),
                verdict(vs_floor <= 1.3),
                verdict(row.allocations[0].0 <= 8.0),
            );
        } else if row.group == "parse_success" {
            println!(
                "- {}: within 1.5× of serde_json into borrowed strings: {}",
                row.group,
                verdict(vs_floor <= 1.5),
            );
        }
    }
}
