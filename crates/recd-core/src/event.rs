//! Events: what a user did to an item, and how much each kind of event weighs.
//!
//! Events are validated here (types, ranges, ids, timestamp forms) so that `/v1/events`,
//! `recd import events` and the replay all accept exactly the same inputs.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ValidationError;
use crate::id::validate_id;
use crate::invalid;

/// The longest dwell accepted, in seconds (a day).
pub const MAX_DWELL_SECONDS: f64 = 86_400.0;

/// How far in the future (by the receiver's clock) an event timestamp may lie by default:
/// five minutes of clock skew between a client and the server.
pub const DEFAULT_MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The item was shown in full (a detail page).
    View,
    /// The item was clicked.
    Click,
    /// The user stayed on the item for `value` seconds.
    Dwell,
    /// The item went into the cart.
    AddToCart,
    /// The item was bought; it is never recommended to this user again.
    Purchase,
    /// The user rated the item `value` (0.5–5).
    Rating,
    /// The user said they do not want the item: it never comes back for them, and the
    /// session vector moves away from it (a negative weight).
    Dislike,
    /// The user hid the item: it never comes back for them; no other effect.
    Hide,
    /// The user passed over the item (scrolled past, swiped on): a weak negative that
    /// moves the session a little away from it but does not exclude it, since a skip says
    /// "not now" more often than "never".
    Skip,
}

impl EventType {
    /// Every kind, in a fixed order.
    pub const ALL: [EventType; 9] = [
        EventType::View,
        EventType::Click,
        EventType::Dwell,
        EventType::AddToCart,
        EventType::Purchase,
        EventType::Rating,
        EventType::Dislike,
        EventType::Hide,
        EventType::Skip,
    ];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::View => "view",
            EventType::Click => "click",
            EventType::Dwell => "dwell",
            EventType::AddToCart => "add_to_cart",
            EventType::Purchase => "purchase",
            EventType::Rating => "rating",
            EventType::Dislike => "dislike",
            EventType::Hide => "hide",
            EventType::Skip => "skip",
        }
    }

    /// Whether the event says "never show me this again" whatever the configuration
    /// (`dislike`, `hide`): it always excludes the item for the user, and training never
    /// counts the pair as a positive interaction.
    pub fn is_rejection(self) -> bool {
        matches!(self, EventType::Dislike | EventType::Hide)
    }

    /// Parses the API name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = ValidationError;

    /// [`EventType::parse`] with the error message the API gives for an unknown type.
    fn from_str(s: &str) -> Result<EventType, ValidationError> {
        match EventType::parse(s) {
            Some(kind) => Ok(kind),
            None => invalid!(
                "unknown event type '{s}' (view, click, dwell, add_to_cart, purchase, rating, dislike, hide, skip)"
            ),
        }
    }
}

/// One validated event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who.
    pub user_id: String,
    /// What.
    pub item_id: String,
    /// Which kind of event.
    pub kind: EventType,
    /// Seconds for dwell, 0.5–5 for rating; otherwise optional and unused by the engine.
    pub value: Option<f64>,
    /// When, in milliseconds since the Unix epoch (the server's clock if the client gave none).
    pub timestamp_ms: i64,
    /// The recommendation this event answers, for attribution.
    pub recommendation_id: Option<String>,
}

impl Event {
    /// Parses one event from JSON; `now_ms` is used when it has no timestamp.
    ///
    /// A timestamp more than `max_future_ms` after `now_ms` is refused: time-decayed
    /// popularity weighs an event by its timestamp, so a single event dated in the far
    /// future would otherwise outweigh every real one for good.
    pub fn from_json(
        value: &Value,
        now_ms: i64,
        max_future_ms: i64,
    ) -> Result<Event, ValidationError> {
        let Value::Object(map) = value else {
            return invalid!("an event must be a JSON object");
        };
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "user_id" | "item_id" | "type" | "value" | "timestamp" | "recommendation_id"
            ) {
                return invalid!("unknown event field '{key}'");
            }
        }
        let string = |key: &str| -> Result<String, ValidationError> {
            match map.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => invalid!("'{key}' must be a string"),
                None => invalid!("'{key}' is required"),
            }
        };
        let user_id = string("user_id")?;
        validate_id(&user_id, "user_id")?;
        let item_id = string("item_id")?;
        validate_id(&item_id, "item_id")?;
        let kind: EventType = string("type")?.parse()?;
        let value = match map.get("value") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() => Some(n),
                _ => return invalid!("'value' must be a finite number"),
            },
        };
        check_value(kind, value)?;
        let timestamp_ms = match map.get("timestamp") {
            None | Some(Value::Null) => now_ms,
            Some(v) => parse_timestamp(v)?,
        };
        if timestamp_ms > now_ms.saturating_add(max_future_ms) {
            return invalid!(
                "'timestamp' is {} s in the future (at most {} s of clock skew is accepted)",
                // saturating: any clock and skew a caller passes must give an answer
                timestamp_ms.saturating_sub(now_ms) / 1000,
                max_future_ms / 1000
            );
        }
        let recommendation_id = match map.get("recommendation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                validate_id(s, "recommendation_id")?;
                Some(s.clone())
            }
            Some(_) => return invalid!("'recommendation_id' must be a string"),
        };
        Ok(Event {
            user_id,
            item_id,
            kind,
            value,
            timestamp_ms,
            recommendation_id,
        })
    }
}

fn check_value(kind: EventType, value: Option<f64>) -> Result<(), ValidationError> {
    match (kind, value) {
        (EventType::Dwell, None) => invalid!("a dwell event needs 'value' (seconds)"),
        (EventType::Dwell, Some(v)) if !(0.0..=MAX_DWELL_SECONDS).contains(&v) => {
            invalid!("dwell 'value' must be between 0 and {MAX_DWELL_SECONDS} seconds, got {v}")
        }
        (EventType::Rating, None) => invalid!("a rating event needs 'value' (0.5 to 5)"),
        (EventType::Rating, Some(v)) if !(0.5..=5.0).contains(&v) => {
            invalid!("rating 'value' must be between 0.5 and 5, got {v}")
        }
        (_, Some(v)) if v < 0.0 => invalid!("'value' must not be negative"),
        _ => Ok(()),
    }
}

/// The latest timestamp accepted: 9999-12-31T23:59:59.999Z, in epoch milliseconds.
/// Timestamps run from 1970 to 9999: anything else is a unit mistake (seconds vs ms) or garbage.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Accepts an RFC 3339 string or a number of milliseconds since the epoch.
pub fn parse_timestamp(v: &Value) -> Result<i64, ValidationError> {
    let ms = match v {
        Value::Number(n) => match n.as_i64() {
            Some(ms) => ms,
            None => return invalid!("'timestamp' must be an integer number of milliseconds"),
        },
        Value::String(s) => rfc3339_ms(s)?,
        _ => return invalid!("'timestamp' must be an RFC 3339 string or epoch milliseconds"),
    };
    check_timestamp(ms)
}

/// Accepts a timestamp written as text, where a number cannot be told from a string (a
/// CSV cell): epoch milliseconds as an integer, else RFC 3339. The same range as
/// [`parse_timestamp`].
pub fn parse_timestamp_text(s: &str) -> Result<i64, ValidationError> {
    let ms = match s.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => rfc3339_ms(s)?,
    };
    check_timestamp(ms)
}

/// `ms` if it lies in 1970..=9999 ([`MAX_TIMESTAMP_MS`]), the range every timestamp is held to.
pub fn check_timestamp(ms: i64) -> Result<i64, ValidationError> {
    if !(0..=MAX_TIMESTAMP_MS).contains(&ms) {
        return invalid!("'timestamp' is out of range (1970 to 9999)");
    }
    Ok(ms)
}

fn rfc3339_ms(s: &str) -> Result<i64, ValidationError> {
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Ok((t.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(e) => invalid!("'timestamp' is not RFC 3339: {e}"),
    }
}

/// How strongly each kind of event says "the user wants this": the one definition of an
/// event's weight, used by the session vector and popularity when events arrive (both
/// backends), by ALS as its confidence input `w` (`c = 1 + alpha · w`), and by the replay.
/// Configurable (`[model.session.weights]`); the defaults rank intent: purchase > cart >
/// click > view.
///
/// Defaults and why:
/// - the funnel `view 1 < click 2 < add_to_cart 4 < purchase 8`: each step is a few times
///   rarer and a stronger statement than the one before, so it doubles the weight (ALS's
///   `alpha` absorbs the scale);
/// - `dwell`: 0.05 per second, capped at 6 (two minutes, between cart and purchase): a
///   long read is strong interest, a tab left open for an hour is not 30 times stronger;
/// - `rating`: `rating_per_star · (stars − rating_neutral)` with neutral 0, i.e. the stars:
///   a rating says the user watched or used the item, which is what implicit feedback
///   learns from; low ratings are positives of low weight. Set `rating_neutral = 2.5` to
///   make ratings at or below it carry nothing (`dislike` is the explicit negative).
///   A data set whose values all weigh 0 under the settings (ratings all ≤ the neutral)
///   teaches nothing: `recd train` and `recd eval` warn about it.
///
/// The weight is signed: positive for interest, 0 for no signal (a `hide`, a rating at or
/// below `rating_neutral`), negative for disinterest (`dislike`, weakly `skip`). Only a
/// positive weight makes an item more popular or a training positive; a negative one
/// moves the user's session vector away from the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventWeights {
    /// Weight of a view.
    pub view: f64,
    /// Weight of a click.
    pub click: f64,
    /// Weight per second of dwell...
    pub dwell_per_second: f64,
    /// ...capped at this, so that a tab left open does not dominate.
    pub dwell_max: f64,
    /// Weight of an add-to-cart.
    pub add_to_cart: f64,
    /// Weight of a purchase.
    pub purchase: f64,
    /// Ratings at or below this carry no positive signal...
    pub rating_neutral: f64,
    /// ...and each star above it weighs this much.
    pub rating_per_star: f64,
    /// Weight of a dislike (≤ 0): how hard it pushes the session away from the item.
    pub dislike: f64,
    /// Weight of a skip (≤ 0): a weak push away.
    pub skip: f64,
}

impl Default for EventWeights {
    fn default() -> Self {
        Self {
            view: 1.0,
            click: 2.0,
            dwell_per_second: 0.05,
            dwell_max: 6.0,
            add_to_cart: 4.0,
            purchase: 8.0,
            rating_neutral: 0.0,
            rating_per_star: 1.0,
            dislike: -4.0,
            skip: -0.5,
        }
    }
}

impl EventWeights {
    /// The signed weight of one event (see the type's doc). Positive kinds never weigh
    /// less than 0, negative ones never more; a value that is absent or not finite counts
    /// as 0 seconds or stars.
    pub fn weight(&self, kind: EventType, value: Option<f64>) -> f64 {
        let value = value.filter(|v| v.is_finite()).unwrap_or(0.0);
        match kind {
            EventType::View => self.view.max(0.0),
            EventType::Click => self.click.max(0.0),
            EventType::Dwell => (value * self.dwell_per_second).min(self.dwell_max).max(0.0),
            EventType::AddToCart => self.add_to_cart.max(0.0),
            EventType::Purchase => self.purchase.max(0.0),
            EventType::Rating => ((value - self.rating_neutral) * self.rating_per_star).max(0.0),
            EventType::Dislike => self.dislike.min(0.0),
            EventType::Hide => 0.0,
            EventType::Skip => self.skip.min(0.0),
        }
    }

    /// Checks a configuration: every weight finite, the positive kinds ≥ 0 and the
    /// negative ones (`dislike`, `skip`) ≤ 0. The message names the key.
    pub fn check(&self) -> Result<(), ValidationError> {
        let positive = [
            ("view", self.view),
            ("click", self.click),
            ("dwell_per_second", self.dwell_per_second),
            ("dwell_max", self.dwell_max),
            ("add_to_cart", self.add_to_cart),
            ("purchase", self.purchase),
            ("rating_per_star", self.rating_per_star),
        ];
        for (key, w) in positive {
            if !(w.is_finite() && w >= 0.0) {
                return invalid!("weights.{key} must be a finite number >= 0, got {w}");
            }
        }
        if !self.rating_neutral.is_finite() {
            return invalid!("weights.rating_neutral must be finite");
        }
        for (key, w) in [("dislike", self.dislike), ("skip", self.skip)] {
            if !(w.is_finite() && w <= 0.0) {
                return invalid!("weights.{key} must be a finite number <= 0, got {w}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Found by `cargo fuzz run event` (fuzz/): a clock far in the past made the "seconds in
    /// the future" of the message overflow (a panic in a debug build).
    #[test]
    fn any_clock_and_skew_give_an_answer() {
        let v = json!({"user_id":"u1","item_id":"sku-1","type":"dwell","value":12,"timestamp":1767225000000i64});
        let e = Event::from_json(&v, i64::MIN, 0).unwrap_err();
        assert!(e.message.contains("in the future"), "{}", e.message);
        assert!(Event::from_json(&v, i64::MAX, i64::MAX).is_ok());
    }

    #[test]
    fn parses_events_with_both_timestamp_forms() {
        let e = Event::from_json(
            &json!({"user_id":"u1","item_id":"i1","type":"dwell","value":12.5,"timestamp":"2024-01-01T00:00:01Z"}),
            1_704_067_201_000,
            0,
        )
        .unwrap();
        assert_eq!(e.kind, EventType::Dwell);
        assert_eq!(e.timestamp_ms, 1_704_067_201_000);
        let e =
            Event::from_json(&json!({"user_id":"u1","item_id":"i1","type":"view"}), 7, 0).unwrap();
        assert_eq!(e.timestamp_ms, 7);
        let e = Event::from_json(
            &json!({"user_id":"u","item_id":"i","type":"click","timestamp":5}),
            7,
            0,
        )
        .unwrap();
        assert_eq!(e.timestamp_ms, 5);
    }

    #[test]
    fn rejects_bad_events() {
        let bad = [
            (
                json!({"user_id":"u","item_id":"i","type":"like"}),
                "unknown event type",
            ),
            (
                json!({"user_id":"u","item_id":"i","type":"rating","value":6}),
                "between 0.5 and 5",
            ),
            (
                json!({"user_id":"u","item_id":"i","type":"rating"}),
                "needs 'value'",
            ),
            (
                json!({"user_id":"u","item_id":"i","type":"dwell","value":-1}),
                "between 0 and",
            ),
            (
                json!({"user_id":"u","item_id":"i","type":"view","extra":1}),
                "unknown event field",
            ),
            (json!({"user_id":"","item_id":"i","type":"view"}), "empty"),
            (
                json!({"user_id":"u","type":"view"}),
                "'item_id' is required",
            ),
            (
                json!({"user_id":"u","item_id":"i","type":"view","timestamp":"yesterday"}),
                "RFC 3339",
            ),
            (
                json!({"user_id":"u","item_id":"i","type":"view","timestamp":-5}),
                "out of range",
            ),
            (
                json!({"user_id":1,"item_id":"i","type":"view"}),
                "must be a string",
            ),
        ];
        for (v, needle) in bad {
            let err = Event::from_json(&v, 0, DEFAULT_MAX_FUTURE_MS).unwrap_err();
            assert!(err.message.contains(needle), "{v}: {}", err.message);
        }
    }

    #[test]
    fn timestamps_past_the_allowed_skew_are_refused() {
        let now = 1_704_067_200_000;
        let at = |t: serde_json::Value| {
            Event::from_json(
                &json!({"user_id":"u","item_id":"i","type":"view","timestamp":t}),
                now,
                DEFAULT_MAX_FUTURE_MS,
            )
        };
        assert!(at(json!(now + DEFAULT_MAX_FUTURE_MS)).is_ok());
        let err = at(json!(now + DEFAULT_MAX_FUTURE_MS + 1)).unwrap_err();
        assert!(err.message.contains("in the future"), "{}", err.message);
        let err = at(json!("9999-12-31T23:59:59Z")).unwrap_err();
        assert!(err.message.contains("in the future"), "{}", err.message);
        // the past is always fine
        assert!(at(json!("1970-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn text_timestamps_take_epoch_ms_or_rfc3339_in_the_same_range() {
        assert_eq!(parse_timestamp_text("1000"), Ok(1000));
        assert_eq!(
            parse_timestamp_text("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_timestamp_text(&MAX_TIMESTAMP_MS.to_string()),
            Ok(MAX_TIMESTAMP_MS)
        );
        for bad in [
            "-5",
            "253402300800000",
            "1969-12-31T23:59:59Z",
            "yesterday",
            "",
        ] {
            assert!(parse_timestamp_text(bad).is_err(), "{bad}");
        }
        assert_eq!(check_timestamp(0), Ok(0));
        assert!(check_timestamp(-1).is_err());
    }

    #[test]
    fn event_types_parse_and_print_their_api_names() {
        for t in EventType::ALL {
            assert_eq!(t.to_string().parse::<EventType>(), Ok(t));
        }
        let err = "like".parse::<EventType>().unwrap_err();
        assert!(err.message.contains("unknown event type 'like'"), "{err}");
    }

    #[test]
    fn weights_rank_intent_and_cap_dwell() {
        let w = EventWeights::default();
        assert!(w.weight(EventType::Purchase, None) > w.weight(EventType::AddToCart, None));
        assert!(w.weight(EventType::AddToCart, None) > w.weight(EventType::Click, None));
        assert!(w.weight(EventType::Click, None) > w.weight(EventType::View, None));
        assert_eq!(w.weight(EventType::Dwell, Some(3600.0)), w.dwell_max);
        assert_eq!(w.weight(EventType::Dwell, Some(10.0)), 0.5);
        assert_eq!(w.weight(EventType::Rating, Some(2.0)), 2.0);
        assert_eq!(w.weight(EventType::Rating, Some(f64::NAN)), 0.0);
        let neutral = EventWeights {
            rating_neutral: 2.5,
            ..EventWeights::default()
        };
        assert_eq!(neutral.weight(EventType::Rating, Some(2.0)), 0.0);
        assert_eq!(neutral.weight(EventType::Rating, Some(5.0)), 2.5);
    }

    #[test]
    fn negative_events_weigh_below_zero_and_hide_weighs_nothing() {
        let w = EventWeights::default();
        assert!(w.weight(EventType::Dislike, None) < w.weight(EventType::Skip, None));
        assert!(w.weight(EventType::Skip, None) < 0.0);
        assert_eq!(w.weight(EventType::Hide, None), 0.0);
        // a misconfigured sign is refused by `check`, and clamped by `weight` meanwhile
        let bad = EventWeights {
            dislike: 1.0,
            ..EventWeights::default()
        };
        assert!(bad.check().unwrap_err().message.contains("weights.dislike"));
        assert_eq!(bad.weight(EventType::Dislike, None), 0.0);
        let bad = EventWeights {
            click: -1.0,
            ..EventWeights::default()
        };
        assert!(bad.check().unwrap_err().message.contains("weights.click"));
        assert!(EventWeights::default().check().is_ok());
        assert!(EventType::Dislike.is_rejection() && EventType::Hide.is_rejection());
        assert!(!EventType::Skip.is_rejection() && !EventType::Purchase.is_rejection());
    }
}
