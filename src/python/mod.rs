//! The Python module `changestream._core`: the only place that knows about pyo3.
//!
//! Thin wrappers: [`stream::PyChangeStream`] drives a [`crate::ChangeConsumer`] with the GIL
//! released, [`change::PyChange`] holds one change as Python objects, [`batch::PyChangeBatch`]
//! a batch of changes as Arrow columns, [`capture::capture`] runs a capture, [`group::group_lag`] reads a group's lag, and [`errors`] maps the crate's one error enum to the
//! exception tree.

mod aio;
mod batch;
mod capture;
mod change;
mod convert;
mod errors;
mod group;
mod oauth;
mod progress;
mod stream;
mod wait;

use pyo3::prelude::*;

/// Changes are allocated on the fetch thread and freed on the Python thread; glibc's malloc
/// makes every such free wait on the allocating thread's arena lock, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` and `mi_option_purge_delay` (their places in
/// mimalloc 2's `mi_option_t`; the Rust crate names no constants for them).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Hand the allocator's memory back to the system as soon as it is free, and commit it only
/// when first used. Batches and changes are built on one thread and freed on another, in
/// waves; mimalloc's defaults (arenas committed eagerly, freed pages purged after 10 ms) kept
/// each wave's pages resident. Peak RSS, 1M Debezium events: `batches()` with 8 MiB of
/// read-ahead 169 MB with eager commit, 137 MB without; `read_table` 304 MB with the
/// purge delay, 249 MB without; the same speed. Run before anything is allocated here, as
/// the options apply to memory reserved after them.
#[allow(unsafe_code)]
fn return_allocator_memory_early() {
    // SAFETY: sets two integer options; mimalloc reads them when it next reserves or purges.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Run by `atexit`, before the interpreter finalizes. A Rust thread (a fetch thread,
/// librdkafka's) that enters Python while it finalizes is ended mid-call by Python 3.11 and
/// takes the process down with it; logging is the one way such threads reach Python (asyncio
/// is woken through a socket, see `aio`), so it stops reaching Python here.
#[pyfunction]
fn _before_exit() {
    log::set_max_level(log::LevelFilter::Off);
}

/// Run by `os.register_at_fork` in every child `os.fork()` makes: streams compare the
/// process id with their opener's on every call, and read it from this cache.
#[pyfunction]
fn _after_fork_in_child() {
    crate::process::forked();
}

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    return_allocator_memory_early();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Rust and librdkafka log records go to Python's `logging` (loggers `changestream.*` and
    // `librdkafka`), filtered by the levels set there.
    let _ = pyo3_log::try_init();
    m.py()
        .import("atexit")?
        .call_method1("register", (wrap_pyfunction!(_before_exit, m)?,))?;
    let after_fork = pyo3::types::PyDict::new(m.py());
    after_fork.set_item("after_in_child", wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.py()
        .import("os")?
        .call_method("register_at_fork", (), Some(&after_fork))?;
    m.add_class::<stream::PyChangeStream>()?;
    m.add_class::<change::PyChange>()?;
    m.add_class::<batch::PyChangeBatch>()?;
    m.add_class::<batch::PyBatchIterator>()?;
    m.add_class::<convert::PyInterval>()?;
    m.add_class::<convert::PyUnavailable>()?;
    m.add("UNAVAILABLE", convert::unavailable(m.py())?)?;
    m.add_class::<stream::PyDeadLetter>()?;
    m.add_function(wrap_pyfunction!(capture::capture, m)?)?;
    m.add_function(wrap_pyfunction!(group::group_lag, m)?)?;
    errors::register(m)?;
    Ok(())
}
