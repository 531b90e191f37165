//! Attribute indexes of the embedded backend: filters become bitmaps of item slots.
//!
//! Tags, bools and text terms are inverted into roaring bitmaps (one per value or term);
//! numeric fields are columns indexed by slot. [`AttributeIndex::eval`] turns a
//! `recd_core::Filter` into the exact bitmap of matching slots, which the vector index
//! then searches *inside* (a pre-filter). Inside a conjunction, the bitmap conditions go
//! first and numeric ranges are checked only on the survivors when they are few — a
//! category + price filter costs a lookup per category item, not a scan of the catalog.

use std::collections::HashMap;
use std::ops::Bound;

use recd_core::filter::in_range;
use recd_core::text::distinct_terms;
use recd_core::{FieldType, FieldValue, Filter, Item, Schema};
use roaring::{MultiOps, RoaringBitmap};

/// When the running set of a conjunction holds fewer than 1/this of all items, numeric
/// ranges are checked per survivor instead of by scanning the column.
const LOOKUP_FRACTION: u64 = 16;

/// The inverted and columnar indexes over all live items.
#[derive(Debug, Default)]
pub struct AttributeIndex {
    /// Tag field → value → slots.
    tags: HashMap<String, HashMap<String, RoaringBitmap>>,
    /// Bool field → [false slots, true slots].
    bools: HashMap<String, [RoaringBitmap; 2]>,
    /// Numeric field → value by slot (NaN where absent).
    numbers: HashMap<String, Vec<f64>>,
    /// Text field → term → slots.
    text: HashMap<String, HashMap<String, RoaringBitmap>>,
    /// Every live slot.
    live: RoaringBitmap,
}

impl AttributeIndex {
    /// An empty index with a column for each numeric field of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let mut index = Self::default();
        for (name, ty) in &schema.fields {
            match ty {
                FieldType::Numeric => {
                    index.numbers.insert(name.clone(), Vec::new());
                }
                FieldType::Bool => {
                    index.bools.insert(name.clone(), Default::default());
                }
                FieldType::Tag => {
                    index.tags.insert(name.clone(), HashMap::new());
                }
                FieldType::Text => {
                    index.text.insert(name.clone(), HashMap::new());
                }
            }
        }
        index
    }

    /// Indexes `item` at `slot` (which must not hold another item).
    pub fn insert(&mut self, slot: u32, item: &Item) {
        self.live.insert(slot);
        for (field, value) in &item.fields {
            match value {
                FieldValue::Tags(tags) => {
                    let by_value = self.tags.entry(field.clone()).or_default();
                    for t in tags {
                        by_value.entry(t.clone()).or_default().insert(slot);
                    }
                }
                FieldValue::Bool(b) => {
                    self.bools.entry(field.clone()).or_default()[usize::from(*b)].insert(slot);
                }
                FieldValue::Number(n) => {
                    let column = self.numbers.entry(field.clone()).or_default();
                    let i = slot as usize;
                    if column.len() <= i {
                        column.resize(i + 1, f64::NAN);
                    }
                    column[i] = *n;
                }
                FieldValue::Text(text) => {
                    let by_term = self.text.entry(field.clone()).or_default();
                    for term in distinct_terms(text) {
                        by_term.entry(term).or_default().insert(slot);
                    }
                }
            }
        }
    }

    /// Removes `item` from `slot`.
    pub fn remove(&mut self, slot: u32, item: &Item) {
        self.live.remove(slot);
        for (field, value) in &item.fields {
            match value {
                FieldValue::Tags(tags) => {
                    if let Some(by_value) = self.tags.get_mut(field) {
                        for t in tags {
                            remove_from(by_value, t, slot);
                        }
                    }
                }
                FieldValue::Bool(b) => {
                    if let Some(sets) = self.bools.get_mut(field) {
                        sets[usize::from(*b)].remove(slot);
                    }
                }
                FieldValue::Number(_) => {
                    if let Some(cell) = self
                        .numbers
                        .get_mut(field)
                        .and_then(|c| c.get_mut(slot as usize))
                    {
                        *cell = f64::NAN;
                    }
                }
                FieldValue::Text(text) => {
                    if let Some(by_term) = self.text.get_mut(field) {
                        for term in distinct_terms(text) {
                            remove_from(by_term, &term, slot);
                        }
                    }
                }
            }
        }
    }

    /// The slots carrying `value` in the tag `field` (`None`: no item does).
    pub fn tag_slots(&self, field: &str, value: &str) -> Option<&RoaringBitmap> {
        self.tags.get(field)?.get(value)
    }

    /// Every value of the tag `field` with the slots carrying it.
    pub fn tag_values(&self, field: &str) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.tags
            .get(field)
            .into_iter()
            .flatten()
            .map(|(v, slots)| (v.as_str(), slots))
    }

    /// The exact set of live slots passing `filter`.
    pub fn eval(&self, filter: &Filter) -> RoaringBitmap {
        match filter {
            Filter::And(parts) => self.eval_and(parts),
            Filter::Or(parts) => parts.iter().map(|f| self.eval(f)).union(),
            Filter::Not(inner) => &self.live - self.eval(inner),
            Filter::TagAny { field, values } => self.tag_union(field, values),
            Filter::TagNone { field, values } => &self.live - self.tag_union(field, values),
            Filter::Range { field, min, max } => self.range_scan(field, *min, *max),
            Filter::Bool { field, value } => self
                .bools
                .get(field)
                .map(|sets| sets[usize::from(*value)].clone())
                .unwrap_or_default(),
            Filter::Text { field, terms } => self.text_all(field, terms),
        }
    }

    /// Slots whose `field` text holds at least one of `terms`, with how many of them.
    pub fn text_any_counts(&self, terms: &[String]) -> HashMap<u32, u32> {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for by_term in self.text.values() {
            for term in terms {
                if let Some(slots) = by_term.get(term) {
                    for slot in slots {
                        *counts.entry(slot).or_insert(0) += 1;
                    }
                }
            }
        }
        counts
    }

    fn eval_and(&self, parts: &[Filter]) -> RoaringBitmap {
        let (ranges, others): (Vec<&Filter>, Vec<&Filter>) = parts
            .iter()
            .partition(|f| matches!(f, Filter::Range { .. }));
        let mut acc: Option<RoaringBitmap> = None;
        for f in others {
            let set = self.eval(f);
            acc = Some(match acc {
                Some(a) => a & set,
                None => set,
            });
            if acc.as_ref().is_some_and(RoaringBitmap::is_empty) {
                return RoaringBitmap::new();
            }
        }
        let mut acc = acc.unwrap_or_else(|| self.live.clone());
        for f in ranges {
            let Filter::Range { field, min, max } = f else {
                continue;
            };
            if acc.len() * LOOKUP_FRACTION < self.live.len() {
                let column = self.numbers.get(field);
                acc.retain(|slot| {
                    column
                        .and_then(|c| c.get(slot as usize))
                        .is_some_and(|n| !n.is_nan() && in_range(*n, *min, *max))
                });
            } else {
                acc &= self.range_scan(field, *min, *max);
            }
        }
        acc
    }

    fn tag_union(&self, field: &str, values: &[String]) -> RoaringBitmap {
        let Some(by_value) = self.tags.get(field) else {
            return RoaringBitmap::new();
        };
        // One multi-way union, not a fold of `|`: the fold re-chose every container's
        // representation after each value (`ensure_correct_store` was 9 % of a filtered
        // KNN's CPU at 1M, the `|` 11 %), the multi-way union once at the end. Five values of
        // fifty at 1M: 82 µs against 176 (BENCHMARKS.md, session 25).
        values.iter().filter_map(|v| by_value.get(v)).union()
    }

    fn range_scan(&self, field: &str, min: Bound<f64>, max: Bound<f64>) -> RoaringBitmap {
        let Some(column) = self.numbers.get(field) else {
            return RoaringBitmap::new();
        };
        let hits = column
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_nan() && in_range(**n, min, max))
            .map(|(slot, _)| slot as u32);
        RoaringBitmap::from_sorted_iter(hits).unwrap_or_default()
    }

    fn text_all(&self, field: &str, terms: &[String]) -> RoaringBitmap {
        let Some(by_term) = self.text.get(field) else {
            return RoaringBitmap::new();
        };
        let mut acc: Option<RoaringBitmap> = None;
        for t in terms {
            let Some(slots) = by_term.get(t) else {
                return RoaringBitmap::new();
            };
            acc = Some(match acc {
                Some(a) => a & slots,
                None => slots.clone(),
            });
        }
        acc.unwrap_or_default()
    }
}

fn remove_from(map: &mut HashMap<String, RoaringBitmap>, key: &str, slot: u32) {
    if let Some(set) = map.get_mut(key) {
        set.remove(slot);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn eval_agrees_with_the_reference_semantics() {
        let schema = Schema::demo(2);
        let items: Vec<Item> = (0..200)
            .map(|i| {
                let v = json!({"id": format!("i{i}"), "category": [format!("c{}", i % 7), format!("c{}", i % 3)],
                               "price": i as f64, "in_stock": i % 2 == 0,
                               "title": if i % 5 == 0 { "red shoe" } else { "blue bag" }});
                let mut v = v;
                if i % 11 == 0 {
                    v.as_object_mut().unwrap().remove("price");
                }
                Item::from_json(&v, &schema).unwrap()
            })
            .collect();
        let mut index = AttributeIndex::new(&schema);
        for (slot, item) in items.iter().enumerate() {
            index.insert(slot as u32, item);
        }
        index.remove(3, &items[3]);
        let filters = [
            json!({"category":{"any":["c1"]},"price":{"gte":10,"lt":150}}),
            json!({"category":{"none":["c2","c0"]}}),
            json!({"not":{"price":{"lt":100}}}),
            json!({"or":[{"in_stock":true},{"title":{"match":"red"}}],"price":{"lte":20}}),
            json!({"title":{"match":"red shoe"},"category":{"any":"c4"}}),
            json!({}),
        ];
        for f in filters {
            let parsed = Filter::parse(&f, &schema).unwrap();
            let got: Vec<u32> = index.eval(&parsed).iter().collect();
            let want: Vec<u32> = (0..200u32)
                .filter(|s| *s != 3 && parsed.matches(&items[*s as usize]))
                .collect();
            assert_eq!(got, want, "{f}");
        }
    }
}
