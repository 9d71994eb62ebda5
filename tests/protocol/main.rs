//! The protocol core through its public API alone: provider responses row by row, and the
//! property laws of building, parsing and caching. No server, no network.

#[path = "../support/mod.rs"]
mod support;

mod cache_properties;
mod properties;
mod providers;
