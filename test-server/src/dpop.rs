//! Checking DPoP proofs (RFC 9449 §4.3) at the token endpoint and the resource: the proof's
//! form and signature, its claims against the request, its freshness and its `jti` once only;
//! and the server's nonces (§8, §9).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use http::{HeaderMap, Method, Uri};

use super::jws::{ALGORITHMS, JwsError, PublicKey, decode, shown};

/// How far a proof's `iat` may be from the server's clock, either way, in seconds (RFC 9449
/// §11.1: "a relatively brief period").
pub const DPOP_PROOF_WINDOW: u64 = 60;

/// How many proof `jti`s the server remembers to refuse a replay (RFC 9449 §11.1); past it,
/// the oldest is forgotten. A proof older than [`DPOP_PROOF_WINDOW`] is refused anyway.
pub const MAX_DPOP_JTIS: usize = 8192;

/// The longest `jti` or `nonce` a proof may carry.
const MAX_CLAIM_LEN: usize = 256;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ProofError {
    /// `invalid_dpop_proof`, with what is wrong.
    Invalid(String),
    /// `use_dpop_nonce`: the proof lacks the server's current nonce.
    NeedsNonce,
}

impl From<JwsError> for ProofError {
    fn from(error: JwsError) -> Self {
        Self::Invalid(format!("the DPoP proof: {error}"))
    }
}

fn invalid(text: impl Into<String>) -> ProofError {
    ProofError::Invalid(text.into())
}

/// What a proof must match: the request, the token it accompanies, the nonce it needs.
pub(super) struct Expected<'a> {
    pub(super) method: &'a Method,
    /// `scheme://authority/path`, without query or fragment.
    pub(super) htu: &'a str,
    pub(super) access_token: Option<&'a str>,
    pub(super) nonce: Option<&'a str>,
    pub(super) now: u64,
}

/// The `DPoP` header's one value, `None` without one, an error for several (§4.3, item 1).
pub(super) fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, ProofError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("the request has more than one DPoP header"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| invalid("the DPoP header is not visible ASCII"))
}

/// Verifies a proof against `expected`, returning the thumbprint of its key, and remembers its
/// `jti` in `seen` (only once every other check has passed).
pub(super) fn verify(
    proof: &str,
    expected: &Expected<'_>,
    seen: &SeenJtis,
) -> Result<String, ProofError> {
    let decoded = decode(proof)?;
    if decoded.header_str("typ") != Some("dpop+jwt") {
        return Err(invalid("the DPoP proof's typ is not dpop+jwt"));
    }
    let alg = decoded.alg().unwrap_or_default();
    if !ALGORITHMS.contains(&alg) {
        return Err(invalid(format!(
            "the DPoP proof's alg `{}` is not supported (supported: {})",
            shown(alg),
            ALGORITHMS.join(", ")
        )));
    }
    let jwk = decoded
        .header
        .get("jwk")
        .ok_or_else(|| invalid("the DPoP proof's header has no jwk"))?;
    let key = PublicKey::from_jwk(jwk)?;
    decoded.verify(&key)?;

    let jti = decoded
        .claim_str("jti")
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_CLAIM_LEN)
        .ok_or_else(|| invalid("the DPoP proof has no jti, or one over 256 bytes"))?;
    if decoded.claim_str("htm") != Some(expected.method.as_str()) {
        return Err(invalid(format!(
            "the DPoP proof's htm is not this request's method, {}",
            expected.method
        )));
    }
    if decoded.claim_str("htu").and_then(normalized_htu).as_deref() != Some(expected.htu) {
        return Err(invalid(format!(
            "the DPoP proof's htu is not this request's URI, {}",
            expected.htu
        )));
    }
    let iat = decoded
        .claims
        .get("iat")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| invalid("the DPoP proof has no iat"))?;
    if iat.abs_diff(expected.now) > DPOP_PROOF_WINDOW {
        return Err(invalid(format!(
            "the DPoP proof's iat is more than {DPOP_PROOF_WINDOW} s from the server's clock"
        )));
    }
    match (expected.access_token, decoded.claim_str("ath")) {
        (Some(token), Some(ath)) if ath == access_token_hash(token) => {}
        (Some(_), Some(_)) => return Err(invalid("the DPoP proof's ath is not the token's hash")),
        (Some(_), None) => return Err(invalid("the DPoP proof has no ath")),
        (None, _) => {}
    }
    if let Some(nonce) = expected.nonce
        && decoded.claim_str("nonce") != Some(nonce)
    {
        return Err(ProofError::NeedsNonce);
    }
    if !seen.first_use(jti) {
        return Err(invalid(
            "the DPoP proof's jti was used before: send a fresh proof",
        ));
    }
    Ok(key.thumbprint())
}

/// base64url(SHA-256(token)): a proof's `ath` (RFC 9449 §4.2).
pub(super) fn access_token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    BASE64URL.encode(digest.as_ref())
}

/// `scheme://authority/path` of an absolute URI, scheme and host lower-cased (RFC 9449 §4.3,
/// item 9, with RFC 3986 §6.2.2.1's normalisation), or `None` for another string.
pub(super) fn normalized_htu(htu: &str) -> Option<String> {
    let uri: Uri = htu.parse().ok()?;
    htu_of(&uri)
}

/// As [`normalized_htu`], for a parsed URI.
pub(super) fn htu_of(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?.as_str().to_ascii_lowercase();
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    Some(format!("{scheme}://{authority}{path}"))
}

/// The `jti`s of the proofs accepted so far, bounded by [`MAX_DPOP_JTIS`].
#[derive(Default)]
pub(super) struct SeenJtis {
    inner: Mutex<Seen>,
}

/// The `jti`s, for lookup, and in arrival order, to forget the oldest.
#[derive(Default)]
struct Seen {
    set: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
}

impl SeenJtis {
    /// Records `jti`; `false` if it was already there.
    pub(super) fn first_use(&self, jti: &str) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Seen { set, order } = &mut *guard;
        if set.contains(jti) {
            return false;
        }
        if order.len() >= MAX_DPOP_JTIS
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        set.insert(jti.into());
        order.push_back(jti.into());
        true
    }
}

/// One DPoP nonce of the server (RFC 9449 §8 or §9): its current value, and whether proofs
/// must carry it.
pub(super) struct Nonce {
    required: AtomicBool,
    value: Mutex<String>,
}

impl Nonce {
    pub(super) fn new() -> Self {
        Self {
            required: AtomicBool::new(false),
            value: Mutex::new(fresh_nonce()),
        }
    }

    pub(super) fn require(&self, required: bool) {
        self.required.store(required, Ordering::SeqCst);
    }

    /// The nonce a proof must carry, `None` while none is required.
    pub(super) fn required(&self) -> Option<String> {
        self.required.load(Ordering::SeqCst).then(|| self.current())
    }

    pub(super) fn current(&self) -> String {
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn rotate(&self) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = fresh_nonce();
    }
}

/// 16 random bytes, base64url: a nonce no client can guess. The test server draws them from
/// aws-lc's random source, as a real server would; the core never does.
fn fresh_nonce() -> String {
    let mut bytes = [0u8; 16];
    // aws-lc's generator does not fail once initialised; a zero nonce would still be a nonce.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    BASE64URL.encode(bytes)
}
