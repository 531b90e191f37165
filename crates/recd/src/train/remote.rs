//! `recd train --target URL`: a running server's admin API as the trainer's store.
//!
//! The server keeps the data dir (or its Redis); the trainer reads the event log from
//! `GET /v1/admin/events` (NDJSON, read as it arrives), and writes through
//! `PUT /v1/admin/vectors` and `POST /v1/admin/sessions/rebuild`, all documented in
//! `recd_server::routes` (module `admin`). Every write is idempotent, so a batch whose
//! answer was lost (a timeout, a 503 from a busy server, a dropped connection) is simply
//! sent again; a 4xx or a 500 is final.

use std::time::Duration;

use recd_core::{Event, Schema};
use serde_json::{Value, json};

/// Why a call failed: worth another try, or not.
#[derive(Debug)]
pub enum Failure {
    /// The server could not answer now (connection, timeout, 502/503/504, 429).
    Transient(String),
    /// The server refused the request, or answered something unreadable.
    Fatal(anyhow::Error),
}

impl Failure {
    fn fatal(message: String) -> Self {
        Failure::Fatal(anyhow::anyhow!(message))
    }
}

/// How long one write may take before it counts as lost (and is retried).
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// A server's admin API.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    client: reqwest::Client,
}

/// One page of the event log.
#[derive(Debug)]
pub struct LogPage {
    /// The events, in the order the server applied them.
    pub events: Vec<Event>,
    /// The offset to read the events appended later from.
    pub next_offset: usize,
}

fn transport(e: &reqwest::Error, what: &str) -> Failure {
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        Failure::Transient(format!("{what}: {e}"))
    } else {
        Failure::fatal(format!("{what}: {e}"))
    }
}

impl Remote {
    /// A client for the server at `base` (`http://HOST:PORT`), sending `api_key` (which
    /// needs the admin scope) when given.
    pub fn new(base: &str, api_key: Option<&str>) -> anyhow::Result<Remote> {
        let client = reqwest::Client::builder()
            .default_headers(crate::api_headers(api_key)?)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()?;
        Ok(Remote {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `req`; a non-2xx answer becomes a [`Failure`] carrying the API's error message.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Failure> {
        let resp = req.send().await.map_err(|e| transport(&e, what))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_string);
        let details = match &body["error"]["details"] {
            Value::Array(d) if !d.is_empty() => format!(" {}", Value::from(&d[..d.len().min(5)])),
            _ => String::new(),
        };
        let text = format!("{what}: the server answered {status}: {message}{details}");
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(Failure::Transient(text)),
            _ => Err(Failure::fatal(text)),
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, Failure> {
        let resp = self.send(req, what).await?;
        resp.json()
            .await
            .map_err(|e| Failure::Transient(format!("{what}: reading the answer: {e}")))
    }

    /// `GET /health`: the backend's name and the catalog size.
    pub async fn health(&self) -> Result<(String, u64), Failure> {
        let v = self
            .json(
                self.client.get(format!("{}/health", self.base)),
                "GET /health",
            )
            .await?;
        let backend = v["backend"].as_str().unwrap_or("?").to_string();
        Ok((backend, v["items"].as_u64().unwrap_or(0)))
    }

    /// `GET /v1/admin/schema`.
    pub async fn schema(&self) -> Result<Schema, Failure> {
        let what = "GET /v1/admin/schema";
        let v = self
            .json(
                self.client.get(format!("{}/v1/admin/schema", self.base)),
                what,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| Failure::fatal(format!("{what}: {e}")))
    }

    /// `GET /v1/admin/events?offset=N`, parsed line by line as the body arrives.
    pub async fn events(&self, offset: usize) -> Result<LogPage, Failure> {
        let what = "GET /v1/admin/events";
        let mut resp = self
            .send(
                self.client
                    .get(format!("{}/v1/admin/events?offset={offset}", self.base)),
                what,
            )
            .await?;
        let mut events = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut line_no = 0usize;
        let mut parse = |line: &[u8], events: &mut Vec<Event>| -> Result<(), Failure> {
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let v: Value = serde_json::from_slice(line)
                .map_err(|e| Failure::fatal(format!("{what}: line {line_no} is not JSON: {e}")))?;
            // The server's own log: its timestamps were checked when they arrived.
            let event = Event::from_json(&v, 0, i64::MAX)
                .map_err(|e| Failure::fatal(format!("{what}: line {line_no}: {}", e.message)))?;
            events.push(event);
            Ok(())
        };
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::Transient(format!("{what}: reading the log: {e}")))?
        {
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                parse(&pending[start..start + end], &mut events)?;
                start += end + 1;
            }
            pending.drain(..start);
        }
        if !pending.is_empty() {
            parse(&pending, &mut events)?;
        }
        let next_offset = offset + events.len();
        Ok(LogPage {
            events,
            next_offset,
        })
    }

    /// `PUT /v1/admin/vectors` with item vectors: (replaced, not in the catalog).
    pub async fn put_item_vectors(
        &self,
        rows: &[(String, Vec<f32>)],
    ) -> Result<(usize, usize), Failure> {
        let v = self.put_vectors(json!({ "items": entries(rows) })).await?;
        Ok((count(&v, "items")?, count(&v, "unknown_items")?))
    }

    /// `PUT /v1/admin/vectors` with users' long-term vectors: how many were set.
    pub async fn put_user_vectors(&self, rows: &[(String, Vec<f32>)]) -> Result<usize, Failure> {
        let v = self.put_vectors(json!({ "users": entries(rows) })).await?;
        count(&v, "users")
    }

    async fn put_vectors(&self, body: Value) -> Result<Value, Failure> {
        self.json(
            self.client
                .put(format!("{}/v1/admin/vectors", self.base))
                .timeout(WRITE_TIMEOUT)
                .json(&body),
            "PUT /v1/admin/vectors",
        )
        .await
    }

    /// `POST /v1/admin/sessions/rebuild`: how many users were rebuilt.
    pub async fn rebuild_sessions(&self, users: &[String]) -> Result<usize, Failure> {
        let v = self
            .json(
                self.client
                    .post(format!("{}/v1/admin/sessions/rebuild", self.base))
                    .timeout(WRITE_TIMEOUT)
                    .json(&json!({ "users": users })),
                "POST /v1/admin/sessions/rebuild",
            )
            .await?;
        count(&v, "rebuilt")
    }
}

fn entries(rows: &[(String, Vec<f32>)]) -> Vec<Value> {
    rows.iter()
        .map(|(id, v)| json!({"id": id, "vector": v}))
        .collect()
}

fn count(v: &Value, key: &str) -> Result<usize, Failure> {
    v[key]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| Failure::fatal(format!("the server's answer lacks '{key}': {v}")))
}

/// The model registry over the admin API (`recd_server::routes::models`).
impl Remote {
    /// `GET /v1/models`.
    pub async fn models(&self) -> Result<Value, Failure> {
        self.json(
            self.client.get(format!("{}/v1/models", self.base)),
            "GET /v1/models",
        )
        .await
    }

    /// `POST /v1/admin/models`: a new version number.
    pub async fn new_model_version(&self) -> Result<String, Failure> {
        let what = "POST /v1/admin/models";
        let v = self
            .json(
                self.client.post(format!("{}/v1/admin/models", self.base)),
                what,
            )
            .await?;
        v["version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::fatal(format!("{what}: the answer lacks 'version': {v}")))
    }

    /// `PUT /v1/admin/models/{version}/chunks/{index}`.
    pub async fn put_model_chunk(
        &self,
        version: &str,
        index: u32,
        items: &[(String, Vec<f32>)],
        users: &[(String, Vec<f32>)],
    ) -> Result<(), Failure> {
        self.json(
            self.client
                .put(format!(
                    "{}/v1/admin/models/{version}/chunks/{index}",
                    self.base
                ))
                .timeout(WRITE_TIMEOUT)
                .json(&json!({"items": entries(items), "users": entries(users)})),
            "PUT /v1/admin/models/{version}/chunks/{index}",
        )
        .await
        .map(|_| ())
    }

    /// `GET /v1/admin/models/{version}/chunks/{index}`: (items, users).
    pub async fn model_chunk(&self, version: &str, index: u32) -> Result<VectorRows, Failure> {
        let what = "GET /v1/admin/models/{version}/chunks/{index}";
        let v = self
            .json(
                self.client
                    .get(format!(
                        "{}/v1/admin/models/{version}/chunks/{index}",
                        self.base
                    ))
                    .timeout(WRITE_TIMEOUT),
                what,
            )
            .await?;
        Ok((rows_of(&v["items"], what)?, rows_of(&v["users"], what)?))
    }

    /// `PUT /v1/admin/models/{version}`: records it.
    pub async fn record_model(
        &self,
        version: &str,
        chunks: u32,
        info: &Value,
    ) -> Result<(), Failure> {
        self.json(
            self.client
                .put(format!("{}/v1/admin/models/{version}", self.base))
                .json(&json!({"chunks": chunks, "info": info})),
            "PUT /v1/admin/models/{version}",
        )
        .await
        .map(|_| ())
    }

    /// `PUT /v1/admin/models/{version}/transitions`: one batch of its transition table.
    pub async fn put_model_transitions(
        &self,
        version: &str,
        lists: &[recd_store::NextList],
    ) -> Result<(), Failure> {
        let items: Vec<Value> = lists
            .iter()
            .map(|(id, next)| {
                json!({"id": id, "next": next.iter().map(|(b, p)| json!({"id": b, "p": p})).collect::<Vec<_>>()})
            })
            .collect();
        self.json(
            self.client
                .put(format!(
                    "{}/v1/admin/models/{version}/transitions",
                    self.base
                ))
                .timeout(WRITE_TIMEOUT)
                .json(&json!({ "items": items })),
            "PUT /v1/admin/models/{version}/transitions",
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/admin/models/{version}/live`.
    pub async fn mark_model_live(&self, version: &str) -> Result<(), Failure> {
        self.json(
            self.client
                .post(format!("{}/v1/admin/models/{version}/live", self.base)),
            "POST /v1/admin/models/{version}/live",
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/models/{version}/activate`.
    pub async fn activate_model(&self, version: &str) -> Result<Value, Failure> {
        self.json(
            self.client
                .post(format!("{}/v1/models/{version}/activate", self.base))
                .timeout(WRITE_TIMEOUT),
            "POST /v1/models/{version}/activate",
        )
        .await
    }
}

/// Item rows and user rows of a model chunk.
pub type VectorRows = (Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>);

fn rows_of(v: &Value, what: &str) -> Result<Vec<(String, Vec<f32>)>, Failure> {
    let Some(list) = v.as_array() else {
        return Err(Failure::fatal(format!(
            "{what}: expected a list of vectors"
        )));
    };
    list.iter()
        .map(|e| {
            let id = e["id"].as_str();
            let vector: Option<Vec<f32>> = e["vector"]
                .as_array()
                .and_then(|xs| xs.iter().map(|x| x.as_f64().map(|f| f as f32)).collect());
            match (id, vector) {
                (Some(id), Some(vector)) => Ok((id.to_string(), vector)),
                _ => Err(Failure::fatal(format!(
                    "{what}: a malformed vector entry {e}"
                ))),
            }
        })
        .collect()
}
