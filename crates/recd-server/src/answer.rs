//! The engine's answers as types: what a recommendation, a user, an item's details and a
//! write-back return, serialized into API.md's shapes by serde (no hand-built JSON on the
//! request path), and what the cache keeps of them.
//!
//! Items travel as `Arc<Item>` (shared with the store, never deep-copied on the request
//! path); [`ItemFields`] serializes one in the API's form (id + fields, no vector), while the
//! cache keeps a copy without the vector ([`without_vector`]) in the item's own serde form.
//!
//! Every answer derives `utoipa::ToSchema`: the OpenAPI document (`crate::openapi`) takes its
//! response schemas from these types, and the e2e suite checks every answer against it.

use std::sync::Arc;

use recd_core::pipeline::Ranked;
use recd_core::{Counters, Item, UserState};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

/// How a list was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// From the user's (or, for similar items, the item's) vector.
    Personalized,
    /// The user is cold (or the item has no vector): popular items.
    Popular,
}

impl Source {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Personalized => "personalized",
            Source::Popular => "popular",
        }
    }
}

/// An item in the API's form: `{"id", ...fields}` without the vector.
#[derive(Debug, Clone)]
pub struct ItemFields(pub Arc<Item>);

impl Serialize for ItemFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.fields.len() + 1))?;
        serialize_item(&mut map, &self.0)?;
        map.end()
    }
}

/// `"id"` and the fields of `item` (as `Item::to_json(false)` writes them, without building a
/// `Value`), into a map being serialized.
fn serialize_item<M: SerializeMap>(map: &mut M, item: &Item) -> Result<(), M::Error> {
    map.serialize_entry("id", &item.id)?;
    for (name, value) in &item.fields {
        map.serialize_entry(name, &value.to_json())?;
    }
    Ok(())
}

/// A copy of `item` without its vector: what caches keep and answers show.
pub fn without_vector(item: &Arc<Item>) -> Arc<Item> {
    if item.vector.is_none() {
        return Arc::clone(item);
    }
    Arc::new(Item {
        id: item.id.clone(),
        vector: None,
        fields: item.fields.clone(),
    })
}

/// One ranked item of an answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServedItem {
    /// The item id.
    pub id: String,
    /// Its score; non-increasing down the list.
    pub score: f64,
    /// Why it is here.
    pub reasons: Vec<String>,
    /// Its fields.
    pub item: ItemFields,
    /// What scoring saw (for the impression log); none when a cache answered.
    #[serde(skip)]
    #[schema(ignore)]
    pub signals: Option<recd_core::features::RankerInputs>,
}

impl From<Ranked> for ServedItem {
    fn from(r: Ranked) -> Self {
        ServedItem {
            id: r.item.id.clone(),
            score: r.score,
            reasons: r.reasons,
            item: ItemFields(r.item),
            signals: Some(r.signals),
        }
    }
}

/// What the cache keeps of a recommendation: the list and how it was built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedList {
    /// The ranked items, vectors stripped.
    pub items: Vec<CachedItem>,
    /// How the list was built.
    pub source: Source,
}

/// One ranked item as the cache keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedItem {
    /// The item (without its vector).
    pub item: Arc<Item>,
    /// Its score.
    pub score: f64,
    /// Why it is here.
    pub reasons: Vec<String>,
}

impl CachedList {
    /// The cacheable form of a ranked list.
    pub fn new(items: &[Ranked], source: Source) -> Self {
        CachedList {
            items: items
                .iter()
                .map(|r| CachedItem {
                    item: without_vector(&r.item),
                    score: r.score,
                    reasons: r.reasons.clone(),
                })
                .collect(),
            source,
        }
    }

    /// The items in the answer's form.
    pub fn served(&self) -> Vec<ServedItem> {
        self.items
            .iter()
            .map(|c| ServedItem {
                id: c.item.id.clone(),
                score: c.score,
                reasons: c.reasons.clone(),
                item: ItemFields(Arc::clone(&c.item)),
                signals: None,
            })
            .collect()
    }
}

/// Where a cached answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// This server's memory.
    L1,
    /// The shared Redis tier.
    L2,
}

/// Present when an answer came from a cache.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct CacheInfo {
    /// Which tier.
    pub tier: Tier,
    /// How old the list is.
    pub age_ms: i64,
}

/// A recommendation (`POST /v1/recommend`, `POST /v1/items/{id}/similar`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recommendation {
    /// Unique; events may cite it for attribution.
    pub recommendation_id: String,
    /// Whom it is for (absent for similar items).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub user_id: Option<String>,
    /// The items, best first.
    pub items: Vec<ServedItem>,
    /// How the list was built (also when it came from a cache).
    pub source: Source,
    /// Present when the list came from a cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cache: Option<CacheInfo>,
    /// The ranking strategy that built it.
    pub strategy: String,
    /// The experiment that assigned the user, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub experiment: Option<String>,
    /// The experiment's variant, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub variant: Option<String>,
    /// Time spent in the engine, in milliseconds.
    pub took_ms: f64,
    /// With `explain`: candidates, scores and timings per stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub stages: Option<Value>,
}

/// A user's counters in the API's form.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Counters)]
pub struct CountersView {
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
    /// Dislikes.
    pub dislike: u64,
    /// Hides.
    pub hide: u64,
    /// Skips.
    pub skip: u64,
    /// Total dwell seconds.
    pub dwell_seconds: f64,
}

impl From<&Counters> for CountersView {
    fn from(c: &Counters) -> Self {
        CountersView {
            view: c.view,
            click: c.click,
            dwell: c.dwell,
            add_to_cart: c.add_to_cart,
            purchase: c.purchase,
            rating: c.rating,
            dislike: c.dislike,
            hide: c.hide,
            skip: c.skip,
            dwell_seconds: c.dwell_seconds,
        }
    }
}

/// What the engine knows about a user (`GET /v1/users/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// The user id.
    pub user_id: String,
    /// Event counters.
    pub counters: CountersView,
    /// Distinct recently touched items, most recent first.
    pub recent_items: Vec<String>,
    /// Items bought, most recent first (at most `model.session.purchased_capacity`).
    pub purchased: Vec<String>,
    /// How many items are excluded from the user's recommendations for good (purchased,
    /// rated, disliked, hidden...; at most `model.session.excluded_capacity`).
    pub excluded_items: usize,
    /// Norm of the session vector (0 without one).
    pub session_vector_norm: f64,
    /// Whether training gave the user a long-term vector.
    pub has_long_term_vector: bool,
    /// Time of the latest event, ms since the epoch.
    pub last_event_ms: i64,
}

impl UserView {
    /// The view of `state`.
    pub fn new(user_id: String, state: &UserState) -> Self {
        UserView {
            user_id,
            counters: CountersView::from(&state.counters),
            recent_items: state.recent.iter().map(|id| id.to_string()).collect(),
            purchased: state.purchased.iter().map(|id| id.to_string()).collect(),
            excluded_items: state.excluded.len(),
            session_vector_norm: state.session_vector_norm(),
            has_long_term_vector: state.long_term.is_some(),
            last_event_ms: state.last_event_ms,
        }
    }
}

/// One item's details (`GET /v1/items/{id}`): the item and, with a catalog source, its row
/// there under `details` (`null` when the source has none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemDetails {
    /// The item, without its vector.
    pub item: Arc<Item>,
    /// Whether a catalog source was asked (then `details` is shown, `null` when it had no row).
    pub from_source: bool,
    /// The catalog source's row.
    pub details: Option<serde_json::Map<String, Value>>,
}

impl Serialize for ItemDetailsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let extra = usize::from(d.from_source);
        let mut map = serializer.serialize_map(Some(d.item.fields.len() + 1 + extra))?;
        serialize_item(&mut map, &d.item)?;
        if d.from_source {
            map.serialize_entry("details", &d.details)?;
        }
        map.end()
    }
}

/// [`ItemDetails`] in the API's flat form: `{"id", ...fields, "details"?}`.
#[derive(Debug, Clone, Copy)]
pub struct ItemDetailsView<'a>(pub &'a ItemDetails);

/// A page of `GET /v1/items`: items in id order (no vectors) and the cursor of the next page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemsPage {
    /// The items, `{"id", ...fields}`.
    pub items: Vec<ItemFields>,
    /// The cursor of the next page; `null` after the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A page of `GET /v1/users`: user ids in id order and the cursor of the next page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsersPage {
    /// The user ids.
    pub users: Vec<String>,
    /// The cursor of the next page; `null` after the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// What a vector write-back did (`PUT /v1/admin/vectors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct VectorsWritten {
    /// Item vectors replaced.
    pub items: usize,
    /// Users' long-term vectors set.
    pub users: usize,
    /// Item ids sent that the catalog does not have (skipped).
    pub unknown_items: usize,
}

// The item's fields depend on the data's schema, known only at run time: the document
// names `Item` and `ItemDetails` here and `crate::openapi::shapes` fills them in from the
// schema the server runs with.
impl utoipa::PartialSchema for ItemFields {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        crate::openapi::shapes::item_any()
    }
}

impl ToSchema for ItemFields {
    fn name() -> std::borrow::Cow<'static, str> {
        "Item".into()
    }
}

impl utoipa::PartialSchema for ItemDetails {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        crate::openapi::shapes::item_any()
    }
}

impl ToSchema for ItemDetails {
    fn name() -> std::borrow::Cow<'static, str> {
        "ItemDetails".into()
    }
}

/// `PUT /v1/items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Upserted {
    /// Items written.
    pub upserted: usize,
}

/// `POST /v1/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Accepted {
    /// Events applied.
    pub accepted: usize,
}

/// `GET /ready` when the backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    #[schema(value_type = String, pattern = "^ready$")]
    pub status: &'static str,
}

/// `POST /v1/admin/sessions/rebuild`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rebuilt {
    /// Users whose session vector was recomputed.
    pub rebuilt: usize,
}

/// `POST /v1/admin/models`: the number of a new model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NewVersion {
    /// `v<N>`.
    pub version: String,
}

/// `PUT /v1/admin/models/{version}/chunks/{index}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChunkStored {
    /// The version.
    pub version: String,
    /// The chunk's index.
    pub chunk: u32,
    /// Vectors it holds (items and users).
    pub vectors: usize,
}

/// `POST /v1/admin/models/{version}/live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MarkedLive {
    /// The version.
    pub version: String,
    /// Always true.
    pub live: bool,
}

/// `POST /v1/models/{version}/activate`: what switching to a version wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Activation {
    /// The version now live.
    pub version: String,
    /// Always true.
    pub live: bool,
    /// It was live already: nothing was written.
    pub already_live: bool,
    /// Item vectors written.
    pub items: usize,
    /// Item ids of the version the catalog no longer has (skipped).
    pub unknown_items: usize,
    /// Users' long-term vectors written.
    pub users: usize,
    /// Sessions rebuilt.
    pub sessions: usize,
}

/// One `{"id","vector"}` entry of a vector batch.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = IdVector)]
pub struct IdVectorRow {
    /// The item or user id.
    #[schema(min_length = 1, max_length = 256)]
    pub id: String,
    /// The vector.
    pub vector: Vec<f32>,
}

/// Item and user vectors (`GET /v1/admin/models/{version}/chunks/{index}`, and what `PUT`
/// of a chunk and `PUT /v1/admin/vectors` take).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Vectors)]
pub struct VectorRows {
    /// Item vectors.
    pub items: Vec<IdVectorRow>,
    /// Users' long-term vectors.
    pub users: Vec<IdVectorRow>,
}

impl VectorRows {
    /// The rows of (id, vector) lists.
    pub fn new(items: &[(String, Vec<f32>)], users: &[(String, Vec<f32>)]) -> Self {
        let rows = |list: &[(String, Vec<f32>)]| {
            list.iter()
                .map(|(id, vector)| IdVectorRow {
                    id: id.clone(),
                    vector: vector.clone(),
                })
                .collect()
        };
        VectorRows {
            items: rows(items),
            users: rows(users),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use recd_core::{FieldValue, Schema};
    use serde_json::json;

    use super::*;

    #[test]
    fn items_serialize_in_the_api_form_without_their_vector() {
        let item = Item::from_json(
            &json!({"id":"a","vector":[1.0,0.0,0.0],"category":["x","y"],"price":5}),
            &Schema::demo(3),
        )
        .unwrap();
        let item = Arc::new(item);
        let v = serde_json::to_value(ItemFields(Arc::clone(&item))).unwrap();
        assert_eq!(v, json!({"id":"a","category":["x","y"],"price":5}));
        let stripped = without_vector(&item);
        assert!(stripped.vector.is_none());
        assert_eq!(
            stripped.field("price"),
            Some(&FieldValue::Number(5.0)),
            "fields kept"
        );
        let d = ItemDetails {
            item: stripped,
            from_source: true,
            details: None,
        };
        assert_eq!(
            serde_json::to_value(ItemDetailsView(&d)).unwrap(),
            json!({"id":"a","category":["x","y"],"price":5,"details":null})
        );
    }

    #[test]
    fn a_cached_list_round_trips_through_serde() {
        let item = Arc::new(Item {
            id: "a".into(),
            vector: Some(vec![1.0]),
            fields: BTreeMap::new(),
        });
        let list = CachedList::new(
            &[Ranked {
                item,
                score: 0.5,
                reasons: vec!["why".into()],
                signals: Default::default(),
            }],
            Source::Popular,
        );
        let bytes = serde_json::to_vec(&list).unwrap();
        let back: CachedList = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.source, Source::Popular);
        assert_eq!(back.items[0].item.id, "a");
        assert!(back.items[0].item.vector.is_none());
        let served = serde_json::to_value(back.served()).unwrap();
        assert_eq!(
            served,
            json!([{"id":"a","score":0.5,"reasons":["why"],"item":{"id":"a"}}])
        );
    }
}
