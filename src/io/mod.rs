//! The IO layer: one file per adapter (reqwest, hyper), the token source, and here what they
//! share: the one clock read and the random bytes of each attempt, and the process's DPoP nonce
//! store. Everything in this layer only translates types and does IO; the decisions are the
//! core's.

use std::time::SystemTime;

use crate::attempt::DpopNonces;
use crate::error::discovery::DiscoveryError;
use crate::error::{Error, TransportKind};

#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub(crate) mod source;

/// The latest DPoP nonce of each server, for every adapter in the process: a nonce learnt by
/// one request serves the next, whichever adapter sends it.
pub(crate) static DPOP_NONCES: DpopNonces = DpopNonces::new();

/// The time of an attempt, read once, just before it is built and sent: its JWTs' `iat` and
/// the token's `sent_at`.
#[allow(clippy::disallowed_methods)] // An adapter does the IO, so it reads the clock for the core.
pub(crate) fn send_time() -> SystemTime {
    SystemTime::now()
}

/// 32 bytes from the operating system's random source, for the `jti` of an attempt's JWTs.
pub(crate) fn entropy() -> Result<[u8; 32], Error> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).map_err(|error| Error::Transport {
        kind: TransportKind::Other,
        source: Box::new(error),
    })?;
    Ok(bytes)
}

/// A metadata body over its limit is the discovery error, which names the right limit to raise.
pub(crate) fn metadata_error(error: Error) -> Error {
    match error {
        Error::BodyTooLarge { limit } => DiscoveryError::BodyTooLarge { limit }.into(),
        other => other,
    }
}
