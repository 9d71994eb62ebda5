//! The store key of a request: a caller-chosen namespace and a keyed digest (HMAC-SHA256) of
//! the request's cache identity, its credential included, so that processes asking for the same
//! token with the same credential meet under the same key, a caller with another credential
//! never does, and no key holds a secret, or anything to test a guessed secret against, in
//! clear.

use std::fmt;

use aws_lc_rs::hmac;

use crate::request::TokenRequest;
use crate::store::encryption_key::StoreEncryptionKey;

/// Where one request's entry and lease live in a [`TokenStore`](crate::shared_cache::TokenStore).
///
/// `<namespace>:{<digest>}` for the entry and `<namespace>:{<digest>}:lease` for the lease,
/// where the digest is the HMAC-SHA256 (hex), under a key derived from the fleet's
/// [`StoreEncryptionKey`], of the request's cache identity: token URL, client id,
/// authentication method, credential (the secret, the signing key's public key, the static
/// assertion, the assertion source's stated identity), the certificate named by
/// [`ClientCredentials::with_certificate`](crate::ClientCredentials::with_certificate), DPoP
/// key, scopes (in any order), audience, resources and extra parameters: the fields by which
/// two [`TokenRequest`]s are equal. Two requests that differ in any of them never share an
/// entry: a caller who knows a client id but holds another secret never reads its token (a
/// rotated secret starts a new entry). Nothing appears in clear, and without the key nobody can
/// test a guessed secret against a key. The braces are a Redis Cluster hash tag: an entry and
/// its lease live on the same shard.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    entry: Box<str>,
    lease: Box<str>,
}

/// Tells this digest's input apart from any other input, and versions its layout.
const DOMAIN: &[u8] = b"client-credentials shared token cache, key v2";

impl StoreKey {
    /// The key of `request`'s entry under `namespace` (an application's or environment's
    /// name, such as `billing-prod`) and the fleet's `key`: processes share tokens only under
    /// the same namespace and key.
    ///
    /// `None` for a request whose credential no other process can name, which is never
    /// shared: an assertion source without
    /// [`with_identity`](crate::auth::AssertionSource::with_identity), a JWT signer without a public
    /// key (an HMAC key), or a mutual TLS client without
    /// [`with_certificate`](crate::ClientCredentials::with_certificate).
    #[must_use]
    pub fn new(namespace: &str, request: &TokenRequest, key: &StoreEncryptionKey) -> Option<Self> {
        let mut digest = hmac::Context::with_key(&key.naming_key());
        digest.update(DOMAIN);
        // Each field framed by its tag's and its value's lengths: no two identities give the
        // same input.
        let shareable = request.identity_fields(|tag, value| {
            for part in [tag.as_bytes(), value] {
                digest.update(&(part.len() as u64).to_be_bytes());
                digest.update(part);
            }
        });
        if !shareable {
            return None;
        }
        let hex: String = digest
            .sign()
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let entry = format!("{namespace}:{{{hex}}}");
        let lease = format!("{entry}:lease");
        Some(Self {
            entry: entry.into(),
            lease: lease.into(),
        })
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
    use crate::client::ClientCredentials;
    use crate::client_auth::ClientAuth;
    use crate::client_auth::assertion::AssertionSource;
    use crate::endpoint::TokenUrl;
    use crate::request::requests_differing_in_each_key_field;
    use crate::secret::{ClientAssertion, ClientSecret};

    fn fleet_key() -> StoreEncryptionKey {
        StoreEncryptionKey::new([7; 32])
    }

    fn key_of(namespace: &str, request: &TokenRequest) -> StoreKey {
        StoreKey::new(namespace, request, &fleet_key()).expect("a shareable request")
    }

    fn url() -> TokenUrl {
        TokenUrl::new("https://idp.example.com/token").unwrap()
    }

    #[test]
    fn requests_that_differ_in_any_identity_field_get_different_keys() {
        let requests = requests_differing_in_each_key_field();
        let keys: std::collections::HashSet<StoreKey> = requests
            .iter()
            .map(|request| key_of("ns", request))
            .collect();
        assert_eq!(keys.len(), requests.len());
    }

    #[test]
    fn another_secret_or_another_fleet_key_names_another_entry() {
        let request = |secret: &str| {
            ClientCredentials::new(url(), "victim", ClientSecret::new(secret))
                .token_request()
                .build()
                .unwrap()
        };
        assert_eq!(
            key_of("ns", &request("right")),
            key_of("ns", &request("right"))
        );
        assert_ne!(
            key_of("ns", &request("right")),
            key_of("ns", &request("wrong"))
        );
        let other_fleet = StoreKey::new("ns", &request("right"), &StoreEncryptionKey::new([8; 32]));
        assert_ne!(Some(key_of("ns", &request("right"))), other_fleet);
    }

    #[test]
    fn a_credential_no_other_process_can_name_is_not_shared() {
        let source = || AssertionSource::from_fn(|| async { Ok(ClientAssertion::new("a.b.c")) });
        let request = |auth: ClientAuth| {
            ClientCredentials::with_auth(url(), "client", auth)
                .unwrap()
                .token_request()
                .build()
                .unwrap()
        };
        let unnamed = request(ClientAuth::Source(source()));
        assert!(StoreKey::new("ns", &unnamed, &fleet_key()).is_none());
        let named = request(ClientAuth::Source(source().with_identity("workload")));
        assert_eq!(
            key_of("ns", &named),
            key_of(
                "ns",
                &request(ClientAuth::Source(source().with_identity("workload")))
            )
        );
        let mtls =
            ClientCredentials::with_auth(url(), "client", ClientAuth::TlsClientAuth).unwrap();
        let unnamed_certificate = mtls.token_request().build().unwrap();
        assert!(StoreKey::new("ns", &unnamed_certificate, &fleet_key()).is_none());
        let certificate_a = mtls
            .clone()
            .with_certificate(b"A")
            .token_request()
            .build()
            .unwrap();
        let certificate_b = mtls.with_certificate(b"B").token_request().build().unwrap();
        assert_ne!(key_of("ns", &certificate_a), key_of("ns", &certificate_b));
    }

    #[test]
    fn scopes_in_any_order_share_a_key_and_namespaces_do_not() {
        let client =
            ClientCredentials::new(url(), "client-id-in-clear", ClientSecret::new("the-secret"));
        let ab = client.token_request().scope("a b").build().unwrap();
        let ba = client
            .token_request()
            .scope("b")
            .scope("a")
            .build()
            .unwrap();
        assert_eq!(key_of("ns", &ab), key_of("ns", &ba));
        assert_ne!(key_of("ns", &ab), key_of("other", &ab));
        let key = key_of("ns", &ab);
        assert!(key.entry().starts_with("ns:{") && key.entry().ends_with('}'));
        assert_eq!(key.lease(), format!("{}:lease", key.entry()));
        for clear in ["client-id-in-clear", "the-secret", "idp.example.com"] {
            assert!(!key.entry().contains(clear), "{clear} in {key:?}");
        }
    }

    #[test]
    fn the_digest_is_stable_across_processes_and_versions() {
        // A change here strands every entry a fleet has stored: change `DOMAIN` with it.
        let client = ClientCredentials::new(url(), "c", ClientSecret::new("s"));
        let request = client.token_request().scope("a").build().unwrap();
        let key = key_of("ns", &request);
        // Recomputed independently: Python's hmac over the same framing, the naming key
        // HMAC-SHA256([7; 32], the naming label).
        assert_eq!(
            key.entry(),
            "ns:{38e5a41b209d41edffcee79c29b2d72ca59dd62bf6103d47ef80de049265f647}"
        );
    }
}
