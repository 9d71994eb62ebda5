//! The request for an issuer's metadata document, and the parsing of its response.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode, Uri};

use crate::discovery::issuer::Issuer;
use crate::discovery::metadata::{Members, ServerMetadata};
use crate::error::Error;
use crate::error::discovery::DiscoveryError;
use crate::error::problem::ResponseProblem;
use crate::sanitize::{self, MAX_EXCERPT_LEN, MAX_SERVER_TEXT_LEN};
use crate::secret::RequestBody;

/// The request for an issuer's metadata document, and the parser of the answer.
///
/// The document holds no secret and is checked against the issuer, so any HTTP client may
/// fetch it; read at most [`max_body_len`](Self::max_body_len) bytes of the body.
///
/// ```
/// use client_credentials::ClientSecret;
/// use client_credentials::discovery::{AuthMaterial, Issuer, MetadataRequest};
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
/// let client = metadata.client("my-client", &AuthMaterial::new().secret(ClientSecret::new("s3cr3t")))?;
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
    /// `token_endpoint` a valid [`TokenUrl`](crate::TokenUrl); members this crate reads must have the types
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
