//! Faults over real sockets, on tokio and on smol: clients that reset their
//! TCP connection (`SO_LINGER` 0, then close: an RST, no close frame) at
//! each point of a session, a thousand of them in waves, handlers that fail
//! or panic, and requesters of server requests that give up waiting.
//!
//! After each fault the server must be as it was: the session ended with
//! the right [`EndReason`], the registry empty, every requester answered,
//! no session counted live and no task left running (the scenarios run on
//! [`Counted`], which counts the tasks spawned through the runtime), and a
//! fresh good session completes. Every timeout a scenario does not test is
//! a minute long, so that an end can only come from the fault itself; every
//! wait is on an event, bounded by [`PATIENCE`](wirestream_tests::PATIENCE).
//!
//! | fault | the session ends |
//! |---|---|
//! | reset mid-stream, a bridge request pending | `TransportLost`; the request fails `SessionEnded` |
//! | reset within the upgrade request | nothing served; the connection's task ends |
//! | reset after the upgrade, before the body | `TransportLost` |
//! | reset in the drain (a notify unanswered, a bridge request pending) | `TransportLost`; the request fails `SessionEnded` |
//! | reset after the server's close, before the client's | `Local(1000)`, at once (not at the close timeout) |
//! | 1,000 resets in waves of 100, each with ids, a bridge request and a notify or a server request pending | `TransportLost` each; nothing left |
//! | the handler fails, a notify unanswered | `404` reply, error frame, `Close(1011)` |
//! | the handler panics, a notify unanswered, another session streaming | `404` reply, `500` error frame, `Close(1011)`; the other session streams on |
//! | a requester dropped while its request is pending (`Registry::request`, `Session::request`) | the late answer dropped quietly, or the deadline passes; the next request goes out |

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::AsyncWriteExt;
use futures_util::future::{BoxFuture, Either, join_all, select};
use serde_json::{Value, json};
use wirestream_proto::CloseCode;
use wirestream_runtime::{
    Client, Config, EndReason, HandlerResult, HttpRequest, IncomingRequest, RequestFailed,
    Requests, ResponseError, Runtime, Session,
};
use wirestream_tests::{
    Counted, PATIENCE, Raw, Sockets, TestServer, eventually, on_both_runtimes, patiently, reset,
    tcp_connect, whole_session, whole_session_handler,
};

on_both_runtimes!(
    reset_mid_stream_ends_session_and_frees_ids,
    reset_during_the_handshake_frees_the_connection,
    reset_during_the_drain_ends_session_and_fails_pending_requests,
    thousand_resets_in_waves_leave_registry_and_tasks_empty,
    handler_error_answers_pending_notify_404_then_1011,
    handler_panic_answers_1011_and_server_survives,
    dropped_requester_leaves_no_pending_request,
    dropped_session_requester_frees_its_slot,
);

/// Longer than any wait of a scenario: a timeout this long never ends a
/// session the scenario is watching.
const NEVER: Duration = Duration::from_secs(60);

/// Every timeout out of the way: sessions end only by the faults.
fn patient_config() -> Config {
    let mut config = Config::default();
    config.body_timeout = NEVER;
    config.drain_timeout = NEVER;
    config.request_timeout = NEVER;
    config.close_timeout = NEVER;
    config.ping_interval = None;
    config.liveness_timeout = None;
    config.write_stall_timeout = None;
    config
}

/// What the handlers leave for the scenario to see.
#[derive(Default)]
struct Probe {
    /// Client requests the handlers hold unanswered.
    held: Mutex<Vec<IncomingRequest>>,
    /// Bridge requests that failed with `SessionEnded`.
    ended: AtomicUsize,
    /// Bridge requests that ended any other way.
    other: Mutex<Vec<String>>,
}

impl Probe {
    fn bridged(&self, outcome: Result<wirestream_runtime::Response, RequestFailed>) {
        match outcome {
            Err(RequestFailed::SessionEnded) => {
                self.ended.fetch_add(1, Ordering::SeqCst);
            }
            other => self.other.lock().unwrap().push(format!("{other:?}")),
        }
    }
}

/// The handler the fault scenarios run, told what to do by the body:
///
/// - `"hello"`: [`whole_session_handler`] (the good session);
/// - otherwise it registers `"name"`, mints a second id, sends the chunk
///   `{"id":"agc-1","n":0}`; with `"bridge": true` it then asks its own
///   client through the registry (`Registry::request`, on a task of its
///   own, the outcome going to the probe); with `"hold": true` it waits for
///   a notify, leaves it unanswered in the probe and sends
///   `{"id":"agc-1","held":true}`;
/// - then, by `"then"`: `"stream"` chunks as fast as it may, `"wait"`
///   forever, `"ask"` its client a server request (never answered) and
///   waits forever, `"fail"` with `503`, `"panic"`; otherwise it finishes.
fn faulty<R: Runtime>(
    rt: &R,
    probe: &Arc<Probe>,
) -> impl FnOnce(Value, Session) -> BoxFuture<'static, HandlerResult> + Clone + Send + 'static {
    let (rt, probe) = (rt.clone(), probe.clone());
    move |body, session| Box::pin(faults(rt, probe, body, session))
}

async fn faults<R: Runtime>(
    rt: R,
    probe: Arc<Probe>,
    body: Value,
    mut session: Session,
) -> HandlerResult {
    if body.get("hello").is_some() {
        return whole_session_handler(body, session).await;
    }
    let gone = |_| ResponseError::new(500, "the session is over");
    let name = body["name"].as_str().unwrap_or("s-1").to_owned();
    session.register_session(&name).unwrap();
    session.mint_session_id().unwrap();
    let mut requests = session.requests();
    session
        .send(&json!({"id": "agc-1", "n": 0}), ["agc-1"])
        .await
        .map_err(gone)?;
    if body["bridge"] == true {
        let (registry, probe) = (session.registry().clone(), probe.clone());
        rt.spawn(async move {
            let outcome = registry.request(&name, HttpRequest::new("GET")).await;
            probe.bridged(outcome);
        });
    }
    if body["hold"] == true {
        if let Some(notify) = requests.recv().await {
            probe.held.lock().unwrap().push(notify);
        }
        session
            .send(&json!({"id": "agc-1", "held": true}), ["agc-1"])
            .await
            .map_err(gone)?;
    }
    match body["then"].as_str() {
        Some("stream") => {
            let chunk = json!({"id": "agc-1", "pad": "x".repeat(1000)});
            while session.send(&chunk, ["agc-1"]).await.is_ok() {}
            Ok(())
        }
        Some("wait") => std::future::pending().await,
        Some("ask") => {
            let _ = session.request(HttpRequest::new("POST")).await;
            std::future::pending().await
        }
        Some("abandon") => {
            abandon(&mut session, &mut requests).await?;
            std::future::pending().await
        }
        Some("fail") => Err(ResponseError::new(503, "upstream gone")),
        Some("panic") => panic!("the handler panicked on purpose"),
        _ => Ok(()),
    }
}

/// Asks the client (a server request), and stops waiting when a notify
/// comes (answered `ok`); at the next notify (answered `ok`), asks again
/// and sends the answer's status in a chunk.
async fn abandon(session: &mut Session, requests: &mut Requests) -> HandlerResult {
    let unexpected = || ResponseError::new(500, "unexpected");
    {
        let asked = pin!(session.request(HttpRequest::new("POST")));
        match select(asked, pin!(requests.recv())).await {
            Either::Right((Some(notify), _)) => notify.respond(Ok(())),
            _ => return Err(unexpected()),
        }
    }
    requests
        .recv()
        .await
        .ok_or_else(unexpected)?
        .respond(Ok(()));
    let answer = session.request(HttpRequest::new("POST")).await;
    let status = answer.map_err(|_| unexpected())?.status();
    let chunk = json!({"id": "agc-1", "status": status});
    session
        .send(&chunk, ["agc-1"])
        .await
        .map_err(|_| unexpected())
}

/// A server running [`faulty`] on a runtime that counts its tasks.
async fn start<R: Sockets>(
    rt: &Counted<R>,
    config: Config,
) -> (TestServer<Counted<R>>, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let server = TestServer::start(rt, config, faulty(rt, &probe)).await;
    (server, probe)
}

/// A raw client of `server` over a socket it can reset.
async fn raw<R: Sockets>(rt: &R, server: &TestServer<R>) -> Raw<R> {
    Raw::over(rt, &server.url, tcp_connect::<R>(server.addr, None)).await
}

/// What is left of the sessions that ended.
#[derive(Debug, PartialEq, Eq)]
struct Left {
    session_ids: usize,
    connections: usize,
    live_sessions: usize,
    tasks: usize,
    bridge_requests_ended: usize,
}

fn left<R: Runtime>(rt: &Counted<R>, server: &TestServer<Counted<R>>, probe: &Probe) -> Left {
    Left {
        session_ids: server.registry.len(),
        connections: server.registry.connections(),
        live_sessions: server.shutdown.live_sessions(),
        tasks: rt.live_tasks(),
        bridge_requests_ended: probe.ended.load(Ordering::SeqCst),
    }
}

/// Waits until nothing is left of the sessions that ended: no id, no
/// connection, no live session, no task but the accept loop, and each of
/// the `bridged` bridge requests failed with `SessionEnded`. Then a good
/// session completes.
async fn nothing_left<R: Sockets>(
    rt: &Counted<R>,
    server: &mut TestServer<Counted<R>>,
    probe: &Probe,
    bridged: usize,
) {
    let clear = Left {
        session_ids: 0,
        connections: 0,
        live_sessions: 0,
        tasks: 1,
        bridge_requests_ended: bridged,
    };
    let deadline = rt.now() + PATIENCE;
    let mut now = left(rt, server, probe);
    while now != clear {
        assert!(
            rt.now() < deadline,
            "still left: {now:?}, expected {clear:?}"
        );
        rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
        now = left(rt, server, probe);
    }
    assert!(server.registry.is_empty());
    assert!(probe.other.lock().unwrap().is_empty(), "{:?}", probe.other);
    whole_session(rt, Client::new(rt.clone(), &server.url)).await;
    assert_eq!(server.next_end().await, EndReason::Local(CloseCode::NORMAL));
    // The good session's tasks (its client's driver) are gone too.
    let deadline = rt.now() + PATIENCE;
    while rt.live_tasks() != 1 {
        assert!(rt.now() < deadline, "{} tasks left", rt.live_tasks());
        rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
    }
}

/// The notify a raw client sends: `agc-1` is the handlers' completion.
fn notify(id: &str) -> String {
    json!({"id": id, "type": "agent_completion_notify", "response_id": "agc-1", "content": "x"})
        .to_string()
}

/// Sends `body`, then reads until the server has sent the first chunk,
/// `requests` server requests, and (if `hold`) the `held` chunk. When
/// `hold`, it sends a notify (`nt-1`) once the first chunk and the server
/// requests are in (so that they went out before the handler moves on).
/// Every other frame is a chunk; how many came is returned.
async fn provoke<R: Runtime>(raw: &mut Raw<R>, body: Value, requests: usize, hold: bool) -> usize {
    raw.text(&body.to_string()).await;
    let (mut asked, mut chunks, mut notified, mut held) = (0, 0, !hold, !hold);
    loop {
        if !notified && chunks > 0 && asked == requests {
            raw.text(&notify("nt-1")).await;
            notified = true;
        }
        if chunks > 0 && asked == requests && held {
            return chunks;
        }
        let frame = raw.expect_json().await;
        if frame.get("method").is_some() {
            asked += 1;
        } else {
            chunks += 1;
            held |= frame["held"] == true;
        }
    }
}

/// Mid-stream, a bridge request pending: the reset ends the session at once
/// (`TransportLost`), the request fails, the ids go.
async fn reset_mid_stream_ends_session_and_frees_ids<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe) = start(&rt, patient_config()).await;
    let mut raw = raw(&rt, &server).await;
    let body = json!({"name": "s-mid", "bridge": true, "then": "stream"});
    let mut chunks = provoke(&mut raw, body, 1, false).await;
    while chunks < 10 {
        raw.expect_json().await;
        chunks += 1;
    }
    assert!(server.registry.contains("s-mid"));
    raw.reset();
    let served = server.next_served().await;
    assert_eq!(served.end, EndReason::TransportLost);
    assert!(served.stats.chunks >= 10, "{:?}", served.stats);
    nothing_left(&rt, &mut server, &probe, 1).await;
}

/// Reset within the upgrade request: nothing is served and the connection's
/// task ends (the handshake would wait a minute otherwise). Reset after the
/// upgrade, before the body: the session ends, `TransportLost`.
async fn reset_during_the_handshake_frees_the_connection<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe) = start(&rt, patient_config()).await;
    let mut stream = tcp_connect::<Counted<R>>(server.addr, None);
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
        wirestream_demo::PATH
    );
    stream
        .write_all(&head.as_bytes()[..head.len() / 2])
        .await
        .expect("write");
    // The accept loop and the connection's task, reading the head.
    eventually(&rt, || rt.live_tasks() == 2).await;
    reset::<Counted<R>>(stream);
    nothing_left(&rt, &mut server, &probe, 0).await;

    let raw = raw(&rt, &server).await;
    eventually(&rt, || server.registry.connections() == 1).await;
    raw.reset();
    assert_eq!(server.next_end().await, EndReason::TransportLost);
    nothing_left(&rt, &mut server, &probe, 0).await;
}

/// The handler has returned with a notify unanswered (the server drains,
/// for a minute) and a bridge request pending: the reset ends the session
/// at once, the request fails. Then, after the server's `Close(1000)`,
/// before the client's (the server would wait a minute): the reset ends
/// the closing handshake at once.
async fn reset_during_the_drain_ends_session_and_fails_pending_requests<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe) = start(&rt, patient_config()).await;
    let mut raw = raw(&rt, &server).await;
    let body = json!({"name": "s-drain", "bridge": true, "hold": true});
    provoke(&mut raw, body, 1, true).await;
    raw.reset();
    assert_eq!(server.next_end().await, EndReason::TransportLost);
    nothing_left(&rt, &mut server, &probe, 1).await;
    // Answering after the end is harmless.
    for held in probe.held.lock().unwrap().drain(..) {
        held.respond(Ok(()));
    }

    let mut raw = self::raw(&rt, &server).await;
    provoke(&mut raw, json!({"name": "s-close"}), 0, false).await;
    raw.reset();
    assert_eq!(server.next_end().await, EndReason::Local(CloseCode::NORMAL));
    nothing_left(&rt, &mut server, &probe, 1).await;
}

/// 10 waves of 100 concurrent connections; each registers two ids, has a
/// bridge request pending and either a notify unanswered or a server
/// request of its handler pending, then all 100 reset at once. Each session
/// ends `TransportLost`, and nothing is left: no id, no connection, no task,
/// every bridge request failed `SessionEnded`.
async fn thousand_resets_in_waves_leave_registry_and_tasks_empty<R: Sockets>(rt: R) {
    const WAVES: usize = 10;
    const WAVE: usize = 100;
    let rt = Counted::new(rt);
    let (mut server, probe) = start(&rt, patient_config()).await;
    for wave in 0..WAVES {
        let clients = (0..WAVE).map(|i| {
            let (rt, server) = (&rt, &server);
            async move {
                let n = wave * WAVE + i;
                let hold = n % 2 == 0;
                let then = if hold { "wait" } else { "ask" };
                let body =
                    json!({"name": format!("w-{n}"), "bridge": true, "hold": hold, "then": then});
                let mut raw = raw(rt, server).await;
                provoke(&mut raw, body, 1 + usize::from(!hold), hold).await;
                raw
            }
        });
        let clients = join_all(clients).await;
        assert_eq!(server.registry.len(), 2 * WAVE);
        assert_eq!(server.shutdown.live_sessions(), WAVE);
        clients.into_iter().for_each(Raw::reset);
        for _ in 0..WAVE {
            assert_eq!(server.next_end().await, EndReason::TransportLost);
        }
    }
    assert_eq!(probe.held.lock().unwrap().len(), WAVES * WAVE / 2);
    probe.held.lock().unwrap().clear();
    nothing_left(&rt, &mut server, &probe, WAVES * WAVE).await;
}

/// The handler fails with a notify unanswered and a bridge request
/// pending: the notify is answered `404`, then the error frame, then
/// `Close(1011)`; the request fails, the ids go.
async fn handler_error_answers_pending_notify_404_then_1011<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe) = start(&rt, patient_config()).await;
    let mut raw = raw(&rt, &server).await;
    let body = json!({"name": "s-err", "bridge": true, "hold": true, "then": "fail"});
    provoke(&mut raw, body, 1, true).await;
    failed_after_a_404(&mut raw, json!({"code": 503, "message": "upstream gone"})).await;
    assert_eq!(
        server.next_end().await,
        EndReason::Local(CloseCode::INTERNAL)
    );
    drop(raw);
    nothing_left(&rt, &mut server, &probe, 1).await;
}

/// The frames of a failed stream with `nt-1` unanswered: its `404`, the
/// error frame `error`, then `Close(1011)`.
async fn failed_after_a_404<R: Runtime>(raw: &mut Raw<R>, error: Value) {
    let reply = raw.expect_json().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["id"], "nt-1", "{reply}");
    assert_eq!(reply["code"], 404, "{reply}");
    assert_eq!(raw.expect_json().await, error);
    assert_eq!(raw.expect_close().await, 1011);
}

/// The handler panics with a notify unanswered and a bridge request
/// pending, while another session streams: the notify is answered `404`,
/// then the `500` error frame, then `Close(1011)`; the request fails, the
/// ids go; the other session streams on, its ids kept, and ends when its
/// client resets.
async fn handler_panic_answers_1011_and_server_survives<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe) = start(&rt, patient_config()).await;
    let mut other = raw(&rt, &server).await;
    let body = json!({"name": "s-other", "then": "stream"});
    provoke(&mut other, body, 0, false).await;
    let mut raw = raw(&rt, &server).await;
    let body = json!({"name": "s-panic", "bridge": true, "hold": true, "then": "panic"});
    provoke(&mut raw, body, 1, true).await;
    let error = json!({"code": 500, "message": "the handler panicked"});
    failed_after_a_404(&mut raw, error).await;
    assert_eq!(
        server.next_end().await,
        EndReason::Local(CloseCode::INTERNAL)
    );
    assert!(!server.registry.contains("s-panic"));
    assert!(server.registry.contains("s-other"));
    for _ in 0..1000 {
        other.expect_json().await;
    }
    other.reset();
    assert_eq!(server.next_end().await, EndReason::TransportLost);
    drop(raw);
    nothing_left(&rt, &mut server, &probe, 1).await;
}

/// A server with room for one pending server request, and a client.
async fn one_slot<R: Sockets>(
    rt: &Counted<R>,
) -> (TestServer<Counted<R>>, Arc<Probe>, Raw<Counted<R>>) {
    let mut config = patient_config();
    config.max_server_requests = 1;
    let (server, probe) = start(rt, config).await;
    let raw = raw(rt, &server).await;
    (server, probe, raw)
}

/// Resets `raw`: its session ends `TransportLost`, having dropped and
/// counted `unknown` answers to requests that had already ended; nothing
/// is left.
async fn reset_with_unknown_answers<R: Sockets>(
    rt: &Counted<R>,
    server: &mut TestServer<Counted<R>>,
    probe: &Probe,
    raw: Raw<Counted<R>>,
    unknown: u64,
) {
    raw.reset();
    let served = server.next_served().await;
    assert_eq!(served.end, EndReason::TransportLost);
    assert_eq!(
        served.stats.unknown_responses, unknown,
        "{:?}",
        served.stats
    );
    nothing_left(rt, server, probe, 0).await;
}

/// A requester that stops waiting (its future dropped) leaves its request
/// pending in the engine until the answer comes or the deadline passes,
/// no longer: with room for one pending request, a second is refused
/// (`TooManyRequests`) while the first is pending and goes out once it
/// ended. A late answer to a request still pending is dropped quietly (not
/// counted as unknown); one to a request already timed out is counted.
async fn dropped_requester_leaves_no_pending_request<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe, mut raw) = one_slot(&rt).await;
    provoke(
        &mut raw,
        json!({"name": "s-drop", "then": "wait"}),
        0,
        false,
    )
    .await;
    let registry = server.registry.clone();
    let ask =
        |timeout: Duration| registry.request("s-drop", HttpRequest::new("GET").timeout(timeout));

    // Answered after its requester left: dropped quietly.
    let first = asked_then_dropped(&mut raw, ask(NEVER)).await;
    let refused = patiently(&rt, ask(NEVER)).await;
    assert_eq!(refused.unwrap_err(), RequestFailed::TooManyRequests);
    raw.text(&json!({"id": first, "status": 200}).to_string())
        .await;
    answered_once_room(&rt, &mut raw, || ask(NEVER)).await;

    // Timed out after its requester left: the slot is free again.
    let second = asked_then_dropped(&mut raw, ask(Duration::from_millis(100))).await;
    answered_once_room(&rt, &mut raw, || ask(NEVER)).await;
    // Its answer, very late, is unknown: dropped and counted.
    raw.text(&json!({"id": second, "status": 200}).to_string())
        .await;
    answered_once_room(&rt, &mut raw, || ask(NEVER)).await;

    reset_with_unknown_answers(&rt, &mut server, &probe, raw, 1).await;
}

/// Polls `request` until its frame reaches `raw`, then drops it; the id.
async fn asked_then_dropped<R: Runtime>(
    raw: &mut Raw<R>,
    request: impl std::future::Future,
) -> String {
    let frame = match select(pin!(request), pin!(raw.expect_json())).await {
        Either::Left(_) => panic!("the request ended before it reached the client"),
        Either::Right((frame, _)) => frame,
    };
    assert_eq!(frame["method"], "GET", "{frame}");
    frame["id"].as_str().expect("an id").to_owned()
}

/// Asks (again while the engine refuses it as `TooManyRequests`: a
/// previous request has not ended yet) until a request goes out; answers
/// it `204` and expects the requester to get that answer.
async fn answered_once_room<R, F, Fut>(rt: &R, raw: &mut Raw<R>, ask: F)
where
    R: Runtime,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<wirestream_runtime::Response, RequestFailed>>,
{
    patiently(rt, async {
        loop {
            let mut request = pin!(ask());
            let asked = match select(request.as_mut(), pin!(raw.expect_json())).await {
                Either::Left((Err(RequestFailed::TooManyRequests), _)) => None,
                Either::Left((other, _)) => panic!("unexpected {other:?}"),
                Either::Right((frame, _)) => Some(frame),
            };
            match asked {
                None => {
                    rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
                }
                Some(frame) => {
                    let answer = json!({"id": frame["id"], "status": 204});
                    raw.text(&answer.to_string()).await;
                    let response = request.await.expect("answered");
                    assert_eq!(response.status(), Some(204));
                    return;
                }
            }
        }
    })
    .await;
}

/// The next `n` frames, sorted: server requests (`"method"`) first.
async fn frames<R: Runtime>(raw: &mut Raw<R>, n: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    for _ in 0..n {
        frames.push(raw.expect_json().await);
    }
    frames.sort_by_key(|frame| frame.get("method").is_none());
    frames
}

/// A handler that stops waiting for its own server request
/// (`Session::request` dropped): with room for one pending request, its
/// next one goes out once the client answered the first (the late answer
/// dropped quietly, not counted as unknown), and gets its answer.
async fn dropped_session_requester_frees_its_slot<R: Sockets>(rt: R) {
    let rt = Counted::new(rt);
    let (mut server, probe, mut raw) = one_slot(&rt).await;
    raw.text(&json!({"name": "s-abandon", "then": "abandon"}).to_string())
        .await;
    // Its chunk and its request, in either order.
    let first = frames(&mut raw, 2).await;
    assert_eq!(first[1]["n"], 0, "{first:?}");
    raw.text(&notify("nt-1")).await;
    assert_eq!(raw.expect_json().await, json!({"type": "ok", "id": "nt-1"}));
    // The requester has gone: the answer is late.
    raw.text(&json!({"id": first[0]["id"], "status": 200}).to_string())
        .await;
    raw.text(&notify("nt-2")).await;
    let second = frames(&mut raw, 2).await;
    assert_eq!(second[1], json!({"type": "ok", "id": "nt-2"}));
    assert_ne!(second[0]["id"], first[0]["id"]);
    raw.text(&json!({"id": second[0]["id"], "status": 201}).to_string())
        .await;
    assert_eq!(
        raw.expect_json().await,
        json!({"id": "agc-1", "status": 201})
    );
    reset_with_unknown_answers(&rt, &mut server, &probe, raw, 0).await;
}
