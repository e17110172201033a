//! Golden test: every frame of the published ObjectiveAI SDK 2.0.11
//! (`tests/data/objectiveai-sdk-2.0.11.json`, copied from shared/vectors) is
//! reproduced byte for byte, and parses back to the same value.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;
use wirestream_proto::classify::{ClientFrame, ServerFrame, classify_client, classify_server};
use wirestream_proto::{
    ClientRequest, ClientRequestKind, ClientResponse, Config, Engine, Headers, Inbound, Json,
    ResponseError, SeededRandom, ServerEvent, ServerRequest, ServerResponse, ServerSession,
    Transmit,
};

fn vectors() -> BTreeMap<String, serde_json::Value> {
    serde_json::from_str(include_str!("data/objectiveai-sdk-2.0.11.json")).unwrap()
}

fn frame(name: &str) -> String {
    vectors()[name].as_str().unwrap().to_owned()
}

fn raw(json: &str) -> Json<'static> {
    Json::owned(RawValue::from_string(json.to_owned()).unwrap())
}

fn headers(pairs: &[(&'static str, &'static str)]) -> Headers<'static> {
    pairs.iter().copied().collect()
}

fn golden<T: Serialize>(name: &str, value: &T) -> String {
    let expected = frame(name);
    assert_eq!(serde_json::to_string(value).unwrap(), expected, "{name}");
    expected
}

/// Every entry of the vectors file is checked here; a new entry fails this
/// test until it is.
#[test]
fn every_vector_is_covered() {
    let covered = [
        "client_request.notify_text",
        "client_request.notify_parts",
        "client_response.ok",
        "client_response.error_404",
        "server_request.full",
        "server_request.bare",
        "server_response.full",
        "server_response.bare",
        "response_error",
        "body_error_example",
        "agent_completion_chunk.minimal",
        "agent_completion_chunk.minimal.ids",
    ];
    let names: Vec<String> = vectors().into_keys().collect();
    let mut covered: Vec<String> = covered.iter().map(|s| s.to_string()).collect();
    covered.sort();
    assert_eq!(names, covered);
}

#[test]
fn client_requests_match_the_sdk() {
    for (name, id, content) in [
        (
            "client_request.notify_text",
            "c-1",
            r#""also check the tests""#,
        ),
        (
            "client_request.notify_parts",
            "c-2",
            r#"[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]"#,
        ),
    ] {
        let request = ClientRequest {
            id: id.into(),
            kind: ClientRequestKind::AgentCompletionNotify {
                response_id: "agc-1".into(),
                content: raw(content),
            },
        };
        let text = golden(name, &request);
        assert_eq!(classify_server(&text), ServerFrame::Request(request));
    }
}

#[test]
fn client_responses_match_the_sdk() {
    let ok = ClientResponse::Ok { id: "c-1".into() };
    let text = golden("client_response.ok", &ok);
    assert_eq!(classify_client(&text), ClientFrame::Response(ok));

    let error = ClientResponse::Error {
        id: "c-1".into(),
        code: 404,
        message: r#"response_id "agc-9" not from this stream"#.into(),
    };
    let text = golden("client_response.error_404", &error);
    assert_eq!(classify_client(&text), ClientFrame::Response(error));
}

#[test]
fn server_requests_match_the_sdk() {
    let full = ServerRequest {
        id: "s-1".into(),
        method: "POST".into(),
        headers: headers(&[
            ("content-type", "application/json"),
            ("mcp-session-id", "s-1"),
        ]),
        body: Some(raw(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
        )),
    };
    let text = golden("server_request.full", &full);
    assert_eq!(classify_client(&text), ClientFrame::Request(full));

    let bare = ServerRequest {
        id: "s-2".into(),
        method: "DELETE".into(),
        headers: Headers::new(),
        body: None,
    };
    let text = golden("server_request.bare", &bare);
    assert_eq!(classify_client(&text), ClientFrame::Request(bare));
}

#[test]
fn server_responses_match_the_sdk() {
    let full = ServerResponse {
        id: "s-1".into(),
        status: 200,
        headers: headers(&[
            ("content-type", "application/json"),
            ("mcp-session-id", "s-1"),
        ]),
        body: Some(raw(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#)),
    };
    let text = golden("server_response.full", &full);
    assert_eq!(classify_server(&text), ServerFrame::Response(full));

    let bare = ServerResponse {
        id: "s-2".into(),
        status: 202,
        headers: Headers::new(),
        body: None,
    };
    let text = golden("server_response.bare", &bare);
    assert_eq!(classify_server(&text), ServerFrame::Response(bare));
}

#[test]
fn error_frames_match_the_sdk() {
    let error = ResponseError::new(400, "expected text body frame, got binary");
    let text = golden("response_error", &error);
    assert_eq!(classify_client(&text), ClientFrame::Error(error));
    let body_error = ResponseError::new(
        400,
        "failed to deserialize body frame: missing field `messages` at line 1 column 2",
    );
    let text = golden("body_error_example", &body_error);
    assert_eq!(classify_client(&text), ClientFrame::Error(body_error));
}

/// The engine's own frames, not just the wire types, are the SDK's.
#[test]
fn server_session_emits_the_sdk_frames() {
    #[derive(Serialize)]
    struct Chunk {
        id: &'static str,
        created: u64,
        messages: [(); 0],
        object: &'static str,
        upstream: &'static str,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        messages: Vec<serde_json::Value>,
    }
    let now = Instant::now();
    let texts = |s: &mut ServerSession<&str>| -> Vec<String> {
        std::iter::from_fn(|| s.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Text(t) => Some(t),
                Transmit::Ping | Transmit::Close(_) => None,
            })
            .collect()
    };

    let mut s: ServerSession<&str> =
        ServerSession::new(Config::default(), now, SeededRandom::new(0));
    s.handle_frame(now, Inbound::Binary);
    assert_eq!(texts(&mut s), [frame("response_error")]);

    let mut s: ServerSession<&str> =
        ServerSession::new(Config::default(), now, SeededRandom::new(0));
    s.handle_frame(now, Inbound::Text("{}"));
    let Some(ServerEvent::Body(body)) = s.poll_event() else {
        panic!()
    };
    s.reject_body(now, serde_json::from_str::<Body>(body).unwrap_err())
        .unwrap();
    assert_eq!(texts(&mut s), [frame("body_error_example")]);

    let mut s: ServerSession<&str> =
        ServerSession::new(Config::default(), now, SeededRandom::new(0));
    s.handle_frame(now, Inbound::Text(r#"{"messages":[]}"#));
    assert!(matches!(s.poll_event(), Some(ServerEvent::Body(_))));
    let ids: Vec<String> =
        serde_json::from_value(vectors()["agent_completion_chunk.minimal.ids"].clone()).unwrap();
    let chunk = Chunk {
        id: "agc-1",
        created: 1767225600,
        messages: [],
        object: "agent.completion.chunk",
        upstream: "mock",
    };
    s.send_chunk_value(now, &chunk, &ids).unwrap();
    let sent = texts(&mut s);
    assert_eq!(sent, [frame("agent_completion_chunk.minimal")]);
    assert_eq!(classify_client(&sent[0]), ClientFrame::Chunk);

    let notify = frame("client_request.notify_text");
    s.handle_frame(now, Inbound::Text(notify.as_str()));
    assert!(matches!(s.poll_event(), Some(ServerEvent::Request(_))));
    s.respond(now, "c-1", Ok(())).unwrap();
    assert_eq!(texts(&mut s), [frame("client_response.ok")]);
    s.handle_frame(
        now,
        Inbound::Text(
            r#"{"id":"c-1","type":"agent_completion_notify","response_id":"agc-9","content":"x"}"#,
        ),
    );
    assert_eq!(texts(&mut s), [frame("client_response.error_404")]);
}
