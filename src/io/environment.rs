//! Every read of a clock and of the random source in the crate, and nothing else: the core
//! reads neither (clippy's `disallowed-methods` forbids `Instant::now` and `SystemTime::now`
//! everywhere), so each read here carries the one `#[allow]` for its clock. The rest of the IO
//! layer asks this file; [`SystemEnvironment`] hands the same to the core's
//! [`fetch_token`](crate::fetch::fetch_token).

use std::hash::{BuildHasher, RandomState};
use std::time::{Instant, SystemTime};

use crate::error::{Error, TransportKind};
use crate::token_fetch::Environment;

/// The system's wall clock and random source, as the core's attempt loop needs them: every
/// adapter and token source of this crate fetches with it. Hand it to
/// [`fetch_token`](crate::fetch::fetch_token) with a [`Transport`](crate::fetch::Transport) of
/// your own.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> SystemTime {
        wall_now()
    }

    fn entropy(&self) -> Result<[u8; 32], Error> {
        entropy()
    }
}

/// The wall-clock time: an attempt's `sent_at`, a fetch's start, an entry's age.
#[allow(clippy::disallowed_methods)] // The IO layer's one wall-clock read.
#[inline]
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// The monotonic clock: the cache's decisions and every deadline.
#[allow(clippy::disallowed_methods)] // The IO layer's one monotonic-clock read.
#[inline]
pub(crate) fn monotonic_now() -> Instant {
    Instant::now()
}

/// 32 bytes from the operating system's random source, for the `jti` of an attempt's JWTs.
pub(crate) fn entropy() -> Result<[u8; 32], Error> {
    let mut bytes = [0; 32];
    fill_random(&mut bytes).map_err(|error| Error::Transport {
        kind: TransportKind::Other,
        source: Box::new(error),
    })?;
    Ok(bytes)
}

/// Fills `bytes` from the operating system's random source.
pub(crate) fn fill_random(bytes: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(bytes)
}

/// `N` random bytes that only have to differ between processes and calls, not resist
/// prediction (a jitter, a lease holder's name; never a nonce or a key): the operating system's
/// random source when it answers, else std's per-process random hash keys (which
/// `RandomState::new` steps on every call).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0_u8; N];
    if fill_random(&mut bytes).is_err() {
        let state = RandomState::new();
        for (index, chunk) in bytes.chunks_mut(8).enumerate() {
            let word = state.hash_one(index).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    bytes
}

/// A random word for jitter, as [`random_bytes`].
pub(crate) fn random_word() -> u64 {
    u64::from_le_bytes(random_bytes())
}

/// The clock a token source's hit is checked against. On Linux, the coarse monotonic clock
/// (`CLOCK_MONOTONIC_COARSE`): [`Instant`]'s own clock as of the last kernel tick, read in a
/// few nanoseconds where [`Instant::now`] takes tens, and never ahead of it. Elsewhere,
/// [`Instant`] itself.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) type HitInstant = coarsetime::Instant;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) type HitInstant = Instant;

/// How long before the cache's moment a hit stops answering: more than the coarse clock can lag
/// behind [`Instant`] (one kernel tick, 1 to 10 ms, with room for a late tick), so that a hit
/// never answers past that moment. The gets in this last stretch poll the cache, which reads
/// the precise clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
const HIT_CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_millis(50);

/// The hit clock's reading now. Inlined: it is on every cached get, and lives in another
/// module (another codegen unit) than the get.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub(crate) fn hit_now() -> HitInstant {
    // Not `now()`, which also stores the reading in a global that every caller would write.
    coarsetime::Instant::now_without_cache_update()
}

/// The hit clock's reading now.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
pub(crate) fn hit_now() -> HitInstant {
    monotonic_now()
}

/// The hit clock's reading before which a hit may answer, for a hit the cache keeps answering
/// until `until`; `None` if that leaves no time at all.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn hit_until(until: Instant) -> Option<HitInstant> {
    // The coarse clock first: it is not ahead of the precise one read after it, so the time
    // left, counted from the coarse reading and less the margin, ends before `until`.
    let coarse = hit_now();
    let left = until
        .checked_duration_since(monotonic_now())?
        .checked_sub(HIT_CLOCK_MARGIN)?;
    coarse.checked_add(coarsetime::Duration::from(left))
}

/// The hit clock's reading before which a hit may answer, for a hit the cache keeps answering
/// until `until`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn hit_until(until: Instant) -> Option<HitInstant> {
    Some(until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_environment_draws_fresh_bytes_and_reads_the_wall_clock() {
        let environment = SystemEnvironment;
        assert_ne!(
            environment.entropy().unwrap(),
            environment.entropy().unwrap()
        );
        let before = wall_now();
        assert!(environment.now() >= before);
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_hit_never_answers_past_its_moment() {
        let now = monotonic_now();
        assert!(hit_until(now).is_none(), "no time left");
        let until = now + std::time::Duration::from_secs(10);
        let hit_until = hit_until(until).expect("time left");
        assert!(hit_now() < hit_until);
    }
}
