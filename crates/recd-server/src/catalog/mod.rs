//! The catalog source: item details from PostgreSQL, read through the item-detail cache.
//! In recd-server "catalog" means this source and nothing else (the caches' generation of
//! every list is `lists`, in `cache::generations`).
//!
//! [`PgCatalog`] runs one configured query (`$1` = the item id, at most one row; it may join
//! and aggregate) on a small connection pool and turns the row into a JSON object, one key
//! per column, by the column's type. The id is always a bound parameter, never spliced into
//! SQL. The query is prepared when the catalog connects, so a query that cannot work (a
//! syntax error, an unknown table, a column type with no JSON form) stops the server at
//! start instead of failing every request.
//!
//! With `notify_channel` set, [`PgCatalog::listen`] follows `LISTEN`/`NOTIFY` on a dedicated
//! connection: each notification's payload is an item id that changed
//! ([`CatalogChange::Item`]). When that connection drops it reconnects with backoff and then
//! sends [`CatalogChange::All`], because notifications sent meanwhile are lost.
//!
//! Every query has a deadline (`timeout_ms`, both on the client and as the server's
//! `statement_timeout`), and the connections are read-only (`default_transaction_read_only`),
//! so a misconfigured query cannot write to the catalog.
//!
//! Column types and their JSON form:
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | `text`, `varchar`, `char(n)`, `name`, `citext`, enums | string |
//! | `int2`, `int4`, `int8`, `oid` | number |
//! | `float4`, `float8`, `numeric` (as f64) | number; `NaN` and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `bool` | `true` / `false` |
//! | `timestamptz` | RFC 3339 string in UTC (`2024-05-01T12:00:00.25Z`); `"infinity"` / `"-infinity"` |
//! | `timestamp` | the same without the `Z`; `date`: `2024-05-01` |
//! | `uuid` | string |
//! | `json`, `jsonb` | the JSON value itself |
//! | one-dimensional arrays of any of these (`text[]`, `int8[]`, …) | array |
//! | `NULL` | `null` |
//!
//! Any other type is refused at connect with an error naming the column; cast it in the
//! query (`price::text`, `tags::text[]`).
//!
//! # Layout
//! - `config`: the `[catalog]` section ([`CatalogConfig`]): defaults, validation, and a
//!   `Debug` that hides the password.
//! - `source`: [`PgCatalog`]: the pool, connecting and preparing the query, `fetch` and
//!   `fetch_many` under the deadline, the counters.
//! - `follow`: the `LISTEN`/`NOTIFY` follower behind [`PgCatalog::listen`] and the
//!   [`CatalogChange`]s it sends.
//! - `sqlstate`: [`CatalogError`] and how driver errors map onto it (by SQLSTATE class and
//!   by phase: connecting or serving).
//! - `decode`: a row in PostgreSQL's binary format → a JSON object, by column type (the
//!   table above).

mod config;
mod decode;
mod follow;
mod source;
mod sqlstate;

pub use config::CatalogConfig;
pub use follow::{CatalogChange, LISTEN_BUFFER};
pub use source::PgCatalog;
pub use sqlstate::CatalogError;
