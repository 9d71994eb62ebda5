//! DPoP (RFC 9449): proofs of possession of a key, for the token request and for every call to
//! the resource server with the bound token (feature `jwt`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

use crate::attempt::Attempt;
use crate::client_auth::jwt::{self, Header, JwsAlgorithm, JwsSigner, PublicJwk};
use crate::error::Error;
use crate::secret::AccessToken;

/// The `DPoP` request header (RFC 9449 §4.1).
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");

/// A DPoP key: signs the proofs that bind a token to it (RFC 9449 §4) and prove possession on
/// every use.
///
/// Give it to [`ClientCredentials::with_dpop`](crate::ClientCredentials::with_dpop) to get
/// DPoP-bound tokens, and present them with [`authorize`](Self::authorize). Any asymmetric
/// [`JwsSigner`] that knows its public key will do: a [`PrivateKey`](crate::auth::PrivateKey)
/// (ES256 and EdDSA are the usual choices, and often all a server accepts) or a key in an HSM.
///
/// Cheap to clone. `Debug` shows the algorithm and thumbprint only.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use client_credentials::{Attempt, ClientCredentials, ClientSecret, TokenUrl};
/// use client_credentials::auth::{JwsAlgorithm, PrivateKey};
/// use client_credentials::dpop::DpopKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256)?)?;
/// let client = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// )
/// .with_dpop(key.clone());
/// let request = client.token_request().build()?;
///
/// # let (now, entropy) = (SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), [7; 32]);
/// // let now = SystemTime::now(); getrandom::fill(&mut entropy)?; for every attempt
/// let http_request = request.http_request(&Attempt::new(now, entropy))?;
/// assert!(http_request.headers().contains_key("dpop"));
///
/// // Later, with the DPoP-bound token, on a request to the API:
/// let token = client_credentials::token::AccessToken::new("the-token");
/// let mut api_request = http::Request::get("https://api.example.com/things").body(())?;
/// key.authorize(&mut api_request, &token, &Attempt::new(now, entropy))?;
/// assert!(api_request.headers()["authorization"].to_str()?.starts_with("DPoP "));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DpopKey(Arc<Inner>);

#[derive(Clone)]
struct Inner {
    signer: Arc<dyn JwsSigner>,
    algorithm: JwsAlgorithm,
    jwk: PublicJwk,
    thumbprint: Box<str>,
    /// How far back each proof's `iat` is set.
    iat_leeway: Duration,
}

/// The claims of a DPoP proof (RFC 9449 §4.2), in the RFC's order.
#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
}

impl DpopKey {
    /// A DPoP key signed for by `signer`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the signer's algorithm is symmetric (RFC 9449 §4.2: "MUST NOT
    /// be `none` or an identifier for a symmetric algorithm") or it gives no public key.
    pub fn new(signer: impl JwsSigner + 'static) -> Result<Self, Error> {
        Self::from_arc(Arc::new(signer))
    }

    /// Like [`new`](Self::new), for a signer that is shared.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_arc(signer: Arc<dyn JwsSigner>) -> Result<Self, Error> {
        let algorithm = signer.algorithm();
        if algorithm.is_symmetric() || algorithm.as_str() == "none" {
            return Err(Error::InvalidKey {
                reason: "a DPoP key must be asymmetric (RFC 9449 §4.2)",
            });
        }
        let jwk = signer.public_jwk().ok_or(Error::InvalidKey {
            reason: "the signer gives no public key (JwsSigner::public_jwk), which a DPoP proof must carry",
        })?;
        let thumbprint = jwk.thumbprint().into_boxed_str();
        Ok(Self(Arc::new(Inner {
            signer,
            algorithm,
            jwk,
            thumbprint,
            iat_leeway: Duration::ZERO,
        })))
    }

    /// The most [`with_iat_leeway`](Self::with_iat_leeway) sets a proof's `iat` back: 60
    /// seconds, well within the proof windows servers accept (RFC 9449 §11.1 suggests minutes),
    /// so that a proof set back is never refused as too old for it.
    pub const MAX_IAT_LEEWAY: Duration = Duration::from_secs(60);

    /// Sets every proof's `iat` this far before the attempt's time, at most
    /// [`MAX_IAT_LEEWAY`](Self::MAX_IAT_LEEWAY) (a longer leeway is taken as that): for a
    /// server that refuses a proof issued later than its own coarse clock, with no leeway of its
    /// own, which otherwise refuses a proof now and then when the two clocks tick apart. In
    /// whole seconds, as `iat` is: one second covers a server's clock truncated to the second.
    #[must_use]
    pub fn with_iat_leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.0).iat_leeway = leeway.min(Self::MAX_IAT_LEEWAY);
        self
    }

    /// How far back each proof's `iat` is set ([`with_iat_leeway`](Self::with_iat_leeway)).
    #[must_use]
    pub fn iat_leeway(&self) -> Duration {
        self.0.iat_leeway
    }

    /// The signing algorithm, to check against the server's
    /// [`dpop_signing_alg_values_supported`](crate::discovery::ServerMetadata::dpop_signing_alg_values_supported).
    #[must_use]
    pub fn algorithm(&self) -> &JwsAlgorithm {
        &self.0.algorithm
    }

    /// The public key, as every proof carries it.
    #[must_use]
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.0.jwk
    }

    /// The key's JWK SHA-256 thumbprint (RFC 7638): the `jkt` of a bound token's `cnf` claim
    /// (RFC 9449 §6), and of the `dpop_jkt` parameter (§10).
    #[must_use]
    pub fn thumbprint(&self) -> &str {
        &self.0.thumbprint
    }

    /// The `DPoP` header value for one attempt at a request (RFC 9449 §4.2).
    ///
    /// The proof's header is `typ` `dpop+jwt`, `alg` and `jwk`; its claims are `jti` (from the
    /// second half of the attempt's entropy), `htm` the method, `htu` the URI without its query
    /// and fragment, `iat` the attempt's time (less the key's [`iat_leeway`](Self::iat_leeway)), `nonce` when the attempt has one, and `ath` the
    /// base64url SHA-256 of `access_token` when one is given, as for a resource request (§7).
    ///
    /// # Errors
    ///
    /// [`Error::UriNotAbsolute`] if `uri` has no scheme or authority;
    /// [`Error::ClockBeforeUnixEpoch`] if the attempt's time is before 1970;
    /// [`Error::Signing`] if the signer fails.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        attempt: &Attempt,
        access_token: Option<&AccessToken>,
    ) -> Result<HeaderValue, Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(Error::UriNotAbsolute);
        };
        let htu = format!("{scheme}://{authority}{}", uri.path());
        let ath = access_token.map(|token| {
            let digest =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.secret().as_bytes());
            BASE64URL.encode(digest.as_ref())
        });
        let claims = ProofClaims {
            jti: &attempt.proof_jti(),
            htm: method.as_str(),
            htu: &htu,
            iat: attempt
                .unix_time()?
                .saturating_sub(self.0.iat_leeway.as_secs()),
            nonce: attempt.dpop_nonce(),
            ath: ath.as_deref(),
        };
        let header = Header {
            typ: Some("dpop+jwt"),
            alg: self.0.algorithm.as_str(),
            kid: None,
            jwk: Some(&self.0.jwk),
        };
        let proof = jwt::sign(&*self.0.signer, &header, &claims)?;
        let mut value = HeaderValue::try_from(proof).map_err(Error::signing)?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Presents a DPoP-bound access token on a request to the resource server (RFC 9449 §7.1):
    /// `Authorization: DPoP <token>` (marked sensitive) and a `DPoP` proof for the request's
    /// method and URI with the token's hash in `ath`. Replaces either header if present.
    ///
    /// Use it for a token whose [`token_type`](crate::Token::token_type) is
    /// [`DPoP`](crate::token::TokenType::DPoP); a server that does not do DPoP returns `Bearer`
    /// tokens, which are sent as usual. If the resource server answers with
    /// [`resource_dpop_retry_nonce`](crate::dpop::resource_dpop_retry_nonce), retry once with the
    /// nonce.
    ///
    /// # Errors
    ///
    /// As [`proof`](Self::proof); [`Error::TokenNotHeaderSafe`] if the token has characters an
    /// HTTP header cannot carry.
    pub fn authorize<B>(
        &self,
        request: &mut http::Request<B>,
        access_token: &AccessToken,
        attempt: &Attempt,
    ) -> Result<(), Error> {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        self.authorize_headers(request.headers_mut(), &method, &uri, access_token, attempt)
    }

    /// [`authorize`](Self::authorize) on a request's parts: sets both headers in `headers`,
    /// or neither.
    pub(crate) fn authorize_headers(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
        uri: &Uri,
        access_token: &AccessToken,
        attempt: &Attempt,
    ) -> Result<(), Error> {
        let proof = self.proof(method, uri, attempt, Some(access_token))?;
        let authorization = crate::token::authorization_value("DPoP", access_token)?;
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(DPOP, proof);
        Ok(())
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.0.algorithm)
            .field("thumbprint", &self.0.thumbprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519};

    use super::*;
    use crate::client_auth::key::tests::{ED25519_PKCS8_PEM, P256_PKCS8_PEM, attempt, verify};
    use crate::client_auth::key::{HmacKey, PrivateKey};

    fn es256() -> (DpopKey, Vec<u8>) {
        let key = PrivateKey::from_pem(JwsAlgorithm::Es256, P256_PKCS8_PEM).unwrap();
        let public = public_bytes(key.public_jwk());
        (DpopKey::new(key).unwrap(), public)
    }

    /// The uncompressed point or raw key, from the JWK's JSON.
    fn public_bytes(jwk: &PublicJwk) -> Vec<u8> {
        let json: serde_json::Value = serde_json::from_str(&jwk.to_json()).unwrap();
        let member = |name: &str| BASE64URL.decode(json[name].as_str().unwrap()).unwrap();
        match jwk.kty() {
            "EC" => [vec![4], member("x"), member("y")].concat(),
            _ => member("x"),
        }
    }

    const ES256_HEADER: &str = r#"{"typ":"dpop+jwt","alg":"ES256","jwk":{"crv":"P-256","kty":"EC","x":"ZYQS9taLokJgUZuQDN3b6wU7DCDstXTXAdKew6KdaPo","y":"a365tYOHKbRJj5MPzrRdLa8DvYm4PVS05KoW1FqxBck"}}"#;

    #[test]
    fn a_proofs_iat_is_set_back_by_the_bounded_leeway() {
        let key = || DpopKey::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).unwrap();
        let iat = |key: &DpopKey| {
            let attempt = Attempt::new(crate::test_support::at(1_700_000_000), [7; 32]);
            let uri: Uri = "https://server.example.com/token".parse().unwrap();
            let proof = key.proof(&Method::POST, &uri, &attempt, None).unwrap();
            let claims = proof
                .to_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap()
                .to_owned();
            let claims: serde_json::Value =
                serde_json::from_slice(&BASE64URL.decode(claims).unwrap()).unwrap();
            claims["iat"].as_u64().unwrap()
        };
        assert_eq!(iat(&key()), 1_700_000_000);
        assert_eq!(
            iat(&key().with_iat_leeway(Duration::from_secs(2))),
            1_699_999_998
        );
        let bounded = key().with_iat_leeway(Duration::from_secs(3600));
        assert_eq!(bounded.iat_leeway(), DpopKey::MAX_IAT_LEEWAY);
        assert_eq!(iat(&bounded), 1_700_000_000 - 60);
    }

    #[test]
    fn golden_token_request_proof_rfc9449_4_2() {
        let (key, public) = es256();
        let uri: Uri = "https://server.example.com/token?tenant=a".parse().unwrap();
        let proof = key.proof(&Method::POST, &uri, &attempt(), None).unwrap();
        assert!(proof.is_sensitive());
        let (header, claims) = verify(proof.to_str().unwrap(), &ECDSA_P256_SHA256_FIXED, &public);
        assert_eq!(header, ES256_HEADER);
        assert_eq!(
            claims,
            r#"{"jti":"EBESExQVFhcYGRobHB0eHw","htm":"POST","htu":"https://server.example.com/token","iat":1700000000}"#
        );
    }

    #[test]
    fn golden_resource_request_with_nonce_and_ath_rfc9449_7_1() {
        let (key, public) = es256();
        let token = AccessToken::new("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
        let mut request = http::Request::builder()
            .method(Method::GET)
            .uri("https://resource.example.org/protectedresource?x=1")
            .header(AUTHORIZATION, "Bearer old")
            .body(())
            .unwrap();
        let attempt = attempt().with_dpop_nonce("eyJ7S_zG.eyJH0-Z.HX4w-7v");
        key.authorize(&mut request, &token, &attempt).unwrap();
        let authorization = &request.headers()[AUTHORIZATION];
        assert_eq!(
            authorization,
            "DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
        );
        assert!(authorization.is_sensitive());
        let proof = request.headers()[DPOP].to_str().unwrap();
        let (header, claims) = verify(proof, &ECDSA_P256_SHA256_FIXED, &public);
        assert_eq!(header, ES256_HEADER);
        // RFC 9449 §7.1's example token and its `ath`.
        assert_eq!(
            claims,
            r#"{"jti":"EBESExQVFhcYGRobHB0eHw","htm":"GET","htu":"https://resource.example.org/protectedresource","iat":1700000000,"nonce":"eyJ7S_zG.eyJH0-Z.HX4w-7v","ath":"fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"}"#
        );
    }

    #[test]
    fn token_request_attempt_carries_a_proof_with_the_nonce_rfc9449_5() {
        use crate::client::ClientCredentials;
        use crate::endpoint::TokenUrl;
        use crate::secret::ClientSecret;
        let (key, public) = es256();
        let token_url = TokenUrl::new("https://server.example.com/token?tenant=a").unwrap();
        let plain = ClientCredentials::new(token_url, "c", ClientSecret::new("s"));
        let bound = plain.clone().with_dpop(key.clone());
        assert_eq!(bound.dpop_key().unwrap().thumbprint(), key.thumbprint());
        let request = bound.token_request().build().unwrap();
        let attempt = attempt().with_dpop_nonce("n-1");
        let http = request.http_request(&attempt).unwrap();
        assert!(
            http.headers()[AUTHORIZATION].is_sensitive(),
            "the client secret is still sent"
        );
        let (header, claims) = verify(
            http.headers()[DPOP].to_str().unwrap(),
            &ECDSA_P256_SHA256_FIXED,
            &public,
        );
        assert_eq!(header, ES256_HEADER);
        assert_eq!(
            claims,
            r#"{"jti":"EBESExQVFhcYGRobHB0eHw","htm":"POST","htu":"https://server.example.com/token","iat":1700000000,"nonce":"n-1"}"#
        );
        assert!(
            request
                .unsigned_http_request()
                .headers()
                .get(DPOP)
                .is_none()
        );
        // A DPoP-bound token is not the token of the same client without the key.
        let unbound = plain.token_request().build().unwrap();
        assert_ne!(request, unbound);
    }

    #[test]
    fn use_dpop_nonce_is_the_retry_step_rfc9449_8() {
        use std::time::{Duration, SystemTime};
        let response = http::Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .header("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")
            .body(r#"{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}"#)
            .unwrap();
        let error = crate::response::rules::ResponseRules::default()
            .parse(&response, SystemTime::UNIX_EPOCH + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(error.dpop_retry_nonce(), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        let other = http::Response::builder()
            .status(400)
            .header("dpop-nonce", "abc")
            .body(r#"{"error":"invalid_dpop_proof"}"#)
            .unwrap();
        let error = crate::response::rules::ResponseRules::default()
            .parse(&other, SystemTime::UNIX_EPOCH)
            .unwrap_err();
        assert_eq!(
            error.dpop_retry_nonce(),
            None,
            "only use_dpop_nonce asks for a retry"
        );
    }

    #[test]
    fn eddsa_proof_verifies() {
        let key = PrivateKey::from_pem(JwsAlgorithm::EdDsa, ED25519_PKCS8_PEM).unwrap();
        let public = public_bytes(key.public_jwk());
        let key = DpopKey::new(key).unwrap();
        let uri: Uri = "http://127.0.0.1:9400/token".parse().unwrap();
        let proof = key.proof(&Method::POST, &uri, &attempt(), None).unwrap();
        let (header, claims) = verify(proof.to_str().unwrap(), &ED25519, &public);
        assert_eq!(
            header,
            r#"{"typ":"dpop+jwt","alg":"EdDSA","jwk":{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}"#
        );
        assert!(
            claims.contains(r#""htu":"http://127.0.0.1:9400/token""#),
            "{claims}"
        );
        // RFC 8037 §A.3's thumbprint of this key.
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn refuses_symmetric_or_keyless_signers_and_relative_uris() {
        let secret = crate::secret::ClientSecret::new("a-client-secret-of-at-least-32-bytes");
        assert!(matches!(
            DpopKey::new(HmacKey::hs256(&secret).unwrap()),
            Err(Error::InvalidKey { .. })
        ));
        struct NoPublic;
        impl JwsSigner for NoPublic {
            fn algorithm(&self) -> JwsAlgorithm {
                JwsAlgorithm::Es256
            }
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, jwt::BoxError> {
                Ok(vec![1])
            }
        }
        assert!(matches!(
            DpopKey::new(NoPublic),
            Err(Error::InvalidKey { .. })
        ));
        let (key, _) = es256();
        let relative: Uri = "/token".parse().unwrap();
        assert!(matches!(
            key.proof(&Method::POST, &relative, &attempt(), None),
            Err(Error::UriNotAbsolute)
        ));
        let debug = format!("{key:?}");
        assert!(
            debug.starts_with("DpopKey { algorithm: Es256, thumbprint: "),
            "{debug}"
        );
    }
}
