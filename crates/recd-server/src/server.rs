//! The accept loop: HTTP/1.1 connections served by hyper, with the limits that keep a
//! flood of slow or idle clients from taking every file descriptor (issue 9, finding 7).
//!
//! - **Connection cap** (`[server] max_connections`): a slot is taken before `accept`, so
//!   at the cap new connections wait in the kernel's accept queue (and time out there, at
//!   the client) instead of each holding a descriptor in this process.
//! - **Header read timeout** (`[server] header_read_timeout_ms`): hyper closes a connection
//!   whose request head is not complete in time, counted from the connection's start and
//!   again after each request, so it also bounds keep-alive connections idle between
//!   requests. Trickling a byte at a time does not reset it.
//! - **Idle timeout** (`[server] idle_timeout_ms`): a connection on which no byte moves
//!   either way for that long is dropped: a client that stopped reading its answer, or one
//!   that trickles a body.
//! - **Graceful stop**: when `shutdown` completes, accepting stops, idle keep-alive
//!   connections are closed, and requests in flight finish before [`serve`] returns.
//!
//! `axum::serve` exposes none of these, hence hyper directly. Only HTTP/1.1 is spoken, as
//! with `axum::serve` before (its `http2` feature was never on).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::routes::router;
use crate::state::AppState;

/// The longest request target (path and query) hyper accepts: `MAX_URI_LEN` of hyper's
/// HTTP/1 parser (`u16::MAX - 1`, also the most an `http::Uri` holds). Longer ones are
/// answered by hyper itself with a bare 414, which the connection's writer replaces with
/// one in the error shape (`parse_errors`).
pub const MAX_URI_BYTES: usize = u16::MAX as usize - 1;

/// hyper's read buffer for a request head with headers of at most `max_header_bytes`.
pub fn head_buffer_bytes(max_header_bytes: usize) -> usize {
    // The request line's method and version take a few bytes more than the target.
    MAX_URI_BYTES + 1024 + max_header_bytes * 4
}

/// Serves `state` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    crate::metrics::handle();
    // Drift is judged when reported; report it periodically so a crossing is logged (and
    // `on_drift_command` runs) even when nobody scrapes /metrics or asks for the report.
    let engine = Arc::downgrade(&state.engine);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let _ = engine.drift();
        }
    });
    // Online monitoring buffers what it sees per thread; fold it in small batches off the
    // request path (see `monitoring::pending`).
    let engine = Arc::downgrade(&state.engine);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            engine.monitor_tick();
        }
    });
    let limits = state.config().server.clone();
    serve_router(listener, router(state), &limits, shutdown).await
}

/// [`serve`] for any router, under `limits`.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        // The read buffer bounds a request head: hyper answers a bare 431 beyond it, before
        // a request exists (shaped by `parse_errors`, with a generic message). It holds the
        // longest request target hyper takes (`MAX_URI_BYTES`; a longer one gets a 414)
        // plus four times the header
        // limit, so that every head up to there reaches `edge::header_limit`, which answers
        // oversized headers with a 431 in the error shape.
        .max_buf_size(head_buffer_bytes(limits.max_header_bytes));
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: back off rather than spin on an error
                    // that will repeat at once (as axum::serve does).
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            http: http.clone(),
            app: app.clone(),
            peer,
            idle,
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            metrics::gauge!("recd_open_connections").increment(1.0);
            conn.run(stream).await;
            metrics::gauge!("recd_open_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it has finished.
    let _ = slots.acquire_many(cap as u32).await;
    Ok(())
}

/// One accepted connection.
struct Connection {
    http: http1::Builder,
    app: Router,
    peer: SocketAddr,
    idle: Duration,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
            replacement: Vec::new(),
        });
        let (app, peer) = (self.app.clone(), self.peer);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would add: the client's address,
            // for the per-address rate limit.
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = self.http.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            let quiet_until = activity.last() + self.idle;
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(cause = %e, peer = %self.peer, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(quiet_until) => {
                    if activity.last() + self.idle <= Instant::now() {
                        tracing::debug!(peer = %self.peer, "closing a connection idle for the idle timeout");
                        metrics::counter!("recd_idle_connections_closed_total").increment(1);
                        return;
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When bytes last moved on a connection.
struct Activity {
    start: Instant,
    /// Nanoseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A stream that records when bytes last moved on it.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// What is left to send of an error-shaped answer that replaced hyper's bare one
    /// (see `parse_errors`); sent before anything else is written, flushed or shut down.
    replacement: Vec<u8>,
}

impl Watched {
    /// Sends what is left of `replacement`.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.replacement.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.replacement) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.replacement.drain(..n);
                    self.activity.touch();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Stages the error-shaped answer when `head` is hyper's bare answer to a request it
    /// could not parse; true when it did (the head is then taken as written).
    fn replaced(&mut self, head: &[u8]) -> bool {
        match crate::parse_errors::shaped(head) {
            Some(answer) => {
                self.replacement = answer;
                true
            }
            None => false,
        }
    }
}

/// A write this short that starts like a 4xx status line may be one of hyper's bare
/// answers; longer ones carry a body and are never looked at.
const AUTOMATIC_HEAD_MAX: usize = 512;

fn may_be_automatic(first: &[u8], total: usize) -> bool {
    total <= AUTOMATIC_HEAD_MAX && first.starts_with(b"HTTP/1.1 4")
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if may_be_automatic(buf, buf.len()) && self.replaced(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if may_be_automatic(first, total) {
            let whole: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if self.replaced(&whole) {
                return Poll::Ready(Ok(total));
            }
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{Mutex, oneshot};

    use super::*;

    fn limits(header_ms: u64, idle_ms: u64) -> ServerConfig {
        ServerConfig {
            header_read_timeout_ms: header_ms,
            idle_timeout_ms: idle_ms,
            ..ServerConfig::default()
        }
    }

    /// Reads until the server closes the connection; the bound only keeps a broken
    /// build from hanging the test run.
    async fn read_to_close(conn: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let read = conn.read_to_end(&mut out);
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the server never closed the connection")
            .ok();
        out
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_by_the_idle_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        // The header timeout is far away: only the idle timeout can close it.
        let config = limits(600_000, 100);
        tokio::spawn(
            async move { serve_router(listener, app, &config, std::future::pending()).await },
        );
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut silent).await.is_empty());
        // A connection that talks is served.
        let mut talker = TcpStream::connect(addr).await.unwrap();
        talker
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut talker).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    #[tokio::test]
    async fn requests_hyper_cannot_parse_get_the_error_shape() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let config = limits(10_000, 60_000);
        tokio::spawn(
            async move { serve_router(listener, app, &config, std::future::pending()).await },
        );
        let long = format!(
            "GET /?filter={} HTTP/1.1\r\nHost: t\r\n\r\n",
            "a".repeat(MAX_URI_BYTES + 10)
        );
        for (request, status) in [
            (long.into_bytes(), "414"),
            (b"G\x01T / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), "400"),
        ] {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            // The server may answer and close before reading all of a long request.
            let _ = conn.write_all(&request).await;
            let answer = read_to_close(&mut conn).await;
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(text.contains("content-type: application/json"), "{text}");
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
            assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
        }
        // The server keeps serving.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut conn).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        assert!(answer.ends_with(b"ok"));
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered_tx, entered_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let hooks = Arc::new(Mutex::new(Some((entered_tx, release_rx))));
        let app = Router::new().route(
            "/slow",
            get(move || {
                let hooks = hooks.clone();
                async move {
                    if let Some((entered, release)) = hooks.lock().await.take() {
                        let _ = entered.send(());
                        let _ = release.await;
                    }
                    "done"
                }
            }),
        );
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let config = limits(10_000, 60_000);
        let server = tokio::spawn(async move {
            serve_router(listener, app, &config, async {
                let _ = stop_rx.await;
            })
            .await
        });
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        entered_rx.await.expect("the handler started");
        stop_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        let answer = read_to_close(&mut conn).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
            "{text}"
        );
        let stopped = tokio::time::timeout(Duration::from_secs(60), server).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "serve did not return after the drain"
        );
        // Nothing listens any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
