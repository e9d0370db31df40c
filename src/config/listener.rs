//! `envoy.config.listener.v3.Listener`: address, filter chains and their match rules, listener
//! filters.
//!
//! Parsed by the Bootstrap parser; read by the listener manager and the connection handler
//! (src/network/, src/server/), whose filter chain manager implements the matching that
//! [`FilterChainMatch`] describes. Filters' `typed_config` stays uninterpreted
//! ([`Filter::typed_config`]) for the filter factories in src/filters/.

use std::net::SocketAddr;
use std::time::Duration;

use super::address::{parse_listen_address, CidrRange};
use super::error::{ErrorKind, Result};
use super::node::{Node, TypedConfig};

/// Envoy's default `listener_filters_timeout`.
pub const DEFAULT_LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default `per_connection_buffer_limit_bytes` (listeners and clusters): 1 MiB.
pub const DEFAULT_BUFFER_LIMIT_BYTES: u32 = 1024 * 1024;

const LISTENER_FIELDS: [&str; 9] = [
    "name",
    "address",
    "stat_prefix",
    "filter_chains",
    "default_filter_chain",
    "listener_filters",
    "listener_filters_timeout",
    "per_connection_buffer_limit_bytes",
    "enable_reuse_port",
];
/// Listener fields Envoy has that nuncio does not implement.
const LISTENER_UNSUPPORTED: [&str; 28] = [
    "additional_addresses",
    "filter_chain_matcher",
    "use_original_dst",
    "metadata",
    "deprecated_v1",
    "drain_type",
    "continue_on_listener_filters_timeout",
    "transparent",
    "freebind",
    "socket_options",
    "tcp_fast_open_queue_length",
    "traffic_direction",
    "udp_listener_config",
    "api_listener",
    "connection_balance_config",
    "reuse_port",
    "access_log",
    "tcp_backlog_size",
    "max_connections_to_accept_per_socket_event",
    "bind_to_port",
    "internal_listener",
    "enable_mptcp",
    "ignore_global_conn_limit",
    "bypass_overload_manager",
    "fcds_config",
    "listener_specifier",
    "stat_prefix_for_downstream",
    "enable_dynamic_filter_chains",
];

const FILTER_CHAIN_FIELDS: [&str; 3] = ["filter_chain_match", "filters", "name"];
const FILTER_CHAIN_UNSUPPORTED: [&str; 3] =
    ["use_proxy_proto", "metadata", "on_demand_configuration"];

const MATCH_FIELDS: [&str; 5] = [
    "destination_port",
    "prefix_ranges",
    "source_type",
    "source_prefix_ranges",
    "source_ports",
];
const MATCH_UNSUPPORTED: [&str; 3] = [
    "address_suffix",
    "suffix_len",
    "direct_source_prefix_ranges",
];

const TLS: &str = "comes with TLS";

/// A listener: where to accept, and what to run on accepted connections.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// `name`. Envoy makes up a UUID when it is absent; nuncio uses the address
    /// (`127.0.0.1:10000`), which is stable across restarts, followed by the listener's position
    /// when the port is 0 (`127.0.0.1:0#2`).
    pub name: String,
    /// `address.socket_address`: an IP literal and a port (0: the OS picks one).
    pub address: SocketAddr,
    /// `stat_prefix`: replaces the address in `listener.<address>.` stats. Default: none.
    pub stat_prefix: Option<String>,
    /// `filter_chains`, in order.
    pub filter_chains: Vec<FilterChain>,
    /// `default_filter_chain`: used when no chain matches. Default: none (the connection is
    /// closed and counted in `no_filter_chain_match`).
    pub default_filter_chain: Option<FilterChain>,
    /// `listener_filters`, run in order on each accepted socket before the filter chain is
    /// chosen.
    pub listener_filters: Vec<Filter>,
    /// `listener_filters_timeout`. Default 15 s; 0 disables the timeout.
    pub listener_filters_timeout: Duration,
    /// `per_connection_buffer_limit_bytes`: the high watermark of each connection's buffers.
    /// Default 1 MiB.
    pub per_connection_buffer_limit_bytes: u32,
    /// `enable_reuse_port`: one SO_REUSEPORT socket per worker. Default true.
    pub enable_reuse_port: bool,
    /// Path of this listener in the document (`static_resources.listeners[0]`).
    pub path: String,
}

/// The name of an unnamed listener: its address, made unique with its position in the list
/// when the port is 0 (several such listeners may share the address).
fn default_name(address: SocketAddr, path: &str) -> String {
    let position = path
        .strip_suffix(']')
        .and_then(|p| p.rsplit_once('['))
        .map(|(_, index)| index);
    match position {
        Some(index) if address.port() == 0 => format!("{address}#{index}"),
        _ => address.to_string(),
    }
}

/// A filter chain: the network filters for the connections its match selects.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterChain {
    /// `name`. Default: empty.
    pub name: String,
    /// `filter_chain_match`. Default: matches every connection.
    pub filter_chain_match: FilterChainMatch,
    /// `filters`: the network filters, in order (the last one terminal, e.g. tcp_proxy).
    pub filters: Vec<Filter>,
    /// Path of this chain in the document.
    pub path: String,
}

/// `filter_chain_match`: the criteria, each of which must hold (an empty one holds always).
/// Envoy picks the most specific chain criterion by criterion in the order of the fields here;
/// the connection handler implements that.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterChainMatch {
    /// `destination_port` (1..=65535): the local port the connection was accepted on (or
    /// restored by a listener filter). Default: any.
    pub destination_port: Option<u16>,
    /// `prefix_ranges`: the local address must be in one of them. Default: any.
    pub prefix_ranges: Vec<CidrRange>,
    /// `source_type`. Default ANY.
    pub source_type: SourceType,
    /// `source_prefix_ranges`: the peer address must be in one of them. Default: any.
    pub source_prefix_ranges: Vec<CidrRange>,
    /// `source_ports`: the peer port must be one of them. Default: any.
    pub source_ports: Vec<u16>,
}

/// `filter_chain_match.source_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SourceType {
    /// `ANY`: any peer (the default).
    #[default]
    Any,
    /// `SAME_IP_OR_LOOPBACK`: the peer address equals the local address, or is loopback.
    SameIpOrLoopback,
    /// `EXTERNAL`: any peer the previous one does not match.
    External,
}

/// A network filter or listener filter: `name` and its uninterpreted `typed_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// `name`, e.g. `envoy.filters.network.tcp_proxy`.
    pub name: String,
    /// `typed_config` (with `"@type"`), for the factory registered for its type URL. Envoy
    /// allows leaving it out for filters that need no config; the factory is then found by
    /// `name`.
    pub typed_config: Option<TypedConfig>,
    /// Path of this filter in the document (`...filter_chains[0].filters[1]`).
    pub path: String,
}

impl Filter {
    /// Reads `{ name, typed_config }`; listener filters also have `filter_disabled`, which
    /// nuncio does not implement.
    pub fn parse(node: &Node<'_>) -> Result<Filter> {
        node.check_fields(
            &["name", "typed_config"],
            &["config_discovery", "filter_disabled"],
        )?;
        let name = node.required("name")?.non_empty_str()?.to_string();
        let typed_config = node.opt("typed_config", Node::typed_config)?;
        Ok(Filter {
            name,
            typed_config,
            path: node.path().to_string(),
        })
    }

    /// The `typed_config` type URL, or "" when there is none.
    pub fn type_url(&self) -> &str {
        self.typed_config
            .as_ref()
            .map_or("", |t| t.type_url.as_str())
    }

    /// A reader over the filter's config message: the `typed_config` node, or an empty message
    /// at `<path>.typed_config` when it is absent.
    pub fn config_node(&self) -> Node<'_> {
        match &self.typed_config {
            Some(typed) => typed.node(),
            None => Node::absent(format!("{}.typed_config", self.path)),
        }
    }
}

impl FilterChain {
    /// Reads a filter chain (also `default_filter_chain`, which has the same shape).
    pub fn parse(node: &Node<'_>) -> Result<FilterChain> {
        node.reject("transport_socket", TLS)?;
        node.reject("transport_socket_connect_timeout", TLS)?;
        node.check_fields(&FILTER_CHAIN_FIELDS, &FILTER_CHAIN_UNSUPPORTED)?;
        let filter_chain_match = node
            .opt("filter_chain_match", FilterChainMatch::parse)?
            .unwrap_or_default();
        Ok(FilterChain {
            name: node
                .opt("name", |n| n.as_str().map(str::to_string))?
                .unwrap_or_default(),
            filter_chain_match,
            filters: node.list("filters", Filter::parse)?,
            path: node.path().to_string(),
        })
    }
}

impl FilterChainMatch {
    /// Reads `filter_chain_match`.
    pub fn parse(node: &Node<'_>) -> Result<FilterChainMatch> {
        for field in [
            "server_names",
            "transport_protocol",
            "application_protocols",
        ] {
            node.reject(field, TLS)?;
        }
        node.check_fields(&MATCH_FIELDS, &MATCH_UNSUPPORTED)?;
        let destination_port = node.opt("destination_port", |n| {
            let port = n.u32_value()?;
            if !(1..=65535).contains(&port) {
                return Err(n.error(format!(
                    "{port} is out of range (expected an integer in 1..=65535)"
                )));
            }
            Ok(port as u16)
        })?;
        let source_type = node
            .opt("source_type", |n| {
                n.enum_str(&["ANY", "SAME_IP_OR_LOOPBACK", "EXTERNAL"], &[])
                    .map(|name| match name {
                        "SAME_IP_OR_LOOPBACK" => SourceType::SameIpOrLoopback,
                        "EXTERNAL" => SourceType::External,
                        _ => SourceType::Any,
                    })
            })?
            .unwrap_or_default();
        let mut source_ports =
            node.list("source_ports", |n| n.as_u32_in(1, 65535).map(|p| p as u16))?;
        // Order does not matter to the match; sorted, two equal matches compare equal.
        source_ports.sort_unstable();
        source_ports.dedup();
        Ok(FilterChainMatch {
            destination_port,
            prefix_ranges: node.list("prefix_ranges", CidrRange::parse)?,
            source_type,
            source_prefix_ranges: node.list("source_prefix_ranges", CidrRange::parse)?,
            source_ports,
        })
    }

    /// The criteria as a value where order does not matter, for finding two chains with the
    /// same match.
    fn normalized(&self) -> FilterChainMatch {
        let mut m = self.clone();
        for ranges in [&mut m.prefix_ranges, &mut m.source_prefix_ranges] {
            ranges.sort_by_key(|r| (r.address, r.prefix_len));
            ranges.dedup();
        }
        m
    }
}

impl Listener {
    /// Reads a listener and checks what can be checked within it: a chain to run, no two
    /// chains with the same match.
    pub fn parse(node: &Node<'_>) -> Result<Listener> {
        node.check_fields(&LISTENER_FIELDS, &LISTENER_UNSUPPORTED)?;
        let address = parse_listen_address(&node.required("address")?)?;
        let name = match node.get("name") {
            Some(n) => n.as_str()?.to_string(),
            None => default_name(address, node.path()),
        };
        let filter_chains = node.list("filter_chains", FilterChain::parse)?;
        let default_filter_chain = node.opt("default_filter_chain", FilterChain::parse)?;
        if filter_chains.is_empty() && default_filter_chain.is_none() {
            return Err(node.error_of(
                ErrorKind::Missing,
                "a listener needs filter_chains or a default_filter_chain",
            ));
        }
        for (i, chain) in filter_chains.iter().enumerate() {
            let this = chain.filter_chain_match.normalized();
            if let Some(first) = filter_chains[..i]
                .iter()
                .find(|c| c.filter_chain_match.normalized() == this)
            {
                return Err(super::error::ConfigError::invalid(
                    format!("{}.filter_chain_match", chain.path),
                    format!(
                        "multiple filter chains with the same matching rules are defined (also {})",
                        first.path
                    ),
                ));
            }
        }
        Ok(Listener {
            name,
            address,
            stat_prefix: node.opt("stat_prefix", |n| n.as_str().map(str::to_string))?,
            filter_chains,
            default_filter_chain,
            listener_filters: node.list("listener_filters", Filter::parse)?,
            listener_filters_timeout: node
                .opt("listener_filters_timeout", Node::duration)?
                .unwrap_or(DEFAULT_LISTENER_FILTERS_TIMEOUT),
            per_connection_buffer_limit_bytes: node
                .opt("per_connection_buffer_limit_bytes", Node::u32_value)?
                .unwrap_or(DEFAULT_BUFFER_LIMIT_BYTES),
            enable_reuse_port: node
                .opt("enable_reuse_port", Node::bool_value)?
                .unwrap_or(true),
            path: node.path().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> Result<Listener> {
        let v = parse_yaml(yaml).unwrap();
        Listener::parse(&Node::with_path(&v, "l"))
    }

    fn err(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    const ECHO: &str = "
address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
filter_chains:
- filters:
  - name: envoy.filters.network.echo
    typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo}
";

    #[test]
    fn defaults() {
        let l = parse(ECHO).unwrap();
        assert_eq!(l.name, "127.0.0.1:10000");
        assert_eq!(l.address, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(l.listener_filters_timeout, Duration::from_secs(15));
        assert_eq!(l.per_connection_buffer_limit_bytes, 1 << 20);
        assert!(l.enable_reuse_port);
        assert_eq!(l.stat_prefix, None);
        assert_eq!(l.filter_chains.len(), 1);
        assert_eq!(
            l.filter_chains[0].filter_chain_match,
            FilterChainMatch::default()
        );
        let f = &l.filter_chains[0].filters[0];
        assert_eq!(f.name, "envoy.filters.network.echo");
        assert_eq!(f.path, "l.filter_chains[0].filters[0]");
        assert_eq!(
            f.type_url(),
            "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"
        );
        assert_eq!(
            f.config_node().path(),
            "l.filter_chains[0].filters[0].typed_config"
        );
    }

    #[test]
    fn full_listener() {
        let l = parse(
            "
name: front
address: {socket_address: {address: '::', port_value: 443}}
stat_prefix: front
listener_filters:
- name: envoy.filters.listener.proxy_protocol
  typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol}
listener_filters_timeout: 0.5s
per_connection_buffer_limit_bytes: 32768
enable_reuse_port: false
filter_chains:
- name: internal
  filter_chain_match:
    destination_port: 443
    prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]
    source_type: SAME_IP_OR_LOOPBACK
    source_prefix_ranges: [{address_prefix: 192.168.0.0, prefix_len: 16}]
    source_ports: [1000, 999]
  filters: [{name: envoy.filters.network.echo}]
- filters: [{name: envoy.filters.network.echo}]
default_filter_chain:
  filters: [{name: envoy.filters.network.echo}]
",
        )
        .unwrap();
        assert_eq!(l.name, "front");
        assert_eq!(l.stat_prefix.as_deref(), Some("front"));
        assert_eq!(l.listener_filters_timeout, Duration::from_millis(500));
        assert_eq!(l.per_connection_buffer_limit_bytes, 32768);
        assert!(!l.enable_reuse_port);
        assert_eq!(
            l.listener_filters[0].name,
            "envoy.filters.listener.proxy_protocol"
        );
        let m = &l.filter_chains[0].filter_chain_match;
        assert_eq!(m.destination_port, Some(443));
        assert_eq!(m.prefix_ranges[0].to_string(), "10.0.0.0/8");
        assert_eq!(m.source_type, SourceType::SameIpOrLoopback);
        assert_eq!(m.source_ports, [999, 1000]);
        assert_eq!(l.filter_chains[0].name, "internal");
        assert_eq!(
            l.filter_chains[1].filter_chain_match,
            FilterChainMatch::default()
        );
        assert!(l.default_filter_chain.is_some());
        assert!(l.filter_chains[1].filters[0].typed_config.is_none());
    }

    #[test]
    fn errors() {
        let addr = "address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n";
        assert_eq!(
            err(addr),
            "l: a listener needs filter_chains or a default_filter_chain"
        );
        assert_eq!(err("name: x\n"), "l.address: required field is missing");
        assert_eq!(
            err(&format!(
                "{addr}filter_chains: [{{filters: [], transport_socket: {{name: tls}}}}]"
            )),
            "l.filter_chains[0].transport_socket: not supported by nuncio (comes with TLS)"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{filter_chain_match: {{server_names: [a.com]}}}}]")),
            "l.filter_chains[0].filter_chain_match.server_names: not supported by nuncio (comes with TLS)"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{filter_chain_match: {{transport_protocol: tls}}}}]")),
            "l.filter_chains[0].filter_chain_match.transport_protocol: not supported by nuncio (comes with TLS)"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{filter_chain_match: {{source_type: INTERNAL}}}}]")),
            "l.filter_chains[0].filter_chain_match.source_type: unknown value 'INTERNAL' (expected one of: ANY, SAME_IP_OR_LOOPBACK, EXTERNAL)"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{filter_chain_match: {{destination_port: 0}}}}]")),
            "l.filter_chains[0].filter_chain_match.destination_port: 0 is out of range (expected an integer in 1..=65535)"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{filter_chain_match: {{source_ports: [70000]}}}}]")),
            "l.filter_chains[0].filter_chain_match.source_ports[0]: 70000 is out of range (expected an integer in 1..=65535)"
        );
        assert_eq!(
            err(&format!(
                "{addr}filter_chains: [{{filters: [{{name: ''}}]}}]"
            )),
            "l.filter_chains[0].filters[0].name: must not be empty"
        );
        assert_eq!(
            err(&format!(
                "{addr}filter_chains: [{{filters: [{{name: x, typed_config: {{a: 1}}}}]}}]"
            )),
            "l.filter_chains[0].filters[0].typed_config.@type: required field is missing"
        );
        assert_eq!(
            err(&format!(
                "{addr}filter_chains: [{{filters: [{{name: x, config_discovery: {{}}}}]}}]"
            )),
            "l.filter_chains[0].filters[0].config_discovery: not supported by nuncio"
        );
        assert_eq!(
            err(&format!(
                "{addr}filter_chains: [{{filters: []}}]\nfreebind: true"
            )),
            "l.freebind: not supported by nuncio"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{filters: []}}]\nfilterChain: []")),
            "l.filterChain: unknown field (supported: name, address, stat_prefix, filter_chains, default_filter_chain, listener_filters, listener_filters_timeout, per_connection_buffer_limit_bytes, enable_reuse_port)"
        );
        assert_eq!(
            err(&format!(
                "{addr}filter_chains:\n- filter_chain_match: {{source_ports: [1, 2]}}\n- filter_chain_match: {{source_ports: [2, 1]}}\n"
            )),
            "l.filter_chains[1].filter_chain_match: multiple filter chains with the same matching rules are defined (also l.filter_chains[0])"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{}}, {{}}]")),
            "l.filter_chains[1].filter_chain_match: multiple filter chains with the same matching rules are defined (also l.filter_chains[0])"
        );
        assert_eq!(
            err(&format!("{addr}filter_chains: [{{}}]\nlistener_filters_timeout: 15")),
            "l.listener_filters_timeout: expected a duration like \"5s\" or \"0.25s\", found the number 15"
        );
    }
}
