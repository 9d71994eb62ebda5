//! The issuer identifier (RFC 8414 §2) and the metadata URLs built from it.

use std::fmt;

use http::Uri;

use crate::endpoint::is_loopback;
use crate::error::Error;
use crate::error::discovery::DiscoveryError;

/// An authorization server's issuer identifier (RFC 8414 §2): an `https` URL with no query and
/// no fragment. Plain `http` is accepted for loopback hosts only, as for [`TokenUrl`](crate::TokenUrl), or
/// through [`Issuer::insecure_allow_http`].
///
/// Kept exactly as given: the metadata's `issuer` must be identical to it (RFC 8414 §3.3).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Issuer {
    pub(crate) text: Box<str>,
    pub(crate) oauth_url: Uri,
    pub(crate) openid_url: Uri,
    pub(crate) insecure: bool,
}

impl Issuer {
    /// Parses and validates an issuer identifier.
    ///
    /// # Errors
    ///
    /// [`Error::Discovery`] with [`DiscoveryError::InvalidIssuer`] if the URL is not absolute,
    /// has a query, a fragment or user information, or uses plain `http` for a host other than
    /// loopback.
    pub fn new(issuer: &str) -> Result<Self, Error> {
        Self::parse(issuer, false)
    }

    /// Like [`Issuer::new`], but also accepts plain `http` for any host, and then for the token
    /// endpoint the metadata names.
    ///
    /// # Security
    ///
    /// Over plain `http` anyone on the path can rewrite the metadata and send the client's
    /// credentials where they like. Use this only inside a network you trust completely.
    ///
    /// # Errors
    ///
    /// As [`Issuer::new`], except for the loopback rule.
    pub fn insecure_allow_http(issuer: &str) -> Result<Self, Error> {
        Self::parse(issuer, true)
    }

    fn parse(issuer: &str, insecure: bool) -> Result<Self, Error> {
        let invalid = |reason| DiscoveryError::InvalidIssuer { reason }.into();
        if issuer.contains('#') {
            return Err(invalid("it has a fragment (RFC 8414 §2)"));
        }
        if issuer.contains('?') {
            return Err(invalid("it has a query (RFC 8414 §2)"));
        }
        let uri: Uri = issuer
            .parse()
            .map_err(|_| invalid("it is not a valid absolute url"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(invalid("it is not an absolute url with a host"));
        };
        if authority.as_str().contains('@') {
            return Err(invalid("it holds user information"));
        }
        if authority.host().is_empty() {
            return Err(invalid("it has no host"));
        }
        match scheme {
            "https" => {}
            "http" if insecure || is_loopback(authority.host()) => {}
            "http" => {
                return Err(invalid(
                    "plain http is allowed only for loopback hosts; use https",
                ));
            }
            _ => return Err(invalid("its scheme is neither https nor http")),
        }
        let base = format!("{scheme}://{authority}");
        // RFC 8414 §3.1 and OpenID Connect Discovery §4: a terminating `/` is removed first.
        let path = uri.path().trim_end_matches('/');
        let url = |text: String| {
            text.parse::<Uri>()
                .map_err(|_| invalid("its path cannot be extended to a well-known url"))
        };
        Ok(Self {
            text: issuer.into(),
            oauth_url: url(format!(
                "{base}/.well-known/oauth-authorization-server{path}"
            ))?,
            openid_url: url(format!("{base}{path}/.well-known/openid-configuration"))?,
            insecure,
        })
    }

    /// The issuer identifier, exactly as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The RFC 8414 metadata URL: `/.well-known/oauth-authorization-server` inserted between
    /// the host and the issuer's path (§3.1).
    #[must_use]
    pub fn oauth_metadata_url(&self) -> &Uri {
        &self.oauth_url
    }

    /// The OpenID Connect Discovery URL: the issuer, then `/.well-known/openid-configuration`
    /// (§4).
    #[must_use]
    pub fn openid_configuration_url(&self) -> &Uri {
        &self.openid_url
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Issuer").field(&self.text).finish()
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
