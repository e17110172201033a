//! `wss://` on tokio: `cargo run -p wirestream-tokio --features rustls --example tls`
//! makes a self-signed certificate for `localhost` (rcgen), serves the demo
//! endpoint behind tokio-rustls on 127.0.0.1, and connects a client that
//! trusts that certificate to `wss://localhost:PORT/agent/completions`.
//!
//! The server side needs no feature: [`Server::accept`] takes any byte
//! stream, so the application does the TLS handshake with the acceptor it
//! likes (here tokio-rustls over tokio's `TcpStream`) and hands the TLS
//! stream over through async-tungstenite's `TokioAdapter` (tokio's I/O
//! traits to the `futures-io` ones). The client side is the `rustls`
//! feature: [`Client::tls_config`] with a root store that trusts the
//! certificate (without it, the client trusts Mozilla's roots).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wirestream_demo::{AgentCompletionChunk, DemoBody, PATH};
use wirestream_tokio::async_tungstenite::tokio::TokioAdapter;
use wirestream_tokio::tls::{self, rustls};
use wirestream_tokio::{Client, HttpResponse, Server, Tokio, only_path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A certificate for `localhost`, made now; in production, load yours.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));

    // The server: TLS (tokio-rustls), then the WebSocket handshake and a
    // session, for every connection.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = Server::new(Tokio);
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let (server, acceptor) = (server.clone(), acceptor.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => return eprintln!("{peer}: TLS handshake failed: {e}"),
                };
                let ws = match server.accept(TokioAdapter::new(tls), only_path(PATH)).await {
                    Ok(ws) => ws,
                    Err(e) => return eprintln!("{peer}: WebSocket handshake failed: {e}"),
                };
                let handler =
                    |body: DemoBody, session| wirestream_demo::stream(Tokio, body, session);
                let served = server.serve(ws, handler).await;
                println!("server: {peer} ended: {:?}", served.end);
            });
        }
    });

    // The client: trusts the one certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let url = format!("wss://localhost:{port}{PATH}");
    let body = DemoBody {
        chunks: 3,
        interval_ms: 50,
        session_id: None,
    };
    let (mut chunks, _notifier) = Client::new(Tokio, &url)
        .tls_config(tls::client_config(roots))
        .on_server_request(|request| async move {
            println!("client: server request {:?}", request.method());
            HttpResponse::new(200)
        })
        .connect::<_, AgentCompletionChunk>(&body)
        .await?;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        println!("client: chunk of {} over TLS", chunk.id);
    }
    println!("client: ended: {:?}", chunks.end());
    Ok(())
}
