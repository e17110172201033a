//! The stream of chunks a [`Client`](crate::Client) reads, and how it ends.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::Utf8Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use wirestream_proto::{ClientEvent, CloseCode, EndReason, ResponseError};

/// What the driver hands the [`Chunks`] stream.
pub(crate) enum Delivery {
    /// The frame as it arrived, parsed by the reader.
    Chunk(Utf8Bytes),
    Failed(ResponseError<'static>),
}

impl Delivery {
    /// The event it was made of, to hand back to the driver.
    pub(crate) fn into_event<K>(self) -> ClientEvent<Utf8Bytes, K> {
        match self {
            Self::Chunk(text) => ClientEvent::Chunk(text),
            Self::Failed(e) => ClientEvent::StreamFailed(e),
        }
    }
}

/// Why the stream of chunks did not end normally, or a chunk did not parse.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use wirestream_runtime::{Chunks, StreamError};
///
/// # async fn read(mut chunks: Chunks<serde_json::Value>) {
/// while let Some(item) = chunks.next().await {
///     match item {
///         Ok(chunk) => println!("{chunk}"),
///         Err(StreamError::Chunk(e)) => eprintln!("skipped a chunk: {e}"), // the stream goes on
///         Err(StreamError::Failed(error)) => eprintln!("failed: {} {}", error.code, error.message.get()),
///         Err(e) => eprintln!("{e}"), // Ended: the connection dropped
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// The server sent the error frame: the stream could not be created or
    /// failed (its `Close(1011)` follows).
    Failed(ResponseError<'static>),
    /// A chunk did not parse as the chunk type (the stream goes on).
    Chunk(serde_json::Error),
    /// The connection ended without finishing the stream: a close code
    /// other than 1000, or the transport died (1006).
    Ended(EndReason),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => write!(f, "the stream failed: {} {}", e.code, e.message.get()),
            Self::Chunk(e) => write!(f, "a chunk did not parse: {e}"),
            Self::Ended(reason) => write!(f, "the connection ended ({})", reason.code()),
        }
    }
}

impl std::error::Error for StreamError {}

/// The chunks of a stream, in order: `Ok(chunk)`, then `None` after the
/// server's `Close(1000)`. A failed stream yields `Err(Failed)`, a
/// connection that ended otherwise `Err(Ended)`, once, before `None`.
/// [`end`](Self::end) then tells how the connection ended. Dropping it hangs
/// up.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use wirestream_runtime::{Chunks, EndReason};
///
/// #[derive(serde::Deserialize)]
/// struct Chunk {
///     id: String,
/// }
///
/// # async fn read(mut chunks: Chunks<Chunk>) -> Result<(), Box<dyn std::error::Error>> {
/// while let Some(chunk) = chunks.next().await {
///     println!("chunk of {}", chunk?.id);
/// }
/// assert!(matches!(chunks.end(), Some(EndReason::Peer(_))));
/// # Ok(()) }
/// ```
pub struct Chunks<C> {
    rx: mpsc::Receiver<Delivery>,
    end_rx: oneshot::Receiver<EndReason>,
    end: Option<EndReason>,
    reported: bool,
    _chunk: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Chunks<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<C> Chunks<C> {
    /// The stream of what the driver hands `rx`; the driver reports the
    /// end on `end_rx` before it lets go of `rx`.
    pub(crate) fn new(rx: mpsc::Receiver<Delivery>, end_rx: oneshot::Receiver<EndReason>) -> Self {
        Self {
            rx,
            end_rx,
            end: None,
            reported: false,
            _chunk: PhantomData,
        }
    }

    /// How the connection ended, once the stream has returned `None`.
    pub fn end(&self) -> Option<EndReason> {
        self.end
    }
}

impl<C: DeserializeOwned> Stream for Chunks<C> {
    type Item = Result<C, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.end.is_some() {
            return Poll::Ready(None);
        }
        match this.rx.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Delivery::Chunk(text))) => Poll::Ready(Some(
                serde_json::from_str(&text).map_err(StreamError::Chunk),
            )),
            Poll::Ready(Some(Delivery::Failed(e))) => {
                this.reported = true;
                Poll::Ready(Some(Err(StreamError::Failed(e))))
            }
            Poll::Ready(None) => {
                // The driver reports the end before it lets go of the channel.
                let reason = match this.end_rx.try_recv() {
                    Ok(Some(reason)) => reason,
                    _ => EndReason::TransportLost,
                };
                this.end = Some(reason);
                let normal = matches!(reason, EndReason::Peer(Some(CloseCode::NORMAL)));
                if normal || this.reported {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(StreamError::Ended(reason))))
                }
            }
        }
    }
}
