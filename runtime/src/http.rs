//! Helpers for serving the streaming route from an HTTP server
//! (PROTOCOL.md §1).

use async_tungstenite::tungstenite::http::HeaderMap;
use serde_json::value::RawValue;
use wirestream_proto::{Transport, body_wants_stream};

/// Selects how to serve one request on the streaming route: a WebSocket
/// when it asks for an upgrade (`Upgrade: websocket`, in any case, among
/// other tokens), otherwise Server-Sent Events when the JSON `body` says
/// `"stream": true`, otherwise one JSON response. `body` is only read for a
/// request that is not an upgrade; pass an empty slice before it is read.
///
/// ```
/// use wirestream_runtime::tungstenite::http::{HeaderMap, HeaderValue, header};
/// use wirestream_runtime::{Transport, select_transport};
///
/// let mut upgrade = HeaderMap::new();
/// upgrade.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
/// assert_eq!(select_transport(&upgrade, b""), Transport::WebSocket);
///
/// let post = HeaderMap::new();
/// assert_eq!(select_transport(&post, br#"{"stream": true}"#), Transport::Sse);
/// assert_eq!(select_transport(&post, br#"{"messages": []}"#), Transport::Unary);
/// ```
pub fn select_transport(headers: &HeaderMap, body: &[u8]) -> Transport {
    wirestream_proto::select_transport(headers, body_wants_stream(body))
}

/// One Server-Sent Events event carrying `data` (a chunk, or the error
/// frame that ends a failed stream): `data: <json>\n\n`. Serialized JSON
/// has no raw newline, so one `data:` line holds it.
///
/// ```
/// use wirestream_runtime::sse_event;
///
/// let chunk = serde_json::value::to_raw_value(&serde_json::json!({"id": "agc-1", "text": "a\nb"}))?;
/// assert_eq!(sse_event(&chunk), "data: {\"id\":\"agc-1\",\"text\":\"a\\nb\"}\n\n");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn sse_event(data: &RawValue) -> String {
    let json = data.get();
    let mut event = String::with_capacity(json.len() + 8);
    event.push_str("data: ");
    event.push_str(json);
    event.push_str("\n\n");
    event
}

/// The builder methods HTTP requests and responses share (both have
/// `headers: Headers<'static>` and `body: Option<Box<RawValue>>`).
macro_rules! http_message_builders {
    ($type:ty) => {
        impl $type {
            /// Adds a header.
            pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
                self.headers.push(name.into(), value.into());
                self
            }

            /// Sets the body to `body` serialized as JSON.
            pub fn json<T: serde::Serialize + ?Sized>(
                mut self,
                body: &T,
            ) -> Result<Self, serde_json::Error> {
                self.body = Some(serde_json::value::to_raw_value(body)?);
                Ok(self)
            }

            /// Sets the body to raw JSON.
            pub fn raw_body(mut self, body: Box<serde_json::value::RawValue>) -> Self {
                self.body = Some(body);
                self
            }
        }
    };
}
pub(crate) use http_message_builders;
