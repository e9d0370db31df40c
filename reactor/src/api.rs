//! The public surface of the reactor. (Stub: bodies are `todo!()` until issue 2 lands.)
#![allow(unused_variables, dead_code)]

use std::any::Any;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// How `Dispatcher::run` behaves (Envoy's `Dispatcher::RunType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunType {
    /// Run until nothing is registered (no enabled file event, armed timer, signal or pending
    /// post) or `exit()` is called.
    Block,
    /// One pass: poll with a zero timeout, run what is ready, return.
    NonBlock,
    /// Keep running even with nothing registered, until `exit()`.
    RunUntilExit,
}

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

/// One per thread; cheap to clone (a shared handle to the same loop); not `Send`.
#[derive(Clone)]
pub struct Dispatcher {
    _not_send: std::rc::Rc<()>,
}

impl Dispatcher {
    /// A new dispatcher named for logs and introspection (e.g. "main_thread", "worker_0").
    pub fn new(name: &str) -> io::Result<Dispatcher> {
        todo!()
    }
    pub fn name(&self) -> String {
        todo!()
    }
    /// Runs the loop (libevent's `event_base_loop`). Not re-entrant: calling `run` from a
    /// callback is an error.
    pub fn run(&self, run_type: RunType) -> io::Result<()> {
        todo!()
    }
    /// Makes `run` return after the current iteration.
    pub fn exit(&self) {
        todo!()
    }
    /// The `Send + Sync` handle other threads post through.
    pub fn poster(&self) -> Poster {
        todo!()
    }
    /// Registers `fd` (not owned: dropping the FileEvent unregisters, never closes) for `events`.
    /// The callback gets the ready set. It may call any method of the dispatcher, including
    /// dropping this very FileEvent; a dropped FileEvent never fires again, even if it was
    /// already in the current batch.
    pub fn create_file_event(
        &self,
        fd: RawFd,
        trigger: FileTriggerType,
        events: FileReadyType,
        cb: impl FnMut(FileReadyType) + 'static,
    ) -> io::Result<FileEvent> {
        todo!()
    }
    /// A disarmed timer; arm it with `Timer::enable`.
    pub fn create_timer(&self, cb: impl FnMut() + 'static) -> Timer {
        todo!()
    }
    /// Drops `obj` at the end of the current iteration (step 6), never before every callback of
    /// this iteration has run: an object can schedule its own destruction from its callback.
    pub fn deferred_delete(&self, obj: Box<dyn Any>) {
        todo!()
    }
    /// Delivers `signal` as an ordinary event on this dispatcher's thread. Only one dispatcher
    /// per process should listen for a given signal.
    pub fn listen_for_signal(
        &self,
        signal: Signal,
        cb: impl FnMut() + 'static,
    ) -> io::Result<SignalEvent> {
        todo!()
    }
    /// The time cached when the last poll returned (Envoy's `approximateMonotonicTime`).
    pub fn now(&self) -> Instant {
        todo!()
    }
    /// Introspection counters, readable from any thread (the admin's `/reactor`).
    pub fn stats(&self) -> Arc<DispatcherStats> {
        todo!()
    }
}

/// Posts callbacks to a dispatcher from any thread (Envoy's `Dispatcher::post`).
#[derive(Clone)]
pub struct Poster {}

impl Poster {
    /// Queues `cb` to run on the dispatcher's thread, in FIFO order; wakes the loop only when the
    /// queue goes from empty to non-empty. Returns false if the dispatcher is gone.
    pub fn post(&self, cb: Box<dyn FnOnce() + Send>) -> bool {
        todo!()
    }
}

/// A registered fd. Dropping it unregisters the fd (without closing it).
pub struct FileEvent {}

impl FileEvent {
    /// Replaces the set of events the callback wants.
    pub fn set_enabled(&self, events: FileReadyType) {
        todo!()
    }
    /// Injects readiness: the callback runs with `events` on this or the next iteration, whether
    /// or not the fd is ready (Envoy's `activate`, used by `write()` to schedule a flush).
    pub fn activate(&self, events: FileReadyType) {
        todo!()
    }
}

/// A one-shot timer on the dispatcher's wheel. Dropping it disarms it.
pub struct Timer {}

impl Timer {
    /// Arms (or re-arms) the timer to fire once after `delay`.
    pub fn enable(&self, delay: Duration) {
        todo!()
    }
    pub fn disable(&self) {
        todo!()
    }
    pub fn enabled(&self) -> bool {
        todo!()
    }
}

/// A signal listener. Dropping it stops listening (the default disposition is restored).
pub struct SignalEvent {}

/// Per-dispatcher counters, written by the owning thread with relaxed atomics, read by anyone.
#[derive(Default, Debug)]
pub struct DispatcherStats {
    // Filled in by issue 2: loop iterations, events dispatched, timers fired, posts run,
    // file events registered by kind, timers armed, post-queue depth, histograms of poll wait
    // and of callback run time per iteration.
}
