//! The names of the client authentication methods, shared by every way of authenticating and
//! by discovery.

/// A client authentication method, without its credential: safe to log and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic`.
    ClientSecretBasic,
    /// `client_secret_post`.
    ClientSecretPost,
    /// `none`.
    None,
    /// A client assertion (`private_key_jwt` or `client_secret_jwt`).
    ClientAssertion,
    /// `private_key_jwt` (OpenID Connect Core §9): an assertion signed with the client's
    /// private key.
    PrivateKeyJwt,
    /// `client_secret_jwt` (OpenID Connect Core §9): an assertion signed with the client
    /// secret by HMAC.
    ClientSecretJwt,
    /// `tls_client_auth` (RFC 8705 §2.1): a client certificate issued by a certificate
    /// authority the server trusts.
    TlsClientAuth,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): a client certificate the client
    /// registered, self-signed or not.
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The method's registered name (`client_assertion` for a pre-signed assertion, whose
    /// registered name depends on how it was signed).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
            Self::ClientAssertion => "client_assertion",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::ClientSecretJwt => "client_secret_jwt",
            Self::TlsClientAuth => "tls_client_auth",
            Self::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }
}
