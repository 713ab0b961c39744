//! `changestream.Change`: one change, converted to Python objects once.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use super::convert::{utc_datetime, value_to_py};
use super::errors::DecodeError;
use crate::avro::Value;
use crate::change::{Change, Op, Position};

/// One change event.
#[pyclass(name = "Change", module = "changestream", frozen)]
pub(crate) struct PyChange {
    op: Op,
    key: Py<PyAny>,
    before: Py<PyAny>,
    after: Py<PyAny>,
    /// Debezium's `source` and `transaction` blocks, converted when first asked for: most
    /// applications never look at them, and `source` is the largest record of an envelope.
    source: Option<Value>,
    source_py: PyOnceLock<Py<PyAny>>,
    transaction: Option<Value>,
    transaction_py: PyOnceLock<Py<PyAny>>,
    tombstone: bool,
    table: Option<Arc<str>>,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
}

impl PyChange {
    pub(crate) fn new(py: Python<'_>, change: Change) -> PyResult<PyChange> {
        let position = &change.position;
        let convert = |value: &Option<Value>| -> PyResult<Py<PyAny>> {
            Ok(match value {
                Some(value) => value_to_py(py, value)
                    .map_err(|e| locate(py, e, position))?
                    .unbind(),
                None => py.None(),
            })
        };
        Ok(PyChange {
            op: change.op,
            key: convert(&change.key)?,
            before: convert(&change.before)?,
            after: convert(&change.after)?,
            source: change.source,
            source_py: PyOnceLock::new(),
            transaction: change.transaction,
            transaction_py: PyOnceLock::new(),
            tombstone: change.tombstone,
            table: change.table,
            topic: change.position.topic,
            partition: change.position.partition,
            offset: change.position.offset,
            timestamp_ms: change.position.timestamp_ms,
        })
    }
}

/// `value` as a Python object, converted once.
fn lazy(
    py: Python<'_>,
    value: &Option<Value>,
    cache: &PyOnceLock<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    cache
        .get_or_try_init(py, || match value {
            Some(value) => value_to_py(py, value).map(Bound::unbind),
            None => Ok(py.None()),
        })
        .map(|object| object.clone_ref(py))
}

/// A value Python cannot hold (a year past 9999, say) is found only while converting: name
/// the message it came from, as decode errors do.
fn locate(py: Python<'_>, error: PyErr, position: &Position) -> PyErr {
    if error.is_instance_of::<DecodeError>(py) {
        let value = error.value(py);
        let _ = value.setattr("topic", &*position.topic);
        let _ = value.setattr("partition", position.partition);
        let _ = value.setattr("offset", position.offset);
    }
    error
}

impl PyChange {
    /// Where the change was read.
    pub(crate) fn position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

#[pymethods]
impl PyChange {
    #[getter]
    fn op(&self) -> &'static str {
        self.op.as_str()
    }

    #[getter]
    fn key(&self, py: Python<'_>) -> Py<PyAny> {
        self.key.clone_ref(py)
    }

    #[getter]
    fn before(&self, py: Python<'_>) -> Py<PyAny> {
        self.before.clone_ref(py)
    }

    #[getter]
    fn after(&self, py: Python<'_>) -> Py<PyAny> {
        self.after.clone_ref(py)
    }

    #[getter]
    fn source(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        lazy(py, &self.source, &self.source_py)
    }

    #[getter]
    fn transaction(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        lazy(py, &self.transaction, &self.transaction_py)
    }

    #[getter]
    fn tombstone(&self) -> bool {
        self.tombstone
    }

    #[getter]
    fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    #[getter]
    fn topic(&self) -> &str {
        &self.topic
    }

    #[getter]
    fn partition(&self) -> i32 {
        self.partition
    }

    #[getter]
    fn offset(&self) -> i64 {
        self.offset
    }

    #[getter]
    fn timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.timestamp_ms
            .map(|ms| utc_datetime(py, ms).map(Bound::into_any))
            .transpose()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let row = if self.after.is_none(py) {
            &self.before
        } else {
            &self.after
        };
        let text = |s: &str| -> PyResult<String> { Ok(PyString::new(py, s).repr()?.to_string()) };
        Ok(format!(
            "Change(op={}, table={}, key={}, row={}, topic={}, partition={}, offset={})",
            text(self.op.as_str())?,
            match &self.table {
                Some(table) => text(table)?,
                None => "None".to_owned(),
            },
            self.key.bind(py).repr()?,
            row.bind(py).repr()?,
            text(&self.topic)?,
            self.partition,
            self.offset
        ))
    }
}
