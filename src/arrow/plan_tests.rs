//! Batches read straight from bodies ([`BodyPlan`]) against batches of the decoded changes
//! ([`record_batch`]) for the same messages: every type family, Debezium envelopes with each
//! op, tombstones, null unions, unavailable values, and the bodies the plan must refuse.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use serde_json::{json, Value as Json};

use super::{record_batch, Body, BodyPlan, Read, MAX_MICROS, MIN_MICROS};
use crate::avro::{write_long as zigzag, Named, Node, Schema};
use crate::change::{ChangeDecoder, DecoderOptions, Format, Message, SchemaSource};
use crate::error::{Error, Result};

const KEY_ID: u32 = 1;
const VALUE_ID: u32 = 2;
const TOPIC: &str = "shop.public.orders";

struct Schemas(HashMap<u32, Arc<Schema>>);

impl SchemaSource for Schemas {
    fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        self.0
            .get(&id)
            .cloned()
            .ok_or(Error::SchemaNotFound { id, at: None })
    }
}

/// Bytes from JSON: a list of numbers, or a string's UTF-8.
fn bytes_of(json: &Json) -> Vec<u8> {
    match json {
        Json::String(text) => text.as_bytes().to_vec(),
        Json::Array(items) => items.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        other => panic!("not bytes: {other}"),
    }
}

/// Avro binary of a JSON value: records are objects (a missing field is null), a union takes
/// `null` or its first other branch unless written `{"@": branch, "v": value}`, enums are
/// symbols, bytes and fixed lists of numbers or strings, logical types their encoding.
fn encode(schema: &Schema, node: &Node, json: &Json, out: &mut Vec<u8>) {
    match node {
        Node::Null => assert!(json.is_null(), "{json} for null"),
        Node::Boolean => out.push(u8::from(json.as_bool().unwrap())),
        Node::Int | Node::Long => zigzag(out, json.as_i64().unwrap()),
        Node::Float => out.extend_from_slice(&(json.as_f64().unwrap() as f32).to_le_bytes()),
        Node::Double => out.extend_from_slice(&json.as_f64().unwrap().to_le_bytes()),
        Node::Bytes | Node::String => {
            let bytes = bytes_of(json);
            zigzag(out, bytes.len() as i64);
            out.extend_from_slice(&bytes);
        }
        Node::Array { items, .. } => {
            let list = json.as_array().unwrap();
            if !list.is_empty() {
                zigzag(out, list.len() as i64);
                for item in list {
                    encode(schema, items, item, out);
                }
            }
            zigzag(out, 0);
        }
        Node::Map(values) => {
            let map = json.as_object().unwrap();
            if !map.is_empty() {
                zigzag(out, map.len() as i64);
                for (key, value) in map {
                    encode(schema, &Node::String, &json!(key), out);
                    encode(schema, values, value, out);
                }
            }
            zigzag(out, 0);
        }
        Node::Union(branches) => {
            let (index, value) = match json {
                Json::Object(o) if o.contains_key("@") => {
                    (o["@"].as_u64().unwrap() as usize, o["v"].clone())
                }
                Json::Null => (
                    branches.iter().position(|b| *b == Node::Null).unwrap(),
                    Json::Null,
                ),
                _ => (
                    branches.iter().position(|b| *b != Node::Null).unwrap(),
                    json.clone(),
                ),
            };
            zigzag(out, index as i64);
            encode(schema, &branches[index], &value, out);
        }
        Node::Logical(logical) => encode(schema, &logical.base, json, out),
        Node::Named(index) => match &schema.named[*index] {
            Named::Record(record) => {
                for (name, field) in record.field_names().iter().zip(&record.fields) {
                    encode(schema, field, json.get(&**name).unwrap_or(&Json::Null), out);
                }
            }
            Named::Enum(enumeration) => {
                let symbol = json.as_str().unwrap();
                let index = enumeration.symbols.iter().position(|s| &**s == symbol);
                zigzag(out, index.unwrap() as i64);
            }
            Named::Fixed(fixed) => {
                let bytes = bytes_of(json);
                assert_eq!(bytes.len(), fixed.size);
                out.extend_from_slice(&bytes);
            }
        },
    }
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A message's framed key and value.
type Framed = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A topic of messages: the key and value schemas, and each message's framed key and value.
struct Stream {
    key: Arc<Schema>,
    value: Arc<Schema>,
    format: Format,
    messages: Vec<Framed>,
}

impl Stream {
    fn new(key: Json, value: Json, format: Format) -> Stream {
        Stream {
            key: Arc::new(Schema::parse(&key.to_string()).unwrap()),
            value: Arc::new(Schema::parse(&value.to_string()).unwrap()),
            format,
            messages: Vec::new(),
        }
    }

    /// Add a message (`None` value: a tombstone).
    fn push(&mut self, key: Option<Json>, value: Option<Json>) -> &mut Stream {
        let body = |schema: &Schema, json: &Json| {
            let mut out = Vec::new();
            encode(schema, &schema.root, json, &mut out);
            out
        };
        let key = key.map(|k| framed(KEY_ID, &body(&self.key, &k)));
        let value = value.map(|v| framed(VALUE_ID, &body(&self.value, &v)));
        self.messages.push((key, value));
        self
    }

    /// Add a message whose value body is given as bytes.
    fn push_raw(&mut self, key: Option<Json>, value: Vec<u8>) -> &mut Stream {
        self.push(key, None);
        self.messages.last_mut().unwrap().1 = Some(framed(VALUE_ID, &value));
        self
    }

    fn schemas(&self) -> Schemas {
        Schemas(HashMap::from([
            (KEY_ID, self.key.clone()),
            (VALUE_ID, self.value.clone()),
        ]))
    }

    fn message(&self, offset: usize) -> Message<'_> {
        let (key, value) = &self.messages[offset];
        Message {
            topic: TOPIC,
            partition: 3,
            offset: offset as i64,
            timestamp_ms: Some(1_700_000_000_000 + offset as i64),
            key: key.as_deref(),
            value: value.as_deref(),
            key_schema_header: None,
            value_schema_header: None,
        }
    }

    /// The batch of the decoded changes, as the stream builds it today.
    fn batch_of_changes(&self) -> Result<RecordBatch> {
        let options = DecoderOptions {
            format: self.format,
            emit_tombstones: true,
            ..DecoderOptions::default()
        };
        let mut decoder = ChangeDecoder::new(self.schemas(), options);
        let mut changes = Vec::new();
        for offset in 0..self.messages.len() {
            changes.extend(decoder.decode(&self.message(offset))?);
        }
        record_batch(&changes)
    }

    /// The batch read straight from the bodies, of `table` (which the stream tells apart
    /// before batching).
    fn batch_of_bodies(&self, debezium: bool, table: &str) -> Result<Read> {
        let plan = BodyPlan::new(VALUE_ID, self.value.clone(), debezium).expect("a plan");
        let positions: Vec<_> = (0..self.messages.len())
            .map(|offset| {
                let message = self.message(offset);
                crate::change::Position {
                    topic: TOPIC.into(),
                    partition: message.partition,
                    offset: message.offset,
                    timestamp_ms: message.timestamp_ms,
                }
            })
            .collect();
        let bodies: Vec<Body<'_>> = self
            .messages
            .iter()
            .zip(&positions)
            .map(|((key, value), position)| Body {
                position,
                key: key
                    .as_deref()
                    .map(|k| (&*self.key, crate::frame::split(k, None).unwrap().1)),
                value: value
                    .as_deref()
                    .map(|v| crate::frame::split(v, None).unwrap().1),
            })
            .collect();
        plan.record_batch(table, &bodies)
    }

    /// Both batches, which must be equal; the batch.
    fn check(&self, debezium: bool) -> RecordBatch {
        let expected = self.batch_of_changes().expect("the changes' batch");
        let table = expected.schema().metadata()["changestream.table"].clone();
        let Read::Batch(batch) = self
            .batch_of_bodies(debezium, &table)
            .expect("the bodies' batch")
        else {
            panic!("a batch the plan does not follow");
        };
        assert_eq!(batch, expected);
        batch
    }

    /// The decoder rejects message `offset`, and the plan fails at it too.
    fn check_fails_at(&self, debezium: bool, offset: i64) {
        let expected = self
            .batch_of_changes()
            .expect_err("the decoder rejects a message");
        let failed = self
            .batch_of_bodies(debezium, "orders")
            .expect_err("the plan rejects a message");
        for error in [expected, failed] {
            match error {
                Error::Decode { at: Some(at), .. } => assert_eq!(at.offset, offset, "{at:?}"),
                other => panic!("not a located decode error: {other}"),
            }
        }
    }
}

fn nullable(json: Json) -> Json {
    json!(["null", json])
}

fn key_schema() -> Json {
    json!({"type": "record", "name": "Key", "namespace": "shop.public.orders",
           "fields": [{"name": "id", "type": "int"}],
           "connect.name": "shop.public.orders.Key"})
}

/// A flat row of every plain type family, each also nullable.
fn every_type_row() -> Json {
    let plain = [
        ("b", json!("boolean")),
        ("i", json!("int")),
        ("l", json!("long")),
        ("f", json!("float")),
        ("d", json!("double")),
        ("s", json!("string")),
        ("y", json!("bytes")),
        (
            "e",
            json!({"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}),
        ),
        ("x", json!({"type": "fixed", "name": "F", "size": 2})),
        ("a", json!({"type": "array", "items": "int"})),
        ("m", json!({"type": "map", "values": "long"})),
        (
            "p",
            json!({"type": "record", "name": "P", "fields": [{"name": "q", "type": "int"}]}),
        ),
        (
            "dec",
            json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}),
        ),
        ("uid", json!({"type": "string", "logicalType": "uuid"})),
        ("day", json!({"type": "int", "logicalType": "date"})),
        ("tod", json!({"type": "long", "logicalType": "time-micros"})),
        (
            "ts",
            json!({"type": "long", "logicalType": "timestamp-millis"}),
        ),
        (
            "tsn",
            json!({"type": "long", "logicalType": "timestamp-nanos"}),
        ),
        (
            "lts",
            json!({"type": "long", "logicalType": "local-timestamp-micros"}),
        ),
        (
            "bwd",
            json!({"type": "record", "name": "Date", "namespace": "com.martinkl.bottledwater.datatypes",
                   "fields": [{"name": "year", "type": "int"}, {"name": "month", "type": "int"},
                              {"name": "day", "type": "int"}]}),
        ),
    ];
    let mut fields: Vec<Json> = Vec::new();
    for (name, node) in &plain {
        fields.push(json!({"name": name, "type": node}));
    }
    for (name, node) in &plain {
        // A named type is defined once, then referenced.
        let node = match (node.get("namespace"), node.get("name")) {
            (Some(space), Some(named)) => json!(format!(
                "{}.{}",
                space.as_str().unwrap(),
                named.as_str().unwrap()
            )),
            (None, Some(named)) => named.clone(),
            _ => node.clone(),
        };
        fields.push(json!({"name": format!("n_{name}"), "type": nullable(node)}));
    }
    fields.push(json!({"name": "nul", "type": "null"}));
    fields.push(json!({"name": "one_of", "type": ["null", "int", "string"]}));
    fields.push(json!({"name": "last_null", "type": ["long", "null"]}));
    json!({"type": "record", "name": "orders", "namespace": "bw", "fields": fields})
}

fn every_type_values(n: i64) -> Json {
    let symbol = ["A", "B", "C"][n as usize % 3];
    let plain = json!({
        "b": n % 2 == 0, "i": -n, "l": n << 40, "f": 0.5, "d": -2.25, "s": format!("crêpe {n}"),
        "y": [0, 255, n as u8], "e": symbol, "x": [1, n as u8],
        "a": (0..n).collect::<Vec<_>>(), "m": {"k": n}, "p": {"q": n},
        "dec": [0x30, 0x39 + n as u8], "uid": "c0ffee00-0000-4000-8000-00000000000a",
        "day": 19_000 + n, "tod": 3_600_000_000_i64 + n, "ts": 1_700_000_000_000_i64 + n,
        "tsn": 1_700_000_000_000_000_000_i64 + n, "lts": -1_000_000 * n,
        "bwd": {"year": 2024, "month": 2, "day": 29 - n},
    });
    let mut row = plain.as_object().unwrap().clone();
    // Decimals past 38 digits widen the column to decimal256, past 76 to text.
    match n {
        4 => row.insert("dec".into(), json!(vec![0x7f; 20])),
        5 => row.insert("dec".into(), json!(vec![0x7f; 40])),
        _ => None,
    };
    for (name, value) in plain.as_object().unwrap() {
        // Every other row's nullable fields are null.
        let value = if n % 2 == 0 {
            value.clone()
        } else {
            Json::Null
        };
        row.insert(format!("n_{name}"), value);
    }
    row.insert(
        "one_of".into(),
        match n % 3 {
            0 => Json::Null,
            1 => json!({"@": 1, "v": n}),
            _ => json!({"@": 2, "v": "two"}),
        },
    );
    row.insert(
        "last_null".into(),
        if n % 2 == 0 {
            json!({"@": 0, "v": n})
        } else {
            json!({"@": 1, "v": null})
        },
    );
    Json::Object(row)
}

#[test]
fn every_type_family_of_a_flat_row() {
    let mut stream = Stream::new(
        json!({"type": "record", "name": "orders_pkey", "fields": [{"name": "id", "type": "int"}]}),
        every_type_row(),
        Format::Auto,
    );
    for n in 0..6 {
        stream.push(Some(json!({"id": n})), Some(every_type_values(n)));
    }
    // A tombstone: the delete of its key, whose fields fill the columns of the same names.
    stream.push(Some(json!({"id": 9})), None);
    let batch = stream.check(false);
    assert_eq!(batch.num_rows(), 7);
    let ids = batch
        .column_by_name("l")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(ids.value(3), 3 << 40);
    assert!(ids.is_null(6));
    let dates = batch
        .schema()
        .field_with_name("bwd")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(
        dates,
        arrow_schema::DataType::Date32,
        "a Bottled Water date"
    );
    let decimals = batch
        .schema()
        .field_with_name("dec")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(decimals, arrow_schema::DataType::Utf8, "widened to text");
}

/// A Debezium envelope (Kafka Connect names) whose row has semantic types and TOASTable
/// columns.
fn debezium_envelope() -> Json {
    let value = json!({"type": "record", "name": "Value", "connect.name": "shop.public.orders.Value",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "status", "type": "string"},
        {"name": "note", "type": ["null", "string"]},
        {"name": "blob", "type": ["null", "bytes"]},
        {"name": "tags", "type": ["null", {"type": "array", "items": "string"}]},
        {"name": "price", "type": {"type": "bytes", "scale": 2, "precision": 10,
            "connect.version": 1, "connect.parameters": {"scale": "2"},
            "connect.name": "org.apache.kafka.connect.data.Decimal"}},
        {"name": "amount", "type": ["null", {"type": "record", "name": "VariableScaleDecimal",
            "namespace": "io.debezium.data", "fields": [{"name": "scale", "type": "int"},
            {"name": "value", "type": "bytes"}],
            "connect.name": "io.debezium.data.VariableScaleDecimal"}]},
        {"name": "created_at", "type": {"type": "long",
            "connect.name": "io.debezium.time.MicroTimestamp"}},
        {"name": "updated_at", "type": ["null", {"type": "string",
            "connect.name": "io.debezium.time.ZonedTimestamp"}]},
        {"name": "day", "type": ["null", {"type": "int", "connect.name": "io.debezium.time.Date"}]},
        {"name": "spent", "type": ["null", {"type": "long",
            "connect.name": "io.debezium.time.MicroDuration"}]},
        {"name": "uid", "type": ["null", {"type": "string", "connect.name": "io.debezium.data.Uuid"}]},
        {"name": "mood", "type": ["null", {"type": "enum", "name": "Mood", "symbols": ["ok", "sad"]}]}
    ]});
    let source = json!({"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
    "connect.name": "io.debezium.connector.postgresql.Source",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": [{"type": "string", "connect.name": "io.debezium.data.Enum"}, "null"]},
        {"name": "table", "type": "string"},
        {"name": "txId", "type": ["null", "long"]},
        {"name": "lsn", "type": ["null", "long"]},
        {"name": "xmin", "type": ["null", "long"]}
    ]});
    json!({"type": "record", "name": "Envelope", "namespace": "shop.public.orders",
    "connect.name": "shop.public.orders.Envelope",
    "fields": [
        {"name": "before", "type": ["null", value]},
        {"name": "after", "type": ["null", "Value"]},
        {"name": "source", "type": source},
        {"name": "transaction", "type": ["null", {"type": "record", "name": "block",
            "namespace": "event", "fields": [{"name": "id", "type": "string"},
            {"name": "total_order", "type": "long"}, {"name": "data_collection_order", "type": "long"}]}]},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"]}
    ]})
}

const PLACEHOLDER: &str = "__debezium_unavailable_value";

fn debezium_row(id: i64, unavailable: bool) -> Json {
    json!({
        "id": id, "status": if unavailable { PLACEHOLDER.to_owned() } else { format!("s{id}") },
        "note": if unavailable { json!(PLACEHOLDER) } else if id % 2 == 0 { json!(null) } else { json!("hi") },
        "blob": if unavailable { json!(PLACEHOLDER) } else { json!([id as u8]) },
        "tags": if unavailable { json!([PLACEHOLDER]) } else { json!(["a", "b"]) },
        "price": [0x01, id as u8],
        "amount": if id % 3 == 0 { json!(null) } else { json!({"scale": 3, "value": [0xfe, id as u8]}) },
        // PostgreSQL's ±infinity, as Debezium writes it (pgjdbc's sentinels, its dates).
        "created_at": match id {
            4 => 9_223_372_036_825_200_000_i64,
            5 => -9_223_372_036_832_400_000_i64,
            _ => 1_700_000_000_000_000_i64 + id,
        },
        "updated_at": if id % 2 == 0 { json!("2024-03-01T10:00:00.123456+02:00") } else { json!(null) },
        "day": if id == 4 { 2_146_033_979 } else { 19_000 + id },
        "spent": 1_500_000 * id,
        "uid": "5f0c1c3e-5a4e-4f55-9a57-0ad6d1a4c9b1",
        "mood": if id % 2 == 0 { json!("sad") } else { json!(null) },
    })
}

fn debezium_source(txid: Option<i64>) -> Json {
    json!({"version": "3.1", "ts_ms": 1_700_000_000_123_i64, "snapshot": "false",
           "table": if txid == Some(42) { "items" } else { "orders" }, "txId": txid, "lsn": txid.map(|t| t * 100), "xmin": null})
}

fn envelope(op: &str, before: Json, after: Json, txid: Option<i64>) -> Json {
    json!({"before": before, "after": after, "source": debezium_source(txid), "op": op,
           "transaction": if txid.is_some() { json!({"id": "571:1", "total_order": 1, "data_collection_order": 1}) } else { json!(null) },
           "ts_ms": 1_700_000_000_200_i64})
}

#[test]
fn debezium_envelopes_of_each_op_with_unavailable_values_and_tombstones() {
    let mut stream = Stream::new(key_schema(), debezium_envelope(), Format::Auto);
    stream
        .push(
            Some(json!({"id": 1})),
            Some(envelope("r", json!(null), debezium_row(1, false), None)),
        )
        .push(
            Some(json!({"id": 2})),
            Some(envelope("c", json!(null), debezium_row(2, false), Some(7))),
        )
        .push(
            Some(json!({"id": 2})),
            Some(envelope(
                "u",
                debezium_row(2, false),
                debezium_row(2, true),
                Some(8),
            )),
        )
        .push(
            Some(json!({"id": 3})),
            Some(envelope("u", json!(null), debezium_row(3, true), Some(8))),
        )
        .push(
            Some(json!({"id": 4})),
            Some(envelope("c", json!(null), debezium_row(4, false), Some(9))),
        )
        // A delete with its old row, then its tombstone.
        .push(
            Some(json!({"id": 2})),
            Some(envelope("d", debezium_row(2, false), json!(null), Some(9))),
        )
        .push(Some(json!({"id": 2})), None)
        // A delete without the old row (REPLICA IDENTITY DEFAULT without a key in the row).
        .push(
            Some(json!({"id": 5})),
            Some(envelope("d", json!(null), json!(null), None)),
        )
        .push(
            Some(json!({"id": 6})),
            Some(envelope("t", json!(null), json!(null), None)),
        )
        .push(
            Some(json!({"id": 5})),
            Some(envelope("c", json!(null), debezium_row(5, false), None)),
        );
    let batch = stream.check(true);
    assert_eq!(batch.num_rows(), 10);
    let created = batch.column_by_name("created_at").unwrap();
    let created = created.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(
        (created.value(4), created.value(9)),
        (MAX_MICROS, MIN_MICROS),
        "±infinity"
    );
    let unavailable = batch
        .column_by_name("_unavailable")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(unavailable.value(2).len(), 4, "status, note, blob, tags");
    let lsn = batch
        .column_by_name("_lsn")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(lsn.value(1), 700);
    assert!(lsn.is_null(0) && lsn.is_null(6));
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<arrow_array::types::Int32Type>();
    assert_eq!((ids.value(5), ids.value(6), ids.value(7)), (2, 2, 5));
}

#[test]
fn a_key_that_is_not_a_record_is_its_own_column() {
    let mut stream = Stream::new(json!("string"), debezium_envelope(), Format::Auto);
    stream
        .push(
            Some(json!("one")),
            Some(envelope("c", json!(null), debezium_row(1, false), None)),
        )
        .push(
            None,
            Some(envelope("c", json!(null), debezium_row(2, false), None)),
        )
        .push(Some(json!("one")), None);
    let batch = stream.check(true);
    let keys = batch.column_by_name("_key").unwrap().as_string::<i32>();
    assert_eq!(
        (keys.value(0), keys.is_null(1), keys.value(2)),
        ("one", true, "one")
    );
}

#[test]
fn an_envelope_read_as_flat_rows_and_unwrapped_rows() {
    // format="row" on envelopes: the envelope's fields are the columns.
    let mut stream = Stream::new(key_schema(), debezium_envelope(), Format::Row);
    stream.push(
        Some(json!({"id": 1})),
        Some(envelope("c", json!(null), debezium_row(1, false), None)),
    );
    stream.check(false);

    // The unwrap SMT's rows: `__op` and `__deleted` set the op.
    let unwrapped = json!({"type": "record", "name": "Value", "namespace": "shop.public.orders",
        "connect.name": "shop.public.orders.Value",
        "fields": [{"name": "id", "type": "int"}, {"name": "note", "type": ["null", "string"]},
                   {"name": "__op", "type": ["null", "string"]},
                   {"name": "__deleted", "type": ["null", "string"]}]});
    let mut stream = Stream::new(key_schema(), unwrapped, Format::Auto);
    stream
        .push(
            Some(json!({"id": 1})),
            Some(json!({"id": 1, "note": PLACEHOLDER, "__op": "c", "__deleted": "false"})),
        )
        .push(
            Some(json!({"id": 1})),
            Some(json!({"id": 1, "note": "x", "__op": "u", "__deleted": "false"})),
        )
        .push(
            Some(json!({"id": 1})),
            Some(json!({"id": 1, "note": null, "__op": null, "__deleted": "true"})),
        )
        .push(Some(json!({"id": 1})), None);
    let batch = stream.check(false);
    let ops = batch
        .column_by_name("_op")
        .unwrap()
        .as_dictionary::<arrow_array::types::Int8Type>();
    let names = ops.values().as_string::<i32>();
    let op = |i: usize| names.value(ops.keys().value(i) as usize);
    assert_eq!(
        [op(0), op(1), op(2), op(3)],
        ["insert", "update", "delete", "delete"]
    );
}

#[test]
fn bodies_the_decoder_rejects_fail_at_their_message() {
    let good = || envelope("c", json!(null), debezium_row(1, false), None);
    let encoded = |json: &Json| {
        let schema = Schema::parse(&debezium_envelope().to_string()).unwrap();
        let mut out = Vec::new();
        encode(&schema, &schema.root, json, &mut out);
        out
    };
    let stream = |bad: Vec<u8>| {
        let mut stream = Stream::new(key_schema(), debezium_envelope(), Format::Auto);
        stream.push(Some(json!({"id": 1})), Some(good()));
        stream.push_raw(Some(json!({"id": 1})), bad);
        stream
    };
    // Truncated, and with trailing bytes.
    let body = encoded(&good());
    stream(body[..body.len() - 3].to_vec()).check_fails_at(true, 1);
    stream([body.clone(), vec![0]].concat()).check_fails_at(true, 1);
    // An unknown op.
    stream(encoded(&envelope(
        "x",
        json!(null),
        debezium_row(1, false),
        None,
    )))
    .check_fails_at(true, 1);
    // Invalid UTF-8 in a field the batch does not use (`source.version`).
    let mut source = debezium_source(None);
    source["version"] = json!("\u{00e9}\u{00e9}\u{00e9}");
    let mut bad = good();
    bad["source"] = source;
    let mut body = encoded(&bad);
    let marker = "\u{00e9}\u{00e9}\u{00e9}".as_bytes();
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    body[at] = 0xff;
    stream(body).check_fails_at(true, 1);
    // A ZonedTimestamp that is not one, in `before` (which a create does not use).
    let mut before = debezium_row(1, false);
    before["updated_at"] = json!("yesterday");
    stream(encoded(&envelope(
        "c",
        before,
        debezium_row(1, false),
        None,
    )))
    .check_fails_at(true, 1);
}

#[test]
fn what_the_plan_does_not_follow_is_left_to_the_changes() {
    // A logical decoding message in a row envelope: its row is `message`, not `after`.
    let mut stream = Stream::new(key_schema(), debezium_envelope(), Format::Auto);
    stream.push(
        Some(json!({"id": 1})),
        Some(envelope("c", json!(null), debezium_row(1, false), None)),
    );
    stream.push(
        Some(json!({"id": 1})),
        Some(envelope("m", json!(null), json!(null), None)),
    );
    assert!(matches!(
        stream.batch_of_bodies(true, "orders").unwrap(),
        Read::NotPlanned
    ));
    stream.batch_of_changes().unwrap();
    // Schemas it does not plan: a value that is not a record, a recursive row, ...
    assert!(BodyPlan::new(
        VALUE_ID,
        Arc::new(Schema::parse(r#""string""#).unwrap()),
        false
    )
    .is_none());
    // A source that is one of two records.
    let mut two_sources = debezium_envelope();
    let source = two_sources["fields"][2]["type"].clone();
    two_sources["fields"][2]["type"] = json!([
        source,
        {"type": "record", "name": "Other", "fields": [{"name": "lsn", "type": "long"}]}
    ]);
    let two_sources = Arc::new(Schema::parse(&two_sources.to_string()).unwrap());
    assert!(BodyPlan::new(VALUE_ID, two_sources, true).is_none());
    let recursive =
        r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#;
    assert!(BodyPlan::new(VALUE_ID, Arc::new(Schema::parse(recursive).unwrap()), false).is_none());
}

#[test]
fn a_message_of_another_table_ends_the_batch_before_it() {
    // Debezium: `source.table` (here "items" for transaction 42; an empty one, or Debezium's
    // placeholder, names none).
    let mut stream = Stream::new(key_schema(), debezium_envelope(), Format::Auto);
    let mut unnamed = envelope("c", json!(null), debezium_row(3, false), None);
    unnamed["source"]["table"] = json!("");
    let mut placeholder = envelope("c", json!(null), debezium_row(4, false), None);
    placeholder["source"]["table"] = json!(PLACEHOLDER);
    stream
        .push(
            Some(json!({"id": 1})),
            Some(envelope("c", json!(null), debezium_row(1, false), None)),
        )
        .push(Some(json!({"id": 3})), Some(unnamed))
        .push(Some(json!({"id": 4})), Some(placeholder))
        .push(
            Some(json!({"id": 2})),
            Some(envelope("c", json!(null), debezium_row(2, false), Some(42))),
        );
    match stream.batch_of_bodies(true, "orders").unwrap() {
        Read::OtherTable { index, table } => assert_eq!((index, table.as_str()), (3, "items")),
        other => panic!("{other:?}"),
    }
    stream.messages.truncate(3);
    stream.check(true);

    // Flat rows: `__table`, or the record's name.
    let unwrapped = json!({"type": "record", "name": "Value", "namespace": "shop.public.orders",
        "fields": [{"name": "id", "type": "int"}, {"name": "__table", "type": ["null", "string"]}]});
    let mut stream = Stream::new(key_schema(), unwrapped, Format::Auto);
    stream
        .push(
            Some(json!({"id": 1})),
            Some(json!({"id": 1, "__table": "archive"})),
        )
        .push(
            Some(json!({"id": 2})),
            Some(json!({"id": 2, "__table": "archive"})),
        )
        .push(
            Some(json!({"id": 3})),
            Some(json!({"id": 3, "__table": null})),
        );
    match stream.batch_of_bodies(false, "archive").unwrap() {
        Read::OtherTable { index, table } => assert_eq!((index, table.as_str()), (2, "orders")),
        other => panic!("{other:?}"),
    }
    stream.messages.truncate(2);
    stream.check(false);
}
