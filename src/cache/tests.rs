use super::*;
use crate::error::TransportKind;
use crate::test_support::{at, client};

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// A simulated clock: instants and wall-clock times counted from one base.
struct Clock(Instant);

impl Clock {
    // Tests need some `Instant` to count from; only the differences from it matter.
    #[allow(clippy::disallowed_methods)]
    fn new() -> Self {
        Self(Instant::now())
    }

    fn at(&self, secs: f64) -> Instant {
        self.0 + Duration::from_secs_f64(secs)
    }

    fn wall(&self, now: Instant) -> SystemTime {
        at(1_700_000_000) + (now - self.0)
    }
}

/// [`client`]'s request for the scope `read`.
fn request() -> TokenRequest {
    client().token_request().scope("read").build().unwrap()
}

fn token_response(access_token: &str, expires_in: Option<u64>) -> http::Response<String> {
    let expires_in = expires_in.map_or(String::new(), |s| format!(r#","expires_in":{s}"#));
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"access_token":"{access_token}","token_type":"Bearer"{expires_in}}}"#
        ))
        .unwrap()
}

fn error_response(status: u16, retry_after: Option<&str>) -> http::Response<String> {
    let mut response = http::Response::builder().status(status);
    if let Some(retry_after) = retry_after {
        response = response.header("retry-after", retry_after);
    }
    if status == 401 {
        response
            .header("content-type", "application/json")
            .body(r#"{"error":"invalid_client"}"#.to_owned())
    } else {
        response.body("busy".to_owned())
    }
    .unwrap()
}

fn fetch(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> FetchTicket {
    match cache.poll(request, now) {
        Lookup::Fetch(ticket) => ticket,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

/// Asserts that the next poll asks for a fetch, and gives the ticket up.
fn assert_fetches(cache: &mut TokenCache, request: &TokenRequest, now: Instant) {
    let ticket = fetch(cache, request, now);
    cache.abandon(ticket);
}

fn ready(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> Arc<Token> {
    match cache.poll(request, now) {
        Lookup::Ready(token) => token,
        other => panic!("expected a token, got {other:?}"),
    }
}

fn refresh(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> FetchTicket {
    match cache.poll(request, now) {
        Lookup::Refresh { ticket, .. } => ticket,
        other => panic!("expected a refresh, got {other:?}"),
    }
}

fn backoff_until(cache: &mut TokenCache, request: &TokenRequest, now: Instant) -> Instant {
    match cache.poll(request, now) {
        Lookup::BackOff { until, .. } => until,
        other => panic!("expected a back-off, got {other:?}"),
    }
}

/// Fetches a token at `now` and delivers it at once, with the given jitter word.
fn cache_token(
    cache: &mut TokenCache,
    clock: &Clock,
    request: &TokenRequest,
    now: Instant,
    expires_in: Option<u64>,
    random: u64,
) -> Arc<Token> {
    let ticket = fetch(cache, request, now);
    let response = token_response("t", expires_in);
    cache
        .handle_response(ticket, &response, clock.wall(now), now, random)
        .unwrap()
}

fn secret(token: &Token) -> &str {
    token.access_token().secret()
}

#[test]
fn first_poll_fetches_others_wait_and_hits_share_the_token() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let ticket = fetch(&mut cache, &request, clock.at(0.0));
    assert_eq!(ticket.request(), &request);
    assert!(matches!(
        cache.poll(&request, clock.at(1.0)),
        Lookup::Pending { deadline } if deadline == clock.at(30.0)
    ));
    let response = token_response("abc", Some(3600));
    let now = clock.at(2.0);
    let token = cache
        .handle_response(ticket, &response, clock.wall(clock.at(0.0)), now, 0)
        .unwrap();
    assert_eq!(secret(&token), "abc");
    assert_eq!(token.sent_at(), clock.wall(clock.at(0.0)));
    for secs in [2.0, 100.0, 3000.0] {
        assert!(Arc::ptr_eq(
            &ready(&mut cache, &request, clock.at(secs)),
            &token
        ));
    }
}

#[test]
fn refresh_margin_is_the_smaller_of_60s_and_a_tenth_of_the_lifetime() {
    let clock = Clock::new();
    // (lifetime, margin): 10% of the lifetime up to 60 s. Random 0 adds no jitter.
    for (lifetime, margin) in [
        (3600, 60.0),
        (600, 60.0),
        (300, 30.0),
        (120, 12.0),
        (10, 1.0),
    ] {
        let mut cache = TokenCache::default();
        let request = request();
        let token = cache_token(
            &mut cache,
            &clock,
            &request,
            clock.at(0.0),
            Some(lifetime),
            0,
        );
        let refresh_at = lifetime as f64 - margin;
        let before = ready(&mut cache, &request, clock.at(refresh_at - 0.001));
        assert!(Arc::ptr_eq(&before, &token), "{lifetime}");
        match cache.poll(&request, clock.at(refresh_at)) {
            Lookup::Refresh { token: served, .. } => assert!(Arc::ptr_eq(&served, &token)),
            other => panic!("{lifetime}: expected a refresh, got {other:?}"),
        }
    }
}

#[test]
fn refresh_jitter_stays_between_one_and_one_and_a_half_margins() {
    let clock = Clock::new();
    let request = request();
    let mut seen = Vec::new();
    for random in [
        0,
        1,
        u64::MAX / 7,
        u64::MAX / 3,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut cache = TokenCache::default();
        cache_token(
            &mut cache,
            &clock,
            &request,
            clock.at(0.0),
            Some(3600),
            random,
        );
        let refresh_at = cache.poll_timeout(clock.at(1.0)).unwrap();
        assert!(refresh_at >= clock.at(3600.0 - 90.0), "{random}");
        assert!(refresh_at <= clock.at(3600.0 - 60.0), "{random}");
        seen.push(refresh_at);
    }
    assert_eq!(seen[0], clock.at(3540.0), "random 0 is no jitter");
    assert!(
        seen[6] < clock.at(3510.001),
        "the largest word is almost 1.5 margins"
    );
    let mid = seen[4] - clock.at(3525.0);
    assert!(mid < MS, "half the range for half the words");
    assert!(
        seen.windows(2).all(|pair| pair[0] >= pair[1]),
        "a larger word, an earlier refresh"
    );
    assert!(
        seen[3] < seen[2] && seen[2] < seen[0],
        "different words, different times"
    );
}

#[test]
fn a_token_without_expires_in_lives_five_minutes() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    cache_token(&mut cache, &clock, &request, clock.at(0.0), None, 0);
    ready(&mut cache, &request, clock.at(269.9));
    let ticket = refresh(&mut cache, &request, clock.at(270.0));
    cache.abandon(ticket);
    let ticket = refresh(&mut cache, &request, clock.at(299.9));
    assert!(
        matches!(
            cache.poll(&request, clock.at(300.0)),
            Lookup::Pending { .. }
        ),
        "expired at 300 s: not served"
    );
    cache.abandon(ticket);
    assert_fetches(&mut cache, &request, clock.at(300.0));

    let policy = CachePolicy::new().with_default_lifetime(Duration::from_secs(60));
    let mut cache = TokenCache::new(policy);
    cache_token(&mut cache, &clock, &request, clock.at(0.0), None, 0);
    assert_fetches(&mut cache, &request, clock.at(60.0));
}

#[test]
fn retryable_failures_back_off_exponentially_up_to_the_cap() {
    let clock = Clock::new();
    let request = request();
    for (random, smallest) in [(0, 1.0), (u64::MAX, 0.5)] {
        let mut cache = TokenCache::default();
        let mut now = clock.at(0.0);
        for expected in [1, 2, 4, 8, 16, 32, 60, 60, 60] {
            let expected = Duration::from_secs(expected);
            let ticket = fetch(&mut cache, &request, now);
            let error = cache
                .handle_response(
                    ticket,
                    &error_response(503, None),
                    clock.wall(now),
                    now,
                    random,
                )
                .unwrap_err();
            assert!(error.is_retryable());
            let until = backoff_until(&mut cache, &request, now);
            assert!(until - now <= expected, "{:?} > {expected:?}", until - now);
            assert!(
                until - now >= expected.mul_f64(smallest),
                "{:?}",
                until - now
            );
            backoff_until(&mut cache, &request, until - MS);
            now = until;
        }
        // A success resets the schedule.
        cache_token(&mut cache, &clock, &request, now, Some(3600), random);
        now += Duration::from_secs(3600);
        let ticket = fetch(&mut cache, &request, now);
        let _ = cache.handle_response(ticket, &error_response(500, None), clock.wall(now), now, 0);
        assert_eq!(backoff_until(&mut cache, &request, now) - now, SECOND);
    }
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let clock = Clock::new();
    let request = request();
    let now = clock.at(10.0);
    let sent_at = clock.wall(now);
    let date = httpdate::fmt_http_date(sent_at + Duration::from_secs(50));
    for (retry_after, expected) in [
        ("120", 120),
        ("86400", 300),
        (date.as_str(), 50),
        ("0", 1),
        ("soon", 1),
    ] {
        let mut cache = TokenCache::default();
        let ticket = fetch(&mut cache, &request, now);
        let response = error_response(429, Some(retry_after));
        let _ = cache.handle_response(ticket, &response, sent_at, now, 0);
        let until = backoff_until(&mut cache, &request, now);
        assert_eq!(until - now, Duration::from_secs(expected), "{retry_after}");
    }
    // Also on a failure reported without a response, where only a delay can be read.
    let policy = CachePolicy::new().with_retry_after_max(Duration::from_secs(20));
    let mut cache = TokenCache::new(policy);
    let ticket = fetch(&mut cache, &request, now);
    let response = error_response(503, Some("45"));
    let error = request.parse_response(&response, sent_at).unwrap_err();
    let _ = cache.handle_failure(ticket, error, now, 0);
    assert_eq!(
        backoff_until(&mut cache, &request, now) - now,
        Duration::from_secs(20)
    );
}

#[test]
fn non_retryable_failures_back_off_flat_and_keep_the_error() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let mut now = clock.at(0.0);
    for _ in 0..4 {
        let ticket = fetch(&mut cache, &request, now);
        let error = cache
            .handle_response(ticket, &error_response(401, None), clock.wall(now), now, 0)
            .unwrap_err();
        assert!(!error.is_retryable());
        match cache.poll(&request, now + SECOND) {
            Lookup::BackOff { until, error: kept } => {
                assert_eq!(until - now, Duration::from_secs(10), "flat, not growing");
                assert!(Arc::ptr_eq(&kept, &error), "waiters get the same error");
            }
            other => panic!("{other:?}"),
        }
        now += Duration::from_secs(10);
    }
    let ticket = fetch(&mut cache, &request, now);
    let _ = cache.handle_response(
        ticket,
        &error_response(401, None),
        clock.wall(now),
        now,
        u64::MAX,
    );
    let jittered = backoff_until(&mut cache, &request, now) - now;
    assert!(jittered >= Duration::from_secs(5) && jittered < Duration::from_secs(10));
}

#[test]
fn transport_failures_back_off_by_their_retryability() {
    let clock = Clock::new();
    let request = request();
    for (kind, expected) in [(TransportKind::Connect, 1), (TransportKind::Tls, 10)] {
        let mut cache = TokenCache::default();
        let now = clock.at(0.0);
        let ticket = fetch(&mut cache, &request, now);
        let error = Error::Transport {
            kind,
            source: "refused".into(),
        };
        let kept = cache.handle_failure(ticket, error, now, 0);
        assert!(matches!(&*kept, Error::Transport { kind: k, .. } if *k == kind));
        let until = backoff_until(&mut cache, &request, now);
        assert_eq!(until - now, Duration::from_secs(expected));
        assert_fetches(&mut cache, &request, until);
    }
}

#[test]
fn a_valid_token_is_served_while_refreshes_fail_and_never_after_expiry() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(120), 0);
    let mut now = clock.at(108.0);
    let mut refreshes = 0;
    while now < clock.at(120.0) {
        match cache.poll(&request, now) {
            Lookup::Ready(served) => assert!(Arc::ptr_eq(&served, &token)),
            Lookup::Refresh {
                token: served,
                ticket,
            } => {
                assert!(Arc::ptr_eq(&served, &token));
                refreshes += 1;
                let response = error_response(503, None);
                let _ = cache.handle_response(ticket, &response, clock.wall(now), now, 0);
            }
            other => panic!("a valid token must be served, got {other:?}"),
        }
        now += Duration::from_millis(250);
    }
    assert_eq!(refreshes, 4, "at 108, 109, 111 and 115 s");
    for secs in [120.0, 121.0, 130.0] {
        assert!(
            cache.poll(&request, clock.at(secs)).token().is_none(),
            "{secs}"
        );
        assert!(cache.peek(&request, clock.at(secs)).is_none(), "{secs}");
    }
}

#[test]
fn invalidate_drops_only_the_rejected_token() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let old = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
    assert!(cache.invalidate(&request, &old));
    let ticket = fetch(&mut cache, &request, clock.at(1.0));
    let response = token_response("new", Some(3600));
    let now = clock.at(2.0);
    let new = cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    // Another task that got a 401 with the old token does not drop the new one.
    assert!(!cache.invalidate(&request, &old));
    assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &new));
    assert!(!cache.invalidate(&client().token_request().build().unwrap(), &new));
}

#[test]
fn force_refresh_refreshes_but_keeps_serving() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    assert!(!cache.force_refresh(&request));
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
    assert!(cache.force_refresh(&request));
    let now = clock.at(5.0);
    let ticket = match cache.poll(&request, now) {
        Lookup::Refresh {
            token: served,
            ticket,
        } => {
            assert!(Arc::ptr_eq(&served, &token));
            ticket
        }
        other => panic!("{other:?}"),
    };
    assert!(
        Arc::ptr_eq(&ready(&mut cache, &request, now), &token),
        "one refresh at a time"
    );
    let _ = cache.handle_response(ticket, &error_response(503, None), clock.wall(now), now, 0);
    // A forced refresh does not cut a back-off short.
    assert!(cache.force_refresh(&request));
    ready(&mut cache, &request, now + Duration::from_millis(999));
    let ticket = refresh(&mut cache, &request, now + SECOND);
    let response = token_response("fresh", Some(3600));
    let fresh = cache.handle_response(ticket, &response, clock.wall(now), now + SECOND, 0);
    assert_eq!(secret(&fresh.unwrap()), "fresh");
    assert_eq!(secret(&ready(&mut cache, &request, now + SECOND)), "fresh");
}

#[test]
fn requests_that_differ_never_share_a_token() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let requests = crate::request::requests_differing_in_each_key_field();
    let now = clock.at(0.0);
    for (i, request) in requests.iter().enumerate() {
        let ticket = fetch(&mut cache, request, now);
        let response = token_response(&format!("token-{i}"), Some(3600));
        cache
            .handle_response(ticket, &response, clock.wall(now), now, 0)
            .unwrap();
    }
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(
            secret(&ready(&mut cache, request, now)),
            format!("token-{i}")
        );
    }
    // The same request, with its scopes in another order, is the same key.
    let same = client()
        .token_request()
        .scope("b a")
        .audience("x")
        .build()
        .unwrap();
    assert_eq!(secret(&ready(&mut cache, &same, now)), "token-0");
}

#[test]
fn an_abandoned_ticket_frees_the_request_and_its_late_answer_changes_nothing() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let now = clock.at(0.0);
    let first = fetch(&mut cache, &request, now);
    let first_again = FetchTicket {
        request: request.clone(),
        id: first.id(),
        deadline: first.deadline(),
    };
    cache.abandon(first);
    let second = fetch(&mut cache, &request, now);
    assert_ne!(second.id(), first_again.id());
    // The abandoned fetch's response still reaches its caller, but the cache waits for
    // the current one.
    let late = token_response("late", Some(3600));
    let late = cache
        .handle_response(first_again, &late, clock.wall(now), now, 0)
        .unwrap();
    assert_eq!(secret(&late), "late");
    assert!(matches!(cache.poll(&request, now), Lookup::Pending { .. }));
    let response = token_response("current", Some(3600));
    cache
        .handle_response(second, &response, clock.wall(now), now, 0)
        .unwrap();
    assert_eq!(secret(&ready(&mut cache, &request, now)), "current");
}

#[test]
fn a_fetch_unanswered_past_its_timeout_is_a_failure_every_waiter_gets_at_once() {
    let clock = Clock::new();
    let policy = CachePolicy::new().with_fetch_timeout(Duration::from_millis(1500));
    let mut cache = TokenCache::new(policy).with_seed(7);
    let request = request();
    let slow = fetch(&mut cache, &request, clock.at(0.0));
    assert_eq!(slow.deadline(), clock.at(1.5));
    assert!(matches!(
        cache.poll(&request, clock.at(1.4)),
        Lookup::Pending { deadline } if deadline == clock.at(1.5)
    ));
    // At the deadline the waiters get the timeout, not a ticket of their own.
    let (until, error) = match cache.poll(&request, clock.at(1.5)) {
        Lookup::BackOff { until, error } => (until, error),
        other => panic!("a timed-out fetch must back off, not {other:?}"),
    };
    assert!(
        matches!(*error, Error::FetchTimedOut { timeout } if timeout == Duration::from_millis(1500))
    );
    assert!(error.is_retryable());
    // The first retryable back-off, from the deadline: 0.5 to 1 s.
    assert!(
        until > clock.at(2.0) && until <= clock.at(2.5),
        "{:?}",
        until - clock.at(0.0)
    );
    // The fetcher, giving up at the deadline, gets the very same failure, counted once.
    let timeout = Error::FetchTimedOut {
        timeout: Duration::from_millis(1500),
    };
    let same = cache.handle_failure(slow, timeout, clock.at(1.5), 0);
    assert!(Arc::ptr_eq(&same, &error));
    assert_eq!(backoff_until(&mut cache, &request, clock.at(1.6)), until);
    // Then one fetch; its timeout is the second failure in a row: 1 to 2 s.
    let second = fetch(&mut cache, &request, until);
    let (again, _) = match cache.poll(&request, second.deadline()) {
        Lookup::BackOff { until, error } => (until, error),
        other => panic!("{other:?}"),
    };
    let from = second.deadline();
    assert!(again > from + Duration::from_secs(1) && again <= from + Duration::from_secs(2));
    // A late failure of a timed-out fetch replaces the error without counting again, and
    // never shortens the back-off.
    let late = cache.handle_failure(second, Error::BodyTooLarge { limit: 1 }, from, 0);
    assert!(matches!(*late, Error::BodyTooLarge { .. }));
    match cache.poll(&request, from) {
        Lookup::BackOff { until, error } => {
            assert!(Arc::ptr_eq(&error, &late));
            assert!(until >= again);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fetchers_report_of_its_timeout_after_the_back_off_changes_nothing() {
    let clock = Clock::new();
    let policy = CachePolicy::new().with_fetch_timeout(Duration::from_secs(2));
    let mut cache = TokenCache::new(policy);
    let request = request();
    let slow = fetch(&mut cache, &request, clock.at(0.0));
    let until = backoff_until(&mut cache, &request, clock.at(2.0));
    // A fetcher busy elsewhere reports long after the back-off: one timeout backs off once.
    let now = clock.at(10.0);
    assert!(now > until);
    let timeout = Error::FetchTimedOut {
        timeout: Duration::from_secs(2),
    };
    let error = cache.handle_failure(slow, timeout, now, 0);
    assert!(matches!(*error, Error::FetchTimedOut { .. }));
    assert_fetches(&mut cache, &request, now);
}

#[test]
fn a_timeout_no_poll_saw_is_counted_when_its_answer_comes_and_peek_foresees_it() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(600), 0);
    let slow = refresh(&mut cache, &request, clock.at(540.0));
    // Past the deadline, before any poll: peek serves the token as poll will (backing off).
    let now = clock.at(570.2);
    let peeked = cache
        .peek(&request, now)
        .expect("served while the refresh backs off");
    let (until, timeout) = match cache.poll_timeout(now) {
        Some(until) => (until, until - clock.at(570.0)),
        None => panic!("the back-off ends"),
    };
    assert!(timeout > Duration::from_millis(500) && timeout <= Duration::from_secs(1));
    assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &peeked));
    // Its late answer, a failure that is not retryable: counted once, for its longer back-off.
    let error = cache.handle_failure(slow, Error::BodyTooLarge { limit: 1 }, now, 0);
    assert!(matches!(*error, Error::BodyTooLarge { .. }));
    let later = cache.poll_timeout(now).expect("the back-off ends");
    assert!(later >= now + Duration::from_secs(5) && later > until);
    assert!(
        cache.poll_refresh(until).is_none(),
        "backing off until {later:?}"
    );
    assert!(
        cache.poll_refresh(later).is_some(),
        "due again after the back-off"
    );
}

#[test]
fn a_late_answer_counts_unless_another_fetch_started() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(600), 0);
    let slow = refresh(&mut cache, &request, clock.at(540.0));
    assert!(cache.poll_refresh(clock.at(569.0)).is_none());
    assert!(
        cache.peek(&request, clock.at(570.0)).is_some(),
        "timed out: backs off, and serves the valid token meanwhile"
    );
    let now = clock.at(575.0);
    let response = token_response("late", Some(600));
    cache
        .handle_response(slow, &response, clock.wall(now), now, 0)
        .unwrap();
    let late = ready(&mut cache, &request, now);
    assert!(!Arc::ptr_eq(&late, &token));
    assert_eq!(secret(&late), "late");
}

#[test]
fn poll_timeout_and_poll_refresh_drive_a_background_refresher() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let other = client().token_request().build().unwrap();
    assert_eq!(cache.poll_timeout(clock.at(0.0)), None);
    assert!(cache.poll_refresh(clock.at(0.0)).is_none());
    let ticket = fetch(&mut cache, &request, clock.at(0.0));
    assert_eq!(
        cache.poll_timeout(clock.at(0.0)),
        Some(clock.at(30.0)),
        "the deadline"
    );
    let now = clock.at(1.0);
    let response = token_response("t", Some(600));
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    assert_eq!(
        cache.poll_timeout(now),
        Some(clock.at(540.0)),
        "the refresh"
    );
    let ticket = fetch(&mut cache, &other, now);
    let _ = cache.handle_response(ticket, &error_response(503, None), clock.wall(now), now, 0);
    assert_eq!(cache.poll_timeout(now), Some(clock.at(2.0)), "the back-off");
    assert!(cache.poll_refresh(clock.at(539.0)).is_none());
    let due = clock.at(540.0);
    assert_eq!(cache.poll_timeout(due), Some(due), "due now");
    let ticket = cache.poll_refresh(due).unwrap();
    assert_eq!(ticket.request(), &request);
    assert!(cache.poll_refresh(due).is_none(), "one fetch at a time");
    assert_eq!(
        cache.poll_timeout(due),
        Some(clock.at(570.0)),
        "the fetch's deadline"
    );
    ready(&mut cache, &request, due);
    let response = token_response("t2", Some(600));
    cache
        .handle_response(ticket, &response, clock.wall(due), due, 0)
        .unwrap();
    assert_eq!(cache.poll_timeout(due), Some(clock.at(1080.0)));
    assert!(cache.remove(&request));
    assert!(!cache.remove(&request));
    assert_eq!(
        cache.poll_timeout(due),
        None,
        "the other key's back-off is over"
    );
}

#[test]
fn peek_answers_exactly_when_poll_would_be_ready() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    assert!(cache.peek(&request, clock.at(0.0)).is_none());
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(120), 0);
    assert!(Arc::ptr_eq(
        &cache.peek(&request, clock.at(107.9)).unwrap(),
        &token
    ));
    assert!(
        cache.peek(&request, clock.at(108.0)).is_none(),
        "a refresh is due"
    );
    let ticket = refresh(&mut cache, &request, clock.at(108.0));
    assert!(
        cache.peek(&request, clock.at(108.0)).is_some(),
        "refresh under way"
    );
    assert!(cache.peek(&request, clock.at(119.9)).is_some());
    assert!(cache.peek(&request, clock.at(120.0)).is_none(), "expired");
    cache.abandon(ticket);
}

#[test]
fn peek_until_holds_its_answer_until_the_next_event() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    assert!(cache.peek_until(&request, clock.at(0.0)).is_none());
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(120), 0);
    let (peeked, until) = cache.peek_until(&request, clock.at(1.0)).unwrap();
    assert!(Arc::ptr_eq(&peeked, &token));
    assert_eq!(until, clock.at(108.0), "the refresh falls due");
    assert!(cache.peek(&request, until - MS).is_some());
    assert!(cache.peek(&request, until).is_none());
    assert!(cache.peek_until(&request, until).is_none());

    let ticket = refresh(&mut cache, &request, until);
    let (_, busy_until) = cache.peek_until(&request, until).unwrap();
    assert_eq!(
        busy_until,
        clock.at(120.0),
        "the token expires before the deadline"
    );
    let _ = cache.handle_response(
        ticket,
        &error_response(503, Some("5")),
        clock.wall(until),
        until,
        0,
    );
    let (_, backoff_until) = cache.peek_until(&request, until).unwrap();
    assert_eq!(backoff_until, clock.at(113.0), "the back-off ends");
    assert!(cache.peek(&request, backoff_until - MS).is_some());
}

#[test]
fn a_token_expired_on_arrival_is_returned_but_not_cached() {
    let clock = Clock::new();
    // Without a back-off (see the next test), the next poll shows that nothing was cached.
    let mut cache = TokenCache::new(CachePolicy::new().with_backoff_initial(Duration::ZERO));
    let request = request();
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(0), 0);
    assert_eq!(secret(&token), "t");
    assert_fetches(&mut cache, &request, clock.at(0.0));
}

#[test]
fn a_token_due_on_arrival_counts_as_a_failure_for_back_off() {
    let clock = Clock::new();
    let mut cache = TokenCache::new(CachePolicy::new().with_backoff_jitter(0.0));
    let request = request();
    // Expired on arrival: its caller gets it, and the next fetch waits 1 s, then 2 s.
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(0), 0);
    assert_eq!(secret(&token), "t");
    match cache.poll(&request, clock.at(0.5)) {
        Lookup::BackOff { until, error } => {
            assert_eq!(until, clock.at(1.0));
            assert!(matches!(*error, Error::TokenDueOnArrival { lifetime } if lifetime.is_zero()));
            assert!(error.is_retryable());
        }
        other => panic!("expected a back-off, got {other:?}"),
    }
    let _ = cache_token(&mut cache, &clock, &request, clock.at(1.0), Some(0), 0);
    assert_eq!(
        backoff_until(&mut cache, &request, clock.at(1.0)),
        clock.at(3.0)
    );

    // Valid but due at once (a 10-second lifetime, all of it the refresh lead): served, and
    // its refresh waits for the back-off of a first failure, 1 s.
    let mut cache = TokenCache::new(
        CachePolicy::new()
            .with_refresh_fraction(1.0)
            .with_refresh_jitter(0.0)
            .with_backoff_jitter(0.0),
    );
    let now = clock.at(0.0);
    let token = cache_token(&mut cache, &clock, &request, now, Some(10), 0);
    assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
    assert!(Arc::ptr_eq(
        &ready(&mut cache, &request, clock.at(0.9)),
        &token
    ));
    assert_eq!(
        cache.peek_until(&request, now).map(|(_, until)| until),
        Some(clock.at(1.0)),
        "the back-off ends"
    );
    let ticket = refresh(&mut cache, &request, clock.at(1.0));
    let response = token_response("long", Some(3600));
    let now = clock.at(1.0);
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    // A token not due on arrival ends the run of failures.
    assert_eq!(secret(&ready(&mut cache, &request, clock.at(2.0))), "long");
}

#[test]
fn invalidating_a_young_token_drops_it_at_its_minimum_age() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    assert_eq!(cache.policy().invalidate_min_age(), SECOND);
    let request = request();
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
    // Rejected 300 times within its first second: still one token, and one fetch after.
    for i in 0..300 {
        let now = clock.at(f64::from(i) / 400.0);
        let served = ready(&mut cache, &request, now);
        assert!(Arc::ptr_eq(&served, &token));
        assert_eq!(cache.invalidate(&request, &served), i == 0, "refused once");
    }
    assert!(cache.peek(&request, clock.at(0.999)).is_some());
    assert_eq!(
        cache
            .peek_until(&request, clock.at(0.5))
            .map(|(_, until)| until),
        Some(clock.at(1.0))
    );
    let ticket = fetch(&mut cache, &request, clock.at(1.0));
    let now = clock.at(1.5);
    let response = token_response("next", Some(3600));
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    // A token older than the minimum age is dropped at once.
    let next = ready(&mut cache, &request, clock.at(5.0));
    assert!(cache.invalidate(&request, &next));
    assert!(cache.peek(&request, clock.at(5.0)).is_none());
    assert!(!cache.invalidate(&request, &token), "not the cached token");
    assert_fetches(&mut cache, &request, clock.at(5.0));

    // With no minimum, an invalidated token is dropped at once, whatever its age.
    let mut cache = TokenCache::new(CachePolicy::new().with_invalidate_min_age(Duration::ZERO));
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
    assert!(cache.invalidate(&request, &token));
    assert!(!cache.invalidate(&request, &token), "refused already");
    assert_fetches(&mut cache, &request, clock.at(0.0));
}

#[test]
fn refusals_in_a_row_double_the_minimum_age_until_a_call_is_accepted() {
    let clock = Clock::new();
    let mut cache =
        TokenCache::new(CachePolicy::new().with_invalidate_max_age(Duration::from_secs(5)));
    let request = request();
    // An API that refuses every token: each new one is refused as soon as it is served.
    let mut fetched_at = Vec::new();
    let mut now = clock.at(0.0);
    let mut name = 0;
    while now < clock.at(30.0) {
        match cache.poll(&request, now) {
            Lookup::Fetch(ticket) => {
                fetched_at.push(now - clock.at(0.0));
                name += 1;
                let response = token_response(&format!("t{name}"), Some(3600));
                let token = cache
                    .handle_response(ticket, &response, clock.wall(now), now, 0)
                    .unwrap();
                assert!(cache.invalidate(&request, &token));
            }
            // Refused already, its refusal deferred to its minimum age.
            Lookup::Ready(token) => assert!(!cache.invalidate(&request, &token)),
            other => panic!("{other:?}"),
        }
        now += Duration::from_millis(100);
    }
    let secs: Vec<u64> = fetched_at.iter().map(|d| d.as_secs()).collect();
    // 1, 2, 4, then 5 s (the maximum) apart: 8 fetches in 30 s, not 30.
    assert_eq!(secs, [0, 1, 3, 7, 12, 17, 22, 27], "{fetched_at:?}");
    // The API accepts the current token: the next refusal is the first again (1 s).
    let current = ready(&mut cache, &request, now);
    assert!(cache.accepted(&request, &current));
    assert!(
        !cache.accepted(&request, &current),
        "nothing left to forget"
    );
    // Its replacement, refused too, is refused at its first minimum age again: 1 s.
    let at = now + Duration::from_secs(5);
    let ticket = fetch(&mut cache, &request, at);
    let response = token_response("after", Some(3600));
    let after = cache
        .handle_response(ticket, &response, clock.wall(at), at, 0)
        .unwrap();
    assert!(cache.invalidate(&request, &after));
    let almost = at + Duration::from_millis(999);
    assert!(Arc::ptr_eq(&ready(&mut cache, &request, almost), &after));
    assert_fetches(&mut cache, &request, at + Duration::from_secs(1));
}

#[test]
fn a_refused_token_is_served_to_others_while_its_replacement_fails() {
    let clock = Clock::new();
    let mut cache = TokenCache::new(CachePolicy::new().with_backoff_jitter(0.0));
    let request = request();
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(3600), 0);
    let now = clock.at(10.0);
    assert!(cache.invalidate(&request, &token));
    assert!(
        cache.peek(&request, now).is_none(),
        "refused: wait for the new one"
    );
    let ticket = fetch(&mut cache, &request, now);
    assert!(matches!(cache.poll(&request, now), Lookup::Pending { .. }));
    assert!(matches!(
        cache.poll_replacing(&request, &token, now),
        Lookup::Pending { .. }
    ));
    let error = cache
        .handle_response(ticket, &error_response(503, None), clock.wall(now), now, 0)
        .unwrap_err();
    // Other APIs still get the refused token, until the back-off is over (or it expires).
    assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
    assert!(
        cache
            .peek(&request, now)
            .is_some_and(|t| Arc::ptr_eq(&t, &token))
    );
    // The API that refused it gets the failure.
    match cache.poll_replacing(&request, &token, now) {
        Lookup::BackOff {
            until,
            error: shown,
        } => {
            assert!(Arc::ptr_eq(&shown, &error));
            assert_eq!(until, clock.at(11.0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.poll_timeout(now), Some(clock.at(11.0)));
    // After the back-off, a new fetch; its token goes to everyone.
    let ticket = fetch(&mut cache, &request, clock.at(11.0));
    let response = token_response("new", Some(3600));
    let now = clock.at(11.5);
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    let new = ready(&mut cache, &request, now);
    assert_eq!(secret(&new), "new");
    assert!(matches!(
        cache.poll_replacing(&request, &token, now),
        Lookup::Ready(t) if Arc::ptr_eq(&t, &new)
    ));
    // Past its expiry a refused token is never served.
    let mut cache =
        TokenCache::new(CachePolicy::new().with_backoff_initial(Duration::from_secs(60)));
    let token = cache_token(&mut cache, &clock, &request, clock.at(0.0), Some(100), 0);
    assert!(cache.invalidate(&request, &token));
    let ticket = fetch(&mut cache, &request, clock.at(85.0));
    let refused = Error::Transport {
        kind: TransportKind::Connect,
        source: "connection refused".into(),
    };
    let _ = cache.handle_failure(ticket, refused, clock.at(85.0), 0);
    assert!(Arc::ptr_eq(
        &ready(&mut cache, &request, clock.at(99.0)),
        &token
    ));
    assert!(matches!(
        cache.poll(&request, clock.at(100.0)),
        Lookup::BackOff { .. }
    ));
}

/// A request unlike any other: a scope of its own.
fn tenant(i: usize) -> TokenRequest {
    client()
        .token_request()
        .scope(format!("tenant-{i}"))
        .build()
        .unwrap()
}

#[test]
fn memory_stays_flat_over_100_000_distinct_requests() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    assert_eq!(cache.policy().capacity(), 1024);
    // One request has a fetch in flight throughout: its ticket must still count.
    let waiting = request();
    let ticket = fetch(&mut cache, &waiting, clock.at(0.0));
    for i in 0..100_000 {
        let now = clock.at(i as f64 / 100_000.0);
        let request = tenant(i);
        let _ = cache_token(&mut cache, &clock, &request, now, Some(3600), 0);
        assert!(cache.len() <= 1024, "{} requests after {i}", cache.len());
        // The table grows once, to make room for the slots that removals leave behind,
        // then reuses them.
        assert!(
            cache.entries.capacity() <= 4 * 1024,
            "the table grew after {i}"
        );
    }
    assert_eq!(cache.len(), 1024);
    assert!(cache.contains(&waiting));
    let now = clock.at(1.0);
    let response = token_response("kept", Some(3600));
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    assert_eq!(secret(&ready(&mut cache, &waiting, now)), "kept");
}

#[test]
fn a_full_cache_forgets_idle_requests_first_then_the_least_recently_used() {
    let clock = Clock::new();
    let mut cache = TokenCache::new(CachePolicy::new().with_capacity(3));
    let [a, b, c, d, e, f] = [0, 1, 2, 3, 4, 5].map(tenant);
    let now = clock.at(0.0);
    let _ = cache_token(&mut cache, &clock, &a, now, Some(3600), 0);
    let _ = cache_token(&mut cache, &clock, &b, now, Some(10), 0);
    let in_flight = fetch(&mut cache, &c, now);
    // `b` expired, though polled after `a`: it goes first.
    let now = clock.at(20.0);
    let d_ticket = fetch(&mut cache, &d, now);
    assert!(!cache.contains(&b));
    assert_eq!(cache.len(), 3);
    // Then the least recently used, never one with a fetch in flight.
    let e_ticket = fetch(&mut cache, &e, now);
    assert!(!cache.contains(&a));
    assert!(cache.contains(&c) && cache.contains(&d) && cache.contains(&e));
    // All in flight: the new request joins them.
    let f_ticket = fetch(&mut cache, &f, now);
    assert_eq!(cache.len(), 4);
    let response = token_response("c", Some(3600));
    cache
        .handle_response(in_flight, &response, clock.wall(now), now, 0)
        .unwrap();
    assert_eq!(secret(&ready(&mut cache, &c, now)), "c");
    for ticket in [d_ticket, e_ticket, f_ticket] {
        cache.abandon(ticket);
    }
    assert_eq!(CachePolicy::new().with_capacity(0).capacity(), 1);
}

#[test]
fn a_removed_requests_ticket_changes_nothing() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let now = clock.at(0.0);
    let ticket = fetch(&mut cache, &request, now);
    assert!(cache.remove(&request));
    let response = token_response("t", Some(60));
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    assert_fetches(&mut cache, &request, now);
}

#[test]
fn extreme_policies_and_lifetimes_do_not_panic() {
    let clock = Clock::new();
    let request = request();
    let policy = CachePolicy::new()
        .with_refresh_margin(Duration::MAX)
        .with_refresh_fraction(f64::NAN)
        .with_refresh_jitter(7.0)
        .with_default_lifetime(Duration::MAX)
        .with_backoff_initial(Duration::MAX)
        .with_backoff_max(Duration::MAX)
        .with_backoff_jitter(-1.0)
        .with_non_retryable_backoff(Duration::MAX)
        .with_retry_after_max(Duration::MAX)
        .with_fetch_timeout(Duration::MAX)
        // Each token is invalidated at once, so that the next is fetched.
        .with_invalidate_min_age(Duration::ZERO);
    assert_eq!(policy.refresh_fraction(), 0.0);
    assert_eq!(policy.refresh_jitter(), 1.0);
    assert_eq!(policy.backoff_jitter(), 0.0);
    let mut cache = TokenCache::new(policy);
    let now = clock.at(0.0);
    let mut last = None;
    for expires_in in [None, Some(u64::MAX)] {
        let token = cache_token(&mut cache, &clock, &request, now, expires_in, u64::MAX);
        assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
        assert!(cache.invalidate(&request, &token));
        last = Some(token);
    }
    let last = last.unwrap();
    let ticket = fetch(&mut cache, &request, now);
    let response = error_response(503, Some("99999999999999999"));
    let _ = cache.handle_response(ticket, &response, clock.wall(now), now, u64::MAX);
    match cache.poll_replacing(&request, &last, now) {
        Lookup::BackOff { until, .. } => assert!(until > now),
        other => panic!("{other:?}"),
    }
    let _ = cache.poll_timeout(now);
}

#[test]
fn handle_result_takes_a_parsed_token_or_failure() {
    let clock = Clock::new();
    let mut cache = TokenCache::new(CachePolicy::new().with_backoff_jitter(0.0));
    let request = request();
    let now = clock.at(0.0);
    let ticket = fetch(&mut cache, &request, now);
    let parsed = request.parse_response(&token_response("parsed", Some(600)), clock.wall(now));
    let token = cache
        .handle_result(ticket, parsed, clock.wall(now), now, 0)
        .unwrap();
    assert!(Arc::ptr_eq(&ready(&mut cache, &request, now), &token));
    assert!(cache.peek(&request, clock.at(539.9)).is_some());
    assert!(
        cache.peek(&request, clock.at(540.0)).is_none(),
        "refresh due"
    );

    // A failure's `Retry-After` date counts from `sent_at`.
    let other = client().token_request().build().unwrap();
    let ticket = fetch(&mut cache, &other, now);
    let date = httpdate::fmt_http_date(clock.wall(now) + 30 * SECOND);
    let parsed = other.parse_response(&error_response(503, Some(&date)), clock.wall(now));
    let error = cache
        .handle_result(ticket, parsed, clock.wall(now), now, 0)
        .unwrap_err();
    assert_eq!(error.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(backoff_until(&mut cache, &other, now), clock.at(30.0));

    // A ticket no longer current passes its outcome through and changes nothing.
    let stale = refresh(&mut cache, &request, clock.at(540.0));
    let stale_again = FetchTicket {
        request: request.clone(),
        id: stale.id(),
        deadline: stale.deadline(),
    };
    cache.abandon(stale);
    let late = Err(Error::BodyTooLarge { limit: 1 });
    let late = cache.handle_result(stale_again, late, clock.wall(now), clock.at(541.0), 0);
    assert!(matches!(*late.unwrap_err(), Error::BodyTooLarge { .. }));
    let ticket = refresh(&mut cache, &request, clock.at(541.0));
    assert!(Arc::ptr_eq(
        &ready(&mut cache, &request, clock.at(541.0)),
        &token
    ));
    cache.abandon(ticket);
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<TokenCache>();
    send_sync::<Lookup>();
    send_sync::<FetchTicket>();
    send_sync::<CachePolicy>();
}

#[test]
fn debug_never_shows_the_token() {
    let clock = Clock::new();
    let mut cache = TokenCache::default();
    let request = request();
    let ticket = fetch(&mut cache, &request, clock.at(0.0));
    let ticket_text = format!("{ticket:?}");
    let response = token_response("hunter2", Some(60));
    let now = clock.at(0.0);
    cache
        .handle_response(ticket, &response, clock.wall(now), now, 0)
        .unwrap();
    let lookup = cache.poll(&request, now);
    for text in [format!("{lookup:?}"), format!("{cache:?}"), ticket_text] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}

#[test]
fn a_token_sent_after_its_ticket_began_is_aged_from_its_own_sent_at() {
    // A fleet's waiter: its ticket's fetch began at 0, and the token it gets (fetched by the
    // lease holder, or read from the store) was sent at 20. It lives 600 s from 20, so it
    // falls due at 560, not 540, and expires at 620, not 600.
    let clock = Clock::new();
    let mut cache = TokenCache::new(CachePolicy::new().with_refresh_jitter(0.0));
    let request = request();
    let ticket = fetch(&mut cache, &request, clock.at(0.0));
    let arrived = clock.at(20.0);
    let parsed = request.parse_response(&token_response("waited", Some(600)), clock.wall(arrived));
    let token = cache
        .handle_result(ticket, parsed, clock.wall(clock.at(0.0)), arrived, 0)
        .unwrap();
    assert!(
        cache.peek(&request, clock.at(559.9)).is_some(),
        "not due at 540"
    );
    assert!(
        cache.peek(&request, clock.at(560.0)).is_none(),
        "due at 560"
    );
    match cache.poll(&request, clock.at(619.9)) {
        Lookup::Refresh { token: served, .. } => assert!(Arc::ptr_eq(&served, &token)),
        other => panic!("still valid at 619.9, got {other:?}"),
    }
    assert!(
        matches!(
            cache.poll(&request, clock.at(620.0)),
            Lookup::Fetch(_) | Lookup::Pending { .. }
        ),
        "expired at 620"
    );
}
