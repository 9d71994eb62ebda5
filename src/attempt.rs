//! What changes from one attempt at a request to the next, passed in by the caller: the time,
//! fresh randomness and the server's latest DPoP nonce.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use http::{HeaderMap, StatusCode, Uri};

use crate::challenge::Challenge;
use crate::error::Error;
use crate::origin::Origin;
use crate::response::dpop_nonce;

/// One attempt at sending a request: when it is made, 32 fresh random bytes, and the DPoP nonce
/// to put in its proof, if the server gave one.
///
/// The core reads no clock and no random source, so the caller (an adapter) makes an `Attempt`
/// for every attempt, retries included, and hands it to
/// [`TokenRequest::http_request`](crate::TokenRequest::http_request) or
/// `DpopKey::authorize` (feature `jwt`). The entropy gives the `jti` of each JWT
/// signed for the attempt: the first 16 bytes the client assertion's, the last 16 the DPoP
/// proof's.
#[derive(Clone)]
#[must_use]
pub struct Attempt {
    now: SystemTime,
    entropy: [u8; 32],
    dpop_nonce: Option<Box<str>>,
}

impl Attempt {
    /// An attempt made at `now`, with `entropy` for the JWTs' `jti`.
    ///
    /// # Security
    ///
    /// `entropy` must come from a cryptographically secure random source (`getrandom`, the
    /// operating system's), fresh for every attempt: servers refuse a `jti` they have seen
    /// (RFC 7523 §3, RFC 9449 §11.1), and a predictable one lets an attacker pre-empt it.
    pub fn new(now: SystemTime, entropy: [u8; 32]) -> Self {
        Self {
            now,
            entropy,
            dpop_nonce: None,
        }
    }

    /// Puts the server's DPoP nonce (RFC 9449 §8, §9) in the attempt's proof.
    pub fn with_dpop_nonce(mut self, nonce: impl Into<String>) -> Self {
        self.dpop_nonce = Some(nonce.into().into_boxed_str());
        self
    }

    /// When the attempt is made.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The DPoP nonce its proof carries, if any.
    #[must_use]
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop_nonce.as_deref()
    }

    /// Seconds since the Unix epoch, for `iat`.
    pub(crate) fn unix_time(&self) -> Result<u64, Error> {
        self.now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .map_err(|_| Error::ClockBeforeUnixEpoch)
    }

    /// The client assertion's `jti`: 128 bits, base64url.
    pub(crate) fn assertion_jti(&self) -> String {
        BASE64URL.encode(&self.entropy[..16])
    }

    /// The DPoP proof's `jti`: 128 bits, base64url, independent of the assertion's.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn proof_jti(&self) -> String {
        BASE64URL.encode(&self.entropy[16..])
    }
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("now", &self.now)
            .field("entropy", &"[redacted]")
            .field("dpop_nonce", &self.dpop_nonce)
            .finish()
    }
}

/// The latest DPoP nonce of each server (RFC 9449 §8 for authorization servers, §9 for
/// resource servers), by origin, for the next attempt's proof.
///
/// A server may send a new nonce in any response, and refuses a proof without its current one
/// with `use_dpop_nonce`. So every [`Session`](crate::fetch::Session) holds one store
/// ([`dpop_nonces`](crate::fetch::Session::dpop_nonces)), for the token endpoint:
/// [`TokenFetch`](crate::fetch::TokenFetch) calls [`observe`](Self::observe) on every
/// response and starts every attempt from [`attempt`](Self::attempt). A store of your own
/// serves resource servers (RFC 9449 §9). Holds at most [`MAX_ORIGINS`](Self::MAX_ORIGINS) servers,
/// forgetting the least recently updated. Safe to share between threads.
pub struct DpopNonces {
    nonces: Mutex<VecDeque<(Box<str>, Box<str>)>>,
}

impl DpopNonces {
    /// The most servers whose nonce is kept.
    pub const MAX_ORIGINS: usize = 64;

    /// An empty store.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            nonces: Mutex::new(VecDeque::new()),
        }
    }

    /// The nonce last seen from the server of `uri`.
    #[must_use]
    pub fn get(&self, uri: &Uri) -> Option<String> {
        let nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        if nonces.is_empty() {
            return None; // the usual case, without DPoP: no origin to build
        }
        let origin = origin(uri)?;
        nonces
            .iter()
            .find(|(known, _)| **known == *origin)
            .map(|(_, nonce)| nonce.to_string())
    }

    /// An attempt at `uri`, with the server's last nonce if there is one.
    pub fn attempt(&self, uri: &Uri, now: SystemTime, entropy: [u8; 32]) -> Attempt {
        let attempt = Attempt::new(now, entropy);
        match self.get(uri) {
            Some(nonce) => attempt.with_dpop_nonce(nonce),
            None => attempt,
        }
    }

    /// Remembers the `DPoP-Nonce` header of a response from `uri`, if it has a valid one
    /// (RFC 9449 §8.1: `1*NQCHAR`); any response may carry one, success or error.
    pub fn observe(&self, uri: &Uri, headers: &HeaderMap) {
        // The header first: most responses carry none, and the origin costs two allocations.
        let Some(nonce) = dpop_nonce(headers) else {
            return;
        };
        let Some(origin) = origin(uri) else {
            return;
        };
        let mut nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        nonces.retain(|(known, _)| **known != *origin);
        if nonces.len() >= Self::MAX_ORIGINS {
            nonces.pop_front();
        }
        nonces.push_back((origin.into(), nonce.into()));
    }
}

impl Default for DpopNonces {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("DpopNonces")
            .field(
                "origins",
                &nonces.iter().map(|(o, _)| o).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The key of `uri`'s origin (`https://host:443`, whichever way the URI spells it), or `None`
/// for a URI that is not absolute.
fn origin(uri: &Uri) -> Option<String> {
    Origin::of(uri).map(|origin| origin.to_string())
}

/// The nonce to retry a resource request with, when the resource server refused its DPoP proof
/// for want of one (RFC 9449 §9): a 401 with a `DPoP` challenge whose `error` is
/// `use_dpop_nonce`, and a `DPoP-Nonce` header.
///
/// Retry once with it, then give up; for the token endpoint, see
/// [`Error::dpop_retry_nonce`].
#[must_use]
pub fn resource_dpop_retry_nonce(status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if status != StatusCode::UNAUTHORIZED {
        return None;
    }
    let asks_for_nonce = Challenge::parse_all(headers).iter().any(|challenge| {
        challenge.scheme().eq_ignore_ascii_case("DPoP")
            && challenge.param("error") == Some("use_dpop_nonce")
    });
    if asks_for_nonce {
        dpop_nonce(headers)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn jtis_split_the_entropy() {
        let mut entropy = [0u8; 32];
        entropy[16] = 0xff;
        let attempt = Attempt::new(SystemTime::UNIX_EPOCH, entropy);
        assert_eq!(attempt.assertion_jti(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(attempt.proof_jti(), "_wAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(attempt.unix_time().unwrap(), 0);
        let text = format!("{:?}", attempt.with_dpop_nonce("n-1"));
        assert!(
            text.contains("[redacted]") && text.contains("n-1"),
            "{text}"
        );
    }

    #[test]
    fn nonces_are_kept_per_origin_rfc9449_8() {
        let nonces = DpopNonces::new();
        let token: Uri = "https://AS.example.com/token?x=1".parse().unwrap();
        let other_path: Uri = "https://as.example.com/par".parse().unwrap();
        let resource: Uri = "https://api.example.com/things".parse().unwrap();
        nonces.observe(
            &token,
            &headers(&[("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")]),
        );
        nonces.observe(&resource, &headers(&[("dpop-nonce", "bad nonce")]));
        assert_eq!(
            nonces.get(&other_path).as_deref(),
            Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
            "same origin, whatever the path"
        );
        assert_eq!(nonces.get(&resource), None, "an invalid nonce is ignored");
        nonces.observe(&token, &headers(&[("dpop-nonce", "second")]));
        let attempt = nonces.attempt(&token, SystemTime::UNIX_EPOCH, [0; 32]);
        assert_eq!(attempt.dpop_nonce(), Some("second"));
        assert_eq!(
            nonces
                .attempt(&resource, SystemTime::UNIX_EPOCH, [0; 32])
                .dpop_nonce(),
            None
        );
        let relative: Uri = "/token".parse().unwrap();
        nonces.observe(&relative, &headers(&[("dpop-nonce", "x")]));
        assert_eq!(nonces.get(&relative), None);
    }

    #[test]
    fn a_static_store_is_shared() {
        static NONCES: DpopNonces = DpopNonces::new();
        let uri: Uri = "https://as.example.com/token".parse().unwrap();
        NONCES.observe(&uri, &headers(&[("dpop-nonce", "n")]));
        assert_eq!(NONCES.get(&uri).as_deref(), Some("n"));
    }

    #[test]
    fn nonce_store_is_bounded() {
        let nonces = DpopNonces::new();
        for i in 0..DpopNonces::MAX_ORIGINS + 10 {
            let uri: Uri = format!("https://h{i}.example/").parse().unwrap();
            nonces.observe(&uri, &headers(&[("dpop-nonce", "n")]));
        }
        let first: Uri = "https://h0.example/".parse().unwrap();
        let last: Uri = format!("https://h{}.example/", DpopNonces::MAX_ORIGINS + 9)
            .parse()
            .unwrap();
        assert_eq!(nonces.get(&first), None);
        assert_eq!(nonces.get(&last).as_deref(), Some("n"));
        assert_eq!(nonces.nonces.lock().unwrap().len(), DpopNonces::MAX_ORIGINS);
    }

    #[test]
    fn resource_server_nonce_challenge_rfc9449_9() {
        let challenge = r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#;
        let asked = headers(&[("www-authenticate", challenge), ("dpop-nonce", "eyJ7S_zG")]);
        assert_eq!(
            resource_dpop_retry_nonce(StatusCode::UNAUTHORIZED, &asked).as_deref(),
            Some("eyJ7S_zG")
        );
        assert_eq!(
            resource_dpop_retry_nonce(StatusCode::BAD_REQUEST, &asked),
            None
        );
        let other = headers(&[
            ("www-authenticate", r#"DPoP error="invalid_token""#),
            ("dpop-nonce", "eyJ7S_zG"),
        ]);
        assert_eq!(
            resource_dpop_retry_nonce(StatusCode::UNAUTHORIZED, &other),
            None
        );
        let no_nonce = headers(&[("www-authenticate", challenge)]);
        assert_eq!(
            resource_dpop_retry_nonce(StatusCode::UNAUTHORIZED, &no_nonce),
            None
        );
    }
}
