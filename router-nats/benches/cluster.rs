//! `cargo bench -p wirestream-nats --bench cluster`: a server request
//! across two nodes (two `Server`s, one local `nats-server`) against the
//! same request in-process, in one run; and the cost of registering and
//! releasing a session id with and without the router.

#[path = "../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{NatsServer, named_client, node, options};
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use wirestream_tokio::{
    Client, HandlerResult, HttpRequest, Listener, Registry, Server, Session, Tokio, only_path,
};

const SEQUENTIAL: usize = 5_000;
const CONCURRENT: usize = 64;
const THROUGHPUT: usize = 60_000;
const IDS: usize = 20_000;

fn ask() -> HttpRequest {
    HttpRequest::new("POST")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .unwrap()
        .timeout(Duration::from_secs(30))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

/// p50 and p99 of `SEQUENTIAL` calls of `call` one after the other (after
/// 200 to warm up).
async fn latencies<F, Fut>(call: F) -> (Duration, Duration)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..200 {
        call().await;
    }
    let mut all = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let started = Instant::now();
        call().await;
        all.push(started.elapsed());
    }
    all.sort();
    (percentile(&all, 0.5), percentile(&all, 0.99))
}

/// Calls per second of `call` from `CONCURRENT` concurrent callers,
/// `THROUGHPUT` in all.
async fn throughput<F, Fut>(call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for _ in 0..CONCURRENT {
        let call = call.clone();
        callers.spawn(async move {
            for _ in 0..THROUGHPUT / CONCURRENT {
                call().await;
            }
        });
    }
    while let Some(caller) = callers.join_next().await {
        caller.unwrap();
    }
    (THROUGHPUT / CONCURRENT * CONCURRENT) as f64 / started.elapsed().as_secs_f64()
}

/// One server request to `id` through `registry` (a failure is printed).
fn bridge(
    registry: &Registry,
    id: &'static str,
) -> impl Fn() -> BoxFuture + Clone + Send + 'static {
    let registry = registry.clone();
    move || {
        let registry = registry.clone();
        Box::pin(async move {
            if let Err(e) = registry.request(id, ask()).await {
                println!("  a request failed: {e}");
            }
        })
    }
}

type BoxFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Deserialize)]
struct Churn {
    ids: usize,
}

/// Registers and releases `ids` session ids on its connection, and says
/// how long that took.
async fn churn(body: Churn, mut session: Session) -> HandlerResult {
    let ids: Vec<String> = (0..body.ids).map(|n| format!("churn-{n}")).collect();
    let started = Instant::now();
    for id in &ids {
        session.register_session(id).unwrap();
        session.unregister_session(id);
    }
    let elapsed = started.elapsed().as_nanos() as u64;
    let _ = session
        .send(&json!({"id": "agc-1", "ns": elapsed}), ["agc-1"])
        .await;
    Ok(())
}

/// Nanoseconds per register + release on a server using `registry`.
async fn churn_cost(registry: Registry) -> f64 {
    let server = Server::new(Tokio).with_registry(registry);
    let listener = Listener::bind(Tokio, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://{}/churn", listener.local_addr().unwrap());
    tokio::spawn(async move { server.listen(&listener, only_path("/churn"), churn).await });
    let (mut chunks, _) = Client::new(Tokio, &url)
        .connect::<_, serde_json::Value>(&json!({"ids": IDS}))
        .await
        .unwrap();
    use futures_util::StreamExt;
    let chunk = chunks.next().await.unwrap().unwrap();
    chunk["ns"].as_f64().unwrap() / IDS as f64
}

/// The floor: a bare async-nats request-reply echo between two clients on
/// this runtime, the same payload size: p50, p99 and requests/s with
/// `CONCURRENT` callers.
async fn nats_floor(url: &str) -> (Duration, Duration, f64) {
    use futures_util::StreamExt;
    let responder = async_nats::connect(url).await.unwrap();
    let requester = async_nats::connect(url).await.unwrap();
    let mut echo = responder.subscribe("floor.echo").await.unwrap();
    tokio::spawn(async move {
        while let Some(message) = echo.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });
    requester.flush().await.unwrap();
    let payload: Vec<u8> =
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).unwrap();
    let echo = move || {
        let (requester, payload) = (requester.clone(), payload.clone());
        Box::pin(async move {
            requester
                .request("floor.echo", payload.into())
                .await
                .unwrap();
        }) as BoxFuture
    };
    let (p50, p99) = latencies(&echo).await;
    (p50, p99, throughput(echo).await)
}

fn ms(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nats = NatsServer::start();
    let opts = options();
    let a = node(Tokio, &nats.url(), opts.clone()).await;
    let b = node(Tokio, &nats.url(), opts).await;
    let _client = named_client(Tokio, &a, "bench", "client").await;

    let (local, cross) = (bridge(&a.registry, "bench"), bridge(&b.registry, "bench"));
    let (local50, local99) = latencies(&local).await;
    let (cross50, cross99) = latencies(&cross).await;
    let local_rps = throughput(local).await;
    let cross_rps = throughput(cross).await;
    let (floor50, floor99, floor_rps) = nats_floor(&nats.url()).await;
    println!("server request round trip, {SEQUENTIAL} sequential:");
    println!("  in-process   p50 {}  p99 {}", ms(local50), ms(local99));
    println!("  cross-node   p50 {}  p99 {}", ms(cross50), ms(cross99));
    println!(
        "  ratio        p50 {:.2}x  p99 {:.2}x",
        cross50.as_secs_f64() / local50.as_secs_f64(),
        cross99.as_secs_f64() / local99.as_secs_f64()
    );
    println!(
        "  bare NATS request-reply echo (floor of one cross-node hop pair): p50 {}  p99 {}",
        ms(floor50),
        ms(floor99)
    );
    println!("throughput, {CONCURRENT} concurrent callers, {THROUGHPUT} requests:");
    println!("  in-process   {local_rps:.0} req/s");
    println!(
        "  cross-node   {cross_rps:.0} req/s ({:.2}x fewer)",
        local_rps / cross_rps
    );
    println!("  bare NATS request-reply echo: {floor_rps:.0} req/s");

    let plain = churn_cost(Registry::default()).await;
    let routed_registry = Registry::default();
    let router = wirestream_nats::NatsRouter::connect(&nats.url(), &routed_registry, options())
        .await
        .unwrap();
    let routed = churn_cost(routed_registry).await;
    let settle = Instant::now();
    router.settle(Duration::from_secs(60)).await;
    println!("register + release one session id, {IDS} ids:");
    println!("  in-process   {plain:.0} ns/op");
    println!(
        "  with NATS    {routed:.0} ns/op (+ {} to settle at the server)",
        ms(settle.elapsed())
    );
}
