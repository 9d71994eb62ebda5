//! The built-in signing keys (feature `jwt`), by aws-lc-rs. Like the types of `secret.rs`, each
//! one redacts itself in `Debug` and has no `Display`: no key material is ever printed.
//!
//! Signing reads no clock and none of the caller's randomness. ECDSA and RSASSA-PSS signatures
//! do need random numbers (the ECDSA nonce, the PSS salt): aws-lc draws those itself, as it must
//! for them to be secure. Everything a server can see per JWT (`jti`, `iat`) comes from the
//! caller's [`Attempt`](crate::Attempt).

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaEncoding,
    RsaKeyPair,
};
use aws_lc_rs::{hmac, rsa::KeySize};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

use crate::client_auth::jwt::{BoxError, JwsAlgorithm, JwsSigner, JwtAuth, PublicJwk};
use crate::error::Error;
use crate::secret::ClientSecret;

/// A private key that signs client assertions (`private_key_jwt`) and DPoP proofs: RS256 or
/// PS256 (RSA, 2048 to 8192 bits), ES256 (P-256) or EdDSA (Ed25519).
///
/// `Debug` shows the algorithm and key id only.
pub struct PrivateKey {
    algorithm: JwsAlgorithm,
    key_id: Option<Box<str>>,
    pair: Pair,
    public: PublicJwk,
}

enum Pair {
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

const NOT_RSA: &str = "it is not an RSA private key of 2048 to 8192 bits in PKCS#8 or PKCS#1 DER";
const NOT_P256: &str = "it is not a P-256 private key in PKCS#8 or SEC1 DER";
const NOT_ED25519: &str = "it is not an Ed25519 private key in PKCS#8 DER";
const NO_BUILT_IN: &str = "there is no built-in signer for this algorithm: use RS256, PS256, ES256 or EdDSA, or implement JwsSigner";

impl PrivateKey {
    /// Reads a private key in DER: PKCS#8 for any algorithm, or also PKCS#1 (`RSAPrivateKey`)
    /// for RS256 and PS256 and SEC1 (`ECPrivateKey`) for ES256.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the key is not of the algorithm's kind (or size), or the
    /// algorithm has no built-in signer.
    pub fn from_der(algorithm: JwsAlgorithm, der: &[u8]) -> Result<Self, Error> {
        let invalid = |reason| move |_| Error::InvalidKey { reason };
        let pair = match algorithm {
            JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256 => {
                let pair = RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(invalid(NOT_RSA))?;
                let encoding: &'static dyn RsaEncoding = if algorithm == JwsAlgorithm::Rs256 {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                Pair::Rsa(pair, encoding)
            }
            JwsAlgorithm::Es256 => Pair::Ecdsa(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(invalid(NOT_P256))?,
            ),
            JwsAlgorithm::EdDsa => Pair::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(invalid(NOT_ED25519))?,
            ),
            _ => {
                return Err(Error::InvalidKey {
                    reason: NO_BUILT_IN,
                });
            }
        };
        Ok(Self::from_pair(algorithm, pair))
    }

    /// Reads the first private key of a PEM document (`PRIVATE KEY`, `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY`), as [`from_der`](Self::from_der) does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the document holds no unencrypted private key, or as
    /// [`from_der`](Self::from_der).
    pub fn from_pem(algorithm: JwsAlgorithm, pem: &str) -> Result<Self, Error> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| Error::InvalidKey {
            reason: "the PEM document holds no unencrypted private key",
        })?;
        Self::from_der(algorithm, der.secret_der())
    }

    /// A new key, for a DPoP key of the process's lifetime or a key to register with the
    /// server: ES256 or EdDSA are quick; RS256 and PS256 make a 2048-bit RSA key, which takes
    /// a while.
    ///
    /// The key comes from aws-lc's own random source: the one place this crate draws
    /// randomness itself, since a key cannot be made without it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the algorithm has no built-in signer, or if key generation
    /// fails.
    pub fn generate(algorithm: JwsAlgorithm) -> Result<Self, Error> {
        let failed = |_| Error::InvalidKey {
            reason: "the key could not be generated",
        };
        let pair = match algorithm {
            JwsAlgorithm::Rs256 => Pair::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?,
                &signature::RSA_PKCS1_SHA256,
            ),
            JwsAlgorithm::Ps256 => Pair::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?,
                &signature::RSA_PSS_SHA256,
            ),
            JwsAlgorithm::Es256 => Pair::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?,
            ),
            JwsAlgorithm::EdDsa => Pair::Ed25519(Ed25519KeyPair::generate().map_err(failed)?),
            _ => {
                return Err(Error::InvalidKey {
                    reason: NO_BUILT_IN,
                });
            }
        };
        Ok(Self::from_pair(algorithm, pair))
    }

    fn from_pair(algorithm: JwsAlgorithm, pair: Pair) -> Self {
        let public = match &pair {
            Pair::Rsa(pair, _) => {
                let public = pair.public_key();
                PublicJwk::rsa(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )
            }
            Pair::Ecdsa(pair) => {
                // Uncompressed SEC1: 0x04, then x and y, 32 bytes each.
                let point = pair.public_key().as_ref();
                let (x, y) = point[1..].split_at(32);
                PublicJwk::ec("P-256", x, y)
            }
            Pair::Ed25519(pair) => PublicJwk::okp("Ed25519", pair.public_key().as_ref()),
        };
        Self {
            algorithm,
            key_id: None,
            pair,
            public,
        }
    }

    /// Names the key, in the `kid` header of client assertions: needed when the client has
    /// registered more than one key.
    #[must_use]
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into().into_boxed_str());
        self
    }

    /// The key's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> &JwsAlgorithm {
        &self.algorithm
    }

    /// The public key as a JWK, to register with the server (in the client's `jwks`) or to
    /// compare with a token's `cnf.jkt` through [`PublicJwk::thumbprint`].
    #[must_use]
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }
}

impl JwsSigner for PrivateKey {
    fn algorithm(&self) -> JwsAlgorithm {
        self.algorithm.clone()
    }

    fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn public_jwk(&self) -> Option<PublicJwk> {
        Some(self.public.clone())
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, BoxError> {
        // aws-lc ignores this argument and draws the ECDSA nonce and PSS salt itself.
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair, encoding) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &rng, signing_input, &mut signature)
                    .map_err(|_| "aws-lc could not sign with the RSA key")?;
                Ok(signature)
            }
            Pair::Ecdsa(pair) => Ok(pair
                .sign(&rng, signing_input)
                .map_err(|_| "aws-lc could not sign with the P-256 key")?
                .as_ref()
                .to_vec()),
            Pair::Ed25519(pair) => Ok(pair.sign(signing_input).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A client secret as an HS256 key (RFC 7518 §3.2), signing `client_secret_jwt` assertions.
///
/// `Debug` shows nothing of the secret.
pub struct HmacKey {
    key: hmac::Key,
}

impl HmacKey {
    /// The shortest secret HS256 accepts: 32 bytes, the hash's size (RFC 7518 §3.2: "MUST").
    pub const MIN_SECRET_LEN: usize = 32;

    /// Keys HS256 with the client secret's UTF-8 bytes, as servers do.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the secret is shorter than [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN).
    pub fn hs256(secret: &ClientSecret) -> Result<Self, Error> {
        let bytes = secret.secret().as_bytes();
        if bytes.len() < Self::MIN_SECRET_LEN {
            return Err(Error::InvalidKey {
                reason: "an HS256 secret must be at least 32 bytes (RFC 7518 §3.2); ask the server for a longer client secret",
            });
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }
}

impl JwsSigner for HmacKey {
    fn algorithm(&self) -> JwsAlgorithm {
        JwsAlgorithm::Hs256
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, BoxError> {
        Ok(hmac::sign(&self.key, signing_input).as_ref().to_vec())
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(HS256, [redacted])")
    }
}

// Here rather than in jwt.rs: the JWT layer knows signers only by their trait, and this
// constructor needs the built-in HMAC key.
impl JwtAuth {
    /// `client_secret_jwt` with HS256 (RFC 7518 §3.2), keyed by the client secret.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the secret is shorter than the 32 bytes RFC 7518 §3.2 requires.
    pub fn client_secret(secret: &ClientSecret) -> Result<Self, Error> {
        Ok(Self::new(HmacKey::hs256(secret)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
        UnparsedPublicKey, VerificationAlgorithm,
    };
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;

    use super::*;
    use crate::attempt::Attempt;
    use crate::client_auth::jwt::JwtAuth;
    use crate::test_support::{at, token_url};

    /// A fixed P-256 key (PKCS#8), so that tests pin the same public key every run.
    pub(crate) const P256_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKnDzXNPb3r7KRDOG
SMuSLxUSgDgOyTxpWgsuI/vDWgihRANCAARlhBL21ouiQmBRm5AM3dvrBTsMIOy1
dNcB0p7Dop1o+mt+ubWDhym0SY+TD860XS2vA72JuD1UtOSqFtRasQXJ
-----END PRIVATE KEY-----
";

    /// A fixed Ed25519 key (PKCS#8 v1, as `openssl genpkey` writes it): RFC 8032 §7.1 test 1.
    pub(crate) const ED25519_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";

    pub(crate) fn attempt() -> Attempt {
        let mut entropy = [0u8; 32];
        for (i, b) in entropy.iter_mut().enumerate() {
            *b = i as u8;
        }
        Attempt::new(at(1_700_000_000), entropy)
    }

    pub(crate) fn decode(part: &str) -> String {
        String::from_utf8(BASE64URL.decode(part).unwrap()).unwrap()
    }

    /// Verifies a compact JWS with aws-lc's verifier, and returns its header and claims.
    pub(crate) fn verify(
        jws: &str,
        algorithm: &'static dyn VerificationAlgorithm,
        public_key: &[u8],
    ) -> (String, String) {
        let (input, signature) = jws.rsplit_once('.').unwrap();
        let signature = BASE64URL.decode(signature).unwrap();
        UnparsedPublicKey::new(algorithm, public_key)
            .verify(input.as_bytes(), &signature)
            .expect("the signature verifies");
        let (header, claims) = input.split_once('.').unwrap();
        (decode(header), decode(claims))
    }

    fn assertion(key: PrivateKey) -> (String, Vec<u8>) {
        let public = match &key.pair {
            Pair::Rsa(pair, _) => pair.public_key().as_ref().to_vec(),
            Pair::Ecdsa(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
        };
        let jws = JwtAuth::new(key.with_key_id("k1"))
            .assertion("client-1", &token_url(), &attempt())
            .unwrap();
        (jws, public)
    }

    const CLAIMS: &str = r#"{"iss":"client-1","sub":"client-1","aud":"https://idp.example.com/token","jti":"AAECAwQFBgcICQoLDA0ODw","iat":1700000000,"exp":1700000060}"#;

    #[test]
    fn es256_assertion_verifies_rfc7518_3_4() {
        let key = PrivateKey::from_pem(JwsAlgorithm::Es256, P256_PKCS8_PEM).unwrap();
        assert_eq!(
            key.public_jwk().to_json(),
            r#"{"crv":"P-256","kty":"EC","x":"ZYQS9taLokJgUZuQDN3b6wU7DCDstXTXAdKew6KdaPo","y":"a365tYOHKbRJj5MPzrRdLa8DvYm4PVS05KoW1FqxBck"}"#
        );
        let (jws, public) = assertion(key);
        let (header, claims) = verify(&jws, &ECDSA_P256_SHA256_FIXED, &public);
        assert_eq!(header, r#"{"alg":"ES256","kid":"k1"}"#);
        assert_eq!(claims, CLAIMS);
        let signature = BASE64URL.decode(jws.rsplit_once('.').unwrap().1).unwrap();
        assert_eq!(signature.len(), 64, "R ‖ S, not DER");
    }

    #[test]
    fn eddsa_assertion_verifies_rfc8037_3_1() {
        let key = PrivateKey::from_pem(JwsAlgorithm::EdDsa, ED25519_PKCS8_PEM).unwrap();
        // RFC 8037 §A.2's public key.
        assert_eq!(
            key.public_jwk().to_json(),
            r#"{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
        );
        let (jws, public) = assertion(key);
        let (header, claims) = verify(&jws, &ED25519, &public);
        assert_eq!(header, r#"{"alg":"EdDSA","kid":"k1"}"#);
        assert_eq!(claims, CLAIMS);
    }

    #[test]
    fn rs256_and_ps256_assertions_verify_rfc7518_3_3_and_3_5() {
        let rs = PrivateKey::generate(JwsAlgorithm::Rs256).unwrap();
        assert_eq!(rs.public_jwk().kty(), "RSA");
        assert!(
            rs.public_jwk()
                .to_json()
                .starts_with(r#"{"e":"AQAB","kty":"RSA","n":""#)
        );
        let (jws, public) = assertion(rs);
        let (header, claims) = verify(&jws, &RSA_PKCS1_2048_8192_SHA256, &public);
        assert_eq!(header, r#"{"alg":"RS256","kid":"k1"}"#);
        assert_eq!(claims, CLAIMS);

        let ps = PrivateKey::generate(JwsAlgorithm::Ps256).unwrap();
        let (jws, public) = assertion(ps);
        let (header, claims) = verify(&jws, &RSA_PSS_2048_8192_SHA256, &public);
        assert_eq!(header, r#"{"alg":"PS256","kid":"k1"}"#);
        assert_eq!(claims, CLAIMS);
    }

    #[test]
    fn hs256_assertion_verifies_rfc7518_3_2() {
        let secret = ClientSecret::new("a-client-secret-of-at-least-32-bytes");
        let jws = JwtAuth::client_secret(&secret)
            .unwrap()
            .assertion("client-1", &token_url(), &attempt())
            .unwrap();
        let (input, signature) = jws.rsplit_once('.').unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.secret().as_bytes());
        hmac::verify(
            &key,
            input.as_bytes(),
            &BASE64URL.decode(signature).unwrap(),
        )
        .unwrap();
        let (header, claims) = input.split_once('.').unwrap();
        assert_eq!(decode(header), r#"{"alg":"HS256"}"#);
        assert_eq!(decode(claims), CLAIMS);
        assert!(matches!(
            HmacKey::hs256(&ClientSecret::new("short")),
            Err(Error::InvalidKey { .. })
        ));
    }

    #[test]
    fn other_formats_and_mismatches() {
        // The same P-256 key as SEC1 (`EC PRIVATE KEY`) and as DER.
        let pkcs8 = PrivateKeyDer::from_pem_slice(P256_PKCS8_PEM.as_bytes()).unwrap();
        let der = PrivateKey::from_der(JwsAlgorithm::Es256, pkcs8.secret_der()).unwrap();
        let sec1 = match &der.pair {
            Pair::Ecdsa(pair) => {
                use aws_lc_rs::encoding::{AsDer as _, EcPrivateKeyRfc5915Der};
                let der: EcPrivateKeyRfc5915Der<'static> = pair.private_key().as_der().unwrap();
                der
            }
            _ => unreachable!(),
        };
        let from_sec1 = PrivateKey::from_der(JwsAlgorithm::Es256, sec1.as_ref()).unwrap();
        assert_eq!(from_sec1.public_jwk(), der.public_jwk());

        let rejected = |result: Result<PrivateKey, Error>| match result {
            Err(Error::InvalidKey { reason }) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(
            rejected(PrivateKey::from_pem(JwsAlgorithm::Rs256, P256_PKCS8_PEM)),
            NOT_RSA
        );
        assert_eq!(
            rejected(PrivateKey::from_pem(JwsAlgorithm::Es256, ED25519_PKCS8_PEM)),
            NOT_P256
        );
        assert_eq!(
            rejected(PrivateKey::from_pem(JwsAlgorithm::EdDsa, P256_PKCS8_PEM)),
            NOT_ED25519
        );
        assert_eq!(
            rejected(PrivateKey::from_der(JwsAlgorithm::Es256, b"\x30\x03junk")),
            NOT_P256
        );
        assert!(rejected(PrivateKey::from_pem(JwsAlgorithm::Es256, "no pem here")).contains("PEM"));
        assert_eq!(
            rejected(PrivateKey::generate(JwsAlgorithm::parse("ES512"))),
            NO_BUILT_IN
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = PrivateKey::from_pem(JwsAlgorithm::Es256, P256_PKCS8_PEM)
            .unwrap()
            .with_key_id("k1");
        assert_eq!(
            format!("{key:?}"),
            r#"PrivateKey { algorithm: Es256, key_id: Some("k1"), key: "[redacted]" }"#
        );
        let secret = "a-client-secret-of-at-least-32-bytes";
        let hmac = HmacKey::hs256(&ClientSecret::new(secret)).unwrap();
        assert_eq!(format!("{hmac:?}"), "HmacKey(HS256, [redacted])");
        let jwt = format!("{:?}", JwtAuth::new(hmac));
        assert!(!jwt.contains(secret), "{jwt}");
        assert!(jwt.contains("ClientSecretJwt"), "{jwt}");
    }
}
