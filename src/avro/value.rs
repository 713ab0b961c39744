//! Decoded Avro values.

use std::sync::Arc;

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
    /// `string`.
    String(String),
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
}

/// A decoded record: field values in schema order, with the field names shared by every record
/// decoded with the same schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The full name of the record type.
    pub name: Arc<str>,
    /// Field names, in schema order.
    pub names: Arc<[Arc<str>]>,
    /// Field values, in schema order.
    pub values: Vec<Value>,
}

impl Record {
    /// The value of the field called `name`, if the record has one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let index = self.names.iter().position(|n| &**n == name)?;
        self.values.get(index)
    }

    /// Take the value of the field called `name` out of the record, leaving `Null` behind.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let index = self.names.iter().position(|n| &**n == name)?;
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
}
