//! `recd model list|activate VERSION`: the model versions `recd train` recorded (see
//! `recd_server::engine::models`), read and switched on the store of `--data-dir` /
//! `--backend` directly, or on a running server with `--target URL` (through
//! `GET /v1/models` and `POST /v1/models/{version}/activate`), as `recd train` reaches
//! its store.

use anyhow::Result;
use serde_json::Value;

use crate::train::remote::Failure;
use crate::train::{Target, connect, engine_failure, open_direct, with_retries};
use crate::{StoreArgs, UsageError};

/// Where the versions are.
#[derive(clap::Args, Debug)]
pub struct Where {
    /// A running server (http://HOST:PORT) instead of opening the store directly.
    #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "backend", "redis_url"])]
    pub target: Option<String>,
    /// API key with the admin scope, for --target.
    #[arg(long, env = "RECD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `recd model` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// List the model versions: created_at, status (live, available, rejected), settings
    /// and quality-gate figures.
    List {
        /// Print `GET /v1/models`'s JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// Make a version live (rollback: activate an older one).
    Activate {
        /// The version, e.g. v2.
        version: String,
        #[command(flatten)]
        at: Where,
    },
}

async fn open(at: &Where) -> Result<Target> {
    Ok(match &at.target {
        Some(url) => connect(url, at.api_key.as_deref()).await?.0,
        None => open_direct(&at.store).await?.0,
    })
}

/// The versions as `GET /v1/models` answers.
async fn models(target: &Target) -> Result<Value> {
    with_retries("reading the model versions", || async {
        match target {
            Target::Store(engine) => {
                let m = engine.models().await.map_err(engine_failure)?;
                serde_json::to_value(m).map_err(|e| Failure::Fatal(anyhow::Error::new(e)))
            }
            Target::Server(remote, _) => remote.models().await,
        }
    })
    .await
}

/// `recd model ...`.
pub async fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::List { json, at } => {
            let target = open(&at).await?;
            let m = models(&target).await?;
            if json {
                println!("{m}");
            } else {
                print!("{}", table(&m));
            }
            Ok(())
        }
        ModelCommand::Activate { version, at } => {
            let target = open(&at).await?;
            let m = models(&target).await?;
            let known = m["models"]
                .as_array()
                .is_some_and(|l| l.iter().any(|v| v["version"] == version.as_str()));
            if !known {
                return Err(UsageError(format!(
                    "model version '{version}' does not exist (recd model list shows the kept ones)"
                ))
                .into());
            }
            let done = match &target {
                Target::Store(engine) => {
                    let a = engine
                        .activate_model(&version)
                        .await
                        .map_err(anyhow::Error::new)?;
                    serde_json::to_value(a)?
                }
                Target::Server(remote, _) => {
                    with_retries("activating the model version", || {
                        remote.activate_model(&version)
                    })
                    .await?
                }
            };
            if done["already_live"] == true {
                println!("model {version} is live already: nothing was written");
            } else {
                println!(
                    "model {version} is live: {} item vectors and {} user vectors written \
                     ({} items no longer in the catalog), {} sessions rebuilt",
                    done["items"], done["users"], done["unknown_items"], done["sessions"]
                );
            }
            Ok(())
        }
    }
}

/// One line per version, oldest first.
fn table(m: &Value) -> String {
    let mut out = format!(
        "{:<8} {:<9} {:<25} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8}  {}\n",
        "version",
        "status",
        "created_at",
        "factors",
        "iters",
        "lambda",
        "alpha",
        "ndcg@10",
        "base",
        "gate"
    );
    for v in m["models"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let s = &v["settings"];
        let g = &v["gate"];
        let num = |x: &Value| {
            x.as_f64()
                .map_or_else(|| "-".to_string(), |f| format!("{f:.4}"))
        };
        if s["kind"] == "ranker" {
            // A learned ranker: its held-out per-list AUC against the fixed blend's.
            out.push_str(&format!(
                "{:<8} {:<9} {:<25} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8}  {}
",
                v["version"].as_str().unwrap_or("?"),
                if v["status"] == "rejected" {
                    "rejected"
                } else {
                    "ranker"
                },
                v["created_at"].as_str().unwrap_or(""),
                "-",
                "-",
                s["fit"]["l2"],
                "-",
                num(&g["learned"]["gauc"]),
                num(&g["blend"]["gauc"]),
                if g["passed"] == true {
                    "passed (gauc)"
                } else {
                    "failed (gauc)"
                },
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<8} {:<9} {:<25} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8}  {}\n",
            v["version"].as_str().unwrap_or("?"),
            v["status"].as_str().unwrap_or("?"),
            v["created_at"].as_str().unwrap_or(""),
            s["factors"],
            s["iterations"],
            s["regularization"],
            s["alpha"],
            num(&g["candidate"]["ndcg"]),
            num(&g["baseline_score"]["ndcg"]),
            if g["passed"] == true {
                "passed"
            } else if g["forced"] == true {
                "forced"
            } else {
                "failed"
            },
        ));
    }
    match m["live"].as_str() {
        Some(live) => out.push_str(&format!("live: {live}\n")),
        None => out.push_str("live: none (no version was made live yet)\n"),
    }
    out
}
