//! `recd admin reshard-check`: the state of every shard of a Redis deployment (on a Redis
//! Cluster: the master serving its slot, whether the slot is moving, its item count, its
//! search index there and what needs attention), read from the store directly. Exit code
//! 1 when any shard has a problem, so that a resharding script can wait on it.

use anyhow::{Result, bail};
use recd_server::config::Backend;
use recd_store::redis::ShardReport;

use crate::{StoreArgs, UsageError};

/// `recd admin` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Per shard: the master holding its slot, items, its index's documents and indexing
    /// state, and problems (index missing on the slot's owner, counts that differ, a slot
    /// moving). Run it before and after moving a slot (docs/cluster.md, "Resharding").
    ReshardCheck {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `recd admin ...`.
pub async fn run(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::ReshardCheck { json, store } => {
            let config = store.load()?;
            if config.backend != Backend::Redis {
                return Err(UsageError(
                    "reshard-check reads a Redis deployment: give --backend redis --redis-url URL"
                        .into(),
                )
                .into());
            }
            let store = crate::serve::open_redis(&config).await?;
            let reports = store.shard_reports().await?;
            if json {
                println!("{}", serde_json::to_string(&reports)?);
            } else {
                print!("{}", table(&reports));
            }
            let bad = reports.iter().filter(|r| !r.problems.is_empty()).count();
            if bad > 0 {
                bail!("{bad} of {} shards need attention", reports.len());
            }
            Ok(())
        }
    }
}

/// The reports as a table, problems under their shard.
fn table(reports: &[ShardReport]) -> String {
    let mut out = format!(
        "{:<6} {:<12} {:>6} {:<22} {:>8} {:>9} {:<9}\n",
        "shard", "tag", "slot", "master", "items", "indexed", "state"
    );
    for r in reports {
        let (docs, state) = match &r.index {
            None => ("-".to_string(), "no index"),
            Some(i) if i.indexing && i.num_docs < r.items => (i.num_docs.to_string(), "indexing"),
            Some(i) => (
                i.num_docs.to_string(),
                if r.moving { "moving" } else { "ready" },
            ),
        };
        out.push_str(&format!(
            "{:<6} {:<12} {:>6} {:<22} {:>8} {:>9} {:<9}\n",
            r.shard,
            r.tag,
            r.slot.map_or("-".into(), |s| s.to_string()),
            r.master.as_deref().unwrap_or("-"),
            r.items,
            docs,
            state
        ));
        for p in &r.problems {
            out.push_str(&format!("       ! {p}\n"));
        }
    }
    out
}
