//! The fleet's one secret: the key that seals a shared cache's entries and names them.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use aws_lc_rs::hmac;

/// The label of the naming key's derivation: versioned with the store key's layout.
const NAMING_LABEL: &[u8] = b"client-credentials shared token cache, naming key v2";

/// A 256-bit AES-GCM key that seals the entries of a shared token cache. Every replica of the
/// fleet needs the same key; keep it where you keep the client secret. It prints as
/// `[redacted]`.
#[derive(Clone)]
pub struct StoreEncryptionKey(Arc<[u8; 32]>);

impl StoreEncryptionKey {
    /// The key made of these 32 bytes (draw them from a secure random source, once per fleet).
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        Self(Arc::new(key))
    }

    /// The AEAD key. Only a wrong length fails in aws-lc-rs, and 32 bytes is right: a failure
    /// anyway (a failed self-test) reads as "cannot seal", never a panic.
    pub(crate) fn aead(&self) -> Option<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.0[..])
            .ok()
            .map(LessSafeKey::new)
    }

    /// The HMAC-SHA256 key that names entries (`StoreKey`), derived from this key under its
    /// own label, so that no key is used for two purposes: a store key is a keyed digest of
    /// the request's identity, the credential included, which nobody without this key can
    /// test a guessed secret against.
    pub(crate) fn naming_key(&self) -> hmac::Key {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.0[..]),
            NAMING_LABEL,
        );
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }
}

impl fmt::Debug for StoreEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreEncryptionKey([redacted])")
    }
}
