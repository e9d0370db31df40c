//! `/clusters`: the upstream clusters, their circuit-breaker thresholds and per-host stats, as
//! Envoy's `ClustersHandler` prints them (text: the upstream module's renderer; JSON: Envoy's
//! `envoy.admin.v3.Clusters` message, built here).
//!
//! Called by the admin server with the cluster manager's current snapshots; reads only shared,
//! read-mostly state (cluster info, host sets, host atomics), never a worker.

use std::sync::Arc;

use regex::Regex;
use serde_json::{json, Map, Value};

use crate::config::Thresholds;
use crate::upstream::cluster::{ClusterInfo, Host};
use crate::upstream::clusters_text::write_clusters_text;
use crate::upstream::host_set::HostSet;

/// The clusters as the cluster manager hands them to the admin.
pub type ClusterSnapshot = Vec<(Arc<ClusterInfo>, Arc<HostSet>)>;

/// Keeps the clusters whose name matches `filter` (a search, as Envoy's `filter=`).
pub fn filtered(mut clusters: ClusterSnapshot, filter: Option<&Regex>) -> ClusterSnapshot {
    if let Some(re) = filter {
        clusters.retain(|(info, _)| re.is_match(&info.name));
    }
    clusters
}

/// The text format.
pub fn text(clusters: &ClusterSnapshot) -> String {
    let mut out = String::new();
    write_clusters_text(clusters, &mut out);
    out
}

/// The JSON format (Envoy's field names and order; zero values and empty strings omitted and
/// 64-bit values as strings, as protobuf's JSON mapping does).
pub fn json(clusters: &ClusterSnapshot) -> Value {
    let statuses: Vec<Value> = clusters
        .iter()
        .map(|(info, hosts)| {
            json!({
                "name": info.name,
                "host_statuses": hosts.hosts().iter().map(|h| host_json(h)).collect::<Vec<_>>(),
                "circuit_breakers": {
                    "thresholds": [
                        thresholds_json(None, &info.resource_limits),
                        thresholds_json(Some("HIGH"), &info.resource_limits_high),
                    ]
                },
                "observability_name": info.name,
            })
        })
        .collect();
    json!({ "cluster_statuses": statuses })
}

fn thresholds_json(priority: Option<&str>, t: &Thresholds) -> Value {
    let mut m = Map::new();
    if let Some(p) = priority {
        m.insert("priority".into(), p.into());
    }
    m.insert("max_connections".into(), t.max_connections.into());
    m.insert("max_pending_requests".into(), t.max_pending_requests.into());
    m.insert("max_requests".into(), t.max_requests.into());
    m.insert("max_retries".into(), t.max_retries.into());
    Value::Object(m)
}

/// Envoy lists counters first, then gauges, each alphabetically.
const GAUGES: [&str; 3] = ["cx_active", "rq_active", "rq_pending_active"];

fn host_json(host: &Host) -> Value {
    let values = host.stats.values();
    let stat = |name: &str, value: u64, gauge: bool| {
        let mut m = Map::new();
        if gauge {
            m.insert("type".into(), "GAUGE".into());
        }
        if value != 0 {
            m.insert("value".into(), value.to_string().into());
        }
        m.insert("name".into(), name.into());
        Value::Object(m)
    };
    let counters = values
        .iter()
        .filter(|(n, _)| !GAUGES.contains(n))
        .map(|(n, v)| stat(n, *v, false));
    let gauges = values
        .iter()
        .filter(|(n, _)| GAUGES.contains(n))
        .map(|(n, v)| stat(n, *v, true));
    let address = host.address();
    let mut m = Map::new();
    m.insert(
        "address".into(),
        json!({"socket_address": {"address": address.ip().to_string(), "port_value": address.port()}}),
    );
    m.insert("stats".into(), counters.chain(gauges).collect());
    let health = if host.healthy() {
        "HEALTHY"
    } else {
        "UNHEALTHY"
    };
    m.insert(
        "health_status".into(),
        json!({ "eds_health_status": health }),
    );
    m.insert("weight".into(), host.weight().into());
    if !host.hostname().is_empty() {
        m.insert("hostname".into(), host.hostname().into());
    }
    let locality = host.locality();
    let mut l = Map::new();
    for (k, v) in [
        ("region", &locality.region),
        ("zone", &locality.zone),
        ("sub_zone", &locality.sub_zone),
    ] {
        if !v.is_empty() {
            l.insert(k.into(), v.as_str().into());
        }
    }
    m.insert("locality".into(), Value::Object(l));
    Value::Object(m)
}
