//! `RouteConfig`: a whole `route_config` (Envoy's `ConfigImpl`): the virtual hosts, their
//! domain index, the route-config-level header edits, and the entry point of routing.
//!
//! Built once at config load by the HTTP connection manager's factory
//! ([`RouteConfig::parse`]), then shared read-only by every worker. Per request the connection
//! manager (or router filter) calls [`RouteConfig::route`] and acts on the
//! [`RouteResult`](super::RouteResult).

use std::collections::HashSet;

use super::header_map::HeaderMapAccess;
use super::header_parser::HeaderParser;
use super::route_entry::{Action, ClusterSpecifier, ParseContext};
use super::route_matcher::{PortStripping, RouteMatcher};
use super::route_result::{Route, RouteResult};
use super::virtual_host::VirtualHost;
use crate::config::{Node, Result};

/// Envoy's default `max_direct_response_body_size_bytes`.
pub const DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE: usize = 4096;

/// What the connection manager tells the route table besides the `route_config` itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteConfigOptions<'a> {
    /// The clusters of the bootstrap (routes naming another cluster are an error unless
    /// `validate_clusters: false`). `None` skips the check (tests, tools).
    pub clusters: Option<&'a HashSet<String>>,
    /// From the connection manager's `strip_any_host_port` / `strip_matching_host_port`.
    pub port_stripping: PortStripping,
}

/// A loaded route configuration.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// `name`.
    pub name: String,
    /// The virtual hosts in configured order.
    pub virtual_hosts: Vec<VirtualHost>,
    matcher: RouteMatcher,
    port_stripping: PortStripping,
    /// `most_specific_header_mutations_wins`: apply route-config edits first, route edits last.
    pub most_specific_header_mutations_wins: bool,
    pub(crate) request_headers: HeaderParser,
    pub(crate) response_headers: HeaderParser,
}

impl RouteConfig {
    /// Reads a `RouteConfiguration` message.
    pub fn parse(node: &Node, options: &RouteConfigOptions) -> Result<RouteConfig> {
        node.check_fields(
            &[
                "name",
                "virtual_hosts",
                "request_headers_to_add",
                "request_headers_to_remove",
                "response_headers_to_add",
                "response_headers_to_remove",
                "most_specific_header_mutations_wins",
                "validate_clusters",
                "max_direct_response_body_size_bytes",
                "ignore_port_in_host_matching",
                // Applied by the HCM's header sanitizing (`HcmConfig::internal_only_headers`).
                "internal_only_headers",
            ],
            &[
                "vhds",
                "cluster_specifier_plugins",
                "request_mirror_policies",
                "ignore_path_parameters_in_path_matching",
                "typed_per_filter_config",
                "metadata",
            ],
        )?;
        let name = node
            .opt("name", |n| Ok(n.as_str()?.to_string()))?
            .unwrap_or_default();
        let validate = node
            .opt("validate_clusters", Node::bool_value)?
            .unwrap_or(true);
        let ctx = ParseContext {
            clusters: if validate { options.clusters } else { None },
            max_direct_response_body_size: node
                .opt("max_direct_response_body_size_bytes", Node::u32_value)?
                .map_or(DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE, |n| n as usize),
        };
        let mut virtual_hosts = node.list("virtual_hosts", |v| VirtualHost::parse(v, &ctx))?;
        let matcher = match node.get("virtual_hosts") {
            Some(list) => RouteMatcher::new(&virtual_hosts, &list, &name)?,
            None => RouteMatcher::default(),
        };
        let mut port_stripping = options.port_stripping;
        if node
            .opt("ignore_port_in_host_matching", Node::as_bool)?
            .unwrap_or(false)
        {
            port_stripping = PortStripping::Any;
        }
        let most_specific_header_mutations_wins = node
            .opt("most_specific_header_mutations_wins", Node::as_bool)?
            .unwrap_or(false);
        let request_headers =
            HeaderParser::parse(node, "request_headers_to_add", "request_headers_to_remove")?;
        let response_headers = HeaderParser::parse(
            node,
            "response_headers_to_add",
            "response_headers_to_remove",
        )?;
        for vhost in &mut virtual_hosts {
            let request = !vhost.request_headers.is_empty() || !request_headers.is_empty();
            let response = !vhost.response_headers.is_empty() || !response_headers.is_empty();
            for entry in &mut vhost.routes {
                entry.decide_edits(request, response);
            }
        }
        Ok(RouteConfig {
            name,
            virtual_hosts,
            matcher,
            port_stripping,
            most_specific_header_mutations_wins,
            request_headers,
            response_headers,
        })
    }

    /// The virtual host for a request, if any.
    pub fn virtual_host<H: HeaderMapAccess + ?Sized>(&self, headers: &H) -> Option<&VirtualHost> {
        let index = self
            .matcher
            .find(|| headers.get(":authority"), self.port_stripping)?;
        self.virtual_hosts.get(index)
    }

    /// Routes a request (Envoy's `ConfigImpl::route`): finds the virtual host, then the first
    /// matching route, and says what to do. `random_value` is the stream's random number (as
    /// in Envoy): it decides `runtime_fraction` matches and picks among `weighted_clusters`. Reads `headers`, changes nothing: the caller
    /// applies the result (`Forward::finalize_request_headers`, ...).
    pub fn route<'c, H: HeaderMapAccess + ?Sized>(
        &'c self,
        headers: &H,
        random_value: u64,
    ) -> RouteResult<'c> {
        let Some(virtual_host) = self.virtual_host(headers) else {
            return RouteResult::NoRoute;
        };
        let Some((entry, matched_len)) = virtual_host.route(headers, random_value) else {
            return RouteResult::NoRoute;
        };
        let route = Route {
            config: self,
            virtual_host,
            entry,
            matched_len,
        };
        match &entry.action {
            Action::Route(action) => {
                let cluster = match &action.cluster {
                    ClusterSpecifier::Cluster(name) => super::SelectedCluster::Named(name),
                    other => select_cluster(other, headers, random_value),
                };
                RouteResult::Forward(super::Forward {
                    route,
                    action,
                    cluster,
                })
            }
            _ => local_answer(route, headers),
        }
    }
}

/// The cluster of a `cluster_header` or `weighted_clusters` route (a `cluster` route names
/// its own).
#[inline(never)]
fn select_cluster<'c, H: HeaderMapAccess + ?Sized>(
    specifier: &'c ClusterSpecifier,
    headers: &H,
    random_value: u64,
) -> super::SelectedCluster<'c> {
    match specifier {
        ClusterSpecifier::Cluster(name) => super::SelectedCluster::Named(name),
        ClusterSpecifier::ClusterHeader(header) => {
            super::SelectedCluster::FromHeader(headers.get(header).unwrap_or("").to_string())
        }
        ClusterSpecifier::Weighted(w) => super::SelectedCluster::Weighted(w.pick(random_value)),
    }
}

/// A route answered by the proxy itself: a `redirect` or a `direct_response` (built apart
/// from the forwarding path every proxied request takes).
#[inline(never)]
fn local_answer<'c, H: HeaderMapAccess + ?Sized>(route: Route<'c>, headers: &H) -> RouteResult<'c> {
    match &route.entry.action {
        Action::Redirect(redirect) => RouteResult::Redirect(super::Redirect {
            route,
            status: redirect.response_code,
            location: redirect.location(headers, route.matched_len),
        }),
        Action::DirectResponse(direct) => {
            RouteResult::DirectResponse(super::DirectResponse::new(route, direct, headers))
        }
        // Not reached: the caller forwards `route` actions itself.
        Action::Route(_) => RouteResult::NoRoute,
    }
}
