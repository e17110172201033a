//! The cluster demo of the README, end to end: two demo nodes joined by
//! NATS, a client streaming from node A, and a raw HTTP bridge call (what
//! curl sends) on node B.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::NatsServer;
use futures_util::StreamExt;
use serde_json::json;
use std::io::{Read, Write};
use wirestream_demo::{DemoBody, serve_node};
use wirestream_tokio::{Client, Config, HttpResponse, Tokio};

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `POST /objectiveai-mcp/{id}` with `body`, as curl sends it: the status
/// and the body of the answer.
async fn curl(addr: SocketAddr, id: &str, body: &str) -> std::io::Result<(u16, String)> {
    let request = format!(
        "POST /objectiveai-mcp/{id} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A blocking socket on a thread of its own, as curl would be.
    let exchange = move || {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::task::spawn_blocking(exchange).await??;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

#[tokio::test]
async fn demo_nodes_answer_a_bridge_call_across_the_cluster() {
    let nats = NatsServer::start();
    let (a, b) = (free_addr(), free_addr());
    for addr in [a, b] {
        let url = nats.url();
        tokio::spawn(async move {
            let stop = std::future::pending::<()>();
            serve_node(Tokio, addr, Config::default(), Some(&url), stop)
                .await
                .unwrap();
        });
    }
    let body = DemoBody {
        chunks: 200,
        interval_ms: 50,
        session_id: Some("demo-cluster".to_owned()),
    };
    // Node A's port opens once it joined the cluster: poll, bounded.
    let url = format!("ws://{a}/agent/completions");
    let mut connected = None;
    for _ in 0..200 {
        let client = Client::new(Tokio, &url).on_server_request(|request| {
            let id = request.body().unwrap_or("null").to_owned();
            async move {
                HttpResponse::new(200)
                    .json(&json!({"answered_by": "client-on-a", "asked": serde_json::from_str::<serde_json::Value>(&id).unwrap()}))
                    .unwrap()
            }
        });
        match client.connect::<_, serde_json::Value>(&body).await {
            Ok(ok) => {
                connected = Some(ok);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let (mut chunks, _notifier) = connected.expect("node A serves");
    chunks.next().await.unwrap().unwrap(); // registered before the first chunk
    // Node A's claim reaches the NATS server one round trip later, and
    // node B's port opens once it joined: poll the bridge, bounded.
    let mut answer = (0, String::new());
    for _ in 0..200 {
        answer = curl(
            b,
            "demo-cluster",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .await
        .unwrap_or((0, String::new()));
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answer.0, 200, "{}", answer.1);
    let body: serde_json::Value = serde_json::from_str(&answer.1).unwrap();
    assert_eq!(body["answered_by"], "client-on-a");
    assert_eq!(body["asked"]["id"], 2);
    // An id nobody owns: 503 at once; a body that is not JSON: 400.
    let (status, _) = curl(b, "nobody", "{}").await.unwrap();
    assert_eq!(status, 503);
    let (status, _) = curl(b, "demo-cluster", "not json").await.unwrap();
    assert_eq!(status, 400);
    // Node A answers its own clients' ids on its bridge too.
    let (status, _) = curl(a, "demo-cluster", "{}").await.unwrap();
    assert_eq!(status, 200);
}
