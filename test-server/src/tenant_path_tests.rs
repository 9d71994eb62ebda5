//! The token endpoint at Entra ID's v2.0 path, `/{tenant}/oauth2/v2.0/token`: the same
//! endpoint as `/token`, its DPoP `htu` and own-assertion `aud` checked against the URL
//! requested.

use std::sync::Arc;
use std::time::SystemTime;

use client_credentials::auth::{ClientAuth, JwsAlgorithm, JwtAuth, PrivateKey};
use client_credentials::dpop::DpopKey;
use client_credentials::{Attempt, ClientCredentials, ClientSecret, TokenRequest, TokenUrl};
use http::Request;
use serde_json::Value;

use super::client::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, TestClient};
use super::endpoint::is_token_path;
use super::resource_tests::exchange;
use super::server::TestServer;

const TENANT_PATH: &str = "/tenant-1/oauth2/v2.0/token";

/// Sends `request`, signed now, to `path` on `server` (whatever its token URL says), returning
/// the status and the JSON body.
fn send_to(server: &TestServer, request: &TokenRequest, path: &str) -> (u16, Value) {
    // The test stands for the client's clock: its assertion and proof are stamped now.
    #[allow(clippy::disallowed_methods)]
    let attempt = Attempt::new(SystemTime::now(), [7; 32]);
    let (mut parts, body) = request.http_request(&attempt).unwrap().into_parts();
    parts.uri = path.parse().unwrap();
    let answer = exchange(server, &Request::from_parts(parts, body.secret().to_vec()));
    let status = answer.status().as_u16();
    (
        status,
        serde_json::from_slice(answer.body()).unwrap_or(Value::Null),
    )
}

fn key() -> PrivateKey {
    PrivateKey::generate(JwsAlgorithm::Es256).unwrap()
}

/// A server with a `private_key_jwt` client `svc` allowed `read`, and that client's key.
fn server_and_key() -> (TestServer, Arc<PrivateKey>) {
    let key = Arc::new(key());
    let jwks = format!(r#"{{"keys":[{}]}}"#, key.public_jwk().to_json());
    let server = TestServer::builder()
        .client(
            TestClient::secretless("svc")
                .scopes(["read"])
                .assertion_jwks(&jwks)
                .unwrap(),
        )
        .start();
    (server, key)
}

/// Client `svc`'s request at `token_url`, its assertion signed by `key`.
fn jwt_request(token_url: &str, key: &Arc<PrivateKey>) -> TokenRequest {
    ClientCredentials::with_auth(
        TokenUrl::new(token_url).unwrap(),
        "svc",
        ClientAuth::Jwt(JwtAuth::from_arc(key.clone())),
    )
    .unwrap()
    .token_request()
    .scope("read")
    .build()
    .unwrap()
}

/// The demo client at `token_url`, its tokens DPoP-bound by a fresh key.
fn dpop_request(token_url: &str) -> TokenRequest {
    ClientCredentials::new(
        TokenUrl::new(token_url).unwrap(),
        DEMO_CLIENT_ID,
        ClientSecret::new(DEMO_CLIENT_SECRET),
    )
    .with_dpop(DpopKey::new(key()).unwrap())
    .token_request()
    .build()
    .unwrap()
}

#[test]
fn the_token_path_is_token_or_one_tenant_segment_then_oauth2_v2_0_token() {
    for path in [
        "/token",
        TENANT_PATH,
        "/contoso.onmicrosoft.com/oauth2/v2.0/token",
    ] {
        assert!(is_token_path(path), "{path}");
    }
    for path in [
        "//oauth2/v2.0/token",
        "/a/b/oauth2/v2.0/token",
        "/oauth2/v2.0/token",
        "/tenant-1/oauth2/v2.0/token/",
        "/tenant-1/oauth2/token",
        "/token/",
        "/api/token",
    ] {
        assert!(!is_token_path(path), "{path}");
    }
}

#[test]
fn the_tenant_path_issues_tokens_and_counts_as_the_token_endpoint() {
    let (server, key) = server_and_key();
    let url = server.url(TENANT_PATH);
    let (status, body) = send_to(&server, &jwt_request(&url, &key), TENANT_PATH);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read");
    assert_eq!(server.token_requests(), 1);
    // Two tenant segments, or none, are no token endpoint.
    let (status, _) = send_to(&server, &jwt_request(&url, &key), "/a/b/oauth2/v2.0/token");
    assert_eq!(status, 404);
    assert_eq!(server.token_requests(), 1);
}

#[test]
fn an_own_assertion_must_name_the_url_requested() {
    let (server, key) = server_and_key();
    // Made for /token, sent to the tenant path: its aud names neither the issuer nor this URL.
    let for_token = jwt_request(&server.url("/token"), &key);
    let (status, body) = send_to(&server, &for_token, TENANT_PATH);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(TENANT_PATH), "{description}");
    // And the other way round.
    let for_tenant = jwt_request(&server.url(TENANT_PATH), &key);
    let (status, body) = send_to(&server, &for_tenant, "/token");
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[test]
fn a_dpop_proof_must_name_the_url_requested() {
    let server = TestServer::start();
    let url = server.url(TENANT_PATH);
    let (status, body) = send_to(&server, &dpop_request(&url), TENANT_PATH);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");

    let for_token = dpop_request(&server.url("/token"));
    let (status, body) = send_to(&server, &for_token, TENANT_PATH);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("htu"), "{description}");
    assert!(description.contains(TENANT_PATH), "{description}");
}
