//! The pair harness: a client session and a server session back to back in
//! memory, on a fake clock that jumps to the earliest deadline (like
//! quinn-proto's `Pair` and h11's `ConnectionPair`).
//!
//! The pair plays the WebSocket layer too: it carries frames in order,
//! echoes a close frame the way tungstenite does, never delivers a frame
//! to a side that does not [want input](crate::ServerSession::wants_input),
//! and, like a driver, drops the connection of a side that is closed once
//! everything it sent has arrived: the other side then sees the transport
//! end. Events are collected for the test to inspect and act on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::client::{ClientEvent, ClientSession};
use crate::config::Config;
use crate::engine::Engine;
use crate::frame::{CloseCode, Inbound, Transmit};
use crate::ids::SeededRandom;
use crate::server::{ServerEvent, ServerSession};

/// A frame on the wire between the two sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WireFrame {
    Text(String),
    Ping,
    Pong,
    Close(CloseCode),
}

/// One direction of the simulated WebSocket.
#[derive(Debug, Default)]
struct Pipe {
    frames: VecDeque<WireFrame>,
    /// This direction carried a close frame: nothing more may enter it.
    closed: bool,
}

impl Pipe {
    fn send(&mut self, frame: WireFrame) {
        if !self.closed {
            self.closed = matches!(frame, WireFrame::Close(_));
            self.frames.push_back(frame);
        }
    }
}

/// Which side of a [`Pair`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client session.
    Client,
    /// The server session.
    Server,
}

/// A frame that crossed the wire, for transcripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossed {
    /// Who sent it.
    pub from: Side,
    /// The text of a text frame, or `Close(N)`.
    pub frame: String,
}

/// The pair did not go idle within the step budget of
/// [`Pair::drive_bounded`]: a livelock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pair did not go idle within its step budget")
    }
}

impl std::error::Error for Stalled {}

/// A client and a server session connected in memory.
#[derive(Debug)]
pub struct Pair {
    /// The client session.
    pub client: ClientSession,
    /// The server session.
    pub server: ServerSession,
    /// The fake clock.
    pub now: Instant,
    /// Client events not yet taken by the test.
    pub client_events: VecDeque<ClientEvent>,
    /// Server events not yet taken by the test.
    pub server_events: VecDeque<ServerEvent>,
    /// Every frame that crossed, in order.
    pub transcript: Vec<Crossed>,
    to_server: Pipe,
    to_client: Pipe,
}

impl Pair {
    /// Both sessions with `config`, the client sending `body`; nothing has
    /// moved yet.
    pub fn new(config: Config, body: &str) -> Self {
        Self::with_configs(config.clone(), config, body)
    }

    /// As [`new`](Self::new), with a config for each side (to test one
    /// side's limits against a more generous peer).
    pub fn with_configs(client: Config, server: Config, body: &str) -> Self {
        let now = Instant::now();
        let body = RawValue::from_string(body.to_owned()).unwrap_or_default();
        let client = match ClientSession::new(client, now, body, SeededRandom::new(1)) {
            Ok(client) => client,
            #[allow(clippy::panic)]
            Err(refused) => panic!("the pair's body: {refused}"),
        };
        Self {
            client,
            server: ServerSession::new(server, now, SeededRandom::new(2)),
            now,
            client_events: VecDeque::new(),
            server_events: VecDeque::new(),
            transcript: Vec::new(),
            to_server: Pipe::default(),
            to_client: Pipe::default(),
        }
    }

    /// Moves what each side queued onto the wire, then delivers what each
    /// side can take, and collects events. Returns whether anything moved.
    pub fn step(&mut self) -> bool {
        let (now, t) = (self.now, &mut self.transcript);
        let (to_server, to_client) = (&mut self.to_server, &mut self.to_client);
        let mut moved = transmit(&mut self.client, Side::Client, to_server, t);
        moved |= transmit(&mut self.server, Side::Server, to_client, t);
        moved |= deliver(
            &mut self.server,
            Side::Server,
            now,
            (to_server, to_client),
            t,
        );
        moved |= deliver(
            &mut self.client,
            Side::Client,
            now,
            (to_client, to_server),
            t,
        );
        moved |= self.drop_closed_connection();
        self.collect();
        moved
    }

    /// A driver drops the socket of a closed session once it has sent
    /// everything: the peer, if still open, sees the transport end.
    fn drop_closed_connection(&mut self) -> bool {
        let now = self.now;
        let server_gone = self.server.is_closed() && self.to_client.frames.is_empty();
        let client_gone = self.client.is_closed() && self.to_server.frames.is_empty();
        if server_gone && !self.client.is_closed() {
            self.client.handle_transport_lost(now);
            return true;
        }
        if client_gone && !self.server.is_closed() {
            self.server.handle_transport_lost(now);
            return true;
        }
        false
    }

    /// Steps until nothing moves; fails after `max_steps` steps.
    pub fn drive_bounded(&mut self, max_steps: usize) -> Result<(), Stalled> {
        for _ in 0..max_steps {
            if !self.step() {
                return Ok(());
            }
        }
        Err(Stalled)
    }

    /// [`drive_bounded`](Self::drive_bounded) with a budget of 10 000 steps,
    /// panicking on a livelock.
    pub fn drive(&mut self) {
        if let Err(e) = self.drive_bounded(10_000) {
            #[allow(clippy::panic)]
            {
                panic!("{e}: {self:?}")
            }
        }
    }

    /// The earliest deadline of either side.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.client.poll_timeout(), self.server.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Jumps the clock to the earliest deadline and hands both sides the
    /// timeout; `false` when nothing is timed.
    pub fn advance_to_next_deadline(&mut self) -> bool {
        let Some(deadline) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(deadline);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.collect();
        true
    }

    /// Moves the clock forward by `by` and hands both sides the timeout.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.collect();
    }

    /// Drives, then jumps deadlines, until both sides are closed or
    /// `max_rounds` rounds pass; returns whether both closed.
    pub fn run_to_end(&mut self, max_rounds: usize) -> bool {
        for _ in 0..max_rounds {
            self.drive();
            if self.client.is_closed() && self.server.is_closed() {
                return true;
            }
            if !self.advance_to_next_deadline() {
                return self.client.is_closed() && self.server.is_closed();
            }
        }
        false
    }

    /// Cuts the transport: both sides see it end without a close frame.
    pub fn cut(&mut self) {
        self.to_client = Pipe {
            closed: true,
            ..Pipe::default()
        };
        self.to_server = Pipe {
            closed: true,
            ..Pipe::default()
        };
        self.client.handle_transport_lost(self.now);
        self.server.handle_transport_lost(self.now);
        self.collect();
    }

    /// Puts a text frame on the wire to the server as if the client had sent
    /// it (for clients that are not this engine).
    pub fn inject_to_server(&mut self, text: &str) {
        self.transcript.push(Crossed {
            from: Side::Client,
            frame: text.to_owned(),
        });
        self.to_server.send(WireFrame::Text(text.to_owned()));
    }

    /// Puts a text frame on the wire to the client as if the server had sent
    /// it.
    pub fn inject_to_client(&mut self, text: &str) {
        self.transcript.push(Crossed {
            from: Side::Server,
            frame: text.to_owned(),
        });
        self.to_client.send(WireFrame::Text(text.to_owned()));
    }

    /// Takes the server's events so far.
    pub fn take_server_events(&mut self) -> Vec<ServerEvent> {
        self.server_events.drain(..).collect()
    }

    /// Takes the client's events so far.
    pub fn take_client_events(&mut self) -> Vec<ClientEvent> {
        self.client_events.drain(..).collect()
    }

    fn collect(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push_back(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push_back(e);
        }
    }
}

/// Moves what `engine` queued onto its outgoing pipe; whether any moved.
fn transmit<E: Engine>(engine: &mut E, from: Side, out: &mut Pipe, t: &mut Vec<Crossed>) -> bool {
    let mut moved = false;
    while let Some(frame) = engine.poll_transmit() {
        if out.closed {
            continue;
        }
        let frame = match frame {
            Transmit::Text(text) => WireFrame::Text(text),
            Transmit::Ping => WireFrame::Ping,
            Transmit::Close(code) => WireFrame::Close(code),
        };
        t.push(Crossed {
            from,
            frame: match &frame {
                WireFrame::Text(text) => text.clone(),
                WireFrame::Ping => "Ping".to_owned(),
                WireFrame::Pong => "Pong".to_owned(),
                WireFrame::Close(code) => format!("Close({code})"),
            },
        });
        out.send(frame);
        moved = true;
    }
    moved
}

/// Delivers to `engine` what its incoming pipe holds, while it wants input;
/// echoes a close frame on the way back, as the WebSocket layer does.
fn deliver<E: Engine<Text = String>>(
    engine: &mut E,
    to: Side,
    now: Instant,
    (incoming, back): (&mut Pipe, &mut Pipe),
    t: &mut Vec<Crossed>,
) -> bool {
    let mut moved = false;
    while engine.wants_input() {
        let Some(frame) = incoming.frames.pop_front() else {
            break;
        };
        moved = true;
        match frame {
            WireFrame::Text(text) => engine.handle_frame(now, Inbound::Text(text)),
            WireFrame::Pong => engine.handle_frame(now, Inbound::Pong),
            WireFrame::Ping => {
                engine.handle_frame(now, Inbound::Ping);
                // The WebSocket layer answers a ping with a pong.
                if !back.closed {
                    t.push(Crossed {
                        from: to,
                        frame: "Pong".to_owned(),
                    });
                    back.send(WireFrame::Pong);
                }
            }
            WireFrame::Close(code) => {
                engine.handle_frame(now, Inbound::Close(Some(code)));
                if !back.closed {
                    t.push(Crossed {
                        from: to,
                        frame: format!("Close({code})"),
                    });
                    back.send(WireFrame::Close(code));
                }
            }
        }
    }
    moved
}
