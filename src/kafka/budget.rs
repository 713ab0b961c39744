//! The read-ahead budget: how many bytes of decoded changes may wait for the application.
//!
//! The fetch thread counts each batch it sends against the budget and pauses fetching when
//! the waiting bytes reach the room (half of `max_buffer_bytes`; librdkafka's queue of raw
//! messages has the other half); the application side frees an item's bytes as it takes it,
//! and a paused fetch thread resumes once half the room is free again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The decoded half of the read-ahead budget, shared by the fetch thread (which pauses
/// fetching when it is full) and the application side (which frees it as it takes items).
pub(super) struct ReadAhead {
    /// Bytes of decoded items sent and not yet taken.
    waiting: AtomicUsize,
    /// Fetching pauses at this many bytes waiting and resumes at half.
    pub(super) room: usize,
    /// Times fetching paused.
    pub(super) pauses: AtomicU64,
    /// Signalled when `waiting` falls to half of `room`, for a paused fetch thread.
    drained: (Mutex<()>, Condvar),
}

impl ReadAhead {
    pub(super) fn new(max_buffer_bytes: usize) -> ReadAhead {
        ReadAhead {
            waiting: AtomicUsize::new(0),
            room: (max_buffer_bytes / 2).max(1),
            pauses: AtomicU64::new(0),
            drained: (Mutex::new(()), Condvar::new()),
        }
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub(super) fn is_full(&self) -> bool {
        self.waiting() >= self.room
    }

    pub(super) fn is_drained(&self) -> bool {
        self.waiting() <= self.room / 2
    }

    pub(super) fn add(&self, bytes: usize) {
        self.waiting.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(super) fn free(&self, bytes: usize) {
        let before = self.waiting.fetch_sub(bytes, Ordering::AcqRel);
        let half = self.room / 2;
        if before > half && before - bytes <= half {
            // Under the lock, so a fetch thread between its check and its wait hears it.
            let _guard = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.1.notify_one();
        }
    }

    /// Wait at most `timeout` for the application to take half of what is waiting.
    pub(super) fn wait_drained(&self, timeout: Duration) {
        let guard = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_drained() {
            let _ = self.drained.1.wait_timeout(guard, timeout);
        }
    }
}
