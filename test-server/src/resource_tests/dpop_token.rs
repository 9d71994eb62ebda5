//! DPoP at the token endpoint (RFC 9449 §5, §8): binding, bad proofs, bound clients, nonces.

use super::*;

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
    let client = client_credentials::ClientCredentials::new(
        server.token_url(),
        "bound",
        client_credentials::ClientSecret::new("s"),
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
