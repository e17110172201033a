//! The integration suite: every scenario runs on tokio and on smol, over
//! real loopback TCP, against a server on 127.0.0.1:0. Each names the rule
//! of PROTOCOL.md it pins.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_tungstenite::tungstenite::{Bytes, Message};
use futures_channel::{mpsc, oneshot};
use futures_util::future::{Either, select};
use futures_util::{AsyncWriteExt, FutureExt, StreamExt};
use serde_json::json;
use wirestream_demo::{self as demo, AgentCompletionChunk, DemoBody};
use wirestream_proto::CloseCode;
use wirestream_runtime::tungstenite::handshake::server::{ErrorResponse, Request};
use wirestream_runtime::tungstenite::http::StatusCode;
use wirestream_runtime::{
    Client, Config, ConnectError, Direction, EndReason, HandlerResult, HttpRequest, HttpResponse,
    Listener, NotifyError, Registered, RequestError, RequestFailed, ResponseError, Runtime, Server,
    Session, StreamError, only_path, refuse, tungstenite,
};
use wirestream_tests::{
    Raw, TestServer, eventually, on_both_runtimes, patiently, quick_config, within,
};

on_both_runtimes!(
    happy_path,
    refused_path_is_404,
    body_not_the_body_type,
    body_binary,
    body_timeout,
    handshake_timeout,
    body_oversize,
    ping_before_body_is_ignored,
    peer_closes_before_body,
    handler_failure,
    notify_round_trip,
    notify_refusals,
    drain_answers_then_closes,
    server_request_round_trip,
    server_request_before_first_chunk,
    server_request_unknown_session,
    server_request_times_out,
    server_request_default_501,
    client_hangs_up_mid_stream,
    transport_dies_mid_stream,
    slow_client_bounds_memory,
    newer_connection_takes_a_session_id_over,
    graceful_shutdown,
    shutdown_during_a_drain_and_a_handshake,
    bearer_identity_reaches_the_handler,
    parked_server_request_fails_when_the_handler_finishes,
    handler_panics,
);

const NORMAL: EndReason = EndReason::Peer(Some(CloseCode::NORMAL));

/// The demo endpoint with a body of `chunks` and no pause.
fn demo_handler<R: Runtime>(
    rt: &R,
) -> impl FnOnce(
    DemoBody,
    Session,
) -> futures_util::future::BoxFuture<'static, Result<(), ResponseError<'static>>>
+ Clone
+ Send
+ 'static {
    let rt = rt.clone();
    move |body, session| Box::pin(demo::stream(rt, body, session))
}

fn fast(chunks: u32) -> DemoBody {
    DemoBody {
        chunks,
        interval_ms: 0,
        session_id: None,
    }
}

/// §2.1 streaming and end: N chunks in order, then Close(1000), reported
/// once (with the chunks counted); the registry is empty after the
/// connection.
async fn happy_path<R: Runtime>(rt: R) {
    let mut server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let (mut chunks, _notifier) = Client::new(rt.clone(), &server.url)
        .on_server_request(|_| async { HttpResponse::new(200) })
        .connect::<_, AgentCompletionChunk>(&fast(4))
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = patiently(&rt, chunks.next()).await {
        got.push(chunk.unwrap());
    }
    assert_eq!(got.len(), 4);
    assert!(
        got.iter()
            .all(|c| c.id == got[0].id && c.object == "agent.completion.chunk")
    );
    assert_eq!(chunks.end(), Some(NORMAL));
    let served = server.next_served().await;
    assert_eq!(served.end, EndReason::Local(CloseCode::NORMAL));
    assert_eq!(served.stats.chunks, 4);
    assert!(server.registry.is_empty());
}

/// §1: a request that is not allowed never reaches §2 (here: wrong path).
async fn refused_path_is_404<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let url = server.url.replace(demo::PATH, "/elsewhere");
    let refused = Client::new(rt.clone(), url)
        .connect::<_, AgentCompletionChunk>(&fast(1))
        .await;
    match refused {
        Err(ConnectError::WebSocket(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 404);
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

/// §2.1: a body that is not the endpoint's type → 400 + Close(1003),
/// without calling the handler.
async fn body_not_the_body_type<R: Runtime>(rt: R) {
    let mut server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text(r#"{"chunkz":1}"#).await;
    let error = raw.expect_json().await;
    assert_eq!(error["code"], 400);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("failed to deserialize body frame: missing field `chunks`"),
        "{message}"
    );
    assert_eq!(raw.expect_close().await, 1003);
    assert_eq!(
        server.next_end().await,
        EndReason::Local(CloseCode::UNSUPPORTED)
    );
}

/// §2.1: a binary body frame → the exact 400 frame + Close(1003).
async fn body_binary<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.send(Message::Binary(Bytes::from_static(b"{}"))).await;
    assert_eq!(
        raw.expect_text().await,
        r#"{"code":400,"message":"expected text body frame, got binary"}"#
    );
    assert_eq!(raw.expect_close().await, 1003);
    // §2.1 [tightened]: after the close frame the server sends nothing.
    assert_eq!(raw.next().await, None);
}

/// §2.1 [tightened]: no body within the body timeout → 408 + Close(1008).
async fn body_timeout<R: Runtime>(rt: R) {
    let mut server = TestServer::start(&rt, quick_config(), demo_handler(&rt)).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    let error = raw.expect_json().await;
    assert_eq!(error["code"], 408);
    assert_eq!(raw.expect_close().await, 1008);
    assert_eq!(server.next_end().await, EndReason::Local(CloseCode::POLICY));
}

/// §5: a connection that never completes the WebSocket handshake is
/// dropped after the body timeout (nothing unbounded below the engine).
async fn handshake_timeout<R: Runtime>(rt: R) {
    use futures_util::AsyncReadExt;
    let server = TestServer::start(&rt, quick_config(), demo_handler(&rt)).await;
    let mut tcp = rt.connect("127.0.0.1", server.addr.port()).await.unwrap();
    let mut buf = [0u8; 16];
    // The server closes the silent connection: end of stream.
    assert_eq!(patiently(&rt, tcp.read(&mut buf)).await.unwrap(), 0);
}

/// §2.1 [tightened], §5: a body frame over the size limit → 413 +
/// Close(1009); tungstenite refuses it before buffering it.
async fn body_oversize<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.max_frame_size = 1024;
    let mut server = TestServer::start(&rt, config, demo_handler(&rt)).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text(&format!(r#"{{"chunks":1,"pad":"{}"}}"#, "x".repeat(4096)))
        .await;
    let error = raw.expect_json().await;
    assert_eq!(error["code"], 413);
    assert_eq!(raw.expect_close().await, 1009);
    assert_eq!(
        server.next_end().await,
        EndReason::Local(CloseCode::TOO_BIG)
    );
}

/// §2.1: ping/pong before the body are ignored (and answered by the
/// WebSocket layer because the driver keeps reading).
async fn ping_before_body_is_ignored<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.send(Message::Ping(Bytes::from_static(b"hi"))).await;
    let pong = patiently(&rt, raw.ws.next()).await.unwrap().unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"hi")));
    raw.text(r#"{"chunks":1,"interval_ms":0}"#).await;
    let chunk = raw.expect_json().await;
    assert_eq!(chunk["object"], "agent.completion.chunk");
    assert_eq!(raw.expect_close().await, 1000);
}

/// §2.1: the peer closing before the body ends the session; nothing more
/// is sent but the close echo.
async fn peer_closes_before_body<R: Runtime>(rt: R) {
    let mut server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.ws.close(None).await.unwrap();
    assert_eq!(raw.expect_close().await, 1005);
    assert_eq!(server.next_end().await, EndReason::Peer(None));
    assert!(server.registry.is_empty());
}

/// §2.1 end, failure: one error frame then Close(1011); the client's stream
/// yields the error once, then ends.
async fn handler_failure<R: Runtime>(rt: R) {
    let handler = |_: serde_json::Value, mut session: Session| async move {
        session
            .send(&json!({"id": "agc-1"}), ["agc-1"])
            .await
            .unwrap();
        Err(ResponseError::new(502, "upstream failed"))
    };
    let mut server = TestServer::start(&rt, Config::default(), handler).await;
    let (mut chunks, _) = Client::new(rt.clone(), &server.url)
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    assert_eq!(
        patiently(&rt, chunks.next()).await.unwrap().unwrap()["id"],
        "agc-1"
    );
    match patiently(&rt, chunks.next()).await {
        Some(Err(StreamError::Failed(e))) => {
            assert_eq!(e.code, 502);
            assert_eq!(e.message_str().as_deref(), Some("upstream failed"));
        }
        other => panic!("expected the failure, got {other:?}"),
    }
    assert!(patiently(&rt, chunks.next()).await.is_none());
    assert_eq!(
        chunks.end(),
        Some(EndReason::Peer(Some(CloseCode::INTERNAL)))
    );
    assert_eq!(
        server.next_end().await,
        EndReason::Local(CloseCode::INTERNAL)
    );
}

/// A handler that sends one chunk of `agc-1`, answers the first request
/// `ok` and the second with the application's 400, then sends a last chunk.
async fn two_notifies(
    _: serde_json::Value,
    mut session: Session,
) -> Result<(), ResponseError<'static>> {
    let mut requests = session.requests();
    session
        .send(&json!({"id": "agc-1"}), ["agc-1"])
        .await
        .unwrap();
    let first = requests.recv().await.unwrap();
    assert_eq!(first.response_id(), Some("agc-1"));
    assert_eq!(first.content(), Some(r#""also check the tests""#));
    first.respond(Ok(()));
    let second = requests.recv().await.unwrap();
    second.respond(Err(RequestError::new(400, "cannot take notifications")));
    session
        .send(&json!({"id": "agc-1"}), ["agc-1"])
        .await
        .unwrap();
    Ok(())
}

/// §3.1: a notify for an emitted id is handled by the application (ok, or
/// its error); one for an id not from this stream is answered 404 by the
/// engine with the exact message.
async fn notify_round_trip<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), two_notifies).await;
    let (mut chunks, notifier) = Client::new(rt.clone(), &server.url)
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    patiently(&rt, chunks.next()).await.unwrap().unwrap();
    let unknown = notifier.notify("agc-999", "x", None).await;
    match unknown {
        Err(NotifyError::Rejected(e)) => {
            assert_eq!(e.code, 404);
            assert_eq!(e.message, r#"response_id "agc-999" not from this stream"#);
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    let ok = patiently(&rt, notifier.notify("agc-1", "also check the tests", None)).await;
    assert!(ok.is_ok(), "{ok:?}");
    match patiently(&rt, notifier.notify("agc-1", "more", None)).await {
        Err(NotifyError::Rejected(e)) => assert_eq!(e.code, 400),
        other => panic!("expected the application's 400, got {other:?}"),
    }
    assert!(patiently(&rt, chunks.next()).await.unwrap().is_ok());
    assert!(patiently(&rt, chunks.next()).await.is_none());
    assert_eq!(chunks.end(), Some(NORMAL));
}

/// A handler that sends one chunk of `agc-1` and holds every request it
/// gets, unanswered, until the session ends.
async fn holder(_: serde_json::Value, mut session: Session) -> Result<(), ResponseError<'static>> {
    let mut requests = session.requests();
    session
        .send(&json!({"id": "agc-1"}), ["agc-1"])
        .await
        .unwrap();
    let mut held = Vec::new();
    while let Some(request) = requests.recv().await {
        held.push(request);
    }
    Ok(())
}

fn notify_frame(id: &str, response_id: &str) -> String {
    json!({"id": id, "type": "agent_completion_notify", "response_id": response_id, "content": "x"})
        .to_string()
}

/// §3.1 [tightened]: (after a stray server_response, dropped) an unknown
/// type with a string id → 400; an id already
/// in flight → 409 (the first unaffected); past the in-flight limit → 429.
async fn notify_refusals<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.max_client_requests = 1;
    let server = TestServer::start(&rt, config, holder).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    assert_eq!(raw.expect_json().await["id"], "agc-1");
    // §3.2: a response for an unknown id is dropped, never an error.
    raw.text(r#"{"id":"nobody-asked","status":200}"#).await;
    raw.text(r#"{"id":"r-0","type":"mystery"}"#).await;
    let reply = raw.expect_json().await;
    assert_eq!(
        (
            reply["type"].as_str(),
            reply["id"].as_str(),
            reply["code"].as_u64()
        ),
        (Some("error"), Some("r-0"), Some(400))
    );
    raw.text(&notify_frame("r-1", "agc-1")).await;
    raw.text(&notify_frame("r-1", "agc-1")).await;
    let reply = raw.expect_json().await;
    assert_eq!(
        (reply["id"].as_str(), reply["code"].as_u64()),
        (Some("r-1"), Some(409))
    );
    raw.text(&notify_frame("r-2", "agc-1")).await;
    let reply = raw.expect_json().await;
    assert_eq!(
        (reply["id"].as_str(), reply["code"].as_u64()),
        (Some("r-2"), Some(429))
    );
}

/// §2.1 end [tightened], §3.1: after the stream finishes, accepted
/// requests still get their reply before Close(1000) — one the application
/// answers late, and `504` for one it never answers, at the drain timeout;
/// a request arriving meanwhile is answered 404 "no longer running".
async fn drain_answers_then_closes<R: Runtime>(rt: R) {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let spawner = rt.clone();
    let handler = move |_: serde_json::Value, mut session: Session| async move {
        let mut requests = session.requests();
        session
            .send(&json!({"id": "agc-1"}), ["agc-1"])
            .await
            .unwrap();
        let late = requests.recv().await.unwrap();
        let never = requests.recv().await.unwrap();
        let release = release.lock().unwrap().take().unwrap();
        spawner.spawn(async move {
            let _ = release.await;
            late.respond(Ok(()));
            let _never = never;
            futures_util::future::pending::<()>().await;
        });
        Ok(())
    };
    let server = TestServer::start(&rt, quick_config(), handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    assert_eq!(raw.expect_json().await["id"], "agc-1");
    raw.text(&notify_frame("late", "agc-1")).await;
    raw.text(&notify_frame("never", "agc-1")).await;
    // Wait for the handler to return and the session to drain: nothing on
    // the wire says so, but probes do. A probe the engine still accepts is
    // dropped with the handler's request stream and answered 500; once the
    // session drains, one is answered 404. (The engine's rule itself is
    // pinned to the frame in wirestream-proto's tests.)
    for probe in 0.. {
        let id = format!("probe-{probe}");
        raw.text(&notify_frame(&id, "agc-1")).await;
        let reply = raw.expect_json().await;
        assert_eq!(reply["id"], id.as_str());
        match reply["code"].as_u64() {
            Some(404) => break,
            Some(500) => {}
            other => panic!("unexpected reply to a probe: {other:?}"),
        }
    }
    // Draining: a new request is refused by the engine.
    raw.text(&notify_frame("after", "agc-1")).await;
    let reply = raw.expect_json().await;
    assert_eq!(reply["id"], "after");
    assert_eq!(reply["code"], 404);
    assert_eq!(
        reply["message"],
        r#"response_id "agc-1" is no longer running"#
    );
    release_tx.send(()).unwrap();
    assert_eq!(raw.expect_json().await, json!({"type": "ok", "id": "late"}));
    let reply = raw.expect_json().await;
    assert_eq!(
        (reply["id"].as_str(), reply["code"].as_u64()),
        (Some("never"), Some(504))
    );
    assert_eq!(raw.expect_close().await, 1000);
}

/// A handler that registers `session_id`, sends one chunk of `agc-1`, then
/// answers notifies `ok` until the session ends.
fn registering(
    session_id: &'static str,
) -> impl FnOnce(
    serde_json::Value,
    Session,
) -> futures_util::future::BoxFuture<'static, Result<(), ResponseError<'static>>>
+ Clone
+ Send
+ 'static {
    move |_, mut session| {
        Box::pin(async move {
            session.register_session(session_id).unwrap();
            let mut requests = session.requests();
            session
                .send(&json!({"id": "agc-1"}), ["agc-1"])
                .await
                .unwrap();
            while let Some(request) = requests.recv().await {
                request.respond(Ok(()));
            }
            Ok(())
        })
    }
}

/// §3.2, §4: a server request addressed by session id reaches the client
/// that owns it, and its response comes back whole.
async fn server_request_round_trip<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), registering("s-1")).await;
    let (mut chunks, _) = Client::new(rt.clone(), &server.url)
        .on_server_request(|request| async move {
            assert_eq!(request.method(), Some("POST"));
            assert_eq!(request.header("content-type"), Some("application/json"));
            HttpResponse::new(200)
                .header("mcp-session-id", "s-1")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}))
                .unwrap()
        })
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    patiently(&rt, chunks.next()).await.unwrap().unwrap();
    eventually(&rt, || server.registry.contains("s-1")).await;
    let response = patiently(&rt, server.registry.request("s-1", demo::tools_list("s-1")))
        .await
        .unwrap();
    assert_eq!(response.status(), Some(200));
    assert_eq!(response.header("mcp-session-id"), Some("s-1"));
    assert_eq!(
        response.body().unwrap(),
        r#"{"id":1,"jsonrpc":"2.0","result":{"tools":[]}}"#
    );
    drop(chunks);
    eventually(&rt, || server.registry.is_empty()).await;
}

/// §3.2: a server request may be sent before the first chunk; its response
/// is read and routed during setup.
async fn server_request_before_first_chunk<R: Runtime>(rt: R) {
    let handler = |_: serde_json::Value, mut session: Session| async move {
        let response = session
            .request(HttpRequest::new("GET").header("x-setup", "1"))
            .await
            .map_err(|e| ResponseError::new(500, &e.to_string()))?;
        let chunk = json!({"id": "agc-1", "setup_status": response.status()});
        session.send(&chunk, ["agc-1"]).await.unwrap();
        Ok(())
    };
    let server = TestServer::start(&rt, Config::default(), handler).await;
    let (mut chunks, _) = Client::new(rt.clone(), &server.url)
        .on_server_request(|request| async move {
            assert_eq!(request.header("x-setup"), Some("1"));
            assert!(request.body().is_none());
            HttpResponse::new(204)
        })
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    let chunk = patiently(&rt, chunks.next()).await.unwrap().unwrap();
    assert_eq!(chunk["setup_status"], 204);
}

/// §4: a lookup of an unknown id fails (503 at an HTTP bridge).
async fn server_request_unknown_session<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), demo_handler(&rt)).await;
    let failed = server
        .registry
        .request("nobody", HttpRequest::new("GET"))
        .await;
    assert_eq!(failed.unwrap_err(), RequestFailed::UnknownSession);
    assert_eq!(RequestFailed::UnknownSession.http_status(), 503);
}

/// §3.2, §5: a server request the client never answers ends as timed out
/// at its deadline (504 at an HTTP bridge); the session goes on.
async fn server_request_times_out<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, quick_config(), registering("s-2")).await;
    let (mut chunks, notifier) = Client::new(rt.clone(), &server.url)
        .on_server_request(|_| futures_util::future::pending())
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    patiently(&rt, chunks.next()).await.unwrap().unwrap();
    eventually(&rt, || server.registry.contains("s-2")).await;
    let failed = patiently(&rt, server.registry.request("s-2", HttpRequest::new("GET"))).await;
    assert_eq!(failed.unwrap_err(), RequestFailed::TimedOut);
    assert!(
        patiently(&rt, notifier.notify("agc-1", "still there?", None))
            .await
            .is_ok()
    );
}

/// §3.2: a client that hosts nothing answers 501.
async fn server_request_default_501<R: Runtime>(rt: R) {
    let server = TestServer::start(&rt, Config::default(), registering("s-3")).await;
    let (mut chunks, _) = Client::new(rt.clone(), &server.url)
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    patiently(&rt, chunks.next()).await.unwrap().unwrap();
    eventually(&rt, || server.registry.contains("s-3")).await;
    let response = patiently(&rt, server.registry.request("s-3", HttpRequest::new("GET")))
        .await
        .unwrap();
    assert_eq!(response.status(), Some(501));
}

/// What a streaming handler tells the test: how many chunks it sent, how
/// many it had sent each time a send had to wait, and (by dropping `gone`)
/// that it has ended.
struct Producer {
    sent: Arc<AtomicUsize>,
    stalls: mpsc::UnboundedReceiver<usize>,
    gone: oneshot::Receiver<()>,
}

/// A handler that registers "s-h" and streams 1 KiB chunks as fast as it
/// may, until the session ends; reports each send that has to wait.
fn producer() -> (
    Producer,
    impl FnOnce(
        serde_json::Value,
        Session,
    ) -> futures_util::future::BoxFuture<'static, Result<(), ResponseError<'static>>>
    + Clone
    + Send
    + 'static,
) {
    let sent = Arc::new(AtomicUsize::new(0));
    let (alive, gone) = oneshot::channel::<()>();
    let alive = Arc::new(std::sync::Mutex::new(Some(alive)));
    let counter = sent.clone();
    let (stalled, stalls) = mpsc::unbounded();
    let handler = move |_: serde_json::Value,
                        mut session: Session|
          -> futures_util::future::BoxFuture<'static, _> {
        Box::pin(async move {
            let _alive = alive.lock().unwrap().take();
            session.register_session("s-h").unwrap();
            let chunk = json!({"id": "agc-1", "pad": "x".repeat(1000)});
            loop {
                let mut send = pin!(session.send(&chunk, ["agc-1"]));
                let sent = match send.as_mut().now_or_never() {
                    Some(sent) => sent,
                    None => {
                        let _ = stalled.unbounded_send(counter.load(Ordering::SeqCst));
                        send.await
                    }
                };
                if sent.is_err() {
                    return Ok(());
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    (Producer { sent, stalls, gone }, handler)
}

/// §2.1 end: the client closing mid-stream ends the session at once: the
/// handler is dropped, a pending server request fails at once (not at its
/// 30 s deadline), and the registry is emptied.
async fn client_hangs_up_mid_stream<R: Runtime>(rt: R) {
    let (producer, handler) = producer();
    let mut server = TestServer::start(&rt, Config::default(), handler).await;
    let (asked_tx, mut asked) = mpsc::unbounded();
    let (mut chunks, _) = Client::new(rt.clone(), &server.url)
        .on_server_request(move |_| {
            let _ = asked_tx.unbounded_send(());
            futures_util::future::pending()
        })
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    patiently(&rt, chunks.next()).await.unwrap().unwrap();
    eventually(&rt, || server.registry.contains("s-h")).await;
    let registry = server.registry.clone();
    let (pending_tx, pending) = oneshot::channel();
    rt.spawn(async move {
        let _ = pending_tx.send(registry.request("s-h", HttpRequest::new("GET")).await);
    });
    // Read on until the request reaches the client: it is then pending on
    // the server.
    patiently(&rt, async {
        while let Either::Right((chunk, _)) = select(asked.next(), chunks.next()).await {
            chunk.unwrap().unwrap();
        }
    })
    .await;
    drop(chunks);
    assert_eq!(server.next_end().await, NORMAL);
    let failed = patiently(&rt, pending).await.unwrap();
    assert_eq!(failed.unwrap_err(), RequestFailed::SessionEnded);
    assert!(server.registry.is_empty());
    let _ = patiently(&rt, producer.gone).await;
}

/// §2.1 end, §6: a transport that dies without a close frame ends the
/// session at once (reported as 1006) and empties the registry.
async fn transport_dies_mid_stream<R: Runtime>(rt: R) {
    let (producer, handler) = producer();
    let mut server = TestServer::start(&rt, Config::default(), handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    raw.expect_json().await;
    eventually(&rt, || server.registry.contains("s-h")).await;
    drop(raw);
    let end = server.next_end().await;
    assert_eq!(end, EndReason::TransportLost);
    assert_eq!(end.code(), CloseCode::ABNORMAL);
    assert!(server.registry.is_empty());
    let _ = patiently(&rt, producer.gone).await;
}

/// §5: a client that does not read makes the producer wait; the server
/// buffers a bounded amount, then resumes when the client reads again.
async fn slow_client_bounds_memory<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.max_queued_bytes = 16 << 10;
    config.max_queued_frames = 16;
    let (mut producer, handler) = producer();
    let server = TestServer::start(&rt, config, handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    // The client reads nothing: the producer must be made to wait.
    let last = patiently(&rt, producer.stalls.next()).await.unwrap();
    // Bounded: the socket buffers of the loopback plus the queues, far
    // below what an unbounded producer would have pushed by now.
    assert!(
        last < 40_000,
        "the producer sent {last} KiB into a stalled connection"
    );
    // Reading again lets it go on.
    for _ in 0..(last + 100) {
        raw.expect_text().await;
    }
    assert!(producer.sent.load(Ordering::SeqCst) > last);
}

/// §4 [tightened]: a newer connection that registers an id takes it over;
/// the older one ending removes only the ids it still owns.
async fn newer_connection_takes_a_session_id_over<R: Runtime>(rt: R) {
    let handler = |_: serde_json::Value, mut session: Session| async move {
        let took = session.register_session("shared").unwrap();
        session
            .send(
                &json!({"id": "agc-1", "took": format!("{took:?}")}),
                ["agc-1"],
            )
            .await
            .unwrap();
        let mut requests = session.requests();
        while requests.recv().await.is_some() {}
        Ok(())
    };
    let mut server = TestServer::start(&rt, Config::default(), handler).await;
    let body = json!({});
    let connect = |status: u16| {
        Client::new(rt.clone(), &server.url)
            .on_server_request(move |_| async move { HttpResponse::new(status) })
            .connect::<_, serde_json::Value>(&body)
    };
    let (mut older, _) = connect(201).await.unwrap();
    let first = patiently(&rt, older.next()).await.unwrap().unwrap();
    assert_eq!(first["took"], format!("{:?}", Registered::New));
    let (mut newer, _) = connect(202).await.unwrap();
    let second = patiently(&rt, newer.next()).await.unwrap().unwrap();
    assert!(second["took"].as_str().unwrap().starts_with("TookOver"));
    let asked = server
        .registry
        .request("shared", HttpRequest::new("GET"))
        .await
        .unwrap();
    assert_eq!(asked.status(), Some(202));
    drop(older);
    server.next_end().await;
    assert!(server.registry.contains("shared"));
    drop(newer);
    server.next_end().await;
    assert!(server.registry.is_empty());
}

/// `server.listen(..)` on 127.0.0.1:0, on its own task: the URL of the demo
/// path, and what `listen` returned once it returns.
async fn listening<R, B, H, Fut, C, A>(
    rt: &R,
    server: &Server<R>,
    check: C,
    handler: H,
) -> (String, oneshot::Receiver<std::io::Result<()>>)
where
    R: Runtime,
    B: serde::de::DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
    C: FnOnce(&Request) -> Result<A, ErrorResponse> + Clone + Send + Unpin + 'static,
    A: Clone + Send + Sync + 'static,
{
    let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://{}{}", listener.local_addr().unwrap(), demo::PATH);
    let (done_tx, done) = oneshot::channel();
    let server = server.clone();
    rt.spawn(async move {
        let _ = done_tx.send(server.listen(&listener, check, handler).await);
    });
    (url, done)
}

/// §5 shutdown grace, §6 1001: `Shutdown::begin` tells running handlers;
/// one that finishes in time ends with Close(1000); at the grace's end a
/// session still waiting for a server request's answer gets Close(1001)
/// and the request fails at once (`ShuttingDown`, not at its 30 s
/// deadline); a session still awaiting its body gets Close(1001); `listen`
/// returns Ok once every session has ended, and the registry is empty.
async fn graceful_shutdown<R: Runtime>(rt: R) {
    let (asked_tx, mut asked) = mpsc::unbounded();
    let handler = move |body: serde_json::Value, mut session: Session| async move {
        session
            .register_session(body["mode"].as_str().unwrap())
            .unwrap();
        if body["mode"] == "ask" {
            // Does not watch the shutdown: the grace's end cuts it short.
            let failed = session.request(HttpRequest::new("GET")).await;
            let _ = asked_tx.unbounded_send(failed.map(|_| ()));
            return Ok(());
        }
        assert!(!session.is_shutting_down());
        session
            .send(&json!({"id": "agc-1"}), ["agc-1"])
            .await
            .unwrap();
        session.shutdown_requested().await;
        assert!(session.is_shutting_down());
        session
            .send(&json!({"id": "agc-1", "bye": true}), ["agc-1"])
            .await
            .unwrap();
        Ok(())
    };
    let server = Server::new(rt.clone());
    let shutdown = server.shutdown_handle();
    let (url, done) = listening(&rt, &server, only_path(demo::PATH), handler).await;
    let mut streaming = Raw::connect(&rt, &url).await;
    streaming.text(r#"{"mode": "stream"}"#).await;
    assert_eq!(streaming.expect_json().await["id"], "agc-1");
    let mut asking = Raw::connect(&rt, &url).await;
    asking.text(r#"{"mode": "ask"}"#).await;
    assert_eq!(asking.expect_json().await["method"], "GET");
    let mut idle = Raw::connect(&rt, &url).await;
    eventually(&rt, || shutdown.live_sessions() == 3).await;
    assert_eq!(server.registry().len(), 2);

    shutdown.begin(Duration::from_millis(300));
    assert_eq!(streaming.expect_json().await["bye"], true);
    assert_eq!(streaming.expect_close().await, 1000);
    assert_eq!(asking.expect_close().await, 1001);
    let failed = patiently(&rt, asked.next()).await.unwrap();
    assert_eq!(failed.unwrap_err(), RequestFailed::ShuttingDown);
    assert_eq!(RequestFailed::ShuttingDown.http_status(), 503);
    assert_eq!(idle.expect_close().await, 1001);
    patiently(&rt, done).await.unwrap().unwrap();
    assert_eq!(shutdown.live_sessions(), 0);
    assert!(server.registry().is_empty());
}

/// §5 shutdown grace, §6 1001, "Bad input": a shutdown while a session
/// drains answers the request still unanswered `504` and closes 1001; one
/// during a handshake waits for that handshake only as long as the body
/// timeout bounds it; `listen` returns once both have ended.
async fn shutdown_during_a_drain_and_a_handshake<R: Runtime>(rt: R) {
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let handler = move |_: serde_json::Value, mut session: Session| {
        let keep = keep.clone();
        async move {
            let mut requests = session.requests();
            session
                .send(&json!({"id": "agc-1"}), ["agc-1"])
                .await
                .unwrap();
            // Keeps one notify unanswered: the stream drains.
            let request = requests.recv().await.unwrap();
            keep.lock().unwrap().push(request);
            Ok(())
        }
    };
    let mut config = Config::default();
    // Bounds the handshake too.
    config.body_timeout = Duration::from_millis(300);
    let server = Server::new(rt.clone()).with_config(config);
    let shutdown = server.shutdown_handle();
    let (url, done) = listening(&rt, &server, only_path(demo::PATH), handler).await;
    let mut draining = Raw::connect(&rt, &url).await;
    draining.text("{}").await;
    assert_eq!(draining.expect_json().await["id"], "agc-1");
    draining
        .text(
            r#"{"id":"n-1","type":"agent_completion_notify","response_id":"agc-1","content":"x"}"#,
        )
        .await;
    eventually(&rt, || held.lock().unwrap().len() == 1).await;
    // A connection that never finishes its handshake.
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap();
    let (host, port) = addr.split_once(':').unwrap();
    let mut half = rt.connect(host, port.parse().unwrap()).await.unwrap();
    half.write_all(b"GET /agent/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    eventually(&rt, || shutdown.live_sessions() == 2).await;
    shutdown.begin(Duration::from_millis(100));
    let reply = draining.expect_json().await;
    assert_eq!(reply["id"], "n-1");
    assert_eq!(reply["code"], 504);
    assert_eq!(draining.expect_close().await, 1001);
    patiently(&rt, done).await.unwrap().unwrap();
    assert_eq!(shutdown.live_sessions(), 0);
    drop(half);
}

/// Who is calling, as the accept check saw it.
#[derive(Clone, Debug, PartialEq)]
struct Identity(String);

/// §1: authentication happens on the upgrade request: a good bearer token
/// is accepted and the handler sees the identity the check attached (and
/// the request itself); a bad one is refused with 401 before the upgrade.
async fn bearer_identity_reaches_the_handler<R: Runtime>(rt: R) {
    // The refusal is tungstenite's (large) HTTP response.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request| {
        let token = request.headers().get("authorization");
        match token.and_then(|t| t.to_str().ok()) {
            Some("Bearer good") => Ok(Identity("alice".to_owned())),
            _ => Err(refuse(StatusCode::UNAUTHORIZED, "bad token")),
        }
    };
    let handler = |_: serde_json::Value, mut session: Session| async move {
        let caller = session.caller();
        let chunk = json!({
            "id": "agc-1",
            "who": session.extension::<Identity>().map(|i| i.0.clone()),
            "path": caller.path(),
            "query": caller.query(),
            "x-trace": caller.header("x-trace"),
            "loopback": caller.peer.is_some_and(|p| p.ip().is_loopback()),
        });
        session.send(&chunk, ["agc-1"]).await.unwrap();
        Ok(())
    };
    let server = Server::new(rt.clone());
    let (url, _done) = listening(&rt, &server, check, handler).await;
    let (mut chunks, _) = Client::new(rt.clone(), format!("{url}?v=2"))
        .header("authorization", "Bearer good")
        .header("x-trace", "t-1")
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    let chunk = patiently(&rt, chunks.next()).await.unwrap().unwrap();
    assert_eq!(chunk["who"], "alice");
    assert_eq!(chunk["path"], demo::PATH);
    assert_eq!(chunk["query"], "v=2");
    assert_eq!(chunk["x-trace"], "t-1");
    assert_eq!(chunk["loopback"], true);
    let refused = Client::new(rt.clone(), &url)
        .header("authorization", "Bearer bad")
        .connect::<_, serde_json::Value>(&json!({}))
        .await;
    match refused {
        Err(ConnectError::WebSocket(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

/// §2.1 end, §3.2: a server request parked on a full outbound queue fails
/// as soon as the handler finishes (not when the connection ends, which a
/// client that does not read delays by the close timeout), and so do the
/// requests queued behind it.
async fn parked_server_request_fails_when_the_handler_finishes<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.max_frame_size = 64 << 10;
    config.max_queued_frames = 2;
    config.max_server_requests = 4096;
    let (finish_tx, finish_rx) = oneshot::channel::<()>();
    let finish = Arc::new(std::sync::Mutex::new(Some(finish_rx)));
    let handler = move |_: serde_json::Value, session: Session| async move {
        session.register_session("s-q").unwrap();
        let finish = finish.lock().unwrap().take().unwrap();
        let _ = finish.await;
        Ok(())
    };
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let server = Server::new(rt.clone())
        .with_config(config)
        .with_tap(move |direction, message| {
            if direction == Direction::Out && message.is_text() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
    let (url, _done) = listening(&rt, &server, only_path(demo::PATH), handler).await;
    // The client sends its body, then reads nothing.
    let mut raw = Raw::connect(&rt, &url).await;
    raw.text("{}").await;
    eventually(&rt, || server.registry().contains("s-q")).await;
    // More than the loopback socket buffers and the queue hold.
    let requests = 600;
    let (failed_tx, mut failed) = mpsc::unbounded();
    let body = "x".repeat(60 << 10);
    for _ in 0..requests {
        let (registry, failed_tx) = (server.registry().clone(), failed_tx.clone());
        let request = HttpRequest::new("POST").json(&body).unwrap();
        rt.spawn(async move {
            let _ = failed_tx.unbounded_send(registry.request("s-q", request).await);
        });
    }
    // Wait until the connection stalls: no more requests go out (one is
    // parked on the full queue, the rest wait behind it).
    let mut seen = 0;
    eventually(&rt, || {
        let now = sent.load(Ordering::SeqCst);
        let stalled = now > 0 && now == seen;
        seen = now;
        stalled
    })
    .await;
    assert!(seen < requests, "every request went out");
    finish_tx.send(()).unwrap();
    // Well within the close timeout (5 s), at which the connection ends.
    within(&rt, Duration::from_secs(2), async {
        for _ in 0..requests {
            let result = failed.next().await.unwrap();
            assert_eq!(result.unwrap_err(), RequestFailed::SessionEnded);
        }
    })
    .await;
}

/// §2.1 end: a handler that panics fails the stream with 500 and
/// Close(1011) (the panic takes neither the connection's task nor the
/// runtime with it), and its connection leaves the registry.
async fn handler_panics<R: Runtime>(rt: R) {
    let handler = |_: serde_json::Value, session: Session| async move {
        session.register_session("s-p").unwrap();
        if session.is_websocket() {
            panic!("the handler panicked on purpose");
        }
        Ok(())
    };
    let mut server = TestServer::start(&rt, Config::default(), handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    assert_eq!(
        raw.expect_json().await,
        json!({"code": 500, "message": "the handler panicked"})
    );
    assert_eq!(raw.expect_close().await, 1011);
    assert_eq!(
        server.next_end().await,
        EndReason::Local(CloseCode::INTERNAL)
    );
    assert!(server.registry.is_empty());
    // The server goes on serving.
    let mut again = Raw::connect(&rt, &server.url).await;
    again.text("{}").await;
    assert_eq!(again.expect_json().await["code"], 500);
}
