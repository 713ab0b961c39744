//! Runs: messages read straight into Arrow rows, for a stream read with `batches()`.
//!
//! While the application reads a stream in batches, the fetch thread does not decode each
//! message into a change. It copies consecutive messages of one partition under one value
//! schema into a [`Run`], and reads the run's bodies with that schema's [`BodyPlan`] into
//! record batches at once ([`Rows`]). The decoder still frames every message (so an unknown
//! schema id or bad framing is found where it always was) and keeps each topic's latest table
//! and schema, so what follows a run decodes as if the run had been decoded too.
//!
//! Whatever the plan does not follow is decoded message by message as before: a message
//! that cannot join a run (a tombstone, a topic with a reader schema, a schema the plan does
//! not plan) ends the run, and when the plan stops inside a run (a logical decoding message,
//! a body that fails) the rest of the run is decoded by the fetch thread, which applies the
//! decode-error policy to the failing message alone, after everything before it.
//!
//! Runs are read on a thread of their own ([`Runs`]) while the fetch thread polls and copies
//! the next ones: with a large read-ahead the thread holds up to two runs, so the fetch thread
//! fills a third and waits only when the reading falls two runs behind (with a small one, the
//! followers', one run at a time). The fetch thread takes rows back in order,
//! before it adds anything that comes after them, so the log order holds, and tells the
//! decoder the table each run ended with. A run that follows one of its topic still being read
//! starts with the table that one ends with, handed on by the reader thread; when the decoder
//! had to read the end of the run before (which may change the table), it is read again. A
//! long run is read in two halves on two cores: a scoped thread reads the second half,
//! starting with the table the first starts with, and its rows are kept only when the first
//! half was one batch of that table (so the second started where the first ended); otherwise
//! it is read again after the first.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Message as _};
use rustc_hash::FxHashMap;

use super::batch::Rows;
use super::delivery::DeadLetter;
use super::fetch::owned_headers;
use crate::arrow::{Body, BodyPlan, Read};
use crate::avro::Schema;
use crate::change::{ChangeDecoder, Framing, Message, Position};
use crate::error::{Error, Result};
use crate::name::Name;

/// Runs shorter than twice this are read on one core: a thread is not worth it.
const MIN_HALF: usize = 256;
/// Runs the reader thread holds at once (one being read, one waiting): while it reads, the
/// fetch thread fills the next run, and waits for a run's rows only when two are ahead of it
/// (or when the runs ahead hold the fetch thread's share of the read-ahead).
const MAX_READING: usize = 2;

/// The fetch thread's runs: the one being filled, and those being read.
#[derive(Default)]
pub(super) struct Runs {
    /// The plan of each value schema seen (`None`: the plan does not follow that schema), by
    /// schema id and envelope.
    plans: FxHashMap<(u32, bool), Option<Arc<BodyPlan>>>,
    /// The run being filled.
    pub(super) filling: Run,
    /// A run read before, kept for its buffers.
    spare: Option<Run>,
    /// The thread that reads runs, started with the first run.
    reader: Option<RunReader>,
    /// The topic and heap bytes of each run the reader thread holds whose rows are not taken
    /// back yet, oldest first.
    reading: VecDeque<(Name, usize)>,
    /// A run read on the fetch thread (when no reader thread could start), not taken back;
    /// only while the reader thread holds none.
    done: Option<ReadRun>,
    /// Whether the run taken back last left messages to the decoder, which may change the
    /// table the run after it starts with.
    rest_left: bool,
}

/// The thread that reads runs, and the channels to it.
struct RunReader {
    runs: SyncSender<ToRead>,
    read: Receiver<ReadRun>,
}

/// A run for the reader thread, and the table its messages that name none are of; when it
/// `continues` the run sent before it (same topic), the table that run ends with instead.
struct ToRead {
    run: Run,
    table: Name,
    continues: bool,
}

impl RunReader {
    fn start() -> Option<RunReader> {
        let (runs, to_read) = mpsc::sync_channel::<ToRead>(MAX_READING - 1);
        let (done, read) = mpsc::sync_channel(MAX_READING - 1);
        crate::threads::spawn("changestream-rows", move || {
            let mut ended_with: Option<Name> = None;
            // Ends when the fetch thread drops its end of either channel.
            for to_read in to_read {
                let table = match ended_with.take() {
                    Some(table) if to_read.continues => table,
                    _ => to_read.table,
                };
                let (rows, rest, table) = to_read.run.read(table);
                ended_with = Some(table);
                let read = ReadRun {
                    run: to_read.run,
                    rows,
                    rest,
                    table,
                    continued: to_read.continues,
                };
                if done.send(read).is_err() {
                    return;
                }
            }
        })
        .ok()?;
        Some(RunReader { runs, read })
    }
}

/// A run read: its rows, the index of its first message the decoder must read (if any), the
/// table its last message read into rows was of, and whether it started with the table the
/// run before it ended with.
pub(super) struct ReadRun {
    pub(super) run: Run,
    pub(super) rows: Vec<Rows>,
    pub(super) rest: Option<usize>,
    pub(super) table: Name,
    continued: bool,
}

impl Runs {
    /// How `message` can join a run, or `None` when the decoder must read it (a tombstone, a
    /// reader schema, a schema the plan does not follow, anything the decoder would refuse).
    pub(super) fn plan(
        &mut self,
        decoder: &mut ChangeDecoder,
        topic: &str,
        message: &BorrowedMessage<'_>,
        headers: (Option<&[u8]>, Option<&[u8]>),
    ) -> Option<Planned> {
        if let Some(planned) = self.filling.continued_by(topic, message, headers) {
            return Some(planned);
        }
        let value = decoder
            .frame_value(topic, message.payload()?, headers.1)
            .ok()??;
        let key = match message.key() {
            Some(key) => Some(decoder.frame_key(key, headers.0).ok()?),
            None => None,
        };
        let plan = self
            .plans
            .entry((value.id, value.debezium))
            .or_insert_with(|| {
                BodyPlan::new(value.id, value.schema.clone(), value.debezium).map(Arc::new)
            })
            .clone()?;
        Some(Planned::Framed { key, value, plan })
    }

    /// Whether a run is being read and not taken back.
    pub(super) fn is_reading(&self) -> bool {
        !self.reading.is_empty() || self.done.is_some()
    }

    /// Whether the filling run can start being read before the oldest run being read is
    /// taken back: a second run only while the runs together hold at most `bytes`.
    pub(super) fn can_start_reading(&self, bytes: usize) -> bool {
        let held =
            || self.reading.iter().map(|(_, b)| b).sum::<usize>() + self.filling.heap_bytes();
        self.done.is_none()
            && (self.reading.is_empty() || (self.reading.len() < MAX_READING && held() <= bytes))
    }

    /// Start reading the filling run, whose messages that name no table are of `table` (the
    /// decoder's, which is out of date when the last run sent is of the same topic: that
    /// run's end is taken instead). Read on the reader thread, or here if it cannot run.
    pub(super) fn start_reading(&mut self, table: Name) {
        let Some(topic) = self.filling.current.as_ref().map(|run| run.topic) else {
            return;
        };
        let spare = self.spare.take().unwrap_or_default();
        let run = std::mem::replace(&mut self.filling, spare);
        if self.reader.is_none() && self.reading.is_empty() {
            self.reader = RunReader::start();
        }
        let continues = self.reading.back().is_some_and(|(last, _)| *last == topic);
        let bytes = run.heap_bytes();
        let to_read = ToRead {
            run,
            table,
            continues,
        };
        let to_read = match &self.reader {
            Some(reader) => match reader.runs.send(to_read) {
                Ok(()) => {
                    self.reading.push_back((topic, bytes));
                    return;
                }
                Err(mpsc::SendError(back)) => back,
            },
            None => to_read,
        };
        // No reader thread: the runs before were taken back (so the decoder's table is the
        // one this run starts with), or were lost with the thread (so the stream fails when
        // it takes them back, before this run).
        let (rows, rest, table) = to_read.run.read(to_read.table);
        self.done = Some(ReadRun {
            run: to_read.run,
            rows,
            rest,
            table,
            continued: false,
        });
    }

    /// Take back the oldest run being read, waiting for it; `None` when none is. A run that
    /// started with the table the run before ended with, when the decoder read the end of
    /// that run (and may have moved on to another table), is read again with `table_of` its
    /// topic (the decoder's table, asked now). An error when the reader thread died with the
    /// run (a bug): the stream must fail, not skip it.
    pub(super) fn take_read(
        &mut self,
        table_of: impl FnOnce(&str) -> Name,
    ) -> Result<Option<ReadRun>> {
        let read = if self.reading.pop_front().is_none() {
            self.done.take()
        } else {
            Some(self.receive()?)
        };
        Ok(read.map(|mut read| {
            if read.continued && self.rest_left {
                if let Some((topic, _)) = read.run.shared() {
                    (read.rows, read.rest, read.table) = read.run.read(table_of(topic));
                }
            }
            self.rest_left = read.rest.is_some();
            read
        }))
    }

    fn receive(&mut self) -> Result<ReadRun> {
        let received = self.reader.as_ref().map(|reader| reader.read.recv());
        match received {
            Some(Ok(read)) => Ok(read),
            _ => {
                self.reader = None;
                self.reading.clear();
                self.done = None;
                Err(Error::decode(
                    "the thread reading messages into Arrow rows stopped (a bug); the stream \
                     fails here rather than skip them",
                ))
            }
        }
    }

    /// Drop the runs being read unread (what follows a message the stream fails at).
    pub(super) fn drop_reading(&mut self) {
        while self.reading.pop_front().is_some() {
            match self.receive() {
                Ok(read) => self.recycle(read.run),
                Err(_) => break,
            }
        }
        self.done = None;
        self.rest_left = false;
    }

    /// Keep a run taken back for its buffers.
    pub(super) fn recycle(&mut self, mut run: Run) {
        run.clear();
        self.spare = Some(run);
    }
}

/// Consecutive messages of one partition whose values have one schema, copied out of
/// librdkafka's buffers, not yet read.
#[derive(Default)]
pub(super) struct Run {
    /// What the run's messages share: topic, partition, value framing and plan.
    current: Option<Shared>,
    /// The messages' keys and values, one after the other.
    bytes: Vec<u8>,
    messages: Vec<Copied>,
    /// The schemas of the messages' keys, each once.
    key_schemas: Vec<Arc<Schema>>,
}

struct Shared {
    topic: Name,
    partition: i32,
    value: Framing,
    plan: Arc<BodyPlan>,
    /// The key framing of the run's first message, for the messages after it.
    key: Option<Framing>,
}

/// One message of a run.
struct Copied {
    position: Position,
    /// The key's schema (its index in the run's key schemas), its bytes (framing included)
    /// in the run's bytes and where its body starts.
    key: Option<(usize, Range<usize>, usize)>,
    /// The value's bytes (framing included) and where its body starts; `None` for Debezium's
    /// tombstone after a delete, which is not delivered and passes with the run's rows.
    value: Option<(Range<usize>, usize)>,
    /// The message's headers, kept for the decoder (schema id headers) and dead letters.
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// How a message can join a run.
pub(super) enum Planned {
    /// Framed as the filling run's messages are: same topic, value schema and key schema
    /// (when it has a key), no schema id headers. Nothing is cloned for it: the plan and the
    /// schemas are read by the reader thread, and counting references to them per message
    /// had both cores writing the cache lines that thread reads.
    AsFilling,
    /// Its value's framing and plan, its key's framing.
    Framed {
        key: Option<Framing>,
        value: Framing,
        plan: Arc<BodyPlan>,
    },
}

/// Where `message` of the run's topic sits (the topic's name shared, not copied).
fn position_of(topic: &Name, message: &BorrowedMessage<'_>) -> Position {
    Position {
        topic: *topic,
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// Where `schema` is among `schemas`, added if it is not.
fn index_of(schemas: &mut Vec<Arc<Schema>>, schema: &Arc<Schema>) -> usize {
    match schemas.iter().rposition(|s| Arc::ptr_eq(s, schema)) {
        Some(index) => index,
        None => {
            schemas.push(schema.clone());
            schemas.len() - 1
        }
    }
}

/// The schema id of a Confluent-framed payload (magic byte 0), without checking more.
fn framed_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

impl Run {
    /// Whether a message is framed as the run's first message (same topic, key and value
    /// schema ids, no schema id headers), found without the decoder's lookups.
    fn continued_by(
        &self,
        topic: &str,
        message: &BorrowedMessage<'_>,
        headers: (Option<&[u8]>, Option<&[u8]>),
    ) -> Option<Planned> {
        let run = self.current.as_ref()?;
        if headers != (None, None) || *run.topic != *topic {
            return None;
        }
        if framed_id(message.payload()?)? != run.value.id || run.value.body_start != 5 {
            return None;
        }
        match (message.key(), &run.key) {
            (Some(key), Some(framing))
                if framed_id(key) == Some(framing.id) && framing.body_start == 5 =>
            {
                Some(Planned::AsFilling)
            }
            (None, _) => Some(Planned::AsFilling),
            _ => None,
        }
    }

    /// `planned` framed on its own, for a message that starts a run after this one.
    pub(super) fn framed(&self, planned: Planned, has_key: bool) -> Planned {
        match (planned, &self.current) {
            (Planned::AsFilling, Some(run)) => Planned::Framed {
                key: run.key.clone().filter(|_| has_key),
                value: run.value.clone(),
                plan: run.plan.clone(),
            },
            (planned, _) => planned,
        }
    }

    /// Whether a tombstone of this partition passes with the run: the run's values are
    /// Debezium envelopes, after which a tombstone is not delivered (unless the stream emits
    /// tombstones, which the caller checks).
    pub(super) fn passes_tombstone(&self, topic: &str, partition: i32) -> bool {
        self.current.as_ref().is_some_and(|run| {
            run.value.debezium && run.partition == partition && &*run.topic == topic
        })
    }

    /// Add a tombstone that passes with the run (see [`Run::passes_tombstone`]).
    pub(super) fn push_tombstone(&mut self, message: &BorrowedMessage<'_>) {
        let Some(run) = &self.current else {
            return;
        };
        self.messages.push(Copied {
            position: position_of(&run.topic, message),
            key: None,
            value: None,
            headers: Vec::new(),
        });
    }

    /// Whether a message of this partition so planned continues the run.
    pub(super) fn continues(&self, topic: &str, partition: i32, planned: &Planned) -> bool {
        self.current.as_ref().is_none_or(|run| {
            run.partition == partition
                && match planned {
                    Planned::AsFilling => true,
                    Planned::Framed { value, .. } => {
                        run.value.id == value.id
                            && run.value.debezium == value.debezium
                            && &*run.topic == topic
                    }
                }
        })
    }

    /// Copy `message` of `topic` into the run (which it continues; a run with no messages
    /// takes a message `Planned::Framed`).
    pub(super) fn push(
        &mut self,
        topic: &str,
        message: &BorrowedMessage<'_>,
        headers: Option<&BorrowedHeaders>,
        planned: Planned,
    ) -> Result<()> {
        let key_framing = match planned {
            Planned::AsFilling => {
                let Some(run) = &self.current else {
                    return Err(Error::Internal(
                        "a message framed as the run before it started a run".into(),
                    ));
                };
                let framing = run.key.as_ref();
                framing.map(|f| (index_of(&mut self.key_schemas, &f.schema), f.body_start))
            }
            Planned::Framed { key, value, plan } => {
                let framing = key.as_ref();
                let framing =
                    framing.map(|f| (index_of(&mut self.key_schemas, &f.schema), f.body_start));
                self.current.get_or_insert_with(|| Shared {
                    topic: topic.into(),
                    partition: message.partition(),
                    value,
                    plan,
                    key,
                });
                framing
            }
        };
        let Some(run) = &self.current else {
            return Ok(());
        };
        let mut copy = |bytes: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(bytes);
            start..self.bytes.len()
        };
        let key = key_framing
            .zip(message.key())
            .map(|((schema, body_start), key)| (schema, copy(key), body_start));
        let value = Some((
            copy(message.payload().unwrap_or_default()),
            run.value.body_start,
        ));
        let headers = owned_headers(headers);
        self.messages.push(Copied {
            position: position_of(&run.topic, message),
            key,
            value,
            headers,
        });
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The bytes the run holds, as the read-ahead budget counts them.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes.len() + self.messages.len() * std::mem::size_of::<Copied>()
    }

    /// The partition of the run, if it has messages.
    pub(super) fn partition(&self) -> Option<(&str, i32)> {
        self.current
            .as_ref()
            .map(|run| (&*run.topic, run.partition))
    }

    /// Read the run's messages into rows, as far as the plan follows them; messages that name
    /// no table are of `table`. Returns the rows, the index of the first message the decoder
    /// must read (the rest of the run) if any, and the table the rows ended with.
    pub(super) fn read(&self, table: Name) -> (Vec<Rows>, Option<usize>, Name) {
        let Some(run) = &self.current else {
            return (Vec::new(), None, table);
        };
        // The messages with a value, and where each is among the run's messages.
        let (at, bodies): (Vec<usize>, Vec<Body<'_>>) = self
            .messages
            .iter()
            .enumerate()
            .filter_map(|(index, m)| {
                let (range, start) = m.value.as_ref()?;
                let body = Body {
                    position: &m.position,
                    key: m.key.as_ref().map(|(schema, range, start)| {
                        (
                            &*self.key_schemas[*schema],
                            &self.bytes[range.start + start..range.end],
                        )
                    }),
                    value: Some(&self.bytes[range.start + start..range.end]),
                };
                Some((index, body))
            })
            .unzip();
        let rows_of = |batch, bodies: Range<usize>, table: &Name| {
            // The rows' last message: up to the next row's, tombstones after them included.
            let last = at.get(bodies.end).map_or(self.messages.len(), |&next| next) - 1;
            self.rows(batch, &at[bodies], last, table, run.value.id)
        };
        let mut table = table;
        let mut rows = Vec::new();
        let mut start = 0;
        // The second half is read on another core in the meantime, with the table the first
        // half starts with: right whenever the first half is one batch of that table.
        if bodies.len() >= 2 * MIN_HALF {
            let half = bodies.len() / 2;
            let (first, second) = std::thread::scope(|scope| {
                let second = scope.spawn(|| run.plan.record_batch(&table, &bodies[half..]));
                let first = run.plan.record_batch(&table, &bodies[..half]);
                (first, second.join())
            });
            if let Ok(Read::Batch(first)) = first {
                rows.push(rows_of(first, 0..half, &table));
                start = half;
                if let Ok(Ok(Read::Batch(second))) = second {
                    rows.push(rows_of(second, half..bodies.len(), &table));
                    start = bodies.len();
                }
            }
        }
        while start < bodies.len() {
            let end = match run.plan.record_batch(&table, &bodies[start..]) {
                Ok(Read::Batch(batch)) => {
                    rows.push(rows_of(batch, start..bodies.len(), &table));
                    start = bodies.len();
                    continue;
                }
                // The run's next message names another table: read on with that table.
                Ok(Read::OtherTable {
                    index: 0,
                    table: named,
                }) if *named != *table => {
                    table = named.into();
                    continue;
                }
                Ok(Read::OtherTable {
                    index,
                    table: named,
                }) if index > 0 => {
                    match run.plan.record_batch(&table, &bodies[start..start + index]) {
                        Ok(Read::Batch(batch)) => {
                            rows.push(rows_of(batch, start..start + index, &table));
                            start += index;
                            table = named.into();
                            continue;
                        }
                        _ => start,
                    }
                }
                _ => start,
            };
            return (rows, Some(at[end]), table);
        }
        (rows, None, table)
    }

    /// The topic and value framing of the run's messages.
    pub(super) fn shared(&self) -> Option<(&str, &Framing)> {
        self.current.as_ref().map(|run| (&*run.topic, &run.value))
    }

    /// Rows of the messages at `indexes`, the last message they cover at `last`.
    fn rows(
        &self,
        batch: arrow_array::RecordBatch,
        indexes: &[usize],
        last: usize,
        table: &Name,
        schema_id: u32,
    ) -> Rows {
        Rows {
            batch,
            table: *table,
            schema_id,
            offsets: indexes
                .iter()
                .map(|&i| self.messages[i].position.offset)
                .collect(),
            last: self.messages[last].position.clone(),
        }
    }

    /// The run's message at `index` as the decoder reads it.
    pub(super) fn message(&self, index: usize) -> Message<'_> {
        let copied = &self.messages[index];
        let header = |name: &str| {
            copied
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.as_deref())
        };
        Message {
            topic: &copied.position.topic,
            partition: copied.position.partition,
            offset: copied.position.offset,
            timestamp_ms: copied.position.timestamp_ms,
            key: copied
                .key
                .as_ref()
                .map(|(_, range, _)| &self.bytes[range.clone()]),
            value: copied
                .value
                .as_ref()
                .map(|(range, _)| &self.bytes[range.clone()]),
            key_schema_header: header("__key_schema_id"),
            value_schema_header: header("__value_schema_id"),
        }
    }

    /// Where the message at `index` sits.
    pub(super) fn position(&self, index: usize) -> &Position {
        &self.messages[index].position
    }

    /// The message at `index` as a dead letter.
    pub(super) fn dead_letter(&self, index: usize, error: Error) -> DeadLetter {
        let message = self.message(index);
        DeadLetter {
            position: self.messages[index].position.clone(),
            key: message.key.map(<[u8]>::to_vec),
            value: message.value.map(<[u8]>::to_vec),
            headers: self.messages[index].headers.clone(),
            error,
        }
    }

    /// Empty the run, keeping its buffers and plans.
    pub(super) fn clear(&mut self) {
        self.current = None;
        self.bytes.clear();
        self.messages.clear();
        self.key_schemas.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow::BodyPlan;
    use crate::avro::write_long;

    const TOPIC: &str = "shop.orders";

    /// One message of a test run.
    #[derive(Clone, Copy)]
    enum Msg {
        /// A flat row `{id, __table}`.
        Row(i64, &'static str),
        /// A row whose body ends early.
        Cut(i64),
        /// A tombstone passed with the run.
        Tombstone,
        /// A Debezium insert of `{id}` whose `source.table` is this ("" names none).
        Insert(i64, &'static str),
    }
    use Msg::*;

    /// A run of flat rows `{id: long, __table: string}` (schema id 2), one message each.
    fn run(messages: &[Msg]) -> Run {
        let schema = r#"{"type": "record", "name": "orders", "fields": [
            {"name": "id", "type": "long"}, {"name": "__table", "type": "string"}]}"#;
        run_of(schema, 2, false, messages)
    }

    /// A run of Debezium inserts (schema id 3).
    fn debezium_run(messages: &[Msg]) -> Run {
        let schema = r#"{"type": "record", "name": "Envelope", "namespace": "shop.orders",
            "fields": [
                {"name": "before", "type": ["null", {"type": "record", "name": "Value",
                    "fields": [{"name": "id", "type": "long"}]}]},
                {"name": "after", "type": ["null", "Value"]},
                {"name": "source", "type": {"type": "record", "name": "Source",
                    "fields": [{"name": "table", "type": "string"}]}},
                {"name": "op", "type": "string"}]}"#;
        run_of(schema, 3, true, messages)
    }

    fn run_of(schema: &str, id: u32, debezium: bool, messages: &[Msg]) -> Run {
        let schema = Arc::new(Schema::parse(schema).unwrap());
        let plan = Arc::new(BodyPlan::new(id, schema.clone(), debezium).unwrap());
        let topic: Name = TOPIC.into();
        let mut run = Run {
            current: Some(Shared {
                topic,
                partition: 0,
                value: Framing {
                    id,
                    schema,
                    debezium,
                    body_start: 5,
                },
                plan,
                key: None,
            }),
            ..Run::default()
        };
        for (offset, message) in messages.iter().enumerate() {
            let start = run.bytes.len();
            let value = match *message {
                Row(row_id, table) => {
                    run.bytes.extend_from_slice(&[0, 0, 0, 0, id as u8]);
                    write_long(&mut run.bytes, row_id);
                    write_long(&mut run.bytes, table.len() as i64);
                    run.bytes.extend_from_slice(table.as_bytes());
                    Some((start..run.bytes.len(), 5))
                }
                Cut(row_id) => {
                    run.bytes.extend_from_slice(&[0, 0, 0, 0, id as u8]);
                    write_long(&mut run.bytes, row_id);
                    write_long(&mut run.bytes, 10);
                    Some((start..run.bytes.len(), 5))
                }
                Insert(row_id, table) => {
                    run.bytes.extend_from_slice(&[0, 0, 0, 0, id as u8]);
                    write_long(&mut run.bytes, 0); // before: null
                    write_long(&mut run.bytes, 1); // after: the row
                    write_long(&mut run.bytes, row_id);
                    for text in [table, "c"] {
                        write_long(&mut run.bytes, text.len() as i64);
                        run.bytes.extend_from_slice(text.as_bytes());
                    }
                    Some((start..run.bytes.len(), 5))
                }
                Tombstone => None,
            };
            run.messages.push(Copied {
                position: Position {
                    topic,
                    partition: 0,
                    offset: offset as i64,
                    timestamp_ms: None,
                },
                key: None,
                value,
                headers: Vec::new(),
            });
        }
        run
    }

    /// Each rows' table, offsets and last offset.
    fn summary(rows: &[Rows]) -> Vec<(String, Vec<i64>, i64)> {
        rows.iter()
            .map(|r| (r.table.to_string(), r.offsets.clone(), r.last.offset))
            .collect()
    }

    #[test]
    fn a_run_of_two_tables_is_two_rows_in_order_and_tombstones_pass_with_them() {
        let messages = [Row(1, "a"), Tombstone, Row(2, "a"), Row(3, "b"), Tombstone];
        let (rows, rest, table) = run(&messages).read("orders".into());
        assert_eq!(
            summary(&rows),
            vec![("a".into(), vec![0, 2], 2), ("b".into(), vec![3], 4)]
        );
        assert_eq!(rows[0].batch.num_rows(), 2);
        assert_eq!((rest, &*table), (None, "b"));
    }

    #[test]
    fn a_long_run_is_read_in_halves() {
        let count = 2 * MIN_HALF + 10;
        let messages = (0..count as i64).map(|i| Row(i, "a")).collect::<Vec<_>>();
        let (rows, rest, table) = run(&messages).read("a".into());
        assert_eq!((rest, &*table), (None, "a"));
        assert_eq!(rows.len(), 2);
        let offsets = rows
            .iter()
            .flat_map(|r| r.offsets.clone())
            .collect::<Vec<_>>();
        assert_eq!(offsets, (0..count as i64).collect::<Vec<_>>());
        assert_eq!(
            rows.iter().map(|r| r.batch.num_rows()).sum::<usize>(),
            count
        );
    }

    #[test]
    fn a_second_half_of_another_table_is_read_again_after_the_first() {
        let mut messages = (0..MIN_HALF as i64)
            .map(|i| Row(i, "a"))
            .collect::<Vec<_>>();
        messages.extend((0..MIN_HALF as i64).map(|i| Row(i, "b")));
        let (rows, rest, table) = run(&messages).read("a".into());
        let tables = summary(&rows)
            .into_iter()
            .map(|(table, offsets, _)| (table, offsets.len()))
            .collect::<Vec<_>>();
        assert_eq!(tables, vec![("a".into(), MIN_HALF), ("b".into(), MIN_HALF)]);
        assert_eq!((rest, &*table), (None, "b"));
    }

    #[test]
    fn a_body_cut_short_leaves_the_run_from_its_chunk_to_the_decoder() {
        let (rows, rest, _) = run(&[Row(1, "a"), Cut(2), Row(3, "a")]).read("a".into());
        assert!(rows.is_empty());
        assert_eq!(rest, Some(0));
        // Rows of another table before it are kept; the decoder reads from the failing chunk,
        // tombstones before it passing with the rows before.
        let messages = [Row(1, "a"), Tombstone, Row(2, "b"), Cut(3)];
        let (rows, rest, _) = run(&messages).read("a".into());
        assert_eq!(summary(&rows), vec![("a".into(), vec![0], 1)]);
        assert_eq!(rest, Some(2));
    }

    /// The decoder's table for the test topic, which a test expects not to be asked for.
    fn not_asked(_: &str) -> Name {
        panic!("a run read again")
    }

    #[test]
    fn a_run_sent_behind_one_of_its_topic_starts_with_the_table_that_one_ends_with() {
        let mut runs = Runs {
            filling: debezium_run(&[Insert(1, "a"), Insert(2, "b")]),
            ..Runs::default()
        };
        let first_bytes = runs.filling.heap_bytes();
        runs.start_reading("a".into());
        // Sent before the first is taken back: the decoder's table ("a") is out of date.
        runs.filling = debezium_run(&[Insert(3, ""), Insert(4, "")]);
        let both = first_bytes + runs.filling.heap_bytes();
        assert!(runs.can_start_reading(both));
        assert!(
            !runs.can_start_reading(both - 1),
            "two runs hold more than given"
        );
        runs.start_reading("a".into());
        assert!(
            !runs.can_start_reading(usize::MAX),
            "two runs are read at most"
        );
        let first = runs.take_read(not_asked).unwrap().unwrap();
        assert_eq!(
            summary(&first.rows),
            vec![("a".into(), vec![0], 0), ("b".into(), vec![1], 1)]
        );
        let second = runs.take_read(not_asked).unwrap().unwrap();
        assert_eq!(summary(&second.rows), vec![("b".into(), vec![0, 1], 1)]);
        assert!(runs.take_read(not_asked).unwrap().is_none());
        assert!(!runs.is_reading());
    }

    #[test]
    fn a_run_behind_one_that_left_messages_to_the_decoder_is_read_again() {
        let mut runs = Runs {
            filling: run(&[Row(1, "b"), Cut(2)]),
            ..Runs::default()
        };
        runs.start_reading("a".into());
        runs.filling = debezium_run(&[Insert(3, "")]);
        runs.start_reading("a".into());
        let first = runs.take_read(not_asked).unwrap().unwrap();
        assert_eq!(first.rest, Some(0));
        // The decoder read the first run's messages, and its table is "c" now.
        let second = runs
            .take_read(|topic| {
                assert_eq!(topic, TOPIC);
                "c".into()
            })
            .unwrap()
            .unwrap();
        assert_eq!(summary(&second.rows), vec![("c".into(), vec![0], 0)]);
    }

    #[test]
    fn dropping_the_runs_being_read_leaves_none() {
        let mut runs = Runs::default();
        for id in [1, 2] {
            runs.filling = debezium_run(&[Insert(id, "a")]);
            runs.start_reading("a".into());
        }
        runs.drop_reading();
        assert!(!runs.is_reading());
        assert!(runs.take_read(not_asked).unwrap().is_none());
    }
}
