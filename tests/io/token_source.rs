//! The shared token sources (reqwest, hyper, and the blocking reqwest one) against the embedded
//! token server, over 127.0.0.1: single-flight, refresh and expiry, failure and recovery, a
//! cancelled caller, and invalidation after a 401.
//!
//! No test waits for a token's lifetime but one, which waits out a 1-second lifetime; the
//! others make refreshes due at once or back-offs short by [`CachePolicy`]. Where a test waits
//! for a background refresh, it polls for it, boundedly.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use client_credentials::{CachePolicy, Error, Token, TokenRequest};
use client_credentials_test_server::{Fault, TestServer, TestServerBuilder};
use http::StatusCode;
use http::header::AUTHORIZATION;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// How many callers ask at once in the single-flight tests.
const CALLERS: usize = 200;

/// How many times a bounded wait polls (every millisecond or so) before it gives up.
const POLLS: usize = 5_000;

/// Every token is due for refresh as soon as it arrives, and its refresh may start at once:
/// without a back-off, a token due on arrival does not delay the next fetch.
fn refresh_at_once() -> CachePolicy {
    CachePolicy::new()
        .with_refresh_fraction(1.0)
        .with_refresh_margin(Duration::MAX)
        .with_refresh_jitter(0.0)
        .with_backoff_initial(Duration::ZERO)
}

/// Invalidated tokens are dropped at once, however young.
fn invalidate_at_once() -> CachePolicy {
    CachePolicy::new().with_invalidate_min_age(Duration::ZERO)
}

/// A back-off of exactly `backoff` after every failure.
fn short_backoff(backoff: Duration) -> CachePolicy {
    CachePolicy::new()
        .with_backoff_initial(backoff)
        .with_backoff_max(backoff)
        .with_backoff_jitter(0.0)
}

fn request(server: &TestServer) -> TokenRequest {
    server
        .demo_credentials()
        .token_request()
        .scope("read")
        .build()
        .expect("a valid request")
}

/// The one async source, as each async adapter builds it.
#[derive(Clone, Debug)]
enum Source {
    Reqwest(client_credentials::TokenSource),
    Hyper(client_credentials::TokenSource),
}

/// The async adapters.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Reqwest,
    Hyper,
}

const KINDS: [Kind; 2] = [Kind::Reqwest, Kind::Hyper];

impl Source {
    /// A server built by `server`, and a source of `kind` for its demo client by `policy`.
    fn start(kind: Kind, server: TestServerBuilder, policy: CachePolicy) -> (TestServer, Self) {
        let server = server.start();
        let request = request(&server);
        let source = match kind {
            Kind::Reqwest => Self::Reqwest(
                client_credentials::TokenSource::reqwest(
                    client_credentials::reqwest::recommended_client(),
                    request,
                )
                .with_policy(policy),
            ),
            Kind::Hyper => {
                let client: HyperClient<_, Full<Bytes>> =
                    HyperClient::builder(TokioExecutor::new()).build_http();
                Self::Hyper(
                    client_credentials::TokenSource::hyper(client, request).with_policy(policy),
                )
            }
        };
        (server, source)
    }

    async fn token(&self) -> Result<Arc<Token>, Arc<Error>> {
        match self {
            Self::Reqwest(source) => source.token().await,
            Self::Hyper(source) => source.token().await,
        }
    }

    async fn ok(&self) -> Arc<Token> {
        self.token()
            .await
            .unwrap_or_else(|error| panic!("{self:?}: {error}"))
    }

    fn invalidate(&self, rejected: &Token) -> bool {
        match self {
            Self::Reqwest(source) => source.invalidate(rejected),
            Self::Hyper(source) => source.invalidate(rejected),
        }
    }

    fn force_refresh(&self) -> bool {
        match self {
            Self::Reqwest(source) => source.force_refresh(),
            Self::Hyper(source) => source.force_refresh(),
        }
    }

    /// The first token other than `old`, once a background refresh has brought it.
    async fn next_token(&self, old: &Arc<Token>) -> Arc<Token> {
        for _ in 0..POLLS {
            let token = self.ok().await;
            if !Arc::ptr_eq(&token, old) {
                return token;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{self:?}: no new token came");
    }
}

/// Waits until the server has seen `count` requests.
async fn requests_reach(server: &TestServer, count: usize) {
    for _ in 0..POLLS {
        if server.requests_served() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "the server saw {} requests, not {count}",
        server.requests_served()
    );
}

#[test]
fn sources_are_send_sync_clone_and_debug_hides_the_secret() {
    fn shared<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    shared::<client_credentials::TokenSource>();
    shared::<client_credentials::reqwest::blocking::TokenSource>();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_server, source) =
            Source::start(Kind::Hyper, TestServer::builder(), CachePolicy::new());
        fn send<T: Send>(_: &T) {}
        let token = source.token();
        send(&token);
        drop(token);
        assert!(!format!("{source:?}").contains("demo-secret"));
    });
}

/// Gets of a cached token, counted by the allocator of this test binary, on this thread only.
const COUNTED_GETS: usize = 10_000;

/// Panics unless `allocation_counter` counts this thread's allocations: a count of zero below
/// then means something.
fn assert_allocations_are_counted() {
    let one = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(1_u8))));
    assert_eq!(one.count_total, 1, "the counting allocator is not in use");
}

/// A hit is answered on the first poll, without a runtime, and without an allocation.
#[test]
fn a_cached_token_is_got_without_an_allocation() {
    use std::task::{Context, Poll, Waker};
    assert_allocations_are_counted();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for kind in KINDS {
        let (server, source) = runtime
            .block_on(async { Source::start(kind, TestServer::builder(), CachePolicy::new()) });
        let first = runtime.block_on(source.ok());
        let get = || {
            let mut context = Context::from_waker(Waker::noop());
            match std::pin::pin!(source.token()).poll(&mut context) {
                Poll::Ready(Ok(token)) => token,
                other => panic!("{kind:?}: not a hit: {other:?}"),
            }
        };
        drop(get()); // this thread's first hit of this token
        let counted = allocation_counter::measure(|| {
            for _ in 0..COUNTED_GETS {
                let token = get();
                assert!(Arc::ptr_eq(&token, &first));
            }
        });
        assert_eq!(counted.count_total, 0, "{kind:?}: {counted:?}");
        assert_eq!(server.requests_served(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_on_an_empty_cache_send_one_request() {
    for kind in KINDS {
        let (server, source) = Source::start(kind, TestServer::builder(), CachePolicy::new());
        // A slow answer, so that the callers pile up behind the one fetch.
        server.push_fault(Fault::Delay(Duration::from_millis(100)));
        let start = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (source, start) = (source.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    source.ok().await
                })
            })
            .collect();
        let mut tokens = Vec::new();
        for caller in callers {
            tokens.push(caller.await.expect("a caller panicked"));
        }
        assert_eq!(server.requests_served(), 1, "{kind:?}");
        assert!(
            tokens.iter().all(|token| Arc::ptr_eq(token, &tokens[0])),
            "{kind:?}: every caller gets the one token"
        );
        // Later callers are served from the cache.
        assert!(Arc::ptr_eq(&source.ok().await, &tokens[0]));
        assert_eq!(server.requests_served(), 1, "{kind:?}");

        let mut api_request = http::Request::get("http://127.0.0.1/api").body(()).unwrap();
        tokens[0].authorize(&mut api_request).unwrap();
        let authorization = &api_request.headers()[AUTHORIZATION];
        assert!(authorization.is_sensitive());
        assert_eq!(
            authorization.to_str().unwrap(),
            format!("Bearer {}", tokens[0].access_token().secret())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_runs_in_the_background_while_the_valid_token_is_served() {
    for kind in KINDS {
        let builder = TestServer::builder().expires_in(Some(2));
        let (server, source) = Source::start(kind, builder, refresh_at_once());
        let first = source.ok().await;
        assert_eq!(first.expires_in(), Some(Duration::from_secs(2)));
        assert_eq!(server.requests_served(), 1);

        // The refresh never gets an answer: callers must not wait for it.
        server.push_fault(Fault::NeverAnswer);
        for _ in 0..50 {
            assert!(Arc::ptr_eq(&source.ok().await, &first), "{kind:?}");
        }
        requests_reach(&server, 2).await;
        assert_eq!(server.requests_served(), 2, "one refresh at a time");
        assert!(Arc::ptr_eq(&source.ok().await, &first), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_replaced_before_they_expire() {
    for kind in KINDS {
        let builder = TestServer::builder().expires_in(Some(2));
        let (server, source) = Source::start(kind, builder, refresh_at_once());
        let mut token = source.ok().await;
        for _ in 0..3 {
            // Due at once: the caller gets the current token, and the refresh follows.
            let next = source.next_token(&token).await;
            assert_ne!(
                next.access_token().secret(),
                token.access_token().secret(),
                "{kind:?}"
            );
            token = next;
        }
        assert!(server.requests_served() >= 4, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_never_served() {
    for kind in KINDS {
        // Tokens that expire on arrival are handed to their caller but never cached: without
        // a back-off after each, every call fetches.
        let builder = TestServer::builder().expires_in(Some(0));
        let policy = CachePolicy::new().with_backoff_initial(Duration::ZERO);
        let (server, source) = Source::start(kind, builder, policy);
        for count in 1..=3 {
            source.ok().await;
            assert_eq!(server.requests_served(), count, "{kind:?}");
        }

        // A 1-second token, never refreshed ahead: served until it expires, then replaced.
        let builder = TestServer::builder().expires_in(Some(1));
        let policy = CachePolicy::new().with_refresh_margin(Duration::ZERO);
        let (server, source) = Source::start(kind, builder, policy);
        let first = source.ok().await;
        assert!(Arc::ptr_eq(&source.ok().await, &first));
        assert_eq!(server.requests_served(), 1, "{kind:?}");
        // Its lifetime counts from before the request was sent, so it is over by now.
        tokio::time::sleep(first.expires_in().unwrap()).await;
        let second = source.ok().await;
        assert!(!Arc::ptr_eq(&second, &first), "{kind:?}");
        assert_eq!(server.requests_served(), 2, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_server_is_backed_off_then_recovered_from() {
    for kind in KINDS {
        let backoff = Duration::from_millis(100);
        let (server, source) = Source::start(kind, TestServer::builder(), short_backoff(backoff));
        server.set_fault(Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE)));
        let error = source.token().await.expect_err("the server fails");
        assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(error.is_retryable());
        // During the back-off, the failure is served again, without a request.
        let again = source.token().await.expect_err("backing off");
        assert!(Arc::ptr_eq(&error, &again), "{kind:?}");
        assert_eq!(server.requests_served(), 1, "{kind:?}");

        server.set_fault(None);
        let mut recovered = None;
        for _ in 0..POLLS {
            if let Ok(token) = source.token().await {
                recovered = Some(token);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(recovered.is_some(), "{kind:?}: no recovery");
        assert_eq!(
            server.requests_served(),
            2,
            "{kind:?}: nothing during the back-off"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_served_while_its_refreshes_fail() {
    for kind in KINDS {
        let policy = CachePolicy::new()
            .with_backoff_initial(Duration::from_secs(3600))
            .with_backoff_jitter(0.0);
        let (server, source) = Source::start(kind, TestServer::builder(), policy);
        let first = source.ok().await;
        // Due now; not due on arrival, which would have started the hour's back-off at once.
        assert!(source.force_refresh());
        server.set_fault(Some(Fault::Status(StatusCode::BAD_GATEWAY)));
        assert!(Arc::ptr_eq(&source.ok().await, &first), "{kind:?}");
        requests_reach(&server, 2).await;
        // The refresh failed; the source backs off for an hour, serving the valid token.
        for _ in 0..20 {
            assert!(Arc::ptr_eq(&source.ok().await, &first), "{kind:?}");
        }
        assert_eq!(server.requests_served(), 2, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_brings_a_new_token_in_the_background() {
    for kind in KINDS {
        let (server, source) = Source::start(kind, TestServer::builder(), CachePolicy::new());
        let first = source.ok().await;
        assert!(source.force_refresh());
        let second = source.next_token(&first).await;
        assert_ne!(
            second.access_token().secret(),
            first.access_token().secret()
        );
        assert_eq!(server.requests_served(), 2, "{kind:?}");
        assert!(Arc::ptr_eq(&source.ok().await, &second), "{kind:?}");
    }
}

#[tokio::test]
async fn a_cancelled_caller_does_not_stall_the_others() {
    for kind in KINDS {
        // Without a hand-over, the waiters would wait for the fetch's timeout: an hour.
        let policy = CachePolicy::new().with_fetch_timeout(Duration::from_secs(3600));
        let (server, source) = Source::start(kind, TestServer::builder(), policy);
        server.push_fault(Fault::NeverAnswer);
        let stuck = tokio::spawn({
            let source = source.clone();
            async move { source.token().await }
        });
        // The first caller holds the fetch, and its request is at the server.
        requests_reach(&server, 1).await;
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.ok().await })
            })
            .collect();
        // This runtime has one thread: yielding lets every waiter run until it waits.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        stuck.abort();
        assert!(stuck.await.expect_err("cancelled").is_cancelled());
        let mut tokens = Vec::new();
        for waiter in waiters {
            tokens.push(waiter.await.expect("a waiter panicked"));
        }
        assert!(tokens.iter().all(|token| Arc::ptr_eq(token, &tokens[0])));
        assert_eq!(
            server.requests_served(),
            2,
            "{kind:?}: one waiter took over"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // It measures how long the callers waited.
async fn a_fetch_that_times_out_is_one_failure_every_waiter_gets_at_once() {
    for kind in KINDS {
        let policy = CachePolicy::new().with_fetch_timeout(Duration::from_millis(1500));
        let (server, source) = Source::start(kind, TestServer::builder(), policy);
        server.set_fault(Some(Fault::NeverAnswer));
        let started = std::time::Instant::now();
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { (source.token().await, started.elapsed()) })
            })
            .collect();
        for caller in callers {
            let (result, elapsed) = caller.await.unwrap();
            let error = result.expect_err("nothing answers");
            assert!(
                matches!(*error, Error::FetchTimedOut { .. }),
                "{kind:?}: {error}"
            );
            // At the timeout, not after a second fetch of their own.
            assert!(
                elapsed < Duration::from_millis(2_200),
                "{kind:?}: {elapsed:?}"
            );
        }
        assert_eq!(
            server.requests_served(),
            1,
            "{kind:?}: one request for four callers"
        );
        // A caller during the back-off fails at once, without a request.
        let at = std::time::Instant::now();
        let error = source.token().await.expect_err("backing off");
        assert!(matches!(*error, Error::FetchTimedOut { .. }), "{error}");
        assert!(at.elapsed() < Duration::from_millis(200));
        assert_eq!(server.requests_served(), 1, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_after_a_401_gets_one_new_token() {
    for kind in KINDS {
        let (server, source) = Source::start(kind, TestServer::builder(), invalidate_at_once());
        let rejected = source.ok().await;
        // Many tasks got a 401 from the API with the same token.
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (source, rejected) = (source.clone(), Arc::clone(&rejected));
                tokio::spawn(async move {
                    source.invalidate(&rejected);
                    source.ok().await
                })
            })
            .collect();
        let mut tokens = Vec::new();
        for task in tasks {
            tokens.push(task.await.expect("a task panicked"));
        }
        assert!(tokens.iter().all(|token| Arc::ptr_eq(token, &tokens[0])));
        assert!(!Arc::ptr_eq(&tokens[0], &rejected));
        assert_eq!(server.requests_served(), 2, "{kind:?}: one new fetch");
        assert!(!source.invalidate(&rejected), "already replaced");
        assert!(Arc::ptr_eq(&source.ok().await, &tokens[0]));
    }
}

/// The most token requests a storm may cause: the first fetch, and a few after back-offs or
/// the minimum age on a slow machine.
const HANDFUL: usize = 4;

/// Every token is due for refresh on arrival: the refresh lead (up to 60 s, all of the
/// lifetime) is longer than the server's 2-second tokens.
fn lead_longer_than_lifetime() -> (TestServerBuilder, CachePolicy) {
    let policy = CachePolicy::new()
        .with_refresh_fraction(1.0)
        .with_refresh_jitter(0.0);
    (TestServer::builder().expires_in(Some(2)), policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_due_on_arrival_cause_a_handful_of_requests_not_one_per_call() {
    for kind in KINDS {
        let cases = [
            (
                TestServer::builder().expires_in(Some(0)),
                CachePolicy::new(),
            ),
            lead_longer_than_lifetime(),
        ];
        for (builder, policy) in cases {
            let (server, source) = Source::start(kind, builder, policy);
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let source = source.clone();
                    tokio::spawn(async move {
                        let mut tokens = 0;
                        for _ in 0..10 {
                            tokens += usize::from(source.token().await.is_ok());
                        }
                        tokens
                    })
                })
                .collect();
            let mut tokens = 0;
            for task in tasks {
                tokens += task.await.expect("a task panicked");
            }
            assert!(tokens >= 1, "{kind:?}: the fetch's caller gets its token");
            assert!(
                server.requests_served() <= HANDFUL,
                "{kind:?}: {} requests for 500 calls",
                server.requests_served()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_each_token_as_soon_as_it_comes_causes_a_handful_of_requests() {
    for kind in KINDS {
        let (server, source) = Source::start(kind, TestServer::builder(), CachePolicy::new());
        // An API that answers 401 to every call, each followed by `invalidate`.
        for _ in 0..300 {
            let token = source.ok().await;
            source.invalidate(&token);
        }
        assert!(
            server.requests_served() <= HANDFUL,
            "{kind:?}: {} requests for 300 invalidations",
            server.requests_served()
        );
    }
}

mod blocking {
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::Duration;

    use client_credentials::reqwest::blocking::{TokenSource, recommended_client};
    use client_credentials::{CachePolicy, Token};
    use client_credentials_test_server::{Fault, TestServer, TestServerBuilder};
    use http::StatusCode;

    use super::{
        HANDFUL, POLLS, invalidate_at_once, lead_longer_than_lifetime, refresh_at_once, request,
        short_backoff,
    };

    fn start(server: TestServerBuilder, policy: CachePolicy) -> (TestServer, TokenSource) {
        let server = server.start();
        let source = TokenSource::with_policy(recommended_client(), request(&server), policy);
        (server, source)
    }

    fn ok(source: &TokenSource) -> Arc<Token> {
        source.token().unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_cached_token_is_got_without_an_allocation() {
        super::assert_allocations_are_counted();
        let (server, source) = start(TestServer::builder(), CachePolicy::new());
        let first = ok(&source);
        drop(ok(&source)); // this thread's first hit of this token
        let counted = allocation_counter::measure(|| {
            for _ in 0..super::COUNTED_GETS {
                assert!(Arc::ptr_eq(&ok(&source), &first));
            }
        });
        assert_eq!(counted.count_total, 0, "{counted:?}");
        assert_eq!(server.requests_served(), 1);
    }

    #[test]
    fn many_threads_on_an_empty_cache_send_one_request() {
        let (server, source) = start(TestServer::builder(), CachePolicy::new());
        server.push_fault(Fault::Delay(Duration::from_millis(100)));
        let threads = 32;
        let start = Arc::new(Barrier::new(threads));
        let callers: Vec<_> = (0..threads)
            .map(|_| {
                let (source, start) = (source.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    ok(&source)
                })
            })
            .collect();
        let tokens: Vec<_> = callers
            .into_iter()
            .map(|caller| caller.join().expect("a caller panicked"))
            .collect();
        assert_eq!(server.requests_served(), 1);
        assert!(tokens.iter().all(|token| Arc::ptr_eq(token, &tokens[0])));
    }

    #[test]
    fn the_caller_that_finds_a_refresh_due_makes_it_and_the_others_do_not_wait() {
        let (server, source) = start(TestServer::builder().expires_in(Some(2)), refresh_at_once());
        let first = ok(&source);
        // The refresh gets no answer until the server is dropped.
        server.push_fault(Fault::NeverAnswer);
        let refresher = thread::spawn({
            let source = source.clone();
            move || ok(&source)
        });
        for _ in 0..POLLS {
            if server.requests_served() == 2 {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(server.requests_served(), 2, "the refresh is under way");
        // While it is, the valid token is served without waiting.
        for _ in 0..20 {
            assert!(Arc::ptr_eq(&ok(&source), &first));
        }
        drop(server);
        let served = refresher.join().expect("the refresher panicked");
        assert!(
            Arc::ptr_eq(&served, &first),
            "a failed refresh leaves its caller the valid token"
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // It measures how long the callers waited.
    fn a_fetch_that_times_out_is_one_failure_every_waiting_thread_gets_at_once() {
        let policy = CachePolicy::new().with_fetch_timeout(Duration::from_millis(1500));
        let (server, source) = start(TestServer::builder(), policy);
        server.set_fault(Some(Fault::NeverAnswer));
        let barrier = Arc::new(Barrier::new(4));
        let started = std::time::Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (source, barrier) = (source.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    (source.token(), started.elapsed())
                })
            })
            .collect();
        for thread in threads {
            let (result, elapsed) = thread.join().unwrap();
            let error = result.expect_err("nothing answers");
            assert!(
                matches!(*error, client_credentials::Error::FetchTimedOut { .. }),
                "{error}"
            );
            // Before, they took 2.8, 4.3 and 5.8 s: each waiter fetched in turn.
            assert!(elapsed < Duration::from_millis(2_200), "{elapsed:?}");
        }
        assert_eq!(server.requests_served(), 1, "one request for four threads");
    }

    #[test]
    fn a_refresh_that_fails_after_the_token_expired_returns_the_failure() {
        // A 1-second token, due for refresh at once; the refresh is never answered and the
        // source gives it up after 1.5 s (its fetch timeout, which bounds the client's
        // requests), by when the token has expired.
        let server = TestServer::builder().expires_in(Some(1)).start();
        let client = client_credentials::reqwest::blocking::recommended_client();
        let policy = refresh_at_once().with_fetch_timeout(Duration::from_millis(1_500));
        let source = TokenSource::with_policy(client, request(&server), policy);
        let first = ok(&source);
        server.push_fault(Fault::NeverAnswer);
        let error = source
            .token()
            .expect_err("the token expired during the refresh: only the failure is left");
        assert!(error.is_retryable(), "{error}");
        assert_eq!(server.requests_served(), 2);
        drop(first);
    }

    #[test]
    fn a_failing_server_is_backed_off_then_recovered_from() {
        let backoff = Duration::from_millis(100);
        let (server, source) = start(TestServer::builder(), short_backoff(backoff));
        server.set_fault(Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE)));
        let error = source.token().expect_err("the server fails");
        assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        let again = source.token().expect_err("backing off");
        assert!(Arc::ptr_eq(&error, &again));
        assert_eq!(server.requests_served(), 1);
        server.set_fault(None);
        let recovered = (0..POLLS).find_map(|_| {
            let token = source.token().ok();
            if token.is_none() {
                thread::sleep(Duration::from_millis(1));
            }
            token
        });
        assert!(recovered.is_some(), "no recovery");
        assert_eq!(server.requests_served(), 2);
    }

    #[test]
    fn tokens_due_on_arrival_cause_a_handful_of_requests_not_one_per_call() {
        let cases = [
            (
                TestServer::builder().expires_in(Some(0)),
                CachePolicy::new(),
            ),
            lead_longer_than_lifetime(),
        ];
        for (builder, policy) in cases {
            let (server, source) = start(builder, policy);
            let callers: Vec<_> = (0..50)
                .map(|_| {
                    let source = source.clone();
                    thread::spawn(move || (0..10).filter(|_| source.token().is_ok()).count())
                })
                .collect();
            let tokens: usize = callers
                .into_iter()
                .map(|caller| caller.join().expect("a caller panicked"))
                .sum();
            assert!(tokens >= 1, "the fetch's caller gets its token");
            assert!(
                server.requests_served() <= HANDFUL,
                "{} requests for 500 calls",
                server.requests_served()
            );
        }
    }

    #[test]
    fn invalidating_each_token_as_soon_as_it_comes_causes_a_handful_of_requests() {
        let (server, source) = start(TestServer::builder(), CachePolicy::new());
        for _ in 0..300 {
            let token = ok(&source);
            source.invalidate(&token);
        }
        assert!(
            server.requests_served() <= HANDFUL,
            "{} requests for 300 invalidations",
            server.requests_served()
        );
    }

    #[test]
    fn invalidate_and_force_refresh() {
        let (server, source) = start(TestServer::builder(), invalidate_at_once());
        let first = ok(&source);
        assert!(source.invalidate(&first));
        let second = ok(&source);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(!source.invalidate(&first), "already replaced");
        assert!(source.force_refresh());
        let third = ok(&source);
        assert!(!Arc::ptr_eq(&third, &second), "the caller made the refresh");
        assert!(Arc::ptr_eq(&ok(&source), &third));
        assert_eq!(server.requests_served(), 3);
    }

    #[test]
    fn a_refused_token_is_served_to_others_and_its_failure_to_the_refused() {
        let (server, source) = start(TestServer::builder(), invalidate_at_once());
        let first = ok(&source);
        server.set_fault(Some(Fault::Status(StatusCode::BAD_GATEWAY)));
        assert!(source.invalidate(&first));
        let error = source
            .token_replacing(&first)
            .expect_err("the replacement fails");
        assert_eq!(error.status(), Some(StatusCode::BAD_GATEWAY));
        // Backing off: other callers keep the refused token, valid until it expires.
        assert!(Arc::ptr_eq(&ok(&source), &first));
        let again = source.token_replacing(&first).expect_err("backing off");
        assert!(Arc::ptr_eq(&again, &error));
        assert_eq!(server.requests_served(), 2);
        // An accepted call ends the refusals in a row.
        assert!(source.accepted(&first));
        assert!(!source.accepted(&first));
    }
}

/// The rule that binds every source, over random sequences of calls, waits, faults,
/// invalidations and forced refreshes against a server issuing 1-second tokens: no source
/// ever returns an expired token.
mod every_source {
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, SystemTime};

    use client_credentials::reqwest::blocking;
    use client_credentials::{CachePolicy, Token};
    use client_credentials_test_server::{Fault, TestServer};
    use http::StatusCode;
    use proptest::prelude::*;

    use super::{Kind, Source, request};

    /// How long a fetch may take before it is given up, by the async sources' policy and the
    /// blocking source's client: longer than the 0.5 s a token has left when it falls due.
    const GIVE_UP: Duration = Duration::from_millis(700);

    /// How late after its expiry a token may be seen: the time between a source's decision
    /// and the check, on a busy machine. Far less than a refresh that outlives its token.
    const SLACK: Duration = Duration::from_millis(50);

    #[derive(Debug, Clone)]
    enum Step {
        Call,
        Sleep(Duration),
        /// The next request gets a 503.
        Fail,
        /// The next request is never answered: its fetch is given up after [`GIVE_UP`].
        Hang,
        /// The next request is answered this late.
        Slow(Duration),
        Invalidate,
        ForceRefresh,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => Just(Step::Call),
            4 => (0..300u64).prop_map(|ms| Step::Sleep(Duration::from_millis(ms))),
            1 => Just(Step::Fail),
            1 => Just(Step::Hang),
            1 => (0..300u64).prop_map(|ms| Step::Slow(Duration::from_millis(ms))),
            1 => Just(Step::Invalidate),
            1 => Just(Step::ForceRefresh),
        ]
    }

    /// Tokens fall due halfway through their second; back-offs and the minimum age are short.
    fn policy() -> CachePolicy {
        CachePolicy::new()
            .with_refresh_fraction(0.5)
            .with_refresh_margin(Duration::MAX)
            .with_refresh_jitter(0.0)
            .with_backoff_initial(Duration::from_millis(50))
            .with_backoff_max(Duration::from_millis(200))
            .with_backoff_jitter(0.0)
            .with_invalidate_min_age(Duration::from_millis(100))
            .with_fetch_timeout(GIVE_UP)
    }

    fn server() -> client_credentials_test_server::TestServerBuilder {
        TestServer::builder().expires_in(Some(1))
    }

    /// Law: the token has not expired (by its own `sent_at` and `expires_in`).
    #[allow(clippy::disallowed_methods)] // The law compares the token's expiry with the time.
    fn check(source: &str, token: &Token) -> Result<(), TestCaseError> {
        let lifetime = token.expires_in().expect("the server sends expires_in");
        let expiry = token.sent_at() + lifetime;
        let now = SystemTime::now();
        prop_assert!(
            now < expiry + SLACK,
            "{source} returned a token {:?} after its expiry",
            now.duration_since(expiry).unwrap_or_default()
        );
        Ok(())
    }

    fn fault(server: &TestServer, step: &Step) {
        match step {
            Step::Fail => server.push_fault(Fault::Status(StatusCode::SERVICE_UNAVAILABLE)),
            Step::Hang => server.push_fault(Fault::NeverAnswer),
            Step::Slow(delay) => server.push_fault(Fault::Delay(*delay)),
            _ => {}
        }
    }

    async fn run_async(kind: Kind, steps: &[Step]) -> Result<(), TestCaseError> {
        let (server, source) = Source::start(kind, server(), policy());
        let mut last: Option<Arc<Token>> = None;
        for step in steps {
            match step {
                Step::Call => {
                    if let Ok(token) = source.token().await {
                        check(&format!("{kind:?}"), &token)?;
                        last = Some(token);
                    }
                }
                Step::Sleep(pause) => tokio::time::sleep(*pause).await,
                Step::Invalidate => {
                    if let Some(token) = &last {
                        source.invalidate(token);
                    }
                }
                Step::ForceRefresh => {
                    source.force_refresh();
                }
                fail => fault(&server, fail),
            }
        }
        Ok(())
    }

    fn run_blocking(steps: &[Step]) -> Result<(), TestCaseError> {
        let server = server().start();
        let client = blocking::recommended_client_builder()
            .timeout(GIVE_UP)
            .build()
            .expect("a blocking client");
        let source = blocking::TokenSource::with_policy(client, request(&server), policy());
        let mut last: Option<Arc<Token>> = None;
        for step in steps {
            match step {
                Step::Call => {
                    if let Ok(token) = source.token() {
                        check("Blocking", &token)?;
                        last = Some(token);
                    }
                }
                Step::Sleep(pause) => thread::sleep(*pause),
                Step::Invalidate => {
                    if let Some(token) = &last {
                        source.invalidate(token);
                    }
                }
                Step::ForceRefresh => {
                    source.force_refresh();
                }
                fail => fault(&server, fail),
            }
        }
        Ok(())
    }

    proptest! {
        // Each case takes a second or two of real time; the three sources run side by side.
        #![proptest_config(ProptestConfig::with_cases(4))]

        #[test]
        fn no_source_ever_returns_an_expired_token(
            steps in proptest::collection::vec(step(), 1..16),
        ) {
            let blocking = {
                let steps = steps.clone();
                thread::spawn(move || run_blocking(&steps))
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let (reqwest, hyper) = tokio::join!(
                    run_async(Kind::Reqwest, &steps),
                    run_async(Kind::Hyper, &steps)
                );
                reqwest.and(hyper)
            })?;
            blocking.join().expect("the blocking run panicked")?;
        }
    }

    /// The sequence that broke the rule for the blocking source: a refresh falls due, is never
    /// answered, and is given up after the token expired.
    #[test]
    fn a_refresh_outliving_its_token_is_caught() {
        let steps = [
            Step::Call,
            Step::Sleep(Duration::from_millis(550)),
            Step::Hang,
            Step::Call,
            Step::Call,
        ];
        run_blocking(&steps).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            run_async(Kind::Reqwest, &steps).await.unwrap();
            run_async(Kind::Hyper, &steps).await.unwrap();
        });
    }
}

#[tokio::test]
async fn a_source_from_a_token_url_and_a_secret_in_one_expression() {
    let server = TestServer::start();
    let url = format!("http://{}/token", server.local_addr());
    let tokens = client_credentials::TokenSource::client_secret(&url, "demo-client", "demo-secret")
        .scope("read")
        .policy(CachePolicy::new())
        .build()
        .expect("a valid source");
    let token = tokens.token().await.expect("a token");
    assert_eq!(token.scope(), Some("read"));
    assert_eq!(tokens.request().scope(), Some("read"));

    let fragment = client_credentials::TokenSource::client_secret(
        &format!("{url}#x"),
        "demo-client",
        "demo-secret",
    )
    .build()
    .expect_err("a token URL with a fragment");
    assert!(
        matches!(fragment, Error::InvalidTokenUrl { .. }),
        "{fragment}"
    );
    // A client of one's own: no missing client can be built, the type asks for one.
    let own = client_credentials::TokenSource::builder(&server.demo_credentials())
        .scope("read")
        .build()
        .expect("a valid source");
    assert_eq!(own.token().await.expect("a token").scope(), Some("read"));
}

#[tokio::test]
async fn a_source_from_a_fetch_function_of_ones_own() {
    let server = TestServer::start();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let http = client_credentials::reqwest::recommended_client();
    let tokens = client_credentials::TokenSource::from_fn(request(&server), move |request| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let http = http.clone();
        async move {
            client_credentials::reqwest::fetch_token(
                &http,
                &request,
                client_credentials::reqwest::TIMEOUT,
            )
            .await
        }
    });
    let first = tokens.token().await.expect("a token");
    let second = tokens.token().await.expect("the cached token");
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The builder's methods as the README names them: `.scope`, `.resource`, `.param` and
/// `.policy` refine it, `TokenSource::builder` starts it from any client, and `.reqwest`,
/// `.hyper`, `.transport` and `.fetch_fn` each build a source that fetches, as `.build()` does.
#[tokio::test]
async fn the_builder_refines_the_request_and_builds_a_source_every_way() {
    let server = TestServer::start();
    let client = server.demo_credentials();
    let builder = || {
        client_credentials::TokenSource::builder(&client)
            .scope("read")
            .policy(invalidate_at_once())
    };
    let refined = builder()
        .resource("urn:example:api")
        .param("k", "v")
        .build()
        .expect("a valid source");
    assert_eq!(refined.request().scope(), Some("read"));
    assert_eq!(
        refined.request().resources().collect::<Vec<_>>(),
        ["urn:example:api"]
    );
    assert_eq!(refined.request().params().collect::<Vec<_>>(), [("k", "v")]);
    assert_eq!(refined.policy(), &invalidate_at_once());

    let http = client_credentials::reqwest::recommended_client();
    let hyper: HyperClient<_, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let fetch_http = http.clone();
    let sources = [
        builder().build(),
        builder().reqwest(http.clone()),
        builder().hyper(hyper),
        builder().transport(http),
        builder().fetch_fn(move |request| {
            let http = fetch_http.clone();
            async move {
                client_credentials::reqwest::fetch_token(
                    &http,
                    &request,
                    client_credentials::reqwest::TIMEOUT,
                )
                .await
            }
        }),
    ];
    for (i, source) in sources.into_iter().enumerate() {
        let source = source.expect("a valid source");
        assert_eq!(source.policy(), &invalidate_at_once(), "source {i}");
        let token = source.token().await.expect("a token");
        assert_eq!(token.scope(), Some("read"), "source {i}");
    }
    assert_eq!(server.token_requests(), 5);
}

/// Hardening: the process cache keys on the credential. A token broker holding one
/// `TokenCache` for its tenants' clients never serves the victim's cached token to a request
/// with the victim's client id and another secret: that request reaches the token server,
/// which refuses it with `invalid_client`.
#[tokio::test]
#[allow(clippy::disallowed_methods)] // The test drives the cache as a broker would: it reads the clock.
async fn a_cache_never_serves_a_token_to_a_request_with_the_wrong_secret() {
    use client_credentials::{
        ClientCredentials, ClientSecret, cache::Lookup, cache::TokenCache, error::ErrorCode,
    };
    use client_credentials_test_server::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};

    let server = TestServer::start();
    let http = client_credentials::reqwest::recommended_client();
    let request = |secret: &str| {
        ClientCredentials::new(
            server.token_url(),
            DEMO_CLIENT_ID,
            ClientSecret::new(secret),
        )
        .token_request()
        .build()
        .unwrap()
    };
    let mut cache = TokenCache::new(CachePolicy::new());
    // One fetch through the cache, as a broker drives it.
    let fetch = async |cache: &mut TokenCache, request: &TokenRequest| {
        let now = std::time::Instant::now();
        let Lookup::Fetch(ticket) = cache.poll(request, now) else {
            panic!("expected a miss for {request:?}");
        };
        let sent_at = std::time::SystemTime::now();
        let result =
            client_credentials::reqwest::fetch_token(&http, request, Duration::from_secs(5)).await;
        cache.handle_result(ticket, result, sent_at, now, 0)
    };
    let victim = request(DEMO_CLIENT_SECRET);
    let token = fetch(&mut cache, &victim).await.unwrap();
    match cache.poll(&request(DEMO_CLIENT_SECRET), std::time::Instant::now()) {
        Lookup::Ready(hit) => {
            assert_eq!(hit.access_token().secret(), token.access_token().secret())
        }
        other => panic!("the right secret is a hit, got {other:?}"),
    }
    assert_eq!(server.token_requests(), 1);

    let refused = fetch(&mut cache, &request("not-the-secret")).await;
    assert_eq!(
        server.token_requests(),
        2,
        "the wrong secret reached the server"
    );
    match refused.as_ref().map_err(|error| &**error) {
        Err(Error::OAuth(error)) => assert_eq!(error.code(), &ErrorCode::InvalidClient),
        other => panic!("expected invalid_client, got {other:?}"),
    }
}
