//! Session ids across nodes (PROTOCOL.md §4.1): a [`SessionRouter`] on NATS
//! request-reply, so that the bridge on any node reaches the client whose
//! WebSocket landed on another.
//!
//! Each node connects one [`NatsRouter`] to the cluster and sets it on its
//! [`Registry`]. The node that owns a session id subscribes to the id's
//! subject (`<prefix>.s.<hex(id)>`, see the subject scheme below) and
//! answers the server requests published there by forwarding them to its
//! client; a bridge call on any node for an id no connection of its own
//! holds is published there with the request's deadline:
//!
//! - no node subscribed: NATS answers "no responders" at once, and so does
//!   the bridge (`503`, [`RequestFailed::UnknownSession`]);
//! - the deadline passes: `504` ([`RequestFailed::TimedOut`]);
//! - the client's answer is over the NATS server's `max_payload`: `413`
//!   ([`RequestFailed::TooLarge`]), as is a request over it;
//! - the owning node dies mid-request: its heartbeats stop (one every
//!   [`NatsOptions::heartbeat`] while the client has not answered) and the
//!   request fails after three missed ones, `502`
//!   ([`RequestFailed::SessionEnded`]), long before its deadline;
//! - any other failure on the owning node crosses as itself.
//!
//! # Takeover across nodes
//!
//! The newer connection owns an id, wherever the two live. Each claim (a
//! registration, a mint) carries a generation: a hybrid logical clock
//! (`max(wall-clock nanoseconds, the largest generation this node has
//! seen + 1)`) and the node's random id to break ties, and is announced to
//! every node on `<prefix>.claim` once the claimer's subscription is in
//! place. A node that owns the id under an older generation drops it
//! ([`Registry::evict`]): it unsubscribes and stays silent for it.
//!
//! The guarantee: a registration made on a node *after* that node received
//! the notice of an earlier claim wins over it, whatever the nodes' clocks
//! say; two claims made concurrently (neither node had seen the other's
//! notice) are settled the same way on every node by their generations.
//! Until the older owner has processed the notice (one NATS hop), a request
//! can reach both owners; the older one answers it only if it still owns
//! the id when its client answers: a reply from a node that no longer owns
//! the id is dropped, never sent. After a lost NATS connection comes back,
//! every node announces the ids it still owns again, so claims made while it
//! was away are settled as well.
//!
//! # Operations
//!
//! The router runs its NATS client on a small tokio runtime of its own
//! (one worker thread by default), so a server on smol (or async-std) uses
//! it as one on tokio does: connect from any executor and set it on the
//! server's registry. async-nats reconnects a lost connection by itself and
//! re-subscribes what is still subscribed; the loss and the return are
//! logged (`tracing`, target `wirestream::nats`) and, with the feature
//! `metrics`, counted: `wirestream_nats_disconnects_total`,
//! `wirestream_nats_reconnects_total`, `wirestream_nats_takeovers_total`
//! (ids this node lost to a newer owner elsewhere) and
//! `wirestream_nats_stale_replies_total` (replies dropped because this node
//! no longer owned the id).
//!
//! ```no_run
//! use wirestream_nats::{NatsOptions, NatsRouter};
//! use wirestream_runtime::{Registry, Runtime, Server};
//!
//! async fn node<R: Runtime>(rt: R) -> Result<(Server<R>, NatsRouter), wirestream_nats::ConnectError> {
//!     let registry = Registry::default();
//!     // Keep the router alive as long as the node serves.
//!     let router = NatsRouter::connect("nats://127.0.0.1:4222", &registry, NatsOptions::default()).await?;
//!     // The server's sessions and its bridge share the registry.
//!     Ok((Server::new(rt).with_registry(registry), router))
//! }
//! ```
//!
//! # Subject scheme
//!
//! | subject | subscribed by | carries |
//! |---|---|---|
//! | `<prefix>.s.<hex(id)>` | the node owning `id` | server requests for `id` (JSON, request-reply) |
//! | `<prefix>.claim` | every node | claim notices, `<generation> <node> <hex(id)>` |
//! | `<prefix>.r.<node>.<token>` | node `<node>` (one `*` subscription) | heartbeats and answers to its requests |
//! | `<prefix>.sync.<node>` | nobody | a round trip to the server ("no responders"): what [`NatsRouter::settle`] waits for |
//!
//! The id is hex-encoded into one subject token, so no id (with `.`, `*`,
//! `>`, spaces, any bytes) reaches another's subject or a wildcard; ids
//! longer than [`NatsOptions::max_id_len`] (the registry's default limit,
//! 128 bytes) are never claimed nor published, so a subject stays under
//! 300 bytes. The prefix (default `wirestream`) separates clusters sharing
//! one NATS server.

#![forbid(unsafe_code)]

mod node;
mod subject;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;
use wirestream_runtime::{Config, Registry, RegistryLimits};
#[cfg(doc)]
use wirestream_runtime::{RequestFailed, SessionRouter};

use crate::node::Node;

/// The settings of a [`NatsRouter`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NatsOptions {
    /// The first tokens of every subject (default `wirestream`): ASCII
    /// letters, digits, `-` and `_`, dot-separated, at most 64 bytes.
    /// Nodes of one cluster share it.
    pub prefix: String,
    /// The deadline of a server request that has none (default: the
    /// [`Config::request_timeout`] default, 30 s).
    pub request_timeout: Duration,
    /// How often the owning node tells a waiting bridge it is still there
    /// (default 500 ms); three missed heartbeats fail the request (so a
    /// node that dies mid-request fails it within 1.5 s).
    pub heartbeat: Duration,
    /// Cross-node requests this node may have waiting at once (default
    /// 65 536); more are answered `429`.
    pub max_pending: usize,
    /// Longest session id routed, in bytes (default: the registry's
    /// default, 128).
    pub max_id_len: usize,
    /// Ids this node may own at once (default: the registry's default,
    /// 1 048 576).
    pub max_ids: usize,
    /// Worker threads of the router's own tokio runtime (default 1).
    pub worker_threads: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        let limits = RegistryLimits::default();
        Self {
            prefix: "wirestream".to_owned(),
            request_timeout: Config::default().request_timeout,
            heartbeat: Duration::from_millis(500),
            max_pending: 1 << 16,
            max_id_len: limits.max_id_len,
            max_ids: limits.max_ids,
            worker_threads: 1,
        }
    }
}

impl NatsOptions {
    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`heartbeat`](Self::heartbeat).
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets [`max_pending`](Self::max_pending).
    pub fn max_pending(mut self, max_pending: usize) -> Self {
        self.max_pending = max_pending;
        self
    }
}

/// Why [`NatsRouter::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The prefix is not a plain subject prefix (see [`NatsOptions::prefix`]).
    InvalidPrefix,
    /// The router's runtime could not start.
    Runtime(std::io::Error),
    /// NATS could not be reached, or refused a subscription.
    Nats(String),
    /// The registry already has a router.
    AlreadyRouted,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPrefix => f.write_str("the subject prefix is not plain tokens"),
            Self::Runtime(e) => write!(f, "cannot start the router's runtime: {e}"),
            Self::Nats(e) => write!(f, "NATS: {e}"),
            Self::AlreadyRouted => f.write_str("the registry already has a router"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// One node's membership of a cluster: its NATS connection and the small
/// tokio runtime it runs on, routing the server requests of the
/// [`Registry`] it was connected with. Dropping it leaves the cluster at
/// once (as a node that dies would: its subscriptions go with its
/// connection); the registry then reaches only its own connections.
pub struct NatsRouter {
    node: Arc<Node>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for NatsRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsRouter")
            .field("node", &format_args!("{:016x}", self.node.id()))
            .field("owned", &self.node.owned())
            .finish_non_exhaustive()
    }
}

impl NatsRouter {
    /// Connects to the NATS server(s) at `url` (a comma-separated list is
    /// accepted) and routes `registry`'s server requests through them
    /// ([`Registry::set_router`]). Callable from any executor.
    pub async fn connect(
        url: &str,
        registry: &Registry,
        options: NatsOptions,
    ) -> Result<Self, ConnectError> {
        if !subject::valid_prefix(&options.prefix) {
            return Err(ConnectError::InvalidPrefix);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads.max(1))
            .thread_name("wirestream-nats")
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let (tx, rx) = oneshot::channel();
        let (url, weak) = (url.to_owned(), registry.downgrade());
        let handle = runtime.handle().clone();
        runtime.spawn(async move {
            let _ = tx.send(Node::start(&url, weak, handle, options).await);
        });
        let mut router = Self {
            node: match rx.await {
                Ok(started) => started?,
                Err(_) => return Err(ConnectError::Nats("the router's runtime stopped".into())),
            },
            runtime: Some(runtime),
        };
        if registry.set_router(node::route(&router.node)).is_err() {
            router.shutdown();
            return Err(ConnectError::AlreadyRouted);
        }
        Ok(router)
    }

    /// This node's random id in the cluster (the `<node>` of its subjects).
    pub fn node_id(&self) -> u64 {
        self.node.id()
    }

    /// Session ids this node owns (and answers for).
    pub fn owned(&self) -> usize {
        self.node.owned()
    }

    /// Cross-node requests of this node waiting for an answer.
    pub fn pending(&self) -> usize {
        self.node.pending()
    }

    /// Whether the NATS connection is up.
    pub fn is_connected(&self) -> bool {
        self.node.is_connected()
    }

    /// Waits until every claim and release so far has reached the NATS
    /// server (the subscriptions and notices are in place), or `timeout`.
    /// For tests and tools; serving does not need it.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let node = self.node.clone();
        let (tx, rx) = oneshot::channel();
        if let Some(runtime) = &self.runtime {
            runtime.spawn(async move {
                let _ = tx.send(tokio::time::timeout(timeout, node.settle()).await.is_ok());
            });
        }
        rx.await.unwrap_or(false)
    }

    /// Leaves the cluster at once, as a node that dies would: every task of
    /// the router stops and its NATS connection closes without a word.
    pub fn shutdown(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for NatsRouter {
    fn drop(&mut self) {
        self.shutdown();
    }
}
