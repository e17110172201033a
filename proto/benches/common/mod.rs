//! What the bench targets share (`mod common;` in each): the paired
//! measurement of an engine closure against a baseline closure ([`Spec`],
//! [`run`]) with its report, the frames and batches both workloads are built
//! from, the drain loop of a driver ([`feed`]), criterion's estimates and
//! the command-line filter.
//!
//! A bench file is then a workload and a list of specs: (name, baseline
//! closure, engine closure) over inputs a setup closure builds untimed.

// Each bench target uses a part of this module.
#![allow(dead_code)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Bencher, Criterion};
use serde::Serialize;
use wirestream_proto::{Engine, Inbound, RandomSource, SeededRandom};

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
// Frames and batches
// ---------------------------------------------------------------------------

/// The body frame a client sends first.
pub(crate) const BODY_FRAME: &str = r#"{"model":"objectiveai/agent-1","messages":[{"role":"user","content":"Refactor the parser and run the tests."}],"stream":true}"#;

/// The seed of every workload's generator.
pub(crate) const SEED: u64 = 0x5eed_2026;

/// A JSON string literal of `s`.
pub(crate) fn json_str(s: &str) -> serde_json::Value {
    serde_json::Value::from(s)
}

/// An `agent_completion_notify` (~300 B): content is a string for even `n`,
/// an array of one text part for odd `n`.
pub(crate) fn notify_frame(id: &str, response_id: &str, n: usize) -> String {
    let text = format!(
        "Also check the tests in tests/parser_{n}.rs before you commit; the \
         snapshot for \"nested arrays\" changed last week and may need updating."
    );
    let content = if n % 2 == 0 {
        serde_json::to_string(&text)
    } else {
        serde_json::to_string(&serde_json::json!([{"type": "text", "text": text}]))
    };
    let content = content.expect("a string serializes");
    format!(
        r#"{{"id":{},"type":"agent_completion_notify","response_id":{},"content":{content}}}"#,
        json_str(id),
        json_str(response_id),
    )
}

/// A server response (status 200, two headers) with a JSON `body`.
pub(crate) fn response_frame(id: &str, body: &str) -> String {
    format!(
        r#"{{"id":{},"status":200,"headers":{{"content-type":"application/json","mcp-session-id":"s-1"}},"body":{body}}}"#,
        json_str(id),
    )
}

/// An MCP `tools/call` forwarded by the server: a server request with a
/// JSON body (~330 B).
pub(crate) fn server_request_frame(id: &str, n: usize) -> String {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": n,
        "method": "tools/call",
        "params": {
            "name": "read_file",
            "arguments": {"path": format!("src/parser_{n}.rs"), "limit": 200}
        }
    });
    format!(
        r#"{{"id":{},"method":"POST","headers":{{"content-type":"application/json","accept":"application/json, text/event-stream","mcp-session-id":"s-1"}},"body":{body}}}"#,
        json_str(id),
    )
}

/// `{"type":"ok"}`, a notify's answer.
pub(crate) fn ok_frame(id: &str) -> String {
    format!(r#"{{"type":"ok","id":{}}}"#, json_str(id))
}

/// `{"type":"error"}` 409, a notify's answer.
pub(crate) fn error_frame(id: &str, response_id: &str) -> String {
    format!(
        r#"{{"type":"error","id":{},"code":409,"message":{}}}"#,
        json_str(id),
        json_str(&format!("agent completion {response_id} already finished")),
    )
}

/// `n` agent-completion ids, `agc-<minted>`.
pub(crate) fn completion_ids(rng: &mut SeededRandom, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("agc-{}", wirestream_proto::mint_id(rng)))
        .collect()
}

/// A batch of inbound frames in a fixed shuffled order, each with its kind
/// `K` (for the breakdown by kind).
pub(crate) struct Batch<K> {
    pub(crate) frames: Vec<String>,
    pub(crate) kinds: Vec<K>,
}

impl<K: Copy + PartialEq> Batch<K> {
    /// The frames, shuffled with `rng`.
    pub(crate) fn shuffled(mut frames: Vec<(K, String)>, rng: &mut SeededRandom) -> Self {
        shuffle(&mut frames, rng);
        let (kinds, frames) = frames.into_iter().unzip();
        Self { frames, kinds }
    }

    /// The frames of one kind, in batch order.
    pub(crate) fn only(&self, kind: K) -> Vec<String> {
        self.frames
            .iter()
            .zip(&self.kinds)
            .filter(|&(_, k)| *k == kind)
            .map(|(f, _)| f.clone())
            .collect()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.frames.iter().map(String::len).sum()
    }

    /// How many frames are of `kind`, and their average size.
    pub(crate) fn describe(&self, kind: K) -> (usize, usize) {
        let frames = self.only(kind);
        let bytes: usize = frames.iter().map(String::len).sum();
        (frames.len(), bytes / frames.len().max(1))
    }
}

/// Feeds `frames` to `s` as a driver does: each one by value
/// (`handle_frame`), then every event (handed to `on_event`, then dropped)
/// and every transmit drained. Returns (events, transmits).
pub(crate) fn feed<E: Engine>(
    s: &mut E,
    now: Instant,
    frames: impl IntoIterator<Item = E::Text>,
    mut on_event: impl FnMut(&mut E, &E::Event),
) -> (usize, usize) {
    let (mut events, mut transmits) = (0, 0);
    for f in frames {
        s.handle_frame(now, Inbound::Text(black_box(f)));
        while let Some(event) = s.poll_event() {
            events += 1;
            on_event(s, &event);
            black_box(event);
        }
        while let Some(t) = s.poll_transmit() {
            transmits += 1;
            black_box(t);
        }
    }
    (events, transmits)
}

/// `drain` every transmit and event of `s`, dropping them.
pub(crate) fn drain<E: Engine>(s: &mut E) {
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
}

/// `serde_json::from_str::<IgnoredAny>` over every frame, each taken by
/// value and dropped after its parse as the engine's are: the baseline of
/// inbound dispatch. Returns how many frames are valid JSON.
pub(crate) fn baseline_parse(frames: Vec<String>) -> usize {
    let mut ok = 0;
    for f in frames {
        let f = black_box(f);
        ok += usize::from(serde_json::from_str::<serde::de::IgnoredAny>(&f).is_ok());
    }
    ok
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

fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

/// Whether `flag` is on the command line.
pub(crate) fn flag(flag: &str) -> bool {
    args().iter().any(|a| a == flag)
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
    let args = args();
    let filter = args.iter().enumerate().find(|&(i, a)| {
        !a.starts_with('-') && (i == 0 || !TAKES_VALUE.contains(&args[i - 1].as_str()))
    });
    filter.is_none_or(|(_, f)| name.contains(f.as_str()))
}

/// Paired rounds per figure: 4000 under `cargo bench` (or
/// `WIRESTREAM_BENCH_ROUNDS`, for a short run), 3 under
/// `cargo test --benches` (a smoke test), none with `--list` or
/// `--profile-time`.
pub(crate) fn rounds() -> usize {
    if flag("--list") || flag("--profile-time") {
        0
    } else if flag("--bench") && !flag("--test") {
        std::env::var("WIRESTREAM_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(4000)
    } else {
        3
    }
}

/// Criterion as every bench target configures it (the command line may
/// override each setting).
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .output_directory(&criterion_dir())
        .sample_size(40)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .nresamples(20_000)
        .configure_from_args()
}

/// `met` or `MISSED` against a target (`None`: informational); a smoke test
/// measures nothing.
pub(crate) fn verdict(target: Option<f64>, ratio: f64, rounds: usize) -> String {
    match target {
        _ if rounds < 100 => "smoke test, not a measurement".to_owned(),
        None => "informational".to_owned(),
        Some(t) if ratio <= t => format!("target <= {t}x: met"),
        Some(t) => format!("target <= {t}x: MISSED"),
    }
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

/// Times `f`; what it returns is dropped after the clock stops.
pub(crate) fn timed<O>(f: impl FnOnce() -> O) -> Duration {
    let t = Instant::now();
    let out = black_box(f());
    let elapsed = t.elapsed();
    drop(out);
    elapsed
}

/// One figure: `engine` against `baseline`, each over its own input that
/// `setup` builds (untimed) before every block. What each closure returns is
/// dropped after its clock stops (a session, say); what it takes by value
/// and drops itself (the frames' text) is paid inside.
pub(crate) struct Spec<'a> {
    /// Criterion's group, and the name of the engine's benchmark in it.
    pub(crate) group: &'static str,
    pub(crate) name: &'static str,
    /// The baseline's benchmark in the same group.
    pub(crate) baseline: &'static str,
    /// Ops per block (frames, chunks): the figures are per op.
    pub(crate) ops: usize,
    /// The ratio to meet; `None`: informational.
    pub(crate) target: Option<f64>,
    /// Also measured with criterion (its estimates are printed for the
    /// absolute times); breakdowns are paired only.
    pub(crate) criterion: bool,
    pair: Box<dyn Pair + 'a>,
}

trait Pair {
    /// One round: (engine, baseline) times, engine first if `engine_first`.
    fn round(&mut self, engine_first: bool) -> (Duration, Duration);
    fn bench(&mut self, b: &mut Bencher<'_>, engine: bool);
}

struct Closures<S, E, B> {
    setup: S,
    engine: E,
    baseline: B,
}

impl<S, E, B, I, J, O, P> Pair for Closures<S, E, B>
where
    S: FnMut() -> (I, J),
    E: FnMut(I) -> O,
    B: FnMut(J) -> P,
{
    fn round(&mut self, engine_first: bool) -> (Duration, Duration) {
        let (i, j) = (self.setup)();
        let (engine, baseline) = (&mut self.engine, &mut self.baseline);
        if engine_first {
            let te = timed(|| engine(i));
            (te, timed(|| baseline(j)))
        } else {
            let tb = timed(|| baseline(j));
            (timed(|| engine(i)), tb)
        }
    }

    fn bench(&mut self, b: &mut Bencher<'_>, engine: bool) {
        // One block per iteration, its input built just before it is timed:
        // with `SmallInput`, criterion would build many inputs first and
        // then run each cache-cold. A block lasts ~100 us.
        let setup = &mut self.setup;
        if engine {
            let f = &mut self.engine;
            b.iter_batched(|| setup().0, f, BatchSize::PerIteration);
        } else {
            let f = &mut self.baseline;
            b.iter_batched(|| setup().1, f, BatchSize::PerIteration);
        }
    }
}

impl<'a> Spec<'a> {
    /// `group/name` over `ops` ops per block vs `group/baseline`, with
    /// inputs from `setup`; informational and criterion-measured until
    /// told otherwise.
    pub(crate) fn new<I, J, O, P>(
        (group, name, baseline): (&'static str, &'static str, &'static str),
        ops: usize,
        setup: impl FnMut() -> (I, J) + 'a,
        engine: impl FnMut(I) -> O + 'a,
        base: impl FnMut(J) -> P + 'a,
    ) -> Self {
        Self {
            group,
            name,
            baseline,
            ops,
            target: None,
            criterion: true,
            pair: Box::new(Closures {
                setup,
                engine,
                baseline: base,
            }),
        }
    }

    /// The ratio to meet.
    pub(crate) fn target(self, target: f64) -> Self {
        Self {
            target: Some(target),
            ..self
        }
    }

    /// Measured paired only (a breakdown).
    pub(crate) fn paired_only(self) -> Self {
        Self {
            criterion: false,
            ..self
        }
    }

    fn full_name(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    fn is_selected(&self) -> bool {
        selected(&self.full_name()) || selected(&format!("{}/{}", self.group, self.baseline))
    }
}

/// `group`, engine name, baseline name.
pub(crate) type Names = (&'static str, &'static str, &'static str);

/// `engine` over `frames` with a fresh state (a session) from `fresh`, vs
/// [`baseline_parse`] over the same frames. Both sides take the frames by
/// value, cloned untimed before each block, and drop them (the engine's as
/// its events are dropped); the state is built and dropped untimed.
pub(crate) fn over_frames<'a, S: 'a>(
    names: Names,
    frames: Vec<String>,
    mut fresh: impl FnMut() -> S + 'a,
    mut engine: impl FnMut(&mut S, Vec<String>) + 'a,
) -> Spec<'a> {
    Spec::new(
        names,
        frames.len(),
        move || ((fresh(), frames.clone()), frames.clone()),
        move |(mut state, frames)| {
            engine(&mut state, frames);
            state
        },
        baseline_parse,
    )
}

/// The target of inbound dispatch, both roles: engine / bare parse.
pub(crate) const DISPATCH_TARGET: f64 = 1.2;

/// The figures of a role's inbound dispatch over `batch`:
/// `group/engine` (the target), `group/engine_with_reply` (every request
/// answered), `group/<classify>` (classification alone), then the
/// paired-only breakdown by kind, `(kind, engine name, classify name)`.
/// `session(names, frames, reply)` makes the session's specs (see
/// [`over_frames`]); `classify` is the role's classification alone, over
/// the same owned frames.
pub(crate) fn dispatch_figures<'a, K: Copy + PartialEq>(
    batch: &Batch<K>,
    (group, classify_name): (&'static str, &'static str),
    kinds: &[(K, &'static str, &'static str)],
    session: impl Fn(Names, Vec<String>, bool) -> Spec<'a>,
    classify: fn(Vec<String>) -> usize,
) -> Vec<Spec<'a>> {
    let classify = |names, frames| {
        over_frames(
            names,
            frames,
            || (),
            move |(), frames| {
                black_box(classify(frames));
            },
        )
    };
    const PARSE: &str = "serde_json_ignored_any";
    let all = &batch.frames;
    let mut specs = vec![
        session((group, "engine", PARSE), all.clone(), false).target(DISPATCH_TARGET),
        session((group, "engine_with_reply", PARSE), all.clone(), true),
        classify((group, classify_name, PARSE), all.clone()),
    ];
    for &(kind, engine, classified) in kinds {
        let frames = batch.only(kind);
        specs.push(session((group, engine, PARSE), frames.clone(), false).paired_only());
        specs.push(classify((group, classified, PARSE), frames).paired_only());
    }
    specs
}

/// Runs `specs`: criterion on those it measures (each baseline once per
/// group), then the paired measurement of every selected one, printing each
/// ratio with its target and whether it is met. Returns the paired figures
/// by `group/name`.
pub(crate) fn run(c: &mut Criterion, specs: &mut [Spec<'_>]) -> Vec<(String, Paired)> {
    let since = SystemTime::now();
    let mut benched: Vec<String> = Vec::new();
    for spec in specs.iter_mut().filter(|s| s.criterion) {
        let mut g = c.benchmark_group(spec.group);
        let base = format!("{}/{}", spec.group, spec.baseline);
        if !benched.contains(&base) {
            g.bench_function(spec.baseline, |b| spec.pair.bench(b, false));
            benched.push(base);
        }
        g.bench_function(spec.name, |b| spec.pair.bench(b, true));
        g.finish();
    }
    let rounds = rounds();
    if rounds == 0 || !specs.iter().any(Spec::is_selected) {
        return Vec::new();
    }
    let dir = criterion_dir();
    println!();
    println!(
        "ratios engine/baseline, per op; paired = {rounds} interleaved rounds: median ns per op of each side, ratio median [quartiles] of the per-round ratios"
    );
    println!(
        "  (criterion = the two benchmarks' median estimates, measured one after the other: for the absolute times only)"
    );
    let mut figures = Vec::new();
    for spec in specs.iter_mut().filter(|s| s.is_selected()) {
        let name = spec.full_name();
        let pair = &mut spec.pair;
        let p = paired(rounds, spec.ops, |engine_first| pair.round(engine_first));
        println!(
            "  {name:<36} {:>8.1} ns vs {:>8.1} ns ({}) = {:.2}x [{:.2}x..{:.2}x]  {}",
            p.engine_ns,
            p.baseline_ns,
            spec.baseline,
            p.ratio[1],
            p.ratio[0],
            p.ratio[2],
            verdict(spec.target, p.ratio[1], rounds),
        );
        if let (Some(e), Some(b)) = (
            estimate(&dir, spec.group, spec.name, since),
            estimate(&dir, spec.group, spec.baseline, since),
        ) {
            let per = spec.ops as f64;
            println!(
                "  {:<36} criterion: {:>8.1} ns vs {:>8.1} ns = {:.2}x",
                "",
                e / per,
                b / per,
                e / b
            );
        }
        figures.push((name, p));
    }
    figures
}
