//! The stats store (Envoy's `ThreadLocalStoreImpl` and `Scope`): the registry of every stat by
//! name, and the shards the workers write into.
//!
//! # Design: one shard per worker, handles bound to a shard
//! The server creates one `Store` on the main thread and gives each worker `store.for_worker()`,
//! a view of the same registry that writes into a fresh shard. Handles (`Counter`, `Gauge`,
//! `Histogram`) are created from a worker's store at setup time (per listener, per cluster, per
//! worker) and point straight at that shard's slot, so an increment is one relaxed atomic add on
//! a cache line no other worker writes: no lock, no contended line. A read (the admin endpoint,
//! `Counter::value`) takes the shard-list lock and sums the slot over every shard. Shards live as
//! long as the store, so what a worker counted survives it.
//!
//! Envoy gets the same property from thread-local caches and per-thread histograms merged on the
//! main thread; we make the shard an explicit value instead of a thread-local, which keeps tests
//! (and a reader) free of hidden per-thread state.
//!
//! Names are looked up in a `HashMap` under a mutex: only at setup time, never per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::counter::Counter;
use super::gauge::{Gauge, ImportMode};
use super::histogram::{
    Histogram, HistogramShard, HistogramStat, HistogramStatistics, MergeState, Unit,
};
use super::shard::{Segment, Shard, MAX_SEGMENTS, SEGMENT_SLOTS};

/// The kinds of stat; a counter and a gauge may share a name, as in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
}

/// What all shards share about one counter or gauge.
pub(crate) struct StatMeta {
    pub(crate) name: String,
    pub(crate) slot: usize,
    pub(crate) import_mode: Option<ImportMode>,
    used: AtomicBool,
}

impl StatMeta {
    /// Sets the `used` flag. Reads first so that, once set, the line is only read and stays
    /// shared in every core's cache.
    #[inline]
    pub(crate) fn mark_used(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Registry {
    stats: HashMap<(Kind, String), Arc<StatMeta>>,
    histograms: HashMap<String, usize>,
    histogram_list: Vec<Arc<HistogramStat>>,
    next_slot: usize,
    /// Set once the slot space is exhausted (logged once).
    overflowed: bool,
}

/// State shared by every `Store` view and every handle.
pub(crate) struct StoreInner {
    registry: Mutex<Registry>,
    shards: Mutex<Vec<Arc<Shard>>>,
}

/// The last slot is a sink shared by every stat created after the slot space ran out (half a
/// million counters and gauges), so that an absurd config degrades the stats, not the proxy.
const OVERFLOW_SLOT: usize = MAX_SEGMENTS * SEGMENT_SLOTS - 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps inconsistent (every update is a
    // single insert), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StoreInner {
    /// Sum of `slot` over every shard (wrapping: gauge deltas may be "negative").
    pub(crate) fn sum(&self, slot: usize) -> u64 {
        lock(&self.shards)
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.load(slot)))
    }

    /// Makes the total of `slot` equal `value`, keeping it in `own` (the caller's segment).
    pub(crate) fn set_slot(&self, slot: usize, own: &Arc<Segment>, offset: usize, value: u64) {
        let shards = lock(&self.shards);
        for shard in shards.iter() {
            let seg = shard.segment_if_allocated(slot);
            if !seg.is_some_and(|s| Arc::ptr_eq(s, own)) {
                shard.swap(slot, 0);
            }
        }
        own.slot(offset).store(value, Ordering::Relaxed);
    }
}

/// One value read from the store by the admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatValue {
    /// Full name, e.g. `cluster.app.upstream_rq_total`.
    pub name: String,
    /// Summed over every shard.
    pub value: u64,
    /// Ever incremented or set.
    pub used: bool,
}

/// One histogram read from the store by the admin endpoint.
#[derive(Debug, Clone)]
pub struct HistogramValue {
    /// Full name, e.g. `cluster.app.upstream_rq_time`.
    pub name: String,
    /// Its unit.
    pub unit: Unit,
    /// Ever recorded into.
    pub used: bool,
    /// Every shard merged, everything ever recorded.
    pub cumulative: HistogramStatistics,
    /// What was recorded between the last two `Store::merge_histograms` (Envoy's interval
    /// statistics; empty, printed `nan`, before the second merge or when nothing was recorded).
    pub interval: HistogramStatistics,
}

/// Every stat read at one moment (each value is read separately; there is no global atomicity).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Counters, sorted by name.
    pub counters: Vec<StatValue>,
    /// Gauges, sorted by name.
    pub gauges: Vec<StatValue>,
    /// Histograms, sorted by name.
    pub histograms: Vec<HistogramValue>,
}

/// The stats store: a cheap-clone view (`Send + Sync`) of the shared registry, bound to one
/// shard and one name prefix. See the module docs for how workers use it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
    shard: Arc<Shard>,
    prefix: Arc<str>,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Store {
    /// A new, empty store with one shard (the main thread's). Create it once per server.
    pub fn new() -> Store {
        let shard = Arc::new(Shard::new());
        let inner = StoreInner {
            registry: Mutex::new(Registry::default()),
            shards: Mutex::new(vec![shard.clone()]),
        };
        Store {
            inner: Arc::new(inner),
            shard,
            prefix: Arc::from(""),
        }
    }

    /// A view of the same stats that writes into a new shard of its own: give one to each worker
    /// thread, and create that worker's handles from it.
    pub fn for_worker(&self) -> Store {
        let shard = Arc::new(Shard::new());
        lock(&self.inner.shards).push(shard.clone());
        Store {
            inner: self.inner.clone(),
            shard,
            prefix: self.prefix.clone(),
        }
    }

    /// A view on the same shard whose stat names are prefixed with `prefix` and a dot (Envoy's
    /// `createScope`): `store.scope("cluster.app").counter("upstream_rq_total")` is
    /// `cluster.app.upstream_rq_total`. A trailing dot on `prefix` is accepted.
    pub fn scope(&self, prefix: &str) -> Store {
        let prefix = prefix.trim_end_matches('.');
        let full = if prefix.is_empty() {
            self.prefix.to_string()
        } else {
            format!("{}{}.", self.prefix, prefix)
        };
        Store {
            inner: self.inner.clone(),
            shard: self.shard.clone(),
            prefix: Arc::from(full),
        }
    }

    /// This view's name prefix (empty, or ending in a dot).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_name(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    fn meta(&self, kind: Kind, name: &str, import_mode: Option<ImportMode>) -> Arc<StatMeta> {
        let name = self.full_name(name);
        let mut reg = lock(&self.inner.registry);
        if let Some(meta) = reg.stats.get(&(kind, name.clone())) {
            return meta.clone();
        }
        let slot = if reg.next_slot < OVERFLOW_SLOT {
            reg.next_slot += 1;
            reg.next_slot - 1
        } else {
            if !reg.overflowed {
                log::error!("stats: more than {OVERFLOW_SLOT} counters and gauges; '{name}' and later stats share one slot");
                reg.overflowed = true;
            }
            OVERFLOW_SLOT
        };
        let meta = Arc::new(StatMeta {
            name: name.clone(),
            slot,
            import_mode,
            used: AtomicBool::new(false),
        });
        reg.stats.insert((kind, name), meta.clone());
        meta
    }

    /// The counter named `prefix + name`, created at zero if new; same name, same counter.
    pub fn counter(&self, name: &str) -> Counter {
        let meta = self.meta(Kind::Counter, name, None);
        let segment = self.shard.segment_for(meta.slot);
        Counter::new(segment, meta.slot % SEGMENT_SLOTS, meta, self.inner.clone())
    }

    /// The gauge named `prefix + name`, created at zero if new; same name, same gauge (the import
    /// mode of its first creation is kept).
    pub fn gauge(&self, name: &str, import_mode: ImportMode) -> Gauge {
        let meta = self.meta(Kind::Gauge, name, Some(import_mode));
        let segment = self.shard.segment_for(meta.slot);
        Gauge::new(segment, meta.slot % SEGMENT_SLOTS, meta, self.inner.clone())
    }

    /// The histogram named `prefix + name`; same name, same histogram (the unit of its first
    /// creation is kept).
    pub fn histogram(&self, name: &str, unit: Unit) -> Histogram {
        let name = self.full_name(name);
        let (index, stat) = {
            let mut reg = lock(&self.inner.registry);
            match reg.histograms.get(&name) {
                Some(&i) => (i, reg.histogram_list[i].clone()),
                None => {
                    let stat = Arc::new(HistogramStat {
                        name: name.clone(),
                        unit,
                        used: AtomicBool::new(false),
                        shards: Mutex::new(Vec::new()),
                        merged: Mutex::new(MergeState::default()),
                    });
                    let i = reg.histogram_list.len();
                    reg.histogram_list.push(stat.clone());
                    reg.histograms.insert(name, i);
                    (i, stat)
                }
            }
        };
        let (shard, created) = self
            .shard
            .histogram(index, || Arc::new(HistogramShard::new()));
        if created {
            lock(&stat.shards).push(shard.clone());
        }
        Histogram::new(shard, stat)
    }

    /// Sets every counter to zero (admin `POST /reset_counters`); `used` flags are kept, as in
    /// Envoy. Increments racing with the reset are either before it or counted after it.
    pub fn reset_counters(&self) {
        let slots: Vec<usize> = {
            let reg = lock(&self.inner.registry);
            reg.stats
                .iter()
                .filter(|((k, _), _)| *k == Kind::Counter)
                .map(|(_, m)| m.slot)
                .collect()
        };
        let shards = lock(&self.inner.shards);
        for shard in shards.iter() {
            for &slot in &slots {
                shard.swap(slot, 0);
            }
        }
    }

    /// Closes the current histogram interval: the interval statistics shown by the admin
    /// endpoint become what was recorded since the previous call. The server calls it every
    /// stats flush interval (Envoy's `stats_flush_interval`, 5 s by default).
    pub fn merge_histograms(&self) {
        let stats: Vec<Arc<HistogramStat>> = lock(&self.inner.registry).histogram_list.clone();
        for h in stats {
            h.merge();
        }
    }

    /// Everything in the store, merged and sorted: what the admin endpoint renders.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counters: self.counters(),
            gauges: self.gauges(),
            histograms: self.histograms(),
        }
    }

    fn values(&self, kind: Kind) -> Vec<StatValue> {
        let metas: Vec<Arc<StatMeta>> = {
            let reg = lock(&self.inner.registry);
            reg.stats
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, m)| m.clone())
                .collect()
        };
        let mut out: Vec<StatValue> = metas
            .iter()
            .map(|m| StatValue {
                name: m.name.clone(),
                value: self.inner.sum(m.slot),
                used: m.used(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every counter, merged over all shards, sorted by name.
    pub fn counters(&self) -> Vec<StatValue> {
        self.values(Kind::Counter)
    }

    /// Every gauge, merged over all shards, sorted by name.
    pub fn gauges(&self) -> Vec<StatValue> {
        self.values(Kind::Gauge)
    }

    /// Every histogram, merged over all shards, sorted by name.
    pub fn histograms(&self) -> Vec<HistogramValue> {
        let stats: Vec<Arc<HistogramStat>> = lock(&self.inner.registry).histogram_list.clone();
        let mut out: Vec<HistogramValue> = stats
            .iter()
            .map(|h| HistogramValue {
                name: h.name.clone(),
                unit: h.unit,
                used: h.used.load(Ordering::Relaxed),
                cumulative: h.statistics(),
                interval: h.interval(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_store_cross_threads() {
        assert_send_sync::<Store>();
        assert_send_sync::<Counter>();
        assert_send_sync::<Gauge>();
        assert_send_sync::<Histogram>();
    }

    #[test]
    fn same_name_same_stat() {
        let store = Store::new();
        let a = store.counter("server.total_connections");
        let b = store.scope("server").counter("total_connections");
        a.inc();
        b.add(2);
        assert_eq!(a.value(), 3);
        assert_eq!(b.name(), "server.total_connections");
        // A gauge of the same name is a different stat.
        let g = store.gauge("server.total_connections", ImportMode::Accumulate);
        assert_eq!(g.value(), 0);
        assert!(!g.used());
    }

    #[test]
    fn two_workers_incrementing_merge_exactly() {
        let store = Store::new();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let worker = store.for_worker();
                std::thread::spawn(move || {
                    let c = worker.counter("http.ingress.downstream_rq_total");
                    let g =
                        worker.gauge("http.ingress.downstream_rq_active", ImportMode::Accumulate);
                    let h = worker.histogram("http.ingress.downstream_rq_time", Unit::Milliseconds);
                    for i in 0..100_000u64 {
                        c.inc();
                        g.inc();
                        h.record(i % 100);
                    }
                    for _ in 0..40_000 {
                        g.dec();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("worker thread");
        }
        let c = store.counter("http.ingress.downstream_rq_total");
        assert_eq!(c.value(), 200_000);
        let g = store.gauge("http.ingress.downstream_rq_active", ImportMode::Accumulate);
        assert_eq!(g.value(), 120_000);
        let hs = store.histograms();
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].cumulative.sample_count(), 200_000);
        assert_eq!(
            hs[0].cumulative.sample_sum(),
            2 * 1000 * (0..100).sum::<u64>()
        );
    }

    #[test]
    fn gauge_decremented_on_another_worker_sums_right() {
        let store = Store::new();
        let up = store
            .for_worker()
            .gauge("cx_active", ImportMode::Accumulate);
        let down = store
            .for_worker()
            .gauge("cx_active", ImportMode::Accumulate);
        up.add(5);
        down.sub(2);
        assert_eq!(up.value(), 3);
        down.set(10);
        assert_eq!(up.value(), 10);
        up.inc();
        assert_eq!(down.value(), 11);
    }

    #[test]
    fn reset_counters_zeroes_counters_keeps_used_and_gauges() {
        let store = Store::new();
        let c = store.for_worker().counter("a");
        let unused = store.counter("b");
        let g = store.gauge("g", ImportMode::NeverImport);
        c.add(7);
        g.set(4);
        store.reset_counters();
        assert_eq!(c.value(), 0);
        assert!(c.used());
        assert!(!unused.used());
        assert_eq!(g.value(), 4);
        c.inc();
        assert_eq!(
            store.counters(),
            vec![
                StatValue {
                    name: "a".into(),
                    value: 1,
                    used: true
                },
                StatValue {
                    name: "b".into(),
                    value: 0,
                    used: false
                },
            ]
        );
    }

    #[test]
    fn merge_closes_an_interval() {
        let store = Store::new();
        let h = store.for_worker().histogram("rq_time", Unit::Milliseconds);
        h.record(3);
        store.merge_histograms();
        h.record(40);
        h.record(41);
        store.merge_histograms();
        h.record(500);
        let v = &store.snapshot().histograms[0];
        assert_eq!(v.cumulative.sample_count(), 4);
        assert_eq!(v.interval.sample_count(), 2);
        assert_eq!(v.interval.sample_sum(), 81);
    }

    #[test]
    fn many_stats_span_segments() {
        let store = Store::new();
        let worker = store.for_worker();
        let counters: Vec<Counter> = (0..2000)
            .map(|i| worker.counter(&format!("c{i}")))
            .collect();
        for (i, c) in counters.iter().enumerate() {
            c.add(i as u64);
        }
        assert_eq!(store.counter("c1999").value(), 1999);
        assert_eq!(
            store.counters().iter().map(|s| s.value).sum::<u64>(),
            (0..2000).sum::<u64>()
        );
    }
}
