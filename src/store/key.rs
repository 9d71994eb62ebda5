//! The store key of a request: a caller-chosen namespace and a SHA-256 digest of the request's
//! cache identity, so that processes asking for the same token meet under the same key and no
//! key holds a secret or the client id in clear.

use std::fmt;

use aws_lc_rs::digest::{Context, SHA256};

use crate::request::TokenRequest;

/// Where one request's entry and lease live in a [`TokenStore`](crate::TokenStore).
///
/// `<namespace>:{<digest>}` for the entry and `<namespace>:{<digest>}:lease` for the lease,
/// where the digest is the SHA-256 (hex) of the request's cache identity: token URL, client
/// id, authentication method, DPoP key, scopes (in any order), audience, resources and extra
/// parameters, the fields by which two [`TokenRequest`]s are equal. Two requests that differ in
/// any of them never share an entry. The client secret is not part of it (a rotated secret
/// keeps the entry), and neither the client id nor any parameter appears in clear. The braces
/// are a Redis Cluster hash tag: an entry and its lease live on the same shard.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    entry: Box<str>,
    lease: Box<str>,
}

/// Tells this digest's input apart from any other SHA-256 input, and versions its layout.
const DOMAIN: &[u8] = b"client-credentials shared token cache, key v1";

impl StoreKey {
    /// The key of `request`'s entry under `namespace` (an application's or environment's
    /// name, such as `billing-prod`): processes share tokens only under the same namespace.
    #[must_use]
    pub fn new(namespace: &str, request: &TokenRequest) -> Self {
        let mut digest = Context::new(&SHA256);
        digest.update(DOMAIN);
        // Each field framed by its tag's and its value's lengths: no two identities give the
        // same input.
        request.identity_fields(|tag, value| {
            for part in [tag.as_bytes(), value] {
                digest.update(&(part.len() as u64).to_be_bytes());
                digest.update(part);
            }
        });
        let hex: String = digest
            .finish()
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let entry = format!("{namespace}:{{{hex}}}");
        let lease = format!("{entry}:lease");
        Self {
            entry: entry.into(),
            lease: lease.into(),
        }
    }

    /// The entry's key: also the associated data of its encryption, so that an entry copied
    /// under another key does not open.
    #[must_use]
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The lease's key.
    #[must_use]
    pub fn lease(&self) -> &str {
        &self.lease
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreKey").field(&self.entry).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::TokenUrl;
    use crate::request::{ClientCredentials, requests_differing_in_each_key_field};
    use crate::secret::ClientSecret;

    #[test]
    fn requests_that_differ_in_any_identity_field_get_different_keys() {
        let requests = requests_differing_in_each_key_field();
        let keys: std::collections::HashSet<StoreKey> = requests
            .iter()
            .map(|request| StoreKey::new("ns", request))
            .collect();
        assert_eq!(keys.len(), requests.len());
    }

    #[test]
    fn scopes_in_any_order_share_a_key_and_namespaces_do_not() {
        let client = ClientCredentials::new(
            TokenUrl::new("https://idp.example.com/token").unwrap(),
            "client-id-in-clear",
            ClientSecret::new("the-secret"),
        );
        let ab = client.token_request().scope("a b").build().unwrap();
        let ba = client
            .token_request()
            .scope("b")
            .scope("a")
            .build()
            .unwrap();
        assert_eq!(StoreKey::new("ns", &ab), StoreKey::new("ns", &ba));
        assert_ne!(StoreKey::new("ns", &ab), StoreKey::new("other", &ab));
        let key = StoreKey::new("ns", &ab);
        assert!(key.entry().starts_with("ns:{") && key.entry().ends_with('}'));
        assert_eq!(key.lease(), format!("{}:lease", key.entry()));
        for clear in ["client-id-in-clear", "the-secret", "idp.example.com"] {
            assert!(!key.entry().contains(clear), "{clear} in {key:?}");
        }
    }

    #[test]
    fn the_digest_is_stable_across_processes_and_versions() {
        // A change here strands every entry a fleet has stored: change `DOMAIN` with it.
        let client = ClientCredentials::new(
            TokenUrl::new("https://idp.example.com/token").unwrap(),
            "c",
            ClientSecret::new("s"),
        );
        let request = client.token_request().scope("a").build().unwrap();
        let key = StoreKey::new("ns", &request);
        // The framing recomputed independently (Python's hashlib over the same bytes).
        assert_eq!(
            key.entry(),
            "ns:{62778e2b401fe679144a88dfb9eccdb7dac8db8fb8f2d47e4a27fe1358df3454}"
        );
    }
}
