//! Batches handed over by `next_batch`: changes and rows of one table under one value schema.
//!
//! A batch is filled from what the fetch thread sent, in log order: changes it decoded, and
//! [`Rows`] it read straight from message bodies (see [`super::run`]). Both become Arrow
//! record batches with the same columns, and pieces next to each other with the same columns
//! are joined into one ([`Batch::record_batches`]). Where two pieces' columns differ (one holds
//! a key column the other's messages had no key for, or a `bytes` decimal past 38 digits made
//! one column wider), the batch is handed over as several record batches, in order.

use arrow_array::{Array, RecordBatch};
use arrow_data::ArrayData;
use arrow_schema::DataType;

use crate::change::{Change, Position};
use crate::error::{Error, Result};
use crate::name::Name;

/// Messages of one partition, one table and one value schema, read straight into a record
/// batch.
#[derive(Debug)]
pub(super) struct Rows {
    pub(super) batch: RecordBatch,
    pub(super) table: Name,
    pub(super) schema_id: u32,
    /// Each row's offset.
    pub(super) offsets: Vec<i64>,
    /// Where the last row was read.
    pub(super) last: Position,
}

impl Rows {
    pub(super) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// About how much memory the rows hold, as the read-ahead budget counts it.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Rows>()
            + self.batch.get_array_memory_size()
            + self.offsets.len() * std::mem::size_of::<i64>()
    }

    /// Split off the first `count` rows (fewer than it has).
    pub(super) fn split_front(&mut self, count: usize) -> Rows {
        let rest = self.offsets.split_off(count);
        let offsets = std::mem::replace(&mut self.offsets, rest);
        let last = Position {
            offset: offsets[count - 1],
            timestamp_ms: None,
            ..self.last.clone()
        };
        let batch = self.batch.slice(0, count);
        self.batch = self.batch.slice(count, self.batch.num_rows() - count);
        Rows {
            batch,
            table: self.table,
            schema_id: self.schema_id,
            offsets,
            last,
        }
    }
}

/// One piece of a batch.
#[derive(Debug)]
pub(super) enum Piece {
    Change(Box<Change>),
    Rows(Rows),
}

impl Piece {
    pub(super) fn len(&self) -> usize {
        match self {
            Piece::Change(_) => 1,
            Piece::Rows(rows) => rows.len(),
        }
    }

    pub(super) fn batch_key(&self) -> BatchKey<'_> {
        match self {
            Piece::Change(change) => change_batch_key(change),
            Piece::Rows(rows) => rows.batch_key(),
        }
    }
}

/// What makes changes and rows one batch: the table and the value schema id.
pub(super) type BatchKey<'a> = (Option<&'a str>, Option<u32>);

pub(super) fn change_batch_key(change: &Change) -> BatchKey<'_> {
    (
        change.table.as_deref(),
        change.value_schema.as_ref().map(|(id, _)| *id),
    )
}

impl Rows {
    pub(super) fn batch_key(&self) -> BatchKey<'_> {
        (Some(&self.table), Some(self.schema_id))
    }
}

/// Whether two record batches join into one: the same columns, and dictionaries that share
/// their values (see `crate::arrow`'s shared dictionaries), so the joined batch keeps one
/// dictionary per column rather than repeating values in it.
fn joinable(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.schema() == b.schema()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(a, b)| shared_dictionaries(&a.to_data(), &b.to_data()))
}

fn shared_dictionaries(a: &ArrayData, b: &ArrayData) -> bool {
    let here = match a.data_type() {
        DataType::Dictionary(..) => a.child_data()[0].ptr_eq(&b.child_data()[0]),
        _ => true,
    };
    here && a
        .child_data()
        .iter()
        .zip(b.child_data())
        .all(|(a, b)| shared_dictionaries(a, b))
}

/// Changes and rows of one table under one value schema, in log order.
#[derive(Debug, Default)]
pub struct Batch {
    pub(super) pieces: Vec<Piece>,
    rows: usize,
}

impl Batch {
    pub(super) fn push(&mut self, piece: Piece) {
        self.rows += piece.len();
        self.pieces.push(piece);
    }

    /// How many rows the batch holds.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The table of the batch's changes, if they name one.
    pub fn table(&self) -> Option<Name> {
        match self.pieces.first()? {
            Piece::Change(change) => change.table,
            Piece::Rows(rows) => Some(rows.table),
        }
    }

    /// The id of the value schema of the batch's changes, if they have one.
    pub fn schema_id(&self) -> Option<u32> {
        match self.pieces.first()? {
            Piece::Change(change) => change.value_schema.as_ref().map(|(id, _)| *id),
            Piece::Rows(rows) => Some(rows.schema_id),
        }
    }

    /// The batch as Arrow record batches: one, or several in order where its pieces' columns
    /// differ. A change no Arrow column fits is a decode error naming the message.
    pub fn record_batches(self) -> Result<Vec<RecordBatch>> {
        let mut built: Vec<Vec<RecordBatch>> = Vec::new();
        let mut changes = Vec::new();
        let add = |batch: RecordBatch, built: &mut Vec<Vec<RecordBatch>>| match built.last_mut() {
            Some(group) if joinable(&group[0], &batch) => group.push(batch),
            _ => built.push(vec![batch]),
        };
        for piece in self.pieces {
            match piece {
                Piece::Change(change) => changes.push(*change),
                Piece::Rows(rows) => {
                    if !changes.is_empty() {
                        add(
                            crate::arrow::record_batch(&std::mem::take(&mut changes))?,
                            &mut built,
                        );
                    }
                    add(rows.batch, &mut built);
                }
            }
        }
        if !changes.is_empty() {
            add(crate::arrow::record_batch(&changes)?, &mut built);
        }
        built
            .into_iter()
            .map(|group| match group.len() {
                1 => Ok(group.into_iter().next().expect("one batch")),
                _ => arrow_select::concat::concat_batches(&group[0].schema(), &group)
                    .map_err(|e| Error::decode(format!("cannot join the pieces of a batch: {e}"))),
            })
            .collect()
    }
}
