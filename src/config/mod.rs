//! Envoy v3 YAML configuration: parsing with field paths in every error (issue 3).
//!
//! Owns the reading of the config file into typed structs. The entry points are
//! [`load_file`] and [`load_str`] (called by the CLI and the server at start, and by
//! `--mode validate`), which return a [`Bootstrap`]. The building block every parser uses,
//! here and in the filter factories, is [`Node`], a path-tracking reader over the YAML
//! document, so that any error names the field:
//! `static_resources.listeners[0].address.socket_address.port_value: 70000 is out of range ...`.
//!
//! One concept per file: `node.rs` (the reader), `error.rs`, `duration.rs`, `address.rs`
//! (socket addresses, CIDR ranges), `listener.rs`, `cluster.rs`, `protocol.rs`
//! (`common_http_protocol_options`), `admin.rs`, `bootstrap.rs`.
//!
//! What is not interpreted here: filters' `typed_config`, kept as a [`TypedConfig`] for the
//! factory registered for its type (src/filters/), which reads it with [`TypedConfig::node`]
//! and checks its references (e.g. `cluster`) against [`Bootstrap::has_cluster`]; the admin's
//! `access_log` and the runtime layers, kept as [`RawConfig`]. Everything else is either
//! parsed or rejected with its path: a field Envoy has and nuncio does not gets
//! `not supported by nuncio`, any other gets `unknown field (supported: ...)`.

mod address;
mod admin;
mod bootstrap;
mod cluster;
mod duration;
mod error;
mod listener;
mod node;
mod protocol;

pub use address::{parse_endpoint_address, parse_listen_address, CidrRange, EndpointAddress};
pub use admin::Admin;
pub use bootstrap::{Bootstrap, ServerNode, StaticResources};
pub use cluster::{
    CircuitBreakers, Cluster, DiscoveryType, DnsLookupFamily, LbEndpoint, LbPolicy, Locality,
    LocalityLbEndpoints, RetryBudget, Thresholds,
};
pub use duration::parse_duration_str;
pub use error::{ConfigError, ErrorKind, Result};
pub use listener::{Filter, FilterChain, FilterChainMatch, Listener, SourceType};
pub use node::{parse_yaml, type_name, Node, RawConfig, TypedConfig};
pub use protocol::HttpProtocolOptions;

use std::path::Path;

/// Reads and parses the config file at `path` (YAML or JSON).
pub fn load_file(path: impl AsRef<Path>) -> Result<Bootstrap> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            ErrorKind::Io,
            "",
            format!("cannot read config file '{}': {e}", path.display()),
        )
    })?;
    load_str(&text)
}

/// Parses a config document (YAML or JSON).
pub fn load_str(text: &str) -> Result<Bootstrap> {
    Bootstrap::parse(parse_yaml(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Envoy's front-proxy example (docs: "Front proxy" sandbox), as a user would bring it.
    const FRONT_PROXY: &str = r#"
node:
  id: front-proxy
  cluster: front
static_resources:
  listeners:
  - name: listener_0
    address:
      socket_address:
        address: 0.0.0.0
        port_value: 8080
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          codec_type: AUTO
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: backend
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/service/1"
                route:
                  cluster: service1-envoy
              - match:
                  prefix: "/service/2"
                route:
                  cluster: service2-envoy
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service1-envoy
    type: STRICT_DNS
    lb_policy: ROUND_ROBIN
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: service1-envoy
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: service1
                port_value: 8000
  - name: service2-envoy
    type: STRICT_DNS
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: service2-envoy
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: service2
                port_value: 8000
admin:
  address:
    socket_address:
      address: 0.0.0.0
      port_value: 8001
layered_runtime:
  layers:
  - name: static_layer_0
    static_layer:
      envoy:
        resource_limits:
          listener:
            example_listener_name:
              connection_limit: 10000
  - name: admin_layer_0
    admin_layer: {}
"#;

    #[test]
    fn front_proxy_example_parses() {
        let b = load_str(FRONT_PROXY).unwrap();
        assert_eq!(b.node.as_ref().unwrap().id, "front-proxy");
        let l = &b.static_resources.listeners[0];
        assert_eq!(l.name, "listener_0");
        assert_eq!(l.address, "0.0.0.0:8080".parse().unwrap());
        let hcm = &l.filter_chains[0].filters[0];
        assert_eq!(hcm.name, "envoy.filters.network.http_connection_manager");
        let typed = hcm.typed_config.as_ref().unwrap();
        assert_eq!(
            typed.type_name(),
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        );
        let route_config = typed.node().required("route_config").unwrap();
        assert_eq!(
            route_config.path(),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config"
        );
        assert_eq!(b.cluster_names(), ["service1-envoy", "service2-envoy"]);
        let c = b.cluster("service1-envoy").unwrap();
        assert_eq!(c.discovery_type, DiscoveryType::StrictDns);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            b.cluster("service2-envoy").unwrap().connect_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            c.lb_endpoints().next().unwrap().address.to_string(),
            "service1:8000"
        );
        assert_eq!(
            b.admin.as_ref().unwrap().address,
            Some("0.0.0.0:8001".parse().unwrap())
        );
        assert!(b.layered_runtime.is_some());
    }

    #[test]
    fn example_configs_parse() {
        for (name, text) in [
            ("echo.yaml", include_str!("../../configs/echo.yaml")),
            (
                "tcp_proxy.yaml",
                include_str!("../../configs/tcp_proxy.yaml"),
            ),
        ] {
            let b = load_str(text).unwrap_or_else(|e| panic!("configs/{name}: {e}"));
            assert!(!b.static_resources.listeners.is_empty(), "{name}");
        }
    }

    #[test]
    fn json_documents_parse() {
        let b = load_str(
            r#"{"static_resources": {"clusters": [{"name": "a", "connectTimeout": "1s"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            b.static_resources.clusters[0].connect_timeout,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn file_errors() {
        let e = load_file("/nonexistent/envoy.yaml").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Io);
        assert!(
            e.to_string()
                .starts_with("cannot read config file '/nonexistent/envoy.yaml': "),
            "{e}"
        );
        let e = load_str("static_resources:\n  listeners: [\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert!(
            e.to_string().starts_with("YAML syntax error at line "),
            "{e}"
        );
    }

    #[test]
    fn filter_reference_error_has_the_full_path() {
        // What a filter factory does with a missing cluster (the registry owns the check).
        let b = load_str(include_str!("../../configs/tcp_proxy.yaml")).unwrap();
        let filter = &b.static_resources.listeners[0].filter_chains[0].filters[0];
        let cluster = filter.config_node().required("cluster").unwrap();
        let e = cluster.error(format!("cluster '{}' does not exist", "nope"));
        assert_eq!(
            e.to_string(),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster: cluster 'nope' does not exist"
        );
    }
}
