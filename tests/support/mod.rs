//! Helpers shared by the test binaries, each of which takes them by `mod support;`.

#[cfg(all(feature = "reqwest", feature = "reqwest-blocking", feature = "hyper"))]
pub mod adapters;
pub mod responses;
