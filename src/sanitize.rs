//! Making server text safe to log: control characters dropped, length capped, and the value
//! after any secret-looking name (`client_secret=…`, `"access_token":"…"`) redacted.
//!
//! Server text reaches errors from bodies, descriptions and headers; a misbehaving server or a
//! gateway can echo the client's own request or a token in any of them. [`text`] and [`bytes`]
//! redact, so every caller gets the same treatment; [`excerpt`] describes a structured body by
//! its member names instead of quoting it.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The most bytes of any text from the server (`error_description`, a header) that errors keep.
pub(crate) const MAX_SERVER_TEXT_LEN: usize = 512;

/// The most bytes of a non-success response body that [`crate::error::UnexpectedResponse`] keeps.
pub(crate) const MAX_EXCERPT_LEN: usize = 256;

/// What replaces a redacted value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Server text with control characters dropped, runs of white space folded into one space, the
/// value after any secret-looking name redacted, and at most `max` bytes kept (cut at a
/// character boundary, marked with `…`).
pub(crate) fn text(raw: &str, max: usize) -> String {
    // Redacting before the final cap means a value that starts within the kept text is found
    // whole; the first pass is capped too, so that a huge text costs a bounded amount of work.
    let cleaned = clean(raw, max.saturating_mul(4));
    let redacted = match redact(&cleaned) {
        Cow::Borrowed(_) => None,
        Cow::Owned(redacted) => Some(redacted),
    };
    match redacted {
        None if cleaned.len() <= max => cleaned,
        None => clean(&cleaned, max),
        Some(redacted) => clean(&redacted, max),
    }
}

/// Like [`text`], for bytes that may not be UTF-8.
pub(crate) fn bytes(raw: &[u8], max: usize) -> String {
    // Decoding at most 4 bytes per kept character bounds the work on a huge body.
    let head = &raw[..raw.len().min(max.saturating_mul(4))];
    text(&String::from_utf8_lossy(head), max)
}

/// A capped, safe account of a response body that is not an OAuth response: a JSON value or a
/// form by its shape and member names (never a value, any of which may be a secret); anything
/// else (an HTML page, plain text) as [`bytes`] makes of it, secret-looking values redacted.
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    if let Some(described) = describe_json(body, max).or_else(|| describe_form(body, max)) {
        return described;
    }
    bytes(body, max)
}

/// "a json object with members `a`, `b`", or the kind of a JSON value that is not an object.
fn describe_json(body: &[u8], max: usize) -> Option<String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let shape = deserializer.deserialize_any(ShapeVisitor { max }).ok()?;
    deserializer.end().ok()?;
    Some(match shape {
        Shape::Object(names) if names.is_empty() => "an empty json object".to_owned(),
        Shape::Object(names) => cap(format!("a json object with members {names}"), max),
        Shape::Other(kind) => format!("a json {kind}"),
    })
}

/// "a form with members `a`, `b`", for a body that is an `application/x-www-form-urlencoded`
/// form: `name=value` pairs joined by `&`, names of URL characters, no white space. Plain text
/// must not pass, or a page of prose would have its words listed as member names.
pub(crate) fn describe_form(body: &[u8], max: usize) -> Option<String> {
    if !is_form(body) {
        return None;
    }
    let mut names = String::new();
    for (name, _) in form_urlencoded::parse(body.trim_ascii()) {
        if !push_name(&mut names, &name, max) {
            break;
        }
    }
    Some(cap(format!("a form with members {names}"), max))
}

/// Whether a body looks like a form: `name=value` pairs joined by `&`, with names of URL
/// characters and nothing that plain text or markup would have (white space, `<`, quotes).
pub(crate) fn is_form(body: &[u8]) -> bool {
    let body = body.trim_ascii();
    !body.is_empty()
        && body.split(|&b| b == b'&').all(|pair| {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                return false;
            };
            let (name, value) = (&pair[..eq], &pair[eq + 1..]);
            !name.is_empty()
                && name.iter().all(|&b| is_form_name_byte(b))
                && value
                    .iter()
                    .all(|&b| b.is_ascii_graphic() && !b"<>\"'".contains(&b))
        })
}

fn is_form_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.~%+*[]".contains(&b)
}

/// Appends `` `name` `` to a list of names, sanitized; false once the list is long enough.
fn push_name(names: &mut String, name: &str, max: usize) -> bool {
    if names.len() >= max {
        return false;
    }
    if !names.is_empty() {
        names.push_str(", ");
    }
    // A name is server text too, and may itself hold `name=value`.
    let _ = write!(names, "`{}`", text(name, 64));
    true
}

fn cap(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        clean(&text, max)
    }
}

enum Shape {
    Object(String),
    Other(&'static str),
}

/// Reads a JSON value's shape: an object's member names (sanitized, listed up to about `max`
/// bytes) with every value skipped unread, or the kind of any other value.
struct ShapeVisitor {
    max: usize,
}

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any json value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut names = String::new();
        let mut listing = true;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            map.next_value::<IgnoredAny>()?;
            listing = listing && push_name(&mut names, &name, self.max);
        }
        Ok(Shape::Object(names))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other("string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other("boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Other("null"))
    }
}

/// Control characters dropped, white space folded, at most `max` bytes kept.
fn clean(raw: &str, max: usize) -> String {
    let mut out = String::with_capacity(raw.len().min(max));
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_bidi_control(c) {
            continue;
        }
        let needed = c.len_utf8() + usize::from(pending_space);
        if out.len() + needed > max {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// Characters that reorder the text around them when displayed (the "Trojan Source" class).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Names whose value is a secret, as words: written with `_`, `-`, `%5F`, `.` or nothing
/// between the words, in any case (`client_secret`, `Client-Secret`, `clientSecret`).
const SECRET_NAMES: &[&[&str]] = &[
    &["access", "token"],
    &["refresh", "token"],
    &["id", "token"],
    &["client", "secret"],
    &["client", "assertion"],
    &["assertion"],
    &["password"],
    &["secret"],
    &["token"],
    // Echoed request headers: `Authorization: Basic …`, `DPoP: eyJ…`.
    &["authorization"],
    &["dpop"],
];

/// Authentication schemes a credential follows (`Basic dXNlcjpwYXNz`): a value that is one of
/// them is redacted with the credential after it.
const SCHEMES: &[&[u8]] = &[
    b"basic",
    b"bearer",
    b"dpop",
    b"digest",
    b"negotiate",
    b"mac",
];

/// How far past a name the separator and the value's opening quote are looked for.
const MAX_GAP: usize = 64;

/// The bytes after which [`redact`] may find a value: a value is found only after a separator
/// (`=`, `:`, or one URL-encoded or HTML-escaped), a `value=` attribute or a tag.
pub(crate) const VALUE_LEADS: [u8; 5] = [b'=', b':', b'%', b'&', b'<'];

/// Whether `byte` is one of [`VALUE_LEADS`] (a `match`, which compiles to less than a search).
pub(crate) fn may_lead_to_value(byte: u8) -> bool {
    matches!(byte, b'=' | b':' | b'%' | b'&' | b'<')
}

/// The text with the value after every secret-looking name replaced by [`REDACTED`], in the
/// shapes servers and gateways echo them: `name=value`, `name: value`, `"name":"value"`,
/// `name="value"`, URL-encoded (`name%3Dvalue`), HTML-escaped (`name&#61;value`), as HTML
/// attributes (`name="client_secret" value="…"`) and in adjacent table cells.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // Text with none of these bytes has nothing to redact, as most error descriptions do. This
    // keeps an OAuth error's parse cheap.
    if !bytes.iter().copied().any(may_lead_to_value) {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut copied = 0; // bytes of `text` already in `out`
    let mut i = 0;
    while i < bytes.len() {
        // Every secret-looking name starts with one of these letters, in either case (`| 0x20`
        // lower-cases an ASCII letter and maps no other byte onto one).
        if !matches!(
            bytes[i] | 0x20,
            b'a' | b'c' | b'd' | b'i' | b'p' | b'r' | b's' | b't'
        ) {
            i += 1;
            continue;
        }
        let Some(name_end) = secret_name_at(bytes, i) else {
            i += 1;
            continue;
        };
        match value_after(bytes, name_end) {
            Some((start, end)) if end > start => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
            }
            _ => i = name_end,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The end of a secret-looking name starting at `i`, if one does. The name must not continue
/// a word (`xpassword` is still found: redacting too much is safe; but a name is not matched
/// in the middle of a longer name such as `token_type`, by the separator rule in
/// [`value_after`]).
fn secret_name_at(bytes: &[u8], i: usize) -> Option<usize> {
    SECRET_NAMES.iter().find_map(|words| {
        let mut at = i;
        for (n, word) in words.iter().enumerate() {
            if n > 0 {
                at = skip_word_joint(bytes, at);
            }
            let end = at + word.len();
            if end > bytes.len() || !bytes[at..end].eq_ignore_ascii_case(word.as_bytes()) {
                return None;
            }
            at = end;
        }
        Some(at)
    })
}

/// Past what may join the words of a name: `_`, `-`, `.`, `%5F`, `%2D`, or nothing.
fn skip_word_joint(bytes: &[u8], at: usize) -> usize {
    match bytes.get(at) {
        Some(b'_' | b'-' | b'.') => at + 1,
        Some(b'%') if starts_with_ci(bytes, at, b"%5f") || starts_with_ci(bytes, at, b"%2d") => {
            at + 3
        }
        _ => at,
    }
}

fn starts_with_ci(bytes: &[u8], at: usize, prefix: &[u8]) -> bool {
    bytes
        .get(at..at + prefix.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(prefix))
}

/// Quotes as they appear in text: plain, backslash-escaped, HTML-escaped or URL-encoded.
const QUOTES: &[&[u8]] = &[
    b"\"", b"'", b"\\\"", b"\\'", b"&quot;", b"&#34;", b"&#x22;", b"&apos;", b"&#39;", b"&#x27;",
    b"%22", b"%27", b"`",
];

/// Separators between a name and its value.
const SEPARATORS: &[&[u8]] = &[
    b"=",
    b":",
    b"%3d",
    b"%3a",
    b"&#61;",
    b"&#x3d;",
    b"&equals;",
    b"&#58;",
    b"&#x3a;",
    b"&colon;",
];

/// Attribute names that hold the value of the field an HTML element names.
const VALUE_ATTRIBUTES: &[&[u8]] = &[b"value", b"content"];

/// Where the value after a name ends, starting at `at`: past quotes, white space and markup, a
/// separator (or, between table cells and the like, a tag alone), more of the same, then the
/// value, which runs to its closing quote, or unquoted to the next delimiter.
fn value_after(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let limit = bytes.len().min(at + MAX_GAP);
    let (mut at, _, saw_tag) = skip_gap(bytes, at, limit);
    if let Some(sep) = SEPARATORS.iter().find(|s| starts_with_ci(bytes, at, s)) {
        at += sep.len();
    } else if let Some(attr) = VALUE_ATTRIBUTES
        .iter()
        .find(|a| starts_with_ci(bytes, at, a))
    {
        let (after, _, _) = skip_gap(bytes, at + attr.len(), limit);
        if !starts_with_ci(bytes, after, b"=") {
            return None;
        }
        at = after + 1;
    } else if !saw_tag {
        return None;
    }
    let (start, quote, _) = skip_gap(bytes, at, limit);
    let end = match quote {
        Some(quote) => find_from(bytes, start, quote).unwrap_or(bytes.len()),
        None => {
            let end = unquoted_end(bytes, start);
            // A scheme is no secret, the credential after it is: redact both.
            let is_scheme = SCHEMES
                .iter()
                .any(|scheme| bytes[start..end].eq_ignore_ascii_case(scheme));
            let after = end + bytes[end..].iter().take_while(|b| **b == b' ').count();
            if is_scheme && after > end && after < bytes.len() {
                unquoted_end(bytes, after)
            } else {
                end
            }
        }
    };
    Some((start, end))
}

/// Where an unquoted value starting at `start` ends: at white space or a delimiter.
fn unquoted_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b"&<>\"'`,;}])\\".contains(&b))
        .map_or(bytes.len(), |n| start + n)
}

/// Past white space, quotes and tags, up to `limit`: where that ends, the last quote passed, and
/// whether a tag was.
fn skip_gap(bytes: &[u8], mut at: usize, limit: usize) -> (usize, Option<&'static [u8]>, bool) {
    let mut quote = None;
    let mut saw_tag = false;
    while at < limit {
        if bytes[at].is_ascii_whitespace() {
            at += 1;
        } else if let Some(q) = QUOTES.iter().find(|q| starts_with_ci(bytes, at, q)) {
            quote = Some(*q);
            at += q.len();
        } else if bytes[at] == b'<' {
            match bytes[at..limit].iter().position(|&b| b == b'>') {
                Some(n) => {
                    at += n + 1;
                    saw_tag = true;
                    quote = None;
                }
                None => break,
            }
        } else {
            break;
        }
    }
    (at, quote, saw_tag)
}

/// Where `quote` next appears from `from`: the value's closing quote, which is written as the
/// opening one was (`"`, `\"`, `&quot;`).
fn find_from(bytes: &[u8], from: usize, quote: &[u8]) -> Option<usize> {
    (from..bytes.len()).find(|&i| starts_with_ci(bytes, i, quote))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_control_characters_and_folds_space() {
        assert_eq!(text("a\u{1b}[31mb\r\n\tc  d", 100), "a[31mb c d");
        assert_eq!(text("  lead", 100), "lead");
        assert_eq!(text("x\u{202e}y", 100), "xy");
    }

    #[test]
    fn caps_length_at_a_character_boundary() {
        let capped = text(&"é".repeat(100), 11);
        assert_eq!(capped, format!("{}…", "é".repeat(5)));
        assert_eq!(bytes(&[0xff, b'a'], 10), "\u{fffd}a");
        let huge = format!("client_secret={}", "s".repeat(100_000));
        assert_eq!(text(&huge, 20), "client_secret=[redac…");
    }

    #[test]
    fn every_secret_name_starts_with_a_letter_the_fast_path_checks() {
        for words in SECRET_NAMES {
            let first = words[0].as_bytes()[0];
            for letter in [first.to_ascii_lowercase(), first.to_ascii_uppercase()] {
                let text = format!("{}{}=v", letter as char, &words.concat()[1..]);
                assert_eq!(
                    redact(&text),
                    format!("{}{}={REDACTED}", letter as char, &words.concat()[1..]),
                    "{words:?}"
                );
            }
        }
        // Without a separator, a markup tag or an encoded byte there is nothing to redact.
        assert!(matches!(redact("client_secret is wrong"), Cow::Borrowed(_)));
    }

    #[test]
    fn redacts_the_value_after_a_secret_looking_name() {
        for (raw, redacted) in [
            ("client_secret=s3cr3t&x=1", "client_secret=[redacted]&x=1"),
            (
                "Client-Secret : s3cr3t done",
                "Client-Secret : [redacted] done",
            ),
            (
                r#"{"accessToken":"s3 cr3t","a":1}"#,
                r#"{"accessToken":"[redacted]","a":1}"#,
            ),
            (
                r#"{\"id_token\":\"s3cr3t\"}"#,
                r#"{\"id_token\":\"[redacted]\"}"#,
            ),
            ("PASSWORD='s3cr3t'", "PASSWORD='[redacted]'"),
            ("refresh%5Ftoken%3Ds3cr3t", "refresh%5Ftoken%3D[redacted]"),
            ("assertion&#61;s3cr3t", "assertion&#61;[redacted]"),
            (
                "password=&quot;s3cr3t&quot;",
                "password=&quot;[redacted]&quot;",
            ),
            (
                r#"<input name="client_assertion" value="s3cr3t">"#,
                r#"<input name="client_assertion" value="[redacted]">"#,
            ),
            (
                "<dt>token</dt> <dd>s3cr3t</dd>",
                "<dt>token</dt> <dd>[redacted]</dd>",
            ),
            ("secret=a secret=b", "secret=[redacted] secret=[redacted]"),
            (
                "<p>Authorization: Basic ZGVtbzpzM2NyM3Q=</p>",
                "<p>Authorization: [redacted]</p>",
            ),
            (
                "authorization=bearer eyJhbGci.x.y, next",
                "authorization=[redacted], next",
            ),
            ("DPoP: eyJ0eXAi.eyJqdGki.sig seen", "DPoP: [redacted] seen"),
            ("token: Bearer", "token: [redacted]"),
        ] {
            assert_eq!(redact(raw), redacted, "{raw}");
        }
    }

    #[test]
    fn leaves_text_without_a_secret_value_alone() {
        for plain in [
            "token_type=bearer&expires_in=3600",
            "Invalid client secret provided. Ensure the secret being sent is the client secret value",
            "the access token expired",
            "client_secret=",
            "<h1>502 Bad Gateway</h1>",
            "",
        ] {
            assert!(matches!(redact(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn excerpts_describe_json_and_forms_by_member_names() {
        assert_eq!(
            excerpt(br#"{"access_token":"s3cr3t","scope":"a"}"#, 256),
            "a json object with members `access_token`, `scope`"
        );
        assert_eq!(excerpt(b"\xEF\xBB\xBF{}", 256), "an empty json object");
        assert_eq!(excerpt(br#"["s3cr3t"]"#, 256), "a json array");
        assert_eq!(excerpt(br#""s3cr3t""#, 256), "a json string");
        assert_eq!(
            excerpt(b"client_secret=s3cr3t&a%5Fb=1\r\n", 256),
            "a form with members `client_secret`, `a_b`"
        );
        assert_eq!(
            excerpt(br#"{"client_secret=s3cr3t":1}"#, 256),
            "a json object with members `client_secret=[redacted]`"
        );
        // Prose is not a form, and a cut-off object is not json: both are quoted, redacted.
        assert_eq!(excerpt(b"try later", 256), "try later");
        assert_eq!(
            excerpt(br#"{"access_token":"s3cr3t"#, 256),
            r#"{"access_token":"[redacted]"#
        );
        let many: String = (0..200).map(|n| format!("m{n}=1&")).collect();
        let described = excerpt(many.trim_end_matches('&').as_bytes(), 64);
        assert!(described.len() <= 64 + '…'.len_utf8(), "{described}");
        assert!(
            described.starts_with("a form with members `m0`, `m1`"),
            "{described}"
        );
    }

    #[test]
    fn forms_are_name_value_pairs_without_prose() {
        assert!(is_form(b"access_token=a&expires=5"));
        assert!(is_form(b"a=&b=c%20d+e"));
        for not_form in [
            &b""[..],
            b"abc",
            b"a=b c",
            b"<p>a=b</p>",
            b"=b",
            b"a=b&",
            b"a=\"b\"",
        ] {
            assert!(
                !is_form(not_form),
                "{:?}",
                String::from_utf8_lossy(not_form)
            );
        }
    }
}
