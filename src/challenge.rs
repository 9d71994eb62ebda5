//! The `WWW-Authenticate` challenges of a 401 response (RFC 9110 §11.6.1).

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

use crate::sanitize::{self, MAX_SERVER_TEXT_LEN};

/// The most challenges kept from one response; the rest are ignored.
const MAX_CHALLENGES: usize = 16;
/// The most parameters kept per challenge; the rest are ignored.
const MAX_PARAMS: usize = 32;

/// One authentication challenge, such as `Basic realm="idp"` or
/// `Bearer error="invalid_token"`.
///
/// Values are sanitized as all server text is; parameter names are compared
/// case-insensitively, as RFC 9110 §11.2 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// Every challenge in every `WWW-Authenticate` header of a response, in the order sent:
    /// for reading what an API's refusal says (the `scope` of an `insufficient_scope`, the
    /// `algs` of a `DPoP` challenge). At most 16 challenges of all the headers together and 32
    /// parameters each are kept, the values sanitized and capped as all server text is; a
    /// malformed header gives the challenges before the fault. It never fails.
    ///
    /// ```
    /// use client_credentials::call::Challenge;
    /// use client_credentials::http::HeaderMap;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert(
    ///     "www-authenticate",
    ///     r#"Bearer realm="api", error="insufficient_scope", scope="write", DPoP algs="ES256""#.parse()?,
    /// );
    /// let challenges = Challenge::parse_all(&headers);
    /// assert_eq!(challenges[0].param("scope"), Some("write"));
    /// assert_eq!(challenges[1].scheme(), "DPoP");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn parse_all(headers: &HeaderMap) -> Vec<Self> {
        let mut challenges = Vec::new();
        for value in headers.get_all(WWW_AUTHENTICATE) {
            Parser::new(value.as_bytes()).parse_into(&mut challenges);
        }
        challenges
    }

    /// The authentication scheme, as sent (`Basic`, `Bearer`, `DPoP`, …).
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The value of a parameter, by case-insensitive name.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every parameter, in the order sent.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `realm` parameter.
    #[must_use]
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// The token68 form of credentials some schemes use instead of parameters.
    #[must_use]
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    fn parse_into(mut self, out: &mut Vec<Challenge>) {
        while out.len() < MAX_CHALLENGES {
            self.skip(|b| b == b',' || is_ows(b));
            let scheme = self.take(is_tchar);
            if scheme.is_empty() {
                return; // end of input, or malformed: keep what was read
            }
            let mut challenge = Challenge {
                scheme: text(scheme),
                token68: None,
                params: Vec::new(),
            };
            self.skip(is_ows);
            if let Some(token68) = self.token68() {
                challenge.token68 = Some(text(token68));
            } else {
                self.params(&mut challenge.params);
            }
            out.push(challenge);
        }
    }

    /// A token68 that stands alone up to the end or a comma; otherwise nothing is consumed.
    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        self.skip(is_token68_char);
        if self.pos == start {
            return None;
        }
        self.skip(|b| b == b'=');
        let end = self.pos;
        self.skip(is_ows);
        if matches!(self.peek(), None | Some(b',')) {
            Some(&self.input[start..end])
        } else {
            self.pos = start;
            None
        }
    }

    fn params(&mut self, params: &mut Vec<(String, String)>) {
        loop {
            let before = self.pos;
            self.skip(|b| b == b',' || is_ows(b));
            let name = self.take(is_tchar);
            self.skip(is_ows);
            if name.is_empty() || self.peek() != Some(b'=') {
                self.pos = before; // the next challenge's scheme, or the end
                return;
            }
            self.pos += 1;
            self.skip(is_ows);
            let value = if self.peek() == Some(b'"') {
                self.quoted_string()
            } else {
                text(self.take(is_tchar))
            };
            if params.len() < MAX_PARAMS {
                params.push((text(name), value));
            }
        }
    }

    fn quoted_string(&mut self) -> String {
        self.pos += 1; // the opening quote
        let mut raw = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        raw.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => raw.push(b),
            }
        }
        sanitize::bytes(&raw, MAX_SERVER_TEXT_LEN)
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip(&mut self, keep_going: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&keep_going) {
            self.pos += 1;
        }
    }

    fn take(&mut self, keep_going: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        self.skip(keep_going);
        &self.input[start..self.pos]
    }
}

fn text(raw: &[u8]) -> String {
    sanitize::bytes(raw, MAX_SERVER_TEXT_LEN)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §11.2 `token68`, without its trailing `=` padding.
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(values: &[&str]) -> Vec<Challenge> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
        }
        Challenge::parse_all(&headers)
    }

    #[test]
    fn basic_with_realm_rfc6749_5_2() {
        let challenges = parse(&[r#"Basic realm="idp", charset="UTF-8""#]);
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme(), "Basic");
        assert_eq!(challenges[0].realm(), Some("idp"));
        assert_eq!(challenges[0].param("CHARSET"), Some("UTF-8"));
    }

    #[test]
    fn several_challenges_in_one_and_several_headers() {
        let challenges = parse(&[
            r#"Bearer realm="a", error="invalid_token", error_description="the \"token\" expired", DPoP algs="ES256 PS256""#,
            "Negotiate abc+/==, Basic realm=plain",
        ]);
        let schemes: Vec<_> = challenges.iter().map(Challenge::scheme).collect();
        assert_eq!(schemes, ["Bearer", "DPoP", "Negotiate", "Basic"]);
        assert_eq!(
            challenges[0].param("error_description"),
            Some(r#"the "token" expired"#)
        );
        assert_eq!(challenges[1].param("algs"), Some("ES256 PS256"));
        assert_eq!(challenges[2].token68(), Some("abc+/=="));
        assert_eq!(challenges[3].realm(), Some("plain"));
    }

    #[test]
    fn bare_scheme_and_garbage_do_not_panic() {
        assert_eq!(parse(&["Bearer"])[0].scheme(), "Bearer");
        assert!(parse(&["", " , ,"]).is_empty());
        let odd = parse(&[r#"Basic realm="unterminated"#]);
        assert_eq!(odd[0].realm(), Some("unterminated"));
        let _ = parse(&["=,=,\"", "a =", "a b=", "a b c d"]);
    }

    #[test]
    fn bounded_number_of_challenges() {
        let many = vec!["X"; 100].join(", ");
        assert_eq!(parse(&[&many]).len(), MAX_CHALLENGES);
    }
}
