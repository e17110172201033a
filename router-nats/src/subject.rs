//! The subject scheme: every session id is hex-encoded into one subject
//! token, so that no id (whatever its bytes: `.`, `*`, `>`, spaces) can
//! name another id's subject or a wildcard.
//!
//! | subject | who subscribes | what flows |
//! |---|---|---|
//! | `<prefix>.s.<hex(id)>` | the node that owns `id` | server requests for `id` (request-reply) |
//! | `<prefix>.claim` | every node | claim notices: `<time> <node> <hex(id)>` |
//! | `<prefix>.r.<node>.<token>` | the node `<node>` (one `*` subscription) | heartbeats and the answer to its request `<token>` |
//! | `<prefix>.sync.<node>` | nobody | a round trip to the server ("no responders") before a claim counts as settled |

use std::fmt::Write;

/// Whether `prefix` is a valid subject prefix: dot-separated tokens of
/// ASCII letters, digits, `-` and `_` (no wildcard, no space, no empty
/// token), at most 64 bytes.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `bytes` as lowercase hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes `text` encodes as hex digits (either case); `None` if it is
/// not an even number of hex digits.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let nibble = |d: u8| (d as char).to_digit(16);
    digits
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4 | nibble(pair[1])?) as u8))
        .collect()
}

/// The subject a node owning `id` answers on.
pub(crate) fn session(prefix: &str, id: &str) -> String {
    format!("{prefix}.s.{}", hex(id.as_bytes()))
}

/// The subject claim notices go out on.
pub(crate) fn claims(prefix: &str) -> String {
    format!("{prefix}.claim")
}

/// The subject a node's answers come back on, for its request `token`.
pub(crate) fn reply(prefix: &str, node: u64, token: u64) -> String {
    format!("{prefix}.r.{node:016x}.{token:x}")
}

/// What a node subscribes to for the answers to its requests.
pub(crate) fn replies(prefix: &str, node: u64) -> String {
    format!("{prefix}.r.{node:016x}.*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_become_one_plain_token() {
        for id in [
            "a.b",
            "*",
            ">",
            "a b",
            "x.*.>",
            "\u{0}\r\n",
            &"z".repeat(10 << 10),
        ] {
            let subject = session("wirestream", id);
            let token = subject.strip_prefix("wirestream.s.").unwrap();
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{subject}");
            assert_eq!(unhex(token).unwrap(), id.as_bytes());
        }
        assert_ne!(session("p", "a.b"), session("p", "a_b"));
    }

    #[test]
    fn unhex_refuses_what_is_not_hex() {
        assert_eq!(unhex("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex("0AFF"), Some(vec![10, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(""), Some(vec![]));
    }

    #[test]
    fn prefixes_are_plain_tokens() {
        assert!(valid_prefix("wirestream"));
        assert!(valid_prefix("prod.eu-1.wire_stream"));
        for bad in ["", "a..b", "a.*", ">", "a b", ".a", "a.", &"p".repeat(65)] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }
}
