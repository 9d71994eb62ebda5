//! The shared token cache's store on Redis (or Valkey, which speaks the same protocol and
//! commands), through the `redis` crate's Tokio [`ConnectionManager`], which reconnects by
//! itself after the server comes back.
//!
//! `RedisStore` talks to one server (or a primary behind a proxy or Sentinel's address). For
//! Redis Cluster, implement [`TokenStore`] over the `redis` crate's cluster connection with
//! the same commands: each is on one key (the release and renewal scripts too), and an entry and its
//! lease share a hash tag (the digest in braces), so both land on one shard and a failover
//! moves them together. Valkey speaks the same protocol and commands (`GET`, `SET … PX`,
//! `SET … NX PX`, `EVALSHA`), so `RedisStore` works against it unchanged.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo as _, Script, TlsCertificates};

use crate::endpoint::is_loopback;
use crate::store::{StoreError, StoreFuture, TokenStore};

/// Releases a lease only if its holder still holds it, in one step on the server.
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Sets a lease's time to live only if its holder still holds it, in one step on the server.
const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// How long the connection manager waits to connect, and for a reply: the shared cache bounds
/// each call more tightly still.
const CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// A [`TokenStore`] on one Redis (or Valkey) server, for a
/// [`SharedCache`](crate::shared_cache::SharedCache).
///
/// ```no_run
/// # fn run() -> Result<(), client_credentials::shared_cache::StoreError> {
/// use client_credentials::shared_cache::RedisStore;
///
/// // TLS (rustls), checked against the system's root certificates: Azure Cache for Redis,
/// // ElastiCache with in-transit encryption, Upstash.
/// let store = RedisStore::new("rediss://:password@cache.example.com:6380/0")?;
/// // In clear, only to this host.
/// let local = RedisStore::new("redis://127.0.0.1:6379/")?;
/// # let _ = (store, local); Ok(()) }
/// ```
///
/// Plain `redis://` carries the Redis password, and every entry, in clear: it is taken only for
/// a loopback host (or a Unix socket) unless the caller says so by name
/// ([`insecure_plaintext`](Self::insecure_plaintext)). A shared cache that stores tokens in
/// clear refuses such a store ([`SharedCache::insecure_plaintext`](crate::shared_cache::SharedCache::insecure_plaintext)).
///
/// It connects on its first call (inside a Tokio runtime) and reconnects by itself after a
/// failure; it never blocks a caller longer than the shared cache's store timeout.
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStore {
    client: Client,
    connection: Mutex<Option<ConnectionManager>>,
    release: Script,
    renew: Script,
    /// Whether the connection is private: TLS, a loopback host or a Unix socket.
    private: bool,
}

impl RedisStore {
    /// A store at `url`: `rediss://host:port/db` over TLS (rustls, the server's certificate
    /// checked against the system's root certificates and its name), `redis://` to a loopback
    /// host, or `redis+unix:///path`. Nothing is sent until the first call.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] if the URL is not a Redis URL, if it is plain `redis://` to
    /// a host that is not loopback (use `rediss://`, or
    /// [`insecure_plaintext`](Self::insecure_plaintext)), or if it turns off the TLS name check
    /// (`#insecure`).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::open(url, None, false)
    }

    /// A store at a `rediss://` `url` whose certificate is checked against `root_certificates`
    /// (PEM: a private certificate authority's) instead of the system's.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`StoreError::InvalidUrl`] if `url` is not `rediss://` or the
    /// certificates are not PEM.
    pub fn with_root_certificates(url: &str, root_certificates: &[u8]) -> Result<Self, StoreError> {
        Self::open(url, Some(root_certificates), false)
    }

    /// A store at `url` that may be plain `redis://` to any host: the Redis password and every
    /// entry cross the network in clear, where anyone on the way can read them (the entries
    /// stay sealed by the shared cache's key, the password does not). Only for a network you
    /// trust as you trust this host; prefer `rediss://`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] if the URL is not a Redis URL.
    pub fn insecure_plaintext(url: &str) -> Result<Self, StoreError> {
        Self::open(url, None, true)
    }

    fn open(
        url: &str,
        root_certificates: Option<&[u8]>,
        allow_plaintext: bool,
    ) -> Result<Self, StoreError> {
        let invalid = |reason: &'static str| StoreError::InvalidUrl(reason.into());
        let info = url
            .into_connection_info()
            .map_err(|error| StoreError::InvalidUrl(Box::new(error)))?;
        let private = match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(invalid(
                    "the url turns off the tls name check (#insecure): remove it, and give the server's certificate authority with RedisStore::with_root_certificates",
                ));
            }
            ConnectionAddr::TcpTls { .. } => true,
            ConnectionAddr::Unix(_) => true,
            ConnectionAddr::Tcp(host, _) => is_loopback(host),
            // An address kind of a later `redis` crate: not known to be private.
            _ => false,
        };
        if !private && !allow_plaintext {
            return Err(invalid(
                "plain redis:// sends the password and the entries in clear to a host that is not loopback: use rediss://, or RedisStore::insecure_plaintext",
            ));
        }
        let client = match root_certificates {
            None => Client::open(info),
            Some(pem) => {
                if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
                    return Err(invalid(
                        "root certificates are for a rediss:// url: the connection is not tls",
                    ));
                }
                let certificates = TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                };
                Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|error| StoreError::InvalidUrl(Box::new(error)))?;
        Ok(Self {
            client,
            connection: Mutex::new(None),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
            private,
        })
    }

    /// The connection manager, made on first use (it needs the Tokio runtime it runs in).
    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(manager) = &*connection {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let manager =
            ConnectionManager::new_lazy_with_config(self.client.clone(), config).map_err(failed)?;
        *connection = Some(manager.clone());
        Ok(manager)
    }
}

impl RedisStore {
    /// Runs a lease `script` on `key` for `holder` (and a time to live in milliseconds).
    async fn run(
        &self,
        script: &Script,
        key: &str,
        holder: &str,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        let mut connection = self.connection()?;
        let mut invocation = script.key(key);
        invocation.arg(holder);
        if let Some(ttl) = ttl {
            invocation.arg(millis(ttl));
        }
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(failed)
    }
}

fn failed(error: redis::RedisError) -> StoreError {
    StoreError::Failed(Box::new(error))
}

/// A time to live in whole milliseconds, at least one (`PX 0` is an error).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl TokenStore for RedisStore {
    fn is_private(&self) -> bool {
        self.private
    }

    fn read<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut connection = self.connection()?;
            // At most one byte more than an entry may hold: a longer value (planted, or a
            // foreign key's) is read no further and refused as too long, however large it is.
            // A missing key reads as empty, which no entry is.
            let value: Vec<u8> = redis::cmd("GETRANGE")
                .arg(key)
                .arg(0)
                .arg(crate::store::entry::MAX_ENTRY_LEN)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok((!value.is_empty()).then_some(value))
        })
    }

    fn write<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection()?;
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut connection)
                .await
                .map_err(failed)
        })
    }

    fn take_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection()?;
            let taken: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(holder)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(taken.is_some())
        })
    }

    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _released = self.run(&self.release, key, holder, None).await?;
            Ok(())
        })
    }

    fn renew_lease<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.run(&self.renew, key, holder, Some(ttl)).await? == 1) })
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the server's address.
        let info = self.client.get_connection_info();
        f.debug_struct("RedisStore")
            .field("addr", &info.addr().to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_is_not_redis_is_a_typed_error_that_shows_no_password() {
        let error = RedisStore::new("http://user:hunter2@127.0.0.1/")
            .err()
            .unwrap();
        assert!(matches!(error, StoreError::InvalidUrl(_)));
        let chain = format!("{error} {:?}", std::error::Error::source(&error));
        assert!(!chain.contains("hunter2"), "{chain}");
        let store = RedisStore::new("redis://:hunter2@127.0.0.1:6379/0").unwrap();
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
