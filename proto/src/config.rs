//! Limits and timeouts of a session (PROTOCOL.md §5).

use std::time::Duration;

/// The limits and timeouts of one session, for either role.
///
/// Every queue and map of the engine is bounded by a field of this struct;
/// [`Config::default`] gives the defaults of PROTOCOL.md §5. Each field says
/// what it bounds in each direction: what the peer sends (breaches are
/// answered on the wire) and what the application asks this side to send
/// (breaches are refused with an [`Error`](crate::Error), nothing sent).
/// Values of zero are raised to the smallest value that still lets a
/// session make progress (see [`Config::normalized`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Server: how long to wait for the body frame (default 30 s).
    /// On breach: `408` error frame, then `Close(1008)`.
    pub body_timeout: Duration,
    /// Largest text frame, in bytes (default 16 MiB), both ways.
    /// Inbound, on breach: the server answers a `413` error frame, then
    /// `Close(1009)`; the client sends `Close(1009)`. Outbound: a command
    /// whose frame would be larger (a chunk, an error frame, a reply, a
    /// server request, a notify, an answer, the client's body) is refused
    /// with [`Error::TooLarge`](crate::Error::TooLarge), since the peer
    /// would refuse the frame.
    pub max_frame_size: usize,
    /// Client requests (notifies) in flight at once (default 64).
    /// Server, inbound: one past it is answered `429` without reaching the
    /// application. Client, outbound: a notify past it is refused with
    /// [`Error::TooManyRequests`](crate::Error::TooManyRequests).
    pub max_client_requests: usize,
    /// Default deadline of a request this side sends: server requests on the
    /// server, notifies on the client (default 30 s). On breach the request
    /// ends as timed out.
    pub request_timeout: Duration,
    /// Server requests pending at once (default 64). Server, outbound: one
    /// past it is refused with
    /// [`Error::TooManyRequests`](crate::Error::TooManyRequests). Client,
    /// inbound: one past it is answered with status `429` without reaching
    /// the application.
    pub max_server_requests: usize,
    /// Server: how long the end of a stream waits for the application's
    /// replies to accepted client requests (default 5 s); unanswered ones are
    /// then answered `504`.
    pub drain_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours
    /// (default 5 s); then the session is over regardless, and frames still
    /// queued are given up. Zero is raised to 1 ns (see
    /// [`Config::normalized`]).
    pub close_timeout: Duration,
    /// Outbound frames queued at once (default 64). Beyond it, commands that
    /// send the application's data are refused with
    /// [`Error::Full`](crate::Error::Full) until
    /// [`ServerEvent::Writable`](crate::ServerEvent::Writable) (or its client
    /// twin) says there is room; the engine's own replies are always queued,
    /// and [`Engine::wants_input`](crate::Engine::wants_input) turns false so
    /// that the driver stops reading until the queue drains.
    pub max_queued_frames: usize,
    /// Outbound bytes queued at once (default 1 MiB); as `max_queued_frames`.
    pub max_queued_bytes: usize,
    /// Keepalive: a WebSocket ping goes out after this long without any
    /// inbound frame, and again every interval while the peer stays silent
    /// (at most one waits in the outbound queue at a time; default 30 s;
    /// `None` turns it off). A healthy peer's automatic
    /// pong keeps the session alive (see `liveness_timeout`), and proxies
    /// see traffic.
    pub ping_interval: Option<Duration>,
    /// A peer that sends no frame of any kind for this long is dead
    /// (default 45 s; `None` turns it off; any frame counts, not only
    /// pongs, so a busy peer is never declared dead). The session ends as
    /// if the transport were lost, its requests with it, reported as
    /// [`EndReason::PeerSilent`](crate::EndReason::PeerSilent); a best-effort
    /// `Close(1008)` is the last frame, and the connection is dropped
    /// without waiting for the close handshake.
    pub liveness_timeout: Option<Duration>,
    /// An outbound queue that stays full this long means a peer that reads
    /// nothing (default 30 s; `None` turns it off): the session ends as if
    /// the transport were lost, reported as
    /// [`EndReason::WriteStalled`](crate::EndReason::WriteStalled), its
    /// queue freed; commands then fail with [`Error::Closed`](crate::Error::Closed).
    pub write_stall_timeout: Option<Duration>,
    /// Server: agent-completion ids remembered for notify routing
    /// (default 1024); the oldest are forgotten first (counted in
    /// [`Stats::forgotten_ids`](crate::Stats::forgotten_ids)).
    pub max_emitted_ids: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            body_timeout: Duration::from_secs(30),
            max_frame_size: 16 << 20,
            max_client_requests: 64,
            request_timeout: Duration::from_secs(30),
            max_server_requests: 64,
            drain_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            max_queued_frames: 64,
            max_queued_bytes: 1 << 20,
            max_emitted_ids: 1024,
            ping_interval: Some(Duration::from_secs(30)),
            liveness_timeout: Some(Duration::from_secs(45)),
            write_stall_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl Config {
    /// Whether a text frame of `len` bytes is within
    /// [`max_frame_size`](Self::max_frame_size): the rule the engine applies
    /// to every frame it queues, for a producer that wants to know before
    /// it hands a frame over.
    pub fn admits_frame(&self, len: usize) -> bool {
        len <= self.max_frame_size
    }

    /// This config with every count raised to at least 1, so that a session
    /// can always queue a frame and track a request, and a zero
    /// `close_timeout` (or keepalive, liveness or write-stall time) raised
    /// to 1 ns: a session that closes while handling
    /// a timeout (body or drain timeout) then has its next deadline strictly
    /// after `now`, so a driver sends the close frame before that deadline
    /// ends the session, and never spins. Sessions apply it on construction.
    pub fn normalized(mut self) -> Self {
        let one = Duration::from_nanos(1);
        self.close_timeout = self.close_timeout.max(one);
        // A zero interval would leave each deadline at `now` once handled.
        for d in [
            &mut self.ping_interval,
            &mut self.liveness_timeout,
            &mut self.write_stall_timeout,
        ]
        .into_iter()
        .flatten()
        {
            *d = (*d).max(one);
        }
        for n in [
            &mut self.max_frame_size,
            &mut self.max_client_requests,
            &mut self.max_server_requests,
            &mut self.max_queued_frames,
            &mut self.max_queued_bytes,
            &mut self.max_emitted_ids,
        ] {
            *n = (*n).max(1);
        }
        self
    }
}
