//! Change events: what happened to a row, and where in Kafka it was read.
//!
//! [`ChangeDecoder`] turns one Kafka message into a [`Change`], stage by stage: it splits the
//! Confluent framing ([`crate::frame`]), gets the writer schema from a [`SchemaSource`] (the
//! registry, or a fixed set of schemas in tests), decodes key and value, picks the envelope
//! once per value schema (`format`), and reads the decoded value as a Debezium envelope
//! (`debezium`) or a flat row (`row`: Bottled Water, Debezium's unwrapped rows, any keyed
//! upsert topic, delivered as an `upsert`). A null value on a flat-row topic is the `delete` of
//! its key. Debezium writes a null value after each delete event so that compaction can drop
//! the key; that tombstone carries nothing new and is not delivered. When the value does not
//! name its table, the table comes from the topic name (`table`).

mod debezium;
mod format;
mod row;
mod table;

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use self::format::{Envelope, Writer};
pub(crate) use self::table::table_from_record_name;
use self::table::table_from_topic;
use crate::avro::{Encoded, LazyValue, Schema, Value};
use crate::error::{Error, Location, Result};
use crate::frame;
use crate::name::Name;
use crate::registry::Registry;

/// Where the decoder gets writer schemas by id.
pub trait SchemaSource: Send + Sync {
    /// The schema with this id; [`Error::SchemaNotFound`] when there is none. May block.
    fn schema(&self, id: u32) -> Result<Arc<Schema>>;
}

impl SchemaSource for Registry {
    fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        Registry::schema(self, id)
    }
}

/// What kind of change an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A new row.
    Insert,
    /// A changed row.
    Update,
    /// A removed row.
    Delete,
    /// A row read by an initial snapshot.
    Read,
    /// A row written, where the format cannot tell insert from update (flat rows).
    Upsert,
    /// A table emptied.
    Truncate,
    /// A logical decoding message.
    Message,
}

impl Op {
    /// The name Python sees.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Read => "read",
            Op::Upsert => "upsert",
            Op::Truncate => "truncate",
            Op::Message => "message",
        }
    }
}

/// Where a change was read: its Kafka message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The topic.
    pub topic: Name,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The message timestamp in milliseconds since the epoch, if it has one.
    pub timestamp_ms: Option<i64>,
}

impl Position {
    /// The location, for error messages.
    pub fn location(&self) -> Location {
        Location {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// One change to one row.
#[derive(Debug, Clone)]
pub struct Change {
    /// What happened.
    pub op: Op,
    /// The decoded message key, `None` for an unkeyed message.
    pub key: Option<Value>,
    /// The row before the change, when the format carries it.
    pub before: Option<Value>,
    /// The row after the change.
    pub after: Option<Value>,
    /// The table.
    pub table: Option<Name>,
    /// Source metadata (Debezium's `source` record), when the format carries it; left encoded
    /// until asked for when read from a Debezium envelope.
    pub source: Option<LazyValue>,
    /// Debezium's `transaction` block (id, total_order, data_collection_order), when present.
    pub transaction: Option<Value>,
    /// Whether the message was a tombstone (a null value).
    pub tombstone: bool,
    /// The writer schema of the value and its id; for a tombstone, the topic's latest value
    /// schema (so a delete can sit in the same column batch as the rows it deletes).
    pub value_schema: Option<(u32, Arc<Schema>)>,
    /// Where the change was read.
    pub position: Position,
}

impl Change {
    /// Start loading, into this core's cache, the values of the key and row records, which
    /// converting the change reads first (see [`crate::prefetch`]).
    pub fn prefetch_rows(&self) {
        for value in [&self.key, &self.after].into_iter().flatten() {
            if let Value::Record(record) = value {
                crate::prefetch::prefetch(record.values.as_slice());
            }
        }
    }

    /// About how many bytes of memory the change holds (see [`Value::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        let values = [&self.key, &self.before, &self.after, &self.transaction];
        std::mem::size_of::<Change>()
            + values
                .into_iter()
                .flatten()
                .map(Value::heap_bytes)
                .sum::<usize>()
            + self.source.as_ref().map_or(0, LazyValue::heap_bytes)
    }
}

/// Which envelope to read values as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Detect per value schema: `before`, `after` and `op` fields (or `op`, `source` and
    /// `message`, a logical decoding message) make a Debezium envelope.
    #[default]
    Auto,
    /// Every value is a Debezium envelope.
    Debezium,
    /// Every value is a flat row.
    Row,
}

/// How a [`ChangeDecoder`] reads messages.
#[derive(Debug, Clone, Default)]
pub struct DecoderOptions {
    /// Which envelope values are in.
    pub format: Format,
    /// Deliver the tombstone Debezium writes after each delete (as a `delete` with no rows).
    pub emit_tombstones: bool,
    /// Reader schemas for values: values are resolved into them (Avro schema resolution).
    pub readers: ReaderSchemas,
}

/// Reader schemas for values, for every topic or per topic.
#[derive(Debug, Clone, Default)]
pub struct ReaderSchemas {
    /// The reader schema of topics without one of their own.
    pub all: Option<Arc<Schema>>,
    /// Reader schemas by topic.
    pub by_topic: HashMap<String, Arc<Schema>>,
}

impl ReaderSchemas {
    fn of(&self, topic: &str) -> Option<&Arc<Schema>> {
        self.by_topic.get(topic).or(self.all.as_ref())
    }
}

/// A decoder is compiled once per writer schema id, reader schema (by identity) and format.
type WriterKey = (u32, usize, Format);

/// One Kafka message, as the decoder needs it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The timestamp in milliseconds since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// The key bytes, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value bytes, `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// The `__key_schema_id` header, if present.
    pub key_schema_header: Option<&'a [u8]>,
    /// The `__value_schema_id` header, if present.
    pub value_schema_header: Option<&'a [u8]>,
}

/// How a key or value is framed: its schema id and writer schema, whether values of that
/// schema are Debezium envelopes, and where the Avro body starts in the message's bytes.
#[derive(Debug, Clone)]
pub struct Framing {
    /// The schema id.
    pub id: u32,
    /// The writer schema.
    pub schema: Arc<Schema>,
    /// Whether values are read as Debezium envelopes (else as flat rows).
    pub debezium: bool,
    /// Where the Avro body starts (after the 5-byte Confluent header, or 0 with a header).
    pub body_start: usize,
}

/// Decodes Kafka messages into changes; one per stream (it remembers per-topic state).
pub struct ChangeDecoder {
    schemas: Arc<dyn SchemaSource>,
    options: DecoderOptions,
    // Looked up twice per message: a hash for short trusted keys, not SipHash.
    writers: FxHashMap<WriterKey, Arc<Writer>>,
    topics: FxHashMap<String, TopicState>,
    /// Whether a Debezium envelope's `source` block is left encoded (see `avro::Encoded`).
    source_deferred: bool,
}

/// A Debezium envelope's `source` block left encoded, and its `table` field when it has one.
type SourceBlock = (Encoded, Option<Value>);

/// What the decoder has learnt about a topic from its earlier messages.
struct TopicState {
    name: Name,
    /// The envelope of the latest value, which tells what a following tombstone means.
    envelope: Option<Envelope>,
    /// The table of the latest value.
    table: Name,
    /// The schema of the latest value.
    value_schema: Option<(u32, Arc<Schema>)>,
}

impl ChangeDecoder {
    /// A decoder that looks writer schemas up in `schemas` (the registry).
    pub fn new(schemas: impl SchemaSource + 'static, options: DecoderOptions) -> ChangeDecoder {
        ChangeDecoder {
            schemas: Arc::new(schemas),
            options,
            writers: FxHashMap::default(),
            topics: FxHashMap::default(),
            source_deferred: true,
        }
    }

    /// Leave a Debezium envelope's `source` block encoded until it is asked for (the default:
    /// a change handed out alone rarely has it read), or decode it with the envelope (for
    /// changes that go into Arrow batches, which read its LSN, transaction id and time).
    pub fn set_source_deferred(&mut self, deferred: bool) {
        self.source_deferred = deferred;
    }

    /// Decode one message. `Ok(None)` means the message carries no change to deliver (the
    /// tombstone after a Debezium delete). Errors carry the message's location.
    pub fn decode(&mut self, message: &Message<'_>) -> Result<Option<Change>> {
        let location = || Location {
            topic: message.topic.to_owned(),
            partition: message.partition,
            offset: message.offset,
        };
        self.decode_unlocated(message).map_err(|e| e.at(location()))
    }

    fn decode_unlocated(&mut self, message: &Message<'_>) -> Result<Option<Change>> {
        let key = match message.key {
            // A key is never an envelope, whatever the stream's format.
            Some(bytes) => Some(
                self.value(bytes, message.key_schema_header, None, Format::Row)
                    .map_err(|e| prefix(e, "key"))?
                    .0,
            ),
            None => None,
        };
        let value = match message.value {
            Some(bytes) => Some(
                self.value(
                    bytes,
                    message.value_schema_header,
                    self.options.readers.of(message.topic).cloned(),
                    self.options.format,
                )
                .map_err(|e| prefix(e, "value"))?,
            ),
            None => None,
        };
        let topic = topic_state(&mut self.topics, message.topic);
        let position = Position {
            topic: topic.name,
            partition: message.partition,
            offset: message.offset,
            timestamp_ms: message.timestamp_ms,
        };
        let Some((value, source, id, writer)) = value else {
            let debezium = topic.envelope == Some(Envelope::Debezium);
            if debezium && !self.options.emit_tombstones {
                return Ok(None);
            }
            return Ok(Some(Change {
                op: Op::Delete,
                key,
                before: None,
                after: None,
                table: Some(topic.table),
                source: None,
                transaction: None,
                tombstone: true,
                value_schema: topic.value_schema.clone(),
                position,
            }));
        };
        topic.envelope = Some(writer.envelope);
        if topic
            .value_schema
            .as_ref()
            .is_none_or(|(known, _)| *known != id)
        {
            topic.value_schema = Some((id, writer.schema.clone()));
        }
        let change = match writer.envelope {
            Envelope::Row => row::change(&writer, value, key, position)?,
            Envelope::Debezium => debezium::change(value, source, key, position, &topic.table)?,
        };
        if let Some(table) = &change.table {
            topic.table = *table;
        }
        Ok(Some(Change {
            table: Some(topic.table),
            value_schema: topic.value_schema.clone(),
            ..change
        }))
    }

    /// How a message's value is framed, for reading its body elsewhere (straight into Arrow
    /// columns): `None` where its topic resolves values into a reader schema, which only
    /// [`ChangeDecoder::decode`] does. Errors are those `decode` would report (unlocated).
    pub fn frame_value(
        &mut self,
        topic: &str,
        bytes: &[u8],
        header: Option<&[u8]>,
    ) -> Result<Option<Framing>> {
        if self.options.readers.of(topic).is_some() {
            return Ok(None);
        }
        self.frame(bytes, header, self.options.format).map(Some)
    }

    /// How a message's key is framed (a key is never an envelope).
    pub fn frame_key(&mut self, bytes: &[u8], header: Option<&[u8]>) -> Result<Framing> {
        self.frame(bytes, header, Format::Row)
    }

    fn frame(&mut self, bytes: &[u8], header: Option<&[u8]>, format: Format) -> Result<Framing> {
        let (id, body) = frame::split(bytes, header)?;
        let writer = self.writer(id, None, format)?;
        Ok(Framing {
            id,
            schema: writer.schema.clone(),
            debezium: writer.envelope == Envelope::Debezium,
            body_start: bytes.len() - body.len(),
        })
    }

    /// Whether Debezium's tombstones after deletes are delivered (as deletes of their key).
    pub fn emits_tombstones(&self) -> bool {
        self.options.emit_tombstones
    }

    /// The table of the topic's latest value: the table of a message that names none.
    pub fn table_of(&mut self, topic: &str) -> Name {
        topic_state(&mut self.topics, topic).table
    }

    /// Note values read elsewhere (see [`ChangeDecoder::frame_value`]): the topic's latest
    /// value is of `table` under `framing`'s schema, as if `decode` had read it.
    pub fn note_read(&mut self, topic: &str, framing: &Framing, table: Name) {
        let state = topic_state(&mut self.topics, topic);
        state.envelope = Some(match framing.debezium {
            true => Envelope::Debezium,
            false => Envelope::Row,
        });
        if state
            .value_schema
            .as_ref()
            .is_none_or(|(known, _)| *known != framing.id)
        {
            state.value_schema = Some((framing.id, framing.schema.clone()));
        }
        state.table = table;
    }

    /// The compiled writer of schema `id`, resolved into `reader` and read as `format`.
    fn writer(
        &mut self,
        id: u32,
        reader: Option<Arc<Schema>>,
        format: Format,
    ) -> Result<Arc<Writer>> {
        // One schema can be a key's and a value's, compiled for each format it is read as.
        let key = (
            id,
            reader.as_ref().map_or(0, |r| Arc::as_ptr(r) as usize),
            format,
        );
        if let Some(writer) = self.writers.get(&key) {
            return Ok(writer.clone());
        }
        let writer = Arc::new(Writer::new(self.schemas.schema(id)?, reader, format)?);
        self.writers.insert(key, writer.clone());
        Ok(writer)
    }

    /// Decode a framed key or value, resolved into `reader` if given and read as `format`;
    /// returns the value, a Debezium envelope's `source` block when left encoded, its schema
    /// id and its compiled writer (shared, so the caller need not look it up again).
    fn value(
        &mut self,
        bytes: &[u8],
        header: Option<&[u8]>,
        reader: Option<Arc<Schema>>,
        format: Format,
    ) -> Result<(Value, Option<SourceBlock>, u32, Arc<Writer>)> {
        let (id, body) = frame::split(bytes, header)?;
        let writer = self.writer(id, reader, format)?;
        let deferral = writer.source.filter(|_| self.source_deferred);
        let (value, source) = match (&writer.resolved, deferral) {
            (Some(resolved), _) => (resolved.decode(body)?, None),
            (None, Some(deferral)) => {
                let read = writer.schema.decode_deferring(body, deferral)?;
                (read.value, Some((read.encoded, read.kept)))
            }
            (None, None) => (writer.schema.decode(body)?, None),
        };
        Ok((value, source, id, writer))
    }
}

/// What the decoder knows of a topic; allocates its name only the first time.
fn topic_state<'a>(
    topics: &'a mut FxHashMap<String, TopicState>,
    topic: &str,
) -> &'a mut TopicState {
    if !topics.contains_key(topic) {
        topics.insert(
            topic.to_owned(),
            TopicState {
                name: Name::new(topic),
                envelope: None,
                table: Name::new(&table_from_topic(topic)),
                value_schema: None,
            },
        );
    }
    topics.get_mut(topic).expect("inserted above")
}

fn prefix(error: Error, part: &str) -> Error {
    match error {
        Error::Decode { reason, at } => Error::Decode {
            reason: format!("{part}: {reason}"),
            at,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
