//! `recd serve`, and opening the configured store (shared by every command).

use std::sync::Arc;

use anyhow::{Context, Result};
use recd_server::config::Backend;
use recd_server::{AppState, Config};
use recd_store::embedded::EmbeddedStore;
use recd_store::{RedisStore, Store, StoreError};
use tokio::net::TcpListener;

use crate::{StoreArgs, UsageError};

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    match config.backend {
        Backend::Embedded => {
            let store = EmbeddedStore::open(
                &config.data_dir,
                config.schema.clone(),
                config.model.clone(),
                config.embedded.clone(),
            )
            .map_err(|e| match e {
                StoreError::Invalid(v) => anyhow::Error::new(UsageError(v.message)),
                other => anyhow::Error::new(other),
            })
            .with_context(|| format!("opening the data dir {}", config.data_dir.display()))?;
            Ok(Arc::new(store))
        }
        Backend::Redis => {
            let schema = config.schema.clone().ok_or_else(|| {
                UsageError(
                    "the redis backend needs a [schema] in the config (--config FILE)".into(),
                )
            })?;
            let store = RedisStore::connect(
                &config.redis_url,
                schema,
                config.model.clone(),
                config.redis.clone(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Invalid(v) => anyhow::Error::new(UsageError(v.message)),
                other => anyhow::Error::new(other),
            })
            .with_context(|| format!("connecting to {}", config.redis_url))?;
            Ok(Arc::new(store))
        }
    }
}

/// Binds, then serves until ctrl-c or SIGTERM.
pub async fn serve(config: Config, store: Arc<dyn Store>) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = store.backend(), "recd is serving");
    // A line on stdout that scripts and tests wait for.
    println!("recd listening on http://{addr}");
    let state = AppState::new(store, config);
    recd_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("recd stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// `recd serve`.
pub async fn run(args: StoreArgs) -> Result<()> {
    let config = args.load()?;
    let store = open_store(&config).await?;
    serve(config, store).await
}
