//! Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0): the request for the
//! document, the document parsed and checked, and the client authentication it allows.
//!
//! A client configured from an issuer alone:
//!
//! ```text
//!   Issuer ──MetadataRequest::oauth/openid──▶ http_request() ──▶ your HTTP client
//!                                                                   │
//!   ClientCredentials ◀──client(id, credentials)── ServerMetadata ◀─┘ parse_response()
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode, Uri};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::auth::{AuthMethod, ClientAuth};
use crate::endpoint::is_loopback;
use crate::jwt::{JwsAlgorithm, JwsSigner, JwtAuth};
use crate::sanitize::{self, MAX_EXCERPT_LEN, MAX_SERVER_TEXT_LEN};
use crate::secret::{ClientSecret, RequestBody};
use crate::{ClientCredentials, Error, ResponseProblem, TokenUrl};

/// An authorization server's issuer identifier (RFC 8414 §2): an `https` URL with no query and
/// no fragment. Plain `http` is accepted for loopback hosts only, as for [`TokenUrl`], or
/// through [`Issuer::insecure_allow_http`].
///
/// Kept exactly as given: the metadata's `issuer` must be identical to it (RFC 8414 §3.3).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Issuer {
    text: Box<str>,
    oauth_url: Uri,
    openid_url: Uri,
    insecure: bool,
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

/// The request for an issuer's metadata document, and the parser of the answer.
///
/// The document holds no secret and is checked against the issuer, so any HTTP client may
/// fetch it; read at most [`max_body_len`](Self::max_body_len) bytes of the body.
///
/// ```
/// use client_credentials::{ClientSecret, Credentials, Issuer, MetadataRequest};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let discovery = MetadataRequest::oauth(Issuer::new("https://idp.example.com/tenant-1")?);
/// let http_request = discovery.http_request(); // send it with any client
/// assert_eq!(
///     http_request.uri(),
///     "https://idp.example.com/.well-known/oauth-authorization-server/tenant-1"
/// );
///
/// let response = http::Response::builder().status(200).body(
///     r#"{"issuer":"https://idp.example.com/tenant-1",
///         "token_endpoint":"https://idp.example.com/tenant-1/token",
///         "token_endpoint_auth_methods_supported":["client_secret_post","private_key_jwt"]}"#,
/// )?;
/// let metadata = discovery.parse_response(&response)?; // issuer checked (RFC 8414 §3.3)
/// let client = metadata.client("my-client", &Credentials::new().secret(ClientSecret::new("s3cr3t")))?;
/// assert_eq!(client.auth_method().as_str(), "client_secret_post");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MetadataRequest {
    issuer: Issuer,
    url: Uri,
    max_body_len: usize,
}

impl MetadataRequest {
    /// The default body size limit: 256 KiB, far above any real metadata document.
    pub const DEFAULT_MAX_BODY_LEN: usize = 256 * 1024;

    /// The RFC 8414 request, at [`Issuer::oauth_metadata_url`].
    pub fn oauth(issuer: Issuer) -> Self {
        let url = issuer.oauth_url.clone();
        Self::at(issuer, url)
    }

    /// The OpenID Connect Discovery request, at [`Issuer::openid_configuration_url`]: the one
    /// that servers which only speak OpenID Connect (Keycloak, Entra ID, Google) answer.
    pub fn openid(issuer: Issuer) -> Self {
        let url = issuer.openid_url.clone();
        Self::at(issuer, url)
    }

    fn at(issuer: Issuer, url: Uri) -> Self {
        Self {
            issuer,
            url,
            max_body_len: Self::DEFAULT_MAX_BODY_LEN,
        }
    }

    /// Sets the largest body, in bytes, that is parsed.
    pub fn with_max_body_len(mut self, max_body_len: usize) -> Self {
        self.max_body_len = max_body_len;
        self
    }

    /// The largest body, in bytes, that is parsed: adapters apply it while the body streams in.
    #[must_use]
    pub fn max_body_len(&self) -> usize {
        self.max_body_len
    }

    /// The issuer the document must name.
    #[must_use]
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The URL the document is fetched from.
    #[must_use]
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The HTTP request to send: a `GET` with `Accept: application/json` and an empty body.
    #[must_use]
    pub fn http_request(&self) -> http::Request<RequestBody> {
        let mut request = http::Request::new(RequestBody::new(Bytes::new()));
        *request.method_mut() = Method::GET;
        *request.uri_mut() = self.url.clone();
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        request
    }

    /// Parses the answer into checked metadata.
    ///
    /// The status must be 200 (RFC 8414 §3.2). The body is read as JSON whatever its
    /// `Content-Type` (the issuer check, not the label, makes it trustworthy), after an optional
    /// UTF-8 byte order mark. `issuer` must be identical to the requested issuer (§3.3) and
    /// `token_endpoint` a valid [`TokenUrl`]; members this crate reads must have the types
    /// RFC 8414 §2 gives them, and `null` counts as absent.
    ///
    /// # Errors
    ///
    /// [`Error::Discovery`], with the [`DiscoveryError`] saying what is wrong.
    pub fn parse_response(
        &self,
        response: &http::Response<impl AsRef<[u8]>>,
    ) -> Result<ServerMetadata, Error> {
        let status = response.status();
        let headers = response.headers();
        let body = response.body().as_ref();
        let content_type = || {
            headers
                .get(CONTENT_TYPE)
                .map(|value| sanitize::bytes(value.as_bytes(), MAX_SERVER_TEXT_LEN))
        };
        if status != StatusCode::OK {
            return Err(DiscoveryError::UnexpectedStatus {
                status,
                content_type: content_type(),
                excerpt: (!body.trim_ascii().is_empty())
                    .then(|| sanitize::bytes(body, MAX_EXCERPT_LEN)),
            }
            .into());
        }
        if body.len() > self.max_body_len {
            return Err(DiscoveryError::BodyTooLarge {
                limit: self.max_body_len,
            }
            .into());
        }
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let members = Members::from_json(body).map_err(|problem| match problem {
            ResponseProblem::InvalidJson { .. }
                if !body.trim_ascii_start().starts_with(b"{")
                    && !body.trim_ascii_start().starts_with(b"[") =>
            {
                ResponseProblem::NotJson {
                    content_type: content_type(),
                }
            }
            other => other,
        });
        let members = members.map_err(DiscoveryError::from)?;
        Ok(ServerMetadata::from_members(members, &self.issuer)?)
    }
}

/// An authorization server's metadata (RFC 8414 §2; OpenID Connect Discovery §3), checked
/// against the issuer it was fetched for.
#[derive(Debug, Clone)]
pub struct ServerMetadata {
    issuer: Box<str>,
    token_endpoint: TokenUrl,
    token_endpoint_auth_methods_supported: Vec<String>,
    token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    dpop_signing_alg_values_supported: Option<Vec<String>>,
    grant_types_supported: Vec<String>,
    scopes_supported: Option<Vec<String>>,
    mtls_endpoint_aliases: BTreeMap<String, String>,
    mtls_token_endpoint: Option<TokenUrl>,
    tls_client_certificate_bound_access_tokens: bool,
    extra: Map<String, Value>,
}

/// The members [`ServerMetadata`] reads; the others are kept as they came.
const KNOWN: [&str; 9] = [
    "issuer",
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "dpop_signing_alg_values_supported",
    "grant_types_supported",
    "scopes_supported",
    "mtls_endpoint_aliases",
    "tls_client_certificate_bound_access_tokens",
];

impl ServerMetadata {
    fn from_members(members: Members, issuer: &Issuer) -> Result<Self, DiscoveryError> {
        if let Some(name) = members.duplicate {
            return Err(ResponseProblem::DuplicateMember(name).into());
        }
        let mut map = members.map;
        let found = string(&mut map, "issuer")?.ok_or(DiscoveryError::MissingMember("issuer"))?;
        if found != issuer.as_str() {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.as_str().to_owned(),
                found: sanitize::text(&found, MAX_SERVER_TEXT_LEN),
            });
        }
        let endpoint = |url: &str| {
            let parsed = if issuer.insecure {
                TokenUrl::insecure_allow_http(url)
            } else {
                TokenUrl::new(url)
            };
            parsed.map_err(|error| match error {
                Error::InvalidTokenUrl { reason } => {
                    DiscoveryError::InvalidTokenEndpoint { reason }
                }
                _ => DiscoveryError::InvalidTokenEndpoint {
                    reason: "it is not a valid url",
                },
            })
        };
        let token_endpoint = string(&mut map, "token_endpoint")?
            .ok_or(DiscoveryError::MissingMember("token_endpoint"))?;
        let token_endpoint = endpoint(&token_endpoint)?;
        let mtls_endpoint_aliases = string_map(&mut map, "mtls_endpoint_aliases")?;
        let mtls_token_endpoint = mtls_endpoint_aliases
            .get("token_endpoint")
            .map(|url| endpoint(url))
            .transpose()?;
        // RFC 8705 §3.3: "If omitted, the default value is `false`".
        let tls_client_certificate_bound_access_tokens =
            boolean(&mut map, "tls_client_certificate_bound_access_tokens")?.unwrap_or(false);
        let defaults = |values: &[&str]| values.iter().map(|&v| v.to_owned()).collect();
        Ok(Self {
            issuer: found.into_boxed_str(),
            token_endpoint,
            // RFC 8414 §2: "If omitted, the default is `client_secret_basic`".
            token_endpoint_auth_methods_supported: strings(
                &mut map,
                "token_endpoint_auth_methods_supported",
            )?
            .unwrap_or_else(|| defaults(&["client_secret_basic"])),
            token_endpoint_auth_signing_alg_values_supported: strings(
                &mut map,
                "token_endpoint_auth_signing_alg_values_supported",
            )?,
            dpop_signing_alg_values_supported: strings(
                &mut map,
                "dpop_signing_alg_values_supported",
            )?,
            // RFC 8414 §2: "If omitted, the default value is `["authorization_code",
            // "implicit"]`".
            grant_types_supported: strings(&mut map, "grant_types_supported")?
                .unwrap_or_else(|| defaults(&["authorization_code", "implicit"])),
            scopes_supported: strings(&mut map, "scopes_supported")?,
            mtls_endpoint_aliases,
            mtls_token_endpoint,
            tls_client_certificate_bound_access_tokens,
            extra: map,
        })
    }

    /// The issuer identifier, identical to the one requested.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint, validated as a [`TokenUrl`].
    #[must_use]
    pub fn token_endpoint(&self) -> &TokenUrl {
        &self.token_endpoint
    }

    /// `token_endpoint_auth_methods_supported`, or RFC 8414's default `client_secret_basic`
    /// when the document leaves it out.
    #[must_use]
    pub fn token_endpoint_auth_methods_supported(&self) -> &[String] {
        &self.token_endpoint_auth_methods_supported
    }

    /// Whether the server lists the client authentication method.
    #[must_use]
    pub fn supports_auth_method(&self, method: AuthMethod) -> bool {
        self.token_endpoint_auth_methods_supported
            .iter()
            .any(|name| name == method.as_str())
    }

    /// `token_endpoint_auth_signing_alg_values_supported`: the algorithms the server accepts
    /// for client assertions; `None` if the document does not say.
    #[must_use]
    pub fn token_endpoint_auth_signing_alg_values_supported(&self) -> Option<&[String]> {
        self.token_endpoint_auth_signing_alg_values_supported
            .as_deref()
    }

    /// `dpop_signing_alg_values_supported` (RFC 9449 §5.1): the algorithms the server accepts
    /// for DPoP proofs; `None` if the document does not say, which suggests the server does
    /// not do DPoP.
    #[must_use]
    pub fn dpop_signing_alg_values_supported(&self) -> Option<&[String]> {
        self.dpop_signing_alg_values_supported.as_deref()
    }

    /// `grant_types_supported`, or RFC 8414's default (`authorization_code`, `implicit`) when
    /// the document leaves it out; many servers that allow `client_credentials` do not say so.
    #[must_use]
    pub fn grant_types_supported(&self) -> &[String] {
        &self.grant_types_supported
    }

    /// `scopes_supported`, if the document lists them.
    #[must_use]
    pub fn scopes_supported(&self) -> Option<&[String]> {
        self.scopes_supported.as_deref()
    }

    /// `mtls_endpoint_aliases` (RFC 8705 §5): the endpoints to use with mutual TLS, by name;
    /// empty if the document has none.
    #[must_use]
    pub fn mtls_endpoint_aliases(&self) -> &BTreeMap<String, String> {
        &self.mtls_endpoint_aliases
    }

    /// The token endpoint for mutual TLS clients (RFC 8705 §5), validated: the alias if there
    /// is one.
    #[must_use]
    pub fn mtls_token_endpoint(&self) -> Option<&TokenUrl> {
        self.mtls_token_endpoint.as_ref()
    }

    /// `tls_client_certificate_bound_access_tokens` (RFC 8705 §3.3): whether the server can
    /// bind access tokens to the client's certificate; `false` if the document does not say.
    #[must_use]
    pub fn tls_client_certificate_bound_access_tokens(&self) -> bool {
        self.tls_client_certificate_bound_access_tokens
    }

    /// The token endpoint a client with these credentials sends to: the mutual TLS alias
    /// ([`mtls_token_endpoint`](Self::mtls_token_endpoint)) when the credentials name a client
    /// certificate and the server has an alias, since the client then uses mutual TLS for its
    /// authentication or for certificate-bound tokens (RFC 8705 §5); else
    /// [`token_endpoint`](Self::token_endpoint).
    #[must_use]
    pub fn token_endpoint_for(&self, credentials: &Credentials) -> &TokenUrl {
        match (&credentials.certificate, &self.mtls_token_endpoint) {
            (Some(_), Some(alias)) => alias,
            _ => &self.token_endpoint,
        }
    }

    /// A member other than the ones read above (`jwks_uri`, `introspection_endpoint`, …), by
    /// name.
    #[must_use]
    pub fn extra(&self, name: &str) -> Option<&Value> {
        self.extra.get(name)
    }

    /// Every member other than the ones read above.
    #[must_use]
    pub fn extras(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// The best client authentication the server supports for the client's credentials.
    ///
    /// In order of preference:
    ///
    /// 1. a signer's JWT method: `private_key_jwt` for an asymmetric key, `client_secret_jwt`
    ///    for an HMAC one, if the server lists the method and (when it lists any) the
    ///    algorithm in `token_endpoint_auth_signing_alg_values_supported`;
    /// 2. with a secret, `client_secret_basic`, then `client_secret_post`, then (feature
    ///    `jwt`, secrets of 32 bytes or more) `client_secret_jwt` with HS256. Servers insist
    ///    on the method a client was registered with, and RFC 7591 §2 registers
    ///    `client_secret_basic` by default, so the JWT method comes last for a bare secret;
    ///    name it with [`Credentials::registered_method`] to choose it;
    /// 3. with a [client certificate](Credentials::client_certificate) (RFC 8705 §2),
    ///    `tls_client_auth` for one a certificate authority issued, then
    ///    `self_signed_tls_client_auth`, which the server checks against the certificate the
    ///    client registered and so takes any; only the latter for a self-signed one. A
    ///    certificate comes after a secret because it may be there only to bind the tokens
    ///    (RFC 8705 §3), which works with any method, where a secret serves only to
    ///    authenticate;
    /// 4. without a secret or a signer, `none` (a certificate may still bind the tokens, RFC
    ///    8705 §4).
    ///
    /// [`Credentials::registered_method`] narrows the choice to that one method. A JWT
    /// assertion's audience is the token endpoint.
    ///
    /// # Errors
    ///
    /// [`Error::Discovery`] with [`DiscoveryError::NoUsableAuthMethod`] if the server lists
    /// none of the methods the credentials allow.
    pub fn choose_auth(&self, credentials: &Credentials) -> Result<ClientAuth, Error> {
        credentials.choose(self).ok_or_else(|| {
            let listed = self.token_endpoint_auth_methods_supported.join(" ");
            DiscoveryError::NoUsableAuthMethod {
                supported: sanitize::text(&listed, MAX_SERVER_TEXT_LEN),
            }
            .into()
        })
    }

    /// A client of this server's token endpoint, authenticating by
    /// [`choose_auth`](Self::choose_auth), at
    /// [`token_endpoint_for`](Self::token_endpoint_for) the credentials (the mutual TLS alias
    /// when they name a client certificate).
    ///
    /// # Errors
    ///
    /// As [`choose_auth`](Self::choose_auth), and as [`ClientCredentials::with_auth`].
    pub fn client(
        &self,
        client_id: impl Into<String>,
        credentials: &Credentials,
    ) -> Result<ClientCredentials, Error> {
        let auth = self.choose_auth(credentials)?;
        let token_url = self.token_endpoint_for(credentials).clone();
        ClientCredentials::with_auth(token_url, client_id, auth)
    }
}

/// What a client holds to authenticate with, for [`ServerMetadata::choose_auth`] to pick a
/// method the server supports.
///
/// `Debug` shows which credentials there are, never their values.
#[derive(Clone, Default)]
#[must_use]
pub struct Credentials {
    secret: Option<ClientSecret>,
    signer: Option<Arc<dyn JwsSigner>>,
    certificate: Option<ClientCertificate>,
    registered: Option<AuthMethod>,
}

/// The kind of certificate a client's HTTP client presents in the TLS handshake (RFC 8705 §2),
/// for [`Credentials::client_certificate`].
///
/// The certificate and its key stay with the HTTP client (a `reqwest::Identity`, or the rustls
/// config of a hyper connector): this crate only needs to know there is one, and which
/// methods it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientCertificate {
    /// Issued by a certificate authority: `tls_client_auth` (§2.1) if the server trusts the
    /// authority, or `self_signed_tls_client_auth` (§2.2) if the client registered the
    /// certificate itself.
    CaIssued,
    /// Self-signed: `self_signed_tls_client_auth` (§2.2) only.
    SelfSigned,
}

impl Credentials {
    /// No credentials yet: on its own, a public client (`none`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a client secret (for `client_secret_basic`, `client_secret_post` or
    /// `client_secret_jwt`).
    pub fn secret(mut self, secret: ClientSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Adds a signer (for `private_key_jwt`, or `client_secret_jwt` with an HMAC key).
    pub fn signer(self, signer: impl JwsSigner + 'static) -> Self {
        self.signer_arc(Arc::new(signer))
    }

    /// Like [`signer`](Self::signer), for a signer that is shared.
    pub fn signer_arc(mut self, signer: Arc<dyn JwsSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Says that the HTTP client presents a client certificate of this kind (RFC 8705): for
    /// `tls_client_auth` or `self_signed_tls_client_auth`, and for certificate-bound tokens
    /// (§3) whatever the method. The client then uses the server's mutual TLS token endpoint
    /// ([`ServerMetadata::token_endpoint_for`]).
    pub fn client_certificate(mut self, kind: ClientCertificate) -> Self {
        self.certificate = Some(kind);
        self
    }

    /// The method the client is registered with: only that one is chosen.
    pub fn registered_method(mut self, method: AuthMethod) -> Self {
        self.registered = Some(method);
        self
    }

    fn choose(&self, metadata: &ServerMetadata) -> Option<ClientAuth> {
        let allowed = |method: AuthMethod| {
            metadata.supports_auth_method(method) && self.registered.is_none_or(|r| r == method)
        };
        let algorithm_allowed = |algorithm: &JwsAlgorithm| {
            metadata
                .token_endpoint_auth_signing_alg_values_supported()
                .is_none_or(|algs| algs.iter().any(|alg| alg == algorithm.as_str()))
        };
        if let Some(signer) = &self.signer {
            let jwt = JwtAuth::from_arc(Arc::clone(signer));
            if allowed(jwt.method()) && algorithm_allowed(&jwt.algorithm()) {
                return Some(ClientAuth::Jwt(jwt));
            }
        }
        if let Some(secret) = &self.secret {
            if allowed(AuthMethod::ClientSecretBasic) {
                return Some(ClientAuth::SecretBasic(secret.clone()));
            }
            if allowed(AuthMethod::ClientSecretPost) {
                return Some(ClientAuth::SecretPost(secret.clone()));
            }
            #[cfg(feature = "jwt")]
            if allowed(AuthMethod::ClientSecretJwt)
                && algorithm_allowed(&JwsAlgorithm::Hs256)
                && let Ok(jwt) = JwtAuth::client_secret(secret)
            {
                return Some(ClientAuth::Jwt(jwt));
            }
        }
        if let Some(certificate) = self.certificate {
            if certificate == ClientCertificate::CaIssued && allowed(AuthMethod::TlsClientAuth) {
                return Some(ClientAuth::TlsClientAuth);
            }
            if allowed(AuthMethod::SelfSignedTlsClientAuth) {
                return Some(ClientAuth::SelfSignedTlsClientAuth);
            }
        }
        let nothing = self.secret.is_none() && self.signer.is_none();
        (nothing && allowed(AuthMethod::None)).then_some(ClientAuth::None)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret", &self.secret)
            .field(
                "signer",
                &self.signer.as_ref().map(|signer| signer.algorithm()),
            )
            .field("certificate", &self.certificate)
            .field("registered", &self.registered)
            .finish()
    }
}

/// What went wrong discovering the server's metadata.
///
/// Server text in it is sanitized (control characters dropped, length capped): safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer identifier was rejected at construction.
    #[error("invalid issuer: {reason}")]
    InvalidIssuer {
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The metadata endpoint answered with a status other than 200 (a redirect included: it is
    /// not followed).
    #[error(
        "the metadata endpoint answered http {}{}; check the issuer, and whether the server publishes the other well-known document (MetadataRequest::oauth or ::openid){}",
        status.as_u16(),
        content_type.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        excerpt.as_deref().map(|e| format!("; body starts: {e}")).unwrap_or_default()
    )]
    UnexpectedStatus {
        /// The HTTP status.
        status: StatusCode,
        /// The `Content-Type` header, sanitized.
        content_type: Option<String>,
        /// The start of the body, sanitized and capped at
        /// [`MAX_EXCERPT_LEN`](crate::MAX_EXCERPT_LEN) bytes.
        excerpt: Option<String>,
    },

    /// The body exceeded the limit and was not parsed.
    #[error(
        "the metadata document exceeds the {limit}-byte limit; check the issuer, or raise the limit with MetadataRequest::with_max_body_len"
    )]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The body is not a JSON object, or a member has the wrong type.
    #[error("the metadata document is unusable: {0}")]
    InvalidDocument(ResponseProblem),

    /// A member the client needs is missing.
    #[error("the metadata document has no `{0}`, which the client needs")]
    MissingMember(&'static str),

    /// The document names another issuer than the one it was fetched for (RFC 8414 §3.3), so
    /// it cannot be trusted.
    #[error(
        "the metadata names the issuer `{found}`, not `{expected}` as requested (RFC 8414 §3.3); configure the issuer exactly as the server names itself"
    )]
    IssuerMismatch {
        /// The issuer requested.
        expected: String,
        /// The issuer the document names, sanitized.
        found: String,
    },

    /// The document's token endpoint (or its mutual TLS alias) is not a usable token URL.
    #[error("the metadata's token endpoint is unusable: {reason}")]
    InvalidTokenEndpoint {
        /// Why, as [`Error::InvalidTokenUrl`] says it.
        reason: &'static str,
    },

    /// The server supports none of the methods the client's credentials allow.
    #[error(
        "the server supports none of the client authentication methods these credentials allow (it lists: {supported}); give the client a credential for one of them"
    )]
    NoUsableAuthMethod {
        /// The methods the server lists, space-separated and sanitized.
        supported: String,
    },
}

impl DiscoveryError {
    /// The HTTP status of the response, for an unexpected one.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<DiscoveryError> for Error {
    fn from(error: DiscoveryError) -> Self {
        Self::Discovery(Box::new(error))
    }
}

impl From<ResponseProblem> for DiscoveryError {
    fn from(problem: ResponseProblem) -> Self {
        Self::InvalidDocument(problem)
    }
}

fn invalid_member(name: &'static str, expected: &'static str) -> DiscoveryError {
    ResponseProblem::InvalidMember { name, expected }.into()
}

/// Takes a string member; `null` counts as absent.
fn string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DiscoveryError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid_member(name, "a string")),
    }
}

/// Takes a boolean member; `null` counts as absent.
fn boolean(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<bool>, DiscoveryError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(value)),
        Some(_) => Err(invalid_member(name, "a boolean")),
    }
}

/// Takes an array-of-strings member; `null` counts as absent.
fn strings(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<Vec<String>>, DiscoveryError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(invalid_member(name, "an array of strings")),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid_member(name, "an array of strings")),
    }
}

/// Takes an object-of-strings member; `null` or absent is empty.
fn string_map(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<BTreeMap<String, String>, DiscoveryError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(members)) => members
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key, text)),
                _ => Err(invalid_member(name, "an object of strings")),
            })
            .collect(),
        Some(_) => Err(invalid_member(name, "an object of strings")),
    }
}

/// A JSON object's members, with the first repeated member the parser reads.
struct Members {
    map: Map<String, Value>,
    duplicate: Option<&'static str>,
}

impl Members {
    fn from_json(body: &[u8]) -> Result<Self, ResponseProblem> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let members = deserializer.deserialize_map(MembersVisitor)?;
        deserializer.end()?;
        Ok(members)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Members, A::Error> {
        let mut members = Members {
            map: Map::new(),
            duplicate: None,
        };
        while let Some(name) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            // A repeated member the parser reads makes the document ambiguous.
            if members.map.contains_key(&name)
                && let Some(known) = KNOWN.iter().find(|known| **known == name)
            {
                members.duplicate.get_or_insert(known);
            }
            members.map.insert(name, value);
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(text: &str) -> Issuer {
        Issuer::new(text).unwrap()
    }

    fn response(status: u16, body: &str) -> http::Response<Vec<u8>> {
        http::Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn discovery_error(result: Result<impl fmt::Debug, Error>) -> DiscoveryError {
        match result {
            Err(Error::Discovery(error)) => *error,
            other => panic!("expected a discovery error, got {other:?}"),
        }
    }

    fn parse(issuer_text: &str, body: &str) -> Result<ServerMetadata, Error> {
        MetadataRequest::oauth(issuer(issuer_text)).parse_response(&response(200, body))
    }

    const MINIMAL: &str =
        r#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token"}"#;

    #[test]
    fn well_known_urls_rfc8414_3_1_and_openid_4() {
        let cases = [
            (
                "https://example.com",
                "https://example.com/.well-known/oauth-authorization-server",
                "https://example.com/.well-known/openid-configuration",
            ),
            (
                "https://example.com/",
                "https://example.com/.well-known/oauth-authorization-server",
                "https://example.com/.well-known/openid-configuration",
            ),
            // RFC 8414 §3.1's example.
            (
                "https://example.com/issuer1",
                "https://example.com/.well-known/oauth-authorization-server/issuer1",
                "https://example.com/issuer1/.well-known/openid-configuration",
            ),
            (
                "https://example.com/tenant/a/",
                "https://example.com/.well-known/oauth-authorization-server/tenant/a",
                "https://example.com/tenant/a/.well-known/openid-configuration",
            ),
            (
                "http://127.0.0.1:9400",
                "http://127.0.0.1:9400/.well-known/oauth-authorization-server",
                "http://127.0.0.1:9400/.well-known/openid-configuration",
            ),
        ];
        for (text, oauth, openid) in cases {
            let issuer = issuer(text);
            assert_eq!(issuer.oauth_metadata_url(), oauth, "{text}");
            assert_eq!(issuer.openid_configuration_url(), openid, "{text}");
            assert_eq!(issuer.as_str(), text);
        }
        let request = MetadataRequest::openid(issuer("https://example.com/issuer1")).http_request();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(
            request.uri(),
            "https://example.com/issuer1/.well-known/openid-configuration"
        );
        assert_eq!(request.headers()[ACCEPT], "application/json");
        assert!(request.body().is_empty());
    }

    #[test]
    fn issuer_validation_rfc8414_2() {
        let reason = |text: &str| match discovery_error(Issuer::new(text)) {
            DiscoveryError::InvalidIssuer { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason("https://example.com/?x=1").contains("query"));
        assert!(reason("https://example.com/#f").contains("fragment"));
        assert!(reason("http://example.com").contains("loopback"));
        assert!(reason("https://u:p@example.com").contains("user"));
        assert!(reason("/relative").contains("absolute"));
        assert!(reason("ftp://example.com").contains("scheme"));
        assert!(Issuer::insecure_allow_http("http://idp.internal").is_ok());
        assert!(Issuer::new("http://localhost:8080/realms/x").is_ok());
    }

    #[test]
    fn parses_a_full_document() {
        let body = r#"{
            "issuer": "https://idp.example.com",
            "token_endpoint": "https://idp.example.com/token",
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["api:read"],
            "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.example.com/token"},
            "jwks_uri": "https://idp.example.com/jwks",
            "scope_descriptions": null
        }"#;
        let metadata = parse("https://idp.example.com", body).unwrap();
        assert_eq!(metadata.issuer(), "https://idp.example.com");
        assert_eq!(
            metadata.token_endpoint().to_string(),
            "https://idp.example.com/token"
        );
        assert!(metadata.supports_auth_method(AuthMethod::PrivateKeyJwt));
        assert!(!metadata.supports_auth_method(AuthMethod::ClientSecretPost));
        assert_eq!(
            metadata.dpop_signing_alg_values_supported(),
            Some(&["ES256".to_owned(), "EdDSA".to_owned()][..])
        );
        assert_eq!(metadata.grant_types_supported(), ["client_credentials"]);
        assert_eq!(
            metadata.scopes_supported(),
            Some(&["api:read".to_owned()][..])
        );
        assert_eq!(
            metadata.mtls_token_endpoint().unwrap().to_string(),
            "https://mtls.idp.example.com/token"
        );
        assert_eq!(metadata.mtls_endpoint_aliases().len(), 1);
        assert_eq!(
            metadata.extra("jwks_uri"),
            Some(&Value::from("https://idp.example.com/jwks"))
        );
        assert!(
            metadata.extra("issuer").is_none(),
            "read members are not extras"
        );
    }

    #[test]
    fn defaults_for_omitted_members_rfc8414_2() {
        let metadata = parse("https://idp.example.com", MINIMAL).unwrap();
        assert_eq!(
            metadata.token_endpoint_auth_methods_supported(),
            ["client_secret_basic"]
        );
        assert_eq!(
            metadata.grant_types_supported(),
            ["authorization_code", "implicit"]
        );
        assert_eq!(
            metadata.token_endpoint_auth_signing_alg_values_supported(),
            None
        );
        assert_eq!(metadata.dpop_signing_alg_values_supported(), None);
        assert!(metadata.mtls_endpoint_aliases().is_empty());
        assert!(metadata.mtls_token_endpoint().is_none());
        let with_nulls = r#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token","token_endpoint_auth_methods_supported":null,"mtls_endpoint_aliases":null}"#;
        let metadata = parse("https://idp.example.com", with_nulls).unwrap();
        assert_eq!(
            metadata.token_endpoint_auth_methods_supported(),
            ["client_secret_basic"]
        );
    }

    #[test]
    fn issuer_must_match_exactly_rfc8414_3_3() {
        for (requested, named) in [
            ("https://idp.example.com", "https://idp.example.com/"),
            ("https://idp.example.com", "https://IDP.example.com"),
            ("https://idp.example.com", "https://evil.example.com"),
        ] {
            let body = format!(
                r#"{{"issuer":"{named}","token_endpoint":"https://idp.example.com/token"}}"#
            );
            let error = discovery_error(parse(requested, &body));
            assert_eq!(
                error,
                DiscoveryError::IssuerMismatch {
                    expected: requested.into(),
                    found: named.into()
                }
            );
        }
        let error = discovery_error(parse(
            "https://idp.example.com",
            "{\"issuer\":\"https://e\\u001b[31mvil\",\"token_endpoint\":\"https://x/t\"}",
        ));
        let text = error.to_string();
        assert!(!text.contains('\u{1b}'), "sanitized: {text}");
        assert!(text.starts_with("the metadata names the issuer"), "{text}");
    }

    #[test]
    fn missing_and_odd_members() {
        let error = |body: &str| discovery_error(parse("https://idp.example.com", body));
        assert_eq!(
            error(r#"{"token_endpoint":"https://idp.example.com/token"}"#),
            DiscoveryError::MissingMember("issuer")
        );
        assert_eq!(
            error(r#"{"issuer":"https://idp.example.com"}"#),
            DiscoveryError::MissingMember("token_endpoint")
        );
        assert_eq!(
            error(
                r#"{"issuer":"https://idp.example.com","token_endpoint":"http://idp.example.com/token"}"#
            ),
            DiscoveryError::InvalidTokenEndpoint {
                reason: "plain http is allowed only for loopback hosts; use https"
            }
        );
        assert!(matches!(
            error(r#"{"issuer":42,"token_endpoint":"https://idp.example.com/token"}"#),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember { name: "issuer", .. })
        ));
        assert!(matches!(
            error(&MINIMAL.replace(
                '}',
                r#","token_endpoint_auth_methods_supported":"client_secret_basic"}"#
            )),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
                name: "token_endpoint_auth_methods_supported",
                expected: "an array of strings"
            })
        ));
        assert!(matches!(
            error(&MINIMAL.replace('}', r#","scopes_supported":["a",1]}"#)),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
                name: "scopes_supported",
                ..
            })
        ));
        assert!(matches!(
            error(&MINIMAL.replace('}', r#","mtls_endpoint_aliases":{"token_endpoint":7}}"#)),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
                name: "mtls_endpoint_aliases",
                ..
            })
        ));
        assert!(matches!(
            error(&MINIMAL.replace('}', r#","issuer":"https://idp.example.com"}"#)),
            DiscoveryError::InvalidDocument(ResponseProblem::DuplicateMember("issuer"))
        ));
        assert!(matches!(
            error("[1,2]"),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidJson { .. })
        ));
        assert!(matches!(
            error("{\"issuer\":"),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidJson { .. })
        ));
        assert!(matches!(
            error("<html>not found</html>"),
            DiscoveryError::InvalidDocument(ResponseProblem::NotJson { .. })
        ));
        // A byte order mark and an odd content type are tolerated.
        let request = MetadataRequest::oauth(issuer("https://idp.example.com"));
        let odd = http::Response::builder()
            .status(200)
            .header(CONTENT_TYPE, "text/plain")
            .body(format!("\u{feff}{MINIMAL}").into_bytes())
            .unwrap();
        assert!(request.parse_response(&odd).is_ok());
    }

    #[test]
    fn status_and_size_errors() {
        let request =
            MetadataRequest::oauth(issuer("https://idp.example.com")).with_max_body_len(64);
        let error = discovery_error(request.parse_response(&response(404, "{\"error\":\"nope\"}")));
        assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
        let text = Error::from(error.clone()).to_string();
        assert!(
            text.starts_with("the metadata endpoint answered http 404 (application/json)"),
            "{text}"
        );
        assert!(
            text.ends_with("body starts: {\"error\":\"nope\"}"),
            "{text}"
        );
        assert!(!Error::from(error).is_retryable());
        let unavailable = Error::from(discovery_error(request.parse_response(&response(503, ""))));
        assert!(unavailable.is_retryable());
        assert_eq!(unavailable.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            discovery_error(request.parse_response(&response(200, &" ".repeat(65)))),
            DiscoveryError::BodyTooLarge { limit: 64 }
        );
        assert!(matches!(
            discovery_error(request.parse_response(&response(302, ""))),
            DiscoveryError::UnexpectedStatus { excerpt: None, .. }
        ));
    }

    struct Signer(JwsAlgorithm);

    impl JwsSigner for Signer {
        fn algorithm(&self) -> JwsAlgorithm {
            self.0.clone()
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, crate::BoxError> {
            Ok(vec![1])
        }
    }

    fn metadata(methods: Option<&[&str]>, algs: Option<&[&str]>) -> ServerMetadata {
        let mut body = serde_json::json!({
            "issuer": "https://idp.example.com",
            "token_endpoint": "https://idp.example.com/token",
        });
        if let Some(methods) = methods {
            body["token_endpoint_auth_methods_supported"] = methods.into();
        }
        if let Some(algs) = algs {
            body["token_endpoint_auth_signing_alg_values_supported"] = algs.into();
        }
        parse("https://idp.example.com", &body.to_string()).unwrap()
    }

    fn chosen(metadata: &ServerMetadata, credentials: &Credentials) -> Option<AuthMethod> {
        metadata
            .choose_auth(credentials)
            .ok()
            .map(|auth| auth.method())
    }

    /// The server's methods and algorithms, the client's credentials, and the method chosen.
    type Row<'a> = (
        Option<&'a [&'a str]>,
        Option<&'a [&'a str]>,
        Credentials,
        Option<AuthMethod>,
    );

    #[test]
    fn auth_method_choice_table() {
        use AuthMethod as M;
        let all: &[&str] = &[
            "none",
            "client_secret_post",
            "client_secret_basic",
            "client_secret_jwt",
            "private_key_jwt",
        ];
        let secret = || Credentials::new().secret(ClientSecret::new("s".repeat(32)));
        let short_secret = || Credentials::new().secret(ClientSecret::new("short"));
        let key = || Credentials::new().signer(Signer(JwsAlgorithm::Es256));
        let hmac = || Credentials::new().signer(Signer(JwsAlgorithm::Hs256));
        let both = || key().secret(ClientSecret::new("s".repeat(32)));
        let ca_issued = || Credentials::new().client_certificate(ClientCertificate::CaIssued);
        let self_signed = || Credentials::new().client_certificate(ClientCertificate::SelfSigned);
        let with_mtls: &[&str] = &[
            "none",
            "client_secret_basic",
            "private_key_jwt",
            "tls_client_auth",
            "self_signed_tls_client_auth",
        ];
        let mtls_only: &[&str] = &["tls_client_auth", "self_signed_tls_client_auth"];
        let jwt_for_secret = if cfg!(feature = "jwt") {
            Some(M::ClientSecretJwt)
        } else {
            None
        };
        // (server's methods, server's algorithms, credentials, expected)
        let table: Vec<Row<'_>> = vec![
            (Some(all), None, both(), Some(M::PrivateKeyJwt)),
            (Some(all), None, key(), Some(M::PrivateKeyJwt)),
            (Some(all), Some(&["RS256"]), key(), None),
            (
                Some(all),
                Some(&["RS256"]),
                both(),
                Some(M::ClientSecretBasic),
            ),
            (Some(all), None, hmac(), Some(M::ClientSecretJwt)),
            (Some(all), None, secret(), Some(M::ClientSecretBasic)),
            (
                Some(&["client_secret_post", "client_secret_jwt"]),
                None,
                secret(),
                Some(M::ClientSecretPost),
            ),
            (Some(&["client_secret_jwt"]), None, secret(), jwt_for_secret),
            (
                Some(&["client_secret_jwt"]),
                Some(&["HS512"]),
                secret(),
                None,
            ),
            (Some(&["client_secret_jwt"]), None, short_secret(), None),
            (None, None, secret(), Some(M::ClientSecretBasic)),
            (None, None, key(), None),
            (Some(&["private_key_jwt"]), None, secret(), None),
            (Some(all), None, Credentials::new(), Some(M::None)),
            (
                Some(&["client_secret_basic"]),
                None,
                Credentials::new(),
                None,
            ),
            (
                Some(all),
                None,
                secret().registered_method(M::ClientSecretPost),
                Some(M::ClientSecretPost),
            ),
            (
                Some(all),
                None,
                secret().registered_method(M::ClientSecretJwt),
                jwt_for_secret,
            ),
            (
                Some(&["client_secret_basic"]),
                None,
                secret().registered_method(M::ClientSecretPost),
                None,
            ),
            (
                Some(all),
                None,
                both().registered_method(M::ClientSecretBasic),
                Some(M::ClientSecretBasic),
            ),
            // RFC 8705 §2: a certificate authenticates when nothing else does.
            (Some(mtls_only), None, ca_issued(), Some(M::TlsClientAuth)),
            (
                Some(mtls_only),
                None,
                self_signed(),
                Some(M::SelfSignedTlsClientAuth),
            ),
            (
                Some(&["self_signed_tls_client_auth"]),
                None,
                ca_issued(),
                Some(M::SelfSignedTlsClientAuth),
            ),
            (Some(&["tls_client_auth"]), None, self_signed(), None),
            (Some(with_mtls), None, ca_issued(), Some(M::TlsClientAuth)),
            (
                Some(with_mtls),
                None,
                ca_issued().secret(ClientSecret::new("s")),
                Some(M::ClientSecretBasic),
            ),
            (
                Some(with_mtls),
                None,
                self_signed().signer(Signer(JwsAlgorithm::Es256)),
                Some(M::PrivateKeyJwt),
            ),
            (
                Some(with_mtls),
                None,
                ca_issued()
                    .secret(ClientSecret::new("s"))
                    .registered_method(M::TlsClientAuth),
                Some(M::TlsClientAuth),
            ),
            (
                Some(with_mtls),
                None,
                ca_issued().registered_method(M::SelfSignedTlsClientAuth),
                Some(M::SelfSignedTlsClientAuth),
            ),
            // RFC 8705 §4: a public client's certificate only binds its tokens.
            (Some(&["none"]), None, ca_issued(), Some(M::None)),
            (Some(&["client_secret_basic"]), None, ca_issued(), None),
            (None, None, self_signed(), None),
        ];
        for (i, (methods, algs, credentials, expected)) in table.into_iter().enumerate() {
            let metadata = metadata(methods, algs);
            assert_eq!(
                chosen(&metadata, &credentials),
                expected,
                "row {i}: {credentials:?}"
            );
        }
    }

    #[test]
    fn a_client_certificate_uses_the_mtls_alias_rfc8705_5() {
        let body = serde_json::json!({
            "issuer": "https://idp.example.com",
            "token_endpoint": "https://idp.example.com/token",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "tls_client_auth"],
            "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.example.com/token"},
            "tls_client_certificate_bound_access_tokens": true,
        });
        let metadata = parse("https://idp.example.com", &body.to_string()).unwrap();
        assert!(metadata.tls_client_certificate_bound_access_tokens());
        let alias = "https://mtls.idp.example.com/token";
        let plain = "https://idp.example.com/token";
        let certificate = Credentials::new().client_certificate(ClientCertificate::CaIssued);
        let secret = Credentials::new().secret(ClientSecret::new("s"));
        // For authentication, and for binding the tokens of a client that uses a secret.
        for (credentials, url, method) in [
            (certificate.clone(), alias, AuthMethod::TlsClientAuth),
            (
                secret
                    .clone()
                    .client_certificate(ClientCertificate::SelfSigned),
                alias,
                AuthMethod::ClientSecretBasic,
            ),
            (secret, plain, AuthMethod::ClientSecretBasic),
        ] {
            assert_eq!(metadata.token_endpoint_for(&credentials).to_string(), url);
            let client = metadata.client("c", &credentials).unwrap();
            assert_eq!(client.token_url().to_string(), url);
            assert_eq!(client.auth_method(), method);
            let request = client.token_request().build().unwrap().http_request();
            assert_eq!(request.uri(), url);
        }
        // Without an alias, the one token endpoint serves mutual TLS too.
        let without = metadata_with_mtls_methods();
        assert!(!without.tls_client_certificate_bound_access_tokens());
        assert_eq!(without.token_endpoint_for(&certificate).to_string(), plain);
        let request = without
            .client("c", &certificate)
            .unwrap()
            .token_request()
            .build()
            .unwrap()
            .http_request();
        assert!(request.headers().get(http::header::AUTHORIZATION).is_none());
        assert_eq!(
            request.body().secret(),
            b"grant_type=client_credentials&client_id=c"
        );
        assert!(matches!(
            discovery_error(parse(
                "https://idp.example.com",
                &MINIMAL.replace(
                    '}',
                    r#","tls_client_certificate_bound_access_tokens":"yes"}"#
                )
            )),
            DiscoveryError::InvalidDocument(ResponseProblem::InvalidMember {
                name: "tls_client_certificate_bound_access_tokens",
                expected: "a boolean"
            })
        ));
    }

    fn metadata_with_mtls_methods() -> ServerMetadata {
        metadata(
            Some(&["self_signed_tls_client_auth", "tls_client_auth"]),
            None,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any issuer text and any answer give metadata or a typed error, never a panic; what
        /// parses names the issuer asked for.
        #[test]
        fn never_panics(
            issuer_text in "\\PC{0,40}",
            status in 100u16..600,
            body in proptest::prelude::prop_oneof![
                "\\PC{0,200}",
                concat!(
                    "\\{\"issuer\":\"https://idp.example.com\",",
                    "\"token_endpoint\":\"(https://idp\\.example\\.com/[a-z]{0,5}|\\PC{0,30})\"",
                    "(,\"[a-z_]{1,40}\":(null|1|\"x\"|\\[\"a\"\\]|\\{\\}))?\\}",
                ),
            ],
        ) {
            if let Ok(issuer) = Issuer::new(&issuer_text) {
                proptest::prop_assert!(issuer.oauth_metadata_url().path().starts_with("/.well-known/"));
            }
            let request = MetadataRequest::oauth(issuer("https://idp.example.com"));
            let response = http::Response::builder()
                .status(status)
                .body(body.into_bytes())
                .unwrap();
            if let Ok(metadata) = request.parse_response(&response) {
                proptest::prop_assert_eq!(metadata.issuer(), "https://idp.example.com");
                let credentials = Credentials::new().secret(ClientSecret::new("s"));
                let _ = metadata.choose_auth(&credentials);
            }
        }
    }

    #[test]
    fn a_client_from_the_issuer_alone() {
        let metadata = metadata(Some(&["client_secret_post"]), None);
        let client = metadata
            .client(
                "my-client",
                &Credentials::new().secret(ClientSecret::new("hunter2")),
            )
            .unwrap();
        assert_eq!(
            client.token_url().to_string(),
            "https://idp.example.com/token"
        );
        assert_eq!(client.auth_method(), AuthMethod::ClientSecretPost);
        let error = discovery_error(metadata.client("c", &Credentials::new()));
        assert_eq!(
            error,
            DiscoveryError::NoUsableAuthMethod {
                supported: "client_secret_post".into()
            }
        );
        let debug = format!(
            "{:?}",
            Credentials::new().secret(ClientSecret::new("hunter2"))
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
