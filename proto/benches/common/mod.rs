//! What the bench targets share (`mod common;` in each): the paired
//! measurement against a baseline, criterion's estimates, the command-line
//! filter, a deterministic shuffle and the ~1 KiB agent-completion chunk.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use wirestream_proto::{RandomSource, SeededRandom};

// ---------------------------------------------------------------------------
// The agent-completion chunk
// ---------------------------------------------------------------------------

#[derive(Clone, Serialize)]
pub(crate) struct AgentCompletionChunk {
    id: String,
    created: u64,
    object: &'static str,
    model: String,
    messages: Vec<Message>,
    upstream: Upstream,
    usage: Option<Usage>,
}

#[derive(Clone, Serialize)]
struct Message {
    index: u32,
    agent_id: String,
    role: &'static str,
    content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<&'static str>,
}

#[derive(Clone, Serialize)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Clone, Serialize)]
struct Upstream {
    provider: &'static str,
    id: String,
    model: String,
}

#[derive(Clone, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cost: f64,
}

/// A ~1 KiB (974 B serialized) chunk of the agent completion `id`; `n`
/// varies its `created` and token counts.
pub(crate) fn chunk(id: &str, n: u64) -> AgentCompletionChunk {
    let content = "I'll start by reading `src/parser.rs` to see how tokens are \
        consumed.\nThe current loop calls `peek()` twice per token, and the error \
        path clones the whole \"remaining\" slice. Next I'll run `cargo test -p \
        parser` to get a baseline before changing anything; then I'll replace the \
        double peek with a single `next_if` and make the error carry a span \
        instead of the text. Finally I'll rerun the suite and report what changed. ";
    AgentCompletionChunk {
        id: id.to_owned(),
        created: 1_767_225_600 + n,
        object: "agent.completion.chunk",
        model: "objectiveai/agent-1".to_owned(),
        messages: vec![Message {
            index: 0,
            agent_id: "ag-3f9c0e1d".to_owned(),
            role: "assistant",
            content: Some(content.to_owned()),
            reasoning: None,
            tool_calls: vec![ToolCall {
                id: "call_7QmZ2x".to_owned(),
                name: "read_file".to_owned(),
                arguments: r#"{"path":"src/parser.rs"}"#.to_owned(),
            }],
            finish_reason: None,
        }],
        upstream: Upstream {
            provider: "openrouter",
            id: "gen-1767225600-Xk2pQ9vLm3".to_owned(),
            model: "anthropic/claude-sonnet-4.5".to_owned(),
        },
        usage: Some(Usage {
            prompt_tokens: 1843,
            completion_tokens: 96 + n,
            total_tokens: 1939 + n,
            cost: 0.006_117,
        }),
    }
}

/// Fisher-Yates with the engine's own deterministic generator.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut SeededRandom) {
    for i in (1..items.len()).rev() {
        let j = usize::try_from(rng.next_u64() % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

// ---------------------------------------------------------------------------
// Criterion's estimates and the command line
// ---------------------------------------------------------------------------

/// Where criterion writes its estimates: as criterion itself decides, with
/// the workspace's `target/` when no variable says otherwise. Set explicitly
/// so that this file and criterion agree.
pub(crate) fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("criterion")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
    }
}

/// The median of one benchmark, in ns per iteration, if it ran in this
/// process (its estimates were written after `since`).
pub(crate) fn estimate(dir: &Path, group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(bench).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v.get("median")?.get("point_estimate")?.as_f64()
}

/// Which benchmarks the command line selects: criterion's filter (the first
/// positional argument), matched here as a substring of `group/bench`.
pub(crate) fn selected(name: &str) -> bool {
    const TAKES_VALUE: [&str; 16] = [
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--color",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().enumerate().find(|&(i, a)| {
        !a.starts_with('-') && (i == 0 || !TAKES_VALUE.contains(&args[i - 1].as_str()))
    });
    filter.is_none_or(|(_, f)| name.contains(f.as_str()))
}

// ---------------------------------------------------------------------------
// The paired measurement
// ---------------------------------------------------------------------------

/// An engine/baseline pair measured interleaved: each round times one block
/// of the engine and one block of the baseline back to back (in alternating
/// order), so that the ratio of the two is taken within a few hundred
/// microseconds and drift of the machine (a shared 2-core VM: other
/// processes, frequency, neighbours) cancels out of it.
pub(crate) struct Paired {
    /// Median time per op of the engine's and of the baseline's blocks.
    pub(crate) engine_ns: f64,
    pub(crate) baseline_ns: f64,
    /// Quartiles of the per-round ratio engine/baseline.
    pub(crate) ratio: [f64; 3],
}

/// The quartiles (25%, median, 75%) of `v`.
pub(crate) fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v.get((v.len() - 1) * q / 4).copied().unwrap_or(f64::NAN);
    [at(1), at(2), at(3)]
}

/// Runs `rounds` rounds (plus a tenth as warm-up) of `round(engine_first)`,
/// which returns (engine, baseline) times for one block of `ops` ops each.
pub(crate) fn paired(
    rounds: usize,
    ops: usize,
    mut round: impl FnMut(bool) -> (Duration, Duration),
) -> Paired {
    for r in 0..rounds / 10 {
        round(r % 2 == 0);
    }
    let (mut e, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (te, tb) = round(r % 2 == 0);
        let (te, tb) = (te.as_nanos() as f64, tb.as_nanos() as f64);
        e.push(te / ops as f64);
        b.push(tb / ops as f64);
        ratio.push(te / tb);
    }
    Paired {
        engine_ns: quartiles(e)[1],
        baseline_ns: quartiles(b)[1],
        ratio: quartiles(ratio),
    }
}

pub(crate) fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Times `a` and `b` back to back, `a` first when `a_first`.
pub(crate) fn both(a_first: bool, a: impl FnOnce(), b: impl FnOnce()) -> (Duration, Duration) {
    if a_first {
        let ta = timed(a);
        (ta, timed(b))
    } else {
        let tb = timed(b);
        (timed(a), tb)
    }
}

/// `serde_json::from_str::<IgnoredAny>` over every frame: the baseline of
/// inbound dispatch. Returns how many frames are valid JSON.
pub(crate) fn baseline_parse(frames: &[String]) -> usize {
    let mut ok = 0;
    for f in frames {
        ok += usize::from(serde_json::from_str::<serde::de::IgnoredAny>(black_box(f)).is_ok());
    }
    ok
}
