//! Calendar arithmetic and the ISO-8601 texts Debezium writes for dates and times.
//!
//! Debezium sends `timestamp with time zone` as an ISO-8601 string (`ZonedTimestamp`),
//! `time with time zone` as one (`ZonedTime`) and, in `interval.handling.mode=string`, intervals
//! as ISO-8601 durations (`Interval`). These parsers accept exactly the shapes Java's
//! `java.time` formatters print (0–9 fractional digits, `Z` or a numeric offset, signed years
//! beyond 9999, signed interval parts) and reject anything else with a message that quotes the
//! text. The calendar is the proleptic Gregorian one with astronomical years (year 0 is 1 BC),
//! as PostgreSQL, Java and Python use it.

use super::value::{Interval, Temporal, Time, Timestamp, Value};
use crate::error::{Error, Result};

pub(crate) const SECONDS_PER_DAY: i64 = 86_400;
pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
/// PostgreSQL's `24:00:00`, the largest time of day it stores.
pub(crate) const NANOS_PER_DAY: i64 = SECONDS_PER_DAY * NANOS_PER_SECOND;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
/// The caller has checked `month` and `day`.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u8;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// Whether `year-month-day` names a real day.
pub(crate) fn is_valid_date(year: i64, month: i64, day: i64) -> bool {
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

/// Days since 1970-01-01 of a date given as separate fields, checked.
pub(crate) fn checked_days(year: i64, month: i64, day: i64) -> Option<i64> {
    if !is_valid_date(year, month, day) || year.unsigned_abs() > 1_000_000_000 {
        return None;
    }
    // Both fit in u32: checked just above.
    Some(days_from_civil(year, month as u32, day as u32))
}

/// A zone offset in seconds east of UTC that every consumer can represent (strictly within a
/// day, as Python's `timezone` requires).
pub(crate) fn check_offset(offset: i64, what: &str) -> Result<i32> {
    if offset.unsigned_abs() < SECONDS_PER_DAY.unsigned_abs() {
        Ok(offset as i32)
    } else {
        Err(Error::decode(format!(
            "{what}: zone offset {offset} s is not within a day of UTC"
        )))
    }
}

/// A cursor over an ASCII date/time text.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, what: &'static str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            what,
        }
    }

    fn error(&self) -> Error {
        Error::decode(format!("invalid {} {:?}", self.what, self.text))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// `+` or `-` if present: true for `-`.
    fn sign(&mut self) -> bool {
        if self.eat(b'-') {
            return true;
        }
        self.eat(b'+');
        false
    }

    /// Between `min` and `max` decimal digits (stopping after `max`); returns the value and how
    /// many digits there were.
    fn digits(&mut self, min: usize, max: usize) -> Result<(i64, usize)> {
        let start = self.pos;
        let mut value: i64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            if self.pos - start == max {
                break;
            }
            value = value * 10 + i64::from(digit - b'0');
            self.pos += 1;
        }
        let count = self.pos - start;
        if count < min {
            return Err(self.error());
        }
        Ok((value, count))
    }

    fn two_digits(&mut self) -> Result<i64> {
        Ok(self.digits(2, 2)?.0)
    }

    /// Between `min` and `max` digits with no further digit after them.
    fn all_digits(&mut self, min: usize, max: usize) -> Result<(i64, usize)> {
        let digits = self.digits(min, max)?;
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.error());
        }
        Ok(digits)
    }

    /// An optional `.` followed by 1–9 digits, as nanoseconds.
    fn fraction(&mut self) -> Result<i64> {
        if !self.eat(b'.') {
            return Ok(0);
        }
        let (value, count) = self.all_digits(1, 9)?;
        Ok(value * 10_i64.pow(9 - count as u32))
    }

    /// `HH:MM[:SS[.fffffffff]]` as nanoseconds since midnight, `24:00` included.
    fn time_of_day(&mut self) -> Result<i64> {
        let hour = self.two_digits()?;
        self.expect(b':')?;
        let minute = self.two_digits()?;
        let (second, nanos) = if self.eat(b':') {
            (self.two_digits()?, self.fraction()?)
        } else {
            (0, 0)
        };
        let total = ((hour * 60 + minute) * 60 + second) * NANOS_PER_SECOND + nanos;
        let valid = minute < 60 && second < 60 && (hour < 24 || total == NANOS_PER_DAY);
        if !valid {
            return Err(self.error());
        }
        Ok(total)
    }

    /// `Z`, or `±HH`, `±HHMM`, `±HH:MM`, `±HH:MM:SS`: seconds east of UTC.
    fn offset(&mut self) -> Result<i32> {
        if self.eat(b'Z') {
            return Ok(0);
        }
        let negative = match self.peek() {
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return Err(self.error()),
        };
        self.pos += 1;
        let hours = self.two_digits()?;
        let mut minutes = 0;
        let mut seconds = 0;
        let colon = self.eat(b':');
        if colon || self.peek().is_some_and(|b| b.is_ascii_digit()) {
            minutes = self.two_digits()?;
            if (colon && self.eat(b':'))
                || (!colon && self.peek().is_some_and(|b| b.is_ascii_digit()))
            {
                seconds = self.two_digits()?;
            }
        }
        if minutes >= 60 || seconds >= 60 {
            return Err(self.error());
        }
        let offset = hours * 3600 + minutes * 60 + seconds;
        if offset >= SECONDS_PER_DAY {
            return Err(self.error());
        }
        Ok(if negative { -offset } else { offset } as i32)
    }
}

/// Debezium's `ZonedTimestamp`: `[±]YYYY-MM-DDTHH:MM[:SS[.f]]` then `Z` or an offset, or
/// PostgreSQL's `infinity` / `-infinity`.
pub(crate) fn parse_zoned_timestamp(text: &str) -> Result<Value> {
    match text {
        "infinity" => {
            return Ok(Value::Infinity {
                negative: false,
                of: Temporal::ZonedTimestamp,
            })
        }
        "-infinity" => {
            return Ok(Value::Infinity {
                negative: true,
                of: Temporal::ZonedTimestamp,
            })
        }
        _ => {}
    }
    let mut scan = Scanner::new(text, "ZonedTimestamp");
    let negative_year = scan.sign();
    let (year, _) = scan.all_digits(4, 10)?;
    let year = if negative_year { -year } else { year };
    scan.expect(b'-')?;
    let month = scan.two_digits()?;
    scan.expect(b'-')?;
    let day = scan.two_digits()?;
    scan.expect(b'T')?;
    let time = scan.time_of_day()?;
    let offset = scan.offset()?;
    if !scan.at_end() {
        return Err(scan.error());
    }
    let days = checked_days(year, month, day).ok_or_else(|| scan.error())?;
    let local = days * SECONDS_PER_DAY + time / NANOS_PER_SECOND;
    Ok(Value::Timestamp(Timestamp {
        seconds: local - i64::from(offset),
        nanos: (time % NANOS_PER_SECOND) as u32,
        offset: Some(offset),
    }))
}

/// Debezium's `ZonedTime`: `HH:MM[:SS[.f]]` then `Z` or an offset.
pub(crate) fn parse_zoned_time(text: &str) -> Result<Time> {
    let mut scan = Scanner::new(text, "ZonedTime");
    let nanos = scan.time_of_day()?;
    let offset = scan.offset()?;
    if !scan.at_end() {
        return Err(scan.error());
    }
    Ok(Time {
        nanos,
        offset: Some(offset),
    })
}

/// An ISO-8601 duration as Debezium's `Interval` writes it: `P1Y2M3DT4H5M6.78S`, every part
/// optional and signed (PostgreSQL intervals mix signs: `P-1Y2M0DT0H0M-0.5S`), `W` weeks
/// accepted, and a leading `-` negating the whole. Seconds keep 9 fractional digits at most;
/// below a microsecond they are truncated toward zero.
pub(crate) fn parse_iso_interval(text: &str) -> Result<Interval> {
    let mut scan = Scanner::new(text, "ISO-8601 interval");
    let negate_all = scan.sign();
    scan.expect(b'P')?;
    let mut months: i64 = 0;
    let mut days: i64 = 0;
    let mut nanos: i128 = 0;
    let mut in_time = false;
    // Parts before and after `T`; ISO-8601 wants at least one, and one after a `T`.
    let mut parts = [0_u32; 2];
    let mut last_rank = 0;
    while !scan.at_end() {
        if !in_time && scan.eat(b'T') {
            in_time = true;
            continue;
        }
        let negative = scan.sign();
        let (whole, _) = scan.all_digits(1, 18)?;
        let fraction = if in_time { scan.fraction()? } else { 0 };
        let unit = scan.peek().ok_or_else(|| scan.error())?;
        scan.pos += 1;
        // Designators come once each, in ISO order: Y M W D, then T H M S.
        let rank = match (in_time, unit) {
            (false, b'Y') => 1,
            (false, b'M') => 2,
            (false, b'W') => 3,
            (false, b'D') => 4,
            (true, b'H') => 5,
            (true, b'M') => 6,
            (true, b'S') => 7,
            _ => return Err(scan.error()),
        };
        if rank <= last_rank {
            return Err(scan.error());
        }
        last_rank = rank;
        let signed = |v: i64| if negative { -v } else { v };
        let (whole, fraction) = (signed(whole), signed(fraction));
        let overflow = || scan.error();
        match (in_time, unit) {
            (false, b'Y') => {
                months = whole
                    .checked_mul(12)
                    .and_then(|m| months.checked_add(m))
                    .ok_or_else(overflow)?
            }
            (false, b'M') => months = months.checked_add(whole).ok_or_else(overflow)?,
            (false, b'W') => {
                days = whole
                    .checked_mul(7)
                    .and_then(|d| days.checked_add(d))
                    .ok_or_else(overflow)?
            }
            (false, b'D') => days = days.checked_add(whole).ok_or_else(overflow)?,
            (true, b'H' | b'M' | b'S') => {
                let unit_seconds: i128 = match unit {
                    b'H' => 3600,
                    b'M' => 60,
                    _ => 1,
                };
                // Only seconds may have a fraction.
                if fraction != 0 && unit != b'S' {
                    return Err(scan.error());
                }
                let part = i128::from(whole) * unit_seconds * 1_000_000_000 + i128::from(fraction);
                nanos = nanos.checked_add(part).ok_or_else(overflow)?;
            }
            _ => return Err(scan.error()),
        }
        parts[usize::from(in_time)] += 1;
    }
    if parts == [0, 0] || (in_time && parts[1] == 0) {
        return Err(scan.error());
    }
    let micros = i64::try_from(nanos / 1000).map_err(|_| scan.error())?;
    let interval = Interval {
        months,
        days,
        micros,
    };
    if !negate_all {
        return Ok(interval);
    }
    // Checked: a part at its type's minimum has no negation.
    let negated = (|| {
        Some(Interval {
            months: interval.months.checked_neg()?,
            days: interval.days.checked_neg()?,
            micros: interval.micros.checked_neg()?,
        })
    })();
    negated.ok_or_else(|| scan.error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(seconds: i64, nanos: u32) -> Value {
        Value::Timestamp(Timestamp {
            seconds,
            nanos,
            offset: Some(0),
        })
    }

    #[test]
    fn calendar_round_trips_across_eras_and_leap_days() {
        for days in (-800_000..800_000)
            .step_by(997)
            .chain([-1, 0, 1, 11_016, 19_782])
        {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(
                checked_days(year, i64::from(month), i64::from(day)),
                Some(days),
                "{days}"
            );
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(checked_days(2000, 2, 29), Some(11_016));
        assert_eq!(checked_days(1900, 2, 29), None);
        assert_eq!(checked_days(2023, 2, 29), None);
        assert_eq!(checked_days(2024, 4, 31), None);
        assert_eq!(checked_days(2024, 13, 1), None);
        assert_eq!(checked_days(1, 1, 1), Some(-719_162));
        assert_eq!(checked_days(9999, 12, 31), Some(2_932_896));
        // Year 0 is 1 BC, a leap year.
        assert!(is_valid_date(0, 2, 29));
    }

    #[test]
    fn zoned_timestamps_with_every_fraction_width() {
        let base = 1_709_210_096; // 2024-02-29T12:34:56Z
        let fractions = [
            ("", 0),
            (".1", 100_000_000),
            (".12", 120_000_000),
            (".123", 123_000_000),
            (".1234", 123_400_000),
            (".12345", 123_450_000),
            (".123456", 123_456_000),
            (".1234567", 123_456_700),
            (".12345678", 123_456_780),
            (".123456789", 123_456_789),
        ];
        for (fraction, nanos) in fractions {
            let text = format!("2024-02-29T12:34:56{fraction}Z");
            assert_eq!(
                parse_zoned_timestamp(&text).unwrap(),
                utc(base, nanos),
                "{text}"
            );
        }
        assert!(parse_zoned_timestamp("2024-02-29T12:34:56.1234567890Z").is_err());
    }

    #[test]
    fn zoned_timestamp_offsets_keep_the_instant() {
        let parsed = parse_zoned_timestamp("2024-02-29T18:04:56.5+05:30").unwrap();
        assert_eq!(
            parsed,
            Value::Timestamp(Timestamp {
                seconds: 1_709_210_096,
                nanos: 500_000_000,
                offset: Some(19_800),
            })
        );
        let west = parse_zoned_timestamp("2024-02-29T08:34:56-04:00").unwrap();
        assert!(
            matches!(west, Value::Timestamp(t) if t.seconds == 1_709_210_096 && t.offset == Some(-14_400))
        );
        for text in [
            "2024-02-29T12:34+0530",
            "2024-02-29T12:34+05",
            "2024-02-29T12:34+05:30:15",
        ] {
            assert!(parse_zoned_timestamp(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn zoned_timestamp_edges() {
        assert_eq!(
            parse_zoned_timestamp("1969-12-31T23:59:59.999999Z").unwrap(),
            utc(-1, 999_999_000)
        );
        assert_eq!(
            parse_zoned_timestamp("0001-01-01T00:00:00Z").unwrap(),
            utc(-62_135_596_800, 0)
        );
        assert_eq!(
            parse_zoned_timestamp("+10000-01-01T00:00:00Z").unwrap(),
            utc(253_402_300_800, 0)
        );
        assert!(matches!(
            parse_zoned_timestamp("-0044-03-15T12:00:00Z").unwrap(),
            Value::Timestamp(t) if t.seconds < -62_135_596_800
        ));
        assert_eq!(
            parse_zoned_timestamp("infinity").unwrap(),
            Value::Infinity {
                negative: false,
                of: Temporal::ZonedTimestamp
            }
        );
        assert_eq!(
            parse_zoned_timestamp("-infinity").unwrap(),
            Value::Infinity {
                negative: true,
                of: Temporal::ZonedTimestamp
            }
        );
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2024-02-29 12:34:56Z",
            "2024-02-29T12:34:56",
            "2024-02-29T24:00:01Z",
            "2024-02-29T12:60:00Z",
            "2024-02-29T12:34:56Zjunk",
            "2024-02-29T12:34:56+24:00",
            "2024-02-29T12:34:56.Z",
            "24-02-29T12:34:56Z",
            "__debezium_unavailable_value",
        ] {
            let error = parse_zoned_timestamp(bad).unwrap_err().to_string();
            assert!(error.contains("invalid ZonedTimestamp"), "{bad}: {error}");
        }
    }

    #[test]
    fn zoned_times() {
        assert_eq!(
            parse_zoned_time("12:34:56.789Z").unwrap(),
            Time {
                nanos: 45_296_789_000_000,
                offset: Some(0)
            }
        );
        assert_eq!(
            parse_zoned_time("07:00:00-05:00").unwrap(),
            Time {
                nanos: 25_200 * NANOS_PER_SECOND,
                offset: Some(-18_000)
            }
        );
        assert_eq!(parse_zoned_time("24:00:00Z").unwrap().nanos, NANOS_PER_DAY);
        assert_eq!(
            parse_zoned_time("10:15Z").unwrap().nanos,
            36_900 * NANOS_PER_SECOND
        );
        assert!(parse_zoned_time("24:00:00.000001Z").is_err());
        assert!(parse_zoned_time("12:00:00").is_err());
    }

    #[test]
    fn extreme_values_are_errors_not_overflows() {
        // Found by reading the fuzz targets' reach: a part at its minimum cannot be negated.
        assert!(parse_iso_interval("-P-768614336404564650Y-8M").is_err());
        assert!(parse_iso_interval("-PT-9223372036854.775808S").is_err());
        assert!(check_offset(i64::MIN, "offset").is_err());
        assert_eq!(check_offset(-3600, "offset").unwrap(), -3600);
    }

    #[test]
    fn iso_intervals() {
        let interval = |months, days, micros| Interval {
            months,
            days,
            micros,
        };
        assert_eq!(
            parse_iso_interval("P1Y2M3DT4H5M6.78S").unwrap(),
            interval(14, 3, 14_706_780_000)
        );
        assert_eq!(
            parse_iso_interval("P0Y0M0DT0H0M0S").unwrap(),
            interval(0, 0, 0)
        );
        assert_eq!(
            parse_iso_interval("P-1Y2M-3DT-4H5M-6.5S").unwrap(),
            interval(-10, -3, -14_400_000_000 + 300_000_000 - 6_500_000)
        );
        assert_eq!(
            parse_iso_interval("PT0.0000009S").unwrap(),
            interval(0, 0, 0)
        );
        assert_eq!(
            parse_iso_interval("PT-0.0000019S").unwrap(),
            interval(0, 0, -1)
        );
        assert_eq!(parse_iso_interval("P2W").unwrap(), interval(0, 14, 0));
        assert_eq!(parse_iso_interval("-P1M1D").unwrap(), interval(-1, -1, 0));
        assert_eq!(
            parse_iso_interval("PT2562047788H").unwrap(),
            interval(0, 0, 2_562_047_788 * 3_600_000_000)
        );
        for bad in [
            "",
            "P",
            "1Y",
            "P1S",
            "PT1D",
            "P1.5Y",
            "PT1.5H",
            "P1YT",
            "P1Y2",
            "P999999999999999999Y",
            "PT1H1H",
        ] {
            assert!(parse_iso_interval(bad).is_err(), "{bad}");
        }
    }
}
