//! The OAuth error responses (RFC 6749 §5.2) the endpoint refuses a request with.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use super::body::{ResponseBody, json_response, plain};

/// The realm of the `WWW-Authenticate` challenge sent with `invalid_client`.
pub const REALM: &str = "test-server";

/// The largest request body the server reads; a larger one gets 413.
pub const MAX_REQUEST_BODY_LEN: usize = 64 * 1024;

/// A refused token request: an OAuth error (RFC 6749 §5.2), a DPoP nonce to retry with, or a
/// body over the limit.
pub(super) enum Refusal {
    OAuth {
        code: &'static str,
        description: String,
    },
    TooLarge,
    /// `use_dpop_nonce` (RFC 9449 §8): a 400 with the nonce to retry with in `DPoP-Nonce`.
    UseDpopNonce(String),
}

impl Refusal {
    /// `invalid_client` gets 401 and a `Basic` challenge (RFC 6749 §5.2, RFC 9110 §15.5.2);
    /// every other OAuth error 400.
    pub(super) fn into_response(self) -> Response<ResponseBody> {
        let (code, description) = match self {
            Self::TooLarge => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is over the {MAX_REQUEST_BODY_LEN}-byte limit"),
                );
            }
            Self::UseDpopNonce(nonce) => {
                let body = json!({
                    "error": "use_dpop_nonce",
                    "error_description": "the server requires a nonce in the DPoP proof: retry with the DPoP-Nonce header's",
                });
                let mut response = json_response(StatusCode::BAD_REQUEST, &body);
                if let Ok(nonce) = HeaderValue::try_from(nonce) {
                    response.headers_mut().insert("dpop-nonce", nonce);
                }
                return response;
            }
            Self::OAuth { code, description } => (code, description),
        };
        let body = json!({ "error": code, "error_description": description });
        if code != "invalid_client" {
            return json_response(StatusCode::BAD_REQUEST, &body);
        }
        let mut response = json_response(StatusCode::UNAUTHORIZED, &body);
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="test-server""#),
        );
        response
    }
}

pub(super) fn refuse(code: &'static str, description: impl Into<String>) -> Refusal {
    Refusal::OAuth {
        code,
        description: description.into(),
    }
}

pub(super) fn invalid_request(description: impl Into<String>) -> Refusal {
    refuse("invalid_request", description)
}

pub(super) fn invalid_client(description: impl Into<String>) -> Refusal {
    refuse("invalid_client", description)
}
