//! Logs and metrics of the runtime (the engine itself never logs: it
//! reports through events and [`Stats`], which the driver turns into these).
//!
//! # Logs
//!
//! Through the [`tracing`] facade, under the targets `wirestream::server`
//! (the bridge's requests included) and `wirestream::client`, so that
//! `RUST_LOG=wirestream=debug` (with `tracing-subscriber`'s `EnvFilter`)
//! shows each session's life:
//!
//! | what | level |
//! | --- | --- |
//! | span `connection` per connection: `id` (process-wide), `role` (`server`/`client`), `url` (client); a server's `listen` wraps it in a span `accepted` with the `peer` address | info |
//! | span `request` per server request: `kind` (`server_request`), `direction` `out` around [`Registry::request`](crate::Registry::request) and [`Session::request`](crate::Session::request) (`bridge`: which), `in` with its `id` around a client's handler (notifies get events, not spans) | debug |
//! | `closed`: `code`, `reason` (the [`EndReason`]) and the engine's [`Stats`] | debug for 1000/1001, info otherwise |
//! | `refused`: `status` and `what` (handshake refusals, a full registry, a body that does not parse, an oversize frame, a server's error answers to client requests, by the engine or the handler; a client's own `429`s and `501`s) | debug, warn for 5xx |
//! | `timed out`: `kind` (`handshake`, `body`, `drain`, `request`, `liveness`, `write_stall`) and `code` | info, warn for `liveness` and `write_stall` |
//! | `handler panicked` | error |
//! | client and server requests: received, sent, answered, refused | debug |
//! | each frame in and out: `direction`, `len` | trace only |
//!
//! Session ids are never logged (they are bearer secrets); request ids
//! and completion ids are.
//!
//! # Metrics
//!
//! With the feature `metrics` (forwarded by `wirestream-tokio` and
//! `wirestream-smol`), through the `metrics`
//! facade: the application installs a recorder (an exporter). Without the
//! feature nothing of `metrics` is compiled.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `wirestream_connections_open` | gauge | `role` | connections whose driver is running |
//! | `wirestream_session_ids` | gauge | | session ids registered, over every registry of the process |
//! | `wirestream_frames_total` | counter | `role`, `direction` | WebSocket messages read (`in`) and handed to the socket (`out`) |
//! | `wirestream_frame_bytes_total` | counter | `role`, `direction` | their payload bytes |
//! | `wirestream_refusals_total` | counter | `role`, `status` | refusals, as logged (`refused`) |
//! | `wirestream_timeouts_total` | counter | `role`, `kind` | timeouts, as logged (`timed out`) |
//! | `wirestream_sessions_ended_total` | counter | `role`, `code` | connections ended, by close code (1006: transport lost or write stall) |
//! | `wirestream_handler_panics_total` | counter | `role` | handlers that panicked |
//! | `wirestream_bridge_requests_total` | counter | `result` | [`Registry::request`](crate::Registry::request) outcomes: `answered`, `unknown_session`, `timed_out`, `session_ended`, `too_many_requests`, `too_large`, `not_connected` |
//! | `wirestream_server_request_duration_seconds` | histogram | `result` | a server request's latency, from the request to its outcome ([`Registry::request`](crate::Registry::request) and [`Session::request`](crate::Session::request)) |

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use async_tungstenite::tungstenite::Message;
use tracing::{Instrument, Span};
use wirestream_proto::ClientResponse;
use wirestream_proto::classify::{ClientFrame, classify_client};
use wirestream_proto::{CloseCode, EndReason, Stats};

use crate::server_request::{Reply, RequestFailed};

/// Emits a `tracing` event at `$level` under the target of `$role`.
macro_rules! event {
    ($role:expr, $level:ident, $($arg:tt)+) => {
        match $role {
            $crate::telemetry::Role::Server => {
                ::tracing::$level!(target: "wirestream::server", $($arg)+)
            }
            $crate::telemetry::Role::Client => {
                ::tracing::$level!(target: "wirestream::client", $($arg)+)
            }
        }
    };
}

/// Which side of a connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

impl Role {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// What ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// The WebSocket handshake took longer than the body timeout.
    Handshake,
    /// No body frame within the body timeout (`408`, `Close(1008)`).
    Body,
    /// Client requests still unanswered at the drain timeout (`504`s,
    /// `Close(1000)`).
    Drain,
    /// A server request or a notify got no answer in time (`504` at the
    /// bridge).
    Request,
    /// The peer sent nothing for the liveness timeout (1008).
    Liveness,
    /// The outbound queue stayed full for the write-stall timeout (1006).
    WriteStall,
}

impl Timeout {
    fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Body => "body",
            Self::Drain => "drain",
            Self::Request => "request",
            Self::Liveness => "liveness",
            Self::WriteStall => "write_stall",
        }
    }
}

/// Connection ids, process-wide, for the `connection` spans.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The span of one connection (a client's names its `url`).
pub(crate) fn connection_span(role: Role, url: Option<&str>) -> Span {
    let id = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    match role {
        Role::Server => {
            tracing::info_span!(target: "wirestream::server", "connection", id, role = "server")
        }
        Role::Client => tracing::info_span!(
            target: "wirestream::client",
            "connection",
            id,
            role = "client",
            url = url.unwrap_or_default()
        ),
    }
}

/// Runs a server's `listen` for one accepted connection in a span that
/// names the peer.
pub(crate) fn accepted<F: Future>(
    peer: std::net::SocketAddr,
    future: F,
) -> impl Future<Output = F::Output> {
    future.instrument(tracing::info_span!(target: "wirestream::server", "accepted", %peer))
}

/// Counts a connection open while it lives (the `wirestream_connections_open`
/// gauge).
pub(crate) struct Open {
    #[cfg(feature = "metrics")]
    role: Role,
}

impl Open {
    pub(crate) fn new(role: Role) -> Self {
        #[cfg(feature = "metrics")]
        metrics::gauge!("wirestream_connections_open", "role" => role.as_str()).increment(1.0);
        let _ = role;
        Self {
            #[cfg(feature = "metrics")]
            role,
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("wirestream_connections_open", "role" => self.role.as_str()).decrement(1.0);
    }
}

/// Which timeout, if any, ended a session: `by_timer` says the input that
/// raised the end was the engine's deadline.
pub(crate) fn timeout_of(role: Role, end: EndReason, by_timer: bool) -> Option<Timeout> {
    match end {
        EndReason::PeerSilent => Some(Timeout::Liveness),
        EndReason::WriteStalled => Some(Timeout::WriteStall),
        // The server closes on its own deadline only when the body is late
        // (1008) or the drain is over (1000).
        EndReason::Local(CloseCode::POLICY) if by_timer && role == Role::Server => {
            Some(Timeout::Body)
        }
        EndReason::Local(CloseCode::NORMAL) if by_timer && role == Role::Server => {
            Some(Timeout::Drain)
        }
        _ => None,
    }
}

/// A connection ended: the close event with the engine's counters, and the
/// timeout that ended it, if one did.
pub(crate) fn ended(role: Role, end: EndReason, stats: &Stats, timeout: Option<Timeout>) {
    let code = end.code();
    if let Some(kind) = timeout {
        timed_out(role, kind, code.0);
    }
    let normal = matches!(code.0, 1000 | 1001);
    macro_rules! closed {
        ($level:ident) => {
            event!(
                role,
                $level,
                code = code.0,
                reason = ?end,
                junk_frames = stats.junk_frames,
                binary_frames = stats.binary_frames,
                unknown_responses = stats.unknown_responses,
                refused_requests = stats.refused_requests,
                chunks = stats.chunks,
                forgotten_ids = stats.forgotten_ids,
                "closed"
            )
        };
    }
    if normal {
        closed!(debug);
    } else {
        closed!(info);
    }
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "wirestream_sessions_ended_total",
        "role" => role.as_str(),
        "code" => code.0.to_string()
    )
    .increment(1);
}

/// Something timed out; `code` is the close code or status it ended with.
pub(crate) fn timed_out(role: Role, kind: Timeout, code: u16) {
    match kind {
        Timeout::Liveness | Timeout::WriteStall => {
            event!(role, warn, kind = kind.as_str(), code, "timed out");
        }
        _ => event!(role, info, kind = kind.as_str(), code, "timed out"),
    }
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "wirestream_timeouts_total",
        "role" => role.as_str(),
        "kind" => kind.as_str()
    )
    .increment(1);
}

/// Something was refused with `status`; `what` says what.
pub(crate) fn refused(role: Role, status: u16, what: &'static str) {
    if status >= 500 {
        event!(role, warn, status, what, "refused");
    } else {
        event!(role, debug, status, what, "refused");
    }
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "wirestream_refusals_total",
        "role" => role.as_str(),
        "status" => status.to_string()
    )
    .increment(1);
}

/// A handler panicked (its stream fails, or its request is answered, with
/// `500`).
pub(crate) fn handler_panicked(role: Role) {
    event!(role, error, "handler panicked");
    #[cfg(feature = "metrics")]
    metrics::counter!("wirestream_handler_panics_total", "role" => role.as_str()).increment(1);
}

/// What crossed one connection's socket: the `trace` event of each frame,
/// the refusals read from outbound frames, and (feature `metrics`) the
/// frame and byte counts, added to the counters in batches.
#[derive(Default)]
pub(crate) struct Traffic {
    /// A client engine's refusals already reported.
    refused: u64,
    #[cfg(feature = "metrics")]
    counts: [(u64, u64); 2],
    /// The counters of frames and bytes, in and out, looked up once per
    /// connection (a lookup hashes the name and labels) at its first flush:
    /// a recorder installed later counts the connections opened after it.
    #[cfg(feature = "metrics")]
    counters: Option<[(metrics::Counter, metrics::Counter); 2]>,
}

/// `{"type":"error"` begins every error answer a server sends to a client
/// request (the engine writes `type` first), so other frames are not
/// classified. A chunk shaped exactly like an error answer is counted too,
/// as the client reads it as one.
const ERROR_REPLY: &str = r#"{"type":"error","#;

impl Traffic {
    /// A message read from the socket.
    pub(crate) fn inbound(&mut self, role: Role, message: &Message) {
        event!(role, trace, direction = "in", len = message.len(), "frame");
        #[cfg(feature = "metrics")]
        {
            self.counts[0].0 += 1;
            self.counts[0].1 += message.len() as u64;
        }
    }

    /// A message handed to the socket; a server's error answer to a client
    /// request is a refusal.
    pub(crate) fn outbound(&mut self, role: Role, message: &Message) {
        event!(role, trace, direction = "out", len = message.len(), "frame");
        #[cfg(feature = "metrics")]
        {
            self.counts[1].0 += 1;
            self.counts[1].1 += message.len() as u64;
        }
        if role == Role::Server
            && let Message::Text(text) = message
            && text.starts_with(ERROR_REPLY)
            && let ClientFrame::Response(ClientResponse::Error { code, .. }) = classify_client(text)
        {
            refused(role, code, "client request");
        }
    }

    /// A client engine's count of server requests it refused (`429`) itself.
    pub(crate) fn engine_refusals(&mut self, role: Role, refused_requests: u64) {
        while self.refused < refused_requests {
            self.refused += 1;
            refused(role, 429, "server request");
        }
    }

    /// Adds the counts so far to the counters.
    pub(crate) fn flush(&mut self, role: Role) {
        let _ = role;
        #[cfg(feature = "metrics")]
        {
            if self.counts == [(0, 0); 2] {
                return;
            }
            let counters = self.counters.get_or_insert_with(|| {
                ["in", "out"].map(|direction| {
                    let role = role.as_str();
                    (
                        metrics::counter!("wirestream_frames_total", "role" => role, "direction" => direction),
                        metrics::counter!("wirestream_frame_bytes_total", "role" => role, "direction" => direction),
                    )
                })
            });
            for ((frames, bytes), (frame_counter, byte_counter)) in
                self.counts.iter_mut().zip(counters.iter())
            {
                if *frames > 0 {
                    frame_counter.increment(std::mem::take(frames));
                    byte_counter.increment(std::mem::take(bytes));
                }
            }
        }
    }
}

/// A server request (`bridge`: through [`Registry::request`](crate::Registry::request)),
/// in its `request` span; logs and counts its outcome.
pub(crate) async fn server_request<F>(bridge: bool, request: F) -> Reply
where
    F: Future<Output = Reply>,
{
    let span = tracing::debug_span!(
        target: "wirestream::server",
        "request",
        kind = "server_request",
        direction = "out",
        bridge
    );
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let reply = request.instrument(span.clone()).await;
    let result = result_of(&reply);
    span.in_scope(|| match &reply {
        Ok(response) => tracing::debug!(
            target: "wirestream::server",
            status = response.status().unwrap_or_default(),
            "server request answered"
        ),
        Err(e) => {
            tracing::debug!(target: "wirestream::server", result, "server request failed: {e}")
        }
    });
    #[cfg(feature = "metrics")]
    {
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("wirestream_server_request_duration_seconds", "result" => result)
            .record(seconds);
        if bridge {
            metrics::counter!("wirestream_bridge_requests_total", "result" => result).increment(1);
        }
    }
    let _ = (bridge, result);
    reply
}

/// The `result` label of a server request's outcome.
fn result_of(reply: &Reply) -> &'static str {
    match reply {
        Ok(_) => "answered",
        Err(RequestFailed::UnknownSession) => "unknown_session",
        Err(RequestFailed::TimedOut) => "timed_out",
        Err(RequestFailed::SessionEnded) => "session_ended",
        Err(RequestFailed::TooManyRequests) => "too_many_requests",
        Err(RequestFailed::TooLarge) => "too_large",
        Err(RequestFailed::NotConnected) => "not_connected",
        Err(RequestFailed::ShuttingDown) => "shutting_down",
    }
}

/// The span of a request that runs as a future.
pub(crate) fn request_span(
    role: Role,
    kind: &'static str,
    direction: &'static str,
    id: &str,
) -> Span {
    match role {
        Role::Server => {
            tracing::debug_span!(target: "wirestream::server", "request", kind, direction, id = %id)
        }
        Role::Client => {
            tracing::debug_span!(target: "wirestream::client", "request", kind, direction, id = %id)
        }
    }
}

/// The `wirestream_session_ids` gauge follows a registry's count of ids
/// from `before` to `after`.
pub(crate) fn session_ids(before: usize, after: usize) {
    #[cfg(feature = "metrics")]
    if after != before {
        let gauge = metrics::gauge!("wirestream_session_ids");
        if after > before {
            gauge.increment((after - before) as f64);
        } else {
            gauge.decrement((before - after) as f64);
        }
    }
    let _ = (before, after);
}
