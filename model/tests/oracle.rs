//! The oracle on PROTOCOL.md's own examples and edges, and the engine's
//! agreement with it where they once departed.

use std::time::Instant;

use serde_json::json;
use wirestream_model::oracle::{AtClient, AtServer, at_client, at_server};
use wirestream_proto::{ClientEvent, ClientSession, Config, Engine, Inbound, SeededRandom};

#[test]
fn protocol_examples_classify_as_the_document_says() {
    let notify = r#"{"id":"9b2e","type":"agent_completion_notify","response_id":"agc-123","content":"also check the tests"}"#;
    assert_eq!(
        at_server(notify),
        AtServer::Notify {
            id: "9b2e".into(),
            response_id: "agc-123".into(),
            content: json!("also check the tests"),
        }
    );
    let response = r#"{"id":"c1f0","status":200,"headers":{"mcp-session-id":"s-1"},"body":{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}}"#;
    assert_eq!(
        at_server(response),
        AtServer::Response {
            id: "c1f0".into(),
            status: 200,
            headers: vec![("mcp-session-id".into(), "s-1".into())],
            body: Some(json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}})),
        }
    );
    assert_eq!(
        at_client(r#"{"type":"ok","id":"9b2e"}"#),
        AtClient::Ok { id: "9b2e".into() }
    );
    assert_eq!(
        at_client(r#"{"type":"error","id":"9b2e","code":404,"message":"gone"}"#),
        AtClient::Error {
            id: "9b2e".into(),
            code: 404,
            message: json!("gone")
        }
    );
    let request = r#"{"id":"c1f0","method":"POST","headers":{"content-type":"application/json"},"body":{"jsonrpc":"2.0","id":1,"method":"tools/list"}}"#;
    assert!(matches!(at_client(request), AtClient::Request { .. }));
    assert_eq!(
        at_client(r#"{"code":500,"message":{"detail":1}}"#),
        AtClient::ErrorFrame {
            code: 500,
            message: json!({"detail":1})
        }
    );
    assert_eq!(
        at_client(r#"{"id":"agc-1","object":"agent.completion.chunk","messages":[]}"#),
        AtClient::Chunk
    );
}

#[test]
fn malformed_envelopes_match_no_rule() {
    for junk in [
        r#"{"id":"x","status":70000}"#,
        r#"{"id":"x","status":-200}"#,
        r#"{"id":"x","status":200.0}"#,
        r#"{"id":"x","status":200,"headers":{"a":1}}"#,
        r#"{"id":"a","id":"b","status":200}"#,
        r#"{"id":"x","status":200} trailing"#,
        "[1,2,3]",
        "",
    ] {
        assert_eq!(at_server(junk), AtServer::Junk, "{junk}");
    }
    assert_eq!(
        at_server(r#"{"id":"x","type":"agent_completion_pause"}"#),
        AtServer::BadRequest { id: "x".into() }
    );
    for junk in [
        r#"{"code":"500","message":"x"}"#,
        r#"{"type":"error","id":"x","code":1}"#,
        r#"{"id":"x","method":"GET","headers":[]}"#,
        "null",
    ] {
        assert_eq!(at_client(junk), AtClient::Junk, "{junk}");
    }
    assert_eq!(at_client(r#"{"type":"ok"}"#), AtClient::Chunk);
}

/// Found by this oracle (fixed in the engine, `proto/tests/regressions.rs`):
/// a JSON object frame that matches no envelope rule is a chunk for a
/// client (§3.3), even when a key the rules read holds a number beyond
/// `f64`'s range or an unpaired surrogate.
#[test]
fn a_client_takes_any_unmatched_object_as_a_chunk() {
    for frame in [
        r#"{"id":"x","status":1e999}"#,
        r#"{"id":"\ud800","status":200}"#,
    ] {
        assert_eq!(at_client(frame), AtClient::Chunk);
        let now = Instant::now();
        let mut c: ClientSession =
            ClientSession::new(Config::default(), now, Box::default(), SeededRandom::new(1))
                .unwrap();
        c.handle_frame(now, Inbound::Text(frame.to_owned()));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Chunk(frame.into())),
            "{frame}"
        );
    }
    // A server request or response whose `headers` is present but not a
    // map of strings is malformed (§3.2, "headers (string→string)"), not a
    // chunk: both the oracle and the engine drop it.
    for junk in [
        r#"{"id":"x","method":"GET","headers":{"a":1e999}}"#,
        r#"{"id":"x","method":"GET","headers":null}"#,
    ] {
        assert_eq!(at_client(junk), AtClient::Junk, "{junk}");
    }
    assert_eq!(
        at_server(r#"{"id":"x","status":200,"code":1e999}"#),
        AtServer::Response {
            id: "x".into(),
            status: 200,
            headers: vec![],
            body: None,
        }
    );
}

/// The message of an error reply is any JSON (§2.2's `ResponseError`).
#[test]
fn an_error_reply_takes_any_json_message() {
    assert_eq!(
        at_client(r#"{"type":"error","id":"x","code":404,"message":{"detail":[1]}}"#),
        AtClient::Error {
            id: "x".into(),
            code: 404,
            message: json!({"detail":[1]}),
        }
    );
}
