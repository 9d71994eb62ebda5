//! The faults a test server can be told to answer with, and their responses.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use super::body::{ResponseBody, TRICKLED_TOKEN, html, plain, response};

/// A way for the server to misbehave, as real servers and gateways do.
///
/// A fault applies to whatever request gets it, before the request is read: on any path but
/// the protected resource's for [`TestServer::push_fault`](crate::TestServer::push_fault) and [`set_fault`](crate::TestServer::set_fault),
/// under `/api/` for [`push_resource_fault`](crate::TestServer::push_resource_fault).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer with this status and a small HTML page (or no body, for statuses that have none),
    /// as a gateway does.
    Status(StatusCode),
    /// Answer 429 with `Retry-After` in whole seconds (rounded up) and a plain text body.
    TooManyRequests {
        /// The delay sent in `Retry-After`.
        retry_after: Duration,
    },
    /// Answer 503 with `Retry-After` in whole seconds (rounded up) and a plain text body.
    ServiceUnavailable {
        /// The delay sent in `Retry-After`.
        retry_after: Duration,
    },
    /// Answer 401 with this `WWW-Authenticate` challenge (left out if it is not a valid header
    /// value) and a plain text body, as a resource server that refuses the token does:
    /// `Bearer error="invalid_token"`, say, whatever the token.
    Unauthorized {
        /// The challenge sent in `WWW-Authenticate`.
        challenge: String,
    },
    /// Answer 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and this `DPoP-Nonce`
    /// (left out if it is not a valid header value), whatever the request, as a resource server
    /// (or a gateway before it) demanding its nonce does (RFC 9449 §9).
    UseDpopNonce {
        /// The nonce sent in `DPoP-Nonce`.
        nonce: String,
    },
    /// Answer 302 with this `Location` (left out if it is not a valid header value).
    Redirect {
        /// Where the redirect points.
        location: String,
    },
    /// Answer 307 with this `Location` (left out if it is not a valid header value): a client
    /// that follows it sends the same request, body and credentials included, to the location.
    TemporaryRedirect {
        /// Where the redirect points.
        location: String,
    },
    /// Answer 200 `application/json` with a body of exactly `len` bytes, streamed: a token
    /// response with a huge access token when `len` allows, filler otherwise.
    OversizedBody {
        /// The body's length in bytes.
        len: usize,
    },
    /// Answer 200 with an HTML sign-in page, as a misconfigured URL or a captive portal does.
    HtmlBody,
    /// Answer 200 `application/json` with a `Content-Length` larger than what is sent, then
    /// close the connection.
    CloseMidBody,
    /// Hold the connection open without answering, until the server is dropped.
    NeverAnswer,
    /// Answer 200 `application/json` with a token response (its `Content-Length` exact), but
    /// send its body one byte per `interval`, as a stalled link or a slow-loris server does:
    /// every read gets a byte before a per-read timeout longer than `interval` expires, so only
    /// a deadline on the whole exchange ends it early.
    TrickleBody {
        /// The wait before each byte of the body.
        interval: Duration,
    },
}

pub(super) fn fault_response(fault: Fault) -> Response<ResponseBody> {
    match fault {
        Fault::Status(status) => {
            let bodiless = status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            if bodiless {
                response(status, None, ResponseBody::empty())
            } else {
                html(
                    status,
                    &format!(
                        "<!DOCTYPE html>\n<html><head><title>{status}</title></head>\
                     <body><h1>{status}</h1><p>test-server fault</p></body></html>\n"
                    ),
                )
            }
        }
        Fault::TooManyRequests { retry_after } => retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            "too many requests",
        ),
        Fault::ServiceUnavailable { retry_after } => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            "service unavailable",
        ),
        Fault::Unauthorized { challenge } => {
            let mut refused = plain(StatusCode::UNAUTHORIZED, "unauthorized: test-server fault");
            if let Ok(value) = HeaderValue::try_from(challenge) {
                refused.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            refused
        }
        Fault::UseDpopNonce { nonce } => {
            let mut refused = plain(StatusCode::UNAUTHORIZED, "unauthorized: test-server fault");
            refused.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
            );
            if let Ok(value) = HeaderValue::try_from(nonce) {
                refused.headers_mut().insert("dpop-nonce", value);
            }
            refused
        }
        Fault::Redirect { location } => redirect(StatusCode::FOUND, location),
        Fault::TemporaryRedirect { location } => redirect(StatusCode::TEMPORARY_REDIRECT, location),
        Fault::TrickleBody { interval } => response(
            StatusCode::OK,
            Some("application/json"),
            ResponseBody::trickle(Bytes::from_static(TRICKLED_TOKEN), interval),
        ),
        Fault::OversizedBody { len } => response(
            StatusCode::OK,
            Some("application/json"),
            ResponseBody::oversized(len),
        ),
        Fault::HtmlBody => html(
            StatusCode::OK,
            "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
             <body><form method=\"post\"><input name=\"username\"><input name=\"password\" \
             type=\"password\"><button>Sign in</button></form></body></html>\n",
        ),
        Fault::CloseMidBody => {
            let start = Bytes::from_static(br#"{"access_token":"eyJhbGciOiJub25lIn0"#);
            let declared = start.len() + 1024;
            let mut response = response(
                StatusCode::OK,
                Some("application/json"),
                ResponseBody::Truncated {
                    data: Some(start),
                    flushed: false,
                },
            );
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(declared));
            response
        }
        // Handled before a response is built; answered normally if they ever get here.
        Fault::Delay(_) | Fault::NeverAnswer => plain(StatusCode::INTERNAL_SERVER_ERROR, "fault"),
    }
}

pub(super) fn redirect(status: StatusCode, location: String) -> Response<ResponseBody> {
    let mut response = response(status, None, ResponseBody::empty());
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

pub(super) fn retry_later(
    status: StatusCode,
    retry_after: Duration,
    text: &str,
) -> Response<ResponseBody> {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut response = plain(status, text);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}
