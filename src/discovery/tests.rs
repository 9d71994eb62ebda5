use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, StatusCode};
use serde_json::Value;

use super::issuer::*;
use super::material::*;
use super::metadata::*;
use super::request::*;
use crate::client_auth::ClientAuth;
use crate::client_auth::jwt::{JwsAlgorithm, JwsSigner};
use crate::client_auth::method::AuthMethod;
use crate::client_auth::mtls::ClientCertificate;
use crate::error::Error;
use crate::error::discovery::DiscoveryError;
use crate::error::problem::ResponseProblem;
use crate::secret::ClientSecret;

fn issuer(text: &str) -> Issuer {
    Issuer::new(text).unwrap()
}

fn response(status: u16, body: &str) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn discovery_error(result: Result<impl fmt::Debug, Error>) -> DiscoveryError {
    match result {
        Err(Error::Discovery(error)) => *error,
        other => panic!("expected a discovery error, got {other:?}"),
    }
}

fn parse(issuer_text: &str, body: &str) -> Result<ServerMetadata, Error> {
    MetadataRequest::oauth(issuer(issuer_text)).parse_response(&response(200, body))
}

const MINIMAL: &str =
    r#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token"}"#;

#[test]
fn well_known_urls_rfc8414_3_1_and_openid_4() {
    let cases = [
        (
            "https://example.com",
            "https://example.com/.well-known/oauth-authorization-server",
            "https://example.com/.well-known/openid-configuration",
        ),
        (
            "https://example.com/",
            "https://example.com/.well-known/oauth-authorization-server",
            "https://example.com/.well-known/openid-configuration",
        ),
        // RFC 8414 §3.1's example.
        (
            "https://example.com/issuer1",
            "https://example.com/.well-known/oauth-authorization-server/issuer1",
            "https://example.com/issuer1/.well-known/openid-configuration",
        ),
        (
            "https://example.com/tenant/a/",
            "https://example.com/.well-known/oauth-authorization-server/tenant/a",
            "https://example.com/tenant/a/.well-known/openid-configuration",
        ),
        (
            "http://127.0.0.1:9400",
            "http://127.0.0.1:9400/.well-known/oauth-authorization-server",
            "http://127.0.0.1:9400/.well-known/openid-configuration",
        ),
    ];
    for (text, oauth, openid) in cases {
        let issuer = issuer(text);
        assert_eq!(issuer.oauth_metadata_url(), oauth, "{text}");
        assert_eq!(issuer.openid_configuration_url(), openid, "{text}");
        assert_eq!(issuer.as_str(), text);
    }
    let request = MetadataRequest::openid(issuer("https://example.com/issuer1")).http_request();
    assert_eq!(request.method(), Method::GET);
    assert_eq!(
        request.uri(),
        "https://example.com/issuer1/.well-known/openid-configuration"
    );
    assert_eq!(request.headers()[ACCEPT], "application/json");
    assert!(request.body().is_empty());
}

#[test]
fn issuer_validation_rfc8414_2() {
    let reason = |text: &str| match discovery_error(Issuer::new(text)) {
        DiscoveryError::InvalidIssuer { reason } => reason,
        other => panic!("{other:?}"),
    };
    assert!(reason("https://example.com/?x=1").contains("query"));
    assert!(reason("https://example.com/#f").contains("fragment"));
    assert!(reason("http://example.com").contains("loopback"));
    assert!(reason("https://u:p@example.com").contains("user"));
    assert!(reason("/relative").contains("absolute"));
    assert!(reason("ftp://example.com").contains("scheme"));
    assert!(Issuer::insecure_allow_http("http://idp.internal").is_ok());
    assert!(Issuer::new("http://localhost:8080/realms/x").is_ok());
}

#[test]
fn parses_a_full_document() {
    let body = r#"{
        "issuer": "https://idp.example.com",
        "token_endpoint": "https://idp.example.com/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["api:read"],
        "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.example.com/token"},
        "jwks_uri": "https://idp.example.com/jwks",
        "scope_descriptions": null
    }"#;
    let metadata = parse("https://idp.example.com", body).unwrap();
    assert_eq!(metadata.issuer(), "https://idp.example.com");
    assert_eq!(
        metadata.token_endpoint().to_string(),
        "https://idp.example.com/token"
    );
    assert!(metadata.supports_auth_method(AuthMethod::PrivateKeyJwt));
    assert!(!metadata.supports_auth_method(AuthMethod::ClientSecretPost));
    assert_eq!(
        metadata.dpop_signing_alg_values_supported(),
        Some(&["ES256".to_owned(), "EdDSA".to_owned()][..])
    );
    assert_eq!(metadata.grant_types_supported(), ["client_credentials"]);
    assert_eq!(
        metadata.scopes_supported(),
        Some(&["api:read".to_owned()][..])
    );
    assert_eq!(
        metadata.mtls_token_endpoint().unwrap().to_string(),
        "https://mtls.idp.example.com/token"
    );
    assert_eq!(metadata.mtls_endpoint_aliases().len(), 1);
    assert_eq!(
        metadata.extra("jwks_uri"),
        Some(&Value::from("https://idp.example.com/jwks"))
    );
    assert!(
        metadata.extra("issuer").is_none(),
        "read members are not extras"
    );
}

#[test]
fn defaults_for_omitted_members_rfc8414_2() {
    let metadata = parse("https://idp.example.com", MINIMAL).unwrap();
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported(),
        ["client_secret_basic"]
    );
    assert_eq!(
        metadata.grant_types_supported(),
        ["authorization_code", "implicit"]
    );
    assert_eq!(
        metadata.token_endpoint_auth_signing_alg_values_supported(),
        None
    );
    assert_eq!(metadata.dpop_signing_alg_values_supported(), None);
    assert!(metadata.mtls_endpoint_aliases().is_empty());
    assert!(metadata.mtls_token_endpoint().is_none());
    let with_nulls = r#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token","token_endpoint_auth_methods_supported":null,"mtls_endpoint_aliases":null}"#;
    let metadata = parse("https://idp.example.com", with_nulls).unwrap();
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported(),
        ["client_secret_basic"]
    );
}

#[test]
fn issuer_must_match_exactly_rfc8414_3_3() {
    for (requested, named) in [
        ("https://idp.example.com", "https://idp.example.com/"),
        ("https://idp.example.com", "https://IDP.example.com"),
        ("https://idp.example.com", "https://evil.example.com"),
    ] {
        let body =
            format!(r#"{{"issuer":"{named}","token_endpoint":"https://idp.example.com/token"}}"#);
        let error = discovery_error(parse(requested, &body));
        assert_eq!(
            error,
            DiscoveryError::IssuerMismatch {
                expected: requested.into(),
                found: named.into()
            }
        );
    }
    let error = discovery_error(parse(
        "https://idp.example.com",
        "{\"issuer\":\"https://e\\u001b[31mvil\",\"token_endpoint\":\"https://x/t\"}",
    ));
    let text = error.to_string();
    assert!(!text.contains('\u{1b}'), "sanitized: {text}");
    assert!(text.starts_with("the metadata names the issuer"), "{text}");
}

#[test]
fn missing_and_odd_members() {
    let error = |body: &str| discovery_error(parse("https://idp.example.com", body));
    assert_eq!(
        error(r#"{"token_endpoint":"https://idp.example.com/token"}"#),
        DiscoveryError::MissingMember("issuer")
    );
    assert_eq!(
        error(r#"{"issuer":"https://idp.example.com"}"#),
        DiscoveryError::MissingMember("token_endpoint")
    );
    assert_eq!(
        error(
            r#"{"issuer":"https://idp.example.com","token_endpoint":"http://idp.example.com/token"}"#
        ),
        DiscoveryError::InvalidTokenEndpoint {
            reason: "plain http is allowed only for loopback hosts; use https"
        }
    );
    assert!(matches!(
        error(r#"{"issuer":42,"token_endpoint":"https://idp.example.com/token"}"#),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember { name: "issuer", .. })
    ));
    assert!(matches!(
        error(&MINIMAL.replace(
            '}',
            r#","token_endpoint_auth_methods_supported":"client_secret_basic"}"#
        )),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
            name: "token_endpoint_auth_methods_supported",
            expected: "an array of strings"
        })
    ));
    assert!(matches!(
        error(&MINIMAL.replace('}', r#","scopes_supported":["a",1]}"#)),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
            name: "scopes_supported",
            ..
        })
    ));
    assert!(matches!(
        error(&MINIMAL.replace('}', r#","mtls_endpoint_aliases":{"token_endpoint":7}}"#)),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
            name: "mtls_endpoint_aliases",
            ..
        })
    ));
    assert!(matches!(
        error(&MINIMAL.replace('}', r#","issuer":"https://idp.example.com"}"#)),
        DiscoveryError::InvalidDocument(ResponseProblem::DuplicateMember("issuer"))
    ));
    assert!(matches!(
        error("[1,2]"),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidJson { .. })
    ));
    assert!(matches!(
        error("{\"issuer\":"),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidJson { .. })
    ));
    assert!(matches!(
        error("<html>not found</html>"),
        DiscoveryError::InvalidDocument(ResponseProblem::NotJson { .. })
    ));
    // A byte order mark and an odd content type are tolerated.
    let request = MetadataRequest::oauth(issuer("https://idp.example.com"));
    let odd = http::Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "text/plain")
        .body(format!("\u{feff}{MINIMAL}").into_bytes())
        .unwrap();
    assert!(request.parse_response(&odd).is_ok());
}

#[test]
fn status_and_size_errors() {
    let request = MetadataRequest::oauth(issuer("https://idp.example.com")).with_max_body_len(64);
    let error = discovery_error(request.parse_response(&response(404, "{\"error\":\"nope\"}")));
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    let text = Error::from(error.clone()).to_string();
    assert!(
        text.starts_with("the metadata endpoint answered http 404 (application/json)"),
        "{text}"
    );
    assert!(
        text.ends_with("body starts: {\"error\":\"nope\"}"),
        "{text}"
    );
    assert!(!Error::from(error).is_retryable());
    let unavailable = Error::from(discovery_error(request.parse_response(&response(503, ""))));
    assert!(unavailable.is_retryable());
    assert_eq!(unavailable.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        discovery_error(request.parse_response(&response(200, &" ".repeat(65)))),
        DiscoveryError::BodyTooLarge { limit: 64 }
    );
    assert!(matches!(
        discovery_error(request.parse_response(&response(302, ""))),
        DiscoveryError::UnexpectedStatus { excerpt: None, .. }
    ));
}

struct Signer(JwsAlgorithm);

impl JwsSigner for Signer {
    fn algorithm(&self) -> JwsAlgorithm {
        self.0.clone()
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, crate::client_auth::jwt::BoxError> {
        Ok(vec![1])
    }
}

fn metadata(methods: Option<&[&str]>, algs: Option<&[&str]>) -> ServerMetadata {
    let mut body = serde_json::json!({
        "issuer": "https://idp.example.com",
        "token_endpoint": "https://idp.example.com/token",
    });
    if let Some(methods) = methods {
        body["token_endpoint_auth_methods_supported"] = methods.into();
    }
    if let Some(algs) = algs {
        body["token_endpoint_auth_signing_alg_values_supported"] = algs.into();
    }
    parse("https://idp.example.com", &body.to_string()).unwrap()
}

fn chosen(metadata: &ServerMetadata, credentials: &AuthMaterial) -> Option<AuthMethod> {
    metadata
        .choose_auth(credentials)
        .ok()
        .map(|auth| auth.method())
}

/// The server's methods and algorithms, the client's credentials, and the method chosen.
type Row<'a> = (
    Option<&'a [&'a str]>,
    Option<&'a [&'a str]>,
    AuthMaterial,
    Option<AuthMethod>,
);

#[test]
fn auth_method_choice_table() {
    use AuthMethod as M;
    let all: &[&str] = &[
        "none",
        "client_secret_post",
        "client_secret_basic",
        "client_secret_jwt",
        "private_key_jwt",
    ];
    let secret = || AuthMaterial::new().secret(ClientSecret::new("s".repeat(32)));
    let short_secret = || AuthMaterial::new().secret(ClientSecret::new("short"));
    let key = || AuthMaterial::new().signer(Signer(JwsAlgorithm::Es256));
    let hmac = || AuthMaterial::new().signer(Signer(JwsAlgorithm::Hs256));
    let both = || key().secret(ClientSecret::new("s".repeat(32)));
    let ca_issued = || AuthMaterial::new().client_certificate(ClientCertificate::CaIssued);
    let self_signed = || AuthMaterial::new().client_certificate(ClientCertificate::SelfSigned);
    let with_mtls: &[&str] = &[
        "none",
        "client_secret_basic",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ];
    let mtls_only: &[&str] = &["tls_client_auth", "self_signed_tls_client_auth"];
    let jwt_for_secret = if cfg!(feature = "jwt") {
        Some(M::ClientSecretJwt)
    } else {
        None
    };
    // (server's methods, server's algorithms, credentials, expected)
    let table: Vec<Row<'_>> = vec![
        (Some(all), None, both(), Some(M::PrivateKeyJwt)),
        (Some(all), None, key(), Some(M::PrivateKeyJwt)),
        (Some(all), Some(&["RS256"]), key(), None),
        (
            Some(all),
            Some(&["RS256"]),
            both(),
            Some(M::ClientSecretBasic),
        ),
        (Some(all), None, hmac(), Some(M::ClientSecretJwt)),
        (Some(all), None, secret(), Some(M::ClientSecretBasic)),
        (
            Some(&["client_secret_post", "client_secret_jwt"]),
            None,
            secret(),
            Some(M::ClientSecretPost),
        ),
        (Some(&["client_secret_jwt"]), None, secret(), jwt_for_secret),
        (
            Some(&["client_secret_jwt"]),
            Some(&["HS512"]),
            secret(),
            None,
        ),
        (Some(&["client_secret_jwt"]), None, short_secret(), None),
        (None, None, secret(), Some(M::ClientSecretBasic)),
        (None, None, key(), None),
        (Some(&["private_key_jwt"]), None, secret(), None),
        (Some(all), None, AuthMaterial::new(), Some(M::None)),
        (
            Some(&["client_secret_basic"]),
            None,
            AuthMaterial::new(),
            None,
        ),
        (
            Some(all),
            None,
            secret().registered_method(M::ClientSecretPost),
            Some(M::ClientSecretPost),
        ),
        (
            Some(all),
            None,
            secret().registered_method(M::ClientSecretJwt),
            jwt_for_secret,
        ),
        (
            Some(&["client_secret_basic"]),
            None,
            secret().registered_method(M::ClientSecretPost),
            None,
        ),
        (
            Some(all),
            None,
            both().registered_method(M::ClientSecretBasic),
            Some(M::ClientSecretBasic),
        ),
        // RFC 8705 §2: a certificate authenticates when nothing else does.
        (Some(mtls_only), None, ca_issued(), Some(M::TlsClientAuth)),
        (
            Some(mtls_only),
            None,
            self_signed(),
            Some(M::SelfSignedTlsClientAuth),
        ),
        (
            Some(&["self_signed_tls_client_auth"]),
            None,
            ca_issued(),
            Some(M::SelfSignedTlsClientAuth),
        ),
        (Some(&["tls_client_auth"]), None, self_signed(), None),
        (Some(with_mtls), None, ca_issued(), Some(M::TlsClientAuth)),
        (
            Some(with_mtls),
            None,
            ca_issued().secret(ClientSecret::new("s")),
            Some(M::ClientSecretBasic),
        ),
        (
            Some(with_mtls),
            None,
            self_signed().signer(Signer(JwsAlgorithm::Es256)),
            Some(M::PrivateKeyJwt),
        ),
        (
            Some(with_mtls),
            None,
            ca_issued()
                .secret(ClientSecret::new("s"))
                .registered_method(M::TlsClientAuth),
            Some(M::TlsClientAuth),
        ),
        (
            Some(with_mtls),
            None,
            ca_issued().registered_method(M::SelfSignedTlsClientAuth),
            Some(M::SelfSignedTlsClientAuth),
        ),
        // RFC 8705 §4: a public client's certificate only binds its tokens.
        (Some(&["none"]), None, ca_issued(), Some(M::None)),
        (Some(&["client_secret_basic"]), None, ca_issued(), None),
        (None, None, self_signed(), None),
    ];
    for (i, (methods, algs, credentials, expected)) in table.into_iter().enumerate() {
        let metadata = metadata(methods, algs);
        assert_eq!(
            chosen(&metadata, &credentials),
            expected,
            "row {i}: {credentials:?}"
        );
    }
}

#[test]
fn the_knobs_of_strict_servers_after_discovery() {
    let both = metadata(Some(&["client_secret_basic", "client_secret_post"]), None);
    let secret = || AuthMaterial::new().secret(ClientSecret::new("s:+%&= é"));
    // Preferred: post first, where basic would be chosen; the others stay possible.
    assert_eq!(
        chosen(
            &both,
            &secret().preferred_method(AuthMethod::ClientSecretPost)
        ),
        Some(AuthMethod::ClientSecretPost)
    );
    let basic_only = metadata(Some(&["client_secret_basic"]), None);
    assert_eq!(
        chosen(
            &basic_only,
            &secret().preferred_method(AuthMethod::ClientSecretPost)
        ),
        Some(AuthMethod::ClientSecretBasic),
        "a preference the server does not support falls back to the usual order"
    );
    // Unencoded Basic: the raw id and secret in the header.
    let auth = both.choose_auth(&secret().unencoded_basic()).unwrap();
    assert!(
        matches!(auth, ClientAuth::SecretBasicUnencoded(_)),
        "{auth:?}"
    );
    let client = both
        .client("my-client", &secret().unencoded_basic())
        .unwrap();
    let request = client
        .token_request()
        .build()
        .unwrap()
        .unsigned_http_request();
    let header = request.headers()[http::header::AUTHORIZATION]
        .to_str()
        .unwrap();
    let decoded = BASE64
        .decode(header.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "my-client:s:+%&= é");
    // A JWT client's audience: the issuer, or with the knob the token endpoint.
    let jwt = metadata(Some(&["private_key_jwt"]), None);
    let signer = || AuthMaterial::new().signer(Signer(JwsAlgorithm::Es256));
    let audience = |material: &AuthMaterial| match jwt.choose_auth(material).unwrap() {
        ClientAuth::Jwt(jwt) => (
            jwt.issuer().map(str::to_owned),
            jwt.token_endpoint_audience(),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        audience(&signer()),
        (Some("https://idp.example.com".to_owned()), false)
    );
    assert_eq!(
        audience(&signer().token_endpoint_audience()),
        (Some("https://idp.example.com".to_owned()), true)
    );
}

#[test]
fn a_client_certificate_uses_the_mtls_alias_rfc8705_5() {
    let body = serde_json::json!({
        "issuer": "https://idp.example.com",
        "token_endpoint": "https://idp.example.com/token",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "tls_client_auth"],
        "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.example.com/token"},
        "tls_client_certificate_bound_access_tokens": true,
    });
    let metadata = parse("https://idp.example.com", &body.to_string()).unwrap();
    assert!(metadata.tls_client_certificate_bound_access_tokens());
    let alias = "https://mtls.idp.example.com/token";
    let plain = "https://idp.example.com/token";
    let certificate = AuthMaterial::new().client_certificate(ClientCertificate::CaIssued);
    let secret = AuthMaterial::new().secret(ClientSecret::new("s"));
    // For authentication, and for binding the tokens of a client that uses a secret.
    for (credentials, url, method) in [
        (certificate.clone(), alias, AuthMethod::TlsClientAuth),
        (
            secret
                .clone()
                .client_certificate(ClientCertificate::SelfSigned),
            alias,
            AuthMethod::ClientSecretBasic,
        ),
        (secret, plain, AuthMethod::ClientSecretBasic),
    ] {
        assert_eq!(metadata.token_endpoint_for(&credentials).to_string(), url);
        let client = metadata.client("c", &credentials).unwrap();
        assert_eq!(client.token_url().to_string(), url);
        assert_eq!(client.auth_method(), method);
        let request = client
            .token_request()
            .build()
            .unwrap()
            .unsigned_http_request();
        assert_eq!(request.uri(), url);
    }
    // Without an alias, the one token endpoint serves mutual TLS too.
    let without = metadata_with_mtls_methods();
    assert!(!without.tls_client_certificate_bound_access_tokens());
    assert_eq!(without.token_endpoint_for(&certificate).to_string(), plain);
    let request = without
        .client("c", &certificate)
        .unwrap()
        .token_request()
        .build()
        .unwrap()
        .unsigned_http_request();
    assert!(request.headers().get(http::header::AUTHORIZATION).is_none());
    assert_eq!(
        request.body().secret(),
        b"grant_type=client_credentials&client_id=c"
    );
    assert!(matches!(
        discovery_error(parse(
            "https://idp.example.com",
            &MINIMAL.replace(
                '}',
                r#","tls_client_certificate_bound_access_tokens":"yes"}"#
            )
        )),
        DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
            name: "tls_client_certificate_bound_access_tokens",
            expected: "a boolean"
        })
    ));
}

fn metadata_with_mtls_methods() -> ServerMetadata {
    metadata(
        Some(&["self_signed_tls_client_auth", "tls_client_auth"]),
        None,
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any issuer text and any answer give metadata or a typed error, never a panic; what
    /// parses names the issuer asked for.
    #[test]
    fn never_panics(
        issuer_text in "\\PC{0,40}",
        status in 100u16..600,
        body in proptest::prelude::prop_oneof![
            "\\PC{0,200}",
            concat!(
                "\\{\"issuer\":\"https://idp.example.com\",",
                "\"token_endpoint\":\"(https://idp\\.example\\.com/[a-z]{0,5}|\\PC{0,30})\"",
                "(,\"[a-z_]{1,40}\":(null|1|\"x\"|\\[\"a\"\\]|\\{\\}))?\\}",
            ),
        ],
    ) {
        if let Ok(issuer) = Issuer::new(&issuer_text) {
            proptest::prop_assert!(issuer.oauth_metadata_url().path().starts_with("/.well-known/"));
        }
        let request = MetadataRequest::oauth(issuer("https://idp.example.com"));
        let response = http::Response::builder()
            .status(status)
            .body(body.into_bytes())
            .unwrap();
        if let Ok(metadata) = request.parse_response(&response) {
            proptest::prop_assert_eq!(metadata.issuer(), "https://idp.example.com");
            let credentials = AuthMaterial::new().secret(ClientSecret::new("s"));
            let _ = metadata.choose_auth(&credentials);
        }
    }
}

#[test]
fn a_client_from_the_issuer_alone() {
    let metadata = metadata(Some(&["client_secret_post"]), None);
    let client = metadata
        .client(
            "my-client",
            &AuthMaterial::new().secret(ClientSecret::new("hunter2")),
        )
        .unwrap();
    assert_eq!(
        client.token_url().to_string(),
        "https://idp.example.com/token"
    );
    assert_eq!(client.auth_method(), AuthMethod::ClientSecretPost);
    let error = discovery_error(metadata.client("c", &AuthMaterial::new()));
    assert_eq!(
        error,
        DiscoveryError::NoUsableAuthMethod {
            supported: "client_secret_post".into()
        }
    );
    let debug = format!(
        "{:?}",
        AuthMaterial::new().secret(ClientSecret::new("hunter2"))
    );
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn metadata_debug_names_extra_members_without_values() {
    let body = r#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token","x_secret_thing":"do-not-print-me"}"#;
    let request = MetadataRequest::oauth(Issuer::new("https://idp.example.com").unwrap());
    let response = http::Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let metadata = request.parse_response(&response).unwrap();
    let debug = format!("{metadata:?}");
    assert!(debug.contains("x_secret_thing"), "{debug}");
    assert!(!debug.contains("do-not-print-me"), "{debug}");
}

#[test]
fn a_discovered_jwt_client_addresses_its_assertions_to_the_issuer() {
    let metadata = metadata(Some(&["private_key_jwt"]), None);
    let auth = metadata
        .choose_auth(&AuthMaterial::new().signer(Signer(JwsAlgorithm::Es256)))
        .unwrap();
    let ClientAuth::Jwt(jwt) = auth else {
        panic!("expected a jwt client, got {auth:?}")
    };
    assert_eq!(jwt.issuer(), Some("https://idp.example.com"));
}
