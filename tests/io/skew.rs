//! A server whose clock disagrees with the client's (±10 minutes): it refuses the first,
//! unskewed assertion, and every adapter and the token source recover from that one refusal by
//! the server's `Date`, signing the retry (assertion and DPoP proof) on the server's time. And
//! federation: another issuer's token as the client assertion, through every adapter.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use client_credentials::auth::{
    ClientAssertion, ClientAuth, JwsAlgorithm, JwsSigner, JwtAuth, PrivateKey,
};
use client_credentials::dpop::DpopKey;
use client_credentials::fetch::{Session, is_refusal_about_time};
use client_credentials::token::TokenType;
use client_credentials::{ClientCredentials, TokenRequest};
use client_credentials_test_server::{FederatedCredential, TestClient, TestServer};
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::support::adapters::Adapter;

const SKEWS: [i64; 2] = [600, -600];

/// A server skewed by `skew` seconds with a `private_key_jwt` client `svc`, and that client's
/// request, DPoP-bound when `dpop` is set.
fn skewed(skew: i64, dpop: bool) -> (TestServer, TokenRequest) {
    let key = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let jwks = format!(r#"{{"keys":[{}]}}"#, key.public_jwk().to_json());
    let server = TestServer::builder()
        .clock_skew(skew)
        .client(
            TestClient::secretless("svc")
                .scopes(["read"])
                .assertion_jwks(&jwks)
                .unwrap(),
        )
        .start();
    let mut client = ClientCredentials::with_auth(
        server.token_url(),
        "svc",
        ClientAuth::Jwt(JwtAuth::new(key)),
    )
    .unwrap();
    if dpop {
        let proof_key = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
        client = client.with_dpop(DpopKey::new(proof_key).unwrap());
    }
    let request = client.token_request().scope("read").build().unwrap();
    (server, request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adapter_recovers_from_the_first_refusal_of_a_skewed_server() {
    for skew in SKEWS {
        for dpop in [false, true] {
            for adapter in Adapter::all(None) {
                let name = adapter.name();
                let (server, request) = skewed(skew, dpop);
                let session = Session::new();
                let token = adapter
                    .fetch_in(&request, &session)
                    .await
                    .unwrap_or_else(|e| panic!("{name}, skew {skew}, dpop {dpop}: {e}"));
                assert_eq!(token.scope(), Some("read"));
                let kind = if dpop {
                    TokenType::DPoP
                } else {
                    TokenType::Bearer
                };
                assert_eq!(token.token_type(), &kind, "{name}");
                assert_eq!(
                    server.token_requests(),
                    2,
                    "{name}, skew {skew}: one refusal, one retry"
                );
                let offset = session.server_clock().offset_millis().unwrap();
                assert!(
                    (offset / 1000).abs_diff(skew) <= 2,
                    "{name}: the offset {offset} ms is the skew {skew} s"
                );
                // The session now knows the server's clock: no refusal the second time.
                adapter.fetch_in(&request, &session).await.unwrap();
                assert_eq!(
                    server.token_requests(),
                    3,
                    "{name}, skew {skew}: first time"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_source_recovers_from_the_first_refusal_of_a_skewed_server() {
    for skew in SKEWS {
        let (server, request) = skewed(skew, false);
        let source = client_credentials::TokenSource::reqwest(
            client_credentials::reqwest::recommended_client(),
            request.clone(),
        );
        let token = source.token().await.unwrap();
        assert_eq!(token.scope(), Some("read"));
        assert_eq!(server.token_requests(), 2, "skew {skew}");

        let (server, request) = skewed(skew, true);
        let client: HyperClient<_, Full<Bytes>> =
            HyperClient::builder(TokioExecutor::new()).build_http();
        let source = client_credentials::TokenSource::hyper(client, request);
        let token: Arc<_> = source.token().await.unwrap();
        assert_eq!(token.token_type(), &TokenType::DPoP);
        assert_eq!(server.token_requests(), 2, "skew {skew}, hyper and DPoP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecognised_refusal_is_not_retried() {
    // A client the server does not know: refused, not about time, so one request only, even
    // though the server's Date is ten minutes off.
    let (server, _request) = skewed(600, false);
    let stranger = ClientCredentials::with_auth(
        server.token_url(),
        "stranger",
        ClientAuth::Jwt(JwtAuth::new(
            PrivateKey::generate(JwsAlgorithm::Es256).unwrap(),
        )),
    )
    .unwrap()
    .token_request()
    .build()
    .unwrap();
    let error = Adapter::reqwest(None).fetch(&stranger).await.unwrap_err();
    assert!(!is_refusal_about_time(&error), "{error}");
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_platform_token_is_the_client_assertion_through_every_adapter() {
    // The platform (a Kubernetes cluster's issuer) signs a service-account token for Entra
    // ID's token exchange; the client sends it as its assertion, again and again.
    const ISSUER: &str = "https://oidc.prod-aks.azure.com/tenant-1/";
    const SUBJECT: &str = "system:serviceaccount:billing:worker";
    const AUDIENCE: &str = "api://AzureADTokenExchange";
    let platform = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let jwks = format!(r#"{{"keys":[{}]}}"#, platform.public_jwk().to_json());
    let credential = FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE, &jwks).unwrap();
    let server = TestServer::builder()
        .client(
            TestClient::secretless("entra-app")
                .scopes(["read"])
                .federated(credential),
        )
        .start();
    let mint = |sub: &str| {
        // The platform's clock: the test stands for it.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 3600,
        });
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = platform.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    let client = |token: String| {
        ClientCredentials::with_auth(
            server.token_url(),
            "entra-app",
            ClientAuth::Assertion(ClientAssertion::new(token)),
        )
        .unwrap()
        .token_request()
        .scope("read")
        .build()
        .unwrap()
    };
    let request = client(mint(SUBJECT));
    for adapter in Adapter::all(None) {
        let token = adapter.fetch(&request).await;
        let token = token.unwrap_or_else(|e| panic!("{}: {e}", adapter.name()));
        assert_eq!(token.scope(), Some("read"), "{}", adapter.name());
    }
    let stranger = client(mint("system:serviceaccount:billing:other"));
    let error = Adapter::reqwest(None).fetch(&stranger).await.unwrap_err();
    let description = error
        .oauth()
        .and_then(|e| e.description())
        .unwrap_or_default();
    assert!(description.contains("subject"), "{description}");
}
