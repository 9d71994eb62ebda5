//! Parsing the token endpoint's response (RFC 6749 §5.1, §5.2) by named rules: strict where the
//! RFC is clear, tolerant where named providers deviate.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub(crate) mod rules;
mod words;

use rules::ResponseRules;

use crate::challenge::Challenge;
use crate::error::Error;
use crate::error::oauth::ErrorCode;
use crate::error::oauth::{Details, OAuthError, RetryAfter};
use crate::error::problem::ResponseProblem;
use crate::error::unexpected::UnexpectedResponse;
use crate::sanitize::{self, MAX_EXCERPT_LEN, MAX_SERVER_TEXT_LEN};
use crate::secret::{AccessToken, RefreshToken};
use crate::token::{Token, TokenType};

/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

// The parsing half of the rules; their tolerances are set in rules.rs.
impl ResponseRules {
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
        let found = Headers::of(headers);
        let media = Media(found.content_type);
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
            Ok(()) if fields.is_error() => Err(oauth_error(status, headers, &found, fields)),
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
            extra: fields.extra.take().unwrap_or_default(),
            authorization: std::sync::OnceLock::new(),
        })
    }

    fn expires_in(&self, value: Option<Loose<'_>>) -> Result<Option<Duration>, ResponseProblem> {
        const EXPECTED: &str = "a whole number of seconds";
        let max = Token::MAX_EXPIRES_IN.as_secs();
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

/// Whether server text is clean (see [`is_clean`]) and has no byte after which
/// [`sanitize::redact`] would look for a value: then it is kept as it is. One pass, eight
/// bytes at a time, where the two checks would make two, byte by byte.
fn is_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() > MAX_SERVER_TEXT_LEN || bytes.ends_with(b" ") {
        return false;
    }
    // The top bit of byte 0 when the byte before the word is a space: so a leading space is not
    // plain, and two spaces across words are seen.
    let mut space_before = words::HIGHS & 0x80;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let Ok(chunk) = chunk.try_into() else {
            return false;
        };
        let word = u64::from_le_bytes(chunk);
        let spaces = words::equal(word, b' ');
        let separators = sanitize::VALUE_LEADS
            .into_iter()
            .fold(0, |marked, byte| marked | words::first_equal(word, byte));
        let double = spaces & (spaces << 8 | space_before);
        if words::unprintable(word) | separators | double != 0 {
            return false;
        }
        space_before = spaces >> 56;
    }
    let mut after_space = space_before != 0;
    for &b in chunks.remainder() {
        match b {
            b' ' if after_space => return false,
            b' ' => after_space = true,
            b'!'..=b'~' if !sanitize::may_lead_to_value(b) => after_space = false,
            _ => return false,
        }
    }
    true
}

// Inlined so that the fields are read where they are, not moved (a few hundred bytes) first.
#[inline]
fn oauth_error(
    status: StatusCode,
    headers: &HeaderMap,
    present: &Headers<'_>,
    fields: Fields<'_>,
) -> Error {
    let text = |value: Option<Loose<'_>>| match value {
        Some(Loose::Str(text)) if is_plain(&text) => Some(text.into_owned()),
        Some(Loose::Str(text)) if is_clean(&text) => Some(sanitize::redact(&text).into_owned()),
        Some(Loose::Str(text)) => Some(sanitize::text(&text, MAX_SERVER_TEXT_LEN)),
        _ => None,
    };
    let code = match fields.error {
        // A registered code is clean, and has nothing to redact.
        Some(Loose::Str(code)) => ErrorCode::registered(&code).unwrap_or_else(|| {
            if is_clean(&code) {
                ErrorCode::parse(&sanitize::redact(&code))
            } else {
                ErrorCode::parse(&sanitize::text(&code, MAX_SERVER_TEXT_LEN))
            }
        }),
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
            extra
                .get_or_insert_default()
                .insert(name.to_owned(), value.into_value());
        }
    }
    let uri = text(fields.error_uri);
    // Most errors have none of the details: then they take no allocation.
    let has_details = uri.is_some()
        || extra.is_some()
        || present.www_authenticate
        || present.dpop_nonce
        || present.retry_after;
    let details = has_details.then(|| {
        Box::new(Details {
            uri,
            challenges: if present.www_authenticate {
                Challenge::parse_all(headers)
            } else {
                Vec::new()
            },
            dpop_nonce: present.dpop_nonce.then(|| dpop_nonce(headers)).flatten(),
            retry_after: present.retry_after.then(|| retry_after(headers)).flatten(),
            extra: extra.unwrap_or_default(),
        })
    });
    Error::OAuth(OAuthError {
        status,
        code,
        description: text(fields.error_description).map(String::into_boxed_str),
        details,
    })
}

/// The headers the parser reads: the `Content-Type`, and whether those an OAuth error reads
/// are present. A token or error response has few headers: one pass over them costs less than
/// a hashed lookup for each of the four (a `401` storm parses many); with many headers, the
/// `Content-Type` is looked up and the others are assumed present, to be looked up.
struct Headers<'a> {
    content_type: Option<&'a [u8]>,
    www_authenticate: bool,
    dpop_nonce: bool,
    retry_after: bool,
}

impl<'a> Headers<'a> {
    /// Up to this many header values are scanned.
    const MAX_SCANNED: usize = 16;

    fn of(headers: &'a HeaderMap) -> Self {
        if headers.len() > Self::MAX_SCANNED {
            return Self {
                content_type: headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
                www_authenticate: true,
                dpop_nonce: true,
                retry_after: true,
            };
        }
        let mut found = Self {
            content_type: None,
            www_authenticate: false,
            dpop_nonce: false,
            retry_after: false,
        };
        for (name, value) in headers {
            if name == CONTENT_TYPE {
                // The first, as `HeaderMap::get` gives it.
                found.content_type.get_or_insert(value.as_bytes());
            } else if name == WWW_AUTHENTICATE {
                found.www_authenticate = true;
            } else if name == RETRY_AFTER {
                found.retry_after = true;
            } else if name == DPOP_NONCE {
                found.dpop_nonce = true;
            }
        }
        found
    }
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
    /// Made at the first member the parser does not read: most bodies have none, and an empty
    /// map is not free to drop.
    extra: Option<Map<String, Value>>,
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
    /// measurable part of a parse (the `benches/compare/` benchmark, BENCHMARKS.md).
    fn read_json(&mut self, body: &'a [u8]) -> Result<(), ResponseProblem> {
        // Checked as UTF-8 once, in one pass, rather than string by string as the bytes are
        // read; a body that is not UTF-8 is read as bytes, so that its error is the same.
        if let Ok(text) = std::str::from_utf8(body) {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            deserializer.deserialize_map(FieldsVisitor(self))?;
            deserializer.end()?;
            return Ok(());
        }
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
                self.extra
                    .get_or_insert_default()
                    .insert(name.into_owned(), value.into_value());
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
mod tests;
