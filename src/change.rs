//! Change events: what happened to a row, and where in Kafka it was read.
//!
//! [`ChangeDecoder`] turns one Kafka message into a [`Change`]: it splits the Confluent framing,
//! looks the writer schema up in the registry, decodes key and value, and reads the envelope.
//! The envelope is detected per value schema: a record with `before`, `after` and `op` fields
//! is a Debezium envelope; any other record is a flat row (Bottled Water, Debezium's unwrapped
//! rows, any keyed upsert topic), delivered as an `upsert`, and a null value on such a topic is
//! the `delete` of its key. Debezium writes a null value after each delete event so that
//! compaction can drop the key; that tombstone carries nothing new and is not delivered.

use std::collections::HashMap;
use std::sync::Arc;

use crate::avro::{Record, Resolved, Schema, Value};
use crate::error::{Error, Location, Result};
use crate::frame;
use crate::registry::Registry;

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

    fn from_debezium(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Insert,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            "m" => Op::Message,
            _ => return None,
        })
    }
}

/// Where a change was read: its Kafka message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The topic.
    pub topic: Arc<str>,
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
    pub table: Option<Arc<str>>,
    /// Source metadata (Debezium's `source` record), when the format carries it.
    pub source: Option<Value>,
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
    /// About how many bytes of memory the change holds (see [`Value::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        let values = [
            &self.key,
            &self.before,
            &self.after,
            &self.source,
            &self.transaction,
        ];
        std::mem::size_of::<Change>()
            + values
                .into_iter()
                .flatten()
                .map(Value::heap_bytes)
                .sum::<usize>()
    }
}

/// Which envelope to read values as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// A decoder is compiled once per writer schema id and reader schema (by identity).
type WriterKey = (u32, usize);

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

/// How the values of one writer schema are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Envelope {
    /// A Debezium envelope: `before`, `after`, `op`, `source`, ...
    Debezium,
    /// A flat row.
    Row,
}

/// A writer schema with what we worked out from it once.
struct Writer {
    /// The schema values come out in: the reader schema when there is one.
    schema: Arc<Schema>,
    /// Set when values are resolved from the writer schema into a reader schema.
    resolved: Option<Resolved>,
    envelope: Envelope,
    /// The table of a flat-row schema, from its record name.
    table: Option<Arc<str>>,
    /// A flat row carries Debezium's `__deleted` field (the unwrap SMT's rewrite mode).
    has_deleted_flag: bool,
    /// A flat row carries Debezium's `__op` field (the unwrap SMT's `add.fields=op`).
    has_op_field: bool,
}

/// Decodes Kafka messages into changes; one per stream (it remembers per-topic state).
pub struct ChangeDecoder {
    registry: Registry,
    options: DecoderOptions,
    writers: HashMap<WriterKey, Writer>,
    topics: HashMap<String, TopicState>,
}

/// What the decoder has learnt about a topic from its earlier messages.
struct TopicState {
    name: Arc<str>,
    /// The envelope of the latest value, which tells what a following tombstone means.
    envelope: Option<Envelope>,
    /// The table of the latest value.
    table: Arc<str>,
    /// The schema of the latest value.
    value_schema: Option<(u32, Arc<Schema>)>,
}

impl ChangeDecoder {
    /// A decoder that looks schemas up in `registry`.
    pub fn new(registry: Registry, options: DecoderOptions) -> ChangeDecoder {
        ChangeDecoder {
            registry,
            options,
            writers: HashMap::new(),
            topics: HashMap::new(),
        }
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
            Some(bytes) => Some(
                self.value(bytes, message.key_schema_header, None)
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
                )
                .map_err(|e| prefix(e, "value"))?,
            ),
            None => None,
        };
        let topic = self
            .topics
            .entry(message.topic.to_owned())
            .or_insert_with(|| TopicState {
                name: message.topic.into(),
                envelope: None,
                table: table_from_topic(message.topic).into(),
                value_schema: None,
            });
        let position = Position {
            topic: topic.name.clone(),
            partition: message.partition,
            offset: message.offset,
            timestamp_ms: message.timestamp_ms,
        };
        let Some((value, key_of_writer)) = value else {
            let debezium = topic.envelope == Some(Envelope::Debezium);
            if debezium && !self.options.emit_tombstones {
                return Ok(None);
            }
            return Ok(Some(Change {
                op: Op::Delete,
                key,
                before: None,
                after: None,
                table: Some(topic.table.clone()),
                source: None,
                transaction: None,
                tombstone: true,
                value_schema: topic.value_schema.clone(),
                position,
            }));
        };
        let writer = &self.writers[&key_of_writer];
        let id = key_of_writer.0;
        topic.envelope = Some(writer.envelope);
        if topic
            .value_schema
            .as_ref()
            .is_none_or(|(known, _)| *known != id)
        {
            topic.value_schema = Some((id, writer.schema.clone()));
        }
        let change = match writer.envelope {
            Envelope::Row => row(writer, value, key, position)?,
            Envelope::Debezium => {
                let Value::Record(mut envelope) = value else {
                    return Err(Error::decode(
                        "format=\"debezium\" but the value is not a record",
                    ));
                };
                debezium(&mut envelope, key, position)?
            }
        };
        if let Some(table) = &change.table {
            topic.table = table.clone();
        }
        Ok(Some(Change {
            table: Some(topic.table.clone()),
            value_schema: topic.value_schema.clone(),
            ..change
        }))
    }

    /// Decode a framed key or value; returns the value and its schema id.
    /// Decode a framed key or value, resolved into `reader` if given; returns the value and
    /// the key of its compiled writer.
    fn value(
        &mut self,
        bytes: &[u8],
        header: Option<&[u8]>,
        reader: Option<Arc<Schema>>,
    ) -> Result<(Value, WriterKey)> {
        let (id, body) = frame::split(bytes, header)?;
        let key = (id, reader.as_ref().map_or(0, |r| Arc::as_ptr(r) as usize));
        let writer = match self.writers.get(&key) {
            Some(writer) => writer,
            None => {
                let writer = Writer::new(self.registry.schema(id)?, reader, self.options.format)?;
                self.writers.entry(key).or_insert(writer)
            }
        };
        let value = match &writer.resolved {
            Some(resolved) => resolved.decode(body)?,
            None => writer.schema.decode(body)?,
        };
        Ok((value, key))
    }
}

impl Writer {
    fn new(writer: Arc<Schema>, reader: Option<Arc<Schema>>, format: Format) -> Result<Writer> {
        let (schema, resolved) = match reader {
            Some(reader) => (reader.clone(), Some(Resolved::new(&writer, reader)?)),
            None => (writer, None),
        };
        let root = schema.root_record();
        let has = |field: &str| root.is_some_and(|r| r.field_names.iter().any(|n| &**n == field));
        // A row change, or a logical decoding message (Debezium's `MessageValue`: `op`,
        // `source` and `message`, no `before`/`after`).
        let looks_like_envelope =
            has("op") && ((has("before") && has("after")) || (has("message") && has("source")));
        let envelope = match format {
            Format::Auto if looks_like_envelope => Envelope::Debezium,
            Format::Auto | Format::Row => Envelope::Row,
            Format::Debezium if looks_like_envelope => Envelope::Debezium,
            Format::Debezium => {
                return Err(Error::decode(format!(
                    "format=\"debezium\" but schema {} has no before/after/op fields",
                    root.map_or("(not a record)", |r| &*r.name)
                )))
            }
        };
        let table = root.map(|r| table_from_record_name(&r.name, r.connect_name.as_deref()).into());
        Ok(Writer {
            resolved,
            envelope,
            table,
            has_deleted_flag: has("__deleted"),
            has_op_field: has("__op"),
            schema,
        })
    }
}

/// A flat row: an upsert, unless Debezium's unwrap SMT added `__deleted` or `__op` to it.
fn row(writer: &Writer, value: Value, key: Option<Value>, position: Position) -> Result<Change> {
    let mut op = Op::Upsert;
    let mut table = writer.table.clone();
    if let Value::Record(record) = &value {
        if writer.has_op_field {
            if let Some(code) = record.get("__op").and_then(Value::as_str) {
                op = Op::from_debezium(code)
                    .ok_or_else(|| Error::decode(format!("unknown Debezium __op {code:?}")))?;
            }
        }
        if let Some(Value::String(name)) = record.get("__table") {
            table = Some(name.as_str().into());
        }
        if writer.has_deleted_flag {
            let deleted = match record.get("__deleted") {
                Some(Value::String(flag)) => flag == "true",
                Some(Value::Boolean(flag)) => *flag,
                _ => false,
            };
            if deleted {
                op = Op::Delete;
            }
        }
    }
    let (before, after) = match op {
        Op::Delete => (Some(value), None),
        _ => (None, Some(value)),
    };
    Ok(Change {
        op,
        key,
        before,
        after,
        table,
        source: None,
        transaction: None,
        tombstone: false,
        value_schema: None,
        position,
    })
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

fn debezium(envelope: &mut Record, key: Option<Value>, position: Position) -> Result<Change> {
    let code = envelope.get("op").and_then(Value::as_str).unwrap_or("");
    let op = Op::from_debezium(code)
        .ok_or_else(|| Error::decode(format!("unknown Debezium op {code:?}")))?;
    let non_null = |v: Option<Value>| v.filter(|v| *v != Value::Null);
    let before = non_null(envelope.take("before"));
    // A logical decoding message carries its prefix and content in `message`.
    let after = match op {
        Op::Message => non_null(envelope.take("message")),
        _ => non_null(envelope.take("after")),
    };
    let source = non_null(envelope.take("source"));
    let transaction = non_null(envelope.take("transaction"));
    let table = match &source {
        Some(Value::Record(source)) => source
            .get("table")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Arc::from),
        _ => None,
    };
    Ok(Change {
        op,
        key,
        before,
        after,
        table,
        source,
        transaction,
        tombstone: false,
        value_schema: None,
        position,
    })
}

/// The table a flat-row record names. Debezium's unwrapped rows are records called `Value`
/// named `<prefix>.<schema>.<table>.Value`; Bottled Water names the record after the table,
/// escaping bytes outside `[A-Za-z0-9_]` as `_xx_`.
fn table_from_record_name(full_name: &str, connect_name: Option<&str>) -> String {
    let name = connect_name.unwrap_or(full_name);
    let mut parts = name.rsplit('.');
    let last = parts.next().unwrap_or(name);
    match (last, parts.next()) {
        ("Value", Some(table)) => table.to_owned(),
        _ => unescape_bottled_water(last),
    }
}

/// The table part of a topic name (`[prefix.][schema.]table`).
fn table_from_topic(topic: &str) -> String {
    unescape_bottled_water(topic.rsplit('.').next().unwrap_or(topic))
}

/// Undo Bottled Water's `_xx_` escaping of bytes in names (`cr_c3__aa_pes` is `crêpes`).
fn unescape_bottled_water(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' && i + 3 < bytes.len() && bytes[i + 3] == b'_' {
            let hex = &bytes[i + 1..i + 3];
            let lower_hex = hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if lower_hex {
                let text = std::str::from_utf8(hex).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(text, 16).expect("two hex digits"));
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(table) => table,
        // Not an escaped name after all: keep it as written.
        Err(_) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottled_water_names_are_unescaped() {
        assert_eq!(unescape_bottled_water("cr_c3__aa_pes"), "crêpes");
        assert_eq!(unescape_bottled_water("person_2f_name"), "person/name");
        assert_eq!(unescape_bottled_water("order_items"), "order_items");
        assert_eq!(unescape_bottled_water("a_zz_b"), "a_zz_b");
    }

    #[test]
    fn tables_from_record_names() {
        assert_eq!(
            table_from_record_name("com.martinkl.bottledwater.dbschema.public.orders", None),
            "orders"
        );
        assert_eq!(
            table_from_record_name("shop.public.order_lines.Value", None),
            "order_lines"
        );
        assert_eq!(
            table_from_record_name("Value", Some("shop.public.customers.Value")),
            "customers"
        );
        assert_eq!(table_from_topic("shop.public.cr_c3__aa_pes"), "crêpes");
    }

    #[test]
    fn envelope_is_detected_from_the_schema() {
        let debezium = Schema::parse(
            r#"{"type":"record","name":"Envelope","fields":[
                {"name":"before","type":["null","string"]},{"name":"after","type":["null","string"]},
                {"name":"op","type":"string"}]}"#,
        )
        .unwrap();
        let debezium = Arc::new(debezium);
        assert_eq!(
            Writer::new(debezium.clone(), None, Format::Auto)
                .unwrap()
                .envelope,
            Envelope::Debezium
        );
        assert_eq!(
            Writer::new(debezium, None, Format::Row).unwrap().envelope,
            Envelope::Row
        );
        let row = Schema::parse(
            r#"{"type":"record","name":"orders","fields":[{"name":"op","type":"string"}]}"#,
        )
        .unwrap();
        let row = Arc::new(row);
        let writer = Writer::new(row.clone(), None, Format::Auto).unwrap();
        assert_eq!(writer.envelope, Envelope::Row);
        assert_eq!(writer.table.as_deref(), Some("orders"));
        let forced = Writer::new(row, None, Format::Debezium).err().unwrap();
        assert!(
            forced.to_string().contains("no before/after/op"),
            "{forced}"
        );
        // Debezium's logical decoding message has no before/after.
        let message = Schema::parse(
            r#"{"type":"record","name":"MessageValue","fields":[
                {"name":"op","type":"string"},
                {"name":"source","type":{"type":"record","name":"Source","fields":[]}},
                {"name":"message","type":{"type":"record","name":"Message","fields":[
                    {"name":"prefix","type":"string"},{"name":"content","type":"bytes"}]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            Writer::new(Arc::new(message), None, Format::Auto)
                .unwrap()
                .envelope,
            Envelope::Debezium
        );
    }
}
