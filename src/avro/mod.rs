//! Avro: parse a writer schema once, then decode many message bodies with it.
//!
//! [`Schema::parse`] turns the JSON schema text from the registry into a compact tree where named
//! types (records, enums, fixed) live in one table and are referenced by index, so recursive and
//! repeated types cost nothing at decode time. [`Schema::decode`] reads one Avro binary body
//! into a [`Value`], checking every length against the bytes actually present so a malicious
//! message cannot make us allocate more than it holds.

mod decode;
mod schema;
mod value;

pub use schema::{EnumDef, FixedDef, Named, Node, RecordDef, Schema};
pub use value::{Record, Value};
