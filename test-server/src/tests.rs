use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use client_credentials::auth::{AuthMethod, ClientAuth};
use client_credentials::error::ErrorCode;
use client_credentials::fetch::ResponseRules;
use client_credentials::{Attempt, ClientCredentials, ClientSecret, Error, TokenRequest};
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::body::*;
use super::client::*;
use super::endpoint::*;
use super::faults::*;
use super::refusal::*;
use super::server::*;

/// Sends raw bytes and reads the whole answer (the request must ask to close).
fn raw_exchange(server: &TestServer, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.local_addr()).expect("the server listens");
    stream.write_all(request).unwrap();
    read_until_closed(&mut stream)
}

/// Reads until the server closes the connection (a reset counts as a close).
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return raw,
            Err(e) => panic!("reading the response failed: {e}"),
        }
    }
}

fn parse_raw(raw: &[u8]) -> Response<Vec<u8>> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut response = Response::builder().status(status);
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        response = response.header(name, value);
    }
    response.body(raw[split + 4..].to_vec()).unwrap()
}

fn http_bytes(server: &TestServer, request: &TokenRequest) -> Vec<u8> {
    // The test server's clients authenticate by secret: an attempt's time and entropy change
    // nothing of what is sent.
    let http_request = request
        .http_request(&Attempt::new(sent_at(), [0; 32]))
        .unwrap();
    let mut raw = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        http_request.uri().path(),
        server.local_addr(),
        http_request.body().len()
    );
    for (name, value) in http_request.headers() {
        raw.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(http_request.body().secret());
    raw
}

fn send(server: &TestServer, request: &TokenRequest) -> Response<Vec<u8>> {
    parse_raw(&raw_exchange(server, &http_bytes(server, request)))
}

fn sent_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn fetch(server: &TestServer, request: &TokenRequest) -> Result<client_credentials::Token, Error> {
    request.parse_response(&send(server, request), sent_at())
}

fn demo(server: &TestServer) -> client_credentials::TokenRequestBuilder {
    server.demo_credentials().token_request()
}

fn oauth_code(result: Result<client_credentials::Token, Error>) -> (ErrorCode, u16) {
    let error = result.expect_err("an error response");
    let oauth = error
        .oauth()
        .unwrap_or_else(|| panic!("not an oauth error: {error}"));
    (oauth.code().clone(), oauth.status().as_u16())
}

fn claims(token: &client_credentials::Token) -> Value {
    let parts: Vec<&str> = token.access_token().secret().split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], "", "an unsecured JWT has an empty signature");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "none", "typ": "at+jwt"}));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

/// A form post with the given body, by `client_secret_post` unless the body says otherwise.
fn post_form(server: &TestServer, extra_headers: &str, body: &str) -> Response<Vec<u8>> {
    let raw = format!(
        "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\n{extra_headers}\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    parse_raw(&raw_exchange(server, raw.as_bytes()))
}

fn error_code(response: &Response<Vec<u8>>) -> String {
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[test]
fn issues_a_token_by_basic_with_claims_rfc6749_5_1() {
    let server = TestServer::start();
    let request = demo(&server)
        .scope("read")
        .audience(DEMO_AUDIENCE)
        .build()
        .unwrap();
    let response = send(&server, &request);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let token = request.parse_response(&response, sent_at()).unwrap();
    assert_eq!(
        token.token_type(),
        &client_credentials::token::TokenType::Bearer
    );
    assert_eq!(token.scope(), Some("read"));
    assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
    let claims = claims(&token);
    assert_eq!(claims["iss"], json!(server.url("")));
    assert_eq!(claims["sub"], json!(DEMO_CLIENT_ID));
    assert_eq!(claims["client_id"], json!(DEMO_CLIENT_ID));
    assert_eq!(claims["aud"], json!(DEMO_AUDIENCE));
    assert_eq!(claims["scope"], json!("read"));
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64(), Some(iat + 3600));
    assert!(claims["jti"].is_string());
}

#[test]
fn without_scope_grants_every_allowed_scope_rfc6749_3_3() {
    let server = TestServer::start();
    let token = fetch(&server, &demo(&server).build().unwrap()).unwrap();
    assert_eq!(token.scope(), Some("read write"));
    assert!(claims(&token).get("aud").is_none());
    let second = fetch(&server, &demo(&server).build().unwrap()).unwrap();
    assert_ne!(claims(&token)["jti"], claims(&second)["jti"]);
}

#[test]
fn decodes_basic_credentials_rfc6749_2_3_1() {
    let server = TestServer::builder()
        .client(TestClient::new("id:1 é", "p:a ss+%&=").scopes(["x"]))
        .start();
    let client = ClientCredentials::new(
        server.token_url(),
        "id:1 é",
        ClientSecret::new("p:a ss+%&="),
    );
    let token = fetch(&server, &client.token_request().build().unwrap()).unwrap();
    assert_eq!(claims(&token)["sub"], json!("id:1 é"));
    // `+` is a form-encoded space.
    let server = TestServer::builder()
        .client(TestClient::new("a b", "c d"))
        .start();
    let header = format!("authorization: Basic {}\r\n", STANDARD.encode("a+b:c+d"));
    let response = post_form(&server, &header, "grant_type=client_credentials");
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn accepts_client_secret_post() {
    let server = TestServer::start();
    let client = ClientCredentials::with_auth(
        server.token_url(),
        DEMO_CLIENT_ID,
        ClientAuth::SecretPost(ClientSecret::new(DEMO_CLIENT_SECRET)),
    )
    .unwrap();
    let request = client
        .token_request()
        .scope("write")
        .resource(DEMO_AUDIENCE)
        .build()
        .unwrap();
    let token = fetch(&server, &request).unwrap();
    assert_eq!(token.scope(), Some("write"));
    assert_eq!(claims(&token)["aud"], json!(DEMO_AUDIENCE));
}

#[test]
fn invalid_client_is_401_with_a_challenge_rfc6749_5_2() {
    let server = TestServer::builder()
        .client(TestClient::new("basic-only", "s").auth_methods([AuthMethod::ClientSecretBasic]))
        .start();
    let wrong_secret = ClientCredentials::new(
        server.token_url(),
        DEMO_CLIENT_ID,
        ClientSecret::new("nope"),
    );
    let request = wrong_secret.token_request().build().unwrap();
    let response = send(&server, &request);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Basic realm="test-server""#
    );
    let error = request.parse_response(&response, sent_at()).unwrap_err();
    let oauth = error.oauth().unwrap();
    assert_eq!(oauth.code(), &ErrorCode::InvalidClient);
    assert_eq!(oauth.challenges()[0].realm(), Some(REALM));
    assert!(!error.to_string().contains("nope"));

    let unknown = ClientCredentials::new(server.token_url(), "who", ClientSecret::new("x"));
    let result = fetch(&server, &unknown.token_request().build().unwrap());
    assert_eq!(oauth_code(result), (ErrorCode::InvalidClient, 401));

    let post_not_allowed = ClientCredentials::with_auth(
        server.token_url(),
        "basic-only",
        ClientAuth::SecretPost(ClientSecret::new("s")),
    )
    .unwrap();
    let result = fetch(&server, &post_not_allowed.token_request().build().unwrap());
    assert_eq!(oauth_code(result), (ErrorCode::InvalidClient, 401));

    let no_secret =
        ClientCredentials::with_auth(server.token_url(), DEMO_CLIENT_ID, ClientAuth::None).unwrap();
    let result = fetch(&server, &no_secret.token_request().build().unwrap());
    assert_eq!(oauth_code(result), (ErrorCode::InvalidClient, 401));

    let response = post_form(
        &server,
        "authorization: Bearer abc\r\n",
        "grant_type=client_credentials",
    );
    assert_eq!(error_code(&response), "invalid_client");
    let response = post_form(&server, "", "grant_type=client_credentials");
    assert_eq!(error_code(&response), "invalid_client");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn unsupported_grant_type_rfc6749_5_2() {
    let server = TestServer::start();
    let response = post_form(
        &server,
        "",
        "grant_type=password&client_id=demo-client&client_secret=demo-secret",
    );
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response), "unsupported_grant_type");
}

#[test]
fn unauthorized_client_rfc6749_5_2() {
    let server = TestServer::builder()
        .client(TestClient::new("c", "s").grant_allowed(false))
        .start();
    let client = ClientCredentials::new(server.token_url(), "c", ClientSecret::new("s"));
    let result = fetch(&server, &client.token_request().build().unwrap());
    assert_eq!(oauth_code(result), (ErrorCode::UnauthorizedClient, 400));
}

#[test]
fn invalid_scope_rfc6749_5_2() {
    let server = TestServer::start();
    let result = fetch(&server, &demo(&server).scope("read admin").build().unwrap());
    let error = result.unwrap_err();
    let oauth = error.oauth().unwrap();
    assert_eq!(oauth.code(), &ErrorCode::InvalidScope);
    assert!(oauth.description().unwrap().contains("admin"));
}

#[test]
fn invalid_target_rfc8707_2() {
    let server = TestServer::start();
    let by_audience = demo(&server)
        .audience("https://other.example")
        .build()
        .unwrap();
    assert_eq!(
        oauth_code(fetch(&server, &by_audience)),
        (ErrorCode::InvalidTarget, 400)
    );
    let by_resource = demo(&server)
        .resource(DEMO_AUDIENCE)
        .resource("https://other.example")
        .build()
        .unwrap();
    assert_eq!(
        oauth_code(fetch(&server, &by_resource)),
        (ErrorCode::InvalidTarget, 400)
    );
}

#[test]
fn invalid_request_rfc6749_3_2() {
    let server = TestServer::start();
    let creds = "client_id=demo-client&client_secret=demo-secret";
    let repeated = post_form(
        &server,
        "",
        &format!("grant_type=client_credentials&{creds}&scope=read&scope=write"),
    );
    assert_eq!(repeated.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&repeated), "invalid_request");
    // `resource` may repeat (RFC 8707 §2); empty values count as omitted (RFC 6749 §3.1).
    let resources = post_form(
        &server,
        "",
        &format!(
            "grant_type=client_credentials&{creds}&scope=&resource=https%3A%2F%2Fapi.example.com&resource=https%3A%2F%2Fapi.example.com"
        ),
    );
    assert_eq!(resources.status(), StatusCode::OK);
    let missing = post_form(&server, "", creds);
    assert_eq!(error_code(&missing), "invalid_request");
    let basic = format!(
        "authorization: Basic {}\r\n",
        STANDARD.encode("demo-client:demo-secret")
    );
    let two_methods = post_form(
        &server,
        &basic,
        "grant_type=client_credentials&client_secret=demo-secret",
    );
    assert_eq!(error_code(&two_methods), "invalid_request");
    let other_id = post_form(&server, &basic, "grant_type=client_credentials&client_id=x");
    assert_eq!(error_code(&other_id), "invalid_request");
    let json = raw_exchange(
        &server,
        b"POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    );
    assert_eq!(error_code(&parse_raw(&json)), "invalid_request");
}

#[test]
fn other_paths_and_methods() {
    let server = TestServer::start();
    let get = parse_raw(&raw_exchange(
        &server,
        b"GET /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ));
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()[ALLOW], "POST");
    let other = parse_raw(&raw_exchange(
        &server,
        b"POST /oauth/token HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    ));
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[test]
fn refuses_bodies_over_the_limit() {
    let server = TestServer::start();
    let declared = format!(
        "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        MAX_REQUEST_BODY_LEN + 1
    );
    let response = parse_raw(&raw_exchange(&server, declared.as_bytes()));
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Without a length, the body is read through the limit.
    let shared = Arc::clone(&server.shared);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_REQUEST_BODY_LEN + 1]));
    let request = Request::post("/token")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .unwrap();
    let response = runtime.block_on(handle(&shared, request));
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn expires_in_can_be_left_out() {
    let server = TestServer::builder().expires_in(None).start();
    let token = fetch(&server, &demo(&server).build().unwrap()).unwrap();
    assert_eq!(token.expires_in(), None);
    assert!(claims(&token).get("exp").is_none());
}

#[test]
fn status_and_retry_faults() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::Status(StatusCode::BAD_GATEWAY));
    server.push_fault(Fault::TooManyRequests {
        retry_after: Duration::from_millis(1500),
    });
    server.push_fault(Fault::ServiceUnavailable {
        retry_after: Duration::from_secs(7),
    });
    server.push_fault(Fault::Status(StatusCode::NO_CONTENT));

    let bad_gateway = send(&server, &request);
    assert_eq!(bad_gateway.status(), StatusCode::BAD_GATEWAY);
    assert!(
        bad_gateway.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let error = request.parse_response(&bad_gateway, sent_at()).unwrap_err();
    assert!(matches!(error, Error::UnexpectedResponse(_)), "{error:?}");
    assert!(error.is_retryable());

    let limited = send(&server, &request);
    assert_eq!(limited.headers()[RETRY_AFTER], "2");
    let error = request.parse_response(&limited, sent_at()).unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(
        error.retry_after(),
        Some(client_credentials::error::RetryAfter::Delay(
            Duration::from_secs(2)
        ))
    );

    let unavailable = send(&server, &request);
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.headers()[RETRY_AFTER], "7");

    let no_content = send(&server, &request);
    assert_eq!(no_content.status(), StatusCode::NO_CONTENT);
    assert!(no_content.body().is_empty());

    assert!(fetch(&server, &request).is_ok(), "the queue is empty again");
}

#[test]
fn a_trickled_body_arrives_one_byte_at_a_time_and_whole() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::TrickleBody {
        interval: Duration::from_millis(10),
    });
    let mut stream = TcpStream::connect(server.local_addr()).expect("the server listens");
    stream.write_all(&http_bytes(&server, &request)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0; 8192];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert_ne!(n, 0, "the head arrives");
        raw.extend_from_slice(&buf[..n]);
    }
    let head_len = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    if raw.len() == head_len {
        let n = stream.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
    }
    // Sent whole, the body would be here by now; trickled, it takes 10 ms a byte.
    assert!(raw.len() - head_len < TRICKLED_TOKEN.len() / 2, "{raw:?}");
    raw.extend(read_until_closed(&mut stream));
    let response = parse_raw(&raw);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_LENGTH],
        TRICKLED_TOKEN.len().to_string()
    );
    let token = request.parse_response(&response, sent_at()).unwrap();
    assert_eq!(token.access_token().secret(), "trickled-token");
}

#[test]
fn a_temporary_redirect_is_a_307_with_its_location() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::TemporaryRedirect {
        location: server.url("/elsewhere"),
    });
    let response = send(&server, &request);
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()[LOCATION], server.url("/elsewhere"));
}

#[test]
fn an_unauthorized_fault_is_a_401_with_its_challenge() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::Unauthorized {
        challenge: r#"Bearer error="invalid_token""#.into(),
    });
    server.push_fault(Fault::Unauthorized {
        challenge: "not\na header".into(),
    });
    let refused = send(&server, &request);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers()[http::header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    let bare = send(&server, &request);
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert!(!bare.headers().contains_key(http::header::WWW_AUTHENTICATE));
}

#[test]
fn a_dpop_nonce_fault_is_a_401_asking_for_its_nonce() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::UseDpopNonce {
        nonce: "nonce-1".into(),
    });
    server.push_fault(Fault::UseDpopNonce {
        nonce: "not\na header".into(),
    });
    let asked = send(&server, &request);
    assert_eq!(asked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        asked.headers()[http::header::WWW_AUTHENTICATE],
        r#"DPoP error="use_dpop_nonce""#
    );
    assert_eq!(asked.headers()["dpop-nonce"], "nonce-1");
    let without = send(&server, &request);
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert!(!without.headers().contains_key("dpop-nonce"));
}

#[test]
fn redirect_html_and_delay_faults() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::Redirect {
        location: server.url("/elsewhere"),
    });
    server.push_fault(Fault::HtmlBody);
    server.push_fault(Fault::Delay(Duration::from_millis(20)));

    match fetch(&server, &request) {
        Err(Error::Redirect {
            status, location, ..
        }) => {
            assert_eq!(status, StatusCode::FOUND);
            assert_eq!(location, Some(server.url("/elsewhere")));
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    let html = send(&server, &request);
    assert_eq!(html.status(), StatusCode::OK);
    assert!(
        html.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(matches!(
        request.parse_response(&html, sent_at()),
        Err(Error::InvalidResponse { .. })
    ));
    assert!(
        fetch(&server, &request).is_ok(),
        "a delay then a normal answer"
    );
}

#[test]
fn oversized_body_fault_streams_exactly_len_bytes() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    let len = 100_000;
    server.push_fault(Fault::OversizedBody { len });
    let response = send(&server, &request);
    assert_eq!(response.body().len(), len);
    assert_eq!(response.headers()[CONTENT_LENGTH], len.to_string().as_str());
    let parse = |max_body_len: usize| {
        let rules = ResponseRules::default().with_max_body_len(max_body_len);
        let client = server.demo_credentials().with_response_rules(rules);
        let request = client.token_request().build().unwrap();
        request.parse_response(&response, sent_at())
    };
    assert!(matches!(parse(len - 1), Err(Error::BodyTooLarge { .. })));
    let token = parse(len).unwrap();
    assert!(token.access_token().secret().len() > 99_000);
    server.push_fault(Fault::OversizedBody { len: 5 });
    assert_eq!(send(&server, &request).body(), b"aaaaa");
}

#[test]
fn close_mid_body_fault_sends_less_than_it_declares() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::CloseMidBody);
    let response = send(&server, &request);
    let declared: usize = response.headers()[CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(response.body().len() < declared);
    assert!(
        fetch(&server, &request).is_ok(),
        "the next connection is served"
    );
}

#[test]
fn never_answer_holds_the_connection_until_the_server_drops() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.push_fault(Fault::NeverAnswer);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.write_all(&http_bytes(&server, &request)).unwrap();
    // Not a timing assertion: whatever the delay, no answer may come.
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 1];
    let err = stream.read(&mut buf).expect_err("no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    stream.set_read_timeout(None).unwrap();
    drop(server);
    assert!(
        read_until_closed(&mut stream).is_empty(),
        "closed without an answer"
    );
}

#[test]
fn sticky_fault_until_cleared_and_queue_first() {
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    server.set_fault(Some(Fault::Status(StatusCode::INTERNAL_SERVER_ERROR)));
    server.push_fault(Fault::Status(StatusCode::BAD_GATEWAY));
    assert_eq!(send(&server, &request).status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        send(&server, &request).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        send(&server, &request).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    server.set_fault(None);
    assert_eq!(send(&server, &request).status(), StatusCode::OK);
}

#[test]
fn counts_every_request() {
    let server = TestServer::start();
    assert_eq!(server.requests_served(), 0);
    let request = demo(&server).build().unwrap();
    fetch(&server, &request).unwrap();
    server.push_fault(Fault::Status(StatusCode::BAD_GATEWAY));
    send(&server, &request);
    raw_exchange(
        &server,
        b"GET /elsewhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    // Two requests on one kept-alive connection count twice.
    let mut keep_alive = http_bytes(&server, &request);
    let text = String::from_utf8(keep_alive.clone())
        .unwrap()
        .replace("connection: close\r\n", "");
    keep_alive = text.into_bytes();
    keep_alive.extend_from_slice(&http_bytes(&server, &request));
    let raw = raw_exchange(&server, &keep_alive);
    assert_eq!(
        String::from_utf8_lossy(&raw)
            .matches("HTTP/1.1 200 OK")
            .count(),
        2
    );
    assert_eq!(server.requests_served(), 5);
}

#[tokio::test]
async fn starts_and_stops_inside_a_tokio_runtime() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start();
    let request = demo(&server).build().unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    stream
        .write_all(&http_bytes(&server, &request))
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let token = request.parse_response(&parse_raw(&raw), sent_at()).unwrap();
    assert_eq!(token.scope(), Some("read write"));
    drop(server);
}

#[test]
fn handle_is_send_sync_and_debug_hides_secrets() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<TestServer>();
    let client = TestClient::new("c", "hunter2");
    assert!(!format!("{client:?}").contains("hunter2"));
    let server = TestServer::start();
    assert!(format!("{server:?}").contains("127.0.0.1"));
    assert_eq!(server.token_url().to_string(), server.url("/token"));
}
