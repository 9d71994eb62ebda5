//! The reqwest (async and blocking) and hyper adapters against the embedded token server, over
//! 127.0.0.1: success, OAuth errors, redirects, body limits, timeouts, refused and broken
//! connections, concurrency, and a dropped future. Then, against a scripted server that records
//! what it receives: a fresh client assertion per attempt, the one DPoP nonce retry and the
//! nonce remembered, and server metadata.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials::auth::{ClientAuth, JwsAlgorithm, JwtAuth, PrivateKey};
use client_credentials::discovery::{Issuer, MetadataRequest};
use client_credentials::dpop::DpopKey;
use client_credentials::error::{DiscoveryError, ErrorCode, TransportKind};
use client_credentials::fetch::{ResponseRules, Session};
use client_credentials::reqwest::TIMEOUT;
use client_credentials::reqwest::blocking::TokenSource as BlockingSource;
use client_credentials::token::TokenType;
use client_credentials::{CachePolicy, ClientCredentials, ClientSecret, Error, Token, TokenUrl};
use client_credentials_test_server::{Fault, TestServer};
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use support::adapters::{Adapter, fetch_all, fetch_blocking};

use crate::support;

/// A timeout for the tests that wait for a server that never answers: it only has to expire.
const SHORT: Duration = Duration::from_millis(200);

fn expect_err(name: &str, result: Result<Token, Error>) -> Error {
    match result {
        Ok(token) => panic!("{name}: expected an error, got {token:?}"),
        Err(error) => error,
    }
}

fn transport_kind(error: &Error) -> Option<TransportKind> {
    match error {
        Error::Transport { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn a_token_is_fetched_by_every_adapter() {
    let server = TestServer::start();
    let request = server
        .demo_credentials()
        .token_request()
        .scope("read")
        .build()
        .unwrap();
    for (name, result) in fetch_all(&request, None).await {
        let token = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(token.token_type(), &TokenType::Bearer, "{name}");
        assert_eq!(token.scope(), Some("read"), "{name}");
        assert_eq!(
            token.expires_in(),
            Some(Duration::from_secs(3600)),
            "{name}"
        );
        assert!(!token.access_token().secret().is_empty(), "{name}");
    }
    assert_eq!(server.requests_served(), 3);
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_with_its_challenge() {
    let server = TestServer::start();
    let credentials = ClientCredentials::new(
        server.token_url(),
        "demo-client",
        ClientSecret::new("not-the-secret"),
    );
    let request = credentials.token_request().build().unwrap();
    for (name, result) in fetch_all(&request, None).await {
        let error = expect_err(name, result);
        let oauth = error
            .oauth()
            .unwrap_or_else(|| panic!("{name}: not an oauth error: {error}"));
        assert_eq!(oauth.code(), &ErrorCode::InvalidClient, "{name}");
        assert_eq!(oauth.status(), StatusCode::UNAUTHORIZED, "{name}");
        let challenge = oauth
            .challenges()
            .first()
            .unwrap_or_else(|| panic!("{name}: no WWW-Authenticate challenge"));
        assert!(challenge.scheme().eq_ignore_ascii_case("basic"), "{name}");
        assert_eq!(challenge.realm(), Some("test-server"), "{name}");
        assert!(!error.is_retryable(), "{name}");
        assert!(!error.to_string().contains("not-the-secret"), "{name}");
    }
}

#[tokio::test]
async fn a_redirect_is_refused_and_its_target_receives_nothing() {
    let server = TestServer::start();
    let elsewhere = TestServer::start();
    let location = elsewhere.token_url().to_string();
    server.set_fault(Some(Fault::Redirect {
        location: location.clone(),
    }));
    let request = server.demo_credentials().token_request().build().unwrap();
    for (name, result) in fetch_all(&request, None).await {
        match expect_err(name, result) {
            Error::Redirect {
                status,
                location: Some(to),
                followed: false,
            } => {
                assert_eq!(status, StatusCode::FOUND, "{name}");
                assert_eq!(to, location, "{name}");
            }
            other => panic!("{name}: expected a redirect error, got {other}"),
        }
    }
    assert_eq!(server.requests_served(), 3);
    assert_eq!(elsewhere.requests_served(), 0);
}

#[tokio::test]
async fn a_redirect_the_client_followed_is_refused_and_its_token_discarded() {
    let server = TestServer::start();
    let elsewhere = TestServer::start();
    let location = elsewhere.token_url().to_string();
    server.set_fault(Some(Fault::TemporaryRedirect {
        location: location.clone(),
    }));
    let secret = || ClientSecret::new("demo-secret");
    // reqwest drops the Authorization header on a redirect to another origin, so the other
    // server refuses Basic credentials; post credentials are in the body, which is resent.
    for (auth, final_status) in [
        (ClientAuth::SecretBasic(secret()), StatusCode::UNAUTHORIZED),
        (ClientAuth::SecretPost(secret()), StatusCode::OK),
    ] {
        let request = ClientCredentials::with_auth(server.token_url(), "demo-client", auth)
            .unwrap()
            .token_request()
            .build()
            .unwrap();
        // Clients with reqwest's default policy, which follows redirects.
        let followed =
            client_credentials::reqwest::fetch_token(&reqwest::Client::new(), &request, TIMEOUT)
                .await;
        let blocking = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let client = reqwest::blocking::Client::new();
                    client_credentials::reqwest::blocking::fetch_token(&client, &request, TIMEOUT)
                })
                .join()
                .expect("the blocking exchange panicked")
        });
        for (name, result) in [("reqwest", followed), ("reqwest blocking", blocking)] {
            let name = format!("{name}, {:?}", request.client().auth_method());
            let error = expect_err(&name, result);
            let text = error.to_string();
            match error {
                Error::Redirect {
                    followed: true,
                    status,
                    location: Some(to),
                } => {
                    assert_eq!(status, final_status, "{name}: the final response's status");
                    assert_eq!(to, location, "{name}");
                    assert!(text.contains("Policy::none()"), "{name}: {text}");
                    assert!(!text.contains("demo-secret"), "{name}: {text}");
                }
                other => panic!("{name}: expected a followed redirect, got {other}"),
            }
        }
    }
    // The client resent each request, which the adapter cannot stop; it only refuses the answer.
    assert_eq!(server.requests_served(), 4);
    assert_eq!(elsewhere.requests_served(), 4);
}

#[tokio::test]
async fn a_redirect_with_a_huge_body_is_still_a_redirect() {
    // The body is announced but never sent: an adapter that read it would hang or report
    // `BodyTooLarge`, hiding where the server tried to send the credentials.
    let redirect = "HTTP/1.1 307 Temporary Redirect\r\nlocation: https://elsewhere.example/token\r\n\
        content-length: 100000000\r\nconnection: close\r\n\r\n";
    let (addr, server) = scripted_server(|_| vec![redirect.to_owned(); Adapter::NAMES.len()]);
    let url = TokenUrl::new(&format!("http://{addr}/token")).unwrap();
    let request = ClientCredentials::new(url, "demo-client", ClientSecret::new("demo-secret"))
        .token_request()
        .build()
        .unwrap();
    for name in Adapter::NAMES {
        match expect_err(name, Adapter::named(name).fetch(&request).await) {
            Error::Redirect {
                status,
                location,
                followed: false,
            } => {
                assert_eq!(status, StatusCode::TEMPORARY_REDIRECT, "{name}");
                assert_eq!(location.as_deref(), Some("https://elsewhere.example/token"));
            }
            other => panic!("{name}: expected a redirect error, got {other}"),
        }
    }
    assert_eq!(server.join().unwrap().len(), Adapter::NAMES.len());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_one_at_the_limit_is_read() {
    let server = TestServer::start();
    let limit = 2048;
    let request = server
        .demo_credentials()
        .with_response_rules(ResponseRules::default().with_max_body_len(limit))
        .token_request()
        .build()
        .unwrap();

    server.set_fault(Some(Fault::OversizedBody { len: limit + 1 }));
    for (name, result) in fetch_all(&request, None).await {
        let error = expect_err(name, result);
        assert!(
            matches!(error, Error::BodyTooLarge { limit: 2048 }),
            "{name}: {error}"
        );
    }

    // The fault's body is a valid token response when its length allows.
    server.set_fault(Some(Fault::OversizedBody { len: limit }));
    for (name, result) in fetch_all(&request, None).await {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A server on 127.0.0.1 that answers each of `connections` requests with a chunked body of
/// `len` bytes (no `Content-Length`), so the limit must be applied while the body streams.
fn chunked_server(connections: usize, len: usize) -> (TokenUrl, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = TokenUrl::new(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
    let thread = std::thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut content_length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    content_length = value.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = reader.into_inner();
            let chunk = [b' '; 1000];
            let mut response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                .to_vec();
            for _ in 0..len / chunk.len() {
                response.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                response.extend_from_slice(&chunk);
                response.extend_from_slice(b"\r\n");
            }
            response.extend_from_slice(b"0\r\n\r\n");
            // The client hangs up once the limit is passed: a failed write is expected.
            let _ = stream.write_all(&response);
        }
    });
    (url, thread)
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused() {
    let (url, server) = chunked_server(3, 64 * 1000);
    let request = ClientCredentials::new(url, "demo-client", ClientSecret::new("demo-secret"))
        .with_response_rules(ResponseRules::default().with_max_body_len(4096))
        .token_request()
        .build()
        .unwrap();
    for (name, result) in fetch_all(&request, None).await {
        let error = expect_err(name, result);
        assert!(
            matches!(error, Error::BodyTooLarge { limit: 4096 }),
            "{name}: {error}"
        );
    }
    server.join().unwrap();
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = TestServer::start();
    server.set_fault(Some(Fault::NeverAnswer));
    let request = server.demo_credentials().token_request().build().unwrap();
    for (name, result) in fetch_all(&request, Some(SHORT)).await {
        let error = expect_err(name, result);
        assert_eq!(
            transport_kind(&error),
            Some(TransportKind::Timeout),
            "{name}: {error}"
        );
        assert!(error.is_retryable(), "{name}");
    }
}

/// The wait before each byte of a trickled body: its 72 bytes take over 7 seconds.
const TRICKLE: Duration = Duration::from_millis(100);

/// The total timeout of the exchanges that meet a trickled body.
const TOTAL: Duration = Duration::from_secs(1);

/// The slack over a total timeout that a timed-out exchange may take, for a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

#[allow(clippy::disallowed_methods)] // The test measures how long an adapter held its caller.
fn clock() -> Instant {
    Instant::now()
}

/// Asserts that `error` is a timeout that came within about `total` of `start`.
fn assert_timed_out(name: &str, error: &Error, start: Instant, total: Duration) {
    let elapsed = start.elapsed();
    assert!(error.is_timeout(), "{name}: {error}");
    assert!(
        elapsed < total + SLACK,
        "{name}: timed out after {elapsed:?}, the total timeout being {total:?}"
    );
}

#[tokio::test]
async fn a_trickled_body_times_out_within_the_total_timeout() {
    let server = TestServer::start();
    server.set_fault(Some(Fault::TrickleBody { interval: TRICKLE }));
    let request = server.demo_credentials().token_request().build().unwrap();
    for adapter in Adapter::asynchronous(Some(TOTAL)) {
        let start = clock();
        let error = expect_err(adapter.name(), adapter.fetch(&request).await);
        assert_timed_out(adapter.name(), &error, start, TOTAL);
    }
    let policy = CachePolicy::new().with_fetch_timeout(TOTAL);
    let (result, start) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let http = client_credentials::reqwest::blocking::recommended_client();
                let source = BlockingSource::with_policy(http, request.clone(), policy);
                let start = clock();
                (source.token(), start)
            })
            .join()
            .expect("the blocking source panicked")
    });
    let error = result.expect_err("reqwest blocking source: expected a timeout");
    assert_timed_out("reqwest blocking source", &error, start, TOTAL);
}

#[tokio::test]
async fn a_trickled_body_times_out_the_blocking_fetch_within_its_timeout() {
    let server = TestServer::start();
    // 72 bytes at 5 a second: the body would take over 14 s, seven times the timeout, and
    // every byte comes before the client's own read timeout would fire.
    server.set_fault(Some(Fault::TrickleBody {
        interval: Duration::from_millis(200),
    }));
    let request = server.demo_credentials().token_request().build().unwrap();
    let timeout = Duration::from_secs(2);
    let start = clock();
    let error = expect_err("reqwest blocking", fetch_blocking(&request, Some(timeout)));
    assert_timed_out("reqwest blocking", &error, start, timeout);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // the listener is dropped here: nothing listens on the port any more
    let url = TokenUrl::new(&format!("http://127.0.0.1:{port}/token")).unwrap();
    let request = ClientCredentials::new(url, "demo-client", ClientSecret::new("demo-secret"))
        .token_request()
        .build()
        .unwrap();
    for (name, result) in fetch_all(&request, None).await {
        let error = expect_err(name, result);
        assert_eq!(
            transport_kind(&error),
            Some(TransportKind::Connect),
            "{name}: {error}"
        );
        assert!(error.is_retryable(), "{name}");
        assert!(std::error::Error::source(&error).is_some(), "{name}");
    }
}

#[tokio::test]
async fn a_token_url_query_is_never_shown() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // nothing listens on the port any more: the connection is refused
    let url = TokenUrl::new(&format!("http://127.0.0.1:{port}/token?api_key=SECRET")).unwrap();
    let client = ClientCredentials::new(url, "demo-client", ClientSecret::new("demo-secret"));
    let request = client.token_request().build().unwrap();
    let shown = [
        format!("{:?} {}", client.token_url(), client.token_url()),
        format!("{client:?}"),
        format!("{request:?}"),
    ];
    for text in shown {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("/token?…"), "{text}");
    }
    for (name, result) in fetch_all(&request, None).await {
        let error = expect_err(name, result);
        let mut texts = vec![error.to_string(), format!("{error:?}")];
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            texts.push(cause.to_string());
            texts.push(format!("{cause:?}"));
            source = cause.source();
        }
        for text in texts {
            assert!(!text.contains("SECRET"), "{name}: {text}");
        }
    }
}

/// The variable that tells a re-run of this binary it is the child of
/// [`a_plain_http_request_never_reaches_an_environment_proxy`], and which token URL to use.
const PROXY_CHILD_URL: &str = "CLIENT_CREDENTIALS_TEST_PROXY_CHILD_URL";

#[tokio::test]
async fn a_plain_http_request_never_reaches_an_environment_proxy() {
    if let Ok(url) = std::env::var(PROXY_CHILD_URL) {
        // The child, with the proxy variables set: both recommended clients fetch a token.
        let url = TokenUrl::new(&url).unwrap();
        let client = ClientCredentials::new(url, "demo-client", ClientSecret::new("demo-secret"));
        let request = client.token_request().build().unwrap();
        let token = Adapter::reqwest(None).fetch(&request).await;
        let blocking = fetch_blocking(&request, None);
        for (name, token) in [("reqwest", token), ("reqwest blocking", blocking)] {
            let token = token.unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_ne!(token.access_token().secret(), "from-the-proxy", "{name}");
        }
        return;
    }
    // A proxy that records every connection and answers with a token of its own.
    let proxy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let recorder = std::sync::Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in proxy.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            recorder.lock().unwrap().push(buf[..n].to_vec());
            let body = r#"{"access_token":"from-the-proxy","token_type":"Bearer"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let server = TestServer::start();
    // The test's name as the harness knows it: its module path, without the crate's name.
    let test = match module_path!().split_once("::") {
        Some((_, module)) => {
            format!("{module}::a_plain_http_request_never_reaches_an_environment_proxy")
        }
        None => "a_plain_http_request_never_reaches_an_environment_proxy".to_owned(),
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", &test])
        .env(PROXY_CHILD_URL, server.token_url().to_string())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        child.env(name, &proxy_url);
    }
    let output = child.output().expect("the test binary runs again");
    assert!(
        output.status.success(),
        "the child failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        received.lock().unwrap().is_empty(),
        "the proxy received a request"
    );
    assert_eq!(
        server.requests_served(),
        2,
        "both tokens came from the server"
    );
}

#[tokio::test]
async fn a_connection_closed_mid_body_is_a_retryable_io_failure() {
    let server = TestServer::start();
    server.set_fault(Some(Fault::CloseMidBody));
    let request = server.demo_credentials().token_request().build().unwrap();
    for (name, result) in fetch_all(&request, None).await {
        let error = expect_err(name, result);
        assert_eq!(
            transport_kind(&error),
            Some(TransportKind::Io),
            "{name}: {error}"
        );
        assert!(error.is_retryable(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_exchanges_all_succeed() {
    for adapter in Adapter::asynchronous(None) {
        let server = TestServer::start();
        let request = server.demo_credentials().token_request().build().unwrap();
        let adapter = std::sync::Arc::new(adapter);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (adapter, request) = (adapter.clone(), request.clone());
            tasks.spawn(async move { adapter.fetch(&request).await });
        }
        let mut succeeded = 0;
        while let Some(result) = tasks.join_next().await {
            result
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", adapter.name()));
            succeeded += 1;
        }
        assert_eq!(succeeded, 100, "{}", adapter.name());
        assert_eq!(server.requests_served(), 100, "{}", adapter.name());
    }
}

#[tokio::test]
async fn a_dropped_future_leaves_nothing_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let server = TestServer::start();
    let request = server.demo_credentials().token_request().build().unwrap();
    for adapter in Adapter::asynchronous(None) {
        let name = adapter.name();
        // Sticky, then cleared: if the abandoned request has not reached the server when the
        // timeout expires, it never will, and the next exchange is not the one held.
        server.set_fault(Some(Fault::NeverAnswer));
        let abandoned = tokio::time::timeout(SHORT, adapter.fetch(&request)).await;
        assert!(
            abandoned.is_err(),
            "{name}: the exchange should still be pending"
        );
        server.set_fault(None);
        adapter
            .fetch(&request)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The clients are dropped: every task they had (connections, pool) must end. Each ends as
    // soon as it is polled, so yielding lets them finish; nothing waits on a clock.
    let mut yields = 0;
    while metrics.num_alive_tasks() > tasks_before {
        assert!(
            yields < 10_000,
            "{} tasks are still alive",
            metrics.num_alive_tasks() - tasks_before
        );
        tokio::task::yield_now().await;
        yields += 1;
    }
}

/// Without the `rustls` feature the recommended client speaks no TLS; with it, an `https` URL
/// pointing at a plain-http server fails the handshake.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn a_failed_tls_handshake_is_not_retryable() {
    let server = TestServer::start();
    let url = TokenUrl::new(&format!("https://{}/token", server.local_addr())).unwrap();
    let request = ClientCredentials::new(url, "demo-client", ClientSecret::new("demo-secret"))
        .token_request()
        .build()
        .unwrap();
    let client = client_credentials::reqwest::recommended_client();
    let error = client_credentials::reqwest::fetch_token(&client, &request, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(transport_kind(&error), Some(TransportKind::Tls), "{error}");
    assert!(!error.is_retryable());
    let blocking = fetch_blocking(&request, None).unwrap_err();
    assert_eq!(
        transport_kind(&blocking),
        Some(TransportKind::Tls),
        "{blocking}"
    );
}

// ---------------------------------------------------------------------------------------------
// Against a scripted server: what each attempt sends.

/// A request as the scripted server received it.
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A server on 127.0.0.1 that answers its requests, one per connection, with the responses
/// `script` writes for its address, in order; joining it gives what it received.
fn scripted_server(
    script: impl FnOnce(SocketAddr) -> Vec<String>,
) -> (SocketAddr, JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let responses = script(addr);
    let thread = std::thread::spawn(move || {
        let mut received = Vec::new();
        for response in responses {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut headers = HeaderMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap(); // the request line
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                headers.append(
                    http::HeaderName::try_from(name).unwrap(),
                    value.trim().parse().unwrap(),
                );
            }
            let length = headers
                .get("content-length")
                .map_or(0, |value| value.to_str().unwrap().parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader.into_inner().write_all(response.as_bytes()).unwrap();
            received.push(Received {
                headers,
                body: String::from_utf8(body).unwrap(),
            });
        }
        received
    });
    (addr, thread)
}

/// An HTTP/1.1 response with a JSON body, closing the connection.
fn json_response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response + "\r\n" + body
}

fn use_dpop_nonce(nonce: &str) -> String {
    json_response(
        "400 Bad Request",
        &[("dpop-nonce", nonce)],
        r#"{"error":"use_dpop_nonce","error_description":"nonce is required in the DPoP proof"}"#,
    )
}

fn dpop_token(nonce: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = nonce.map(|n| ("dpop-nonce", n)).into_iter().collect();
    json_response(
        "200 OK",
        &headers,
        r#"{"access_token":"bound","token_type":"DPoP","expires_in":60}"#,
    )
}

/// The claims of a compact JWS, decoded without checking the signature.
fn jws_claims(jws: &str) -> Value {
    let claims = jws.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

fn dpop_claims(received: &Received) -> Value {
    jws_claims(received.headers["dpop"].to_str().unwrap())
}

#[tokio::test]
async fn a_jwt_client_sends_a_fresh_assertion_every_time() {
    let key = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
    let token = || {
        json_response(
            "200 OK",
            &[],
            r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#,
        )
    };
    let (addr, server) = scripted_server(|_| (0..6).map(|_| token()).collect());
    let url = TokenUrl::new(&format!("http://{addr}/token")).unwrap();
    let client =
        ClientCredentials::with_auth(url, "jwt-client", ClientAuth::Jwt(JwtAuth::new(key)))
            .unwrap();
    let request = client.token_request().build().unwrap();
    for name in Adapter::NAMES {
        for _ in 0..2 {
            Adapter::named(name)
                .fetch(&request)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let received = server.join().unwrap();
    let mut jtis = std::collections::HashSet::new();
    for request in &received {
        assert!(request.headers.get("authorization").is_none());
        let (prefix, assertion) = request.body.split_once("&client_assertion=").unwrap();
        assert_eq!(
            prefix,
            "grant_type=client_credentials&client_id=jwt-client&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        );
        let claims = jws_claims(assertion);
        assert_eq!(claims["aud"], format!("http://{addr}/token"));
        assert!(jtis.insert(claims["jti"].as_str().unwrap().to_owned()));
    }
    assert_eq!(jtis.len(), 6, "a new jti for every request");
}

#[tokio::test]
async fn use_dpop_nonce_is_retried_once_and_the_nonce_remembered() {
    for name in Adapter::NAMES {
        let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
        let (addr, server) = scripted_server(|_| {
            vec![
                // 1: refused for want of a nonce, then the retry gets a token and a new nonce.
                use_dpop_nonce("n-1"),
                dpop_token(Some("n-2")),
                // 2: starts with the nonce it was given last.
                dpop_token(None),
                // 3: refused twice: no third attempt.
                use_dpop_nonce("n-3"),
                use_dpop_nonce("n-4"),
            ]
        });
        let url = TokenUrl::new(&format!("http://{addr}/token")).unwrap();
        let request = ClientCredentials::new(url, "c", ClientSecret::new("s"))
            .with_dpop(key.clone())
            .token_request()
            .build()
            .unwrap();
        // One session, a new HTTP client for every fetch: the nonce is the session's.
        let session = Session::new();
        let token = Adapter::named(name)
            .fetch_in(&request, &session)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(token.token_type(), &TokenType::DPoP, "{name}");
        Adapter::named(name)
            .fetch_in(&request, &session)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let error = expect_err(
            name,
            Adapter::named(name).fetch_in(&request, &session).await,
        );
        assert_eq!(
            error.oauth().map(|e| e.code()),
            Some(&ErrorCode::UseDpopNonce),
            "{name}: {error}"
        );
        assert_eq!(error.dpop_retry_nonce(), Some("n-4"), "{name}");

        let received = server.join().unwrap();
        assert_eq!(received.len(), 5, "{name}: the script ran out");
        let claims: Vec<Value> = received.iter().map(dpop_claims).collect();
        let nonces: Vec<&Value> = claims.iter().map(|c| &c["nonce"]).collect();
        // The first proof has no nonce: the session is new.
        assert!(nonces[0].is_null(), "{name}: {}", nonces[0]);
        assert_eq!(nonces[1..], ["n-1", "n-2", "n-2", "n-3"], "{name}");
        let jtis: std::collections::HashSet<&str> =
            claims.iter().map(|c| c["jti"].as_str().unwrap()).collect();
        assert_eq!(jtis.len(), 5, "{name}: a new proof for every attempt");
        for claims in &claims {
            assert_eq!(claims["htm"], "POST", "{name}");
            assert_eq!(claims["htu"], format!("http://{addr}/token"), "{name}");
        }
        assert!(
            received.iter().all(|r| r.headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")),
            "{name}: the client still authenticates"
        );
    }
}

#[tokio::test]
async fn metadata_is_fetched_and_checked_by_every_adapter() {
    for name in Adapter::NAMES {
        let (addr, server) = scripted_server(|addr| {
            let document = format!(
                r#"{{"issuer":"http://{addr}","token_endpoint":"http://{addr}/token","token_endpoint_auth_methods_supported":["client_secret_post"]}}"#
            );
            vec![
                json_response("200 OK", &[], &document),
                json_response("200 OK", &[], &document),
            ]
        });
        let issuer = Issuer::new(&format!("http://{addr}")).unwrap();
        let discovery = MetadataRequest::oauth(issuer);
        let metadata = Adapter::named(name)
            .fetch_metadata(&discovery)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            metadata.token_endpoint().to_string(),
            format!("http://{addr}/token"),
            "{name}"
        );
        // The same document, over the limit while it streams in.
        let small = discovery.clone().with_max_body_len(16);
        match Adapter::named(name).fetch_metadata(&small).await {
            Err(Error::Discovery(error)) => {
                assert_eq!(*error, DiscoveryError::BodyTooLarge { limit: 16 }, "{name}")
            }
            other => panic!("{name}: expected a body over the limit, got {other:?}"),
        }
        let received = server.join().unwrap();
        assert_eq!(received[0].headers["accept"], "application/json", "{name}");
        assert!(received[0].body.is_empty(), "{name}");
    }
}

/// Strict servers: a caller asks one question, "were my credentials refused?", whether the
/// server says `invalid_client` or answers a failed client authentication with an empty 403.
#[tokio::test]
async fn a_credential_refusal_is_one_question_whatever_the_server_answers() {
    use client_credentials::{ClientCredentials, ClientSecret};
    use client_credentials_test_server::{DEMO_CLIENT_ID, Fault, TestServer};

    let server = TestServer::start();
    let http = client_credentials::reqwest::recommended_client();
    let timeout = client_credentials::reqwest::TIMEOUT;
    let wrong = ClientCredentials::new(
        server.token_url(),
        DEMO_CLIENT_ID,
        ClientSecret::new("wrong"),
    )
    .token_request()
    .build()
    .unwrap();
    let refused = client_credentials::reqwest::fetch_token(&http, &wrong, timeout)
        .await
        .unwrap_err();
    assert!(refused.is_credential_refusal(), "{refused}");

    server.set_fault(Some(Fault::Status(http::StatusCode::FORBIDDEN)));
    let right = server.demo_credentials().token_request().build().unwrap();
    let forbidden = client_credentials::reqwest::fetch_token(&http, &right, timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(forbidden, client_credentials::Error::UnexpectedResponse(_)),
        "{forbidden:?}"
    );
    assert!(forbidden.is_credential_refusal(), "{forbidden}");

    server.set_fault(Some(Fault::Status(http::StatusCode::BAD_GATEWAY)));
    let gateway = client_credentials::reqwest::fetch_token(&http, &right, timeout)
        .await
        .unwrap_err();
    assert!(!gateway.is_credential_refusal(), "{gateway}");
}
