//! Shared event handlers: one callback for many file events and timers, told apart by a token.
//!
//! A file event or timer created with a closure owns a boxed copy of it: one heap block per
//! event, holding the closure's captures. A proxy worker has thousands of connections, each
//! with a socket event and a timer or two, and every one of those callbacks goes to the same
//! place with only an id that differs. Such an owner registers one [`EventHandler`] with
//! [`Dispatcher::add_handler`](crate::Dispatcher::add_handler) and creates its events with a
//! `u64` token instead ([`create_file_event_for`](crate::Dispatcher::create_file_event_for),
//! [`create_timer_for`](crate::Dispatcher::create_timer_for)): an event then costs its slab
//! slot and nothing on the heap. libevent plays the same trick: an `event` stores a function
//! pointer and an opaque argument, not a closure.
//!
//! The dispatcher keeps the handler (an `Rc`) for its whole life; it calls it exactly as it
//! calls a closure (from the loop, with no borrow of the dispatcher held, never re-entrantly),
//! so a handler may call any dispatcher method, including dropping the event that fired.

use std::rc::Rc;

use crate::file_event::FileReadyType;

/// The owner of file events and timers created with a token (see the module docs).
pub trait EventHandler {
    /// The file event created with `token` is ready with `ready` (what a closure would get).
    fn on_file_event(&self, token: u64, ready: FileReadyType);
    /// The timer created with `token` fired.
    fn on_timer(&self, token: u64);
}

/// Names a handler added to a dispatcher; valid on that dispatcher only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerId(pub(crate) u32);

/// What a file event or timer slot calls back.
pub(crate) enum Callback<F: ?Sized> {
    /// A closure of its own; `None` while it runs (taken out of the slot) or once dropped.
    Own(Option<Box<F>>),
    /// A shared handler, told which event fired by `token`.
    Shared { handler: HandlerId, token: u64 },
}

/// A callback taken out of its slot to run, so that no borrow of the dispatcher is held.
pub(crate) enum Running<F: ?Sized> {
    Own(Box<F>),
    Shared(Rc<dyn EventHandler>, u64),
}

impl<F: ?Sized> Callback<F> {
    /// Takes the callback out to run it; `None` if there is nothing to run (a closure already
    /// running, or a handler id unknown to `handlers`, which `add_handler` rules out).
    pub(crate) fn take(&mut self, handlers: &[Rc<dyn EventHandler>]) -> Option<Running<F>> {
        match self {
            Callback::Own(cb) => cb.take().map(Running::Own),
            Callback::Shared { handler, token } => handlers
                .get(handler.0 as usize)
                .map(|h| Running::Shared(h.clone(), *token)),
        }
    }

    /// Puts a closure that has run back into its slot (a shared handler needs nothing back).
    pub(crate) fn restore(&mut self, running: Running<F>) {
        if let (Callback::Own(slot), Running::Own(cb)) = (self, running) {
            *slot = Some(cb);
        }
    }

    /// Empties the slot (its event was dropped), returning what must be dropped outside any
    /// borrow of the dispatcher: user code may run in a closure's destructor.
    pub(crate) fn clear(&mut self) -> Option<Box<F>> {
        match std::mem::replace(self, Callback::Own(None)) {
            Callback::Own(cb) => cb,
            Callback::Shared { .. } => None,
        }
    }
}
