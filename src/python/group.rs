//! `changestream.group_lag()`: where a consumer group stands, without joining it.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::stream::{seconds, settings, topic_list};
use super::wait;

/// Where consumer group `group_id` stands on every partition of `topics`, read without
/// joining the group (its members are not disturbed).
///
/// Returns one dict per partition, sorted by topic and partition: ``topic``, ``partition``,
/// ``committed`` (the group's next offset, ``None`` if it has committed nothing there),
/// ``start`` and ``end`` (the oldest offset still in Kafka and the next one to be written)
/// and ``lag`` (messages the group has yet to read: from ``committed``, or from ``start``
/// when there is no committed position). ``kafka`` takes librdkafka settings as
/// ``ChangeStream`` does; each request gives up after ``timeout`` seconds.
#[pyfunction]
#[pyo3(signature = (topics, *, group_id, bootstrap_servers, kafka = None, timeout = 30.0))]
pub(crate) fn group_lag<'py>(
    py: Python<'py>,
    topics: &Bound<'py, PyAny>,
    group_id: String,
    bootstrap_servers: String,
    kafka: Option<&Bound<'py, PyAny>>,
    timeout: f64,
) -> PyResult<Bound<'py, PyList>> {
    let topics = topic_list(topics)?;
    let kafka = kafka.map(settings).transpose()?.unwrap_or_default();
    let timeout = seconds("timeout", timeout)?;
    // Each request may wait up to `timeout` for a broker: in the background, so Ctrl-C ends it.
    let lags = wait::in_background(
        py,
        move || crate::group::group_lag(&bootstrap_servers, &kafka, &group_id, &topics, timeout),
        wait::interrupted,
    )??;
    let list = PyList::empty(py);
    for lag in lags {
        let row = PyDict::new(py);
        row.set_item("topic", &lag.topic)?;
        row.set_item("partition", lag.partition)?;
        row.set_item("committed", lag.committed)?;
        row.set_item("start", lag.start)?;
        row.set_item("end", lag.end)?;
        row.set_item("lag", lag.lag())?;
        list.append(row)?;
    }
    Ok(list)
}
