//! The client of a token endpoint (RFC 6749 §2): its URL, its identity, its encoded
//! authentication and the credential a cached token's owner must match, its certificate and
//! DPoP key, and the rules its responses are parsed by. Immutable, whatever the grant.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use crate::client_auth::identity::CredentialIdentity;
use crate::client_auth::method::AuthMethod;
use crate::client_auth::{ClientAuth, EncodedAuth};
use crate::endpoint::TokenUrl;
use crate::error::Error;
use crate::response::rules::ResponseRules;
use crate::secret::ClientSecret;

/// The body parameters a client's authentication may set (RFC 6749 §2.3.1, RFC 7521 §4.2),
/// which no grant may take as its own or as an extra parameter.
pub(crate) const AUTH_PARAMS: [&str; 4] = [
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

/// A client of one token endpoint: its URL, its identity and how it authenticates.
///
/// Cheap to clone and to share between threads; the credentials are encoded once, here. An
/// immutable value: what the client learns while it sends (DPoP nonces, the server's clock) is
/// its [`Session`](crate::fetch::Session)'s, and which token it asks for is the grant's
/// ([`token_request`](Self::token_request) for client credentials).
#[derive(Clone)]
pub struct ClientCredentials(Arc<ClientInner>);

#[derive(Clone)]
pub(crate) struct ClientInner {
    pub(crate) token_url: TokenUrl,
    pub(crate) client_id: Box<str>,
    pub(crate) method: AuthMethod,
    pub(crate) auth: EncodedAuth,
    /// The credential, as the cache key compares it: a token cached for one credential is never
    /// served to a request with another, whatever the client id.
    pub(crate) credential: CredentialIdentity,
    /// The certificate the caller's HTTP client presents, as the caller named it
    /// ([`ClientCredentials::with_certificate`]): a certificate-bound token (RFC 8705 §3) is
    /// never served to a client presenting another.
    pub(crate) certificate: Option<Arc<[u8]>>,
    pub(crate) rules: ResponseRules,
    /// The key whose DPoP proof goes with every token request (RFC 9449 §5).
    #[cfg(feature = "jwt")]
    pub(crate) dpop: Option<crate::client_auth::dpop::DpopKey>,
}

impl ClientInner {
    /// The DPoP key's thumbprint: tokens bound to different keys are different tokens.
    #[cfg(feature = "jwt")]
    pub(crate) fn dpop_thumbprint(&self) -> Option<&str> {
        self.dpop
            .as_ref()
            .map(crate::client_auth::dpop::DpopKey::thumbprint)
    }

    /// Without feature `jwt` there is no DPoP key.
    #[cfg(not(feature = "jwt"))]
    pub(crate) fn dpop_thumbprint(&self) -> Option<&str> {
        None
    }
}

impl ClientCredentials {
    /// A client that authenticates with `client_secret_basic`, the method every server must
    /// support (RFC 6749 §2.3.1).
    pub fn new(token_url: TokenUrl, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        let client_id = client_id.into();
        let auth = EncodedAuth::secret_basic(&client_id, &secret);
        let credential = CredentialIdentity::Secret(secret.secret().as_bytes().into());
        Self::from_parts(
            token_url,
            client_id,
            AuthMethod::ClientSecretBasic,
            auth,
            credential,
        )
    }

    /// A client that authenticates with the given method.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] if the client id cannot be sent with that method
    /// ([`ClientAuth::SecretBasicUnencoded`] with a `:` in the id).
    pub fn with_auth(
        token_url: TokenUrl,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Result<Self, Error> {
        let client_id = client_id.into();
        let encoded = EncodedAuth::new(&client_id, &auth)?;
        Ok(Self::from_parts(
            token_url,
            client_id,
            auth.method(),
            encoded,
            auth.credential_identity(),
        ))
    }

    fn from_parts(
        token_url: TokenUrl,
        client_id: String,
        method: AuthMethod,
        auth: EncodedAuth,
        credential: CredentialIdentity,
    ) -> Self {
        Self(Arc::new(ClientInner {
            token_url,
            client_id: client_id.into_boxed_str(),
            method,
            auth,
            credential,
            certificate: None,
            rules: ResponseRules::default(),
            #[cfg(feature = "jwt")]
            dpop: None,
        }))
    }

    /// Names the certificate this client's HTTP client presents in the TLS handshake (its DER
    /// or PEM bytes, as you gave them to the HTTP client), for mutual TLS (RFC 8705): the
    /// `tls_client_auth` methods, or certificate-bound tokens (§3) under any method.
    ///
    /// The crate never sends it: it only compares it, so that a cached token issued to one
    /// certificate is never served to a client presenting another, in the process and through
    /// a fleet's [`SharedCache`](crate::shared_cache::SharedCache) (where replicas with different
    /// certificates then keep separate entries instead of overwriting each other's). Without
    /// it, a `tls_client_auth` client is known by its client id alone, and its tokens are not
    /// shared through a store.
    #[must_use]
    pub fn with_certificate(mut self, certificate: impl AsRef<[u8]>) -> Self {
        Arc::make_mut(&mut self.0).certificate = Some(certificate.as_ref().into());
        self
    }

    /// Replaces the rules responses are parsed by (tolerant by default).
    #[must_use]
    pub fn with_response_rules(mut self, rules: ResponseRules) -> Self {
        Arc::make_mut(&mut self.0).rules = rules;
        self
    }

    /// Sends a DPoP proof (RFC 9449 §5) signed by `key` with every token request, asking for a
    /// token bound to the key (`token_type` `DPoP`). Requests must then be built with
    /// [`TokenRequest::http_request`](crate::TokenRequest::http_request), and the token presented with
    /// [`DpopKey::authorize`](crate::dpop::DpopKey::authorize).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[must_use]
    pub fn with_dpop(mut self, key: crate::client_auth::dpop::DpopKey) -> Self {
        Arc::make_mut(&mut self.0).dpop = Some(key);
        self
    }

    /// The DPoP key, if the client has one.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[must_use]
    pub fn dpop_key(&self) -> Option<&crate::client_auth::dpop::DpopKey> {
        self.0.dpop.as_ref()
    }

    /// The token endpoint.
    #[must_use]
    pub fn token_url(&self) -> &TokenUrl {
        &self.0.token_url
    }

    /// The client identifier.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }

    /// How the client authenticates.
    #[must_use]
    pub fn auth_method(&self) -> AuthMethod {
        self.0.method
    }

    /// The rules responses are parsed by.
    #[must_use]
    pub fn response_rules(&self) -> &ResponseRules {
        &self.0.rules
    }
}

impl ClientCredentials {
    /// The client's fields, for the crate's request, which builds and keys on them.
    pub(crate) fn inner(&self) -> &ClientInner {
        &self.0
    }

    /// The client's part of a request's cache key: token URL, client id, authentication method,
    /// credential, certificate and DPoP key, all immutable. Two requests share a token only if
    /// these are equal.
    pub(crate) fn key(&self) -> impl Eq + Hash + '_ {
        let client = &self.0;
        (
            &client.token_url,
            &client.client_id,
            client.method,
            &client.credential,
            &client.certificate,
            client.dpop_thumbprint(),
        )
    }

    /// Hands each field of the client's part of the cache identity to `field` as a tag and its
    /// bytes, in a fixed order (see [`TokenRequest`](crate::TokenRequest)'s shared identity).
    /// Returns `false`, having handed nothing, when the credential has no identity another
    /// process could compute, or when a mutual TLS client has not named its certificate.
    #[cfg(feature = "shared-cache")]
    #[must_use]
    pub(crate) fn identity_fields(&self, field: &mut impl FnMut(&str, &[u8])) -> bool {
        let client = &self.0;
        let Some((credential_kind, credential)) = client.credential.shareable() else {
            return false;
        };
        let mtls = matches!(
            client.method,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        );
        if mtls && client.certificate.is_none() {
            return false;
        }
        field(
            "token_url",
            client.token_url.as_uri().to_string().as_bytes(),
        );
        field("client_id", client.client_id.as_bytes());
        field("auth_method", client.method.as_str().as_bytes());
        field("credential_kind", credential_kind.as_bytes());
        field("credential", credential);
        if let Some(certificate) = &client.certificate {
            field("certificate", certificate);
        }
        if let Some(thumbprint) = client.dpop_thumbprint() {
            field("dpop_jkt", thumbprint.as_bytes());
        }
        true
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.0.token_url)
            .field("client_id", &self.0.client_id)
            .field("auth_method", &self.0.method)
            .finish_non_exhaustive()
    }
}
