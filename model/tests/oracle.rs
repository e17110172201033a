//! The oracle on PROTOCOL.md's own examples and edges, and the engine's
//! known departure from it (an ignored test until the engine is fixed).

use std::time::Instant;

use serde_json::json;
use wirestream_model::oracle::{
    AtClient, AtServer, at_client, at_server, engine_drops_undecodable,
};
use wirestream_proto::{ClientEvent, ClientSession, Config, Inbound, SeededRandom};

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
            message: "gone".into()
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

/// The engine's departure from PROTOCOL.md that the oracle found (see
/// `oracle::engine_drops_undecodable`): a JSON object frame that matches
/// no envelope rule is a chunk for a client (§3.3), but the engine drops it
/// as junk when a key it decodes holds a number beyond `f64`'s range or an
/// unpaired surrogate. Ignored until the engine is fixed; the model
/// tolerates exactly this meanwhile.
#[test]
#[ignore = "known engine departure, reported; see oracle::engine_drops_undecodable"]
fn a_client_takes_any_unmatched_object_as_a_chunk() {
    for frame in [
        r#"{"id":"x","status":1e999}"#,
        r#"{"id":"\ud800","status":200}"#,
    ] {
        assert_eq!(at_client(frame), AtClient::Chunk);
        assert!(engine_drops_undecodable(frame));
        let now = Instant::now();
        let mut c = ClientSession::new(Config::default(), Box::default(), SeededRandom::new(1));
        c.handle_frame(now, Inbound::Text(frame));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Chunk(frame.into())),
            "{frame}"
        );
    }
}
