//! One Arrow column being built from decoded values: its type planned from the Avro schema,
//! each value appended, and the finished array.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, DurationMicrosecondBuilder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    IntervalMonthDayNanoBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, ListArray, MapArray, NullArray, StructArray};
use arrow_buffer::{IntervalMonthDayNano, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, TimeUnit};

use crate::avro::{
    Logical, Named, Node, Schema, Temporal, Time, TimeUnit as AvroUnit, Timestamp, Value,
};

use super::decimal::DecimalColumn;
use super::{
    LAST_NANO_OF_DAY, MAX_DAYS, MAX_MICROS, MIN_DAYS, MIN_MICROS, MIN_NANOS, NANOS_PER_DAY, UTC,
};

/// One column being built. Variants follow the Arrow type; each appends the [`Value`]
/// variants of the Avro types that map to it.
pub(super) enum Column {
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
pub(super) type Fit = std::result::Result<(), String>;

impl Column {
    /// Plan the column for an Avro type. `visiting` holds the records being planned, to refuse
    /// recursive ones (an Arrow type is a finite tree).
    pub(super) fn new(
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
                        return Err(format!("record {} contains itself", record.name()))
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
                            name: record.name().clone(),
                            names: record.field_names().clone(),
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
    pub(super) fn for_key(key: &Value, rows: usize) -> Option<Column> {
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
    pub(super) fn logical(logical: Logical, fixed_size: Option<usize>, rows: usize) -> Column {
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
    pub(super) fn union(
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
    pub(super) fn data_type(&self) -> DataType {
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
    pub(super) fn len(&self) -> usize {
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
    pub(super) fn accepts(&self, value: &Value) -> bool {
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
            (Column::Struct { name, .. }, Value::Record(record)) => record.name() == name,
            (Column::OneOf { branches, .. }, value) => branches.iter().any(|b| b.accepts(value)),
            _ => false,
        }
    }

    pub(super) fn append_null(&mut self) {
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

    pub(super) fn append(&mut self, value: &Value) -> Fit {
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
                if Arc::ptr_eq(record.names(), names) {
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
    pub(super) fn finish_field(self, name: &str) -> std::result::Result<(Field, ArrayRef), String> {
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
    pub(super) fn finish(self) -> std::result::Result<ArrayRef, String> {
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
                let values = super::dictionary::shared_values(symbols.iter().map(|s| &**s));
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(keys.finish(), values).map_err(arrow)?,
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

pub(super) fn offsets_with_capacity(rows: usize) -> Vec<i32> {
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0);
    offsets
}

/// An end offset of a list or map, which Arrow's `list` keeps in 32 bits.
pub(super) fn offset(len: usize) -> std::result::Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("more than {} list items in a batch", i32::MAX))
}

pub(super) fn dictionary(keys: DataType) -> DataType {
    DataType::Dictionary(Box::new(keys), Box::new(DataType::Utf8))
}

pub(super) fn map_fields(values: DataType) -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", values, true),
    ])
}

pub(super) fn struct_array<'a>(
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
pub(super) fn branch_name(schema: &Schema, node: &Node) -> String {
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
pub(super) fn kind(value: &Value) -> &'static str {
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

pub(super) fn out_of_range(timestamp: &Timestamp, unit: &str) -> String {
    format!(
        "timestamp {} s from 1970-01-01 does not fit 64 bits of {unit}",
        timestamp.seconds
    )
}

/// Microseconds since 1970 (of the instant for a zoned timestamp, of the wall clock for a
/// local one), dropping finer digits toward the past as Python does.
pub(super) fn micros(timestamp: &Timestamp) -> Option<i64> {
    timestamp
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(timestamp.nanos / 1000))
}

pub(super) fn nanos(timestamp: &Timestamp) -> Option<i64> {
    timestamp
        .seconds
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(timestamp.nanos))
}

/// Microseconds since midnight, in UTC for a time with a zone; `24:00` is the day's last
/// microsecond, as in Python.
pub(super) fn time_micros(time: &Time) -> i64 {
    let nanos = time.nanos.clamp(0, LAST_NANO_OF_DAY);
    let utc = match time.offset {
        Some(offset) => (nanos - i64::from(offset) * 1_000_000_000).rem_euclid(NANOS_PER_DAY),
        None => nanos,
    };
    utc / 1000
}
