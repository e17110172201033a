//! The process-wide session registry (PROTOCOL.md §4) behind one lock:
//! server requests addressed by session id, and each served connection's
//! place in it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use futures_channel::oneshot;
use futures_util::SinkExt;
use wirestream_proto::{ConnectionId, Registered, RegistryError, RegistryLimits};

use crate::random::OsRandom;
use crate::router::SessionRouter;
use crate::server_request::{HttpRequest, Mailbox, Outgoing, RequestFailed, Response};
use crate::telemetry;

/// The process-wide registry of session ids (PROTOCOL.md §4): a cloneable
/// handle to one [`wirestream_proto::Registry`] behind one lock (never held
/// across an await).
///
/// Connections attach themselves when served and detach when their driver
/// ends, whatever the reason; the ids they own go with them. Look an id up
/// with [`request`](Self::request) to send its client a server request.
///
/// ```
/// use wirestream_runtime::{HttpRequest, Registry, RequestFailed};
///
/// let registry = Registry::default(); // share it: `Server::with_registry`
/// assert!(registry.is_empty());
/// assert!(!registry.contains("sess-unknown"));
///
/// // An HTTP bridge: forward a request to the client owning `session_id`.
/// async fn bridge(registry: &Registry, session_id: &str) -> u16 {
///     match registry.request(session_id, HttpRequest::new("POST")).await {
///         Ok(response) => response.status().unwrap_or(502),
///         Err(failed) => failed.http_status(), // e.g. 503 for RequestFailed::UnknownSession
///     }
/// }
/// # let _ = bridge;
/// # let _ = RequestFailed::UnknownSession;
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Shared>,
}

/// What every clone of a [`Registry`] shares.
#[derive(Default)]
struct Shared {
    table: Mutex<wirestream_proto::Registry<Mailbox>>,
    /// Where ids this node does not hold live (none: one node).
    router: OnceLock<Arc<dyn SessionRouter>>,
}

/// A [`Registry`] that does not keep it alive (what a router holds, so that
/// the registry and its router do not own each other).
#[derive(Clone, Debug, Default)]
pub struct WeakRegistry {
    inner: Weak<Shared>,
}

impl WeakRegistry {
    /// The registry, if a clone of it is still alive.
    pub fn upgrade(&self) -> Option<Registry> {
        self.inner.upgrade().map(|inner| Registry { inner })
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.lock();
        f.debug_struct("Registry")
            .field("connections", &registry.connections())
            .field("session_ids", &registry.len())
            .field("routed", &self.is_routed())
            .finish()
    }
}

impl Registry {
    /// An empty registry with these limits.
    pub fn new(limits: RegistryLimits) -> Self {
        Self {
            inner: Arc::new(Shared {
                table: Mutex::new(wirestream_proto::Registry::new(limits)),
                router: OnceLock::new(),
            }),
        }
    }

    /// Routes the ids no connection of this registry holds through `router`
    /// (see [`SessionRouter`]), and tells it of every id this registry's
    /// connections come to own or give up. Set it before serving: ids
    /// registered earlier are not claimed. Once only: a second router is
    /// handed back.
    pub fn set_router(&self, router: Arc<dyn SessionRouter>) -> Result<(), Arc<dyn SessionRouter>> {
        self.inner.router.set(router)
    }

    /// Whether a router was set ([`set_router`](Self::set_router)).
    pub fn is_routed(&self) -> bool {
        self.inner.router.get().is_some()
    }

    /// A handle that does not keep the registry alive.
    pub fn downgrade(&self) -> WeakRegistry {
        WeakRegistry {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Removes `id` from the connection of this registry that owns it,
    /// without telling the router (which calls it when a connection of
    /// another node took `id` over). `false` if no connection owned it.
    pub fn evict(&self, id: &str) -> bool {
        self.counting(|registry| match registry.lookup(id) {
            Some((conn, _)) => registry.unregister(conn, id),
            None => false,
        })
    }

    /// The router, if one was set.
    fn router(&self) -> Option<&Arc<dyn SessionRouter>> {
        self.inner.router.get()
    }

    /// Runs `change` under the lock, following the count of ids in the
    /// `wirestream_session_ids` gauge.
    fn counting<T>(&self, change: impl FnOnce(&mut wirestream_proto::Registry<Mailbox>) -> T) -> T {
        let mut registry = self.lock();
        let before = registry.len();
        let changed = change(&mut registry);
        telemetry::session_ids(before, registry.len());
        changed
    }

    fn lock(&self) -> MutexGuard<'_, wirestream_proto::Registry<Mailbox>> {
        // The registry's operations leave it consistent even if a holder panicked.
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the client that owns `session_id` a server request and awaits
    /// its response, its deadline, or its connection's end. An id no
    /// connection of this registry owns goes through the
    /// [router](Self::set_router), if any, to the node that owns it.
    pub async fn request(
        &self,
        session_id: &str,
        request: HttpRequest,
    ) -> Result<Response, RequestFailed> {
        let Some(router) = self.router() else {
            return self.request_local(session_id, request).await;
        };
        if !self.contains(session_id) {
            let delivery = router.deliver(session_id, request);
            return telemetry::server_request(true, delivery).await;
        }
        // Owned here when looked up: a takeover in between answers 503.
        self.request_local(session_id, request).await
    }

    /// [`request`](Self::request) to a connection of this registry only,
    /// never through the router.
    pub async fn request_local(
        &self,
        session_id: &str,
        request: HttpRequest,
    ) -> Result<Response, RequestFailed> {
        telemetry::server_request(true, self.forward(session_id, request)).await
    }

    async fn forward(
        &self,
        session_id: &str,
        request: HttpRequest,
    ) -> Result<Response, RequestFailed> {
        let (reply, answer) = oneshot::channel();
        let outgoing = Outgoing { request, reply };
        // Usually the mailbox has room: post under the lock, without
        // waiting; otherwise wait for room on a clone, outside it.
        let full = {
            let mut registry = self.lock();
            let conn = registry
                .lookup(session_id)
                .map(|(conn, _)| conn)
                .ok_or(RequestFailed::UnknownSession)?;
            let mailbox = registry
                .get_mut(conn)
                .ok_or(RequestFailed::UnknownSession)?;
            match mailbox.try_send(outgoing) {
                Ok(()) => None,
                Err(e) if e.is_full() => Some((mailbox.clone(), e.into_inner())),
                Err(_) => return Err(RequestFailed::SessionEnded),
            }
        };
        if let Some((mut mailbox, outgoing)) = full {
            mailbox
                .send(outgoing)
                .await
                .map_err(|_| RequestFailed::SessionEnded)?;
        }
        // A driver that ends drops the request: the session ended.
        answer.await.unwrap_or(Err(RequestFailed::SessionEnded))
    }

    /// Whether a live connection owns `session_id`.
    pub fn contains(&self, session_id: &str) -> bool {
        self.lock().lookup(session_id).is_some()
    }

    /// Session ids registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is attached and no id registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Connections attached.
    pub fn connections(&self) -> usize {
        self.lock().connections()
    }

    pub(crate) fn attach(&self, mailbox: Mailbox) -> Result<Attached, RegistryError> {
        let conn = self.lock().attach(mailbox)?;
        Ok(Attached {
            registry: self.clone(),
            conn,
        })
    }

    pub(crate) fn register(
        &self,
        conn: ConnectionId,
        id: &str,
    ) -> Result<Registered, RegistryError> {
        let registered = self.counting(|registry| registry.register(conn, id))?;
        if let (Some(router), Registered::New | Registered::TookOver(_)) =
            (self.router(), registered)
        {
            router.claim(id);
        }
        Ok(registered)
    }

    pub(crate) fn mint(&self, conn: ConnectionId) -> Result<String, RegistryError> {
        let id = self.counting(|registry| registry.mint(conn, &mut OsRandom::new()))?;
        if let Some(router) = self.router() {
            router.claim(&id);
        }
        Ok(id)
    }

    pub(crate) fn unregister(&self, conn: ConnectionId, id: &str) -> bool {
        let removed = self.counting(|registry| registry.unregister(conn, id));
        if let (true, Some(router)) = (removed, self.router()) {
            router.release(id);
        }
        removed
    }
}

/// A connection's place in the registry; detaches it (and every id it still
/// owns) when dropped, so no exit path can leak an entry.
#[derive(Debug)]
pub(crate) struct Attached {
    registry: Registry,
    conn: ConnectionId,
}

impl Attached {
    pub(crate) fn id(&self) -> ConnectionId {
        self.conn
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let router = self.registry.router();
        let released: Vec<Box<str>> = self.registry.counting(|registry| {
            // Only a router needs to hear of them.
            let owned = match router {
                Some(_) => registry.ids_of(self.conn).map(Box::from).collect(),
                None => Vec::new(),
            };
            registry.detach(self.conn);
            owned
        });
        if let Some(router) = router {
            for id in &released {
                router.release(id);
            }
        }
    }
}
