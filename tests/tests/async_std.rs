//! async-std users run the smol adapter: both sit on async-io (one reactor
//! in the process). Here everything the application writes runs in
//! `async_std::task::block_on` / `async_std::task::spawn` tasks: a whole
//! session (body, chunk, notify answered ok, server request answered,
//! Close(1000)), once with the adapter's listener and once with
//! async-std's own `TcpListener` handed to `Server::accept`.

use async_std::net::TcpListener;
use wirestream_demo::PATH;
use wirestream_runtime::{Client, CloseCode, EndReason, Server, only_path};
use wirestream_tests::{Smol, TestServer, patiently, whole_session, whole_session_handler};

/// The smol adapter's own listener and client, driven from async-std tasks.
#[test]
fn whole_session_from_async_std_tasks() {
    async_std::task::block_on(async {
        let mut server = TestServer::start(
            &Smol,
            wirestream_runtime::Config::default(),
            whole_session_handler,
        )
        .await;
        let url = server.url.clone();
        async_std::task::spawn(async move {
            whole_session(&Smol, Client::new(Smol, url)).await;
        })
        .await;
        assert_eq!(server.next_end().await, EndReason::Local(CloseCode::NORMAL));
    });
}

/// A server that accepts with async-std's `TcpListener` (any futures-io
/// byte stream goes to `Server::accept`) and serves on an async-std task.
#[test]
fn async_std_sockets_served() {
    async_std::task::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let serving = async_std::task::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let server = Server::new(Smol);
            let ws = server
                .accept(stream, only_path(PATH))
                .await
                .expect("handshake");
            server.serve(ws, whole_session_handler).await
        });
        let url = format!("ws://{addr}{PATH}");
        async_std::task::spawn(async move {
            whole_session(&Smol, Client::new(Smol, url)).await;
        })
        .await;
        let served = patiently(&Smol, serving).await;
        assert_eq!(served.end, EndReason::Local(CloseCode::NORMAL));
    });
}
