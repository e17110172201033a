//! Criterion benchmarks of the wirestream engine, each reported as a ratio
//! against a bare `serde_json` baseline measured in the same run (DESIGN.md
//! "Performance"), plus the memory an idle streaming session holds.
//!
//! Run with `cargo bench -p wirestream-proto --bench engine`; the ratios and
//! the memory figures are printed at the end. BENCHMARKS.md records a run.
//!
//! - `dispatch/*`: one batch of [`FRAMES`] inbound frames (notifies, server
//!   responses with a ~2 KiB body, ~10% junk) fed to a fresh streaming
//!   session, draining every event and transmit after each frame, vs
//!   `serde_json::from_str::<IgnoredAny>` over the same bytes. Target <= 1.3x.
//! - `send_chunk/*`: `send_chunk_value` of a ~1 KiB agent-completion chunk
//!   plus `poll_transmit`, vs `serde_json::to_string` of the same chunk.
//!   Target <= 1.2x.
//! - memory: live heap bytes a drained, idle streaming session holds
//!   (counted by the global allocator below) plus `size_of::<ServerSession>()`.
//!   Target <= 2 KiB.
//!
//! Each ratio is printed twice: from criterion's median estimates of the two
//! benchmarks (measured one after the other, so drift of a shared machine
//! between them lands in the ratio), and from a paired measurement that
//! interleaves engine and baseline blocks round by round (see [`Paired`]);
//! the paired one is the figure to quote. The helpers shared with the other
//! bench targets are in `common/mod.rs`.

// Only the counting allocator below needs `unsafe` (implementing
// `GlobalAlloc` is an unsafe trait); nothing else in this file uses it.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, Throughput};
use serde_json::value::RawValue;
use wirestream_proto::classify::{ServerFrame, classify_server};
use wirestream_proto::{
    Config, Headers, Inbound, Outcome, SeededRandom, ServerEvent, ServerSession, mint_id,
};

use common::{
    AgentCompletionChunk, Paired, baseline_parse, both, chunk, criterion_dir, estimate, paired,
    selected, shuffle,
};

// ---------------------------------------------------------------------------
// Counting allocator (for the memory figure only)
// ---------------------------------------------------------------------------

/// Whether allocations are being counted. Off while timing, so the timed
/// code pays one relaxed load per allocation, not an atomic add.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Requested bytes allocated minus freed while counting.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Blocks allocated minus freed while counting.
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
/// As `LIVE_BYTES`, with each block rounded to the chunk glibc's malloc
/// would use on x86-64 (an estimate: see [`chunk_size`]).
static LIVE_CHUNKS: AtomicIsize = AtomicIsize::new(0);

struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// glibc malloc's chunk for a request of `size` bytes on 64-bit targets: an
/// 8-byte header, 16-byte granularity, 32 bytes at least.
fn chunk_size(size: usize) -> isize {
    signed(((size + 8 + 15) & !15).max(32))
}

/// Records `new` bytes allocated in place of `old` (0 for none).
fn track(old: usize, new: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        let chunk = |n| if n == 0 { 0 } else { chunk_size(n) };
        let blocks = isize::from(new > 0) - isize::from(old > 0);
        LIVE_BYTES.fetch_add(signed(new) - signed(old), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
        LIVE_CHUNKS.fetch_add(chunk(new) - chunk(old), Ordering::Relaxed);
    }
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the only addition is bookkeeping on
// atomics, which neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `alloc`'s contract; passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            track(0, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            track(0, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        track(layout.size(), 0);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            track(layout.size(), new_size);
        }
        new
    }
}

/// (requested bytes, blocks, estimated malloc chunk bytes) live now.
fn live() -> [isize; 3] {
    [
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
        LIVE_CHUNKS.load(Ordering::Relaxed),
    ]
}

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

/// Frames per dispatch batch (one criterion iteration).
const FRAMES: usize = 100;
/// Of which client requests (`agent_completion_notify`)...
const NOTIFIES: usize = 45;
/// ... server responses (each to a server request the session sent) ...
const RESPONSES: usize = 45;
/// ... and junk (10%).
const JUNK: usize = FRAMES - NOTIFIES - RESPONSES;
/// Agent completions whose ids the session has emitted (a root and agents).
const COMPLETIONS: usize = 4;
const SEED: u64 = 0x5eed_2026;

const BODY_FRAME: &str = r#"{"model":"objectiveai/agent-1","messages":[{"role":"user","content":"Refactor the parser and run the tests."}],"stream":true}"#;

/// An MCP `tools/list` result of about 2 KiB: the body of a server response.
fn tools_list_body(rpc_id: usize) -> String {
    let tool = |name: &str, what: &str| {
        serde_json::json!({
            "name": name,
            "description": format!("{what}. Paths are relative to the workspace root; paths outside it fail with an error."),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File or directory path"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 10000}
                },
                "required": ["path"],
                "additionalProperties": false
            }
        })
    };
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": rpc_id,
        "result": {
            "tools": [
                tool("read_file", "Reads a UTF-8 text file and returns its content with line numbers"),
                tool("list_dir", "Lists the entries of a directory, one per line, directories first"),
                tool("grep", "Searches files under a directory for a regular expression"),
                tool("write_file", "Writes a UTF-8 text file, creating parent directories"),
                tool("run_tests", "Runs the project's test command and returns its output"),
            ],
            "nextCursor": null
        }
    })
    .to_string()
}

fn notify_frame(id: &str, response_id: &str, n: usize) -> String {
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
        serde_json::Value::from(id),
        serde_json::Value::from(response_id),
    )
}

fn response_frame(id: &str, body: &str) -> String {
    format!(
        r#"{{"id":{},"status":200,"headers":{{"content-type":"application/json","mcp-session-id":"s-1"}},"body":{body}}}"#,
        serde_json::Value::from(id),
    )
}

const JUNK_FRAMES: [&str; 10] = [
    r#"{"event":"heartbeat","ts":1767225600123}"#,
    r#"{"id":"c1f0a2b4","status":"200","body":{"ok":true}}"#,
    r#"{"id":7,"type":"agent_completion_notify","response_id":"agc-1","content":"hi"}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t-1","progress":40,"total":100}}"#,
    "[1,2,3]",
    r#""just a string""#,
    r#"{"id":"c1f0a2b4","status":200,"headers":{"x":1}}"#,
    "not json at all",
    r#"{"id":"9b2e6c1e","type":"agent_completion_notify","content":"trunc"#,
    "null",
];

struct Workload {
    base: Instant,
    completion_ids: Vec<String>,
    setup_chunk: AgentCompletionChunk,
    request_headers: Headers<'static>,
    request_body: Box<RawValue>,
    /// The batch, in arrival order.
    frames: Vec<String>,
    /// What each frame is, for the breakdown by kind.
    kinds: Vec<Kind>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Notify,
    Response,
    Junk,
}

impl Workload {
    fn new(base: Instant) -> Self {
        let mut rng = SeededRandom::new(SEED ^ 1);
        let completion_ids: Vec<String> = (0..COMPLETIONS)
            .map(|_| format!("agc-{}", mint_id(&mut rng)))
            .collect();
        let mut w = Self {
            base,
            setup_chunk: chunk(&completion_ids[0], 0),
            completion_ids,
            request_headers: [("content-type", "application/json")].into_iter().collect(),
            request_body: RawValue::from_string(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
            )
            .expect("valid JSON"),
            frames: Vec::new(),
            kinds: Vec::new(),
        };
        let (_, server_request_ids) = w.session();
        let mut frames = Vec::with_capacity(FRAMES);
        for n in 0..NOTIFIES {
            let id = mint_id(&mut rng);
            let response_id = &w.completion_ids[n % COMPLETIONS];
            frames.push((Kind::Notify, notify_frame(&id, response_id, n)));
        }
        for (n, id) in server_request_ids.iter().enumerate() {
            frames.push((Kind::Response, response_frame(id, &tools_list_body(n + 1))));
        }
        frames.extend(
            JUNK_FRAMES
                .iter()
                .take(JUNK)
                .map(|s| (Kind::Junk, (*s).to_owned())),
        );
        shuffle(&mut frames, &mut rng);
        (w.kinds, w.frames) = frames.into_iter().unzip();
        w
    }

    /// A session in the streaming phase that has emitted every completion id
    /// and sent [`RESPONSES`] server requests, drained. Deterministic: every
    /// call mints the same server request ids.
    fn session(&self) -> (ServerSession, Vec<String>) {
        let now = self.base;
        let mut s = ServerSession::new(Config::default(), now, SeededRandom::new(SEED));
        s.handle_frame(now, Inbound::Text(BODY_FRAME));
        while s.poll_event().is_some() {}
        for id in &self.completion_ids {
            s.send_chunk_value(&self.setup_chunk, [id]).expect("room");
            while s.poll_transmit().is_some() {}
        }
        let ids = (0..RESPONSES)
            .map(|_| {
                let id = s
                    .send_server_request(
                        now,
                        "POST",
                        &self.request_headers,
                        Some(&self.request_body),
                        None,
                    )
                    .expect("room");
                while s.poll_transmit().is_some() {}
                id
            })
            .collect();
        (s, ids)
    }

    /// The frames of one kind, in batch order.
    fn only(&self, kind: Kind) -> Vec<String> {
        self.frames
            .iter()
            .zip(&self.kinds)
            .filter(|&(_, k)| *k == kind)
            .map(|(f, _)| f.clone())
            .collect()
    }

    fn bytes(&self) -> usize {
        self.frames.iter().map(String::len).sum()
    }
}

/// Feeds the batch, draining after every frame as a driver does. With
/// `reply`, every client request is also answered `ok` (its reply frame is
/// transmitted too). Returns (events, transmits) for the sanity check.
fn dispatch(s: &mut ServerSession, now: Instant, frames: &[String], reply: bool) -> (usize, usize) {
    let (mut events, mut transmits) = (0, 0);
    for f in frames {
        s.handle_frame(now, Inbound::Text(black_box(f)));
        while let Some(event) = s.poll_event() {
            events += 1;
            if reply {
                if let ServerEvent::Request(request) = &event {
                    s.respond(now, &request.id, Ok(())).expect("in flight");
                }
            }
            black_box(event);
        }
        while let Some(t) = s.poll_transmit() {
            transmits += 1;
            black_box(t);
        }
    }
    (events, transmits)
}

/// Only the engine's one-pass classification of each frame (no session):
/// separates the cost of parsing from the session's bookkeeping.
fn classify_only(frames: &[String]) -> usize {
    let mut junk = 0;
    for f in frames {
        let frame = classify_server(black_box(f));
        junk += usize::from(matches!(frame, ServerFrame::Junk));
        black_box(frame);
    }
    junk
}

/// Checks once that the batch does what it says: every notify accepted,
/// every response routed, every junk frame dropped, nothing refused.
fn check_workload(w: &Workload) {
    let (mut s, _) = w.session();
    let mut requests = 0;
    let mut answered = 0;
    for f in &w.frames {
        s.handle_frame(w.base, Inbound::Text(f));
        while let Some(event) = s.poll_event() {
            match event {
                ServerEvent::Request(_) => requests += 1,
                ServerEvent::ServerRequestEnded {
                    outcome: Outcome::Answered(r),
                    ..
                } if r.body.as_ref().is_some_and(|b| b.get().len() > 1800) => answered += 1,
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(
            s.poll_transmit().is_none(),
            "nothing is sent without a reply"
        );
    }
    let stats = s.stats();
    assert_eq!((requests, answered), (NOTIFIES, RESPONSES));
    assert_eq!(stats.junk_frames, JUNK as u64);
    assert_eq!((stats.refused_requests, stats.unknown_responses), (0, 0));

    let (mut s, _) = w.session();
    let (events, transmits) = dispatch(&mut s, w.base, &w.frames, true);
    assert_eq!((events, transmits), (NOTIFIES + RESPONSES, NOTIFIES));
    assert_eq!(s.client_requests_in_flight(), 0);
    assert_eq!(
        baseline_parse(&w.frames),
        FRAMES - 2,
        "two junk frames are not JSON"
    );
    assert_eq!(classify_only(&w.frames), JUNK);
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

fn bench_dispatch(c: &mut Criterion, w: &Workload) {
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| baseline_parse(&w.frames));
    });
    g.bench_function("classify_server", |b| {
        b.iter(|| classify_only(&w.frames));
    });
    // A fresh session per batch, set up right before the batch is timed (as
    // in the paired measurement): with `SmallInput`, criterion would build
    // many sessions first and then run each one cache-cold. One batch takes
    // ~100 us, so timing each iteration on its own costs nothing noticeable.
    g.bench_function("engine", |b| {
        b.iter_batched_ref(
            || w.session().0,
            |s| dispatch(s, w.base, &w.frames, false),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("engine_with_reply", |b| {
        b.iter_batched_ref(
            || w.session().0,
            |s| dispatch(s, w.base, &w.frames, true),
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn bench_send_chunk(c: &mut Criterion, w: &Workload) {
    let id = &w.completion_ids[1];
    let value = chunk(id, 7);
    let mut g = c.benchmark_group("send_chunk");
    g.throughput(Throughput::Elements(1));
    g.bench_function("serde_json_to_string", |b| {
        b.iter(|| serde_json::to_string(black_box(&value)).expect("serializes"));
    });
    let (mut s, _) = w.session();
    g.bench_function("engine", |b| {
        b.iter(|| {
            s.send_chunk_value(black_box(&value), [id]).expect("room");
            s.poll_transmit().expect("the chunk")
        });
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// Memory of an idle session
// ---------------------------------------------------------------------------

struct Footprint {
    /// Requested bytes, as the program asked for them.
    heap_bytes: isize,
    heap_blocks: isize,
    /// The same blocks as glibc malloc's chunks (header and rounding).
    malloc_bytes: isize,
}

/// Live heap held by the session `scenario` builds and drains: the change
/// in live bytes and blocks seen by the counting allocator between before
/// the session was created and after it was drained (every temporary,
/// frames and events included, dropped by then).
fn footprint(scenario: impl FnOnce() -> ServerSession) -> Footprint {
    COUNTING.store(true, Ordering::SeqCst);
    let before = live();
    let session = scenario();
    let held = live();
    drop(black_box(session));
    let after = live();
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(after, before, "dropping the session frees all it held");
    Footprint {
        heap_bytes: held[0] - before[0],
        heap_blocks: held[1] - before[1],
        malloc_bytes: held[2] - before[2],
    }
}

fn drain(s: &mut ServerSession) {
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
}

fn memory_report(w: &Workload) {
    let now = w.base;
    let chunks: Vec<AgentCompletionChunk> = (0..8)
        .map(|n| chunk(&w.completion_ids[n % 3], n as u64))
        .collect();
    let many_ids: Vec<String> = {
        let mut rng = SeededRandom::new(SEED ^ 2);
        (0..Config::default().max_emitted_ids)
            .map(|_| format!("agc-{}", mint_id(&mut rng)))
            .collect()
    };
    let notify = notify_frame(
        "9b2e6c1e-0000-4000-8000-000000000001",
        &w.completion_ids[0],
        0,
    );
    let body = RawValue::from_string(tools_list_body(1)).expect("valid JSON");
    let new_streaming = || {
        let mut s = ServerSession::new(Config::default(), now, SeededRandom::new(SEED));
        s.handle_frame(now, Inbound::Text(BODY_FRAME));
        drain(&mut s);
        s
    };
    // Warm up anything lazily initialized on first use (thread-local hash
    // keys), so that it is not counted against the first scenario.
    drop(new_streaming());

    let idle = footprint(|| {
        let mut s = new_streaming();
        for (n, c) in chunks.iter().enumerate() {
            s.send_chunk_value(c, [&w.completion_ids[n % 3]])
                .expect("room");
            drain(&mut s);
        }
        s
    });
    let after_requests = footprint(|| {
        let mut s = new_streaming();
        for (n, c) in chunks.iter().enumerate() {
            s.send_chunk_value(c, [&w.completion_ids[n % 3]])
                .expect("room");
            drain(&mut s);
        }
        s.handle_frame(now, Inbound::Text(&notify));
        while let Some(event) = s.poll_event() {
            if let ServerEvent::Request(r) = event {
                s.respond(now, &r.id, Ok(())).expect("in flight");
            }
        }
        drain(&mut s);
        let id = s
            .send_server_request(now, "POST", &w.request_headers, None, None)
            .expect("room");
        drain(&mut s);
        s.handle_frame(now, Inbound::Text(&response_frame(&id, body.get())));
        drain(&mut s);
        s
    });
    let burst = footprint(|| {
        let mut s = new_streaming();
        let cap = s.config().max_queued_frames;
        for n in 0..cap {
            s.send_chunk_value(&chunks[n % chunks.len()], [&w.completion_ids[n % 3]])
                .expect("room");
        }
        drain(&mut s);
        s
    });
    let at_id_cap = footprint(|| {
        let mut s = new_streaming();
        for id in &many_ids {
            s.send_chunk_value(&chunks[0], [id]).expect("room");
            drain(&mut s);
        }
        s
    });

    let size = signed(size_of::<ServerSession>());
    println!();
    println!("memory held by an idle streaming session (nothing queued, everything drained)");
    println!(
        "  inline: size_of::<ServerSession>() = {size} B (on the stack, or in the driver's Box)"
    );
    println!(
        "  heap: live bytes the session owns (requested sizes; in brackets as glibc malloc chunks)"
    );
    println!(
        "  (size_of::<ServerEvent>() = {} B, size_of::<Transmit>() = {} B)",
        size_of::<ServerEvent>(),
        size_of::<wirestream_proto::Transmit>()
    );
    let rows = [
        ("idle: body + 8 chunks carrying 3 ids", &idle),
        (
            "idle + 1 notify and 1 server request, answered",
            &after_requests,
        ),
        ("idle after a burst of 64 queued chunks", &burst),
        ("idle after 1024 distinct ids (the cap)", &at_id_cap),
    ];
    for (name, f) in rows {
        println!(
            "  {name:<48} heap {:>6} B [{:>6}] in {:>4} blocks; inline + heap = {:>6} B [{:>6}]",
            f.heap_bytes,
            f.malloc_bytes,
            f.heap_blocks,
            size + f.heap_bytes,
            size + f.malloc_bytes,
        );
    }
    let total = size + idle.heap_bytes;
    let verdict = if total <= 2048 { "met" } else { "MISSED" };
    println!(
        "  target: idle <= 2048 B -> {total} B [{} B] ({verdict})",
        size + idle.malloc_bytes
    );
}

// ---------------------------------------------------------------------------
// Ratios
// ---------------------------------------------------------------------------

/// Ops per timed block of `send_chunk` (one op is ~1-2 us: too short to time
/// alone).
const CHUNK_BLOCK: usize = 64;

struct PairSpec {
    group: &'static str,
    engine: &'static str,
    baseline: &'static str,
    ops: usize,
    /// `None`: informational.
    target: Option<f64>,
}

const PAIRS: [PairSpec; 4] = [
    PairSpec {
        group: "dispatch",
        engine: "classify_server",
        baseline: "serde_json_ignored_any",
        ops: FRAMES,
        target: None,
    },
    PairSpec {
        group: "dispatch",
        engine: "engine",
        baseline: "serde_json_ignored_any",
        ops: FRAMES,
        target: Some(1.3),
    },
    PairSpec {
        group: "dispatch",
        engine: "engine_with_reply",
        baseline: "serde_json_ignored_any",
        ops: FRAMES,
        target: None,
    },
    PairSpec {
        group: "send_chunk",
        engine: "engine",
        baseline: "serde_json_to_string",
        ops: 1,
        target: Some(1.2),
    },
];

fn measure_pair(spec: &PairSpec, w: &Workload, rounds: usize) -> Paired {
    match (spec.group, spec.engine) {
        ("dispatch", "classify_server") => paired_classify(&w.frames, rounds),
        ("dispatch", engine) => {
            paired_dispatch(w, &w.frames, engine == "engine_with_reply", rounds)
        }
        _ => {
            let id = &w.completion_ids[1];
            let value = chunk(id, 7);
            let mut s = w.session().0;
            paired(rounds, CHUNK_BLOCK, |engine_first| {
                both(
                    engine_first,
                    || {
                        for _ in 0..CHUNK_BLOCK {
                            s.send_chunk_value(black_box(&value), [id]).expect("room");
                            black_box(s.poll_transmit().expect("the chunk"));
                        }
                    },
                    || {
                        for _ in 0..CHUNK_BLOCK {
                            black_box(
                                serde_json::to_string(black_box(&value)).expect("serializes"),
                            );
                        }
                    },
                )
            })
        }
    }
}

fn paired_classify(frames: &[String], rounds: usize) -> Paired {
    paired(rounds, frames.len(), |classify_first| {
        both(
            classify_first,
            || {
                black_box(classify_only(frames));
            },
            || {
                black_box(baseline_parse(frames));
            },
        )
    })
}

/// `frames` through a fresh session (from [`Workload::session`]) per round.
fn paired_dispatch(w: &Workload, frames: &[String], reply: bool, rounds: usize) -> Paired {
    paired(rounds, frames.len(), |engine_first| {
        let mut s = w.session().0;
        let t = both(
            engine_first,
            || {
                black_box(dispatch(&mut s, w.base, frames, reply));
            },
            || {
                black_box(baseline_parse(frames));
            },
        );
        drop(s);
        t
    })
}

fn ratio_report(dir: &Path, since: SystemTime, w: &Workload, rounds: usize) {
    println!();
    println!(
        "ratios engine/baseline; dispatch: per frame, batch of {FRAMES} frames ({} B); send_chunk: per chunk",
        w.bytes()
    );
    println!(
        "  paired = {rounds} interleaved rounds: median ns per op of each side, ratio median [quartiles] of per-round ratios"
    );
    println!(
        "  criterion = the two benchmarks' median estimates above, measured one after the other"
    );
    for spec in &PAIRS {
        let name = format!("{}/{}", spec.group, spec.engine);
        let base_name = format!("{}/{}", spec.group, spec.baseline);
        if !selected(&name) && !selected(&base_name) {
            continue;
        }
        let p = measure_pair(spec, w, rounds);
        let verdict = match spec.target {
            _ if rounds < 100 => "smoke test, not a measurement".to_owned(),
            None => "informational".to_owned(),
            Some(t) if p.ratio[1] <= t => format!("target <= {t}x: met"),
            Some(t) => format!("target <= {t}x: MISSED"),
        };
        println!(
            "  {name:<28} paired: {:>8.1} ns vs {:>8.1} ns ({}) = {:.2}x [{:.2}x..{:.2}x]  ({verdict})",
            p.engine_ns, p.baseline_ns, spec.baseline, p.ratio[1], p.ratio[0], p.ratio[2],
        );
        if let (Some(e), Some(b)) = (
            estimate(dir, spec.group, spec.engine, since),
            estimate(dir, spec.group, spec.baseline, since),
        ) {
            let per = spec.ops as f64;
            println!(
                "  {:<28} criterion: {:>8.1} ns vs {:>8.1} ns = {:.2}x",
                "",
                e / per,
                b / per,
                e / b
            );
        }
    }
    if !selected("dispatch/engine") {
        return;
    }
    println!(
        "  by kind of frame (paired, informational): classify_server / engine, vs serde_json_ignored_any"
    );
    for (name, kind) in [
        ("notify", Kind::Notify),
        ("server response", Kind::Response),
        ("junk", Kind::Junk),
    ] {
        let frames = w.only(kind);
        let avg = frames.iter().map(String::len).sum::<usize>() / frames.len().max(1);
        let c = paired_classify(&frames, rounds);
        let e = paired_dispatch(w, &frames, false, rounds);
        println!(
            "    {name:<16} {:>3} x {avg:>4} B: classify {:>7.1} vs {:>7.1} ns = {:.2}x; engine {:>7.1} vs {:>7.1} ns = {:.2}x",
            frames.len(),
            c.engine_ns,
            c.baseline_ns,
            c.ratio[1],
            e.engine_ns,
            e.baseline_ns,
            e.ratio[1],
        );
    }
}

fn main() {
    let since = SystemTime::now();
    let base = Instant::now();
    let w = Workload::new(base);
    check_workload(&w);
    let chunk_len = serde_json::to_string(&chunk(&w.completion_ids[1], 7)).map_or(0, |s| s.len());
    let body_len = tools_list_body(1).len();
    println!(
        "workload: {FRAMES} frames/batch ({NOTIFIES} notifies, {RESPONSES} responses with a {body_len} B body, {JUNK} junk), {} B; chunk {chunk_len} B",
        w.bytes()
    );

    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .sample_size(40)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .nresamples(20_000)
        .configure_from_args();
    bench_dispatch(&mut c, &w);
    bench_send_chunk(&mut c, &w);
    c.final_summary();

    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    if flag("--list") || flag("--profile-time") {
        return;
    }
    memory_report(&w);
    // Under `cargo test --benches` criterion runs each routine once; do the
    // same here: a few rounds, to check that it works, not to measure.
    let rounds = if flag("--bench") && !flag("--test") {
        4000
    } else {
        3
    };
    ratio_report(&dir, since, &w, rounds);
}
