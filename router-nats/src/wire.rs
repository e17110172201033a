//! What crosses NATS between nodes: a server request as JSON, and the
//! answer as NATS headers (`Ws-Reply: hb | ok | err`, `Ws-Failed: <why>`)
//! with, for `ok`, the client's response frame as it arrived.

use std::time::Duration;

use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use wirestream_runtime::{HttpRequest, RequestFailed};

/// The header that says what a message on a reply subject is.
pub(crate) const REPLY: &str = "Ws-Reply";
/// The header naming why a request failed (with `Ws-Reply: err`).
pub(crate) const FAILED: &str = "Ws-Failed";

/// A server request as the bridge's node sends it.
#[derive(Serialize)]
struct Outbound<'a> {
    method: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a RawValue>,
    timeout_ms: u64,
}

/// A server request as the owning node reads it.
#[derive(Deserialize)]
struct Inbound {
    method: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<Box<RawValue>>,
    timeout_ms: u64,
}

/// `request` as JSON, with `timeout` as its deadline.
pub(crate) fn encode_request(
    request: &HttpRequest,
    timeout: Duration,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Outbound {
        method: &request.method,
        headers: request.headers.iter().collect(),
        body: request.body.as_deref(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The request a peer node sent; `None` if it is not one.
pub(crate) fn decode_request(payload: &[u8]) -> Option<HttpRequest> {
    let inbound: Inbound = serde_json::from_slice(payload).ok()?;
    let mut request =
        HttpRequest::new(inbound.method).timeout(Duration::from_millis(inbound.timeout_ms));
    request.headers = inbound.headers.into_iter().collect();
    request.body = inbound.body;
    Some(request)
}

/// The headers of a message of kind `kind` (`hb`, `ok` or `err`).
pub(crate) fn reply_headers(kind: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(REPLY, kind);
    headers
}

/// The headers of a failed request.
pub(crate) fn failed_headers(failed: &RequestFailed) -> HeaderMap {
    let mut headers = reply_headers("err");
    headers.insert(FAILED, failure_name(failed));
    headers
}

/// The name of `failed` on the wire.
fn failure_name(failed: &RequestFailed) -> &'static str {
    match failed {
        RequestFailed::UnknownSession => "unknown",
        RequestFailed::TimedOut => "timeout",
        RequestFailed::TooManyRequests => "busy",
        RequestFailed::TooLarge => "large",
        RequestFailed::NotConnected => "not_connected",
        RequestFailed::ShuttingDown => "shutdown",
        // SessionEnded, and any later variant: the session is gone.
        _ => "ended",
    }
}

/// The failure a peer named; one this node does not know is the session's
/// end (`502`).
pub(crate) fn failure_of(name: &str) -> RequestFailed {
    match name {
        "unknown" => RequestFailed::UnknownSession,
        "timeout" => RequestFailed::TimedOut,
        "busy" => RequestFailed::TooManyRequests,
        "large" => RequestFailed::TooLarge,
        "not_connected" => RequestFailed::NotConnected,
        "shutdown" => RequestFailed::ShuttingDown,
        _ => RequestFailed::SessionEnded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_crosses_whole() {
        let request = HttpRequest::new("POST")
            .header("a", "1")
            .header("a", "2")
            .json(&serde_json::json!({"q": [1, 2]}))
            .unwrap();
        let payload = encode_request(&request, Duration::from_millis(1500)).unwrap();
        let back = decode_request(&payload).unwrap();
        assert_eq!(back.method, "POST");
        assert_eq!(
            back.headers.iter().collect::<Vec<_>>(),
            [("a", "1"), ("a", "2")]
        );
        assert_eq!(back.body.unwrap().get(), r#"{"q":[1,2]}"#);
        assert_eq!(back.timeout, Some(Duration::from_millis(1500)));
        assert!(decode_request(b"{\"method\": 5}").is_none());
        assert!(decode_request(b"not json").is_none());
    }

    #[test]
    fn every_failure_crosses_as_itself() {
        for failed in [
            RequestFailed::UnknownSession,
            RequestFailed::TimedOut,
            RequestFailed::SessionEnded,
            RequestFailed::TooManyRequests,
            RequestFailed::TooLarge,
            RequestFailed::NotConnected,
            RequestFailed::ShuttingDown,
        ] {
            assert_eq!(failure_of(failure_name(&failed)), failed);
        }
        assert_eq!(failure_of("from a newer node"), RequestFailed::SessionEnded);
    }
}
