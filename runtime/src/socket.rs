//! The WebSocket layer below the engine: async-tungstenite's limits taken
//! from the engine's [`Config`], the handshakes, and the mapping between
//! tungstenite messages and the engine's frames.

use std::fmt;
use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use async_tungstenite::tungstenite::http::{HeaderName, HeaderValue, StatusCode};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use futures_util::io::{AsyncRead, AsyncWrite};
use wirestream_proto::{CloseCode, Config, Transmit};

/// Bytes tungstenite gathers before writing to the socket. The driver
/// flushes after each batch of frames, so this only sets the largest write.
const WRITE_BUFFER: usize = 128 << 10;
/// Bytes tungstenite reads at once. It zeroes this much before every read
/// attempt, even one that finds nothing (128 KiB by default, which costs
/// more than sending a 1 KiB chunk); frames larger than this are still read
/// whole, in several reads. Every open connection keeps this buffer,
/// touched, for its whole life: 4 KiB rather than 8 KiB took 4 KiB off each
/// of 10,000 open sessions (BENCHMARKS.md, "Load").
const READ_BUFFER: usize = 4 << 10;
/// The largest WebSocket frame header (RFC 6455 §5.2: 2 bytes, an 8-byte
/// length, a 4-byte mask).
const FRAME_HEADER: usize = 14;

/// async-tungstenite's limits for a session with `config`, so that nothing
/// below the engine is unbounded:
///
/// - `max_frame_size` and `max_message_size` are the engine's
///   [`Config::max_frame_size`]: a bigger inbound frame is refused while its
///   header is parsed, before its payload is buffered, and reaches the engine
///   as [`Inbound::Oversize`](wirestream_proto::Inbound::Oversize);
/// - `write_buffer_size` is the engine's outbound queue limit, at most
///   128 KiB;
/// - `read_buffer_size` is 4 KiB (tungstenite zeroes it before each read,
///   and each connection keeps it);
/// - `max_write_buffer_size` (unbounded by default) holds that plus one frame
///   of [`Config::max_frame_size`] and its header: the engine refuses to
///   queue any frame larger than that limit, as the peer would refuse it
///   too.
///
/// ```
/// use wirestream_runtime::{Config, websocket_config};
///
/// let mut config = Config::default();
/// config.max_frame_size = 1 << 20;
/// let ws = websocket_config(&config);
/// assert_eq!(ws.max_frame_size, Some(1 << 20));
/// assert_eq!(ws.max_message_size, Some(1 << 20));
/// ```
pub fn websocket_config(config: &Config) -> WebSocketConfig {
    let config = config.clone().normalized();
    let write = WRITE_BUFFER.min(config.max_queued_bytes);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_frame_size(Some(config.max_frame_size))
        .max_message_size(Some(config.max_frame_size))
        .write_buffer_size(write)
        .max_write_buffer_size(
            write
                .saturating_add(config.max_frame_size)
                .saturating_add(FRAME_HEADER),
        )
}

/// Which way a frame crossed the socket, for a [`Tap`].
///
/// ```
/// use wirestream_runtime::Direction;
///
/// assert_eq!(Direction::In.to_string(), "<-");
/// assert_eq!(Direction::Out.to_string(), "->");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::In => "<-",
            Self::Out => "->",
        })
    }
}

/// A wiretap: called with every WebSocket message a driver reads or hands
/// to the socket, in order (for logs and transcripts).
///
/// ```
/// use std::sync::Arc;
/// use wirestream_runtime::tungstenite::Message;
/// use wirestream_runtime::{Direction, Tap};
///
/// let tap: Tap = Arc::new(|direction: Direction, message: &Message| {
///     if let Message::Text(text) = message {
///         eprintln!("{direction} {}", text.as_str());
///     }
/// });
/// tap(Direction::Out, &Message::text(r#"{"chunks":3}"#));
/// // `Server::with_tap` and `Client::tap` take such a closure.
/// ```
pub type Tap = Arc<dyn Fn(Direction, &Message) + Send + Sync>;

/// The close code of an engine close frame as tungstenite's type.
pub(crate) fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code: WsCloseCode::from(code.0),
        reason: Utf8Bytes::default(),
    }))
}

/// An engine frame as a tungstenite message, without copying the text.
pub(crate) fn to_message(frame: Transmit) -> Message {
    match frame {
        Transmit::Text(text) => Message::Text(text.into()),
        Transmit::Ping => Message::Ping(Default::default()),
        Transmit::Close(code) => close_message(code),
    }
}

/// The code of an inbound close frame, as the engine's type.
pub(crate) fn close_code(frame: Option<&CloseFrame>) -> Option<CloseCode> {
    frame.map(|f| CloseCode(u16::from(f.code)))
}

/// The server's WebSocket handshake over an accepted byte stream, with the
/// limits of [`websocket_config`]. `check` sees the HTTP request first (its
/// path, its `Authorization` header…) and can refuse it with an HTTP
/// response (PROTOCOL.md §1: a request that is not allowed never reaches the
/// session).
///
/// Every request is answered (RFC 6455 §4.2): a request that is not a
/// WebSocket upgrade, or not HTTP at all, with `400`; an unsupported
/// `Sec-WebSocket-Version` with `426` and `Sec-WebSocket-Version: 13`; a
/// method other than `GET` with `405`; a head over 16 KiB with `431`. Such a
/// request fails with `tungstenite::Error::Http` holding the answer, before
/// `check` runs. `Upgrade` is a token list (`websocket, h2c` upgrades).
///
/// ```no_run
/// use wirestream_runtime::{Config, HandlerResult, Listener, Runtime, Server, Session, accept_websocket, only_path};
///
/// # async fn handler(_: serde_json::Value, _: Session) -> HandlerResult { Ok(()) }
/// async fn serve_one<R: Runtime>(listener: &Listener<R>, server: &Server<R>) -> std::io::Result<()> {
///     let (stream, _peer) = listener.accept().await?;
///     // `Server::accept` does the same, bounded by the body timeout.
///     match accept_websocket(stream, &Config::default(), only_path("/agent/completions")).await {
///         Ok(ws) => println!("{:?}", server.serve(ws, handler).await.end),
///         Err(e) => eprintln!("handshake failed: {e}"),
///     }
///     Ok(())
/// }
/// ```
// The callback's error type is tungstenite's.
#[allow(clippy::result_large_err)]
pub async fn accept_websocket<S, C>(
    stream: S,
    config: &Config,
    check: C,
) -> Result<WebSocketStream<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: FnOnce(&Request) -> Result<(), ErrorResponse> + Unpin,
{
    crate::handshake::accept(stream, websocket_config(config), check).await
}

/// An HTTP error response for a handshake `check` to refuse a request with.
///
/// ```
/// use wirestream_runtime::refuse;
/// use wirestream_runtime::tungstenite::http::StatusCode;
///
/// let response = refuse(StatusCode::UNAUTHORIZED, "bad token");
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.body().as_deref(), Some("bad token"));
/// ```
pub fn refuse(status: StatusCode, message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(message.to_owned()));
    *response.status_mut() = status;
    response
}

/// A `check` for [`accept_websocket`] that accepts only `path`, and refuses
/// any other with `404`.
///
/// ```
/// use wirestream_runtime::only_path;
/// use wirestream_runtime::tungstenite::handshake::server::Request;
/// use wirestream_runtime::tungstenite::http::StatusCode;
///
/// let check = only_path("/agent/completions");
/// let request = |uri: &str| Request::builder().uri(uri).body(()).unwrap();
/// assert!(check.clone()(&request("/agent/completions?x=1")).is_ok());
/// let refused = check(&request("/other")).unwrap_err();
/// assert_eq!(refused.status(), StatusCode::NOT_FOUND);
/// ```
#[allow(clippy::result_large_err)]
pub fn only_path(
    path: &str,
) -> impl FnOnce(&Request) -> Result<(), ErrorResponse> + Clone + Send + Unpin + '_ {
    move |request: &Request| {
        if request.uri().path() == path {
            Ok(())
        } else {
            Err(refuse(StatusCode::NOT_FOUND, "no such endpoint"))
        }
    }
}

/// Why a client could not connect.
///
/// ```no_run
/// use wirestream_runtime::tungstenite;
/// use wirestream_runtime::{Client, ConnectError, Runtime};
///
/// async fn connect<R: Runtime>(rt: R) {
///     let client = Client::new(rt, "ws://127.0.0.1:8080/agent/completions");
///     match client.connect::<_, serde_json::Value>(&serde_json::json!({"chunks": 3})).await {
///         Ok((_chunks, _notifier)) => println!("streaming"),
///         Err(ConnectError::WebSocket(tungstenite::Error::Http(response))) => {
///             println!("refused: {}", response.status()) // e.g. 401 from the accept check
///         }
///         Err(ConnectError::Io(e)) => println!("no server: {e}"),
///         Err(e) => println!("{e}"),
///     }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a `ws://` (or, with the `rustls` feature, `wss://`)
    /// URL with a host.
    Url(String),
    /// An extra header is not a valid HTTP header.
    Header(String),
    /// The body could not be serialized.
    Body(serde_json::Error),
    /// The body is larger than [`Config::max_frame_size`].
    BodyTooLarge,
    /// The TCP connection failed.
    Io(std::io::Error),
    /// The TLS handshake of a `wss://` URL failed (feature `rustls`): the
    /// certificate is not trusted or not for this host, no common protocol
    /// version… The `rustls::Error`, if any, is the `io::Error`'s inner
    /// error.
    Tls(std::io::Error),
    /// The WebSocket handshake failed; a refusal by the server is
    /// `tungstenite::Error::Http` with its response.
    WebSocket(tungstenite::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(m) => write!(f, "bad URL: {m}"),
            Self::Header(m) => write!(f, "bad header: {m}"),
            Self::Body(e) => write!(f, "could not serialize the body: {e}"),
            Self::BodyTooLarge => f.write_str("the body is over the frame size limit"),
            Self::Io(e) => write!(f, "could not connect: {e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::WebSocket(e) => write!(f, "WebSocket handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Body(e) => Some(e),
            Self::Io(e) | Self::Tls(e) => Some(e),
            Self::WebSocket(e) => Some(e),
            Self::Url(_) | Self::Header(_) | Self::BodyTooLarge => None,
        }
    }
}

/// The TLS settings a client connects with: the `rustls` configuration
/// given to [`Client::tls_config`](crate::Client::tls_config), if any
/// (nothing without the feature).
#[derive(Clone, Default)]
pub(crate) struct TlsConfig {
    #[cfg(feature = "rustls")]
    pub(crate) client: Option<Arc<crate::tls::rustls::ClientConfig>>,
}

/// The byte stream a client runs over: TCP, or TLS over TCP.
#[cfg(feature = "rustls")]
pub(crate) type ClientStream<S> = crate::tls::ClientStream<S>;
/// The byte stream a client runs over: TCP only without the feature.
#[cfg(not(feature = "rustls"))]
pub(crate) type ClientStream<S> = S;

/// The client's WebSocket handshake: a `ws://` (or, with the `rustls`
/// feature, `wss://`) `url` with `headers` added to the upgrade request,
/// over a TCP connection `connect` opens to the URL's host and port.
pub(crate) async fn connect_websocket<S, F, Fut>(
    url: &str,
    headers: &[(String, String)],
    config: &Config,
    #[cfg_attr(not(feature = "rustls"), allow(unused_variables))] tls: TlsConfig,
    connect: F,
) -> Result<WebSocketStream<ClientStream<S>>, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(String, u16) -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
{
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(ConnectError::WebSocket)?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") if cfg!(feature = "rustls") => true,
        Some("wss") => {
            return Err(ConnectError::Url(format!(
                "{url}: wss:// needs the `rustls` feature (of wirestream-tokio, \
                 wirestream-smol or wirestream-runtime)"
            )));
        }
        _ => {
            return Err(ConnectError::Url(format!(
                "{url}: only ws:// and wss:// URLs are supported"
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::Url(format!("{url}: no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ConnectError::Header(format!("{name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ConnectError::Header(format!("{name}: {e}")))?;
        request.headers_mut().append(name, value);
    }
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let stream = connect(host.clone(), port)
        .await
        .map_err(ConnectError::Io)?;
    #[cfg(feature = "rustls")]
    let stream = if secure {
        let tls = crate::tls::connect(tls.client, &host, stream)
            .await
            .map_err(ConnectError::Tls)?;
        ClientStream::Tls(Box::new(tls))
    } else {
        ClientStream::Plain(stream)
    };
    let (ws, _response) = async_tungstenite::client_async_with_config(
        request,
        stream,
        Some(websocket_config(config)),
    )
    .await
    .map_err(ConnectError::WebSocket)?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// The scheme is checked before any connection is opened.
    fn refused(url: &str) -> String {
        let connect = |_: String, _: u16| async {
            // Reached, this would fail the test (an Io error, not Url).
            Err::<futures_util::io::Cursor<Vec<u8>>, _>(std::io::Error::other("connected"))
        };
        let result = connect_websocket(url, &[], &Config::default(), Default::default(), connect)
            .now_or_never()
            .expect("refused at once");
        match result {
            Err(ConnectError::Url(message)) => message,
            Err(other) => panic!("expected a URL error, got {other}"),
            Ok(_) => panic!("expected a URL error"),
        }
    }

    #[test]
    fn only_ws_and_wss() {
        assert!(refused("http://localhost/x").contains("only ws:// and wss://"));
    }

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn wss_needs_the_rustls_feature() {
        assert!(refused("wss://localhost/x").contains("needs the `rustls` feature"));
    }
}
