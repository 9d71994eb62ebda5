//! What a client holds to authenticate with, for the metadata to choose a method from.

use std::fmt;
use std::sync::Arc;

use crate::client_auth::ClientAuth;
use crate::client_auth::jwt::{JwsAlgorithm, JwsSigner, JwtAuth};
use crate::client_auth::method::AuthMethod;
use crate::client_auth::mtls::ClientCertificate;
use crate::secret::ClientSecret;

/// What a client holds to authenticate with, for [`ServerMetadata::choose_auth`](crate::discovery::ServerMetadata::choose_auth) to pick a
/// method the server supports.
///
/// `Debug` shows which credentials there are, never their values.
#[derive(Clone, Default)]
#[must_use]
pub struct AuthMaterial {
    secret: Option<ClientSecret>,
    signer: Option<Arc<dyn JwsSigner>>,
    pub(crate) certificate: Option<ClientCertificate>,
    registered: Option<AuthMethod>,
    preferred: Option<AuthMethod>,
    unencoded_basic: bool,
    pub(crate) token_endpoint_audience: bool,
}

impl AuthMaterial {
    /// No credentials yet: on its own, a public client (`none`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a client secret (for `client_secret_basic`, `client_secret_post` or
    /// `client_secret_jwt`).
    pub fn secret(mut self, secret: ClientSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Adds a signer (for `private_key_jwt`, or `client_secret_jwt` with an HMAC key).
    pub fn signer(self, signer: impl JwsSigner + 'static) -> Self {
        self.signer_arc(Arc::new(signer))
    }

    /// Like [`signer`](Self::signer), for a signer that is shared.
    pub fn signer_arc(mut self, signer: Arc<dyn JwsSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Says that the HTTP client presents a client certificate of this kind (RFC 8705): for
    /// `tls_client_auth` or `self_signed_tls_client_auth`, and for certificate-bound tokens
    /// (§3) whatever the method. The client then uses the server's mutual TLS token endpoint
    /// ([`ServerMetadata::token_endpoint_for`](crate::discovery::ServerMetadata::token_endpoint_for)).
    pub fn client_certificate(mut self, kind: ClientCertificate) -> Self {
        self.certificate = Some(kind);
        self
    }

    /// The method the client is registered with: only that one is chosen.
    pub fn registered_method(mut self, method: AuthMethod) -> Self {
        self.registered = Some(method);
        self
    }

    /// Tries `method` first, before the usual order, when the server supports it and these
    /// credentials can serve it: `client_secret_post` for a server that decodes Basic
    /// credentials wrongly, say. Unlike [`registered_method`](Self::registered_method), the
    /// other methods stay possible.
    pub fn preferred_method(mut self, method: AuthMethod) -> Self {
        self.preferred = Some(method);
        self
    }

    /// Sends `client_secret_basic` without RFC 6749 §2.3.1's form-encoding of the id and
    /// secret ([`ClientAuth::SecretBasicUnencoded`]), for a server that compares the Basic
    /// credentials as they come: it refuses any secret with a character the encoding changes.
    pub fn unencoded_basic(mut self) -> Self {
        self.unencoded_basic = true;
        self
    }

    /// Addresses a JWT assertion chosen by discovery to the token endpoint's URL instead of the
    /// issuer identifier ([`JwtAuth::with_token_endpoint_audience`]), for a server that accepts
    /// only its token endpoint as `aud` (RFC 7523 §3 as first published).
    pub fn token_endpoint_audience(mut self) -> Self {
        self.token_endpoint_audience = true;
        self
    }

    /// The best method these credentials can serve among those the server supports (and the
    /// registered one, if set), with the signing algorithms the server accepts: the preferred
    /// method first, then the usual order.
    pub(crate) fn choose(
        &self,
        server_supports: impl Fn(AuthMethod) -> bool,
        algorithm_allowed: impl Fn(&JwsAlgorithm) -> bool,
    ) -> Option<ClientAuth> {
        let allowed = |method: AuthMethod| {
            server_supports(method) && self.registered.is_none_or(|r| r == method)
        };
        let signer_method = self
            .signer
            .as_ref()
            .map(|signer| JwtAuth::from_arc(Arc::clone(signer)).method());
        // The order of `ServerMetadata::choose_auth`'s docs.
        let usual = [
            signer_method,
            Some(AuthMethod::ClientSecretBasic),
            Some(AuthMethod::ClientSecretPost),
            Some(AuthMethod::ClientSecretJwt),
            Some(AuthMethod::TlsClientAuth),
            Some(AuthMethod::SelfSignedTlsClientAuth),
            Some(AuthMethod::None),
        ];
        std::iter::once(self.preferred)
            .chain(usual)
            .flatten()
            .filter(|method| allowed(*method))
            .find_map(|method| self.auth_for(method, &algorithm_allowed))
    }

    /// The authentication by `method` these credentials can serve, if they can.
    fn auth_for(
        &self,
        method: AuthMethod,
        algorithm_allowed: &impl Fn(&JwsAlgorithm) -> bool,
    ) -> Option<ClientAuth> {
        let signed = self
            .signer
            .as_ref()
            .map(|signer| JwtAuth::from_arc(Arc::clone(signer)))
            .filter(|jwt| jwt.method() == method && algorithm_allowed(&jwt.algorithm()));
        if let Some(jwt) = signed {
            return Some(ClientAuth::Jwt(jwt));
        }
        let secret = self.secret.clone();
        match method {
            AuthMethod::ClientSecretBasic if self.unencoded_basic => {
                secret.map(ClientAuth::SecretBasicUnencoded)
            }
            AuthMethod::ClientSecretBasic => secret.map(ClientAuth::SecretBasic),
            AuthMethod::ClientSecretPost => secret.map(ClientAuth::SecretPost),
            #[cfg(feature = "jwt")]
            AuthMethod::ClientSecretJwt if algorithm_allowed(&JwsAlgorithm::Hs256) => secret
                .and_then(|secret| JwtAuth::client_secret(&secret).ok())
                .map(ClientAuth::Jwt),
            AuthMethod::TlsClientAuth => (self.certificate == Some(ClientCertificate::CaIssued))
                .then_some(ClientAuth::TlsClientAuth),
            AuthMethod::SelfSignedTlsClientAuth => self
                .certificate
                .map(|_| ClientAuth::SelfSignedTlsClientAuth),
            AuthMethod::None => {
                (self.secret.is_none() && self.signer.is_none()).then_some(ClientAuth::None)
            }
            _ => None,
        }
    }
}

impl fmt::Debug for AuthMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthMaterial")
            .field("secret", &self.secret)
            .field(
                "signer",
                &self.signer.as_ref().map(|signer| signer.algorithm()),
            )
            .field("certificate", &self.certificate)
            .field("registered", &self.registered)
            .field("preferred", &self.preferred)
            .field("unencoded_basic", &self.unencoded_basic)
            .field("token_endpoint_audience", &self.token_endpoint_audience)
            .finish()
    }
}
