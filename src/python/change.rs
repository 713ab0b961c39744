//! `changestream.Change`: one change, converted to Python objects once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

use super::convert::{check_convertible, utc_datetime, value_to_py};
use super::errors::DecodeError;
use crate::avro::{LazyValue, Value};
use crate::change::{Change, Op, Position};
use crate::error::Error;
use crate::name::Name;

/// One change event: what happened to one row, and where it sits in Kafka.
#[pyclass(name = "Change", module = "changestream", frozen)]
pub(crate) struct PyChange {
    op: Op,
    key: Py<PyAny>,
    /// The row before the change, converted when first asked for: most applications read
    /// `after` (and the key of a delete); its convertibility is checked when the change is
    /// taken, so its errors come where every decode error comes.
    before: Option<Value>,
    before_py: PyOnceLock<Py<PyAny>>,
    after: Py<PyAny>,
    /// Debezium's `source` and `transaction` blocks, converted when first asked for: most
    /// applications never look at them, and `source` is the largest record of an envelope
    /// (read from a Debezium envelope, it is even decoded only then).
    source: Option<LazyValue>,
    source_py: PyOnceLock<Py<PyAny>>,
    transaction: Option<Value>,
    transaction_py: PyOnceLock<Py<PyAny>>,
    tombstone: bool,
    table: Option<Name>,
    topic: Name,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
}

impl PyChange {
    /// The Python object of `change`. It is returned as the object, not as the struct: the
    /// struct is a few hundred bytes, copied at every step it would be returned through.
    pub(crate) fn new(py: Python<'_>, change: Box<Change>) -> PyResult<Bound<'_, PyChange>> {
        let position = &change.position;
        let convert = |value: &Option<Value>| -> PyResult<Py<PyAny>> {
            Ok(match value {
                Some(value) => value_to_py(py, value)
                    .map_err(|e| locate(py, e, position))?
                    .unbind(),
                None => py.None(),
            })
        };
        let object = PyChange {
            op: change.op,
            key: convert(&change.key)?,
            before: {
                if let Some(before) = &change.before {
                    check_convertible(py, before).map_err(|e| locate(py, e, position))?;
                }
                change.before
            },
            before_py: PyOnceLock::new(),
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
        };
        Bound::new(py, object)
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

/// The operation `Op::as_str` names.
fn op_named(name: &str) -> Option<Op> {
    Some(match name {
        "insert" => Op::Insert,
        "update" => Op::Update,
        "delete" => Op::Delete,
        "read" => Op::Read,
        "upsert" => Op::Upsert,
        "truncate" => Op::Truncate,
        "message" => Op::Message,
        _ => return None,
    })
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
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

#[pymethods]
impl PyChange {
    /// `insert`, `update`, `delete`, `read` (snapshot), `upsert` (a flat row), `truncate` or
    /// `message`.
    #[getter]
    fn op(&self) -> &'static str {
        self.op.as_str()
    }

    /// The decoded message key (a dict for record keys), or None for an unkeyed message.
    #[getter]
    fn key(&self, py: Python<'_>) -> Py<PyAny> {
        self.key.clone_ref(py)
    }

    /// The row before the change, when the format carries it (a dict for record rows).
    #[getter]
    fn before(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        lazy(py, &self.before, &self.before_py)
    }

    /// The row after the change (a dict for record rows; the value itself on a topic whose
    /// values are not records); None for deletes.
    #[getter]
    fn after(&self, py: Python<'_>) -> Py<PyAny> {
        self.after.clone_ref(py)
    }

    /// Source metadata (Debezium's `source` block), when the format carries it.
    #[getter]
    fn source(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.source_py
            .get_or_try_init(py, || match &self.source {
                Some(source) => {
                    let value = source
                        .decode()
                        .map_err(|e| e.at(self.position().location()))?;
                    value_to_py(py, &value)
                        .map(Bound::unbind)
                        .map_err(|e| locate(py, e, &self.position()))
                }
                None => Ok(py.None()),
            })
            .map(|object| object.clone_ref(py))
    }

    /// Debezium's `transaction` block (`id`, `total_order`, `data_collection_order`), when
    /// present.
    #[getter]
    fn transaction(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        lazy(py, &self.transaction, &self.transaction_py)
    }

    /// Whether the message was a tombstone (null value): a flat-row delete, or Debezium's after
    /// `emit_tombstones=True`.
    #[getter]
    fn tombstone(&self) -> bool {
        self.tombstone
    }

    /// The table the change belongs to.
    #[getter]
    fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The Kafka topic the change was read from.
    #[getter]
    fn topic(&self) -> &str {
        &self.topic
    }

    /// The Kafka partition the change was read from.
    #[getter]
    fn partition(&self) -> i32 {
        self.partition
    }

    /// The change's offset in its partition.
    #[getter]
    fn offset(&self) -> i64 {
        self.offset
    }

    /// The Kafka message timestamp (timezone-aware, UTC), if the message has one.
    #[getter]
    fn timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.timestamp_ms.map(|ms| utc_datetime(py, ms)).transpose()
    }

    /// The change as a plain ``dict`` (``op``, ``table``, ``key``, ``before``, ``after``,
    /// ``source``, ``transaction``, ``tombstone``, ``topic``, ``partition``, ``offset``,
    /// ``timestamp``): for JSON, DataFrames, or systems that take no custom objects.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("op", self.op.as_str())?;
        dict.set_item("table", self.table.as_deref())?;
        dict.set_item("key", &self.key)?;
        dict.set_item("before", self.before(py)?)?;
        dict.set_item("after", &self.after)?;
        dict.set_item("source", self.source(py)?)?;
        dict.set_item("transaction", self.transaction(py)?)?;
        dict.set_item("tombstone", self.tombstone)?;
        dict.set_item("topic", &*self.topic)?;
        dict.set_item("partition", self.partition)?;
        dict.set_item("offset", self.offset)?;
        dict.set_item("timestamp", self.timestamp(py)?)?;
        Ok(dict)
    }

    /// Pickles as its values (for multiprocessing, joblib, Airflow's XCom): the copy is an
    /// equal ``Change``, unattached to any stream.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.get();
        let state = (
            this.op.as_str(),
            this.key.clone_ref(py),
            this.before(py)?,
            this.after.clone_ref(py),
            this.source(py)?,
            this.transaction(py)?,
            this.tombstone,
            this.table.as_deref(),
            &*this.topic,
            this.partition,
            this.offset,
            this.timestamp_ms,
        );
        let restore = slf.get_type().getattr("_restore")?;
        (restore, state.into_pyobject(py)?).into_pyobject(py)
    }

    /// Rebuild a pickled change from what [`PyChange::__reduce__`] gave.
    #[classmethod]
    #[pyo3(signature = (op, key, before, after, source, transaction, tombstone, table, topic, partition, offset, timestamp_ms))]
    #[allow(clippy::too_many_arguments)]
    fn _restore(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        op: &str,
        key: Py<PyAny>,
        before: Py<PyAny>,
        after: Py<PyAny>,
        source: Py<PyAny>,
        transaction: Py<PyAny>,
        tombstone: bool,
        table: Option<String>,
        topic: String,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
    ) -> PyResult<PyChange> {
        let op = op_named(op)
            .ok_or_else(|| Error::ArgumentValue(format!("not a change operation: {op:?}")))?;
        let known = |object: Py<PyAny>| {
            let cache = PyOnceLock::new();
            let _ = cache.set(py, object);
            cache
        };
        Ok(PyChange {
            op,
            key,
            before: None,
            before_py: known(before),
            after,
            source: None,
            source_py: known(source),
            transaction: None,
            transaction_py: known(transaction),
            tombstone,
            table: table.map(Name::from),
            topic: Name::from(topic),
            partition,
            offset,
            timestamp_ms,
        })
    }

    /// The HTML a notebook shows: op, table, key and the row; for an update, only the columns
    /// that changed, before → after.
    fn _repr_html_(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        Ok(py
            .import("changestream._display")?
            .call_method1("change_html", (slf,))?
            .unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let text = |s: &str| -> PyResult<String> { Ok(PyString::new(py, s).repr()?.to_string()) };
        Ok(format!(
            "Change(op={}, table={}, key={}, before={}, after={}, topic={}, partition={}, offset={})",
            text(self.op.as_str())?,
            match &self.table {
                Some(table) => text(table)?,
                None => "None".to_owned(),
            },
            self.key.bind(py).repr()?,
            self.before(py)?.bind(py).repr()?,
            self.after.bind(py).repr()?,
            text(&self.topic)?,
            self.partition,
            self.offset
        ))
    }
}
