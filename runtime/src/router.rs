//! The routing seam (PROTOCOL.md §4): how a [`Registry`] reaches session
//! ids owned by connections of other nodes.

use std::future::Future;
use std::pin::Pin;

use crate::registry::Registry;
use crate::server_request::{HttpRequest, RequestFailed, Response};

/// A server request on its way to the node that owns its session id.
pub type Delivery = Pin<Box<dyn Future<Output = Result<Response, RequestFailed>> + Send>>;

/// Where session ids live beyond this process: the seam between the
/// [`Registry`] (and so the bridge) and a cluster.
///
/// The registry calls [`claim`](Self::claim) when a connection of this node
/// comes to own an id, [`release`](Self::release) when none owns it any
/// more, and [`deliver`](Self::deliver) for a server request to an id no
/// connection of this node owns. It calls them outside its lock, in the
/// order of the changes. A router that learns that a connection of another
/// node took an id over removes it here with [`Registry::evict`].
///
/// The `Registry` itself is the embedded default, for one node: it claims
/// nothing beyond the process and delivers only to its own connections, so
/// an id it does not hold is [`RequestFailed::UnknownSession`]. A cluster
/// router (the `wirestream-nats` crate) is set with
/// [`Registry::set_router`].
///
/// ```
/// use wirestream_runtime::{Delivery, HttpRequest, RequestFailed, SessionRouter};
///
/// /// A router for a cluster of one: nothing lives elsewhere.
/// struct Alone;
///
/// impl SessionRouter for Alone {
///     fn claim(&self, _id: &str) {}
///     fn release(&self, _id: &str) {}
///     fn deliver(&self, _id: &str, _request: HttpRequest) -> Delivery {
///         Box::pin(async { Err(RequestFailed::UnknownSession) })
///     }
/// }
/// ```
pub trait SessionRouter: Send + Sync + 'static {
    /// A connection of this node now owns `id` (registered, minted, or
    /// taken over from another connection of this node). Called again for
    /// an id this node already owns when a newer connection of this node
    /// takes it over.
    fn claim(&self, id: &str);

    /// No connection of this node owns `id` any more: unregistered, its
    /// connection ended, or [evicted](Registry::evict).
    fn release(&self, id: &str);

    /// Delivers `request` to the client of the node that owns `id` (no
    /// connection of this node does), within `request.timeout` (the
    /// router's default when `None`), and returns its answer.
    fn deliver(&self, id: &str, request: HttpRequest) -> Delivery;
}

impl SessionRouter for Registry {
    /// The registry knows its own claims.
    fn claim(&self, _id: &str) {}

    /// The registry knows its own releases.
    fn release(&self, _id: &str) {}

    /// Delivers to a connection of this registry only (never through its
    /// router): what a cluster router calls on the node that owns `id`.
    fn deliver(&self, id: &str, request: HttpRequest) -> Delivery {
        let registry = self.clone();
        let id = id.to_owned();
        Box::pin(async move { registry.request_local(&id, request).await })
    }
}
