//! The metadata document, parsed and checked against its issuer, and the client
//! authentication it allows.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::client::ClientCredentials;
use crate::client_auth::ClientAuth;
use crate::client_auth::method::AuthMethod;
use crate::discovery::issuer::Issuer;
use crate::discovery::material::AuthMaterial;
use crate::endpoint::TokenUrl;
use crate::error::Error;
use crate::error::discovery::DiscoveryError;
use crate::error::problem::ResponseProblem;
use crate::sanitize::{self, MAX_SERVER_TEXT_LEN};

/// An authorization server's metadata (RFC 8414 §2; OpenID Connect Discovery §3), checked
/// against the issuer it was fetched for.
#[derive(Clone)]
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

// By hand: the extra members are listed by name only, as `Token`'s and `OAuthError`'s are, since
// a document may carry anything.
impl fmt::Debug for ServerMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetadata")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint)
            .field(
                "token_endpoint_auth_methods_supported",
                &self.token_endpoint_auth_methods_supported,
            )
            .field(
                "token_endpoint_auth_signing_alg_values_supported",
                &self.token_endpoint_auth_signing_alg_values_supported,
            )
            .field(
                "dpop_signing_alg_values_supported",
                &self.dpop_signing_alg_values_supported,
            )
            .field("grant_types_supported", &self.grant_types_supported)
            .field("scopes_supported", &self.scopes_supported)
            .field("mtls_endpoint_aliases", &self.mtls_endpoint_aliases)
            .field("mtls_token_endpoint", &self.mtls_token_endpoint)
            .field(
                "tls_client_certificate_bound_access_tokens",
                &self.tls_client_certificate_bound_access_tokens,
            )
            .field("extra_names", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
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
    pub(crate) fn from_members(members: Members, issuer: &Issuer) -> Result<Self, DiscoveryError> {
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
    pub fn token_endpoint_for(&self, credentials: &AuthMaterial) -> &TokenUrl {
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
    ///    name it with [`AuthMaterial::registered_method`] to choose it;
    /// 3. with a [client certificate](AuthMaterial::client_certificate) (RFC 8705 §2),
    ///    `tls_client_auth` for one a certificate authority issued, then
    ///    `self_signed_tls_client_auth`, which the server checks against the certificate the
    ///    client registered and so takes any; only the latter for a self-signed one. A
    ///    certificate comes after a secret because it may be there only to bind the tokens
    ///    (RFC 8705 §3), which works with any method, where a secret serves only to
    ///    authenticate;
    /// 4. without a secret or a signer, `none` (a certificate may still bind the tokens, RFC
    ///    8705 §4).
    ///
    /// [`AuthMaterial::registered_method`] narrows the choice to that one method;
    /// [`AuthMaterial::preferred_method`] tries one first; [`AuthMaterial::unencoded_basic`]
    /// sends `client_secret_basic` without the form-encoding. A JWT assertion's audience is the
    /// server's issuer identifier ([`JwtAuth::with_issuer`](crate::auth::JwtAuth::with_issuer),
    /// as draft-ietf-oauth-rfc7523bis and FAPI 2.0 require), or its token endpoint with
    /// [`AuthMaterial::token_endpoint_audience`].
    ///
    /// # Errors
    ///
    /// [`Error::Discovery`] with [`DiscoveryError::NoUsableAuthMethod`] if the server lists
    /// none of the methods the credentials allow.
    pub fn choose_auth(&self, credentials: &AuthMaterial) -> Result<ClientAuth, Error> {
        credentials
            .choose(
                |method| self.supports_auth_method(method),
                |algorithm| {
                    self.token_endpoint_auth_signing_alg_values_supported()
                        .is_none_or(|algs| algs.iter().any(|alg| alg == algorithm.as_str()))
                },
            )
            .map(|auth| match auth {
                ClientAuth::Jwt(jwt) if credentials.token_endpoint_audience => ClientAuth::Jwt(
                    jwt.with_issuer(self.issuer.as_ref())
                        .with_token_endpoint_audience(),
                ),
                ClientAuth::Jwt(jwt) => ClientAuth::Jwt(jwt.with_issuer(self.issuer.as_ref())),
                other => other,
            })
            .ok_or_else(|| {
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
        credentials: &AuthMaterial,
    ) -> Result<ClientCredentials, Error> {
        let auth = self.choose_auth(credentials)?;
        let token_url = self.token_endpoint_for(credentials).clone();
        ClientCredentials::with_auth(token_url, client_id, auth)
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
pub(crate) struct Members {
    map: Map<String, Value>,
    duplicate: Option<&'static str>,
}

impl Members {
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, ResponseProblem> {
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
