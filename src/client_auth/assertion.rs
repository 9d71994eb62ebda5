//! Client assertions that come from elsewhere for every attempt (RFC 7521 §4.2, RFC 7523 §2.2):
//! a workload identity token the platform writes to a file and rotates, or one a callback
//! fetches. The attempt loop ([`fetch_token`](crate::fetch::fetch_token)) awaits the
//! [`AssertionSource`] before each attempt and hands the assertion to the attempt; the source
//! does the IO (`io/assertion_file.rs` for a file), and the decisions are here, sans-IO: whether
//! the assertion held is still good at the attempt's time, and whether a file must be read.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;

use crate::client_auth::identity::{CredentialIdentity, Instance};
use crate::client_auth::jwt::BoxError;
use crate::client_auth::method::AuthMethod;
use crate::error::assertion::AssertionError;
use crate::secret::ClientAssertion;

/// The future of [`AssertionProvider::assertion`].
pub type AssertionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ClientAssertion, AssertionError>> + Send + 'a>>;

/// Something that gives a client assertion for an attempt made at `now`: a file the platform
/// rotates ([`AssertionFile`](crate::auth::AssertionFile), feature `token-source`), a callback
/// ([`AssertionSource::from_fn`]), or a provider of your own.
///
/// It is asked once per attempt, so it should hold its assertion and renew it only when needed.
pub trait AssertionProvider: Send + Sync {
    /// The assertion to send with an attempt made at `now` (the attempt's time, from its
    /// [`Transport`](crate::fetch::Transport)), still valid at `now`.
    fn assertion(&self, now: SystemTime) -> AssertionFuture<'_>;
}

/// Where a client's assertions come from, for [`ClientAuth::Source`](crate::auth::ClientAuth::Source):
/// a provider asked for a fresh assertion on every attempt, sent with the JWT bearer assertion
/// type as `private_key_jwt` (or the method you name with [`with_method`](Self::with_method)).
///
/// Every assertion is checked before it is sent: one whose `exp` has passed at the attempt's
/// time is [`AssertionError::Expired`], never a request the server refuses with
/// `invalid_client`.
///
/// ```
/// use client_credentials::{ClientCredentials, TokenUrl};
/// use client_credentials::auth::{AssertionSource, ClientAssertion, ClientAuth};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = AssertionSource::from_fn(|| async {
///     // Ask a metadata endpoint or a secrets manager for a signed JWT.
///     # let jwt = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.c2ln";
///     Ok(ClientAssertion::new(jwt))
/// });
/// let client = ClientCredentials::with_auth(
///     TokenUrl::new("https://idp.example.com/token")?,
///     "my-workload",
///     ClientAuth::Source(source),
/// )?;
/// assert_eq!(client.auth_method().as_str(), "private_key_jwt");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AssertionSource {
    provider: Arc<dyn AssertionProvider>,
    method: AuthMethod,
    identity: Option<Arc<str>>,
}

impl AssertionSource {
    /// The longest client assertion read or accepted: 64 KiB. A Kubernetes service-account token is
    /// about 1 KiB; anything this long is not an assertion.
    pub const MAX_ASSERTION_LEN: usize = 64 * 1024;

    /// Assertions from `provider`, sent as `private_key_jwt`.
    #[must_use]
    pub fn new(provider: impl AssertionProvider + 'static) -> Self {
        Self::from_arc(Arc::new(provider))
    }

    /// Like [`new`](Self::new), for a provider you keep a handle on.
    #[must_use]
    pub fn from_arc(provider: Arc<dyn AssertionProvider>) -> Self {
        Self {
            provider,
            method: AuthMethod::PrivateKeyJwt,
            identity: None,
        }
    }

    /// Assertions from an async callback, for assertions fetched from elsewhere (a metadata
    /// endpoint, a secrets manager). It is called once per attempt: cache in it what may be
    /// cached. Its error becomes [`AssertionError::Callback`]; it must not hold the assertion.
    ///
    /// Under the blocking adapter the callback's future must be ready when first polled.
    #[must_use]
    pub fn from_fn<F, Fut>(callback: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ClientAssertion, BoxError>> + Send + 'static,
    {
        Self::new(Callback(callback))
    }

    /// Names the method the assertions serve (`private_key_jwt` unless told otherwise): the
    /// method a cache key and discovery see. It does not change the request.
    #[must_use]
    pub fn with_method(mut self, method: AuthMethod) -> Self {
        self.method = method;
        self
    }

    /// The method the assertions serve.
    #[must_use]
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// Names the identity the assertions prove (such as the workload, or the service account
    /// the platform issues them to), so that a token cached for this source may be shared with
    /// another source of the same name: in the process, and through a fleet's
    /// [`SharedCache`](crate::shared_cache::SharedCache), where the name is stored only under a keyed hash.
    ///
    /// Without a name, a cached token is served only to requests of this very source (and its
    /// clones), and never shared through a store: this crate cannot tell whether two sources
    /// prove the same identity, and a token must never reach a caller whose credential was not
    /// checked. Give two sources the same name only when the server would issue them the same
    /// tokens.
    #[must_use]
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into().into());
        self
    }

    /// The source's credential as a cache key compares it.
    pub(crate) fn credential_identity(&self) -> CredentialIdentity {
        match &self.identity {
            Some(name) => CredentialIdentity::Stated(Arc::clone(name)),
            None => CredentialIdentity::Instance(Instance::of(&self.provider)),
        }
    }

    /// The assertion for an attempt made at `now`.
    ///
    /// # Errors
    ///
    /// The provider's [`AssertionError`].
    pub async fn assertion(&self, now: SystemTime) -> Result<ClientAssertion, AssertionError> {
        self.provider.assertion(now).await
    }
}

impl fmt::Debug for AssertionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSource")
            .field("method", &self.method)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

struct Callback<F>(F);

impl<F, Fut> AssertionProvider for Callback<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<ClientAssertion, BoxError>> + Send + 'static,
{
    fn assertion(&self, now: SystemTime) -> AssertionFuture<'_> {
        let pending = (self.0)();
        Box::pin(async move {
            let assertion = pending.await.map_err(AssertionError::Callback)?;
            // A callback may hand out an assertion that is not a JWT (RFC 7521 allows SAML):
            // only a readable `exp` is checked.
            if let Ok(exp) = expiry(assertion.secret()) {
                check_not_expired(exp, now, || "from the callback".into())?;
            }
            Ok(assertion)
        })
    }
}

/// The `exp` claim of a compact JWT (RFC 7519 §4.1.4), decoded and not verified: the assertion
/// is our own credential, and the server checks its signature.
///
/// # Errors
///
/// What makes it unreadable, for [`AssertionError::Malformed`].
pub(crate) fn expiry(jwt: &str) -> Result<u64, &'static str> {
    if jwt.len() > AssertionSource::MAX_ASSERTION_LEN {
        return Err("longer than any assertion");
    }
    let mut parts = jwt.split('.');
    let (Some(_header), Some(claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    let claims = BASE64URL
        .decode(claims)
        .map_err(|_| "its claims are not base64url")?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&claims).map_err(|_| "its claims are not a JSON object")?;
    match claims.get("exp") {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .ok_or("its exp is not a date"),
        Some(_) => Err("its exp is not a number"),
        None => Err("it has no exp"),
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`AssertionError::Expired`] if `exp` has passed at `now` (RFC 7519 §4.1.4: on or after).
pub(crate) fn check_not_expired(
    exp: u64,
    now: SystemTime,
    origin: impl FnOnce() -> String,
) -> Result<(), AssertionError> {
    let now = unix(now);
    if now >= exp {
        return Err(AssertionError::Expired {
            origin: origin(),
            exp,
            now,
        });
    }
    Ok(())
}

#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
/// What identifies a version of a file without reading it: its modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub(crate) modified: Option<SystemTime>,
    pub(crate) len: u64,
}

#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
/// The assertion a file source holds, with the stamp of the file it was read from.
/// Debug is safe: the assertion redacts itself.
#[derive(Clone, Debug)]
pub(crate) struct HeldAssertion {
    pub(crate) assertion: ClientAssertion,
    pub(crate) exp: u64,
    pub(crate) stamp: FileStamp,
}

#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
impl HeldAssertion {
    /// Reads an assertion from a file's contents (surrounding whitespace trimmed, as kubelet and
    /// hand-written files differ in a final newline).
    pub(crate) fn parse(
        contents: &str,
        stamp: FileStamp,
        origin: impl FnOnce() -> String,
    ) -> Result<Self, AssertionError> {
        let jwt = contents.trim();
        if jwt.is_empty() {
            return Err(AssertionError::Malformed {
                origin: origin(),
                reason: "the file is empty",
            });
        }
        let exp = expiry(jwt).map_err(|reason| AssertionError::Malformed {
            origin: origin(),
            reason,
        })?;
        Ok(Self {
            assertion: ClientAssertion::new(jwt),
            exp,
            stamp,
        })
    }
}

#[cfg_attr(not(feature = "token-source"), allow(dead_code))]
/// Whether a file source must read its file for an attempt at `now`: when it holds nothing,
/// when the file changed (another modification time or length), or when the assertion it
/// holds expires within `renew_before` of `now` (a rewrite that kept both stamps). Otherwise
/// the assertion held serves, with no read.
pub(crate) fn must_read(
    held: Option<&HeldAssertion>,
    stamp: FileStamp,
    now: SystemTime,
    renew_before: Duration,
) -> bool {
    match held {
        None => true,
        Some(held) => {
            held.stamp != stamp || unix(now).saturating_add(renew_before.as_secs()) >= held.exp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;

    fn jwt(claims: &str) -> String {
        format!(
            "eyJhbGciOiJFUzI1NiJ9.{}.c2ln",
            BASE64URL.encode(claims.as_bytes())
        )
    }

    fn stamp(modified: u64, len: u64) -> FileStamp {
        FileStamp {
            modified: Some(at(modified)),
            len,
        }
    }

    #[test]
    fn expiry_is_decoded_without_verification() {
        assert_eq!(
            expiry(&jwt(r#"{"exp":1700000060,"sub":"x"}"#)),
            Ok(1_700_000_060)
        );
        assert_eq!(expiry(&jwt(r#"{"exp":17.9}"#)), Ok(17));
        assert_eq!(expiry(&jwt(r#"{"sub":"x"}"#)), Err("it has no exp"));
        assert_eq!(
            expiry(&jwt(r#"{"exp":"soon"}"#)),
            Err("its exp is not a number")
        );
        assert_eq!(expiry(&jwt(r#"{"exp":-1}"#)), Err("its exp is not a date"));
        assert_eq!(expiry(&jwt("[1]")), Err("its claims are not a JSON object"));
        assert_eq!(expiry("a.b"), Err("not three dot-separated parts"));
        assert_eq!(expiry("a.b.c.d"), Err("not three dot-separated parts"));
        assert_eq!(expiry("a.!!.c"), Err("its claims are not base64url"));
        assert_eq!(
            expiry(&"a".repeat(AssertionSource::MAX_ASSERTION_LEN + 1)),
            Err("longer than any assertion")
        );
    }

    #[test]
    fn an_expired_assertion_is_refused_naming_its_origin_not_its_value() {
        assert!(check_not_expired(100, at(99), || "x".into()).is_ok());
        let error = check_not_expired(100, at(100), || "in /run/token".into()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("in /run/token"), "{text}");
        assert!(text.contains("expired 0 s before"), "{text}");
        let error = check_not_expired(100, at(160), || "in /run/token".into()).unwrap_err();
        assert!(error.to_string().contains("expired 60 s before"));
    }

    #[test]
    fn parse_trims_and_refuses_empty_and_non_jwt_files() {
        let token = jwt(r#"{"exp":200}"#);
        let held = HeldAssertion::parse(&format!("{token}\n"), stamp(1, 5), String::new).unwrap();
        assert_eq!(held.assertion.secret(), token);
        assert_eq!(held.exp, 200);
        for (contents, reason) in [(" \n", "the file is empty"), ("hunter2", "not three")] {
            let error = HeldAssertion::parse(contents, stamp(1, 5), || "in f".into()).unwrap_err();
            let AssertionError::Malformed { reason: got, .. } = &error else {
                panic!("{error:?}")
            };
            assert!(got.starts_with(reason), "{got}");
            assert!(!error.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn a_file_is_read_only_when_it_changed_or_its_assertion_nears_exp() {
        let renew = Duration::from_secs(30);
        assert!(must_read(None, stamp(1, 10), at(0), renew), "nothing held");
        let held = HeldAssertion {
            assertion: ClientAssertion::new("a.b.c"),
            exp: 1_000,
            stamp: stamp(1, 10),
        };
        assert!(!must_read(Some(&held), stamp(1, 10), at(0), renew));
        assert!(!must_read(Some(&held), stamp(1, 10), at(969), renew));
        assert!(
            must_read(Some(&held), stamp(1, 10), at(970), renew),
            "near exp"
        );
        assert!(
            must_read(Some(&held), stamp(1, 10), at(5_000), renew),
            "expired"
        );
        assert!(
            must_read(Some(&held), stamp(2, 10), at(0), renew),
            "rewritten"
        );
        assert!(must_read(Some(&held), stamp(1, 11), at(0), renew), "longer");
        let no_mtime = FileStamp {
            modified: None,
            len: 10,
        };
        assert!(must_read(Some(&held), no_mtime, at(0), renew));
    }

    #[test]
    fn a_request_carries_the_assertion_it_is_given_and_refuses_to_go_without() {
        use crate::attempt::Attempt;
        use crate::client::ClientCredentials;
        use crate::client_auth::ClientAuth;
        use crate::endpoint::TokenUrl;
        let source = AssertionSource::from_fn(|| async { Ok(ClientAssertion::new("unused")) });
        let client = ClientCredentials::with_auth(
            TokenUrl::new("https://as.example.com/token").unwrap(),
            "c",
            ClientAuth::Source(source),
        )
        .unwrap();
        let request = client.token_request().scope("a").build().unwrap();
        assert!(request.assertion_source().is_some());
        assert!(!request.signs_each_attempt(), "no entropy needed");
        let attempt = Attempt::new(at(1), [0; 32]);
        assert!(matches!(
            request.http_request(&attempt),
            Err(crate::error::Error::ClientAssertion(
                AssertionError::NotSupplied
            ))
        ));
        let http = request
            .http_request_with_assertion(&attempt, &ClientAssertion::new("h.p.s+/="))
            .unwrap();
        assert_eq!(
            String::from_utf8(http.body().secret().to_vec()).unwrap(),
            "grant_type=client_credentials&client_id=c&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&scope=a\
             &client_assertion=h.p.s%2B%2F%3D"
        );
    }

    proptest::proptest! {
        /// Any file contents give an assertion or a typed error, never a panic, and the error
        /// never quotes them.
        #[test]
        fn parse_never_panics_nor_quotes_the_contents(contents in "[a-zA-Z0-9._\\-=\\s]{0,200}") {
            if let Err(error) = HeldAssertion::parse(&contents, stamp(0, 0), || "in f".into()) {
                let text = error.to_string();
                let trimmed = contents.trim();
                proptest::prop_assert!(trimmed.len() < 8 || !text.contains(trimmed), "{}", text);
            }
        }

        /// The laws of `must_read`: a changed file is always read; an assertion held is always
        /// read again within `renew_before` of its `exp`; otherwise the file is never read.
        #[test]
        fn must_read_reads_exactly_when_changed_or_near_exp(
            exp in 0u64..10_000,
            now in 0u64..10_000,
            renew in 0u64..1_000,
            held_len in 0u64..4,
            len in 0u64..4,
            held_mtime in 0u64..4,
            mtime in 0u64..4,
        ) {
            let held = HeldAssertion {
                assertion: ClientAssertion::new("a.b.c"),
                exp,
                stamp: stamp(held_mtime, held_len),
            };
            let read = must_read(Some(&held), stamp(mtime, len), at(now), Duration::from_secs(renew));
            let changed = held_len != len || held_mtime != mtime;
            proptest::prop_assert_eq!(read, changed || now + renew >= exp);
        }
    }

    #[test]
    fn debug_names_the_method_only() {
        let source = AssertionSource::from_fn(|| async { Ok(ClientAssertion::new("hunter2")) });
        let text = format!("{source:?}");
        assert!(text.contains("PrivateKeyJwt"), "{text}");
        assert!(!text.contains("hunter2"));
        let source = source.with_method(AuthMethod::ClientAssertion);
        assert_eq!(source.method(), AuthMethod::ClientAssertion);
    }
}
