//! The one loop of an authorized call, shared by the tower layer and the reqwest middleware:
//! take a token from the source, present it, send, hand the answer to the core's
//! [`AuthorizedCall`], and do what it says. The adapters only translate their request and
//! response types ([`CallRequest`], [`CallResponse`]) and send ([`CallClient`]).

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri};

use super::source::TokenSource;
use super::{entropy, send_time};
use crate::attempt::DpopNonces;
use crate::call::{AuthorizedCall, CallPolicy, CallStep, present_token_lazily};
use crate::error::call::CallError;
use crate::observe;
use crate::response::DPOP_NONCE;
use crate::token::Token;

/// What the loop needs of a request.
pub(crate) trait CallRequest: Sized {
    fn method(&self) -> &Method;
    /// Where the request goes, as cheap to keep as the request type allows.
    type Target;
    fn target(&self) -> Self::Target;
    /// The target as an absolute URI, for the DPoP proof's `htu`, the nonce store's origin and
    /// the events: made only when one of them needs it.
    fn uri(target: &Self::Target) -> Uri;
    fn headers_mut(&mut self) -> &mut HeaderMap;
    /// The body's length if it is known before sending (`None` for a stream).
    fn body_len(&self) -> Option<u64>;
    /// A copy to send again, if the body can be copied.
    fn try_copy(&self) -> Option<Self>;
}

/// What the loop needs of a response.
pub(crate) trait CallResponse {
    fn status(&self) -> StatusCode;
    fn headers(&self) -> &HeaderMap;
}

/// What sends a request: the inner service, the rest of the middleware chain.
pub(crate) trait CallClient<R> {
    type Response: CallResponse;
    type Error;
    fn send(
        &mut self,
        request: R,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
}

/// Why the loop stopped without an answer: its own failure, or the client's, which the adapter
/// hands on in its own type.
pub(crate) enum Stop<E> {
    Call(CallError),
    Client(E),
}

/// What every clone of a layer or middleware shares: the source, the policy, the resource
/// servers' DPoP nonces, and the `Authorization` value of the token last presented.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) tokens: TokenSource,
    pub(crate) policy: CallPolicy,
    pub(crate) nonces: DpopNonces,
}

impl Caller {
    pub(crate) fn new(tokens: TokenSource, policy: CallPolicy) -> Arc<Self> {
        Arc::new(Self {
            tokens,
            policy,
            nonces: DpopNonces::new(),
        })
    }

    /// Sends `request` with a token, and again when the API's answer and the policy say so.
    pub(crate) async fn call<R, C>(
        &self,
        request: R,
        client: &mut C,
    ) -> Result<C::Response, Stop<C::Error>>
    where
        R: CallRequest,
        C: CallClient<R>,
    {
        let method = request.method().clone();
        let target = request.target();
        let uri = std::sync::OnceLock::new();
        let uri = || uri.get_or_init(|| R::uri(&target));
        let mut call = AuthorizedCall::new(&self.policy, &method, request.body_len());
        let mut copy = None;
        if call.keeps_copy() {
            copy = request.try_copy();
            if copy.is_none() {
                call.copy_failed();
            }
        }
        let mut request = request;
        // The refusal a retry answers, and the token it refused: if the source serves that
        // token again (younger than `CachePolicy::invalidate_min_age`, it is kept a little
        // against an API that refuses every token), the retry would be refused too, so the
        // caller gets the refusal.
        let mut refused: Option<(C::Response, Arc<Token>)> = None;
        loop {
            let token = match self.tokens.token().await {
                Ok(token) => token,
                Err(error) => {
                    observe::call_token_failed(&error);
                    return Err(Stop::Call(CallError::Token(error)));
                }
            };
            if let Some((response, rejected)) = refused.take()
                && rejected.access_token().secret() == token.access_token().secret()
            {
                return Ok(response);
            }
            let client_credentials = self.tokens.request().client();
            // The clock, the random bytes and the nonce only for a token that signs a proof.
            let attempt = || Ok(self.nonces.attempt(uri(), send_time(), entropy()?));
            present_token_lazily(
                request.headers_mut(),
                &method,
                uri,
                &token,
                client_credentials,
                attempt,
            )
            .map_err(|e| Stop::Call(CallError::Present(e)))?;
            let response = client.send(request).await.map_err(Stop::Client)?;
            if response.headers().contains_key(DPOP_NONCE) {
                self.nonces.observe(uri(), response.headers());
            }
            match call.handle_response(response.status(), response.headers()) {
                CallStep::Return => return Ok(response),
                CallStep::Refused {
                    invalidate,
                    not_retried,
                } => {
                    let reason = if invalidate {
                        "invalid_token"
                    } else {
                        "use_dpop_nonce"
                    };
                    observe::call_not_replayed(reason, not_retried.as_str(), &method, uri());
                    if invalidate {
                        self.tokens.invalidate(&token);
                    }
                    return Ok(response);
                }
                CallStep::Retry { invalidate, reason } => {
                    observe::call_retried(reason.as_str(), &method, uri());
                    // The copy goes; a copy of it stays for a later retry.
                    let Some(next) = copy.take() else {
                        return Ok(response); // not reached: a retry needs a copy
                    };
                    copy = next.try_copy();
                    if copy.is_none() {
                        call.copy_failed();
                    }
                    request = next;
                    if invalidate {
                        self.tokens.invalidate(&token);
                        refused = Some((response, token));
                    }
                }
            }
        }
    }
}
