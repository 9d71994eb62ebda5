//! The token (RFC 6749 §5.1) and its lifetime, judged against times the caller passes in.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use http::header::AUTHORIZATION;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use crate::secret::{AccessToken, RefreshToken};

/// An access token and what the server said about it.
#[derive(Clone)]
pub struct Token {
    pub(crate) access_token: AccessToken,
    pub(crate) token_type: TokenType,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) sent_at: SystemTime,
    pub(crate) scope: Option<Arc<str>>,
    pub(crate) refresh_token: Option<RefreshToken>,
    pub(crate) extra: Map<String, Value>,
    /// The `Authorization` value, made on first use and then shared: a layer presenting the
    /// same cached token on call after call copies and checks its bytes once, without a lock.
    pub(crate) authorization: OnceLock<HeaderValue>,
}

impl Token {
    /// The longest lifetime a token is taken to have: about 136 years. A larger `expires_in` is
    /// clamped to it, so no arithmetic on it can overflow.
    pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(u32::MAX as u64);

    /// The access token.
    #[must_use]
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// Whether `other` carries the same access token: what an API's refusal names, whatever
    /// else differs (another `Arc`, a copy read from a store).
    pub(crate) fn same_access_token(&self, other: &Token) -> bool {
        self.access_token.secret() == other.access_token.secret()
    }

    /// The token type, which says how to present the token (RFC 6749 §7.1).
    #[must_use]
    pub fn token_type(&self) -> &TokenType {
        &self.token_type
    }

    /// The lifetime the server gave (`expires_in`), clamped to [`Token::MAX_EXPIRES_IN`]; `None` if it
    /// gave none, in which case the lifetime is unknown.
    #[must_use]
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// When the request that got this token was sent: the start of its lifetime.
    #[must_use]
    pub fn sent_at(&self) -> SystemTime {
        self.sent_at
    }

    /// When the token expires, counted from when the request was sent so that the estimate errs
    /// early; `None` if the lifetime is unknown.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        let lifetime = self.expires_in?;
        // Only a `sent_at` within 136 years of the end of time fails this; then expire at once.
        Some(self.sent_at.checked_add(lifetime).unwrap_or(self.sent_at))
    }

    /// Whether the token has expired at `now`. A token of unknown lifetime never does: decide
    /// for yourself how long to keep one (the token cache does, by a documented default).
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_within(now, Duration::ZERO)
    }

    /// Whether the token expires within `margin` of `now`: the test for refreshing early.
    #[must_use]
    pub fn expires_within(&self, now: SystemTime, margin: Duration) -> bool {
        self.expires_at().is_some_and(|expires_at| {
            now.checked_add(margin)
                .is_none_or(|deadline| deadline >= expires_at)
        })
    }

    /// The granted scope, space-separated: as the server sent it (a JSON array joined by
    /// spaces), or the requested scope where the server left it out (RFC 6749 §5.1) and the
    /// token was parsed by [`TokenRequest::parse_response`](crate::TokenRequest::parse_response).
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// The refresh token, which the server should not have sent (RFC 6749 §4.4.3) but some do.
    #[must_use]
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// A member of the response other than the ones read above (`id_token`,
    /// `ext_expires_in`, `issued_token_type`, …), by name.
    #[must_use]
    pub fn extra(&self, name: &str) -> Option<&Value> {
        self.extra.get(name)
    }

    /// Every other member of the response, for deserializing into the caller's own type.
    #[must_use]
    pub fn extras(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// The other members of the response, deserialized into a type of the caller's.
    ///
    /// # Errors
    ///
    /// The deserializer's error if the members do not fit `T`.
    pub fn extras_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(serde::de::value::MapDeserializer::new(
            self.extra
                .iter()
                .map(|(name, value)| (name.as_str(), value)),
        ))
    }

    /// The `Authorization` header value that presents this token to a resource server:
    /// `<scheme> <token>`, marked sensitive so that `http`'s `Debug` and well-behaved loggers
    /// leave it out.
    ///
    /// The scheme is the [token type](Self::token_type): `Bearer` for a bearer token
    /// ([RFC 6750 §2.1]), and the type as the server sent it otherwise. A
    /// [`DPoP`](TokenType::DPoP) token needs a DPoP proof next to this header ([RFC 9449 §7.1]):
    /// present it with `DpopKey::authorize` (feature `jwt`), which sets both.
    ///
    /// ```
    /// # use std::time::SystemTime;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let response = http::Response::builder()
    /// #     .status(200)
    /// #     .header("content-type", "application/json")
    /// #     .body(r#"{"access_token":"eyJ...","token_type":"bearer","expires_in":3600}"#)?;
    /// # let request = client_credentials::ClientCredentials::new(
    /// #     client_credentials::TokenUrl::new("https://idp.example.com/token")?,
    /// #     "c",
    /// #     client_credentials::ClientSecret::new("s"),
    /// # )
    /// # .token_request()
    /// # .build()?;
    /// # let token = request.parse_response(&response, SystemTime::UNIX_EPOCH)?;
    /// let value = token.authorization_header()?;
    /// assert_eq!(value, "Bearer eyJ...");
    /// assert!(value.is_sensitive());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::TokenNotHeaderSafe`](crate::Error::TokenNotHeaderSafe) if the token or its type
    /// has characters an HTTP header cannot carry.
    ///
    /// [RFC 6750 §2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
    /// [RFC 9449 §7.1]: https://www.rfc-editor.org/rfc/rfc9449#section-7.1
    pub fn authorization_header(&self) -> Result<HeaderValue, crate::error::Error> {
        if let Some(value) = self.authorization.get() {
            return Ok(value.clone());
        }
        let value = authorization_value(self.token_type.as_str(), &self.access_token)?;
        // Another thread may have set it first: the same value.
        let _ = self.authorization.set(value.clone());
        Ok(value)
    }

    /// Puts the token on a request to a resource server: sets its `Authorization` header to
    /// [`authorization_header`](Self::authorization_header), replacing any there.
    ///
    /// For a [`DPoP`](TokenType::DPoP) token use `DpopKey::authorize` (feature `jwt`) instead,
    /// which adds the DPoP proof the token is useless without.
    ///
    /// # Errors
    ///
    /// As [`authorization_header`](Self::authorization_header); the request is then left as
    /// it was.
    pub fn authorize<B>(&self, request: &mut http::Request<B>) -> Result<(), crate::error::Error> {
        let value = self.authorization_header()?;
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(())
    }

    pub(crate) fn with_default_scope(mut self, requested: &Arc<str>) -> Self {
        if self.scope.is_none() {
            self.scope = Some(Arc::clone(requested));
        }
        self
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Extra members are listed by name only: an `id_token` is as sensitive as the token.
        let extra_names: Vec<&str> = self.extra.keys().map(String::as_str).collect();
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("sent_at", &self.sent_at)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token)
            .field("extra_names", &extra_names)
            .finish()
    }
}

/// `<scheme> <token>`, marked sensitive: the `Authorization` value of a resource request.
pub(crate) fn authorization_value(
    scheme: &str,
    access_token: &AccessToken,
) -> Result<HeaderValue, crate::error::Error> {
    let secret = access_token.secret();
    let mut value = Vec::with_capacity(scheme.len() + 1 + secret.len());
    value.extend_from_slice(scheme.as_bytes());
    value.push(b' ');
    value.extend_from_slice(secret.as_bytes());
    let mut value = HeaderValue::from_maybe_shared(value)
        .map_err(|_| crate::error::Error::TokenNotHeaderSafe)?;
    value.set_sensitive(true);
    Ok(value)
}

/// How a token is presented to a resource server (RFC 6749 §7.1), compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449): the token is bound to a key.
    DPoP,
    /// `N_A` (RFC 8693 §2.2.1): the token is not an access token.
    NotApplicable,
    /// Any other type, kept as the server sent it.
    Other(Box<str>),
}

impl TokenType {
    /// Reads a token type, ignoring case (RFC 6749 §5.1).
    #[must_use]
    pub fn parse(token_type: &str) -> Self {
        if token_type.eq_ignore_ascii_case("bearer") {
            Self::Bearer
        } else if token_type.eq_ignore_ascii_case("dpop") {
            Self::DPoP
        } else if token_type.eq_ignore_ascii_case("n_a") {
            Self::NotApplicable
        } else {
            Self::Other(token_type.into())
        }
    }

    /// The type's canonical spelling, which is also its `Authorization` scheme.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
            Self::NotApplicable => "N_A",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;

    fn token(expires_in: Option<u64>) -> Token {
        Token {
            access_token: AccessToken::new("hunter2"),
            token_type: TokenType::Bearer,
            expires_in: expires_in.map(Duration::from_secs),
            sent_at: at(1_000),
            scope: Some("a  b".into()),
            refresh_token: Some(RefreshToken::new("swordfish")),
            extra: serde_json::from_str(r#"{"id_token":"xyz","ext_expires_in":7200}"#).unwrap(),
            authorization: OnceLock::new(),
        }
    }

    #[test]
    fn expiry_counts_from_sent_at_rfc6749_5_1() {
        let token = token(Some(100));
        assert_eq!(token.expires_at(), Some(at(1_100)));
        assert!(!token.is_expired(at(1_099)));
        assert!(token.is_expired(at(1_100)));
        assert!(!token.expires_within(at(1_089), Duration::from_secs(10)));
        assert!(token.expires_within(at(1_090), Duration::from_secs(10)));
        assert!(
            token.expires_within(at(1_000), Duration::MAX),
            "no overflow"
        );
    }

    #[test]
    fn unknown_lifetime_never_expires_by_itself() {
        let token = token(None);
        assert_eq!(token.expires_at(), None);
        assert!(!token.is_expired(at(u32::MAX.into())));
    }

    #[test]
    fn token_type_is_case_insensitive_rfc6749_5_1() {
        assert_eq!(TokenType::parse("bEaReR"), TokenType::Bearer);
        assert_eq!(TokenType::parse("dpop"), TokenType::DPoP);
        assert_eq!(TokenType::parse("N_A"), TokenType::NotApplicable);
        assert_eq!(TokenType::parse("MAC").as_str(), "MAC");
    }

    #[test]
    fn scopes_and_extras() {
        let token = token(None);
        assert_eq!(token.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(token.extra("ext_expires_in"), Some(&Value::from(7200)));
        #[derive(serde::Deserialize)]
        struct Extra {
            ext_expires_in: u64,
        }
        assert_eq!(token.extras_as::<Extra>().unwrap().ext_expires_in, 7200);
    }

    #[test]
    fn authorization_header_rfc6750_2_1() {
        let bearer = token(Some(1));
        let value = bearer.authorization_header().unwrap();
        assert_eq!(value, "Bearer hunter2");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("hunter2"));

        let mut dpop = token(Some(1));
        dpop.token_type = TokenType::parse("dpop");
        let mut request = http::Request::get("https://api.example.com/things")
            .header(AUTHORIZATION, "Basic old")
            .body(())
            .unwrap();
        dpop.authorize(&mut request).unwrap();
        assert_eq!(request.headers().get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(request.headers()[AUTHORIZATION], "DPoP hunter2");
        assert!(request.headers()[AUTHORIZATION].is_sensitive());
        assert!(!format!("{request:?}").contains("hunter2"));

        let mut other = token(Some(1));
        other.token_type = TokenType::parse("MAC");
        assert_eq!(other.authorization_header().unwrap(), "MAC hunter2");
    }

    #[test]
    fn a_token_a_header_cannot_carry_is_a_typed_error() {
        for bad in ["line\nbreak", "nul\0", "del\u{7f}"] {
            let mut token = token(Some(1));
            token.access_token = AccessToken::new(bad);
            let mut request = http::Request::new(());
            let error = token.authorize(&mut request).unwrap_err();
            assert!(matches!(&error, crate::error::Error::TokenNotHeaderSafe));
            assert!(!error.to_string().contains(bad), "{error}");
            assert!(request.headers().is_empty());
        }
    }

    #[test]
    fn debug_hides_the_tokens_and_extra_values() {
        let text = format!("{:?}", token(Some(1)));
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("swordfish"));
        assert!(!text.contains("xyz"));
        assert!(text.contains("id_token"));
    }
}
