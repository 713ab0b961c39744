//! The metadata columns of a batch (`_op`, the Kafka position, the source's position) and the
//! `_unavailable` lists of column names.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::types::{Int32Type, Int8Type};

use super::dictionary::shared_values;
use arrow_array::{ArrayRef, DictionaryArray, Int32Array, Int64Array, Int8Array, ListArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};

use crate::avro::{LazyValue, RecordDef, Value};
use crate::change::{Change, Op, Position};
use crate::error::Result;
use crate::name::Name;

use super::column::offsets_with_capacity;
use super::{arrow_error, OPS, UTC};

/// Lists of column names per row (`_unavailable`).
pub(super) struct NameLists {
    names: StringBuilder,
    offsets: Vec<i32>,
}

impl NameLists {
    pub(super) fn new(rows: usize) -> NameLists {
        NameLists {
            names: StringBuilder::new(),
            offsets: offsets_with_capacity(rows),
        }
    }

    pub(super) fn push(&mut self, name: &str) {
        self.names.append_value(name);
    }

    pub(super) fn end_row(&mut self) {
        // Fewer names than rows × columns, which are far below 2^31 in a batch.
        self.offsets.push(self.names.len() as i32);
    }

    pub(super) fn finish(mut self) -> Result<ArrayRef> {
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

/// The `source` fields with a metadata column of their own (`_lsn`, `_txid`, `_source_ts`).
#[derive(Debug, Default)]
pub(super) struct SourceLongs {
    lsn: Option<i64>,
    txid: Option<i64>,
    ts_ms: Option<i64>,
}

impl SourceLongs {
    /// Whether `name` is one of the fields with a column.
    pub(super) fn is_kept(name: &str) -> bool {
        matches!(name, "lsn" | "txId" | "ts_ms")
    }

    /// Set the field `name` from its decoded value (a number, or nothing).
    pub(super) fn set(&mut self, name: &str, value: &Value) {
        let slot = match name {
            "lsn" => &mut self.lsn,
            "txId" => &mut self.txid,
            "ts_ms" => &mut self.ts_ms,
            _ => return,
        };
        *slot = match value {
            Value::Long(v) => Some(*v),
            Value::Int(v) => Some(i64::from(*v)),
            _ => None,
        };
    }
}

/// The metadata columns: where each change was read, and its source position.
pub(super) struct Metadata {
    ops: Vec<i8>,
    topics: Vec<Name>,
    topic_keys: Vec<i32>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: TimestampMillisecondBuilder,
    lsn: Option<Int64Builder>,
    txid: Option<Int64Builder>,
    source_ts: Option<TimestampMillisecondBuilder>,
}

impl Metadata {
    pub(super) fn new(rows: usize, source: Option<&RecordDef>) -> Metadata {
        let has = |name: &str| source.is_some_and(|s| s.field_names().iter().any(|n| &**n == name));
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

    pub(super) fn append(&mut self, change: &Change) -> Result<()> {
        let mut source = SourceLongs::default();
        let decoded = change.source.as_ref().map(LazyValue::decode).transpose()?;
        if let Some(Value::Record(record)) = decoded.as_deref() {
            for name in ["lsn", "txId", "ts_ms"] {
                if let Some(value) = record.get(name) {
                    source.set(name, value);
                }
            }
        }
        self.append_parts(change.op, &change.position, &source);
        Ok(())
    }

    /// One change's metadata, from its parts.
    pub(super) fn append_parts(&mut self, op: Op, position: &Position, source: &SourceLongs) {
        let op = OPS.iter().position(|o| *o == op).unwrap_or(0);
        self.ops.push(op as i8);
        let topic = &position.topic;
        // One topic per batch is the rule, so look at the last one first.
        let key = match self.topics.iter().rposition(|t| t == topic) {
            Some(key) => key,
            None => {
                self.topics.push(*topic);
                self.topics.len() - 1
            }
        };
        self.topic_keys.push(key as i32);
        self.partitions.push(position.partition);
        self.offsets.push(position.offset);
        self.timestamps.append_option(position.timestamp_ms);
        if let Some(b) = &mut self.lsn {
            b.append_option(source.lsn);
        }
        if let Some(b) = &mut self.txid {
            b.append_option(source.txid);
        }
        if let Some(b) = &mut self.source_ts {
            b.append_option(source.ts_ms);
        }
    }

    pub(super) fn finish(mut self) -> Result<Vec<(&'static str, ArrayRef)>> {
        let op_names = shared_values(OPS.iter().map(|op| op.as_str()));
        let ops = DictionaryArray::<Int8Type>::try_new(Int8Array::from(self.ops), op_names)
            .map_err(arrow_error)?;
        let topic_names = shared_values(self.topics.iter().map(|t| &**t));
        let topics =
            DictionaryArray::<Int32Type>::try_new(Int32Array::from(self.topic_keys), topic_names)
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
