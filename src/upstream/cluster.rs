//! What a cluster is and what its hosts are: Envoy's `ClusterInfoImpl`, `ClusterStats` and
//! `HostImpl` (with its `HostStats` and health flags).
//!
//! Built by the cluster manager (`cluster_manager.rs`) on the main thread from a
//! [`config::Cluster`]; shared read-only (`Arc`) with every worker. The data path (tcp_proxy,
//! the router, connection pools) reads the limits here and counts into the stats; the admin
//! `/clusters` page prints the hosts' counters and flags.
//!
//! Two kinds of counters, as in Envoy:
//! - cluster stats ([`ClusterStats`], `cluster.<name>.*`) live in the stats store; each worker
//!   holds its own handles (created from its store shard by the thread-local cluster manager),
//!   so counting never contends across workers;
//! - per-host stats ([`HostStats`]) are plain atomics on the shared [`Host`]: the least-request
//!   balancer on every worker reads `rq_active`, so it must be one value for the whole process.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::resource_manager::{ResourceManager, ResourcePriority};
use crate::config::{
    self, DiscoveryType, DnsLookupFamily, HttpProtocolOptions, LbPolicy, Locality, Thresholds,
};
use crate::stats::{Counter, Gauge, Histogram, ImportMode, Store, Unit};

/// A cluster's settings (Envoy's `ClusterInfo`). Immutable once built.
#[derive(Debug)]
pub struct ClusterInfo {
    pub name: String,
    pub discovery_type: DiscoveryType,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    /// `per_connection_buffer_limit_bytes` of upstream connections.
    pub per_connection_buffer_limit_bytes: u32,
    /// Circuit-breaker thresholds of the DEFAULT routing priority.
    pub resource_limits: Thresholds,
    /// Circuit-breaker thresholds of the HIGH routing priority.
    pub resource_limits_high: Thresholds,
    pub dns_refresh_rate: Duration,
    pub dns_lookup_family: DnsLookupFamily,
    /// Upstream HTTP/1 connection options (idle timeout, max requests per connection, ...).
    pub http_protocol_options: HttpProtocolOptions,
    /// The main thread's stats handles (membership and DNS update counters are written there;
    /// workers count data-path events into their own handles: [`ClusterStats::new`]).
    pub stats: ClusterStats,
    /// The circuit breakers of the DEFAULT and HIGH priorities, shared by every worker.
    resource_managers: [ResourceManager; 2],
}

impl ClusterInfo {
    /// The info of `cluster`, with its stats created in `store` (the root scope).
    pub fn new(cluster: &config::Cluster, store: &Store) -> ClusterInfo {
        ClusterInfo {
            name: cluster.name.clone(),
            discovery_type: cluster.discovery_type,
            connect_timeout: cluster.connect_timeout,
            lb_policy: cluster.lb_policy,
            per_connection_buffer_limit_bytes: cluster.per_connection_buffer_limit_bytes,
            resource_limits: cluster.circuit_breakers.default,
            resource_limits_high: cluster.circuit_breakers.high,
            dns_refresh_rate: cluster.dns_refresh_rate,
            dns_lookup_family: cluster.dns_lookup_family,
            http_protocol_options: cluster.http_protocol_options,
            stats: ClusterStats::new(store, &cluster.name),
            resource_managers: [
                (&cluster.circuit_breakers.default, ResourcePriority::Default),
                (&cluster.circuit_breakers.high, ResourcePriority::High),
            ]
            .map(|(thresholds, priority)| {
                let mut rm = ResourceManager::new(thresholds, store, &cluster.name, priority);
                rm.max_connections_per_host = cluster.circuit_breakers.max_connections_per_host
                    [usize::from(priority == ResourcePriority::High)];
                rm
            }),
        }
    }

    /// The circuit breakers of `priority` (Envoy's `resourceManager(priority)`).
    pub fn resource_manager(&self, priority: ResourcePriority) -> &ResourceManager {
        match priority {
            ResourcePriority::Default => &self.resource_managers[0],
            ResourcePriority::High => &self.resource_managers[1],
        }
    }

    /// The `type` as Envoy's admin prints it.
    pub fn discovery_type_name(&self) -> &'static str {
        match self.discovery_type {
            DiscoveryType::Static => "STATIC",
            DiscoveryType::StrictDns => "STRICT_DNS",
            DiscoveryType::LogicalDns => "LOGICAL_DNS",
        }
    }
}

/// `cluster.<name>.*`: Envoy's `ALL_CLUSTER_STATS` that nuncio maintains (names verbatim).
#[derive(Clone, Debug)]
pub struct ClusterStats {
    // Connections.
    pub upstream_cx_total: Counter,
    pub upstream_cx_active: Gauge,
    pub upstream_cx_http1_total: Counter,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_cx_connect_attempts_exceeded: Counter,
    pub upstream_cx_overflow: Counter,
    pub upstream_cx_destroy: Counter,
    pub upstream_cx_destroy_local: Counter,
    pub upstream_cx_destroy_remote: Counter,
    pub upstream_cx_destroy_with_active_rq: Counter,
    pub upstream_cx_destroy_local_with_active_rq: Counter,
    pub upstream_cx_destroy_remote_with_active_rq: Counter,
    pub upstream_cx_idle_timeout: Counter,
    pub upstream_cx_max_requests: Counter,
    pub upstream_cx_none_healthy: Counter,
    pub upstream_cx_rx_bytes_total: Counter,
    pub upstream_cx_tx_bytes_total: Counter,
    pub upstream_cx_protocol_error: Counter,
    pub upstream_cx_connect_ms: Histogram,
    pub upstream_cx_length_ms: Histogram,
    pub upstream_rq_per_cx: Histogram,
    // Requests.
    pub upstream_rq_total: Counter,
    pub upstream_rq_active: Gauge,
    pub upstream_rq_completed: Counter,
    pub upstream_rq_cancelled: Counter,
    pub upstream_rq_pending_total: Counter,
    pub upstream_rq_pending_active: Gauge,
    pub upstream_rq_pending_overflow: Counter,
    pub upstream_rq_pending_failure_eject: Counter,
    pub upstream_rq_timeout: Counter,
    pub upstream_rq_per_try_timeout: Counter,
    pub upstream_rq_per_try_idle_timeout: Counter,
    pub upstream_rq_retry: Counter,
    pub upstream_rq_retry_success: Counter,
    pub upstream_rq_retry_overflow: Counter,
    pub upstream_rq_rx_reset: Counter,
    pub upstream_rq_tx_reset: Counter,
    // Membership and discovery (written by the cluster manager).
    pub membership_total: Gauge,
    pub membership_healthy: Gauge,
    pub membership_change: Counter,
    pub update_attempt: Counter,
    pub update_success: Counter,
    pub update_failure: Counter,
    pub update_empty: Counter,
    pub update_no_rebuild: Counter,
    pub lb_healthy_panic: Counter,
    pub max_host_weight: Gauge,
}

impl ClusterStats {
    /// The handles of cluster `name` in `store` (give each worker's store for its own handles).
    pub fn new(store: &Store, name: &str) -> ClusterStats {
        let s = store.scope(&format!("cluster.{name}"));
        let c = |n: &str| s.counter(n);
        let g = |n: &str| s.gauge(n, ImportMode::Accumulate);
        let never = |n: &str| s.gauge(n, ImportMode::NeverImport);
        ClusterStats {
            upstream_cx_total: c("upstream_cx_total"),
            upstream_cx_active: g("upstream_cx_active"),
            upstream_cx_http1_total: c("upstream_cx_http1_total"),
            upstream_cx_connect_fail: c("upstream_cx_connect_fail"),
            upstream_cx_connect_attempts_exceeded: c("upstream_cx_connect_attempts_exceeded"),
            upstream_cx_connect_timeout: c("upstream_cx_connect_timeout"),
            upstream_cx_overflow: c("upstream_cx_overflow"),
            upstream_cx_destroy: c("upstream_cx_destroy"),
            upstream_cx_destroy_local: c("upstream_cx_destroy_local"),
            upstream_cx_destroy_remote: c("upstream_cx_destroy_remote"),
            upstream_cx_destroy_with_active_rq: c("upstream_cx_destroy_with_active_rq"),
            upstream_cx_destroy_local_with_active_rq: c("upstream_cx_destroy_local_with_active_rq"),
            upstream_cx_destroy_remote_with_active_rq: c(
                "upstream_cx_destroy_remote_with_active_rq",
            ),
            upstream_cx_idle_timeout: c("upstream_cx_idle_timeout"),
            upstream_cx_max_requests: c("upstream_cx_max_requests"),
            upstream_cx_none_healthy: c("upstream_cx_none_healthy"),
            upstream_cx_rx_bytes_total: c("upstream_cx_rx_bytes_total"),
            upstream_cx_tx_bytes_total: c("upstream_cx_tx_bytes_total"),
            upstream_cx_protocol_error: c("upstream_cx_protocol_error"),
            upstream_cx_connect_ms: s.histogram("upstream_cx_connect_ms", Unit::Milliseconds),
            upstream_cx_length_ms: s.histogram("upstream_cx_length_ms", Unit::Milliseconds),
            upstream_rq_per_cx: s.histogram("upstream_rq_per_cx", Unit::Unspecified),
            upstream_rq_total: c("upstream_rq_total"),
            upstream_rq_active: g("upstream_rq_active"),
            upstream_rq_completed: c("upstream_rq_completed"),
            upstream_rq_cancelled: c("upstream_rq_cancelled"),
            upstream_rq_pending_total: c("upstream_rq_pending_total"),
            upstream_rq_pending_active: g("upstream_rq_pending_active"),
            upstream_rq_pending_overflow: c("upstream_rq_pending_overflow"),
            upstream_rq_pending_failure_eject: c("upstream_rq_pending_failure_eject"),
            upstream_rq_timeout: c("upstream_rq_timeout"),
            upstream_rq_per_try_timeout: c("upstream_rq_per_try_timeout"),
            upstream_rq_per_try_idle_timeout: c("upstream_rq_per_try_idle_timeout"),
            upstream_rq_retry: c("upstream_rq_retry"),
            upstream_rq_retry_success: c("upstream_rq_retry_success"),
            upstream_rq_retry_overflow: c("upstream_rq_retry_overflow"),
            upstream_rq_rx_reset: c("upstream_rq_rx_reset"),
            upstream_rq_tx_reset: c("upstream_rq_tx_reset"),
            membership_total: never("membership_total"),
            membership_healthy: never("membership_healthy"),
            membership_change: c("membership_change"),
            update_attempt: c("update_attempt"),
            update_success: c("update_success"),
            update_failure: c("update_failure"),
            update_empty: c("update_empty"),
            update_no_rebuild: c("update_no_rebuild"),
            lb_healthy_panic: c("lb_healthy_panic"),
            max_host_weight: never("max_host_weight"),
        }
    }
}

/// Per-host counters (Envoy's `HostStats`), shared by every worker. Relaxed atomics: each is an
/// independent tally, read for display and for least-request picks, never for synchronisation.
#[derive(Debug, Default)]
pub struct HostStats {
    pub cx_total: AtomicU64,
    pub cx_active: AtomicU64,
    pub cx_connect_fail: AtomicU64,
    pub rq_total: AtomicU64,
    pub rq_success: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_timeout: AtomicU64,
    pub rq_active: AtomicU64,
    pub rq_pending_active: AtomicU64,
}

impl HostStats {
    /// Every counter and gauge with the name `/clusters` prints, in Envoy's (alphabetical)
    /// order.
    pub fn values(&self) -> [(&'static str, u64); 9] {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("cx_active", v(&self.cx_active)),
            ("cx_connect_fail", v(&self.cx_connect_fail)),
            ("cx_total", v(&self.cx_total)),
            ("rq_active", v(&self.rq_active)),
            ("rq_error", v(&self.rq_error)),
            ("rq_pending_active", v(&self.rq_pending_active)),
            ("rq_success", v(&self.rq_success)),
            ("rq_timeout", v(&self.rq_timeout)),
            ("rq_total", v(&self.rq_total)),
        ]
    }
}

/// Adds one to a host counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Takes one from a host gauge (`cx_active`, `rq_active`); never wraps below zero.
pub fn dec(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

/// Envoy's `Host::HealthFlag` bits. Nuncio has no active health checking or outlier detection
/// yet, so only what the admin can set (and tests) raises them; the names are Envoy's, as
/// `/clusters` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthFlag(u32);

impl HealthFlag {
    pub const FAILED_ACTIVE_HC: HealthFlag = HealthFlag(0x01);
    pub const FAILED_OUTLIER_CHECK: HealthFlag = HealthFlag(0x02);
    pub const FAILED_EDS_HEALTH: HealthFlag = HealthFlag(0x04);
    pub const DEGRADED_ACTIVE_HC: HealthFlag = HealthFlag(0x08);
    pub const PENDING_DYNAMIC_REMOVAL: HealthFlag = HealthFlag(0x10);
    pub const PENDING_ACTIVE_HC: HealthFlag = HealthFlag(0x20);

    const NAMES: [(HealthFlag, &'static str); 6] = [
        (HealthFlag::FAILED_ACTIVE_HC, "/failed_active_hc"),
        (HealthFlag::FAILED_OUTLIER_CHECK, "/failed_outlier_check"),
        (HealthFlag::FAILED_EDS_HEALTH, "/failed_eds_health"),
        (HealthFlag::DEGRADED_ACTIVE_HC, "/degraded_active_hc"),
        (
            HealthFlag::PENDING_DYNAMIC_REMOVAL,
            "/pending_dynamic_removal",
        ),
        (HealthFlag::PENDING_ACTIVE_HC, "/pending_active_hc"),
    ];
}

/// One upstream endpoint (Envoy's `HostImpl`): where to connect, its weight, its counters and
/// health. Shared (`Arc`) by the host sets of every worker; a host that survives a DNS refresh
/// unchanged is the same `Host`, so its counters carry on.
#[derive(Debug)]
pub struct Host {
    address: SocketAddr,
    /// The endpoint's host name (`endpoint.hostname`, or the DNS name it was resolved from).
    hostname: String,
    weight: u32,
    /// The `locality` of the endpoint's group (region, zone, sub_zone).
    locality: Locality,
    health_flags: AtomicU32,
    pub stats: HostStats,
}

impl Host {
    /// A healthy host. A weight of 0 is raised to 1 (Envoy's minimum).
    pub fn new(address: SocketAddr, hostname: impl Into<String>, weight: u32) -> Host {
        Host::with_locality(address, hostname, weight, Locality::default())
    }

    /// A healthy host in `locality`.
    pub fn with_locality(
        address: SocketAddr,
        hostname: impl Into<String>,
        weight: u32,
        locality: Locality,
    ) -> Host {
        Host {
            address,
            hostname: hostname.into(),
            weight: weight.max(1),
            locality,
            health_flags: AtomicU32::new(0),
            stats: HostStats::default(),
        }
    }

    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// The priority level: always 0 (nuncio has one level).
    pub fn priority(&self) -> u32 {
        0
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// `load_balancing_weight` (1..).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// True when no health flag is raised.
    pub fn healthy(&self) -> bool {
        self.health_flags.load(Ordering::Relaxed) == 0
    }

    pub fn health_flag_set(&self, flag: HealthFlag) {
        self.health_flags.fetch_or(flag.0, Ordering::Relaxed);
    }

    pub fn health_flag_clear(&self, flag: HealthFlag) {
        self.health_flags.fetch_and(!flag.0, Ordering::Relaxed);
    }

    pub fn health_flag_get(&self, flag: HealthFlag) -> bool {
        self.health_flags.load(Ordering::Relaxed) & flag.0 != 0
    }

    /// The `health_flags` value `/clusters` prints: `healthy`, or the raised flags, e.g.
    /// `/failed_active_hc/failed_outlier_check`.
    pub fn health_flags_string(&self) -> String {
        let bits = self.health_flags.load(Ordering::Relaxed);
        if bits == 0 {
            return "healthy".to_string();
        }
        HealthFlag::NAMES
            .iter()
            .filter(|(flag, _)| bits & flag.0 != 0)
            .map(|(_, name)| *name)
            .collect()
    }

    /// The host's active requests (the least-request balancer's load measure).
    pub fn active_requests(&self) -> u64 {
        self.stats.rq_active.load(Ordering::Relaxed)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_from_config_and_stat_names() {
        let yaml = r#"
static_resources:
  clusters:
  - name: backend
    type: STRICT_DNS
    connect_timeout: 0.25s
    lb_policy: LEAST_REQUEST
    dns_lookup_family: V4_ONLY
    circuit_breakers: { thresholds: [{ max_connections: 7 }] }
    load_assignment:
      cluster_name: backend
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: localhost, port_value: 80 } } } }] }]
"#;
        let b = config::load_str(yaml).unwrap();
        let store = Store::new();
        let info = ClusterInfo::new(&b.static_resources.clusters[0], &store);
        assert_eq!(info.name, "backend");
        assert_eq!(info.discovery_type_name(), "STRICT_DNS");
        assert_eq!(info.connect_timeout, Duration::from_millis(250));
        assert_eq!(info.lb_policy, LbPolicy::LeastRequest);
        assert_eq!(info.dns_lookup_family, DnsLookupFamily::V4Only);
        assert_eq!(info.resource_limits.max_connections, 7);
        assert_eq!(info.resource_limits.max_requests, 1024);
        let cb = info.resource_manager(ResourcePriority::Default);
        assert_eq!(cb.connections.max(), 7);
        assert_eq!(
            info.resource_manager(ResourcePriority::High)
                .connections
                .max(),
            1024
        );
        info.stats.upstream_cx_total.inc();
        assert_eq!(
            info.stats.upstream_cx_total.name(),
            "cluster.backend.upstream_cx_total"
        );
        // A worker's handles are the same stat.
        let worker = ClusterStats::new(&store.for_worker(), "backend");
        worker.upstream_cx_total.inc();
        assert_eq!(info.stats.upstream_cx_total.value(), 2);
    }

    #[test]
    fn host_health_flags_and_stats() {
        let h = Host::new("127.0.0.1:80".parse().unwrap(), "localhost", 0);
        assert_eq!(h.weight(), 1);
        assert!(h.healthy());
        assert_eq!(h.health_flags_string(), "healthy");
        h.health_flag_set(HealthFlag::FAILED_ACTIVE_HC);
        h.health_flag_set(HealthFlag::FAILED_OUTLIER_CHECK);
        assert!(!h.healthy());
        assert_eq!(
            h.health_flags_string(),
            "/failed_active_hc/failed_outlier_check"
        );
        h.health_flag_clear(HealthFlag::FAILED_ACTIVE_HC);
        h.health_flag_clear(HealthFlag::FAILED_OUTLIER_CHECK);
        assert!(h.healthy());

        inc(&h.stats.rq_active);
        inc(&h.stats.rq_total);
        assert_eq!(h.active_requests(), 1);
        dec(&h.stats.rq_active);
        dec(&h.stats.rq_active);
        assert_eq!(h.active_requests(), 0);
        assert_eq!(h.stats.values()[8], ("rq_total", 1));
    }
}
