//! The HTTP client adapters. One file per HTTP client here, each
//! implementing [`Transport`](crate::fetch::Transport) and adding its `TokenSource`
//! constructors. Adding a client is one file here, one feature in `Cargo.toml` (enabling
//! `token-source` and `__transport`), and one `pub mod` line below.

mod shared;

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod hyper;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
