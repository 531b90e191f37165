//! Starting and stopping the real binary for a test, and talking to it: every answer the
//! helpers below get is checked against the server's own `/openapi.json`
//! ([`crate::contract`]), so that any test's answer that drifts from the document fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

use crate::contract::{Answer, Contract};

/// A running `recd` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
    /// The server's `/openapi.json`, fetched at the first checked answer.
    contract: OnceLock<Arc<Contract>>,
    /// A data dir the server owns ([`Server::owning`]): removed after the process is killed.
    dir: Option<DataDir>,
}

/// A fresh temporary data dir, removed when dropped unless the test is failing (then it
/// stays, with its log and files, for a look). The path is `data` inside a scratch dir of
/// the test's own, so the files a test names after it (`dir.with_extension("toml")`, a log,
/// an export) are inside that dir too and go with it.
pub fn data_dir(name: &str) -> DataDir {
    let root = std::env::temp_dir().join(format!("recd-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create a scratch dir");
    DataDir {
        path: root.join("data"),
        root,
    }
}

/// See [`data_dir`] (and [`scratch_file`]); derefs to its path.
#[derive(Debug)]
pub struct DataDir {
    /// The scratch dir removed on drop.
    root: PathBuf,
    /// The data dir (`data` inside `root`, not created), or a file beside it.
    path: PathBuf,
}

impl std::ops::Deref for DataDir {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<Path> for DataDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for DataDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A file `name.ext` in a scratch dir of its own ([`data_dir`], whose path it is instead of
/// the data dir's), removed with that dir when dropped.
pub fn scratch_file(name: &str, ext: &str) -> DataDir {
    let mut dir = data_dir(name);
    dir.path.set_extension(ext);
    dir
}

impl Server {
    /// Runs `recd <args> --listen 127.0.0.1:0` with `envs`, and waits for its
    /// "recd listening on" line (the only synchronization: no sleeps).
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_with_stderr(args, envs, Stdio::inherit())
    }

    /// [`Server::start`] with the process' stderr (its log) going to `stderr`.
    pub fn start_with_stderr(args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recd"));
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("RECD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn recd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("recd listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("recd did not start listening (args {args:?})")
            });
        Server {
            child,
            base,
            client: reqwest::Client::new(),
            contract: OnceLock::new(),
            dir: None,
        }
    }

    /// Keeps `dir` until the server is dropped (for helpers that make the dir and return only
    /// the server: the dir must outlive the process using it).
    pub fn owning(mut self, dir: DataDir) -> Server {
        self.dir = Some(dir);
        self
    }

    /// A demo server with a small catalog in `dir`.
    pub fn demo(dir: &Path, envs: &[(&str, &str)]) -> Server {
        let dir = dir.to_str().expect("utf-8 path");
        Server::start(
            &[
                "demo",
                "--data-dir",
                dir,
                "--items",
                "3000",
                "--users",
                "200",
                "--seed",
                "7",
            ],
            envs,
        )
    }

    /// The server's document.
    async fn contract(&self) -> Arc<Contract> {
        if let Some(c) = self.contract.get() {
            return Arc::clone(c);
        }
        let doc: Value = self
            .client
            .get(self.url("/openapi.json"))
            .send()
            .await
            .expect("GET /openapi.json")
            .json()
            .await
            .expect("/openapi.json is JSON");
        Arc::clone(self.contract.get_or_init(|| Arc::new(Contract::new(doc))))
    }

    /// Sends a request, checks the answer against `/openapi.json`, and returns its status,
    /// headers and body bytes.
    pub async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let req = req.build().expect("a valid request");
        let method = req.method().as_str().to_string();
        let path = req.url().path().to_string();
        let resp = self.client.execute(req).await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("the body").to_vec();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        self.contract().await.check(&Answer {
            method: &method,
            path: &path,
            status,
            content_type,
            body: &body,
        });
        (status, headers, body)
    }

    /// Sends a request and returns its status, JSON body (`null` if not JSON) and headers;
    /// the answer is checked against `/openapi.json`.
    pub async fn send_full(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let (status, headers, body) = self.exchange(req).await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
            headers,
        )
    }

    /// Sends a request and returns its status and JSON body (`null` if not JSON); the
    /// answer is checked against `/openapi.json`.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let (status, body, _) = self.send_full(req).await;
        (status, body)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        self.send(req).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.client.put(self.url(path)).json(&body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn get_text(&self, path: &str) -> String {
        let (_, _, body) = self.exchange(self.client.get(self.url(path))).await;
        String::from_utf8(body).expect("text")
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.exchange(self.client.delete(self.url(path))).await.0
    }

    pub async fn recommend(&self, body: Value) -> Value {
        let (status, v) = self.post("/v1/recommend", body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn event(&self, user: &str, item: &str, kind: &str) {
        let (status, v) = self
            .post(
                "/v1/events",
                json!({"events": [{"user_id": user, "item_id": item, "type": kind}]}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample line of `/metrics` (`name{labels} value`) whose labels include
/// every one of `labels`; 0 when there is none.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The ids of a recommend answer.
pub fn ids(answer: &Value) -> Vec<String> {
    answer["items"].as_array().map_or_else(Vec::new, |items| {
        items
            .iter()
            .filter_map(|i| i["id"].as_str().map(String::from))
            .collect()
    })
}

#[test]
fn a_scratch_dir_takes_the_files_named_after_it_when_dropped() {
    let dir = data_dir("scratch-helper");
    std::fs::create_dir_all(&*dir).expect("data dir");
    std::fs::write(dir.join("recd.redb"), "x").expect("a file inside");
    let beside = [dir.with_extension("toml"), dir.with_extension("log")];
    for f in &beside {
        std::fs::write(f, "x").expect("a file named after the dir");
    }
    let file = scratch_file("scratch-helper-file", "jsonl");
    std::fs::write(&*file, "x").expect("a scratch file");
    let file_path = file.to_path_buf();
    let dir_path = dir.to_path_buf();
    drop((dir, file));
    for gone in beside.iter().chain([&dir_path, &file_path]) {
        assert!(!gone.exists(), "{} is left behind", gone.display());
    }
}
