//! The query vector: the user's long-term taste blended with the live session.

use crate::foldin::{UpdateRule, session_mix_share};
use crate::pipeline::RankParams;
use crate::user::{SessionParams, UserState};
use crate::vector::normalized;

/// What to search with, and how much of it came from the session.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryVector {
    /// Unit-length query.
    pub vector: Vec<f32>,
    /// Share of the session vector in it, 0 (long-term only) to 1 (session only).
    pub session_share: f64,
}

/// Blends the long-term vector with the real-time one.
///
/// Under `update = "fold_in"`, when the user has a folded-in vector: its direction takes
/// `fold_in.share` of the query (the long-term direction the rest), or all of it without
/// a long-term vector; with `fold_in.session_mix` > 0 the session direction is blended
/// into that at [`session_mix_share`] of its decayed weight. Otherwise (the
/// decayed-average rule, or no fold-in yet: no model, no positive interaction) the session
/// direction's share grows with its decayed weight (w / (w + saturation)), up to
/// `session_share_max`; without a long-term vector the session alone is the query. `None`
/// for a cold user.
pub fn query_vector(
    user: &UserState,
    now_ms: i64,
    session: &SessionParams,
    params: &RankParams,
) -> Option<QueryVector> {
    let long_term = user.long_term.as_deref().and_then(normalized);
    if session.update == UpdateRule::FoldIn
        && let Some(folded) = user.fold.vector.as_deref().and_then(normalized)
    {
        let fold = match long_term {
            Some(lt) if lt.len() == folded.len() => {
                let share = session.fold_in.share.clamp(0.0, 1.0);
                QueryVector {
                    vector: blend(&lt, &folded, share).unwrap_or(folded),
                    session_share: share,
                }
            }
            _ => QueryVector {
                vector: folded,
                session_share: 1.0,
            },
        };
        // The session vector on top, at up to `fold_in.session_mix` (0 by default).
        let mixed = user.session.as_ref().and_then(|s| {
            let share = session_mix_share(
                session.fold_in.session_mix,
                s.weight_at(now_ms, session),
                params.session_saturation,
            );
            if share <= 0.0 {
                return None;
            }
            let dir = s.direction().filter(|d| d.len() == fold.vector.len())?;
            Some(QueryVector {
                vector: blend(&fold.vector, &dir, share)?,
                session_share: share + (1.0 - share) * fold.session_share,
            })
        });
        return Some(mixed.unwrap_or(fold));
    }
    let session_dir = user.session.as_ref().and_then(|s| {
        let w = s.weight_at(now_ms, session);
        s.direction().map(|d| (d, w))
    });
    match (long_term, session_dir) {
        (None, None) => None,
        (Some(lt), None) => Some(QueryVector {
            vector: lt,
            session_share: 0.0,
        }),
        (None, Some((s, _))) => Some(QueryVector {
            vector: s,
            session_share: 1.0,
        }),
        (Some(lt), Some((s, w))) if lt.len() == s.len() => {
            let share = params.session_share_max.clamp(0.0, 1.0) * w
                / (w + params.session_saturation.max(1e-9));
            let vector = blend(&lt, &s, share).unwrap_or(lt);
            Some(QueryVector {
                vector,
                session_share: share,
            })
        }
        // A dimension mismatch means a model change mid-session: trust the new model.
        (Some(lt), Some(_)) => Some(QueryVector {
            vector: lt,
            session_share: 0.0,
        }),
    }
}

/// `(1 − share)·a + share·b`, unit length (`None` if it is zero).
fn blend(a: &[f32], b: &[f32], share: f64) -> Option<Vec<f32>> {
    let mixed: Vec<f32> = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((1.0 - share) as f32) * x + (share as f32) * y)
        .collect();
    normalized(&mixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::SessionVector;

    #[test]
    fn cold_long_term_session_and_blend() {
        let sp = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let rp = RankParams {
            session_share_max: 0.5,
            session_saturation: 1.0,
            ..Default::default()
        };
        let mut u = UserState::default();
        assert!(query_vector(&u, 0, &sp, &rp).is_none());
        u.long_term = Some(vec![2.0, 0.0]);
        assert_eq!(
            query_vector(&u, 0, &sp, &rp).unwrap().vector,
            vec![1.0, 0.0]
        );
        u.session = Some(SessionVector {
            sum: vec![0.0, 3.0],
            weight: 1.0,
            updated_ms: 0,
        });
        let q = query_vector(&u, 0, &sp, &rp).unwrap();
        assert!((q.session_share - 0.25).abs() < 1e-9);
        assert!(q.vector[1] > 0.0 && q.vector[0] > q.vector[1]);
        // a session two half-lives old weighs a quarter: a smaller share
        let later = query_vector(&u, 2000, &sp, &rp).unwrap();
        assert!(later.session_share < q.session_share);
        u.long_term = None;
        assert_eq!(query_vector(&u, 0, &sp, &rp).unwrap().session_share, 1.0);
    }

    #[test]
    fn fold_in_takes_its_share_and_falls_back_to_the_session() {
        let rp = RankParams::default();
        let mut sp = SessionParams::default();
        sp.fold_in.share = 0.5;
        let mut u = UserState {
            long_term: Some(vec![2.0, 0.0]),
            session: Some(SessionVector {
                sum: vec![-1.0, 0.0],
                weight: 5.0,
                updated_ms: 0,
            }),
            ..Default::default()
        };
        // no folded vector yet (no model): the session blend serves
        let q = query_vector(&u, 0, &sp, &rp).unwrap();
        assert!(q.vector[0] < 0.0, "{q:?}");
        u.fold.vector = Some(vec![0.0, 4.0]);
        let q = query_vector(&u, 0, &sp, &rp).unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((q.vector[0] - h).abs() < 1e-6 && (q.vector[1] - h).abs() < 1e-6);
        assert_eq!(q.session_share, 0.5);
        // the decayed-average rule ignores the folded vector
        sp.update = UpdateRule::DecayedAverage;
        assert!(query_vector(&u, 0, &sp, &rp).unwrap().vector[0] < 0.0);
        // without a long-term vector the fold-in alone is the query
        sp.update = UpdateRule::FoldIn;
        u.long_term = None;
        assert_eq!(
            query_vector(&u, 0, &sp, &rp).unwrap().vector,
            vec![0.0, 1.0]
        );
    }

    #[test]
    fn the_session_mix_blends_the_session_into_the_fold_in_and_fades_with_it() {
        let rp = RankParams {
            session_saturation: 1.0,
            ..Default::default()
        };
        let mut sp = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let u = UserState {
            long_term: Some(vec![1.0, 0.0]),
            session: Some(SessionVector {
                sum: vec![0.0, 3.0],
                weight: 3.0,
                updated_ms: 0,
            }),
            fold: crate::user::FoldState {
                vector: Some(vec![1.0, 0.0]),
                ..Default::default()
            },
            ..Default::default()
        };
        // mix 0 (the default): the fold-in alone, the session ignored
        assert_eq!(
            query_vector(&u, 0, &sp, &rp).unwrap().vector,
            vec![1.0, 0.0]
        );
        // mix 0.8 at weight 3: share 0.8 · 3 / 4 = 0.6 of the session direction
        sp.fold_in.session_mix = 0.8;
        let q = query_vector(&u, 0, &sp, &rp).unwrap();
        let want = [0.4f32 / 0.4f32.hypot(0.6), 0.6 / 0.4f32.hypot(0.6)];
        assert!(
            (q.vector[0] - want[0]).abs() < 1e-6 && (q.vector[1] - want[1]).abs() < 1e-6,
            "{q:?}"
        );
        assert!((q.session_share - 1.0).abs() < 1e-9, "{q:?}");
        // ten half-lives later the session weighs ~0.003: nearly the fold-in again
        let later = query_vector(&u, 10_000, &sp, &rp).unwrap();
        assert!(later.vector[1] < 0.01 && later.vector[1] > 0.0, "{later:?}");
    }
}
