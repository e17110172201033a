//! Benchmarks of the server session, each reported as a ratio against a
//! bare `serde_json` baseline measured in the same run (DESIGN.md
//! "Performance"), plus the memory an idle streaming session holds.
//!
//! Run with `cargo bench -p wirestream-proto --bench engine`; the ratios
//! (each with its target, met or missed) and the memory figures are printed
//! at the end. BENCHMARKS.md records a run. The measurement itself (paired
//! rounds, criterion, the report) is `common::run`; this file is the
//! workload and its list of [`Spec`]s:
//!
//! - `dispatch/engine`: a batch of [`FRAMES`] inbound frames (notifies,
//!   server responses with a ~2 KiB body, 10% junk), each handed to a fresh
//!   streaming session by value as a driver does (an owned `String`, cloned
//!   untimed before the block), draining every event and transmit after each
//!   frame, vs `serde_json::from_str::<IgnoredAny>` over the same frames,
//!   also owned, cloned untimed and dropped after their parse. Target <= 1.2x.
//! - `send_chunk/engine`: `send_chunk_value` of a ~1 KiB agent-completion
//!   chunk plus `poll_transmit`, vs `serde_json::to_string` of the same
//!   chunk. Target <= 1.2x.
//! - memory: live heap bytes a drained, idle streaming session holds
//!   (counted by the global allocator below) plus `size_of::<ServerSession>()`,
//!   also after a burst once drained. Target <= 2 KiB each.

// Only the counting allocator below needs `unsafe` (implementing
// `GlobalAlloc` is an unsafe trait); nothing else in this file uses it.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Instant;

use serde_json::value::RawValue;
use wirestream_proto::classify;
use wirestream_proto::{
    Config, Engine, Headers, Inbound, Outcome, SeededRandom, ServerEvent, ServerSession,
};

use common::{
    AgentCompletionChunk, BODY_FRAME, Batch, Names, SEED, Spec, baseline_parse, chunk,
    completion_ids, dispatch_figures, drain, feed, notify_frame, over_frames, response_frame,
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

/// Frames per dispatch batch.
const FRAMES: usize = 100;
/// Of which client requests (`agent_completion_notify`)...
const NOTIFIES: usize = 45;
/// ... server responses (each to a server request the session sent) ...
const RESPONSES: usize = 45;
/// ... and junk (10%).
const JUNK: usize = FRAMES - NOTIFIES - RESPONSES;
/// Agent completions whose ids the session has emitted (a root and agents).
const COMPLETIONS: usize = 4;
/// Chunks per timed block of `send_chunk` (one is ~1-2 us: too short to
/// time alone).
const CHUNK_BLOCK: usize = 64;

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Notify,
    Response,
    Junk,
}

struct Workload {
    base: Instant,
    completion_ids: Vec<String>,
    setup_chunk: AgentCompletionChunk,
    request_headers: Headers<'static>,
    request_body: Box<RawValue>,
    batch: Batch<Kind>,
}

impl Workload {
    fn new(base: Instant) -> Self {
        let mut rng = SeededRandom::new(SEED ^ 1);
        let completion_ids = completion_ids(&mut rng, COMPLETIONS);
        let mut w = Self {
            base,
            setup_chunk: chunk(&completion_ids[0], 0),
            completion_ids,
            request_headers: [("content-type", "application/json")].into_iter().collect(),
            request_body: RawValue::from_string(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
            )
            .expect("valid JSON"),
            batch: Batch {
                frames: Vec::new(),
                kinds: Vec::new(),
            },
        };
        let (_, server_request_ids) = w.session();
        let mut frames = Vec::with_capacity(FRAMES);
        for n in 0..NOTIFIES {
            let id = wirestream_proto::mint_id(&mut rng);
            let response_id = &w.completion_ids[n % COMPLETIONS];
            frames.push((Kind::Notify, notify_frame(&id, response_id, n)));
        }
        for (n, id) in server_request_ids.iter().enumerate() {
            frames.push((Kind::Response, response_frame(id, &tools_list_body(n + 1))));
        }
        frames.extend(JUNK_FRAMES.iter().map(|s| (Kind::Junk, (*s).to_owned())));
        w.batch = Batch::shuffled(frames, &mut rng);
        w
    }

    /// A session in the streaming phase that has emitted every completion id
    /// and sent [`RESPONSES`] server requests, drained. Deterministic: every
    /// call mints the same server request ids.
    fn session(&self) -> (ServerSession, Vec<String>) {
        let now = self.base;
        let mut s = ServerSession::new(Config::default(), now, SeededRandom::new(SEED));
        s.handle_frame(now, Inbound::Text(BODY_FRAME.to_owned()));
        drain(&mut s);
        for id in &self.completion_ids {
            s.send_chunk_value(now, &self.setup_chunk, [id])
                .expect("room");
            drain(&mut s);
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
                        (),
                    )
                    .expect("room");
                drain(&mut s);
                id
            })
            .collect();
        (s, ids)
    }
}

/// Feeds `frames` to `s` by value; with `reply`, every client request is
/// answered `ok` (and the reply transmitted). Returns (events, transmits).
fn dispatch(
    s: &mut ServerSession,
    now: Instant,
    frames: Vec<String>,
    reply: bool,
) -> (usize, usize) {
    feed(s, now, frames, |s, event| {
        if let (true, ServerEvent::Request(r)) = (reply, event) {
            s.respond(now, r.id(), Ok(())).expect("in flight");
        }
    })
}

/// Only the engine's one-pass classification of each frame (no session):
/// separates the cost of parsing from the session's bookkeeping. Takes and
/// drops the frames as the baseline does. Returns the junk count.
fn classify_only(frames: Vec<String>) -> usize {
    let mut junk = 0;
    for f in frames {
        let frame = classify::server(black_box(&f));
        junk += usize::from(matches!(frame, classify::Server::Junk));
        black_box(frame);
    }
    junk
}

/// Checks once that the batch does what it says: every notify accepted,
/// every response routed, every junk frame dropped, nothing refused.
fn check_workload(w: &Workload) {
    let frames = &w.batch.frames;
    let (mut s, _) = w.session();
    let (mut requests, mut answered) = (0, 0);
    let transmits = feed(&mut s, w.base, frames.clone(), |_, event| match event {
        ServerEvent::Request(_) => requests += 1,
        ServerEvent::ServerRequestEnded {
            outcome: Outcome::Answered(r),
            ..
        } if r.body().is_some_and(|b| b.len() > 1800) => answered += 1,
        other => panic!("unexpected event {other:?}"),
    })
    .1;
    assert_eq!(transmits, 0, "nothing is sent without a reply");
    let stats = s.stats();
    assert_eq!((requests, answered), (NOTIFIES, RESPONSES));
    assert_eq!(stats.junk_frames, JUNK as u64);
    assert_eq!((stats.refused_requests, stats.unknown_responses), (0, 0));

    let (mut s, _) = w.session();
    let (events, transmits) = dispatch(&mut s, w.base, frames.clone(), true);
    assert_eq!((events, transmits), (NOTIFIES + RESPONSES, NOTIFIES));
    assert_eq!(s.client_requests_in_flight(), 0);
    assert_eq!(
        baseline_parse(frames.clone()),
        FRAMES - 2,
        "two junk frames are not JSON"
    );
    assert_eq!(classify_only(frames.clone()), JUNK);
}

// ---------------------------------------------------------------------------
// The figures
// ---------------------------------------------------------------------------

/// `frames` through a fresh session (built untimed), as a driver hands
/// them over.
fn dispatch_spec<'a>(w: &'a Workload, names: Names, frames: Vec<String>, reply: bool) -> Spec<'a> {
    over_frames(
        names,
        frames,
        || w.session().0,
        move |s, frames| {
            dispatch(s, w.base, frames, reply);
        },
    )
}

fn specs(w: &Workload) -> Vec<Spec<'_>> {
    let id = &w.completion_ids[1];
    let value = chunk(id, 7);
    let baseline_value = value.clone();
    let mut chunk_session = w.session().0;
    let send_chunk = Spec::new(
        ("send_chunk", "engine", "serde_json_to_string"),
        CHUNK_BLOCK,
        || ((), ()),
        move |()| {
            for _ in 0..CHUNK_BLOCK {
                chunk_session
                    .send_chunk_value(w.base, black_box(&value), [id])
                    .expect("room");
                black_box(chunk_session.poll_transmit().expect("the chunk"));
            }
        },
        move |()| {
            for _ in 0..CHUNK_BLOCK {
                black_box(serde_json::to_string(black_box(&baseline_value)).expect("serializes"));
            }
        },
    )
    .target(1.2);
    let kinds = [
        (Kind::Notify, "engine_notify", "classify_notify"),
        (Kind::Response, "engine_response", "classify_response"),
        (Kind::Junk, "engine_junk", "classify_junk"),
    ];
    let mut specs = dispatch_figures(
        &w.batch,
        ("dispatch", "classify_server"),
        &kinds,
        |names, frames, reply| dispatch_spec(w, names, frames, reply),
        classify_only,
    );
    specs.insert(3, send_chunk);
    specs
}

// ---------------------------------------------------------------------------
// Memory of an idle session
// ---------------------------------------------------------------------------

/// The memory target, for an idle session and for one drained after a
/// burst.
const MEMORY_TARGET: isize = 2048;

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

fn memory_report(w: &Workload) {
    let now = w.base;
    let ids = &w.completion_ids;
    let chunks: Vec<AgentCompletionChunk> = (0..8).map(|n| chunk(&ids[n % 3], n as u64)).collect();
    let many_ids = completion_ids(
        &mut SeededRandom::new(SEED ^ 2),
        Config::default().max_emitted_ids,
    );
    let notify = notify_frame("9b2e6c1e-0000-4000-8000-000000000001", &ids[0], 0);
    let body = tools_list_body(1);
    let new_streaming = || {
        let mut s = ServerSession::new(Config::default(), now, SeededRandom::new(SEED));
        s.handle_frame(now, Inbound::Text(BODY_FRAME.to_owned()));
        drain(&mut s);
        s
    };
    let streamed = || {
        let mut s = new_streaming();
        for (n, c) in chunks.iter().enumerate() {
            s.send_chunk_value(now, c, [&ids[n % 3]]).expect("room");
            drain(&mut s);
        }
        s
    };
    // Warm up anything lazily initialized on first use (thread-local hash
    // keys), so that it is not counted against the first scenario.
    drop(streamed());

    let idle = footprint(streamed);
    let after_requests = footprint(|| {
        let mut s = streamed();
        feed(&mut s, now, [notify.clone()], |s, event| {
            if let ServerEvent::Request(r) = event {
                s.respond(now, r.id(), Ok(())).expect("in flight");
            }
        });
        let id = s
            .send_server_request(now, "POST", &w.request_headers, None, None, ())
            .expect("room");
        drain(&mut s);
        feed(&mut s, now, [response_frame(&id, &body)], |_, _| {});
        s
    });
    let burst = footprint(|| {
        let mut s = new_streaming();
        let cap = s.config().max_queued_frames;
        for n in 0..cap {
            s.send_chunk_value(now, &chunks[n % chunks.len()], [&ids[n % 3]])
                .expect("room");
        }
        drain(&mut s);
        s
    });
    let at_id_cap = footprint(|| {
        let mut s = new_streaming();
        for id in &many_ids {
            s.send_chunk_value(now, &chunks[0], [id]).expect("room");
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
        ("idle: body + 8 chunks carrying 3 ids", &idle, true),
        (
            "idle + 1 notify and 1 server request, answered",
            &after_requests,
            false,
        ),
        ("idle after a burst of 64 queued chunks", &burst, true),
        ("idle after 1024 distinct ids (the cap)", &at_id_cap, false),
    ];
    for (name, f, targeted) in rows {
        let total = size + f.heap_bytes;
        let verdict = match targeted {
            false => "informational".to_owned(),
            true if total <= MEMORY_TARGET => format!("target <= {MEMORY_TARGET} B: met"),
            true => format!("target <= {MEMORY_TARGET} B: MISSED"),
        };
        println!(
            "  {name:<48} heap {:>6} B [{:>6}] in {:>4} blocks; inline + heap = {total:>6} B [{:>6}]  {verdict}",
            f.heap_bytes,
            f.malloc_bytes,
            f.heap_blocks,
            size + f.malloc_bytes,
        );
    }
}

fn main() {
    let w = Workload::new(Instant::now());
    check_workload(&w);
    let chunk_len = serde_json::to_string(&chunk(&w.completion_ids[1], 7)).map_or(0, |s| s.len());
    println!(
        "workload: {FRAMES} frames/batch ({NOTIFIES} notifies of ~{} B, {RESPONSES} responses of ~{} B, {JUNK} junk), {} B; chunk {chunk_len} B",
        w.batch.describe(Kind::Notify).1,
        w.batch.describe(Kind::Response).1,
        w.batch.bytes()
    );
    let mut c = common::criterion();
    common::run(&mut c, &mut specs(&w));
    c.final_summary();
    if common::rounds() > 0 {
        memory_report(&w);
    }
}
