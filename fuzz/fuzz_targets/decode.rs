//! Framing + decoding with fixed, real-world writer schemas.
//!
//! Input layout: byte 0 selects the schema (`byte & 0x7f`, modulo the number of schemas) and,
//! with bit 7 set, takes the next 5 bytes as a `__value_schema_id` header (so the payload is
//! unframed); the rest is the Kafka message value. It goes through `frame::split` and
//! `Schema::decode`, and a decoded value through what the Python layer computes from it.
//! Any `Err` is fine; a panic, an abort, a timeout or an allocation beyond the budget is not.
#![no_main]

use changestream::frame;
use changestream_fuzz::{budget, convert_like_python, report, schemas, with_budget, SCHEMAS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let schemas = schemas();
    let index = usize::from(selector & 0x7f) % schemas.len();
    let schema = &schemas[index];
    let (header, payload) = if selector & 0x80 != 0 {
        let (header, payload) = rest.split_at(rest.len().min(5));
        (Some(header), payload)
    } else {
        (None, rest)
    };
    with_budget(budget(data.len()), || {
        let Ok((_id, body)) = frame::split(payload, header) else {
            return;
        };
        let result = schema.decode(body);
        report(SCHEMAS[index].0, &result);
        if let Ok(value) = result {
            convert_like_python(&value);
        }
    });
});
