//! The layout of a batch: which record its row columns come from (the row record of a
//! Debezium envelope, or the value record of a flat row), and each change's row appended to them.

use std::sync::Arc;

use crate::avro::{Node, RecordDef, Schema, Value};
use crate::change::{Change, Op};
use crate::error::Result;

use super::column::Column;
use super::column_error;
use super::metadata::NameLists;

/// What a batch's columns are built from.
pub(super) struct Layout<'a> {
    /// The value schema and its id.
    pub(super) schema: Option<(u32, &'a Schema)>,
    /// The row's shape.
    pub(super) row: RowShape<'a>,
    /// The Debezium envelope's `source` record, when the rows come from envelopes.
    pub(super) source: Option<&'a RecordDef>,
}

pub(super) enum RowShape<'a> {
    /// A record: one column per field.
    Record(&'a RecordDef),
    /// A value that is not a record: one column, `value`.
    Value(&'a Node),
    /// No schema known (only tombstones of a topic never seen with a value).
    Nothing,
}

impl<'a> Layout<'a> {
    pub(super) fn of(changes: &'a [Change]) -> Layout<'a> {
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
        let rows_are_roots = changes
            .iter()
            .find_map(row_record)
            .is_some_and(|record| root.is_some_and(|root| std::ptr::eq(record.shape, root.shape)));
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

    pub(super) fn row_columns(&self, rows: usize) -> Result<Vec<(Arc<str>, Column)>> {
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
                .field_names()
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
    pub(super) fn tracks_unavailable(&self) -> bool {
        matches!(self.row, RowShape::Record(record) if record.is_kafka_connect())
    }
}

/// The row record and the source record of a Debezium envelope schema (for a logical
/// decoding message, its `message` record: `prefix` and `content`).
pub(super) fn envelope_parts<'a>(
    schema: &'a Schema,
    root: &'a RecordDef,
) -> Option<(&'a RecordDef, Option<&'a RecordDef>)> {
    let field = |name: &str| {
        let index = root.field_names().iter().position(|n| &**n == name)?;
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
pub(super) fn row_value(change: &Change) -> Option<&Value> {
    match change.op {
        Op::Delete => change.before.as_ref(),
        _ => change.after.as_ref(),
    }
}

pub(super) fn row_record(change: &Change) -> Option<&crate::avro::Record> {
    match row_value(change)? {
        Value::Record(record) => Some(record),
        _ => None,
    }
}

/// Append one change's row to the row columns (and the names of its unavailable columns).
pub(super) fn fill_row(
    layout: &Layout<'_>,
    columns: &mut [(Arc<str>, Column)],
    unavailable: Option<&mut NameLists>,
    change: &Change,
) -> Result<()> {
    let (row, own) = match row_value(change) {
        Some(row) => (Some(row), true),
        // A delete without the old row (a tombstone): the key's fields name the row.
        None if change.op == Op::Delete => (change.key.as_ref(), false),
        None => (None, false),
    };
    let mut unavailable = unavailable;
    fill_row_with(&layout.row, columns, unavailable.as_deref_mut(), row, own)?;
    if let Some(lists) = unavailable {
        lists.end_row();
    }
    Ok(())
}

/// Append `row` to the row columns: a change's own row (`own`), or the key of a delete
/// without one, whose fields fill the columns of the same names. The caller ends the row of
/// the unavailable lists.
pub(super) fn fill_row_with(
    shape: &RowShape<'_>,
    columns: &mut [(Arc<str>, Column)],
    mut unavailable: Option<&mut NameLists>,
    row: Option<&Value>,
    own: bool,
) -> Result<()> {
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
    match (row, shape) {
        (Some(Value::Record(record)), RowShape::Record(def))
            if std::ptr::eq(record.shape, def.shape) =>
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
        (Some(value), RowShape::Value(_)) if own => {
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
    Ok(())
}
