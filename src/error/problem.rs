//! What is wrong with a success response that is not a usable token response.

use std::fmt;

/// What is wrong with a success response that is not a usable token.
///
/// None of these ever quotes the body, which may hold a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// The body is neither JSON nor, where tolerated, a form.
    NotJson {
        /// The `Content-Type` header, sanitized.
        content_type: Option<String>,
    },
    /// The body is JSON, or claims to be, but could not be read.
    InvalidJson {
        /// What the JSON reader reported, without quoting the body.
        reason: &'static str,
        /// The line where reading stopped (1-based).
        line: usize,
        /// The column where reading stopped (1-based).
        column: usize,
    },
    /// A member the parser reads has a value of the wrong kind.
    InvalidMember {
        /// The member's name.
        name: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A member appears twice, so which one applies is ambiguous.
    DuplicateMember(&'static str),
    /// There is no `access_token` (RFC 6749 §5.1: REQUIRED).
    MissingAccessToken,
    /// There is no `token_type` (RFC 6749 §5.1: REQUIRED), and the rules are strict.
    MissingTokenType,
    /// `expires_in` is negative.
    NegativeExpiresIn,
    /// The status is a success other than 200 (RFC 6749 §5.1), and the rules are strict.
    UnexpectedSuccessStatus,
    /// The media type is not `application/json` (RFC 6749 §5.1), and the rules are strict.
    UnexpectedContentType {
        /// The `Content-Type` header, sanitized.
        content_type: Option<String>,
    },
}

impl fmt::Display for ResponseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson { content_type } => write!(
                f,
                "the body is not json (content type {})",
                content_type.as_deref().unwrap_or("absent")
            ),
            Self::InvalidJson {
                reason,
                line,
                column,
            } => write!(
                f,
                "the json is invalid at line {line} column {column}: {reason}"
            ),
            Self::InvalidMember { name, expected } => {
                write!(f, "`{name}` is not {expected}")
            }
            Self::DuplicateMember(name) => write!(f, "`{name}` appears more than once"),
            Self::MissingAccessToken => f.write_str("there is no `access_token`"),
            Self::MissingTokenType => f.write_str("there is no `token_type`"),
            Self::NegativeExpiresIn => f.write_str("`expires_in` is negative"),
            Self::UnexpectedSuccessStatus => {
                f.write_str("the status is not 200 and the response rules are strict")
            }
            Self::UnexpectedContentType { content_type } => write!(
                f,
                "the content type is {} rather than application/json and the response rules are strict",
                content_type.as_deref().unwrap_or("absent")
            ),
        }
    }
}
