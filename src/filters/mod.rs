//! Network and HTTP filters, and the registry of filter factories (issues 3 and 4).
//!
//! Owns the registry that turns a config `Filter { name, typed_config }` into a factory
//! (Envoy's `NamedNetworkFilterConfigFactory` and `NamedListenerFilterConfigFactory`). A filter
//! is found by its `typed_config` type (`envoy.extensions.filters.network.echo.v3.Echo`), or by
//! its `name` when it has no `typed_config`, as Envoy does. Adding a filter is one file plus one
//! line in [`NETWORK_FILTERS`] or [`LISTENER_FILTERS`].
//!
//! Called by the listener manager (`server/listener_manager.rs`) on the main thread, at start
//! and in `--mode validate`; the factories read their config with the config module's `Node`
//! (errors carry the field's full path) and return the callbacks the workers run for each new
//! connection.

pub mod network;
pub mod proxy_protocol;

use std::sync::Arc;

use crate::config::{self, Bootstrap, ConfigError, ErrorKind, Filter};
use crate::network::listener::NetworkFilterFactoryCb;
use crate::network::listener_filter::ListenerFilterFactory;
use crate::stats::Store;

/// What a factory may consult while building from config (Envoy's `FactoryContext`).
pub struct FactoryContext<'a> {
    /// The whole config: clusters for cross-reference checks.
    pub bootstrap: &'a Bootstrap,
    /// The server's stats store (main thread's view).
    pub stats: &'a Store,
    /// One store view per worker, indexed by worker index: create per-worker handles here,
    /// at config time, so the hot path never looks a stat up.
    pub worker_stats: &'a [Store],
    /// The server's access log files and flush thread: `create(&AccessLogConfig)` turns a
    /// filter's `access_log[]` entry into a running `AccessLog`.
    pub access_log_manager: &'a crate::access_log::AccessLogManager,
}

/// A network filter type (Envoy's `NamedNetworkFilterConfigFactory`).
pub trait NamedNetworkFilterConfigFactory: Sync {
    /// The filter's well-known name, e.g. `envoy.filters.network.echo`.
    fn name(&self) -> &'static str;
    /// The config message type, e.g. `envoy.extensions.filters.network.echo.v3.Echo`.
    fn config_type(&self) -> &'static str;
    /// Reads `filter`'s config (`filter.config_node()`), checks it, and returns the callback
    /// that installs the filter on each new connection.
    fn create_filter_factory(
        &self,
        filter: &Filter,
        cx: &FactoryContext<'_>,
    ) -> config::Result<NetworkFilterFactoryCb>;
}

/// A listener filter type (Envoy's `NamedListenerFilterConfigFactory`).
pub trait NamedListenerFilterConfigFactory: Sync {
    fn name(&self) -> &'static str;
    fn config_type(&self) -> &'static str;
    fn create_listener_filter_factory(
        &self,
        filter: &Filter,
        cx: &FactoryContext<'_>,
    ) -> config::Result<Arc<dyn ListenerFilterFactory>>;
}

/// Every network filter nuncio has.
pub static NETWORK_FILTERS: &[&dyn NamedNetworkFilterConfigFactory] = &[
    &network::echo::EchoConfigFactory,
    &network::tcp_proxy::TcpProxyConfigFactory,
    &crate::http::conn_manager_filter::HttpConnectionManagerFactory,
];

/// Every listener filter nuncio has.
pub static LISTENER_FILTERS: &[&dyn NamedListenerFilterConfigFactory] =
    &[&ProxyProtocolConfigFactory];

/// Builds the factory of one network filter from its config.
pub fn create_network_filter_factory(
    filter: &Filter,
    cx: &FactoryContext<'_>,
) -> config::Result<NetworkFilterFactoryCb> {
    let found = NETWORK_FILTERS
        .iter()
        .find(|f| matches_filter(filter, f.name(), f.config_type()));
    match found {
        Some(factory) => factory.create_filter_factory(filter, cx),
        None => Err(not_found(filter, "network")),
    }
}

/// Builds the factory of one listener filter from its config.
pub fn create_listener_filter_factory(
    filter: &Filter,
    cx: &FactoryContext<'_>,
) -> config::Result<Arc<dyn ListenerFilterFactory>> {
    let found = LISTENER_FILTERS
        .iter()
        .find(|f| matches_filter(filter, f.name(), f.config_type()));
    match found {
        Some(factory) => factory.create_listener_filter_factory(filter, cx),
        None => Err(not_found(filter, "listener")),
    }
}

/// Envoy's lookup: by the `typed_config` type when there is one, else by name.
fn matches_filter(filter: &Filter, name: &str, config_type: &str) -> bool {
    match &filter.typed_config {
        Some(typed) => typed.type_name() == config_type,
        None => filter.name == name,
    }
}

fn not_found(filter: &Filter, kind: &str) -> ConfigError {
    match &filter.typed_config {
        Some(typed) => ConfigError::new(
            ErrorKind::NotSupported,
            format!("{}.typed_config", filter.path),
            format!(
                "no {kind} filter is registered for type '{}' (filter '{}')",
                typed.type_url, filter.name
            ),
        ),
        None => ConfigError::new(
            ErrorKind::NotSupported,
            format!("{}.name", filter.path),
            format!(
                "no {kind} filter is registered with the name '{}'",
                filter.name
            ),
        ),
    }
}

/// `envoy.filters.listener.proxy_protocol` in the registry.
struct ProxyProtocolConfigFactory;

impl NamedListenerFilterConfigFactory for ProxyProtocolConfigFactory {
    fn name(&self) -> &'static str {
        "envoy.filters.listener.proxy_protocol"
    }
    fn config_type(&self) -> &'static str {
        "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"
    }
    fn create_listener_filter_factory(
        &self,
        filter: &Filter,
        cx: &FactoryContext<'_>,
    ) -> config::Result<Arc<dyn ListenerFilterFactory>> {
        Ok(Arc::new(proxy_protocol::ProxyProtocolFactory::from_config(
            filter.typed_config.as_ref(),
            cx.stats,
        )?))
    }
}
