//! A shard: one thread's private slots for every counter and gauge (the "thread-local store" half
//! of Envoy's `ThreadLocalStoreImpl`, made explicit).
//!
//! Each stat of kind counter or gauge owns one slot index, the same in every shard. A shard keeps
//! its slots in fixed-size, cache-line-aligned segments allocated on first use and never moved, so
//! a handle can hold its segment directly and an increment is one relaxed `fetch_add` on memory
//! that no other worker writes. Reading a stat sums its slot across all shards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::histogram::HistogramShard;

/// Slots per segment: 512 × 8 bytes = one 4 KiB page.
pub(crate) const SEGMENT_SLOTS: usize = 512;
/// Segments per shard: room for 512 × 1024 = 524,288 counters and gauges.
pub(crate) const MAX_SEGMENTS: usize = 1024;

/// A block of slots; aligned so that two shards' segments never share a cache line (nor the
/// adjacent line the prefetcher pairs with it).
#[repr(align(128))]
pub(crate) struct Segment {
    slots: [AtomicU64; SEGMENT_SLOTS],
}

impl Segment {
    fn new() -> Arc<Segment> {
        Arc::new(Segment {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    #[inline]
    pub(crate) fn slot(&self, offset: usize) -> &AtomicU64 {
        &self.slots[offset]
    }
}

/// One thread's slots, plus its part of each histogram it records into.
pub(crate) struct Shard {
    segments: Box<[OnceLock<Arc<Segment>>]>,
    /// Histogram index → this shard's bins; touched only when a handle is created.
    histograms: Mutex<HashMap<usize, Arc<HistogramShard>>>,
}

impl Shard {
    pub(crate) fn new() -> Shard {
        Shard {
            segments: (0..MAX_SEGMENTS).map(|_| OnceLock::new()).collect(),
            histograms: Mutex::new(HashMap::new()),
        }
    }

    /// The segment holding `slot`, allocated if this shard has not used it yet.
    pub(crate) fn segment_for(&self, slot: usize) -> Arc<Segment> {
        self.segments[slot / SEGMENT_SLOTS]
            .get_or_init(Segment::new)
            .clone()
    }

    /// The segment holding `slot` if this shard has allocated it.
    pub(crate) fn segment_if_allocated(&self, slot: usize) -> Option<&Arc<Segment>> {
        self.segments[slot / SEGMENT_SLOTS].get()
    }

    /// The current value of `slot` in this shard (0 if never allocated).
    pub(crate) fn load(&self, slot: usize) -> u64 {
        match self.segments[slot / SEGMENT_SLOTS].get() {
            Some(seg) => seg.slot(slot % SEGMENT_SLOTS).load(Ordering::Relaxed),
            None => 0,
        }
    }

    /// Overwrites `slot` in this shard if it exists; returns the value it held.
    pub(crate) fn swap(&self, slot: usize, value: u64) -> u64 {
        match self.segments[slot / SEGMENT_SLOTS].get() {
            Some(seg) => seg
                .slot(slot % SEGMENT_SLOTS)
                .swap(value, Ordering::Relaxed),
            None => 0,
        }
    }

    /// This shard's bins for histogram `index`, created on first request.
    pub(crate) fn histogram(
        &self,
        index: usize,
        make: impl FnOnce() -> Arc<HistogramShard>,
    ) -> (Arc<HistogramShard>, bool) {
        let mut map = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get(&index) {
            return (h.clone(), false);
        }
        let h = make();
        map.insert(index, h.clone());
        (h, true)
    }
}
