//! `/stats/prometheus` (Envoy's `PrometheusStatsFormatter`): the Prometheus text exposition
//! format with Envoy's metric names and tag extraction. All counters come first, then gauges,
//! then histograms; within each kind, metrics are grouped under one `# TYPE` line per
//! tag-extracted name, in name order. A metric name is `envoy_` plus the tag-extracted stat name
//! with every character outside `[a-zA-Z0-9_]` turned into `_`. Histograms print a cumulative
//! `_bucket` line per default bound and `+Inf`, then `_sum` and `_count`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::histogram::DEFAULT_BUCKETS;
use super::stats_request::StatsRequest;
use super::store::{HistogramValue, Snapshot, StatValue};
use super::tag_extractor::{Tag, TagProducer};

/// Renders the Prometheus text format.
pub(crate) fn render(snapshot: &Snapshot, req: &StatsRequest, producer: &TagProducer) -> String {
    let mut out = String::new();
    if req.counters() {
        scalar_family(&mut out, &snapshot.counters, "counter", req, producer);
    }
    if req.gauges() {
        scalar_family(&mut out, &snapshot.gauges, "gauge", req, producer);
    }
    if req.histograms() {
        let mut groups: BTreeMap<String, Vec<(Vec<Tag>, &HistogramValue)>> = BTreeMap::new();
        for h in snapshot
            .histograms
            .iter()
            .filter(|h| req.shows(&h.name, h.used))
        {
            let (name, tags) = producer.produce_tags(&h.name);
            groups
                .entry(metric_name(&name))
                .or_default()
                .push((tags, h));
        }
        for (name, metrics) in groups {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (tags, h) in metrics {
                let stats = &h.cumulative;
                let labels = labels(&tags);
                let sep = if labels.is_empty() { "" } else { "," };
                for (bound, count) in DEFAULT_BUCKETS.iter().zip(stats.computed_buckets()) {
                    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
                    stats.sample_count()
                );
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", stats.sample_sum());
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", stats.sample_count());
            }
        }
    }
    out
}

fn scalar_family(
    out: &mut String,
    stats: &[StatValue],
    kind: &str,
    req: &StatsRequest,
    producer: &TagProducer,
) {
    let mut groups: BTreeMap<String, Vec<(Vec<Tag>, u64)>> = BTreeMap::new();
    for s in stats.iter().filter(|s| req.shows(&s.name, s.used)) {
        let (name, tags) = producer.produce_tags(&s.name);
        groups
            .entry(metric_name(&name))
            .or_default()
            .push((tags, s.value));
    }
    for (name, metrics) in groups {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (tags, value) in metrics {
            let _ = writeln!(out, "{name}{{{}}} {value}", labels(&tags));
        }
    }
}

/// `envoy_` + the name with every character outside `[a-zA-Z0-9_]` replaced by `_`.
fn metric_name(tag_extracted: &str) -> String {
    let mut s = String::with_capacity(tag_extracted.len() + 6);
    s.push_str("envoy_");
    s.extend(tag_extracted.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    s
}

fn labels(tags: &[Tag]) -> String {
    let mut s = String::new();
    for (i, t) in tags.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}=\"", t.name);
        for c in t.value.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ImportMode, Store, Unit};

    fn store_with_traffic() -> Store {
        let store = Store::new();
        let w = store.for_worker();
        w.counter("cluster.app.upstream_rq_total").add(12);
        w.counter("cluster.app.upstream_rq_200").add(11);
        w.counter("cluster.app.upstream_rq_503").add(1);
        w.counter("cluster.app.upstream_rq_2xx").add(11);
        w.counter("http.ingress.downstream_rq_2xx").add(5);
        w.counter("http.ingress.downstream_rq_4xx").add(1);
        w.counter("listener.127.0.0.1_10000.downstream_cx_total")
            .add(3);
        w.counter("listener.127.0.0.1_10000.worker_0.downstream_cx_total")
            .add(3);
        w.counter("tcp.tcpfoo.downstream_cx_total").add(2);
        w.counter("cluster.with\"quote.upstream_rq_total").inc();
        store.gauge("server.live", ImportMode::NeverImport).set(1);
        w.gauge("cluster.app.upstream_cx_active", ImportMode::Accumulate)
            .add(2);
        let h = w.histogram("cluster.app.upstream_rq_time", Unit::Milliseconds);
        for v in [0, 0, 0, 0, 3, 18] {
            h.record(v);
        }
        store
            .histogram("server.initialization_time_ms", Unit::Milliseconds)
            .record(85);
        store
    }

    fn render_all(store: &Store, query: &str) -> String {
        let req = StatsRequest::from_query(query, true).expect("valid query");
        req.render(&store.snapshot(), &TagProducer::new())
    }

    /// Parses with the `prometheus-parse` crate and checks that no sample line was dropped.
    /// That crate's sample regex rejects empty braces (`envoy_server_live{} 1`), which the
    /// exposition format allows and Envoy prints, so they are removed first.
    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines: Vec<String> = text.lines().map(|l| l.replacen("{} ", " ", 1)).collect();
        let scrape = prometheus_parse::Scrape::parse(lines.iter().map(|l| Ok(l.clone())))
            .expect("valid Prometheus exposition");
        for line in lines
            .iter()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                scrape
                    .samples
                    .iter()
                    .any(|s| s.metric == name || s.metric == base),
                "line not parsed: {line}"
            );
        }
        scrape
    }

    fn sample<'a>(
        scrape: &'a prometheus_parse::Scrape,
        metric: &str,
        labels: &[(&str, &str)],
    ) -> &'a prometheus_parse::Sample {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {metric} {labels:?}"))
    }

    fn scalar(s: &prometheus_parse::Sample) -> f64 {
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn parses_with_envoy_names_and_labels() {
        let store = store_with_traffic();
        let text = render_all(&store, "");
        let scrape = parse(&text);
        let app = [("envoy_cluster_name", "app")];
        assert_eq!(
            scalar(sample(&scrape, "envoy_cluster_upstream_rq_total", &app)),
            12.0
        );
        assert_eq!(
            scalar(sample(
                &scrape,
                "envoy_cluster_upstream_rq",
                &[
                    ("envoy_response_code", "503"),
                    ("envoy_cluster_name", "app")
                ]
            )),
            1.0
        );
        assert_eq!(
            scalar(sample(
                &scrape,
                "envoy_http_downstream_rq_xx",
                &[
                    ("envoy_response_code_class", "2"),
                    ("envoy_http_conn_manager_prefix", "ingress")
                ]
            )),
            5.0
        );
        assert_eq!(
            scalar(sample(
                &scrape,
                "envoy_listener_worker_downstream_cx_total",
                &[("envoy_worker_id", "0")]
            )),
            3.0
        );
        assert_eq!(
            scalar(sample(
                &scrape,
                "envoy_tcp_downstream_cx_total",
                &[("envoy_tcp_prefix", "tcpfoo")]
            )),
            2.0
        );
        assert_eq!(scalar(sample(&scrape, "envoy_server_live", &[])), 1.0);
        // Label values are escaped (prometheus-parse keeps escapes raw, so check the text).
        assert!(
            text.contains(
                "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"with\\\"quote\"} 1\n"
            ),
            "{text}"
        );
        // Exact lines as Envoy 1.40 prints them.
        assert!(
            text.contains("# TYPE envoy_cluster_upstream_rq counter\n"),
            "{text}"
        );
        assert!(text.contains("envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"app\"} 11\n"));
        assert!(text.contains("# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n"));
        assert!(text.contains("envoy_server_initialization_time_ms_bucket{le=\"0.5\"} 0\n"));
        assert!(text.contains("envoy_server_initialization_time_ms_sum{} 85\n"));
        // Counters, then gauges, then histograms.
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.rsplit(' ').next().unwrap_or(""))
            .collect();
        let mut sorted = kinds.clone();
        sorted.sort_by_key(|k| {
            ["counter", "gauge", "histogram"]
                .iter()
                .position(|x| x == k)
        });
        assert_eq!(kinds, sorted);
    }

    #[test]
    fn histograms_have_envoy_buckets_sum_and_count() {
        let store = store_with_traffic();
        let scrape = parse(&render_all(&store, "type=Histograms"));
        let s = sample(
            &scrape,
            "envoy_cluster_upstream_rq_time",
            &[("envoy_cluster_name", "app")],
        );
        let prometheus_parse::Value::Histogram(buckets) = &s.value else {
            panic!("not a histogram: {:?}", s.value)
        };
        let count = |le: f64| {
            buckets
                .iter()
                .find(|b| b.less_than == le)
                .map(|b| b.count)
                .expect("bucket")
        };
        // The same counts Envoy printed for 0,0,0,0,3,18 ms.
        assert_eq!(count(0.5), 4.0);
        assert_eq!(count(1.0), 4.0);
        assert_eq!(count(5.0), 5.0);
        assert_eq!(count(10.0), 5.0);
        assert_eq!(count(25.0), 6.0);
        assert_eq!(count(3_600_000.0), 6.0);
        assert_eq!(count(f64::INFINITY), 6.0);
        assert_eq!(buckets.len(), DEFAULT_BUCKETS.len() + 1);
        assert!(scrape
            .samples
            .iter()
            .all(|s| !s.metric.starts_with("envoy_cluster_upstream_rq_total")));
    }

    #[test]
    fn filter_and_usedonly_apply_to_envoy_names() {
        let store = store_with_traffic();
        store.counter("cluster.app.upstream_rq_timeout");
        let text = render_all(&store, "filter=%5Ecluster%5C.app%5C.upstream_rq_t&usedonly");
        let scrape = parse(&text);
        let metrics: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
        assert!(
            metrics.contains(&"envoy_cluster_upstream_rq_total"),
            "{text}"
        );
        assert!(
            metrics.contains(&"envoy_cluster_upstream_rq_time"),
            "{text}"
        );
        assert!(
            !metrics.contains(&"envoy_cluster_upstream_rq_timeout"),
            "{text}"
        );
        assert!(!metrics.contains(&"envoy_server_live"), "{text}");
    }
}
