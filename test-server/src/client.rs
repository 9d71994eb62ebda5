//! The clients a test server knows, and the demo client.

use std::fmt;

use client_credentials::ClientSecret;
use client_credentials::auth::AuthMethod;

use super::assertion::{AssertionTrust, FederatedCredential};
use super::trust::{JwksError, KeySet};

/// The client id of the client [`TestServer::start`](crate::TestServer::start) registers.
pub const DEMO_CLIENT_ID: &str = "demo-client";

/// The secret of the demo client. It guards nothing: the server listens on loopback only.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// The scopes the demo client is allowed.
pub const DEMO_SCOPES: [&str; 2] = ["read", "write"];

/// The audience (and RFC 8707 resource) the demo client is allowed.
pub const DEMO_AUDIENCE: &str = "https://api.example.com";

/// A client registered with a [`TestServer`](crate::TestServer): its credentials and what it is allowed.
///
/// By default it may authenticate by `client_secret_basic` and `client_secret_post`, is
/// allowed the client credentials grant, and no scope, audience or resource, and its tokens
/// are DPoP-bound only when it sends a proof.
#[derive(Clone)]
#[must_use]
pub struct TestClient {
    pub(super) id: String,
    pub(super) secret: ClientSecret,
    pub(super) scopes: Vec<String>,
    pub(super) audiences: Vec<String>,
    pub(super) resources: Vec<String>,
    pub(super) grant_allowed: bool,
    pub(super) methods: Vec<AuthMethod>,
    pub(super) dpop_bound: bool,
    pub(super) assertions: Vec<AssertionTrust>,
}

impl TestClient {
    /// A client with this id and secret.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: ClientSecret::new(secret),
            scopes: Vec::new(),
            audiences: Vec::new(),
            resources: Vec::new(),
            grant_allowed: true,
            methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
            dpop_bound: false,
            assertions: Vec::new(),
        }
    }

    /// A client without a secret, for client assertions only: give it its keys with
    /// [`assertion_jwks`](Self::assertion_jwks) or another issuer's with
    /// [`federated`](Self::federated).
    pub fn secretless(id: impl Into<String>) -> Self {
        Self {
            methods: Vec::new(),
            ..Self::new(id, "")
        }
    }

    /// Accepts `private_key_jwt` (RFC 7523 §2.2, §3) client assertions signed by a key of
    /// `jwks_json` (a JWKS, RFC 7517 §5): `iss` and `sub` the client id, `aud` the server's
    /// issuer identifier or its token endpoint's URL, and the times and `jti` as for a
    /// [`FederatedCredential`]. Adds `private_key_jwt` to the client's methods.
    ///
    /// # Errors
    ///
    /// As [`TrustedIssuer::new`](crate::TrustedIssuer::new): the JWKS is
    /// malformed, holds a private or unsupported key, or has no signing key.
    pub fn assertion_jwks(self, jwks_json: &str) -> Result<Self, JwksError> {
        Ok(self.trust_assertions(AssertionTrust::Own(KeySet::parse(jwks_json)?)))
    }

    /// Accepts another issuer's JWTs as the client's assertions (federation, as Entra ID's
    /// federated credentials and Keycloak's federated clients): see [`FederatedCredential`].
    /// Adds `private_key_jwt` to the client's methods; may be called again for more issuers.
    pub fn federated(self, credential: FederatedCredential) -> Self {
        self.trust_assertions(AssertionTrust::Federated(credential))
    }

    fn trust_assertions(mut self, trust: AssertionTrust) -> Self {
        if !self.methods.contains(&AuthMethod::PrivateKeyJwt) {
            self.methods.push(AuthMethod::PrivateKeyJwt);
        }
        self.assertions.push(trust);
        self
    }

    /// Allows these scopes, in addition to those allowed before. A request without `scope` is
    /// granted all of them.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Allows these values of the `audience` parameter, in addition to those allowed before.
    pub fn audiences<S: Into<String>>(mut self, audiences: impl IntoIterator<Item = S>) -> Self {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Allows these values of the `resource` parameter (RFC 8707), in addition to those allowed
    /// before.
    pub fn resources<S: Into<String>>(mut self, resources: impl IntoIterator<Item = S>) -> Self {
        self.resources.extend(resources.into_iter().map(Into::into));
        self
    }

    /// Whether the client may use the client credentials grant; if not, its requests get
    /// `unauthorized_client`.
    pub fn grant_allowed(mut self, allowed: bool) -> Self {
        self.grant_allowed = allowed;
        self
    }

    /// The authentication methods the client may use, replacing the default (both
    /// `client_secret_basic` and `client_secret_post`). Other methods are never accepted.
    pub fn auth_methods(mut self, methods: impl IntoIterator<Item = AuthMethod>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Whether the client's tokens must be DPoP-bound (RFC 9449 §5, the
    /// `dpop_bound_access_tokens` of RFC 9449 §5.2): if so, a token request without a DPoP proof
    /// gets 400 `invalid_dpop_proof`. Any client that sends a proof gets a bound token.
    pub fn dpop_bound(mut self, bound: bool) -> Self {
        self.dpop_bound = bound;
        self
    }

    /// The client id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn demo() -> Self {
        Self::new(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
            .scopes(DEMO_SCOPES)
            .audiences([DEMO_AUDIENCE])
            .resources([DEMO_AUDIENCE])
    }
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("resources", &self.resources)
            .field("grant_allowed", &self.grant_allowed)
            .field("auth_methods", &self.methods)
            .field("dpop_bound", &self.dpop_bound)
            .field("assertions", &self.assertions)
            .finish()
    }
}
