//! Laws that hold for every input, checked with `proptest`:
//!
//! 1. the `Authorization: Basic` header and the form body always decode back to exactly the
//!    inputs (RFC 6749 §2.3.1, §4.4.2, Appendix B);
//! 2. for any status, headers and body bytes, parsing gives a token or a typed error, never a
//!    panic, and the strict rules accept nothing the tolerant ones refuse;
//! 3. no `Debug` or `Display` output of a public type holds the client secret, an assertion or
//!    the access token, nor any error text a secret planted in the server's answer.
//!
//! Failures are persisted in `proptest-regressions/properties.txt` and replayed first.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use client_credentials::auth::{ClientAssertion, ClientAuth};
use client_credentials::error::UnexpectedResponse;
use client_credentials::fetch::ResponseRules;
use client_credentials::http::header::{
    AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use client_credentials::http::{self, HeaderValue};
use client_credentials::token::{AccessToken, RefreshToken};
use client_credentials::{
    ClientCredentials, ClientSecret, Error, Token, TokenRequestBuilder, TokenUrl,
};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

use crate::support;
use support::responses::{parse, sent_at, with_content_type};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn url() -> TokenUrl {
    TokenUrl::new("https://idp.example.com/oauth2/token?tenant=t1").unwrap()
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any string, weighted towards the characters that break naive encoders.
fn credential() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        3 => "[:+%&= ~._\\-a-zA-Z0-9#/?;@!$'()*,\"\\\\]{0,24}",
        1 => "[é€😀ß\u{0}\u{7f}\u{a0}\u{2028}\u{feff}:%+ ]{0,12}",
    ]
}

/// A scope token as RFC 6749 §3.3 allows it.
fn scope_token() -> impl Strategy<Value = String> {
    "[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,12}"
}

/// An absolute URI without a fragment, as RFC 8707 §2 allows for `resource`.
fn resource() -> impl Strategy<Value = String> {
    "(https|urn|x-y\\+z\\.1)://?[a-zA-Z0-9._~%!$&'()*+,;=:@/?\\-]{0,24}"
}

/// An extra parameter name that is not reserved.
fn param_name() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("reserved or empty", |name| {
        !name.is_empty() && !TokenRequestBuilder::RESERVED_PARAMS.contains(&name.as_str())
    })
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Basic,
    BasicUnencoded,
    Post,
    None,
    Assertion,
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Basic),
        Just(Method::BasicUnencoded),
        Just(Method::Post),
        Just(Method::None),
        Just(Method::Assertion),
    ]
}

fn auth(method: Method, secret: &str) -> ClientAuth {
    match method {
        Method::Basic => ClientAuth::SecretBasic(ClientSecret::new(secret)),
        Method::BasicUnencoded => ClientAuth::SecretBasicUnencoded(ClientSecret::new(secret)),
        Method::Post => ClientAuth::SecretPost(ClientSecret::new(secret)),
        Method::None => ClientAuth::None,
        Method::Assertion => ClientAuth::Assertion(ClientAssertion::new(secret)),
    }
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// The text of a member value: any JSON value, or a number literal `serde_json` would not
/// write (huge, negative, fractional, with an exponent).
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => json_value().prop_map(|value| value.to_string()),
        1 => "-?[1-9][0-9]{0,29}",
        1 => "-?[1-9][0-9]{0,4}\\.[0-9]{1,5}",
        1 => "-?[0-9]{1,3}[eE][+-]?[0-9]{1,4}",
        1 => "\"-?[0-9 ]{0,25}\"",
    ]
}

fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// A JSON object whose members the parser reads get values of random types, in random order.
fn near_token_json() -> impl Strategy<Value = Vec<u8>> {
    let member = |name: &'static str, typical: BoxedStrategy<String>| {
        prop::option::weighted(0.85, prop_oneof![6 => typical, 1 => raw_value()])
            .prop_map(move |value| value.map(|value| (quoted(name), value)))
    };
    let code = prop_oneof![
        Just("invalid_client".to_owned()),
        Just("use_dpop_nonce".to_owned()),
        Just("slow_down".to_owned()),
        any::<String>(),
    ];
    (
        member(
            "access_token",
            "[A-Za-z0-9._~+/-]{0,40}".prop_map(|t| quoted(&t)).boxed(),
        ),
        member(
            "token_type",
            "(Bearer|bearer|DPoP|N_A|mac|)"
                .prop_map(|t| quoted(&t))
                .boxed(),
        ),
        member("expires_in", "[0-9]{1,6}".boxed()),
        member("scope", "[a-z:. ]{0,20}".prop_map(|t| quoted(&t)).boxed()),
        member(
            "refresh_token",
            "[A-Za-z0-9]{0,20}".prop_map(|t| quoted(&t)).boxed(),
        ),
        prop::option::weighted(0.2, code.prop_map(|c| (quoted("error"), quoted(&c)))),
        prop::option::weighted(
            0.2,
            any::<String>().prop_map(|d| (quoted("error_description"), quoted(&d))),
        ),
        prop::collection::vec(
            (any::<String>().prop_map(|n| quoted(&n)), raw_value()),
            0..3,
        ),
    )
        .prop_flat_map(|(a, b, c, d, e, f, g, extra)| {
            let members: Vec<(String, String)> = [a, b, c, d, e, f, g]
                .into_iter()
                .flatten()
                .chain(extra)
                .collect();
            Just(members).prop_shuffle()
        })
        .prop_map(|members| {
            let body: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{{{}}}", body.join(",")).into_bytes()
        })
}

/// Sometimes (6 times in 16) a little damage to a body: truncation, a BOM, white space,
/// trailing bytes, a changed byte, an enclosing array.
fn damaged(body: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (body, 0..16u8, any::<usize>(), any::<u8>()).prop_map(|(mut body, how, at, byte)| {
        let at = if body.is_empty() { 0 } else { at % body.len() };
        match how {
            0 => body.truncate(at),
            1 => body = [b"\xEF\xBB\xBF".as_slice(), &body].concat(),
            2 => body = [b" \r\n\t".as_slice(), &body].concat(),
            3 => body.extend_from_slice(b" x"),
            4 if !body.is_empty() => body[at] = byte,
            5 => {
                body.insert(0, b'[');
                body.push(b']');
            }
            _ => {}
        }
        body
    })
}

/// A form body with the members the parser reads, as GitHub sends it.
fn form_body() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("access_token".to_owned()),
        Just("token_type".to_owned()),
        Just("expires_in".to_owned()),
        Just("scope".to_owned()),
        Just("error".to_owned()),
        any::<String>(),
    ];
    prop::collection::vec((name, any::<String>()), 0..5).prop_map(|pairs| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(pairs);
        form.finish().into_bytes()
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        8 => damaged(near_token_json()),
        1 => form_body(),
        1 => "<html><body>[ -~]{0,64}</body></html>".prop_map(String::into_bytes),
        1 => Just(Vec::new()),
    ]
}

/// Whether a header value may hold the byte: visible ASCII, space, tab and obs-text.
fn is_header_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    let known = prop::sample::select(vec![
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=ISO-8859-1",
        "application/problem+json",
        "+json",
        "application/json;",
        ";",
        "",
        "text/plain",
        "text/javascript",
        "text/html; charset=utf-8",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
    ]);
    prop_oneof![
        1 => Just(None),
        4 => Just(Some(b"application/json".to_vec())),
        4 => known.prop_map(|ct| Some(ct.as_bytes().to_vec())),
        1 => header_bytes(40).prop_map(Some),
    ]
}

fn retry_after() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[0-9]{1,25}".prop_map(String::into_bytes),
        "(Mon|Wed|Sun), [0-3][0-9] (Jan|Oct|Dec) [0-9]{4} [0-2][0-9]:[0-5][0-9]:[0-6][0-9] GMT"
            .prop_map(String::into_bytes),
        "(Sunday, 06-Nov-94 08:49:37 GMT|Sun Nov  6 08:49:37 1994| 5 |-1|1.5)"
            .prop_map(String::into_bytes),
        header_bytes(40),
    ]
}

fn challenge() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        r#"(Basic|Bearer|DPoP) ?(realm="[ -~]{0,10}"|error=[a-z_]{0,10}|algs="ES256 PS256"|[A-Za-z0-9+/]{1,8}=*)?(, ?[a-z]{0,6}=?"?[ -~]{0,8})*"#
            .prop_map(String::into_bytes),
        header_bytes(64),
    ]
}

/// A response with any status, the headers the parser reads and any body.
#[derive(Debug, Clone)]
struct Input {
    status: u16,
    headers: Vec<(http::HeaderName, Vec<u8>)>,
    body: Vec<u8>,
}

impl Input {
    fn response(&self) -> http::Response<&[u8]> {
        let mut response = http::Response::new(self.body.as_slice());
        *response.status_mut() = http::StatusCode::from_u16(self.status).unwrap();
        for (name, value) in &self.headers {
            // Shrinking can step outside a strategy's alphabet: drop what a header cannot hold.
            let value: Vec<u8> = value
                .iter()
                .copied()
                .filter(|&b| is_header_byte(b))
                .collect();
            let value = HeaderValue::from_bytes(&value).unwrap();
            response.headers_mut().append(name.clone(), value);
        }
        response
    }
}

fn input() -> impl Strategy<Value = Input> {
    let status = prop_oneof![
        6 => Just(200u16),
        3 => prop::sample::select(vec![201u16, 204, 299, 301, 302, 400, 401, 403, 429, 500, 502, 503]),
        1 => 100u16..=999,
    ];
    let headers = (
        content_type(),
        prop::collection::vec(challenge(), 0..3),
        prop::option::of(retry_after()),
        prop::option::of(prop_oneof![
            "[!-~]{1,20}".prop_map(String::into_bytes),
            header_bytes(20)
        ]),
        prop::option::of(header_bytes(40)),
    )
        .prop_map(|(ct, challenges, retry, nonce, location)| {
            let dpop = http::HeaderName::from_static("dpop-nonce");
            let mut headers = Vec::new();
            headers.extend(ct.map(|ct| (CONTENT_TYPE, ct)));
            headers.extend(challenges.into_iter().map(|c| (WWW_AUTHENTICATE, c)));
            headers.extend(retry.map(|r| (RETRY_AFTER, r)));
            headers.extend(nonce.map(|n| (dpop, n)));
            headers.extend(location.map(|l| (LOCATION, l)));
            headers
        });
    (status, headers, body()).prop_map(|(status, headers, body)| Input {
        status,
        headers,
        body,
    })
}

/// A time anywhere from the epoch to the far future, where arithmetic may overflow.
fn any_time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        3 => (0..4_000_000_000u64).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        1 => any::<u64>().prop_map(|s| SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(s))
            .unwrap_or(SystemTime::UNIX_EPOCH)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The body of a request as decoded form pairs.
fn form_pairs(
    request: &http::Request<client_credentials::fetch::RequestBody>,
) -> Vec<(String, String)> {
    form_urlencoded::parse(request.body().secret())
        .into_owned()
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The user and password of a `Basic` header, base64-decoded but not percent-decoded.
fn basic_parts(
    request: &http::Request<client_credentials::fetch::RequestBody>,
) -> (String, String) {
    let header = &request.headers()[AUTHORIZATION];
    assert!(
        header.is_sensitive(),
        "the Authorization header is sensitive"
    );
    let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
    let decoded = String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap();
    let (user, password) = decoded.split_once(':').unwrap();
    (user.to_owned(), password.to_owned())
}

/// Display text is lower-case, one line, and has no trailing period (unless it ends with a
/// body excerpt, which is the server's text).
fn is_clean_display(err: &Error) -> bool {
    let text = err.to_string();
    let ends_with_server_text =
        matches!(err, Error::UnexpectedResponse(u) if u.excerpt().is_some());
    text.starts_with(|c: char| c.is_lowercase())
        && (ends_with_server_text || !text.ends_with('.'))
        && !text.contains(|c: char| c.is_control())
}

/// Server text kept in an error: no control characters and capped (plus the `…` marker).
fn is_sanitized(text: &str, max: usize) -> bool {
    !text.contains(|c: char| c.is_control()) && text.len() <= max + '…'.len_utf8()
}

// ---------------------------------------------------------------------------------------------
// 1. Requests decode back to their inputs
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// RFC 6749 §2.3.1: the id and secret are form-encoded, then base64'd. Both kinds of server
    /// decoding (plain percent-decoding and form decoding) give back exactly the inputs.
    #[test]
    fn basic_header_decodes_to_the_inputs(id in credential(), secret in credential()) {
        let client = ClientCredentials::new(url(), id.clone(), ClientSecret::new(secret.clone()));
        let request = client.token_request().build().unwrap().http_request(&support::responses::attempt()).unwrap();
        let (user, password) = basic_parts(&request);
        let unreserved = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b));
        prop_assert!(unreserved(&user) && unreserved(&password), "{user:?} {password:?}");
        prop_assert_eq!(percent_decode_str(&user).decode_utf8().unwrap(), id.as_str());
        prop_assert_eq!(percent_decode_str(&password).decode_utf8().unwrap(), secret.as_str());
        let form_decoded = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes()).next().unwrap().1.into_owned()
        };
        prop_assert_eq!(form_decoded(&user), id);
        prop_assert_eq!(form_decoded(&password), secret);
        prop_assert_eq!(form_pairs(&request), pairs(&[("grant_type", "client_credentials")]));
    }

    /// The unencoded style sends `id:secret` as is, and refuses an id holding `:` (RFC 7617 §2).
    #[test]
    fn unencoded_basic_header_is_the_raw_inputs(id in credential(), secret in credential()) {
        let client = ClientCredentials::with_auth(
            url(),
            id.clone(),
            ClientAuth::SecretBasicUnencoded(ClientSecret::new(secret.clone())),
        );
        match client {
            Err(Error::InvalidParameter { name, .. }) => {
                prop_assert!(id.contains(':'));
                prop_assert_eq!(name, "client_id");
            }
            Ok(client) => {
                prop_assert!(!id.contains(':'));
                let request = client.token_request().build().unwrap().http_request(&support::responses::attempt()).unwrap();
                let header = &request.headers()[AUTHORIZATION];
                prop_assert!(header.is_sensitive());
                let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
                prop_assert_eq!(BASE64.decode(encoded).unwrap(), format!("{id}:{secret}").into_bytes());
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    /// RFC 6749 §4.4.2 and Appendix B: every parameter form-decodes back to exactly what was
    /// given, in order, repeats kept, for every client authentication method.
    #[test]
    fn body_decodes_to_the_inputs(
        id in credential(),
        secret in credential(),
        method in method(),
        scopes in prop::collection::vec(scope_token(), 0..4),
        audience in prop::option::of(credential().prop_filter("empty", |a| !a.is_empty())),
        resources in prop::collection::vec(resource(), 0..3),
        params in prop::collection::vec((param_name(), credential()), 0..4),
    ) {
        // Unencoded basic credentials cannot carry a `:` in the id (RFC 7617 §2).
        let id = match method {
            Method::BasicUnencoded => id.replace(':', "_"),
            _ => id,
        };
        let client = ClientCredentials::with_auth(url(), id.clone(), auth(method, &secret)).unwrap();
        let mut builder = client.token_request().scopes(&scopes);
        if let Some(audience) = &audience {
            builder = builder.audience(audience.clone());
        }
        for resource in &resources {
            builder = builder.resource(resource.clone());
        }
        for (name, value) in &params {
            builder = builder.param(name.clone(), value.clone());
        }
        let request = builder.build().unwrap();
        let http_request = request.http_request(&support::responses::attempt()).unwrap();

        let mut want = pairs(&[("grant_type", "client_credentials")]);
        match method {
            Method::Basic | Method::BasicUnencoded => {}
            Method::Post => want.extend(pairs(&[("client_id", &id), ("client_secret", &secret)])),
            Method::None => want.extend(pairs(&[("client_id", &id)])),
            Method::Assertion => want.extend(pairs(&[
                ("client_id", &id),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &secret),
            ])),
        }
        if !scopes.is_empty() {
            want.push(("scope".into(), scopes.join(" ")));
        }
        want.extend(audience.map(|a| ("audience".to_owned(), a)));
        want.extend(resources.into_iter().map(|r| ("resource".to_owned(), r)));
        want.extend(params);
        prop_assert_eq!(form_pairs(&http_request), want);

        prop_assert_eq!(http_request.method(), http::Method::POST);
        prop_assert_eq!(http_request.uri(), "https://idp.example.com/oauth2/token?tenant=t1");
        prop_assert_eq!(&http_request.headers()[CONTENT_TYPE], "application/x-www-form-urlencoded");
        prop_assert_eq!(&http_request.headers()[http::header::ACCEPT], "application/json");
        prop_assert_eq!(
            http_request.headers().contains_key(AUTHORIZATION),
            matches!(method, Method::Basic | Method::BasicUnencoded)
        );
        prop_assert_eq!(request.scope().map(str::to_owned), (!scopes.is_empty()).then(|| scopes.join(" ")));
        let again = request.http_request(&support::responses::attempt()).unwrap();
        prop_assert_eq!(again.body().secret(), http_request.body().secret(), "stable");
    }

    /// Any scope string is accepted exactly when every space-separated token is a §3.3
    /// scope-token; any other parameter input builds or is refused with a typed error naming
    /// the parameter, and when it builds, the body still decodes back to it.
    #[test]
    fn build_accepts_exactly_valid_parameters(
        scope in prop_oneof![any::<String>(), "[ !-~]{0,16}"],
        audience in prop::option::of(any::<String>()),
        resource in prop::option::of(prop_oneof![any::<String>(), resource()]),
        param in prop::option::of((any::<String>(), any::<String>())),
    ) {
        let client = ClientCredentials::new(url(), "c", ClientSecret::new("s"));
        let scope_ok = scope
            .split(' ')
            .all(|t| !t.is_empty() && t.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)));
        let only_scope = client.token_request().scope(&scope).build();
        prop_assert_eq!(only_scope.is_ok(), scope_ok, "{:?}", only_scope);

        let mut builder: TokenRequestBuilder = client.token_request();
        if let Some(audience) = &audience {
            builder = builder.audience(audience.clone());
        }
        if let Some(resource) = &resource {
            builder = builder.resource(resource.clone());
        }
        if let Some((name, value)) = &param {
            builder = builder.param(name.clone(), value.clone());
        }
        match builder.build() {
            Ok(request) => {
                let body = form_pairs(&request.http_request(&support::responses::attempt()).unwrap());
                let find = |key: &str| body.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
                prop_assert_eq!(find("audience"), audience);
                prop_assert_eq!(find("resource"), resource);
                if let Some((name, value)) = param {
                    prop_assert_eq!(body.last().cloned(), Some((name, value)));
                }
            }
            Err(err @ Error::InvalidParameter { .. }) => {
                let Error::InvalidParameter { name, .. } = &err else { unreachable!() };
                let named_param = param.as_ref().is_some_and(|(n, _)| n == name);
                prop_assert!(
                    ["audience", "resource"].contains(&name.as_str()) || named_param,
                    "{name:?}"
                );
                prop_assert!(is_clean_display(&err), "{err}");
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Parsing never panics and gives a token or a typed error
// ---------------------------------------------------------------------------------------------

/// Everything that must hold of one parse result.
fn check_parse(
    input: &Input,
    rules: &ResponseRules,
    result: &Result<Token, Error>,
    now: SystemTime,
) -> Result<(), TestCaseError> {
    let status = http::StatusCode::from_u16(input.status).unwrap();
    match result {
        Ok(token) => {
            prop_assert!(status.is_success(), "a token from http {status}");
            prop_assert!(!token.access_token().secret().is_empty());
            prop_assert!(
                token
                    .expires_in()
                    .is_none_or(|e| e <= Token::MAX_EXPIRES_IN)
            );
            prop_assert_eq!(token.sent_at(), sent_at());
            // None of these may panic, whatever the lifetime and the clock.
            let _ = (
                token.expires_at(),
                token.is_expired(now),
                token.scopes().count(),
            );
            let _ = token.expires_within(now, Duration::MAX);
            let _ = token.extras_as::<serde_json::Map<String, Value>>();
            let _ = format!("{token:?} {}", token.token_type());
        }
        Err(err) => {
            prop_assert!(is_clean_display(err), "{err}");
            let _ = (format!("{err:?}"), err.is_retryable(), err.retry_after());
            match err {
                Error::BodyTooLarge { limit } => {
                    prop_assert_eq!(*limit, rules.max_body_len());
                    prop_assert!(input.body.len() > *limit);
                }
                Error::Redirect {
                    status: got,
                    location,
                    ..
                } => {
                    prop_assert_eq!(*got, status);
                    prop_assert!(status.is_redirection());
                    prop_assert!(
                        location
                            .as_deref()
                            .is_none_or(|l| is_sanitized(l, Error::MAX_SERVER_TEXT_LEN))
                    );
                }
                Error::InvalidResponse { status: got, .. } => {
                    prop_assert_eq!(*got, status);
                    prop_assert!(status.is_success());
                }
                Error::OAuth(oauth) => {
                    prop_assert_eq!(oauth.status(), status);
                    prop_assert!(is_sanitized(
                        oauth.code().as_str(),
                        Error::MAX_SERVER_TEXT_LEN
                    ));
                    for text in [oauth.description(), oauth.uri(), oauth.dpop_nonce()]
                        .into_iter()
                        .flatten()
                    {
                        prop_assert!(is_sanitized(text, Error::MAX_SERVER_TEXT_LEN), "{text:?}");
                    }
                    // The parser keeps at most 16 challenges of all `WWW-Authenticate` headers.
                    prop_assert!(oauth.challenges().len() <= 16);
                }
                Error::UnexpectedResponse(unexpected) => {
                    prop_assert_eq!(unexpected.status(), status);
                    prop_assert!(!status.is_success() && !status.is_redirection());
                    prop_assert!(
                        unexpected
                            .excerpt()
                            .is_none_or(|e| is_sanitized(e, UnexpectedResponse::MAX_EXCERPT_LEN))
                    );
                    prop_assert!(
                        unexpected
                            .content_type()
                            .is_none_or(|c| is_sanitized(c, Error::MAX_SERVER_TEXT_LEN))
                    );
                    let retryable = matches!(input.status, 408 | 429 | 500..=599);
                    prop_assert_eq!(err.is_retryable(), retryable, "{}", input.status);
                }
                other => prop_assert!(false, "parsing gave a non-response error: {other:?}"),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4096))]

    /// For any status, headers and body, each rule set gives a token or a typed error, never a
    /// panic; whatever the strict rules accept the tolerant ones accept alike.
    #[test]
    fn parsing_gives_a_token_or_a_typed_error(
        input in input(),
        now in any_time(),
        limit in prop_oneof![Just(ResponseRules::DEFAULT_MAX_BODY_LEN), 0..64usize],
    ) {
        let response = input.response();
        let tolerant = ResponseRules::tolerant();
        let strict = ResponseRules::strict();
        let small = ResponseRules::tolerant().with_max_body_len(limit);

        let from_tolerant = parse(tolerant, &response, sent_at());
        let from_strict = parse(strict, &response, sent_at());
        check_parse(&input, &tolerant, &from_tolerant, now)?;
        check_parse(&input, &strict, &from_strict, now)?;
        check_parse(&input, &small, &parse(small, &response, sent_at()), now)?;

        if let Ok(strict_token) = &from_strict {
            prop_assert_eq!(input.status, 200, "strict accepts only 200");
            let Ok(token) = &from_tolerant else {
                return Err(TestCaseError::fail(format!("strict accepted what tolerant refused: {from_tolerant:?}")));
            };
            prop_assert_eq!(token.access_token().secret(), strict_token.access_token().secret());
            prop_assert_eq!(token.token_type(), strict_token.token_type());
            prop_assert_eq!(token.expires_in(), strict_token.expires_in());
            prop_assert_eq!(token.scope(), strict_token.scope());
            prop_assert_eq!(token.extras(), strict_token.extras());
        }
        if let (Err(Error::OAuth(strict_error)), Err(err)) = (&from_strict, &from_tolerant) {
            prop_assert_eq!(err.oauth().map(|e| e.code()), Some(strict_error.code()));
        }

        // The default rules are the tolerant ones; a request fills in the scope it asked for.
        let default = parse(ResponseRules::default(), &response, sent_at());
        prop_assert_eq!(default.is_ok(), from_tolerant.is_ok());
        let request = ClientCredentials::new(url(), "c", ClientSecret::new("s"))
            .token_request()
            .scope("a b")
            .build()
            .unwrap();
        if let (Ok(token), Ok(plain)) = (request.parse_response(&response, sent_at()), &from_tolerant) {
            prop_assert_eq!(token.scope(), Some(plain.scope().unwrap_or("a b")));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. No output holds a secret
// ---------------------------------------------------------------------------------------------

/// A secret: 12 to 24 random alphanumerics, so that it cannot appear by accident.
fn secret_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{12,24}"
}

/// How a response that holds the access token can come back.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Token,
    NoTokenType,
    BadExpiresIn,
    NegativeExpiresIn,
    ScopeArray,
    BadScope,
    BadRefreshToken,
    BadTokenType,
    DuplicateToken,
    Truncated,
    TrailingBytes,
    InArray,
    Bom,
    Form,
    Html,
    PlainText,
    WithError,
}

fn shape() -> impl Strategy<Value = Shape> {
    use Shape::*;
    prop::sample::select(vec![
        Token,
        NoTokenType,
        BadExpiresIn,
        NegativeExpiresIn,
        ScopeArray,
        BadScope,
        BadRefreshToken,
        BadTokenType,
        DuplicateToken,
        Truncated,
        TrailingBytes,
        InArray,
        Bom,
        Form,
        Html,
        PlainText,
        WithError,
    ])
}

/// A body of the given shape with the access token `token` and the refresh token `refresh`.
fn leaky_body(shape: Shape, token: &str, refresh: &str, cut: usize) -> (Vec<u8>, &'static str) {
    const JSON: &str = "application/json";
    // Outside error responses an `id_token` holds a token too: Token's Debug lists it by name.
    let object = |members: &str| {
        format!(
            r#"{{"access_token":"{token}","refresh_token":"{refresh}","id_token":"{refresh}"{members}}}"#
        )
    };
    let body = match shape {
        Shape::Token => object(r#","token_type":"Bearer","expires_in":3600"#),
        Shape::NoTokenType => object(""),
        Shape::BadExpiresIn => object(r#","token_type":"Bearer","expires_in":"soon""#),
        Shape::NegativeExpiresIn => object(r#","token_type":"Bearer","expires_in":-1"#),
        Shape::ScopeArray => object(r#","token_type":"Bearer","scope":["a","b"]"#),
        Shape::BadScope => object(r#","token_type":"Bearer","scope":[1]"#),
        Shape::BadRefreshToken => {
            format!(r#"{{"access_token":"{token}","token_type":"Bearer","refresh_token":{{}}}}"#)
        }
        Shape::BadTokenType => object(r#","token_type":1"#),
        Shape::DuplicateToken => object(&format!(r#","access_token":"{token}""#)),
        Shape::Truncated => {
            let full = object(r#","token_type":"Bearer""#);
            // Cut somewhere after the token has started.
            let start = full.find(token).unwrap() + 1;
            full[..start + cut % (full.len() - start)].to_owned()
        }
        Shape::TrailingBytes => object(r#","token_type":"Bearer"} x"#),
        Shape::InArray => format!("[{}]", object(r#","token_type":"Bearer""#)),
        Shape::Bom => format!("\u{feff}{}", object(r#","token_type":"Bearer""#)),
        Shape::Form => {
            return (
                format!("access_token={token}&token_type=bearer&refresh_token={refresh}")
                    .into_bytes(),
                "application/x-www-form-urlencoded",
            );
        }
        Shape::Html => {
            return (
                format!("<html><body>{token}</body></html>").into_bytes(),
                "text/html",
            );
        }
        Shape::PlainText => return (format!("access_token {token}").into_bytes(), "text/plain"),
        Shape::WithError => format!(
            r#"{{"access_token":"{token}","refresh_token":"{refresh}","error":"invalid_client","error_description":"no"}}"#
        ),
    };
    (body.into_bytes(), JSON)
}

fn assert_hidden(outputs: &[String], secrets: &[&str]) -> Result<(), TestCaseError> {
    for output in outputs {
        for secret in secrets {
            prop_assert!(
                !output.contains(secret),
                "{secret:?} leaked into {output:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// Neither the client secret nor an assertion appears in any Debug or Display output of
    /// the types that hold them, the request built from them, or the errors about them.
    #[test]
    fn request_side_output_never_holds_the_secret(
        secret in secret_text(),
        id in "[a-z]{1,8}-client",
        method in method(),
    ) {
        let mut outputs = vec![
            format!("{:?}", ClientSecret::new(&secret)),
            format!("{:?}", ClientAssertion::new(&secret)),
            format!("{:?}", AccessToken::new(&secret)),
            format!("{:?}", RefreshToken::new(&secret)),
            format!("{:?}", auth(method, &secret)),
        ];
        let client = ClientCredentials::with_auth(url(), id.clone(), auth(method, &secret)).unwrap();
        let builder = client.token_request().scope("read").audience("https://api.example.com");
        outputs.push(format!("{client:?}"));
        outputs.push(format!("{builder:?}"));
        let request = builder.build().unwrap();
        let http_request = request.http_request(&support::responses::attempt()).unwrap();
        outputs.push(format!("{request:?}"));
        outputs.push(format!("{http_request:?}"));
        outputs.push(format!("{:?}", http_request.headers()));
        outputs.push(format!("{:?}", http_request.body()));
        outputs.push(format!("{:?}", http_request.body().clone()));

        // Errors about parameters name them, never their values.
        for builder in [
            client.token_request().param("client_secret", &secret),
            client.token_request().param("", &secret),
            client.token_request().scope(format!("{secret} \"")),
            client.token_request().resource(format!("{secret}#f")),
        ] {
            let err = builder.build().unwrap_err();
            outputs.push(format!("{err:?}"));
            outputs.push(err.to_string());
        }
        let err = ClientCredentials::with_auth(
            url(),
            format!("{id}:x"),
            ClientAuth::SecretBasicUnencoded(ClientSecret::new(&secret)),
        )
        .unwrap_err();
        outputs.push(format!("{err:?}"));
        outputs.push(err.to_string());
        assert_hidden(&outputs, &[&secret])?;
    }

    /// Neither the access token nor the refresh token of a response appears in the Debug of
    /// the token, nor in the Debug or Display of any error from parsing a response that holds
    /// them, whatever goes wrong with it and under any rules.
    #[test]
    fn response_side_output_never_holds_the_token(
        token in secret_text(),
        refresh in secret_text(),
        shape in shape(),
        status in prop_oneof![
            4 => prop::sample::select(vec![200u16, 201, 203, 299, 301, 302, 307, 308]),
            1 => prop::sample::select(vec![400u16, 401, 403, 429, 500, 503]),
        ],
        cut in any::<usize>(),
        limit in prop_oneof![Just(ResponseRules::DEFAULT_MAX_BODY_LEN), 0..64usize],
    ) {
        // A non-success body that is not an OAuth error is described by its member names when
        // it is JSON or a form, and quoted, redacted after secret-looking names, otherwise: a
        // bare token in a page or in prose cannot be told from other text, so those shapes
        // are sent only with a success status.
        let shape = match shape {
            Shape::Html | Shape::PlainText if status >= 400 => Shape::WithError,
            shape => shape,
        };
        let (body, content_type) = leaky_body(shape, &token, &refresh, cut);
        let response = with_content_type(status, content_type, body);
        let mut outputs = Vec::new();
        for rules in [
            ResponseRules::tolerant(),
            ResponseRules::strict(),
            ResponseRules::tolerant().with_max_body_len(limit),
        ] {
            match parse(rules, &response, sent_at()) {
                Ok(parsed) => {
                    prop_assert_eq!(parsed.access_token().secret(), token.as_str());
                    outputs.push(format!("{parsed:?}"));
                    outputs.push(format!("{:?}", parsed.access_token()));
                    outputs.push(format!("{:?}", parsed.refresh_token()));
                }
                Err(err) => {
                    outputs.push(format!("{err:?}"));
                    outputs.push(err.to_string());
                }
            }
        }
        assert_hidden(&outputs, &[&token, &refresh])?;
    }
}

/// A secret-looking name as servers spell it: any of the names, in any case, joined by `_`,
/// `-`, `%5F` or nothing.
fn secret_name() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        vec!["access", "token"],
        vec!["refresh", "token"],
        vec!["id", "token"],
        vec!["client", "secret"],
        vec!["client", "assertion"],
        vec!["assertion"],
        vec!["password"],
    ]);
    let joint = prop::sample::select(vec!["_", "-", "%5F", ""]);
    let case = prop::sample::select(vec![0u8, 1, 2]);
    (words, joint, case).prop_map(|(words, joint, case)| {
        let cased: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(n, word)| match case {
                0 => (*word).to_owned(),
                1 => word.to_uppercase(),
                // camelCase: clientSecret
                _ if n > 0 => word[..1].to_uppercase() + &word[1..],
                _ => (*word).to_owned(),
            })
            .collect();
        cased.join(joint)
    })
}

/// `name` and `secret` as a page or a log line echoes them.
fn echoed(name: &str, secret: &str, how: u8) -> String {
    match how % 14 {
        0 => format!("{name}={secret}"),
        1 => format!("{name} = {secret}"),
        2 => format!("\"{name}\":\"{secret}\""),
        3 => format!("\"{name}\": \"{secret}\""),
        4 => format!("{name}: {secret}"),
        5 => format!("{name}=\"{secret}\""),
        6 => format!("{name}='{secret}'"),
        7 => format!("{name}%3D{secret}"),
        8 => format!("{name}&#61;{secret}"),
        9 => format!("<input type=\"hidden\" name=\"{name}\" value=\"{secret}\">"),
        10 => format!("<td>{name}</td>\n<td>{secret}</td>"),
        11 => format!("{{\\\"{name}\\\":\\\"{secret}\\\"}}"),
        12 => format!("grant_type=client_credentials&{name}={secret}&scope=a"),
        _ => format!("{name}=\r\n\t{secret}"),
    }
}

/// A server answer with `secret` planted where an error could quote it: a non-2xx JSON body
/// with a token and no `error`, an `error` object, a form, a page echoing the request, an
/// OAuth error with extra members or a description or uri echoing it, a token with an empty
/// `error`.
fn planted_answer(kind: u8, name: &str, secret: &str, how: u8) -> (Vec<u8>, &'static str) {
    const JSON: &str = "application/json";
    let echo = echoed(name, secret, how);
    let (body, content_type) = match kind % 10 {
        0 => (
            format!(r#"{{"access_token":"{secret}","token_type":"Bearer"}}"#),
            JSON,
        ),
        1 => (
            format!(r#"{{"error":{{"code":1,"message":"{secret}"}},"access_token":"{secret}"}}"#),
            JSON,
        ),
        2 => (
            format!("client_secret={secret}&{name}={secret}"),
            "application/x-www-form-urlencoded",
        ),
        3 => (format!("{name}={secret}&expires=60"), "text/plain"),
        4 => (
            format!("<html><body><h1>502 Bad Gateway</h1><p>request was: {echo}</p></body></html>"),
            "text/html",
        ),
        5 => (format!("upstream refused: {echo}"), "text/plain"),
        6 => (
            format!(
                r#"{{"error":"invalid_client","id_token":"{secret}","{name}":"{secret}","nested":{{"k":"{secret}"}}}}"#
            ),
            JSON,
        ),
        7 => (
            serde_json::json!({
                "error": "invalid_request",
                "error_description": format!("could not read {echo}"),
                "error_uri": format!("https://idp.example/e?{name}={secret}"),
            })
            .to_string(),
            JSON,
        ),
        8 => (
            format!(
                r#"{{"access_token":"{secret}","token_type":"Bearer","error":"","id_token":"{secret}"}}"#
            ),
            JSON,
        ),
        _ => (format!("{{\"{name}\":\"{secret}\""), JSON),
    };
    (body.into_bytes(), content_type)
}

/// Every error in the chain, shown both ways.
fn error_texts(err: &Error) -> Vec<String> {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        texts.push(format!("{cause:?}"));
        source = cause.source();
    }
    texts
}

proptest! {
    #![proptest_config(config(512))]

    /// A secret planted in any of the server's answers that errors describe (non-OAuth bodies,
    /// OAuth errors' members, descriptions and uris) appears in no Display, Debug or source
    /// text of the error, whatever the status and rules; nor in a token's Debug.
    /// (The same law over the crate's tracing output, with real fetches against a server that
    /// echoes secrets, is `tracing_output_shows_the_fetches_and_never_a_secret` in
    /// `tests/io/observe.rs`.)
    #[test]
    fn planted_secrets_never_reach_error_text(
        secret in secret_text(),
        name in secret_name(),
        kind in any::<u8>(),
        how in any::<u8>(),
        status in prop::sample::select(vec![200u16, 201, 400, 401, 403, 404, 429, 500, 502, 503]),
    ) {
        let (body, content_type) = planted_answer(kind, &name, &secret, how);
        let response = with_content_type(status, content_type, body);
        let mut outputs = Vec::new();
        for rules in [ResponseRules::tolerant(), ResponseRules::strict()] {
            match parse(rules, &response, sent_at()) {
                Ok(token) => outputs.push(format!("{token:?}")),
                Err(err) => outputs.extend(error_texts(&err)),
            }
        }
        assert_hidden(&outputs, &[&secret])?;
    }
}
