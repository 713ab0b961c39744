//! `changestream.capture(...)`: runs [`crate::capture::run`] on a thread of its own while the
//! calling Python thread waits with the GIL released, checking for signals between waits.
//! Ctrl-C stops the capture cleanly (Kafka flushed, the acknowledged LSN confirmed), then the
//! `KeyboardInterrupt` goes on up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::capture::types::Flavor;
use crate::capture::{run, CaptureConfig, Counters, SnapshotMode};
use crate::error::Error;
use crate::python::stream::settings;
use crate::python::wait;

/// Capture PostgreSQL changes into Kafka (see `_core.pyi`).
#[pyfunction]
#[pyo3(signature = (
    *,
    dsn,
    bootstrap_servers,
    schema_registry_url,
    tables = None,
    topic_prefix = "changestream",
    slot = "changestream",
    publication = "changestream",
    snapshot = "initial",
    format = "debezium",
    until = None,
    tombstones = true,
    transaction_metadata = false,
    kafka = None,
    registry = None,
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn capture<'py>(
    py: Python<'py>,
    dsn: String,
    bootstrap_servers: String,
    schema_registry_url: String,
    tables: Option<Vec<String>>,
    topic_prefix: &str,
    slot: &str,
    publication: &str,
    snapshot: &str,
    format: &str,
    until: Option<&str>,
    tombstones: bool,
    transaction_metadata: bool,
    kafka: Option<&Bound<'py, PyAny>>,
    registry: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let snapshot = match snapshot {
        "initial" => SnapshotMode::Initial,
        "never" => SnapshotMode::Never,
        _ => return Err(Error::Config("snapshot must be \"initial\" or \"never\"".into()).into()),
    };
    let flavor = match format {
        "debezium" => Flavor::Debezium,
        "rows" => Flavor::Rows,
        _ => return Err(Error::Config("format must be \"debezium\" or \"rows\"".into()).into()),
    };
    let until_now = match until {
        None => false,
        Some("now") => true,
        Some(_) => return Err(Error::Config("until must be None or \"now\"".into()).into()),
    };
    let config = CaptureConfig {
        dsn,
        bootstrap_servers,
        schema_registry_url,
        tables: tables.unwrap_or_default(),
        topic_prefix: topic_prefix.to_owned(),
        slot: slot.to_owned(),
        publication: publication.to_owned(),
        snapshot,
        flavor,
        until_now,
        tombstones,
        transaction_metadata,
        kafka: kafka.map(settings).transpose()?.unwrap_or_default(),
        registry: registry.map(settings).transpose()?.unwrap_or_default(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = mpsc::channel();
    let flag = stop.clone();
    crate::threads::spawn("changestream-capture", move || {
        let _ = sender.send(run(&config, &flag));
    })?; // an OSError: the process cannot start a thread
    let mut interrupted = None;
    let mut receiver = receiver;
    let result = loop {
        // The receiver moves into the GIL-free wait and back (it is not Sync).
        let (back, received) = py.detach(move || {
            let received = receiver.recv_timeout(wait::SLICE);
            (receiver, received)
        });
        receiver = back;
        match received {
            Ok(result) => break result,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The thread panicked: a bug of ours, not a condition of the database.
                return Err(Error::Internal(
                    "the capture thread ended without a result".to_owned(),
                )
                .into());
            }
        }
        if interrupted.is_none() {
            if let Err(signal) = wait::interrupted(py) {
                stop.store(true, Ordering::Relaxed);
                interrupted = Some(signal);
            }
        }
    };
    if let Some(signal) = interrupted {
        return Err(signal);
    }
    counters(py, &result?)
}

fn counters<'py>(py: Python<'py>, counters: &Counters) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("snapshot_rows", counters.snapshot_rows)?;
    dict.set_item("inserts", counters.inserts)?;
    dict.set_item("updates", counters.updates)?;
    dict.set_item("deletes", counters.deletes)?;
    dict.set_item("truncates", counters.truncates)?;
    dict.set_item("messages", counters.messages)?;
    dict.set_item("transactions", counters.transactions)?;
    dict.set_item("produced", counters.produced)?;
    dict.set_item("confirmed_lsn", counters.confirmed_lsn)?;
    Ok(dict)
}
