//! Decoder tests without HTTP: writer schemas come from an in-memory [`SchemaSource`], and
//! messages are Confluent-framed Avro written by the small encoder below (zig-zag varints,
//! length-prefixed strings, union branch indexes), which shares no code with the decoder.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;

/// Writer schemas by id, as a registry would serve them.
struct FakeRegistry(HashMap<u32, Arc<Schema>>);

impl FakeRegistry {
    fn new(schemas: &[(u32, &str)]) -> FakeRegistry {
        FakeRegistry(
            schemas
                .iter()
                .map(|(id, text)| (*id, Arc::new(Schema::parse(text).unwrap())))
                .collect(),
        )
    }
}

impl SchemaSource for FakeRegistry {
    fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        self.0
            .get(&id)
            .cloned()
            .ok_or(Error::SchemaNotFound { id, at: None })
    }
}

/// Avro binary encoding of the few types the tests write.
#[derive(Default)]
struct Avro(Vec<u8>);

impl Avro {
    fn long(mut self, value: i64) -> Avro {
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        while n >= 0x80 {
            self.0.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
        self
    }
    fn string(self, text: &str) -> Avro {
        let mut out = self.long(text.len() as i64);
        out.0.extend_from_slice(text.as_bytes());
        out
    }
    /// The branch of a union; the branch's value follows.
    fn branch(self, index: i64) -> Avro {
        self.long(index)
    }
    /// Confluent framing: magic byte 0, the schema id, the body.
    fn framed(self, id: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&self.0);
        out
    }
}

const KEY: u32 = 1;
const ENVELOPE: u32 = 2;
const BOTTLED_WATER: u32 = 3;
const MESSAGE: u32 = 4;

const KEY_SCHEMA: &str = r#"{"type":"record","name":"Key","namespace":"shop.public.orders","fields":[{"name":"id","type":"int"}]}"#;

/// A Debezium PostgreSQL envelope of `orders(id int, item text)`.
const ENVELOPE_SCHEMA: &str = r#"{"type":"record","name":"Envelope","namespace":"shop.public.orders",
  "fields":[
    {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
        {"name":"id","type":"int"},{"name":"item","type":["null","string"]}]}],"default":null},
    {"name":"after","type":["null","Value"],"default":null},
    {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql",
        "fields":[{"name":"table","type":"string"},{"name":"lsn","type":["null","long"]}]}},
    {"name":"op","type":"string"},
    {"name":"ts_ms","type":["null","long"]},
    {"name":"transaction","type":["null",{"type":"record","name":"block","namespace":"event",
        "fields":[{"name":"id","type":"string"},{"name":"total_order","type":"long"},
                  {"name":"data_collection_order","type":"long"}]}]}]}"#;

/// A Bottled Water row of `cr_c3__aa_pes(id int, item text)`.
const BOTTLED_WATER_SCHEMA: &str = r#"{"type":"record","name":"cr_c3__aa_pes",
  "namespace":"com.martinkl.bottledwater.dbschema.public",
  "fields":[{"name":"id","type":"int"},{"name":"item","type":["null","string"]}]}"#;

/// Debezium's logical decoding message.
const MESSAGE_SCHEMA: &str = r#"{"type":"record","name":"MessageValue","namespace":"io.debezium.connector.postgresql",
  "fields":[
    {"name":"op","type":"string"},
    {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"table","type":"string"}]}},
    {"name":"message","type":{"type":"record","name":"Message","fields":[
        {"name":"prefix","type":"string"},{"name":"content","type":"bytes"}]}}]}"#;

fn decoder(options: DecoderOptions) -> ChangeDecoder {
    let schemas = FakeRegistry::new(&[
        (KEY, KEY_SCHEMA),
        (ENVELOPE, ENVELOPE_SCHEMA),
        (BOTTLED_WATER, BOTTLED_WATER_SCHEMA),
        (MESSAGE, MESSAGE_SCHEMA),
    ]);
    ChangeDecoder::new(schemas, options)
}

fn key(id: i64) -> Vec<u8> {
    Avro::default().long(id).framed(KEY)
}

/// The `Value` row of `orders`, or null, as a union branch.
fn row_branch(avro: Avro, row: Option<(i64, &str)>) -> Avro {
    match row {
        None => avro.branch(0),
        Some((id, item)) => avro.branch(1).long(id).branch(1).string(item),
    }
}

fn envelope(op: &str, before: Option<(i64, &str)>, after: Option<(i64, &str)>) -> Vec<u8> {
    let avro = row_branch(Avro::default(), before);
    let avro = row_branch(avro, after);
    avro.string("orders")
        .branch(1)
        .long(2_345_678)
        .string(op)
        .branch(1)
        .long(1_700_000_000_000)
        .branch(0)
        .framed(ENVELOPE)
}

fn message<'a>(topic: &'a str, key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Message<'a> {
    Message {
        topic,
        partition: 2,
        offset: 41,
        timestamp_ms: Some(1_700_000_000_123),
        key,
        value,
        key_schema_header: None,
        value_schema_header: None,
    }
}

const TOPIC: &str = "shop.public.orders";

fn orders_row(id: i32, item: &str) -> Value {
    Value::Record(crate::avro::Record::new(
        "shop.public.orders.Value",
        vec![Arc::from("id"), Arc::from("item")],
        vec![Value::Int(id), Value::String(item.into())],
    ))
}

fn field<'a>(value: &'a Option<Value>, name: &str) -> &'a Value {
    match value {
        Some(Value::Record(record)) => record.get(name).expect("the field"),
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn the_source_block_is_decoded_with_the_envelope_when_asked_to() {
    let mut decoder = decoder(DecoderOptions::default());
    let (key, value) = (key(1), envelope("c", None, Some((1, "tea"))));
    let decode = |decoder: &mut ChangeDecoder| {
        decoder
            .decode(&message(TOPIC, Some(&key), Some(&value)))
            .unwrap()
            .expect("a change")
    };
    let deferred = decode(&mut decoder);
    decoder.set_source_deferred(false);
    let decoded = decode(&mut decoder);
    assert!(matches!(deferred.source, Some(LazyValue::Encoded(_))));
    let Some(LazyValue::Decoded(source)) = decoded.source else {
        panic!("not decoded: {:?}", decoded.source);
    };
    assert_eq!(*deferred.source.unwrap().decode().unwrap(), source);
    assert_eq!(field(&Some(source), "lsn"), &Value::Long(2_345_678));
    assert_eq!(deferred.table, decoded.table);
}

#[test]
fn debezium_row_envelopes() {
    let mut decoder = decoder(DecoderOptions::default());
    let cases = [
        ("c", None, Some((1, "tea")), Op::Insert),
        ("u", Some((1, "tea")), Some((1, "coffee")), Op::Update),
        ("d", Some((1, "coffee")), None, Op::Delete),
        ("r", None, Some((2, "cake")), Op::Read),
    ];
    for (code, before, after, op) in cases {
        let key = key(1);
        let value = envelope(code, before, after);
        let change = decoder
            .decode(&message(TOPIC, Some(&key), Some(&value)))
            .unwrap()
            .expect("a change");
        assert_eq!(change.op, op, "{code}");
        let row = |r: Option<(i64, &str)>| r.map(|(id, item)| orders_row(id as i32, item));
        assert_eq!(change.before, row(before), "{code}");
        assert_eq!(change.after, row(after), "{code}");
        assert_eq!(field(&change.key, "id"), &Value::Int(1));
        assert_eq!(change.table.as_deref(), Some("orders"));
        // Left encoded by the decoder, and decoded when asked for.
        assert!(
            matches!(change.source, Some(LazyValue::Encoded(_))),
            "{code}"
        );
        let source = change
            .source
            .as_ref()
            .map(|s| s.decode().unwrap().into_owned());
        assert_eq!(field(&source, "lsn"), &Value::Long(2_345_678));
        assert_eq!(change.transaction, None);
        assert!(!change.tombstone);
        let (id, schema) = change.value_schema.expect("the value schema");
        assert_eq!(id, ENVELOPE);
        assert_eq!(
            schema.root_record().map(|r| &**r.name()),
            Some("shop.public.orders.Envelope")
        );
        assert_eq!(
            change.position,
            Position {
                topic: TOPIC.into(),
                partition: 2,
                offset: 41,
                timestamp_ms: Some(1_700_000_000_123),
            }
        );
    }
}

#[test]
fn debezium_truncate_and_transaction() {
    let mut decoder = decoder(DecoderOptions::default());
    let value = Avro::default()
        .branch(0)
        .branch(0)
        .string("orders")
        .branch(0)
        .string("t")
        .branch(0)
        .branch(1)
        .string("571:53195832")
        .long(3)
        .long(1)
        .framed(ENVELOPE);
    let change = decoder
        .decode(&message(TOPIC, None, Some(&value)))
        .unwrap()
        .expect("a change");
    assert_eq!(change.op, Op::Truncate);
    assert_eq!(
        (&change.key, &change.before, &change.after),
        (&None, &None, &None)
    );
    assert_eq!(
        field(&change.transaction, "id"),
        &Value::String("571:53195832".into())
    );
    assert_eq!(field(&change.transaction, "total_order"), &Value::Long(3));
}

#[test]
fn debezium_logical_message() {
    let mut decoder = decoder(DecoderOptions::default());
    let mut value = Avro::default()
        .string("m")
        .string("")
        .string("audit")
        .long(5)
        .0;
    value.extend_from_slice(b"hello");
    let value = Avro(value).framed(MESSAGE);
    let change = decoder
        .decode(&message("shop.message", None, Some(&value)))
        .unwrap()
        .expect("a change");
    assert_eq!(change.op, Op::Message);
    assert_eq!(
        field(&change.after, "prefix"),
        &Value::String("audit".into())
    );
    assert_eq!(
        field(&change.after, "content"),
        &Value::Bytes(b"hello".to_vec())
    );
    assert_eq!(change.before, None);
    // No table in the source block: the topic names it.
    assert_eq!(change.table.as_deref(), Some("message"));
}

#[test]
fn debezium_tombstone_is_dropped_unless_asked_for() {
    let key = key(1);
    let delete = envelope("d", Some((1, "tea")), None);
    for emit_tombstones in [false, true] {
        let mut decoder = decoder(DecoderOptions {
            emit_tombstones,
            ..DecoderOptions::default()
        });
        let deleted = decoder
            .decode(&message(TOPIC, Some(&key), Some(&delete)))
            .unwrap()
            .expect("the delete");
        assert_eq!(deleted.op, Op::Delete);
        let tombstone = decoder.decode(&message(TOPIC, Some(&key), None)).unwrap();
        if !emit_tombstones {
            assert!(tombstone.is_none(), "{tombstone:?}");
            continue;
        }
        let tombstone = tombstone.expect("the tombstone, when asked for");
        assert_eq!(tombstone.op, Op::Delete);
        assert!(tombstone.tombstone);
        assert_eq!((&tombstone.before, &tombstone.after), (&None, &None));
        assert_eq!(field(&tombstone.key, "id"), &Value::Int(1));
        assert_eq!(tombstone.table.as_deref(), Some("orders"));
        assert_eq!(tombstone.value_schema.map(|(id, _)| id), Some(ENVELOPE));
    }
}

#[test]
fn bottled_water_rows_are_upserts_and_null_is_a_delete() {
    let mut decoder = decoder(DecoderOptions::default());
    let topic = "cr_c3__aa_pes";
    let key = key(7);
    for item in ["tea", "coffee"] {
        let value = Avro::default()
            .long(7)
            .branch(1)
            .string(item)
            .framed(BOTTLED_WATER);
        let change = decoder
            .decode(&message(topic, Some(&key), Some(&value)))
            .unwrap()
            .expect("a change");
        assert_eq!(change.op, Op::Upsert);
        assert_eq!(change.table.as_deref(), Some("crêpes"));
        assert_eq!(field(&change.after, "item"), &Value::String(item.into()));
        assert_eq!(change.before, None);
        assert!(change.source.is_none());
    }
    // A null value on a flat-row topic is the delete of its key, delivered by default.
    let delete = decoder
        .decode(&message(topic, Some(&key), None))
        .unwrap()
        .expect("the delete");
    assert_eq!(delete.op, Op::Delete);
    assert!(delete.tombstone);
    assert_eq!(field(&delete.key, "id"), &Value::Int(7));
    assert_eq!(delete.table.as_deref(), Some("crêpes"));
    assert_eq!(delete.value_schema.map(|(id, _)| id), Some(BOTTLED_WATER));
}

#[test]
fn table_follows_the_latest_value_on_the_topic() {
    // A topic routed from several tables: the source block names each change's table, and a
    // tombstone belongs to the table of the value before it, not to the topic's name.
    let mut decoder = decoder(DecoderOptions {
        emit_tombstones: true,
        ..DecoderOptions::default()
    });
    let topic = "shop.all_tables";
    let key = key(1);
    let delete = envelope("d", Some((1, "tea")), None);
    let change = decoder
        .decode(&message(topic, Some(&key), Some(&delete)))
        .unwrap()
        .expect("the delete");
    assert_eq!(change.table.as_deref(), Some("orders"));
    let tombstone = decoder
        .decode(&message(topic, Some(&key), None))
        .unwrap()
        .expect("the tombstone");
    assert_eq!(tombstone.table.as_deref(), Some("orders"));
}

#[test]
fn tombstone_on_a_new_topic_is_a_delete_named_after_the_topic() {
    let mut decoder = decoder(DecoderOptions::default());
    let key = key(3);
    let change = decoder
        .decode(&message("shop.public.order_lines", Some(&key), None))
        .unwrap()
        .expect("the delete");
    assert_eq!(change.op, Op::Delete);
    assert!(change.tombstone);
    assert_eq!(change.table.as_deref(), Some("order_lines"));
    assert!(change.value_schema.is_none());
}

#[test]
fn format_is_detected_per_value_schema() {
    let bottled_water = Avro::default().long(1).branch(0).framed(BOTTLED_WATER);
    let debezium = envelope("c", None, Some((1, "tea")));
    let mut auto = decoder(DecoderOptions::default());
    // One topic, two writer schemas: each value is read by its own schema's envelope.
    let row = auto
        .decode(&message(TOPIC, None, Some(&bottled_water)))
        .unwrap()
        .unwrap();
    assert_eq!(row.op, Op::Upsert);
    let insert = auto
        .decode(&message(TOPIC, None, Some(&debezium)))
        .unwrap()
        .unwrap();
    assert_eq!(insert.op, Op::Insert);
    assert_eq!(insert.after, Some(orders_row(1, "tea")));

    // format="row" reads the envelope itself as a row.
    let mut rows = decoder(DecoderOptions {
        format: Format::Row,
        ..DecoderOptions::default()
    });
    let whole = rows
        .decode(&message(TOPIC, None, Some(&debezium)))
        .unwrap()
        .unwrap();
    assert_eq!(whole.op, Op::Upsert);
    assert_eq!(field(&whole.after, "op"), &Value::String("c".into()));

    // format="debezium" reads keyed envelopes (the key is never read as an envelope) ...
    let mut forced = decoder(DecoderOptions {
        format: Format::Debezium,
        ..DecoderOptions::default()
    });
    let keyed = forced
        .decode(&message(TOPIC, Some(&key(1)), Some(&debezium)))
        .unwrap()
        .unwrap();
    assert_eq!(keyed.op, Op::Insert);
    assert_eq!(keyed.after, Some(orders_row(1, "tea")));
    // ... and refuses a value schema without the envelope's fields.
    let error = forced
        .decode(&message(TOPIC, None, Some(&bottled_water)))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Decode { reason, at: Some(at) }
            if reason.starts_with("value: ") && reason.contains("no before/after/op") && at.offset == 41),
        "{error}"
    );
}

#[test]
fn unknown_schema_id_is_schema_not_found_at_the_message() {
    let mut decoder = decoder(DecoderOptions::default());
    let value = Avro::default().long(1).framed(99);
    let error = decoder
        .decode(&message(TOPIC, None, Some(&value)))
        .unwrap_err();
    match &error {
        Error::SchemaNotFound {
            id: 99,
            at: Some(at),
        } => {
            assert_eq!((at.topic.as_str(), at.partition, at.offset), (TOPIC, 2, 41));
        }
        other => panic!("expected SchemaNotFound for id 99: {other:?}"),
    }
    assert!(error.to_string().contains("schema id 99"), "{error}");
}

#[test]
fn malformed_envelopes_are_decode_errors_at_the_message() {
    let mut decoder = decoder(DecoderOptions::default());
    let unknown_op = envelope("x", None, Some((1, "tea")));
    let mut truncated = envelope("c", None, Some((1, "tea")));
    truncated.truncate(12);
    let unframed = vec![7, 0, 0, 0, 2, 0];
    let cases: [(&[u8], &str); 3] = [
        (&unknown_op, "unknown Debezium op \"x\""),
        (&truncated, "value: "),
        (&unframed, "value: unknown magic byte"),
    ];
    for (value, expected) in cases {
        let error = decoder
            .decode(&message(TOPIC, None, Some(value)))
            .unwrap_err();
        assert!(
            matches!(&error, Error::Decode { reason, at: Some(at) }
                if reason.starts_with(expected) && at.topic == TOPIC && at.offset == 41),
            "{expected}: {error}"
        );
    }
    // A bad key is named as the key.
    let bad_key = Avro::default().framed(KEY);
    let value = envelope("c", None, Some((1, "tea")));
    let error = decoder
        .decode(&message(TOPIC, Some(&bad_key), Some(&value)))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Decode { reason, .. } if reason.starts_with("key: ")),
        "{error}"
    );
}
