//! The token request: a client and a grant, validated once, then built for every attempt
//! (RFC 6749 §4.4.2 for client credentials), and the cache key they make together.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};

use crate::attempt::Attempt;
use crate::client::{AUTH_PARAMS, ClientCredentials};
use crate::client_auth::PerAttempt;
use crate::client_auth::assertion::AssertionSource;
use crate::error::Error;
use crate::error::assertion::AssertionError;
use crate::grant::client_credentials::ClientCredentialsGrant;
use crate::grant::{GRANT_TYPE, Grant, invalid};
use crate::secret::{ClientAssertion, RequestBody};
use crate::token::Token;

impl ClientCredentials {
    /// Starts a request for a token by the client credentials grant (RFC 6749 §4.4).
    pub fn token_request(&self) -> TokenRequestBuilder {
        TokenRequestBuilder {
            client: self.clone(),
            scopes: Vec::new(),
            audience: None,
            resources: Vec::new(),
            params: Vec::new(),
        }
    }
}

/// The parameters of a client credentials token request (RFC 6749 §4.4.2), checked when
/// [`build`](Self::build) is called.
#[must_use = "a builder does nothing until `build` is called"]
pub struct TokenRequestBuilder {
    client: ClientCredentials,
    scopes: Vec<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
}

impl TokenRequestBuilder {
    /// Parameter names the crate sets itself, which [`TokenRequestBuilder::param`] cannot
    /// override: `grant_type`, those of client authentication, and the grant's own.
    pub const RESERVED_PARAMS: [&str; 8] = reserved_params(&ClientCredentialsGrant::PARAMS);

    /// Asks for one or more scopes (RFC 6749 §3.3), separated by single spaces; may be called
    /// again to add more.
    pub fn scope(mut self, scope: impl AsRef<str>) -> Self {
        self.scopes
            .extend(scope.as_ref().split(' ').map(str::to_owned));
        self
    }

    /// Asks for each of the given scopes.
    pub fn scopes<S: AsRef<str>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes
            .extend(scopes.into_iter().map(|s| s.as_ref().to_owned()));
        self
    }

    /// Names the API the token is for, in the `audience` parameter that Auth0, Okta and many
    /// other servers read. Replaces an earlier audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Names a resource the token is for (RFC 8707): an absolute URI without a fragment. May be
    /// called again for more resources.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Adds any other parameter a server needs. Repeated names are sent repeated; a name in
    /// [`TokenRequestBuilder::RESERVED_PARAMS`] is refused by [`build`](Self::build).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Checks every parameter and encodes the request body once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for a scope token with characters RFC 6749 §3.3 does not
    /// allow (or an empty one), an empty audience, a resource that is not an absolute URI or
    /// has a fragment (RFC 8707 §2), or an extra parameter that is empty or reserved.
    pub fn build(self) -> Result<TokenRequest, Error> {
        let grant = ClientCredentialsGrant::new(self.scopes, self.audience, self.resources)?;
        TokenRequest::new(self.client, grant, self.params)
    }
}

impl fmt::Debug for TokenRequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As for `TokenRequest`: a server may take a credential in an extra parameter.
        let param_names: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("TokenRequestBuilder")
            .field("client", &self.client)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("resources", &self.resources)
            .field("param_names", &param_names)
            .finish()
    }
}

/// Every name a grant's request reserves, `grant_type` and the client authentication's first:
/// [`TokenRequestBuilder::RESERVED_PARAMS`] for client credentials. `N` must be their count,
/// or the constant does not compile.
const fn reserved_params<const N: usize>(grant: &[&'static str]) -> [&'static str; N] {
    assert!(
        N == 1 + AUTH_PARAMS.len() + grant.len(),
        "N counts every reserved name"
    );
    let mut all = [""; N];
    all[0] = GRANT_TYPE;
    let mut i = 0;
    while i < AUTH_PARAMS.len() {
        all[1 + i] = AUTH_PARAMS[i];
        i += 1;
    }
    let mut j = 0;
    while j < grant.len() {
        all[1 + AUTH_PARAMS.len() + j] = grant[j];
        j += 1;
    }
    all
}

/// An extra parameter's name: not empty, and none the request or its grant sets.
fn check_param_name(name: &str, grant: &dyn Grant) -> Result<(), Error> {
    if name.is_empty() {
        return Err(invalid(name, "the name is empty"));
    }
    if name == GRANT_TYPE || AUTH_PARAMS.contains(&name) || grant.reserved().contains(&name) {
        return Err(invalid(
            name,
            "the crate sets this parameter itself; use the builder method or client authentication for it",
        ));
    }
    Ok(())
}

/// A validated token request, ready to be sent any number of times: a client, a grant and the
/// caller's extra parameters, all immutable.
///
/// Cheap to clone. Two requests are equal, and hash alike, when they would get the same token:
/// the same endpoint, client, authentication method and credential (the same secret, signing
/// key, assertion, named assertion source or certificate), DPoP key, grant, scopes (in any
/// order), audience, resources and extra parameters. That makes a `TokenRequest` a cache key:
/// a plain value, holding nothing that changes as it is sent (the DPoP nonces and the server's
/// clock are the [`Session`](crate::fetch::Session)'s).
///
/// A cached token is therefore served only to a request whose credential is the one the token
/// was issued for: a caller who knows a client id but holds another secret misses the cache
/// and is refused by the server. A hit does not prove that the credential is still valid at
/// the server (one revoked since is found out at the next fetch), only that it is the same.
#[derive(Clone)]
pub struct TokenRequest(Arc<RequestInner>);

struct RequestInner {
    client: ClientCredentials,
    grant: Box<dyn Grant>,
    params: Vec<(Box<str>, Box<str>)>,
    /// The grant's identity fields, each framed by its tag's and its value's lengths: what the
    /// key compares of the grant, made once.
    grant_identity: Box<[u8]>,
    body: Bytes,
}

impl TokenRequest {
    /// The request of `client` for `grant`, with the extra parameters `params` (sent after the
    /// grant's, in order): the one way every grant's constructor makes a request.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for an extra parameter that is empty, `grant_type`, a
    /// client authentication parameter or one of the grant's own.
    pub(crate) fn new(
        client: ClientCredentials,
        grant: impl Grant,
        params: Vec<(String, String)>,
    ) -> Result<Self, Error> {
        for (name, _) in &params {
            check_param_name(name, &grant)?;
        }
        let mut grant_identity = Vec::new();
        grant.identity(&mut |tag, value| {
            for part in [tag.as_bytes(), value] {
                grant_identity.extend_from_slice(&(part.len() as u64).to_be_bytes());
                grant_identity.extend_from_slice(part);
            }
        });
        let params: Vec<(Box<str>, Box<str>)> = params
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let body = encode_body(&client, &grant, &params);
        Ok(Self(Arc::new(RequestInner {
            client,
            grant: Box::new(grant),
            params,
            grant_identity: grant_identity.into(),
            body,
        })))
    }
}

/// The form body every attempt starts from: `grant_type`, the client's authentication, the
/// grant's parameters, the extra parameters.
fn encode_body(
    client: &ClientCredentials,
    grant: &dyn Grant,
    params: &[(Box<str>, Box<str>)],
) -> Bytes {
    let mut form = form_urlencoded::Serializer::new(String::with_capacity(128));
    form.append_pair(GRANT_TYPE, grant.grant_type());
    for (name, value) in &client.inner().auth.body_pairs {
        form.append_pair(name, value);
    }
    grant.form_pairs(&mut |name, value| {
        form.append_pair(name, value);
    });
    for (name, value) in params {
        form.append_pair(name, value);
    }
    Bytes::from(form.finish())
}

impl RequestInner {
    /// What `Eq` and `Hash` compare: immutable data only.
    fn key(&self) -> impl Eq + Hash + '_ {
        (
            self.client.key(),
            self.grant.grant_type(),
            &self.grant_identity,
            &self.params,
        )
    }
}

impl TokenRequest {
    /// The parts of every attempt's HTTP request that do not change between attempts: a `POST`
    /// with a form body (RFC 6749 §4.4.2), `Accept: application/json`, and the client's static
    /// authentication. Allocates only the header map: the URL, the body and the header values
    /// are shared with this `TokenRequest`. Crate-private, so that no caller can send it
    /// unsigned by mistake.
    pub(crate) fn unsigned_http_request(&self) -> http::Request<RequestBody> {
        let client = self.0.client.inner();
        let mut request = http::Request::new(RequestBody::new(self.0.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = client.token_url.as_uri().clone();
        let headers = request.headers_mut();
        headers.reserve(3);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &client.auth.header {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        request
    }

    /// Whether every attempt signs something afresh (a client assertion under
    /// [`ClientAuth::Jwt`](crate::auth::ClientAuth::Jwt), a DPoP proof with a DPoP key), and so needs the attempt's entropy.
    #[must_use]
    pub fn signs_each_attempt(&self) -> bool {
        let client = self.0.client.inner();
        #[cfg(feature = "jwt")]
        let dpop = client.dpop.is_some();
        #[cfg(not(feature = "jwt"))]
        let dpop = false;
        matches!(client.auth.per_attempt, Some(PerAttempt::Jwt(_))) || dpop
    }

    /// The HTTP request for one attempt, retries included: a `POST` with a form body (RFC 6749
    /// §4.4.2), `Accept: application/json` and the client's authentication, with what is signed
    /// afresh for every attempt, from the attempt's time, entropy and DPoP nonce. This is the
    /// one way to build a token request, right for every client authentication;
    /// [`TokenFetch::http_request`](crate::fetch::TokenFetch::http_request) builds the attempt for you.
    ///
    /// - Under [`ClientAuth::Jwt`](crate::auth::ClientAuth::Jwt), a new client assertion goes in the body
    ///   (`client_assertion`, RFC 7523 §2.2), its `jti` from the first half of the entropy.
    /// - With a DPoP key (`ClientCredentials::with_dpop`, feature `jwt`), a new proof goes in the `DPoP`
    ///   header (RFC 9449 §5), its `jti` from the second half, with the attempt's nonce.
    ///
    /// For a client with static authentication the attempt is not read and this cannot fail;
    /// building it then allocates only the header map: the URL, the body and the header values
    /// are shared with this `TokenRequest`.
    ///
    /// # Errors
    ///
    /// [`Error::Signing`] if the signer fails; [`Error::ClockBeforeUnixEpoch`] if the
    /// attempt's time is before 1970; [`Error::ClientAssertion`] with
    /// [`AssertionError::NotSupplied`](crate::error::AssertionError::NotSupplied) under
    /// [`ClientAuth::Source`](crate::auth::ClientAuth::Source), whose assertion only
    /// [`http_request_with_assertion`](Self::http_request_with_assertion) takes.
    pub fn http_request(&self, attempt: &Attempt) -> Result<http::Request<RequestBody>, Error> {
        self.build_http_request(attempt, None)
    }

    /// Where the client's assertions come from, under [`ClientAuth::Source`](crate::auth::ClientAuth::Source): await it for each
    /// attempt and pass its assertion to
    /// [`http_request_with_assertion`](Self::http_request_with_assertion), as
    /// [`fetch_token`](crate::fetch::fetch_token) does.
    #[must_use]
    pub fn assertion_source(&self) -> Option<&AssertionSource> {
        match &self.0.client.inner().auth.per_attempt {
            Some(PerAttempt::Source(source)) => Some(source),
            _ => None,
        }
    }

    /// As [`http_request`](Self::http_request), with the attempt's assertion from the client's
    /// [`assertion_source`](Self::assertion_source) in the body (`client_assertion`, RFC 7521
    /// §4.2). For a client without a source the assertion is not used.
    ///
    /// # Errors
    ///
    /// As [`http_request`](Self::http_request).
    pub fn http_request_with_assertion(
        &self,
        attempt: &Attempt,
        assertion: &ClientAssertion,
    ) -> Result<http::Request<RequestBody>, Error> {
        self.build_http_request(attempt, Some(assertion))
    }

    fn build_http_request(
        &self,
        attempt: &Attempt,
        supplied: Option<&ClientAssertion>,
    ) -> Result<http::Request<RequestBody>, Error> {
        let client = self.0.client.inner();
        let mut request = self.unsigned_http_request();
        // A signed assertion is base64url and `.`, which a form carries as they are; one from a
        // source is encoded, as it may be anything.
        let encoded: Option<std::borrow::Cow<'_, str>> = match &client.auth.per_attempt {
            Some(PerAttempt::Jwt(jwt)) => Some(
                jwt.assertion(&client.client_id, &client.token_url, attempt)?
                    .into(),
            ),
            Some(PerAttempt::Source(_)) => match supplied {
                Some(assertion) => Some(
                    form_urlencoded::byte_serialize(assertion.secret().as_bytes())
                        .collect::<String>()
                        .into(),
                ),
                None => return Err(AssertionError::NotSupplied.into()),
            },
            None => None,
        };
        if let Some(encoded) = encoded {
            const NAME: &[u8] = b"&client_assertion=";
            let mut body = BytesMut::with_capacity(self.0.body.len() + NAME.len() + encoded.len());
            body.extend_from_slice(&self.0.body);
            body.extend_from_slice(NAME);
            body.extend_from_slice(encoded.as_bytes());
            *request.body_mut() = RequestBody::new(body.freeze());
        }
        #[cfg(feature = "jwt")]
        if let Some(dpop) = &client.dpop {
            let proof = dpop.proof(&Method::POST, client.token_url.as_uri(), attempt, None)?;
            request
                .headers_mut()
                .insert(crate::client_auth::dpop::DPOP, proof);
        }
        Ok(request)
    }

    /// Parses the token endpoint's response to this request, by the client's
    /// [`ResponseRules`](crate::fetch::ResponseRules).
    ///
    /// `sent_at` is when the request was sent: the token's expiry is counted from it, so the
    /// estimate errs early, never late. Where the server leaves out `scope`, the token's scope
    /// is the requested one (RFC 6749 §5.1).
    ///
    /// This is the one way to parse a token response: [`TokenFetch::handle_response`] and
    /// [`TokenCache::handle_response`] call it, so they cannot disagree with it. The client's
    /// [`ResponseRules`](crate::fetch::ResponseRules) say which provider deviations it tolerates.
    ///
    /// [`TokenFetch::handle_response`]: crate::fetch::TokenFetch::handle_response
    /// [`TokenCache::handle_response`]: crate::cache::TokenCache::handle_response
    ///
    /// # Errors
    ///
    /// - [`Error::BodyTooLarge`] if the body exceeds [`max_body_len`](crate::fetch::ResponseRules::max_body_len);
    /// - [`Error::Redirect`] for a 3xx;
    /// - [`Error::OAuth`] for a JSON (or form) body with an `error` member, whatever the status
    ///   (§5.2; GitHub and Slack send errors with 200);
    /// - [`Error::InvalidResponse`] for a 2xx that is not a usable token response; it never
    ///   quotes the body, which may hold a token;
    /// - [`Error::UnexpectedResponse`] for any other status, with the `Retry-After` header and
    ///   an excerpt of the body: a JSON or form body by its member names, never their values;
    ///   any other body sanitized, with the value after a secret-looking name redacted.
    pub fn parse_response(
        &self,
        response: &http::Response<impl AsRef<[u8]>>,
        sent_at: SystemTime,
    ) -> Result<Token, Error> {
        let scope = self.0.grant.scope();
        let token = self
            .0
            .client
            .response_rules()
            .parse_for(response, sent_at, scope)?;
        Ok(match scope {
            Some(requested) => token.with_default_scope(requested),
            None => token,
        })
    }

    /// The client this request is for.
    #[must_use]
    pub fn client(&self) -> &ClientCredentials {
        &self.0.client
    }

    /// The requested scopes, space-separated, as given.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.0.grant.scope().map(|scope| &**scope)
    }

    /// The requested audience.
    #[must_use]
    pub fn audience(&self) -> Option<&str> {
        self.0.grant.audience()
    }

    /// The requested resources (RFC 8707).
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.0.grant.resources().iter().map(|r| &**r)
    }

    /// The extra parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.params.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl TokenRequest {
    /// Hands each field of the request's cache identity (what `Eq` and `Hash` compare: token
    /// URL, client id, authentication method, credential, certificate, DPoP key, the grant's
    /// fields (for client credentials: scopes in sorted order, audience, resources), extra
    /// parameters) to `field` as a tag and its bytes, in a fixed order: the input of the shared
    /// cache's key digest, which must be the same in every process. A list gives one call per
    /// element, so the calls alone tell every identity apart. The credential's bytes may be a
    /// secret: the digest must be keyed.
    ///
    /// A grant other than client credentials hands its `grant_type` before its fields; client
    /// credentials hands none, so that the digests fleets stored before there were other grants
    /// stay the same.
    ///
    /// Returns `false`, having handed nothing, when the credential has no identity another
    /// process could compute (an unnamed assertion source, a signer without a public key), or
    /// when a mutual TLS client has not named its certificate: such a request is not shared.
    #[cfg(feature = "shared-cache")]
    #[must_use]
    pub(crate) fn identity_fields(&self, mut field: impl FnMut(&str, &[u8])) -> bool {
        if !self.0.client.identity_fields(&mut field) {
            return false;
        }
        let grant_type = self.0.grant.grant_type();
        if grant_type != ClientCredentialsGrant::GRANT_TYPE {
            field(GRANT_TYPE, grant_type.as_bytes());
        }
        self.0.grant.identity(&mut field);
        for (name, value) in &self.0.params {
            field("param_name", name.as_bytes());
            field("param_value", value.as_bytes());
        }
        true
    }
}

impl PartialEq for TokenRequest {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.key() == other.0.key()
    }
}

impl Eq for TokenRequest {}

impl Hash for TokenRequest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key().hash(state);
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Extra parameter values are left out: a server may take a credential in one.
        let param_names: Vec<&str> = self.0.params.iter().map(|(k, _)| &**k).collect();
        f.debug_struct("TokenRequest")
            .field("client", &self.0.client)
            .field("grant_type", &self.0.grant.grant_type())
            .field("scope", &self.scope())
            .field("audience", &self.audience())
            .field("resources", &self.0.grant.resources())
            .field("param_names", &param_names)
            .finish()
    }
}

/// `a b`, audience `x`), then one for each field of the cache key changed alone: no two may
/// share a token. Shared by the key's tests and the cache's.
#[cfg(test)]
pub(crate) fn requests_differing_in_each_key_field() -> Vec<TokenRequest> {
    use crate::client_auth::ClientAuth;
    use crate::secret::ClientAssertion;
    use crate::secret::ClientSecret;
    use crate::test_support::{token_url as idp, url};
    let secret = || ClientSecret::new("secret");
    let with_base_params =
        |client: &ClientCredentials| client.token_request().scope("a b").audience("x");
    let basic = ClientCredentials::new(idp(), "client", secret());
    let base = || with_base_params(&basic);
    let base_of = |client: ClientCredentials| with_base_params(&client).build().unwrap();
    vec![
        base().build().unwrap(),
        base().scope("c").build().unwrap(),
        base().audience("y").build().unwrap(),
        base().resource("urn:r").build().unwrap(),
        base().param("k", "v").build().unwrap(),
        base().param("k", "w").build().unwrap(),
        base_of(ClientCredentials::new(idp(), "other", secret())),
        base_of(
            ClientCredentials::with_auth(idp(), "client", ClientAuth::SecretPost(secret()))
                .unwrap(),
        ),
        base_of(ClientCredentials::new(
            url("https://other.example.com/token"),
            "client",
            secret(),
        )),
        base_of(ClientCredentials::new(
            idp(),
            "client",
            ClientSecret::new("another secret"),
        )),
        base_of(basic.clone().with_certificate(b"certificate A")),
        base_of(basic.clone().with_certificate(b"certificate B")),
        base_of(
            ClientCredentials::with_auth(
                idp(),
                "client",
                ClientAuth::Assertion(ClientAssertion::new("h.p.s")),
            )
            .unwrap(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::ClientAuth;
    use crate::secret::ClientAssertion;
    use crate::secret::ClientSecret;
    use crate::test_support::{client, token_url};

    fn body(request: &TokenRequest) -> String {
        String::from_utf8(request.unsigned_http_request().body().secret().to_vec()).unwrap()
    }

    fn rejected(builder: TokenRequestBuilder) -> (String, &'static str) {
        match builder.build() {
            Err(Error::InvalidParameter { name, reason }) => (name, reason),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn post_form_with_accept_json_rfc6749_4_4_2() {
        let request = client()
            .token_request()
            .build()
            .unwrap()
            .unsigned_http_request();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "https://idp.example.com/token");
        assert_eq!(
            request.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(request.headers()[ACCEPT], "application/json");
        assert!(request.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(request.body().secret(), b"grant_type=client_credentials");
    }

    #[test]
    fn parameters_in_order_with_repeats() {
        let request = client()
            .token_request()
            .scope("read:things write")
            .scopes(["admin"])
            .audience("https://api.example.com")
            .resource("https://a.example.com/")
            .resource("urn:example:b")
            .param("tenant", "x y")
            .param("tenant", "z")
            .build()
            .unwrap();
        assert_eq!(
            body(&request),
            "grant_type=client_credentials&scope=read%3Athings+write+admin\
             &audience=https%3A%2F%2Fapi.example.com&resource=https%3A%2F%2Fa.example.com%2F\
             &resource=urn%3Aexample%3Ab&tenant=x+y&tenant=z"
        );
        assert_eq!(request.scope(), Some("read:things write admin"));
    }

    #[test]
    fn scope_tokens_are_checked_rfc6749_3_3() {
        assert_eq!(rejected(client().token_request().scope("a  b")).0, "scope");
        assert_eq!(rejected(client().token_request().scope("")).0, "scope");
        assert_eq!(rejected(client().token_request().scope("a\"b")).0, "scope");
        assert_eq!(rejected(client().token_request().scope("a\\b")).0, "scope");
        assert_eq!(rejected(client().token_request().scope("é")).0, "scope");
        assert_eq!(
            rejected(client().token_request().scopes(["a b"])).0,
            "scope"
        );
        assert!(client().token_request().scope("!#[]~").build().is_ok());
    }

    #[test]
    fn resources_are_absolute_uris_without_fragment_rfc8707_2() {
        for bad in [
            "api",
            "/relative",
            "https://a.example/#f",
            "1x:y",
            "https:",
            "a b:c",
        ] {
            assert_eq!(
                rejected(client().token_request().resource(bad)).0,
                "resource",
                "{bad}"
            );
        }
        assert!(client().token_request().resource("urn:x:y").build().is_ok());
    }

    #[test]
    fn reserved_parameters_cannot_be_overridden() {
        for name in TokenRequestBuilder::RESERVED_PARAMS {
            let (rejected_name, _) = rejected(client().token_request().param(name, "evil"));
            assert_eq!(rejected_name, name);
        }
        assert_eq!(rejected(client().token_request().param("", "x")).0, "");
        assert_eq!(
            rejected(client().token_request().audience("")).0,
            "audience"
        );
    }

    #[test]
    fn golden_client_secret_post_rfc6749_2_3_1() {
        let client = ClientCredentials::with_auth(
            token_url(),
            "id:+%&= é",
            ClientAuth::SecretPost(ClientSecret::new("s:+%&= é")),
        )
        .unwrap();
        let request = client.token_request().build().unwrap();
        assert!(
            request
                .unsigned_http_request()
                .headers()
                .get(AUTHORIZATION)
                .is_none()
        );
        assert_eq!(
            body(&request),
            "grant_type=client_credentials&client_id=id%3A%2B%25%26%3D+%C3%A9\
             &client_secret=s%3A%2B%25%26%3D+%C3%A9"
        );
    }

    #[test]
    fn golden_client_secret_basic_rfc6749_2_3_1() {
        let client =
            ClientCredentials::new(token_url(), "id:+%&= é", ClientSecret::new("s:+%&= é"));
        let request = client
            .token_request()
            .build()
            .unwrap()
            .unsigned_http_request();
        // base64("id%3A%2B%25%26%3D%20%C3%A9:s%3A%2B%25%26%3D%20%C3%A9")
        assert_eq!(
            request.headers()[AUTHORIZATION],
            "Basic aWQlM0ElMkIlMjUlMjYlM0QlMjAlQzMlQTk6cyUzQSUyQiUyNSUyNiUzRCUyMCVDMyVBOQ=="
        );
    }

    #[test]
    fn golden_none_and_assertion() {
        let none = ClientCredentials::with_auth(token_url(), "pub lic", ClientAuth::None).unwrap();
        assert_eq!(
            body(&none.token_request().build().unwrap()),
            "grant_type=client_credentials&client_id=pub+lic"
        );
        let jwt = ClientCredentials::with_auth(
            token_url(),
            "c",
            ClientAuth::Assertion(ClientAssertion::new("h.p.s")),
        )
        .unwrap();
        assert_eq!(
            body(&jwt.token_request().build().unwrap()),
            "grant_type=client_credentials&client_id=c&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=h.p.s"
        );
    }

    #[test]
    fn debug_redacts_secrets_and_param_values() {
        let client = ClientCredentials::with_auth(
            token_url(),
            "c",
            ClientAuth::SecretPost(ClientSecret::new("hunter2")),
        )
        .unwrap();
        let request = client
            .token_request()
            .param("api_key", "swordfish")
            .build()
            .unwrap();
        let builder = client.token_request().param("api_key", "swordfish");
        for text in [
            format!("{builder:?}"),
            format!("{client:?}"),
            format!("{request:?}"),
            format!("{:?}", request.unsigned_http_request()),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("swordfish"), "{text}");
        }
    }

    #[test]
    fn assertion_sources_share_a_key_only_when_the_same_or_named_the_same() {
        use crate::client_auth::assertion::AssertionSource;
        use std::collections::HashSet;
        let source = || AssertionSource::from_fn(|| async { Ok(ClientAssertion::new("a.b.c")) });
        let request = |source: AssertionSource| {
            ClientCredentials::with_auth(token_url(), "client", ClientAuth::Source(source))
                .unwrap()
                .token_request()
                .build()
                .unwrap()
        };
        let unnamed = source();
        let same_instance = [request(unnamed.clone()), request(unnamed)];
        assert_eq!(same_instance[0], same_instance[1]);
        let distinct: HashSet<_> = [
            same_instance[0].clone(),
            request(source()),
            request(source().with_identity("workload-a")),
            request(source().with_identity("workload-b")),
        ]
        .into_iter()
        .collect();
        assert_eq!(distinct.len(), 4, "an unnamed source shares with no other");
        assert_eq!(
            request(source().with_identity("workload-a")),
            request(source().with_identity("workload-a"))
        );
    }

    #[test]
    fn equal_requests_share_a_key_and_differing_ones_do_not() {
        use std::collections::HashSet;
        let base = || client().token_request().scope("a b").audience("x");
        let same = [
            base().build().unwrap(),
            client()
                .token_request()
                .scope("b a")
                .audience("x")
                .build()
                .unwrap(),
            client()
                .token_request()
                .scopes(["b", "a", "a"])
                .audience("x")
                .build()
                .unwrap(),
        ];
        let unique: HashSet<_> = same.iter().cloned().collect();
        assert_eq!(unique.len(), 1);
        let differing = requests_differing_in_each_key_field();
        assert!(
            unique.contains(&differing[0]),
            "the first is the base request"
        );
        for request in &differing[1..] {
            assert!(!unique.contains(request), "{request:?}");
        }
        let all: HashSet<_> = differing.iter().cloned().collect();
        assert_eq!(all.len(), differing.len(), "every pair differs");
    }
}
