//! Awaiting a stream from asyncio, the one mechanism for changes and batches.
//!
//! An awaitable's step takes what is ready (on the event loop's thread); when nothing is, it
//! yields an asyncio future and, unless one is running already, starts a wait on a blocking
//! thread of the runtime. When the wait ends it completes every future that waited on it via
//! `call_soon_threadsafe`, and the awaiting tasks take what arrived in their next step. The
//! wait itself takes nothing, so a cancelled await loses nothing. The runtime is the process's
//! own (rebuilt after a `fork()`), so awaiting works in a forked child too.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

/// The asyncio futures waiting on one stream, and whether a wait is running for them.
#[derive(Default)]
pub(crate) struct Waiters {
    state: Mutex<WaitState>,
}

#[derive(Default)]
struct WaitState {
    running: bool,
    /// Each future with its event loop.
    futures: Vec<(Py<PyAny>, Py<PyAny>)>,
}

impl Waiters {
    /// A future for the current task to yield; it completes when `wait` (started now unless a
    /// wait is running already) returns.
    pub(crate) fn future<'py>(
        self: &Arc<Self>,
        py: Python<'py>,
        wait: impl FnOnce() + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        // What `yield from future` does: tells the task to wait for it.
        future.setattr("_asyncio_future_blocking", true)?;
        let start = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state
                .futures
                .push((event_loop.unbind(), future.clone().unbind()));
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            super::note_async_use();
            let waiters = self.clone();
            crate::runtime::runtime().spawn_blocking(move || {
                wait();
                waiters.wake();
            });
        }
        Ok(future)
    }

    /// The wait ended: complete every future that waited on it.
    fn wake(&self) {
        let futures = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.running = false;
            std::mem::take(&mut state.futures)
        };
        if futures.is_empty() {
            return;
        }
        Python::attach(|py| {
            let complete = match wrap_pyfunction!(complete, py) {
                Ok(complete) => complete,
                Err(_) => return,
            };
            for (event_loop, future) in futures {
                // A loop that is closed has nobody left to wake.
                let _ = event_loop
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (&complete, future.bind(py)));
            }
        });
    }
}

/// Complete an asyncio future with `None`, unless it is done already (cancelled).
#[pyfunction]
fn complete(future: &Bound<'_, PyAny>) -> PyResult<()> {
    if !future.call_method0("done")?.is_truthy()? {
        future.call_method1("set_result", (future.py().None(),))?;
    }
    Ok(())
}
