//! The transitions candidate source end to end: `recd train` stores the transition table
//! with the model version, and a user whose last item is X is offered X's usual successor
//! (with the reason "often next after X"); filters hold for it, and with the source off
//! (the default) nothing comes from it.

use serde_json::{Value, json};

use super::{GENRES, MOVIES_PER_GENRE, USERS, import_movielens, path, train_quick};
use crate::server::{DataDir, Server, data_dir, ids};

/// The planted pair: most Action fans watch Action movie `X` and right after it Horror
/// movie `Y`; Horror fans rate `Y` too, so its vector is a Horror one.
const X: u32 = 1;
const Y: u32 = 2 * MOVIES_PER_GENRE + 1;

/// An ml-latest folder like `write_movielens`'s (user u loves genre u % 3), in which 10 of
/// the 15 Action fans start with X and, a minute later, Y.
fn write_with_successor(name: &str) -> DataDir {
    let dir = data_dir(&format!("ml-{name}"));
    std::fs::create_dir_all(&dir).expect("create the movielens dir");
    let mut movies = String::from("movieId,title,genres\n");
    for m in 1..=MOVIES_PER_GENRE * 3 {
        let genre = GENRES[((m - 1) / MOVIES_PER_GENRE) as usize];
        movies.push_str(&format!("{m},Movie {m} ({}),{genre}\n", 1980 + m));
    }
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    let mut action_fans = 0;
    for u in 1..=USERS {
        let g = (u % 3) * MOVIES_PER_GENRE;
        let mut t = 1_500_000_000 + u64::from(u) * 3600;
        let mut rate = |m: u32, stars: &str, ratings: &mut String| {
            ratings.push_str(&format!("{u},{m},{stars},{t}\n"));
            t += 60;
        };
        // first (each user's last rating is held out by training's quality gate)
        if u % 3 == 0 && action_fans < 10 {
            action_fans += 1;
            rate(X, "5.0", &mut ratings);
            rate(Y, "4.0", &mut ratings);
        } else if u % 3 == 0 {
            rate(X, "5.0", &mut ratings);
        } else if u % 3 == 2 {
            rate(Y, "4.0", &mut ratings);
        }
        let mut seen = Vec::new();
        for j in 0..12 {
            let m = g + 1 + (u * 7 + j * 3) % MOVIES_PER_GENRE;
            if m != X && m != Y && !seen.contains(&m) {
                seen.push(m);
                rate(m, "4.0", &mut ratings);
            }
        }
    }
    std::fs::write(dir.join("movies.csv"), movies).expect("write movies.csv");
    std::fs::write(dir.join("ratings.csv"), ratings).expect("write ratings.csv");
    dir
}

/// A fresh user who just watched X: their top 5 (explained, computed now).
async fn after_x(s: &Server, user: &str, filter: Option<Value>) -> Value {
    let (status, v) = s
        .post(
            "/v1/events",
            json!({"events": [{"user_id": user, "item_id": X.to_string(), "type": "view",
                               "timestamp": 1_600_000_000_000i64}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut body = json!({"user_id": user, "count": 5, "explain": true, "use_cache": false});
    if let Some(f) = filter {
        body["filter"] = f;
    }
    s.recommend(body).await
}

fn reasons_of(answer: &Value, id: &str) -> Vec<String> {
    answer["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == id))
        .and_then(|i| i["reasons"].as_array())
        .map_or_else(Vec::new, |r| {
            r.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn training_stores_transitions_and_the_pipeline_offers_the_usual_next_item() {
    let ml = write_with_successor("transitions");
    let dir = data_dir("train-transitions");
    let d = path(&dir);
    import_movielens(&ml, d);
    let out = train_quick(d);
    assert!(out.contains("stored the transitions of"), "{out}");
    let (x, y) = (X.to_string(), Y.to_string());

    // The source on (off by default).
    {
        let s = Server::start(
            &["serve", "--data-dir", d],
            &[("RECD_RANKING__TRANSITIONS_CANDIDATES", "50")],
        );
        let (_, models) = s.get("/v1/models").await;
        assert!(
            models["models"][0]["counts"]["transitions"].as_u64() > Some(0),
            "{models}"
        );
        let a = after_x(&s, "fan", None).await;
        assert!(ids(&a).contains(&y), "Y follows X: {a}");
        assert!(!ids(&a).contains(&x), "X itself was just seen: {a}");
        assert!(
            reasons_of(&a, &y).contains(&format!("often next after {x}")),
            "{a}"
        );
        assert!(
            a["stages"]["retrieve"]["transitions"].as_u64() > Some(0),
            "{a}"
        );
        // a filter holds for the source's candidates too
        let no_horror = json!({"genres": {"none": ["Horror"]}});
        let a = after_x(&s, "fan-filtered", Some(no_horror)).await;
        assert!(!ids(&a).contains(&y), "Y is Horror: {a}");
        assert_eq!(ids(&a).len(), 5, "{a}");
    }
    // Views that weigh nothing: a user who just viewed X has no vector to search with (no
    // fold-in, no session), yet their list is built from what they did (Y after X), not
    // the cold-start one.
    {
        let s = Server::start(
            &["serve", "--data-dir", d],
            &[
                ("RECD_RANKING__TRANSITIONS_CANDIDATES", "50"),
                ("RECD_MODEL__SESSION__WEIGHTS__VIEW", "0"),
            ],
        );
        let a = after_x(&s, "fan-no-vector", None).await;
        assert_eq!(
            a["stages"]["retrieve"]["knn"], 0,
            "no vector to search with: {a}"
        );
        assert!(ids(&a).contains(&y), "Y follows X: {a}");
        assert_eq!(a["source"], "personalized", "{a}");
    }
    // The source off (the default): nothing comes from it. (Y itself may still be offered:
    // the Action fans who watch it after X make its vector close to X's, and it is popular.)
    let s = Server::start(&["serve", "--data-dir", d], &[]);
    let a = after_x(&s, "fan-off", None).await;
    assert_eq!(ids(&a).len(), 5, "{a}");
    assert_eq!(a["stages"]["retrieve"]["transitions"], 0, "{a}");
    assert_eq!(
        a["stages"]["retrieve"]["transitions_after"],
        json!([]),
        "{a}"
    );
    assert!(
        a["items"].as_array().is_some_and(|items| items
            .iter()
            .all(|i| !i["reasons"].to_string().contains("often next after"))),
        "{a}"
    );
}
