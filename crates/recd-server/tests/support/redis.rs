//! A Redis with the Query Engine for one test binary, started through `scripts/redis.sh`:
//! `None` after a loud message on a machine that cannot run one, a failure under `CI=true`.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The URL of this test binary's Redis (`RECD_TEST_REDIS_URL` if set); `what` names the
/// tests in the skip message.
pub fn redis_url(what: &str) -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("RECD_TEST_REDIS_URL") {
            return Some(url);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/redis.sh");
        let started = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg("--owner")
            .arg(std::process::id().to_string())
            .output();
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        match started {
            Ok(out) if out.status.success() => {
                Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).to_string(),
                    Err(e) => e.to_string(),
                };
                assert!(!ci, "CI=true and Redis cannot start: {why}");
                let msg = format!("\n!!!!! SKIPPING {what}: {why}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                None
            }
        }
    })
    .clone()
}

/// A key prefix no other test (of this binary or another one running at the same time) uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t:{name}:{}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
