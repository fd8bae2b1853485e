//! Connection buffers kept per thread for the next connection.
//!
//! Each connection took an 8 KiB read buffer and a 4 KiB staging buffer for its responses.
//! Past 1 KiB, mimalloc has no per-size fast path: the two allocations cost ~1,200
//! instructions per connection, about 4% of a whole `Connection: close` request. A thread
//! keeps the buffers of its last connections (up to [`KEEP`], within [`KEEP_BYTES`]) and
//! hands them to its next ones.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread and kind: as many as the connections a worker has open at once
/// under a benchmark's load (with 8, `wrk -c50 -H 'Connection: close'` found a spare for only
/// one connection in six), within [`KEEP_BYTES`].
const KEEP: usize = 64;

/// The most bytes of buffers a thread keeps per kind: 128 buffers of a connection that served
/// one request (8 KiB), 16 of a keep-alive connection (64 KiB: its reads reserve that much).
const KEEP_BYTES: usize = 1024 * 1024;

/// A buffer larger than this (a connection's read buffer grown for a body) is freed, not
/// kept.
const KEEP_UP_TO: usize = 64 * 1024;

/// What a buffer is for: each kind has its own spares, so that a reader is never handed a
/// small staging buffer to grow.
#[derive(Clone, Copy)]
pub enum Kind {
    /// What a connection reads into.
    Read,
    /// Where a connection's response bytes are gathered.
    Staging,
}

thread_local! {
    static SPARE_READ: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static SPARE_STAGING: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's spares of `kind`; `None` while the thread exits (a connection
/// dropped then finds its thread's spares gone).
fn with_spares<R>(kind: Kind, f: impl FnOnce(&mut Vec<BytesMut>) -> R) -> Option<R> {
    let slot = match kind {
        Kind::Read => &SPARE_READ,
        Kind::Staging => &SPARE_STAGING,
    };
    slot.try_with(|spares| f(&mut spares.borrow_mut())).ok()
}

/// An empty buffer with room for at least `capacity` bytes: a spare one if the thread has
/// one, else a new one.
pub fn take(kind: Kind, capacity: usize) -> BytesMut {
    match with_spares(kind, Vec::pop).flatten() {
        Some(mut buffer) => {
            // Takes the buffer's whole allocation back when nothing else shares it (the
            // requests' bytes were dropped with their requests); allocates otherwise.
            buffer.reserve(capacity);
            buffer
        }
        None => BytesMut::with_capacity(capacity),
    }
}

/// Keeps `buffer` for a later connection of this thread, or frees it.
pub fn give_back(kind: Kind, mut buffer: BytesMut) {
    if buffer.capacity() == 0 || buffer.capacity() > KEEP_UP_TO {
        return;
    }
    buffer.clear();
    with_spares(kind, |spares| {
        let kept: usize = spares.iter().map(BytesMut::capacity).sum();
        if spares.len() < KEEP && kept + buffer.capacity() <= KEEP_BYTES {
            spares.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_taken_again_empty_with_its_allocation() {
        let mut buffer = take(Kind::Read, 8192);
        buffer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buffer.split_to(18).freeze();
        drop(head);
        let start = buffer.as_ptr();
        give_back(Kind::Read, buffer);
        let again = take(Kind::Read, 8192);
        assert!(again.is_empty());
        assert!(again.capacity() >= 8192);
        // The same allocation, its consumed front reclaimed.
        assert_eq!(again.as_ptr(), start.wrapping_sub(18));
    }

    #[test]
    fn kinds_do_not_mix_and_spares_are_bounded() {
        for _ in 0..KEEP + 4 {
            give_back(Kind::Staging, BytesMut::with_capacity(4096));
        }
        assert_eq!(with_spares(Kind::Staging, |s| s.len()), Some(KEEP));
        assert_eq!(with_spares(Kind::Read, |s| s.len()), Some(0));
        give_back(Kind::Read, BytesMut::with_capacity(KEEP_UP_TO + 1));
        assert_eq!(with_spares(Kind::Read, |s| s.len()), Some(0));
    }

    #[test]
    fn spares_stay_within_their_byte_budget() {
        let big = KEEP_UP_TO;
        for _ in 0..KEEP_BYTES / big + 4 {
            give_back(Kind::Read, BytesMut::with_capacity(big));
        }
        let kept = with_spares(Kind::Read, |s| {
            s.iter().map(BytesMut::capacity).sum::<usize>()
        });
        assert!(kept.unwrap() <= KEEP_BYTES);
        assert!(kept.unwrap() > KEEP_BYTES - big);
    }

    #[test]
    fn a_buffer_still_shared_is_replaced_not_reused_in_place() {
        let mut buffer = BytesMut::with_capacity(8192);
        buffer.extend_from_slice(b"held");
        let held = buffer.split_to(4).freeze();
        give_back(Kind::Read, buffer);
        let mut again = take(Kind::Read, 8192);
        again.extend_from_slice(b"next");
        assert_eq!(&held[..], b"held");
        assert_eq!(&again[..], b"next");
        assert!(again.capacity() >= 8192);
    }
}
