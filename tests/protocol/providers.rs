//! Real token endpoint responses, provider by provider, and what each must yield (RFC 6749 §5).
//!
//! Each row is a response as the provider sends it, the [`ResponseRules`] tolerances it needs
//! and what parsing must give. For every row the test checks that
//! - the default rules (tolerant), through `TokenRequest::parse_response`, give the expected
//!   result;
//! - `ResponseRules::strict()` plus only the named tolerances gives it too (so a row that needs
//!   none passes the strict rules unchanged);
//! - the tolerant rules with any one named tolerance turned off do not, and refuse the response
//!   with the problem that tolerance exists for.
//!
//! Every row is checked and all failures are reported together, by provider.

use std::time::{Duration, SystemTime};

use client_credentials::error::{ResponseProblem, RetryAfter};
use client_credentials::fetch::ResponseRules;
use client_credentials::{Error, Token, http};
use serde_json::{Value, json};

use crate::support;
use support::responses::{parse, sent_at};

/// A named tolerance of [`ResponseRules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tolerance {
    MissingTokenType,
    ExpiresInString,
    ExpiresInFloat,
    ScopeArray,
    JsonWithAnyContentType,
    FormBody,
    Utf8Bom,
    AnySuccessStatus,
    EmptyError,
}

impl Tolerance {
    fn set(self, rules: ResponseRules, allow: bool) -> ResponseRules {
        match self {
            Self::MissingTokenType => rules.allow_missing_token_type(allow),
            Self::ExpiresInString => rules.allow_expires_in_string(allow),
            Self::ExpiresInFloat => rules.allow_expires_in_float(allow),
            Self::ScopeArray => rules.allow_scope_array(allow),
            Self::JsonWithAnyContentType => rules.allow_json_with_any_content_type(allow),
            Self::FormBody => rules.allow_form_body(allow),
            Self::Utf8Bom => rules.allow_utf8_bom(allow),
            Self::AnySuccessStatus => rules.allow_any_success_status(allow),
            Self::EmptyError => rules.allow_empty_error(allow),
        }
    }

    /// Whether `problem` is how a 2xx response needing this tolerance is refused without it.
    fn refuses_with(self, problem: &ResponseProblem) -> bool {
        use ResponseProblem as P;
        match self {
            Self::MissingTokenType => *problem == P::MissingTokenType,
            Self::ExpiresInString | Self::ExpiresInFloat => {
                matches!(
                    problem,
                    P::InvalidMember {
                        name: "expires_in",
                        ..
                    }
                )
            }
            Self::ScopeArray => matches!(problem, P::InvalidMember { name: "scope", .. }),
            Self::JsonWithAnyContentType => matches!(problem, P::UnexpectedContentType { .. }),
            Self::FormBody => matches!(problem, P::NotJson { .. }),
            Self::Utf8Bom => matches!(problem, P::InvalidJson { .. }),
            Self::AnySuccessStatus => *problem == P::UnexpectedSuccessStatus,
            Self::EmptyError => matches!(problem, P::InvalidMember { name: "error", .. }),
        }
    }
}

/// A `Retry-After` as a row states it.
#[derive(Debug, Clone, Copy)]
enum Retry {
    Secs(u64),
    /// Seconds since the Unix epoch of an HTTP-date.
    Date(u64),
}

impl Retry {
    fn value(self) -> RetryAfter {
        match self {
            Self::Secs(secs) => RetryAfter::Delay(Duration::from_secs(secs)),
            Self::Date(secs) => RetryAfter::At(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }
}

enum Expect {
    Token {
        access_token: &'static str,
        token_type: &'static str,
        expires_in: Option<u64>,
        scope: Option<&'static str>,
        refresh_token: Option<&'static str>,
        /// Every member not read by the parser, exactly.
        extras: Value,
    },
    OAuth {
        code: &'static str,
        description_starts: Option<&'static str>,
        uri: Option<&'static str>,
        /// Every member other than `error`, `error_description` and `error_uri`, exactly.
        extras: Value,
        /// The first `WWW-Authenticate` challenge: scheme and realm.
        challenge: Option<(&'static str, &'static str)>,
        dpop_nonce: Option<&'static str>,
        retry_after: Option<Retry>,
        retryable: bool,
    },
    Unexpected {
        content_type: Option<&'static str>,
        retry_after: Option<Retry>,
        excerpt_starts: Option<&'static str>,
        retryable: bool,
    },
}

struct Case {
    provider: &'static str,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    needs: &'static [Tolerance],
    expect: Expect,
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const JSON_UTF8: &[(&str, &str)] = &[("content-type", "application/json; charset=utf-8")];

fn token(
    access_token: &'static str,
    token_type: &'static str,
    expires_in: Option<u64>,
    scope: Option<&'static str>,
    extras: Value,
) -> Expect {
    Expect::Token {
        access_token,
        token_type,
        expires_in,
        scope,
        refresh_token: None,
        extras,
    }
}

fn oauth(
    code: &'static str,
    description_starts: Option<&'static str>,
    uri: Option<&'static str>,
    extras: Value,
) -> Expect {
    Expect::OAuth {
        code,
        description_starts,
        uri,
        extras,
        challenge: None,
        dpop_nonce: None,
        retry_after: None,
        retryable: false,
    }
}

fn cases() -> Vec<Case> {
    use Tolerance as T;
    vec![
        Case {
            provider: "Entra ID v1 (/oauth2/token): expires_in as a string",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1700003599","not_before":"1699999700","resource":"https://graph.microsoft.com","access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ.c2lnbmF0dXJl"}"#,
            needs: &[T::ExpiresInString],
            expect: token(
                "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ.c2lnbmF0dXJl",
                "Bearer",
                Some(3599),
                None,
                json!({"ext_expires_in":"3599","expires_on":"1700003599","not_before":"1699999700","resource":"https://graph.microsoft.com"}),
            ),
        },
        Case {
            provider: "Entra ID v2 (/oauth2/v2.0/token)",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBIn0.eyJyb2xlcyI6WyJVc2VyLlJlYWQuQWxsIl19.c2ln"}"#,
            needs: &[],
            expect: token(
                "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBIn0.eyJyb2xlcyI6WyJVc2VyLlJlYWQuQWxsIl19.c2ln",
                "Bearer",
                Some(3599),
                None,
                json!({"ext_expires_in": 3599}),
            ),
        },
        Case {
            provider: "Entra ID: 401 invalid_client (AADSTS7000215, wrong secret)",
            status: 401,
            headers: JSON_UTF8,
            body: r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00001111-aaaa-2222-bbbb-3333cccc4444'.\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2024-05-06 06:03:00Z","error_codes":[7000215],"timestamp":"2024-05-06 06:03:00Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#,
            needs: &[],
            expect: Expect::OAuth {
                code: "invalid_client",
                // The CR LF between the lines is folded into one space.
                description_starts: Some(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret",
                ),
                uri: Some("https://login.microsoftonline.com/error?code=7000215"),
                extras: json!({"error_codes":[7000215],"timestamp":"2024-05-06 06:03:00Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd"}),
                challenge: None,
                dpop_nonce: None,
                retry_after: None,
                retryable: false,
            },
        },
        Case {
            provider: "Entra ID: 400 unauthorized_client (AADSTS700016, unknown app)",
            status: 400,
            headers: JSON_UTF8,
            body: r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier '00001111-aaaa-2222-bbbb-3333cccc4444' was not found in the directory 'Contoso'.\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2024-05-06 06:03:00Z","error_codes":[700016],"timestamp":"2024-05-06 06:03:00Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd","error_uri":"https://login.microsoftonline.com/error?code=700016"}"#,
            needs: &[],
            expect: oauth(
                "unauthorized_client",
                Some("AADSTS700016: Application with identifier"),
                Some("https://login.microsoftonline.com/error?code=700016"),
                json!({"error_codes":[700016],"timestamp":"2024-05-06 06:03:00Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd"}),
            ),
        },
        Case {
            provider: "Auth0: JWT access token with scope",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6Ik5FTTFRVUUifQ.eyJpc3MiOiJodHRwczovL2V4YW1wbGUuYXV0aDAuY29tLyIsImd0eSI6ImNsaWVudC1jcmVkZW50aWFscyJ9.c2lnbmF0dXJl","scope":"read:messages write:messages","expires_in":86400,"token_type":"Bearer"}"#,
            needs: &[],
            expect: token(
                "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6Ik5FTTFRVUUifQ.eyJpc3MiOiJodHRwczovL2V4YW1wbGUuYXV0aDAuY29tLyIsImd0eSI6ImNsaWVudC1jcmVkZW50aWFscyJ9.c2lnbmF0dXJl",
                "Bearer",
                Some(86400),
                Some("read:messages write:messages"),
                json!({}),
            ),
        },
        Case {
            provider: "Auth0: 401 access_denied (wrong secret)",
            status: 401,
            headers: JSON_UTF8,
            body: r#"{"error":"access_denied","error_description":"Unauthorized"}"#,
            needs: &[],
            expect: oauth("access_denied", Some("Unauthorized"), None, json!({})),
        },
        Case {
            provider: "Auth0: 403 access_denied (no client grant for the audience)",
            status: 403,
            headers: JSON_UTF8,
            body: r#"{"error":"access_denied","error_description":"Client is not authorized to access \"https://api.example.com\". You need to create a \"client-grant\" associated to this API. See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants"}"#,
            needs: &[],
            expect: oauth(
                "access_denied",
                Some(r#"Client is not authorized to access "https://api.example.com". You need"#),
                None,
                json!({}),
            ),
        },
        Case {
            provider: "Okta: custom authorization server",
            status: 200,
            headers: JSON,
            body: r#"{"token_type":"Bearer","expires_in":3600,"access_token":"eyJraWQiOiJzMTZ0cVNtODhwREo4VGZCXzdrSEtQUkFGRjg1d1VEVGxteW85SUxUZTdzIiwiYWxnIjoiUlMyNTYifQ.eyJ2ZXIiOjF9.c2ln","scope":"customScope"}"#,
            needs: &[],
            expect: token(
                "eyJraWQiOiJzMTZ0cVNtODhwREo4VGZCXzdrSEtQUkFGRjg1d1VEVGxteW85SUxUZTdzIiwiYWxnIjoiUlMyNTYifQ.eyJ2ZXIiOjF9.c2ln",
                "Bearer",
                Some(3600),
                Some("customScope"),
                json!({}),
            ),
        },
        Case {
            provider: "Okta: 401 invalid_client",
            status: 401,
            headers: JSON,
            body: r#"{"error":"invalid_client","error_description":"The client secret supplied for a confidential client is invalid."}"#,
            needs: &[],
            expect: oauth(
                "invalid_client",
                Some("The client secret supplied for a confidential client is invalid."),
                None,
                json!({}),
            ),
        },
        Case {
            provider: "Facebook Graph API (legacy, before v2.3): form body labelled text/plain",
            status: 200,
            headers: &[("content-type", "text/plain; charset=UTF-8")],
            body: "access_token=EAACEdEose0cBAHZCwZBmZCZAVfxDZBp6TyJ3LZCe0ZAgZBZC2OtqAwQZDZD&expires=5183999",
            needs: &[T::FormBody, T::MissingTokenType],
            expect: token(
                "EAACEdEose0cBAHZCwZBmZCZAVfxDZBp6TyJ3LZCe0ZAgZBZC2OtqAwQZDZD",
                "Bearer",
                None,
                None,
                json!({"expires": "5183999"}),
            ),
        },
        Case {
            provider: "provider sending an empty `error` with every token (dotnet/aspnetcore#53457)",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"access_token":"at-53457","refresh_token":"rt-53457","expires_in":7199,"token_type":"Bearer","error":""}"#,
            needs: &[T::EmptyError],
            expect: Expect::Token {
                access_token: "at-53457",
                token_type: "Bearer",
                expires_in: Some(7199),
                scope: None,
                refresh_token: Some("rt-53457"),
                extras: json!({}),
            },
        },
        Case {
            provider: "Okta: 429 rate limit (Okta error object, no `error` member)",
            status: 429,
            headers: JSON,
            body: r#"{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":"sampleQPivGUj_ND5v78vbYWW","errorCauses":[]}"#,
            needs: &[],
            expect: Expect::Unexpected {
                content_type: Some("application/json"),
                retry_after: None,
                excerpt_starts: Some(
                    "a json object with members `errorCode`, `errorSummary`, `errorLink`, `errorId`, `errorCauses`",
                ),
                retryable: true,
            },
        },
        Case {
            provider: "Keycloak: refresh_expires_in, not-before-policy, scope",
            status: 200,
            headers: JSON,
            body: r#"{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ4NjN3In0.eyJleHAiOjE3MDAwMDAzMDB9.c2ln","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer","not-before-policy":0,"scope":"profile email"}"#,
            needs: &[],
            expect: token(
                "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ4NjN3In0.eyJleHAiOjE3MDAwMDAzMDB9.c2ln",
                "Bearer",
                Some(300),
                Some("profile email"),
                json!({"refresh_expires_in": 0, "not-before-policy": 0}),
            ),
        },
        Case {
            provider: "Keycloak: 401 unauthorized_client (bad credentials)",
            status: 401,
            headers: JSON,
            body: r#"{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}"#,
            needs: &[],
            expect: oauth(
                "unauthorized_client",
                Some("Invalid client or Invalid client credentials"),
                None,
                json!({}),
            ),
        },
        Case {
            provider: "Amazon Cognito",
            status: 200,
            headers: &[("content-type", "application/json;charset=UTF-8")],
            body: r#"{"access_token":"eyJraWQiOiJ1c2VyLXBvb2wta2V5IiwiYWxnIjoiUlMyNTYifQ.eyJ0b2tlbl91c2UiOiJhY2Nlc3MifQ.c2ln","expires_in":3600,"token_type":"Bearer"}"#,
            needs: &[],
            expect: token(
                "eyJraWQiOiJ1c2VyLXBvb2wta2V5IiwiYWxnIjoiUlMyNTYifQ.eyJ0b2tlbl91c2UiOiJhY2Nlc3MifQ.c2ln",
                "Bearer",
                Some(3600),
                None,
                json!({}),
            ),
        },
        Case {
            provider: "Amazon Cognito: 400 invalid_client",
            status: 400,
            headers: &[("content-type", "application/json;charset=UTF-8")],
            body: r#"{"error":"invalid_client"}"#,
            needs: &[],
            expect: oauth("invalid_client", None, None, json!({})),
        },
        Case {
            provider: "Google (service account token, padded with dots)",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"access_token":"ya29.c.c0ASRK0GZvPJ3Kq8lBm1nR2sT3uV4wX5yZ6aB7cD8eF9gH0iJ1kL2mN3oP4qR5sT6u............................","expires_in":3599,"token_type":"Bearer"}"#,
            needs: &[],
            expect: token(
                "ya29.c.c0ASRK0GZvPJ3Kq8lBm1nR2sT3uV4wX5yZ6aB7cD8eF9gH0iJ1kL2mN3oP4qR5sT6u............................",
                "Bearer",
                Some(3599),
                None,
                json!({}),
            ),
        },
        Case {
            provider: "Salesforce (no token_type; instance_url, id, issued_at, signature)",
            status: 200,
            headers: &[("content-type", "application/json;charset=UTF-8")],
            body: r#"{"id":"https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P","issued_at":"1278448832702","instance_url":"https://yourInstance.salesforce.com/","signature":"0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ=","access_token":"00Dx0000000BV7z!AR8AQAxo9UfVkh8AlV0Gomt9Czx9LjHnSSpwBMmbRcgKFmxOtvxjTrKW19ye6PE3Ds1eQz3z8jr3W7_VbWmEu4Q8TVGSTHxs"}"#,
            needs: &[T::MissingTokenType],
            expect: token(
                "00Dx0000000BV7z!AR8AQAxo9UfVkh8AlV0Gomt9Czx9LjHnSSpwBMmbRcgKFmxOtvxjTrKW19ye6PE3Ds1eQz3z8jr3W7_VbWmEu4Q8TVGSTHxs",
                "Bearer",
                None,
                None,
                json!({"id":"https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P","issued_at":"1278448832702","instance_url":"https://yourInstance.salesforce.com/","signature":"0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ="}),
            ),
        },
        Case {
            provider: "GitHub without Accept: json (form body)",
            status: 200,
            headers: &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body: "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer",
            needs: &[T::FormBody],
            expect: token(
                "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                "Bearer",
                None,
                Some("repo,gist"),
                json!({}),
            ),
        },
        Case {
            provider: "GitHub: 200 with an error (form body)",
            status: 200,
            headers: &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body: "error=incorrect_client_credentials&error_description=The+client_id+and%2For+client_secret+passed+are+incorrect.&error_uri=https%3A%2F%2Fdocs.github.com%2Fapps%2Fmanaging-oauth-apps%2Ftroubleshooting-oauth-app-access-token-request-errors%2F%23incorrect-client-credentials",
            needs: &[T::FormBody],
            expect: Expect::OAuth {
                code: "incorrect_client_credentials",
                description_starts: Some(
                    "The client_id and/or client_secret passed are incorrect.",
                ),
                uri: Some(
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials",
                ),
                extras: json!({}),
                challenge: None,
                dpop_nonce: None,
                retry_after: None,
                retryable: false,
            },
        },
        Case {
            provider: "GitHub: 200 with an error (json)",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"error":"incorrect_client_credentials","error_description":"The client_id and/or client_secret passed are incorrect.","error_uri":"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials"}"#,
            needs: &[],
            expect: oauth(
                "incorrect_client_credentials",
                Some("The client_id and/or client_secret passed are incorrect."),
                Some(
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials",
                ),
                json!({}),
            ),
        },
        Case {
            provider: "Slack: 200 with ok:false",
            status: 200,
            headers: JSON_UTF8,
            body: r#"{"ok":false,"error":"invalid_client_id"}"#,
            needs: &[],
            expect: oauth("invalid_client_id", None, None, json!({"ok": false})),
        },
        Case {
            provider: "Twitch: scope as a json array",
            status: 200,
            headers: JSON,
            body: r#"{"access_token":"rfx2uswqe8l4g1mkagrvg5tv0ks3","expires_in":14124,"refresh_token":"5b93chm6hdve3mycz05zfzatkfdenfspp1h1ar2xxdalen01","scope":["channel:moderate","chat:edit","chat:read"],"token_type":"bearer"}"#,
            needs: &[T::ScopeArray],
            expect: Expect::Token {
                access_token: "rfx2uswqe8l4g1mkagrvg5tv0ks3",
                token_type: "Bearer",
                expires_in: Some(14124),
                scope: Some("channel:moderate chat:edit chat:read"),
                refresh_token: Some("5b93chm6hdve3mycz05zfzatkfdenfspp1h1ar2xxdalen01"),
                extras: json!({}),
            },
        },
        Case {
            provider: "Reddit: expires_in as a float",
            status: 200,
            headers: &[("content-type", "application/json; charset=UTF-8")],
            body: r#"{"access_token": "-kMsp3E2wHkSAVnt5p2uA3xm1Q9Cmw", "token_type": "bearer", "expires_in": 3600.0, "scope": "identity"}"#,
            needs: &[T::ExpiresInFloat],
            expect: token(
                "-kMsp3E2wHkSAVnt5p2uA3xm1Q9Cmw",
                "Bearer",
                Some(3600),
                Some("identity"),
                json!({}),
            ),
        },
        Case {
            provider: "Dropbox: json labelled text/javascript",
            status: 200,
            headers: &[("content-type", "text/javascript")],
            body: r#"{"access_token": "sl.BkZ2Yj4uT3xL9qW8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8vB7nM6", "token_type": "bearer", "expires_in": 14400, "scope": "account_info.read files.content.read", "uid": "12345", "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"}"#,
            needs: &[T::JsonWithAnyContentType],
            expect: token(
                "sl.BkZ2Yj4uT3xL9qW8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8vB7nM6",
                "Bearer",
                Some(14400),
                Some("account_info.read files.content.read"),
                json!({"uid": "12345", "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"}),
            ),
        },
        Case {
            provider: "Windows-hosted server: json after a UTF-8 BOM",
            status: 200,
            headers: JSON_UTF8,
            body: "\u{feff}{\"access_token\":\"AAIkZjQ1YjIwNTct\",\"token_type\":\"Bearer\",\"expires_in\":3600}",
            needs: &[T::Utf8Bom],
            expect: token("AAIkZjQ1YjIwNTct", "Bearer", Some(3600), None, json!({})),
        },
        Case {
            provider: "server answering 201 Created",
            status: 201,
            headers: JSON,
            body: r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600}"#,
            needs: &[T::AnySuccessStatus],
            expect: token(
                "2YotnFZFEjr1zCsicMWpAA",
                "Bearer",
                Some(3600),
                None,
                json!({}),
            ),
        },
        Case {
            provider: "Doorkeeper: 401 invalid_client with WWW-Authenticate",
            status: 401,
            headers: &[
                ("content-type", "application/json; charset=utf-8"),
                (
                    "www-authenticate",
                    r#"Bearer realm="Doorkeeper", error="invalid_client", error_description="Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.""#,
                ),
            ],
            body: r#"{"error":"invalid_client","error_description":"Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."}"#,
            needs: &[],
            expect: Expect::OAuth {
                code: "invalid_client",
                description_starts: Some("Client authentication failed due to unknown client"),
                uri: None,
                extras: json!({}),
                challenge: Some(("Bearer", "Doorkeeper")),
                dpop_nonce: None,
                retry_after: None,
                retryable: false,
            },
        },
        Case {
            provider: "RFC 9449 §8: 400 use_dpop_nonce with DPoP-Nonce",
            status: 400,
            headers: &[
                ("content-type", "application/json"),
                ("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v"),
            ],
            body: r#"{"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"}"#,
            needs: &[],
            expect: Expect::OAuth {
                code: "use_dpop_nonce",
                description_starts: Some("Authorization server requires nonce in DPoP proof"),
                uri: None,
                extras: json!({}),
                challenge: None,
                dpop_nonce: Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
                retry_after: None,
                retryable: true,
            },
        },
        Case {
            provider: "nginx gateway: 502 html page",
            status: 502,
            headers: &[("content-type", "text/html")],
            body: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
            needs: &[],
            expect: Expect::Unexpected {
                content_type: Some("text/html"),
                retry_after: None,
                excerpt_starts: Some(
                    "<html> <head><title>502 Bad Gateway</title></head> <body> <center>",
                ),
                retryable: true,
            },
        },
        Case {
            provider: "rate-limiting gateway: 429 with Retry-After in seconds",
            status: 429,
            headers: &[("content-type", "application/json"), ("retry-after", "30")],
            body: r#"{"message":"Too Many Requests"}"#,
            needs: &[],
            expect: Expect::Unexpected {
                content_type: Some("application/json"),
                retry_after: Some(Retry::Secs(30)),
                excerpt_starts: Some("a json object with members `message`"),
                retryable: true,
            },
        },
        Case {
            provider: "rate-limiting gateway: 429 with Retry-After as an HTTP-date",
            status: 429,
            headers: &[
                ("content-type", "text/plain; charset=utf-8"),
                ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ],
            body: "Too Many Requests\n",
            needs: &[],
            expect: Expect::Unexpected {
                content_type: Some("text/plain; charset=utf-8"),
                retry_after: Some(Retry::Date(1_445_412_480)),
                excerpt_starts: Some("Too Many Requests"),
                retryable: true,
            },
        },
        Case {
            provider: "load balancer in maintenance: 503 with Retry-After",
            status: 503,
            headers: &[
                ("content-type", "text/html"),
                ("retry-after", "120"),
                ("cache-control", "no-cache"),
            ],
            body: "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
            needs: &[],
            expect: Expect::Unexpected {
                content_type: Some("text/html"),
                retry_after: Some(Retry::Secs(120)),
                excerpt_starts: Some(
                    "<html><body><h1>503 Service Unavailable</h1> No server is available",
                ),
                retryable: true,
            },
        },
    ]
}

fn response(case: &Case) -> http::Response<Vec<u8>> {
    support::responses::response(case.status, case.headers, case.body)
}

/// Checks `result` against the row's expectation; `Err` says what differs.
fn check(case: &Case, result: &Result<Token, Error>) -> Result<(), String> {
    let differs = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    };
    let map = |value: &Value| value.as_object().cloned().unwrap_or_default();
    match (&case.expect, result) {
        (
            Expect::Token {
                access_token,
                token_type,
                expires_in,
                scope,
                refresh_token,
                extras,
            },
            Ok(token),
        ) => {
            if token.access_token().secret() != *access_token {
                return Err("access_token differs".into());
            }
            if token.token_type().as_str() != *token_type {
                return differs("token_type", token.token_type(), token_type);
            }
            let want_expiry = expires_in.map(Duration::from_secs);
            if token.expires_in() != want_expiry {
                return differs("expires_in", &token.expires_in(), &want_expiry);
            }
            let want_expires_at = want_expiry.map(|lifetime| sent_at() + lifetime);
            if token.expires_at() != want_expires_at {
                return differs("expires_at", &token.expires_at(), &want_expires_at);
            }
            if token.scope() != *scope {
                return differs("scope", &token.scope(), scope);
            }
            if token.refresh_token().map(|r| r.secret()) != *refresh_token {
                return Err("refresh_token differs".into());
            }
            if *token.extras() != map(extras) {
                return differs("extras", token.extras(), extras);
            }
            Ok(())
        }
        (
            Expect::OAuth {
                code,
                description_starts,
                uri,
                extras,
                challenge,
                dpop_nonce,
                retry_after,
                retryable,
            },
            Err(err @ Error::OAuth(oauth)),
        ) => {
            if oauth.code().as_str() != *code {
                return differs("code", oauth.code(), code);
            }
            if oauth.status().as_u16() != case.status || err.status() != Some(oauth.status()) {
                return differs("status", &oauth.status(), &case.status);
            }
            let description_ok = match (oauth.description(), description_starts) {
                (Some(got), Some(want)) => got.starts_with(want),
                (got, want) => got.is_none() && want.is_none(),
            };
            if !description_ok {
                return differs("description", &oauth.description(), description_starts);
            }
            if oauth.uri() != *uri {
                return differs("error_uri", &oauth.uri(), uri);
            }
            if *oauth.extra() != map(extras) {
                return differs("extra members", oauth.extra(), extras);
            }
            let got_challenge = oauth
                .challenges()
                .first()
                .map(|c| (c.scheme(), c.realm().unwrap_or_default()));
            if got_challenge != *challenge {
                return differs("challenge", &got_challenge, challenge);
            }
            if oauth.dpop_nonce() != *dpop_nonce {
                return differs("dpop nonce", &oauth.dpop_nonce(), dpop_nonce);
            }
            let want_retry = retry_after.map(Retry::value);
            if oauth.retry_after() != want_retry || err.retry_after() != want_retry {
                return differs("retry_after", &oauth.retry_after(), &want_retry);
            }
            if err.is_retryable() != *retryable {
                return differs("is_retryable", &err.is_retryable(), retryable);
            }
            display_is_clean(err)
        }
        (
            Expect::Unexpected {
                content_type,
                retry_after,
                excerpt_starts,
                retryable,
            },
            Err(err @ Error::UnexpectedResponse(unexpected)),
        ) => {
            if unexpected.status().as_u16() != case.status {
                return differs("status", &unexpected.status(), &case.status);
            }
            if unexpected.content_type() != *content_type {
                return differs("content type", &unexpected.content_type(), content_type);
            }
            let want_retry = retry_after.map(Retry::value);
            if unexpected.retry_after() != want_retry || err.retry_after() != want_retry {
                return differs("retry_after", &unexpected.retry_after(), &want_retry);
            }
            let excerpt_ok = match (unexpected.excerpt(), excerpt_starts) {
                (Some(got), Some(want)) => got.starts_with(want),
                (got, want) => got.is_none() && want.is_none(),
            };
            if !excerpt_ok {
                return differs("excerpt", &unexpected.excerpt(), excerpt_starts);
            }
            if err.is_retryable() != *retryable {
                return differs("is_retryable", &err.is_retryable(), retryable);
            }
            display_is_clean(err)
        }
        (_, Ok(token)) => Err(format!("got a token: {token:?}")),
        (_, Err(err)) => Err(format!("got another error: {err:?}")),
    }
}

/// Display text is lower-case, one line, without a trailing period.
fn display_is_clean(err: &Error) -> Result<(), String> {
    let text = err.to_string();
    let clean = text.starts_with(|c: char| c.is_lowercase())
        && !text.ends_with('.')
        && !text.contains(|c: char| c.is_control());
    if clean {
        Ok(())
    } else {
        Err(format!("display text is not clean: {text:?}"))
    }
}

/// What the tolerant rules with `tolerance` off must give: a refusal naming the problem the
/// tolerance exists for, or, for an error status, an unexpected response.
fn check_refused(
    case: &Case,
    tolerance: Tolerance,
    result: &Result<Token, Error>,
) -> Result<(), String> {
    match result {
        Err(Error::InvalidResponse { status, problem })
            if status.as_u16() == case.status && tolerance.refuses_with(problem) =>
        {
            Ok(())
        }
        Err(Error::UnexpectedResponse(unexpected))
            if !unexpected.status().is_success() && unexpected.status().as_u16() == case.status =>
        {
            Ok(())
        }
        other => Err(format!("expected a refusal, got {other:?}")),
    }
}

#[test]
fn provider_responses_yield_what_they_must() {
    let mut failures = Vec::new();
    for case in cases() {
        let response = response(&case);
        let mut record = |rules: &str, outcome: Result<(), String>| {
            if let Err(why) = outcome {
                failures.push(format!("{} [{rules}]: {why}", case.provider));
            }
        };

        // The default rules are the tolerant ones.
        let default = parse(ResponseRules::default(), &response, sent_at());
        record("default", check(&case, &default));
        let tolerant = parse(ResponseRules::tolerant(), &response, sent_at());
        record("tolerant", check(&case, &tolerant));

        // Strict plus exactly the tolerances the row names.
        let rules = case
            .needs
            .iter()
            .fold(ResponseRules::strict(), |rules, t| t.set(rules, true));
        let label = format!("strict + {:?}", case.needs);
        record(&label, check(&case, &parse(rules, &response, sent_at())));

        // Each named tolerance is needed.
        for &tolerance in case.needs {
            let rules = tolerance.set(ResponseRules::tolerant(), false);
            let result = parse(rules, &response, sent_at());
            let label = format!("tolerant without {tolerance:?}");
            record(&label, check_refused(&case, tolerance, &result));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_tolerance_has_a_provider_row() {
    use Tolerance as T;
    let all = [
        T::MissingTokenType,
        T::ExpiresInString,
        T::ExpiresInFloat,
        T::ScopeArray,
        T::JsonWithAnyContentType,
        T::FormBody,
        T::Utf8Bom,
        T::AnySuccessStatus,
        T::EmptyError,
    ];
    let cases = cases();
    for tolerance in all {
        let covered = cases.iter().any(|case| case.needs.contains(&tolerance));
        assert!(covered, "no provider row needs {tolerance:?}");
    }
}

#[test]
fn requested_scope_fills_in_for_a_provider_that_omits_it() {
    // Cognito and Entra ID leave `scope` out; RFC 6749 §5.1 says it is then the requested one.
    let client = client_credentials::ClientCredentials::new(
        client_credentials::TokenUrl::new(
            "https://example.auth.us-east-1.amazoncognito.com/oauth2/token",
        )
        .unwrap(),
        "1example23456789",
        client_credentials::ClientSecret::new("cognito-client-secret"),
    );
    let request = client
        .token_request()
        .scope("resource-server/read resource-server/write")
        .build()
        .unwrap();
    let cognito = cases()
        .into_iter()
        .find(|case| case.provider == "Amazon Cognito")
        .unwrap();
    let token = request
        .parse_response(&response(&cognito), sent_at())
        .unwrap();
    assert_eq!(
        token.scopes().collect::<Vec<_>>(),
        ["resource-server/read", "resource-server/write"]
    );
}
