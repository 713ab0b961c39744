//! Format detection, once per writer schema: whether its values are Debezium envelopes or flat
//! rows. A record with `before`, `after` and `op` fields (or `op`, `source` and `message`, a
//! logical decoding message) is a Debezium envelope; any other value is a flat row. A
//! [`Writer`] keeps what was worked out from a schema, so messages only decode and read.

use std::sync::Arc;

use super::table::table_from_record_name;
use super::Format;
use crate::avro::{Deferral, Resolved, Schema};
use crate::error::{Error, Result};
use crate::name::Name;

/// How the values of one writer schema are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Envelope {
    /// A Debezium envelope: `before`, `after`, `op`, `source`, ...
    Debezium,
    /// A flat row.
    Row,
}

/// A writer schema with what we worked out from it once.
pub(super) struct Writer {
    /// The schema values come out in: the reader schema when there is one.
    pub(super) schema: Arc<Schema>,
    /// Set when values are resolved from the writer schema into a reader schema.
    pub(super) resolved: Option<Resolved>,
    pub(super) envelope: Envelope,
    /// The table of a flat-row schema, from its record name.
    pub(super) table: Option<Name>,
    /// A flat row carries Debezium's `__deleted` field (the unwrap SMT's rewrite mode).
    pub(super) has_deleted_flag: bool,
    /// A flat row carries Debezium's `__op` field (the unwrap SMT's `add.fields=op`).
    pub(super) has_op_field: bool,
    /// A Debezium envelope read without a reader schema: its `source` block is left encoded,
    /// with its `table` read (see `avro::Encoded`).
    pub(super) source: Option<Deferral>,
}

impl Writer {
    pub(super) fn new(
        writer: Arc<Schema>,
        reader: Option<Arc<Schema>>,
        format: Format,
    ) -> Result<Writer> {
        let (schema, resolved) = match reader {
            Some(reader) => (reader.clone(), Some(Resolved::new(&writer, reader)?)),
            None => (writer, None),
        };
        let root = schema.root_record();
        let has = |field: &str| root.is_some_and(|r| r.field_names().iter().any(|n| &**n == field));
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
                    root.map_or("(not a record)", |r| &**r.name())
                )))
            }
        };
        let table =
            root.map(|r| Name::new(&table_from_record_name(r.name(), r.connect_name.as_deref())));
        let source = match (envelope, &resolved) {
            (Envelope::Debezium, None) => Deferral::new(&schema, "source", "table"),
            _ => None,
        };
        Ok(Writer {
            source,
            resolved,
            envelope,
            table,
            has_deleted_flag: has("__deleted"),
            has_op_field: has("__op"),
            schema,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(schema: &str, format: Format) -> Result<Writer> {
        Writer::new(Arc::new(Schema::parse(schema).unwrap()), None, format)
    }

    const ROW_CHANGE: &str = r#"{"type":"record","name":"Envelope","fields":[
        {"name":"before","type":["null","string"]},{"name":"after","type":["null","string"]},
        {"name":"op","type":"string"}]}"#;

    #[test]
    fn envelope_is_detected_from_the_schema() {
        let auto = writer(ROW_CHANGE, Format::Auto).unwrap();
        assert_eq!(auto.envelope, Envelope::Debezium);
        assert_eq!(
            writer(ROW_CHANGE, Format::Row).unwrap().envelope,
            Envelope::Row
        );
        // `op` alone is a column of a flat row.
        let row = r#"{"type":"record","name":"orders","fields":[{"name":"op","type":"string"}]}"#;
        let auto = writer(row, Format::Auto).unwrap();
        assert_eq!(auto.envelope, Envelope::Row);
        assert_eq!(auto.table.as_deref(), Some("orders"));
        // `before` and `after` without `op` are columns too.
        let no_op = r#"{"type":"record","name":"spans","fields":[
            {"name":"before","type":"long"},{"name":"after","type":"long"}]}"#;
        assert_eq!(writer(no_op, Format::Auto).unwrap().envelope, Envelope::Row);
        let forced = writer(row, Format::Debezium).err().unwrap();
        assert!(
            matches!(&forced, Error::Decode { reason, .. } if reason.contains("no before/after/op")),
            "{forced}"
        );
        // A value that is not a record is a flat row, and cannot be forced into an envelope.
        assert_eq!(
            writer(r#""string""#, Format::Auto).unwrap().envelope,
            Envelope::Row
        );
        assert!(writer(r#""string""#, Format::Debezium).is_err());
    }

    #[test]
    fn logical_message_schema_is_a_debezium_envelope() {
        // Debezium's logical decoding message has no before/after.
        let message = r#"{"type":"record","name":"MessageValue","fields":[
            {"name":"op","type":"string"},
            {"name":"source","type":{"type":"record","name":"Source","fields":[]}},
            {"name":"message","type":{"type":"record","name":"Message","fields":[
                {"name":"prefix","type":"string"},{"name":"content","type":"bytes"}]}}]}"#;
        assert_eq!(
            writer(message, Format::Auto).unwrap().envelope,
            Envelope::Debezium
        );
    }

    #[test]
    fn unwrapped_row_flags_are_found() {
        let unwrapped = r#"{"type":"record","name":"Value","namespace":"shop.public.orders",
            "fields":[{"name":"id","type":"int"},{"name":"__op","type":["null","string"]},
            {"name":"__deleted","type":["null","string"]}]}"#;
        let writer = writer(unwrapped, Format::Auto).unwrap();
        assert_eq!(writer.envelope, Envelope::Row);
        assert!(writer.has_op_field && writer.has_deleted_flag);
        assert_eq!(writer.table.as_deref(), Some("orders"));
    }
}
