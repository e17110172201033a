//! Counters an application can read (PROTOCOL.md: "dropped and counted").

/// What a session has dropped, refused and sent, since it began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Text frames that matched no rule of PROTOCOL.md §3.3, dropped.
    pub junk_frames: u64,
    /// Binary frames outside the body phase, dropped.
    pub binary_frames: u64,
    /// Responses to requests that are unknown or already ended, dropped.
    pub unknown_responses: u64,
    /// Requests the engine answered itself without the application
    /// (400, 404, 409, 429 and 504 replies on the server; 429 on the client).
    pub refused_requests: u64,
    /// Chunks sent (server) or received (client).
    pub chunks: u64,
    /// Emitted agent-completion ids forgotten to stay within the limit.
    pub forgotten_ids: u64,
}
