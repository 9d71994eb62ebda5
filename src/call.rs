//! Authorized calls to an API with a token: presenting it on a request (RFC 6750 §2.1, RFC 9449
//! §7.1), and deciding what the API's answer means for the token and whether the request goes
//! out again (RFC 6750 §3.1, RFC 9449 §9, gRPC's `UNAUTHENTICATED`, in the headers or the
//! trailers). Only an answer from the origin the token was sent to speaks of it: one the HTTP
//! client fetched elsewhere, after following a redirect, never drops the token, never sends the
//! request again and gives no DPoP nonce.
//!
//! Sans-IO, as the rest of the core: the tower layer and the reqwest middleware drive an
//! [`AuthorizedCall`] for every request, and do what its [`CallStep`]s say.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};

pub use crate::challenge::Challenge;
pub use crate::error::call::CallError;
pub use crate::origin::Origin;

use crate::attempt::{Attempt, resource_dpop_retry_nonce};
use crate::client::ClientCredentials;
use crate::endpoint::is_loopback;
use crate::error::Error;
use crate::response::DPOP_NONCE;
use crate::token::{Token, TokenType};

/// gRPC's status, sent in the trailers of a call that began normally, or in the headers of a
/// call that fails at once ("Trailers-Only").
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// gRPC's `UNAUTHENTICATED`, as `grpc-status` carries it.
const GRPC_UNAUTHENTICATED: &[u8] = b"16";

/// Whether an answer from `answered_from` may speak of a token sent to `sent_to`: when it came
/// from that origin, or when either is unknown (a client that does not say where its answer came
/// from: taken as the request's own).
fn from_destination(sent_to: Option<Origin<'_>>, answered_from: Option<Origin<'_>>) -> bool {
    match (sent_to, answered_from) {
        (Some(sent_to), Some(answered_from)) => sent_to == answered_from,
        _ => true,
    }
}

/// Whether `map`, a response's headers or trailers, says gRPC's `UNAUTHENTICATED`.
fn grpc_unauthenticated(map: &HeaderMap) -> bool {
    map.get(GRPC_STATUS)
        .is_some_and(|code| code.as_bytes() == GRPC_UNAUTHENTICATED)
}

/// Whether the trailers of an answer refuse the token its call was sent with: gRPC's
/// `UNAUTHENTICATED` (`grpc-status: 16`) at the end of a response that began normally (see
/// [`AuthorizedCall::watches_trailers`]).
///
/// The answer is already the caller's by then, so the call cannot go again: drop the token from
/// the source, for the next call to get a new one. The tower layer does it in its response
/// body (`tower::AuthorizedBody`, feature `tower`).
///
/// ```
/// use client_credentials::call::trailers_refuse_token;
/// use client_credentials::http::HeaderMap;
///
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", "16".parse()?);
/// assert!(trailers_refuse_token(&trailers));
/// trailers.insert("grpc-status", "0".parse()?);
/// assert!(!trailers_refuse_token(&trailers));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn trailers_refuse_token(trailers: &HeaderMap) -> bool {
    grpc_unauthenticated(trailers)
}

/// Whether the trailers of an answer say its call succeeded (`grpc-status: 0`), and so that the
/// API accepted the token its call was sent with: for a call whose status comes last (see
/// [`AuthorizedCall::watches_trailers`]), what ends refusals in a row
/// ([`TokenCache::accepted`](crate::cache::TokenCache::accepted)). The tower layer's response
/// body tells its source.
#[must_use]
pub fn trailers_accept_token(trailers: &HeaderMap) -> bool {
    trailers
        .get(GRPC_STATUS)
        .is_some_and(|code| code.as_bytes() == b"0")
}

/// How an authorized call treats an API's refusal: whether it sends the request again, and which
/// requests it may send twice.
///
/// By default a request is sent again once when the API refuses its token (`invalid_token`),
/// and once when it asks for a DPoP nonce (RFC 9449 §9); only requests whose method is
/// idempotent (RFC 9110 §9.2.2: `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`) and whose body
/// can be copied and is at most [`DEFAULT_MAX_REPLAY_BODY_LEN`](Self::DEFAULT_MAX_REPLAY_BODY_LEN)
/// bytes are. A request that is not sent again gets the API's answer as it came, and a refused
/// token is dropped from the source either way, so the next call gets a new one.
///
/// ```
/// use client_credentials::call::CallPolicy;
///
/// // POSTs to this API are idempotent (it de-duplicates by request id): replay them too.
/// let policy = CallPolicy::new().replay_any_method(true).max_replay_body_len(1 << 20);
/// assert!(policy.retries_rejected_token());
/// let off = CallPolicy::no_retries();
/// assert!(!off.retries_rejected_token() && !off.retries_dpop_nonce());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CallPolicy {
    retry_rejected_token: bool,
    retry_dpop_nonce: bool,
    replay_any_method: bool,
    max_replay_body_len: u64,
    insecure_allow_http: bool,
}

impl CallPolicy {
    /// The largest body copied by default to send a request again: 64 KiB.
    pub const DEFAULT_MAX_REPLAY_BODY_LEN: u64 = 64 * 1024;

    /// The default policy: one retry for a refused token, one for a DPoP nonce, idempotent
    /// methods only, bodies up to [`DEFAULT_MAX_REPLAY_BODY_LEN`](Self::DEFAULT_MAX_REPLAY_BODY_LEN).
    pub const fn new() -> Self {
        Self {
            retry_rejected_token: true,
            retry_dpop_nonce: true,
            replay_any_method: false,
            max_replay_body_len: Self::DEFAULT_MAX_REPLAY_BODY_LEN,
            insecure_allow_http: false,
        }
    }

    /// No request is ever sent twice; a refused token is still dropped from the source.
    pub const fn no_retries() -> Self {
        Self::new()
            .retry_rejected_token(false)
            .retry_dpop_nonce(false)
    }

    /// Whether a request whose token the API refused is sent again with a new token.
    pub const fn retry_rejected_token(mut self, retry: bool) -> Self {
        self.retry_rejected_token = retry;
        self
    }

    /// Whether a request whose DPoP proof the API refused (for want of a nonce, or as
    /// `invalid_dpop_proof`) is sent again with a fresh proof, once.
    pub const fn retry_dpop_nonce(mut self, retry: bool) -> Self {
        self.retry_dpop_nonce = retry;
        self
    }

    /// Whether requests of any method may be sent again (`POST`, `PATCH`), not only idempotent
    /// ones: for APIs whose every call is safe to repeat.
    pub const fn replay_any_method(mut self, any: bool) -> Self {
        self.replay_any_method = any;
        self
    }

    /// The largest body copied to send a request again, in bytes; a larger body, or one whose
    /// length is not known in advance (a stream), is sent once.
    pub const fn max_replay_body_len(mut self, len: u64) -> Self {
        self.max_replay_body_len = len;
        self
    }

    /// Lets tokens go to APIs over plain `http` on any host, not only a loopback one: whoever
    /// can see the traffic (a shared network, a proxy, a sidecar's neighbour) can then use the
    /// token. By default a request to a plain-`http` URI whose host is not a loopback address
    /// (`127.0.0.0/8`, `::1`, `localhost`) fails with [`CallError::PlainHttp`] and is never
    /// sent, as a token URL does ([`TokenUrl::insecure_allow_http`](crate::TokenUrl::insecure_allow_http)).
    pub const fn insecure_allow_http(mut self, allow: bool) -> Self {
        self.insecure_allow_http = allow;
        self
    }

    /// Whether a request to `uri` may carry a token: `https`, plain `http` to a loopback host,
    /// or plain `http` anywhere under [`insecure_allow_http`](Self::insecure_allow_http). A
    /// relative URI (no scheme, as a tonic channel's requests have: the channel holds the
    /// origin) is not judged here.
    #[must_use]
    pub fn allows(&self, uri: &Uri) -> bool {
        self.allows_destination(uri.scheme_str(), uri.host())
    }

    /// [`allows`](Self::allows), from the scheme and host as a request holds them, so that a
    /// driver need not make a `Uri` of a request that is not one.
    pub(crate) fn allows_destination(&self, scheme: Option<&str>, host: Option<&str>) -> bool {
        match scheme {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {
                self.insecure_allow_http || host.is_some_and(is_loopback)
            }
            _ => true,
        }
    }

    /// Whether a refused token makes the request go out again.
    #[must_use]
    pub const fn retries_rejected_token(&self) -> bool {
        self.retry_rejected_token
    }

    /// Whether a DPoP nonce request makes the request go out again.
    #[must_use]
    pub const fn retries_dpop_nonce(&self) -> bool {
        self.retry_dpop_nonce
    }

    /// Whether requests of any method may be sent again.
    #[must_use]
    pub const fn replays_any_method(&self) -> bool {
        self.replay_any_method
    }

    /// The largest body copied to send a request again.
    #[must_use]
    pub const fn max_replay_body(&self) -> u64 {
        self.max_replay_body_len
    }
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a request the API refused is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// The API refused the token (`error="invalid_token"`, a bare `Bearer` or `DPoP` challenge,
    /// or gRPC's `UNAUTHENTICATED`): the request goes again with a new token.
    InvalidToken,
    /// The API asked for a DPoP nonce (RFC 9449 §9): the request goes again with it.
    UseDpopNonce,
    /// The API refused the DPoP proof, not the token (`DPoP error="invalid_dpop_proof"`, RFC
    /// 9449 §7.1: a proof whose time its clock disputes, say): the request goes again with a
    /// fresh proof, and the token is kept.
    InvalidDpopProof,
}

impl RetryReason {
    /// The reason as a short name: `invalid_token`, `use_dpop_nonce`, `invalid_dpop_proof`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InvalidDpopProof => "invalid_dpop_proof",
        }
    }
}

/// Why a request the API refused is not sent again, and its answer goes to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotRetried {
    /// The [`CallPolicy`] turns this retry off.
    RetriesOff,
    /// The request was already sent again for the same reason.
    AlreadyRetried,
    /// The method is not idempotent and the policy does not replay every method.
    MethodNotIdempotent,
    /// The body is a stream, or larger than the policy's limit: it cannot go twice.
    BodyNotReplayable,
}

impl NotRetried {
    /// The reason as a short name: `retries_off`, `already_retried`, `method_not_idempotent`,
    /// `body_not_replayable`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::RetriesOff => "retries_off",
            Self::AlreadyRetried => "already_retried",
            Self::MethodNotIdempotent => "method_not_idempotent",
            Self::BodyNotReplayable => "body_not_replayable",
        }
    }
}

/// What to do with the API's answer to one attempt of an [`AuthorizedCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallStep {
    /// Give the answer to the caller: the API accepted the token, or refused the call for a
    /// reason a new token does not change (a 403, `insufficient_scope`, any other 401).
    Return,
    /// The API refused the call for the token's sake, and the request is not sent again: drop
    /// the token from the source if `invalidate` says so, and give the answer to the caller.
    Refused {
        /// Whether the token sent is the one at fault, to drop from the source.
        invalidate: bool,
        /// What the API refused: the token, or its DPoP proof.
        reason: RetryReason,
        /// Why the request does not go again.
        not_retried: NotRetried,
    },
    /// Send the request again, with a new token (after dropping the one sent) when `invalidate`
    /// says so, and with the DPoP nonce the API sent (the caller's [`DpopNonces`](crate::dpop::DpopNonces)
    /// has it after `observe`).
    Retry {
        /// Whether the token sent is the one at fault, to drop from the source.
        invalidate: bool,
        /// Why it goes again.
        reason: RetryReason,
    },
}

/// One authorized call: an API request that carries a token, and the rules for sending it
/// again when the API refuses it, by a [`CallPolicy`].
///
/// The driver puts a token on the request ([`present_token`]), sends it, hands the answer's status
/// and headers to [`handle_response`](Self::handle_response), and does what the [`CallStep`]
/// says. Every request is sent at most three times: once, once more for its DPoP proof (a
/// nonce, or a refused proof), once more for a new token; each retry at most once.
///
/// ```
/// use client_credentials::call::{AuthorizedCall, CallPolicy, CallStep, RetryReason};
/// use client_credentials::http::{HeaderMap, Method, StatusCode};
/// use client_credentials::token::TokenType;
///
/// let mut call = AuthorizedCall::new(&CallPolicy::new(), &Method::GET, Some(0));
/// assert!(call.keeps_copy()); // keep a copy of the request: it may go twice
///
/// let mut headers = HeaderMap::new();
/// headers.insert("www-authenticate", r#"Bearer error="invalid_token""#.parse()?);
/// assert_eq!(
///     call.handle_response(&TokenType::Bearer, StatusCode::UNAUTHORIZED, &headers),
///     CallStep::Retry { invalidate: true, reason: RetryReason::InvalidToken },
/// );
/// // The second refusal goes to the caller.
/// assert!(matches!(
///     call.handle_response(&TokenType::Bearer, StatusCode::UNAUTHORIZED, &headers),
///     CallStep::Refused { invalidate: true, .. }
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AuthorizedCall {
    policy: CallPolicy,
    /// Why the request cannot go twice, if it cannot.
    not_replayable: Option<NotRetried>,
    retried_token: bool,
    /// A retry for the proof: a nonce asked for, or a proof refused. One between them, so that
    /// a request goes at most three times.
    retried_proof: bool,
}

impl AuthorizedCall {
    /// A call of `method`, whose body is `body_len` bytes long (`None`: not known in advance, as
    /// for a stream).
    #[must_use]
    pub fn new(policy: &CallPolicy, method: &Method, body_len: Option<u64>) -> Self {
        let not_replayable = if !policy.replay_any_method && !is_idempotent(method) {
            Some(NotRetried::MethodNotIdempotent)
        } else if body_len.is_none_or(|len| len > policy.max_replay_body_len) {
            Some(NotRetried::BodyNotReplayable)
        } else {
            None
        };
        Self {
            policy: *policy,
            not_replayable,
            retried_token: false,
            retried_proof: false,
        }
    }

    /// Whether the driver should keep a copy of the request to send it again: the method and
    /// body allow a replay, and some retry is on.
    #[must_use]
    pub fn keeps_copy(&self) -> bool {
        self.not_replayable.is_none()
            && (self.policy.retry_rejected_token || self.policy.retry_dpop_nonce)
    }

    /// Tells the call that the body could not be copied after all (a body type that cannot be
    /// cloned): it is sent once.
    pub fn copy_failed(&mut self) {
        self.not_replayable
            .get_or_insert(NotRetried::BodyNotReplayable);
    }

    /// What to do with the API's answer to the attempt just sent with a token of type
    /// `presented`.
    ///
    /// Only a challenge of the scheme the token was presented with counts (`Bearer` for a bearer
    /// token, `DPoP` for a DPoP-bound one, RFC 9449 §7.1): a `DPoP` challenge beside a bearer
    /// token's call, or a `Bearer` one beside a DPoP-bound token's, says nothing about the token
    /// sent. Of that scheme, `invalid_token` (or no error at all) refuses the token, and wins
    /// over the rest; a DPoP-bound token's `use_dpop_nonce` (with a `DPoP-Nonce`) and
    /// `invalid_dpop_proof` refuse the proof, which goes again, fresh, and keep the token.
    ///
    /// The answer is taken as from the origin the request was sent to; when the HTTP client may
    /// have followed a redirect, use [`handle_response_from`](Self::handle_response_from).
    pub fn handle_response(
        &mut self,
        presented: &TokenType,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> CallStep {
        self.handle_response_from(presented, status, headers, None, None)
    }

    /// [`handle_response`](Self::handle_response), for an answer that may come from another
    /// origin than `sent_to`, the request's: its final URI's, `answered_from`, when the HTTP
    /// client followed a redirect to get it (reqwest's `Response::url`).
    ///
    /// An answer from another origin says nothing about the token sent there: whatever it
    /// says, it goes to the caller as it came ([`CallStep::Return`]), keeps the token and sends
    /// nothing again. An origin not known (`None`) is taken as the request's.
    ///
    /// ```
    /// use client_credentials::call::{AuthorizedCall, CallPolicy, CallStep, Origin};
    /// use client_credentials::http::{HeaderMap, Method, StatusCode};
    /// use client_credentials::token::TokenType;
    ///
    /// let mut call = AuthorizedCall::new(&CallPolicy::new(), &Method::GET, Some(0));
    /// let mut headers = HeaderMap::new();
    /// headers.insert("www-authenticate", r#"Bearer error="invalid_token""#.parse()?);
    /// let sent = "https://api.example.com/a".parse()?;
    /// let redirected = "https://cdn.example.net/a".parse()?; // where a 307 sent the client
    /// let step = call.handle_response_from(
    ///     &TokenType::Bearer,
    ///     StatusCode::UNAUTHORIZED,
    ///     &headers,
    ///     Origin::of(&sent),
    ///     Origin::of(&redirected),
    /// );
    /// assert_eq!(step, CallStep::Return); // the other origin's refusal, not the API's
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle_response_from(
        &mut self,
        presented: &TokenType,
        status: StatusCode,
        headers: &HeaderMap,
        sent_to: Option<Origin<'_>>,
        answered_from: Option<Origin<'_>>,
    ) -> CallStep {
        let (reason, invalidate, enabled, retried) = match judge(presented, status, headers) {
            Verdict::Accepted => return CallStep::Return,
            Verdict::NonceRequested => (
                RetryReason::UseDpopNonce,
                false,
                self.policy.retry_dpop_nonce,
                &mut self.retried_proof,
            ),
            Verdict::ProofRejected => (
                RetryReason::InvalidDpopProof,
                false,
                self.policy.retry_dpop_nonce,
                &mut self.retried_proof,
            ),
            Verdict::TokenRejected => (
                RetryReason::InvalidToken,
                true,
                self.policy.retry_rejected_token,
                &mut self.retried_token,
            ),
        };
        // Compared only for an answer that would change something: most answers are not.
        if !from_destination(sent_to, answered_from) {
            return CallStep::Return;
        }
        let not_retried = if !enabled {
            Some(NotRetried::RetriesOff)
        } else if *retried {
            Some(NotRetried::AlreadyRetried)
        } else {
            self.not_replayable
        };
        match not_retried {
            Some(not_retried) => CallStep::Refused {
                invalidate,
                reason,
                not_retried,
            },
            None => {
                *retried = true;
                CallStep::Retry { invalidate, reason }
            }
        }
    }

    /// Whether the `DPoP-Nonce` of an answer is to be kept for `sent_to`, the origin the
    /// request was sent to ([`DpopNonces::observe`](crate::dpop::DpopNonces::observe)): only on a
    /// call made with a DPoP-bound token (a nonce goes only into a proof), and only from an
    /// answer of that origin (`answered_from`, as for
    /// [`handle_response_from`](Self::handle_response_from)): another origin's nonce is not
    /// the API's.
    #[must_use]
    pub fn keeps_dpop_nonce(
        &self,
        presented: &TokenType,
        headers: &HeaderMap,
        sent_to: Option<Origin<'_>>,
        answered_from: Option<Origin<'_>>,
    ) -> bool {
        *presented == TokenType::DPoP
            && headers.contains_key(DPOP_NONCE)
            && from_destination(sent_to, answered_from)
    }

    /// Whether the answer given to the caller ([`CallStep::Return`]) may yet refuse the token in
    /// its trailers, to be read by [`trailers_refuse_token`] at the end of its body: a gRPC call
    /// that began normally (200, `content-type: application/grpc…`, no `grpc-status` in the
    /// headers, which would have been judged already) from the origin the request was sent to.
    #[must_use]
    pub fn watches_trailers(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        sent_to: Option<Origin<'_>>,
        answered_from: Option<Origin<'_>>,
    ) -> bool {
        status == StatusCode::OK
            && headers
                .get(CONTENT_TYPE)
                .is_some_and(|value| is_grpc(value.as_bytes()))
            && !headers.contains_key(GRPC_STATUS)
            && from_destination(sent_to, answered_from)
    }
}

/// Whether a `content-type` is gRPC's: `application/grpc`, with any suffix (`+proto`,
/// `-web`) or parameters. A body whose trailers never come is watched for nothing, and costs
/// little; one missed keeps a refused token.
fn is_grpc(content_type: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    content_type
        .get(..GRPC.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC))
}

/// What an API's answer says about the token it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing against the token: the answer goes to the caller, whatever it is.
    Accepted,
    /// The token is invalid, expired or revoked (RFC 6750 §3.1), or gRPC says `UNAUTHENTICATED`.
    TokenRejected,
    /// The DPoP proof lacks the resource server's nonce (RFC 9449 §9).
    NonceRequested,
    /// The DPoP proof was refused, not the token (`invalid_dpop_proof`).
    ProofRejected,
}

/// What an answer to a call made with a token of type `presented` says about that token.
fn judge(presented: &TokenType, status: StatusCode, headers: &HeaderMap) -> Verdict {
    if status == StatusCode::UNAUTHORIZED {
        let dpop = *presented == TokenType::DPoP;
        let scheme = if dpop { "DPoP" } else { "Bearer" };
        let mut verdict = Verdict::Accepted;
        for challenge in Challenge::parse_all(headers) {
            // Another scheme's challenge is about another credential than the one sent.
            if !challenge.scheme().eq_ignore_ascii_case(scheme) {
                continue;
            }
            match challenge.param("error") {
                // `invalid_token`, or no error at all (a server that does not say why): the
                // token is refused, whatever else the answer says.
                None | Some("invalid_token") => return Verdict::TokenRejected,
                Some("use_dpop_nonce")
                    if dpop && resource_dpop_retry_nonce(status, headers).is_some() =>
                {
                    verdict = Verdict::NonceRequested;
                }
                Some("invalid_dpop_proof") if dpop && verdict == Verdict::Accepted => {
                    verdict = Verdict::ProofRejected;
                }
                // `invalid_request`, `insufficient_scope`: not about the token.
                _ => {}
            }
        }
        return verdict;
    } else if grpc_unauthenticated(headers) {
        return Verdict::TokenRejected;
    }
    Verdict::Accepted
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Puts `token` on a request of `method` to `uri`, as `client` (the client it was issued to)
/// presents it: `Authorization: Bearer …` for a bearer token (RFC 6750 §2.1); for a DPoP-bound
/// one `Authorization: DPoP …` and a fresh `DPoP` proof for this method and URI, with the
/// token's hash in `ath` and the attempt's nonce, signed by the client's key (RFC 9449 §7.1).
/// The `Authorization` value and the proof are marked sensitive; both replace any header there.
///
/// Make a new [`Attempt`] for every attempt, from the resource server's nonce store
/// ([`DpopNonces::attempt`](crate::dpop::DpopNonces::attempt)).
///
/// # Errors
///
/// [`Error::TokenNotHeaderSafe`] if the token cannot be a header; [`Error::DpopKeyMissing`] for
/// a DPoP-bound token and a client without a DPoP key; the errors of the DPoP proof
/// (`DpopKey::proof`, feature `jwt`).
pub fn present_token(
    headers: &mut HeaderMap,
    method: &Method,
    uri: &Uri,
    token: &Token,
    client: &ClientCredentials,
    attempt: &Attempt,
) -> Result<(), Error> {
    present_token_lazily(
        headers,
        method,
        || uri,
        token,
        client,
        || Ok(attempt.clone()),
    )
}

/// [`present_token`] for a driver that presents many requests: the attempt is made only for a
/// token that signs something (a DPoP proof), so a bearer token costs no clock read, no random
/// bytes and no nonce lookup; and a token presented as it is gives the `Authorization` value it
/// made the first time ([`Token::authorization_header`] keeps it in the token).
pub(crate) fn present_token_lazily<'u>(
    headers: &mut HeaderMap,
    method: &Method,
    uri: impl FnOnce() -> &'u Uri,
    token: &Token,
    client: &ClientCredentials,
    attempt: impl FnOnce() -> Result<Attempt, Error>,
) -> Result<(), Error> {
    if *token.token_type() == TokenType::DPoP {
        #[cfg(feature = "jwt")]
        if let Some(key) = client.dpop_key() {
            let attempt = attempt()?;
            return key.authorize_headers(headers, method, uri(), token.access_token(), &attempt);
        }
        let _ = (method, uri, client, attempt);
        return Err(Error::DpopKeyMissing);
    }
    headers.insert(AUTHORIZATION, token.authorization_header()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::client_at;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn challenge(value: &str) -> HeaderMap {
        headers(&[("www-authenticate", value)])
    }

    const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

    const BEARER: &TokenType = &TokenType::Bearer;
    const DPOP: &TokenType = &TokenType::DPoP;

    #[test]
    fn the_401s_that_mean_the_token_rfc6750_3_1() {
        for (presented, rejected) in [
            (
                BEARER,
                r#"Bearer realm="api", error="invalid_token", error_description="expired""#,
            ),
            (BEARER, r#"Bearer realm="api""#),
            (BEARER, "Bearer"),
            (DPOP, r#"DPoP algs="ES256", error="invalid_token""#),
            (DPOP, r#"DPoP algs="ES256""#),
            (BEARER, r#"Basic realm="x", Bearer error="invalid_token""#),
        ] {
            assert_eq!(
                judge(presented, UNAUTHORIZED, &challenge(rejected)),
                Verdict::TokenRejected,
                "{rejected}"
            );
        }
        for other in [
            r#"Bearer error="invalid_request""#,
            r#"Bearer error="insufficient_scope", scope="admin""#,
            r#"DPoP error="invalid_request""#,
            r#"Basic realm="x""#,
            r#"Negotiate"#,
        ] {
            for presented in [BEARER, DPOP] {
                assert_eq!(
                    judge(presented, UNAUTHORIZED, &challenge(other)),
                    Verdict::Accepted,
                    "{other}"
                );
            }
        }
        for presented in [BEARER, DPOP] {
            assert_eq!(
                judge(presented, UNAUTHORIZED, &HeaderMap::new()),
                Verdict::Accepted,
                "no challenge"
            );
            let forbidden =
                challenge(r#"Bearer error="invalid_token", DPoP error="invalid_token""#);
            assert_eq!(
                judge(presented, StatusCode::FORBIDDEN, &forbidden),
                Verdict::Accepted,
                "a 403"
            );
            assert_eq!(
                judge(presented, StatusCode::OK, &forbidden),
                Verdict::Accepted
            );
        }
    }

    #[test]
    fn only_the_challenge_of_the_scheme_presented_counts_rfc9449_7_1() {
        // Another scheme's refusal is about another credential than the one sent.
        let dpop_refusal = challenge(r#"DPoP error="invalid_token""#);
        assert_eq!(
            judge(BEARER, UNAUTHORIZED, &dpop_refusal),
            Verdict::Accepted
        );
        let bare_bearer = challenge(r#"Bearer realm="api""#);
        assert_eq!(judge(DPOP, UNAUTHORIZED, &bare_bearer), Verdict::Accepted);

        // A resource server whose clock is off refuses the proof, beside a bare Bearer
        // challenge: a proof problem, not a refusal of the DPoP-bound token.
        let proof =
            challenge(r#"Bearer realm="api", DPoP algs="ES256", error="invalid_dpop_proof""#);
        assert_eq!(judge(DPOP, UNAUTHORIZED, &proof), Verdict::ProofRejected);
        let mut call = AuthorizedCall::new(&CallPolicy::new(), &Method::GET, Some(0));
        assert_eq!(
            call.handle_response(DPOP, UNAUTHORIZED, &proof),
            CallStep::Retry {
                invalidate: false,
                reason: RetryReason::InvalidDpopProof
            }
        );
        assert_eq!(
            call.handle_response(DPOP, UNAUTHORIZED, &proof),
            CallStep::Refused {
                invalidate: false,
                reason: RetryReason::InvalidDpopProof,
                not_retried: NotRetried::AlreadyRetried
            },
            "once"
        );

        // A bearer token's call: a DPoP nonce request is not for it, and never masks the
        // refusal of the token beside it.
        let nonce_and_revoked = headers(&[
            ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
            ("www-authenticate", r#"Bearer error="invalid_token""#),
            ("dpop-nonce", "n-1"),
        ]);
        assert_eq!(
            judge(BEARER, UNAUTHORIZED, &nonce_and_revoked),
            Verdict::TokenRejected
        );
        let nonce_only = headers(&[
            ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
            ("dpop-nonce", "n-1"),
        ]);
        assert_eq!(judge(BEARER, UNAUTHORIZED, &nonce_only), Verdict::Accepted);
        // For a DPoP-bound token, a refusal of the token wins over a nonce request.
        let both = headers(&[
            ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
            ("www-authenticate", r#"DPoP error="invalid_token""#),
            ("dpop-nonce", "n-1"),
        ]);
        assert_eq!(judge(DPOP, UNAUTHORIZED, &both), Verdict::TokenRejected);
    }

    #[test]
    fn a_nonce_request_rfc9449_9() {
        let asked = headers(&[
            ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
            ("dpop-nonce", "n-1"),
        ]);
        assert_eq!(judge(DPOP, UNAUTHORIZED, &asked), Verdict::NonceRequested);
        let without_nonce = challenge(r#"DPoP error="use_dpop_nonce""#);
        assert_eq!(
            judge(DPOP, UNAUTHORIZED, &without_nonce),
            Verdict::Accepted,
            "nothing to retry with"
        );
    }

    #[test]
    fn grpc_unauthenticated_rejects_the_token() {
        let unauthenticated = headers(&[("grpc-status", "16")]);
        let permission_denied = headers(&[("grpc-status", "7")]);
        for presented in [BEARER, DPOP] {
            assert_eq!(
                judge(presented, StatusCode::OK, &unauthenticated),
                Verdict::TokenRejected
            );
            assert_eq!(
                judge(presented, StatusCode::OK, &permission_denied),
                Verdict::Accepted
            );
        }
    }

    #[test]
    fn origins_rfc6454_4() {
        let same = |a: &str, b: &str| {
            let (a, b): (Uri, Uri) = (a.parse().unwrap(), b.parse().unwrap());
            Origin::of(&a) == Origin::of(&b)
        };
        let api = "https://api.example.com/things?page=2";
        for other in [
            "https://api.example.com/other",
            "HTTPS://API.Example.COM:443/",
            "https://api.example.com",
        ] {
            assert!(same(api, other), "{other}");
        }
        for other in [
            "http://api.example.com/things",
            "https://api.example.com:8443/things",
            "https://login.example.com/things",
            "https://api.example.com.evil.example/things",
        ] {
            assert!(!same(api, other), "{other}");
        }
        assert!(same("http://127.0.0.1/", "http://127.0.0.1:80/"));
        assert!(!same("http://127.0.0.1:8080/", "http://127.0.0.1:8081/"));
        assert!(same("http://[::1]:8080/a", "http://[::1]:8080/b"));
        assert_eq!(Origin::of(&Uri::from_static("/relative")), None);
        let explicit = Origin::new("https", "api.example.com", None);
        assert_eq!(
            (explicit.scheme(), explicit.host(), explicit.port()),
            ("https", "api.example.com", Some(443))
        );
        let uri = Uri::from_static("https://API.example.com/");
        assert_eq!(Some(explicit), Origin::of(&uri));
        assert_eq!(Origin::new("ftp", "h", None).port(), None);
    }

    #[test]
    fn an_answer_from_another_origin_speaks_of_no_token() {
        let sent: Uri = "https://api.example.com/things".parse().unwrap();
        let moved: Uri = "HTTPS://API.example.com:443/v2/things".parse().unwrap();
        let elsewhere: Uri = "https://cdn.example.net/things".parse().unwrap();
        let (sent, moved, elsewhere) = (
            Origin::of(&sent),
            Origin::of(&moved),
            Origin::of(&elsewhere),
        );
        let nonce = headers(&[
            ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
            ("dpop-nonce", "n-1"),
        ]);
        for (presented, status, answer) in [
            (
                BEARER,
                UNAUTHORIZED,
                challenge(r#"Bearer error="invalid_token""#),
            ),
            (BEARER, UNAUTHORIZED, challenge(r#"Bearer realm="api""#)),
            (
                DPOP,
                UNAUTHORIZED,
                challenge(r#"DPoP error="invalid_token""#),
            ),
            (
                DPOP,
                UNAUTHORIZED,
                challenge(r#"DPoP error="invalid_dpop_proof""#),
            ),
            (DPOP, UNAUTHORIZED, nonce.clone()),
            (BEARER, StatusCode::OK, headers(&[("grpc-status", "16")])),
        ] {
            let mut call = AuthorizedCall::new(&CallPolicy::new(), &Method::GET, Some(0));
            assert_eq!(
                call.handle_response_from(presented, status, &answer, sent, elsewhere),
                CallStep::Return,
                "{answer:?}"
            );
            // Nothing was spent on it: the API's own refusal still gets its retry.
            for answered_from in [moved, None] {
                assert!(
                    matches!(
                        call.clone().handle_response_from(
                            presented,
                            status,
                            &answer,
                            sent,
                            answered_from
                        ),
                        CallStep::Retry { .. }
                    ),
                    "{answer:?} from {answered_from:?}"
                );
            }
            assert!(matches!(
                call.handle_response_from(presented, status, &answer, None, elsewhere),
                CallStep::Retry { .. }
            ));
        }

        let call = AuthorizedCall::new(&CallPolicy::new(), &Method::GET, Some(0));
        assert!(call.keeps_dpop_nonce(DPOP, &nonce, sent, moved));
        assert!(call.keeps_dpop_nonce(DPOP, &nonce, sent, None));
        assert!(
            !call.keeps_dpop_nonce(DPOP, &nonce, sent, elsewhere),
            "another origin's nonce"
        );
        assert!(
            !call.keeps_dpop_nonce(BEARER, &nonce, sent, moved),
            "no proof to put it in"
        );
        assert!(!call.keeps_dpop_nonce(DPOP, &HeaderMap::new(), sent, moved));
    }

    #[test]
    fn grpc_unauthenticated_in_the_trailers_rejects_the_token() {
        let call = AuthorizedCall::new(&CallPolicy::new(), &Method::POST, None);
        let started = |content_type| headers(&[("content-type", content_type)]);
        for content_type in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC; charset=utf-8",
            "application/grpc-web+proto",
        ] {
            assert!(
                call.watches_trailers(StatusCode::OK, &started(content_type), None, None),
                "{content_type}"
            );
        }
        let json = started("application/json");
        assert!(!call.watches_trailers(StatusCode::OK, &json, None, None));
        assert!(!call.watches_trailers(StatusCode::OK, &HeaderMap::new(), None, None));
        let grpc = started("application/grpc");
        assert!(
            !call.watches_trailers(UNAUTHORIZED, &grpc, None, None),
            "not begun"
        );
        // A "Trailers-Only" answer was judged by its headers already.
        let trailers_only = headers(&[("content-type", "application/grpc"), ("grpc-status", "16")]);
        assert!(!call.watches_trailers(StatusCode::OK, &trailers_only, None, None));
        let sent: Uri = "https://api.example.com/pkg.Svc/M".parse().unwrap();
        let elsewhere: Uri = "https://other.example.com/pkg.Svc/M".parse().unwrap();
        assert!(
            !call.watches_trailers(
                StatusCode::OK,
                &grpc,
                Origin::of(&sent),
                Origin::of(&elsewhere)
            ),
            "another origin's"
        );

        assert!(trailers_refuse_token(&headers(&[("grpc-status", "16")])));
        for other in ["0", "7", "1", "160"] {
            assert!(
                !trailers_refuse_token(&headers(&[("grpc-status", other)])),
                "{other}"
            );
        }
        assert!(!trailers_refuse_token(&HeaderMap::new()));
    }

    #[test]
    fn each_retry_happens_once() {
        let policy = CallPolicy::new();
        let mut call = AuthorizedCall::new(&policy, &Method::GET, Some(0));
        let nonce = headers(&[
            ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
            ("dpop-nonce", "n"),
        ]);
        let rejected = challenge(r#"DPoP error="invalid_token""#);
        let retry_nonce = CallStep::Retry {
            invalidate: false,
            reason: RetryReason::UseDpopNonce,
        };
        let retry_token = CallStep::Retry {
            invalidate: true,
            reason: RetryReason::InvalidToken,
        };
        assert_eq!(
            call.handle_response(DPOP, UNAUTHORIZED, &nonce),
            retry_nonce
        );
        assert_eq!(
            call.handle_response(DPOP, UNAUTHORIZED, &rejected),
            retry_token
        );
        let again = CallStep::Refused {
            invalidate: false,
            reason: RetryReason::UseDpopNonce,
            not_retried: NotRetried::AlreadyRetried,
        };
        assert_eq!(call.handle_response(DPOP, UNAUTHORIZED, &nonce), again);
        assert_eq!(
            call.handle_response(DPOP, UNAUTHORIZED, &rejected),
            CallStep::Refused {
                invalidate: true,
                reason: RetryReason::InvalidToken,
                not_retried: NotRetried::AlreadyRetried
            }
        );
        assert_eq!(
            call.handle_response(DPOP, StatusCode::OK, &HeaderMap::new()),
            CallStep::Return
        );
    }

    fn bearer(access_token: &str, token_type: &str) -> Token {
        Token {
            access_token: crate::secret::AccessToken::new(access_token),
            token_type: TokenType::parse(token_type),
            expires_in: None,
            sent_at: std::time::SystemTime::UNIX_EPOCH,
            scope: None,
            refresh_token: None,
            extra: serde_json::Map::new(),
            authorization: std::sync::OnceLock::new(),
        }
    }

    #[test]
    fn a_tokens_authorization_value_is_made_once_and_kept() {
        let first = bearer("first-token", "Bearer");
        let value = first.authorization_header().unwrap();
        assert_eq!(value, "Bearer first-token");
        assert!(value.is_sensitive());
        assert_eq!(first.authorization_header().unwrap(), "Bearer first-token");
        assert!(first.authorization.get().is_some(), "kept in the token");
        // Another access token, or the same one of another type, gets its own value.
        assert_eq!(
            bearer("second-token", "Bearer")
                .authorization_header()
                .unwrap(),
            "Bearer second-token"
        );
        assert_eq!(
            bearer("second-token", "MAC")
                .authorization_header()
                .unwrap(),
            "MAC second-token"
        );
        let bad = bearer("bad\ntoken", "Bearer");
        assert!(matches!(
            bad.authorization_header(),
            Err(Error::TokenNotHeaderSafe)
        ));
        // A refused value is not kept.
        assert!(bad.authorization.get().is_none());
        let text = format!("{first:?}");
        assert!(!text.contains("first-token"), "{text}");
    }

    #[test]
    fn present_token_lazily_makes_an_attempt_only_for_a_proof() {
        let client = client_at("https://as.example.com/token", "c", "s");
        let uri: Uri = "https://api.example.com/things".parse().unwrap();
        let token = bearer("t", "Bearer");
        for _ in 0..2 {
            let mut headers = HeaderMap::new();
            present_token_lazily(
                &mut headers,
                &Method::GET,
                || &uri,
                &token,
                &client,
                || panic!("a bearer token needs no attempt"),
            )
            .unwrap();
            assert_eq!(headers[AUTHORIZATION], "Bearer t");
        }
        let mut headers = HeaderMap::new();
        let result = present_token_lazily(
            &mut headers,
            &Method::GET,
            || &uri,
            &bearer("t", "DPoP"),
            &client,
            || Err(Error::ClockBeforeUnixEpoch),
        );
        // Without a key the proof cannot be made, whatever the attempt.
        assert!(matches!(result, Err(Error::DpopKeyMissing)), "{result:?}");
        assert!(headers.is_empty());
    }

    #[test]
    fn what_may_go_twice_rfc9110_9_2_2() {
        let policy = CallPolicy::new();
        let rejected = challenge(r#"Bearer error="invalid_token""#);
        let refused = |not_retried| CallStep::Refused {
            invalidate: true,
            reason: RetryReason::InvalidToken,
            not_retried,
        };
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(
                AuthorizedCall::new(&policy, &method, Some(10)).keeps_copy(),
                "{method}"
            );
        }
        for method in [Method::POST, Method::PATCH] {
            let mut call = AuthorizedCall::new(&policy, &method, Some(10));
            assert!(!call.keeps_copy());
            assert_eq!(
                call.handle_response(BEARER, UNAUTHORIZED, &rejected),
                refused(NotRetried::MethodNotIdempotent)
            );
            let any = policy.replay_any_method(true);
            assert!(AuthorizedCall::new(&any, &method, Some(10)).keeps_copy());
        }
        let mut stream = AuthorizedCall::new(&policy, &Method::PUT, None);
        assert!(!stream.keeps_copy());
        assert_eq!(
            stream.handle_response(BEARER, UNAUTHORIZED, &rejected),
            refused(NotRetried::BodyNotReplayable)
        );
        let limit = CallPolicy::DEFAULT_MAX_REPLAY_BODY_LEN;
        assert!(AuthorizedCall::new(&policy, &Method::PUT, Some(limit)).keeps_copy());
        assert!(!AuthorizedCall::new(&policy, &Method::PUT, Some(limit + 1)).keeps_copy());
        let mut uncopied = AuthorizedCall::new(&policy, &Method::GET, Some(1));
        uncopied.copy_failed();
        assert_eq!(
            uncopied.handle_response(BEARER, UNAUTHORIZED, &rejected),
            refused(NotRetried::BodyNotReplayable)
        );
        let mut off = AuthorizedCall::new(&CallPolicy::no_retries(), &Method::GET, Some(0));
        assert!(!off.keeps_copy());
        assert_eq!(
            off.handle_response(BEARER, UNAUTHORIZED, &rejected),
            refused(NotRetried::RetriesOff)
        );
    }
}
