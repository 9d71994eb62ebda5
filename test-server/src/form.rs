//! Decoding the token request: the form body and the `Authorization: Basic` credentials.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use super::refusal::{Refusal, invalid_request};

/// Decodes `Basic base64(form-encode(id) ":" form-encode(secret))` (RFC 6749 §2.3.1).
pub(super) fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space.
pub(super) fn form_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A request's form parameters, with empty ones dropped (RFC 6749 §3.1).
pub(super) struct Form(pub(super) Vec<(String, String)>);

impl Form {
    pub(super) fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if name != "resource" && pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(invalid_request(format!(
                    "the parameter `{name}` is repeated (RFC 6749 §3.2)"
                )));
            }
        }
        Ok(Self(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
