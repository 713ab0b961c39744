//! Decoded values to Python objects, and the two Python types decoded values can become
//! that the standard library lacks: [`PyInterval`] and the [`PyUnavailable`] singleton.
//!
//! Every conversion is exact: decimals go through their digit text into `decimal.Decimal`,
//! timestamps through integer calendar arithmetic into `datetime`, never through a float.
//! Python's types are narrower than the wire's: `datetime` stops at microseconds (finer digits
//! are dropped, rounding toward the past) and at years 1–9999, and `time` cannot say 24:00.
//! PostgreSQL's ±infinity becomes the type's `max`/`min` and 24:00 becomes `time.max` (see
//! docs/types.md); any other value out of Python's range is a `DecodeError` that names it.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBytes, PyDate, PyDateTime, PyDelta, PyDict, PyList, PyString, PyTuple, PyType, PyTzInfo,
};

use crate::avro::{
    civil_from_days, Decimal, Interval, RecordShape, Temporal, Time, Timestamp, Value,
    SMALL_TEXT_BYTES,
};
use crate::error::Error;

const SECONDS_PER_DAY: i64 = 86_400;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const MICROS_PER_DAY: i64 = SECONDS_PER_DAY * 1_000_000;

/// A decoded Avro value as the Python object a user expects.
pub(crate) fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Boolean(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Long(l) => l.into_pyobject(py)?.into_any(),
        Value::Float(f) => f64::from(*f).into_pyobject(py)?.into_any(),
        Value::Double(d) => d.into_pyobject(py)?.into_any(),
        Value::Bytes(b) | Value::Fixed(b) => PyBytes::new(py, b).into_any(),
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Enum(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (key, item) in entries {
                dict.set_item(key, value_to_py(py, item)?)?;
            }
            dict.into_any()
        }
        Value::Record(record) => {
            let shape = py_shape(py, record.shape)?;
            // A copy of the shape's dict already holds every key, in order, at its final
            // size: setting the values replaces, without growing the dict on the way.
            let dict = shape.template.bind(py).copy()?;
            for (name, item) in shape.names.iter().zip(&record.values) {
                dict.set_item(name.bind(py), value_to_py(py, item)?)?;
            }
            dict.into_any()
        }
        Value::Decimal(decimal) => decimal_to_py(py, decimal)?,
        Value::Uuid(bytes) => {
            static UUID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
            let kwargs = PyDict::new(py);
            kwargs.set_item("bytes", PyBytes::new(py, bytes))?;
            UUID.import(py, "uuid", "UUID")?.call((), Some(&kwargs))?
        }
        Value::Date(days) => date_to_py(py, i64::from(*days))?,
        Value::Time(time) => time_to_py(py, time)?,
        Value::Timestamp(timestamp) => timestamp_to_py(py, timestamp)?,
        Value::Infinity { negative, of } => infinity_to_py(py, *negative, *of)?,
        Value::Interval(interval) => Bound::new(py, PyInterval::from(*interval))?.into_any(),
        Value::Duration(micros) => duration_to_py(py, *micros)?.into_any(),
        Value::Unavailable => unavailable(py)?.bind(py).clone().into_any(),
    })
}

/// Fail as [`value_to_py`] would on `value`, without making its Python objects when it surely
/// converts: a row converted only when first read still raises its error when the change is
/// taken, as every other decode error does.
pub(crate) fn check_convertible(py: Python<'_>, value: &Value) -> PyResult<()> {
    match surely_convertible(value) {
        true => Ok(()),
        false => value_to_py(py, value).map(drop),
    }
}

/// Whether every date, time and timestamp in `value` is within what Python's types hold (what
/// can make [`value_to_py`] fail).
fn surely_convertible(value: &Value) -> bool {
    // `datetime.timezone` takes offsets strictly within a day.
    let zone_fits = |offset: i32| offset.unsigned_abs() < SECONDS_PER_DAY as u32;
    match value {
        Value::Record(record) => record.values.iter().all(surely_convertible),
        Value::Array(items) => items.iter().all(surely_convertible),
        Value::Map(entries) => entries.iter().all(|(_, item)| surely_convertible(item)),
        Value::Date(days) => python_date(i64::from(*days)).is_some(),
        Value::Time(time) => time.nanos >= 0 && time.offset.is_none_or(zone_fits),
        Value::Timestamp(timestamp) => {
            python_wall_clock(timestamp).is_some() && timestamp.offset.is_none_or(zone_fits)
        }
        _ => true,
    }
}

/// A record shape as Python objects: its field names (Python caches a string's hash, so the
/// dicts of later records hash nothing) and a dict of those names, in order, to `None`.
struct PyShape {
    names: Box<[Py<PyString>]>,
    template: Py<PyDict>,
}

/// The Python side of `shape`: made the first time one of its records is converted, then kept
/// in the shape's binding slot (shapes live as long as the process), reached without a lookup.
fn py_shape(py: Python<'_>, shape: &'static RecordShape) -> PyResult<&'static PyShape> {
    let made = || {
        shape
            .binding
            .get()
            .and_then(|made| made.downcast_ref::<PyShape>())
    };
    if let Some(made) = made() {
        return Ok(made);
    }
    // Made before it is put in the slot, not while the slot is being set: making Python
    // objects may run another Python thread, which could be converting a record of this shape.
    let names: Box<[Py<PyString>]> = shape
        .names
        .iter()
        .map(|name| PyString::intern(py, name).unbind())
        .collect();
    let template = PyDict::new(py);
    for name in &names {
        template.set_item(name.bind(py), py.None())?;
    }
    // Another thread may have set it meanwhile: the first one stays.
    let _ = shape.binding.set(Box::new(PyShape {
        names,
        template: template.unbind(),
    }));
    Ok(made()
        .ok_or_else(|| Error::Internal("a record shape holds another binding's data".into()))?)
}

/// Milliseconds since the epoch as an aware UTC `datetime`, computed exactly (no float).
pub(crate) fn utc_datetime(py: Python<'_>, millis: i64) -> PyResult<Bound<'_, PyAny>> {
    timestamp_to_py(
        py,
        &Timestamp {
            seconds: millis.div_euclid(1000),
            nanos: (millis.rem_euclid(1000) * 1_000_000) as u32,
            offset: Some(0),
        },
    )
}

/// A value that Python's types cannot hold, as the `DecodeError` users catch.
fn out_of_range(what: String) -> PyErr {
    Error::decode(what).into()
}

fn decimal_to_py<'py>(py: Python<'py>, decimal: &Decimal) -> PyResult<Bound<'py, PyAny>> {
    static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    // Decimal's constructor is exact whatever the context precision, and the text keeps the
    // scale as the exponent: Decimal("1.50") is not Decimal("1.5").
    let class = DECIMAL.import(py, "decimal", "Decimal")?;
    let mut text = [0; SMALL_TEXT_BYTES];
    match decimal.small_text(&mut text) {
        Some(text) => class.call1((PyString::new(py, text),)),
        None => class.call1((decimal.to_string(),)),
    }
}

/// The civil date of a day count, if Python's `date` can hold it (years 1 to 9999).
fn python_date(days: i64) -> Option<(i32, u8, u8)> {
    let (year, month, day) = civil_from_days(days);
    (1..=9999)
        .contains(&year)
        .then_some((year as i32, month, day))
}

// `date`, `time` and `datetime` are made from their pickled state (`datetime(state, tz)`):
// the constructors read those bytes directly, where eight separate arguments go through
// argument parsing at about three times the cost (the stable ABI this module is built for
// has no datetime C API). Pickles must stay readable, so CPython keeps that layout: year
// (two bytes, big-endian), month, day, hour, minute, second, microsecond (three bytes).
// The fields are checked before (years 1 to 9999, a real calendar day, a time of day).

fn date_to_py(py: Python<'_>, days: i64) -> PyResult<Bound<'_, PyAny>> {
    let (year, month, day) = python_date(days).ok_or_else(|| {
        let (year, ..) = civil_from_days(days);
        out_of_range(format!(
            "date {days} days from 1970-01-01 (year {year}) is outside Python's date range (years 1 to 9999)"
        ))
    })?;
    static DATE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let [high, low] = (year as u16).to_be_bytes();
    let state = PyBytes::new(py, &[high, low, month, day]);
    DATE.import(py, "datetime", "date")?.call1((state,))
}

/// A `time` or `datetime` (`class`) from its pickled state and zone.
fn from_pickled_state<'py>(
    class: &Bound<'py, PyType>,
    state: &[u8],
    tz: Option<Bound<'py, PyTzInfo>>,
) -> PyResult<Bound<'py, PyAny>> {
    let state = PyBytes::new(class.py(), state);
    match tz {
        Some(tz) => class.call1((state, tz)),
        None => class.call1((state,)),
    }
}

/// The pickled state's time-of-day bytes.
fn time_state(second_of_day: i64, micros: u32) -> [u8; 6] {
    let [_, us_high, us_mid, us_low] = micros.to_be_bytes();
    [
        (second_of_day / 3600) as u8,
        (second_of_day / 60 % 60) as u8,
        (second_of_day % 60) as u8,
        us_high,
        us_mid,
        us_low,
    ]
}

/// `datetime.timezone` for an offset in seconds east of UTC (`timezone.utc` for 0).
fn timezone(py: Python<'_>, offset: i32) -> PyResult<Bound<'_, PyTzInfo>> {
    if offset == 0 {
        return Ok(PyTzInfo::utc(py)?.to_owned());
    }
    let delta = PyDelta::new(py, 0, offset, 0, true)?;
    PyTzInfo::fixed_offset(py, delta)
}

fn time_to_py<'py>(py: Python<'py>, time: &Time) -> PyResult<Bound<'py, PyAny>> {
    let tz = time.offset.map(|offset| timezone(py, offset)).transpose()?;
    // PostgreSQL's 24:00:00 has no `time`: the last representable instant of the day stands in.
    let nanos = time.nanos.min(SECONDS_PER_DAY * NANOS_PER_SECOND - 1000);
    if !(0..SECONDS_PER_DAY * NANOS_PER_SECOND).contains(&nanos) {
        return Err(out_of_range(format!(
            "time of day {} ns is outside 00:00 to 24:00",
            time.nanos
        )));
    }
    let state = time_state(
        nanos / NANOS_PER_SECOND,
        (nanos % NANOS_PER_SECOND / 1000) as u32,
    );
    static TIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    from_pickled_state(TIME.import(py, "datetime", "time")?, &state, tz)
}

/// The civil date and second of the day a `datetime` holds for `timestamp` (the wall clock of
/// its zone), if Python's `datetime` can hold it.
fn python_wall_clock(timestamp: &Timestamp) -> Option<(i32, u8, u8, i64)> {
    let local = timestamp
        .seconds
        .checked_add(i64::from(timestamp.offset.unwrap_or(0)))?;
    let (year, month, day) = python_date(local.div_euclid(SECONDS_PER_DAY))?;
    Some((year, month, day, local.rem_euclid(SECONDS_PER_DAY)))
}

fn timestamp_to_py<'py>(py: Python<'py>, timestamp: &Timestamp) -> PyResult<Bound<'py, PyAny>> {
    let Some((year, month, day, second_of_day)) = python_wall_clock(timestamp) else {
        return Err(out_of_range(format!(
            "timestamp {} s from 1970-01-01T00:00:00 is outside Python's datetime range (years 1 to 9999)",
            timestamp.seconds
        )));
    };
    let tz = timestamp
        .offset
        .map(|offset| timezone(py, offset))
        .transpose()?;
    let [year_high, year_low] = (year as u16).to_be_bytes();
    let [hour, minute, second, us_high, us_mid, us_low] =
        time_state(second_of_day, timestamp.nanos / 1000);
    let state = [
        year_high, year_low, month, day, hour, minute, second, us_high, us_mid, us_low,
    ];
    static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    from_pickled_state(DATETIME.import(py, "datetime", "datetime")?, &state, tz)
}

/// PostgreSQL's ±infinity as the type's `max` / `min`, so a column keeps one Python type and
/// sorts as PostgreSQL sorts it.
fn infinity_to_py(py: Python<'_>, negative: bool, of: Temporal) -> PyResult<Bound<'_, PyAny>> {
    let (year, month, day) = if negative { (1, 1, 1) } else { (9999, 12, 31) };
    if of == Temporal::Date {
        return Ok(PyDate::new(py, year, month, day)?.into_any());
    }
    let utc = PyTzInfo::utc(py)?;
    let tz = (of == Temporal::ZonedTimestamp).then_some(&*utc);
    let datetime = if negative {
        PyDateTime::new(py, year, month, day, 0, 0, 0, 0, tz)?
    } else {
        PyDateTime::new(py, year, month, day, 23, 59, 59, 999_999, tz)?
    };
    Ok(datetime.into_any())
}

fn duration_to_py(py: Python<'_>, micros: i64) -> PyResult<Bound<'_, PyDelta>> {
    // |i64| microseconds is under 2^27 days, well inside timedelta's ±999999999 days.
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    PyDelta::new(
        py,
        days as i32,
        (rest / 1_000_000) as i32,
        (rest % 1_000_000) as i32,
        false,
    )
}

/// A calendar interval: months, days and microseconds kept apart (PostgreSQL `interval`,
/// Avro `duration`), because neither a month nor a day has a fixed length.
#[pyclass(name = "Interval", module = "changestream", frozen, eq, hash)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PyInterval {
    /// Whole months (a year is 12).
    #[pyo3(get)]
    months: i64,
    /// Whole days.
    #[pyo3(get)]
    days: i64,
    /// Microseconds.
    #[pyo3(get)]
    microseconds: i64,
}

impl From<Interval> for PyInterval {
    fn from(interval: Interval) -> Self {
        PyInterval {
            months: interval.months,
            days: interval.days,
            microseconds: interval.micros,
        }
    }
}

#[pymethods]
impl PyInterval {
    #[new]
    #[pyo3(signature = (months = 0, days = 0, microseconds = 0))]
    fn new(months: i64, days: i64, microseconds: i64) -> Self {
        PyInterval {
            months,
            days,
            microseconds,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Interval(months={}, days={}, microseconds={})",
            self.months, self.days, self.microseconds
        )
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let this = slf.get();
        let args = PyTuple::new(slf.py(), [this.months, this.days, this.microseconds])?;
        Ok((slf.get_type(), args))
    }
}

/// The type of `changestream.UNAVAILABLE`: a value Debezium did not have (an unchanged TOASTed
/// column), never to be confused with the placeholder text or with NULL.
#[pyclass(name = "UnavailableType", module = "changestream", frozen)]
pub(crate) struct PyUnavailable;

#[pymethods]
impl PyUnavailable {
    fn __repr__(&self) -> &'static str {
        "changestream.UNAVAILABLE"
    }

    /// Pickle and copy by name, so the singleton stays unique.
    fn __reduce__(&self) -> &'static str {
        "UNAVAILABLE"
    }
}

/// The one `UNAVAILABLE` object.
pub(crate) fn unavailable(py: Python<'_>) -> PyResult<&Py<PyUnavailable>> {
    static UNAVAILABLE: PyOnceLock<Py<PyUnavailable>> = PyOnceLock::new();
    UNAVAILABLE.get_or_try_init(py, || Py::new(py, PyUnavailable))
}
