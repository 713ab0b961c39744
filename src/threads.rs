//! The threads the core starts, every one with the process's signals blocked, as librdkafka's
//! are.
//!
//! Python runs a signal's handler (Ctrl-C's `KeyboardInterrupt`, an application's SIGTERM
//! handler) in its main thread only, once that thread wakes. The kernel hands a signal sent to
//! the process to any thread that does not block it. When that was one of ours, Python only
//! noted the signal, and a main thread waiting in a lock, a `sleep` or a read went on waiting:
//! a `multiprocessing` pool's worker never ended on `terminate()`. With our threads blocking
//! the process's signals, those signals always reach a Python thread and interrupt its wait.
//! The signals of a fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL) stay unblocked: they belong to the
//! thread that faulted, and Rust's stack-overflow report and `faulthandler` rely on them.

use std::io;
use std::thread::{Builder, JoinHandle};

/// Starts a thread named `name` that runs `run` with the signals blocked.
pub fn spawn<T: Send + 'static>(
    name: &str,
    run: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    with_signals_blocked(|| Builder::new().name(name.into()).spawn(run))
}

/// Runs `start` with the signals blocked in the calling thread, so that the threads `start`
/// creates (a runtime's, a blocking task's) block them from their first instruction; the
/// calling thread's own mask is restored after. A signal arriving meanwhile waits, pending.
pub fn with_signals_blocked<T>(start: impl FnOnce() -> T) -> T {
    let _restore = mask::Blocked::signals();
    start()
}

/// Blocks the signals in the calling thread for the rest of its life: the start hook of a
/// runtime's threads, for those a Python thread may start (`spawn_blocking`).
pub fn block_signals() {
    std::mem::forget(mask::Blocked::signals());
}

#[cfg(unix)]
mod mask {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};

    /// The signals (all but a fault's) blocked in this thread until dropped; then the mask it
    /// had before.
    pub struct Blocked(Option<SigSet>);

    impl Blocked {
        pub fn signals() -> Blocked {
            let mut signals = SigSet::all();
            for fault in [
                Signal::SIGSEGV,
                Signal::SIGBUS,
                Signal::SIGFPE,
                Signal::SIGILL,
            ] {
                signals.remove(fault);
            }
            // It fails only for an invalid `how`; the mask is then simply unchanged.
            Blocked(signals.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok())
        }
    }

    impl Drop for Blocked {
        fn drop(&mut self) {
            if let Some(previous) = self.0 {
                let _ = previous.thread_set_mask();
            }
        }
    }
}

#[cfg(not(unix))]
mod mask {
    /// Signals are a Unix matter.
    pub struct Blocked;

    impl Blocked {
        pub fn signals() -> Blocked {
            Blocked
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    /// The signals blocked in the calling thread, from `/proc` (`SigBlk`, a hex mask).
    pub fn blocked_here() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
        u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).unwrap()
    }

    /// Bits 2 and 15 of `SigBlk`: SIGINT and SIGTERM.
    pub const SIGINT_AND_SIGTERM: u64 = (1 << (2 - 1)) | (1 << (15 - 1));
    const SIGSEGV: u64 = 1 << (11 - 1);

    #[test]
    fn a_spawned_thread_blocks_signals_and_the_caller_gets_its_mask_back() {
        let before = blocked_here();
        assert_eq!(
            before & SIGINT_AND_SIGTERM,
            0,
            "the test thread starts unblocked"
        );
        let inside = spawn("signals-test", blocked_here).unwrap().join().unwrap();
        assert_eq!(inside & SIGINT_AND_SIGTERM, SIGINT_AND_SIGTERM);
        assert_eq!(
            inside & SIGSEGV,
            0,
            "a fault's signal stays with its thread"
        );
        assert_eq!(blocked_here(), before);
    }
}
