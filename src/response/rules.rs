//! The rules a token response is parsed by: the body size limit, and each named tolerance of a
//! real provider's deviation from RFC 6749.

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
    pub(super) max_body_len: usize,
    pub(super) missing_token_type: bool,
    pub(super) expires_in_string: bool,
    pub(super) expires_in_float: bool,
    pub(super) scope_array: bool,
    pub(super) json_any_content_type: bool,
    pub(super) form_body: bool,
    pub(super) utf8_bom: bool,
    pub(super) any_success_status: bool,
    pub(super) empty_error: bool,
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
    /// [`Error::BodyTooLarge`](crate::Error::BodyTooLarge) before it is read. Adapters apply it while the body streams in.
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
}
