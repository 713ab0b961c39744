//! Decoding Avro binary bodies with a parsed [`Schema`].

use super::logical::is_unavailable_placeholder;
use super::schema::{Named, Node, RecordDef, Schema};
use super::value::{Record, Value};
use crate::error::{Error, Result};

/// Deepest nesting of values a message may have; deeper (only possible with recursive schemas)
/// is an error rather than a stack overflow, on any thread's stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most zero-width items (e.g. nulls in arrays) one message may claim, over all its
/// collections together: such items take no bytes, so the message length cannot bound them,
/// and a per-collection limit would multiply through nesting.
const MAX_EMPTY_ITEMS: usize = 1 << 16;

impl Schema {
    /// Decode one Avro binary body (no framing). Every byte must be used.
    pub fn decode(&self, body: &[u8]) -> Result<Value> {
        let mut reader = Reader::new(body);
        let value = reader.value(self, &self.root, 0)?;
        reader.finish()?;
        Ok(value)
    }
}

/// Reads Avro binary primitives from one message body, checking every length against the bytes
/// actually present. Shared with schema resolution (`resolve.rs`) and the Arrow batches read
/// straight from bodies (`arrow::plan`).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Zero-width items the rest of the message may still claim.
    empty_items_left: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            empty_items_left: MAX_EMPTY_ITEMS,
        }
    }

    /// Check that the whole body was used.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(Error::decode(format!(
                "{} trailing bytes after the Avro body ({} bytes read of {}); was it written with another schema?",
                self.buf.len() - self.pos,
                self.pos,
                self.buf.len()
            )));
        }
        Ok(())
    }

    /// Fail if values nest deeper than [`MAX_DEPTH`].
    pub(crate) fn check_depth(depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::decode(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, what: &str) -> Error {
        Error::decode(format!(
            "Avro body truncated: needed {what} at byte {} of {}",
            self.pos,
            self.buf.len()
        ))
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what));
        }
        let slice = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// A zig-zag varint of at most 10 bytes.
    #[inline]
    pub(crate) fn long(&mut self) -> Result<i64> {
        // Most varints (union branches, lengths, small numbers) are one byte: inlined.
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte & 0x80 == 0 {
                self.pos += 1;
                return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
            }
        }
        self.long_of_several_bytes()
    }

    fn long_of_several_bytes(&mut self) -> Result<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.truncated("a varint"))?;
            self.pos += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift == 63 && byte > 1 {
                    break;
                }
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(Error::decode(format!(
            "varint longer than 64 bits ending at byte {}",
            self.pos
        )))
    }

    pub(crate) fn int(&mut self) -> Result<i32> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| Error::decode(format!("int out of range: {value}")))
    }

    /// A non-negative length that fits in what is left of the message.
    pub(crate) fn length(&mut self, what: &str) -> Result<usize> {
        let length = self.long()?;
        if length < 0 {
            return Err(Error::decode(format!("negative {what} length {length}")));
        }
        let length = length as u64;
        if length > self.remaining() as u64 {
            return Err(Error::decode(format!(
                "{what} length {length} exceeds the {} bytes left in the message",
                self.remaining()
            )));
        }
        Ok(length as usize)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>> {
        let length = self.length("bytes")?;
        Ok(self.take(length, "bytes")?.to_vec())
    }

    pub(crate) fn string(&mut self) -> Result<String> {
        self.text().map(str::to_owned)
    }

    /// A string's text, borrowed from the message.
    pub(crate) fn text(&mut self) -> Result<&'a str> {
        let start = self.pos;
        let length = self.length("string")?;
        let raw = self.take(length, "string")?;
        std::str::from_utf8(raw)
            .map_err(|e| Error::decode(format!("string at byte {start} is not valid UTF-8: {e}")))
    }

    pub(crate) fn boolean(&mut self) -> Result<bool> {
        match self.take(1, "a boolean")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::decode(format!("invalid boolean byte {other:#04x}"))),
        }
    }

    pub(crate) fn float(&mut self) -> Result<f32> {
        let raw = self.take(4, "a float")?;
        Ok(f32::from_le_bytes(raw.try_into().expect("4 bytes")))
    }

    pub(crate) fn double(&mut self) -> Result<f64> {
        let raw = self.take(8, "a double")?;
        Ok(f64::from_le_bytes(raw.try_into().expect("8 bytes")))
    }

    /// The item count of the next block of an array or map; 0 ends the collection.
    pub(crate) fn block_count(&mut self, items_can_be_empty: bool) -> Result<usize> {
        let count = self.long()?;
        let count = if count < 0 {
            // A negative count is followed by the block's size in bytes, which we do not need.
            self.long()?;
            count.unsigned_abs()
        } else {
            count as u64
        };
        let limit = if items_can_be_empty {
            self.empty_items_left as u64
        } else {
            self.remaining() as u64
        };
        if count > limit {
            return Err(Error::decode(format!(
                "collection claims {count} more items but the message cannot hold them"
            )));
        }
        if items_can_be_empty {
            self.empty_items_left -= count as usize;
        }
        Ok(count as usize)
    }

    /// The value of `node` at `depth` levels of nesting.
    ///
    /// Inlined for the primitive values most fields hold, so a record's loop builds them in
    /// place; everything else (and any value after a union branch that is not primitive) goes
    /// through [`Reader::composite`].
    #[inline(always)]
    pub(crate) fn value(&mut self, schema: &Schema, node: &Node, depth: usize) -> Result<Value> {
        Self::check_depth(depth)?;
        let (node, depth) = match node {
            Node::Union(branches) => {
                let branch = self.branch(branches)?;
                Self::check_depth(depth + 1)?;
                (branch, depth + 1)
            }
            _ => (node, depth),
        };
        match node {
            Node::Null => Ok(Value::Null),
            Node::Int => Ok(Value::Int(self.int()?)),
            Node::Long => Ok(Value::Long(self.long()?)),
            Node::Double => Ok(Value::Double(self.double()?)),
            Node::String => Ok(Value::String(self.text()?.into())),
            _ => self.composite(schema, node, depth),
        }
    }

    /// The value of any `node` not read in [`Reader::value`] itself (kept out of line, so
    /// that inlining `value` does not inline the whole decoder into every caller). Reached only
    /// through `value`, which has checked `depth`.
    #[inline(never)]
    fn composite(&mut self, schema: &Schema, node: &Node, depth: usize) -> Result<Value> {
        Ok(match node {
            Node::Null => Value::Null,
            Node::Boolean => Value::Boolean(self.boolean()?),
            Node::Int => Value::Int(self.int()?),
            Node::Long => Value::Long(self.long()?),
            Node::Float => Value::Float(self.float()?),
            Node::Double => Value::Double(self.double()?),
            Node::Bytes => Value::Bytes(self.bytes()?),
            Node::String => Value::String(self.text()?.into()),
            Node::Union(branches) => {
                let branch = self.branch(branches)?;
                self.value(schema, branch, depth + 1)?
            }
            Node::Array {
                items,
                items_can_be_empty,
            } => {
                let mut values = Vec::new();
                loop {
                    let count = self.block_count(*items_can_be_empty)?;
                    if count == 0 {
                        break;
                    }
                    values.reserve(count);
                    for _ in 0..count {
                        values.push(self.value(schema, items, depth + 1)?);
                    }
                }
                Value::Array(values)
            }
            Node::Map(values_node) => {
                let mut entries = Vec::new();
                loop {
                    let count = self.block_count(false)?;
                    if count == 0 {
                        break;
                    }
                    entries.reserve(count);
                    for _ in 0..count {
                        let key = self.string()?;
                        let value = self.value(schema, values_node, depth + 1)?;
                        entries.push((key, value));
                    }
                }
                Value::Map(entries)
            }
            // Parsed from the text in place: no `String` to allocate and drop.
            Node::Logical(logical)
                if matches!(logical.base, Node::String) && logical.logical.reads_text() =>
            {
                logical.logical.apply_text(self.text()?)?
            }
            // Likewise from the bytes in place: no `Vec` to allocate and drop.
            Node::Logical(logical)
                if matches!(logical.base, Node::Bytes) && logical.logical.reads_bytes() =>
            {
                let length = self.length("bytes")?;
                logical.logical.apply_bytes(self.take(length, "bytes")?)?
            }
            Node::Logical(logical) => {
                let raw = self.value(schema, &logical.base, depth + 1)?;
                logical.logical.apply(raw)?
            }
            Node::Named(index) => match &schema.named[*index] {
                Named::Record(record) => {
                    // Sized up front: collecting through `Result` would grow it field by field.
                    let mut values = Vec::with_capacity(record.fields.len());
                    for field in &record.fields {
                        values.push(self.value(schema, field, depth + 1)?);
                    }
                    record_value(record, values)?
                }
                Named::Enum(enumeration) => {
                    let index = self.long()?;
                    let symbol = usize::try_from(index)
                        .ok()
                        .and_then(|i| enumeration.symbols.get(i))
                        .ok_or_else(|| {
                            Error::decode(format!(
                                "enum {} has no symbol {index}",
                                enumeration.name
                            ))
                        })?;
                    Value::Enum(symbol.clone())
                }
                Named::Fixed(fixed) => {
                    let value = Value::Fixed(self.take(fixed.size, "a fixed")?.to_vec());
                    match &fixed.logical {
                        Some(logical) => logical.apply(value)?,
                        None => value,
                    }
                }
            },
        })
    }
}

/// A record of type `record` from its fields' values.
pub(crate) fn record_value(record: &RecordDef, mut values: Vec<Value>) -> Result<Value> {
    // Only Kafka Connect (Debezium) writes the placeholder; in anything else, such as a
    // Bottled Water text column, that text is just text.
    if record.is_kafka_connect() {
        for value in values.iter_mut() {
            if is_unavailable_placeholder(value) {
                *value = Value::Unavailable;
            }
        }
    }
    let value = Value::Record(Record {
        shape: record.shape,
        values,
    });
    match &record.logical {
        Some(logical) => logical.apply(value),
        None => Ok(value),
    }
}

impl Reader<'_> {
    /// Read past a value of `node`, checking it as [`Reader::value`] does (lengths, UTF-8,
    /// union branches, enum symbols, logical types) without building it.
    pub(crate) fn skip(&mut self, schema: &Schema, node: &Node, depth: usize) -> Result<()> {
        Self::check_depth(depth)?;
        match node {
            Node::Null => {}
            Node::Boolean => {
                self.boolean()?;
            }
            Node::Int => {
                self.int()?;
            }
            Node::Long => {
                self.long()?;
            }
            Node::Float => {
                self.float()?;
            }
            Node::Double => {
                self.double()?;
            }
            Node::Bytes => {
                let length = self.length("bytes")?;
                self.take(length, "bytes")?;
            }
            Node::String => self.skip_text()?,
            Node::Union(branches) => {
                let branch = self.branch(branches)?;
                self.skip(schema, branch, depth + 1)?;
            }
            Node::Array {
                items,
                items_can_be_empty,
            } => loop {
                let count = self.block_count(*items_can_be_empty)?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.skip(schema, items, depth + 1)?;
                }
            },
            Node::Map(values) => loop {
                let count = self.block_count(false)?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.skip_text()?;
                    self.skip(schema, values, depth + 1)?;
                }
            },
            Node::Named(index) => match &schema.named[*index] {
                Named::Record(record) if record.logical.is_none() => {
                    for field in &record.fields {
                        self.skip(schema, field, depth + 1)?;
                    }
                }
                Named::Enum(enumeration) => {
                    let index = self.long()?;
                    if usize::try_from(index)
                        .ok()
                        .is_none_or(|i| i >= enumeration.symbols.len())
                    {
                        return Err(Error::decode(format!(
                            "enum {} has no symbol {index}",
                            enumeration.name
                        )));
                    }
                }
                Named::Fixed(fixed) if fixed.logical.is_none() => {
                    self.take(fixed.size, "a fixed")?;
                }
                // A logical type can reject its value: read it to check.
                _ => {
                    self.value(schema, node, depth)?;
                }
            },
            Node::Logical(_) => {
                self.value(schema, node, depth)?;
            }
        }
        Ok(())
    }

    /// Read past a string, checking its UTF-8 as [`Reader::text`] does (ASCII, the common
    /// case, is checked word by word).
    fn skip_text(&mut self) -> Result<()> {
        let start = self.pos;
        let length = self.length("string")?;
        let raw = self.take(length, "string")?;
        if !raw.is_ascii() {
            self.pos = start;
            self.text()?;
        }
        Ok(())
    }

    /// The branch of a union the next value is written in.
    pub(crate) fn branch<'n>(&mut self, branches: &'n [Node]) -> Result<&'n Node> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| branches.get(i))
            .ok_or_else(|| {
                Error::decode(format!(
                    "union branch {index} does not exist (the union has {})",
                    branches.len()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(mut out: Vec<u8>, value: i64) -> Vec<u8> {
        crate::avro::write_long(&mut out, value);
        out
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        // A linked list: each level a record whose `next` is null or another level.
        let schema = Schema::parse(
            r#"{"type": "record", "name": "Level", "fields": [
                {"name": "next", "type": ["null", "Level"]}]}"#,
        )
        .unwrap();
        // `levels` records, each but the last choosing the record branch (zigzag 1 = 0x02).
        let body = |levels: usize| {
            let mut body = vec![0x02; levels - 1];
            body.push(0x00);
            body
        };
        // Each level adds a union and its branch: the last `null` sits at depth 2 × levels.
        let deepest_allowed = MAX_DEPTH / 2;
        assert!(schema.decode(&body(deepest_allowed)).is_ok());
        let error = schema.decode(&body(deepest_allowed + 1)).unwrap_err();
        assert!(error.to_string().contains("nesting deeper than"), "{error}");
        assert!(schema.decode(&body(10_000)).is_err());
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        let schema = Schema::parse(r#""long""#).unwrap();
        for value in [
            0,
            -1,
            1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let body = zigzag(Vec::new(), value);
            assert_eq!(schema.decode(&body).unwrap(), Value::Long(value), "{value}");
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let schema = Schema::parse(r#""long""#).unwrap();
        let error = schema.decode(&[0xff; 11]).unwrap_err();
        assert!(error.to_string().contains("varint longer than 64 bits"));
    }

    #[test]
    fn huge_and_negative_lengths_are_rejected_without_allocating() {
        let schema = Schema::parse(r#""string""#).unwrap();
        let huge = zigzag(Vec::new(), i64::MAX / 2);
        assert!(schema
            .decode(&huge)
            .unwrap_err()
            .to_string()
            .contains("exceeds"));
        let negative = zigzag(Vec::new(), -5);
        assert!(schema
            .decode(&negative)
            .unwrap_err()
            .to_string()
            .contains("negative"));
        let array = Schema::parse(r#"{"type":"array","items":"null"}"#).unwrap();
        let claim = zigzag(Vec::new(), 1 << 40);
        assert!(array.decode(&claim).is_err());
    }

    #[test]
    fn invalid_utf8_and_trailing_bytes_are_rejected() {
        let schema = Schema::parse(r#""string""#).unwrap();
        let bad = zigzag(Vec::new(), 2)
            .into_iter()
            .chain([0xc3, 0x28])
            .collect::<Vec<_>>();
        assert!(schema
            .decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        let trailing = zigzag(Vec::new(), 0)
            .into_iter()
            .chain([0])
            .collect::<Vec<_>>();
        assert!(schema
            .decode(&trailing)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }

    #[test]
    fn record_with_union_and_collections() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"r","fields":[
                {"name":"a","type":["null","string"]},
                {"name":"b","type":["int","null"]},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"attrs","type":{"type":"map","values":"long"}}]}"#,
        )
        .unwrap();
        let mut body = zigzag(Vec::new(), 1); // a: branch 1 (string)
        body = zigzag(body, 2);
        body.extend_from_slice(b"hi");
        body = zigzag(body, 1); // b: branch 1 (null)
        body = zigzag(body, -1); // tags: one item, with block size
        body = zigzag(body, 2);
        body = zigzag(body, 1);
        body.push(b'x');
        body = zigzag(body, 0);
        body = zigzag(body, 1); // attrs: one entry
        body = zigzag(body, 1);
        body.push(b'k');
        body = zigzag(body, -7);
        body = zigzag(body, 0);
        let Value::Record(record) = schema.decode(&body).unwrap() else {
            panic!("not a record")
        };
        assert_eq!(record.get("a"), Some(&Value::String("hi".into())));
        assert_eq!(record.get("b"), Some(&Value::Null));
        assert_eq!(
            record.get("tags"),
            Some(&Value::Array(vec![Value::String("x".into())]))
        );
        assert_eq!(
            record.get("attrs"),
            Some(&Value::Map(vec![("k".into(), Value::Long(-7))]))
        );
    }

    #[test]
    fn zero_width_items_are_bounded_per_message_not_per_collection() {
        // Nested arrays of nulls: each inner block claims the most one collection could.
        let schema =
            Schema::parse(r#"{"type":"array","items":{"type":"array","items":"null"}}"#).unwrap();
        let mut body = zigzag(Vec::new(), 4);
        for _ in 0..4 {
            body = zigzag(body, 1 << 15);
            body = zigzag(body, 0);
        }
        body = zigzag(body, 0);
        let error = schema.decode(&body).unwrap_err().to_string();
        assert!(error.contains("cannot hold them"), "{error}");
    }

    #[test]
    fn deep_recursion_is_an_error_not_a_crash() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
        )
        .unwrap();
        let body = vec![2u8; 100_000];
        assert!(schema
            .decode(&body)
            .unwrap_err()
            .to_string()
            .contains("nesting"));
    }
}
