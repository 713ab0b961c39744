//! The fetch thread: polls librdkafka, decodes each message into an item (or, for a stream read
//! in batches, copies it into a run read into rows; see [`super::run`]), and sends items in
//! batches to the application side, labelled with the assignment generation they were fetched
//! in. It applies the decode-error policy, passes transaction markers and compacted gaps,
//! pauses fetching while the read-ahead budget is full, commits finished positions every
//! `commit_interval`, and ends a bounded read when every partition reached its end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::budget::ReadAhead;
use super::config::OnDecodeError;
use super::context::{commit, Kafka};
use super::delivery::{Buffered, DeadLetter, Item};
use super::doorbell::Doorbell;
use super::run::Runs;
use crate::change::{Change, ChangeDecoder, Message, Position};
use crate::error::{Error, Result};
use crate::positions::Positions;

/// The read-ahead room below which runs are read one at a time: a second run sent ahead
/// made `read_table` (8 MiB of read-ahead) peak 10–20 MB higher, for no gain in its speed.
const ROOM_FOR_TWO_RUNS: usize = 16 << 20;
/// How long one poll of librdkafka may block; also bounds how fast the thread notices a stop.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How many messages in a row the fetch thread takes between its checks for a failure,
/// back-pressure, a bounded read's end and a periodic commit.
const HOUSEKEEPING_EVERY: usize = 64;
/// Most items sent through the channel at once.
const BATCH_SIZE: usize = 512;
/// How long resuming waits for the request that wakes librdkafka's broker threads.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the fetch thread sends.
pub(super) enum Fetched {
    /// Items fetched while the assignment was at `generation`.
    Items {
        generation: u64,
        items: Vec<Buffered>,
    },
    Failed(Error),
    /// A bounded read reached its end with the assignment at `generation`.
    End {
        generation: u64,
    },
}

/// The fetch thread's state.
pub(super) struct Fetch {
    pub(super) consumer: Arc<Kafka>,
    pub(super) positions: Arc<Positions>,
    pub(super) decoder: ChangeDecoder,
    pub(super) sender: mpsc::UnboundedSender<Fetched>,
    /// Rung after every hand-over, for an async reader waiting on its event loop.
    pub(super) doorbell: Arc<Doorbell>,
    pub(super) stop: Arc<AtomicBool>,
    /// Set once the stream is read in batches: how many messages a run reads at most.
    pub(super) rows_per_run: Arc<AtomicUsize>,
    /// Messages being copied and read into rows, for a stream read in batches.
    pub(super) runs: Runs,
    pub(super) bounded: bool,
    pub(super) auto_commit: bool,
    pub(super) commit_interval: Duration,
    pub(super) on_decode_error: OnDecodeError,
    pub(super) read_ahead: Arc<ReadAhead>,
    /// Bytes of the batch being filled.
    pub(super) batch_bytes: usize,
    /// Whether fetching is paused because the application has a full read-ahead waiting.
    pub(super) paused_for_room: bool,
    /// Next offset after the last message taken from each partition in this generation.
    pub(super) fetched_to: FxHashMap<String, FxHashMap<i32, i64>>,
    /// Bounded reads: the end of the partition taken from last, as looked up in the shared
    /// positions (whose lock the application thread takes for every change it finishes).
    pub(super) end_ahead: Option<EndAhead>,
}

/// Where a partition ends, looked up in one generation (which fixes it).
pub(super) struct EndAhead {
    topic: String,
    partition: i32,
    generation: u64,
    /// `i64::MAX` for a partition that does not end.
    end: i64,
}

impl Fetch {
    pub(super) fn run(mut self) {
        let consumer = self.consumer.clone();
        let mut batch = Vec::new();
        let mut generation = self.positions.generation();
        let mut last_commit = Instant::now();
        let mut ended = false;
        // Messages taken one after the other: the checks below that take locks or the clock
        // run once per HOUSEKEEPING_EVERY of them, not per message.
        let mut in_a_row = 0usize;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let housekeeping = in_a_row % HOUSEKEEPING_EVERY == 0;
            if let Some(error) = housekeeping
                .then(|| consumer.context().take_failure())
                .flatten()
            {
                self.fail(&mut batch, generation, error);
                return;
            }
            if self.positions.generation() != generation {
                // A rebalance ran inside the last poll: drop what was fetched for partitions
                // revoked since, and label the rest with the new generation.
                if let Err(error) = self.take_back_runs(&mut batch) {
                    self.fail(&mut batch, generation, error);
                    return;
                }
                batch.retain(|buffered: &Buffered| {
                    let p = buffered.item.position();
                    self.positions.is_current(&p.topic, p.partition, generation)
                });
                if self
                    .runs
                    .filling
                    .partition()
                    .is_some_and(|(t, p)| !self.positions.is_current(t, p, generation))
                {
                    self.runs.filling.clear();
                }
                self.batch_bytes = batch.iter().map(|b| b.bytes).sum();
                generation = self.positions.generation();
                self.fetched_to.clear();
                // An end sent before is for the assignment before (the application side
                // drops it now): read what the new assignment holds, then end again.
                ended = false;
                if self.paused_for_room {
                    // Partitions assigned by the rebalance start unpaused.
                    pause_all(&consumer);
                } else {
                    // librdkafka keeps a partition paused across its revocation and a later
                    // assignment: one paused when this member had read everything may come
                    // back with more to read.
                    self.resume_remaining();
                }
            }
            if !ended && housekeeping {
                self.apply_backpressure();
            }
            if housekeeping && self.bounded && !ended && self.positions.all_done() {
                if let Err(error) = self.finish_runs(&mut batch) {
                    self.fail(&mut batch, generation, error);
                    return;
                }
                if !self.send(&mut batch, generation)
                    || self.sender.send(Fetched::End { generation }).is_err()
                {
                    return;
                }
                self.doorbell.handed_over();
                // The read is over, but the stream is still a group member until it is
                // closed: keep serving rebalances and committing what the application
                // finishes, with nothing fetched.
                ended = true;
                pause_all(&consumer);
            }
            if housekeeping && self.auto_commit && last_commit.elapsed() >= self.commit_interval {
                last_commit = Instant::now();
                match commit(&consumer, &self.positions, self.positions.uncommitted()) {
                    Ok(()) => {}
                    // Refused for good (the group's authorization revoked, say).
                    Err(error) if !error.is_retriable() => {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                    Err(error) => {
                        log::warn!("periodic commit failed (retried at the next interval): {error}")
                    }
                }
            }
            let wait = if self.paused_for_room {
                // Only librdkafka's events to serve: wait for room instead.
                self.read_ahead.wait_drained(POLL_SLICE);
                Duration::ZERO
            } else if batch.is_empty() {
                POLL_SLICE
            } else {
                Duration::ZERO
            };
            let polled = consumer.poll(wait);
            in_a_row = match &polled {
                Some(Ok(_)) => in_a_row + 1,
                _ => 0,
            };
            match polled {
                None => {
                    // Nothing more for now: hand over everything read.
                    if let Err(error) = self.finish_runs(&mut batch) {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                    if !ended {
                        self.pass_gaps(&mut batch);
                    }
                    if !self.send(&mut batch, generation) {
                        return;
                    }
                    self.check_positions();
                }
                Some(Ok(_)) if ended => {}
                Some(Ok(message)) => {
                    if let Err(error) = self.take(&message, &mut batch) {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                }
                Some(Err(RdKafkaError::PartitionEOF(_))) => {
                    if let Err(error) = self.finish_runs(&mut batch) {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                    if !ended {
                        self.pass_gaps(&mut batch);
                    }
                    self.check_positions();
                }
                Some(Err(error)) if consumer.context().refuses_unused_group(&error) => {}
                Some(Err(error)) => {
                    // The context's error callback logged connection failures already.
                    let reported_by_context = matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::BrokerTransportFailure
                                | RDKafkaErrorCode::AllBrokersDown
                        )
                    );
                    let context = consumer.context();
                    // librdkafka reports an error both to the context (with its reason) and
                    // here (without): prefer the one with the reason. A fatal error, whatever
                    // its code, leaves the client unusable.
                    let error = context
                        .take_failure()
                        .or_else(|| {
                            consumer
                                .client()
                                .fatal_error()
                                .map(|(code, reason)| Error::Kafka {
                                    reason: format!("fatal: {code}: {reason}"),
                                    retriable: false,
                                })
                        })
                        .unwrap_or_else(|| Error::from(error));
                    if !error.is_retriable() {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                    if reported_by_context {
                        log::debug!("{error}");
                    } else {
                        log::warn!("{error}");
                    }
                }
            }
            let full = batch.len() >= BATCH_SIZE || self.batch_bytes >= self.read_ahead.room / 4;
            if full && !self.send(&mut batch, generation) {
                return;
            }
        }
    }

    /// Pause fetching while the application has `room` bytes of changes waiting, and resume
    /// once it has taken half of them. Paused partitions keep their place: librdkafka drops
    /// what it prefetched for them and fetches it again on resume.
    fn apply_backpressure(&mut self) {
        if !self.paused_for_room && self.read_ahead.is_full() {
            pause_all(&self.consumer);
            self.paused_for_room = true;
            self.read_ahead.pauses.fetch_add(1, Ordering::Relaxed);
        } else if self.paused_for_room && self.read_ahead.is_drained() {
            self.paused_for_room = false;
            self.resume_remaining();
        }
    }

    /// Resume fetching the assigned partitions, except those a bounded read is done with.
    fn resume_remaining(&self) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let remaining = self.positions.remaining();
        let mut resume = TopicPartitionList::new();
        for element in assignment.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if !self.bounded
                || remaining
                    .iter()
                    .any(|(t, p, _)| t == topic && *p == partition)
            {
                resume.add_partition(topic, partition);
            }
        }
        if resume.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.resume(&resume) {
            log::warn!("resuming fetching: {error}");
        }
        // A broker thread with nothing to fetch looks at its partitions again only after up
        // to a second; any request to the partitions' leaders wakes it now.
        if resume.set_all_offsets(Offset::End).is_ok() {
            let _ = self.consumer.offsets_for_times(resume, WAKE_TIMEOUT);
        }
    }

    /// Bounded reads: whether a message lies past its partition's end (see
    /// [`Positions::past_end`]); one well before the end is told so without the lock.
    fn past_end(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let generation = self.positions.generation();
        if let Some(ahead) = &self.end_ahead {
            if ahead.partition == partition
                && ahead.generation == generation
                && offset.saturating_add(1) < ahead.end
                && ahead.topic == topic
            {
                return false;
            }
        }
        let past = self.positions.past_end(topic, partition, offset);
        self.end_ahead = self.positions.end_of(topic, partition).map(|end| EndAhead {
            topic: topic.to_owned(),
            partition,
            generation,
            end: end.unwrap_or(i64::MAX),
        });
        past
    }

    fn push(&mut self, batch: &mut Vec<Buffered>, item: Item) {
        let buffered = Buffered::new(item);
        self.batch_bytes += buffered.bytes;
        batch.push(buffered);
    }

    /// Decode one message into the batch, applying the decode-error policy.
    fn take(&mut self, message: &BorrowedMessage<'_>, batch: &mut Vec<Buffered>) -> Result<()> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        if self.bounded && self.past_end(topic, partition, offset) {
            // Written after the end was fixed: not part of this read.
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let _ = self.consumer.pause(&tpl);
            return Ok(());
        }
        self.note_fetched(topic, partition, offset + 1);
        let position = || Position {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
        };
        // Read once: librdkafka parses a message's headers (allocating) on every `headers()`,
        // even when there are none.
        let headers = message.headers();
        let (key_schema_header, value_schema_header) = schema_id_headers(headers);
        let rows_per_run = self.rows_per_run.load(Ordering::Relaxed);
        // Changes read in batches have their `source` block read into metadata columns.
        self.decoder.set_source_deferred(rows_per_run == 0);
        if rows_per_run > 0
            && message.payload().is_none()
            && !self.decoder.emits_tombstones()
            && self.runs.filling.passes_tombstone(topic, partition)
        {
            // Debezium's tombstone after a delete: passed with the run's rows.
            self.runs.filling.push_tombstone(message);
            return Ok(());
        }
        if rows_per_run > 0 {
            let planned = self.runs.plan(
                &mut self.decoder,
                topic,
                message,
                (key_schema_header, value_schema_header),
            );
            match planned {
                Some(mut planned) => {
                    let filling = &self.runs.filling;
                    if !filling.continues(topic, partition, &planned)
                        || filling.len() >= rows_per_run
                        || filling.heap_bytes() >= self.read_ahead.room / 4
                    {
                        planned = filling.framed(planned, message.key().is_some());
                        self.read_filling_run(batch)?;
                    }
                    return self.runs.filling.push(topic, message, headers, planned);
                }
                // Read by the decoder, after the runs before it.
                None => self.finish_runs(batch)?,
            }
        }
        let decoded = self.decoder.decode(&Message {
            topic,
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
            key_schema_header,
            value_schema_header,
        });
        self.push_decoded(batch, decoded, position, |error| {
            dead_letter(message, error)
        })
    }

    /// Push what decoding one message gave, applying the decode-error policy to a failure:
    /// raise it, skip the message (passed), or set it aside as a dead letter.
    fn push_decoded(
        &mut self,
        batch: &mut Vec<Buffered>,
        decoded: Result<Option<Change>>,
        position: impl FnOnce() -> Position,
        dead_letter: impl FnOnce(Error) -> DeadLetter,
    ) -> Result<()> {
        let item = match decoded {
            Ok(Some(change)) => Item::Change(Box::new(change)),
            // A tombstone not delivered: passed like any message, so positions move past it.
            Ok(None) => Item::Passed(position()),
            Err(error) => match self.on_decode_error {
                OnDecodeError::Raise => return Err(error),
                OnDecodeError::Skip => {
                    log::warn!("skipping: {error}");
                    let skipped = &self.positions.counters.skipped;
                    skipped.fetch_add(1, Ordering::Relaxed);
                    Item::Passed(position())
                }
                OnDecodeError::DeadLetter => {
                    let dead_lettered = &self.positions.counters.dead_lettered;
                    dead_lettered.fetch_add(1, Ordering::Relaxed);
                    Item::DeadLetter(Box::new(dead_letter(error)))
                }
            },
        };
        self.push(batch, item);
        Ok(())
    }

    /// Start reading the filling run (on the reader thread), once there is room: the oldest
    /// run being read is taken back into the batch when two are, or when the runs would hold
    /// more than the share of the read-ahead a batch being filled may. With a small
    /// read-ahead (the followers' 8 MiB), one run at a time.
    fn read_filling_run(&mut self, batch: &mut Vec<Buffered>) -> Result<()> {
        let room = self.read_ahead.room;
        let two_runs_hold = if room >= ROOM_FOR_TWO_RUNS {
            room / 4
        } else {
            0
        };
        if !self.runs.can_start_reading(two_runs_hold) {
            self.take_back_run(batch)?;
        }
        if let Some((topic, _)) = self.runs.filling.shared() {
            let table = self.decoder.table_of(topic);
            self.runs.start_reading(table);
        }
        Ok(())
    }

    /// Read every run and take the rows into the batch: before anything that follows them.
    fn finish_runs(&mut self, batch: &mut Vec<Buffered>) -> Result<()> {
        self.read_filling_run(batch)?;
        self.take_back_runs(batch)
    }

    /// Take every run being read back into the batch, in order.
    fn take_back_runs(&mut self, batch: &mut Vec<Buffered>) -> Result<()> {
        while self.runs.is_reading() {
            self.take_back_run(batch)?;
        }
        Ok(())
    }

    /// Take the oldest run being read back into the batch: its rows, and the messages the
    /// plan did not follow decoded into changes (with the decode-error policy). The decoder
    /// learns the table and schema the run ended with, as if it had read the rows itself.
    fn take_back_run(&mut self, batch: &mut Vec<Buffered>) -> Result<()> {
        let decoder = &mut self.decoder;
        let read = self.runs.take_read(|topic| decoder.table_of(topic));
        let Some(read) = read.inspect_err(|_| {
            // Nothing after the lost run may be delivered either.
            self.runs.filling.clear();
        })?
        else {
            return Ok(());
        };
        let run = read.run;
        if let Some((topic, framing)) = run.shared() {
            self.decoder.note_read(topic, framing, read.table);
        }
        for rows in read.rows {
            self.push(batch, Item::Rows(Box::new(rows)));
        }
        let outcome = (read.rest.unwrap_or(run.len())..run.len()).try_for_each(|index| {
            let decoded = self.decoder.decode(&run.message(index));
            self.push_decoded(
                batch,
                decoded,
                || run.position(index).clone(),
                |error| run.dead_letter(index, error),
            )
        });
        self.runs.recycle(run);
        if outcome.is_err() {
            // The stream fails at that message: nothing after it is read.
            self.runs.filling.clear();
            self.runs.drop_reading();
        }
        outcome
    }

    /// Deliver what came before a failure, then the failure; fetching stops, since going on
    /// would skip the message that failed.
    fn fail(&mut self, batch: &mut Vec<Buffered>, generation: u64, error: Error) {
        // A message read earlier that the policy raises on comes first.
        let error = self.finish_runs(batch).err().unwrap_or(error);
        if self.send(batch, generation) {
            let _ = self.sender.send(Fetched::Failed(error));
            self.doorbell.handed_over();
        }
    }

    /// Send the batch (if any), counting its bytes as waiting. False once the channel is
    /// closed.
    fn send(&mut self, batch: &mut Vec<Buffered>, generation: u64) -> bool {
        if batch.is_empty() {
            return true;
        }
        // The next batch starts at this one's size: grown from empty, it was moved to a larger
        // allocation seven times on its way to BATCH_SIZE.
        let items = std::mem::replace(batch, Vec::with_capacity(batch.len()));
        self.read_ahead.add(std::mem::take(&mut self.batch_bytes));
        let sent = self
            .sender
            .send(Fetched::Items { generation, items })
            .is_ok();
        self.doorbell.handed_over();
        // The budget grows only here, so a full one pauses here, not at the next housekeeping:
        // a poll that came back empty before it would send its partial batch on top.
        if !self.paused_for_room && self.read_ahead.is_full() {
            self.apply_backpressure();
        }
        sent
    }

    /// Where the consumer's position is past the last message taken from a partition —
    /// transaction markers, aborted transactions or a compacted gap — pass those offsets, so
    /// positions and `lag()` reach the end. Never past a bounded read's end: messages there
    /// were dropped, not passed.
    fn pass_gaps(&mut self, batch: &mut Vec<Buffered>) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut gaps = Vec::new();
        {
            let table = self.positions.lock();
            for element in positions.elements() {
                let Offset::Offset(mut at) = element.offset() else {
                    continue;
                };
                let (topic, partition) = (element.topic(), element.partition());
                let Some(state) = table.get(topic).and_then(|t| t.get(&partition)) else {
                    continue;
                };
                if let Some(end) = state.end {
                    at = at.min(end);
                }
                let from = self
                    .fetched_to
                    .get(topic)
                    .and_then(|t| t.get(&partition))
                    .copied()
                    .or(state.start);
                if from.is_some_and(|from| at > from) {
                    gaps.push((topic.to_owned(), partition, at));
                }
            }
        }
        for (topic, partition, at) in gaps {
            self.note_fetched(&topic, partition, at);
            let position = Position {
                topic: topic.into(),
                partition,
                offset: at - 1,
                timestamp_ms: None,
            };
            self.push(batch, Item::Passed(position));
        }
    }

    /// Note how far a partition was taken (next offset); allocates only for a new topic.
    fn note_fetched(&mut self, topic: &str, partition: i32, next: i64) {
        match self.fetched_to.get_mut(topic) {
            Some(partitions) => partitions.insert(partition, next),
            None => self
                .fetched_to
                .entry(topic.to_owned())
                .or_default()
                .insert(partition, next),
        };
    }

    /// Bounded reads: ask librdkafka for the positions of partitions not yet at their end; a
    /// transaction marker or a compacted gap can put the end past the last message.
    fn check_positions(&self) {
        if !self.bounded {
            return;
        }
        let remaining = self.positions.remaining();
        if remaining.is_empty() {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for (topic, partition, _) in remaining {
            if let Some(Offset::Offset(position)) = positions
                .find_partition(&topic, partition)
                .map(|e| e.offset())
            {
                self.positions.reached(&topic, partition, position);
            }
        }
    }
}

/// Stop fetching every assigned partition.
fn pause_all(consumer: &Kafka) {
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
}

fn dead_letter(message: &BorrowedMessage<'_>, error: Error) -> DeadLetter {
    DeadLetter {
        position: Position {
            topic: message.topic().into(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
        },
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: owned_headers(message.headers()),
        error,
    }
}

/// A message's headers, copied out of librdkafka's buffers.
pub(super) fn owned_headers(headers: Option<&BorrowedHeaders>) -> Vec<(String, Option<Vec<u8>>)> {
    headers
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// The `__key_schema_id` and `__value_schema_id` headers, found in one pass.
fn schema_id_headers(headers: Option<&BorrowedHeaders>) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut key, mut value) = (None, None);
    if let Some(headers) = headers {
        for header in headers.iter() {
            match header.key {
                "__key_schema_id" => key = header.value,
                "__value_schema_id" => value = header.value,
                _ => {}
            }
        }
    }
    (key, value)
}
