//! Who is calling: the HTTP request a session was opened with, the peer's
//! address, and what the accept check attached to it.

use std::any::Any;
use std::net::SocketAddr;

use async_tungstenite::tungstenite::handshake::server::Request;
use async_tungstenite::tungstenite::http::{Extensions, HeaderMap, Uri};

/// The HTTP request a session was opened with (for a WebSocket, the
/// upgrade request), the peer's address, and the values the accept check
/// attached (an authenticated identity, say). A handler reads it with
/// [`Session::caller`](crate::Session::caller).
///
/// [`Server::listen`](crate::Server::listen) and
/// [`Server::accept_with_caller`](crate::Server::accept_with_caller) fill it
/// in; for [`Server::serve_detached_with_caller`](crate::Server::serve_detached_with_caller)
/// the HTTP server supplies what it has. A session served without one
/// ([`Server::serve`](crate::Server::serve)) gets an empty caller (path
/// `/`, no headers, no peer).
///
/// ```
/// use wirestream_runtime::Caller;
/// use wirestream_runtime::tungstenite::http::Request;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct User(String);
///
/// let request = Request::get("/agent/completions?x=1")
///     .header("authorization", "Bearer t0k3n")
///     .body(())
///     .unwrap();
/// let caller = Caller::from_request(&request)
///     .with_peer("127.0.0.1:5000".parse().unwrap())
///     .with_extension(User("alice".into()));
/// assert_eq!(caller.path(), "/agent/completions");
/// assert_eq!(caller.query(), Some("x=1"));
/// assert_eq!(caller.header("Authorization"), Some("Bearer t0k3n"));
/// assert_eq!(caller.extension::<User>(), Some(&User("alice".into())));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Caller {
    /// The request's URI (path and query; a server sees no scheme or host
    /// there).
    pub uri: Uri,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
    /// Typed values attached to the request: what the accept check returned
    /// (see [`Server::listen`](crate::Server::listen)), or what the HTTP
    /// server put there.
    pub extensions: Extensions,
}

impl Caller {
    /// An empty caller: path `/`, no headers, no peer, no extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// The URI and headers of `request` (its body and extensions are not
    /// taken).
    pub fn from_request<T>(request: &async_tungstenite::tungstenite::http::Request<T>) -> Self {
        Self {
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            ..Self::default()
        }
    }

    /// Sets the peer's address.
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Attaches `value` (replacing one of the same type).
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The request's path.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The request's query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The first value of the header `name` (in any case), if it is
    /// visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The value of type `T` attached to the request, if any.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.get::<T>()
    }

    /// The caller of a WebSocket upgrade `request` from `peer`, with the
    /// value the accept check returned (nothing for `()`).
    pub(crate) fn accepted<A: Clone + Send + Sync + 'static>(
        request: &Request,
        peer: Option<SocketAddr>,
        value: A,
    ) -> Self {
        let mut caller = Self::from_request(request);
        caller.peer = peer;
        if (&value as &dyn Any).downcast_ref::<()>().is_none() {
            caller.extensions.insert(value);
        }
        caller
    }
}
