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

use super::batch::{change_batch_key, Batch, BatchKey, Piece, Rows};
use super::budget::ReadAhead;
use super::config::CommitPolicy;
use super::fetch::Fetched;
use crate::change::{Change, Position};
use crate::error::{Error, Result};
use crate::name::Name;
use crate::positions::{Finished, Positions};

/// Why a stream read in batches refuses to hand out single changes.
pub(super) const ITERATED_AFTER_BATCHES: &str =
    "this stream is read with batches(): its changes cannot also be iterated one by one (open \
     another stream to iterate)";

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
    /// Boxed where it is decoded: it then moves through the channel and the buffer as a
    /// pointer, not as a few hundred bytes copied at every step. The other large variants
    /// are boxed too, so that an item (moved at every step) stays small.
    Change(Box<Change>),
    /// Messages read straight into rows, for a stream read in batches.
    Rows(Box<Rows>),
    DeadLetter(Box<DeadLetter>),
    /// A message not handed out — skipped under `OnDecodeError::Skip`, a tombstone not
    /// delivered, or (at its last offset) a run of transaction markers or a compacted gap:
    /// finished once the application has finished everything before it, like any change.
    Passed(Position),
}

impl Item {
    pub(super) fn position(&self) -> &Position {
        match self {
            Item::Change(change) => &change.position,
            Item::Rows(rows) => &rows.last,
            Item::DeadLetter(dead) => &dead.position,
            Item::Passed(position) => position,
        }
    }

    /// The table and value schema of a change or rows, which a batch holds one of.
    fn batch_key(&self) -> Option<BatchKey<'_>> {
        match self {
            Item::Change(change) => Some(change_batch_key(change)),
            Item::Rows(rows) => Some(rows.batch_key()),
            Item::DeadLetter(_) | Item::Passed(_) => None,
        }
    }

    /// About how much memory the item holds, as the read-ahead budget counts it.
    fn heap_bytes(&self) -> usize {
        let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
        match self {
            Item::Change(change) => change.heap_bytes(),
            Item::Rows(rows) => rows.heap_bytes(),
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
    /// The partition finished into last, kept for the changes after it.
    finishing: Option<Finishing>,
    /// For progress: how far the application has been handed each partition (next offset).
    pub(super) handed_out_to: Option<HashMap<(Name, i32), i64>>,
    /// A batch being filled across calls of `next_batch`, and when its first change came.
    pub(super) filling: Batch,
    pub(super) filling_since: Option<Instant>,
    pub(super) dead_letters: Vec<DeadLetter>,
    /// Set once the stream failed or ended; returned again on every later call.
    pub(super) terminal: Option<Terminal>,
}

/// Where the changes of one partition fetched in one generation are finished into, as looked
/// up in the positions' generation `looked_up_in` (a rebalance since may have revoked or
/// assigned the partition again).
struct Finishing {
    topic: Name,
    partition: i32,
    fetched_in: u64,
    looked_up_in: u64,
    finished: Option<Arc<Finished>>,
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
            finishing: None,
            handed_out_to: track_progress.then(HashMap::new),
            filling: Batch::default(),
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
            progress.insert((position.topic, position.partition), position.offset + 1);
        }
        if let Some((last, last_generation)) = self.delivered.last_mut() {
            if last.partition == position.partition
                && *last_generation == generation
                && last.topic == position.topic
            {
                last.offset = position.offset;
                last.timestamp_ms = position.timestamp_ms;
                return;
            }
        }
        self.delivered.push((position.clone(), generation));
    }

    /// Start loading the next changes into this core's cache while this one is converted
    /// (the fetch thread's core wrote them): the one after next itself, and the rows of the
    /// next one, whose own lines were asked for a change ago.
    fn prefetch_next(&self) {
        if let Some(Item::Change(next)) = self.buffered.front().map(|(b, _)| &b.item) {
            next.prefetch_rows();
        }
        if let Some(Item::Change(later)) = self.buffered.get(1).map(|(b, _)| &b.item) {
            crate::prefetch::prefetch(&**later);
        }
    }

    /// Take the front item of a current assignment out of the buffer, freeing its bytes of the
    /// read-ahead budget; items of partitions revoked since they were fetched are dropped (and
    /// counted) on the way.
    fn pop_buffered(&mut self) -> Option<(Item, u64)> {
        loop {
            let (buffered, generation) = self.buffered.pop_front()?;
            self.prefetch_next();
            self.read_ahead.free(buffered.bytes);
            let position = buffered.item.position();
            if self
                .positions
                .is_current(&position.topic, position.partition, generation)
            {
                return Some((buffered.item, generation));
            }
            self.positions
                .counters
                .dropped_on_revoke
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn finish_on_next(&mut self) {
        if self.commit == CommitPolicy::Auto {
            self.finish_delivered();
        }
    }

    /// Hand out the next buffered change (dropping stale ones, setting dead letters aside).
    pub(super) fn take(&mut self) -> Taken {
        loop {
            // Rows are for batches: a stream read in batches is not iterated change by change.
            if let Some((
                Buffered {
                    item: Item::Rows(_),
                    ..
                },
                _,
            )) = self.buffered.front()
            {
                return Taken::Failed(Error::Config(ITERATED_AFTER_BATCHES.into()));
            }
            let Some((item, generation)) = self.pop_buffered() else {
                break;
            };
            match item {
                Item::Change(change) => {
                    self.hand_out(&change.position, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    return Taken::Change(change);
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
                progress.insert((position.topic, position.partition), position.offset + 1);
            }
            self.finish(position, generation);
        } else {
            self.hand_out(position, generation);
        }
        if let Item::DeadLetter(dead) = item {
            self.dead_letters.push(*dead);
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
            // The fetch thread is gone. After a failure it always is: the failure stays
            // the stream's last word (a reader draining the channel sees both at once).
            None if matches!(self.terminal, Some(Terminal::Failed(_))) => {}
            None => self.terminal = Some(Terminal::Ended { generation: None }),
        }
    }

    /// The application is done with the changes handed out last.
    pub(super) fn finish_delivered(&mut self) {
        // Drained, then put back: the list keeps its room for the next change handed out.
        let mut delivered = std::mem::take(&mut self.delivered);
        for (position, generation) in delivered.drain(..) {
            self.finish(&position, generation);
        }
        self.delivered = delivered;
    }

    /// Finish the change at `position`, fetched in `generation`: looked up in the positions
    /// (under their lock) only when its partition or the generation differs from the last.
    fn finish(&mut self, position: &Position, generation: u64) {
        let now = self.positions.generation();
        let known = self.finishing.as_ref().filter(|f| {
            f.partition == position.partition
                && f.fetched_in == generation
                && f.looked_up_in == now
                && *f.topic == *position.topic
        });
        let finished = match known {
            Some(known) => known.finished.as_ref(),
            None => {
                let finishing = self.finishing.insert(Finishing {
                    topic: position.topic,
                    partition: position.partition,
                    fetched_in: generation,
                    looked_up_in: now,
                    finished: self.positions.finished_of(
                        &position.topic,
                        position.partition,
                        generation,
                    ),
                });
                finishing.finished.as_ref()
            }
        };
        if let Some(finished) = finished {
            finished.finish(position.offset);
        }
    }

    /// Move buffered changes and rows into the batch being filled. Returns whether the batch
    /// is ready (full, or the next change belongs to another batch) and whether the stream
    /// ended.
    pub(super) fn fill(&mut self, max_rows: usize) -> Result<(bool, bool)> {
        while self.filling.len() < max_rows {
            if let (Some(first), Some((next, _))) =
                (self.filling.pieces.first(), self.buffered.front())
            {
                if next
                    .item
                    .batch_key()
                    .is_some_and(|next| next != first.batch_key())
                {
                    return Ok((true, false));
                }
            }
            self.split_front_rows(max_rows - self.filling.len());
            let Some((item, generation)) = self.pop_buffered() else {
                return match self.terminal() {
                    Some(Ok(())) => Ok((false, true)),
                    Some(Err(error)) if self.filling.is_empty() => Err(error),
                    // Hand over what came before the failure first.
                    Some(Err(_)) => Ok((true, false)),
                    None => Ok((false, false)),
                };
            };
            match item {
                Item::Change(change) => {
                    self.hand_out(&change.position, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    self.filling_since.get_or_insert_with(Instant::now);
                    self.filling.push(Piece::Change(change));
                }
                Item::Rows(rows) => {
                    self.hand_out(&rows.last, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    self.filling_since.get_or_insert_with(Instant::now);
                    self.filling.push(Piece::Rows(*rows));
                }
                other => self.set_aside(other, generation),
            }
        }
        Ok((true, false))
    }

    /// Where the front item is rows that do not fit in `room`, split off as many as fit as an
    /// item of their own, with their share of its bytes.
    fn split_front_rows(&mut self, room: usize) {
        let Some((buffered, generation)) = self.buffered.front_mut() else {
            return;
        };
        let Item::Rows(rows) = &mut buffered.item else {
            return;
        };
        if rows.len() <= room || room == 0 {
            return;
        }
        let share = buffered.bytes * room / rows.len();
        let head = rows.split_front(room);
        buffered.bytes -= share;
        let generation = *generation;
        self.buffered.push_front((
            Buffered {
                item: Item::Rows(Box::new(head)),
                bytes: share,
            },
            generation,
        ));
    }

    /// Hand over the batch filled so far.
    pub(super) fn take_filling(&mut self) -> Batch {
        self.filling_since = None;
        std::mem::take(&mut self.filling)
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
            self.finish(&p, g);
        }
        self.finish(position, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Op;
    use crate::positions::PartitionState;

    const TOPIC: &str = "orders";

    /// Positions owning `partitions` of [`TOPIC`], each read from offset `start`.
    fn owning(partitions: &[i32], start: i64) -> Arc<Positions> {
        let positions = Arc::new(Positions::default());
        assign(&positions, partitions, start);
        positions
    }

    fn assign(positions: &Positions, partitions: &[i32], start: i64) {
        positions.assign(partitions.iter().map(|&partition| {
            let state = PartitionState {
                start: Some(start),
                ..PartitionState::default()
            };
            (TOPIC.to_owned(), partition, state)
        }));
    }

    fn delivery(positions: &Arc<Positions>, commit: CommitPolicy) -> Delivery {
        let read_ahead = Arc::new(ReadAhead::new(1 << 20));
        Delivery::new(positions.clone(), read_ahead, commit, false)
    }

    fn at(partition: i32, offset: i64) -> Position {
        Position {
            topic: TOPIC.into(),
            partition,
            offset,
            timestamp_ms: None,
        }
    }

    fn change(partition: i32, offset: i64) -> Item {
        change_in("public.orders", partition, offset)
    }

    fn change_in(table: &str, partition: i32, offset: i64) -> Item {
        Item::Change(Box::new(Change {
            op: Op::Insert,
            key: None,
            before: None,
            after: None,
            table: Some(table.into()),
            source: None,
            transaction: None,
            tombstone: false,
            value_schema: None,
            position: at(partition, offset),
        }))
    }

    fn passed(partition: i32, offset: i64) -> Item {
        Item::Passed(at(partition, offset))
    }

    /// What the fetch thread does: send items fetched in `generation`, counting their bytes.
    fn send(delivery: &mut Delivery, generation: u64, items: Vec<Item>) {
        let items = items.into_iter().map(Buffered::new).collect::<Vec<_>>();
        delivery
            .read_ahead
            .add(items.iter().map(|b| b.bytes).sum::<usize>());
        delivery.absorb(Some(Fetched::Items { generation, items }));
    }

    /// What `ChangeConsumer::next` does: finish (in auto mode), then take the next change.
    fn next(delivery: &mut Delivery) -> Option<(i32, i64)> {
        delivery.finish_on_next();
        match delivery.take() {
            Taken::Change(change) => Some((change.position.partition, change.position.offset)),
            Taken::Empty => None,
            Taken::End => panic!("unexpected end"),
            Taken::Failed(error) => panic!("unexpected failure: {error}"),
        }
    }

    /// What a commit would send now: partition → next offset.
    fn to_commit(positions: &Positions) -> HashMap<i32, i64> {
        positions
            .uncommitted()
            .into_iter()
            .map(|(topic, partition, offset, _)| {
                assert_eq!(topic, TOPIC);
                (partition, offset)
            })
            .collect()
    }

    #[test]
    fn a_change_handed_out_holds_its_partition_back_until_the_next_is_asked_for() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![change(0, 0), change(1, 0), change(0, 1)],
        );
        assert_eq!(next(&mut delivery), Some((0, 0)));
        assert_eq!(to_commit(&positions), HashMap::new());
        assert_eq!(next(&mut delivery), Some((1, 0)));
        assert_eq!(to_commit(&positions), HashMap::from([(0, 1)]));
        assert_eq!(next(&mut delivery), Some((0, 1)));
        assert_eq!(to_commit(&positions), HashMap::from([(0, 1), (1, 1)]));
        // Nothing more fetched: asking again finishes the last change handed out.
        assert_eq!(next(&mut delivery), None);
        assert_eq!(to_commit(&positions), HashMap::from([(0, 2), (1, 1)]));
    }

    #[test]
    fn a_failure_is_not_undone_by_the_channel_closing_after_it() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(&mut delivery, generation, vec![change(0, 0)]);
        delivery.absorb(Some(Fetched::Failed(Error::decode("bad body"))));
        delivery.absorb(None); // the fetch thread ended after sending the failure
        assert_eq!(
            next(&mut delivery),
            Some((0, 0)),
            "what came before is delivered first"
        );
        for _ in 0..2 {
            match delivery.take() {
                Taken::Failed(error) => assert!(error.to_string().contains("bad body")),
                _ => panic!("the failure was lost"),
            }
        }
    }

    #[test]
    fn manual_commits_finish_only_what_commit_covered() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Manual);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![change(0, 0), change(0, 1), change(0, 2)],
        );
        assert_eq!(next(&mut delivery), Some((0, 0)));
        assert_eq!(next(&mut delivery), Some((0, 1)));
        assert_eq!(to_commit(&positions), HashMap::new());
        delivery.finish_delivered();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 2)]));
        positions.committed(TOPIC, 0, 2, 2);
        // Handed out after the commit, and asking for more finishes nothing.
        assert_eq!(next(&mut delivery), Some((0, 2)));
        assert_eq!(next(&mut delivery), None);
        assert_eq!(to_commit(&positions), HashMap::new());
        assert_eq!(
            positions.finished(),
            HashMap::from([((TOPIC.into(), 0), 2)])
        );
    }

    #[test]
    fn commit_of_a_change_finishes_through_it_and_what_was_handed_out_before() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Manual);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![
                change(0, 0),
                change(1, 0),
                change(0, 1),
                change(0, 2),
                change(1, 1),
            ],
        );
        for _ in 0..5 {
            assert!(next(&mut delivery).is_some());
        }
        // Inside a run of partition 0: finishes 0@0..=1 and 1@0 (handed out before it).
        delivery.finish_through(&at(0, 1));
        assert_eq!(to_commit(&positions), HashMap::from([(0, 2), (1, 1)]));
        // What remains handed out is finished by the next commit.
        delivery.finish_delivered();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 3), (1, 2)]));
    }

    #[test]
    fn a_batch_holds_its_partitions_back_until_the_next_batch_is_asked_for() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![
                change(0, 0),
                change(1, 0),
                passed(0, 1),
                change(0, 2),
                change_in("public.items", 0, 3),
            ],
        );
        // Ready: the next change belongs to another table.
        assert!(matches!(delivery.fill(100), Ok((true, false))));
        let batch = delivery
            .take_filling()
            .pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Change(c) => (c.position.partition, c.position.offset),
                Piece::Rows(rows) => (rows.last.partition, rows.last.offset),
            })
            .collect::<Vec<_>>();
        assert_eq!(batch, vec![(0, 0), (1, 0), (0, 2)]);
        assert_eq!(to_commit(&positions), HashMap::new());
        // Asking for the next batch finishes the whole batch, the passed offset with it.
        delivery.finish_on_next();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 3), (1, 1)]));
        assert!(matches!(delivery.fill(100), Ok((false, false))));
        assert_eq!(delivery.filling.len(), 1);
        assert_eq!(to_commit(&positions), HashMap::from([(0, 3), (1, 1)]));
    }

    /// Rows of `table` (schema id 1) read from `offsets` of `partition`: one column, the offset.
    fn rows_in(table: &str, partition: i32, offsets: &[i64]) -> Item {
        let column = arrow_array::Int64Array::from(offsets.to_vec());
        let batch = arrow_array::RecordBatch::try_from_iter([(
            "id",
            Arc::new(column) as arrow_array::ArrayRef,
        )])
        .unwrap();
        Item::Rows(Box::new(Rows {
            batch,
            table: table.into(),
            schema_id: 1,
            offsets: offsets.to_vec(),
            last: at(partition, *offsets.last().unwrap()),
        }))
    }

    /// The rows' offsets of each piece of a batch.
    fn pieces(batch: &Batch) -> Vec<Vec<i64>> {
        batch
            .pieces
            .iter()
            .map(|piece| match piece {
                Piece::Change(c) => vec![c.position.offset],
                Piece::Rows(rows) => rows.offsets.clone(),
            })
            .collect()
    }

    #[test]
    fn rows_split_at_max_rows_and_only_the_rows_handed_out_are_finished() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![
                rows_in("orders", 0, &[0, 1, 2, 5, 6]),
                rows_in("orders", 0, &[7, 8]),
            ],
        );
        assert!(matches!(delivery.fill(3), Ok((true, false))));
        let first = delivery.take_filling();
        assert_eq!(pieces(&first), vec![vec![0, 1, 2]]);
        let batches = first.record_batches().unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 3);
        delivery.finish_on_next();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 3)]));
        // The rest of the split rows and the next rows make one batch, joined into one.
        assert!(matches!(delivery.fill(10), Ok((false, false))));
        let second = delivery.take_filling();
        assert_eq!(pieces(&second), vec![vec![5, 6], vec![7, 8]]);
        let batches = second.record_batches().unwrap();
        assert_eq!(batches.len(), 1);
        let ids = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        assert_eq!(ids.values().to_vec(), vec![5, 6, 7, 8]);
        assert_eq!(to_commit(&positions), HashMap::from([(0, 3)]));
        delivery.finish_on_next();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 9)]));
        assert_eq!(positions.counters.delivered.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn rows_of_another_table_start_another_batch() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![
                rows_in("orders", 0, &[0, 1]),
                rows_in("orders", 1, &[0]),
                rows_in("items", 0, &[2]),
            ],
        );
        assert!(matches!(delivery.fill(100), Ok((true, false))));
        assert_eq!(pieces(&delivery.take_filling()), vec![vec![0, 1], vec![0]]);
        assert!(matches!(delivery.fill(100), Ok((false, false))));
        let batch = delivery.take_filling();
        assert_eq!(batch.table().as_deref(), Some("items"));
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn rows_of_a_revoked_partition_are_dropped() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let fetched_in = positions.generation();
        send(
            &mut delivery,
            fetched_in,
            vec![rows_in("orders", 0, &[0, 1]), rows_in("orders", 1, &[0, 1])],
        );
        positions.revoke([(TOPIC, 0)]);
        assert!(matches!(delivery.fill(100), Ok((false, false))));
        assert_eq!(pieces(&delivery.take_filling()), vec![vec![0, 1]]);
        assert_eq!(
            positions.counters.dropped_on_revoke.load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn rows_are_not_handed_out_as_single_changes() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(&mut delivery, generation, vec![rows_in("orders", 0, &[0])]);
        assert!(matches!(delivery.take(), Taken::Failed(Error::Config(_))));
        // Nothing was lost: the rows are still there for a batch.
        assert!(matches!(delivery.fill(100), Ok((false, false))));
        assert_eq!(delivery.take_filling().len(), 1);
    }

    #[test]
    fn passed_positions_wait_for_everything_before_them() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        let dead = Item::DeadLetter(Box::new(DeadLetter {
            position: at(1, 0),
            key: None,
            value: Some(vec![0, 0, 0, 0, 9]),
            headers: Vec::new(),
            error: Error::Config("undecodable".into()),
        }));
        // A change, a tombstone not delivered, a gap's last offset, a dead letter, a change.
        send(
            &mut delivery,
            generation,
            vec![change(0, 0), passed(0, 1), passed(0, 4), dead, change(0, 5)],
        );
        assert_eq!(next(&mut delivery), Some((0, 0)));
        assert_eq!(to_commit(&positions), HashMap::new());
        // Finishing 0@0 lets the passed offsets and the dead letter through, up to 0@5.
        assert_eq!(next(&mut delivery), Some((0, 5)));
        assert_eq!(to_commit(&positions), HashMap::from([(0, 5), (1, 1)]));
        assert_eq!(delivery.dead_letters.len(), 1);
    }

    #[test]
    fn passed_positions_behind_an_unfinished_change_finish_with_it() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Manual);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![change(0, 0), passed(0, 1), passed(1, 7)],
        );
        assert_eq!(next(&mut delivery), Some((0, 0)));
        assert_eq!(next(&mut delivery), None);
        // Taken past, but 0@0 is not finished: neither partition moves.
        assert_eq!(to_commit(&positions), HashMap::new());
        delivery.finish_delivered();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 2), (1, 8)]));
    }

    #[test]
    fn revoked_partitions_are_dropped_and_never_committed() {
        let positions = owning(&[0, 1], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![change(1, 0), change(0, 0), change(1, 1), change(1, 2)],
        );
        assert_eq!(next(&mut delivery), Some((1, 0)));
        // The rebalance callback revokes partition 1 while 1@0 is handed out, unfinished.
        let uncommitted = positions.revoke([(TOPIC, 1)]);
        assert_eq!(uncommitted, Vec::new());
        // The late finish of 1@0 is ignored; what was fetched for partition 1 is dropped.
        assert_eq!(next(&mut delivery), Some((0, 0)));
        assert_eq!(next(&mut delivery), None);
        assert_eq!(to_commit(&positions), HashMap::from([(0, 1)]));
        assert_eq!(
            positions.counters.dropped_on_revoke.load(Ordering::Relaxed),
            2
        );
        assert_eq!(delivery.read_ahead.waiting(), 0);
    }

    #[test]
    fn a_change_from_before_a_rebalance_does_not_move_a_reassigned_partition() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Manual);
        let generation = positions.generation();
        send(&mut delivery, generation, vec![change(0, 5), change(0, 6)]);
        assert_eq!(next(&mut delivery), Some((0, 5)));
        // Revoked and assigned back; another member committed up to 3 meanwhile.
        positions.revoke([(TOPIC, 0)]);
        assign(&positions, &[0], 3);
        // Fetched before the rebalance: not handed out (reading restarts from 3).
        assert_eq!(next(&mut delivery), None);
        // commit(change) and commit() of the change handed out before are both ignored.
        delivery.finish_through(&at(0, 5));
        delivery.finish_delivered();
        assert_eq!(to_commit(&positions), HashMap::new());
        assert_eq!(
            positions.finished(),
            HashMap::from([((TOPIC.into(), 0), 3)])
        );
        // What the new assignment fetches counts.
        send(&mut delivery, positions.generation(), vec![change(0, 3)]);
        assert_eq!(next(&mut delivery), Some((0, 3)));
        delivery.finish_delivered();
        assert_eq!(to_commit(&positions), HashMap::from([(0, 4)]));
    }

    #[test]
    fn finishing_after_a_rebalance_reaches_only_the_new_assignment() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(
            &mut delivery,
            generation,
            vec![change(0, 5), change(0, 6), change(0, 7)],
        );
        assert_eq!(next(&mut delivery), Some((0, 5)));
        // Finishes 5 (the partition is now known to the delivery), hands out 6.
        assert_eq!(next(&mut delivery), Some((0, 6)));
        assert_eq!(to_commit(&positions), HashMap::from([(0, 6)]));
        positions.revoke([(TOPIC, 0)]);
        assign(&positions, &[0], 3);
        // Finishing 6, fetched before the rebalance, moves nothing; 7 is dropped.
        assert_eq!(next(&mut delivery), None);
        assert_eq!(
            positions.finished(),
            HashMap::from([((TOPIC.into(), 0), 3)])
        );
        send(
            &mut delivery,
            positions.generation(),
            vec![change(0, 3), change(0, 4)],
        );
        assert_eq!(next(&mut delivery), Some((0, 3)));
        assert_eq!(next(&mut delivery), Some((0, 4)));
        assert_eq!(to_commit(&positions), HashMap::from([(0, 4)]));
    }

    #[test]
    fn an_end_reached_before_a_rebalance_is_not_the_end() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        delivery.absorb(Some(Fetched::End {
            generation: positions.generation(),
        }));
        assign(&positions, &[1], 0);
        assert!(matches!(delivery.take(), Taken::Empty));
        delivery.absorb(Some(Fetched::End {
            generation: positions.generation(),
        }));
        assert!(matches!(delivery.take(), Taken::End));
        // Final once told.
        assert!(matches!(delivery.take(), Taken::End));
    }

    #[test]
    fn taking_an_item_frees_its_bytes_of_the_budget() {
        let positions = owning(&[0], 0);
        let mut delivery = delivery(&positions, CommitPolicy::Auto);
        let generation = positions.generation();
        send(&mut delivery, generation, vec![change(0, 0), change(0, 1)]);
        let both = delivery.read_ahead.waiting();
        assert!(both > 0);
        assert_eq!(next(&mut delivery), Some((0, 0)));
        assert_eq!(delivery.read_ahead.waiting(), both / 2);
        assert_eq!(next(&mut delivery), Some((0, 1)));
        assert_eq!(delivery.read_ahead.waiting(), 0);
    }
}
