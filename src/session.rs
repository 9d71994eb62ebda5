//! What a client learns of its token endpoint while it sends to it: the DPoP nonces and the
//! server's clock. State fed by responses, owned by whoever drives the attempts, and never part
//! of a request or its cache key.

use std::fmt;
use std::sync::Arc;

use crate::attempt::DpopNonces;
use crate::clock::ServerClock;

/// The state a client's attempts share: the latest DPoP nonce of each server (RFC 9449 §8) and
/// what it has learnt of the token endpoint's clock ([`ServerClock`]).
///
/// A [`TokenRequest`](crate::TokenRequest) is a plain value, a cache key; what changes with
/// every response lives here, with whoever drives the attempts:
///
/// - a [`TokenSource`](crate::TokenSource) built over a transport owns one, shared by its
///   clones and by the sources [`with_policy`](crate::TokenSource::with_policy) and
///   `with_store` make from it;
/// - [`fetch_token`](crate::fetch::fetch_token) takes one, and
///   [`TokenFetch`](crate::fetch::TokenFetch) borrows it: keep one per client across your
///   fetches so that the next one starts with the server's nonce and on its time;
/// - an adapter's one-shot `fetch_token` (`reqwest`, `hyper`) runs in a session of its own,
///   and its `fetch_token_in` in the one you give it.
///
/// Cheap to clone: the clones share the same state. Safe to share between threads. Bounded:
/// at most [`DpopNonces::MAX_ORIGINS`] nonces and [`ServerClock::SAMPLES`] clock samples.
#[derive(Clone, Default)]
pub struct Session(Arc<State>);

#[derive(Default)]
struct State {
    nonces: DpopNonces,
    clock: ServerClock,
}

impl Session {
    /// A session that has seen no response: no nonce, no clock offset.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The DPoP nonces the servers sent (RFC 9449 §8), which
    /// [`TokenFetch`](crate::fetch::TokenFetch) puts in its next proofs.
    #[must_use]
    pub fn dpop_nonces(&self) -> &DpopNonces {
        &self.0.nonces
    }

    /// What the session has learnt of the token endpoint's clock, which
    /// [`TokenFetch`](crate::fetch::TokenFetch) signs each attempt's JWTs by.
    #[must_use]
    pub fn server_clock(&self) -> &ServerClock {
        &self.0.clock
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("dpop_nonces", &self.0.nonces)
            .field("server_clock", &self.0.clock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_state_and_new_sessions_do_not() {
        let uri: http::Uri = "https://as.example.com/token".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("dpop-nonce", "n-1".parse().unwrap());
        let session = Session::new();
        session.clone().dpop_nonces().observe(&uri, &headers);
        assert_eq!(session.dpop_nonces().get(&uri).as_deref(), Some("n-1"));
        assert_eq!(Session::new().dpop_nonces().get(&uri), None);
        assert_eq!(session.server_clock().offset_millis(), None);
        let text = format!("{session:?}");
        assert!(
            text.contains("as.example.com") && !text.contains("n-1"),
            "{text}"
        );
    }
}
