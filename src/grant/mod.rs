//! Grants: what a token request asks for and on what ground (RFC 6749 §4), apart from who asks
//! (the client, `client.rs`) and how each attempt is built (`request.rs`). One file per grant;
//! client credentials ([`client_credentials`]) is the first. This module holds the seam, the
//! [`Grant`] trait, and the checks every grant's parameters share.

use std::sync::Arc;

use crate::error::Error;

pub(crate) mod client_credentials;

/// The name of the parameter that names the grant (RFC 6749 §4.4.2), set by the request for
/// every grant.
pub(crate) const GRANT_TYPE: &str = "grant_type";

/// A grant: its `grant_type`, its own parameters (checked when it is made, so a grant held is a
/// valid one), the names it reserves, the form pairs it sends and its part of the cache
/// identity. Immutable: nothing in a grant changes between attempts or requests.
///
/// A [`TokenRequest`](crate::TokenRequest) is a client plus a grant plus the caller's extra
/// parameters. The request sends `grant_type` first, then the client's authentication, then the
/// grant's [`form_pairs`](Self::form_pairs), then the extra parameters (refused if
/// [`reserved`](Self::reserved), named `grant_type` or a client authentication parameter); its
/// cache key is the client's fields, the grant type, the grant's
/// [`identity`](Self::identity) and the extra parameters. Whatever varies per attempt (the
/// client assertion, the DPoP proof, the nonce, the time) is the request's and the session's,
/// never the grant's.
///
/// A new grant is one file here implementing this trait, and one constructor on
/// [`ClientCredentials`](crate::ClientCredentials) (in `request.rs`) that checks its
/// parameters and calls `TokenRequest::new(client, grant, extra_params)`. The shared checks
/// ([`Scopes`], [`check_resource`]) are here. The next two would fit so:
///
/// - **JWT bearer** (RFC 7523 §2.1): `grant/jwt_bearer.rs` holds
///   `JwtBearerGrant { assertion: ClientAssertion, scopes: Scopes }`; `grant_type` is
///   `urn:ietf:params:oauth:grant-type:jwt-bearer`; [`reserved`](Self::reserved) is
///   `["assertion", "scope"]`; [`form_pairs`](Self::form_pairs) sends `assertion`, then
///   `scope`; [`identity`](Self::identity) hands `assertion` (a secret: the shared cache's
///   digest is keyed) and each scope. Its constructor:
///   `ClientCredentials::jwt_bearer_request(assertion, scopes)`.
/// - **Token exchange** (RFC 8693 §2.1): `grant/token_exchange.rs` holds
///   `TokenExchangeGrant { subject_token, subject_token_type, actor_token: Option<(token,
///   type)>, requested_token_type, audiences, resources, scopes }`, its own builder of those
///   (a value without a client) checking that a token type is a URI and that `actor_token`
///   comes with `actor_token_type` (§2.1), resources by [`check_resource`]; `grant_type` is
///   `urn:ietf:params:oauth:grant-type:token-exchange`; [`reserved`](Self::reserved) names
///   the seven parameters and `actor_token_type`; [`form_pairs`](Self::form_pairs) sends them
///   in §2.1's order, [`identity`](Self::identity) hands each (the tokens are secrets).
///   Its constructor: `ClientCredentials::exchange_request(exchange)`.
///
/// Neither touches the client, the attempt loop, the cache or the session: a grant's token is
/// cached, refreshed and sent like any other.
pub(crate) trait Grant: Send + Sync + 'static {
    /// The `grant_type` value (RFC 6749 §4.4.2: `client_credentials`; an absolute URI for an
    /// extension grant, §4.5).
    fn grant_type(&self) -> &'static str;

    /// The names of this grant's own parameters, which no extra parameter may take.
    fn reserved(&self) -> &'static [&'static str];

    /// Hands each of the grant's form pairs to `pair`, in the order they are sent.
    fn form_pairs(&self, pair: &mut dyn FnMut(&str, &str));

    /// Hands each field of the grant's part of the cache identity to `field`, as a tag and its
    /// bytes, in a fixed order: everything that makes the server issue another token, and
    /// nothing else (a scope set sorted, so that the order it was asked in does not matter). A
    /// list gives one call per element. The tags must not change between versions: the shared
    /// cache's key digests them.
    fn identity(&self, field: &mut dyn FnMut(&str, &[u8]));

    /// The requested scope, as sent: the issued token's scope when the server leaves it out
    /// (RFC 6749 §5.1).
    fn scope(&self) -> Option<&Arc<str>> {
        None
    }

    /// The requested audience, for a grant that sends one.
    fn audience(&self) -> Option<&str> {
        None
    }

    /// The requested resources (RFC 8707), for a grant that sends them.
    fn resources(&self) -> &[Box<str>] {
        &[]
    }
}

/// An `InvalidParameter` error for the parameter `name`.
pub(crate) fn invalid(name: &str, reason: &'static str) -> Error {
    Error::InvalidParameter {
        name: name.to_owned(),
        reason,
    }
}

/// The scopes a grant asks for (RFC 6749 §3.3), each token checked: as sent (in the order
/// asked, space-separated) and as compared (sorted, without repeats).
pub(crate) struct Scopes {
    joined: Option<Arc<str>>,
    set: Vec<Box<str>>,
}

impl Scopes {
    /// The scope tokens `scopes`, checked.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for an empty token or one with a character RFC 6749 §3.3
    /// forbids.
    pub(crate) fn new(scopes: Vec<String>) -> Result<Self, Error> {
        for scope in &scopes {
            check_scope_token(scope)?;
        }
        let joined = (!scopes.is_empty()).then(|| Arc::from(scopes.join(" ")));
        let mut set: Vec<Box<str>> = scopes.into_iter().map(Into::into).collect();
        set.sort_unstable();
        set.dedup();
        Ok(Self { joined, set })
    }

    /// The `scope` parameter's value, if any scope was asked for.
    pub(crate) fn joined(&self) -> Option<&Arc<str>> {
        self.joined.as_ref()
    }

    /// Hands each scope, sorted and once, to `field` under the tag `scope`.
    pub(crate) fn identity(&self, field: &mut dyn FnMut(&str, &[u8])) {
        for scope in &self.set {
            field("scope", scope.as_bytes());
        }
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn check_scope_token(token: &str) -> Result<(), Error> {
    let allowed = |b: u8| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E);
    if token.is_empty() {
        return Err(invalid(
            "scope",
            "a scope is empty (two spaces in a row, or a leading or trailing space)",
        ));
    }
    if !token.bytes().all(allowed) {
        return Err(invalid(
            "scope",
            "a scope has a character RFC 6749 §3.3 forbids: only printable ASCII other than `\"` and `\\`",
        ));
    }
    Ok(())
}

/// RFC 8707 §2: an absolute URI (RFC 3986 §4.3) without a fragment.
///
/// # Errors
///
/// [`Error::InvalidParameter`] naming `resource` otherwise.
pub(crate) fn check_resource(resource: &str) -> Result<(), Error> {
    let Some((scheme, rest)) = resource.split_once(':') else {
        return Err(invalid(
            "resource",
            "it is not an absolute uri (RFC 8707 §2)",
        ));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() {
        return Err(invalid(
            "resource",
            "it is not an absolute uri (RFC 8707 §2)",
        ));
    }
    if resource.contains('#') {
        return Err(invalid("resource", "it has a fragment (RFC 8707 §2)"));
    }
    if resource.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            "resource",
            "it has white space or control characters; percent-encode them",
        ));
    }
    Ok(())
}
