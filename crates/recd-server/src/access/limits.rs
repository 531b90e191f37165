//! Rate limits per API key and per client address: GCRA (the generic cell rate algorithm,
//! a token bucket kept as one timestamp per client).
//!
//! In one process (embedded backend) the `governor` crate keeps the state. In redis mode
//! every server of a deployment checks the same state in Redis with one Lua script, so a
//! client spread over N servers gets the configured rate, not N times it; the keys live
//! under the deployment's prefix (`{prefix}rl:key:<name>`, `{prefix}rl:ip:<address>`) and
//! expire once their bucket is full again. Redis's clock (`TIME`) is the one clock, so
//! servers whose clocks disagree still agree on the limit.
//!
//! When Redis cannot be asked, the request is let through (and counted in
//! `recd_rate_limit_errors_total`): a limit exists to protect the service, and refusing all
//! traffic because the limiter's store blinked would be the outage it is meant to prevent.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use recd_store::redis::Conn;
use redis::Script;
use serde::{Deserialize, Serialize};

/// One limit: a sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, sustained; 0 turns the limit off.
    pub rps: f64,
    /// Requests allowed at once after a quiet spell (at least 1 when the limit is on).
    pub burst: u32,
}

impl Default for Rate {
    fn default() -> Self {
        Self { rps: 0.0, burst: 0 }
    }
}

impl Rate {
    /// Whether the limit applies.
    pub fn enabled(&self) -> bool {
        self.rps > 0.0
    }

    /// The time between two requests at the sustained rate.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rps)
    }

    /// Bounds keep the Lua script's microsecond arithmetic exact in doubles (a bucket spans
    /// at most 1000 s × 1,000,000 = 10^15 µs, under 2^53).
    fn validate(&self, name: &str) -> Result<(), String> {
        if !self.rps.is_finite() || !(self.rps == 0.0 || (0.001..=1e6).contains(&self.rps)) {
            return Err(format!(
                "limits.{name}.rps must be 0 (off) or 0.001 to 1000000"
            ));
        }
        if self.enabled() && !(1..=1_000_000).contains(&self.burst) {
            return Err(format!(
                "limits.{name}.burst must be 1 to 1000000 when limits.{name}.rps is set"
            ));
        }
        Ok(())
    }
}

/// `[limits]`: request rate limits. Both are off by default (see the README's "Access and
/// limits" for suggested values).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Per API key (by its name), on routes that need a key.
    pub per_key: Rate,
    /// Per client IP address, on every route but the public ones (health, readiness,
    /// metrics, the API description), checked before the key so that guessing keys is
    /// limited too.
    pub per_ip: Rate,
}

impl LimitsConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        self.per_key.validate("per_key")?;
        self.per_ip.validate("per_ip")
    }
}

/// Which limit a check is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Per API key.
    Key,
    /// Per client address.
    Ip,
}

impl Kind {
    /// The label and key segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Ip => "ip",
        }
    }
}

/// A limit check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Over the limit: the next request would be allowed after this long.
    Deny(Duration),
}

/// Clean idle buckets out of the in-process maps once per this many checks: the maps
/// would otherwise keep one entry per address ever seen.
const RETAIN_EVERY: u64 = 4096;

/// The in-process limiter of one kind.
struct Local {
    rate: Rate,
    by_name: DefaultKeyedRateLimiter<String>,
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl Local {
    fn new(rate: Rate) -> Option<Local> {
        if !rate.enabled() {
            return None;
        }
        let burst = NonZeroU32::new(rate.burst.max(1))?;
        let quota = Quota::with_period(rate.interval())?.allow_burst(burst);
        Some(Local {
            rate,
            by_name: DefaultKeyedRateLimiter::keyed(quota),
            by_ip: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        })
    }

    fn check(&self, who: &Who<'_>) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.by_name.retain_recent();
            self.by_ip.retain_recent();
        }
        // The wait is measured on the limiter's own clock. A `DefaultClock::default()` per
        // check (as this did) calibrates a new quanta clock, CPUID instructions included:
        // that alone was ~26 % of a recommend's CPU with limits on (perf, issue 9).
        let outcome = match who {
            Who::Name(n) => self
                .by_name
                .check_key(&(*n).to_string())
                .map_err(|not_until| not_until.wait_time_from(self.by_name.clock().now())),
            Who::Ip(ip) => self
                .by_ip
                .check_key(ip)
                .map_err(|not_until| not_until.wait_time_from(self.by_ip.clock().now())),
        };
        match outcome {
            Ok(()) => Decision::Allow,
            Err(wait) => Decision::Deny(wait),
        }
    }
}

/// GCRA in Redis. KEYS[1]: the bucket; ARGV[1]: the emission interval (µs, one request at
/// the sustained rate); ARGV[2]: the burst. The bucket holds the theoretical arrival time
/// (TAT) in µs of Redis time; a request is allowed when TAT + interval - burst × interval
/// is not in the future. Returns {1, 0} (allowed) or {0, µs to wait}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait > 0 then
  return {0, math.ceil(wait)}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', math.ceil((new_tat - now) / 1000) + 1))
return {1, 0}
";

/// The limiter shared by a deployment's servers through Redis.
#[derive(Clone)]
pub struct Shared {
    conn: Conn,
    script: Script,
    prefix: String,
}

impl Shared {
    /// Connects to the deployment's Redis (or cluster: each limit is one key, one slot);
    /// `prefix` is its key prefix (`[redis] prefix`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Shared, recd_store::StoreError> {
        let conn =
            recd_store::redis::connect_url(url, false, connect_timeout, response_timeout).await?;
        Ok(Shared {
            conn,
            script: Script::new(GCRA),
            prefix: format!("{prefix}rl:"),
        })
    }

    async fn check(&self, kind: Kind, rate: Rate, who: &Who<'_>) -> Decision {
        let key = format!("{}{}:{}", self.prefix, kind.as_str(), who);
        let interval_us = (rate.interval().as_secs_f64() * 1e6).ceil().max(1.0) as u64;
        let mut conn = self.conn.clone();
        let reply: Result<(i64, i64), _> = self
            .script
            .key(key)
            .arg(interval_us)
            .arg(rate.burst.max(1))
            .invoke_async(&mut conn)
            .await;
        match reply {
            Ok((1, _)) => Decision::Allow,
            Ok((_, wait_us)) => Decision::Deny(Duration::from_micros(wait_us.max(0) as u64)),
            Err(e) => {
                metrics::counter!("recd_rate_limit_errors_total").increment(1);
                tracing::warn!(cause = %e, "rate limit check failed; letting the request through");
                Decision::Allow
            }
        }
    }
}

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// An API key, by its name.
    Name(&'a str),
    /// A client address.
    Ip(IpAddr),
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Name(n) => f.write_str(n),
            Who::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Both limits, in process or shared through Redis.
pub struct Limiter {
    config: LimitsConfig,
    local_key: Option<Local>,
    local_ip: Option<Local>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Limiter {
    /// In-process limits.
    pub fn local(config: &LimitsConfig) -> Limiter {
        Limiter {
            config: config.clone(),
            local_key: Local::new(config.per_key),
            local_ip: Local::new(config.per_ip),
            shared: None,
        }
    }

    /// Limits kept in Redis, shared by every server using `shared`'s prefix.
    pub fn shared(config: &LimitsConfig, shared: Shared) -> Limiter {
        Limiter {
            config: config.clone(),
            local_key: None,
            local_ip: None,
            shared: Some(shared),
        }
    }

    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.config.per_key.enabled() || self.config.per_ip.enabled()
    }

    /// Spends one request of `who`'s budget.
    pub async fn check(&self, kind: Kind, who: Who<'_>) -> Decision {
        let rate = match kind {
            Kind::Key => self.config.per_key,
            Kind::Ip => self.config.per_ip,
        };
        if !rate.enabled() {
            return Decision::Allow;
        }
        if let Some(shared) = &self.shared {
            return shared.check(kind, rate, &who).await;
        }
        let local = match kind {
            Kind::Key => &self.local_key,
            Kind::Ip => &self.local_ip,
        };
        match local {
            Some(l) => {
                debug_assert_eq!(l.rate, rate);
                l.check(&who)
            }
            None => Decision::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rps: f64, burst: u32) -> LimitsConfig {
        LimitsConfig {
            per_key: Rate { rps, burst },
            per_ip: Rate::default(),
        }
    }

    #[tokio::test]
    async fn the_burst_passes_then_the_next_request_waits_about_one_interval() {
        // 1 request per 100 s: nothing is replenished while the test runs.
        let l = Limiter::local(&limits(0.01, 3));
        for _ in 0..3 {
            assert_eq!(l.check(Kind::Key, Who::Name("a")).await, Decision::Allow);
        }
        match l.check(Kind::Key, Who::Name("a")).await {
            Decision::Deny(wait) => {
                assert!(
                    wait > Duration::from_secs(90) && wait <= Duration::from_secs(100),
                    "{wait:?}"
                )
            }
            Decision::Allow => panic!("the fourth request of a burst of 3 passed"),
        }
        // Another key has its own budget; IPs are not limited in this config.
        assert_eq!(l.check(Kind::Key, Who::Name("b")).await, Decision::Allow);
        let ip = Who::Ip(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..10 {
            assert_eq!(l.check(Kind::Ip, ip).await, Decision::Allow);
        }
    }

    #[test]
    fn a_rate_without_a_burst_is_refused() {
        assert!(limits(5.0, 0).validate().is_err());
        assert!(limits(f64::NAN, 1).validate().is_err());
        assert!(limits(1e-9, 1).validate().is_err());
        assert!(limits(5.0, 2_000_000).validate().is_err());
        assert!(limits(0.0, 0).validate().is_ok());
        assert!(limits(5.0, 10).validate().is_ok());
    }
}
