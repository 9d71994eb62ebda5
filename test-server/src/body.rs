//! The bodies of the test server's responses: small ones in one piece, large or slow ones streamed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::Value;

/// Why a request body was not read.
pub(super) enum BodyError {
    /// Over the limit, by its `Content-Length` or as it was read.
    TooLarge,
    /// The connection failed while the body was read.
    Unreadable,
}

/// Reads a request body, at most `limit` bytes of it: a larger declared length is refused
/// before a byte is read.
pub(super) async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared_len = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = response(
        status,
        Some("application/json"),
        ResponseBody::full(body.to_string()),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    response(
        status,
        Some("text/plain; charset=utf-8"),
        ResponseBody::full(format!("{text}\n")),
    )
}

pub(super) fn html(status: StatusCode, page: &str) -> Response<ResponseBody> {
    response(
        status,
        Some("text/html; charset=utf-8"),
        ResponseBody::full(page.to_owned()),
    )
}

pub(super) fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Filler for [`Fault::OversizedBody`], sent in slices of this static buffer.
pub(super) static FILLER: [u8; 16 * 1024] = [b'a'; 16 * 1024];

pub(super) const OVERSIZED_START: &[u8] = br#"{"access_token":""#;

pub(super) const OVERSIZED_END: &[u8] = br#"","token_type":"Bearer"}"#;

/// The token response [`Fault::TrickleBody`] sends, byte by byte.
pub(super) const TRICKLED_TOKEN: &[u8] =
    br#"{"access_token":"trickled-token","token_type":"Bearer","expires_in":3600}"#;

/// The server's response bodies: whole, streamed filler, cut short, or trickled.
pub(super) enum ResponseBody {
    Full(Option<Bytes>),
    /// `start`, then `filler` bytes of filler, then `end`.
    Oversized {
        start: Option<Bytes>,
        filler: usize,
        end: Option<Bytes>,
    },
    /// Sends its bytes, lets hyper flush them, then fails, which makes hyper close the
    /// connection mid-body.
    Truncated {
        data: Option<Bytes>,
        flushed: bool,
    },
    /// `data`, one byte each time `wait` ends; `wait` restarts for `interval` after each.
    Trickle {
        data: Bytes,
        wait: Pin<Box<tokio::time::Sleep>>,
        interval: Duration,
    },
}

impl ResponseBody {
    pub(super) fn empty() -> Self {
        Self::Full(None)
    }

    fn full(text: String) -> Self {
        Self::Full(Some(Bytes::from(text)))
    }

    pub(super) fn trickle(data: Bytes, interval: Duration) -> Self {
        Self::Trickle {
            data,
            wait: Box::pin(tokio::time::sleep(interval)),
            interval,
        }
    }

    pub(super) fn oversized(len: usize) -> Self {
        let framing = OVERSIZED_START.len() + OVERSIZED_END.len();
        if len >= framing {
            Self::Oversized {
                start: Some(Bytes::from_static(OVERSIZED_START)),
                filler: len - framing,
                end: Some(Bytes::from_static(OVERSIZED_END)),
            }
        } else {
            Self::Oversized {
                start: None,
                filler: len,
                end: None,
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let data = |bytes| Poll::Ready(Some(Ok(Frame::data(bytes))));
        match self.get_mut() {
            Self::Full(bytes) => bytes.take().map_or(Poll::Ready(None), data),
            Self::Oversized { start, filler, end } => {
                if let Some(start) = start.take() {
                    return data(start);
                }
                if *filler > 0 {
                    let n = (*filler).min(FILLER.len());
                    *filler -= n;
                    return data(Bytes::from_static(&FILLER[..n]));
                }
                end.take().map_or(Poll::Ready(None), data)
            }
            Self::Truncated {
                data: bytes,
                flushed,
            } => {
                if let Some(bytes) = bytes.take() {
                    return data(bytes);
                }
                if !*flushed {
                    // Pending once, so that hyper writes out the head and the bytes so far
                    // before the error makes it drop the connection.
                    *flushed = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(io::Error::other(
                    "closing the connection mid-body, as the fault asks",
                ))))
            }
            Self::Trickle {
                data: bytes,
                wait,
                interval,
            } => {
                if bytes.is_empty() {
                    return Poll::Ready(None);
                }
                std::task::ready!(wait.as_mut().poll(cx));
                let deadline = tokio::time::Instant::now() + *interval;
                wait.as_mut().reset(deadline);
                data(bytes.split_to(1))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Oversized { start, filler, end } => {
                start.is_none() && *filler == 0 && end.is_none()
            }
            Self::Truncated { .. } => false,
            Self::Trickle { data, .. } => data.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len) as u64;
        match self {
            Self::Full(bytes) => SizeHint::with_exact(len(bytes)),
            Self::Oversized { start, filler, end } => {
                SizeHint::with_exact(len(start) + *filler as u64 + len(end))
            }
            // Unknown, so that hyper sends the `Content-Length` header as set.
            Self::Truncated { .. } => SizeHint::default(),
            Self::Trickle { data, .. } => SizeHint::with_exact(data.len() as u64),
        }
    }
}
