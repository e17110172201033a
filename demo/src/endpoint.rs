//! The demo endpoint: streams mock agent-completion chunks, answers
//! notifies and asks its client one question.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use wirestream_proto::{ResponseError, mint_id};
use wirestream_runtime::{
    HandlerResult, HttpRequest, Listener, OsRandom, Runtime, Server, Session, only_path,
};

/// The path the demo endpoint is served at.
pub const PATH: &str = "/agent/completions";

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
        // `interval_ms: 0` streams as fast as the client reads: no timer
        // at all (a zero-length sleep still waits for the timer's tick).
        if i > 0 && !interval.is_zero() {
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
                        response.status().unwrap_or_default()
                    ),
                    Err(e) => println!("[server] server request to session {session_id}: {e}"),
                }
            });
        }
    }
    Ok(())
}

/// Starts the demo endpoint on `listener`, on its own task.
pub fn spawn_endpoint<R: Runtime>(server: Server<R>, listener: Listener<R>) {
    let rt = server.runtime().clone();
    rt.clone().spawn(async move {
        let handler = move |body, session| stream(rt, body, session);
        if let Err(e) = server.listen(&listener, only_path(PATH), handler).await {
            tracing::error!(target: "wirestream::demo", "accept failed: {e}");
        }
    });
}
