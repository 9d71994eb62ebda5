//! What the resource's check decides: a grant (who the token is for, with what scopes), or a
//! refusal with the status and challenges of RFC 6750 §3 and RFC 9449 §7.1.

use std::fmt;

use client_credentials::token::TokenType;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::jws::ALGORITHMS;
use super::refusal::REALM;

/// A request the resource accepted: the token's client, scopes and type.
///
/// Holds no secret: not the token, not the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub(super) client_id: String,
    pub(super) scopes: Vec<String>,
    pub(super) token_type: TokenType,
    pub(super) audiences: Vec<String>,
    pub(super) issuer: String,
    pub(super) jkt: Option<String>,
}

impl AccessGrant {
    /// The client the token was issued to (its `client_id` claim, or `sub` without one).
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token's scopes, in the order granted.
    #[must_use]
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether the token has this scope.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The token's audiences (the `audience` and `resource` it was requested for, or the
    /// trusted issuer's audience).
    #[must_use]
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// How the token was presented: [`TokenType::Bearer`] or, with a proof,
    /// [`TokenType::DPoP`].
    #[must_use]
    pub fn token_type(&self) -> &TokenType {
        &self.token_type
    }

    /// Who issued the token: this server's URL, or a [trusted issuer](crate::TrustedIssuer).
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The RFC 7638 thumbprint of the key a DPoP-bound token is bound to (RFC 9449 §6).
    #[must_use]
    pub fn jkt(&self) -> Option<&str> {
        self.jkt.as_deref()
    }
}

/// The scheme a request presented its token by, which gets the error in the challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Bearer,
    DPoP,
}

/// A request the resource refused, with the answer a resource server gives: the status, the
/// `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9449 §7.1) and, when a DPoP nonce is
/// needed, `DPoP-Nonce` (RFC 9449 §9).
///
/// Every 401 carries both a `Bearer` and a `DPoP` challenge (with `algs`), since the resource
/// takes both; the error goes in the challenge of the scheme the request used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRefusal {
    status: StatusCode,
    error: Option<&'static str>,
    description: Option<String>,
    scope: Option<String>,
    www_authenticate: String,
    dpop_nonce: Option<String>,
}

impl AccessRefusal {
    /// No token, or one by another scheme: a 401 with bare challenges (RFC 6750 §3.1).
    pub(super) fn no_credentials() -> Self {
        Self::build(StatusCode::UNAUTHORIZED, None, Scheme::Bearer, None, None)
    }

    /// A malformed request: 400 `invalid_request`.
    pub(super) fn invalid_request(scheme: Scheme, description: impl Into<String>) -> Self {
        let error = Some(("invalid_request", description.into()));
        Self::build(StatusCode::BAD_REQUEST, error, scheme, None, None)
    }

    /// A token that is unknown, expired, revoked or presented by the wrong scheme: 401
    /// `invalid_token`.
    pub(super) fn invalid_token(scheme: Scheme, description: impl Into<String>) -> Self {
        let error = Some(("invalid_token", description.into()));
        Self::build(StatusCode::UNAUTHORIZED, error, scheme, None, None)
    }

    /// A missing or bad DPoP proof: 401 `invalid_dpop_proof` (RFC 9449 §7.1).
    pub(super) fn invalid_dpop_proof(description: impl Into<String>) -> Self {
        let error = Some(("invalid_dpop_proof", description.into()));
        Self::build(StatusCode::UNAUTHORIZED, error, Scheme::DPoP, None, None)
    }

    /// A proof without the current resource nonce: 401 `use_dpop_nonce` and the nonce (RFC
    /// 9449 §9).
    pub(super) fn use_dpop_nonce(nonce: String) -> Self {
        let error = Some((
            "use_dpop_nonce",
            "the resource requires a nonce in the DPoP proof: retry with the DPoP-Nonce header's"
                .to_owned(),
        ));
        Self::build(
            StatusCode::UNAUTHORIZED,
            error,
            Scheme::DPoP,
            None,
            Some(nonce),
        )
    }

    /// A token without the scope the path needs: 403 `insufficient_scope` (RFC 6750 §3.1).
    pub(super) fn insufficient_scope(scheme: Scheme, scope: &str) -> Self {
        let error = Some((
            "insufficient_scope",
            format!("this path needs the scope {scope}, which the token does not have"),
        ));
        Self::build(
            StatusCode::FORBIDDEN,
            error,
            scheme,
            Some(scope.to_owned()),
            None,
        )
    }

    fn build(
        status: StatusCode,
        error: Option<(&'static str, String)>,
        scheme: Scheme,
        scope: Option<String>,
        dpop_nonce: Option<String>,
    ) -> Self {
        let (error, description) = match error {
            Some((code, description)) => (Some(code), Some(quotable(&description))),
            None => (None, None),
        };
        let params = |used: bool| {
            let mut params = format!("realm=\"{REALM}\"");
            if used && let (Some(code), Some(description)) = (error, &description) {
                params.push_str(&format!(
                    ", error=\"{code}\", error_description=\"{description}\""
                ));
                if let Some(scope) = &scope {
                    params.push_str(&format!(", scope=\"{}\"", quotable(scope)));
                }
            }
            params
        };
        let www_authenticate = format!(
            "Bearer {}, DPoP {}, algs=\"{}\"",
            params(scheme == Scheme::Bearer),
            params(scheme == Scheme::DPoP),
            ALGORITHMS.join(" ")
        );
        Self {
            status,
            error,
            description,
            scope,
            www_authenticate,
            dpop_nonce,
        }
    }

    /// The status to answer with: 400, 401 or 403.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code (`invalid_request`, `invalid_token`, `insufficient_scope`,
    /// `invalid_dpop_proof`, `use_dpop_nonce`); `None` for a request without credentials.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.error
    }

    /// What is wrong, as the challenge's `error_description` says it.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The scope that was missing, for `insufficient_scope`.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The value of the `WWW-Authenticate` header to answer with.
    #[must_use]
    pub fn www_authenticate(&self) -> &str {
        &self.www_authenticate
    }

    /// The value of the `DPoP-Nonce` header to answer with, for `use_dpop_nonce`.
    #[must_use]
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop_nonce.as_deref()
    }

    /// The headers to answer with: `WWW-Authenticate`, and `DPoP-Nonce` when there is one.
    #[must_use]
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // Built from quotable ASCII only, so both are valid header values.
        if let Ok(value) = HeaderValue::from_str(&self.www_authenticate) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if let Some(Ok(nonce)) = self.dpop_nonce.as_deref().map(HeaderValue::from_str) {
            headers.insert("dpop-nonce", nonce);
        }
        headers
    }
}

impl fmt::Display for AccessRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.error, &self.description) {
            (Some(code), Some(description)) => write!(
                f,
                "the resource refused the request with {} {code}: {description}",
                self.status.as_u16()
            ),
            _ => write!(
                f,
                "the resource refused the request with {}: it carries no access token; send \
                 `Authorization: Bearer <token>` or `Authorization: DPoP <token>` with a proof",
                self.status.as_u16()
            ),
        }
    }
}

impl std::error::Error for AccessRefusal {}

/// Text fit for a quoted `error_description` (RFC 6750 §3: visible ASCII without `"` and `\`).
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}
