//! Item and user ids: 1–256 bytes of UTF-8 without control characters (API.md).

use crate::error::ValidationError;

/// The longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Checks an item or user id; `what` names it in the error ("item id", "user_id", ...).
pub fn validate_id(id: &str, what: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return crate::invalid!("{what} must not be empty");
    }
    if id.len() > MAX_ID_BYTES {
        return crate::invalid!(
            "{what} is {} bytes long; the limit is {MAX_ID_BYTES}",
            id.len()
        );
    }
    if id.chars().any(char::is_control) {
        return crate::invalid!("{what} contains a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_ids() {
        assert!(validate_id("sku-1", "id").is_ok());
        assert!(validate_id("ユーザー:42 {x}", "id").is_ok());
        assert!(validate_id(&"a".repeat(256), "id").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_control() {
        assert!(validate_id("", "id").is_err());
        assert!(validate_id(&"a".repeat(257), "id").is_err());
        assert!(validate_id("a\nb", "id").is_err());
        assert!(validate_id("a\u{0}b", "id").is_err());
        assert!(validate_id("a\u{7f}b", "id").is_err());
    }
}
