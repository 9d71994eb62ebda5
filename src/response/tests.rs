use super::*;
use crate::test_support::at;

fn response(status: u16, content_type: Option<&str>, body: &str) -> http::Response<Vec<u8>> {
    let mut builder = http::Response::builder().status(status);
    if let Some(content_type) = content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    builder.body(body.as_bytes().to_vec()).unwrap()
}

fn sent_at() -> SystemTime {
    at(1_700_000_000)
}

fn parse(rules: ResponseRules, status: u16, ct: Option<&str>, body: &str) -> Result<Token, Error> {
    rules.parse(&response(status, ct, body), sent_at())
}

fn tolerant(status: u16, ct: Option<&str>, body: &str) -> Result<Token, Error> {
    parse(ResponseRules::tolerant(), status, ct, body)
}

fn problem(result: Result<Token, Error>) -> ResponseProblem {
    match result {
        Err(Error::InvalidResponse { problem, .. }) => problem,
        other => panic!("expected an invalid response, got {other:?}"),
    }
}

const JSON: Option<&str> = Some("application/json");

#[test]
fn minimal_token_rfc6749_5_1() {
    let token = tolerant(
        200,
        JSON,
        r#"{"access_token":"at","token_type":"Bearer","expires_in":3600}"#,
    )
    .unwrap();
    assert_eq!(token.access_token().secret(), "at");
    assert_eq!(token.token_type(), &TokenType::Bearer);
    assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
    assert_eq!(
        token.expires_at(),
        Some(sent_at() + Duration::from_secs(3600))
    );
    assert_eq!(token.scope(), None);
    assert!(token.refresh_token().is_none());
}

#[test]
fn escaped_strings_are_decoded() {
    let token = tolerant(
        200,
        JSON,
        r#"{"access_token":"a\/b\u00e9","token_type":"bearer"}"#,
    )
    .unwrap();
    assert_eq!(token.access_token().secret(), "a/bé");
}

#[test]
fn error_member_makes_an_oauth_error_under_any_status_rfc6749_5_2() {
    for status in [400, 401, 200] {
        let err = tolerant(status, JSON, r#"{"error":"invalid_scope","error_description":"no","error_uri":"https://e/x","trace_id":"t"}"#).unwrap_err();
        let oauth = err.oauth().expect("an oauth error");
        assert_eq!(oauth.code(), &ErrorCode::InvalidScope);
        assert_eq!(oauth.status().as_u16(), status);
        assert_eq!(oauth.description(), Some("no"));
        assert_eq!(oauth.uri(), Some("https://e/x"));
        assert_eq!(oauth.extra()["trace_id"], "t");
        assert!(oauth.extra().get("scope").is_none());
        assert!(!err.is_retryable());
    }
}

#[test]
fn oauth_error_keeps_challenge_nonce_and_retry_after() {
    let response = http::Response::builder()
        .status(401)
        .header(CONTENT_TYPE, "application/json")
        .header("www-authenticate", r#"Basic realm="idp""#)
        .header("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")
        .header("retry-after", "30")
        .body(br#"{"error":"use_dpop_nonce"}"#.to_vec())
        .unwrap();
    let err = ResponseRules::default()
        .parse(&response, sent_at())
        .unwrap_err();
    let oauth = err.oauth().unwrap();
    assert_eq!(oauth.challenges()[0].realm(), Some("idp"));
    assert_eq!(oauth.dpop_nonce(), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
    assert_eq!(
        oauth.retry_after(),
        Some(RetryAfter::Delay(Duration::from_secs(30)))
    );
    assert!(
        err.is_retryable(),
        "use_dpop_nonce is retried with the nonce"
    );
}

#[test]
fn token_members_of_an_error_are_kept_as_extra_but_tokens_are_not() {
    let body = r#"{"error":"invalid_scope","scope":"api:admin","access_token":"leak"}"#;
    let err = tolerant(400, JSON, body).unwrap_err();
    let extra = err.oauth().unwrap().extra();
    assert_eq!(extra["scope"], "api:admin");
    assert!(extra.get("access_token").is_none());
}

#[test]
fn server_text_is_sanitized() {
    let long = "x".repeat(5000);
    let body =
        format!(r#"{{"error":"invalid_client","error_description":"bad\u001b[31m\n{long}"}}"#);
    let err = tolerant(401, JSON, &body).unwrap_err();
    let description = err.oauth().unwrap().description().unwrap();
    assert!(description.starts_with("bad[31m x"));
    assert!(description.len() <= MAX_SERVER_TEXT_LEN + '…'.len_utf8());
    assert!(!err.to_string().contains('\u{1b}'));
}

#[test]
fn non_oauth_error_keeps_status_type_retry_after_and_excerpt() {
    let response = http::Response::builder()
        .status(503)
        .header(CONTENT_TYPE, "text/html")
        .header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")
        .body(b"<html><body>\n<h1>502 Bad Gateway</h1>".to_vec())
        .unwrap();
    let err = ResponseRules::default()
        .parse(&response, sent_at())
        .unwrap_err();
    let Error::UnexpectedResponse(unexpected) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(unexpected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unexpected.content_type(), Some("text/html"));
    assert_eq!(
        unexpected.excerpt(),
        Some("<html><body> <h1>502 Bad Gateway</h1>")
    );
    assert_eq!(
        unexpected.retry_after(),
        Some(RetryAfter::At(at(1_445_412_480)))
    );
    assert!(err.is_retryable());
}

#[test]
fn success_body_is_never_quoted() {
    for body in [
        "<html>secret-token-material</html>",
        r#"{"access_token": 12, "x": "secret-token-material"}"#,
        r#"{"access_token":"secret-token-material""#,
        "secret-token-material",
    ] {
        let err = tolerant(200, Some("text/html"), body).unwrap_err();
        assert!(!err.to_string().contains("secret-token-material"), "{err}");
        assert!(
            !format!("{err:?}").contains("secret-token-material"),
            "{err:?}"
        );
    }
}

#[test]
fn expires_in_forms() {
    let lifetime = |value: &str| {
        tolerant(
            200,
            JSON,
            &format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#),
        )
        .map(|t| t.expires_in())
    };
    assert_eq!(lifetime("3599").unwrap(), Some(Duration::from_secs(3599)));
    assert_eq!(
        lifetime(r#""3599""#).unwrap(),
        Some(Duration::from_secs(3599))
    );
    assert_eq!(lifetime("3600.0").unwrap(), Some(Duration::from_secs(3600)));
    assert_eq!(
        lifetime("3600.9").unwrap(),
        Some(Duration::from_secs(3600)),
        "errs short"
    );
    assert_eq!(lifetime("null").unwrap(), None);
    assert_eq!(lifetime("0").unwrap(), Some(Duration::ZERO));
    for huge in [
        "18446744073709551615",
        "99999999999999999999999",
        "1e300",
        r#""99999999999999999999999""#,
    ] {
        assert_eq!(
            lifetime(huge).unwrap(),
            Some(Token::MAX_EXPIRES_IN),
            "{huge}"
        );
    }
    for negative in ["-1", "-1.5", r#""-3""#] {
        assert_eq!(
            problem(lifetime(negative).map(|_| unreachable!())),
            ResponseProblem::NegativeExpiresIn,
            "{negative}"
        );
    }
    for bad in [r#""soon""#, "true", "{}", "[1]", r#""""#, r#"" 5""#] {
        assert!(
            matches!(
                problem(lifetime(bad).map(|_| unreachable!())),
                ResponseProblem::InvalidMember {
                    name: "expires_in",
                    ..
                }
            ),
            "{bad}"
        );
    }
}

#[test]
fn scope_forms_rfc6749_5_1() {
    let scope = |value: &str| {
        tolerant(
            200,
            JSON,
            &format!(r#"{{"access_token":"a","token_type":"Bearer","scope":{value}}}"#),
        )
    };
    assert_eq!(scope(r#""a b""#).unwrap().scope(), Some("a b"));
    assert_eq!(scope(r#"["a","b"]"#).unwrap().scope(), Some("a b"));
    assert!(matches!(
        problem(scope("[1]")),
        ResponseProblem::InvalidMember { name: "scope", .. }
    ));
    assert!(matches!(
        problem(scope("5")),
        ResponseProblem::InvalidMember { name: "scope", .. }
    ));
    let strict = parse(
        ResponseRules::strict(),
        200,
        JSON,
        r#"{"access_token":"a","token_type":"Bearer","scope":["a"]}"#,
    );
    assert!(matches!(
        problem(strict),
        ResponseProblem::InvalidMember { name: "scope", .. }
    ));
}

#[test]
fn missing_or_wrong_members() {
    assert_eq!(
        problem(tolerant(200, JSON, r#"{"token_type":"Bearer"}"#)),
        ResponseProblem::MissingAccessToken
    );
    assert_eq!(
        problem(tolerant(200, JSON, r#"{"access_token":null}"#)),
        ResponseProblem::MissingAccessToken
    );
    assert!(matches!(
        problem(tolerant(200, JSON, r#"{"access_token":""}"#)),
        ResponseProblem::InvalidMember {
            name: "access_token",
            ..
        }
    ));
    assert!(matches!(
        problem(tolerant(
            200,
            JSON,
            r#"{"access_token":"a","token_type":1}"#
        )),
        ResponseProblem::InvalidMember {
            name: "token_type",
            ..
        }
    ));
    assert!(matches!(
        problem(tolerant(
            200,
            JSON,
            r#"{"access_token":"a","refresh_token":{}}"#
        )),
        ResponseProblem::InvalidMember {
            name: "refresh_token",
            ..
        }
    ));
    assert_eq!(
        problem(tolerant(
            200,
            JSON,
            r#"{"access_token":"a","access_token":"b"}"#
        )),
        ResponseProblem::DuplicateMember("access_token")
    );
    let form = Some("application/x-www-form-urlencoded");
    assert_eq!(
        problem(tolerant(200, form, "access_token=a&access_token=b")),
        ResponseProblem::DuplicateMember("access_token")
    );
    assert!(
        tolerant(200, JSON, r#"{"access_token":"a","error":null}"#).is_ok(),
        "a null error is absent"
    );
    assert!(matches!(
        problem(tolerant(
            200,
            JSON,
            r#"{"access_token":"a","error":{"code":1}}"#
        )),
        ResponseProblem::InvalidMember { name: "error", .. }
    ));
    assert!(matches!(
        problem(tolerant(200, JSON, r#"["access_token"]"#)),
        ResponseProblem::InvalidJson { .. }
    ));
    assert!(matches!(
        problem(tolerant(200, JSON, r#"{"access_token":"a"} x"#)),
        ResponseProblem::InvalidJson { .. }
    ));
    assert!(matches!(
        problem(tolerant(200, JSON, "")),
        ResponseProblem::InvalidJson { .. }
    ));
}

#[test]
fn missing_token_type_tolerance() {
    let body = r#"{"access_token":"a"}"#;
    assert_eq!(
        tolerant(200, JSON, body).unwrap().token_type(),
        &TokenType::Bearer
    );
    assert_eq!(
        problem(parse(ResponseRules::strict(), 200, JSON, body)),
        ResponseProblem::MissingTokenType
    );
}

#[test]
fn refresh_token_and_extras_are_kept() {
    let token = tolerant(200, JSON, r#"{"access_token":"a","token_type":"Bearer","refresh_token":"r","ext_expires_in":3599,"id_token":"i","nested":{"k":[1]}}"#).unwrap();
    assert_eq!(token.refresh_token().unwrap().secret(), "r");
    assert_eq!(token.extra("ext_expires_in"), Some(&Value::from(3599)));
    assert_eq!(token.extra("nested").unwrap()["k"][0], 1);
}

#[test]
fn content_type_tolerances() {
    let body = r#"{"access_token":"a","token_type":"Bearer"}"#;
    for ct in [
        Some("text/plain; charset=utf-8"),
        Some("text/javascript"),
        None,
        Some("application/json; charset=ISO-8859-1"),
        Some("application/vnd.x+json"),
    ] {
        assert!(tolerant(200, ct, body).is_ok(), "{ct:?}");
    }
    assert!(matches!(
        problem(parse(
            ResponseRules::strict(),
            200,
            Some("text/plain"),
            body
        )),
        ResponseProblem::UnexpectedContentType { .. }
    ));
    assert!(
        parse(
            ResponseRules::strict(),
            200,
            Some("Application/JSON;charset=UTF-8"),
            body
        )
        .is_ok()
    );
    assert!(matches!(
        problem(tolerant(200, Some("text/html"), "<html>")),
        ResponseProblem::NotJson { .. }
    ));
}

#[test]
fn utf8_bom_tolerance() {
    let body = "\u{feff}{\"access_token\":\"a\",\"token_type\":\"Bearer\"}";
    assert!(tolerant(200, JSON, body).is_ok());
    assert!(matches!(
        problem(parse(ResponseRules::strict(), 200, JSON, body)),
        ResponseProblem::InvalidJson { .. }
    ));
}

#[test]
fn form_body_tolerance() {
    let body = "access_token=gho_abc&scope=repo%2Cgist&token_type=bearer";
    let token = tolerant(200, Some("application/x-www-form-urlencoded"), body).unwrap();
    assert_eq!(token.access_token().secret(), "gho_abc");
    assert_eq!(token.scope(), Some("repo,gist"));
    let err = tolerant(
        200,
        Some("application/x-www-form-urlencoded"),
        "error=bad_verification_code&error_description=x",
    )
    .unwrap_err();
    assert_eq!(
        err.oauth().unwrap().code().as_str(),
        "bad_verification_code"
    );
    assert!(matches!(
        problem(parse(
            ResponseRules::strict(),
            200,
            Some("application/x-www-form-urlencoded"),
            body
        )),
        ResponseProblem::NotJson { .. }
    ));
}

#[test]
fn success_status_tolerance() {
    let body = r#"{"access_token":"a","token_type":"Bearer"}"#;
    assert!(tolerant(201, JSON, body).is_ok());
    assert_eq!(
        problem(parse(ResponseRules::strict(), 201, JSON, body)),
        ResponseProblem::UnexpectedSuccessStatus
    );
}

#[test]
fn float_and_string_expires_in_strictly_refused() {
    for value in ["3600.0", r#""3600""#] {
        let body = format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#);
        assert!(matches!(
            problem(parse(ResponseRules::strict(), 200, JSON, &body)),
            ResponseProblem::InvalidMember {
                name: "expires_in",
                ..
            }
        ));
    }
    let huge = r#"{"access_token":"a","token_type":"Bearer","expires_in":99999999999999999999999}"#;
    assert_eq!(
        parse(ResponseRules::strict(), 200, JSON, huge)
            .unwrap()
            .expires_in(),
        Some(Token::MAX_EXPIRES_IN)
    );
}

#[test]
fn body_limit_is_checked_before_parsing() {
    let rules = ResponseRules::tolerant().with_max_body_len(10);
    let err = parse(rules, 200, JSON, r#"{"access_token":"abcdefgh"}"#).unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { limit: 10 }));
}

#[test]
fn redirects_are_errors_naming_the_location() {
    let response = http::Response::builder()
        .status(302)
        .header(LOCATION, "https://evil.example/steal")
        .body(Vec::new())
        .unwrap();
    let err = ResponseRules::default()
        .parse(&response, sent_at())
        .unwrap_err();
    let Error::Redirect {
        status, location, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(status.as_u16(), 302);
    assert_eq!(location.as_deref(), Some("https://evil.example/steal"));
    assert!(err.to_string().contains("https://evil.example/steal"));
}

#[test]
fn clean_text_is_what_sanitizing_would_make_of_it() {
    for clean in ["", "invalid_client", "client authentication failed", "a!~"] {
        assert!(is_clean(clean), "{clean:?}");
        assert_eq!(sanitize::text(clean, MAX_SERVER_TEXT_LEN), clean);
    }
    let long = "x".repeat(MAX_SERVER_TEXT_LEN + 1);
    for dirty in [
        " lead",
        "trail ",
        "two  spaces",
        "tab\there",
        "bell\u{7}",
        "del\u{7f}",
        "x\u{202e}y",
        &long,
    ] {
        assert!(!is_clean(dirty), "{dirty:?}");
        assert_ne!(sanitize::text(dirty, MAX_SERVER_TEXT_LEN), dirty);
    }
    assert!(!is_clean("é"), "non-ASCII text takes the full path");
}

#[test]
fn non_oauth_json_and_form_bodies_are_described_by_member_names() {
    let leaky = [
        (
            500,
            JSON,
            r#"{"access_token":"SECRETa1","token_type":"Bearer"}"#,
        ),
        (
            400,
            JSON,
            r#"{"error":{"code":"x","detail":"SECRETa1"},"access_token":"SECRETa1"}"#,
        ),
        (
            502,
            Some("application/x-www-form-urlencoded"),
            "client_secret=SECRETa1&client_id=c",
        ),
        (
            503,
            Some("text/plain"),
            "access_token=SECRETa1&expires_in=5",
        ),
    ];
    for (status, ct, body) in leaky {
        let err = tolerant(status, ct, body).unwrap_err();
        let Error::UnexpectedResponse(unexpected) = &err else {
            panic!("{err:?}")
        };
        assert!(!err.to_string().contains("SECRETa1"), "{err}");
        assert!(!format!("{err:?}").contains("SECRETa1"), "{err:?}");
        let excerpt = unexpected.excerpt().unwrap();
        assert!(excerpt.contains("members `"), "{excerpt}");
    }
    let err = tolerant(500, JSON, r#"{"access_token":"SECRETa1","scope":"a"}"#).unwrap_err();
    let Error::UnexpectedResponse(unexpected) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        unexpected.excerpt(),
        Some("a json object with members `access_token`, `scope`")
    );
}

#[test]
fn html_and_text_excerpts_redact_secret_looking_values() {
    for body in [
        "<html><body>bad request: client_secret=SECRETa1&grant_type=client_credentials</body></html>",
        "<pre>Client_Secret = SECRETa1</pre>",
        "upstream said: \"access_token\": \"SECRETa1\"",
        "upstream said: {\\\"access_token\\\":\\\"SECRETa1\\\"}",
        "refresh_token: SECRETa1",
        "<input type=\"hidden\" name=\"client_secret\" value=\"SECRETa1\">",
        "<input name='password' value='SECRETa1'>",
        "form: client%5Fsecret%3DSECRETa1%26x%3D1",
        "client_secret&#61;SECRETa1",
        "<td>id_token</td><td>SECRETa1</td>",
        "clientSecret=\"SECRET a1 SECRETa1\"",
        "<p>assertion=SECRETa1</p>",
        "<p>ACCESS-TOKEN=SECRETa1</p>",
        "password=\n\tSECRETa1",
    ] {
        let err = tolerant(502, Some("text/html"), body).unwrap_err();
        let Error::UnexpectedResponse(unexpected) = &err else {
            panic!("{err:?}")
        };
        assert!(!err.to_string().contains("SECRETa1"), "{body}: {err}");
        assert!(!format!("{err:?}").contains("SECRETa1"), "{body}: {err:?}");
        assert!(
            unexpected.excerpt().unwrap().contains("[redacted]"),
            "{body}"
        );
    }
}

#[test]
fn oauth_description_and_uri_redact_secret_looking_values() {
    let body = r#"{"error":"invalid_client","error_description":"got client_secret=SECRETa1 from you","error_uri":"https://e/x?access_token=SECRETa1"}"#;
    let err = tolerant(401, JSON, body).unwrap_err();
    let oauth = err.oauth().unwrap();
    assert_eq!(
        oauth.description(),
        Some("got client_secret=[redacted] from you")
    );
    assert_eq!(oauth.uri(), Some("https://e/x?access_token=[redacted]"));
    assert!(!err.to_string().contains("SECRETa1"));
}

#[test]
fn oauth_error_debug_names_extra_members_without_values() {
    let body = r#"{"error":"invalid_scope","id_token":"SECRETa1","trace_id":"t"}"#;
    let err = tolerant(400, JSON, body).unwrap_err();
    let debug = format!("{err:?}");
    assert!(!debug.contains("SECRETa1"), "{debug}");
    assert!(debug.contains("id_token"), "{debug}");
    assert!(debug.contains("trace_id"), "{debug}");
}

#[test]
fn empty_error_tolerance() {
    for error in [r#""""#, "null"] {
        let body = format!(r#"{{"access_token":"a","token_type":"Bearer","error":{error}}}"#);
        let token = tolerant(200, JSON, &body).unwrap();
        assert_eq!(token.access_token().secret(), "a");
    }
    let body = r#"{"access_token":"a","token_type":"Bearer","error":""}"#;
    assert!(matches!(
        problem(parse(ResponseRules::strict(), 200, JSON, body)),
        ResponseProblem::InvalidMember { name: "error", .. }
    ));
    assert!(
        parse(
            ResponseRules::strict(),
            200,
            JSON,
            r#"{"access_token":"a","token_type":"Bearer","error":null}"#
        )
        .is_ok(),
        "null counts as absent under any rules"
    );
    // An empty `error` is no OAuth error, so a non-2xx with one is an unexpected response.
    let err = tolerant(400, JSON, r#"{"error":""}"#).unwrap_err();
    assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");
}

#[test]
fn form_body_labelled_text_plain_tolerance() {
    let body = "access_token=EAAB123&expires=5183999";
    for ct in ["text/plain", "text/plain; charset=UTF-8"] {
        let token = tolerant(200, Some(ct), body).unwrap();
        assert_eq!(token.access_token().secret(), "EAAB123");
        assert_eq!(token.extra("expires"), Some(&Value::from("5183999")));
    }
    let err = tolerant(200, Some("text/plain"), "error=bad_verification_code").unwrap_err();
    assert_eq!(
        err.oauth().unwrap().code().as_str(),
        "bad_verification_code"
    );
    let no_form = ResponseRules::tolerant().allow_form_body(false);
    assert!(matches!(
        problem(parse(no_form, 200, Some("text/plain"), body)),
        ResponseProblem::NotJson { .. }
    ));
    // Judged by the body: plain text that is not a form stays not-a-token.
    assert!(matches!(
        problem(tolerant(
            200,
            Some("text/plain"),
            "service unavailable, try later"
        )),
        ResponseProblem::NotJson { .. }
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    /// `is_plain` is `is_clean` with none of the bytes `redact` looks after.
    #[test]
    fn plain_text_is_clean_text_with_nothing_to_redact(
        text in "[ a=:%&<~!\t\u{e9}]{0,40}",
    ) {
        let expected = is_clean(&text) && !text.bytes().any(sanitize::may_lead_to_value);
        proptest::prop_assert_eq!(is_plain(&text), expected, "{:?}", text);
    }
}

#[test]
fn value_leads_are_the_bytes_redact_looks_after() {
    for byte in 0..=u8::MAX {
        assert_eq!(
            sanitize::VALUE_LEADS.contains(&byte),
            sanitize::may_lead_to_value(byte),
            "{byte:#x}"
        );
    }
}

#[test]
fn plain_text_keeps_its_length_limit_and_spacing() {
    assert!(is_plain("client authentication failed"));
    assert!(is_plain(&"x".repeat(MAX_SERVER_TEXT_LEN)));
    assert!(!is_plain(&"x".repeat(MAX_SERVER_TEXT_LEN + 1)));
    for dirty in [
        " a",
        "a ",
        "a  b",
        "abcdefg  hijk",
        "abcdefgh ijklmnop  q",
        "a=b",
        "a\tb",
    ] {
        assert!(!is_plain(dirty), "{dirty:?}");
    }
}

#[test]
fn an_oauth_error_among_many_headers_keeps_challenge_nonce_and_retry_after() {
    let mut builder = http::Response::builder().status(401);
    for i in 0..Headers::MAX_SCANNED {
        builder = builder.header(format!("x-filler-{i}"), "1");
    }
    let response = builder
        .header(CONTENT_TYPE, "application/json")
        .header("www-authenticate", r#"Basic realm="idp""#)
        .header("dpop-nonce", "n0nce")
        .header("retry-after", "30")
        .body(br#"{"error":"use_dpop_nonce"}"#.to_vec())
        .unwrap();
    let err = ResponseRules::default()
        .parse(&response, sent_at())
        .unwrap_err();
    let oauth = err.oauth().unwrap();
    assert_eq!(oauth.challenges()[0].realm(), Some("idp"));
    assert_eq!(oauth.dpop_nonce(), Some("n0nce"));
    assert_eq!(
        oauth.retry_after(),
        Some(RetryAfter::Delay(Duration::from_secs(30)))
    );
}

#[test]
fn echoed_request_credentials_never_reach_the_error_text() {
    // A gateway's error page that echoes the request's headers, bare.
    let basic = "ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="; // demo-client:demo-secret
    let proof = "eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJqdGkiOiIxIn0.c2ln";
    let page = format!(
        "<html><body><h1>502</h1><pre>Authorization: Basic {basic}\nDPoP: {proof}\n</pre></body></html>"
    );
    for (status, content_type, body) in [
        (502, Some("text/html"), page.clone()),
        (401, Some("text/plain"), page.replace('<', " ")),
        (
            400,
            Some("application/json"),
            format!(
                r#"{{"error":"invalid_request","error_description":"got Authorization: Basic {basic}"}}"#
            ),
        ),
    ] {
        let error = tolerant(status, content_type, &body).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(basic), "{text}");
        assert!(!text.contains("eyJqdGki"), "{text}");
    }
}

/// A UTF-8 body is read as text, checked once; any other is read as bytes, so that invalid
/// UTF-8 is the same typed error, at the same place, as serde_json gives for bytes.
#[test]
fn a_body_that_is_not_utf8_is_refused_where_the_bad_byte_is() {
    let mut body = br#"{"access_token":"a"#.to_vec();
    body.push(0xFF);
    body.extend_from_slice(br#"","token_type":"Bearer"}"#);
    let response = http::Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let expected = serde_json::from_slice::<serde_json::Value>(response.body()).unwrap_err();
    match ResponseRules::tolerant().parse(&response, sent_at()) {
        Err(Error::InvalidResponse {
            problem: ResponseProblem::InvalidJson { line, column, .. },
            ..
        }) => assert_eq!((line, column), (expected.line(), expected.column())),
        other => panic!("expected invalid json, got {other:?}"),
    }
    // And the same body with the byte fixed is a token, read as text.
    let fixed = String::from_utf8_lossy(response.body()).replace('\u{FFFD}', "b");
    let token = tolerant(200, JSON, &fixed).unwrap();
    assert_eq!(token.access_token().secret(), "ab");
}
