//! Verifying a compact JWS (RFC 7515 §7.1) against a public JWK (RFC 7517): the one place the
//! test server checks a signature, for DPoP proofs and for trusted issuers' access tokens.

use std::fmt;

use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use client_credentials::auth::PublicJwk;
use serde_json::{Map, Value};

/// The longest compact JWS the server decodes: proofs and access tokens are far smaller.
pub(super) const MAX_JWS_LEN: usize = 16 * 1024;

/// The signature algorithms the server verifies, as a DPoP challenge's `algs` lists them.
pub(super) const ALGORITHMS: [&str; 5] = ["ES256", "ES384", "EdDSA", "RS256", "PS256"];

/// What is wrong with a JWS or a JWK; the text says which rule failed and holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JwsError(pub(super) String);

impl JwsError {
    fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// A name from the input (an `alg`, a `kty`), cut short for an error message.
pub(super) fn shown(name: &str) -> &str {
    const MAX: usize = 32;
    match name.char_indices().nth(MAX) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

impl fmt::Display for JwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A compact JWS, decoded but not yet verified.
pub(super) struct Decoded<'a> {
    pub(super) header: Map<String, Value>,
    pub(super) claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl Decoded<'_> {
    /// The header's `alg`.
    pub(super) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// A header member, if it is a string.
    pub(super) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A claim, if it is a string.
    pub(super) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Checks the signature with `key`, by the header's `alg`.
    pub(super) fn verify(&self, key: &PublicKey) -> Result<(), JwsError> {
        let alg = self
            .alg()
            .ok_or_else(|| JwsError::new("the JWS header has no alg"))?;
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)
    }
}

impl fmt::Debug for Decoded<'_> {
    // The signing input may be an access token: show the algorithm only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

/// Splits and decodes `header.payload.signature`, both JSON objects, without verifying it.
pub(super) fn decode(compact: &str) -> Result<Decoded<'_>, JwsError> {
    if compact.len() > MAX_JWS_LEN {
        return Err(JwsError::new(format!(
            "the JWS is over the {MAX_JWS_LEN}-byte limit"
        )));
    }
    let (signing_input, signature) = compact
        .rsplit_once('.')
        .ok_or_else(|| JwsError::new("not a compact JWS (header.payload.signature)"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or_else(|| JwsError::new("not a compact JWS (header.payload.signature)"))?;
    let object = |part: &str, what: &str| -> Result<Map<String, Value>, JwsError> {
        let bytes = BASE64URL
            .decode(part)
            .map_err(|_| JwsError::new(format!("the JWS {what} is not base64url")))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(JwsError::new(format!(
                "the JWS {what} is not a JSON object"
            ))),
        }
    };
    let signature = BASE64URL
        .decode(signature)
        .map_err(|_| JwsError::new("the JWS signature is not base64url"))?;
    Ok(Decoded {
        header: object(header, "header")?,
        claims: object(payload, "payload")?,
        signing_input,
        signature,
    })
}

/// A public key read from a JWK: EC P-256 or P-384, OKP Ed25519, or RSA.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum PublicKey {
    /// The uncompressed SEC1 point, and the curve.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

/// The members of a private JWK (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl PublicKey {
    /// Reads a public JWK, refusing one with private members or an unsupported type.
    pub(super) fn from_jwk(jwk: &Value) -> Result<Self, JwsError> {
        let jwk = jwk
            .as_object()
            .ok_or_else(|| JwsError::new("the jwk is not a JSON object"))?;
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(JwsError::new(format!(
                "the jwk holds the private member `{member}`: only a public key may be sent"
            )));
        }
        let text = |name: &str| -> Result<Vec<u8>, JwsError> {
            let value = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| JwsError::new(format!("the jwk has no `{name}`")))?;
            BASE64URL
                .decode(value)
                .map_err(|_| JwsError::new(format!("the jwk's `{name}` is not base64url")))
        };
        let crv = jwk.get("crv").and_then(Value::as_str);
        match (jwk.get("kty").and_then(Value::as_str), crv) {
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                let (curve, width) = if crv == "P-256" {
                    (Curve::P256, 32)
                } else {
                    (Curve::P384, 48)
                };
                let (x, y) = (text("x")?, text("y")?);
                if x.len() != width || y.len() != width {
                    return Err(JwsError::new(format!(
                        "the jwk's coordinates are not {width} bytes each, as {crv} needs"
                    )));
                }
                let point = [&[4][..], &x, &y].concat();
                Ok(Self::Ec { curve, point })
            }
            (Some("OKP"), Some("Ed25519")) => {
                let x = text("x")?;
                if x.len() != 32 {
                    return Err(JwsError::new("the jwk's Ed25519 key is not 32 bytes"));
                }
                Ok(Self::Ed25519(x))
            }
            (Some("RSA"), _) => Ok(Self::Rsa {
                n: text("n")?,
                e: text("e")?,
            }),
            (Some(kty), crv) => Err(JwsError::new(format!(
                "the jwk's key type `{}`{} is not supported (EC P-256 or P-384, OKP Ed25519, RSA)",
                shown(kty),
                crv.map(|c| format!(" on `{}`", shown(c)))
                    .unwrap_or_default()
            ))),
            (None, _) => Err(JwsError::new("the jwk has no kty")),
        }
    }

    /// Whether the key can verify `alg`.
    pub(super) fn fits(&self, alg: &str) -> bool {
        matches!(
            (self, alg),
            (
                Self::Ec {
                    curve: Curve::P256,
                    ..
                },
                "ES256"
            ) | (
                Self::Ec {
                    curve: Curve::P384,
                    ..
                },
                "ES384"
            ) | (Self::Ed25519(_), "EdDSA")
                | (Self::Rsa { .. }, "RS256" | "PS256")
        )
    }

    /// The key's RFC 7638 thumbprint, computed as the crate's clients compute it.
    pub(super) fn thumbprint(&self) -> String {
        let jwk = match self {
            Self::Ec { curve, point } => {
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = match curve {
                    Curve::P256 => "P-256",
                    Curve::P384 => "P-384",
                };
                PublicJwk::ec(crv, x, y)
            }
            Self::Ed25519(x) => PublicJwk::okp("Ed25519", x),
            Self::Rsa { n, e } => PublicJwk::rsa(n, e),
        };
        jwk.thumbprint()
    }

    fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> Result<(), JwsError> {
        if !self.fits(alg) {
            return Err(JwsError::new(format!(
                "the alg `{}` is not one this key verifies (supported: {})",
                shown(alg),
                ALGORITHMS.join(", ")
            )));
        }
        let verified = match (self, alg) {
            (Self::Ec { curve, point }, _) => {
                let algorithm = match curve {
                    Curve::P256 => &ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &ECDSA_P384_SHA384_FIXED,
                };
                UnparsedPublicKey::new(algorithm, point).verify(message, signature)
            }
            (Self::Ed25519(key), _) => {
                UnparsedPublicKey::new(&ED25519, key).verify(message, signature)
            }
            (Self::Rsa { n, e }, alg) => {
                let params: &signature::RsaParameters = if alg == "PS256" {
                    &RSA_PSS_2048_8192_SHA256
                } else {
                    &RSA_PKCS1_2048_8192_SHA256
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
        };
        verified.map_err(|_| JwsError::new("the JWS signature does not verify"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.thumbprint())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use client_credentials::auth::{JwsAlgorithm, JwsSigner, PrivateKey};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn signed(alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let header = BASE64URL.encode(json!({ "alg": alg }).to_string());
        let claims = BASE64URL.encode(r#"{"sub":"s"}"#);
        let input = format!("{header}.{claims}");
        format!("{input}.{}", BASE64URL.encode(sign(input.as_bytes())))
    }

    fn key_of(jwk: &str) -> PublicKey {
        PublicKey::from_jwk(&serde_json::from_str(jwk).unwrap()).unwrap()
    }

    #[test]
    fn verifies_every_algorithm_the_crate_signs_and_es384() {
        for algorithm in [
            JwsAlgorithm::Es256,
            JwsAlgorithm::EdDsa,
            JwsAlgorithm::Rs256,
            JwsAlgorithm::Ps256,
        ] {
            let private = PrivateKey::generate(algorithm.clone()).unwrap();
            let key = key_of(&private.public_jwk().to_json());
            assert_eq!(key.thumbprint(), private.public_jwk().thumbprint());
            let jws = signed(algorithm.as_str(), |input| private.sign(input).unwrap());
            let decoded = decode(&jws).unwrap();
            assert_eq!(decoded.claim_str("sub"), Some("s"));
            decoded.verify(&key).unwrap();
            // Another key of the same kind does not verify it.
            let other = PrivateKey::generate(algorithm.clone()).unwrap();
            let error = decoded
                .verify(&key_of(&other.public_jwk().to_json()))
                .unwrap_err();
            assert_eq!(error.0, "the JWS signature does not verify", "{algorithm}");
        }
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(48);
        let jwk = PublicJwk::ec("P-384", x, y);
        let key = key_of(&jwk.to_json());
        let jws = signed("ES384", |input| {
            pair.sign(&SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        decode(&jws).unwrap().verify(&key).unwrap();
        assert_eq!(key.thumbprint(), jwk.thumbprint());
    }

    #[test]
    fn refuses_an_alg_the_key_cannot_verify() {
        let private = PrivateKey::generate(JwsAlgorithm::Es256).unwrap();
        let key = key_of(&private.public_jwk().to_json());
        for alg in ["RS256", "EdDSA", "ES384", "HS256", "none"] {
            let jws = signed(alg, |input| private.sign(input).unwrap());
            let error = decode(&jws).unwrap().verify(&key).unwrap_err();
            assert!(
                error.0.contains("is not one this key verifies"),
                "{alg}: {error}"
            );
        }
        let long = "A".repeat(100);
        let error = decode(&signed(&long, |_| vec![1]))
            .unwrap()
            .verify(&key)
            .unwrap_err();
        assert!(
            !error.0.contains(&long),
            "names from the input are cut short"
        );
    }

    #[test]
    fn decoding_refuses_what_is_not_a_compact_jws() {
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "e30.e30.***",
            "W10.e30.",
            "e30.bm90.",
            "***.e30.",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(decode("e30.e30.").is_ok(), "empty objects, empty signature");
        let huge = format!("e30.{}.", "A".repeat(MAX_JWS_LEN));
        assert!(decode(&huge).unwrap_err().0.contains("limit"));
    }

    proptest! {
        /// Any input is a decoded JWS or our error, and any JSON a key or our error: never a
        /// panic.
        #[test]
        fn never_panics(text in ".{0,200}", jwk in "\\{\"kty\":\"(EC|OKP|RSA)\",\"crv\":\"(P-256|P-384|Ed25519)\",\"x\":\"[A-Za-z0-9_-]{0,70}\",\"y\":\"[A-Za-z0-9_-]{0,70}\",\"n\":\"[A-Za-z0-9_-]{0,8}\",\"e\":\"[A-Za-z0-9_-]{0,4}\"\\}") {
            if let Ok(decoded) = decode(&text) {
                let _ = decoded.alg();
            }
            let value: Value = serde_json::from_str(&jwk).unwrap();
            if let Ok(key) = PublicKey::from_jwk(&value) {
                let _ = key.thumbprint();
                for alg in ALGORITHMS {
                    let jws = signed(alg, |_| vec![0; 64]);
                    prop_assert!(decode(&jws).unwrap().verify(&key).is_err());
                }
            }
        }
    }
}
