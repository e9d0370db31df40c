//! `StreamSlot`: where a connection manager keeps its one active stream, in a heap block that
//! the worker recycles (our answer to Envoy's per-stream `ActiveStream` allocation).
//!
//! An HTTP/1 connection has at most one stream, and most of a keep-alive connection's life is
//! spent between requests. Kept inline, the stream's ~1.6 KB would be owned by every idle
//! connection; boxed per request, it would cost an allocation per request. So the slot holds
//! a `Box<Option<T>>` only while a stream exists, and gives the emptied box back to a
//! per-worker (thread-local) free list when the stream ends: an idle connection owns no stream
//! memory and a request takes a box from the free list instead of the allocator.
//!
//! Used by `http::conn_manager` (`ConnectionManager::stream`). Calls nothing but the allocator.
//!
//! Invariants: a box in the free list holds `None` (the stream was moved out or dropped before
//! the box went back); the free list holds at most [`MAX_FREE`] boxes per worker, so a burst of
//! concurrent streams does not pin memory once it is over.

use std::any::Any;
use std::cell::RefCell;

/// How many emptied boxes a worker keeps for reuse.
pub const MAX_FREE: usize = 64;

thread_local! {
    /// This worker's emptied stream boxes (`Box<Option<T>>` holding `None`, as `dyn Any` so
    /// one list serves every `T`; in the proxy there is only one).
    static FREE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A slot for at most one `T`, backed by a recycled heap block while occupied.
pub struct StreamSlot<T: 'static> {
    boxed: Option<Box<Option<T>>>,
}

impl<T: 'static> Default for StreamSlot<T> {
    fn default() -> Self {
        StreamSlot::empty()
    }
}

impl<T: 'static> StreamSlot<T> {
    /// An empty slot (owns no memory).
    pub const fn empty() -> StreamSlot<T> {
        StreamSlot { boxed: None }
    }

    pub fn get(&self) -> Option<&T> {
        self.boxed.as_deref().and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.boxed.as_deref_mut().and_then(Option::as_mut)
    }

    pub fn is_some(&self) -> bool {
        self.get().is_some()
    }

    pub fn is_none(&self) -> bool {
        !self.is_some()
    }

    /// Stores `value` (dropping any value already there), in a box from the worker's free
    /// list when one is available.
    pub fn put(&mut self, value: T) {
        let mut boxed = self.boxed.take().unwrap_or_else(take_free_box);
        *boxed = Some(value);
        self.boxed = Some(boxed);
    }

    /// Drops the value in place and gives the emptied box back to the worker's free list
    /// (`take` without moving the value out).
    pub fn clear(&mut self) {
        if let Some(mut boxed) = self.boxed.take() {
            *boxed = None;
            give_back(boxed);
        }
    }

    /// Stores the value `make` builds, as [`put`](Self::put) does; building it inside lets
    /// the compiler write a large value straight into the box instead of moving it there.
    #[inline]
    pub fn put_with(&mut self, make: impl FnOnce() -> T) {
        let mut boxed = self.boxed.take().unwrap_or_else(take_free_box);
        *boxed = Some(make());
        self.boxed = Some(boxed);
    }

    /// Moves the value out and gives the emptied box back to the worker's free list.
    pub fn take(&mut self) -> Option<T> {
        let mut boxed = self.boxed.take()?;
        let value = boxed.take();
        give_back(boxed);
        value
    }
}

impl<T: 'static> Drop for StreamSlot<T> {
    fn drop(&mut self) {
        if let Some(mut boxed) = self.boxed.take() {
            // The value's own destructor runs here, before its box goes back.
            drop(boxed.take());
            give_back(boxed);
        }
    }
}

/// An empty `Box<Option<T>>`: the last one freed on this worker, or a new one.
fn take_free_box<T: 'static>() -> Box<Option<T>> {
    let reused = FREE
        .try_with(|free| free.borrow_mut().pop())
        .ok()
        .flatten()
        .and_then(|any| any.downcast::<Option<T>>().ok());
    reused.unwrap_or_else(|| Box::new(None))
}

/// Keeps an emptied box for the next stream of this worker (or frees it if the list is full).
fn give_back<T: 'static>(boxed: Box<Option<T>>) {
    debug_assert!(boxed.is_none());
    // During thread teardown the list may be gone: the box is simply freed.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < MAX_FREE {
            free.push(boxed);
        }
    });
}

/// Boxes kept in this worker's free list (for tests).
pub fn free_boxes() -> usize {
    FREE.try_with(|free| free.borrow().len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn an_empty_slot_owns_nothing_and_a_taken_box_is_reused() {
        let mut slot: StreamSlot<[u64; 4]> = StreamSlot::empty();
        assert!(slot.is_none());
        slot.put([1, 2, 3, 4]);
        let first = slot.get().map(|v| v as *const [u64; 4]);
        assert_eq!(slot.take(), Some([1, 2, 3, 4]));
        assert!(slot.is_none());
        assert!(slot.boxed.is_none(), "an empty slot keeps no box");
        slot.put([5, 6, 7, 8]);
        let second = slot.get().map(|v| v as *const [u64; 4]);
        assert_eq!(first, second, "the freed box is reused for the next value");
        assert_eq!(slot.get_mut().map(|v| v[0]), Some(5));
    }

    #[test]
    fn dropping_a_slot_drops_its_value_and_recycles_the_box() {
        let value = Rc::new(());
        let before = free_boxes();
        {
            let mut slot = StreamSlot::empty();
            slot.put(value.clone());
            assert_eq!(Rc::strong_count(&value), 2);
        }
        assert_eq!(Rc::strong_count(&value), 1);
        assert_eq!(free_boxes(), (before + 1).min(MAX_FREE));
    }

    #[test]
    fn clearing_drops_the_value_in_place_and_recycles_the_box() {
        let value = Rc::new(());
        let mut slot = StreamSlot::empty();
        slot.put(value.clone());
        let before = free_boxes();
        slot.clear();
        assert!(slot.is_none() && slot.boxed.is_none());
        assert_eq!(Rc::strong_count(&value), 1);
        assert_eq!(free_boxes(), (before + 1).min(MAX_FREE));
        slot.clear();
        assert!(slot.is_none());
    }

    #[test]
    fn the_free_list_is_bounded() {
        let slots: Vec<StreamSlot<u32>> = (0..MAX_FREE as u32 + 10)
            .map(|i| {
                let mut s = StreamSlot::empty();
                s.put(i);
                s
            })
            .collect();
        drop(slots);
        assert_eq!(free_boxes(), MAX_FREE);
    }
}
