//! Data the way users have it: `recd import events` of a CSV of (user, item, time) through
//! `recd train` to personalized answers (the README's quickstart), bad files that import
//! nothing, pairs without timestamps in `recd eval` with a written and re-read split, and
//! the MovieLens ml-1m / ml-100k layouts with their Latin-1 titles.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::server::{DataDir, Server, data_dir, ids};

fn recd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recd"))
        .args(args)
        .env("RECD_LOG", "warn")
        .env_remove("RECD_CONFIG")
        .output()
        .expect("run recd")
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn usage_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    stderr
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A folder for input files.
fn inputs(name: &str) -> DataDir {
    let dir = data_dir(&format!("in-{name}"));
    std::fs::create_dir_all(&dir).expect("create the input dir");
    dir
}

/// 40 users, two tastes: even users view shoes, odd users books (8 of 12 each, at
/// increasing times), plus one item of the other kind, first (`other_last`: last; the
/// session vector follows the latest events); the header is the user's own.
fn taste_csv(with_time: bool, other_last: bool) -> String {
    let mut out = String::from(if with_time {
        "customer,product,when\n"
    } else {
        "customer,product\n"
    });
    // a recent log (a minute apart, ending now), in epoch milliseconds
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let start = now_ms - 400 * 60_000;
    let mut t = 0;
    for u in 0..40u32 {
        let (mine, other) = if u % 2 == 0 {
            ("shoe", "book")
        } else {
            ("book", "shoe")
        };
        let mut row = |item: String| {
            t += 1;
            if with_time {
                out.push_str(&format!("c{u},{item},{}\n", start + t * 60_000));
            } else {
                out.push_str(&format!("c{u},{item}\n"));
            }
        };
        if !other_last {
            row(format!("{other}-{}", u % 12));
        }
        for j in 0..8 {
            row(format!("{mine}-{}", (u / 2 + j * 5) % 12));
        }
        if other_last {
            row(format!("{other}-{}", u % 12));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_csv_import_train_serve_gives_personalized_items() {
    let input = inputs("quickstart");
    let csv = input.join("purchases.csv");
    std::fs::write(&csv, taste_csv(true, false)).expect("write the csv");
    let dir = data_dir("quickstart");
    let d = p(&dir);
    // 1. import: columns named, items created (the store knows nothing about them)
    let out = recd(&[
        "import",
        "events",
        p(&csv),
        "--user-col",
        "customer",
        "--item-col",
        "product",
        "--time-col",
        "when",
        "--create-items",
        "--factors",
        "16",
        "--data-dir",
        d,
    ]);
    let stdout = ok(&out, "import events");
    assert!(stdout.contains("created 24 items"), "{stdout}");
    assert!(stdout.contains("imported 360 events"), "{stdout}");
    // a later file creates only the items that are new
    let more = input.join("more.csv");
    std::fs::write(&more, "customer,product\nc0,shoe-0\nc1,hat-1\n").expect("write");
    let again = ok(
        &recd(&[
            "import",
            "events",
            p(&more),
            "--create-items",
            "--data-dir",
            d,
        ]),
        "import more",
    );
    assert!(again.contains("created 1 items"), "{again}");
    // 2. train (40 users of views: a light regularization, a strong confidence)
    let trained = ok(
        &recd(&[
            "train",
            "--data-dir",
            d,
            "--iterations",
            "10",
            "--threads",
            "2",
            "--regularization",
            "1",
            "--alpha",
            "20",
        ]),
        "train",
    );
    assert!(trained.contains("40 user vectors"), "{trained}");
    // 3. serve, 4. recommend
    let s = Server::start(&["serve", "--data-dir", d], &[]);
    for u in 0..40u32 {
        let a = s
            .recommend(json!({"user_id": format!("c{u}"), "count": 5}))
            .await;
        assert_eq!(a["source"], "personalized", "{a}");
        assert_eq!(ids(&a).len(), 5, "{a}");
    }
    // the created items got their vectors from `recd train`
    let (status, item) = s.get("/v1/items/shoe-0?include_vector=true").await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["vector"].as_array().map(Vec::len), Some(16), "{item}");
    // popularity counts the created items
    let a = s
        .recommend(json!({"user_id": "newcomer", "count": 3}))
        .await;
    assert_eq!(a["source"], "popular", "{a}");
    assert_eq!(ids(&a).len(), 3, "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_create_items_unknown_items_are_named_and_gzip_tsv_reads() {
    let input = inputs("gz");
    let tsv: String = taste_csv(true, false).replace(',', "\t");
    let gz = input.join("events.tsv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, tsv.as_bytes()).expect("gzip");
    std::fs::write(&gz, enc.finish().expect("gzip")).expect("write the gz");
    let config = input.join("recd.toml");
    std::fs::write(
        &config,
        "[schema]\nvector = { dim = 8, metric = \"ip\" }\n[import]\nuser_col = \"customer\"\nitem_col = \"product\"\ntime_col = \"when\"\n",
    )
    .expect("write the config");
    let dir = data_dir("gz");
    let out = recd(&[
        "import",
        "events",
        p(&gz),
        "--config",
        p(&config),
        "--data-dir",
        p(&dir),
    ]);
    let stdout = ok(&out, "import gz");
    assert!(stdout.contains("imported 360 events"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tsv (gzip)"), "{stderr}");
    assert!(
        stderr.contains("360 events name 24 items the store does not have")
            && stderr.contains("--create-items"),
        "{stderr}"
    );
}

#[test]
fn a_bad_file_imports_nothing_and_names_file_line_and_column() {
    let input = inputs("bad");
    let dir = data_dir("bad-import");
    let bad_time = input.join("bad-time.csv");
    std::fs::write(&bad_time, "user,item,ts\nu1,i1,1000\nu2,i2,yesterday\n").expect("write");
    let one_col = input.join("one-column.txt");
    std::fs::write(&one_col, "u1\nu2\n").expect("write");
    let cases: [(&Path, &[&str], String); 4] = [
        (
            &bad_time,
            &[],
            format!("{}:3: column \"ts\"", bad_time.display()),
        ),
        (
            &one_col,
            &[],
            format!("{}:1: cannot tell the format", one_col.display()),
        ),
        (
            &bad_time,
            &["--time-col", "when"],
            "missing column \"when\" (--time-col); the header has: user, item, ts".into(),
        ),
        (
            &bad_time,
            &["--type-col", "ts"],
            format!(
                "{}:2: column \"ts\": unknown event type",
                bad_time.display()
            ),
        ),
    ];
    for (file, extra, needle) in cases {
        let mut args = vec![
            "import",
            "events",
            p(file),
            "--create-items",
            "--data-dir",
            p(&dir),
        ];
        args.extend_from_slice(extra);
        let stderr = usage_error(&recd(&args), &needle);
        assert!(stderr.contains(&needle), "{stderr}\nwanted: {needle}");
        assert!(!dir.exists(), "a bad file created the data dir");
    }
}

fn eval_json(args: &[&str]) -> Value {
    let mut all = vec![
        "eval",
        "--factors",
        "8",
        "--iterations",
        "5",
        "--no-replay",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = ok(&recd(&all), "eval");
    serde_json::from_str(&out).expect("eval --json prints JSON")
}

#[test]
fn eval_on_pairs_without_time_writes_and_reads_back_its_split() {
    let input = inputs("pairs");
    let pairs = input.join("pairs.csv");
    std::fs::write(&pairs, taste_csv(false, true)).expect("write");
    // the time split cannot run without timestamps, and says so
    let stderr = usage_error(
        &recd(&["eval", "--interactions", p(&pairs), "--split", "time"]),
        "time split",
    );
    assert!(
        stderr.contains("the time split cannot run") && stderr.contains("no time column"),
        "{stderr}"
    );
    // file order is time: leave-last-out holds out each user's last line
    let split_dir = input.join("split");
    let first = eval_json(&[
        "--interactions",
        p(&pairs),
        "--split",
        "leave-last-out",
        "--write-split",
        p(&split_dir),
    ]);
    assert_eq!(first["test_events"], 40, "{first}");
    let test = std::fs::read_to_string(split_dir.join("test.csv")).expect("test.csv");
    let mut lines = test.lines();
    assert_eq!(lines.next(), Some("user_id,item_id,type,value,timestamp"));
    // every user's last line is its one item of the other kind
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let u: u32 = f[0].trim_start_matches('c').parse().expect("user");
        let other = if u.is_multiple_of(2) {
            "book-"
        } else {
            "shoe-"
        };
        assert!(f[1].starts_with(other) && f[2] == "view", "{line}");
    }
    // the written halves evaluate to the same split
    let again = eval_json(&[
        "--train",
        p(&split_dir.join("train.csv")),
        "--test",
        p(&split_dir.join("test.csv")),
    ]);
    assert_eq!(again["split"], "given", "{again}");
    for key in ["train_events", "test_events", "users"] {
        assert_eq!(again[key], first[key], "{key}");
    }
    assert_eq!(
        again["models"]["popularity"]["metrics"]["hit_rate"],
        first["models"]["popularity"]["metrics"]["hit_rate"]
    );
}

/// ml-1m and ml-100k in their real layouts: `::` and tab separators, no header, epoch
/// seconds, pipe-separated `u.item` with genre flags, Latin-1 titles (é is 0xE9).
fn movielens_folders() -> (DataDir, DataDir) {
    let ml1m = inputs("ml-1m");
    let mut ratings = String::new();
    let mut ratings100k = String::new();
    for u in 1..=12u32 {
        for (n, m) in [1u32, 2, 3, 73].iter().enumerate() {
            if (u + n as u32).is_multiple_of(4) {
                continue;
            }
            let t = 978_300_760 + u * 100 + n as u32;
            ratings.push_str(&format!("{u}::{m}::{}::{t}\n", 3 + (u + m) % 3));
            ratings100k.push_str(&format!(
                "{u}\t{m}\t{}\t{}\n",
                3 + (u + m) % 3,
                t - 100_000_000
            ));
        }
    }
    std::fs::write(ml1m.join("ratings.dat"), &ratings).expect("ratings.dat");
    let mut movies: Vec<u8> = b"1::Toy Story (1995)::Animation|Children's|Comedy\n".to_vec();
    movies.extend_from_slice(b"2::Jumanji (1995)::Adventure|Children's|Fantasy\n");
    movies.extend_from_slice(b"3::Grumpier Old Men (1995)::Comedy|Romance\n");
    movies.extend_from_slice(b"73::Mis\xe9rables, Les (1995)::Drama|Musical\n");
    std::fs::write(ml1m.join("movies.dat"), movies).expect("movies.dat");

    let ml100k = inputs("ml-100k");
    std::fs::write(ml100k.join("u.data"), &ratings100k).expect("u.data");
    let flags = |on: &[usize]| -> String {
        (0..19)
            .map(|g| if on.contains(&g) { "|1" } else { "|0" })
            .collect()
    };
    let mut items: Vec<u8> = Vec::new();
    for (id, title, on) in [
        ("1", &b"Toy Story (1995)"[..], &[3usize, 4, 5][..]),
        ("2", b"GoldenEye (1995)", &[1, 2, 16]),
        ("3", b"Four Rooms (1995)", &[16]),
        ("73", b"Cit\xe9 des enfants perdus, La (1995)", &[8, 15]),
    ] {
        items.extend_from_slice(format!("{id}|").as_bytes());
        items.extend_from_slice(title);
        items.extend_from_slice(b"|01-Jan-1995||http://us.imdb.com/M/title-exact?x%20(1995)");
        items.extend_from_slice(flags(on).as_bytes());
        items.push(b'\n');
    }
    std::fs::write(ml100k.join("u.item"), items).expect("u.item");
    (ml1m, ml100k)
}

#[tokio::test(flavor = "multi_thread")]
async fn movielens_1m_and_100k_layouts_keep_their_latin1_titles() {
    let (ml1m, ml100k) = movielens_folders();
    for (folder, title, genre) in [
        (&ml1m, "Misérables, Les", "Musical"),
        (&ml100k, "Cité des enfants perdus, La", "Sci-Fi"),
    ] {
        let dir = data_dir(&format!(
            "ml-import-{}",
            folder.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        ));
        let out = ok(
            &recd(&[
                "import",
                "movielens",
                p(folder),
                "--factors",
                "8",
                "--data-dir",
                p(&dir),
            ]),
            "import movielens",
        );
        assert!(out.contains("4 items"), "{out}");
        let s = Server::start(&["serve", "--data-dir", p(&dir)], &[]);
        let (status, item) = s.get("/v1/items/73").await;
        assert_eq!(status, 200, "{item}");
        assert_eq!(item["title"], title, "{item}");
        assert_eq!(item["year"], 1995.0, "{item}");
        let genres = item["genres"].to_string();
        assert!(genres.contains(genre), "{item}");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // eval reads both layouts (the folder is recognised by its files)
    for folder in [&ml1m, &ml100k] {
        let r = eval_json(&["--interactions", p(folder), "--split", "leave-last-out"]);
        assert_eq!(r["items"], 4, "{r}");
        assert_eq!(r["users"], 12, "{r}");
    }
}
