//! Fuzzes the authorization server metadata parser (`MetadataRequest::parse_response`) with
//! any status, headers and body.
//!
//! The invariant: any input gives checked metadata or the crate's typed `Error::Discovery`,
//! never a panic. Beyond that, parsed metadata names exactly the issuer requested, its token
//! endpoint (and its mutual TLS alias) is a valid `TokenUrl` that reads back the same, only
//! a client certificate leads to the alias, and choosing a client authentication gives a client
//! or a typed error. An error says what it is about: the status it names is the response's, a
//! body too large is over the limit, and its text is lower-case without control characters.
//!
//! The input is the text framing of `framing.rs`, with these settings lines:
//!
//! - `x-fuzz-issuer: <url>`: the issuer requested (default `https://idp.example.com`); one
//!   `Issuer::new` refuses is checked to be a typed error, and the default is used instead;
//! - `x-fuzz-insecure: 1`: the issuer is made with `Issuer::insecure_allow_http`;
//! - `x-fuzz-limit: <n>`: the body limit is `n` bytes.
#![no_main]

mod framing;

use client_credentials::http::{self, StatusCode};
use client_credentials::{ClientSecret, Error, TokenUrl};
use client_credentials::auth::{AuthMethod, ClientCertificate};
use client_credentials::discovery::{AuthMaterial, Issuer, MetadataRequest, ServerMetadata};
use client_credentials::error::DiscoveryError;
use libfuzzer_sys::fuzz_target;

const DEFAULT_ISSUER: &str = "https://idp.example.com";

fuzz_target!(|data: &[u8]| {
    let (response, settings) = framing::frame(data);
    let setting = |name: &str| settings.iter().rev().find(|s| s.name == name);
    let insecure = setting("insecure").is_some_and(|s| s.value == b"1");
    let make = |text: &str| {
        if insecure {
            Issuer::insecure_allow_http(text)
        } else {
            Issuer::new(text)
        }
    };
    let issuer = match setting("issuer").map(|s| String::from_utf8_lossy(s.value)) {
        Some(text) => match make(&text) {
            Ok(issuer) => {
                assert_eq!(issuer.as_str(), text, "an issuer is kept exactly as given");
                issuer
            }
            Err(error) => {
                check_text(&error);
                assert!(
                    matches!(&error, Error::Discovery(d) if matches!(**d, DiscoveryError::InvalidIssuer { .. })),
                    "an issuer refused with {error:?}"
                );
                make(DEFAULT_ISSUER).expect("the default issuer is valid")
            }
        },
        None => make(DEFAULT_ISSUER).expect("the default issuer is valid"),
    };
    let limit = setting("limit").and_then(framing::Setting::number);

    let mut oauth = MetadataRequest::oauth(issuer.clone());
    let mut openid = MetadataRequest::openid(issuer.clone());
    if let Some(limit) = limit {
        oauth = oauth.with_max_body_len(limit);
        openid = openid.with_max_body_len(limit);
    }
    let result = oauth.parse_response(&response);
    // Which well-known document was asked for does not change how its answer is read.
    let again = openid.parse_response(&response);
    assert_eq!(
        format!("{:?}", result.as_ref().map(ServerMetadata::issuer)),
        format!("{:?}", again.as_ref().map(ServerMetadata::issuer)),
    );
    match result {
        Ok(metadata) => check_metadata(&metadata, &issuer, insecure, &response, &oauth),
        Err(error) => check_error(&error, &response, &oauth),
    }
});

fn check_metadata(
    metadata: &ServerMetadata,
    issuer: &Issuer,
    insecure: bool,
    response: &http::Response<&[u8]>,
    request: &MetadataRequest,
) {
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.body().len() <= request.max_body_len());
    assert_eq!(metadata.issuer(), issuer.as_str(), "RFC 8414 §3.3");
    let reparse = |url: &TokenUrl| {
        let text = url.to_string();
        let again = if insecure {
            TokenUrl::insecure_allow_http(&text)
        } else {
            TokenUrl::new(&text)
        };
        let again = again.unwrap_or_else(|e| panic!("token endpoint {text:?} reads back as {e}"));
        assert_eq!(again.to_string(), text);
        assert!(!url.host().is_empty());
    };
    reparse(metadata.token_endpoint());
    match (
        metadata.mtls_token_endpoint(),
        metadata.mtls_endpoint_aliases().get("token_endpoint"),
    ) {
        (Some(url), Some(_)) => reparse(url),
        (None, None) => {}
        (url, alias) => panic!("mutual TLS endpoint {url:?} for the alias {alias:?}"),
    }
    for known in ["issuer", "token_endpoint", "mtls_endpoint_aliases"] {
        assert!(metadata.extra(known).is_none(), "{known} is also an extra");
    }

    let certificate = AuthMaterial::new().client_certificate(ClientCertificate::CaIssued);
    let all = [
        AuthMaterial::new(),
        AuthMaterial::new().secret(ClientSecret::new("s3cr3t")),
        certificate.clone(),
        AuthMaterial::new()
            .secret(ClientSecret::new("s3cr3t"))
            .registered_method(AuthMethod::ClientSecretPost),
    ];
    for (i, credentials) in all.iter().enumerate() {
        if i != 2 {
            let endpoint = metadata.token_endpoint_for(credentials);
            assert_eq!(
                endpoint,
                metadata.token_endpoint(),
                "no certificate, no alias"
            );
        }
        match metadata.client("client", credentials) {
            Ok(client) => {
                let method = client.auth_method();
                assert!(metadata.supports_auth_method(method), "chose {method:?}");
            }
            Err(error) => {
                check_text(&error);
                assert!(
                    matches!(&error, Error::Discovery(d) if matches!(**d, DiscoveryError::NoUsableAuthMethod { .. })),
                    "{error:?}"
                );
            }
        }
    }
    let endpoint = metadata.token_endpoint_for(&certificate);
    assert_eq!(
        endpoint,
        metadata
            .mtls_token_endpoint()
            .unwrap_or(metadata.token_endpoint())
    );
}

fn check_error(error: &Error, response: &http::Response<&[u8]>, request: &MetadataRequest) {
    check_text(error);
    let Error::Discovery(discovery) = error else {
        panic!("parsing gave a non-discovery error: {error:?}");
    };
    match &**discovery {
        DiscoveryError::UnexpectedStatus { status, .. } => {
            assert_eq!(*status, response.status());
            assert_ne!(*status, StatusCode::OK);
            assert_eq!(discovery.status(), Some(*status));
        }
        DiscoveryError::BodyTooLarge { limit } => {
            assert_eq!(*limit, request.max_body_len());
            assert!(response.body().len() > *limit);
        }
        DiscoveryError::IssuerMismatch { expected, .. } => {
            assert_eq!(expected, request.issuer().as_str());
        }
        DiscoveryError::InvalidDocument(_)
        | DiscoveryError::MissingMember(_)
        | DiscoveryError::InvalidTokenEndpoint { .. } => {}
        other => panic!("parsing gave {other:?}"),
    }
    if response.status() != StatusCode::OK {
        assert!(matches!(
            **discovery,
            DiscoveryError::UnexpectedStatus { .. }
        ));
    }
}

fn check_text(error: &Error) {
    let text = error.to_string();
    assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
    assert!(!text.contains(|c: char| c.is_control()), "{text:?}");
    let _ = format!("{error:?}");
}
