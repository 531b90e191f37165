//! OpenTelemetry export (cargo feature `otel`): with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! the request spans reach an OTLP/HTTP collector — here a minimal one that records the
//! bodies posted to `/v1/traces` — carrying the request id.
//!
//! Run with `cargo test -p recd --features otel --test e2e otel` (CI does).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::{Server, data_dir};

/// Accepts HTTP/1.1 posts and keeps each request (head and body) as bytes.
async fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let keep = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the head, then as many body bytes as Content-Length says.
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        keep.lock().expect("lock").push(buf.clone());
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn request_spans_reach_an_otlp_collector_with_their_request_id() {
    let (endpoint, seen) = collector().await;
    let dir = data_dir("otel");
    let s = Server::start(
        &[
            "demo",
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--items",
            "200",
            "--users",
            "10",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RECD_LOG", "info"),
        ],
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/items/sku-1", s.base))
        .header("x-request-id", "otel-trace-me-7")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let exported = crate::redis::eventually(Duration::from_secs(30), || async {
        seen.lock().expect("lock").iter().any(|r| {
            r.starts_with(b"POST /v1/traces") && r.windows(15).any(|w| w == b"otel-trace-me-7")
        })
    })
    .await;
    let heads: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|r| String::from_utf8_lossy(&r[..r.len().min(60)]).into_owned())
        .collect();
    assert!(
        exported,
        "no span with the request id was exported; got {heads:?}"
    );
}
