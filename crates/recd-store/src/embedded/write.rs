//! The embedded backend's writes: each validates, takes the locks of what it changes,
//! computes the new values, appends its log record, publishes in memory and unlocks. The
//! caller then waits for the record's acknowledgement (`Sink::wait`) outside every lock,
//! which is where group commit batches concurrent writers.
//!
//! Locks: user shards (ascending) → catalog → popularity shards; item writers hold the
//! items lock before the catalog. A record is appended under the locks of everything it
//! carries whole (users, items), so the log orders those exactly as memory did.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use recd_core::item::check_vector;
use recd_core::{Event, Item, ItemUpsert, UpdateRule, UserState, ValidationError};

use super::apply::{apply_batch, item_slots, refold_if_due};
use super::log::Ticket;
use super::record::OpRef;
use super::{Inner, Sink};
use crate::{StoreError, StoreResult};

/// A write's result and the record to wait for (`None`: nothing was logged).
pub(super) type Written<T> = (T, Option<Ticket>);

impl Inner {
    pub(super) fn upsert(&self, batch: Vec<ItemUpsert>) -> StoreResult<Written<usize>> {
        let _items = self.items_lock.lock();
        // Last write wins within a batch, as if the items had come one by one.
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut items: Vec<Item> = Vec::with_capacity(batch.len());
        let mut given: Vec<String> = Vec::new();
        {
            let catalog = self.catalog.read();
            for ItemUpsert {
                mut item,
                keep_vector,
            } in batch
            {
                if item.vector.is_some() {
                    // The client gave it a vector: no longer a new item.
                    given.push(item.id.clone());
                }
                if keep_vector && item.vector.is_none() {
                    item.vector = catalog.get(&item.id).and_then(|old| old.vector.clone());
                }
                if let Some(v) = &item.vector {
                    check_vector(v, &self.schema).map_err(|e| {
                        ValidationError::new(format!("item '{}': {}", item.id, e.message))
                    })?;
                }
                match by_id.get(&item.id) {
                    Some(&i) => items[i] = item,
                    None => {
                        by_id.insert(item.id.clone(), items.len());
                        items.push(item);
                    }
                }
            }
        }
        if items.is_empty() {
            return Ok((0, None));
        }
        let ticket = self.sink.append(&OpRef::Items(&items))?;

        // Slots: an existing id keeps its slot (the index updates the node in place).
        let (mut next, existing): (u32, Vec<Option<u32>>) = {
            let catalog = self.catalog.read();
            (
                catalog.next_slot(),
                items.iter().map(|it| catalog.slot_of(&it.id)).collect(),
            )
        };
        let slots: Vec<u32> = existing
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let vectors: Vec<(u32, Vec<f32>)> = items
            .iter()
            .zip(&slots)
            .filter_map(|(it, slot)| it.vector.clone().map(|v| (*slot, v)))
            .collect();
        // Link vectors before publishing the items: a search never meets a published item
        // whose vector is missing, only (briefly) a vector whose item is not yet visible.
        self.index
            .insert_batch(&vectors)
            .map_err(|e| StoreError::Internal(format!("index rejected a validated vector: {e}")))?;
        let grown = self.partitions.values_of(&items);
        self.write_partitions(&slots, &items)?;
        let n = items.len();
        {
            let mut catalog = self.catalog.write();
            {
                let mut new_items = self.new_items.lock();
                for id in &given {
                    new_items.remove(id);
                }
            }
            for (item, slot) in items.into_iter().zip(slots) {
                if item.vector.is_none() {
                    self.index.remove(slot);
                }
                self.popularity.link(slot, &item.id);
                catalog.put(slot, item);
            }
        }
        self.partitions
            .grow(&self.catalog, grown.iter().map(String::as_str));
        Ok((n, Some(ticket)))
    }

    /// Tells the per-value graphs about `items` (each replacing what its slot holds in the
    /// catalog now), before the catalog publishes them (see `partitions`).
    fn write_partitions(&self, slots: &[u32], items: &[Item]) -> StoreResult<()> {
        if self.partitions.field().is_none() {
            return Ok(());
        }
        let olds: Vec<Option<Arc<Item>>> = {
            let catalog = self.catalog.read();
            slots.iter().map(|s| catalog.item_at(*s).cloned()).collect()
        };
        let changes = slots
            .iter()
            .zip(&olds)
            .zip(items)
            .map(|((slot, old), new)| (*slot, old.as_deref(), Some(new)));
        self.partitions.write(changes).map_err(|e| {
            StoreError::Internal(format!("partition rejected a validated vector: {e}"))
        })
    }

    pub(super) fn delete_item(&self, id: &str) -> StoreResult<Written<bool>> {
        let _items = self.items_lock.lock();
        if self.catalog.read().slot_of(id).is_none() {
            return Ok((false, None));
        }
        let ticket = self.sink.append(&OpRef::DeleteItem(id))?;
        let (slot, old) = {
            let mut catalog = self.catalog.write();
            let old = catalog.get(id).cloned();
            let slot = catalog.remove(id);
            if let Some(slot) = slot {
                self.popularity.unlink(slot);
            }
            self.new_items.lock().remove(id);
            (slot, old)
        };
        if let Some(slot) = slot {
            self.index.remove(slot);
            // Removes only: cannot fail.
            let _ = self.partitions.write([(slot, old.as_deref(), None)]);
        }
        Ok((true, Some(ticket)))
    }

    pub(super) fn set_item_vectors(
        &self,
        vectors: Vec<(String, Vec<f32>)>,
    ) -> StoreResult<Written<usize>> {
        self.write_item_vectors(vectors, false)
    }

    /// [`Store::set_new_item_vectors`](crate::Store::set_new_item_vectors).
    pub(super) fn set_new_item_vectors(
        &self,
        vectors: Vec<(String, Vec<f32>)>,
    ) -> StoreResult<Written<usize>> {
        self.write_item_vectors(vectors, true)
    }

    /// [`Store::touch_new_items`](crate::Store::touch_new_items): under the catalog's read
    /// lock, so that no vector write (which holds its write lock) comes in between the
    /// check that an item is new and the change of its list.
    pub(super) fn touch_new_items(
        &self,
        touches: &[crate::NewItemTouch],
    ) -> Vec<crate::NewItemList> {
        let capacity = self.settings.new_items.capacity;
        let catalog = self.catalog.read();
        let mut new_items = self.new_items.lock();
        let mut out: Vec<crate::NewItemList> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (item, user, weight) in touches {
            let Some(it) = catalog.get(item) else {
                continue;
            };
            let list = match new_items.entry(item.clone()) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) if it.vector.is_none() => v.insert(Vec::new()),
                Entry::Vacant(_) => continue,
            };
            recd_core::newitems::touch(list, user, *weight, capacity);
            match seen.get(item.as_str()) {
                Some(&at) => out[at].1 = list.clone(),
                None => {
                    seen.insert(item, out.len());
                    out.push((item.clone(), list.clone()));
                }
            }
        }
        out
    }

    /// Writes item vectors: training's (`provisional = false`: the items stop being new)
    /// or provisional ones (only to items still new, which stay new).
    fn write_item_vectors(
        &self,
        vectors: Vec<(String, Vec<f32>)>,
        provisional: bool,
    ) -> StoreResult<Written<usize>> {
        let _items = self.items_lock.lock();
        let mut updated: Vec<Item> = Vec::new();
        let mut slots = Vec::new();
        {
            let catalog = self.catalog.read();
            let mut new_items = self.new_items.lock();
            for (id, v) in vectors {
                check_vector(&v, &self.schema).map_err(|e| {
                    ValidationError::new(format!("vector of item '{id}': {}", e.message))
                })?;
                if let (Some(slot), Some(item)) = (catalog.slot_of(&id), catalog.get(&id)) {
                    if provisional {
                        if item.vector.is_some() && !new_items.contains_key(&id) {
                            continue;
                        }
                        new_items.entry(id.clone()).or_default();
                    } else {
                        new_items.remove(&id);
                    }
                    let mut item = Item::clone(item);
                    item.vector = Some(v);
                    updated.push(item);
                    slots.push(slot);
                }
            }
        }
        if updated.is_empty() {
            return Ok((0, None));
        }
        let ticket = self.sink.append(&OpRef::Items(&updated))?;
        self.write_partitions(&slots, &updated)?;
        let pairs: Vec<(u32, Vec<f32>)> = slots
            .iter()
            .zip(&updated)
            .filter_map(|(s, it)| it.vector.clone().map(|v| (*s, v)))
            .collect();
        self.index
            .insert_batch(&pairs)
            .map_err(|e| StoreError::Internal(format!("index rejected a validated vector: {e}")))?;
        let mut catalog = self.catalog.write();
        for (slot, (_, v)) in slots.iter().zip(pairs) {
            catalog.set_vector(*slot, v);
        }
        Ok((updated.len(), Some(ticket)))
    }

    pub(super) fn apply_events(&self, events: &[Event]) -> StoreResult<Option<Ticket>> {
        if events.is_empty() {
            return Ok(None);
        }
        let session = &self.settings.session;
        let now = crate::wall_clock_ms();
        let mut locked = self.users.lock(events.iter().map(|e| e.user_id.as_str()));
        let catalog = self.catalog.read();
        let slots = item_slots(events, &catalog);
        // Each increment with its item's slot. Only items of the catalog become popular:
        // ids that are not items would otherwise each leave a permanent entry behind.
        let increments: Vec<(&str, f64, u32)> = events
            .iter()
            .zip(&slots)
            .filter_map(|(e, slot)| {
                let weight = session.weights.weight(e.kind, e.value);
                let inc = self
                    .settings
                    .popularity
                    .log_increment(weight, e.timestamp_ms)?;
                Some((e.item_id.as_str(), inc, (*slot)?))
            })
            .collect();
        // Logged first, then applied: the record is the events (not the states they
        // make), so an append that fails leaves every state as it was, and once it is
        // appended nothing can fail. Applying in place then needs no copy of each user's
        // state (a few KB with 200 recent items): the copy and its drop were ~5 % of the
        // request workers' CPU at steady state (perf, 100k-item demo). The user locks are
        // held throughout, so no reader sees a state between the two.
        let mut ticket = self.sink.append_leading(&OpRef::Events {
            events,
            popularity: increments.iter().map(|&(id, inc, _)| (id, inc)).collect(),
            at_ms: now,
        })?;
        if self.sink.keeps_tail() {
            for (i, e) in events.iter().enumerate() {
                locked
                    .shard(&e.user_id)
                    .tail
                    .push_back((ticket.first + i as u64, e.clone()));
            }
        }
        // Each user's state, moved out of its shard for the batch and back after it.
        let mut states: HashMap<&str, UserState> = HashMap::new();
        for e in events {
            if let Entry::Vacant(v) = states.entry(e.user_id.as_str()) {
                v.insert(locked.take(&e.user_id).unwrap_or_default());
            }
        }
        apply_batch(&mut states, events, &slots, &catalog, session, now);
        let last = ticket.first + events.len() as u64 - 1;
        for (id, state) in states {
            locked.put(id, state, last);
        }
        drop(locked);
        // No user lock is held now: if this append leads, the group (its record and those
        // appended since) is written here.
        ticket.lead();
        // Popularity is logged as increments, which commute: no user lock needed. The
        // catalog's read lock keeps each item's slot (and so its ranking entry) stable.
        for (item, inc, slot) in increments {
            self.popularity.add(item, inc, Some(slot));
        }
        Ok(Some(ticket))
    }

    /// A copy of the user's state as it is now, its fold-in vector solved: a refold the
    /// user's events left due ([`apply_batch`]) is solved here and kept, under the user's
    /// shard lock and then the catalog's (the order every write takes them in), so that
    /// the user's next events and reads start from it.
    pub(super) fn user_state(&self, id: &str) -> Option<UserState> {
        self.users.with_mut(id, |entry| {
            entry.map(|e| {
                if e.state.refold_due() {
                    refold_if_due(&mut e.state, &self.catalog.read(), &self.settings.session);
                }
                e.state.clone()
            })
        })
    }

    pub(super) fn delete_user(&self, id: &str) -> StoreResult<Written<bool>> {
        let mut locked = self.users.lock([id]);
        if locked.get(id).is_none() {
            return Ok((false, None));
        }
        let ticket = self.sink.append(&OpRef::DeleteUser(id))?;
        let keeps_tail = self.sink.keeps_tail();
        let shard = locked.shard(id);
        shard.users.remove(id);
        if keeps_tail {
            shard.forgotten.insert(id.to_string(), ticket.first);
        }
        Ok((true, Some(ticket)))
    }

    /// Forgets the users of shard `shard` whose latest write is older than `cutoff_ms`,
    /// under that shard's lock only (one shard of [`super::users::SHARDS`]: bounded work,
    /// and writers of the other shards never wait). Their events stay in the log.
    pub(super) fn expire_shard(&self, shard: usize, cutoff_ms: i64) -> StoreResult<Written<usize>> {
        let mut guard = self.users.lock_shard(shard);
        let gone: Vec<String> = guard
            .users
            .iter()
            .filter(|(_, e)| e.state.active_ms < cutoff_ms)
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return Ok((0, None));
        }
        let ticket = self.sink.append(&OpRef::ExpireUsers(&gone))?;
        for id in &gone {
            guard.users.remove(id);
        }
        Ok((gone.len(), Some(ticket)))
    }

    pub(super) fn set_user_vectors(
        &self,
        vectors: Vec<(String, Vec<f32>)>,
    ) -> StoreResult<Written<usize>> {
        for (id, v) in &vectors {
            check_vector(v, &self.schema).map_err(|e| {
                ValidationError::new(format!("vector of user '{id}': {}", e.message))
            })?;
        }
        if vectors.is_empty() {
            return Ok((0, None));
        }
        let mut locked = self.users.lock(vectors.iter().map(|(id, _)| id.as_str()));
        let catalog = self.catalog.read();
        let mut states: Vec<(String, UserState)> = Vec::with_capacity(vectors.len());
        let now = crate::wall_clock_ms();
        for (id, v) in vectors {
            let mut state = locked.get(&id).cloned().unwrap_or_default();
            // The record carries the state whole, and a logged state is a solved one (its
            // encoding has no room for the mark): solved as the events left it, then given
            // its long-term vector, as when each event was solved at once.
            refold_if_due(&mut state, &catalog, &self.settings.session);
            state.set_long_term(v);
            state.active_ms = now;
            states.push((id, state));
        }
        let ticket = self.sink.append(&OpRef::Users(
            states.iter().map(|(id, s)| (id.as_str(), s)).collect(),
        ))?;
        let n = states.len();
        for (id, state) in states {
            locked.put(&id, state, ticket.first);
        }
        Ok((n, Some(ticket)))
    }

    /// [`Store::rebuild_sessions`](crate::Store::rebuild_sessions) for distinct `users`,
    /// one user shard at a time. A user's events are exact under the shard's lock: in
    /// memory, the memory log (appended under it); durable, redb's snapshot (read before
    /// locking, through the per-user index) plus the shard's tail of events logged since,
    /// minus what a deletion made someone else's.
    pub(super) fn rebuild_sessions(&self, users: &[String]) -> StoreResult<Written<usize>> {
        let ids: Vec<&str> = users.iter().map(String::as_str).collect();
        let snapshot = match &self.sink {
            Sink::Log(l) => Some(l.durable.user_events(&ids)?),
            Sink::Memory(_) => None,
        };
        let mut rebuilt = 0;
        let mut last = None;
        for group in self.users.by_shard(&ids) {
            let mut locked = self.users.lock(group.iter().copied());
            let mut histories: Vec<(&str, Vec<Event>)> = Vec::new();
            match &self.sink {
                Sink::Memory(log) => {
                    let log = log.lock();
                    for id in &group {
                        if locked.get(id).is_some() {
                            histories.push((id, log.user_events(id)));
                        }
                    }
                }
                Sink::Log(l) => {
                    let Some((absorbed, as_of)) = snapshot.as_ref() else {
                        return Err(StoreError::Internal("no snapshot to rebuild from".into()));
                    };
                    // If a checkpoint since the snapshot pruned this shard's tail past it,
                    // redb has what the tail lost: read this group again (under the lock,
                    // where no pruning can follow). Its mark is this group's only: other
                    // groups' users keep the older snapshot and need the tail from there.
                    let reread = if locked.shard(group[0]).tail_from > *as_of {
                        Some(l.durable.user_events(&group)?)
                    } else {
                        None
                    };
                    let (absorbed, as_of) = match &reread {
                        Some((again, at)) => (again, *at),
                        None => (absorbed, *as_of),
                    };
                    for id in &group {
                        if locked.get(id).is_none() {
                            continue;
                        }
                        let shard = locked.shard(id);
                        let after = shard.forgotten.get(*id).copied().unwrap_or(0);
                        let mut events: Vec<Event> = absorbed
                            .get(*id)
                            .into_iter()
                            .flatten()
                            .filter(|(seq, _)| *seq > after)
                            .map(|(_, e)| e.clone())
                            .collect();
                        events.extend(
                            shard
                                .tail
                                .iter()
                                .filter(|(seq, e)| *seq > as_of && *seq > after && e.user_id == *id)
                                .map(|(_, e)| e.clone()),
                        );
                        histories.push((id, events));
                    }
                }
            }
            if histories.is_empty() {
                continue;
            }
            let mut states: Vec<(&str, UserState)> = Vec::with_capacity(histories.len());
            {
                let catalog = self.catalog.read();
                let session = &self.settings.session;
                let fold = (session.update == UpdateRule::FoldIn)
                    .then(|| catalog.fold_model(&session.fold_in))
                    .flatten();
                for (id, events) in &histories {
                    let Some(mut state) = locked.get(id).cloned() else {
                        continue;
                    };
                    let vector = |item: &str| catalog.vector_of(item);
                    state.session = UserState::session_from(events, vector, session);
                    if session.update == UpdateRule::FoldIn {
                        // new item vectors: the old folded vector is no start for CG
                        state.refold_exact(fold.as_deref(), vector);
                    }
                    states.push((id, state));
                }
            }
            let ticket = self.sink.append(&OpRef::Users(
                states.iter().map(|(id, s)| (*id, s)).collect(),
            ))?;
            rebuilt += states.len();
            for (id, state) in states {
                locked.put(id, state, ticket.first);
            }
            last = Some(ticket);
        }
        Ok((rebuilt, last))
    }
}
