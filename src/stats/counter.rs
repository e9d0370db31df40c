//! Counters: monotonically increasing values (Envoy's `Counter`), e.g.
//! `cluster.<name>.upstream_rq_total`. A `Counter` handle writes its own shard's slot; `value()`
//! sums the slot over every shard.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::shard::Segment;
use super::store::{StatMeta, StoreInner};

/// A handle to a counter, bound to one shard. Cheap to clone; obtain it at setup time from a
/// `Store` and keep it (never look a stat up by name per request).
#[derive(Clone)]
pub struct Counter {
    segment: Arc<Segment>,
    offset: usize,
    meta: Arc<StatMeta>,
    store: Arc<StoreInner>,
}

impl Counter {
    pub(crate) fn new(
        segment: Arc<Segment>,
        offset: usize,
        meta: Arc<StatMeta>,
        store: Arc<StoreInner>,
    ) -> Counter {
        Counter {
            segment,
            offset,
            meta,
            store,
        }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`. No lock; one relaxed atomic add on this shard's slot, which no other worker
    /// writes (an admin `reset_counters` is the only foreign writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.segment
            .slot(self.offset)
            .fetch_add(n, Ordering::Relaxed);
        self.meta.mark_used();
    }

    /// The counter's value summed over all shards (takes the store's shard-list lock: not for
    /// the hot path).
    pub fn value(&self) -> u64 {
        self.store.sum(self.meta.slot)
    }

    /// The counter's full name.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Whether the counter was ever incremented (Envoy's `used()`, for `usedonly`).
    pub fn used(&self) -> bool {
        self.meta.used()
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("name", &self.meta.name)
            .finish()
    }
}
