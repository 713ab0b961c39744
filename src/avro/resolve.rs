//! Avro schema resolution: reading data written with one schema (the writer's, from the
//! registry) as values of another (the reader's, given by the application).
//!
//! [`Resolved::new`] matches the two schemas once, following the "Schema Resolution" section
//! of the Avro specification, and compiles the result into a plan: per type, how to read the
//! writer's encoding and what value of the reader's type to make of it. [`Resolved::decode`]
//! then only follows the plan; no schema is compared per message.
//!
//! The rules:
//!
//! - Records match by unqualified name or a reader alias. Reader fields take the writer field
//!   of the same name, else one named by a reader field alias, else their default (no default
//!   is an error naming the field). Writer fields the reader lacks are read and dropped. Values
//!   come out in the reader's field order, under the reader's record name.
//! - Promotions: `int` to `long`, `float` or `double`; `long` to `float` or `double`; `float`
//!   to `double`; `string` to `bytes` and `bytes` to `string` (which must then be UTF-8).
//! - Enums match by name or alias; a writer symbol the reader lacks becomes the reader's enum
//!   `default`, or is an error when that symbol is actually read.
//! - Fixed types match by name or alias and must have the same size.
//! - Arrays and maps resolve their items and values.
//! - A writer union resolves each branch against the reader type; a branch that does not
//!   resolve is an error only when a message uses it (all branches failing is an error at
//!   once). A reader union, given a writer non-union, takes the first branch of the writer's
//!   type (same primitive, or named type of matching name, or array, or map), else the first
//!   branch the writer's type promotes to.
//! - Logical types are the reader's: the writer's annotation does not change its encoding, and
//!   the reader's is applied to the resolved value (an `int` read as
//!   `{"type": "int", "logicalType": "date"}` is a [`Value::Date`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::decode::Reader;
use super::logical::{is_unavailable_placeholder, Logical};
use super::schema::{describe, FieldDefault, Named, Node, RecordDef, Schema};
use super::value::{Record, RecordShape, Value};
use crate::error::{Error, Result};

/// Decodes bodies written with a writer schema into values shaped by a reader schema.
#[derive(Debug)]
pub struct Resolved {
    reader: Arc<Schema>,
    /// The writer schema, for skipping the fields the reader does not have.
    writer: Schema,
    root: Plan,
    /// Record plans, by writer and reader record pair; [`Plan::Record`] indexes this, so
    /// recursive records cost one entry.
    records: Vec<RecordSlot>,
}

impl Resolved {
    /// Resolve `writer` against `reader` once. Schemas that cannot be resolved are an
    /// [`Error::Decode`] naming the path of the offending field in the reader schema.
    pub fn new(writer: &Schema, reader: Arc<Schema>) -> Result<Resolved> {
        let mut compiler = Compiler {
            writer,
            reader: &reader,
            records: Vec::new(),
            memo: HashMap::new(),
        };
        let path = root_path(&reader);
        let root = compiler
            .plan(&writer.root, &reader.root, &path)
            .map_err(|mismatch| Error::decode(mismatch.message()))?;
        let records = compiler.records;
        Ok(Resolved {
            reader,
            writer: writer.clone(),
            root,
            records,
        })
    }

    /// Decode one Avro binary body (no framing) written with the writer schema into a value of
    /// the reader schema. Every byte must be used.
    pub fn decode(&self, body: &[u8]) -> Result<Value> {
        let mut reader = Reader::new(body);
        let value = self.value(&mut reader, &self.root, 0)?;
        reader.finish()?;
        Ok(value)
    }

    /// The reader schema: the shape of every decoded value.
    pub fn reader(&self) -> &Arc<Schema> {
        &self.reader
    }

    fn value(&self, reader: &mut Reader<'_>, plan: &Plan, depth: usize) -> Result<Value> {
        Reader::check_depth(depth)?;
        Ok(match plan {
            Plan::Null => Value::Null,
            Plan::Boolean => Value::Boolean(reader.boolean()?),
            Plan::Int => Value::Int(reader.int()?),
            Plan::Long => Value::Long(reader.long()?),
            Plan::Float => Value::Float(reader.float()?),
            Plan::Double => Value::Double(reader.double()?),
            Plan::Bytes => Value::Bytes(reader.bytes()?),
            Plan::String => Value::String(reader.text()?.into()),
            Plan::Promote(promotion) => match promotion {
                Promotion::IntToLong => Value::Long(i64::from(reader.int()?)),
                Promotion::IntToFloat => Value::Float(reader.int()? as f32),
                Promotion::IntToDouble => Value::Double(f64::from(reader.int()?)),
                Promotion::LongToFloat => Value::Float(reader.long()? as f32),
                Promotion::LongToDouble => Value::Double(reader.long()? as f64),
                Promotion::FloatToDouble => Value::Double(f64::from(reader.float()?)),
                Promotion::StringToBytes => Value::Bytes(reader.bytes()?),
                Promotion::BytesToString => Value::String(reader.text()?.into()),
            },
            Plan::Array {
                items,
                items_can_be_empty,
            } => {
                let mut values = Vec::new();
                loop {
                    let count = reader.block_count(*items_can_be_empty)?;
                    if count == 0 {
                        break;
                    }
                    values.reserve(count);
                    for _ in 0..count {
                        values.push(self.value(reader, items, depth + 1)?);
                    }
                }
                Value::Array(values)
            }
            Plan::Map(values_plan) => {
                let mut entries = Vec::new();
                loop {
                    let count = reader.block_count(false)?;
                    if count == 0 {
                        break;
                    }
                    entries.reserve(count);
                    for _ in 0..count {
                        let key = reader.string()?;
                        let value = self.value(reader, values_plan, depth + 1)?;
                        entries.push((key, value));
                    }
                }
                Value::Map(entries)
            }
            Plan::Fixed(size) => Value::Fixed(reader.take(*size, "a fixed")?.to_vec()),
            Plan::Enum(plan) => {
                let index = reader.long()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| plan.symbols.get(i))
                    .ok_or_else(|| {
                        Error::decode(format!("enum {} has no symbol {index}", plan.writer_name))
                    })?;
                match symbol {
                    Symbol::Reader(symbol) => Value::Enum(symbol.clone()),
                    Symbol::Unknown(symbol) => {
                        return Err(Error::decode(format!(
                            "the writer's enum symbol {symbol:?} at {} is not a symbol of the \
                             reader's enum {}, which has no default",
                            plan.path, plan.reader_name
                        )))
                    }
                }
            }
            Plan::Record(slot) => match &self.records[*slot] {
                RecordSlot::Ready(record) => self.record(reader, record, depth)?,
                RecordSlot::Failed(mismatch) => return Err(Error::decode(mismatch.message())),
                RecordSlot::Pending => {
                    return Err(Error::decode(
                        "internal error: a record plan was never finished",
                    ))
                }
            },
            Plan::WriterUnion(branches) => {
                let index = reader.long()?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| {
                        Error::decode(format!(
                            "union branch {index} does not exist (the union has {})",
                            branches.len()
                        ))
                    })?;
                self.value(reader, branch, depth + 1)?
            }
            Plan::Logical(logical, base) => {
                let raw = self.value(reader, base, depth + 1)?;
                logical.apply(raw)?
            }
            Plan::Fail(mismatch) => return Err(Error::decode(mismatch.message())),
        })
    }

    fn record(&self, reader: &mut Reader<'_>, plan: &RecordPlan, depth: usize) -> Result<Value> {
        let mut values = vec![Value::Null; plan.shape.names.len()];
        for step in &plan.steps {
            match step {
                Step::Read { to, plan } => values[*to] = self.value(reader, plan, depth + 1)?,
                Step::Skip(node) => self.skip(reader, node, depth + 1)?,
            }
        }
        for (to, default) in &plan.defaults {
            values[*to] = default.clone();
        }
        // As Schema::decode does for a record Kafka Connect wrote.
        if plan.kafka_connect {
            for value in values.iter_mut() {
                if is_unavailable_placeholder(value) {
                    *value = Value::Unavailable;
                }
            }
        }
        let value = Value::Record(Record {
            shape: plan.shape,
            values,
        });
        Ok(match &plan.logical {
            Some(logical) => logical.apply(value)?,
            None => value,
        })
    }

    /// Read past a value of a writer type the reader does not want, with the same checks as
    /// reading it (lengths within the message, depth, bounded item counts).
    fn skip(&self, reader: &mut Reader<'_>, node: &Node, depth: usize) -> Result<()> {
        Reader::check_depth(depth)?;
        match node {
            Node::Null => {}
            Node::Boolean => {
                reader.boolean()?;
            }
            Node::Int => {
                reader.int()?;
            }
            Node::Long => {
                reader.long()?;
            }
            Node::Float => {
                reader.float()?;
            }
            Node::Double => {
                reader.double()?;
            }
            Node::Bytes | Node::String => {
                let length = reader.length("bytes")?;
                reader.take(length, "bytes")?;
            }
            Node::Array {
                items,
                items_can_be_empty,
            } => loop {
                let count = reader.block_count(*items_can_be_empty)?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.skip(reader, items, depth + 1)?;
                }
            },
            Node::Map(values) => loop {
                let count = reader.block_count(false)?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    let length = reader.length("string")?;
                    reader.take(length, "string")?;
                    self.skip(reader, values, depth + 1)?;
                }
            },
            Node::Union(branches) => {
                let index = reader.long()?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| {
                        Error::decode(format!(
                            "union branch {index} does not exist (the union has {})",
                            branches.len()
                        ))
                    })?;
                self.skip(reader, branch, depth + 1)?;
            }
            Node::Logical(logical) => self.skip(reader, &logical.base, depth + 1)?,
            Node::Named(index) => match &self.writer.named[*index] {
                Named::Record(record) => {
                    for field in &record.fields {
                        self.skip(reader, field, depth + 1)?;
                    }
                }
                Named::Enum(_) => {
                    reader.long()?;
                }
                Named::Fixed(fixed) => {
                    reader.take(fixed.size, "a fixed")?;
                }
            },
        }
        Ok(())
    }
}

/// How to read one writer value as a reader value.
#[derive(Debug)]
enum Plan {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Promote(Promotion),
    Array {
        items: Box<Plan>,
        /// The writer's: it bounds how many items a message may claim.
        items_can_be_empty: bool,
    },
    Map(Box<Plan>),
    Fixed(usize),
    Enum(Box<EnumPlan>),
    /// An index into [`Resolved::records`].
    Record(usize),
    /// One plan per writer branch.
    WriterUnion(Vec<Plan>),
    /// The reader's logical type, applied to the value its base type resolves to.
    Logical(Logical, Box<Plan>),
    /// Data the reader cannot read (a writer union branch that does not resolve).
    Fail(Mismatch),
}

#[derive(Debug, Clone, Copy)]
enum Promotion {
    IntToLong,
    IntToFloat,
    IntToDouble,
    LongToFloat,
    LongToDouble,
    FloatToDouble,
    StringToBytes,
    BytesToString,
}

#[derive(Debug)]
struct EnumPlan {
    writer_name: Arc<str>,
    reader_name: Arc<str>,
    path: String,
    /// By writer symbol index.
    symbols: Vec<Symbol>,
}

#[derive(Debug)]
enum Symbol {
    /// The reader's symbol (the same, or the reader's default).
    Reader(Arc<str>),
    /// A writer symbol the reader neither has nor defaults.
    Unknown(Arc<str>),
}

#[derive(Debug)]
enum RecordSlot {
    /// Being compiled (a recursive reference may point here).
    Pending,
    Ready(RecordPlan),
    /// The records do not resolve. Only a recursive reference from inside a writer union can
    /// still point here; reading through it is the error.
    Failed(Mismatch),
}

#[derive(Debug)]
struct RecordPlan {
    /// The reader's full name and field names.
    shape: &'static RecordShape,
    /// One step per writer field, in the writer's order.
    steps: Vec<Step>,
    /// Reader fields the writer does not have: their slot and default.
    defaults: Vec<(usize, Value)>,
    kafka_connect: bool,
    logical: Option<Logical>,
}

#[derive(Debug)]
enum Step {
    /// Read the writer field into reader field `to`.
    Read { to: usize, plan: Plan },
    /// Read past a writer field the reader does not have.
    Skip(Node),
}

/// Why two schemas do not resolve, and where in the reader schema.
#[derive(Debug, Clone)]
struct Mismatch {
    path: String,
    reason: String,
}

impl Mismatch {
    fn message(&self) -> String {
        format!(
            "the reader schema cannot read data of the writer schema at {}: {}",
            self.path, self.reason
        )
    }
}

type Resolution<T> = std::result::Result<T, Mismatch>;

struct Compiler<'s> {
    writer: &'s Schema,
    reader: &'s Schema,
    records: Vec<RecordSlot>,
    memo: HashMap<(usize, usize), usize>,
}

impl<'s> Compiler<'s> {
    fn mismatch(&self, path: &str, reason: impl Into<String>) -> Mismatch {
        Mismatch {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn cannot_read(&self, writer: &Node, reader: &Node, path: &str) -> Mismatch {
        self.mismatch(
            path,
            format!(
                "the writer's {} cannot be read as the reader's {}",
                describe(&self.writer.named, writer),
                describe(&self.reader.named, reader)
            ),
        )
    }

    fn plan(&mut self, writer: &Node, reader: &Node, path: &str) -> Resolution<Plan> {
        // The writer's logical type does not change how its value is encoded; it only rules out
        // a reader logical type that would rescale the value.
        let (writer_logical, writer) = match writer {
            Node::Logical(logical) => (Some(logical.logical), strip(&logical.base)),
            other => (None, other),
        };
        if let Node::Union(branches) = writer {
            let mut plans = Vec::with_capacity(branches.len());
            let mut first_failure = None;
            for branch in branches {
                match self.plan(branch, reader, path) {
                    Ok(plan) => plans.push(plan),
                    Err(mismatch) => {
                        first_failure.get_or_insert_with(|| mismatch.clone());
                        plans.push(Plan::Fail(mismatch));
                    }
                }
            }
            return match first_failure {
                Some(mismatch) if plans.iter().all(|p| matches!(p, Plan::Fail(_))) => Err(mismatch),
                _ => Ok(Plan::WriterUnion(plans)),
            };
        }
        match reader {
            Node::Logical(logical) => {
                if let Some(writer_logical) = writer_logical {
                    self.check_rescale(writer_logical, logical.logical, path)?;
                }
                let base = self.plan(writer, &logical.base, path)?;
                Ok(Plan::Logical(logical.logical, Box::new(base)))
            }
            Node::Union(branches) => {
                let branch = self.pick_branch(writer, branches).ok_or_else(|| {
                    self.mismatch(
                        path,
                        format!(
                            "the writer's {} matches no branch of the reader's union",
                            describe(&self.writer.named, writer)
                        ),
                    )
                })?;
                if let (Some(writer_logical), Node::Logical(logical)) = (writer_logical, branch) {
                    self.check_rescale(writer_logical, logical.logical, path)?;
                }
                self.plan(writer, branch, path)
            }
            _ => self.plan_same_kind(writer, reader, path),
        }
    }

    /// Refuse to read a writer's decimal, time or timestamp as a reader's of another scale or
    /// unit: the number would be read unchanged and mean a value 10^n times off. (The Avro
    /// specification makes decimals match only with equal scale and precision; for time units
    /// this is our own rule.)
    fn check_rescale(&self, writer: Logical, reader: Logical, path: &str) -> Resolution<()> {
        let differs = match (writer, reader) {
            (Logical::Decimal { scale: w }, Logical::Decimal { scale: r }) => {
                (w != r).then(|| format!("decimal scale {w}, the reader's decimal scale {r}"))
            }
            (Logical::Time(w), Logical::Time(r))
            | (Logical::Timestamp { unit: w, .. }, Logical::Timestamp { unit: r, .. }) => {
                (w != r).then(|| format!("{w:?} unit, the reader's {r:?} unit"))
            }
            _ => None,
        };
        match differs {
            Some(what) => Err(self.mismatch(
                path,
                format!("the writer's {what}: the value would be misread"),
            )),
            None => Ok(()),
        }
    }

    /// Neither type is a union or has a logical type.
    fn plan_same_kind(&mut self, writer: &Node, reader: &Node, path: &str) -> Resolution<Plan> {
        use Promotion::*;
        Ok(match (writer, reader) {
            (Node::Null, Node::Null) => Plan::Null,
            (Node::Boolean, Node::Boolean) => Plan::Boolean,
            (Node::Int, Node::Int) => Plan::Int,
            (Node::Long, Node::Long) => Plan::Long,
            (Node::Float, Node::Float) => Plan::Float,
            (Node::Double, Node::Double) => Plan::Double,
            (Node::Bytes, Node::Bytes) => Plan::Bytes,
            (Node::String, Node::String) => Plan::String,
            (Node::Int, Node::Long) => Plan::Promote(IntToLong),
            (Node::Int, Node::Float) => Plan::Promote(IntToFloat),
            (Node::Int, Node::Double) => Plan::Promote(IntToDouble),
            (Node::Long, Node::Float) => Plan::Promote(LongToFloat),
            (Node::Long, Node::Double) => Plan::Promote(LongToDouble),
            (Node::Float, Node::Double) => Plan::Promote(FloatToDouble),
            (Node::String, Node::Bytes) => Plan::Promote(StringToBytes),
            (Node::Bytes, Node::String) => Plan::Promote(BytesToString),
            (
                Node::Array {
                    items: writer_items,
                    items_can_be_empty,
                },
                Node::Array {
                    items: reader_items,
                    ..
                },
            ) => Plan::Array {
                items: Box::new(self.plan(writer_items, reader_items, &format!("{path}[]"))?),
                items_can_be_empty: *items_can_be_empty,
            },
            (Node::Map(writer_values), Node::Map(reader_values)) => Plan::Map(Box::new(
                self.plan(writer_values, reader_values, &format!("{path}{{}}"))?,
            )),
            (Node::Named(w), Node::Named(r)) => self.named(*w, *r, path)?,
            _ => return Err(self.cannot_read(writer, reader, path)),
        })
    }

    fn named(&mut self, w: usize, r: usize, path: &str) -> Resolution<Plan> {
        let writer_schema = self.writer;
        let reader_schema = self.reader;
        let cannot_read = |this: &Self| this.cannot_read(&Node::Named(w), &Node::Named(r), path);
        match (&writer_schema.named[w], &reader_schema.named[r]) {
            (Named::Record(writer), Named::Record(reader))
                if names_match(writer.name(), reader.name(), &reader.aliases) =>
            {
                self.record(w, r, writer, reader, path)
            }
            (Named::Enum(writer), Named::Enum(reader))
                if names_match(&writer.name, &reader.name, &reader.aliases) =>
            {
                let symbols = writer
                    .symbols
                    .iter()
                    .map(|symbol| {
                        reader
                            .symbols
                            .iter()
                            .find(|s| *s == symbol)
                            .or(reader.default.as_ref())
                            .map_or_else(
                                || Symbol::Unknown(symbol.clone()),
                                |s| Symbol::Reader(s.clone()),
                            )
                    })
                    .collect();
                Ok(Plan::Enum(Box::new(EnumPlan {
                    writer_name: writer.name.clone(),
                    reader_name: reader.name.clone(),
                    path: path.to_owned(),
                    symbols,
                })))
            }
            (Named::Fixed(writer), Named::Fixed(reader))
                if names_match(&writer.name, &reader.name, &reader.aliases) =>
            {
                if writer.size != reader.size {
                    return Err(self.mismatch(
                        path,
                        format!(
                            "the writer's fixed {} has {} bytes but the reader's fixed {} has {}",
                            writer.name, writer.size, reader.name, reader.size
                        ),
                    ));
                }
                if let (Some(w), Some(r)) = (writer.logical, reader.logical) {
                    self.check_rescale(w, r, path)?;
                }
                let plan = Plan::Fixed(reader.size);
                Ok(match reader.logical {
                    Some(logical) => Plan::Logical(logical, Box::new(plan)),
                    None => plan,
                })
            }
            _ => Err(cannot_read(self)),
        }
    }

    fn record(
        &mut self,
        w: usize,
        r: usize,
        writer: &RecordDef,
        reader: &RecordDef,
        path: &str,
    ) -> Resolution<Plan> {
        if let Some(&slot) = self.memo.get(&(w, r)) {
            return match &self.records[slot] {
                RecordSlot::Failed(mismatch) => Err(mismatch.clone()),
                RecordSlot::Pending | RecordSlot::Ready(_) => Ok(Plan::Record(slot)),
            };
        }
        let slot = self.records.len();
        self.records.push(RecordSlot::Pending);
        self.memo.insert((w, r), slot);
        match self.record_plan(writer, reader, path) {
            Ok(plan) => {
                self.records[slot] = RecordSlot::Ready(plan);
                Ok(Plan::Record(slot))
            }
            Err(mismatch) => {
                self.records[slot] = RecordSlot::Failed(mismatch.clone());
                Err(mismatch)
            }
        }
    }

    fn record_plan(
        &mut self,
        writer: &RecordDef,
        reader: &RecordDef,
        path: &str,
    ) -> Resolution<RecordPlan> {
        // Which writer field each reader field reads: the same name first, then (among the
        // writer fields no reader field has claimed by name) a reader alias.
        let mut source: Vec<Option<usize>> = reader
            .field_names()
            .iter()
            .map(|name| writer.field_names().iter().position(|w| w == name))
            .collect();
        for (r, aliases) in reader.field_aliases.iter().enumerate() {
            if source[r].is_some() {
                continue;
            }
            source[r] = aliases.iter().find_map(|alias| {
                writer
                    .field_names()
                    .iter()
                    .position(|w| w == alias)
                    .filter(|w| !source.contains(&Some(*w)))
            });
        }
        let mut target = vec![None; writer.fields.len()];
        let mut defaults = Vec::new();
        for (r, source) in source.iter().enumerate() {
            let name = &reader.field_names()[r];
            match source {
                Some(w) => target[*w] = Some(r),
                None => match reader.defaults.get(r) {
                    Some(FieldDefault::Value(value)) => defaults.push((r, value.clone())),
                    Some(FieldDefault::Invalid(why)) => {
                        return Err(self.mismatch(
                            &format!("{path}.{name}"),
                            format!(
                                "the writer has no such field and the reader's default is \
                                 invalid: {why}"
                            ),
                        ))
                    }
                    Some(FieldDefault::Absent) | None => {
                        return Err(self.mismatch(
                            &format!("{path}.{name}"),
                            "the writer has no such field and the reader field has no default",
                        ))
                    }
                },
            }
        }
        let mut steps = Vec::with_capacity(writer.fields.len());
        for (field, target) in writer.fields.iter().zip(target) {
            steps.push(match target {
                Some(r) => Step::Read {
                    to: r,
                    plan: self.plan(
                        field,
                        &reader.fields[r],
                        &format!("{path}.{}", reader.field_names()[r]),
                    )?,
                },
                None => Step::Skip(field.clone()),
            });
        }
        Ok(RecordPlan {
            shape: reader.shape,
            steps,
            defaults,
            kafka_connect: reader.is_kafka_connect(),
            logical: reader.logical,
        })
    }

    /// The reader union branch a writer (non-union) type reads as: the first of the same type,
    /// else the first the writer's type promotes to.
    fn pick_branch<'b>(&self, writer: &Node, branches: &'b [Node]) -> Option<&'b Node> {
        let same = branches
            .iter()
            .find(|branch| match (writer, strip(branch)) {
                (Node::Named(w), Node::Named(r)) => {
                    match (&self.writer.named[*w], &self.reader.named[*r]) {
                        (Named::Record(w), Named::Record(r)) => {
                            names_match(w.name(), r.name(), &r.aliases)
                        }
                        (Named::Enum(w), Named::Enum(r)) => {
                            names_match(&w.name, &r.name, &r.aliases)
                        }
                        (Named::Fixed(w), Named::Fixed(r)) => {
                            names_match(&w.name, &r.name, &r.aliases)
                        }
                        _ => false,
                    }
                }
                (Node::Array { .. }, Node::Array { .. }) | (Node::Map(_), Node::Map(_)) => true,
                (writer, branch) => is_primitive(writer) && writer == branch,
            });
        same.or_else(|| {
            branches.iter().find(|branch| {
                matches!(
                    (writer, strip(branch)),
                    (Node::Int, Node::Long | Node::Float | Node::Double)
                        | (Node::Long, Node::Float | Node::Double)
                        | (Node::Float, Node::Double)
                        | (Node::String, Node::Bytes)
                        | (Node::Bytes, Node::String)
                )
            })
        })
    }
}

/// A node without its logical type.
fn strip(node: &Node) -> &Node {
    match node {
        Node::Logical(logical) => strip(&logical.base),
        other => other,
    }
}

fn is_primitive(node: &Node) -> bool {
    matches!(
        node,
        Node::Null
            | Node::Boolean
            | Node::Int
            | Node::Long
            | Node::Float
            | Node::Double
            | Node::Bytes
            | Node::String
    )
}

fn unqualified(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Whether a writer's named type is the reader's: the same unqualified name, or a reader alias
/// naming the writer's type (by full name, or unqualified name).
fn names_match(writer: &str, reader: &str, reader_aliases: &[Arc<str>]) -> bool {
    let short = unqualified(writer);
    short == unqualified(reader)
        || reader_aliases
            .iter()
            .any(|alias| &**alias == writer || unqualified(alias) == short)
}

/// Where errors start counting: the reader's root type name.
fn root_path(reader: &Schema) -> String {
    match &reader.root {
        Node::Named(i) => unqualified(reader.named[*i].full_name()).to_owned(),
        other => describe(&reader.named, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::value::Timestamp;

    /// A hand-rolled Avro binary writer.
    #[derive(Default)]
    struct Body(Vec<u8>);

    impl Body {
        fn long(mut self, value: i64) -> Self {
            let mut raw = ((value << 1) ^ (value >> 63)) as u64;
            loop {
                let byte = (raw & 0x7f) as u8;
                raw >>= 7;
                if raw == 0 {
                    self.0.push(byte);
                    return self;
                }
                self.0.push(byte | 0x80);
            }
        }

        fn bytes(self, data: &[u8]) -> Self {
            let mut body = self.long(data.len() as i64);
            body.0.extend_from_slice(data);
            body
        }

        fn string(self, text: &str) -> Self {
            self.bytes(text.as_bytes())
        }

        fn raw(mut self, data: &[u8]) -> Self {
            self.0.extend_from_slice(data);
            self
        }
    }

    fn resolve(writer: &str, reader: &str) -> Result<Resolved> {
        let writer = Schema::parse(writer).unwrap();
        let reader = Arc::new(Schema::parse(reader).unwrap());
        Resolved::new(&writer, reader)
    }

    fn read(writer: &str, reader: &str, body: Body) -> Result<Value> {
        resolve(writer, reader).unwrap().decode(&body.0)
    }

    fn record(value: Value) -> Record {
        match value {
            Value::Record(record) => record,
            other => panic!("not a record: {other:?}"),
        }
    }

    fn names(record: &Record) -> Vec<&str> {
        record.names().iter().map(|n| &**n).collect()
    }

    fn error(result: Result<impl std::fmt::Debug>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn added_fields_take_their_defaults() {
        let writer = r#"{"type":"record","name":"User","namespace":"v1","fields":[
            {"name":"id","type":"int"}]}"#;
        let reader = r#"{"type":"record","name":"User","namespace":"v2","fields":[
            {"name":"id","type":"int"},
            {"name":"email","type":["null","string"],"default":null},
            {"name":"nick","type":["string","null"],"default":"anon"},
            {"name":"home","type":{"type":"record","name":"Point","fields":[
                {"name":"x","type":"int"},{"name":"y","type":"double","default":0.5}]},
                "default":{"x":3}},
            {"name":"tags","type":{"type":"array","items":"string"},"default":["a"]},
            {"name":"joined","type":{"type":"int","logicalType":"date"},"default":19000},
            {"name":"raw","type":"bytes","default":"\u00ff\u0000"},
            {"name":"late","type":["null","long"],"default":7}]}"#;
        let value = record(read(writer, reader, Body::default().long(42)).unwrap());
        assert_eq!(&**value.name(), "v2.User");
        assert_eq!(
            names(&value),
            ["id", "email", "nick", "home", "tags", "joined", "raw", "late"]
        );
        let point = record(value.values[3].clone());
        assert_eq!(&**point.name(), "v2.Point");
        assert_eq!(point.values, [Value::Int(3), Value::Double(0.5)]);
        assert_eq!(
            value.values,
            [
                Value::Int(42),
                Value::Null,
                Value::String("anon".into()),
                Value::Record(point),
                Value::Array(vec![Value::String("a".into())]),
                Value::Date(19000),
                Value::Bytes(vec![0xff, 0]),
                // Avro 1.12: a union default may match any branch.
                Value::Long(7),
            ]
        );
    }

    #[test]
    fn removed_fields_are_skipped_and_fields_reordered() {
        let writer = r#"{"type":"record","name":"Row","fields":[
            {"name":"a","type":"int"},
            {"name":"gone","type":{"type":"record","name":"Inner","fields":[
                {"name":"s","type":"string"},{"name":"n","type":["null","long"]},
                {"name":"flag","type":"boolean"},{"name":"x","type":"float"},
                {"name":"y","type":"double"}]}},
            {"name":"list","type":{"type":"array","items":"Inner"}},
            {"name":"attrs","type":{"type":"map","values":{"type":"array","items":"null"}}},
            {"name":"digest","type":{"type":"fixed","name":"Digest","size":3}},
            {"name":"state","type":{"type":"enum","name":"State","symbols":["ON","OFF"]}},
            {"name":"when","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"b","type":"string"}]}"#;
        let reader = r#"{"type":"record","name":"Row","fields":[
            {"name":"b","type":"string"},{"name":"a","type":"int"}]}"#;
        let inner = |body: Body| {
            body.string("skipped")
                .long(1)
                .long(-9)
                .raw(&[1])
                .raw(&[0; 4])
                .raw(&[0; 8])
        };
        let mut body = Body::default().long(5);
        body = inner(body);
        body = body.long(-2).long(30); // list: a block of 2 items with its byte size
        body = inner(inner(body)).long(0);
        body = body.long(1).string("k").long(3).long(0).long(0); // attrs: {"k": [null x3]}
        body = body.raw(b"xyz").long(1).long(1_700_000_000_000);
        body = body.string("kept");
        let value = record(read(writer, reader, body).unwrap());
        assert_eq!(names(&value), ["b", "a"]);
        assert_eq!(value.values, [Value::String("kept".into()), Value::Int(5)]);
    }

    #[test]
    fn skipped_fields_are_checked_like_read_ones() {
        let writer = r#"{"type":"record","name":"R","fields":[
            {"name":"gone","type":"string"},{"name":"a","type":"int"}]}"#;
        let reader = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
        let resolved = resolve(writer, reader).unwrap();
        let huge = Body::default().long(1 << 40);
        assert!(error(resolved.decode(&huge.0)).contains("exceeds"));
        let negative = Body::default().long(-3);
        assert!(error(resolved.decode(&negative.0)).contains("negative"));
        let trailing = Body::default().string("x").long(1).raw(&[0]);
        assert!(error(resolved.decode(&trailing.0)).contains("trailing"));
        let truncated = Body::default().string("x");
        assert!(error(resolved.decode(&truncated.0)).contains("truncated"));
    }

    #[test]
    fn numeric_and_text_promotions() {
        let writer = r#"{"type":"record","name":"N","fields":[
            {"name":"i1","type":"int"},{"name":"i2","type":"int"},{"name":"i3","type":"int"},
            {"name":"l1","type":"long"},{"name":"l2","type":"long"},{"name":"f","type":"float"},
            {"name":"s","type":"string"},{"name":"b","type":"bytes"}]}"#;
        let reader = r#"{"type":"record","name":"N","fields":[
            {"name":"i1","type":"long"},{"name":"i2","type":"float"},{"name":"i3","type":"double"},
            {"name":"l1","type":"float"},{"name":"l2","type":"double"},{"name":"f","type":"double"},
            {"name":"s","type":"bytes"},{"name":"b","type":"string"}]}"#;
        let body = Body::default()
            .long(-7)
            .long(3)
            .long(i64::from(i32::MAX))
            .long(1 << 40)
            .long(-(1 << 53))
            .raw(&1.5f32.to_le_bytes())
            .string("héllo")
            .bytes(b"bytes");
        let value = record(read(writer, reader, body).unwrap());
        assert_eq!(
            value.values,
            [
                Value::Long(-7),
                Value::Float(3.0),
                Value::Double(2_147_483_647.0),
                Value::Float(1_099_511_627_776.0),
                Value::Double(-9_007_199_254_740_992.0),
                Value::Double(1.5),
                Value::Bytes("héllo".as_bytes().to_vec()),
                Value::String("bytes".into()),
            ]
        );
        // int -> long -> double through a chain of schema versions is the same as int -> double.
        assert_eq!(
            read(r#""int""#, r#""double""#, Body::default().long(-1)).unwrap(),
            Value::Double(-1.0)
        );
        // Bytes read as a string must be UTF-8.
        assert!(error(read(
            r#""bytes""#,
            r#""string""#,
            Body::default().bytes(&[0xff])
        ))
        .contains("UTF-8"));
        // No demotions.
        assert!(error(resolve(r#""long""#, r#""int""#))
            .contains("the writer's long cannot be read as the reader's int"));
        assert!(resolve(r#""double""#, r#""float""#).is_err());
        assert!(resolve(r#""int""#, r#""string""#).is_err());
    }

    #[test]
    fn enum_symbols_resolve_by_name_with_the_readers_default() {
        let writer = r#"{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}"#;
        let with_default = r#"{"type":"enum","name":"Color","symbols":["BLUE","RED","OTHER"],
            "default":"OTHER"}"#;
        let resolved = resolve(writer, with_default).unwrap();
        let symbol = |index| resolved.decode(&Body::default().long(index).0).unwrap();
        assert_eq!(symbol(0), Value::Enum("RED".into()));
        assert_eq!(symbol(1), Value::Enum("OTHER".into()));
        assert_eq!(symbol(2), Value::Enum("BLUE".into()));
        assert!(error(resolved.decode(&Body::default().long(3).0)).contains("no symbol 3"));

        let without_default = r#"{"type":"enum","name":"Color","symbols":["BLUE","RED"]}"#;
        let resolved = resolve(writer, without_default).unwrap();
        assert_eq!(
            resolved.decode(&Body::default().long(0).0).unwrap(),
            Value::Enum("RED".into())
        );
        let message = error(resolved.decode(&Body::default().long(1).0));
        assert!(
            message.contains("\"GREEN\"") && message.contains("no default"),
            "{message}"
        );
        // A default that is not one of the symbols is no default.
        let bad_default = r#"{"type":"enum","name":"Color","symbols":["RED"],"default":"X"}"#;
        assert!(resolve(writer, bad_default)
            .unwrap()
            .decode(&Body::default().long(2).0)
            .is_err());
    }

    #[test]
    fn writer_union_to_reader_non_union_and_back() {
        // ["null","string"] -> "string": fine until a null is written.
        let resolved = resolve(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":["null","string"]}]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#,
        )
        .unwrap();
        let value = resolved.decode(&Body::default().long(1).string("hi").0);
        assert_eq!(record(value.unwrap()).values, [Value::String("hi".into())]);
        let message = error(resolved.decode(&Body::default().long(0).0));
        assert!(
            message.contains("at R.s") && message.contains("the writer's null"),
            "{message}"
        );
        // Each writer branch resolves on its own, promotions included.
        let resolved = resolve(r#"["int","long","string"]"#, r#""long""#).unwrap();
        assert_eq!(
            resolved
                .decode(&Body::default().long(0).long(-5).0)
                .unwrap(),
            Value::Long(-5)
        );
        assert_eq!(
            resolved
                .decode(&Body::default().long(1).long(1 << 40).0)
                .unwrap(),
            Value::Long(1 << 40)
        );
        assert!(resolved
            .decode(&Body::default().long(2).string("x").0)
            .is_err());
        // No branch resolves: an error at once.
        assert!(error(resolve(r#"["null","string"]"#, r#""int""#)).contains("cannot be read"));

        // And back: "string" -> ["null","string"].
        assert_eq!(
            read(
                r#""string""#,
                r#"["null","string"]"#,
                Body::default().string("x")
            )
            .unwrap(),
            Value::String("x".into())
        );
        // Writer union to reader union, branches in another order.
        let resolved =
            resolve(r#"["null","int","string"]"#, r#"["string","null","long"]"#).unwrap();
        assert_eq!(resolved.decode(&[0]).unwrap(), Value::Null);
        assert_eq!(
            resolved.decode(&Body::default().long(1).long(9).0).unwrap(),
            Value::Long(9)
        );
        assert_eq!(
            resolved
                .decode(&Body::default().long(2).string("s").0)
                .unwrap(),
            Value::String("s".into())
        );
    }

    #[test]
    fn reader_union_picks_the_matching_branch() {
        // The same type wins over an earlier promotion...
        assert_eq!(
            read(
                r#""int""#,
                r#"["null","long","int"]"#,
                Body::default().long(3)
            )
            .unwrap(),
            Value::Int(3)
        );
        // ...else the first branch the writer's type promotes to.
        assert_eq!(
            read(
                r#""int""#,
                r#"["null","string","double","long"]"#,
                Body::default().long(3)
            )
            .unwrap(),
            Value::Double(3.0)
        );
        // Named branches match by name, and the reader's logical type applies.
        let writer = r#"{"type":"record","name":"B","fields":[{"name":"day","type":"int"}]}"#;
        let reader = r#"["null",
            {"type":"record","name":"A","fields":[{"name":"day","type":"int"}]},
            {"type":"record","name":"B","fields":[
                {"name":"day","type":{"type":"int","logicalType":"date"}}]}]"#;
        let value = record(read(writer, reader, Body::default().long(10)).unwrap());
        assert_eq!(&**value.name(), "B");
        assert_eq!(value.values, [Value::Date(10)]);
        assert!(error(resolve(r#""boolean""#, r#"["null","int"]"#)).contains("matches no branch"));
    }

    #[test]
    fn renamed_record_and_fields_via_aliases() {
        let writer = r#"{"type":"record","name":"User","namespace":"com.old","fields":[
            {"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
        let reader = r#"{"type":"record","name":"Person","namespace":"com.new",
            "aliases":["com.old.User"],"fields":[
            {"name":"years","type":"long","aliases":["age"]},
            {"name":"full_name","type":"string","aliases":["name"]}]}"#;
        let value = record(read(writer, reader, Body::default().string("Ada").long(36)).unwrap());
        assert_eq!(&**value.name(), "com.new.Person");
        assert_eq!(names(&value), ["years", "full_name"]);
        assert_eq!(value.values, [Value::Long(36), Value::String("Ada".into())]);
        // An unqualified alias is relative to the record's namespace, and names match by their
        // unqualified part.
        let relative = r#"{"type":"record","name":"Person","namespace":"com.new",
            "aliases":["User"],"fields":[{"name":"name","type":"string"},
            {"name":"age","type":"int"}]}"#;
        assert!(resolve(writer, relative).is_ok());
        let other_namespace = r#"{"type":"record","name":"User","namespace":"com.elsewhere",
            "fields":[{"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
        assert!(resolve(writer, other_namespace).is_ok());
        // Without an alias, a renamed record does not match.
        let renamed = r#"{"type":"record","name":"Person","fields":[
            {"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
        let message = error(resolve(writer, renamed));
        assert!(
            message.contains("record com.old.User cannot be read as the reader's record Person"),
            "{message}"
        );
    }

    #[test]
    fn a_field_name_match_wins_over_an_alias() {
        let writer = r#"{"type":"record","name":"R","fields":[{"name":"old","type":"int"}]}"#;
        let reader = r#"{"type":"record","name":"R","fields":[
            {"name":"new","type":"int","aliases":["old"],"default":-1},
            {"name":"old","type":"int"}]}"#;
        let value = record(read(writer, reader, Body::default().long(5)).unwrap());
        assert_eq!(value.values, [Value::Int(-1), Value::Int(5)]);
    }

    #[test]
    fn a_missing_default_is_an_error_naming_the_field() {
        let writer = r#"{"type":"record","name":"Order","fields":[
            {"name":"address","type":{"type":"record","name":"Address","fields":[
                {"name":"street","type":"string"}]}}]}"#;
        let reader = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
            {"name":"address","type":{"type":"record","name":"Address","fields":[
                {"name":"street","type":"string"},{"name":"zip","type":"string"}]}}]}"#;
        let message = error(resolve(writer, reader));
        assert!(
            message.contains("at Order.address.zip: the writer has no such field and the reader field has no default"),
            "{message}"
        );
        let invalid = r#"{"type":"record","name":"Order","fields":[
            {"name":"address","type":{"type":"record","name":"Address","fields":[
                {"name":"street","type":"string"},{"name":"zip","type":"int","default":"x"}]}}]}"#;
        let message = error(resolve(writer, invalid));
        assert!(
            message.contains("at Order.address.zip")
                && message.contains("\"x\" is not a valid int"),
            "{message}"
        );
        // A mismatch inside collections names the way there.
        let message = error(resolve(
            r#"{"type":"map","values":{"type":"array","items":"string"}}"#,
            r#"{"type":"map","values":{"type":"array","items":"int"}}"#,
        ));
        assert!(message.contains("at map{}[]:"), "{message}");
    }

    #[test]
    fn fixed_sizes_must_match() {
        let writer = r#"{"type":"fixed","name":"Hash","size":16}"#;
        let message = error(resolve(
            writer,
            r#"{"type":"fixed","name":"Hash","size":32}"#,
        ));
        assert!(
            message.contains("fixed Hash has 16 bytes but the reader's fixed Hash has 32"),
            "{message}"
        );
        // Same size: the reader's logical type applies.
        let uuid = r#"{"type":"fixed","name":"Hash","size":16,"logicalType":"uuid"}"#;
        assert_eq!(
            read(writer, uuid, Body::default().raw(&[7; 16])).unwrap(),
            Value::Uuid([7; 16])
        );
        assert!(resolve(writer, r#"{"type":"fixed","name":"Other","size":16}"#).is_err());
        assert!(resolve(writer, r#""bytes""#).is_err());
    }

    #[test]
    fn recursive_schemas() {
        let writer = r#"{"type":"record","name":"List","fields":[
            {"name":"value","type":"int"},{"name":"next","type":["null","List"]}]}"#;
        let reader = r#"{"type":"record","name":"List","fields":[
            {"name":"label","type":"string","default":"-"},
            {"name":"next","type":["null","List"],"default":null},
            {"name":"value","type":"long"}]}"#;
        let body = Body::default()
            .long(1)
            .long(1)
            .long(2)
            .long(1)
            .long(3)
            .long(0);
        let mut value = read(writer, reader, body).unwrap();
        let mut seen = Vec::new();
        loop {
            let mut node = record(value);
            assert_eq!(names(&node), ["label", "next", "value"]);
            assert_eq!(node.values[0], Value::String("-".into()));
            seen.push(node.values[2].clone());
            match node.take("next").unwrap() {
                Value::Null => break,
                next => value = next,
            }
        }
        assert_eq!(seen, [Value::Long(1), Value::Long(2), Value::Long(3)]);
        // Deep data is an error, not a stack overflow.
        let deep = vec![2u8; 100_000];
        assert!(error(resolve(writer, reader).unwrap().decode(&deep)).contains("nesting"));
    }

    #[test]
    fn mutually_recursive_records_where_one_pair_does_not_resolve() {
        // A's next (a B) cannot be read: the reader's B wants a field the writer's lacks. That
        // only matters when a B is actually written.
        let writer = r#"{"type":"record","name":"A","fields":[
            {"name":"b","type":["null",{"type":"record","name":"B","fields":[
                {"name":"a","type":["null","A"]}]}]}]}"#;
        let reader = r#"{"type":"record","name":"A","fields":[
            {"name":"b","type":["null",{"type":"record","name":"B","fields":[
                {"name":"a","type":["null","A"]},{"name":"must","type":"int"}]}]}]}"#;
        let resolved = resolve(writer, reader).unwrap();
        assert_eq!(record(resolved.decode(&[0]).unwrap()).values, [Value::Null]);
        let message = error(resolved.decode(&[2, 0]));
        assert!(message.contains("at A.b.must"), "{message}");
    }

    #[test]
    fn logical_types_are_the_readers() {
        assert_eq!(
            read(
                r#""int""#,
                r#"{"type":"int","logicalType":"date"}"#,
                Body::default().long(3)
            )
            .unwrap(),
            Value::Date(3)
        );
        assert_eq!(
            read(
                r#"{"type":"int","logicalType":"date"}"#,
                r#""long""#,
                Body::default().long(3)
            )
            .unwrap(),
            Value::Long(3)
        );
        assert_eq!(
            read(
                r#""int""#,
                r#"{"type":"long","logicalType":"timestamp-millis"}"#,
                Body::default().long(1500)
            )
            .unwrap(),
            Value::Timestamp(Timestamp {
                seconds: 1,
                nanos: 500_000_000,
                offset: Some(0)
            })
        );
        // A string read as a decimal on bytes.
        let decimal = r#"{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}"#;
        match read(r#""string""#, decimal, Body::default().bytes(&[0x30, 0x39])).unwrap() {
            Value::Decimal(d) => assert_eq!(d.to_string(), "123.45"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decimal_scales_and_time_units_must_agree() {
        let scale = |s: u32| {
            format!(r#"{{"type":"bytes","logicalType":"decimal","precision":9,"scale":{s}}}"#)
        };
        let message = error(resolve(&scale(2), &scale(3)));
        assert!(message.contains("decimal scale 2"), "{message}");
        assert!(resolve(&scale(2), &scale(2)).is_ok());
        // Inside a union, and on fixed.
        let nullable = format!(r#"["null",{}]"#, scale(4));
        assert!(resolve(&scale(2), &nullable).is_err());
        let fixed = |s: u32| {
            format!(
                r#"{{"type":"fixed","name":"M","size":8,"logicalType":"decimal","precision":9,"scale":{s}}}"#
            )
        };
        assert!(resolve(&fixed(1), &fixed(2)).is_err());
        // Debezium's millisecond Timestamp read as timestamp-micros would be 1000 times off.
        let message = error(resolve(
            r#"{"type":"long","connect.name":"io.debezium.time.Timestamp"}"#,
            r#"{"type":"long","logicalType":"timestamp-micros"}"#,
        ));
        assert!(message.contains("Millis unit"), "{message}");
        assert!(resolve(
            r#"{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}"#,
            r#"{"type":"long","logicalType":"local-timestamp-micros"}"#,
        )
        .is_ok());
    }

    #[test]
    fn resolved_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Resolved>();
    }

    #[test]
    fn identical_schemas_decode_like_the_writer_schema() {
        let schema = r#"{"type":"record","name":"Value","namespace":"db.public.t","fields":[
            {"name":"id","type":"int"},
            {"name":"body","type":["null","string"],"default":null},
            {"name":"at","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}]},
            {"name":"tags","type":{"type":"array","items":"string"}},
            {"name":"attrs","type":{"type":"map","values":"long"}},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}],
            "connect.name":"db.public.t.Value"}"#;
        let body = Body::default()
            .long(1)
            .long(1)
            .string(crate::avro::UNAVAILABLE_PLACEHOLDER)
            .long(1)
            .long(1_000_001)
            .long(1)
            .string("x")
            .long(0)
            .long(1)
            .string("k")
            .long(2)
            .long(0)
            .long(1);
        let parsed = Schema::parse(schema).unwrap();
        let expected = parsed.decode(&body.0).unwrap();
        let resolved = Resolved::new(&parsed, Arc::new(parsed.clone())).unwrap();
        let value = resolved.decode(&body.0).unwrap();
        assert_eq!(value, expected);
        assert_eq!(record(value).values[1], Value::Unavailable);
        assert!(Arc::ptr_eq(resolved.reader(), &resolved.reader));
    }
}
