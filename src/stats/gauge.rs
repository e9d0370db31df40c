//! Gauges: values that go up and down (Envoy's `Gauge`), e.g. `cluster.<name>.upstream_cx_active`.
//!
//! A gauge's value is the wrapping sum of per-shard deltas, so `inc`/`dec`/`add`/`sub` on a worker
//! touch only that worker's slot. `set` is the exception: it zeroes the other shards' deltas and
//! stores the value in its own, so it is meant for gauges one thread owns (server.uptime,
//! server.memory_allocated), not for the per-request path.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::shard::Segment;
use super::store::{StatMeta, StoreInner};

/// Envoy's `Gauge::ImportMode`: how a gauge is carried over a hot restart. Nuncio has no hot
/// restart; the mode is kept so that code ported from Envoy reads the same and is recorded with
/// the gauge. Every gauge is shown by the admin endpoint whatever its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Summed with the parent's value on hot restart (most gauges: active connections).
    Accumulate,
    /// Never taken from the parent (server.live, server.state, server.uptime, ...).
    NeverImport,
}

/// A handle to a gauge, bound to one shard. Cheap to clone; obtain it at setup time.
#[derive(Clone)]
pub struct Gauge {
    segment: Arc<Segment>,
    offset: usize,
    meta: Arc<StatMeta>,
    store: Arc<StoreInner>,
}

impl Gauge {
    pub(crate) fn new(
        segment: Arc<Segment>,
        offset: usize,
        meta: Arc<StatMeta>,
        store: Arc<StoreInner>,
    ) -> Gauge {
        Gauge {
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

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.sub(1);
    }

    /// Adds `n` (one relaxed atomic add on this shard's slot).
    #[inline]
    pub fn add(&self, n: u64) {
        self.segment
            .slot(self.offset)
            .fetch_add(n, Ordering::Relaxed);
        self.meta.mark_used();
    }

    /// Subtracts `n`. Deltas wrap, so a shard that only decrements (a connection accepted on one
    /// worker and closed on another) still sums to the right total.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.segment
            .slot(self.offset)
            .fetch_sub(n, Ordering::Relaxed);
        self.meta.mark_used();
    }

    /// Sets the gauge to `value`: clears every other shard's delta and stores `value` in this
    /// one. Writes other shards' slots, so keep it off the per-request path.
    pub fn set(&self, value: u64) {
        self.store
            .set_slot(self.meta.slot, &self.segment, self.offset, value);
        self.meta.mark_used();
    }

    /// The gauge's value summed over all shards (takes the store's shard-list lock).
    pub fn value(&self) -> u64 {
        self.store.sum(self.meta.slot)
    }

    /// The gauge's full name.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// The import mode given when the gauge was first created.
    pub fn import_mode(&self) -> ImportMode {
        self.meta.import_mode.unwrap_or(ImportMode::Accumulate)
    }

    /// Whether the gauge was ever changed (for `usedonly`).
    pub fn used(&self) -> bool {
        self.meta.used()
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauge")
            .field("name", &self.meta.name)
            .finish()
    }
}
