//! The protocol core through its public API alone: provider responses row by row, and the
//! property laws of building, parsing and caching. No server, no network.

#[path = "../support/mod.rs"]
mod support;

mod cache_properties;
#[cfg(feature = "shared-cache")]
mod fleet_properties;
#[cfg(feature = "shared-cache")]
mod fleet_sim;
mod properties;
mod providers;
