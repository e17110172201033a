//! Notifies (`agent_completion_notify`, PROTOCOL.md §3.1) from a client to
//! the completion its server is running.

use std::fmt;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::value::RawValue;
use wirestream_proto::{Outcome, RequestError};

/// Why a notify got no `ok`.
///
/// ```no_run
/// use std::time::Duration;
/// use wirestream_runtime::{Notifier, NotifyError};
///
/// # async fn example(notifier: Notifier) {
/// match notifier.notify("agc-1", "stop after this step", Some(Duration::from_secs(5))).await {
///     Ok(()) => println!("delivered"),
///     Err(NotifyError::Rejected(e)) => println!("the server said {} {}", e.code, e.message),
///     Err(NotifyError::TimedOut) => println!("no answer in 5 s"),
///     Err(e) => println!("not delivered: {e}"),
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyError {
    /// The server answered `error` with this code and message.
    Rejected(RequestError),
    /// No answer before the deadline.
    TimedOut,
    /// The connection ended first.
    SessionEnded,
    /// As many notifies are in flight as the config allows.
    TooManyRequests,
    /// The content could not be serialized.
    Serialize(serde_json::Error),
    /// The notify's frame would be over the frame size limit (the engine
    /// refused it; nothing was sent).
    TooLarge,
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(e) => write!(f, "rejected: {e}"),
            Self::TimedOut => f.write_str("no answer in time"),
            Self::SessionEnded => f.write_str("the connection ended first"),
            Self::TooManyRequests => f.write_str("too many notifies in flight"),
            Self::Serialize(e) => write!(f, "could not serialize the content: {e}"),
            Self::TooLarge => f.write_str("the content is over the frame size limit"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// A notify on its way to the driver, with where its outcome goes.
pub(crate) struct NotifyCommand {
    /// The running completion to notify.
    pub(crate) response_id: String,
    /// What to hand it, as JSON.
    pub(crate) content: Box<RawValue>,
    /// The deadline; `None` takes the config's.
    pub(crate) timeout: Option<Duration>,
    /// Where the outcome goes.
    pub(crate) reply: oneshot::Sender<Result<(), NotifyError>>,
}

/// Sends `agent_completion_notify` requests over the connection; cheap to
/// clone.
///
/// ```no_run
/// # async fn example(notifier: wirestream_runtime::Notifier) -> Result<(), wirestream_runtime::NotifyError> {
/// // `content` is a string or an array of content parts.
/// notifier.notify("agc-1", "also check the tests", None).await?;
/// let parts = serde_json::json!([{"type": "text", "text": "and the docs"}]);
/// notifier.clone().notify("agc-1", &parts, None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::Sender<NotifyCommand>,
}

impl fmt::Debug for NotifyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyCommand")
            .field("response_id", &self.response_id)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier that hands notifies to the driver behind `tx`.
    pub(crate) fn new(tx: mpsc::Sender<NotifyCommand>) -> Self {
        Self { tx }
    }

    /// Hands `content` (a string, or an array of parts) to the running agent
    /// completion `response_id` and awaits the outcome: `Ok(())` for the
    /// server's `ok`, else why not. `timeout` defaults to the config's
    /// request timeout.
    pub async fn notify<T: Serialize + ?Sized>(
        &self,
        response_id: &str,
        content: &T,
        timeout: Option<Duration>,
    ) -> Result<(), NotifyError> {
        let content = serde_json::value::to_raw_value(content).map_err(NotifyError::Serialize)?;
        let (reply, outcome) = oneshot::channel();
        let command = NotifyCommand {
            response_id: response_id.to_owned(),
            content,
            timeout,
            reply,
        };
        self.tx
            .clone()
            .send(command)
            .await
            .map_err(|_| NotifyError::SessionEnded)?;
        outcome.await.unwrap_or(Err(NotifyError::SessionEnded))
    }
}

/// Maps a notify's end to what [`Notifier::notify`] returns.
pub(crate) fn notify_result(outcome: Outcome<Result<(), RequestError>>) -> Result<(), NotifyError> {
    match outcome {
        Outcome::Answered(Ok(())) => Ok(()),
        Outcome::Answered(Err(e)) => Err(NotifyError::Rejected(e)),
        Outcome::TimedOut => Err(NotifyError::TimedOut),
        Outcome::SessionEnded => Err(NotifyError::SessionEnded),
    }
}
