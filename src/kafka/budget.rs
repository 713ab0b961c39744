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
    waiting: Waiting,
    /// Fetching pauses at this many bytes waiting and resumes at half.
    pub(super) room: usize,
    /// Times fetching paused.
    pub(super) pauses: AtomicU64,
    /// Signalled when `waiting` falls to half of `room`, or the stream closes, for a paused
    /// fetch thread; holds whether the stream closed.
    drained: (Mutex<bool>, Condvar),
}

/// The waiting bytes, on cache lines of their own: the application side writes them for every
/// item it takes, and the fetch thread reads the fields beside them for every message.
#[repr(align(128))]
struct Waiting(AtomicUsize);

impl ReadAhead {
    pub(super) fn new(max_buffer_bytes: usize) -> ReadAhead {
        ReadAhead {
            waiting: Waiting(AtomicUsize::new(0)),
            room: (max_buffer_bytes / 2).max(1),
            pauses: AtomicU64::new(0),
            drained: (Mutex::new(false), Condvar::new()),
        }
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.0.load(Ordering::Acquire)
    }

    pub(super) fn is_full(&self) -> bool {
        self.waiting() >= self.room
    }

    pub(super) fn is_drained(&self) -> bool {
        self.waiting() <= self.room / 2
    }

    pub(super) fn add(&self, bytes: usize) {
        self.waiting.0.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(super) fn free(&self, bytes: usize) {
        let before = self.waiting.0.fetch_sub(bytes, Ordering::AcqRel);
        let half = self.room / 2;
        if before > half && before - bytes <= half {
            // Under the lock, so a fetch thread between its check and its wait hears it.
            let _guard = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.1.notify_one();
        }
    }

    /// Wait at most `timeout` for the application to take half of what is waiting, or to
    /// close the stream.
    pub(super) fn wait_drained(&self, timeout: Duration) {
        let closed = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed && !self.is_drained() {
            let _ = self.drained.1.wait_timeout(closed, timeout);
        }
    }

    /// The stream is closing: a paused fetch thread stops waiting (it would wait out its
    /// slice, up to 100 ms of every `close()` of a stream whose read-ahead is full).
    pub(super) fn close(&self) {
        *self.drained.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.drained.1.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn full_at_the_room_and_drained_at_half_of_it() {
        let budget = ReadAhead::new(1000);
        assert_eq!(budget.room, 500);
        budget.add(499);
        assert!(!budget.is_full());
        budget.add(1);
        assert!(budget.is_full());
        budget.free(200);
        assert!(!budget.is_full());
        assert!(!budget.is_drained());
        budget.free(50);
        assert!(budget.is_drained());
        assert_eq!(budget.waiting(), 250);
    }

    #[test]
    fn a_full_budget_waits_until_the_application_frees_half() {
        let budget = Arc::new(ReadAhead::new(1000));
        budget.add(500);
        // Nothing taken: the wait lasts its whole timeout.
        let started = Instant::now();
        budget.wait_drained(Duration::from_millis(200));
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Taken from another thread: the wait ends when half is free.
        let application = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                budget.free(100);
                std::thread::sleep(Duration::from_millis(100));
                budget.free(200);
            })
        };
        let started = Instant::now();
        budget.wait_drained(Duration::from_secs(20));
        let waited = started.elapsed();
        application.join().unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert!(budget.is_drained());
    }

    #[test]
    fn closing_the_stream_ends_a_wait_for_room() {
        let budget = Arc::new(ReadAhead::new(1000));
        budget.add(500);
        let closing = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                budget.close();
            })
        };
        let started = Instant::now();
        budget.wait_drained(Duration::from_secs(20));
        let waited = started.elapsed();
        closing.join().unwrap();
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        // Closed before a wait begins: the wait does not begin.
        let started = Instant::now();
        budget.wait_drained(Duration::from_secs(20));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!budget.is_drained());
    }
}
