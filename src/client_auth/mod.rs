//! Client authentication (RFC 6749 §2.3), encoded once at construction: shared secrets here,
//! JWT assertions ([`jwt`]) and their keys ([`key`]), DPoP proofs ([`dpop`]) and mutual TLS
//! ([`mtls`]) beside it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::client_auth::assertion::AssertionSource;
use crate::client_auth::identity::CredentialIdentity;
use crate::client_auth::jwt::JwtAuth;
use crate::client_auth::method::AuthMethod;
use crate::error::Error;
use crate::secret::{ClientAssertion, ClientSecret};

pub(crate) mod assertion;
#[cfg(feature = "jwt")]
pub(crate) mod dpop;
pub(crate) mod identity;
pub(crate) mod jwt;
#[cfg(feature = "jwt")]
pub(crate) mod key;
pub(crate) mod method;
pub(crate) mod mtls;

/// How the client proves its identity to the token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1): HTTP Basic authentication, with the client id
    /// and secret form-encoded before base64 as §2.3.1 requires.
    ///
    /// Every byte outside the unreserved set is percent-encoded, space as `%20`: tried against
    /// real servers, `%20` is decoded both by servers that form-decode and by those that only
    /// percent-decode, where the `+` of strict form encoding breaks the latter.
    SecretBasic(ClientSecret),
    /// HTTP Basic authentication without the §2.3.1 encoding, for servers that do not decode
    /// the credentials at all. The client id must not contain `:` (RFC 7617 §2).
    SecretBasicUnencoded(ClientSecret),
    /// `client_secret_post` (RFC 6749 §2.3.1): the client id and secret in the request body.
    SecretPost(ClientSecret),
    /// `none`: the client id only, for public clients.
    None,
    /// `tls_client_auth` (RFC 8705 §2.1): the client id only in the body; the client proves
    /// itself by the certificate its HTTP client presents in the TLS handshake, issued by a
    /// certificate authority the server trusts and matching the subject the client is
    /// registered with.
    ///
    /// This crate never sees the certificate: give it to the HTTP client (a
    /// `reqwest::Identity`, or the rustls config of a hyper connector), and send the request to
    /// the server's mutual TLS token endpoint
    /// ([`ServerMetadata::mtls_token_endpoint`](crate::discovery::ServerMetadata::mtls_token_endpoint)) if
    /// it has one.
    TlsClientAuth,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): as [`ClientAuth::TlsClientAuth`], but
    /// the server matches the certificate against the one (or the key) the client registered,
    /// so it may be self-signed.
    SelfSignedTlsClientAuth,
    /// A client assertion the caller signed, such as a `private_key_jwt` or `client_secret_jwt`
    /// JWT (RFC 7521 §4.2, RFC 7523 §2.2), sent with the JWT bearer assertion type.
    Assertion(ClientAssertion),
    /// `private_key_jwt` or `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a
    /// client assertion signed afresh for every attempt, so requests must be built with
    /// [`TokenRequest::http_request`](crate::TokenRequest::http_request).
    Jwt(JwtAuth),
    /// A client assertion from an [`AssertionSource`] (RFC 7521 §4.2), asked afresh for every
    /// attempt: a workload identity token the platform writes to a file and rotates (a
    /// Kubernetes service-account token, Entra ID workload identity), or one a callback
    /// fetches. Sent with the JWT bearer assertion type; requests must be sent by
    /// [`fetch_token`](crate::fetch::fetch_token) (every adapter and the token source do), which
    /// awaits the source before each attempt.
    Source(AssertionSource),
}

impl ClientAuth {
    /// The assertion type of a JWT client assertion (RFC 7523 §2.2).
    pub const JWT_BEARER_ASSERTION_TYPE: &str =
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    /// The method, without its credential. Its [`as_str`](AuthMethod::as_str) is the name
    /// registered for RFC 7591's `token_endpoint_auth_method` for every way but a pre-signed
    /// [`ClientAuth::Assertion`]: that one is [`AuthMethod::ClientAssertion`]
    /// (`client_assertion`, no registered name), since its registered name depends on how it
    /// was signed. [`ClientAuth::SecretBasicUnencoded`] is `client_secret_basic`; a
    /// [`ClientAuth::Source`] is the method its source names
    /// ([`AssertionSource::with_method`], `private_key_jwt` unless told otherwise).
    #[must_use]
    pub fn method(&self) -> AuthMethod {
        match self {
            Self::SecretBasic(_) | Self::SecretBasicUnencoded(_) => AuthMethod::ClientSecretBasic,
            Self::SecretPost(_) => AuthMethod::ClientSecretPost,
            Self::None => AuthMethod::None,
            Self::TlsClientAuth => AuthMethod::TlsClientAuth,
            Self::SelfSignedTlsClientAuth => AuthMethod::SelfSignedTlsClientAuth,
            Self::Assertion(_) => AuthMethod::ClientAssertion,
            Self::Jwt(jwt) => jwt.method(),
            Self::Source(source) => source.method(),
        }
    }
}

impl ClientAuth {
    /// The credential as a cache key compares it.
    pub(crate) fn credential_identity(&self) -> CredentialIdentity {
        match self {
            Self::SecretBasic(secret)
            | Self::SecretBasicUnencoded(secret)
            | Self::SecretPost(secret) => {
                CredentialIdentity::Secret(secret.secret().as_bytes().into())
            }
            Self::None | Self::TlsClientAuth | Self::SelfSignedTlsClientAuth => {
                CredentialIdentity::Nothing
            }
            Self::Assertion(assertion) => {
                CredentialIdentity::Secret(assertion.secret().as_bytes().into())
            }
            Self::Jwt(jwt) => jwt.credential_identity(),
            Self::Source(source) => source.credential_identity(),
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SecretBasicUnencoded(_) => f.write_str("SecretBasicUnencoded([redacted])"),
            other => write!(f, "{:?}", other.method()),
        }
    }
}

/// Everything outside RFC 3986's unreserved set (`ALPHA DIGIT - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A client's authentication, encoded once: a header, body parameters, or both.
#[derive(Clone)]
pub(crate) struct EncodedAuth {
    /// The `Authorization` header, marked sensitive.
    pub(crate) header: Option<HeaderValue>,
    /// Form pairs for the body, in order.
    pub(crate) body_pairs: Vec<(&'static str, Box<str>)>,
    /// The assertion made afresh for every attempt, if there is one: one kind or the other,
    /// never both.
    pub(crate) per_attempt: Option<PerAttempt>,
}

/// Where an attempt's client assertion comes from, when the client sends a new one every time:
/// sent after the other body pairs.
#[derive(Clone)]
pub(crate) enum PerAttempt {
    /// Signed for the attempt, at its time, with its entropy.
    Jwt(JwtAuth),
    /// Asked of the source before the attempt, by the loop that drives it.
    Source(AssertionSource),
}

impl EncodedAuth {
    pub(crate) fn new(client_id: &str, auth: &ClientAuth) -> Result<Self, Error> {
        let only_body = |pairs| {
            Ok(Self {
                header: None,
                body_pairs: pairs,
                per_attempt: None,
            })
        };
        match auth {
            ClientAuth::SecretBasic(secret) => Ok(Self::secret_basic(client_id, secret)),
            ClientAuth::SecretBasicUnencoded(secret) => {
                if client_id.contains(':') {
                    return Err(Error::InvalidParameter {
                        name: "client_id".into(),
                        reason: "a client id with `:` cannot be sent in unencoded basic credentials (RFC 7617 §2); use ClientAuth::SecretBasic",
                    });
                }
                Ok(Self::basic(client_id, secret.secret()))
            }
            ClientAuth::SecretPost(secret) => only_body(vec![
                ("client_id", client_id.into()),
                ("client_secret", secret.secret().into()),
            ]),
            // RFC 8705 §2: the certificate is in the TLS handshake, the client id in the body.
            ClientAuth::None | ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth => {
                only_body(vec![("client_id", client_id.into())])
            }
            ClientAuth::Assertion(assertion) => only_body(vec![
                ("client_id", client_id.into()),
                (
                    "client_assertion_type",
                    ClientAuth::JWT_BEARER_ASSERTION_TYPE.into(),
                ),
                ("client_assertion", assertion.secret().into()),
            ]),
            ClientAuth::Jwt(jwt) => Ok(Self {
                header: None,
                body_pairs: vec![
                    ("client_id", client_id.into()),
                    (
                        "client_assertion_type",
                        ClientAuth::JWT_BEARER_ASSERTION_TYPE.into(),
                    ),
                ],
                per_attempt: Some(PerAttempt::Jwt(jwt.clone())),
            }),
            ClientAuth::Source(source) => Ok(Self {
                header: None,
                body_pairs: vec![
                    ("client_id", client_id.into()),
                    (
                        "client_assertion_type",
                        ClientAuth::JWT_BEARER_ASSERTION_TYPE.into(),
                    ),
                ],
                per_attempt: Some(PerAttempt::Source(source.clone())),
            }),
        }
    }

    /// `client_secret_basic`, which cannot fail: every id and secret can be encoded.
    pub(crate) fn secret_basic(client_id: &str, secret: &ClientSecret) -> Self {
        Self::basic(
            &utf8_percent_encode(client_id, NOT_UNRESERVED).to_string(),
            &utf8_percent_encode(secret.secret(), NOT_UNRESERVED).to_string(),
        )
    }

    fn basic(user: &str, password: &str) -> Self {
        let mut value = String::from("Basic ");
        BASE64.encode_string(format!("{user}:{password}"), &mut value);
        let mut header =
            HeaderValue::from_str(&value).expect("base64 output is a valid header value");
        header.set_sensitive(true);
        Self {
            header: Some(header),
            body_pairs: Vec::new(),
            per_attempt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(id: &str, auth: &ClientAuth) -> String {
        let encoded = EncodedAuth::new(id, auth).unwrap();
        let header = encoded.header.unwrap();
        assert!(header.is_sensitive());
        let b64 = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        String::from_utf8(BASE64.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn basic_percent_encodes_before_base64_rfc6749_2_3_1() {
        let auth = ClientAuth::SecretBasic(ClientSecret::new("p:a ss+%&=é"));
        assert_eq!(
            basic_header("id:1 ~x", &auth),
            "id%3A1%20~x:p%3Aa%20ss%2B%25%26%3D%C3%A9"
        );
    }

    #[test]
    fn basic_unencoded_sends_the_raw_values() {
        let auth = ClientAuth::SecretBasicUnencoded(ClientSecret::new("p:a ss+%"));
        assert_eq!(basic_header("id 1", &auth), "id 1:p:a ss+%");
        assert!(matches!(
            EncodedAuth::new("id:1", &auth),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn body_methods_put_credentials_in_the_body() {
        let post = EncodedAuth::new("c", &ClientAuth::SecretPost(ClientSecret::new("s"))).unwrap();
        assert!(post.header.is_none());
        assert_eq!(post.body_pairs.len(), 2);
        let none = EncodedAuth::new("c", &ClientAuth::None).unwrap();
        assert_eq!(none.body_pairs, vec![("client_id", "c".into())]);
        for mtls in [
            ClientAuth::TlsClientAuth,
            ClientAuth::SelfSignedTlsClientAuth,
        ] {
            let encoded = EncodedAuth::new("c", &mtls).unwrap();
            assert!(encoded.header.is_none());
            assert_eq!(encoded.body_pairs, vec![("client_id", "c".into())]);
        }
        assert_eq!(
            ClientAuth::TlsClientAuth.method().as_str(),
            "tls_client_auth"
        );
        assert_eq!(
            ClientAuth::SelfSignedTlsClientAuth.method().as_str(),
            "self_signed_tls_client_auth"
        );
        let assertion =
            EncodedAuth::new("c", &ClientAuth::Assertion(ClientAssertion::new("a.b.c"))).unwrap();
        assert_eq!(
            assertion.body_pairs[1],
            (
                "client_assertion_type",
                ClientAuth::JWT_BEARER_ASSERTION_TYPE.into()
            )
        );
    }

    #[test]
    fn method_is_the_registered_name_but_for_a_pre_signed_assertion() {
        let secret = || ClientSecret::new("s");
        for (auth, name) in [
            (ClientAuth::SecretBasic(secret()), "client_secret_basic"),
            (
                ClientAuth::SecretBasicUnencoded(secret()),
                "client_secret_basic",
            ),
            (ClientAuth::SecretPost(secret()), "client_secret_post"),
            (ClientAuth::None, "none"),
            (ClientAuth::TlsClientAuth, "tls_client_auth"),
            (
                ClientAuth::SelfSignedTlsClientAuth,
                "self_signed_tls_client_auth",
            ),
        ] {
            assert_eq!(auth.method().as_str(), name);
        }
        let pre_signed = ClientAuth::Assertion(ClientAssertion::new("a.b.c"));
        assert_eq!(pre_signed.method(), AuthMethod::ClientAssertion);
        assert_eq!(pre_signed.method().as_str(), "client_assertion");
        let source = || AssertionSource::from_fn(|| async { Ok(ClientAssertion::new("a.b.c")) });
        assert_eq!(
            ClientAuth::Source(source()).method(),
            AuthMethod::PrivateKeyJwt
        );
        assert_eq!(
            ClientAuth::Source(source().with_method(AuthMethod::ClientSecretJwt)).method(),
            AuthMethod::ClientSecretJwt
        );
    }

    #[test]
    fn debug_hides_the_credential() {
        let text = format!(
            "{:?}",
            ClientAuth::SecretBasic(ClientSecret::new("hunter2"))
        );
        assert_eq!(text, "ClientSecretBasic");
        let text = format!(
            "{:?}",
            ClientAuth::Assertion(ClientAssertion::new("hunter2"))
        );
        assert!(!text.contains("hunter2"));
    }
}
