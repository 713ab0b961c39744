//! PostgreSQL column types as Avro: the schema of each column and the encoding of its text.
//!
//! pgoutput and the snapshot's `COPY` both hand over every value in PostgreSQL's text output
//! form (with the session settings the connections fix: ISO dates, UTC, ISO 8601 intervals,
//! hex bytea, round-trip floats), so one parser per type serves both. Two flavours: Debezium's
//! PostgreSQL connector with its default settings (precise decimals, adaptive time, semantic
//! types named only by `connect.name`) and flat rows with Avro's own logical types.

use std::collections::HashSet;

use serde_json::{json, Value as Json};

/// Debezium's `timestamp` sentinels for PostgreSQL's ±infinity (the JDBC driver's values).
const TIMESTAMP_INFINITY: i64 = 9_223_372_036_825_200_000;
const TIMESTAMP_MINUS_INFINITY: i64 = -9_223_372_036_832_400_000;
/// Debezium's average month for `MicroDuration`: 365.25 / 12 days.
const DAYS_PER_MONTH: f64 = 30.4375;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Which event format the schemas follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Debezium's PostgreSQL connector, default settings.
    Debezium,
    /// Flat rows with Avro logical types.
    Rows,
}

/// What a column's values become.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `boolean`.
    Boolean,
    /// `smallint`.
    Int16,
    /// `integer`.
    Int32,
    /// `bigint`, `oid`.
    Int64,
    /// `real`.
    Float32,
    /// `double precision`.
    Float64,
    /// `numeric(p,s)` and `money` (scale 2).
    Decimal {
        /// Precision.
        precision: u32,
        /// Scale.
        scale: u32,
        /// `money`: its text has a currency sign and group separators.
        money: bool,
    },
    /// Unconstrained `numeric`.
    VariableDecimal,
    /// Text; `semantic` is the Debezium `connect.name`, if any.
    Text {
        /// `io.debezium.data.Json`, `...Uuid`, `...Xml`.
        semantic: Option<&'static str>,
    },
    /// An enum type with its labels in sort order.
    Enum {
        /// The labels.
        labels: Vec<String>,
    },
    /// `bytea`.
    Bytes,
    /// `date`.
    Date,
    /// `time(p)`.
    Time {
        /// Fractional digits (6 when unconstrained).
        precision: i32,
    },
    /// `timetz`.
    ZonedTime,
    /// `timestamp(p)`.
    Timestamp {
        /// Fractional digits.
        precision: i32,
    },
    /// `timestamptz(p)`.
    ZonedTimestamp {
        /// Fractional digits (6 when unconstrained): Debezium writes exactly this many.
        precision: i32,
    },
    /// `interval`.
    Interval,
    /// One-dimensional array.
    Array(Box<Kind>),
}

impl Kind {
    /// The kind of a built-in type, if it is one this module knows by OID.
    pub fn builtin(oid: u32, typmod: i32) -> Option<Kind> {
        let precision = if typmod < 0 { 6 } else { typmod };
        Some(match oid {
            16 => Kind::Boolean,
            21 => Kind::Int16,
            23 => Kind::Int32,
            20 | 26 => Kind::Int64,
            700 => Kind::Float32,
            701 => Kind::Float64,
            1700 if typmod >= 4 => Kind::Decimal {
                precision: (((typmod - 4) >> 16) & 0xffff) as u32,
                scale: ((typmod - 4) & 0xffff) as u32,
                money: false,
            },
            1700 => Kind::VariableDecimal,
            790 => Kind::Decimal {
                precision: 64,
                scale: 2,
                money: true,
            },
            25 | 1043 | 1042 | 18 | 19 | 869 | 650 | 829 | 774 => Kind::Text { semantic: None },
            114 | 3802 => Kind::Text {
                semantic: Some("io.debezium.data.Json"),
            },
            2950 => Kind::Text {
                semantic: Some("io.debezium.data.Uuid"),
            },
            142 => Kind::Text {
                semantic: Some("io.debezium.data.Xml"),
            },
            17 => Kind::Bytes,
            1082 => Kind::Date,
            1083 => Kind::Time { precision },
            1266 => Kind::ZonedTime,
            1114 => Kind::Timestamp { precision },
            1184 => Kind::ZonedTimestamp { precision },
            1186 => Kind::Interval,
            _ => return None,
        })
    }

    /// The Avro type of a value of this kind (named types already written are referenced).
    pub fn avro(&self, flavor: Flavor, defined: &mut HashSet<String>) -> Json {
        let debezium = flavor == Flavor::Debezium;
        match self {
            Kind::Boolean => json!("boolean"),
            Kind::Int16 if debezium => json!({"type": "int", "connect.type": "int16"}),
            Kind::Int16 | Kind::Int32 => json!("int"),
            Kind::Int64 => json!("long"),
            Kind::Float32 => json!("float"),
            Kind::Float64 => json!("double"),
            Kind::Decimal {
                precision,
                scale,
                money,
            } => {
                if debezium {
                    // Debezium gives money no precision parameter; the converter writes
                    // Avro's precision 64 for it.
                    let mut parameters = json!({"scale": scale.to_string()});
                    if !money {
                        parameters["connect.decimal.precision"] = json!(precision.to_string());
                    }
                    json!({"type": "bytes", "scale": scale, "precision": precision,
                        "connect.version": 1, "connect.parameters": parameters,
                        "connect.name": "org.apache.kafka.connect.data.Decimal",
                        "logicalType": "decimal"})
                } else {
                    json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
                }
            }
            Kind::VariableDecimal if debezium => {
                let name = "io.debezium.data.VariableScaleDecimal";
                if !defined.insert(name.to_owned()) {
                    return json!(name);
                }
                json!({"type": "record", "name": "VariableScaleDecimal",
                    "namespace": "io.debezium.data",
                    "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
                    "connect.doc": "Variable scaled decimal", "connect.version": 1,
                    "connect.name": name})
            }
            Kind::VariableDecimal => json!("string"),
            Kind::Text { semantic } => match semantic {
                Some(name) if debezium => {
                    json!({"type": "string", "connect.version": 1, "connect.name": name})
                }
                Some("io.debezium.data.Uuid") => json!({"type": "string", "logicalType": "uuid"}),
                _ => json!("string"),
            },
            Kind::Enum { labels } if debezium => json!({"type": "string", "connect.version": 1,
                "connect.parameters": {"allowed": labels.join(",")},
                "connect.name": "io.debezium.data.Enum"}),
            Kind::Enum { .. } => json!("string"),
            Kind::Bytes => json!("bytes"),
            Kind::Date if debezium => {
                json!({"type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Date"})
            }
            Kind::Date => json!({"type": "int", "logicalType": "date"}),
            Kind::Time { precision } if debezium && *precision <= 3 => {
                json!({"type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Time"})
            }
            Kind::Time { .. } if debezium => {
                json!({"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTime"})
            }
            Kind::Time { .. } => json!({"type": "long", "logicalType": "time-micros"}),
            Kind::ZonedTime if debezium => {
                json!({"type": "string", "connect.version": 1, "connect.name": "io.debezium.time.ZonedTime"})
            }
            Kind::ZonedTime => json!("string"),
            Kind::Timestamp { precision } if debezium && *precision <= 3 => {
                json!({"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.Timestamp"})
            }
            Kind::Timestamp { .. } if debezium => {
                json!({"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTimestamp"})
            }
            Kind::Timestamp { .. } => {
                json!({"type": "long", "logicalType": "local-timestamp-micros"})
            }
            Kind::ZonedTimestamp { .. } if debezium => {
                json!({"type": "string", "connect.version": 1, "connect.name": "io.debezium.time.ZonedTimestamp"})
            }
            Kind::ZonedTimestamp { .. } => {
                json!({"type": "long", "logicalType": "timestamp-micros"})
            }
            Kind::Interval if debezium => {
                json!({"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroDuration"})
            }
            Kind::Interval => json!("string"),
            Kind::Array(element) => {
                json!({"type": "array", "items": ["null", element.avro(flavor, defined)]})
            }
        }
    }

    /// Append the Avro encoding of `text` (PostgreSQL's text output of a value of this kind).
    pub fn encode(&self, flavor: Flavor, text: &str, out: &mut Vec<u8>) -> Result<(), String> {
        let debezium = flavor == Flavor::Debezium;
        match self {
            Kind::Boolean => out.push(match text {
                "t" => 1,
                "f" => 0,
                _ => return Err(format!("{text:?} is not a boolean")),
            }),
            Kind::Int16 | Kind::Int32 | Kind::Int64 => put_long(
                out,
                text.parse::<i64>().map_err(|e| format!("{text:?}: {e}"))?,
            ),
            Kind::Float32 => out.extend_from_slice(&(parse_float(text)? as f32).to_le_bytes()),
            Kind::Float64 => out.extend_from_slice(&parse_float(text)?.to_le_bytes()),
            Kind::Decimal { scale, money, .. } => {
                let cleaned;
                let text = if *money {
                    cleaned = text.replace(['$', ','], "");
                    cleaned.as_str()
                } else {
                    text
                };
                let (unscaled, _) = unscaled(text, Some(*scale))?;
                put_bytes(out, &unscaled);
            }
            Kind::VariableDecimal if debezium => {
                // Debezium strips trailing fractional zeros (BigDecimal.stripTrailingZeros,
                // never below scale 0): 1.500 is {scale 1, 15}.
                let text = match text.split_once('.') {
                    Some((whole, fraction)) => match fraction.trim_end_matches('0') {
                        "" => whole.to_owned(),
                        kept => format!("{whole}.{kept}"),
                    },
                    None => text.to_owned(),
                };
                let (unscaled, scale) = unscaled(&text, None)?;
                put_long(out, scale as i64);
                put_bytes(out, &unscaled);
            }
            Kind::VariableDecimal | Kind::Text { .. } | Kind::Enum { .. } => {
                put_bytes(out, text.as_bytes())
            }
            Kind::ZonedTime if debezium => put_bytes(out, zoned_time(text)?.as_bytes()),
            Kind::ZonedTime => put_bytes(out, text.as_bytes()),
            Kind::Bytes => put_bytes(out, &hex_bytea(text)?),
            Kind::Date => put_long(out, date_days(text)?),
            Kind::Time { precision } => {
                let micros = time_micros(text)?;
                put_long(
                    out,
                    if debezium && *precision <= 3 {
                        micros / 1000
                    } else {
                        micros
                    },
                );
            }
            Kind::Timestamp { precision } => {
                let micros = match text {
                    "infinity" => TIMESTAMP_INFINITY,
                    "-infinity" => TIMESTAMP_MINUS_INFINITY,
                    _ => timestamp_micros(text)?.0,
                };
                let value = if debezium && *precision <= 3 {
                    micros.div_euclid(1000)
                } else {
                    micros
                };
                put_long(out, value);
            }
            Kind::ZonedTimestamp { precision } if debezium => {
                let value = match text {
                    "infinity" | "-infinity" => text.to_owned(),
                    _ => {
                        let (micros, _) = timestamp_micros(text)?;
                        iso_utc(micros, *precision)
                    }
                };
                put_bytes(out, value.as_bytes());
            }
            Kind::ZonedTimestamp { .. } => {
                let value = match text {
                    "infinity" => i64::MAX,
                    "-infinity" => i64::MIN,
                    _ => timestamp_micros(text)?.0,
                };
                put_long(out, value);
            }
            Kind::Interval if debezium => put_long(out, interval_micros(text)?),
            Kind::Interval => put_bytes(out, text.as_bytes()),
            Kind::Array(element) => {
                let items = parse_array(text)?;
                if !items.is_empty() {
                    put_long(out, items.len() as i64);
                    for item in items {
                        match item {
                            None => put_long(out, 0),
                            Some(item) => {
                                put_long(out, 1);
                                element.encode(flavor, &item, out)?;
                            }
                        }
                    }
                }
                put_long(out, 0);
            }
        }
        Ok(())
    }
}

/// Avro's zig-zag variable-length long.
pub fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Avro bytes or string: length, then the bytes.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

fn parse_float(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse()
            .map_err(|_| format!("{text:?} is not a number")),
    }
}

/// The big-endian two's-complement unscaled value of a decimal text, rescaled to `scale` when
/// given, and the scale used.
fn unscaled(text: &str, scale: Option<u32>) -> Result<(Vec<u8>, u32), String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "{text:?} is not a finite decimal (NaN and infinity have no Avro decimal)"
        ));
    }
    let scale = scale.unwrap_or(fraction.len() as u32);
    let mut all: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|b| b - b'0')
        .collect();
    let fraction_digits = fraction.len() as u32;
    if fraction_digits > scale {
        let cut = (fraction_digits - scale) as usize;
        if all[all.len() - cut..].iter().any(|d| *d != 0) {
            return Err(format!("{text:?} has more than {scale} decimal places"));
        }
        all.truncate(all.len() - cut);
    } else {
        all.extend(std::iter::repeat_n(0, (scale - fraction_digits) as usize));
    }
    // Base 10 digits to base 256, most significant first.
    let mut magnitude: Vec<u8> = vec![0];
    for digit in all {
        let mut carry = digit as u32;
        for byte in magnitude.iter_mut().rev() {
            let value = *byte as u32 * 10 + carry;
            *byte = value as u8;
            carry = value >> 8;
        }
        while carry > 0 {
            magnitude.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    while magnitude.len() > 1 && magnitude[0] == 0 {
        magnitude.remove(0);
    }
    let zero = magnitude == [0];
    if !negative || zero {
        if magnitude[0] & 0x80 != 0 {
            magnitude.insert(0, 0);
        }
        return Ok((magnitude, scale));
    }
    magnitude.insert(0, 0);
    let mut carry = true;
    for byte in magnitude.iter_mut().rev() {
        *byte = !*byte;
        if carry {
            let (value, overflow) = byte.overflowing_add(1);
            *byte = value;
            carry = overflow;
        }
    }
    while magnitude.len() > 1 && magnitude[0] == 0xff && magnitude[1] & 0x80 != 0 {
        magnitude.remove(0);
    }
    Ok((magnitude, scale))
}

fn hex_bytea(text: &str) -> Result<Vec<u8>, String> {
    let hex = text
        .strip_prefix("\\x")
        .ok_or_else(|| format!("bytea {text:?} is not in hex output form"))?;
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

fn number(text: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

fn date_days(text: &str) -> Result<i64, String> {
    match text {
        "infinity" => return Ok(i32::MAX as i64),
        "-infinity" => return Ok(i32::MIN as i64),
        _ => {}
    }
    let (date, bc) = match text.strip_suffix(" BC") {
        Some(date) => (date, true),
        None => (text, false),
    };
    let mut parts = date.splitn(3, '-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{text:?} is not an ISO date"));
    };
    let year = number(year)?;
    let year = if bc { 1 - year } else { year };
    Ok(days_from_civil(year, number(month)?, number(day)?))
}

/// Microseconds of `HH:MM:SS[.ffffff]`.
fn time_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a time");
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = clock.splitn(3, ':');
    let (Some(h), Some(m), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let mut micros = (number(h)? * 3600 + number(m)? * 60 + number(s)?) * 1_000_000;
    if !fraction.is_empty() {
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        micros += number(&digits).map_err(|_| bad())?;
    }
    Ok(micros)
}

/// Split a trailing UTC offset (`+HH`, `-HH:MM`, `+HH:MM:SS`) off a time; its seconds east.
fn split_offset(text: &str) -> (&str, i64) {
    let Some(at) = text
        .get(8..)
        .and_then(|t| t.find(['+', '-']))
        .map(|i| i + 8)
    else {
        return (text, 0);
    };
    let (clock, offset) = text.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let seconds: i64 = offset[1..]
        .split(':')
        .zip([3600, 60, 1])
        .map(|(part, unit)| part.parse::<i64>().unwrap_or(0) * unit)
        .sum();
    (clock, sign * seconds)
}

/// Microseconds since the epoch (UTC) of a timestamp text with or without offset, and whether
/// it had one.
fn timestamp_micros(text: &str) -> Result<(i64, bool), String> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let (date, clock) = text
        .split_once(' ')
        .ok_or_else(|| format!("{text:?} is not an ISO timestamp"))?;
    let date = if bc {
        format!("{date} BC")
    } else {
        date.to_owned()
    };
    let (clock, offset) = split_offset(clock);
    let days = date_days(&date)?;
    let micros = days * MICROS_PER_DAY + time_micros(clock)? - offset * 1_000_000;
    Ok((micros, offset != 0))
}

/// `HH:MM:SS[.fraction]` with the fraction's trailing zeros cut, as Java's ISO formatters do.
fn clock_text(micros_of_day: i64) -> String {
    let seconds = micros_of_day / 1_000_000;
    let fraction = micros_of_day % 1_000_000;
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// Debezium's `ZonedTimestamp`: ISO 8601 in UTC, with exactly `precision` fractional digits
/// (the column's; none at precision 0).
fn iso_utc(micros: i64, precision: i32) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let clock = match usize::try_from(precision) {
        Ok(width @ 1..=6) => {
            let seconds = of_day / 1_000_000;
            let fraction = format!("{:06}", of_day % 1_000_000);
            format!("{}.{}", clock_text(seconds * 1_000_000), &fraction[..width])
        }
        _ => clock_text(of_day),
    };
    format!("{year:04}-{month:02}-{day:02}T{clock}Z")
}

/// Debezium's `ZonedTime`: the time in UTC.
fn zoned_time(text: &str) -> Result<String, String> {
    let (clock, offset) = split_offset(text);
    let micros = (time_micros(clock)? - offset * 1_000_000).rem_euclid(MICROS_PER_DAY);
    Ok(format!("{}Z", clock_text(micros)))
}

/// Debezium's `MicroDuration` of an ISO 8601 interval (`P1Y2M3DT4H5M6.5S`).
fn interval_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an ISO 8601 interval");
    let body = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let (mut months, mut days, mut micros) = (0f64, 0f64, 0f64);
    let mut read = |part: &str, in_time: bool| -> Result<(), String> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '-' || c == '.' {
                number.push(c);
                continue;
            }
            let value: f64 = number.parse().map_err(|_| bad())?;
            number.clear();
            match (c, in_time) {
                ('Y', false) => months += value * 12.0,
                ('M', false) => months += value,
                ('W', false) => days += value * 7.0,
                ('D', false) => days += value,
                ('H', true) => micros += value * 3.6e9,
                ('M', true) => micros += value * 6e7,
                ('S', true) => micros += (value * 1e6).round(),
                _ => return Err(bad()),
            }
        }
        Ok(())
    };
    read(date, false)?;
    read(time, true)?;
    let day_micros = (months * DAYS_PER_MONTH + days) * MICROS_PER_DAY as f64;
    Ok((day_micros + micros) as i64)
}

/// The elements of a one-dimensional array literal (`{1,NULL,"a b"}`).
fn parse_array(text: &str) -> Result<Vec<Option<String>>, String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("{text:?} is not an array literal"))?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Ok(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'{') {
            return Err("multi-dimensional arrays are not supported".into());
        }
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.extend(chars.next()),
                    '"' => break,
                    _ => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
        }
        items.push(if !quoted && item == "NULL" {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(c) => return Err(format!("unexpected {c:?} in array literal")),
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(kind: Kind, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        kind.encode(Flavor::Debezium, text, &mut out).unwrap();
        out
    }

    #[test]
    fn decimals_are_twos_complement_like_java_big_integer() {
        let decimal = |text, scale| unscaled(text, Some(scale)).unwrap().0;
        assert_eq!(decimal("0.00", 2), vec![0]);
        assert_eq!(decimal("1.28", 2), vec![0, 128]);
        assert_eq!(decimal("-1.28", 2), vec![0x80]);
        assert_eq!(decimal("-1.29", 2), vec![0xff, 0x7f]);
        assert_eq!(decimal("12.5", 3), vec![0x30, 0xd4]);
        assert_eq!(unscaled("-0.001", None).unwrap(), (vec![0xff], 3));
        // Variable scale: trailing fractional zeros stripped, as Debezium does ({scale, value}).
        assert_eq!(encode(Kind::VariableDecimal, "1.500"), vec![2, 2, 15]);
        assert_eq!(encode(Kind::VariableDecimal, "100.00"), vec![0, 2, 100]);
        assert_eq!(encode(Kind::VariableDecimal, "0.000"), vec![0, 2, 0]);
    }

    #[test]
    fn times_follow_debezium_adaptive() {
        assert_eq!(date_days("1970-01-02").unwrap(), 1);
        assert_eq!(date_days("1969-12-31").unwrap(), -1);
        assert_eq!(
            timestamp_micros("2000-01-01 00:00:00.5").unwrap().0,
            946_684_800_500_000
        );
        // Exactly the column's fractional digits, as Debezium writes them.
        assert_eq!(
            iso_utc(946_684_800_500_000, 6),
            "2000-01-01T00:00:00.500000Z"
        );
        assert_eq!(iso_utc(946_684_800_000_000, 3), "2000-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(946_684_800_000_000, 0), "2000-01-01T00:00:00Z");
        assert_eq!(
            timestamp_micros("2000-01-01 01:00:00+01").unwrap().0,
            946_684_800_000_000
        );
        assert_eq!(zoned_time("10:15:30.25+02").unwrap(), "08:15:30.25Z");
        assert_eq!(interval_micros("P1DT-1H").unwrap(), 82_800_000_000);
        assert_eq!(
            encode(Kind::Time { precision: 3 }, "00:00:01"),
            vec![0xd0, 0x0f]
        );
    }

    #[test]
    fn arrays_with_nulls_and_quotes() {
        assert_eq!(
            parse_array(r#"{1,NULL,"a \"b\""}"#).unwrap(),
            vec![Some("1".into()), None, Some("a \"b\"".into())]
        );
        assert_eq!(encode(Kind::Array(Box::new(Kind::Int32)), "{}"), vec![0]);
    }
}
