//! Flat rows as a [`Change`], read from an already decoded value: Bottled Water's rows,
//! Debezium's rows unwrapped by its `ExtractNewRecordState` SMT, any keyed upsert topic. A row
//! is an `upsert` of its key, unless the unwrap SMT added `__op` (the Debezium op code) or
//! `__deleted` (`true` on a delete, whose row is then the `before`), and `__table` names its
//! table when present. A null value (the delete of a key) is a tombstone, read by the decoder.

use super::format::Writer;
use super::{Change, Op, Position};
use crate::avro::Value;
use crate::error::{Error, Result};
use crate::name::Name;

/// The change a flat row describes, with what `writer` found in its schema.
pub(super) fn change(
    writer: &Writer,
    value: Value,
    key: Option<Value>,
    position: Position,
) -> Result<Change> {
    let mut op = Op::Upsert;
    let mut table = writer.table;
    if let Value::Record(record) = &value {
        if writer.has_op_field {
            if let Some(code) = record.get("__op").and_then(Value::as_str) {
                op = Op::from_debezium(code)
                    .ok_or_else(|| Error::decode(format!("unknown Debezium __op {code:?}")))?;
            }
        }
        if let Some(Value::String(name)) = record.get("__table") {
            if table.is_none_or(|known| known != name.as_str()) {
                table = Some(Name::new(name));
            }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::avro::{Record, Schema};
    use crate::change::Format;

    fn writer(schema: &str) -> Writer {
        Writer::new(Arc::new(Schema::parse(schema).unwrap()), None, Format::Auto).unwrap()
    }

    fn position() -> Position {
        Position {
            topic: "orders".into(),
            partition: 1,
            offset: 3,
            timestamp_ms: Some(1_700_000_000_000),
        }
    }

    /// A record of `writer`'s field names with these values.
    fn record(writer: &Writer, values: Vec<Value>) -> Value {
        let root = writer.schema.root_record().unwrap();
        Value::Record(Record {
            shape: root.shape,
            values,
        })
    }

    const BOTTLED_WATER: &str = r#"{"type":"record","name":"orders",
        "namespace":"com.martinkl.bottledwater.dbschema.public",
        "fields":[{"name":"id","type":"int"},{"name":"item","type":["null","string"]}]}"#;

    const UNWRAPPED: &str = r#"{"type":"record","name":"Value","namespace":"shop.public.orders",
        "fields":[{"name":"id","type":"int"},{"name":"__op","type":["null","string"]},
        {"name":"__table","type":["null","string"]},{"name":"__deleted","type":["null","string"]}]}"#;

    #[test]
    fn bottled_water_row_is_an_upsert_of_its_table() {
        let writer = writer(BOTTLED_WATER);
        let value = record(&writer, vec![Value::Int(1), Value::String("tea".into())]);
        let change = change(&writer, value.clone(), Some(Value::Int(1)), position()).unwrap();
        assert_eq!(change.op, Op::Upsert);
        assert_eq!(change.after, Some(value));
        assert_eq!(change.before, None);
        assert_eq!(change.table.as_deref(), Some("orders"));
        assert_eq!(change.key, Some(Value::Int(1)));
        assert_eq!(change.position, position());
        assert!(!change.tombstone);
    }

    #[test]
    fn unwrapped_op_and_table_fields_are_read() {
        let writer = writer(UNWRAPPED);
        let value = record(
            &writer,
            vec![
                Value::Int(1),
                Value::String("u".into()),
                Value::String("order_archive".into()),
                Value::String("false".into()),
            ],
        );
        let change = change(&writer, value.clone(), None, position()).unwrap();
        assert_eq!(change.op, Op::Update);
        assert_eq!(change.after, Some(value));
        assert_eq!(change.table.as_deref(), Some("order_archive"));
    }

    #[test]
    fn unwrapped_deleted_flag_makes_a_delete_of_the_before_row() {
        let writer = writer(UNWRAPPED);
        let value = record(
            &writer,
            // The rewrite mode alone (no `add.fields=op`): only `__deleted` tells.
            vec![
                Value::Int(1),
                Value::Null,
                Value::Null,
                Value::String("true".into()),
            ],
        );
        let change = change(&writer, value.clone(), None, position()).unwrap();
        assert_eq!(change.op, Op::Delete);
        assert_eq!(change.before, Some(value));
        assert_eq!(change.after, None);
        // Without `__table`, the table comes from the record name.
        assert_eq!(change.table.as_deref(), Some("orders"));
    }

    #[test]
    fn unknown_unwrapped_op_is_a_decode_error() {
        let writer = writer(UNWRAPPED);
        let value = record(
            &writer,
            vec![
                Value::Int(1),
                Value::String("q".into()),
                Value::Null,
                Value::Null,
            ],
        );
        let error = change(&writer, value, None, position()).unwrap_err();
        assert!(
            matches!(&error, Error::Decode { reason, .. } if reason.contains("unknown Debezium __op \"q\"")),
            "{error}"
        );
    }
}
