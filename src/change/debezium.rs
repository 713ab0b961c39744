//! The Debezium envelope as a [`Change`], read from an already decoded value: the `op` code
//! (`c`, `u`, `d`, `r`, `t`, `m`), the `before` and `after` rows (a null row is absent), the
//! `source` block, which names the table, and the `transaction` block. A logical decoding
//! message carries its prefix and content in `message`, delivered as the change's `after`.
//! Tombstones are not envelopes: the decoder handles them from what it knows of the topic.

use super::{Change, Op, Position, SourceBlock};
use crate::avro::{LazyValue, Value};
use crate::error::{Error, Result};
use crate::name::Name;

impl Op {
    /// The operation of a Debezium `op` code (also the unwrap SMT's `__op` field).
    pub(crate) fn from_debezium(code: &str) -> Option<Op> {
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

/// The change a Debezium envelope describes. The table comes from `source.table`, when set;
/// `known_table` (the topic's latest) is reused when it is the same. `source` is the
/// envelope's `source` block when the decoder left it encoded (with its `table` field), in
/// which case the envelope holds null there.
pub(super) fn change(
    value: Value,
    source: Option<SourceBlock>,
    key: Option<Value>,
    position: Position,
    known_table: &Name,
) -> Result<Change> {
    let Value::Record(mut envelope) = value else {
        return Err(Error::decode(
            "format=\"debezium\" but the value is not a record",
        ));
    };
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
    let transaction = non_null(envelope.take("transaction"));
    // The topic's latest table is reused when the envelope names it again.
    let table_named = |table: Option<&Value>| {
        let name = table.and_then(Value::as_str).filter(|t| !t.is_empty())?;
        Some(match name == &**known_table {
            true => *known_table,
            false => Name::new(name),
        })
    };
    let (source, table) = match source {
        // A null block has no table: the field read inside it is absent.
        Some((encoded, table)) => (
            table.is_some().then_some(LazyValue::Encoded(encoded)),
            table_named(table.as_ref()),
        ),
        None => {
            let source = non_null(envelope.take("source"));
            let table = match &source {
                Some(Value::Record(source)) => table_named(source.get("table")),
                _ => None,
            };
            (source.map(LazyValue::Decoded), table)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::Record;

    fn record(name: &str, fields: Vec<(&str, Value)>) -> Value {
        let (names, values): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .map(|(n, v)| (std::sync::Arc::<str>::from(n), v))
            .unzip();
        Value::Record(Record::new(name, names, values))
    }

    /// A change from an envelope decoded whole (the decoder's deferred `source` is tested
    /// with real messages in `change::tests`).
    fn change(
        value: Value,
        key: Option<Value>,
        position: Position,
        known_table: &Name,
    ) -> Result<Change> {
        super::change(value, None, key, position, known_table)
    }

    fn position() -> Position {
        Position {
            topic: "shop.public.orders".into(),
            partition: 0,
            offset: 7,
            timestamp_ms: None,
        }
    }

    fn row(id: i32) -> Value {
        record("Value", vec![("id", Value::Int(id))])
    }

    fn source(table: &str) -> Value {
        record("Source", vec![("table", Value::String(table.into()))])
    }

    fn envelope(op: &str, before: Value, after: Value, source: Value) -> Value {
        record(
            "Envelope",
            vec![
                ("before", before),
                ("after", after),
                ("source", source),
                ("op", Value::String(op.into())),
                ("transaction", Value::Null),
            ],
        )
    }

    #[test]
    fn op_codes_are_read() {
        let expected = [
            ("c", Op::Insert),
            ("u", Op::Update),
            ("d", Op::Delete),
            ("r", Op::Read),
            ("t", Op::Truncate),
            ("m", Op::Message),
        ];
        for (code, op) in expected {
            assert_eq!(Op::from_debezium(code), Some(op), "{code}");
        }
        assert_eq!(Op::from_debezium("x"), None);
        assert_eq!(Op::from_debezium("C"), None);
    }

    #[test]
    fn rows_source_and_table_are_taken() {
        let value = envelope("u", row(1), row(2), source("orders"));
        let change = change(value, Some(Value::Int(2)), position(), &"".into()).unwrap();
        assert_eq!(change.op, Op::Update);
        assert_eq!(change.before, Some(row(1)));
        assert_eq!(change.after, Some(row(2)));
        let decoded = change.source.map(|s| s.decode().unwrap().into_owned());
        assert_eq!(decoded, Some(source("orders")));
        assert_eq!(change.table.as_deref(), Some("orders"));
        assert_eq!(change.key, Some(Value::Int(2)));
        assert_eq!(change.transaction, None);
        assert!(!change.tombstone);
        assert_eq!(change.position, position());
    }

    #[test]
    fn the_table_is_the_one_the_envelope_names() {
        let known = Name::new("orders");
        let value = envelope("c", Value::Null, row(1), source("orders"));
        let same = change(value, None, position(), &known).unwrap();
        assert_eq!(same.table, Some(known));
        let value = envelope("c", Value::Null, row(1), source("items"));
        let other = change(value, None, position(), &known).unwrap();
        assert_eq!(other.table.as_deref(), Some("items"));
    }

    #[test]
    fn null_rows_and_empty_table_are_absent() {
        let change = change(
            envelope("t", Value::Null, Value::Null, source("")),
            None,
            position(),
            &"".into(),
        )
        .unwrap();
        assert_eq!(change.op, Op::Truncate);
        assert_eq!((change.before, change.after), (None, None));
        assert_eq!(change.table, None);
    }

    #[test]
    fn transaction_block_is_kept() {
        let transaction = record(
            "block",
            vec![
                ("id", Value::String("571:53195832".into())),
                ("total_order", Value::Long(2)),
                ("data_collection_order", Value::Long(1)),
            ],
        );
        let mut value = envelope("c", Value::Null, row(1), source("orders"));
        if let Value::Record(r) = &mut value {
            r.values[4] = transaction.clone();
        }
        let change = change(value, None, position(), &"".into()).unwrap();
        assert_eq!(change.op, Op::Insert);
        assert_eq!(change.transaction, Some(transaction));
    }

    #[test]
    fn logical_message_is_delivered_as_after() {
        let message = record(
            "Message",
            vec![
                ("prefix", Value::String("audit".into())),
                ("content", Value::Bytes(b"hello".to_vec())),
            ],
        );
        let value = record(
            "MessageValue",
            vec![
                ("op", Value::String("m".into())),
                ("source", source("")),
                ("message", message.clone()),
            ],
        );
        let change = change(value, None, position(), &"".into()).unwrap();
        assert_eq!(change.op, Op::Message);
        assert_eq!(change.after, Some(message));
        assert_eq!(change.before, None);
        assert_eq!(change.table, None);
    }

    #[test]
    fn malformed_envelopes_are_decode_errors() {
        let unknown = change(
            envelope("z", Value::Null, row(1), Value::Null),
            None,
            position(),
            &"".into(),
        )
        .unwrap_err();
        assert!(
            matches!(&unknown, Error::Decode { reason, .. } if reason.contains("unknown Debezium op \"z\"")),
            "{unknown}"
        );
        let no_op = record("Envelope", vec![("after", row(1))]);
        assert!(matches!(
            change(no_op, None, position(), &"".into()),
            Err(Error::Decode { .. })
        ));
        let not_a_record =
            change(Value::String("c".into()), None, position(), &"".into()).unwrap_err();
        assert!(
            matches!(&not_a_record, Error::Decode { reason, .. } if reason.contains("not a record")),
            "{not_a_record}"
        );
    }
}
