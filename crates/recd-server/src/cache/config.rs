//! `[cache]` configuration: what is cached, for how long, and which events invalidate it.

use recd_core::EventType;
use serde::{Deserialize, Serialize};

/// Time to live per kind of entry, in seconds (before jitter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtlSeconds {
    /// A user's recommendation list for one request shape.
    pub recs: f64,
    /// The popular candidates for one filter (shared by every user).
    pub popular: f64,
    /// One item's details (`GET /v1/items/{id}`, with the catalog source's row).
    pub item: f64,
}

impl Default for TtlSeconds {
    fn default() -> Self {
        Self {
            recs: 60.0,
            popular: 30.0,
            item: 300.0,
        }
    }
}

/// The caching tiers: L1 in-process (moka), L2 in Redis (redis backend only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Off: every request runs the pipeline (as `use_cache: false` does per request).
    pub enabled: bool,
    /// Most L1 entries per kind; the least recently useful are evicted first (TinyLFU).
    pub l1_max_entries: u64,
    /// Use Redis as L2 (and pub/sub to invalidate the other servers' L1) in redis mode.
    pub l2: bool,
    /// Time to live per kind.
    pub ttl_seconds: TtlSeconds,
    /// Each entry lives `ttl × (1 ± jitter)`, drawn uniformly, so that entries filled
    /// together do not expire together.
    pub jitter: f64,
    /// Event types that drop the user's cached lists before `/v1/events` answers (`dislike`
    /// and `hide` always do: their item must never come back). Others (by default views,
    /// dwell and skips) still update the user's state at once, but a cached list may be
    /// served until it expires.
    pub invalidate_on: Vec<EventType>,
    /// XFetch β: a hit refreshes the entry in the background with probability rising as
    /// expiry nears, scaled by how long the entry took to compute (0 turns it off).
    pub xfetch_beta: f64,
    /// How long a cross-server fill lock lives (milliseconds) if its holder dies.
    pub lock_ttl_ms: u64,
    /// How long a request waits for another server's fill before computing itself.
    pub lock_wait_ms: u64,
    /// At start, fill the popular list and the details of this many top items.
    pub warm_items: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            l1_max_entries: 100_000,
            l2: true,
            ttl_seconds: TtlSeconds::default(),
            jitter: 0.1,
            invalidate_on: vec![
                EventType::Purchase,
                EventType::AddToCart,
                EventType::Rating,
                EventType::Click,
            ],
            xfetch_beta: 1.0,
            lock_ttl_ms: 2_000,
            lock_wait_ms: 1_000,
            warm_items: 100,
        }
    }
}

impl CacheConfig {
    /// Checks values that parse but make no sense; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.ttl_seconds;
        for (name, v) in [("recs", t.recs), ("popular", t.popular), ("item", t.item)] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(format!(
                    "cache.ttl_seconds.{name} must be above 0 and at most 86400"
                ));
            }
        }
        if !(0.0..0.5).contains(&self.jitter) {
            return Err("cache.jitter must be at least 0 and below 0.5".into());
        }
        if !(self.xfetch_beta.is_finite() && self.xfetch_beta >= 0.0) {
            return Err("cache.xfetch_beta must be 0 or more".into());
        }
        if self.l1_max_entries == 0 {
            return Err("cache.l1_max_entries must be at least 1".into());
        }
        if self.lock_ttl_ms == 0 {
            return Err("cache.lock_ttl_ms must be at least 1".into());
        }
        Ok(())
    }

    /// The longest any entry can live (its TTL with the largest jitter).
    pub fn max_ttl_ms(&self) -> u64 {
        let t = &self.ttl_seconds;
        let max = t.recs.max(t.popular).max(t.item);
        (max * (1.0 + self.jitter) * 1000.0).ceil() as u64
    }
}
