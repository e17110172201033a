//! The process-wide session registry (PROTOCOL.md §4) behind one lock, and
//! server requests addressed by session id.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::SinkExt;
use serde_json::value::RawValue;
use wirestream_proto::{
    ConnectionId, Headers, Outcome, Registered, RegistryError, RegistryLimits, ServerResponse,
};

use crate::random::OsRandom;

/// An HTTP request to forward to a client over its WebSocket (a server
/// request, PROTOCOL.md §3.2).
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
        })
    }
}

impl std::error::Error for RequestFailed {}

/// The answer to a server request, as the driver reports it.
pub(crate) type Reply = Result<ServerResponse<'static>, RequestFailed>;

pub(crate) fn reply_of(outcome: Outcome<ServerResponse<'static>>) -> Reply {
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

/// The process-wide registry of session ids (PROTOCOL.md §4): a cloneable
/// handle to one [`wirestream_proto::Registry`] behind one lock (never held
/// across an await).
///
/// Connections attach themselves when served and detach when their driver
/// ends, whatever the reason; the ids they own go with them. Look an id up
/// with [`request`](Self::request) to send its client a server request.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<wirestream_proto::Registry<Mailbox>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.lock();
        f.debug_struct("Registry")
            .field("connections", &registry.connections())
            .field("session_ids", &registry.len())
            .finish()
    }
}

impl Registry {
    /// An empty registry with these limits.
    pub fn new(limits: RegistryLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new(wirestream_proto::Registry::new(limits))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, wirestream_proto::Registry<Mailbox>> {
        // The registry's operations leave it consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the client that owns `session_id` a server request and awaits
    /// its response, its deadline, or its connection's end.
    pub async fn request(
        &self,
        session_id: &str,
        request: HttpRequest,
    ) -> Result<ServerResponse<'static>, RequestFailed> {
        let (reply, answer) = oneshot::channel();
        let outgoing = Outgoing { request, reply };
        // Usually the mailbox has room: post under the lock, without
        // waiting; otherwise wait for room on a clone, outside it.
        let full = {
            let mut registry = self.lock();
            let conn = registry
                .lookup(session_id)
                .map(|(conn, _)| conn)
                .ok_or(RequestFailed::UnknownSession)?;
            let mailbox = registry
                .get_mut(conn)
                .ok_or(RequestFailed::UnknownSession)?;
            match mailbox.try_send(outgoing) {
                Ok(()) => None,
                Err(e) if e.is_full() => Some((mailbox.clone(), e.into_inner())),
                Err(_) => return Err(RequestFailed::SessionEnded),
            }
        };
        if let Some((mut mailbox, outgoing)) = full {
            mailbox
                .send(outgoing)
                .await
                .map_err(|_| RequestFailed::SessionEnded)?;
        }
        // A driver that ends drops the request: the session ended.
        answer.await.unwrap_or(Err(RequestFailed::SessionEnded))
    }

    /// Whether a live connection owns `session_id`.
    pub fn contains(&self, session_id: &str) -> bool {
        self.lock().lookup(session_id).is_some()
    }

    /// Session ids registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is attached and no id registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Connections attached.
    pub fn connections(&self) -> usize {
        self.lock().connections()
    }

    pub(crate) fn attach(&self, mailbox: Mailbox) -> Result<Attached, RegistryError> {
        let conn = self.lock().attach(mailbox)?;
        Ok(Attached {
            registry: self.clone(),
            conn,
        })
    }

    pub(crate) fn register(
        &self,
        conn: ConnectionId,
        id: &str,
    ) -> Result<Registered, RegistryError> {
        self.lock().register(conn, id)
    }

    pub(crate) fn mint(&self, conn: ConnectionId) -> Result<String, RegistryError> {
        self.lock().mint(conn, &mut OsRandom::new())
    }

    pub(crate) fn unregister(&self, conn: ConnectionId, id: &str) -> bool {
        self.lock().unregister(conn, id)
    }
}

/// A connection's place in the registry; detaches it (and every id it still
/// owns) when dropped, so no exit path can leak an entry.
#[derive(Debug)]
pub(crate) struct Attached {
    registry: Registry,
    conn: ConnectionId,
}

impl Attached {
    pub(crate) fn id(&self) -> ConnectionId {
        self.conn
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.registry.lock().detach(self.conn);
    }
}
