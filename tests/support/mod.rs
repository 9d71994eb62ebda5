//! Helpers shared by the test binaries, each of which takes them by `mod support;`.

pub mod adapters;
pub mod responses;
