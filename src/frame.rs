//! Confluent wire format: find the schema id of a key or value and the Avro body after it.
//!
//! A framed payload is magic byte `0x00`, a 4-byte big-endian schema id, then the Avro body.
//! Newer Confluent serializers may instead put the id in a `__key_schema_id` /
//! `__value_schema_id` header (`0x00` + 4-byte id) and leave the payload unframed; the header
//! wins when present, as in Confluent's own deserializer.

use crate::error::{Error, Result};

/// Magic byte of the Confluent wire format.
const MAGIC: u8 = 0;

/// Split a payload into its schema id and Avro body. `header` is the raw value of the
/// `__key_schema_id` / `__value_schema_id` header, if the message has one.
pub fn split<'a>(payload: &'a [u8], header: Option<&[u8]>) -> Result<(u32, &'a [u8])> {
    if let Some(header) = header {
        return Ok((header_id(header)?, payload));
    }
    match payload {
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [MAGIC, ..] => Err(Error::decode(format!(
            "payload of {} bytes is too short for the 5-byte Confluent header",
            payload.len()
        ))),
        [] => Err(Error::decode("empty payload (not a null value)")),
        [magic, ..] => Err(Error::decode(format!(
            "unknown magic byte {magic:#04x}: not Confluent-framed Avro (expected 0x00)"
        ))),
    }
}

fn header_id(header: &[u8]) -> Result<u32> {
    match header {
        [MAGIC, a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        [1, ..] => Err(Error::decode(
            "schema id header holds a schema GUID (magic 0x01); only numeric ids are supported",
        )),
        _ => Err(Error::decode(format!(
            "schema id header of {} bytes is not magic 0x00 plus a 4-byte id",
            header.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_framing() {
        assert_eq!(
            split(&[0, 0, 0, 1, 2, 9, 9], None).unwrap(),
            (258, &[9u8, 9][..])
        );
        assert_eq!(split(&[0, 0, 0, 0, 7], None).unwrap(), (7, &[][..]));
    }

    #[test]
    fn header_wins_over_prefix() {
        assert_eq!(
            split(&[2, 4], Some(&[0, 0, 0, 0, 42])).unwrap(),
            (42, &[2u8, 4][..])
        );
    }

    #[test]
    fn bad_framing_is_named() {
        let magic = split(b"{\"id\":1}", None).unwrap_err().to_string();
        assert!(magic.contains("unknown magic byte 0x7b"), "{magic}");
        let short = split(&[0, 0, 1], None).unwrap_err().to_string();
        assert!(short.contains("too short"), "{short}");
        assert!(split(&[], None).is_err());
        assert!(split(&[1], Some(&[1; 17])).is_err());
    }
}
