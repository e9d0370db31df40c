//! The HTTP filter factory registry (Envoy's `NamedHttpFilterConfigFactory` registry): maps an
//! `http_filters[]` entry, by its `typed_config` type or by its name, to the factory that parses
//! its config once at start and then builds the filters of each new stream.
//!
//! Called by the connection manager's config parser (`http::config`) for each `http_filters`
//! entry; the resulting [`FilterFactoryCb`]s are called by `ActiveStream` creation, once per
//! request, to fill a [`FilterChainBuilder`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{self, Node, TypedConfig};

use super::filter::{StreamDecoderFilter, StreamEncoderFilter};
use super::filters::{health_check, local_ratelimit};

/// What factories may use when parsing their config (Envoy's `FactoryContext`).
#[derive(Clone, Default)]
pub struct HttpFilterFactoryContext {
    /// The server's "failing health checks" flag (set by the admin's `POST /healthcheck/fail`,
    /// cleared by `POST /healthcheck/ok`); read by the health_check filter.
    pub health_check_failed: Arc<AtomicBool>,
    /// The bootstrap's `node.cluster` (Envoy's `localInfo().clusterName()`; "" when unset):
    /// the health_check filter's `x-envoy-upstream-healthchecked-cluster`.
    pub local_cluster: String,
}

/// Collects the filters of one new stream (Envoy's `FilterChainFactoryCallbacks`).
#[derive(Default)]
pub struct FilterChainBuilder {
    pub decoders: Vec<Box<dyn StreamDecoderFilter>>,
    pub encoders: Vec<Box<dyn StreamEncoderFilter>>,
}

impl FilterChainBuilder {
    pub fn add_decoder_filter(&mut self, filter: Box<dyn StreamDecoderFilter>) {
        self.decoders.push(filter);
    }
    pub fn add_encoder_filter(&mut self, filter: Box<dyn StreamEncoderFilter>) {
        self.encoders.push(filter);
    }
}

/// A parsed filter config that creates the filter(s) of each stream (Envoy's `FilterFactoryCb`).
/// Shared by every worker, hence `Send + Sync`.
pub trait FilterFactoryCb: Send + Sync {
    fn create_filters(&self, chain: &mut FilterChainBuilder);
}

/// One kind of HTTP filter.
pub trait HttpFilterFactory: Send + Sync {
    /// The filter's canonical name, e.g. `envoy.filters.http.health_check`.
    fn name(&self) -> &'static str;
    /// The config message type, e.g. `envoy.extensions.filters.http.health_check.v3.HealthCheck`.
    fn config_type(&self) -> &'static str;
    /// Parses `typed_config` (errors carry its path).
    fn create(
        &self,
        config: &Node,
        context: &HttpFilterFactoryContext,
    ) -> config::Result<Arc<dyn FilterFactoryCb>>;
}

/// The router's name and config type: it is always last and built by the connection manager
/// itself, so it has no factory here.
pub const ROUTER_NAME: &str = "envoy.filters.http.router";
pub const ROUTER_TYPE: &str = "envoy.extensions.filters.http.router.v3.Router";

/// Every HTTP filter nuncio ships (besides the router).
pub fn factories() -> Vec<Box<dyn HttpFilterFactory>> {
    vec![
        Box::new(health_check::HealthCheckFactory),
        Box::new(local_ratelimit::LocalRateLimitFactory),
    ]
}

/// A configured `http_filters` entry.
pub enum HttpFilterEntry {
    Filter {
        name: String,
        factory: Arc<dyn FilterFactoryCb>,
    },
    /// `envoy.filters.http.router`; `suppress_envoy_headers`: the router adds no `x-envoy-*`
    /// header of its own.
    Router { suppress_envoy_headers: bool },
}

/// Resolves one `http_filters[i]` entry: the `typed_config` type wins, else the name (Envoy's
/// lookup order). `disabled: true` is not supported.
pub fn resolve(
    entry: &Node,
    context: &HttpFilterFactoryContext,
) -> config::Result<HttpFilterEntry> {
    entry.reject(
        "config_discovery",
        "dynamic filter config (ECDS) is not implemented",
    )?;
    entry.reject("disabled", "per-route filter enabling is not implemented")?;
    entry.check_fields(&["name", "typed_config", "is_optional"], &[])?;
    let name = entry.required("name")?.non_empty_str()?;
    let typed: Option<TypedConfig> = entry.opt("typed_config", Node::typed_config)?;
    let type_name = typed.as_ref().map(|t| t.type_name().to_string());
    let wanted = |factory_name: &str, factory_type: &str| match &type_name {
        Some(t) => t == factory_type,
        None => name == factory_name,
    };
    if wanted(ROUTER_NAME, ROUTER_TYPE) {
        let mut suppress_envoy_headers = false;
        if let Some(typed) = &typed {
            let node = typed.node();
            node.check_fields(
                &["dynamic_stats", "suppress_envoy_headers"],
                &[
                    "start_child_span",
                    "upstream_log",
                    "upstream_log_options",
                    "strict_check_headers",
                    "respect_expected_rq_timeout",
                    "suppress_grpc_request_failure_code_stats",
                    "upstream_http_filters",
                ],
            )?;
            suppress_envoy_headers = node
                .opt("suppress_envoy_headers", Node::as_bool)?
                .unwrap_or(false);
        }
        return Ok(HttpFilterEntry::Router {
            suppress_envoy_headers,
        });
    }
    for factory in factories() {
        if wanted(factory.name(), factory.config_type()) {
            let Some(typed) = &typed else {
                return Err(entry.error(format!("filter {name} requires a typed_config")));
            };
            let cb = factory.create(&typed.node(), context)?;
            return Ok(HttpFilterEntry::Filter {
                name: name.to_string(),
                factory: cb,
            });
        }
    }
    let what = type_name.unwrap_or_else(|| name.to_string());
    Err(entry.error_of(
        config::ErrorKind::NotSupported,
        format!(
            "HTTP filter '{what}' is not supported by nuncio (supported: {ROUTER_NAME}, {})",
            factories()
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}
