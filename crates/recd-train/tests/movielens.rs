//! End-to-end on the real MovieLens latest-small data (`../shared/data/ml-latest-small`
//! from the repository root). CI has no `../shared`, so these tests are `#[ignore]`d; run
//! them with `cargo test -p recd-train --test movielens -- --ignored` (they fail, not skip,
//! when the data is missing).

use std::path::PathBuf;

use recd_train::ConfidenceWeights;
use recd_train::eval::{self, EvalConfig};
use recd_train::movielens::{Format, Layout, load_movielens, read_interactions};
use recd_train::split::SplitMethod;

fn data_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ml-latest-small");
    assert!(
        dir.join("ratings.csv").is_file(),
        "MovieLens latest-small not found at {} (it lives in shared/data beside the repository)",
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs ../shared/data/ml-latest-small, absent in CI"]
fn loads_the_documented_counts() {
    let ml = load_movielens(&data_dir()).expect("load");
    assert_eq!(ml.layout, Layout::MlLatest);
    assert_eq!(ml.ratings.len(), 100_836);
    assert_eq!(ml.movies.len(), 9_742);
    let users: std::collections::HashSet<&str> =
        ml.ratings.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(users.len(), 610);
    let toy = ml.movies.iter().find(|m| m.id == "1").expect("movie 1");
    assert_eq!(toy.title, "Toy Story");
    assert_eq!(toy.year, Some(1995));
    assert_eq!(
        toy.genres,
        vec!["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    );
    assert!(ml.movies.iter().all(|m| !m.title.is_empty()));
    let (first, last) = ml.ratings.iter().fold((i64::MAX, i64::MIN), |(a, b), r| {
        (a.min(r.timestamp_ms), b.max(r.timestamp_ms))
    });
    // 1996-03-29 .. 2018-09-24
    assert!(
        first >= 827_971_200_000 && last < 1_537_833_600_000,
        "{first} {last}"
    );
}

#[test]
#[ignore = "needs ../shared/data/ml-latest-small, absent in CI"]
fn eval_beats_popularity_on_every_split() {
    let loaded = read_interactions(&data_dir(), Some(Format::Movielens)).expect("load");
    let (data, genres, skipped) = loaded.to_interactions(&ConfidenceWeights::default());
    assert_eq!(skipped, 0);
    for split in [
        SplitMethod::Random { test_fraction: 0.2 },
        SplitMethod::LeaveLastOut,
    ] {
        let config = EvalConfig {
            split,
            ..EvalConfig::default()
        };
        let report =
            eval::run(&data, "ml-latest-small", config, Some(genres.clone())).expect("eval");
        eprintln!("{}", report.to_table());
        let als = report.models["als"].metrics.ndcg;
        let pop = report.models["popularity"].metrics.ndcg;
        let knn = report.models["item_knn"].metrics.ndcg;
        assert!(
            als >= 1.5 * pop,
            "{}: ALS NDCG {als} < 1.5 x popularity {pop}",
            split.name()
        );
        assert!(
            knn > pop,
            "{}: item-kNN {knn} <= popularity {pop}",
            split.name()
        );
        assert_eq!(report.diversity_basis, "genres");
        assert!(report.replay["batch"].events > 0);
    }
}

#[test]
#[ignore = "needs ../shared/data/ml-latest-small, absent in CI"]
fn realtime_user_vectors_beat_batch_in_the_time_replay() {
    let loaded = read_interactions(&data_dir(), Some(Format::Movielens)).expect("load");
    let (data, genres, _) = loaded.to_interactions(&ConfidenceWeights::default());
    let config = EvalConfig {
        split: SplitMethod::Time { test_fraction: 0.2 },
        ..EvalConfig::default()
    };
    let report = eval::run(&data, "ml-latest-small", config, Some(genres)).expect("eval");
    eprintln!("{}", report.to_table());
    let live = report.replay["als_realtime"];
    let batch = report.replay["batch"];
    assert_eq!(live.events, batch.events);
    assert!(
        live.ndcg > 1.3 * batch.ndcg,
        "real-time {live:?} vs batch {batch:?}"
    );
    // offline, only users with train history are scored; most test users of a global time
    // cutoff are new
    assert!(report.cold_test_users > report.users);
}
