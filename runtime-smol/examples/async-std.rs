//! wirestream from async-std: `cargo run -p wirestream-smol --example async-std`.
//!
//! async-std and smol share async-io (one reactor per process), so an
//! async-std application uses the [`Smol`] adapter: here `main` is
//! `async_std::task::block_on`, the server accepts with async-std's own
//! `TcpListener` (any `futures-io` byte stream goes to [`Server::accept`])
//! and serves on `async_std::task::spawn` tasks, and a client in another
//! async-std task streams a completion, notifies it and answers the
//! server's request. What runs where: see the crate docs ("async-std").

use futures_util::StreamExt;
use wirestream_demo::{AgentCompletionChunk, DemoBody, PATH};
use wirestream_smol::{Client, HttpResponse, Server, Smol, only_path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    async_std::task::block_on(async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = Server::new(Smol);
        async_std::task::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let server = server.clone();
                async_std::task::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let ws = match server.accept(stream, only_path(PATH)).await {
                        Ok(ws) => ws,
                        Err(e) => return eprintln!("{peer}: handshake failed: {e}"),
                    };
                    let handler =
                        |body: DemoBody, session| wirestream_demo::stream(Smol, body, session);
                    server.serve(ws, handler).await;
                });
            }
        });

        let client = async_std::task::spawn(async move {
            let body = DemoBody {
                chunks: 3,
                interval_ms: 50,
                session_id: None,
            };
            let (mut chunks, notifier) = Client::new(Smol, format!("ws://{addr}{PATH}"))
                .on_server_request(|request| async move {
                    println!("client: server request {:?}", request.method());
                    HttpResponse::new(200)
                })
                .connect::<_, AgentCompletionChunk>(&body)
                .await?;
            let mut notified = false;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                println!("client: chunk of {}", chunk.id);
                if !notified {
                    notified = true;
                    let answer = notifier.notify(&chunk.id, "from async-std", None).await;
                    println!("client: notify answered {answer:?}");
                }
            }
            println!("client: ended: {:?}", chunks.end());
            Ok::<_, BoxError>(())
        });
        client.await
    })
}
