//! The protected resource, DPoP at the token endpoint and at the resource, revocation and
//! trusted issuers: each rule with the answer it gives.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use serde_json::{Value, json};

use super::client::{DEMO_CLIENT_ID, TestClient};
use super::dpop::{DPOP_PROOF_WINDOW, MAX_DPOP_JTIS, SeenJtis};
use super::faults::Fault;
use super::server::TestServer;
use super::tokens::{Issued, MAX_ISSUED_TOKENS, Registry};
use super::trust::{JwksError, TrustedIssuer};
use crate::attempt::{Attempt, resource_dpop_retry_nonce};
use crate::auth::dpop::DpopKey;
use crate::auth::jwt::{JwsAlgorithm, JwsSigner};
use crate::auth::key::PrivateKey;
use crate::challenge::{Challenge, parse_all};
use crate::error::oauth::ErrorCode;
use crate::fetch::{FetchStep, TokenFetch};
use crate::request::TokenRequest;
use crate::secret::AccessToken;
use crate::token::{Token, TokenType};

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 client over a TcpStream, and the clock and entropy of each attempt.

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

/// Sends `request` (its URI's path and query, its headers and body) and reads the answer.
fn exchange(server: &TestServer, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
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
fn fetch(server: &TestServer, request: &TokenRequest) -> Result<Token, crate::error::Error> {
    let mut fetch = TokenFetch::new(request);
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
    parse_all(headers)
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

// ---------------------------------------------------------------------------------------------
// Bearer tokens at the resource (RFC 6750).

#[test]
fn a_bearer_token_gets_200_with_what_the_resource_saw() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let mut request = with_bearer(api(&server, Method::PUT, "/api/things/1?x=2"), &token);
    *request.body_mut() = b"twelve bytes".to_vec();
    let response = exchange(&server, &request);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(&response),
        json!({
            "client_id": DEMO_CLIENT_ID,
            "scope": "read",
            "method": "PUT",
            "path": "/api/things/1",
            "body_len": 12,
            "token_type": "Bearer",
        })
    );
    let grant = server
        .check_access(&Method::GET, &"/api/x".parse().unwrap(), request.headers())
        .unwrap();
    assert_eq!(grant.client_id(), DEMO_CLIENT_ID);
    assert_eq!(grant.scopes(), ["read"]);
    assert!(grant.has_scope("read") && !grant.has_scope("write"));
    assert_eq!(grant.token_type(), &TokenType::Bearer);
    assert_eq!(grant.issuer(), server.url(""));
    assert_eq!(grant.jkt(), None);
    assert!(!format!("{grant:?}").contains(token.secret()));
}

#[test]
fn no_credentials_get_401_with_bare_challenges_rfc6750_3_1() {
    let server = TestServer::start();
    for authorization in [None, Some("Basic ZGVtbzpzZWNyZXQ="), Some("Negotiate abc")] {
        let mut request = api(&server, Method::GET, "/api/x");
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, value.parse().unwrap());
        }
        let response = exchange(&server, &request);
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        let header = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            header.starts_with(r#"Bearer realm="test-server", DPoP realm="test-server""#),
            "{header}"
        );
        assert!(!header.contains("error"), "{header}");
        let refusal = server
            .check_access(&Method::GET, &"/api/x".parse().unwrap(), request.headers())
            .unwrap_err();
        assert_eq!(refusal.error(), None);
        assert_eq!(refusal.www_authenticate(), header);
        assert!(
            refusal.to_string().contains("carries no access token"),
            "{refusal}"
        );
    }
}

#[test]
fn a_malformed_authorization_is_400_invalid_request() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let mut twice = with_bearer(api(&server, Method::GET, "/api/x"), &token);
    twice.headers_mut().append(
        AUTHORIZATION,
        format!("Bearer {}", token.secret()).parse().unwrap(),
    );
    assert_refused(&exchange(&server, &twice), 400, "Bearer", "invalid_request");
    for value in [
        "Bearer",
        "Bearer  ",
        "Bearer a b",
        "Bearer ===",
        "Bearer a,b",
    ] {
        let mut request = api(&server, Method::GET, "/api/x");
        request
            .headers_mut()
            .insert(AUTHORIZATION, value.parse().unwrap());
        assert_refused(
            &exchange(&server, &request),
            400,
            "Bearer",
            "invalid_request",
        );
    }
}

#[test]
fn unknown_and_forged_tokens_are_invalid_token() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let other = TestServer::start();
    let foreign = bearer_token(&other);
    // The same claims with a scope added: an unsecured JWT proves nothing, so only the very
    // token issued is accepted.
    let mut forged = claims(&token);
    forged["scope"] = json!("read write");
    let forged = AccessToken::new(format!(
        "{}.{}.",
        token.secret().split('.').next().unwrap(),
        URL_SAFE_NO_PAD.encode(forged.to_string())
    ));
    for bad in [AccessToken::new("opaque-and-unknown"), foreign, forged] {
        let response = exchange(
            &server,
            &with_bearer(api(&server, Method::GET, "/api/x"), &bad),
        );
        assert_refused(&response, 401, "Bearer", "invalid_token");
        assert!(
            body(&response)["error_description"]
                .as_str()
                .unwrap()
                .contains("unknown")
        );
    }
}

#[test]
fn a_revoked_token_is_invalid_token() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let kept = bearer_token(&server);
    let request = with_bearer(api(&server, Method::GET, "/api/x"), &token);
    assert_eq!(exchange(&server, &request).status(), StatusCode::OK);
    assert!(server.revoke(&token));
    assert!(!server.revoke(&token), "already revoked");
    assert!(!server.revoke(&AccessToken::new("never-issued")));
    let response = exchange(&server, &request);
    assert_refused(&response, 401, "Bearer", "invalid_token");
    assert_eq!(
        body(&response)["error_description"],
        json!("the token was revoked")
    );
    let kept_request = with_bearer(api(&server, Method::GET, "/api/x"), &kept);
    assert_eq!(exchange(&server, &kept_request).status(), StatusCode::OK);
    assert_eq!(server.revoke_all(), 1);
    assert_refused(
        &exchange(&server, &kept_request),
        401,
        "Bearer",
        "invalid_token",
    );
    assert_eq!(server.revoke_all(), 0);
}

#[test]
fn an_expired_token_is_invalid_token() {
    let server = TestServer::builder().expires_in(Some(0)).start();
    let token = bearer_token(&server);
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), &token),
    );
    assert_refused(&response, 401, "Bearer", "invalid_token");
    assert_eq!(
        body(&response)["error_description"],
        json!("the token expired")
    );
    // Without `expires_in`, tokens never expire.
    let server = TestServer::builder().expires_in(None).start();
    let token = bearer_token(&server);
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), &token),
    );
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn a_scoped_path_needs_its_scope_rfc6750_3_1() {
    let server = TestServer::start();
    let token = bearer_token(&server); // scope "read"
    let allowed = with_bearer(api(&server, Method::GET, "/api/scope/read/items"), &token);
    assert_eq!(exchange(&server, &allowed).status(), StatusCode::OK);
    let denied = with_bearer(api(&server, Method::POST, "/api/scope/write/items"), &token);
    let response = exchange(&server, &denied);
    assert_refused(&response, 403, "Bearer", "insufficient_scope");
    assert_eq!(
        challenge(response.headers(), "Bearer").param("scope"),
        Some("write")
    );
    let refusal = server
        .check_access(&Method::POST, denied.uri(), denied.headers())
        .unwrap_err();
    assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
    assert_eq!(refusal.scope(), Some("write"));
    // Percent-encoded scopes are decoded.
    let server = TestServer::builder()
        .client(TestClient::new("c", "s").scopes(["api:read"]))
        .start();
    let client = crate::request::ClientCredentials::new(
        server.token_url(),
        "c",
        crate::secret::ClientSecret::new("s"),
    );
    let token = fetch(&server, &client.token_request().build().unwrap()).unwrap();
    let request = with_bearer(
        api(&server, Method::GET, "/api/scope/api%3Aread/x"),
        token.access_token(),
    );
    assert_eq!(exchange(&server, &request).status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// DPoP at the token endpoint (RFC 9449 §5, §8).

#[test]
fn a_proof_at_the_token_endpoint_binds_the_token_rfc9449_5() {
    let server = TestServer::start();
    let (_, key) = es256_key();
    let token = dpop_token(&server, &key);
    assert_eq!(token.token_type(), &TokenType::DPoP);
    assert_eq!(
        claims(token.access_token())["cnf"],
        json!({ "jkt": key.thumbprint() })
    );
    let response = exchange(
        &server,
        &with_dpop(
            api(&server, Method::DELETE, "/api/a/b"),
            &key,
            token.access_token(),
        ),
    );
    assert_eq!(response.status(), StatusCode::OK, "{:?}", body(&response));
    assert_eq!(body(&response)["token_type"], json!("DPoP"));
    assert_eq!(body(&response)["method"], json!("DELETE"));
    // Every key the crate signs with.
    for algorithm in [
        JwsAlgorithm::EdDsa,
        JwsAlgorithm::Rs256,
        JwsAlgorithm::Ps256,
    ] {
        let key = DpopKey::new(PrivateKey::generate(algorithm.clone()).unwrap()).unwrap();
        let token = dpop_token(&server, &key);
        let request = with_dpop(
            api(&server, Method::GET, "/api/x"),
            &key,
            token.access_token(),
        );
        assert_eq!(
            exchange(&server, &request).status(),
            StatusCode::OK,
            "{algorithm}"
        );
        // A fresh proof: the one above has been used.
        let fresh = with_dpop(
            api(&server, Method::GET, "/api/x"),
            &key,
            token.access_token(),
        );
        let grant = server
            .check_access(&Method::GET, fresh.uri(), fresh.headers())
            .unwrap();
        assert_eq!(grant.jkt(), Some(key.thumbprint()), "{algorithm}");
        assert_eq!(grant.token_type(), &TokenType::DPoP);
    }
}

#[test]
fn a_bad_proof_at_the_token_endpoint_is_invalid_dpop_proof() {
    let server = TestServer::start();
    let (private, key) = es256_key();
    let request = server
        .demo_credentials()
        .with_dpop(key)
        .token_request()
        .build()
        .unwrap();
    let good = request.http_request(&attempt()).unwrap();
    let (parts, body_bytes) = good.into_parts();
    let mut raw = Request::from_parts(parts, body_bytes.secret().to_vec());
    let claims =
        json!({"jti": jti(), "htm": "POST", "htu": server.url("/token"), "iat": unix(now())});
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_value(&private)});
    let wrong_htu =
        json!({"jti": jti(), "htm": "POST", "htu": server.url("/other"), "iat": unix(now())});
    for proof in [
        "not-a-jwt".to_owned(),
        craft(
            &private,
            &json!({"typ": "JWT", "alg": "ES256", "jwk": jwk_value(&private)}),
            &claims,
        ),
        craft(&private, &header, &wrong_htu),
    ] {
        raw.headers_mut().insert("dpop", proof.parse().unwrap());
        let response = exchange(&server, &raw);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(&response)["error"], json!("invalid_dpop_proof"));
    }
    // A proof is good once.
    let proof = craft(&private, &header, &claims);
    raw.headers_mut().insert("dpop", proof.parse().unwrap());
    assert_eq!(exchange(&server, &raw).status(), StatusCode::OK);
    let replay = exchange(&server, &raw);
    assert_eq!(body(&replay)["error"], json!("invalid_dpop_proof"));
    assert!(
        body(&replay)["error_description"]
            .as_str()
            .unwrap()
            .contains("jti")
    );
}

#[test]
fn a_dpop_bound_client_must_send_a_proof_rfc9449_5_2() {
    let server = TestServer::builder()
        .client(
            TestClient::new("bound", "s")
                .scopes(["read"])
                .dpop_bound(true),
        )
        .start();
    let client = crate::request::ClientCredentials::new(
        server.token_url(),
        "bound",
        crate::secret::ClientSecret::new("s"),
    );
    let error = fetch(&server, &client.token_request().build().unwrap()).unwrap_err();
    let oauth = error.oauth().expect("an OAuth error");
    assert_eq!(oauth.code(), &ErrorCode::InvalidDpopProof);
    assert_eq!(oauth.status(), StatusCode::BAD_REQUEST);
    let (_, key) = es256_key();
    let token = fetch(
        &server,
        &client.with_dpop(key).token_request().build().unwrap(),
    )
    .unwrap();
    assert_eq!(token.token_type(), &TokenType::DPoP);
}

#[test]
fn a_required_token_nonce_is_asked_for_then_accepted_rfc9449_8() {
    let server = TestServer::start();
    server.require_token_nonce(true);
    let (_, key) = es256_key();
    let request = server
        .demo_credentials()
        .with_dpop(key.clone())
        .token_request()
        .build()
        .unwrap();
    let first = send_token_request(&server, &request, &attempt());
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(&first)["error"], json!("use_dpop_nonce"));
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let error = request.parse_response(&first, now()).unwrap_err();
    assert_eq!(error.dpop_retry_nonce(), Some(nonce.as_str()));
    let wrong = send_token_request(&server, &request, &attempt().with_dpop_nonce("stale"));
    assert_eq!(body(&wrong)["error"], json!("use_dpop_nonce"));
    let retry = send_token_request(&server, &request, &attempt().with_dpop_nonce(&nonce));
    assert_eq!(retry.status(), StatusCode::OK, "{:?}", body(&retry));
    assert_eq!(retry.headers()["dpop-nonce"], nonce.as_str());
    // The core's loop retries once by itself.
    let before = server.token_requests();
    let token = fetch(&server, &request).unwrap();
    assert_eq!(token.token_type(), &TokenType::DPoP);
    assert_eq!(
        server.token_requests() - before,
        2,
        "use_dpop_nonce, then the token"
    );
}

// ---------------------------------------------------------------------------------------------
// DPoP at the resource (RFC 9449 §7), one check at a time.

#[test]
fn a_dpop_bound_token_needs_its_scheme_and_a_bearer_token_its_own() {
    let server = TestServer::start();
    let (_, key) = es256_key();
    let bound = dpop_token(&server, &key);
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), bound.access_token()),
    );
    assert_refused(&response, 401, "Bearer", "invalid_token");
    assert!(
        body(&response)["error_description"]
            .as_str()
            .unwrap()
            .contains("DPoP-bound")
    );
    let plain = bearer_token(&server);
    let response = exchange(
        &server,
        &with_dpop(api(&server, Method::GET, "/api/x"), &key, &plain),
    );
    assert_refused(&response, 401, "DPoP", "invalid_token");
    // The DPoP scheme without a proof.
    let mut request = with_dpop(
        api(&server, Method::GET, "/api/x"),
        &key,
        bound.access_token(),
    );
    request.headers_mut().remove("dpop");
    assert_refused(
        &exchange(&server, &request),
        401,
        "DPoP",
        "invalid_dpop_proof",
    );
}

/// A DPoP-bound token, its key, and a proof for the resource made from these claims.
struct Bound {
    server: TestServer,
    private: Arc<PrivateKey>,
    token: AccessToken,
}

impl Bound {
    fn new() -> Self {
        let server = TestServer::start();
        let (private, key) = es256_key();
        let token = dpop_token(&server, &key).access_token().clone();
        Self {
            server,
            private,
            token,
        }
    }

    fn claims(&self, path: &str) -> Value {
        json!({
            "jti": jti(),
            "htm": "GET",
            "htu": self.server.url(path),
            "iat": unix(now()),
            "ath": ath(&self.token),
        })
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_value(&self.private)})
    }

    /// GET `/api/x` with this proof.
    fn send(&self, proof: &str) -> Response<Vec<u8>> {
        let mut request = api(&self.server, Method::GET, "/api/x");
        request.headers_mut().insert(
            AUTHORIZATION,
            format!("DPoP {}", self.token.secret()).parse().unwrap(),
        );
        request.headers_mut().insert("dpop", proof.parse().unwrap());
        exchange(&self.server, &request)
    }

    fn refused(&self, proof: &str, says: &str) {
        let response = self.send(proof);
        assert_refused(&response, 401, "DPoP", "invalid_dpop_proof");
        let description = body(&response)["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            description.contains(says),
            "{description:?} should say {says:?}"
        );
    }
}

#[test]
fn the_resource_checks_each_claim_of_the_proof_rfc9449_4_3() {
    let bound = Bound::new();
    let header = bound.header();
    let good = bound.claims("/api/x");
    assert_eq!(
        bound.send(&craft(&bound.private, &header, &good)).status(),
        StatusCode::OK
    );

    let with = |name: &str, value: Value| {
        let mut claims = bound.claims("/api/x");
        claims[name] = value;
        craft(&bound.private, &header, &claims)
    };
    bound.refused(&with("htm", json!("POST")), "htm");
    bound.refused(&with("htu", json!(bound.server.url("/api/y"))), "htu");
    bound.refused(&with("htu", json!("http://localhost:1/api/x")), "htu");
    bound.refused(
        &with("ath", json!(ath(&AccessToken::new("another")))),
        "ath",
    );
    let stale = unix(now()) - DPOP_PROOF_WINDOW - 5;
    bound.refused(&with("iat", json!(stale)), "iat");
    bound.refused(
        &with("iat", json!(unix(now()) + DPOP_PROOF_WINDOW + 5)),
        "iat",
    );
    let mut no_ath = bound.claims("/api/x");
    no_ath.as_object_mut().unwrap().remove("ath");
    bound.refused(&craft(&bound.private, &header, &no_ath), "ath");
    // The query is not part of `htu`; scheme and host compare case-insensitively.
    let upper = bound.server.url("/api/x").replace("http://", "HTTP://");
    assert_eq!(
        bound.send(&with("htu", json!(upper))).status(),
        StatusCode::OK
    );
    assert_eq!(
        bound
            .send(&with(
                "htu",
                json!(format!("{}?q=1", bound.server.url("/api/x")))
            ))
            .status(),
        StatusCode::OK
    );

    // Replay: the same proof twice.
    let once = craft(&bound.private, &header, &bound.claims("/api/x"));
    assert_eq!(bound.send(&once).status(), StatusCode::OK);
    bound.refused(&once, "jti");
}

#[test]
fn the_resource_checks_the_proofs_form_key_and_signature_rfc9449_4_3() {
    let bound = Bound::new();
    let claims = bound.claims("/api/x");
    let jwk = jwk_value(&bound.private);
    bound.refused(
        &craft(
            &bound.private,
            &json!({"typ": "jwt", "alg": "ES256", "jwk": jwk}),
            &claims,
        ),
        "typ",
    );
    bound.refused(
        &craft(
            &bound.private,
            &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}),
            &claims,
        ),
        "alg",
    );
    bound.refused(
        &craft(
            &bound.private,
            &json!({"typ": "dpop+jwt", "alg": "ES256"}),
            &claims,
        ),
        "jwk",
    );
    let mut private_member = jwk.clone();
    private_member["d"] = json!("AAAA");
    bound.refused(
        &craft(
            &bound.private,
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private_member}),
            &claims,
        ),
        "private",
    );
    // Signed by another key than the one in the header.
    let (other, other_key) = es256_key();
    bound.refused(
        &craft(&other, &bound.header(), &bound.claims("/api/x")),
        "signature",
    );
    // A good proof by another key: not the key the token is bound to.
    let proof = other_key
        .proof(
            &Method::GET,
            &bound.server.url("/api/x").parse().unwrap(),
            &attempt(),
            Some(&bound.token),
        )
        .unwrap();
    bound.refused(proof.to_str().unwrap(), "cnf.jkt");
    // `alg: none`, and a mangled signature.
    let input = craft(&bound.private, &bound.header(), &bound.claims("/api/x"));
    let (signed, _) = input.rsplit_once('.').unwrap();
    bound.refused(&format!("{signed}."), "signature");
    bound.refused(&format!("{signed}.AAAA"), "signature");
    bound.refused("a.b", "JWS");
    // Two DPoP headers.
    let mut request = api(&bound.server, Method::GET, "/api/x");
    request.headers_mut().insert(
        AUTHORIZATION,
        format!("DPoP {}", bound.token.secret()).parse().unwrap(),
    );
    for _ in 0..2 {
        let proof = craft(&bound.private, &bound.header(), &bound.claims("/api/x"));
        request.headers_mut().append("dpop", proof.parse().unwrap());
    }
    assert_refused(
        &exchange(&bound.server, &request),
        401,
        "DPoP",
        "invalid_dpop_proof",
    );
}

#[test]
fn a_required_resource_nonce_is_asked_for_and_rotates_rfc9449_9() {
    let server = TestServer::start();
    let (_, key) = es256_key();
    let token = dpop_token(&server, &key);
    server.require_resource_nonce(true);
    let response = exchange(
        &server,
        &with_dpop(
            api(&server, Method::GET, "/api/x"),
            &key,
            token.access_token(),
        ),
    );
    assert_refused(&response, 401, "DPoP", "use_dpop_nonce");
    let nonce = resource_dpop_retry_nonce(response.status(), response.headers()).expect("a nonce");
    assert_eq!(response.headers()["dpop-nonce"], nonce.as_str());

    let mut request = api(&server, Method::GET, "/api/x");
    key.authorize(
        &mut request,
        token.access_token(),
        &attempt().with_dpop_nonce(&nonce),
    )
    .unwrap();
    let response = exchange(&server, &request);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["dpop-nonce"], nonce.as_str());

    server.rotate_resource_nonce();
    let mut request = api(&server, Method::GET, "/api/x");
    key.authorize(
        &mut request,
        token.access_token(),
        &attempt().with_dpop_nonce(&nonce),
    )
    .unwrap();
    let response = exchange(&server, &request);
    let fresh =
        resource_dpop_retry_nonce(response.status(), response.headers()).expect("a new nonce");
    assert_ne!(fresh, nonce);
    let without_nonce = with_dpop(
        api(&server, Method::GET, "/api/x"),
        &key,
        token.access_token(),
    );
    let refusal = server
        .check_access(&Method::GET, without_nonce.uri(), without_nonce.headers())
        .unwrap_err();
    assert_eq!(refusal.error(), Some("use_dpop_nonce"));
    assert_eq!(refusal.dpop_nonce(), Some(fresh.as_str()));
    assert_eq!(refusal.headers()["dpop-nonce"], fresh.as_str());

    server.require_resource_nonce(false);
    let request = with_dpop(
        api(&server, Method::GET, "/api/x"),
        &key,
        token.access_token(),
    );
    let response = exchange(&server, &request);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("dpop-nonce").is_none());
}

#[test]
fn check_access_takes_an_absolute_uri_for_a_server_of_your_own() {
    let server = TestServer::start();
    let (_, key) = es256_key();
    let token = dpop_token(&server, &key);
    let uri: Uri = "http://127.0.0.1:50051/pkg.Service/Method".parse().unwrap();
    let mut request = Request::post(uri.clone()).body(()).unwrap();
    key.authorize(&mut request, token.access_token(), &attempt())
        .unwrap();
    let grant = server
        .check_access(&Method::POST, &uri, request.headers())
        .unwrap();
    assert_eq!(grant.token_type(), &TokenType::DPoP);
    // The path alone is taken as on the test server, whose URL the proof does not name.
    let mut request = Request::post(uri.clone()).body(()).unwrap();
    key.authorize(&mut request, token.access_token(), &attempt())
        .unwrap();
    let refusal = server
        .check_access(
            &Method::POST,
            &"/pkg.Service/Method".parse().unwrap(),
            request.headers(),
        )
        .unwrap_err();
    assert_eq!(refusal.error(), Some("invalid_dpop_proof"));
    assert!(
        refusal
            .to_string()
            .starts_with("the resource refused the request with 401 invalid_dpop_proof: "),
        "{refusal}"
    );
    let debug = format!("{refusal:?}");
    assert!(!debug.contains(token.access_token().secret()));
}

// ---------------------------------------------------------------------------------------------
// Trusted issuers (RFC 9068 JWT access tokens).

const ISSUER: &str = "https://as.example.com";
const AUDIENCE: &str = "https://api.example.com/";

fn jwks(key: &PrivateKey, kid: &str) -> String {
    let mut jwk = jwk_value(key);
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "enc", "x": "x", "y": "y"}, jwk]})
        .to_string()
}

fn jwt_access_token(key: &PrivateKey, kid: &str, claims: Value) -> AccessToken {
    let alg = key.algorithm().as_str().to_owned();
    AccessToken::new(craft(
        key,
        &json!({"typ": "at+jwt", "alg": alg, "kid": kid}),
        &claims,
    ))
}

fn external_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "other"],
        "client_id": "external-client",
        "sub": "external-client",
        "scope": "api:read api:write",
        "iat": unix(now()),
        "exp": unix(now()) + 60,
        "jti": jti(),
    })
}

#[test]
fn a_trusted_issuers_jwt_access_token_is_accepted() {
    let key = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let server = TestServer::builder()
        .trust_issuer(ISSUER, &jwks(&key, "k1"), AUDIENCE)
        .unwrap()
        .start();
    let token = jwt_access_token(&key, "k1", external_claims());
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/scope/api:write/x"), &token),
    );
    assert_eq!(response.status(), StatusCode::OK, "{:?}", body(&response));
    assert_eq!(body(&response)["client_id"], json!("external-client"));
    assert_eq!(body(&response)["scope"], json!("api:read api:write"));
    let grant = server
        .check_access(&Method::GET, &"/api/x".parse().unwrap(), &{
            let mut headers = HeaderMap::new();
            headers.insert(
                AUTHORIZATION,
                format!("Bearer {}", token.secret()).parse().unwrap(),
            );
            headers
        })
        .unwrap();
    assert_eq!(grant.issuer(), ISSUER);
    assert!(
        !server.revoke(&token),
        "the server revokes only its own tokens"
    );

    let refused = |claims: Value, kid: &str, signer: &PrivateKey| {
        let token = jwt_access_token(signer, kid, claims);
        let response = exchange(
            &server,
            &with_bearer(api(&server, Method::GET, "/api/x"), &token),
        );
        assert_refused(&response, 401, "Bearer", "invalid_token");
        body(&response)["error_description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut claims = external_claims();
    claims["aud"] = json!("https://elsewhere.example/");
    assert!(refused(claims, "k1", &key).contains("aud"));
    let mut claims = external_claims();
    claims["exp"] = json!(unix(now()) - 1);
    assert!(refused(claims, "k1", &key).contains("expired"));
    let mut claims = external_claims();
    claims["iss"] = json!("https://untrusted.example");
    assert!(refused(claims, "k1", &key).contains("unknown"));
    let other = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    assert!(refused(external_claims(), "k1", &other).contains("signature"));
    assert!(refused(external_claims(), "k2", &key).contains("signature"));
    // Tampered: a claim changed after signing.
    let (head, rest) = token.secret().split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut claims = external_claims();
    claims["scope"] = json!("api:admin");
    let tampered = AccessToken::new(format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    ));
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), &tampered),
    );
    assert_refused(&response, 401, "Bearer", "invalid_token");
}

#[test]
fn a_trusted_issuers_bound_token_needs_the_proof_of_its_key() {
    let signer = PrivateKey::generate(JwsAlgorithm::EdDsa).unwrap();
    let server = TestServer::builder()
        .trust(TrustedIssuer::new(ISSUER, &jwks(&signer, "ed"), AUDIENCE).unwrap())
        .start();
    let (_, key) = es256_key();
    let mut claims = external_claims();
    claims["cnf"] = json!({"jkt": key.thumbprint()});
    let token = jwt_access_token(&signer, "ed", claims);
    let response = exchange(
        &server,
        &with_dpop(api(&server, Method::GET, "/api/x"), &key, &token),
    );
    assert_eq!(response.status(), StatusCode::OK, "{:?}", body(&response));
    assert_eq!(body(&response)["token_type"], json!("DPoP"));
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), &token),
    );
    assert_refused(&response, 401, "Bearer", "invalid_token");
    let (_, other) = es256_key();
    let response = exchange(
        &server,
        &with_dpop(api(&server, Method::GET, "/api/x"), &other, &token),
    );
    assert_refused(&response, 401, "DPoP", "invalid_dpop_proof");
}

#[test]
fn a_malformed_jwks_is_a_typed_error() {
    let key = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let good = jwks(&key, "k1");
    assert!(matches!(
        TrustedIssuer::new(ISSUER, "not json", AUDIENCE),
        Err(JwksError::NotAJwks)
    ));
    assert!(matches!(
        TrustedIssuer::new(ISSUER, "[]", AUDIENCE),
        Err(JwksError::NotAJwks)
    ));
    assert!(matches!(
        TrustedIssuer::new(ISSUER, r#"{"keys":[]}"#, AUDIENCE),
        Err(JwksError::NoSigningKey)
    ));
    assert!(matches!(
        TrustedIssuer::new("", &good, AUDIENCE),
        Err(JwksError::Empty)
    ));
    let mut private = jwk_value(&key);
    private["d"] = json!("c2VjcmV0");
    let error =
        TrustedIssuer::new(ISSUER, &json!({"keys": [private]}).to_string(), AUDIENCE).unwrap_err();
    assert!(matches!(error, JwksError::BadKey { index: 0, .. }));
    assert!(!error.to_string().contains("c2VjcmV0"));
    assert_eq!(
        error.to_string(),
        "key 0 of the JWKS cannot be used: the jwk holds the private member `d`: only a public key may be sent"
    );
    let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    assert!(matches!(
        TrustedIssuer::new(ISSUER, &oct, AUDIENCE),
        Err(JwksError::BadKey { .. })
    ));
    let short =
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}).to_string();
    assert!(matches!(
        TrustedIssuer::new(ISSUER, &short, AUDIENCE),
        Err(JwksError::BadKey { .. })
    ));
    let huge = format!(
        r#"{{"keys":[],"pad":"{}"}}"#,
        "a".repeat(super::trust::MAX_JWKS_LEN)
    );
    assert!(matches!(
        TrustedIssuer::new(ISSUER, &huge, AUDIENCE),
        Err(JwksError::NotAJwks)
    ));
    assert!(
        TestServer::builder()
            .trust_issuer(ISSUER, "{}", AUDIENCE)
            .is_err()
    );
    let trusted = TrustedIssuer::new(ISSUER, &good, AUDIENCE).unwrap();
    assert_eq!(
        format!("{trusted:?}"),
        format!(r#"TrustedIssuer {{ issuer: "{ISSUER}", audience: "{AUDIENCE}", keys: 1 }}"#)
    );
}

// ---------------------------------------------------------------------------------------------
// Counters, faults, limits, bounds.

#[test]
fn counters_and_faults_keep_the_resource_apart() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    assert_eq!(
        (
            server.requests_served(),
            server.token_requests(),
            server.resource_requests()
        ),
        (1, 1, 0)
    );
    server.set_fault(Some(Fault::Status(StatusCode::BAD_GATEWAY)));
    let request = with_bearer(api(&server, Method::GET, "/api/x"), &token);
    assert_eq!(
        exchange(&server, &request).status(),
        StatusCode::OK,
        "token faults skip /api/"
    );
    let faulted = send_token_request(
        &server,
        &server.demo_credentials().token_request().build().unwrap(),
        &attempt(),
    );
    assert_eq!(faulted.status(), StatusCode::BAD_GATEWAY);
    server.set_fault(None);
    server.push_resource_fault(Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        exchange(&server, &request).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(exchange(&server, &request).status(), StatusCode::OK);
    let refused = exchange(&server, &api(&server, Method::GET, "/api/x"));
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        exchange(&server, &api(&server, Method::GET, "/apix")).status(),
        StatusCode::NOT_FOUND
    );
    // 1 token + 1 faulted token request + 4 resource + 1 not found.
    assert_eq!(server.requests_served(), 7);
    assert_eq!(
        server.token_requests(),
        1,
        "a faulted request does not reach the endpoint"
    );
    assert_eq!(server.resource_requests(), 4);
}

#[test]
fn the_resource_reads_the_body_up_to_the_limit() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let mut request = with_bearer(api(&server, Method::POST, "/api/upload"), &token);
    *request.body_mut() = vec![b'a'; super::refusal::MAX_REQUEST_BODY_LEN];
    assert_eq!(
        body(&exchange(&server, &request))["body_len"],
        json!(super::refusal::MAX_REQUEST_BODY_LEN)
    );
    request.body_mut().push(b'a');
    assert_eq!(
        exchange(&server, &request).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn the_registry_forgets_the_oldest_past_its_cap() {
    let registry = Registry::default();
    let issued = Issued {
        client_id: "c".into(),
        scopes: vec![],
        audiences: vec![],
        exp: None,
        jkt: None,
        revoked: false,
    };
    for i in 0..=MAX_ISSUED_TOKENS {
        registry.record(&format!("t{i}"), issued.clone());
    }
    assert_eq!(registry.len(), MAX_ISSUED_TOKENS);
    assert!(registry.lookup("t0").is_none());
    assert!(registry.lookup("t1").is_some());
    assert!(registry.lookup(&format!("t{MAX_ISSUED_TOKENS}")).is_some());
}

#[test]
fn the_replay_store_forgets_the_oldest_past_its_cap() {
    let seen = SeenJtis::default();
    for i in 0..=MAX_DPOP_JTIS {
        assert!(seen.first_use(&format!("j{i}")));
    }
    assert!(!seen.first_use("j1"), "remembered");
    assert!(seen.first_use("j0"), "forgotten, past the cap");
}

#[test]
fn a_proof_for_a_long_lived_test_is_fresh_within_the_window() {
    // The crate's own proofs, built at the attempt's time, pass while within the window.
    let bound = Bound::new();
    let key = DpopKey::from_arc(bound.private.clone()).unwrap();
    let uri: Uri = bound.server.url("/api/x").parse().unwrap();
    let recent = Attempt::new(
        now() - Duration::from_secs(DPOP_PROOF_WINDOW - 10),
        entropy(),
    );
    let proof = key
        .proof(&Method::GET, &uri, &recent, Some(&bound.token))
        .unwrap();
    assert_eq!(bound.send(proof.to_str().unwrap()).status(), StatusCode::OK);
}

proptest::proptest! {
    /// Whatever a request carries, the check of a server that issued nothing refuses it with a
    /// valid `WWW-Authenticate` header, and never panics.
    #[test]
    fn any_credentials_get_a_refusal_with_a_valid_challenge(
        scheme in "(Bearer|DPoP|dpop|Basic)",
        token in "[!-~]{0,80}",
        proof in "[!-~]{0,120}",
        path in "/api/(scope/)?[!-~&&[^?#]]{0,20}",
    ) {
        let access = super::resource::AccessState::new("http://127.0.0.1:1".into(), Vec::new());
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("{scheme} {token}").parse().unwrap());
        headers.insert("dpop", proof.parse().unwrap());
        let uri: Uri = match path.parse() {
            Ok(uri) => uri,
            Err(_) => return Ok(()),
        };
        let refusal = access.check(&Method::GET, &uri, &headers, unix(now())).unwrap_err();
        proptest::prop_assert!(refusal.headers().contains_key(WWW_AUTHENTICATE));
        proptest::prop_assert!(!refusal.to_string().contains(&token) || token.len() < 8);
    }
}
