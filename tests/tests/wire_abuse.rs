//! Wire abuse over raw TCP, on tokio and on smol: bad upgrade requests and
//! hand-built WebSocket frames (masked by hand), each on a fresh
//! connection, each answered as RFC 6455 asks; then a good session
//! ([`whole_session`]) completes on the same server.
//!
//! | case | answer |
//! |---|---|
//! | `Sec-WebSocket-Key` not 16 bytes of base64 | HTTP `400` |
//! | no `Sec-WebSocket-Version` | HTTP `400` |
//! | `Sec-WebSocket-Version: 8` | HTTP `426`, `Sec-WebSocket-Version: 13` |
//! | garbage instead of an HTTP request | HTTP `400` |
//! | `POST` instead of `GET` | HTTP `405`, `Allow: GET` |
//! | 16 KiB of request head without its end | HTTP `431` |
//! | 125 headers (httparse's limit in tungstenite is 124) | HTTP `431` |
//! | `Upgrade: websocket, h2c` | HTTP `101`, a session |
//! | an unmasked client frame | `Close(1002)` |
//! | a ping of 126 bytes (control frame over 125) | `Close(1002)` |
//! | a reserved opcode (data `0x3`, control `0xB`) | `Close(1002)` |
//! | RSV1 set without an extension | `Close(1002)` |
//! | a continuation with nothing to continue | `Close(1002)` |
//! | a close frame with a 1-byte payload | `Close(1002)` |
//! | a close frame with code 1005 (never sent) | `Close(1002)` (tungstenite's reply) |
//! | invalid UTF-8 in a text frame | `Close(1007)` |
//! | invalid UTF-8 in a close reason | `Close(1007)` |
//! | the body in three fragments, a ping between | the pong, the chunk, `Close(1000)` |
//! | 10,000 pings, then the body | the chunk, `Close(1000)` |
//! | a frame header saying 2^62 bytes | `413` error frame, `Close(1009)` |
//! | a frame header saying 17 MiB (limit 16 MiB) | `413` error frame, `Close(1009)` |
//! | half a frame, then silence | `408` error frame, `Close(1008)` at the body timeout |
//! | half a request head, then silence | dropped, no answer, at the body timeout |

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;
use wirestream_proto::CloseCode;
use wirestream_runtime::{Client, EndReason, ResponseError, Runtime, Session};
use wirestream_tests::{
    TestServer, on_both_runtimes, patiently, quick_config, whole_session, whole_session_handler,
};

on_both_runtimes!(
    bad_key_is_answered_400,
    missing_version_is_answered_400,
    version_8_is_answered_426_with_version_13,
    garbage_is_answered_400,
    post_is_answered_405,
    head_of_16_kib_is_answered_431,
    too_many_headers_are_answered_431,
    upgrade_token_list_upgrades,
    unmasked_frame_closes_1002,
    oversize_control_frame_closes_1002,
    reserved_data_opcode_closes_1002,
    reserved_control_opcode_closes_1002,
    rsv_bit_closes_1002,
    stray_continuation_closes_1002,
    one_byte_close_closes_1002,
    invalid_close_code_closes_1002,
    invalid_utf8_text_closes_1007,
    invalid_utf8_close_reason_closes_1007,
    fragmented_body_with_a_ping_between_is_served,
    ten_thousand_pings_are_served,
    length_of_2_pow_62_is_answered_413_1009,
    frame_of_17_mib_is_answered_413_1009,
    half_a_frame_then_silence_times_out_1008,
    half_a_request_head_then_silence_is_dropped,
);

type Handler =
    fn(serde_json::Value, Session) -> BoxFuture<'static, Result<(), ResponseError<'static>>>;

/// [`whole_session_handler`] for the good session (body `{"hello": …}`);
/// any other body is echoed in one chunk, then the stream finishes.
fn handler(
    body: serde_json::Value,
    mut session: Session,
) -> BoxFuture<'static, Result<(), ResponseError<'static>>> {
    Box::pin(async move {
        if body.get("hello").is_some() {
            return whole_session_handler(body, session).await;
        }
        let _ = session
            .send(&json!({"id": "agc-1", "echo": body}), ["agc-1"])
            .await;
        Ok(())
    })
}

async fn start<R: Runtime>(rt: &R) -> TestServer<R> {
    TestServer::start(rt, quick_config(), handler as Handler).await
}

/// A good session completes on `server` after the abuse.
async fn good_session<R: Runtime>(rt: &R, server: &TestServer<R>) {
    whole_session(rt, Client::new(rt.clone(), &server.url)).await;
}

async fn tcp<R: Runtime>(rt: &R, server: &TestServer<R>) -> R::Stream {
    rt.connect("127.0.0.1", server.addr.port())
        .await
        .expect("connect")
}

/// An upgrade request with these header lines (each ending `\r\n`).
fn request(lines: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n",
        wirestream_demo::PATH
    )
}

const CONNECTION: &str = "Connection: Upgrade\r\n";
const UPGRADE: &str = "Upgrade: websocket\r\n";
const VERSION: &str = "Sec-WebSocket-Version: 13\r\n";
const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// Reads an HTTP response head; its status and its head in lower case.
async fn response<R: Runtime, S: futures_util::AsyncRead + Unpin>(
    rt: &R,
    stream: &mut S,
) -> (u16, String) {
    let mut head = Vec::new();
    patiently(rt, async {
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read");
            assert_eq!(n, 1, "the connection ended within the response head");
            head.push(byte[0]);
        }
    })
    .await;
    let head = String::from_utf8(head).expect("ASCII").to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, head)
}

/// Sends `request` on a fresh connection; the answer's status and head.
async fn answer_to<R: Runtime>(rt: &R, server: &TestServer<R>, request: &[u8]) -> (u16, String) {
    let mut stream = tcp(rt, server).await;
    stream.write_all(request).await.expect("write");
    response(rt, &mut stream).await
}

/// A fresh connection upgraded by hand.
async fn upgraded<R: Runtime>(rt: &R, server: &TestServer<R>) -> R::Stream {
    let mut stream = tcp(rt, server).await;
    let head = request(&format!("{CONNECTION}{UPGRADE}{VERSION}{KEY}"));
    stream.write_all(head.as_bytes()).await.expect("write");
    let (status, head) = response(rt, &mut stream).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    stream
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame's header: first byte (FIN, RSV, opcode), then the length, then
/// the mask key if `masked`.
fn header(first: u8, len: u64, masked: bool) -> Vec<u8> {
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match len {
        0..=125 => out.push(bit | len as u8),
        126..=0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
    out
}

/// A whole client frame, masked.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, true);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

const TEXT: u8 = 0x81;
const CONT_FINAL: u8 = 0x80;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;

/// What the server sent until its close frame: texts, pongs, close code.
struct Heard {
    texts: Vec<String>,
    pongs: usize,
    close: u16,
}

/// Reads the server's (unmasked) frames up to and including its close.
async fn until_close<R: Runtime>(rt: &R, stream: &mut R::Stream) -> Heard {
    let mut heard = Heard {
        texts: Vec::new(),
        pongs: 0,
        close: 0,
    };
    patiently(rt, async {
        loop {
            let mut head = [0; 2];
            stream.read_exact(&mut head).await.expect("a frame header");
            assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0; 2];
                    stream.read_exact(&mut n).await.expect("a length");
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0; 8];
                    stream.read_exact(&mut n).await.expect("a length");
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0; usize::try_from(len).expect("a small frame")];
            stream.read_exact(&mut payload).await.expect("a payload");
            match head[0] & 0x0f {
                0x1 => heard.texts.push(String::from_utf8(payload).expect("UTF-8")),
                0xa => heard.pongs += 1,
                0x8 => {
                    heard.close = u16::from_be_bytes([payload[0], payload[1]]);
                    return;
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    })
    .await;
    heard
}

/// Upgrades, sends `bytes`, and expects the server's close with `code`,
/// before it an error frame of status `error` if any (else no text); then
/// the session's `end`, then a good session on the same server.
async fn answered<R: Runtime>(rt: R, bytes: &[u8], error: Option<u16>, code: u16, end: EndReason) {
    let mut server = start(&rt).await;
    let mut stream = upgraded(&rt, &server).await;
    stream.write_all(bytes).await.expect("write");
    let heard = until_close(&rt, &mut stream).await;
    assert_eq!(heard.close, code);
    match error {
        None => assert!(heard.texts.is_empty(), "{:?}", heard.texts),
        Some(status) => {
            let prefix = format!(r#"{{"code":{status},"#);
            assert_eq!(heard.texts.len(), 1, "{:?}", heard.texts);
            assert!(heard.texts[0].starts_with(&prefix), "{:?}", heard.texts);
        }
    }
    assert_eq!(server.next_end().await, end);
    drop(stream);
    good_session(&rt, &server).await;
}

/// [`answered`] with a close alone.
async fn abuse_closes<R: Runtime>(rt: R, bytes: &[u8], code: u16, end: EndReason) {
    answered(rt, bytes, None, code, end).await;
}

async fn refused_with<R: Runtime>(rt: R, request: &str, status: u16) -> String {
    let server = start(&rt).await;
    let (got, head) = answer_to(&rt, &server, request.as_bytes()).await;
    assert_eq!(got, status, "{head}");
    good_session(&rt, &server).await;
    head
}

async fn bad_key_is_answered_400<R: Runtime>(rt: R) {
    let key = "Sec-WebSocket-Key: not-sixteen-bytes\r\n";
    refused_with(
        rt,
        &request(&format!("{CONNECTION}{UPGRADE}{VERSION}{key}")),
        400,
    )
    .await;
}

async fn missing_version_is_answered_400<R: Runtime>(rt: R) {
    refused_with(rt, &request(&format!("{CONNECTION}{UPGRADE}{KEY}")), 400).await;
}

async fn version_8_is_answered_426_with_version_13<R: Runtime>(rt: R) {
    let version = "Sec-WebSocket-Version: 8\r\n";
    let head = refused_with(
        rt,
        &request(&format!("{CONNECTION}{UPGRADE}{version}{KEY}")),
        426,
    )
    .await;
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");
}

async fn garbage_is_answered_400<R: Runtime>(rt: R) {
    let server = start(&rt).await;
    let garbage = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 garbage\r\n\r\n";
    let (status, head) = answer_to(&rt, &server, garbage).await;
    assert_eq!(status, 400, "{head}");
    good_session(&rt, &server).await;
}

async fn post_is_answered_405<R: Runtime>(rt: R) {
    let head = request(&format!("{CONNECTION}{UPGRADE}{VERSION}{KEY}")).replacen("GET", "POST", 1);
    let head = refused_with(rt, &head, 405).await;
    assert!(head.contains("\r\nallow: get\r\n"), "{head}");
}

/// Exactly the 16 KiB the server reads (so that nothing is left unread,
/// which would reset the connection under the answer).
async fn head_of_16_kib_is_answered_431<R: Runtime>(rt: R) {
    let mut head = request(&format!("{CONNECTION}{UPGRADE}{VERSION}{KEY}"));
    head.truncate(head.len() - 2);
    head.push_str("X-Pad: ");
    head.push_str(&"a".repeat((16 << 10) - head.len()));
    refused_with(rt, &head, 431).await;
}

async fn too_many_headers_are_answered_431<R: Runtime>(rt: R) {
    let pad = "X-Pad: a\r\n".repeat(125);
    refused_with(
        rt,
        &request(&format!("{CONNECTION}{UPGRADE}{VERSION}{KEY}{pad}")),
        431,
    )
    .await;
}

async fn upgrade_token_list_upgrades<R: Runtime>(rt: R) {
    let mut server = start(&rt).await;
    let mut stream = tcp(&rt, &server).await;
    let upgrade = "Upgrade: WebSocket, h2c\r\n";
    let head = request(&format!(
        "Connection: keep-alive, upgrade\r\n{upgrade}{VERSION}{KEY}"
    ));
    stream.write_all(head.as_bytes()).await.expect("write");
    let (status, head) = response(&rt, &mut stream).await;
    assert_eq!(status, 101, "{head}");
    served(&rt, &mut server, stream, &frame(TEXT, br#"{"a":"bc"}"#)).await;
    good_session(&rt, &server).await;
}

const PROTOCOL: EndReason = EndReason::Local(CloseCode::PROTOCOL);
const INVALID: EndReason = EndReason::Local(CloseCode::INVALID_PAYLOAD);

async fn unmasked_frame_closes_1002<R: Runtime>(rt: R) {
    let mut bytes = header(TEXT, 2, false);
    bytes.extend_from_slice(b"{}");
    abuse_closes(rt, &bytes, 1002, PROTOCOL).await;
}

async fn oversize_control_frame_closes_1002<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(PING, &[7; 126]), 1002, PROTOCOL).await;
}

async fn reserved_data_opcode_closes_1002<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(0x83, b"{}"), 1002, PROTOCOL).await;
}

async fn reserved_control_opcode_closes_1002<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(0x8b, b""), 1002, PROTOCOL).await;
}

async fn rsv_bit_closes_1002<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(TEXT | 0x40, b"{}"), 1002, PROTOCOL).await;
}

async fn stray_continuation_closes_1002<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(CONT_FINAL, b"{}"), 1002, PROTOCOL).await;
}

async fn one_byte_close_closes_1002<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(CLOSE, &[3]), 1002, PROTOCOL).await;
}

async fn invalid_close_code_closes_1002<R: Runtime>(rt: R) {
    // tungstenite answers a code that may not be sent with 1002 and hands
    // the peer's close on as 1002; the session ends as closed by the peer.
    let end = EndReason::Peer(Some(CloseCode::PROTOCOL));
    abuse_closes(rt, &frame(CLOSE, &1005u16.to_be_bytes()), 1002, end).await;
}

async fn invalid_utf8_text_closes_1007<R: Runtime>(rt: R) {
    abuse_closes(rt, &frame(TEXT, b"{\"a\":\"\xff\xfe\"}"), 1007, INVALID).await;
}

async fn invalid_utf8_close_reason_closes_1007<R: Runtime>(rt: R) {
    let payload = [0x03, 0xe8, 0xc3, 0x28];
    abuse_closes(rt, &frame(CLOSE, &payload), 1007, INVALID).await;
}

/// Sends `bytes` on the upgraded `stream`, and expects the echo of
/// `{"a":"bc"}`, then `Close(1000)`; answers the close; the pongs heard.
async fn served<R: Runtime>(
    rt: &R,
    server: &mut TestServer<R>,
    mut stream: R::Stream,
    bytes: &[u8],
) -> usize {
    stream.write_all(bytes).await.expect("write");
    let heard = until_close(rt, &mut stream).await;
    assert_eq!(heard.texts, [r#"{"echo":{"a":"bc"},"id":"agc-1"}"#]);
    assert_eq!(heard.close, 1000);
    stream
        .write_all(&frame(CLOSE, &1000u16.to_be_bytes()))
        .await
        .expect("write");
    assert_eq!(server.next_end().await, EndReason::Local(CloseCode::NORMAL));
    heard.pongs
}

async fn fragmented_body_with_a_ping_between_is_served<R: Runtime>(rt: R) {
    let mut server = start(&rt).await;
    let mut bytes = frame(0x01, br#"{"a""#);
    bytes.extend(frame(PING, b"between"));
    bytes.extend(frame(0x00, br#":"b"#));
    bytes.extend(frame(CONT_FINAL, br#"c"}"#));
    let stream = upgraded(&rt, &server).await;
    assert_eq!(served(&rt, &mut server, stream, &bytes).await, 1);
    good_session(&rt, &server).await;
}

async fn ten_thousand_pings_are_served<R: Runtime>(rt: R) {
    // Pings are not the body: the body timeout runs through them (a debug
    // build answers 10,000 in more than the quick 200 ms).
    let mut config = quick_config();
    config.body_timeout = Duration::from_secs(5);
    let mut server = TestServer::start(&rt, config, handler as Handler).await;
    let mut bytes = Vec::new();
    for _ in 0..10_000 {
        bytes.extend(frame(PING, b"p"));
    }
    bytes.extend(frame(TEXT, br#"{"a":"bc"}"#));
    let stream = upgraded(&rt, &server).await;
    let pongs = served(&rt, &mut server, stream, &bytes).await;
    // tungstenite keeps one pong pending at most: they are never queued.
    assert!((1..=10_000).contains(&pongs), "{pongs}");
    good_session(&rt, &server).await;
}

/// A frame header saying `len` bytes and nothing more: the 413 error
/// frame, then `Close(1009)`, without the payload ever being allocated.
async fn too_big<R: Runtime>(rt: R, len: u64) {
    let end = EndReason::Local(CloseCode::TOO_BIG);
    answered(rt, &header(TEXT, len, true), Some(413), 1009, end).await;
}

async fn length_of_2_pow_62_is_answered_413_1009<R: Runtime>(rt: R) {
    too_big(rt, 1 << 62).await;
}

async fn frame_of_17_mib_is_answered_413_1009<R: Runtime>(rt: R) {
    too_big(rt, 17 << 20).await;
}

/// The body timeout (200 ms) runs through a frame half read: the 408 error
/// frame, then `Close(1008)`.
async fn half_a_frame_then_silence_times_out_1008<R: Runtime>(rt: R) {
    let whole = frame(TEXT, &[b' '; 100]);
    let end = EndReason::Local(CloseCode::POLICY);
    answered(rt, &whole[..whole.len() / 2], Some(408), 1008, end).await;
}

async fn half_a_request_head_then_silence_is_dropped<R: Runtime>(rt: R) {
    let server = start(&rt).await;
    let mut stream = tcp(&rt, &server).await;
    let head = request(&format!("{CONNECTION}{UPGRADE}"));
    stream
        .write_all(&head.as_bytes()[..head.len() - 2])
        .await
        .expect("write");
    let started = rt.now();
    let mut rest = Vec::new();
    let _ = patiently(&rt, stream.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(rt.now() - started >= Duration::from_millis(150));
    good_session(&rt, &server).await;
}
