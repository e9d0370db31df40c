//! `envoy.config.cluster.v3.Cluster`: discovery type, endpoints, load balancing policy,
//! timeouts, circuit breakers and upstream HTTP options.
//!
//! Parsed by the Bootstrap parser; read by the cluster manager, the DNS resolver, the load
//! balancers and the connection pools (src/upstream/).

use std::time::Duration;

use super::address::{parse_endpoint_address, EndpointAddress};
use super::error::{ConfigError, ErrorKind, Result};
use super::listener::DEFAULT_BUFFER_LIMIT_BYTES;
use super::node::Node;
use super::protocol::HttpProtocolOptions;

/// Envoy's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);

/// The extension key (and message type) of the upstream HTTP protocol options.
const HTTP_OPTIONS_EXTENSION: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

const CLUSTER_FIELDS: [&str; 13] = [
    "name",
    "type",
    "connect_timeout",
    "lb_policy",
    "load_assignment",
    "per_connection_buffer_limit_bytes",
    "dns_refresh_rate",
    "dns_lookup_family",
    "circuit_breakers",
    "max_requests_per_connection",
    "common_http_protocol_options",
    "typed_extension_protocol_options",
    "hosts",
];
/// Cluster fields Envoy has that nuncio does not implement (TLS, HTTP/2 and health checks are
/// rejected earlier with their reason).
const CLUSTER_UNSUPPORTED: [&str; 41] = [
    "alt_stat_name",
    "cluster_type",
    "eds_cluster_config",
    "upstream_http_protocol_options",
    "http_protocol_options",
    "dns_jitter",
    "dns_failure_refresh_rate",
    "respect_dns_ttl",
    "dns_resolvers",
    "use_tcp_for_dns_lookups",
    "dns_resolution_config",
    "typed_dns_resolver_config",
    "wait_for_warm_on_init",
    "outlier_detection",
    "cleanup_interval",
    "upstream_bind_config",
    "lb_subset_config",
    "ring_hash_lb_config",
    "maglev_lb_config",
    "original_dst_lb_config",
    "least_request_lb_config",
    "round_robin_lb_config",
    "common_lb_config",
    "metadata",
    "protocol_selection",
    "upstream_connection_options",
    "close_connections_on_host_health_failure",
    "ignore_health_on_host_removal",
    "filters",
    "load_balancing_policy",
    "lrs_server",
    "lrs_report_endpoint_metrics",
    "track_timeout_budgets",
    "upstream_config",
    "track_cluster_stats",
    "preconnect_policy",
    "connection_pool_per_downstream_connection",
    "dns_min_refresh_rate",
    "shared_pool_config",
    "eds_config",
    "per_upstream_preconnect_ratio",
];

/// Http1ProtocolOptions fields (upstream side): nuncio's upstream HTTP/1 has no options yet.
const HTTP1_OPTIONS_UNSUPPORTED: [&str; 11] = [
    "allow_absolute_url",
    "accept_http_10",
    "default_host_for_http_10",
    "header_key_format",
    "enable_trailers",
    "allow_chunked_length",
    "override_stream_error_on_invalid_http_message",
    "send_fully_qualified_url",
    "use_balsa_parser",
    "allow_custom_methods",
    "ignore_http_11_upgrade",
];

/// An upstream cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// `name`, unique among clusters; referenced by tcp_proxy and routes.
    pub name: String,
    /// `type`. Default STATIC.
    pub discovery_type: DiscoveryType,
    /// `connect_timeout`. Default 5 s.
    pub connect_timeout: Duration,
    /// `lb_policy`. Default ROUND_ROBIN.
    pub lb_policy: LbPolicy,
    /// `load_assignment.endpoints` (or the legacy `hosts`, as one locality of weight-1 hosts).
    /// Default: none (an empty cluster: every pick fails with "no healthy upstream").
    pub endpoints: Vec<LocalityLbEndpoints>,
    /// `per_connection_buffer_limit_bytes` of upstream connections. Default 1 MiB.
    pub per_connection_buffer_limit_bytes: u32,
    /// `dns_refresh_rate` of STRICT_DNS and LOGICAL_DNS clusters. Default 5 s.
    pub dns_refresh_rate: Duration,
    /// `dns_lookup_family`. Default AUTO.
    pub dns_lookup_family: DnsLookupFamily,
    /// `circuit_breakers.thresholds`, per routing priority. Default 1024 connections, 1024
    /// pending requests, 1024 requests, 3 retries.
    pub circuit_breakers: CircuitBreakers,
    /// Upstream HTTP connection options: `common_http_protocol_options` from
    /// `typed_extension_protocol_options` (or from the deprecated cluster field of the same
    /// name), with the deprecated cluster-level `max_requests_per_connection` folded in.
    /// Defaults: idle timeout 1 h, 100 headers, no request limit.
    pub http_protocol_options: HttpProtocolOptions,
    /// Path of this cluster in the document (`static_resources.clusters[0]`).
    pub path: String,
}

/// `type`: how the cluster finds its hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DiscoveryType {
    /// `STATIC`: the endpoints are IP addresses, used as is.
    #[default]
    Static,
    /// `STRICT_DNS`: every endpoint is resolved; every address it resolves to is a host.
    StrictDns,
    /// `LOGICAL_DNS`: one endpoint; new connections go to its first resolved address.
    LogicalDns,
}

/// `lb_policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LbPolicy {
    /// `ROUND_ROBIN` (weighted when hosts have weights).
    #[default]
    RoundRobin,
    /// `LEAST_REQUEST`: the less loaded of two random choices.
    LeastRequest,
    /// `RANDOM`.
    Random,
}

/// `dns_lookup_family`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DnsLookupFamily {
    /// `AUTO`: IPv6 if the name has IPv6 addresses, else IPv4.
    #[default]
    Auto,
    /// `V4_ONLY`.
    V4Only,
    /// `V6_ONLY`.
    V6Only,
    /// `V4_PREFERRED`: IPv4 if the name has IPv4 addresses, else IPv6.
    V4Preferred,
    /// `ALL`: every address of both families.
    All,
}

/// `load_assignment.endpoints[]`: a group of endpoints in one locality.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalityLbEndpoints {
    /// `locality`. Default: none.
    pub locality: Option<Locality>,
    /// `lb_endpoints`.
    pub lb_endpoints: Vec<LbEndpoint>,
    /// `load_balancing_weight` of the locality (1..). Default: none. Envoy uses it only with
    /// locality-weighted load balancing, which nuncio does not have; it is kept for the admin.
    pub load_balancing_weight: Option<u32>,
    /// `priority`: nuncio has one priority level, 0 (others are refused).
    pub priority: u32,
}

/// `envoy.config.core.v3.Locality`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locality {
    /// `region`. Default "".
    pub region: String,
    /// `zone`. Default "".
    pub zone: String,
    /// `sub_zone`. Default "".
    pub sub_zone: String,
}

/// `lb_endpoints[]`: one upstream endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct LbEndpoint {
    /// `endpoint.address`.
    pub address: EndpointAddress,
    /// `endpoint.hostname`: the name used for `auto_host_rewrite`. Default: none.
    pub hostname: Option<String>,
    /// `load_balancing_weight` (1..). Default 1.
    pub load_balancing_weight: u32,
    /// Path of this endpoint in the document.
    pub path: String,
}

/// `circuit_breakers`: limits per routing priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// The `DEFAULT` priority's thresholds.
    pub default: Thresholds,
    /// The `HIGH` priority's thresholds.
    pub high: Thresholds,
    /// `per_host_thresholds[].max_connections` of the `DEFAULT` and `HIGH` priorities: a
    /// host's connection limit (`None`: unlimited). Envoy honours only `max_connections`
    /// there; the other fields are accepted and, as in Envoy, have no effect.
    pub max_connections_per_host: [Option<u32>; 2],
}

/// `circuit_breakers.thresholds[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// `max_connections`. Default 1024.
    pub max_connections: u32,
    /// `max_pending_requests`. Default 1024.
    pub max_pending_requests: u32,
    /// `max_requests`. Default 1024.
    pub max_requests: u32,
    /// `max_retries`. Default 3.
    pub max_retries: u32,
    /// `retry_budget`: when given, it replaces `max_retries` (Envoy: "the retry budget will
    /// override any configured retry circuit breaker").
    pub retry_budget: Option<RetryBudget>,
    /// `max_connection_pools`. Default unlimited (`None`).
    pub max_connection_pools: Option<u32>,
    /// `track_remaining`: publish the `remaining_*` gauges. Default false.
    pub track_remaining: bool,
}

/// `circuit_breakers.thresholds[].retry_budget`: retries allowed in flight are
/// `max(budget_percent × (active + pending requests), min_retry_concurrency)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    /// `budget_percent.value` in hundredths of a percent (20% = 2000). Default 20%.
    pub budget_percent_hundredths: u32,
    /// `min_retry_concurrency`. Default 3.
    pub min_retry_concurrency: u32,
}

impl RetryBudget {
    /// Reads a `RetryBudget` message.
    fn parse(node: &Node<'_>) -> Result<RetryBudget> {
        node.check_fields(&["budget_percent", "min_retry_concurrency"], &[])?;
        let percent = match node.get("budget_percent") {
            Some(p) => {
                let value = p.f64_value()?;
                if !(0.0..=100.0).contains(&value) {
                    return Err(p.error("must be a percentage between 0 and 100"));
                }
                value
            }
            None => 20.0,
        };
        Ok(RetryBudget {
            budget_percent_hundredths: (percent * 100.0).round() as u32,
            min_retry_concurrency: node
                .opt("min_retry_concurrency", Node::u32_value)?
                .unwrap_or(3),
        })
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
            max_connection_pools: None,
            track_remaining: false,
        }
    }
}

impl Cluster {
    /// Reads a cluster and checks it: addresses fit the discovery type, LOGICAL_DNS has one
    /// endpoint, timeouts are positive.
    pub fn parse(node: &Node<'_>) -> Result<Cluster> {
        node.reject("health_checks", "active health checking")?;
        node.reject("transport_socket", "comes with TLS")?;
        node.reject("transport_socket_matches", "comes with TLS")?;
        node.reject("http2_protocol_options", "HTTP/2 upstreams")?;
        node.check_fields(&CLUSTER_FIELDS, &CLUSTER_UNSUPPORTED)?;

        let name = node.required("name")?.non_empty_str()?.to_string();
        let discovery_type = node
            .opt("type", |n| {
                n.enum_str(
                    &["STATIC", "STRICT_DNS", "LOGICAL_DNS"],
                    &["EDS", "ORIGINAL_DST"],
                )
                .map(|t| match t {
                    "STRICT_DNS" => DiscoveryType::StrictDns,
                    "LOGICAL_DNS" => DiscoveryType::LogicalDns,
                    _ => DiscoveryType::Static,
                })
            })?
            .unwrap_or_default();
        let lb_policy = node
            .opt("lb_policy", |n| {
                n.enum_str(
                    &["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"],
                    &[
                        "RING_HASH",
                        "MAGLEV",
                        "CLUSTER_PROVIDED",
                        "LOAD_BALANCING_POLICY_CONFIG",
                    ],
                )
                .map(|p| match p {
                    "LEAST_REQUEST" => LbPolicy::LeastRequest,
                    "RANDOM" => LbPolicy::Random,
                    _ => LbPolicy::RoundRobin,
                })
            })?
            .unwrap_or_default();
        let connect_timeout = node
            .opt("connect_timeout", |n| positive(n, Duration::ZERO, "0s"))?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let dns_refresh_rate = node
            .opt("dns_refresh_rate", |n| {
                positive(n, Duration::from_millis(1), "1ms")
            })?
            .unwrap_or(DEFAULT_DNS_REFRESH_RATE);
        let dns_lookup_family = node
            .opt("dns_lookup_family", |n| {
                n.enum_str(&["AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"], &[])
                    .map(|f| match f {
                        "V4_ONLY" => DnsLookupFamily::V4Only,
                        "V6_ONLY" => DnsLookupFamily::V6Only,
                        "V4_PREFERRED" => DnsLookupFamily::V4Preferred,
                        "ALL" => DnsLookupFamily::All,
                        _ => DnsLookupFamily::Auto,
                    })
            })?
            .unwrap_or_default();

        let allow_hostname = discovery_type != DiscoveryType::Static;
        let endpoints = match (node.get("load_assignment"), node.get("hosts")) {
            (Some(_), Some(hosts)) => {
                return Err(hosts.error("use either load_assignment or the legacy hosts, not both"))
            }
            (Some(assignment), None) => parse_load_assignment(&assignment, allow_hostname)?,
            (None, Some(hosts)) => vec![LocalityLbEndpoints {
                locality: None,
                lb_endpoints: hosts
                    .as_list()?
                    .iter()
                    .map(|h| {
                        Ok(LbEndpoint {
                            address: parse_endpoint_address(h, allow_hostname)?,
                            hostname: None,
                            load_balancing_weight: 1,
                            path: h.path().to_string(),
                        })
                    })
                    .collect::<Result<_>>()?,
                load_balancing_weight: None,
                priority: 0,
            }],
            (None, None) => Vec::new(),
        };
        if discovery_type == DiscoveryType::LogicalDns
            && (endpoints.len() != 1 || endpoints[0].lb_endpoints.len() != 1)
        {
            let path = node
                .get("load_assignment")
                .or_else(|| node.get("hosts"))
                .map_or_else(
                    || node.field_path("load_assignment"),
                    |n| n.path().to_string(),
                );
            return Err(ConfigError::invalid(
                path,
                "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
            ));
        }

        Ok(Cluster {
            name,
            discovery_type,
            connect_timeout,
            lb_policy,
            endpoints,
            per_connection_buffer_limit_bytes: node
                .opt("per_connection_buffer_limit_bytes", Node::u32_value)?
                .unwrap_or(DEFAULT_BUFFER_LIMIT_BYTES),
            dns_refresh_rate,
            dns_lookup_family,
            circuit_breakers: node
                .opt("circuit_breakers", CircuitBreakers::parse)?
                .unwrap_or_default(),
            http_protocol_options: parse_http_options(node)?,
            path: node.path().to_string(),
        })
    }

    /// Every endpoint of every locality, in order.
    pub fn lb_endpoints(&self) -> impl Iterator<Item = &LbEndpoint> {
        self.endpoints.iter().flat_map(|l| l.lb_endpoints.iter())
    }
}

/// A duration that must be greater than `floor` (Envoy's `gt` constraints).
fn positive(node: &Node<'_>, floor: Duration, floor_text: &str) -> Result<Duration> {
    let d = node.duration()?;
    if d <= floor {
        return Err(node.error(format!("must be greater than {floor_text}")));
    }
    Ok(d)
}

fn parse_load_assignment(
    node: &Node<'_>,
    allow_hostname: bool,
) -> Result<Vec<LocalityLbEndpoints>> {
    node.check_fields(
        &["cluster_name", "endpoints"],
        &["named_endpoints", "policy"],
    )?;
    node.required("cluster_name")?.non_empty_str()?;
    node.list("endpoints", |locality| {
        locality.check_fields(
            &[
                "locality",
                "lb_endpoints",
                "load_balancing_weight",
                "priority",
            ],
            &["metadata", "leds_cluster_locality_config", "proximity"],
        )?;
        let priority = locality.opt("priority", Node::as_u32)?.unwrap_or(0);
        if priority != 0 {
            return Err(locality.required("priority")?.error_of(
                ErrorKind::NotSupported,
                format!("priority {priority} is not supported by nuncio (only priority 0)"),
            ));
        }
        Ok(LocalityLbEndpoints {
            locality: locality.opt("locality", parse_locality)?,
            lb_endpoints: locality
                .list("lb_endpoints", |e| parse_lb_endpoint(e, allow_hostname))?,
            load_balancing_weight: locality.opt("load_balancing_weight", weight)?,
            priority,
        })
    })
}

fn parse_locality(node: &Node<'_>) -> Result<Locality> {
    node.check_fields(&["region", "zone", "sub_zone"], &[])?;
    let text = |field| -> Result<String> {
        Ok(node
            .opt(field, |n| n.as_str().map(str::to_string))?
            .unwrap_or_default())
    };
    Ok(Locality {
        region: text("region")?,
        zone: text("zone")?,
        sub_zone: text("sub_zone")?,
    })
}

/// A `load_balancing_weight`: a UInt32Value of at least 1.
fn weight(node: &Node<'_>) -> Result<u32> {
    let w = node.u32_value()?;
    if w == 0 {
        return Err(node.error("must be at least 1"));
    }
    Ok(w)
}

fn parse_lb_endpoint(node: &Node<'_>, allow_hostname: bool) -> Result<LbEndpoint> {
    node.check_fields(
        &["endpoint", "load_balancing_weight"],
        &["endpoint_name", "health_status", "metadata"],
    )?;
    let endpoint = node.required("endpoint")?;
    endpoint.reject("health_check_config", "active health checking")?;
    endpoint.check_fields(&["address", "hostname"], &["additional_addresses"])?;
    Ok(LbEndpoint {
        address: parse_endpoint_address(&endpoint.required("address")?, allow_hostname)?,
        hostname: endpoint.opt("hostname", |n| n.as_str().map(str::to_string))?,
        load_balancing_weight: node.opt("load_balancing_weight", weight)?.unwrap_or(1),
        path: node.path().to_string(),
    })
}

/// The fields of a `circuit_breakers.thresholds[]` (and `per_host_thresholds[]`) entry.
const THRESHOLD_FIELDS: &[&str] = &[
    "priority",
    "max_connections",
    "max_pending_requests",
    "max_requests",
    "max_retries",
    "retry_budget",
    "track_remaining",
    "max_connection_pools",
];

impl CircuitBreakers {
    /// Reads `circuit_breakers`.
    pub fn parse(node: &Node<'_>) -> Result<CircuitBreakers> {
        node.check_fields(&["thresholds", "per_host_thresholds"], &[])?;
        let mut breakers = CircuitBreakers::default();
        for t in node.list("per_host_thresholds", |t| Ok(t.clone()))? {
            t.check_fields(THRESHOLD_FIELDS, &[])?;
            let priority = t
                .opt("priority", |p| p.enum_str(&["DEFAULT", "HIGH"], &[]))?
                .unwrap_or("DEFAULT");
            // As Envoy's ClusterInfoImpl: the last entry for a priority wins.
            if let Some(max) = t.opt("max_connections", Node::u32_value)? {
                breakers.max_connections_per_host[usize::from(priority == "HIGH")] = Some(max);
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for t in node
            .get("thresholds")
            .map(|n| n.as_list())
            .transpose()?
            .unwrap_or_default()
        {
            t.check_fields(THRESHOLD_FIELDS, &[])?;
            let priority = t
                .opt("priority", |p| p.enum_str(&["DEFAULT", "HIGH"], &[]))?
                .unwrap_or("DEFAULT");
            if seen.contains(&priority) {
                return Err(t.error(format!(
                    "thresholds for priority {priority} are given twice"
                )));
            }
            seen.push(priority);
            let defaults = Thresholds::default();
            let limit = |field, default| -> Result<u32> {
                Ok(t.opt(field, Node::u32_value)?.unwrap_or(default))
            };
            let thresholds = Thresholds {
                max_connections: limit("max_connections", defaults.max_connections)?,
                max_pending_requests: limit("max_pending_requests", defaults.max_pending_requests)?,
                max_requests: limit("max_requests", defaults.max_requests)?,
                max_retries: limit("max_retries", defaults.max_retries)?,
                retry_budget: t.opt("retry_budget", RetryBudget::parse)?,
                max_connection_pools: t.opt("max_connection_pools", Node::u32_value)?,
                track_remaining: t.opt("track_remaining", Node::as_bool)?.unwrap_or(false),
            };
            if priority == "HIGH" {
                breakers.high = thresholds;
            } else {
                breakers.default = thresholds;
            }
        }
        Ok(breakers)
    }
}

/// The upstream HTTP options from `typed_extension_protocol_options` (Envoy's current place),
/// or the deprecated `common_http_protocol_options` cluster field, plus the deprecated
/// cluster-level `max_requests_per_connection`. Giving a value in two places is an error, as
/// in Envoy.
fn parse_http_options(cluster: &Node<'_>) -> Result<HttpProtocolOptions> {
    let mut from_extension: Option<(HttpProtocolOptions, String)> = None;
    if let Some(extensions) = cluster.get("typed_extension_protocol_options") {
        for (key, any) in extensions.entries()? {
            let (type_url, message) = any.any()?;
            if key != HTTP_OPTIONS_EXTENSION
                || super::node::type_name(type_url) != HTTP_OPTIONS_EXTENSION
            {
                return Err(any.error_of(
                    ErrorKind::NotSupported,
                    format!(
                        "protocol options '{key}' ({type_url}) are not supported by nuncio (supported: {HTTP_OPTIONS_EXTENSION})"
                    ),
                ));
            }
            from_extension = Some((
                parse_upstream_http_options(&message)?,
                message.path().to_string(),
            ));
        }
    }
    let legacy = cluster.get("common_http_protocol_options");
    let mut options = match (from_extension, legacy) {
        (Some(_), Some(legacy)) => {
            return Err(legacy.error(format!(
                "cannot be combined with typed_extension_protocol_options.{HTTP_OPTIONS_EXTENSION}"
            )))
        }
        (Some((options, _)), None) => options,
        (None, Some(legacy)) => HttpProtocolOptions::parse(&legacy)?,
        (None, None) => HttpProtocolOptions::default(),
    };
    if let Some(n) = cluster.get("max_requests_per_connection") {
        if options.max_requests_per_connection.is_some() {
            return Err(n.error(
                "only one of max_requests_per_connection from Cluster or HttpProtocolOptions can be specified",
            ));
        }
        options.max_requests_per_connection = Some(n.u32_value()?).filter(|&m| m > 0);
    }
    Ok(options)
}

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`: HTTP/1.1 upstreams only.
fn parse_upstream_http_options(node: &Node<'_>) -> Result<HttpProtocolOptions> {
    node.reject("auto_config", "HTTP/2 upstreams")?;
    node.check_fields(
        &["common_http_protocol_options", "explicit_http_config"],
        &[
            "upstream_http_protocol_options",
            "use_downstream_protocol_config",
            "http_filters",
            "header_validation_config",
            "outlier_detection",
        ],
    )?;
    if let Some(explicit) = node.get("explicit_http_config") {
        explicit.reject("http2_protocol_options", "HTTP/2 upstreams")?;
        explicit.reject("http3_protocol_options", "HTTP/3 upstreams")?;
        explicit.check_fields(&["http_protocol_options"], &[])?;
        let http1 = explicit.required("http_protocol_options")?;
        http1.check_fields(&[], &HTTP1_OPTIONS_UNSUPPORTED)?;
    }
    Ok(node
        .opt("common_http_protocol_options", HttpProtocolOptions::parse)?
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> Result<Cluster> {
        let v = parse_yaml(yaml).unwrap();
        Cluster::parse(&Node::with_path(&v, "c"))
    }

    fn err(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    fn endpoint(address: &str, port: u16) -> String {
        format!("{{endpoint: {{address: {{socket_address: {{address: '{address}', port_value: {port}}}}}}}}}")
    }

    #[test]
    fn defaults() {
        let c = parse("name: app").unwrap();
        assert_eq!(c.name, "app");
        assert_eq!(c.discovery_type, DiscoveryType::Static);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
        assert!(c.endpoints.is_empty());
        assert_eq!(c.per_connection_buffer_limit_bytes, 1 << 20);
        assert_eq!(c.dns_refresh_rate, Duration::from_secs(5));
        assert_eq!(c.dns_lookup_family, DnsLookupFamily::Auto);
        assert_eq!(c.circuit_breakers.default, Thresholds::default());
        assert_eq!(c.circuit_breakers.default.max_retries, 3);
        assert_eq!(c.http_protocol_options, HttpProtocolOptions::default());
    }

    #[test]
    fn full_cluster() {
        let c = parse(&format!(
            "
name: app
type: STRICT_DNS
connect_timeout: 0.25s
lb_policy: LEAST_REQUEST
dns_refresh_rate: 10s
dns_lookup_family: V4_ONLY
per_connection_buffer_limit_bytes: {{value: 4096}}
circuit_breakers:
  thresholds:
  - max_connections: 10
    max_retries: 1
  - priority: HIGH
    max_requests: 20
    retry_budget: {{budget_percent: {{value: 12.5}}, min_retry_concurrency: 2}}
  per_host_thresholds:
  - {{max_connections: 4, max_requests: 9}}
  - {{priority: HIGH, max_pending_requests: 1}}
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {{idle_timeout: 30s, max_requests_per_connection: 100}}
    explicit_http_config: {{http_protocol_options: {{}}}}
load_assignment:
  cluster_name: app
  endpoints:
  - locality: {{region: eu, zone: a}}
    load_balancing_weight: 3
    lb_endpoints:
    - {}
    - endpoint:
        address: {{socket_address: {{address: backend.svc, port_value: 8080}}}}
        hostname: backend
      load_balancing_weight: 5
",
            endpoint("10.0.0.1", 80)
        ))
        .unwrap();
        assert_eq!(c.discovery_type, DiscoveryType::StrictDns);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.lb_policy, LbPolicy::LeastRequest);
        assert_eq!(c.dns_refresh_rate, Duration::from_secs(10));
        assert_eq!(c.dns_lookup_family, DnsLookupFamily::V4Only);
        assert_eq!(c.per_connection_buffer_limit_bytes, 4096);
        assert_eq!(
            c.circuit_breakers.default,
            Thresholds {
                max_connections: 10,
                max_pending_requests: 1024,
                max_requests: 1024,
                max_retries: 1,
                retry_budget: None,
                max_connection_pools: None,
                track_remaining: false,
            }
        );
        assert_eq!(c.circuit_breakers.high.max_requests, 20);
        assert_eq!(c.circuit_breakers.max_connections_per_host, [Some(4), None]);
        assert_eq!(
            c.circuit_breakers.high.retry_budget,
            Some(RetryBudget {
                budget_percent_hundredths: 1250,
                min_retry_concurrency: 2
            })
        );
        assert_eq!(
            c.http_protocol_options.idle_timeout,
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            c.http_protocol_options.max_requests_per_connection,
            Some(100)
        );
        let locality = &c.endpoints[0];
        assert_eq!(locality.locality.as_ref().unwrap().region, "eu");
        assert_eq!(locality.load_balancing_weight, Some(3));
        let hosts: Vec<_> = c.lb_endpoints().collect();
        assert_eq!(
            hosts[0].address,
            EndpointAddress::Ip("10.0.0.1:80".parse().unwrap())
        );
        assert_eq!(hosts[0].load_balancing_weight, 1);
        assert_eq!(
            hosts[0].path,
            "c.load_assignment.endpoints[0].lb_endpoints[0]"
        );
        assert_eq!(
            hosts[1].address,
            EndpointAddress::Dns {
                hostname: "backend.svc".into(),
                port: 8080
            }
        );
        assert_eq!(hosts[1].hostname.as_deref(), Some("backend"));
        assert_eq!(hosts[1].load_balancing_weight, 5);
    }

    #[test]
    fn legacy_fields() {
        let c = parse(
            "name: a\nhosts: [{socket_address: {address: 127.0.0.1, port_value: 1}}]\nmax_requests_per_connection: 7\ncommon_http_protocol_options: {idle_timeout: 1s}",
        )
        .unwrap();
        assert_eq!(c.lb_endpoints().count(), 1);
        assert_eq!(c.http_protocol_options.max_requests_per_connection, Some(7));
        assert_eq!(
            c.http_protocol_options.idle_timeout,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn errors() {
        let one = endpoint("10.0.0.1", 80);
        let la = |eps: &str| {
            format!("load_assignment: {{cluster_name: a, endpoints: [{{lb_endpoints: [{eps}]}}]}}")
        };
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "c.name: required field is missing"),
            ("name: ''".into(), "c.name: must not be empty"),
            ("name: a\ntype: EDS".into(), "c.type: value 'EDS' is not supported by nuncio (supported: STATIC, STRICT_DNS, LOGICAL_DNS)"),
            ("name: a\ntype: DNS".into(), "c.type: unknown value 'DNS' (expected one of: STATIC, STRICT_DNS, LOGICAL_DNS)"),
            ("name: a\nlb_policy: MAGLEV".into(), "c.lb_policy: value 'MAGLEV' is not supported by nuncio (supported: ROUND_ROBIN, LEAST_REQUEST, RANDOM)"),
            ("name: a\nconnect_timeout: 0s".into(), "c.connect_timeout: must be greater than 0s"),
            ("name: a\ndns_refresh_rate: 0.001s".into(), "c.dns_refresh_rate: must be greater than 1ms"),
            ("name: a\nhealth_checks: []".into(), "c.health_checks: not supported by nuncio (active health checking)"),
            ("name: a\nhealth_checks: [{timeout: 1s}]".into(), "c.health_checks: not supported by nuncio (active health checking)"),
            ("name: a\ntransport_socket: {name: tls}".into(), "c.transport_socket: not supported by nuncio (comes with TLS)"),
            ("name: a\nhttp2_protocol_options: {}".into(), "c.http2_protocol_options: not supported by nuncio (HTTP/2 upstreams)"),
            ("name: a\noutlier_detection: {consecutive_5xx: 5}".into(), "c.outlier_detection: not supported by nuncio"),
            ("name: a\nlbPolicy: RANDOM\ncolor: red".into(), "c.color: unknown field (supported: name, type, connect_timeout, lb_policy, load_assignment, per_connection_buffer_limit_bytes, dns_refresh_rate, dns_lookup_family, circuit_breakers, max_requests_per_connection, common_http_protocol_options, typed_extension_protocol_options, hosts)"),
            (format!("name: a\n{}", la(&endpoint("backend", 80))), "c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: malformed IP address: backend (only STRICT_DNS and LOGICAL_DNS clusters resolve host names)"),
            (format!("name: a\ntype: LOGICAL_DNS\n{}", la(&format!("{one}, {one}"))), "c.load_assignment: LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint"),
            ("name: a\ntype: LOGICAL_DNS".into(), "c.load_assignment: LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint"),
            (format!("name: a\nload_assignment: {{endpoints: [{{lb_endpoints: [{one}]}}]}}"), "c.load_assignment.cluster_name: required field is missing"),
            (format!("name: a\nload_assignment: {{cluster_name: a, endpoints: [{{priority: 1, lb_endpoints: [{one}]}}]}}"), "c.load_assignment.endpoints[0].priority: priority 1 is not supported by nuncio (only priority 0)"),
            (format!("name: a\n{}", la("{endpoint: {address: {socket_address: {address: 1.1.1.1, port_value: 1}}}, load_balancing_weight: 0}")), "c.load_assignment.endpoints[0].lb_endpoints[0].load_balancing_weight: must be at least 1"),
            (format!("name: a\n{}", la("{endpoint: {health_check_config: {port_value: 1}}}")), "c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.health_check_config: not supported by nuncio (active health checking)"),
            (format!("name: a\n{}\nhosts: []", la(&one)), "c.hosts: use either load_assignment or the legacy hosts, not both"),
            ("name: a\ncircuit_breakers: {thresholds: [{max_connections: 1}, {priority: DEFAULT}]}".into(), "c.circuit_breakers.thresholds[1]: thresholds for priority DEFAULT are given twice"),
            ("name: a\ncircuit_breakers: {thresholds: [{max_connections: -1}]}".into(), "c.circuit_breakers.thresholds[0].max_connections: -1 is out of range (expected an integer in 0..=4294967295)"),
            ("name: a\ncircuit_breakers: {thresholds: [{track_remaining: 3}]}".into(), "c.circuit_breakers.thresholds[0].track_remaining: expected a boolean, found the number 3"),
            ("name: a\ncircuit_breakers: {thresholds: [{retry_budget: {budget_percent: {value: 101}}}]}".into(), "c.circuit_breakers.thresholds[0].retry_budget.budget_percent: must be a percentage between 0 and 100"),
            ("name: a\ntyped_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}}".into(), "c.typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config.http2_protocol_options: not supported by nuncio (HTTP/2 upstreams)"),
            ("name: a\ntyped_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {}}}".into(), "c.typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config.http_protocol_options: required field is missing"),
            ("name: a\ntyped_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http_protocol_options: {accept_http_10: true}}}}".into(), "c.typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config.http_protocol_options.accept_http_10: not supported by nuncio"),
            ("name: a\ntyped_extension_protocol_options: {envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions: {'@type': type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions}}".into(), "c.typed_extension_protocol_options.envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions: protocol options 'envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions' (type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions) are not supported by nuncio (supported: envoy.extensions.upstreams.http.v3.HttpProtocolOptions)"),
            ("name: a\ntyped_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, common_http_protocol_options: {}}}\ncommon_http_protocol_options: {}".into(), "c.common_http_protocol_options: cannot be combined with typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
            ("name: a\nmax_requests_per_connection: 1\ncommon_http_protocol_options: {max_requests_per_connection: 2}".into(), "c.max_requests_per_connection: only one of max_requests_per_connection from Cluster or HttpProtocolOptions can be specified"),
        ];
        for (yaml, expected) in cases {
            assert_eq!(err(&yaml), expected, "{yaml}");
        }
    }
}
