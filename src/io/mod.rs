//! The IO layer: everything that touches a socket, a clock, a file or the random source, and
//! only translates types for the core, whose decisions it drives. By sub-layer:
//!
//! - `environment.rs`: every clock and random read;
//! - `transport/`: one file per HTTP client, implementing `Transport`, and what they share;
//! - `source/`: the token source (its hit path and the cache it drives), its blocking twin, and
//!   the fleet's shared cache with its Redis store;
//! - `call/`: the loop of an authorized call, and the tower layer and reqwest middleware that
//!   drive it;
//! - `assertion_file.rs`: the workload identity file and its presets.

pub(crate) mod assertion_file;
#[cfg(any(feature = "tower", feature = "reqwest-middleware"))]
pub(crate) mod call;
pub(crate) mod environment;
pub(crate) mod source;
#[cfg(feature = "__transport")]
pub(crate) mod transport;
