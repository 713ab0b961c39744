//! Delivery: what the application is handed, and when its positions count as finished.
//!
//! The fetch thread's items wait in a [`Delivery`] until the application asks for them. Handing
//! out a change makes it *delivered*; it becomes *finished* when the application asks for the
//! next one (auto commits) or covers it with `commit()` (either mode), and only finished
//! positions reach [`Positions`], from which commits are made. Passed messages (tombstones not
//! delivered, skipped messages, gaps) and dead letters finish with everything before them.
//! Items fetched before a rebalance revoked their partition are dropped, and a finish is
//! labelled with the generation its change was fetched in, so nothing reaches the position of a
//! partition assigned since. These rules need no broker; the tests below exercise them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::budget::ReadAhead;
use super::config::CommitPolicy;
use super::fetch::Fetched;
use crate::change::{Change, Position};
use crate::error::{Error, Result};
use crate::positions::Positions;

/// A message that could not be decoded, kept raw for the application.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Where the message sits.
    pub position: Position,
    /// The raw key.
    pub key: Option<Vec<u8>>,
    /// The raw value.
    pub value: Option<Vec<u8>>,
    /// The message headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Why it could not be decoded.
    pub error: Error,
}

/// One fetched item, in log order.
pub(super) enum Item {
    Change(Change),
    DeadLetter(DeadLetter),
    /// A message not handed out — skipped under `OnDecodeError::Skip`, a tombstone not
    /// delivered, or (at its last offset) a run of transaction markers or a compacted gap:
    /// finished once the application has finished everything before it, like any change.
    Passed(Position),
}

impl Item {
    pub(super) fn position(&self) -> &Position {
        match self {
            Item::Change(change) => &change.position,
            Item::DeadLetter(dead) => &dead.position,
            Item::Passed(position) => position,
        }
    }

    /// About how much memory the item holds, as the read-ahead budget counts it.
    fn heap_bytes(&self) -> usize {
        let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
        match self {
            Item::Change(change) => change.heap_bytes(),
            Item::DeadLetter(dead) => {
                std::mem::size_of::<DeadLetter>()
                    + bytes(&dead.key)
                    + bytes(&dead.value)
                    + dead
                        .headers
                        .iter()
                        .map(|(k, v)| k.len() + bytes(v))
                        .sum::<usize>()
            }
            Item::Passed(_) => std::mem::size_of::<Position>(),
        }
    }
}

/// A fetched item waiting for the application, with the bytes it counts for.
pub(super) struct Buffered {
    pub(super) item: Item,
    pub(super) bytes: usize,
}

impl Buffered {
    pub(super) fn new(item: Item) -> Buffered {
        let bytes = item.heap_bytes();
        Buffered { item, bytes }
    }
}

/// What the application side of a stream holds between calls, and the rules by which what it
/// hands out becomes finished.
pub(super) struct Delivery {
    /// The positions shared with the fetch thread and the rebalance callbacks.
    positions: Arc<Positions>,
    /// The budget the buffered items count against; taking an item frees its bytes.
    read_ahead: Arc<ReadAhead>,
    /// Whether asking for the next change finishes the one before.
    commit: CommitPolicy,
    /// Fetched items not yet handed out, each with the generation it was fetched in.
    buffered: VecDeque<(Buffered, u64)>,
    /// What was handed out and not yet finished, in the order handed out, with fetch
    /// generations: in auto mode the change (or batch) handed out last, finished when the next
    /// is asked for; with manual commits everything since the last `commit()`. Only the last
    /// position of each run of one partition is kept (see [`Delivery::hand_out`]).
    delivered: Vec<(Position, u64)>,
    /// For progress: how far the application has been handed each partition (next offset).
    pub(super) handed_out_to: Option<HashMap<(Arc<str>, i32), i64>>,
    /// A batch being filled across calls of `next_batch`, and when its first change came.
    pub(super) filling: Vec<Change>,
    pub(super) filling_since: Option<Instant>,
    pub(super) dead_letters: Vec<DeadLetter>,
    /// Set once the stream failed or ended; returned again on every later call.
    pub(super) terminal: Option<Terminal>,
}

/// How a stream finished.
pub(super) enum Terminal {
    /// A bounded read ended with the assignment at `generation`: a rebalance since then may
    /// have handed this member partitions to read, and the fetch thread reads on. `None` once
    /// the application has been told (or the fetch thread is gone): final.
    Ended {
        generation: Option<u64>,
    },
    Failed(Error),
}

/// What taking the next buffered item gave.
pub(super) enum Taken {
    Change(Box<Change>),
    End,
    Failed(Error),
    /// Nothing buffered: receive more.
    Empty,
}

impl Delivery {
    pub(super) fn new(
        positions: Arc<Positions>,
        read_ahead: Arc<ReadAhead>,
        commit: CommitPolicy,
        track_progress: bool,
    ) -> Delivery {
        Delivery {
            positions,
            read_ahead,
            commit,
            buffered: VecDeque::new(),
            delivered: Vec::new(),
            handed_out_to: track_progress.then(HashMap::new),
            filling: Vec::new(),
            filling_since: None,
            dead_letters: Vec::new(),
            terminal: None,
        }
    }

    /// Whether taking would give something now: a buffered item, the end or a failure.
    pub(super) fn has_news(&self) -> bool {
        !self.buffered.is_empty() || self.terminal.is_some()
    }

    /// Note `position` as handed out and unfinished. Consecutive positions of one partition
    /// collapse into the last: finishing it finishes the run, and `commit(change)` of a change
    /// inside the run finds the run by its partition and offset.
    fn hand_out(&mut self, position: &Position, generation: u64) {
        if let Some(progress) = &mut self.handed_out_to {
            progress.insert(
                (position.topic.clone(), position.partition),
                position.offset + 1,
            );
        }
        if let Some((last, last_generation)) = self.delivered.last_mut() {
            if last.partition == position.partition
                && *last_generation == generation
                && last.topic == position.topic
            {
                last.clone_from(position);
                return;
            }
        }
        self.delivered.push((position.clone(), generation));
    }

    /// Take the front item out of the buffer, freeing its bytes of the read-ahead budget.
    fn pop_buffered(&mut self) -> Option<(Item, u64)> {
        let (buffered, generation) = self.buffered.pop_front()?;
        self.read_ahead.free(buffered.bytes);
        Some((buffered.item, generation))
    }

    pub(super) fn finish_on_next(&mut self) {
        if self.commit == CommitPolicy::Auto {
            self.finish_delivered();
        }
    }

    /// Hand out the next buffered change (dropping stale ones, setting dead letters aside).
    pub(super) fn take(&mut self) -> Taken {
        while let Some((item, generation)) = self.pop_buffered() {
            let position = item.position();
            if !self
                .positions
                .is_current(&position.topic, position.partition, generation)
            {
                self.positions
                    .counters
                    .dropped_on_revoke
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match item {
                Item::Change(change) => {
                    self.hand_out(&change.position, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    return Taken::Change(Box::new(change));
                }
                other => self.set_aside(other, generation),
            }
        }
        match self.terminal() {
            Some(Ok(())) => Taken::End,
            Some(Err(error)) => Taken::Failed(error),
            None => Taken::Empty,
        }
    }

    /// Whether the stream ended or failed, once nothing is buffered. An end reached before
    /// the latest rebalance is dropped: the fetch thread reads the new assignment and sends
    /// another end.
    fn terminal(&mut self) -> Option<std::result::Result<(), Error>> {
        match &mut self.terminal {
            Some(Terminal::Ended {
                generation: Some(generation),
            }) if *generation != self.positions.generation() => {
                self.terminal = None;
                None
            }
            Some(Terminal::Ended { generation }) => {
                *generation = None;
                Some(Ok(()))
            }
            Some(Terminal::Failed(error)) => Some(Err(error.clone())),
            None => None,
        }
    }

    /// A dead letter goes to the application's list and a passed message nowhere; either
    /// way the application is done with it as far as positions go — at once when everything
    /// handed out before it is finished, else together with that.
    fn set_aside(&mut self, item: Item, generation: u64) {
        let position = item.position();
        if self.delivered.is_empty() {
            if let Some(progress) = &mut self.handed_out_to {
                progress.insert(
                    (position.topic.clone(), position.partition),
                    position.offset + 1,
                );
            }
            self.positions.finish(
                &position.topic,
                position.partition,
                position.offset,
                generation,
            );
        } else {
            self.hand_out(position, generation);
        }
        if let Item::DeadLetter(dead) = item {
            self.dead_letters.push(dead);
        }
    }

    /// Put what the fetch thread sent into the buffer.
    pub(super) fn absorb(&mut self, fetched: Option<Fetched>) {
        match fetched {
            Some(Fetched::Items { generation, items }) => self
                .buffered
                .extend(items.into_iter().map(|buffered| (buffered, generation))),
            Some(Fetched::Failed(error)) => self.terminal = Some(Terminal::Failed(error)),
            Some(Fetched::End { generation }) => {
                self.terminal = Some(Terminal::Ended {
                    generation: Some(generation),
                });
            }
            None => self.terminal = Some(Terminal::Ended { generation: None }),
        }
    }

    /// The application is done with the changes handed out last.
    pub(super) fn finish_delivered(&mut self) {
        let delivered = std::mem::take(&mut self.delivered);
        for (position, generation) in delivered {
            self.positions.finish(
                &position.topic,
                position.partition,
                position.offset,
                generation,
            );
        }
    }

    /// Move buffered changes into the batch being filled. Returns whether the batch is ready
    /// (full, or the next change belongs to another batch) and whether the stream ended.
    pub(super) fn fill(&mut self, max_rows: usize) -> Result<(bool, bool)> {
        let same_batch = |a: &Change, b: &Change| {
            a.table == b.table
                && a.value_schema.as_ref().map(|(id, _)| id)
                    == b.value_schema.as_ref().map(|(id, _)| id)
        };
        while self.filling.len() < max_rows {
            if let (Some(first), Some((next, _))) = (self.filling.first(), self.buffered.front()) {
                if matches!(&next.item, Item::Change(next) if !same_batch(first, next)) {
                    return Ok((true, false));
                }
            }
            let Some((item, generation)) = self.pop_buffered() else {
                return match self.terminal() {
                    Some(Ok(())) => Ok((false, true)),
                    Some(Err(error)) if self.filling.is_empty() => Err(error),
                    // Hand over what came before the failure first.
                    Some(Err(_)) => Ok((true, false)),
                    None => Ok((false, false)),
                };
            };
            let position = item.position();
            if !self
                .positions
                .is_current(&position.topic, position.partition, generation)
            {
                self.positions
                    .counters
                    .dropped_on_revoke
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match item {
                Item::Change(change) => {
                    self.hand_out(&change.position, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    self.filling_since.get_or_insert_with(Instant::now);
                    self.filling.push(change);
                }
                other => self.set_aside(other, generation),
            }
        }
        Ok((true, false))
    }

    /// Finish `position`, and what was handed out before it.
    pub(super) fn finish_through(&mut self, position: &Position) {
        // The run holding the change: the first record of its partition at or past it.
        let run = self.delivered.iter().position(|(p, _)| {
            p.topic == position.topic
                && p.partition == position.partition
                && p.offset >= position.offset
        });
        let (before, generation) = match run {
            Some(index) => {
                let before = self.delivered.drain(..index).collect::<Vec<_>>();
                let (end_of_run, generation) = &self.delivered[0];
                let generation = *generation;
                if end_of_run.offset == position.offset {
                    self.delivered.remove(0);
                }
                (before, generation)
            }
            // Finished already (finishing again changes nothing), or handed out before a
            // rebalance that gave the partition back.
            None => (Vec::new(), self.positions.generation()),
        };
        for (p, g) in before {
            self.positions.finish(&p.topic, p.partition, p.offset, g);
        }
        self.positions.finish(
            &position.topic,
            position.partition,
            position.offset,
            generation,
        );
    }
}
