//! The text of the admin `/clusters` page (Envoy's `ClustersHandler::writeClustersAsText`):
//! one `cluster::key::value` or `cluster::host::key::value` line per fact, as Envoy 1.40 prints
//! them, so scripts written against Envoy's page work unchanged.
//!
//! Called by the admin endpoint with the cluster manager's current snapshots
//! ([`ClusterManagerHandle::clusters`](super::cluster_manager::ClusterManagerHandle::clusters));
//! reads only shared, read-mostly state (cluster info, host sets, host atomics).

use std::fmt::Write;
use std::sync::Arc;

use super::cluster::ClusterInfo;
use super::host_set::HostSet;

/// Appends the `/clusters` text of `clusters` to `out`.
pub fn write_clusters_text(clusters: &[(Arc<ClusterInfo>, Arc<HostSet>)], out: &mut String) {
    for (info, hosts) in clusters {
        let name = &info.name;
        // `write!` to a String cannot fail.
        let _ = writeln!(out, "{name}::observability_name::{name}");
        for (priority, limits) in [
            ("default_priority", &info.resource_limits),
            ("high_priority", &info.resource_limits_high),
        ] {
            let _ = writeln!(
                out,
                "{name}::{priority}::max_connections::{}",
                limits.max_connections
            );
            let _ = writeln!(
                out,
                "{name}::{priority}::max_pending_requests::{}",
                limits.max_pending_requests
            );
            let _ = writeln!(
                out,
                "{name}::{priority}::max_requests::{}",
                limits.max_requests
            );
            let _ = writeln!(
                out,
                "{name}::{priority}::max_retries::{}",
                limits.max_retries
            );
        }
        let _ = writeln!(out, "{name}::added_via_api::false");
        for host in hosts.hosts() {
            let address = host.address();
            for (stat, value) in host.stats.values() {
                let _ = writeln!(out, "{name}::{address}::{stat}::{value}");
            }
            let locality = host.locality();
            let _ = writeln!(out, "{name}::{address}::hostname::{}", host.hostname());
            let _ = writeln!(
                out,
                "{name}::{address}::health_flags::{}",
                host.health_flags_string()
            );
            let _ = writeln!(out, "{name}::{address}::weight::{}", host.weight());
            let _ = writeln!(out, "{name}::{address}::region::{}", locality.region);
            let _ = writeln!(out, "{name}::{address}::zone::{}", locality.zone);
            let _ = writeln!(out, "{name}::{address}::sub_zone::{}", locality.sub_zone);
            let _ = writeln!(out, "{name}::{address}::canary::false");
            let _ = writeln!(out, "{name}::{address}::priority::{}", host.priority());
            let _ = writeln!(out, "{name}::{address}::success_rate::-1");
            let _ = writeln!(out, "{name}::{address}::local_origin_success_rate::-1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::stats::Store;
    use crate::upstream::cluster::inc;
    use crate::upstream::cluster_manager::ClusterManager;

    #[test]
    fn matches_envoy_1_40_format() {
        let yaml = r#"
static_resources:
  clusters:
  - name: st
    circuit_breakers: { thresholds: [{ max_connections: 7 }, { priority: HIGH, max_retries: 9 }] }
    load_assignment:
      cluster_name: st
      endpoints:
      - locality: { region: r1, zone: z1 }
        lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8082 } }, hostname: foo }
          load_balancing_weight: 3
"#;
        let b = config::load_str(yaml).unwrap();
        let cm = ClusterManager::new(&b.static_resources.clusters, &Store::new()).unwrap();
        let clusters = cm.handle().clusters();
        inc(&clusters[0].1.hosts()[0].stats.cx_total);
        let mut out = String::new();
        write_clusters_text(&clusters, &mut out);
        // Captured from Envoy 1.40 with the same cluster (then one connection counted).
        let expected = "\
st::observability_name::st
st::default_priority::max_connections::7
st::default_priority::max_pending_requests::1024
st::default_priority::max_requests::1024
st::default_priority::max_retries::3
st::high_priority::max_connections::1024
st::high_priority::max_pending_requests::1024
st::high_priority::max_requests::1024
st::high_priority::max_retries::9
st::added_via_api::false
st::127.0.0.1:8082::cx_active::0
st::127.0.0.1:8082::cx_connect_fail::0
st::127.0.0.1:8082::cx_total::1
st::127.0.0.1:8082::rq_active::0
st::127.0.0.1:8082::rq_error::0
st::127.0.0.1:8082::rq_pending_active::0
st::127.0.0.1:8082::rq_success::0
st::127.0.0.1:8082::rq_timeout::0
st::127.0.0.1:8082::rq_total::0
st::127.0.0.1:8082::hostname::foo
st::127.0.0.1:8082::health_flags::healthy
st::127.0.0.1:8082::weight::3
st::127.0.0.1:8082::region::r1
st::127.0.0.1:8082::zone::z1
st::127.0.0.1:8082::sub_zone::
st::127.0.0.1:8082::canary::false
st::127.0.0.1:8082::priority::0
st::127.0.0.1:8082::success_rate::-1
st::127.0.0.1:8082::local_origin_success_rate::-1
";
        assert_eq!(out, expected);
    }
}
