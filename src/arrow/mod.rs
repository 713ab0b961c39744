//! Change batches as Arrow record batches.
//!
//! [`record_batch`] turns the changes of one table under one value schema (what
//! [`crate::ChangeConsumer::next_batch`] hands over) into one [`RecordBatch`]: the row's columns,
//! then the change's metadata (`_op`, `_topic`, `_partition`, `_offset`, `_timestamp`, and
//! `_key`, `_lsn`, `_txid`, `_source_ts`, `_unavailable` where the stream carries them). A
//! delete's row is its `before`, or for a tombstone the key's fields; a key that is not a
//! record (a string, a number) is the `_key` column.
//!
//! The columns come from the Avro schema of the row record (the `after`/`before` record inside
//! a Debezium envelope, the value record of a flat row), never from the data, so every batch of
//! one schema has the same Arrow schema (one exception: see decimals below). One builder per
//! column is planned once per batch from the schema tree and filled straight from the decoded
//! [`Value`]s, without converting cells to anything in between.
//!
//! The values are those the row iterator gives Python (`src/python/convert.rs`), in Arrow's
//! types; `docs/types.md` has the table. The choices where Arrow and Python differ:
//!
//! - Every column is nullable: a delete or a tombstone fills only some columns.
//! - Timestamps keep their unit where it is finer than Python's: nanosecond sources
//!   (`timestamp-nanos`, Debezium `NanoTimestamp`) become `timestamp[ns]`, the rest
//!   `timestamp[us]`; zoned ones are instants in UTC (a per-row offset, as Bottled Water's
//!   `DateTimeTZ` and Debezium's `ZonedTimestamp` carry, has no place in an Arrow column).
//! - A time of day with a zone (`ZonedTime`, Bottled Water `TimeTZ`) becomes `time64[us]` in
//!   UTC, for the same reason. `24:00:00` is `23:59:59.999999`, as in Python.
//! - PostgreSQL's `±infinity` is the largest and smallest value Python has (`date.max`,
//!   `datetime.max`, ...), as in the row iterator; in a nanosecond column, which cannot reach
//!   year 9999, it is the largest and smallest `timestamp[ns]` instead (`i64::MIN + 1`, as
//!   `i64::MIN` is NumPy's and pandas' "not a time").
//! - Decimals are `decimal128(38, scale)`. Where the schema allows more than 38 digits (a
//!   `fixed` wider than 16 bytes, a scale above 38) they are `decimal256(76, scale)`, beyond
//!   that exact text. A `bytes` decimal does not say its size here, so a batch holding a value
//!   past 38 digits gets `decimal256` (past 76, text) for that column: the one case where two
//!   batches of one schema differ.
//! - Debezium's `VariableScaleDecimal` (an unconstrained `numeric`) has a scale per value,
//!   which no Arrow decimal type has: it is the exact decimal text (`"-1.234"`), what
//!   `decimal.Decimal` prints, so `pyarrow.compute.cast` or `Decimal(text)` gives the number.
//! - `changestream.UNAVAILABLE` (an unchanged TOASTed column) is null, and the row's
//!   `_unavailable` list names those columns, so an upsert can leave them untouched.
//! - A UUID is `fixed_size_binary(16)` tagged as the `arrow.uuid` extension type.
//! - An interval is `month_day_nano`, a `MicroDuration` `duration[us]`.
//! - Enums and `_op`/`_topic` are dictionary-encoded strings.
//! - Records are structs, arrays lists, maps `map<utf8, ...>`; a union of several types that
//!   Arrow keeps apart (`["null", "int", "string"]`) is a struct with one field per type
//!   (`{"int": 1, "string": null}`): Arrow's union type is read by pyarrow alone. A recursive
//!   record cannot be an Arrow type: a batch of such a schema is an error.
//!
//! By stage: [`layout`] finds the row record and appends each change's row, [`column`] plans
//! and fills one column per field ([`decimal`] the decimal ones), [`metadata`] the `_op`,
//! position and source columns; [`polars_compatible`] adapts a finished batch for polars.

mod column;
mod decimal;
mod dictionary;
mod layout;
mod metadata;
mod plan;
#[cfg(test)]
mod plan_tests;
mod polars;
#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;

pub use self::plan::{Body, BodyPlan, Read};
pub use self::polars::polars_compatible;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::{Field, Schema as ArrowSchema};

use crate::change::{Change, Op};
use crate::error::{Error, Result};

use self::column::Column;
use self::layout::{fill_row, Layout};
use self::metadata::{Metadata, NameLists};

/// The zone of every zoned timestamp column.
const UTC: &str = "UTC";

/// `datetime.max` (9999-12-31T23:59:59.999999) and `datetime.min` (0001-01-01) in microseconds
/// since 1970: where Python puts PostgreSQL's `±infinity`.
const MAX_MICROS: i64 = 253_402_300_799_999_999;
const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// The smallest nanosecond timestamp: `i64::MIN` is pandas' and NumPy's "not a time".
const MIN_NANOS: i64 = i64::MIN + 1;
/// `date.max` and `date.min` in days since 1970.
const MAX_DAYS: i32 = 2_932_896;
const MIN_DAYS: i32 = -719_162;

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// The last microsecond of a day: where `24:00:00` goes, as in Python.
const LAST_NANO_OF_DAY: i64 = NANOS_PER_DAY - 1000;

/// The values of `_op`, in dictionary order.
const OPS: [Op; 7] = [
    Op::Insert,
    Op::Update,
    Op::Delete,
    Op::Read,
    Op::Upsert,
    Op::Truncate,
    Op::Message,
];

/// The changes of one table under one value schema as one record batch (see the module
/// documentation for the layout). A value that fits no Arrow type is a decode error naming the
/// column and the message.
pub fn record_batch(changes: &[Change]) -> Result<RecordBatch> {
    let layout = Layout::of(changes);
    let rows = changes.len();
    // A schema no Arrow type fits is reported at the batch's first message.
    let mut columns = layout
        .row_columns(rows)
        .map_err(|e| match changes.first() {
            Some(first) => e.at(first.position.location()),
            None => e,
        })?;
    let mut unavailable = layout.tracks_unavailable().then(|| NameLists::new(rows));
    let mut meta = Metadata::new(rows, layout.source);
    // A key that is not a record (a string, a number) is a column of its own: nothing else
    // in a tombstone says which row it deletes. A record key's fields are row columns already.
    let mut key = changes
        .iter()
        .find_map(|c| c.key.as_ref())
        .and_then(|key| Column::for_key(key, rows));
    for change in changes {
        let at = || change.position.location();
        fill_row(&layout, &mut columns, unavailable.as_mut(), change).map_err(|e| e.at(at()))?;
        meta.append(change).map_err(|e| e.at(at()))?;
        if let Some(column) = &mut key {
            match &change.key {
                Some(value) => column
                    .append(value)
                    .map_err(|reason| column_error("_key", reason).at(at()))?,
                None => column.append_null(),
            }
        }
    }

    let table = changes.first().and_then(|c| c.table.as_deref());
    assemble(
        columns,
        meta,
        key,
        unavailable,
        table,
        layout.schema.map(|(id, _)| id),
    )
}

/// The finished batch: the row columns, then the metadata columns.
fn assemble(
    columns: Vec<(Arc<str>, Column)>,
    meta: Metadata,
    key: Option<Column>,
    unavailable: Option<NameLists>,
    table: Option<&str>,
    schema_id: Option<u32>,
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(columns.len() + 9);
    let mut arrays = Vec::with_capacity(columns.len() + 9);
    for (name, column) in columns {
        let (field, array) = column
            .finish_field(&name)
            .map_err(|reason| column_error(&name, reason))?;
        fields.push(field);
        arrays.push(array);
    }
    let mut extra = meta.finish()?;
    let mut key_metadata = HashMap::new();
    if let Some(column) = key {
        let (field, array) = column
            .finish_field("_key")
            .map_err(|reason| column_error("_key", reason))?;
        key_metadata = field.metadata().clone();
        // After the Kafka position, before the source's.
        extra.insert(5, ("_key", array));
    }
    if let Some(lists) = unavailable {
        extra.push(("_unavailable", lists.finish()?));
    }
    // A row column named like a metadata column keeps its name; the metadata column moves.
    for (name, array) in extra {
        let mut field = Field::new(name, array.data_type().clone(), true);
        if name == "_key" {
            field.set_metadata(std::mem::take(&mut key_metadata));
        }
        let mut name = name.to_owned();
        while fields.iter().any(|f| f.name() == &name) {
            name.insert(0, '_');
        }
        fields.push(field.with_name(name));
        arrays.push(array);
    }
    let mut metadata = HashMap::new();
    if let Some(table) = table {
        metadata.insert("changestream.table".to_owned(), table.to_owned());
    }
    if let Some(id) = schema_id {
        metadata.insert("changestream.schema_id".to_owned(), id.to_string());
    }
    let schema = ArrowSchema::new_with_metadata(fields, metadata);
    RecordBatch::try_new(Arc::new(schema), arrays).map_err(arrow_error)
}

fn arrow_error(error: arrow_schema::ArrowError) -> Error {
    Error::decode(format!("cannot build the Arrow batch: {error}"))
}

fn column_error(name: &str, reason: String) -> Error {
    Error::decode(format!(
        "column {name:?} cannot be an Arrow column: {reason}"
    ))
}
