//! The rate limit shared through Redis (redis mode): two limiters on one Redis, as two
//! servers of a deployment would be, spend one budget; the bucket keys live under the
//! deployment's prefix and expire by themselves.
//!
//! Redis comes from `scripts/redis.sh` (one instance per test binary); under `CI=true` a
//! Redis that cannot start fails these tests, elsewhere they are skipped loudly.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use recd_server::access::limits::Shared;
use recd_server::access::{Decision, Kind, Limiter, LimitsConfig, Rate, Who};

fn redis_url() -> Option<String> {
    support::redis::redis_url("REDIS RATE LIMIT TESTS")
}

async fn limiter(url: &str, prefix: &str, config: &LimitsConfig) -> Limiter {
    let shared = Shared::connect(url, prefix, Duration::from_secs(2), Duration::from_secs(2))
        .await
        .expect("connect the limiter");
    Limiter::shared(config, shared)
}

#[tokio::test]
async fn two_servers_share_one_budget_per_key_and_per_address() {
    let Some(url) = redis_url() else { return };
    let prefix = support::redis::unique_prefix("rl");
    // One request per 1000 s: nothing is replenished while the test runs.
    let config = LimitsConfig {
        per_key: Rate {
            rps: 0.001,
            burst: 4,
        },
        per_ip: Rate {
            rps: 0.001,
            burst: 2,
        },
    };
    let a = limiter(&url, &prefix, &config).await;
    let b = limiter(&url, &prefix, &config).await;
    let mut allowed = 0;
    for i in 0..10 {
        let server = if i % 2 == 0 { &a } else { &b };
        if server.check(Kind::Key, Who::Name("app")).await == Decision::Allow {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4, "the burst is shared, not per server");
    match a.check(Kind::Key, Who::Name("app")).await {
        Decision::Deny(wait) => assert!(
            wait > Duration::from_secs(900) && wait <= Duration::from_secs(1000),
            "{wait:?}"
        ),
        Decision::Allow => panic!("over the burst"),
    }
    // Other keys and addresses have budgets of their own.
    assert_eq!(
        b.check(Kind::Key, Who::Name("other")).await,
        Decision::Allow
    );
    let ip = Who::Ip(IpAddr::from([192, 0, 2, 7]));
    assert_eq!(a.check(Kind::Ip, ip).await, Decision::Allow);
    assert_eq!(b.check(Kind::Ip, ip).await, Decision::Allow);
    assert!(matches!(a.check(Kind::Ip, ip).await, Decision::Deny(_)));

    // The state is under the prefix and expires once the bucket would be full again.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}rl:key:app");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 4_000_001, "{key}: PTTL {ttl}");
    let ip_key = format!("{prefix}rl:ip:192.0.2.7");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&ip_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 1);
}

#[tokio::test]
async fn a_key_name_cannot_reach_outside_its_bucket() {
    let Some(url) = redis_url() else { return };
    let prefix = support::redis::unique_prefix("rl2");
    let config = LimitsConfig {
        per_key: Rate {
            rps: 0.001,
            burst: 1,
        },
        per_ip: Rate::default(),
    };
    let a = limiter(&url, &prefix, &config).await;
    // Names are passed as KEYS, never spliced into the script: quotes and Lua do nothing.
    let odd = "x') redis.call('FLUSHALL') --";
    assert_eq!(a.check(Kind::Key, Who::Name(odd)).await, Decision::Allow);
    assert!(matches!(
        a.check(Kind::Key, Who::Name(odd)).await,
        Decision::Deny(_)
    ));
}
