//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the fuzz targets' bodies on stable, so an ordinary `cargo test` (and CI)
//! covers every input the fuzzers kept, without nightly.

use std::path::{Path, PathBuf};

use wirestream_model::fuzz::{TARGETS, run};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs every input of `target`'s corpus; returns how many there were.
fn replay(target: &str) -> usize {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut inputs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    inputs.sort();
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| run(target, &data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {why}", path.display());
        }
    }
    inputs.len()
}

/// A target added under `fuzz/fuzz_targets/` must be replayed here too.
#[test]
fn every_fuzz_target_is_replayed_and_has_a_corpus() {
    let targets_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = std::fs::read_dir(targets_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|name| name.trim_end_matches(".rs").to_owned())
        .collect();
    on_disk.sort();
    let mut known = TARGETS.map(str::to_owned).to_vec();
    known.sort();
    assert_eq!(on_disk, known);
    for target in TARGETS {
        assert!(corpus_dir(target).is_dir(), "no corpus for {target}");
    }
}

#[test]
fn classify_corpus_replays_cleanly() {
    assert!(replay("classify") > 0, "the classify corpus is empty");
}

#[test]
fn server_session_corpus_replays_cleanly() {
    assert!(
        replay("server_session") > 0,
        "the server_session corpus is empty"
    );
}

#[test]
fn client_session_corpus_replays_cleanly() {
    assert!(
        replay("client_session") > 0,
        "the client_session corpus is empty"
    );
}

#[test]
fn registry_corpus_replays_cleanly() {
    assert!(replay("registry") > 0, "the registry corpus is empty");
}

#[test]
fn pair_corpus_replays_cleanly() {
    assert!(replay("pair") > 0, "the pair corpus is empty");
}
