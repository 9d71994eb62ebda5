//! Making server text safe to log: control characters dropped, length capped.

/// The most bytes of any text from the server (`error_description`, a header) that errors keep.
pub const MAX_SERVER_TEXT_LEN: usize = 512;

/// The most bytes of a non-success response body that [`crate::UnexpectedResponse`] keeps.
pub const MAX_EXCERPT_LEN: usize = 256;

/// Server text with control characters dropped, runs of white space folded into one space, and
/// at most `max` bytes kept (cut at a character boundary, marked with `…`).
pub(crate) fn text(raw: &str, max: usize) -> String {
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

/// Like [`text`], for bytes that may not be UTF-8.
pub(crate) fn bytes(raw: &[u8], max: usize) -> String {
    // Decoding at most 4 bytes per kept character bounds the work on a huge body.
    let head = &raw[..raw.len().min(max.saturating_mul(4))];
    text(&String::from_utf8_lossy(head), max)
}

/// Characters that reorder the text around them when displayed (the "Trojan Source" class).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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
    }
}
