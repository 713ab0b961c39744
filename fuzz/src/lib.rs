//! Shared pieces of changestream's fuzz targets: the writer schemas the `decode` target picks
//! from, an allocation guard that turns "allocated more than the message can justify" into a
//! crash, and a walk over decoded values that does what the Python layer does with them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use changestream::avro::{civil_from_days, Schema, Value};

/// Real-world writer schemas, selected by the first input byte of the `decode` target.
pub const SCHEMAS: [(&str, &str); 4] = [
    // Debezium PostgreSQL envelope: source block, transaction block, a nested Value record
    // referenced by name, `[T, "null"]` unions and most Debezium / Kafka Connect semantic types.
    ("debezium", include_str!("../schemas/debezium.avsc")),
    // Bottled Water row: 3-branch `["null", DateTime, SpecialTime]` unions, shared datatypes
    // records defined once and then referenced by (full) name.
    ("bottledwater", include_str!("../schemas/bottledwater.avsc")),
    // Apache Avro's interoperability schema, verbatim.
    ("interop", include_str!("../schemas/interop.avsc")),
    // Arrays, maps, fixed, enums, recursive records, every Avro logical type, Debezium types.
    ("logical", include_str!("../schemas/logical.avsc")),
];

/// The parsed [`SCHEMAS`], parsed once per process.
pub fn schemas() -> &'static [Schema] {
    static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
    PARSED.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|(name, text)| {
                Schema::parse(text).unwrap_or_else(|e| panic!("embedded schema {name}: {e}"))
            })
            .collect()
    })
}

/// The global allocator of the fuzz targets: the system allocator, counting live bytes, that
/// refuses (returns null, so Rust aborts with "memory allocation of N bytes failed") any
/// allocation that would take the live total above the limit set by [`with_budget`].
pub struct Guarded;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static BASELINE: AtomicUsize = AtomicUsize::new(0);

fn claim(bytes: usize) -> bool {
    let live = LIVE
        .fetch_add(bytes, Ordering::Relaxed)
        .saturating_add(bytes);
    let limit = LIMIT.load(Ordering::Relaxed);
    if live > limit {
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
        // Lift the limit first, so that printing (and the abort that follows) can allocate.
        LIMIT.store(usize::MAX, Ordering::Relaxed);
        eprintln!(
            "changestream-fuzz: allocation budget exceeded: {bytes} more bytes would make \
             {} bytes live, over the budget of {} bytes for this input",
            live - BASELINE.load(Ordering::Relaxed),
            limit - BASELINE.load(Ordering::Relaxed),
        );
        return false;
    }
    PEAK.fetch_max(live, Ordering::Relaxed);
    true
}

fn release(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters only decide whether to forward at all.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !claim(layout.size()) {
            return std::ptr::null_mut();
        }
        let ptr = System.alloc(layout);
        if ptr.is_null() {
            release(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !claim(layout.size()) {
            return std::ptr::null_mut();
        }
        let ptr = System.alloc_zeroed(layout);
        if ptr.is_null() {
            release(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !claim(new_size - old) {
            return std::ptr::null_mut();
        }
        let new = System.realloc(ptr, layout, new_size);
        match (new.is_null(), new_size > old) {
            (true, true) => release(new_size - old),
            (false, false) => release(old - new_size),
            _ => {}
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Guarded = Guarded;

/// How many bytes decoding (and converting) an `input_len`-byte message may hold at once:
/// a fixed allowance (one collection of 65,536 zero-width items is about 4 MiB of `Value`s)
/// plus 1 KiB per input byte, several times what any honest expansion needs (a map entry with
/// an empty key and a `null` value is one byte of input and under 100 bytes of `Value`).
pub fn budget(input_len: usize) -> usize {
    8 * 1024 * 1024 + 1024 * input_len
}

/// Run `f` with at most `budget` bytes of new live allocations; exceeding it aborts.
pub fn with_budget<R>(budget: usize, f: impl FnOnce() -> R) -> R {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // libfuzzer-sys's hook prints the panic and aborts; lift the limit before it runs so
        // that the message and backtrace can be allocated.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LIMIT.store(usize::MAX, Ordering::Relaxed);
            previous(info);
        }));
    });
    let live = LIVE.load(Ordering::Relaxed);
    BASELINE.store(live, Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    LIMIT.store(live.saturating_add(budget), Ordering::Relaxed);
    let result = f();
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    result
}

/// The most bytes live during the last [`with_budget`] run, above what was live before it.
pub fn last_peak() -> usize {
    PEAK.load(Ordering::Relaxed) - BASELINE.load(Ordering::Relaxed)
}

/// Do with a decoded value what the Python conversion (`src/python/convert.rs`) does in Rust
/// before handing it to Python: decimal text, calendar dates of days and timestamps.
pub fn convert_like_python(value: &Value) {
    const SECONDS_PER_DAY: i64 = 86_400;
    match value {
        Value::Array(items) => items.iter().for_each(convert_like_python),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| convert_like_python(v)),
        Value::Record(record) => {
            assert_eq!(record.names.len(), record.values.len(), "record shape");
            record.values.iter().for_each(convert_like_python);
        }
        Value::Decimal(decimal) => {
            let text = decimal.to_string();
            assert!(!text.is_empty());
        }
        Value::Date(days) => {
            civil_from_days(i64::from(*days));
        }
        Value::Timestamp(timestamp) => {
            assert!(timestamp.nanos < 1_000_000_000, "nanos {}", timestamp.nanos);
            check_offset(timestamp.offset);
            if let Some(local) = timestamp
                .seconds
                .checked_add(i64::from(timestamp.offset.unwrap_or(0)))
            {
                civil_from_days(local.div_euclid(SECONDS_PER_DAY));
            }
        }
        Value::Time(time) => {
            assert!(
                (0..=SECONDS_PER_DAY * 1_000_000_000).contains(&time.nanos),
                "time of day {} ns",
                time.nanos
            );
            check_offset(time.offset);
        }
        _ => {}
    }
}

/// A zone offset Python's `timezone` accepts: strictly within a day.
fn check_offset(offset: Option<i32>) {
    if let Some(offset) = offset {
        assert!(offset.unsigned_abs() < 86_400, "zone offset {offset} s");
    }
}

/// With `CHANGESTREAM_FUZZ_VERBOSE=1` in the environment, print what each input decoded to
/// (for checking seeds and triaging; off while fuzzing).
pub fn report(what: &str, result: &changestream::Result<Value>) {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    if *VERBOSE.get_or_init(|| std::env::var_os("CHANGESTREAM_FUZZ_VERBOSE").is_some()) {
        match result {
            Ok(value) => eprintln!("{what}: Ok {:.300}", format!("{value:?}")),
            Err(error) => eprintln!("{what}: Err {error}"),
        }
    }
}
