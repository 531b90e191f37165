//! The console's files, compiled in from `crates/recd-server/console/` (no build step:
//! what is in that folder is what the browser runs). A test holds this table and the
//! folder to each other, so that a file added there is served and none is forgotten.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `/console/`.
    pub path: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// FNV-1a of `body`, computed at compile time: the ETag changes with the binary's
    /// copy of the file and costs nothing per request.
    hash: u64,
}

impl Asset {
    /// The strong ETag of this version of the file (quoted, as HTTP wants it).
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

/// The file at `path` (relative to `/console/`), if the console has one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Every file, for the page weight and the tests.
pub fn all() -> &'static [Asset] {
    ASSETS
}

macro_rules! asset {
    ($path:literal) => {{
        let body: &'static [u8] = include_bytes!(concat!("../../console/", $path));
        Asset {
            path: $path,
            body,
            content_type: content_type($path),
            hash: fnv1a(body),
        }
    }};
}

const ASSETS: &[Asset] = &[
    asset!("index.html"),
    asset!("console.css"),
    asset!("favicon.svg"),
    asset!("app.js"),
    asset!("api.js"),
    asset!("dom.js"),
    asset!("prom.js"),
    asset!("chart.js"),
    asset!("moves.js"),
    asset!("filters.js"),
    asset!("playground.js"),
    asset!("operator.js"),
    asset!("browse.js"),
    asset!("experiments.js"),
    asset!("drift.js"),
    asset!("models.js"),
];

/// The content type of a file, by its extension.
const fn content_type(path: &str) -> &'static str {
    let b = path.as_bytes();
    if ends_with(b, b".html") {
        "text/html; charset=utf-8"
    } else if ends_with(b, b".css") {
        "text/css; charset=utf-8"
    } else if ends_with(b, b".js") {
        "text/javascript; charset=utf-8"
    } else if ends_with(b, b".svg") {
        "image/svg+xml"
    } else if ends_with(b, b".png") {
        "image/png"
    } else {
        "application/octet-stream"
    }
}

const fn ends_with(s: &[u8], suffix: &[u8]) -> bool {
    if suffix.len() > s.len() {
        return false;
    }
    let start = s.len() - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        if s[start + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_table_holds_exactly_the_files_of_the_console_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("the console folder")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let served: BTreeSet<String> = all().iter().map(|a| a.path.to_string()).collect();
        assert_eq!(on_disk, served);
    }

    #[test]
    fn every_file_has_a_known_type_and_its_own_etag() {
        let mut tags = BTreeSet::new();
        for a in all() {
            assert_ne!(a.content_type, "application/octet-stream", "{}", a.path);
            assert!(tags.insert(a.etag()), "{} shares an ETag", a.path);
        }
    }
}
