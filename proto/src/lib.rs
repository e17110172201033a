//! The sans-IO engine of wirestream: the streaming JSON protocol of the
//! ObjectiveAI API (PROTOCOL.md) as plain values.
//!
//! A session takes inbound frames and the current time, and hands back
//! frames to send, events for the application and its next deadline. It
//! never touches a socket, a clock, a task or a lock, so every ordering,
//! timeout and limit rule lives here and is tested in microseconds. The
//! `wirestream-tokio` and `wirestream-smol` crates drive it over real
//! WebSockets; drive it yourself to run the protocol over your own I/O, or
//! to test an application without a network.
//!
//! [`ServerSession`] and [`ClientSession`] have four method groups:
//!
//! - **getters**: [`phase`](ServerSession::phase),
//!   [`queued_frames`](ServerSession::queued_frames), counters of requests
//!   in flight, [`config`](ServerSession::config);
//! - **what arrived** ([`Engine`]): [`handle_frame`](Engine::handle_frame)
//!   (an [`Inbound`] WebSocket message, its text taken by value),
//!   [`handle_timeout`](Engine::handle_timeout),
//!   [`handle_transport_lost`](Engine::handle_transport_lost);
//! - **commands**, what the application decides (inherent methods): server
//!   [`send_chunk`](ServerSession::send_chunk),
//!   [`finish`](ServerSession::finish), [`fail`](ServerSession::fail),
//!   [`reject_body`](ServerSession::reject_body),
//!   [`respond`](ServerSession::respond),
//!   [`send_server_request`](ServerSession::send_server_request),
//!   [`go_away`](ServerSession::go_away); client
//!   [`notify`](ClientSession::notify), [`respond`](ClientSession::respond),
//!   [`close`](ClientSession::close). The application's mistakes come back
//!   as an [`Error`] and change nothing;
//! - **what it produced** ([`Engine`]):
//!   [`poll_transmit`](Engine::poll_transmit) (frames to send, in order),
//!   [`poll_event`](Engine::poll_event) ([`ServerEvent`] /
//!   [`ClientEvent`] for the application),
//!   [`poll_timeout`](Engine::poll_timeout) (the one deadline to arm).
//!
//! **The drain rule**: after any `handle_*` or command, drain the polls:
//! send every frame `poll_transmit` yields, take every event, then arm one
//! timer at `poll_timeout` and call `handle_timeout` when it fires. Stop
//! reading while [`wants_input`](Engine::wants_input) is false; drop the
//! transport once [`is_closed`](Engine::is_closed) and nothing is left to
//! send. Time is always an argument and ids come from a [`RandomSource`]
//! the caller supplies ([`SeededRandom`] in tests), so a session is
//! deterministic.
//!
//! A server session fed its body frame, streaming one chunk and finishing:
//!
//! ```
//! use std::time::Instant;
//! use wirestream_proto::{Config, Engine, Inbound, SeededRandom, ServerEvent, ServerSession, Transmit};
//!
//! let now = Instant::now();
//! let mut server: ServerSession = ServerSession::new(Config::default(), now, SeededRandom::new(7));
//! server.handle_frame(now, Inbound::Text(r#"{"messages":[]}"#.to_owned()));
//! assert_eq!(server.poll_event(), Some(ServerEvent::Body(r#"{"messages":[]}"#.into())));
//! let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk"});
//! server.send_chunk_value(now, &chunk, ["agc-1"]).unwrap();
//! server.finish(now).unwrap();
//! assert!(matches!(server.poll_transmit(), Some(Transmit::Text(_))));
//! assert_eq!(server.poll_transmit(), Some(Transmit::Close(wirestream_proto::CloseCode::NORMAL)));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod classify;
mod client;
mod config;
mod core;
mod emitted;
mod engine;
mod error;
mod frame;
mod fx;
mod ids;
mod queue;
mod received;
mod registry;
mod requests;
mod scan;
mod server;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;
pub mod wire;

pub use client::{ClientEvent, ClientSession};
pub use config::Config;
pub use core::Phase;
pub use engine::Engine;
pub use error::{Error, Outcome, Refused, RequestError};
pub use frame::{CloseCode, EndReason, Inbound, Transmit};
pub use ids::{RandomSource, SeededRandom, mint_id};
pub use received::{
    HeaderPairs, ReceivedHttp, ReceivedRequest, ReceivedResponse, ReceivedServerRequest,
    RequestKind,
};
pub use registry::{ConnectionId, Registered, Registry, RegistryError, RegistryLimits};
pub use server::{ServerEvent, ServerSession};
pub use stats::Stats;
pub use transport::{Transport, body_wants_stream, select_transport, wants_websocket};
pub use wire::{
    ClientRequest, ClientRequestKind, ClientResponse, Headers, Json, ResponseError, ServerRequest,
    ServerResponse,
};
