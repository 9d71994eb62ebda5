//! What a store entry holds, and how it is sealed: the token's parts a replica needs, its
//! absolute expiry and the end of its freshness, or a failure that the whole fleet backs off
//! from (a negative entry: its class and until when), as JSON, encrypted by AES-256-GCM under
//! the caller's key with the entry's store key as associated data. No IO, no clock, no
//! randomness: the time and the nonce are parameters.
//!
//! The refresh token is not stored: a client credentials client never uses one (RFC 6749
//! §4.4.3 says the server should not send it), and a secret nobody reads is better not copied.
//! A token read from the store therefore has none.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::oauth::{Details, ErrorCode, OAuthError, RetryAfter};
use crate::error::unexpected::UnexpectedResponse;
use crate::error::{Error, TransportKind};
use crate::secret::AccessToken;
use crate::store::encryption_key::StoreEncryptionKey;
use crate::store::key::StoreKey;
use crate::token::{Token, TokenType};

/// The longest entry read from or written to a store: 64 KiB, room for a large JWT and its
/// extras. A longer value is treated as absent.
pub(crate) const MAX_ENTRY_LEN: usize = 64 * 1024;

/// The first byte of an entry sealed by AES-256-GCM: then the nonce, the ciphertext, the tag.
const FORMAT_AES_256_GCM: u8 = 1;
/// The first byte of an entry stored in clear (only by [`EntrySealing::InsecurePlaintext`]).
const FORMAT_PLAINTEXT: u8 = 0;

/// How entries are sealed: encrypted, or, where the caller said so, in clear.
#[derive(Clone, Debug)]
pub(crate) enum EntrySealing {
    /// AES-256-GCM under this key.
    Encrypted(StoreEncryptionKey),
    /// In clear: whoever reads the store reads the tokens.
    InsecurePlaintext,
}

/// The entry inside the seal.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    access_token: String,
    token_type: String,
    /// When the token expires, in milliseconds since the Unix epoch.
    expires_at_ms: u64,
    /// The token's whole lifetime, in milliseconds: a replica whose wall clock is behind the
    /// writer's never serves it longer than this.
    lifetime_ms: u64,
    /// Until when a replica may take it instead of fetching, in milliseconds since the epoch.
    fresh_until_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
}

/// A failure inside the seal: what a replica needs to fail the same way, and until when.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredFailure {
    /// `oauth` (an OAuth error: its status and code), `response` (another answer: its
    /// status) or `transport` (no answer: its kind, in `code`).
    failure: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    /// Until when every replica backs off, in milliseconds since the Unix epoch.
    until_ms: u64,
}

/// What an entry holds.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Token(Stored),
    Failure(StoredFailure),
}

/// What an entry that opened holds.
#[derive(Debug)]
pub(crate) enum Opened {
    /// A token, with the lifetime that remains of it.
    Token(Token),
    /// The failure of another process's fetch, whose back-off has not ended: its
    /// `Retry-After` is what remains of the back-off.
    Failure(Error),
}

/// Why an entry read from the store is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It opened, but its freshness has ended (the store should have dropped it): fetch.
    Stale,
    /// It did not open or parse: tampered, sealed under another key or store key, written in
    /// another format, or too long. Overwrite it, never serve it.
    Unreadable,
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The entry of `token` for `key`, expiring at `expires_at` and fresh until `fresh_until`,
/// sealed by `sealing` with `nonce` (12 random bytes, new for every write); `None` if it could
/// not be sealed or would be longer than [`MAX_ENTRY_LEN`].
pub(crate) fn seal(
    sealing: &EntrySealing,
    key: &StoreKey,
    token: &Token,
    expires_at: SystemTime,
    fresh_until: SystemTime,
    nonce: [u8; NONCE_LEN],
) -> Option<Vec<u8>> {
    let stored = Stored {
        access_token: token.access_token.secret().to_owned(),
        token_type: token.token_type.as_str().to_owned(),
        expires_at_ms: millis(expires_at),
        lifetime_ms: expires_at
            .duration_since(token.sent_at)
            .map_or(0, |lifetime| {
                u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX)
            }),
        fresh_until_ms: millis(fresh_until),
        scope: token.scope.as_deref().map(str::to_owned),
        extra: token.extra.clone(),
    };
    seal_entry(sealing, key, &Entry::Token(stored), nonce)
}

/// The negative entry of `error` for `key`, which every replica honours until `until` by
/// failing the same way without a request, sealed as [`seal`] does; `None` for a failure that
/// is not shared (one of this process's own, such as a signing key or an assertion file).
pub(crate) fn seal_failure(
    sealing: &EntrySealing,
    key: &StoreKey,
    error: &Error,
    until: SystemTime,
    nonce: [u8; NONCE_LEN],
) -> Option<Vec<u8>> {
    let (failure, status, code) = match error {
        Error::OAuth(error) => (
            "oauth",
            Some(error.status().as_u16()),
            Some(error.code().as_str().to_owned()),
        ),
        Error::UnexpectedResponse(response) => ("response", Some(response.status().as_u16()), None),
        Error::Transport { kind, .. } => ("transport", None, Some(transport_name(*kind).into())),
        _ => return None,
    };
    let stored = StoredFailure {
        failure: failure.to_owned(),
        status,
        code,
        until_ms: millis(until),
    };
    seal_entry(sealing, key, &Entry::Failure(stored), nonce)
}

fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Connect => "connect",
        TransportKind::Timeout => "timeout",
        TransportKind::Io => "io",
        TransportKind::Tls => "tls",
        TransportKind::Other => "other",
    }
}

/// `entry` as JSON, sealed by `sealing` with `nonce`.
fn seal_entry(
    sealing: &EntrySealing,
    key: &StoreKey,
    entry: &Entry,
    nonce: [u8; NONCE_LEN],
) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(entry).ok()?;
    let blob = match sealing {
        EntrySealing::InsecurePlaintext => [&[FORMAT_PLAINTEXT][..], &json].concat(),
        EntrySealing::Encrypted(encryption) => {
            let mut in_out = json;
            encryption
                .aead()?
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(key.entry().as_bytes()),
                    &mut in_out,
                )
                .ok()?;
            [&[FORMAT_AES_256_GCM][..], &nonce, &in_out].concat()
        }
    };
    (blob.len() <= MAX_ENTRY_LEN).then_some(blob)
}

/// The token or failure in `blob`, read from the store under `key` at `now`. A token's lifetime
/// is what remains of it at `now` (`sent_at` is `now`), so that a replica's cache, which counts
/// a lifetime from when its fetch started, never holds it past its real expiry; a failure's
/// `Retry-After` is what remains of its back-off.
pub(crate) fn open(
    sealing: &EntrySealing,
    key: &StoreKey,
    blob: &[u8],
    now: SystemTime,
) -> Result<Opened, Refused> {
    if blob.len() > MAX_ENTRY_LEN {
        return Err(Refused::Unreadable);
    }
    let mut in_out;
    let json: &[u8] = match (sealing, blob.split_first()) {
        (EntrySealing::InsecurePlaintext, Some((&FORMAT_PLAINTEXT, json))) => json,
        (EntrySealing::Encrypted(encryption), Some((&FORMAT_AES_256_GCM, sealed)))
            if sealed.len() >= NONCE_LEN =>
        {
            let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Refused::Unreadable)?;
            in_out = ciphertext.to_vec();
            encryption
                .aead()
                .ok_or(Refused::Unreadable)?
                .open_in_place(nonce, Aad::from(key.entry().as_bytes()), &mut in_out)
                .map_err(|_| Refused::Unreadable)?
        }
        // Another format than this cache's sealing: a plaintext entry is never served to a
        // cache that encrypts, whoever wrote it.
        _ => return Err(Refused::Unreadable),
    };
    let stored = match serde_json::from_slice(json).map_err(|_| Refused::Unreadable)? {
        Entry::Token(stored) => stored,
        Entry::Failure(failure) => return open_failure(&failure, now).map(Opened::Failure),
    };
    let now_ms = millis(now);
    if now_ms >= stored.fresh_until_ms || now_ms >= stored.expires_at_ms {
        return Err(Refused::Stale);
    }
    // Counted from `now` itself, not its whole millisecond: never past the real expiry. And
    // never longer than the token's whole lifetime: under a wall clock far behind the writer's,
    // the expiry would otherwise be decades away.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let expires_in = Duration::from_millis(stored.expires_at_ms)
        .saturating_sub(since_epoch)
        .min(Duration::from_millis(stored.lifetime_ms));
    Ok(Opened::Token(Token {
        access_token: AccessToken::new(stored.access_token),
        token_type: TokenType::parse(&stored.token_type),
        expires_in: Some(expires_in),
        sent_at: now,
        scope: stored.scope.map(Into::into),
        refresh_token: None,
        extra: stored.extra,
        authorization: std::sync::OnceLock::new(),
    }))
}

/// The error of a negative entry at `now`, asking to retry when its back-off ends.
fn open_failure(failure: &StoredFailure, now: SystemTime) -> Result<Error, Refused> {
    let until = UNIX_EPOCH + Duration::from_millis(failure.until_ms);
    let remaining = until
        .duration_since(now)
        .ok()
        .filter(|remaining| !remaining.is_zero())
        .ok_or(Refused::Stale)?;
    let retry_after = Some(RetryAfter::Delay(remaining));
    let status = || {
        failure
            .status
            .and_then(|status| http::StatusCode::from_u16(status).ok())
            .ok_or(Refused::Unreadable)
    };
    let code = failure.code.as_deref().ok_or(Refused::Unreadable);
    Ok(match failure.failure.as_str() {
        "oauth" => Error::OAuth(OAuthError {
            status: status()?,
            code: ErrorCode::parse(code?),
            description: None,
            details: Some(Box::new(Details {
                uri: None,
                challenges: Vec::new(),
                dpop_nonce: None,
                retry_after,
                extra: Map::new(),
            })),
        }),
        "response" => Error::UnexpectedResponse(Box::new(UnexpectedResponse {
            status: status()?,
            content_type: None,
            retry_after,
            excerpt: None,
        })),
        "transport" => Error::Transport {
            kind: match code? {
                "connect" => TransportKind::Connect,
                "timeout" => TransportKind::Timeout,
                "io" => TransportKind::Io,
                "tls" => TransportKind::Tls,
                _ => TransportKind::Other,
            },
            source: Box::new(FleetFailure { remaining }),
        },
        _ => return Err(Refused::Unreadable),
    })
}

/// The source of a transport failure that another process of the fleet had: the store says so,
/// and how long the fleet backs off.
#[derive(Debug)]
struct FleetFailure {
    remaining: Duration,
}

impl std::fmt::Display for FleetFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another process of the fleet failed to fetch this token: the fleet backs off for {}s more",
            self.remaining.as_secs()
        )
    }
}

impl std::error::Error for FleetFailure {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientCredentials;
    use crate::endpoint::TokenUrl;
    use crate::secret::ClientSecret;

    fn key(scope: &str) -> StoreKey {
        let client = ClientCredentials::new(
            TokenUrl::new("https://idp.example.com/token").unwrap(),
            "c",
            ClientSecret::new("s"),
        );
        StoreKey::new(
            "ns",
            &client.token_request().scope(scope).build().unwrap(),
            &StoreEncryptionKey::new([7; 32]),
        )
        .unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn token() -> Token {
        let mut extra = Map::new();
        extra.insert("issued_token_type".into(), Value::from("x"));
        Token {
            access_token: AccessToken::new("the-access-token"),
            token_type: TokenType::DPoP,
            expires_in: Some(Duration::from_secs(100)),
            sent_at: at(1_000),
            scope: Some("a b".into()),
            refresh_token: Some(crate::secret::RefreshToken::new("refresh")),
            extra,
            authorization: std::sync::OnceLock::new(),
        }
    }

    fn token_of(opened: Result<Opened, Refused>) -> Token {
        match opened {
            Ok(Opened::Token(token)) => token,
            other => panic!("not a token: {other:?}"),
        }
    }

    /// What the token endpoint's `response` to a request parses into: an error here.
    fn failure(status: u16, content_type: &str, body: &str) -> Error {
        let client = ClientCredentials::new(
            TokenUrl::new("https://idp.example.com/token").unwrap(),
            "c",
            ClientSecret::new("s"),
        );
        let response = http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("retry-after", "60")
            .body(body.to_owned())
            .unwrap();
        let request = client.token_request().build().unwrap();
        request.parse_response(&response, at(1_000)).unwrap_err()
    }

    #[test]
    fn a_failure_opens_as_the_same_failure_until_its_back_off_ends() {
        let failures = [
            failure(400, "application/json", r#"{"error":"invalid_client"}"#),
            failure(429, "text/plain", "slow down"),
            Error::Transport {
                kind: TransportKind::Timeout,
                source: "timed out".into(),
            },
        ];
        for error in failures {
            let sealed = seal_failure(&encrypted(), &key("a"), &error, at(1_060), [2; 12]).unwrap();
            let Ok(Opened::Failure(opened)) = open(&encrypted(), &key("a"), &sealed, at(1_030))
            else {
                panic!("{error:?} did not open as a failure");
            };
            assert_eq!(opened.status(), error.status());
            assert_eq!(opened.is_retryable(), error.is_retryable());
            if error.status().is_some() {
                assert_eq!(
                    opened.retry_after(),
                    Some(RetryAfter::Delay(Duration::from_secs(30))),
                    "the back-off that remains"
                );
            }
            if let (Error::OAuth(opened), Error::OAuth(error)) = (&opened, &error) {
                assert_eq!(opened.code(), error.code());
            }
            assert_eq!(
                open(&encrypted(), &key("a"), &sealed, at(1_060)).err(),
                Some(Refused::Stale)
            );
            // Sealed like a token: under another store key it does not open.
            assert_eq!(
                open(&encrypted(), &key("b"), &sealed, at(1_030)).err(),
                Some(Refused::Unreadable)
            );
        }
        // A failure of this process's own is not the fleet's.
        let own = Error::ClockBeforeUnixEpoch;
        assert!(seal_failure(&encrypted(), &key("a"), &own, at(1_060), [2; 12]).is_none());
    }

    fn encrypted() -> EntrySealing {
        EntrySealing::Encrypted(StoreEncryptionKey::new([7; 32]))
    }

    /// The token's entry under `key("a")`, expiring at 1,100 s and fresh until 1,090 s.
    fn sealed() -> Vec<u8> {
        seal(
            &encrypted(),
            &key("a"),
            &token(),
            at(1_100),
            at(1_090),
            [1; 12],
        )
        .unwrap()
    }

    #[test]
    fn an_entry_opens_with_the_lifetime_that_remains_and_no_refresh_token() {
        let sealed = sealed();
        let opened = token_of(open(&encrypted(), &key("a"), &sealed, at(1_030)));
        assert_eq!(opened.access_token.secret(), "the-access-token");
        assert_eq!(opened.token_type, TokenType::DPoP);
        assert_eq!(opened.expires_in, Some(Duration::from_secs(70)));
        assert_eq!(opened.expires_at(), Some(at(1_100)));
        assert_eq!(opened.scope(), Some("a b"));
        assert_eq!(opened.extra("issued_token_type"), Some(&Value::from("x")));
        assert!(opened.refresh_token.is_none());
    }

    #[test]
    fn an_entry_read_between_two_milliseconds_never_outlives_the_token() {
        let sealed = sealed();
        let now = at(1_030) + Duration::from_micros(333);
        let opened = token_of(open(&encrypted(), &key("a"), &sealed, now));
        assert_eq!(opened.expires_at(), Some(at(1_100)));
    }

    #[test]
    fn a_replica_whose_clock_is_far_behind_never_serves_a_token_longer_than_its_lifetime() {
        // The token was sent at 1 000 for 100 s; a reader whose wall clock reads a year before
        // sees an expiry a year away, and holds the token for its 100 s at most.
        let sealed = sealed();
        let year_behind = at(1_000) - Duration::from_secs(365 * 24 * 3600);
        let opened = token_of(open(&encrypted(), &key("a"), &sealed, year_behind));
        assert_eq!(opened.expires_in, Some(Duration::from_secs(100)));
    }

    #[test]
    fn an_entry_past_its_freshness_is_stale() {
        let sealed = sealed();
        assert_eq!(
            open(&encrypted(), &key("a"), &sealed, at(1_090)).err(),
            Some(Refused::Stale)
        );
    }

    #[test]
    fn a_sealed_entry_holds_nothing_in_clear_and_opens_nowhere_else() {
        let sealed = sealed();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("the-access-token") && !text.contains("issued_token_type"));
        // Under another store key (the associated data), another encryption key, in clear.
        assert_eq!(
            open(&encrypted(), &key("b"), &sealed, at(1_030)).err(),
            Some(Refused::Unreadable)
        );
        let other = EntrySealing::Encrypted(StoreEncryptionKey::new([8; 32]));
        assert_eq!(
            open(&other, &key("a"), &sealed, at(1_030)).err(),
            Some(Refused::Unreadable)
        );
        let plaintext = EntrySealing::InsecurePlaintext;
        assert_eq!(
            open(&plaintext, &key("a"), &sealed, at(1_030)).err(),
            Some(Refused::Unreadable)
        );
        // Every single flipped bit is refused.
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert!(
                open(&encrypted(), &key("a"), &tampered, at(1_030)).is_err(),
                "byte {index}"
            );
        }
    }

    #[test]
    fn a_plaintext_entry_is_never_served_to_a_cache_that_encrypts() {
        let plaintext = EntrySealing::InsecurePlaintext;
        let sealed = seal(
            &plaintext,
            &key("a"),
            &token(),
            at(1_100),
            at(1_090),
            [1; 12],
        )
        .unwrap();
        assert!(open(&plaintext, &key("a"), &sealed, at(1_030)).is_ok());
        assert_eq!(
            open(&encrypted(), &key("a"), &sealed, at(1_030)).err(),
            Some(Refused::Unreadable)
        );
    }

    #[test]
    fn the_key_redacts_itself() {
        assert_eq!(
            format!("{:?}", StoreEncryptionKey::new([7; 32])),
            "StoreEncryptionKey([redacted])"
        );
    }
}
