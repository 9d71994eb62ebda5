//! Every type that holds a secret, so that redaction is audited in one file.
//!
//! None of these types implements `Display`, and each one's `Debug` prints `[redacted]`. The
//! value is reachable only through a method named `secret`, so that code reading it stands out
//! in review.

use std::fmt;

use bytes::Bytes;

macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into().into_boxed_str())
            }

            /// The secret value itself.
            ///
            /// # Security
            ///
            /// Whoever holds this value holds the credential: never log it, print it or put it
            /// in an error message.
            #[must_use]
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_string!(
    /// A client secret shared with the authorization server (RFC 6749 §2.3.1).
    ClientSecret
);

secret_string!(
    /// An access token: whoever presents it gets the access it grants (RFC 6749 §1.4).
    AccessToken
);

secret_string!(
    /// A refresh token, which some servers send despite RFC 6749 §4.4.3.
    RefreshToken
);

secret_string!(
    /// A signed client assertion, such as a JWT for `private_key_jwt` (RFC 7521, RFC 7523).
    ClientAssertion
);

/// The body of a token request: an `application/x-www-form-urlencoded` form that may hold the
/// client secret or an assertion.
///
/// `Debug for http::Request` prints the body, so this type prints only its length. Cloning it is
/// cheap: the bytes are reference-counted.
#[derive(Clone)]
pub struct RequestBody(Bytes);

impl RequestBody {
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The encoded form.
    ///
    /// # Security
    ///
    /// Under `client_secret_post` or an assertion this holds the credential: never log it.
    #[must_use]
    pub fn secret(&self) -> &[u8] {
        &self.0
    }

    /// The encoded form, for handing to an HTTP client without a copy.
    ///
    /// # Security
    ///
    /// As with [`RequestBody::secret`], the bytes may hold the credential.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The length of the body in bytes, for a `Content-Length` header.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the body is empty (a token request body never is).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestBody([redacted; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(
            format!("{:?}", ClientSecret::new("hunter2")),
            "ClientSecret([redacted])"
        );
        assert_eq!(
            format!("{:?}", AccessToken::new("hunter2")),
            "AccessToken([redacted])"
        );
        assert_eq!(
            format!("{:?}", RefreshToken::new("hunter2")),
            "RefreshToken([redacted])"
        );
        assert_eq!(
            format!("{:?}", ClientAssertion::new("hunter2")),
            "ClientAssertion([redacted])"
        );
        let body = RequestBody::new(Bytes::from_static(b"client_secret=hunter2"));
        assert_eq!(format!("{body:?}"), "RequestBody([redacted; 21 bytes])");
    }

    #[test]
    fn secret_gives_the_value_back() {
        assert_eq!(ClientSecret::new("a b").secret(), "a b");
        let body = RequestBody::new(Bytes::from_static(b"x=1"));
        assert_eq!(body.secret(), b"x=1");
        assert_eq!(body.len(), 3);
        assert!(!body.is_empty());
        assert_eq!(body.into_bytes(), Bytes::from_static(b"x=1"));
    }
}
