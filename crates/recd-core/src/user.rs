//! A user's real-time state and how one event changes it.
//!
//! [`UserState::apply`] is the single definition of an event's effect: counters, the
//! recent and purchased items, and the *session vector* — a time-decayed weighted average
//! of the vectors of the items the user touched, where each event weighs by its kind
//! (and dwell seconds), and its weight halves every `half_life_seconds`. Both backends call
//! it (the Redis backend inside an optimistic read-modify-write), so they agree exactly.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, EventWeights};
use crate::vector::normalized;

/// Settings of the real-time user model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionParams {
    /// After this many seconds an event counts half as much in the session vector.
    pub half_life_seconds: f64,
    /// How many distinct recent items are remembered (and excluded as "seen").
    pub recent_capacity: usize,
    /// Event weights.
    pub weights: EventWeights,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            half_life_seconds: 1800.0,
            recent_capacity: 200,
            weights: EventWeights::default(),
        }
    }
}

impl SessionParams {
    /// The decay factor for an age of `dt_ms` milliseconds.
    pub fn decay(&self, dt_ms: i64) -> f64 {
        let hl_ms = self.half_life_seconds.max(1e-3) * 1000.0;
        (-(dt_ms.max(0) as f64) / hl_ms * std::f64::consts::LN_2).exp()
    }
}

/// The decaying weighted sum behind the session vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionVector {
    /// Σ wᵢ·decay·vᵢ (unit vᵢ), as of `updated_ms`.
    pub sum: Vec<f32>,
    /// Σ wᵢ·decay, as of `updated_ms`.
    pub weight: f64,
    /// When `sum` and `weight` were last decayed to.
    pub updated_ms: i64,
}

impl SessionVector {
    /// The session's direction (unit length), if it has one.
    pub fn direction(&self) -> Option<Vec<f32>> {
        normalized(&self.sum)
    }

    /// The session's total weight decayed to `now_ms`.
    pub fn weight_at(&self, now_ms: i64, params: &SessionParams) -> f64 {
        self.weight * params.decay(now_ms - self.updated_ms)
    }

    fn add(&mut self, v: &[f32], w: f64, t_ms: i64, params: &SessionParams) {
        if t_ms >= self.updated_ms {
            // Decay what we had to the new event's time, then add it at full weight.
            let f = params.decay(t_ms - self.updated_ms) as f32;
            self.sum.iter_mut().for_each(|x| *x *= f);
            self.weight *= f as f64;
            self.updated_ms = t_ms;
            self.add_weighted(v, w);
        } else {
            // An event arriving out of order is added at the weight it has by now.
            self.add_weighted(v, w * params.decay(self.updated_ms - t_ms));
        }
    }

    fn add_weighted(&mut self, v: &[f32], w: f64) {
        for (s, x) in self.sum.iter_mut().zip(v) {
            *s += (w as f32) * x;
        }
        self.weight += w;
    }
}

/// Per-user event counters (API.md `GET /v1/users/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Views.
    pub view: u64,
    /// Clicks.
    pub click: u64,
    /// Dwell events.
    pub dwell: u64,
    /// Add-to-carts.
    pub add_to_cart: u64,
    /// Purchases.
    pub purchase: u64,
    /// Ratings.
    pub rating: u64,
    /// Total dwell seconds.
    pub dwell_seconds: f64,
}

/// Everything the engine knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// The long-term taste vector from training, if any.
    pub long_term: Option<Vec<f32>>,
    /// The real-time session vector, once the user touched an item that has a vector.
    pub session: Option<SessionVector>,
    /// Event counters.
    pub counters: Counters,
    /// Distinct recently touched items, most recent first, at most `recent_capacity`.
    pub recent: Vec<String>,
    /// Items bought; never recommended again.
    pub purchased: BTreeSet<String>,
    /// Time of the latest event.
    pub last_event_ms: i64,
}

impl UserState {
    /// Applies one event. `item_vector` is the item's vector, if it has one.
    pub fn apply(&mut self, event: &Event, item_vector: Option<&[f32]>, params: &SessionParams) {
        let c = &mut self.counters;
        match event.kind {
            EventType::View => c.view += 1,
            EventType::Click => c.click += 1,
            EventType::Dwell => {
                c.dwell += 1;
                c.dwell_seconds += event.value.unwrap_or(0.0);
            }
            EventType::AddToCart => c.add_to_cart += 1,
            EventType::Purchase => {
                c.purchase += 1;
                self.purchased.insert(event.item_id.clone());
            }
            EventType::Rating => c.rating += 1,
        }
        self.recent.retain(|id| id != &event.item_id);
        self.recent.insert(0, event.item_id.clone());
        self.recent.truncate(params.recent_capacity);
        self.last_event_ms = self.last_event_ms.max(event.timestamp_ms);

        let w = params.weights.weight(event.kind, event.value);
        if let (Some(v), true) = (item_vector.and_then(normalized), w > 0.0) {
            let session = self.session.get_or_insert_with(|| SessionVector {
                sum: vec![0.0; v.len()],
                weight: 0.0,
                updated_ms: event.timestamp_ms,
            });
            if session.sum.len() == v.len() {
                session.add(&v, w, event.timestamp_ms, params);
            } else {
                // The vector dimension changed (a new model): start the session afresh.
                *session = SessionVector {
                    sum: v.iter().map(|x| x * w as f32).collect(),
                    weight: w,
                    updated_ms: event.timestamp_ms,
                };
            }
        }
    }

    /// The session vector `events` (one user's, in the order they were applied) give when
    /// each item has the vector `vector(item_id)`: what [`UserState::apply`] would have
    /// built had those vectors been in place all along. After training replaces the item
    /// vectors, a session built from the old ones points nowhere in the new space; this
    /// recomputes it (`None` when no event touched an item with a vector).
    pub fn session_from<'v>(
        events: &[Event],
        mut vector: impl FnMut(&str) -> Option<&'v [f32]>,
        params: &SessionParams,
    ) -> Option<SessionVector> {
        let mut replay = UserState::default();
        for e in events {
            replay.apply(e, vector(&e.item_id), params);
        }
        replay.session
    }

    /// How many events were applied to this state (the sum of the per-kind counters).
    pub fn event_count(&self) -> u64 {
        let c = &self.counters;
        c.view + c.click + c.dwell + c.add_to_cart + c.purchase + c.rating
    }

    /// The norm of the session vector's direction-carrying sum divided by its weight:
    /// 1 when every event pointed the same way, near 0 when they cancel out.
    pub fn session_vector_norm(&self) -> f64 {
        match &self.session {
            Some(s) if s.weight > 0.0 => f64::from(crate::vector::norm(&s.sum)) / s.weight,
            _ => 0.0,
        }
    }

    /// Whether the engine knows nothing personal about the user yet.
    pub fn is_cold(&self) -> bool {
        self.long_term.is_none() && self.session.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(item: &str, kind: EventType, t: i64) -> Event {
        Event {
            user_id: "u".into(),
            item_id: item.into(),
            kind,
            value: None,
            timestamp_ms: t,
            recommendation_id: None,
        }
    }

    #[test]
    fn counters_recent_and_purchased() {
        let p = SessionParams {
            recent_capacity: 2,
            ..Default::default()
        };
        let mut u = UserState::default();
        u.apply(&ev("a", EventType::View, 1), None, &p);
        u.apply(&ev("b", EventType::Purchase, 2), None, &p);
        u.apply(&ev("c", EventType::Click, 3), None, &p);
        u.apply(&ev("b", EventType::View, 4), None, &p);
        assert_eq!(u.counters.view, 2);
        assert_eq!(u.recent, ["b", "c"]);
        assert!(u.purchased.contains("b"));
        assert!(u.session.is_none() && u.is_cold());
    }

    #[test]
    fn session_vector_is_a_decayed_weighted_average() {
        let p = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let mut u = UserState::default();
        // a click (weight 2) on x, then one half-life later a view (weight 1) on y:
        // the click has decayed to weight 1, so the two count equally.
        u.apply(&ev("x", EventType::Click, 0), Some(&[2.0, 0.0]), &p);
        u.apply(&ev("y", EventType::View, 1000), Some(&[0.0, 5.0]), &p);
        let s = u.session.as_ref().unwrap();
        assert!((s.weight - 2.0).abs() < 1e-6);
        assert!((s.sum[0] - 1.0).abs() < 1e-6 && (s.sum[1] - 1.0).abs() < 1e-6);
        let d = s.direction().unwrap();
        assert!((d[0] - d[1]).abs() < 1e-6);
        assert!((s.weight_at(2000, &p) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn out_of_order_events_count_at_their_decayed_weight() {
        let p = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let mut u = UserState::default();
        u.apply(&ev("y", EventType::View, 1000), Some(&[0.0, 1.0]), &p);
        u.apply(&ev("x", EventType::Click, 0), Some(&[1.0, 0.0]), &p);
        let s = u.session.as_ref().unwrap();
        assert_eq!(s.updated_ms, 1000);
        assert!((s.sum[0] - 1.0).abs() < 1e-6 && (s.sum[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn session_from_replays_the_events_with_other_vectors() {
        let p = SessionParams {
            half_life_seconds: 1.0,
            ..Default::default()
        };
        let events = [
            ev("x", EventType::Click, 0),
            ev("y", EventType::View, 1000),
            ev("gone", EventType::Purchase, 1500),
        ];
        let old = |id: &str| match id {
            "x" => Some(&[1.0f32, 0.0][..]),
            "y" => Some(&[0.0f32, 1.0][..]),
            _ => None,
        };
        let mut live = UserState::default();
        for e in &events {
            live.apply(e, old(&e.item_id), &p);
        }
        // the same vectors give exactly the live session
        assert_eq!(UserState::session_from(&events, old, &p), live.session);
        assert_eq!(live.event_count(), 3);
        // new vectors: x and y swapped axes, so the session's direction swaps too
        let new = |id: &str| match id {
            "x" => Some(&[0.0f32, 3.0][..]),
            "y" => Some(&[2.0f32, 0.0][..]),
            _ => None,
        };
        let rebuilt = UserState::session_from(&events, new, &p).unwrap();
        let live = live.session.unwrap();
        assert_eq!(
            (rebuilt.weight, rebuilt.updated_ms),
            (live.weight, live.updated_ms)
        );
        assert!((rebuilt.sum[0] - live.sum[1]).abs() < 1e-6);
        assert!((rebuilt.sum[1] - live.sum[0]).abs() < 1e-6);
        // no vectors at all: no session
        assert_eq!(UserState::session_from(&events, |_| None, &p), None);
    }

    #[test]
    fn zero_weight_events_leave_the_session_alone() {
        let p = SessionParams::default();
        let mut u = UserState::default();
        let mut e = ev("x", EventType::Rating, 0);
        e.value = Some(1.0);
        u.apply(&e, Some(&[1.0, 0.0]), &p);
        assert!(u.session.is_none());
        assert_eq!(u.counters.rating, 1);
    }
}
