//! What a client knows of its token endpoint's clock: the offset learnt from the `Date` header
//! of the responses (RFC 9110 §6.6.1), so that the JWTs it signs are on the server's time.
//! State fed by responses; the core still reads no clock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::DATE;

use crate::error::Error;
use crate::error::oauth::ErrorCode;

/// The token endpoint's clock as a client has seen it: how far it is ahead of (or behind) the
/// client's, estimated from the `Date` header of every response, so that the `iat`, `nbf` and
/// `exp` of the client assertions (RFC 7523 §3) and the `iat` of the DPoP proofs (RFC 9449
/// §4.2) it signs are on the server's time.
///
/// A client whose clock runs five minutes fast otherwise has every assertion refused as
/// issued in the future, or, five minutes slow, as expired. Every
/// [`Session`](crate::fetch::Session) holds one
/// ([`server_clock`](crate::fetch::Session::server_clock)), for the token endpoint:
/// [`TokenFetch`](crate::fetch::TokenFetch) feeds it each response with the time its attempt was
/// sent, and builds each attempt at [`server_time`](Self::server_time) of the
/// transport's clock. When the server refuses an assertion or a proof as expired or not yet
/// valid ([`is_refusal_about_time`]), the exchange trusts that response's `Date` at once and
/// tries once more, if it moves the estimate by at most [`MAX_ADOPTION`](Self::MAX_ADOPTION). A loop of your own over [`TokenRequest::http_request`](crate::TokenRequest::http_request)
/// gets the same by making each [`Attempt`](crate::Attempt) at `server_time(now)` and calling
/// [`observe`](Self::observe) with each response.
///
/// # How the offset is estimated
///
/// A `Date` has one-second resolution (the server's time truncated) and is stamped somewhere
/// between the attempt's send time and the response's arrival, which the core does not see.
/// A sample is therefore `Date − sent_at`: more than the true offset less one second (the
/// truncation), and at most the true offset plus the latency to the server. The estimate is
/// the lower median of the last [`SAMPLES`](Self::SAMPLES) samples, so that one outlier (a
/// cached response's stale `Date`, a proxy's clock) does not move it; a sample beyond
/// [`MAX_OFFSET`](Self::MAX_OFFSET) is ignored as implausible, and a server that really
/// changes its clock is followed once most of the window agrees. Attempts are shifted only by
/// an estimate of at least [`MIN_CORRECTION`](Self::MIN_CORRECTION): below it the estimate is
/// the noise of a synchronised clock (truncation and latency), and shifting by it would only
/// risk an `iat` a little in the server's future.
///
/// # What it changes in the cache
///
/// Nothing, by design: a token's lifetime is `expires_in`, relative, counted by the
/// [`TokenCache`](crate::cache::TokenCache) from the client's own clock at the attempt's send time
/// ([`Token::sent_at`](crate::Token::sent_at), which stays the transport's time), so the
/// server's clock never enters it and no offset can make a token live longer. An absolute time
/// of the server's (a JWT access token's `exp`, which a client should not need to read) goes
/// through [`local_time`](Self::local_time), which never puts it later than the instant the
/// server's clock reaches it.
pub struct ServerClock {
    samples: Mutex<VecDeque<i64>>,
}

impl ServerClock {
    /// The largest offset taken as plausible: a day. A `Date` further off is ignored.
    pub const MAX_OFFSET: Duration = Duration::from_secs(24 * 60 * 60);

    /// How many of the latest samples the estimate is the median of.
    pub const SAMPLES: usize = 5;

    /// The most one refusal about time may move the estimate by ([`adopt`](Self::adopt)):
    /// 15 minutes. A larger jump is only observed, so it takes most of the window agreeing
    /// with it to move the estimate: one forged `Date` cannot shift the signing clock by hours.
    pub const MAX_ADOPTION: Duration = Duration::from_secs(15 * 60);

    /// The smallest offset [`server_time`](Self::server_time) corrects by: two seconds, twice
    /// the `Date` header's resolution.
    pub const MIN_CORRECTION: Duration = Duration::from_secs(2);

    /// A clock with no sample yet: an offset of zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            samples: Mutex::new(VecDeque::new()),
        }
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, VecDeque<i64>> {
        // Every update is a push and a pop: a panic elsewhere leaves the window consistent.
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The estimated offset of the server's clock from the client's, in milliseconds: positive
    /// when the server is ahead; `None` before the first plausible `Date`.
    #[must_use]
    pub fn offset_millis(&self) -> Option<i64> {
        median(&self.samples())
    }

    /// The server's time when the client's clock reads `local`: `local` plus the offset, when
    /// it is at least [`MIN_CORRECTION`](Self::MIN_CORRECTION); `local` otherwise.
    #[must_use]
    pub fn server_time(&self, local: SystemTime) -> SystemTime {
        shift_by_correction(local, self.correction_millis())
    }

    /// The offset attempts are shifted by, in milliseconds: the estimate, or zero below
    /// [`MIN_CORRECTION`](Self::MIN_CORRECTION).
    #[must_use]
    pub fn correction_millis(&self) -> i64 {
        let min = i64::try_from(Self::MIN_CORRECTION.as_millis()).unwrap_or(i64::MAX);
        self.offset_millis()
            .filter(|offset| offset.abs() >= min)
            .unwrap_or(0)
    }

    /// The client's time when the server's clock reads `server`, never later than that instant
    /// (so an expiry converted by it is never later than the server's view): `server` minus the
    /// offset and the second a `Date` may have lost to truncation. `server` itself before the
    /// first `Date`.
    #[must_use]
    pub fn local_time(&self, server: SystemTime) -> SystemTime {
        match self.offset_millis() {
            Some(offset) => shift(server, -offset.saturating_add(1000)),
            None => server,
        }
    }

    /// Takes the `Date` header of a response to an attempt sent at `sent_at` (the client's
    /// time) as a sample; `false` if there is none, it does not parse, or it is implausible.
    pub fn observe(&self, sent_at: SystemTime, headers: &HeaderMap) -> bool {
        let Some(sample) = sample(sent_at, headers) else {
            return false;
        };
        let mut samples = self.samples();
        if samples.len() >= Self::SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
        true
    }

    /// Takes the `Date` of a response that refused the attempt's time
    /// ([`is_refusal_about_time`]) as the estimate, forgetting the earlier samples, which the
    /// server has just said are wrong, when it moves the estimate by at most
    /// [`MAX_ADOPTION`](Self::MAX_ADOPTION). `false` if the response has no plausible `Date`,
    /// or if it is further from the estimate than that: then it is only a sample among the
    /// others ([`observe`](Self::observe)), and the estimate follows it once most of the window
    /// agrees.
    pub fn adopt(&self, sent_at: SystemTime, headers: &HeaderMap) -> bool {
        let Some(sample) = sample(sent_at, headers) else {
            return false;
        };
        let mut samples = self.samples();
        let estimate = median(&samples).unwrap_or(0);
        let limit = u64::try_from(Self::MAX_ADOPTION.as_millis()).unwrap_or(u64::MAX);
        if sample.abs_diff(estimate) > limit {
            return false;
        }
        samples.clear();
        samples.push_back(sample);
        true
    }
}

impl Default for ServerClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ServerClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerClock")
            .field("offset_millis", &self.offset_millis())
            .finish()
    }
}

/// `Date − sent_at` in milliseconds, if the header parses and is within
/// [`ServerClock::MAX_OFFSET`].
fn sample(sent_at: SystemTime, headers: &HeaderMap) -> Option<i64> {
    let date = headers.get(DATE)?.to_str().ok()?;
    let date = httpdate::parse_http_date(date).ok()?;
    let millis = match date.duration_since(sent_at) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).ok()?,
        Err(behind) => -i64::try_from(behind.duration().as_millis()).ok()?,
    };
    let limit = i64::try_from(ServerClock::MAX_OFFSET.as_millis()).ok()?;
    (millis.abs() <= limit).then_some(millis)
}

/// The lower median: with one outlier among at least two steady samples, a steady one. Sorted
/// on the stack: it runs for every attempt.
fn median(samples: &VecDeque<i64>) -> Option<i64> {
    let mut sorted = [0i64; ServerClock::SAMPLES];
    let len = samples.len().min(ServerClock::SAMPLES);
    if len == 0 {
        return None;
    }
    for (slot, sample) in sorted.iter_mut().zip(samples) {
        *slot = *sample;
    }
    let sorted = &mut sorted[..len];
    sorted.sort_unstable();
    sorted.get((len - 1) / 2).copied()
}

/// `local` moved by a correction of [`ServerClock::correction_millis`], for an attempt built
/// with the correction it was read with.
pub(crate) fn shift_by_correction(local: SystemTime, correction_millis: i64) -> SystemTime {
    shift(local, correction_millis)
}

/// `time` moved by `millis`, saturating at the ends of `SystemTime`'s range.
fn shift(time: SystemTime, millis: i64) -> SystemTime {
    let by = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        time.checked_add(by).unwrap_or(time)
    } else {
        time.checked_sub(by).unwrap_or(time)
    }
}

/// The wordings by which servers say a JWT was refused for its time, lower-cased:
/// oidc-provider (`jwt expired`, `jwt not active yet`, `jwt issued in the future`), Entra ID
/// (`AADSTS700024: Client assertion is not within its valid time range`), Keycloak (`Token is
/// not active`, `Token was issued in the future`, `Token expired`), the embedded test server
/// (`expired`, `not yet valid`, `issued in the future`; for DPoP, `from the server's clock`).
const TIME_WORDINGS: [&str; 8] = [
    "expired",
    "not active",
    "not yet valid",
    "in the future",
    "valid time range",
    "aadsts700024",
    "from the server's clock",
    "clock skew",
];

/// Whether `error` is a refusal of the attempt's client assertion or DPoP proof for its time:
/// `invalid_client`, `invalid_grant`, `invalid_request` or `invalid_dpop_proof` with a
/// description in one of the usual wordings (oidc-provider, Entra ID's `AADSTS700024`,
/// Keycloak: see the source for the list). A server that says nothing of the reason (some say
/// only `invalid_client`) cannot be recognised; its `Date` still feeds the estimate.
#[must_use]
pub fn is_refusal_about_time(error: &Error) -> bool {
    let Some(oauth) = error.oauth() else {
        return false;
    };
    let about_credentials = matches!(
        oauth.code(),
        ErrorCode::InvalidClient
            | ErrorCode::InvalidGrant
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidDpopProof
    );
    let Some(description) = oauth.description().filter(|_| about_credentials) else {
        return false;
    };
    let description = description.to_ascii_lowercase();
    TIME_WORDINGS.iter().any(|w| description.contains(w))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{at, at_ms, request};

    fn date(seconds: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let text = httpdate::fmt_http_date(at(seconds));
        headers.insert(DATE, text.parse().unwrap());
        headers
    }

    const T: u64 = 1_700_000_000;

    #[test]
    fn a_date_sets_the_offset_and_the_attempt_time() {
        let clock = ServerClock::new();
        assert_eq!(clock.offset_millis(), None);
        assert_eq!(clock.server_time(at_ms(5)), at_ms(5));
        assert!(clock.observe(at_ms(T * 1000 + 300), &date(T + 600)));
        assert_eq!(clock.offset_millis(), Some(599_700));
        assert_eq!(
            clock.server_time(at_ms(T * 1000)),
            at_ms(T * 1000 + 599_700)
        );
        assert_eq!(
            clock.local_time(at_ms((T + 600) * 1000)),
            at_ms(T * 1000 - 700),
            "minus the offset and the truncated second"
        );
        assert_eq!(
            format!("{clock:?}"),
            "ServerClock { offset_millis: Some(599700) }"
        );

        let synchronised = ServerClock::new();
        assert!(synchronised.observe(at_ms(T * 1000 + 900), &date(T)));
        assert_eq!(synchronised.offset_millis(), Some(-900));
        assert_eq!(
            synchronised.correction_millis(),
            0,
            "below the Date's resolution"
        );
        assert_eq!(synchronised.server_time(at_ms(7)), at_ms(7));
    }

    #[test]
    fn implausible_or_missing_dates_are_ignored() {
        let clock = ServerClock::new();
        assert!(!clock.observe(at_ms(T * 1000), &HeaderMap::new()));
        assert!(!clock.observe(at_ms(T * 1000), &date(T + 2 * 24 * 3600)));
        assert!(!clock.observe(at_ms(T * 1000), &date(T - 2 * 24 * 3600)));
        let mut garbled = HeaderMap::new();
        garbled.insert(DATE, "yesterday".parse().unwrap());
        assert!(!clock.observe(at_ms(T * 1000), &garbled));
        assert!(!clock.adopt(at_ms(T * 1000), &garbled));
        assert_eq!(clock.offset_millis(), None);
    }

    #[test]
    fn a_refusal_is_adopted_at_once_and_the_window_is_bounded() {
        let clock = ServerClock::new();
        for i in 0..20 {
            assert!(clock.observe(at_ms((T + i) * 1000), &date(T + i)));
        }
        assert_eq!(clock.samples().len(), ServerClock::SAMPLES);
        assert_eq!(clock.offset_millis(), Some(0));
        assert!(clock.observe(at_ms(T * 1000), &date(T - 600)));
        assert_eq!(clock.offset_millis(), Some(0), "one outlier is outvoted");
        assert!(clock.adopt(at_ms(T * 1000), &date(T - 600)));
        assert_eq!(clock.offset_millis(), Some(-600_000), "the server said so");
    }

    #[test]
    fn one_refusal_moves_the_clock_by_at_most_fifteen_minutes() {
        let clock = ServerClock::new();
        for i in 0..ServerClock::SAMPLES as u64 {
            assert!(clock.observe(at_ms((T + i) * 1000), &date(T + i)));
        }
        // A forged refusal, its `Date` almost a day ahead: as the exchange does, observed first,
        // then offered for adoption. It is outvoted, not adopted.
        let forged = date(T + 24 * 3600 - 1);
        assert!(clock.observe(at_ms(T * 1000), &forged));
        assert!(!clock.adopt(at_ms(T * 1000), &forged));
        assert_eq!(clock.offset_millis(), Some(0));
        assert_eq!(clock.correction_millis(), 0);
        // Just past the bound: the same.
        let past = date(T + 15 * 60 + 2);
        assert!(clock.observe(at_ms(T * 1000), &past));
        assert!(!clock.adopt(at_ms(T * 1000), &past));
        assert_eq!(clock.offset_millis(), Some(0));
        // A server that really moved its clock 20 minutes is followed once most samples agree.
        for i in 0..3 {
            assert!(clock.observe(at_ms((T + i) * 1000), &date(T + i + 20 * 60)));
        }
        assert_eq!(clock.offset_millis(), Some(20 * 60 * 1000));
        // Within the bound of the estimate, a refusal is adopted at once.
        assert!(clock.adopt(at_ms(T * 1000), &date(T + 30 * 60)));
        assert_eq!(clock.offset_millis(), Some(30 * 60 * 1000));
    }

    fn refusal(code: &str, description: &str) -> Error {
        let body = serde_json::json!({ "error": code, "error_description": description });
        let response = http::Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap();
        request()
            .parse_response(&response, SystemTime::UNIX_EPOCH)
            .unwrap_err()
    }

    #[test]
    fn refusals_about_time_are_recognised_in_the_usual_wordings() {
        for (code, description) in [
            (
                "invalid_client",
                "jwt expired, now 1700000600, exp 1700000060",
            ),
            ("invalid_client", "jwt not active yet, now 1, nbf 2"),
            ("invalid_client", "jwt issued in the future, now 1, iat 2"),
            (
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range. Current time: 2026-12-02T03:00:00Z",
            ),
            (
                "invalid_client",
                "Client authentication with signed JWT failed: Token is not active",
            ),
            ("invalid_client", "Token was issued in the future"),
            (
                "invalid_dpop_proof",
                "the DPoP proof's iat is more than 60 s from the server's clock",
            ),
        ] {
            assert!(
                is_refusal_about_time(&refusal(code, description)),
                "{description}"
            );
        }
        for (code, description) in [
            ("invalid_client", "client authentication failed"),
            ("invalid_scope", "the scope expired is not allowed"),
            (
                "invalid_client",
                "AADSTS700027: Client assertion failed signature validation",
            ),
        ] {
            assert!(
                !is_refusal_about_time(&refusal(code, description)),
                "{description}"
            );
        }
    }

    /// A response stamped by a server whose clock is `offset_ms` ahead of the client's,
    /// `latency_ms` after an attempt sent at `sent_ms`: its `Date` truncates the server's time.
    fn stamped(sent_ms: u64, offset_ms: i64, latency_ms: u64) -> HeaderMap {
        let server_ms = (sent_ms + latency_ms).saturating_add_signed(offset_ms);
        date(server_ms / 1000)
    }

    proptest! {
        /// Law: whatever the window holds and whatever a refusal's `Date` says, one adoption
        /// moves the estimate by at most `MAX_ADOPTION` from what it was with the refusal
        /// observed.
        #[test]
        fn one_adoption_moves_the_estimate_at_most_the_bound(
            window in prop::collection::vec(-86_000i64..86_000, 0..6),
            refusal_s in -86_000i64..86_000,
        ) {
            let clock = ServerClock::new();
            let sent_ms = T * 1000;
            for offset_s in window {
                let _ = clock.observe(at_ms(sent_ms), &date((T).saturating_add_signed(offset_s)));
            }
            let refusal = date(T.saturating_add_signed(refusal_s));
            let _ = clock.observe(at_ms(sent_ms), &refusal);
            let before = clock.offset_millis().unwrap_or(0);
            let _ = clock.adopt(at_ms(sent_ms), &refusal);
            let after = clock.offset_millis().unwrap_or(0);
            let bound = ServerClock::MAX_ADOPTION.as_millis() as u64;
            prop_assert!(after.abs_diff(before) <= bound, "{before} → {after}");
        }

        /// Law: an expiry converted to the client's time is never later than the instant the
        /// server's clock reaches it, whatever the offset, the latencies and the truncation.
        #[test]
        fn never_moves_an_expiry_later_than_the_servers_view(
            offset_ms in -86_000_000i64..86_000_000,
            exchanges in prop::collection::vec((0u64..100_000, 0u64..3_000), 1..12),
            lifetime_ms in 0u64..100_000_000,
        ) {
            let clock = ServerClock::new();
            let mut sent_ms = T * 1000;
            for (gap, latency) in exchanges {
                sent_ms += gap;
                prop_assert!(clock.observe(at_ms(sent_ms), &stamped(sent_ms, offset_ms, latency)));
            }
            // The server's expiry, in whole seconds as a JWT's `exp` is.
            let exp_s = (sent_ms.saturating_add_signed(offset_ms) + lifetime_ms) / 1000;
            let server_exp = at(exp_s);
            // When the client's clock reads `t`, the server's reads `t + offset`.
            let true_local = shift(server_exp, -offset_ms);
            prop_assert!(clock.local_time(server_exp) <= true_local);
        }

        /// Law: one outlier (any `Date`, plausible or not) among at least two steady samples
        /// leaves the estimate within the steady samples' range: the true offset, less at most
        /// the truncated second and the latency.
        #[test]
        fn ignores_an_outlier_against_a_steady_estimate(
            offset_ms in -86_000_000i64..86_000_000,
            steady in prop::collection::vec(0u64..2_000, 2..8),
            outlier_s in -200_000i64..200_000,
            position in 0usize..8,
        ) {
            let clock = ServerClock::new();
            let mut sent_ms = T * 1000;
            let outlier = |sent_ms: u64| date((sent_ms / 1000).saturating_add_signed(outlier_s));
            for (i, latency) in steady.iter().enumerate() {
                if i == position {
                    let _ = clock.observe(at_ms(sent_ms), &outlier(sent_ms));
                }
                sent_ms += 1_000;
                prop_assert!(clock.observe(at_ms(sent_ms), &stamped(sent_ms, offset_ms, *latency)));
            }
            if position >= steady.len() {
                let _ = clock.observe(at_ms(sent_ms), &outlier(sent_ms));
            }
            let estimate = clock.offset_millis().unwrap();
            // A sample is within (offset − 1 s, offset + latency]; the latency is under 2 s.
            prop_assert!(estimate > offset_ms - 1_000, "{estimate} vs {offset_ms}");
            prop_assert!(estimate <= offset_ms + 2_000, "{estimate} vs {offset_ms}");
        }
    }
}
