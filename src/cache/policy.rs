//! The cache's policy: when a token is refreshed, how long a fetch may take, and how the cache
//! backs off after failures, with every default documented.

use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::error::oauth::RetryAfter;

/// How the [`TokenCache`](crate::cache::TokenCache) refreshes tokens and backs off after failures.
///
/// Every setting has a documented default ([`CachePolicy::new`]). Fractions are clamped to
/// `0.0..=1.0` (NaN reads as `0.0`), so no setting can make the cache panic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub(super) refresh_margin: Duration,
    pub(super) refresh_fraction: f64,
    pub(super) refresh_jitter: f64,
    pub(super) default_lifetime: Duration,
    pub(super) backoff_initial: Duration,
    pub(super) backoff_max: Duration,
    pub(super) backoff_jitter: f64,
    pub(super) non_retryable_backoff: Duration,
    pub(super) retry_after_max: Duration,
    pub(super) fetch_timeout: Duration,
    pub(super) invalidate_min_age: Duration,
    pub(super) invalidate_max_age: Duration,
    pub(super) capacity: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl CachePolicy {
    /// The default policy:
    ///
    /// - refresh ahead of expiry by the smaller of 60 s and 10% of the token's lifetime, plus a
    ///   random extra of up to half that margin: a one-hour token is refreshed 60 to 90 s
    ///   before it expires, a two-minute token 12 to 18 s before;
    /// - a token without `expires_in` is kept for 5 minutes;
    /// - after a retryable failure, back off 1 s, doubling with each failure in a row up to
    ///   60 s, less a random part of up to half; never less than the server's `Retry-After`,
    ///   of which at most 5 minutes is honoured;
    /// - after a non-retryable failure (such as `invalid_client`), back off a flat 10 s, less
    ///   up to half at random;
    /// - a fetch not answered within 30 s counts as a (retryable) failure for back-off;
    /// - a token that arrives already due for refresh counts as a failure for back-off;
    /// - a token is invalidated no earlier than 1 s after its fetch started, doubling with
    ///   each refusal in a row up to 60 s;
    /// - a [`TokenCache`](crate::cache::TokenCache) holds at most 1,024 requests.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            refresh_fraction: 0.1,
            refresh_jitter: 0.5,
            default_lifetime: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_jitter: 0.5,
            non_retryable_backoff: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(30),
            invalidate_min_age: Duration::from_secs(1),
            invalidate_max_age: Duration::from_secs(60),
            capacity: 1024,
        }
    }

    /// Sets the most a token is refreshed ahead of its expiry (default 60 s), before jitter.
    ///
    /// The margin is the smaller of this and [a fraction](Self::with_refresh_fraction) of the
    /// token's lifetime. It leaves time for the refresh, retries included, and for clock skew
    /// between client and server.
    #[must_use]
    pub const fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Sets the fraction of a token's lifetime that it is at most refreshed ahead of expiry
    /// (default `0.1`). It keeps short-lived tokens from being refreshed all the time: with 60 s
    /// alone, a 90 s token would be refreshed every 30 s.
    #[must_use]
    pub const fn with_refresh_fraction(mut self, fraction: f64) -> Self {
        self.refresh_fraction = unit_interval(fraction);
        self
    }

    /// Sets the random extra refresh lead, as a fraction of the margin (default `0.5`): each
    /// token is refreshed between `margin` and `margin × (1 + jitter)` before it expires, so a
    /// fleet of processes does not refresh in lockstep.
    #[must_use]
    pub const fn with_refresh_jitter(mut self, jitter: f64) -> Self {
        self.refresh_jitter = unit_interval(jitter);
        self
    }

    /// Sets how long a token whose response had no `expires_in` is used (default 5 minutes).
    ///
    /// RFC 6749 §5.1 leaves the lifetime to the server's documentation; a few minutes is short
    /// enough that a token revoked or expired early is not used for long, and long enough that
    /// the server sees a handful of requests an hour.
    #[must_use]
    pub const fn with_default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Sets the back-off after a first retryable failure (default 1 s); it doubles with each
    /// failure in a row, up to [`with_backoff_max`](Self::with_backoff_max).
    #[must_use]
    pub const fn with_backoff_initial(mut self, initial: Duration) -> Self {
        self.backoff_initial = initial;
        self
    }

    /// Sets the longest back-off after retryable failures (default 60 s).
    #[must_use]
    pub const fn with_backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// Sets the random part taken off each back-off, as a fraction of it (default `0.5`): a
    /// back-off of `d` lasts between `d × (1 − jitter)` and `d`.
    #[must_use]
    pub const fn with_backoff_jitter(mut self, jitter: f64) -> Self {
        self.backoff_jitter = unit_interval(jitter);
        self
    }

    /// Sets the back-off after a non-retryable failure (default 10 s), which does not grow.
    ///
    /// Such a failure (`invalid_client`, `invalid_scope`, a bad token URL) repeats until
    /// someone changes the server's or the client's configuration. Trying again every few
    /// seconds costs the server almost nothing, keeps a misconfigured fleet from hammering it,
    /// and picks up a fix at the server within seconds.
    #[must_use]
    pub const fn with_non_retryable_backoff(mut self, backoff: Duration) -> Self {
        self.non_retryable_backoff = backoff;
        self
    }

    /// Sets the most of a server's `Retry-After` that is honoured (default 5 minutes): a
    /// server asking for longer is asked again after this long.
    #[must_use]
    pub const fn with_retry_after_max(mut self, max: Duration) -> Self {
        self.retry_after_max = max;
        self
    }

    /// Sets how long a fetch may stay unanswered (default 30 s): then it counts as a failure
    /// ([`Error::FetchTimedOut`], retryable), the request backs off, and every caller waiting
    /// for the fetch gets the failure at once. An answer that still comes later counts if no
    /// other fetch has started since.
    ///
    /// It is the one bound of a token source's fetch, whatever the HTTP client: the async
    /// sources drop the fetch when it passes; the blocking source makes what is left of it the
    /// total timeout of each request it sends, in place of the client's own (which reqwest's
    /// blocking client restarts for every read of a body). To fetch with a shorter bound, set a
    /// shorter one here. An async client's own, shorter timeout ends a fetch sooner, as a
    /// transport failure.
    #[must_use]
    pub const fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Sets the age a token must reach before [`TokenCache::invalidate`](crate::cache::TokenCache::invalidate)
    /// refuses it (default 1 s, counted from when its fetch started), at the first refusal in
    /// a row; each further one doubles it, up to [`with_invalidate_max_age`](Self::with_invalidate_max_age).
    ///
    /// An API that refuses every token (a misconfigured audience, say) would otherwise make
    /// each call fetch a new one. A younger token's invalidation is deferred, not refused: it
    /// keeps being served until it reaches this age, then the next poll fetches. So rejected
    /// tokens cost at most one request per this much time, and fewer as refusals go on.
    #[must_use]
    pub const fn with_invalidate_min_age(mut self, age: Duration) -> Self {
        self.invalidate_min_age = age;
        self
    }

    /// Sets the most the minimum age of an invalidated token grows to (default 60 s).
    ///
    /// Each refusal in a row doubles the [minimum age](Self::with_invalidate_min_age) of the
    /// next token refused, up to this: an API that refuses every token (a wrong audience,
    /// another issuer) costs a token request after 1 s, then 2, 4, … and then one a minute,
    /// not one a second forever. A call the API accepts ([`TokenCache::accepted`](crate::cache::TokenCache::accepted))
    /// starts the count again.
    #[must_use]
    pub const fn with_invalidate_max_age(mut self, age: Duration) -> Self {
        self.invalidate_max_age = age;
        self
    }

    /// Sets how many requests a [`TokenCache`](crate::cache::TokenCache) holds (default 1,024; at least 1).
    ///
    /// A service that builds a request per tenant would otherwise grow the cache without
    /// limit. When a new request comes to a full cache, one it holds is forgotten: never one
    /// with a fetch in flight, first one with neither a valid token nor a back-off under way,
    /// else the least recently polled. Only while every request it holds has a fetch in
    /// flight does the cache hold more (one per fetch in flight).
    #[must_use]
    pub const fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = if capacity == 0 { 1 } else { capacity };
        self
    }

    /// How many requests a [`TokenCache`](crate::cache::TokenCache) holds.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// The age a token must reach before an invalidation drops it.
    #[must_use]
    pub const fn invalidate_min_age(&self) -> Duration {
        self.invalidate_min_age
    }

    /// The most the minimum age of an invalidated token grows to.
    #[must_use]
    pub const fn invalidate_max_age(&self) -> Duration {
        self.invalidate_max_age
    }

    /// The age an invalidated token must reach before it is refused, at the `refusals`-th
    /// refusal in a row: the minimum age, doubled for each refusal before, up to the maximum
    /// (never below the minimum).
    pub(super) fn invalidate_age(&self, refusals: u32) -> Duration {
        let doublings = refusals.saturating_sub(1).min(31);
        self.invalidate_min_age
            .checked_mul(1 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.invalidate_max_age.max(self.invalidate_min_age))
    }

    /// The most a token is refreshed ahead of expiry, before jitter.
    #[must_use]
    pub const fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// The fraction of a token's lifetime that it is at most refreshed ahead of expiry.
    #[must_use]
    pub const fn refresh_fraction(&self) -> f64 {
        self.refresh_fraction
    }

    /// The random extra refresh lead, as a fraction of the margin.
    #[must_use]
    pub const fn refresh_jitter(&self) -> f64 {
        self.refresh_jitter
    }

    /// How long a token without `expires_in` is used.
    #[must_use]
    pub const fn default_lifetime(&self) -> Duration {
        self.default_lifetime
    }

    /// The back-off after a first retryable failure.
    #[must_use]
    pub const fn backoff_initial(&self) -> Duration {
        self.backoff_initial
    }

    /// The longest back-off after retryable failures.
    #[must_use]
    pub const fn backoff_max(&self) -> Duration {
        self.backoff_max
    }

    /// The random part taken off each back-off, as a fraction of it.
    #[must_use]
    pub const fn backoff_jitter(&self) -> f64 {
        self.backoff_jitter
    }

    /// The back-off after a non-retryable failure.
    #[must_use]
    pub const fn non_retryable_backoff(&self) -> Duration {
        self.non_retryable_backoff
    }

    /// The most of a `Retry-After` that is honoured.
    #[must_use]
    pub const fn retry_after_max(&self) -> Duration {
        self.retry_after_max
    }

    /// How long a fetch may stay unanswered before it counts as a failure.
    #[must_use]
    pub const fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// How far ahead of expiry a token of this lifetime is refreshed.
    pub(super) fn refresh_lead(&self, lifetime: Duration, random: u64) -> Duration {
        let margin = scale(lifetime, self.refresh_fraction).min(self.refresh_margin);
        margin.saturating_add(scale(margin, self.refresh_jitter * unit(random)))
    }

    /// How long after its fetch started a token of this lifetime may first come due for
    /// refresh, whatever the jitter: the shared cache stops handing an entry out then, so that
    /// a replica whose refresh is due never gets back the token it is refreshing.
    #[cfg(feature = "shared-cache")]
    pub(crate) fn earliest_refresh(&self, lifetime: Duration) -> Duration {
        lifetime.saturating_sub(self.refresh_lead(lifetime, u64::MAX))
    }

    /// How long to back off after the `failures`-th failure in a row.
    pub(crate) fn backoff(
        &self,
        error: &Error,
        failures: u32,
        sent_at: Option<SystemTime>,
        random: u64,
    ) -> Duration {
        let base = if error.is_retryable() {
            let doublings = failures.saturating_sub(1).min(31);
            self.backoff_initial
                .checked_mul(1 << doublings)
                .unwrap_or(Duration::MAX)
                .min(self.backoff_max)
        } else {
            self.non_retryable_backoff
        };
        let delay = base.saturating_sub(scale(base, self.backoff_jitter * unit(random)));
        // A date is counted from when the request was sent, so the wait errs long by the round
        // trip; without `sent_at` (a failure reported by `handle_failure`) it cannot be read.
        let asked = match (error.retry_after(), sent_at) {
            (Some(RetryAfter::Delay(delay)), _) => delay,
            (Some(retry_after @ RetryAfter::At(_)), Some(sent_at)) => {
                retry_after.delay_from(sent_at)
            }
            _ => Duration::ZERO,
        };
        delay.max(asked.min(self.retry_after_max))
    }
}

/// A fraction clamped to `0.0..=1.0`, NaN read as `0.0`.
pub(super) const fn unit_interval(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    }
}

/// A random word as a number in `0.0..1.0`, from its top 53 bits.
pub(super) fn unit(random: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (random >> 11) as f64 * SCALE
}

/// `duration × fraction` for a fraction in `0.0..=1.0`, never more than `duration`.
pub(super) fn scale(duration: Duration, fraction: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * fraction)
        .map_or(duration, |scaled| scaled.min(duration))
}

/// `instant + duration`, or the latest instant near it that the platform can represent.
pub(crate) fn later(instant: Instant, mut duration: Duration) -> Instant {
    loop {
        if let Some(later) = instant.checked_add(duration) {
            return later;
        }
        duration /= 2;
    }
}
