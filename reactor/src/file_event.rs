//! File events: an fd registered for readiness, with a callback (libevent's `event` on an fd,
//! Envoy's `FileEventImpl`).
//!
//! Owns the readiness vocabulary ([`FileReadyType`], [`FileTriggerType`]), the [`FileEvent`]
//! handle the owner keeps, and the per-fd slot the [`Dispatcher`](crate::Dispatcher) keeps in
//! its slab (token = slab key). Called by the dispatcher's loop (step 4: run active file events)
//! and by the owner (`set_enabled`, `activate`, drop); calls mio's `Registry`.
//!
//! # Readiness
//! mio's epoll backend reports `EPOLLIN`/`EPOLLOUT`/`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`; the
//! dispatcher maps them as libevent does ([`FileReadyType::from_mio`]):
//! - READ when readable, when the read side closed (so the owner reads the EOF) or on error;
//! - WRITE when writable, when the write side closed or on error (the next write reports it);
//! - CLOSED when the peer hung up (`EPOLLRDHUP` or `EPOLLHUP`).
//!
//! Every event carries the fd's whole state when it was collected, not only what changed: once
//! the peer's FIN (or a reset) has arrived, every later event of an fd registered for READ or
//! CLOSED includes CLOSED, and a FIN arriving after an event was collected raises a new event
//! (in both trigger modes). A reader may rely on it to stop without a read that fails with
//! `WouldBlock`: a stream read that returned fewer bytes than asked, on an event without
//! CLOSED, drained the socket, and whatever comes next (bytes, FIN, reset) is reported anew.
//! After CLOSED it must read on to the EOF or error, which raise no further event.
//!
//! The ready set is masked with the enabled set when the callback runs (not when the event is
//! collected), so a callback earlier in the batch that disables an interest suppresses it.
//! Events injected with [`FileEvent::activate`] are delivered whether or not they are enabled,
//! as Envoy's `activate()` does.
//!
//! # Edge and level
//! mio registers every fd edge-triggered (`EPOLLET`). Edge events cost nothing extra: the kernel
//! reports each readiness change once, and the callback must drain (read or write until
//! `WouldBlock`) or it waits for the next change.
//!
//! Level semantics (the event fires on every iteration while the fd stays ready) are provided
//! by the reactor: level-triggered fds are registered without `EPOLLET` in a level-triggered
//! epoll set of the dispatcher's own, nested in mio's poll (see `level_set.rs` for how and why,
//! and the crate docs for the measured cost). Readiness from both sets is handled alike.

use std::os::fd::RawFd;
use std::rc::Weak;

use mio::Interest;

use crate::dispatcher::Inner;
use crate::handler::Callback;

/// Level or edge triggering (Envoy's `FileTriggerType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileTriggerType {
    /// Fires on every loop iteration while the fd is ready (emulated on top of mio).
    Level,
    /// Fires once per readiness change.
    Edge,
}

/// A set of readiness kinds (Envoy's `FileReadyType`): READ, WRITE, CLOSED (peer hung up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileReadyType(u8);

impl FileReadyType {
    pub const NONE: FileReadyType = FileReadyType(0);
    pub const READ: FileReadyType = FileReadyType(1);
    pub const WRITE: FileReadyType = FileReadyType(2);
    pub const CLOSED: FileReadyType = FileReadyType(4);

    pub fn contains(self, other: FileReadyType) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn intersects(self, other: FileReadyType) -> bool {
        self.0 & other.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// What a mio event means for the owner (see the module docs).
    pub(crate) fn from_mio(event: &mio::event::Event) -> FileReadyType {
        let mut ready = FileReadyType::NONE;
        let error = event.is_error();
        if event.is_readable() || event.is_read_closed() || error {
            ready |= FileReadyType::READ;
        }
        if event.is_writable() || event.is_write_closed() || error {
            ready |= FileReadyType::WRITE;
        }
        if event.is_read_closed() {
            ready |= FileReadyType::CLOSED;
        }
        ready
    }

    /// The mio interest that reports these events; `None` for the empty set (not registered).
    /// CLOSED needs `READABLE`: mio asks for `EPOLLRDHUP` together with `EPOLLIN`.
    pub(crate) fn to_interest(self) -> Option<Interest> {
        let read = self.intersects(FileReadyType::READ | FileReadyType::CLOSED);
        let write = self.contains(FileReadyType::WRITE);
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

impl std::ops::BitOr for FileReadyType {
    type Output = FileReadyType;
    fn bitor(self, rhs: FileReadyType) -> FileReadyType {
        FileReadyType(self.0 | rhs.0)
    }
}
impl std::ops::BitOrAssign for FileReadyType {
    fn bitor_assign(&mut self, rhs: FileReadyType) {
        self.0 |= rhs.0
    }
}
impl std::ops::BitAnd for FileReadyType {
    type Output = FileReadyType;
    fn bitand(self, rhs: FileReadyType) -> FileReadyType {
        FileReadyType(self.0 & rhs.0)
    }
}
impl std::ops::Sub for FileReadyType {
    type Output = FileReadyType;
    fn sub(self, rhs: FileReadyType) -> FileReadyType {
        FileReadyType(self.0 & !rhs.0)
    }
}

impl std::fmt::Display for FileReadyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        for (bit, name) in [
            (FileReadyType::READ, "READ"),
            (FileReadyType::WRITE, "WRITE"),
            (FileReadyType::CLOSED, "CLOSED"),
        ] {
            if self.contains(bit) {
                names.push(name);
            }
        }
        if names.is_empty() {
            f.write_str("NONE")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

/// The callback of a file event: its own closure, or a shared handler and a token.
pub(crate) type FileCallback = Callback<dyn FnMut(FileReadyType)>;

/// The dispatcher's record of one registered fd (one slab entry; its key is the mio token).
pub(crate) struct FileSlot {
    pub(crate) fd: RawFd,
    pub(crate) trigger: FileTriggerType,
    /// What the owner wants (masks kernel readiness when the callback runs).
    pub(crate) enabled: FileReadyType,
    /// Whether the fd is currently registered with mio (false while `enabled` is empty).
    pub(crate) registered: bool,
    /// Kernel readiness collected this iteration.
    pub(crate) ready: FileReadyType,
    /// Readiness injected by `activate`, delivered unmasked.
    pub(crate) injected: FileReadyType,
    /// In this iteration's active list.
    pub(crate) queued: bool,
    /// In the next iteration's active list (after `activate`).
    pub(crate) queued_next: bool,
    /// The handle was dropped; the slot is freed when deferred deletions are reaped.
    pub(crate) dead: bool,
    /// A closure is taken out while it runs, so it can use the dispatcher freely.
    pub(crate) cb: FileCallback,
}

/// A registered fd. Dropping it unregisters the fd (without closing it); a dropped FileEvent
/// never fires again, even if it was already in the current batch. Drop it before closing the
/// fd, or a new fd with the same number could be unregistered instead.
pub struct FileEvent {
    pub(crate) inner: Weak<Inner>,
    pub(crate) key: usize,
}

impl FileEvent {
    /// Replaces the set of events the callback wants. The registration is always refreshed
    /// (as Envoy does), which makes the kernel re-evaluate readiness: enabling WRITE on a
    /// writable socket reports it on the next iteration, even in edge mode.
    pub fn set_enabled(&self, events: FileReadyType) {
        if let Some(inner) = self.inner.upgrade() {
            inner.file_set_enabled(self.key, events);
        }
    }

    /// Injects readiness: the callback runs with `events` on the next iteration, whether or not
    /// the fd is ready or the events enabled (Envoy's `activate`, used by `write()` to schedule a
    /// flush). Several activations before the callback runs are merged.
    pub fn activate(&self, events: FileReadyType) {
        if let Some(inner) = self.inner.upgrade() {
            inner.file_activate(self.key, events);
        }
    }

    /// The readiness waiting for this event's callback: what the current iteration's poll
    /// collected for the fd (masked with the enabled set, as the callback would see it) plus
    /// what [`activate`](Self::activate) injected, until the callback runs; `NONE` when nothing
    /// waits. The poll's events are collected when the loop starts running file events (step
    /// 4), so a timer callback of the same iteration sees only injected readiness.
    ///
    /// Lets an owner that is about to reuse an idle fd from another callback of the same batch
    /// learn, without a syscall, that the kernel has already reported something for it (say,
    /// the peer's FIN on a pooled connection) that its callback has not handled yet.
    pub fn pending(&self) -> FileReadyType {
        match self.inner.upgrade() {
            Some(inner) => inner.file_pending(self.key),
            None => FileReadyType::NONE,
        }
    }
}

impl std::fmt::Debug for FileEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEvent")
            .field("token", &self.key)
            .finish_non_exhaustive()
    }
}

impl Drop for FileEvent {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.file_drop(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_type_set_operations() {
        let rw = FileReadyType::READ | FileReadyType::WRITE;
        assert!(rw.contains(FileReadyType::READ));
        assert!(!rw.contains(FileReadyType::READ | FileReadyType::CLOSED));
        assert!(rw.intersects(FileReadyType::READ | FileReadyType::CLOSED));
        assert_eq!(rw - FileReadyType::READ, FileReadyType::WRITE);
        assert_eq!(rw & FileReadyType::CLOSED, FileReadyType::NONE);
        assert!(FileReadyType::NONE.is_empty());
        assert_eq!(
            (rw | FileReadyType::CLOSED).to_string(),
            "READ|WRITE|CLOSED"
        );
        assert_eq!(FileReadyType::NONE.to_string(), "NONE");
    }

    #[test]
    fn interest_for_each_set() {
        assert_eq!(FileReadyType::NONE.to_interest(), None);
        assert_eq!(
            FileReadyType::CLOSED.to_interest(),
            Some(Interest::READABLE)
        );
        assert_eq!(FileReadyType::WRITE.to_interest(), Some(Interest::WRITABLE));
        assert_eq!(
            (FileReadyType::READ | FileReadyType::WRITE).to_interest(),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
    }
}
