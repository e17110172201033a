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

use crate::scan::plain_end;

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

/// A server request and response differ only in their second key.
fn serialize_http<S: Serializer, H: Serialize + ?Sized>(
    s: S,
    id: &str,
    head: (&'static str, &H),
    headers: &Headers<'_>,
    body: Option<&Json<'_>>,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("id", id)?;
    m.serialize_entry(head.0, head.1)?;
    if !headers.is_empty() {
        m.serialize_entry("headers", headers)?;
    }
    if let Some(body) = body {
        m.serialize_entry("body", body)?;
    }
    m.end()
}

impl Serialize for ServerRequest<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let head = ("method", &*self.method);
        serialize_http(s, &self.id, head, &self.headers, self.body.as_ref())
    }
}

impl Serialize for ServerResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let head = ("status", &self.status);
        serialize_http(s, &self.id, head, &self.headers, self.body.as_ref())
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

/// The second key of a server request or response.
#[derive(Clone, Copy)]
pub(crate) enum Head<'a> {
    Method(&'a str),
    Status(u16),
}

/// Writes the engine's own frames: JSON objects of strings, status codes,
/// string maps and raw JSON (already valid), in exactly the bytes
/// serde_json writes for the [`Serialize`] impls above (the tests below
/// compare the two). Writing them directly keeps the engine free of a
/// fallible serializer whose error could only be swallowed.
pub(crate) struct Frame(String);

impl Frame {
    fn object(capacity: usize) -> Self {
        let mut s = String::with_capacity(capacity + 2);
        s.push('{');
        Self(s)
    }

    /// Writes `key` as it is: every key is one of this file's constants,
    /// none of which needs escaping.
    fn key(&mut self, key: &'static str) {
        debug_assert_eq!(plain_end(key.as_bytes(), 0), key.len());
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn str(mut self, key: &'static str, value: &str) -> Self {
        self.key(key);
        escape_into(&mut self.0, value);
        self
    }

    fn code(mut self, key: &'static str, value: u16) -> Self {
        self.key(key);
        self.0.push_str(itoa_u16(value).as_str());
        self
    }

    fn raw(mut self, key: &'static str, json: &str) -> Self {
        self.key(key);
        self.0.push_str(json);
        self
    }

    fn headers(mut self, headers: &Headers<'_>) -> Self {
        if headers.is_empty() {
            return self;
        }
        self.key("headers");
        self.0.push('{');
        for (n, (k, v)) in headers.iter().enumerate() {
            if n > 0 {
                self.0.push(',');
            }
            escape_into(&mut self.0, k);
            self.0.push(':');
            escape_into(&mut self.0, v);
        }
        self.0.push('}');
        self
    }

    fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }

    /// `{"type":"ok","id":…}`
    pub(crate) fn ok(id: &str) -> String {
        Self::object(id.len() + 20)
            .str("type", "ok")
            .str("id", id)
            .end()
    }

    /// `{"type":"error","id":…,"code":…,"message":…}`
    pub(crate) fn error_reply(id: &str, code: u16, message: &str) -> String {
        Self::object(id.len() + message.len() + 48)
            .str("type", "error")
            .str("id", id)
            .code("code", code)
            .str("message", message)
            .end()
    }

    /// The `{"code":…,"message":…}` error frame.
    pub(crate) fn error(error: &ResponseError<'_>) -> String {
        let message = error.message.get();
        Self::object(message.len() + 24)
            .code("code", error.code)
            .raw("message", message)
            .end()
    }

    /// A server request (`Head::Method`) or response (`Head::Status`).
    pub(crate) fn http(
        id: &str,
        head: Head<'_>,
        headers: &Headers<'_>,
        body: Option<&RawValue>,
    ) -> String {
        let hint = id.len()
            + body.map_or(0, |b| b.get().len())
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>()
            + 48;
        let f = Self::object(hint).str("id", id);
        let f = match head {
            Head::Method(m) => f.str("method", m),
            Head::Status(s) => f.code("status", s),
        };
        let f = f.headers(headers);
        match body {
            Some(body) => f.raw("body", body.get()),
            None => f,
        }
        .end()
    }

    /// An `agent_completion_notify` client request.
    pub(crate) fn notify(id: &str, response_id: &str, content: &RawValue) -> String {
        let content = content.get();
        Self::object(id.len() + response_id.len() + content.len() + 72)
            .str("id", id)
            .str("type", "agent_completion_notify")
            .str("response_id", response_id)
            .raw("content", content)
            .end()
    }
}

/// A `u16` in decimal, without a formatter.
struct Digits([u8; 5], usize);

impl Digits {
    fn as_str(&self) -> &str {
        let digits = self.0.get(self.1..).unwrap_or_default();
        std::str::from_utf8(digits).unwrap_or_default()
    }
}

fn itoa_u16(mut n: u16) -> Digits {
    let mut buf = [0u8; 5];
    let mut start = buf.len();
    loop {
        start -= 1;
        if let Some(d) = buf.get_mut(start) {
            // `n % 10` is below 10.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits(buf, start)
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it:
/// `"` and `\`, the short escapes `\b \t \n \f \r`, other control
/// characters as `\u00xx`; everything else as it is.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    // From one byte that needs escaping to the next, skipping the plain
    // runs between them a word at a time.
    loop {
        let i = plain_end(bytes, start);
        let Some(&b) = bytes.get(i) else { break };
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        start = i + 1;
        if short.is_empty() {
            out.push_str("\\u00");
            for nibble in [b >> 4, b & 0xf] {
                out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            }
        } else {
            out.push_str(short);
        }
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_byte_and_some_unicode() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀\u{2028}\u{2029}\"\\");
        for s in [all.as_str(), "", "plain", "\"", "a\\b", "\u{7f}"] {
            let mut ours = String::new();
            escape_into(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn status_codes_are_written_in_decimal() {
        for n in [0u16, 7, 10, 99, 100, 404, 999, 1000, 9999, 10000, u16::MAX] {
            assert_eq!(itoa_u16(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn written_frames_equal_serde_json_of_the_wire_types() {
        let headers: Headers<'_> = [("content-type", "application/json"), ("x-\"q", "a\nb")]
            .into_iter()
            .collect();
        let body = raw(r#"{"jsonrpc":"2.0","id":1}"#);
        for headers in [Headers::new(), headers] {
            for body in [None, Some(&*body)] {
                let request = ServerRequest {
                    id: "r-1".into(),
                    method: "POST".into(),
                    headers: headers.clone(),
                    body: body.map(Json::borrowed),
                };
                let ours = Frame::http("r-1", Head::Method("POST"), &headers, body);
                assert_eq!(ours, serde_json::to_string(&request).unwrap());
                let response = ServerResponse {
                    id: "r-1".into(),
                    status: 200,
                    headers: headers.clone(),
                    body: body.map(Json::borrowed),
                };
                let ours = Frame::http("r-1", Head::Status(200), &headers, body);
                assert_eq!(ours, serde_json::to_string(&response).unwrap());
            }
        }
        assert_eq!(
            Frame::ok("i\"d"),
            serde_json::to_string(&ClientResponse::Ok { id: "i\"d".into() }).unwrap()
        );
        let reply = ClientResponse::Error {
            id: "x".into(),
            code: 404,
            message: "response_id \"agc-9\" not from this stream".into(),
        };
        assert_eq!(
            Frame::error_reply("x", 404, "response_id \"agc-9\" not from this stream"),
            serde_json::to_string(&reply).unwrap()
        );
        let error = ResponseError::new(500, "boom\t");
        assert_eq!(Frame::error(&error), serde_json::to_string(&error).unwrap());
        let content = raw(r#"[{"type":"text","text":"hi"}]"#);
        let notify = ClientRequest {
            id: "n-1".into(),
            kind: ClientRequestKind::AgentCompletionNotify {
                response_id: "agc-1".into(),
                content: Json::borrowed(&content),
            },
        };
        assert_eq!(
            Frame::notify("n-1", "agc-1", &content),
            serde_json::to_string(&notify).unwrap()
        );
    }
}
