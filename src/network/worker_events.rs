//! The worker's one reactor handler for all its connections' sockets and timers.
//!
//! Every connection of a worker registers its socket with the dispatcher, and most have a timer
//! or two (the HTTP connection manager's, tcp_proxy's, a delayed close). Each of those used to
//! carry a boxed closure capturing the connection's id: a heap block per event, paid by every
//! idle keep-alive connection (issue 4 budgets 512 bytes for all of one). Instead the
//! [`ConnectionHandler`] registers one [`WorkerEvents`] with its dispatcher
//! (`reactor::EventHandler`), and each event carries a `u64` token saying what it belongs to
//! ([`EventTarget`]); the handler routes it exactly as the closure did.
//!
//! Called by the reactor (the worker's loop); calls [`ConnectionHandler`] through the same
//! `enter` boundary as every other callback of the worker.

use std::cell::RefCell;
use std::rc::Weak;

use reactor::{EventHandler, FileReadyType};

use super::connection::ConnectionId;
use super::connection_handler::{enter, ConnectionHandler};

/// What a worker's reactor token names.
///
/// Layout of the token: bits 0..32 the connection's slab slot; bits 32..48 the low 16 bits of
/// its global id (a guard: an event can never reach a later connection in the same slot, on
/// top of the reactor's promise that a dropped event never fires); bits 48..56 the target
/// (`CONNECTION` or a read filter's index); bits 56..64 the filter's timer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventTarget {
    /// The connection's own socket (a file event) or its delayed-close timer (a timer).
    Connection { slot: usize, guard: u16 },
    /// A timer of the connection's read filter `filter`, created with `token`.
    FilterTimer {
        slot: usize,
        guard: u16,
        filter: usize,
        token: u8,
    },
}

/// The target byte of [`EventTarget::Connection`]; read filters are `0..CONNECTION`.
const CONNECTION: u64 = 0xFF;

impl EventTarget {
    /// The target of connection `id`'s own events.
    pub(crate) fn connection(id: ConnectionId) -> EventTarget {
        EventTarget::Connection {
            slot: id.slot,
            guard: id.global as u16,
        }
    }

    /// The target of a timer of read filter `filter` of `id`, created with `token`; `None` when
    /// it does not fit a token (more than 254 filters, a token above 255, a slot beyond 32
    /// bits): the caller then gives the timer a closure of its own.
    pub(crate) fn filter_timer(id: ConnectionId, filter: usize, token: u64) -> Option<EventTarget> {
        (filter < CONNECTION as usize).then_some(())?;
        Some(EventTarget::FilterTimer {
            slot: id.slot,
            guard: id.global as u16,
            filter,
            token: u8::try_from(token).ok()?,
        })
    }

    /// The reactor token; `None` if the slot does not fit in 32 bits.
    pub(crate) fn token(self) -> Option<u64> {
        let (slot, guard, target, token) = match self {
            EventTarget::Connection { slot, guard } => (slot, guard, CONNECTION, 0),
            EventTarget::FilterTimer {
                slot,
                guard,
                filter,
                token,
            } => (slot, guard, filter as u64, token),
        };
        let slot = u32::try_from(slot).ok()?;
        Some(u64::from(slot) | u64::from(guard) << 32 | target << 48 | u64::from(token) << 56)
    }

    pub(crate) fn from_token(token: u64) -> EventTarget {
        let slot = (token & 0xFFFF_FFFF) as usize;
        let guard = (token >> 32) as u16;
        match (token >> 48) & 0xFF {
            CONNECTION => EventTarget::Connection { slot, guard },
            filter => EventTarget::FilterTimer {
                slot,
                guard,
                filter: filter as usize,
                token: (token >> 56) as u8,
            },
        }
    }

    /// The slot and guard of the connection it belongs to.
    pub(crate) fn connection_slot(self) -> (usize, u16) {
        match self {
            EventTarget::Connection { slot, guard }
            | EventTarget::FilterTimer { slot, guard, .. } => (slot, guard),
        }
    }
}

/// Whether `id` is the connection a target's `guard` was taken from.
pub(crate) fn guard_matches(id: ConnectionId, guard: u16) -> bool {
    id.global as u16 == guard
}

/// The worker's shared reactor handler (see the module docs).
pub(crate) struct WorkerEvents {
    pub(crate) handler: Weak<RefCell<ConnectionHandler>>,
}

impl EventHandler for WorkerEvents {
    fn on_file_event(&self, token: u64, ready: FileReadyType) {
        enter(&self.handler, |h| {
            h.on_target_file_event(EventTarget::from_token(token), ready)
        });
    }

    fn on_timer(&self, token: u64) {
        enter(&self.handler, |h| {
            h.on_target_timer(EventTarget::from_token(token))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_their_token() {
        let id = ConnectionId::allocate(70_000);
        let own = EventTarget::connection(id);
        assert_eq!(EventTarget::from_token(own.token().unwrap()), own);
        let timer = EventTarget::filter_timer(id, 3, 2).unwrap();
        assert_eq!(EventTarget::from_token(timer.token().unwrap()), timer);
        assert_eq!(timer.connection_slot(), own.connection_slot());
        let (_, guard) = own.connection_slot();
        assert!(guard_matches(id, guard));
        assert!(!guard_matches(ConnectionId::allocate(70_000), guard));
    }

    #[test]
    fn what_does_not_fit_a_token_is_refused() {
        let id = ConnectionId::allocate(1);
        assert_eq!(EventTarget::filter_timer(id, 255, 0), None);
        assert_eq!(EventTarget::filter_timer(id, 0, 256), None);
        let far = ConnectionId::allocate(1 << 33);
        assert_eq!(EventTarget::connection(far).token(), None);
    }
}
