//! Deferred deletion (Envoy's `Dispatcher::deferredDelete`).
//!
//! Owns the list of objects waiting to be dropped at the end of the current loop iteration
//! (step 6). Filled by [`Dispatcher::deferred_delete`](crate::Dispatcher::deferred_delete);
//! drained by the dispatcher's loop, which drops the objects outside any borrow of its state.
//!
//! Why: a connection that decides to close from inside its own read callback cannot drop itself
//! there: the callback's stack still references it, and other events of the same batch may still
//! name it. Moving it to this list defers the drop until every callback of the iteration has
//! run. Dropping an object may drop its `FileEvent`s and `Timer`s; their slab slots are freed
//! only after this list is empty (see the dispatcher's step 6), so a stale event of this batch
//! can never reach a new object that reused the slot.

use std::any::Any;

#[derive(Default)]
pub(crate) struct DeferredDeleteList {
    objects: Vec<Box<dyn Any>>,
    /// The list being dropped (kept to reuse its allocation).
    spare: Vec<Box<dyn Any>>,
}

impl DeferredDeleteList {
    pub(crate) fn push(&mut self, obj: Box<dyn Any>) {
        self.objects.push(obj);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Takes the pending objects out; the caller drops them outside its borrow and hands the
    /// emptied vector back with [`DeferredDeleteList::restore`].
    pub(crate) fn take(&mut self) -> Vec<Box<dyn Any>> {
        let spare = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.objects, spare)
    }

    pub(crate) fn restore(&mut self, mut emptied: Vec<Box<dyn Any>>) {
        emptied.clear();
        if emptied.capacity() > self.spare.capacity() {
            self.spare = emptied;
        }
    }
}
