//! Serving a handler without a WebSocket ([`Server::serve_detached`]), for
//! the same route served as Server-Sent Events or as one JSON response
//! (PROTOCOL.md §1).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_channel::mpsc;
use futures_util::future::AbortHandle;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wirestream_proto::ResponseError;

use crate::caller::Caller;
use crate::rt::Runtime;
use crate::server::Server;
use crate::session::{
    CHUNK_CHANNEL, HandlerResult, Produced, Session, handler_vanished, spawn_handler,
};

impl<R: Runtime> Server<R> {
    /// Runs `handler` without a WebSocket, for the same route served as
    /// Server-Sent Events or as one JSON response (PROTOCOL.md §1): the
    /// chunks it sends come out of the returned stream, in order, with the
    /// same backpressure. Its session has no client requests, and its server
    /// requests fail with [`RequestFailed::NotConnected`](crate::RequestFailed::NotConnected). A body that does
    /// not deserialize as `B` is refused with a `400` error.
    ///
    /// Its [`Session::caller`] is empty; see
    /// [`serve_detached_with_caller`](Self::serve_detached_with_caller).
    pub fn serve_detached<B, H, Fut>(
        &self,
        body: &[u8],
        handler: H,
    ) -> Result<Detached, ResponseError<'static>>
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.serve_detached_with_caller(body, Caller::default(), handler)
    }

    /// [`serve_detached`](Self::serve_detached), with what the HTTP server
    /// knows of the request (its URI, headers, peer address, an
    /// authenticated identity…) for the handler to read in
    /// [`Session::caller`].
    ///
    /// The handler sees the server's [graceful
    /// shutdown](Server::shutdown_handle) in
    /// [`Session::shutdown_requested`]; ending the HTTP response at the
    /// grace's end is the HTTP server's part.
    pub fn serve_detached_with_caller<B, H, Fut>(
        &self,
        body: &[u8],
        caller: Caller,
        handler: H,
    ) -> Result<Detached, ResponseError<'static>>
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let body: B = serde_json::from_slice(body)
            .map_err(|e| ResponseError::new(400, &format!("failed to deserialize body: {e}")))?;
        let (tx, rx) = mpsc::channel(CHUNK_CHANNEL);
        let config = self.config().clone().normalized();
        let registry = self.registry().clone();
        let shutdown = self.shutdown_handle();
        let session = Session::new(tx, config, None, None, registry, None, caller, shutdown);
        let abort = spawn_handler(self.runtime(), handler, body, session);
        Ok(Detached {
            rx,
            abort,
            done: false,
        })
    }
}

/// The chunks of a handler served without a WebSocket
/// ([`Server::serve_detached`]): each item is a chunk, or the error that
/// failed the stream (the last item). Dropping it drops the handler.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use wirestream_runtime::{HandlerResult, Runtime, Server, Session, sse_event};
///
/// async fn handler(_: serde_json::Value, mut session: Session) -> HandlerResult {
///     let _ = session.send(&serde_json::json!({"id": "agc-1"}), ["agc-1"]).await;
///     Ok(())
/// }
///
/// // The body of a POST with `"stream": true`, answered as Server-Sent Events.
/// async fn sse<R: Runtime>(server: &Server<R>, body: &[u8]) -> Vec<String> {
///     let mut events = Vec::new();
///     match server.serve_detached(body, handler) {
///         Ok(mut chunks) => {
///             while let Some(item) = chunks.next().await {
///                 match item {
///                     Ok(chunk) => events.push(sse_event(&chunk)),
///                     // The error frame ends a failed stream.
///                     Err(error) => match serde_json::value::to_raw_value(&error) {
///                         Ok(frame) => events.push(sse_event(&frame)),
///                         Err(_) => break,
///                     },
///                 }
///             }
///         }
///         Err(bad_body) => events.push(format!("{} {}", bad_body.code, bad_body.message.get())),
///     }
///     events
/// }
/// ```
pub struct Detached {
    rx: mpsc::Receiver<Produced>,
    abort: AbortHandle,
    done: bool,
}

impl fmt::Debug for Detached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detached")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Stream for Detached {
    type Item = Result<Box<RawValue>, ResponseError<'static>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.rx.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Produced::Chunk(chunk, _))) => return Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Produced::End(Ok(())))) => None,
            Poll::Ready(Some(Produced::End(Err(e)))) => Some(Err(e)),
            Poll::Ready(None) => Some(Err(handler_vanished())),
        };
        self.done = true;
        Poll::Ready(item)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.abort.abort();
    }
}
