//! Shared harness of the cross-runtime integration suite and benchmarks:
//! run a future on tokio or smol, start a server on 127.0.0.1:0 (stopped
//! when dropped), speak raw WebSocket to it, and bound every wait.
//!
//! Each scenario is one `async fn(rt: R)` generic over [`Runtime`];
//! [`on_both_runtimes!`] turns a list of them into tests on both runtimes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use futures_channel::mpsc;
use futures_util::future::{AbortHandle, Either, abortable, select};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use socket2::{Domain, SockRef, Socket, Type};
use wirestream_demo::PATH;
use wirestream_runtime::{
    Client, CloseCode, Config, EndReason, HandlerResult, HttpResponse, Listener, Registry,
    RequestError, Runtime, Served, Server, Session, Shutdown, only_path,
};

pub use wirestream_smol::Smol;
pub use wirestream_tokio::Tokio;

/// README.md's Rust blocks, compiled as doctests (this crate depends on
/// both adapters), so that the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Runs `future` on a fresh multi-threaded tokio runtime (two workers);
/// every task it spawned is dropped with the runtime.
pub fn tokio_run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Runs `future` on smol (tasks go to smol's global executor).
pub fn smol_run<F: Future>(future: F) -> F::Output {
    smol::block_on(future)
}

/// Declares one test per runtime for each scenario `async fn name<R:
/// Runtime>(rt: R)` of the calling module, in modules `tokio` and `smol`.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod tokio {
            $(#[test]
            fn $name() {
                $crate::tokio_run(super::$name($crate::Tokio));
            })*
        }
        mod smol {
            $(#[test]
            fn $name() {
                $crate::smol_run(super::$name($crate::Smol));
            })*
        }
    };
}

/// How long any single wait of a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<R: Runtime, F: Future>(rt: &R, limit: Duration, future: F) -> F::Output {
    let sleep = pin!(rt.sleep_until(rt.now() + limit));
    match select(pin!(future), sleep).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("no progress within {limit:?}"),
    }
}

/// Awaits `future` with the default [`PATIENCE`].
pub async fn patiently<R: Runtime, F: Future>(rt: &R, future: F) -> F::Output {
    within(rt, PATIENCE, future).await
}

/// Waits until `condition` holds (checked every 5 ms), failing after
/// [`PATIENCE`]. Scenarios wait on events (this, a channel, a frame), never
/// for a while.
pub async fn eventually<R: Runtime>(rt: &R, mut condition: impl FnMut() -> bool) {
    patiently(rt, async {
        while !condition() {
            rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A server on 127.0.0.1:0 serving one handler at the demo path; records how
/// each connection ended (and its counters); stops accepting when dropped.
pub struct TestServer<R: Runtime> {
    rt: R,
    /// `ws://127.0.0.1:PORT/agent/completions`.
    pub url: String,
    /// The address bound.
    pub addr: SocketAddr,
    /// The registry its sessions are registered in.
    pub registry: Registry,
    /// Its shutdown handle: [`Shutdown::live_sessions`] counts the sessions
    /// not yet ended.
    pub shutdown: Shutdown,
    ends: mpsc::UnboundedReceiver<Served>,
    abort: AbortHandle,
}

impl<R: Runtime> TestServer<R> {
    /// Starts serving `handler` with `config`.
    pub async fn start<B, H, Fut>(rt: &R, config: Config, handler: H) -> Self
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        Self::start_tuned(rt, config, handler, |_| {}).await
    }

    /// [`start`](Self::start), calling `tune` on each accepted connection's
    /// stream before its handshake (to set socket options, see [`Sockets`]).
    pub async fn start_tuned<B, H, Fut>(
        rt: &R,
        config: Config,
        handler: H,
        tune: fn(&R::Stream),
    ) -> Self
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let server = Server::new(rt.clone()).with_config(config);
        let registry = server.registry().clone();
        let shutdown = server.shutdown_handle();
        let (ends_tx, ends) = mpsc::unbounded();
        let accept = async move {
            while let Ok((stream, _)) = listener.accept().await {
                tune(&stream);
                let (server, handler, ends_tx) = (server.clone(), handler.clone(), ends_tx.clone());
                server.runtime().clone().spawn(async move {
                    if let Ok(ws) = server.accept(stream, only_path(PATH)).await {
                        let _ = ends_tx.unbounded_send(server.serve(ws, handler).await);
                    }
                });
            }
        };
        let (accept, abort) = abortable(accept);
        rt.spawn(async move {
            let _ = accept.await;
        });
        Self {
            rt: rt.clone(),
            url: format!("ws://{addr}{PATH}"),
            addr,
            registry,
            shutdown,
            ends,
            abort,
        }
    }

    /// How the next connection to end ended.
    pub async fn next_end(&mut self) -> EndReason {
        self.next_served().await.end
    }

    /// How the next connection to end ended, with its counters.
    pub async fn next_served(&mut self) -> Served {
        let rt = self.rt.clone();
        patiently(&rt, self.ends.next())
            .await
            .expect("the server is running")
    }
}

impl<R: Runtime> Drop for TestServer<R> {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// A raw WebSocket client (async-tungstenite, no wirestream), for saying
/// what a well-behaved client would not.
pub struct Raw<R: Runtime> {
    rt: R,
    /// The socket.
    pub ws: WebSocketStream<R::Stream>,
}

impl<R: Runtime> Raw<R> {
    /// Connects to `url`.
    pub async fn connect(rt: &R, url: &str) -> Self {
        let request = url.into_client_request().expect("a ws:// URL");
        let host = request.uri().host().expect("a host").to_owned();
        let port = request.uri().port_u16().expect("a port");
        let stream = rt.connect(&host, port).await.expect("connect");
        Self::over(rt, url, stream).await
    }

    /// The WebSocket handshake for `url` over a connected `stream`.
    pub async fn over(rt: &R, url: &str, stream: R::Stream) -> Self {
        let request = url.into_client_request().expect("a ws:// URL");
        let (ws, _) = async_tungstenite::client_async(request, stream)
            .await
            .expect("handshake");
        Self { rt: rt.clone(), ws }
    }

    /// Sends a message.
    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// Sends a text frame.
    pub async fn text(&mut self, text: &str) {
        self.send(Message::Text(Utf8Bytes::from(text))).await;
    }

    /// The next message other than ping/pong, or `None` at the end.
    pub async fn next(&mut self) -> Option<Message> {
        let rt = self.rt.clone();
        patiently(&rt, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(message)) => return Some(message),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    /// The next message, which must be a text frame.
    pub async fn expect_text(&mut self) -> String {
        match self.next().await {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame, parsed.
    pub async fn expect_json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.expect_text().await).expect("JSON")
    }

    /// The next message, which must be a close frame; its code.
    /// The echo tungstenite queued is flushed, as a polite client would.
    pub async fn expect_close(&mut self) -> u16 {
        let code = match self.next().await {
            Some(Message::Close(frame)) => frame.map_or(1005, |f| u16::from(f.code)),
            other => panic!("expected a close frame, got {other:?}"),
        };
        let _ = SinkExt::flush(&mut self.ws).await;
        code
    }
}

impl<R: Sockets> Raw<R> {
    /// Resets the connection under the socket (see [`reset`]): whatever
    /// tungstenite still buffers is lost, no close frame is sent.
    pub fn reset(self) {
        linger_zero::<R>(self.ws.get_ref());
    }
}

/// A runtime whose TCP sockets a test can reach below [`Runtime`]: adopt a
/// socket connected with its options set first, and set options on a
/// connected stream.
pub trait Sockets: Runtime {
    /// Wraps a connected (blocking) std socket as this runtime's stream.
    fn adopt(stream: std::net::TcpStream) -> io::Result<Self::Stream>;

    /// The socket under `stream`, to set options on.
    fn socket(stream: &Self::Stream) -> SockRef<'_>;
}

impl Sockets for Tokio {
    fn adopt(stream: std::net::TcpStream) -> io::Result<Self::Stream> {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::TcpStream::from_std(stream)?;
        Ok(async_tungstenite::tokio::TokioAdapter::new(stream))
    }

    fn socket(stream: &Self::Stream) -> SockRef<'_> {
        SockRef::from(stream.get_ref())
    }
}

impl Sockets for Smol {
    fn adopt(stream: std::net::TcpStream) -> io::Result<Self::Stream> {
        smol::net::TcpStream::try_from(stream)
    }

    fn socket(stream: &Self::Stream) -> SockRef<'_> {
        SockRef::from(stream)
    }
}

/// A TCP connection to `addr` whose receive buffer is at most
/// `recv_buffer` bytes (set before connecting, so that the window it
/// advertises is small from the start); `None`: the kernel's default.
/// The connect blocks, which on loopback is immediate.
pub fn tcp_connect<R: Sockets>(addr: SocketAddr, recv_buffer: Option<usize>) -> R::Stream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("a socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("TCP_NODELAY");
    R::adopt(socket.into()).expect("a runtime stream")
}

/// Sets `SO_LINGER` to 0 on `stream`'s socket: closing it then resets the
/// connection (RST), dropping what is unsent and unread.
fn linger_zero<R: Sockets>(stream: &R::Stream) {
    R::socket(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Resets the TCP connection of `stream` (an RST instead of a FIN), as a
/// client that crashed or a middlebox that gave up would.
pub fn reset<R: Sockets>(stream: R::Stream) {
    linger_zero::<R>(&stream);
    drop(stream);
}

/// A [`Runtime`] that counts the tasks spawned through it that are still
/// alive (a task counts until its future is dropped, run to its end or
/// cancelled), so that a scenario can prove that nothing is left running.
#[derive(Clone, Debug)]
pub struct Counted<R> {
    rt: R,
    live: Arc<AtomicUsize>,
}

impl<R: Runtime> Counted<R> {
    /// Counts the tasks spawned on `rt` through the value returned.
    pub fn new(rt: R) -> Self {
        Self {
            rt,
            live: Arc::default(),
        }
    }

    /// Tasks spawned through this runtime (or its clones) not yet dropped.
    pub fn live_tasks(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// One live task, counted until its future is dropped.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<R: Runtime> Runtime for Counted<R> {
    type Sleep = R::Sleep;
    type Listener = R::Listener;
    type Stream = R::Stream;

    fn now(&self) -> Instant {
        self.rt.now()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        self.rt.sleep_until(deadline)
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.live.fetch_add(1, Ordering::SeqCst);
        let alive = Alive(self.live.clone());
        self.rt.spawn(async move {
            let _alive = alive;
            future.await;
        });
    }

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        self.rt.bind(addr)
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        R::local_addr(listener)
    }

    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        self.rt.accept(listener)
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        self.rt.connect(host, port)
    }
}

impl<R: Sockets> Sockets for Counted<R> {
    fn adopt(stream: std::net::TcpStream) -> io::Result<Self::Stream> {
        R::adopt(stream)
    }

    fn socket(stream: &Self::Stream) -> SockRef<'_> {
        R::socket(stream)
    }
}

/// A config with short timeouts, so timing rules run in milliseconds.
pub fn quick_config() -> Config {
    let mut config = Config::default();
    config.body_timeout = Duration::from_millis(200);
    config.drain_timeout = Duration::from_millis(200);
    config.request_timeout = Duration::from_millis(200);
    config.close_timeout = Duration::from_millis(500);
    config
}

/// The handler of [`whole_session`]: sends a chunk of `agc-1`, answers the
/// client's first notify `ok` (or `400` if it is not the expected one),
/// sends a server request (`tools/list`) and reports the client's answer in
/// a last chunk, then ends (the server closes with `Close(1000)`).
pub async fn whole_session_handler(_: serde_json::Value, mut session: Session) -> HandlerResult {
    let mut requests = session.requests();
    session
        .send(&json!({"id": "agc-1", "n": 0}), ["agc-1"])
        .await
        .expect("the first chunk");
    let notify = requests.recv().await.expect("a notify");
    if notify.response_id() == Some("agc-1") && notify.content() == Some(r#""over TLS?""#) {
        notify.respond(Ok(()));
    } else {
        notify.respond(Err(RequestError::new(400, "not the expected notify")));
    }
    let answer = session
        .request(wirestream_demo::tools_list("s-1"))
        .await
        .expect("the client answers the server request");
    let chunk = json!({"id": "agc-1", "n": 1, "status": answer.status(), "body": answer.body()});
    session
        .send(&chunk, ["agc-1"])
        .await
        .expect("the last chunk");
    Ok(())
}

/// A whole session through `client` against a server running
/// [`whole_session_handler`]: the body, a first chunk, a notify answered
/// `ok`, a server request answered by the client's handler (its status and
/// body come back in the last chunk), then the server's `Close(1000)`.
pub async fn whole_session<R: Runtime>(rt: &R, client: Client<R>) {
    let (mut chunks, notifier) = patiently(
        rt,
        client
            .on_server_request(|request| async move {
                assert_eq!(request.method(), Some("POST"));
                HttpResponse::new(200)
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}))
                    .expect("JSON")
            })
            .connect::<_, serde_json::Value>(&json!({"hello": "server"})),
    )
    .await
    .expect("connected");
    let first = patiently(rt, chunks.next())
        .await
        .expect("a chunk")
        .expect("a valid chunk");
    assert_eq!(first["n"], 0);
    patiently(rt, notifier.notify("agc-1", "over TLS?", None))
        .await
        .expect("the notify is answered ok");
    let last = patiently(rt, chunks.next())
        .await
        .expect("a chunk")
        .expect("a valid chunk");
    assert_eq!(last["n"], 1);
    assert_eq!(last["status"], 200);
    assert_eq!(
        last["body"],
        r#"{"id":1,"jsonrpc":"2.0","result":{"tools":[]}}"#
    );
    assert!(patiently(rt, chunks.next()).await.is_none());
    assert_eq!(chunks.end(), Some(EndReason::Peer(Some(CloseCode::NORMAL))));
}
