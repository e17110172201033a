//! Transcript tests of liveness (PROTOCOL.md §5): the keepalive ping, the
//! silent peer and the write stall, for both roles, each at its limit and
//! one past it, on a fake clock.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use wirestream_proto::testing::{Pair, Side};
use wirestream_proto::{
    ClientEvent, ClientSession, CloseCode, Config, EndReason, Engine, Error, Headers, Inbound,
    Outcome, SeededRandom, ServerEvent, ServerSession, Transmit,
};

const NS: Duration = Duration::from_nanos(1);
const PING: Duration = Duration::from_secs(30);
const SILENT: Duration = Duration::from_secs(45);
const STALL: Duration = Duration::from_secs(30);

fn render(t: Transmit) -> String {
    match t {
        Transmit::Text(t) => t,
        Transmit::Ping => "Ping".to_owned(),
        Transmit::Close(c) => format!("Close({c})"),
    }
}

fn out<E: Engine>(e: &mut E) -> Vec<String> {
    std::iter::from_fn(|| e.poll_transmit())
        .map(render)
        .collect()
}

fn events<E: Engine>(e: &mut E) -> Vec<E::Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// A server that has its body and has sent nothing yet, at `t0`.
fn streaming_server(config: Config, t0: Instant) -> ServerSession {
    let mut s = ServerSession::new(config, t0, SeededRandom::new(1));
    s.handle_frame(t0, Inbound::Text("{}".to_owned()));
    assert_eq!(events(&mut s), [ServerEvent::Body("{}".to_owned())]);
    s
}

fn client(config: Config, t0: Instant) -> ClientSession {
    let body = RawValue::from_string("{}".to_owned()).unwrap();
    let mut c = ClientSession::new(config, t0, body, SeededRandom::new(2)).unwrap();
    assert_eq!(out(&mut c), ["{}"]);
    c
}

// ---- keepalive ----

#[test]
fn keepalive_ping_goes_out_after_the_interval_without_inbound_frames() {
    let t0 = Instant::now();
    let mut s = streaming_server(Config::default(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + PING));
    s.handle_timeout(t0 + PING - NS);
    assert!(out(&mut s).is_empty(), "not one nanosecond early");
    s.handle_timeout(t0 + PING);
    assert_eq!(out(&mut s), ["Ping"]);
    assert!(events(&mut s).is_empty());
    // Still silent: again one interval later, and the liveness deadline
    // comes first after that.
    assert_eq!(s.poll_timeout(), Some(t0 + SILENT));
    s.handle_timeout(t0 + SILENT - NS);
    assert!(out(&mut s).is_empty());
}

#[test]
fn any_inbound_frame_postpones_the_keepalive() {
    let t0 = Instant::now();
    let mut s = streaming_server(Config::default(), t0);
    let t1 = t0 + Duration::from_secs(20);
    s.handle_frame(t1, Inbound::Pong);
    assert_eq!(s.poll_timeout(), Some(t1 + PING));
    s.handle_timeout(t0 + PING);
    assert!(out(&mut s).is_empty());
}

#[test]
fn keepalive_repeats_every_interval_while_the_peer_is_silent() {
    let t0 = Instant::now();
    let mut config = Config::default();
    config.liveness_timeout = None;
    let mut s = streaming_server(config, t0);
    for n in 1..=3 {
        let due = t0 + PING * n;
        assert_eq!(s.poll_timeout(), Some(due));
        s.handle_timeout(due);
        assert_eq!(out(&mut s), ["Ping"], "ping {n}");
    }
}

#[test]
fn none_turns_the_keepalive_and_the_liveness_off() {
    let t0 = Instant::now();
    let mut config = Config::default();
    config.ping_interval = None;
    config.liveness_timeout = None;
    let mut s = streaming_server(config, t0);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(out(&mut s).is_empty() && events(&mut s).is_empty());
}

// ---- a silent peer ----

#[test]
fn silent_peer_is_dropped_at_the_liveness_timeout_with_a_best_effort_close_1008() {
    let t0 = Instant::now();
    let mut config = Config::default();
    config.ping_interval = None;
    let mut s: ServerSession<String, u8> = ServerSession::new(config, t0, SeededRandom::new(1));
    s.handle_frame(t0, Inbound::Text("{}".to_owned()));
    let _body = events(&mut s);
    let id = s
        .send_server_request(t0, "GET", &Headers::new(), None, Some(SILENT * 2), 7)
        .unwrap();
    s.send_chunk_value(t0, &serde_json::json!({"id": "agc-1"}), ["agc-1"])
        .unwrap();
    assert_eq!(out(&mut s).len(), 2, "the request and the chunk");
    assert_eq!(s.poll_timeout(), Some(t0 + SILENT));
    s.handle_timeout(t0 + SILENT - NS);
    assert!(out(&mut s).is_empty() && events(&mut s).is_empty());
    s.send_chunk_value(t0 + SILENT - NS, &1, ["agc-1"]).unwrap();
    s.handle_timeout(t0 + SILENT);
    assert_eq!(
        out(&mut s),
        ["Close(1008)"],
        "what was still queued is given up; the close is the last frame"
    );
    assert_eq!(
        events(&mut s),
        [
            ServerEvent::ServerRequestEnded {
                id,
                token: 7,
                outcome: Outcome::SessionEnded
            },
            ServerEvent::End(EndReason::PeerSilent)
        ]
    );
    assert!(s.is_closed(), "dropped without waiting for the handshake");
    assert_eq!(s.poll_timeout(), None);
    assert!(matches!(
        s.send_chunk_value(t0 + SILENT, &1, ["agc-1"]),
        Err(Error::Closed)
    ));
    assert_eq!(EndReason::PeerSilent.code(), CloseCode::POLICY);
}

#[test]
fn a_busy_peer_is_never_declared_dead() {
    let t0 = Instant::now();
    let mut s = streaming_server(Config::default(), t0);
    let mut now = t0;
    for _ in 0..20 {
        now += Duration::from_secs(29);
        // Any frame counts, not only pongs: here unknown junk.
        s.handle_frame(now, Inbound::Text("[1]".to_owned()));
        s.handle_timeout(now);
        assert!(out(&mut s).is_empty());
    }
    assert!(events(&mut s).is_empty());
    assert!(!s.is_closed());
}

#[test]
fn silent_server_is_dropped_by_the_client_and_its_notifies_end() {
    let t0 = Instant::now();
    let mut c: ClientSession<String, char> = ClientSession::new(
        Config::default(),
        t0,
        RawValue::from_string("{}".to_owned()).unwrap(),
        SeededRandom::new(2),
    )
    .unwrap();
    let content = RawValue::from_string(r#""x""#.to_owned()).unwrap();
    let id = c
        .notify(t0, "agc-1", &content, Some(SILENT * 2), 'n')
        .unwrap();
    assert_eq!(out(&mut c).len(), 2);
    c.handle_timeout(t0 + PING);
    assert_eq!(out(&mut c), ["Ping"]);
    c.handle_timeout(t0 + SILENT - NS);
    assert!(out(&mut c).is_empty() && events(&mut c).is_empty());
    c.handle_timeout(t0 + SILENT);
    assert_eq!(out(&mut c), ["Close(1008)"]);
    assert_eq!(
        events(&mut c),
        [
            ClientEvent::NotifyEnded {
                id,
                token: 'n',
                outcome: Outcome::SessionEnded
            },
            ClientEvent::End(EndReason::PeerSilent)
        ]
    );
    assert!(c.is_closed());
}

#[test]
fn a_listening_peer_answers_the_keepalive_and_stays_alive() {
    let mut p = Pair::new(Config::default(), "{}");
    p.drive();
    let _ = p.take_server_events();
    // Neither side has anything to say for ten minutes: each pings, each
    // peer's WebSocket layer answers, and nobody is declared dead.
    let end = p.now + Duration::from_secs(600);
    while p.next_deadline().is_some_and(|d| d <= end) {
        p.advance_to_next_deadline();
        p.drive();
    }
    assert!(!p.server.is_closed() && !p.client.is_closed());
    assert!(p.take_server_events().is_empty() && p.take_client_events().is_empty());
    let pongs = p
        .transcript
        .iter()
        .filter(|c| c.frame == "Pong" && c.from == Side::Client)
        .count();
    assert!(pongs >= 19, "the client answered every ping: {pongs}");
}

// ---- a peer that reads nothing ----

fn small_queue() -> Config {
    let mut config = Config::default();
    config.max_queued_frames = 2;
    config.ping_interval = None;
    config.liveness_timeout = None;
    config
}

#[test]
fn write_stall_ends_the_session_when_the_queue_stays_full() {
    let t0 = Instant::now();
    let mut s = streaming_server(small_queue(), t0);
    s.send_chunk_value(t0, &1, ["agc-1"]).unwrap();
    s.send_chunk_value(t0, &2, ["agc-1"]).unwrap();
    assert!(matches!(
        s.send_chunk_value(t0, &3, ["agc-1"]),
        Err(Error::Full)
    ));
    assert!(!s.wants_input());
    assert_eq!(s.poll_timeout(), Some(t0 + STALL));
    s.handle_timeout(t0 + STALL - NS);
    assert!(events(&mut s).is_empty());
    s.handle_timeout(t0 + STALL);
    assert_eq!(events(&mut s), [ServerEvent::End(EndReason::WriteStalled)]);
    assert!(s.is_closed());
    assert_eq!(s.queued_frames(), 0, "its memory is freed");
    assert!(
        out(&mut s).is_empty(),
        "a peer that reads nothing gets nothing more"
    );
    assert!(matches!(
        s.send_chunk_value(t0 + STALL, &3, ["agc-1"]),
        Err(Error::Closed)
    ));
    assert_eq!(EndReason::WriteStalled.code(), CloseCode::ABNORMAL);
}

#[test]
fn a_queue_that_drains_stops_the_write_stall_clock() {
    let t0 = Instant::now();
    let mut s = streaming_server(small_queue(), t0);
    s.send_chunk_value(t0, &1, ["agc-1"]).unwrap();
    s.send_chunk_value(t0, &2, ["agc-1"]).unwrap();
    assert!(s.send_chunk_value(t0, &3, ["agc-1"]).is_err());
    let t1 = t0 + STALL - NS;
    assert_eq!(out(&mut s).len(), 2, "the peer read just in time");
    assert_eq!(events(&mut s), [ServerEvent::Writable]);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + STALL);
    assert!(events(&mut s).is_empty());
    // Full again: the clock starts over from then.
    s.send_chunk_value(t1, &4, ["agc-1"]).unwrap();
    s.send_chunk_value(t1, &5, ["agc-1"]).unwrap();
    assert_eq!(s.poll_timeout(), Some(t1 + STALL));
}

#[test]
fn client_whose_server_reads_nothing_is_ended_at_the_write_stall() {
    let t0 = Instant::now();
    let mut c: ClientSession = client(small_queue(), t0);
    let content = RawValue::from_string(r#""x""#.to_owned()).unwrap();
    let long = Some(STALL * 2);
    c.notify(t0, "agc-1", &content, long, ()).unwrap();
    c.notify(t0, "agc-1", &content, long, ()).unwrap();
    let refused = c.notify(t0, "agc-1", &content, long, ()).unwrap_err();
    assert!(matches!(refused.error, Error::Full));
    c.handle_timeout(t0 + STALL - NS);
    assert!(!c.is_closed());
    c.handle_timeout(t0 + STALL);
    let events = events(&mut c);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::End(EndReason::WriteStalled))
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(
                e,
                ClientEvent::NotifyEnded {
                    outcome: Outcome::SessionEnded,
                    ..
                }
            ))
            .count(),
        2
    );
    assert!(c.is_closed() && c.queued_frames() == 0);
}
