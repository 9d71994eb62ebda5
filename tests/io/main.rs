//! The adapters and the token source against the embedded token server on 127.0.0.1: every
//! adapter through the one dispatcher in `tests/support`, faults, limits, timeouts and storms;
//! DPoP-bound tokens from the token endpoint to the protected resource.

#[path = "../support/mod.rs"]
mod support;

mod adapters;
mod assertions;
mod authorized;
mod entra;
mod observe;
mod resource;
mod shared_cache;
mod skew;
mod token_source;
