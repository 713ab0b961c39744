//! `changestream.ChangeStream`: the iterator over changes.
//!
//! Every wait happens with the GIL released and in slices of at most 100 ms, checking for
//! signals between slices, so Ctrl-C interrupts a blocked `next()` promptly.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use super::change::PyChange;
use crate::error::Error;
use crate::kafka::{ChangeConsumer, Next, Start, StreamConfig, Until};

/// The longest the GIL stays released before we check for Ctrl-C.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Follows change-event topics from Kafka.
#[pyclass(name = "ChangeStream", module = "changestream", frozen)]
pub(crate) struct PyChangeStream {
    consumer: Mutex<Option<ChangeConsumer>>,
}

#[pymethods]
impl PyChangeStream {
    #[new]
    #[pyo3(signature = (
        topics, *, bootstrap_servers, schema_registry_url, group_id = None, start = "earliest",
        until = None, kafka = None, registry = None, registry_timeout = 30.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        topics: &Bound<'_, PyAny>,
        bootstrap_servers: String,
        schema_registry_url: String,
        group_id: Option<String>,
        start: &str,
        until: Option<&str>,
        kafka: Option<&Bound<'_, PyAny>>,
        registry: Option<&Bound<'_, PyAny>>,
        registry_timeout: f64,
    ) -> PyResult<Self> {
        let config = StreamConfig {
            topics: topic_list(topics)?,
            bootstrap_servers,
            schema_registry_url,
            group_id,
            start: match start {
                "earliest" => Start::Earliest,
                "latest" => Start::Latest,
                other => {
                    return Err(Error::Config(format!(
                        "start must be \"earliest\" or \"latest\", not {other:?}"
                    ))
                    .into())
                }
            },
            until: match until {
                None => Until::Forever,
                Some("end") => Until::End,
                Some(other) => {
                    return Err(Error::Config(format!(
                        "until must be None or \"end\", not {other:?}"
                    ))
                    .into())
                }
            },
            registry_timeout: Duration::try_from_secs_f64(registry_timeout).map_err(|_| {
                Error::Config("registry_timeout must be a non-negative number of seconds".into())
            })?,
            kafka: kafka.map(settings).transpose()?.unwrap_or_default(),
            registry: registry.map(settings).transpose()?.unwrap_or_default(),
        };
        let consumer = py.detach(|| ChangeConsumer::start(config))?;
        Ok(PyChangeStream {
            consumer: Mutex::new(Some(consumer)),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyChange> {
        self.wait(py, None)?
            .ok_or_else(|| PyStopIteration::new_err(()))
    }

    /// The next change, or None if `timeout` seconds pass first or a bounded stream ended.
    #[pyo3(signature = (timeout = None))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyChange>> {
        let timeout = timeout
            .map(|t| Duration::try_from_secs_f64(t.max(0.0)))
            .transpose()
            .map_err(|_| Error::Config("timeout must be a number of seconds".into()))?;
        self.wait(py, Some(timeout.unwrap_or(Duration::MAX)))
    }

    /// Stop fetching, commit the finished positions and leave the group. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let consumer = self.lock().take();
        if let Some(mut consumer) = consumer {
            py.detach(move || consumer.close())?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyAny>) -> PyResult<()> {
        self.close(py)
    }
}

impl PyChangeStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ChangeConsumer>> {
        self.consumer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait up to `timeout` (forever if None) for the next change; None when it ended.
    fn wait(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<PyChange>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            let next = py.detach(|| match self.lock().as_mut() {
                Some(consumer) => consumer.next(slice),
                None => Err(Error::Closed),
            })?;
            match next {
                Next::Change(change) => return PyChange::new(py, *change).map(Some),
                Next::End => return Ok(None),
                Next::Pending => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

fn topic_list(topics: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(topic) = topics.cast::<PyString>() {
        return Ok(vec![topic.to_str()?.to_owned()]);
    }
    topics
        .try_iter()?
        .map(|t| t?.extract::<String>())
        .collect::<PyResult<Vec<_>>>()
        .map_err(|_| PyTypeError::new_err("topics must be a str or a sequence of str"))
}

/// Client settings (librdkafka's, the registry client's) from a mapping, values as strings.
fn settings(kafka: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut settings = Vec::new();
    for item in kafka.call_method0("items")?.try_iter()? {
        let (key, value): (String, Bound<'_, PyAny>) = item?.extract()?;
        let value = if let Ok(flag) = value.cast::<PyBool>() {
            if flag.is_true() { "true" } else { "false" }.to_owned()
        } else {
            value.str()?.to_str()?.to_owned()
        };
        settings.push((key, value));
    }
    Ok(settings)
}
