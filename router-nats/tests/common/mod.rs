//! The tests' cluster: a real `nats-server` on a free loopback port, and
//! nodes (a `Server` with its own registry and NATS connection) in this
//! process.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use wirestream_nats::{NatsOptions, NatsRouter};
use wirestream_tokio::{
    Chunks, Client, HandlerResult, HttpResponse, IncomingServerRequest, Listener, Registry,
    Runtime, Server, Session, only_path,
};

/// A `nats-server` of the tests' own, stopped when dropped.
///
/// It runs under `sh`, which waits on its stdin (a pipe from this
/// process) and kills the server when the pipe closes: when this value is
/// dropped, or when the test binary exits however it exits (the pipe closes
/// with the process), so no server outlives its tests.
pub struct NatsServer {
    port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

/// `nats-server` on PATH, else where Debian installs it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl NatsServer {
    /// A server on a free loopback port.
    pub fn start() -> Self {
        Self::on_port(free_port())
    }

    /// A server on `port` (to restart one where its clients expect it).
    pub fn on_port(port: u16) -> Self {
        let script = r#""$0" -a 127.0.0.1 -p "$1" & pid=$!; read _; kill $pid; wait $pid"#;
        let mut child = Command::new("sh")
            .args(["-c", script])
            .arg(binary())
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server runs (.ci/run installs it)");
        let stderr = child.stderr.take().expect("piped");
        let (ready, is_ready) = mpsc::channel();
        std::thread::spawn(move || {
            // Read (and drain) the log; say when the server is ready.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = ready.send(());
                }
            }
        });
        is_ready
            .recv_timeout(Duration::from_secs(20))
            .expect("nats-server says it is ready");
        let stdin = child.stdin.take();
        Self { port, child, stdin }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The server this test binary shares (tests keep apart by prefix).
pub fn nats() -> String {
    static SHARED: OnceLock<NatsServer> = OnceLock::new();
    SHARED.get_or_init(NatsServer::start).url()
}

/// Options with a subject prefix of this test's own.
pub fn options() -> NatsOptions {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    NatsOptions::default().prefix(format!("test{}.t{n}", std::process::id()))
}

/// One node: its registry (what its bridge asks), its router, and the
/// WebSocket URL of its endpoint.
pub struct Node {
    pub registry: Registry,
    pub router: NatsRouter,
    pub url: String,
}

#[derive(Deserialize)]
struct Hold {
    session_id: String,
}

/// The endpoint: registers the body's `session_id` for this connection,
/// says so in a chunk, and holds the session open until the client leaves.
async fn hold(body: Hold, mut session: Session) -> HandlerResult {
    let chunk = match session.register_session(&body.session_id) {
        Ok(_) => json!({"id": "agc-1", "registered": body.session_id}),
        Err(e) => json!({"id": "agc-1", "refused": e.to_string()}),
    };
    let _ = session.send(&chunk, ["agc-1"]).await;
    std::future::pending::<()>().await;
    Ok(())
}

/// A node on runtime `rt` in the cluster at `nats`.
pub async fn node<R: Runtime>(rt: R, nats: &str, options: NatsOptions) -> Node {
    let registry = Registry::default();
    let router = NatsRouter::connect(nats, &registry, options)
        .await
        .expect("joins the cluster");
    let server = Server::new(rt.clone()).with_registry(registry.clone());
    let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://{}/s", listener.local_addr().unwrap());
    rt.spawn(async move {
        let _ = server.listen(&listener, only_path("/s"), hold).await;
    });
    Node {
        registry,
        router,
        url,
    }
}

/// Two tokio nodes in the shared cluster, with `options`.
pub async fn pair(options: NatsOptions) -> (Node, Node) {
    let nats = nats();
    let a = node(wirestream_tokio::Tokio, &nats, options.clone()).await;
    let b = node(wirestream_tokio::Tokio, &nats, options).await;
    (a, b)
}

/// A client of `node` that owns `session_id` once this returns, answering
/// server requests with `answer`.
pub async fn client<R, F, Fut>(
    rt: R,
    node: &Node,
    session_id: &str,
    answer: F,
) -> Chunks<serde_json::Value>
where
    R: Runtime,
    F: Fn(IncomingServerRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = HttpResponse> + Send + 'static,
{
    let (mut chunks, _notifier) = Client::new(rt, &node.url)
        .on_server_request(answer)
        .connect::<_, serde_json::Value>(&json!({"session_id": session_id}))
        .await
        .expect("connects");
    let first = chunks.next().await.expect("a chunk").expect("not an error");
    assert_eq!(first["registered"], session_id, "{first}");
    assert!(
        node.router.settle(Duration::from_secs(10)).await,
        "claims settle"
    );
    chunks
}

/// A client answering `200 {"answered_by": name}`.
pub async fn named_client<R: Runtime>(
    rt: R,
    node: &Node,
    session_id: &str,
    name: &'static str,
) -> Chunks<serde_json::Value> {
    client(rt, node, session_id, move |_| async move {
        HttpResponse::new(200)
            .json(&json!({"answered_by": name}))
            .unwrap()
    })
    .await
}

/// Who answered, from a response body.
pub fn answered_by(response: &wirestream_tokio::Response) -> String {
    let body: serde_json::Value = serde_json::from_str(response.body().unwrap_or("null")).unwrap();
    body["answered_by"].as_str().unwrap_or("?").to_owned()
}

/// Polls `condition` every 10 ms for at most `limit`. Only for what has
/// no event to await: another node's processing of a NATS message, and the
/// reconnect of a NATS client after its server restarted.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

impl Node {
    /// Whether this node gives `id` up within 5 s, once it has read another
    /// node's newer claim (one NATS hop, no event to await from a test).
    pub async fn gives_up(&self, id: &str) -> bool {
        eventually(Duration::from_secs(5), || !self.registry.contains(id)).await
    }
}
