//! reactor: nuncio's event library, in the image of libevent.
//!
//! One [`Dispatcher`] per thread owns one `mio::Poll` (epoll). File descriptors, timers and
//! signals are registered on it with a callback; [`Dispatcher::run`] waits for readiness and
//! calls back, one ordered loop iteration at a time:
//!
//! ```text
//! loop {
//!     1. timeout = 0 if work is waiting, else time to the next timer, else forever
//!     2. epoll_wait(timeout); cache now()
//!     3. run expired timers (deadline order, FIFO on ties)
//!     4. run active file events (activated last iteration + reported by the kernel)
//!     5. run posted callbacks (swapped out of the cross-thread queue)
//!     6. drop deferred deletions; free slots of handles dropped this iteration
//! }
//! ```
//!
//! ```
//! use std::time::Duration;
//! use reactor::{Dispatcher, RunType};
//!
//! let dispatcher = Dispatcher::new("main_thread")?;
//! let d = dispatcher.clone();
//! let timer = dispatcher.create_timer(move || {
//!     println!("fired at {:?}", d.now());
//! });
//! timer.enable(Duration::from_millis(10));
//! dispatcher.run(RunType::Block)?; // returns once nothing is left registered
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Vocabulary (libevent's): an event is *pending* while registered and waiting, *active* once
//! ready with its callback queued for step 4; an object is *deferred* between
//! [`Dispatcher::deferred_delete`] and step 6.
//!
//! | libevent / Envoy                     | reactor                          | file            |
//! |--------------------------------------|----------------------------------|-----------------|
//! | `event_base` / `DispatcherImpl`      | [`Dispatcher`]                   | dispatcher.rs   |
//! | `event_base_loop` / `run(RunType)`   | [`Dispatcher::run`], [`RunType`] | dispatcher.rs   |
//! | `event` on an fd / `FileEventImpl`   | [`FileEvent`]                    | file_event.rs   |
//! | `EV_READ`/`EV_WRITE`/`EV_CLOSED`     | [`FileReadyType`]                | file_event.rs   |
//! | `EV_ET` / `FileTriggerType`          | [`FileTriggerType`]              | file_event.rs   |
//! | `event_active` / `activate()`        | [`FileEvent::activate`]          | file_event.rs   |
//! | `evtimer` (min-heap) / `TimerImpl`   | [`Timer`] on a [`TimerWheel`]    | timer.rs        |
//! | `Dispatcher::post`                   | [`Poster::post`]                 | post.rs         |
//! | `evsignal` / `SignalEventImpl`       | [`SignalEvent`]                  | signal.rs       |
//! | `Dispatcher::deferredDelete`         | [`Dispatcher::deferred_delete`]  | deferred.rs     |
//! | `evbuffer_read`                      | [`recv_into`]                    | read_buf.rs     |
//! | `event_assign` (fn pointer + arg)    | [`EventHandler`] + token         | handler.rs      |
//! | `approximateMonotonicTime`           | [`Dispatcher::now`]              | dispatcher.rs   |
//! | (Envoy's dispatcher stats)           | [`DispatcherStats`]              | stats.rs        |
//!
//! # Design decisions
//! - **Level triggering is provided by the reactor.** mio registers everything edge-triggered;
//!   see the "Level triggering" section below.
//! - **Callbacks are taken out of their slot while they run**, so they can call anything on the
//!   dispatcher, including dropping their own handle (see dispatcher.rs).
//! - **A shared handler and a token instead of a closure per event**, for owners of many
//!   events (a proxy worker's connections): an event then owns no heap block (handler.rs).
//! - **Deferred deletion** lets a connection close itself from its own callback: it is dropped
//!   in step 6, after every callback of the iteration, and slab slots freed during an iteration
//!   are only reused after it, so stale events of the batch never reach a newcomer.
//! - **Timers are a hashed wheel** with O(1) arm and cancel and 1 ms ticks (timer.rs), written
//!   sans-IO: time is passed in, tests use a simulated clock.
//! - **Posts wake the loop once per batch** (only on the empty to non-empty transition) and run
//!   outside the queue's lock.
//! - **Signals use a self-pipe**, not signalfd, so other threads need not block them.
//!
//! # Level triggering
//! A level-triggered callback that does not drain its fd must run again on the next iteration,
//! without new data arriving. mio registers every fd edge-triggered, so the reactor provides
//! level semantics itself: level-triggered fds go into a second epoll instance registered
//! *without* `EPOLLET` (the *level set*), whose own fd is registered in mio. Step 2 harvests the
//! set with a zero-timeout `epoll_wait` when mio reports it, or when the previous harvest found
//! events (an fd still ready is re-queued by the kernel without a new wake-up). Per event this
//! costs what libevent's level mode costs; per iteration one extra `epoll_wait` while level fds
//! are busy. Edge-triggered fds stay in mio and pay nothing.
//!
//! The first version re-armed each level fd after its callback (`EPOLL_CTL_MOD`, which makes
//! the kernel re-check readiness). Correct, but one syscall per callback: the `pingpong`
//! benchmark measured it 5% above libevent in CPU per event, against 5% below with the level
//! set (see the README for the figures).

mod deferred;
mod dispatcher;
mod file_event;
mod handler;
mod level_set;
mod post;
mod read_buf;
mod signal;
mod socket_io;
mod stats;
mod timer;

pub use dispatcher::{Dispatcher, RunType};
pub use file_event::{FileEvent, FileReadyType, FileTriggerType};
pub use handler::{EventHandler, HandlerId};
pub use nix::sys::signal::Signal;
pub use post::{PostCallback, Poster};
pub use read_buf::recv_into;
pub use signal::{SignalEvent, SUPPORTED_SIGNALS};
pub use socket_io::send;
pub use stats::{DispatcherStats, DispatcherStatsSnapshot, Histogram, HISTOGRAM_BUCKETS};
pub use timer::{Timer, TimerWheel, WheelKey, SLOTS, TICK};
