//! hyper's own answers to requests it cannot parse, put in the API's error shape.
//!
//! hyper answers a request head it cannot parse before any request exists, so neither the
//! router nor `edge` sees it: a request target over [`crate::server::MAX_URI_BYTES`]
//! (414), a malformed request line or header (400), a head over the read buffer (431).
//! Its answer is a bare head (`content-length: 0`, no body), and it closes the connection.
//! No hook exists for it, so the connection's writer ([`crate::server`]'s `Watched`)
//! recognises such a head when it is written and sends [`shaped`] in its place.
//!
//! Recognising it is safe because no answer of ours looks like it: every 4xx the router
//! gives has a JSON body (`edge` shapes them all), so a 4xx head with `content-length: 0`
//! at the start of a write can only be hyper's.

use crate::error::{ApiError, Code};

/// The error-shaped answer to send instead of `head`, when `head` is hyper's bodiless
/// answer to an unparsable request; `None` for anything else.
pub fn shaped(head: &[u8]) -> Option<Vec<u8>> {
    let status = automatic_status(head)?;
    let (code, reason, message) = match status {
        414 => (
            Code::InvalidArgument,
            "URI Too Long",
            format!(
                "the URL is longer than {} bytes; send a large filter in a POST body",
                crate::server::MAX_URI_BYTES
            ),
        ),
        431 => (
            Code::HeadersTooLarge,
            "Request Header Fields Too Large",
            "the request's headers are larger than the server reads ([server] max_header_bytes)"
                .to_string(),
        ),
        _ => (
            Code::InvalidArgument,
            "Bad Request",
            "the request line or a header is not valid HTTP/1.1".to_string(),
        ),
    };
    let body = ApiError::with_code(code, message).body().to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The status of `head` when it is one of hyper's automatic answers (400, 414 or 431,
/// whole head in this write, `content-length: 0`, no content type).
fn automatic_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    // The whole write is the head: a bodiless answer.
    if end + 4 != head.len() {
        return None;
    }
    let lower = head[..end].to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    (has(b"\r\ncontent-length: 0") && !has(b"\r\ncontent-type:")).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = String::from_utf8_lossy(answer);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(length, body.len(), "{text}");
        serde_json::from_str(body).expect("a JSON body")
    }

    #[test]
    fn hypers_bare_answers_get_the_error_shape() {
        for (status, code) in [
            (414, "invalid_argument"),
            (400, "invalid_argument"),
            (431, "invalid_argument"),
        ] {
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 23:00:00 GMT\r\n\r\n"
            );
            let answer = shaped(head.as_bytes()).expect("recognised");
            assert!(
                answer.starts_with(format!("HTTP/1.1 {status} ").as_bytes()),
                "{status}"
            );
            let body = body_of(&answer);
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[test]
    fn our_own_answers_are_left_alone() {
        for head in [
            // an error of ours: it has a body and a content type
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n",
            // a head followed by its body in the same write
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            // a bodiless answer of another status
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            // not a head at all (a body chunk)
            "{\"error\":{}}",
            "HTTP/1.1 414",
        ] {
            assert_eq!(shaped(head.as_bytes()), None, "{head}");
        }
    }
}
