//! Parsing the token endpoint's response (RFC 6749 §5.1, §5.2) by named rules: strict where the
//! RFC is clear, tolerant where named providers deviate.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderMap, HeaderName, StatusCode};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::challenge;
use crate::error::Error;
use crate::error::oauth::ErrorCode;
use crate::error::oauth::{OAuthError, RetryAfter};
use crate::error::problem::ResponseProblem;
use crate::error::unexpected::UnexpectedResponse;
use crate::sanitize::{self, MAX_EXCERPT_LEN, MAX_SERVER_TEXT_LEN};
use crate::secret::{AccessToken, RefreshToken};
use crate::token::{MAX_EXPIRES_IN, Token, TokenType};

/// The `DPoP-Nonce` response header (RFC 9449 §8).
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The rules a response is parsed by: a body size limit, and each tolerance of a real provider's
/// deviation from RFC 6749, by name.
///
/// [`ResponseRules::default`] is tolerant: every tolerance on. [`ResponseRules::strict`] turns
/// them all off, for testing a server of your own against the RFC. Rules that are the RFC's own
/// apply either way: `token_type` is compared case-insensitively (§5.1); an `error` member that
/// is a non-empty string makes a response an error whatever its status; `null` members count
/// as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseRules {
    max_body_len: usize,
    missing_token_type: bool,
    expires_in_string: bool,
    expires_in_float: bool,
    scope_array: bool,
    json_any_content_type: bool,
    form_body: bool,
    utf8_bom: bool,
    any_success_status: bool,
    empty_error: bool,
}

impl Default for ResponseRules {
    fn default() -> Self {
        Self::tolerant()
    }
}

impl ResponseRules {
    /// The default body size limit: 1 MiB, far above any real token response.
    pub const DEFAULT_MAX_BODY_LEN: usize = 1024 * 1024;

    /// Every tolerance on; the default.
    #[must_use]
    pub const fn tolerant() -> Self {
        Self {
            max_body_len: Self::DEFAULT_MAX_BODY_LEN,
            missing_token_type: true,
            expires_in_string: true,
            expires_in_float: true,
            scope_array: true,
            json_any_content_type: true,
            form_body: true,
            utf8_bom: true,
            any_success_status: true,
            empty_error: true,
        }
    }

    /// Every tolerance off: only what RFC 6749 §5 allows is accepted.
    #[must_use]
    pub const fn strict() -> Self {
        Self {
            max_body_len: Self::DEFAULT_MAX_BODY_LEN,
            missing_token_type: false,
            expires_in_string: false,
            expires_in_float: false,
            scope_array: false,
            json_any_content_type: false,
            form_body: false,
            utf8_bom: false,
            any_success_status: false,
            empty_error: false,
        }
    }

    /// Sets the largest body, in bytes, that is parsed; a larger one is refused with
    /// [`Error::BodyTooLarge`] before it is read. Adapters apply it while the body streams in.
    #[must_use]
    pub const fn with_max_body_len(mut self, max_body_len: usize) -> Self {
        self.max_body_len = max_body_len;
        self
    }

    /// The largest body, in bytes, that is parsed.
    #[must_use]
    pub const fn max_body_len(&self) -> usize {
        self.max_body_len
    }

    /// Reads a missing `token_type` (§5.1: REQUIRED) as `Bearer`. Salesforce and LinkedIn
    /// leave it out.
    #[must_use]
    pub const fn allow_missing_token_type(mut self, allow: bool) -> Self {
        self.missing_token_type = allow;
        self
    }

    /// Accepts `expires_in` as a string of digits. Entra ID's v1 endpoint sends `"3599"`.
    #[must_use]
    pub const fn allow_expires_in_string(mut self, allow: bool) -> Self {
        self.expires_in_string = allow;
        self
    }

    /// Accepts `expires_in` as a JSON number with a fraction or exponent, such as Reddit's
    /// `3600.0`; a fraction is dropped, so the lifetime errs short.
    #[must_use]
    pub const fn allow_expires_in_float(mut self, allow: bool) -> Self {
        self.expires_in_float = allow;
        self
    }

    /// Accepts `scope` as a JSON array of strings (§5.1 says a space-separated string), as
    /// Twitch sends it.
    #[must_use]
    pub const fn allow_scope_array(mut self, allow: bool) -> Self {
        self.scope_array = allow;
        self
    }

    /// Judges a JSON body by its content, whatever its `Content-Type` says. Dropbox and
    /// Facebook label JSON `text/javascript`, Kanidm labels its errors `text/plain`, and some
    /// servers (older Spring Security OAuth) send no `Content-Type` at all.
    #[must_use]
    pub const fn allow_json_with_any_content_type(mut self, allow: bool) -> Self {
        self.json_any_content_type = allow;
        self
    }

    /// Accepts an `application/x-www-form-urlencoded` body, which GitHub sends when the request
    /// has no `Accept: application/json` (this crate always sends it, but proxies drop it), and
    /// a form labelled `text/plain`, as the legacy Facebook Graph API sends its tokens (Go's
    /// `x/oauth2` reads `text/plain` as a form too). A `text/plain` body is judged by its
    /// content: it is read as a form only if it is `name=value` pairs joined by `&`.
    #[must_use]
    pub const fn allow_form_body(mut self, allow: bool) -> Self {
        self.form_body = allow;
        self
    }

    /// Skips a UTF-8 byte order mark before a JSON body (RFC 8259 §8.1: "MUST NOT add"), which
    /// serializers on Windows stacks prepend.
    #[must_use]
    pub const fn allow_utf8_bom(mut self, allow: bool) -> Self {
        self.utf8_bom = allow;
        self
    }

    /// Accepts a token with any 2xx status (§5.1 says 200), such as a `201 Created`.
    #[must_use]
    pub const fn allow_any_success_status(mut self, allow: bool) -> Self {
        self.any_success_status = allow;
        self
    }

    /// Accepts a token response that also has an empty `error` member (`"error":""`), as some
    /// providers send with every token (ASP.NET Core's OAuth handler refused one,
    /// dotnet/aspnetcore#53457). An empty `error` is never an OAuth error, since an error code
    /// has at least one character (RFC 6749 §5.2), and `null` counts as absent under any rules;
    /// without this tolerance a token response with an empty `error` is refused as ambiguous.
    #[must_use]
    pub const fn allow_empty_error(mut self, allow: bool) -> Self {
        self.empty_error = allow;
        self
    }

    /// Parses a response as a request that asked for no scope would: the unit tests' shortcut
    /// to [`TokenRequest::parse_response`](crate::TokenRequest::parse_response), which is the
    /// one public way to parse.
    #[cfg(test)]
    pub(crate) fn parse(
        &self,
        response: &http::Response<impl AsRef<[u8]>>,
        sent_at: SystemTime,
    ) -> Result<Token, Error> {
        self.parse_for(response, sent_at, None)
    }

    /// Parses a token endpoint response for a request that asked for the `requested` scope (a
    /// granted scope equal to it shares its allocation): what
    /// [`TokenRequest::parse_response`](crate::TokenRequest::parse_response) does.
    pub(crate) fn parse_for(
        &self,
        response: &http::Response<impl AsRef<[u8]>>,
        sent_at: SystemTime,
        requested: Option<&Arc<str>>,
    ) -> Result<Token, Error> {
        let status = response.status();
        let headers = response.headers();
        let body = response.body().as_ref();
        if status.is_redirection() {
            return Err(Error::Redirect {
                status,
                location: header_text(headers, &LOCATION),
                followed: false,
            });
        }
        if body.len() > self.max_body_len {
            return Err(Error::BodyTooLarge {
                limit: self.max_body_len,
            });
        }
        let media = Media::of(headers);
        let body = match body.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) if self.utf8_bom => rest,
            _ => body,
        };
        let mut fields = Fields::default();
        let format = self.format(&media, body);
        let read = match format {
            Format::Json => fields.read_json(body),
            Format::Form => {
                fields.read_form(body);
                Ok(())
            }
            Format::Other => Err(self.not_json(&media, body)),
        };
        match read {
            Ok(()) if fields.is_error() => Err(oauth_error(status, headers, fields)),
            Ok(()) if status.is_success() => self
                .token(status, &media, &format, &mut fields, sent_at, requested)
                .map_err(|problem| Error::InvalidResponse { status, problem }),
            Err(problem) if status.is_success() => Err(Error::InvalidResponse { status, problem }),
            _ => Err(unexpected(status, headers, body)),
        }
    }

    fn format(&self, media: &Media, body: &[u8]) -> Format {
        if media.is_json() {
            Format::Json
        } else if self.form_body
            && (media.is_form() || media.is_plain_text() && sanitize::is_form(body))
        {
            Format::Form
        } else if self.json_any_content_type && looks_like_json(body) {
            Format::Json
        } else {
            Format::Other
        }
    }

    fn not_json(&self, media: &Media, body: &[u8]) -> ResponseProblem {
        let content_type = media.text();
        if looks_like_json(body) {
            ResponseProblem::UnexpectedContentType { content_type }
        } else {
            ResponseProblem::NotJson { content_type }
        }
    }

    fn token(
        &self,
        status: StatusCode,
        media: &Media,
        format: &Format,
        fields: &mut Fields<'_>,
        sent_at: SystemTime,
        requested: Option<&Arc<str>>,
    ) -> Result<Token, ResponseProblem> {
        if status != StatusCode::OK && !self.any_success_status {
            return Err(ResponseProblem::UnexpectedSuccessStatus);
        }
        // A form is only ever read under `form_body`, which covers its `text/plain` label too.
        let labelled_right = media.is_json() || matches!(format, Format::Form);
        if !labelled_right && !self.json_any_content_type {
            return Err(ResponseProblem::UnexpectedContentType {
                content_type: media.text(),
            });
        }
        if let Some(name) = fields.duplicate {
            return Err(ResponseProblem::DuplicateMember(name));
        }
        match &fields.error {
            None | Some(Loose::Null) => {}
            Some(Loose::Str(code)) if code.is_empty() && self.empty_error => {}
            Some(Loose::Str(_)) => return Err(invalid_member("error", "absent from a token")),
            Some(_) => return Err(invalid_member("error", "a string")),
        }
        let access_token = match fields.access_token.take() {
            Some(Loose::Str(token)) if !token.is_empty() => AccessToken::new(token),
            None | Some(Loose::Null) => return Err(ResponseProblem::MissingAccessToken),
            Some(_) => return Err(invalid_member("access_token", "a non-empty string")),
        };
        let token_type = match fields.token_type.take() {
            Some(Loose::Str(token_type)) => TokenType::parse(&token_type),
            None | Some(Loose::Null) if self.missing_token_type => TokenType::Bearer,
            None | Some(Loose::Null) => return Err(ResponseProblem::MissingTokenType),
            Some(_) => return Err(invalid_member("token_type", "a string")),
        };
        let refresh_token = match fields.refresh_token.take() {
            Some(Loose::Str(token)) => Some(RefreshToken::new(token)),
            None | Some(Loose::Null) => None,
            Some(_) => return Err(invalid_member("refresh_token", "a string")),
        };
        Ok(Token {
            access_token,
            token_type,
            expires_in: self.expires_in(fields.expires_in.take())?,
            sent_at,
            scope: self.scope(fields.scope.take(), requested)?,
            refresh_token,
            extra: std::mem::take(&mut fields.extra),
        })
    }

    fn expires_in(&self, value: Option<Loose<'_>>) -> Result<Option<Duration>, ResponseProblem> {
        const EXPECTED: &str = "a whole number of seconds";
        let max = MAX_EXPIRES_IN.as_secs();
        let seconds = match value {
            None | Some(Loose::Null) => return Ok(None),
            Some(Loose::U64(seconds)) => seconds,
            Some(Loose::I64(_)) => return Err(ResponseProblem::NegativeExpiresIn),
            Some(Loose::F64(seconds)) if seconds < 0.0 => {
                return Err(ResponseProblem::NegativeExpiresIn);
            }
            // Only an integer too large for u64 reaches here as a float in strict mode.
            Some(Loose::F64(seconds)) if self.expires_in_float || seconds >= u64::MAX as f64 => {
                // `as` saturates, and the fraction is dropped so that the lifetime errs short.
                seconds as u64
            }
            Some(Loose::Str(text)) if self.expires_in_string => parse_seconds(&text)?,
            Some(_) => return Err(invalid_member("expires_in", EXPECTED)),
        };
        Ok(Some(Duration::from_secs(seconds.min(max))))
    }

    fn scope(
        &self,
        value: Option<Loose<'_>>,
        requested: Option<&Arc<str>>,
    ) -> Result<Option<Arc<str>>, ResponseProblem> {
        match value {
            None | Some(Loose::Null) => Ok(None),
            Some(Loose::Str(scope)) => Ok(Some(match requested {
                Some(requested) if **requested == *scope => Arc::clone(requested),
                _ => scope.into(),
            })),
            Some(Loose::Seq(items)) if self.scope_array => {
                let mut joined = String::new();
                for item in items {
                    let Loose::Str(scope) = item else {
                        return Err(invalid_member("scope", "a string or an array of strings"));
                    };
                    if !joined.is_empty() {
                        joined.push(' ');
                    }
                    joined.push_str(&scope);
                }
                Ok(Some(joined.into()))
            }
            Some(_) => Err(invalid_member("scope", "a space-separated string")),
        }
    }
}

fn invalid_member(name: &'static str, expected: &'static str) -> ResponseProblem {
    ResponseProblem::InvalidMember { name, expected }
}

/// Digits, as Entra ID v1 sends them; a huge number is clamped, a negative one refused.
fn parse_seconds(text: &str) -> Result<u64, ResponseProblem> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.strip_prefix('-').is_some_and(digits) {
        return Err(ResponseProblem::NegativeExpiresIn);
    }
    if !digits(text) {
        return Err(invalid_member("expires_in", "a whole number of seconds"));
    }
    Ok(text.parse().unwrap_or(u64::MAX))
}

/// Whether server text is already what [`sanitize::text`] would make of it before redaction
/// (printable ASCII, single spaces only between words, within the length limit), the usual
/// case: then [`sanitize::redact`] alone will do.
fn is_clean(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() > MAX_SERVER_TEXT_LEN || bytes.ends_with(b" ") {
        return false;
    }
    let mut after_space = true; // so that a leading space is not clean
    for &b in bytes {
        let space = b == b' ';
        if !matches!(b, b' '..=b'~') || space && after_space {
            return false;
        }
        after_space = space;
    }
    true
}

fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

enum Format {
    Json,
    Form,
    Other,
}

/// The response's media type, read without allocating.
struct Media<'a>(Option<&'a [u8]>);

impl<'a> Media<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        Self(headers.get(CONTENT_TYPE).map(|value| value.as_bytes()))
    }

    /// The type and subtype, without parameters such as `charset`.
    fn essence(&self) -> &'a [u8] {
        let raw = self.0.unwrap_or_default();
        let end = raw.iter().position(|&b| b == b';').unwrap_or(raw.len());
        raw[..end].trim_ascii()
    }

    fn is_json(&self) -> bool {
        if self.0 == Some(b"application/json".as_slice()) {
            return true; // the usual case, without the scan below
        }
        let essence = self.essence();
        essence.eq_ignore_ascii_case(b"application/json")
            || essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
    }

    fn is_form(&self) -> bool {
        self.essence()
            .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    }

    fn is_plain_text(&self) -> bool {
        self.essence().eq_ignore_ascii_case(b"text/plain")
    }

    fn text(&self) -> Option<String> {
        self.0.map(|raw| sanitize::bytes(raw, MAX_SERVER_TEXT_LEN))
    }
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| sanitize::bytes(value.as_bytes(), MAX_SERVER_TEXT_LEN))
}

fn retry_after(headers: &HeaderMap) -> Option<RetryAfter> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(RetryAfter::Delay(Duration::from_secs(seconds)));
    }
    httpdate::parse_http_date(value).ok().map(RetryAfter::At)
}

/// The nonce, if it is a valid `NQCHAR` string (RFC 9449 §8.1); anything else is dropped, since
/// it could not be sent back anyway.
pub(crate) fn dpop_nonce(headers: &HeaderMap) -> Option<String> {
    let nonce = headers.get(DPOP_NONCE)?.as_bytes();
    let valid = !nonce.is_empty()
        && nonce.len() <= MAX_SERVER_TEXT_LEN
        && nonce
            .iter()
            .all(|&b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    valid.then(|| String::from_utf8_lossy(nonce).into_owned())
}

fn oauth_error(status: StatusCode, headers: &HeaderMap, fields: Fields<'_>) -> Error {
    let text = |value: Option<Loose<'_>>| match value {
        Some(Loose::Str(text)) if is_clean(&text) => Some(sanitize::redact(&text).into_owned()),
        Some(Loose::Str(text)) => Some(sanitize::text(&text, MAX_SERVER_TEXT_LEN)),
        _ => None,
    };
    let code = match fields.error {
        Some(Loose::Str(code)) if is_clean(&code) => ErrorCode::parse(&sanitize::redact(&code)),
        Some(Loose::Str(code)) => ErrorCode::parse(&sanitize::text(&code, MAX_SERVER_TEXT_LEN)),
        _ => ErrorCode::Other(String::new()),
    };
    // Token members mean nothing in an error, but some servers add them (oidc-provider sends the
    // refused `scope` with `invalid_scope`): keep them with the other members. Never the tokens.
    let mut extra = fields.extra;
    for (name, value) in [
        ("scope", fields.scope),
        ("token_type", fields.token_type),
        ("expires_in", fields.expires_in),
    ] {
        if let Some(value) = value {
            extra.insert(name.to_owned(), value.into_value());
        }
    }
    Error::OAuth(Box::new(OAuthError {
        status,
        code,
        description: text(fields.error_description),
        uri: text(fields.error_uri),
        challenges: challenge::parse_all(headers),
        dpop_nonce: dpop_nonce(headers),
        retry_after: retry_after(headers),
        extra,
    }))
}

fn unexpected(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    Error::UnexpectedResponse(Box::new(UnexpectedResponse {
        status,
        content_type: header_text(headers, &CONTENT_TYPE),
        retry_after: retry_after(headers),
        excerpt: (!body.trim_ascii().is_empty()).then(|| sanitize::excerpt(body, MAX_EXCERPT_LEN)),
    }))
}

/// The members of a token or error response, borrowed from the body where possible.
#[derive(Default)]
struct Fields<'a> {
    access_token: Option<Loose<'a>>,
    token_type: Option<Loose<'a>>,
    expires_in: Option<Loose<'a>>,
    scope: Option<Loose<'a>>,
    refresh_token: Option<Loose<'a>>,
    error: Option<Loose<'a>>,
    error_description: Option<Loose<'a>>,
    error_uri: Option<Loose<'a>>,
    extra: Map<String, Value>,
    /// The first member read by the parser that appeared twice.
    duplicate: Option<&'static str>,
}

impl<'a> Fields<'a> {
    /// An OAuth error response: one with a non-empty string `error` member (RFC 6749 §5.2: an
    /// error code is at least one character). An empty one names no error.
    fn is_error(&self) -> bool {
        matches!(&self.error, Some(Loose::Str(code)) if !code.is_empty())
    }

    /// Reads a JSON object's members. `Fields` are filled in place rather than returned: they
    /// are a few hundred bytes, and moving them out through the parser's layers was a
    /// measurable part of a parse (issue 7's benchmarks).
    fn read_json(&mut self, body: &'a [u8]) -> Result<(), ResponseProblem> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        deserializer.deserialize_map(FieldsVisitor(self))?;
        deserializer.end()?;
        Ok(())
    }

    fn read_form(&mut self, body: &'a [u8]) {
        for (name, value) in form_urlencoded::parse(body) {
            self.set(name, Loose::Str(value));
        }
    }

    /// Stores a member; a second value for one the parser reads is noted, and makes a token
    /// response invalid, since which value applies would be a guess.
    fn set(&mut self, name: Cow<'a, str>, value: Loose<'a>) {
        let (slot, name) = match &*name {
            "access_token" => (&mut self.access_token, "access_token"),
            "token_type" => (&mut self.token_type, "token_type"),
            "expires_in" => (&mut self.expires_in, "expires_in"),
            "scope" => (&mut self.scope, "scope"),
            "refresh_token" => (&mut self.refresh_token, "refresh_token"),
            "error" => (&mut self.error, "error"),
            "error_description" => (&mut self.error_description, "error_description"),
            "error_uri" => (&mut self.error_uri, "error_uri"),
            _ => {
                self.extra.insert(name.into_owned(), value.into_value());
                return;
            }
        };
        if slot.is_some() {
            self.duplicate.get_or_insert(name);
        } else {
            *slot = Some(value);
        }
    }
}

impl From<serde_json::Error> for ResponseProblem {
    fn from(error: serde_json::Error) -> Self {
        // The error's own text can quote the body, so only its category and place are kept.
        let reason = match error.classify() {
            serde_json::error::Category::Eof => "the body ends in the middle of the json",
            serde_json::error::Category::Syntax => "the json is malformed",
            serde_json::error::Category::Data => "the body is not a json object",
            serde_json::error::Category::Io => "the body could not be read",
        };
        Self::InvalidJson {
            reason,
            line: error.line(),
            column: error.column(),
        }
    }
}

struct FieldsVisitor<'f, 'de>(&'f mut Fields<'de>);

impl<'de> Visitor<'de> for FieldsVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = map.next_key()? {
            let value: Loose<'de> = map.next_value()?;
            self.0.set(name, value);
        }
        Ok(())
    }
}

/// A member name, borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value, read without judging its type, so that a member of the wrong type becomes a
/// precise [`ResponseProblem`] rather than a deserializer error. Strings are borrowed where
/// possible.
enum Loose<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Seq(Vec<Loose<'a>>),
    Object(Map<String, Value>),
}

impl Loose<'_> {
    fn into_value(self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(b),
            Self::U64(n) => Value::from(n),
            Self::I64(n) => Value::from(n),
            Self::F64(n) => Value::from(n),
            Self::Str(s) => Value::String(s.into_owned()),
            Self::Seq(items) => Value::Array(items.into_iter().map(Self::into_value).collect()),
            Self::Object(map) => Value::Object(map),
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Loose<'de>, E> {
        Ok(Loose::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Loose<'de>, E> {
        Ok(Loose::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Loose<'de>, D::Error> {
        Loose::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose<'de>, E> {
        Ok(Loose::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose<'de>, E> {
        Ok(Loose::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose<'de>, E> {
        Ok(u64::try_from(v).map_or(Loose::I64(v), Loose::U64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose<'de>, E> {
        Ok(Loose::F64(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Loose::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
        let mut object = Map::new();
        while let Some(Key(name)) = map.next_key()? {
            let value: Value = map.next_value()?;
            object.insert(name.into_owned(), value);
        }
        Ok(Loose::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: Option<&str>, body: &str) -> http::Response<Vec<u8>> {
        let mut builder = http::Response::builder().status(status);
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        builder.body(body.as_bytes().to_vec()).unwrap()
    }

    fn sent_at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn parse(
        rules: ResponseRules,
        status: u16,
        ct: Option<&str>,
        body: &str,
    ) -> Result<Token, Error> {
        rules.parse(&response(status, ct, body), sent_at())
    }

    fn tolerant(status: u16, ct: Option<&str>, body: &str) -> Result<Token, Error> {
        parse(ResponseRules::tolerant(), status, ct, body)
    }

    fn problem(result: Result<Token, Error>) -> ResponseProblem {
        match result {
            Err(Error::InvalidResponse { problem, .. }) => problem,
            other => panic!("expected an invalid response, got {other:?}"),
        }
    }

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn minimal_token_rfc6749_5_1() {
        let token = tolerant(
            200,
            JSON,
            r#"{"access_token":"at","token_type":"Bearer","expires_in":3600}"#,
        )
        .unwrap();
        assert_eq!(token.access_token().secret(), "at");
        assert_eq!(token.token_type(), &TokenType::Bearer);
        assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
        assert_eq!(
            token.expires_at(),
            Some(sent_at() + Duration::from_secs(3600))
        );
        assert_eq!(token.scope(), None);
        assert!(token.refresh_token().is_none());
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let token = tolerant(
            200,
            JSON,
            r#"{"access_token":"a\/b\u00e9","token_type":"bearer"}"#,
        )
        .unwrap();
        assert_eq!(token.access_token().secret(), "a/bé");
    }

    #[test]
    fn error_member_makes_an_oauth_error_under_any_status_rfc6749_5_2() {
        for status in [400, 401, 200] {
            let err = tolerant(status, JSON, r#"{"error":"invalid_scope","error_description":"no","error_uri":"https://e/x","trace_id":"t"}"#).unwrap_err();
            let oauth = err.oauth().expect("an oauth error");
            assert_eq!(oauth.code(), &ErrorCode::InvalidScope);
            assert_eq!(oauth.status().as_u16(), status);
            assert_eq!(oauth.description(), Some("no"));
            assert_eq!(oauth.uri(), Some("https://e/x"));
            assert_eq!(oauth.extra()["trace_id"], "t");
            assert!(oauth.extra().get("scope").is_none());
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn oauth_error_keeps_challenge_nonce_and_retry_after() {
        let response = http::Response::builder()
            .status(401)
            .header(CONTENT_TYPE, "application/json")
            .header("www-authenticate", r#"Basic realm="idp""#)
            .header("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")
            .header("retry-after", "30")
            .body(br#"{"error":"use_dpop_nonce"}"#.to_vec())
            .unwrap();
        let err = ResponseRules::default()
            .parse(&response, sent_at())
            .unwrap_err();
        let oauth = err.oauth().unwrap();
        assert_eq!(oauth.challenges()[0].realm(), Some("idp"));
        assert_eq!(oauth.dpop_nonce(), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert_eq!(
            oauth.retry_after(),
            Some(RetryAfter::Delay(Duration::from_secs(30)))
        );
        assert!(
            err.is_retryable(),
            "use_dpop_nonce is retried with the nonce"
        );
    }

    #[test]
    fn token_members_of_an_error_are_kept_as_extra_but_tokens_are_not() {
        let body = r#"{"error":"invalid_scope","scope":"api:admin","access_token":"leak"}"#;
        let err = tolerant(400, JSON, body).unwrap_err();
        let extra = err.oauth().unwrap().extra();
        assert_eq!(extra["scope"], "api:admin");
        assert!(extra.get("access_token").is_none());
    }

    #[test]
    fn server_text_is_sanitized() {
        let long = "x".repeat(5000);
        let body =
            format!(r#"{{"error":"invalid_client","error_description":"bad\u001b[31m\n{long}"}}"#);
        let err = tolerant(401, JSON, &body).unwrap_err();
        let description = err.oauth().unwrap().description().unwrap();
        assert!(description.starts_with("bad[31m x"));
        assert!(description.len() <= MAX_SERVER_TEXT_LEN + '…'.len_utf8());
        assert!(!err.to_string().contains('\u{1b}'));
    }

    #[test]
    fn non_oauth_error_keeps_status_type_retry_after_and_excerpt() {
        let response = http::Response::builder()
            .status(503)
            .header(CONTENT_TYPE, "text/html")
            .header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")
            .body(b"<html><body>\n<h1>502 Bad Gateway</h1>".to_vec())
            .unwrap();
        let err = ResponseRules::default()
            .parse(&response, sent_at())
            .unwrap_err();
        let Error::UnexpectedResponse(unexpected) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(unexpected.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unexpected.content_type(), Some("text/html"));
        assert_eq!(
            unexpected.excerpt(),
            Some("<html><body> <h1>502 Bad Gateway</h1>")
        );
        assert_eq!(
            unexpected.retry_after(),
            Some(RetryAfter::At(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
            ))
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn success_body_is_never_quoted() {
        for body in [
            "<html>secret-token-material</html>",
            r#"{"access_token": 12, "x": "secret-token-material"}"#,
            r#"{"access_token":"secret-token-material""#,
            "secret-token-material",
        ] {
            let err = tolerant(200, Some("text/html"), body).unwrap_err();
            assert!(!err.to_string().contains("secret-token-material"), "{err}");
            assert!(
                !format!("{err:?}").contains("secret-token-material"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn expires_in_forms() {
        let lifetime = |value: &str| {
            tolerant(
                200,
                JSON,
                &format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#),
            )
            .map(|t| t.expires_in())
        };
        assert_eq!(lifetime("3599").unwrap(), Some(Duration::from_secs(3599)));
        assert_eq!(
            lifetime(r#""3599""#).unwrap(),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(lifetime("3600.0").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(
            lifetime("3600.9").unwrap(),
            Some(Duration::from_secs(3600)),
            "errs short"
        );
        assert_eq!(lifetime("null").unwrap(), None);
        assert_eq!(lifetime("0").unwrap(), Some(Duration::ZERO));
        for huge in [
            "18446744073709551615",
            "99999999999999999999999",
            "1e300",
            r#""99999999999999999999999""#,
        ] {
            assert_eq!(lifetime(huge).unwrap(), Some(MAX_EXPIRES_IN), "{huge}");
        }
        for negative in ["-1", "-1.5", r#""-3""#] {
            assert_eq!(
                problem(lifetime(negative).map(|_| unreachable!())),
                ResponseProblem::NegativeExpiresIn,
                "{negative}"
            );
        }
        for bad in [r#""soon""#, "true", "{}", "[1]", r#""""#, r#"" 5""#] {
            assert!(
                matches!(
                    problem(lifetime(bad).map(|_| unreachable!())),
                    ResponseProblem::InvalidMember {
                        name: "expires_in",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn scope_forms_rfc6749_5_1() {
        let scope = |value: &str| {
            tolerant(
                200,
                JSON,
                &format!(r#"{{"access_token":"a","token_type":"Bearer","scope":{value}}}"#),
            )
        };
        assert_eq!(scope(r#""a b""#).unwrap().scope(), Some("a b"));
        assert_eq!(scope(r#"["a","b"]"#).unwrap().scope(), Some("a b"));
        assert!(matches!(
            problem(scope("[1]")),
            ResponseProblem::InvalidMember { name: "scope", .. }
        ));
        assert!(matches!(
            problem(scope("5")),
            ResponseProblem::InvalidMember { name: "scope", .. }
        ));
        let strict = parse(
            ResponseRules::strict(),
            200,
            JSON,
            r#"{"access_token":"a","token_type":"Bearer","scope":["a"]}"#,
        );
        assert!(matches!(
            problem(strict),
            ResponseProblem::InvalidMember { name: "scope", .. }
        ));
    }

    #[test]
    fn missing_or_wrong_members() {
        assert_eq!(
            problem(tolerant(200, JSON, r#"{"token_type":"Bearer"}"#)),
            ResponseProblem::MissingAccessToken
        );
        assert_eq!(
            problem(tolerant(200, JSON, r#"{"access_token":null}"#)),
            ResponseProblem::MissingAccessToken
        );
        assert!(matches!(
            problem(tolerant(200, JSON, r#"{"access_token":""}"#)),
            ResponseProblem::InvalidMember {
                name: "access_token",
                ..
            }
        ));
        assert!(matches!(
            problem(tolerant(
                200,
                JSON,
                r#"{"access_token":"a","token_type":1}"#
            )),
            ResponseProblem::InvalidMember {
                name: "token_type",
                ..
            }
        ));
        assert!(matches!(
            problem(tolerant(
                200,
                JSON,
                r#"{"access_token":"a","refresh_token":{}}"#
            )),
            ResponseProblem::InvalidMember {
                name: "refresh_token",
                ..
            }
        ));
        assert_eq!(
            problem(tolerant(
                200,
                JSON,
                r#"{"access_token":"a","access_token":"b"}"#
            )),
            ResponseProblem::DuplicateMember("access_token")
        );
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            problem(tolerant(200, form, "access_token=a&access_token=b")),
            ResponseProblem::DuplicateMember("access_token")
        );
        assert!(
            tolerant(200, JSON, r#"{"access_token":"a","error":null}"#).is_ok(),
            "a null error is absent"
        );
        assert!(matches!(
            problem(tolerant(
                200,
                JSON,
                r#"{"access_token":"a","error":{"code":1}}"#
            )),
            ResponseProblem::InvalidMember { name: "error", .. }
        ));
        assert!(matches!(
            problem(tolerant(200, JSON, r#"["access_token"]"#)),
            ResponseProblem::InvalidJson { .. }
        ));
        assert!(matches!(
            problem(tolerant(200, JSON, r#"{"access_token":"a"} x"#)),
            ResponseProblem::InvalidJson { .. }
        ));
        assert!(matches!(
            problem(tolerant(200, JSON, "")),
            ResponseProblem::InvalidJson { .. }
        ));
    }

    #[test]
    fn missing_token_type_tolerance() {
        let body = r#"{"access_token":"a"}"#;
        assert_eq!(
            tolerant(200, JSON, body).unwrap().token_type(),
            &TokenType::Bearer
        );
        assert_eq!(
            problem(parse(ResponseRules::strict(), 200, JSON, body)),
            ResponseProblem::MissingTokenType
        );
    }

    #[test]
    fn refresh_token_and_extras_are_kept() {
        let token = tolerant(200, JSON, r#"{"access_token":"a","token_type":"Bearer","refresh_token":"r","ext_expires_in":3599,"id_token":"i","nested":{"k":[1]}}"#).unwrap();
        assert_eq!(token.refresh_token().unwrap().secret(), "r");
        assert_eq!(token.extra("ext_expires_in"), Some(&Value::from(3599)));
        assert_eq!(token.extra("nested").unwrap()["k"][0], 1);
    }

    #[test]
    fn content_type_tolerances() {
        let body = r#"{"access_token":"a","token_type":"Bearer"}"#;
        for ct in [
            Some("text/plain; charset=utf-8"),
            Some("text/javascript"),
            None,
            Some("application/json; charset=ISO-8859-1"),
            Some("application/vnd.x+json"),
        ] {
            assert!(tolerant(200, ct, body).is_ok(), "{ct:?}");
        }
        assert!(matches!(
            problem(parse(
                ResponseRules::strict(),
                200,
                Some("text/plain"),
                body
            )),
            ResponseProblem::UnexpectedContentType { .. }
        ));
        assert!(
            parse(
                ResponseRules::strict(),
                200,
                Some("Application/JSON;charset=UTF-8"),
                body
            )
            .is_ok()
        );
        assert!(matches!(
            problem(tolerant(200, Some("text/html"), "<html>")),
            ResponseProblem::NotJson { .. }
        ));
    }

    #[test]
    fn utf8_bom_tolerance() {
        let body = "\u{feff}{\"access_token\":\"a\",\"token_type\":\"Bearer\"}";
        assert!(tolerant(200, JSON, body).is_ok());
        assert!(matches!(
            problem(parse(ResponseRules::strict(), 200, JSON, body)),
            ResponseProblem::InvalidJson { .. }
        ));
    }

    #[test]
    fn form_body_tolerance() {
        let body = "access_token=gho_abc&scope=repo%2Cgist&token_type=bearer";
        let token = tolerant(200, Some("application/x-www-form-urlencoded"), body).unwrap();
        assert_eq!(token.access_token().secret(), "gho_abc");
        assert_eq!(token.scope(), Some("repo,gist"));
        let err = tolerant(
            200,
            Some("application/x-www-form-urlencoded"),
            "error=bad_verification_code&error_description=x",
        )
        .unwrap_err();
        assert_eq!(
            err.oauth().unwrap().code().as_str(),
            "bad_verification_code"
        );
        assert!(matches!(
            problem(parse(
                ResponseRules::strict(),
                200,
                Some("application/x-www-form-urlencoded"),
                body
            )),
            ResponseProblem::NotJson { .. }
        ));
    }

    #[test]
    fn success_status_tolerance() {
        let body = r#"{"access_token":"a","token_type":"Bearer"}"#;
        assert!(tolerant(201, JSON, body).is_ok());
        assert_eq!(
            problem(parse(ResponseRules::strict(), 201, JSON, body)),
            ResponseProblem::UnexpectedSuccessStatus
        );
    }

    #[test]
    fn float_and_string_expires_in_strictly_refused() {
        for value in ["3600.0", r#""3600""#] {
            let body =
                format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#);
            assert!(matches!(
                problem(parse(ResponseRules::strict(), 200, JSON, &body)),
                ResponseProblem::InvalidMember {
                    name: "expires_in",
                    ..
                }
            ));
        }
        let huge =
            r#"{"access_token":"a","token_type":"Bearer","expires_in":99999999999999999999999}"#;
        assert_eq!(
            parse(ResponseRules::strict(), 200, JSON, huge)
                .unwrap()
                .expires_in(),
            Some(MAX_EXPIRES_IN)
        );
    }

    #[test]
    fn body_limit_is_checked_before_parsing() {
        let rules = ResponseRules::tolerant().with_max_body_len(10);
        let err = parse(rules, 200, JSON, r#"{"access_token":"abcdefgh"}"#).unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 10 }));
    }

    #[test]
    fn redirects_are_errors_naming_the_location() {
        let response = http::Response::builder()
            .status(302)
            .header(LOCATION, "https://evil.example/steal")
            .body(Vec::new())
            .unwrap();
        let err = ResponseRules::default()
            .parse(&response, sent_at())
            .unwrap_err();
        let Error::Redirect {
            status, location, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(status.as_u16(), 302);
        assert_eq!(location.as_deref(), Some("https://evil.example/steal"));
        assert!(err.to_string().contains("https://evil.example/steal"));
    }

    #[test]
    fn clean_text_is_what_sanitizing_would_make_of_it() {
        for clean in ["", "invalid_client", "client authentication failed", "a!~"] {
            assert!(is_clean(clean), "{clean:?}");
            assert_eq!(sanitize::text(clean, MAX_SERVER_TEXT_LEN), clean);
        }
        let long = "x".repeat(MAX_SERVER_TEXT_LEN + 1);
        for dirty in [
            " lead",
            "trail ",
            "two  spaces",
            "tab\there",
            "bell\u{7}",
            "del\u{7f}",
            "x\u{202e}y",
            &long,
        ] {
            assert!(!is_clean(dirty), "{dirty:?}");
            assert_ne!(sanitize::text(dirty, MAX_SERVER_TEXT_LEN), dirty);
        }
        assert!(!is_clean("é"), "non-ASCII text takes the full path");
    }

    #[test]
    fn non_oauth_json_and_form_bodies_are_described_by_member_names() {
        let leaky = [
            (
                500,
                JSON,
                r#"{"access_token":"SECRETa1","token_type":"Bearer"}"#,
            ),
            (
                400,
                JSON,
                r#"{"error":{"code":"x","detail":"SECRETa1"},"access_token":"SECRETa1"}"#,
            ),
            (
                502,
                Some("application/x-www-form-urlencoded"),
                "client_secret=SECRETa1&client_id=c",
            ),
            (
                503,
                Some("text/plain"),
                "access_token=SECRETa1&expires_in=5",
            ),
        ];
        for (status, ct, body) in leaky {
            let err = tolerant(status, ct, body).unwrap_err();
            let Error::UnexpectedResponse(unexpected) = &err else {
                panic!("{err:?}")
            };
            assert!(!err.to_string().contains("SECRETa1"), "{err}");
            assert!(!format!("{err:?}").contains("SECRETa1"), "{err:?}");
            let excerpt = unexpected.excerpt().unwrap();
            assert!(excerpt.contains("members `"), "{excerpt}");
        }
        let err = tolerant(500, JSON, r#"{"access_token":"SECRETa1","scope":"a"}"#).unwrap_err();
        let Error::UnexpectedResponse(unexpected) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            unexpected.excerpt(),
            Some("a json object with members `access_token`, `scope`")
        );
    }

    #[test]
    fn html_and_text_excerpts_redact_secret_looking_values() {
        for body in [
            "<html><body>bad request: client_secret=SECRETa1&grant_type=client_credentials</body></html>",
            "<pre>Client_Secret = SECRETa1</pre>",
            "upstream said: \"access_token\": \"SECRETa1\"",
            "upstream said: {\\\"access_token\\\":\\\"SECRETa1\\\"}",
            "refresh_token: SECRETa1",
            "<input type=\"hidden\" name=\"client_secret\" value=\"SECRETa1\">",
            "<input name='password' value='SECRETa1'>",
            "form: client%5Fsecret%3DSECRETa1%26x%3D1",
            "client_secret&#61;SECRETa1",
            "<td>id_token</td><td>SECRETa1</td>",
            "clientSecret=\"SECRET a1 SECRETa1\"",
            "<p>assertion=SECRETa1</p>",
            "<p>ACCESS-TOKEN=SECRETa1</p>",
            "password=\n\tSECRETa1",
        ] {
            let err = tolerant(502, Some("text/html"), body).unwrap_err();
            let Error::UnexpectedResponse(unexpected) = &err else {
                panic!("{err:?}")
            };
            assert!(!err.to_string().contains("SECRETa1"), "{body}: {err}");
            assert!(!format!("{err:?}").contains("SECRETa1"), "{body}: {err:?}");
            assert!(
                unexpected.excerpt().unwrap().contains("[redacted]"),
                "{body}"
            );
        }
    }

    #[test]
    fn oauth_description_and_uri_redact_secret_looking_values() {
        let body = r#"{"error":"invalid_client","error_description":"got client_secret=SECRETa1 from you","error_uri":"https://e/x?access_token=SECRETa1"}"#;
        let err = tolerant(401, JSON, body).unwrap_err();
        let oauth = err.oauth().unwrap();
        assert_eq!(
            oauth.description(),
            Some("got client_secret=[redacted] from you")
        );
        assert_eq!(oauth.uri(), Some("https://e/x?access_token=[redacted]"));
        assert!(!err.to_string().contains("SECRETa1"));
    }

    #[test]
    fn oauth_error_debug_names_extra_members_without_values() {
        let body = r#"{"error":"invalid_scope","id_token":"SECRETa1","trace_id":"t"}"#;
        let err = tolerant(400, JSON, body).unwrap_err();
        let debug = format!("{err:?}");
        assert!(!debug.contains("SECRETa1"), "{debug}");
        assert!(debug.contains("id_token"), "{debug}");
        assert!(debug.contains("trace_id"), "{debug}");
    }

    #[test]
    fn empty_error_tolerance() {
        for error in [r#""""#, "null"] {
            let body = format!(r#"{{"access_token":"a","token_type":"Bearer","error":{error}}}"#);
            let token = tolerant(200, JSON, &body).unwrap();
            assert_eq!(token.access_token().secret(), "a");
        }
        let body = r#"{"access_token":"a","token_type":"Bearer","error":""}"#;
        assert!(matches!(
            problem(parse(ResponseRules::strict(), 200, JSON, body)),
            ResponseProblem::InvalidMember { name: "error", .. }
        ));
        assert!(
            parse(
                ResponseRules::strict(),
                200,
                JSON,
                r#"{"access_token":"a","token_type":"Bearer","error":null}"#
            )
            .is_ok(),
            "null counts as absent under any rules"
        );
        // An empty `error` is no OAuth error, so a non-2xx with one is an unexpected response.
        let err = tolerant(400, JSON, r#"{"error":""}"#).unwrap_err();
        assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");
    }

    #[test]
    fn form_body_labelled_text_plain_tolerance() {
        let body = "access_token=EAAB123&expires=5183999";
        for ct in ["text/plain", "text/plain; charset=UTF-8"] {
            let token = tolerant(200, Some(ct), body).unwrap();
            assert_eq!(token.access_token().secret(), "EAAB123");
            assert_eq!(token.extra("expires"), Some(&Value::from("5183999")));
        }
        let err = tolerant(200, Some("text/plain"), "error=bad_verification_code").unwrap_err();
        assert_eq!(
            err.oauth().unwrap().code().as_str(),
            "bad_verification_code"
        );
        let no_form = ResponseRules::tolerant().allow_form_body(false);
        assert!(matches!(
            problem(parse(no_form, 200, Some("text/plain"), body)),
            ResponseProblem::NotJson { .. }
        ));
        // Judged by the body: plain text that is not a form stays not-a-token.
        assert!(matches!(
            problem(tolerant(
                200,
                Some("text/plain"),
                "service unavailable, try later"
            )),
            ResponseProblem::NotJson { .. }
        ));
    }
}
