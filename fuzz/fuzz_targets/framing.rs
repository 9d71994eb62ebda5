//! The readable text framing the response targets share, so that seeds are easy to write and
//! mutations keep their shape:
//!
//! ```text
//! <status>\n                 digits; outside 100..=999 they are folded into it
//! <name>: <value>\n          any number of header lines (invalid ones are skipped)
//! \n
//! <body bytes>
//! ```
//!
//! Header lines whose name starts with `x-fuzz-` are not headers but settings for the target,
//! handed back as they are.

use client_credentials::http::{self, HeaderName, HeaderValue, StatusCode};

const MAX_HEADERS: usize = 64;

/// A target setting: an `x-fuzz-…` line's name (lower-case, without the prefix) and value.
pub struct Setting<'a> {
    pub name: String,
    pub value: &'a [u8],
}

impl Setting<'_> {
    /// The value as a number, if it is one.
    pub fn number(&self) -> Option<usize> {
        std::str::from_utf8(self.value).ok()?.parse().ok()
    }
}

/// Reads the framing; every input gives some response.
pub fn frame(data: &[u8]) -> (http::Response<&[u8]>, Vec<Setting<'_>>) {
    let (first, mut rest) = split_line(data);
    let digits: Vec<u8> = first
        .iter()
        .copied()
        .filter(u8::is_ascii_digit)
        .take(6)
        .collect();
    let status = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse::<u32>().ok())
        .map_or(200, |n| {
            if (100..=999).contains(&n) {
                n
            } else {
                100 + n % 900
            }
        });
    let mut response = http::Response::new(&[][..]);
    *response.status_mut() = StatusCode::from_u16(status as u16).expect("100..=999");
    let mut settings = Vec::new();
    let mut count = 0;
    loop {
        if rest.is_empty() {
            break;
        }
        let (line, after) = split_line(rest);
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        if let Some(setting) = lower.strip_prefix("x-fuzz-") {
            settings.push(Setting {
                name: setting.to_owned(),
                value,
            });
            continue;
        }
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if count < MAX_HEADERS {
            response.headers_mut().append(name, value);
            count += 1;
        }
    }
    *response.body_mut() = rest;
    (response, settings)
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[]),
    }
}
