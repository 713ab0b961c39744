//! The id of this process, cached, and refreshed in the child of every `fork()`.
//!
//! A stream checks on every call (once per change taken) that it runs in the process that
//! opened it: a forked child has the parent's memory but not its threads. `getpid()` is a
//! system call, so the id is read once, and [`forked`] reads it again. The Python module
//! registers [`forked`] with `os.register_at_fork`, so every child that `os.fork()` (and so
//! `multiprocessing`) makes runs it before any code of its own.

use std::sync::atomic::{AtomicU32, Ordering};

/// The cached id; 0 until first read (no process has id 0).
static ID: AtomicU32 = AtomicU32::new(0);

/// This process's id.
pub fn id() -> u32 {
    match ID.load(Ordering::Relaxed) {
        0 => forked(),
        id => id,
    }
}

/// Read the id again: call in the child right after a `fork()`. Returns it.
pub fn forked() -> u32 {
    let id = std::process::id();
    ID.store(id, Ordering::Relaxed);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_id_is_the_process_id() {
        // (A fork is tested from Python, where the hook is registered: tests/test_etl_patterns.py.)
        assert_eq!(id(), std::process::id());
        assert_eq!(forked(), std::process::id());
        assert_eq!(id(), std::process::id());
    }
}
