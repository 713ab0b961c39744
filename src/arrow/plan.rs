//! Record batches read straight from message bodies. A [`BodyPlan`], compiled once per value
//! schema and envelope, reads each Avro body with the decoder's [`Reader`] into the batch's
//! column builders, with no [`Change`](crate::change::Change) or [`Value`] tree in between:
//! the row record's fields (of the flat row, or of the envelope's `after`, or `before` for a
//! delete), the `source` fields the metadata columns use, `op`, and the key where a column
//! needs it. Everything else is checked as the decoder checks it ([`Reader::skip`]) and
//! dropped, so a body the decoder rejects fails here too.
//!
//! Plain Avro types and `bytes` decimals are written into their builders directly. Logical and semantic types,
//! nested records, collections and unions Arrow keeps apart are decoded one field at a time
//! into a [`Value`] and appended with [`Column::append`], so their rules stay in one place.
//!
//! The batch equals [`super::record_batch`] of the decoded changes. A message that names
//! another table than the batch's (`source.table`, a flat row's `__table` or record name)
//! ends the batch before it ([`Read::OtherTable`]): the caller reads the bodies before it
//! again as one batch. Where the plan cannot follow (a schema it does not plan, an envelope
//! that puts its row elsewhere) it answers [`Read::NotPlanned`], and on a body that fails it
//! answers the error at that message: in both cases the caller decodes that batch's messages
//! into changes as before, which applies the decode-error policy to the failing message
//! alone.

use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::avro::decode::Reader;
use crate::avro::{
    check_unscaled, is_unavailable_placeholder, Logical, Named, Node, RecordDef, Schema, Value,
    UNAVAILABLE_PLACEHOLDER,
};
use crate::change::{table_from_record_name, Op, Position};
use crate::error::{Error, Result};

use super::column::Column;
use super::layout::{fill_row_with, RowShape};
use super::metadata::{Metadata, NameLists, SourceLongs};
use super::{assemble, column_error};

/// One message of a batch, its framing split off but its bodies not decoded.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    /// Where the message was read.
    pub position: &'a Position,
    /// The key's writer schema and Avro body; `None` for a null key.
    pub key: Option<(&'a Schema, &'a [u8])>,
    /// The value's Avro body, written with the plan's schema; `None` for a tombstone (the
    /// delete of its key).
    pub value: Option<&'a [u8]>,
}

/// What reading a batch's bodies gave.
#[derive(Debug)]
pub enum Read {
    /// The batch of all the bodies.
    Batch(RecordBatch),
    /// The body at `index` names another table, `table`: the bodies before it are one batch,
    /// and it starts the next.
    OtherTable {
        /// The body's index.
        index: usize,
        /// The table it names.
        table: String,
    },
    /// The plan does not follow these bodies: build the batch from decoded changes.
    NotPlanned,
}

/// What reading one body gave.
enum Appended {
    /// The row is in the columns, or with `needs_key` still to be filled from the key (a
    /// delete without its old row).
    Row {
        needs_key: bool,
    },
    OtherTable(String),
    NotPlanned,
}

/// How one row field is read into its column.
#[derive(Debug)]
enum Cell {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Enum,
    /// A `bytes` decimal of this scale.
    Decimal {
        scale: i32,
    },
    /// A logical type read from an `int` or `long` (dates, times, timestamps, durations),
    /// turned into its value by the decoder's rules and appended.
    Number {
        logical: Logical,
        long: bool,
    },
    /// A union of `null` and one other type: the column of that type.
    Nullable {
        null: i64,
        inner: Box<Cell>,
    },
    /// Anything else: decoded into a [`Value`] and appended.
    Value(Node),
}

impl Cell {
    fn of(schema: &Schema, node: &Node) -> Cell {
        match node {
            Node::Null => Cell::Null,
            Node::Boolean => Cell::Boolean,
            Node::Int => Cell::Int,
            Node::Long => Cell::Long,
            Node::Float => Cell::Float,
            Node::Double => Cell::Double,
            Node::Bytes => Cell::Bytes,
            Node::String => Cell::String,
            Node::Named(index) if matches!(schema.named.get(*index), Some(Named::Enum(_))) => {
                Cell::Enum
            }
            Node::Logical(logical) => match (&logical.base, logical.logical) {
                (Node::Bytes, Logical::Decimal { scale }) => Cell::Decimal { scale },
                (Node::Int | Node::Long, logical_type) => Cell::Number {
                    logical: logical_type,
                    long: logical.base == Node::Long,
                },
                _ => Cell::Value(node.clone()),
            },
            Node::Union(branches) if branches.len() == 2 => {
                let null = branches.iter().position(|b| *b == Node::Null);
                match null {
                    Some(null) if !matches!(branches[1 - null], Node::Null | Node::Union(_)) => {
                        Cell::Nullable {
                            null: null as i64,
                            inner: Box::new(Cell::of(schema, &branches[1 - null])),
                        }
                    }
                    _ => Cell::Value(node.clone()),
                }
            }
            _ => Cell::Value(node.clone()),
        }
    }
}

/// What one field of a Debezium envelope is read for.
#[derive(Debug)]
enum Part {
    Before(Node),
    After(Node),
    Source(Node),
    Op(Node),
    Skip(Node),
}

/// A compiled reading of one value schema's bodies into record batches.
#[derive(Debug)]
pub struct BodyPlan {
    id: u32,
    schema: Arc<Schema>,
    /// The row record's index among the schema's named types, and one cell per field.
    row: usize,
    cells: Vec<Cell>,
    /// For a Debezium envelope: one part per field of the envelope, and the `source` record.
    envelope: Option<Vec<Part>>,
    source: Option<usize>,
    /// For a flat row: the fields of the unwrap SMT that set the op and the table (`__op`,
    /// `__deleted`, `__table`), and the table its record name gives.
    op_field: Option<usize>,
    deleted_field: Option<usize>,
    table_field: Option<usize>,
    row_table: Option<String>,
}

/// The op and table fields of a flat row, as read.
#[derive(Default)]
struct RowFlags {
    op: Option<Value>,
    deleted: Option<Value>,
    table: Option<Value>,
}

/// The record a node refers to (looking through a union with `null`), by index.
fn record_index(schema: &Schema, node: &Node) -> Option<usize> {
    match node {
        Node::Named(index) => match schema.named.get(*index)? {
            Named::Record(record) if record.logical.is_none() => Some(*index),
            _ => None,
        },
        Node::Union(branches) => {
            let mut records = branches.iter().filter(|b| **b != Node::Null);
            let record = record_index(schema, records.next()?)?;
            records.next().is_none().then_some(record)
        }
        _ => None,
    }
}

impl BodyPlan {
    /// The plan for values of schema `id`, read as Debezium envelopes or as flat rows (as the
    /// decoder's format detection decided); `None` for a schema it does not plan, whose
    /// batches are built from decoded changes.
    pub fn new(id: u32, schema: Arc<Schema>, debezium: bool) -> Option<BodyPlan> {
        let root = match &schema.root {
            Node::Named(index) => record_index(&schema, &schema.root).map(|_| *index)?,
            _ => return None,
        };
        let root_def = record(&schema, root);
        let field = |name: &str| root_def.field_names().iter().position(|n| &**n == name);
        let (row, envelope, source) = if debezium {
            let after = &root_def.fields[field("after")?];
            let before = &root_def.fields[field("before")?];
            let row = record_index(&schema, after)?;
            if record_index(&schema, before) != Some(row) {
                return None;
            }
            let source_node = field("source").map(|i| &root_def.fields[i]);
            let source = source_node.and_then(|node| record_index(&schema, node));
            // The batch's source columns come from any record in `source`: one the plan does
            // not read (in a union of several, or with a meaning of its own) is left to the
            // decoder.
            if source.is_none() && source_node.is_some_and(|node| schema.record_of(node).is_some())
            {
                return None;
            }
            // The table a message names is text: anything else is left to the decoder.
            if let Some(source) = source {
                let def = record(&schema, source);
                let table = def.field_names().iter().position(|n| &**n == "table");
                if table.is_some_and(|i| def.fields[i] != Node::String) {
                    return None;
                }
            }
            let parts = root_def
                .field_names()
                .iter()
                .zip(&root_def.fields)
                .map(|(name, node)| match &**name {
                    "before" => Part::Before(node.clone()),
                    "after" => Part::After(node.clone()),
                    "source" if source.is_some() => Part::Source(node.clone()),
                    "op" => Part::Op(node.clone()),
                    _ => Part::Skip(node.clone()),
                })
                .collect::<Vec<_>>();
            if !parts.iter().any(|p| matches!(p, Part::Op(_))) {
                return None;
            }
            (row, Some(parts), source)
        } else {
            (root, None, None)
        };
        let row_def = record(&schema, row);
        // A row no Arrow type fits is reported by the batch from changes.
        for node in &row_def.fields {
            Column::new(&schema, node, 0, &mut Vec::new()).ok()?;
        }
        let cells = row_def
            .fields
            .iter()
            .map(|n| Cell::of(&schema, n))
            .collect();
        let (op_field, deleted_field, table_field, row_table) = match envelope {
            Some(_) => (None, None, None, None),
            None => (
                field("__op"),
                field("__deleted"),
                field("__table"),
                Some(table_from_record_name(
                    root_def.name(),
                    root_def.connect_name.as_deref(),
                )),
            ),
        };
        Some(BodyPlan {
            id,
            cells,
            row,
            envelope,
            source,
            op_field,
            deleted_field,
            table_field,
            row_table,
            schema,
        })
    }

    /// The batch of these messages of table `table` (the table of the stream's previous
    /// message of their topic, for messages that name none), or where it must end before a
    /// message of another table, or that the plan cannot follow them; an error is a message
    /// that failed, located at it.
    pub fn record_batch(&self, table: &str, bodies: &[Body<'_>]) -> Result<Read> {
        let rows = bodies.len();
        let schema = &*self.schema;
        let row_def = record(schema, self.row);
        let mut columns = Vec::with_capacity(row_def.fields.len());
        for (name, node) in row_def.field_names().iter().zip(&row_def.fields) {
            match Column::new(schema, node, rows, &mut Vec::new()) {
                Ok(column) => columns.push((name.clone(), column)),
                Err(_) => return Ok(Read::NotPlanned),
            }
        }
        let mut unavailable = row_def.is_kafka_connect().then(|| NameLists::new(rows));
        let mut meta = Metadata::new(rows, self.source.map(|i| record(schema, i)));
        // As from changes: the first key decides whether keys have a column.
        let mut key_column = None;
        if let Some((position, (key_schema, key))) =
            bodies.iter().find_map(|b| Some((b.position, b.key?)))
        {
            let key = key_schema
                .decode(key)
                .map_err(|e| e.at(position.location()))?;
            key_column = Column::for_key(&key, rows);
        }
        for (index, body) in bodies.iter().enumerate() {
            let at = || body.position.location();
            let appended = self
                .append(table, body, &mut columns, unavailable.as_mut(), &mut meta)
                .map_err(|e| e.at(at()))?;
            let needs_key = match appended {
                Appended::Row { needs_key } => needs_key,
                Appended::OtherTable(table) => return Ok(Read::OtherTable { index, table }),
                Appended::NotPlanned => return Ok(Read::NotPlanned),
            };
            let key = match body.key {
                Some((key_schema, key)) if needs_key || key_column.is_some() => {
                    Some(key_schema.decode(key).map_err(|e| e.at(at()))?)
                }
                Some((key_schema, key)) => {
                    let mut reader = Reader::new(key);
                    reader
                        .skip(key_schema, &key_schema.root, 0)
                        .and_then(|()| reader.finish())
                        .map_err(|e| e.at(at()))?;
                    None
                }
                None => None,
            };
            if needs_key {
                fill_row_with(
                    &RowShape::Record(row_def),
                    &mut columns,
                    unavailable.as_mut(),
                    key.as_ref(),
                    false,
                )
                .map_err(|e| e.at(at()))?;
            }
            if let Some(lists) = &mut unavailable {
                lists.end_row();
            }
            if let Some(column) = &mut key_column {
                match &key {
                    Some(value) => column
                        .append(value)
                        .map_err(|reason| column_error("_key", reason).at(at()))?,
                    None => column.append_null(),
                }
            }
        }
        assemble(
            columns,
            meta,
            key_column,
            unavailable,
            Some(table),
            Some(self.id),
        )
        .map(Read::Batch)
    }

    /// Read one message's value into the row and metadata columns, unless it names a table
    /// other than `table` (a batch holds one table).
    fn append(
        &self,
        table: &str,
        body: &Body<'_>,
        columns: &mut [(Arc<str>, Column)],
        mut unavailable: Option<&mut NameLists>,
        meta: &mut Metadata,
    ) -> Result<Appended> {
        let Some(value) = body.value else {
            meta.append_parts(Op::Delete, body.position, &SourceLongs::default());
            return Ok(Appended::Row { needs_key: true });
        };
        let schema = &*self.schema;
        let mut reader = Reader::new(value);
        let Some(parts) = &self.envelope else {
            let mut flags = RowFlags::default();
            self.write_row(&mut reader, columns, unavailable, 1, &mut flags)?;
            reader.finish()?;
            let op = self.row_op(&flags)?;
            let named = match &flags.table {
                Some(Value::String(named)) => Some(named.as_str()),
                _ => self.row_table.as_deref(),
            };
            if let Some(named) = named.filter(|named| *named != table) {
                return Ok(Appended::OtherTable(named.to_owned()));
            }
            meta.append_parts(op, body.position, &SourceLongs::default());
            return Ok(Appended::Row { needs_key: false });
        };
        let mut before = None;
        let mut after_written = false;
        let mut source = SourceLongs::default();
        let mut op = None;
        let mut named = "";
        for part in parts {
            match part {
                Part::Before(node) => {
                    if self.row_follows(&mut reader, node)? {
                        let start = reader.position();
                        reader.skip(schema, &Node::Named(self.row), 2)?;
                        before = Some(start..reader.position());
                    }
                }
                Part::After(node) => {
                    if self.row_follows(&mut reader, node)? {
                        let flags = &mut RowFlags::default();
                        self.write_row(&mut reader, columns, unavailable.as_deref_mut(), 3, flags)?;
                        after_written = true;
                    }
                }
                Part::Source(node) => {
                    let record_node = match node {
                        Node::Union(branches) => reader.branch(branches)?,
                        node => node,
                    };
                    if let Some(index) = self.source.filter(|_| *record_node != Node::Null) {
                        let def = record(schema, index);
                        for (name, field) in def.field_names().iter().zip(&def.fields) {
                            if &**name == "table" {
                                named = reader.text()?;
                                // Debezium's placeholder names no table, as in the decoder.
                                if def.is_kafka_connect() && named == UNAVAILABLE_PLACEHOLDER {
                                    named = "";
                                }
                            } else if SourceLongs::is_kept(name) {
                                source.set(name, &reader.value(schema, field, 3)?);
                            } else {
                                reader.skip(schema, field, 3)?;
                            }
                        }
                    }
                }
                Part::Op(node) => {
                    // Read in place when it is plain text (it is, in Debezium's envelopes).
                    // (Debezium's placeholder here is an unknown op either way.)
                    let decoded;
                    let code = match node {
                        Node::String => reader.text()?,
                        _ => {
                            decoded = reader.value(schema, node, 1)?;
                            decoded.as_str().unwrap_or("")
                        }
                    };
                    op =
                        Some(Op::from_debezium(code).ok_or_else(|| {
                            Error::decode(format!("unknown Debezium op {code:?}"))
                        })?);
                }
                Part::Skip(node) => reader.skip(schema, node, 1)?,
            }
        }
        reader.finish()?;
        // An empty table is none: the message is of the topic's previous table.
        if !named.is_empty() && named != table {
            return Ok(Appended::OtherTable(named.to_owned()));
        }
        let Some(op) = op else {
            return Ok(Appended::NotPlanned);
        };
        let needs_key = match op {
            // A message's row is its `message` field; `after` is not read.
            Op::Message => return Ok(Appended::NotPlanned),
            Op::Delete if after_written => return Ok(Appended::NotPlanned),
            Op::Delete => match before {
                Some(range) => {
                    let mut row = Reader::new(&value[range]);
                    let flags = &mut RowFlags::default();
                    self.write_row(&mut row, columns, unavailable, 2, flags)?;
                    false
                }
                None => true,
            },
            _ if after_written => false,
            _ => {
                fill_row_with(
                    &RowShape::Record(record(schema, self.row)),
                    columns,
                    unavailable,
                    None,
                    false,
                )?;
                false
            }
        };
        meta.append_parts(op, body.position, &source);
        Ok(Appended::Row { needs_key })
    }

    /// Read a row field's union branch: whether the row record follows (or `null` does).
    fn row_follows(&self, reader: &mut Reader<'_>, node: &Node) -> Result<bool> {
        Ok(match node {
            Node::Union(branches) => *reader.branch(branches)? != Node::Null,
            _ => true,
        })
    }

    /// Read the row record's fields (at nesting `depth`) into the row columns.
    fn write_row(
        &self,
        reader: &mut Reader<'_>,
        columns: &mut [(Arc<str>, Column)],
        mut unavailable: Option<&mut NameLists>,
        depth: usize,
        flags: &mut RowFlags,
    ) -> Result<()> {
        let schema = &*self.schema;
        let connect = record(schema, self.row).is_kafka_connect();
        for (index, (cell, (name, column))) in self.cells.iter().zip(columns).enumerate() {
            let watched =
                [self.op_field, self.deleted_field, self.table_field].contains(&Some(index));
            let missing = if watched {
                let node = &record(schema, self.row).fields[index];
                let mut value = reader.value(schema, node, depth)?;
                if connect && is_unavailable_placeholder(&value) {
                    value = Value::Unavailable;
                }
                column
                    .append(&value)
                    .map_err(|reason| column_error(name, reason))?;
                let missing = value == Value::Unavailable;
                if Some(index) == self.op_field {
                    flags.op = Some(value);
                } else if Some(index) == self.deleted_field {
                    flags.deleted = Some(value);
                } else {
                    flags.table = Some(value);
                }
                missing
            } else {
                write_cell(schema, cell, reader, column, depth, connect)
                    .map_err(|miss| miss.into_error(name))?
            };
            if missing {
                if let Some(lists) = unavailable.as_deref_mut() {
                    lists.push(name);
                }
            }
        }
        Ok(())
    }

    /// The op of a flat row, from the unwrap SMT's fields (as `change::row` reads them).
    fn row_op(&self, flags: &RowFlags) -> Result<Op> {
        let mut op = Op::Upsert;
        if let Some(code) = flags.op.as_ref().and_then(Value::as_str) {
            op = Op::from_debezium(code)
                .ok_or_else(|| Error::decode(format!("unknown Debezium __op {code:?}")))?;
        }
        let deleted = match &flags.deleted {
            Some(Value::String(flag)) => flag == "true",
            Some(Value::Boolean(flag)) => *flag,
            _ => false,
        };
        Ok(if deleted { Op::Delete } else { op })
    }
}

/// Why a cell could not be written: the body (a decode error) or the column (a value that
/// fits no Arrow type, named with the column).
enum Miss {
    Decode(Error),
    Column(String),
}

impl From<Error> for Miss {
    fn from(error: Error) -> Miss {
        Miss::Decode(error)
    }
}

impl Miss {
    fn into_error(self, name: &str) -> Error {
        match self {
            Miss::Decode(error) => error,
            Miss::Column(reason) => column_error(name, reason),
        }
    }
}

/// Read one field into its column; true when it held Debezium's placeholder for an
/// unavailable value (a null in the column).
fn write_cell(
    schema: &Schema,
    cell: &Cell,
    reader: &mut Reader<'_>,
    column: &mut Column,
    depth: usize,
    connect: bool,
) -> std::result::Result<bool, Miss> {
    match (cell, column) {
        (Cell::Null, column) => column.append_null(),
        (Cell::Boolean, Column::Boolean(b)) => b.append_value(reader.boolean()?),
        (Cell::Int, Column::Int32(b)) => b.append_value(reader.int()?),
        (Cell::Long, Column::Int64(b)) => b.append_value(reader.long()?),
        (Cell::Float, Column::Float32(b)) => b.append_value(reader.float()?),
        (Cell::Double, Column::Float64(b)) => b.append_value(reader.double()?),
        (Cell::Bytes, Column::Binary(b)) => {
            let length = reader.length("bytes")?;
            let bytes = reader.take(length, "bytes")?;
            if connect && bytes == UNAVAILABLE_PLACEHOLDER.as_bytes() {
                b.append_null();
                return Ok(true);
            }
            b.append_value(bytes);
        }
        (Cell::String, Column::Utf8(b)) => {
            let text = reader.text()?;
            if connect && text == UNAVAILABLE_PLACEHOLDER {
                b.append_null();
                return Ok(true);
            }
            b.append_value(text);
        }
        (Cell::Enum, Column::Enum { symbols, keys }) => {
            let index = reader.long()?;
            match usize::try_from(index).ok().filter(|i| *i < symbols.len()) {
                Some(index) => keys.append_value(index as i32),
                None => {
                    return Err(Miss::Decode(Error::decode(format!(
                        "enum has no symbol {index}"
                    ))))
                }
            }
        }
        (Cell::Decimal { scale }, Column::Decimal(decimals)) => {
            let length = reader.length("bytes")?;
            let unscaled = reader.take(length, "bytes")?;
            check_unscaled(unscaled)?;
            decimals.append_unscaled(unscaled, *scale);
        }
        (Cell::Number { logical, long }, column) => {
            let raw = match long {
                true => Value::Long(reader.long()?),
                false => Value::Int(reader.int()?),
            };
            column.append(&logical.apply(raw)?).map_err(Miss::Column)?;
        }
        (Cell::Nullable { null, inner }, column) => {
            let branch = reader.long()?;
            if branch == *null {
                column.append_null();
            } else if branch == 1 - *null {
                return write_cell(schema, inner, reader, column, depth + 1, connect);
            } else {
                return Err(Miss::Decode(Error::decode(format!(
                    "union branch {branch} does not exist (the union has 2)"
                ))));
            }
        }
        (Cell::Value(node), column) => {
            let mut value = reader.value(schema, node, depth)?;
            if connect && is_unavailable_placeholder(&value) {
                value = Value::Unavailable;
            }
            column.append(&value).map_err(Miss::Column)?;
            return Ok(value == Value::Unavailable);
        }
        (cell, column) => {
            return Err(Miss::Decode(Error::decode(format!(
                "the plan reads {cell:?} into a {} column",
                column.data_type()
            ))))
        }
    }
    Ok(false)
}

/// The record definition at `index` (the plan checked it is one).
fn record(schema: &Schema, index: usize) -> &RecordDef {
    match &schema.named[index] {
        Named::Record(record) => record,
        _ => unreachable!("the plan holds record indexes only"),
    }
}
