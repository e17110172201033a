//! The demo script: a server and a client against it on 127.0.0.1, the
//! wire transcript, and the `--serve` mode.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use wirestream_proto::classify::{ClientFrame, ServerFrame, classify_client, classify_server};
use wirestream_runtime::tungstenite::Message;
use wirestream_runtime::{
    Client, Config, Direction, HttpResponse, Listener, Runtime, Server, only_path,
};

use crate::endpoint::{AgentCompletionChunk, DemoBody, PATH, spawn_endpoint, stream};

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
/// Returns once every session has ended.
pub async fn serve<R, F>(rt: R, addr: SocketAddr, config: Config, stop: F) -> Result<(), BoxError>
where
    R: Runtime,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = Listener::bind(rt.clone(), addr).await?;
    println!(
        "serving the demo endpoint at ws://{}{PATH} (body {{\"chunks\": N, \"interval_ms\": 100}})",
        listener.local_addr()?
    );
    let server = Server::new(rt.clone())
        .with_config(config)
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
    rt.spawn(async move {
        stop.await;
        println!(
            "shutting down: {} session(s) have {SHUTDOWN_GRACE:?} to finish",
            shutdown.live_sessions()
        );
        shutdown.begin(SHUTDOWN_GRACE);
    });
    let handler = move |body, session| stream(rt, body, session);
    server.listen(&listener, only_path(PATH), handler).await?;
    println!("every session has ended");
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
const USAGE: &str = "usage: demo [--serve [ADDR] [--max-frame-size BYTES] [--body-timeout-ms MS] \
     [--ping-ms MS] [--liveness-ms MS]]";

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

/// The `demo` example's `main`: `--serve [ADDR] [FLAGS]` serves the
/// endpoint until `stop` completes (see [`serve`] and [`serve_args`]),
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
        Some("--serve") => match serve_args(args) {
            Ok((addr, config)) => serve(rt, addr, config, stop).await,
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
    fn serve_args_refuse_what_they_do_not_know() {
        assert!(serve_args(args("not-an-address")).is_err());
        assert!(serve_args(args("--ping-ms")).is_err());
        assert!(serve_args(args("--ping-ms soon")).is_err());
        assert!(serve_args(args("--pong-ms 5")).is_err());
    }
}
