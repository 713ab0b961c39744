//! The one tokio runtime of the process, created on first use, and again after a `fork()`.
//!
//! It runs the schema registry's HTTP requests and the waits of async iteration. One small
//! runtime serves every stream: the work on it is rare and short. A forked child inherits the
//! parent's runtime as memory only (its threads stay in the parent), so every use first checks
//! the process id and builds a runtime of the child's own when it changed; the parent's is
//! leaked in the child, since dropping it would wait for threads that do not exist there.
//! Its threads block every signal (see [`crate::threads`]), those that a Python thread starts
//! through `spawn_blocking` too.

use std::sync::Mutex;

use tokio::runtime::Runtime;

use crate::threads;

/// The runtime of the current process, with the id of the process that built it.
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// The shared runtime of this process.
pub fn runtime() -> &'static Runtime {
    let pid = crate::process::id();
    let mut current = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    match *current {
        Some((built_in, runtime)) if built_in == pid => runtime,
        _ => {
            let runtime: &'static Runtime =
                Box::leak(Box::new(threads::with_signals_blocked(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .thread_name("changestream-io")
                        .on_thread_start(threads::block_signals)
                        .enable_all()
                        .build()
                        .expect("the tokio runtime can be built")
                })));
            *current = Some((pid, runtime));
            runtime
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::threads::tests::{blocked_here, SIGINT_AND_SIGTERM};

    #[test]
    fn the_runtimes_threads_block_signals_even_when_an_unblocked_thread_starts_them() {
        assert_eq!(
            blocked_here() & SIGINT_AND_SIGTERM,
            0,
            "the test thread starts unblocked"
        );
        let worker = runtime().block_on(async { tokio::spawn(async { blocked_here() }).await });
        assert_eq!(worker.unwrap() & SIGINT_AND_SIGTERM, SIGINT_AND_SIGTERM);
        // Blocking tasks get a thread started by whoever spawns them: here, this thread.
        let blocking = runtime().spawn_blocking(blocked_here);
        let blocking = runtime().block_on(blocking).unwrap();
        assert_eq!(blocking & SIGINT_AND_SIGTERM, SIGINT_AND_SIGTERM);
        assert_eq!(blocked_here() & SIGINT_AND_SIGTERM, 0);
    }
}
