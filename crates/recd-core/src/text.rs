//! The tokenizer shared by text fields, `match` filters and free-text queries.
//!
//! Lowercase, split on anything that is not a letter, digit or underscore. Both backends
//! must agree on it: the Redis backend creates its TEXT fields with NOSTEM and no stopwords
//! and sends these same tokens, so a term matches exactly the same items everywhere.

/// Splits `text` into lowercase terms, in order, duplicates kept.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The distinct terms of `text`, sorted.
pub fn distinct_terms(text: &str) -> Vec<String> {
    let mut terms = tokenize(text);
    terms.sort();
    terms.dedup();
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_punctuation_and_lowercases() {
        assert_eq!(
            tokenize("Trail-Running shoe, V2!"),
            ["trail", "running", "shoe", "v2"]
        );
        assert_eq!(tokenize("  "), Vec::<String>::new());
        assert_eq!(distinct_terms("b a B"), ["a", "b"]);
    }
}
