//! What a served list's `recommendation_id` says about it, so that a click or purchase
//! naming the id is counted under the list's strategy, experiment, variant and source on
//! whichever server receives the event (servers share no impression table on the request
//! path; `log_sample` is 0 by default).
//!
//! The id is `<uuid>.<source><hash>`: one letter for the source (`p` personalized, `o`
//! popular, `c` cache) and 8 hex digits of a hash of the strategy, experiment and variant
//! names. An event's id is client input: a tag that does not parse, or whose hash names no
//! strategy or variant the server knows, is counted under `unknown` — label values stay
//! bounded by what an administrator defined, whatever clients send.

use crate::answer::Source;

/// Label value for what is not known.
pub const NONE: &str = "none";
/// Label value for a tag that names nothing known.
pub const UNKNOWN: &str = "unknown";

/// The labels of a served list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListLabels {
    /// The strategy's name.
    pub strategy: String,
    /// The experiment, or `none`.
    pub experiment: String,
    /// The variant, or `none`.
    pub variant: String,
    /// `personalized`, `popular` or `cache`.
    pub source: &'static str,
}

impl ListLabels {
    /// The labels of a list nobody knows.
    pub fn unknown() -> Self {
        Self {
            strategy: UNKNOWN.into(),
            experiment: UNKNOWN.into(),
            variant: UNKNOWN.into(),
            source: UNKNOWN,
        }
    }

    /// As metric labels.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            ("strategy", self.strategy.clone()),
            ("experiment", self.experiment.clone()),
            ("variant", self.variant.clone()),
            ("source", self.source.to_string()),
        ]
    }
}

/// The source label of a list.
pub fn source_label(cached: bool, source: Source) -> &'static str {
    match (cached, source) {
        (true, _) => "cache",
        (false, Source::Personalized) => "personalized",
        (false, Source::Popular) => "popular",
    }
}

/// FNV-1a (32 bits) of the names, separated by a byte no name contains (names have no
/// control characters).
pub fn names_hash(strategy: &str, experiment: &str, variant: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, part) in [strategy, experiment, variant].iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0100_0193);
        }
        for b in part.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The id of a served list: `base` (unique) tagged with its labels.
pub fn tagged_id(base: &str, labels: &ListLabels) -> String {
    let letter = match labels.source {
        "personalized" => 'p',
        "popular" => 'o',
        _ => 'c',
    };
    let h = names_hash(&labels.strategy, &labels.experiment, &labels.variant);
    format!("{base}.{letter}{h:08x}")
}

/// The source and names hash a recommendation id carries, if it is tagged.
pub fn parse(id: &str) -> Option<(&'static str, u32)> {
    let (_, tag) = id.rsplit_once('.')?;
    if tag.len() != 9 {
        return None;
    }
    let source = match tag.as_bytes()[0] {
        b'p' => "personalized",
        b'o' => "popular",
        b'c' => "cache",
        _ => return None,
    };
    let hash = u32::from_str_radix(tag.get(1..)?, 16).ok()?;
    Some((source, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Experiments::list_labels` does with its table of known names.
    fn resolve(id: &str, known: &[(&str, &str, &str)]) -> ListLabels {
        let Some((source, hash)) = parse(id) else {
            return ListLabels::unknown();
        };
        known
            .iter()
            .find(|(s, e, v)| names_hash(s, e, v) == hash)
            .map_or_else(ListLabels::unknown, |(s, e, v)| ListLabels {
                strategy: s.to_string(),
                experiment: e.to_string(),
                variant: v.to_string(),
                source,
            })
    }

    fn labels(strategy: &str, experiment: &str, variant: &str, source: &'static str) -> ListLabels {
        ListLabels {
            strategy: strategy.into(),
            experiment: experiment.into(),
            variant: variant.into(),
            source,
        }
    }

    #[test]
    fn a_tagged_id_resolves_to_its_labels() {
        let known = [
            ("default", NONE, NONE),
            ("s2", "e1", "b"),
            ("default", "e1", "control"),
        ];
        for l in [
            labels("s2", "e1", "b", "personalized"),
            labels("default", "e1", "control", "cache"),
            labels("default", NONE, NONE, "popular"),
        ] {
            let id = tagged_id("0b3f2c1e-uuid", &l);
            assert_eq!(resolve(&id, &known), l, "{id}");
        }
    }

    #[test]
    fn anything_else_is_unknown() {
        let known = [("default", NONE, NONE)];
        let stranger = tagged_id("x", &labels("gone", NONE, NONE, "personalized"));
        for id in [
            "",
            "plain-uuid",
            "a.p1234567",
            "a.x12345678",
            "a.pzzzzzzzz",
            &stranger,
        ] {
            assert_eq!(resolve(id, &known), ListLabels::unknown(), "{id}");
        }
    }

    #[test]
    fn the_separator_keeps_names_apart() {
        assert_ne!(names_hash("ab", "c", "d"), names_hash("a", "bc", "d"));
    }
}
