//! The vocabulary shared by every executor: how ids are picked, how time
//! moves, which junk is sent, and the small limits a run uses.

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use wirestream_proto::Config;

use crate::io::Frame;

/// Picks an id: one the side knows (live or already ended), one of a few
/// strangers (empty, escaped, non-ASCII, long), or a fresh one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub struct Pick(pub u8);

/// Ids no engine minted.
pub(crate) const STRANGERS: &[&str] = &[
    "",
    "unknown",
    "agc-x",
    "\"quoted\"",
    "back\\slash",
    "nul\u{0}ctl\u{1b}",
    "é✓🦀",
    "a-much-longer-id-that-nobody-ever-minted-0123456789abcdef",
];

/// The ids one side has seen, in the order first seen.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    known: Vec<String>,
    fresh: u64,
}

impl Ids {
    /// The id `p` names; a fresh id is remembered.
    pub(crate) fn pick(&mut self, p: Pick, prefix: &str) -> String {
        let n = usize::from(p.0) % (self.known.len() + STRANGERS.len() + 1);
        if let Some(id) = self.known.get(n) {
            return id.clone();
        }
        if let Some(id) = STRANGERS.get(n - self.known.len()) {
            return (*id).to_owned();
        }
        self.fresh += 1;
        let id = format!("{prefix}-{}", self.fresh);
        self.learn(&id);
        id
    }

    /// Remembers an id (minted by the engine, or sent by the peer).
    pub(crate) fn learn(&mut self, id: &str) {
        if !self.known.iter().any(|k| k == id) {
            self.known.push(id.to_owned());
        }
    }
}

/// How far the fake clock moves; it never goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum Advance {
    /// A small step.
    Millis(u16),
    /// A large step.
    Secs(u8),
    /// Exactly to the deadline `poll_timeout` names.
    ToDeadline,
    /// One nanosecond before that deadline.
    BeforeDeadline,
    /// Not at all: a repeated (or early) timeout.
    Stay,
}

impl Advance {
    /// The new time, from `now` and the session's next deadline.
    pub(crate) fn apply(self, now: Instant, deadline: Option<Instant>) -> Instant {
        let later = match self {
            Self::Millis(ms) => now.checked_add(Duration::from_millis(ms.into())),
            Self::Secs(s) => now.checked_add(Duration::from_secs(s.into())),
            Self::ToDeadline => deadline,
            Self::BeforeDeadline => deadline.and_then(|d| d.checked_sub(Duration::from_nanos(1))),
            Self::Stay => None,
        };
        later.map_or(now, |t| t.max(now))
    }
}

/// The deadline a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum Timeout {
    /// `None`: the config's default.
    Default,
    /// This many milliseconds (zero included).
    Millis(u16),
    /// `Duration::MAX`: past the end of time, so never.
    Never,
}

impl Timeout {
    pub(crate) fn duration(self) -> Option<Duration> {
        match self {
            Self::Default => None,
            Self::Millis(ms) => Some(Duration::from_millis(ms.into())),
            Self::Never => Some(Duration::MAX),
        }
    }
}

/// A frame that is not an envelope: control frames, size edges, the close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum Control {
    /// A binary frame.
    Binary,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A message the WebSocket layer refused as too large.
    Oversize,
    /// A text frame of exactly the size limit.
    AtLimit,
    /// A text frame one byte over the size limit.
    OverLimit,
    /// The peer's close frame.
    Close(Option<u16>),
}

impl Control {
    /// The text of the size-edge frames, for a limit of `max` bytes.
    pub(crate) fn text(self, max: usize) -> Option<String> {
        match self {
            Self::AtLimit => Some(padded(max)),
            Self::OverLimit => Some(padded(max + 1)),
            _ => None,
        }
    }

    /// The frame, given the text from [`Control::text`].
    pub(crate) fn frame(self, text: Option<String>) -> Frame {
        match (self, text) {
            (_, Some(t)) => Frame::Text(t),
            (Self::Binary, None) => Frame::Binary,
            (Self::Ping, None) => Frame::Ping,
            (Self::Pong | Self::AtLimit | Self::OverLimit, None) => Frame::Pong,
            (Self::Oversize, None) => Frame::Oversize,
            (Self::Close(c), None) => Frame::Close(c),
        }
    }
}

/// A text frame matching no rule, or malformed in one precise way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub struct Junk {
    /// Which junk.
    pub kind: u8,
    /// A size for the kinds that have one (nesting depth).
    pub n: u8,
}

impl Junk {
    /// The frame's text.
    pub fn text(self) -> String {
        let depth = usize::from(self.n) * 2;
        match self.kind % 25 {
            0 => r#"{"id":"x","status":"#.to_owned(),
            1 => "[1,2,3]".to_owned(),
            2 => "-12.5e3".to_owned(),
            3 => "null".to_owned(),
            4 => r#""a string""#.to_owned(),
            5 => format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            6 => format!(
                r#"{}"id":"deep","status":200{}"#,
                r#"{"a":"#.repeat(depth) + "{",
                "}".repeat(depth + 1)
            ),
            7 => r#"{"id":"x","status":1e999}"#.to_owned(),
            8 => r#"{"id":"x","status":123456789012345678901234567890}"#.to_owned(),
            9 => r#"{"id":"a","id":"b","status":200}"#.to_owned(),
            10 => {
                r#"{"id":7,"type":"agent_completion_notify","response_id":"agc-0","content":"x"}"#
                    .to_owned()
            }
            11 => r#"{"id":"x","status":70000}"#.to_owned(),
            12 => r#"{"id":"x","status":200,"headers":{"a":1}}"#.to_owned(),
            13 => r#"{"id":"\ud800","status":200}"#.to_owned(),
            14 => "{}".to_owned(),
            15 => "\u{feff}{\"id\":\"x\",\"status\":200}".to_owned(),
            16 => r#"{"id":"x","status":-200}"#.to_owned(),
            17 => r#"{"code":"500","message":"x"}"#.to_owned(),
            18 => r#"{"type":"ok"}"#.to_owned(),
            19 => r#"{"type":"error","id":"x","code":1}"#.to_owned(),
            20 => r#"{"id":"x","status":200} trailing"#.to_owned(),
            21 => r#"{"id":"x","method":5,"type":["ok"]}"#.to_owned(),
            22 => r#"{"id":"x","status":200.0,"headers":[]}"#.to_owned(),
            23 => r#"{"type":"error","id":"x","code":404,"message":{"detail":[1]}}"#.to_owned(),
            _ => " \t\n ".to_owned(),
        }
    }
}

/// Small limits, so that a short run reaches every one of them. Each field
/// is mapped onto a small range (zero included where a zero is legal).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Arbitrary)]
pub struct Limits {
    /// Outbound frames queued: 0..=7 (0 is raised to 1).
    pub frames: u8,
    /// Outbound bytes queued: 64..=4144.
    pub bytes: u8,
    /// Client requests in flight: 0..=4.
    pub client_requests: u8,
    /// Server requests pending: 0..=4.
    pub server_requests: u8,
    /// Emitted ids remembered: 0..=4.
    pub emitted: u8,
    /// Largest frame, both ways: 160..=4240 bytes.
    pub frame_size: u8,
    /// Body timeout, in steps of 50 ms.
    pub body: u8,
    /// Request timeout, in steps of 50 ms.
    pub request: u8,
    /// Drain timeout, in steps of 50 ms.
    pub drain: u8,
    /// Close timeout, in steps of 50 ms.
    pub close: u8,
    /// Keepalive interval: `None` when `ping % 4 == 0`, else
    /// `(ping / 4) * 100` ms (0..=6.3 s, zero raised to 1 ns).
    pub ping: u8,
    /// Liveness timeout: `None` when `liveness % 4 == 0`, else
    /// `(liveness / 4) * 150` ms (0..=9.45 s).
    pub liveness: u8,
    /// Write-stall timeout: `None` when `stall % 4 == 0`, else
    /// `(stall / 4) * 100` ms (0..=6.3 s).
    pub stall: u8,
}

impl Limits {
    /// The session config these limits describe.
    pub fn config(self) -> Config {
        let ms = |n: u8| Duration::from_millis(u64::from(n) * 50);
        let sometimes =
            |n: u8, step: u64| (n % 4 != 0).then(|| Duration::from_millis(u64::from(n / 4) * step));
        let mut c = Config::default();
        c.body_timeout = ms(self.body);
        c.max_frame_size = 160 + usize::from(self.frame_size) * 16;
        c.max_client_requests = usize::from(self.client_requests % 5);
        c.request_timeout = ms(self.request);
        c.max_server_requests = usize::from(self.server_requests % 5);
        c.drain_timeout = ms(self.drain);
        c.close_timeout = ms(self.close);
        c.max_queued_frames = usize::from(self.frames % 8);
        c.max_queued_bytes = 64 + usize::from(self.bytes) * 16;
        c.max_emitted_ids = usize::from(self.emitted % 5);
        c.ping_interval = sometimes(self.ping, 100);
        c.liveness_timeout = sometimes(self.liveness, 150);
        c.write_stall_timeout = sometimes(self.stall, 100);
        c.normalized()
    }
}

/// How many bytes of padding `p` asks for: none three times in four, else
/// up to 8064 bytes, so that about half of the padded frames are over a
/// small `max_frame_size` (refused with `TooLarge`) and half within it.
pub fn padding(p: u8) -> usize {
    if p % 4 == 0 {
        usize::from(p / 4) * 128
    } else {
        0
    }
}

/// `n` bytes of padding text.
pub(crate) fn pad_text(n: usize) -> String {
    "x".repeat(n)
}

/// The text of a frame of exactly `len` bytes (at least 8) that is a JSON
/// object matching no envelope rule.
pub(crate) fn padded(len: usize) -> String {
    format!(r#"{{"p":"{}"}}"#, "x".repeat(len.saturating_sub(8)))
}

/// A JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The agent-completion id of completion `n`.
pub(crate) fn completion(n: u8) -> String {
    format!("agc-{}", n % 6)
}

/// The chunk of a stream that carries the completions set in `mask`, with
/// `pad` bytes of padding.
pub(crate) fn chunk_text(mask: u8, seq: u64, pad: usize) -> (String, Vec<String>) {
    let ids: Vec<String> = (0..6)
        .filter(|b| mask & (1 << b) != 0)
        .map(completion)
        .collect();
    let first = ids.first().cloned().unwrap_or_default();
    let text = format!(
        r#"{{"id":{},"object":"agent.completion.chunk","seq":{seq},"ids":{},"pad":"{}"}}"#,
        quote(&first),
        serde_json::to_string(&ids).unwrap_or_default(),
        pad_text(pad)
    );
    (text, ids)
}
