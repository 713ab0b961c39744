//! Avro: parse a writer schema once, then decode many message bodies with it.
//!
//! [`Schema::parse`] turns the JSON schema text from the registry into a compact tree where named
//! types (records, enums, fixed) live in one table and are referenced by index, so recursive and
//! repeated types cost nothing at decode time. [`Schema::decode`] reads one Avro binary body
//! into a [`Value`], checking every length against the bytes actually present so a malicious
//! message cannot make us allocate more than it holds.
//!
//! Logical and semantic types (Avro `logicalType`, Debezium's `connect.name` types, Bottled
//! Water's date/time records) are recognised once per schema node at parse time
//! ([`Logical`]) and decode straight into typed values ([`Value::Decimal`],
//! [`Value::Timestamp`], ...), so the Python and Arrow layers never look at schemas.
//!
//! [`Resolved`] reads data written with one schema as values of another (Avro schema
//! resolution), for applications that give a reader schema.

mod decimal;
pub(crate) mod decode;
mod encoded;
mod logical;
mod resolve;
mod schema;
pub(crate) mod temporal;
mod value;

pub(crate) use decimal::check_unscaled;
pub use decimal::SMALL_TEXT_BYTES;
pub use encoded::{Deferral, Deferred, Encoded, LazyValue};
pub(crate) use logical::is_unavailable_placeholder;
pub use logical::{InfinitySentinels, Logical, TimeUnit, UNAVAILABLE_PLACEHOLDER};
pub use resolve::Resolved;
pub use schema::{EnumDef, FieldDefault, FixedDef, LogicalNode, Named, Node, RecordDef, Schema};
pub use temporal::civil_from_days;
pub use value::{Decimal, Interval, Record, RecordShape, Temporal, Time, Timestamp, Value};

/// Write `value` as an Avro `long` (zigzag varint): the one encoder the tests share.
#[cfg(test)]
pub(crate) fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
