//! Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0): the request for the
//! document, the document parsed and checked, and the client authentication it allows.
//!
//! A client configured from an issuer alone:
//!
//! ```text
//!   Issuer ──MetadataRequest::oauth/openid──▶ http_request() ──▶ your HTTP client
//!                                                                   │
//!   ClientCredentials ◀──client(id, credentials)── ServerMetadata ◀─┘ parse_response()
//! ```

pub(crate) mod issuer;
pub(crate) mod material;
pub(crate) mod metadata;
pub(crate) mod request;

pub use issuer::Issuer;
pub use material::AuthMaterial;
pub use metadata::ServerMetadata;
pub use request::MetadataRequest;

#[cfg(test)]
mod tests;
