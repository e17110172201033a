//! The demo script: a server and a client against it on 127.0.0.1, the
//! wire transcript, and the `--serve` mode.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use serde_json::json;
use wirestream_nats::{NatsOptions, NatsRouter};
use wirestream_proto::classify::{ClientFrame, ServerFrame, classify_client, classify_server};
use wirestream_runtime::tungstenite::Message;
use wirestream_runtime::{
    Client, Config, Direction, HttpResponse, Listener, Registry, Runtime, Server, only_path,
};

use crate::bridge::{BRIDGE_PREFIX, Route, route};
use crate::endpoint::{
    AgentCompletionChunk, DemoBody, PATH, spawn_endpoint, stream as stream_endpoint,
};

/// Where `--serve` listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// How long `--serve` gives running sessions once told to stop; those
/// still open then are closed with `Close(1001)`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A readable line for one message of the transcript.
pub fn describe(direction: Direction, message: &Message, first_out: bool) -> String {
    let (kind, text) = match message {
        Message::Text(text) => {
            let kind = match direction {
                Direction::Out if first_out => "body",
                Direction::Out => match classify_server(text) {
                    ServerFrame::Request(_) => "client_request",
                    ServerFrame::Response(_) => "server_response",
                    _ => "text",
                },
                Direction::In => match classify_client(text) {
                    ClientFrame::Response(_) => "client_response",
                    ClientFrame::Request(_) => "server_request",
                    ClientFrame::Error(_) => "error",
                    ClientFrame::Chunk => "chunk",
                    _ => "text",
                },
            };
            (kind, text.to_string())
        }
        Message::Close(frame) => (
            "close",
            frame
                .as_ref()
                .map_or("(no code)".to_owned(), |f| u16::from(f.code).to_string()),
        ),
        Message::Binary(b) => ("binary", format!("{} bytes", b.len())),
        Message::Ping(_) => ("ping", String::new()),
        Message::Pong(_) => ("pong", String::new()),
        Message::Frame(_) => ("frame", String::new()),
    };
    let who = match direction {
        Direction::Out => "client -> server",
        Direction::In => "client <- server",
    };
    format!("{who}  {kind:<15} {text}")
}

type BoxError = Box<dyn Error + Send + Sync>;

/// The demo: a server on 127.0.0.1, a client against it that streams five
/// chunks, notifies the running completion once and answers the server's
/// request; prints the transcript and checks each round trip.
pub async fn run<R: Runtime>(rt: R, runtime_name: &str) -> Result<(), BoxError> {
    let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse()?).await?;
    let url = format!("ws://{}{PATH}", listener.local_addr()?);
    spawn_endpoint(Server::new(rt.clone()), listener);
    println!("wirestream demo on {runtime_name}: server at {url}\n");

    let first_out = Arc::new(AtomicBool::new(true));
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let body = DemoBody {
        chunks: 5,
        interval_ms: 100,
        session_id: None,
    };
    let (mut chunks, notifier) = Client::new(rt, &url)
        .header("authorization", "Bearer demo")
        .header("x-transport", "ws")
        .tap(move |direction, message| {
            let first = direction == Direction::Out && first_out.swap(false, Ordering::Relaxed);
            println!("{}", describe(direction, message, first));
        })
        .on_server_request(move |request| {
            counter.fetch_add(1, Ordering::Relaxed);
            let session = request.header("mcp-session-id").unwrap_or("").to_owned();
            async move {
                let result = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}});
                let response = HttpResponse::new(200).header("mcp-session-id", session);
                response.clone().json(&result).unwrap_or(response)
            }
        })
        .connect::<_, AgentCompletionChunk>(&body)
        .await?;

    let mut received = 0;
    let mut notified = false;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        received += 1;
        if !notified {
            notified = true;
            let outcome = notifier
                .notify(
                    &chunk.id,
                    "also check the tests",
                    Some(Duration::from_secs(5)),
                )
                .await;
            println!("   notify {}: {outcome:?}", chunk.id);
            outcome?;
        }
    }
    let end = chunks.end();
    println!(
        "\nreceived {received} chunks; notify ok; server requests answered: {}; closed with {}",
        asked.load(Ordering::Relaxed),
        end.map_or("?".to_owned(), |e| e.code().to_string()),
    );
    if received != body.chunks as usize {
        return Err(format!("expected {} chunks, got {received}", body.chunks).into());
    }
    if asked.load(Ordering::Relaxed) != 1 {
        return Err("expected one server request".into());
    }
    Ok(())
}

/// Serves the demo endpoint at `addr` with the limits of `config` until
/// `stop` completes (the example's `main` passes Ctrl-C or SIGTERM), then
/// shuts down gracefully: no new connection is accepted, and the sessions
/// still open after [`SHUTDOWN_GRACE`] are closed with `Close(1001)`.
/// Returns once every session has ended. The same port serves the bridge,
/// `POST /objectiveai-mcp/{session_id}` (see [`serve_node`]).
pub async fn serve<R, F>(rt: R, addr: SocketAddr, config: Config, stop: F) -> Result<(), BoxError>
where
    R: Runtime,
    F: Future<Output = ()> + Send + 'static,
{
    serve_node(rt, addr, config, None, stop).await
}

/// [`serve`], as a node of the cluster at `nats` when given: the bridge
/// route `POST /objectiveai-mcp/{session_id}` on the same port reaches the
/// client that owns the id on this node or on any other node of the
/// cluster (through `wirestream-nats`).
pub async fn serve_node<R, F>(
    rt: R,
    addr: SocketAddr,
    config: Config,
    nats: Option<&str>,
    stop: F,
) -> Result<(), BoxError>
where
    R: Runtime,
    F: Future<Output = ()> + Send + 'static,
{
    let registry = Registry::default();
    // Kept for as long as the node serves.
    let _router = match nats {
        Some(url) => {
            let router = NatsRouter::connect(url, &registry, NatsOptions::default()).await?;
            println!(
                "joined the NATS cluster at {url} as node {:016x}",
                router.node_id()
            );
            Some(router)
        }
        None => None,
    };
    let listener = Listener::bind(rt.clone(), addr).await?;
    let local = listener.local_addr()?;
    println!(
        "serving the demo endpoint at ws://{local}{PATH} (body {{\"chunks\": N, \"interval_ms\": 100}})"
    );
    println!("and the bridge at http://{local}{BRIDGE_PREFIX}{{session_id}} (POST, JSON body)");
    let server = Server::new(rt.clone())
        .with_config(config)
        .with_registry(registry)
        .with_tap(|direction, message| {
            if let Message::Text(text) = message {
                let arrow = match direction {
                    Direction::In => "server <- client",
                    Direction::Out => "server -> client",
                };
                println!("{arrow}  {text}");
            }
        });
    let shutdown = server.shutdown_handle();
    let signal = shutdown.clone();
    rt.spawn(async move {
        stop.await;
        println!(
            "shutting down: {} session(s) have {SHUTDOWN_GRACE:?} to finish",
            signal.live_sessions()
        );
        signal.begin(SHUTDOWN_GRACE);
    });
    let mut stopped = shutdown.requested();
    loop {
        let (stream, peer) = match select(pin!(listener.accept()), &mut stopped).await {
            Either::Left((accepted, _)) => accepted?,
            Either::Right(_) => break,
        };
        let (server, rt2) = (server.clone(), rt.clone());
        rt.spawn(async move {
            if let Err(e) = connection(rt2, server, stream, peer).await {
                tracing::debug!(target: "wirestream::demo", "connection from {peer}: {e}");
            }
        });
    }
    shutdown.ended().await;
    println!("every session has ended");
    Ok(())
}

/// One accepted connection: a bridge call is answered, anything else is
/// the endpoint's (the runtime's handshake, then the session).
async fn connection<R: Runtime>(
    rt: R,
    server: Server<R>,
    stream: R::Stream,
    peer: SocketAddr,
) -> Result<(), BoxError> {
    let deadline = rt.now() + server.config().body_timeout;
    let max_body = server.config().max_frame_size;
    let routed = route(&rt, stream, server.registry(), max_body, deadline).await?;
    let Route::Endpoint(stream) = routed else {
        return Ok(());
    };
    let (ws, caller) = server
        .accept_with_caller(stream, Some(peer), only_path(PATH))
        .await?;
    let handler = move |body, session| stream_endpoint(rt, body, session);
    server.serve_with_caller(ws, caller, handler).await;
    Ok(())
}

/// Installs the examples' log output: `tracing` events on stderr (stdout
/// is the transcript's), filtered by `RUST_LOG`, `wirestream=info` by
/// default (`RUST_LOG=wirestream=debug` shows each session's life).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("wirestream=info"));
    // Already installed (by the caller): keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The usage line of the demo examples.
const USAGE: &str = "usage: demo [--serve [ADDR] [--nats URL] [--max-frame-size BYTES] \
     [--body-timeout-ms MS] [--ping-ms MS] [--liveness-ms MS]] \
     | [--connect URL [--session-id ID] [--chunks N] [--interval-ms MS]]";

/// `args` without the flag `name` and its value, and that value.
fn take_flag(
    args: impl IntoIterator<Item = String>,
    name: &str,
) -> Result<(Vec<String>, Option<String>), String> {
    let mut rest = Vec::new();
    let mut value = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == name {
            value = Some(
                args.next()
                    .ok_or(format!("{name} takes a value; {USAGE}"))?,
            );
        } else {
            rest.push(arg);
        }
    }
    Ok((rest, value))
}

/// Reads the arguments after `--connect`: the endpoint's URL, then
/// `--session-id ID` (default: one the server mints), `--chunks N`
/// (default 100) and `--interval-ms MS` (default 100).
pub fn connect_args(args: impl IntoIterator<Item = String>) -> Result<(String, DemoBody), String> {
    let mut args = args.into_iter();
    let url = args
        .next()
        .filter(|url| !url.starts_with("--"))
        .ok_or(format!("--connect takes a URL; {USAGE}"))?;
    let mut body = DemoBody {
        chunks: 100,
        interval_ms: 100,
        session_id: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or(format!("{flag} takes a value; {USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("bad value {value:?} for {flag}: {e}"))
        };
        match flag.as_str() {
            "--session-id" => body.session_id = Some(value.clone()),
            "--chunks" => {
                body.chunks = u32::try_from(number()?).map_err(|e| format!("bad --chunks: {e}"))?;
            }
            "--interval-ms" => body.interval_ms = number()?,
            _ => return Err(format!("unknown flag {flag:?}; {USAGE}")),
        }
    }
    Ok((url, body))
}

/// `--connect`: a client of a demo endpoint served elsewhere (e.g. a node
/// of a cluster): streams `body`, prints the session id it was given (the
/// one it resumes, or the one the server minted, from its first server
/// request) and every server request, which it answers `200` with an MCP
/// `tools/list` result.
pub async fn connect<R: Runtime>(rt: R, url: &str, body: DemoBody) -> Result<(), BoxError> {
    if let Some(id) = &body.session_id {
        println!("session id: {id}");
    }
    let told = Arc::new(AtomicBool::new(body.session_id.is_some()));
    let (mut chunks, _notifier) = Client::new(rt, url)
        .on_server_request(move |request| {
            let session = request.header("mcp-session-id").unwrap_or("").to_owned();
            if !told.swap(true, Ordering::Relaxed) {
                println!("session id: {session} (minted by the server)");
            }
            let asked = request.body().unwrap_or("null");
            println!(
                "[client] server request {} {asked}",
                request.method().unwrap_or("?")
            );
            let id = serde_json::from_str::<serde_json::Value>(asked)
                .map(|body| body["id"].clone())
                .unwrap_or_default();
            async move {
                let result = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": []}});
                let response = HttpResponse::new(200).header("mcp-session-id", session);
                response.clone().json(&result).unwrap_or(response)
            }
        })
        .connect::<_, AgentCompletionChunk>(&body)
        .await?;
    println!("connected to {url}; streaming {} chunks", body.chunks);
    let mut received = 0;
    while let Some(chunk) = chunks.next().await {
        chunk?;
        received += 1;
    }
    println!(
        "received {received} chunks; closed with {}",
        chunks
            .end()
            .map_or("?".to_owned(), |e| e.code().to_string())
    );
    Ok(())
}

/// Reads the arguments after `--serve`: an optional address (default
/// [`DEFAULT_ADDR`]), then flags that set limits of PROTOCOL.md §5 (small
/// values let a client written elsewhere reach each limit in a test):
/// `--max-frame-size BYTES`, `--body-timeout-ms MS`, `--ping-ms MS` (the
/// keepalive interval) and `--liveness-ms MS`. The rest of the config is
/// the default.
pub fn serve_args(args: impl IntoIterator<Item = String>) -> Result<(SocketAddr, Config), String> {
    let mut args = args.into_iter().peekable();
    let addr = match args.next_if(|a| !a.starts_with("--")) {
        Some(addr) => addr,
        None => DEFAULT_ADDR.to_owned(),
    };
    let addr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    let mut config = Config::default();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or(format!("{flag} takes a value; {USAGE}"))?;
        let n: u64 = value
            .parse()
            .map_err(|e| format!("bad value {value:?} for {flag}: {e}"))?;
        let ms = Duration::from_millis(n);
        match flag.as_str() {
            "--max-frame-size" => {
                config.max_frame_size =
                    usize::try_from(n).map_err(|e| format!("bad --max-frame-size: {e}"))?;
            }
            "--body-timeout-ms" => config.body_timeout = ms,
            "--ping-ms" => config.ping_interval = Some(ms),
            "--liveness-ms" => config.liveness_timeout = Some(ms),
            _ => return Err(format!("unknown flag {flag:?}; {USAGE}")),
        }
    }
    Ok((addr, config))
}

/// The `demo` example's `main`: `--serve [ADDR] [--nats URL] [FLAGS]`
/// serves the endpoint and the bridge until `stop` completes (see
/// [`serve_node`] and [`serve_args`]), `--connect URL [FLAGS]` streams from
/// an endpoint served elsewhere (see [`connect`] and [`connect_args`]),
/// nothing runs the demo once. Installs the log output first
/// ([`init_logs`]).
pub async fn main<R, F>(rt: R, runtime_name: &str, stop: F) -> ExitCode
where
    R: Runtime,
    F: Future<Output = ()> + Send + 'static,
{
    init_logs();
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("--serve") => match take_flag(args, "--nats")
            .and_then(|(rest, nats)| Ok((serve_args(rest)?, nats)))
        {
            Ok(((addr, config), nats)) => serve_node(rt, addr, config, nats.as_deref(), stop).await,
            Err(e) => Err(e.into()),
        },
        Some("--connect") => match connect_args(args) {
            Ok((url, body)) => connect(rt, &url, body).await,
            Err(e) => Err(e.into()),
        },
        None => run(rt, runtime_name).await,
        Some(other) => Err(format!("unknown argument {other:?}; {USAGE}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "wirestream::demo", "demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn serve_args_take_an_address_and_small_limits() {
        let (addr, config) = serve_args(args(
            "127.0.0.1:0 --max-frame-size 4096 --body-timeout-ms 300 --ping-ms 100 --liveness-ms 400",
        ))
        .unwrap();
        assert_eq!(addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.max_frame_size, 4096);
        assert_eq!(config.body_timeout, Duration::from_millis(300));
        assert_eq!(config.ping_interval, Some(Duration::from_millis(100)));
        assert_eq!(config.liveness_timeout, Some(Duration::from_millis(400)));
    }

    #[test]
    fn serve_args_default_the_rest() {
        let (addr, config) = serve_args(args("--body-timeout-ms 5")).unwrap();
        assert_eq!(addr, DEFAULT_ADDR.parse().unwrap());
        assert_eq!(config.body_timeout, Duration::from_millis(5));
        assert_eq!(config.max_frame_size, Config::default().max_frame_size);
        assert_eq!(serve_args(args("")).unwrap().1, Config::default());
    }

    #[test]
    fn nats_is_taken_out_of_the_serve_flags() {
        let (rest, nats) = take_flag(
            args("127.0.0.1:0 --nats nats://h:4222 --ping-ms 5"),
            "--nats",
        )
        .unwrap();
        assert_eq!(nats.as_deref(), Some("nats://h:4222"));
        assert_eq!(
            serve_args(rest).unwrap().1.ping_interval,
            Some(Duration::from_millis(5))
        );
        assert!(take_flag(args("--nats"), "--nats").is_err());
    }

    #[test]
    fn connect_args_take_a_url_and_a_session() {
        let (url, body) = connect_args(args(
            "ws://h:1/agent/completions --session-id s-1 --chunks 3 --interval-ms 7",
        ))
        .unwrap();
        assert_eq!(url, "ws://h:1/agent/completions");
        assert_eq!(
            (body.session_id.as_deref(), body.chunks, body.interval_ms),
            (Some("s-1"), 3, 7)
        );
        assert!(connect_args(args("")).is_err());
        assert!(connect_args(args("ws://h --chunks many")).is_err());
    }

    #[test]
    fn serve_args_refuse_what_they_do_not_know() {
        assert!(serve_args(args("not-an-address")).is_err());
        assert!(serve_args(args("--ping-ms")).is_err());
        assert!(serve_args(args("--ping-ms soon")).is_err());
        assert!(serve_args(args("--pong-ms 5")).is_err());
    }
}
