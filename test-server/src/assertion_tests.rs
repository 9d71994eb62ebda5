//! The token endpoint's client assertions: `private_key_jwt`, federation, each check one by
//! one, and the skewed clock they are checked against.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials::auth::{ClientAuth, JwsAlgorithm, JwsSigner, JwtAuth, PrivateKey};
use client_credentials::{Attempt, ClientCredentials};
use http::{Request, Response};
use serde_json::{Value, json};

use super::assertion::{ASSERTION_LEEWAY, FederatedCredential};
use super::client::TestClient;
use super::resource_tests::exchange;
use super::server::TestServer;
use super::trust::JwksError;

const ISSUER: &str = "https://oidc.prod-aks.azure.com/tenant-1/";
const SUBJECT: &str = "system:serviceaccount:billing:worker";
const AUDIENCE: &str = "api://AzureADTokenExchange";

/// The real time, as the platform minting the assertions (the kubelet, say) reads it.
// A test stands for the platform here: it reads the clock the assertions are stamped with.
#[allow(clippy::disallowed_methods)]
fn real_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> PrivateKey {
    PrivateKey::generate(JwsAlgorithm::Es256).unwrap()
}

fn jwks(key: &PrivateKey) -> String {
    format!(r#"{{"keys":[{}]}}"#, key.public_jwk().to_json())
}

/// A compact JWS of `claims`, signed by `key`.
fn mint(key: &PrivateKey, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "ES256", "typ": "JWT" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims(jti: &str) -> Value {
    let now = real_now();
    json!({ "iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "jti": jti, "iat": now, "nbf": now, "exp": now + 3600 })
}

/// POSTs a form to the token endpoint and reads the whole answer.
fn post(
    server: &TestServer,
    pairs: &[(&str, &str)],
    extra_header: Option<&str>,
) -> Response<Value> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut request = Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into_bytes())
        .unwrap();
    if let Some((name, value)) = extra_header.and_then(|h| h.split_once(": ")) {
        request.headers_mut().insert(
            http::HeaderName::try_from(name).unwrap(),
            http::HeaderValue::try_from(value).unwrap(),
        );
    }
    let (parts, answer) = exchange(server, &request).into_parts();
    Response::from_parts(
        parts,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

fn post_assertion(
    server: &TestServer,
    client_id: Option<&str>,
    assertion: &str,
) -> Response<Value> {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            ClientAuth::JWT_BEARER_ASSERTION_TYPE,
        ),
        ("client_assertion", assertion),
    ];
    if let Some(id) = client_id {
        pairs.push(("client_id", id));
    }
    post(server, &pairs, None)
}

fn federated_server(key: &PrivateKey) -> TestServer {
    let credential = FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE, &jwks(key))
        .unwrap()
        .single_use(true);
    TestServer::builder()
        .client(
            TestClient::secretless("entra-app")
                .scopes(["read"])
                .federated(credential),
        )
        .start()
}

fn refused_with(response: &Response<Value>, code: &str, text: &str) {
    assert_eq!(response.body()["error"], code, "{:?}", response.body());
    let description = response.body()["error_description"]
        .as_str()
        .unwrap_or_default();
    assert!(description.contains(text), "{description:?} lacks {text:?}");
}

#[test]
fn a_federated_assertion_gets_a_token() {
    let key = key();
    let server = federated_server(&key);
    let response = post_assertion(&server, Some("entra-app"), &mint(&key, &claims("a-1")));
    assert_eq!(response.status(), 200, "{:?}", response.body());
    assert_eq!(response.body()["scope"], "read");
    let debug = format!(
        "{:?}",
        FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE, &jwks(&key)).unwrap()
    );
    assert!(
        debug.contains(SUBJECT) && debug.contains("keys: 1"),
        "{debug}"
    );
}

#[test]
fn a_platform_token_may_be_sent_again_unless_single_use() {
    let key = key();
    let credential = FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE, &jwks(&key)).unwrap();
    let server = TestServer::builder()
        .client(TestClient::secretless("entra-app").federated(credential))
        .start();
    let mut claims = claims("unused");
    claims.as_object_mut().unwrap().remove("jti");
    let token = mint(&key, &claims);
    for _ in 0..3 {
        let response = post_assertion(&server, Some("entra-app"), &token);
        assert_eq!(response.status(), 200, "{:?}", response.body());
    }
}

#[test]
fn federation_checks_each_claim_as_entra_and_keycloak_do() {
    let key = key();
    let other = self::key();
    let server = federated_server(&key);
    let now = real_now();
    let with = |jti: &str, name: &str, value: Value| {
        let mut claims = claims(jti);
        claims[name] = value;
        claims
    };
    let without = |jti: &str, name: &str| {
        let mut claims = claims(jti);
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let cases: [(&str, String, &str); 10] = [
        (
            "issuer",
            mint(&key, &with("c-1", "iss", json!("https://evil.example"))),
            "issuer `https://evil.example` is not trusted",
        ),
        (
            "signature",
            mint(&other, &claims("c-2")),
            "signature does not verify",
        ),
        (
            "subject",
            mint(
                &key,
                &with("c-3", "sub", json!("system:serviceaccount:x:y")),
            ),
            "subject `system:serviceaccount:x:y` is not the one trusted",
        ),
        (
            "audience",
            mint(
                &key,
                &with("c-4", "aud", json!("https://login.microsoftonline.com")),
            ),
            "audience is not api://AzureADTokenExchange",
        ),
        (
            "audience array",
            mint(&key, &with("c-5", "aud", json!(["a", "b"]))),
            "audience is not",
        ),
        (
            "expired",
            mint(&key, &with("c-6", "exp", json!(now - ASSERTION_LEEWAY - 5))),
            "expired at",
        ),
        (
            "not yet valid",
            mint(
                &key,
                &with("c-7", "nbf", json!(now + ASSERTION_LEEWAY + 60)),
            ),
            "not yet valid",
        ),
        (
            "issued in the future",
            mint(
                &key,
                &with("c-8", "iat", json!(now + ASSERTION_LEEWAY + 60)),
            ),
            "issued in the future",
        ),
        ("no exp", mint(&key, &without("c-9", "exp")), "has no exp"),
        ("no jti", mint(&key, &without("jti", "jti")), "has no jti"),
    ];
    for (name, assertion, text) in &cases {
        let response = post_assertion(&server, Some("entra-app"), assertion);
        assert_eq!(response.status(), 401, "{name}");
        refused_with(&response, "invalid_client", text);
    }
    let in_array = mint(&key, &with("c-10", "aud", json!(["x", AUDIENCE])));
    assert_eq!(
        post_assertion(&server, Some("entra-app"), &in_array).status(),
        200,
        "aud may be an array"
    );
    let within_leeway = mint(
        &key,
        &with("c-11", "iat", json!(now + ASSERTION_LEEWAY / 2)),
    );
    assert_eq!(
        post_assertion(&server, Some("entra-app"), &within_leeway).status(),
        200
    );

    let once = mint(&key, &claims("c-12"));
    assert_eq!(
        post_assertion(&server, Some("entra-app"), &once).status(),
        200
    );
    let replayed = post_assertion(&server, Some("entra-app"), &once);
    refused_with(&replayed, "invalid_client", "jti was used before");
}

#[test]
fn a_client_is_found_by_sub_without_client_id_and_methods_are_not_mixed() {
    let key = key();
    let server = TestServer::builder()
        .client(
            TestClient::secretless("svc")
                .assertion_jwks(&jwks(&key))
                .unwrap(),
        )
        .start();
    let own = |jti: &str, aud: &str| {
        let now = real_now();
        mint(
            &key,
            &json!({ "iss": "svc", "sub": "svc", "aud": aud, "jti": jti, "iat": now, "exp": now + 60 }),
        )
    };
    let issuer = server.url("");
    let issuer = issuer.trim_end_matches('/');
    for (jti, aud) in [
        ("o-1", issuer.to_owned()),
        ("o-2", server.token_url().as_uri().to_string()),
    ] {
        let response = post_assertion(&server, None, &own(jti, &aud));
        assert_eq!(response.status(), 200, "aud {aud}: {:?}", response.body());
    }
    refused_with(
        &post_assertion(&server, None, &own("o-3", "https://elsewhere")),
        "invalid_client",
        "audience is not",
    );

    let assertion = own("o-4", issuer);
    let both = post(
        &server,
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                ClientAuth::JWT_BEARER_ASSERTION_TYPE,
            ),
            ("client_assertion", &assertion),
        ],
        Some("authorization: Basic c3ZjOng="),
    );
    refused_with(
        &both,
        "invalid_request",
        "more than one authentication method",
    );
    let wrong_type = post(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:x"),
            ("client_assertion", &assertion),
        ],
        None,
    );
    refused_with(
        &wrong_type,
        "invalid_client",
        "client_assertion_type must be",
    );
    let demo = post_assertion(&server, Some("demo-client"), &assertion);
    refused_with(
        &demo,
        "invalid_client",
        "may not authenticate with private_key_jwt",
    );
    let secret = post(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", "x"),
        ],
        None,
    );
    refused_with(&secret, "invalid_client", "client authentication failed");
}

#[test]
fn bad_credentials_are_typed_errors() {
    let key = key();
    assert_eq!(
        FederatedCredential::new("", SUBJECT, AUDIENCE, &jwks(&key)).unwrap_err(),
        JwksError::Empty
    );
    assert_eq!(
        FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE, "{}").unwrap_err(),
        JwksError::NotAJwks
    );
    assert!(TestClient::secretless("x").assertion_jwks("[]").is_err());
}

/// The crate's own `private_key_jwt` client, its attempt made at `now`.
fn crate_assertion(server: &TestServer, key: &Arc<PrivateKey>, now: u64) -> String {
    let client = ClientCredentials::with_auth(
        server.token_url(),
        "svc",
        ClientAuth::Jwt(JwtAuth::from_arc(key.clone())),
    )
    .unwrap();
    let request = client.token_request().build().unwrap();
    let attempt = Attempt::new(UNIX_EPOCH + Duration::from_secs(now), [now as u8; 32]);
    let http = request.http_request(&attempt).unwrap();
    let body = String::from_utf8(http.body().secret().to_vec()).unwrap();
    form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "client_assertion")
        .unwrap()
        .1
        .into_owned()
}

#[test]
fn a_skewed_clock_dates_its_answers_and_tokens_and_refuses_unskewed_assertions() {
    for skew in [600i64, -600] {
        let key = Arc::new(key());
        let server = TestServer::builder()
            .clock_skew(skew)
            .client(
                TestClient::secretless("svc")
                    .assertion_jwks(&jwks(&key))
                    .unwrap(),
            )
            .start();
        let before = real_now();
        let refused = post_assertion(
            &server,
            Some("svc"),
            &crate_assertion(&server, &key, before),
        );
        let date = httpdate::parse_http_date(refused.headers()["date"].to_str().unwrap()).unwrap();
        let date = date.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let after = real_now();
        assert!(
            date >= before.saturating_add_signed(skew) && date <= after.saturating_add_signed(skew),
            "Date {date} is the skewed time ({skew})"
        );
        let reason = if skew > 0 {
            "expired at"
        } else {
            "issued in the future"
        };
        refused_with(&refused, "invalid_client", reason);

        let on_time = crate_assertion(&server, &key, real_now().saturating_add_signed(skew));
        let issued = post_assertion(&server, Some("svc"), &on_time);
        assert_eq!(issued.status(), 200, "{:?}", issued.body());
        let token = issued.body()["access_token"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let iat = claims["iat"].as_u64().unwrap();
        assert!(
            iat.abs_diff(real_now().saturating_add_signed(skew)) <= 2,
            "iat {iat} on the skewed clock"
        );
    }
}

#[test]
fn the_skew_is_bounded() {
    let server = TestServer::builder().clock_skew(i64::MAX).start();
    let response = post(&server, &[("grant_type", "client_credentials")], None);
    let date = httpdate::parse_http_date(response.headers()["date"].to_str().unwrap()).unwrap();
    let ahead = date.duration_since(UNIX_EPOCH).unwrap().as_secs() - real_now();
    assert!(
        ahead.abs_diff(super::tokens::MAX_CLOCK_SKEW as u64) <= 2,
        "{ahead}"
    );
}
