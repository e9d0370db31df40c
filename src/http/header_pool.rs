//! The worker's free list of header storage: the two vectors behind every `HeaderMap`.
//!
//! Every request and response carries a `HeaderMap` (a byte vector holding the head, an entry
//! vector of offsets into it). Allocating both per message was most of the proxy's heap traffic
//! (about 10 of the 17 `malloc`s of a proxied `GET /`). Instead, `HeaderMap` takes its vectors
//! from here when it is built and gives them back when it is dropped, so in steady state a
//! worker reuses the same few buffers for every stream and the hot path does not call the
//! allocator for headers at all.
//!
//! Why per worker (thread-local) and not per connection: a connection's messages live on its
//! worker, and an idle keep-alive connection must own no buffer (memory per idle connection is
//! a goal of its own). The free list's size follows the number of streams *in flight* on the
//! worker, not the number of connections, and it is bounded: at most [`MAX_POOLED`] vectors
//! of each kind, none larger than [`MAX_BYTES`] / [`MAX_ENTRIES`] (a rare huge head is freed
//! rather than kept for ever).
//!
//! Called by `http::header_map` only. A map dropped on another thread (a test, the main
//! thread) simply feeds that thread's list; a map dropped while the thread's locals are being
//! destroyed frees its vectors normally.

use std::cell::RefCell;

/// Vectors of each kind kept per worker: enough for the heads of the streams in flight on a
/// busy worker (two maps per stream), small enough not to matter (a few hundred KiB at most).
pub(crate) const MAX_POOLED: usize = 256;

/// Byte vectors above this capacity are freed instead of kept (heads are usually < 1 KiB;
/// the codec accepts up to 60 KiB requests and 80 KiB responses).
pub(crate) const MAX_BYTES: usize = 8 * 1024;

/// Entry vectors above this capacity are freed instead of kept.
pub(crate) const MAX_ENTRIES: usize = 128;

/// Capacity of a byte vector when the list is empty: a typical head plus the fields the proxy
/// adds, so the first requests of a worker do not grow it field by field.
const NEW_BYTES: usize = 1024;

/// Capacity of an entry vector when the list is empty.
const NEW_ENTRIES: usize = 32;

/// One free list: vectors with capacity and no elements.
struct FreeList<T> {
    free: Vec<Vec<T>>,
}

impl<T> FreeList<T> {
    const fn new() -> Self {
        FreeList { free: Vec::new() }
    }

    fn take(&mut self, min: usize, fresh: usize) -> Vec<T> {
        match self.free.pop() {
            Some(mut v) => {
                v.reserve(min);
                v
            }
            None => Vec::with_capacity(min.max(fresh)),
        }
    }

    fn give(&mut self, mut v: Vec<T>, max_capacity: usize) {
        if v.capacity() == 0 || v.capacity() > max_capacity || self.free.len() >= MAX_POOLED {
            return;
        }
        v.clear();
        self.free.push(v);
    }
}

thread_local! {
    static BYTES: RefCell<FreeList<u8>> = const { RefCell::new(FreeList::new()) };
    static ENTRIES: RefCell<FreeList<super::header_map::Entry>> =
        const { RefCell::new(FreeList::new()) };
}

/// An empty byte vector with room for at least `min` bytes.
pub(crate) fn take_bytes(min: usize) -> Vec<u8> {
    BYTES
        .try_with(|list| list.borrow_mut().take(min, NEW_BYTES))
        .unwrap_or_else(|_| Vec::with_capacity(min))
}

/// Returns a byte vector to this worker's list (or frees it).
pub(crate) fn give_bytes(v: Vec<u8>) {
    // `try_with`: during thread teardown the list may already be gone; then `v` is just freed.
    let _ = BYTES.try_with(|list| list.borrow_mut().give(v, MAX_BYTES));
}

/// An empty entry vector with room for at least `min` entries.
pub(crate) fn take_entries(min: usize) -> Vec<super::header_map::Entry> {
    ENTRIES
        .try_with(|list| list.borrow_mut().take(min, NEW_ENTRIES))
        .unwrap_or_else(|_| Vec::with_capacity(min))
}

/// Returns an entry vector to this worker's list (or frees it).
pub(crate) fn give_entries(v: Vec<super::header_map::Entry>) {
    let _ = ENTRIES.try_with(|list| list.borrow_mut().give(v, MAX_ENTRIES));
}

/// How many vectors of each kind (bytes, entries) this thread's lists hold (tests).
#[cfg(test)]
pub(crate) fn pooled() -> (usize, usize) {
    (
        BYTES.with(|l| l.borrow().free.len()),
        ENTRIES.with(|l| l.borrow().free.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_come_back_empty_with_their_capacity() {
        let mut v = take_bytes(10);
        assert!(v.capacity() >= NEW_BYTES);
        v.extend_from_slice(b"abc");
        let ptr = v.as_ptr();
        give_bytes(v);
        let again = take_bytes(3);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
        give_bytes(again);
    }

    #[test]
    fn oversized_and_empty_vectors_are_not_kept() {
        let before = pooled().0;
        give_bytes(Vec::with_capacity(MAX_BYTES + 1));
        give_bytes(Vec::new());
        assert_eq!(pooled().0, before);
    }

    #[test]
    fn the_list_is_bounded() {
        for _ in 0..MAX_POOLED + 10 {
            give_entries(Vec::with_capacity(4));
        }
        assert_eq!(pooled().1, MAX_POOLED);
    }
}
