//! The token endpoint: authenticating the client, checking the grant, issuing the token or
//! refusing with the RFC's error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use client_credentials::auth::{AuthMethod, ClientAuth};
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, DATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Body;
use serde_json::{Map, Value, json};

use super::assertion::{AssertionContext, verify_assertion};
use super::body::{BodyError, ResponseBody, json_response, plain, read_limited};
use super::client::TestClient;
use super::dpop::{self, Expected, ProofError, SeenJtis};
use super::faults::{Fault, fault_response};
use super::form::{Form, basic_credentials};
use super::refusal::{MAX_REQUEST_BODY_LEN, Refusal, invalid_client, invalid_request, refuse};
use super::resource::{AccessState, RESOURCE_PATH_PREFIX, serve};
use super::tokens::{Issued, SkewedClock};

/// The lifetime of the tokens the server issues unless told otherwise, in seconds.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// What the server's connections share with the handle.
pub(super) struct Shared {
    pub(super) issuer: String,
    pub(super) clients: Vec<TestClient>,
    pub(super) expires_in: Option<u64>,
    pub(super) requests: AtomicUsize,
    pub(super) token_requests: AtomicUsize,
    pub(super) resource_requests: AtomicUsize,
    pub(super) issued: AtomicU64,
    pub(super) faults: Mutex<Faults>,
    pub(super) access: AccessState,
    pub(super) clock: SkewedClock,
    /// The `jti`s of the client assertions accepted so far, by issuer.
    pub(super) assertion_jtis: SeenJtis,
}

#[derive(Default)]
pub(super) struct Faults {
    pub(super) queue: VecDeque<Fault>,
    pub(super) sticky: Option<Fault>,
    /// Faults for the resource's requests, apart from the others: see `push_resource_fault`.
    pub(super) resource_queue: VecDeque<Fault>,
}

impl Shared {
    pub(super) fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        // The lock is never held across a panic that matters: the data stays consistent.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn next_fault(&self) -> Option<Fault> {
        let mut faults = self.faults();
        faults.queue.pop_front().or_else(|| faults.sticky.clone())
    }

    fn next_resource_fault(&self) -> Option<Fault> {
        self.faults().resource_queue.pop_front()
    }
}

/// Serves a fault, or `None` to answer normally (after the fault's delay, if it has one).
async fn apply(fault: Option<Fault>) -> Option<Response<ResponseBody>> {
    match fault {
        None => None,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            None
        }
        Some(Fault::NeverAnswer) => std::future::pending().await,
        Some(fault) => Some(fault_response(fault)),
    }
}

/// Answers `request`, every answer with a `Date` (RFC 9110 §6.6.1) on the server's clock.
pub(super) async fn handle<B>(shared: &Shared, request: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut response = route(shared, request).await;
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(shared.clock.now());
    if let Ok(date) = HeaderValue::try_from(httpdate::fmt_http_date(now)) {
        response.headers_mut().insert(DATE, date);
    }
    response
}

async fn route<B>(shared: &Shared, request: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if request.uri().path().starts_with(RESOURCE_PATH_PREFIX) {
        shared.resource_requests.fetch_add(1, Ordering::SeqCst);
        if let Some(response) = apply(shared.next_resource_fault()).await {
            return response;
        }
        return serve(&shared.access, request, shared.clock.now()).await;
    }
    if let Some(response) = apply(shared.next_fault()).await {
        return response;
    }
    if !is_token_path(request.uri().path()) {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the token endpoint is /token (or /{tenant}/oauth2/v2.0/token), the \
             protected resource under /api/",
        );
    }
    shared.token_requests.fetch_add(1, Ordering::SeqCst);
    if request.method() != Method::POST {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: the token endpoint takes POST",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    token_endpoint(shared, request)
        .await
        .unwrap_or_else(Refusal::into_response)
}

/// Whether `path` is the token endpoint's: `/token`, or Entra ID's v2.0 shape
/// `/{tenant}/oauth2/v2.0/token` with any one non-empty path segment as the tenant.
pub(super) fn is_token_path(path: &str) -> bool {
    path == "/token"
        || path
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix("/oauth2/v2.0/token"))
            .is_some_and(|tenant| !tenant.is_empty() && !tenant.contains('/'))
}

pub(super) async fn token_endpoint<B>(
    shared: &Shared,
    request: Request<B>,
) -> Result<Response<ResponseBody>, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    // The URL the client actually sent to: the DPoP proof's `htu` and an own assertion's
    // `aud` must name it, whichever of the token endpoint's paths it is.
    let token_url = format!("{}{}", shared.issuer, parts.uri.path());
    let form_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)",
        ));
    }
    let body = match read_limited(&parts.headers, body, MAX_REQUEST_BODY_LEN).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return Err(Refusal::TooLarge),
        Err(BodyError::Unreadable) => {
            return Err(invalid_request("the request body could not be read"));
        }
    };
    let form = Form::parse(&body)?;

    match form.get("grant_type") {
        None => return Err(invalid_request("the grant_type parameter is missing")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_grant_type",
                "this server supports only the client_credentials grant",
            ));
        }
    }
    let client = shared.authenticate(&parts.headers, &form, &token_url)?;
    let jkt = shared.dpop_binding(client, &parts.headers, &token_url)?;
    if !client.grant_allowed {
        return Err(refuse(
            "unauthorized_client",
            "this client may not use the client_credentials grant",
        ));
    }
    let scopes: Vec<&str> = match form.get("scope") {
        Some(scope) => scope.split(' ').filter(|s| !s.is_empty()).collect(),
        None => client.scopes.iter().map(String::as_str).collect(),
    };
    if let Some(scope) = scopes
        .iter()
        .find(|s| !client.scopes.iter().any(|a| a == *s))
    {
        return Err(refuse(
            "invalid_scope",
            format!("the scope `{scope}` is not allowed for this client"),
        ));
    }
    let audience = form.get("audience");
    if let Some(audience) = audience.filter(|a| !client.audiences.iter().any(|x| x == a)) {
        return Err(refuse(
            "invalid_target",
            format!("the audience `{audience}` is not allowed for this client"),
        ));
    }
    let resources = form.all("resource");
    if let Some(resource) = resources
        .iter()
        .find(|r| !client.resources.iter().any(|x| x == *r))
    {
        return Err(refuse(
            "invalid_target",
            format!("the resource `{resource}` is not allowed for this client"),
        ));
    }
    let targets: Vec<&str> = audience.into_iter().chain(resources).collect();
    let mut response = shared.issue(client, &scopes, &targets, jkt);
    if let Some(Ok(nonce)) = shared
        .access
        .token_nonce
        .required()
        .map(HeaderValue::try_from)
    {
        response.headers_mut().insert("dpop-nonce", nonce);
    }
    Ok(response)
}

impl Shared {
    /// Authenticates the client by `client_secret_basic` or `client_secret_post` (RFC 6749
    /// §2.3.1), or by a client assertion (RFC 7521 §4.2), refusing two methods at once (§2.3).
    /// `token_url` is the token endpoint's URL as requested, an audience of own assertions.
    pub(super) fn authenticate(
        &self,
        headers: &http::HeaderMap,
        form: &Form,
        token_url: &str,
    ) -> Result<&TestClient, Refusal> {
        if form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some() {
            return self.authenticate_assertion(headers, form, token_url);
        }
        let (id, secret, method) = match headers.get(AUTHORIZATION) {
            Some(header) => {
                let (id, secret) = basic_credentials(header).ok_or_else(|| {
                    invalid_client("the authorization header does not hold basic credentials")
                })?;
                if form.get("client_secret").is_some() {
                    return Err(invalid_request(
                        "the client used more than one authentication method (RFC 6749 §2.3)",
                    ));
                }
                if form.get("client_id").is_some_and(|body_id| body_id != id) {
                    return Err(invalid_request(
                        "the client_id parameter differs from the authenticated client",
                    ));
                }
                (id, secret, AuthMethod::ClientSecretBasic)
            }
            None => match (form.get("client_id"), form.get("client_secret")) {
                (Some(id), Some(secret)) => (
                    id.to_owned(),
                    secret.to_owned(),
                    AuthMethod::ClientSecretPost,
                ),
                (Some(_), None) => {
                    return Err(invalid_client("the client sent no secret"));
                }
                (None, _) => return Err(invalid_client("the client did not authenticate")),
            },
        };
        let client = self
            .clients
            .iter()
            .find(|c| c.id == id && c.secret.secret() == secret)
            .ok_or_else(|| invalid_client("client authentication failed"))?;
        if !client.methods.contains(&method) {
            return Err(invalid_client(format!(
                "this client may not authenticate with {}",
                method.as_str()
            )));
        }
        Ok(client)
    }

    /// Authenticates the client by its assertion (RFC 7523 §2.2): the client named by
    /// `client_id`, or else by the assertion's `sub`, checked against the keys and issuers it
    /// trusts at the server's time.
    fn authenticate_assertion(
        &self,
        headers: &http::HeaderMap,
        form: &Form,
        token_url: &str,
    ) -> Result<&TestClient, Refusal> {
        if headers.contains_key(AUTHORIZATION) || form.get("client_secret").is_some() {
            return Err(invalid_request(
                "the client used more than one authentication method (RFC 6749 §2.3)",
            ));
        }
        if form.get("client_assertion_type") != Some(ClientAuth::JWT_BEARER_ASSERTION_TYPE) {
            return Err(invalid_client(format!(
                "the client_assertion_type must be {} (RFC 7523 §2.2)",
                ClientAuth::JWT_BEARER_ASSERTION_TYPE
            )));
        }
        let assertion = form
            .get("client_assertion")
            .ok_or_else(|| invalid_client("the client sent no client_assertion"))?;
        let id = match form.get("client_id") {
            Some(id) => id.to_owned(),
            None => super::jws::decode(assertion)
                .ok()
                .and_then(|decoded| decoded.claim_str("sub").map(str::to_owned))
                .ok_or_else(|| {
                    invalid_client("the client assertion has no sub and no client_id was sent")
                })?,
        };
        let client = self
            .clients
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| invalid_client("client authentication failed"))?;
        if !client.methods.contains(&AuthMethod::PrivateKeyJwt) {
            return Err(invalid_client(
                "this client may not authenticate with private_key_jwt",
            ));
        }
        let context = AssertionContext {
            client_id: &client.id,
            issuer: &self.issuer,
            token_url,
            now: self.clock.now(),
            seen: &self.assertion_jtis,
        };
        verify_assertion(&client.assertions, assertion, &context)?;
        Ok(client)
    }

    /// Checks the request's DPoP proof, if any (RFC 9449 §4.3, §5), returning the thumbprint of
    /// its key, to bind the token to; a client whose tokens must be bound must send one. The
    /// proof's `htu` must be `token_url`, the token endpoint's URL as requested.
    fn dpop_binding(
        &self,
        client: &TestClient,
        headers: &HeaderMap,
        token_url: &str,
    ) -> Result<Option<String>, Refusal> {
        let invalid = |text: String| refuse("invalid_dpop_proof", text);
        let proof = dpop::proof_header(headers).map_err(|e| match e {
            ProofError::Invalid(text) => invalid(text),
            ProofError::NeedsNonce => invalid("the DPoP proof has no nonce".into()),
        })?;
        let Some(proof) = proof else {
            if client.dpop_bound {
                return Err(invalid(
                    "this client's tokens must be DPoP-bound: send a DPoP proof (RFC 9449 §5)"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let nonce = self.access.token_nonce.required();
        let expected = Expected {
            method: &Method::POST,
            htu: token_url,
            access_token: None,
            nonce: nonce.as_deref(),
            now: self.clock.now(),
        };
        match dpop::verify(proof, &expected, &self.access.seen_jtis) {
            Ok(jkt) => Ok(Some(jkt)),
            Err(ProofError::NeedsNonce) => {
                Err(Refusal::UseDpopNonce(self.access.token_nonce.current()))
            }
            Err(ProofError::Invalid(text)) => Err(invalid(text)),
        }
    }

    /// A successful token response (RFC 6749 §5.1) with an unsecured JWT access token, bound to
    /// the key `jkt` names when there is one (RFC 9449 §6), and remembered for the resource.
    pub(super) fn issue(
        &self,
        client: &TestClient,
        scopes: &[&str],
        targets: &[&str],
        jkt: Option<String>,
    ) -> Response<ResponseBody> {
        let scope = scopes.join(" ");
        let scope = scope.as_str();
        let issued_at = self.clock.now();
        let serial = self.issued.fetch_add(1, Ordering::Relaxed);
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(client.id));
        claims.insert("client_id".into(), json!(client.id));
        match targets {
            [] => {}
            [one] => {
                claims.insert("aud".into(), json!(one));
            }
            many => {
                claims.insert("aud".into(), json!(many));
            }
        }
        if !scope.is_empty() {
            claims.insert("scope".into(), json!(scope));
        }
        claims.insert("iat".into(), json!(issued_at));
        if let Some(expires_in) = self.expires_in {
            claims.insert("exp".into(), json!(issued_at.saturating_add(expires_in)));
        }
        claims.insert(
            "jti".into(),
            json!(format!(
                "{}-{serial}",
                self.issuer.rsplit(':').next().unwrap_or_default()
            )),
        );
        if let Some(jkt) = &jkt {
            claims.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
        let access_token = format!("{header}.{payload}.");
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        self.access.tokens.record(
            &access_token,
            Issued {
                client_id: client.id.clone(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                audiences: targets.iter().map(|s| (*s).to_owned()).collect(),
                exp: self.expires_in.map(|e| issued_at.saturating_add(e)),
                jkt,
                revoked: false,
            },
        );
        let mut body = Map::new();
        body.insert("access_token".into(), json!(access_token));
        body.insert("token_type".into(), json!(token_type));
        if let Some(expires_in) = self.expires_in {
            body.insert("expires_in".into(), json!(expires_in));
        }
        if !scope.is_empty() {
            body.insert("scope".into(), json!(scope));
        }
        json_response(StatusCode::OK, &Value::Object(body))
    }
}
