//! The demo (feature `demo`): an agent-completions endpoint that streams
//! mock chunks, answers notifies and asks its client one question, and a
//! client script that runs against it and prints what crossed the wire.
//! The `demo` examples of `wirestream-tokio` and `wirestream-smol` run it;
//! the integration tests use its endpoint.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wirestream_proto::classify::{ClientFrame, ServerFrame, classify_client, classify_server};
use wirestream_proto::{ResponseError, mint_id};

use crate::{
    Client, Direction, HandlerResult, HttpRequest, HttpResponse, Listener, OsRandom, Runtime,
    Server, Session, only_path,
};

/// The path the demo endpoint is served at.
pub const PATH: &str = "/agent/completions";

/// Where `--serve` listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Longest pause between chunks the endpoint accepts.
const MAX_INTERVAL_MS: u64 = 60_000;

/// The body the demo endpoint takes; other fields are ignored.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DemoBody {
    /// How many chunks to stream.
    pub chunks: u32,
    /// Pause between chunks, in milliseconds (default 100, at most 60 000),
    /// so that a client has time to notify a running completion.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// A session id to resume (registered as this connection's); without
    /// one, a fresh id is minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

fn default_interval() -> u64 {
    100
}

/// An agent-completion chunk shaped like `agent_completion_chunk.minimal`
/// of the objectiveai-sdk 2.0.11 vectors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct AgentCompletionChunk {
    /// The agent completion's id (`agc-…`).
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Always empty here.
    pub messages: Vec<serde_json::Value>,
    /// `agent.completion.chunk`.
    pub object: String,
    /// `mock`.
    pub upstream: String,
}

impl AgentCompletionChunk {
    /// A chunk of the completion `id`.
    pub fn new(id: &str) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            id: id.to_owned(),
            created,
            messages: Vec::new(),
            object: "agent.completion.chunk".to_owned(),
            upstream: "mock".to_owned(),
        }
    }
}

/// The server request the endpoint sends its client while streaming: an
/// MCP `tools/list`, as the 2.0.11 server forwards them.
pub fn tools_list(session_id: &str) -> HttpRequest {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let request = HttpRequest::new("POST")
        .header("content-type", "application/json")
        .header("mcp-session-id", session_id);
    request.clone().json(&body).unwrap_or(request)
}

/// The demo endpoint's handler: streams `body.chunks` chunks of one agent
/// completion, one every `interval_ms`; answers `ok` to every notify for
/// its completion; over a WebSocket, registers the client's session id
/// (resumed or minted) and after the first chunk sends one server request
/// to it through the registry, without waiting for it.
pub async fn stream<R: Runtime>(rt: R, body: DemoBody, mut session: Session) -> HandlerResult {
    let completion = format!("agc-{}", mint_id(&mut OsRandom::new()));
    let mut requests = session.requests();
    rt.spawn(async move {
        while let Some(request) = requests.recv().await {
            request.respond(Ok(()));
        }
    });
    let session_id = if !session.is_websocket() {
        Ok(None)
    } else if let Some(id) = &body.session_id {
        session.register_session(id).map(|_| id.clone()).map(Some)
    } else {
        session.mint_session_id().map(Some)
    }
    .map_err(|e| ResponseError::new(503, &e.to_string()))?;
    let interval = Duration::from_millis(body.interval_ms.min(MAX_INTERVAL_MS));
    for i in 0..body.chunks {
        if i > 0 {
            let now = rt.now();
            let at = now.checked_add(interval).unwrap_or(now);
            rt.sleep_until(at).await;
        }
        let chunk = AgentCompletionChunk::new(&completion);
        if session.send(&chunk, [&completion]).await.is_err() {
            // The client left; nobody to stream to.
            return Ok(());
        }
        if let (0, Some(session_id)) = (i, &session_id) {
            let registry = session.registry().clone();
            let session_id = session_id.clone();
            rt.spawn(async move {
                let outcome = registry.request(&session_id, tools_list(&session_id)).await;
                match outcome {
                    Ok(response) => println!(
                        "[server] server request to session {session_id}: answered {}",
                        response.status
                    ),
                    Err(e) => println!("[server] server request to session {session_id}: {e}"),
                }
            });
        }
    }
    Ok(())
}

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

/// Starts the demo endpoint on `listener`, on its own task.
pub fn spawn_endpoint<R: Runtime>(server: Server<R>, listener: Listener<R>) {
    let rt = server.runtime().clone();
    rt.clone().spawn(async move {
        let handler = move |body, session| stream(rt, body, session);
        if let Err(e) = server.listen(&listener, only_path(PATH), handler).await {
            eprintln!("[server] accept failed: {e}");
        }
    });
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
            let session = request
                .headers
                .get("mcp-session-id")
                .unwrap_or("")
                .to_owned();
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

/// Serves the demo endpoint at `addr` until the process is stopped.
pub async fn serve<R: Runtime>(rt: R, addr: SocketAddr) -> Result<(), BoxError> {
    let listener = Listener::bind(rt.clone(), addr).await?;
    println!(
        "serving the demo endpoint at ws://{}{PATH} (body {{\"chunks\": N, \"interval_ms\": 100}})",
        listener.local_addr()?
    );
    let server = Server::new(rt.clone()).with_tap(|direction, message| {
        if let Message::Text(text) = message {
            let arrow = match direction {
                Direction::In => "server <- client",
                Direction::Out => "server -> client",
            };
            println!("{arrow}  {text}");
        }
    });
    let handler = move |body, session| stream(rt, body, session);
    server.listen(&listener, only_path(PATH), handler).await?;
    Ok(())
}

/// The `demo` example's `main`: `--serve [ADDR]` serves the endpoint,
/// anything else runs the demo once.
pub async fn main<R: Runtime>(rt: R, runtime_name: &str) -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("--serve") => match args
            .next()
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned())
            .parse()
        {
            Ok(addr) => serve(rt, addr).await,
            Err(e) => Err(format!("bad address: {e}").into()),
        },
        None => run(rt, runtime_name).await,
        Some(other) => {
            Err(format!("unknown argument {other:?}; usage: demo [--serve [ADDR]]").into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
