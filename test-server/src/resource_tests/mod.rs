//! The protected resource, DPoP at the token endpoint and at the resource, revocation and
//! trusted issuers: each rule with the answer it gives. This file holds the helpers: a small
//! HTTP/1.1 client, token fetching, and hand-crafted JWSs.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials::auth::{JwsAlgorithm, JwsSigner, PrivateKey};
use client_credentials::call::Challenge;
use client_credentials::dpop::{DpopKey, resource_dpop_retry_nonce};
use client_credentials::error::ErrorCode;
use client_credentials::fetch::{FetchStep, Session, TokenFetch};
use client_credentials::token::{AccessToken, TokenType};
use client_credentials::{Attempt, Token, TokenRequest};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use serde_json::{Value, json};

use super::client::{DEMO_CLIENT_ID, TestClient};
use super::dpop::{DPOP_PROOF_WINDOW, MAX_DPOP_JTIS, SeenJtis};
use super::faults::Fault;
use super::server::TestServer;
use super::tokens::{Issued, MAX_ISSUED_TOKENS, Registry};
use super::trust::{JwksError, TrustedIssuer};

mod bearer;
mod bounds;
mod dpop_resource;
mod dpop_token;
mod trusted;

// ---------------------------------------------------------------------------------------------

#[allow(clippy::disallowed_methods)] // the server checks `iat` against the real clock
fn now() -> SystemTime {
    SystemTime::now()
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn entropy() -> [u8; 32] {
    let mut bytes = [0; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    bytes
}

fn attempt() -> Attempt {
    Attempt::new(now(), entropy())
}

/// Sends `request` (its URI's path and query, its headers and body) and reads the answer: the
/// one raw HTTP/1.1 exchange of the test server's unit tests.
pub(super) fn exchange(server: &TestServer, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut raw = format!(
        "{} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        request.method(),
        server.local_addr(),
        request.body().len()
    );
    for (name, value) in request.headers() {
        raw.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    raw.push_str("\r\n");
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    stream.write_all(request.body()).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the response failed: {e}"),
    }
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&answer[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut response = Response::builder().status(status);
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        response = response.header(name, value);
    }
    response.body(answer[split + 4..].to_vec()).unwrap()
}

/// One attempt at a token request, as built for `attempt`.
fn send_token_request(
    server: &TestServer,
    request: &TokenRequest,
    attempt: &Attempt,
) -> Response<Vec<u8>> {
    let http = request.http_request(attempt).unwrap();
    let (parts, body) = http.into_parts();
    exchange(server, &Request::from_parts(parts, body.secret().to_vec()))
}

/// The whole exchange, by the core's attempt loop (the DPoP-nonce retry included).
fn fetch(server: &TestServer, request: &TokenRequest) -> Result<Token, client_credentials::Error> {
    let session = Session::new();
    let mut fetch = TokenFetch::new(request, &session);
    loop {
        let http = fetch.http_request(now(), || Ok(entropy()))?;
        let (parts, body) = http.into_parts();
        let response = exchange(server, &Request::from_parts(parts, body.secret().to_vec()));
        match fetch.handle_response(&response)? {
            FetchStep::Done(token) => return Ok(token),
            FetchStep::Retry => {}
        }
    }
}

fn bearer_token(server: &TestServer) -> AccessToken {
    let request = server
        .demo_credentials()
        .token_request()
        .scope("read")
        .build()
        .unwrap();
    fetch(server, &request).unwrap().access_token().clone()
}

fn es256_key() -> (Arc<PrivateKey>, DpopKey) {
    let key = Arc::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap());
    (Arc::clone(&key), DpopKey::from_arc(key).unwrap())
}

fn dpop_token(server: &TestServer, key: &DpopKey) -> Token {
    let request = server
        .demo_credentials()
        .with_dpop(key.clone())
        .token_request()
        .scope("read")
        .build()
        .unwrap();
    fetch(server, &request).unwrap()
}

fn api(server: &TestServer, method: Method, path: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(method)
        .uri(server.url(path))
        .body(Vec::new())
        .unwrap()
}

fn with_bearer(mut request: Request<Vec<u8>>, token: &AccessToken) -> Request<Vec<u8>> {
    let value = format!("Bearer {}", token.secret()).parse().unwrap();
    request.headers_mut().insert(AUTHORIZATION, value);
    request
}

fn with_dpop(
    mut request: Request<Vec<u8>>,
    key: &DpopKey,
    token: &AccessToken,
) -> Request<Vec<u8>> {
    key.authorize(&mut request, token, &attempt()).unwrap();
    request
}

fn claims(token: &AccessToken) -> Value {
    let payload = token.secret().split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The challenges of a response, by scheme.
fn challenge(headers: &HeaderMap, scheme: &str) -> Challenge {
    Challenge::parse_all(headers)
        .into_iter()
        .find(|c| c.scheme().eq_ignore_ascii_case(scheme))
        .unwrap_or_else(|| {
            panic!(
                "no {scheme} challenge in {:?}",
                headers.get(WWW_AUTHENTICATE)
            )
        })
}

/// Asserts a 401 (or other status) whose challenge of `scheme` has `error`, the other
/// challenge none, and both the realm; `algs` on the DPoP one.
fn assert_refused(response: &Response<Vec<u8>>, status: u16, scheme: &str, error: &str) {
    assert_eq!(
        response.status().as_u16(),
        status,
        "{:?}",
        String::from_utf8_lossy(response.body())
    );
    let used = challenge(response.headers(), scheme);
    assert_eq!(used.param("error"), Some(error), "{:?}", response.headers());
    assert!(used.param("error_description").is_some());
    let other = challenge(
        response.headers(),
        if scheme == "Bearer" { "DPoP" } else { "Bearer" },
    );
    assert_eq!(other.param("error"), None);
    for c in [&used, &other] {
        assert_eq!(c.realm(), Some("test-server"));
    }
    let dpop = challenge(response.headers(), "DPoP");
    assert_eq!(dpop.param("algs"), Some("ES256 ES384 EdDSA RS256 PS256"));
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"], json!(error));
}

fn body(response: &Response<Vec<u8>>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

/// A compact JWS signed by `key`, with this header and these claims as given.
fn craft(key: &PrivateKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn jwk_value(key: &PrivateKey) -> Value {
    serde_json::from_str(&key.public_jwk().to_json()).unwrap()
}

fn ath(token: &AccessToken) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.secret().as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn jti() -> String {
    URL_SAFE_NO_PAD.encode(entropy())
}
