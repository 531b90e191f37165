//! `recd demo`: a realistic synthetic shop, loaded and served in one command.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use recd_core::{ItemUpsert, Schema};
use recd_store::Store;

use crate::serve::{bind, bulk_options, open_store, serve};
use crate::{ServeArgs, progress, synthetic};

/// `recd demo` flags.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    store: ServeArgs,
    /// Catalog size.
    #[arg(long, default_value_t = 50_000)]
    items: usize,
    /// Users with a history.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Random seed: the same seed gives the same catalog and history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Vector dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Load the data, print the examples, and exit instead of serving.
    #[arg(long)]
    load_only: bool,
}

impl DemoArgs {
    /// The serving flags (config file, listen address, store) the demo shares with `serve`.
    pub fn serve_args(&self) -> &ServeArgs {
        &self.store
    }
}

/// `recd demo`.
pub async fn run(args: DemoArgs) -> Result<()> {
    let mut config = args.store.load()?;
    // Before spending minutes on loading a catalog that could not be served.
    recd_server::config::check_exposure(&config)?;
    // Bound before minutes of loading: a port already taken fails now.
    let listener = if args.load_only {
        None
    } else {
        Some(bind(&config).await?)
    };
    let fresh_dir = !config.data_dir.join("recd.redb").exists();
    if config.schema.is_none()
        && (fresh_dir || config.backend == recd_server::config::Backend::Redis)
    {
        config.schema = Some(Schema::demo(args.dim));
    }
    let store = open_store(&config).await?;
    let counts = store.counts().await?;
    if counts.items > 0 {
        eprintln!(
            "recd demo: reusing the {} items and {} users already in the store",
            counts.items, counts.users
        );
    } else {
        load(&store, &args, &bulk_options(&config)).await?;
    }
    // The bound address: with `--listen 127.0.0.1:0` the examples name the real port.
    let addr = match &listener {
        Some(l) => l.local_addr()?,
        None => config.listen,
    };
    print_examples(&store, addr, config.auth.configured()).await?;
    match listener {
        Some(listener) => serve(config, store, listener).await,
        None => Ok(()),
    }
}

/// Writes the generated shop in batches sized by time (retried when the backend is slow or
/// busy, so that a loaded machine delays the load instead of failing it), progress logged.
async fn load(
    store: &Arc<dyn Store>,
    args: &DemoArgs,
    bulk: &recd_store::bulk::BulkOptions,
) -> Result<()> {
    let started = Instant::now();
    eprintln!(
        "recd demo: generating {} items and {} users (seed {})",
        args.items, args.users, args.seed
    );
    let data = synthetic::generate(args.items, args.users, args.dim, args.seed);
    let schema = store.schema().clone();
    let items = data
        .items
        .iter()
        .map(|v| ItemUpsert::from_json(v, &schema))
        .collect::<Result<Vec<_>, _>>()
        .context("the generator made an item the schema rejects (is the config's schema the demo schema?)")?;
    let (opts, p) = progress::bulk(bulk, "items", items.len());
    recd_store::bulk::upsert_items(&**store, items, &opts)
        .await
        .context("loading items")?;
    p.finish();
    let (opts, p) = progress::bulk(bulk, "events", data.events.len());
    recd_store::bulk::apply_events(&**store, &data.events, &opts)
        .await
        .context("loading events")?;
    p.finish();
    eprintln!(
        "recd demo: loaded {} items and {} events in {:.1} s",
        data.items.len(),
        data.events.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn print_examples(
    store: &Arc<dyn Store>,
    listen: std::net::SocketAddr,
    auth: bool,
) -> Result<()> {
    let base = format!("http://{listen}");
    let item = store
        .get_items(&["sku-0".to_string()])
        .await?
        .pop()
        .flatten();
    let category = item
        .as_ref()
        .and_then(|i| i.field("category"))
        .and_then(|v| v.as_tags())
        .and_then(|t| t.first().cloned())
        .unwrap_or_else(|| "shoes".into());
    println!(
        r#"
Ready-to-paste examples (the server is at {base}):

  curl -s {base}/health
  curl -s {base}/v1/recommend -H 'content-type: application/json' \
       -d '{{"user_id":"user-1","count":5}}'
  curl -s {base}/v1/recommend -H 'content-type: application/json' \
       -d '{{"user_id":"user-1","count":5,"filter":{{"category":{{"any":["{category}"]}},"price":{{"lt":100}},"in_stock":true}},"explain":true}}'
  curl -s {base}/v1/events -H 'content-type: application/json' \
       -d '{{"events":[{{"user_id":"new-visitor","item_id":"sku-0","type":"click"}}]}}'
  curl -s {base}/v1/recommend -H 'content-type: application/json' \
       -d '{{"user_id":"new-visitor","count":5}}'
  curl -s -X POST {base}/v1/items/sku-0/similar -H 'content-type: application/json' -d '{{"count":5}}'
  curl -s {base}/v1/users/user-1
  recd bench --target {base} --concurrency 32 --duration 20
"#
    );
    if auth {
        println!(
            "API keys are configured: add -H \"authorization: Bearer $RECD_API_KEY\" to each curl \
             (recd bench and recd train read RECD_API_KEY)\n"
        );
    }
    Ok(())
}
