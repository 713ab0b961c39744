//! Awaiting a stream from asyncio, the one mechanism for changes and batches.
//!
//! An awaitable's step takes what is ready (on the event loop's thread); when nothing is, it
//! yields an asyncio future and, unless one is running already, starts a wait on a blocking
//! thread of the runtime. When the wait ends, that thread writes a byte to a socket the event
//! loop watches (`add_reader`); the loop's callback completes every future that waited, and
//! the awaiting tasks take what arrived in their next step. No runtime thread ever enters
//! Python, so nothing of ours can be caught mid-call when the interpreter exits. The wait
//! itself takes nothing, so a cancelled await loses nothing. The runtime is the process's own
//! (rebuilt after a `fork()`), so awaiting works in a forked child too.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::prelude::*;

/// The asyncio futures waiting on one stream, and how their wait reaches the event loop.
#[derive(Default)]
pub(crate) struct Waiters {
    state: Mutex<WaitState>,
    signal: Arc<Signal>,
}

/// The Python objects of the waits, only ever touched (and dropped) with the GIL held.
#[derive(Default)]
struct WaitState {
    futures: Vec<Py<PyAny>>,
    /// The event loop watching the socket, and the callback it calls.
    watcher: Option<(Py<PyAny>, Py<Wake>)>,
}

impl Waiters {
    /// A future that completes when `wait` (started now unless a wait is running already)
    /// returns: to `await`, or to hand to the task from an awaitable's step (`yielded`).
    pub(crate) fn future<'py>(
        self: &Arc<Self>,
        py: Python<'py>,
        wait: impl FnOnce() + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        let watched = self.signal.watched()?.as_raw_fd();
        let (start, moved_from) = {
            let mut state = self.state();
            state.futures.push(future.clone().unbind());
            let start = !self.signal.running.swap(true, Ordering::SeqCst);
            let watching = state
                .watcher
                .as_ref()
                .is_some_and(|(watching, _)| watching.bind(py).is(&event_loop));
            let moved_from = if watching {
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
            };
            (start, moved_from)
        };
        // The stream is now awaited from another event loop (`asyncio.run` again).
        if let Some(Some((previous, _))) = moved_from {
            stop_watching(py, previous.bind(py), watched);
        }
        if start {
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

    /// Empty the watched socket; the futures that waited.
    fn drain(&self) -> Vec<Py<PyAny>> {
        self.signal.drain();
        std::mem::take(&mut self.state().futures)
    }
}

/// Whether a wait runs, and the socket its end is signalled on: all a runtime thread holds.
#[derive(Default)]
struct Signal {
    running: AtomicBool,
    /// The end a finished wait writes to, and the end the event loop watches.
    socket: OnceLock<(UnixStream, UnixStream)>,
}

impl Signal {
    /// The socket pair, made on first use.
    fn pair(&self) -> PyResult<&(UnixStream, UnixStream)> {
        if let Some(pair) = self.socket.get() {
            return Ok(pair);
        }
        let (signal, watched) = UnixStream::pair()?;
        signal.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        Ok(self.socket.get_or_init(|| (signal, watched)))
    }

    fn watched(&self) -> PyResult<&UnixStream> {
        Ok(&self.pair()?.1)
    }

    /// A wait ended (on a runtime thread): tell the event loop, without entering Python.
    fn send(&self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some((signal, _)) = self.socket.get() {
            // A full socket already holds a signal the loop has not read yet.
            let _ = (&*signal).write(&[1]);
        }
    }

    /// Empty the watched socket.
    fn drain(&self) {
        if let Some((_, watched)) = self.socket.get() {
            let mut buffer = [0u8; 64];
            loop {
                match (&*watched).read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break, // WouldBlock: empty
                }
            }
        }
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
            stop_watching(py, &event_loop, watched.as_raw_fd());
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
