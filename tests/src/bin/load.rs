//! `load`: many sessions against one server in a process of its own, so its
//! memory and CPU are its own (BENCHMARKS.md, "Load, slow consumers, soak").
//!
//! ```sh
//! cargo run --release -p wirestream-tests --bin load -- --sessions 10000 [--chunks 50] [--runtime tokio|smol] [--only wirestream|bare]
//! cargo run --release -p wirestream-tests --bin load -- --slow 20 [--runtime tokio|smol]
//! cargo run --release -p wirestream-tests --bin load -- --minutes 10 [--runtime tokio|smol]
//! ```
//!
//! Loopback only, bounded in count (`--sessions` ≤ 20,000, `--minutes` ≤
//! 60) and in time (every phase has a deadline); it raises its own
//! open-file limit to the hard limit and always stops its server.
//!
//! The server is this binary re-executed as `load --server-role
//! wirestream|bare --runtime tokio|smol`: it prints `listening <addr>`,
//! serves, and exits when its standard input closes. The parent drives the
//! clients (raw async-tungstenite on tokio, the same frames against either
//! server) and reads the server's `/proc/<pid>/status` (VmRSS) and
//! `/proc/<pid>/stat` (utime + stime).
//!
//! Diagnostics, from the environment (the server inherits it):
//! `LOAD_SIZES=1` prints the size of the serving future;
//! `LOAD_SERVER_WRAPPER=heaptrack` runs the server under a wrapper;
//! `LOAD_NO_KEEPALIVE=1` turns the server's keepalive pings off.
//!
//! One session: the client sends the body `{"n":…,"chunks":C}`; the server
//! streams chunk 0 and waits for the client's `agent_completion_notify`
//! (the go); it answers it `ok`, sends one server request (an MCP
//! `tools/list`) and streams chunks 1..C while the client answers the
//! request; the server closes with 1000 once both are done. In the load run
//! every client waits after chunk 0 until all sessions have opened (the
//! barrier, where the memory of N open sessions is sampled).
//!
//! Two servers do this: wirestream (`Server::listen`, a handler that
//! registers a minted session id and sends the request through the
//! registry), and the bare floor (async-tungstenite alone: the same chunks
//! serialized with serde_json and `feed`, one flush when nothing more is
//! ready, the notify answered, the request frame written and its response
//! read).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_channel::oneshot;
use futures_util::future::{FutureExt, Shared, join};
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wirestream_demo::{PATH, tools_list};
use wirestream_runtime::{
    Config, HandlerResult, Listener, ResponseError, Runtime, Server, Session, only_path,
    websocket_config,
};
use wirestream_tests::{Smol, Tokio, smol_run, tokio_run};

/// The most sessions one run opens.
const MAX_SESSIONS: usize = 20_000;
/// The longest soak.
const MAX_MINUTES: u64 = 60;
/// The longest any phase of a run may take before the run gives up.
const DEADLINE: Duration = Duration::from_secs(300);
/// Client handshakes in flight at once (the listen backlog is 128 on smol).
const CONNECTING: usize = 100;
/// Bytes of padding in each chunk (a chunk is about 300 B on the wire).
const PAD: usize = 200;
/// Sessions the soak keeps cycling.
const SOAK_SESSIONS: usize = 1_000;
/// Chunks of the reference session of `--slow`.
const REFERENCE_CHUNKS: u32 = 100_000;
/// Targets of issue #11.
const TARGET_KIB_PER_SESSION: f64 = 16.0;
const TARGET_CPU_RATIO: f64 = 1.3;
const TARGET_SLOW_MIB: f64 = 16.0;
const TARGET_SOAK_MIB: f64 = 2.0;
/// Must match the server's `Config::write_stall_timeout` (the default).
const WRITE_STALL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rt {
    Tokio,
    Smol,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Wirestream,
    Bare,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Smol => "smol",
        }
    }
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Wirestream => "wirestream",
            Self::Bare => "bare",
        }
    }
}

/// The command line.
struct Args {
    sessions: usize,
    chunks: u32,
    runtime: Rt,
    slow: Option<usize>,
    minutes: Option<u64>,
    server_role: Option<Role>,
    only: Option<Role>,
}

const USAGE: &str = "usage: load [--sessions N] [--chunks C] [--runtime tokio|smol] \
[--only wirestream|bare] | --slow K | --minutes M";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sessions: 1_000,
        chunks: 50,
        runtime: Rt::Tokio,
        slow: None,
        minutes: None,
        server_role: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}\n{USAGE}"));
        let role = |v: String| match v.as_str() {
            "wirestream" => Ok(Role::Wirestream),
            "bare" => Ok(Role::Bare),
            _ => Err(format!("{v}: wirestream or bare\n{USAGE}")),
        };
        match flag.as_str() {
            "--sessions" => args.sessions = number(value()?)? as usize,
            "--chunks" => args.chunks = number(value()?)?.clamp(1, u64::from(u32::MAX)) as u32,
            "--runtime" => {
                args.runtime = match value()?.as_str() {
                    "tokio" => Rt::Tokio,
                    "smol" => Rt::Smol,
                    other => return Err(format!("{other}: tokio or smol\n{USAGE}")),
                }
            }
            "--slow" => args.slow = Some(number(value()?)? as usize),
            "--minutes" => args.minutes = Some(number(value()?)?),
            "--server-role" => args.server_role = Some(role(value()?)?),
            "--only" => args.only = Some(role(value()?)?),
            _ => return Err(USAGE.to_owned()),
        }
    }
    if !(1..=MAX_SESSIONS).contains(&args.sessions) {
        return Err(format!("--sessions: 1 to {MAX_SESSIONS}"));
    }
    if args.slow.is_some_and(|k| !(1..=1_000).contains(&k)) {
        return Err("--slow: 1 to 1000".to_owned());
    }
    if args
        .minutes
        .is_some_and(|m| !(1..=MAX_MINUTES).contains(&m))
    {
        return Err(format!("--minutes: 1 to {MAX_MINUTES}"));
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let files = raise_open_files();
    if let Some(role) = args.server_role {
        serve(role, args.runtime);
    }
    let need = match (args.slow, args.minutes) {
        (Some(k), _) => k + 64,
        (_, Some(_)) => SOAK_SESSIONS + 64,
        _ => args.sessions + 64,
    };
    if files < need as u64 {
        eprintln!("the open-file limit is {files} (hard limit reached); {need} are needed");
        return ExitCode::from(2);
    }
    println!(
        "load: server runtime {}, open-file limit {files}, CLK_TCK {}, on a {}-core machine (load average {})",
        args.runtime.name(),
        rustix::param::clock_ticks_per_second(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let outcome = tokio_run(async {
        match (args.slow, args.minutes) {
            (Some(k), _) => slow(k, args.runtime).await,
            (_, Some(m)) => soak(m, args.chunks, args.runtime).await,
            _ => load(&args).await,
        }
    });
    println!("load average at the end: {}", load_average());
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The machine's load average (1, 5, 15 minutes): other work sharing the
/// cores while the figures were taken.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raises the soft open-file limit to the hard limit; returns the limit in
/// force.
fn raise_open_files() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// The wire: what both servers and the client send.

/// The body of a session.
#[derive(Serialize, Deserialize)]
struct Body {
    /// The session's number (its completion is `agc-<n>`).
    n: u64,
    /// Chunks to stream, chunk 0 included; 0 with `slow`: without end.
    chunks: u32,
    /// Produce as fast as possible, for a client that stops reading.
    #[serde(default)]
    slow: bool,
}

/// A chunk: `t` is when the server made it (nanoseconds of the realtime
/// clock, which both processes share).
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    seq: u32,
    t: u64,
    content: &'a str,
}

fn chunk<'a>(completion: &'a str, seq: u32, pad: &'a str) -> Chunk<'a> {
    Chunk {
        id: completion,
        object: "agent.completion.chunk",
        seq,
        t: now_nanos(),
        content: pad,
    }
}

fn pad() -> String {
    "x".repeat(PAD)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Whatever a frame holds, as the client and the bare server read it.
#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(borrow)]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    method: Option<&'a str>,
    status: Option<u16>,
    t: Option<u64>,
}

fn read_frame(text: &str) -> Option<Inbound<'_>> {
    serde_json::from_str(text).ok()
}

// ---------------------------------------------------------------------------
// The server process.

/// Serves until standard input closes (the parent is gone), then exits.
fn serve(role: Role, rt: Rt) -> ! {
    std::thread::spawn(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
        std::process::exit(0);
    });
    match rt {
        Rt::Tokio => tokio_run(serve_on(Tokio, role)),
        Rt::Smol => smol_run(serve_on(Smol, role)),
    }
    std::process::exit(1)
}

async fn serve_on<R: Runtime>(rt: R, role: Role) {
    let addr = "127.0.0.1:0".parse().expect("an address");
    let listener = Listener::bind(rt.clone(), addr).await.expect("bind");
    println!("listening {}", listener.local_addr().expect("an address"));
    match role {
        Role::Wirestream => {
            let mut config = Config::default();
            if std::env::var_os("LOAD_NO_KEEPALIVE").is_some() {
                // Diagnostics: no keepalive pings (the liveness and
                // write-stall timeouts stay).
                config.ping_interval = None;
            }
            let server = Server::new(rt.clone()).with_config(config);
            if std::env::var_os("LOAD_REPORT_ENDS").is_some_and(|v| !v.is_empty()) {
                // `--slow`: `listen`'s work, by hand, to print how each
                // session ended.
                while let Ok((stream, _)) = listener.accept().await {
                    let server = server.clone();
                    rt.spawn(async move {
                        let opened = Instant::now();
                        if let Ok(ws) = server.accept(stream, only_path(PATH)).await {
                            let served = server.serve(ws, handler).await;
                            println!(
                                "end {:?} after {} ms, {} chunks",
                                served.end,
                                opened.elapsed().as_millis(),
                                served.stats.chunks
                            );
                        }
                    });
                }
                return;
            }
            if std::env::var_os("LOAD_SIZES").is_some() {
                // The size of one connection's serving future, never run.
                #[allow(unreachable_code)]
                let serve =
                    future_size(&|| server.serve::<R::Stream, Body, _, _>(unreachable!(), handler));
                #[allow(unreachable_code)]
                let handler = future_size(&|| handler(unreachable!(), unreachable!()));
                let ws = std::mem::size_of::<WebSocketStream<R::Stream>>();
                let session = std::mem::size_of::<Session>();
                eprintln!(
                    "serve future {serve} B (the WebSocketStream in it {ws} B); the handler's future {handler} B (boxed; a Session {session} B)"
                );
            }
            if let Err(e) = server.listen(&listener, only_path(PATH), handler).await {
                println!("accept failed: {e}");
            }
        }
        Role::Bare => bare_listen(rt, listener).await,
    }
}

/// The size of the future `f` would return.
fn future_size<F: std::future::Future>(_: &impl Fn() -> F) -> usize {
    std::mem::size_of::<F>()
}

/// The wirestream handler of one session (see the module's doc).
async fn handler(body: Body, mut session: Session) -> HandlerResult {
    let completion = format!("agc-{}", body.n);
    let pad = pad();
    let mut requests = session.requests();
    let session_id = session
        .mint_session_id()
        .map_err(|e| ResponseError::new(503, &e.to_string()))?;
    let mut chunks = session.chunks();
    if body.slow {
        let mut stalled = Stalled {
            n: body.n,
            sent: 0,
            since: Instant::now(),
        };
        while chunks
            .send(&chunk(&completion, stalled.sent, &pad), [&completion])
            .await
            .is_ok()
        {
            stalled.sent += 1;
        }
        return Ok(());
    }
    if chunks
        .send(&chunk(&completion, 0, &pad), [&completion])
        .await
        .is_err()
    {
        return Ok(());
    }
    let Some(go) = requests.recv().await else {
        return Ok(());
    };
    go.respond(Ok(()));
    let registry = session.registry().clone();
    let ask = registry.request(&session_id, tools_list(&session_id));
    let stream = async {
        for seq in 1..body.chunks {
            let chunk = chunk(&completion, seq, &pad);
            if chunks.send(&chunk, [&completion]).await.is_err() {
                break;
            }
        }
    };
    let (answer, ()) = join(ask, stream).await;
    answer.map_err(|e| ResponseError::new(502, &e.to_string()))?;
    Ok(())
}

/// A stalled session's producer: reports, when dropped (its session ended),
/// how many chunks it got into the queue and after how long.
struct Stalled {
    n: u64,
    sent: u32,
    since: Instant,
}

impl Drop for Stalled {
    fn drop(&mut self) {
        println!(
            "stalled-end {} {} {}",
            self.n,
            self.sent,
            self.since.elapsed().as_millis()
        );
    }
}

/// The bare floor's accept loop: one task per connection.
async fn bare_listen<R: Runtime>(rt: R, listener: Listener<R>) {
    let ids = Arc::new(AtomicU64::new(1));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ids = ids.clone();
                rt.spawn(async move {
                    let config = websocket_config(&Config::default());
                    let accepted =
                        async_tungstenite::accept_async_with_config(stream, Some(config)).await;
                    if let Ok(ws) = accepted {
                        bare_session(ws, &ids).await;
                    }
                });
            }
            Err(e) => {
                println!("accept failed: {e}");
                rt.sleep_until(rt.now() + Duration::from_millis(10)).await;
            }
        }
    }
}

/// The bare floor of one session: the same frames as the wirestream
/// handler, with nothing but async-tungstenite.
async fn bare_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    ids: &AtomicU64,
) -> Option<()> {
    let Message::Text(body) = ws.next().await?.ok()? else {
        return None;
    };
    let body: Body = serde_json::from_str(body.as_str()).ok()?;
    let completion = format!("agc-{}", body.n);
    let pad = pad();
    let first = serde_json::to_string(&chunk(&completion, 0, &pad)).ok()?;
    ws.send(Message::text(first)).await.ok()?;
    let go = loop {
        if let Message::Text(text) = ws.next().await?.ok()? {
            if let Some(Inbound { id: Some(id), .. }) = read_frame(text.as_str()) {
                break id.to_owned();
            }
        }
    };
    let ok = serde_json::to_string(&json!({"type": "ok", "id": go})).ok()?;
    ws.feed(Message::text(ok)).await.ok()?;
    let id = ids.fetch_add(1, Relaxed);
    let request_id = format!("{:016x}{:016x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15), id);
    let session_id = format!("{:016x}{:016x}", id, id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let request = json!({
        "id": request_id,
        "method": "POST",
        "headers": {"content-type": "application/json", "mcp-session-id": session_id},
        "body": {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
    });
    ws.feed(Message::text(serde_json::to_string(&request).ok()?))
        .await
        .ok()?;
    for seq in 1..body.chunks {
        let text = serde_json::to_string(&chunk(&completion, seq, &pad)).ok()?;
        ws.feed(Message::text(text)).await.ok()?;
    }
    ws.flush().await.ok()?;
    loop {
        if let Message::Text(text) = ws.next().await?.ok()? {
            if read_frame(text.as_str()).is_some_and(|f| f.status.is_some()) {
                break;
            }
        }
    }
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: Default::default(),
    };
    ws.close(Some(normal)).await.ok()?;
    while ws.next().await.is_some() {}
    Some(())
}

// ---------------------------------------------------------------------------
// The server process, seen from the parent.

struct ServerProcess {
    child: Child,
    _stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    addr: SocketAddr,
    pid: u32,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts a server; `report_ends`: it prints how each session ended.
    fn start(role: Role, rt: Rt, report_ends: bool) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        // Diagnostics: `LOAD_SERVER_WRAPPER=heaptrack` runs the server under
        // a wrapper (whose own process the figures then describe).
        let mut command = match std::env::var_os("LOAD_SERVER_WRAPPER") {
            Some(wrapper) => {
                let mut command = Command::new(wrapper);
                command.arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["--server-role", role.name(), "--runtime", rt.name()])
            // smol's global executor runs on one thread unless told; two
            // threads, as tokio's two workers.
            .env("SMOL_THREADS", "2")
            .env("LOAD_REPORT_ENDS", if report_ends { "1" } else { "" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the server: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        let mut server = Self {
            child,
            _stdin: stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
        };
        let line = server
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the server did not start".to_owned())?;
        server.addr = line
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the server said {line:?}"))?;
        Ok(server)
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory, KiB.
    fn hwm_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        status
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with(key))?;
                line[key.len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// CPU time (user + system), seconds.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // After the command name in parentheses: field 3 (state) onwards;
        // utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (ticks(11) + ticks(12)) as f64 / rustix::param::clock_ticks_per_second() as f64
    }

    /// Every `stalled-end` line printed so far.
    fn stalled_ends(&self, ends: &mut Vec<(u64, u32, u64)>) {
        while let Ok(line) = self.lines.try_recv() {
            let mut words = line.split_whitespace();
            if words.next() == Some("stalled-end") {
                let mut next = || words.next().and_then(|w| w.parse::<u64>().ok());
                if let (Some(n), Some(sent), Some(ms)) = (next(), next(), next()) {
                    ends.push((n, sent as u32, ms));
                }
            } else {
                println!("  server: {line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The clients (always on tokio, the same frames against either server).

/// Counters the client sessions of one run share.
#[derive(Default)]
struct Tally {
    /// Sessions that opened (chunk 0 received) or failed before it.
    arrived: AtomicUsize,
    completed: AtomicUsize,
    failed: AtomicUsize,
    chunks: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn done(&self) -> usize {
        self.completed.load(Relaxed) + self.failed.load(Relaxed)
    }

    /// Counts a session's end and the chunks it received.
    fn count(&self, outcome: Result<(), String>, chunks: usize) {
        self.chunks.fetch_add(chunks as u64, Relaxed);
        match outcome {
            Ok(()) => self.completed.fetch_add(1, Relaxed),
            Err(e) => {
                self.first_error.lock().expect("lock").get_or_insert(e);
                self.failed.fetch_add(1, Relaxed)
            }
        };
    }

    /// Counts a session's end and keeps its chunks' latencies.
    fn record(&self, outcome: Result<(), String>, latencies: Vec<u32>) {
        self.count(outcome, latencies.len());
        self.latencies.lock().expect("lock").extend(latencies);
    }
}

type Go = Shared<oneshot::Receiver<()>>;

/// One client session; `latencies` gets each chunk's latency (µs).
async fn client_session(
    addr: SocketAddr,
    body: &Body,
    tally: &Tally,
    go: Option<Go>,
    latencies: &mut Vec<u32>,
) -> Result<(), String> {
    let mut arrived = false;
    let outcome = run_client(addr, body, tally, go, latencies, &mut arrived).await;
    if !arrived {
        tally.arrived.fetch_add(1, Relaxed);
    }
    outcome
}

async fn connect(addr: SocketAddr) -> Result<WebSocketStream<<Tokio as Runtime>::Stream>, String> {
    let stream = Tokio
        .connect("127.0.0.1", addr.port())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let url = format!("ws://{addr}{PATH}");
    let config = websocket_config(&Config::default());
    async_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| format!("handshake: {e}"))
}

fn latency(t: u64) -> u32 {
    (now_nanos().saturating_sub(t) / 1_000).min(u64::from(u32::MAX)) as u32
}

async fn run_client(
    addr: SocketAddr,
    body: &Body,
    tally: &Tally,
    go: Option<Go>,
    latencies: &mut Vec<u32>,
    arrived: &mut bool,
) -> Result<(), String> {
    let mut ws = connect(addr).await?;
    let text = serde_json::to_string(body).map_err(|e| e.to_string())?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("body: {e}"))?;
    let first = match ws.next().await {
        Some(Ok(Message::Text(text))) => text,
        other => return Err(format!("before chunk 0: {other:?}")),
    };
    match read_frame(first.as_str()).and_then(|f| f.t) {
        Some(t) => latencies.push(latency(t)),
        None => return Err(format!("chunk 0: {}", first.as_str())),
    }
    tally.arrived.fetch_add(1, Relaxed);
    *arrived = true;
    if let Some(go) = go {
        let _ = go.await;
    }
    let notify = json!({
        "id": format!("go-{}", body.n),
        "type": "agent_completion_notify",
        "response_id": format!("agc-{}", body.n),
        "content": "go",
    });
    ws.send(Message::text(notify.to_string()))
        .await
        .map_err(|e| format!("notify: {e}"))?;
    let (mut ok, mut answered) = (false, false);
    let mut close = None;
    while let Some(message) = ws.next().await {
        let message = message.map_err(|e| format!("after {} chunks: {e}", latencies.len()))?;
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                close = Some(frame.map_or(CloseCode::Status, |f| f.code));
                continue;
            }
            _ => continue,
        };
        let frame = read_frame(text.as_str()).ok_or("a frame that is not JSON")?;
        if let Some(t) = frame.t {
            latencies.push(latency(t));
        } else if let (Some(id), Some(_)) = (frame.id, frame.method) {
            let response = json!({
                "id": id,
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}},
            });
            ws.send(Message::text(response.to_string()))
                .await
                .map_err(|e| format!("response: {e}"))?;
            answered = true;
        } else if frame.kind == Some("ok") {
            ok = true;
        } else {
            return Err(format!("unexpected frame {}", text.as_str()));
        }
    }
    let expected = body.chunks as usize;
    if close != Some(CloseCode::Normal) || latencies.len() != expected || !ok || !answered {
        return Err(format!(
            "ended with {close:?} after {}/{expected} chunks, notify ok {ok}, request answered {answered}",
            latencies.len()
        ));
    }
    Ok(())
}

async fn sleep(d: Duration) {
    Tokio.sleep_until(Tokio.now() + d).await;
}

/// Waits until `done()` or the deadline.
async fn wait_for(
    what: &str,
    deadline: Instant,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("deadline passed while waiting for {what}"));
        }
        sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1_000.0
}

// ---------------------------------------------------------------------------
// `--sessions N`: the load, against wirestream and the bare floor.

/// What one load run measured.
struct Measured {
    role: Role,
    sessions: usize,
    completed: usize,
    failed: usize,
    chunks: u64,
    open_secs: f64,
    stream_secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_rest: u64,
    rss_open: u64,
    rss_after: u64,
    hwm: u64,
    cpu_secs: f64,
    cpu_stream_secs: f64,
    first_error: Option<String>,
}

impl Measured {
    fn kib_per_session(&self) -> f64 {
        (self.rss_open.saturating_sub(self.rss_rest)) as f64 / self.sessions as f64
    }

    fn cpu_us_per_chunk(&self) -> f64 {
        self.cpu_secs * 1e6 / self.chunks.max(1) as f64
    }

    fn chunks_per_sec(&self) -> f64 {
        self.chunks as f64 / self.stream_secs
    }
}

async fn load(args: &Args) -> Result<(), String> {
    let roles = match args.only {
        Some(role) => vec![role],
        None => vec![Role::Wirestream, Role::Bare],
    };
    let mut runs = Vec::new();
    for role in roles {
        let run = load_one(role, args).await?;
        print_run(&run, args);
        runs.push(run);
    }
    summarize(&runs, args);
    Ok(())
}

async fn load_one(role: Role, args: &Args) -> Result<Measured, String> {
    let n = args.sessions;
    let server = ServerProcess::start(role, args.runtime, false)?;
    let deadline = Instant::now() + DEADLINE;
    sleep(Duration::from_secs(1)).await;
    let (rss_rest, cpu_rest) = (server.rss_kib(), server.cpu_secs());
    let tally = Arc::new(Tally::default());
    let (release, go) = oneshot::channel::<()>();
    let go = go.shared();
    let start = Instant::now();
    for i in 0..n {
        wait_for("handshakes", deadline, || {
            i - tally.arrived.load(Relaxed) < CONNECTING
        })
        .await?;
        let (tally, go, addr) = (tally.clone(), go.clone(), server.addr);
        let body = Body {
            n: i as u64,
            chunks: args.chunks,
            slow: false,
        };
        Tokio.spawn(async move {
            let mut latencies = Vec::with_capacity(body.chunks as usize);
            let outcome = client_session(addr, &body, &tally, Some(go), &mut latencies).await;
            tally.record(outcome, latencies);
        });
    }
    wait_for("every session to open", deadline, || {
        tally.arrived.load(Relaxed) == n
    })
    .await?;
    let open_secs = start.elapsed().as_secs_f64();
    // Let the server finish writing chunk 0 and settle.
    sleep(Duration::from_millis(500)).await;
    let (rss_open, cpu_open) = (server.rss_kib(), server.cpu_secs());
    let released = Instant::now();
    let _ = release.send(());
    wait_for("every session to end", deadline, || tally.done() == n).await?;
    let stream_secs = released.elapsed().as_secs_f64();
    // The server's last closes.
    sleep(Duration::from_secs(2)).await;
    let (rss_after, cpu_end, hwm) = (server.rss_kib(), server.cpu_secs(), server.hwm_kib());
    let mut latencies = std::mem::take(&mut *tally.latencies.lock().expect("lock"));
    latencies.sort_unstable();
    let first_error = tally.first_error.lock().expect("lock").take();
    Ok(Measured {
        role,
        sessions: n,
        completed: tally.completed.load(Relaxed),
        failed: tally.failed.load(Relaxed),
        chunks: tally.chunks.load(Relaxed),
        open_secs,
        stream_secs,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        rss_rest,
        rss_open,
        rss_after,
        hwm,
        cpu_secs: cpu_end - cpu_rest,
        cpu_stream_secs: cpu_end - cpu_open,
        first_error,
    })
}

fn print_run(m: &Measured, args: &Args) {
    println!(
        "\n[{} server on {}] {} sessions × {} chunks of ~{} B",
        m.role.name(),
        args.runtime.name(),
        m.sessions,
        args.chunks,
        PAD + 100
    );
    println!(
        "  sessions completed {} / failed {}{}",
        m.completed,
        m.failed,
        m.first_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (first failure: {e})"))
    );
    println!(
        "  all {} open after {:.2} s; streaming (release → last close) {:.2} s",
        m.sessions, m.open_secs, m.stream_secs
    );
    println!(
        "  chunks delivered {} at {:.0} chunks/s; latency (made by the server → read by the client) p50 {:.2} ms, p99 {:.2} ms",
        m.chunks,
        m.chunks_per_sec(),
        m.p50_ms,
        m.p99_ms
    );
    println!(
        "  server CPU {:.2} s in all ({:.2} s after the barrier): {:.2} µs per delivered chunk",
        m.cpu_secs,
        m.cpu_stream_secs,
        m.cpu_us_per_chunk()
    );
    println!(
        "  server RSS: at rest {} KiB, all open {} KiB, after {} KiB (peak {} KiB): {:.2} KiB per open session",
        m.rss_rest,
        m.rss_open,
        m.rss_after,
        m.hwm,
        m.kib_per_session()
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn summarize(runs: &[Measured], args: &Args) {
    let find = |role| runs.iter().find(|m| m.role == role);
    let Some(wire) = find(Role::Wirestream) else {
        return;
    };
    println!(
        "\nsummary ({} server, {} sessions):",
        args.runtime.name(),
        wire.sessions
    );
    let all = wire.completed == wire.sessions;
    println!(
        "  every session completes: {}/{} {}",
        wire.completed,
        wire.sessions,
        verdict(all)
    );
    let kib = wire.kib_per_session();
    println!(
        "  RSS per open session: {kib:.2} KiB (target ≤ {TARGET_KIB_PER_SESSION} KiB) {}",
        verdict(kib <= TARGET_KIB_PER_SESSION)
    );
    if let Some(bare) = find(Role::Bare) {
        println!(
            "    bare: {:.2} KiB; wirestream / bare {:.2}×",
            bare.kib_per_session(),
            kib / bare.kib_per_session()
        );
        let ratio = wire.cpu_us_per_chunk() / bare.cpu_us_per_chunk();
        println!(
            "  server CPU per delivered chunk: {:.2} µs vs bare {:.2} µs: {ratio:.2}× (target ≤ {TARGET_CPU_RATIO}×) {}",
            wire.cpu_us_per_chunk(),
            bare.cpu_us_per_chunk(),
            verdict(ratio <= TARGET_CPU_RATIO)
        );
        println!(
            "  chunks/s: {:.0} vs bare {:.0}: {:.2}×; p50 {:.2} vs {:.2} ms; p99 {:.2} vs {:.2} ms",
            wire.chunks_per_sec(),
            bare.chunks_per_sec(),
            wire.chunks_per_sec() / bare.chunks_per_sec(),
            wire.p50_ms,
            bare.p50_ms,
            wire.p99_ms,
            bare.p99_ms
        );
    }
}

// ---------------------------------------------------------------------------
// `--slow K`: K clients stop reading while their producers run flat out.

/// One normal session of `REFERENCE_CHUNKS` chunks: chunks/s, p50, p99.
async fn reference(addr: SocketAddr, n: u64) -> Result<(f64, f64, f64), String> {
    let tally = Tally::default();
    let body = Body {
        n,
        chunks: REFERENCE_CHUNKS,
        slow: false,
    };
    let mut latencies = Vec::with_capacity(REFERENCE_CHUNKS as usize);
    let start = Instant::now();
    client_session(addr, &body, &tally, None, &mut latencies).await?;
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((
        latencies.len() as f64 / secs,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    ))
}

async fn slow(k: usize, rt: Rt) -> Result<(), String> {
    let server = ServerProcess::start(Role::Wirestream, rt, true)?;
    sleep(Duration::from_secs(1)).await;
    let rest = server.rss_kib();
    let alone = reference(server.addr, 1).await?;
    sleep(Duration::from_millis(500)).await;
    let rest_after_reference = server.rss_kib();
    // K clients: the body, chunk 0, then nothing is read again.
    let mut stalled = Vec::new();
    for i in 0..k {
        let mut ws = connect(server.addr).await?;
        let body = Body {
            n: 1_000 + i as u64,
            chunks: 0,
            slow: true,
        };
        let text = serde_json::to_string(&body).map_err(|e| e.to_string())?;
        ws.send(Message::text(text))
            .await
            .map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(Message::Text(_))) => stalled.push(ws),
            other => return Err(format!("stalled client {i}: {other:?}")),
        }
    }
    let opened = Instant::now();
    let mut peak = 0;
    let sample = |peak: &mut u64| *peak = (*peak).max(server.rss_kib());
    // The producers fill the queue and the socket buffers, then wait.
    for _ in 0..30 {
        sample(&mut peak);
        sleep(Duration::from_millis(100)).await;
    }
    let filled = server.rss_kib();
    let with = reference(server.addr, 2).await?;
    sample(&mut peak);
    let mut ends = Vec::new();
    let deadline = opened + WRITE_STALL + Duration::from_secs(60);
    while ends.len() < k {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {k} stalled sessions ended within {:?}",
                ends.len(),
                deadline - opened
            ));
        }
        sample(&mut peak);
        server.stalled_ends(&mut ends);
        sleep(Duration::from_millis(100)).await;
    }
    let ended_at = opened.elapsed();
    drop(stalled);
    sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    // The server's last lines (how each session ended).
    server.stalled_ends(&mut Vec::new());
    let delta_mib = peak.saturating_sub(rest) as f64 / 1024.0;
    let sent: Vec<u32> = ends.iter().map(|e| e.1).collect();
    let ms: Vec<u64> = ends.iter().map(|e| e.2).collect();
    println!("\n[--slow {k}: wirestream server on {}]", rt.name());
    println!(
        "  server RSS: at rest {rest} KiB ({rest_after_reference} KiB after the first reference session), \
         {filled} KiB with {k} stalled after 3 s, peak while stalled {peak} KiB, after they ended {after} KiB"
    );
    println!(
        "  peak − rest: {delta_mib:.2} MiB for the set of {k} (target ≤ {TARGET_SLOW_MIB} MiB) {}",
        verdict(delta_mib <= TARGET_SLOW_MIB)
    );
    println!(
        "  producers held back: chunks each got out before the end {}–{} (~{} B each: ≤ {:.1} MiB per session, queue + socket buffers)",
        sent.iter().min().unwrap_or(&0),
        sent.iter().max().unwrap_or(&0),
        PAD + 100,
        f64::from(*sent.iter().max().unwrap_or(&0)) * (PAD + 100) as f64 / (1 << 20) as f64
    );
    println!(
        "  the stalled sessions ended {:.1}–{:.1} s after they opened (write-stall timeout {} s); all {k} gone {:.1} s after",
        *ms.iter().min().unwrap_or(&0) as f64 / 1e3,
        *ms.iter().max().unwrap_or(&0) as f64 / 1e3,
        WRITE_STALL.as_secs(),
        ended_at.as_secs_f64()
    );
    let ended_in_time = ms.iter().all(|&ms| {
        ms >= WRITE_STALL.as_millis() as u64 && ms <= WRITE_STALL.as_millis() as u64 + 10_000
    });
    println!(
        "  every stalled session ended at the write-stall timeout (within 10 s after it): {}",
        verdict(ended_in_time)
    );
    println!(
        "  a normal session of {REFERENCE_CHUNKS} chunks alongside: {:.0} chunks/s (p50 {:.2} ms, p99 {:.2} ms) \
         vs alone {:.0} chunks/s (p50 {:.2} ms, p99 {:.2} ms): {:.2}×",
        with.0,
        with.1,
        with.2,
        alone.0,
        alone.1,
        alone.2,
        with.0 / alone.0
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// `--minutes M`: the soak.

async fn soak(minutes: u64, chunks: u32, rt: Rt) -> Result<(), String> {
    let server = ServerProcess::start(Role::Wirestream, rt, false)?;
    sleep(Duration::from_secs(1)).await;
    let rest = server.rss_kib();
    println!(
        "\n[soak: wirestream server on {}, {SOAK_SESSIONS} sessions cycling, {chunks} chunks each, {minutes} min]",
        rt.name()
    );
    println!("  server RSS at rest {rest} KiB");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicUsize::new(SOAK_SESSIONS));
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..SOAK_SESSIONS {
        let (tally, stop, running, next, addr) = (
            tally.clone(),
            stop.clone(),
            running.clone(),
            next.clone(),
            server.addr,
        );
        Tokio.spawn(async move {
            let mut latencies = Vec::with_capacity(chunks as usize);
            while !stop.load(Relaxed) {
                let body = Body {
                    n: next.fetch_add(1, Relaxed),
                    chunks,
                    slow: false,
                };
                latencies.clear();
                let outcome = client_session(addr, &body, &tally, None, &mut latencies).await;
                tally.count(outcome, latencies.len());
            }
            running.fetch_sub(1, Relaxed);
        });
    }
    let start = Instant::now();
    let cpu_start = server.cpu_secs();
    let mut per_minute: HashMap<u64, u64> = HashMap::new();
    let (mut last_completed, mut last_failed, mut last_chunks) = (0, 0, 0);
    for minute in 1..=minutes {
        let mut samples = Vec::new();
        while start.elapsed() < Duration::from_secs(60 * minute) {
            samples.push(server.rss_kib());
            sleep(Duration::from_secs(1)).await;
        }
        // The mean of the minute's last 10 samples, so that one moment's
        // count of open sessions does not decide it.
        let tail = &samples[samples.len().saturating_sub(10)..];
        let mean = tail.iter().sum::<u64>() / tail.len().max(1) as u64;
        per_minute.insert(minute, mean);
        let (completed, failed, chunks) = (
            tally.completed.load(Relaxed),
            tally.failed.load(Relaxed),
            tally.chunks.load(Relaxed),
        );
        let mut line = String::new();
        let _ = write!(
            line,
            "  minute {minute}: RSS {mean} KiB (min {} max {}), sessions completed {} failed {}, {:.0} chunks/s",
            samples.iter().min().unwrap_or(&0),
            samples.iter().max().unwrap_or(&0),
            completed - last_completed,
            failed - last_failed,
            (chunks - last_chunks) as f64 / 60.0
        );
        println!("{line}");
        (last_completed, last_failed, last_chunks) = (completed, failed, chunks);
    }
    stop.store(true, Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_for("the soak's sessions to stop", deadline, || {
        running.load(Relaxed) == 0
    })
    .await?;
    let cpu = server.cpu_secs() - cpu_start;
    sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let first = per_minute[&1];
    let last = per_minute[&minutes];
    let diff = (last as f64 - first as f64) / 1024.0;
    println!(
        "  in all: sessions completed {} failed {}{}, {} chunks, server CPU {cpu:.1} s ({:.2} µs per chunk)",
        tally.completed.load(Relaxed),
        tally.failed.load(Relaxed),
        tally
            .first_error
            .lock()
            .expect("lock")
            .as_ref()
            .map_or(String::new(), |e| format!(" (first failure: {e})")),
        tally.chunks.load(Relaxed),
        cpu * 1e6 / tally.chunks.load(Relaxed).max(1) as f64
    );
    println!(
        "  server RSS after the soak, every session closed: {after} KiB (at rest before: {rest} KiB)"
    );
    println!(
        "  RSS minute {minutes} − minute 1: {diff:+.2} MiB (target |Δ| ≤ {TARGET_SOAK_MIB} MiB) {}",
        verdict(diff.abs() <= TARGET_SOAK_MIB)
    );
    Ok(())
}
