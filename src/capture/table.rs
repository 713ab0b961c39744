//! A captured table: its columns as Avro, and the encoding of its rows, keys and envelopes.
//!
//! Debezium's layout: topic `<prefix>.<schema>.<table>`; key record `Key` and row record
//! `Value` in namespace `<prefix>.<schema>.<table>`; value `Envelope` holding `before`,
//! `after`, `source` (`io.debezium.connector.postgresql.Source`), `transaction`, `op` and
//! the timestamps. The rows format writes the `Value` record alone (null on delete).

use std::collections::HashSet;

use serde_json::{json, Value as Json};

use crate::capture::pgoutput::Datum;
use crate::capture::types::{put_bytes, put_long, Flavor, Kind};
use crate::error::{Error, Result};

/// What Debezium writes for an unchanged TOASTed value that was not sent.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The allowed values of `source.snapshot` (Debezium 3.x).
const SNAPSHOT_VALUES: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

/// The `transaction` block of one event (Debezium's `provide.transaction.metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionBlock {
    /// Debezium's `<txId>:<LSN>`, the LSN being the event's own.
    pub id: String,
    /// The event's position among the transaction's events, from 1.
    pub total_order: i64,
    /// Its position among the transaction's events of the same table, from 1.
    pub data_collection_order: i64,
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type as Avro.
    pub kind: Kind,
    /// Nullable.
    pub optional: bool,
    /// The type OID and modifier the kind was resolved from.
    pub type_oid: u32,
    /// Type modifier.
    pub typmod: i32,
}

/// A table and the schemas of its events.
#[derive(Debug, Clone)]
pub struct Table {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Indices of the primary-key columns (empty: no primary key, null Kafka keys).
    pub key: Vec<usize>,
    /// The topic of its events.
    pub topic: String,
    /// Key schema (None without a primary key).
    pub key_schema: Option<String>,
    /// Value schema.
    pub value_schema: String,
}

/// The `source` block's values for one event.
pub struct Source<'a> {
    /// The topic prefix (the connector's logical name).
    pub name: &'a str,
    /// Database name.
    pub db: &'a str,
    /// Commit time (or snapshot time), ms since the epoch.
    pub ts_micros: i64,
    /// `true`, `last`, `false`, ...
    pub snapshot: &'a str,
    /// Transaction id.
    pub tx_id: Option<i64>,
    /// The change's LSN.
    pub lsn: Option<i64>,
    /// `["<last committed LSN>","<this LSN>"]`.
    pub sequence: Option<String>,
}

impl Table {
    /// The table with its event schemas built.
    pub fn new(
        prefix: &str,
        schema: String,
        name: String,
        columns: Vec<Column>,
        key: Vec<usize>,
        flavor: Flavor,
    ) -> Table {
        let namespace = format!("{prefix}.{schema}.{name}");
        let fields = |indices: &mut dyn Iterator<Item = usize>, defined: &mut HashSet<String>| {
            indices
                .map(|i| {
                    let column: &Column = &columns[i];
                    let avro = column.kind.avro(flavor, defined);
                    if column.optional {
                        json!({"name": column.name, "type": ["null", avro], "default": null})
                    } else {
                        json!({"name": column.name, "type": avro})
                    }
                })
                .collect::<Vec<_>>()
        };
        let key_schema = (!key.is_empty()).then(|| {
            let mut defined = HashSet::new();
            let fields = fields(&mut key.iter().copied(), &mut defined);
            json!({"type": "record", "name": "Key", "namespace": namespace, "fields": fields,
                "connect.name": format!("{namespace}.Key")})
            .to_string()
        });
        let mut defined = HashSet::new();
        let row = json!({"type": "record", "name": "Value", "namespace": namespace,
            "fields": fields(&mut (0..columns.len()), &mut defined),
            "connect.name": format!("{namespace}.Value")});
        let value_schema = match flavor {
            Flavor::Rows => row.to_string(),
            Flavor::Debezium => envelope_schema(&namespace, row).to_string(),
        };
        Table {
            topic: namespace,
            schema,
            name,
            columns,
            key,
            key_schema,
            value_schema,
        }
    }

    /// `schema.table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The Avro body of the key record of a row (None without a primary key).
    pub fn encode_key(&self, row: &[Datum], flavor: Flavor) -> Result<Option<Vec<u8>>> {
        if self.key.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(16);
        for &i in &self.key {
            self.encode_column(i, row.get(i).unwrap_or(&Datum::Null), flavor, &mut out)?;
        }
        Ok(Some(out))
    }

    /// Append the Avro body of the row record.
    pub fn encode_row(&self, row: &[Datum], flavor: Flavor, out: &mut Vec<u8>) -> Result<()> {
        if row.len() != self.columns.len() {
            return Err(Error::Config(format!(
                "table {}: a row has {} columns, the table {}",
                self.qualified(),
                row.len(),
                self.columns.len()
            )));
        }
        for (i, datum) in row.iter().enumerate() {
            self.encode_column(i, datum, flavor, out)?;
        }
        Ok(())
    }

    fn encode_column(
        &self,
        i: usize,
        datum: &Datum,
        flavor: Flavor,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let column = &self.columns[i];
        let text = match datum {
            // Debezium writes NaN and ±Infinity of a numeric as null (no Avro decimal holds
            // them); a NOT NULL column cannot, and the encoder refuses it below.
            Datum::Text(text)
                if column.optional
                    && flavor == Flavor::Debezium
                    && matches!(column.kind, Kind::Decimal { .. } | Kind::VariableDecimal)
                    && matches!(text.as_str(), "NaN" | "Infinity" | "-Infinity") =>
            {
                None
            }
            Datum::Text(text) => Some(text.as_str()),
            Datum::Unchanged if carries_placeholder(&column.kind) => Some(UNAVAILABLE),
            Datum::Null | Datum::Unchanged => None,
        };
        match (text, column.optional) {
            (None, true) => put_long(out, 0),
            (None, false) => zero(&column.kind, out),
            (Some(text), optional) => {
                if optional {
                    put_long(out, 1);
                }
                let result = if matches!(datum, Datum::Unchanged) {
                    put_bytes(out, text.as_bytes());
                    Ok(())
                } else {
                    column.kind.encode(flavor, text, out)
                };
                result.map_err(|reason| {
                    Error::Config(format!(
                        "cannot encode column {:?} of table {}: {reason}",
                        column.name,
                        self.qualified()
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The Debezium envelope: `before`, `after`, `source`, `transaction`, `op`, timestamps.
    pub fn encode_envelope(
        &self,
        before: Option<&[Datum]>,
        after: Option<&[Datum]>,
        source: &Source<'_>,
        transaction: Option<&TransactionBlock>,
        op: &str,
        now_micros: i64,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        for row in [before, after] {
            match row {
                None => put_long(&mut out, 0),
                Some(row) => {
                    put_long(&mut out, 1);
                    self.encode_row(row, Flavor::Debezium, &mut out)?;
                }
            }
        }
        encode_source(&mut out, source, &self.schema, &self.name);
        encode_transaction_block(&mut out, transaction);
        put_bytes(&mut out, op.as_bytes());
        put_long(&mut out, 1);
        put_long(&mut out, now_micros / 1000);
        put_long(&mut out, 1);
        put_long(&mut out, now_micros);
        put_long(&mut out, 1);
        put_long(&mut out, now_micros.saturating_mul(1000));
        Ok(out)
    }
}

/// Whether the kind is a string or bytes, which carry Debezium's placeholder for a value
/// that was not sent; the other kinds get null (or the type's zero when not nullable).
fn carries_placeholder(kind: &Kind) -> bool {
    matches!(kind, Kind::Text { .. } | Kind::Bytes | Kind::Enum { .. })
}

/// The type's zero, which Debezium writes for a required column whose old value the replica
/// identity does not send (`before` of a delete under REPLICA IDENTITY DEFAULT).
fn zero(kind: &Kind, out: &mut Vec<u8>) {
    match kind {
        Kind::Boolean => out.push(0),
        Kind::Float32 => out.extend_from_slice(&0f32.to_le_bytes()),
        Kind::Float64 => out.extend_from_slice(&0f64.to_le_bytes()),
        Kind::Decimal { .. } => put_bytes(out, &[0]),
        Kind::VariableDecimal => {
            put_long(out, 0);
            put_bytes(out, &[0]);
        }
        Kind::Int16
        | Kind::Int32
        | Kind::Int64
        | Kind::Date
        | Kind::Time { .. }
        | Kind::Timestamp { .. }
        | Kind::Interval
        | Kind::Text { .. }
        | Kind::Enum { .. }
        | Kind::Bytes
        | Kind::ZonedTime
        | Kind::ZonedTimestamp { .. }
        | Kind::Array(_) => put_long(out, 0),
    }
}

fn optional(avro: Json) -> Json {
    json!(["null", avro])
}

/// The `io.debezium.connector.postgresql.Source` record.
fn source_schema() -> Json {
    let string = json!("string");
    let long = json!("long");
    json!({"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
        "fields": [
            {"name": "version", "type": string},
            {"name": "connector", "type": string},
            {"name": "name", "type": string},
            {"name": "ts_ms", "type": long},
            {"name": "snapshot", "type": [{"type": "string", "connect.version": 1,
                "connect.parameters": {"allowed": SNAPSHOT_VALUES}, "connect.default": "false",
                "connect.name": "io.debezium.data.Enum"}, "null"], "default": "false"},
            {"name": "db", "type": string},
            {"name": "sequence", "type": optional(string.clone()), "default": null},
            {"name": "ts_us", "type": optional(long.clone()), "default": null},
            {"name": "ts_ns", "type": optional(long.clone()), "default": null},
            {"name": "schema", "type": string},
            {"name": "table", "type": string},
            {"name": "txId", "type": optional(long.clone()), "default": null},
            {"name": "lsn", "type": optional(long.clone()), "default": null},
            {"name": "xmin", "type": optional(long.clone()), "default": null},
            {"name": "origin", "type": optional(string), "default": null},
            {"name": "origin_lsn", "type": optional(long), "default": null}],
        "connect.version": 1, "connect.name": "io.debezium.connector.postgresql.Source"})
}

/// The `transaction` block (null unless transaction metadata is asked for).
fn transaction_schema() -> Json {
    json!({"type": "record", "name": "block", "namespace": "event", "fields": [
            {"name": "id", "type": "string"},
            {"name": "total_order", "type": "long"},
            {"name": "data_collection_order", "type": "long"}],
        "connect.version": 1, "connect.name": "event.block"})
}

fn envelope_schema(namespace: &str, row: Json) -> Json {
    let long = || json!(["null", "long"]);
    json!({"type": "record", "name": "Envelope", "namespace": namespace, "fields": [
        {"name": "before", "type": ["null", row], "default": null},
        {"name": "after", "type": ["null", "Value"], "default": null},
        {"name": "source", "type": source_schema()},
        {"name": "transaction", "type": ["null", transaction_schema()], "default": null},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": long(), "default": null},
        {"name": "ts_us", "type": long(), "default": null},
        {"name": "ts_ns", "type": long(), "default": null}],
        "connect.version": 2, "connect.name": format!("{namespace}.Envelope")})
}

fn encode_source(out: &mut Vec<u8>, source: &Source<'_>, schema: &str, table: &str) {
    let optional_long = |out: &mut Vec<u8>, value: Option<i64>| match value {
        None => put_long(out, 0),
        Some(value) => {
            put_long(out, 1);
            put_long(out, value);
        }
    };
    put_bytes(out, crate::capture::VERSION.as_bytes());
    put_bytes(out, b"postgresql");
    put_bytes(out, source.name.as_bytes());
    put_long(out, source.ts_micros.div_euclid(1000));
    put_long(out, 0);
    put_bytes(out, source.snapshot.as_bytes());
    put_bytes(out, source.db.as_bytes());
    match &source.sequence {
        None => put_long(out, 0),
        Some(sequence) => {
            put_long(out, 1);
            put_bytes(out, sequence.as_bytes());
        }
    }
    optional_long(out, Some(source.ts_micros));
    optional_long(out, Some(source.ts_micros.saturating_mul(1000)));
    put_bytes(out, schema.as_bytes());
    put_bytes(out, table.as_bytes());
    optional_long(out, source.tx_id);
    optional_long(out, source.lsn);
    optional_long(out, None); // xmin
    put_long(out, 0); // origin: replication origins are not followed
    optional_long(out, None); // origin_lsn
}

/// The value schema of `<prefix>.message` (logical decoding messages, op `m`), and its key's.
pub fn message_schemas() -> (String, String) {
    let key = json!({"type": "record", "name": "MessageKey",
        "namespace": "io.debezium.connector.postgresql",
        "fields": [{"name": "prefix", "type": ["null", "string"], "default": null}],
        "connect.version": 1, "connect.name": "io.debezium.connector.postgresql.MessageKey"});
    let value = json!({"type": "record", "name": "MessageValue",
        "namespace": "io.debezium.connector.postgresql", "fields": [
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": null},
            {"name": "source", "type": source_schema()},
            {"name": "transaction", "type": ["null", transaction_schema()], "default": null},
            {"name": "message", "type": {"type": "record", "name": "Message", "fields": [
                {"name": "prefix", "type": ["null", "string"], "default": null},
                {"name": "content", "type": ["null", "bytes"], "default": null}],
                "connect.version": 1, "connect.name": "io.debezium.connector.postgresql.Message"}}],
        "connect.version": 1, "connect.name": "io.debezium.connector.postgresql.MessageValue"});
    (key.to_string(), value.to_string())
}

/// The key and value bodies of a logical decoding message event.
pub fn encode_message(
    prefix: &str,
    content: &[u8],
    source: &Source<'_>,
    transaction: Option<&TransactionBlock>,
    now_micros: i64,
) -> (Vec<u8>, Vec<u8>) {
    let mut key = Vec::new();
    put_long(&mut key, 1);
    put_bytes(&mut key, prefix.as_bytes());
    let mut value = Vec::new();
    put_bytes(&mut value, b"m");
    put_long(&mut value, 1);
    put_long(&mut value, now_micros / 1000);
    encode_source(&mut value, source, "", "");
    encode_transaction_block(&mut value, transaction);
    put_long(&mut value, 1);
    put_bytes(&mut value, prefix.as_bytes());
    put_long(&mut value, 1);
    put_bytes(&mut value, content);
    (key, value)
}

fn encode_transaction_block(out: &mut Vec<u8>, block: Option<&TransactionBlock>) {
    match block {
        None => put_long(out, 0),
        Some(block) => {
            put_long(out, 1);
            put_bytes(out, block.id.as_bytes());
            put_long(out, block.total_order);
            put_long(out, block.data_collection_order);
        }
    }
}

/// The key and value schemas of `<prefix>.transaction`, Debezium's BEGIN and END events.
pub fn transaction_topic_schemas() -> (String, String) {
    let namespace = "io.debezium.connector.common";
    let key = json!({"type": "record", "name": "TransactionMetadataKey", "namespace": namespace,
        "fields": [{"name": "id", "type": "string"}],
        "connect.version": 1, "connect.name": format!("{namespace}.TransactionMetadataKey")});
    let collection = json!({"type": "record", "name": "collection", "namespace": "event",
        "fields": [
            {"name": "data_collection", "type": "string"},
            {"name": "event_count", "type": "long"}],
        "connect.version": 1, "connect.name": "event.collection"});
    let value = json!({"type": "record", "name": "TransactionMetadataValue",
        "namespace": namespace, "fields": [
            {"name": "status", "type": "string"},
            {"name": "id", "type": "string"},
            {"name": "event_count", "type": ["null", "long"], "default": null},
            {"name": "data_collections",
                "type": ["null", {"type": "array", "items": ["null", collection]}],
                "default": null},
            {"name": "ts_ms", "type": "long"}],
        "connect.version": 1, "connect.name": format!("{namespace}.TransactionMetadataValue")});
    (key.to_string(), value.to_string())
}

/// The key and value bodies of a BEGIN (`collections` None) or END event of transaction `id`:
/// END carries the event count, in total and per table.
pub fn encode_transaction_event(
    id: &str,
    collections: Option<&[(String, i64)]>,
    ts_ms: i64,
) -> (Vec<u8>, Vec<u8>) {
    let mut key = Vec::new();
    put_bytes(&mut key, id.as_bytes());
    let mut value = Vec::new();
    put_bytes(
        &mut value,
        if collections.is_some() {
            b"END"
        } else {
            b"BEGIN"
        },
    );
    put_bytes(&mut value, id.as_bytes());
    match collections {
        None => {
            put_long(&mut value, 0);
            put_long(&mut value, 0);
        }
        Some(collections) => {
            put_long(&mut value, 1);
            put_long(&mut value, collections.iter().map(|(_, n)| n).sum());
            put_long(&mut value, 1);
            if !collections.is_empty() {
                put_long(&mut value, collections.len() as i64);
                for (name, count) in collections {
                    put_long(&mut value, 1);
                    put_bytes(&mut value, name.as_bytes());
                    put_long(&mut value, *count);
                }
            }
            put_long(&mut value, 0);
        }
    }
    put_long(&mut value, ts_ms);
    (key, value)
}
