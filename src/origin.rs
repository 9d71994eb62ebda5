//! An origin (RFC 6454 §4): what tells one server from another, for what is kept per server (a
//! resource server's DPoP nonces, the API that last refused a token) and for judging only the
//! answers of the server a token was sent to.

use std::fmt;

use http::Uri;

/// Where a request went, or where its answer came from (RFC 6454 §4): a URI's scheme, host and
/// port, borrowed from it.
///
/// Two origins are the same when their schemes and hosts are, ignoring ASCII case, and their
/// ports are, a port left out standing for the scheme's default (80 for `http`, 443 for
/// `https`). An answer from another origin than the one a token was sent to (a redirect the
/// HTTP client followed) says nothing about that token: see
/// [`AuthorizedCall::handle_response_from`](crate::call::AuthorizedCall::handle_response_from).
///
/// ```
/// use client_credentials::call::Origin;
/// use client_credentials::http::Uri;
///
/// let sent: Uri = "https://API.example.com/things".parse()?;
/// let moved: Uri = "https://api.example.com:443/v2/things".parse()?;
/// let elsewhere: Uri = "https://login.example.com/signin".parse()?;
/// assert_eq!(Origin::of(&sent), Origin::of(&moved));
/// assert_ne!(Origin::of(&sent), Origin::of(&elsewhere));
/// assert_eq!(Origin::of(&"/relative".parse()?), None);
/// // One text for every spelling of an origin, to key what is kept per origin.
/// assert_eq!(Origin::of(&sent).unwrap().to_string(), "https://api.example.com:443");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    /// The port, the scheme's default when the URI names none (`None`: an unknown scheme's).
    port: Option<u16>,
}

impl<'a> Origin<'a> {
    /// The origin `scheme://host:port`; `port` `None` for the scheme's default.
    #[must_use]
    pub fn new(scheme: &'a str, host: &'a str, port: Option<u16>) -> Self {
        let port = port.or_else(|| {
            if scheme.eq_ignore_ascii_case("https") {
                Some(443)
            } else if scheme.eq_ignore_ascii_case("http") {
                Some(80)
            } else {
                None
            }
        });
        Self { scheme, host, port }
    }

    /// The origin of `uri`; `None` for a relative URI (without a scheme or a host).
    #[must_use]
    pub fn of(uri: &'a Uri) -> Option<Self> {
        Some(Self::new(uri.scheme_str()?, uri.host()?, uri.port_u16()))
    }

    /// The scheme, as the URI spells it.
    #[must_use]
    pub fn scheme(&self) -> &'a str {
        self.scheme
    }

    /// The host, as the URI spells it (an IPv6 address in brackets).
    #[must_use]
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The port: the URI's, or the scheme's default; `None` for a scheme without a known one.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl PartialEq for Origin<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.port == other.port
            && self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.host.eq_ignore_ascii_case(other.host)
    }
}

impl Eq for Origin<'_> {}

impl fmt::Display for Origin<'_> {
    /// `scheme://host:port`, lower-cased, the port the scheme's default when the URI left it
    /// out: one text for all the spellings of one origin, to key what is kept per origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, host) = (self.scheme, self.host);
        for part in [scheme, "://", host] {
            for c in part.chars() {
                write!(f, "{}", c.to_ascii_lowercase())?;
            }
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}
