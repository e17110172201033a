//! The one place the model touches the engine's inbound and event API:
//! frames go in through [`feed`], events come out as the model's own values
//! through [`poll`] (or [`Observe::seen`]). Both are generic over the
//! engine's [`Engine`] trait, so every executor drives either role the same
//! way. When the engine's `Inbound` or its events change shape, only this
//! file moves.

use std::fmt::Debug;
use std::time::Instant;

use wirestream_proto::{
    ClientEvent, ClientSession, CloseCode, EndReason, Engine, Inbound, Outcome, RequestKind,
    ServerEvent, ServerSession,
};

use crate::OutcomeKind;

/// An inbound WebSocket message, owned by the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Text(String),
    Binary,
    Ping,
    Pong,
    /// The peer's close frame, with its code if it had one.
    Close(Option<u16>),
    /// A message the WebSocket layer refused as too large.
    Oversize,
}

fn inbound(frame: Frame) -> Inbound<String> {
    match frame {
        Frame::Text(t) => Inbound::Text(t),
        Frame::Binary => Inbound::Binary,
        Frame::Ping => Inbound::Ping,
        Frame::Pong => Inbound::Pong,
        Frame::Close(c) => Inbound::Close(c.map(CloseCode)),
        Frame::Oversize => Inbound::Oversize,
    }
}

/// Hands one inbound frame to a session of either role (its text moved in).
pub(crate) fn feed<E: Engine<Text = String>>(s: &mut E, now: Instant, frame: Frame) {
    s.handle_frame(now, inbound(frame));
}

/// An application token, as the model compares it: the executors send each
/// request with a distinct `u64`; the pair harness's sessions take `()`.
pub(crate) trait Token {
    fn number(&self) -> u64;
}

impl Token for u64 {
    fn number(&self) -> u64 {
        *self
    }
}

impl Token for () {
    fn number(&self) -> u64 {
        0
    }
}

/// What every model event says that the shared checks look at.
pub(crate) trait Seen: Debug + PartialEq {
    /// A request this side sent ended: its id and token.
    fn request_ended(&self) -> Option<(&str, u64)>;
    /// The session ended.
    fn end(&self) -> Option<EndReason>;
}

/// A session whose events the model can read, whichever its role.
pub(crate) trait Observe: Engine {
    /// The event as the model compares it.
    type Seen: Seen;
    /// The model's view of an event.
    fn seen(event: Self::Event) -> Self::Seen;
}

/// The next event of a session, as the model sees it.
pub(crate) fn poll<E: Observe>(s: &mut E) -> Option<E::Seen> {
    s.poll_event().map(E::seen)
}

/// A server event, as the model compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServerSeen {
    Body(String),
    Request {
        id: String,
        response_id: String,
    },
    Ended {
        id: String,
        token: u64,
        outcome: OutcomeKind,
    },
    Writable,
    End(EndReason),
}

impl Seen for ServerSeen {
    fn request_ended(&self) -> Option<(&str, u64)> {
        match self {
            Self::Ended { id, token, .. } => Some((id, *token)),
            _ => None,
        }
    }
    fn end(&self) -> Option<EndReason> {
        match self {
            Self::End(r) => Some(*r),
            _ => None,
        }
    }
}

/// How a notify ended, as the model compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NotifyEnd {
    Ok,
    Err(u16),
    TimedOut,
    SessionEnded,
}

/// A client event, as the model compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientSeen {
    Chunk(String),
    StreamFailed(u16),
    ServerRequest(String),
    NotifyEnded {
        id: String,
        token: u64,
        outcome: NotifyEnd,
    },
    Writable,
    End(EndReason),
}

impl Seen for ClientSeen {
    fn request_ended(&self) -> Option<(&str, u64)> {
        match self {
            Self::NotifyEnded { id, token, .. } => Some((id, *token)),
            _ => None,
        }
    }
    fn end(&self) -> Option<EndReason> {
        match self {
            Self::End(r) => Some(*r),
            _ => None,
        }
    }
}

impl<K: Token> Observe for ServerSession<String, K> {
    type Seen = ServerSeen;

    fn seen(event: ServerEvent<String, K>) -> ServerSeen {
        match event {
            ServerEvent::Body(b) => ServerSeen::Body(b),
            ServerEvent::Request(r) => {
                let RequestKind::AgentCompletionNotify { response_id, .. } = r.kind() else {
                    panic!("a client request of a kind the model never sent: {r:?}");
                };
                ServerSeen::Request {
                    id: r.id().to_owned(),
                    response_id: response_id.to_owned(),
                }
            }
            ServerEvent::ServerRequestEnded { id, token, outcome } => ServerSeen::Ended {
                id,
                token: token.number(),
                outcome: match outcome {
                    Outcome::Answered(r) => {
                        OutcomeKind::Answered(r.status().expect("a server response has a status"))
                    }
                    Outcome::TimedOut => OutcomeKind::TimedOut,
                    Outcome::SessionEnded => OutcomeKind::SessionEnded,
                },
            },
            ServerEvent::Writable => ServerSeen::Writable,
            ServerEvent::End(r) => ServerSeen::End(r),
        }
    }
}

impl<K: Token> Observe for ClientSession<String, K> {
    type Seen = ClientSeen;

    fn seen(event: ClientEvent<String, K>) -> ClientSeen {
        match event {
            ClientEvent::Chunk(c) => ClientSeen::Chunk(c),
            ClientEvent::StreamFailed(e) => ClientSeen::StreamFailed(e.code),
            ClientEvent::ServerRequest(r) => ClientSeen::ServerRequest(r.id().to_owned()),
            ClientEvent::NotifyEnded { id, token, outcome } => ClientSeen::NotifyEnded {
                id,
                token: token.number(),
                outcome: match outcome {
                    Outcome::Answered(Ok(())) => NotifyEnd::Ok,
                    Outcome::Answered(Err(e)) => NotifyEnd::Err(e.code),
                    Outcome::TimedOut => NotifyEnd::TimedOut,
                    Outcome::SessionEnded => NotifyEnd::SessionEnded,
                },
            },
            ClientEvent::Writable => ClientSeen::Writable,
            ClientEvent::End(r) => ClientSeen::End(r),
        }
    }
}
