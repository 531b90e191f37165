//! Interaction files the way users have them: CSV, TSV or JSON lines, plain or gzip, with
//! a column mapping.
//!
//! [`read_table`] reads the file behind `recd import events FILE` and
//! `recd eval --interactions FILE` (and `--train` / `--test`):
//! - gzip is recognised by its magic bytes (`1f 8b`), whatever the file is called;
//! - the format is sniffed from the first non-empty line unless given: a JSON object is JSON
//!   lines, otherwise the most frequent of tab, comma, semicolon and pipe is the delimiter
//!   (tab: TSV, without quoting); a line with none of them cannot be sniffed, and the error
//!   says how to name the format;
//! - columns ([`ColumnMap`]): `user`, `item`, and optionally `time`, `type` and `value`, each
//!   named explicitly or found under a usual name (`user_id`, `userId`, `user`, ...). A
//!   delimited file has a header; when every explicit column is a 1-based position (`1`,
//!   `2`, ...) and no header names them, the file has no header;
//! - no `type` column: a file with a `value` column holds ratings, a file of pairs holds
//!   `view`s (implicit feedback);
//! - no `time` column: file order defines time ([`Table::timed`] is false; the events get
//!   consecutive milliseconds ending at `now_ms`);
//! - timestamps: integers are epoch milliseconds, or seconds with [`TimeUnit::Seconds`];
//!   text is RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]` or `YYYY-MM-DD` (both read as UTC).
//!
//! Every problem is a [`TrainError::BadInput`] naming the file, the line and the column;
//! ids and event types follow recd-core's rules, as `/v1/events` does.

use std::io::Read;
use std::path::{Path, PathBuf};

use recd_core::EventType;
use recd_core::event::parse_timestamp_text;
use recd_core::id::validate_id;

use crate::dataset::Interaction;
use crate::error::{Result, TrainError};

/// The layout of an interactions file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Delimited text with this delimiter (`,`, `;`, `|`), quoting as RFC 4180.
    Csv(u8),
    /// Tab-separated, no quoting.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl TableFormat {
    /// The name a user gives with `--format`.
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Csv(_) => "csv",
            TableFormat::Tsv => "tsv",
            TableFormat::Jsonl => "jsonl",
        }
    }
}

impl std::str::FromStr for TableFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "csv" => Ok(TableFormat::Csv(b',')),
            "tsv" => Ok(TableFormat::Tsv),
            "jsonl" => Ok(TableFormat::Jsonl),
            other => Err(format!(
                "unknown file format {other:?} (expected csv, tsv or jsonl)"
            )),
        }
    }
}

/// The unit of integer timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Milliseconds since the epoch (the API's unit).
    #[default]
    Millis,
    /// Seconds since the epoch (MovieLens, most exports).
    Seconds,
}

impl std::str::FromStr for TimeUnit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "ms" => Ok(TimeUnit::Millis),
            "s" => Ok(TimeUnit::Seconds),
            other => Err(format!("unknown time unit {other:?} (expected ms or s)")),
        }
    }
}

/// Which column holds what; `None` looks for the usual names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    /// The user id column.
    pub user: Option<String>,
    /// The item id column.
    pub item: Option<String>,
    /// The timestamp column.
    pub time: Option<String>,
    /// The event type column.
    pub kind: Option<String>,
    /// The value column (stars, seconds).
    pub value: Option<String>,
}

impl ColumnMap {
    /// `self`, with each column it leaves open taken from `fallback`.
    pub fn or(self, fallback: &ColumnMap) -> ColumnMap {
        ColumnMap {
            user: self.user.or_else(|| fallback.user.clone()),
            item: self.item.or_else(|| fallback.item.clone()),
            time: self.time.or_else(|| fallback.time.clone()),
            kind: self.kind.or_else(|| fallback.kind.clone()),
            value: self.value.or_else(|| fallback.value.clone()),
        }
    }

    fn explicit(&self) -> impl Iterator<Item = &String> {
        [&self.user, &self.item, &self.time, &self.kind, &self.value]
            .into_iter()
            .flatten()
    }
}

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// The format; sniffed when `None`.
    pub format: Option<TableFormat>,
    /// The columns.
    pub columns: ColumnMap,
    /// The unit of integer timestamps.
    pub time_unit: TimeUnit,
    /// The clock: events of a file without timestamps end here.
    pub now_ms: i64,
}

/// A file read by [`read_table`].
#[derive(Debug, Clone)]
pub struct Table {
    /// The events, in file order.
    pub interactions: Vec<Interaction>,
    /// The 1-based line of each event.
    pub lines: Vec<u64>,
    /// The `recommendation_id` of each event (JSON lines only).
    pub recommendation_ids: Vec<Option<String>>,
    /// False when the file has no time column (file order defines time).
    pub timed: bool,
    /// The format read.
    pub format: TableFormat,
    /// True when the file was gzip-compressed.
    pub gzip: bool,
    /// The columns used, as `role=column` pairs, for messages.
    pub columns: String,
}

const USER_NAMES: &[&str] = &[
    "user_id",
    "userid",
    "user",
    "user-id",
    "uid",
    "customer_id",
    "customer",
    "visitorid",
];
const ITEM_NAMES: &[&str] = &[
    "item_id",
    "itemid",
    "item",
    "item-id",
    "iid",
    "movieid",
    "product_id",
    "productid",
    "product",
    "sku",
];
const TIME_NAMES: &[&str] = &[
    "timestamp",
    "time",
    "ts",
    "datetime",
    "date",
    "event_time",
    "created_at",
];
const KIND_NAMES: &[&str] = &["type", "event_type", "event", "kind", "action"];
const VALUE_NAMES: &[&str] = &["value", "rating", "score", "stars"];

/// Reads `path`: the whole file is parsed and validated before anything is returned.
pub fn read_table(path: &Path, opts: &TableOptions) -> Result<Table> {
    let raw = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let gzip = raw.starts_with(&[0x1f, 0x8b]);
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| TrainError::bad(path, 0, format!("not a readable gzip file: {e}")))?;
        out
    } else {
        raw
    };
    parse_table(path, &bytes, gzip, opts)
}

/// [`read_table`] on bytes already in memory (decompressed); `path` names them in errors.
pub fn parse_table(path: &Path, bytes: &[u8], gzip: bool, opts: &TableOptions) -> Result<Table> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64
                + 1;
            return Err(TrainError::bad(
                path,
                line,
                "not UTF-8 text (ids and names must be UTF-8; a compressed file other than gzip?)",
            ));
        }
    };
    let format = match opts.format {
        Some(f) => f,
        None => sniff(path, text)?,
    };
    let mut table = match format {
        TableFormat::Jsonl => read_jsonl(path, text, opts)?,
        TableFormat::Csv(d) => read_delimited(path, text, d, true, opts)?,
        TableFormat::Tsv => read_delimited(path, text, b'\t', false, opts)?,
    };
    table.format = format;
    table.gzip = gzip;
    if !table.timed {
        let n = table.interactions.len() as i64;
        let start = (opts.now_ms - n).max(0);
        for (i, ev) in table.interactions.iter_mut().enumerate() {
            ev.timestamp_ms = start + i as i64;
        }
    }
    Ok(table)
}

/// The format of `text`, from its first non-empty line.
fn sniff(path: &Path, text: &str) -> Result<TableFormat> {
    let Some((n, first)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(TrainError::bad(path, 1, "the file is empty"));
    };
    if first.trim_start().starts_with('{') {
        return Ok(TableFormat::Jsonl);
    }
    let count = |c: char| first.matches(c).count();
    let best = [
        (count('\t'), TableFormat::Tsv),
        (count(','), TableFormat::Csv(b',')),
        (count(';'), TableFormat::Csv(b';')),
        (count('|'), TableFormat::Csv(b'|')),
    ]
    .into_iter()
    .max_by_key(|(c, _)| *c);
    match best {
        Some((c, f)) if c > 0 => Ok(f),
        _ => Err(TrainError::bad(
            path,
            n as u64 + 1,
            format!(
                "cannot tell the format: the first line {:?} is neither a JSON object nor \
                 delimited by tab, comma, semicolon or pipe; name it with --format csv|tsv|jsonl \
                 (a file needs at least a user and an item column)",
                first.chars().take(80).collect::<String>()
            ),
        )),
    }
}

/// Where each role sits in a delimited file.
struct Positions {
    user: usize,
    item: usize,
    time: Option<usize>,
    kind: Option<usize>,
    value: Option<usize>,
    names: Vec<String>,
}

impl Positions {
    fn describe(&self) -> String {
        let name = |i: usize| self.names.get(i).cloned().unwrap_or_default();
        let mut s = format!("user={} item={}", name(self.user), name(self.item));
        for (role, col) in [
            ("time", self.time),
            ("type", self.kind),
            ("value", self.value),
        ] {
            if let Some(c) = col {
                s.push_str(&format!(" {role}={}", name(c)));
            }
        }
        s
    }
}

fn find(names: &[String], usual: &[&str]) -> Option<usize> {
    usual
        .iter()
        .find_map(|u| names.iter().position(|n| n.trim().eq_ignore_ascii_case(u)))
}

fn is_position(s: &str) -> Option<usize> {
    s.trim().parse::<usize>().ok().filter(|&p| p >= 1)
}

/// Resolves the roles against the first record: a header, or positions.
fn positions(path: &Path, first: &[String], cols: &ColumnMap) -> Result<(Positions, bool)> {
    let has = |name: &str| first.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
    let explicit: Vec<&String> = cols.explicit().collect();
    // positions, unless a header happens to name every one of them
    let headerless = !explicit.is_empty()
        && explicit.iter().all(|c| is_position(c).is_some())
        && !explicit.iter().all(|c| has(c));
    let width = first.len();
    let resolve = |role: &str, given: &Option<String>, usual: &[&str]| -> Result<Option<usize>> {
        match given {
            Some(c) if headerless => match is_position(c) {
                Some(p) if p <= width => Ok(Some(p - 1)),
                _ => Err(TrainError::bad(
                    path,
                    1,
                    format!("{role} column {c} is beyond the {width} columns of the first line"),
                )),
            },
            Some(c) => match first.iter().position(|h| h.trim().eq_ignore_ascii_case(c)) {
                Some(p) => Ok(Some(p)),
                None => Err(TrainError::bad(
                    path,
                    1,
                    format!(
                        "missing column {c:?} (--{role}-col); the header has: {}",
                        first.join(", ")
                    ),
                )),
            },
            None if headerless => Ok(None),
            None => Ok(find(first, usual)),
        }
    };
    let user = resolve("user", &cols.user, USER_NAMES)?;
    let item = resolve("item", &cols.item, ITEM_NAMES)?;
    let (Some(user), Some(item)) = (user, item) else {
        let which = if user.is_none() { "user" } else { "item" };
        return Err(TrainError::bad(
            path,
            1,
            format!(
                "no {which} column: the first line ({}) names none of {}; name it with \
                 --{which}-col NAME, or for a file without a header give every column as a \
                 1-based position (--user-col 1 --item-col 2 ...)",
                first.join(", "),
                if which == "user" {
                    USER_NAMES.join(", ")
                } else {
                    ITEM_NAMES.join(", ")
                }
            ),
        ));
    };
    let names = if headerless {
        (1..=width).map(|i| format!("#{i}")).collect()
    } else {
        first.iter().map(|s| s.trim().to_owned()).collect()
    };
    Ok((
        Positions {
            user,
            item,
            time: resolve("time", &cols.time, TIME_NAMES)?,
            kind: resolve("type", &cols.kind, KIND_NAMES)?,
            value: resolve("value", &cols.value, VALUE_NAMES)?,
            names,
        },
        !headerless,
    ))
}

fn read_delimited(
    path: &Path,
    text: &str,
    delimiter: u8,
    quoting: bool,
    opts: &TableOptions,
) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quoting(quoting)
        .from_reader(text.as_bytes());
    let mut records = rdr.records();
    let first = loop {
        match records.next() {
            None => return Err(TrainError::bad(path, 1, "the file is empty")),
            Some(Err(e)) => return Err(csv_error(path, &e)),
            Some(Ok(r)) if r.iter().all(|f| f.trim().is_empty()) => {}
            Some(Ok(r)) => break r,
        }
    };
    let first_fields: Vec<String> = first.iter().map(str::to_owned).collect();
    let (pos, header) = positions(path, &first_fields, &opts.columns)?;
    let width = first_fields.len();
    let mut table = empty_table(pos.time.is_some(), pos.describe());
    let mut handle = |rec: &csv::StringRecord| -> Result<()> {
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.iter().all(|f| f.trim().is_empty()) {
            return Ok(());
        }
        if rec.len() != width {
            return Err(TrainError::bad(
                path,
                line,
                format!("{} fields where the first line has {width}", rec.len()),
            ));
        }
        let cell = |i: usize| rec.get(i).unwrap_or("").trim();
        let col = |i: usize| pos.names.get(i).cloned().unwrap_or_default();
        let ev = record(
            path,
            line,
            Cells {
                user: (cell(pos.user), col(pos.user)),
                item: (cell(pos.item), col(pos.item)),
                time: pos.time.map(|c| Cell::Text(cell(c).to_owned(), col(c))),
                kind: pos.kind.map(|c| (cell(c).to_owned(), col(c))),
                value: pos.value.map(|c| Cell::Text(cell(c).to_owned(), col(c))),
            },
            opts,
        )?;
        table.interactions.push(ev);
        table.lines.push(line);
        table.recommendation_ids.push(None);
        Ok(())
    };
    if !header {
        handle(&first)?;
    }
    for rec in records {
        let rec = rec.map_err(|e| csv_error(path, &e))?;
        handle(&rec)?;
    }
    Ok(table)
}

fn empty_table(timed: bool, columns: String) -> Table {
    Table {
        interactions: Vec::new(),
        lines: Vec::new(),
        recommendation_ids: Vec::new(),
        timed,
        format: TableFormat::Jsonl,
        gzip: false,
        columns,
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> TrainError {
    let line = e.position().map_or(0, csv::Position::line);
    TrainError::bad(path, line, e.to_string())
}

/// A cell as found: text of a delimited file, or a JSON value; with its column's name.
enum Cell {
    Text(String, String),
    Json(serde_json::Value, String),
}

struct Cells<'a> {
    user: (&'a str, String),
    item: (&'a str, String),
    time: Option<Cell>,
    kind: Option<(String, String)>,
    value: Option<Cell>,
}

fn record(path: &Path, line: u64, c: Cells<'_>, opts: &TableOptions) -> Result<Interaction> {
    let bad =
        |col: &str, msg: String| TrainError::bad(path, line, format!("column {col:?}: {msg}"));
    let id = |(v, col): (&str, String), field: &str| -> Result<String> {
        validate_id(v, field).map_err(|e| bad(&col, e.message))?;
        Ok(v.to_owned())
    };
    let user = id(c.user, "user_id")?;
    let item = id(c.item, "item_id")?;
    let value = match c.value {
        None => None,
        Some(Cell::Text(t, _)) if t.is_empty() => None,
        Some(Cell::Json(serde_json::Value::Null, _)) => None,
        Some(Cell::Text(t, col)) => match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => return Err(bad(&col, format!("value {t:?} is not a finite number"))),
        },
        Some(Cell::Json(v, col)) => match v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()) {
            Some(x) if x.is_finite() => Some(x),
            _ => return Err(bad(&col, format!("value {v} is not a finite number"))),
        },
    };
    let kind = match c.kind {
        Some((k, col)) if !k.is_empty() => k
            .to_ascii_lowercase()
            .parse::<EventType>()
            .map_err(|e| bad(&col, e.message))?,
        Some((_, col)) => return Err(bad(&col, "empty event type".into())),
        None if value.is_some() => EventType::Rating,
        None => EventType::View,
    };
    let timestamp_ms = match c.time {
        None => 0,
        Some(Cell::Text(t, col)) => timestamp_text(&t, opts.time_unit).map_err(|m| bad(&col, m))?,
        Some(Cell::Json(v, col)) => match &v {
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => scale(i, opts.time_unit).map_err(|m| bad(&col, m))?,
                None => {
                    return Err(bad(
                        &col,
                        format!("timestamp {n} is not an integer (epoch ms or s) or a date"),
                    ));
                }
            },
            serde_json::Value::String(s) => {
                timestamp_text(s, opts.time_unit).map_err(|m| bad(&col, m))?
            }
            other => {
                return Err(bad(
                    &col,
                    format!("timestamp {other} is not a number or a date"),
                ));
            }
        },
    };
    Ok(Interaction {
        user,
        item,
        kind,
        value,
        timestamp_ms,
    })
}

fn scale(i: i64, unit: TimeUnit) -> std::result::Result<i64, String> {
    let ms = match unit {
        TimeUnit::Millis => i,
        TimeUnit::Seconds => i.saturating_mul(1000),
    };
    recd_core::event::check_timestamp(ms).map_err(|e| format!("{} ({i})", e.message))
}

/// A timestamp cell: an integer in `unit`, RFC 3339, `YYYY-MM-DD[ HH:MM:SS[.f]]` as UTC.
fn timestamp_text(t: &str, unit: TimeUnit) -> std::result::Result<i64, String> {
    let t = t.trim();
    if t.is_empty() {
        return Err("empty timestamp".into());
    }
    if let Ok(i) = t.parse::<i64>() {
        return scale(i, unit);
    }
    if unit == TimeUnit::Seconds
        && let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        return scale((f * 1000.0).round() as i64, TimeUnit::Millis);
    }
    let b = t.as_bytes();
    let looks_dated = b.len() >= 10 && b[4] == b'-' && b[7] == b'-';
    let text = if looks_dated && b.len() == 10 {
        format!("{t}T00:00:00Z")
    } else if looks_dated && b.len() > 10 && (b[10] == b' ' || b[10] == b'T') {
        let mut s = format!("{}T{}", &t[..10], &t[11..]);
        let tail = &s[11..];
        if !(tail.ends_with('Z') || tail.ends_with('z') || tail.contains('+') || tail.contains('-'))
        {
            s.push('Z');
        }
        s
    } else {
        t.to_owned()
    };
    parse_timestamp_text(&text).map_err(|e| format!("{} ({t:?})", e.message))
}

fn read_jsonl(path: &Path, text: &str, opts: &TableOptions) -> Result<Table> {
    let cols = &opts.columns;
    let mut table: Option<Table> = None;
    for (n, l) in text.lines().enumerate() {
        let line = n as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l)
            .map_err(|e| TrainError::bad(path, line, format!("not JSON: {e}")))?;
        let serde_json::Value::Object(map) = v else {
            return Err(TrainError::bad(path, line, "not a JSON object"));
        };
        // each role's key: the given one, else the first usual name this object has
        let names: Vec<String> = map.keys().cloned().collect();
        let pick = |given: &Option<String>, usual: &[&str]| -> Option<String> {
            match given {
                Some(g) => Some(g.clone()),
                None => find(&names, usual).map(|i| names[i].clone()),
            }
        };
        let missing = |role: &str| {
            TrainError::bad(
                path,
                line,
                format!(
                    "no {role} key: the object has {}; name it with --{role}-col",
                    names.join(", ")
                ),
            )
        };
        let ku = pick(&cols.user, USER_NAMES).ok_or_else(|| missing("user"))?;
        let ki = pick(&cols.item, ITEM_NAMES).ok_or_else(|| missing("item"))?;
        let kt = pick(&cols.time, TIME_NAMES).filter(|k| map.contains_key(k));
        let kk = pick(&cols.kind, KIND_NAMES).filter(|k| map.contains_key(k));
        let kv = pick(&cols.value, VALUE_NAMES).filter(|k| map.contains_key(k));
        let t = table.get_or_insert_with(|| {
            let mut describe = format!("user={ku} item={ki}");
            if let Some(k) = &kt {
                describe.push_str(&format!(" time={k}"));
            }
            empty_table(kt.is_some(), describe)
        });
        // one file, one clock: every line has a timestamp, or none has
        match (&kt, t.timed) {
            (None, true) => {
                return Err(TrainError::bad(
                    path,
                    line,
                    format!(
                        "no timestamp{} while the first object has one",
                        cols.time
                            .as_ref()
                            .map_or(String::new(), |c| format!(" ({c:?})"))
                    ),
                ));
            }
            (Some(k), false) => {
                return Err(TrainError::bad(
                    path,
                    line,
                    format!("column {k:?}: a timestamp, while the first object has none"),
                ));
            }
            _ => {}
        }
        let id = |key: &str| -> Result<String> {
            match map.get(key) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(_) => Err(TrainError::bad(
                    path,
                    line,
                    format!("column {key:?}: must be a string or a number"),
                )),
                None => Err(TrainError::bad(
                    path,
                    line,
                    format!("column {key:?}: missing"),
                )),
            }
        };
        let user = id(&ku)?;
        let item = id(&ki)?;
        let get = |k: &String| map.get(k).cloned().unwrap_or_default();
        let kind = match &kk {
            Some(k) => match map.get(k) {
                Some(serde_json::Value::String(s)) => Some((s.clone(), k.clone())),
                _ => {
                    return Err(TrainError::bad(
                        path,
                        line,
                        format!("column {k:?}: the event type must be a string"),
                    ));
                }
            },
            None => None,
        };
        let ev = record(
            path,
            line,
            Cells {
                user: (user.as_str(), ku.clone()),
                item: (item.as_str(), ki.clone()),
                time: kt.as_ref().map(|k| Cell::Json(get(k), k.clone())),
                kind,
                value: kv.as_ref().map(|k| Cell::Json(get(k), k.clone())),
            },
            opts,
        )?;
        let rec = match map.get("recommendation_id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        t.interactions.push(ev);
        t.lines.push(line);
        t.recommendation_ids.push(rec);
    }
    table.ok_or_else(|| TrainError::bad(path, 1, "the file is empty"))
}

/// A description of what was read, for the command's output.
pub fn describe(path: &Path, t: &Table) -> String {
    format!(
        "{}: {}{}, columns {}{}",
        path.display(),
        t.format.name(),
        if t.gzip { " (gzip)" } else { "" },
        t.columns,
        if t.timed {
            ""
        } else {
            "; no time column: file order defines time"
        }
    )
}

/// Writes events as the CSV `read_table` reads back with its defaults:
/// `user_id,item_id,type,value,timestamp` (timestamps in epoch milliseconds).
pub fn write_csv<'a>(
    path: &Path,
    events: impl IntoIterator<Item = &'a Interaction>,
) -> Result<usize> {
    let io = |e: std::io::Error| TrainError::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let csv_io = |e: csv::Error| TrainError::io(PathBuf::from(path), std::io::Error::other(e));
    w.write_record(["user_id", "item_id", "type", "value", "timestamp"])
        .map_err(csv_io)?;
    let mut n = 0;
    for ev in events {
        let value = ev.value.map(|v| v.to_string()).unwrap_or_default();
        let ts = ev.timestamp_ms.to_string();
        w.write_record([
            ev.user.as_str(),
            ev.item.as_str(),
            ev.kind.as_str(),
            value.as_str(),
            ts.as_str(),
        ])
        .map_err(csv_io)?;
        n += 1;
    }
    w.flush().map_err(io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> PathBuf {
        PathBuf::from("<mem>")
    }

    fn read(text: &[u8], opts: &TableOptions) -> Result<Table> {
        parse_table(&mem(), text, false, opts)
    }

    fn cols(user: &str, item: &str, time: Option<&str>) -> TableOptions {
        TableOptions {
            columns: ColumnMap {
                user: Some(user.into()),
                item: Some(item.into()),
                time: time.map(Into::into),
                ..ColumnMap::default()
            },
            ..TableOptions::default()
        }
    }

    #[test]
    fn the_format_is_sniffed_from_the_first_line() {
        let o = TableOptions::default();
        let csv = read(b"user_id,item_id,timestamp\nu1,i1,1000\n", &o).unwrap();
        assert_eq!(csv.format, TableFormat::Csv(b','));
        let tsv = read(b"user\titem\nu1\ti,1\n", &o).unwrap();
        assert_eq!(tsv.format, TableFormat::Tsv);
        assert_eq!(
            tsv.interactions[0].item, "i,1",
            "a comma inside TSV is data"
        );
        let semi = read(b"\xef\xbb\xbfuserId;movieId;rating\n1;2;4.5\n", &o).unwrap();
        assert_eq!(semi.format, TableFormat::Csv(b';'));
        assert_eq!(
            semi.interactions[0].kind,
            EventType::Rating,
            "value, no type"
        );
        assert_eq!(semi.interactions[0].value, Some(4.5));
        let jsonl = read(b"\n{\"user\":\"u\",\"item\":7}\n", &o).unwrap();
        assert_eq!(jsonl.format, TableFormat::Jsonl);
        assert_eq!(jsonl.interactions[0].item, "7");
        let e = read(b"just-one-column\nu1\n", &o).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("<mem>:1: cannot tell the format") && msg.contains("--format"),
            "{msg}"
        );
        let e = read(b"", &o).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = read(b"user,item\nu\xe9,i\n", &o).unwrap_err();
        assert!(e.to_string().starts_with("<mem>:2: not UTF-8"), "{e}");
    }

    #[test]
    fn pairs_without_time_are_views_in_file_order() {
        let o = TableOptions {
            now_ms: 10_000,
            ..TableOptions::default()
        };
        let t = read(b"user,item\nb,x\na,y\nb,z\n", &o).unwrap();
        assert!(!t.timed);
        assert!(t.interactions.iter().all(|e| e.kind == EventType::View));
        let ts: Vec<i64> = t.interactions.iter().map(|e| e.timestamp_ms).collect();
        assert_eq!(
            ts,
            [9_997, 9_998, 9_999],
            "file order is time, ending at now"
        );
        assert_eq!(t.lines, [2, 3, 4]);
    }

    #[test]
    fn columns_are_mapped_by_name_or_position() {
        let t = read(
            b"when,who,what,kind,stars\n2023-11-14 22:13:20,u1,i1,PURCHASE,\n",
            &TableOptions {
                columns: ColumnMap {
                    user: Some("who".into()),
                    item: Some("what".into()),
                    time: Some("when".into()),
                    kind: Some("kind".into()),
                    value: Some("stars".into()),
                },
                ..TableOptions::default()
            },
        )
        .unwrap();
        let e = &t.interactions[0];
        assert_eq!((e.user.as_str(), e.item.as_str()), ("u1", "i1"));
        assert_eq!((e.kind, e.value), (EventType::Purchase, None));
        assert_eq!(e.timestamp_ms, 1_700_000_000_000);
        // ml-100k's u.data: no header, tab-separated, epoch seconds
        let mut o = cols("1", "2", Some("4"));
        o.columns.value = Some("3".into());
        o.time_unit = TimeUnit::Seconds;
        let t = read(b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n", &o).unwrap();
        assert_eq!(t.interactions.len(), 2, "the first line is data");
        assert_eq!(t.interactions[0].timestamp_ms, 881_250_949_000);
        assert_eq!(t.interactions[0].value, Some(3.0));
        assert_eq!(t.columns, "user=#1 item=#2 time=#4 value=#3");
        // a missing column names itself and the header
        let e = read(b"user,item\nu,i\n", &cols("user", "item", Some("ts"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<mem>:1: missing column \"ts\" (--time-col); the header has: user, item"
        );
        let e = read(b"a,b\nu,i\n", &TableOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no user column"), "{e}");
    }

    #[test]
    fn bad_cells_name_file_line_and_column() {
        let o = TableOptions::default();
        for (text, needle) in [
            (
                &b"user,item,ts\nu,i,1\nu,i,yesterday\n"[..],
                "<mem>:3: column \"ts\": ",
            ),
            (
                b"user,item,ts\nu,i,-5\n",
                "<mem>:2: column \"ts\": 'timestamp' is out of range",
            ),
            (
                b"user,item,type\nu,i,like\n",
                "<mem>:2: column \"type\": unknown event type",
            ),
            (
                b"user,item,rating\nu,i,abc\n",
                "<mem>:2: column \"rating\": value \"abc\"",
            ),
            (
                b"user,item\n,i\n",
                "<mem>:2: column \"user\": user_id must not be empty",
            ),
            (
                b"user,item\nu,i,extra\n",
                "<mem>:2: 3 fields where the first line has 2",
            ),
            (
                b"{\"user\":\"u\",\"item\":\"i\",\"ts\":1}\n{\"user\":\"u\",\"item\":\"i\"}\n",
                "<mem>:2: no timestamp while the first object has one",
            ),
            (
                b"{\"user\":\"u\",\"item\":\"i\",\"ts\":1.5}\n",
                "<mem>:1: column \"ts\": timestamp 1.5",
            ),
            (b"{\"user\":\"u\"}\n", "<mem>:1: no item key"),
        ] {
            let e = read(text, &o).unwrap_err().to_string();
            assert!(e.starts_with(needle), "{e}\nwanted {needle}");
        }
    }

    #[test]
    fn timestamps_in_the_usual_spellings() {
        let ms = |t: &str, unit| timestamp_text(t, unit);
        assert_eq!(ms("1700000000000", TimeUnit::Millis), Ok(1_700_000_000_000));
        assert_eq!(ms("1700000000", TimeUnit::Seconds), Ok(1_700_000_000_000));
        assert_eq!(ms("1700000000.5", TimeUnit::Seconds), Ok(1_700_000_000_500));
        assert_eq!(
            ms("2023-11-14T22:13:20Z", TimeUnit::Millis),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            ms("2023-11-14 22:13:20", TimeUnit::Millis),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            ms("2023-11-14 23:13:20+01:00", TimeUnit::Millis),
            Ok(1_700_000_000_000)
        );
        assert_eq!(ms("2023-11-14", TimeUnit::Millis), Ok(1_699_920_000_000));
        assert!(ms("14/11/2023", TimeUnit::Millis).is_err());
        assert!(ms("", TimeUnit::Millis).is_err());
    }

    #[test]
    fn gzip_is_recognised_by_its_bytes_and_what_is_written_reads_back() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("recd-table-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let gz = dir.join("events.data"); // no telling extension
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"user_id\titem_id\ttype\tvalue\ttimestamp\nu1\ti1\tdwell\t12.5\t5\n")
            .unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let t = read_table(&gz, &TableOptions::default()).unwrap();
        assert!(t.gzip && t.timed);
        assert_eq!(t.format, TableFormat::Tsv);
        assert_eq!(t.interactions[0].kind, EventType::Dwell);
        let out = dir.join("copy.csv");
        assert_eq!(write_csv(&out, &t.interactions).unwrap(), 1);
        let back = read_table(&out, &TableOptions::default()).unwrap();
        assert_eq!(back.interactions, t.interactions);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
