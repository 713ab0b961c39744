//! The Python module `changestream._core`: the only place that knows about pyo3.
//!
//! Thin wrappers: [`stream::PyChangeStream`] drives a [`crate::ChangeConsumer`] with the GIL
//! released, [`change::PyChange`] holds one change as Python objects, [`batch::PyChangeBatch`]
//! a batch of changes as Arrow columns, [`capture::capture`] runs a capture, [`group::group_lag`] reads a group's lag, and [`errors`] maps the crate's one error enum to the
//! exception tree.

mod aio;
mod async_changes;
mod batch;
mod c_allocator;
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

/// mimalloc's `mi_option_arena_eager_commit` (its place in `mi_option_t`, the same in
/// mimalloc 2 and 3; the Rust crate names no constant for it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Commit the allocator's memory when it is first used, not when mimalloc reserves an arena.
/// With arenas committed eagerly, the pages freed between batches stayed resident: peak RSS of
/// `batches()` (1M Debezium events, 8 MiB read-ahead) 169 MB, 137 MB with this, at the same
/// speed. Run before anything is allocated here, as the option applies to arenas reserved
/// after it.
#[allow(unsafe_code)]
fn commit_allocator_memory_on_demand() {
    // SAFETY: sets one integer option; mimalloc reads it when it next reserves an arena.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) }
}

/// Python's `logging`, through pyo3-log, less one record rust-rdkafka makes at every close:
/// dropping a consumer, it closes the consumer's queue again after `close_promptly` closed it
/// (in short polls; the drop's take 100 ms each), and logs the refusal as an error.
struct PythonLogging(pyo3_log::Logger);

impl log::Log for PythonLogging {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        let closed_again = record.target() == "rdkafka::consumer::base_consumer"
            && record
                .args()
                .to_string()
                .starts_with("Failed to close consumer queue on drop");
        if !closed_again {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
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
    commit_allocator_memory_on_demand();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Rust and librdkafka log records go to Python's `logging` (loggers `changestream.*` and
    // `librdkafka`), filtered by the levels set there.
    if let Ok(logger) = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::LoggersAndLevels) {
        if log::set_boxed_logger(Box::new(PythonLogging(logger))).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    }
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
