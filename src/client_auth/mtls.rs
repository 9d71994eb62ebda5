//! Mutual TLS client authentication (RFC 8705): the certificate is the HTTP client's, so the
//! core only needs to know that there is one, and of which kind. The methods themselves are
//! [`ClientAuth::TlsClientAuth`](crate::client_auth::ClientAuth::TlsClientAuth) and
//! [`ClientAuth::SelfSignedTlsClientAuth`](crate::client_auth::ClientAuth::SelfSignedTlsClientAuth).

/// The kind of certificate a client's HTTP client presents in the TLS handshake (RFC 8705 §2),
/// for [`AuthMaterial::client_certificate`](crate::discovery::material::AuthMaterial::client_certificate).
///
/// The certificate and its key stay with the HTTP client (a `reqwest::Identity`, or the rustls
/// config of a hyper connector): this crate only needs to know there is one, and which
/// methods it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientCertificate {
    /// Issued by a certificate authority: `tls_client_auth` (§2.1) if the server trusts the
    /// authority, or `self_signed_tls_client_auth` (§2.2) if the client registered the
    /// certificate itself.
    CaIssued,
    /// Self-signed: `self_signed_tls_client_auth` (§2.2) only.
    SelfSigned,
}
