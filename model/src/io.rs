//! The one place the model touches the engine's inbound and event API:
//! frames go in through [`feed_server`] / [`feed_client`], events come out
//! as the model's own values through [`server_seen`] / [`client_seen`]. When
//! the engine's `Inbound` or its events change shape, only this file moves.

use std::time::Instant;

use wirestream_proto::{
    ClientEvent, ClientRequestKind, ClientSession, CloseCode, EndReason, Inbound, Outcome,
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

fn inbound(frame: &Frame) -> Inbound<'_> {
    match frame {
        Frame::Text(t) => Inbound::Text(t),
        Frame::Binary => Inbound::Binary,
        Frame::Ping => Inbound::Ping,
        Frame::Pong => Inbound::Pong,
        Frame::Close(c) => Inbound::Close(c.map(CloseCode)),
        Frame::Oversize => Inbound::Oversize,
    }
}

/// Hands one inbound frame to a server session.
pub(crate) fn feed_server(s: &mut ServerSession, now: Instant, frame: Frame) {
    s.handle_frame(now, inbound(&frame));
}

/// Hands one inbound frame to a client session.
pub(crate) fn feed_client(s: &mut ClientSession, now: Instant, frame: Frame) {
    s.handle_frame(now, inbound(&frame));
}

/// A server event, as the model compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServerSeen {
    Body(String),
    Request { id: String, response_id: String },
    Ended { id: String, outcome: OutcomeKind },
    Writable,
    End(EndReason),
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
    NotifyEnded { id: String, outcome: NotifyEnd },
    Writable,
    End(EndReason),
}

/// The model's view of a server event.
pub(crate) fn server_seen(event: ServerEvent) -> ServerSeen {
    match event {
        ServerEvent::Body(b) => ServerSeen::Body(b),
        ServerEvent::Request(r) => ServerSeen::Request {
            id: r.id.into_owned(),
            response_id: match r.kind {
                ClientRequestKind::AgentCompletionNotify { response_id, .. } => {
                    response_id.into_owned()
                }
                other => panic!("a client request of a kind the model never sent: {other:?}"),
            },
        },
        ServerEvent::ServerRequestEnded { id, outcome } => ServerSeen::Ended {
            id,
            outcome: match outcome {
                Outcome::Answered(r) => OutcomeKind::Answered(r.status),
                Outcome::TimedOut => OutcomeKind::TimedOut,
                Outcome::SessionEnded => OutcomeKind::SessionEnded,
            },
        },
        ServerEvent::Writable => ServerSeen::Writable,
        ServerEvent::End(r) => ServerSeen::End(r),
    }
}

/// The model's view of a client event.
pub(crate) fn client_seen(event: ClientEvent) -> ClientSeen {
    match event {
        ClientEvent::Chunk(c) => ClientSeen::Chunk(c),
        ClientEvent::StreamFailed(e) => ClientSeen::StreamFailed(e.code),
        ClientEvent::ServerRequest(r) => ClientSeen::ServerRequest(r.id.into_owned()),
        ClientEvent::NotifyEnded { id, outcome } => ClientSeen::NotifyEnded {
            id,
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

/// The next server event, as the model sees it.
pub(crate) fn poll_server(s: &mut ServerSession) -> Option<ServerSeen> {
    s.poll_event().map(server_seen)
}

/// The next client event, as the model sees it.
pub(crate) fn poll_client(s: &mut ClientSession) -> Option<ClientSeen> {
    s.poll_event().map(client_seen)
}
