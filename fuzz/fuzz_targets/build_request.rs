//! Fuzzes request building with any client id, secret, authentication method, scopes,
//! audience, resources and extra parameters.
//!
//! Invariants: building gives a request or a typed error naming the parameter, never a panic;
//! a built request's body form-decodes back to exactly the inputs and its `Authorization`
//! header decodes back to the id and secret (RFC 6749 §2.3.1, §4.4.2); and no `Debug` output
//! depends on the secret: swapping it for another of the same encoded length changes nothing.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use client_credentials::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use client_credentials::http::{self, Method};
use client_credentials::{Attempt, ClientCredentials, ClientSecret, Error, TokenRequestBuilder, TokenUrl};
use client_credentials::auth::{ClientAssertion, ClientAuth};
use client_credentials::fetch::RequestBody;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Copy, Arbitrary)]
enum AuthKind {
    Basic,
    BasicUnencoded,
    Post,
    None,
    Assertion,
}

#[derive(Debug, Arbitrary)]
struct Input {
    client_id: String,
    secret: String,
    auth: AuthKind,
    scopes: Vec<String>,
    scope_string: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
}

const TOKEN_URL: &str = "https://idp.example.com/oauth2/token?tenant=t1";

fuzz_target!(|input: Input| {
    let Some((client, request)) = build(&input, &input.secret) else {
        return;
    };
    let http_request = unsigned(&request);
    assert_eq!(http_request.method(), Method::POST);
    assert_eq!(http_request.uri(), TOKEN_URL);
    assert_eq!(
        http_request.headers()[CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(http_request.headers()[ACCEPT], "application/json");
    assert_eq!(decode_body(&http_request), expected_body(&input));
    check_authorization(&input, &http_request);

    // Debug output never depends on the secret.
    let twin = twin(&input.secret);
    let (twin_client, twin_request) = build(&input, &twin).expect("the twin builds too");
    let debug = |client: &ClientCredentials, request: &client_credentials::TokenRequest| {
        format!(
            "{client:?} {:?} {request:?} {:?} {:?}",
            auth(input.auth, &input.secret).method(),
            unsigned(request),
            client.token_request().param("p", "v")
        )
    };
    assert_eq!(debug(&client, &request), debug(&twin_client, &twin_request));
    assert_eq!(
        format!("{:?}", auth(input.auth, &input.secret)),
        format!("{:?}", auth(input.auth, &twin))
    );
});

fn auth(kind: AuthKind, secret: &str) -> ClientAuth {
    match kind {
        AuthKind::Basic => ClientAuth::SecretBasic(ClientSecret::new(secret)),
        AuthKind::BasicUnencoded => ClientAuth::SecretBasicUnencoded(ClientSecret::new(secret)),
        AuthKind::Post => ClientAuth::SecretPost(ClientSecret::new(secret)),
        AuthKind::None => ClientAuth::None,
        AuthKind::Assertion => ClientAuth::Assertion(ClientAssertion::new(secret)),
    }
}

/// The HTTP request of an attempt: none of these clients signs anything, so the attempt's time
/// and bytes are not read and building it cannot fail.
fn unsigned(
    request: &client_credentials::TokenRequest,
) -> http::Request<client_credentials::fetch::RequestBody> {
    let attempt = Attempt::new(std::time::SystemTime::UNIX_EPOCH, [0; 32]);
    request
        .http_request(&attempt)
        .expect("a client that signs nothing builds its request")
}

/// Builds the client and the request with `secret`, checking any refusal.
fn build(
    input: &Input,
    secret: &str,
) -> Option<(ClientCredentials, client_credentials::TokenRequest)> {
    let url = TokenUrl::new(TOKEN_URL).unwrap();
    let client = match ClientCredentials::with_auth(url, &input.client_id, auth(input.auth, secret))
    {
        Ok(client) => client,
        Err(err) => {
            assert!(
                matches!(input.auth, AuthKind::BasicUnencoded) && input.client_id.contains(':')
            );
            assert!(matches!(&err, Error::InvalidParameter { name, .. } if name == "client_id"));
            return None;
        }
    };
    let mut builder = client.token_request().scopes(&input.scopes);
    if let Some(scope) = &input.scope_string {
        builder = builder.scope(scope);
    }
    if let Some(audience) = &input.audience {
        builder = builder.audience(audience);
    }
    for resource in &input.resources {
        builder = builder.resource(resource);
    }
    for (name, value) in &input.params {
        builder = builder.param(name, value);
    }
    match builder.build() {
        Ok(request) => Some((client, request)),
        Err(err) => {
            let Error::InvalidParameter { name, .. } = &err else {
                panic!("building gave a non-parameter error: {err:?}");
            };
            let text = err.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()) && !text.ends_with('.'));
            let refused_param = input
                .params
                .iter()
                .any(|(n, _)| n == name && (n.is_empty() || TokenRequestBuilder::RESERVED_PARAMS.contains(&n.as_str())));
            let refused_input = match name.as_str() {
                "scope" => requested_scopes(input).iter().any(|s| !is_scope_token(s)),
                "audience" => input.audience.as_deref() == Some(""),
                "resource" => !input.resources.is_empty(),
                _ => false,
            };
            assert!(
                refused_param || refused_input,
                "refused {name:?} for no reason"
            );
            None
        }
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn requested_scopes(input: &Input) -> Vec<&str> {
    let mut scopes: Vec<&str> = input.scopes.iter().map(String::as_str).collect();
    if let Some(scope) = &input.scope_string {
        scopes.extend(scope.split(' '));
    }
    scopes
}

fn decode_body(request: &http::Request<RequestBody>) -> Vec<(String, String)> {
    form_urlencoded::parse(request.body().secret())
        .into_owned()
        .collect()
}

fn expected_body(input: &Input) -> Vec<(String, String)> {
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let mut want = vec![pair("grant_type", "client_credentials")];
    let id = input.client_id.as_str();
    let secret = input.secret.as_str();
    match input.auth {
        AuthKind::Basic | AuthKind::BasicUnencoded => {}
        AuthKind::Post => want.extend([pair("client_id", id), pair("client_secret", secret)]),
        AuthKind::None => want.push(pair("client_id", id)),
        AuthKind::Assertion => want.extend([
            pair("client_id", id),
            pair("client_assertion_type", ClientAuth::JWT_BEARER_ASSERTION_TYPE),
            pair("client_assertion", secret),
        ]),
    }
    let scopes = requested_scopes(input);
    if !scopes.is_empty() {
        want.push(pair("scope", &scopes.join(" ")));
    }
    want.extend(input.audience.iter().map(|a| pair("audience", a)));
    want.extend(input.resources.iter().map(|r| pair("resource", r)));
    want.extend(input.params.iter().map(|(k, v)| pair(k, v)));
    want
}

fn check_authorization(input: &Input, request: &http::Request<RequestBody>) {
    let header = request.headers().get(AUTHORIZATION);
    let basic = |header: &http::HeaderValue| {
        assert!(header.is_sensitive());
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        BASE64.decode(encoded).unwrap()
    };
    match input.auth {
        AuthKind::Basic => {
            let decoded = String::from_utf8(basic(header.unwrap())).unwrap();
            let (user, password) = decoded.split_once(':').unwrap();
            assert_eq!(
                percent_decode_str(user).decode_utf8().unwrap(),
                input.client_id
            );
            assert_eq!(
                percent_decode_str(password).decode_utf8().unwrap(),
                input.secret
            );
        }
        AuthKind::BasicUnencoded => {
            let want = format!("{}:{}", input.client_id, input.secret);
            assert_eq!(basic(header.unwrap()), want.as_bytes());
        }
        AuthKind::Post | AuthKind::None | AuthKind::Assertion => assert!(header.is_none()),
    }
}

/// A different secret with the same length both raw and form-encoded, so that only the
/// secret's content differs (the body's length appears in `Debug`, by design).
fn twin(secret: &str) -> String {
    secret
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            c if c.is_ascii_alphanumeric() || "*-._".contains(c) => {
                if c == 'x' {
                    'y'
                } else {
                    'x'
                }
            }
            c if c.is_ascii() => {
                if c == '!' {
                    '#'
                } else {
                    '!'
                }
            }
            c => match c.len_utf8() {
                2 => {
                    if c == 'é' {
                        'ü'
                    } else {
                        'é'
                    }
                }
                3 => {
                    if c == '€' {
                        '₤'
                    } else {
                        '€'
                    }
                }
                _ => {
                    if c == '😀' {
                        '😁'
                    } else {
                        '😀'
                    }
                }
            },
        })
        .collect()
}
