//! Awaiting a stream from asyncio, the one mechanism for changes and batches.
//!
//! An awaitable's step takes what is ready (on the event loop's thread); when nothing is, it
//! yields an asyncio future, and the event loop watches the stream's doorbell
//! ([`crate::kafka::Doorbell`], `add_reader`). The loop's callback completes every future that
//! waited, and the awaiting tasks take what arrived in their next step. Who rings:
//! - for changes, the fetch thread itself, at its next hand-over (the step arms the bell), so
//!   the loop wakes with no thread in between; a timer on the runtime rings once a slice
//!   has passed anyway, so a waiting task's step runs (and serves an OAuth token request)
//!   at least once a slice;
//! - for batches, a blocking thread of the runtime, once the slice it ran (which builds the
//!   batch, off the loop's thread) has ended.
//!
//! No runtime thread ever enters Python, so nothing of ours can be caught mid-call when the
//! interpreter exits. Waiting takes nothing, so a cancelled await loses nothing. The runtime
//! is the process's own (rebuilt after a `fork()`), so awaiting works in a forked child too.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::kafka::Doorbell;

/// The asyncio futures waiting on one stream, and how their wait reaches the event loop.
pub(crate) struct Waiters {
    state: Mutex<WaitState>,
    signal: Arc<Signal>,
}

/// The Python objects of the waits, only ever touched (and dropped) with the GIL held.
#[derive(Default)]
struct WaitState {
    futures: Vec<Py<PyAny>>,
    /// The event loop watching the doorbell, and the callback it calls.
    watcher: Option<(Py<PyAny>, Py<Wake>)>,
}

impl Waiters {
    /// Waiters on the stream whose fetch thread rings `doorbell`.
    pub(crate) fn new(doorbell: Arc<Doorbell>) -> Waiters {
        Waiters {
            state: Mutex::default(),
            signal: Arc::new(Signal {
                running: AtomicBool::new(false),
                doorbell,
            }),
        }
    }

    /// A future that completes when the doorbell rings: `arm` asks for the ring (the fetch
    /// thread's next hand-over), and a timer rings after `slice` unless one runs already.
    pub(crate) fn rung<'py>(
        self: &Arc<Self>,
        py: Python<'py>,
        slice: Duration,
        arm: impl FnOnce(),
    ) -> PyResult<Bound<'py, PyAny>> {
        let future = self.register(py)?;
        arm();
        if !self.signal.running.swap(true, Ordering::SeqCst) {
            let signal = self.signal.clone();
            crate::runtime::runtime().spawn(async move {
                tokio::time::sleep(slice).await;
                signal.send();
            });
        }
        Ok(future)
    }

    /// A future that completes when `wait` (started now on a blocking thread of the runtime,
    /// unless a wait is running already) returns.
    pub(crate) fn future<'py>(
        self: &Arc<Self>,
        py: Python<'py>,
        wait: impl FnOnce() + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>> {
        let future = self.register(py)?;
        if !self.signal.running.swap(true, Ordering::SeqCst) {
            // Only the signal goes to the runtime thread: were the last reference to the
            // futures or the event loop dropped there, Python would run their finalizers at
            // the next attach of any thread, where a Ctrl-C they catch would be lost.
            let signal = self.signal.clone();
            crate::runtime::runtime().spawn_blocking(move || {
                wait();
                signal.send();
            });
        }
        Ok(future)
    }

    /// A new future of the running loop among those waiting, the loop watching the doorbell.
    fn register<'py>(self: &Arc<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        let watched = self.signal.watched()?;
        let moved_from = {
            let mut state = self.state();
            state.futures.push(future.clone().unbind());
            let watching = state
                .watcher
                .as_ref()
                .is_some_and(|(watching, _)| watching.bind(py).is(&event_loop));
            if watching {
                None
            } else {
                let wake = Py::new(
                    py,
                    Wake {
                        waiters: self.clone(),
                    },
                )?;
                event_loop.call_method1("add_reader", (watched, wake.clone_ref(py)))?;
                Some(state.watcher.replace((event_loop.unbind(), wake)))
            }
        };
        // The stream is now awaited from another event loop (`asyncio.run` again).
        if let Some(Some((previous, _))) = moved_from {
            stop_watching(py, previous.bind(py), watched);
        }
        Ok(future)
    }

    /// The stream is closed: wake whoever still waits (their next step finds it closed) and
    /// stop watching, so the event loop keeps no socket of a closed stream.
    pub(crate) fn detach(&self, py: Python<'_>) {
        let Some((event_loop, wake)) = self.state().watcher.take() else {
            return;
        };
        // Possibly not the loop's thread: the loop does it. A closed loop has nobody waiting.
        if let Ok(release) = wake.bind(py).getattr("release") {
            let _ = event_loop
                .bind(py)
                .call_method1("call_soon_threadsafe", (release,));
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Empty the doorbell's socket; the futures that waited.
    fn drain(&self) -> Vec<Py<PyAny>> {
        self.signal.doorbell.drain();
        std::mem::take(&mut self.state().futures)
    }
}

/// Whether a wait (or a timer) runs, and the doorbell it rings: all a runtime thread holds.
struct Signal {
    running: AtomicBool,
    doorbell: Arc<Doorbell>,
}

impl Signal {
    fn watched(&self) -> PyResult<RawFd> {
        Ok(self.doorbell.watched()?)
    }

    /// A wait ended (on a runtime thread): tell the event loop, without entering Python.
    fn send(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.doorbell.ring();
    }
}

/// `future`, marked as `yield from future` marks it: an awaitable's step that yields it
/// tells the task to wait for it.
pub(crate) fn yielded(future: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    future.setattr("_asyncio_future_blocking", true)?;
    Ok(future)
}

/// The callback the event loop calls when the watched socket is readable.
#[pyclass(frozen)]
struct Wake {
    waiters: Arc<Waiters>,
}

#[pymethods]
impl Wake {
    /// Complete every future that waited (on the loop's thread).
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        complete(py, self.waiters.drain())
    }

    /// After `detach`: stop watching and wake whoever still waits.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        if let Ok(watched) = self.waiters.signal.watched() {
            stop_watching(py, &event_loop, watched);
        }
        complete(py, self.waiters.drain())
    }
}

/// Complete asyncio futures with `None`, except those done already (cancelled).
fn complete(py: Python<'_>, futures: Vec<Py<PyAny>>) -> PyResult<()> {
    for future in futures {
        let future = future.bind(py);
        if !future.call_method0("done")?.is_truthy()? {
            future.call_method1("set_result", (py.None(),))?;
        }
    }
    Ok(())
}

/// `remove_reader`, where the loop is not closed (a closed loop watches nothing).
fn stop_watching(py: Python<'_>, event_loop: &Bound<'_, PyAny>, fd: i32) {
    let closed = event_loop
        .call_method0("is_closed")
        .and_then(|closed| closed.is_truthy())
        .unwrap_or(true);
    if !closed {
        if let Err(error) = event_loop.call_method1("remove_reader", (fd,)) {
            log::debug!("removing the stream's reader: {}", error.value(py));
        }
    }
}
