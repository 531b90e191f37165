//! `recd import movielens DIR`: a GroupLens MovieLens folder (ml-100k, ml-1m or ml-latest
//! layout) into the configured store: movies as items (`title` text without the year,
//! `genres` tags, `year` numeric), ratings as `rating` events with their own timestamps.
//!
//! Items start without vectors (the popular source serves them until `recd train`); an
//! import keeps any vector an item already has, so re-importing the catalog after training
//! does not wipe embeddings.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use recd_core::item::{MAX_TEXT_BYTES, validate_tag};
use recd_core::{Event, EventType, FieldType, Item, ItemUpsert, Metric, Schema, VectorSpec};
use recd_server::config::Backend;
use recd_store::Store;
use recd_train::movielens::{self, Movie};
use serde_json::{Value, json};

use crate::progress::Progress;
use crate::serve::open_store;
use crate::{StoreArgs, UsageError};

/// Events per `apply_events` batch (embedded: one durable commit each).
const EVENT_BATCH: usize = 5000;
/// Events per `apply_events` batch on Redis: each user's events of a batch are one script
/// (~60 us per event: 1000 events of one user block Redis ~60 ms), and the batch must fit
/// the store's per-operation deadline (2 s). ml-latest-small under recommend load: 17 s at
/// 1000 (20 before: 94 s), 0 failed requests either way.
const REDIS_EVENT_BATCH: usize = 1000;

/// `recd import movielens` flags.
#[derive(clap::Args, Debug)]
pub struct MovielensArgs {
    /// The folder: ml-100k (`u.data`, `u.item`), ml-1m (`ratings.dat`, `movies.dat`) or
    /// ml-latest (`ratings.csv`, `movies.csv`).
    pub dir: PathBuf,
    /// Vector dimension of a new store's schema (the ALS factors `recd train` will write).
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    /// Rating events per write [default: 5000 embedded, 1000 redis].
    #[arg(long)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The schema a MovieLens store gets when neither the data dir nor the config has one.
///
/// The metric is the inner product: ALS scores a user-item pair by the dot product, and the
/// item vector's length carries how strongly (and how often) the item is liked. Cosine drops
/// that length, which on ml-latest-small cost the serving pipeline half its NDCG@10 (random
/// split: 0.1754 with cosine, below popularity's 0.1892; 0.3353 with `ip`, ALS itself 0.3561).
pub fn schema(dim: usize) -> Schema {
    Schema {
        vector: VectorSpec {
            dim,
            metric: Metric::Ip,
            quantization: Default::default(),
            partition_by: None,
        },
        fields: [
            ("title", FieldType::Text),
            ("genres", FieldType::Tag),
            ("year", FieldType::Numeric),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect(),
    }
}

/// The config's schema, else (for a fresh embedded data dir or for Redis, which has no
/// stored schema to fall back on) the MovieLens schema of `dim`.
pub fn config_with_default_schema(store: &StoreArgs, dim: usize) -> Result<recd_server::Config> {
    let mut config = store.load()?;
    let fresh_dir = !config.data_dir.join("recd.redb").exists();
    if config.schema.is_none() && (fresh_dir || config.backend == Backend::Redis) {
        config.schema = Some(schema(dim));
    }
    Ok(config)
}

/// The store of `config`, with a clear message when another process holds the data dir.
pub async fn open(config: &recd_server::Config) -> Result<Arc<dyn Store>> {
    open_store(config).await.map_err(|e| {
        let text = format!("{e:#}");
        if config.backend == Backend::Embedded
            && (text.contains("already open") || text.contains("lock"))
        {
            e.context(format!(
                "the data dir {} is in use by another process (a running `recd serve`?): \
                 the embedded backend has one writer; stop the server first, or use \
                 --backend redis, whose store servers and batch jobs share",
                config.data_dir.display()
            ))
        } else {
            e
        }
    })
}

/// The JSON form of a movie under `schema` (only the fields the schema has, with the type
/// it expects; a field that does not fit is left out with a warning, once).
fn movie_json(m: &Movie, schema: &Schema, warned: &mut HashSet<&'static str>) -> Value {
    let mut v = json!({ "id": m.id });
    let mut put = |name: &'static str, ty: FieldType, value: Value| {
        if schema.field(name) == Some(ty) {
            v[name] = value;
        } else if warned.insert(name) {
            tracing::warn!(
                field = name,
                "the store's schema has no {ty:?} field '{name}': movies are imported without it"
            );
        }
    };
    if !m.title.is_empty() {
        let mut title = m.title.clone();
        if title.len() > MAX_TEXT_BYTES {
            let mut end = MAX_TEXT_BYTES;
            while !title.is_char_boundary(end) {
                end -= 1;
            }
            title.truncate(end);
        }
        put("title", FieldType::Text, Value::String(title));
    }
    let genres: Vec<&String> = m
        .genres
        .iter()
        .filter(|g| validate_tag("genres", g).is_ok())
        .collect();
    if !genres.is_empty() {
        put("genres", FieldType::Tag, json!(genres));
    }
    if let Some(y) = m.year {
        put("year", FieldType::Numeric, json!(y));
    }
    v
}

/// Items for every movie of the catalog, plus a bare item for every rated movie the catalog
/// lacks (so that training can give it a vector). Upserts keep existing vectors.
pub fn items(
    movies: &[Movie],
    rated: impl IntoIterator<Item = String>,
    schema: &Schema,
) -> Result<Vec<ItemUpsert>> {
    let mut warned = HashSet::new();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for m in movies {
        by_id.insert(m.id.clone(), movie_json(m, schema, &mut warned));
    }
    for id in rated {
        by_id
            .entry(id.clone())
            .or_insert_with(|| json!({ "id": id }));
    }
    let mut out = Vec::with_capacity(by_id.len());
    for (id, v) in by_id {
        let item = Item::from_json(&v, schema)
            .map_err(|e| UsageError(format!("movie '{id}': {}", e.message)))?;
        out.push(ItemUpsert {
            item,
            keep_vector: true,
        });
    }
    Ok(out)
}

/// Ratings as `rating` events, in time order (stable: file order within a timestamp).
pub fn events(ratings: &[recd_train::Interaction]) -> Result<Vec<Event>> {
    let mut out = Vec::with_capacity(ratings.len());
    for (n, r) in ratings.iter().enumerate() {
        let value = r.value.filter(|v| (0.5..=5.0).contains(v)).ok_or_else(|| {
            UsageError(format!(
                "rating {} (user {}, movie {}): stars must be 0.5 to 5, got {:?}",
                n + 1,
                r.user,
                r.item,
                r.value
            ))
        })?;
        out.push(Event {
            user_id: r.user.clone(),
            item_id: r.item.clone(),
            kind: EventType::Rating,
            value: Some(value),
            timestamp_ms: r.timestamp_ms.max(0),
            recommendation_id: None,
        });
    }
    out.sort_by_key(|e| e.timestamp_ms);
    Ok(out)
}

/// Loads a MovieLens folder, turning a folder that is none of the layouts into a usage error.
pub fn load(dir: &Path) -> Result<movielens::MovieLens> {
    movielens::load_movielens(dir).map_err(|e| match e {
        recd_train::TrainError::UnknownLayout { .. } => anyhow::Error::new(UsageError(format!(
            "{}: not a MovieLens folder (expected u.data + u.item, ratings.dat + movies.dat, \
             or ratings.csv + movies.csv)",
            dir.display()
        ))),
        other => anyhow::Error::new(other).context(format!("reading {}", dir.display())),
    })
}

/// `recd import movielens DIR`.
pub async fn run(args: MovielensArgs) -> Result<()> {
    let started = Instant::now();
    if !args.dir.is_dir() {
        // The caller's mistake (exit 2), found before anything is created.
        return Err(UsageError(format!(
            "{} does not exist or is not a folder",
            args.dir.display()
        ))
        .into());
    }
    let ml = load(&args.dir)?;
    let config = config_with_default_schema(&args.store, args.factors)?;
    let store = open(&config).await?;
    let counts = store.counts().await?;
    if counts.users > 0 {
        return Err(UsageError(format!(
            "the store already holds {} users: importing the ratings again would count them \
             twice (use a fresh --data-dir, or another redis prefix)",
            counts.users
        ))
        .into());
    }
    let schema = store.schema().clone();
    let rated: Vec<String> = ml.ratings.iter().map(|r| r.item.clone()).collect();
    let items = items(&ml.movies, rated, &schema)?;
    let events = events(&ml.ratings)?;
    let n_items = items.len();
    // Batches sized by time, retried when Redis is slow (`recd_store::bulk`).
    let bar = Progress::new("items", Some(n_items as u64));
    let bulk = crate::serve::bulk_options(&config).observed(Arc::new(bar.clone()));
    recd_store::bulk::upsert_items(&*store, items, &bulk)
        .await
        .context("writing items")?;
    bar.finish();
    let batch = args
        .batch
        .unwrap_or(if config.backend == Backend::Redis {
            REDIS_EVENT_BATCH
        } else {
            EVENT_BATCH
        })
        .max(1);
    let progress = Progress::new("ratings", Some(events.len() as u64));
    for (n, chunk) in events.chunks(batch).enumerate() {
        store.apply_events(chunk).await.with_context(|| {
            format!(
                "writing rating events: the store holds the items and the first {} of {} \
                 ratings (a partial import: start again with an empty store)",
                n * batch,
                events.len()
            )
        })?;
        progress.add(chunk.len() as u64);
    }
    progress.finish();
    let users: HashSet<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
    println!(
        "imported {} layout from {}: {n_items} items ({} movies), {} ratings of {} users as \
         rating events, into the {} store in {:.1} s; items have no vectors until `recd train`",
        layout_name(ml.layout),
        args.dir.display(),
        ml.movies.len(),
        events.len(),
        users.len(),
        store.backend(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The folder name GroupLens uses for a layout.
pub fn layout_name(layout: movielens::Layout) -> &'static str {
    match layout {
        movielens::Layout::Ml100k => "ml-100k",
        movielens::Layout::Ml1m => "ml-1m",
        movielens::Layout::MlLatest => "ml-latest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(id: &str, title: &str, genres: &[&str], year: Option<i32>) -> Movie {
        Movie {
            id: id.into(),
            title: title.into(),
            genres: genres.iter().map(|g| g.to_string()).collect(),
            year,
        }
    }

    #[test]
    fn movies_become_items_of_the_movielens_schema() {
        let s = schema(8);
        let items = items(
            &[movie(
                "1",
                "Toy Story",
                &["Animation", "Comedy"],
                Some(1995),
            )],
            ["1".to_string(), "7".to_string()],
            &s,
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let toy = &items[0].item;
        assert_eq!(toy.id, "1");
        assert!(items[0].keep_vector && toy.vector.is_none());
        assert_eq!(
            toy.field("genres").and_then(|g| g.as_tags()),
            Some(&["Animation".to_string(), "Comedy".to_string()][..])
        );
        assert_eq!(toy.field("year").and_then(|y| y.as_number()), Some(1995.0));
        assert!(
            items[1].item.fields.is_empty(),
            "a rated movie without catalog entry"
        );
    }

    #[test]
    fn fields_missing_from_a_custom_schema_are_left_out() {
        let mut s = schema(8);
        s.fields.remove("year");
        let items = items(&[movie("1", "X", &[], Some(2001))], [], &s).unwrap();
        assert!(items[0].item.field("year").is_none());
    }

    #[test]
    fn ratings_become_time_ordered_rating_events_and_bad_stars_are_refused() {
        let r = |u: &str, t: i64, v: Option<f64>| recd_train::Interaction {
            user: u.into(),
            item: "1".into(),
            kind: EventType::Rating,
            value: v,
            timestamp_ms: t,
        };
        let ev = events(&[r("a", 20, Some(4.0)), r("b", 10, Some(0.5))]).unwrap();
        assert_eq!(ev[0].user_id, "b");
        assert_eq!(ev[1].value, Some(4.0));
        assert!(ev.iter().all(|e| e.kind == EventType::Rating));
        assert!(events(&[r("a", 1, Some(7.0))]).is_err());
        assert!(events(&[r("a", 1, None)]).is_err());
    }
}
