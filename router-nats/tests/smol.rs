//! A smol server in the cluster: the router runs its NATS client on a small
//! tokio runtime of its own, so nothing of the server needs tokio.

mod common;

use std::time::Duration;

use common::{answered_by, named_client, nats, node, options};
use serde_json::json;
use wirestream_smol::Smol;
use wirestream_tokio::{HttpRequest, RequestFailed};

fn ask() -> HttpRequest {
    HttpRequest::new("POST")
        .json(&json!({"method": "tools/list"}))
        .unwrap()
        .timeout(Duration::from_secs(20))
}

#[test]
fn smol_nodes_route_through_nats() {
    smol::block_on(async {
        let nats = nats();
        let opts = options();
        let a = node(Smol, &nats, opts.clone()).await;
        let b = node(Smol, &nats, opts).await;
        let _client = named_client(Smol, &a, "sess-smol", "smol-client").await;
        let answer = b.registry.request("sess-smol", ask()).await.unwrap();
        assert_eq!(answered_by(&answer), "smol-client");
        let failed = b.registry.request("sess-none", ask()).await.unwrap_err();
        assert_eq!(failed, RequestFailed::UnknownSession);
    });
}

#[test]
fn smol_and_tokio_nodes_share_a_cluster() {
    let nats = nats();
    let opts = options();
    let tokio_rt = tokio::runtime::Runtime::new().unwrap();
    let t = tokio_rt.block_on(node(wirestream_tokio::Tokio, &nats, opts.clone()));
    let _tokio_client = tokio_rt.block_on(named_client(
        wirestream_tokio::Tokio,
        &t,
        "sess-t",
        "on-tokio",
    ));
    smol::block_on(async {
        let s = node(Smol, &nats, opts).await;
        let _smol_client = named_client(Smol, &s, "sess-s", "on-smol").await;
        // smol's bridge reaches tokio's client...
        let answer = s.registry.request("sess-t", ask()).await.unwrap();
        assert_eq!(answered_by(&answer), "on-tokio");
        // ...and tokio's bridge reaches smol's.
        let registry = t.registry.clone();
        let answer = tokio_rt
            .block_on(async move { registry.request("sess-s", ask()).await })
            .unwrap();
        assert_eq!(answered_by(&answer), "on-smol");
    });
}
