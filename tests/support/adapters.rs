//! The one adapter dispatcher of the test binaries: every adapter of the crate (reqwest, hyper,
//! blocking reqwest) behind one type, so a test runs the same exchange through each and names
//! the adapter in its failures.

// Each binary uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use client_credentials::discovery::{MetadataRequest, ServerMetadata};
use client_credentials::fetch::Session;
use client_credentials::reqwest::TIMEOUT;
use client_credentials::{Error, Token, TokenRequest};
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;

/// hyper's client over plain TCP, as most tests use it.
pub type Hyper = HyperClient<HttpConnector, Full<Bytes>>;

/// A boxed future of the dispatcher.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// A hyper client over any connector (plain TCP, or rustls presenting a client certificate),
/// its connector's type erased so that one [`Adapter`] holds any of them.
pub trait AnyHyper: Send + Sync {
    /// `client_credentials::hyper::fetch_token_in` with this client.
    fn fetch<'a>(
        &'a self,
        request: &'a TokenRequest,
        session: &'a Session,
        timeout: Duration,
    ) -> Boxed<'a, Token>;
    /// `client_credentials::hyper::fetch_metadata` with this client.
    fn fetch_metadata<'a>(
        &'a self,
        request: &'a MetadataRequest,
        timeout: Duration,
    ) -> Boxed<'a, ServerMetadata>;
}

impl<C: Connect + Clone + Send + Sync + 'static> AnyHyper for HyperClient<C, Full<Bytes>> {
    fn fetch<'a>(
        &'a self,
        request: &'a TokenRequest,
        session: &'a Session,
        timeout: Duration,
    ) -> Boxed<'a, Token> {
        Box::pin(client_credentials::hyper::fetch_token_in(
            self, request, session, timeout,
        ))
    }

    fn fetch_metadata<'a>(
        &'a self,
        request: &'a MetadataRequest,
        timeout: Duration,
    ) -> Boxed<'a, ServerMetadata> {
        Box::pin(client_credentials::hyper::fetch_metadata(
            self, request, timeout,
        ))
    }
}

/// An adapter, with its client (the blocking one builds its own on a thread of its own) and the
/// timeout of its whole exchange.
#[derive(Clone)]
pub enum Adapter {
    /// `client_credentials::reqwest` over the recommended client.
    Reqwest(reqwest::Client, Duration),
    /// `client_credentials::hyper` over plain TCP.
    Hyper(Arc<dyn AnyHyper>, Duration),
    /// `client_credentials::reqwest::blocking`, on a thread of its own.
    Blocking(Duration),
}

impl Adapter {
    /// The names of every adapter, as [`Adapter::named`] takes them.
    pub const NAMES: [&'static str; 3] = ["reqwest", "hyper", "reqwest blocking"];

    /// The reqwest adapter over the recommended client, bounded by `timeout` (else
    /// [`TIMEOUT`]).
    pub fn reqwest(timeout: Option<Duration>) -> Self {
        let client = client_credentials::reqwest::recommended_client_builder()
            .build()
            .expect("a reqwest client");
        Self::Reqwest(client, timeout.unwrap_or(TIMEOUT))
    }

    /// The hyper adapter over plain TCP, bounded by `timeout` (else [`TIMEOUT`]).
    pub fn hyper(timeout: Option<Duration>) -> Self {
        let client = HyperClient::builder(TokioExecutor::new()).build_http();
        Self::Hyper(Arc::new(client), timeout.unwrap_or(TIMEOUT))
    }

    /// The blocking adapter, bounded by `timeout` (else [`TIMEOUT`]).
    pub fn blocking(timeout: Option<Duration>) -> Self {
        Self::Blocking(timeout.unwrap_or(TIMEOUT))
    }

    /// Both async adapters.
    pub fn asynchronous(timeout: Option<Duration>) -> [Self; 2] {
        [Self::reqwest(timeout), Self::hyper(timeout)]
    }

    /// Every adapter.
    pub fn all(timeout: Option<Duration>) -> [Self; 3] {
        [
            Self::reqwest(timeout),
            Self::hyper(timeout),
            Self::blocking(timeout),
        ]
    }

    /// The adapter of that name (one of [`Adapter::NAMES`]), with a new client.
    pub fn named(name: &str) -> Self {
        match name {
            "reqwest" => Self::reqwest(None),
            "hyper" => Self::hyper(None),
            "reqwest blocking" => Self::blocking(None),
            other => panic!("no adapter is named {other:?}"),
        }
    }

    /// The adapter's name, for failure messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Reqwest(..) => "reqwest",
            Self::Hyper(..) => "hyper",
            Self::Blocking(_) => "reqwest blocking",
        }
    }

    /// Fetches a token for `request` in a session of its own, as the adapters' `fetch_token`.
    pub async fn fetch(&self, request: &TokenRequest) -> Result<Token, Error> {
        self.fetch_in(request, &Session::new()).await
    }

    /// Fetches a token for `request` in `session`, by the adapters' `fetch_token_in`: what
    /// one fetch learns of the server, the next in the session starts with.
    pub async fn fetch_in(
        &self,
        request: &TokenRequest,
        session: &Session,
    ) -> Result<Token, Error> {
        match self {
            Self::Reqwest(client, timeout) => {
                client_credentials::reqwest::fetch_token_in(client, request, session, *timeout)
                    .await
            }
            Self::Hyper(client, timeout) => client.fetch(request, session, *timeout).await,
            Self::Blocking(timeout) => fetch_blocking_in(request, session, Some(*timeout)),
        }
    }

    /// Fetches an issuer's metadata for `request`.
    pub async fn fetch_metadata(&self, request: &MetadataRequest) -> Result<ServerMetadata, Error> {
        match self {
            Self::Reqwest(client, timeout) => {
                client_credentials::reqwest::fetch_metadata(client, request, *timeout).await
            }
            Self::Hyper(client, timeout) => client.fetch_metadata(request, *timeout).await,
            Self::Blocking(timeout) => on_a_thread(|| {
                let client = client_credentials::reqwest::blocking::recommended_client();
                client_credentials::reqwest::blocking::fetch_metadata(&client, request, *timeout)
            }),
        }
    }
}

/// Every adapter's result for `request`, by name, one after the other in one session: what
/// one adapter's fetch learns of the server (a DPoP nonce, its clock), the next starts with.
pub async fn fetch_all(
    request: &TokenRequest,
    timeout: Option<Duration>,
) -> Vec<(&'static str, Result<Token, Error>)> {
    let session = Session::new();
    let mut results = Vec::new();
    for adapter in Adapter::all(timeout) {
        results.push((adapter.name(), adapter.fetch_in(request, &session).await));
    }
    results
}

/// The blocking adapter's result for `request`, its whole call bounded by `timeout` (else
/// [`TIMEOUT`]), with a new recommended client.
pub fn fetch_blocking(request: &TokenRequest, timeout: Option<Duration>) -> Result<Token, Error> {
    on_a_thread(|| {
        let client = client_credentials::reqwest::blocking::recommended_client();
        client_credentials::reqwest::blocking::fetch_token(
            &client,
            request,
            timeout.unwrap_or(TIMEOUT),
        )
    })
}

/// As [`fetch_blocking`], in `session`.
pub fn fetch_blocking_in(
    request: &TokenRequest,
    session: &Session,
    timeout: Option<Duration>,
) -> Result<Token, Error> {
    on_a_thread(|| {
        let client = client_credentials::reqwest::blocking::recommended_client();
        client_credentials::reqwest::blocking::fetch_token_in(
            &client,
            request,
            session,
            timeout.unwrap_or(TIMEOUT),
        )
    })
}

/// Runs `work` on a thread of its own: reqwest's blocking client may not be built or dropped
/// inside an async runtime.
fn on_a_thread<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(work)
            .join()
            .expect("the blocking exchange panicked")
    })
}
