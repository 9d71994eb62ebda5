//! The attempts at one token request, for whoever sends it: each built with the server's latest
//! DPoP nonce, and one more when the server asks for a nonce (RFC 9449 §8). The caller reads
//! the clock and the random source and does the HTTP; this decides everything else.
//!
//! [`TokenFetch`] is the state machine; [`fetch_token`] is the one loop that drives it over a
//! [`Transport`], for every adapter of this crate and for any HTTP client of yours.

use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;

use crate::clock::{is_refusal_about_time, shift_by_correction};
use crate::error::Error;
use crate::error::oauth::ErrorCode;
use crate::observe::{self, FetchRecord};
use crate::request::TokenRequest;
use crate::secret::ClientAssertion;
use crate::secret::RequestBody;
use crate::session::Session;
use crate::token::Token;

/// What to do after a response, as [`TokenFetch::handle_response`] says.
#[derive(Debug)]
#[must_use = "a step says whether the exchange is over or the request must be sent again"]
pub enum FetchStep {
    /// The server issued the token: the exchange is over.
    Done(Token),
    /// The server refused the DPoP proof for want of a nonce and sent one (RFC 9449 §8), or
    /// refused the attempt's time and said its own in `Date` (see
    /// [`ServerClock`](crate::fetch::ServerClock)): build the next attempt with
    /// [`TokenFetch::http_request`] and send it. Said at most once for each reason per
    /// exchange.
    Retry,
}

/// The attempts at one token request: what an adapter (or your own HTTP loop) does with a
/// [`TokenRequest`], minus the IO.
///
/// For every attempt, [`http_request`](Self::http_request) builds the request from the time and
/// 32 fresh random bytes you pass in, with the server's latest DPoP nonce from the
/// [`Session`]'s store, so a JWT client signs a new assertion and a DPoP client a new proof
/// every time. [`handle_response`](Self::handle_response) remembers the nonce the response
/// brings and the server's clock its `Date` shows ([`ServerClock`](crate::fetch::ServerClock)),
/// parses it, and says whether to send once more: for `use_dpop_nonce`, once, and for a
/// refusal of the attempt's time whose `Date` corrects it, once
/// ([`MAX_ATTEMPTS`](Self::MAX_ATTEMPTS) in all). Each attempt's JWTs are signed at the
/// server's time (the time passed in, corrected by the session's
/// [`server_clock`](Session::server_clock)); the token's expiry is counted from the caller's
/// time of the attempt that got it. The session is yours: keep one per client across
/// exchanges, so that the next starts with what this one learnt.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
/// use client_credentials::fetch::{FetchStep, Session, TokenFetch};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/oauth/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// );
/// let request = client.token_request().scope("read:things").build()?;
/// # let send = |_: http::Request<client_credentials::fetch::RequestBody>| {
/// #     http::Response::builder()
/// #         .status(200)
/// #         .header("content-type", "application/json")
/// #         .body(r#"{"access_token":"eyJ...","token_type":"Bearer","expires_in":3600}"#)
/// # };
///
/// let session = Session::new(); // kept for the client's next exchanges
/// let mut exchange = TokenFetch::new(&request, &session);
/// let token = loop {
///     # let (now, entropy) = (SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), [7; 32]);
///     // let now = SystemTime::now();
///     // let entropy = || { let mut bytes = [0; 32]; getrandom::fill(&mut bytes)?; Ok(bytes) };
///     let http_request = exchange.http_request(now, || Ok(entropy))?;
///     let response = send(http_request)?; // with any HTTP client
///     match exchange.handle_response(&response)? {
///         FetchStep::Done(token) => break token,
///         FetchStep::Retry => continue,
///     }
/// };
/// assert_eq!(token.scope(), Some("read:things"));
/// assert_eq!(exchange.attempts(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "an exchange does nothing until its request is built and sent"]
pub struct TokenFetch<'a> {
    request: &'a TokenRequest,
    session: &'a Session,
    /// When the attempt awaiting its response was made, by the caller's clock.
    sent_at: Option<SystemTime>,
    /// The server-clock correction that attempt was built with, in milliseconds.
    correction: i64,
    attempts: u8,
    nonce_retried: bool,
    clock_retried: bool,
    proof_retried: bool,
}

impl<'a> TokenFetch<'a> {
    /// The most attempts an exchange makes: the first, one with the server's DPoP nonce, and
    /// one on the server's time after a refusal of the attempt's.
    pub const MAX_ATTEMPTS: u8 = 3;

    /// An exchange for `request` in `session`: it takes the DPoP nonces and the server's clock
    /// from the session and keeps what the responses teach it there, so that later exchanges in
    /// the same session start with the server's nonce and on its time.
    pub fn new(request: &'a TokenRequest, session: &'a Session) -> Self {
        Self {
            request,
            session,
            sent_at: None,
            correction: 0,
            attempts: 0,
            nonce_retried: false,
            clock_retried: false,
            proof_retried: false,
        }
    }

    /// The HTTP request for the next attempt, made at `now`, with 32 bytes from `entropy` for
    /// the `jti` of its JWTs and the server's latest nonce for its DPoP proof
    /// ([`TokenRequest::http_request`]).
    ///
    /// Read `now` just before sending: the token's expiry is counted from it. `entropy` must
    /// give fresh bytes from a cryptographically secure source (see
    /// [`Attempt::new`](crate::Attempt::new)); it is called only when the attempt signs
    /// something ([`TokenRequest::signs_each_attempt`]), so a client with a static secret
    /// costs no read of the random source.
    ///
    /// # Errors
    ///
    /// The error of `entropy`; as [`TokenRequest::http_request`]: [`Error::Signing`] if a
    /// signer fails, [`Error::ClockBeforeUnixEpoch`] if `now` is before 1970.
    pub fn http_request(
        &mut self,
        now: SystemTime,
        entropy: impl FnOnce() -> Result<[u8; 32], Error>,
    ) -> Result<http::Request<RequestBody>, Error> {
        self.build(now, entropy, None)
    }

    /// As [`http_request`](Self::http_request), with the attempt's assertion from the client's
    /// [`AssertionSource`](crate::auth::AssertionSource) (awaited at `now` by the caller, as
    /// [`fetch_token`] does; see [`TokenRequest::http_request_with_assertion`]).
    ///
    /// # Errors
    ///
    /// As [`http_request`](Self::http_request).
    pub fn http_request_with_assertion(
        &mut self,
        now: SystemTime,
        entropy: impl FnOnce() -> Result<[u8; 32], Error>,
        assertion: &ClientAssertion,
    ) -> Result<http::Request<RequestBody>, Error> {
        self.build(now, entropy, Some(assertion))
    }

    fn build(
        &mut self,
        now: SystemTime,
        entropy: impl FnOnce() -> Result<[u8; 32], Error>,
        assertion: Option<&ClientAssertion>,
    ) -> Result<http::Request<RequestBody>, Error> {
        // Nothing reads the bytes of an attempt that signs nothing.
        let entropy = if self.request.signs_each_attempt() {
            entropy()?
        } else {
            [0; 32]
        };
        // The JWTs are on the server's time; the token's lifetime counts from the caller's.
        let correction = self.session.server_clock().correction_millis();
        let attempt = self.session.dpop_nonces().attempt(
            self.request.client().token_url().as_uri(),
            shift_by_correction(now, correction),
            entropy,
        );
        let request = match assertion {
            Some(assertion) => self
                .request
                .http_request_with_assertion(&attempt, assertion)?,
            None => self.request.http_request(&attempt)?,
        };
        self.sent_at = Some(now);
        self.correction = correction;
        self.attempts = self.attempts.saturating_add(1);
        Ok(request)
    }

    /// Reads the response to the last attempt: remembers the server's DPoP nonce if it sent
    /// one (on any response, success or error) and takes its `Date` as a sample of the
    /// server's clock ([`ServerClock::observe`](crate::fetch::ServerClock::observe)), then parses the response by the client's
    /// rules, counting the token's expiry from the attempt's time.
    ///
    /// # Errors
    ///
    /// Every error of [`TokenRequest::parse_response`], including `use_dpop_nonce` once the
    /// retry is spent; [`Error::NoAttemptAwaitingResponse`] if no attempt awaits a response (call
    /// [`http_request`](Self::http_request) first, and hand in each response once).
    pub fn handle_response(
        &mut self,
        response: &http::Response<impl AsRef<[u8]>>,
    ) -> Result<FetchStep, Error> {
        let sent_at = self
            .sent_at
            .take()
            .ok_or(Error::NoAttemptAwaitingResponse)?;
        self.session.dpop_nonces().observe(
            self.request.client().token_url().as_uri(),
            response.headers(),
        );
        let clock = self.session.server_clock();
        clock.observe(sent_at, response.headers());
        match self.request.parse_response(response, sent_at) {
            Ok(token) => Ok(FetchStep::Done(token)),
            Err(error) if error.dpop_retry_nonce().is_some() && !self.nonce_retried => {
                self.nonce_retried = true;
                Ok(FetchStep::Retry)
            }
            // Worth another attempt only if the server's `Date` corrects the time it refused.
            Err(error)
                if !self.clock_retried
                    && is_refusal_about_time(&error)
                    && clock.adopt(sent_at, response.headers())
                    && clock.correction_millis() != self.correction =>
            {
                self.clock_retried = true;
                Ok(FetchStep::Retry)
            }
            // A refused DPoP proof, for no reason this client can correct (a server whose clock
            // ticked past the proof's `iat` a moment late, say): once more, with a fresh proof.
            Err(error)
                if !self.proof_retried
                    && self.request.client().inner().dpop_thumbprint().is_some()
                    && error
                        .oauth()
                        .is_some_and(|oauth| *oauth.code() == ErrorCode::InvalidDpopProof) =>
            {
                self.proof_retried = true;
                Ok(FetchStep::Retry)
            }
            Err(error) => Err(error),
        }
    }

    /// How many attempts have been built.
    #[must_use]
    pub fn attempts(&self) -> u8 {
        self.attempts
    }

    /// The token request being exchanged.
    #[must_use]
    pub fn request(&self) -> &'a TokenRequest {
        self.request
    }

    /// The session the exchange runs in.
    #[must_use]
    pub fn session(&self) -> &'a Session {
        self.session
    }
}

/// What the core may not read itself, handed to [`fetch_token`]: the wall clock and a
/// cryptographically secure random source, read for each attempt.
///
/// [`SystemEnvironment`](crate::fetch::SystemEnvironment) (feature `token-source`) reads the
/// system's, as every adapter and token source of this crate does; implement it yourself
/// without that feature, or to fix time and randomness in a test.
pub trait Environment {
    /// The time of an attempt, read once per attempt, just before it is built and sent: the
    /// token's [`sent_at`](Token::sent_at), and, corrected by the session's
    /// [`ServerClock`](crate::fetch::ServerClock), its JWTs' `iat`.
    fn now(&self) -> SystemTime;

    /// 32 bytes from a cryptographically secure random source, fresh for every call: the `jti`
    /// of the attempt's JWTs. Called only when the attempt signs something
    /// ([`TokenRequest::signs_each_attempt`]).
    ///
    /// # Errors
    ///
    /// [`Error::Transport`] if the random source fails.
    fn entropy(&self) -> Result<[u8; 32], Error>;
}

/// What an HTTP client must do for the core, so that [`fetch_token`] can run a [`TokenFetch`]
/// over it: send one request **without following redirects**, reading at most `max_body_len`
/// bytes of the response body, its failures classified as [`Error::Transport`]. Nothing else:
/// the time and randomness of an attempt are the [`Environment`]'s.
///
/// The adapters of this crate implement it for `reqwest::Client` (feature `reqwest`) and
/// hyper's `Client` (feature `hyper`); implement it for your own client to get the same loop:
/// the DPoP-nonce retry (RFC 9449 §8) and a fresh assertion and proof for every attempt. The
/// core still does no IO: the implementor does.
pub trait Transport {
    /// Sends `request` once, without following a redirect (a 3xx is handed back as it came, and
    /// the core refuses it), and reads the response body, at most `max_body_len` bytes of it.
    ///
    /// # Errors
    ///
    /// [`Error::Transport`] when the exchange fails, with a [`TransportKind`](crate::error::TransportKind)
    /// saying how; [`Error::BodyTooLarge`] when the body is longer than `max_body_len`.
    fn send(
        &self,
        request: http::Request<RequestBody>,
        max_body_len: usize,
    ) -> impl Future<Output = Result<http::Response<Bytes>, Error>> + Send;
}

/// Fetches a token for `request` over `transport`, in `session`: the one attempt loop of this
/// crate.
///
/// Each attempt is built at [`Environment::now`] with [`Environment::entropy`] and the
/// session's latest DPoP nonce, on the server's time as the session knows it, sent by
/// [`Transport::send`] with the client's
/// [`max_body_len`](crate::fetch::ResponseRules::max_body_len), and its response handed to
/// [`TokenFetch::handle_response`]; a server's `use_dpop_nonce` is answered by one more
/// attempt, and so is a refusal of the attempt's time with a `Date` that corrects it, no more.
/// Under [`ClientAuth::Source`](crate::auth::ClientAuth::Source), the client's
/// [`AssertionSource`](crate::auth::AssertionSource) is awaited at each attempt's time for its
/// assertion. This function does no IO of its own and sets no timeout: bound it by the
/// transport's or your runtime's. Dropping the future abandons the exchange.
///
/// # Errors
///
/// The transport's errors, and every error of [`TokenFetch`]: [`Error::OAuth`],
/// [`Error::Redirect`], [`Error::Signing`], …
pub async fn fetch_token(
    transport: &impl Transport,
    request: &TokenRequest,
    session: &Session,
    environment: &impl Environment,
) -> Result<Token, Error> {
    observe::fetch(
        request,
        || environment.now(),
        attempt_loop(transport, request, session, environment),
    )
    .await
}

/// The attempts of [`fetch_token`], with what its span records of them.
async fn attempt_loop(
    transport: &impl Transport,
    request: &TokenRequest,
    session: &Session,
    environment: &impl Environment,
) -> (Result<Token, Error>, FetchRecord) {
    let limit = request.client().response_rules().max_body_len();
    let mut exchange = TokenFetch::new(request, session);
    let mut record = FetchRecord::default();
    let result = loop {
        let now = environment.now();
        let built = match request.assertion_source() {
            // Asked for every attempt: it renews what it holds only when it must.
            Some(source) => match source.assertion(now).await {
                Ok(assertion) => {
                    exchange.http_request_with_assertion(now, || environment.entropy(), &assertion)
                }
                Err(error) => Err(error.into()),
            },
            None => exchange.http_request(now, || environment.entropy()),
        };
        let sent = match built {
            Ok(http_request) => transport.send(http_request, limit).await,
            Err(error) => Err(error),
        };
        record.attempts = exchange.attempts();
        let response = match sent {
            Ok(response) => response,
            Err(error) => break Err(error),
        };
        record.status = Some(response.status());
        match exchange.handle_response(&response) {
            Ok(FetchStep::Done(token)) => break Ok(token),
            Ok(FetchStep::Retry) => {}
            Err(error) => break Err(error),
        }
    };
    (result, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientCredentials;
    use crate::error::oauth::ErrorCode;
    use crate::test_support::{at, request, url};

    fn use_dpop_nonce(nonce: &str) -> http::Response<&'static str> {
        http::Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .header("dpop-nonce", nonce)
            .body(r#"{"error":"use_dpop_nonce","error_description":"nonce is required in the DPoP proof"}"#)
            .unwrap()
    }

    fn token(nonce: Option<&str>) -> http::Response<&'static str> {
        let mut response = http::Response::builder()
            .status(200)
            .header("content-type", "application/json");
        if let Some(nonce) = nonce {
            response = response.header("dpop-nonce", nonce);
        }
        response
            .body(r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#)
            .unwrap()
    }

    /// A signer that signs nothing, for a client that signs every attempt.
    struct NullSigner;

    impl crate::client_auth::jwt::JwsSigner for NullSigner {
        fn algorithm(&self) -> crate::client_auth::jwt::JwsAlgorithm {
            crate::client_auth::jwt::JwsAlgorithm::parse("HS256")
        }

        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, crate::client_auth::jwt::BoxError> {
            Ok(vec![0; 32])
        }
    }

    #[test]
    fn entropy_is_read_only_for_an_attempt_that_signs() {
        let request = request();
        let session = Session::new();
        let mut exchange = TokenFetch::new(&request, &session);
        exchange
            .http_request(at(1), || {
                panic!("a client with a static secret signs nothing")
            })
            .unwrap();

        let jwt = ClientCredentials::with_auth(
            url("https://as.example.com/token"),
            "c",
            crate::client_auth::ClientAuth::Jwt(crate::client_auth::jwt::JwtAuth::new(NullSigner)),
        )
        .unwrap()
        .token_request()
        .build()
        .unwrap();
        let mut exchange = TokenFetch::new(&jwt, &session);
        let mut read = false;
        exchange
            .http_request(at(1), || {
                read = true;
                Ok([9; 32])
            })
            .unwrap();
        assert!(read, "a client assertion needs a fresh jti");
    }

    #[test]
    fn a_token_on_the_first_attempt_is_done_and_counts_from_its_time() {
        let request = request();
        let session = Session::new();
        let nonces = session.dpop_nonces();
        let mut exchange = TokenFetch::new(&request, &session);
        let http = exchange.http_request(at(100), || Ok([1; 32])).unwrap();
        assert_eq!(http.uri(), "https://as.example.com/token");
        match exchange.handle_response(&token(Some("n-0"))).unwrap() {
            FetchStep::Done(token) => assert_eq!(token.sent_at(), at(100)),
            FetchStep::Retry => panic!("no retry for a token"),
        }
        assert_eq!(exchange.attempts(), 1);
        let uri = request.client().token_url().as_uri();
        assert_eq!(
            nonces.get(uri).as_deref(),
            Some("n-0"),
            "a success's nonce is kept too"
        );
    }

    #[test]
    fn use_dpop_nonce_is_retried_once_with_the_nonce_rfc9449_8() {
        let request = request();
        let session = Session::new();
        let nonces = session.dpop_nonces();
        let uri = request.client().token_url().as_uri();
        let mut exchange = TokenFetch::new(&request, &session);
        let _ = exchange.http_request(at(100), || Ok([1; 32])).unwrap();
        assert!(matches!(
            exchange.handle_response(&use_dpop_nonce("n-1")).unwrap(),
            FetchStep::Retry
        ));
        assert_eq!(nonces.get(uri).as_deref(), Some("n-1"));
        let _ = exchange.http_request(at(101), || Ok([2; 32])).unwrap();
        let error = exchange
            .handle_response(&use_dpop_nonce("n-2"))
            .unwrap_err();
        assert_eq!(error.oauth().unwrap().code(), &ErrorCode::UseDpopNonce);
        assert_eq!(exchange.attempts(), 2, "one nonce retry");
        assert_eq!(nonces.get(uri).as_deref(), Some("n-2"), "the newest nonce");

        // The retry's token counts from the retry's time.
        let mut exchange = TokenFetch::new(&request, &session);
        let _ = exchange.http_request(at(200), || Ok([3; 32])).unwrap();
        let _ = exchange.handle_response(&use_dpop_nonce("n-3")).unwrap();
        let _ = exchange.http_request(at(205), || Ok([4; 32])).unwrap();
        match exchange.handle_response(&token(None)).unwrap() {
            FetchStep::Done(token) => assert_eq!(token.sent_at(), at(205)),
            FetchStep::Retry => panic!("a token ends the exchange"),
        }
    }

    #[test]
    fn other_errors_are_not_retried() {
        let request = request();
        let session = Session::new();
        let mut exchange = TokenFetch::new(&request, &session);
        let _ = exchange.http_request(at(100), || Ok([1; 32])).unwrap();
        let refused = http::Response::builder()
            .status(400)
            .header("dpop-nonce", "n-1")
            .body(r#"{"error":"invalid_dpop_proof"}"#)
            .unwrap();
        let error = exchange.handle_response(&refused).unwrap_err();
        assert_eq!(error.oauth().unwrap().code(), &ErrorCode::InvalidDpopProof);
        // `use_dpop_nonce` without a nonce to retry with.
        let _ = exchange.http_request(at(100), || Ok([1; 32])).unwrap();
        let bare = http::Response::builder()
            .status(400)
            .body(r#"{"error":"use_dpop_nonce"}"#)
            .unwrap();
        assert!(exchange.handle_response(&bare).is_err());
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn a_refused_dpop_proof_is_retried_once_with_a_fresh_proof() {
        use crate::client_auth::dpop::DpopKey;
        use crate::client_auth::jwt::JwsAlgorithm;
        use crate::client_auth::key::PrivateKey;
        let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
        let request = request()
            .client()
            .clone()
            .with_dpop(key)
            .token_request()
            .build()
            .unwrap();
        let session = Session::new();
        let mut exchange = TokenFetch::new(&request, &session);
        let refused = || {
            http::Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .body(r#"{"error":"invalid_dpop_proof","error_description":"invalid DPoP proof"}"#)
                .unwrap()
        };
        let first = exchange.http_request(at(100), || Ok([1; 32])).unwrap();
        assert!(matches!(
            exchange.handle_response(&refused()).unwrap(),
            FetchStep::Retry
        ));
        let second = exchange.http_request(at(100), || Ok([2; 32])).unwrap();
        assert_ne!(
            first.headers()["dpop"],
            second.headers()["dpop"],
            "a fresh proof, its own jti"
        );
        let error = exchange.handle_response(&refused()).unwrap_err();
        assert_eq!(
            error.oauth().unwrap().code(),
            &ErrorCode::InvalidDpopProof,
            "once"
        );
        assert_eq!(exchange.attempts(), 2);
    }

    #[test]
    fn a_response_without_an_attempt_is_a_typed_error() {
        let request = request();
        let session = Session::new();
        let mut exchange = TokenFetch::new(&request, &session);
        let error = exchange.handle_response(&token(None)).unwrap_err();
        assert!(matches!(error, Error::NoAttemptAwaitingResponse), "{error}");
        let _ = exchange.http_request(at(1), || Ok([0; 32])).unwrap();
        let _ = exchange.handle_response(&token(None)).unwrap();
        assert!(
            exchange.handle_response(&token(None)).is_err(),
            "a response is handed in once"
        );
    }

    fn jwt_request() -> TokenRequest {
        ClientCredentials::with_auth(
            url("https://as.example.com/token"),
            "c",
            crate::client_auth::ClientAuth::Jwt(crate::client_auth::jwt::JwtAuth::new(NullSigner)),
        )
        .unwrap()
        .token_request()
        .build()
        .unwrap()
    }

    /// The `iat` of the client assertion in a request's body.
    fn assertion_iat(request: &http::Request<RequestBody>) -> u64 {
        let body = String::from_utf8(request.body().secret().to_vec()).unwrap();
        let assertion = form_urlencoded::parse(body.as_bytes())
            .find(|(name, _)| name == "client_assertion")
            .unwrap()
            .1
            .into_owned();
        let payload = assertion.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        claims["iat"].as_u64().unwrap()
    }

    fn refused_in_time(description: &str, date: Option<u64>) -> http::Response<String> {
        let mut response = http::Response::builder()
            .status(401)
            .header("content-type", "application/json");
        if let Some(date) = date {
            response = response.header("date", httpdate::fmt_http_date(at(date)));
        }
        response
            .body(
                serde_json::json!({"error": "invalid_client", "error_description": description})
                    .to_string(),
            )
            .unwrap()
    }

    #[test]
    fn a_refusal_of_the_time_is_retried_once_on_the_servers_time() {
        let request = jwt_request();
        let session = Session::new();
        let clock = session.server_clock();
        let mut exchange = TokenFetch::new(&request, &session);
        let first = exchange.http_request(at(1_000), || Ok([1; 32])).unwrap();
        assert_eq!(assertion_iat(&first), 1_000);
        let expired = refused_in_time("the client assertion expired at 1060", Some(1_600));
        assert!(matches!(
            exchange.handle_response(&expired).unwrap(),
            FetchStep::Retry
        ));
        assert_eq!(clock.offset_millis(), Some(600_000));
        let second = exchange.http_request(at(1_001), || Ok([2; 32])).unwrap();
        assert_eq!(assertion_iat(&second), 1_601, "signed on the server's time");
        let again = refused_in_time("the client assertion expired at 1661", Some(2_300));
        let error = exchange.handle_response(&again).unwrap_err();
        assert!(is_refusal_about_time(&error), "once only: {error}");
        let third = exchange.http_request(at(1_002), || Ok([3; 32])).unwrap();
        match exchange.handle_response(&token(None)).unwrap() {
            FetchStep::Done(token) => assert_eq!(token.sent_at(), at(1_002), "the caller's time"),
            FetchStep::Retry => panic!("a token ends the exchange"),
        }
        let _ = third;

        // A later exchange of the same client starts on the server's time.
        let mut later = TokenFetch::new(&request, &session);
        let next = later.http_request(at(2_000), || Ok([4; 32])).unwrap();
        assert!(assertion_iat(&next) > 2_000);
    }

    #[test]
    fn a_refusal_of_the_time_without_a_correcting_date_is_not_retried() {
        let request = jwt_request();
        let session = Session::new();
        let mut exchange = TokenFetch::new(&request, &session);
        let _ = exchange.http_request(at(1_000), || Ok([1; 32])).unwrap();
        let undated = refused_in_time("jwt expired", None);
        assert!(
            exchange.handle_response(&undated).is_err(),
            "no time to retry on"
        );
        let _ = exchange.http_request(at(1_000), || Ok([1; 32])).unwrap();
        let same = refused_in_time("jwt expired", Some(1_000));
        assert!(
            exchange.handle_response(&same).is_err(),
            "the clocks agree: retrying changes nothing"
        );
        let _ = exchange.http_request(at(1_000), || Ok([1; 32])).unwrap();
        let other = refused_in_time("client authentication failed", Some(1_600));
        assert!(exchange.handle_response(&other).is_err(), "not about time");
        assert_eq!(
            session.server_clock().offset_millis(),
            Some(0),
            "an unrelated refusal's Date is one sample among others"
        );
    }

    /// A transport answering from a script, counting what it is asked for.
    struct Scripted {
        responses: std::sync::Mutex<Vec<http::Response<Bytes>>>,
        entropy_reads: std::sync::atomic::AtomicUsize,
    }

    impl Scripted {
        fn new(mut responses: Vec<http::Response<&'static str>>) -> Self {
            responses.reverse();
            Self {
                responses: std::sync::Mutex::new(
                    responses
                        .into_iter()
                        .map(|r| r.map(|body| Bytes::from_static(body.as_bytes())))
                        .collect(),
                ),
                entropy_reads: std::sync::atomic::AtomicUsize::new(0),
            }
        }
    }

    impl Environment for Scripted {
        fn now(&self) -> SystemTime {
            at(500)
        }

        fn entropy(&self) -> Result<[u8; 32], Error> {
            self.entropy_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok([5; 32])
        }
    }

    impl Transport for Scripted {
        fn send(
            &self,
            _: http::Request<RequestBody>,
            _: usize,
        ) -> impl Future<Output = Result<http::Response<Bytes>, Error>> + Send {
            let response = self.responses.lock().unwrap().pop();
            std::future::ready(response.ok_or(Error::BodyTooLarge { limit: 0 }))
        }
    }

    /// Drives a future that never waits.
    fn ready<T>(future: impl Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the loop waited on a ready transport"),
        }
    }

    #[test]
    fn the_loop_retries_use_dpop_nonce_once_over_any_transport() {
        let request = request();
        let session = Session::new();
        let transport = Scripted::new(vec![use_dpop_nonce("n-1"), token(None)]);
        let issued = ready(fetch_token(&transport, &request, &session, &transport)).unwrap();
        assert_eq!(issued.sent_at(), at(500), "the environment's clock");
        assert_eq!(
            transport
                .entropy_reads
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "a static secret signs nothing"
        );

        let transport = Scripted::new(vec![
            use_dpop_nonce("n-2"),
            use_dpop_nonce("n-3"),
            token(None),
        ]);
        let error = ready(fetch_token(&transport, &request, &session, &transport)).unwrap_err();
        assert_eq!(error.oauth().unwrap().code(), &ErrorCode::UseDpopNonce);
        assert_eq!(transport.responses.lock().unwrap().len(), 1, "two attempts");
    }

    #[test]
    fn a_nonce_is_kept_by_the_session_that_was_sent_it() {
        let first = request();
        let session = Session::new();
        let transport = Scripted::new(vec![token(Some("n-1"))]);
        ready(fetch_token(&transport, &first, &session, &transport)).unwrap();
        let uri = first.client().token_url().as_uri();
        let clone = first.client().clone().token_request().build().unwrap();
        let shared = session.clone();
        assert_eq!(
            shared.dpop_nonces().get(uri).as_deref(),
            Some("n-1"),
            "shared by the session's clones, whichever request of the client it was"
        );
        let with_date = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("date", httpdate::fmt_http_date(at(800)))
            .body(r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#)
            .unwrap();
        let transport = Scripted::new(vec![]);
        transport
            .responses
            .lock()
            .unwrap()
            .push(with_date.map(|body: &'static str| Bytes::from_static(body.as_bytes())));
        ready(fetch_token(&transport, &clone, &shared, &transport)).unwrap();
        assert_eq!(
            session.server_clock().offset_millis(),
            Some(300_000),
            "the server clock too: learnt in a clone of the session, known to the original"
        );
        let other = Session::new(); // another session, for the same server
        assert_eq!(other.dpop_nonces().get(uri), None, "no other session's");
        assert_eq!(other.server_clock().offset_millis(), None);
        assert_eq!(first, clone, "the session is no part of the request's key");
    }
}
