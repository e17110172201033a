//! Transcript tests of the client session: PROTOCOL.md §2 and §3 from the
//! client's side (§3.3, client column), on a fake clock.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use wirestream_proto::{
    ClientEvent, ClientSession, CloseCode, Config, EndReason, Engine, Error, Headers, Inbound,
    Outcome, Phase, RequestError, SeededRandom, Transmit,
};

struct Cli {
    c: ClientSession,
    now: Instant,
}

fn client_with(config: Config) -> Cli {
    let body = RawValue::from_string(r#"{"messages":[],"stream":true}"#.into()).unwrap();
    let now = Instant::now();
    let mut t = Cli {
        c: ClientSession::new(config, now, body, SeededRandom::new(9)).unwrap(),
        now,
    };
    assert_eq!(t.out(), [r#"{"messages":[],"stream":true}"#]);
    t
}

fn client() -> Cli {
    client_with(Config::default())
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

impl Cli {
    fn text(&mut self, t: &str) {
        self.c.handle_frame(self.now, Inbound::Text(t.to_owned()));
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
    }
    fn out(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.c.poll_transmit())
            .map(|t| match t {
                Transmit::Text(t) => t,
                Transmit::Ping => "Ping".to_owned(),
                Transmit::Close(c) => format!("Close({c})"),
            })
            .collect()
    }
    fn events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }
    fn notify(&mut self) -> String {
        let id = self
            .c
            .notify(self.now, "agc-1", &raw(r#""more""#), None, ())
            .map_err(|r| r.error)
            .unwrap();
        assert_eq!(self.out().len(), 1);
        id
    }
}

fn notify_ended(id: &str, outcome: Outcome<Result<(), RequestError>>) -> ClientEvent {
    ClientEvent::NotifyEnded {
        id: id.to_owned(),
        token: (),
        outcome,
    }
}

#[test]
fn body_is_the_first_frame() {
    let body = RawValue::from_string("{\"a\":1}".into()).unwrap();
    let mut c: ClientSession = ClientSession::new(
        Config::default(),
        Instant::now(),
        body,
        SeededRandom::new(0),
    )
    .unwrap();
    c.notify(Instant::now(), "x", &raw("\"y\""), None, ())
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(c.poll_transmit(), Some(Transmit::Text("{\"a\":1}".into())));
}

#[test]
fn chunks_are_handed_over_as_their_text_in_order() {
    let mut t = client();
    t.text(r#"{"id":"agc-1","object":"agent.completion.chunk","n":1}"#);
    t.text(r#"{"id":"agc-1","object":"agent.completion.chunk","n":2}"#);
    assert_eq!(
        t.events(),
        [
            ClientEvent::Chunk(r#"{"id":"agc-1","object":"agent.completion.chunk","n":1}"#.into()),
            ClientEvent::Chunk(r#"{"id":"agc-1","object":"agent.completion.chunk","n":2}"#.into()),
        ]
    );
    assert_eq!(t.c.stats().chunks, 2);
}

#[test]
fn server_close_1000_ends_the_stream_successfully_once() {
    let mut t = client();
    t.c.handle_frame(t.now, Inbound::Close(Some(CloseCode::NORMAL)));
    t.c.handle_frame(t.now, Inbound::Close(Some(CloseCode::NORMAL)));
    t.c.handle_transport_lost(t.now);
    assert_eq!(
        t.events(),
        [ClientEvent::End(EndReason::Peer(Some(CloseCode::NORMAL)))]
    );
    assert!(t.c.is_closed());
    assert!(
        t.out().is_empty(),
        "the WebSocket layer echoes the close, not the engine"
    );
}

#[test]
fn error_frame_reports_the_stream_failed_then_the_close() {
    let mut t = client();
    t.text(r#"{"code":502,"message":{"upstream":"down"}}"#);
    t.text(r#"{"code":500,"message":"again"}"#);
    t.c.handle_frame(t.now, Inbound::Close(Some(CloseCode::INTERNAL)));
    let events = t.events();
    let ClientEvent::StreamFailed(e) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((e.code, e.message.get()), (502, r#"{"upstream":"down"}"#));
    assert_eq!(
        events[1],
        ClientEvent::End(EndReason::Peer(Some(CloseCode::INTERNAL)))
    );
    assert_eq!(events.len(), 2, "a second error frame is dropped");
    assert!(t.c.has_failed());
    assert_eq!(t.c.stats().junk_frames, 1);
}

#[test]
fn notify_is_sent_in_the_sdk_shape() {
    let mut t = client();
    let id =
        t.c.notify(
            t.now,
            "agc-1",
            &raw(r#"[{"type":"text","text":"look"}]"#),
            None,
            (),
        )
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(
        t.out(),
        [format!(
            r#"{{"id":"{id}","type":"agent_completion_notify","response_id":"agc-1","content":[{{"type":"text","text":"look"}}]}}"#
        )]
    );
}

#[test]
fn notify_answered_ok_ends_once() {
    let mut t = client();
    let id = t.notify();
    t.text(&format!(r#"{{"type":"ok","id":"{id}"}}"#));
    t.text(&format!(r#"{{"type":"ok","id":"{id}"}}"#));
    assert_eq!(t.events(), [notify_ended(&id, Outcome::Answered(Ok(())))]);
    assert_eq!(t.c.stats().unknown_responses, 1);
    assert_eq!(t.c.notifies_in_flight(), 0);
}

#[test]
fn notify_answered_error_carries_code_and_message() {
    let mut t = client();
    let id = t.notify();
    t.text(&format!(
        r#"{{"type":"error","id":"{id}","code":404,"message":"response_id \"agc-1\" not from this stream"}}"#
    ));
    assert_eq!(
        t.events(),
        [notify_ended(
            &id,
            Outcome::Answered(Err(RequestError::new(
                404,
                r#"response_id "agc-1" not from this stream"#
            )))
        )]
    );
}

#[test]
fn notify_times_out_exactly_once() {
    let mut t = client();
    let id =
        t.c.notify(
            t.now,
            "agc-1",
            &raw("\"x\""),
            Some(Duration::from_secs(3)),
            (),
        )
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(t.c.poll_timeout(), Some(t.now + Duration::from_secs(3)));
    t.advance(Duration::from_secs(3));
    t.advance(Duration::from_secs(3));
    t.text(&format!(r#"{{"type":"ok","id":"{id}"}}"#));
    assert_eq!(t.events(), [notify_ended(&id, Outcome::TimedOut)]);
    // No notify is timed any more; only the keepalive is.
    assert_eq!(t.c.poll_timeout(), Some(t.now + Duration::from_secs(30)));
}

#[test]
fn notifies_end_at_once_when_the_server_closes() {
    let mut t = client();
    let a = t.notify();
    let b = t.notify();
    t.c.handle_frame(t.now, Inbound::Close(Some(CloseCode::NORMAL)));
    assert_eq!(
        t.events(),
        [
            notify_ended(&a, Outcome::SessionEnded),
            notify_ended(&b, Outcome::SessionEnded),
            ClientEvent::End(EndReason::Peer(Some(CloseCode::NORMAL)))
        ]
    );
}

#[test]
fn notifies_end_at_once_when_the_transport_is_lost() {
    let mut t = client();
    let a = t.notify();
    t.c.handle_transport_lost(t.now);
    assert_eq!(
        t.events(),
        [
            notify_ended(&a, Outcome::SessionEnded),
            ClientEvent::End(EndReason::TransportLost)
        ]
    );
}

#[test]
fn notify_limit_refuses_the_command_one_past_it() {
    let mut config = Config::default();
    config.max_client_requests = 2;
    let mut t = client_with(config);
    t.notify();
    t.notify();
    assert!(matches!(
        t.c.notify(t.now, "agc-1", &raw("\"x\""), None, ())
            .map_err(|r| r.error),
        Err(Error::TooManyRequests)
    ));
}

#[test]
fn full_queue_refuses_notifies_and_reports_room() {
    let mut config = Config::default();
    config.max_queued_frames = 1;
    let mut t = client_with(config);
    t.c.notify(t.now, "agc-1", &raw("\"x\""), None, ())
        .map_err(|r| r.error)
        .unwrap();
    assert!(!t.c.wants_input());
    assert!(matches!(
        t.c.notify(t.now, "agc-1", &raw("\"x\""), None, ())
            .map_err(|r| r.error),
        Err(Error::Full)
    ));
    assert_eq!(t.out().len(), 1);
    assert_eq!(t.events(), [ClientEvent::Writable]);
}

#[test]
fn server_request_reaches_the_application_and_its_answer_is_sent() {
    let mut t = client();
    t.text(r#"{"id":"s-1","method":"POST","headers":{"content-type":"application/json"},"body":{"jsonrpc":"2.0","id":1,"method":"tools/list"}}"#);
    let events = t.events();
    let [ClientEvent::ServerRequest(r)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!((r.id(), r.method()), ("s-1", Some("POST")));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let headers: Headers = [("mcp-session-id", "s-1")].into_iter().collect();
    t.c.respond(t.now, "s-1", 200, &headers, Some(&raw(r#"{"result":{}}"#)))
        .unwrap();
    assert_eq!(
        t.out(),
        [r#"{"id":"s-1","status":200,"headers":{"mcp-session-id":"s-1"},"body":{"result":{}}}"#]
    );
    assert!(matches!(
        t.c.respond(t.now, "s-1", 200, &Headers::new(), None),
        Err(Error::UnknownRequest)
    ));
}

#[test]
fn client_hosting_nothing_answers_501() {
    let mut t = client();
    t.text(r#"{"id":"s-2","method":"DELETE"}"#);
    t.events();
    t.c.respond(t.now, "s-2", 501, &Headers::new(), None)
        .unwrap();
    assert_eq!(t.out(), [r#"{"id":"s-2","status":501}"#]);
}

#[test]
fn server_requests_past_the_limit_are_answered_429_without_the_application() {
    let mut config = Config::default();
    config.max_server_requests = 1;
    let mut t = client_with(config);
    t.text(r#"{"id":"s-1","method":"GET"}"#);
    t.text(r#"{"id":"s-2","method":"GET"}"#);
    assert_eq!(t.events().len(), 1);
    assert_eq!(t.out(), [r#"{"id":"s-2","status":429}"#]);
    assert_eq!(t.c.stats().refused_requests, 1);
}

#[test]
fn repeated_server_request_id_is_dropped_and_the_first_stays_pending() {
    let mut t = client();
    t.text(r#"{"id":"s-1","method":"GET"}"#);
    t.text(r#"{"id":"s-1","method":"POST"}"#);
    assert_eq!(t.events().len(), 1);
    assert!(t.out().is_empty());
    assert_eq!(t.c.server_requests_pending(), 1);
}

#[test]
fn frames_matching_no_rule_are_dropped_and_counted() {
    let mut t = client();
    for junk in [
        "nope",
        "[]",
        "3",
        r#"{"type":"error","id":"x"}"#,
        r#"{"type":"error","id":"x","code":404}"#,
        r#"{"id":"s","method":"GET","headers":[]}"#,
        r#"{"code":70000,"message":"x"}"#,
    ] {
        t.text(junk);
    }
    t.c.handle_frame(t.now, Inbound::Binary);
    assert!(t.events().is_empty() && t.out().is_empty());
    assert_eq!((t.c.stats().junk_frames, t.c.stats().binary_frames), (7, 1));
}

#[test]
fn objects_that_are_no_envelope_are_chunks() {
    let mut t = client();
    for chunk in [
        r#"{"type":"ok","id":5}"#,
        r#"{"code":1,"message":"x","extra":true}"#,
        "{}",
    ] {
        t.text(chunk);
    }
    assert_eq!(t.events().len(), 3);
}

#[test]
fn oversize_frame_closes_1009() {
    let mut config = Config::default();
    // Room for the body and a notify; the limit holds both ways.
    config.max_frame_size = 128;
    let mut t = client_with(config);
    let id =
        t.c.notify(t.now, "agc-1", &raw("\"x\""), None, ())
            .map_err(|r| r.error)
            .unwrap();
    t.out();
    t.text(&format!(r#"{{"a":"{}"}}"#, "x".repeat(128)));
    assert_eq!(t.out(), ["Close(1009)"]);
    assert_eq!(
        t.events(),
        [
            notify_ended(&id, Outcome::SessionEnded),
            ClientEvent::End(EndReason::Local(CloseCode::TOO_BIG))
        ]
    );
}

#[test]
fn protocol_error_of_the_transport_closes_with_its_code() {
    for code in [CloseCode::PROTOCOL, CloseCode::INVALID_PAYLOAD] {
        let mut t = client();
        let id =
            t.c.notify(t.now, "agc-1", &raw("\"x\""), None, ())
                .map_err(|r| r.error)
                .unwrap();
        t.out();
        t.c.handle_frame(t.now, Inbound::ProtocolError(code));
        assert_eq!(t.out(), [format!("Close({})", code.0)]);
        assert_eq!(
            t.events(),
            [
                notify_ended(&id, Outcome::SessionEnded),
                ClientEvent::End(EndReason::Local(code))
            ]
        );
    }
}

#[test]
fn closing_sends_close_1000_and_nothing_after() {
    let mut t = client();
    t.c.close(t.now).unwrap();
    assert_eq!(t.out(), ["Close(1000)"]);
    assert_eq!(t.c.phase(), Phase::Closing);
    assert!(matches!(t.c.close(t.now), Err(Error::Closed)));
    assert!(matches!(
        t.c.notify(t.now, "a", &raw("\"x\""), None, ())
            .map_err(|r| r.error),
        Err(Error::Closed)
    ));
    t.text(r#"{"id":"agc-1"}"#);
    assert_eq!(
        t.events(),
        [ClientEvent::End(EndReason::Local(CloseCode::NORMAL))]
    );
    t.c.handle_frame(t.now, Inbound::Close(Some(CloseCode::NORMAL)));
    assert!(t.c.is_closed());
    assert!(t.out().is_empty() && t.events().is_empty());
}

#[test]
fn close_timeout_ends_a_client_whose_server_never_answers_the_close() {
    let mut t = client();
    t.c.close(t.now).unwrap();
    t.advance(Duration::from_secs(5));
    assert!(t.c.is_closed());
    assert_eq!(t.c.poll_timeout(), None);
}

#[test]
fn zero_close_timeout_still_sends_the_close() {
    let mut config = Config::default();
    config.close_timeout = Duration::ZERO;
    let mut t = client_with(config);
    t.c.close(t.now).unwrap();
    assert!(t.c.poll_timeout().is_some_and(|d| d > t.now));
    assert_eq!(t.out(), ["Close(1000)"]);
    t.advance(Duration::from_nanos(1));
    assert!(t.c.is_closed());
    assert_eq!(t.c.poll_timeout(), None);
}

#[test]
fn error_reply_whose_message_is_not_a_string_still_ends_the_notify() {
    let mut t = client();
    let id = t.notify();
    t.text(&format!(
        r#"{{"type":"error","id":"{id}","code":502,"message":{{"detail":"upstream"}}}}"#
    ));
    assert_eq!(
        t.events(),
        [notify_ended(
            &id,
            Outcome::Answered(Err(RequestError::new(502, r#"{"detail":"upstream"}"#)))
        )]
    );
    assert_eq!(t.c.notifies_in_flight(), 0);
}

#[test]
fn chunk_event_hands_back_the_frame_it_was_given() {
    let mut t = client();
    let chunk = String::from(r#"{"id":"agc-1","object":"agent.completion.chunk"}"#);
    let at = chunk.as_ptr();
    t.c.handle_frame(t.now, Inbound::Text(chunk));
    let [ClientEvent::Chunk(chunk)] = <[ClientEvent; 1]>::try_from(t.events()).unwrap() else {
        panic!()
    };
    assert_eq!(chunk.as_ptr(), at, "the same buffer, not a copy");
}

#[test]
fn each_notify_ends_once_with_its_token() {
    let now = Instant::now();
    let body = raw("{}");
    let mut c: ClientSession<String, char> =
        ClientSession::new(Config::default(), now, body, SeededRandom::new(3)).unwrap();
    let content = raw(r#""x""#);
    let a = c.notify(now, "agc-1", &content, None, 'a').unwrap();
    let _b = c
        .notify(now, "agc-1", &content, Some(Duration::from_secs(1)), 'b')
        .unwrap();
    let _c = c.notify(now, "agc-1", &content, None, 'c').unwrap();
    c.handle_frame(now, Inbound::Text(format!(r#"{{"type":"ok","id":"{a}"}}"#)));
    c.handle_timeout(now + Duration::from_secs(1));
    c.handle_transport_lost(now + Duration::from_secs(1));
    let ends: Vec<(char, Outcome<Result<(), RequestError>>)> =
        std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                ClientEvent::NotifyEnded { token, outcome, .. } => Some((token, outcome)),
                _ => None,
            })
            .collect();
    assert_eq!(
        ends,
        [
            ('a', Outcome::Answered(Ok(()))),
            ('b', Outcome::TimedOut),
            ('c', Outcome::SessionEnded)
        ]
    );
}

#[test]
fn body_over_the_frame_limit_is_refused_and_handed_back() {
    let mut config = Config::default();
    config.max_frame_size = 8;
    let refused = ClientSession::<String>::new(
        config,
        Instant::now(),
        raw(r#""123456789""#),
        SeededRandom::new(0),
    )
    .unwrap_err();
    assert!(matches!(refused.error, Error::TooLarge));
    assert_eq!(refused.value.get(), r#""123456789""#);
}

#[test]
fn notify_over_the_frame_limit_is_refused_with_its_token() {
    let mut config = Config::default();
    config.max_frame_size = 128;
    let mut c: ClientSession<String, u8> =
        ClientSession::new(config, Instant::now(), raw("{}"), SeededRandom::new(0)).unwrap();
    let content = raw(&format!(r#""{}""#, "x".repeat(128)));
    let refused = c
        .notify(Instant::now(), "agc-1", &content, None, 7)
        .unwrap_err();
    assert!(matches!(refused.error, Error::TooLarge));
    assert_eq!(refused.value, 7);
    assert_eq!(c.notifies_in_flight(), 0);
}

#[test]
fn answer_over_the_frame_limit_is_refused_and_the_request_stays_pending() {
    let mut config = Config::default();
    config.max_frame_size = 128;
    let mut t = client_with(config);
    t.text(r#"{"id":"s-1","method":"GET"}"#);
    let _request = t.events();
    let big = raw(&format!(r#""{}""#, "x".repeat(128)));
    assert!(matches!(
        t.c.respond(t.now, "s-1", 200, &Headers::new(), Some(&big)),
        Err(Error::TooLarge)
    ));
    assert_eq!(t.c.server_requests_pending(), 1);
    t.c.respond(t.now, "s-1", 501, &Headers::new(), None)
        .unwrap();
    assert_eq!(t.out(), [r#"{"id":"s-1","status":501}"#]);
}
