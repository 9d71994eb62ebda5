//! The one loop of an authorized call, shared by the tower layer and the reqwest middleware:
//! take a token from the source, present it, send, hand the answer to the core's
//! [`AuthorizedCall`], and do what it says. The adapters only translate their request and
//! response types ([`CallRequest`], [`CallResponse`]) and send ([`CallClient`]).

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use http::{HeaderMap, Method, StatusCode, Uri};

use crate::attempt::DpopNonces;
use crate::call::{AuthorizedCall, CallPolicy, CallStep, Origin, present_token_lazily};
use crate::error::call::CallError;
use crate::io::environment::{entropy, wall_now};
use crate::io::source::TokenSource;
use crate::observe;
use crate::token::Token;

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod middleware;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

/// What the loop needs of a request.
pub(crate) trait CallRequest: Sized {
    fn method(&self) -> &Method;
    /// Where the request goes, as the request holds it; kept apart only while no copy of the
    /// request is.
    type Target: Clone;
    fn target(&self) -> &Self::Target;
    /// The target as an absolute URI, for the DPoP proof's `htu`, the nonce store's origin and
    /// the events: made only when one of them needs it. A relative target (a tonic channel's)
    /// is completed with `origin`, the layer's, when it has one.
    fn uri(target: &Self::Target, origin: Option<&Uri>) -> Uri;
    /// The target's scheme and host, as cheaply as the request holds them, a relative target's
    /// from `origin` (`None` without one): whether it may carry a token at all.
    fn scheme_and_host<'a>(
        target: &'a Self::Target,
        origin: Option<&'a Uri>,
    ) -> (Option<&'a str>, Option<&'a str>);
    /// The target's origin, a relative target's `origin`'s (`None` without one): where an
    /// answer must come from to speak of the token sent.
    fn origin<'a>(target: &'a Self::Target, origin: Option<&'a Uri>) -> Option<Origin<'a>>;
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
    /// Where the answer came from, for a client that may follow a redirect and says where it
    /// ended; `None` (the default) when the client does not say, taken as where the request went.
    fn origin(&self) -> Option<Origin<'_>> {
        None
    }
    /// Readies the answer going to the caller to drop `token` from `tokens` if its trailers
    /// refuse it, and to record the refusal or the acceptance they say in `refusals` (the core's
    /// `watches_trailers` said they may): for a client whose bodies can be watched; others (the
    /// default) read no trailers.
    fn watch_trailers(
        &mut self,
        tokens: &TokenSource,
        refusals: &Arc<Refusals>,
        token: &Arc<Token>,
    ) {
        let _ = (tokens, refusals, token);
    }
}

/// What sends a request: the inner service, the rest of the middleware chain.
pub(crate) trait CallClient<R> {
    type Response: CallResponse;
    type Error;
    /// What the adapter's caller gets: the answer, or why there is none, in the adapter's types.
    type Output;
    /// Readies the client for an attempt after the first, which goes out on what the adapter
    /// readied before the loop began.
    fn ready(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Sends an attempt. The request goes to the client at once, not into the future, which
    /// would keep it beside the loop's own copies while the answer is awaited.
    fn send(
        &mut self,
        request: R,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
    fn output(result: Result<Self::Response, Stop<Self::Error>>) -> Self::Output;
}

/// Why the loop stopped without an answer: its own failure, or the client's, which the adapter
/// hands on in its own type.
pub(crate) enum Stop<E> {
    Call(CallError),
    Client(E),
}

/// What every clone of a layer or middleware shares: the source, the policy, the origin of
/// relative request URIs and the resource servers' DPoP nonces. (The `Authorization` value of
/// a token is kept in the token itself.)
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) tokens: TokenSource,
    pub(crate) policy: CallPolicy,
    pub(crate) origin: Option<Uri>,
    pub(crate) nonces: DpopNonces,
    /// The API that last refused a token, until it accepts one.
    pub(crate) refusals: Arc<Refusals>,
}

/// The API that last refused a token of a layer's source, until it accepts one: its acceptance,
/// not another API's, ends the source's refusals in a row (`TokenSource::accepted`). Shared
/// with the bodies that watch a gRPC call's trailers, where its refusal or acceptance comes.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// The refusing API's origin (`None`: not known, so any acceptance ends the refusals).
    refused_by: Mutex<Option<String>>,
    /// Whether a refusal is on record: an accepted call reads this, and nothing else, when
    /// none is.
    on_record: AtomicBool,
}

impl Refusals {
    /// Records that the API at `origin` refused a token (and that it was invalidated).
    pub(crate) fn refused(&self, origin: Option<Origin<'_>>) {
        let origin = origin.map(|origin| origin.to_string());
        *self
            .refused_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = origin;
        self.on_record.store(true, Ordering::Relaxed);
    }

    /// Tells `tokens` that the API at `origin` accepted `token`, if that API may be the one
    /// that last refused a token (an unknown origin on either side may be).
    pub(crate) fn accepted(&self, origin: Option<Origin<'_>>, tokens: &TokenSource, token: &Token) {
        if !self.on_record.load(Ordering::Relaxed) {
            return;
        }
        let origin = origin.map(|origin| origin.to_string());
        let mut refused_by = self
            .refused_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let same = match (refused_by.as_deref(), origin.as_deref()) {
            (Some(refused_by), Some(origin)) => refused_by == origin,
            _ => true,
        };
        if same {
            *refused_by = None;
            self.on_record.store(false, Ordering::Relaxed);
            drop(refused_by);
            tokens.accepted(token);
        }
    }
}

/// What the loop keeps of a request while it is sent: the copy for a retry, or, when it keeps
/// none, its method and where it goes (for the proof, the nonces and the events, which may want
/// them after it is sent). Never both: a copy knows its method and where it goes.
enum Kept<R: CallRequest> {
    Copy(R),
    Target(Method, R::Target),
}

impl<R: CallRequest> Kept<R> {
    /// The copy, for the retry about to be sent; its target stays.
    fn take_copy(&mut self) -> Option<R> {
        let Self::Copy(copy) = self else {
            return None;
        };
        let target = Self::Target(copy.method().clone(), copy.target().clone());
        match std::mem::replace(self, target) {
            Self::Copy(copy) => Some(copy),
            Self::Target(..) => None,
        }
    }

    fn method(&self) -> &Method {
        match self {
            Self::Copy(copy) => copy.method(),
            Self::Target(method, _) => method,
        }
    }

    fn target(&self) -> &R::Target {
        match self {
            Self::Copy(copy) => copy.target(),
            Self::Target(_, target) => target,
        }
    }

    /// The target as an absolute URI, made once into `made` when first asked for.
    fn uri<'a>(&self, made: &'a OnceLock<Uri>, origin: Option<&Uri>) -> &'a Uri {
        made.get_or_init(|| R::uri(self.target(), origin))
    }
}

impl Caller {
    pub(crate) fn new(tokens: TokenSource, policy: CallPolicy, origin: Option<Uri>) -> Arc<Self> {
        Arc::new(Self {
            tokens,
            policy,
            origin,
            nonces: DpopNonces::new(),
            refusals: Arc::default(),
        })
    }

    /// Sends `request` with a token, and again when the API's answer and the policy say so.
    ///
    /// One `async` block that owns the request and the client, not an `async fn`: an `async fn`
    /// keeps its arguments a second time beside the locals they move into, and this future is
    /// what each adapter boxes per call, so its size is an allocation and the copies of it.
    #[allow(clippy::manual_async_fn)] // The `async fn` it suggests keeps the request twice.
    pub(crate) fn call<P, R, C>(
        caller: P,
        mut request: R,
        mut client: C,
    ) -> impl Future<Output = C::Output>
    where
        P: Deref<Target = Self>,
        R: CallRequest,
        C: CallClient<R>,
    {
        async move {
            let result = 'call: {
                let (scheme, host) = R::scheme_and_host(request.target(), caller.origin.as_ref());
                if !caller.policy.allows_destination(scheme, host) {
                    let host = host.unwrap_or_default().to_owned();
                    break 'call Err(Stop::Call(CallError::PlainHttp { host }));
                }
                let mut call =
                    AuthorizedCall::new(&caller.policy, request.method(), request.body_len());
                // Made in a block of its own: a binding alive at an `await`, even one moved
                // from, keeps its space in the future.
                let mut kept = {
                    let copy = if call.keeps_copy() {
                        request.try_copy()
                    } else {
                        None
                    };
                    if call.keeps_copy() && copy.is_none() {
                        call.copy_failed();
                    }
                    match copy {
                        Some(copy) => Kept::Copy(copy),
                        None => Kept::Target(request.method().clone(), request.target().clone()),
                    }
                };
                // Made only for a DPoP proof, a nonce or an event. The method and the URI are
                // read from `kept`, not kept again beside it: the space would be in every call's
                // future.
                let uri = OnceLock::new();
                let mut first_attempt = true;
                // The refusal a retry answers, and the token it refused: if the source serves
                // that token again (younger than `CachePolicy::invalidate_min_age`, it is kept a
                // little against an API that refuses every token), the retry would be refused
                // too, so the caller gets the refusal. Boxed: it is there only after a refusal,
                // and the space would be in every call's future.
                let mut refused: Option<Box<(C::Response, Arc<Token>)>> = None;
                loop {
                    // `token()` answers a hit in its first poll from a small future; a miss
                    // boxes its own state machine, so this one does not carry it. After a
                    // refusal, the token is asked for as a replacement of the refused one: if
                    // its fetch fails, this caller gets the failure, not the refused token
                    // (which callers of other APIs keep being served).
                    let asked = match &refused {
                        Some(refusal) => Box::pin(caller.tokens.token_replacing(&refusal.1)).await,
                        None => caller.tokens.token().await,
                    };
                    let token = match asked {
                        Ok(token) => token,
                        Err(error) => {
                            observe::call_token_failed(&error);
                            break 'call Err(Stop::Call(CallError::Token(error)));
                        }
                    };
                    if let Some(refusal) = refused.take() {
                        let (response, rejected) = *refusal;
                        if rejected.same_access_token(&token) {
                            break 'call Ok(response);
                        }
                    }
                    let client_credentials = caller.tokens.request().client();
                    // The clock, the random bytes and the nonce only for a token that signs a
                    // proof.
                    let attempt = || {
                        Ok(caller.nonces.attempt(
                            kept.uri(&uri, caller.origin.as_ref()),
                            wall_now(),
                            entropy()?,
                        ))
                    };
                    if let Err(error) = present_token_lazily(
                        request.headers_mut(),
                        kept.method(),
                        || kept.uri(&uri, caller.origin.as_ref()),
                        &token,
                        client_credentials,
                        attempt,
                    ) {
                        break 'call Err(Stop::Call(CallError::Present(error)));
                    }
                    if !std::mem::take(&mut first_attempt)
                        && let Err(error) = client.ready().await
                    {
                        break 'call Err(Stop::Client(error));
                    }
                    let mut response = match client.send(request).await {
                        Ok(response) => response,
                        Err(error) => break 'call Err(Stop::Client(error)),
                    };
                    // Borrowed, no allocation: a redirect followed may have ended elsewhere.
                    let sent_to = R::origin(kept.target(), caller.origin.as_ref());
                    let answered_from = response.origin();
                    if call.keeps_dpop_nonce(
                        token.token_type(),
                        response.headers(),
                        sent_to,
                        answered_from,
                    ) {
                        caller
                            .nonces
                            .observe(kept.uri(&uri, caller.origin.as_ref()), response.headers());
                    }
                    match call.handle_response_from(
                        token.token_type(),
                        response.status(),
                        response.headers(),
                        sent_to,
                        answered_from,
                    ) {
                        CallStep::Return => {
                            if call.watches_trailers(
                                response.status(),
                                response.headers(),
                                sent_to,
                                answered_from,
                            ) {
                                // Accepted or refused in the trailers, not here.
                                response.watch_trailers(&caller.tokens, &caller.refusals, &token);
                            } else if response.status().is_success()
                                && (answered_from.is_none() || answered_from == sent_to)
                            {
                                // Another origin's success (a redirect followed) is not the
                                // API's acceptance.
                                caller.refusals.accepted(sent_to, &caller.tokens, &token);
                            }
                            break 'call Ok(response);
                        }
                        CallStep::Refused {
                            invalidate,
                            reason,
                            not_retried,
                        } => {
                            observe::call_not_replayed(
                                reason.as_str(),
                                not_retried.as_str(),
                                kept.method(),
                                kept.uri(&uri, caller.origin.as_ref()),
                            );
                            if invalidate {
                                caller.tokens.invalidate(&token);
                                caller.refusals.refused(sent_to);
                            }
                            break 'call Ok(response);
                        }
                        CallStep::Retry { invalidate, reason } => {
                            observe::call_retried(
                                reason.as_str(),
                                kept.method(),
                                kept.uri(&uri, caller.origin.as_ref()),
                            );
                            if invalidate {
                                // Before the copy goes: the origin is read from it.
                                caller.refusals.refused(sent_to);
                            }
                            // The copy goes; a copy of it stays for a later retry.
                            let Some(next) = kept.take_copy() else {
                                break 'call Ok(response); // not reached: a retry needs a copy
                            };
                            match next.try_copy() {
                                Some(copy) => kept = Kept::Copy(copy),
                                None => call.copy_failed(),
                            }
                            request = next;
                            if invalidate {
                                caller.tokens.invalidate(&token);
                                refused = Some(Box::new((response, token)));
                            }
                        }
                    }
                }
            };
            C::output(result)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::policy::CachePolicy;
    use crate::test_support::request;

    /// A source whose every fetch gives a new token, refusals counted in its cache.
    async fn source_with_a_refusal() -> (TokenSource, Arc<Token>) {
        let minted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tokens = TokenSource::from_fn(request(), move |request| {
            let n = minted.fetch_add(1, Ordering::Relaxed);
            let body =
                format!(r#"{{"access_token":"t{n}","token_type":"Bearer","expires_in":3600}}"#);
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
            let sent_at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            std::future::ready(request.parse_response(&response, sent_at))
        })
        .with_policy(CachePolicy::new().with_invalidate_min_age(Duration::ZERO));
        let token = tokens.token().await.unwrap();
        assert!(tokens.invalidate(&token));
        let next = tokens.token().await.unwrap();
        (tokens, next)
    }

    #[tokio::test]
    async fn only_the_api_that_refused_ends_the_refusals_in_a_row() {
        let a: Uri = "https://a.example/things".parse().unwrap();
        let b: Uri = "https://B.example:443/other".parse().unwrap();
        let (tokens, token) = source_with_a_refusal().await;
        let refusals = Refusals::default();
        refusals.refused(Origin::of(&a));
        refusals.accepted(Origin::of(&b), &tokens, &token);
        assert!(
            tokens.accepted(&token),
            "another API's acceptance ended nothing"
        );

        let (tokens, token) = source_with_a_refusal().await;
        refusals.refused(Origin::of(&a));
        let same: Uri = "https://A.EXAMPLE:443/again".parse().unwrap();
        refusals.accepted(Origin::of(&same), &tokens, &token);
        assert!(
            !tokens.accepted(&token),
            "the refusing API's acceptance ended them"
        );

        // A refusal from an API not known (a gRPC call's trailers): any acceptance ends it.
        let (tokens, token) = source_with_a_refusal().await;
        refusals.refused(None);
        refusals.accepted(Origin::of(&b), &tokens, &token);
        assert!(!tokens.accepted(&token));
    }
}
