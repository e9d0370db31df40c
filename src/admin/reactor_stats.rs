//! The event loops seen from the main thread: `GET /reactor` (ours; Envoy has no equivalent)
//! and the `server.dispatcher.*` / `listener_manager.worker_<N>.dispatcher.*` histograms
//! (Envoy's `loop_duration_us` and `poll_delay_us`, which Envoy keeps when
//! `enable_dispatcher_stats` is set and nuncio always keeps).
//!
//! Each dispatcher (the main thread's and every worker's) publishes an `Arc<DispatcherStats>`
//! of single-writer atomics (see `reactor::stats`). The admin reads them with
//! `DispatcherStats::snapshot`: plain loads, no lock, no message to the worker, so a stuck or
//! busy worker neither delays the page nor is disturbed by it. The histograms are fed by
//! [`DispatcherStatsFeeder::feed`], run on the main thread at each stats flush and before
//! `/stats` renders: it adds the samples each reactor bucket gained since the last feed.
//!
//! Called by the admin server; calls `reactor` and `stats`.

use std::sync::Arc;

use reactor::{DispatcherStats, DispatcherStatsSnapshot};
use serde_json::{json, Map, Value};

use crate::stats::{Histogram, Store, Unit};

/// Bucket bounds of the reactor's histograms.
const BUCKETS: usize = reactor::HISTOGRAM_BUCKETS;

/// One dispatcher as the admin knows it.
pub struct DispatcherEntry {
    /// The thread's name: `main_thread`, `worker_0`, ...
    pub name: String,
    pub stats: Arc<DispatcherStats>,
    loop_duration_us: Histogram,
    poll_delay_us: Histogram,
    fed_callback: [u64; BUCKETS],
    fed_poll_delay: [u64; BUCKETS],
}

impl DispatcherEntry {
    /// `stat_prefix` is Envoy's: `server.` for the main thread, `listener_manager.worker_<N>.`
    /// for a worker.
    pub fn new(
        name: &str,
        stat_prefix: &str,
        stats: Arc<DispatcherStats>,
        store: &Store,
    ) -> DispatcherEntry {
        let scope = store.scope(&format!("{}dispatcher", stat_prefix));
        DispatcherEntry {
            name: name.to_string(),
            stats,
            loop_duration_us: scope.histogram("loop_duration_us", Unit::Microseconds),
            poll_delay_us: scope.histogram("poll_delay_us", Unit::Microseconds),
            fed_callback: [0; BUCKETS],
            fed_poll_delay: [0; BUCKETS],
        }
    }
}

/// A value standing for the samples of reactor bucket `i` (`[2^(i-1), 2^i)` µs): the middle of
/// the bucket, so quantiles land inside it.
fn representative_us(i: usize) -> u64 {
    let low = reactor::Histogram::bucket_lower_bound_us(i);
    low + low / 2
}

fn feed_one(histogram: &Histogram, counts: &[u64; BUCKETS], fed: &mut [u64; BUCKETS]) {
    for i in 0..BUCKETS {
        let new = counts[i].saturating_sub(fed[i]);
        histogram.record_n(representative_us(i), new);
        fed[i] = counts[i];
    }
}

/// Moves what each dispatcher recorded since the last call into the stats histograms.
pub struct DispatcherStatsFeeder;

impl DispatcherStatsFeeder {
    pub fn feed(entries: &mut [DispatcherEntry]) {
        for e in entries {
            let snap = e.stats.snapshot();
            feed_one(&e.loop_duration_us, &snap.callback_us, &mut e.fed_callback);
            feed_one(&e.poll_delay_us, &snap.poll_delay_us, &mut e.fed_poll_delay);
        }
    }
}

fn events_per_wakeup(s: &DispatcherStatsSnapshot) -> f64 {
    if s.loop_iterations_total == 0 {
        0.0
    } else {
        s.events_dispatched_total as f64 / s.loop_iterations_total as f64
    }
}

fn scalars(s: &DispatcherStatsSnapshot) -> [(&'static str, u64); 9] {
    [
        ("loop_iterations_total", s.loop_iterations_total),
        ("events_dispatched_total", s.events_dispatched_total),
        ("timers_fired_total", s.timers_fired_total),
        ("posts_run_total", s.posts_run_total),
        ("timers_enabled_total", s.timers_enabled_total),
        ("file_events_level", s.file_events_level),
        ("file_events_edge", s.file_events_edge),
        ("timers_armed", s.timers_armed),
        ("post_queue_depth", s.post_queue_depth),
    ]
}

fn histograms(s: &DispatcherStatsSnapshot) -> [(&'static str, &[u64; BUCKETS]); 3] {
    [
        ("poll_wait_us", &s.poll_wait_us),
        ("callback_us", &s.callback_us),
        ("poll_delay_us", &s.poll_delay_us),
    ]
}

/// A bucket's label: `[lo,hi)` in µs; the last is open-ended.
fn bucket_label(i: usize) -> String {
    let lo = reactor::Histogram::bucket_lower_bound_us(i);
    if i + 1 == BUCKETS {
        format!("[{lo},inf)")
    } else {
        format!(
            "[{lo},{})",
            reactor::Histogram::bucket_lower_bound_us(i + 1)
        )
    }
}

/// `/reactor` as text: one block per dispatcher, the non-empty histogram buckets on one line.
pub fn text(entries: &[(String, DispatcherStatsSnapshot)]) -> String {
    let mut out = String::new();
    for (name, s) in entries {
        out.push_str(&format!("{name}:\n"));
        for (k, v) in scalars(s) {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out.push_str(&format!(
            "  events_per_wakeup: {:.2}\n",
            events_per_wakeup(s)
        ));
        for (k, counts) in histograms(s) {
            let buckets: Vec<String> = (0..BUCKETS)
                .filter(|&i| counts[i] > 0)
                .map(|i| format!("{}:{}", bucket_label(i), counts[i]))
                .collect();
            out.push_str(&format!("  {k}: {}\n", buckets.join(" ")));
        }
    }
    out
}

/// `/reactor?format=json`: `{"dispatchers":[{"name":…, counters…, "events_per_wakeup":…,
/// "histograms":{"poll_wait_us":[{"lower_bound_us":…,"count":…},…],…}}]}` (empty buckets
/// omitted).
pub fn json(entries: &[(String, DispatcherStatsSnapshot)]) -> Value {
    let dispatchers: Vec<Value> = entries
        .iter()
        .map(|(name, s)| {
            let mut m = Map::new();
            m.insert("name".into(), name.as_str().into());
            for (k, v) in scalars(s) {
                m.insert(k.into(), v.into());
            }
            m.insert("events_per_wakeup".into(), json!(events_per_wakeup(s)));
            let mut h = Map::new();
            for (k, counts) in histograms(s) {
                let buckets: Vec<Value> = (0..BUCKETS)
                    .filter(|&i| counts[i] > 0)
                    .map(|i| {
                        json!({
                            "lower_bound_us": reactor::Histogram::bucket_lower_bound_us(i),
                            "count": counts[i],
                        })
                    })
                    .collect();
                h.insert(k.into(), buckets.into());
            }
            m.insert("histograms".into(), Value::Object(h));
            Value::Object(m)
        })
        .collect();
    json!({ "dispatchers": dispatchers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn feeder_adds_only_new_samples() {
        let store = Store::new();
        let d = reactor::Dispatcher::new("t").unwrap();
        let mut entries = vec![DispatcherEntry::new("t", "server.", d.stats(), &store)];
        d.run(reactor::RunType::NonBlock).unwrap();
        d.run(reactor::RunType::NonBlock).unwrap();
        DispatcherStatsFeeder::feed(&mut entries);
        let h = store.histogram("server.dispatcher.loop_duration_us", Unit::Microseconds);
        let first = h.statistics().sample_count();
        assert_eq!(first, d.stats().snapshot().loop_iterations_total);
        DispatcherStatsFeeder::feed(&mut entries);
        assert_eq!(
            h.statistics().sample_count(),
            first,
            "nothing new, nothing added"
        );
        let timer = d.create_timer(|| {});
        timer.enable(Duration::from_millis(1));
        d.run(reactor::RunType::Block).unwrap();
        DispatcherStatsFeeder::feed(&mut entries);
        assert!(h.statistics().sample_count() > first);
        let snap = vec![("t".to_string(), d.stats().snapshot())];
        let t = text(&snap);
        assert!(t.starts_with("t:\n  loop_iterations_total: "), "{t}");
        assert!(t.contains("  timers_fired_total: 1\n"), "{t}");
        let j = json(&snap);
        assert_eq!(j["dispatchers"][0]["timers_fired_total"], 1);
        assert!(j["dispatchers"][0]["histograms"]["callback_us"].is_array());
    }

    #[test]
    fn bucket_labels() {
        assert_eq!(bucket_label(0), "[0,1)");
        assert_eq!(bucket_label(3), "[4,8)");
        assert_eq!(bucket_label(BUCKETS - 1), "[4194304,inf)");
        assert_eq!(representative_us(3), 6);
    }
}
