//! Readers: the GroupLens MovieLens layouts and generic jsonl / csv interaction files.
//!
//! [`load_movielens`] recognises a folder by its files:
//! - ml-100k: `u.data` (tab-separated `user item rating unix-seconds`) and `u.item`
//!   (pipe-separated, 19 genre flags, Latin-1);
//! - ml-1m: `ratings.dat` (`::`-separated) and `movies.dat` (`id::Title (Year)::G1|G2`, Latin-1);
//! - ml-latest(-small): `ratings.csv` and `movies.csv` (UTF-8, quoted titles, CRLF).
//!
//! Ratings become [`Interaction`]s of kind [`EventType::Rating`] with the stars as value and
//! the timestamp in milliseconds. Movies come out as [`Movie`] with the year split off the title.
//!
//! [`read_interactions`] reads `--interactions PATH`: a MovieLens folder, or a file of
//! events read by [`crate::table`] (CSV, TSV or JSON lines, plain or gzip, columns found by
//! their usual names or mapped). Event types, ids and timestamps follow recd-core's rules,
//! as `/v1/events` and `recd import events` do: [`EventType`], [`validate_id`] (1–256 bytes,
//! no control characters) and a timestamp in 1970–9999. Every malformed record is an
//! error naming the file, line and column.

use std::fs;
use std::path::Path;

use recd_core::EventType;
use recd_core::event::check_timestamp;
use recd_core::id::validate_id;
use serde::{Deserialize, Serialize};

use crate::dataset::{ConfidenceWeights, IdMap, Interaction, Interactions};
use crate::error::{Result, TrainError};
use crate::table::{TableFormat, TableOptions, read_table};

/// A movie of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Movie {
    /// MovieLens movie id.
    pub id: String,
    /// Title without the trailing "(year)".
    pub title: String,
    /// Genres (none for "(no genres listed)" or all-zero flags).
    pub genres: Vec<String>,
    /// Release year, when the title carries one.
    pub year: Option<i32>,
}

/// Which GroupLens layout a folder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `u.data` + `u.item`.
    Ml100k,
    /// `ratings.dat` + `movies.dat`.
    Ml1m,
    /// `ratings.csv` + `movies.csv`.
    MlLatest,
}

/// A loaded MovieLens folder.
#[derive(Debug, Clone)]
pub struct MovieLens {
    /// The layout found.
    pub layout: Layout,
    /// The movies (empty if the movie file is absent).
    pub movies: Vec<Movie>,
    /// The ratings, in file order.
    pub ratings: Vec<Interaction>,
}

/// The ml-100k genre names, in flag order (as in its `u.genre`).
const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Which layout `dir` holds, by its ratings file.
pub fn detect_layout(dir: &Path) -> Result<Layout> {
    if dir.join("u.data").is_file() {
        Ok(Layout::Ml100k)
    } else if dir.join("ratings.dat").is_file() {
        Ok(Layout::Ml1m)
    } else if dir.join("ratings.csv").is_file() {
        Ok(Layout::MlLatest)
    } else {
        Err(TrainError::UnknownLayout {
            path: dir.to_owned(),
        })
    }
}

/// Load a MovieLens folder of any of the three layouts.
pub fn load_movielens(dir: &Path) -> Result<MovieLens> {
    let layout = detect_layout(dir)?;
    let (ratings_file, movies_file) = match layout {
        Layout::Ml100k => ("u.data", "u.item"),
        Layout::Ml1m => ("ratings.dat", "movies.dat"),
        Layout::MlLatest => ("ratings.csv", "movies.csv"),
    };
    let ratings_path = dir.join(ratings_file);
    let ratings = match layout {
        Layout::Ml100k => parse_separated_ratings(&ratings_path, &read(&ratings_path)?, "\t")?,
        Layout::Ml1m => parse_separated_ratings(&ratings_path, &read(&ratings_path)?, "::")?,
        Layout::MlLatest => parse_latest_ratings(&ratings_path, &read(&ratings_path)?)?,
    };
    let movies_path = dir.join(movies_file);
    let movies = if movies_path.is_file() {
        let bytes = read(&movies_path)?;
        match layout {
            Layout::Ml100k => parse_100k_movies(&movies_path, &latin1(&bytes))?,
            Layout::Ml1m => parse_1m_movies(&movies_path, &latin1(&bytes))?,
            Layout::MlLatest => parse_latest_movies(&movies_path, &bytes)?,
        }
    } else {
        tracing::warn!(path = %movies_path.display(), "no movie file: items get no titles or genres");
        Vec::new()
    };
    Ok(MovieLens {
        layout,
        movies,
        ratings,
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Latin-1 bytes → String (every byte is the code point of the same value).
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Split "Title (1995)" into ("Title", Some(1995)); also "(2006–2007)" ranges.
pub fn split_title_year(raw: &str) -> (String, Option<i32>) {
    let t = raw.trim();
    if let (Some(open), true) = (t.rfind('('), t.ends_with(')')) {
        let inner = t[open + 1..t.len() - 1].trim();
        let digits: String = inner.chars().take_while(char::is_ascii_digit).collect();
        let rest_ok = inner[digits.len()..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == '–' || c == ' ');
        if let (4, true, Ok(year)) = (digits.len(), rest_ok, digits.parse()) {
            return (t[..open].trim_end().to_owned(), Some(year));
        }
    }
    (t.to_owned(), None)
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(n, l)| (n as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}

fn parse_num<T: std::str::FromStr>(path: &Path, line: u64, field: &str, s: &str) -> Result<T> {
    s.trim()
        .parse()
        .map_err(|_| TrainError::bad(path, line, format!("{field}: not a number: {s:?}")))
}

fn rating(
    path: &Path,
    line: u64,
    user: &str,
    item: &str,
    stars: &str,
    ts: &str,
) -> Result<Interaction> {
    let stars: f64 = parse_num(path, line, "rating", stars)?;
    if !stars.is_finite() {
        return Err(TrainError::bad(path, line, "rating is not finite"));
    }
    let seconds: i64 = parse_num(path, line, "timestamp", ts)?;
    let timestamp_ms =
        check_timestamp(seconds.saturating_mul(1000)).map_err(|e| invalid(path, line, e))?;
    Ok(Interaction {
        user: check_id(path, line, "user_id", user.trim())?,
        item: check_id(path, line, "item_id", item.trim())?,
        kind: EventType::Rating,
        value: Some(stars),
        timestamp_ms,
    })
}

fn parse_separated_ratings(path: &Path, bytes: &[u8], sep: &str) -> Result<Vec<Interaction>> {
    let mut out = Vec::new();
    for (n, l) in lines(bytes) {
        let l = std::str::from_utf8(l).map_err(|_| TrainError::bad(path, n, "not UTF-8"))?;
        let f: Vec<&str> = l.split(sep).collect();
        if f.len() != 4 {
            return Err(TrainError::bad(
                path,
                n,
                format!("expected 4 fields separated by {sep:?}, found {}", f.len()),
            ));
        }
        out.push(rating(path, n, f[0], f[1], f[2], f[3])?);
    }
    Ok(out)
}

fn parse_latest_ratings(path: &Path, bytes: &[u8]) -> Result<Vec<Interaction>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(path, &e))?;
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.len() != 4 {
            return Err(TrainError::bad(
                path,
                line,
                format!(
                    "expected userId,movieId,rating,timestamp, found {} fields",
                    rec.len()
                ),
            ));
        }
        out.push(rating(path, line, &rec[0], &rec[1], &rec[2], &rec[3])?);
    }
    Ok(out)
}

fn csv_error(path: &Path, e: &csv::Error) -> TrainError {
    let line = e.position().map_or(0, csv::Position::line);
    TrainError::bad(path, line, e.to_string())
}

fn parse_100k_movies(path: &Path, text: &str) -> Result<Vec<Movie>> {
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let n = n as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split('|').collect();
        if f.len() != 5 + ML100K_GENRES.len() {
            return Err(TrainError::bad(
                path,
                n,
                format!(
                    "expected {} |-separated fields, found {}",
                    5 + ML100K_GENRES.len(),
                    f.len()
                ),
            ));
        }
        let mut genres = Vec::new();
        for (flag, name) in f[5..].iter().zip(ML100K_GENRES) {
            match flag.trim() {
                "1" => genres.push(name.to_owned()),
                "0" => {}
                other => {
                    return Err(TrainError::bad(
                        path,
                        n,
                        format!("genre flag {other:?} is not 0 or 1"),
                    ));
                }
            }
        }
        let (title, year) = split_title_year(f[1]);
        // The release date ("01-Jan-1995") gives the year when the title does not.
        let year = year.or_else(|| f[2].rsplit('-').next().and_then(|y| y.trim().parse().ok()));
        out.push(Movie {
            id: f[0].trim().to_owned(),
            title,
            genres,
            year,
        });
    }
    Ok(out)
}

fn genre_list(s: &str) -> Vec<String> {
    let s = s.trim();
    if s.is_empty() || s == "(no genres listed)" {
        return Vec::new();
    }
    s.split('|')
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect()
}

fn parse_1m_movies(path: &Path, text: &str) -> Result<Vec<Movie>> {
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let n = n as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split("::").collect();
        if f.len() != 3 {
            return Err(TrainError::bad(
                path,
                n,
                format!("expected id::title::genres, found {} fields", f.len()),
            ));
        }
        let (title, year) = split_title_year(f[1]);
        out.push(Movie {
            id: f[0].trim().to_owned(),
            title,
            genres: genre_list(f[2]),
            year,
        });
    }
    Ok(out)
}

fn parse_latest_movies(path: &Path, bytes: &[u8]) -> Result<Vec<Movie>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(path, &e))?;
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.len() != 3 {
            return Err(TrainError::bad(
                path,
                line,
                format!("expected movieId,title,genres, found {} fields", rec.len()),
            ));
        }
        let (title, year) = split_title_year(&rec[1]);
        out.push(Movie {
            id: rec[0].trim().to_owned(),
            title,
            genres: genre_list(&rec[2]),
            year,
        });
    }
    Ok(out)
}

/// Format of an interactions file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma- (or semicolon-, pipe-) separated with a header (`user_id,item_id,...`).
    Csv,
    /// Tab-separated.
    Tsv,
    /// A MovieLens folder.
    Movielens,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            "movielens" => Ok(Format::Movielens),
            other => Err(format!(
                "unknown format {other:?} (expected csv, tsv, jsonl or movielens)"
            )),
        }
    }
}

impl Format {
    /// The table format of a file format (`None`: a MovieLens folder).
    pub fn table(self) -> Option<TableFormat> {
        match self {
            Format::Jsonl => Some(TableFormat::Jsonl),
            Format::Csv => Some(TableFormat::Csv(b',')),
            Format::Tsv => Some(TableFormat::Tsv),
            Format::Movielens => None,
        }
    }
}

/// What `recd eval --interactions PATH` loads: interactions plus, for MovieLens, the movies.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The events.
    pub interactions: Vec<Interaction>,
    /// The catalog when the source has one (MovieLens), else empty.
    pub movies: Vec<Movie>,
    /// A short name of the data set (folder or file name).
    pub name: String,
    /// False when the file has no timestamps (file order defines time).
    pub timed: bool,
    /// What was read (format, columns), for messages; empty for MovieLens.
    pub description: String,
}

/// Read `path` in `format`: a folder is MovieLens, a file is read by
/// [`crate::table::read_table`] with the default columns (format sniffed when `None`).
pub fn read_interactions(path: &Path, format: Option<Format>) -> Result<Loaded> {
    read_interactions_with(path, format, &TableOptions::default())
}

/// [`read_interactions`] with the table reader's options (columns, time unit, clock);
/// `format` overrides `opts.format`.
pub fn read_interactions_with(
    path: &Path,
    format: Option<Format>,
    opts: &TableOptions,
) -> Result<Loaded> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let format = format.or_else(|| path.is_dir().then_some(Format::Movielens));
    match format.map(|f| (f, f.table())) {
        Some((_, None)) => {
            let ml = load_movielens(path)?;
            Ok(Loaded {
                interactions: ml.ratings,
                movies: ml.movies,
                name,
                timed: true,
                description: String::new(),
            })
        }
        other => {
            let mut opts = opts.clone();
            if let Some((_, Some(t))) = other {
                opts.format = Some(t);
            }
            let table = read_table(path, &opts)?;
            Ok(Loaded {
                description: crate::table::describe(path, &table),
                timed: table.timed,
                interactions: table.interactions,
                movies: Vec::new(),
                name,
            })
        }
    }
}

impl Loaded {
    /// Dense interactions over the whole catalog (movies without events still count for
    /// coverage), the genre sets per item index (for intra-list diversity; all empty when
    /// the source has no catalog), and how many events had no positive weight.
    pub fn to_interactions(
        &self,
        weights: &ConfidenceWeights,
    ) -> (Interactions, Vec<Vec<u32>>, usize) {
        let catalog: IdMap = self.movies.iter().map(|m| m.id.clone()).collect();
        let (data, skipped) =
            Interactions::from_raw_with_items(self.interactions.iter().cloned(), weights, catalog);
        let sets = genre_sets(&self.movies, data.item_ids());
        (data, sets, skipped)
    }
}

/// Genre sets per item index of `items` (genres numbered in first-seen order).
pub fn genre_sets(movies: &[Movie], items: &IdMap) -> Vec<Vec<u32>> {
    let mut names: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut sets = vec![Vec::new(); items.len()];
    for m in movies {
        if let Some(i) = items.get(&m.id) {
            for g in &m.genres {
                let next = names.len() as u32;
                sets[i as usize].push(*names.entry(g.as_str()).or_insert(next));
            }
        }
    }
    sets
}

/// A recd-core validation error as a bad record of `path`.
fn invalid(path: &Path, line: u64, e: recd_core::ValidationError) -> TrainError {
    TrainError::bad(path, line, e.message)
}

fn check_id(path: &Path, line: u64, field: &str, id: &str) -> Result<String> {
    validate_id(id, field).map_err(|e| invalid(path, line, e))?;
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The "file name" in error messages for in-memory parsing.
    fn mem() -> PathBuf {
        PathBuf::from("<mem>")
    }

    #[test]
    fn title_year() {
        assert_eq!(
            split_title_year("Toy Story (1995)"),
            ("Toy Story".into(), Some(1995))
        );
        assert_eq!(
            split_title_year("City of Lost Children, The (Cité des enfants perdus, La) (1995) "),
            (
                "City of Lost Children, The (Cité des enfants perdus, La)".into(),
                Some(1995)
            )
        );
        assert_eq!(split_title_year("Babylon 5"), ("Babylon 5".into(), None));
        assert_eq!(
            split_title_year("Fawlty Towers (1975-1979)"),
            ("Fawlty Towers".into(), Some(1975))
        );
        assert_eq!(
            split_title_year("Big (Extended) (1988)"),
            ("Big (Extended)".into(), Some(1988))
        );
        assert_eq!(
            split_title_year("Hunger (Sult)"),
            ("Hunger (Sult)".into(), None)
        );
    }

    #[test]
    fn ml100k_files() {
        let r = parse_separated_ratings(
            &mem(),
            b"196\t242\t3\t881250949\r\n186\t302\t3.5\t891717742\n\n",
            "\t",
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].user, "196");
        assert_eq!(r[0].item, "242");
        assert_eq!(r[0].value, Some(3.0));
        assert_eq!(r[0].timestamp_ms, 881_250_949_000);
        assert_eq!(r[1].kind, EventType::Rating);
        // Latin-1 title (é is 0xE9), genre flags Animation + Children's + Comedy
        let mut bytes =
            b"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                .to_vec();
        bytes.extend_from_slice(
            b"2|Cit\xe9 (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n",
        );
        bytes.extend_from_slice(b"267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n");
        let m = parse_100k_movies(&mem(), &latin1(&bytes)).unwrap();
        assert_eq!(m[0].title, "Toy Story");
        assert_eq!(m[0].year, Some(1995));
        assert_eq!(m[0].genres, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(m[1].title, "Cité");
        assert_eq!(m[1].genres, vec!["Drama"]);
        assert_eq!(m[2].year, None);
        assert_eq!(m[2].genres, vec!["unknown"]);
    }

    #[test]
    fn ml1m_files() {
        let r = parse_separated_ratings(&mem(), b"1::1193::5::978300760\n", "::").unwrap();
        assert_eq!(
            (r[0].user.as_str(), r[0].item.as_str(), r[0].value),
            ("1", "1193", Some(5.0))
        );
        let m = parse_1m_movies(
            &mem(),
            &latin1(b"1::Toy Story (1995)::Animation|Children's|Comedy\n"),
        )
        .unwrap();
        assert_eq!(m[0].genres, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(m[0].year, Some(1995));
    }

    #[test]
    fn ml_latest_files_with_quotes_and_crlf() {
        let r = parse_latest_ratings(
            &mem(),
            b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,3,4.5,964981247\r\n",
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].value, Some(4.5));
        let m = parse_latest_movies(
            &mem(),
            b"movieId,title,genres\r\n11,\"American President, The (1995)\",Comedy|Drama|Romance\r\n182727,A Christmas Story Live! (2017),(no genres listed)\r\n",
        )
        .unwrap();
        assert_eq!(m[0].title, "American President, The");
        assert_eq!(m[0].genres.len(), 3);
        assert!(m[1].genres.is_empty());
        assert_eq!(m[1].year, Some(2017));
    }

    #[test]
    fn bad_ratings_name_the_line() {
        let e = parse_separated_ratings(&mem(), b"1\t2\t3\t4\n1\t2\tx\t4\n", "\t").unwrap_err();
        assert!(e.to_string().starts_with("<mem>:2: rating"), "{e}");
        let e = parse_separated_ratings(&mem(), b"1\t2\t3\n", "\t").unwrap_err();
        assert!(e.to_string().contains(":1: expected 4 fields"), "{e}");
        let e = parse_latest_ratings(
            &mem(),
            b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,1,4.0,oops\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains(":3: timestamp"), "{e}");
        let e = parse_separated_ratings(&mem(), b"1\t2\t3\t-4\n", "\t").unwrap_err();
        assert!(
            e.to_string().contains(":1: 'timestamp' is out of range"),
            "{e}"
        );
        let e = parse_separated_ratings(&mem(), b" \t2\t3\t4\n", "\t").unwrap_err();
        assert!(
            e.to_string().contains(":1: user_id must not be empty"),
            "{e}"
        );
    }

    fn parse_jsonl(path: &Path, bytes: &[u8]) -> Result<Vec<Interaction>> {
        let opts = TableOptions {
            format: Some(TableFormat::Jsonl),
            ..TableOptions::default()
        };
        Ok(crate::table::parse_table(path, bytes, false, &opts)?.interactions)
    }

    fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Vec<Interaction>> {
        let opts = TableOptions {
            format: Some(TableFormat::Csv(b',')),
            ..TableOptions::default()
        };
        Ok(crate::table::parse_table(path, bytes, false, &opts)?.interactions)
    }

    #[test]
    fn jsonl_events() {
        let text = br#"{"user_id":"u1","item_id":"sku-1","type":"view","timestamp":1700000000000}
{"user_id":"u1","item_id":"sku-2","type":"dwell","value":12.5,"timestamp":"2023-11-14T22:13:20Z","recommendation_id":"r"}

{"user_id":7,"item_id":"sku-2","type":"rating","value":4,"timestamp":1}
"#;
        let evs = parse_jsonl(&mem(), text).unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[1].kind, EventType::Dwell);
        assert_eq!(evs[1].timestamp_ms, 1_700_000_000_000);
        assert_eq!(evs[2].user, "7");
        let e = parse_jsonl(
            &mem(),
            b"{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"like\",\"timestamp\":1}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(":1: column \"type\": unknown event type"),
            "{e}"
        );
        let e = parse_jsonl(&mem(), b"\n{\"user_id\":\"u\"}\n").unwrap_err();
        assert!(e.to_string().starts_with("<mem>:2:"), "{e}");
        let e = parse_jsonl(
            &mem(),
            b"{\"user_id\":\"\",\"item_id\":\"i\",\"type\":\"view\",\"timestamp\":1}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("user_id must not be empty"), "{e}");
        // recd-core's rules: ids up to 256 bytes, timestamps from 1970 to 9999, and in
        // json a timestamp is an integer or a date string
        let line = |id: &str, ts: &str| {
            format!(r#"{{"user_id":"{id}","item_id":"i","type":"view","timestamp":{ts}}}"#)
        };
        let long = "u".repeat(257);
        for (l, needle) in [
            (line(&long, "1"), "limit is 256"),
            (line("u", "-1"), "out of range"),
            (line("u", "253402300800000"), "out of range"),
            (line("u", "1.5"), "not an integer"),
            (line("u", "\"1000x\""), "not RFC 3339"),
            (line("u", "null"), "not a number or a date"),
        ] {
            let e = parse_jsonl(&mem(), l.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(needle), "{l}: {e}");
        }
        assert!(parse_jsonl(&mem(), line(&"u".repeat(256), "0").as_bytes()).is_ok());
    }

    #[test]
    fn csv_events() {
        let text = b"user_id,item_id,type,value,timestamp\r\nu1,sku-1,purchase,,1000\r\nu2,sku-1,dwell,30,2023-11-14T22:13:20.5Z\r\n";
        let evs = parse_csv(&mem(), text).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].value, None);
        assert_eq!(evs[1].timestamp_ms, 1_700_000_000_500);
        let e = parse_csv(
            &mem(),
            b"user_id,item_id,type,value,timestamp\nu1,i,view,abc,1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains(":2: column \"value\""), "{e}");
        let evs = parse_csv(&mem(), b"timestamp,type,item_id,user_id\n5,click,i,u\n").unwrap();
        assert_eq!(
            (evs[0].user.as_str(), evs[0].kind, evs[0].value),
            ("u", EventType::Click, None)
        );
        // pairs are views
        let evs = parse_csv(&mem(), b"user,item\nu1,i\n").unwrap();
        assert_eq!(evs[0].kind, EventType::View);
        let e = parse_csv(&mem(), b"who,what\nu1,i\n").unwrap_err();
        assert!(e.to_string().contains("no user column"), "{e}");
        let e = parse_csv(&mem(), b"user_id,item_id,type,timestamp\nu,i,view,-1\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":2: column \"timestamp\": 'timestamp' is out of range"),
            "{e}"
        );
        let e = parse_csv(&mem(), b"user_id,item_id,type,timestamp\nu,i,view,1e3\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":2: column \"timestamp\": 'timestamp' is not RFC 3339"),
            "{e}"
        );
    }

    /// A fresh temporary folder holding `files`.
    fn folder(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("recd-train-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (f, bytes) in files {
            fs::write(dir.join(f), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn layouts_are_recognised_by_their_files() {
        let flags = "|0".repeat(18);
        let item = format!("1|Toy Story (1995)|01-Jan-1995||http://x|1{flags}\n");
        let d100k = folder(
            "100k",
            &[
                ("u.data", b"1\t1\t5\t874965758\n"),
                ("u.item", item.as_bytes()),
            ],
        );
        let ml = load_movielens(&d100k).unwrap();
        assert_eq!(ml.layout, Layout::Ml100k);
        assert_eq!((ml.ratings.len(), ml.movies.len()), (1, 1));
        let d1m = folder(
            "1m",
            &[
                ("ratings.dat", b"1::1::5::978300760\n"),
                ("movies.dat", b"1::Toy Story (1995)::Comedy\n"),
            ],
        );
        assert_eq!(load_movielens(&d1m).unwrap().layout, Layout::Ml1m);
        let dl = folder(
            "latest",
            &[(
                "ratings.csv",
                b"userId,movieId,rating,timestamp\r\n1,1,4.0,1\r\n",
            )],
        );
        let ml = load_movielens(&dl).unwrap();
        assert_eq!(ml.layout, Layout::MlLatest);
        assert!(ml.movies.is_empty(), "movies.csv is optional");
        let empty = folder("empty", &[]);
        assert!(matches!(
            load_movielens(&empty),
            Err(TrainError::UnknownLayout { .. })
        ));
        // via read_interactions, with the catalog and genres
        let loaded = read_interactions(&d1m, None).unwrap();
        let (data, sets, skipped) = loaded.to_interactions(&ConfidenceWeights::default());
        assert_eq!((data.len(), data.n_items(), skipped), (1, 1, 0));
        assert_eq!(sets, vec![vec![0]]);
        for d in [d100k, d1m, dl, empty] {
            let _ = fs::remove_dir_all(d);
        }
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let e = read_interactions(Path::new("/nonexistent/recd/events.jsonl"), None).unwrap_err();
        assert!(matches!(e, TrainError::Io { .. }));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/recd/events.jsonl: "),
            "{e}"
        );
    }

    #[test]
    fn format_parse() {
        assert_eq!("csv".parse::<Format>(), Ok(Format::Csv));
        assert_eq!("tsv".parse::<Format>(), Ok(Format::Tsv));
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(Format::Movielens.table(), None);
    }
}
