//! JWT client authentication (RFC 7523 §2.2, OpenID Connect Core §9): a fresh client assertion
//! for every attempt, signed by a [`JwsSigner`] of the caller's choosing.
//!
//! This module needs no crypto library: it lays out the JWS (RFC 7515 §7.1, compact
//! serialization) and leaves the signature to the signer, which may be a key in an HSM or a cloud
//! KMS. The built-in signers (`PrivateKey`, `HmacKey`) come with feature `jwt`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::attempt::Attempt;
use crate::client_auth::AuthMethod;
use crate::client_auth::identity::{CredentialIdentity, Instance};
use crate::endpoint::TokenUrl;
use crate::error::Error;

/// The error a [`JwsSigner`] of the caller's returns, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1): the `alg` header of a signed JWT.
///
/// Names are case-sensitive (RFC 7515 §4.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// `HS256`: HMAC with SHA-256 (RFC 7518 §3.2), for `client_secret_jwt`.
    Hs256,
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
    /// `ES256`: ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
    /// `PS256`: RSASSA-PSS with SHA-256 and MGF1 with SHA-256 (RFC 7518 §3.5).
    Ps256,
    /// `EdDSA` (RFC 8037 §3.1); the built-in signer uses Ed25519.
    EdDsa,
    /// Any other algorithm, kept as named, for a signer of the caller's.
    Other(Box<str>),
}

impl JwsAlgorithm {
    /// Reads an algorithm name, case-sensitively.
    #[must_use]
    pub fn parse(name: &str) -> Self {
        match name {
            "HS256" => Self::Hs256,
            "RS256" => Self::Rs256,
            "ES256" => Self::Es256,
            "PS256" => Self::Ps256,
            "EdDSA" => Self::EdDsa,
            other => Self::Other(other.into()),
        }
    }

    /// The algorithm's registered name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::Ps256 => "PS256",
            Self::EdDsa => "EdDSA",
            Self::Other(name) => name,
        }
    }

    /// Whether the algorithm is a MAC (`HS…`), whose key is a shared secret: such a key signs
    /// `client_secret_jwt` assertions and never DPoP proofs.
    #[must_use]
    pub fn is_symmetric(&self) -> bool {
        self.as_str().starts_with("HS")
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that signs JWTs: a built-in key (feature `jwt`), or a key in an HSM or a cloud KMS
/// behind an implementation of your own.
///
/// The crate builds the JWS signing input and calls [`sign`](Self::sign) once per JWT, so once
/// per attempt at a request. `sign` may block (a KMS call): adapters call it on the task that
/// sends the request.
pub trait JwsSigner: Send + Sync {
    /// The algorithm, for the `alg` header.
    fn algorithm(&self) -> JwsAlgorithm;

    /// The key's id, for the `kid` header of a client assertion; `None` (the default) leaves
    /// the header out.
    fn key_id(&self) -> Option<&str> {
        None
    }

    /// The public key, which a DPoP proof carries in its `jwk` header (RFC 9449 §4.2); `None`
    /// (the default) for a symmetric key or a signer that does not know it. A signer without
    /// one can sign client assertions but cannot make a `DpopKey` (feature `jwt`).
    fn public_jwk(&self) -> Option<PublicJwk> {
        None
    }

    /// Signs `signing_input` (`BASE64URL(header) "." BASE64URL(claims)`, RFC 7515 §5.1) and
    /// returns the signature as JWS wants it: for ECDSA, the fixed-width `R ‖ S` of RFC 7518
    /// §3.4, not DER.
    ///
    /// # Errors
    ///
    /// Whatever the signer reports; it becomes [`Error::Signing`], with this as its source. It
    /// must not hold key material.
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, BoxError>;
}

/// A public key as a JWK (RFC 7517), with exactly the members RFC 7638 §3.2 requires, so that
/// its JSON is also the input of its thumbprint.
///
/// Build one from the public key's bytes, for a [`JwsSigner`] of your own.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicJwk(Jwk);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Jwk {
    Ec {
        crv: Box<str>,
        x: Box<str>,
        y: Box<str>,
    },
    Okp {
        crv: Box<str>,
        x: Box<str>,
    },
    Rsa {
        e: Box<str>,
        n: Box<str>,
    },
}

impl PublicJwk {
    /// An elliptic-curve key (`kty` `EC`, RFC 7518 §6.2.1): the curve's name (`P-256`) and the
    /// point's coordinates, big-endian, each the full width of the curve (32 bytes for P-256).
    #[must_use]
    pub fn ec(crv: &str, x: &[u8], y: &[u8]) -> Self {
        Self(Jwk::Ec {
            crv: crv.into(),
            x: BASE64URL.encode(x).into(),
            y: BASE64URL.encode(y).into(),
        })
    }

    /// An octet key pair (`kty` `OKP`, RFC 8037 §2): the curve's name (`Ed25519`) and the public
    /// key's bytes.
    #[must_use]
    pub fn okp(crv: &str, x: &[u8]) -> Self {
        Self(Jwk::Okp {
            crv: crv.into(),
            x: BASE64URL.encode(x).into(),
        })
    }

    /// An RSA key (`kty` `RSA`, RFC 7518 §6.3.1): the modulus and the public exponent,
    /// big-endian; leading zero bytes are dropped, as §6.3.1.1 requires.
    #[must_use]
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        let unsigned = |bytes: &[u8]| {
            let start = bytes
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(bytes.len().saturating_sub(1));
            BASE64URL.encode(&bytes[start..]).into()
        };
        Self(Jwk::Rsa {
            e: unsigned(e),
            n: unsigned(n),
        })
    }

    /// The key type: `EC`, `OKP` or `RSA`.
    #[must_use]
    pub fn kty(&self) -> &'static str {
        match &self.0 {
            Jwk::Ec { .. } => "EC",
            Jwk::Okp { .. } => "OKP",
            Jwk::Rsa { .. } => "RSA",
        }
    }

    /// The JWK as JSON, members in lexicographic order without white space: the form RFC 7638
    /// §3 hashes, and a valid JWK to publish in a JWKS.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), base64url-encoded: the `jkt` that a DPoP-bound
    /// token's `cnf` claim names (RFC 9449 §6).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[must_use]
    pub fn thumbprint(&self) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.to_json().as_bytes());
        BASE64URL.encode(digest.as_ref())
    }
}

impl Serialize for PublicJwk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A struct keeps this order whatever serde_json's features: RFC 7638 §3.3 wants it.
        match &self.0 {
            Jwk::Ec { crv, x, y } => {
                let mut s = serializer.serialize_struct("Jwk", 4)?;
                s.serialize_field("crv", crv)?;
                s.serialize_field("kty", "EC")?;
                s.serialize_field("x", x)?;
                s.serialize_field("y", y)?;
                s.end()
            }
            Jwk::Okp { crv, x } => {
                let mut s = serializer.serialize_struct("Jwk", 3)?;
                s.serialize_field("crv", crv)?;
                s.serialize_field("kty", "OKP")?;
                s.serialize_field("x", x)?;
                s.end()
            }
            Jwk::Rsa { e, n } => {
                let mut s = serializer.serialize_struct("Jwk", 3)?;
                s.serialize_field("e", e)?;
                s.serialize_field("kty", "RSA")?;
                s.serialize_field("n", n)?;
                s.end()
            }
        }
    }
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("PublicJwk");
        debug.field("kty", &self.kty());
        if let Jwk::Ec { crv, .. } | Jwk::Okp { crv, .. } = &self.0 {
            debug.field("crv", crv);
        }
        debug.finish_non_exhaustive()
    }
}

/// `private_key_jwt` or `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a client
/// assertion signed afresh for every attempt at the token request.
///
/// The assertion's claims are `iss` and `sub` the client id, `aud` the token endpoint's URL (or
/// the audience set by [`with_audience`](Self::with_audience), such as the issuer), `jti` unique
/// per assertion (from the attempt's entropy), `iat` the attempt's time and `exp` `iat` plus
/// the [lifetime](Self::with_lifetime). Its header is `alg`, and `kid` when the signer has one.
///
/// Cheap to clone: the signer is shared.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use client_credentials::{Attempt, ClientCredentials, TokenUrl};
/// use client_credentials::auth::{BoxError, ClientAuth, JwsAlgorithm, JwsSigner, JwtAuth};
///
/// /// A key in a cloud KMS (feature `jwt` has built-in keys: `PrivateKey`, `HmacKey`).
/// struct Kms;
///
/// impl JwsSigner for Kms {
///     fn algorithm(&self) -> JwsAlgorithm {
///         JwsAlgorithm::Es256
///     }
///     fn key_id(&self) -> Option<&str> {
///         Some("kms-key-1")
///     }
///     fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, BoxError> {
///         # return Ok(vec![0; 64]);
///         todo!("ask the KMS to sign {} bytes", signing_input.len())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientCredentials::with_auth(
///     TokenUrl::new("https://idp.example.com/token")?,
///     "my-client",
///     ClientAuth::Jwt(JwtAuth::new(Kms)),
/// )?;
/// let request = client.token_request().scope("read").build()?;
/// # let (now, entropy) = (SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), [7; 32]);
/// // For every attempt, retries included: a new assertion.
/// let http_request = request.http_request(&Attempt::new(now, entropy))?;
/// assert!(String::from_utf8_lossy(http_request.body().secret()).contains("&client_assertion="));
/// assert_eq!(client.auth_method().as_str(), "private_key_jwt");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwtAuth {
    signer: Arc<dyn JwsSigner>,
    audience: Option<Box<str>>,
    issuer: Option<Box<str>>,
    token_endpoint_audience: bool,
    explicit_type: bool,
    lifetime: Duration,
}

impl JwtAuth {
    /// The `typ` header of a client assertion by draft-ietf-oauth-rfc7523bis (§4), which tells
    /// the server the JWT is meant for client authentication and nothing else.
    pub const CLIENT_AUTHENTICATION_TYPE: &str = "client-authentication+jwt";

    /// The signing key as a cache key compares it: its public key, or, for a key without one
    /// (an HMAC key), this very signer.
    pub(crate) fn credential_identity(&self) -> CredentialIdentity {
        match self.signer.public_jwk() {
            Some(jwk) => CredentialIdentity::PublicKey(jwk.to_json().into()),
            None => CredentialIdentity::Instance(Instance::of(&self.signer)),
        }
    }

    /// The assertion's default lifetime: 60 seconds, long enough for clock skew, short enough
    /// that a leaked assertion is soon useless.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

    /// Signs assertions with `signer`: `private_key_jwt` for an asymmetric algorithm,
    /// `client_secret_jwt` for an `HS…` one.
    #[must_use]
    pub fn new(signer: impl JwsSigner + 'static) -> Self {
        Self::from_arc(Arc::new(signer))
    }

    /// Like [`new`](Self::new), for a signer that is shared, such as one key that also signs
    /// DPoP proofs.
    #[must_use]
    pub fn from_arc(signer: Arc<dyn JwsSigner>) -> Self {
        Self {
            signer,
            audience: None,
            issuer: None,
            token_endpoint_audience: false,
            explicit_type: Self::DEFAULT_EXPLICIT_TYPE,
            lifetime: Self::DEFAULT_LIFETIME,
        }
    }

    /// Whether assertions carry the `typ` header [`JwtAuth::CLIENT_AUTHENTICATION_TYPE`] unless
    /// told otherwise: no. draft-ietf-oauth-rfc7523bis asks for it, but a server that checks
    /// `typ` against a list of its own may refuse it; oidc-provider 9 accepts assertions with
    /// and without it (pinned in `tests/interop/oidc_provider.rs`). Turn it on with
    /// [`with_explicit_type`](Self::with_explicit_type) for a server that requires it.
    pub const DEFAULT_EXPLICIT_TYPE: bool = false;

    /// Sets the `aud` claim to exactly this value, whatever the issuer and the token endpoint.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into().into_boxed_str());
        self
    }

    /// The authorization server's issuer identifier (RFC 8414 §2), which becomes the `aud`
    /// claim: draft-ietf-oauth-rfc7523bis and FAPI 2.0 make the issuer the one audience of a
    /// client assertion, after the audience-injection attacks of 2025 (CVE-2025-27370,
    /// CVE-2025-27371), where an assertion addressed to an endpoint URL could be replayed at
    /// another server. [`ServerMetadata::client`](crate::discovery::ServerMetadata::client) sets it from
    /// the discovered metadata; without it the audience is the token endpoint's URL.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into().into_boxed_str());
        self
    }

    /// Addresses assertions to the token endpoint's URL (RFC 7523 §3 as first published) even
    /// when the issuer is known, for a server that accepts nothing else.
    #[must_use]
    pub fn with_token_endpoint_audience(mut self) -> Self {
        self.token_endpoint_audience = true;
        self
    }

    /// Whether assertions carry the `typ` header [`JwtAuth::CLIENT_AUTHENTICATION_TYPE`]
    /// (draft-ietf-oauth-rfc7523bis §4); the default is
    /// [`DEFAULT_EXPLICIT_TYPE`](Self::DEFAULT_EXPLICIT_TYPE).
    #[must_use]
    pub fn with_explicit_type(mut self, explicit: bool) -> Self {
        self.explicit_type = explicit;
        self
    }

    /// Sets how long each assertion is valid, in whole seconds (at least one); the default is
    /// [`DEFAULT_LIFETIME`](Self::DEFAULT_LIFETIME).
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// `private_key_jwt`, or `client_secret_jwt` for a symmetric algorithm.
    #[must_use]
    pub fn method(&self) -> AuthMethod {
        if self.signer.algorithm().is_symmetric() {
            AuthMethod::ClientSecretJwt
        } else {
            AuthMethod::PrivateKeyJwt
        }
    }

    /// The signer's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.signer.algorithm()
    }

    /// The audience set by [`with_audience`](Self::with_audience), if any.
    #[must_use]
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The issuer set by [`with_issuer`](Self::with_issuer), if any.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// Whether assertions are addressed to the token endpoint's URL even when the issuer is
    /// known ([`with_token_endpoint_audience`](Self::with_token_endpoint_audience)).
    #[must_use]
    pub fn token_endpoint_audience(&self) -> bool {
        self.token_endpoint_audience
    }

    /// Whether assertions carry the `typ` header.
    #[must_use]
    pub fn explicit_type(&self) -> bool {
        self.explicit_type
    }

    /// The `aud` claim for `token_url`: the configured audience, else the issuer (unless
    /// [`with_token_endpoint_audience`](Self::with_token_endpoint_audience)), else the token
    /// endpoint's whole URL.
    fn audience_for(&self, token_url: &TokenUrl) -> String {
        if let Some(audience) = &self.audience {
            return audience.to_string();
        }
        match &self.issuer {
            Some(issuer) if !self.token_endpoint_audience => issuer.to_string(),
            // Whole: the URL's Display hides the query.
            _ => token_url.as_uri().to_string(),
        }
    }

    /// The assertion's lifetime.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs the client assertion for one attempt.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        token_url: &TokenUrl,
        attempt: &Attempt,
    ) -> Result<String, Error> {
        let iat = attempt.unix_time()?;
        let audience = self.audience_for(token_url);
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: &audience,
            jti: &attempt.assertion_jti(),
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs().max(1)),
        };
        let algorithm = self.signer.algorithm();
        let header = Header {
            typ: self
                .explicit_type
                .then_some(JwtAuth::CLIENT_AUTHENTICATION_TYPE),
            alg: algorithm.as_str(),
            kid: self.signer.key_id(),
            jwk: None,
        };
        sign(&*self.signer, &header, &claims)
    }
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("method", &self.method())
            .field("algorithm", &self.signer.algorithm())
            .field("key_id", &self.signer.key_id())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("token_endpoint_audience", &self.token_endpoint_audience)
            .field("explicit_type", &self.explicit_type)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// A JOSE header (RFC 7515 §4), members in the order they are written.
#[derive(Serialize)]
pub(crate) struct Header<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) typ: Option<&'a str>,
    pub(crate) alg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jwk: Option<&'a PublicJwk>,
}

/// The claims of a client assertion (RFC 7523 §3).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
}

/// A JWS in compact serialization (RFC 7515 §7.1): header, claims and signature.
pub(crate) fn sign(
    signer: &dyn JwsSigner,
    header: &Header<'_>,
    claims: &impl Serialize,
) -> Result<String, Error> {
    let header = serde_json::to_vec(header).map_err(Error::signing)?;
    let claims = serde_json::to_vec(claims).map_err(Error::signing)?;
    let mut jws = String::with_capacity(512);
    BASE64URL.encode_string(header, &mut jws);
    jws.push('.');
    BASE64URL.encode_string(claims, &mut jws);
    let signature = signer.sign(jws.as_bytes()).map_err(Error::signing)?;
    if signature.is_empty() {
        return Err(Error::signing("the signer returned an empty signature"));
    }
    jws.push('.');
    BASE64URL.encode_string(signature, &mut jws);
    Ok(jws)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::test_support::{at, url};

    /// The token URL of these tests, with a query: the assertions' `aud`, but for an issuer's.
    const TOKEN_URL: &str = "https://idp.example.com/oauth/token?tenant=a";

    /// A signer whose "signature" is a fixed marker, to pin everything but the cryptography.
    struct Fixed(JwsAlgorithm, Option<&'static str>);

    impl JwsSigner for Fixed {
        fn algorithm(&self) -> JwsAlgorithm {
            self.0.clone()
        }
        fn key_id(&self) -> Option<&str> {
            self.1
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, BoxError> {
            Ok(b"sig".to_vec())
        }
    }

    struct Failing;

    impl JwsSigner for Failing {
        fn algorithm(&self) -> JwsAlgorithm {
            JwsAlgorithm::Other("KMS".into())
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, BoxError> {
            Err("the kms is unreachable".into())
        }
    }

    fn attempt() -> Attempt {
        let mut entropy = [0u8; 32];
        for (i, b) in entropy.iter_mut().enumerate() {
            *b = i as u8;
        }
        Attempt::new(at(1_700_000_000), entropy)
    }

    fn decode(part: &str) -> String {
        String::from_utf8(BASE64URL.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn algorithms_round_trip_case_sensitively() {
        for name in ["HS256", "RS256", "ES256", "PS256", "EdDSA", "ES384"] {
            assert_eq!(JwsAlgorithm::parse(name).as_str(), name);
        }
        assert_eq!(
            JwsAlgorithm::parse("es256"),
            JwsAlgorithm::Other("es256".into())
        );
        assert!(JwsAlgorithm::Hs256.is_symmetric());
        assert!(JwsAlgorithm::parse("HS512").is_symmetric());
        assert!(!JwsAlgorithm::EdDsa.is_symmetric());
    }

    #[test]
    fn golden_assertion_rfc7523_3() {
        let jwt = JwtAuth::new(Fixed(JwsAlgorithm::Es256, Some("k1")));
        let assertion = jwt
            .assertion("my-client", &url(TOKEN_URL), &attempt())
            .unwrap();
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0]), r#"{"alg":"ES256","kid":"k1"}"#);
        assert_eq!(
            decode(parts[1]),
            r#"{"iss":"my-client","sub":"my-client","aud":"https://idp.example.com/oauth/token?tenant=a","jti":"AAECAwQFBgcICQoLDA0ODw","iat":1700000000,"exp":1700000060}"#
        );
        assert_eq!(parts[2], "c2ln");
        assert_eq!(jwt.method(), AuthMethod::PrivateKeyJwt);
    }

    #[test]
    fn audience_lifetime_and_no_kid() {
        let jwt = JwtAuth::new(Fixed(JwsAlgorithm::Hs256, None))
            .with_audience("https://idp.example.com")
            .with_lifetime(Duration::from_millis(300));
        let assertion = jwt.assertion("c", &url(TOKEN_URL), &attempt()).unwrap();
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(decode(parts[0]), r#"{"alg":"HS256"}"#);
        let claims: serde_json::Value = serde_json::from_str(&decode(parts[1])).unwrap();
        assert_eq!(claims["aud"], "https://idp.example.com");
        assert_eq!(claims["exp"], 1_700_000_001, "at least one second");
        assert_eq!(jwt.method(), AuthMethod::ClientSecretJwt);
    }

    #[test]
    fn audience_is_the_issuer_when_known_and_typ_is_configurable() {
        let claims_and_header = |jwt: &JwtAuth| {
            let assertion = jwt.assertion("c", &url(TOKEN_URL), &attempt()).unwrap();
            let parts: Vec<&str> = assertion.split('.').collect();
            let claims: serde_json::Value = serde_json::from_str(&decode(parts[1])).unwrap();
            (claims["aud"].clone(), decode(parts[0]))
        };
        let plain = JwtAuth::new(Fixed(JwsAlgorithm::Es256, None));
        assert!(!plain.explicit_type());
        let (aud, header) = claims_and_header(&plain);
        assert_eq!(aud, "https://idp.example.com/oauth/token?tenant=a");
        assert_eq!(header, r#"{"alg":"ES256"}"#);

        let with_issuer = plain.clone().with_issuer("https://idp.example.com");
        assert_eq!(with_issuer.issuer(), Some("https://idp.example.com"));
        let (aud, _) = claims_and_header(&with_issuer);
        assert_eq!(
            aud, "https://idp.example.com",
            "a single string, not an array"
        );
        let (aud, _) = claims_and_header(&with_issuer.clone().with_token_endpoint_audience());
        assert_eq!(aud, "https://idp.example.com/oauth/token?tenant=a");
        let (aud, _) = claims_and_header(&with_issuer.clone().with_audience("urn:x"));
        assert_eq!(aud, "urn:x", "an explicit audience wins");

        let typed = with_issuer.with_explicit_type(true);
        let (_, header) = claims_and_header(&typed);
        assert_eq!(
            header,
            r#"{"typ":"client-authentication+jwt","alg":"ES256"}"#
        );
    }

    #[test]
    fn each_attempt_gets_its_own_jti_and_time() {
        let jwt = JwtAuth::new(Fixed(JwsAlgorithm::Es256, None));
        let later = Attempt::new(at(1_700_000_005), [7; 32]);
        let one = jwt.assertion("c", &url(TOKEN_URL), &attempt()).unwrap();
        let two = jwt.assertion("c", &url(TOKEN_URL), &later).unwrap();
        let claims = |jws: &str| -> serde_json::Value {
            serde_json::from_str(&decode(jws.split('.').nth(1).unwrap())).unwrap()
        };
        assert_ne!(claims(&one)["jti"], claims(&two)["jti"]);
        assert_eq!(claims(&two)["iat"], 1_700_000_005);
    }

    #[test]
    fn a_failing_signer_is_a_typed_error() {
        let jwt = JwtAuth::new(Failing);
        let error = jwt.assertion("c", &url(TOKEN_URL), &attempt()).unwrap_err();
        assert!(matches!(error, Error::Signing { .. }));
        let text = error.to_string();
        assert!(text.starts_with("could not sign"), "{text}");
        assert!(
            std::error::Error::source(&error)
                .unwrap()
                .to_string()
                .contains("kms")
        );
        let before_1970 = Attempt::new(SystemTime::UNIX_EPOCH - Duration::from_secs(1), [0; 32]);
        assert!(matches!(
            JwtAuth::new(Fixed(JwsAlgorithm::Es256, None)).assertion(
                "c",
                &url(TOKEN_URL),
                &before_1970
            ),
            Err(Error::ClockBeforeUnixEpoch)
        ));
    }

    #[test]
    fn token_request_carries_a_fresh_assertion_per_attempt() {
        use crate::client::ClientCredentials;
        use crate::client_auth::ClientAuth;
        let jwt = JwtAuth::new(Fixed(JwsAlgorithm::Es256, None));
        let client =
            ClientCredentials::with_auth(url(TOKEN_URL), "c 1", ClientAuth::Jwt(jwt)).unwrap();
        assert_eq!(client.auth_method(), AuthMethod::PrivateKeyJwt);
        let request = client.token_request().scope("a").build().unwrap();
        let body = |attempt: &Attempt| {
            let http = request.http_request(attempt).unwrap();
            assert!(http.headers().get(http::header::AUTHORIZATION).is_none());
            String::from_utf8(http.body().secret().to_vec()).unwrap()
        };
        let first = body(&attempt());
        let (prefix, assertion) = first.split_once("&client_assertion=").unwrap();
        assert_eq!(
            prefix,
            "grant_type=client_credentials&client_id=c+1&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&scope=a"
        );
        let claims = decode(assertion.split('.').nth(1).unwrap());
        assert!(claims.contains(r#""iss":"c 1","sub":"c 1""#), "{claims}");
        let retry = Attempt::new(attempt().now() + Duration::from_secs(2), [9; 32]);
        let second = body(&retry);
        assert_ne!(first, second, "a retry signs a new assertion");
        assert!(second.starts_with(prefix));
        // Without the attempt there is no assertion: the server would refuse it.
        let bare = request.unsigned_http_request();
        assert!(!String::from_utf8_lossy(bare.body().secret()).contains("client_assertion="));
        let failing = ClientCredentials::with_auth(
            url(TOKEN_URL),
            "c",
            ClientAuth::Jwt(JwtAuth::new(Failing)),
        )
        .unwrap();
        let request = failing.token_request().build().unwrap();
        assert!(matches!(
            request.http_request(&attempt()),
            Err(Error::Signing { .. })
        ));
    }

    #[test]
    fn static_auth_is_the_same_with_or_without_an_attempt() {
        let client = crate::client::ClientCredentials::new(
            url(TOKEN_URL),
            "c",
            crate::secret::ClientSecret::new("s"),
        );
        let request = client.token_request().build().unwrap();
        let plain = request.unsigned_http_request();
        let attempt = request.http_request(&attempt()).unwrap();
        assert_eq!(plain.uri(), attempt.uri());
        assert_eq!(plain.headers(), attempt.headers());
        assert_eq!(plain.body().secret(), attempt.body().secret());
    }

    #[test]
    fn jwk_members_in_rfc7638_order() {
        let ec = PublicJwk::ec("P-256", &[1; 32], &[2; 32]);
        assert_eq!(
            ec.to_json(),
            r#"{"crv":"P-256","kty":"EC","x":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","y":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"}"#
        );
        assert_eq!(
            PublicJwk::okp("Ed25519", &[3; 4]).to_json(),
            r#"{"crv":"Ed25519","kty":"OKP","x":"AwMDAw"}"#
        );
        assert_eq!(
            PublicJwk::rsa(&[0, 0, 0xab], &[0, 1, 0, 1]).to_json(),
            r#"{"e":"AQAB","kty":"RSA","n":"qw"}"#
        );
        assert_eq!(
            format!("{ec:?}"),
            r#"PublicJwk { kty: "EC", crv: "P-256", .. }"#
        );
    }

    /// RFC 7638 §3.1's example key and thumbprint.
    #[cfg(feature = "jwt")]
    #[test]
    fn thumbprint_rfc7638_3_1() {
        let n = BASE64URL
            .decode(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            )
            .unwrap();
        let jwk = PublicJwk::rsa(&n, &[1, 0, 1]);
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
