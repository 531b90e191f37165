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

/// Serves `state` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    crate::metrics::handle();
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
        // The read buffer bounds a request head (hyper answers a bare 431 beyond it);
        // `header_limit` answers most oversized heads in the error shape well before.
        .max_buf_size((limits.max_header_bytes * 4).max(64 * 1024));
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
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
