//! The runtime's logs and metrics, pinned without timing: each scenario
//! runs on a current-thread tokio runtime inside a thread-local `tracing`
//! subscriber (or `metrics` recorder) that collects what was emitted, and
//! asserts on it once the connections have ended.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use wirestream_demo::{self as demo, AgentCompletionChunk, DemoBody};
use wirestream_runtime::{Client, Config, HttpResponse};
use wirestream_tests::{Raw, TestServer, Tokio, eventually, patiently, quick_config};

/// Runs `future` on a current-thread tokio runtime: every task, the
/// server's and the client's, runs on this thread, so thread-local
/// subscribers and recorders see them all.
fn on_this_thread<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// The demo's body: `chunks` chunks 20 ms apart, so that the endpoint's
/// server request (sent after the first chunk, from another task) is
/// answered before the stream ends.
fn body(chunks: u32) -> DemoBody {
    DemoBody {
        chunks,
        interval_ms: 20,
        session_id: None,
    }
}

/// Streams `chunks` chunks of the demo endpoint to a client that answers
/// the endpoint's server request; returns once both sides have ended and
/// the server request has been answered.
async fn demo_session(server: &mut TestServer<Tokio>, chunks: u32, bridged: impl Fn() -> bool) {
    let rt = Tokio;
    let (mut stream, _notifier) = Client::new(rt, &server.url)
        .on_server_request(|_| async { HttpResponse::new(200) })
        .connect::<_, AgentCompletionChunk>(&body(chunks))
        .await
        .expect("connect");
    while let Some(chunk) = patiently(&rt, stream.next()).await {
        chunk.expect("a chunk");
    }
    server.next_served().await;
    eventually(&rt, bridged).await;
}

fn demo_server() -> impl Future<Output = TestServer<Tokio>> {
    demo_server_with(Config::default())
}

async fn demo_server_with(config: Config) -> TestServer<Tokio> {
    let handler = |body, session| demo::stream(Tokio, body, session);
    TestServer::start(&Tokio, config, handler).await
}

// --- logs ---

/// One event as a test reads it: target, level, message and fields (their
/// `Debug` text).
#[derive(Clone, Debug)]
struct Captured {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn message(&self) -> &str {
        self.field("message").unwrap_or_default()
    }
}

/// A layer that keeps every event.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Captured>>>);

impl Collect {
    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// The events of `target` whose message is `message`.
    fn find(&self, target: &str, message: &str) -> Vec<Captured> {
        self.events()
            .into_iter()
            .filter(|e| e.target == target && e.message() == message)
            .collect()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Collect {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// Runs `scenario` with a subscriber that collects every event.
fn logged<F: Future>(scenario: impl FnOnce(Collect) -> F) -> F::Output {
    let collect = Collect::default();
    let subscriber = tracing_subscriber::registry().with(collect.clone());
    tracing::subscriber::with_default(subscriber, || on_this_thread(scenario(collect)))
}

/// A session's end is logged on each side as `closed` with its code and
/// reason and the engine's counters, at `debug` for a normal close.
#[test]
fn close_events_carry_the_code() {
    logged(|logs| async move {
        let mut server = demo_server().await;
        let answered = logs.clone();
        demo_session(&mut server, 3, move || {
            !answered
                .find("wirestream::server", "server request answered")
                .is_empty()
        })
        .await;
        eventually(&Tokio, || {
            !logs.find("wirestream::client", "closed").is_empty()
        })
        .await;
        let server_closed = logs.find("wirestream::server", "closed");
        assert_eq!(server_closed.len(), 1, "{server_closed:?}");
        let closed = &server_closed[0];
        assert_eq!(closed.level, tracing::Level::DEBUG);
        assert_eq!(closed.field("code"), Some("1000"));
        assert_eq!(closed.field("reason"), Some("Local(CloseCode(1000))"));
        assert_eq!(closed.field("chunks"), Some("3"));
        let client_closed = logs.find("wirestream::client", "closed");
        assert_eq!(client_closed.len(), 1, "{client_closed:?}");
        assert_eq!(client_closed[0].field("code"), Some("1000"));
        assert_eq!(client_closed[0].field("chunks"), Some("3"));
        // Per-frame events are `trace` only.
        assert!(
            logs.events()
                .iter()
                .filter(|e| e.message() == "frame")
                .all(|e| e.level == tracing::Level::TRACE)
        );
    });
}

/// A late body: the timeout (kind and code) and the abnormal close, at
/// `info`.
#[test]
fn body_timeout_is_logged_with_its_kind() {
    logged(|logs| async move {
        let mut server = demo_server_with(quick_config()).await;
        let mut raw = Raw::connect(&Tokio, &server.url).await;
        assert_eq!(raw.expect_json().await["code"], 408);
        assert_eq!(raw.expect_close().await, 1008);
        server.next_served().await;
        let timeouts = logs.find("wirestream::server", "timed out");
        assert_eq!(timeouts.len(), 1, "{timeouts:?}");
        assert_eq!(timeouts[0].field("kind"), Some("body"));
        assert_eq!(timeouts[0].field("code"), Some("1008"));
        let closed = logs.find("wirestream::server", "closed");
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].level, tracing::Level::INFO);
        assert_eq!(closed[0].field("code"), Some("1008"));
    });
}

/// A refused handshake and a client request the engine refuses are
/// logged as `refused` with their status.
#[test]
fn refusals_carry_their_status() {
    logged(|logs| async move {
        let mut server = demo_server().await;
        let url = server.url.replace(demo::PATH, "/elsewhere");
        let refused = Client::new(Tokio, url)
            .connect::<_, AgentCompletionChunk>(&body(1))
            .await;
        assert!(refused.is_err());
        // A notify naming a completion this session never emitted: 404.
        let mut raw = Raw::connect(&Tokio, &server.url).await;
        raw.text(r#"{"chunks":2,"interval_ms":60000}"#).await;
        let _chunk = raw.expect_json().await;
        raw.text(r#"{"id":"n1","type":"agent_completion_notify","response_id":"agc-none","content":"hi"}"#)
            .await;
        // The endpoint's server request may come first.
        let answer = loop {
            let frame = raw.expect_json().await;
            if frame["type"] == "error" {
                break frame;
            }
        };
        assert_eq!(answer["code"], 404, "{answer}");
        drop(raw);
        server.next_served().await;
        let statuses: Vec<_> = logs
            .find("wirestream::server", "refused")
            .iter()
            .map(|e| e.field("status").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(statuses, ["404", "404"]);
    });
}

// --- metrics ---

/// A recorder that keeps every counter, gauge and histogram by its name and
/// labels, `name{k=v,...}` with the labels sorted.
#[derive(Clone, Default)]
struct Metrics {
    values: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    samples: Arc<Mutex<HashMap<String, Arc<Samples>>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn name_of(key: &Key) -> String {
    let mut labels: Vec<_> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Metrics {
    fn value(&self, name: &str) -> Arc<AtomicU64> {
        self.values
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    fn counter(&self, name: &str) -> u64 {
        self.value(name).load(Ordering::Relaxed)
    }

    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.value(name).load(Ordering::Relaxed))
    }

    fn samples(&self, name: &str) -> usize {
        self.samples
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |s| s.0.lock().unwrap().len())
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.values.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }
}

impl Recorder for Metrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(&name_of(key)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(&name_of(key)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut samples = self.samples.lock().unwrap();
        Histogram::from_arc(samples.entry(name_of(key)).or_default().clone())
    }
}

/// The counters move: frames and bytes both ways, sessions ended by code,
/// the bridge's result and its latency, refusals and timeouts; the gauges
/// come back to zero once every connection has ended.
#[test]
fn metrics_move() {
    let metrics = Metrics::default();
    metrics::with_local_recorder(&metrics, || {
        on_this_thread(async {
            let mut server = demo_server_with(quick_config()).await;
            let bridged = metrics.clone();
            demo_session(&mut server, 3, move || {
                bridged.counter("wirestream_bridge_requests_total{result=answered}") == 1
            })
            .await;
            // A late body.
            let mut raw = Raw::connect(&Tokio, &server.url).await;
            assert_eq!(raw.expect_json().await["code"], 408);
            assert_eq!(raw.expect_close().await, 1008);
            server.next_served().await;
            // A refused handshake.
            let url = server.url.replace(demo::PATH, "/elsewhere");
            let refused = Client::new(Tokio, url)
                .connect::<_, AgentCompletionChunk>(&body(1))
                .await;
            assert!(refused.is_err());
            eventually(&Tokio, || {
                metrics.gauge("wirestream_connections_open{role=client}") == 0.0
            })
            .await;
        });
    });
    let names = metrics.names();
    for (role, code) in [("server", 1000), ("client", 1000), ("server", 1008)] {
        let name = format!("wirestream_sessions_ended_total{{code={code},role={role}}}");
        assert_eq!(metrics.counter(&name), 1, "{name} in {names:?}");
    }
    for role in ["server", "client"] {
        for direction in ["in", "out"] {
            let labels = format!("{{direction={direction},role={role}}}");
            let frames = metrics.counter(&format!("wirestream_frames_total{labels}"));
            let bytes = metrics.counter(&format!("wirestream_frame_bytes_total{labels}"));
            assert!(frames >= 2, "{labels}: {frames} frames in {names:?}");
            assert!(bytes > frames, "{labels}: {bytes} bytes");
        }
        let open = format!("wirestream_connections_open{{role={role}}}");
        assert_eq!(metrics.gauge(&open), 0.0, "{open}");
    }
    assert_eq!(
        metrics.counter("wirestream_timeouts_total{kind=body,role=server}"),
        1
    );
    assert_eq!(
        metrics.counter("wirestream_refusals_total{role=server,status=404}"),
        1
    );
    assert_eq!(
        metrics.samples("wirestream_server_request_duration_seconds{result=answered}"),
        1
    );
    // Minted for the demo session, gone with its connection.
    assert!(names.contains(&"wirestream_session_ids{}".to_owned()));
    assert_eq!(metrics.gauge("wirestream_session_ids{}"), 0.0);
}
