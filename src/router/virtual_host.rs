//! `VirtualHost`: one `virtual_hosts[]` entry — its domains, its routes in order, its header
//! edits and retry policy (Envoy's `VirtualHostImpl`).
//!
//! The domains are indexed by `RouteMatcher`; a virtual host only walks its routes, first match
//! wins.

use super::header_map::HeaderMapAccess;
use super::header_parser::HeaderParser;
use super::retry_policy::RetryPolicy;
use super::route_entry::{Action, ParseContext, RouteEntry};
use crate::config::{ErrorKind, Node, Result};

/// One virtual host.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `domains`, as configured (matching is `RouteMatcher`'s job).
    pub domains: Vec<String>,
    /// `routes`, in order.
    pub routes: Vec<RouteEntry>,
    /// The virtual host's `retry_policy`, used by routes without their own.
    pub retry_policy: Option<std::sync::Arc<RetryPolicy>>,
    pub(crate) request_headers: HeaderParser,
    pub(crate) response_headers: HeaderParser,
}

impl VirtualHost {
    /// The first route matching the request, with the length of the matched part of `:path`.
    pub fn route<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &H,
        random_value: u64,
    ) -> Option<(&RouteEntry, usize)> {
        let path = headers.request_path();
        self.routes
            .iter()
            .find_map(|r| r.matches(headers, path, random_value).map(|len| (r, len)))
    }

    /// Reads a `VirtualHost` message (its domains are checked by `RouteMatcher`).
    pub fn parse(node: &Node, ctx: &ParseContext) -> Result<VirtualHost> {
        node.check_fields(
            &[
                "name",
                "domains",
                "routes",
                "require_tls",
                "retry_policy",
                "request_headers_to_add",
                "request_headers_to_remove",
                "response_headers_to_add",
                "response_headers_to_remove",
            ],
            &[
                "matcher",
                "virtual_clusters",
                "rate_limits",
                "cors",
                "typed_per_filter_config",
                "include_request_attempt_count",
                "include_attempt_count_in_response",
                "retry_policy_typed_config",
                "hedge_policy",
                "include_is_timeout_retry_header",
                "per_request_buffer_limit_bytes",
                "request_body_buffer_limit",
                "request_mirror_policies",
                "metadata",
                "vhds",
            ],
        )?;
        if let Some(n) = node.get("require_tls") {
            let value = n.enum_str(&["NONE"], &["EXTERNAL_ONLY", "ALL"])?;
            debug_assert_eq!(value, "NONE");
        }
        let domains_node = node.required("domains")?;
        let domains = domains_node.as_list()?;
        if domains.is_empty() {
            return Err(
                domains_node.error_of(ErrorKind::Missing, "at least one domain is required")
            );
        }
        let domains = domains
            .iter()
            .map(|d| Ok(d.non_empty_str()?.to_string()))
            .collect::<Result<Vec<_>>>()?;
        let name = node.required("name")?.non_empty_str()?.to_string();
        let mut routes = node.list("routes", |r| RouteEntry::parse(r, ctx))?;
        let retry_policy = node
            .opt("retry_policy", RetryPolicy::parse)?
            .map(std::sync::Arc::new);
        if let Some(policy) = &retry_policy {
            for entry in &mut routes {
                if let Action::Route(action) = &mut entry.action {
                    action.inherit_retry_policy(policy);
                }
            }
        }
        Ok(VirtualHost {
            name,
            domains,
            routes,
            retry_policy,
            request_headers: HeaderParser::parse(
                node,
                "request_headers_to_add",
                "request_headers_to_remove",
            )?,
            response_headers: HeaderParser::parse(
                node,
                "response_headers_to_add",
                "response_headers_to_remove",
            )?,
        })
    }
}
