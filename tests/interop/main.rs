//! Against real authorization servers: two oidc-provider instances on 127.0.0.1, one plain and
//! one over https for mutual TLS, which `scripts/test` installs and starts (it sets
//! `OIDC_PROVIDER_URL` and `OIDC_MTLS_URL`), and the embedded test server's resource trusting
//! the first one's tokens. Without them every test here fails: none skips.

#[path = "../support/mod.rs"]
mod support;

mod authorized;
mod mtls;
mod oidc_provider;
mod resource;
