//! Liveness over real sockets (PROTOCOL.md §5), on tokio and on smol: a
//! peer that goes silent without a reset, a peer that reads nothing, and a
//! healthy peer that only listens. The timeouts are short so each scenario
//! takes a fraction of a second; every wait is on an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::pin::pin;

use futures_channel::oneshot;
use futures_util::future::{Either, select};
use futures_util::{AsyncReadExt, StreamExt};
use serde_json::json;
use wirestream_proto::CloseCode;
use wirestream_runtime::{Client, Config, EndReason, ResponseError, Runtime, Session};
use wirestream_tests::{Raw, TestServer, eventually, on_both_runtimes, patiently};

on_both_runtimes!(
    silent_peer_is_dropped_at_the_liveness_timeout,
    non_reading_peer_is_dropped_at_the_write_stall,
    slow_reader_is_dropped_at_the_write_stall,
    listening_peer_answers_the_keepalive_and_stays,
);

type Handler = fn(
    serde_json::Value,
    Session,
) -> futures_util::future::BoxFuture<'static, Result<(), ResponseError<'static>>>;

/// Registers "s-live" and holds the session open until the client goes.
fn holding(
    _: serde_json::Value,
    mut session: Session,
) -> futures_util::future::BoxFuture<'static, Result<(), ResponseError<'static>>> {
    Box::pin(async move {
        session.register_session("s-live").unwrap();
        let mut requests = session.requests();
        while requests.recv().await.is_some() {}
        Ok(())
    })
}

/// A peer that sent its body and then nothing at all (its socket is never
/// polled, so it would not even answer a ping) is given up on at the
/// liveness timeout: a best-effort Close(1008), the session's ids leave the
/// registry. (Pings are off here so that the close is the one frame the
/// peer finds: answering a ping after the server hung up would fail first.)
async fn silent_peer_is_dropped_at_the_liveness_timeout<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.ping_interval = None;
    config.liveness_timeout = Some(Duration::from_millis(300));
    let mut server = TestServer::start(&rt, config, holding as Handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    eventually(&rt, || server.registry.contains("s-live")).await;
    let served = server.next_served().await;
    assert_eq!(served.end, EndReason::PeerSilent);
    assert!(server.registry.is_empty());
    // What the silent peer finds when it looks again.
    assert_eq!(raw.expect_close().await, CloseCode::POLICY.0);
}

/// A peer that never reads while the server produces as fast as it can: the
/// socket's buffers fill, then the engine's queue, which stays full for the
/// write-stall timeout; the session ends, the producer's send fails.
async fn non_reading_peer_is_dropped_at_the_write_stall<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.max_queued_frames = 16;
    config.write_stall_timeout = Some(Duration::from_millis(300));
    config.ping_interval = None;
    config.liveness_timeout = None;
    let sent = Arc::new(AtomicUsize::new(0));
    let (gone_tx, gone) = oneshot::channel::<()>();
    let gone_tx = Arc::new(std::sync::Mutex::new(Some(gone_tx)));
    let counter = sent.clone();
    let spawner = rt.clone();
    let handler = move |_: serde_json::Value, session: Session| {
        let (counter, gone_tx, rt) = (counter.clone(), gone_tx.clone(), spawner.clone());
        async move {
            session.register_session("s-stall").unwrap();
            // The producer runs on a task of its own, as CPU-heavy work
            // would: it learns of the end from its send.
            let mut chunks = session.chunks();
            let (done_tx, done) = oneshot::channel::<()>();
            rt.spawn(async move {
                let chunk = json!({"id": "agc-1", "pad": "x".repeat(1000)});
                while chunks.send(&chunk, ["agc-1"]).await.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(tx) = gone_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let _ = done_tx.send(());
            });
            let _ = done.await;
            Ok(())
        }
    };
    let mut server = TestServer::start(&rt, config, handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    let served = server.next_served().await;
    assert_eq!(served.end, EndReason::WriteStalled);
    assert!(server.registry.is_empty());
    assert!(
        served.stats.chunks > 16,
        "the socket's buffers took chunks first"
    );
    // The producer learned it: its send failed.
    patiently(&rt, gone).await.unwrap();
    assert!(sent.load(Ordering::Relaxed) as u64 >= served.stats.chunks);
    drop(raw);
}

/// A peer that reads one byte every 50 ms (and sends nothing but what its
/// TCP stack acknowledges) never lets the queue drain: it gets the write
/// stall too, not unbounded memory or a stuck task.
async fn slow_reader_is_dropped_at_the_write_stall<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.max_queued_frames = 16;
    config.write_stall_timeout = Some(Duration::from_millis(300));
    config.ping_interval = None;
    config.liveness_timeout = None;
    let handler = |_: serde_json::Value, mut session: Session| async move {
        session.register_session("s-slow").unwrap();
        let chunk = json!({"id": "agc-1", "pad": "x".repeat(1000)});
        while session.send(&chunk, ["agc-1"]).await.is_ok() {}
        Ok(())
    };
    let mut server = TestServer::start(&rt, config, handler).await;
    let mut raw = Raw::connect(&rt, &server.url).await;
    raw.text("{}").await;
    let slow = rt.clone();
    let reader = async move {
        let mut byte = [0u8; 1];
        loop {
            slow.sleep_until(slow.now() + Duration::from_millis(50))
                .await;
            match raw.ws.get_mut().read(&mut byte).await {
                Ok(1) => {}
                _ => return,
            }
        }
    };
    let served = match select(pin!(server.next_served()), pin!(reader)).await {
        Either::Left((served, _)) => served,
        Either::Right(_) => panic!("the connection ended before the server gave up"),
    };
    assert_eq!(served.end, EndReason::WriteStalled);
    assert!(server.registry.is_empty());
}

/// A client that only listens while the server says nothing for a while
/// answers the server's keepalive pings (its driver polls the socket), so
/// the server never takes it for dead, and the stream ends normally.
async fn listening_peer_answers_the_keepalive_and_stays<R: Runtime>(rt: R) {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(30));
    config.liveness_timeout = Some(Duration::from_millis(100));
    let quiet = rt.clone();
    let handler = move |_: serde_json::Value, mut session: Session| {
        let rt = quiet.clone();
        async move {
            // Silent for six liveness timeouts, then one chunk.
            rt.sleep_until(rt.now() + Duration::from_millis(600)).await;
            let _ = session.send(&json!({"id": "agc-1"}), ["agc-1"]).await;
            Ok(())
        }
    };
    let mut server = TestServer::start(&rt, config.clone(), handler).await;
    let (mut chunks, _notifier) = Client::new(rt.clone(), &server.url)
        .config(config)
        .connect::<_, serde_json::Value>(&json!({}))
        .await
        .unwrap();
    let chunk = patiently(&rt, chunks.next()).await.unwrap().unwrap();
    assert_eq!(chunk["id"], "agc-1");
    assert!(patiently(&rt, chunks.next()).await.is_none());
    assert_eq!(chunks.end(), Some(EndReason::Peer(Some(CloseCode::NORMAL))));
    assert_eq!(server.next_end().await, EndReason::Local(CloseCode::NORMAL));
}
