//! The usual token or error response read without serde: a flat JSON object whose members are
//! short ASCII strings without escapes, unsigned integers, `true`, `false` or `null`, such as
//! `{"error":"invalid_client","error_description":"client authentication failed"}`.
//!
//! It is a shortcut, never a second grammar: it accepts only text that `serde_json` reads the
//! same way, hands each member to [`Fields::set`] exactly as the general reader does, and gives
//! up on anything else (an escape, a byte outside printable ASCII, a fraction, a nested value,
//! malformed JSON), leaving the body to `serde_json`, which then decides, with its own error.
//! The law is tested in `tests.rs` (`the_flat_reader_agrees_with_serde_json`).

use std::borrow::Cow;

use super::{Fields, Loose};

/// Reads `body` into `fields` if it is a flat object of simple members; `false` if it is not,
/// and then `fields` may hold some of its members and is to be discarded.
pub(super) fn read<'a>(body: &'a [u8], fields: &mut Fields<'a>) -> bool {
    // Checked once for the whole body: cheaper than for each string, which is then only sliced.
    std::str::from_utf8(body).is_ok_and(|text| read_object(text, fields).is_some())
}

fn read_object<'a>(text: &'a str, fields: &mut Fields<'a>) -> Option<()> {
    let body = text.as_bytes();
    let mut at = skip_space(body, 0);
    expect(body, &mut at, b'{')?;
    at = skip_space(body, at);
    if body.get(at) == Some(&b'}') {
        return end(body, at + 1);
    }
    loop {
        let name = string(text, &mut at)?;
        at = skip_space(body, at);
        expect(body, &mut at, b':')?;
        at = skip_space(body, at);
        let value = value(text, &mut at)?;
        fields.set(Cow::Borrowed(name), value);
        at = skip_space(body, at);
        match body.get(at)? {
            b',' => at = skip_space(body, at + 1),
            b'}' => return end(body, at + 1),
            _ => return None,
        }
    }
}

/// Only JSON whitespace may follow the object.
fn end(body: &[u8], at: usize) -> Option<()> {
    (skip_space(body, at) == body.len()).then_some(())
}

fn skip_space(body: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = body.get(at) {
        at += 1;
    }
    at
}

fn expect(body: &[u8], at: &mut usize, byte: u8) -> Option<()> {
    (body.get(*at) == Some(&byte)).then(|| *at += 1)
}

/// A string of printable ASCII without escapes, borrowed from the body.
fn string<'a>(text: &'a str, at: &mut usize) -> Option<&'a str> {
    let body = text.as_bytes();
    expect(body, at, b'"')?;
    let start = *at;
    let mut end = start;
    // Eight bytes at a time: the first that ends the string or needs the general reader is the
    // lowest one marked.
    while let Some(chunk) = body.get(end..end + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let marked = unprintable(word) | first_equal(word, b'"') | first_equal(word, b'\\');
        if marked != 0 {
            end += (marked.trailing_zeros() / 8) as usize;
            break;
        }
        end += 8;
    }
    loop {
        match *body.get(end)? {
            b'"' => break,
            b' '..=b'~' if body[end] != b'\\' => end += 1,
            _ => return None,
        }
    }
    *at = end + 1;
    text.get(start..end)
}

/// Each byte's top bit, in the words below.
pub(super) const HIGHS: u64 = 0x8080_8080_8080_8080;
const LOWS: u64 = !HIGHS;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The top bit of each byte of `word` (as eight bytes, little-endian) that equals `byte`, and
/// of no other.
pub(super) fn equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    // A byte's low seven bits plus 0x7F reach its top bit unless they are all zero; no carry
    // crosses into the next byte.
    !(((x & LOWS) + LOWS) | x) & HIGHS
}

/// The top bit of the lowest byte of `word` that equals `byte`, and maybe of bytes above it,
/// never of one below it: [`equal`] in fewer steps, when only the first matters (or whether
/// there is one).
pub(super) fn first_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    // Subtracting 1 borrows into the top bit of a zero byte (and may borrow on, upward).
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The top bit of each byte of `word` outside printable ASCII (below 0x20, or 0x7F and above),
/// and maybe of bytes above the lowest such byte, never of one below it: enough to tell
/// whether there is one, and where the first is.
pub(super) fn unprintable(word: u64) -> u64 {
    // Below 0x20: subtracting 0x20 borrows into the byte's top bit (and may borrow on, upward).
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    // 0x7F and above: the top bit is set, or is after adding 1 (which carries on upward only
    // from a byte whose top bit is set).
    let high = (word | word.wrapping_add(ONES)) & HIGHS;
    control | high
}

fn value<'a>(text: &'a str, at: &mut usize) -> Option<Loose<'a>> {
    let body = text.as_bytes();
    let literal = |at: &mut usize, text: &[u8], value| {
        let after = *at + text.len();
        (body.get(*at..after)? == text).then(|| {
            *at = after;
            value
        })
    };
    match body.get(*at)? {
        b'"' => string(text, at).map(|text| Loose::Str(Cow::Borrowed(text))),
        b'n' => literal(at, b"null", Loose::Null),
        b't' => literal(at, b"true", Loose::Bool(true)),
        b'f' => literal(at, b"false", Loose::Bool(false)),
        b'0'..=b'9' => number(body, at).map(Loose::U64),
        _ => None,
    }
}

/// An unsigned integer that fits a `u64`, as `serde_json` reads it: no leading zero, no
/// fraction, no exponent (anything else goes to `serde_json`).
fn number(body: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut value: u64 = 0;
    while let Some(&digit @ b'0'..=b'9') = body.get(*at) {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        *at += 1;
    }
    let leading_zero = body[start] == b'0' && *at - start > 1;
    let more = matches!(body.get(*at), Some(b'.' | b'e' | b'E'));
    (!leading_zero && !more).then_some(value)
}
