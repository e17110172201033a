//! Transport selection (PROTOCOL.md §1).

/// How one HTTP request on the streaming route is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket handshake, then the session of PROTOCOL.md §2.
    WebSocket,
    /// Server-Sent Events (a POST whose body says `"stream": true`).
    Sse,
    /// One `application/json` response.
    Unary,
}

/// Whether the request asks for a WebSocket: an `Upgrade` header (name
/// compared case-insensitively) with a `websocket` token (case-insensitive,
/// in a comma-separated list, e.g. `websocket, h2c`).
pub fn wants_websocket<'a, I, N, V>(headers: I) -> bool
where
    I: IntoIterator<Item = (&'a N, &'a V)>,
    N: AsRef<[u8]> + ?Sized + 'a,
    V: AsRef<[u8]> + ?Sized + 'a,
{
    headers.into_iter().any(|(name, value)| {
        name.as_ref().eq_ignore_ascii_case(b"upgrade")
            && value
                .as_ref()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// Selects the transport from the request's headers and, for a request that
/// is not an upgrade, the body's `stream` flag (see [`body_wants_stream`]).
pub fn select_transport<'a, I, N, V>(headers: I, stream: bool) -> Transport
where
    I: IntoIterator<Item = (&'a N, &'a V)>,
    N: AsRef<[u8]> + ?Sized + 'a,
    V: AsRef<[u8]> + ?Sized + 'a,
{
    if wants_websocket(headers) {
        Transport::WebSocket
    } else if stream {
        Transport::Sse
    } else {
        Transport::Unary
    }
}

/// Whether a JSON body says `"stream": true` at its top level. Anything else
/// (absent, `false`, another type, or a body that is not a JSON object)
/// means a unary response.
pub fn body_wants_stream(body: &[u8]) -> bool {
    // The flag is read as raw JSON: whatever else the body holds, nor a large
    // value under `stream`, is never built into a tree.
    #[derive(serde::Deserialize)]
    struct StreamFlag<'a> {
        #[serde(borrow, default)]
        stream: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<StreamFlag<'_>>(body)
        .is_ok_and(|b| b.stream.is_some_and(|raw| raw.get() == "true"))
}
