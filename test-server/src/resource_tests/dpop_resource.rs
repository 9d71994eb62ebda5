//! DPoP at the resource (RFC 9449 §7, §9), one check at a time.

use super::*;

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
