//! Tokens from a real authorization server (oidc-provider) carried by the tower layer (over
//! hyper-util's client) and the reqwest middleware to the embedded resource, which trusts the
//! provider by its JWKS: Bearer tokens of `basic-client`, DPoP-bound ones of `dpop-client`
//! (oidc-provider demands its nonce at the token endpoint; the resource demands its own).

use std::time::Duration;

use bytes::Bytes;
use client_credentials::auth::{JwsAlgorithm, PrivateKey};
use client_credentials::dpop::DpopKey;
use client_credentials::reqwest_middleware::AuthorizeMiddleware;
use client_credentials::tower::AuthorizeLayer;
use client_credentials::{CachePolicy, ClientCredentials, ClientSecret, TokenSource, TokenUrl};
use client_credentials_test_server::TestServer;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Layer as _, ServiceExt as _};

use crate::oidc_provider::{JWT_RESOURCE, issuer, token_endpoint};

/// The embedded resource, trusting oidc-provider's tokens for [`JWT_RESOURCE`].
async fn resource() -> TestServer {
    let issuer = issuer();
    let jwks = reqwest::get(format!("{issuer}/jwks"))
        .await
        .expect("oidc-provider serves its JWKS")
        .text()
        .await
        .unwrap();
    TestServer::builder()
        .trust_issuer(&issuer, &jwks, JWT_RESOURCE)
        .expect("oidc-provider's JWKS is usable")
        .start()
}

fn source(id: &str, secret: &str, key: Option<DpopKey>) -> TokenSource {
    let url = TokenUrl::new(&token_endpoint()).unwrap();
    let mut client = ClientCredentials::new(url, id, ClientSecret::new(secret));
    if let Some(key) = key {
        client = client.with_dpop(key);
    }
    let request = client
        .token_request()
        .scope("api:read")
        .resource(JWT_RESOURCE)
        .build()
        .unwrap();
    TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
        .with_policy(CachePolicy::new().with_invalidate_min_age(Duration::ZERO))
}

/// GET `url` through the tower layer over hyper-util, and through the middleware: both answers.
async fn both(tokens: &TokenSource, url: &str) -> [(StatusCode, Value); 2] {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let tower = AuthorizeLayer::new(tokens.clone()).layer(http);
    let request = http::Request::get(url).body(Full::default()).unwrap();
    let response = tower
        .oneshot(request)
        .await
        .expect("the tower layer's call");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let through_tower = (status, serde_json::from_slice(&body).unwrap_or(Value::Null));

    let middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()))
        .build();
    let response = middleware
        .get(url)
        .send()
        .await
        .expect("the middleware's call");
    let status = response.status();
    let body = response.bytes().await.unwrap();
    let through_middleware = (status, serde_json::from_slice(&body).unwrap_or(Value::Null));
    [through_tower, through_middleware]
}

#[tokio::test]
async fn oidc_provider_bearer_tokens_authorize_calls_through_both_layers() {
    let server = resource().await;
    let tokens = source("basic-client", "basic-secret", None);
    for (status, body) in both(&tokens, &server.url("/api/scope/api:read/things")).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["client_id"], "basic-client");
        assert_eq!(body["token_type"], "Bearer");
    }
    assert_eq!(server.resource_requests(), 2);
    for (status, _) in both(&tokens, &server.url("/api/scope/api:write/things")).await {
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "insufficient_scope, untouched"
        );
    }
    assert_eq!(server.resource_requests(), 4, "a 403 is not retried");
}

#[tokio::test]
async fn oidc_provider_dpop_tokens_authorize_calls_through_both_layers() {
    let server = resource().await;
    server.require_resource_nonce(true);
    let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
    let tokens = source("dpop-client", "dpop-secret", Some(key));
    for (status, body) in both(&tokens, &server.url("/api/things")).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["client_id"], "dpop-client");
        assert_eq!(body["token_type"], "DPoP");
    }
    // Each layer keeps its own resource nonces: each was refused once for want of one.
    assert_eq!(server.resource_requests(), 4);
}
