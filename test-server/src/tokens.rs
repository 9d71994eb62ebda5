//! The tokens the server issued, so that its resource accepts those and no others, and can be
//! told to forget one (revocation).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use client_credentials::token::AccessToken;

/// How many issued tokens the server remembers; past it, the oldest is forgotten, and its
/// resource refuses it as unknown.
pub const MAX_ISSUED_TOKENS: usize = 4096;

/// What the server knows of a token it issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Issued {
    pub(super) client_id: String,
    pub(super) scopes: Vec<String>,
    pub(super) audiences: Vec<String>,
    /// Seconds since the Unix epoch; `None` for a token that never expires.
    pub(super) exp: Option<u64>,
    /// The RFC 7638 thumbprint of the key the token is bound to (RFC 9449 §6).
    pub(super) jkt: Option<String>,
    pub(super) revoked: bool,
}

/// The issued tokens, by the whole token (an unsecured JWT proves nothing, so a token with a
/// known `jti` but other claims is not one of ours), bounded by [`MAX_ISSUED_TOKENS`].
#[derive(Default)]
pub(super) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<Box<str>, Issued>,
    order: VecDeque<Box<str>>,
}

impl Registry {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is one insert or flag: a panic elsewhere leaves the data consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn record(&self, token: &str, issued: Issued) {
        let mut inner = self.inner();
        if inner.order.len() >= MAX_ISSUED_TOKENS
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.by_token.remove(&oldest);
        }
        inner.order.push_back(token.into());
        inner.by_token.insert(token.into(), issued);
    }

    pub(super) fn lookup(&self, token: &str) -> Option<Issued> {
        self.inner().by_token.get(token).cloned()
    }

    /// Marks a token revoked; `false` if it is unknown or was already revoked.
    pub(super) fn revoke(&self, token: &AccessToken) -> bool {
        match self.inner().by_token.get_mut(token.secret()) {
            Some(issued) if !issued.revoked => {
                issued.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Marks every remembered token revoked, returning how many were not already.
    pub(super) fn revoke_all(&self) -> usize {
        let mut inner = self.inner();
        let mut count = 0;
        for issued in inner.by_token.values_mut().filter(|i| !i.revoked) {
            issued.revoked = true;
            count += 1;
        }
        count
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner().order.len()
    }
}

/// The largest clock skew [`TestServerBuilder::clock_skew`](crate::TestServerBuilder::clock_skew)
/// takes, either way: a week. A larger one is clamped to it.
pub const MAX_CLOCK_SKEW: i64 = 7 * 24 * 60 * 60;

/// The server's clock: the real time, skewed by a fixed number of seconds, so that a test can
/// give the server a clock that disagrees with the client's.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SkewedClock {
    skew: i64,
}

impl SkewedClock {
    pub(super) fn skewed(skew: i64) -> Self {
        Self {
            skew: skew.clamp(-MAX_CLOCK_SKEW, MAX_CLOCK_SKEW),
        }
    }

    /// The server's current time in seconds since the Unix epoch.
    pub(super) fn now(self) -> u64 {
        unix_now().saturating_add_signed(self.skew)
    }
}

/// The current time in seconds since the Unix epoch.
// The server stamps `iat` and `exp` with the real time and checks them against it, as a real
// server does; outside the tests it is the one place this crate reads the wall clock.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
