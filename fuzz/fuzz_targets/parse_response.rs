//! Fuzzes the response parser with any status, headers and body.
//!
//! The invariant is h11's: any input gives a token or the crate's typed error, never a panic.
//! Beyond that, the strict rules accept nothing the tolerant ones refuse, and neither the
//! token's `Debug` nor any error's `Debug` or `Display` holds the access token of a 2xx body.
//!
//! The input is the text framing of `framing.rs`. A line `x-fuzz-limit: <n>` also parses with
//! a body limit of `n` bytes.
#![no_main]

mod framing;

use std::time::{Duration, SystemTime};

use client_credentials::http;
use client_credentials::{ClientCredentials, ClientSecret, Error, Token, TokenUrl};
use client_credentials::fetch::ResponseRules;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `response` parsed by `rules` the one public way: as the answer to a request, asking for no
/// scope, of a client with those rules.
fn parse(
    rules: ResponseRules,
    response: &http::Response<impl AsRef<[u8]>>,
    sent_at: SystemTime,
) -> Result<Token, Error> {
    ClientCredentials::new(
        TokenUrl::new("https://idp.example.com/oauth2/token").expect("a valid url"),
        "client",
        ClientSecret::new("secret"),
    )
    .with_response_rules(rules)
    .token_request()
    .build()
    .expect("a request without parameters")
    .parse_response(response, sent_at)
}

fuzz_target!(|data: &[u8]| {
    let (response, settings) = framing::frame(data);
    let limit = settings
        .iter()
        .rev()
        .find(|s| s.name == "limit")
        .map(framing::Setting::number)
        .unwrap_or_default();
    let sent_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 2);

    let tolerant = parse(ResponseRules::tolerant(), &response, sent_at);
    let strict = parse(ResponseRules::strict(), &response, sent_at);
    check(&response, &tolerant, now);
    check(&response, &strict, now);
    if let Some(limit) = limit {
        let rules = ResponseRules::tolerant().with_max_body_len(limit);
        let limited = parse(rules, &response, sent_at);
        if response.body().len() > limit {
            assert!(
                matches!(limited, Err(Error::BodyTooLarge { .. }))
                    || response.status().is_redirection()
            );
        }
        check(&response, &limited, now);
    }

    // Whatever the strict rules accept, the tolerant ones accept alike.
    if let Ok(strict_token) = &strict {
        let token = tolerant
            .as_ref()
            .expect("the strict rules accepted a response the tolerant ones refused");
        assert_eq!(
            token.access_token().secret(),
            strict_token.access_token().secret()
        );
        assert_eq!(token.token_type(), strict_token.token_type());
        assert_eq!(token.expires_in(), strict_token.expires_in());
        assert_eq!(token.scope(), strict_token.scope());
        assert_eq!(token.extras(), strict_token.extras());
    }
    // The default rules are the tolerant ones.
    assert_eq!(
        parse(ResponseRules::default(), &response, sent_at).is_ok(),
        tolerant.is_ok()
    );

    if response.status().is_success()
        && let Some(token) = access_token_of(&response)
    {
        for result in [&tolerant, &strict] {
            let outputs = match result {
                Ok(parsed) => vec![format!("{parsed:?}")],
                Err(err) => vec![format!("{err:?}"), err.to_string()],
            };
            for output in outputs {
                assert!(
                    !output.contains(&token),
                    "the access token leaked: {output}"
                );
            }
        }
    }
});

/// Everything that must hold of one parse result.
fn check(response: &http::Response<&[u8]>, result: &Result<Token, Error>, now: SystemTime) {
    let status = response.status();
    match result {
        Ok(token) => {
            assert!(status.is_success(), "a token from http {status}");
            assert!(!token.access_token().secret().is_empty());
            assert!(token.expires_in().is_none_or(|e| e <= Token::MAX_EXPIRES_IN));
            let _ = (
                token.expires_at(),
                token.is_expired(now),
                token.scopes().count(),
            );
            let _ = token.expires_within(now, Duration::MAX);
            let _ = format!("{token:?} {}", token.token_type());
        }
        Err(err) => {
            let text = err.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.contains(|c: char| c.is_control()), "{text:?}");
            let _ = (format!("{err:?}"), err.is_retryable(), err.retry_after());
            match err {
                Error::BodyTooLarge { .. } => {}
                Error::Redirect { status: got, .. } => {
                    assert!(got.is_redirection() && *got == status);
                }
                Error::InvalidResponse { status: got, .. } => {
                    assert!(got.is_success() && *got == status);
                }
                Error::OAuth(oauth) => assert_eq!(oauth.status(), status),
                Error::UnexpectedResponse(unexpected) => {
                    assert_eq!(unexpected.status(), status);
                    assert!(!status.is_success() && !status.is_redirection());
                }
                other => panic!("parsing gave a non-response error: {other:?}"),
            }
        }
    }
}

/// The access token of a 2xx body, when it is distinctive enough that finding it in an output
/// can only mean a leak: 20 or more ASCII letters and digits, with a digit and a letter that
/// is not `e` (so it is neither a word of a message nor a number), found once in the body and
/// in no other text of the response (other members, after dropping control characters as the
/// sanitizer does, and header values).
///
/// The body is read as the parser reads it: a form if the content type says so, else JSON.
fn access_token_of(response: &http::Response<&[u8]>) -> Option<String> {
    let raw = *response.body();
    let body = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let is_form = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|ct| ct.as_bytes().split(|&b| b == b';').next())
        .is_some_and(|essence| {
            essence
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        });
    let mut others = Vec::new();
    let token = if is_form {
        // The first `access_token` counts; every other name and value is other text.
        let mut token = None;
        for (name, value) in form_urlencoded::parse(body) {
            if name == "access_token" && token.is_none() {
                token = Some(value.into_owned());
            } else {
                others.push(name.into_owned());
                others.push(value.into_owned());
            }
        }
        token?
    } else {
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let Some(Value::String(token)) = object.remove("access_token") else {
            return None;
        };
        strings(&Value::Object(object), &mut others);
        token
    };
    let distinctive = token.len() >= 20
        && token.bytes().all(|b| b.is_ascii_alphanumeric())
        && token.bytes().any(|b| b.is_ascii_digit())
        && token
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && !b.eq_ignore_ascii_case(&b'e'));
    if !distinctive {
        return None;
    }
    let once = raw
        .windows(token.len())
        .filter(|w| *w == token.as_bytes())
        .count()
        == 1;
    others.extend(
        response
            .headers()
            .iter()
            .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned()),
    );
    let elsewhere = others.iter().any(|text| {
        let kept: String = text
            .chars()
            .filter(|c| !c.is_control() && !is_format(*c))
            .collect();
        kept.contains(&token)
    });
    (once && !elsewhere).then_some(token)
}

/// Characters the sanitizer may drop besides control characters (bidi controls), taken broadly.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Every key and string in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(object) => {
            for (key, item) in object {
                out.push(key.clone());
                strings(item, out);
            }
        }
        _ => {}
    }
}
