//! The bodies of the cargo-fuzz targets.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is a one-line wrapper around the
//! function of the same name here, so that `cargo test` (on stable) replays
//! the committed corpus through exactly the code the fuzzer ran.

// A fuzz body exists to panic at the first broken invariant.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use wirestream_proto::{
    ClientSession, Config, Engine, SeededRandom, ServerSession, Stats, Transmit,
};

use crate::io::{ClientSeen, Frame, ServerSeen, feed, poll};
use crate::oracle::{self, AtClient, AtServer};
use crate::{
    ClientScenario, PairScenario, RegistryScenario, ServerScenario, run_client, run_pair,
    run_registry, run_server,
};

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
/// layer only delivers UTF-8), handed to a streaming server session and to
/// a client session: what each engine does with it (its reply, its events,
/// its counters) must be what the [`oracle`] reads the frame as, and
/// neither engine may panic.
pub fn classify(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let now = Instant::now();

    let body = r#"{"messages":[]}"#;
    let mut server: ServerSession =
        ServerSession::new(Config::default(), now, SeededRandom::new(1));
    feed(&mut server, now, Frame::Text(body.to_owned()));
    assert_eq!(poll(&mut server), Some(ServerSeen::Body(body.to_owned())));
    feed(&mut server, now, Frame::Text(text.clone()));
    let sent: Vec<Transmit> = std::iter::from_fn(|| server.poll_transmit()).collect();
    let events: Vec<ServerSeen> = std::iter::from_fn(|| poll(&mut server)).collect();
    let mut stats = Stats::default();
    let verdict = oracle::at_server(&text);
    let reply = match &verdict {
        AtServer::Junk => {
            stats.junk_frames = 1;
            None
        }
        AtServer::Response { .. } => {
            stats.unknown_responses = 1;
            None
        }
        AtServer::BadRequest { id } => {
            stats.refused_requests = 1;
            Some((id.clone(), 400, None))
        }
        AtServer::Notify {
            id, response_id, ..
        } => {
            stats.refused_requests = 1;
            let response_id = oracle::echoed(response_id);
            let message = format!("response_id {response_id:?} not from this stream");
            Some((id.clone(), 404, Some(message)))
        }
    };
    let what = format!("the server, given {text:?} ({verdict:?})");
    assert_eq!(events, [], "{what}: events");
    assert_eq!(server.stats(), stats, "{what}: counters");
    match (reply, sent.as_slice()) {
        (None, []) => {}
        (Some((id, code, message)), [Transmit::Text(t)]) => match oracle::at_client(t) {
            AtClient::Error {
                id: got,
                code: got_code,
                message: got_message,
            } => {
                assert_eq!((got, got_code), (id, code), "{what}: reply {t}");
                if let Some(m) = message {
                    assert_eq!(
                        got_message,
                        serde_json::Value::String(m),
                        "{what}: reply {t}"
                    );
                }
            }
            other => panic!("{what}: replied {t} ({other:?})"),
        },
        (reply, sent) => panic!("{what}: sent {sent:?}, expected a reply {reply:?}"),
    }

    let mut client: ClientSession =
        ClientSession::new(Config::default(), now, Box::default(), SeededRandom::new(2))
            .expect("`null` is a body that fits");
    feed(&mut client, now, Frame::Text(text.clone()));
    let events: Vec<ClientSeen> = std::iter::from_fn(|| poll(&mut client)).collect();
    let mut stats = Stats::default();
    let verdict = oracle::at_client(&text);
    let expected = match &verdict {
        AtClient::Junk => {
            stats.junk_frames = 1;
            vec![]
        }
        AtClient::Ok { .. } | AtClient::Error { .. } => {
            stats.unknown_responses = 1;
            vec![]
        }
        AtClient::Request { id, .. } => vec![ClientSeen::ServerRequest(id.clone())],
        AtClient::ErrorFrame { code, .. } => vec![ClientSeen::StreamFailed(*code)],
        AtClient::Chunk => {
            stats.chunks = 1;
            vec![ClientSeen::Chunk(text.clone())]
        }
    };
    let what = format!("the client, given {text:?} ({verdict:?})");
    assert_eq!(events, expected, "{what}: events");
    assert_eq!(client.stats(), stats, "{what}: counters");
    // Only the body goes out (server requests wait for the application).
    assert_eq!(
        std::iter::from_fn(|| client.poll_transmit()).count(),
        1,
        "{what}: frames sent"
    );
}

/// A server session run decoded from the input (see [`run_server`]).
pub fn server_session(data: &[u8]) {
    if let Ok(mut s) = ServerScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_server(&s);
    }
}

/// A client session run decoded from the input (see
/// [`crate::run_client`]).
pub fn client_session(data: &[u8]) {
    if let Ok(mut s) = ClientScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_client(&s);
    }
}

/// A registry run decoded from the input (see
/// [`crate::run_registry`]).
pub fn registry(data: &[u8]) {
    if let Ok(mut s) = RegistryScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_registry(&s);
    }
}

/// Both engines through the pair harness, on an interleaving decoded from
/// the input (see [`crate::run_pair`]).
pub fn pair(data: &[u8]) {
    if let Ok(mut s) = PairScenario::arbitrary_take_rest(Unstructured::new(data)) {
        s.ops.truncate(MAX_OPS);
        run_pair(&s);
    }
}
