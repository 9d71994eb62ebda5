//! DPoP end to end against the embedded server: the crate's `DpopKey` and
//! `ClientCredentials::with_dpop` through every adapter to the token endpoint (its nonce
//! required), then the bound token to the protected resource by reqwest, with the resource's
//! nonce retry.

use std::time::SystemTime;

use client_credentials::Attempt;
use client_credentials::auth::{JwsAlgorithm, PrivateKey};
use client_credentials::dpop::{DpopKey, resource_dpop_retry_nonce};
use client_credentials::token::{AccessToken, TokenType};
use client_credentials_test_server::TestServer;
use http::{Method, StatusCode};
use serde_json::Value;
use support::adapters::fetch_all;

use crate::support;

#[allow(clippy::disallowed_methods)] // a proof's `iat` is the real time, as an adapter's is
fn attempt(nonce: Option<&str>) -> Attempt {
    let mut entropy = [0; 32];
    getrandom::fill(&mut entropy).expect("the random source works");
    let attempt = Attempt::new(SystemTime::now(), entropy);
    match nonce {
        Some(nonce) => attempt.with_dpop_nonce(nonce),
        None => attempt,
    }
}

/// GET `url` with the bound token and a fresh proof (with `nonce`), by reqwest.
async fn call(
    key: &DpopKey,
    token: &AccessToken,
    url: &str,
    nonce: Option<&str>,
) -> reqwest::Response {
    let mut request = http::Request::builder()
        .method(Method::GET)
        .uri(url)
        .body(Vec::new())
        .unwrap();
    key.authorize(&mut request, token, &attempt(nonce)).unwrap();
    let client = client_credentials::reqwest::recommended_client();
    client
        .execute(reqwest::Request::try_from(request).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dpop_bound_token_from_every_adapter_opens_the_resource() {
    let server = TestServer::start();
    server.require_token_nonce(true);
    server.require_resource_nonce(true);
    for algorithm in [JwsAlgorithm::Es256, JwsAlgorithm::EdDsa] {
        let key = DpopKey::new(PrivateKey::generate(algorithm.clone()).unwrap()).unwrap();
        let request = server
            .demo_credentials()
            .with_dpop(key.clone())
            .token_request()
            .scope("write")
            .build()
            .unwrap();
        for (name, result) in fetch_all(&request, None).await {
            let token = result.unwrap_or_else(|e| panic!("{name} {algorithm}: {e}"));
            assert_eq!(token.token_type(), &TokenType::DPoP, "{name}");

            let url = server.url("/api/scope/write/items");
            // The first call learns the resource's nonce, the second one uses it.
            let first = call(&key, token.access_token(), &url, None).await;
            assert_eq!(first.status(), StatusCode::UNAUTHORIZED, "{name}");
            let nonce = resource_dpop_retry_nonce(first.status(), first.headers())
                .unwrap_or_else(|| panic!("{name}: a use_dpop_nonce challenge"));
            let retry = call(&key, token.access_token(), &url, Some(&nonce)).await;
            assert_eq!(retry.status(), StatusCode::OK, "{name}");
            let body: Value = serde_json::from_slice(&retry.bytes().await.unwrap()).unwrap();
            assert_eq!(body["token_type"], "DPoP", "{name}");
            assert_eq!(body["scope"], "write", "{name}");
            assert_eq!(body["path"], "/api/scope/write/items", "{name}");
        }
    }
    // For each key, the first exchange gets `use_dpop_nonce`, then the token; the other two
    // adapters' exchanges, in the same session (`fetch_all`'s), know the nonce and send one
    // request.
    assert_eq!(server.token_requests(), 2 * (2 + 1 + 1));
    assert_eq!(server.resource_requests(), 12);
}
