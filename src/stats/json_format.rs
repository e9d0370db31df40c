//! `/stats?format=json` (Envoy's `StatsJsonRender`):
//! `{"stats":[{"name":…,"value":…},…,{"histograms":{"supported_quantiles":[…],
//! "computed_quantiles":[{"name":…,"values":[{"cumulative":…,"interval":…},…]},…]}}]}`.
//! The histograms element is present only when some histogram is shown; an empty quantile is
//! `null`.

use std::fmt::Write;

use super::histogram::SUPPORTED_QUANTILES;
use super::stats_request::StatsRequest;
use super::store::{Snapshot, StatValue};

/// Renders the JSON format.
pub(crate) fn render(snapshot: &Snapshot, req: &StatsRequest) -> String {
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

    let mut out = String::from("{\"stats\":[");
    let mut first = true;
    for s in scalars {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"name\":");
        push_json_string(&mut out, &s.name);
        let _ = write!(out, ",\"value\":{}}}", s.value);
    }
    let histograms: Vec<_> = if req.histograms() {
        snapshot
            .histograms
            .iter()
            .filter(|h| req.shows(&h.name, h.used))
            .collect()
    } else {
        Vec::new()
    };
    if !histograms.is_empty() {
        if !first {
            out.push(',');
        }
        out.push_str("{\"histograms\":{\"supported_quantiles\":[");
        for (i, q) in SUPPORTED_QUANTILES.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", q * 100.0);
        }
        out.push_str("],\"computed_quantiles\":[");
        for (i, h) in histograms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            push_json_string(&mut out, &h.name);
            out.push_str(",\"values\":[");
            for (j, q) in SUPPORTED_QUANTILES.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"cumulative\":{},\"interval\":{}}}",
                    json_number(h.cumulative.quantile(*q)),
                    json_number(h.interval.quantile(*q))
                );
            }
            out.push_str("]}");
        }
        out.push_str("]}}");
    }
    out.push_str("]}");
    out
}

fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".to_string(),
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use crate::stats::{ImportMode, StatsRequest, Store, TagProducer, Unit};

    fn render(store: &Store, query: &str) -> String {
        let q = format!("format=json&{query}");
        StatsRequest::from_query(&q, false)
            .expect("valid query")
            .render(&store.snapshot(), &TagProducer::new())
    }

    #[test]
    fn envoy_shape_and_values() {
        let store = Store::new();
        store.gauge("server.live", ImportMode::NeverImport).set(1);
        store.counter("cluster.a\"b.upstream_rq_total").add(3);
        store
            .histogram("cluster.app.upstream_rq_per_cx", Unit::Unspecified)
            .record(3);
        store.histogram("cluster.dead.upstream_rq_per_cx", Unit::Unspecified);
        let body = render(&store, "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        let stats = v["stats"].as_array().expect("stats array");
        assert_eq!(
            stats[0],
            serde_json::json!({"name": "cluster.a\"b.upstream_rq_total", "value": 3})
        );
        assert_eq!(
            stats[1],
            serde_json::json!({"name": "server.live", "value": 1})
        );
        let h = &stats[2]["histograms"];
        assert_eq!(
            h["supported_quantiles"],
            serde_json::json!([0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100])
        );
        let app = &h["computed_quantiles"][0];
        assert_eq!(app["name"], "cluster.app.upstream_rq_per_cx");
        assert_eq!(
            app["values"][0],
            serde_json::json!({"cumulative": 3.05, "interval": null})
        );
        assert_eq!(
            h["computed_quantiles"][1]["values"][9],
            serde_json::json!({"cumulative": null, "interval": null})
        );
        // Exactly Envoy's bytes for a plain filter.
        assert_eq!(
            render(&store, "filter=server.live"),
            r#"{"stats":[{"name":"server.live","value":1}]}"#
        );
        assert_eq!(render(&store, "filter=nothing"), r#"{"stats":[]}"#);
    }
}
