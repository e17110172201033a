//! Transport selection (PROTOCOL.md §1).

use wirestream_proto::{Transport, body_wants_stream, select_transport, wants_websocket};

fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a str, &'a str)> {
    pairs.iter().copied()
}

fn pick(pairs: &[(&str, &str)], stream: bool) -> Transport {
    select_transport(pairs.iter().map(|(k, v)| (*k, *v)), stream)
}

#[test]
fn upgrade_websocket_selects_websocket_case_insensitively() {
    for (name, value) in [
        ("Upgrade", "websocket"),
        ("upgrade", "WebSocket"),
        ("UPGRADE", "WEBSOCKET"),
        ("Upgrade", " websocket "),
    ] {
        assert!(
            wants_websocket(headers(&[(name, value)])),
            "{name}: {value}"
        );
    }
}

#[test]
fn upgrade_token_may_stand_in_a_comma_separated_list() {
    assert!(wants_websocket(headers(&[("Upgrade", "h2c, websocket")])));
    assert!(wants_websocket(headers(&[("Upgrade", "websocket, h2c")])));
    assert!(wants_websocket(headers(&[
        ("Upgrade", "h2c"),
        ("Upgrade", "websocket")
    ])));
}

#[test]
fn other_upgrades_and_lookalikes_do_not_select_websocket() {
    for (name, value) in [
        ("Upgrade", "h2c"),
        ("Upgrade", "websockets"),
        ("Upgrade", "web socket"),
        ("Upgrade", ""),
        ("Connection", "websocket"),
        ("X-Upgrade", "websocket"),
    ] {
        assert!(
            !wants_websocket(headers(&[(name, value)])),
            "{name}: {value}"
        );
    }
}

#[test]
fn header_values_may_be_bytes() {
    let pairs: [(&str, &[u8]); 1] = [("upgrade", b"websocket")];
    assert!(wants_websocket(pairs.iter().map(|(k, v)| (*k, *v))));
}

#[test]
fn x_transport_header_is_ignored() {
    assert_eq!(pick(&[("X-Transport", "ws")], false), Transport::Unary);
    assert_eq!(
        pick(&[("X-Transport", "ws"), ("Upgrade", "websocket")], false),
        Transport::WebSocket
    );
}

#[test]
fn without_an_upgrade_the_stream_flag_selects_sse_or_unary() {
    assert_eq!(
        pick(&[("Content-Type", "application/json")], true),
        Transport::Sse
    );
    assert_eq!(
        pick(&[("Content-Type", "application/json")], false),
        Transport::Unary
    );
    assert_eq!(
        pick(&[("Upgrade", "websocket")], false),
        Transport::WebSocket
    );
}

#[test]
fn body_stream_flag_is_true_only_for_a_top_level_true() {
    assert!(body_wants_stream(br#"{"messages":[],"stream":true}"#));
    assert!(body_wants_stream(
        br#"{"stream": true, "x": {"stream": false}}"#
    ));
    for body in [
        &br#"{"stream":false}"#[..],
        br#"{"stream":"true"}"#,
        br#"{"stream":1}"#,
        br#"{"messages":[]}"#,
        br#"{"x":{"stream":true}}"#,
        br#"[{"stream":true}]"#,
        b"not json",
        b"",
    ] {
        assert!(
            !body_wants_stream(body),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
