//! `progress=True`: the display of a bounded read's progress, shared by the change iterator
//! and the batch iterator of one stream.
//!
//! The display itself is `changestream._progress.Progress` (tqdm when installed, else a line
//! through `logging`); this side decides when to refresh it: at most every 250 ms while
//! reading, and always once at the end, when it is closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::kafka::ChangeConsumer;

/// How often the display is refreshed.
const EVERY: Duration = Duration::from_millis(250);

/// The Python display and when it was last refreshed.
struct Display {
    shown: Py<PyAny>,
    refreshed: Option<Instant>,
}

/// The display of one stream, if it has one.
#[derive(Clone, Default)]
pub(crate) struct Progress {
    display: Arc<Mutex<Option<Display>>>,
}

impl Progress {
    /// A display made by `changestream._progress.Progress`.
    pub(crate) fn shown(py: Python<'_>) -> PyResult<Progress> {
        let shown = py
            .import("changestream._progress")?
            .getattr("Progress")?
            .call0()?
            .unbind();
        Ok(Progress {
            display: Arc::new(Mutex::new(Some(Display {
                shown,
                refreshed: None,
            }))),
        })
    }

    /// Refresh the display (when due, or `ended`: then finally, and close it).
    pub(crate) fn show(
        &self,
        py: Python<'_>,
        consumer: &ChangeConsumer,
        ended: bool,
    ) -> PyResult<()> {
        let mut guard = self.display.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Display { shown, refreshed }) = guard.as_mut() else {
            return Ok(());
        };
        if !ended && refreshed.is_some_and(|at| at.elapsed() < EVERY) {
            return Ok(());
        }
        *refreshed = Some(Instant::now());
        let (done, total) = consumer.progress().unwrap_or((0, 0));
        let display = shown.bind(py);
        display.call_method1("update", (done, total))?;
        if ended {
            display.call_method0("close")?;
            *guard = None;
        }
        Ok(())
    }
}
