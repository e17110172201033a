//! Errors the application can cause (h11's rule: the peer's mistakes are
//! answered on the wire, never returned here).

use std::fmt;

/// A command the session cannot carry out now. Nothing was sent or changed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server has not received the body yet.
    AwaitingBody,
    /// The stream has already finished; only replies to client requests are
    /// accepted.
    Finished,
    /// A chunk has already been sent: the body can no longer be rejected.
    AlreadyStreaming,
    /// The session is closed: nothing more can be sent.
    Closed,
    /// The outbound queue is at its limit. Wait for the `Writable` event.
    Full,
    /// The request limit of [`Config`](crate::Config) is reached.
    TooManyRequests,
    /// No request with that id is waiting for an answer.
    UnknownRequest,
    /// The frame this command would send is larger than
    /// [`Config::max_frame_size`](crate::Config::max_frame_size): the peer
    /// would refuse it.
    TooLarge,
    /// The value could not be serialized as JSON.
    Serialize(serde_json::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AwaitingBody => "the body frame has not arrived yet",
            Self::Finished => "the stream has already finished",
            Self::AlreadyStreaming => "a chunk has already been sent",
            Self::Closed => "the session is closed",
            Self::Full => "the outbound queue is full",
            Self::TooManyRequests => "too many requests in flight",
            Self::UnknownRequest => "no request with that id is waiting for an answer",
            Self::TooLarge => "the frame would be over the frame size limit",
            Self::Serialize(e) => return write!(f, "could not serialize: {e}"),
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Serialize(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialize(e)
    }
}

/// A refused command that hands its value back.
#[derive(Debug)]
#[must_use = "a refused command hands its value back; nothing was sent"]
pub struct Refused<T> {
    /// Why it was refused.
    pub error: Error,
    /// The value, unchanged.
    pub value: T,
}

impl<T> fmt::Display for Refused<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<T: fmt::Debug> std::error::Error for Refused<T> {}

/// An error answer to a request: an HTTP-style code and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// An HTTP-style status code.
    pub code: u16,
    /// Human-readable reason. An answer from a peer whose `message` is not a
    /// JSON string (objectiveai-api 2.0.11 may send any JSON value there)
    /// keeps that value's JSON text here.
    pub message: String,
}

impl RequestError {
    /// An error answer.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RequestError {}

/// How a request ended: exactly one of these, exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The peer answered.
    Answered(T),
    /// The deadline passed first.
    TimedOut,
    /// The session ended first.
    SessionEnded,
}
