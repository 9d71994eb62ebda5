//! What the crate tells a `tracing` subscriber (feature `tracing`), captured as text by a fmt
//! subscriber at TRACE with the spans' fields: real fetches by every adapter and both token
//! sources against a server on 127.0.0.1 that issues random tokens and echoes the secrets it
//! received into its error bodies. The law: no client secret, access or refresh token,
//! assertion, DPoP proof or token URL query ever appears in the output, while the span
//! `fetch_token` and the events the crate docs list do.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use client_credentials::auth::{AuthMethod, ClientAuth, JwsAlgorithm, JwtAuth, PrivateKey};
use client_credentials::dpop::DpopKey;
use client_credentials::reqwest::TIMEOUT;
use client_credentials::{
    CachePolicy, ClientCredentials, ClientSecret, TokenRequest, TokenSource, TokenUrl,
};
use proptest::prelude::*;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::support::adapters::Adapter;

/// How many times a bounded wait polls (every millisecond or so) before it gives up.
const POLLS: usize = 5_000;

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// A subscriber writing everything, spans' fields included (on their close), into `captured`:
/// the default of this thread until the guard is dropped.
fn capture(captured: &Captured) -> tracing::dispatcher::DefaultGuard {
    // While at most one dispatcher is alive, tracing-core asks only the registering thread's
    // default about a callsite hit for the first time: another test's thread, which has none,
    // would cache "never" for an event this test waits for. With a second dispatcher alive for
    // the whole run it asks every live one, and the callsite stays "sometimes".
    static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let guard = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(LevelFilter::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .finish()
        .set_default();
    // A callsite that another test's thread (without a subscriber) registered while this
    // subscriber was being registered may have cached "never": ask every callsite again.
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// What the echo server answers the next request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// 200, a token (DPoP-bound if the request had a proof) with a refresh token, both new.
    Token,
    /// 400 `use_dpop_nonce` with a new nonce.
    UseDpopNonce,
    /// 401 `invalid_client`, the secrets received echoed by name in its description and uri,
    /// the proof and the last token in members.
    EchoOAuth,
    /// 502, an HTML page echoing the request's body and the last token.
    EchoHtml,
    /// 503 plain text with `Retry-After`, echoing the secrets by name.
    EchoPlain,
    /// 200, a JSON body that is not a token response, holding the secrets in members.
    EchoJson,
}

/// A request as the echo server received it.
#[derive(Debug, Clone)]
struct Received {
    authorization: Option<String>,
    dpop: Option<String>,
    body: String,
}

/// What the echo server and the test share.
#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    /// Every access and refresh token issued.
    issued: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A token endpoint on 127.0.0.1 answering one request per connection by its script (a token
/// once the script is spent), issuing tokens `{access}{n}` and `{refresh}{n}`.
struct EchoServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(access: String, refresh: String) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for (served, stream) in listener.incoming().enumerate() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let issued = (format!("{access}{served}"), format!("{refresh}{served}"));
                        answer(stream, &shared, &issued.0, &issued.1);
                    }
                }
            })
        };
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The token URL, with a query holding `query_secret`.
    fn token_url(&self, query_secret: &str) -> TokenUrl {
        TokenUrl::new(&format!(
            "http://{}/token?api_key={query_secret}",
            self.addr
        ))
        .unwrap()
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    fn requests(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// Every secret the server received or issued: client secrets, assertions, DPoP proofs,
    /// Basic credentials, access and refresh tokens.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = self.shared.issued.lock().unwrap().clone();
        for received in self.shared.received.lock().unwrap().iter() {
            secrets.extend(received.dpop.clone());
            secrets.extend(
                received
                    .authorization
                    .as_deref()
                    .and_then(|value| value.strip_prefix("Basic "))
                    .map(str::to_owned),
            );
            for (name, value) in form_urlencoded::parse(received.body.as_bytes()) {
                if name == "client_secret" || name == "client_assertion" {
                    secrets.push(value.into_owned());
                }
            }
        }
        secrets
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream` and answers it by the script.
fn answer(stream: TcpStream, shared: &Shared, access: &str, refresh: &str) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return; // the wake-up connection, or a client that gave up
    }
    let (mut authorization, mut dpop, mut length) = (None, None, 0);
    loop {
        line.clear();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        let value = value.trim().to_owned();
        match name.to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(value),
            "dpop" => dpop = Some(value),
            "content-length" => length = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let received = Received {
        authorization,
        dpop,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Token);
    let last_token = shared.issued.lock().unwrap().first().cloned();
    let response = reply_to(reply, &received, access, refresh, last_token.as_deref());
    if reply == Reply::Token {
        shared
            .issued
            .lock()
            .unwrap()
            .extend([access.to_owned(), refresh.to_owned()]);
    }
    shared.received.lock().unwrap().push(received);
    let _ = reader.into_inner().write_all(response.as_bytes());
}

/// The HTTP/1.1 response of `reply` to `received`, closing the connection.
fn reply_to(
    reply: Reply,
    received: &Received,
    access: &str,
    refresh: &str,
    last_token: Option<&str>,
) -> String {
    // The secrets the request carried in its body, by name, as a gateway echoes them.
    let named: Vec<String> = form_urlencoded::parse(received.body.as_bytes())
        .filter(|(name, _)| name == "client_secret" || name == "client_assertion")
        .map(|(name, value)| format!("{name}={value}"))
        .chain(last_token.map(|token| format!("access_token={token}")))
        .collect();
    let named = named.join("; ");
    let proof = received.dpop.as_deref().unwrap_or_default();
    let (status, content_type, extra, body) = match reply {
        Reply::Token => {
            let token_type = if received.dpop.is_some() { "DPoP" } else { "Bearer" };
            (
                "200 OK",
                "application/json",
                String::new(),
                serde_json::json!({
                    "access_token": access,
                    "token_type": token_type,
                    "expires_in": 3600,
                    "refresh_token": refresh,
                })
                .to_string(),
            )
        }
        Reply::UseDpopNonce => (
            "400 Bad Request",
            "application/json",
            format!("dpop-nonce: nonce-{access}-n\r\n"),
            r#"{"error":"use_dpop_nonce","error_description":"nonce is required in the DPoP proof"}"#
                .to_owned(),
        ),
        Reply::EchoOAuth => (
            "401 Unauthorized",
            "application/json",
            String::new(),
            serde_json::json!({
                "error": "invalid_client",
                "error_description": format!("could not read {named}"),
                "error_uri": format!("https://idp.example/e?{named}"),
                "dpop": proof,
                "access_token": last_token,
            })
            .to_string(),
        ),
        Reply::EchoHtml => (
            "502 Bad Gateway",
            "text/html",
            String::new(),
            format!(
                "<html><body><h1>502 Bad Gateway</h1><p>request was: {}</p><p>{named}</p></body></html>",
                received.body
            ),
        ),
        Reply::EchoPlain => (
            "503 Service Unavailable",
            "text/plain",
            "retry-after: 1\r\n".to_owned(),
            format!("upstream refused: {named}"),
        ),
        Reply::EchoJson => (
            "200 OK",
            "application/json",
            String::new(),
            serde_json::json!({ "client_secret": named, "dpop": proof, "token": last_token })
                .to_string(),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy)]
enum Method {
    Basic,
    Post,
    SecretJwt,
    PrivateKeyJwt,
}

fn client(url: TokenUrl, id: &str, secret: &str, method: Method, dpop: bool) -> ClientCredentials {
    let secret = ClientSecret::new(secret);
    let auth = match method {
        Method::Basic => ClientAuth::SecretBasic(secret),
        Method::Post => ClientAuth::SecretPost(secret),
        Method::SecretJwt => ClientAuth::Jwt(JwtAuth::client_secret(&secret).unwrap()),
        Method::PrivateKeyJwt => ClientAuth::Jwt(JwtAuth::new(
            PrivateKey::generate(JwsAlgorithm::Es256).unwrap(),
        )),
    };
    let client = ClientCredentials::with_auth(url, id, auth).unwrap();
    if dpop {
        let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
        client.with_dpop(key)
    } else {
        client
    }
}

/// Invalidated tokens dropped at once, and a back-off long enough for a test to see.
fn policy() -> CachePolicy {
    CachePolicy::new()
        .with_invalidate_min_age(Duration::ZERO)
        .with_backoff_initial(Duration::from_secs(60))
        .with_backoff_max(Duration::from_secs(60))
        .with_backoff_jitter(0.0)
}

/// Waits until `captured` holds `text`, polling with the runtime's sleep.
async fn written(captured: &Captured, text: &str) {
    for _ in 0..POLLS {
        if captured.text().contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("no {text:?} in {}", captured.text());
}

/// Every adapter fetches once: a token (after a DPoP nonce retry for a DPoP client), then an
/// echoed failure. The blocking adapter runs on this thread, so that its span is captured.
fn fetch_with_every_adapter(
    runtime: &tokio::runtime::Runtime,
    server: &EchoServer,
    request: &TokenRequest,
    dpop: bool,
    echo: Reply,
) {
    let nonce = dpop.then_some(Reply::UseDpopNonce);
    for adapter in Adapter::asynchronous(None) {
        server.script(nonce.into_iter().chain([Reply::Token, echo]));
        let name = adapter.name();
        runtime
            .block_on(adapter.fetch(request))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(runtime.block_on(adapter.fetch(request)).is_err(), "{name}");
    }
    server.script(nonce.into_iter().chain([Reply::Token, echo]));
    let http = client_credentials::reqwest::blocking::recommended_client();
    let fetch = || client_credentials::reqwest::blocking::fetch_token(&http, request, TIMEOUT);
    fetch().unwrap_or_else(|error| panic!("reqwest blocking: {error}"));
    assert!(fetch().is_err(), "reqwest blocking");
}

/// The async source: invalidation, a forced refresh that fails while the token is served, and
/// a back-off that callers fail fast against.
fn use_the_async_source(
    runtime: &tokio::runtime::Runtime,
    captured: &Captured,
    server: &EchoServer,
    request: &TokenRequest,
    echo: Reply,
) {
    runtime.block_on(async {
        let source = TokenSource::reqwest(
            client_credentials::reqwest::recommended_client(),
            request.clone(),
        )
        .with_policy(policy());
        let first = source.token().await.unwrap();
        assert!(source.invalidate(&first));
        assert!(!source.invalidate(&first), "already dropped");
        let second = source.token().await.unwrap();
        assert!(source.force_refresh());
        server.script([echo]);
        let served = source.token().await.unwrap();
        assert!(Arc::ptr_eq(&served, &second), "served while refreshing");
        written(captured, "token refresh failed").await;

        let failing = source.clone().with_policy(policy()); // a new, empty cache
        server.script([echo]);
        assert!(failing.token().await.is_err());
        let requests = server.requests();
        assert!(failing.token().await.is_err());
        assert_eq!(
            server.requests(),
            requests,
            "failed fast, without a request"
        );
    });
}

/// The blocking source, on this thread: the same steps.
fn use_the_blocking_source(server: &EchoServer, request: &TokenRequest, echo: Reply) {
    use client_credentials::reqwest::blocking::{TokenSource, recommended_client};

    let source = TokenSource::with_policy(recommended_client(), request.clone(), policy());
    let first = source.token().unwrap();
    assert!(source.invalidate(&first));
    let second = source.token().unwrap();
    assert!(source.force_refresh());
    server.script([echo]);
    let served = source.token().unwrap();
    assert!(Arc::ptr_eq(&served, &second), "the old token, still valid");

    let failing = TokenSource::with_policy(recommended_client(), request.clone(), policy());
    server.script([echo]);
    assert!(failing.token().is_err());
    let requests = server.requests();
    assert!(failing.token().is_err());
    assert_eq!(
        server.requests(),
        requests,
        "failed fast, without a request"
    );
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Basic),
        Just(Method::Post),
        Just(Method::SecretJwt),
        Just(Method::PrivateKeyJwt),
    ]
}

fn echo() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::EchoOAuth),
        Just(Reply::EchoHtml),
        Just(Reply::EchoPlain),
        Just(Reply::EchoJson),
    ]
}

/// The span's fields and the events every run must show, with what `echo` makes of a fetch.
fn expected(id: &str, method: Method, echo: Reply) -> Vec<String> {
    let auth_method = match method {
        Method::Basic => AuthMethod::ClientSecretBasic,
        Method::Post => AuthMethod::ClientSecretPost,
        Method::SecretJwt => AuthMethod::ClientSecretJwt,
        Method::PrivateKeyJwt => AuthMethod::PrivateKeyJwt,
    };
    let failure = match echo {
        Reply::EchoOAuth => r#"outcome="oauth_error" http.status=401 oauth.error="invalid_client""#,
        Reply::EchoHtml => r#"outcome="unexpected_response" http.status=502"#,
        Reply::EchoPlain => r#"outcome="unexpected_response" http.status=503"#,
        _ => r#"outcome="invalid_response" http.status=200"#,
    };
    let mut expected: Vec<String> = [
        "fetch_token{token_endpoint.host=\"127.0.0.1\" token_endpoint.path=\"/token\"",
        &format!(r#"client_id="{id}" auth_method="{}""#, auth_method.as_str()),
        r#"outcome="token" http.status=200"#,
        failure,
        "duration_ms=",
        "client_credentials: close",
        "refreshing ahead of its expiry",
        "token refresh failed",
        "token fetch failed",
        "backing off after a failed fetch",
        "remaining_ms=",
        "token invalidated by the caller",
        "dropped=true",
        "dropped=false",
        "token refresh forced by the caller",
        "had_token=true",
    ]
    .map(str::to_owned)
    .into();
    expected.push(format!(r#"client_id="{id}""#));
    expected
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Real fetches by every adapter and both sources, with random secrets and tokens and a
    /// server echoing them in its errors: the captured output shows the span's fields and the
    /// events, and never a secret, a token, an assertion, a proof or the token URL's query.
    #[test]
    fn tracing_output_shows_the_fetches_and_never_a_secret(
        id in "[a-z]{4,8}-client",
        secret in "[A-Za-z0-9]{32,40}",
        query_secret in "[A-Za-z0-9]{16}",
        access in "[A-Za-z0-9]{20,30}",
        refresh in "[A-Za-z0-9]{20,30}",
        method in method(),
        dpop in any::<bool>(),
        echo in echo(),
    ) {
        let captured = Captured::default();
        let _guard = capture(&captured);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = EchoServer::start(access.clone(), refresh.clone());
        let request = client(server.token_url(&query_secret), &id, &secret, method, dpop)
            .token_request()
            .build()
            .unwrap();

        fetch_with_every_adapter(&runtime, &server, &request, dpop, echo);
        use_the_async_source(&runtime, &captured, &server, &request, echo);
        use_the_blocking_source(&server, &request, echo);
        drop(runtime); // ends the spawned refreshes, and their spans
        let text = captured.text();

        for shown in expected(&id, method, echo) {
            prop_assert!(text.contains(&shown), "no {shown:?} in {text}");
        }
        if dpop {
            prop_assert!(text.contains(r#"attempts=2 outcome="token""#), "{text}");
        }
        let mut hidden = server.secrets();
        hidden.extend([secret, query_secret, access, refresh]);
        prop_assert!(hidden.len() > 4, "the server received and issued secrets");
        for secret in &hidden {
            prop_assert!(!text.contains(secret.as_str()), "{secret:?} leaked into {text}");
        }
    }
}

/// Authorized calls through both layers (DPoP-bound tokens, so that proofs go out): the events
/// of a retry, a refusal not replayed and a token that could not be had appear, with the call's
/// host and path; no access token, DPoP proof, client secret or query does.
#[test]
fn authorized_calls_show_their_retries_and_never_a_token_or_proof() {
    use client_credentials::call::CallPolicy;
    use client_credentials_test_server::{DEMO_CLIENT_SECRET, Fault, TestServer};
    use http::{Method, StatusCode};

    use crate::authorized::{Api, dpop_source};

    let captured = Captured::default();
    let _guard = capture(&captured);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = TestServer::start();
    let tokens = dpop_source(&server);
    let mut issued = Vec::new();
    runtime.block_on(async {
        for api in Api::both(&tokens, CallPolicy::new()) {
            let ok = api
                .get(&server.url("/api/warm?key=query-secret"))
                .await
                .unwrap();
            assert_eq!(ok.status, StatusCode::OK, "{}", api.name());
            issued.push(
                tokens
                    .token()
                    .await
                    .unwrap()
                    .access_token()
                    .secret()
                    .to_owned(),
            );
            server.revoke_all();
            let retried = api
                .get(&server.url("/api/retried?key=query-secret"))
                .await
                .unwrap();
            assert_eq!(retried.status, StatusCode::OK, "{}", api.name());
            server.revoke_all();
            let refused = api
                .send_stream(Method::POST, &server.url("/api/streamed"))
                .await;
            assert_eq!(
                refused.unwrap().status,
                StatusCode::UNAUTHORIZED,
                "{}",
                api.name()
            );
            issued.push(
                tokens
                    .token()
                    .await
                    .unwrap()
                    .access_token()
                    .secret()
                    .to_owned(),
            );
        }
        server.set_fault(Some(Fault::Status(StatusCode::BAD_GATEWAY)));
        let down = client_credentials::TokenSource::reqwest(
            client_credentials::reqwest::recommended_client(),
            tokens.request().clone(),
        );
        for api in Api::both(&down, CallPolicy::new()) {
            assert!(
                api.get(&server.url("/api/down")).await.is_err(),
                "{}",
                api.name()
            );
        }
    });
    drop(runtime);
    let text = captured.text();
    for shown in [
        "api call refused: sending it once more",
        r#"reason="invalid_token""#,
        r#"url.path="/api/retried""#,
        r#"why="method_not_idempotent""#,
        r#"url.path="/api/streamed""#,
        "api call refused and not sent again",
        "no token for the api call",
        "retryable=true",
    ] {
        assert!(text.contains(shown), "no {shown:?} in {text}");
    }
    assert!(issued.len() == 4, "{issued:?}");
    // The base64url of `{"typ":"dpop+jwt"` and `{"alg":"none"`: how every proof and every token
    // of the test server begins.
    let hidden = [
        "eyJ0eXAiOiJkcG9wK2p3dC",
        "eyJhbGciOiJub25l",
        DEMO_CLIENT_SECRET,
        "query-secret",
    ];
    for secret in hidden
        .iter()
        .copied()
        .chain(issued.iter().map(String::as_str))
    {
        assert!(!text.contains(secret), "{secret:?} leaked into {text}");
    }
}
