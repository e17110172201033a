//! Slow consumers over real sockets, on tokio and on smol (PROTOCOL.md §5,
//! outbound queue and write stall): clients that stop reading while their
//! handler produces as fast as it can.
//!
//! - 1, then 20 stalled clients: each producer is held back (its send
//!   waits; what it got through is bounded by the engine's queue, the chunk
//!   channel, tungstenite's write buffer and the kernel's socket buffers,
//!   and does not grow), another session on the same server streams
//!   meanwhile, and the process's resident memory stays within 16 MiB of
//!   what it was at rest for the whole set;
//! - with a short write-stall timeout, 20 stalled sessions end as
//!   `WriteStalled`, and their producers' sends fail.
//!
//! The server and its clients share this process: a stalled client's
//! socket is kept open and never read, so what it holds back is kernel
//! memory, not resident memory. The scenarios run one at a time (they
//! measure the process), and wait on events, never for a while.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use wirestream_proto::CloseCode;
use wirestream_runtime::{Config, EndReason, HandlerResult, Runtime, Session};
use wirestream_tests::{Raw, Sockets, TestServer, eventually, on_both_runtimes, tcp_connect};

on_both_runtimes!(
    stalled_consumers_hold_producers_back_and_others_stream,
    stalled_consumers_end_at_the_write_stall,
    stall_is_judged_before_the_timer_lets_the_driver_write,
);

/// How many clients stall at once, set after set.
const SETS: [usize; 2] = [1, 20];
/// How far resident memory may rise above rest while a set is stalled.
const RSS_SLACK: u64 = 16 << 20;
/// The stalled clients' receive buffer, and the server's send buffers
/// (each doubled by the kernel for its bookkeeping): small and fixed, so
/// that a stalled connection's socket buffers fill at once and stay full
/// (a send buffer left to the kernel grows to megabytes on loopback).
const RECV_BUFFER: usize = 4 << 10;
const SEND_BUFFER: usize = 8 << 10;
/// What each session that streams meanwhile reads.
const OTHER_CHUNKS: usize = 2000;
/// Sessions that may stream meanwhile before the stalled producers must
/// have stopped.
const ROUNDS: usize = 4;
/// A chunk: `{"id":"agc-1","pad":"xx…"}`, about 1 KiB.
const PAD: usize = 1000;
/// Chunks a producer may have got through besides the engine's queue and
/// the socket: the runtime's chunk channel (8, plus one per sender: the
/// session's and the producer's), one parked by the driver on a full queue
/// and one taken from the queue that tungstenite has not accepted yet.
const IN_FLIGHT: usize = 8 + 2 + 1 + 1;
/// tungstenite's write buffer: the engine's queue limit, at most 128 KiB
/// (`websocket_config`), plus the frame that passes it.
const WRITE_BUFFER: usize = (128 << 10) + PAD + 64;

/// The scenarios measure the whole process: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This process's resident memory, in bytes (Linux: `VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib << 10
}

/// A server of [`producing`] whose connections' send buffers are
/// [`SEND_BUFFER`].
async fn start<R: Sockets>(rt: &R, config: Config, producers: &Arc<Producers>) -> TestServer<R> {
    let tune = |stream: &R::Stream| {
        R::socket(stream)
            .set_send_buffer_size(SEND_BUFFER)
            .expect("SO_SNDBUF");
    };
    TestServer::start_tuned(rt, config, producing(rt, producers), tune).await
}

/// One producer's progress.
#[derive(Default)]
struct Progress {
    /// Chunks its sends took.
    sent: AtomicUsize,
    /// A send of its is waiting (the outbound queue is full).
    waiting: AtomicBool,
    /// A send of its failed: the session is over.
    failed: AtomicBool,
}

/// Every producer's progress, by session name.
#[derive(Default)]
struct Producers(Mutex<HashMap<String, Arc<Progress>>>);

impl Producers {
    fn track(&self, name: &str) -> Arc<Progress> {
        let mut all = self.0.lock().unwrap();
        all.entry(name.to_owned()).or_default().clone()
    }

    fn all(&self, names: &[String], check: impl Fn(&Progress) -> bool) -> bool {
        let all = self.0.lock().unwrap();
        names
            .iter()
            .all(|name| all.get(name).is_some_and(|p| check(p)))
    }

    fn sent(&self, names: &[String]) -> Vec<usize> {
        names
            .iter()
            .map(|name| self.track(name).sent.load(Ordering::SeqCst))
            .collect()
    }
}

/// A handler that registers `"name"` and produces 1 KiB chunks as fast as
/// it may (`"limit"` of them, or until the session ends) on a task of its
/// own, as CPU-heavy work would, so that it learns of the end from its
/// send; it records its progress.
fn producing<R: Runtime>(
    rt: &R,
    producers: &Arc<Producers>,
) -> impl FnOnce(Value, Session) -> BoxFuture<'static, HandlerResult> + Clone + Send + 'static {
    let (rt, producers) = (rt.clone(), producers.clone());
    move |body: Value, session: Session| {
        Box::pin(async move {
            let name = body["name"].as_str().expect("a name").to_owned();
            let limit = body["limit"].as_u64().map_or(usize::MAX, |n| n as usize);
            session.register_session(&name).unwrap();
            let progress = producers.track(&name);
            let mut chunks = session.chunks();
            let (done_tx, done) = oneshot::channel::<()>();
            rt.spawn(async move {
                let chunk = json!({"id": "agc-1", "pad": "x".repeat(PAD)});
                for _ in 0..limit {
                    let mut send = pin!(chunks.send(&chunk, ["agc-1"]));
                    let sent = match send.as_mut().now_or_never() {
                        Some(sent) => sent,
                        None => {
                            progress.waiting.store(true, Ordering::SeqCst);
                            let sent = send.await;
                            progress.waiting.store(false, Ordering::SeqCst);
                            sent
                        }
                    };
                    if sent.is_err() {
                        progress.failed.store(true, Ordering::SeqCst);
                        break;
                    }
                    progress.sent.fetch_add(1, Ordering::SeqCst);
                }
                let _ = done_tx.send(());
            });
            let _ = done.await;
            Ok(())
        })
    }
}

/// Liveness off, so that only what a scenario sets ends a session.
fn config(write_stall: Option<Duration>) -> Config {
    let mut config = Config::default();
    config.ping_interval = None;
    config.liveness_timeout = None;
    config.write_stall_timeout = write_stall;
    config
}

/// `count` clients that send their body (`{"name":"<prefix>-<i>"}`) and
/// then read nothing, their socket kept open; and their names.
async fn stalled<R: Sockets>(
    rt: &R,
    server: &TestServer<R>,
    prefix: &str,
    count: usize,
) -> (Vec<String>, Vec<Raw<R>>) {
    let mut names = Vec::new();
    let mut clients = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let stream = tcp_connect::<R>(server.addr, Some(RECV_BUFFER));
        let mut raw = Raw::over(rt, &server.url, stream).await;
        raw.text(&json!({"name": name}).to_string()).await;
        names.push(name);
        clients.push(raw);
    }
    (names, clients)
}

/// A session named `name` that reads [`OTHER_CHUNKS`] chunks as they come,
/// then the server's `Close(1000)`; the highest resident memory seen.
async fn streams_on<R: Sockets>(rt: &R, server: &mut TestServer<R>, name: &str) -> u64 {
    let mut raw = Raw::over(rt, &server.url, tcp_connect::<R>(server.addr, None)).await;
    raw.text(&json!({"name": name, "limit": OTHER_CHUNKS}).to_string())
        .await;
    let mut peak = rss();
    for n in 0..OTHER_CHUNKS {
        assert_eq!(raw.expect_json().await["id"], "agc-1");
        if n % 100 == 0 {
            peak = peak.max(rss());
        }
    }
    assert_eq!(raw.expect_close().await, 1000);
    assert_eq!(server.next_end().await, EndReason::Local(CloseCode::NORMAL));
    peak.max(rss())
}

/// 1, then 20 clients stop reading while their producers go as fast as
/// they can: each producer is held back (waiting in its send, what it got
/// through bounded, and no further across a whole session that streams
/// meanwhile), other sessions stream their chunks meanwhile, and resident
/// memory stays within 16 MiB of rest. Then the
/// stalled clients reset: their sessions end, their producers' sends fail.
// The guard serializes whole tests, each on its own thread and executor;
// no task of either takes the lock.
#[allow(clippy::await_holding_lock)]
async fn stalled_consumers_hold_producers_back_and_others_stream<R: Sockets>(rt: R) {
    let _one = one_at_a_time();
    let config = config(None);
    let producers = Arc::new(Producers::default());
    let mut server = start(&rt, config.clone(), &producers).await;
    // At rest: the server has served a session (its threads, pools and
    // buffers are there) and serves none.
    streams_on(&rt, &mut server, "warm-up").await;
    let chunk_len = json!({"id": "agc-1", "pad": "x".repeat(PAD)})
        .to_string()
        .len();
    // The kernel doubles each buffer it is asked for, and lets the write
    // that finds the send buffer not yet full queue one segment past it
    // (64 KiB on loopback).
    let kernel = 2 * (SEND_BUFFER + RECV_BUFFER) + (64 << 10);
    let bound = config.max_queued_frames + IN_FLIGHT + (WRITE_BUFFER + kernel) / chunk_len;
    for (set, count) in SETS.into_iter().enumerate() {
        let rest = rss();
        let (names, clients) = stalled(&rt, &server, &format!("stalled-{set}"), count).await;
        eventually(&rt, || {
            producers.all(&names, |p| p.waiting.load(Ordering::SeqCst))
        })
        .await;
        // Other sessions stream meanwhile, one after another, until one
        // has streamed all its chunks while the stalled producers got no
        // further (the first may find them still filling what they can
        // hold); each within the bound all along.
        let mut peak = rest;
        let mut held = producers.sent(&names);
        for round in 0.. {
            assert!(round < ROUNDS, "the stalled producers kept going: {held:?}");
            peak = peak.max(streams_on(&rt, &mut server, &format!("other-{set}-{round}")).await);
            let after = producers.sent(&names);
            assert!(
                after.iter().all(|&sent| sent <= bound),
                "{after:?} chunks got through (bound {bound})"
            );
            if after == held {
                break;
            }
            held = after;
        }
        eprintln!(
            "{count} stalled: rest {} KiB, peak {} KiB (+{} KiB); chunks each {held:?} (bound {bound})",
            rest >> 10,
            peak >> 10,
            peak.saturating_sub(rest) >> 10,
        );
        assert!(
            producers.all(&names, |p| p.waiting.load(Ordering::SeqCst)),
            "every producer still waits"
        );
        assert!(
            peak.saturating_sub(rest) <= RSS_SLACK,
            "{count} stalled sessions took {} KiB over rest ({} KiB)",
            peak.saturating_sub(rest) >> 10,
            rest >> 10
        );
        clients.into_iter().for_each(Raw::reset);
        all_end(
            &rt,
            &mut server,
            &producers,
            &names,
            EndReason::TransportLost,
        )
        .await;
    }
}

/// The sessions `names` end as `end`, their producers' sends fail, and the
/// registry is left empty.
async fn all_end<R: Sockets>(
    rt: &R,
    server: &mut TestServer<R>,
    producers: &Producers,
    names: &[String],
    end: EndReason,
) {
    for _ in names {
        assert_eq!(server.next_end().await, end);
    }
    eventually(rt, || {
        producers.all(names, |p| p.failed.load(Ordering::SeqCst))
    })
    .await;
    assert!(server.registry.is_empty());
}

/// 20 clients stop reading, the write-stall timeout is 300 ms: each
/// session ends as `WriteStalled`, its ids leave the registry, and its
/// producer's send fails.
// See above: the guard serializes whole tests.
#[allow(clippy::await_holding_lock)]
async fn stalled_consumers_end_at_the_write_stall<R: Sockets>(rt: R) {
    let _one = one_at_a_time();
    let count = SETS[1];
    let producers = Arc::new(Producers::default());
    let config = config(Some(Duration::from_millis(300)));
    let mut server = start(&rt, config, &producers).await;
    let (names, clients) = stalled(&rt, &server, "stalled", count).await;
    all_end(
        &rt,
        &mut server,
        &producers,
        &names,
        EndReason::WriteStalled,
    )
    .await;
    drop(clients);
}

/// One client stops reading, the sockets keep the sizes the kernel gives
/// them: the session ends at the write-stall timeout (2 s), before the
/// liveness timeout (3 s) could end it. Pins a smol run that went past its
/// write stall: the timer woke the driver, whose first write found room the
/// reactor had not reported, which restarted the stall clock.
// See above: the guard serializes whole tests.
#[allow(clippy::await_holding_lock)]
async fn stall_is_judged_before_the_timer_lets_the_driver_write<R: Sockets>(rt: R) {
    let _one = one_at_a_time();
    let producers = Arc::new(Producers::default());
    let mut config = config(Some(Duration::from_secs(2)));
    config.liveness_timeout = Some(Duration::from_secs(3));
    let mut server = TestServer::start(&rt, config, producing(&rt, &producers)).await;
    let stream = tcp_connect::<R>(server.addr, None);
    let mut raw = Raw::over(&rt, &server.url, stream).await;
    raw.text(&json!({"name": "kernel-sized"}).to_string()).await;
    assert_eq!(server.next_end().await, EndReason::WriteStalled);
    drop(raw);
}
