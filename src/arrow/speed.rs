//! The decoding benchmark behind `make bench`'s batch figures, without Kafka: the benchmark's
//! own messages (written by `benches/dump_messages.py` into the directory named by
//! `CHANGESTREAM_BENCH_MESSAGES`) decoded into record batches of 10,000 rows, per stage and
//! for the whole job, beside `arrow-avro` (the Arrow project's Avro decoder) on the same bytes.
//!
//! `cargo test --release --lib arrow::speed -- --ignored --nocapture` (see benches/README.md).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema as ArrowSchema};

use super::{record_batch, Body, BodyPlan, Read};
use crate::avro::Schema;
use crate::change::{Change, ChangeDecoder, DecoderOptions, Message, Position, SchemaSource};
use crate::error::{Error, Result};
use crate::frame;

// The extension's allocator (src/python/mod.rs), which the figures depend on.
#[cfg(not(feature = "python"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH_ROWS: usize = 10_000;
const ROUNDS: usize = 3;

/// The dumped schemas, served by id.
struct Schemas(HashMap<u32, Arc<Schema>>);

impl SchemaSource for Schemas {
    fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        self.0
            .get(&id)
            .cloned()
            .ok_or(Error::SchemaNotFound { id, at: None })
    }
}

/// One dataset: its schemas (id, JSON text) and (key, value) bodies.
struct Dataset {
    name: &'static str,
    schemas: Vec<(u32, String)>,
    value_id: u32,
    messages: Vec<(Vec<u8>, Vec<u8>)>,
}

fn load(directory: &std::path::Path, name: &'static str) -> Dataset {
    let text = std::fs::read_to_string(directory.join(format!("{name}.schemas.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = |part: &str| {
        let id = json[part][0].as_u64().unwrap() as u32;
        (id, json[part][1].to_string())
    };
    let bytes = std::fs::read(directory.join(format!("{name}.messages"))).unwrap();
    let mut bodies = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        bodies.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    let mut bodies = bodies.into_iter();
    let mut messages = Vec::new();
    while let (Some(key), Some(value)) = (bodies.next(), bodies.next()) {
        messages.push((key, value));
    }
    Dataset {
        name,
        schemas: vec![entry("key"), entry("value")],
        value_id: entry("value").0,
        messages,
    }
}

fn rate(events: usize, started: Instant) -> f64 {
    events as f64 / started.elapsed().as_secs_f64()
}

/// The best of [`ROUNDS`] runs of `job` (events per second).
fn best(events: usize, mut job: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            job();
            rate(events, started)
        })
        .fold(0.0, f64::max)
}

fn decoder(dataset: &Dataset, source_deferred: bool) -> ChangeDecoder {
    let schemas = Schemas(
        dataset
            .schemas
            .iter()
            .map(|(id, text)| (*id, Arc::new(Schema::parse(text).unwrap())))
            .collect(),
    );
    let mut decoder = ChangeDecoder::new(schemas, DecoderOptions::default());
    decoder.set_source_deferred(source_deferred);
    decoder
}

/// The changes of one batch's messages, as the fetch thread decodes them.
fn decode(decoder: &mut ChangeDecoder, offset: usize, chunk: &[(Vec<u8>, Vec<u8>)]) -> Vec<Change> {
    chunk
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            decoder
                .decode(&Message {
                    topic: "bench.orders",
                    partition: 0,
                    offset: (offset + i) as i64,
                    timestamp_ms: Some(0),
                    key: Some(key),
                    value: Some(value),
                    key_schema_header: None,
                    value_schema_header: None,
                })
                .unwrap()
                .unwrap()
        })
        .collect()
}

/// Every message decoded, a batch at a time (each batch's changes dropped before the next,
/// as in the stream), and each batch's changes passed to `then`; Debezium's `source` blocks
/// decoded, as for batches, or left encoded, as for the iterator (`source_deferred`).
fn decode_batches(dataset: &Dataset, source_deferred: bool, mut then: impl FnMut(&[Change])) {
    let mut decoder = decoder(dataset, source_deferred);
    for (n, chunk) in dataset.messages.chunks(BATCH_ROWS).enumerate() {
        then(&decode(&mut decoder, n * BATCH_ROWS, chunk));
    }
}

/// The schemas of a dataset by id, parsed.
fn parsed(dataset: &Dataset) -> HashMap<u32, Arc<Schema>> {
    dataset
        .schemas
        .iter()
        .map(|(id, text)| (*id, Arc::new(Schema::parse(text).unwrap())))
        .collect()
}

/// Every message framed and read straight into record batches by a [`BodyPlan`], a batch at
/// a time, each batch passed to `then`; with `halves`, each batch's two halves are read on two
/// threads (two batches).
fn body_batches(
    dataset: &Dataset,
    schemas: &HashMap<u32, Arc<Schema>>,
    plan: &BodyPlan,
    halves: bool,
    mut then: impl FnMut(RecordBatch),
) {
    let topic = crate::name::Name::new("bench.orders");
    for (n, chunk) in dataset.messages.chunks(BATCH_ROWS).enumerate() {
        let positions: Vec<Position> = (0..chunk.len())
            .map(|i| Position {
                topic,
                partition: 0,
                offset: (n * BATCH_ROWS + i) as i64,
                timestamp_ms: Some(0),
            })
            .collect();
        let bodies: Vec<Body<'_>> = chunk
            .iter()
            .zip(&positions)
            .map(|((key, value), position)| {
                let (key_id, key) = frame::split(key, None).unwrap();
                let (value_id, value) = frame::split(value, None).unwrap();
                assert_eq!(value_id, dataset.value_id);
                Body {
                    position,
                    key: Some((&*schemas[&key_id], key)),
                    value: Some(value),
                }
            })
            .collect();
        let read = |bodies: &[Body<'_>]| match plan.record_batch("orders", bodies).unwrap() {
            Read::Batch(batch) => batch,
            other => panic!("{other:?}"),
        };
        if halves {
            let (first, second) = bodies.split_at(bodies.len() / 2);
            let (first, second) = std::thread::scope(|scope| {
                let first = scope.spawn(|| read(first));
                let second = read(second);
                (first.join().unwrap(), second)
            });
            then(first);
            then(second);
        } else {
            then(read(&bodies));
        }
    }
}

/// Values through `arrow-avro`'s Confluent-framed decoder, to record batches of its own
/// layout (the envelope as a struct column, no Debezium types).
fn arrow_avro_batches(dataset: &Dataset, mut then: impl FnMut(RecordBatch)) -> usize {
    use arrow_avro::reader::ReaderBuilder;
    use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
    let (_, text) = dataset
        .schemas
        .iter()
        .find(|(id, _)| *id == dataset.value_id)
        .unwrap();
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(
            Fingerprint::Id(dataset.value_id),
            AvroSchema::new(text.clone()),
        )
        .unwrap();
    let mut decoder = ReaderBuilder::new()
        .with_batch_size(BATCH_ROWS)
        .with_writer_schema_store(store)
        .build_decoder()
        .unwrap();
    let mut rows = 0;
    for (_, value) in &dataset.messages {
        let mut body = &value[..];
        while !body.is_empty() {
            let used = decoder.decode(body).unwrap();
            body = &body[used..];
            if decoder.batch_is_full() {
                let batch = decoder.flush().unwrap().unwrap();
                rows += batch.num_rows();
                then(batch);
            }
        }
    }
    if let Some(batch) = decoder.flush().unwrap() {
        rows += batch.num_rows();
        then(batch);
    }
    rows
}

/// Part of what an `arrow-avro` batch of Debezium envelopes still needs to be ours: each row
/// column taken from `before` for deletes and from `after` otherwise, `MicroTimestamp` as a
/// timestamp and `ZonedTimestamp` text parsed. (Not done: `_op` and the other metadata
/// columns, the key, decimals past 38 digits, `VariableScaleDecimal`, unions as structs,
/// unavailable values.)
fn flatten_envelopes(batch: &RecordBatch) -> RecordBatch {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Array, BooleanArray, TimestampMicrosecondArray};
    let part = |name: &str| batch.column_by_name(name).unwrap().as_struct();
    let (before, after) = (part("before"), part("after"));
    let ops = batch.column_by_name("op").unwrap().as_string::<i32>();
    let deletes: BooleanArray = ops.iter().map(|op| Some(op == Some("d"))).collect();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (index, field) in after.fields().iter().enumerate() {
        let column =
            arrow_select::zip::zip(&deletes, before.column(index), after.column(index)).unwrap();
        let column: ArrayRef = match field.name().as_str() {
            "created_at" => Arc::new(TimestampMicrosecondArray::new(
                column.as_primitive::<Int64Type>().values().clone(),
                column.nulls().cloned(),
            )),
            "updated_at" => Arc::new(
                column
                    .as_string::<i32>()
                    .iter()
                    .map(
                        |text| match crate::avro::temporal::parse_zoned_timestamp(text?) {
                            Ok(crate::avro::Value::Timestamp(at)) => super::column::micros(&at),
                            _ => None,
                        },
                    )
                    .collect::<TimestampMicrosecondArray>(),
            ),
            _ => column,
        };
        fields.push(Field::new(field.name(), column.data_type().clone(), true));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).unwrap()
}

#[test]
#[ignore]
fn batches_per_second() {
    let Some(directory) = std::env::var_os("CHANGESTREAM_BENCH_MESSAGES").map(PathBuf::from) else {
        panic!("CHANGESTREAM_BENCH_MESSAGES names no directory (see benches/README.md)");
    };
    for name in ["debezium", "rows"] {
        let dataset = load(&directory, name);
        let events = dataset.messages.len();
        let iterated = best(events, || decode_batches(&dataset, true, |_| {}));
        let decode = best(events, || decode_batches(&dataset, false, |_| {}));
        let mut kept = Vec::new();
        decode_batches(&dataset, false, |changes| kept.push(changes.to_vec()));
        let build = best(events, || {
            for changes in &kept {
                assert_eq!(record_batch(changes).unwrap().num_rows(), changes.len());
            }
        });
        drop(kept);
        let whole = best(events, || {
            decode_batches(&dataset, false, |changes| {
                record_batch(changes).unwrap();
            })
        });
        let schemas = parsed(&dataset);
        let plan = BodyPlan::new(
            dataset.value_id,
            schemas[&dataset.value_id].clone(),
            name == "debezium",
        )
        .unwrap();
        // Equal to the batches of the decoded changes, batch by batch.
        let mut expected = Vec::new();
        decode_batches(&dataset, false, |changes| {
            expected.push(record_batch(changes).unwrap())
        });
        let mut batches = 0;
        body_batches(&dataset, &schemas, &plan, false, |batch| {
            assert_eq!(batch, expected[batches], "batch {batches} of {name}");
            batches += 1;
        });
        assert_eq!(batches, expected.len());
        drop(expected);
        let direct = best(events, || {
            body_batches(&dataset, &schemas, &plan, false, drop);
        });
        let two_threads = best(events, || {
            body_batches(&dataset, &schemas, &plan, true, drop);
        });
        let arrow_avro = best(events, || {
            assert_eq!(arrow_avro_batches(&dataset, drop), events);
        });
        let flattened = (name == "debezium").then(|| {
            best(events, || {
                arrow_avro_batches(&dataset, |batch| {
                    flatten_envelopes(&batch);
                });
            })
        });
        println!(
            "{:<9} {events} events: decode to changes {decode:>10.0}/s ({iterated:>10.0}/s as the \
             iterator decodes them), changes to batches \
             {build:>10.0}/s, whole {whole:>10.0}/s; bodies straight to batches {direct:>10.0}/s \
             ({two_threads:>10.0}/s in halves on two threads); \
             arrow-avro values only {arrow_avro:>10.0}/s{}",
            dataset.name,
            flattened.map_or(String::new(), |rate| format!(
                ", with the envelopes flattened {rate:>10.0}/s"
            )),
        );
    }
}
