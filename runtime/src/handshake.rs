//! The server's side of the WebSocket opening handshake (RFC 6455 §4.2),
//! read and answered here rather than by tungstenite, whose server handshake
//! drops the connection without a word on a request it cannot take. Every
//! request gets an HTTP answer:
//!
//! | the request | answer |
//! |---|---|
//! | not HTTP (garbage), a bad request line or header | `400` |
//! | a method other than `GET` | `405` with `Allow: GET` |
//! | a head over [`MAX_HEAD`] bytes, or over 124 headers | `431` |
//! | no `Connection: upgrade`, no `websocket` token in `Upgrade` | `400` |
//! | no `Sec-WebSocket-Version` | `400` |
//! | a `Sec-WebSocket-Version` other than `13` | `426` with `Sec-WebSocket-Version: 13` |
//! | no `Sec-WebSocket-Key`, or one that is not 16 bytes in base64 | `400` |
//! | refused by the accept check | the check's response |
//! | otherwise | `101`, then the session |
//!
//! `Upgrade` is a comma-separated token list compared case-insensitively
//! (PROTOCOL.md §1: `websocket, h2c` upgrades).

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite;
use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::handshake::machine::TryParse;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::socket::refuse;
use crate::telemetry::{self, Role as Side};

/// The largest request head (request line and headers) the server reads;
/// a longer one is answered `431`.
pub(crate) const MAX_HEAD: usize = 16 << 10;
/// Bytes read from the socket at once while the head is incomplete.
const READ_CHUNK: usize = 2 << 10;

/// Reads the upgrade request, answers it, and on success hands the stream to
/// async-tungstenite with `config`. `check` sees a request that is a valid
/// upgrade and can refuse it with its own response. A refused request is
/// answered and fails with `tungstenite::Error::Http` holding that answer.
#[allow(clippy::result_large_err)]
pub(crate) async fn accept<S, C>(
    mut stream: S,
    config: WebSocketConfig,
    check: C,
) -> Result<WebSocketStream<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: FnOnce(&Request) -> Result<(), ErrorResponse>,
{
    let mut buf = vec![0; MAX_HEAD];
    let mut filled = 0;
    let parsed = loop {
        match Request::try_parse(&buf[..filled]) {
            Ok(Some(parsed)) => break Ok(parsed),
            Ok(None) if filled == MAX_HEAD => {
                break Err(refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                ));
            }
            Ok(None) => {}
            Err(e) => break Err(unparsable(&e)),
        }
        let end = (filled + READ_CHUNK).min(MAX_HEAD);
        let n = stream.read(&mut buf[filled..end]).await?;
        if n == 0 {
            return Err(tungstenite::Error::Protocol(
                ProtocolError::HandshakeIncomplete,
            ));
        }
        filled += n;
    };
    let refused = match parsed {
        Ok((len, request)) => match validate(&request) {
            Ok(accept_key) => match check(&request) {
                Ok(()) => {
                    let head = format!(
                        "HTTP/1.1 101 Switching Protocols\r\n\
                         Connection: Upgrade\r\n\
                         Upgrade: websocket\r\n\
                         Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.flush().await?;
                    // Frames a client sent before the answer are kept.
                    buf.truncate(filled);
                    let tail = buf.split_off(len);
                    return Ok(WebSocketStream::from_partially_read(
                        stream,
                        tail,
                        Role::Server,
                        Some(config),
                    )
                    .await);
                }
                // Refused by the application, which its check logs.
                Err(response) => response,
            },
            Err(response) => {
                telemetry::refused(Side::Server, response.status().as_u16(), "bad upgrade");
                response
            }
        },
        Err(response) => {
            telemetry::refused(Side::Server, response.status().as_u16(), "bad upgrade");
            response
        }
    };
    Err(answer(&mut stream, refused).await)
}

/// The answer to a head tungstenite could not take as a request.
fn unparsable(error: &tungstenite::Error) -> ErrorResponse {
    match error {
        tungstenite::Error::Protocol(ProtocolError::WrongHttpMethod) => {
            let mut response = refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET upgrades");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            response
        }
        tungstenite::Error::Capacity(CapacityError::TooManyHeaders) => refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many headers",
        ),
        _ => refuse(StatusCode::BAD_REQUEST, "not a valid HTTP/1.1 request"),
    }
}

/// Whether `request` is a WebSocket upgrade this server speaks; the value
/// of `Sec-WebSocket-Accept` if so, else the answer.
#[allow(clippy::result_large_err)]
pub(crate) fn validate(request: &Request) -> Result<String, ErrorResponse> {
    let headers = request.headers();
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !connection_upgrade {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs `Connection: Upgrade`",
        ));
    }
    if !wirestream_proto::wants_websocket(headers.iter()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs `Upgrade: websocket`",
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        None => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "missing Sec-WebSocket-Version",
            ));
        }
        Some(version) if version.as_bytes().trim_ascii() != b"13" => {
            let mut response = refuse(
                StatusCode::UPGRADE_REQUIRED,
                "only WebSocket version 13 is spoken",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return Err(response);
        }
        Some(_) => {}
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_valid_key(key.as_bytes()) => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        )),
    }
}

/// Whether `key` is 16 bytes in padded base64 (24 characters, the unused
/// bits of the last one zero), as RFC 6455 §4.1 asks.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24
        && key[..21].iter().all(alphabet)
        // The 22nd character carries 2 bits of the 16th byte and 4 zero bits.
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

/// Writes `response` (status, headers, body, `Connection: close`) and
/// returns the handshake's error holding it.
async fn answer<S>(stream: &mut S, mut response: ErrorResponse) -> tungstenite::Error
where
    S: AsyncWrite + Unpin,
{
    if response.status().is_success() || response.status().is_informational() {
        // A check must refuse with an error status; this is a bug of its.
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    let body = response.body().clone().unwrap_or_default();
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION {
            continue;
        }
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(&String::from_utf8_lossy(value.as_bytes()));
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    head.push_str(&body);
    // Best effort: a peer that is gone gets the error all the same.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
    let (parts, body) = response.into_parts();
    let body = body.map(String::into_bytes);
    tungstenite::Error::Http(Box::new(tungstenite::http::Response::from_parts(
        parts, body,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/agent/completions");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("Connection", "keep-alive, Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn with(name: &str, value: Option<&str>) -> Request {
        let mut headers: Vec<(&str, &str)> =
            GOOD.iter().filter(|(n, _)| *n != name).copied().collect();
        if let Some(value) = value {
            headers.push((name, value));
        }
        request(&headers)
    }

    fn status(request: &Request) -> u16 {
        validate(request).unwrap_err().status().as_u16()
    }

    #[test]
    fn the_rfc_example_is_accepted() {
        assert_eq!(
            validate(&request(&GOOD)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_is_a_token_list() {
        assert!(validate(&with("Upgrade", Some("WebSocket, h2c"))).is_ok());
        assert!(validate(&with("Upgrade", Some("h2c,websocket"))).is_ok());
        assert_eq!(status(&with("Upgrade", Some("h2c"))), 400);
    }

    #[test]
    fn bad_requests_get_their_answers() {
        assert_eq!(status(&with("Sec-WebSocket-Version", None)), 400);
        let old = validate(&with("Sec-WebSocket-Version", Some("8"))).unwrap_err();
        assert_eq!(old.status().as_u16(), 426);
        assert_eq!(old.headers()["sec-websocket-version"], "13");
        assert_eq!(status(&with("Sec-WebSocket-Key", None)), 400);
        assert_eq!(status(&with("Sec-WebSocket-Key", Some("not base64!"))), 400);
        assert_eq!(status(&with("Connection", Some("keep-alive"))), 400);
    }

    #[test]
    fn keys_are_16_bytes_of_base64() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        // 15 bytes, 17 bytes, stray bits, a bad character.
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAB=="));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAA*A=="));
    }
}
