//! Paging parameters shared by the listings (`GET /v1/items`, `GET /v1/users`,
//! `GET /v1/admin/events`): `limit` and the opaque `cursor`.
//!
//! A cursor is the store's position (the last id of a page, or its place in the event log)
//! in lowercase hex: opaque to clients, safe in a URL without escaping, and anything that
//! is not one is a 400 (never a 500, never a silent restart from the first page).

use crate::error::ApiError;

/// Entries per page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;
/// The largest `limit` of `GET /v1/items` and `GET /v1/users`.
pub const MAX_LIMIT: u64 = 1000;
/// The longest position a cursor may name (ids are at most 256 bytes).
const MAX_POSITION_BYTES: usize = 256;

/// `limit` checked against `1..=max`, `DEFAULT_LIMIT` (or `max` if smaller) when absent.
pub fn parse_limit(limit: Option<u64>, max: u64) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT.min(max)) {
        n if (1..=max).contains(&n) => Ok(n as usize),
        n => Err(ApiError::invalid(format!(
            "'limit' must be between 1 and {max}, got {n}"
        ))),
    }
}

/// The cursor of a store position.
pub fn encode_cursor(position: &str) -> String {
    let mut out = String::with_capacity(position.len() * 2);
    for b in position.bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The store position a cursor names; a 400 for anything [`encode_cursor`] cannot have made.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    // The documented patterns say which strings these are (hex of UTF-8 bytes).
    let bad = || ApiError::invalid("'cursor' is not a cursor this server gave out");
    let bytes = cursor.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) || bytes.len() > 2 * MAX_POSITION_BYTES {
        return Err(bad());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let decoded = bytes
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(decoded).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_was_not_given_out() {
        for position in ["a", "sku-1", "ü:\"x\" y", "1700000000000-3"] {
            let c = encode_cursor(position);
            assert!(c.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
            assert_eq!(decode_cursor(&c).unwrap(), position);
        }
        for bad in ["", "a", "zz", "ABCD", "c3", &"61".repeat(257)] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_default_and_bound() {
        assert_eq!(parse_limit(None, MAX_LIMIT).unwrap(), 100);
        assert_eq!(parse_limit(Some(1000), MAX_LIMIT).unwrap(), 1000);
        assert!(parse_limit(Some(1001), MAX_LIMIT).is_err());
        assert!(parse_limit(Some(0), MAX_LIMIT).is_err());
    }
}
