//! One-pass classification of inbound text frames (PROTOCOL.md §3.3).
//!
//! A frame is scanned exactly once, by the crate's own validating scanner,
//! into a flat envelope of the top-level keys the rules look at. Values are
//! read leniently (a key of the wrong type is recorded as such, never a
//! parse failure) and payloads stay raw JSON text borrowed from the frame,
//! so classifying costs about one validating pass over the bytes. Sessions use
//! that form as it is; the public [`classify_server`] and
//! [`classify_client`] turn it into the [`wire`](crate::wire) types.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::scan::{Raw, Scanner, members};

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
    match server(text) {
        Server::Notify {
            id,
            response_id,
            content,
        } => match json(content) {
            Some(content) => ServerFrame::Request(ClientRequest {
                id,
                kind: ClientRequestKind::AgentCompletionNotify {
                    response_id,
                    content,
                },
            }),
            None => ServerFrame::Junk,
        },
        Server::BadRequest { id, message } => ServerFrame::BadRequest { id, message },
        Server::Response(r) => r
            .into_wire(|id, status, headers, body| ServerResponse {
                id,
                status,
                headers,
                body,
            })
            .map_or(ServerFrame::Junk, ServerFrame::Response),
        Server::Junk => ServerFrame::Junk,
    }
}

/// Classifies a frame a client receives.
///
/// The error frame is recognised before the chunk: it is the only frame shape
/// with exactly the keys `code` and `message` (PROTOCOL.md §2.2), so no chunk
/// type can be mistaken for it.
pub fn classify_client(text: &str) -> ClientFrame<'_> {
    match client(text) {
        Client::Response(r) => ClientFrame::Response(r),
        Client::Request(r) => r
            .into_wire(|id, method, headers, body| ServerRequest {
                id,
                method,
                headers,
                body,
            })
            .map_or(ClientFrame::Junk, ClientFrame::Request),
        Client::StreamError { code, message } => match json(message) {
            Some(message) => ClientFrame::Error(ResponseError { code, message }),
            None => ClientFrame::Junk,
        },
        Client::Chunk => ClientFrame::Chunk,
        Client::Junk => ClientFrame::Junk,
    }
}

/// Raw JSON text the scanner validated, as a [`Json`] (parsed again: only
/// the public classification pays for it, never a session).
fn json(raw: &str) -> Option<Json<'_>> {
    serde_json::from_str::<&RawValue>(raw)
        .ok()
        .map(Json::borrowed)
}

/// A request or response envelope (PROTOCOL.md §3.2), fields borrowed from
/// the frame and payloads left as raw JSON text. `H` is the method of a
/// request or the status of a response.
#[derive(Debug)]
pub struct Http<'a, H> {
    /// The request's id (a response echoes it).
    pub id: Cow<'a, str>,
    /// The method of a request, the status of a response.
    pub head: H,
    /// The header map, its strings checked.
    pub headers: RawHeaders<'a>,
    /// The body's raw JSON text; `None` when absent or `null`.
    pub body: Option<&'a str>,
}

impl<'a, H> Http<'a, H> {
    /// The envelope as a wire type `make` builds from its parts, the body
    /// parsed as a [`Json`]; `None` if the body does not parse (only the
    /// public classification pays for that second parse).
    fn into_wire<T>(
        self,
        make: impl FnOnce(Cow<'a, str>, H, Headers<'a>, Option<Json<'a>>) -> T,
    ) -> Option<T> {
        let body = match self.body {
            Some(raw) => Some(json(raw)?),
            None => None,
        };
        Some(make(self.id, self.head, self.headers.to_headers(), body))
    }
}

/// A frame a server receives while streaming, as a session reads it: the
/// same rules as [`classify_server`], payloads left as raw JSON text (no
/// second parse).
#[derive(Debug)]
pub enum Server<'a> {
    /// A well-formed `agent_completion_notify`.
    Notify {
        /// The request's id.
        id: Cow<'a, str>,
        /// The agent completion it is for.
        response_id: Cow<'a, str>,
        /// A JSON string or array, as raw JSON text.
        content: &'a str,
    },
    /// See [`ServerFrame::BadRequest`].
    BadRequest {
        /// The request's id, to answer.
        id: Cow<'a, str>,
        /// Why it was refused.
        message: String,
    },
    /// A response to one of this side's server requests.
    Response(Http<'a, u16>),
    /// Anything else: dropped and counted.
    Junk,
}

/// A frame a client receives, as a session reads it: the same rules as
/// [`classify_client`], payloads left as raw JSON text (no second parse).
#[derive(Debug)]
pub enum Client<'a> {
    /// The answer to one of this side's client requests.
    Response(ClientResponse<'a>),
    /// A request from the server.
    Request(Http<'a, Cow<'a, str>>),
    /// The `{code, message}` error frame: the stream failed.
    StreamError {
        /// An HTTP-style status code.
        code: u16,
        /// Any JSON, as raw JSON text.
        message: &'a str,
    },
    /// Any other JSON object: a chunk.
    Chunk,
    /// Not a JSON object, or a malformed envelope: dropped and counted.
    Junk,
}

/// Classifies a frame a server receives while streaming, without parsing
/// its payloads twice: what a [`ServerSession`](crate::ServerSession) uses.
pub fn server(text: &str) -> Server<'_> {
    let Some(env) = Envelope::parse(text) else {
        return Server::Junk;
    };
    match (env.id, env.ty) {
        (Some(Scalar::Str(id)), Some(Scalar::Str(ty))) => {
            match notify_fields(&ty, env.response_id, env.content) {
                Ok((response_id, content)) => Server::Notify {
                    id,
                    response_id,
                    content,
                },
                Err(message) => Server::BadRequest { id, message },
            }
        }
        (Some(Scalar::Str(id)), _) => match (env.status.and_then(Scalar::into_u16), env.headers) {
            (Some(status), headers @ (Some(Lenient::Valid(_)) | None)) => Server::Response(Http {
                id,
                head: status,
                headers: headers_or_empty(headers),
                body: non_null(env.body),
            }),
            _ => Server::Junk,
        },
        _ => Server::Junk,
    }
}

/// Classifies a frame a client receives, without parsing its payloads
/// twice: what a [`ClientSession`](crate::ClientSession) uses.
pub fn client(text: &str) -> Client<'_> {
    let Some(env) = Envelope::parse(text) else {
        return Client::Junk;
    };
    let id_is_str = matches!(env.id, Some(Scalar::Str(_)));
    let ty = match &env.ty {
        Some(Scalar::Str(ty)) => Some(&**ty),
        _ => None,
    };
    match ty {
        Some("ok") if id_is_str => {
            return Client::Response(ClientResponse::Ok {
                id: take_str(env.id),
            });
        }
        Some("error") if id_is_str => {
            let code = env.code.and_then(Scalar::into_u16);
            // objectiveai-api 2.0.11 may send any JSON value as the message:
            // a string is unescaped, anything else kept as its JSON text.
            let message = env
                .message
                .map(|raw| unquote(raw).unwrap_or(Cow::Borrowed(raw)));
            return match (code, message) {
                (Some(code), Some(message)) => Client::Response(ClientResponse::Error {
                    id: take_str(env.id),
                    code,
                    message,
                }),
                _ => Client::Junk,
            };
        }
        _ => {}
    }
    if id_is_str && matches!(env.method, Some(Scalar::Str(_))) {
        return match env.headers {
            Some(Lenient::Invalid) => Client::Junk,
            headers => Client::Request(Http {
                id: take_str(env.id),
                head: take_str(env.method),
                headers: headers_or_empty(headers),
                body: non_null(env.body),
            }),
        };
    }
    if env.keys == 2 {
        if let (Some(code), Some(message)) = (env.code, env.message) {
            return match code.into_u16() {
                Some(code) => Client::StreamError { code, message },
                None => Client::Junk,
            };
        }
    }
    Client::Chunk
}

/// The text of a raw JSON string, borrowed unless it has escapes.
fn unquote(json: &str) -> Option<Cow<'_, str>> {
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

fn headers_or_empty(h: Option<Lenient<RawHeaders<'_>>>) -> RawHeaders<'_> {
    match h {
        Some(Lenient::Valid(h)) => h,
        _ => RawHeaders::EMPTY,
    }
}

fn non_null(raw: Option<&str>) -> Option<&str> {
    raw.filter(|r| *r != "null")
}

fn notify_fields<'a>(
    ty: &str,
    response_id: Option<Scalar<'a>>,
    content: Option<&'a str>,
) -> Result<(Cow<'a, str>, &'a str), String> {
    if ty != "agent_completion_notify" {
        return Err(format!("unknown client request type {ty:?}"));
    }
    let Some(Scalar::Str(response_id)) = response_id else {
        return Err("agent_completion_notify needs a string `response_id`".to_owned());
    };
    match content {
        Some(content) if content.starts_with(['"', '[']) => Ok((response_id, content)),
        _ => {
            Err("agent_completion_notify needs `content`: a string or an array of parts".to_owned())
        }
    }
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
    fn of(raw: Raw<'a>) -> Self {
        if let Some(plain) = raw.plain {
            return Scalar::Str(Cow::Borrowed(plain));
        }
        let text = raw.json;
        match text.as_bytes().first() {
            Some(b'"') => unquote(text).map_or(Scalar::Other, Scalar::Str),
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

/// A value that is either of the expected shape or recorded as not.
#[derive(Debug)]
enum Lenient<T> {
    Valid(T),
    Invalid,
}

/// A `headers` object whose names and values are all strings, left as its
/// raw text: its pairs are read when a view is made, not before.
#[derive(Clone, Copy, Debug)]
pub struct RawHeaders<'a> {
    pub(crate) raw: &'a str,
    len: usize,
    /// No name or value has escapes: each is a slice of `raw` as it is.
    pub(crate) plain: bool,
}

impl<'a> RawHeaders<'a> {
    const EMPTY: Self = Self {
        raw: "{}",
        len: 0,
        plain: true,
    };

    /// Judges a raw `headers` value (the scanner validated it): valid when
    /// it is an object whose names and values are all strings. A name that
    /// does not unescape (a lone surrogate) makes the map invalid, not the
    /// frame: outside a request or a response, `headers` is a chunk's own
    /// field.
    fn read(raw: &'a str) -> Lenient<Self> {
        let mut s = Scanner::new(raw);
        if !s.open_object() {
            return Lenient::Invalid;
        }
        let (mut len, mut plain) = (0, true);
        loop {
            match s.member(len == 0) {
                Ok(None) => return Lenient::Valid(Self { raw, len, plain }),
                Ok(Some((name, value))) if matches!(Scalar::of(value), Scalar::Str(_)) => {
                    plain &= matches!(name, Cow::Borrowed(_)) && value.plain.is_some();
                    len += 1;
                }
                Ok(Some(_)) | Err(()) => return Lenient::Invalid,
            }
        }
    }

    /// How many (name, value) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pairs in wire order, unescaped.
    pub fn pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + use<'a> {
        members(self.raw).map(|(k, v)| match Scalar::of(v) {
            Scalar::Str(v) => (k, v),
            _ => (k, Cow::Borrowed("")),
        })
    }

    fn to_headers(self) -> Headers<'a> {
        self.pairs().collect()
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
    message: Option<&'a str>,
    content: Option<&'a str>,
    body: Option<&'a str>,
    headers: Option<Lenient<RawHeaders<'a>>>,
}

/// Fills an empty slot; `None` if it was taken (a duplicated key).
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.replace(value).is_none().then_some(())
}

impl<'a> Envelope<'a> {
    /// Parses a JSON object; `None` for anything else, or a duplicated key
    /// the rules look at (an ambiguous frame is never guessed at).
    fn parse(text: &'a str) -> Option<Self> {
        let mut s = Scanner::new(text);
        if !s.open_object() {
            return None;
        }
        let mut env = Envelope::default();
        while let Some((key, raw)) = s.member(env.keys == 0).ok()? {
            env.keys += 1;
            match &*key {
                "id" => set(&mut env.id, Scalar::of(raw))?,
                "type" => set(&mut env.ty, Scalar::of(raw))?,
                "status" => set(&mut env.status, Scalar::of(raw))?,
                "code" => set(&mut env.code, Scalar::of(raw))?,
                "method" => set(&mut env.method, Scalar::of(raw))?,
                "response_id" => set(&mut env.response_id, Scalar::of(raw))?,
                "message" => set(&mut env.message, raw.json)?,
                "content" => set(&mut env.content, raw.json)?,
                "body" => set(&mut env.body, raw.json)?,
                "headers" => set(&mut env.headers, RawHeaders::read(raw.json))?,
                _ => {}
            }
        }
        s.at_end().then_some(env)
    }
}
