//! Response bodies (a whole buffer or a channel fed by a producer task) and
//! bounded request-body reading.
use super::MAX_BODY_BYTES;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a client may take to send a body once its headers are in.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What every route answers with. A streaming body ends when its producer
/// drops the sender; dropping the body (client gone) stops the producer's
/// next send.
pub(crate) enum ApiBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ApiBody::Channel(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ApiBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ApiBody::Full(None) => SizeHint::with_exact(0),
            ApiBody::Channel(_) => SizeHint::default(),
        }
    }
}

pub(crate) type Resp = Response<ApiBody>;

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(ApiBody::Full(Some(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(v) => with_type(status, "application/json", Bytes::from(v)),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encode the response: {e}"),
        ),
    }
}

pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    with_type(status, content_type, Bytes::from(body))
}

/// `{"error": "...", "status": N}`, the shape of every failure.
pub(crate) fn error(status: StatusCode, message: &str) -> Resp {
    let v = serde_json::json!({ "error": message, "status": status.as_u16() });
    with_type(status, "application/json", Bytes::from(v.to_string()))
}

pub(crate) fn method_not_allowed(allow: &str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(ALLOW, v);
    }
    r
}

pub(crate) fn stream(content_type: &'static str, rx: mpsc::Receiver<Bytes>) -> Resp {
    let mut r = Response::new(ApiBody::Channel(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Read a request body of at most [`MAX_BODY_BYTES`]: a larger declared
/// Content-Length is refused before reading a byte, and a chunked body is
/// cut off as soon as it passes the limit.
pub(crate) async fn read_bounded(req: hyper::Request<Incoming>) -> Result<Bytes, Resp> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("read the request body: {e}"),
        )),
    }
}

fn too_large() -> Resp {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}
