//! Following `LISTEN`/`NOTIFY`: a dedicated connection subscribes to the notify channel and a
//! task forwards each payload as a [`CatalogChange`]; when the connection drops it
//! reconnects with backoff and sends [`CatalogChange::All`] (notifications sent meanwhile
//! are lost), and when the consumer lags, single-item changes collapse into one `All`.

use std::future::poll_fn;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::sqlstate::{CatalogError, Phase, deadline, error_chain, pg_error};

/// Capacity of the channel [`PgCatalog::listen`](super::PgCatalog::listen) returns. When the consumer falls this far
/// behind, single-item changes are collapsed into one [`CatalogChange::All`].
pub const LISTEN_BUFFER: usize = 1024;

/// First and longest pause between two attempts to re-establish the `LISTEN` connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A change announced on the notify channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    /// This item's details changed (the payload of one `NOTIFY`).
    Item(String),
    /// Anything may have changed: notifications were lost (the `LISTEN` connection dropped,
    /// or the consumer fell [`LISTEN_BUFFER`] behind), or a `NOTIFY` had an empty payload.
    All,
}

/// Subscribes to `channel` and spawns the task that follows it (see
/// [`PgCatalog::listen`](super::PgCatalog::listen)).
pub(super) async fn listen(
    config: &tokio_postgres::Config,
    channel: String,
    timeout: Duration,
) -> Result<mpsc::Receiver<CatalogChange>, CatalogError> {
    let first = subscribe(config, &channel, timeout).await?;
    let (tx, rx) = mpsc::channel(LISTEN_BUFFER);
    tokio::spawn(follow(first, tx, config.clone(), channel, timeout));
    Ok(rx)
}

/// An active `LISTEN`: the client keeps the connection open; `notes` carries the
/// notifications its driver task reads, and ends when the connection does.
struct Subscription {
    _client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<String>,
}

/// Connects and runs `LISTEN channel`.
async fn subscribe(
    config: &tokio_postgres::Config,
    channel: &str,
    timeout: Duration,
) -> Result<Subscription, CatalogError> {
    let work = async {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&e, Phase::Fetch))?;
        let (tx, notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Drives the connection (queries make progress only while it is polled) and
            // forwards notifications; ends when the connection closes.
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(cause = %error_chain(&e), "catalog LISTEN connection failed");
                        break;
                    }
                    None => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
            .await
            .map_err(|e| pg_error(&e, Phase::Fetch))?;
        Ok(Subscription {
            _client: client,
            notes,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(deadline(timeout, "subscribing to the notify channel")))
}

/// The listener task: forwards notifications, collapses them into `All` when the consumer
/// lags, and re-subscribes when the connection drops.
async fn follow(
    mut subscription: Subscription,
    tx: mpsc::Sender<CatalogChange>,
    config: tokio_postgres::Config,
    channel: String,
    timeout: Duration,
) {
    // An `All` is owed: changes were lost, and single-item changes are dropped until it
    // is delivered (it covers them).
    let mut owe_all = false;
    loop {
        if forward(&mut subscription.notes, &tx, &mut owe_all).await == Flow::ConsumerGone {
            return;
        }
        tracing::warn!(channel = %channel, "catalog LISTEN connection lost; reconnecting");
        let mut delay = BACKOFF_MIN;
        subscription = loop {
            tokio::select! {
                () = tx.closed() => return,
                result = subscribe(&config, &channel, timeout) => match result {
                    Ok(s) => break s,
                    Err(e) => tracing::warn!(cause = %e, retry_in_ms = delay.as_millis() as u64,
                        "catalog LISTEN reconnect failed"),
                },
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        };
        tracing::info!(channel = %channel, "catalog LISTEN re-established");
        owe_all = true;
    }
}

/// Why [`forward`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The receiver was dropped: stop listening.
    ConsumerGone,
    /// The connection ended: subscribe again.
    ConnectionLost,
}

/// Forwards the payloads of one subscription to `tx` until either side ends. A change that
/// does not fit in `tx` is dropped and `owe_all` set; the `All` goes out as soon as there is
/// room, before any further payload (which it covers).
async fn forward(
    notes: &mut mpsc::UnboundedReceiver<String>,
    tx: &mpsc::Sender<CatalogChange>,
    owe_all: &mut bool,
) -> Flow {
    loop {
        tokio::select! {
            biased;
            () = tx.closed() => return Flow::ConsumerGone,
            permit = tx.reserve(), if *owe_all => match permit {
                Ok(permit) => {
                    permit.send(CatalogChange::All);
                    *owe_all = false;
                }
                Err(_) => return Flow::ConsumerGone,
            },
            note = notes.recv() => match note {
                Some(_) if *owe_all => {}
                Some(payload) => {
                    let change = if payload.is_empty() {
                        CatalogChange::All
                    } else {
                        CatalogChange::Item(payload)
                    };
                    match tx.try_send(change) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => *owe_all = true,
                        Err(mpsc::error::TrySendError::Closed(_)) => return Flow::ConsumerGone,
                    }
                }
                None => return Flow::ConnectionLost,
            },
        }
    }
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_consumer_gets_all_instead_of_lost_changes() {
        let (tx, mut rx) = mpsc::channel(2);
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        for p in ["a", "b", "c", "d"] {
            notes_tx.send(p.to_string()).expect("open");
        }
        drop(notes_tx);
        let mut owe_all = false;
        assert_eq!(
            forward(&mut notes, &tx, &mut owe_all).await,
            Flow::ConnectionLost
        );
        assert!(owe_all, "c and d did not fit");
        assert_eq!(rx.recv().await, Some(CatalogChange::Item("a".into())));
        assert_eq!(rx.recv().await, Some(CatalogChange::Item("b".into())));
        // With room again, the All goes out before anything newer.
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        notes_tx.send("e".to_string()).expect("open");
        drop(notes_tx);
        assert_eq!(
            forward(&mut notes, &tx, &mut owe_all).await,
            Flow::ConnectionLost
        );
        assert!(!owe_all);
        assert_eq!(rx.recv().await, Some(CatalogChange::All));
        assert_eq!(rx.recv().await, Some(CatalogChange::Item("e".into())));
        drop(rx);
        let (_keep, mut notes) = mpsc::unbounded_channel::<String>();
        assert_eq!(
            forward(&mut notes, &tx, &mut owe_all).await,
            Flow::ConsumerGone
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("items"), "\"items\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
