//! The wirestream demo on tokio: `cargo run --release -p wirestream-tokio --example demo`
//! runs a server and a client against it and prints what crossed the wire;
//! `-- --serve [ADDR]` only serves the demo endpoint at `/agent/completions`.

use std::process::ExitCode;

use wirestream_tokio::Tokio;

#[tokio::main]
async fn main() -> ExitCode {
    wirestream_demo::main(Tokio, "tokio").await
}
