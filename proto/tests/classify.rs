//! Classification rules the scanner must keep (PROTOCOL.md §3.3), each on
//! both sides and in every spelling a key can take.

use std::time::Instant;

use wirestream_proto::classify::{
    self, Client, ClientFrame, Server, ServerFrame, classify_client, classify_server,
};
use wirestream_proto::{Config, Engine as _, Inbound, SeededRandom, ServerSession, Transmit};

#[test]
fn a_key_the_rules_read_given_twice_makes_the_frame_junk() {
    for frame in [
        r#"{"id":"s-1","status":200,"status":204}"#,
        // The same key, spelled with an escape: still the same key.
        r#"{"id":"s-1","\u0069d":"s-2","status":200}"#,
        r#"{"id":"c-1","type":"agent_completion_notify","response_id":"a","response_id":"b","content":"x"}"#,
    ] {
        assert_eq!(classify_server(frame), ServerFrame::Junk, "{frame}");
        assert!(matches!(classify::server(frame), Server::Junk), "{frame}");
    }
    let ok_twice = r#"{"type":"ok","id":"c-1","id":"c-2"}"#;
    assert_eq!(classify_client(ok_twice), ClientFrame::Junk);
    assert!(matches!(classify::client(ok_twice), Client::Junk));
    // A key no rule reads may repeat: the chunk is still a chunk.
    let chunk = r#"{"object":"agent.completion.chunk","n":1,"n":2}"#;
    assert_eq!(classify_client(chunk), ClientFrame::Chunk);
}

/// Found in review against the model's oracle: a header name serde_json
/// cannot unescape made the whole frame junk, so a chunk carrying such a
/// `headers` field was dropped where PROTOCOL.md §3.3 delivers it.
#[test]
fn a_name_that_does_not_unescape_refuses_the_headers_not_the_frame() {
    // In a top-level key, the frame is not one the rules can read.
    let frame = r#"{"id":"s-1","status":200,"\ud800":1}"#;
    assert_eq!(classify_server(frame), ServerFrame::Junk);
    assert_eq!(classify_client(frame), ClientFrame::Junk);
    // In a header name: a response or a request is malformed ...
    let response = r#"{"id":"s-1","status":200,"headers":{"\ud800":"x"}}"#;
    assert_eq!(classify_server(response), ServerFrame::Junk);
    let request = r#"{"id":"s-1","method":"GET","headers":{"\ud800":"x"}}"#;
    assert_eq!(classify_client(request), ClientFrame::Junk);
    // ... and anything else is a chunk, as with any other odd `headers`.
    for chunk in [
        r#"{"object":"chunk","headers":{"\udc00":"x"}}"#,
        r#"{"id":"s-1","status":200,"headers":{"\ud800":"x"}}"#,
        r#"{"object":"chunk","delta":{"\ud800":"x"}}"#,
    ] {
        assert_eq!(classify_client(chunk), ClientFrame::Chunk, "{chunk}");
        assert!(matches!(classify::client(chunk), Client::Chunk), "{chunk}");
    }
}

#[test]
fn refusals_echo_at_most_256_bytes_of_the_id() {
    let now = Instant::now();
    let mut s: ServerSession = ServerSession::new(Config::default(), now, SeededRandom::new(1));
    s.handle_frame(now, Inbound::Text("{}".to_owned()));
    let _body = s.poll_event();
    // 'é' is two bytes: byte 256 falls inside one, so the cut goes back a
    // byte to the character boundary.
    let response_id = format!("x{}", "é".repeat(200));
    let notify = serde_json::json!({
        "id": "c-1", "type": "agent_completion_notify", "response_id": response_id, "content": "x"
    });
    s.handle_frame(now, Inbound::Text(notify.to_string()));
    let Some(Transmit::Text(reply)) = s.poll_transmit() else {
        panic!("the 404")
    };
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["code"], 404);
    let echoed = &response_id[..255];
    assert_eq!(
        reply["message"],
        format!("response_id {echoed:?} not from this stream")
    );
}
