//! The wirestream demo on tokio: `cargo run --release -p wirestream-tokio --example demo`
//! runs a server and a client against it and prints what crossed the wire;
//! `-- --serve [ADDR] [FLAGS]` only serves the demo endpoint at `/agent/completions`
//! (flags: small limits for tests, see `wirestream_demo::serve_args`),
//! until Ctrl-C or SIGTERM starts a graceful shutdown (5 s of grace, then
//! `Close(1001)`; exits 0).

use std::process::ExitCode;

use wirestream_tokio::Tokio;

#[tokio::main]
async fn main() -> ExitCode {
    wirestream_demo::main(Tokio, "tokio", stop()).await
}

/// Completes on Ctrl-C, or on SIGTERM (Unix).
async fn stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => eprintln!("cannot watch SIGTERM: {e}"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("cannot watch Ctrl-C: {e}");
        std::future::pending::<()>().await;
    }
}
