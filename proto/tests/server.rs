//! Transcript tests of the server session: for each rule of PROTOCOL.md
//! §2, §3, §5, §6, the exact frames and events, on a fake clock.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use wirestream_proto::{
    ClientRequest, ClientRequestKind, CloseCode, Config, EndReason, Engine, Error, Headers,
    Inbound, Json, Outcome, Phase, RequestError, RequestKind, ResponseError, SeededRandom,
    ServerEvent, ServerSession, Transmit,
};

/// A server session on a fake clock, with its output rendered as strings.
struct Srv {
    s: ServerSession,
    now: Instant,
}

fn server_with(config: Config) -> Srv {
    let now = Instant::now();
    Srv {
        s: ServerSession::new(config, now, SeededRandom::new(1)),
        now,
    }
}

fn server() -> Srv {
    server_with(Config::default())
}

/// A session that has its body and has emitted a chunk carrying `agc-1`.
fn streaming_with(config: Config) -> Srv {
    let mut t = server_with(config);
    t.text(r#"{"messages":[]}"#);
    assert_eq!(t.events(), [ServerEvent::Body(r#"{"messages":[]}"#.into())]);
    t.chunk("agc-1");
    assert_eq!(t.out().len(), 1);
    t
}

fn streaming() -> Srv {
    streaming_with(Config::default())
}

fn notify(id: &str, response_id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"agent_completion_notify","response_id":"{response_id}","content":"hi"}}"#
    )
}

impl Srv {
    fn text(&mut self, t: &str) {
        self.s.handle_frame(self.now, Inbound::Text(t.to_owned()));
    }
    fn frame(&mut self, f: Inbound) {
        self.s.handle_frame(self.now, f);
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.handle_timeout(self.now);
    }
    fn chunk(&mut self, id: &str) {
        let chunk = serde_json::json!({"id": id, "object": "agent.completion.chunk"});
        self.s.send_chunk_value(self.now, &chunk, [id]).unwrap();
    }
    /// Everything queued for the wire, close frames as `Close(N)`.
    fn out(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.s.poll_transmit())
            .map(|t| match t {
                Transmit::Text(t) => t,
                Transmit::Ping => "Ping".to_owned(),
                Transmit::Close(c) => format!("Close({c})"),
            })
            .collect()
    }
    fn events(&mut self) -> Vec<ServerEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }
    /// Accepts a notify and returns it as the application saw it.
    fn accepted(&mut self, id: &str) -> ClientRequest<'static> {
        self.text(&notify(id, "agc-1"));
        assert_eq!(self.out(), Vec::<String>::new(), "nothing is answered yet");
        match self.events().as_slice() {
            [ServerEvent::Request(r)] => r.to_request(),
            other => panic!("expected the request, got {other:?}"),
        }
    }
}

fn ended(reason: EndReason) -> ServerEvent {
    ServerEvent::End(reason)
}

// ---- §2.1 awaiting body ----

#[test]
fn first_text_frame_is_the_body_whatever_it_holds() {
    let mut t = server();
    t.text(&notify("c-1", "agc-1"));
    assert_eq!(t.events(), [ServerEvent::Body(notify("c-1", "agc-1"))]);
    assert_eq!(t.s.phase(), Phase::Streaming);
    assert!(t.out().is_empty());
}

#[test]
fn ping_and_pong_while_awaiting_body_are_ignored() {
    let mut t = server();
    t.frame(Inbound::Ping);
    t.frame(Inbound::Pong);
    assert!(t.out().is_empty() && t.events().is_empty());
    assert_eq!(t.s.phase(), Phase::AwaitingBody);
}

#[test]
fn binary_body_is_answered_400_then_close_1003() {
    let mut t = server();
    t.frame(Inbound::Binary);
    assert_eq!(
        t.out(),
        [
            r#"{"code":400,"message":"expected text body frame, got binary"}"#,
            "Close(1003)"
        ]
    );
    assert_eq!(
        t.events(),
        [ended(EndReason::Local(CloseCode::UNSUPPORTED))]
    );
}

#[test]
fn rejected_body_is_answered_400_with_the_serde_error_then_close_1003() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        messages: Vec<serde_json::Value>,
    }
    let mut t = server();
    t.text("{}");
    let Some(ServerEvent::Body(body)) = t.s.poll_event() else {
        panic!("no body")
    };
    let err = serde_json::from_str::<Body>(&body).unwrap_err();
    t.s.reject_body(t.now, &err).unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"code":400,"message":"failed to deserialize body frame: missing field `messages` at line 1 column 2"}"#,
            "Close(1003)"
        ]
    );
    assert_eq!(
        t.events(),
        [ended(EndReason::Local(CloseCode::UNSUPPORTED))]
    );
}

#[test]
fn body_cannot_be_rejected_after_the_first_chunk() {
    let mut t = streaming();
    assert!(matches!(
        t.s.reject_body(t.now, "late"),
        Err(Error::AlreadyStreaming)
    ));
    assert!(t.out().is_empty());
}

#[test]
fn body_timeout_sends_408_then_close_1008() {
    let mut t = server();
    assert_eq!(t.s.poll_timeout(), Some(t.now + Duration::from_secs(30)));
    t.advance(Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(t.out().is_empty(), "not one nanosecond early");
    t.advance(Duration::from_nanos(1));
    assert_eq!(
        t.out(),
        [
            r#"{"code":408,"message":"no body frame within 30000 ms"}"#,
            "Close(1008)"
        ]
    );
    assert_eq!(t.events(), [ended(EndReason::Local(CloseCode::POLICY))]);
}

#[test]
fn body_timeout_is_configurable() {
    let mut config = Config::default();
    config.body_timeout = Duration::from_millis(250);
    let mut t = server_with(config);
    t.advance(Duration::from_millis(250));
    assert_eq!(
        t.out(),
        [
            r#"{"code":408,"message":"no body frame within 250 ms"}"#,
            "Close(1008)"
        ]
    );
}

#[test]
fn body_at_the_size_limit_is_accepted() {
    let mut config = Config::default();
    config.max_frame_size = 16;
    let mut t = server_with(config);
    t.text(r#"{"a":"12345678"}"#);
    assert!(matches!(t.events().as_slice(), [ServerEvent::Body(_)]));
    assert!(t.out().is_empty());
}

#[test]
fn body_one_byte_over_the_size_limit_is_answered_413_then_close_1009() {
    let mut config = Config::default();
    config.max_frame_size = 16;
    let mut t = server_with(config);
    t.text(r#"{"a":"123456789"}"#);
    assert_eq!(
        t.out(),
        [
            r#"{"code":413,"message":"frame of 17 bytes exceeds the limit of 16 bytes"}"#,
            "Close(1009)"
        ]
    );
    assert_eq!(t.events(), [ended(EndReason::Local(CloseCode::TOO_BIG))]);
}

#[test]
fn oversize_message_refused_by_the_transport_is_answered_413_then_close_1009() {
    let mut t = server();
    t.frame(Inbound::Oversize);
    assert_eq!(
        t.out(),
        [
            r#"{"code":413,"message":"frame exceeds the limit of 16777216 bytes"}"#,
            "Close(1009)"
        ]
    );
}

#[test]
fn protocol_error_of_the_transport_is_answered_with_its_close_code_alone() {
    for code in [CloseCode::PROTOCOL, CloseCode::INVALID_PAYLOAD] {
        let mut t = server();
        t.frame(Inbound::ProtocolError(code));
        assert_eq!(t.out(), [format!("Close({})", code.0)]);
        assert_eq!(t.events(), [ended(EndReason::Local(code))]);
        // Nothing more is read or sent.
        t.text(r#"{"messages":[]}"#);
        assert!(t.out().is_empty());
        assert!(t.events().is_empty());
    }
}

#[test]
fn protocol_error_while_streaming_answers_accepted_notifies_first() {
    let mut t = streaming();
    t.text(&notify("n1", "agc-1"));
    assert_eq!(t.events().len(), 1);
    t.frame(Inbound::ProtocolError(CloseCode::PROTOCOL));
    let out = t.out();
    assert_eq!(out.last().map(String::as_str), Some("Close(1002)"));
    assert!(
        out[0].contains(r#""id":"n1""#) && out[0].contains("404"),
        "{out:?}"
    );
    assert_eq!(t.events(), [ended(EndReason::Local(CloseCode::PROTOCOL))]);
}

#[test]
fn peer_close_before_the_body_ends_the_session_quietly() {
    let mut t = server();
    t.frame(Inbound::Close(Some(CloseCode::NORMAL)));
    assert!(t.out().is_empty());
    assert_eq!(
        t.events(),
        [ended(EndReason::Peer(Some(CloseCode::NORMAL)))]
    );
    assert!(t.s.is_closed());
    assert_eq!(t.s.poll_timeout(), None);
}

#[test]
fn transport_lost_before_the_body_ends_the_session_quietly() {
    let mut t = server();
    t.s.handle_transport_lost(t.now);
    assert!(t.out().is_empty());
    assert_eq!(t.events(), [ended(EndReason::TransportLost)]);
    assert_eq!(EndReason::TransportLost.code(), CloseCode::ABNORMAL);
}

// ---- §2.1 streaming and end ----

#[test]
fn chunks_go_out_in_order_then_close_1000_without_a_done_sentinel() {
    let mut t = server();
    t.text("{}");
    for i in 0..3 {
        t.s.send_chunk_value(t.now, &serde_json::json!({ "n": i }), ["agc-1"])
            .unwrap();
    }
    t.s.finish(t.now).unwrap();
    assert_eq!(
        t.out(),
        [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#, "Close(1000)"]
    );
    let events = t.events();
    assert_eq!(
        events.last(),
        Some(&ended(EndReason::Local(CloseCode::NORMAL)))
    );
    assert_eq!(t.s.stats().chunks, 3);
}

#[test]
fn raw_chunks_are_sent_verbatim() {
    let mut t = server();
    t.text("{}");
    let raw = RawValue::from_string(r#"{"id":"agc-7","x":[1, 2]}"#.to_owned()).unwrap();
    t.s.send_chunk(t.now, raw, ["agc-7"]).unwrap();
    assert_eq!(t.out(), [r#"{"id":"agc-7","x":[1, 2]}"#]);
    assert!(t.s.has_emitted("agc-7"));
}

#[test]
fn chunks_before_the_body_are_refused() {
    let mut t = server();
    let err = t.s.send_chunk_value(t.now, &1, ["x"]).unwrap_err();
    assert!(matches!(err, Error::AwaitingBody));
    assert!(t.out().is_empty());
}

#[test]
fn failure_sends_the_error_frame_then_close_1011() {
    let mut t = streaming();
    t.s.fail(t.now, &ResponseError::new(502, "upstream failed"))
        .unwrap();
    assert_eq!(
        t.out(),
        [r#"{"code":502,"message":"upstream failed"}"#, "Close(1011)"]
    );
    assert_eq!(t.events(), [ended(EndReason::Local(CloseCode::INTERNAL))]);
}

#[test]
fn failure_messages_may_be_any_json() {
    let mut t = server();
    let message = Json::from_value(&serde_json::json!({"error": {"kind": "quota"}})).unwrap();
    t.s.fail(t.now, &ResponseError { code: 429, message })
        .unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"code":429,"message":{"error":{"kind":"quota"}}}"#,
            "Close(1011)"
        ]
    );
}

#[test]
fn nothing_is_sent_after_the_close_frame() {
    let mut t = streaming();
    t.s.finish(t.now).unwrap();
    assert_eq!(t.out(), ["Close(1000)"]);
    t.events();
    t.text(&notify("late", "agc-1"));
    t.frame(Inbound::Binary);
    t.frame(Inbound::Oversize);
    t.advance(Duration::from_secs(1));
    assert!(matches!(
        t.s.send_chunk_value(t.now, &1, ["a"]),
        Err(Error::Closed)
    ));
    assert!(matches!(t.s.finish(t.now), Err(Error::Closed)));
    assert!(matches!(
        t.s.fail(t.now, &ResponseError::new(500, "x")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error),
        Err(Error::Closed)
    ));
    assert!(t.out().is_empty());
    assert!(t.events().is_empty());
}

#[test]
fn close_handshake_completes_on_the_peer_close() {
    let mut t = streaming();
    t.s.finish(t.now).unwrap();
    t.out();
    assert_eq!(t.s.phase(), Phase::Closing);
    t.frame(Inbound::Close(Some(CloseCode::NORMAL)));
    assert!(t.s.is_closed());
    assert_eq!(
        t.events(),
        [ended(EndReason::Local(CloseCode::NORMAL))],
        "one end only"
    );
}

#[test]
fn close_timeout_ends_a_session_whose_peer_never_closes() {
    let mut t = streaming();
    t.s.finish(t.now).unwrap();
    t.out();
    assert_eq!(t.s.poll_timeout(), Some(t.now + Duration::from_secs(5)));
    t.advance(Duration::from_secs(5));
    assert!(t.s.is_closed());
    assert_eq!(t.s.poll_timeout(), None);
}

#[test]
fn peer_close_mid_stream_ends_the_session_at_once() {
    let mut t = streaming();
    t.chunk("agc-1");
    t.frame(Inbound::Close(Some(CloseCode(1001))));
    assert!(t.out().is_empty(), "queued frames are dropped");
    assert_eq!(t.events(), [ended(EndReason::Peer(Some(CloseCode(1001))))]);
    assert!(t.s.is_closed());
}

// ---- §3.1 client requests ----

#[test]
fn notify_for_an_emitted_id_reaches_the_application_and_ok_is_sent() {
    let mut t = streaming();
    let r = t.accepted("c-1");
    assert_eq!(r.id, "c-1");
    let ClientRequestKind::AgentCompletionNotify {
        response_id,
        content,
    } = &r.kind
    else {
        unreachable!()
    };
    assert_eq!((response_id.as_ref(), content.get()), ("agc-1", r#""hi""#));
    t.s.respond(t.now, "c-1", Ok(())).unwrap();
    assert_eq!(t.out(), [r#"{"type":"ok","id":"c-1"}"#]);
}

#[test]
fn notify_content_parts_pass_through_untouched() {
    let mut t = streaming();
    let parts = r#"[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"u"}}]"#;
    t.text(&format!(
        r#"{{"id":"c-2","type":"agent_completion_notify","response_id":"agc-1","content":{parts}}}"#
    ));
    let Ok::<[ServerEvent; 1], _>([ServerEvent::Request(r)]) = t.events().try_into() else {
        panic!()
    };
    let RequestKind::AgentCompletionNotify { content, .. } = r.kind() else {
        unreachable!()
    };
    assert_eq!(content, parts);
}

#[test]
fn application_errors_are_sent_with_their_code_and_message() {
    let mut t = streaming();
    t.accepted("c-1");
    t.s.respond(
        t.now,
        "c-1",
        Err(RequestError::new(400, "cannot take notifications")),
    )
    .unwrap();
    assert_eq!(
        t.out(),
        [r#"{"type":"error","id":"c-1","code":400,"message":"cannot take notifications"}"#]
    );
    assert!(matches!(
        t.s.respond(t.now, "c-1", Ok(())),
        Err(Error::UnknownRequest)
    ));
}

#[test]
fn notify_for_an_id_never_emitted_is_answered_404() {
    let mut t = streaming();
    t.text(&notify("c-1", "agc-9"));
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":404,"message":"response_id \"agc-9\" not from this stream"}"#
        ]
    );
    assert!(t.events().is_empty());
}

#[test]
fn notify_ids_with_escapes_are_echoed_exactly() {
    let mut t = streaming();
    t.text(r#"{"id":"c\"1\u00e9","type":"agent_completion_notify","response_id":"a\nb","content":"x"}"#);
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c\"1é","code":404,"message":"response_id \"a\\nb\" not from this stream"}"#
        ]
    );
}

#[test]
fn unknown_request_type_with_a_string_id_is_answered_400() {
    let mut t = streaming();
    t.text(r#"{"id":"c-1","type":"agent_completion_cancel","response_id":"agc-1"}"#);
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":400,"message":"unknown client request type \"agent_completion_cancel\""}"#
        ]
    );
    assert_eq!(t.s.stats().refused_requests, 1);
}

#[test]
fn request_with_missing_or_mistyped_fields_is_answered_400() {
    let mut t = streaming();
    t.text(r#"{"id":"c-1","type":"agent_completion_notify","content":"x"}"#);
    t.text(r#"{"id":"c-2","type":"agent_completion_notify","response_id":7,"content":"x"}"#);
    t.text(r#"{"id":"c-3","type":"agent_completion_notify","response_id":"agc-1"}"#);
    t.text(r#"{"id":"c-4","type":"agent_completion_notify","response_id":"agc-1","content":5}"#);
    let out = t.out();
    assert_eq!(out.len(), 4);
    for (i, frame) in out.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(frame).unwrap();
        assert_eq!(v["id"], format!("c-{}", i + 1));
        assert_eq!(
            (v["type"].as_str(), v["code"].as_u64()),
            (Some("error"), Some(400))
        );
    }
    assert!(t.events().is_empty());
}

#[test]
fn duplicate_in_flight_id_is_answered_409_and_the_first_is_unaffected() {
    let mut t = streaming();
    t.accepted("c-1");
    t.text(&notify("c-1", "agc-1"));
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":409,"message":"request id \"c-1\" is already in flight"}"#
        ]
    );
    assert!(t.events().is_empty());
    assert_eq!(t.s.client_requests_in_flight(), 1);
    t.s.respond(t.now, "c-1", Ok(())).unwrap();
    assert_eq!(t.out(), [r#"{"type":"ok","id":"c-1"}"#]);
    t.accepted("c-1");
}

#[test]
fn in_flight_limit_is_reached_then_answered_429_one_past_it() {
    let mut t = streaming();
    for i in 0..64 {
        t.accepted(&format!("c-{i}"));
    }
    t.text(&notify("c-64", "agc-1"));
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-64","code":429,"message":"too many client requests in flight (limit 64)"}"#
        ]
    );
    assert_eq!(t.s.client_requests_in_flight(), 64);
    t.s.respond(t.now, "c-0", Ok(())).unwrap();
    t.out();
    t.accepted("c-64");
}

#[test]
fn request_after_the_stream_finished_is_answered_404_no_longer_running() {
    let mut t = streaming();
    t.accepted("c-1");
    t.s.finish(t.now).unwrap();
    t.text(&notify("c-2", "agc-1"));
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-2","code":404,"message":"response_id \"agc-1\" is no longer running"}"#
        ]
    );
}

#[test]
fn notify_reply_precedes_close() {
    let mut t = streaming();
    t.accepted("c-1");
    t.s.finish(t.now).unwrap();
    assert!(t.out().is_empty(), "no close while a reply is owed");
    assert_eq!(t.s.phase(), Phase::Draining);
    t.s.respond(t.now, "c-1", Ok(())).unwrap();
    assert_eq!(t.out(), [r#"{"type":"ok","id":"c-1"}"#, "Close(1000)"]);
}

#[test]
fn drain_timeout_answers_504_then_closes_1000() {
    let mut t = streaming();
    t.accepted("c-1");
    t.accepted("c-2");
    t.s.finish(t.now).unwrap();
    t.s.respond(t.now, "c-2", Ok(())).unwrap();
    assert_eq!(t.s.poll_timeout(), Some(t.now + Duration::from_secs(5)));
    t.advance(Duration::from_secs(5));
    assert_eq!(
        t.out(),
        [
            r#"{"type":"ok","id":"c-2"}"#,
            r#"{"type":"error","id":"c-1","code":504,"message":"no reply within the drain timeout"}"#,
            "Close(1000)"
        ]
    );
    assert!(matches!(
        t.s.respond(t.now, "c-1", Ok(())),
        Err(Error::Closed)
    ));
}

#[test]
fn replies_owed_at_a_failure_are_answered_404_before_the_close() {
    let mut t = streaming();
    t.accepted("c-1");
    t.s.fail(t.now, &ResponseError::new(500, "boom")).unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":404,"message":"response_id \"agc-1\" is no longer running"}"#,
            r#"{"code":500,"message":"boom"}"#,
            "Close(1011)"
        ]
    );
}

#[test]
fn emitted_id_memory_forgets_the_oldest_first() {
    let mut config = Config::default();
    config.max_emitted_ids = 2;
    let mut t = streaming_with(config);
    t.chunk("agc-2");
    t.chunk("agc-2");
    t.chunk("agc-3");
    t.out();
    assert_eq!((t.s.emitted_ids(), t.s.stats().forgotten_ids), (2, 1));
    t.text(&notify("c-1", "agc-1"));
    assert!(t.out()[0].contains(r#""code":404"#));
    t.text(&notify("c-2", "agc-2"));
    assert!(t.out().is_empty());
}

// ---- §3.2 server requests ----

#[test]
fn server_request_is_sent_and_its_response_routed() {
    let mut t = streaming();
    let headers: Headers = [("content-type", "application/json")].into_iter().collect();
    let body =
        RawValue::from_string(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into()).unwrap();
    let id =
        t.s.send_server_request(t.now, "POST", &headers, Some(&body), None, ())
            .map_err(|r| r.error)
            .unwrap();
    assert_eq!(
        t.out(),
        [format!(
            r#"{{"id":"{id}","method":"POST","headers":{{"content-type":"application/json"}},"body":{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}}}"#
        )]
    );
    t.text(&format!(
        r#"{{"id":"{id}","status":200,"headers":{{"mcp-session-id":"s-1"}},"body":{{"ok":true}}}}"#
    ));
    let Ok::<[ServerEvent; 1], _>(
        [
            ServerEvent::ServerRequestEnded {
                id: ended_id,
                token: (),
                outcome: Outcome::Answered(r),
            },
        ],
    ) = t.events().try_into()
    else {
        panic!()
    };
    assert_eq!(ended_id, id);
    assert_eq!(
        (r.status(), r.header("MCP-Session-Id")),
        (Some(200), Some("s-1"))
    );
    assert_eq!(r.body().unwrap(), r#"{"ok":true}"#);
    assert_eq!(t.s.server_requests_pending(), 0);
}

#[test]
fn server_request_ids_are_128_bits_of_hex_and_differ() {
    let mut t = streaming();
    let a =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    let b =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    assert_ne!(a, b);
    for id in [&a, &b] {
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    assert_eq!(t.out()[0], format!(r#"{{"id":"{a}","method":"GET"}}"#));
}

#[test]
fn server_request_before_the_body_is_refused() {
    let mut t = server();
    assert!(matches!(
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error),
        Err(Error::AwaitingBody)
    ));
}

#[test]
fn server_request_before_the_first_chunk_is_allowed() {
    let mut t = server();
    t.text("{}");
    t.events();
    let id =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    t.out();
    t.text(&format!(r#"{{"id":"{id}","status":204}}"#));
    assert!(matches!(
        t.events().as_slice(),
        [ServerEvent::ServerRequestEnded {
            outcome: Outcome::Answered(_),
            ..
        }]
    ));
}

#[test]
fn server_request_times_out_exactly_once_and_its_late_response_is_dropped() {
    let mut t = streaming();
    let id =
        t.s.send_server_request(
            t.now,
            "GET",
            &Headers::new(),
            None,
            Some(Duration::from_secs(2)),
            (),
        )
        .map_err(|r| r.error)
        .unwrap();
    assert_eq!(t.s.poll_timeout(), Some(t.now + Duration::from_secs(2)));
    t.advance(Duration::from_secs(2));
    assert_eq!(
        t.events(),
        [ServerEvent::ServerRequestEnded {
            id: id.clone(),
            token: (),
            outcome: Outcome::TimedOut
        }]
    );
    assert!(t.s.poll_timeout().is_none_or(|d| d > t.now));
    t.advance(Duration::from_secs(2));
    t.text(&format!(r#"{{"id":"{id}","status":200}}"#));
    assert!(t.events().is_empty());
    assert_eq!(t.s.stats().unknown_responses, 1);
}

#[test]
fn server_requests_end_at_once_when_the_transport_is_lost() {
    let mut t = streaming();
    let id =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    t.s.handle_transport_lost(t.now);
    assert_eq!(
        t.events(),
        [
            ServerEvent::ServerRequestEnded {
                id,
                token: (),
                outcome: Outcome::SessionEnded
            },
            ended(EndReason::TransportLost)
        ]
    );
    assert_eq!(t.s.poll_timeout(), None);
}

#[test]
fn server_requests_end_when_this_side_closes() {
    let mut t = streaming();
    let id =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    t.s.finish(t.now).unwrap();
    assert_eq!(
        t.events(),
        [
            ServerEvent::ServerRequestEnded {
                id,
                token: (),
                outcome: Outcome::SessionEnded
            },
            ended(EndReason::Local(CloseCode::NORMAL))
        ]
    );
}

#[test]
fn server_request_limit_refuses_the_command_one_past_it() {
    let mut config = Config::default();
    config.max_server_requests = 2;
    let mut t = streaming_with(config);
    for _ in 0..2 {
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    }
    assert!(matches!(
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error),
        Err(Error::TooManyRequests)
    ));
}

#[test]
fn unknown_response_id_is_dropped() {
    let mut t = streaming();
    t.text(r#"{"id":"nope","status":200}"#);
    assert!(t.out().is_empty() && t.events().is_empty());
    assert_eq!(t.s.stats().unknown_responses, 1);
    assert_eq!(t.s.phase(), Phase::Streaming);
}

// ---- §3.3 classification ----

#[test]
fn frames_matching_no_rule_are_dropped_and_counted() {
    let mut t = streaming();
    let junk = [
        "not json",
        "[1,2]",
        "\"str\"",
        "{}",
        r#"{"id":5,"type":"agent_completion_notify"}"#,
        r#"{"id":"x"}"#,
        r#"{"id":"x","status":"200"}"#,
        r#"{"id":"x","status":70000}"#,
        r#"{"id":"x","status":-1}"#,
        r#"{"id":"x","status":200.5}"#,
        r#"{"id":"x","status":200,"headers":{"a":1}}"#,
        r#"{"id":"x","id":"y","status":200}"#,
        r#"{"type":"agent_completion_notify","response_id":"agc-1","content":"x"}"#,
        "{\"id\":\"x\",\"status\":200} trailing",
    ];
    for j in junk {
        t.text(j);
    }
    assert!(t.out().is_empty() && t.events().is_empty());
    assert_eq!(t.s.stats().junk_frames, junk.len() as u64);
}

#[test]
fn binary_frames_while_streaming_are_dropped_and_counted() {
    let mut t = streaming();
    t.frame(Inbound::Binary);
    assert!(t.out().is_empty() && t.events().is_empty());
    assert_eq!(t.s.stats().binary_frames, 1);
}

#[test]
fn oversize_frame_while_streaming_answers_owed_replies_then_413_and_close_1009() {
    let mut config = Config::default();
    config.max_frame_size = 200;
    let mut t = streaming_with(config);
    t.accepted("c-1");
    t.text(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(200)));
    let out = t.out();
    assert_eq!(out.len(), 3);
    assert!(out[0].contains(r#""id":"c-1","code":404"#));
    assert!(out[1].starts_with(r#"{"code":413,"#));
    assert_eq!(out[2], "Close(1009)");
}

// ---- §5 bounded outbound queue ----

#[test]
fn full_queue_refuses_chunks_hands_them_back_and_reports_room() {
    let mut config = Config::default();
    config.max_queued_frames = 2;
    let mut t = streaming_with(config);
    t.chunk("agc-1");
    t.chunk("agc-1");
    assert!(!t.s.wants_input(), "stop reading while the queue is full");
    let raw = RawValue::from_string("{\"n\":1}".into()).unwrap();
    let refused = t.s.send_chunk(t.now, raw, ["agc-2"]).unwrap_err();
    assert!(matches!(refused.error, Error::Full));
    assert_eq!(refused.value.get(), "{\"n\":1}");
    assert!(!t.s.has_emitted("agc-2"), "a refused chunk changes nothing");
    assert!(t.s.poll_transmit().is_some());
    assert_eq!(t.events(), [ServerEvent::Writable]);
    assert!(t.s.wants_input());
    t.s.send_chunk(t.now, refused.value, ["agc-2"]).unwrap();
    assert_eq!(t.out().len(), 2);
    assert!(t.events().is_empty(), "room is reported once per refusal");
}

#[test]
fn byte_limit_of_the_queue_is_enforced() {
    let mut config = Config::default();
    config.max_queued_bytes = 100;
    let mut t = streaming_with(config);
    let big = "x".repeat(99);
    t.s.send_chunk_value(t.now, &big, ["a"]).unwrap();
    assert_eq!(t.s.queued_bytes(), 101);
    assert!(matches!(
        t.s.send_chunk_value(t.now, &"y", ["a"]),
        Err(Error::Full)
    ));
    assert!(matches!(
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error),
        Err(Error::Full)
    ));
}

#[test]
fn replies_are_queued_past_the_limit_but_input_stops() {
    let mut config = Config::default();
    config.max_queued_frames = 1;
    let mut t = streaming_with(config);
    t.chunk("agc-1");
    assert!(!t.s.wants_input());
    t.text(&notify("c-1", "agc-9"));
    assert_eq!(t.s.queued_frames(), 2, "the reply is not lost");
    assert_eq!(t.out().len(), 2);
}

// ---- timers ----

#[test]
fn poll_timeout_is_later_than_now_after_each_timeout() {
    let mut config = Config::default();
    config.request_timeout = Duration::from_secs(1);
    let mut t = streaming_with(config);
    for i in 0..3 {
        t.s.send_server_request(
            t.now,
            "GET",
            &Headers::new(),
            None,
            Some(Duration::from_secs(i + 1)),
            (),
        )
        .map_err(|r| r.error)
        .unwrap();
    }
    while let Some(deadline) = t.s.poll_timeout() {
        assert!(deadline > t.now);
        t.advance(deadline - t.now);
        t.out();
        t.events();
        assert!(t.s.poll_timeout().is_none_or(|d| d > t.now));
    }
    assert_eq!(t.s.server_requests_pending(), 0);
}

#[test]
fn early_and_repeated_timeouts_do_nothing() {
    let mut t = server();
    t.s.handle_timeout(t.now);
    t.s.handle_timeout(t.now + Duration::from_secs(29));
    assert!(t.out().is_empty() && t.events().is_empty());
    t.advance(Duration::from_secs(30));
    assert_eq!(t.out().len(), 2);
    t.events();
    t.s.handle_timeout(t.now);
    assert!(t.out().is_empty() && t.events().is_empty());
}

#[test]
fn deadlines_past_the_end_of_time_never_fire() {
    let mut config = Config::default();
    config.body_timeout = Duration::MAX;
    config.ping_interval = Some(Duration::MAX);
    config.liveness_timeout = Some(Duration::MAX);
    let t = server_with(config);
    assert_eq!(t.s.poll_timeout(), None);
}

#[test]
fn session_end_is_reported_exactly_once() {
    let mut t = streaming();
    t.s.fail(t.now, &ResponseError::new(500, "x")).unwrap();
    t.frame(Inbound::Close(None));
    t.s.handle_transport_lost(t.now);
    let ends = t
        .events()
        .into_iter()
        .filter(|e| matches!(e, ServerEvent::End(_)))
        .count();
    assert_eq!(ends, 1);
}

#[test]
fn failing_before_the_body_sends_the_error_then_close_1011() {
    let mut t = server();
    t.s.fail(t.now, &ResponseError::new(503, "shutting down"))
        .unwrap();
    assert_eq!(
        t.out(),
        [r#"{"code":503,"message":"shutting down"}"#, "Close(1011)"]
    );
}

#[test]
fn zero_timeouts_leave_no_deadline_at_now() {
    let mut config = Config::default();
    config.body_timeout = Duration::ZERO;
    config.close_timeout = Duration::ZERO;
    let mut t = server_with(config);
    assert_eq!(t.s.poll_timeout(), Some(t.now));
    t.s.handle_timeout(t.now);
    assert!(t.s.poll_timeout().is_none_or(|d| d > t.now));
    assert_eq!(
        t.out().len(),
        2,
        "the driver sends before the next deadline"
    );
    t.advance(Duration::from_nanos(1));
    assert!(t.s.is_closed());
}

#[test]
fn replies_go_out_in_the_order_the_application_answers() {
    let mut t = streaming();
    t.accepted("c-1");
    t.accepted("c-2");
    t.s.respond(t.now, "c-2", Ok(())).unwrap();
    t.text(&notify("c-3", "agc-9"));
    t.s.respond(t.now, "c-1", Err(RequestError::new(404, "gone")))
        .unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"type":"ok","id":"c-2"}"#,
            r#"{"type":"error","id":"c-3","code":404,"message":"response_id \"agc-9\" not from this stream"}"#,
            r#"{"type":"error","id":"c-1","code":404,"message":"gone"}"#,
        ]
    );
}

#[test]
fn dropped_request_is_answered_500_while_streaming() {
    let mut t = streaming();
    t.accepted("c-1");
    t.s.respond_dropped(t.now, "c-1").unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":500,"message":"the request was dropped without an answer"}"#
        ]
    );
    assert!(matches!(
        t.s.respond_dropped(t.now, "c-1"),
        Err(Error::UnknownRequest)
    ));
}

#[test]
fn dropped_request_is_answered_404_no_longer_running_during_the_drain() {
    let mut t = streaming();
    t.accepted("c-1");
    t.s.finish(t.now).unwrap();
    t.s.respond_dropped(t.now, "c-1").unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":404,"message":"response_id \"agc-1\" is no longer running"}"#,
            "Close(1000)"
        ]
    );
}

// ---- inbound frames are taken, not copied ----

#[test]
fn body_event_hands_back_the_frame_it_was_given() {
    let mut t = server();
    let body = String::from(r#"{"messages":[]}"#);
    let at = body.as_ptr();
    t.s.handle_frame(t.now, Inbound::Text(body));
    let [ServerEvent::Body(body)] = <[ServerEvent; 1]>::try_from(t.events()).unwrap() else {
        panic!()
    };
    assert_eq!(body.as_ptr(), at, "the same buffer, not a copy");
}

#[test]
fn request_event_views_its_fields_in_the_frame() {
    let mut t = streaming();
    let frame = notify("c-1", "agc-1");
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    t.s.handle_frame(t.now, Inbound::Text(frame));
    let [ServerEvent::Request(r)] = <[ServerEvent; 1]>::try_from(t.events()).unwrap() else {
        panic!()
    };
    let RequestKind::AgentCompletionNotify {
        response_id,
        content,
    } = r.kind()
    else {
        unreachable!()
    };
    for field in [r.id(), response_id, content, r.text()] {
        assert!(
            range.contains(&(field.as_ptr() as usize)),
            "{field} is a view"
        );
    }
    assert_eq!((r.id(), response_id, content), ("c-1", "agc-1", r#""hi""#));
}

#[test]
fn escaped_request_id_is_unescaped_and_answered_with_its_value() {
    let mut t = streaming();
    t.text(
        r#"{"id":"c\"1","type":"agent_completion_notify","response_id":"agc-1","content":"hi"}"#,
    );
    let [ServerEvent::Request(r)] = <[ServerEvent; 1]>::try_from(t.events()).unwrap() else {
        panic!()
    };
    assert_eq!(r.id(), "c\"1");
    t.s.respond(t.now, r.id(), Ok(())).unwrap();
    assert_eq!(t.out(), [r#"{"type":"ok","id":"c\"1"}"#]);
}

#[test]
fn any_owned_text_type_can_carry_the_frames() {
    let now = Instant::now();
    let mut s: ServerSession<std::sync::Arc<str>> =
        ServerSession::new(Config::default(), now, SeededRandom::new(1));
    let body: std::sync::Arc<str> = r#"{"messages":[]}"#.into();
    s.handle_frame(now, Inbound::Text(body.clone()));
    assert_eq!(s.poll_event(), Some(ServerEvent::Body(body)));
}

/// Sends a server request and answers it with `answer(id)`: the response
/// the session hands out, and the request's id.
fn answered(answer: impl Fn(&str) -> String) -> (wirestream_proto::ReceivedResponse, String) {
    let mut t = streaming();
    let id =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    t.out();
    t.text(&answer(&id));
    let [
        ServerEvent::ServerRequestEnded {
            outcome: Outcome::Answered(r),
            ..
        },
    ] = <[ServerEvent; 1]>::try_from(t.events()).unwrap()
    else {
        panic!()
    };
    (r, id)
}

#[test]
fn server_response_event_views_status_headers_and_body() {
    let (r, id) = answered(|id| {
        format!(r#"{{"id":"{id}","status":201,"headers":{{"a":"1","b":"x\ny"}},"body":[1,2]}}"#)
    });
    assert_eq!(r.id(), id);
    assert_eq!(r.status(), Some(201));
    assert_eq!(r.method(), None);
    assert_eq!(r.headers().collect::<Vec<_>>(), [("a", "1"), ("b", "x\ny")]);
    assert_eq!(r.body(), Some("[1,2]"));
    assert_eq!(r.to_response().unwrap().status, 201);
}

#[test]
fn response_headers_without_escapes_are_read_in_place() {
    let (r, _) = answered(|id| {
        format!(
            r#"{{"id":"{id}","status":200,"headers":{{ "content-type" : "application/json","x-a":"" }}}}"#
        )
    });
    let headers = r.headers();
    assert_eq!(headers.len(), 2);
    let pairs: Vec<_> = headers.collect();
    assert_eq!(pairs, [("content-type", "application/json"), ("x-a", "")]);
    let text = r.text().as_bytes().as_ptr_range();
    for (name, value) in pairs {
        assert!(text.contains(&name.as_ptr()) && text.contains(&value.as_ptr()));
    }
    assert_eq!(r.header("Content-Type"), Some("application/json"));
}

// ---- tokens: each server request ends once, with its token ----

#[test]
fn each_server_request_ends_once_with_its_token() {
    let now = Instant::now();
    let mut s: ServerSession<String, u32> =
        ServerSession::new(Config::default(), now, SeededRandom::new(1));
    s.handle_frame(now, Inbound::Text("{}".into()));
    let _body = s.poll_event();
    let send = |s: &mut ServerSession<String, u32>, token, timeout| {
        s.send_server_request(now, "GET", &Headers::new(), None, timeout, token)
            .unwrap()
    };
    let answered = send(&mut s, 1, None);
    let timed_out = send(&mut s, 2, Some(Duration::from_secs(1)));
    let _cut = send(&mut s, 3, None);
    s.handle_frame(
        now,
        Inbound::Text(format!(r#"{{"id":"{answered}","status":204}}"#)),
    );
    s.handle_timeout(now + Duration::from_secs(1));
    s.handle_transport_lost(now + Duration::from_secs(1));
    let ends: Vec<(u32, &str)> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            ServerEvent::ServerRequestEnded { id, token, outcome } => {
                assert!(token != 2 || id == timed_out);
                Some((
                    token,
                    match outcome {
                        Outcome::Answered(_) => "answered",
                        Outcome::TimedOut => "timed out",
                        Outcome::SessionEnded => "session ended",
                    },
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        [(1, "answered"), (2, "timed out"), (3, "session ended")]
    );
}

// ---- the engine owns every limit, outbound too ----

fn small_frames() -> Srv {
    let mut config = Config::default();
    config.max_frame_size = 200;
    streaming_with(config)
}

#[test]
fn chunk_over_the_frame_limit_is_refused_and_handed_back() {
    let mut t = small_frames();
    let chunk = RawValue::from_string(format!(r#""{}""#, "x".repeat(199))).unwrap();
    let Err(refused) = t.s.send_chunk(t.now, chunk, ["agc-2"]) else {
        panic!("a chunk over the limit was taken")
    };
    assert!(matches!(refused.error, Error::TooLarge));
    assert_eq!(refused.value.get().len(), 201);
    let at_limit = RawValue::from_string(format!(r#""{}""#, "x".repeat(198))).unwrap();
    t.s.send_chunk(t.now, at_limit, ["agc-2"]).unwrap();
    assert_eq!(t.out().len(), 1);
    assert!(!t.s.has_emitted("agc-3"));
    assert!(matches!(
        t.s.send_chunk_value(t.now, &"y".repeat(199), ["agc-3"]),
        Err(Error::TooLarge)
    ));
    assert!(!t.s.has_emitted("agc-3"), "a refused chunk changes nothing");
}

#[test]
fn server_request_over_the_frame_limit_is_refused_with_its_token() {
    let now = Instant::now();
    let mut config = Config::default();
    config.max_frame_size = 200;
    let mut s: ServerSession<String, &str> = ServerSession::new(config, now, SeededRandom::new(1));
    s.handle_frame(now, Inbound::Text("{}".into()));
    let _body = s.poll_event();
    let body = RawValue::from_string(format!(r#""{}""#, "x".repeat(200))).unwrap();
    let refused = s
        .send_server_request(now, "POST", &Headers::new(), Some(&body), None, "mine")
        .unwrap_err();
    assert!(matches!(refused.error, Error::TooLarge));
    assert_eq!(refused.value, "mine");
    assert_eq!(s.server_requests_pending(), 0);
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn reply_over_the_frame_limit_is_refused_and_the_request_stays_pending() {
    let mut t = small_frames();
    t.accepted("c-1");
    let long = RequestError::new(500, "m".repeat(200));
    assert!(matches!(
        t.s.respond(t.now, "c-1", Err(long)),
        Err(Error::TooLarge)
    ));
    assert_eq!(t.s.client_requests_in_flight(), 1);
    t.s.respond(t.now, "c-1", Ok(())).unwrap();
    assert_eq!(t.out(), [r#"{"type":"ok","id":"c-1"}"#]);
}

#[test]
fn error_frame_over_the_frame_limit_is_refused_and_the_stream_goes_on() {
    let mut t = small_frames();
    let long = ResponseError::new(500, &"m".repeat(200));
    assert!(matches!(t.s.fail(t.now, &long), Err(Error::TooLarge)));
    assert_eq!(t.s.phase(), Phase::Streaming);
    t.s.fail(t.now, &ResponseError::new(500, "short")).unwrap();
    assert_eq!(
        t.out(),
        [r#"{"code":500,"message":"short"}"#, "Close(1011)"]
    );
}

// ---- shutdown ----

#[test]
fn go_away_answers_what_is_unanswered_504_ends_server_requests_then_closes_1001() {
    let mut t = streaming();
    t.accepted("c-1");
    t.accepted("c-2");
    t.s.respond(t.now, "c-1", Ok(())).unwrap();
    let id =
        t.s.send_server_request(t.now, "GET", &Headers::new(), None, None, ())
            .map_err(|r| r.error)
            .unwrap();
    let request = t.out().pop().unwrap();
    t.s.go_away(t.now).unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-2","code":504,"message":"the server is shutting down"}"#,
            "Close(1001)"
        ]
    );
    assert!(request.contains(&id));
    assert_eq!(
        t.events(),
        [
            ServerEvent::ServerRequestEnded {
                id,
                token: (),
                outcome: Outcome::SessionEnded
            },
            ended(EndReason::Local(CloseCode::GOING_AWAY))
        ]
    );
    assert!(matches!(t.s.go_away(t.now), Err(Error::Closed)));
}

#[test]
fn go_away_before_the_body_or_while_draining_closes_1001() {
    let mut t = server();
    t.s.go_away(t.now).unwrap();
    assert_eq!(t.out(), ["Close(1001)"]);
    let mut t = streaming();
    t.accepted("c-1");
    t.s.finish(t.now).unwrap();
    assert_eq!(t.s.phase(), Phase::Draining);
    t.s.go_away(t.now).unwrap();
    assert_eq!(
        t.out(),
        [
            r#"{"type":"error","id":"c-1","code":504,"message":"the server is shutting down"}"#,
            "Close(1001)"
        ]
    );
}
