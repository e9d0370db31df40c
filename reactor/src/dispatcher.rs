//! The event loop (libevent's `event_base` and `event_base_loop`, Envoy's `DispatcherImpl`).
//!
//! Owns the thread's `mio::Poll`, the slabs of file events and timers, the timer wheel, the
//! active list, the post queue's consumer side and the deferred-deletion list. The owner thread
//! calls [`Dispatcher::run`]; everything registered on it calls back from inside `run`. Other
//! threads reach it only through a [`Poster`].
//!
//! # One iteration ([`Inner::run_iteration`])
//! 1. **Timeout.** Zero when work is already waiting (activated file events, level fds still
//!    ready, posts, deferred deletions) or when running `NonBlock`; else the time to the next timer; else forever.
//! 2. **Poll.** `epoll_wait` into the reused `mio::Events` buffer; then, if it may hold ready
//!    fds, harvest the level-triggered set (level_set.rs); cache the time ([`Dispatcher::now`]).
//! 3. **Expire timers.** Due timers run in deadline order (same deadline: arming order).
//! 4. **Run active file events.** The events activated during the previous iteration, then
//!    every fd the kernel reported, each callback once with the union of its readiness.
//! 5. **Run posted callbacks.** The whole queue, swapped out under its lock, run outside it.
//! 6. **Reap deferred deletions.** Drop the objects passed to [`Dispatcher::deferred_delete`],
//!    then free the slab slots of file events and timers dropped during this iteration.
//!
//! Timers run before file events, the order the issue specifies, and posts after them, so a
//! post made from a file event callback runs in the same iteration. libevent queues both kinds
//! in one active list, I/O first; the difference shows only when a connection's timer and its fd
//! are due in the same iteration (an idle timeout expiring just as data arrives): here the timer
//! runs first. A timer disabled or re-armed by an earlier callback of its batch does not fire.
//!
//! # Callbacks and re-entrancy
//! Callbacks live in slab slots keyed by the mio token. While a callback runs it is *taken out*
//! of its slot and no borrow of the dispatcher's state is held, so the callback may call any
//! method: create or drop file events and timers (its own included), enable, disable, activate,
//! post, defer deletes, exit. After it returns it is put back, unless its handle was dropped
//! meanwhile, in which case it is dropped then. A dropped file event or timer is marked dead:
//! it never fires again, even if it is further down the current batch.
//!
//! # Slot reuse
//! A slot freed during an iteration (steps 3 to 6) is only removed from its slab at the end of
//! step 6, after every callback and deferred drop of the iteration has run. Until then a new
//! file event or timer gets a different key, so a stale kernel event or expired-timer entry of
//! this batch can only ever name the dead slot, never a newcomer. The next poll reports nothing
//! for it (it was deregistered). Slots freed outside `run` are removed at once.
//!
//! # No allocation per event
//! The mio `Events` buffer, the active lists, the expired-timer list and the post batch are
//! reused from iteration to iteration; callbacks are moved out of and back into their slots,
//! never re-boxed. Steady-state dispatch allocates nothing.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token};
use slab::Slab;

use crate::deferred::DeferredDeleteList;
use crate::file_event::{FileCallback, FileEvent, FileReadyType, FileSlot, FileTriggerType};
use crate::handler::{Callback, EventHandler, HandlerId, Running};
use crate::level_set::LevelSet;
use crate::post::{PostCallback, PostQueue, Poster};
use crate::signal::{self, SignalEvent};
use crate::stats::{bump, DispatcherStats};
use crate::timer::{Timer, TimerWheel, WheelKey};
use nix::sys::signal::Signal;

/// The token of the post queue's waker; slab keys (file event tokens) never reach it.
const WAKER_TOKEN: Token = Token(usize::MAX);
/// The token of the level-triggered set's epoll fd (see level_set.rs).
const LEVEL_TOKEN: Token = Token(usize::MAX - 1);
/// Capacity of the reused `mio::Events` buffer: the most events one poll returns.
const EVENTS_CAPACITY: usize = 1024;

/// How [`Dispatcher::run`] behaves (Envoy's `Dispatcher::RunType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunType {
    /// Run until nothing is registered (no enabled file event, armed timer, signal, pending
    /// activation, post or deferred deletion) or `exit()` is called.
    Block,
    /// One pass: poll with a zero timeout, run what is ready, return.
    NonBlock,
    /// Keep running even with nothing registered, until `exit()`.
    RunUntilExit,
}

/// The event loop of one thread; cheap to clone (a shared handle to the same loop); not `Send`.
///
/// Callbacks that capture a `Dispatcher` clone keep the loop alive for as long as they are
/// registered; the loop (its epoll fd and waker) is freed when the last clone is dropped.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Rc<Inner>,
}

/// The callback of a timer: its own closure, or a shared handler and a token.
type TimerCallback = Callback<dyn FnMut()>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimerState {
    Disarmed,
    Armed(WheelKey),
    /// Taken off the wheel by step 3 and waiting its turn in this iteration's expired list;
    /// `disable`/`enable` from an earlier callback of the batch cancel the firing.
    Due,
}

struct TimerSlot {
    state: TimerState,
    dead: bool,
    cb: TimerCallback,
}

pub(crate) struct Inner {
    name: String,
    state: RefCell<State>,
    post: Arc<PostQueue>,
    stats: Arc<DispatcherStats>,
    exit: Cell<bool>,
    running: Cell<bool>,
    /// Steps 3 to 6 are running: slot frees are delayed to the end of step 6.
    in_iteration: Cell<bool>,
    /// The time read when the last poll returned (see [`Dispatcher::now`]).
    now: Cell<Instant>,
    /// The time read when the last iteration's callbacks finished: the start of the next
    /// poll, so an iteration reads the clock twice (after the poll, after the callbacks).
    iteration_end: Cell<Instant>,
    /// This iteration's wall-clock time, read on first use (see [`Dispatcher::wall_now`]);
    /// cleared when the poll returns.
    wall: Cell<Option<SystemTime>>,
}

struct State {
    poll: Poll,
    events: Events,
    /// Level-triggered fds live here, not in mio's (edge-only) registrations.
    level: LevelSet,
    files: Slab<FileSlot>,
    timers: Slab<TimerSlot>,
    /// The shared handlers (see handler.rs), by `HandlerId`; kept for the dispatcher's life.
    handlers: Vec<Rc<dyn EventHandler>>,
    wheel: TimerWheel<usize>,
    /// Keys of file events to run in step 4 of this iteration.
    active: Vec<usize>,
    /// Keys activated with `FileEvent::activate`, run in step 4 of the next iteration.
    next_active: Vec<usize>,
    /// Keys of timers expired in step 3.
    expired: Vec<usize>,
    /// The post batch being run (reused).
    posts: VecDeque<PostCallback>,
    deferred: DeferredDeleteList,
    freed_files: Vec<usize>,
    freed_timers: Vec<usize>,
    /// Live file events with a non-empty enabled set (what `RunType::Block` waits on).
    enabled_files: usize,
}

impl Dispatcher {
    /// A new dispatcher named for logs and introspection (e.g. "main_thread", "worker_0").
    pub fn new(name: &str) -> io::Result<Dispatcher> {
        let poll = Poll::new()?;
        let stats = Arc::new(DispatcherStats::default());
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let level = LevelSet::new()?;
        let level_fd = level.raw_fd();
        poll.registry().register(
            &mut SourceFd(&level_fd),
            LEVEL_TOKEN,
            mio::Interest::READABLE,
        )?;
        let now = Instant::now();
        let state = State {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            level,
            files: Slab::new(),
            timers: Slab::new(),
            handlers: Vec::new(),
            wheel: TimerWheel::new(now),
            active: Vec::new(),
            next_active: Vec::new(),
            expired: Vec::new(),
            posts: VecDeque::new(),
            deferred: DeferredDeleteList::default(),
            freed_files: Vec::new(),
            freed_timers: Vec::new(),
            enabled_files: 0,
        };
        Ok(Dispatcher {
            inner: Rc::new(Inner {
                name: name.to_string(),
                state: RefCell::new(state),
                post: Arc::new(PostQueue::new(waker, stats.clone())),
                stats,
                exit: Cell::new(false),
                running: Cell::new(false),
                in_iteration: Cell::new(false),
                now: Cell::new(now),
                iteration_end: Cell::new(now),
                wall: Cell::new(None),
            }),
        })
    }

    pub fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// Runs the loop (libevent's `event_base_loop`) as `run_type` says. Not re-entrant: calling
    /// `run` from a callback returns an error. An `exit()` made before `run` makes it return
    /// after its first iteration; the exit request is consumed when `run` returns.
    pub fn run(&self, run_type: RunType) -> io::Result<()> {
        let inner = &*self.inner;
        if inner.running.replace(true) {
            return Err(io::Error::other(
                "reactor: Dispatcher::run called re-entrantly",
            ));
        }
        let _guard = RunGuard(inner);
        inner.iteration_end.set(Instant::now());
        loop {
            if run_type == RunType::Block && !inner.has_work() {
                return Ok(());
            }
            inner.run_iteration(run_type != RunType::NonBlock)?;
            if run_type == RunType::NonBlock || inner.exit_requested() {
                return Ok(());
            }
        }
    }

    /// Makes `run` return after the current iteration.
    pub fn exit(&self) {
        self.inner.exit.set(true);
    }

    /// The `Send + Sync` handle other threads post through.
    pub fn poster(&self) -> Poster {
        Poster {
            queue: self.inner.post.clone(),
        }
    }

    /// Registers `fd` (not owned: dropping the FileEvent unregisters, never closes) for `events`.
    /// The callback gets the ready set. It may call any method of the dispatcher, including
    /// dropping this very FileEvent; a dropped FileEvent never fires again, even if it was
    /// already in the current batch. Fails if the fd is invalid or already registered here.
    pub fn create_file_event(
        &self,
        fd: RawFd,
        trigger: FileTriggerType,
        events: FileReadyType,
        cb: impl FnMut(FileReadyType) + 'static,
    ) -> io::Result<FileEvent> {
        self.new_file_event(fd, trigger, events, Callback::Own(Some(Box::new(cb))))
    }

    /// [`create_file_event`](Self::create_file_event) calling the shared `handler`'s
    /// `on_file_event(token, ready)` instead of a closure of its own (no heap block per event;
    /// see handler.rs).
    pub fn create_file_event_for(
        &self,
        fd: RawFd,
        trigger: FileTriggerType,
        events: FileReadyType,
        handler: HandlerId,
        token: u64,
    ) -> io::Result<FileEvent> {
        self.new_file_event(fd, trigger, events, Callback::Shared { handler, token })
    }

    fn new_file_event(
        &self,
        fd: RawFd,
        trigger: FileTriggerType,
        events: FileReadyType,
        cb: FileCallback,
    ) -> io::Result<FileEvent> {
        let inner = &*self.inner;
        let mut st = inner.state.borrow_mut();
        let State {
            poll,
            level,
            files,
            enabled_files,
            ..
        } = &mut *st;
        let key = files.vacant_key();
        let mut slot = FileSlot {
            fd,
            trigger,
            enabled: events,
            registered: false,
            ready: FileReadyType::NONE,
            injected: FileReadyType::NONE,
            queued: false,
            queued_next: false,
            dead: false,
            cb,
        };
        if let Err(e) = update_registration(poll, level, key, &mut slot, events) {
            let closure = slot.cb.clear();
            drop(st);
            drop(closure); // user code may run in the closure's drop: no borrow held
            return Err(e);
        }
        *enabled_files += slot.registered as usize;
        files.insert(slot);
        bump(inner.trigger_gauge(trigger), 1);
        Ok(FileEvent {
            inner: Rc::downgrade(&self.inner),
            key,
        })
    }

    /// A disarmed timer; arm it with [`Timer::enable`].
    pub fn create_timer(&self, cb: impl FnMut() + 'static) -> Timer {
        self.new_timer(Callback::Own(Some(Box::new(cb))))
    }

    /// [`create_timer`](Self::create_timer) calling the shared `handler`'s `on_timer(token)`
    /// instead of a closure of its own (no heap block per timer; see handler.rs).
    pub fn create_timer_for(&self, handler: HandlerId, token: u64) -> Timer {
        self.new_timer(Callback::Shared { handler, token })
    }

    fn new_timer(&self, cb: TimerCallback) -> Timer {
        let key = self.inner.state.borrow_mut().timers.insert(TimerSlot {
            state: TimerState::Disarmed,
            dead: false,
            cb,
        });
        Timer {
            inner: Rc::downgrade(&self.inner),
            key,
        }
    }

    /// Adds a handler shared by the file events and timers created for it with a token
    /// ([`create_file_event_for`](Self::create_file_event_for),
    /// [`create_timer_for`](Self::create_timer_for)). The dispatcher keeps it until it is
    /// dropped itself: a handler that refers back to its owner should hold a `Weak`.
    pub fn add_handler(&self, handler: Rc<dyn EventHandler>) -> HandlerId {
        let mut st = self.inner.state.borrow_mut();
        st.handlers.push(handler);
        HandlerId((st.handlers.len() - 1) as u32)
    }

    /// Drops `obj` at the end of the current iteration (step 6), never before every callback of
    /// this iteration has run: an object can schedule its own destruction from its callback.
    /// Called outside `run`, the object is dropped at the end of the next iteration.
    pub fn deferred_delete(&self, obj: Box<dyn Any>) {
        self.inner.state.borrow_mut().deferred.push(obj);
    }

    /// Delivers `signal` (SIGINT, SIGTERM, SIGHUP or SIGUSR1) as an ordinary event on this
    /// dispatcher's thread. Only one listener per signal per process: a second one is an
    /// `AlreadyExists` error.
    pub fn listen_for_signal(
        &self,
        signal: Signal,
        cb: impl FnMut() + 'static,
    ) -> io::Result<SignalEvent> {
        signal::listen(self, signal, cb)
    }

    /// The time cached when the last poll returned (Envoy's `approximateMonotonicTime`,
    /// libevent's cached time). Callbacks of one iteration all see the same instant, and timers
    /// armed from them count their delay from it (as libevent's `event_add` does with its
    /// cached time): no clock read per arm. A timer armed outside `run` counts from the clock.
    pub fn now(&self) -> Instant {
        self.inner.now.get()
    }

    /// The wall-clock time of the current iteration (libevent's
    /// `event_base_gettimeofday_cached`): read from the clock by the first caller of an
    /// iteration, then the same for every later callback of it, so a request's timestamps
    /// (access-log start time, `%START_TIME%`) cost no clock read each. Outside `run`, the
    /// clock.
    pub fn wall_now(&self) -> SystemTime {
        let inner = &self.inner;
        if !inner.in_iteration.get() {
            return SystemTime::now();
        }
        if let Some(wall) = inner.wall.get() {
            return wall;
        }
        let wall = SystemTime::now();
        inner.wall.set(Some(wall));
        wall
    }

    /// Introspection counters, readable from any thread (the admin's `/reactor`).
    pub fn stats(&self) -> Arc<DispatcherStats> {
        self.inner.stats.clone()
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// Clears the running state when `run` returns (or unwinds).
struct RunGuard<'a>(&'a Inner);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
        self.0.in_iteration.set(false);
        self.0.exit.set(false);
        self.0.post.clear_exit();
    }
}

impl Inner {
    fn trigger_gauge(&self, trigger: FileTriggerType) -> &std::sync::atomic::AtomicU64 {
        match trigger {
            FileTriggerType::Level => &self.stats.file_events_level,
            FileTriggerType::Edge => &self.stats.file_events_edge,
        }
    }

    fn exit_requested(&self) -> bool {
        self.exit.get() || self.post.exit_requested()
    }

    /// Work that needs no new kernel event to run (a level fd still ready counts).
    fn has_immediate_work(&self, st: &State) -> bool {
        !st.next_active.is_empty()
            || !st.deferred.is_empty()
            || st.level.maybe_ready()
            || self.post.has_pending()
    }

    /// Whether `RunType::Block` should keep going.
    fn has_work(&self) -> bool {
        let st = self.state.borrow();
        st.enabled_files > 0 || !st.wheel.is_empty() || self.has_immediate_work(&st)
    }

    /// One loop iteration: the six steps of the module docs, in order.
    fn run_iteration(&self, may_block: bool) -> io::Result<()> {
        // 1. Timeout. The clock was read when the previous iteration's callbacks finished,
        //    which is as good as now: only this step ran since.
        let poll_start = self.iteration_end.get();
        let timeout = {
            let mut st = self.state.borrow_mut();
            if !may_block || self.has_immediate_work(&st) || self.exit_requested() {
                Some(Duration::ZERO)
            } else {
                st.wheel.next_expiry(poll_start)
            }
        };

        // 2. Poll mio's (edge) set, then harvest the level set if it may hold ready fds.
        {
            let mut st = self.state.borrow_mut();
            let State {
                poll,
                events,
                level,
                ..
            } = &mut *st;
            match poll.poll(events, timeout) {
                Ok(()) => {}
                // A signal interrupted epoll_wait: no events; the signal's own event (its
                // self-pipe) is reported by the next poll.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
                Err(e) => return Err(e),
            }
            if level.maybe_ready() || events.iter().any(|e| e.token() == LEVEL_TOKEN) {
                level.harvest()?;
            }
        }
        let now = Instant::now();
        self.now.set(now);
        self.wall.set(None);
        let waited = now.saturating_duration_since(poll_start);
        self.stats.poll_wait_us.record(waited);
        if let Some(delay) = timeout.and_then(|t| waited.checked_sub(t)) {
            if !delay.is_zero() {
                self.stats.poll_delay_us.record(delay);
            }
        }

        self.in_iteration.set(true);
        // 3. Expire timers.
        self.expire_timers(now);
        // 4. Run active file events.
        self.run_file_events();
        // 5. Run posted callbacks.
        self.run_posts();
        // 6. Reap deferred deletions, then free the slots dropped during this iteration.
        self.reap_deferred();
        self.in_iteration.set(false);

        bump(&self.stats.loop_iterations_total, 1);
        let end = Instant::now();
        self.iteration_end.set(end);
        self.stats
            .callback_us
            .record(end.saturating_duration_since(now));
        Ok(())
    }

    /// Step 3.
    fn expire_timers(&self, now: Instant) {
        let expired = {
            let mut st = self.state.borrow_mut();
            if st.wheel.is_empty() {
                return;
            }
            let State {
                wheel,
                timers,
                expired,
                ..
            } = &mut *st;
            wheel.expire(now, expired);
            for &key in expired.iter() {
                timers[key].state = TimerState::Due;
            }
            self.stats.timers_armed.store(wheel.len() as u64, Relaxed);
            std::mem::take(expired)
        };
        let mut fired = 0;
        for &key in &expired {
            let cb = {
                let mut st = self.state.borrow_mut();
                let State {
                    timers, handlers, ..
                } = &mut *st;
                let Some(slot) = timers.get_mut(key) else {
                    continue;
                };
                if slot.dead || slot.state != TimerState::Due {
                    continue; // dropped, disabled or re-armed by an earlier callback
                }
                slot.state = TimerState::Disarmed;
                slot.cb.take(handlers)
            };
            let Some(cb) = cb else { continue };
            fired += 1;
            let cb = match cb {
                // A shared handler stays where it is: nothing to put back.
                Running::Shared(handler, token) => {
                    handler.on_timer(token);
                    continue;
                }
                Running::Own(mut f) => {
                    f();
                    Running::Own(f)
                }
            };
            let leftover = {
                let mut st = self.state.borrow_mut();
                match st.timers.get_mut(key) {
                    Some(slot) if !slot.dead => {
                        slot.cb.restore(cb);
                        None
                    }
                    _ => Some(cb),
                }
            };
            drop(leftover); // the timer was dropped by its own callback: drop it unborrowed
        }
        bump(&self.stats.timers_fired_total, fired);
        let mut expired = expired;
        expired.clear();
        self.state.borrow_mut().expired = expired;
    }

    /// Step 4.
    fn run_file_events(&self) {
        let active = {
            let mut st = self.state.borrow_mut();
            let State {
                events,
                level,
                files,
                active,
                next_active,
                ..
            } = &mut *st;
            // Activations from the previous iteration first (active is empty here).
            std::mem::swap(active, next_active);
            for &key in active.iter() {
                if let Some(slot) = files.get_mut(key) {
                    slot.queued_next = false;
                    slot.queued = true;
                }
            }
            let edge_events = events
                .iter()
                // The waker needs nothing (step 5 runs posts whether or not we were woken);
                // the level set's own token was handled by step 2.
                .filter(|e| e.token() != WAKER_TOKEN && e.token() != LEVEL_TOKEN)
                .map(|e| (e.token().0, FileReadyType::from_mio(e)));
            for (key, ready) in edge_events.chain(level.events()) {
                let Some(slot) = files.get_mut(key) else {
                    continue;
                };
                if slot.dead {
                    continue;
                }
                slot.ready |= ready;
                if !slot.queued {
                    slot.queued = true;
                    active.push(key);
                }
            }
            std::mem::take(active)
        };
        let mut dispatched = 0;
        for &key in &active {
            let (cb, ready) = {
                let mut st = self.state.borrow_mut();
                let State {
                    files, handlers, ..
                } = &mut *st;
                let Some(slot) = files.get_mut(key) else {
                    continue;
                };
                slot.queued = false;
                if slot.dead {
                    continue;
                }
                // Mask now, not at collection: an earlier callback may have disabled interest.
                let ready = (slot.ready & slot.enabled) | slot.injected;
                slot.ready = FileReadyType::NONE;
                slot.injected = FileReadyType::NONE;
                if ready.is_empty() {
                    continue;
                }
                let Some(cb) = slot.cb.take(handlers) else {
                    continue;
                };
                (cb, ready)
            };
            dispatched += 1;
            let cb = match cb {
                // A shared handler stays where it is: nothing to put back.
                Running::Shared(handler, token) => {
                    handler.on_file_event(token, ready);
                    continue;
                }
                Running::Own(mut f) => {
                    f(ready);
                    Running::Own(f)
                }
            };
            let leftover = {
                let mut st = self.state.borrow_mut();
                match st.files.get_mut(key) {
                    Some(slot) if !slot.dead => {
                        slot.cb.restore(cb);
                        None
                    }
                    _ => Some(cb),
                }
            };
            drop(leftover); // dropped by its own callback: drop the closure unborrowed
        }
        bump(&self.stats.events_dispatched_total, dispatched);
        let mut active = active;
        active.clear();
        self.state.borrow_mut().active = active;
    }

    /// Step 5.
    fn run_posts(&self) {
        let mut batch = std::mem::take(&mut self.state.borrow_mut().posts);
        self.post.take_into(&mut batch);
        let n = batch.len() as u64;
        if n == 0 {
            self.state.borrow_mut().posts = batch;
            return;
        }
        self.post.stats().post_queue_depth.fetch_sub(n, Relaxed);
        while let Some(cb) = batch.pop_front() {
            cb();
        }
        bump(&self.stats.posts_run_total, n);
        self.state.borrow_mut().posts = batch;
    }

    /// Step 6.
    fn reap_deferred(&self) {
        loop {
            let mut objects = {
                let mut st = self.state.borrow_mut();
                if st.deferred.is_empty() {
                    break;
                }
                st.deferred.take()
            };
            // Dropping may run any code, including more deferred deletes: loop until empty.
            objects.clear();
            self.state.borrow_mut().deferred.restore(objects);
        }
        let mut st = self.state.borrow_mut();
        let State {
            files,
            timers,
            freed_files,
            freed_timers,
            ..
        } = &mut *st;
        for key in freed_files.drain(..) {
            files.remove(key);
        }
        for key in freed_timers.drain(..) {
            timers.remove(key);
        }
    }

    // === FileEvent operations ===

    pub(crate) fn file_set_enabled(&self, key: usize, events: FileReadyType) {
        let mut st = self.state.borrow_mut();
        let State {
            poll,
            level,
            files,
            enabled_files,
            ..
        } = &mut *st;
        let Some(slot) = files.get_mut(key) else {
            return;
        };
        if slot.dead {
            return;
        }
        let was_registered = slot.registered;
        let result = update_registration(poll, level, key, slot, events);
        *enabled_files = *enabled_files + slot.registered as usize - was_registered as usize;
        slot.enabled = events;
        if let Err(e) = result {
            log::error!(
                "reactor[{}]: updating fd {} to {events} failed: {e}",
                self.name,
                slot.fd
            );
        }
    }

    pub(crate) fn file_pending(&self, key: usize) -> FileReadyType {
        let st = self.state.borrow();
        match st.files.get(key) {
            Some(slot) if !slot.dead => (slot.ready & slot.enabled) | slot.injected,
            _ => FileReadyType::NONE,
        }
    }

    pub(crate) fn file_activate(&self, key: usize, events: FileReadyType) {
        let mut st = self.state.borrow_mut();
        let State {
            files, next_active, ..
        } = &mut *st;
        let Some(slot) = files.get_mut(key) else {
            return;
        };
        if slot.dead || events.is_empty() {
            return;
        }
        slot.injected |= events;
        if !slot.queued_next {
            slot.queued_next = true;
            next_active.push(key);
        }
    }

    pub(crate) fn file_drop(&self, key: usize) {
        let cb = {
            let mut st = self.state.borrow_mut();
            let State {
                poll,
                level,
                files,
                freed_files,
                enabled_files,
                ..
            } = &mut *st;
            let Some(slot) = files.get_mut(key) else {
                return;
            };
            if slot.registered {
                *enabled_files -= 1;
                // The owner may already have closed the fd (the kernel then dropped the
                // registration itself): an error here is expected and harmless.
                let _ = update_registration(poll, level, key, slot, FileReadyType::NONE);
            }
            slot.registered = false;
            slot.dead = true;
            self.trigger_gauge(slot.trigger).fetch_sub(1, Relaxed);
            let cb = slot.cb.clear();
            // Keep the (dead) slot while a list of this iteration, or the activation list of
            // the next, may still name it; step 6 frees it.
            if self.in_iteration.get() || slot.queued_next {
                freed_files.push(key);
            } else {
                files.remove(key);
            }
            cb
        };
        drop(cb); // user code may run in the closure's drop: no borrow held
    }

    // === Timer operations ===

    pub(crate) fn timer_enable(&self, key: usize, delay: Duration) {
        let mut st = self.state.borrow_mut();
        let State { timers, wheel, .. } = &mut *st;
        let Some(slot) = timers.get_mut(key) else {
            return;
        };
        if slot.dead {
            return;
        }
        if let TimerState::Armed(wk) = slot.state {
            wheel.cancel(wk);
        }
        // From the loop's cached time while callbacks run (see `Dispatcher::now`).
        let now = if self.in_iteration.get() {
            self.now.get()
        } else {
            Instant::now()
        };
        slot.state = TimerState::Armed(wheel.arm(now, delay, key));
        bump(&self.stats.timers_enabled_total, 1);
        self.stats.timers_armed.store(wheel.len() as u64, Relaxed);
    }

    pub(crate) fn timer_disable(&self, key: usize) {
        let mut st = self.state.borrow_mut();
        let State { timers, wheel, .. } = &mut *st;
        let Some(slot) = timers.get_mut(key) else {
            return;
        };
        if let TimerState::Armed(wk) = slot.state {
            wheel.cancel(wk);
            self.stats.timers_armed.store(wheel.len() as u64, Relaxed);
        }
        slot.state = TimerState::Disarmed;
    }

    pub(crate) fn timer_enabled(&self, key: usize) -> bool {
        let st = self.state.borrow();
        st.timers
            .get(key)
            .is_some_and(|s| !s.dead && s.state != TimerState::Disarmed)
    }

    pub(crate) fn timer_drop(&self, key: usize) {
        self.timer_disable(key);
        let cb = {
            let mut st = self.state.borrow_mut();
            let Some(slot) = st.timers.get_mut(key) else {
                return;
            };
            slot.dead = true;
            let cb = slot.cb.clear();
            if self.in_iteration.get() {
                st.freed_timers.push(key);
            } else {
                st.timers.remove(key);
            }
            cb
        };
        drop(cb);
    }
}

/// Makes the kernel report `events` for `slot.fd`: edge-triggered fds in mio's poll,
/// level-triggered ones in the level set; registers, updates (which also makes the kernel
/// re-evaluate readiness) or unregisters as needed. `slot.registered` follows.
fn update_registration(
    poll: &Poll,
    level: &LevelSet,
    key: usize,
    slot: &mut FileSlot,
    events: FileReadyType,
) -> io::Result<()> {
    let fd = slot.fd;
    let registry = poll.registry();
    let result = match (events.to_interest(), slot.registered, slot.trigger) {
        (Some(_), false, FileTriggerType::Level) => level.add(fd, key, events),
        (Some(_), true, FileTriggerType::Level) => level.modify(fd, key, events),
        (None, true, FileTriggerType::Level) => level.delete(fd),
        (Some(interest), false, FileTriggerType::Edge) => {
            registry.register(&mut SourceFd(&fd), Token(key), interest)
        }
        (Some(interest), true, FileTriggerType::Edge) => {
            registry.reregister(&mut SourceFd(&fd), Token(key), interest)
        }
        (None, true, FileTriggerType::Edge) => registry.deregister(&mut SourceFd(&fd)),
        (None, false, _) => Ok(()),
    };
    // An unregistration counts even if it failed (the fd was closed: nothing is left in the
    // kernel); a registration only if it succeeded.
    slot.registered = match result {
        Ok(()) => events.to_interest().is_some(),
        Err(_) => slot.registered && events.to_interest().is_some(),
    };
    result
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Posters see `false` from now on; queued callbacks are dropped unrun.
        drop(self.post.close());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every timer is one slot for its whole life (an idle keep-alive connection owns one or
    /// two): a 4-byte wheel key and a token callback keep it at 40 bytes.
    #[test]
    fn slots_stay_small() {
        assert!(std::mem::size_of::<TimerSlot>() <= 40);
        assert!(std::mem::size_of::<FileSlot>() <= 40);
    }
}
