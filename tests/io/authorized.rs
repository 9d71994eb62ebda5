//! Authorized calls through the tower layer (over hyper-util's client), the reqwest middleware
//! and tonic, against the embedded server's protected resource (and, for gRPC, a real tonic
//! server that checks tokens with `TestServer::check_access`), all on 127.0.0.1.
//!
//! Each scenario runs through both HTTP layers ([`Api`]), counting what reached the token
//! endpoint and the resource.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use client_credentials::auth::{JwsAlgorithm, PrivateKey};
use client_credentials::call::CallPolicy;
use client_credentials::dpop::DpopKey;
use client_credentials::error::CallError;
use client_credentials::reqwest_middleware::AuthorizeMiddleware;
use client_credentials::tower::{Authorize, AuthorizeLayer, AuthorizedBody};
use client_credentials::{CachePolicy, TokenSource};
use client_credentials_test_server::{Fault, TestServer};
use http::header::WWW_AUTHENTICATE;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer as _, ServiceExt as _};

/// Invalidated tokens are dropped at once, however young (the default keeps a token younger
/// than a second, against an API that refuses every token: see
/// `a_token_refused_while_young_is_not_sent_again`).
pub(crate) fn invalidate_at_once() -> CachePolicy {
    CachePolicy::new().with_invalidate_min_age(Duration::ZERO)
}

pub(crate) fn source(server: &TestServer, policy: CachePolicy) -> TokenSource {
    let request = server.demo_credentials().token_request().build().unwrap();
    TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
        .with_policy(policy)
}

pub(crate) fn dpop_source(server: &TestServer) -> TokenSource {
    let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
    let client = server.demo_credentials().with_dpop(key);
    let request = client.token_request().build().unwrap();
    TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
        .with_policy(invalidate_at_once())
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) challenge: Option<String>,
    pub(crate) body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A failed call, as either layer reports it.
#[derive(Debug)]
pub(crate) struct Failed {
    token: bool,
    retryable: bool,
    text: String,
}

impl From<&CallError> for Failed {
    fn from(error: &CallError) -> Self {
        Self {
            token: matches!(error, CallError::Token(_)),
            retryable: error.is_retryable(),
            text: error.to_string(),
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Hyper<B> = Authorize<HyperClient<HttpConnector, B>>;

/// One of the two HTTP layers, over its client.
#[derive(Clone)]
pub(crate) enum Api {
    /// The tower layer over hyper-util's client: a client whose bodies can be copied, and one
    /// whose bodies are boxed (never copied), both through the same layer.
    Tower(Box<(Hyper<Full<Bytes>>, Hyper<Body>)>),
    /// The middleware in a reqwest-middleware client.
    Middleware(reqwest_middleware::ClientWithMiddleware),
}

impl Api {
    pub(crate) fn both(tokens: &TokenSource, policy: CallPolicy) -> [Self; 2] {
        [
            Self::tower(tokens.clone(), policy),
            Self::middleware(tokens.clone(), policy),
        ]
    }

    pub(crate) fn tower(tokens: TokenSource, policy: CallPolicy) -> Self {
        let layer = AuthorizeLayer::with_policy(tokens, policy);
        let full = HyperClient::builder(TokioExecutor::new()).build_http();
        let boxed = HyperClient::builder(TokioExecutor::new()).build_http();
        Self::Tower(Box::new((layer.layer(full), layer.layer(boxed))))
    }

    pub(crate) fn middleware(tokens: TokenSource, policy: CallPolicy) -> Self {
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AuthorizeMiddleware::with_policy(tokens, policy))
            .build();
        Self::Middleware(client)
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Tower(_) => "tower",
            Self::Middleware(_) => "reqwest-middleware",
        }
    }

    /// Sends a request whose body can be copied.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: &'static str,
    ) -> Result<Answer, Failed> {
        match self {
            Self::Tower(clients) => {
                let full = &clients.0;
                let request = Request::builder()
                    .method(method)
                    .uri(url)
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap();
                let response = full.clone().oneshot(request).await;
                read_hyper(response).await
            }
            Self::Middleware(client) => {
                let response = client.request(method, url).body(body).send().await;
                read_reqwest(response).await
            }
        }
    }

    pub(crate) async fn get(&self, url: &str) -> Result<Answer, Failed> {
        self.send(Method::GET, url, "").await
    }

    /// Sends a request with a streaming body, of unknown length, that cannot be copied.
    pub(crate) async fn send_stream(&self, method: Method, url: &str) -> Result<Answer, Failed> {
        let chunks = || {
            [
                Bytes::from_static(b"chunk-1,"),
                Bytes::from_static(b"chunk-2"),
            ]
        };
        match self {
            Self::Tower(clients) => {
                let boxed = &clients.1;
                let request = Request::builder()
                    .method(method)
                    .uri(url)
                    .body(Chunks(chunks().into()).boxed_unsync())
                    .unwrap();
                read_hyper(boxed.clone().oneshot(request).await).await
            }
            Self::Middleware(client) => {
                let stream = futures_util::stream::iter(chunks().map(Ok::<_, Infallible>));
                let body = reqwest::Body::wrap_stream(stream);
                read_reqwest(client.request(method, url).body(body).send().await).await
            }
        }
    }
}

async fn read_hyper(
    response: Result<http::Response<AuthorizedBody<hyper::body::Incoming>>, CallError>,
) -> Result<Answer, Failed> {
    let response = response.map_err(|e| Failed::from(&e))?;
    let status = response.status();
    let challenge = challenge(response.headers());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        status,
        challenge,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn read_reqwest(
    response: Result<reqwest::Response, reqwest_middleware::Error>,
) -> Result<Answer, Failed> {
    let response = match response {
        Ok(response) => response,
        Err(reqwest_middleware::Error::Middleware(error)) => {
            let error = error
                .downcast_ref::<CallError>()
                .unwrap_or_else(|| panic!("not a CallError: {error}"));
            return Err(Failed::from(error));
        }
        Err(error) => panic!("the client failed: {error}"),
    };
    let status = response.status();
    let challenge = challenge(response.headers());
    let body = response.text().await.unwrap();
    Ok(Answer {
        status,
        challenge,
        body,
    })
}

fn challenge(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// A body of two chunks whose length is not known in advance: a stream.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.0
                .pop_front()
                .map(|chunk| Ok(http_body::Frame::data(chunk))),
        )
    }
}

#[tokio::test]
async fn a_valid_call_carries_a_bearer_token() {
    let server = TestServer::start();
    let tokens = source(&server, invalidate_at_once());
    for (i, api) in Api::both(&tokens, CallPolicy::new()).iter().enumerate() {
        let answer = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}: {answer:?}", api.name());
        let json = answer.json();
        assert_eq!(json["client_id"], "demo-client", "{}", api.name());
        assert_eq!(json["token_type"], "Bearer", "{}", api.name());
        assert_eq!(server.resource_requests(), i + 1, "{}", api.name());
    }
    assert_eq!(
        server.token_requests(),
        1,
        "one token for both layers' calls"
    );
}

#[tokio::test]
async fn a_revoked_token_is_fetched_again_and_the_call_sent_again_once() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let first = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(server.revoke_all(), 1);

        let answer = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}: {answer:?}", api.name());
        assert_eq!(server.token_requests(), 2, "{}: one refetch", api.name());
        assert_eq!(server.resource_requests(), 3, "{}: one retry", api.name());
    }
}

/// What a middleware after [`AuthorizeMiddleware`] in the chain sees of each request: all of
/// it but the `Authorization` header, which it keeps apart.
#[derive(Clone, Default)]
struct Seen(Arc<std::sync::Mutex<Vec<(String, SeenRequest)>>>);

#[derive(Debug, Clone, PartialEq)]
struct SeenRequest {
    method: Method,
    url: String,
    version: http::Version,
    timeout: Option<Duration>,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl reqwest_middleware::Middleware for Seen {
    // The signature `#[async_trait]` gives `async fn handle`.
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: reqwest::Request,
        extensions: &'life1 mut http::Extensions,
        next: reqwest_middleware::Next<'life2>,
    ) -> Pin<
        Box<
            dyn Future<Output = reqwest_middleware::Result<reqwest::Response>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let seen = SeenRequest {
            method: request.method().clone(),
            url: request.url().to_string(),
            version: request.version(),
            timeout: request.timeout().copied(),
            headers: request
                .headers()
                .iter()
                .filter(|(name, _)| *name != http::header::AUTHORIZATION)
                .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                .collect(),
            body: request.body().map(|body| body.as_bytes().unwrap().to_vec()),
        };
        self.0.lock().unwrap().push((authorization, seen));
        Box::pin(next.run(request, extensions))
    }
}

/// The copy the middleware keeps for a retry is the request it was given, with a new token:
/// without a body (copied from its parts) and with one (by `reqwest::Request::try_clone`).
#[tokio::test]
async fn the_middleware_sends_again_the_request_it_was_given_with_a_new_token() {
    let server = TestServer::start();
    let tokens = source(&server, invalidate_at_once());
    let seen = Seen::default();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()))
        .with(seen.clone())
        .build();
    let requests = [
        client
            .get(server.url("/api/bodiless?q=1"))
            .header("x-request-id", "abc")
            .header("accept", "application/json")
            .timeout(Duration::from_secs(7))
            .version(http::Version::HTTP_11),
        client
            .put(server.url("/api/with-body"))
            .header("content-type", "text/plain")
            .body("the payload"),
    ];
    tokens.token().await.unwrap();
    for (i, request) in requests.into_iter().enumerate() {
        assert_eq!(
            server.revoke_all(),
            1,
            "request {i}: the token cached is revoked"
        );
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let seen = std::mem::take(&mut *seen.0.lock().unwrap());
        assert_eq!(
            seen.len(),
            2,
            "request {i}: sent, then sent again: {seen:?}"
        );
        let ((first_token, first), (second_token, second)) = (&seen[0], &seen[1]);
        assert_eq!(first, second, "request {i}: the same request");
        assert!(first_token.starts_with("Bearer ") && second_token.starts_with("Bearer "));
        assert_ne!(first_token, second_token, "request {i}: a new token");
        assert!(
            first
                .headers
                .iter()
                .any(|(name, _)| name == "x-request-id" || name == "content-type"),
            "request {i}: {first:?}"
        );
    }
}

/// A nonce goes only into a DPoP proof: a bearer token's calls keep none of the nonces the
/// resource server sends.
#[tokio::test]
async fn a_bearer_call_keeps_no_resource_nonce() {
    let server = TestServer::start();
    server.require_resource_nonce(true);
    let tokens = source(&server, invalidate_at_once());
    let url = server.url("/api/things");
    let uri: Uri = url.parse().unwrap();

    let middleware = AuthorizeMiddleware::new(tokens.clone());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .build();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().contains_key("dpop-nonce"),
        "the resource sent one"
    );
    assert_eq!(
        middleware.dpop_nonces().get(&uri),
        None,
        "reqwest-middleware"
    );

    let layer = AuthorizeLayer::new(tokens);
    let service = layer.layer(HyperClient::builder(TokioExecutor::new()).build_http());
    let request = Request::get(uri.clone())
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().contains_key("dpop-nonce"),
        "the resource sent one"
    );
    assert_eq!(layer.dpop_nonces().get(&uri), None, "tower");
}

#[tokio::test]
async fn a_second_refusal_goes_to_the_caller_without_another_retry() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let refusal = || Fault::Unauthorized {
            challenge: r#"Bearer realm="api", error="invalid_token", error_description="revoked""#
                .into(),
        };
        server.push_resource_fault(refusal());
        server.push_resource_fault(refusal());

        let answer = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", api.name());
        let challenge = answer.challenge.as_deref().unwrap();
        assert!(challenge.contains("invalid_token"), "readable: {challenge}");
        assert_eq!(
            server.resource_requests(),
            2,
            "{}: one retry, no more",
            api.name()
        );
        assert_eq!(server.token_requests(), 2, "{}", api.name());

        // The second refused token was dropped too: the next call gets a new one.
        let next = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(next.status, StatusCode::OK);
        assert_eq!(server.token_requests(), 3, "{}", api.name());
    }
}

#[tokio::test]
async fn a_streaming_body_is_not_sent_again_and_the_refusal_is_returned() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        // Even with every method replayable, a stream cannot go twice.
        let policy = CallPolicy::new().replay_any_method(true);
        let api = Api::both(&tokens, policy)[api_index].clone();
        assert_eq!(
            api.get(&server.url("/api/warm")).await.unwrap().status,
            StatusCode::OK
        );
        server.revoke_all();

        let answer = api
            .send_stream(Method::POST, &server.url("/api/upload"))
            .await
            .unwrap();
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{}: {answer:?}",
            api.name()
        );
        assert!(answer.challenge.unwrap().contains("invalid_token"));
        assert_eq!(server.resource_requests(), 2, "{}: sent once", api.name());

        // The refused token was dropped: the stream goes through with a new one.
        let answer = api
            .send_stream(Method::POST, &server.url("/api/upload"))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", api.name());
        assert_eq!(
            answer.json()["body_len"],
            15,
            "{}: the whole stream",
            api.name()
        );
        assert_eq!(server.token_requests(), 2, "{}", api.name());
    }
}

#[tokio::test]
async fn a_post_is_sent_again_only_when_the_caller_opted_in() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let any = Api::both(&tokens, CallPolicy::new().replay_any_method(true))[api_index].clone();
        assert_eq!(
            api.get(&server.url("/api/warm")).await.unwrap().status,
            StatusCode::OK
        );

        server.revoke_all();
        let refused = api
            .send(Method::POST, &server.url("/api/orders"), "{}")
            .await
            .unwrap();
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{}: POST not replayed",
            api.name()
        );
        assert_eq!(server.resource_requests(), 2);

        // The refused token was dropped: a new one, then revoked too.
        assert_eq!(
            api.get(&server.url("/api/warm")).await.unwrap().status,
            StatusCode::OK
        );
        server.revoke_all();
        let put = api
            .send(Method::PUT, &server.url("/api/orders/1"), "{}")
            .await
            .unwrap();
        assert_eq!(
            put.status,
            StatusCode::OK,
            "{}: PUT is idempotent",
            api.name()
        );
        assert_eq!(
            put.json()["body_len"],
            2,
            "{}: the body went again",
            api.name()
        );

        server.revoke_all();
        let posted = any
            .send(Method::POST, &server.url("/api/orders"), "{}")
            .await
            .unwrap();
        assert_eq!(posted.status, StatusCode::OK, "{}: opted in", api.name());
        assert_eq!(posted.json()["body_len"], 2);
        assert_eq!(server.resource_requests(), 7, "{}", api.name());
        assert_eq!(server.token_requests(), 4, "{}", api.name());
    }
}

#[tokio::test]
async fn other_refusals_reach_the_caller_untouched_and_keep_the_token() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();

        let forbidden = api
            .get(&server.url("/api/scope/admin/users"))
            .await
            .unwrap();
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "{}", api.name());
        let challenge = forbidden.challenge.unwrap();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert!(challenge.contains(r#"scope="admin""#), "{challenge}");

        // A 401 without a challenge (a gateway's), and one for another reason.
        server.push_resource_fault(Fault::Status(StatusCode::UNAUTHORIZED));
        let bare = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
        server.push_resource_fault(Fault::Unauthorized {
            challenge: r#"Bearer error="invalid_request""#.into(),
        });
        let invalid = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
        assert!(invalid.challenge.unwrap().contains("invalid_request"));

        assert_eq!(
            server.resource_requests(),
            3,
            "{}: nothing sent twice",
            api.name()
        );
        let ok = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(
            server.token_requests(),
            1,
            "{}: the token was kept",
            api.name()
        );
    }
}

#[tokio::test]
async fn retries_switched_off_return_the_refusal_and_drop_the_token() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::no_retries())[api_index].clone();
        assert_eq!(
            api.get(&server.url("/api/warm")).await.unwrap().status,
            StatusCode::OK
        );
        server.revoke_all();
        let refused = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", api.name());
        assert_eq!(server.resource_requests(), 2);
        let next = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(next.status, StatusCode::OK, "{}", api.name());
        assert_eq!(server.token_requests(), 2, "{}", api.name());
    }
}

#[tokio::test]
async fn a_token_refused_while_young_is_not_sent_again() {
    for api_index in 0..2 {
        let server = TestServer::start();
        // The default policy keeps a refused token for its first second: a retry would send the
        // same token, so the caller gets the refusal instead.
        let tokens = source(&server, CachePolicy::new());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        assert_eq!(
            api.get(&server.url("/api/warm")).await.unwrap().status,
            StatusCode::OK
        );
        server.revoke_all();
        let refused = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", api.name());
        assert_eq!(
            server.resource_requests(),
            2,
            "{}: not sent again",
            api.name()
        );
        assert_eq!(server.token_requests(), 1, "{}", api.name());
    }
}

#[tokio::test]
async fn a_hundred_calls_on_an_empty_cache_make_one_token_request() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let url = server.url("/api/things");
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let (api, url) = (api.clone(), url.clone());
                tokio::spawn(async move { api.get(&url).await.unwrap().status })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), StatusCode::OK);
        }
        assert_eq!(server.token_requests(), 1, "{}", api.name());
        assert_eq!(server.resource_requests(), 100, "{}", api.name());
    }
}

#[tokio::test]
async fn a_dpop_bound_call_does_the_resource_nonce_dance_rfc9449_9() {
    for api_index in 0..2 {
        let server = TestServer::start();
        server.require_resource_nonce(true);
        let tokens = dpop_source(&server);
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();

        let answer = api.get(&server.url("/api/things?page=2")).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}: {answer:?}", api.name());
        assert_eq!(answer.json()["token_type"], "DPoP", "{}", api.name());
        assert_eq!(
            server.resource_requests(),
            2,
            "{}: refused, then with the nonce",
            api.name()
        );

        // The nonce is remembered for the origin: the next call goes once.
        let again = api
            .send(Method::PUT, &server.url("/api/other"), "x")
            .await
            .unwrap();
        assert_eq!(again.status, StatusCode::OK, "{}", api.name());
        assert_eq!(server.resource_requests(), 3, "{}", api.name());

        // A new nonce: one refusal, one retry.
        server.rotate_resource_nonce();
        let rotated = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(rotated.status, StatusCode::OK, "{}", api.name());
        assert_eq!(server.resource_requests(), 5, "{}", api.name());

        // A revoked DPoP token: refused with a DPoP challenge, fetched again, sent again.
        server.revoke_all();
        let revoked = api.get(&server.url("/api/things")).await.unwrap();
        assert_eq!(
            revoked.status,
            StatusCode::OK,
            "{}: {revoked:?}",
            api.name()
        );
        assert_eq!(server.token_requests(), 2, "{}", api.name());
        assert_eq!(server.resource_requests(), 7, "{}", api.name());
    }
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_fails_the_call_and_the_api_gets_nothing() {
    for api_index in 0..2 {
        let server = TestServer::start();
        server.set_fault(Some(Fault::ServiceUnavailable {
            retry_after: Duration::from_secs(1),
        }));
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let failed = api.get(&server.url("/api/things")).await.unwrap_err();
        assert!(failed.token, "{}: {failed:?}", api.name());
        assert!(
            failed.retryable,
            "{}: a 503 is worth retrying later",
            api.name()
        );
        assert!(failed.text.contains("503"), "{}", failed.text);
        assert_eq!(
            server.resource_requests(),
            0,
            "{}: never sent unauthenticated",
            api.name()
        );

        // An endpoint that refuses the client: not retryable.
        server.set_fault(None);
        let request = client_credentials::ClientCredentials::new(
            server.token_url(),
            "demo-client",
            client_credentials::ClientSecret::new("wrong-secret"),
        )
        .token_request()
        .build()
        .unwrap();
        let refused = TokenSource::reqwest(reqwest::Client::new(), request);
        let api = Api::both(&refused, CallPolicy::new())[api_index].clone();
        let failed = api.get(&server.url("/api/things")).await.unwrap_err();
        assert!(failed.token && !failed.retryable, "{failed:?}");
        assert!(failed.text.contains("invalid_client"), "{}", failed.text);
        assert!(
            !failed.text.contains("wrong-secret"),
            "no secret in {}",
            failed.text
        );
        assert_eq!(server.resource_requests(), 0);
    }
}

#[tokio::test]
async fn a_token_one_api_refuses_still_serves_the_others_while_its_replacement_fails() {
    for api_index in 0..2 {
        // `server` issues the tokens and its API accepts them; the API `elsewhere` refuses
        // every token it did not issue (`invalid_token`).
        let server = TestServer::start();
        let elsewhere = TestServer::start();
        let tokens = source(&server, invalidate_at_once());
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let name = api.name();
        assert_eq!(
            api.get(&server.url("/api/a")).await.unwrap().status,
            StatusCode::OK
        );
        server.set_fault(Some(Fault::ServiceUnavailable {
            retry_after: Duration::from_secs(30),
        }));
        // The API that refused the token gets the failure to replace it.
        let failed = api.get(&elsewhere.url("/api/b")).await.unwrap_err();
        assert!(
            failed.token && failed.text.contains("503"),
            "{name}: {failed:?}"
        );
        // The others still get the refused token, valid for them, until it expires.
        for _ in 0..3 {
            let answer = api.get(&server.url("/api/c")).await;
            assert_eq!(
                answer.map(|a| a.status).ok(),
                Some(StatusCode::OK),
                "{name}"
            );
        }
        let token_endpoint = server.requests_served() - server.resource_requests();
        assert_eq!(
            token_endpoint, 2,
            "{name}: the first fetch and the failed one"
        );
        assert_eq!(elsewhere.resource_requests(), 1, "{name}");
    }
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // It measures how long the callers waited.
async fn an_api_that_refuses_every_token_costs_ever_fewer_token_requests() {
    for api_index in 0..2 {
        let server = TestServer::start();
        let elsewhere = TestServer::start();
        // Refusals in a row wait for 100 ms, 200, 400, then 800 ms at most.
        let policy = CachePolicy::new()
            .with_invalidate_min_age(Duration::from_millis(100))
            .with_invalidate_max_age(Duration::from_millis(800));
        let tokens = source(&server, policy);
        let api = Api::both(&tokens, CallPolicy::new())[api_index].clone();
        let name = api.name();
        let started = std::time::Instant::now();
        let mut calls = 0;
        while started.elapsed() < Duration::from_millis(2_500) {
            let refused = api.get(&elsewhere.url("/api/b")).await.unwrap();
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{name}");
            // Another API accepts every token: that does not end the refusals in a row.
            let accepted = api.get(&server.url("/api/a")).await.unwrap();
            assert_eq!(accepted.status, StatusCode::OK, "{name}");
            calls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Fetched at about 0, 0.1, 0.3, 0.7, 1.5 and 2.3 s; one every 100 ms (25) before.
        let fetched = server.token_requests();
        assert!(
            (4..=7).contains(&fetched),
            "{name}: {fetched} fetches for {calls} calls"
        );
    }
}

/// gRPC through the tower layer and tonic, against a tonic server whose one method answers the
/// caller's client id, checking every call's token with `TestServer::check_access`.
mod grpc {
    use super::*;

    /// The request message, written by hand (no `protoc` here).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Ask {
        #[prost(string, tag = "1")]
        pub text: String,
    }

    /// The answer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Reply {
        #[prost(string, tag = "1")]
        pub client_id: String,
        #[prost(string, tag = "2")]
        pub text: String,
    }

    const PATH: &str = "/test.Echo/Ask";

    /// A server-streaming method: one reply, then the end of the stream, whose status goes in
    /// the trailers. Asked to `revoke`, the server revokes every token while the stream runs,
    /// and ends it with `UNAUTHENTICATED`, as a server that checks a long call's token again
    /// before its end does.
    const STREAM_PATH: &str = "/test.Echo/Stream";

    #[derive(Clone)]
    struct Echo {
        server: Arc<TestServer>,
        origin: String,
    }

    impl tonic::server::NamedService for Echo {
        const NAME: &'static str = "test.Echo";
    }

    type Answering =
        Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

    impl tower::Service<http::Request<tonic::body::Body>> for Echo {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = Answering;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Answering {
            let uri: Uri = format!("{}{}", self.origin, request.uri().path())
                .parse()
                .unwrap();
            let grant = self
                .server
                .check_access(request.method(), &uri, request.headers());
            let server = Arc::clone(&self.server);
            Box::pin(async move {
                let grant = match grant {
                    Ok(grant) => grant,
                    // As a gateway in front of a gRPC service answers a DPoP nonce demand: an
                    // HTTP 401 with the challenge and the nonce (RFC 9449 §9).
                    Err(refusal) if refusal.error() == Some("use_dpop_nonce") => {
                        let mut answer = http::Response::new(tonic::body::Body::empty());
                        *answer.status_mut() = StatusCode::UNAUTHORIZED;
                        *answer.headers_mut() = refusal.headers();
                        return Ok(answer);
                    }
                    Err(refusal) => {
                        return Ok(tonic::Status::unauthenticated(refusal.to_string()).into_http());
                    }
                };
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                let answer = Answer(grant.client_id().to_owned());
                if request.uri().path() == STREAM_PATH {
                    return Ok(grpc
                        .server_streaming(Streamed(answer, server), request)
                        .await);
                }
                Ok(grpc.unary(answer, request).await)
            })
        }
    }

    struct Streamed(Answer, Arc<TestServer>);

    type Replies = futures_util::stream::Iter<std::vec::IntoIter<Result<Reply, tonic::Status>>>;

    impl tonic::server::ServerStreamingService<Ask> for Streamed {
        type Response = Reply;
        type ResponseStream = Replies;
        type Future = std::future::Ready<Result<tonic::Response<Replies>, tonic::Status>>;

        fn call(&mut self, request: tonic::Request<Ask>) -> Self::Future {
            let text = request.into_inner().text;
            let revoke = text == "revoke";
            let mut replies = vec![Ok(Reply {
                client_id: self.0.0.clone(),
                text,
            })];
            if revoke {
                self.1.revoke_all();
                replies.push(Err(tonic::Status::unauthenticated(
                    "the token was revoked during the call",
                )));
            }
            std::future::ready(Ok(tonic::Response::new(futures_util::stream::iter(
                replies,
            ))))
        }
    }

    struct Answer(String);

    impl tonic::server::UnaryService<Ask> for Answer {
        type Response = Reply;
        type Future = std::future::Ready<Result<tonic::Response<Reply>, tonic::Status>>;

        fn call(&mut self, request: tonic::Request<Ask>) -> Self::Future {
            std::future::ready(Ok(tonic::Response::new(Reply {
                client_id: self.0.clone(),
                text: request.into_inner().text,
            })))
        }
    }

    /// Starts the tonic server on 127.0.0.1, checking tokens against `server`.
    async fn start(server: Arc<TestServer>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let echo = Echo {
            server,
            origin: origin.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(echo)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        origin
    }

    type Channel = Authorize<tonic::transport::Channel>;

    async fn channel(origin: &str, tokens: TokenSource) -> Channel {
        let channel = tonic::transport::Endpoint::from_shared(origin.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        AuthorizeLayer::new(tokens).layer(channel)
    }

    async fn ask(channel: &Channel, text: &str) -> Result<Reply, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::from_error(e.into()))?;
        let request = tonic::Request::new(Ask { text: text.into() });
        let path = http::uri::PathAndQuery::from_static(PATH);
        grpc.unary(request, path, tonic_prost::ProstCodec::default())
            .await
            .map(tonic::Response::into_inner)
    }

    #[tokio::test]
    async fn a_grpc_call_carries_the_token_as_authorization_metadata() {
        let server = Arc::new(TestServer::start());
        let origin = start(Arc::clone(&server)).await;
        let channel = channel(&origin, source(&server, invalidate_at_once())).await;
        let reply = ask(&channel, "hello").await.unwrap();
        assert_eq!(reply.client_id, "demo-client");
        assert_eq!(reply.text, "hello");

        let calls: Vec<_> = (0..100)
            .map(|i| {
                let channel = channel.clone();
                tokio::spawn(async move { ask(&channel, &i.to_string()).await.unwrap() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().client_id, "demo-client");
        }
        assert_eq!(server.token_requests(), 1);
    }

    /// A server-streaming call to [`STREAM_PATH`], read to its end: its replies' texts, or the
    /// status it ended with and the replies before it.
    async fn stream(channel: &Channel, text: &str) -> Result<Vec<String>, (tonic::Status, usize)> {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let request = tonic::Request::new(Ask { text: text.into() });
        let path = http::uri::PathAndQuery::from_static(STREAM_PATH);
        let mut replies = grpc
            .server_streaming(
                request,
                path,
                tonic_prost::ProstCodec::<Ask, Reply>::default(),
            )
            .await
            .map_err(|status| (status, 0))?
            .into_inner();
        let mut texts = Vec::new();
        loop {
            match replies.message().await {
                Ok(Some(reply)) => texts.push(reply.text),
                Ok(None) => return Ok(texts),
                Err(status) => return Err((status, texts.len())),
            }
        }
    }

    /// Hardening: a gRPC call that began normally and ends with `UNAUTHENTICATED` in its
    /// trailers drops its token, as one refused at once does; an `OK` in the trailers drops
    /// nothing.
    #[tokio::test]
    async fn unauthenticated_in_the_trailers_drops_the_token() {
        let server = Arc::new(TestServer::start());
        let origin = start(Arc::clone(&server)).await;
        let channel = channel(&origin, source(&server, invalidate_at_once())).await;

        assert_eq!(stream(&channel, "fine").await.unwrap(), ["fine"]);
        assert_eq!(ask(&channel, "after").await.unwrap().text, "after");
        assert_eq!(
            server.token_requests(),
            1,
            "an OK in the trailers drops nothing"
        );

        let (refused, replies) = stream(&channel, "revoke").await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        assert_eq!(replies, 1, "the call began normally");
        assert_eq!(server.token_requests(), 1, "not sent again");

        let reply = ask(&channel, "again").await.unwrap();
        assert_eq!(reply.text, "again", "with a new token");
        assert_eq!(server.token_requests(), 2, "the refused token was dropped");
    }

    #[tokio::test]
    async fn unauthenticated_drops_the_token_without_replaying_the_call() {
        let server = Arc::new(TestServer::start());
        let origin = start(Arc::clone(&server)).await;
        let channel = channel(&origin, source(&server, invalidate_at_once())).await;
        ask(&channel, "warm").await.unwrap();
        server.revoke_all();

        let refused = ask(&channel, "once").await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(
            refused.message().contains("invalid_token"),
            "{}",
            refused.message()
        );
        assert_eq!(
            server.token_requests(),
            1,
            "a gRPC call is a stream: not replayed"
        );

        let reply = ask(&channel, "again").await.unwrap();
        assert_eq!(reply.text, "again");
        assert_eq!(server.token_requests(), 2, "the refused token was dropped");
    }

    /// Hardening: generated tonic clients send relative URIs; with the channel's endpoint as
    /// the layer's origin, a DPoP-bound call signs its proof for the absolute URI and does the
    /// resource nonce dance. A gRPC body is a stream, so the call that learns the nonce gets
    /// the refusal, and the next one carries it.
    #[tokio::test]
    async fn a_dpop_bound_grpc_call_does_the_resource_nonce_dance_with_the_layers_origin() {
        let server = Arc::new(TestServer::start());
        server.require_resource_nonce(true);
        let origin = start(Arc::clone(&server)).await;
        let tokens = dpop_source(&server);

        // Without the origin, a relative URI cannot carry a DPoP proof: typed, never sent.
        let without = channel(&origin, tokens.clone()).await;
        let failed = ask(&without, "x").await.unwrap_err();
        let error = std::error::Error::source(&failed)
            .and_then(|source| source.downcast_ref::<CallError>())
            .unwrap_or_else(|| panic!("no CallError in {failed:?}"));
        assert!(
            matches!(
                error,
                CallError::Present(client_credentials::Error::UriNotAbsolute)
            ),
            "{error}"
        );

        let endpoint = tonic::transport::Endpoint::from_shared(origin.clone()).unwrap();
        let layer = AuthorizeLayer::new(tokens).with_origin(&origin).unwrap();
        let channel = layer.layer(endpoint.connect().await.unwrap());
        let first = ask(&channel, "one").await.unwrap_err();
        assert_eq!(
            first.code(),
            tonic::Code::Unauthenticated,
            "refused for want of a nonce: {first:?}"
        );
        let reply = ask(&channel, "two").await.unwrap();
        assert_eq!(
            (reply.client_id.as_str(), reply.text.as_str()),
            ("demo-client", "two")
        );

        server.rotate_resource_nonce();
        assert!(
            ask(&channel, "three").await.is_err(),
            "a new nonce: one refusal"
        );
        assert_eq!(ask(&channel, "four").await.unwrap().text, "four");
        assert_eq!(
            server.token_requests(),
            1,
            "a nonce demand never drops the DPoP-bound token"
        );
        assert!(
            AuthorizeLayer::new(source(&server, invalidate_at_once()))
                .with_origin("/relative")
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_token_endpoint_that_is_down_fails_the_grpc_call_with_the_token_error() {
        let server = Arc::new(TestServer::start());
        let origin = start(Arc::clone(&server)).await;
        server.set_fault(Some(Fault::Status(StatusCode::BAD_GATEWAY)));
        let channel = channel(&origin, source(&server, invalidate_at_once())).await;
        let failed = ask(&channel, "x").await.unwrap_err();
        let error = std::error::Error::source(&failed)
            .and_then(|source| source.downcast_ref::<CallError>())
            .unwrap_or_else(|| panic!("no CallError in {failed:?}"));
        assert!(matches!(error, CallError::Token(_)), "{error}");
        assert!(error.is_retryable());
        assert_eq!(server.resource_requests(), 0);
    }
}

/// The end of a middleware chain that never sends: it answers every request from memory,
/// with what `answer` makes, so that no request can leave this machine.
struct FromMemory<F>(F);

impl<F> reqwest_middleware::Middleware for FromMemory<F>
where
    F: Fn() -> http::Response<reqwest::Body> + Send + Sync + 'static,
{
    // The signature `#[async_trait]` gives `async fn handle`.
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        _: reqwest::Request,
        _: &'life1 mut http::Extensions,
        _: reqwest_middleware::Next<'life2>,
    ) -> Pin<
        Box<
            dyn Future<Output = reqwest_middleware::Result<reqwest::Response>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(std::future::ready(Ok((self.0)().into())))
    }
}

/// Hardening: a token never goes over plain http to a host that is not loopback, unless the
/// policy allows it by name. The inner client and the middleware chain's end answer from
/// memory, so that no request can leave this machine whatever the layers do.
#[tokio::test]
async fn a_token_goes_over_plain_http_only_to_loopback_unless_allowed_by_name() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let fetches = Arc::new(AtomicUsize::new(0));
    let request = client_credentials::ClientCredentials::new(
        client_credentials::TokenUrl::new("https://idp.example.com/token").unwrap(),
        "client",
        client_credentials::ClientSecret::new("secret"),
    )
    .token_request()
    .build()
    .unwrap();
    let counted = Arc::clone(&fetches);
    let tokens = TokenSource::from_fn(request, move |request| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(r#"{"access_token":"t","token_type":"Bearer","expires_in":600}"#)
                .unwrap();
            #[allow(clippy::disallowed_methods)] // Stands in for the token endpoint.
            request.parse_response(&response, std::time::SystemTime::now())
        }
    });

    for (policy, url, allowed) in [
        (CallPolicy::new(), "http://api.example.com/things", false),
        (CallPolicy::new(), "http://10.0.0.5:8080/things", false),
        (CallPolicy::new(), "HTTP://api.example.com/things", false),
        (CallPolicy::new(), "http://127.0.0.1:9/things", true),
        (CallPolicy::new(), "http://[::1]:9/things", true),
        (CallPolicy::new(), "http://localhost:9/things", true),
        (CallPolicy::new(), "https://api.example.com/things", true),
        (
            CallPolicy::new().insecure_allow_http(true),
            "http://api.example.com/things",
            true,
        ),
    ] {
        assert_eq!(
            policy.allows(&url.parse::<Uri>().unwrap()),
            allowed,
            "{url}"
        );
        let sent = Arc::new(AtomicUsize::new(0));
        let fetched_before = fetches.load(Ordering::SeqCst);

        let counter = Arc::clone(&sent);
        let inner = tower::service_fn(move |_: Request<Full<Bytes>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
        });
        let service = AuthorizeLayer::with_policy(tokens.clone(), policy).layer(inner);
        let call = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        let tower_outcome = service.oneshot(call).await;

        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AuthorizeMiddleware::with_policy(tokens.clone(), policy))
            .with(FromMemory({
                let sent = Arc::clone(&sent);
                move || {
                    sent.fetch_add(1, Ordering::SeqCst);
                    http::Response::new(reqwest::Body::from("ok"))
                }
            }))
            .build();
        let middleware_outcome = client.get(url).send().await;

        if allowed {
            assert!(tower_outcome.is_ok(), "tower, {url}: {tower_outcome:?}");
            assert!(
                middleware_outcome.is_ok(),
                "middleware, {url}: {middleware_outcome:?}"
            );
            assert_eq!(
                sent.load(Ordering::SeqCst),
                2,
                "{url}: sent through both layers"
            );
        } else {
            let error = tower_outcome.unwrap_err();
            assert!(
                matches!(error, CallError::PlainHttp { .. }),
                "tower, {url}: {error:?}"
            );
            assert!(error.to_string().contains("insecure_allow_http"), "{error}");
            let error = middleware_outcome.unwrap_err();
            let reqwest_middleware::Error::Middleware(error) = error else {
                panic!("middleware, {url}: {error:?}");
            };
            assert!(
                matches!(error.downcast_ref(), Some(CallError::PlainHttp { .. })),
                "middleware, {url}: {error:?}"
            );
            assert_eq!(sent.load(Ordering::SeqCst), 0, "{url}: never sent");
            assert_eq!(
                fetches.load(Ordering::SeqCst),
                fetched_before,
                "{url}: no token asked for"
            );
        }
    }
}

/// Hardening: only a refusal of the token invalidates it. Each scenario's first answer is the
/// refusal below, every later one 200, answered from memory through both layers; the token
/// fetches are counted.
#[tokio::test]
async fn only_a_refusal_of_the_token_presented_invalidates_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The first answer, then 200s; counts what it answered.
    #[derive(Clone)]
    struct Script {
        first: Vec<(&'static str, &'static str)>,
        answered: Arc<AtomicUsize>,
    }

    impl Script {
        fn answer<B: From<&'static str>>(&self) -> http::Response<B> {
            let n = self.answered.fetch_add(1, Ordering::SeqCst);
            let mut response = http::Response::new(B::from("ok"));
            if n == 0 {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                for (name, value) in &self.first {
                    response
                        .headers_mut()
                        .append(*name, http::HeaderValue::from_static(value));
                }
            }
            response
        }
    }

    /// A source that counts its fetches, of a bearer or DPoP-bound token.
    fn counted_source(dpop: bool, fetches: &Arc<AtomicUsize>) -> TokenSource {
        let mut client = client_credentials::ClientCredentials::new(
            client_credentials::TokenUrl::new("https://idp.example.com/token").unwrap(),
            "client",
            client_credentials::ClientSecret::new("secret"),
        );
        if dpop {
            client = client.with_dpop(
                DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap(),
            );
        }
        let token_type = if dpop { "DPoP" } else { "Bearer" };
        let fetches = Arc::clone(fetches);
        let request = client.token_request().build().unwrap();
        TokenSource::from_fn(request, move |request| {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = format!(
                    r#"{{"access_token":"token-{n}","token_type":"{token_type}","expires_in":600}}"#
                );
                let response = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap();
                #[allow(clippy::disallowed_methods)] // Stands in for the token endpoint.
                request.parse_response(&response, std::time::SystemTime::now())
            }
        })
        .with_policy(invalidate_at_once())
    }

    // What, a DPoP-bound token or not, the first answer's headers, then the token fetches, the
    // requests sent and the status the caller gets.
    type Scenario = (
        &'static str,
        bool,
        Vec<(&'static str, &'static str)>,
        usize,
        usize,
        u16,
    );
    let scenarios: [Scenario; 4] = [
        (
            "a resource server whose clock is off refuses the proof beside a bare Bearer challenge",
            true,
            vec![(
                "www-authenticate",
                r#"Bearer realm="api", DPoP algs="ES256", error="invalid_dpop_proof""#,
            )],
            1,
            2,
            200,
        ),
        (
            "a revoked bearer token beside a DPoP nonce request",
            false,
            vec![
                ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ("www-authenticate", r#"Bearer error="invalid_token""#),
                ("dpop-nonce", "n-1"),
            ],
            2,
            2,
            200,
        ),
        (
            "a DPoP refusal of a bearer token's call is about another credential",
            false,
            vec![("www-authenticate", r#"DPoP error="invalid_token""#)],
            1,
            1,
            401,
        ),
        (
            "a revoked DPoP-bound token",
            true,
            vec![("www-authenticate", r#"DPoP error="invalid_token""#)],
            2,
            2,
            200,
        ),
    ];
    for (what, dpop, first, expected_fetches, expected_sends, expected_status) in scenarios {
        for layer in ["tower", "reqwest-middleware"] {
            let fetches = Arc::new(AtomicUsize::new(0));
            let tokens = counted_source(dpop, &fetches);
            let script = Script {
                first: first.clone(),
                answered: Arc::new(AtomicUsize::new(0)),
            };
            let status = if layer == "tower" {
                let answers = script.clone();
                let inner = tower::service_fn(move |_: Request<Full<Bytes>>| {
                    let response = answers.answer::<Full<Bytes>>();
                    async move { Ok::<_, Infallible>(response) }
                });
                let service = AuthorizeLayer::new(tokens).layer(inner);
                let call = Request::get("https://api.example.com/things")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                service.oneshot(call).await.unwrap().status()
            } else {
                let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(AuthorizeMiddleware::new(tokens))
                    .with(FromMemory({
                        let script = script.clone();
                        move || script.answer::<reqwest::Body>()
                    }))
                    .build();
                client
                    .get("https://api.example.com/things")
                    .send()
                    .await
                    .unwrap()
                    .status()
            };
            assert_eq!(status.as_u16(), expected_status, "{layer}: {what}");
            assert_eq!(
                script.answered.load(Ordering::SeqCst),
                expected_sends,
                "{layer}: {what}: requests sent"
            );
            assert_eq!(
                fetches.load(Ordering::SeqCst),
                expected_fetches,
                "{layer}: {what}: token fetches"
            );
        }
    }
}

/// Hardening: an answer from another origin than the one the token was sent to says nothing
/// about the token. The API answers with a 307 to a second server, which the client under the
/// middleware follows (reqwest's redirect policy); the second server refuses the token, or
/// demands a DPoP nonce of its own. Its answer reaches the caller as it came: the token is kept,
/// the request is not sent again, and no nonce is kept for the API's origin.
#[tokio::test]
async fn an_answer_from_another_origin_keeps_the_token_and_gives_no_nonce() {
    for dpop in [false, true] {
        let what = if dpop { "a nonce demand" } else { "a refusal" };
        let api = TestServer::start();
        let elsewhere = TestServer::start();
        let tokens = if dpop {
            dpop_source(&api)
        } else {
            source(&api, invalidate_at_once())
        };
        let middleware = AuthorizeMiddleware::new(tokens.clone());
        let following = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap();
        let client = reqwest_middleware::ClientBuilder::new(following)
            .with(middleware.clone())
            .build();
        let url = api.url("/api/things");
        let moved = elsewhere.url("/api/moved");
        api.push_resource_fault(Fault::TemporaryRedirect {
            location: moved.clone(),
        });
        let (refusal, sent_challenge) = if dpop {
            let nonce = "elsewheres-nonce".to_owned();
            let fault = Fault::UseDpopNonce { nonce };
            (fault, r#"DPoP error="use_dpop_nonce""#)
        } else {
            let challenge = r#"Bearer error="invalid_token""#;
            let fault = Fault::Unauthorized {
                challenge: challenge.into(),
            };
            (fault, challenge)
        };
        elsewhere.push_resource_fault(refusal);
        let first = tokens.token().await.unwrap();

        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            response.url().as_str(),
            moved,
            "{what}: the redirect was followed"
        );
        assert_eq!(
            challenge(response.headers()).as_deref(),
            Some(sent_challenge),
            "{what}: as it came"
        );
        assert_eq!(api.resource_requests(), 1, "{what}: not sent again");
        assert_eq!(elsewhere.resource_requests(), 1, "{what}");
        assert_eq!(
            middleware.dpop_nonces().get(&url.parse().unwrap()),
            None,
            "{what}: another origin's nonce is not the API's"
        );
        assert_eq!(api.token_requests(), 1, "{what}: the token was kept");

        let next = client.get(&url).send().await.unwrap();
        assert_eq!(next.status(), StatusCode::OK, "{what}");
        assert_eq!(api.token_requests(), 1, "{what}");
        let now = tokens.token().await.unwrap();
        assert_eq!(
            now.access_token().secret(),
            first.access_token().secret(),
            "{what}: the same token"
        );
    }
}
