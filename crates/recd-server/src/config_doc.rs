//! `recd config defaults`: every configuration key with its default value and a one-line
//! doc, as TOML that `recd serve --config` takes verbatim.
//!
//! The values come from [`Config::default`] serialized (one source of truth: a changed
//! default changes the output); the docs from [`DOCS`], which a test holds to the keys the
//! serialization produces (a key added without a doc, or a doc of a key that is gone, fails
//! it). Keys without a default (`Option`s that are unset) are printed commented out with an
//! example from [`UNSET`], which the same test parses as a config.

use toml::{Table, Value};

use crate::config::{Config, ConfigError};

/// One line of documentation per key and section, by dotted path.
pub const DOCS: &[(&str, &str)] = &[
    ("listen", "Address to serve on."),
    (
        "data_dir",
        "Where the embedded backend keeps its file (and a data dir remembers its schema).",
    ),
    ("backend", "Which store to use."),
    ("redis_url", "The Redis URL for the redis backend."),
    ("server", "HTTP limits."),
    (
        "server.body_limit_bytes",
        "Largest request body accepted, in bytes.",
    ),
    (
        "server.request_timeout_ms",
        "Requests taking longer than this are answered 503.",
    ),
    ("server.max_batch", "Most items or events in one batch."),
    (
        "server.max_event_future_seconds",
        "Event timestamps may lie at most this far in the server's future (clock skew).",
    ),
    ("server.max_connections", "Most open client connections."),
    (
        "server.max_in_flight",
        "Most requests to non-public routes being handled at once.",
    ),
    (
        "server.header_read_timeout_ms",
        "A client must send a request's whole head (request line and headers) within this long, counted from the connection's start or the end of its previous request.",
    ),
    (
        "server.idle_timeout_ms",
        "A connection on which no byte moves either way for this long is closed (a client that stopped reading its answer, or one that trickles a body).",
    ),
    (
        "server.max_header_bytes",
        "Largest total size of a request's headers.",
    ),
    (
        "server.cors_allow_origins",
        "Origins (`https://shop.example`) whose web pages may call the API from a browser (CORS).",
    ),
    (
        "server.console",
        "Serve the web console at `/` (static files, no data; the page calls the API with the user's key).",
    ),
    (
        "server.workers",
        "Threads that answer requests; 0 = one per core (or `TOKIO_WORKER_THREADS`). Fewer than the cores leave a core to the write log and the checkpoints. Read at start.",
    ),
    ("embedded", "Embedded backend options."),
    (
        "embedded.fsync",
        "When log writes reach the disk: `always` (fsynced before acknowledging, batched across concurrent requests), `everysec` (fsynced in the background once a second; a killed process loses nothing) or `never` (the kernel decides).",
    ),
    ("embedded.hnsw", "HNSW parameters of the vector index."),
    (
        "embedded.hnsw.m",
        "Neighbours per node and level (level 0 keeps up to `2 * m`).",
    ),
    (
        "embedded.hnsw.ef_construction",
        "Beam width while linking a new node.",
    ),
    (
        "embedded.hnsw.ef_search",
        "Default beam width of a search, on level 1 and on level 0 (raised to `k` when smaller; for a filter that admits a fraction s of the items, widened to ef / sqrt(s), at most 2,048).",
    ),
    (
        "embedded.checkpoint_seconds",
        "At most this many seconds between checkpoints (redb absorbing the write log) while anything is being written.",
    ),
    (
        "embedded.cache_bytes",
        "Most bytes of redb pages kept in memory (redb's page cache); the items, users and index are in memory anyway, so this only speeds up reads of the event log and checkpoints.",
    ),
    (
        "embedded.checkpoint_bytes",
        "A checkpoint also starts once this many bytes were logged since the last one (and log segments are this large).",
    ),
    (
        "embedded.checkpoint_nice",
        "The nice value (0–19) the checkpoint catch-up thread runs at (and the checkpoint thread with `checkpoint_idle = false`): while requests keep the cores busy, a checkpoint's burst of redb work gets a share of the CPU in proportion to its weight instead of a core of its own, and idle cycles whole. 0: the process's priority. Linux only.",
    ),
    (
        "embedded.checkpoint_idle",
        "Background checkpoints run only on idle cycles (Linux's idle scheduling class): a request that wakes up takes the core at once, where a thread at `checkpoint_nice` keeps it to the end of its time slice. Such a checkpoint gives way (uncommitted) to any other caller waiting for one (a reader of the event log: training's export, the event listing and its count; shutdown), and a second thread at `checkpoint_nice` runs the checkpoint itself when none finished for two intervals. false: the checkpoint thread runs at `checkpoint_nice` (before session 31). Linux only.",
    ),
    (
        "embedded.replay_records",
        "About the most log records a restart replays into user states after a crash (a clean shutdown stores every user first). The log holds every event, so a user's stored state only bounds that replay: each background checkpoint stores a share of the changed users, the longest-changed first, sized to store each about once per half this many records, and any changed this many records ago. 0: every checkpoint stores every user its records changed (before session 30; each active user's ~1.6 KB state every `checkpoint_seconds`, which raised the recommend p99 beside 2,000 events/s 1.24x, against 0.95x without those writes; BENCHMARKS.md).",
    ),
    (
        "embedded.index_snapshot",
        "The vector index's snapshot (`DATA_DIR/index/hnsw.snapshot`): a restart loads it, checks it against the stored items and re-inserts what changed, instead of rebuilding the index. The file numbers the nodes in graph order (the upper levels first, then level 0 breadth-first from them), as a rebuild at open does too, so that the nodes one search reads sit close together in memory (the same answers 1.3–1.9× faster in the f32 mode; BENCHMARKS.md, session 20). New items go at the end and updated ones stay where they were; once a sixteenth of the nodes were written that way (a training write-back re-links them all), the server renumbers the index before its next background snapshot (searches go on meanwhile; writes wait ~0.15 s per 100k nodes). A snapshot written by an earlier recd (format 1) loads too; one from a later recd is refused, and the index is rebuilt.",
    ),
    (
        "embedded.index_snapshot.enabled",
        "Save the index at shutdown and in the background, and load it at start; off: every start rebuilds the index.",
    ),
    (
        "embedded.index_snapshot.changes",
        "Save in the background once this many vector inserts, updates and removes were made since the last snapshot.",
    ),
    (
        "embedded.index_snapshot.seconds",
        "...or this many seconds after the last snapshot if anything changed at all.",
    ),
    (
        "redis",
        "Redis backend options (key prefix, HNSW, timeouts).",
    ),
    (
        "redis.prefix",
        "Prepended to every key and index name, so that deployments can share one Redis.",
    ),
    (
        "redis.hnsw_m",
        "HNSW `M` (graph degree), fixed when the index is created.",
    ),
    (
        "redis.hnsw_ef_construction",
        "HNSW `EF_CONSTRUCTION`, fixed when the index is created.",
    ),
    (
        "redis.hnsw_ef_runtime",
        "HNSW `EF_RUNTIME`, sent with every query (so it can change without a re-index).",
    ),
    (
        "redis.range_overfetch",
        "KNN with numeric ranges next to cheaper conditions fetches `k ×` this many neighbours under the cheap conditions and checks the ranges itself (falling back to one query with everything when too few pass).",
    ),
    (
        "redis.item_cache",
        "Items kept decoded in process (0: none). While the server follows the cache invalidation channel (`[cache] enabled` and `l2` on), a KNN hit or popular candidate found here costs no `MGET` and no decoding; every item write drops its entry on every server, and everything is dropped while the channel is down. Without the channel only popular items are kept, shared while Redis returns the same doc bytes.",
    ),
    (
        "redis.item_cache_ttl_ms",
        "The longest an item is kept in process (0: items are read on every request): the staleness bound for item writes no server announces, such as `recd import` into a live deployment.",
    ),
    (
        "redis.popular_refresh_ms",
        "How long the popular list of one filter is reused while the server follows the invalidation channel (0: read on every request). Popularity moved by events shows after at most this long; item writes drop the lists at once.",
    ),
    (
        "redis.query_timeout_ms",
        "Server-side time limit of one query (`TIMEOUT`).",
    ),
    (
        "redis.connections",
        "Multiplexed connections to Redis, used in turn (0 counts as 1): one connection reads and parses all of its replies on one task (about a fifth of a redis-backed server's CPU), which would cap a server of more than ~4 cores.",
    ),
    (
        "redis.cluster",
        "The URL names a Redis Cluster (a `redis+cluster://host:port,...` URL implies it): the deployment is cut into shards over the masters, each with its own search index; queries fan out to every shard and merge exactly.",
    ),
    (
        "redis.cluster_shards",
        "Shards of a new cluster deployment (0: one per master at creation); fixed once created, and a resharding moves whole shards, so set it at least to the masters the deployment may grow to.",
    ),
    (
        "redis.connect_timeout_ms",
        "Time to establish a connection.",
    ),
    ("redis.response_timeout_ms", "Time to wait for one reply."),
    (
        "redis.wait_replicas",
        "Replicas that must hold a write before recd acknowledges it (`WAIT n` to every master written: events, item upserts and deletes, user deletes); fewer within `wait_timeout_ms` fails the write with 503 although the master applied it. 0: acknowledge on the master's word, as Redis does.",
    ),
    (
        "redis.wait_timeout_ms",
        "How long a write waits for `wait_replicas` replicas (`WAIT`'s timeout).",
    ),
    (
        "redis.operation_timeout_ms",
        "Deadline of one store operation (all its round trips and retries).",
    ),
    (
        "model",
        "Real-time model: session vector, event weights, popularity decay.",
    ),
    (
        "model.session",
        "Session vector, recent items, event weights.",
    ),
    (
        "model.session.half_life_seconds",
        "After this many seconds an event counts half as much in the session vector.",
    ),
    (
        "model.session.recent_capacity",
        "How many distinct recent items are remembered (and excluded as \"seen\").",
    ),
    (
        "model.session.repeatable",
        "Event types after which the item may be recommended again; any other type excludes it for good (dislike and hide always do).",
    ),
    (
        "model.session.excluded_capacity",
        "Most items excluded per user; beyond it the oldest exclusion is dropped first.",
    ),
    (
        "model.session.purchased_capacity",
        "Most purchased items listed per user (their exclusion is kept by excluded_capacity).",
    ),
    (
        "model.session.ttl_seconds",
        "A user with no write for this many seconds is forgotten (0: never).",
    ),
    (
        "model.session.update",
        "What each event does to the user's real-time vector: fold_in (re-solve the user's ALS vector over their recent items with the item vectors fixed) or decayed_average (the session vector).",
    ),
    (
        "model.session.fold_in",
        "The fold-in update (update = \"fold_in\").",
    ),
    (
        "model.session.fold_in.regularization",
        "Lambda of the fold-in solve: the trained model's (recd train --regularization).",
    ),
    (
        "model.session.fold_in.alpha",
        "Confidence slope c = 1 + alpha * w of the fold-in: the trained model's (recd train --alpha).",
    ),
    (
        "model.session.fold_in.share",
        "Share of the folded-in vector in the query, the rest the long-term vector (1: the fold-in alone).",
    ),
    (
        "model.session.fold_in.session_mix",
        "Largest share of the decayed-average session vector blended into the fold-in's query (0: none), reached as the session's weight grows like session_share_max; recd eval --session-mix auto and recd tune choose it on a validation split.",
    ),
    (
        "model.session.fold_in.solver",
        "How each event's fold-in is solved: cg (cg_steps conjugate-gradient steps from the user's previous folded vector: no k x k assembly or factorisation) or cholesky (exact, about 2-3x the CPU per event).",
    ),
    (
        "model.session.fold_in.cg_steps",
        "Conjugate-gradient steps per event under solver = \"cg\" (1 to 64).",
    ),
    ("model.session.weights", "Event weights."),
    (
        "model.session.weights.dislike",
        "Weight of a dislike (<= 0): how hard it pushes the session away from the item.",
    ),
    (
        "model.session.weights.skip",
        "Weight of a skip (<= 0): a weak push away.",
    ),
    ("model.session.weights.view", "Weight of a view."),
    ("model.session.weights.click", "Weight of a click."),
    (
        "model.session.weights.dwell_per_second",
        "Weight per second of dwell.",
    ),
    (
        "model.session.weights.dwell_max",
        "capped at this, so that a tab left open does not dominate.",
    ),
    (
        "model.session.weights.add_to_cart",
        "Weight of an add-to-cart.",
    ),
    ("model.session.weights.purchase", "Weight of a purchase."),
    (
        "model.session.weights.rating_neutral",
        "Ratings at or below this carry no positive signal.",
    ),
    (
        "model.session.weights.rating_per_star",
        "and each star above it weighs this much.",
    ),
    ("model.popularity", "Time-decayed popularity."),
    (
        "model.popularity.half_life_hours",
        "After this many hours an event counts half as much.",
    ),
    (
        "model.gate_margin",
        "A new model goes live only if its NDCG@10 on held-out events is at least the live one's x (1 - this).",
    ),
    (
        "model.keep_versions",
        "Model versions kept (the live one is never deleted).",
    ),
    (
        "model.new_items",
        "New and cold items: a vector before the next training (item fold-in on events, content map).",
    ),
    (
        "model.new_items.fold_in",
        "Fold a new item (no vector, or a provisional one) in from its first interactions: the ALS item step against the live model's user vectors.",
    ),
    (
        "model.new_items.min_interactions",
        "Users with a positive interaction a new item needs before it is folded in.",
    ),
    (
        "model.new_items.capacity",
        "Most users kept per new item (the most recent).",
    ),
    (
        "model.new_items.content",
        "Give items without a vector one from their tags and text fields: a ridge map from hashed content to the live model's item vectors, fitted when a model goes live.",
    ),
    (
        "model.new_items.content_buckets",
        "Hash buckets of the content features (tag values, text words).",
    ),
    (
        "model.new_items.content_regularization",
        "Ridge penalty (lambda) of the content map.",
    ),
    ("ranking", "Ranking pipeline."),
    (
        "ranking.candidates",
        "KNN candidates fetched per request (before re-ranking), at least `count`.",
    ),
    (
        "ranking.popular_candidates",
        "Popular candidates fetched per request.",
    ),
    (
        "ranking.session_share_max",
        "The largest share the session vector can take in the query vector.",
    ),
    (
        "ranking.session_saturation",
        "reached gradually: at this much (decayed) session weight the share is half the max.",
    ),
    (
        "ranking.similarity_weight",
        "Weight of vector similarity in the score.",
    ),
    (
        "ranking.popularity_weight",
        "Weight of (relative, time-decayed) popularity in the score.",
    ),
    (
        "ranking.exclude_seen",
        "Whether items the user recently touched are left out.",
    ),
    (
        "ranking.rrf_k",
        "The k of reciprocal rank fusion, 1/(k + rank).",
    ),
    (
        "ranking.transitions_candidates",
        "Transitions candidates per request: items that often come next after the user's 3 most recent items, from the live model version's transition table (`recd train`); 0 = off (the default; 50 turns it on, see BENCHMARKS.md).",
    ),
    (
        "ranking.transitions_weight",
        "Weight of the transitions score (relative to the request's best transitions candidate, in (0, 1]) in the score.",
    ),
    (
        "features",
        "Online features, the impression log and learned rankers.",
    ),
    (
        "features.enabled",
        "Keep online features (each event and served list updates them).",
    ),
    (
        "features.refresh_seconds",
        "How often learned rankers are re-read from the model registry.",
    ),
    (
        "features.define",
        "The features (`[features.define.NAME]`: kind, entity, event, window, field, buckets); none: the default set.",
    ),
    ("cache", "Cache tiers."),
    (
        "cache.enabled",
        "Off: every request runs the pipeline (as `use_cache: false` does per request).",
    ),
    ("cache.l1_max_entries", "Most L1 entries per kind."),
    (
        "cache.l2",
        "Use Redis as L2 (and pub/sub to invalidate the other servers' L1) in redis mode.",
    ),
    ("cache.ttl_seconds", "Time to live per kind."),
    (
        "cache.ttl_seconds.recs",
        "A user's recommendation list for one request shape.",
    ),
    (
        "cache.ttl_seconds.popular",
        "The popular candidates for one filter (shared by every user).",
    ),
    (
        "cache.ttl_seconds.item",
        "One item's details (`GET /v1/items/{id}`, with the catalog source's row).",
    ),
    (
        "cache.jitter",
        "Each entry lives `ttl × (1 ± jitter)`, drawn uniformly, so that entries filled together do not expire together.",
    ),
    (
        "cache.invalidate_on",
        "Event types that drop the user's cached lists before `/v1/events` answers.",
    ),
    (
        "cache.xfetch_beta",
        "XFetch β: a hit refreshes the entry in the background with probability rising as expiry nears, scaled by how long the entry took to compute (0 turns it off).",
    ),
    (
        "cache.lock_ttl_ms",
        "How long a cross-server fill lock lives (milliseconds) if its holder dies.",
    ),
    (
        "cache.lock_wait_ms",
        "How long a request waits for another server's fill before computing itself.",
    ),
    (
        "cache.warm_items",
        "At start, fill the popular list and the details of this many top items.",
    ),
    (
        "catalog",
        "Where item details come from besides recd's own items (PostgreSQL, read through the item cache).",
    ),
    (
        "catalog.query",
        "The SQL that fetches one item: `$1` is the item id (bound, never interpolated) and it returns at most one row, whose columns become the item's JSON fields.",
    ),
    ("catalog.pool_size", "Most connections the pool keeps open."),
    (
        "catalog.timeout_ms",
        "Deadline of each fetch, end to end (waiting for a connection, connecting, running the query), in milliseconds.",
    ),
    (
        "import",
        "How `recd import events` and `recd eval` read interaction files (CSV, TSV, JSON lines, plain or gzip); their `--format`, `--user-col`, `--item-col`, `--time-col`, `--type-col`, `--value-col`, `--time-unit` flags win.",
    ),
    (
        "strategies",
        "Named ranking strategies besides `default` (`[strategies.NAME]`: `ranking` keys that differ from `[ranking]`, `diversity`, `model`).",
    ),
    (
        "experiments",
        "Impression logging and attribution for experiments.",
    ),
    (
        "experiments.attribution_window_seconds",
        "Events citing a list count for it this long after it was served (the impression log's TTL).",
    ),
    (
        "experiments.max_impressions",
        "The most impressions kept in process (embedded backend).",
    ),
    (
        "experiments.log_sample",
        "Share of lists outside experiments that are logged (experiment lists always are).",
    ),
    (
        "experiments.flush_ms",
        "How often the embedded backend snapshots counts to `experiments.json`.",
    ),
    (
        "experiments.stream_max",
        "Redis: the impression stream `exp:log` is capped at about this many entries.",
    ),
    ("monitoring", "Online quality and drift."),
    (
        "monitoring.enabled",
        "Whether served lists and events are watched at all.",
    ),
    (
        "monitoring.reference_size",
        "Observations that make a feature's reference.",
    ),
    ("monitoring.live_size", "Observations in a live window."),
    (
        "monitoring.min_live",
        "A live window is reported once it has this many observations.",
    ),
    (
        "monitoring.psi_threshold",
        "PSI at or above which a feature drifted (with the test's p below `alpha`).",
    ),
    (
        "monitoring.alpha",
        "Significance level of the two-sample tests.",
    ),
    (
        "monitoring.window_minutes",
        "The sliding window of coverage and exposure, in minutes.",
    ),
    (
        "monitoring.on_drift_command",
        "A program and its arguments run when a feature starts drifting (e.g. a retraining); empty: none.",
    ),
    (
        "monitoring.on_drift_min_interval_minutes",
        "The drift command runs at most once per this many minutes.",
    ),
    (
        "monitoring.diversity_sample",
        "Share of lists served without item vectors (Redis, cache) whose vectors are fetched to measure diversity.",
    ),
    ("auth", "API keys."),
    (
        "auth.keys",
        "Keys given in the config itself (fixed for the life of the process).",
    ),
    (
        "auth.reload_poll_seconds",
        "How often to look at the keys file's modification time, in seconds.",
    ),
    ("limits", "Rate limits per key and per client address."),
    (
        "limits.per_key",
        "Per API key (by its name), on routes that need a key.",
    ),
    (
        "limits.per_key.rps",
        "Requests per second, sustained; 0 turns the limit off.",
    ),
    (
        "limits.per_key.burst",
        "Requests allowed at once after a quiet spell (at least 1 when the limit is on).",
    ),
    (
        "limits.per_ip",
        "Per client IP address, on every route but the public ones (health, readiness, metrics, the API description), checked before the key so that guessing keys is limited too.",
    ),
    (
        "limits.per_ip.rps",
        "Requests per second, sustained; 0 turns the limit off.",
    ),
    (
        "limits.per_ip.burst",
        "Requests allowed at once after a quiet spell (at least 1 when the limit is on).",
    ),
    (
        "insecure",
        "Serve without API keys on a non-loopback address (`--insecure`): only behind something else that controls access.",
    ),
    (
        "train",
        "Training settings of `recd train`, `recd eval` and `recd tune` (their flags win).",
    ),
    (
        "train.iterations",
        "ALS iterations (the most, with early stopping).",
    ),
    ("train.regularization", "Lambda of ALS, on both sides."),
    (
        "train.alpha",
        "Confidence slope: c = 1 + alpha * s(r), r the pair's summed event weight.",
    ),
    (
        "train.scaling",
        "s(r): `linear` (r), `log` (ln(1 + r / log_epsilon)), `bm25` or `tfidf` (implicit's bm25_weight / tfidf_weight on the user x item matrix).",
    ),
    ("train.log_epsilon", "epsilon of the log scaling."),
    ("train.bm25_k1", "K1 of the bm25 scaling."),
    ("train.bm25_b", "B of the bm25 scaling."),
    (
        "train.recency_half_life_days",
        "An event's weight halves per this many days of age, counted from the newest event; 0 = off.",
    ),
    (
        "train.early_stopping_patience",
        "Stop ALS after this many iterations without a better NDCG@10 on a validation split carved from the training data, and train with the best count; 0 = off.",
    ),
    (
        "train.validation_fraction",
        "Share of each user's training items held out as that validation.",
    ),
    (
        "train.transitions_top",
        "Successors kept per item in the transition table `recd train` stores with each model version (what `[ranking] transitions_candidates` serves); 0 = no table.",
    ),
];

/// Keys with no default value: path, an example value (TOML), and the doc.
pub const UNSET: &[(&str, &str, &str)] = &[
    (
        "train.factors",
        "64",
        "Latent factors of ALS; unset: the store's vector dimension (`recd eval`, `recd tune`: 64).",
    ),
    (
        "import.format",
        "\"csv\"",
        "csv, tsv or jsonl; unset: sniffed from the first line (gzip is always recognised by its bytes).",
    ),
    (
        "import.user_col",
        "\"customer\"",
        "The user id column: a header name, or a 1-based position for a file without a header; unset: user_id, userId, user, uid, ...",
    ),
    (
        "import.item_col",
        "\"sku\"",
        "The item id column; unset: item_id, itemId, item, movieId, product_id, sku, ...",
    ),
    (
        "import.time_col",
        "\"ts\"",
        "The timestamp column; unset: timestamp, time, ts, datetime, date, ...; a file without one is in time order.",
    ),
    (
        "import.type_col",
        "\"event\"",
        "The event type column; unset: type, event_type, event, ...; a file without one holds ratings (with a value column) or views.",
    ),
    (
        "import.value_col",
        "\"rating\"",
        "The value column (stars, seconds); unset: value, rating, score, stars.",
    ),
    (
        "import.time_unit",
        "\"s\"",
        "The unit of integer timestamps, ms or s; unset: ms.",
    ),
    (
        "redis.hybrid_policy",
        "\"batches\"",
        "Forces a hybrid policy for filtered KNN (batches or adhoc_bf); unset lets RediSearch choose per query.",
    ),
    (
        "redis.batch_size",
        "100",
        "`BATCH_SIZE` under the `batches` policy; unset lets RediSearch choose.",
    ),
    (
        "catalog.source",
        "\"postgres://recd@localhost/shop\"",
        "The PostgreSQL connection (URL or libpq key/value string) of the item details source; unset: none.",
    ),
    (
        "catalog.notify_channel",
        "\"item_changed\"",
        "The channel to LISTEN on for changed items (payload: the item id); unset: details live until their TTL.",
    ),
    (
        "monitoring.category_field",
        "\"category\"",
        "The tag field whose values make the category mix; unset: the schema's first tag field, or `category`.",
    ),
    (
        "ranking.ranker",
        "\"latest\"",
        "The learned ranker that scores instead of the fixed blend: `latest` (the newest accepted `recd train-ranker` version) or a version; unset: the blend.",
    ),
    (
        "features.impression_log",
        "\"impressions.jsonl\"",
        "Append every computed list to this JSON-lines file (the training log of `recd train-ranker`); relative: under the data dir; unset: none.",
    ),
    (
        "auth.keys_file",
        "\"/etc/recd/keys.toml\"",
        "A TOML or JSON file of more API keys, re-read on SIGHUP or when it changes; unset: none.",
    ),
];

/// The `[schema]` every new data dir (or Redis prefix) needs, printed commented out: it
/// has no default.
const SCHEMA_EXAMPLE: &str = r#"# The item schema (no default): required to start on a new data dir or Redis prefix;
# a data dir or prefix that holds data remembers its own. The demo's, for example:
# [schema]
# vector = { dim = 64, metric = "cosine" }   # cosine | ip | l2
# # vector.quantization = "none" (default) | "int8": the embedded index searches 1-byte
# # codes and re-scores its short list on the f32 vectors (scores stay exact), which it
# # keeps in an unnamed file mapping in the data dir (not resident); a data dir may switch
# # it between starts. The redis backend ignores it.
# # vector.partition_by = "category": a tag field whose values (from 1,024 items each) get
# # their own graph in the embedded index, walked by a KNN filtered on one to eight of
# # them (a category filter correlates with the vectors: the main graph's slowest case);
# # saved and loaded with the index snapshot. The redis backend ignores it.
# [schema.fields]
# category = "tag"
# brand = "tag"
# price = "numeric"
# in_stock = "bool"
# popularity = "numeric"
# title = "text"
"#;

fn doc(path: &str) -> Option<&'static str> {
    DOCS.iter().find(|(p, _)| *p == path).map(|(_, d)| *d)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The defaults as a TOML table.
fn defaults_table() -> Result<Table, ConfigError> {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => Ok(t),
        Ok(_) => Err(ConfigError("the defaults are not a table".into())),
        Err(e) => Err(ConfigError(format!(
            "the defaults do not serialize as TOML: {e}"
        ))),
    }
}

/// Every configuration key with its default and its doc, as TOML.
pub fn defaults_toml() -> Result<String, ConfigError> {
    let mut out = String::from(
        "# recd configuration: every key with its default value.\n\
         # Layers: defaults < this file (--config) < RECD_* environment < flags.\n\n",
    );
    render(&mut out, "", &defaults_table()?);
    out.push('\n');
    out.push_str(SCHEMA_EXAMPLE);
    Ok(out)
}

fn render(out: &mut String, prefix: &str, table: &Table) {
    for (key, value) in table {
        if matches!(value, Value::Table(_)) {
            continue;
        }
        let path = join(prefix, key);
        if let Some(d) = doc(&path) {
            out.push_str(&format!("# {d}\n"));
        }
        out.push_str(&format!("{key} = {value}\n"));
    }
    for (path, example, d) in UNSET {
        if let Some((parent, key)) = path.rsplit_once('.')
            && parent == prefix
        {
            out.push_str(&format!("# {d}\n# {key} = {example}\n"));
        }
    }
    for (key, value) in table {
        let Value::Table(inner) = value else { continue };
        let path = join(prefix, key);
        out.push('\n');
        if let Some(d) = doc(&path) {
            out.push_str(&format!("# {d}\n"));
        }
        out.push_str(&format!("[{path}]\n"));
        render(out, &path, inner);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn paths(prefix: &str, table: &Table, out: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = join(prefix, key);
            if let Value::Table(inner) = value {
                paths(&path, inner, out);
            }
            out.insert(path);
        }
    }

    #[test]
    fn every_key_has_a_doc_and_every_doc_a_key() {
        let mut keys = BTreeSet::new();
        paths("", &defaults_table().unwrap(), &mut keys);
        let documented: BTreeSet<String> = DOCS.iter().map(|(p, _)| p.to_string()).collect();
        let undocumented: Vec<&String> = keys.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "keys without a doc in DOCS: {undocumented:?}"
        );
        let stale: Vec<&String> = documented.difference(&keys).collect();
        assert!(
            stale.is_empty(),
            "DOCS of keys that are not in the config: {stale:?}"
        );
        for (path, _, _) in UNSET {
            assert!(
                !keys.contains(*path),
                "{path} has a default now: move it to DOCS"
            );
        }
    }

    /// The README's configuration reference lists every section and key (regenerate its
    /// tables from `recd config defaults` when this fails).
    #[test]
    fn the_readme_lists_every_key() {
        let readme = include_str!("../../../README.md");
        let mut keys = BTreeSet::new();
        paths("", &defaults_table().unwrap(), &mut keys);
        let table = defaults_table().unwrap();
        for path in keys
            .iter()
            .map(String::as_str)
            .chain(UNSET.iter().map(|u| u.0))
        {
            let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
            let is_section = path
                .split('.')
                .try_fold(&table, |t, k| match t.get(k) {
                    Some(Value::Table(inner)) => Some(inner),
                    _ => None,
                })
                .is_some();
            if is_section {
                assert!(
                    readme.contains(&format!("`[{path}]`")),
                    "README lacks [{path}]"
                );
            } else {
                let row = format!("| `{key}` |");
                let at = match section {
                    "" => 0,
                    s => readme.find(&format!("`[{s}]`")).unwrap_or(0),
                };
                assert!(readme[at..].contains(&row), "README lacks {path}");
            }
        }
    }

    #[test]
    fn the_output_loads_as_the_defaults_and_every_unset_example_is_a_key() {
        let text = defaults_toml().unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
        // Each commented-out example, uncommented, is a key of the right type.
        for (path, example, _) in UNSET {
            let (section, key) = path.rsplit_once('.').unwrap();
            let one = format!("[{section}]\n{key} = {example}\n");
            let parsed: Result<Config, _> = toml::from_str(&one);
            assert!(parsed.is_ok(), "{path}: {parsed:?}");
            assert_ne!(parsed.unwrap(), Config::default(), "{path}");
        }
        let schema: String = SCHEMA_EXAMPLE
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed: Config = toml::from_str(&schema).unwrap();
        assert_eq!(parsed.schema.unwrap().vector.dim, 64);
    }
}
