//! oidc-provider's JWT access tokens (RFC 9068) carried to the embedded test server's protected
//! resource, which trusts the provider by its JWKS (`TestServerBuilder::trust_issuer`): a Bearer
//! token of `basic-client` and a DPoP-bound one of `dpop-client` open it, a tampered token
//! does not.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials::auth::{JwsAlgorithm, PrivateKey};
use client_credentials::dpop::DpopKey;
use client_credentials::reqwest::TIMEOUT;
use client_credentials::token::{AccessToken, TokenType};
use client_credentials::{Attempt, ClientCredentials, ClientSecret, Token, TokenUrl};
use client_credentials_test_server::TestServer;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use serde_json::Value;

use crate::oidc_provider::{JWT_RESOURCE, issuer, token_endpoint};

async fn token(id: &str, secret: &str, key: Option<&DpopKey>) -> Token {
    let url = TokenUrl::new(&token_endpoint()).unwrap();
    let mut client = ClientCredentials::new(url, id, ClientSecret::new(secret));
    if let Some(key) = key {
        client = client.with_dpop(key.clone());
    }
    let request = client
        .token_request()
        .scope("api:read")
        .resource(JWT_RESOURCE)
        .build()
        .unwrap();
    let http = client_credentials::reqwest::recommended_client();
    client_credentials::reqwest::fetch_token(&http, &request, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{id} gets a token from oidc-provider: {e}"))
}

#[allow(clippy::disallowed_methods)] // a proof's `iat` is the real time
fn attempt() -> Attempt {
    let mut entropy = [0; 32];
    getrandom::fill(&mut entropy).unwrap();
    Attempt::new(SystemTime::now(), entropy)
}

/// GET `path` of the embedded server with `token` (by DPoP when a key is given); the status,
/// the `WWW-Authenticate` header and the body.
async fn call(
    server: &TestServer,
    path: &str,
    token: &AccessToken,
    key: Option<&DpopKey>,
) -> (StatusCode, String, Value) {
    let mut request = http::Request::builder()
        .method(Method::GET)
        .uri(server.url(path))
        .body(Vec::new())
        .unwrap();
    match key {
        Some(key) => key.authorize(&mut request, token, &attempt()).unwrap(),
        None => {
            let value = format!("Bearer {}", token.secret()).parse().unwrap();
            request.headers_mut().insert(AUTHORIZATION, value);
        }
    }
    let client = client_credentials::reqwest::recommended_client();
    let response = client
        .execute(reqwest::Request::try_from(request).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, challenge, body)
}

/// The token with one claim's value changed, its signature kept.
fn tampered(token: &AccessToken) -> AccessToken {
    let parts: Vec<&str> = token.secret().split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = Value::from("api:read api:write api:admin");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    AccessToken::new(format!("{}.{payload}.{}", parts[0], parts[2]))
}

#[tokio::test]
async fn oidc_provider_tokens_open_the_embedded_resource_by_its_jwks() {
    let issuer = issuer();
    let jwks = reqwest::get(format!("{issuer}/jwks"))
        .await
        .expect("oidc-provider serves its JWKS")
        .text()
        .await
        .unwrap();
    let server = TestServer::builder()
        .trust_issuer(&issuer, &jwks, JWT_RESOURCE)
        .expect("oidc-provider's JWKS is usable")
        .start();

    let bearer = token("basic-client", "basic-secret", None).await;
    assert_eq!(bearer.token_type(), &TokenType::Bearer);
    let (status, _, body) = call(
        &server,
        "/api/scope/api:read/x",
        bearer.access_token(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], "basic-client");
    assert_eq!(body["scope"], "api:read");
    assert_eq!(body["token_type"], "Bearer");
    let (status, challenge, _) = call(
        &server,
        "/api/scope/api:write/x",
        bearer.access_token(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{challenge}");
    let (status, challenge, body) =
        call(&server, "/api/x", &tampered(bearer.access_token()), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.starts_with(r#"Bearer realm="test-server", error="invalid_token""#),
        "{challenge}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );

    let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
    let bound = token("dpop-client", "dpop-secret", Some(&key)).await;
    assert_eq!(bound.token_type(), &TokenType::DPoP);
    let (status, _, body) = call(&server, "/api/x", bound.access_token(), Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], "dpop-client");
    assert_eq!(body["token_type"], "DPoP");
    let (status, challenge, _) = call(&server, "/api/x", bound.access_token(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let other = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
    let (status, challenge, _) = call(&server, "/api/x", bound.access_token(), Some(&other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(r#"DPoP realm="test-server", error="invalid_dpop_proof""#),
        "{challenge}"
    );
    let (status, _, _) = call(
        &server,
        "/api/x",
        &tampered(bound.access_token()),
        Some(&key),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
