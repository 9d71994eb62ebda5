//! Mutual TLS (RFC 8705) against a real authorization server: a second `oidc-provider`
//! (`interop/mtls-server.mjs`, the package pinned in `interop/package-lock.json`) over https on
//! 127.0.0.1. `scripts/test` makes fresh certificates (by the `openssl` command), starts it and
//! sets `OIDC_MTLS_URL` (the issuer) and `INTEROP_MTLS_CERT_DIR` (the certificates); without them
//! every test here fails, saying so: none of them ever skips.
//!
//! The server listens twice, as RFC 8705 §5 lays it out: the issuer, which never asks for a
//! client certificate, and the `mtls_endpoint_aliases`, which does. Every client is configured
//! from the issuer by discovery, and every exchange goes through both async adapters: reqwest
//! with an `Identity`, hyper with a `hyper-rustls` connector whose rustls config holds the
//! client certificate. The crate itself never sees a certificate.
//!
//! Server behaviours that surprised us, each pinned by a test named `server_…`:
//! - the mTLS features are not enough to offer the methods: `clientAuthMethods` must list them,
//!   or a client registered with one is `invalid_client_metadata` (see interop/mtls-server.mjs;
//!   pinned by `discovery_names_the_mtls_alias_and_methods`);
//! - a client whose tokens must be certificate-bound but that presents no certificate gets
//!   `invalid_grant` with the generic "grant request is invalid", not `invalid_client`, when it
//!   authenticates otherwise (`server_refuses_a_bound_token_without_a_certificate_with_invalid_grant`);
//! - any certificate binds a token, even one the server cannot verify and no client registered:
//!   RFC 8705 §3 asks only for proof of the key (`server_binds_a_token_to_any_certificate`);
//! - every failed certificate check is the same `invalid_client` "client authentication failed",
//!   whatever went wrong (no certificate, an unknown subject, an unregistered certificate).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use client_credentials::auth::{AuthMethod, ClientCertificate};
use client_credentials::discovery::{AuthMaterial, Issuer, MetadataRequest, ServerMetadata};
use client_credentials::error::ErrorCode;
use client_credentials::token::TokenType;
use client_credentials::{ClientCredentials, ClientSecret, Error, Token, TokenRequest};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use crate::support;
use crate::support::adapters::Adapter;

// ---------------------------------------------------------------------------------------------
// The server, its clients and their certificates, as interop/mtls-server.mjs sets them up.

/// Certificate-authority-issued, registered by subject (`tls_client_auth`).
const PKI_CLIENT: &str = "mtls-pki-client";
/// Registered by its certificate (`self_signed_tls_client_auth`).
const SELF_SIGNED_CLIENT: &str = "mtls-self-signed-client";
/// Authenticates by a secret; its tokens must be bound to a certificate.
const BOUND_SECRET_CLIENT: (&str, &str) = ("mtls-bound-secret-client", "mtls-bound-secret");

/// The resource whose tokens are JWTs, so that `cnf` can be read.
const JWT_RESOURCE: &str = "https://mtls.api.example/";

/// The issuer, as `scripts/test` exported it.
fn issuer() -> Issuer {
    match std::env::var("OIDC_MTLS_URL") {
        Ok(url) if !url.is_empty() => Issuer::new(&url).expect("the mTLS issuer is an https url"),
        _ => panic!(
            "OIDC_MTLS_URL is not set: the mutual TLS tests need a live oidc-provider over https; \
             run them with `scripts/test` (see the README), which makes the certificates and \
             starts one on 127.0.0.1"
        ),
    }
}

/// A file `scripts/test` generated (`node interop/mtls-server.mjs --gen-certs DIR`).
fn cert_file(name: &str) -> Vec<u8> {
    let dir = std::env::var("INTEROP_MTLS_CERT_DIR").unwrap_or_else(|_| {
        panic!("INTEROP_MTLS_CERT_DIR is not set: run the mutual TLS tests with `scripts/test`")
    });
    std::fs::read(format!("{dir}/{name}"))
        .unwrap_or_else(|e| panic!("cannot read {name} in {dir} (made by scripts/test): {e}"))
}

/// A client certificate and its key, by file stem.
#[derive(Clone, Copy, Debug)]
enum Cert {
    /// Issued by the test CA, with the subject `mtls-pki-client` is registered with.
    Pki,
    /// Self-signed, registered by `mtls-self-signed-client`.
    SelfSigned,
    /// Self-signed, registered by no one.
    Stranger,
}

impl Cert {
    fn stem(self) -> &'static str {
        match self {
            Self::Pki => "client",
            Self::SelfSigned => "self-signed",
            Self::Stranger => "stranger",
        }
    }

    fn der(self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(&cert_file(&format!("{}.pem", self.stem())))
            .expect("a PEM certificate")
    }

    fn key(self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(&cert_file(&format!("{}-key.pem", self.stem())))
            .expect("a PEM private key")
    }

    /// The PEM reqwest's `Identity::from_pem` takes: the certificate, then the key.
    fn identity_pem(self) -> Vec<u8> {
        let mut pem = cert_file(&format!("{}.pem", self.stem()));
        pem.extend(cert_file(&format!("{}-key.pem", self.stem())));
        pem
    }

    /// RFC 8705 §3.1: the base64url SHA-256 of the certificate's DER.
    fn thumbprint(self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

// ---------------------------------------------------------------------------------------------
// The two adapters, each with or without a client certificate.

type Hyper = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Both async adapters of the shared dispatcher, trusting the test CA and presenting `cert` if
/// given.
fn adapters(cert: Option<Cert>) -> [Adapter; 2] {
    [reqwest_adapter(cert), hyper_adapter(cert)]
}

/// reqwest: the client certificate is an `Identity`.
fn reqwest_adapter(cert: Option<Cert>) -> Adapter {
    let ca = reqwest::Certificate::from_pem(&cert_file("ca.pem")).expect("the CA's PEM");
    let mut builder =
        client_credentials::reqwest::recommended_client_builder().tls_certs_only([ca]);
    if let Some(cert) = cert {
        let identity = reqwest::Identity::from_pem(&cert.identity_pem()).expect("a PEM identity");
        builder = builder.identity(identity);
    }
    Adapter::Reqwest(
        builder.build().expect("a reqwest client with rustls"),
        TIMEOUT,
    )
}

/// hyper: the client certificate is in the connector's rustls config.
fn hyper_adapter(cert: Option<Cert>) -> Adapter {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(&cert_file("ca.pem")).expect("the CA's PEM");
    roots.add(ca).expect("the CA is a usable trust anchor");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions")
        .with_root_certificates(roots);
    let config = match cert {
        Some(cert) => builder
            .with_client_auth_cert(vec![cert.der()], cert.key())
            .expect("a usable client certificate and key"),
        None => builder.with_no_client_auth(),
    };
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client: Hyper = HyperClient::builder(TokioExecutor::new()).build(connector);
    Adapter::Hyper(Arc::new(client), TIMEOUT)
}

/// The hyper adapter's bound on one exchange: generous, it only has to end a stuck test.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The server's metadata, fetched by reqwest without a client certificate.
async fn metadata() -> ServerMetadata {
    reqwest_adapter(None)
        .fetch_metadata(&MetadataRequest::openid(issuer()))
        .await
        .unwrap_or_else(|e| panic!("cannot fetch the mTLS server's metadata: {e}"))
}

/// A request for a JWT access token, for `client`.
fn jwt_request(client: &ClientCredentials) -> TokenRequest {
    client
        .token_request()
        .resource(JWT_RESOURCE)
        .scope("api:read")
        .build()
        .expect("a valid request")
}

/// The claims of a JWT access token (RFC 9068), unverified: the tests only read them.
fn claims(token: &Token) -> Value {
    let jwt = token.access_token().secret();
    let payload = jwt.split('.').nth(1).expect("a JWT access token");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url claims"))
        .expect("JSON claims")
}

/// The error's OAuth code, or a panic naming what came back instead.
fn oauth_code(what: &str, outcome: Result<Token, Error>) -> ErrorCode {
    match outcome {
        Err(Error::OAuth(error)) => error.code().clone(),
        Ok(_) => panic!("{what}: expected an OAuth error, got a token"),
        Err(other) => panic!("{what}: expected an OAuth error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery.

#[tokio::test]
async fn discovery_names_the_mtls_alias_and_methods() {
    for adapter in adapters(None) {
        let metadata = adapter
            .fetch_metadata(&MetadataRequest::openid(issuer()))
            .await
            .expect("the metadata");
        for method in [
            AuthMethod::TlsClientAuth,
            AuthMethod::SelfSignedTlsClientAuth,
        ] {
            assert!(
                metadata.supports_auth_method(method),
                "{}: {:?}",
                adapter.name(),
                metadata.token_endpoint_auth_methods_supported()
            );
        }
        assert!(metadata.tls_client_certificate_bound_access_tokens());
        let alias = metadata
            .mtls_token_endpoint()
            .expect("an mTLS token endpoint");
        assert_ne!(alias, metadata.token_endpoint(), "a listener of its own");
        assert!(alias.to_string().starts_with("https://127.0.0.1:"));
    }
}

#[tokio::test]
async fn a_certificate_chooses_the_mtls_method_and_the_alias() {
    let metadata = metadata().await;
    let alias = metadata
        .mtls_token_endpoint()
        .expect("an mTLS token endpoint");
    for (kind, method) in [
        (ClientCertificate::CaIssued, AuthMethod::TlsClientAuth),
        (
            ClientCertificate::SelfSigned,
            AuthMethod::SelfSignedTlsClientAuth,
        ),
    ] {
        let client = metadata
            .client("c", &AuthMaterial::new().client_certificate(kind))
            .expect("a client");
        assert_eq!(client.auth_method(), method);
        assert_eq!(client.token_url(), alias);
        // RFC 8705 §2: the client id alone in the body, no Authorization header.
        let request = client
            .token_request()
            .build()
            .unwrap()
            .http_request(&support::responses::attempt())
            .unwrap();
        assert_eq!(
            request.body().secret(),
            b"grant_type=client_credentials&client_id=c"
        );
        assert!(request.headers().get("authorization").is_none());
    }
    // A secret authenticates; the certificate still sends the client to the alias (§5).
    let credentials = AuthMaterial::new()
        .secret(ClientSecret::new("s"))
        .client_certificate(ClientCertificate::SelfSigned);
    let client = metadata.client("c", &credentials).unwrap();
    assert_eq!(client.auth_method(), AuthMethod::ClientSecretBasic);
    assert_eq!(client.token_url(), alias);
    let plain = metadata
        .client("c", &AuthMaterial::new().secret(ClientSecret::new("s")))
        .unwrap();
    assert_eq!(plain.token_url(), metadata.token_endpoint());
}

// ---------------------------------------------------------------------------------------------
// Getting certificate-bound tokens.

/// `client_id` gets a JWT access token through each adapter presenting `cert`, bound to it.
async fn bound_token_each_way(client_id: &str, kind: ClientCertificate, cert: Cert) {
    let metadata = metadata().await;
    let credentials = AuthMaterial::new().client_certificate(kind);
    let client = metadata.client(client_id, &credentials).expect("a client");
    for adapter in adapters(Some(cert)) {
        let way = adapter.name();
        let token = adapter
            .fetch(&jwt_request(&client))
            .await
            .unwrap_or_else(|e| panic!("{way}: {client_id} got no token: {e}"));
        // RFC 8705 §3: a bound token is still a Bearer token to the client.
        assert_eq!(token.token_type(), &TokenType::Bearer, "{way}");
        let claims = claims(&token);
        assert_eq!(claims["client_id"], client_id, "{way}");
        assert_eq!(claims["aud"], JWT_RESOURCE, "{way}");
        assert_eq!(
            claims["cnf"]["x5t#S256"],
            cert.thumbprint(),
            "{way}: {claims}"
        );
    }
}

#[tokio::test]
async fn tls_client_auth_gets_a_certificate_bound_token() {
    bound_token_each_way(PKI_CLIENT, ClientCertificate::CaIssued, Cert::Pki).await;
}

#[tokio::test]
async fn self_signed_tls_client_auth_gets_a_certificate_bound_token() {
    bound_token_each_way(
        SELF_SIGNED_CLIENT,
        ClientCertificate::SelfSigned,
        Cert::SelfSigned,
    )
    .await;
}

#[tokio::test]
async fn the_thumbprint_is_of_the_certificate_the_tests_read() {
    // The thumbprint the tests compare against, checked against the certificate's own base64:
    // a mistake in reading the PEM would otherwise make every comparison agree by accident.
    let pem = String::from_utf8(cert_file("client.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(STANDARD.decode(body).unwrap(), Cert::Pki.der().as_ref());
    assert_ne!(Cert::Pki.thumbprint(), Cert::SelfSigned.thumbprint());
}

// ---------------------------------------------------------------------------------------------
// Refusals.

#[tokio::test]
async fn a_client_without_a_certificate_is_invalid_client() {
    let metadata = metadata().await;
    for (client_id, kind) in [
        (PKI_CLIENT, ClientCertificate::CaIssued),
        (SELF_SIGNED_CLIENT, ClientCertificate::SelfSigned),
    ] {
        let client = metadata
            .client(client_id, &AuthMaterial::new().client_certificate(kind))
            .unwrap();
        for adapter in adapters(None) {
            let outcome = adapter.fetch(&jwt_request(&client)).await;
            let what = format!("{}: {client_id} without a certificate", adapter.name());
            assert_eq!(
                oauth_code(&what, outcome),
                ErrorCode::InvalidClient,
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn a_certificate_the_registration_does_not_match_is_invalid_client() {
    let metadata = metadata().await;
    for (client_id, kind, cert) in [
        // Not issued by the CA, so not verified.
        (PKI_CLIENT, ClientCertificate::CaIssued, Cert::SelfSigned),
        // Issued by the CA, but not the certificate the client registered.
        (SELF_SIGNED_CLIENT, ClientCertificate::SelfSigned, Cert::Pki),
        (
            SELF_SIGNED_CLIENT,
            ClientCertificate::SelfSigned,
            Cert::Stranger,
        ),
    ] {
        let client = metadata
            .client(client_id, &AuthMaterial::new().client_certificate(kind))
            .unwrap();
        for adapter in adapters(Some(cert)) {
            let outcome = adapter.fetch(&jwt_request(&client)).await;
            let what = format!("{}: {client_id} with {cert:?}", adapter.name());
            assert_eq!(
                oauth_code(&what, outcome),
                ErrorCode::InvalidClient,
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn the_issuers_own_token_endpoint_asks_for_no_certificate() {
    // Why the alias matters (RFC 8705 §5): the certificate is there, but the listener never
    // asks for it, so the server sees none.
    let metadata = metadata().await;
    let client = ClientCredentials::with_auth(
        metadata.token_endpoint().clone(),
        PKI_CLIENT,
        client_credentials::auth::ClientAuth::TlsClientAuth,
    )
    .unwrap();
    for adapter in adapters(Some(Cert::Pki)) {
        let outcome = adapter.fetch(&jwt_request(&client)).await;
        let what = format!("{}: at the issuer's token endpoint", adapter.name());
        assert_eq!(
            oauth_code(&what, outcome),
            ErrorCode::InvalidClient,
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A certificate that only binds (RFC 8705 §3), with a secret to authenticate.

fn bound_secret_client(metadata: &ServerMetadata) -> ClientCredentials {
    let (id, secret) = BOUND_SECRET_CLIENT;
    let credentials = AuthMaterial::new()
        .secret(ClientSecret::new(secret))
        .client_certificate(ClientCertificate::SelfSigned);
    let client = metadata.client(id, &credentials).unwrap();
    assert_eq!(client.auth_method(), AuthMethod::ClientSecretBasic);
    client
}

#[tokio::test]
async fn server_binds_a_token_to_any_certificate() {
    let metadata = metadata().await;
    let client = bound_secret_client(&metadata);
    for adapter in adapters(Some(Cert::Stranger)) {
        let way = adapter.name();
        let token = adapter
            .fetch(&jwt_request(&client))
            .await
            .unwrap_or_else(|e| panic!("{way}: {e}"));
        let claims = claims(&token);
        assert_eq!(
            claims["cnf"]["x5t#S256"],
            Cert::Stranger.thumbprint(),
            "{way}"
        );
    }
}

#[tokio::test]
async fn server_refuses_a_bound_token_without_a_certificate_with_invalid_grant() {
    let metadata = metadata().await;
    let client = bound_secret_client(&metadata);
    for adapter in adapters(None) {
        let what = format!(
            "{}: bound secret client without a certificate",
            adapter.name()
        );
        match adapter.fetch(&jwt_request(&client)).await {
            Err(Error::OAuth(error)) => {
                assert_eq!(error.code(), &ErrorCode::InvalidGrant, "{what}");
                assert_eq!(
                    error.description(),
                    Some("grant request is invalid"),
                    "{what}"
                );
            }
            other => panic!("{what}: expected invalid_grant, got {other:?}"),
        }
    }
}
