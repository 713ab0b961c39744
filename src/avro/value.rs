//! Decoded Avro values.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use compact_str::CompactString;
use rustc_hash::FxHashSet;
use smallvec::SmallVec;

/// One decoded Avro value, shaped by the writer schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `int`.
    Int(i32),
    /// `long`.
    Long(i64),
    /// `float`.
    Float(f32),
    /// `double`.
    Double(f64),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `string` (kept inline up to 24 bytes).
    String(CompactString),
    /// `fixed`.
    Fixed(Vec<u8>),
    /// An `enum` symbol.
    Enum(Arc<str>),
    /// `array`.
    Array(Vec<Value>),
    /// `map`, in the order the entries were written.
    Map(Vec<(String, Value)>),
    /// `record`.
    Record(Record),
    /// An exact decimal number (Avro `decimal`, Kafka Connect `Decimal`, Debezium
    /// `VariableScaleDecimal`).
    Decimal(Decimal),
    /// A UUID, as its 16 bytes in network order.
    Uuid([u8; 16]),
    /// A calendar date: days since 1970-01-01.
    Date(i32),
    /// A time of day, with its zone offset when the column has one.
    Time(Time),
    /// A date and time of day, zoned or local.
    Timestamp(Timestamp),
    /// PostgreSQL's `infinity` or `-infinity` in a date or timestamp column.
    Infinity {
        /// `-infinity` (before every date) rather than `infinity`.
        negative: bool,
        /// The kind of column, which decides the finite value it stands in for.
        of: Temporal,
    },
    /// A calendar interval: months, days and microseconds kept apart, because a month has no
    /// fixed number of days and a day no fixed number of seconds across a DST change.
    Interval(Interval),
    /// An exact duration in microseconds (Debezium's `MicroDuration`).
    Duration(i64),
    /// A value the producer did not have: Debezium's placeholder for an unchanged TOASTed
    /// column (`__debezium_unavailable_value`).
    Unavailable,
}

/// An exact decimal number: `unscaled × 10^-scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    /// The unscaled integer as big-endian two's complement, the encoding Avro and Kafka Connect
    /// use; it may be longer than any machine integer. Empty means zero. Up to 16 bytes (38
    /// digits) it is kept inside the value, with no allocation.
    pub unscaled: SmallVec<[u8; 16]>,
    /// Digits after the decimal point; a negative scale multiplies by a power of ten.
    pub scale: i32,
}

/// A time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// Nanoseconds since midnight, from 0 to 24:00:00 inclusive (PostgreSQL accepts `24:00`).
    pub nanos: i64,
    /// The zone offset in seconds east of UTC, for `time with time zone`.
    pub offset: Option<i32>,
}

/// A date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00: of the instant (in UTC) when `offset` is set, of the
    /// wall clock when the timestamp is local (PostgreSQL `timestamp`, Avro `local-timestamp-*`).
    pub seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
    /// `Some(seconds east of UTC)` for a zoned timestamp (0 for UTC), `None` for a local one.
    pub offset: Option<i32>,
}

/// Which kind of column an infinite value stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporal {
    /// A date.
    Date,
    /// A timestamp without time zone.
    LocalTimestamp,
    /// A timestamp with time zone.
    ZonedTimestamp,
}

/// A calendar interval (PostgreSQL `interval`, Avro `duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    /// Whole months (a year is 12).
    pub months: i64,
    /// Whole days.
    pub days: i64,
    /// Microseconds.
    pub micros: i64,
}

/// What every record of one record type shares: its full name and its field names.
///
/// Interned: the process keeps one of each distinct shape and never frees it, so there are as
/// many as record types read (the schema caches keep those too). A decoded record points to
/// its shape without a reference count: records are built on the fetch thread and dropped on
/// the Python thread, and a shared count would move between the two cores twice per record.
#[derive(Debug)]
pub struct RecordShape {
    /// The full name of the record type.
    pub name: Arc<str>,
    /// Field names, in schema order.
    pub names: Arc<[Arc<str>]>,
    /// What a language binding makes once per shape (the Python binding: the field names as
    /// Python strings), reached from a record without a lookup.
    pub binding: OnceLock<Box<dyn Any + Send + Sync>>,
}

/// Shapes are one by name and field names (what a binding made for them goes along).
impl PartialEq for RecordShape {
    fn eq(&self, other: &RecordShape) -> bool {
        self.name == other.name && self.names == other.names
    }
}

impl Eq for RecordShape {}

impl Hash for RecordShape {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.names.hash(state);
    }
}

/// Every shape interned so far.
static SHAPES: Mutex<Option<FxHashSet<&'static RecordShape>>> = Mutex::new(None);

impl RecordShape {
    /// The one shape with this name and these field names.
    #[allow(clippy::mutable_key_type)] // hashed and compared without its binding slot
    pub fn interned(name: Arc<str>, names: Arc<[Arc<str>]>) -> &'static RecordShape {
        let shape = RecordShape {
            name,
            names,
            binding: OnceLock::new(),
        };
        let mut shapes = SHAPES.lock().unwrap_or_else(|e| e.into_inner());
        let shapes = shapes.get_or_insert_with(FxHashSet::default);
        if let Some(known) = shapes.get(&shape) {
            return known;
        }
        let leaked: &'static RecordShape = Box::leak(Box::new(shape));
        shapes.insert(leaked);
        leaked
    }
}

/// A decoded record: field values in schema order, with the shape (name and field names)
/// shared by every record of its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record type's name and field names.
    pub shape: &'static RecordShape,
    /// Field values, in schema order.
    pub values: Vec<Value>,
}

impl Record {
    /// A record of the type called `name` with fields `names`, holding `values`.
    pub fn new(
        name: impl Into<Arc<str>>,
        names: impl Into<Arc<[Arc<str>]>>,
        values: Vec<Value>,
    ) -> Record {
        Record {
            shape: RecordShape::interned(name.into(), names.into()),
            values,
        }
    }

    /// The full name of the record type.
    pub fn name(&self) -> &Arc<str> {
        &self.shape.name
    }

    /// Field names, in schema order.
    pub fn names(&self) -> &Arc<[Arc<str>]> {
        &self.shape.names
    }

    /// The value of the field called `name`, if the record has one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let index = self.names().iter().position(|n| &**n == name)?;
        self.values.get(index)
    }

    /// Take the value of the field called `name` out of the record, leaving `Null` behind.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let index = self.names().iter().position(|n| &**n == name)?;
        self.values.get_mut(index).map(std::mem::take)
    }
}

impl Value {
    /// The string inside a `String` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Enum(s) => Some(s),
            _ => None,
        }
    }

    /// About how many bytes of memory the value holds, itself included; what a bounded
    /// prefetch buffer counts. Names shared between records are not counted.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Value>() + self.held_bytes()
    }

    /// The bytes the value holds outside itself. Inlined where it is called, so that the
    /// values of a record, mostly leaves, cost no call each.
    #[inline(always)]
    fn held_bytes(&self) -> usize {
        match self {
            Value::Bytes(b) | Value::Fixed(b) => b.capacity(),
            // A string of up to 24 bytes is kept inside the value.
            Value::String(s) if s.is_heap_allocated() => s.capacity(),
            Value::Decimal(decimal) if decimal.unscaled.spilled() => decimal.unscaled.capacity(),
            Value::Array(items) => Self::vec_bytes(items),
            Value::Record(record) => Self::vec_bytes(&record.values),
            Value::Map(entries) => {
                entries.capacity() * std::mem::size_of::<(String, Value)>()
                    + entries
                        .iter()
                        .map(|(k, v)| k.capacity() + v.held_bytes())
                        .sum::<usize>()
            }
            _ => 0,
        }
    }

    /// A vector of values' allocation, and what its items hold outside it.
    #[allow(clippy::ptr_arg)] // a slice has no capacity
    #[inline(never)]
    fn vec_bytes(values: &Vec<Value>) -> usize {
        values.capacity() * std::mem::size_of::<Value>()
            + values.iter().map(Value::held_bytes).sum::<usize>()
    }
}
