//! Client assertions from a source (a callback, a file), through every adapter and the token
//! source: the source is asked at every attempt, and an assertion that cannot be sent is
//! refused before anything reaches the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials::auth::{
    AssertionSource, BoxError, ClientAssertion, ClientAuth, JwsAlgorithm, JwsSigner, JwtAuth,
    PrivateKey,
};
use client_credentials::error::AssertionError;
use client_credentials::{ClientCredentials, Error, TokenRequest, TokenSource};
use client_credentials_test_server::{DEMO_CLIENT_ID, TestClient, TestServer};

use crate::support::adapters::Adapter;

fn jwt(exp: u64) -> String {
    let claims = format!(r#"{{"iss":"{DEMO_CLIENT_ID}","sub":"{DEMO_CLIENT_ID}","exp":{exp}}}"#);
    format!(
        "eyJhbGciOiJFUzI1NiJ9.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(claims)
    )
}

fn request(server: &TestServer, source: AssertionSource) -> TokenRequest {
    ClientCredentials::with_auth(
        server.token_url(),
        DEMO_CLIENT_ID,
        ClientAuth::Source(source),
    )
    .unwrap()
    .token_request()
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_callback_is_asked_at_every_attempt_and_its_assertion_sent() {
    let server = TestServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let source = AssertionSource::from_fn(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(ClientAssertion::new(jwt(4_000_000_000))) }
    });
    let request = request(&server, source);
    for (i, name) in Adapter::NAMES.into_iter().enumerate() {
        // The embedded server registers no assertion clients: its refusal shows the request
        // went out with the assertion, not a secret.
        let error = Adapter::named(name).fetch(&request).await.unwrap_err();
        assert_eq!(
            error.oauth().map(|e| e.code().as_str()),
            Some("invalid_client"),
            "{name}: {error:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), i + 1, "{name}");
        assert_eq!(server.token_requests(), i + 1, "{name}");
    }
}

#[tokio::test]
async fn an_expired_or_failed_assertion_is_refused_before_sending() {
    let server = TestServer::start();
    let expired = AssertionSource::from_fn(|| async { Ok(ClientAssertion::new(jwt(1_000))) });
    let failing =
        AssertionSource::from_fn(|| async { Err(BoxError::from("the metadata endpoint is down")) });
    for name in Adapter::NAMES {
        match Adapter::named(name)
            .fetch(&request(&server, expired.clone()))
            .await
        {
            Err(Error::ClientAssertion(AssertionError::Expired {
                exp: 1_000, origin, ..
            })) => {
                assert_eq!(origin, "from the callback", "{name}");
            }
            other => panic!("{name}: expected an expired assertion, got {other:?}"),
        }
        let error = Adapter::named(name)
            .fetch(&request(&server, failing.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::ClientAssertion(AssertionError::Callback(_))),
            "{name}: {error:?}"
        );
        assert!(error.is_retryable(), "{name}: a callback may succeed later");
    }
    assert_eq!(server.token_requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn the_token_source_reports_the_assertion_error() {
    let server = TestServer::start();
    let expired = AssertionSource::from_fn(|| async { Ok(ClientAssertion::new(jwt(1_000))) });
    let tokens = TokenSource::reqwest(
        client_credentials::reqwest::recommended_client(),
        request(&server, expired),
    );
    let error = tokens.token().await.unwrap_err();
    assert!(
        matches!(
            *error,
            Error::ClientAssertion(AssertionError::Expired { .. })
        ),
        "{error:?}"
    );
    assert_eq!(server.token_requests(), 0);
}

/// The README's table of servers: the embedded server takes a `private_key_jwt` assertion
/// addressed to its issuer or to its token endpoint, with the draft's `typ` header or without.
#[tokio::test]
async fn own_assertions_to_either_audience_with_or_without_typ_are_accepted() {
    let key = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let jwks = format!(r#"{{"keys":[{}]}}"#, key.public_jwk().to_json());
    let server = TestServer::builder()
        .client(TestClient::secretless("svc").assertion_jwks(&jwks).unwrap())
        .start();
    let key = Arc::new(key);
    let http = client_credentials::reqwest::recommended_client();
    for to_issuer in [true, false] {
        for explicit_type in [false, true] {
            let mut auth = JwtAuth::from_arc(Arc::clone(&key) as Arc<dyn JwsSigner>)
                .with_issuer(server.url(""))
                .with_explicit_type(explicit_type);
            if !to_issuer {
                auth = auth.with_token_endpoint_audience();
            }
            let request =
                ClientCredentials::with_auth(server.token_url(), "svc", ClientAuth::Jwt(auth))
                    .unwrap()
                    .token_request()
                    .build()
                    .unwrap();
            let fetched = client_credentials::reqwest::fetch_token(
                &http,
                &request,
                client_credentials::reqwest::TIMEOUT,
            )
            .await;
            assert!(
                fetched.is_ok(),
                "aud to the issuer: {to_issuer}, typ: {explicit_type}: {fetched:?}"
            );
        }
    }
    assert_eq!(server.token_requests(), 4);
}

/// Hardening: an assertion path that is a named pipe (or any other non-file) fails the fetch
/// at once with `NotAFile`; it used to be opened, which waits for a writer and held a runtime
/// worker forever. Run on a thread of its own and waited for with a bound, so that a
/// regression fails this test instead of hanging it.
#[test]
fn a_pipe_as_the_assertion_file_fails_at_once_instead_of_blocking_the_runtime() {
    use client_credentials::auth::AssertionFile;

    let dir = std::env::temp_dir().join(format!("client-credentials-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pipe = dir.join("token");
    let _ = std::fs::remove_file(&pipe);
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");

    let server = TestServer::start();
    let request = request(&server, AssertionSource::new(AssertionFile::new(&pipe)));
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = client_credentials::reqwest::recommended_client();
        let fetched = runtime.block_on(client_credentials::reqwest::fetch_token(
            &http,
            &request,
            Duration::from_secs(2),
        ));
        let _ = done.send(fetched);
    });
    let outcome = outcome.recv_timeout(Duration::from_secs(10));
    // Whatever happened, free a reader that may wait on the pipe (opening it for reading and
    // writing never waits, on Linux), then clean up.
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pipe);
    let _ = std::fs::remove_dir_all(&dir);
    let error = outcome
        .expect("the fetch ended within its bound")
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::ClientAssertion(AssertionError::NotAFile { .. })
        ),
        "{error:?}"
    );
    assert_eq!(server.token_requests(), 0, "nothing was sent");
}
