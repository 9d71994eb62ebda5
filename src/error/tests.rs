use std::time::SystemTime;

use super::*;
use crate::error::oauth::*;
use crate::test_support::{TOKEN_URL, at, request_at};

#[test]
fn error_codes_round_trip() {
    for code in [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "use_dpop_nonce",
        "invalid_dpop_proof",
        "slow_down",
    ] {
        assert_eq!(ErrorCode::parse(code).as_str(), code);
    }
    assert_eq!(
        ErrorCode::parse("slow_down"),
        ErrorCode::Other("slow_down".into())
    );
}

#[test]
fn retry_after_delay_from_now() {
    let now = at(1000);
    assert_eq!(
        RetryAfter::Delay(Duration::from_secs(5)).delay_from(now),
        Duration::from_secs(5)
    );
    let at = RetryAfter::At(now + Duration::from_secs(7));
    assert_eq!(at.delay_from(now), Duration::from_secs(7));
    assert_eq!(at.delay_from(now + Duration::from_secs(60)), Duration::ZERO);
}

#[test]
fn display_is_lower_case_without_trailing_period() {
    let errors = [
        Error::InvalidTokenUrl { reason: "x" },
        Error::BodyTooLarge { limit: 5 },
        Error::Redirect {
            status: StatusCode::FOUND,
            location: None,
            followed: false,
        },
        Error::Redirect {
            status: StatusCode::OK,
            location: Some("https://elsewhere.example/token?…".into()),
            followed: true,
        },
        Error::Transport {
            kind: TransportKind::Timeout,
            source: "boom".into(),
        },
    ];
    for error in errors {
        let text = error.to_string();
        assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    }
}

#[test]
fn retryable_transport_failures() {
    let transport = |kind| Error::Transport {
        kind,
        source: "x".into(),
    };
    assert!(transport(TransportKind::Connect).is_retryable());
    assert!(transport(TransportKind::Timeout).is_retryable());
    assert!(transport(TransportKind::Io).is_retryable());
    assert!(!transport(TransportKind::Tls).is_retryable());
    let timed_out = Error::FetchTimedOut {
        timeout: std::time::Duration::from_millis(1500),
    };
    assert!(timed_out.is_retryable() && timed_out.is_timeout());
    assert!(transport(TransportKind::Timeout).is_timeout());
    assert!(!transport(TransportKind::Connect).is_timeout());
    assert!(
        timed_out
            .to_string()
            .contains("within the fetch timeout of 1.5s")
    );
    assert!(!Error::BodyTooLarge { limit: 1 }.is_retryable());
}

#[test]
fn misuse_errors_say_what_happened_and_are_not_retryable() {
    for (error, says) in [
        (Error::ClockBeforeUnixEpoch, "before the unix epoch"),
        (Error::NoAttemptAwaitingResponse, "no attempt awaits"),
        (Error::UriNotAbsolute, "absolute uri"),
        (Error::TokenNotHeaderSafe, "http header cannot carry"),
    ] {
        let text = error.to_string();
        assert!(text.contains(says), "{text}");
        assert!(text.starts_with(char::is_lowercase), "{text}");
        assert!(!text.ends_with('.'), "{text}");
        assert!(!error.is_retryable(), "{text}");
        assert!(error.status().is_none(), "{text}");
    }
}

#[test]
fn is_retryable_does_what_its_docs_say() {
    let oauth = |status: u16, code: &str| {
        let response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(format!(r#"{{"error":"{code}"}}"#))
            .unwrap();
        let request = request_at(TOKEN_URL, "c", "s");
        request
            .parse_response(&response, SystemTime::UNIX_EPOCH)
            .unwrap_err()
    };
    // Retryable whatever the code under 408, 429 and 5xx.
    for status in [408, 429, 500, 503] {
        assert!(oauth(status, "invalid_client").is_retryable(), "{status}");
    }
    // Retryable by code under any status.
    for code in ["temporarily_unavailable", "server_error", "use_dpop_nonce"] {
        assert!(oauth(400, code).is_retryable(), "{code}");
    }
    // Every other OAuth error is the server's decision.
    for code in [
        "invalid_client",
        "invalid_scope",
        "invalid_grant",
        "unauthorized_client",
    ] {
        assert!(!oauth(400, code).is_retryable(), "{code}");
    }
    assert!(
        Error::TokenDueOnArrival {
            lifetime: std::time::Duration::ZERO
        }
        .is_retryable()
    );
    assert!(!Error::BodyTooLarge { limit: 1 }.is_retryable());
    let transport = |kind| Error::Transport {
        kind,
        source: "x".into(),
    };
    assert!(transport(TransportKind::Connect).is_retryable());
    assert!(transport(TransportKind::Timeout).is_retryable());
    assert!(!transport(TransportKind::Tls).is_retryable());
}

#[test]
fn a_credential_refusal_is_invalid_client_or_any_401_or_403() {
    let response = |status: u16, content_type: &str, body: &str| {
        let response = http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(body.to_owned())
            .unwrap();
        request_at(TOKEN_URL, "c", "s")
            .parse_response(&response, SystemTime::UNIX_EPOCH)
            .unwrap_err()
    };
    let oauth = |status, code: &str| {
        response(
            status,
            "application/json",
            &format!(r#"{{"error":"{code}"}}"#),
        )
    };
    for refusal in [
        oauth(400, "invalid_client"),
        oauth(401, "invalid_client"),
        oauth(401, "unauthorized"),
        oauth(403, "access_denied"),
        response(403, "text/plain", ""),
        response(401, "text/html", "<h1>Unauthorized</h1>"),
    ] {
        assert!(refusal.is_credential_refusal(), "{refusal}");
        assert!(!refusal.is_retryable(), "{refusal}");
    }
    for other in [
        oauth(400, "invalid_scope"),
        oauth(400, "unauthorized_client"),
        oauth(503, "temporarily_unavailable"),
        response(500, "text/plain", ""),
        response(404, "text/plain", ""),
        Error::BodyTooLarge { limit: 1 },
    ] {
        assert!(!other.is_credential_refusal(), "{other}");
    }
}

/// The OAuth error is held without a box (one allocation fewer per parsed error), and that
/// costs nothing: `Error` is no larger than its other variants already made it.
#[cfg(target_pointer_width = "64")]
#[test]
fn an_unboxed_oauth_error_does_not_grow_the_error() {
    assert!(
        std::mem::size_of::<Error>() <= 56,
        "{}",
        std::mem::size_of::<Error>()
    );
}
