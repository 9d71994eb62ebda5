//! The protected resource: the check of a request's access token (RFC 6750 §2.1, RFC 9449 §7)
//! and the `/api/` endpoint that answers with what it found.

use bytes::Bytes;
use client_credentials::token::TokenType;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Body;
use serde_json::{Value, json};

use super::access::{AccessGrant, AccessRefusal, Scheme};
use super::body::{BodyError, ResponseBody, json_response, plain, read_limited};
use super::dpop::{self, Expected, Nonce, ProofError, SeenJtis};
use super::jws;
use super::refusal::MAX_REQUEST_BODY_LEN;
use super::tokens::{Issued, Registry};
use super::trust::TrustedIssuer;

/// The paths of the protected resource: any method on any path under it.
pub const RESOURCE_PATH_PREFIX: &str = "/api/";

/// Under [`RESOURCE_PATH_PREFIX`], a path `/api/scope/<scope>/…` needs a token with `<scope>`.
pub const SCOPED_PATH_PREFIX: &str = "/api/scope/";

/// What decides who gets in, shared by the token endpoint (which issues and binds tokens) and
/// the resource (which checks them).
pub(super) struct AccessState {
    /// `http://127.0.0.1:PORT`: the issuer of the server's tokens, and the origin of relative
    /// URIs in DPoP proofs.
    pub(super) issuer: String,
    pub(super) tokens: Registry,
    pub(super) seen_jtis: SeenJtis,
    pub(super) token_nonce: Nonce,
    pub(super) resource_nonce: Nonce,
    pub(super) trusted: Vec<TrustedIssuer>,
}

impl AccessState {
    pub(super) fn new(issuer: String, trusted: Vec<TrustedIssuer>) -> Self {
        Self {
            issuer,
            tokens: Registry::default(),
            seen_jtis: SeenJtis::default(),
            token_nonce: Nonce::new(),
            resource_nonce: Nonce::new(),
            trusted,
        }
    }

    /// Checks a request's access token, at `now` (seconds since the Unix epoch).
    pub(super) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: u64,
    ) -> Result<AccessGrant, AccessRefusal> {
        let (scheme, token) = credentials(headers)?;
        let (issued, issuer) = self.resolve(scheme, token, now)?;
        if issued.revoked {
            return Err(AccessRefusal::invalid_token(
                scheme,
                "the token was revoked",
            ));
        }
        if issued.exp.is_some_and(|exp| exp <= now) {
            return Err(AccessRefusal::invalid_token(scheme, "the token expired"));
        }
        match (scheme, &issued.jkt) {
            (Scheme::Bearer, Some(_)) => {
                return Err(AccessRefusal::invalid_token(
                    scheme,
                    "the token is DPoP-bound: present it by Authorization: DPoP with a DPoP proof",
                ));
            }
            (Scheme::DPoP, None) => {
                return Err(AccessRefusal::invalid_token(
                    scheme,
                    "the token is not DPoP-bound: present it by Authorization: Bearer",
                ));
            }
            (Scheme::DPoP, Some(jkt)) => self.check_proof(method, uri, headers, token, jkt, now)?,
            (Scheme::Bearer, None) => {}
        }
        if let Some(scope) = required_scope(uri.path())
            && !issued.scopes.contains(&scope)
        {
            return Err(AccessRefusal::insufficient_scope(scheme, &scope));
        }
        Ok(AccessGrant {
            client_id: issued.client_id,
            scopes: issued.scopes,
            token_type: match scheme {
                Scheme::Bearer => TokenType::Bearer,
                Scheme::DPoP => TokenType::DPoP,
            },
            audiences: issued.audiences,
            issuer,
            jkt: issued.jkt,
        })
    }

    /// The token's record: the server's own, or the claims of a trusted issuer's signed token.
    fn resolve(
        &self,
        scheme: Scheme,
        token: &str,
        now: u64,
    ) -> Result<(Issued, String), AccessRefusal> {
        if let Some(issued) = self.tokens.lookup(token) {
            return Ok((issued, self.issuer.clone()));
        }
        let unknown = || {
            AccessRefusal::invalid_token(
                scheme,
                "the token is unknown: this server did not issue it (or has forgotten it), and no \
                 trusted issuer signed it",
            )
        };
        let decoded = jws::decode(token).map_err(|_| unknown())?;
        let iss = decoded.claim_str("iss").ok_or_else(unknown)?;
        let trusted = self
            .trusted
            .iter()
            .find(|t| t.issuer == iss)
            .ok_or_else(unknown)?;
        if !trusted.verifies(&decoded) {
            return Err(AccessRefusal::invalid_token(
                scheme,
                "the token's signature does not verify with the trusted issuer's keys",
            ));
        }
        let audience_ok = match decoded.claims.get("aud") {
            Some(Value::String(aud)) => *aud == trusted.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| *a == *trusted.audience),
            _ => false,
        };
        if !audience_ok {
            return Err(AccessRefusal::invalid_token(
                scheme,
                format!("the token's aud does not name {}", trusted.audience),
            ));
        }
        let exp = decoded
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AccessRefusal::invalid_token(scheme, "the token has no exp"))?;
        if decoded
            .claims
            .get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|nbf| nbf > now.saturating_add(dpop::DPOP_PROOF_WINDOW))
        {
            return Err(AccessRefusal::invalid_token(
                scheme,
                "the token is not valid yet",
            ));
        }
        let client_id = decoded
            .claim_str("client_id")
            .or_else(|| decoded.claim_str("sub"))
            .unwrap_or_default();
        let issued = Issued {
            client_id: client_id.to_owned(),
            scopes: decoded
                .claim_str("scope")
                .map(|s| {
                    s.split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            audiences: vec![trusted.audience.clone()],
            exp: Some(exp),
            jkt: decoded
                .claims
                .get("cnf")
                .and_then(|cnf| cnf.get("jkt"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            revoked: false,
        };
        Ok((issued, trusted.issuer.clone()))
    }

    fn check_proof(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        token: &str,
        jkt: &str,
        now: u64,
    ) -> Result<(), AccessRefusal> {
        let proof = dpop::proof_header(headers)
            .map_err(proof_refusal)?
            .ok_or_else(|| {
                AccessRefusal::invalid_dpop_proof("the request has no DPoP proof (DPoP header)")
            })?;
        let htu = dpop::htu_of(uri).unwrap_or_else(|| format!("{}{}", self.issuer, uri.path()));
        let nonce = self.resource_nonce.required();
        let expected = Expected {
            method,
            htu: &htu,
            access_token: Some(token),
            nonce: nonce.as_deref(),
            now,
        };
        let proof_jkt = dpop::verify(proof, &expected, &self.seen_jtis).map_err(|e| match e {
            ProofError::NeedsNonce => AccessRefusal::use_dpop_nonce(self.resource_nonce.current()),
            other => proof_refusal(other),
        })?;
        if proof_jkt != jkt {
            return Err(AccessRefusal::invalid_dpop_proof(
                "the DPoP proof's key is not the key the token is bound to (cnf.jkt)",
            ));
        }
        Ok(())
    }
}

fn proof_refusal(error: ProofError) -> AccessRefusal {
    match error {
        ProofError::Invalid(text) => AccessRefusal::invalid_dpop_proof(text),
        ProofError::NeedsNonce => AccessRefusal::invalid_dpop_proof("the DPoP proof has no nonce"),
    }
}

/// The scheme and token of the request's one `Authorization` header (RFC 6750 §2.1, RFC 9449
/// §7.1); another scheme, or none, is no credentials.
fn credentials(headers: &HeaderMap) -> Result<(Scheme, &str), AccessRefusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AccessRefusal::no_credentials());
    };
    if values.next().is_some() {
        return Err(AccessRefusal::invalid_request(
            Scheme::Bearer,
            "the request has more than one Authorization header",
        ));
    }
    let Ok(text) = value.to_str() else {
        return Err(AccessRefusal::invalid_request(
            Scheme::Bearer,
            "the Authorization header is not visible ASCII",
        ));
    };
    let (name, token) = text.split_once(' ').unwrap_or((text, ""));
    let scheme = if name.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if name.eq_ignore_ascii_case("dpop") {
        Scheme::DPoP
    } else {
        return Err(AccessRefusal::no_credentials());
    };
    let token = token.trim();
    if !is_token68(token) {
        return Err(AccessRefusal::invalid_request(
            scheme,
            "the Authorization header's token is empty or not a token68 (RFC 6750 section 2.1)",
        ));
    }
    Ok((scheme, token))
}

/// RFC 7235 §2.1's `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The scope a path needs: `<scope>` of `/api/scope/<scope>/…`, percent-decoded.
pub(super) fn required_scope(path: &str) -> Option<String> {
    let rest = path.strip_prefix(SCOPED_PATH_PREFIX)?;
    let segment = rest.split('/').next().unwrap_or_default();
    let scope = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    (!scope.is_empty()).then(|| scope.into_owned())
}

/// Answers a request under [`RESOURCE_PATH_PREFIX`]: 200 with what the check found, or the
/// refusal.
pub(super) async fn serve<B>(
    access: &AccessState,
    request: Request<B>,
    now: u64,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let grant = match access.check(&parts.method, &parts.uri, &parts.headers, now) {
        Ok(grant) => grant,
        Err(refusal) => return refusal_response(&refusal),
    };
    let body_len = match read_limited(&parts.headers, body, MAX_REQUEST_BODY_LEN).await {
        Ok(body) => body.len(),
        Err(BodyError::TooLarge) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is over the {MAX_REQUEST_BODY_LEN}-byte limit"),
            );
        }
        Err(BodyError::Unreadable) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let mut response = json_response(
        StatusCode::OK,
        &json!({
            "client_id": grant.client_id(),
            "scope": grant.scopes().join(" "),
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "body_len": body_len,
            "token_type": grant.token_type().as_str(),
        }),
    );
    if let Some(Ok(nonce)) = access.resource_nonce.required().map(HeaderValue::try_from) {
        response.headers_mut().insert("dpop-nonce", nonce);
    }
    response
}

/// The refusal as a response: its status and headers, and its error as JSON when it has one.
pub(super) fn refusal_response(refusal: &AccessRefusal) -> Response<ResponseBody> {
    let body = match (refusal.error(), refusal.description()) {
        (Some(error), Some(description)) => {
            json!({ "error": error, "error_description": description })
        }
        _ => json!({}),
    };
    let mut response = json_response(refusal.status(), &body);
    response.headers_mut().extend(refusal.headers());
    response
}
