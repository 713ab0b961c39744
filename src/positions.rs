//! Positions: which partitions a stream owns, what the application has finished, and where a
//! bounded read ends.
//!
//! The fetch thread (where librdkafka runs rebalance callbacks) and the application thread
//! (which finishes changes) share one [`Positions`]. Every assignment or revocation bumps a
//! generation counter, and each partition remembers the generation it was assigned in; a change
//! fetched under an older generation than its partition's assignment was fetched before a
//! revocation and must not be delivered or committed: the partition's new owner, or this stream
//! after re-assignment, reads it again from the committed position.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

/// How long a bounded read that owns no partitions waits for a follow-up assignment before it
/// counts as done (a group with more members than partitions leaves some with none).
const EMPTY_ASSIGNMENT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What one owned partition has reached.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// The generation in which the partition was (last) assigned to this stream.
    pub assigned_in: u64,
    /// Next offset after the last change the application finished.
    pub finished: Arc<Finished>,
    /// Next offset committed to the group.
    pub committed: Option<i64>,
    /// Bounded reads: the offset at which this partition ends.
    pub end: Option<i64>,
    /// Bounded reads: the partition reached its end.
    pub done: bool,
    /// The offset reading started from when the partition was assigned.
    pub start: Option<i64>,
}

/// A partition's next offset after the last change the application finished. The application
/// thread moves it without the table's lock (see [`Positions::finished_of`]): it finishes a
/// change per `next()`, while the fetch thread takes the lock for its own work, and the two
/// taking one lock per change had both cores writing its cache line.
#[derive(Debug)]
pub struct Finished(AtomicI64);

/// [`Finished`] before anything is: offsets start at 0.
const NOTHING_FINISHED: i64 = -1;

impl Default for Finished {
    fn default() -> Self {
        Finished(AtomicI64::new(NOTHING_FINISHED))
    }
}

impl Finished {
    /// The next offset after the last change finished, if any is.
    pub fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Acquire)).filter(|&next| next != NOTHING_FINISHED)
    }

    /// The change at `offset` is finished: the position moves past it, never back.
    pub fn finish(&self, offset: i64) {
        self.0.fetch_max(offset + 1, Ordering::AcqRel);
    }

    fn set(&self, next: Option<i64>) {
        self.0
            .store(next.unwrap_or(NOTHING_FINISHED), Ordering::Release);
    }
}

impl PartitionState {
    /// Where the application stands: after what it finished, else where reading started.
    pub fn position(&self) -> Option<i64> {
        self.finished.get().or(self.start)
    }

    /// Finished but not yet committed: the next offset to commit, and how far it advances
    /// the committed position.
    fn uncommitted(&self) -> Option<(i64, u64)> {
        let finished = self.finished.get().filter(|f| Some(*f) != self.committed)?;
        let from = self.committed.or(self.start).unwrap_or(finished);
        Some((finished, u64::try_from(finished - from).unwrap_or(0)))
    }
}

/// Counters reported by `stats()`. On cache lines of their own: the application thread counts
/// every change it takes, and the fetch thread reads the generation beside them for every
/// message.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Changes handed to the application.
    pub delivered: AtomicU64,
    /// Messages skipped under `on_decode_error="skip"`.
    pub skipped: AtomicU64,
    /// Messages set aside under `on_decode_error="dead_letter"`.
    pub dead_lettered: AtomicU64,
    /// Fetched changes dropped because their partition was revoked before delivery.
    pub dropped_on_revoke: AtomicU64,
    /// Offsets the committed positions advanced by, over all partitions.
    pub committed: AtomicU64,
    /// Commit requests that failed.
    pub commit_failures: AtomicU64,
    /// Rebalances (assignments and revocations).
    pub rebalances: AtomicU64,
    /// Connections to brokers lost (librdkafka reconnects by itself).
    pub broker_disconnects: AtomicU64,
}

/// Each topic's partitions and their state.
pub type PartitionTable = FxHashMap<String, FxHashMap<i32, PartitionState>>;

/// The positions shared by the fetch thread and the application thread.
#[derive(Debug, Default)]
pub struct Positions {
    generation: AtomicU64,
    /// Looked up twice per change handed out (is it current, finish it): hashed with Fx, as
    /// topic names are the application's and the broker's, not a message's.
    partitions: Mutex<PartitionTable>,
    /// Whether the stream holds an assignment: false until a group member first joins, and
    /// between a revocation and the assignment that follows it, when owning nothing does not
    /// mean a bounded read is done.
    assigned: std::sync::atomic::AtomicBool,
    /// When the stream last became the owner of nothing: a cooperative rebalance hands a
    /// joining member an empty assignment first, so owning nothing is final only after a while.
    empty_since: Mutex<Option<std::time::Instant>>,
    /// The stream's counters.
    pub counters: Counters,
}

impl Positions {
    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Lock the partition table.
    pub fn lock(&self) -> MutexGuard<'_, PartitionTable> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Partitions were assigned; `setup` fills in each one's state (e.g. its end).
    pub fn assign(&self, partitions: impl IntoIterator<Item = (String, i32, PartitionState)>) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let mut table = self.lock();
        for (topic, partition, mut state) in partitions {
            state.assigned_in = generation;
            table.entry(topic).or_default().insert(partition, state);
        }
        let owns_nothing = table.values().all(HashMap::is_empty);
        drop(table);
        *self.empty_since.lock().unwrap_or_else(|e| e.into_inner()) =
            owns_nothing.then(std::time::Instant::now);
        self.assigned.store(true, Ordering::Release);
        self.counters.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    /// Partitions were revoked: forget them and return what was finished but not yet committed
    /// (with how far it advances the committed position), to commit before letting go.
    pub fn revoke<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> Vec<(String, i32, i64, u64)> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.assigned.store(false, Ordering::Release);
        let mut table = self.lock();
        let mut uncommitted = Vec::new();
        for (topic, partition) in partitions {
            let Some(state) = table.get_mut(topic).and_then(|t| t.remove(&partition)) else {
                continue;
            };
            if let Some((finished, advance)) = state.uncommitted() {
                uncommitted.push((topic.to_owned(), partition, finished, advance));
            }
        }
        self.counters.rebalances.fetch_add(1, Ordering::Relaxed);
        uncommitted
    }

    /// Whether a change of `topic`/`partition` fetched in `generation` may still be delivered.
    pub fn is_current(&self, topic: &str, partition: i32, generation: u64) -> bool {
        if self.generation() == generation {
            return true;
        }
        self.lock()
            .get(topic)
            .and_then(|t| t.get(&partition))
            .is_some_and(|state| state.assigned_in <= generation)
    }

    /// The application finished the change at `offset`, fetched in `generation`.
    pub fn finish(&self, topic: &str, partition: i32, offset: i64, generation: u64) {
        if let Some(finished) = self.finished_of(topic, partition, generation) {
            finished.finish(offset);
        }
    }

    /// Where changes of a partition fetched in `generation` are finished into, while the
    /// generation lasts: `None` when the partition is not owned or was assigned again since
    /// (such changes are stale, and finishing them records nothing).
    pub fn finished_of(
        &self,
        topic: &str,
        partition: i32,
        generation: u64,
    ) -> Option<Arc<Finished>> {
        let table = self.lock();
        let state = table.get(topic)?.get(&partition)?;
        (state.assigned_in <= generation).then(|| state.finished.clone())
    }

    /// Finished positions not yet committed: (topic, partition, next offset, advance).
    pub fn uncommitted(&self) -> Vec<(String, i32, i64, u64)> {
        let table = self.lock();
        let mut out = Vec::new();
        for (topic, partitions) in table.iter() {
            for (partition, state) in partitions {
                if let Some((finished, advance)) = state.uncommitted() {
                    out.push((topic.clone(), *partition, finished, advance));
                }
            }
        }
        out
    }

    /// Forget what was finished and not committed (closing after an exception commits
    /// nothing more, not even when leaving the group revokes the partitions).
    pub fn forget_finished(&self) {
        for state in self.lock().values_mut().flat_map(HashMap::values_mut) {
            state.finished.set(state.committed);
        }
    }

    /// Record a successful commit of `offset` (next offset) on a partition.
    pub fn committed(&self, topic: &str, partition: i32, offset: i64, advance: u64) {
        self.counters
            .committed
            .fetch_add(advance, Ordering::Relaxed);
        let mut table = self.lock();
        if let Some(state) = table.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            if state.committed.is_none_or(|c| c < offset) {
                state.committed = Some(offset);
            }
        }
    }

    /// Where the application stands on every owned partition: the next offset after what it
    /// finished, or where reading started if it finished nothing there yet.
    pub fn finished(&self) -> HashMap<(String, i32), i64> {
        let table = self.lock();
        table
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().filter_map(move |(partition, state)| {
                    state.position().map(|f| ((topic.clone(), *partition), f))
                })
            })
            .collect()
    }

    /// Bounded reads: whether a message at `offset` lies past its partition's end; marks the
    /// partition done when `reached` (the next position) is at or past the end.
    pub fn past_end(&self, topic: &str, partition: i32, offset: i64) -> bool {
        let mut table = self.lock();
        let Some(state) = table.get_mut(topic).and_then(|t| t.get_mut(&partition)) else {
            return false;
        };
        let Some(end) = state.end else {
            return false;
        };
        if offset >= end {
            state.done = true;
            return true;
        }
        if offset + 1 >= end {
            state.done = true;
        }
        false
    }

    /// Bounded reads: where an owned partition ends (`None` inside: it does not). Fixed
    /// while the generation is.
    pub fn end_of(&self, topic: &str, partition: i32) -> Option<Option<i64>> {
        let table = self.lock();
        Some(table.get(topic)?.get(&partition)?.end)
    }

    /// Bounded reads: the consumer's position on a partition is `position`.
    pub fn reached(&self, topic: &str, partition: i32, position: i64) -> bool {
        let mut table = self.lock();
        let Some(state) = table.get_mut(topic).and_then(|t| t.get_mut(&partition)) else {
            return false;
        };
        if state.end.is_some_and(|end| position >= end) && !state.done {
            state.done = true;
            return true;
        }
        false
    }

    /// Bounded reads: every owned partition reached its end, and the stream holds an
    /// assignment (possibly empty, when a group has more members than partitions).
    pub fn all_done(&self) -> bool {
        if !self.assigned.load(Ordering::Acquire) {
            return false;
        }
        let table = self.lock();
        if table.values().all(HashMap::is_empty) {
            let empty_since = *self.empty_since.lock().unwrap_or_else(|e| e.into_inner());
            return empty_since.is_some_and(|since| since.elapsed() >= EMPTY_ASSIGNMENT_GRACE);
        }
        table
            .values()
            .flat_map(HashMap::values)
            .all(|state| state.done || state.end.is_none())
    }

    /// Bounded reads: partitions not yet at their end, with their ends.
    pub fn remaining(&self) -> Vec<(String, i32, i64)> {
        self.lock()
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .filter_map(move |(partition, state)| match state.end {
                        Some(end) if !state.done => Some((topic.clone(), *partition, end)),
                        _ => None,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(end: Option<i64>) -> PartitionState {
        PartitionState {
            end,
            ..PartitionState::default()
        }
    }

    #[test]
    fn changes_fetched_before_a_revocation_are_stale() {
        let positions = Positions::default();
        positions.assign([
            ("t".to_owned(), 0, state(None)),
            ("t".to_owned(), 1, state(None)),
        ]);
        let fetched_in = positions.generation();
        assert!(positions.is_current("t", 0, fetched_in));
        positions.revoke([("t", 1)]);
        assert!(positions.is_current("t", 0, fetched_in));
        assert!(!positions.is_current("t", 1, fetched_in));
        // Re-assigned: what was fetched before is still stale (reading restarts from the
        // committed position).
        positions.assign([("t".to_owned(), 1, state(None))]);
        assert!(!positions.is_current("t", 1, fetched_in));
        assert!(positions.is_current("t", 1, positions.generation()));
    }

    #[test]
    fn revocation_hands_back_what_is_finished_but_uncommitted() {
        let positions = Positions::default();
        let started_at_4 = PartitionState {
            start: Some(4),
            ..PartitionState::default()
        };
        positions.assign([("t".to_owned(), 0, started_at_4)]);
        let generation = positions.generation();
        positions.finish("t", 0, 4, generation);
        positions.finish("t", 0, 5, generation);
        assert_eq!(positions.uncommitted(), vec![("t".to_owned(), 0, 6, 2)]);
        positions.committed("t", 0, 6, 2);
        assert!(positions.uncommitted().is_empty());
        positions.finish("t", 0, 6, generation);
        assert_eq!(
            positions.revoke([("t", 0)]),
            vec![("t".to_owned(), 0, 7, 1)]
        );
        // Finishing a change of a revoked partition records nothing.
        positions.finish("t", 0, 7, generation);
        assert!(positions.finished().is_empty());
        assert_eq!(positions.counters.committed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bounded_reads_end_per_partition() {
        let positions = Positions::default();
        assert!(!positions.all_done(), "nothing assigned yet");
        positions.assign([
            ("t".to_owned(), 0, state(Some(3))),
            ("t".to_owned(), 1, state(Some(0))),
        ]);
        positions.reached("t", 1, 0);
        assert!(!positions.past_end("t", 0, 1));
        assert!(!positions.all_done());
        assert!(!positions.past_end("t", 0, 2));
        assert!(positions.all_done());
        assert!(positions.past_end("t", 0, 3));
    }
}
