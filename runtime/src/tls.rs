//! TLS for the client (feature `rustls`): [`Client`](crate::Client)
//! connects to `wss://` URLs with rustls over the runtime's own byte stream
//! (through `futures-rustls`), so the same code runs on tokio and smol.
//!
//! Without [`Client::tls_config`](crate::Client::tls_config), the client
//! trusts Mozilla's root certificates ([`webpki_roots()`]). To trust others
//! (a private CA, a self-signed certificate in a test, the platform's store
//! through `rustls-native-certs`), build a root store and pass
//! [`client_config`]`(roots)`, or any `rustls::ClientConfig` of your own:
//!
//! ```no_run
//! # async fn f<R: wirestream_runtime::Runtime>(rt: R, ca_der: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! use wirestream_runtime::Client;
//! use wirestream_runtime::tls::{self, rustls};
//!
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(rustls::pki_types::CertificateDer::from(ca_der))?;
//! let (chunks, notifier) = Client::new(rt, "wss://agents.internal/agent/completions")
//!     .tls_config(tls::client_config(roots))
//!     .connect::<_, serde_json::Value>(&serde_json::json!({}))
//!     .await?;
//! # drop((chunks, notifier)); Ok(()) }
//! ```
//!
//! The server side needs nothing from this module:
//! [`Server::accept`](crate::Server::accept) takes any byte stream, so a TLS stream from
//! `tokio-rustls` or [`futures_rustls`] is served like a TCP one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};

pub use futures_rustls::{self, rustls};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

/// Mozilla's root certificates (from the `webpki-roots` crate, bundled at
/// build time): what a client trusts unless given its own configuration.
pub fn webpki_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// A client configuration that trusts `roots`, with rustls' safe default
/// protocol versions and no client certificate. Its crypto provider is the
/// process default if the application installed one
/// (`CryptoProvider::install_default`), otherwise *ring*.
///
/// ```
/// use wirestream_runtime::tls;
///
/// let config = tls::client_config(tls::webpki_roots());
/// assert!(config.alpn_protocols.is_empty());
/// ```
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider supports rustls' default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The TLS handshake of a `wss://` client over `stream`, checking the
/// certificate against `host` (a DNS name or an IP address).
pub(crate) async fn connect<S>(
    config: Option<Arc<ClientConfig>>,
    host: &str,
    stream: S,
) -> io::Result<futures_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let config = config.unwrap_or_else(|| client_config(webpki_roots()));
    futures_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// The byte stream a client runs over: TCP, or TLS over TCP.
pub(crate) enum ClientStream<S> {
    Plain(S),
    Tls(Box<futures_rustls::client::TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_close(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
