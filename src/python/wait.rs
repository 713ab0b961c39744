//! Between the slices of a wait with the GIL released: what interrupts it.
//!
//! Every blocking call waits in slices (at most 100 ms each) with the GIL released and
//! calls [`interrupted`] between them, so Ctrl-C and other signals' handlers reach the
//! application within a slice.

use pyo3::prelude::*;

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
