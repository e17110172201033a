//! Benchmarks of the client session's inbound dispatch and of the session
//! registry, next to `engine.rs`'s server-side ones; the measurement and
//! the report are `common::run`, as there.
//!
//! Run with `cargo bench -p wirestream-proto --bench client_registry`; the
//! ratios (each with its target, met or missed) and a summary of the
//! registry figures are printed at the end. BENCHMARKS.md records a run.
//!
//! - `client_dispatch/engine`: a batch of [`FRAMES`] inbound frames (mostly
//!   ~1 KiB agent-completion chunks, `ok`/`error` answers to notifies the
//!   session sent, a few server requests with a JSON body, 10% junk), each
//!   handed by value (an owned `String`, cloned untimed) to a fresh
//!   [`ClientSession`], draining every event and transmit after each frame,
//!   vs `serde_json::from_str::<IgnoredAny>` over the same frames, owned
//!   too. Target <= 1.2x.
//! - `registry/*`: one operation on a [`Registry<u64>`] holding 10,000
//!   connections that own 4 session ids each, in ns per op (no target;
//!   `std_hashmap_get` is a reference point: one std `HashMap` lookup with
//!   the same keys and hasher).

mod common;

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use serde_json::value::RawValue;
use wirestream_proto::classify;
use wirestream_proto::{
    ClientEvent, ClientSession, Config, ConnectionId, Engine, Headers, Outcome, Registered,
    Registry, SeededRandom, mint_id,
};

use common::{
    BODY_FRAME, Batch, Names, SEED, Spec, baseline_parse, chunk, completion_ids, criterion_dir,
    dispatch_figures, drain, error_frame, estimate, feed, ok_frame, over_frames, quartiles,
    selected, server_request_frame, shuffle, timed,
};

// ---------------------------------------------------------------------------
// Client dispatch: workload
// ---------------------------------------------------------------------------

/// Frames per dispatch batch.
const FRAMES: usize = 100;
/// Of which agent-completion chunks (~1 KiB each)...
const CHUNKS: usize = 72;
/// ... `{"type":"ok"}` answers to notifies the session sent ...
const OKS: usize = 8;
/// ... `{"type":"error"}` answers to notifies the session sent ...
const ERRORS: usize = 4;
/// ... server requests with a JSON body ...
const SERVER_REQUESTS: usize = 6;
/// ... and junk (10%).
const JUNK: usize = FRAMES - CHUNKS - OKS - ERRORS - SERVER_REQUESTS;
/// Notifies the session has in flight when the batch starts.
const NOTIFIES: usize = OKS + ERRORS;
/// Agent completions the chunks belong to (a root and agents).
const COMPLETIONS: usize = 4;

/// Frames a client must drop and count: not objects, not JSON, or an
/// envelope that is malformed (duplicated key, mistyped code, headers that
/// are not a map, an error frame whose code is not a number).
const JUNK_FRAMES: [&str; 10] = [
    "[1,2,3]",
    r#""just a string""#,
    "not json at all",
    "null",
    r#"{"type":"ok","id":"c1f0a2b4","id":"c1f0a2b5"}"#,
    r#"{"type":"error","id":"c1f0a2b4","code":"409"}"#,
    r#"{"id":"9b2e6c1e","method":"POST","headers":["content-type"]}"#,
    r#"{"code":"500","message":"upstream failed"}"#,
    r#"{"id":"agc-1","object":"agent.completion.chunk","messages":[{"index":0,"content":"trunc"#,
    "42",
];

/// An MCP `tools/call` forwarded by the server: a server request with a

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chunk,
    Response,
    ServerRequest,
    Junk,
}

struct ClientWorkload {
    base: Instant,
    body: Box<RawValue>,
    completion_ids: Vec<String>,
    notify_content: Box<RawValue>,
    /// What the application answers a server request with (`with_reply`).
    answer_headers: Headers<'static>,
    answer_body: Box<RawValue>,
    batch: Batch<Kind>,
}

impl ClientWorkload {
    fn new(base: Instant) -> Self {
        let mut rng = SeededRandom::new(SEED ^ 1);
        let mut w = Self {
            base,
            body: RawValue::from_string(BODY_FRAME.to_owned()).expect("valid JSON"),
            completion_ids: completion_ids(&mut rng, COMPLETIONS),
            notify_content: serde_json::value::to_raw_value(
                "Also check the tests in tests/parser.rs before you commit.",
            )
            .expect("a string serializes"),
            answer_headers: [("content-type", "application/json")].into_iter().collect(),
            answer_body: RawValue::from_string(
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"fn parse() {}"}]}}"#
                    .to_owned(),
            )
            .expect("valid JSON"),
            batch: Batch {
                frames: Vec::new(),
                kinds: Vec::new(),
            },
        };
        let (_, notify_ids) = w.session();
        let mut frames = Vec::with_capacity(FRAMES);
        for n in 0..CHUNKS {
            let c = chunk(&w.completion_ids[n % COMPLETIONS], n as u64);
            let text = serde_json::to_string(&c).expect("a chunk serializes");
            frames.push((Kind::Chunk, text));
        }
        for (n, id) in notify_ids.iter().enumerate() {
            let text = if n < OKS {
                ok_frame(id)
            } else {
                error_frame(id, &w.completion_ids[n % COMPLETIONS])
            };
            frames.push((Kind::Response, text));
        }
        for n in 0..SERVER_REQUESTS {
            let id = mint_id(&mut rng);
            frames.push((Kind::ServerRequest, server_request_frame(&id, n + 1)));
        }
        frames.extend(JUNK_FRAMES.iter().map(|s| (Kind::Junk, (*s).to_owned())));
        w.batch = Batch::shuffled(frames, &mut rng);
        w
    }

    /// A session that has sent its body and [`NOTIFIES`] notifies (one per
    /// completion in turn), drained. Deterministic: every call mints the
    /// same notify ids.
    fn session(&self) -> (ClientSession, Vec<String>) {
        let now = self.base;
        let mut s = ClientSession::new(
            Config::default(),
            now,
            self.body.clone(),
            SeededRandom::new(SEED),
        )
        .expect("the body fits");
        drain(&mut s);
        let ids = (0..NOTIFIES)
            .map(|n| {
                let response_id = &self.completion_ids[n % COMPLETIONS];
                let id = s
                    .notify(now, response_id, &self.notify_content, None, ())
                    .expect("room");
                drain(&mut s);
                id
            })
            .collect();
        (s, ids)
    }
}

/// Feeds `frames` to `s` by value; with `reply`, every server request is
/// also answered (status 200, a small JSON body) and the answer
/// transmitted. Returns (events, transmits).
fn dispatch(
    s: &mut ClientSession,
    w: &ClientWorkload,
    frames: Vec<String>,
    reply: bool,
) -> (usize, usize) {
    let now = w.base;
    feed(s, now, frames, |s, event| {
        if let (true, ClientEvent::ServerRequest(r)) = (reply, event) {
            s.respond(now, r.id(), 200, &w.answer_headers, Some(&w.answer_body))
                .expect("pending");
        }
    })
}

/// Only the engine's one-pass classification (no session): separates the
/// cost of parsing from the session's bookkeeping. Takes and drops the
/// frames as the baseline does. Returns the junk count.
fn classify_only(frames: Vec<String>) -> usize {
    let mut junk = 0;
    for f in frames {
        let frame = classify::client(black_box(&f));
        junk += usize::from(matches!(frame, classify::Client::Junk));
        black_box(frame);
    }
    junk
}

/// Checks once that the batch does what it says: every chunk delivered,
/// every answer routed to its notify, every server request delivered with
/// its body, every junk frame dropped, nothing refused or unknown.
fn check_workload(w: &ClientWorkload) {
    let frames = &w.batch.frames;
    let (mut s, notify_ids) = w.session();
    assert_eq!(s.notifies_in_flight(), NOTIFIES);
    let (mut chunks, mut oks, mut errors, mut requests) = (0, 0, 0, 0);
    let transmits = feed(&mut s, w.base, frames.clone(), |_, event| match event {
        ClientEvent::Chunk(text) if text.len() > 900 => chunks += 1,
        ClientEvent::NotifyEnded {
            id,
            outcome: Outcome::Answered(result),
            ..
        } => {
            assert!(notify_ids.contains(id));
            match result {
                Ok(()) => oks += 1,
                Err(e) if e.code == 409 => errors += 1,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        ClientEvent::ServerRequest(r)
            if r.method() == Some("POST")
                && r.headers().len() == 3
                && r.body().is_some_and(|b| b.len() > 100) =>
        {
            requests += 1;
        }
        other => panic!("unexpected event {other:?}"),
    })
    .1;
    assert_eq!(transmits, 0, "nothing is sent unasked");
    assert_eq!(
        (chunks, oks, errors, requests),
        (CHUNKS, OKS, ERRORS, SERVER_REQUESTS)
    );
    let stats = s.stats();
    assert_eq!(stats.chunks, CHUNKS as u64);
    assert_eq!(stats.junk_frames, JUNK as u64);
    assert_eq!((stats.refused_requests, stats.unknown_responses), (0, 0));
    assert_eq!(s.notifies_in_flight(), 0);
    assert_eq!(s.server_requests_pending(), SERVER_REQUESTS);

    let (mut s, _) = w.session();
    let (events, transmits) = dispatch(&mut s, w, frames.clone(), true);
    assert_eq!(
        (events, transmits),
        (CHUNKS + NOTIFIES + SERVER_REQUESTS, SERVER_REQUESTS)
    );
    assert_eq!(s.server_requests_pending(), 0);
    assert_eq!(
        baseline_parse(frames.clone()),
        FRAMES - 2,
        "two junk frames are not JSON"
    );
    assert_eq!(classify_only(frames.clone()), JUNK);
}

// ---------------------------------------------------------------------------
// Registry: fixture
// ---------------------------------------------------------------------------

const CONNECTIONS: usize = 10_000;
const IDS_PER_CONNECTION: usize = 4;
const IDS: usize = CONNECTIONS * IDS_PER_CONNECTION;
/// Ops per timed block of the operations that need undoing (untimed) after
/// the block, to keep the registry at its size.
const BLOCK: u64 = 100;

/// A registry of [`CONNECTIONS`] connections (value: their index) owning
/// [`IDS_PER_CONNECTION`] minted ids each.
struct Fixture {
    reg: Registry<u64>,
    /// Live connections; `conns[g]` owns `ids[g * 4..g * 4 + 4]`.
    conns: Vec<ConnectionId>,
    ids: Vec<String>,
    rng: SeededRandom,
}

impl Fixture {
    fn new() -> Self {
        let mut reg = Registry::default();
        let mut rng = SeededRandom::new(SEED ^ 3);
        let mut conns = Vec::with_capacity(CONNECTIONS);
        let mut ids = Vec::with_capacity(IDS);
        for g in 0..CONNECTIONS {
            let conn = reg.attach(g as u64).expect("room");
            for _ in 0..IDS_PER_CONNECTION {
                ids.push(reg.mint(conn, &mut rng).expect("room"));
            }
            conns.push(conn);
        }
        Self {
            reg,
            conns,
            ids,
            rng,
        }
    }

    /// The ids in a fixed shuffled order (lookups and takeovers visit the
    /// connections in no particular order).
    fn shuffled_ids(&self) -> Vec<String> {
        let mut ids = self.ids.clone();
        shuffle(&mut ids, &mut SeededRandom::new(SEED ^ 4));
        ids
    }

    fn assert_intact(&self) {
        assert_eq!((self.reg.connections(), self.reg.len()), (CONNECTIONS, IDS));
    }
}

/// Runs `iters` ops (`op(ctx)`) in timed blocks of up to [`BLOCK`], each
/// followed by `undo(ctx)` untimed (putting the registry back at its size).
/// Returns the timed sum, and pushes each block's time to `samples`.
fn blocks<C>(
    ctx: &mut C,
    iters: u64,
    mut op: impl FnMut(&mut C),
    mut undo: impl FnMut(&mut C),
    mut samples: Option<&mut Vec<f64>>,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let end = iters.min(done + BLOCK);
        let t = timed(|| {
            for _ in done..end {
                op(ctx);
            }
        });
        if let Some(samples) = samples.as_deref_mut() {
            samples.push(t.as_nanos() as f64 / (end - done) as f64);
        }
        total += t;
        undo(ctx);
        done = end;
    }
    total
}

/// One registry benchmark on its own fixture (`ctx`): criterion's
/// `iter_custom` over [`blocks`], then, when the command line selects it,
/// `rounds` more blocks timed one by one. Returns `ctx` (for its checks) and
/// the quartiles of those blocks' ns per op. A block lasts 5-150 us, so the
/// median leaves out the blocks a shared machine preempted, which a
/// criterion sample (tens of ms) cannot.
fn registry_bench<C>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rounds: usize,
    mut ctx: C,
    mut op: impl FnMut(&mut C),
    mut undo: impl FnMut(&mut C),
) -> (C, Option<[f64; 3]>) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| blocks(&mut ctx, iters, &mut op, &mut undo, None));
    });
    let mut spread = None;
    if selected(&format!("registry/{name}")) {
        let warm_up = (rounds / 10) as u64 * BLOCK;
        blocks(&mut ctx, warm_up, &mut op, &mut undo, None);
        let mut samples = Vec::with_capacity(rounds);
        blocks(
            &mut ctx,
            rounds as u64 * BLOCK,
            &mut op,
            &mut undo,
            Some(&mut samples),
        );
        spread = Some(quartiles(samples));
    }
    (ctx, spread)
}

/// Checks once that every benchmarked operation does what its name says on
/// the fixture, and leaves it as it found it.
fn check_registry() {
    let mut f = Fixture::new();
    f.assert_intact();
    for (n, id) in f.ids.iter().enumerate() {
        let (conn, value) = f.reg.lookup(id).expect("registered");
        assert_eq!((conn, *value), (f.conns[n / 4], (n / 4) as u64));
        assert_eq!(id.len(), 32);
    }
    let (a, b) = (f.conns[0], f.conns[1]);
    let fresh = format!("{:032x}", 7);
    assert_eq!(f.reg.register(a, &fresh), Ok(Registered::New));
    assert_eq!(f.reg.register(b, &fresh), Ok(Registered::TookOver(a)));
    assert!(f.reg.unregister(b, &fresh));
    let minted = f.reg.mint(a, &mut f.rng).expect("room");
    assert_eq!(f.reg.lookup(&minted).map(|(c, _)| c), Some(a));
    assert!(f.reg.unregister(a, &minted));
    let c = f.reg.attach(u64::MAX).expect("room");
    assert_eq!(f.reg.detach(c), Some(u64::MAX));
    f.assert_intact();
    assert_eq!(f.reg.detach(a), Some(0));
    assert!(f.ids[..4].iter().all(|id| f.reg.lookup(id).is_none()));
    assert_eq!(f.reg.len(), IDS - 4);
}

// ---------------------------------------------------------------------------
// Registry: benchmarks
// ---------------------------------------------------------------------------

/// The `undo` of an operation that keeps the registry's size.
fn nothing<C>(_: &mut C) {}

/// What each registry benchmark times, in report order.
const REGISTRY_BENCHES: [(&str, &str); 7] = [
    ("lookup", "lookup of a registered id (hit)"),
    ("attach", "attach a connection"),
    ("register_new", "register a new id on a connection"),
    (
        "register_takeover",
        "register an id another connection owns",
    ),
    ("mint", "mint (SeededRandom) and register a new id"),
    ("detach", "detach a connection owning 4 ids"),
    (
        "std_hashmap_get",
        "reference: std HashMap<Box<str>, u64>::get, same keys",
    ),
];

/// Runs the registry's benchmarks; returns the quartiles of the blocks (ns
/// per op) of those the command line selects, by name.
fn bench_registry(c: &mut Criterion, rounds: usize) -> Vec<(&'static str, [f64; 3])> {
    let mut g = c.benchmark_group("registry");
    g.throughput(Throughput::Elements(1));
    // The ops that need undoing spend up to ~5x their timed time untimed.
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let mut figures = Vec::new();
    let mut record = |name, q: Option<[f64; 3]>| figures.extend(q.map(|q| (name, q)));

    // (fixture, lookup keys in a shuffled order, cursor)
    let f = Fixture::new();
    let keys = f.shuffled_ids();
    let ((f, ..), m) = registry_bench(
        &mut g,
        "lookup",
        rounds,
        (f, keys, 0),
        |(f, keys, i)| {
            *i = (*i + 1) % IDS;
            black_box(f.reg.lookup(black_box(&keys[*i])).map(|(c, v)| (c, *v)));
        },
        nothing,
    );
    f.assert_intact();
    record("lookup", m);

    // (reference map, the same keys in the same order, cursor)
    let (map, keys) = reference_map();
    let (_, m) = registry_bench(
        &mut g,
        "std_hashmap_get",
        rounds,
        (map, keys, 0),
        |(map, keys, i)| {
            *i = (*i + 1) % IDS;
            black_box(map.get(black_box(keys[*i].as_str())).copied());
        },
        nothing,
    );
    record("std_hashmap_get", m);

    // (fixture, connections attached in the block)
    let ((f, _), m) = registry_bench(
        &mut g,
        "attach",
        rounds,
        (Fixture::new(), Vec::with_capacity(BLOCK as usize)),
        |(f, attached)| {
            let conn = f.reg.attach(black_box(7)).expect("room");
            attached.push(conn);
        },
        |(f, attached)| {
            for conn in attached.drain(..) {
                f.reg.detach(conn);
            }
        },
    );
    f.assert_intact();
    record("attach", m);

    // (fixture, (connection, index in `fresh`) registered in the block,
    // next connection). Each op registers a new id on another connection.
    let fresh: Vec<String> = (0..BLOCK).map(|n| format!("{:032x}", n + 1)).collect();
    let ((f, ..), m) = registry_bench(
        &mut g,
        "register_new",
        rounds,
        (Fixture::new(), Vec::with_capacity(BLOCK as usize), 0),
        |(f, used, next)| {
            let conn = f.conns[*next];
            *next = (*next + 7919) % CONNECTIONS;
            let n = used.len();
            let r = f.reg.register(conn, black_box(&fresh[n]));
            debug_assert_eq!(r, Ok(Registered::New));
            black_box(r).ok();
            used.push((conn, n));
        },
        |(f, used, _)| {
            for (conn, n) in used.drain(..) {
                f.reg.unregister(conn, &fresh[n]);
            }
        },
    );
    f.assert_intact();
    record("register_new", m);

    // (fixture, order of the ids, ops done). Pass p (1, 2, ...) moves every
    // id from connection g + p - 1 to g + p (mod CONNECTIONS), in a shuffled
    // order: every call is a takeover, and each connection owns 4 ids again
    // after each pass. Nothing to undo.
    let mut order: Vec<usize> = (0..IDS).collect();
    shuffle(&mut order, &mut SeededRandom::new(SEED ^ 5));
    let ((f, ..), m) = registry_bench(
        &mut g,
        "register_takeover",
        rounds,
        (Fixture::new(), order, 0usize),
        |(f, order, i)| {
            let k = order[*i % IDS];
            let pass = *i / IDS + 1;
            *i += 1;
            let conn = f.conns[(k / IDS_PER_CONNECTION + pass) % CONNECTIONS];
            let r = f.reg.register(conn, black_box(&f.ids[k]));
            debug_assert!(matches!(r, Ok(Registered::TookOver(_))));
            black_box(r).ok();
        },
        nothing,
    );
    f.assert_intact();
    record("register_takeover", m);

    // (fixture, (connection, id) minted in the block, next connection)
    let ((f, ..), m) = registry_bench(
        &mut g,
        "mint",
        rounds,
        (Fixture::new(), Vec::with_capacity(BLOCK as usize), 0),
        |(f, minted, next)| {
            let conn = f.conns[*next];
            *next = (*next + 7919) % CONNECTIONS;
            let id = f.reg.mint(conn, &mut f.rng).expect("room");
            minted.push((conn, black_box(id)));
        },
        |(f, minted, _)| {
            for (conn, id) in minted.drain(..) {
                f.reg.unregister(conn, &id);
            }
        },
    );
    f.assert_intact();
    record("mint", m);

    // (fixture, live connections oldest first with the index of their ids,
    // id groups detached in the block). A connection re-attached after the
    // block registers the ids of the one it replaces.
    let f = Fixture::new();
    let live: VecDeque<(ConnectionId, usize)> = f.conns.iter().copied().zip(0..).collect();
    let ((f, ..), m) = registry_bench(
        &mut g,
        "detach",
        rounds,
        (f, live, Vec::with_capacity(BLOCK as usize)),
        |(f, live, gone)| {
            let (conn, group) = live.pop_front().expect("live connections");
            black_box(f.reg.detach(conn));
            gone.push(group);
        },
        |(f, live, gone)| {
            for group in gone.drain(..) {
                let conn = f.reg.attach(group as u64).expect("room");
                let ids = &f.ids[group * IDS_PER_CONNECTION..][..IDS_PER_CONNECTION];
                for id in ids {
                    f.reg.register(conn, id).expect("room");
                }
                live.push_back((conn, group));
            }
        },
    );
    f.assert_intact();
    record("detach", m);

    g.finish();
    figures
}

/// The reference map: the fixture's ids, std's `HashMap` with std's
/// SipHash (`RandomState`, as the registry), and the lookup keys in the
/// same shuffled order as `registry/lookup`.
fn reference_map() -> (HashMap<Box<str>, u64>, Vec<String>) {
    let f = Fixture::new();
    let map = f
        .ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.as_str().into(), (n / IDS_PER_CONNECTION) as u64))
        .collect();
    (map, f.shuffled_ids())
}

// ---------------------------------------------------------------------------
// The paired figures
// ---------------------------------------------------------------------------

/// `frames` through a fresh session (built untimed), as a driver hands
/// them over.
fn dispatch_spec<'a>(
    w: &'a ClientWorkload,
    names: Names,
    frames: Vec<String>,
    reply: bool,
) -> Spec<'a> {
    over_frames(
        names,
        frames,
        || w.session().0,
        move |s, frames| {
            dispatch(s, w, frames, reply);
        },
    )
}

/// `Registry::lookup` vs the reference map's `get`, over the same blocks of
/// keys (paired; criterion measures both in `bench_registry`).
fn lookup_spec<'a>(
    f: &'a Fixture,
    map: &'a HashMap<Box<str>, u64>,
    keys: &'a [String],
) -> Spec<'a> {
    let block = BLOCK as usize;
    let mut at = 0;
    Spec::new(
        ("registry", "lookup", "std_hashmap_get"),
        block,
        move || {
            let keys = &keys[at..][..block];
            at = (at + block) % (IDS - block);
            (keys, keys)
        },
        |keys: &[String]| {
            for k in keys {
                black_box(f.reg.lookup(black_box(k)).map(|(c, v)| (c, *v)));
            }
        },
        |keys: &[String]| {
            for k in keys {
                black_box(map.get(black_box(k.as_str())).copied());
            }
        },
    )
    .paired_only()
}

fn client_specs(w: &ClientWorkload) -> Vec<Spec<'_>> {
    let kinds = [
        (Kind::Chunk, "engine_chunk", "classify_chunk"),
        (
            Kind::Response,
            "engine_notify_answer",
            "classify_notify_answer",
        ),
        (
            Kind::ServerRequest,
            "engine_server_request",
            "classify_server_request",
        ),
        (Kind::Junk, "engine_junk", "classify_junk"),
    ];
    dispatch_figures(
        &w.batch,
        ("client_dispatch", "classify_client"),
        &kinds,
        |names, frames, reply| dispatch_spec(w, names, frames, reply),
        classify_only,
    )
}

// ---------------------------------------------------------------------------
// Registry report
// ---------------------------------------------------------------------------

fn registry_report(since: SystemTime, figures: &[(&str, [f64; 3])], rounds: usize) {
    let dir = criterion_dir();
    if !REGISTRY_BENCHES
        .iter()
        .any(|(bench, _)| selected(&format!("registry/{bench}")))
    {
        return;
    }
    println!();
    println!("registry of {CONNECTIONS} connections x {IDS_PER_CONNECTION} ids: ns per op");
    println!(
        "  blocks = median [quartiles] of {rounds} blocks of {BLOCK} ops timed one by one; criterion = its median estimate above"
    );
    for (bench, what) in REGISTRY_BENCHES {
        let q = figures.iter().find(|(b, _)| *b == bench).map(|&(_, q)| q);
        let criterion = estimate(&dir, "registry", bench, since);
        if q.is_none() && criterion.is_none() {
            continue;
        }
        let q = q.map_or("-".to_owned(), |[q1, m, q3]| {
            format!("{m:>7.1} ns [{q1:.0}..{q3:.0}]")
        });
        let criterion = criterion.map_or("-".to_owned(), |v| format!("{v:.1} ns"));
        println!("  registry/{bench:<18} blocks {q:>22}  criterion {criterion:>10}  {what}");
    }
}

fn main() {
    let w = ClientWorkload::new(Instant::now());
    check_workload(&w);
    check_registry();
    println!(
        "client workload: {FRAMES} frames/batch ({CHUNKS} chunks of ~{} B, {OKS} ok + {ERRORS} error answers, {SERVER_REQUESTS} server requests of ~{} B, {JUNK} junk), {} B",
        w.batch.describe(Kind::Chunk).1,
        w.batch.describe(Kind::ServerRequest).1,
        w.batch.bytes()
    );
    println!("registry: {CONNECTIONS} connections x {IDS_PER_CONNECTION} minted ids ({IDS} ids)");

    let mut c = common::criterion();
    let rounds = common::rounds();
    let since = SystemTime::now();
    let figures = bench_registry(&mut c, rounds);
    let f = Fixture::new();
    let (map, keys) = reference_map();
    let mut specs = client_specs(&w);
    specs.push(lookup_spec(&f, &map, &keys));
    common::run(&mut c, &mut specs);
    c.final_summary();
    if rounds > 0 {
        registry_report(since, &figures, rounds);
    }
}
