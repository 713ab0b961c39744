//! Values left in their Avro encoding until someone asks for them.
//!
//! Debezium's `source` block is the largest record of an envelope (a dozen fields, some text)
//! and most applications never read it. Leaving it encoded made decoding the benchmark's
//! Debezium messages 14% faster on one core, and cut the iterator's fetch thread by a fifth
//! of its CPU. [`Schema::decode_deferring`] reads an envelope with one field of its root
//! record checked (as [`Reader::skip`] checks: lengths, UTF-8, union branches, logical types)
//! but not built, and keeps its bytes as an [`Encoded`] value; one field inside it can be
//! read on the way (the `source` block's `table`, which names the change's table).

use std::borrow::Cow;
use std::sync::Arc;

use super::decode::{record_value, Reader};
use super::logical::is_unavailable_placeholder;
use super::schema::{Named, Node, Schema};
use super::value::Value;
use crate::error::{Error, Result};

/// The bytes of one field of a root record, and the schema to decode them with.
#[derive(Debug, Clone)]
pub struct Encoded {
    schema: Arc<Schema>,
    /// The field's index in the schema's root record.
    field: usize,
    bytes: Box<[u8]>,
}

impl Encoded {
    /// The field's value.
    pub fn decode(&self) -> Result<Value> {
        let node = field_node(&self.schema, self.field)
            .ok_or_else(|| Error::Internal("an encoded field outside its schema".into()))?;
        let mut reader = Reader::new(&self.bytes);
        // At the depth it would have had in the whole record.
        let value = reader.value(&self.schema, node, 1)?;
        reader.finish()?;
        Ok(value)
    }

    /// About how many bytes of memory the value holds (as [`Value::heap_bytes`] counts).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Encoded>() + self.bytes.len()
    }
}

/// A value, decoded already or still [`Encoded`].
#[derive(Debug, Clone)]
pub enum LazyValue {
    /// Decoded.
    Decoded(Value),
    /// Decoded when asked for.
    Encoded(Encoded),
}

impl LazyValue {
    /// The value, decoding it if needed. The bytes were checked when read, so decoding them
    /// fails only on what checking cannot see (none of today's values).
    pub fn decode(&self) -> Result<Cow<'_, Value>> {
        match self {
            LazyValue::Decoded(value) => Ok(Cow::Borrowed(value)),
            LazyValue::Encoded(encoded) => encoded.decode().map(Cow::Owned),
        }
    }

    /// About how many bytes of memory the value holds.
    pub fn heap_bytes(&self) -> usize {
        match self {
            LazyValue::Decoded(value) => value.heap_bytes(),
            LazyValue::Encoded(encoded) => encoded.heap_bytes(),
        }
    }
}

/// Which field of a root record [`Schema::decode_deferring`] leaves encoded, and which field
/// of that one (a record, or a union of `null` and a record) it reads on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    /// The index of the deferred field in the root record.
    pub field: usize,
    /// The index of the field read inside it.
    pub keep: usize,
}

impl Deferral {
    /// Leave `field` of `schema`'s root record encoded, reading its record's field `keep`:
    /// `None` when the root is not a plain record, has no such field, or that field is not a
    /// record (or a union of `null` and one) with a field `keep`. Whether the field was null
    /// is then told by whether `keep` was read.
    pub fn new(schema: &Schema, field: &str, keep: &str) -> Option<Deferral> {
        let root = schema.root_record()?;
        if root.logical.is_some() {
            return None;
        }
        let index = root.field_names().iter().position(|n| &**n == field)?;
        let record = schema.record_of(&root.fields[index])?;
        let keep = record.field_names().iter().position(|n| &**n == keep)?;
        Some(Deferral { field: index, keep })
    }
}

/// A body decoded by [`Schema::decode_deferring`].
#[derive(Debug)]
pub struct Deferred {
    /// The root record, with `Null` where the deferred field is.
    pub value: Value,
    /// The deferred field.
    pub encoded: Encoded,
    /// The field read inside it; `None` when the deferred field was null.
    pub kept: Option<Value>,
}

impl Schema {
    /// Decode a body whose root is a record, leaving the field `deferral` names encoded (its
    /// bytes checked as `Reader::skip` checks them). Every byte must be used.
    pub fn decode_deferring(
        self: &Arc<Schema>,
        body: &[u8],
        deferral: Deferral,
    ) -> Result<Deferred> {
        let Some(record) = self.root_record() else {
            return Err(Error::Internal(
                "a deferral of a schema without a root record".into(),
            ));
        };
        let mut reader = Reader::new(body);
        let mut values = Vec::with_capacity(record.fields.len());
        let mut deferred = None;
        for (index, field) in record.fields.iter().enumerate() {
            if index == deferral.field {
                let start = reader.position();
                let kept = reader.skip_keeping(self, field, 1, deferral.keep)?;
                deferred = Some((start..reader.position(), kept));
                values.push(Value::Null);
            } else {
                values.push(reader.value(self, field, 1)?);
            }
        }
        reader.finish()?;
        let Some((range, kept)) = deferred else {
            return Err(Error::Internal(
                "a deferred field outside the root record".into(),
            ));
        };
        let value = record_value(record, values)?;
        Ok(Deferred {
            value,
            encoded: Encoded {
                schema: self.clone(),
                field: deferral.field,
                bytes: body[range].into(),
            },
            kept,
        })
    }
}

/// The node of field `field` of `schema`'s root record.
fn field_node(schema: &Schema, field: usize) -> Option<&Node> {
    schema.root_record()?.fields.get(field)
}

impl Reader<'_> {
    /// Read past a value of `node` as [`Reader::skip`] does; when it is a record (or a union
    /// branch that is one), decode its field `keep` on the way and return it.
    fn skip_keeping(
        &mut self,
        schema: &Schema,
        node: &Node,
        depth: usize,
        keep: usize,
    ) -> Result<Option<Value>> {
        Self::check_depth(depth)?;
        match node {
            Node::Union(branches) => {
                let branch = self.branch(branches)?;
                self.skip_keeping(schema, branch, depth + 1, keep)
            }
            Node::Named(index) => match &schema.named[*index] {
                Named::Record(record) if record.logical.is_none() => {
                    let mut kept = None;
                    for (i, field) in record.fields.iter().enumerate() {
                        match i == keep {
                            true => kept = Some(self.value(schema, field, depth + 1)?),
                            false => self.skip(schema, field, depth + 1)?,
                        }
                    }
                    // As the whole record would have it.
                    Ok(kept.map(|value| {
                        match record.is_kafka_connect() && is_unavailable_placeholder(&value) {
                            true => Value::Unavailable,
                            false => value,
                        }
                    }))
                }
                _ => self.skip(schema, node, depth).map(|()| None),
            },
            _ => self.skip(schema, node, depth).map(|()| None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::write_long;

    const ENVELOPE: &str = r#"{"type": "record", "name": "Envelope", "fields": [
        {"name": "op", "type": "string"},
        {"name": "source", "type": ["null", {"type": "record", "name": "Source", "fields": [
            {"name": "db", "type": "string"},
            {"name": "table", "type": "string"},
            {"name": "lsn", "type": ["null", "long"]}]}]},
        {"name": "ts_ms", "type": "long"}]}"#;

    fn text(out: &mut Vec<u8>, text: &[u8]) {
        write_long(out, text.len() as i64);
        out.extend_from_slice(text);
    }

    /// An envelope body; `source` is `(db, table, lsn)` or null.
    fn body(source: Option<(&[u8], &[u8], i64)>) -> Vec<u8> {
        let mut out = Vec::new();
        text(&mut out, b"c");
        match source {
            Some((db, table, lsn)) => {
                write_long(&mut out, 1);
                text(&mut out, db);
                text(&mut out, table);
                write_long(&mut out, 1);
                write_long(&mut out, lsn);
            }
            None => write_long(&mut out, 0),
        }
        write_long(&mut out, 7);
        out
    }

    fn schema() -> (Arc<Schema>, Deferral) {
        let schema = Arc::new(Schema::parse(ENVELOPE).unwrap());
        let deferral = Deferral::new(&schema, "source", "table").expect("a deferral");
        (schema, deferral)
    }

    #[test]
    fn the_deferred_field_decodes_to_what_the_whole_body_holds() {
        let (schema, deferral) = schema();
        assert_eq!(deferral, Deferral { field: 1, keep: 1 });
        let body = body(Some((b"shop", b"orders", 42)));
        let whole = schema.decode(&body).unwrap();
        let read = schema.decode_deferring(&body, deferral).unwrap();
        assert_eq!(read.kept, Some(Value::String("orders".into())));
        let Value::Record(mut envelope) = read.value else {
            panic!("not a record");
        };
        assert_eq!(envelope.values[1], Value::Null);
        envelope.values[1] = read.encoded.decode().unwrap();
        assert_eq!(Value::Record(envelope), whole);
        let lazy = LazyValue::Encoded(read.encoded);
        let Value::Record(whole) = whole else {
            panic!("not a record");
        };
        assert_eq!(&*lazy.decode().unwrap(), whole.get("source").unwrap());
    }

    #[test]
    fn a_null_block_keeps_nothing() {
        let (schema, deferral) = schema();
        let read = schema.decode_deferring(&body(None), deferral).unwrap();
        assert_eq!(read.kept, None);
        assert_eq!(read.encoded.decode().unwrap(), Value::Null);
    }

    #[test]
    fn a_malformed_block_fails_when_read_not_when_asked_for() {
        let (schema, deferral) = schema();
        let bad_utf8 = body(Some((b"\xff\xfe", b"orders", 1)));
        let error = schema.decode_deferring(&bad_utf8, deferral).unwrap_err();
        assert!(error.to_string().contains("not valid UTF-8"), "{error}");
        let mut truncated = body(Some((b"shop", b"orders", 1)));
        truncated.truncate(9);
        assert!(schema.decode_deferring(&truncated, deferral).is_err());
        let mut trailing = body(Some((b"shop", b"orders", 1)));
        trailing.push(0);
        let error = schema.decode_deferring(&trailing, deferral).unwrap_err();
        assert!(error.to_string().contains("trailing bytes"), "{error}");
    }

    #[test]
    fn only_a_record_field_with_the_kept_field_is_deferred() {
        let (schema, _) = schema();
        assert_eq!(Deferral::new(&schema, "source", "schema"), None);
        assert_eq!(Deferral::new(&schema, "op", "table"), None);
        assert_eq!(Deferral::new(&schema, "transaction", "table"), None);
        let not_a_record = Schema::parse(r#""string""#).unwrap();
        assert_eq!(Deferral::new(&not_a_record, "source", "table"), None);
    }
}
