//! The one tokio runtime of the process, created on first use, and again after a `fork()`.
//!
//! It runs the schema registry's HTTP requests and the waits of async iteration. One small
//! runtime serves every stream: the work on it is rare and short. A forked child inherits the
//! parent's runtime as memory only (its threads stay in the parent), so every use first checks
//! the process id and builds a runtime of the child's own when it changed; the parent's is
//! leaked in the child, since dropping it would wait for threads that do not exist there.

use std::sync::Mutex;

use tokio::runtime::Runtime;

/// The runtime of the current process, with the id of the process that built it.
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// The shared runtime of this process.
pub fn runtime() -> &'static Runtime {
    let pid = std::process::id();
    let mut current = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    match *current {
        Some((built_in, runtime)) if built_in == pid => runtime,
        _ => {
            let runtime: &'static Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("changestream-io")
                    .enable_all()
                    .build()
                    .expect("the tokio runtime can be built"),
            ));
            *current = Some((pid, runtime));
            runtime
        }
    }
}
