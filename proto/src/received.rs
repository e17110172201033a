//! Inbound envelopes as the events hand them out: each holds the frame's
//! text it arrived in (taken by value, never copied) and views into it.
//!
//! Classification ([`classify`](crate::classify)) borrows every field from
//! the frame; a session turns those borrows into [spans](Span) of the text
//! and moves the text into the event. A string field with escapes is the
//! one exception: it has no view in the text, so its unescaped form is
//! kept. Raw JSON payloads (`content`, `body`) are handed out as the JSON
//! text exactly as it arrived, for the application to parse into its own
//! types.

use std::borrow::Cow;
use std::fmt;

use crate::classify::RawHeaders;
use crate::scan::{Members, members};
use crate::wire::{ClientRequest, ClientRequestKind, Headers, Json, ServerRequest, ServerResponse};

/// Where a string field of a frame is: a range of the frame's text, or its
/// unescaped form when it had escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    At(usize, usize),
    Unescaped(Box<str>),
}

impl Span {
    /// The span of `field`, a slice of `text` (else a copy of it).
    pub(crate) fn of(text: &str, field: &str) -> Self {
        let start = (field.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        let end = start.wrapping_add(field.len());
        match text.get(start..end) {
            Some(s) if s.as_ptr() == field.as_ptr() => Self::At(start, end),
            _ => Self::Unescaped(field.into()),
        }
    }

    /// The span of a field classification borrowed or unescaped.
    pub(crate) fn of_cow(text: &str, field: Cow<'_, str>) -> Self {
        match field {
            Cow::Borrowed(field) => Self::of(text, field),
            Cow::Owned(field) => Self::Unescaped(field.into_boxed_str()),
        }
    }

    pub(crate) fn get<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            Self::At(start, end) => text.get(*start..*end).unwrap_or_default(),
            Self::Unescaped(s) => s,
        }
    }
}

/// Where a header map's pairs are.
#[derive(Clone, Debug)]
pub(crate) enum HeaderSpans {
    /// The map's raw object in the frame, `(start, end)`, when no name or
    /// value has escapes (the usual case): read in place, no allocation.
    Plain { at: (usize, usize), len: usize },
    /// Each pair's spans.
    Pairs(Vec<(Span, Span)>),
}

/// Where the pairs of a header map are: the map itself when its strings
/// have no escapes, else each pair.
pub(crate) fn header_spans(text: &str, headers: RawHeaders<'_>) -> HeaderSpans {
    match Span::of(text, headers.raw) {
        Span::At(start, end) if headers.plain && !headers.is_empty() => HeaderSpans::Plain {
            at: (start, end),
            len: headers.len(),
        },
        _ if headers.is_empty() => HeaderSpans::Pairs(Vec::new()),
        _ => HeaderSpans::Pairs(
            headers
                .pairs()
                .map(|(k, v)| (Span::of_cow(text, k), Span::of_cow(text, v)))
                .collect(),
        ),
    }
}

/// The pairs of a [`ReceivedHttp`]'s header map, in wire order.
#[derive(Clone)]
pub struct HeaderPairs<'a>(PairsRepr<'a>);

#[derive(Clone)]
enum PairsRepr<'a> {
    Plain {
        members: Members<'a>,
        left: usize,
    },
    Pairs {
        pairs: std::slice::Iter<'a, (Span, Span)>,
        text: &'a str,
    },
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            PairsRepr::Plain { members, left } => {
                let (name, value) = members.next()?;
                *left -= 1;
                match name {
                    Cow::Borrowed(name) => Some((name, value.plain.unwrap_or_default())),
                    // Never: a plain map's names have no escapes.
                    Cow::Owned(_) => None,
                }
            }
            PairsRepr::Pairs { pairs, text } => {
                pairs.next().map(|(k, v)| (k.get(text), v.get(text)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match &self.0 {
            PairsRepr::Plain { left, .. } => *left,
            PairsRepr::Pairs { pairs, .. } => pairs.len(),
        };
        (left, Some(left))
    }
}

impl ExactSizeIterator for HeaderPairs<'_> {}

impl fmt::Debug for HeaderPairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.clone()).finish()
    }
}

fn json_of(raw: &str) -> Json<'static> {
    Json::owned(
        serde_json::value::RawValue::from_string(raw.to_owned())
            // Classification validated the text; `null` is never produced.
            .unwrap_or_default(),
    )
}

/// A client request (PROTOCOL.md §3.1) that a server session accepted: the
/// frame's text and views into it.
#[derive(Clone)]
pub struct ReceivedRequest<T = String> {
    pub(crate) text: T,
    pub(crate) id: Span,
    pub(crate) kind: Kind,
}

#[derive(Clone)]
pub(crate) enum Kind {
    Notify { response_id: Span, content: Span },
}

/// What a [`ReceivedRequest`] asks, borrowed from its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind<'a> {
    /// `agent_completion_notify`: hand `content` to the running agent
    /// completion `response_id`.
    AgentCompletionNotify {
        /// The id of an agent completion the session has sent in a chunk.
        response_id: &'a str,
        /// A JSON string or an array of typed parts: the JSON text as it
        /// arrived.
        content: &'a str,
    },
}

impl<T: AsRef<str>> ReceivedRequest<T> {
    /// The request's id, minted by the client.
    pub fn id(&self) -> &str {
        self.id.get(self.text.as_ref())
    }

    /// What is asked.
    pub fn kind(&self) -> RequestKind<'_> {
        let text = self.text.as_ref();
        match &self.kind {
            Kind::Notify {
                response_id,
                content,
            } => RequestKind::AgentCompletionNotify {
                response_id: response_id.get(text),
                content: content.get(text),
            },
        }
    }

    /// The wire `type` tag.
    pub fn tag(&self) -> &'static str {
        match self.kind {
            Kind::Notify { .. } => "agent_completion_notify",
        }
    }

    /// The whole frame's text.
    pub fn text(&self) -> &str {
        self.text.as_ref()
    }

    /// The frame's text, given back.
    pub fn into_text(self) -> T {
        self.text
    }

    /// The request as an owned wire value (copies its fields).
    pub fn to_request(&self) -> ClientRequest<'static> {
        let RequestKind::AgentCompletionNotify {
            response_id,
            content,
        } = self.kind();
        ClientRequest {
            id: Cow::Owned(self.id().to_owned()),
            kind: ClientRequestKind::AgentCompletionNotify {
                response_id: Cow::Owned(response_id.to_owned()),
                content: json_of(content),
            },
        }
    }
}

/// Equal when the fields are, wherever they sit in their frames.
impl<T: AsRef<str>> PartialEq for ReceivedRequest<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id() && self.kind() == other.kind()
    }
}

impl<T: AsRef<str>> Eq for ReceivedRequest<T> {}

impl<T: AsRef<str>> fmt::Debug for ReceivedRequest<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedRequest")
            .field("id", &self.id())
            .field("kind", &self.kind())
            .finish()
    }
}

/// The part a server request and a server response do not share.
#[derive(Clone)]
pub(crate) enum Head {
    Method(Span),
    Status(u16),
}

/// A server request or response (PROTOCOL.md §3.2) as it arrived: the
/// frame's text and views into it. See [`ReceivedServerRequest`] and
/// [`ReceivedResponse`].
#[derive(Clone)]
pub struct ReceivedHttp<T = String> {
    pub(crate) text: T,
    pub(crate) id: Span,
    pub(crate) head: Head,
    pub(crate) headers: HeaderSpans,
    pub(crate) body: Option<Span>,
}

/// A server request a client session received: answer it with
/// [`ClientSession::respond`](crate::ClientSession::respond).
pub type ReceivedServerRequest<T = String> = ReceivedHttp<T>;

/// The client's answer to a server request, as the server session received
/// it.
pub type ReceivedResponse<T = String> = ReceivedHttp<T>;

impl<T: AsRef<str>> ReceivedHttp<T> {
    pub(crate) fn new(
        text: T,
        id: Span,
        head: Head,
        headers: HeaderSpans,
        body: Option<Span>,
    ) -> Self {
        Self {
            text,
            id,
            head,
            headers,
            body,
        }
    }

    /// The request's id (a response echoes it).
    pub fn id(&self) -> &str {
        self.id.get(self.text.as_ref())
    }

    /// A request's HTTP method (`None` for a response).
    pub fn method(&self) -> Option<&str> {
        match &self.head {
            Head::Method(m) => Some(m.get(self.text.as_ref())),
            Head::Status(_) => None,
        }
    }

    /// A response's HTTP status (`None` for a request).
    pub fn status(&self) -> Option<u16> {
        match self.head {
            Head::Status(s) => Some(s),
            Head::Method(_) => None,
        }
    }

    /// The headers in wire order (duplicates kept as they came).
    pub fn headers(&self) -> HeaderPairs<'_> {
        let text = self.text.as_ref();
        HeaderPairs(match &self.headers {
            HeaderSpans::Plain { at, len } => PairsRepr::Plain {
                members: members(text.get(at.0..at.1).unwrap_or_default()),
                left: *len,
            },
            HeaderSpans::Pairs(pairs) => PairsRepr::Pairs {
                pairs: pairs.iter(),
                text,
            },
        })
    }

    /// The first value of header `name`, compared ASCII case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The body's JSON text as it arrived; `None` when absent (or `null`).
    pub fn body(&self) -> Option<&str> {
        self.body.as_ref().map(|b| b.get(self.text.as_ref()))
    }

    /// The whole frame's text.
    pub fn text(&self) -> &str {
        self.text.as_ref()
    }

    /// The frame's text, given back.
    pub fn into_text(self) -> T {
        self.text
    }

    fn owned_headers(&self) -> Headers<'static> {
        self.headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Headers<'_>>()
            .into_owned()
    }

    /// A request as an owned wire value (copies its fields); `None` for a
    /// response.
    pub fn to_request(&self) -> Option<ServerRequest<'static>> {
        Some(ServerRequest {
            id: Cow::Owned(self.id().to_owned()),
            method: Cow::Owned(self.method()?.to_owned()),
            headers: self.owned_headers(),
            body: self.body().map(json_of),
        })
    }

    /// A response as an owned wire value (copies its fields); `None` for a
    /// request.
    pub fn to_response(&self) -> Option<ServerResponse<'static>> {
        Some(ServerResponse {
            id: Cow::Owned(self.id().to_owned()),
            status: self.status()?,
            headers: self.owned_headers(),
            body: self.body().map(json_of),
        })
    }
}

/// Equal when the fields are, wherever they sit in their frames.
impl<T: AsRef<str>> PartialEq for ReceivedHttp<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
            && self.method() == other.method()
            && self.status() == other.status()
            && self.headers().eq(other.headers())
            && self.body() == other.body()
    }
}

impl<T: AsRef<str>> Eq for ReceivedHttp<T> {}

impl<T: AsRef<str>> fmt::Debug for ReceivedHttp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReceivedHttp");
        d.field("id", &self.id());
        match self.method() {
            Some(method) => d.field("method", &method),
            None => d.field("status", &self.status()),
        };
        d.field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &self.body())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Span;

    #[test]
    fn a_slice_of_the_text_is_a_range_and_anything_else_a_copy() {
        let text = String::from(r#"{"id":"abc"}"#);
        let id = &text[7..10];
        assert_eq!(Span::of(&text, id), Span::At(7, 10));
        assert_eq!(Span::of(&text, id).get(&text), "abc");
        let elsewhere = String::from("abc");
        assert_eq!(Span::of(&text, &elsewhere), Span::Unescaped("abc".into()));
        assert_eq!(Span::of(&text, "").get(&text), "");
    }
}
