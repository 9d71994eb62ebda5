//! Client assertions (RFC 7521, RFC 7523 §3): `private_key_jwt` with the client's own keys, and
//! federation, where a client trusts another issuer's tokens as its assertions (a Kubernetes
//! service-account token, a SPIFFE JWT-SVID), as Entra ID's federated credentials and
//! Keycloak's federated clients check them.

use std::fmt;

use serde_json::Value;

use super::dpop::SeenJtis;
use super::jws::{self, Decoded};
use super::refusal::{Refusal, invalid_client};
use super::trust::{JwksError, KeySet};

/// How far the server lets a client assertion's times be off its clock: 60 seconds, either
/// way, as most servers allow (oidc-provider's `clockTolerance` is often set so; Entra ID
/// and Keycloak allow a few minutes).
pub const ASSERTION_LEEWAY: u64 = 60;

/// Another issuer whose JWTs a [`TestClient`](crate::TestClient) accepts as its
/// client assertions: Entra ID's "federated identity credential", Keycloak's federated client
/// (a Kubernetes or SPIFFE identity provider).
///
/// An assertion is accepted when its `iss` is the issuer, a key of the issuer's JWKS verifies
/// its signature, its `sub` is the subject and its `aud` (a string or an array) contains the
/// audience, as those servers check them; and, as for every assertion, when its `exp` is not
/// past, its `nbf` and `iat` not in the future (each by more than [`ASSERTION_LEEWAY`] on the
/// server's clock). Its `jti` is not checked by default: a platform's token (a pod's projected
/// service-account token) is sent again and again until it is rotated, and Entra ID accepts
/// that; [`single_use`](Self::single_use) makes the server refuse a `jti` it has seen, as for
/// `private_key_jwt` assertions.
#[derive(Clone)]
pub struct FederatedCredential {
    issuer: String,
    subject: String,
    audience: String,
    keys: KeySet,
    single_use: bool,
}

impl FederatedCredential {
    /// Trusts the JWTs of `issuer` for `subject` (a Kubernetes service account's
    /// `system:serviceaccount:NAMESPACE:NAME`, a SPIFFE ID) and `audience` (Entra ID's
    /// `api://AzureADTokenExchange`), signed by a key of `jwks_json` (the document at the
    /// issuer's `jwks_uri`).
    ///
    /// # Errors
    ///
    /// As [`TrustedIssuer::new`](crate::TrustedIssuer::new): the JWKS is
    /// malformed, holds a private or unsupported key, or has no signing key;
    /// [`JwksError::Empty`] if the issuer, subject or audience is empty.
    pub fn new(
        issuer: &str,
        subject: &str,
        audience: &str,
        jwks_json: &str,
    ) -> Result<Self, JwksError> {
        if issuer.is_empty() || subject.is_empty() || audience.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            audience: audience.to_owned(),
            keys: KeySet::parse(jwks_json)?,
            single_use: false,
        })
    }

    /// Whether each assertion may be used once only: if so, one without a `jti`, or with a
    /// `jti` the server has seen, is refused.
    #[must_use]
    pub fn single_use(mut self, single_use: bool) -> Self {
        self.single_use = single_use;
        self
    }

    /// The issuer the assertion's `iss` must name.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject the assertion's `sub` must name.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The audience the assertion's `aud` must contain.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

impl fmt::Debug for FederatedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederatedCredential")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .field("single_use", &self.single_use)
            .finish()
    }
}

/// Whose assertions a client accepts.
#[derive(Clone)]
pub(super) enum AssertionTrust {
    /// `private_key_jwt` (RFC 7523 §3): `iss` and `sub` the client id, `aud` the server's
    /// issuer or its token endpoint's URL, signed by a key of the client's JWKS.
    Own(KeySet),
    /// Another issuer's JWTs.
    Federated(FederatedCredential),
}

impl fmt::Debug for AssertionTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Own(keys) => f.debug_tuple("Own").field(&keys.len()).finish(),
            Self::Federated(credential) => credential.fmt(f),
        }
    }
}

/// What an assertion is checked against, besides the client's trust.
pub(super) struct AssertionContext<'a> {
    pub(super) client_id: &'a str,
    /// The server's issuer identifier, `http://127.0.0.1:PORT`.
    pub(super) issuer: &'a str,
    /// The token endpoint's URL as the client requested it (`/token` or the Entra-shaped path).
    pub(super) token_url: &'a str,
    /// The server's time, seconds since the Unix epoch.
    pub(super) now: u64,
    pub(super) seen: &'a SeenJtis,
}

/// Checks a client assertion against the client's trusted keys and issuers, refusing it with
/// `invalid_client` and the reason, worded as real servers word it.
pub(super) fn verify_assertion(
    trusts: &[AssertionTrust],
    assertion: &str,
    context: &AssertionContext<'_>,
) -> Result<(), Refusal> {
    let decoded = jws::decode(assertion)
        .map_err(|e| invalid_client(format!("the client assertion is not a compact JWS: {e}")))?;
    let iss = decoded
        .claim_str("iss")
        .ok_or_else(|| invalid_client("the client assertion has no iss"))?;
    let trust = trusts
        .iter()
        .find(|trust| match trust {
            AssertionTrust::Own(_) => iss == context.client_id,
            AssertionTrust::Federated(credential) => iss == credential.issuer,
        })
        .ok_or_else(|| {
            invalid_client(format!(
                "the client assertion's issuer `{}` is not trusted for this client",
                jws::shown(iss)
            ))
        })?;
    let (keys, subject, audiences, single_use) = match trust {
        AssertionTrust::Own(keys) => (
            keys,
            context.client_id,
            vec![context.issuer, context.token_url],
            true,
        ),
        AssertionTrust::Federated(credential) => (
            &credential.keys,
            credential.subject.as_str(),
            vec![credential.audience.as_str()],
            credential.single_use,
        ),
    };
    if !keys.verifies(&decoded) {
        return Err(invalid_client(
            "the client assertion's signature does not verify with a key trusted for its issuer",
        ));
    }
    let sub = decoded.claim_str("sub").unwrap_or_default();
    if sub != subject {
        return Err(invalid_client(format!(
            "the client assertion's subject `{}` is not the one trusted for its issuer",
            jws::shown(sub)
        )));
    }
    if !names_an_audience(&decoded, &audiences) {
        return Err(invalid_client(format!(
            "the client assertion's audience is not {}",
            audiences.join(" or ")
        )));
    }
    check_times(&decoded, context.now)?;
    if !single_use {
        return Ok(());
    }
    let jti = decoded
        .claim_str("jti")
        .ok_or_else(|| invalid_client("the client assertion has no jti (RFC 7523 §3)"))?;
    if !context.seen.first_use(&format!("{iss} {jti}")) {
        return Err(invalid_client(
            "the client assertion's jti was used before: send a fresh assertion",
        ));
    }
    Ok(())
}

/// Whether `aud`, a string or an array of strings (RFC 7519 §4.1.3), contains one of
/// `audiences`.
fn names_an_audience(decoded: &Decoded<'_>, audiences: &[&str]) -> bool {
    match decoded.claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(&aud.as_str()),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.contains(&aud)),
        _ => false,
    }
}

/// `exp` required and not past, `nbf` and `iat` (if any) not in the future, each with
/// [`ASSERTION_LEEWAY`] at the server's time `now`.
fn check_times(decoded: &Decoded<'_>, now: u64) -> Result<(), Refusal> {
    let time = |name: &str| decoded.claims.get(name).and_then(Value::as_u64);
    let exp = time("exp")
        .ok_or_else(|| invalid_client("the client assertion has no exp (RFC 7523 §3)"))?;
    if exp.saturating_add(ASSERTION_LEEWAY) <= now {
        return Err(invalid_client(format!(
            "the client assertion expired at {exp}; the server's time is {now}"
        )));
    }
    let future = |t: u64| t > now.saturating_add(ASSERTION_LEEWAY);
    if let Some(nbf) = time("nbf").filter(|nbf| future(*nbf)) {
        return Err(invalid_client(format!(
            "the client assertion is not yet valid: its nbf {nbf} is after the server's time {now}"
        )));
    }
    if let Some(iat) = time("iat").filter(|iat| future(*iat)) {
        return Err(invalid_client(format!(
            "the client assertion was issued in the future: its iat {iat} is after the server's time {now}"
        )));
    }
    Ok(())
}
