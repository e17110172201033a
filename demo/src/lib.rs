//! The wirestream demo (unpublished): an agent-completions endpoint that
//! streams mock chunks, answers notifies and asks its client one question,
//! and a client script that runs against it and prints what crossed the
//! wire, on any [`Runtime`](wirestream_runtime::Runtime). The `demo`
//! example of `wirestream-tokio` and the `smol-demo` example of
//! `wirestream-smol` run it; the integration tests and the axum example use
//! its endpoint.
//!
//! It prints its transcript on stdout and logs through `tracing` (target
//! `wirestream::demo`); the examples install a subscriber that writes the
//! logs to stderr (`RUST_LOG`, default `wirestream=info`) with
//! [`init_logs`].

#![forbid(unsafe_code)]

mod bridge;
mod endpoint;
mod script;

pub use bridge::BRIDGE_PREFIX;
pub use endpoint::{AgentCompletionChunk, DemoBody, PATH, spawn_endpoint, stream, tools_list};
pub use script::{
    DEFAULT_ADDR, SHUTDOWN_GRACE, connect, connect_args, describe, init_logs, main, run, serve,
    serve_args, serve_node,
};
