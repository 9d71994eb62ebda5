//! A `reqwest-middleware` middleware that puts a valid token on every request (feature
//! `reqwest-middleware`), composing with `reqwest-retry`, `reqwest-tracing` and the rest.
//!
//! ```no_run
//! # async fn run(tokens: client_credentials::TokenSource) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use client_credentials::reqwest_middleware::AuthorizeMiddleware;
//!
//! let http = client_credentials::reqwest::recommended_client();
//! let api = reqwest_middleware::ClientBuilder::new(http)
//!     .with(AuthorizeMiddleware::new(tokens))
//!     .build();
//! let response = api.get("https://api.example.com/things").send().await?;
//! # let _ = response; Ok(()) }
//! ```
//!
//! It behaves as the tower layer does ([`AuthorizeLayer`](crate::tower::AuthorizeLayer), feature
//! `tower`): one token from the [`TokenSource`] per request, presented by its type (`Bearer`, or
//! `DPoP` with a fresh proof); a 401 that refuses the token drops exactly that token and sends
//! the request again once with a new one, when its method is idempotent and its body is none or
//! bytes in memory (not a stream) within the [`CallPolicy`]'s limit; one retry with a
//! resource server's DPoP nonce; every other answer untouched. An answer from another origin
//! than the request's (a redirect the client followed: `Response::url` says where it ended)
//! says nothing about the token: it reaches the caller as it came, the token kept, the request
//! not sent again and no DPoP nonce kept. Unlike the tower layer it reads no trailers (a gRPC
//! call's status at the end of its body). A request whose token cannot be
//! had fails with `reqwest_middleware::Error::Middleware` holding a [`CallError`](crate::error::CallError)
//! (`error.downcast_ref::<CallError>()` on the `anyhow::Error`), and is never sent.
//!
//! Put it after a retry middleware (`.with(retry).with(authorize)`) so that every retry of
//! `reqwest-retry` gets a valid token of its own.
//!
//! A token goes only over `https`, or plain `http` to a loopback host: a request to any other
//! plain-`http` URI fails with [`CallError::PlainHttp`](crate::error::CallError::PlainHttp) and
//! is never sent, unless the [`CallPolicy`] allows it by name
//! ([`CallPolicy::insecure_allow_http`]). Build the client under the middleware with
//! [`recommended_client`](crate::reqwest::recommended_client) rather than
//! `reqwest::Client::new()`: it ignores `HTTP_PROXY` (a proxy would read a plain-`http` token in
//! clear, and could answer for the API) and uses no proxy for loopback hosts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, StatusCode, Uri};
use reqwest_middleware::{Middleware, Next};

use crate::attempt::DpopNonces;
use crate::call::{CallPolicy, Origin};
use crate::io::call::{CallClient, CallRequest, CallResponse, Caller, Stop};
use crate::io::source::TokenSource;

/// A [`Middleware`] that authorizes every request with a token from a [`TokenSource`]; see the
/// [module documentation](self). Cheap to clone; clones share the source, the policy and the
/// resource servers' DPoP nonces.
#[derive(Clone)]
pub struct AuthorizeMiddleware {
    caller: Arc<Caller>,
}

impl AuthorizeMiddleware {
    /// A middleware presenting tokens from `tokens`, by the default [`CallPolicy`].
    #[must_use]
    pub fn new(tokens: TokenSource) -> Self {
        Self::with_policy(tokens, CallPolicy::new())
    }

    /// A middleware presenting tokens from `tokens`, by `policy`.
    #[must_use]
    pub fn with_policy(tokens: TokenSource, policy: CallPolicy) -> Self {
        Self {
            caller: Caller::new(tokens, policy, None),
        }
    }

    /// The source the tokens come from.
    #[must_use]
    pub fn token_source(&self) -> &TokenSource {
        &self.caller.tokens
    }

    /// The policy for the API's refusals.
    pub fn policy(&self) -> &CallPolicy {
        &self.caller.policy
    }

    /// The resource servers' latest DPoP nonces, by origin (RFC 9449 §9).
    #[must_use]
    pub fn dpop_nonces(&self) -> &DpopNonces {
        &self.caller.nonces
    }
}

impl fmt::Debug for AuthorizeMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeMiddleware")
            .field("tokens", &self.caller.tokens)
            .field("policy", &self.caller.policy)
            .finish_non_exhaustive()
    }
}

/// The future of [`Middleware::handle`], as `async_trait` declares it.
type Handled<'a> =
    Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>>;

impl Middleware for AuthorizeMiddleware {
    // The signature `#[async_trait]` makes of `async fn handle`, written out so that its one box
    // holds the loop's future itself: an `async` body awaiting the loop would keep the request
    // a second time beside it, in a larger allocation to make and copy on every call.
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: reqwest::Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Handled<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(Caller::call(
            &*self.caller,
            Attempted { request },
            Rest { next, extensions },
        ))
    }
}

/// The rest of the middleware chain, as the loop sends with it.
struct Rest<'a> {
    next: Next<'a>,
    extensions: &'a mut Extensions,
}

impl CallClient<Attempted> for Rest<'_> {
    type Response = Answered;
    type Error = reqwest_middleware::Error;
    type Output = reqwest_middleware::Result<reqwest::Response>;

    fn ready(&mut self) -> impl Future<Output = Result<(), reqwest_middleware::Error>> + Send {
        std::future::ready(Ok(()))
    }

    fn send(
        &mut self,
        request: Attempted,
    ) -> impl Future<Output = Result<Answered, reqwest_middleware::Error>> + Send {
        let sent = self.next.clone().run(request.request, self.extensions);
        async move { sent.await.map(Answered) }
    }

    fn output(
        result: Result<Answered, Stop<reqwest_middleware::Error>>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        match result {
            Ok(Answered(response)) => Ok(response),
            Err(Stop::Call(error)) => Err(reqwest_middleware::Error::middleware(error)),
            Err(Stop::Client(error)) => Err(error),
        }
    }
}

/// A request, as the loop reads and copies it.
struct Attempted {
    request: reqwest::Request,
}

impl CallRequest for Attempted {
    fn method(&self) -> &Method {
        self.request.method()
    }

    type Target = reqwest::Url;

    fn target(&self) -> &reqwest::Url {
        self.request.url()
    }

    /// A URL reqwest accepted is an absolute URI; were it not one, a DPoP proof would fail with
    /// `Error::UriNotAbsolute` and no nonce would be kept for it, but nothing would go out
    /// unauthenticated.
    fn uri(target: &reqwest::Url, _: Option<&Uri>) -> Uri {
        Uri::try_from(target.as_str()).unwrap_or_default()
    }

    fn scheme_and_host<'a>(
        target: &'a reqwest::Url,
        _: Option<&'a Uri>,
    ) -> (Option<&'a str>, Option<&'a str>) {
        (Some(target.scheme()), target.host_str())
    }

    fn origin<'a>(target: &'a reqwest::Url, _: Option<&'a Uri>) -> Option<Origin<'a>> {
        url_origin(target)
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.request.headers_mut()
    }

    fn body_len(&self) -> Option<u64> {
        match self.request.body() {
            None => Some(0),
            // A stream has no bytes until it is sent.
            Some(body) => body.as_bytes().map(|bytes| bytes.len() as u64),
        }
    }

    /// A request with a body is copied by `reqwest::Request::try_clone`, the only way to share
    /// its bytes. One without (most `GET`s) is copied from what reqwest sends of it: its method,
    /// URL, headers, version and timeout. `try_clone` would also allocate a timeout slot and its
    /// table only to drop them for a copy of the original's, three allocations on every call.
    /// What that copy would carry besides is the extensions an `http::Request` brought along
    /// when it was converted, which reqwest keeps private and never reads.
    fn try_copy(&self) -> Option<Self> {
        let request = &self.request;
        if request.body().is_some() {
            return Some(Self {
                request: request.try_clone()?,
            });
        }
        let mut copy = reqwest::Request::new(request.method().clone(), request.url().clone());
        *copy.headers_mut() = request.headers().clone();
        *copy.version_mut() = request.version();
        if let Some(timeout) = request.timeout() {
            *copy.timeout_mut() = Some(*timeout);
        }
        Some(Self { request: copy })
    }
}

/// A response, as the loop reads it.
struct Answered(reqwest::Response);

impl CallResponse for Answered {
    fn status(&self) -> StatusCode {
        self.0.status()
    }

    fn headers(&self) -> &HeaderMap {
        self.0.headers()
    }

    /// The URL the answer came from: another than the request's when the client followed a
    /// redirect (a `reqwest::Client` does by default). An answer a middleware made from an
    /// `http::Response` without a URL (a cache's, a mock's) has reqwest's stand-in, which says
    /// nothing of where it came from: taken as the request's, as when no URL is known.
    fn origin(&self) -> Option<Origin<'_>> {
        let url = self.0.url();
        if url.host_str() == Some(NO_URL_HOST) {
            return None;
        }
        url_origin(url)
    }
}

/// The host of the URL reqwest gives a `Response` made from an `http::Response` that carries
/// none (`http://no.url.provided.local`).
const NO_URL_HOST: &str = "no.url.provided.local";

/// A URL's origin, as the core compares them; `None` for a URL without a host.
fn url_origin(url: &reqwest::Url) -> Option<Origin<'_>> {
    Some(Origin::new(url.scheme(), url.host_str()?, url.port()))
}
