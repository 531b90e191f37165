//! The embedded backend's user states, in lock-striped shards.
//!
//! Reads of one user take one shard's mutex for the time of a clone; writers are already
//! serialized by the store's write lock, so the shards only keep readers of different
//! users from contending with each other.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::Mutex;
use recd_core::UserState;

const SHARDS: usize = 64;

/// User id → state.
#[derive(Debug)]
pub struct Users {
    shards: Vec<Mutex<HashMap<String, UserState>>>,
    hasher: RandomState,
}

impl Default for Users {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Users {
    fn shard(&self, id: &str) -> &Mutex<HashMap<String, UserState>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// A copy of the user's state.
    pub fn get(&self, id: &str) -> Option<UserState> {
        self.shard(id).lock().get(id).cloned()
    }

    /// Sets the user's state.
    pub fn put(&self, id: &str, state: UserState) {
        self.shard(id).lock().insert(id.to_string(), state);
    }

    /// Forgets the user; whether they existed.
    pub fn remove(&self, id: &str) -> bool {
        self.shard(id).lock().remove(id).is_some()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
