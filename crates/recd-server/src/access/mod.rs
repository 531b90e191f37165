//! Access control and abuse limits (API.md "Access"): API keys with scopes, rate limits
//! per key and per client address, load shedding, and the JSON-only rule for bodies.
//!
//! Every route of [`crate::routes::table`] carries a [`Scope`]; [`router`](crate::router)
//! wraps each non-public route in [`gate`], which in this order:
//! 1. sheds the request (503) when `[server] max_in_flight` requests are already running;
//! 2. spends one request of the client address's budget (429), before the key is looked
//!    at, so that guessing keys is rate limited too;
//! 3. authenticates `Authorization: Bearer <key>` (401) and checks the route's scope (403);
//! 4. spends one request of the key's budget (429);
//! 5. refuses a body that is not `application/json` (415).
//!
//! Public routes (`/health`, `/ready`, `/metrics`, `/openapi.json`) skip all of it: load
//! balancers and scrapers must reach them when the server is busy.
//!
//! Auth is on when any key source is configured (`[auth] keys` or `[auth] keys_file`),
//! and then on every non-public route. Without keys it is off, which the binary allows only
//! on a loopback address or with `--insecure` ([`crate::config::check_exposure`]).
//!
//! # Layout
//! - [`keys`]: key generation, hashing, the key set, keys files.
//! - [`limits`]: the GCRA rate limiters (in process, or shared through Redis).

pub mod keys;
pub mod limits;
pub mod scope;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

pub use self::keys::{AuthConfig, Grant, KeyConfig, KeyError, KeySet, Principal};
pub use self::limits::{Decision, Kind, Limiter, LimitsConfig, Rate, Who};
pub use self::scope::Scope;
use crate::error::{ApiError, Code};

/// The keys and limits a server enforces; shared by every request.
pub struct Access {
    /// Whether requests to non-public routes need a key.
    enabled: bool,
    /// The keys of `[auth] keys` (they never change while the process runs).
    fixed: KeySet,
    /// `fixed` plus the keys file's keys, swapped whole on reload.
    keys: RwLock<Arc<KeySet>>,
    /// `[auth] keys_file`.
    keys_file: Option<PathBuf>,
    /// The keys file's modification time at the last load, to notice edits by polling.
    loaded_mtime: Mutex<Option<SystemTime>>,
    /// `[auth] reload_poll_seconds`.
    poll: Duration,
    /// Rate limits.
    limiter: Limiter,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("enabled", &self.enabled)
            .field("keys_file", &self.keys_file)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// Reads the configured keys (the keys file too) with in-process rate limits.
    pub fn load(auth: &AuthConfig, limits: &LimitsConfig) -> Result<Access, String> {
        let access = Self::without_file(auth, limits)?;
        access
            .reload()
            .map_err(|e| format!("bad configuration: auth.keys_file: {e}"))?;
        Ok(access)
    }

    /// The keys of `[auth] keys` only; a configured keys file is not read (its keys are
    /// refused until [`Access::reload`] succeeds), so this never does IO.
    pub fn without_file(auth: &AuthConfig, limits: &LimitsConfig) -> Result<Access, String> {
        let fixed =
            KeySet::new(&auth.keys).map_err(|e| format!("bad configuration: auth.keys: {e}"))?;
        Ok(Access {
            enabled: auth.configured(),
            keys: RwLock::new(Arc::new(fixed.clone())),
            fixed,
            keys_file: auth.keys_file.clone(),
            loaded_mtime: Mutex::new(None),
            poll: Duration::from_secs(auth.reload_poll_seconds),
            limiter: Limiter::local(limits),
        })
    }

    /// Nothing is let through a non-public route (the state of a server whose keys could
    /// not be read: failing closed).
    pub fn closed(limits: &LimitsConfig) -> Access {
        Access {
            enabled: true,
            fixed: KeySet::default(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            keys_file: None,
            loaded_mtime: Mutex::new(None),
            poll: Duration::ZERO,
            limiter: Limiter::local(limits),
        }
    }

    /// The same keys with other rate limiters (e.g. [`limits::Shared`] in redis mode).
    pub fn with_limiter(mut self, limiter: Limiter) -> Access {
        self.limiter = limiter;
        self
    }

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How many keys are accepted now.
    pub fn key_count(&self) -> usize {
        self.current().len()
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            // A panic while swapping cannot leave a half-written Arc; keep serving.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the keys file again and swaps in its keys (plus `[auth] keys`). On any error
    /// the keys in use stay as they were. Returns how many keys are accepted now.
    pub fn reload(&self) -> Result<usize, KeyError> {
        let Some(path) = &self.keys_file else {
            return Ok(self.key_count());
        };
        let mtime = keys::modified(path);
        let file = keys::load_file(path)?;
        let all = Arc::new(self.fixed.merged(&file)?);
        let n = all.len();
        match self.keys.write() {
            Ok(mut k) => *k = all,
            Err(poisoned) => *poisoned.into_inner() = all,
        }
        if let Ok(mut m) = self.loaded_mtime.lock() {
            *m = mtime;
        }
        Ok(n)
    }

    /// Reloads if the keys file changed since the last load; logs the outcome.
    fn reload_if_changed(&self) {
        let Some(path) = &self.keys_file else { return };
        let now = keys::modified(path);
        let last = self.loaded_mtime.lock().map(|m| *m).unwrap_or(None);
        if now.is_some() && now != last {
            self.reload_logged("the keys file changed");
        }
    }

    /// Reloads and logs the outcome (for SIGHUP and the file poll).
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(n) => tracing::info!(keys = n, why, "API keys reloaded"),
            Err(e) => {
                tracing::error!(cause = %e, why, "API keys not reloaded; the previous keys stay in use")
            }
        }
    }

    /// Polls the keys file's modification time every `[auth] reload_poll_seconds` (when
    /// set) until the last handle to `access` is dropped.
    pub fn spawn_watcher(access: &Arc<Access>) {
        if access.keys_file.is_none() || access.poll.is_zero() {
            return;
        }
        let weak: Weak<Access> = Arc::downgrade(access);
        let poll = access.poll;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(access) = weak.upgrade() else { return };
                access.reload_if_changed();
            }
        });
    }

    /// The key of `headers`, checked against `scope`: `Ok(None)` when auth is off.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Option<Principal>, ApiError> {
        if !self.enabled || scope == Scope::Public {
            return Ok(None);
        }
        let Some(presented) = bearer(headers) else {
            metrics::counter!("recd_auth_denied_total", "reason" => "missing").increment(1);
            return Err(ApiError::with_code(
                Code::Unauthorized,
                "this endpoint needs an API key: send 'Authorization: Bearer <key>'",
            ));
        };
        let Some(principal) = self.current().authenticate(presented) else {
            metrics::counter!("recd_auth_denied_total", "reason" => "invalid").increment(1);
            return Err(ApiError::with_code(
                Code::Unauthorized,
                "the API key is not valid (unknown, revoked, or mistyped)",
            ));
        };
        if !principal.allows(scope) {
            metrics::counter!("recd_auth_denied_total", "reason" => "scope").increment(1);
            let needed = match scope {
                Scope::Read => "read",
                Scope::Write => "write",
                Scope::Admin | Scope::Public => "admin",
            };
            let has: Vec<&str> = principal.scopes.iter().map(|g| g.as_str()).collect();
            return Err(ApiError::with_code(
                Code::Forbidden,
                format!(
                    "the key '{}' lacks the '{needed}' scope this endpoint needs (it has: {})",
                    principal.name,
                    has.join(", ")
                ),
            ));
        }
        Ok(Some(principal))
    }

    /// The rate limiters.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What [`gate`] needs: the route's scope and the shared access state.
#[derive(Clone)]
pub struct Gate {
    /// The route's scope.
    pub scope: Scope,
    /// Keys and limits.
    pub access: Arc<Access>,
    /// Permits for requests in flight (`[server] max_in_flight`).
    pub in_flight: Arc<Semaphore>,
}

/// A 429 with `Retry-After` in whole seconds (at least 1).
fn rate_limited(wait: Duration, by: &'static str) -> Response {
    metrics::counter!("recd_rate_limited_total", "by" => by).increment(1);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut response = ApiError::with_code(
        Code::RateLimited,
        format!("over the rate limit per {by} ([limits] per_{by}); retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Middleware around each non-public route: see the module documentation for the order.
pub async fn gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    if gate.scope == Scope::Public {
        return next.run(req).await;
    }
    let Ok(_permit) = gate.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("recd_requests_shed_total").increment(1);
        let mut response = ApiError::unavailable(
            "the server is at its limit of requests in flight ([server] max_in_flight); retry shortly",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let access = &gate.access;
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Decision::Deny(wait) = access.limiter.check(Kind::Ip, Who::Ip(addr.ip())).await
    {
        return rate_limited(wait, "ip");
    }
    let principal = match access.authorize(req.headers(), gate.scope) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Some(p) = &principal
        && let Decision::Deny(wait) = access.limiter.check(Kind::Key, Who::Name(&p.name)).await
    {
        return rate_limited(wait, "key");
    }
    if let Err(e) = crate::edge::require_json(&req) {
        return e.into_response();
    }
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h), token, "{value}");
        }
    }
}
