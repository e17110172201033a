//! The wirestream demo on smol: `cargo run --release -p wirestream-smol --example smol-demo`
//! runs a server and a client against it and prints what crossed the wire;
//! `-- --serve [ADDR] [FLAGS]` only serves the demo endpoint at `/agent/completions`
//! (flags: small limits for tests, see `wirestream_demo::serve_args`),
//! until Ctrl-C or SIGTERM starts a graceful shutdown (5 s of grace, then
//! `Close(1001)`; exits 0).

use std::process::ExitCode;

use async_signal::{Signal, Signals};
use futures_util::StreamExt;
use wirestream_smol::Smol;

fn main() -> ExitCode {
    smol::block_on(wirestream_demo::main(Smol, "smol", stop()))
}

/// Completes on Ctrl-C or SIGTERM (async-signal: smol's own signal crate,
/// already in the build through `smol::process`).
async fn stop() {
    #[cfg(unix)]
    let signals = Signals::new([Signal::Int, Signal::Term]);
    #[cfg(not(unix))]
    let signals = Signals::new([Signal::Int]);
    match signals {
        Ok(mut signals) => {
            signals.next().await;
        }
        Err(e) => {
            eprintln!("cannot watch signals: {e}");
            std::future::pending::<()>().await;
        }
    }
}
