//! Byte tests on eight bytes at a time (a `u64` read little-endian), for the scan that tells
//! whether an OAuth error's text is plain: printable ASCII, no double space, none of the bytes
//! `sanitize::redact` looks after. Bit tricks, not parsing: JSON is always read by `serde_json`.

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
