//! The `load` binary (BENCHMARKS.md, "Load, slow consumers, soak") runs end
//! to end: a few sessions against a wirestream server and the bare floor in
//! server processes of its own, on each runtime. Its figures belong to the
//! benchmark command, not to this test: only that every session completes.

use std::process::Command;

fn load(runtime: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_load"))
        .args(["--sessions", "20", "--chunks", "5", "--runtime", runtime])
        .output()
        .expect("the load binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches("sessions completed 20 / failed 0").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn load_on_tokio() {
    load("tokio");
}

#[test]
fn load_on_smol() {
    load("smol");
}
