//! Building the token request (RFC 6749 §4.4.2): validated once, then built for every attempt.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};

use crate::attempt::{Attempt, DpopNonces};
use crate::client_auth::assertion::AssertionSource;
use crate::client_auth::identity::CredentialIdentity;
use crate::client_auth::method::AuthMethod;
use crate::client_auth::{ClientAuth, EncodedAuth, PerAttempt};
use crate::clock::ServerClock;
use crate::endpoint::TokenUrl;
use crate::error::Error;
use crate::error::assertion::AssertionError;
use crate::response::rules::ResponseRules;
use crate::secret::{ClientAssertion, ClientSecret, RequestBody};
use crate::token::Token;

/// A client of one token endpoint: its URL, its identity and how it authenticates.
///
/// Cheap to clone and to share between threads; the credentials are encoded once, here.
#[derive(Clone)]
pub struct ClientCredentials(Arc<ClientInner>);

#[derive(Clone)]
struct ClientInner {
    token_url: TokenUrl,
    client_id: Box<str>,
    method: AuthMethod,
    auth: EncodedAuth,
    /// The credential, as the cache key compares it: a token cached for one credential is never
    /// served to a request with another, whatever the client id.
    credential: CredentialIdentity,
    /// The certificate the caller's HTTP client presents, as the caller named it
    /// ([`ClientCredentials::with_certificate`]): a certificate-bound token (RFC 8705 §3) is
    /// never served to a client presenting another.
    certificate: Option<Arc<[u8]>>,
    rules: ResponseRules,
    /// The latest DPoP nonce of each server this client sent to, shared by its clones (those
    /// made by `with_dpop` and `with_response_rules` included) and by every request built from
    /// it. A nonce is what one server expects in the proofs it is sent, so it belongs with the
    /// client that sends them, not with the process: a process-wide store would let one
    /// client's servers push another's nonces out, and tie unrelated clients together. Bounded
    /// by [`DpopNonces::MAX_ORIGINS`].
    nonces: Arc<DpopNonces>,
    /// The token endpoint's clock as this client has seen it, shared the same way: the offset
    /// is a property of the server this client talks to.
    clock: Arc<ServerClock>,
    /// The key whose DPoP proof goes with every token request (RFC 9449 §5).
    #[cfg(feature = "jwt")]
    dpop: Option<crate::client_auth::dpop::DpopKey>,
}

impl ClientInner {
    /// The DPoP key's thumbprint: tokens bound to different keys are different tokens.
    #[cfg(feature = "jwt")]
    fn dpop_thumbprint(&self) -> Option<&str> {
        self.dpop
            .as_ref()
            .map(crate::client_auth::dpop::DpopKey::thumbprint)
    }

    /// Without feature `jwt` there is no DPoP key.
    #[cfg(not(feature = "jwt"))]
    fn dpop_thumbprint(&self) -> Option<&str> {
        None
    }
}

impl ClientCredentials {
    /// A client that authenticates with `client_secret_basic`, the method every server must
    /// support (RFC 6749 §2.3.1).
    pub fn new(token_url: TokenUrl, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        let client_id = client_id.into();
        let auth = EncodedAuth::secret_basic(&client_id, &secret);
        let credential = CredentialIdentity::Secret(secret.secret().as_bytes().into());
        Self::from_parts(
            token_url,
            client_id,
            AuthMethod::ClientSecretBasic,
            auth,
            credential,
        )
    }

    /// A client that authenticates with the given method.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] if the client id cannot be sent with that method
    /// ([`ClientAuth::SecretBasicUnencoded`] with a `:` in the id).
    pub fn with_auth(
        token_url: TokenUrl,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Result<Self, Error> {
        let client_id = client_id.into();
        let encoded = EncodedAuth::new(&client_id, &auth)?;
        Ok(Self::from_parts(
            token_url,
            client_id,
            auth.method(),
            encoded,
            auth.credential_identity(),
        ))
    }

    fn from_parts(
        token_url: TokenUrl,
        client_id: String,
        method: AuthMethod,
        auth: EncodedAuth,
        credential: CredentialIdentity,
    ) -> Self {
        Self(Arc::new(ClientInner {
            token_url,
            client_id: client_id.into_boxed_str(),
            method,
            auth,
            credential,
            certificate: None,
            rules: ResponseRules::default(),
            nonces: Arc::new(DpopNonces::new()),
            clock: Arc::new(ServerClock::new()),
            #[cfg(feature = "jwt")]
            dpop: None,
        }))
    }

    /// The DPoP nonces this client has been sent (RFC 9449 §8), which
    /// [`TokenFetch`](crate::fetch::TokenFetch) puts in its next proofs: one store per client, shared by
    /// its clones and by every request built from it.
    #[must_use]
    pub fn dpop_nonces(&self) -> &DpopNonces {
        &self.0.nonces
    }

    /// What this client has learnt of its token endpoint's clock, which
    /// [`TokenFetch`](crate::fetch::TokenFetch) signs each attempt's JWTs by: one per client, shared by
    /// its clones and by every request built from it.
    #[must_use]
    pub fn server_clock(&self) -> &ServerClock {
        &self.0.clock
    }

    /// Names the certificate this client's HTTP client presents in the TLS handshake (its DER
    /// or PEM bytes, as you gave them to the HTTP client), for mutual TLS (RFC 8705): the
    /// `tls_client_auth` methods, or certificate-bound tokens (§3) under any method.
    ///
    /// The crate never sends it: it only compares it, so that a cached token issued to one
    /// certificate is never served to a client presenting another, in the process and through
    /// a fleet's [`SharedCache`](crate::shared_cache::SharedCache) (where replicas with different
    /// certificates then keep separate entries instead of overwriting each other's). Without
    /// it, a `tls_client_auth` client is known by its client id alone, and its tokens are not
    /// shared through a store.
    #[must_use]
    pub fn with_certificate(mut self, certificate: impl AsRef<[u8]>) -> Self {
        Arc::make_mut(&mut self.0).certificate = Some(certificate.as_ref().into());
        self
    }

    /// Replaces the rules responses are parsed by (tolerant by default).
    #[must_use]
    pub fn with_response_rules(mut self, rules: ResponseRules) -> Self {
        Arc::make_mut(&mut self.0).rules = rules;
        self
    }

    /// Sends a DPoP proof (RFC 9449 §5) signed by `key` with every token request, asking for a
    /// token bound to the key (`token_type` `DPoP`). Requests must then be built with
    /// [`TokenRequest::http_request`], and the token presented with
    /// [`DpopKey::authorize`](crate::dpop::DpopKey::authorize).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[must_use]
    pub fn with_dpop(mut self, key: crate::client_auth::dpop::DpopKey) -> Self {
        Arc::make_mut(&mut self.0).dpop = Some(key);
        self
    }

    /// The DPoP key, if the client has one.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[must_use]
    pub fn dpop_key(&self) -> Option<&crate::client_auth::dpop::DpopKey> {
        self.0.dpop.as_ref()
    }

    /// Starts a token request.
    pub fn token_request(&self) -> TokenRequestBuilder {
        TokenRequestBuilder {
            client: self.clone(),
            scopes: Vec::new(),
            audience: None,
            resources: Vec::new(),
            params: Vec::new(),
        }
    }

    /// The token endpoint.
    #[must_use]
    pub fn token_url(&self) -> &TokenUrl {
        &self.0.token_url
    }

    /// The client identifier.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }

    /// How the client authenticates.
    #[must_use]
    pub fn auth_method(&self) -> AuthMethod {
        self.0.method
    }

    /// The rules responses are parsed by.
    #[must_use]
    pub fn response_rules(&self) -> &ResponseRules {
        &self.0.rules
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.0.token_url)
            .field("client_id", &self.0.client_id)
            .field("auth_method", &self.0.method)
            .finish_non_exhaustive()
    }
}

/// The parameters of a token request, checked when [`build`](Self::build) is called.
#[must_use = "a builder does nothing until `build` is called"]
pub struct TokenRequestBuilder {
    client: ClientCredentials,
    scopes: Vec<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
}

impl TokenRequestBuilder {
    /// Parameter names the crate sets itself, which [`TokenRequestBuilder::param`] cannot override.
    pub const RESERVED_PARAMS: [&str; 8] = [
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "scope",
        "resource",
        "audience",
    ];

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
        for scope in &self.scopes {
            check_scope_token(scope)?;
        }
        if self.audience.as_deref() == Some("") {
            return Err(invalid("audience", "it is empty"));
        }
        for resource in &self.resources {
            check_resource(resource)?;
        }
        for (name, _) in &self.params {
            check_param_name(name)?;
        }
        let scope = (!self.scopes.is_empty()).then(|| Arc::from(self.scopes.join(" ")));
        let mut scope_set: Vec<Box<str>> = self.scopes.into_iter().map(Into::into).collect();
        scope_set.sort_unstable();
        scope_set.dedup();
        let mut request = RequestInner {
            client: self.client,
            scope,
            scope_set,
            audience: self.audience.map(Into::into),
            resources: self.resources.into_iter().map(Into::into).collect(),
            params: self
                .params
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            body: Bytes::new(),
        };
        request.body = request.encode_body();
        Ok(TokenRequest(Arc::new(request)))
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

fn invalid(name: &str, reason: &'static str) -> Error {
    Error::InvalidParameter {
        name: name.to_owned(),
        reason,
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
fn check_resource(resource: &str) -> Result<(), Error> {
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

fn check_param_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(invalid(name, "the name is empty"));
    }
    if TokenRequestBuilder::RESERVED_PARAMS.contains(&name) {
        return Err(invalid(
            name,
            "the crate sets this parameter itself; use the builder method or client authentication for it",
        ));
    }
    Ok(())
}

/// A validated token request, ready to be sent any number of times.
///
/// Cheap to clone. Two requests are equal, and hash alike, when they would get the same token:
/// the same endpoint, client, authentication method and credential (the same secret, signing
/// key, assertion, named assertion source or certificate), DPoP key, scopes (in any order),
/// audience, resources and extra parameters. That makes a `TokenRequest` a cache key.
///
/// A cached token is therefore served only to a request whose credential is the one the token
/// was issued for: a caller who knows a client id but holds another secret misses the cache
/// and is refused by the server. A hit does not prove that the credential is still valid at
/// the server (one revoked since is found out at the next fetch), only that it is the same.
#[derive(Clone)]
pub struct TokenRequest(Arc<RequestInner>);

struct RequestInner {
    client: ClientCredentials,
    scope: Option<Arc<str>>,
    scope_set: Vec<Box<str>>,
    audience: Option<Box<str>>,
    resources: Vec<Box<str>>,
    params: Vec<(Box<str>, Box<str>)>,
    body: Bytes,
}

impl RequestInner {
    fn encode_body(&self) -> Bytes {
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(128));
        form.append_pair("grant_type", "client_credentials");
        for (name, value) in &self.client.0.auth.body_pairs {
            form.append_pair(name, value);
        }
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &self.audience {
            form.append_pair("audience", audience);
        }
        for resource in &self.resources {
            form.append_pair("resource", resource);
        }
        for (name, value) in &self.params {
            form.append_pair(name, value);
        }
        Bytes::from(form.finish())
    }

    fn key(&self) -> impl Eq + Hash + '_ {
        let client = &self.client.0;
        (
            (
                &client.token_url,
                &client.client_id,
                client.method,
                &client.credential,
                &client.certificate,
                client.dpop_thumbprint(),
            ),
            &self.scope_set,
            &self.audience,
            &self.resources,
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
        let client = &self.0.client.0;
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
    /// [`ClientAuth::Jwt`], a DPoP proof with a DPoP key), and so needs the attempt's entropy.
    #[must_use]
    pub fn signs_each_attempt(&self) -> bool {
        let client = &self.0.client.0;
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
    /// - Under [`ClientAuth::Jwt`], a new client assertion goes in the body
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
    /// [`ClientAuth::Source`], whose assertion only
    /// [`http_request_with_assertion`](Self::http_request_with_assertion) takes.
    pub fn http_request(&self, attempt: &Attempt) -> Result<http::Request<RequestBody>, Error> {
        self.build_http_request(attempt, None)
    }

    /// Where the client's assertions come from, under [`ClientAuth::Source`]: await it for each
    /// attempt and pass its assertion to
    /// [`http_request_with_assertion`](Self::http_request_with_assertion), as
    /// [`fetch_token`](crate::fetch::fetch_token) does.
    #[must_use]
    pub fn assertion_source(&self) -> Option<&AssertionSource> {
        match &self.0.client.0.auth.per_attempt {
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
        let client = &self.0.client.0;
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
    /// [`ResponseRules`].
    ///
    /// `sent_at` is when the request was sent: the token's expiry is counted from it, so the
    /// estimate errs early, never late. Where the server leaves out `scope`, the token's scope
    /// is the requested one (RFC 6749 §5.1).
    ///
    /// This is the one way to parse a token response: [`TokenFetch::handle_response`] and
    /// [`TokenCache::handle_response`] call it, so they cannot disagree with it. The client's
    /// [`ResponseRules`] say which provider deviations it tolerates.
    ///
    /// [`TokenFetch::handle_response`]: crate::fetch::TokenFetch::handle_response
    /// [`TokenCache::handle_response`]: crate::cache::TokenCache::handle_response
    ///
    /// # Errors
    ///
    /// - [`Error::BodyTooLarge`] if the body exceeds [`max_body_len`](ResponseRules::max_body_len);
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
        let token = self
            .0
            .client
            .0
            .rules
            .parse_for(response, sent_at, self.0.scope.as_ref())?;
        Ok(match &self.0.scope {
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
        self.0.scope.as_deref()
    }

    /// The requested audience.
    #[must_use]
    pub fn audience(&self) -> Option<&str> {
        self.0.audience.as_deref()
    }

    /// The requested resources (RFC 8707).
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.0.resources.iter().map(|r| &**r)
    }

    /// The extra parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.params.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl TokenRequest {
    /// Hands each field of the request's cache identity (what `Eq` and `Hash` compare: token
    /// URL, client id, authentication method, credential, certificate, DPoP key, scopes in
    /// sorted order, audience, resources, extra parameters) to `field` as a tag and its bytes,
    /// in a fixed order: the input of the shared cache's key digest, which must be the same in
    /// every process. A list gives one call per element, so the calls alone tell every identity
    /// apart. The credential's bytes may be a secret: the digest must be keyed.
    ///
    /// Returns `false`, having handed nothing, when the credential has no identity another
    /// process could compute (an unnamed assertion source, a signer without a public key), or
    /// when a mutual TLS client has not named its certificate: such a request is not shared.
    #[cfg(feature = "shared-cache")]
    #[must_use]
    pub(crate) fn identity_fields(&self, mut field: impl FnMut(&str, &[u8])) -> bool {
        let client = &self.0.client.0;
        let Some((credential_kind, credential)) = client.credential.shareable() else {
            return false;
        };
        let mtls = matches!(
            client.method,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        );
        if mtls && client.certificate.is_none() {
            return false;
        }
        field(
            "token_url",
            client.token_url.as_uri().to_string().as_bytes(),
        );
        field("client_id", client.client_id.as_bytes());
        field("auth_method", client.method.as_str().as_bytes());
        field("credential_kind", credential_kind.as_bytes());
        field("credential", credential);
        if let Some(certificate) = &client.certificate {
            field("certificate", certificate);
        }
        if let Some(thumbprint) = client.dpop_thumbprint() {
            field("dpop_jkt", thumbprint.as_bytes());
        }
        for scope in &self.0.scope_set {
            field("scope", scope.as_bytes());
        }
        if let Some(audience) = &self.0.audience {
            field("audience", audience.as_bytes());
        }
        for resource in &self.0.resources {
            field("resource", resource.as_bytes());
        }
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
            .field("scope", &self.0.scope)
            .field("audience", &self.0.audience)
            .field("resources", &self.0.resources)
            .field("param_names", &param_names)
            .finish()
    }
}

/// A request (client `client` with secret `secret` at `https://idp.example.com/token`, scopes
/// `a b`, audience `x`), then one for each field of the cache key changed alone: no two may
/// share a token. Shared by the key's tests and the cache's.
#[cfg(test)]
pub(crate) fn requests_differing_in_each_key_field() -> Vec<TokenRequest> {
    use crate::secret::ClientAssertion;
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
    use crate::secret::ClientAssertion;
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
    // The client's DPoP nonce store is a mutex, but neither `Hash` nor `Eq` reads it.
    #[allow(clippy::mutable_key_type)]
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
    // The client's DPoP nonce store is a mutex, but neither `Hash` nor `Eq` reads it.
    #[allow(clippy::mutable_key_type)]
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
