//! Whole sessions through the pair harness: a client engine and a server
//! engine back to back on a fake clock.

use std::time::Duration;

use serde_json::value::RawValue;
use wirestream_proto::testing::{Crossed, Pair, Side};
use wirestream_proto::{
    ClientEvent, CloseCode, Config, EndReason, Engine, Headers, Outcome, RequestError, RequestKind,
    ResponseError, ServerEvent,
};

const BODY: &str = r#"{"messages":[],"stream":true}"#;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

/// A pair whose server has the body and has streamed one chunk for `agc-1`.
fn started(config: Config) -> Pair {
    started_with(config.clone(), config)
}

fn started_with(client: Config, server: Config) -> Pair {
    let mut p = Pair::with_configs(client, server, BODY);
    p.drive();
    assert_eq!(p.take_server_events(), [ServerEvent::Body(BODY.into())]);
    p.server
        .send_chunk_value(
            p.now,
            &serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk"}),
            ["agc-1"],
        )
        .unwrap();
    p.drive();
    assert!(matches!(
        p.take_client_events().as_slice(),
        [ClientEvent::Chunk(_)]
    ));
    p
}

fn notify(p: &mut Pair, response_id: &str) -> String {
    let now = p.now;
    let id = p
        .client
        .notify(now, response_id, &raw(r#""also""#), None, ())
        .map_err(|r| r.error)
        .unwrap();
    p.drive();
    id
}

fn the_request(p: &mut Pair) -> String {
    match p.take_server_events().as_slice() {
        [ServerEvent::Request(r)] => {
            let RequestKind::AgentCompletionNotify { response_id, .. } = r.kind() else {
                unreachable!()
            };
            assert_eq!(response_id, "agc-1");
            r.id().to_string()
        }
        other => panic!("expected one request, got {other:?}"),
    }
}

fn ended_notify(p: &mut Pair) -> (String, Outcome<Result<(), RequestError>>) {
    match p.take_client_events().as_slice() {
        [
            ClientEvent::NotifyEnded {
                id,
                token: (),
                outcome,
            },
        ] => (id.clone(), outcome.clone()),
        other => panic!("expected one ended notify, got {other:?}"),
    }
}

#[test]
fn body_then_chunks_then_close_1000() {
    let mut p = started(Config::default());
    for n in 0..3 {
        p.server
            .send_chunk_value(
                p.now,
                &serde_json::json!({ "id": "agc-1", "n": n }),
                ["agc-1"],
            )
            .unwrap();
    }
    let now = p.now;
    p.server.finish(now).unwrap();
    assert!(p.run_to_end(10));
    let texts: Vec<&str> = p.transcript.iter().map(|c| c.frame.as_str()).collect();
    assert_eq!(texts[0], BODY);
    assert_eq!(&texts[texts.len() - 2..], ["Close(1000)", "Close(1000)"]);
    let events = p.take_client_events();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[3],
        ClientEvent::End(EndReason::Peer(Some(CloseCode::NORMAL)))
    );
    assert_eq!(
        p.take_server_events(),
        [ServerEvent::End(EndReason::Local(CloseCode::NORMAL))]
    );
}

#[test]
fn notify_round_trip_answered_ok() {
    let mut p = started(Config::default());
    let id = notify(&mut p, "agc-1");
    assert_eq!(the_request(&mut p), id);
    let now = p.now;
    p.server.respond(now, &id, Ok(())).unwrap();
    p.drive();
    assert_eq!(ended_notify(&mut p), (id, Outcome::Answered(Ok(()))));
}

#[test]
fn notify_for_a_foreign_completion_is_answered_404() {
    let mut p = started(Config::default());
    let id = notify(&mut p, "agc-999");
    assert!(p.take_server_events().is_empty());
    assert_eq!(
        ended_notify(&mut p),
        (
            id,
            Outcome::Answered(Err(RequestError::new(
                404,
                r#"response_id "agc-999" not from this stream"#
            )))
        )
    );
}

#[test]
fn notify_past_the_server_limit_is_answered_429() {
    let mut server = Config::default();
    server.max_client_requests = 1;
    let mut p = started_with(Config::default(), server);
    let first = notify(&mut p, "agc-1");
    the_request(&mut p);
    let second = notify(&mut p, "agc-1");
    let (id, outcome) = ended_notify(&mut p);
    assert_eq!(id, second);
    assert!(matches!(
        outcome,
        Outcome::Answered(Err(RequestError { code: 429, .. }))
    ));
    assert_ne!(first, second);
}

#[test]
fn duplicate_and_unknown_requests_from_a_foreign_client_are_answered_409_and_400() {
    let mut p = started(Config::default());
    let notify =
        r#"{"id":"dup","type":"agent_completion_notify","response_id":"agc-1","content":"x"}"#;
    p.inject_to_server(notify);
    p.inject_to_server(notify);
    p.inject_to_server(r#"{"id":"odd","type":"agent_completion_pause"}"#);
    p.drive();
    assert_eq!(p.take_server_events().len(), 1);
    let replies: Vec<&Crossed> = p
        .transcript
        .iter()
        .filter(|c| c.from == Side::Server)
        .collect();
    let last_two: Vec<&str> = replies[replies.len() - 2..]
        .iter()
        .map(|c| c.frame.as_str())
        .collect();
    assert_eq!(
        last_two,
        [
            r#"{"type":"error","id":"dup","code":409,"message":"request id \"dup\" is already in flight"}"#,
            r#"{"type":"error","id":"odd","code":400,"message":"unknown client request type \"agent_completion_pause\""}"#
        ]
    );
    assert_eq!(
        p.client.stats().unknown_responses,
        2,
        "the client never sent them"
    );
}

#[test]
fn replies_are_drained_before_close_1000() {
    let mut p = started(Config::default());
    let id = notify(&mut p, "agc-1");
    the_request(&mut p);
    let now = p.now;
    p.server.finish(now).unwrap();
    p.drive();
    assert!(!p.client.is_closed(), "the close waits for the reply");
    p.server
        .respond(
            now,
            &id,
            Err(RequestError::new(502, "handing it on failed")),
        )
        .unwrap();
    assert!(p.run_to_end(10));
    let events = p.take_client_events();
    assert_eq!(
        events,
        [
            ClientEvent::NotifyEnded {
                id,
                token: (),
                outcome: Outcome::Answered(Err(RequestError::new(502, "handing it on failed")))
            },
            ClientEvent::End(EndReason::Peer(Some(CloseCode::NORMAL)))
        ]
    );
}

#[test]
fn unanswered_replies_get_504_at_the_drain_timeout() {
    let mut p = started(Config::default());
    let id = notify(&mut p, "agc-1");
    the_request(&mut p);
    let now = p.now;
    p.server.finish(now).unwrap();
    assert!(p.run_to_end(10));
    assert_eq!(p.now - now, Duration::from_secs(5));
    let (ended, outcome) = match p.take_client_events().as_slice() {
        [
            ClientEvent::NotifyEnded {
                id,
                token: (),
                outcome,
            },
            ClientEvent::End(_),
        ] => (id.clone(), outcome.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(ended, id);
    assert!(matches!(
        outcome,
        Outcome::Answered(Err(RequestError { code: 504, .. }))
    ));
}

#[test]
fn server_request_round_trip() {
    let mut p = started(Config::default());
    let now = p.now;
    let headers: Headers = [("content-type", "application/json")].into_iter().collect();
    let id = p
        .server
        .send_server_request(
            now,
            "POST",
            &headers,
            Some(&raw(r#"{"method":"tools/list"}"#)),
            None,
            (),
        )
        .map_err(|r| r.error)
        .unwrap();
    p.drive();
    let ClientEvent::ServerRequest(r) = p.take_client_events().remove(0) else {
        panic!()
    };
    assert_eq!(
        (r.id(), r.body().unwrap()),
        (id.as_str(), r#"{"method":"tools/list"}"#)
    );
    p.client
        .respond(
            now,
            &id,
            200,
            &Headers::new(),
            Some(&raw(r#"{"tools":[]}"#)),
        )
        .unwrap();
    p.drive();
    let [
        ServerEvent::ServerRequestEnded {
            id: ended,
            token: (),
            outcome: Outcome::Answered(resp),
        },
    ] = <[ServerEvent; 1]>::try_from(p.take_server_events()).unwrap()
    else {
        panic!()
    };
    assert_eq!((ended, resp.status()), (id, Some(200)));
}

#[test]
fn server_request_times_out_when_the_client_never_answers() {
    let mut p = started(Config::default());
    let now = p.now;
    let id = p
        .server
        .send_server_request(now, "GET", &Headers::new(), None, None, ())
        .map_err(|r| r.error)
        .unwrap();
    p.drive();
    assert!(p.advance_to_next_deadline());
    assert_eq!(p.now - now, Duration::from_secs(30));
    assert_eq!(
        p.take_server_events(),
        [ServerEvent::ServerRequestEnded {
            id: id.clone(),
            token: (),
            outcome: Outcome::TimedOut
        }]
    );
    p.client
        .respond(p.now, &id, 200, &Headers::new(), None)
        .unwrap();
    p.drive();
    assert!(
        p.take_server_events().is_empty(),
        "the late answer is dropped"
    );
    assert_eq!(p.server.stats().unknown_responses, 1);
}

#[test]
fn server_request_ends_at_once_when_the_client_leaves() {
    let mut p = started(Config::default());
    let now = p.now;
    let id = p
        .server
        .send_server_request(now, "GET", &Headers::new(), None, None, ())
        .map_err(|r| r.error)
        .unwrap();
    p.drive();
    p.cut();
    assert_eq!(p.now, now, "not at its timeout");
    assert_eq!(
        p.take_server_events(),
        [
            ServerEvent::ServerRequestEnded {
                id,
                token: (),
                outcome: Outcome::SessionEnded
            },
            ServerEvent::End(EndReason::TransportLost)
        ]
    );
    assert!(p.client.is_closed() && p.server.is_closed());
}

#[test]
fn client_close_mid_stream_ends_both_sides_and_pending_requests() {
    let mut p = started(Config::default());
    let now = p.now;
    let id = p
        .server
        .send_server_request(now, "GET", &Headers::new(), None, None, ())
        .map_err(|r| r.error)
        .unwrap();
    p.client.close(now).unwrap();
    assert!(p.run_to_end(10));
    let events = p.take_server_events();
    assert_eq!(
        events[events.len() - 2..],
        [
            ServerEvent::ServerRequestEnded {
                id,
                token: (),
                outcome: Outcome::SessionEnded
            },
            ServerEvent::End(EndReason::Peer(Some(CloseCode::NORMAL)))
        ]
    );
}

#[test]
fn failed_stream_reaches_the_client_as_the_error_then_1011() {
    let mut p = started(Config::default());
    let now = p.now;
    p.server
        .fail(now, &ResponseError::new(502, "upstream failed"))
        .unwrap();
    assert!(p.run_to_end(10));
    let events = p.take_client_events();
    let [ClientEvent::StreamFailed(e), ClientEvent::End(end)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (e.code, e.message_str().as_deref()),
        (502, Some("upstream failed"))
    );
    assert_eq!(*end, EndReason::Peer(Some(CloseCode::INTERNAL)));
}

#[test]
fn body_timeout_when_no_client_speaks() {
    let mut config = Config::default();
    config.body_timeout = Duration::from_secs(1);
    let mut p = Pair::new(config, BODY);
    // The client's body never reaches the wire: it is dropped before sending.
    let _body = p.client.poll_transmit();
    assert!(p.run_to_end(10));
    assert_eq!(
        p.transcript
            .iter()
            .map(|c| c.frame.as_str())
            .collect::<Vec<_>>(),
        [
            r#"{"code":408,"message":"no body frame within 1000 ms"}"#,
            "Close(1008)",
            "Close(1008)"
        ]
    );
}
