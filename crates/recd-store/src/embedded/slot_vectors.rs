//! The catalog's item vectors by slot, in one contiguous array (`dim` floats per slot).
//!
//! Why beside the items: every event's fold-in reads the vectors of up to
//! `recent_capacity` items of a 100k catalog, and reached through `Arc<Item>` each costs two
//! dependent cache misses (the item, then its `Vec<f32>`); here it is one, at
//! `slot × dim`. The price is a second copy of each vector (`dim × 4` bytes per slot).
//!
//! The table is kept by [`super::catalog::Catalog`], whose every vector write (put, set,
//! remove) updates it, so it always equals the live items' vectors.

/// Slot → vector of `dim` floats; slots without one (no vector, deleted, past the end)
/// read as `None`.
#[derive(Debug)]
pub struct SlotVectors {
    dim: usize,
    /// `dim` floats per slot; a slot without a vector holds zeros.
    data: Vec<f32>,
    /// Whether each slot holds a vector.
    present: Vec<bool>,
}

impl SlotVectors {
    /// An empty table of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
            present: Vec::new(),
        }
    }

    /// The vector of `slot`, if it has one.
    pub fn get(&self, slot: u32) -> Option<&[f32]> {
        let i = slot as usize;
        if !self.present.get(i).copied().unwrap_or(false) {
            return None;
        }
        self.data.get(i * self.dim..(i + 1) * self.dim)
    }

    /// Sets (`Some`) or clears (`None`) the vector of `slot`. A vector of another
    /// dimension is not kept (the slot reads as `None`): the catalog answers those from
    /// the item itself.
    pub fn set(&mut self, slot: u32, vector: Option<&[f32]>) {
        let i = slot as usize;
        let keep = vector.filter(|v| v.len() == self.dim);
        if keep.is_none() && i >= self.present.len() {
            return;
        }
        if self.present.len() <= i {
            // Grow by at least half, as a `Vec` would: slots arrive one by one.
            let slots = (i + 1).max(self.present.len() + self.present.len() / 2);
            self.present.resize(slots, false);
            self.data.resize(slots * self.dim, 0.0);
        }
        let row = &mut self.data[i * self.dim..(i + 1) * self.dim];
        match keep {
            Some(v) => row.copy_from_slice(v),
            None => row.fill(0.0),
        }
        self.present[i] = keep.is_some();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear_and_other_dimensions() {
        let mut t = SlotVectors::new(2);
        assert_eq!(t.get(0), None);
        t.set(3, Some(&[1.0, 2.0][..]));
        t.set(0, Some(&[5.0, 6.0][..]));
        assert_eq!(t.get(3), Some(&[1.0, 2.0][..]));
        assert_eq!(t.get(0), Some(&[5.0, 6.0][..]));
        assert_eq!(t.get(1), None);
        assert_eq!(t.get(1000), None);
        t.set(3, Some(&[3.0, 4.0][..]));
        assert_eq!(t.get(3), Some(&[3.0, 4.0][..]));
        t.set(3, None);
        assert_eq!(t.get(3), None);
        t.set(0, Some(&[1.0, 2.0, 3.0][..]));
        assert_eq!(t.get(0), None, "a vector of another dimension is not kept");
        t.set(50, None);
        assert_eq!(t.get(50), None);
    }
}
