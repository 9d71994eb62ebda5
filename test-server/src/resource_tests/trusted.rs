//! Trusted issuers: JWT access tokens (RFC 9068) signed by a key of their JWKS.

use super::*;

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
        "a".repeat(crate::trust::MAX_JWKS_LEN)
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
