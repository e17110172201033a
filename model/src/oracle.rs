//! The oracle: PROTOCOL.md's classification of a text frame (§2.2 error
//! frame, §3.1 `client_request` / `client_response`, §3.2 `server_request`
//! / `server_response`, §3.3 the table), written from the document and
//! nothing else. It never calls the engine's classifier or parses with the
//! engine's wire types, so the model can judge the engine rather than agree
//! with it by construction. Clarity over speed: a frame is read as a list of
//! top-level `(key, raw JSON)` entries, and each rule looks at the keys it
//! names.
//!
//! The reading, rule by rule:
//!
//! - A frame is one JSON object; anything else (other JSON, not JSON,
//!   trailing text) matches no rule. Values the rules do not name are
//!   opaque: any JSON, however deep.
//! - A key the protocol names (`id`, `type`, `status`, `code`, `method`,
//!   `response_id`, `message`, `content`, `body`, `headers`) that appears
//!   twice makes the frame ambiguous: it matches no rule (RFC 8259 §4 leaves
//!   duplicate names undefined; PROTOCOL.md does not say).
//! - "string" is a JSON string that decodes to Unicode text; "integer" and
//!   "u16" are a JSON integer literal (no fraction, no exponent) in
//!   `0..=65535`, as a typed reader of the 2.0.11 wire types reads them.
//! - `headers` is an object of string values, or absent (§3.2: "`headers`
//!   (string→string)", omitted when empty); anything else (`null`, an
//!   array, a value that is not a string) makes a `server_request` or a
//!   `server_response` malformed: dropped and counted, never taken for a
//!   chunk. The engine makes the same deliberate choice.
//! - A value no rule can use (a number beyond `f64`, a string with a lone
//!   surrogate escape) under a key only makes that key unusable; the frame
//!   is classified by the keys that do matter.
//!
//! Server side, while streaming (§3.3):
//!
//! 1. string `id` and string `type` → a `client_request`: well-formed when
//!    `type` is `agent_completion_notify` with a string `response_id` and a
//!    `content` that is a string or an array; otherwise answered `400`
//!    (§3.1, "unknown type or missing fields").
//! 2. string `id` and a u16 `status` (and valid `headers`) →
//!    `server_response`.
//! 3. anything else → dropped and counted.
//!
//! Client side (§3.3, §2.2):
//!
//! 1. `type` `"ok"` and string `id` → `client_response` ok; `type`
//!    `"error"` and string `id` → `client_response` error, which needs a u16
//!    `code` and a `message` (else the frame is malformed: dropped). The
//!    `message` is any JSON, as in the `ResponseError` of §2.2 that the
//!    reply's code and message come from (2.0.11 sends strings, but §3.1
//!    does not type it).
//! 2. string `id` and string `method` → `server_request` (malformed, and
//!    dropped, when `headers` is not an object of strings).
//! 3. exactly the two keys `code` and `message` → the error frame (§2.2: the
//!    only shape with exactly those keys), needing a u16 `code`; else
//!    dropped.
//! 4. any other JSON object → a chunk (the chunk types are JSON objects).
//! 5. anything else → dropped and counted.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// What a server in the streaming phase makes of a text frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtServer {
    /// A well-formed `agent_completion_notify` client request.
    Notify {
        /// The request's id.
        id: String,
        /// The agent completion it addresses.
        response_id: String,
        /// Its content (a string or an array).
        content: Value,
    },
    /// A client request (string `id`, string `type`) of an unknown type or
    /// with missing fields: answered `400`.
    BadRequest {
        /// The request's id.
        id: String,
    },
    /// A `server_response`.
    Response {
        /// The server request it answers.
        id: String,
        /// Its status.
        status: u16,
        /// Its headers, in order (empty when the key is absent).
        headers: Vec<(String, String)>,
        /// Its body, when the key is present.
        body: Option<Value>,
    },
    /// Anything else: dropped and counted.
    Junk,
}

/// What a client makes of a text frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtClient {
    /// `{"type":"ok","id":...}`.
    Ok {
        /// The client request answered.
        id: String,
    },
    /// `{"type":"error","id":...,"code":...,"message":...}`.
    Error {
        /// The client request answered.
        id: String,
        /// Its code.
        code: u16,
        /// Its message (any JSON; a string in 2.0.11).
        message: Value,
    },
    /// A `server_request`.
    Request {
        /// Its id.
        id: String,
        /// Its HTTP method.
        method: String,
        /// Its headers, in order (empty when the key is absent).
        headers: Vec<(String, String)>,
        /// Its body, when the key is present.
        body: Option<Value>,
    },
    /// The `{code, message}` error frame: the stream failed.
    ErrorFrame {
        /// Its code.
        code: u16,
        /// Its message (any JSON).
        message: Value,
    },
    /// Any other JSON object: a chunk.
    Chunk,
    /// Anything else: dropped and counted.
    Junk,
}

/// The keys PROTOCOL.md gives a meaning to in some frame.
const NAMED: [&str; 10] = [
    "id",
    "type",
    "status",
    "code",
    "method",
    "response_id",
    "message",
    "content",
    "body",
    "headers",
];

/// An id as the engine's refusals echo it (PROTOCOL.md §3.1): its first
/// 256 bytes, cut back to a character boundary.
pub fn echoed(id: &str) -> &str {
    let mut end = id.len().min(256);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.get(..end).unwrap_or(id)
}

/// Classifies a frame a server receives while streaming (§3.3).
pub fn at_server(text: &str) -> AtServer {
    let Some(f) = Frame::parse(text) else {
        return AtServer::Junk;
    };
    match (f.string("id"), f.string("type"), f.u16("status")) {
        (Some(id), Some(ty), _) => {
            let response_id = f.string("response_id");
            let content = f.get("content").filter(|c| is_string_or_array(c));
            match (ty.as_str(), response_id, content) {
                ("agent_completion_notify", Some(response_id), Some(content)) => AtServer::Notify {
                    id,
                    response_id,
                    content: value(content),
                },
                _ => AtServer::BadRequest { id },
            }
        }
        (Some(id), None, Some(status)) => match f.headers() {
            Some(headers) => AtServer::Response {
                id,
                status,
                headers,
                body: f.get("body").map(value),
            },
            None => AtServer::Junk,
        },
        _ => AtServer::Junk,
    }
}

/// Classifies a frame a client receives (§3.3, §2.2).
pub fn at_client(text: &str) -> AtClient {
    let Some(f) = Frame::parse(text) else {
        return AtClient::Junk;
    };
    let id = f.string("id");
    match (f.string("type").as_deref(), id.clone()) {
        (Some("ok"), Some(id)) => return AtClient::Ok { id },
        (Some("error"), Some(id)) => {
            return match (f.u16("code"), f.get("message")) {
                (Some(code), Some(message)) => AtClient::Error {
                    id,
                    code,
                    message: value(message),
                },
                _ => AtClient::Junk,
            };
        }
        _ => {}
    }
    if let (Some(id), Some(method)) = (id, f.string("method")) {
        return match f.headers() {
            Some(headers) => AtClient::Request {
                id,
                method,
                headers,
                body: f.get("body").map(value),
            },
            None => AtClient::Junk,
        };
    }
    if f.keys() == ["code", "message"] || f.keys() == ["message", "code"] {
        return match (f.u16("code"), f.get("message")) {
            (Some(code), Some(message)) => AtClient::ErrorFrame {
                code,
                message: value(message),
            },
            _ => AtClient::Junk,
        };
    }
    AtClient::Chunk
}

/// The top-level keys of a JSON object frame, in order (duplicates kept);
/// `None` when the frame is not one JSON object.
pub fn keys(text: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Entries<Box<RawValue>>>(text)
        .ok()
        .map(|e| e.0.into_iter().map(|(k, _)| k).collect())
}

/// A JSON object frame as its top-level entries, with no named key twice.
struct Frame(Vec<(String, Box<RawValue>)>);

impl Frame {
    fn parse(text: &str) -> Option<Self> {
        let Entries(entries) = serde_json::from_str(text).ok()?;
        let named_twice = NAMED
            .iter()
            .any(|n| entries.iter().filter(|(k, _)| k == n).count() > 1);
        (!named_twice).then_some(Self(entries))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    fn string(&self, key: &str) -> Option<String> {
        serde_json::from_str(self.get(key)?.get()).ok()
    }

    fn u16(&self, key: &str) -> Option<u16> {
        serde_json::from_str(self.get(key)?.get()).ok()
    }

    /// The headers: empty when absent, `None` when not an object of strings.
    fn headers(&self) -> Option<Vec<(String, String)>> {
        match self.get("headers") {
            None => Some(Vec::new()),
            Some(h) => serde_json::from_str::<Entries<String>>(h.get())
                .ok()
                .map(|e| e.0),
        }
    }
}

fn is_string_or_array(raw: &RawValue) -> bool {
    serde_json::from_str::<String>(raw.get()).is_ok()
        || serde_json::from_str::<Vec<IgnoredAny>>(raw.get()).is_ok()
}

/// A payload as a value tree, for comparing (`Null` if it is too deep for
/// one: payloads are opaque to the classification).
fn value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// A JSON object's entries in order, duplicates kept.
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Object<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Object(std::marker::PhantomData))
    }
}
