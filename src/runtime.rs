//! The one tokio runtime of the process, created on first use.
//!
//! It runs the schema registry's HTTP requests (and, later, async iteration). One small
//! runtime serves every stream: the work on it is rare and short.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The shared runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("changestream-io")
            .enable_all()
            .build()
            .expect("the tokio runtime can be built")
    })
}
