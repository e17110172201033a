//! What crosses the WebSocket, as the engine sees it.

use std::fmt;

/// A WebSocket close code (RFC 6455 §7.4; PROTOCOL.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the stream finished normally.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the server is going away (graceful shutdown).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the WebSocket protocol (RFC 6455 §7.4.1): an
    /// unmasked client frame, a reserved opcode or RSV bit, an oversize
    /// control frame, a stray continuation, a malformed close frame.
    pub const PROTOCOL: Self = Self(1002);
    /// 1003: the body frame could not be used (bad JSON, binary).
    pub const UNSUPPORTED: Self = Self(1003);
    /// 1005: never sent; how a close frame that carried no code is reported.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: never sent; how a transport that died without a close is reported.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text frame or a close reason was not valid UTF-8.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: the body did not arrive in time, or the peer fell silent.
    pub const POLICY: Self = Self(1008);
    /// 1009: a frame was over the size limit.
    pub const TOO_BIG: Self = Self(1009);
    /// 1011: the stream could not be created, or failed.
    pub const INTERNAL: Self = Self(1011);
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An inbound WebSocket message, as the transport delivered it.
///
/// The session takes the text of a text frame by value: any owned text
/// (`T: AsRef<str>`) works, a `String` or a cheaply cloned shared buffer
/// such as tungstenite's `Utf8Bytes`, and the events hand out views into it
/// instead of copies of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<T = String> {
    /// A text frame (a whole message).
    Text(T),
    /// A binary frame; it carries no meaning in this protocol.
    Binary,
    /// Liveness only; the WebSocket layer answers it.
    Ping,
    /// Liveness only.
    Pong,
    /// The peer's close frame, with its code if it had one.
    Close(Option<CloseCode>),
    /// A message the WebSocket layer refused for exceeding its size limit
    /// (set it to [`Config::max_frame_size`](crate::Config::max_frame_size)).
    Oversize,
    /// The WebSocket layer could not read the peer's frames and will read no
    /// more: a protocol violation ([`CloseCode::PROTOCOL`]) or text that is
    /// not UTF-8 ([`CloseCode::INVALID_PAYLOAD`]). The session closes with
    /// this code (and nothing else) and ends as
    /// [`EndReason::Local`] with it; the transport should stop reading.
    ProtocolError(CloseCode),
}

/// A frame for the transport to send, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A text frame holding one JSON value.
    Text(String),
    /// A keepalive ping (empty payload); the peer's WebSocket layer answers
    /// it with a pong.
    Ping,
    /// The close frame; nothing follows it.
    Close(CloseCode),
}

impl Transmit {
    /// The bytes this frame counts against the outbound queue's limit.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Ping | Self::Close(_) => 2,
        }
    }

    /// Whether this is an empty text frame (never produced by the engine).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Text(t) if t.is_empty())
    }

    /// The text, if this is a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Ping | Self::Close(_) => None,
        }
    }
}

/// How a session ended; reported exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// This side sent the close frame with this code.
    Local(CloseCode),
    /// The peer sent a close frame first (with its code, if any).
    Peer(Option<CloseCode>),
    /// The transport ended without a close frame (reported as 1006).
    TransportLost,
    /// The peer sent nothing for [`Config::liveness_timeout`](crate::Config::liveness_timeout):
    /// this side sent a best-effort `Close(1008)` and dropped the
    /// connection (reported as 1008).
    PeerSilent,
    /// The outbound queue stayed full for
    /// [`Config::write_stall_timeout`](crate::Config::write_stall_timeout):
    /// the peer reads nothing, and the connection was dropped (reported as
    /// 1006).
    WriteStalled,
}

impl EndReason {
    /// The close code that describes the end (1006 when the transport died,
    /// 1005 when the peer's close carried no code).
    pub fn code(self) -> CloseCode {
        match self {
            Self::Local(c) | Self::Peer(Some(c)) => c,
            Self::Peer(None) => CloseCode::NO_STATUS,
            Self::TransportLost | Self::WriteStalled => CloseCode::ABNORMAL,
            Self::PeerSilent => CloseCode::POLICY,
        }
    }
}
