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

    /// The best method these credentials can serve among those the server supports (and the
    /// registered one, if set), with the signing algorithms the server accepts.
    pub(crate) fn choose(
        &self,
        server_supports: impl Fn(AuthMethod) -> bool,
        algorithm_allowed: impl Fn(&JwsAlgorithm) -> bool,
    ) -> Option<ClientAuth> {
        let allowed = |method: AuthMethod| {
            server_supports(method) && self.registered.is_none_or(|r| r == method)
        };
        if let Some(signer) = &self.signer {
            let jwt = JwtAuth::from_arc(Arc::clone(signer));
            if allowed(jwt.method()) && algorithm_allowed(&jwt.algorithm()) {
                return Some(ClientAuth::Jwt(jwt));
            }
        }
        if let Some(secret) = &self.secret {
            if allowed(AuthMethod::ClientSecretBasic) {
                return Some(ClientAuth::SecretBasic(secret.clone()));
            }
            if allowed(AuthMethod::ClientSecretPost) {
                return Some(ClientAuth::SecretPost(secret.clone()));
            }
            #[cfg(feature = "jwt")]
            if allowed(AuthMethod::ClientSecretJwt)
                && algorithm_allowed(&JwsAlgorithm::Hs256)
                && let Ok(jwt) = JwtAuth::client_secret(secret)
            {
                return Some(ClientAuth::Jwt(jwt));
            }
        }
        if let Some(certificate) = self.certificate {
            if certificate == ClientCertificate::CaIssued && allowed(AuthMethod::TlsClientAuth) {
                return Some(ClientAuth::TlsClientAuth);
            }
            if allowed(AuthMethod::SelfSignedTlsClientAuth) {
                return Some(ClientAuth::SelfSignedTlsClientAuth);
            }
        }
        let nothing = self.secret.is_none() && self.signer.is_none();
        (nothing && allowed(AuthMethod::None)).then_some(ClientAuth::None)
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
            .finish()
    }
}
