//! The client role: [`Client`] connects to a `ws://` (or `wss://`) URL, sends the body
//! and hands back the [`Chunks`] stream and a [`Notifier`]; the connection
//! runs on its own task.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_tungstenite::tungstenite::Message;
use futures_channel::{mpsc, oneshot};
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use wirestream_proto::{ClientSession, Config};

use crate::chunks::Chunks;
use crate::client_app::{self, ClientApp, Handler};
use crate::driver::Driver;
use crate::notifier::Notifier;
use crate::random::OsRandom;
use crate::rt::Runtime;
use crate::server_request::{HttpResponse, IncomingServerRequest};
use crate::socket::{ConnectError, Direction, Tap, TlsConfig, connect_websocket};
use crate::telemetry::{self, Role};

/// Chunks read ahead of the application; past it the driver stops reading
/// the socket, and the server's producer waits.
const CHUNK_CHANNEL: usize = 16;
/// Notifies waiting for the driver to take them.
const NOTIFY_CHANNEL: usize = 8;

/// Connects to a wirestream server: the URL, extra handshake headers, the
/// limits, a handler for server requests and an optional wiretap.
///
/// ```no_run
/// # async fn f<R: wirestream_runtime::Runtime>(rt: R) -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
/// use wirestream_runtime::{Client, HttpResponse};
///
/// let (mut chunks, notifier) = Client::new(rt, "ws://127.0.0.1:8080/agent/completions")
///     .header("authorization", "Bearer token")
///     .on_server_request(|_request| async { HttpResponse::new(200) })
///     .connect::<_, serde_json::Value>(&serde_json::json!({"chunks": 3}))
///     .await?;
/// while let Some(chunk) = chunks.next().await {
///     println!("{}", chunk?);
/// }
/// # drop(notifier); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client<R: Runtime> {
    rt: R,
    url: String,
    headers: Vec<(String, String)>,
    config: Config,
    handler: Option<Handler>,
    tap: Option<Tap>,
    tls: TlsConfig,
}

impl<R: Runtime> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// A client of the endpoint `url`: `ws://host[:port]/path`, or
    /// `wss://…` with the `rustls` feature (without it, connecting to a
    /// `wss://` URL fails with [`ConnectError::Url`], saying so).
    pub fn new(rt: R, url: impl Into<String>) -> Self {
        Self {
            rt,
            url: url.into(),
            headers: Vec::new(),
            config: Config::default(),
            handler: None,
            tap: None,
            tls: TlsConfig::default(),
        }
    }

    /// Adds a header to the upgrade request (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds headers to the upgrade request.
    pub fn headers<K, V>(mut self, headers: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Uses these limits and timeouts (notifies default to
    /// [`Config::request_timeout`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Answers server requests with `handler`. The handlers run on the
    /// connection's own task, several at once, while the socket keeps being
    /// read; one that panics is answered `500`. Without a handler, every
    /// server request is answered `501` (this client hosts nothing).
    pub fn on_server_request<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(IncomingServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        self.handler = Some(Arc::new(move |request| handler(request).boxed()));
        self
    }

    /// Connects to `wss://` URLs with this rustls configuration instead of
    /// the default ([`tls::client_config`](crate::tls::client_config) of
    /// Mozilla's roots): to trust a private CA or a self-signed
    /// certificate, or to present a client certificate. Not used for
    /// `ws://`.
    ///
    /// ```no_run
    /// # async fn f<R: wirestream_runtime::Runtime>(rt: R) -> Result<(), Box<dyn std::error::Error>> {
    /// use wirestream_runtime::{Client, tls};
    ///
    /// let mut roots = tls::rustls::RootCertStore::empty();
    /// roots.add(std::fs::read("ca.der")?.into())?;
    /// let client = Client::new(rt, "wss://localhost:8443/agent/completions")
    ///     .tls_config(tls::client_config(roots));
    /// # drop(client); Ok(()) }
    /// ```
    #[cfg(feature = "rustls")]
    pub fn tls_config(mut self, config: std::sync::Arc<crate::tls::rustls::ClientConfig>) -> Self {
        self.tls.client = Some(config);
        self
    }

    /// Calls `tap` with every message read or sent.
    pub fn tap(mut self, tap: impl Fn(Direction, &Message) + Send + Sync + 'static) -> Self {
        self.tap = Some(Arc::new(tap));
        self
    }

    /// Connects, sends `body` as the first frame and returns the stream of
    /// chunks (parsed as `C`) and a [`Notifier`]. The connection runs on its
    /// own task; dropping the [`Chunks`] hangs up (`Close(1000)`).
    pub async fn connect<B, C>(self, body: &B) -> Result<(Chunks<C>, Notifier), ConnectError>
    where
        B: Serialize + ?Sized,
        C: DeserializeOwned,
    {
        let body = serde_json::value::to_raw_value(body).map_err(ConnectError::Body)?;
        // The engine refuses a body over the frame limit before any byte
        // goes out.
        let engine: client_app::Engine =
            ClientSession::new(self.config.clone(), self.rt.now(), body, OsRandom::new())
                .map_err(|_| ConnectError::BodyTooLarge)?;
        let rt = self.rt.clone();
        let ws = connect_websocket(
            &self.url,
            &self.headers,
            &self.config,
            self.tls.clone(),
            |host, port| async move { rt.connect(&host, port).await },
        )
        .await?;
        let (chunks_tx, chunks_rx) = mpsc::channel(CHUNK_CHANNEL);
        let (end_tx, end_rx) = oneshot::channel();
        let (notify_tx, notify_rx) = mpsc::channel(NOTIFY_CHANNEL);
        let app = ClientApp::new(chunks_tx, end_tx, notify_rx, self.handler);
        let driver = Driver::new(self.rt.clone(), ws, engine, app, self.tap);
        let span = telemetry::connection_span(Role::Client, Some(&self.url));
        self.rt.spawn(
            async move {
                driver.run().await;
            }
            .instrument(span),
        );
        Ok((Chunks::new(chunks_rx, end_rx), Notifier::new(notify_tx)))
    }
}
