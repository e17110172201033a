//! Adapter benchmarks, each measured side by side with a bare
//! async-tungstenite baseline in the same run, on tokio and on smol:
//!
//! - `stream_1k`: one connection streams 2 000 chunks of ~1 KiB to a bare
//!   reader; wirestream (`Session::send` through the driver) vs the honest
//!   floor, a bare async-tungstenite loop that serializes each chunk with
//!   serde_json and `feed`s it, flushing only when nothing more is ready
//!   (`bare`), and, for reference, the same loop flushing every frame with
//!   `send` (`bare_send`).
//! - `round_trip`: one server request (registry → client handler →
//!   response) vs one bare text echo round trip of a frame of the same size.
//!   `wirestream` asks from a task of its own, as an HTTP bridge does (the
//!   request crosses to the connection's task and the answer back);
//!   `in_session` asks from the session's handler with `Session::request`
//!   (the handler runs on the connection's task: no crossing).
//!
//! criterion measures each side's absolute time; the ratios come from
//! interleaved paired rounds (one run of each side back to back, alternating
//! which goes first), printed at the end as the median of the per-round
//! ratios with its quartiles and target.
//!
//! `cargo bench -p wirestream-tests --bench adapters`
//! (`WIRESTREAM_BENCH_ROUNDS=N` paired rounds per round-trip figure, a
//! quarter as many per stream figure; 40 by default); figures: see
//! BENCHMARKS.md.

use std::future::Future;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use criterion::{Criterion, Throughput, criterion_group};
use futures_channel::oneshot;
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use wirestream_runtime::{
    Client, Config, HttpRequest, HttpResponse, Listener, Registry, Runtime, Session,
    websocket_config,
};
use wirestream_tests::{Smol, TestServer, Tokio, smol_run};

const CHUNKS: usize = 2_000;

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    content: &'a str,
}

fn chunk(pad: &str) -> Chunk<'_> {
    Chunk {
        id: "agc-1",
        object: "agent.completion.chunk",
        content: pad,
    }
}

fn pad() -> String {
    "x".repeat(1024 - 60)
}

async fn raw_connect<R: Runtime>(rt: &R, url: &str) -> WebSocketStream<R::Stream> {
    let request = url.into_client_request().unwrap();
    let port = request.uri().port_u16().unwrap();
    let stream = rt.connect("127.0.0.1", port).await.unwrap();
    async_tungstenite::client_async_with_config(
        request,
        stream,
        Some(websocket_config(&Config::default())),
    )
    .await
    .unwrap()
    .0
}

/// The reader both streaming servers face: sends the body, counts text
/// frames until the close.
async fn read_stream<R: Runtime>(rt: &R, url: &str) -> usize {
    let mut ws = raw_connect(rt, url).await;
    ws.send(Message::text("{}")).await.unwrap();
    let mut n = 0;
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(_) => n += 1,
            Message::Close(_) => {
                let _ = ws.flush().await;
            }
            _ => {}
        }
    }
    n
}

/// A bare async-tungstenite server: each connection, once handshaken, is
/// handed to `serve` on its own task.
async fn bare_server<R, F, Fut>(rt: R, serve: F) -> String
where
    R: Runtime,
    F: Fn(WebSocketStream<R::Stream>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    rt.clone().spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let serve = serve.clone();
            rt.spawn(async move {
                let config = websocket_config(&Config::default());
                let ws = async_tungstenite::accept_async_with_config(stream, Some(config))
                    .await
                    .unwrap();
                serve(ws).await;
            });
        }
    });
    url
}

/// The honest floor: reads the body, serializes each chunk and `feed`s it
/// (tungstenite writes to the socket as its buffer fills), flushes once
/// when nothing more is ready (here: at the end), closes.
async fn bare_feed<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    let _body = ws.next().await;
    let pad = pad();
    for _ in 0..CHUNKS {
        let text = serde_json::to_string(&chunk(&pad)).unwrap();
        ws.feed(Message::text(text)).await.unwrap();
    }
    ws.flush().await.unwrap();
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
}

/// For reference: the same loop flushing every frame (`send`).
async fn bare_stream<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    let _body = ws.next().await;
    let pad = pad();
    for _ in 0..CHUNKS {
        let text = serde_json::to_string(&chunk(&pad)).unwrap();
        ws.send(Message::text(text)).await.unwrap();
    }
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
}

/// The bare echo: echoes every text frame.
async fn bare_echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() && ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn streaming(
    _: serde_json::Value,
    mut session: Session,
) -> wirestream_runtime::HandlerResult {
    let pad = pad();
    for _ in 0..CHUNKS {
        session.send(&chunk(&pad), ["agc-1"]).await.unwrap();
    }
    Ok(())
}

/// A handler that registers "bench" and holds the session open.
async fn holding(_: serde_json::Value, mut session: Session) -> wirestream_runtime::HandlerResult {
    session.register_session("bench").unwrap();
    let mut requests = session.requests();
    session.send(&chunk("ready"), ["agc-1"]).await.unwrap();
    while requests.recv().await.is_some() {}
    Ok(())
}

#[derive(serde::Deserialize)]
struct Asks {
    iters: u64,
}

/// A handler that sends `iters` server requests one after the other and
/// reports how long they took, in nanoseconds, as its one chunk.
async fn asking(body: Asks, mut session: Session) -> wirestream_runtime::HandlerResult {
    let start = Instant::now();
    for _ in 0..body.iters {
        let response = session.request(HttpRequest::new("GET")).await;
        assert_eq!(response.unwrap().status(), Some(200));
    }
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    session
        .send(&serde_json::json!({ "ns": ns }), ["agc-1"])
        .await
        .unwrap();
    Ok(())
}

fn bench_runtime<R: Runtime + Default>(
    c: &mut Criterion,
    name: &str,
    block_on: fn(std::pin::Pin<Box<dyn Future<Output = Duration> + '_>>) -> Duration,
) {
    let rt = R::default();
    // Servers live for the whole benchmark.
    let setup = |f: std::pin::Pin<Box<dyn Future<Output = Duration> + '_>>| block_on(f);
    let mut urls = (String::new(), String::new(), String::new());
    let mut send_url = String::new();
    let mut servers = Vec::new();
    let mut registry = Registry::default();
    let mut ask_url = String::new();
    setup(Box::pin(async {
        let stream = TestServer::start(&rt, Config::default(), streaming).await;
        let hold = TestServer::start(&rt, Config::default(), holding).await;
        let ask = TestServer::start(&rt, Config::default(), asking).await;
        ask_url = ask.url.clone();
        servers.push(ask);
        urls = (
            stream.url.clone(),
            bare_server(rt.clone(), bare_feed).await,
            bare_server(rt.clone(), bare_echo).await,
        );
        send_url = bare_server(rt.clone(), bare_stream).await;
        registry = hold.registry.clone();
        let hold_url = hold.url.clone();
        servers.push(stream);
        servers.push(hold);
        urls.2 = format!("{}|{hold_url}", urls.2);
        Duration::ZERO
    }));
    let (wire_url, bare_url, echo_and_hold) = urls;
    let (echo_url, hold_url) = echo_and_hold.split_once('|').unwrap();

    // Each side of each figure, timed over `iters` runs (streams of
    // CHUNKS chunks, or round trips).
    let stream = |url: &str, iters: u64| {
        block_on(Box::pin(async {
            let start = Instant::now();
            for _ in 0..iters {
                assert_eq!(read_stream(&rt, url).await, CHUNKS);
            }
            start.elapsed()
        }))
    };
    let from_task = |iters: u64| {
        block_on(Box::pin(async {
            let (mut chunks, _notifier) = Client::new(rt.clone(), hold_url)
                .on_server_request(|_| async { HttpResponse::new(200) })
                .connect::<_, serde_json::Value>(&serde_json::json!({}))
                .await
                .unwrap();
            chunks.next().await.unwrap().unwrap();
            while !registry.contains("bench") {
                std::thread::yield_now();
            }
            // The requester is a task of the runtime, as an HTTP
            // bridge's handler would be.
            let (done, elapsed) = oneshot::channel();
            let requests = registry.clone();
            rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let response = requests.request("bench", HttpRequest::new("GET")).await;
                    assert_eq!(response.unwrap().status(), Some(200));
                }
                let _ = done.send(start.elapsed());
            });
            let elapsed = elapsed.await.unwrap();
            drop(chunks);
            while registry.contains("bench") {
                std::thread::yield_now();
            }
            elapsed
        }))
    };
    let in_session = |iters: u64| {
        block_on(Box::pin(async {
            let (mut chunks, _notifier) = Client::new(rt.clone(), &ask_url)
                .on_server_request(|_| async { HttpResponse::new(200) })
                .connect::<_, serde_json::Value>(&serde_json::json!({ "iters": iters }))
                .await
                .unwrap();
            let report = chunks.next().await.unwrap().unwrap();
            Duration::from_nanos(report["ns"].as_u64().unwrap())
        }))
    };
    let bare_echo = |iters: u64| {
        block_on(Box::pin(async {
            let mut ws = raw_connect(&rt, echo_url).await;
            let (done, elapsed) = oneshot::channel();
            rt.spawn(async move {
                // The size of a server request frame.
                let frame = r#"{"id":"8c7a0f8e-0c4b-4a51-9a53-6d1b1bb0a3f2","method":"GET"}"#;
                let start = Instant::now();
                for _ in 0..iters {
                    ws.send(Message::text(frame)).await.unwrap();
                    let echo = ws.next().await.unwrap().unwrap();
                    assert!(echo.is_text());
                }
                let _ = done.send(start.elapsed());
                let _ = ws.close(None).await;
            });
            elapsed.await.unwrap()
        }))
    };

    let mut group = c.benchmark_group(format!("stream_1k/{name}"));
    group.throughput(Throughput::Elements(CHUNKS as u64));
    group.sample_size(20);
    for (side, url) in [
        ("wirestream", &wire_url),
        ("bare", &bare_url),
        ("bare_send", &send_url),
    ] {
        group.bench_function(side, |b| b.iter_custom(|iters| stream(url, iters)));
    }
    group.finish();

    let mut group = c.benchmark_group(format!("round_trip/{name}"));
    group.bench_function("wirestream", |b| b.iter_custom(from_task));
    group.bench_function("in_session", |b| b.iter_custom(in_session));
    group.bench_function("bare_echo", |b| b.iter_custom(bare_echo));
    group.finish();

    // The ratios, from interleaved rounds: each round times one run of
    // each side back to back, so the machine's drift between criterion's
    // sequential runs (10-30% here) hits both sides of a round alike.
    let rounds = paired_rounds();
    if rounds > 0 {
        let stream_rounds = rounds.div_ceil(4);
        let figures = [
            paired(
                format!("stream_1k/{name}: bare / wirestream time (= throughput ratio)"),
                stream_rounds,
                || stream(&bare_url, 1),
                || stream(&wire_url, 1),
                Target::AtLeast(0.8),
            ),
            paired(
                format!("stream_1k/{name}: bare_send / wirestream time (reference)"),
                stream_rounds,
                || stream(&send_url, 1),
                || stream(&wire_url, 1),
                Target::None,
            ),
            paired(
                format!("round_trip/{name}: wirestream (from a task of its own) / bare echo"),
                rounds,
                || from_task(ROUND_TRIPS),
                || bare_echo(ROUND_TRIPS),
                Target::AtMost(1.2),
            ),
            paired(
                format!("round_trip/{name}: in_session (Session::request) / bare echo"),
                rounds,
                || in_session(ROUND_TRIPS),
                || bare_echo(ROUND_TRIPS),
                Target::AtMost(1.2),
            ),
        ];
        PAIRED.with_borrow_mut(|all| all.extend(figures));
    }
    drop(servers);
}

/// Round trips per timed block of a paired round.
const ROUND_TRIPS: u64 = 400;

/// Paired rounds per round-trip figure (a quarter of that for the streams,
/// whose runs are longer): `WIRESTREAM_BENCH_ROUNDS`, 40 by default, 0 to
/// skip; 2 under `cargo test --benches`.
fn paired_rounds() -> usize {
    let flag = |f: &str| std::env::args().any(|a| a == f);
    if flag("--list") || flag("--profile-time") {
        0
    } else if flag("--bench") {
        std::env::var("WIRESTREAM_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(40)
    } else {
        2
    }
}

/// What a paired figure is held to.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    None,
}

/// A paired figure: the median of the per-round ratios `a / b`, with
/// their quartiles, and the median time of each side.
struct Paired {
    what: String,
    ratio: [f64; 3],
    times: [Duration; 2],
    target: Target,
}

thread_local! {
    static PAIRED: std::cell::RefCell<Vec<Paired>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `rounds` rounds, each timing `a` then `b` (alternating which goes
/// first, so neither always runs on a warmer machine).
fn paired(
    what: String,
    rounds: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
    target: Target,
) -> Paired {
    let (mut ratios, mut at, mut bt) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (ta, tb) = if round % 2 == 0 {
            let ta = a();
            (ta, b())
        } else {
            let tb = b();
            (a(), tb)
        };
        ratios.push(ta.as_secs_f64() / tb.as_secs_f64());
        at.push(ta);
        bt.push(tb);
    }
    ratios.sort_by(f64::total_cmp);
    at.sort();
    bt.sort();
    let q = |n: usize| ratios[(ratios.len() - 1) * n / 4];
    Paired {
        what,
        ratio: [q(2), q(1), q(3)],
        times: [at[at.len() / 2], bt[bt.len() / 2]],
        target,
    }
}

fn on_tokio(f: std::pin::Pin<Box<dyn Future<Output = Duration> + '_>>) -> Duration {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
    }
    RT.with(|rt| rt.block_on(f))
}

fn on_smol(f: std::pin::Pin<Box<dyn Future<Output = Duration> + '_>>) -> Duration {
    smol_run(f)
}

fn adapters(c: &mut Criterion) {
    bench_runtime::<Tokio>(c, "tokio", on_tokio);
    bench_runtime::<Smol>(c, "smol", on_smol);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = adapters
}

/// Runs the benchmarks (criterion: absolute times), then prints each
/// figure as a ratio to its baseline from interleaved rounds, with its
/// target.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}

fn report() {
    let figures = PAIRED.with_borrow_mut(std::mem::take);
    if figures.is_empty() {
        return;
    }
    println!(
        "\nratios, paired: median [quartiles] of the per-round ratios of interleaved rounds; median time of each side"
    );
    for Paired {
        what,
        ratio: [median, low, high],
        times: [a, b],
        target,
    } in figures
    {
        let verdict = match target {
            Target::AtLeast(t) if median >= t => format!("target >= {t}x: met"),
            Target::AtLeast(t) => format!("target >= {t}x: MISSED"),
            Target::AtMost(t) if median <= t => format!("target <= {t}x: met"),
            Target::AtMost(t) => format!("target <= {t}x: MISSED"),
            Target::None => String::new(),
        };
        println!("  {what}: {median:.2}x [{low:.2}x..{high:.2}x] ({a:.1?} vs {b:.1?})  {verdict}");
    }
}
