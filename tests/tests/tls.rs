//! `wss://`: a whole session over TLS with a self-signed certificate made at
//! run time (rcgen), on tokio (server: tokio-rustls) and on smol (server:
//! futures-rustls); the client is the same code on both (futures-rustls
//! over the runtime's byte stream). And the refusals: an untrusted
//! certificate, a certificate for another name.

use std::future::Future;
use std::io;
use std::sync::Arc;

use async_tungstenite::tokio::TokioAdapter;
use futures_util::future::{AbortHandle, abortable};
use futures_util::io::{AsyncRead, AsyncWrite};
use wirestream_demo::PATH;
use wirestream_runtime::tls::{self, futures_rustls, rustls};
use wirestream_runtime::{Client, ConnectError, EndReason, Listener, Runtime, Server, only_path};
use wirestream_tests::{
    Smol, Tokio, patiently, smol_run, tokio_run, whole_session, whole_session_handler,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for `localhost`, made now: the server's
/// configuration and a client root store that trusts it.
fn self_signed() -> (Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a server configuration");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("a root");
    (Arc::new(server), roots)
}

/// A server on 127.0.0.1:0 that runs `tls` (the TLS handshake) over each
/// accepted connection, then the WebSocket handshake and one session of
/// [`whole_session_handler`]; reports how each session ended; stops
/// accepting when the handle is aborted.
async fn tls_server<R, T, Fut, S>(
    rt: &R,
    tls: T,
) -> (
    u16,
    futures_channel::mpsc::UnboundedReceiver<EndReason>,
    AbortHandle,
)
where
    R: Runtime,
    T: Fn(R::Stream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let server = Server::new(rt.clone());
    let (ends_tx, ends) = futures_channel::mpsc::unbounded();
    let accept = async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (server, tls, ends_tx) = (server.clone(), tls.clone(), ends_tx.clone());
            server.runtime().clone().spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(stream) = tls(stream).await else {
                    return;
                };
                if let Ok(ws) = server.accept(stream, only_path(PATH)).await {
                    let served = server.serve(ws, whole_session_handler).await;
                    let _ = ends_tx.unbounded_send(served.end);
                }
            });
        }
    };
    let (accept, abort) = abortable(accept);
    rt.spawn(async move {
        let _ = accept.await;
    });
    (port, ends, abort)
}

/// Connects with `client`, which must fail in the TLS handshake: the
/// rustls error inside the [`ConnectError::Tls`].
async fn tls_refusal<R: Runtime>(client: Client<R>) -> rustls::Error {
    match client
        .connect::<_, serde_json::Value>(&serde_json::json!({}))
        .await
    {
        Err(ConnectError::Tls(e)) => *e
            .into_inner()
            .and_then(|inner| inner.downcast().ok())
            .expect("a rustls error"),
        Err(other) => panic!("expected a TLS refusal, got {other}"),
        Ok(_) => panic!("expected a TLS refusal, got a session"),
    }
}

/// The scenario on either runtime, given its server-side TLS handshake.
async fn whole_session_over_tls<R, T, Fut, S>(rt: R, tls: T, roots: rustls::RootCertStore)
where
    R: Runtime,
    T: Fn(R::Stream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::StreamExt;
    let (port, mut ends, abort) = tls_server(&rt, tls).await;
    let url = format!("wss://localhost:{port}{PATH}");

    // Trusting the certificate: the whole session.
    let client = Client::new(rt.clone(), &url).tls_config(tls::client_config(roots.clone()));
    whole_session(&rt, client).await;
    let end = patiently(&rt, ends.next()).await.expect("the server runs");
    assert_eq!(end, EndReason::Local(wirestream_runtime::CloseCode::NORMAL));

    // The default roots (Mozilla's) do not trust a self-signed certificate.
    let refusal = tls_refusal(Client::new(rt.clone(), &url)).await;
    assert!(
        matches!(
            refusal,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{refusal}"
    );

    // A certificate for `localhost` is not one for 127.0.0.1.
    let client = Client::new(rt.clone(), format!("wss://127.0.0.1:{port}{PATH}"))
        .tls_config(tls::client_config(roots));
    let refusal = tls_refusal(client).await;
    assert!(
        matches!(
            refusal,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{refusal}"
    );
    abort.abort();
}

/// tokio: the server handshakes with tokio-rustls over tokio's `TcpStream`
/// (as `runtime-tokio/examples/tls.rs` does) and serves the TLS stream
/// through the futures-io adapter.
#[test]
fn tokio_whole_session_over_tls() {
    let (config, roots) = self_signed();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = move |stream: <Tokio as Runtime>::Stream| {
        let acceptor = acceptor.clone();
        async move {
            let tls = acceptor.accept(stream.into_inner()).await?;
            Ok(TokioAdapter::new(tls))
        }
    };
    tokio_run(whole_session_over_tls(Tokio, tls, roots));
}

/// smol: the server handshakes with futures-rustls over smol's `TcpStream`.
#[test]
fn smol_whole_session_over_tls() {
    let (config, roots) = self_signed();
    let acceptor = futures_rustls::TlsAcceptor::from(config);
    let tls = move |stream: <Smol as Runtime>::Stream| acceptor.clone().accept(stream);
    smol_run(whole_session_over_tls(Smol, tls, roots));
}
