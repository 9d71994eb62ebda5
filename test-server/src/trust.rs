//! Other issuers whose JWT access tokens (RFC 9068) the resource accepts: each issuer with its
//! signing keys (a JWKS, RFC 7517 §5) and the audience a token must be for.

use std::fmt;

use serde_json::Value;

use super::jws::{Decoded, PublicKey};

/// The largest JWKS document [`TrustedIssuer::new`] reads.
pub const MAX_JWKS_LEN: usize = 64 * 1024;

/// Why a trusted issuer could not be set up: its JWKS is not one the server can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The document is not a JSON object with a `keys` array, or is over [`MAX_JWKS_LEN`].
    #[error(
        "the JWKS is not a JSON object with a `keys` array of at most {MAX_JWKS_LEN} bytes: pass the issuer's jwks_uri document"
    )]
    NotAJwks,
    /// A key of the set cannot be read: the reason says why (a private member, an unsupported
    /// type, a malformed member).
    #[error("key {index} of the JWKS cannot be used: {reason}")]
    BadKey {
        /// The key's position in `keys`, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// No key of the set is for signatures.
    #[error("the JWKS has no signing key: pass the issuer's own jwks_uri document")]
    NoSigningKey,
    /// The issuer or the audience is empty.
    #[error("the trusted issuer and audience must not be empty")]
    Empty,
}

/// An issuer whose JWT access tokens (RFC 9068) the test server's resource accepts: signed by
/// a key of its JWKS (the one its `kid` names, if any; ES256, ES384, EdDSA, RS256 or PS256),
/// `iss` the issuer, `aud` containing the audience, `exp` in the future, `nbf` (if any) at most
/// [`DPOP_PROOF_WINDOW`](crate::DPOP_PROOF_WINDOW) ahead, and bound to the DPoP proof's key when they carry `cnf.jkt`. Their `client_id` claim
/// (or `sub`) and `scope` make the [`AccessGrant`](crate::AccessGrant). The header's
/// `typ` is not checked, since not every server sets RFC 9068's `at+jwt`; such tokens cannot be
/// [revoked](crate::TestServer::revoke).
///
/// Give it to [`TestServerBuilder::trust`](crate::TestServerBuilder::trust).
#[derive(Clone)]
pub struct TrustedIssuer {
    pub(super) issuer: String,
    pub(super) audience: String,
    keys: KeySet,
}

/// The signing keys of a JWKS (RFC 7517 §5), as read for a [`TrustedIssuer`] or a
/// [`FederatedCredential`](crate::FederatedCredential).
#[derive(Clone)]
pub(super) struct KeySet(Vec<TrustedKey>);

#[derive(Clone)]
struct TrustedKey {
    kid: Option<String>,
    /// The key's `alg`, when the JWKS names one.
    alg: Option<String>,
    key: PublicKey,
}

impl TrustedIssuer {
    /// Reads the issuer's JWKS (`jwks_json`, the document at its `jwks_uri`). Keys whose `use`
    /// is not `sig` are skipped.
    ///
    /// # Errors
    ///
    /// [`JwksError`] if the document is not a JWKS, a signing key in it cannot be read (a
    /// private key, an unsupported type), it has no signing key, or `issuer` or `audience` is
    /// empty.
    pub fn new(issuer: &str, jwks_json: &str, audience: &str) -> Result<Self, JwksError> {
        if issuer.is_empty() || audience.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: KeySet::parse(jwks_json)?,
        })
    }

    /// The issuer, as tokens' `iss` must name it.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience tokens must name in `aud`.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Whether a key of the set (the one named by `kid` when the header has one) verifies the
    /// token's signature.
    pub(super) fn verifies(&self, token: &Decoded<'_>) -> bool {
        self.keys.verifies(token)
    }
}

impl KeySet {
    /// Reads the signing keys of a JWKS document; keys whose `use` is not `sig` are skipped.
    pub(super) fn parse(jwks_json: &str) -> Result<Self, JwksError> {
        if jwks_json.len() > MAX_JWKS_LEN {
            return Err(JwksError::NotAJwks);
        }
        let document: Value = serde_json::from_str(jwks_json).map_err(|_| JwksError::NotAJwks)?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAJwks)?;
        let mut keys = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            if entry.get("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let key =
                PublicKey::from_jwk(entry).map_err(|e| JwksError::BadKey { index, reason: e.0 })?;
            let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
            keys.push(TrustedKey {
                kid: text("kid"),
                alg: text("alg"),
                key,
            });
        }
        if keys.is_empty() {
            return Err(JwksError::NoSigningKey);
        }
        Ok(Self(keys))
    }

    /// How many keys the set holds.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether a key of the set (the one named by `kid` when the header has one) verifies the
    /// token's signature.
    pub(super) fn verifies(&self, token: &Decoded<'_>) -> bool {
        let alg = token.alg().unwrap_or_default();
        let kid = token.header_str("kid");
        self.0
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg) && k.key.fits(alg))
            .any(|k| token.verify(&k.key).is_ok())
    }
}

impl fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish()
    }
}
