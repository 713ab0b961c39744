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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, DurationMicrosecondBuilder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    IntervalMonthDayNanoBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::{Decimal128Type, Decimal256Type, DecimalType, Int32Type, Int8Type};
use arrow_array::{
    Array, ArrayRef, Decimal128Array, Decimal256Array, DictionaryArray, Int32Array, Int64Array,
    Int8Array, ListArray, MapArray, NullArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{i256, IntervalMonthDayNano, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema as ArrowSchema, TimeUnit};

use crate::avro::{
    Decimal, Logical, Named, Node, RecordDef, Schema, Temporal, Time, TimeUnit as AvroUnit,
    Timestamp, Value,
};
use crate::change::{Change, Op};
use crate::error::{Error, Result};

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
        meta.append(change);
        if let Some(column) = &mut key {
            match &change.key {
                Some(value) => column
                    .append(value)
                    .map_err(|reason| column_error("_key", reason).at(at()))?,
                None => column.append_null(),
            }
        }
    }

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
    if let Some(table) = changes.first().and_then(|c| c.table.as_deref()) {
        metadata.insert("changestream.table".to_owned(), table.to_owned());
    }
    if let Some((id, _)) = &layout.schema {
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

/// What a batch's columns are built from.
struct Layout<'a> {
    /// The value schema and its id.
    schema: Option<(u32, &'a Schema)>,
    /// The row's shape.
    row: RowShape<'a>,
    /// The Debezium envelope's `source` record, when the rows come from envelopes.
    source: Option<&'a RecordDef>,
}

enum RowShape<'a> {
    /// A record: one column per field.
    Record(&'a RecordDef),
    /// A value that is not a record: one column, `value`.
    Value(&'a Node),
    /// No schema known (only tombstones of a topic never seen with a value).
    Nothing,
}

impl<'a> Layout<'a> {
    fn of(changes: &'a [Change]) -> Layout<'a> {
        let Some((id, schema)) = changes.iter().find_map(|c| c.value_schema.as_ref()) else {
            return Layout {
                schema: None,
                row: RowShape::Nothing,
                source: None,
            };
        };
        let root = schema.root_record();
        // The stream reads an envelope-shaped schema as flat rows when told to
        // (format="row"); the decoded rows say which it did.
        let rows_are_roots = changes.iter().find_map(row_record).is_some_and(|record| {
            root.is_some_and(|root| Arc::ptr_eq(&record.names, &root.field_names))
        });
        let envelope = root.and_then(|root| envelope_parts(schema, root));
        let (row, source) = match (envelope, root) {
            (Some((row, source)), _) if !rows_are_roots => (RowShape::Record(row), source),
            (_, Some(root)) => (RowShape::Record(root), None),
            (_, None) => (RowShape::Value(&schema.root), None),
        };
        Layout {
            schema: Some((*id, &**schema)),
            row,
            source,
        }
    }

    fn row_columns(&self, rows: usize) -> Result<Vec<(Arc<str>, Column)>> {
        let Some((_, schema)) = self.schema else {
            return Ok(Vec::new());
        };
        let plan = |name: &Arc<str>, node: &Node| {
            Column::new(schema, node, rows, &mut Vec::new())
                .map(|column| (name.clone(), column))
                .map_err(|reason| column_error(name, reason))
        };
        match self.row {
            RowShape::Record(record) => record
                .field_names
                .iter()
                .zip(&record.fields)
                .map(|(name, node)| plan(name, node))
                .collect(),
            RowShape::Value(node) => Ok(vec![plan(&Arc::from("value"), node)?]),
            RowShape::Nothing => Ok(Vec::new()),
        }
    }

    /// Whether Kafka Connect wrote the rows, and so whether Debezium's placeholder for an
    /// unchanged TOASTed column can appear in them.
    fn tracks_unavailable(&self) -> bool {
        matches!(self.row, RowShape::Record(record) if record.is_kafka_connect())
    }
}

/// The row record and the source record of a Debezium envelope schema (for a logical
/// decoding message, its `message` record: `prefix` and `content`).
fn envelope_parts<'a>(
    schema: &'a Schema,
    root: &'a RecordDef,
) -> Option<(&'a RecordDef, Option<&'a RecordDef>)> {
    let field = |name: &str| {
        let index = root.field_names.iter().position(|n| &**n == name)?;
        root.fields.get(index)
    };
    field("op")?;
    // A logical decoding message (Debezium's `MessageValue`) has its row in `message`.
    let row = ["after", "before", "message"]
        .into_iter()
        .find_map(|name| schema.record_of(field(name)?))?;
    let source = field("source").and_then(|node| schema.record_of(node));
    Some((row, source))
}

/// The row a change carries: the new row, or for a delete the old one.
fn row_value(change: &Change) -> Option<&Value> {
    match change.op {
        Op::Delete => change.before.as_ref(),
        _ => change.after.as_ref(),
    }
}

fn row_record(change: &Change) -> Option<&crate::avro::Record> {
    match row_value(change)? {
        Value::Record(record) => Some(record),
        _ => None,
    }
}

/// Append one change's row to the row columns (and the names of its unavailable columns).
fn fill_row(
    layout: &Layout<'_>,
    columns: &mut [(Arc<str>, Column)],
    unavailable: Option<&mut NameLists>,
    change: &Change,
) -> Result<()> {
    let mut unavailable = unavailable;
    let mut put = |name: &Arc<str>, column: &mut Column, value: Option<&Value>| -> Result<()> {
        match value {
            Some(value) => {
                if let (Value::Unavailable, Some(lists)) = (value, unavailable.as_deref_mut()) {
                    lists.push(name);
                }
                column
                    .append(value)
                    .map_err(|reason| column_error(name, reason))
            }
            None => {
                column.append_null();
                Ok(())
            }
        }
    };
    let row = match row_value(change) {
        Some(row) => Some(row),
        // A delete without the old row (a tombstone): the key's fields name the row.
        None if change.op == Op::Delete => change.key.as_ref(),
        None => None,
    };
    match (row, &layout.row) {
        (Some(Value::Record(record)), RowShape::Record(def))
            if Arc::ptr_eq(&record.names, &def.field_names) =>
        {
            for ((name, column), value) in columns.iter_mut().zip(&record.values) {
                put(&*name, column, Some(value))?;
            }
        }
        (Some(Value::Record(record)), RowShape::Record(_)) => {
            for (name, column) in columns.iter_mut() {
                put(&*name, column, record.get(name))?;
            }
        }
        (Some(value), RowShape::Value(_)) if row_value(change).is_some() => {
            for (name, column) in columns.iter_mut() {
                put(&*name, column, Some(value))?;
            }
        }
        // No row (a truncate, a key that is not a record): every column is null.
        _ => {
            for (name, column) in columns.iter_mut() {
                put(&*name, column, None)?;
            }
        }
    }
    if let Some(lists) = unavailable {
        lists.end_row();
    }
    Ok(())
}

/// One column being built. Variants follow the Arrow type; each appends the [`Value`]
/// variants of the Avro types that map to it.
enum Column {
    /// Only nulls (an Avro `null` field).
    Null(usize),
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Binary(BinaryBuilder),
    Fixed {
        builder: FixedSizeBinaryBuilder,
        width: i32,
    },
    /// Strings, and `VariableScaleDecimal`s as their exact text.
    Utf8(StringBuilder),
    /// An Avro enum: dictionary keys into its symbols.
    Enum {
        symbols: Vec<Arc<str>>,
        keys: Int32Builder,
    },
    Decimal(DecimalColumn),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    TimestampMicros {
        builder: TimestampMicrosecondBuilder,
        utc: bool,
    },
    TimestampNanos {
        builder: TimestampNanosecondBuilder,
        utc: bool,
    },
    Interval(IntervalMonthDayNanoBuilder),
    Duration(DurationMicrosecondBuilder),
    Struct {
        /// The record's full name (tells records apart in a union).
        name: Arc<str>,
        names: Arc<[Arc<str>]>,
        children: Vec<Column>,
        nulls: NullBufferBuilder,
    },
    List {
        item: Box<Column>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
    Map {
        keys: StringBuilder,
        values: Box<Column>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
    /// A union of types Arrow keeps apart: a struct with one field per non-null branch, of
    /// which a row sets at most one. (Arrow's own union type is read by pyarrow alone.)
    OneOf {
        names: Vec<String>,
        branches: Vec<Column>,
        nulls: NullBufferBuilder,
    },
}

/// Why a value cannot go into a column (the caller adds the column's name).
type Fit = std::result::Result<(), String>;

impl Column {
    /// Plan the column for an Avro type. `visiting` holds the records being planned, to refuse
    /// recursive ones (an Arrow type is a finite tree).
    fn new(
        schema: &Schema,
        node: &Node,
        rows: usize,
        visiting: &mut Vec<usize>,
    ) -> std::result::Result<Column, String> {
        Ok(match node {
            Node::Null => Column::Null(0),
            Node::Boolean => Column::Boolean(BooleanBuilder::with_capacity(rows)),
            Node::Int => Column::Int32(Int32Builder::with_capacity(rows)),
            Node::Long => Column::Int64(Int64Builder::with_capacity(rows)),
            Node::Float => Column::Float32(Float32Builder::with_capacity(rows)),
            Node::Double => Column::Float64(Float64Builder::with_capacity(rows)),
            Node::Bytes => Column::Binary(BinaryBuilder::with_capacity(rows, rows * 8)),
            Node::String => Column::Utf8(StringBuilder::with_capacity(rows, rows * 8)),
            Node::Array { items, .. } => Column::List {
                item: Box::new(Column::new(schema, items, rows, visiting)?),
                offsets: offsets_with_capacity(rows),
                nulls: NullBufferBuilder::new(rows),
            },
            Node::Map(values) => Column::Map {
                keys: StringBuilder::with_capacity(rows, rows * 8),
                values: Box::new(Column::new(schema, values, rows, visiting)?),
                offsets: offsets_with_capacity(rows),
                nulls: NullBufferBuilder::new(rows),
            },
            Node::Union(branches) => Column::union(schema, branches, rows, visiting)?,
            Node::Logical(node) => Column::logical(node.logical, None, rows),
            Node::Named(index) => match schema.named.get(*index) {
                Some(Named::Record(record)) => match record.logical {
                    Some(logical) => Column::logical(logical, None, rows),
                    None if visiting.contains(index) => {
                        return Err(format!("record {} contains itself", record.name))
                    }
                    None => {
                        visiting.push(*index);
                        let children = record
                            .fields
                            .iter()
                            .map(|field| Column::new(schema, field, rows, visiting))
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        visiting.pop();
                        Column::Struct {
                            name: record.name.clone(),
                            names: record.field_names.clone(),
                            children,
                            nulls: NullBufferBuilder::new(rows),
                        }
                    }
                },
                Some(Named::Enum(enumeration)) => Column::Enum {
                    symbols: enumeration.symbols.clone(),
                    keys: Int32Builder::with_capacity(rows),
                },
                Some(Named::Fixed(fixed)) => match fixed.logical {
                    Some(logical) => Column::logical(logical, Some(fixed.size), rows),
                    None => {
                        let width = i32::try_from(fixed.size)
                            .map_err(|_| format!("fixed of {} bytes", fixed.size))?;
                        Column::Fixed {
                            builder: FixedSizeBinaryBuilder::with_capacity(rows, width),
                            width,
                        }
                    }
                },
                None => return Err(format!("unknown named type {index}")),
            },
        })
    }

    /// The column of a key that is not a record, from its value (the key's schema is not at
    /// hand): `None` for a record key, or one of a type no key has.
    fn for_key(key: &Value, rows: usize) -> Option<Column> {
        Some(match key {
            Value::Boolean(_) => Column::Boolean(BooleanBuilder::with_capacity(rows)),
            Value::Int(_) => Column::Int32(Int32Builder::with_capacity(rows)),
            Value::Long(_) => Column::Int64(Int64Builder::with_capacity(rows)),
            Value::Float(_) => Column::Float32(Float32Builder::with_capacity(rows)),
            Value::Double(_) => Column::Float64(Float64Builder::with_capacity(rows)),
            Value::Bytes(_) => Column::Binary(BinaryBuilder::with_capacity(rows, rows * 8)),
            Value::String(_) | Value::Enum(_) => {
                Column::Utf8(StringBuilder::with_capacity(rows, rows * 8))
            }
            Value::Uuid(_) => Column::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
            _ => return None,
        })
    }

    /// The column of a logical type; `fixed_size` is the size of the `fixed` it is read from.
    fn logical(logical: Logical, fixed_size: Option<usize>, rows: usize) -> Column {
        let timestamp = |nanos: bool, utc: bool| {
            let zone = utc.then_some(UTC);
            if nanos {
                Column::TimestampNanos {
                    builder: TimestampNanosecondBuilder::with_capacity(rows)
                        .with_timezone_opt(zone),
                    utc,
                }
            } else {
                Column::TimestampMicros {
                    builder: TimestampMicrosecondBuilder::with_capacity(rows)
                        .with_timezone_opt(zone),
                    utc,
                }
            }
        };
        match logical {
            Logical::Decimal { scale } => {
                Column::Decimal(DecimalColumn::new(scale, fixed_size, rows))
            }
            Logical::Uuid => Column::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
            Logical::Date { .. } | Logical::BottledWaterDate => {
                Column::Date(Date32Builder::with_capacity(rows))
            }
            Logical::Time(_) | Logical::ZonedTime | Logical::BottledWaterTimeTz => {
                Column::Time(Time64MicrosecondBuilder::with_capacity(rows))
            }
            Logical::Timestamp { unit, zoned, .. } => timestamp(unit == AvroUnit::Nanos, zoned),
            Logical::ZonedTimestamp => timestamp(false, true),
            Logical::BottledWaterDateTime { zoned } => timestamp(false, zoned),
            Logical::SpecialTime(Temporal::Date) => {
                Column::Date(Date32Builder::with_capacity(rows))
            }
            Logical::SpecialTime(Temporal::LocalTimestamp) => timestamp(false, false),
            Logical::SpecialTime(Temporal::ZonedTimestamp) => timestamp(false, true),
            Logical::Duration | Logical::IsoInterval | Logical::BottledWaterInterval => {
                Column::Interval(IntervalMonthDayNanoBuilder::with_capacity(rows))
            }
            Logical::MicroDuration => {
                Column::Duration(DurationMicrosecondBuilder::with_capacity(rows))
            }
            Logical::VariableScaleDecimal => {
                Column::Utf8(StringBuilder::with_capacity(rows, rows * 8))
            }
        }
    }

    /// A union: the column of its one non-null branch (nullable unions, the common case), one
    /// column when every branch maps to the same Arrow type (Bottled Water's date record and
    /// its `SpecialTime` enum), a struct of the branches otherwise.
    fn union(
        schema: &Schema,
        branches: &[Node],
        rows: usize,
        visiting: &mut Vec<usize>,
    ) -> std::result::Result<Column, String> {
        let typed: Vec<&Node> = branches.iter().filter(|b| **b != Node::Null).collect();
        let mut columns = typed
            .iter()
            .map(|branch| Column::new(schema, branch, rows, visiting))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let Some(first) = columns.first() else {
            return Ok(Column::Null(0));
        };
        let first_type = first.data_type();
        if columns.iter().all(|c| c.data_type() == first_type) {
            return Ok(columns.swap_remove(0));
        }
        let mut names: Vec<String> = Vec::with_capacity(typed.len());
        for branch in typed {
            let mut name = branch_name(schema, branch);
            if names.contains(&name) {
                name = format!("{name}_{}", names.len());
            }
            names.push(name);
        }
        Ok(Column::OneOf {
            names,
            branches: columns,
            nulls: NullBufferBuilder::new(rows),
        })
    }

    /// The Arrow type the column will have (decides whether union branches merge).
    fn data_type(&self) -> DataType {
        let zone = |utc: bool| utc.then(|| Arc::from(UTC));
        match self {
            Column::Null(_) => DataType::Null,
            Column::Boolean(_) => DataType::Boolean,
            Column::Int32(_) => DataType::Int32,
            Column::Int64(_) => DataType::Int64,
            Column::Float32(_) => DataType::Float32,
            Column::Float64(_) => DataType::Float64,
            Column::Binary(_) => DataType::Binary,
            Column::Fixed { width, .. } => DataType::FixedSizeBinary(*width),
            Column::Utf8(_) => DataType::Utf8,
            Column::Enum { .. } => dictionary(DataType::Int32),
            Column::Decimal(decimal) => decimal.data_type(),
            Column::Uuid(_) => DataType::FixedSizeBinary(16),
            Column::Date(_) => DataType::Date32,
            Column::Time(_) => DataType::Time64(TimeUnit::Microsecond),
            Column::TimestampMicros { utc, .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, zone(*utc))
            }
            Column::TimestampNanos { utc, .. } => {
                DataType::Timestamp(TimeUnit::Nanosecond, zone(*utc))
            }
            Column::Interval(_) => DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
            Column::Duration(_) => DataType::Duration(TimeUnit::Microsecond),
            Column::Struct {
                names, children, ..
            } => DataType::Struct(
                names
                    .iter()
                    .zip(children)
                    .map(|(name, child)| Field::new(&**name, child.data_type(), true))
                    .collect(),
            ),
            Column::List { item, .. } => {
                DataType::List(Arc::new(Field::new("item", item.data_type(), true)))
            }
            Column::Map { values, .. } => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(map_fields(values.data_type())),
                    false,
                )),
                false,
            ),
            Column::OneOf {
                names, branches, ..
            } => DataType::Struct(
                names
                    .iter()
                    .zip(branches)
                    .map(|(name, branch)| Field::new(name, branch.data_type(), true))
                    .collect(),
            ),
        }
    }

    /// How many values the column holds.
    fn len(&self) -> usize {
        match self {
            Column::Null(len) => *len,
            Column::Boolean(b) => b.len(),
            Column::Int32(b) => b.len(),
            Column::Int64(b) => b.len(),
            Column::Float32(b) => b.len(),
            Column::Float64(b) => b.len(),
            Column::Binary(b) => b.len(),
            Column::Fixed { builder: b, .. } | Column::Uuid(b) => b.len(),
            Column::Utf8(b) => b.len(),
            Column::Enum { keys, .. } => keys.len(),
            Column::Decimal(decimal) => decimal.nulls.len(),
            Column::Date(b) => b.len(),
            Column::Time(b) => b.len(),
            Column::TimestampMicros { builder, .. } => builder.len(),
            Column::TimestampNanos { builder, .. } => builder.len(),
            Column::Interval(b) => b.len(),
            Column::Duration(b) => b.len(),
            Column::Struct { nulls, .. }
            | Column::List { nulls, .. }
            | Column::Map { nulls, .. } => nulls.len(),
            Column::OneOf { nulls, .. } => nulls.len(),
        }
    }

    /// Whether a value is of this column's type, to pick a union's branch.
    fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null | Value::Unavailable) => true,
            (Column::Boolean(_), Value::Boolean(_))
            | (Column::Int32(_), Value::Int(_))
            | (Column::Int64(_), Value::Long(_))
            | (Column::Float32(_), Value::Float(_))
            | (Column::Float64(_), Value::Double(_))
            | (Column::Binary(_), Value::Bytes(_))
            | (Column::Utf8(_), Value::String(_) | Value::Decimal(_))
            | (Column::Enum { .. }, Value::Enum(_))
            | (Column::Decimal(_), Value::Decimal(_))
            | (Column::Uuid(_), Value::Uuid(_))
            | (Column::Time(_), Value::Time(_))
            | (Column::Interval(_), Value::Interval(_))
            | (Column::Duration(_), Value::Duration(_))
            | (Column::List { .. }, Value::Array(_))
            | (Column::Map { .. }, Value::Map(_)) => true,
            (Column::Fixed { width, .. }, Value::Fixed(bytes)) => {
                usize::try_from(*width) == Ok(bytes.len())
            }
            (Column::Date(_), Value::Date(_)) => true,
            (Column::Date(_), Value::Infinity { of, .. }) => *of == Temporal::Date,
            (
                Column::TimestampMicros { .. } | Column::TimestampNanos { .. },
                Value::Timestamp(_),
            ) => true,
            (
                Column::TimestampMicros { .. } | Column::TimestampNanos { .. },
                Value::Infinity { of, .. },
            ) => *of != Temporal::Date,
            (Column::Struct { name, .. }, Value::Record(record)) => record.name == *name,
            (Column::OneOf { branches, .. }, value) => branches.iter().any(|b| b.accepts(value)),
            _ => false,
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Null(len) => *len += 1,
            Column::Boolean(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Binary(b) => b.append_null(),
            Column::Fixed { builder: b, .. } | Column::Uuid(b) => b.append_null(),
            Column::Utf8(b) => b.append_null(),
            Column::Enum { keys, .. } => keys.append_null(),
            Column::Decimal(decimal) => decimal.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::TimestampMicros { builder, .. } => builder.append_null(),
            Column::TimestampNanos { builder, .. } => builder.append_null(),
            Column::Interval(b) => b.append_null(),
            Column::Duration(b) => b.append_null(),
            Column::Struct {
                children, nulls, ..
            }
            | Column::OneOf {
                branches: children,
                nulls,
                ..
            } => {
                // A struct's children have a slot for every row, null ones included.
                for child in children {
                    child.append_null();
                }
                nulls.append_null();
            }
            Column::List { offsets, nulls, .. } | Column::Map { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
        }
    }

    fn append(&mut self, value: &Value) -> Fit {
        match (self, value) {
            (column, Value::Null | Value::Unavailable) => column.append_null(),
            (Column::Boolean(b), Value::Boolean(v)) => b.append_value(*v),
            (Column::Int32(b), Value::Int(v)) => b.append_value(*v),
            (Column::Int64(b), Value::Long(v)) => b.append_value(*v),
            // A key field read into a row column of a wider type (a tombstone's key).
            (Column::Int64(b), Value::Int(v)) => b.append_value(i64::from(*v)),
            (Column::Float32(b), Value::Float(v)) => b.append_value(*v),
            (Column::Float64(b), Value::Double(v)) => b.append_value(*v),
            (Column::Float64(b), Value::Float(v)) => b.append_value(f64::from(*v)),
            (Column::Binary(b), Value::Bytes(v) | Value::Fixed(v)) => b.append_value(v),
            (Column::Fixed { builder: b, .. }, Value::Fixed(v)) => {
                b.append_value(v).map_err(|e| e.to_string())?;
            }
            (Column::Utf8(b), Value::String(v)) => b.append_value(v),
            (Column::Utf8(b), Value::Enum(v)) => b.append_value(&**v),
            (Column::Utf8(b), Value::Decimal(decimal)) => {
                write!(b, "{decimal}").map_err(|e| e.to_string())?;
                b.append_value("");
            }
            (Column::Enum { symbols, keys }, Value::Enum(symbol)) => {
                let index = symbols
                    .iter()
                    .position(|s| Arc::ptr_eq(s, symbol) || s == symbol)
                    .ok_or_else(|| format!("{symbol:?} is not a symbol of the enum"))?;
                keys.append_value(index as i32);
            }
            (Column::Decimal(column), Value::Decimal(decimal)) => column.append(decimal),
            (Column::Uuid(b), Value::Uuid(bytes)) => {
                b.append_value(bytes).map_err(|e| e.to_string())?;
            }
            (Column::Date(b), Value::Date(days)) => b.append_value(*days),
            (Column::Date(b), Value::Infinity { negative, .. }) => {
                b.append_value(if *negative { MIN_DAYS } else { MAX_DAYS })
            }
            (Column::Time(b), Value::Time(time)) => b.append_value(time_micros(time)),
            (Column::TimestampMicros { builder, .. }, Value::Timestamp(t)) => {
                builder.append_value(micros(t).ok_or_else(|| out_of_range(t, "microseconds"))?)
            }
            (Column::TimestampMicros { builder, .. }, Value::Infinity { negative, .. }) => {
                builder.append_value(if *negative { MIN_MICROS } else { MAX_MICROS })
            }
            (Column::TimestampNanos { builder, .. }, Value::Timestamp(t)) => {
                builder.append_value(nanos(t).ok_or_else(|| out_of_range(t, "nanoseconds"))?)
            }
            (Column::TimestampNanos { builder, .. }, Value::Infinity { negative, .. }) => {
                builder.append_value(if *negative { MIN_NANOS } else { i64::MAX })
            }
            (Column::Interval(b), Value::Interval(interval)) => {
                let fit = || {
                    Some(IntervalMonthDayNano::new(
                        i32::try_from(interval.months).ok()?,
                        i32::try_from(interval.days).ok()?,
                        interval.micros.checked_mul(1000)?,
                    ))
                };
                b.append_value(fit().ok_or_else(|| {
                    format!("{interval:?} does not fit Arrow's month_day_nano interval")
                })?);
            }
            (Column::Duration(b), Value::Duration(micros)) => b.append_value(*micros),
            (
                Column::Struct {
                    names,
                    children,
                    nulls,
                    ..
                },
                Value::Record(record),
            ) => {
                if Arc::ptr_eq(&record.names, names) {
                    for (child, value) in children.iter_mut().zip(&record.values) {
                        child.append(value)?;
                    }
                } else {
                    for (name, child) in names.iter().zip(children.iter_mut()) {
                        match record.get(name) {
                            Some(value) => child.append(value)?,
                            None => child.append_null(),
                        }
                    }
                }
                nulls.append_non_null();
            }
            (
                Column::List {
                    item,
                    offsets,
                    nulls,
                },
                Value::Array(items),
            ) => {
                for value in items {
                    item.append(value)?;
                }
                offsets.push(offset(item.len())?);
                nulls.append_non_null();
            }
            (
                Column::Map {
                    keys,
                    values,
                    offsets,
                    nulls,
                },
                Value::Map(entries),
            ) => {
                for (key, value) in entries {
                    keys.append_value(key);
                    values.append(value)?;
                }
                offsets.push(offset(values.len())?);
                nulls.append_non_null();
            }
            (
                Column::OneOf {
                    branches, nulls, ..
                },
                value,
            ) => {
                let branch = branches
                    .iter()
                    .position(|b| b.accepts(value))
                    .ok_or_else(|| format!("no branch of the union takes {}", kind(value)))?;
                for (i, column) in branches.iter_mut().enumerate() {
                    if i == branch {
                        column.append(value)?;
                    } else {
                        column.append_null();
                    }
                }
                nulls.append_non_null();
            }
            (column, value) => {
                return Err(format!(
                    "a {} value does not fit a {} column",
                    kind(value),
                    column.data_type()
                ))
            }
        }
        Ok(())
    }

    /// The finished array and its field. A UUID (16 bytes) is tagged as the canonical
    /// `arrow.uuid` extension type, so pyarrow gives `uuid.UUID` objects as the row iterator
    /// does and other consumers see the bytes.
    fn finish_field(self, name: &str) -> std::result::Result<(Field, ArrayRef), String> {
        let uuid = matches!(self, Column::Uuid(_));
        let array = self.finish()?;
        let mut field = Field::new(name, array.data_type().clone(), true);
        if uuid {
            field = field.with_metadata(HashMap::from([
                ("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned()),
                ("ARROW:extension:metadata".to_owned(), String::new()),
            ]));
        }
        Ok((field, array))
    }

    /// The finished Arrow array.
    fn finish(self) -> std::result::Result<ArrayRef, String> {
        let arrow = |e: arrow_schema::ArrowError| e.to_string();
        let array: ArrayRef = match self {
            Column::Null(len) => Arc::new(NullArray::new(len)),
            Column::Boolean(mut b) => Arc::new(b.finish()),
            Column::Int32(mut b) => Arc::new(b.finish()),
            Column::Int64(mut b) => Arc::new(b.finish()),
            Column::Float32(mut b) => Arc::new(b.finish()),
            Column::Float64(mut b) => Arc::new(b.finish()),
            Column::Binary(mut b) => Arc::new(b.finish()),
            Column::Fixed { builder: mut b, .. } | Column::Uuid(mut b) => Arc::new(b.finish()),
            Column::Utf8(mut b) => Arc::new(b.finish()),
            Column::Enum { symbols, mut keys } => {
                let values = StringArray::from_iter_values(symbols.iter().map(|s| &**s));
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(keys.finish(), Arc::new(values))
                        .map_err(arrow)?,
                )
            }
            Column::Decimal(decimal) => decimal.finish()?,
            Column::Date(mut b) => Arc::new(b.finish()),
            Column::Time(mut b) => Arc::new(b.finish()),
            Column::TimestampMicros { mut builder, .. } => Arc::new(builder.finish()),
            Column::TimestampNanos { mut builder, .. } => Arc::new(builder.finish()),
            Column::Interval(mut b) => Arc::new(b.finish()),
            Column::Duration(mut b) => Arc::new(b.finish()),
            Column::Struct {
                names,
                children,
                mut nulls,
                ..
            } => struct_array(names.iter().map(|n| &**n), children, nulls.finish())?,
            Column::OneOf {
                names,
                branches,
                mut nulls,
            } => struct_array(names.iter().map(String::as_str), branches, nulls.finish())?,
            Column::List {
                item,
                offsets,
                mut nulls,
            } => {
                let (field, values) = item.finish_field("item")?;
                Arc::new(
                    ListArray::try_new(
                        Arc::new(field),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        values,
                        nulls.finish(),
                    )
                    .map_err(arrow)?,
                )
            }
            Column::Map {
                mut keys,
                values,
                offsets,
                mut nulls,
            } => {
                let (value_field, values) = values.finish_field("value")?;
                let fields =
                    Fields::from(vec![Field::new("key", DataType::Utf8, false), value_field]);
                let entries = StructArray::try_new(
                    fields.clone(),
                    vec![Arc::new(keys.finish()), values],
                    None,
                )
                .map_err(arrow)?;
                let field = Field::new("entries", DataType::Struct(fields), false);
                Arc::new(
                    MapArray::try_new(
                        Arc::new(field),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        entries,
                        nulls.finish(),
                        false,
                    )
                    .map_err(arrow)?,
                )
            }
        };
        Ok(array)
    }
}

fn offsets_with_capacity(rows: usize) -> Vec<i32> {
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0);
    offsets
}

/// An end offset of a list or map, which Arrow's `list` keeps in 32 bits.
fn offset(len: usize) -> std::result::Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("more than {} list items in a batch", i32::MAX))
}

fn dictionary(keys: DataType) -> DataType {
    DataType::Dictionary(Box::new(keys), Box::new(DataType::Utf8))
}

fn map_fields(values: DataType) -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", values, true),
    ])
}

fn struct_array<'a>(
    names: impl Iterator<Item = &'a str>,
    children: Vec<Column>,
    nulls: Option<arrow_buffer::NullBuffer>,
) -> std::result::Result<ArrayRef, String> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = names
        .zip(children)
        .map(|(name, child)| child.finish_field(name))
        .collect::<std::result::Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let array = StructArray::try_new(fields.into(), arrays, nulls).map_err(|e| e.to_string())?;
    Ok(Arc::new(array))
}

/// The field name of a union branch: its Avro type's name (a named type's short name).
fn branch_name(schema: &Schema, node: &Node) -> String {
    let name = match node {
        Node::Null => "null",
        Node::Boolean => "boolean",
        Node::Int => "int",
        Node::Long => "long",
        Node::Float => "float",
        Node::Double => "double",
        Node::Bytes => "bytes",
        Node::String => "string",
        Node::Array { .. } => "array",
        Node::Map(_) => "map",
        Node::Union(_) => "union",
        Node::Logical(logical) => return branch_name(schema, &logical.base),
        Node::Named(index) => match schema.named.get(*index) {
            Some(named) => {
                let full = named.full_name();
                full.rsplit('.').next().unwrap_or(full)
            }
            None => "named",
        },
    };
    name.to_owned()
}

/// The name of a value's kind, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(_) => "fixed",
        Value::Enum(_) => "enum",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::Decimal(_) => "decimal",
        Value::Uuid(_) => "uuid",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::Infinity { .. } => "infinity",
        Value::Interval(_) => "interval",
        Value::Duration(_) => "duration",
        Value::Unavailable => "unavailable",
    }
}

fn out_of_range(timestamp: &Timestamp, unit: &str) -> String {
    format!(
        "timestamp {} s from 1970-01-01 does not fit 64 bits of {unit}",
        timestamp.seconds
    )
}

/// Microseconds since 1970 (of the instant for a zoned timestamp, of the wall clock for a
/// local one), dropping finer digits toward the past as Python does.
fn micros(timestamp: &Timestamp) -> Option<i64> {
    timestamp
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(timestamp.nanos / 1000))
}

fn nanos(timestamp: &Timestamp) -> Option<i64> {
    timestamp
        .seconds
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(timestamp.nanos))
}

/// Microseconds since midnight, in UTC for a time with a zone; `24:00` is the day's last
/// microsecond, as in Python.
fn time_micros(time: &Time) -> i64 {
    let nanos = time.nanos.clamp(0, LAST_NANO_OF_DAY);
    let utc = match time.offset {
        Some(offset) => (nanos - i64::from(offset) * 1_000_000_000).rem_euclid(NANOS_PER_DAY),
        None => nanos,
    };
    utc / 1000
}

/// A decimal column. Its representation widens as values need it (see the module
/// documentation): 128-bit, then 256-bit integers, then exact text.
struct DecimalColumn {
    scale: i32,
    values: DecimalValues,
    nulls: NullBufferBuilder,
}

enum DecimalValues {
    Narrow(Vec<i128>),
    Wide(Vec<i256>),
    Text(StringBuilder),
}

impl DecimalColumn {
    fn new(scale: i32, fixed_size: Option<usize>, rows: usize) -> DecimalColumn {
        let values = match (scale, fixed_size.unwrap_or(0)) {
            (0..=38, 0..=16) => DecimalValues::Narrow(Vec::with_capacity(rows)),
            (0..=76, 0..=32) => DecimalValues::Wide(Vec::with_capacity(rows)),
            _ => DecimalValues::Text(StringBuilder::with_capacity(rows, rows * 8)),
        };
        DecimalColumn {
            scale,
            values,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn data_type(&self) -> DataType {
        // The scale is checked to be in range for the representation when it is chosen.
        let scale = self.scale as i8;
        match self.values {
            DecimalValues::Narrow(_) => DataType::Decimal128(Decimal128Type::MAX_PRECISION, scale),
            DecimalValues::Wide(_) => DataType::Decimal256(Decimal256Type::MAX_PRECISION, scale),
            DecimalValues::Text(_) => DataType::Utf8,
        }
    }

    fn append_null(&mut self) {
        match &mut self.values {
            DecimalValues::Narrow(values) => values.push(0),
            DecimalValues::Wide(values) => values.push(i256::ZERO),
            DecimalValues::Text(text) => text.append_null(),
        }
        self.nulls.append_null();
    }

    fn append(&mut self, decimal: &Decimal) {
        // A value of another scale (no schema writes one) keeps its digits as text.
        if decimal.scale != self.scale {
            self.widen_to_text();
        }
        if let DecimalValues::Narrow(values) = &mut self.values {
            match i128_of(&decimal.unscaled) {
                Some(value) if Decimal128Type::is_valid_decimal_precision(value, 38) => {
                    values.push(value);
                    self.nulls.append_non_null();
                    return;
                }
                _ => self.widen(),
            }
        }
        if let DecimalValues::Wide(values) = &mut self.values {
            match i256_of(&decimal.unscaled) {
                Some(value) if Decimal256Type::is_valid_decimal_precision(value, 76) => {
                    values.push(value);
                    self.nulls.append_non_null();
                    return;
                }
                _ => self.widen_to_text(),
            }
        }
        if let DecimalValues::Text(text) = &mut self.values {
            // Writing to a string builder cannot fail.
            let _ = write!(text, "{decimal}");
            text.append_value("");
            self.nulls.append_non_null();
        }
    }

    /// From 128-bit to 256-bit integers (the scale fits: Wide allows more than Narrow).
    fn widen(&mut self) {
        if let DecimalValues::Narrow(values) = &mut self.values {
            let wide = values.iter().map(|&v| i256::from_i128(v)).collect();
            self.values = DecimalValues::Wide(wide);
        }
    }

    /// To text, writing the values so far as the row iterator would.
    fn widen_to_text(&mut self) {
        let nulls = self.nulls.finish_cloned();
        let is_null = |i: usize| nulls.as_ref().is_some_and(|n| n.is_null(i));
        let bytes: Vec<Option<Vec<u8>>> = match &self.values {
            DecimalValues::Narrow(values) => values
                .iter()
                .enumerate()
                .map(|(i, v)| (!is_null(i)).then(|| v.to_be_bytes().to_vec()))
                .collect(),
            DecimalValues::Wide(values) => values
                .iter()
                .enumerate()
                .map(|(i, v)| (!is_null(i)).then(|| v.to_be_bytes().to_vec()))
                .collect(),
            DecimalValues::Text(_) => return,
        };
        let mut text = StringBuilder::with_capacity(bytes.len(), bytes.len() * 8);
        for unscaled in bytes {
            match unscaled {
                Some(unscaled) => {
                    let decimal = Decimal {
                        unscaled,
                        scale: self.scale,
                    };
                    let _ = write!(text, "{decimal}");
                    text.append_value("");
                }
                None => text.append_null(),
            }
        }
        self.values = DecimalValues::Text(text);
    }

    fn finish(mut self) -> std::result::Result<ArrayRef, String> {
        let nulls = self.nulls.finish();
        let scale = self.scale as i8;
        let arrow = |e: arrow_schema::ArrowError| e.to_string();
        let array: ArrayRef = match self.values {
            DecimalValues::Narrow(values) => Arc::new(
                Decimal128Array::new(ScalarBuffer::from(values), nulls)
                    .with_precision_and_scale(Decimal128Type::MAX_PRECISION, scale)
                    .map_err(arrow)?,
            ),
            DecimalValues::Wide(values) => Arc::new(
                Decimal256Array::new(ScalarBuffer::from(values), nulls)
                    .with_precision_and_scale(Decimal256Type::MAX_PRECISION, scale)
                    .map_err(arrow)?,
            ),
            DecimalValues::Text(mut text) => Arc::new(text.finish()),
        };
        Ok(array)
    }
}

/// A big-endian two's-complement integer as `i128`, if it fits (redundant sign bytes allowed).
fn i128_of(bytes: &[u8]) -> Option<i128> {
    let (fill, digits) = significant(bytes, 16)?;
    let mut wide = [fill; 16];
    wide[16 - digits.len()..].copy_from_slice(digits);
    Some(i128::from_be_bytes(wide))
}

fn i256_of(bytes: &[u8]) -> Option<i256> {
    let (fill, digits) = significant(bytes, 32)?;
    let mut wide = [fill; 32];
    wide[32 - digits.len()..].copy_from_slice(digits);
    Some(i256::from_be_bytes(wide))
}

/// The sign-extension byte and the bytes that matter, if at most `width` of them do.
fn significant(bytes: &[u8], width: usize) -> Option<(u8, &[u8])> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    let mut digits = bytes;
    // Drop leading sign bytes while the next byte still carries the sign.
    while digits.len() > width
        && digits[0] == fill
        && digits.get(1).is_some_and(|b| (b & 0x80 != 0) == negative)
    {
        digits = &digits[1..];
    }
    (digits.len() <= width).then_some((fill, digits))
}

/// Lists of column names per row (`_unavailable`).
struct NameLists {
    names: StringBuilder,
    offsets: Vec<i32>,
}

impl NameLists {
    fn new(rows: usize) -> NameLists {
        NameLists {
            names: StringBuilder::new(),
            offsets: offsets_with_capacity(rows),
        }
    }

    fn push(&mut self, name: &str) {
        self.names.append_value(name);
    }

    fn end_row(&mut self) {
        // Fewer names than rows × columns, which are far below 2^31 in a batch.
        self.offsets.push(self.names.len() as i32);
    }

    fn finish(mut self) -> Result<ArrayRef> {
        let field = Field::new("item", DataType::Utf8, true);
        let list = ListArray::try_new(
            Arc::new(field),
            OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
            Arc::new(self.names.finish()),
            None,
        )
        .map_err(arrow_error)?;
        Ok(Arc::new(list))
    }
}

/// The metadata columns: where each change was read, and its source position.
struct Metadata {
    ops: Vec<i8>,
    topics: Vec<Arc<str>>,
    topic_keys: Vec<i32>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: TimestampMillisecondBuilder,
    lsn: Option<Int64Builder>,
    txid: Option<Int64Builder>,
    source_ts: Option<TimestampMillisecondBuilder>,
}

impl Metadata {
    fn new(rows: usize, source: Option<&RecordDef>) -> Metadata {
        let has = |name: &str| source.is_some_and(|s| s.field_names.iter().any(|n| &**n == name));
        let millis = || TimestampMillisecondBuilder::with_capacity(rows).with_timezone(UTC);
        Metadata {
            ops: Vec::with_capacity(rows),
            topics: Vec::new(),
            topic_keys: Vec::with_capacity(rows),
            partitions: Vec::with_capacity(rows),
            offsets: Vec::with_capacity(rows),
            timestamps: millis(),
            lsn: has("lsn").then(|| Int64Builder::with_capacity(rows)),
            txid: has("txId").then(|| Int64Builder::with_capacity(rows)),
            source_ts: has("ts_ms").then(millis),
        }
    }

    fn append(&mut self, change: &Change) {
        let op = OPS.iter().position(|op| *op == change.op).unwrap_or(0);
        self.ops.push(op as i8);
        let topic = &change.position.topic;
        // One topic per batch is the rule, so look at the last one first.
        let key = match self
            .topics
            .iter()
            .rposition(|t| Arc::ptr_eq(t, topic) || t == topic)
        {
            Some(key) => key,
            None => {
                self.topics.push(topic.clone());
                self.topics.len() - 1
            }
        };
        self.topic_keys.push(key as i32);
        self.partitions.push(change.position.partition);
        self.offsets.push(change.position.offset);
        self.timestamps.append_option(change.position.timestamp_ms);
        let source = match &change.source {
            Some(Value::Record(source)) => Some(source),
            _ => None,
        };
        let long = |name: &str| match source.and_then(|s| s.get(name)) {
            Some(Value::Long(v)) => Some(*v),
            Some(Value::Int(v)) => Some(i64::from(*v)),
            _ => None,
        };
        if let Some(b) = &mut self.lsn {
            b.append_option(long("lsn"));
        }
        if let Some(b) = &mut self.txid {
            b.append_option(long("txId"));
        }
        if let Some(b) = &mut self.source_ts {
            b.append_option(long("ts_ms"));
        }
    }

    fn finish(mut self) -> Result<Vec<(&'static str, ArrayRef)>> {
        let op_names = StringArray::from_iter_values(OPS.iter().map(|op| op.as_str()));
        let ops =
            DictionaryArray::<Int8Type>::try_new(Int8Array::from(self.ops), Arc::new(op_names))
                .map_err(arrow_error)?;
        let topic_names = StringArray::from_iter_values(self.topics.iter().map(|t| &**t));
        let topics = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(self.topic_keys),
            Arc::new(topic_names),
        )
        .map_err(arrow_error)?;
        let mut columns: Vec<(&'static str, ArrayRef)> = vec![
            ("_op", Arc::new(ops) as ArrayRef),
            ("_topic", Arc::new(topics) as ArrayRef),
            (
                "_partition",
                Arc::new(Int32Array::from(self.partitions)) as ArrayRef,
            ),
            (
                "_offset",
                Arc::new(Int64Array::from(self.offsets)) as ArrayRef,
            ),
            ("_timestamp", Arc::new(self.timestamps.finish()) as ArrayRef),
        ];
        if let Some(mut b) = self.lsn {
            columns.push(("_lsn", Arc::new(b.finish()) as ArrayRef));
        }
        if let Some(mut b) = self.txid {
            columns.push(("_txid", Arc::new(b.finish()) as ArrayRef));
        }
        if let Some(mut b) = self.source_ts {
            columns.push(("_source_ts", Arc::new(b.finish()) as ArrayRef));
        }
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::{Interval, Record};
    use crate::change::Position;
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
            name: def.name.clone(),
            names: def.field_names.clone(),
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
        let schema =
            parse(r#"{"type":"record","name":"r","fields":[{"name":"_op","type":"string"}]}"#);
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
                    unscaled: vec![0xfb, 0x2e], // -1234
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
                    unscaled: vec![0x05],
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
        let decimal = |unscaled: Vec<u8>, scale| Value::Decimal(Decimal { unscaled, scale });
        let ten_to_40 = vec![
            0x1d, 0x63, 0x29, 0xf1, 0xc3, 0x5c, 0xa4, 0xbf, 0xab, 0xb9, 0xf5, 0x61, 0x00, 0x00,
            0x00, 0x00, 0x00,
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
            source: Some(source.clone()),
            ..change(&schema, Op::Insert, 0)
        };
        let update = Change {
            after: Some(record(&row_def, vec![Value::Int(1), Value::Unavailable])),
            source: Some(source.clone()),
            ..change(&schema, Op::Update, 1)
        };
        let delete = Change {
            before: Some(record(&row_def, vec![Value::Int(1), Value::Null])),
            source: Some(source),
            ..change(&schema, Op::Delete, 2)
        };
        let key_def =
            parse(r#"{"type":"record","name":"Key","fields":[{"name":"id","type":"int"}]}"#);
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
}

#[cfg(test)]
mod speed;
