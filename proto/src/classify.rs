//! One-pass classification of inbound text frames (PROTOCOL.md §3.3).
//!
//! A frame is parsed exactly once, into a flat envelope of the top-level
//! keys the rules look at. Values are read leniently (a key of the wrong type
//! is recorded as such, never a parse failure) and payloads stay borrowed raw
//! JSON, so classifying costs about one validating pass over the bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::wire::{
    ClientRequest, ClientRequestKind, ClientResponse, Headers, Json, ResponseError, ServerRequest,
    ServerResponse,
};

/// What a server in the streaming phase makes of an inbound text frame.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// A well-formed client request.
    Request(ClientRequest<'a>),
    /// A frame with a string `id` and a string `type` that is not a request
    /// this side knows (unknown type, missing or mistyped fields): answered
    /// `400` with `message`.
    BadRequest {
        /// The request's id, to answer.
        id: Cow<'a, str>,
        /// Why it was refused.
        message: String,
    },
    /// A response to one of this side's server requests.
    Response(ServerResponse<'a>),
    /// Anything else: dropped and counted.
    Junk,
}

/// What a client makes of an inbound text frame.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// The answer to one of this side's client requests.
    Response(ClientResponse<'a>),
    /// A request from the server.
    Request(ServerRequest<'a>),
    /// The `{code, message}` error frame: the stream failed.
    Error(ResponseError<'a>),
    /// Any other JSON object: a chunk, handed to the application as text.
    Chunk,
    /// Not a JSON object, or a malformed envelope: dropped and counted.
    Junk,
}

/// Classifies a frame a server receives while streaming.
pub fn classify_server(text: &str) -> ServerFrame<'_> {
    let Some(env) = Envelope::parse(text) else {
        return ServerFrame::Junk;
    };
    match (env.id, env.ty) {
        (Some(Scalar::Str(id)), Some(Scalar::Str(ty))) => {
            match notify_fields(&ty, env.response_id, env.content) {
                Ok(kind) => ServerFrame::Request(ClientRequest { id, kind }),
                Err(message) => ServerFrame::BadRequest { id, message },
            }
        }
        (Some(Scalar::Str(id)), _) => match (env.status.and_then(Scalar::into_u16), env.headers) {
            (Some(status), headers @ (Some(Lenient::Valid(_)) | None)) => {
                ServerFrame::Response(ServerResponse {
                    id,
                    status,
                    headers: headers_or_empty(headers),
                    body: non_null(env.body),
                })
            }
            _ => ServerFrame::Junk,
        },
        _ => ServerFrame::Junk,
    }
}

/// Classifies a frame a client receives.
///
/// The error frame is recognised before the chunk: it is the only frame shape
/// with exactly the keys `code` and `message` (PROTOCOL.md §2.2), so no chunk
/// type can be mistaken for it.
pub fn classify_client(text: &str) -> ClientFrame<'_> {
    let Some(env) = Envelope::parse(text) else {
        return ClientFrame::Junk;
    };
    let id_is_str = matches!(env.id, Some(Scalar::Str(_)));
    let ty = match &env.ty {
        Some(Scalar::Str(ty)) => Some(&**ty),
        _ => None,
    };
    match ty {
        Some("ok") if id_is_str => {
            return ClientFrame::Response(ClientResponse::Ok {
                id: take_str(env.id),
            });
        }
        Some("error") if id_is_str => {
            let code = env.code.and_then(Scalar::into_u16);
            // objectiveai-api 2.0.11 may send any JSON value as the message:
            // a string is unescaped, anything else kept as its JSON text.
            let message = env
                .message
                .map(|raw| unquote(raw).unwrap_or(Cow::Borrowed(raw.get())));
            return match (code, message) {
                (Some(code), Some(message)) => ClientFrame::Response(ClientResponse::Error {
                    id: take_str(env.id),
                    code,
                    message,
                }),
                _ => ClientFrame::Junk,
            };
        }
        _ => {}
    }
    if id_is_str && matches!(env.method, Some(Scalar::Str(_))) {
        return match env.headers {
            Some(Lenient::Invalid) => ClientFrame::Junk,
            headers => ClientFrame::Request(ServerRequest {
                id: take_str(env.id),
                method: take_str(env.method),
                headers: headers_or_empty(headers),
                body: non_null(env.body),
            }),
        };
    }
    if env.keys == 2 {
        if let (Some(code), Some(message)) = (env.code, env.message) {
            return match code.into_u16() {
                Some(code) => ClientFrame::Error(ResponseError {
                    code,
                    message: Json::borrowed(message),
                }),
                None => ClientFrame::Junk,
            };
        }
    }
    ClientFrame::Chunk
}

/// The text of a raw JSON string, borrowed unless it has escapes.
fn unquote(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(json).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

fn take_str(s: Option<Scalar<'_>>) -> Cow<'_, str> {
    match s {
        Some(Scalar::Str(s)) => s,
        _ => Cow::Borrowed(""),
    }
}

fn headers_or_empty(h: Option<Lenient<Headers<'_>>>) -> Headers<'_> {
    match h {
        Some(Lenient::Valid(h)) => h,
        _ => Headers::new(),
    }
}

fn non_null(raw: Option<&RawValue>) -> Option<Json<'_>> {
    raw.filter(|r| r.get() != "null").map(Json::borrowed)
}

fn notify_fields<'a>(
    ty: &str,
    response_id: Option<Scalar<'a>>,
    content: Option<&'a RawValue>,
) -> Result<ClientRequestKind<'a>, String> {
    if ty != "agent_completion_notify" {
        return Err(format!("unknown client request type {ty:?}"));
    }
    let Some(Scalar::Str(response_id)) = response_id else {
        return Err("agent_completion_notify needs a string `response_id`".to_owned());
    };
    match content.map(|c| c.get().trim_start().as_bytes().first()) {
        Some(Some(b'"' | b'[')) => {}
        _ => {
            return Err(
                "agent_completion_notify needs `content`: a string or an array of parts".to_owned(),
            );
        }
    }
    Ok(ClientRequestKind::AgentCompletionNotify {
        response_id,
        content: content.map(Json::borrowed).unwrap_or_default(),
    })
}

/// A top-level value, as far as the classification rules care.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(u64),
    Other,
}

impl Scalar<'_> {
    fn into_u16(self) -> Option<u16> {
        match self {
            Scalar::Int(n) => u16::try_from(n).ok(),
            _ => None,
        }
    }
}

impl<'a> Scalar<'a> {
    /// Reads a raw value as far as the rules care. Read from the raw text,
    /// so that a value no rule can use (a number beyond `f64`, a string
    /// with a lone surrogate escape) is `Other` instead of failing the
    /// whole frame.
    fn of(raw: &'a RawValue) -> Self {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => unquote(raw).map_or(Scalar::Other, Scalar::Str),
            Some(b'0'..=b'9' | b'-') => text
                .parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .or_else(|| text.parse::<u64>().ok())
                .map_or(Scalar::Other, Scalar::Int),
            _ => Scalar::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(Scalar::of)
    }
}

/// A header name: JSON object keys are always strings.
struct HeaderName<'a>(Scalar<'a>);

impl<'de> Deserialize<'de> for HeaderName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ScalarVisitor).map(HeaderName)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Scalar::Other, Scalar::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// A value that is either of the expected shape or recorded as not.
#[derive(Debug)]
enum Lenient<T> {
    Valid(T),
    Invalid,
}

impl<'de> Deserialize<'de> for Lenient<Headers<'de>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Lenient<Headers<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                let mut valid = true;
                while let Some(HeaderName(k)) = map.next_key()? {
                    match (k, map.next_value::<Scalar<'de>>()?) {
                        (Scalar::Str(k), Scalar::Str(v)) if valid => pairs.push((k, v)),
                        _ => valid = false,
                    }
                }
                Ok(if valid {
                    Lenient::Valid(Headers::from_pairs(pairs))
                } else {
                    Lenient::Invalid
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                ScalarVisitor.visit_seq(seq).map(|_| Lenient::Invalid)
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Invalid)
            }
        }
        d.deserialize_any(HeadersVisitor)
    }
}

/// The top-level keys of a frame that classification looks at.
#[derive(Debug, Default)]
struct Envelope<'a> {
    /// How many top-level keys the object has, known or not.
    keys: usize,
    id: Option<Scalar<'a>>,
    ty: Option<Scalar<'a>>,
    status: Option<Scalar<'a>>,
    code: Option<Scalar<'a>>,
    method: Option<Scalar<'a>>,
    response_id: Option<Scalar<'a>>,
    /// Raw: a string in client responses, any JSON in the error frame.
    message: Option<&'a RawValue>,
    content: Option<&'a RawValue>,
    body: Option<&'a RawValue>,
    headers: Option<Lenient<Headers<'a>>>,
}

impl<'a> Envelope<'a> {
    /// Parses a JSON object; `None` for anything else, or a duplicated key
    /// the rules look at (an ambiguous frame is never guessed at).
    fn parse(text: &'a str) -> Option<Self> {
        // Most junk is not an object: skip building serde's error for it.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Envelope<'a>>(text).ok()
    }
}

#[derive(Clone, Copy)]
enum Key {
    Id,
    Type,
    Status,
    Code,
    Method,
    ResponseId,
    Message,
    Content,
    Body,
    Headers,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "id" => Key::Id,
                    "type" => Key::Type,
                    "status" => Key::Status,
                    "code" => Key::Code,
                    "method" => Key::Method,
                    "response_id" => Key::ResponseId,
                    "message" => Key::Message,
                    "content" => Key::Content,
                    "body" => Key::Body,
                    "headers" => Key::Headers,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

fn set<T, E: de::Error>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(key));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut env = Envelope::default();
                while let Some(key) = map.next_key::<Key>()? {
                    env.keys += 1;
                    match key {
                        Key::Id => set(&mut env.id, map.next_value()?, "id")?,
                        Key::Type => set(&mut env.ty, map.next_value()?, "type")?,
                        Key::Status => set(&mut env.status, map.next_value()?, "status")?,
                        Key::Code => set(&mut env.code, map.next_value()?, "code")?,
                        Key::Method => set(&mut env.method, map.next_value()?, "method")?,
                        Key::ResponseId => {
                            set(&mut env.response_id, map.next_value()?, "response_id")?;
                        }
                        Key::Message => set(&mut env.message, map.next_value()?, "message")?,
                        Key::Content => set(&mut env.content, map.next_value()?, "content")?,
                        Key::Body => set(&mut env.body, map.next_value()?, "body")?,
                        Key::Headers => set(&mut env.headers, map.next_value()?, "headers")?,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(EnvelopeVisitor)
    }
}
