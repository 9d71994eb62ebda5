//! The Entra ID workload-identity preset end to end against the embedded server: the
//! platform's token in a file, re-read as it rotates, federated to a secretless client at
//! `{AZURE_AUTHORITY_HOST}{AZURE_TENANT_ID}/oauth2/v2.0/token`, through a `TokenSource`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials::auth::{JwsAlgorithm, JwsSigner, PrivateKey, entra_scope};
use client_credentials::error::ErrorCode;
use client_credentials::{ClientCredentials, TokenSource};
use client_credentials_test_server::{FederatedCredential, TestClient, TestServer};

const ISSUER: &str = "https://oidc.prod-aks.azure.com/3f0c2a9e-5b1d-4c7e-9a8f-1d2e3c4b5a69/";
const SUBJECT: &str = "system:serviceaccount:payments:api";
const AUDIENCE: &str = "api://AzureADTokenExchange";
const CLIENT_ID: &str = "8d6f2b1c-0e4a-4f3b-b7c9-2a1e5d4c3b20";
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const RESOURCE: &str = "https://api.example.com";

/// The real time, as the platform (the kubelet) stamps its tokens.
// The test stands for the platform here: it reads the clock its tokens are stamped with.
#[allow(clippy::disallowed_methods)]
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A platform token: `sub` and `aud` as given, issued at `iat` and expiring at `exp`.
fn mint(platform: &PrivateKey, sub: &str, aud: &str, iat: i64, exp: i64) -> String {
    mint_claims(
        platform,
        serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": [aud], "iat": iat, "nbf": iat, "exp": exp,
        }),
    )
}

/// A platform token of `claims`, signed by the platform's key.
fn mint_claims(platform: &PrivateKey, claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = platform.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A directory of its own for one test's token files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cc-entra-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server, trusting the platform's key for the one federated credential of a secretless
/// client allowed the resource's `.default` scope; each platform token accepted once only when
/// `single_use`.
fn entra_server(platform: &PrivateKey, single_use: bool) -> TestServer {
    let jwks = format!(r#"{{"keys":[{}]}}"#, platform.public_jwk().to_json());
    let credential = FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE, &jwks)
        .unwrap()
        .single_use(single_use);
    TestServer::builder()
        .client(
            TestClient::secretless(CLIENT_ID)
                .scopes([entra_scope(RESOURCE)])
                .federated(credential),
        )
        .start()
}

/// A token source built by the preset from the variables the webhook would set, the token
/// file at `file`; the process environment is left alone.
fn entra_source(server: &TestServer, file: &Path) -> TokenSource {
    let env = HashMap::from([
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_TENANT_ID", TENANT_ID.to_owned()),
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
        ("AZURE_AUTHORITY_HOST", server.url("/")),
    ]);
    let client =
        ClientCredentials::entra_workload_identity_from(|name| env.get(name).cloned()).unwrap();
    assert_eq!(
        client.token_url().as_uri().to_string(),
        server.url(&format!("/{TENANT_ID}/oauth2/v2.0/token"))
    );
    let request = client
        .token_request()
        .scope(entra_scope(RESOURCE))
        .build()
        .unwrap();
    TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entra_preset_gets_tokens_by_the_rotated_platform_token() {
    let platform = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    // Single use: the server refuses a platform token it has seen, so the second token can
    // only come by the rotated file.
    let server = entra_server(&platform, true);
    let dir = TempDir::new("rotation");
    let file = dir.0.join("azure-identity-token");
    let issued_at = now();
    let original = mint_claims(
        &platform,
        serde_json::json!({
            "iss": ISSUER, "sub": SUBJECT, "aud": [AUDIENCE], "jti": "rotation-1",
            "iat": issued_at, "nbf": issued_at, "exp": issued_at + 3600,
        }),
    );
    std::fs::write(&file, original).unwrap();
    let source = entra_source(&server, &file);

    let first = source.token().await.unwrap();
    assert_eq!(first.scope(), Some("https://api.example.com/.default"));
    assert_eq!(server.token_requests(), 1);
    // Cached: no second request.
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        first.access_token().secret()
    );
    assert_eq!(server.token_requests(), 1);

    // The kubelet rotates the file: a new token (its `jti` longer, so the file's length
    // changes whatever the file system's timestamp granularity), the old one's lifetime over.
    let rotated_at = now();
    let rotated = mint_claims(
        &platform,
        serde_json::json!({
            "iss": ISSUER, "sub": SUBJECT, "aud": [AUDIENCE], "jti": "rotation-2b",
            "iat": rotated_at, "nbf": rotated_at, "exp": rotated_at + 7200,
        }),
    );
    let old = mint(
        &platform,
        SUBJECT,
        AUDIENCE,
        issued_at - 7200,
        issued_at - 3600,
    );
    std::fs::write(&file, &rotated).unwrap();
    // A token younger than the policy's minimum age survives `invalidate` (no storm of
    // fetches); `force_refresh` makes it due: served once more while the refresh, by the
    // rotated file, runs in the background.
    assert!(source.force_refresh());
    let served = source.token().await.unwrap();
    assert_eq!(
        served.access_token().secret(),
        first.access_token().secret()
    );
    for _ in 0..500 {
        if server.token_requests() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.token_requests(), 2, "one request for the new token");
    let mut second = source.token().await.unwrap();
    for _ in 0..500 {
        if second.access_token().secret() != first.access_token().secret() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        second = source.token().await.unwrap();
    }
    assert_ne!(
        second.access_token().secret(),
        first.access_token().secret()
    );
    assert_eq!(server.token_requests(), 2, "the new token is cached");

    // Had the file kept the expired token, the client refuses to send it: no request.
    let stale_dir = TempDir::new("stale");
    let stale_file = stale_dir.0.join("azure-identity-token");
    std::fs::write(&stale_file, &old).unwrap();
    let error = entra_source(&server, &stale_file)
        .token()
        .await
        .unwrap_err();
    assert!(error.oauth().is_none(), "refused before sending: {error}");
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_token_of_another_subject_or_audience_is_invalid_client() {
    let platform = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let server = entra_server(&platform, false);
    let dir = TempDir::new("refused");
    let at = now();
    let cases = [
        (
            "subject",
            mint(
                &platform,
                "system:serviceaccount:payments:other",
                AUDIENCE,
                at,
                at + 3600,
            ),
        ),
        (
            "audience",
            mint(&platform, SUBJECT, "api://SomethingElse", at, at + 3600),
        ),
    ];
    for (number, (what, token)) in cases.into_iter().enumerate() {
        let file = dir.0.join(format!("token-{what}"));
        std::fs::write(&file, token).unwrap();
        let error = entra_source(&server, &file).token().await.unwrap_err();
        let oauth = error.oauth().unwrap_or_else(|| panic!("{what}: {error}"));
        assert_eq!(oauth.code(), &ErrorCode::InvalidClient, "{what}");
        assert!(
            oauth.description().unwrap_or_default().contains(what),
            "{what}: {:?}",
            oauth.description()
        );
        assert_eq!(server.token_requests(), number + 1, "{what}: one request");
    }
}
