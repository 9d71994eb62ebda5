//! Which credential a client proves itself with, as far as a cached token's owner must match:
//! two requests share a cached token only when their credentials are the same, so that a
//! caller who knows a client id but not its credential never gets that client's token from a
//! cache (in the process, or from a fleet's store).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A client's credential as a cache key sees it. Built once, with the client.
///
/// Equal values mean "the same credential": the same secret, the same public key, the same
/// certificate, the same named identity, or the very same signer or assertion source. The
/// bytes of a secret are compared and hashed in memory only (a `HashMap`'s hasher is keyed per
/// process); a shared store sees them only under a keyed hash (`store/key.rs`).
#[derive(Clone)]
pub(crate) enum CredentialIdentity {
    /// No credential: a public client (`none`), or mutual TLS whose certificate the caller has
    /// not named (the client id is all there is to compare).
    Nothing,
    /// A secret: a client secret, a static client assertion.
    Secret(Arc<[u8]>),
    /// A public key: the RFC 7638 JSON of a JWT signing key.
    PublicKey(Arc<str>),
    /// An identity the caller stated for an assertion source.
    Stated(Arc<str>),
    /// A signer or an assertion source with no identity of its own to compare: the same
    /// instance (and its clones) only. Never shared through a store: another process has
    /// another instance.
    Instance(Instance),
}

/// A credential known only as an object in this process: its address, and the object kept
/// alive so that the address cannot be reused while a cache entry keyed by it lives.
#[derive(Clone)]
pub(crate) struct Instance {
    address: usize,
    _alive: Arc<dyn Send + Sync>,
}

impl Instance {
    /// The instance `object` is, shared.
    pub(crate) fn of<T: ?Sized + Send + Sync + 'static>(object: &Arc<T>) -> Self {
        Self {
            address: Arc::as_ptr(object).cast::<()>() as usize,
            _alive: Arc::new(Arc::clone(object)),
        }
    }

    fn address(&self) -> usize {
        self.address
    }
}

impl CredentialIdentity {
    /// The bytes another process would compute for the same credential, with a tag naming
    /// their kind; `None` for an instance, which no other process can name. Read by the shared
    /// cache's store key.
    #[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
    pub(crate) fn shareable(&self) -> Option<(&'static str, &[u8])> {
        match self {
            Self::Nothing => Some(("none", &[])),
            Self::Secret(bytes) => Some(("secret", bytes)),
            Self::PublicKey(jwk) => Some(("public_key", jwk.as_bytes())),
            Self::Stated(name) => Some(("stated", name.as_bytes())),
            Self::Instance(_) => None,
        }
    }
}

impl PartialEq for CredentialIdentity {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Nothing, Self::Nothing) => true,
            (Self::Secret(a), Self::Secret(b)) => a == b,
            (Self::PublicKey(a), Self::PublicKey(b)) | (Self::Stated(a), Self::Stated(b)) => a == b,
            (Self::Instance(a), Self::Instance(b)) => a.address() == b.address(),
            _ => false,
        }
    }
}

impl Eq for CredentialIdentity {}

impl Hash for CredentialIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Self::Nothing => {}
            Self::Secret(bytes) => bytes.hash(state),
            Self::PublicKey(text) | Self::Stated(text) => text.hash(state),
            Self::Instance(instance) => instance.address().hash(state),
        }
    }
}

impl fmt::Debug for CredentialIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nothing => "Nothing",
            Self::Secret(_) => "Secret([redacted])",
            Self::PublicKey(_) => "PublicKey",
            Self::Stated(_) => "Stated",
            Self::Instance(_) => "Instance",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> CredentialIdentity {
        CredentialIdentity::Secret(value.as_bytes().into())
    }

    fn source() -> Instance {
        Instance::of(&Arc::new(1_u8))
    }

    #[test]
    fn the_same_credential_is_equal_and_another_is_not() {
        use std::collections::HashSet;
        let instance = source();
        let other_instance = source();
        let all = [
            CredentialIdentity::Nothing,
            secret("a"),
            secret("b"),
            CredentialIdentity::PublicKey("a".into()),
            CredentialIdentity::Stated("a".into()),
            CredentialIdentity::Instance(instance.clone()),
            CredentialIdentity::Instance(other_instance),
        ];
        let set: HashSet<_> = all.iter().cloned().collect();
        assert_eq!(set.len(), all.len(), "every pair differs");
        assert_eq!(secret("a"), secret("a"));
        assert_eq!(
            CredentialIdentity::Instance(instance.clone()),
            CredentialIdentity::Instance(instance)
        );
    }

    #[test]
    fn an_instance_is_never_shared_and_debug_holds_no_secret() {
        assert!(CredentialIdentity::Instance(source()).shareable().is_none());
        assert_eq!(
            secret("hunter2").shareable(),
            Some(("secret", &b"hunter2"[..]))
        );
        assert!(!format!("{:?}", secret("hunter2")).contains("hunter2"));
    }
}
