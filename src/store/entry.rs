//! What a store entry holds, and how it is sealed: the token's parts a replica needs, its
//! absolute expiry and the end of its freshness, as JSON, encrypted by AES-256-GCM under the
//! caller's key with the entry's store key as associated data. No IO, no clock, no randomness:
//! the time and the nonce are parameters.
//!
//! The refresh token is not stored: a client credentials client never uses one (RFC 6749
//! §4.4.3 says the server should not send it), and a secret nobody reads is better not copied.
//! A token read from the store therefore has none.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Until when a replica may take it instead of fetching, in milliseconds since the epoch.
    fresh_until_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
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
        fresh_until_ms: millis(fresh_until),
        scope: token.scope.as_deref().map(str::to_owned),
        extra: token.extra.clone(),
    };
    let json = serde_json::to_vec(&stored).ok()?;
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

/// The token in `blob`, read from the store under `key` at `now`: its lifetime is what remains
/// of it at `now` (`sent_at` is `now`), so that a replica's cache, which counts a lifetime
/// from when its fetch started, never holds it past its real expiry.
pub(crate) fn open(
    sealing: &EntrySealing,
    key: &StoreKey,
    blob: &[u8],
    now: SystemTime,
) -> Result<Token, Refused> {
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
    let stored: Stored = serde_json::from_slice(json).map_err(|_| Refused::Unreadable)?;
    let now_ms = millis(now);
    if now_ms >= stored.fresh_until_ms || now_ms >= stored.expires_at_ms {
        return Err(Refused::Stale);
    }
    Ok(Token {
        access_token: AccessToken::new(stored.access_token),
        token_type: TokenType::parse(&stored.token_type),
        expires_in: Some(Duration::from_millis(stored.expires_at_ms - now_ms)),
        sent_at: now,
        scope: stored.scope.map(Into::into),
        refresh_token: None,
        extra: stored.extra,
        authorization: std::sync::OnceLock::new(),
    })
}

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

    fn encrypted() -> EntrySealing {
        EntrySealing::Encrypted(StoreEncryptionKey::new([7; 32]))
    }

    #[test]
    fn an_entry_opens_with_the_lifetime_that_remains_and_no_refresh_token() {
        let sealed = seal(
            &encrypted(),
            &key("a"),
            &token(),
            at(1_100),
            at(1_090),
            [1; 12],
        )
        .unwrap();
        let opened = open(&encrypted(), &key("a"), &sealed, at(1_030)).unwrap();
        assert_eq!(opened.access_token.secret(), "the-access-token");
        assert_eq!(opened.token_type, TokenType::DPoP);
        assert_eq!(opened.expires_in, Some(Duration::from_secs(70)));
        assert_eq!(opened.expires_at(), Some(at(1_100)));
        assert_eq!(opened.scope(), Some("a b"));
        assert_eq!(opened.extra("issued_token_type"), Some(&Value::from("x")));
        assert!(opened.refresh_token.is_none());
    }

    #[test]
    fn an_entry_past_its_freshness_is_stale() {
        let sealed = seal(
            &encrypted(),
            &key("a"),
            &token(),
            at(1_100),
            at(1_090),
            [1; 12],
        )
        .unwrap();
        assert_eq!(
            open(&encrypted(), &key("a"), &sealed, at(1_090)).err(),
            Some(Refused::Stale)
        );
    }

    #[test]
    fn a_sealed_entry_holds_nothing_in_clear_and_opens_nowhere_else() {
        let sealed = seal(
            &encrypted(),
            &key("a"),
            &token(),
            at(1_100),
            at(1_090),
            [1; 12],
        )
        .unwrap();
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
