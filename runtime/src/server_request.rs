//! Server requests (PROTOCOL.md §3.2): the HTTP request a server forwards to
//! its client, the client's response, why one fails, and how a request
//! reaches the driver of the connection it is addressed to.

use std::fmt;
use std::time::Duration;

use async_tungstenite::tungstenite::Utf8Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::SinkExt;
use serde_json::value::RawValue;
use wirestream_proto::{Headers, Outcome};

/// An HTTP request to forward to a client over its WebSocket (a server
/// request, PROTOCOL.md §3.2).
///
/// ```
/// use std::time::Duration;
/// use wirestream_runtime::HttpRequest;
///
/// let request = HttpRequest::new("POST")
///     .header("content-type", "application/json")
///     .json(&serde_json::json!({"query": "wirestream"}))?
///     .timeout(Duration::from_secs(10));
/// assert_eq!(request.method, "POST");
/// assert_eq!(request.body.as_deref().map(|b| b.get()), Some(r#"{"query":"wirestream"}"#));
/// // Send it with `Session::request` or `Registry::request`.
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    /// The HTTP method.
    pub method: String,
    /// Headers in order (omitted on the wire when empty).
    pub headers: Headers<'static>,
    /// Any JSON (omitted on the wire when `None`).
    pub body: Option<Box<RawValue>>,
    /// The deadline; `None` takes the session's
    /// [`Config::request_timeout`](wirestream_proto::Config::request_timeout).
    pub timeout: Option<Duration>,
}

impl HttpRequest {
    /// A request with `method`, no headers and no body.
    pub fn new(method: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            ..Self::default()
        }
    }

    /// Sets the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

crate::http::http_message_builders!(HttpRequest);

/// Why a server request got no response.
///
/// ```
/// use wirestream_runtime::RequestFailed;
///
/// assert_eq!(RequestFailed::UnknownSession.http_status(), 503);
/// assert_eq!(RequestFailed::TimedOut.http_status(), 504);
/// assert_eq!(RequestFailed::SessionEnded.to_string(), "the connection ended before the client answered");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailed {
    /// No live connection owns the session id (HTTP bridge: `503`).
    UnknownSession,
    /// The request's deadline passed first (HTTP bridge: `504`).
    TimedOut,
    /// The connection ended first: the client closed or vanished, or the
    /// stream had already finished (HTTP bridge: `502`).
    SessionEnded,
    /// The session has as many server requests pending as its config allows
    /// (HTTP bridge: `429`).
    TooManyRequests,
    /// The body is larger than the session's frame size limit (HTTP bridge:
    /// `413`).
    TooLarge,
    /// This session has no WebSocket (it is served over SSE or as one JSON
    /// response), so nothing can be asked of its client (HTTP bridge: `501`).
    NotConnected,
    /// The server is shutting down: the session was closed with
    /// `Close(1001)` at the end of the shutdown grace before the client
    /// answered (HTTP bridge: `503`, try again elsewhere).
    ShuttingDown,
}

impl RequestFailed {
    /// The HTTP status an HTTP bridge answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownSession => 503,
            Self::TimedOut => 504,
            Self::SessionEnded => 502,
            Self::TooManyRequests => 429,
            Self::TooLarge => 413,
            Self::NotConnected => 501,
            Self::ShuttingDown => 503,
        }
    }
}

impl fmt::Display for RequestFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownSession => "no live connection owns this session id",
            Self::TimedOut => "the client did not answer in time",
            Self::SessionEnded => "the connection ended before the client answered",
            Self::TooManyRequests => "too many server requests pending on this session",
            Self::TooLarge => "the request is over the frame size limit",
            Self::NotConnected => "this session has no WebSocket to the client",
            Self::ShuttingDown => "the server is shutting down",
        })
    }
}

impl std::error::Error for RequestFailed {}

/// The answer to a server request, as the driver reports it.
pub(crate) type Reply = Result<Response, RequestFailed>;

/// A client's response to a server request, as it arrived: the frame's
/// text, with its status, headers and body read in place (no copy).
///
/// ```no_run
/// # use wirestream_runtime::{HttpRequest, RequestFailed, Session};
/// # async fn example(session: Session) -> Result<(), RequestFailed> {
/// let response = session.request(HttpRequest::new("GET")).await?;
/// println!(
///     "{:?} {:?} {:?}",
///     response.status(),                // Some(200)
///     response.header("content-type"),  // in any case
///     response.body(),                  // the body's JSON text, as it arrived
/// );
/// # Ok(()) }
/// ```
pub type Response = wirestream_proto::ReceivedResponse<Utf8Bytes>;

/// A server request, as a client received it: the frame's text, with its
/// method, headers and body read in place (no copy).
///
/// ```no_run
/// use wirestream_runtime::{Client, HttpResponse, IncomingServerRequest, Runtime};
///
/// async fn answer(request: IncomingServerRequest) -> HttpResponse {
///     match (request.method(), request.body()) {
///         (Some("POST"), Some(body)) => HttpResponse::new(200)
///             .json(&serde_json::json!({"echo": body}))
///             .unwrap_or_else(|_| HttpResponse::new(500)),
///         _ => HttpResponse::new(405),
///     }
/// }
///
/// fn client<R: Runtime>(rt: R) -> Client<R> {
///     Client::new(rt, "ws://127.0.0.1:8080/agent/completions").on_server_request(answer)
/// }
/// ```
pub type IncomingServerRequest = wirestream_proto::ReceivedServerRequest<Utf8Bytes>;

pub(crate) fn reply_of(outcome: Outcome<Response>) -> Reply {
    match outcome {
        Outcome::Answered(response) => Ok(response),
        Outcome::TimedOut => Err(RequestFailed::TimedOut),
        Outcome::SessionEnded => Err(RequestFailed::SessionEnded),
    }
}

/// A server request on its way to a connection's driver.
pub(crate) struct Outgoing {
    pub(crate) request: HttpRequest,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// How to reach a connection's driver.
pub(crate) type Mailbox = mpsc::Sender<Outgoing>;

/// Server requests waiting for a driver to take them, per connection.
pub(crate) const MAILBOX: usize = 8;

/// Sends `request` to the driver behind `mailbox` and awaits its end.
pub(crate) async fn ask(mut mailbox: Mailbox, request: HttpRequest) -> Reply {
    let (reply, answer) = oneshot::channel();
    mailbox
        .send(Outgoing { request, reply })
        .await
        .map_err(|_| RequestFailed::SessionEnded)?;
    // A driver that ends drops the request: the session ended.
    answer.await.unwrap_or(Err(RequestFailed::SessionEnded))
}

/// An HTTP response to a server request (PROTOCOL.md §3.2).
///
/// ```
/// use wirestream_runtime::HttpResponse;
///
/// let response = HttpResponse::new(200)
///     .header("content-type", "application/json")
///     .json(&serde_json::json!({"ok": true}))?;
/// assert_eq!(response.status, 200);
/// assert_eq!(response.headers.get("Content-Type"), Some("application/json"));
/// // What a `Client::on_server_request` handler returns.
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// Headers in order (omitted on the wire when empty).
    pub headers: Headers<'static>,
    /// Any JSON (omitted on the wire when `None`).
    pub body: Option<Box<RawValue>>,
}

impl HttpResponse {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

crate::http::http_message_builders!(HttpResponse);
