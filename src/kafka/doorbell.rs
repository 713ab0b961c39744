//! The doorbell: a socket pair the fetch thread rings (writes a byte to) after it hands
//! something over, when a waiter asked it to, and whose other end an asyncio event loop
//! watches.
//!
//! An async reader that finds nothing to take arms the bell and yields to its event loop;
//! the fetch thread's next hand-over (changes, the end, a failure) rings it, and the loop
//! wakes with no thread in between. Ringing writes to a non-blocking socket: it never
//! blocks the fetch thread and never enters Python. A full socket already holds a ring the
//! loop has not read yet, so a ring is never lost.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// See the module documentation.
#[derive(Default)]
pub struct Doorbell {
    /// A waiter wants the next hand-over rung.
    armed: AtomicBool,
    /// The end rung and the end watched, made when first watched.
    pair: OnceLock<(UnixStream, UnixStream)>,
}

impl Doorbell {
    /// The descriptor to watch for rings (the socket pair is made on first use).
    pub fn watched(&self) -> io::Result<RawFd> {
        if let Some((_, watched)) = self.pair.get() {
            return Ok(watched.as_raw_fd());
        }
        let (rung, watched) = UnixStream::pair()?;
        rung.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        Ok(self.pair.get_or_init(|| (rung, watched)).1.as_raw_fd())
    }

    /// Ring at the next hand-over.
    pub(super) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Something was handed over: ring, if a waiter armed the bell since the last ring.
    pub(super) fn handed_over(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Ring now (nothing happens while nobody watches).
    pub fn ring(&self) {
        if let Some((rung, _)) = self.pair.get() {
            let _ = (&*rung).write(&[1]);
        }
    }

    /// Read every ring waiting on the watched end.
    pub fn drain(&self) {
        let Some((_, watched)) = self.pair.get() else {
            return;
        };
        let mut buffer = [0u8; 64];
        loop {
            match (&*watched).read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: empty
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rings_waiting(bell: &Doorbell) -> usize {
        let (_, watched) = bell.pair.get().expect("watched");
        let mut buffer = [0u8; 64];
        (&*watched).read(&mut buffer).unwrap_or(0)
    }

    #[test]
    fn a_hand_over_rings_only_when_armed_and_once_per_arming() {
        let bell = Doorbell::default();
        bell.watched().unwrap();
        bell.handed_over();
        assert_eq!(rings_waiting(&bell), 0, "nobody armed the bell");
        bell.arm();
        bell.handed_over();
        bell.handed_over();
        assert_eq!(rings_waiting(&bell), 1, "one ring per arming");
        bell.ring();
        bell.ring();
        bell.drain();
        assert_eq!(rings_waiting(&bell), 0, "drained");
    }

    #[test]
    fn ringing_an_unwatched_bell_does_nothing_and_a_full_socket_does_not_block() {
        let bell = Doorbell::default();
        bell.arm();
        bell.handed_over(); // no socket yet: nothing to write to
        bell.watched().unwrap();
        for _ in 0..1_000_000 {
            bell.ring(); // the socket fills up; ringing must neither block nor fail
        }
        assert!(rings_waiting(&bell) > 0);
        bell.drain();
        assert_eq!(rings_waiting(&bell), 0);
    }
}
