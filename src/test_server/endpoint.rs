//! The token endpoint: authenticating the client, checking the grant, issuing the token or
//! refusing with the RFC's error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Body;
use serde_json::{Map, Value, json};

use super::body::{ResponseBody, json_response, plain};
use super::client::TestClient;
use super::faults::{Fault, fault_response};
use super::form::{Form, basic_credentials};
use super::refusal::{MAX_REQUEST_BODY_LEN, Refusal, invalid_client, invalid_request, refuse};
use crate::auth::method::AuthMethod;

/// The lifetime of the tokens the server issues unless told otherwise, in seconds.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// What the server's connections share with the handle.
pub(super) struct Shared {
    pub(super) issuer: String,
    pub(super) clients: Vec<TestClient>,
    pub(super) expires_in: Option<u64>,
    pub(super) requests: AtomicUsize,
    pub(super) issued: AtomicU64,
    pub(super) faults: Mutex<Faults>,
}

#[derive(Default)]
pub(super) struct Faults {
    pub(super) queue: VecDeque<Fault>,
    pub(super) sticky: Option<Fault>,
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
}

pub(super) async fn handle<B>(shared: &Shared, request: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.next_fault() {
        None => {}
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::NeverAnswer) => std::future::pending::<()>().await,
        Some(fault) => return fault_response(fault),
    }
    if request.uri().path() != "/token" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the token endpoint is /token",
        );
    }
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

pub(super) async fn token_endpoint<B>(
    shared: &Shared,
    request: Request<B>,
) -> Result<Response<ResponseBody>, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
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
    let declared_len = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > MAX_REQUEST_BODY_LEN as u64) {
        return Err(Refusal::TooLarge);
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY_LEN).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Refusal::TooLarge),
        Err(_) => return Err(invalid_request("the request body could not be read")),
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
    let client = shared.authenticate(&parts.headers, &form)?;
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
    Ok(shared.issue(client, &scopes.join(" "), &targets))
}

impl Shared {
    /// Authenticates the client by `client_secret_basic` or `client_secret_post` (RFC 6749
    /// §2.3.1), refusing two methods at once (§2.3).
    pub(super) fn authenticate(
        &self,
        headers: &http::HeaderMap,
        form: &Form,
    ) -> Result<&TestClient, Refusal> {
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

    /// A successful token response (RFC 6749 §5.1) with an unsecured JWT access token.
    pub(super) fn issue(
        &self,
        client: &TestClient,
        scope: &str,
        targets: &[&str],
    ) -> Response<ResponseBody> {
        let issued_at = unix_now();
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
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
        let mut body = Map::new();
        body.insert("access_token".into(), json!(format!("{header}.{payload}.")));
        body.insert("token_type".into(), json!("Bearer"));
        if let Some(expires_in) = self.expires_in {
            body.insert("expires_in".into(), json!(expires_in));
        }
        if !scope.is_empty() {
            body.insert("scope".into(), json!(scope));
        }
        json_response(StatusCode::OK, &Value::Object(body))
    }
}

/// The current time in seconds since the Unix epoch.
// The server stamps `iat` and `exp` with the real time, as a real token endpoint does; it is the
// one part of the crate that reads the clock outside an adapter.
#[allow(clippy::disallowed_methods)]
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
