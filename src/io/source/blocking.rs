//! The blocking token source: the async source's rules, on threads. Waiters sleep on a condition
//! variable; a refresh is made by the caller that finds it due, the others keep the valid token.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::{Core, Fetched, Outcome};
use crate::cache::policy::CachePolicy;
use crate::cache::{FetchTicket, Lookup};
use crate::error::{Error, TransportKind};
use crate::io::environment::{monotonic_now, wall_now};
use crate::observe;
use crate::request::TokenRequest;
use crate::token::Token;

/// What fetches for a blocking source, within the time it is given.
type BlockingFetch = Box<dyn Fn(&TokenRequest, Duration) -> Fetched + Send + Sync>;

/// What the clones of a blocking source share.
struct Inner {
    core: Core,
    /// Counts the fetches that ended (or were given up), so that a waiter can tell whether one
    /// ended since it polled.
    ended: Mutex<u64>,
    changed: Condvar,
    /// Fetches, within the time it is given: what is left of the ticket's.
    fetch: BlockingFetch,
}

impl Inner {
    fn ended(&self) -> MutexGuard<'_, u64> {
        // Only ever incremented: a poisoned count is still a count.
        self.ended.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the waiters: a fetch ended.
    fn wake(&self) {
        *self.ended() += 1;
        self.changed.notify_all();
    }

    /// A valid token, for the caller an API refused `rejected` to if given: never `rejected`
    /// once the refusal has taken effect.
    fn token(&self, rejected: Option<&Token>) -> Outcome {
        if let Some(token) = self
            .core
            .peek()
            .filter(|token| rejected.is_none_or(|rejected| !token.same_access_token(rejected)))
        {
            return Ok(token);
        }
        loop {
            // Read before the poll: a fetch that ends after it changes the count.
            let seen = *self.ended();
            match self.core.poll_replacing(rejected) {
                Lookup::Ready(token) => return Ok(token),
                // This caller refreshes, and gets the new token; the others keep the old one.
                // If the refresh fails, the old token may have expired while it ran: the
                // cache, asked again, serves it only while it is valid.
                Lookup::Refresh { ticket, .. } => {
                    observe::refresh_ahead(&self.core.request);
                    return self.fetch(ticket).or_else(|error| {
                        observe::refresh_failed(&self.core.request, &error);
                        self.core.valid(monotonic_now()).ok_or(error)
                    });
                }
                Lookup::Fetch(ticket) => {
                    let outcome = self.fetch(ticket);
                    if let Err(error) = &outcome {
                        observe::back_off_started(&self.core.request, error);
                    }
                    return outcome;
                }
                Lookup::Pending { deadline } => self.wait(seen, deadline),
                Lookup::BackOff { until, error } => {
                    observe::back_off(&self.core.request, || {
                        until.saturating_duration_since(monotonic_now())
                    });
                    return Err(error);
                }
            }
        }
    }

    /// Waits until a fetch ends after `seen` were counted, or until `deadline`.
    fn wait(&self, seen: u64, deadline: Instant) {
        let timeout = deadline.saturating_duration_since(monotonic_now());
        let ended = self.ended();
        let _ = self
            .changed
            .wait_timeout_while(ended, timeout, |ended| *ended == seen)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Makes the ticket's fetch, hands the outcome to the cache and wakes the waiters; gives
    /// the ticket up if the fetch panics.
    fn fetch(&self, ticket: FetchTicket) -> Outcome {
        let deadline = ticket.deadline();
        let guard = Abandon {
            inner: self,
            ticket: Some(ticket),
        };
        let sent_at = wall_now();
        let fetched = (self.fetch)(
            &self.core.request,
            deadline.saturating_duration_since(monotonic_now()),
        );
        // A timeout at the cache's deadline is the one the cache counts and the waiters get:
        // handed in as such, this caller gets the same error.
        let fetched = match fetched {
            Err(Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }) if monotonic_now() >= deadline => Err(self.core.timed_out()),
            fetched => fetched,
        };
        guard.finish(fetched, sent_at)
    }
}

/// Gives a ticket up and wakes the waiters, unless it finishes: the fetch panicked.
struct Abandon<'a> {
    inner: &'a Inner,
    ticket: Option<FetchTicket>,
}

impl Abandon<'_> {
    fn finish(mut self, fetched: Fetched, sent_at: SystemTime) -> Outcome {
        let Some(ticket) = self.ticket.take() else {
            // Not reached: only `finish` takes the ticket, and it consumes the guard.
            return fetched.map(Arc::new).map_err(Arc::new);
        };
        let result = self.inner.core.complete(ticket, fetched, sent_at);
        self.inner.wake();
        result
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.core.abandon(ticket);
            self.inner.wake();
        }
    }
}

/// A valid token on every call, for every thread of a program: one
/// [`TokenCache`](crate::cache::TokenCache) shared by all clones, fetching with a blocking
/// [`reqwest::blocking::Client`](::reqwest::blocking::Client).
///
/// It follows the async [`TokenSource`](crate::TokenSource)'s rules, on threads:
/// a cached token costs a read lock and an `Arc` clone; when there is no valid token, one
/// thread fetches and the others wait for its request; after a failure, every caller fails at
/// once until the back-off is over; [`invalidate`](Self::invalidate) after a 401.
///
/// One difference: a refresh that falls due is made by the one caller that finds it due,
/// before that call returns (it returns the new token; if the refresh fails, the old one while it
/// is still valid, else the failure).
/// Every other caller keeps being served the valid token meanwhile, without waiting.
///
/// Like the blocking client it holds, build and drop it outside of an async runtime.
///
/// ```no_run
/// use client_credentials::reqwest::blocking::TokenSource;
/// use client_credentials::{ClientCredentials, ClientSecret, TokenUrl};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = ClientCredentials::new(
///     TokenUrl::new("https://idp.example.com/oauth/token")?,
///     "my-client",
///     ClientSecret::new("s3cr3t"),
/// );
/// let request = client.token_request().scope("read:things").build()?;
/// let http = client_credentials::reqwest::blocking::recommended_client();
/// let tokens = TokenSource::new(http, request); // clone it into every thread
///
/// let token = tokens.token()?;
/// let authorization = token.authorization_header()?; // `Bearer …`, marked sensitive
/// # let _ = authorization;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenSource(Arc<Inner>);

impl TokenSource {
    /// A source for `request` by `policy`, fetching with `fetch` within the time it is given
    /// (what is left of the fetch's [`CachePolicy::fetch_timeout`]): the adapter's constructors
    /// (in `io/transport/reqwest.rs`) pass its blocking `fetch_token`, so this file imports no adapter.
    pub(crate) fn from_fetch(
        request: TokenRequest,
        policy: CachePolicy,
        fetch: impl Fn(&TokenRequest, Duration) -> Fetched + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(Inner {
            core: Core::new(request, policy),
            ended: Mutex::new(0),
            changed: Condvar::new(),
            fetch: Box::new(fetch),
        }))
    }

    /// A valid token: the cached one, or one fetched now by this caller or by the caller
    /// already fetching (then this one blocks until it ends).
    ///
    /// # Errors
    ///
    /// As the async [`TokenSource::token`](crate::TokenSource::token): the failure
    /// of the fetch made or waited for, or the same again while the source backs off, shared
    /// by every caller it reached, hence the `Arc`.
    pub fn token(&self) -> Result<Arc<Token>, Arc<Error>> {
        self.0.token(None)
    }

    /// A token for the caller an API just refused `rejected` to, after
    /// [`invalidate`](Self::invalidate), as the async
    /// [`TokenSource::token_replacing`](crate::TokenSource::token_replacing): never `rejected`
    /// once the refusal has taken effect, and the failure while its replacement cannot be had
    /// (where [`token`](Self::token) serves `rejected` to callers of other APIs).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub fn token_replacing(&self, rejected: &Token) -> Result<Arc<Token>, Arc<Error>> {
        self.0.token(Some(rejected))
    }

    /// Tells the source that an API accepted `token`, as the async
    /// [`TokenSource::accepted`](crate::TokenSource::accepted): after refusals in a row, the
    /// next counts as the first again.
    pub fn accepted(&self, token: &Token) -> bool {
        self.0.core.accepted(token)
    }

    /// Refuses the cached token if it is `rejected`, the token an API just refused (HTTP 401),
    /// so that the next call fetches a new one, as the async
    /// [`TokenSource::invalidate`](crate::TokenSource::invalidate). Returns whether this call
    /// refused it: a token already replaced (or refused) stays as it is. A back-off under way
    /// still applies.
    pub fn invalidate(&self, rejected: &Token) -> bool {
        let dropped = self.0.core.invalidate(rejected);
        observe::invalidated(&self.0.core.request, dropped);
        dropped
    }

    /// Makes the cached token due for refresh: the next call refreshes it (and the others
    /// are served the current token meanwhile). Returns whether there was a token. A fetch
    /// or back-off under way is not cut short.
    pub fn force_refresh(&self) -> bool {
        let had_token = self.0.core.force_refresh();
        observe::forced_refresh(&self.0.core.request, had_token);
        had_token
    }

    /// The token request the source sends.
    #[must_use]
    pub fn request(&self) -> &TokenRequest {
        &self.0.core.request
    }

    /// The source's cache policy.
    #[must_use]
    pub fn policy(&self) -> &CachePolicy {
        &self.0.core.policy
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("request", &self.0.core.request)
            .field("policy", &self.0.core.policy)
            .finish_non_exhaustive()
    }
}
