//! The cross-thread post queue (Envoy's `Dispatcher::post`; libevent has no equivalent and uses
//! `event_active` under a lock).
//!
//! Owns [`PostQueue`], the one piece of a dispatcher that other threads touch, and [`Poster`],
//! the `Send + Sync` handle they hold. Posters push under a mutex and wake the loop through a
//! mio `Waker` (an eventfd registered on the dispatcher's poll) only when the queue goes from
//! empty to non-empty: one wake-up per batch, however many posts. The dispatcher (step 5 of its
//! loop) swaps the whole queue out under the lock and runs the callbacks after releasing it, so
//! a callback may post again (it runs on the next iteration) and a slow callback never blocks a
//! poster. FIFO holds per posting thread (the mutex orders all pushes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::stats::DispatcherStats;

/// A callback posted from any thread.
pub type PostCallback = Box<dyn FnOnce() + Send>;

pub(crate) struct PostQueue {
    queue: Mutex<Queue>,
    waker: mio::Waker,
    /// Set by [`Poster::exit`]; read by the loop at the end of each iteration.
    exit: AtomicBool,
    stats: Arc<DispatcherStats>,
}

struct Queue {
    callbacks: VecDeque<PostCallback>,
    /// The dispatcher is gone: posts are refused.
    closed: bool,
}

impl PostQueue {
    pub(crate) fn new(waker: mio::Waker, stats: Arc<DispatcherStats>) -> PostQueue {
        PostQueue {
            queue: Mutex::new(Queue {
                callbacks: VecDeque::new(),
                closed: false,
            }),
            waker,
            exit: AtomicBool::new(false),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock means a thread panicked while pushing or swapping; the queue itself is
        // still consistent (both operations are single calls on the VecDeque).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Swaps the pending callbacks into `batch` (which must be empty). Dispatcher thread only.
    pub(crate) fn take_into(&self, batch: &mut VecDeque<PostCallback>) {
        debug_assert!(batch.is_empty());
        let mut q = self.lock();
        std::mem::swap(&mut q.callbacks, batch);
    }

    /// Whether callbacks are waiting (used to make the poll non-blocking).
    pub(crate) fn has_pending(&self) -> bool {
        !self.lock().callbacks.is_empty()
    }

    /// Refuses further posts and returns what was still queued (dropped by the caller, outside
    /// the lock, since dropping a closure can run arbitrary code).
    pub(crate) fn close(&self) -> VecDeque<PostCallback> {
        let mut q = self.lock();
        q.closed = true;
        std::mem::take(&mut q.callbacks)
    }

    pub(crate) fn exit_requested(&self) -> bool {
        self.exit.load(Ordering::Acquire)
    }

    pub(crate) fn clear_exit(&self) {
        self.exit.store(false, Ordering::Release);
    }

    pub(crate) fn stats(&self) -> &DispatcherStats {
        &self.stats
    }
}

/// Posts callbacks to a dispatcher from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Poster {
    pub(crate) queue: Arc<PostQueue>,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster").finish_non_exhaustive()
    }
}

impl Poster {
    /// Queues `cb` to run on the dispatcher's thread, in FIFO order; wakes the loop only when the
    /// queue goes from empty to non-empty. Returns false if the dispatcher is gone.
    pub fn post(&self, cb: PostCallback) -> bool {
        let was_empty = {
            let mut q = self.queue.lock();
            if q.closed {
                return false;
            }
            q.callbacks.push_back(cb);
            // Under the lock, so the dispatcher's subtraction never comes before this addition.
            self.queue
                .stats
                .post_queue_depth
                .fetch_add(1, Ordering::Relaxed);
            q.callbacks.len() == 1
        };
        if was_empty {
            self.wake();
        }
        true
    }

    /// Makes the dispatcher's `run` return after its current iteration, from any thread (the
    /// cross-thread form of `Dispatcher::exit`, used to stop workers).
    pub fn exit(&self) {
        self.queue.exit.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Err(e) = self.queue.waker.wake() {
            // Only fails if the eventfd is gone or broken; the loop then finds the posts when it
            // wakes for another reason.
            log::error!("reactor: waking the dispatcher failed: {e}");
        }
    }
}
