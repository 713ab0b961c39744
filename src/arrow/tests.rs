//! Record batches built from hand-made changes: every Arrow type, the metadata columns,
//! envelopes, and the values that fit no column.

use super::column::dictionary;
use super::decimal::{i128_of, i256_of};
use super::*;

use std::sync::Arc;

use arrow_array::types::{Decimal128Type, Decimal256Type, Int32Type, Int8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{i256, IntervalMonthDayNano};
use arrow_schema::{DataType, TimeUnit};

use crate::avro::LazyValue;
use crate::avro::{
    Decimal, Interval, Named, Record, RecordDef, Schema, Temporal, Time, Timestamp, Value,
};
use crate::change::{Change, Op, Position};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, DurationMicrosecondType, Float32Type, Float64Type, Int64Type,
    IntervalMonthDayNanoType, Time64MicrosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType,
};

fn parse(json: &str) -> Arc<Schema> {
    Arc::new(Schema::parse(json).expect("a valid test schema"))
}

/// A record value of the schema's record `def`, fields in order.
fn record(def: &RecordDef, values: Vec<Value>) -> Value {
    Value::Record(Record {
        shape: def.shape,
        values,
    })
}

fn change(schema: &Arc<Schema>, op: Op, offset: i64) -> Change {
    Change {
        op,
        key: None,
        before: None,
        after: None,
        table: Some("t".into()),
        source: None,
        transaction: None,
        tombstone: false,
        value_schema: Some((7, schema.clone())),
        position: Position {
            topic: "topic".into(),
            partition: 0,
            offset,
            timestamp_ms: Some(1_000),
        },
    }
}

fn upsert(schema: &Arc<Schema>, values: Vec<Value>) -> Change {
    let def = schema.root_record().expect("a record schema");
    Change {
        after: Some(record(def, values)),
        ..change(schema, Op::Upsert, 0)
    }
}

fn named_record(schema: &Schema, name: &str) -> RecordDef {
    match schema.named.iter().find(|n| n.full_name() == name) {
        Some(Named::Record(def)) => def.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn field_type(batch: &RecordBatch, name: &str) -> DataType {
    column(batch, name).data_type().clone()
}

#[test]
fn primitive_and_nested_types() {
    let schema = parse(
        r#"{"type":"record","name":"r","fields":[
            {"name":"b","type":"boolean"},{"name":"i","type":"int"},
            {"name":"l","type":"long"},{"name":"f","type":"float"},
            {"name":"d","type":"double"},{"name":"s","type":["null","string"]},
            {"name":"y","type":"bytes"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
            {"name":"x","type":{"type":"fixed","name":"F","size":2}},
            {"name":"a","type":{"type":"array","items":"int"}},
            {"name":"m","type":{"type":"map","values":"long"}},
            {"name":"p","type":{"type":"record","name":"P","fields":[{"name":"q","type":"int"}]}},
            {"name":"n","type":"null"}]}"#,
    );
    let inner = named_record(&schema, "P");
    let symbol = match schema.named.iter().find(|n| n.full_name() == "E") {
        Some(Named::Enum(e)) => e.symbols[1].clone(),
        other => panic!("{other:?}"),
    };
    let row = vec![
        Value::Boolean(true),
        Value::Int(-1),
        Value::Long(1 << 40),
        Value::Float(0.5),
        Value::Double(-2.5),
        Value::String("crêpe".into()),
        Value::Bytes(vec![0, 255]),
        Value::Enum(symbol),
        Value::Fixed(vec![1, 2]),
        Value::Array(vec![Value::Int(1), Value::Int(2)]),
        Value::Map(vec![("k".into(), Value::Long(3))]),
        record(&inner, vec![Value::Int(9)]),
        Value::Null,
    ];
    let mut nulls = row.clone();
    nulls[5] = Value::Null;
    let batch = record_batch(&[upsert(&schema, row), upsert(&schema, nulls)]).unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(field_type(&batch, "b"), DataType::Boolean);
    assert_eq!(field_type(&batch, "i"), DataType::Int32);
    assert_eq!(field_type(&batch, "l"), DataType::Int64);
    assert_eq!(field_type(&batch, "f"), DataType::Float32);
    assert_eq!(field_type(&batch, "d"), DataType::Float64);
    assert_eq!(field_type(&batch, "s"), DataType::Utf8);
    assert_eq!(field_type(&batch, "y"), DataType::Binary);
    assert_eq!(field_type(&batch, "e"), dictionary(DataType::Int32));
    assert_eq!(field_type(&batch, "x"), DataType::FixedSizeBinary(2));
    assert!(
        matches!(field_type(&batch, "a"), DataType::List(f) if *f.data_type() == DataType::Int32)
    );
    assert!(matches!(field_type(&batch, "m"), DataType::Map(..)));
    assert!(matches!(field_type(&batch, "p"), DataType::Struct(f) if f[0].name() == "q"));
    assert_eq!(field_type(&batch, "n"), DataType::Null);
    assert!(batch.schema().fields().iter().all(|f| f.is_nullable()));

    assert_eq!(
        column(&batch, "l").as_primitive::<Int64Type>().value(0),
        1 << 40
    );
    assert_eq!(
        column(&batch, "f").as_primitive::<Float32Type>().value(0),
        0.5
    );
    assert_eq!(
        column(&batch, "d").as_primitive::<Float64Type>().value(1),
        -2.5
    );
    let s = column(&batch, "s").as_string::<i32>();
    assert_eq!(s.value(0), "crêpe");
    assert!(s.is_null(1));
    let e = column(&batch, "e").as_dictionary::<Int32Type>();
    assert_eq!(e.keys().value(0), 1);
    let lists = column(&batch, "a").as_list::<i32>();
    assert_eq!(lists.value(0).as_primitive::<Int32Type>().values(), &[1, 2]);
    let structs = column(&batch, "p").as_struct();
    assert_eq!(structs.column(0).as_primitive::<Int32Type>().value(1), 9);
}

#[test]
fn metadata_columns() {
    let schema = parse(r#"{"type":"record","name":"r","fields":[{"name":"id","type":"int"}]}"#);
    let mut second = upsert(&schema, vec![Value::Int(2)]);
    second.position.offset = 5;
    second.position.timestamp_ms = None;
    second.op = Op::Insert;
    let batch = record_batch(&[upsert(&schema, vec![Value::Int(1)]), second]).unwrap();
    let names: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["id", "_op", "_topic", "_partition", "_offset", "_timestamp"]
    );
    let ops = column(&batch, "_op").as_dictionary::<Int8Type>();
    let op_names = ops.values().as_string::<i32>();
    let op = |i: usize| op_names.value(ops.keys().value(i) as usize);
    assert_eq!((op(0), op(1)), ("upsert", "insert"));
    assert_eq!(
        column(&batch, "_offset")
            .as_primitive::<Int64Type>()
            .value(1),
        5
    );
    let timestamps = column(&batch, "_timestamp").as_primitive::<TimestampMillisecondType>();
    assert_eq!(timestamps.value(0), 1_000);
    assert!(timestamps.is_null(1));
    assert_eq!(
        field_type(&batch, "_timestamp"),
        DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
    );
    let metadata = batch.schema().metadata().clone();
    assert_eq!(metadata["changestream.table"], "t");
    assert_eq!(metadata["changestream.schema_id"], "7");
}

#[test]
fn row_column_named_like_metadata_keeps_its_name() {
    let schema = parse(r#"{"type":"record","name":"r","fields":[{"name":"_op","type":"string"}]}"#);
    let batch = record_batch(&[upsert(&schema, vec![Value::String("mine".into())])]).unwrap();
    assert_eq!(column(&batch, "_op").as_string::<i32>().value(0), "mine");
    assert!(column(&batch, "__op")
        .as_dictionary_opt::<Int8Type>()
        .is_some());
}

#[test]
fn logical_types() {
    let schema = parse(
        r#"{"type":"record","name":"r","fields":[
            {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
            {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
            {"name":"date","type":{"type":"int","logicalType":"date"}},
            {"name":"time","type":{"type":"long","logicalType":"time-micros"}},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"local","type":{"type":"long","logicalType":"local-timestamp-micros"}},
            {"name":"nanos","type":{"type":"long","logicalType":"timestamp-nanos"}},
            {"name":"span","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}},
            {"name":"micro","type":{"type":"long","connect.name":"io.debezium.time.MicroDuration"}},
            {"name":"tz","type":{"type":"string","connect.name":"io.debezium.time.ZonedTime"}},
            {"name":"num","type":{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data",
                "fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],
                "connect.name":"io.debezium.data.VariableScaleDecimal"}}]}"#,
    );
    let timestamp = |seconds, nanos, offset| {
        Value::Timestamp(Timestamp {
            seconds,
            nanos,
            offset,
        })
    };
    let row = |time_nanos: i64, offset: Option<i32>| {
        vec![
            Value::Decimal(Decimal {
                unscaled: vec![0xfb, 0x2e].into(), // -1234
                scale: 2,
            }),
            Value::Uuid([7; 16]),
            Value::Date(19_782),
            Value::Time(Time {
                nanos: time_nanos,
                offset: None,
            }),
            timestamp(-1, 999_999_999, Some(0)),
            timestamp(1, 500_000_000, None),
            timestamp(-1, 1, Some(0)),
            Value::Interval(Interval {
                months: 14,
                days: -3,
                micros: 5,
            }),
            Value::Duration(-90),
            Value::Time(Time {
                nanos: 3_600_000_000_000,
                offset,
            }),
            Value::Decimal(Decimal {
                unscaled: vec![0x05].into(),
                scale: 6,
            }),
        ]
    };
    let batch = record_batch(&[
        upsert(&schema, row(1_000_999, Some(7200))),
        upsert(&schema, row(NANOS_PER_DAY, Some(0))),
    ])
    .unwrap();
    let utc = Some(Arc::from(UTC));
    assert_eq!(field_type(&batch, "dec"), DataType::Decimal128(38, 2));
    assert_eq!(
        column(&batch, "dec")
            .as_primitive::<Decimal128Type>()
            .value(0),
        -1234
    );
    assert_eq!(field_type(&batch, "uuid"), DataType::FixedSizeBinary(16));
    let uuid_field = batch.schema().field_with_name("uuid").unwrap().clone();
    assert_eq!(uuid_field.metadata()["ARROW:extension:name"], "arrow.uuid");
    assert_eq!(
        column(&batch, "date").as_primitive::<Date32Type>().value(0),
        19_782
    );
    let times = column(&batch, "time").as_primitive::<Time64MicrosecondType>();
    assert_eq!(times.value(0), 1_000, "nanoseconds are dropped");
    assert_eq!(
        times.value(1),
        86_399_999_999,
        "24:00 is the last microsecond"
    );
    assert_eq!(
        field_type(&batch, "ts"),
        DataType::Timestamp(TimeUnit::Microsecond, utc.clone())
    );
    assert_eq!(
        column(&batch, "ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        -1,
        "toward the past, as Python"
    );
    assert_eq!(
        field_type(&batch, "local"),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        column(&batch, "local")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_500_000
    );
    assert_eq!(
        field_type(&batch, "nanos"),
        DataType::Timestamp(TimeUnit::Nanosecond, utc)
    );
    assert_eq!(
        column(&batch, "nanos")
            .as_primitive::<TimestampNanosecondType>()
            .value(0),
        -999_999_999
    );
    let span = column(&batch, "span").as_primitive::<IntervalMonthDayNanoType>();
    assert_eq!(span.value(0), IntervalMonthDayNano::new(14, -3, 5_000));
    assert_eq!(
        column(&batch, "micro")
            .as_primitive::<DurationMicrosecondType>()
            .value(0),
        -90
    );
    let zoned = column(&batch, "tz").as_primitive::<Time64MicrosecondType>();
    assert_eq!(
        zoned.value(0),
        23 * 3_600_000_000,
        "01:00+02:00 is 23:00 UTC"
    );
    assert_eq!(zoned.value(1), 3_600_000_000);
    let num = column(&batch, "num").as_string::<i32>();
    assert_eq!(num.value(0), "0.000005");
}

#[test]
fn infinity_is_the_largest_python_value() {
    let schema = parse(
        r#"{"type":"record","name":"r","fields":[
            {"name":"d","type":{"type":"int","connect.name":"io.debezium.time.Date"}},
            {"name":"ts","type":{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}},
            {"name":"ns","type":{"type":"long","connect.name":"io.debezium.time.NanoTimestamp"}},
            {"name":"tz","type":{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}}]}"#,
    );
    let infinity = |negative, of| Value::Infinity { negative, of };
    let rows = [false, true].map(|negative| {
        upsert(
            &schema,
            vec![
                infinity(negative, Temporal::Date),
                infinity(negative, Temporal::LocalTimestamp),
                infinity(negative, Temporal::LocalTimestamp),
                infinity(negative, Temporal::ZonedTimestamp),
            ],
        )
    });
    let batch = record_batch(&rows).unwrap();
    let dates = column(&batch, "d").as_primitive::<Date32Type>();
    assert_eq!((dates.value(0), dates.value(1)), (MAX_DAYS, MIN_DAYS));
    for name in ["ts", "tz"] {
        let micros = column(&batch, name).as_primitive::<TimestampMicrosecondType>();
        assert_eq!((micros.value(0), micros.value(1)), (MAX_MICROS, MIN_MICROS));
    }
    let nanos = column(&batch, "ns").as_primitive::<TimestampNanosecondType>();
    assert_eq!((nanos.value(0), nanos.value(1)), (i64::MAX, i64::MIN + 1));
    // 9999-12-31T23:59:59.999999 and 0001-01-01, as Python's datetime.max and min.
    assert_eq!(MAX_MICROS, (2_932_897 * 86_400) * 1_000_000 - 1);
    assert_eq!(MIN_MICROS, i64::from(MIN_DAYS) * 86_400 * 1_000_000);
}

#[test]
fn decimals_widen_past_38_and_76_digits() {
    let schema = parse(
        r#"{"type":"record","name":"r","fields":[
            {"name":"d","type":["null",{"type":"bytes","logicalType":"decimal","precision":100,"scale":1}]},
            {"name":"wide","type":{"type":"fixed","name":"W","size":20,"logicalType":"decimal","precision":40,"scale":3}}]}"#,
    );
    let decimal =
        |unscaled: Vec<u8>, scale| Value::Decimal(Decimal::new(&unscaled, scale).unwrap());
    let ten_to_40 = vec![
        0x1d, 0x63, 0x29, 0xf1, 0xc3, 0x5c, 0xa4, 0xbf, 0xab, 0xb9, 0xf5, 0x61, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];
    let small = upsert(&schema, vec![decimal(vec![0xff], 1), decimal(vec![1], 3)]);
    let null = upsert(&schema, vec![Value::Null, decimal(vec![0, 0, 2], 3)]);
    let narrow = record_batch(&[small.clone(), null.clone()]).unwrap();
    assert_eq!(field_type(&narrow, "d"), DataType::Decimal128(38, 1));
    assert_eq!(field_type(&narrow, "wide"), DataType::Decimal256(76, 3));

    let big = upsert(
        &schema,
        vec![decimal(ten_to_40.clone(), 1), decimal(vec![1], 3)],
    );
    let wide = record_batch(&[small.clone(), null.clone(), big]).unwrap();
    assert_eq!(field_type(&wide, "d"), DataType::Decimal256(76, 1));
    let values = column(&wide, "d").as_primitive::<Decimal256Type>();
    assert_eq!(values.value(0), i256::from_i128(-1));
    assert!(values.is_null(1));
    assert_eq!(
        values.value(2),
        i256::from_i128(10_i128.pow(20)).wrapping_mul(i256::from_i128(10_i128.pow(20)))
    );

    let mut huge = vec![0x7f];
    huge.extend_from_slice(&[0xff; 40]);
    let text = record_batch(&[
        small,
        null,
        upsert(&schema, vec![decimal(huge, 1), decimal(vec![1], 3)]),
    ])
    .unwrap();
    assert_eq!(field_type(&text, "d"), DataType::Utf8);
    let values = column(&text, "d").as_string::<i32>();
    assert_eq!(values.value(0), "-0.1");
    assert!(values.is_null(1));
    assert!(values.value(2).len() > 77);
}

#[test]
fn unions_of_several_types_are_structs_of_their_branches() {
    let schema = parse(
        r#"{"type":"record","name":"r","fields":[{"name":"u","type":["null","int","string",
            {"type":"record","name":"ns.P","fields":[{"name":"q","type":"int"}]}]}]}"#,
    );
    let point = record(&named_record(&schema, "ns.P"), vec![Value::Int(5)]);
    let rows = [Value::Int(1), Value::String("x".into()), Value::Null, point]
        .map(|value| upsert(&schema, vec![value]));
    let batch = record_batch(&rows).unwrap();
    let union = column(&batch, "u").as_struct();
    assert_eq!(union.column_names(), ["int", "string", "P"]);
    let ints = union.column(0).as_primitive::<Int32Type>();
    assert_eq!(ints.iter().collect::<Vec<_>>(), [Some(1), None, None, None]);
    let strings = union.column(1).as_string::<i32>();
    assert_eq!(
        strings.iter().collect::<Vec<_>>(),
        [None, Some("x"), None, None]
    );
    assert!(union.is_null(2));
    assert!(union.column(2).as_struct().is_valid(3));
}

#[test]
fn bottled_water_date_and_infinity_share_a_column() {
    let schema = parse(
        r#"{"type":"record","name":"events","namespace":"com.martinkl.bottledwater.dbschema.public","fields":[
            {"name":"day","type":["null",{"type":"record","name":"Date","namespace":"com.martinkl.bottledwater.datatypes",
                "fields":[{"name":"year","type":"int"},{"name":"month","type":"int"},{"name":"day","type":"int"}]},
                {"type":"enum","name":"SpecialTime","symbols":["POS_INFINITY","NEG_INFINITY"]}]}]}"#,
    );
    let rows = [
        Value::Date(3),
        Value::Infinity {
            negative: true,
            of: Temporal::Date,
        },
    ]
    .map(|value| upsert(&schema, vec![value]));
    let batch = record_batch(&rows).unwrap();
    let days = column(&batch, "day").as_primitive::<Date32Type>();
    assert_eq!((days.value(0), days.value(1)), (3, MIN_DAYS));
}

const ENVELOPE: &str = r#"{"type":"record","name":"Envelope","namespace":"shop.public.t","fields":[
    {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
        {"name":"id","type":"int"},{"name":"body","type":["null","string"]}],
        "connect.name":"shop.public.t.Value"}]},
    {"name":"after","type":["null","Value"]},
    {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql",
        "fields":[{"name":"ts_ms","type":"long"},{"name":"txId","type":["null","long"]},
            {"name":"lsn","type":["null","long"]},{"name":"table","type":"string"}]}},
    {"name":"op","type":"string"}],"connect.name":"shop.public.t.Envelope"}"#;

#[test]
fn debezium_envelopes_deletes_and_tombstones() {
    let schema = parse(ENVELOPE);
    let row_def = named_record(&schema, "shop.public.t.Value");
    let source_def = named_record(&schema, "io.debezium.connector.postgresql.Source");
    let source = record(
        &source_def,
        vec![
            Value::Long(1_700_000_000_000),
            Value::Long(42),
            Value::Long(9_000),
            Value::String("t".into()),
        ],
    );
    let insert = Change {
        after: Some(record(
            &row_def,
            vec![Value::Int(1), Value::String("hello".into())],
        )),
        source: Some(LazyValue::Decoded(source.clone())),
        ..change(&schema, Op::Insert, 0)
    };
    let update = Change {
        after: Some(record(&row_def, vec![Value::Int(1), Value::Unavailable])),
        source: Some(LazyValue::Decoded(source.clone())),
        ..change(&schema, Op::Update, 1)
    };
    let delete = Change {
        before: Some(record(&row_def, vec![Value::Int(1), Value::Null])),
        source: Some(LazyValue::Decoded(source)),
        ..change(&schema, Op::Delete, 2)
    };
    let key_def = parse(r#"{"type":"record","name":"Key","fields":[{"name":"id","type":"int"}]}"#);
    let key = record(key_def.root_record().unwrap(), vec![Value::Int(1)]);
    let tombstone = Change {
        key: Some(key),
        tombstone: true,
        ..change(&schema, Op::Delete, 3)
    };
    let batch = record_batch(&[insert, update, delete, tombstone]).unwrap();
    let names: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "body",
            "_op",
            "_topic",
            "_partition",
            "_offset",
            "_timestamp",
            "_lsn",
            "_txid",
            "_source_ts",
            "_unavailable"
        ]
    );
    let ids = column(&batch, "id").as_primitive::<Int32Type>();
    assert_eq!(ids.iter().collect::<Vec<_>>(), vec![Some(1); 4]);
    let body = column(&batch, "body").as_string::<i32>();
    assert_eq!(
        body.iter().collect::<Vec<_>>(),
        [Some("hello"), None, None, None]
    );
    let unavailable = column(&batch, "_unavailable").as_list::<i32>();
    assert_eq!(unavailable.value(0).len(), 0);
    assert_eq!(unavailable.value(1).as_string::<i32>().value(0), "body");
    let lsn = column(&batch, "_lsn").as_primitive::<Int64Type>();
    assert_eq!(
        lsn.iter().collect::<Vec<_>>(),
        [Some(9_000), Some(9_000), Some(9_000), None]
    );
    assert_eq!(
        column(&batch, "_txid").as_primitive::<Int64Type>().value(0),
        42
    );
    assert_eq!(
        column(&batch, "_source_ts")
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        1_700_000_000_000
    );
}

#[test]
fn an_envelope_read_as_flat_rows_keeps_its_fields() {
    let schema = parse(ENVELOPE);
    let root = schema.root_record().unwrap();
    let row = record(
        root,
        vec![
            Value::Null,
            Value::Null,
            Value::Null,
            Value::String("c".into()),
        ],
    );
    let batch = record_batch(&[Change {
        after: Some(row),
        ..change(&schema, Op::Upsert, 0)
    }])
    .unwrap();
    assert_eq!(column(&batch, "op").as_string::<i32>().value(0), "c");
    assert!(batch.column_by_name("_lsn").is_none());
}

#[test]
fn tombstones_without_a_known_schema_have_only_metadata() {
    let schema = parse(r#"{"type":"record","name":"r","fields":[{"name":"id","type":"int"}]}"#);
    let batch = record_batch(&[Change {
        value_schema: None,
        tombstone: true,
        ..change(&schema, Op::Delete, 0)
    }])
    .unwrap();
    assert_eq!(batch.num_columns(), 5);
    assert_eq!(batch.num_rows(), 1);
}

#[test]
fn a_value_that_is_not_a_record_is_one_column() {
    let schema = parse(r#"["null","string"]"#);
    let text = Change {
        after: Some(Value::String("hello".into())),
        ..change(&schema, Op::Upsert, 0)
    };
    let tombstone = Change {
        key: Some(Value::String("k".into())),
        tombstone: true,
        ..change(&schema, Op::Delete, 1)
    };
    let batch = record_batch(&[text, tombstone]).unwrap();
    let values = column(&batch, "value").as_string::<i32>();
    assert_eq!(values.iter().collect::<Vec<_>>(), [Some("hello"), None]);
    // The tombstone's key says which row it deletes.
    let keys = column(&batch, "_key").as_string::<i32>();
    assert_eq!(keys.iter().collect::<Vec<_>>(), [None, Some("k")]);
    assert_eq!(batch.schema().field(6).name(), "_key");
}

#[test]
fn recursive_records_are_refused() {
    let schema = parse(
        r#"{"type":"record","name":"Node","fields":[
            {"name":"children","type":{"type":"array","items":"Node"}}]}"#,
    );
    let error = record_batch(&[upsert(&schema, vec![Value::Array(Vec::new())])])
        .unwrap_err()
        .to_string();
    assert!(error.contains("record Node contains itself"), "{error}");
    assert!(error.contains("offset 0"), "{error}");
}

#[test]
fn out_of_range_values_are_errors_with_the_location() {
    let schema = parse(
        r#"{"type":"record","name":"r","fields":[{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
    );
    let far = Value::Timestamp(Timestamp {
        seconds: i64::MAX / 1000,
        nanos: 0,
        offset: Some(0),
    });
    let error = record_batch(&[upsert(&schema, vec![far])])
        .unwrap_err()
        .to_string();
    assert!(error.contains("column \"ts\""), "{error}");
    assert!(
        error.contains("does not fit 64 bits of microseconds"),
        "{error}"
    );
    assert!(
        error.contains("topic \"topic\" partition 0 offset 0"),
        "{error}"
    );
}

#[test]
fn twos_complement_integers() {
    assert_eq!(i128_of(&[]), Some(0));
    assert_eq!(i128_of(&[0xff]), Some(-1));
    assert_eq!(i128_of(&[0x00, 0x80]), Some(128));
    let mut padded = vec![0xff; 20];
    padded.push(0x80);
    assert_eq!(i128_of(&padded), Some(-128));
    assert_eq!(i128_of(&[0x7f; 17]), None);
    assert_eq!(i256_of(&[0x7f; 17]).map(|v| v > i256::ZERO), Some(true));
    assert_eq!(i256_of(&[0x7f; 33]), None);
}
