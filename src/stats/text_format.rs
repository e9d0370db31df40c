//! `/stats` as text (Envoy's `StatsTextRender`): counters and gauges merged in name order as
//! `name: value`, then histograms in name order as
//! `name: P0(interval,cumulative) P25(…) … P100(…)`, or `name: No recorded values`.

use std::fmt::Write;

use super::histogram::{HistogramStatistics, SUPPORTED_QUANTILES};
use super::stats_request::StatsRequest;
use super::store::{HistogramValue, Snapshot, StatValue};

/// Renders the text format.
pub(crate) fn render(snapshot: &Snapshot, req: &StatsRequest) -> String {
    let mut out = String::new();
    let mut scalars: Vec<&StatValue> = Vec::new();
    if req.counters() {
        scalars.extend(
            snapshot
                .counters
                .iter()
                .filter(|s| req.shows(&s.name, s.used)),
        );
    }
    if req.gauges() {
        scalars.extend(
            snapshot
                .gauges
                .iter()
                .filter(|s| req.shows(&s.name, s.used)),
        );
    }
    scalars.sort_by(|a, b| a.name.cmp(&b.name));
    for s in scalars {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}: {}", s.name, s.value);
    }
    if req.histograms() {
        for h in snapshot
            .histograms
            .iter()
            .filter(|h| req.shows(&h.name, h.used))
        {
            write_histogram(&mut out, h);
        }
    }
    out
}

fn write_histogram(out: &mut String, h: &HistogramValue) {
    let _ = write!(out, "{}: ", h.name);
    if h.cumulative.sample_count() == 0 {
        out.push_str("No recorded values\n");
        return;
    }
    for (i, q) in SUPPORTED_QUANTILES.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(
            out,
            "P{}({},{})",
            q * 100.0,
            value(&h.interval, *q),
            value(&h.cumulative, *q)
        );
    }
    out.push('\n');
}

/// A quantile as Envoy prints it: shortest round-trip decimal, `nan` when empty.
fn value(stats: &HistogramStatistics, q: f64) -> String {
    match stats.quantile(q) {
        Some(v) => format!("{v}"),
        None => "nan".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::stats::{ImportMode, StatsRequest, Store, TagProducer, Unit};

    fn render(store: &Store, query: &str) -> String {
        StatsRequest::from_query(query, false)
            .expect("valid query")
            .render(&store.snapshot(), &TagProducer::new())
    }

    #[test]
    fn counters_and_gauges_merge_in_name_order_then_histograms() {
        let store = Store::new();
        store.counter("server.total_connections_x").add(4);
        store
            .gauge("server.concurrency", ImportMode::NeverImport)
            .set(2);
        store.counter("cluster.app.upstream_rq_total").add(7);
        store
            .histogram("server.initialization_time_ms", Unit::Milliseconds)
            .record(85);
        store.histogram("cluster.dead.upstream_cx_connect_ms", Unit::Milliseconds);
        assert_eq!(
            render(&store, ""),
            "cluster.app.upstream_rq_total: 7\n\
             server.concurrency: 2\n\
             server.total_connections_x: 4\n\
             cluster.dead.upstream_cx_connect_ms: No recorded values\n\
             server.initialization_time_ms: P0(nan,85.5) P25(nan,85.5) P50(nan,85.5) P75(nan,85.5) \
             P90(nan,85.5) P95(nan,85.5) P99(nan,85.5) P99.5(nan,85.5) P99.9(nan,85.5) P100(nan,85.5)\n"
        );
        assert_eq!(render(&store, "type=Gauges"), "server.concurrency: 2\n");
        assert_eq!(
            render(&store, "filter=upstream&type=Counters"),
            "cluster.app.upstream_rq_total: 7\n"
        );
        assert_eq!(
            render(&store, "usedonly&filter=cluster"),
            "cluster.app.upstream_rq_total: 7\n",
            "an unused histogram is hidden by usedonly"
        );
    }

    #[test]
    fn interval_and_cumulative_after_a_merge() {
        // Envoy 1.40 after four 150..170 ms connections in the last flush interval:
        // P0(155,4.05) P25(155,155) P50(162.5,162.5) P75(165,167.5) P90(167.5,265) ...
        let store = Store::new();
        let h = store.histogram("cluster.app.upstream_cx_length_ms", Unit::Milliseconds);
        h.record(4);
        h.record(265);
        store.merge_histograms();
        for v in [158, 161, 163, 166] {
            h.record(v);
        }
        store.merge_histograms();
        assert_eq!(
            render(&store, "type=Histograms"),
            "cluster.app.upstream_cx_length_ms: P0(155,4.05) P25(155,155) P50(162.5,162.5) P75(165,167.5) \
             P90(167.5,265) P95(167.5,265) P99(167.5,265) P99.5(167.5,265) P99.9(167.5,265) P100(167.5,265)\n"
        );
    }
}
