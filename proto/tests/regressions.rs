//! Regression tests for what the property tests and the fuzzers found: one
//! named test per finding, each stating how it was found.

use std::time::{Duration, Instant};

use wirestream_proto::{
    CloseCode, Config, EndReason, Engine, SeededRandom, ServerEvent, ServerSession, Transmit,
};

/// Found by the pair property (`Advance(Millis(0))` with every limit at its
/// minimum): a body timeout that fires with `close_timeout = 0` moved the
/// session to `Closing` with a deadline equal to `now`, so right after
/// `handle_timeout(now)` the next deadline was not later than `now` and a
/// driver would spin (DESIGN.md, "Timers are data").
#[test]
fn zero_close_timeout_after_a_body_timeout_still_leaves_the_next_deadline_after_now() {
    let mut config = Config::default();
    config.body_timeout = Duration::ZERO;
    config.close_timeout = Duration::ZERO;
    let now = Instant::now();
    let mut s: ServerSession = ServerSession::new(config, now, SeededRandom::new(1));
    assert_eq!(
        s.poll_timeout(),
        Some(now),
        "the body timeout is due at once"
    );
    s.handle_timeout(now);
    let frames: Vec<Transmit> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(
        frames,
        [
            Transmit::Text(r#"{"code":408,"message":"no body frame within 0 ms"}"#.into()),
            Transmit::Close(CloseCode::POLICY)
        ],
        "the error and the close frame are sent before the session gives up"
    );
    assert_eq!(
        s.poll_event(),
        Some(ServerEvent::End(EndReason::Local(CloseCode::POLICY)))
    );
    let next = s.poll_timeout().expect("the close timeout is armed");
    assert!(next > now, "{next:?} is not later than {now:?}");
    s.handle_timeout(next);
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
}

/// Found by the pair property (`ServerFail` then `Advance(Millis(1))`, every
/// limit at its minimum): the server failed before the body and its close
/// timeout ran out before the pair moved a frame, so it closed without
/// sending anything, and the client waited forever. The engines were right
/// (a closed server drops its socket); the pair harness now does what a
/// driver does and drops the connection of a closed side once everything it
/// sent has arrived, so the client sees the transport end.
#[test]
fn pair_client_sees_the_transport_end_when_the_server_closed_without_sending() {
    use wirestream_proto::testing::Pair;
    use wirestream_proto::{ClientEvent, ResponseError};

    let mut config = Config::default();
    config.close_timeout = Duration::from_millis(1);
    let mut p = Pair::new(config, r#"{"messages":[]}"#);
    let now = p.now;
    p.server
        .fail(now, &ResponseError::new(500, "setup failed"))
        .unwrap();
    p.advance(Duration::from_millis(1));
    assert!(p.server.is_closed(), "the close timeout ended the server");
    assert!(p.run_to_end(10), "both sides end");
    assert_eq!(
        p.take_client_events(),
        [ClientEvent::End(EndReason::TransportLost)]
    );
    assert!(
        p.transcript.iter().all(|c| c.frame.starts_with('{')),
        "only the client's body crossed: {:?}",
        p.transcript
    );
}

/// Found by the model's independent oracle: a value no rule can use (a
/// number beyond `f64`, a lone surrogate escape) under a key the rules read
/// made the whole frame junk, where PROTOCOL.md §3.3 classifies it by the
/// keys that do matter.
#[test]
fn unusable_values_under_envelope_keys_do_not_make_a_frame_junk() {
    use wirestream_proto::classify::{ClientFrame, ServerFrame, classify_client, classify_server};
    for chunk in [
        r#"{"id":"x","status":1e999}"#,
        r#"{"id":"\ud800","status":200}"#,
    ] {
        assert_eq!(classify_client(chunk), ClientFrame::Chunk, "{chunk}");
    }
    let response = r#"{"id":"x","status":200,"code":1e999}"#;
    assert!(matches!(
        classify_server(response),
        ServerFrame::Response(_)
    ));
    // A server request whose headers are not a map of strings is still
    // malformed, not a chunk: dropped and counted, as before.
    let malformed = r#"{"id":"x","method":"GET","headers":{"a":1e999}}"#;
    assert_eq!(classify_client(malformed), ClientFrame::Junk);
}

/// Found by the model's server property (`max_queued_frames` 1, a 1 ns
/// keepalive, no write-stall timeout, a peer that reads nothing): every
/// keepalive deadline queued one more ping behind the ones the peer had not
/// read, so the outbound queue grew with how long the peer stayed slow
/// (DESIGN.md: "Memory use depends on the limits, never on how slow the
/// peer is"). A ping still waiting to be sent already does what a second
/// one would: at most one is queued.
#[test]
fn keepalive_pings_do_not_pile_up_behind_a_peer_that_reads_nothing() {
    use wirestream_proto::Inbound;

    let mut config = Config::default();
    config.max_queued_frames = 1;
    config.ping_interval = Some(Duration::from_millis(1));
    config.liveness_timeout = None;
    config.write_stall_timeout = None;
    let t0 = Instant::now();
    let mut s: ServerSession = ServerSession::new(config, t0, SeededRandom::new(1));
    s.handle_frame(t0, Inbound::Text("{}".to_owned()));
    for _ in 0..100 {
        let now = s.poll_timeout().expect("the keepalive is armed");
        s.handle_timeout(now);
        assert!(s.poll_timeout().is_some_and(|d| d > now), "no spin");
    }
    assert_eq!(s.queued_frames(), 1, "one ping waits, not one per interval");
    assert_eq!(s.poll_transmit(), Some(Transmit::Ping));
    assert_eq!(s.poll_transmit(), None);
    // Once it went out, the next interval sends the next one.
    let next = s.poll_timeout().expect("the keepalive is armed");
    s.handle_timeout(next);
    assert_eq!(s.poll_transmit(), Some(Transmit::Ping));
}

/// Found by the model (wirestream-model) with a small frame limit: the
/// engine's own answers could be larger than `max_frame_size`, which a peer
/// with the same limit refuses with Close(1009). A rejected body's reason is
/// cut to fit; an id the peer chose is echoed in a message at most 256
/// bytes long.
#[test]
fn the_engines_own_answers_stay_within_the_frame_limit() {
    use wirestream_proto::{Engine as _, Inbound};
    let mut config = Config::default();
    config.max_frame_size = 160;
    let now = Instant::now();
    let mut s: ServerSession = ServerSession::new(config, now, SeededRandom::new(1));
    s.handle_frame(now, Inbound::Text("{}".to_owned()));
    let _body = s.poll_event();
    s.reject_body(now, "x".repeat(500)).unwrap();
    let Some(Transmit::Text(error)) = s.poll_transmit() else {
        panic!("the error frame")
    };
    assert_eq!(error.len(), 160, "{error}");
    assert!(error.starts_with(r#"{"code":400,"message":"failed to deserialize body frame: xxx"#));

    let mut s: ServerSession = ServerSession::new(Config::default(), now, SeededRandom::new(1));
    s.handle_frame(now, Inbound::Text("{}".to_owned()));
    let _body = s.poll_event();
    let long = "\"".repeat(100_000);
    let notify = serde_json::json!({
        "id": "c-1", "type": "agent_completion_notify", "response_id": long, "content": "x"
    });
    s.handle_frame(now, Inbound::Text(notify.to_string()));
    let Some(Transmit::Text(reply)) = s.poll_transmit() else {
        panic!("the 404")
    };
    assert!(reply.contains("not from this stream"));
    assert!(reply.len() < 1200, "{} bytes", reply.len());
}
