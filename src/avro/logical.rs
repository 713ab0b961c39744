//! Logical and semantic types: what an `int`, `long`, `string`, `bytes`, `fixed` or record
//! *means*, worked out once per schema node when the schema is parsed.
//!
//! Three vocabularies name these meanings, and a change stream can carry all three:
//!
//! - Avro's own `logicalType` attribute on a type object (`decimal`, `uuid`, `date`,
//!   `time-*`, `timestamp-*`, `local-timestamp-*`, `duration`). Per the Avro specification an
//!   invalid one (a decimal whose scale exceeds its precision, a `date` on a `string`, a
//!   `logicalType` written on a *field* instead of its type) is ignored and the value decodes as
//!   its underlying type.
//! - Kafka Connect's `connect.name`, which Debezium uses for its own semantic types
//!   (`io.debezium.time.MicroTimestamp` on a `long`, ...); those never carry a `logicalType`.
//!   Connect's `org.apache.kafka.connect.data.Decimal` carries its scale in `connect.parameters`.
//! - Bottled Water's records in `com.martinkl.bottledwater.datatypes` (`Date`, `DateTime`, ...)
//!   and its `SpecialTime` enum for PostgreSQL's `infinity`.
//!
//! [`Logical::apply`] turns the plain decoded value into the semantic [`Value`] variant,
//! checking ranges so that every semantic value is well formed (a time of day within 24 hours,
//! a real calendar date, an offset within a day).

use serde_json::{Map, Value as Json};

use super::schema::Node;
use super::temporal::{
    check_offset, checked_days, civil_from_days, parse_iso_interval, parse_zoned_time,
    parse_zoned_timestamp, MICROS_PER_SECOND, NANOS_PER_DAY, NANOS_PER_SECOND, SECONDS_PER_DAY,
};
use super::value::{Decimal, Interval, Temporal, Time, Timestamp, Value};
use crate::error::{Error, Result};

/// Debezium's default `unavailable.value.placeholder`: what it writes instead of an unchanged
/// TOASTed column it could not read.
pub const UNAVAILABLE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// pgjdbc's `PGStatement.DATE_POSITIVE_INFINITY`, which Debezium writes for `infinity` in
/// microsecond `timestamp` columns, and divided by 1000 in millisecond ones (`Timestamp`, and
/// Kafka Connect's `Timestamp` under `time.precision.mode=connect`).
const PGJDBC_POSITIVE_INFINITY: i64 = 9_223_372_036_825_200_000;
/// pgjdbc's `PGStatement.DATE_NEGATIVE_INFINITY`.
const PGJDBC_NEGATIVE_INFINITY: i64 = -9_223_372_036_832_400_000;

/// Debezium 3.x's `io.debezium.time.Date` for `infinity`: the epoch day of +5877611-06-21.
const DEBEZIUM_DATE_POSITIVE_INFINITY: i32 = 2_146_033_979;
/// Debezium's `io.debezium.time.Date` for `-infinity`: the epoch day of -5877611-06-22.
const DEBEZIUM_DATE_NEGATIVE_INFINITY: i32 = -2_147_472_691;
/// What Debezium before debezium/dbz#2524 wrote for `infinity` dates: -5877611-06-21, a
/// wrapped-around day far outside PostgreSQL's date range, so it cannot be a real date.
/// Debezium 3.6's streaming (pgoutput) path still writes it.
const DEBEZIUM_DATE_POSITIVE_INFINITY_LEGACY: i32 = -2_147_472_692;
/// What Debezium 3.6's snapshot (JDBC) path writes for `infinity` dates: pgjdbc's infinity
/// sentinel in days, wrapped to 32 bits. Both are about 1.7 million years BC, far outside
/// PostgreSQL's dates (from 4713 BC), so neither can be a real date.
const DEBEZIUM_SNAPSHOT_DATE_POSITIVE_INFINITY: i32 = -622_191_234;
/// The same for `-infinity`.
const DEBEZIUM_SNAPSHOT_DATE_NEGATIVE_INFINITY: i32 = -625_821_272;

/// Where Bottled Water's shared date/time record types live.
const BOTTLED_WATER_TYPES: &str = "com.martinkl.bottledwater.datatypes.";

/// The unit of an integer time or timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl TimeUnit {
    fn nanos(self) -> i64 {
        match self {
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Micros => 1_000,
            TimeUnit::Nanos => 1,
        }
    }

    fn per_second(self) -> i64 {
        NANOS_PER_SECOND / self.nanos()
    }
}

/// How an integer timestamp column writes PostgreSQL's `infinity` and `-infinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfinitySentinels {
    /// It cannot (plain Avro timestamps).
    None,
    /// pgjdbc's ±9223372036825200000 (Debezium and Kafka Connect millisecond and microsecond
    /// timestamps).
    Pgjdbc,
    /// `Long.MAX_VALUE` / `Long.MIN_VALUE` (Debezium's `NanoTimestamp`).
    LongLimits,
}

/// The meaning of a schema node, decided once at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logical {
    /// `bytes` or `fixed` holding an unscaled two's-complement integer.
    Decimal {
        /// Digits after the point.
        scale: i32,
    },
    /// A UUID: a `string` in its canonical text form, or a 16-byte `fixed`.
    Uuid,
    /// An `int` of days since 1970-01-01.
    Date {
        /// Whether Debezium's ±infinity day numbers mean infinity (`io.debezium.time.Date`, and
        /// Kafka Connect's `Date`, which Debezium's `connect` time mode writes them into).
        debezium_infinity: bool,
    },
    /// An `int` or `long` time of day.
    Time(TimeUnit),
    /// A `long` timestamp since the epoch.
    Timestamp {
        /// Its unit.
        unit: TimeUnit,
        /// Whether it is an instant (UTC) rather than a local wall-clock reading.
        zoned: bool,
        /// How it writes infinity.
        infinity: InfinitySentinels,
    },
    /// Avro `duration`: a 12-byte `fixed` of little-endian months, days and milliseconds.
    Duration,
    /// Debezium's `MicroDuration`: a `long` of microseconds.
    MicroDuration,
    /// Debezium's `ZonedTimestamp` string.
    ZonedTimestamp,
    /// Debezium's `ZonedTime` string.
    ZonedTime,
    /// Debezium's `Interval` string (ISO-8601 duration).
    IsoInterval,
    /// Debezium's `VariableScaleDecimal` record `{scale: int, value: bytes}`.
    VariableScaleDecimal,
    /// Bottled Water's `Date{year, month, day}`.
    BottledWaterDate,
    /// Bottled Water's `DateTime{year, month, day, hour, minute, second, micro}`, with
    /// `zoneOffset` (seconds east of UTC) when `zoned` (`DateTimeTZ`).
    BottledWaterDateTime {
        /// Whether the record has a `zoneOffset` field.
        zoned: bool,
    },
    /// Bottled Water's `TimeTZ{micro, zoneOffset}`.
    BottledWaterTimeTz,
    /// Bottled Water's `Interval{year, month, day, hour, minute, second, micro}`.
    BottledWaterInterval,
    /// Bottled Water's `SpecialTime` enum next to a date or timestamp record in a union.
    SpecialTime(Temporal),
}

/// The meaning of a primitive type object such as
/// `{"type": "long", "connect.name": "io.debezium.time.MicroTimestamp"}`.
pub(crate) fn of_primitive(base: &Node, object: &Map<String, Json>) -> Option<Logical> {
    let connect_name = object.get("connect.name").and_then(Json::as_str);
    // Debezium's own types never carry a logicalType: connect.name is all there is.
    if let Some(logical) = connect_name.and_then(|name| debezium(name, base)) {
        return Some(logical);
    }
    let avro = object
        .get("logicalType")
        .and_then(Json::as_str)
        .and_then(|logical_type| avro_logical(logical_type, base, object));
    match avro {
        // Kafka Connect's Timestamp is timestamp-millis and its Date is date; Debezium's
        // `connect` time mode writes its infinity sentinels into them.
        Some(Logical::Timestamp { unit, zoned, .. }) if connect_name == Some(CONNECT_TIMESTAMP) => {
            Some(Logical::Timestamp {
                unit,
                zoned,
                infinity: InfinitySentinels::Pgjdbc,
            })
        }
        Some(Logical::Date { .. }) if connect_name == Some(CONNECT_DATE) => Some(Logical::Date {
            debezium_infinity: true,
        }),
        Some(logical) => Some(logical),
        // Connect types written without (or with an invalid) Avro logicalType, e.g. a Decimal
        // whose scale exceeds its precision ("legacy" form).
        None => connect_name.and_then(|name| kafka_connect(name, base, object)),
    }
}

/// The meaning of a `fixed` type object.
pub(crate) fn of_fixed(size: usize, object: &Map<String, Json>) -> Option<Logical> {
    match object.get("logicalType").and_then(Json::as_str)? {
        "decimal" => {
            decimal_scale(object, max_fixed_precision(size)).map(|scale| Logical::Decimal { scale })
        }
        "uuid" if size == 16 => Some(Logical::Uuid),
        "duration" if size == 12 => Some(Logical::Duration),
        _ => None,
    }
}

/// The meaning of a record, from its full name or `connect.name` and its fields. A record that
/// has the right name but not the expected fields is left a plain record.
pub(crate) fn of_record(
    full_name: &str,
    connect_name: Option<&str>,
    field_names: &[std::sync::Arc<str>],
    fields: &[Node],
) -> Option<Logical> {
    let has_fields = |expected: &[(&str, Kind)]| {
        field_names.len() == expected.len()
            && expected.iter().zip(field_names.iter().zip(fields)).all(
                |((name, kind), (field_name, node))| **field_name == **name && kind.admits(node),
            )
    };
    if connect_name == Some("io.debezium.data.VariableScaleDecimal") {
        return has_fields(&[("scale", Kind::Integer), ("value", Kind::Bytes)])
            .then_some(Logical::VariableScaleDecimal);
    }
    const DATE: [(&str, Kind); 3] = [
        ("year", Kind::Integer),
        ("month", Kind::Integer),
        ("day", Kind::Integer),
    ];
    const DATE_TIME: [(&str, Kind); 7] = [
        ("year", Kind::Integer),
        ("month", Kind::Integer),
        ("day", Kind::Integer),
        ("hour", Kind::Integer),
        ("minute", Kind::Integer),
        ("second", Kind::Integer),
        ("micro", Kind::Integer),
    ];
    let zoned_date_time = || {
        let mut fields = DATE_TIME.to_vec();
        fields.push(("zoneOffset", Kind::Integer));
        fields
    };
    match full_name.strip_prefix(BOTTLED_WATER_TYPES)? {
        "Date" => has_fields(&DATE).then_some(Logical::BottledWaterDate),
        // Older Bottled Water names the timestamptz record DateTime too; its zoneOffset field
        // tells them apart.
        "DateTime" | "DateTimeTZ" if has_fields(&zoned_date_time()) => {
            Some(Logical::BottledWaterDateTime { zoned: true })
        }
        "DateTime" => {
            has_fields(&DATE_TIME).then_some(Logical::BottledWaterDateTime { zoned: false })
        }
        "TimeTZ" => has_fields(&[("micro", Kind::Integer), ("zoneOffset", Kind::Integer)])
            .then_some(Logical::BottledWaterTimeTz),
        "Interval" => has_fields(&DATE_TIME).then_some(Logical::BottledWaterInterval),
        _ => None,
    }
}

/// Whether an enum is Bottled Water's `SpecialTime` (whatever namespace it ended up in: it is
/// written without one, so it takes the enclosing record's).
pub(crate) fn is_special_time(full_name: &str, symbols: &[std::sync::Arc<str>]) -> bool {
    let name = full_name.rsplit('.').next().unwrap_or(full_name);
    name == "SpecialTime"
        && !symbols.is_empty()
        && symbols
            .iter()
            .all(|s| &**s == "POS_INFINITY" || &**s == "NEG_INFINITY")
}

/// The field types the record semantics accept.
#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Bytes,
}

impl Kind {
    fn admits(self, node: &Node) -> bool {
        match self {
            Kind::Integer => matches!(node, Node::Int | Node::Long),
            Kind::Bytes => matches!(node, Node::Bytes),
        }
    }
}

const CONNECT_DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const CONNECT_DATE: &str = "org.apache.kafka.connect.data.Date";
const CONNECT_TIME: &str = "org.apache.kafka.connect.data.Time";
const CONNECT_TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";

fn debezium(connect_name: &str, base: &Node) -> Option<Logical> {
    use InfinitySentinels::{LongLimits, Pgjdbc};
    let local = |unit, infinity| Logical::Timestamp {
        unit,
        zoned: false,
        infinity,
    };
    Some(match (connect_name, base) {
        ("io.debezium.time.Date", Node::Int) => Logical::Date {
            debezium_infinity: true,
        },
        ("io.debezium.time.Time", Node::Int) => Logical::Time(TimeUnit::Millis),
        ("io.debezium.time.MicroTime", Node::Long) => Logical::Time(TimeUnit::Micros),
        ("io.debezium.time.NanoTime", Node::Long) => Logical::Time(TimeUnit::Nanos),
        // PostgreSQL `timestamp` has no zone: Debezium encodes the wall clock as if it were UTC.
        ("io.debezium.time.Timestamp", Node::Long) => local(TimeUnit::Millis, Pgjdbc),
        ("io.debezium.time.MicroTimestamp", Node::Long) => local(TimeUnit::Micros, Pgjdbc),
        ("io.debezium.time.NanoTimestamp", Node::Long) => local(TimeUnit::Nanos, LongLimits),
        ("io.debezium.time.ZonedTimestamp", Node::String) => Logical::ZonedTimestamp,
        ("io.debezium.time.ZonedTime", Node::String) => Logical::ZonedTime,
        ("io.debezium.time.MicroDuration", Node::Long) => Logical::MicroDuration,
        ("io.debezium.time.Interval", Node::String) => Logical::IsoInterval,
        ("io.debezium.data.Uuid", Node::String) => Logical::Uuid,
        _ => return None,
    })
}

fn avro_logical(logical_type: &str, base: &Node, object: &Map<String, Json>) -> Option<Logical> {
    let timestamp = |unit, zoned| Logical::Timestamp {
        unit,
        zoned,
        infinity: InfinitySentinels::None,
    };
    Some(match (logical_type, base) {
        ("decimal", Node::Bytes) => Logical::Decimal {
            scale: decimal_scale(object, u64::MAX)?,
        },
        ("uuid", Node::String) => Logical::Uuid,
        ("date", Node::Int) => Logical::Date {
            debezium_infinity: false,
        },
        ("time-millis", Node::Int) => Logical::Time(TimeUnit::Millis),
        ("time-micros", Node::Long) => Logical::Time(TimeUnit::Micros),
        ("timestamp-millis", Node::Long) => timestamp(TimeUnit::Millis, true),
        ("timestamp-micros", Node::Long) => timestamp(TimeUnit::Micros, true),
        ("timestamp-nanos", Node::Long) => timestamp(TimeUnit::Nanos, true),
        ("local-timestamp-millis", Node::Long) => timestamp(TimeUnit::Millis, false),
        ("local-timestamp-micros", Node::Long) => timestamp(TimeUnit::Micros, false),
        ("local-timestamp-nanos", Node::Long) => timestamp(TimeUnit::Nanos, false),
        _ => return None,
    })
}

fn kafka_connect(connect_name: &str, base: &Node, object: &Map<String, Json>) -> Option<Logical> {
    Some(match (connect_name, base) {
        (CONNECT_DECIMAL, Node::Bytes) => {
            // Connect parameters are strings ({"scale": "2"}); accept a number too.
            let scale = object.get("connect.parameters")?.get("scale")?;
            let scale = match scale {
                Json::String(text) => text.parse().ok()?,
                other => i32::try_from(other.as_i64()?).ok()?,
            };
            Logical::Decimal { scale }
        }
        (CONNECT_DATE, Node::Int) => Logical::Date {
            debezium_infinity: true,
        },
        (CONNECT_TIME, Node::Int) => Logical::Time(TimeUnit::Millis),
        (CONNECT_TIMESTAMP, Node::Long) => Logical::Timestamp {
            unit: TimeUnit::Millis,
            zoned: true,
            infinity: InfinitySentinels::Pgjdbc,
        },
        _ => return None,
    })
}

/// The scale of a valid Avro decimal: `precision` a positive integer no larger than
/// `max_precision`, `scale` (default 0) an integer from 0 to `precision`.
fn decimal_scale(object: &Map<String, Json>, max_precision: u64) -> Option<i32> {
    let precision = object.get("precision")?.as_u64()?;
    let scale = match object.get("scale") {
        None => 0,
        Some(scale) => scale.as_u64()?,
    };
    if precision == 0 || precision > max_precision || scale > precision {
        return None;
    }
    i32::try_from(scale).ok()
}

/// The most decimal digits a signed `size`-byte integer always holds: floor(log10(2^(8·size−1) − 1)).
fn max_fixed_precision(size: usize) -> u64 {
    if size == 0 {
        return 0;
    }
    // 2^(8n-1) is never a power of ten, and for the sizes schemas use the product stays far
    // from an integer, so the float floor is exact.
    ((size as f64 * 8.0 - 1.0) * std::f64::consts::LOG10_2).floor() as u64
}

/// Whether a value is Debezium's placeholder for an unchanged TOASTed column: the text for
/// text-like columns, its bytes for `bytea`, or a one-element array of either for array columns.
pub(crate) fn is_unavailable_placeholder(value: &Value) -> bool {
    let scalar = |value: &Value| match value {
        Value::String(text) => text == UNAVAILABLE_PLACEHOLDER,
        Value::Bytes(bytes) => bytes == UNAVAILABLE_PLACEHOLDER.as_bytes(),
        _ => false,
    };
    match value {
        Value::Array(items) => items.len() == 1 && scalar(&items[0]),
        other => scalar(other),
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(i64::from(*i)),
        Value::Long(l) => Some(*l),
        _ => None,
    }
}

/// The integer fields of a record, in order (already checked at parse time).
fn integers<const N: usize>(value: &Value) -> Option<[i64; N]> {
    let Value::Record(record) = value else {
        return None;
    };
    let mut out = [0; N];
    for (slot, field) in out.iter_mut().zip(&record.values) {
        *slot = integer(field)?;
    }
    (record.values.len() == N).then_some(out)
}

fn time_of_day(nanos: Option<i64>, raw: i64, what: &str) -> Result<i64> {
    match nanos {
        Some(nanos) if (0..=NANOS_PER_DAY).contains(&nanos) => Ok(nanos),
        _ => Err(Error::decode(format!(
            "{what} {raw} is not a time of day (00:00:00 to 24:00:00)"
        ))),
    }
}

impl Logical {
    /// Whether the logical type is read from a `string`'s text, so a decoder can hand over
    /// the text where it lies in the message instead of allocating a `String` for it.
    pub(crate) fn reads_text(&self) -> bool {
        matches!(
            self,
            Logical::Uuid | Logical::ZonedTimestamp | Logical::ZonedTime | Logical::IsoInterval
        )
    }

    /// The value of a text-based logical type (see [`Logical::reads_text`]).
    pub(crate) fn apply_text(&self, text: &str) -> Result<Value> {
        Ok(match self {
            Logical::Uuid => Value::Uuid(
                parse_uuid(text).ok_or_else(|| Error::decode(format!("invalid UUID {text:?}")))?,
            ),
            Logical::ZonedTimestamp | Logical::ZonedTime | Logical::IsoInterval
                if text == UNAVAILABLE_PLACEHOLDER =>
            {
                Value::Unavailable
            }
            Logical::ZonedTimestamp => match parse_zoned_timestamp(text)? {
                Value::Timestamp(timestamp) => Value::Timestamp(check_timestamp(timestamp)?),
                other => other,
            },
            Logical::ZonedTime => Value::Time(parse_zoned_time(text)?),
            Logical::IsoInterval => Value::Interval(parse_iso_interval(text)?),
            other => {
                return Err(Error::decode(format!(
                    "internal error: {other:?} is not read from text"
                )))
            }
        })
    }

    /// Whether the logical type is read from `bytes` where they lie in the message (a decimal,
    /// kept inside its value up to 16 bytes), so a decoder need not allocate a `Vec` for them.
    pub(crate) fn reads_bytes(&self) -> bool {
        matches!(self, Logical::Decimal { .. })
    }

    /// The value of a bytes-based logical type (see [`Logical::reads_bytes`]).
    pub(crate) fn apply_bytes(&self, bytes: &[u8]) -> Result<Value> {
        match self {
            Logical::Decimal { scale } => Ok(Value::Decimal(Decimal::new(bytes, *scale)?)),
            other => Err(Error::decode(format!(
                "internal error: {other:?} is not read from bytes"
            ))),
        }
    }

    /// Turn a value decoded with the underlying type into its semantic value.
    pub(crate) fn apply(&self, value: Value) -> Result<Value> {
        let mismatch = |value: &Value| {
            Error::decode(format!(
                "internal error: {self:?} cannot apply to the decoded value {value:?}"
            ))
        };
        Ok(match (*self, value) {
            (Logical::Decimal { .. }, Value::Bytes(bytes) | Value::Fixed(bytes)) => {
                return self.apply_bytes(&bytes)
            }
            (
                Logical::Uuid | Logical::ZonedTimestamp | Logical::ZonedTime | Logical::IsoInterval,
                Value::String(text),
            ) => return self.apply_text(&text),
            (Logical::Uuid, Value::Fixed(bytes)) => Value::Uuid(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| mismatch(&Value::Fixed(bytes.clone())))?,
            ),
            (Logical::Date { debezium_infinity }, Value::Int(days)) => {
                let infinity = |negative| Value::Infinity {
                    negative,
                    of: Temporal::Date,
                };
                match days {
                    DEBEZIUM_DATE_POSITIVE_INFINITY
                    | DEBEZIUM_DATE_POSITIVE_INFINITY_LEGACY
                    | DEBEZIUM_SNAPSHOT_DATE_POSITIVE_INFINITY
                        if debezium_infinity =>
                    {
                        infinity(false)
                    }
                    DEBEZIUM_DATE_NEGATIVE_INFINITY | DEBEZIUM_SNAPSHOT_DATE_NEGATIVE_INFINITY
                        if debezium_infinity =>
                    {
                        infinity(true)
                    }
                    days => Value::Date(check_date(i64::from(days))?),
                }
            }
            (Logical::Time(unit), value @ (Value::Int(_) | Value::Long(_))) => {
                let raw = integer(&value).ok_or_else(|| mismatch(&value))?;
                let nanos = time_of_day(raw.checked_mul(unit.nanos()), raw, "time")?;
                Value::Time(Time {
                    nanos,
                    offset: None,
                })
            }
            (
                Logical::Timestamp {
                    unit,
                    zoned,
                    infinity,
                },
                Value::Long(raw),
            ) => {
                let of = if zoned {
                    Temporal::ZonedTimestamp
                } else {
                    Temporal::LocalTimestamp
                };
                let (positive, negative) = match (infinity, unit) {
                    (InfinitySentinels::None, _) => (None, None),
                    (InfinitySentinels::Pgjdbc, TimeUnit::Millis) => (
                        Some(PGJDBC_POSITIVE_INFINITY / 1000),
                        Some(PGJDBC_NEGATIVE_INFINITY / 1000),
                    ),
                    (InfinitySentinels::Pgjdbc, _) => (
                        Some(PGJDBC_POSITIVE_INFINITY),
                        Some(PGJDBC_NEGATIVE_INFINITY),
                    ),
                    (InfinitySentinels::LongLimits, _) => (Some(i64::MAX), Some(i64::MIN)),
                };
                if Some(raw) == positive || Some(raw) == negative {
                    Value::Infinity {
                        negative: Some(raw) == negative,
                        of,
                    }
                } else {
                    let per_second = unit.per_second();
                    Value::Timestamp(check_timestamp(Timestamp {
                        seconds: raw.div_euclid(per_second),
                        nanos: (raw.rem_euclid(per_second) * unit.nanos()) as u32,
                        offset: zoned.then_some(0),
                    })?)
                }
            }
            (Logical::Duration, Value::Fixed(bytes)) => {
                let part = |i: usize| -> Option<i64> {
                    let slice = bytes.get(i * 4..i * 4 + 4)?;
                    Some(i64::from(u32::from_le_bytes(slice.try_into().ok()?)))
                };
                match (part(0), part(1), part(2)) {
                    (Some(months), Some(days), Some(millis)) => Value::Interval(Interval {
                        months,
                        days,
                        micros: millis * 1000,
                    }),
                    _ => return Err(mismatch(&Value::Fixed(bytes))),
                }
            }
            (Logical::MicroDuration, Value::Long(micros)) => Value::Duration(micros),
            // The record's `value` bytes were Debezium's placeholder (see the decoder).
            (Logical::VariableScaleDecimal, Value::Record(record))
                if record.values.contains(&Value::Unavailable) =>
            {
                Value::Unavailable
            }
            (Logical::VariableScaleDecimal, Value::Record(mut record)) => {
                match (
                    record.values.first().and_then(integer),
                    record.values.get_mut(1),
                ) {
                    (Some(scale), Some(Value::Bytes(unscaled))) => {
                        let scale = i32::try_from(scale).map_err(|_| {
                            Error::decode(format!("decimal scale {scale} out of range"))
                        })?;
                        Value::Decimal(Decimal::new(unscaled, scale)?)
                    }
                    _ => return Err(mismatch(&Value::Record(record))),
                }
            }
            (Logical::BottledWaterDate, value) => {
                let [year, month, day] = integers(&value).ok_or_else(|| mismatch(&value))?;
                let days = checked_days(year, month, day)
                    .and_then(|days| i32::try_from(days).ok())
                    .ok_or_else(|| {
                        Error::decode(format!("invalid Bottled Water Date {year}-{month}-{day}"))
                    })?;
                Value::Date(check_date(i64::from(days))?)
            }
            (Logical::BottledWaterDateTime { zoned }, value) => {
                bottled_water_date_time(&value, zoned).ok_or_else(|| mismatch(&value))??
            }
            (Logical::BottledWaterTimeTz, value) => {
                let [micro, offset] = integers(&value).ok_or_else(|| mismatch(&value))?;
                let nanos =
                    time_of_day(micro.checked_mul(1000), micro, "Bottled Water TimeTZ micro")?;
                Value::Time(Time {
                    nanos,
                    offset: Some(check_offset(offset, "Bottled Water TimeTZ")?),
                })
            }
            (Logical::BottledWaterInterval, value) => {
                let [year, month, day, hour, minute, second, micro] =
                    integers(&value).ok_or_else(|| mismatch(&value))?;
                let micros = hour
                    .checked_mul(3600)
                    .and_then(|s| s.checked_add(minute.checked_mul(60)?))
                    .and_then(|s| s.checked_add(second))
                    .and_then(|s| s.checked_mul(MICROS_PER_SECOND))
                    .and_then(|us| us.checked_add(micro));
                let months = year.checked_mul(12).and_then(|m| m.checked_add(month));
                match (months, micros) {
                    (Some(months), Some(micros)) => Value::Interval(Interval {
                        months,
                        days: day,
                        micros,
                    }),
                    _ => return Err(Error::decode("Bottled Water Interval out of range")),
                }
            }
            (Logical::SpecialTime(of), Value::Enum(symbol)) => match &*symbol {
                "POS_INFINITY" => Value::Infinity {
                    negative: false,
                    of,
                },
                "NEG_INFINITY" => Value::Infinity { negative: true, of },
                _ => return Err(mismatch(&Value::Enum(symbol))),
            },
            (_, value) => return Err(mismatch(&value)),
        })
    }
}

/// A Bottled Water `DateTime` / `DateTimeTZ` record: `None` if the record is not one (a bug),
/// `Some(Err)` if its fields do not name a real moment.
fn bottled_water_date_time(value: &Value, zoned: bool) -> Option<Result<Value>> {
    let (fields, offset) = if zoned {
        let [year, month, day, hour, minute, second, micro, offset] = integers(value)?;
        ([year, month, day, hour, minute, second, micro], offset)
    } else {
        (integers::<7>(value)?, 0)
    };
    let [year, month, day, hour, minute, second, micro] = fields;
    let invalid = || {
        Error::decode(format!(
            "invalid Bottled Water DateTime {year}-{month}-{day} {hour}:{minute}:{second}.{micro}"
        ))
    };
    let time_is_valid = (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second)
        && (0..MICROS_PER_SECOND).contains(&micro);
    let Some(days) = checked_days(year, month, day).filter(|_| time_is_valid) else {
        return Some(Err(invalid()));
    };
    let offset = match check_offset(offset, "Bottled Water DateTimeTZ") {
        Ok(offset) => offset,
        Err(error) => return Some(Err(error)),
    };
    // The record holds the wall clock where the offset applies; the instant is that minus it.
    let local = days * SECONDS_PER_DAY + (hour * 60 + minute) * 60 + second;
    Some(
        check_timestamp(Timestamp {
            seconds: local - i64::from(offset),
            nanos: (micro * 1000) as u32,
            offset: zoned.then_some(offset),
        })
        .map(Value::Timestamp),
    )
}

/// The years a date or timestamp may have: Python's `date` and `datetime` hold no others, and
/// the Arrow batches give what the iterator gives. Checked while decoding, so that a value
/// outside them is a decode error `on_decode_error` applies to, like any other.
const YEARS: std::ops::RangeInclusive<i64> = 1..=9999;

/// A day count, if its year is one Python's `date` has.
fn check_date(days: i64) -> Result<i32> {
    let (year, ..) = civil_from_days(days);
    match i32::try_from(days) {
        Ok(days) if YEARS.contains(&year) => Ok(days),
        _ => Err(Error::decode(format!(
            "date {days} days from 1970-01-01 (year {year}) is outside years 1 to 9999"
        ))),
    }
}

/// A timestamp, if the wall clock it shows (in its own zone) is within years 1 to 9999.
fn check_timestamp(timestamp: Timestamp) -> Result<Timestamp> {
    let local = timestamp
        .seconds
        .checked_add(i64::from(timestamp.offset.unwrap_or(0)));
    let year = local.map(|local| civil_from_days(local.div_euclid(SECONDS_PER_DAY)).0);
    match year {
        Some(year) if YEARS.contains(&year) => Ok(timestamp),
        _ => Err(Error::decode(format!(
            "timestamp {} s from 1970-01-01T00:00:00 is outside years 1 to 9999",
            timestamp.seconds
        ))),
    }
}

/// The 16 bytes of a UUID in its canonical `8-4-4-4-12` hex form (either case).
pub(crate) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        let nibble = (b as char).to_digit(16)? as u8;
        out[nibbles / 2] |= if nibbles % 2 == 0 {
            nibble << 4
        } else {
            nibble
        };
        nibbles += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::temporal::days_from_civil;
    use crate::avro::Schema;

    /// A hand-rolled Avro binary writer: the tests must not trust our own reader to check
    /// itself.
    #[derive(Default)]
    struct Body(Vec<u8>);

    impl Body {
        fn long(mut self, value: i64) -> Self {
            let mut raw = ((value << 1) ^ (value >> 63)) as u64;
            loop {
                let byte = (raw & 0x7f) as u8;
                raw >>= 7;
                if raw == 0 {
                    self.0.push(byte);
                    return self;
                }
                self.0.push(byte | 0x80);
            }
        }

        fn bytes(self, data: &[u8]) -> Self {
            let mut body = self.long(data.len() as i64);
            body.0.extend_from_slice(data);
            body
        }

        fn string(self, text: &str) -> Self {
            self.bytes(text.as_bytes())
        }

        fn raw(mut self, data: &[u8]) -> Self {
            self.0.extend_from_slice(data);
            self
        }
    }

    fn decode(schema: &str, body: Body) -> Result<Value> {
        Schema::parse(schema).unwrap().decode(&body.0)
    }

    fn decimal_text(value: &Value) -> String {
        match value {
            Value::Decimal(decimal) => decimal.to_string(),
            other => panic!("not a decimal: {other:?}"),
        }
    }

    fn record_values(value: Value) -> Vec<Value> {
        match value {
            Value::Record(record) => record.values,
            other => panic!("not a record: {other:?}"),
        }
    }

    const DEBEZIUM_DECIMAL: &str = r#"{"type":"bytes","scale":4,"precision":9,
        "connect.version":1,"connect.parameters":{"scale":"4","connect.decimal.precision":"9"},
        "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}"#;

    #[test]
    fn decimals_on_bytes() {
        // -123456789 = 0xF8A432EB.
        let negative = decode(
            DEBEZIUM_DECIMAL,
            Body::default().bytes(&[0xf8, 0xa4, 0x32, 0xeb]),
        )
        .unwrap();
        assert_eq!(decimal_text(&negative), "-12345.6789");
        let held_inside = |value: &Value| match value {
            Value::Decimal(decimal) => !decimal.unscaled.spilled(),
            other => panic!("not a decimal: {other:?}"),
        };
        assert!(held_inside(&negative), "up to 16 bytes, no allocation");
        let zero_scale = r#"{"type":"bytes","logicalType":"decimal","precision":5}"#;
        assert_eq!(
            decimal_text(&decode(zero_scale, Body::default().bytes(&[0x30, 0x39])).unwrap()),
            "12345"
        );
        // 10^40 needs 41 digits.
        let wide = r#"{"type":"bytes","logicalType":"decimal","precision":45,"scale":2}"#;
        let ten_to_40 = [
            0x1d, 0x63, 0x29, 0xf1, 0xc3, 0x5c, 0xa4, 0xbf, 0xab, 0xb9, 0xf5, 0x61, 0, 0, 0, 0, 0,
        ];
        let wide = decode(wide, Body::default().bytes(&ten_to_40)).unwrap();
        assert_eq!(decimal_text(&wide), format!("1{}.00", "0".repeat(38)));
        assert!(!held_inside(&wide), "17 bytes are allocated");
    }

    #[test]
    fn decimals_on_fixed_shared_by_name() {
        let schema = r#"{"type":"record","name":"r","fields":[
            {"name":"a","type":{"type":"fixed","name":"money","size":4,"logicalType":"decimal","precision":9,"scale":2}},
            {"name":"b","type":"money"}]}"#;
        let body = Body::default()
            .raw(&[0xff, 0xff, 0xff, 0xff])
            .raw(&[0, 0, 0x30, 0x39]);
        let values = record_values(decode(schema, body).unwrap());
        assert_eq!(decimal_text(&values[0]), "-0.01");
        assert_eq!(decimal_text(&values[1]), "123.45");
    }

    #[test]
    fn invalid_decimals_are_ignored() {
        let cases = [
            // scale > precision
            r#"{"type":"bytes","logicalType":"decimal","precision":2,"scale":3}"#,
            // no precision
            r#"{"type":"bytes","logicalType":"decimal","scale":1}"#,
            // negative scale
            r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":-1}"#,
            // precision 0
            r#"{"type":"bytes","logicalType":"decimal","precision":0}"#,
            // decimal on a string
            r#"{"type":"string","logicalType":"decimal","precision":4}"#,
        ];
        for schema in cases {
            let value = decode(schema, Body::default().bytes(&[7])).unwrap();
            assert!(
                matches!(value, Value::Bytes(_) | Value::String(_)),
                "{schema}: {value:?}"
            );
        }
        // A 2-byte fixed holds 4 digits, not 5.
        let too_precise =
            r#"{"type":"fixed","name":"f","size":2,"logicalType":"decimal","precision":5}"#;
        assert_eq!(
            decode(too_precise, Body::default().raw(&[0, 7])).unwrap(),
            Value::Fixed(vec![0, 7])
        );
    }

    #[test]
    fn kafka_connect_decimals_without_a_valid_logical_type() {
        // AvroConverter's legacy form when the scale exceeds the precision.
        let legacy = r#"{"type":"bytes","connect.name":"org.apache.kafka.connect.data.Decimal",
            "connect.parameters":{"scale":"12"}}"#;
        assert_eq!(
            decimal_text(&decode(legacy, Body::default().bytes(&[0x05])).unwrap()),
            "0.000000000005"
        );
        let negative_scale = r#"{"type":"bytes","connect.name":"org.apache.kafka.connect.data.Decimal",
            "connect.parameters":{"scale":"-3"},"logicalType":"decimal","precision":4,"scale":-3}"#;
        assert_eq!(
            decimal_text(&decode(negative_scale, Body::default().bytes(&[0x7b])).unwrap()),
            "123E+3"
        );
    }

    #[test]
    fn variable_scale_decimal() {
        let schema = r#"{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data",
            "fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],
            "connect.doc":"Variable scaled decimal","connect.version":1,
            "connect.name":"io.debezium.data.VariableScaleDecimal"}"#;
        let value = decode(schema, Body::default().long(3).bytes(&[0xfb, 0x2e])).unwrap();
        assert_eq!(decimal_text(&value), "-1.234");
        let unavailable = decode(
            schema,
            Body::default().long(0).string(UNAVAILABLE_PLACEHOLDER),
        )
        .unwrap();
        assert_eq!(unavailable, Value::Unavailable);
    }

    #[test]
    fn uuids_on_string_and_fixed() {
        let text = "123e4567-e89b-12d3-a456-426614174000";
        let expected = Value::Uuid(parse_uuid(text).unwrap());
        let avro = r#"{"type":"string","logicalType":"uuid"}"#;
        assert_eq!(
            decode(avro, Body::default().string(text)).unwrap(),
            expected
        );
        let debezium =
            r#"{"type":"string","connect.version":1,"connect.name":"io.debezium.data.Uuid"}"#;
        assert_eq!(
            decode(debezium, Body::default().string(text)).unwrap(),
            expected
        );
        let fixed = r#"{"type":"fixed","name":"id","size":16,"logicalType":"uuid"}"#;
        let raw = parse_uuid(text).unwrap();
        assert_eq!(decode(fixed, Body::default().raw(&raw)).unwrap(), expected);
        let error = decode(avro, Body::default().string("not-a-uuid")).unwrap_err();
        assert!(
            error.to_string().contains("invalid UUID \"not-a-uuid\""),
            "{error}"
        );
        let on_int = r#"{"type":"int","logicalType":"uuid"}"#;
        assert_eq!(
            decode(on_int, Body::default().long(5)).unwrap(),
            Value::Int(5)
        );
    }

    #[test]
    fn dates_and_their_infinities() {
        let avro = r#"{"type":"int","logicalType":"date"}"#;
        assert_eq!(
            decode(avro, Body::default().long(19_782)).unwrap(),
            Value::Date(19_782)
        );
        assert_eq!(
            decode(avro, Body::default().long(-719_162)).unwrap(),
            Value::Date(-719_162)
        );
        let debezium =
            r#"{"type":"int","connect.version":1,"connect.name":"io.debezium.time.Date"}"#;
        let infinity = |negative| Value::Infinity {
            negative,
            of: Temporal::Date,
        };
        for (days, expected) in [
            (2_146_033_979, infinity(false)),
            (-2_147_472_691, infinity(true)),
            (-2_147_472_692, infinity(false)),
            // Debezium 3.6's snapshot path
            (-622_191_234, infinity(false)),
            (-625_821_272, infinity(true)),
            (0, Value::Date(0)),
        ] {
            assert_eq!(
                decode(debezium, Body::default().long(days)).unwrap(),
                expected,
                "{days}"
            );
        }
        // A plain Avro date has no sentinels, and Python no such year.
        let far = decode(avro, Body::default().long(2_146_033_979)).unwrap_err();
        assert!(far.to_string().contains("outside years 1 to 9999"), "{far}");
        // Debezium's `connect` time mode writes the same sentinels into Connect's Date.
        let connect = r#"{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Date","logicalType":"date"}"#;
        for (days, expected) in [
            (-1, Value::Date(-1)),
            (-2_147_472_692, infinity(false)),
            (-2_147_472_691, infinity(true)),
            (-622_191_234, infinity(false)),
            (-625_821_272, infinity(true)),
        ] {
            assert_eq!(
                decode(connect, Body::default().long(days)).unwrap(),
                expected,
                "{days}"
            );
        }
    }

    #[test]
    fn dates_and_timestamps_outside_years_1_to_9999_are_decode_errors() {
        let date = r#"{"type":"int","connect.name":"io.debezium.time.Date"}"#;
        // 9999-12-31 and 0001-01-01 are the last and first; a day more or less is an error.
        for (days, ok) in [
            (2_932_896, true),
            (2_932_897, false),
            (-719_162, true),
            (-719_163, false),
        ] {
            assert_eq!(
                decode(date, Body::default().long(days)).is_ok(),
                ok,
                "{days}"
            );
        }
        let micros = r#"{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}"#;
        let year_10000 = 253_402_300_800_000_000;
        assert!(decode(micros, Body::default().long(year_10000 - 1)).is_ok());
        let error = decode(micros, Body::default().long(year_10000)).unwrap_err();
        assert!(matches!(error, Error::Decode { .. }), "{error}");
        let zoned = r#"{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}"#;
        assert!(decode(zoned, Body::default().string("+10000-01-01T00:00:00Z")).is_err());
        assert!(decode(zoned, Body::default().string("9999-12-31T23:59:59Z")).is_ok());
    }

    #[test]
    fn times_of_day_in_every_unit() {
        let time = |nanos| {
            Value::Time(Time {
                nanos,
                offset: None,
            })
        };
        let cases = [
            (
                r#"{"type":"int","logicalType":"time-millis"}"#,
                45_296_789,
                45_296_789_000_000,
            ),
            (
                r#"{"type":"long","logicalType":"time-micros"}"#,
                45_296_789_012,
                45_296_789_012_000,
            ),
            (
                r#"{"type":"int","connect.name":"io.debezium.time.Time"}"#,
                1,
                1_000_000,
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.MicroTime"}"#,
                86_400_000_000,
                NANOS_PER_DAY,
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.NanoTime"}"#,
                45_296_789_012_345,
                45_296_789_012_345,
            ),
            (
                r#"{"type":"int","connect.name":"org.apache.kafka.connect.data.Time","logicalType":"time-millis"}"#,
                0,
                0,
            ),
        ];
        for (schema, raw, nanos) in cases {
            assert_eq!(
                decode(schema, Body::default().long(raw)).unwrap(),
                time(nanos),
                "{schema}"
            );
        }
        let micro_time = r#"{"type":"long","connect.name":"io.debezium.time.MicroTime"}"#;
        for raw in [86_400_000_001, -1, i64::MAX] {
            let error = decode(micro_time, Body::default().long(raw))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is not a time of day"), "{raw}: {error}");
        }
    }

    #[test]
    fn timestamps_in_every_unit_and_zone() {
        let stamp = |seconds, nanos, offset| {
            Value::Timestamp(Timestamp {
                seconds,
                nanos,
                offset,
            })
        };
        let cases = [
            (
                "timestamp-millis",
                1_709_210_096_789,
                stamp(1_709_210_096, 789_000_000, Some(0)),
            ),
            (
                "timestamp-micros",
                1_709_210_096_789_012,
                stamp(1_709_210_096, 789_012_000, Some(0)),
            ),
            (
                "timestamp-nanos",
                1_709_210_096_789_012_345,
                stamp(1_709_210_096, 789_012_345, Some(0)),
            ),
            ("local-timestamp-millis", -1, stamp(-1, 999_000_000, None)),
            (
                "local-timestamp-micros",
                -1_500_000,
                stamp(-2, 500_000_000, None),
            ),
            ("local-timestamp-nanos", -1, stamp(-1, 999_999_999, None)),
            // 1900-01-01T00:00:00Z, before the epoch and in a non-leap century year.
            (
                "timestamp-millis",
                -2_208_988_800_000,
                stamp(-2_208_988_800, 0, Some(0)),
            ),
        ];
        for (logical_type, raw, expected) in cases {
            let schema = format!(r#"{{"type":"long","logicalType":"{logical_type}"}}"#);
            assert_eq!(
                decode(&schema, Body::default().long(raw)).unwrap(),
                expected,
                "{logical_type} {raw}"
            );
        }
        let debezium = [
            (
                "io.debezium.time.Timestamp",
                1_709_210_096_789,
                stamp(1_709_210_096, 789_000_000, None),
            ),
            (
                "io.debezium.time.MicroTimestamp",
                -1,
                stamp(-1, 999_999_000, None),
            ),
            ("io.debezium.time.NanoTimestamp", 1, stamp(0, 1, None)),
        ];
        for (name, raw, expected) in debezium {
            let schema = format!(r#"{{"type":"long","connect.name":"{name}"}}"#);
            assert_eq!(
                decode(&schema, Body::default().long(raw)).unwrap(),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn timestamp_infinity_sentinels() {
        let local = |negative| Value::Infinity {
            negative,
            of: Temporal::LocalTimestamp,
        };
        let zoned = |negative| Value::Infinity {
            negative,
            of: Temporal::ZonedTimestamp,
        };
        let cases = [
            // Millisecond columns hold pgjdbc's sentinel divided by 1000.
            (
                r#"{"type":"long","connect.name":"io.debezium.time.Timestamp"}"#,
                9_223_372_036_825_200,
                local(false),
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.Timestamp"}"#,
                -9_223_372_036_832_400,
                local(true),
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}"#,
                PGJDBC_POSITIVE_INFINITY,
                local(false),
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}"#,
                PGJDBC_NEGATIVE_INFINITY,
                local(true),
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.NanoTimestamp"}"#,
                i64::MAX,
                local(false),
            ),
            (
                r#"{"type":"long","connect.name":"io.debezium.time.NanoTimestamp"}"#,
                i64::MIN,
                local(true),
            ),
            (
                r#"{"type":"long","connect.name":"org.apache.kafka.connect.data.Timestamp","logicalType":"timestamp-millis"}"#,
                -9_223_372_036_832_400,
                zoned(true),
            ),
            (
                r#"{"type":"long","connect.name":"org.apache.kafka.connect.data.Timestamp","logicalType":"timestamp-millis"}"#,
                9_223_372_036_825_200,
                zoned(false),
            ),
        ];
        for (schema, raw, expected) in cases {
            assert_eq!(
                decode(schema, Body::default().long(raw)).unwrap(),
                expected,
                "{schema} {raw}"
            );
        }
        // Without Kafka Connect the same numbers are (absurd) timestamps, not infinity: past
        // year 9999, so errors.
        let plain = decode(
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            Body::default().long(9_223_372_036_825_200),
        );
        assert!(plain.is_err(), "{plain:?}");
        // MicroTimestamp does not treat Long.MAX as infinity: NanoTimestamp does.
        let micro_max = decode(
            r#"{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}"#,
            Body::default().long(i64::MAX),
        );
        assert!(micro_max.is_err(), "{micro_max:?}");
    }

    #[test]
    fn durations_and_intervals() {
        let duration = r#"{"type":"fixed","name":"d","size":12,"logicalType":"duration"}"#;
        let body = Body::default().raw(&[14, 0, 0, 0, 3, 0, 0, 0, 0x10, 0x27, 0, 0]);
        assert_eq!(
            decode(duration, body).unwrap(),
            Value::Interval(Interval {
                months: 14,
                days: 3,
                micros: 10_000_000
            })
        );
        let max = Body::default().raw(&[0xff; 12]);
        assert!(
            matches!(decode(duration, max).unwrap(), Value::Interval(i) if i.months == 4_294_967_295)
        );
        let wrong_size = r#"{"type":"fixed","name":"d","size":8,"logicalType":"duration"}"#;
        assert!(matches!(
            decode(wrong_size, Body::default().raw(&[0; 8])).unwrap(),
            Value::Fixed(_)
        ));
        let micro_duration = r#"{"type":"long","connect.name":"io.debezium.time.MicroDuration"}"#;
        assert_eq!(
            decode(micro_duration, Body::default().long(-90_000_000)).unwrap(),
            Value::Duration(-90_000_000)
        );
        let iso = r#"{"type":"string","connect.name":"io.debezium.time.Interval"}"#;
        assert_eq!(
            decode(iso, Body::default().string("P1Y2M3DT4H5M6.78S")).unwrap(),
            Value::Interval(Interval {
                months: 14,
                days: 3,
                micros: 14_706_780_000
            })
        );
    }

    #[test]
    fn debezium_zoned_strings() {
        let zoned = r#"{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}"#;
        assert_eq!(
            decode(zoned, Body::default().string("2024-02-29T12:34:56.123456Z")).unwrap(),
            Value::Timestamp(Timestamp {
                seconds: 1_709_210_096,
                nanos: 123_456_000,
                offset: Some(0)
            })
        );
        assert_eq!(
            decode(zoned, Body::default().string("-infinity")).unwrap(),
            Value::Infinity {
                negative: true,
                of: Temporal::ZonedTimestamp
            }
        );
        assert_eq!(
            decode(zoned, Body::default().string(UNAVAILABLE_PLACEHOLDER)).unwrap(),
            Value::Unavailable
        );
        let time = r#"{"type":"string","connect.name":"io.debezium.time.ZonedTime"}"#;
        assert_eq!(
            decode(time, Body::default().string("12:00:00+05:30")).unwrap(),
            Value::Time(Time {
                nanos: 43_200 * NANOS_PER_SECOND,
                offset: Some(19_800)
            })
        );
    }

    #[test]
    fn logical_types_inside_unions_any_branch_order() {
        let schema = r#"{"type":"record","name":"Value","namespace":"demo.public.t","fields":[
            {"name":"a","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}],"default":null},
            {"name":"b","type":[{"type":"int","connect.name":"io.debezium.time.Date","connect.default":0},"null"],"default":0}],
            "connect.name":"demo.public.t.Value"}"#;
        let body = Body::default().long(1).long(0).long(0).long(19_782);
        let values = record_values(decode(schema, body).unwrap());
        assert_eq!(
            values,
            vec![
                Value::Timestamp(Timestamp {
                    seconds: 0,
                    nanos: 0,
                    offset: None
                }),
                Value::Date(19_782)
            ]
        );
    }

    #[test]
    fn logical_type_on_a_field_is_ignored() {
        // Apache Avro's interop schema writes logicalType on fields: it has no effect.
        let schema = r#"{"type":"record","name":"Interop","fields":[
            {"name":"timeMillisField","type":"int","logicalType":"time-millis"},
            {"name":"timestampMicrosField","type":"long","logicalType":"time-millis"},
            {"name":"bad","type":{"type":"long","logicalType":"time-millis"}},
            {"name":"unknown","type":{"type":"long","logicalType":"no-such-type"}}]}"#;
        let body = Body::default().long(-5).long(1 << 40).long(7).long(8);
        assert_eq!(
            record_values(decode(schema, body).unwrap()),
            vec![
                Value::Int(-5),
                Value::Long(1 << 40),
                Value::Long(7),
                Value::Long(8)
            ]
        );
    }

    const BOTTLED_WATER_ROW: &str = r#"{"type":"record","name":"events","namespace":"com.martinkl.bottledwater.dbschema.public","fields":[
        {"name":"day","type":["null",{"type":"record","name":"Date","namespace":"com.martinkl.bottledwater.datatypes",
            "fields":[{"name":"year","type":"int"},{"name":"month","type":"int"},{"name":"day","type":"int"}]},
            {"type":"enum","name":"SpecialTime","symbols":["POS_INFINITY","NEG_INFINITY"]}]},
        {"name":"at","type":["null",{"type":"record","name":"DateTime","namespace":"com.martinkl.bottledwater.datatypes",
            "fields":[{"name":"year","type":"int"},{"name":"month","type":"int"},{"name":"day","type":"int"},
                {"name":"hour","type":"int"},{"name":"minute","type":"int"},{"name":"second","type":"int"},
                {"name":"micro","type":"int"}]},"SpecialTime"]},
        {"name":"at_tz","type":["null",{"type":"record","name":"DateTimeTZ","namespace":"com.martinkl.bottledwater.datatypes",
            "fields":[{"name":"year","type":"int"},{"name":"month","type":"int"},{"name":"day","type":"int"},
                {"name":"hour","type":"int"},{"name":"minute","type":"int"},{"name":"second","type":"int"},
                {"name":"micro","type":"int"},{"name":"zoneOffset","type":"int"}]},"SpecialTime"]},
        {"name":"clock","type":["null",{"type":"record","name":"TimeTZ","namespace":"com.martinkl.bottledwater.datatypes",
            "fields":[{"name":"micro","type":"long"},{"name":"zoneOffset","type":"int"}]}]},
        {"name":"span","type":["null",{"type":"record","name":"Interval","namespace":"com.martinkl.bottledwater.datatypes",
            "fields":[{"name":"year","type":"int"},{"name":"month","type":"int"},{"name":"day","type":"int"},
                {"name":"hour","type":"int"},{"name":"minute","type":"int"},{"name":"second","type":"int"},
                {"name":"micro","type":"int"}]}]},
        {"name":"note","type":["null","string"]}]}"#;

    #[test]
    fn bottled_water_records() {
        let body = Body::default()
            .long(1) // day: 2024-02-29
            .long(2024)
            .long(2)
            .long(29)
            .long(1) // at: 1969-12-31 23:59:59.999999
            .long(1969)
            .long(12)
            .long(31)
            .long(23)
            .long(59)
            .long(59)
            .long(999_999)
            .long(1) // at_tz: 2024-02-29 18:04:56.5 +05:30
            .long(2024)
            .long(2)
            .long(29)
            .long(18)
            .long(4)
            .long(56)
            .long(500_000)
            .long(19_800)
            .long(1) // clock: 07:00 -05:00
            .long(25_200_000_000)
            .long(-18_000)
            .long(1) // span: 1 year 2 months 3 days 04:05:06.78
            .long(1)
            .long(2)
            .long(3)
            .long(4)
            .long(5)
            .long(6)
            .long(780_000)
            .long(1)
            .string(UNAVAILABLE_PLACEHOLDER);
        let values = record_values(decode(BOTTLED_WATER_ROW, body).unwrap());
        assert_eq!(
            values,
            vec![
                Value::Date(19_782),
                Value::Timestamp(Timestamp {
                    seconds: -1,
                    nanos: 999_999_000,
                    offset: None
                }),
                Value::Timestamp(Timestamp {
                    seconds: 1_709_210_096,
                    nanos: 500_000_000,
                    offset: Some(19_800)
                }),
                Value::Time(Time {
                    nanos: 25_200 * NANOS_PER_SECOND,
                    offset: Some(-18_000)
                }),
                Value::Interval(Interval {
                    months: 14,
                    days: 3,
                    micros: 14_706_780_000
                }),
                // Not Kafka Connect: the placeholder text is just text.
                Value::String(UNAVAILABLE_PLACEHOLDER.into()),
            ]
        );
    }

    #[test]
    fn bottled_water_special_time_is_infinity_of_its_column() {
        let body = Body::default()
            .long(2)
            .long(0) // day: POS_INFINITY
            .long(2)
            .long(1) // at: NEG_INFINITY
            .long(2)
            .long(0) // at_tz: POS_INFINITY
            .long(0)
            .long(0)
            .long(0); // clock, span, note: null
        let values = record_values(decode(BOTTLED_WATER_ROW, body).unwrap());
        let infinity = |negative, of| Value::Infinity { negative, of };
        assert_eq!(values[0], infinity(false, Temporal::Date));
        assert_eq!(values[1], infinity(true, Temporal::LocalTimestamp));
        assert_eq!(values[2], infinity(false, Temporal::ZonedTimestamp));
        assert_eq!(values[3], Value::Null);
    }

    #[test]
    fn invalid_bottled_water_dates_are_errors_naming_the_value() {
        let body = Body::default().long(1).long(2023).long(2).long(29);
        let body = body.long(0).long(0).long(0).long(0).long(0);
        let error = decode(BOTTLED_WATER_ROW, body).unwrap_err().to_string();
        assert!(
            error.contains("invalid Bottled Water Date 2023-2-29"),
            "{error}"
        );
    }

    #[test]
    fn records_with_bottled_water_names_but_other_fields_stay_records() {
        let schema = r#"{"type":"record","name":"Date","namespace":"com.martinkl.bottledwater.datatypes",
            "fields":[{"name":"year","type":"int"},{"name":"month","type":"string"}]}"#;
        let value = decode(schema, Body::default().long(2024).string("Feb")).unwrap();
        assert!(matches!(value, Value::Record(_)), "{value:?}");
    }

    #[test]
    fn unavailable_placeholder_only_in_kafka_connect_records() {
        let schema = r#"{"type":"record","name":"Value","namespace":"demo.public.docs","fields":[
            {"name":"body","type":["null","string"],"default":null},
            {"name":"blob","type":["null","bytes"],"default":null},
            {"name":"doc","type":["null",{"type":"string","connect.name":"io.debezium.data.Json"}],"default":null},
            {"name":"tags","type":["null",{"type":"array","items":["null","string"]}],"default":null},
            {"name":"title","type":"string"}],
            "connect.name":"demo.public.docs.Value"}"#;
        let body = Body::default()
            .long(1)
            .string(UNAVAILABLE_PLACEHOLDER)
            .long(1)
            .bytes(UNAVAILABLE_PLACEHOLDER.as_bytes())
            .long(1)
            .string(UNAVAILABLE_PLACEHOLDER)
            .long(1)
            .long(1)
            .long(1)
            .string(UNAVAILABLE_PLACEHOLDER)
            .long(0)
            .string("__debezium_unavailable_value ");
        let values = record_values(decode(schema, body).unwrap());
        assert_eq!(
            &values[..4],
            &[
                Value::Unavailable,
                Value::Unavailable,
                Value::Unavailable,
                Value::Unavailable
            ]
        );
        assert_eq!(
            values[4],
            Value::String("__debezium_unavailable_value ".into())
        );
    }

    #[test]
    fn debezium_date_sentinels_are_the_documented_days() {
        assert_eq!(
            days_from_civil(5_877_611, 6, 21),
            i64::from(DEBEZIUM_DATE_POSITIVE_INFINITY)
        );
        assert_eq!(
            days_from_civil(-5_877_611, 6, 22),
            i64::from(DEBEZIUM_DATE_NEGATIVE_INFINITY)
        );
        assert_eq!(
            days_from_civil(-5_877_611, 6, 21),
            i64::from(DEBEZIUM_DATE_POSITIVE_INFINITY_LEGACY)
        );
    }

    #[test]
    fn fixed_precision_limits() {
        assert_eq!(max_fixed_precision(1), 2);
        assert_eq!(max_fixed_precision(2), 4);
        assert_eq!(max_fixed_precision(8), 18);
        assert_eq!(max_fixed_precision(16), 38);
        assert_eq!(max_fixed_precision(32), 76);
    }

    #[test]
    fn uuids() {
        assert_eq!(
            parse_uuid("123e4567-E89B-12d3-a456-426614174000"),
            Some([
                0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17,
                0x40, 0x00
            ])
        );
        for bad in [
            "",
            "123e4567e89b12d3a456426614174000",
            "123e4567-e89b-12d3-a456-42661417400g",
            "123e4567-e89b-12d3-a456_426614174000",
            "+23e4567-e89b-12d3-a456-426614174000",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    /// The decoder parses text-based types in place (`apply_text`); schema resolution applies
    /// them to a decoded string (`apply`): both must read every text alike, errors included.
    #[test]
    fn text_types_read_in_place_as_when_applied_to_a_string() {
        let connect = |name: &str| format!(r#"{{"type":"string","connect.name":"{name}"}}"#);
        let cases = [
            (
                connect("io.debezium.time.ZonedTimestamp"),
                vec![
                    "2024-02-29T23:59:59.123456Z",
                    "2024-01-01T01:00:00+01:00",
                    "infinity",
                ],
            ),
            (
                connect("io.debezium.time.ZonedTime"),
                vec!["10:15:30.5Z", "24:00:00+02:00", "not a time"],
            ),
            (
                connect("io.debezium.time.Interval"),
                vec!["P1Y2M3DT4H5M6.78S", "PT-1S", "P"],
            ),
            (
                connect("io.debezium.data.Uuid"),
                vec!["123e4567-e89b-12d3-a456-426614174000", "not-a-uuid"],
            ),
        ];
        for (text_schema, texts) in cases {
            let schema = Schema::parse(&text_schema).unwrap();
            let Node::Logical(node) = &schema.root else {
                panic!("{text_schema} is not a logical type")
            };
            for text in texts.into_iter().chain([UNAVAILABLE_PLACEHOLDER]) {
                let in_place = schema.decode(&Body::default().string(text).0);
                let applied = node.logical.apply(Value::String(text.into()));
                match (in_place, applied) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                    (a, b) => panic!("{text}: read in place {a:?}, applied {b:?}"),
                }
            }
        }
    }
}
