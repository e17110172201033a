//! The bodies of the cargo-fuzz targets (feature `arbitrary`).
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is a one-line wrapper around the
//! function of the same name here, so that `cargo test` (on stable) replays
//! the committed corpus through exactly the code the fuzzer ran.

// A fuzz body exists to panic at the first broken invariant.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};

use super::model::{
    ClientScenario, PairScenario, RegistryScenario, ServerScenario, run_client, run_pair,
    run_registry, run_server,
};
use crate::classify::{ClientFrame, ServerFrame, classify_client, classify_server};
use crate::client::ClientSession;
use crate::config::Config;
use crate::frame::Inbound;
use crate::ids::SeededRandom;
use crate::server::ServerSession;

/// The most operations one input is decoded into: longer runs find little
/// more and slow the fuzzer down.
pub const MAX_OPS: usize = 256;

/// The names of the targets, as in `fuzz/fuzz_targets/` and
/// `fuzz/corpus/`.
pub const TARGETS: [&str; 5] = [
    "classify",
    "server_session",
    "client_session",
    "registry",
    "pair",
];

/// Runs target `name` on one input.
///
/// # Panics
/// On an unknown name, and wherever the target's body panics.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "classify" => classify(data),
        "server_session" => server_session(data),
        "client_session" => client_session(data),
        "registry" => registry(data),
        "pair" => pair(data),
        _ => panic!("no fuzz target named {name}"),
    }
}

/// Any bytes as an inbound text frame (lossily made UTF-8, as the WebSocket
/// layer only delivers UTF-8): each classification is either dropped or
/// round-trips through its own serialization, and neither engine panics on
/// the frame.
pub fn classify(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = &*text;
    match classify_server(text) {
        ServerFrame::Junk => {}
        ServerFrame::BadRequest { .. } => super::model::assert_json(text),
        ServerFrame::Request(r) => {
            super::model::assert_json(text);
            let again = serde_json::to_string(&r).unwrap();
            assert_eq!(classify_server(&again), ServerFrame::Request(r), "{again}");
        }
        ServerFrame::Response(r) => {
            super::model::assert_json(text);
            let again = serde_json::to_string(&r).unwrap();
            assert_eq!(classify_server(&again), ServerFrame::Response(r), "{again}");
        }
    }
    match classify_client(text) {
        ClientFrame::Junk => {}
        ClientFrame::Chunk => {
            super::model::assert_json(text);
            assert!(
                text.trim_start_matches([' ', '\t', '\n', '\r'])
                    .starts_with('{'),
                "a chunk is a JSON object: {text}"
            );
        }
        ClientFrame::Response(r) => {
            let again = serde_json::to_string(&r).unwrap();
            assert_eq!(classify_client(&again), ClientFrame::Response(r), "{again}");
        }
        ClientFrame::Request(r) => {
            let again = serde_json::to_string(&r).unwrap();
            assert_eq!(classify_client(&again), ClientFrame::Request(r), "{again}");
        }
        ClientFrame::Error(e) => {
            let again = serde_json::to_string(&e).unwrap();
            assert_eq!(classify_client(&again), ClientFrame::Error(e), "{again}");
        }
    }
    let now = Instant::now();
    let mut server = ServerSession::new(Config::default(), now, SeededRandom::new(1));
    server.handle_frame(now, Inbound::Text(r#"{"messages":[]}"#));
    server.handle_frame(now, Inbound::Text(text));
    while server.poll_transmit().is_some() || server.poll_event().is_some() {}
    let mut client = ClientSession::new(Config::default(), Box::default(), SeededRandom::new(2));
    client.handle_frame(now, Inbound::Text(text));
    while client.poll_transmit().is_some() || client.poll_event().is_some() {}
}

/// A server session run decoded from the input (see
/// [`super::model::run_server`]).
pub fn server_session(data: &[u8]) {
    if let Ok(mut s) = ServerScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_server(&s);
    }
}

/// A client session run decoded from the input (see
/// [`super::model::run_client`]).
pub fn client_session(data: &[u8]) {
    if let Ok(mut s) = ClientScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_client(&s);
    }
}

/// A registry run decoded from the input (see
/// [`super::model::run_registry`]).
pub fn registry(data: &[u8]) {
    if let Ok(mut s) = RegistryScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_registry(&s);
    }
}

/// Both engines through the pair harness, on an interleaving decoded from
/// the input (see [`super::model::run_pair`]).
pub fn pair(data: &[u8]) {
    if let Ok(mut s) = PairScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_pair(&s);
    }
}
