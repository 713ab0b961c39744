//! Arbitrary schema text, then a body decoded with it.
//!
//! Input layout: `schema JSON text [0xFF body]`. 0xFF never occurs in UTF-8, so it cleanly
//! separates the two; without it the whole input is both the schema text and the body.
//! Any `Err` is fine; a panic, an abort, a timeout or an allocation beyond the budget is not.
#![no_main]

use changestream::avro::Schema;
use changestream_fuzz::{budget, convert_like_python, report, with_budget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, body) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    with_budget(budget(data.len()), || {
        let schema = match Schema::parse(text) {
            Ok(schema) => schema,
            Err(error) => return report("schema", &Err(error)),
        };
        // What change.rs asks of every writer schema.
        let _ = schema.root_record();
        let _ = schema.record_of(&schema.root);
        let result = schema.decode(body);
        report("body", &result);
        if let Ok(value) = result {
            convert_like_python(&value);
        }
    });
});
