//! A tower layer that puts a valid token on every request (feature `tower`): for hyper-util's
//! client, tonic's channels, and any `Service<http::Request<B>>`.
//!
//! ```no_run
//! # #[cfg(feature = "hyper")]
//! # async fn run(tokens: client_credentials::TokenSource) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use client_credentials::tower::AuthorizeLayer;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer as _, ServiceExt as _};
//!
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//! let api = AuthorizeLayer::new(tokens).layer(http);
//! let request = http::Request::get("http://127.0.0.1:8080/api/things").body(Full::default())?;
//! let response = api.oneshot(request).await?; // Authorization: Bearer …, and the 401 rule
//! # let _ = response; Ok(()) }
//! ```
//!
//! Per request the layer takes a token from a [`TokenSource`] (cached, or fetched once for all
//! callers), presents it by its type (`Bearer`; `DPoP` with a fresh proof for the request's
//! method and URI), and applies the [`CallPolicy`]: a 401 that refuses the token
//! (`error="invalid_token"`, a bare `Bearer`/`DPoP` challenge, or gRPC's `UNAUTHENTICATED`)
//! drops exactly that token from the source, and the request goes again once with a new token
//! when it can be replayed: an idempotent method, and a body that is [`ReplayBody`] and at most
//! the policy's limit. A resource server's DPoP nonce request (RFC 9449 §9) gets one retry with
//! the nonce, which is remembered for its origin. Every other answer (a 403,
//! `insufficient_scope`, any other 401) reaches the caller untouched. A gRPC call that began
//! normally and ends with `UNAUTHENTICATED` in its trailers drops its token too, as the
//! response's body ([`AuthorizedBody`]) passes the trailers on; it is not sent again, its answer
//! being the caller's already. Every answer is taken as
//! from the request's origin: a service beneath that follows redirects (tower-http's
//! `FollowRedirect`) does not say where its answer came from, which the reqwest middleware
//! knows (and there an answer from another origin changes nothing). A request whose token
//! cannot be had fails with [`CallError::Token`] and is never sent; so does a request to a
//! plain-`http` URI whose host is not loopback ([`CallError::PlainHttp`]), unless the policy
//! allows it by name ([`CallPolicy::insecure_allow_http`](crate::call::CallPolicy::insecure_allow_http)). A relative URI (a tonic
//! channel's) is not judged: the channel holds the origin.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::attempt::DpopNonces;
use crate::call::{CallPolicy, Origin, trailers_accept_token, trailers_refuse_token};
use crate::error::call::CallError;
use crate::io::call::{CallClient, CallRequest, CallResponse, Caller, Refusals, Stop};
use crate::io::source::TokenSource;
use crate::token::Token;

/// The error of the HTTP client beneath, boxed.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that may be copied, so that the layer can send the request again after the
/// API refused its token. Bodies that cannot be copied (streams) are sent once: the default.
///
/// Implemented for the usual bodies: `Full<Bytes>`, `Empty<Bytes>`, `String`, `Vec<u8>` and
/// `Bytes` copy themselves; `BoxBody`, `UnsyncBoxBody`, hyper's `Incoming` and tonic's body do
/// not (a gRPC call is a stream). For a body type of yours, implement it:
/// `impl ReplayBody for MyBody {}` (never replayed) or with a copy.
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` if it cannot be copied (the default).
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(Self::new())
    }
}

impl ReplayBody for String {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for Vec<u8> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for Bytes {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {}

#[cfg(feature = "hyper")]
impl ReplayBody for hyper::body::Incoming {}

#[cfg(feature = "tonic")]
impl ReplayBody for tonic::body::Body {}

/// A tower [`Layer`] that authorizes every request of the service it wraps with a token from a
/// [`TokenSource`]; see the [module documentation](self).
///
/// Cheap to clone; every service it makes shares the source, the policy and the resource
/// servers' DPoP nonces.
#[derive(Clone)]
pub struct AuthorizeLayer {
    caller: Arc<Caller>,
}

impl AuthorizeLayer {
    /// A layer presenting tokens from `tokens`, by the default [`CallPolicy`].
    #[must_use]
    pub fn new(tokens: TokenSource) -> Self {
        Self::with_policy(tokens, CallPolicy::new())
    }

    /// A layer presenting tokens from `tokens`, by `policy`.
    #[must_use]
    pub fn with_policy(tokens: TokenSource, policy: CallPolicy) -> Self {
        Self {
            caller: Caller::new(tokens, policy, None),
        }
    }

    /// The origin (`scheme://authority`) of the requests whose URI is relative, as a tonic
    /// channel's are (`/package.Service/Method`, the channel holding the endpoint): a DPoP
    /// proof's `htu` (RFC 9449 §4.2), the resource nonces' origin and the plain-`http` rule
    /// need an absolute URI. Give the channel's endpoint. Without it a relative request can
    /// carry a bearer token but not a DPoP-bound one ([`Error::UriNotAbsolute`](crate::Error::UriNotAbsolute)).
    /// Call it on the layer just made: the resource nonces start anew.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) if `origin` is not an
    /// absolute URI with a scheme and an authority.
    pub fn with_origin(self, origin: &str) -> Result<Self, crate::error::Error> {
        let invalid = || crate::error::Error::InvalidParameter {
            name: "origin".into(),
            reason: "it must be an absolute uri with a scheme and an authority, such as https://api.example.com",
        };
        let uri: Uri = origin.parse().map_err(|_| invalid())?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(invalid());
        };
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| invalid())?;
        let caller = &self.caller;
        Ok(Self {
            caller: Caller::new(caller.tokens.clone(), caller.policy, Some(origin)),
        })
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

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            caller: Arc::clone(&self.caller),
        }
    }
}

impl fmt::Debug for AuthorizeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("tokens", &self.caller.tokens)
            .field("policy", &self.caller.policy)
            .finish_non_exhaustive()
    }
}

/// `target`, relative, completed with `origin`'s scheme and authority.
fn complete(target: &Uri, origin: &Uri) -> Uri {
    let mut parts = target.clone().into_parts();
    parts.scheme = origin.scheme().cloned();
    parts.authority = origin.authority().cloned();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).unwrap_or_else(|_| target.clone())
}

/// The service [`AuthorizeLayer`] makes: `inner`, with a token on every request.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    caller: Arc<Caller>,
}

impl<S> Authorize<S> {
    /// The service beneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service beneath, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service beneath, without the layer.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Authorize<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .field("tokens", &self.caller.tokens)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqBody: Body + ReplayBody + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<AuthorizedBody<ResBody>>;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, CallError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| CallError::Client(e.into()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service made ready by `poll_ready` sends the first attempt; the clone left in its
        // place is readied again by the next caller (tower's usual hand-over).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let client = Inner(inner);
        Box::pin(Caller::call(
            Arc::clone(&self.caller),
            Attempted(request),
            client,
        ))
    }
}

/// The inner service, as the loop sends with it: readied again before every attempt but the
/// first, which goes out on the one `poll_ready` readied.
struct Inner<S>(S);

impl<S, B, R> CallClient<Attempted<B>> for Inner<S>
where
    S: Service<Request<B>, Response = Response<R>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send,
{
    type Response = Answered<R>;
    type Error = S::Error;
    type Output = Result<Response<AuthorizedBody<R>>, CallError>;

    fn ready(&mut self) -> impl Future<Output = Result<(), S::Error>> + Send {
        std::future::poll_fn(|cx| self.0.poll_ready(cx))
    }

    fn send(
        &mut self,
        request: Attempted<B>,
    ) -> impl Future<Output = Result<Answered<R>, S::Error>> + Send {
        let sent = self.0.call(request.0);
        async move {
            sent.await.map(|response| Answered {
                response,
                watch: None,
            })
        }
    }

    fn output(
        result: Result<Answered<R>, Stop<S::Error>>,
    ) -> Result<Response<AuthorizedBody<R>>, CallError> {
        match result {
            Ok(Answered { response, watch }) => {
                Ok(response.map(|inner| AuthorizedBody { inner, watch }))
            }
            Err(Stop::Call(error)) => Err(error),
            Err(Stop::Client(error)) => Err(CallError::Client(error.into())),
        }
    }
}

/// A request, as the loop reads and copies it.
struct Attempted<B>(Request<B>);

impl<B: Body + ReplayBody> CallRequest for Attempted<B> {
    fn method(&self) -> &Method {
        self.0.method()
    }

    type Target = Uri;

    fn target(&self) -> &Uri {
        self.0.uri()
    }

    fn uri(target: &Uri, origin: Option<&Uri>) -> Uri {
        match origin {
            Some(origin) if target.scheme().is_none() => complete(target, origin),
            _ => target.clone(),
        }
    }

    fn scheme_and_host<'a>(
        target: &'a Uri,
        origin: Option<&'a Uri>,
    ) -> (Option<&'a str>, Option<&'a str>) {
        match origin {
            Some(origin) if target.scheme().is_none() => (origin.scheme_str(), origin.host()),
            _ => (target.scheme_str(), target.host()),
        }
    }

    fn origin<'a>(target: &'a Uri, origin: Option<&'a Uri>) -> Option<Origin<'a>> {
        match origin {
            Some(origin) if target.scheme().is_none() => Origin::of(origin),
            _ => Origin::of(target),
        }
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.0.headers_mut()
    }

    fn body_len(&self) -> Option<u64> {
        self.0.body().size_hint().exact()
    }

    fn try_copy(&self) -> Option<Self> {
        let body = self.0.body().try_clone_body()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = self.0.method().clone();
        *copy.uri_mut() = self.0.uri().clone();
        *copy.version_mut() = self.0.version();
        *copy.headers_mut() = self.0.headers().clone();
        *copy.extensions_mut() = self.0.extensions().clone();
        Some(Self(copy))
    }
}

/// A response, as the loop reads it, and what its body is to watch for once the caller has it.
struct Answered<B> {
    response: Response<B>,
    watch: Option<Watch>,
}

impl<B> CallResponse for Answered<B> {
    fn status(&self) -> StatusCode {
        self.response.status()
    }

    fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    fn watch_trailers(
        &mut self,
        tokens: &TokenSource,
        refusals: &Arc<Refusals>,
        token: &Arc<Token>,
    ) {
        self.watch = Some(Watch {
            tokens: tokens.clone(),
            refusals: Arc::clone(refusals),
            token: Arc::clone(token),
        });
    }
}

/// The token a response's call was made with, the source to drop it from if the trailers
/// refuse it, and the layer's record of refusals, which they end if they accept it.
struct Watch {
    tokens: TokenSource,
    refusals: Arc<Refusals>,
    token: Arc<Token>,
}

pin_project_lite::pin_project! {
    /// The body of a response through [`Authorize`]: the service's body, its frames passed on
    /// as they come.
    ///
    /// A gRPC call that began normally (200, `application/grpc`) ends with its status in the
    /// trailers, after the response reached the caller: when they say `UNAUTHENTICATED`
    /// (`grpc-status: 16`, [`trailers_refuse_token`](crate::call::trailers_refuse_token)), the
    /// body drops the token the call was made with from the source as the trailers go by, so
    /// that the next call gets a new one. The call itself is not sent again: its answer is
    /// already the caller's. Any other response's body is the service's, untouched, holding
    /// nothing.
    pub struct AuthorizedBody<B> {
        #[pin]
        inner: B,
        // Only for a response whose trailers may refuse the token; dropped at the end.
        watch: Option<Watch>,
    }
}

impl<B> AuthorizedBody<B> {
    /// The service's body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The service's body, without the layer's watch of its trailers.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for AuthorizedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(watch) = this.watch.take()
                {
                    // The origin is not kept for this: one known to the layer (a tonic
                    // channel's) is the only one its calls go to.
                    if trailers_refuse_token(trailers) {
                        watch.tokens.invalidate(&watch.token);
                        watch.refusals.refused(None);
                    } else if trailers_accept_token(trailers) {
                        watch.refusals.accepted(None, &watch.tokens, &watch.token);
                    }
                }
            }
            // The end, or a broken body: no trailers to come.
            None | Some(Err(_)) => *this.watch = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for AuthorizedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedBody")
            .field("inner", &self.inner)
            .field("watching_trailers", &self.watch.is_some())
            .finish()
    }
}
