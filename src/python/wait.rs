//! Between the slices of a wait with the GIL released: what interrupts it.
//!
//! Every blocking call waits in slices (at most [`SLICE`] each) with the GIL released and
//! calls [`interrupted`] between them, so Ctrl-C and other signals' handlers reach the
//! application within a slice. A call that cannot wait in slices itself runs in the
//! background while the caller does ([`in_background`]).

use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::Duration;

use pyo3::prelude::*;

use crate::error::Error;
use crate::runtime::runtime;

/// The longest one slice of waiting takes: how long the GIL stays released before signals
/// are checked, and how long a cancelled async wait keeps a thread.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// What interrupts a wait after a slice: an exception left on this thread while it waited,
/// or a signal handler's. Rust code logging on this thread during the slice runs Python's
/// `logging` here, and a Ctrl-C handled in there leaves its `KeyboardInterrupt` pending
/// rather than raised; taking it first keeps that Ctrl-C from being lost.
pub(crate) fn interrupted(py: Python<'_>) -> PyResult<()> {
    if let Some(pending) = PyErr::take(py) {
        return Err(pending);
    }
    py.check_signals()
}

/// Run `work`, a call that may wait on the network for long, on the runtime's blocking pool,
/// and wait for it in slices with the GIL released, running `between` after each slice (it
/// checks for signals, see [`interrupted`]). librdkafka gives some calls no deadline of ours:
/// a synchronous commit waits for the group's coordinator up to the session timeout (45 s by
/// default) while the broker is away. When `between` raises, the wait ends with its exception
/// at once and `work` runs to its end in the background; what it does then (a commit covers
/// only finished changes) stays right.
pub(crate) fn in_background<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send + 'static,
    mut between: impl FnMut(Python<'_>) -> PyResult<()>,
) -> PyResult<T> {
    let (done, mut result) = sync_channel(1);
    runtime().spawn_blocking(move || {
        // The receiver is gone only when the wait was interrupted: nobody wants the result.
        let _ = done.send(work());
    });
    loop {
        // A receiver may move to another thread but not be shared: it goes in and comes back.
        let (back, received) = py.detach(move || {
            let received = result.recv_timeout(SLICE);
            (result, received)
        });
        result = back;
        match received {
            Ok(value) => return Ok(value),
            Err(RecvTimeoutError::Timeout) => between(py)?,
            Err(RecvTimeoutError::Disconnected) => {
                // `work` panicked: a bug of ours.
                return Err(
                    Error::Internal("a call made in the background panicked".to_owned()).into(),
                );
            }
        }
    }
}
