//! One node of the cluster: the ids it owns and answers for, the requests
//! it waits on, and the tasks that run them on the router's runtime.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::{Client, Event, Message, StatusCode, Subject};
use futures_channel::oneshot;
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, sleep_until};
use wirestream_runtime::async_tungstenite::tungstenite::Utf8Bytes;
use wirestream_runtime::{
    Delivery, HttpRequest, RequestFailed, Response, SessionRouter, WeakRegistry,
};

use crate::subject::{self, hex, unhex};
use crate::wire::{self, FAILED, REPLY};
use crate::{ConnectError, NatsOptions};

/// Log target of the router.
const TARGET: &str = "wirestream::nats";

/// Messages a waiting request may have queued (its answer, heartbeats).
const REPLY_QUEUE: usize = 4;

/// Heartbeats a bridge waits for before it gives the owning node up.
const MISSED_HEARTBEATS: u32 = 3;

/// A claim's place in time: a hybrid logical clock, then the node's id.
/// The larger one is the newer claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Generation {
    time: u64,
    node: u64,
}

/// An id this node owns: under which generation, and the task answering
/// on its subject.
struct Owned {
    generation: Generation,
    task: AbortHandle,
}

/// One node of the cluster.
pub(crate) struct Node {
    client: Client,
    handle: Handle,
    registry: WeakRegistry,
    id: u64,
    options: NatsOptions,
    /// Bounded by `options.max_ids`.
    owned: Mutex<HashMap<Box<str>, Owned>>,
    /// Requests waiting for an answer, by token; bounded by
    /// `options.max_pending`, and each removed when its request ends.
    pending: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    next_token: AtomicU64,
    /// The hybrid logical clock: the largest generation made or seen.
    clock: AtomicU64,
    /// Claims whose subscription and notice are not yet out.
    unsettled: watch::Sender<usize>,
    /// Whether the connection is down (set on `Disconnected`).
    down: AtomicBool,
    /// Cached `max_payload` of the server.
    max_payload: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its map consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts `name` in the `metrics` facade (feature `metrics`).
fn count(name: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = name;
}

/// The router the registry holds.
struct Route(Arc<Node>);

/// `node` as the [`SessionRouter`] of its registry.
pub(crate) fn route(node: &Arc<Node>) -> Arc<dyn SessionRouter> {
    Arc::new(Route(node.clone()))
}

impl SessionRouter for Route {
    fn claim(&self, id: &str) {
        self.0.claim(id);
    }

    fn release(&self, id: &str) {
        self.0.release(id);
    }

    fn deliver(&self, id: &str, request: HttpRequest) -> Delivery {
        let node = self.0.clone();
        let id = id.to_owned();
        Box::pin(async move {
            // On a tokio runtime (which has timers: wirestream-tokio's
            // sessions need them), the request runs on the caller's task;
            // on any other executor, on the router's runtime.
            if Handle::try_current().is_ok() {
                return node.ask(&id, request).await;
            }
            let (tx, rx) = oneshot::channel();
            let asker = node.clone();
            node.handle.spawn(async move {
                let _ = tx.send(asker.ask(&id, request).await);
            });
            // The runtime is gone (the router was dropped): no node reachable.
            rx.await.unwrap_or(Err(RequestFailed::UnknownSession))
        })
    }
}

/// Decrements the count of unsettled claims when dropped (the claim's task
/// is out, ended or aborted).
struct Unsettled(Arc<Node>);

impl Drop for Unsettled {
    fn drop(&mut self) {
        self.0.unsettled.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Removes a waiting request's entry when it ends, however it ends.
struct Waiting<'a> {
    node: &'a Node,
    token: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.node.pending).remove(&self.token);
    }
}

impl Node {
    /// Connects, subscribes to the claim notices and to this node's
    /// replies, and starts their tasks.
    pub(crate) async fn start(
        url: &str,
        registry: WeakRegistry,
        handle: Handle,
        options: NatsOptions,
    ) -> Result<Arc<Self>, ConnectError> {
        let nats = |e: &dyn std::fmt::Display| ConnectError::Nats(e.to_string());
        let id = random_u64().map_err(|e| nats(&e))?;
        let events: Arc<OnceLock<Weak<Node>>> = Arc::default();
        let on_event = events.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("wirestream-{id:016x}"))
            .event_callback(move |event| {
                let node = on_event.get().and_then(Weak::upgrade);
                async move {
                    if let Some(node) = node {
                        node.on_event(event).await;
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| nats(&e))?;
        let claims = client
            .subscribe(subject::claims(&options.prefix))
            .await
            .map_err(|e| nats(&e))?;
        let replies = client
            .subscribe(subject::replies(&options.prefix, id))
            .await
            .map_err(|e| nats(&e))?;
        let max_payload = client.server_info().max_payload;
        let node = Arc::new(Self {
            client,
            handle: handle.clone(),
            registry,
            id,
            options,
            owned: Mutex::default(),
            pending: Mutex::default(),
            next_token: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            unsettled: watch::Sender::new(0),
            down: AtomicBool::new(false),
            max_payload,
        });
        let _ = events.set(Arc::downgrade(&node));
        // The subscriptions are in place at the server before any request.
        node.round_trip().await;
        handle.spawn(node.clone().take_claims(claims));
        handle.spawn(node.clone().take_replies(replies));
        tracing::info!(target: TARGET, node = %format_args!("{id:016x}"), "joined the cluster at {url}");
        Ok(node)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn owned(&self) -> usize {
        lock(&self.owned).len()
    }

    pub(crate) fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Completes once every claim's subscription and notice are out and the
    /// server has read everything sent so far.
    pub(crate) async fn settle(&self) {
        let mut unsettled = self.unsettled.subscribe();
        let _ = unsettled.wait_for(|n| *n == 0).await;
        self.round_trip().await;
    }

    /// Completes once the server has processed everything this node sent
    /// before (a flush only writes to the socket): a request nobody
    /// answers, which the server answers "no responders" in order.
    async fn round_trip(&self) {
        let nobody = format!("{}.sync.{:016x}", self.options.prefix, self.id);
        let _ = self.client.request(nobody, Default::default()).await;
    }

    /// A new generation for a claim made now.
    fn generation(&self) -> Generation {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let previous = self
            .clock
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(now.max(c.saturating_add(1)))
            })
            .unwrap_or_else(|c| c);
        Generation {
            time: now.max(previous.saturating_add(1)),
            node: self.id,
        }
    }

    /// Whether this node still owns `id` under `generation`.
    fn owns(&self, id: &str, generation: Generation) -> bool {
        lock(&self.owned)
            .get(id)
            .is_some_and(|owned| owned.generation == generation)
    }

    /// A connection of this node now owns `id`: subscribe to its subject,
    /// then announce the claim.
    fn claim(self: &Arc<Self>, id: &str) {
        if id.is_empty() || id.len() > self.options.max_id_len {
            return;
        }
        let mut owned = lock(&self.owned);
        if owned.contains_key(id) {
            // A newer connection of this node: still this node's.
            return;
        }
        if owned.len() >= self.options.max_ids {
            tracing::warn!(target: TARGET, "too many session ids owned; {id:?} is reachable on this node only");
            return;
        }
        let generation = self.generation();
        self.unsettled.send_modify(|n| *n += 1);
        let unsettled = Unsettled(self.clone());
        let task = self.handle.spawn(
            self.clone()
                .answer_for(id.to_owned(), generation, unsettled),
        );
        owned.insert(
            id.into(),
            Owned {
                generation,
                task: task.abort_handle(),
            },
        );
    }

    /// No connection of this node owns `id` any more: unsubscribe.
    fn release(&self, id: &str) {
        let removed = lock(&self.owned).remove(id);
        if let Some(owned) = removed {
            // Dropping the subscription unsubscribes.
            owned.task.abort();
        }
    }

    /// Subscribes to `id`'s subject, announces the claim, then answers every
    /// request published there while this node owns `id` under
    /// `generation`.
    async fn answer_for(self: Arc<Self>, id: String, generation: Generation, unsettled: Unsettled) {
        let subject = subject::session(&self.options.prefix, &id);
        let mut requests = match self.client.subscribe(subject).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::warn!(target: TARGET, "cannot subscribe for a session id: {e}");
                return;
            }
        };
        self.announce(&id, generation).await;
        drop(unsettled);
        while let Some(message) = requests.next().await {
            let Some(reply) = message.reply else {
                continue;
            };
            if self.owns(&id, generation) {
                let node = self.clone();
                let id = id.clone();
                self.handle.spawn(async move {
                    node.answer(&id, generation, reply, &message.payload).await;
                });
            }
        }
    }

    /// Publishes the claim notice of `id`.
    async fn announce(&self, id: &str, generation: Generation) {
        let notice = format!(
            "{} {:016x} {}",
            generation.time,
            generation.node,
            hex(id.as_bytes())
        );
        let claims = subject::claims(&self.options.prefix);
        if let Err(e) = self.client.publish(claims, notice.into()).await {
            tracing::warn!(target: TARGET, "cannot announce a claim: {e}");
        }
    }

    /// Forwards one request to the client of this node that owns `id`,
    /// with heartbeats to the asker while it waits, and publishes the answer
    /// on `reply` unless this node no longer owns `id` by then.
    async fn answer(&self, id: &str, generation: Generation, reply: Subject, payload: &[u8]) {
        let outcome = match (wire::decode_request(payload), self.registry.upgrade()) {
            (Some(request), Some(registry)) => {
                let mut work = pin!(registry.request_local(id, request));
                let period = self.options.heartbeat;
                let mut beats = tokio::time::interval_at(Instant::now() + period, period);
                loop {
                    tokio::select! {
                        outcome = &mut work => break outcome,
                        _ = beats.tick() => {
                            if self.owns(id, generation) {
                                let heartbeat = wire::reply_headers("hb");
                                let _ = self.client.publish_with_headers(reply.clone(), heartbeat, Default::default()).await;
                            }
                        }
                    }
                }
            }
            // Not a request a node of this version sends.
            (None, _) => Err(RequestFailed::SessionEnded),
            (_, None) => Err(RequestFailed::UnknownSession),
        };
        if !self.owns(id, generation) {
            // A newer connection elsewhere owns the id: its answer counts.
            count("wirestream_nats_stale_replies_total");
            tracing::debug!(target: TARGET, "dropped the reply of a session id owned elsewhere now");
            return;
        }
        let sent = match outcome {
            Ok(response) => {
                let frame: Utf8Bytes = response.into_text();
                if frame.len() > self.max_payload {
                    let failed = wire::failed_headers(&RequestFailed::TooLarge);
                    self.client
                        .publish_with_headers(reply, failed, Default::default())
                        .await
                } else {
                    let ok = wire::reply_headers("ok");
                    self.client
                        .publish_with_headers(reply, ok, frame.into())
                        .await
                }
            }
            Err(failed) => {
                let failed = wire::failed_headers(&failed);
                self.client
                    .publish_with_headers(reply, failed, Default::default())
                    .await
            }
        };
        if let Err(e) = sent {
            tracing::debug!(target: TARGET, "cannot send a reply: {e}");
        }
    }

    /// Asks the node that owns `id` (through its subject) and awaits its
    /// answer, the deadline, or the owner's silence.
    async fn ask(&self, id: &str, request: HttpRequest) -> Result<Response, RequestFailed> {
        if id.is_empty() || id.len() > self.options.max_id_len {
            // Never claimed by any node.
            return Err(RequestFailed::UnknownSession);
        }
        let timeout = request.timeout.unwrap_or(self.options.request_timeout);
        let deadline = Instant::now().checked_add(timeout);
        let payload =
            wire::encode_request(&request, timeout).map_err(|_| RequestFailed::SessionEnded)?;
        drop(request);
        if payload.len() > self.max_payload {
            return Err(RequestFailed::TooLarge);
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, mut answers) = mpsc::channel(REPLY_QUEUE);
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= self.options.max_pending {
                return Err(RequestFailed::TooManyRequests);
            }
            pending.insert(token, tx);
        }
        let _waiting = Waiting { node: self, token };
        let subject = subject::session(&self.options.prefix, id);
        let reply = subject::reply(&self.options.prefix, self.id, token);
        self.client
            .publish_with_reply(subject, reply, payload.into())
            .await
            // Not connected to NATS: no node reachable.
            .map_err(|_| RequestFailed::UnknownSession)?;
        let patience = self.options.heartbeat * MISSED_HEARTBEATS;
        let mut silence = pin!(sleep_until(Instant::now() + patience));
        let mut expiry = pin!(async {
            match deadline {
                Some(deadline) => sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        });
        loop {
            let message = tokio::select! {
                biased;
                message = answers.recv() => message,
                () = &mut expiry => return Err(RequestFailed::TimedOut),
                // The owner died (its heartbeats stopped) or let the id go.
                () = &mut silence => return Err(RequestFailed::SessionEnded),
            };
            let Some(message) = message else {
                return Err(RequestFailed::SessionEnded);
            };
            if message.status == Some(StatusCode::NO_RESPONDERS) {
                return Err(RequestFailed::UnknownSession);
            }
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(name))
                    .map(|value| value.as_str().to_owned())
            };
            match header(REPLY).as_deref() {
                Some("hb") => silence.as_mut().reset(Instant::now() + patience),
                Some("ok") => {
                    let text = Utf8Bytes::try_from(message.payload)
                        .map_err(|_| RequestFailed::SessionEnded)?;
                    return Response::parse(text).ok_or(RequestFailed::SessionEnded);
                }
                Some("err") => {
                    return Err(wire::failure_of(header(FAILED).as_deref().unwrap_or("")));
                }
                // Not a message of this protocol: ignored.
                _ => {}
            }
        }
    }

    /// Routes the answers and heartbeats sent to this node to the requests
    /// waiting for them.
    async fn take_replies(self: Arc<Self>, mut replies: async_nats::Subscriber) {
        while let Some(message) = replies.next().await {
            let token = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|t| u64::from_str_radix(t, 16).ok());
            let waiting = token.and_then(|token| lock(&self.pending).get(&token).cloned());
            if let Some(waiting) = waiting {
                // A full queue holds an answer already: a heartbeat more is moot.
                let _ = waiting.try_send(message);
            }
        }
    }

    /// Reads the claim notices of every node: an id this node owns under an
    /// older generation is given up to the newer claim.
    async fn take_claims(self: Arc<Self>, mut claims: async_nats::Subscriber) {
        while let Some(message) = claims.next().await {
            let Some((generation, id)) = notice(&message.payload) else {
                continue;
            };
            self.clock.fetch_max(generation.time, Ordering::AcqRel);
            if generation.node == self.id {
                continue;
            }
            let lost = {
                let mut owned = lock(&self.owned);
                match owned.get(&*id) {
                    Some(mine) if mine.generation < generation => owned.remove(&*id),
                    _ => None,
                }
            };
            if let Some(lost) = lost {
                lost.task.abort();
                count("wirestream_nats_takeovers_total");
                tracing::debug!(target: TARGET, by = %format_args!("{:016x}", generation.node), "a session id was taken over on another node");
                if let Some(registry) = self.registry.upgrade() {
                    registry.evict(&id);
                }
            }
        }
    }

    /// Reports the connection's loss and return; on return, announces every
    /// id still owned again, so that claims made meanwhile are settled.
    async fn on_event(&self, event: Event) {
        match event {
            Event::Disconnected => {
                self.down.store(true, Ordering::Release);
                count("wirestream_nats_disconnects_total");
                tracing::warn!(target: TARGET, "lost the NATS connection; reconnecting");
            }
            Event::Connected => {
                if self.down.swap(false, Ordering::AcqRel) {
                    count("wirestream_nats_reconnects_total");
                    let owned: Vec<(String, Generation)> = lock(&self.owned)
                        .iter()
                        .map(|(id, owned)| (id.to_string(), owned.generation))
                        .collect();
                    tracing::info!(target: TARGET, ids = owned.len(), "NATS connection back; announcing the ids owned");
                    for (id, generation) in owned {
                        self.announce(&id, generation).await;
                    }
                }
            }
            other => tracing::debug!(target: TARGET, "NATS: {other}"),
        }
    }
}

/// A claim notice: `<time> <node hex> <id hex>`.
fn notice(payload: &[u8]) -> Option<(Generation, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(' ');
    let time = parts.next()?.parse().ok()?;
    let node = u64::from_str_radix(parts.next()?, 16).ok()?;
    let id = String::from_utf8(unhex(parts.next()?)?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((Generation { time, node }, id))
}

/// 64 bits from the operating system's CSPRNG.
fn random_u64() -> Result<u64, getrandom::Error> {
    let mut bytes = [0; 8];
    getrandom::fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_and_junk_is_refused() {
        let id = "a.b *>";
        let text = format!("42 {:016x} {}", 7, hex(id.as_bytes()));
        let (generation, back) = notice(text.as_bytes()).unwrap();
        assert_eq!(generation, Generation { time: 42, node: 7 });
        assert_eq!(back, id);
        for junk in ["", "42", "x 7 00", "42 7 0", "42 7 00 extra", "42 zz 00"] {
            assert!(notice(junk.as_bytes()).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn newer_generations_compare_larger() {
        let older = Generation { time: 1, node: 9 };
        let newer = Generation { time: 2, node: 1 };
        assert!(older < newer);
        assert!(Generation { time: 2, node: 0 } < newer);
    }
}
