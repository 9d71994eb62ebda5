//! Interoperability with a real, OpenID Certified authorization server: panva's `oidc-provider`
//! (pinned in `interop/package-lock.json`, configured in `interop/server.mjs`), which
//! `scripts/test` starts on 127.0.0.1 before it runs `cargo test --all-features`. It sets
//! `OIDC_PROVIDER_URL` (the issuer) and `INTEROP_CLIENT_KEY_DIR` (the `private_key_jwt` client's
//! key); without them every test here fails, saying so: none of them ever skips.
//!
//! Each exchange goes every [`Way`]: through the core with this file's own HTTP client (a
//! [`TokenFetch`] building each attempt, send, `handle_response`), and through each adapter;
//! and each of those once by the default rules and once by [`ResponseRules::strict`].
//!
//! Server behaviours that surprised us, each pinned by a test named `server_…`:
//! - an unknown scope is dropped and, when nothing is left, `scope` is left out of the response,
//!   against RFC 6749 §5.1 (`server_drops_unknown_scopes_and_omits_scope`);
//! - a client not registered for the grant gets `invalid_request`, not RFC 6749 §5.2's
//!   `unauthorized_client` (`server_answers_a_grant_the_client_may_not_use_with_invalid_request`);
//! - a 401 for `client_secret_post` has no `WWW-Authenticate`: RFC 6749 §5.2 allows it, RFC
//!   9110 §15.5.2 does not (`server_sends_no_challenge_when_the_secret_was_posted`);
//! - the registered `token_endpoint_auth_method` is not enforced between the two secret methods
//!   (`server_accepts_either_secret_method_whatever_was_registered`);
//! - two `resource` parameters get `invalid_target` for this grant, which RFC 8707 §2 allows
//!   (`server_refuses_several_resources_for_this_grant`);
//! - a scope the resource does not have is dropped, and said so in `scope`
//!   (`opaque_token_for_a_resource`);
//! - a client assertion cannot be used twice: its `jti` is remembered (RFC 7523 §3, item 7)
//!   (`server_refuses_a_replayed_assertion`), so an assertion file the platform has not yet
//!   rotated serves one token only (`assertions_from_a_rotated_file_keep_tokens_flowing`);
//! - an assertion's `aud` may be the issuer or the token endpoint, with or without the `typ`
//!   `client-authentication+jwt` of draft-ietf-oauth-rfc7523bis: all four are accepted
//!   (`server_accepts_issuer_or_token_endpoint_as_audience_with_or_without_typ`);
//! - an error comes back as HTML to a request that prefers HTML
//!   (`server_answers_html_to_a_request_that_prefers_it`);
//! - Basic credentials that are not form-encoded fail on `%` with `invalid_request`
//!   (`server_refuses_unencoded_basic_credentials_with_a_percent`);
//! - `audience`, not a parameter it knows, is ignored (RFC 6749 §3.2)
//!   (`server_ignores_the_audience_parameter`);
//! - `invalid_scope` names the refused scope in a `scope` member of the error object, which RFC
//!   6749 §5.2 does not define (`scope_the_client_may_not_have_is_invalid_scope`);
//! - a DPoP-bound client (`dpop_bound_access_tokens`) that sends no proof gets `invalid_grant`
//!   with the generic "grant request is invalid", not `invalid_dpop_proof`
//!   (`server_refuses_the_dpop_bound_client_without_a_proof_with_invalid_grant`);
//! - with nonces required, a proof without one gets `use_dpop_nonce` as a 400 with the nonce in
//!   `DPoP-Nonce` and no `WWW-Authenticate` (RFC 9449 §8), and the nonce stays good for minutes,
//!   so a nonce learnt by one request serves the next (`server_asks_for_a_dpop_nonce_first`,
//!   `dpop_bound_token_with_the_nonce_retry`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use client_credentials::auth::{
    AssertionFile, AssertionSource, AuthMethod, ClientAssertion, ClientAuth, JwsAlgorithm,
    JwsSigner, JwtAuth, PrivateKey,
};
use client_credentials::discovery::{AuthMaterial, Issuer, MetadataRequest, ServerMetadata};
use client_credentials::dpop::DpopKey;
use client_credentials::error::{AssertionError, DiscoveryError, ErrorCode};
use client_credentials::fetch::{FetchStep, RequestBody, ResponseRules, Session, TokenFetch};
use client_credentials::http::{self, HeaderValue, StatusCode, header};
use client_credentials::token::TokenType;
use client_credentials::{
    Attempt, ClientCredentials, ClientSecret, Error, Token, TokenRequest, TokenRequestBuilder,
    TokenUrl,
};
use serde_json::{Value, json};

use crate::support;
use crate::support::adapters::Adapter;

// ---------------------------------------------------------------------------------------------
// The server and its clients, as registered in interop/server.mjs.

/// The characters RFC 6749 §2.3.1's encoding must carry (oidc-provider wants ASCII).
const SPECIAL: &str = ": +%&=/?~!";

/// The resource of interop/server.mjs whose tokens are JWTs signed by the provider (ES256).
pub(crate) const JWT_RESOURCE: &str = "https://jwt.api.example/";
const OPAQUE_RESOURCE: &str = "urn:example:opaque-api";

/// The `client_secret_jwt` client's secret: HS256 wants 32 bytes or more (RFC 7518 §3.2).
const SECRET_JWT_SECRET: &str = "secret-jwt-client-secret-of-at-least-32-bytes";

/// The issuer, as `scripts/test` exported it.
pub(crate) fn issuer() -> String {
    match std::env::var("OIDC_PROVIDER_URL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "OIDC_PROVIDER_URL is not set: the interop tests need a live oidc-provider; \
             run them with `scripts/test` (see the README), which starts one on 127.0.0.1"
        ),
    }
}

pub(crate) fn token_endpoint() -> String {
    format!("{}/token", issuer())
}

/// How a test client authenticates.
#[derive(Clone, Copy, Debug)]
enum Cred {
    Basic(&'static str, &'static str),
    BasicUnencoded(&'static str, &'static str),
    Post(&'static str, &'static str),
    /// `private_key_jwt` through the pre-signed path: one assertion, signed by hand when the
    /// client is built, good for one request.
    PreSigned(&'static str),
    /// `private_key_jwt` through the crate's signer: a fresh assertion for every attempt.
    Jwt(&'static str),
    /// `client_secret_jwt` (HS256) through the crate's signer.
    SecretJwt(&'static str, &'static str),
}

const BASIC: Cred = Cred::Basic("basic-client", "basic-secret");
const POST: Cred = Cred::Post("post-client", "post-secret");
const CODE_ONLY: Cred = Cred::Basic("code-only-client", "code-only-secret");
const PRE_SIGNED: Cred = Cred::PreSigned("jwt-client");
const JWT: Cred = Cred::Jwt("jwt-client");
const SECRET_JWT: Cred = Cred::SecretJwt("secret-jwt-client", SECRET_JWT_SECRET);
/// Registered with `dpop_bound_access_tokens`: give it a DPoP key.
const DPOP: Cred = Cred::Basic("dpop-client", "dpop-secret");

fn special(prefix: &str, what: &str) -> &'static str {
    format!("{prefix}{SPECIAL}{what}").leak()
}

impl Cred {
    fn client(self, rules: ResponseRules) -> ClientCredentials {
        let url = TokenUrl::new(&token_endpoint()).expect("the issuer is a loopback url");
        let with = |id: &str, auth| {
            ClientCredentials::with_auth(url.clone(), id, auth).expect("a valid client")
        };
        let client = match self {
            Self::Basic(id, secret) => ClientCredentials::new(url, id, ClientSecret::new(secret)),
            Self::BasicUnencoded(id, secret) => with(
                id,
                ClientAuth::SecretBasicUnencoded(ClientSecret::new(secret)),
            ),
            Self::Post(id, secret) => with(id, ClientAuth::SecretPost(ClientSecret::new(secret))),
            Self::PreSigned(id) => with(id, ClientAuth::Assertion(sign_assertion(id))),
            Self::Jwt(id) => with(id, ClientAuth::Jwt(JwtAuth::new(client_key()))),
            Self::SecretJwt(id, secret) => with(
                id,
                ClientAuth::Jwt(
                    JwtAuth::client_secret(&ClientSecret::new(secret)).expect("32 bytes or more"),
                ),
            ),
        };
        client.with_response_rules(rules)
    }
}

#[allow(clippy::disallowed_methods)] // the tests stand in for the caller, who reads the clock
fn now() -> SystemTime {
    SystemTime::now()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// 32 bytes from the operating system, as the adapters draw them for every attempt.
fn entropy() -> [u8; 32] {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes
}

/// The `private_key_jwt` client's key, which `scripts/test` generated and registered.
fn client_key() -> PrivateKey {
    let dir = std::env::var("INTEROP_CLIENT_KEY_DIR").unwrap_or_else(|_| {
        panic!("INTEROP_CLIENT_KEY_DIR is not set: run the interop tests with `scripts/test`")
    });
    let der = std::fs::read(format!("{dir}/client-key.der"))
        .unwrap_or_else(|e| panic!("cannot read the interop client key in {dir}: {e}"));
    PrivateKey::from_der(JwsAlgorithm::Es256, &der)
        .expect("a P-256 key in PKCS#8")
        .with_key_id("interop-client")
}

/// A `private_key_jwt` assertion (RFC 7523 §3), laid out by hand and signed with the client's
/// key: the assertion a caller of the pre-signed path brings.
fn sign_assertion(client_id: &str) -> ClientAssertion {
    mint_assertion(client_id, &token_endpoint(), None, 60, "")
}

/// An assertion as a platform mints it: for `aud`, with `typ` if given, valid for `lifetime`
/// seconds (negative: already expired), with a `pad` claim that changes its length.
fn mint_assertion(
    client_id: &str,
    aud: &str,
    typ: Option<&str>,
    lifetime: i64,
    pad: &str,
) -> ClientAssertion {
    let key = client_key();
    let iat = unix_seconds(now());
    let mut header = json!({ "alg": "ES256", "kid": "interop-client" });
    if let Some(typ) = typ {
        header["typ"] = typ.into();
    }
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "jti": URL_SAFE_NO_PAD.encode(&entropy()[..16]),
        "iat": iat,
        "exp": iat.saturating_add_signed(lifetime),
        "pad": pad,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).expect("the generated key signs");
    ClientAssertion::new(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

// ---------------------------------------------------------------------------------------------
// Every way a request can go.

/// A path from a `TokenRequest` to a `Token`.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// The core, with this file's own HTTP client.
    Core,
    /// An adapter of the crate, by its name in the shared dispatcher ([`Adapter::NAMES`]).
    Adapter(&'static str),
}

const WAYS: [Way; 4] = [
    Way::Core,
    Way::Adapter(Adapter::NAMES[0]),
    Way::Adapter(Adapter::NAMES[1]),
    Way::Adapter(Adapter::NAMES[2]),
];

/// One exchange: which way, by which rules.
#[derive(Clone, Copy)]
struct Route {
    way: Way,
    strict: bool,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = if self.strict { "strict" } else { "default" };
        write!(f, "{:?} with {rules} rules", self.way)
    }
}

fn routes() -> impl Iterator<Item = Route> {
    WAYS.into_iter().flat_map(|way| {
        [false, true]
            .into_iter()
            .map(move |strict| Route { way, strict })
    })
}

fn rules(strict: bool) -> ResponseRules {
    if strict {
        ResponseRules::strict()
    } else {
        ResponseRules::default()
    }
}

/// Sends a request built by the core with this file's own client, and returns the raw response
/// and when it was sent.
async fn send_raw(request: http::Request<Bytes>) -> (http::Response<Bytes>, SystemTime) {
    let request = reqwest::Request::try_from(request).expect("the core builds a valid request");
    let client = reqwest::Client::new();
    let sent_at = now();
    let response = client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("cannot reach oidc-provider at {}: {e}", issuer()));
    let mut raw = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        raw = raw.header(name, value);
    }
    let body = response.bytes().await.expect("the body arrives");
    (raw.body(body).expect("a valid response"), sent_at)
}

/// The core's request (without what is signed per attempt), with its body as bytes.
fn core_request(request: &TokenRequest) -> http::Request<Bytes> {
    request
        .http_request(&support::responses::attempt())
        .unwrap()
        .map(RequestBody::into_bytes)
}

/// Sends `request` one way and parses the response.
async fn fetch(way: Way, request: &TokenRequest) -> Result<Token, Error> {
    // A session of its own, as every adapter's one-shot fetch.
    fetch_in(way, request, &Session::new()).await
}

/// Fetches a token one way in `session`: what one fetch learns of the server (a DPoP nonce,
/// the clock's offset), the next in the session starts with.
async fn fetch_in(way: Way, request: &TokenRequest, session: &Session) -> Result<Token, Error> {
    match way {
        Way::Core => fetch_core_in(request, session).await,
        Way::Adapter(name) => Adapter::named(name).fetch_in(request, session).await,
    }
}

/// The core's exchange in `session`, sent with this file's own HTTP client: what an adapter
/// does.
async fn fetch_core_in(request: &TokenRequest, session: &Session) -> Result<Token, Error> {
    let mut exchange = TokenFetch::new(request, session);
    loop {
        let now = now();
        let http_request = match request.assertion_source() {
            Some(source) => {
                let assertion = source.assertion(now).await?;
                exchange.http_request_with_assertion(now, || Ok(entropy()), &assertion)?
            }
            None => exchange.http_request(now, || Ok(entropy()))?,
        };
        let (response, _) = send_raw(http_request.map(RequestBody::into_bytes)).await;
        match exchange.handle_response(&response)? {
            FetchStep::Done(token) => return Ok(token),
            FetchStep::Retry => {}
        }
    }
}

/// Fetches an issuer's metadata one way.
async fn fetch_metadata(way: Way, request: &MetadataRequest) -> Result<ServerMetadata, Error> {
    match way {
        Way::Core => {
            let (response, _) = send_raw(request.http_request().map(RequestBody::into_bytes)).await;
            request.parse_response(&response)
        }
        Way::Adapter(name) => Adapter::named(name).fetch_metadata(request).await,
    }
}

/// Builds the request for `cred` (fresh, so that an assertion is never reused), sends it every
/// way by both rules, and hands each outcome to `check`.
async fn every_way(
    cred: Cred,
    params: impl Fn(TokenRequestBuilder) -> TokenRequestBuilder,
    check: impl Fn(Route, &TokenRequest, Result<Token, Error>),
) {
    for route in routes() {
        let request = params(cred.client(rules(route.strict)).token_request())
            .build()
            .expect("a valid request");
        let outcome = fetch(route.way, &request).await;
        check(route, &request, outcome);
    }
}

fn token(route: Route, outcome: Result<Token, Error>) -> Token {
    outcome.unwrap_or_else(|e| panic!("{route}: expected a token, got {e:?} ({e})"))
}

fn oauth_error(route: Route, outcome: Result<Token, Error>, code: &ErrorCode) -> Error {
    match outcome {
        Err(error) if error.oauth().is_some_and(|e| e.code() == code) => error,
        Err(other) => panic!("{route}: expected `{code}`, got {other:?} ({other})"),
        Ok(token) => panic!("{route}: expected `{code}`, got a token {token:?}"),
    }
}

/// The lifetime the server gave, which it counts down in whole seconds from when it saved the
/// token: up to a second or so less than configured.
fn assert_lifetime(route: Route, token: &Token, configured: u64) {
    let lifetime = token
        .expires_in()
        .unwrap_or_else(|| panic!("{route}: no expires_in"));
    assert!(
        lifetime <= Duration::from_secs(configured)
            && lifetime >= Duration::from_secs(configured - 60),
        "{route}: expires_in {lifetime:?}, configured {configured}s"
    );
    assert_eq!(
        token.expires_at(),
        Some(token.sent_at() + lifetime),
        "{route}"
    );
    assert!(!token.is_expired(token.sent_at()), "{route}");
    assert!(
        token.is_expired(token.sent_at() + Duration::from_secs(configured)),
        "{route}"
    );
}

/// The claims of a JWT access token (RFC 9068), decoded without checking the signature.
fn jwt_claims(route: Route, token: &Token) -> (Value, Value) {
    let parts: Vec<&str> = token.access_token().secret().split('.').collect();
    assert_eq!(parts.len(), 3, "{route}: a JWT has three parts");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url"))
            .expect("a JSON object")
    };
    (decode(parts[0]), decode(parts[1]))
}

// ---------------------------------------------------------------------------------------------
// 1. client_secret_basic and client_secret_post.

#[tokio::test]
async fn client_secret_basic_gets_a_token() {
    every_way(
        BASIC,
        |b| b.scope("api:read api:write"),
        |route, _, outcome| {
            let token = token(route, outcome);
            assert_eq!(token.token_type(), &TokenType::Bearer, "{route}");
            assert!(!token.access_token().secret().is_empty(), "{route}");
            assert_eq!(token.scope(), Some("api:read api:write"), "{route}");
            assert_eq!(
                token.scopes().collect::<Vec<_>>(),
                ["api:read", "api:write"],
                "{route}"
            );
            assert!(token.refresh_token().is_none(), "{route}: RFC 6749 §4.4.3");
            assert_lifetime(route, &token, 3600);
        },
    )
    .await;
}

#[tokio::test]
async fn client_secret_post_gets_a_token() {
    every_way(
        POST,
        |b| b.scope("api:read"),
        |route, request, outcome| {
            assert!(
                request
                    .http_request(&support::responses::attempt())
                    .unwrap()
                    .headers()
                    .get(header::AUTHORIZATION)
                    .is_none()
            );
            let token = token(route, outcome);
            assert_eq!(token.token_type(), &TokenType::Bearer, "{route}");
            assert_eq!(token.scope(), Some("api:read"), "{route}");
            assert_lifetime(route, &token, 3600);
        },
    )
    .await;
}

#[tokio::test]
async fn the_server_sends_the_granted_scope() {
    // The raw body: the scope is the server's, not filled in by the crate from the request.
    let request = BASIC
        .client(ResponseRules::strict())
        .token_request()
        .scope("api:write")
        .build()
        .unwrap();
    let (response, _) = send_raw(core_request(&request)).await;
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["scope"], "api:write");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
}

// ---------------------------------------------------------------------------------------------
// 2. Ids and secrets with characters that need RFC 6749 §2.3.1's encoding.

#[tokio::test]
async fn special_characters_with_basic() {
    let cred = Cred::Basic(special("basic", "id"), special("basic", "secret"));
    every_way(
        cred,
        |b| b.scope("api:read"),
        |route, _, outcome| {
            let token = token(route, outcome);
            assert_eq!(token.scope(), Some("api:read"), "{route}");
        },
    )
    .await;
}

#[tokio::test]
async fn special_characters_with_post() {
    let cred = Cred::Post(special("post", "id"), special("post", "secret"));
    every_way(
        cred,
        |b| b.scope("api:read"),
        |route, _, outcome| {
            let token = token(route, outcome);
            assert_eq!(token.scope(), Some("api:read"), "{route}");
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Resource indicators (RFC 8707).

#[tokio::test]
async fn jwt_access_token_for_a_resource_has_it_as_audience() {
    every_way(
        BASIC,
        |b| b.scope("api:read").resource(JWT_RESOURCE),
        |route, _, outcome| {
            let token = token(route, outcome);
            let (header, claims) = jwt_claims(route, &token);
            assert_eq!(header["typ"], "at+jwt", "{route}: RFC 9068 §2.1");
            assert_eq!(header["alg"], "ES256", "{route}");
            assert_eq!(claims["aud"], JWT_RESOURCE, "{route}");
            assert_eq!(claims["client_id"], "basic-client", "{route}");
            assert_eq!(claims["sub"], "basic-client", "{route}");
            assert_eq!(claims["iss"], issuer().as_str(), "{route}");
            assert_eq!(claims["scope"], "api:read", "{route}");
            assert_eq!(token.scope(), Some("api:read"), "{route}");
            assert_lifetime(route, &token, 600);
            // The crate's expiry estimate errs early, never late: the server's clock counts
            // whole seconds, so ours may be up to one second past `exp`, never more.
            let exp = claims["exp"].as_u64().unwrap();
            assert_eq!(exp - claims["iat"].as_u64().unwrap(), 600, "{route}");
            assert!(
                token.expires_at().unwrap() < UNIX_EPOCH + Duration::from_secs(exp + 1),
                "{route}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn opaque_token_for_a_resource() {
    every_way(
        BASIC,
        // The resource has `api:read` only: the server narrows the scope, and says so.
        |b| b.scope("api:read api:write").resource(OPAQUE_RESOURCE),
        |route, _, outcome| {
            let token = token(route, outcome);
            assert!(
                !token.access_token().secret().contains('.'),
                "{route}: opaque, not a JWT"
            );
            assert_eq!(token.scope(), Some("api:read"), "{route}");
            assert_lifetime(route, &token, 300);
        },
    )
    .await;
}

#[tokio::test]
async fn unknown_resource_is_invalid_target() {
    every_way(
        BASIC,
        |b| b.resource("https://unknown.api.example/"),
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidTarget);
            assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{route}");
            assert!(!error.is_retryable(), "{route}");
            let oauth = error.oauth().unwrap();
            assert_eq!(
                oauth.description(),
                Some("resource indicator is missing, or unknown"),
                "{route}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn server_refuses_several_resources_for_this_grant() {
    // RFC 8707 §2 lets a client name several resources, and lets the server refuse a
    // combination it cannot issue one token for: oidc-provider issues one audience per token.
    every_way(
        BASIC,
        |b| b.resource(JWT_RESOURCE).resource(OPAQUE_RESOURCE),
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidTarget);
            assert_eq!(
                error.oauth().unwrap().description(),
                Some("only a single resource indicator value is supported for this grant type"),
                "{route}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn server_ignores_the_audience_parameter() {
    // RFC 6749 §3.2: unrecognized parameters are ignored. `audience` (Auth0's, Okta's) is not
    // oidc-provider's: the token is the plain opaque one; ask for `resource` instead.
    every_way(
        BASIC,
        |b| b.audience(JWT_RESOURCE),
        |route, _, outcome| {
            let token = token(route, outcome);
            assert!(!token.access_token().secret().contains('.'), "{route}");
            assert_lifetime(route, &token, 3600);
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Errors, typed as the server sent them.

#[tokio::test]
async fn wrong_secret_in_basic_is_401_with_a_challenge() {
    every_way(
        Cred::Basic("basic-client", "not-the-secret"),
        |b| b,
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidClient);
            assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED), "{route}");
            assert!(!error.is_retryable(), "{route}");
            let oauth = error.oauth().unwrap();
            assert_eq!(
                oauth.description(),
                Some("client authentication failed"),
                "{route}"
            );
            // RFC 6749 §5.2: a 401 to Basic credentials carries a Basic challenge.
            let challenges = oauth.challenges();
            assert_eq!(challenges.len(), 1, "{route}");
            assert_eq!(challenges[0].scheme(), "Basic", "{route}");
            assert_eq!(challenges[0].realm(), Some(issuer().as_str()), "{route}");
            assert_eq!(
                challenges[0].param("error"),
                Some("invalid_client"),
                "{route}"
            );
            assert_eq!(
                challenges[0].param("error_description"),
                Some("client authentication failed"),
                "{route}"
            );
            let text = error.to_string();
            assert!(!text.contains("not-the-secret"), "{route}: {text}");
        },
    )
    .await;
}

#[tokio::test]
async fn server_sends_no_challenge_when_the_secret_was_posted() {
    // RFC 6749 §5.2 requires `WWW-Authenticate` only when the client used the Authorization
    // header; RFC 9110 §15.5.2 requires it on every 401. The server follows RFC 6749, so the
    // crate must take a 401 without a challenge as the OAuth error it is.
    every_way(
        Cred::Post("post-client", "not-the-secret"),
        |b| b,
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidClient);
            assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED), "{route}");
            assert!(error.oauth().unwrap().challenges().is_empty(), "{route}");
        },
    )
    .await;
}

#[tokio::test]
async fn scope_the_client_may_not_have_is_invalid_scope() {
    every_way(
        BASIC,
        |b| b.scope("api:read api:admin"),
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidScope);
            assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{route}");
            let oauth = error.oauth().unwrap();
            assert_eq!(
                oauth.description(),
                Some("requested scope is not allowed"),
                "{route}"
            );
            // oidc-provider names the refused scope in a `scope` member of the error object,
            // which RFC 6749 §5.2 does not define: the crate keeps it with the other extras.
            assert_eq!(
                oauth.extra().get("scope"),
                Some(&json!("api:admin")),
                "{route}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn server_answers_a_grant_the_client_may_not_use_with_invalid_request() {
    // RFC 6749 §5.2 defines `unauthorized_client` for exactly this ("not authorized to use this
    // authorization grant type"); oidc-provider 9.13.3 sends `invalid_request`.
    every_way(
        CODE_ONLY,
        |b| b,
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidRequest);
            assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{route}");
            assert_eq!(
                error.oauth().unwrap().description(),
                Some("requested grant type is not allowed for this client"),
                "{route}"
            );
        },
    )
    .await;
}

/// The core's request with its body edited: what a caller of the core can always do, and the
/// only way to send a grant type the crate does not build.
fn edited(request: &TokenRequest, edit: impl Fn(&str) -> String) -> http::Request<Bytes> {
    let request = core_request(request);
    let body = std::str::from_utf8(request.body()).unwrap().to_owned();
    request.map(|_| Bytes::from(edit(&body)))
}

#[tokio::test]
async fn unsupported_grant_type() {
    for strict in [false, true] {
        let route = Route {
            way: Way::Core,
            strict,
        };
        let request = BASIC.client(rules(strict)).token_request().build().unwrap();
        let raw = edited(&request, |body| {
            body.replace(
                "grant_type=client_credentials",
                "grant_type=urn%3Aexample%3Aunsupported",
            )
        });
        let (response, sent_at) = send_raw(raw).await;
        let error = oauth_error(
            route,
            request.parse_response(&response, sent_at),
            &ErrorCode::UnsupportedGrantType,
        );
        assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{route}");
        assert_eq!(
            error.oauth().unwrap().description(),
            Some("unsupported grant_type requested"),
            "{route}"
        );
    }
}

#[tokio::test]
async fn server_answers_html_to_a_request_that_prefers_it() {
    // The crate sends `Accept: application/json`; a request that prefers HTML (a proxy that
    // rewrites the header, say) gets an HTML error page, which no rule reads as OAuth.
    for strict in [false, true] {
        let request = BASIC
            .client(rules(strict))
            .token_request()
            .scope("api:admin")
            .build()
            .unwrap();
        let mut raw = core_request(&request);
        raw.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let (response, sent_at) = send_raw(raw).await;
        match request.parse_response(&response, sent_at) {
            Err(Error::UnexpectedResponse(unexpected)) => {
                assert_eq!(unexpected.status(), StatusCode::BAD_REQUEST);
                assert_eq!(unexpected.content_type(), Some("text/html; charset=utf-8"));
                assert!(unexpected.excerpt().unwrap().starts_with("<!DOCTYPE html>"));
            }
            other => panic!("strict {strict}: expected an unexpected response, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn server_accepts_either_secret_method_whatever_was_registered() {
    // `basic-client` is registered for client_secret_basic and `post-client` for
    // client_secret_post, yet each may use the other method: oidc-provider checks only that a
    // secret was sent, not how (RFC 7591 §2 leaves enforcing the registered method open).
    let crossed = [
        Cred::Post("basic-client", "basic-secret"),
        Cred::Basic("post-client", "post-secret"),
    ];
    for cred in crossed {
        every_way(
            cred,
            |b| b.scope("api:read"),
            |route, _, outcome| {
                token(route, outcome);
            },
        )
        .await;
    }
}

#[tokio::test]
async fn server_refuses_unencoded_basic_credentials_with_a_percent() {
    // RFC 6749 §2.3.1 form-encodes the id and secret before Basic; oidc-provider decodes them,
    // so raw credentials work only while they hold nothing to decode.
    every_way(
        Cred::BasicUnencoded("basic-client", "basic-secret"),
        |b| b,
        |route, _, outcome| {
            token(route, outcome);
        },
    )
    .await;
    every_way(
        Cred::BasicUnencoded("basic-client", "100%&secret"),
        |b| b,
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidRequest);
            assert_eq!(
                error.oauth().unwrap().description(),
                Some(
                    "client_id and client_secret in the authorization header are not properly encoded"
                ),
                "{route}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn server_drops_unknown_scopes_and_omits_scope() {
    // A scope the server does not know is dropped. With `api:read` left, the response says
    // `scope: api:read`, as RFC 6749 §5.1 asks. With nothing left, the response leaves `scope`
    // out, which §5.1 reserves for "identical to the scope requested": a client following the
    // RFC, this crate included, then takes the requested scope as granted.
    every_way(
        BASIC,
        |b| b.scope("api:read nonsense"),
        |route, _, outcome| {
            assert_eq!(token(route, outcome).scope(), Some("api:read"), "{route}");
        },
    )
    .await;

    let request = BASIC
        .client(ResponseRules::strict())
        .token_request()
        .scope("nonsense")
        .build()
        .unwrap();
    let (response, sent_at) = send_raw(core_request(&request)).await;
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert!(body.get("scope").is_none(), "the server left scope out");
    let token = request.parse_response(&response, sent_at).unwrap();
    assert_eq!(token.scope(), Some("nonsense"), "RFC 6749 §5.1 reading");
}

// ---------------------------------------------------------------------------------------------
// 5. private_key_jwt and client_secret_jwt (RFC 7523).

/// The claims and header of the client assertion a request carries for one attempt.
fn assertion_of(request: &TokenRequest) -> (Value, Value) {
    let http_request = request
        .http_request(&Attempt::new(now(), entropy()))
        .expect("the assertion is signed");
    let body = String::from_utf8(http_request.body().secret().to_vec()).unwrap();
    let assertion = form_urlencoded_value(&body, "client_assertion").expect("an assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS has three parts");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

/// The value of a form parameter; the crate's values here need no decoding.
fn form_urlencoded_value(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

#[tokio::test]
async fn private_key_jwt_gets_a_token() {
    every_way(
        JWT,
        |b| b.scope("api:read"),
        |route, request, outcome| {
            let (header, claims) = assertion_of(request);
            assert_eq!(
                header,
                json!({ "alg": "ES256", "kid": "interop-client" }),
                "{route}"
            );
            assert_eq!(claims["iss"], "jwt-client", "{route}");
            assert_eq!(claims["sub"], "jwt-client", "{route}");
            assert_eq!(claims["aud"], token_endpoint().as_str(), "{route}");
            let token = token(route, outcome);
            assert_eq!(token.scope(), Some("api:read"), "{route}");
            assert_lifetime(route, &token, 3600);
        },
    )
    .await;
}

#[tokio::test]
async fn private_key_jwt_signs_a_fresh_assertion_for_every_request() {
    // The server refuses a `jti` it has seen (`server_refuses_a_replayed_assertion`), so the
    // same request succeeding twice shows that each attempt signs its own assertion.
    for way in WAYS {
        let route = Route { way, strict: true };
        let request = JWT
            .client(ResponseRules::strict())
            .token_request()
            .build()
            .unwrap();
        token(route, fetch(way, &request).await);
        token(route, fetch(way, &request).await);
    }
}

#[tokio::test]
async fn private_key_jwt_with_the_issuer_as_audience() {
    // oidc-provider takes the issuer, the token endpoint or the endpoint's url as `aud`.
    for way in WAYS {
        let route = Route { way, strict: true };
        let auth = JwtAuth::new(client_key()).with_audience(issuer());
        let url = TokenUrl::new(&token_endpoint()).unwrap();
        let client = ClientCredentials::with_auth(url, "jwt-client", ClientAuth::Jwt(auth))
            .unwrap()
            .with_response_rules(ResponseRules::strict());
        let request = client.token_request().build().unwrap();
        assert_eq!(
            assertion_of(&request).1["aud"],
            issuer().as_str(),
            "{route}"
        );
        token(route, fetch(way, &request).await);
    }
}

#[tokio::test]
async fn client_secret_jwt_gets_a_token() {
    every_way(
        SECRET_JWT,
        |b| b.scope("api:read"),
        |route, request, outcome| {
            assert_eq!(
                request.client().auth_method(),
                AuthMethod::ClientSecretJwt,
                "{route}"
            );
            let (header, claims) = assertion_of(request);
            assert_eq!(header, json!({ "alg": "HS256" }), "{route}");
            assert_eq!(claims["iss"], "secret-jwt-client", "{route}");
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                60,
                "{route}: the default lifetime"
            );
            let token = token(route, outcome);
            assert_eq!(token.scope(), Some("api:read"), "{route}");
        },
    )
    .await;
}

#[tokio::test]
async fn client_secret_jwt_with_another_secret_is_invalid_client() {
    every_way(
        Cred::SecretJwt(
            "secret-jwt-client",
            "not-the-secret-but-long-enough-for-hs256",
        ),
        |b| b,
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidClient);
            assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED), "{route}");
            assert!(!error.is_retryable(), "{route}");
        },
    )
    .await;
}

// Through the pre-signed assertion path.

#[tokio::test]
async fn pre_signed_assertion_gets_a_token() {
    every_way(
        PRE_SIGNED,
        |b| b.scope("api:read"),
        |route, request, outcome| {
            let body = request.http_request(&support::responses::attempt()).unwrap().body().secret().to_vec();
            let body = String::from_utf8(body).unwrap();
            assert!(
                body.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"),
                "{route}"
            );
            let token = token(route, outcome);
            assert_eq!(token.scope(), Some("api:read"), "{route}");
            assert_lifetime(route, &token, 3600);
        },
    )
    .await;
}

#[tokio::test]
async fn server_refuses_a_replayed_assertion() {
    // RFC 7523 §3 item 7 lets the server remember each assertion's `jti`; oidc-provider does,
    // so a pre-signed assertion serves one request: sign a fresh one for each.
    for way in WAYS {
        let route = Route { way, strict: true };
        let request = PRE_SIGNED
            .client(ResponseRules::strict())
            .token_request()
            .build()
            .unwrap();
        token(route, fetch(way, &request).await);
        let error = oauth_error(route, fetch(way, &request).await, &ErrorCode::InvalidClient);
        assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED), "{route}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. DPoP (RFC 9449), with the server requiring its nonce in every proof.

fn dpop_key() -> DpopKey {
    DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).expect("an ES256 key"))
        .expect("an asymmetric key with a public jwk")
}

/// One token request as the server logged it: whether its proof had a nonce, and the status.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
struct Logged {
    nonce: bool,
    status: u16,
}

/// A nonce-less proof refused, then the retry with the nonce.
const RETRIED: [Logged; 2] = [
    Logged {
        nonce: false,
        status: 400,
    },
    Logged {
        nonce: true,
        status: 200,
    },
];
/// A proof with the nonce learnt from an earlier response.
const WITH_NONCE: [Logged; 1] = [Logged {
    nonce: true,
    status: 200,
}];

/// The token requests the server saw with proofs of `key` (interop/server.mjs logs them).
async fn dpop_log(key: &DpopKey) -> Vec<Logged> {
    let url = format!("{}/interop/dpop-log/{}", issuer(), key.thumbprint());
    let response = reqwest::get(url).await.expect("the server answers");
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&response.bytes().await.unwrap()).expect("the log")
}

#[tokio::test]
async fn server_asks_for_a_dpop_nonce_first() {
    // By hand through the core: an attempt without a nonce, then one with the server's.
    let key = dpop_key();
    let request = DPOP
        .client(ResponseRules::strict())
        .with_dpop(key.clone())
        .token_request()
        .scope("api:read")
        .build()
        .unwrap();
    let first = request
        .http_request(&Attempt::new(now(), entropy()))
        .unwrap();
    let (response, sent_at) = send_raw(first.map(RequestBody::into_bytes)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    let error = request.parse_response(&response, sent_at).unwrap_err();
    let oauth = error.oauth().expect("an oauth error");
    assert_eq!(oauth.code(), &ErrorCode::UseDpopNonce);
    assert_eq!(
        oauth.description(),
        Some("nonce is required in the DPoP proof")
    );
    assert!(error.is_retryable());
    let nonce = error.dpop_retry_nonce().expect("a nonce to retry with");
    assert_eq!(
        response.headers()["dpop-nonce"],
        nonce,
        "the header, as sent"
    );

    let retry = Attempt::new(now(), entropy()).with_dpop_nonce(nonce);
    let second = request.http_request(&retry).unwrap();
    let (response, sent_at) = send_raw(second.map(RequestBody::into_bytes)).await;
    let token = request.parse_response(&response, sent_at).unwrap();
    assert_eq!(token.token_type(), &TokenType::DPoP);
    assert_eq!(dpop_log(&key).await, RETRIED);
}

#[tokio::test]
async fn dpop_bound_token_with_the_nonce_retry() {
    // The only test that sends DPoP proofs through the adapters. Their exchanges share one
    // session, whose nonce store they all read and feed: the first adapter exchange retries,
    // the later ones start with the nonce. The core's each run in a fresh session, with a
    // store of its own, so a DPoP client's first attempt always gets `use_dpop_nonce`.
    let shared = Session::new();
    let mut adapter_exchanges = 0;
    for route in routes() {
        let key = dpop_key();
        let fresh = Session::new();
        let session = match route.way {
            Way::Core => &fresh,
            _ => &shared,
        };
        let request = DPOP
            .client(ResponseRules::default())
            .with_response_rules(rules(route.strict))
            .with_dpop(key.clone())
            .token_request()
            .scope("api:read")
            .resource(JWT_RESOURCE)
            .build()
            .unwrap();
        let token = token(route, fetch_in(route.way, &request, session).await);
        assert_eq!(token.token_type(), &TokenType::DPoP, "{route}");
        assert_eq!(token.scope(), Some("api:read"), "{route}");
        let (_, claims) = jwt_claims(route, &token);
        assert_eq!(
            claims["cnf"],
            json!({ "jkt": key.thumbprint() }),
            "{route}: bound to the key (RFC 9449 §6.1)"
        );
        let log = dpop_log(&key).await;
        match route.way {
            Way::Core => assert_eq!(log, RETRIED, "{route}: a fresh nonce store"),
            _ if adapter_exchanges == 0 => assert_eq!(log, RETRIED, "{route}: the first"),
            _ => assert_eq!(log, WITH_NONCE, "{route}: the nonce is remembered"),
        }
        if !matches!(route.way, Way::Core) {
            adapter_exchanges += 1;
        }
    }
}

#[tokio::test]
async fn the_core_exchange_remembers_the_nonce() {
    // The exchanges of one session share its nonce store, whatever clone of the client sends.
    let client = DPOP.client(ResponseRules::strict());
    let session = Session::new();
    for expected in [&RETRIED[..], &WITH_NONCE[..]] {
        let key = dpop_key();
        let request = client
            .clone()
            .with_dpop(key.clone())
            .token_request()
            .build()
            .unwrap();
        let token = fetch_core_in(&request, &session).await.unwrap();
        assert_eq!(token.token_type(), &TokenType::DPoP);
        assert_eq!(dpop_log(&key).await, expected);
    }
}

#[tokio::test]
async fn server_refuses_the_dpop_bound_client_without_a_proof_with_invalid_grant() {
    every_way(
        DPOP,
        |b| b,
        |route, _, outcome| {
            let error = oauth_error(route, outcome, &ErrorCode::InvalidGrant);
            assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{route}");
            assert_eq!(
                error.oauth().unwrap().description(),
                Some("grant request is invalid"),
                "{route}"
            );
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Discovery (RFC 8414, OpenID Connect Discovery): a client from the issuer alone.

#[tokio::test]
async fn discovery_from_the_issuer_alone() {
    let issuer_id = Issuer::new(&issuer()).expect("a loopback issuer");
    for way in WAYS {
        let route = Route { way, strict: false };
        let variants = [
            MetadataRequest::oauth(issuer_id.clone()),
            MetadataRequest::openid(issuer_id.clone()),
        ];
        for discovery in variants {
            let what = format!("{route} from {}", discovery.url());
            let metadata = fetch_metadata(way, &discovery)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(metadata.issuer(), issuer(), "{what}");
            assert_eq!(
                metadata.token_endpoint().to_string(),
                token_endpoint(),
                "{what}"
            );
            assert!(
                metadata
                    .grant_types_supported()
                    .iter()
                    .any(|grant| grant == "client_credentials"),
                "{what}"
            );
            assert!(
                metadata
                    .dpop_signing_alg_values_supported()
                    .is_some_and(|algs| algs.iter().any(|alg| alg == "ES256")),
                "{what}"
            );

            // The metadata chooses the method: Basic for a secret, private_key_jwt for a key,
            // client_secret_jwt for a secret registered for it.
            let choices = [
                (
                    "basic-client",
                    AuthMaterial::new().secret(ClientSecret::new("basic-secret")),
                    AuthMethod::ClientSecretBasic,
                ),
                (
                    "jwt-client",
                    AuthMaterial::new().signer(client_key()),
                    AuthMethod::PrivateKeyJwt,
                ),
                (
                    "secret-jwt-client",
                    AuthMaterial::new()
                        .secret(ClientSecret::new(SECRET_JWT_SECRET))
                        .registered_method(AuthMethod::ClientSecretJwt),
                    AuthMethod::ClientSecretJwt,
                ),
            ];
            for (id, credentials, method) in choices {
                let client = metadata.client(id, &credentials).expect("a usable method");
                assert_eq!(client.auth_method(), method, "{what}: {id}");
                let request = client.token_request().scope("api:read").build().unwrap();
                let token = fetch(way, &request)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {id}: {e}"));
                assert_eq!(token.scope(), Some("api:read"), "{what}: {id}");
            }
        }
    }
}

#[tokio::test]
async fn discovery_of_another_issuer_is_refused() {
    // The document names the issuer it was fetched from; asking for it under another
    // identifier (a trailing slash) fails the RFC 8414 §3.3 check, every way.
    let other = Issuer::new(&format!("{}/", issuer())).unwrap();
    for way in WAYS {
        let route = Route { way, strict: false };
        match fetch_metadata(way, &MetadataRequest::oauth(other.clone())).await {
            Err(Error::Discovery(error)) => assert_eq!(
                *error,
                DiscoveryError::IssuerMismatch {
                    expected: format!("{}/", issuer()),
                    found: issuer(),
                },
                "{route}"
            ),
            other => panic!("{route}: expected an issuer mismatch, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions from a source (RFC 7521 §4.2): a file the test writes as the platform would.

/// A directory of its own for one test's assertion file, removed at the end.
struct PlatformDir(std::path::PathBuf);

impl PlatformDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cc-interop-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.join("token")
    }

    /// Writes the assertion as the kubelet does: a new file renamed over the old one.
    fn rotate(&self, assertion: &ClientAssertion) {
        let staged = self.0.join("token.new");
        std::fs::write(&staged, format!("{}\n", assertion.secret())).unwrap();
        std::fs::rename(&staged, self.path()).unwrap();
    }
}

impl Drop for PlatformDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn source_client(file: &std::sync::Arc<AssertionFile>) -> ClientCredentials {
    let source = AssertionSource::from_arc(file.clone());
    ClientCredentials::with_auth(
        TokenUrl::new(&token_endpoint()).unwrap(),
        "jwt-client",
        ClientAuth::Source(source),
    )
    .unwrap()
    .with_response_rules(ResponseRules::strict())
}

#[tokio::test]
async fn assertions_from_a_rotated_file_keep_tokens_flowing() {
    for way in WAYS {
        let route = Route { way, strict: true };
        let dir = PlatformDir::new(&format!("rotation-{way:?}").replace([' ', '"', '(', ')'], ""));
        dir.rotate(&mint_assertion("jwt-client", &issuer(), None, 600, "a"));
        let file = std::sync::Arc::new(AssertionFile::new(dir.path()));
        let request = source_client(&file).token_request().build().unwrap();
        token(route, fetch(way, &request).await);
        assert_eq!(file.reads(), 1, "{route}");

        // The server remembers each `jti`: the held assertion, unchanged, is refused as replayed,
        // and the file is not read again for it.
        let replayed = fetch(way, &request).await;
        oauth_error(route, replayed, &ErrorCode::InvalidClient);
        assert_eq!(
            file.reads(),
            1,
            "{route}: an unchanged file is not read again"
        );

        // The platform fails to rotate and the assertion expires: refused before sending.
        dir.rotate(&mint_assertion("jwt-client", &issuer(), None, -5, "bb"));
        match fetch(way, &request).await {
            Err(Error::ClientAssertion(AssertionError::Expired { origin, .. })) => {
                assert!(origin.contains("token"), "{route}: {origin}");
            }
            other => panic!("{route}: expected an expired assertion, got {other:?}"),
        }
        assert_eq!(file.reads(), 2, "{route}");

        // It rotates again: tokens flow, one read per rotation.
        for (round, pad) in ["ccc", "dddd", "eeeee"].into_iter().enumerate() {
            dir.rotate(&mint_assertion("jwt-client", &issuer(), None, 600, pad));
            token(route, fetch(way, &request).await);
            assert_eq!(file.reads(), 3 + round as u64, "{route}");
        }
    }
}

/// oidc-provider's verdict on a `private_key_jwt` assertion by its `aud` and `typ`, through a
/// file (the platform's assertion) and through the crate's signer.
#[tokio::test]
async fn server_accepts_issuer_or_token_endpoint_as_audience_with_or_without_typ() {
    let typ = Some(client_credentials::auth::JwtAuth::CLIENT_AUTHENTICATION_TYPE);
    let cases = [
        (issuer(), None),
        (issuer(), typ),
        (token_endpoint(), None),
        (token_endpoint(), typ),
    ];
    let route = Route {
        way: WAYS[1],
        strict: true,
    };
    let dir = PlatformDir::new("verdicts");
    let file = std::sync::Arc::new(AssertionFile::new(dir.path()));
    let request = source_client(&file).token_request().build().unwrap();
    for (i, (aud, typ)) in cases.iter().enumerate() {
        dir.rotate(&mint_assertion(
            "jwt-client",
            aud,
            *typ,
            600,
            &"p".repeat(i + 1),
        ));
        let outcome = fetch(WAYS[1], &request).await;
        assert!(outcome.is_ok(), "aud {aud}, typ {typ:?}: {outcome:?}");
    }
    for to_issuer in [true, false] {
        for explicit in [false, true] {
            let mut auth = JwtAuth::new(client_key())
                .with_issuer(issuer())
                .with_explicit_type(explicit);
            if !to_issuer {
                auth = auth.with_token_endpoint_audience();
            }
            let client = ClientCredentials::with_auth(
                TokenUrl::new(&token_endpoint()).unwrap(),
                "jwt-client",
                ClientAuth::Jwt(auth),
            )
            .unwrap();
            let request = client.token_request().build().unwrap();
            let (header, claims) = assertion_of(&request);
            let aud = if to_issuer {
                issuer()
            } else {
                token_endpoint()
            };
            assert_eq!(claims["aud"], aud.as_str());
            assert_eq!(header.get("typ").is_some(), explicit);
            token(route, fetch(route.way, &request).await);
        }
    }
}

#[tokio::test]
async fn a_discovered_jwt_client_sends_the_issuer_as_audience_and_gets_a_token() {
    let metadata = fetch_metadata(
        WAYS[1],
        &MetadataRequest::openid(Issuer::new(&issuer()).unwrap()),
    )
    .await
    .unwrap();
    let client = metadata
        .client("jwt-client", &AuthMaterial::new().signer(client_key()))
        .unwrap();
    let request = client.token_request().build().unwrap();
    assert_eq!(assertion_of(&request).1["aud"], issuer().as_str());
    let route = Route {
        way: WAYS[1],
        strict: false,
    };
    token(route, fetch(route.way, &request).await);
}

// ---------------------------------------------------------------------------------------------
// Clock skew: a client whose clock is ten minutes off oidc-provider's.

/// The core's exchange in `session` at a client clock `skew` seconds off the real time.
async fn fetch_core_skewed(
    request: &TokenRequest,
    session: &Session,
    skew: i64,
) -> Result<Token, Error> {
    let mut exchange = TokenFetch::new(request, session);
    loop {
        let off = Duration::from_secs(skew.unsigned_abs());
        let at = if skew >= 0 { now() + off } else { now() - off };
        let http_request = exchange.http_request(at, || Ok(entropy()))?;
        let (response, _) = send_raw(http_request.map(RequestBody::into_bytes)).await;
        match exchange.handle_response(&response)? {
            FetchStep::Done(token) => return Ok(token),
            FetchStep::Retry => {}
        }
    }
}

#[tokio::test]
async fn a_skewed_client_learns_oidc_providers_clock_from_its_date() {
    // Pinned verdicts of oidc-provider: an assertion from a client ten minutes slow (expired
    // by its clock) is refused as `invalid_client` "client authentication failed", the reason
    // only in its log: not recognisable as about time, so the exchange is not retried, but its
    // `Date` corrects the client's clock and the next exchange succeeds. One from a client ten
    // minutes fast (`iat` in its future, `exp` not past) is accepted: it checks `exp` and
    // `nbf`, not a future `iat`. Either way the client learns the offset.
    let client = |skew: i64| {
        ClientCredentials::with_auth(
            TokenUrl::new(&token_endpoint()).unwrap(),
            "jwt-client",
            ClientAuth::Jwt(JwtAuth::new(client_key())),
        )
        .unwrap()
        .token_request()
        .build()
        .unwrap_or_else(|e| panic!("skew {skew}: {e}"))
    };
    let learnt = |session: &Session, skew: i64| {
        let offset = session.server_clock().offset_millis();
        let offset = offset.expect("oidc-provider sends Date");
        assert!(
            (offset / 1000).abs_diff(-skew) <= 2,
            "skew {skew}: offset {offset} ms"
        );
    };

    let (slow, session) = (client(-600), Session::new());
    let error = fetch_core_skewed(&slow, &session, -600).await.unwrap_err();
    let oauth = error.oauth().expect("an OAuth refusal");
    assert_eq!(oauth.code(), &ErrorCode::InvalidClient);
    assert_eq!(oauth.description(), Some("client authentication failed"));
    assert!(!client_credentials::fetch::is_refusal_about_time(&error));
    learnt(&session, -600);
    let token = fetch_core_skewed(&slow, &session, -600)
        .await
        .expect("on the server's time");
    assert_eq!(token.token_type(), &TokenType::Bearer);

    let (fast, session) = (client(600), Session::new());
    fetch_core_skewed(&fast, &session, 600)
        .await
        .expect("a future iat is accepted");
    learnt(&session, 600);
    fetch_core_skewed(&fast, &session, 600)
        .await
        .expect("on the server's time");
}
