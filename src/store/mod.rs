//! The second-level token cache that a fleet of processes shares, without IO: the trait a
//! store implements ([`TokenStore`]), the store key derived from a request's cache identity
//! ([`StoreKey`], `key.rs`), what an entry holds and how it is sealed ([`EntrySealing`],
//! `entry.rs`), and the state machine of a fleet-wide fetch, which decides when to read,
//! lease, wait, fetch, write and release ([`FleetMachine`](crate::FleetMachine), `fleet.rs`).
//! The store itself (Redis) and the thin driver that performs the machine's steps are in the
//! IO layer (`io/source/redis.rs`, `io/source/fleet.rs`).
//!
//! The in-process [`TokenCache`](crate::cache::TokenCache) stays the first level and the authority
//! for hits: a hit never touches the store. The store is asked only when the first level would
//! fetch (a miss or a due refresh).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::client_auth::jwt::BoxError;

pub(crate) mod encryption_key;
pub(crate) mod entry;
pub(crate) mod fleet;
pub(crate) mod key;

/// What every [`TokenStore`] call returns: a boxed future, so that the trait is object safe
/// and a source can hold any store as `Arc<dyn TokenStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store shared by processes, holding sealed token entries and short leases: Redis
/// ([`RedisStore`](crate::shared_cache::RedisStore), feature `redis`), or yours.
///
/// Keys are ASCII strings made by [`StoreKey`](crate::shared_cache::StoreKey) (a namespace and a SHA-256 digest, never a
/// secret); values are opaque bytes, sealed before they reach the store. The caller bounds
/// every call by a short timeout and treats any failure as "no store": an implementation
/// neither retries for long nor panics.
pub trait TokenStore: Send + Sync {
    /// The value under `key`, or `None` when there is none (or it has expired).
    fn read<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key`, replacing any value there, to expire after `ttl`.
    fn write<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()>;

    /// Takes the lease `key` for `holder`, to expire after `ttl`, if nobody holds it: whether
    /// it was taken. In Redis: `SET key holder NX PX ttl`.
    fn take_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Releases the lease `key` if `holder` still holds it (a lease that expired and was taken
    /// by another process stays theirs).
    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()>;

    /// Sets the lease `key` to expire after `ttl` if `holder` still holds it, in one step
    /// (compare and expire): whether it did. The holder renews its lease while it fetches, so
    /// that a slow token endpoint is asked once by the whole fleet. In Redis: a script that
    /// runs `PEXPIRE` only if `GET` gives `holder`.
    ///
    /// By default the store cannot renew (`false`): the lease then expires after its time to
    /// live however long its holder's fetch takes, and another process may fetch too.
    fn renew_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let _ = (key, holder, ttl);
        Box::pin(async { Ok(false) })
    }

    /// Whether what goes to the store stays private on the way: TLS, a loopback host, a local
    /// socket, or a store in the process. A shared cache that stores tokens in clear refuses a
    /// store that says `false`. By default `true`: a store of yours answers for its own
    /// connection.
    fn is_private(&self) -> bool {
        true
    }
}

/// Why a [`TokenStore`] call failed. The token source never returns it: on any store failure
/// it fetches from the token endpoint itself, and says so in a `tracing` warning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within the shared cache's store timeout.
    #[error(
        "the token store did not answer within {0:?}: tokens are fetched directly until it does"
    )]
    Timeout(Duration),
    /// The store's address could not be read (a store's constructor, such as
    /// [`RedisStore::new`](crate::shared_cache::RedisStore::new), returns it).
    #[error("the token store's URL is not valid: check its scheme, host, port and database")]
    InvalidUrl(#[source] BoxError),
    /// The store answered with an error, or could not be reached.
    #[error("the token store failed: tokens are fetched directly until it answers")]
    Failed(#[source] BoxError),
}
