//! Canned token endpoint responses, and parsing them the one public way.

// Each binary uses the part it needs.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use client_credentials::fetch::ResponseRules;
use client_credentials::{ClientCredentials, ClientSecret, Error, Token, TokenUrl};

/// When the canned requests were sent: a fixed instant, so that expiries are exact.
pub fn sent_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A response with this status, these headers and this body.
pub fn response(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> http::Response<Vec<u8>> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).expect("a canned response")
}

/// A response with this status and content type, and this body.
pub fn with_content_type(
    status: u16,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> http::Response<Vec<u8>> {
    response(status, &[("content-type", content_type)], body)
}

/// A JSON response with this status.
pub fn json(status: u16, body: impl Into<Vec<u8>>) -> http::Response<Vec<u8>> {
    with_content_type(status, "application/json", body)
}

/// `response` parsed by `rules` as the answer to a request that asked for no scope:
/// [`client_credentials::TokenRequest::parse_response`] of a client with those rules.
pub fn parse(
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

/// An attempt at [`sent_at`] with fixed entropy: enough for a client that signs nothing, and a
/// stable one for a client that does.
pub fn attempt() -> client_credentials::Attempt {
    client_credentials::Attempt::new(sent_at(), [7; 32])
}
