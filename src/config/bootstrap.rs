//! `envoy.config.bootstrap.v3.Bootstrap`: the whole config file.
//!
//! [`Bootstrap::parse`] reads the document with [`Node`] and checks what spans listeners and
//! clusters (unique names, unique addresses). Called by `config::load_file`/`load_str`; the
//! result is read by the server at start (listener manager, cluster manager, admin) and by the
//! filter factories, which check their references against [`Bootstrap::has_cluster`].

use std::net::SocketAddr;

use serde_yaml::Value;

use super::admin::Admin;
use super::cluster::Cluster;
use super::error::{ConfigError, Result};
use super::listener::Listener;
use super::node::{Node, RawConfig};

const BOOTSTRAP_FIELDS: [&str; 4] = ["node", "static_resources", "admin", "layered_runtime"];
/// Bootstrap fields Envoy has that nuncio does not implement.
const BOOTSTRAP_UNSUPPORTED: [&str; 37] = [
    "node_context_params",
    "dynamic_resources",
    "cluster_manager",
    "hds_config",
    "flags_path",
    "stats_sinks",
    "deferred_stat_options",
    "stats_config",
    "stats_flush_interval",
    "stats_flush_on_admin",
    "watchdog",
    "watchdogs",
    "tracing",
    "overload_manager",
    "enable_dispatcher_stats",
    "header_prefix",
    "stats_server_version_override",
    "use_tcp_for_dns_lookups",
    "dns_resolution_config",
    "typed_dns_resolver_config",
    "bootstrap_extensions",
    "fatal_actions",
    "config_sources",
    "default_config_source",
    "default_socket_interface",
    "certificate_provider_instances",
    "inline_headers",
    "perf_tracing_file_path",
    "default_regex_engine",
    "xds_delegate_extension",
    "xds_config_tracker_extension",
    "listener_manager",
    "application_log_config",
    "grpc_async_client_manager_config",
    "memory_allocator_manager",
    "runtime",
    "stats_eviction_interval",
];

/// The parsed config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap {
    /// `node`: the server's identity. Default: none.
    pub node: Option<ServerNode>,
    /// `static_resources`.
    pub static_resources: StaticResources,
    /// `admin`. Default: none (no admin endpoint).
    pub admin: Option<Admin>,
    /// `layered_runtime`: checked for shape (static and admin layers only) and kept as written;
    /// nuncio reads no runtime key yet. Default: none.
    pub layered_runtime: Option<RawConfig>,
    /// The document as parsed (anchors and merge keys resolved), for `/config_dump`.
    pub source: Value,
}

/// `node`: who this server is, shown by the admin endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerNode {
    /// `id`. Default "".
    pub id: String,
    /// `cluster` (the service this server belongs to). Default "".
    pub cluster: String,
}

/// `static_resources`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaticResources {
    /// `listeners`, in order.
    pub listeners: Vec<Listener>,
    /// `clusters`, in order.
    pub clusters: Vec<Cluster>,
}

impl Bootstrap {
    /// Reads a whole document (`Value` from [`parse_yaml`](super::parse_yaml)).
    pub fn parse(document: Value) -> Result<Bootstrap> {
        let root = Node::root(&document);
        if document.is_null() {
            // Envoy refuses an empty file too ("Unable to convert YAML as JSON").
            return Err(root.error("the config document is empty"));
        }
        root.check_fields(&BOOTSTRAP_FIELDS, &BOOTSTRAP_UNSUPPORTED)?;
        let node = root.opt("node", parse_server_node)?;
        let static_resources = root
            .opt("static_resources", parse_static_resources)?
            .unwrap_or_default();
        let admin = root.opt("admin", Admin::parse)?;
        let layered_runtime = root.opt("layered_runtime", parse_layered_runtime)?;
        if let Some(admin_address) = admin.as_ref().and_then(|a| a.address) {
            if let Some(l) = static_resources
                .listeners
                .iter()
                .find(|l| admin_address.port() != 0 && l.address == admin_address)
            {
                return Err(ConfigError::invalid(
                    "admin.address",
                    format!(
                        "address {admin_address} is also used by listener '{}'",
                        l.name
                    ),
                ));
            }
        }
        drop(root);
        Ok(Bootstrap {
            node,
            static_resources,
            admin,
            layered_runtime,
            source: document,
        })
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.static_resources
            .clusters
            .iter()
            .find(|c| c.name == name)
    }

    /// Whether a cluster named `name` exists (for filters' `cluster` references).
    pub fn has_cluster(&self, name: &str) -> bool {
        self.cluster(name).is_some()
    }

    /// The names of all clusters, in order.
    pub fn cluster_names(&self) -> Vec<&str> {
        self.static_resources
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.static_resources
            .listeners
            .iter()
            .find(|l| l.name == name)
    }
}

fn parse_server_node(node: &Node<'_>) -> Result<ServerNode> {
    node.check_fields(
        &["id", "cluster"],
        &[
            "metadata",
            "dynamic_parameters",
            "locality",
            "user_agent_name",
            "user_agent_version",
            "user_agent_build_version",
            "extensions",
            "client_features",
            "listening_addresses",
        ],
    )?;
    let text = |field| -> Result<String> {
        Ok(node
            .opt(field, |n| n.as_str().map(str::to_string))?
            .unwrap_or_default())
    };
    Ok(ServerNode {
        id: text("id")?,
        cluster: text("cluster")?,
    })
}

fn parse_static_resources(node: &Node<'_>) -> Result<StaticResources> {
    node.reject("secrets", "comes with TLS")?;
    node.check_fields(&["listeners", "clusters"], &[])?;

    let listeners = node.list("listeners", Listener::parse)?;
    for (i, listener) in listeners.iter().enumerate() {
        let earlier = &listeners[..i];
        if let Some(first) = earlier
            .iter()
            .find(|l| same_bind(l.address, listener.address))
        {
            return Err(ConfigError::invalid(
                format!("{}.address", listener.path),
                format!(
                    "listener '{}' has the same address {} as listener '{}' ({})",
                    listener.name, listener.address, first.name, first.path
                ),
            ));
        }
        if let Some(first) = earlier.iter().find(|l| l.name == listener.name) {
            return Err(ConfigError::invalid(
                format!("{}.name", listener.path),
                format!(
                    "duplicate listener name '{}' (also {})",
                    listener.name, first.path
                ),
            ));
        }
    }

    let clusters = node.list("clusters", Cluster::parse)?;
    for (i, cluster) in clusters.iter().enumerate() {
        if let Some(first) = clusters[..i].iter().find(|c| c.name == cluster.name) {
            return Err(ConfigError::invalid(
                format!("{}.name", cluster.path),
                format!("duplicate cluster '{}' (also {})", cluster.name, first.path),
            ));
        }
    }
    Ok(StaticResources {
        listeners,
        clusters,
    })
}

/// Two listeners that would bind the same socket. Port 0 asks the OS for a fresh port each
/// time, so it never collides.
fn same_bind(a: SocketAddr, b: SocketAddr) -> bool {
    a == b && a.port() != 0
}

/// `layered_runtime.layers[]`: static and admin layers are accepted (and kept); disk and RTDS
/// layers are not supported.
fn parse_layered_runtime(node: &Node<'_>) -> Result<RawConfig> {
    node.check_fields(&["layers"], &[])?;
    for layer in node
        .get("layers")
        .map(|n| n.as_list())
        .transpose()?
        .unwrap_or_default()
    {
        layer.check_fields(
            &["name", "static_layer", "admin_layer"],
            &["disk_layer", "rtds_layer"],
        )?;
        layer.required("name")?.non_empty_str()?;
        if let Some(admin_layer) = layer.get("admin_layer") {
            admin_layer.check_fields(&[], &[])?;
        }
        if let Some(static_layer) = layer.get("static_layer") {
            static_layer.entries()?;
        }
    }
    Ok(RawConfig::keep(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn err(yaml: &str) -> String {
        load_str(yaml).unwrap_err().to_string()
    }

    const LISTENER: &str = "{address: {socket_address: {address: 127.0.0.1, port_value: 10000}}, filter_chains: [{filters: [{name: envoy.filters.network.echo}]}]}";

    #[test]
    fn empty_documents() {
        assert_eq!(err(""), "the config document is empty");
        assert_eq!(err("# nothing\n"), "the config document is empty");
        let b = load_str("{}").unwrap();
        assert!(b.static_resources.listeners.is_empty());
        assert!(b.admin.is_none());
        let b = load_str("static_resources: {}\nnode: {id: a, cluster: b}").unwrap();
        assert_eq!(
            b.node,
            Some(ServerNode {
                id: "a".into(),
                cluster: "b".into()
            })
        );
    }

    #[test]
    fn top_level_errors() {
        assert_eq!(err("- a"), "expected a mapping, found a list");
        assert_eq!(
            err("dynamic_resources: {}"),
            "dynamic_resources: not supported by nuncio"
        );
        assert_eq!(
            err("stats_sinks: []"),
            "stats_sinks: not supported by nuncio"
        );
        assert_eq!(
            err("static_resource: {}"),
            "static_resource: unknown field (supported: node, static_resources, admin, layered_runtime)"
        );
        assert_eq!(
            err("static_resources: {secrets: []}"),
            "static_resources.secrets: not supported by nuncio (comes with TLS)"
        );
        assert_eq!(
            err("node: {id: a, locality: {zone: z}}"),
            "node.locality: not supported by nuncio"
        );
        assert_eq!(
            err("layered_runtime: {layers: [{name: d, disk_layer: {symlink_root: /x}}]}"),
            "layered_runtime.layers[0].disk_layer: not supported by nuncio"
        );
        assert_eq!(
            err("layered_runtime: {layers: [{static_layer: {}}]}"),
            "layered_runtime.layers[0].name: required field is missing"
        );
    }

    #[test]
    fn duplicates() {
        assert_eq!(
            err(&format!("static_resources: {{listeners: [{LISTENER}, {LISTENER}]}}")),
            "static_resources.listeners[1].address: listener '127.0.0.1:10000' has the same address 127.0.0.1:10000 as listener '127.0.0.1:10000' (static_resources.listeners[0])"
        );
        let other = LISTENER.replace("10000", "10001");
        assert_eq!(
            err(&format!(
                "static_resources: {{listeners: [{}, {}]}}",
                LISTENER.replacen('{', "{name: a, ", 1),
                other.replacen('{', "{name: a, ", 1)
            )),
            "static_resources.listeners[1].name: duplicate listener name 'a' (also static_resources.listeners[0])"
        );
        let zero = LISTENER.replace("10000", "0");
        let unnamed = load_str(&format!(
            "static_resources: {{listeners: [{zero}, {zero}]}}"
        ))
        .unwrap();
        let names: Vec<_> = unnamed
            .static_resources
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["127.0.0.1:0#0", "127.0.0.1:0#1"]);
        assert_eq!(
            load_str(&format!(
                "static_resources: {{listeners: [{}, {}]}}",
                zero.replacen('{', "{name: a, ", 1),
                zero.replacen('{', "{name: b, ", 1)
            ))
            .unwrap()
            .static_resources
            .listeners
            .len(),
            2
        );
        assert_eq!(
            err("static_resources: {clusters: [{name: x}, {name: y}, {name: x}]}"),
            "static_resources.clusters[2].name: duplicate cluster 'x' (also static_resources.clusters[0])"
        );
        assert_eq!(
            err(&format!(
                "static_resources: {{listeners: [{LISTENER}]}}\nadmin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}}}"
            )),
            "admin.address: address 127.0.0.1:10000 is also used by listener '127.0.0.1:10000'"
        );
    }

    #[test]
    fn cluster_lookups() {
        let b = load_str("static_resources: {clusters: [{name: x}, {name: y}]}").unwrap();
        assert_eq!(b.cluster_names(), ["x", "y"]);
        assert!(b.has_cluster("y"));
        assert!(!b.has_cluster("z"));
    }
}
