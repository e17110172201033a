//! The wirestream demo on smol: `cargo run --release -p wirestream-smol --example smol-demo`
//! runs a server and a client against it and prints what crossed the wire;
//! `-- --serve [ADDR]` only serves the demo endpoint at `/agent/completions`.

use std::process::ExitCode;

use wirestream_smol::Smol;

fn main() -> ExitCode {
    smol::block_on(wirestream_demo::main(Smol, "smol"))
}
