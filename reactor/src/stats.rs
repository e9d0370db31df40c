//! Per-dispatcher introspection: what the loop did, readable from any thread.
//!
//! Owns [`DispatcherStats`] (counters, gauges and two [`Histogram`]s) and its plain-number
//! [`DispatcherStatsSnapshot`]. The dispatcher's own thread is the only writer of every field
//! except `post_queue_depth` (posters add, the dispatcher subtracts); it writes with relaxed
//! loads and stores rather than read-modify-write instructions, which is correct with a single
//! writer and keeps the hot path free of locked instructions. Readers (the admin thread's
//! `/reactor` endpoint) take a [`DispatcherStats::snapshot`]: each field is individually exact,
//! the set is not an atomic cut, which is what a monitoring page needs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Number of histogram buckets. Bucket 0 counts samples under 1 µs; bucket `i` (1..=22) counts
/// samples in `[2^(i-1), 2^i)` µs; the last bucket counts everything from 2^22 µs (~4.2 s) up.
pub const HISTOGRAM_BUCKETS: usize = 24;

/// A fixed log2 histogram of durations in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
}

impl Histogram {
    /// The bucket a duration falls in.
    pub fn bucket_index(d: Duration) -> usize {
        let us = d.as_micros();
        if us == 0 {
            return 0;
        }
        // us >= 1: bits = position of the highest set bit + 1, so 1 -> 1, 2..=3 -> 2, ...
        let bits = (u128::BITS - us.leading_zeros()) as usize;
        bits.min(HISTOGRAM_BUCKETS - 1)
    }

    /// The inclusive lower bound of bucket `i`, in microseconds.
    pub fn bucket_lower_bound_us(i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            1u64 << (i - 1)
        }
    }

    /// Records one sample. Single writer only (the owning dispatcher's thread).
    pub(crate) fn record(&self, d: Duration) {
        bump(&self.buckets[Self::bucket_index(d)], 1);
    }

    /// The current counts, bucket by bucket.
    pub fn counts(&self) -> [u64; HISTOGRAM_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }
}

/// Adds `n` to a counter that only the calling thread writes (no locked instruction needed).
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Per-dispatcher counters (`*_total`, monotonic) and gauges (current values).
#[derive(Debug, Default)]
pub struct DispatcherStats {
    /// Loop iterations run (one poll each).
    pub loop_iterations_total: AtomicU64,
    /// File event callbacks run.
    pub events_dispatched_total: AtomicU64,
    /// Timer callbacks run.
    pub timers_fired_total: AtomicU64,
    /// Posted callbacks run.
    pub posts_run_total: AtomicU64,
    /// `Timer::enable` calls.
    pub timers_enabled_total: AtomicU64,
    /// Live level-triggered file events.
    pub file_events_level: AtomicU64,
    /// Live edge-triggered file events.
    pub file_events_edge: AtomicU64,
    /// Currently armed timers.
    pub timers_armed: AtomicU64,
    /// Posted callbacks queued and not yet run (written by posters and the dispatcher).
    pub post_queue_depth: AtomicU64,
    /// Time spent inside `poll` per iteration.
    pub poll_wait_us: Histogram,
    /// Time spent running callbacks (timers, file events, posts, deferred deletes) per iteration
    /// (Envoy's `loop_duration_us`).
    pub callback_us: Histogram,
    /// How much longer `poll` took than the timeout it was given, recorded when positive and the
    /// timeout was finite (Envoy's `poll_delay_us`: a loaded machine or a starved thread).
    pub poll_delay_us: Histogram,
}

/// A plain-number copy of [`DispatcherStats`], for rendering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStatsSnapshot {
    pub loop_iterations_total: u64,
    pub events_dispatched_total: u64,
    pub timers_fired_total: u64,
    pub posts_run_total: u64,
    pub timers_enabled_total: u64,
    pub file_events_level: u64,
    pub file_events_edge: u64,
    pub timers_armed: u64,
    pub post_queue_depth: u64,
    /// Bucket counts; see [`HISTOGRAM_BUCKETS`] for the bounds.
    pub poll_wait_us: [u64; HISTOGRAM_BUCKETS],
    pub callback_us: [u64; HISTOGRAM_BUCKETS],
    pub poll_delay_us: [u64; HISTOGRAM_BUCKETS],
}

impl DispatcherStats {
    /// Reads every field once.
    pub fn snapshot(&self) -> DispatcherStatsSnapshot {
        DispatcherStatsSnapshot {
            loop_iterations_total: self.loop_iterations_total.load(Relaxed),
            events_dispatched_total: self.events_dispatched_total.load(Relaxed),
            timers_fired_total: self.timers_fired_total.load(Relaxed),
            posts_run_total: self.posts_run_total.load(Relaxed),
            timers_enabled_total: self.timers_enabled_total.load(Relaxed),
            file_events_level: self.file_events_level.load(Relaxed),
            file_events_edge: self.file_events_edge.load(Relaxed),
            timers_armed: self.timers_armed.load(Relaxed),
            post_queue_depth: self.post_queue_depth.load(Relaxed),
            poll_wait_us: self.poll_wait_us.counts(),
            callback_us: self.callback_us.counts(),
            poll_delay_us: self.poll_delay_us.counts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_microseconds() {
        assert_eq!(Histogram::bucket_index(Duration::from_nanos(999)), 0);
        assert_eq!(Histogram::bucket_index(Duration::from_micros(1)), 1);
        assert_eq!(Histogram::bucket_index(Duration::from_micros(2)), 2);
        assert_eq!(Histogram::bucket_index(Duration::from_micros(3)), 2);
        assert_eq!(Histogram::bucket_index(Duration::from_micros(4)), 3);
        assert_eq!(Histogram::bucket_index(Duration::from_secs(3600)), 23);
        for i in 1..HISTOGRAM_BUCKETS {
            let lb = Histogram::bucket_lower_bound_us(i);
            assert_eq!(Histogram::bucket_index(Duration::from_micros(lb)), i);
        }
    }

    #[test]
    fn snapshot_reads_what_was_recorded() {
        let s = DispatcherStats::default();
        bump(&s.loop_iterations_total, 3);
        s.poll_wait_us.record(Duration::from_micros(5));
        let snap = s.snapshot();
        assert_eq!(snap.loop_iterations_total, 3);
        assert_eq!(snap.poll_wait_us[3], 1);
        assert_eq!(snap.poll_wait_us.iter().sum::<u64>(), 1);
    }
}
