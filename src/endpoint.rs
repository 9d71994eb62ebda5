//! The token endpoint URL, validated once at construction.

use std::fmt;
use std::net::IpAddr;

use http::Uri;

use crate::error::Error;

/// The URL of an authorization server's token endpoint (RFC 6749 §3.2).
///
/// Validated once, at construction: an absolute `https` URL with a host, no user information and
/// no fragment (§3.2: "MUST NOT include a fragment component"); a query is kept (§3.2: "MAY
/// include a query component"). Plain `http` is accepted only for loopback hosts (`127.0.0.0/8`,
/// `[::1]`, `localhost`), since the request carries the client's credentials (§3.2 requires TLS),
/// or through [`TokenUrl::insecure_allow_http`].
///
/// Cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenUrl(Uri);

/// Which URL schemes a constructor accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HttpPolicy {
    LoopbackOnly,
    InsecureAnyHost,
}

impl TokenUrl {
    /// Parses and validates a token endpoint URL.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTokenUrl`] if the URL is not absolute, has no host, holds user information
    /// or a fragment, or uses plain `http` for a host other than loopback.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::parse(url, HttpPolicy::LoopbackOnly)
    }

    /// Like [`TokenUrl::new`], but also accepts plain `http` for any host.
    ///
    /// # Security
    ///
    /// Over plain `http` the client secret and the token cross the network in clear text. Use
    /// this only inside a network you trust completely, such as a test cluster.
    ///
    /// # Errors
    ///
    /// As [`TokenUrl::new`], except for the loopback rule.
    pub fn insecure_allow_http(url: &str) -> Result<Self, Error> {
        Self::parse(url, HttpPolicy::InsecureAnyHost)
    }

    fn parse(url: &str, policy: HttpPolicy) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidTokenUrl { reason };
        // `http::Uri` drops a fragment silently, so look for one first.
        if url.contains('#') {
            return Err(invalid("it has a fragment (RFC 6749 §3.2)"));
        }
        let uri: Uri = url
            .parse()
            .map_err(|_| invalid("it is not a valid absolute url"))?;
        let authority = uri
            .authority()
            .ok_or(invalid("it is not an absolute url with a host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("it holds user information"));
        }
        if authority.host().is_empty() {
            return Err(invalid("it has no host"));
        }
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if policy == HttpPolicy::InsecureAnyHost => {}
            Some("http") if is_loopback(authority.host()) => {}
            Some("http") => {
                return Err(invalid(
                    "plain http is allowed only for loopback hosts; use https",
                ));
            }
            _ => return Err(invalid("its scheme is neither https nor http")),
        }
        Ok(Self(uri))
    }

    /// The URL as an `http::Uri`, whole, for building requests. Its `Debug` and `Display`
    /// show the query as `?…`, since a query may hold a secret; this one does not.
    #[must_use]
    pub fn as_uri(&self) -> &Uri {
        &self.0
    }

    /// The URL's host, without brackets around an IPv6 address.
    #[must_use]
    pub fn host(&self) -> &str {
        let host = self.0.host().unwrap_or_default();
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The URL as text with its query shown as `?…`: a query may hold an API key or a tenant
/// secret, and this text ends up in logs.
struct Redacted<'a>(&'a Uri);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        let scheme = uri.scheme_str().unwrap_or_default();
        let authority = uri.authority().map_or("", |a| a.as_str());
        write!(f, "{scheme}://{authority}{}", uri.path())?;
        if uri.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenUrl")
            .field(&Redacted(&self.0).to_string())
            .finish()
    }
}

/// The URL with its query, if any, shown as `?…`; [`TokenUrl::as_uri`] has it whole.
impl fmt::Display for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Redacted(&self.0), f)
    }
}

impl std::str::FromStr for TokenUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        Self::new(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(url: &str) -> &'static str {
        match TokenUrl::new(url) {
            Err(Error::InvalidTokenUrl { reason }) => reason,
            other => panic!("{url} gave {other:?}"),
        }
    }

    #[test]
    fn accepts_https_and_keeps_the_query() {
        let url = TokenUrl::new("https://idp.example.com/oauth2/token?tenant=a").unwrap();
        assert_eq!(
            url.as_uri().to_string(),
            "https://idp.example.com/oauth2/token?tenant=a"
        );
        assert_eq!(url.host(), "idp.example.com");
    }

    #[test]
    fn plain_http_only_on_loopback_rfc6749_3_2() {
        for ok in [
            "http://127.0.0.1:8080/token",
            "http://127.9.9.9/token",
            "http://[::1]:80/token",
            "http://localhost/token",
            "http://LOCALHOST:1/token",
        ] {
            assert!(TokenUrl::new(ok).is_ok(), "{ok}");
        }
        assert!(rejects("http://idp.example.com/token").contains("loopback"));
        assert!(rejects("http://10.0.0.1/token").contains("loopback"));
        assert!(rejects("http://localhost.example.com/token").contains("loopback"));
        assert!(TokenUrl::insecure_allow_http("http://idp.internal/token").is_ok());
        assert_eq!(
            TokenUrl::new("http://[::1]:8/t").unwrap().host(),
            "::1",
            "brackets are not part of the host"
        );
    }

    #[test]
    fn the_query_is_never_printed() {
        let url = TokenUrl::new("https://idp.example.com:8443/token?api_key=SECRET").unwrap();
        assert_eq!(url.to_string(), "https://idp.example.com:8443/token?…");
        assert_eq!(
            format!("{url:?}"),
            r#"TokenUrl("https://idp.example.com:8443/token?…")"#
        );
        assert!(
            url.as_uri().to_string().contains("api_key=SECRET"),
            "kept to send"
        );
        let plain = TokenUrl::new("http://127.0.0.1:8/token").unwrap();
        assert_eq!(plain.to_string(), "http://127.0.0.1:8/token");
    }

    #[test]
    fn rejects_fragments_rfc6749_3_2() {
        assert!(rejects("https://idp.example.com/token#x").contains("fragment"));
    }

    #[test]
    fn rejects_relative_userinfo_and_other_schemes() {
        assert!(rejects("/oauth/token").contains("absolute"));
        assert!(rejects("idp.example.com/token").contains("absolute"));
        assert!(rejects("https://user:pass@idp.example.com/token").contains("user"));
        assert!(rejects("ftp://idp.example.com/token").contains("scheme"));
        assert!(rejects("https://").contains("absolute"));
        assert!(rejects("not a url").contains("absolute"));
    }

    #[test]
    fn error_never_echoes_the_url() {
        let err = TokenUrl::new("https://user:hunter2@idp.example.com/token").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{err:?}").contains("hunter2"));
    }
}
