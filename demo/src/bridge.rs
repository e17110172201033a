//! `--serve`'s one port for two routes: the streaming endpoint (a
//! WebSocket upgrade, handed to the runtime's own handshake) and the
//! session-id bridge `POST /objectiveai-mcp/{session_id}` (PROTOCOL.md §4),
//! answered here with a minimal HTTP/1.1 exchange (one request per
//! connection), so that `curl` reaches a client streaming from this node or,
//! with `--nats`, from any node of the cluster.

use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use futures_util::future::{Either, select};
use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde_json::value::RawValue;
use wirestream_runtime::tungstenite::http::StatusCode;
use wirestream_runtime::{HttpRequest, Registry, ResponseError, Runtime};

/// The bridge's route, up to the session id.
pub const BRIDGE_PREFIX: &str = "/objectiveai-mcp/";

/// The largest request head read (as the runtime's handshake).
const MAX_HEAD: usize = 16 << 10;

/// Headers that belong to one HTTP connection, not to the message.
const HOP_BY_HOP: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// What the first bytes of a connection asked for.
pub(crate) enum Route<S> {
    /// Anything but the bridge: the stream, with what was read of it.
    Endpoint(Prefixed<S>),
    /// The bridge; answered.
    Bridged,
}

/// Reads the head of the first request on `stream` (within `deadline`);
/// answers a bridge call with `registry` (bodies of at most `max_body`
/// bytes), hands anything else back with the bytes already read.
pub(crate) async fn route<R: Runtime, S>(
    rt: &R,
    mut stream: S,
    registry: &Registry,
    max_body: usize,
    deadline: std::time::Instant,
) -> io::Result<Route<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let head_end = {
        let read = pin!(read_head(&mut stream, &mut buf));
        match select(read, pin!(rt.sleep_until(deadline))).await {
            Either::Left((read, _)) => read?,
            Either::Right(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    };
    let is_bridge = head_end.is_some_and(|end| {
        let head = String::from_utf8_lossy(&buf[..end]);
        head.starts_with(&format!("POST {BRIDGE_PREFIX}"))
    });
    let Some(end) = head_end.filter(|_| is_bridge) else {
        return Ok(Route::Endpoint(Prefixed::new(buf, stream)));
    };
    let (status, body) = match bridge(&mut stream, &buf, end, registry, max_body).await {
        Ok(answer) => answer,
        Err(refused) => refused,
    };
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    let _ = stream.close().await;
    Ok(Route::Bridged)
}

/// Reads until the end of the head (`\r\n\r\n`): its length, or `None` if
/// the peer stopped or the head is over [`MAX_HEAD`] (the runtime's
/// handshake answers those).
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let mut chunk = [0; 2048];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(at + 4));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

type Answer = (u16, String);

/// An error frame with `status` as its code.
fn refused(status: u16, message: &str) -> Answer {
    let frame = serde_json::to_string(&ResponseError::new(status, message)).unwrap_or_default();
    (status, frame)
}

/// Forwards the bridge call whose head is `buf[..end]` to the client that
/// owns its session id, and returns the answer's status and JSON body.
async fn bridge<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &[u8],
    end: usize,
    registry: &Registry,
    max_body: usize,
) -> Result<Answer, Answer> {
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| refused(400, "the head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .ok_or_else(|| refused(400, "no request line"))?;
    let session_id = target
        .strip_prefix(BRIDGE_PREFIX)
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refused(404, "no session id in the path"))?;
    let mut request = HttpRequest::new("POST");
    let mut length = 0;
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| refused(400, "a header without a colon"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value
                .parse::<usize>()
                .map_err(|_| refused(400, "a bad content-length"))?;
        }
        if !HOP_BY_HOP.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    if length > max_body {
        return Err(refused(
            413,
            &format!("the body is over the limit of {max_body} bytes"),
        ));
    }
    let mut body = buf[end..].to_vec();
    body.truncate(length);
    let mut rest = vec![0; length - body.len()];
    stream
        .read_exact(&mut rest)
        .await
        .map_err(|_| refused(400, "the body ended early"))?;
    body.extend_from_slice(&rest);
    if !body.is_empty() {
        let json = serde_json::from_slice::<Box<RawValue>>(&body)
            .map_err(|e| refused(400, &format!("the body is not JSON: {e}")))?;
        request = request.raw_body(json);
    }
    match registry.request(session_id, request).await {
        Ok(response) => Ok((
            response.status().unwrap_or(502),
            response.body().unwrap_or("null").to_owned(),
        )),
        Err(failed) => Err(refused(failed.http_status(), &failed.to_string())),
    }
}

/// A stream whose first bytes were already read: they are read again
/// first.
pub(crate) struct Prefixed<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(read: Vec<u8>, inner: S) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = out.len().min(this.read.len() - this.at);
            out[..n].copy_from_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
