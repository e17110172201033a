//! The frames of PROTOCOL.md §2.2 and §3 as values, and their exact
//! serialization.
//!
//! Every type borrows from the frame it was parsed from (`'a`) and can be made
//! owned with `into_owned`. Payloads the application parses itself
//! (`content`, `body`, an error's `message`) stay raw JSON ([`RawValue`]),
//! never a `serde_json::Value` tree. Parsing is done by
//! [`classify`](crate::classify), in one pass per frame.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// Raw JSON text, borrowed from a frame or owned; validated, never parsed
/// into a tree. Compares by its text.
#[derive(Clone, Debug)]
pub struct Json<'a>(Cow<'a, RawValue>);

impl<'a> Json<'a> {
    /// Borrows a raw value.
    pub fn borrowed(raw: &'a RawValue) -> Self {
        Self(Cow::Borrowed(raw))
    }

    /// Takes an owned raw value.
    pub fn owned(raw: Box<RawValue>) -> Json<'static> {
        Json(Cow::Owned(raw))
    }

    /// Serializes `value` once into owned raw JSON.
    pub fn from_value<T: Serialize + ?Sized>(
        value: &T,
    ) -> Result<Json<'static>, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Json::owned)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The raw value.
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// Parses the text as `T`.
    pub fn parse<'de, T: serde::Deserialize<'de>>(&'de self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// Detaches the value from the frame it was parsed from.
    pub fn into_owned(self) -> Json<'static> {
        Json(Cow::Owned(self.0.into_owned()))
    }
}

impl PartialEq for Json<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Json<'_> {}

impl Default for Json<'_> {
    /// `null`.
    fn default() -> Self {
        Self(Cow::Borrowed(RawValue::NULL))
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

fn own_json(j: Json<'_>) -> Json<'static> {
    j.into_owned()
}

fn own_str(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

/// An HTTP header map in wire order (duplicates kept as they came), names
/// and values as strings.
///
/// Parsed headers borrow from their frame; owned ones are packed into one
/// buffer (two allocations however many headers there are).
#[derive(Clone, Default)]
pub struct Headers<'a>(Repr<'a>);

#[derive(Clone)]
enum Repr<'a> {
    Pairs(Vec<(Cow<'a, str>, Cow<'a, str>)>),
    /// `buf` holds name, value, name, value, …; `ends[i]` is where the i-th
    /// name and value end.
    Packed {
        buf: Box<str>,
        ends: Box<[(usize, usize)]>,
    },
}

impl Default for Repr<'_> {
    fn default() -> Self {
        Self::Pairs(Vec::new())
    }
}

impl<'a> Headers<'a> {
    /// No headers.
    pub const fn new() -> Self {
        Self(Repr::Pairs(Vec::new()))
    }

    pub(crate) fn from_pairs(pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> Self {
        Self(Repr::Pairs(pairs))
    }

    /// How many (name, value) pairs.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Pairs(p) => p.len(),
            Repr::Packed { ends, .. } => ends.len(),
        }
    }

    /// Whether there are no headers (the key is then omitted on the wire).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        if let Repr::Packed { .. } = self.0 {
            let pairs = self
                .iter()
                .map(|(k, v)| (Cow::Owned(k.to_owned()), Cow::Owned(v.to_owned())))
                .collect();
            self.0 = Repr::Pairs(pairs);
        }
        if let Repr::Pairs(p) = &mut self.0 {
            p.push((name.into(), value.into()));
        }
    }

    /// The first value of `name`, compared ASCII case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Iterates over the (name, value) pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let (pairs, packed) = match &self.0 {
            Repr::Pairs(p) => (p.as_slice(), None),
            Repr::Packed { buf, ends } => (&[][..], Some((&**buf, &**ends))),
        };
        let packed = packed.into_iter().flat_map(|(buf, ends)| {
            let mut start = 0;
            ends.iter().map(move |&(name_end, value_end)| {
                let name = buf.get(start..name_end).unwrap_or_default();
                let value = buf.get(name_end..value_end).unwrap_or_default();
                start = value_end;
                (name, value)
            })
        });
        pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .chain(packed)
    }

    /// Detaches the map from the frame it was parsed from.
    pub fn into_owned(self) -> Headers<'static> {
        if let Repr::Packed { buf, ends } = self.0 {
            return Headers(Repr::Packed { buf, ends });
        }
        let total = self.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut buf = String::with_capacity(total);
        let mut ends = Vec::with_capacity(self.len());
        for (k, v) in self.iter() {
            buf.push_str(k);
            let name_end = buf.len();
            buf.push_str(v);
            ends.push((name_end, buf.len()));
        }
        Headers(Repr::Packed {
            buf: buf.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        })
    }
}

impl PartialEq for Headers<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers<'_> {}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a, K: Into<Cow<'a, str>>, V: Into<Cow<'a, str>>> FromIterator<(K, V)> for Headers<'a> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A client → server request (PROTOCOL.md §3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest<'a> {
    /// Minted by the client, unique among its in-flight requests.
    pub id: Cow<'a, str>,
    /// What is asked.
    pub kind: ClientRequestKind<'a>,
}

/// The `type`-tagged part of a [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientRequestKind<'a> {
    /// `agent_completion_notify`: hand `content` to the running agent
    /// completion `response_id`.
    AgentCompletionNotify {
        /// The id of an agent completion this session has sent in a chunk.
        response_id: Cow<'a, str>,
        /// A JSON string or an array of typed parts, passed through untouched.
        content: Json<'a>,
    },
}

impl ClientRequestKind<'_> {
    /// The wire `type` tag.
    pub fn tag(&self) -> &'static str {
        match self {
            Self::AgentCompletionNotify { .. } => "agent_completion_notify",
        }
    }
}

impl ClientRequest<'_> {
    /// Detaches the request from the frame it was parsed from.
    pub fn into_owned(self) -> ClientRequest<'static> {
        ClientRequest {
            id: own_str(self.id),
            kind: match self.kind {
                ClientRequestKind::AgentCompletionNotify {
                    response_id,
                    content,
                } => ClientRequestKind::AgentCompletionNotify {
                    response_id: own_str(response_id),
                    content: own_json(content),
                },
            },
        }
    }
}

impl Serialize for ClientRequest<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("type", self.kind.tag())?;
        match &self.kind {
            ClientRequestKind::AgentCompletionNotify {
                response_id,
                content,
            } => {
                m.serialize_entry("response_id", response_id)?;
                m.serialize_entry("content", content)?;
            }
        }
        m.end()
    }
}

/// The server's answer to a [`ClientRequest`] (PROTOCOL.md §3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse<'a> {
    /// `{"type":"ok","id":...}`
    Ok {
        /// The request's id.
        id: Cow<'a, str>,
    },
    /// `{"type":"error","id":...,"code":...,"message":...}`
    Error {
        /// The request's id.
        id: Cow<'a, str>,
        /// An HTTP-style status code.
        code: u16,
        /// Human-readable reason.
        message: Cow<'a, str>,
    },
}

impl ClientResponse<'_> {
    /// The id of the request answered.
    pub fn id(&self) -> &str {
        match self {
            Self::Ok { id } | Self::Error { id, .. } => id,
        }
    }

    /// Detaches the response from the frame it was parsed from.
    pub fn into_owned(self) -> ClientResponse<'static> {
        match self {
            Self::Ok { id } => ClientResponse::Ok { id: own_str(id) },
            Self::Error { id, code, message } => ClientResponse::Error {
                id: own_str(id),
                code,
                message: own_str(message),
            },
        }
    }
}

impl Serialize for ClientResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            Self::Ok { id } => {
                m.serialize_entry("type", "ok")?;
                m.serialize_entry("id", id)?;
            }
            Self::Error { id, code, message } => {
                m.serialize_entry("type", "error")?;
                m.serialize_entry("id", id)?;
                m.serialize_entry("code", code)?;
                m.serialize_entry("message", message)?;
            }
        }
        m.end()
    }
}

/// A server → client request: an HTTP request forwarded over the socket
/// (PROTOCOL.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRequest<'a> {
    /// Minted by the server, unguessable.
    pub id: Cow<'a, str>,
    /// The HTTP method.
    pub method: Cow<'a, str>,
    /// Omitted on the wire when empty.
    pub headers: Headers<'a>,
    /// Omitted on the wire when `None`.
    pub body: Option<Json<'a>>,
}

impl ServerRequest<'_> {
    /// Detaches the request from the frame it was parsed from.
    pub fn into_owned(self) -> ServerRequest<'static> {
        ServerRequest {
            id: own_str(self.id),
            method: own_str(self.method),
            headers: self.headers.into_owned(),
            body: self.body.map(own_json),
        }
    }
}

/// The client's answer to a [`ServerRequest`] (PROTOCOL.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerResponse<'a> {
    /// The id of the request answered.
    pub id: Cow<'a, str>,
    /// The HTTP status.
    pub status: u16,
    /// Omitted on the wire when empty.
    pub headers: Headers<'a>,
    /// Omitted on the wire when `None`.
    pub body: Option<Json<'a>>,
}

impl ServerResponse<'_> {
    /// Detaches the response from the frame it was parsed from.
    pub fn into_owned(self) -> ServerResponse<'static> {
        ServerResponse {
            id: own_str(self.id),
            status: self.status,
            headers: self.headers.into_owned(),
            body: self.body.map(own_json),
        }
    }
}

/// A server request or response, borrowed, for serializing without copies:
/// the two differ only in their second key (`method` or `status`).
pub(crate) struct HttpFrame<'a, H: ?Sized> {
    pub(crate) id: &'a str,
    pub(crate) head: (&'static str, &'a H),
    pub(crate) headers: &'a Headers<'a>,
    pub(crate) body: Option<&'a RawValue>,
}

impl<H: Serialize + ?Sized> Serialize for HttpFrame<'_, H> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", self.id)?;
        m.serialize_entry(self.head.0, self.head.1)?;
        if !self.headers.is_empty() {
            m.serialize_entry("headers", self.headers)?;
        }
        if let Some(body) = self.body {
            m.serialize_entry("body", body)?;
        }
        m.end()
    }
}

impl Serialize for ServerRequest<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        HttpFrame {
            id: &self.id,
            head: ("method", &*self.method),
            headers: &self.headers,
            body: self.body.as_ref().map(Json::as_raw),
        }
        .serialize(s)
    }
}

impl Serialize for ServerResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        HttpFrame {
            id: &self.id,
            head: ("status", &self.status),
            headers: &self.headers,
            body: self.body.as_ref().map(Json::as_raw),
        }
        .serialize(s)
    }
}

/// The `{"code":u16,"message":<any JSON>}` error frame (PROTOCOL.md §2.2):
/// the stream could not be created, or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseError<'a> {
    /// An HTTP-style status code.
    pub code: u16,
    /// Any JSON, usually a string.
    pub message: Json<'a>,
}

impl ResponseError<'static> {
    /// An error frame whose message is the JSON string `message`.
    pub fn new(code: u16, message: &str) -> Self {
        Self {
            code,
            message: Json::owned(json_string(message)),
        }
    }
}

impl ResponseError<'_> {
    /// The message if it is a JSON string, unescaped.
    pub fn message_str(&self) -> Option<String> {
        self.message.parse().ok()
    }

    /// Detaches the error from the frame it was parsed from.
    pub fn into_owned(self) -> ResponseError<'static> {
        ResponseError {
            code: self.code,
            message: own_json(self.message),
        }
    }
}

impl Serialize for ResponseError<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("code", &self.code)?;
        m.serialize_entry("message", &self.message)?;
        m.end()
    }
}

/// `text` as a raw JSON string value.
pub(crate) fn json_string(text: &str) -> Box<RawValue> {
    // Serializing a `str` cannot fail; `null` is never produced.
    serde_json::value::to_raw_value(text).unwrap_or_default()
}

/// Serializes one of the engine's own frames. They hold only strings, numbers,
/// string-keyed maps and raw JSON, which cannot fail to serialize.
pub(crate) fn frame<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
