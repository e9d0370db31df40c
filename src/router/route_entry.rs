//! `RouteEntry`: one route of a virtual host — its match (Envoy's `RouteEntryImplBase` and
//! its `Prefix`/`Path`/`Regex`/`PathSeparatedPrefix` subclasses) and its action (`route`,
//! `redirect` or `direct_response`).
//!
//! Matching a route is a conjunction of: `runtime_fraction` (the stream's random number
//! modulo the denominator is below the numerator: `default_value` only, there is no runtime
//! layer), `grpc` (a gRPC content-type), the path condition (on `:path` without its query and
//! fragment), every header matcher, every query-parameter matcher. It allocates nothing.
//! The path conditions, as Envoy 1.40 does them:
//! - `prefix`: the path starts with it (`case_sensitive: false` compares ASCII case-blind);
//! - `path`: the path equals it;
//! - `safe_regex`: the regex matches the whole path (RE2 full match);
//! - `path_separated_prefix`: the path equals it or continues with `/` (`/psp` matches `/psp`,
//!   `/psp/x`, not `/pspx`).
//!
//! Called by `VirtualHost::route`; the result of a match is built in `route_result.rs`.

use std::collections::HashSet;
use std::time::Duration;

use regex::Regex;

use super::header_map::HeaderMapAccess;
use super::header_matcher::HeaderMatcher;
use super::header_parser::HeaderParser;
use super::path_rewrite::{path_end, PathRewrite};
use super::query_parameter_matcher::QueryParameterMatcher;
use super::redirect::RedirectAction;
use super::retry_policy::RetryPolicy;
use super::string_matcher::{parse_regex_matcher, starts_with};
use super::timeout::RouteTimeouts;
use crate::config::{ErrorKind, Node, Result};

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the route-config parsers need to know besides the YAML.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext<'a> {
    /// The clusters a route may name (`None`: `validate_clusters: false`).
    pub clusters: Option<&'a HashSet<String>>,
    /// `max_direct_response_body_size_bytes` (default 4096).
    pub max_direct_response_body_size: usize,
}

/// The path condition of a route.
#[derive(Clone, Debug)]
pub enum PathMatcher {
    /// `prefix`.
    Prefix { prefix: String, ignore_case: bool },
    /// `path`.
    Path { path: String, ignore_case: bool },
    /// `safe_regex` (anchored at both ends).
    Regex(Regex),
    /// `path_separated_prefix`.
    PathSeparatedPrefix { prefix: String, ignore_case: bool },
}

impl PathMatcher {
    /// If `path` (the `:path` value) matches, the length of the matched part (the part a
    /// `prefix_rewrite` replaces).
    pub fn matches(&self, path: &str) -> Option<usize> {
        if let PathMatcher::Prefix {
            prefix,
            ignore_case,
        } = self
        {
            // The prefix must lie within the path before its query or fragment: as the path
            // starts with it, that is the prefix itself holding no `?` or `#` (then it never
            // matches), so the path need not be scanned for its end.
            let within = !prefix.bytes().any(|b| b == b'?' || b == b'#');
            return (within && starts_with(path, prefix, *ignore_case)).then_some(prefix.len());
        }
        self.matches_other(path)
    }

    /// [`matches`](Self::matches) for the conditions other than `prefix`.
    fn matches_other(&self, path: &str) -> Option<usize> {
        let path = &path[..path_end(path)];
        match self {
            PathMatcher::Prefix {
                prefix,
                ignore_case,
            } => starts_with(path, prefix, *ignore_case).then_some(prefix.len()),
            PathMatcher::Path {
                path: want,
                ignore_case,
            } => {
                let eq = if *ignore_case {
                    path.eq_ignore_ascii_case(want)
                } else {
                    path == want
                };
                eq.then_some(want.len())
            }
            PathMatcher::Regex(re) => re.is_match(path).then_some(path.len()),
            PathMatcher::PathSeparatedPrefix {
                prefix,
                ignore_case,
            } => {
                let boundary =
                    path.len() == prefix.len() || path.as_bytes().get(prefix.len()) == Some(&b'/');
                (boundary && starts_with(path, prefix, *ignore_case)).then_some(prefix.len())
            }
        }
    }

    fn parse(node: &Node) -> Result<PathMatcher> {
        const SPECIFIERS: &[&str] = &["prefix", "path", "safe_regex", "path_separated_prefix"];
        const UNSUPPORTED: &[&str] = &["connect_matcher", "path_match_policy"];
        for field in UNSUPPORTED {
            node.reject(
                field,
                "only prefix, path, safe_regex and path_separated_prefix are",
            )?;
        }
        let set: Vec<&str> = SPECIFIERS.iter().copied().filter(|f| node.has(f)).collect();
        let ignore_case = !node
            .opt("case_sensitive", Node::bool_value)?
            .unwrap_or(true);
        match set.as_slice() {
            [] => Err(node.error_of(
                ErrorKind::Missing,
                "one of prefix, path, safe_regex, path_separated_prefix is required",
            )),
            ["prefix"] => Ok(PathMatcher::Prefix {
                prefix: path_value(&node.required("prefix")?)?.to_string(),
                ignore_case,
            }),
            ["path"] => Ok(PathMatcher::Path {
                path: path_value(&node.required("path")?)?.to_string(),
                ignore_case,
            }),
            ["safe_regex"] => Ok(PathMatcher::Regex(parse_regex_matcher(
                &node.required("safe_regex")?,
            )?)),
            [field] => {
                // path_separated_prefix, the last of SPECIFIERS.
                let n = node.required(field)?;
                let prefix = n.as_str()?;
                // Envoy's proto rule: ^[^?#]+[^?#/]$
                let valid =
                    !prefix.is_empty() && !prefix.contains(['?', '#']) && !prefix.ends_with('/');
                if !valid {
                    return Err(n.error(
                        "must be non-empty, without '?' or '#', and must not end with '/'",
                    ));
                }
                Ok(PathMatcher::PathSeparatedPrefix {
                    prefix: prefix.to_string(),
                    ignore_case,
                })
            }
            [_, second, ..] => Err(node
                .required(second)?
                .error(format!("specify only one of {}", SPECIFIERS.join(", ")))),
        }
    }
}

fn path_value<'a>(n: &Node<'a>) -> Result<&'a str> {
    let s = n.as_str()?;
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(n.error("may not contain CR, LF or NUL"));
    }
    Ok(s)
}

/// How a route chooses its cluster.
#[derive(Clone, Debug)]
pub enum ClusterSpecifier {
    /// `cluster` (shared: the router keeps it per request without copying it).
    Cluster(std::sync::Arc<str>),
    /// `cluster_header`: the cluster named by this request header (lower-case name).
    ClusterHeader(String),
    /// `weighted_clusters`.
    Weighted(WeightedClusters),
}

/// One of `weighted_clusters.clusters`.
#[derive(Clone, Debug)]
pub struct WeightedCluster {
    /// The cluster (shared: the router keeps it per request without copying it).
    pub name: std::sync::Arc<str>,
    /// Its share.
    pub weight: u32,
    /// `host_rewrite_literal` for this cluster (overrides the route's).
    pub host_rewrite_literal: Option<String>,
    pub(crate) request_headers: HeaderParser,
    pub(crate) response_headers: HeaderParser,
}

/// `weighted_clusters`. Only built by the parser, which guarantees a non-empty list and a
/// positive total (so `pick` cannot divide by zero).
#[derive(Clone, Debug)]
pub struct WeightedClusters {
    clusters: Vec<WeightedCluster>,
    total_weight: u64,
}

impl WeightedClusters {
    /// The clusters in configured order.
    pub fn clusters(&self) -> &[WeightedCluster] {
        &self.clusters
    }

    /// The sum of the weights (> 0).
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// The cluster for `random_value`, as Envoy picks it: `random % total` falls in one
    /// cluster's `[begin, begin + weight)` in configured order.
    pub fn pick(&self, random_value: u64) -> &WeightedCluster {
        let selected = random_value % self.total_weight;
        let mut end = 0u64;
        for cluster in &self.clusters {
            end += u64::from(cluster.weight);
            if selected < end {
                return cluster;
            }
        }
        // Not reached: after the loop `end == total_weight > selected`. The parser guarantees a
        // non-empty list, so `last` exists.
        self.clusters
            .last()
            .unwrap_or_else(|| unreachable!("weighted_clusters is never empty"))
    }

    fn parse(node: &Node, ctx: &ParseContext) -> Result<WeightedClusters> {
        node.check_fields(
            &["clusters", "total_weight"],
            &[
                "runtime_key_prefix",
                "header_name",
                "random_value_specifier",
            ],
        )?;
        let list = node.required("clusters")?;
        let clusters = list.as_list()?;
        if clusters.is_empty() {
            return Err(list.error("at least one cluster is required"));
        }
        let clusters = clusters
            .iter()
            .map(|c| {
                c.check_fields(
                    &[
                        "name",
                        "weight",
                        "host_rewrite_literal",
                        "request_headers_to_add",
                        "request_headers_to_remove",
                        "response_headers_to_add",
                        "response_headers_to_remove",
                    ],
                    &[
                        "cluster_header",
                        "metadata_match",
                        "typed_per_filter_config",
                    ],
                )?;
                let name_node = c.required("name")?;
                let name = name_node.non_empty_str()?;
                check_cluster(&name_node, name, ctx)?;
                Ok(WeightedCluster {
                    name: name.into(),
                    weight: c.opt("weight", Node::u32_value)?.unwrap_or(0),
                    host_rewrite_literal: c.opt("host_rewrite_literal", |n| {
                        Ok(n.non_empty_str()?.to_string())
                    })?,
                    request_headers: HeaderParser::parse(
                        c,
                        "request_headers_to_add",
                        "request_headers_to_remove",
                    )?,
                    response_headers: HeaderParser::parse(
                        c,
                        "response_headers_to_add",
                        "response_headers_to_remove",
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total_weight: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
        if total_weight == 0 {
            return Err(
                node.error("Sum of weights in the weighted_cluster must be greater than 0.")
            );
        }
        if total_weight > u64::from(u32::MAX) {
            return Err(
                node.error("Sum of weights in the weighted_cluster must not exceed 4294967295.")
            );
        }
        if let Some(n) = node.get("total_weight") {
            let want = n.u32_value()?;
            if u64::from(want) != total_weight {
                return Err(n.error(format!(
                    "Sum of weights in the weighted_cluster should add up to {want}"
                )));
            }
        }
        Ok(WeightedClusters {
            clusters,
            total_weight,
        })
    }
}

fn check_cluster(node: &Node, name: &str, ctx: &ParseContext) -> Result<()> {
    match ctx.clusters {
        Some(known) if !known.contains(name) => {
            Err(node.error(format!("route: unknown cluster '{name}'")))
        }
        _ => Ok(()),
    }
}

/// How the Host header is rewritten on the way upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRewrite {
    /// Unchanged.
    None,
    /// `host_rewrite_literal`.
    Literal(String),
    /// `auto_host_rewrite`: the router sets the chosen upstream host's hostname.
    Auto,
}

/// A `route` action: forward upstream.
#[derive(Clone, Debug)]
pub struct RouteAction {
    /// Where to.
    pub cluster: ClusterSpecifier,
    /// Status when the chosen cluster does not exist (`cluster_header`): 503 by default.
    pub cluster_not_found_response_code: u16,
    /// `prefix_rewrite` / `regex_rewrite`.
    pub path_rewrite: Option<PathRewrite>,
    /// `host_rewrite_literal` / `auto_host_rewrite`.
    pub host_rewrite: HostRewrite,
    /// `append_x_forwarded_host`: keep the old Host in `x-forwarded-host` when rewriting it.
    pub append_x_forwarded_host: bool,
    /// `timeout`: `None` when `0s` (disabled); 15 s when absent.
    pub timeout: Option<Duration>,
    /// `idle_timeout`: `None` when absent (the HCM's `stream_idle_timeout` applies); zero
    /// disables the stream idle timeout for this route.
    pub idle_timeout: Option<Duration>,
    /// The route's own `retry_policy` (else the virtual host's applies).
    /// (Shared: a request's `RetryState` keeps it for the life of the request.)
    pub retry_policy: Option<std::sync::Arc<RetryPolicy>>,
    /// `timeout` with the per-try timeout of the retry policy in force (the route's, else the
    /// virtual host's: set again by `VirtualHost::parse`), worked out at load.
    pub timeouts: RouteTimeouts,
}

impl RouteAction {
    fn parse(node: &Node, ctx: &ParseContext) -> Result<RouteAction> {
        node.check_fields(
            &[
                "cluster",
                "cluster_header",
                "weighted_clusters",
                "cluster_not_found_response_code",
                "prefix_rewrite",
                "regex_rewrite",
                "host_rewrite_literal",
                "auto_host_rewrite",
                "append_x_forwarded_host",
                "timeout",
                "idle_timeout",
                "retry_policy",
            ],
            &[
                "cluster_specifier_plugin",
                "inline_cluster_specifier_plugin",
                "metadata_match",
                "path_rewrite_policy",
                "host_rewrite_header",
                "host_rewrite_path_regex",
                "early_data_policy",
                "request_mirror_policies",
                "priority",
                "rate_limits",
                "include_vh_rate_limits",
                "hash_policy",
                "cors",
                "max_grpc_timeout",
                "grpc_timeout_offset",
                "upgrade_configs",
                "internal_redirect_policy",
                "internal_redirect_action",
                "max_internal_redirects",
                "hedge_policy",
                "max_stream_duration",
                "retry_policy_typed_config",
            ],
        )?;
        let specifiers: Vec<&str> = ["cluster", "cluster_header", "weighted_clusters"]
            .into_iter()
            .filter(|f| node.has(f))
            .collect();
        let cluster = match specifiers.as_slice() {
            ["cluster"] => {
                let n = node.required("cluster")?;
                let name = n.non_empty_str()?;
                check_cluster(&n, name, ctx)?;
                ClusterSpecifier::Cluster(name.into())
            }
            ["cluster_header"] => {
                let n = node.required("cluster_header")?;
                let name = n.non_empty_str()?;
                if name.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(n.error(format!("'{name}' is not a valid header name")));
                }
                ClusterSpecifier::ClusterHeader(name.to_ascii_lowercase())
            }
            [field] => {
                ClusterSpecifier::Weighted(WeightedClusters::parse(&node.required(field)?, ctx)?)
            }
            [] => {
                return Err(node.error_of(
                    ErrorKind::Missing,
                    "one of cluster, cluster_header, weighted_clusters is required",
                ))
            }
            [_, second, ..] => {
                return Err(node
                    .required(second)?
                    .error("specify only one of cluster, cluster_header, weighted_clusters"))
            }
        };
        let cluster_not_found_response_code = match node.get("cluster_not_found_response_code") {
            None => 503,
            Some(n) => match n.enum_str(
                &["SERVICE_UNAVAILABLE", "NOT_FOUND", "INTERNAL_SERVER_ERROR"],
                &[],
            )? {
                "NOT_FOUND" => 404,
                "INTERNAL_SERVER_ERROR" => 500,
                _ => 503,
            },
        };
        let literal = node.opt("host_rewrite_literal", |n| {
            Ok(n.non_empty_str()?.to_string())
        })?;
        let auto = node.opt("auto_host_rewrite", Node::bool_value)?;
        let host_rewrite = match (literal, auto) {
            (Some(_), Some(_)) => {
                return Err(node
                    .required("auto_host_rewrite")?
                    .error("specify only one of host_rewrite_literal, auto_host_rewrite"))
            }
            (Some(l), None) => HostRewrite::Literal(l),
            (None, Some(true)) => HostRewrite::Auto,
            _ => HostRewrite::None,
        };
        let path_rewrite = PathRewrite::parse(node, &[])?;
        let append_x_forwarded_host = node
            .opt("append_x_forwarded_host", Node::as_bool)?
            .unwrap_or(false);
        let timeout = node
            .opt("timeout", Node::duration)?
            .map_or(Some(DEFAULT_ROUTE_TIMEOUT), |d| (!d.is_zero()).then_some(d));
        let idle_timeout = node.opt("idle_timeout", Node::duration)?;
        let retry_policy = node
            .opt("retry_policy", RetryPolicy::parse)?
            .map(std::sync::Arc::new);
        let timeouts = RouteTimeouts::new(
            timeout,
            retry_policy.as_ref().and_then(|p| p.per_try_timeout),
        );
        Ok(RouteAction {
            cluster,
            cluster_not_found_response_code,
            path_rewrite,
            host_rewrite,
            append_x_forwarded_host,
            timeout,
            idle_timeout,
            retry_policy,
            timeouts,
        })
    }

    /// A route without a retry policy of its own takes the virtual host's `policy`, and with
    /// it its per-try timeout.
    pub(super) fn inherit_retry_policy(&mut self, policy: &RetryPolicy) {
        if self.retry_policy.is_none() {
            self.timeouts = RouteTimeouts::new(self.timeout, policy.per_try_timeout);
        }
    }
}

/// A `direct_response` action.
#[derive(Clone, Debug)]
pub struct DirectResponseAction {
    /// The status (200-599).
    pub status: u16,
    /// The body (`text/plain` when non-empty).
    pub body: String,
}

impl DirectResponseAction {
    fn parse(node: &Node, ctx: &ParseContext) -> Result<DirectResponseAction> {
        node.check_fields(&["status", "body"], &["body_format"])?;
        let status = node.required("status")?.as_u32_in(200, 599)? as u16;
        let body = match node.get("body") {
            None => String::new(),
            Some(b) => {
                b.check_fields(
                    &["inline_string", "filename"],
                    &["inline_bytes", "environment_variable", "watched_directory"],
                )?;
                let body = match (b.get("inline_string"), b.get("filename")) {
                    (Some(s), None) => s.as_str()?.to_string(),
                    (None, Some(f)) => {
                        let file = f.non_empty_str()?;
                        std::fs::read_to_string(file)
                            .map_err(|e| f.error(format!("cannot read '{file}': {e}")))?
                    }
                    (Some(_), Some(f)) => {
                        return Err(f.error("specify only one of inline_string, filename"))
                    }
                    (None, None) => String::new(),
                };
                if body.len() > ctx.max_direct_response_body_size {
                    return Err(b.error(format!(
                        "response body size is {} bytes; maximum is {}",
                        body.len(),
                        ctx.max_direct_response_body_size
                    )));
                }
                body
            }
        };
        Ok(DirectResponseAction { status, body })
    }
}

/// What a matched route does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Forward upstream.
    Route(RouteAction),
    /// Answer with a redirect.
    Redirect(RedirectAction),
    /// Answer with a fixed response.
    DirectResponse(DirectResponseAction),
}

/// One route.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    /// `name` (may be empty).
    pub name: String,
    /// The path condition.
    pub path: PathMatcher,
    headers: Vec<HeaderMatcher>,
    query_parameters: Vec<QueryParameterMatcher>,
    /// `runtime_fraction`: `(numerator, denominator)` of the share of requests that match.
    runtime_fraction: Option<(u64, u64)>,
    /// `grpc: {}`: only gRPC requests (content-type `application/grpc[+...|;...]`).
    grpc: bool,
    /// What to do.
    pub action: Action,
    pub(crate) request_headers: HeaderParser,
    pub(crate) response_headers: HeaderParser,
    /// Forwarding on this route edits the request: header edits at some level (route,
    /// virtual host, route config, a weighted cluster), a Host or a path rewrite. Decided at
    /// load (`RouteConfig::parse`, which knows every level): the usual route edits nothing,
    /// and its requests skip the evaluation.
    pub(crate) edits_request: bool,
    /// Some level (route, virtual host, route config) edits response headers (decided at
    /// load, as `edits_request`).
    pub(crate) edits_response: bool,
}

impl RouteEntry {
    /// If this route matches the request, the length of the matched part of `:path`.
    /// `random_value` is the stream's random number (the one weighted clusters use), for
    /// `runtime_fraction`.
    pub fn matches<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &H,
        path: &str,
        random_value: u64,
    ) -> Option<usize> {
        // The conditions are side-effect free: the path goes first, the others (the usual
        // route has none) are judged apart.
        let matched = self.path.matches(path)?;
        let conditions = self.runtime_fraction.is_some()
            || self.grpc
            || !self.headers.is_empty()
            || !self.query_parameters.is_empty();
        if conditions && !self.conditions_match(headers, path, random_value) {
            return None;
        }
        Some(matched)
    }

    /// The match conditions besides the path: `runtime_fraction`, `grpc`, header and
    /// query-parameter matchers.
    #[inline(never)]
    fn conditions_match<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &H,
        path: &str,
        random_value: u64,
    ) -> bool {
        if let Some((numerator, denominator)) = self.runtime_fraction {
            // Envoy's `evaluateFractionalPercent`.
            if random_value % denominator >= numerator {
                return false;
            }
        }
        if self.grpc && !is_grpc_request(headers) {
            return false;
        }
        self.headers.iter().all(|m| m.matches(headers))
            && self.query_parameters.iter().all(|m| m.matches(path))
    }

    /// Reads a `Route` message.
    pub fn parse(node: &Node, ctx: &ParseContext) -> Result<RouteEntry> {
        node.check_fields(
            &[
                "name",
                "match",
                "route",
                "redirect",
                "direct_response",
                "request_headers_to_add",
                "request_headers_to_remove",
                "response_headers_to_add",
                "response_headers_to_remove",
            ],
            &[
                "filter_action",
                "non_forwarding_action",
                "metadata",
                "decorator",
                "typed_per_filter_config",
                "tracing",
                "per_request_buffer_limit_bytes",
                "request_body_buffer_limit",
                "stat_prefix",
            ],
        )?;
        let m = node.required("match")?;
        m.check_fields(
            &[
                "prefix",
                "path",
                "safe_regex",
                "path_separated_prefix",
                "case_sensitive",
                "headers",
                "query_parameters",
                "runtime_fraction",
                "grpc",
            ],
            &[
                "connect_matcher",
                "path_match_policy",
                "tls_context",
                "dynamic_metadata",
                "filter_state",
                "cookies",
            ],
        )?;
        let actions: Vec<&str> = ["route", "redirect", "direct_response"]
            .into_iter()
            .filter(|f| node.has(f))
            .collect();
        let action = match actions.as_slice() {
            ["route"] => Action::Route(RouteAction::parse(&node.required("route")?, ctx)?),
            ["redirect"] => Action::Redirect(RedirectAction::parse(&node.required("redirect")?)?),
            [field] => {
                Action::DirectResponse(DirectResponseAction::parse(&node.required(field)?, ctx)?)
            }
            [] => {
                return Err(node.error_of(
                    ErrorKind::Missing,
                    "one of route, redirect, direct_response is required",
                ))
            }
            [_, second, ..] => {
                return Err(node
                    .required(second)?
                    .error("specify only one of route, redirect, direct_response"))
            }
        };
        Ok(RouteEntry {
            name: node
                .opt("name", |n| Ok(n.as_str()?.to_string()))?
                .unwrap_or_default(),
            path: PathMatcher::parse(&m)?,
            headers: m.list("headers", HeaderMatcher::parse)?,
            query_parameters: m.list("query_parameters", QueryParameterMatcher::parse)?,
            runtime_fraction: m.opt("runtime_fraction", parse_runtime_fraction)?,
            grpc: match m.get("grpc") {
                Some(g) => {
                    g.check_fields(&[], &[])?;
                    true
                }
                None => false,
            },
            action,
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
            // Set by `RouteConfig::parse` (see `decide_edits`).
            edits_request: true,
            edits_response: true,
        })
    }

    /// Decides [`edits_request`](Self::edits_request) / `edits_response` once every level is
    /// known: `levels_request` / `levels_response` say whether the virtual host or the route
    /// config edit request / response headers.
    pub(crate) fn decide_edits(&mut self, levels_request: bool, levels_response: bool) {
        let action_edits = match &self.action {
            Action::Route(route) => {
                route.path_rewrite.is_some()
                    || matches!(route.host_rewrite, HostRewrite::Literal(_))
                    || match &route.cluster {
                        ClusterSpecifier::Weighted(w) => w.clusters().iter().any(|c| {
                            !c.request_headers.is_empty() || c.host_rewrite_literal.is_some()
                        }),
                        _ => false,
                    }
            }
            _ => false,
        };
        self.edits_request = levels_request || !self.request_headers.is_empty() || action_edits;
        self.edits_response = levels_response || !self.response_headers.is_empty();
    }
}

/// Envoy's `Grpc::Common::isGrpcRequestHeaders`: content-type `application/grpc`, optionally
/// followed by `+suffix` or `;params`.
fn is_grpc_request<H: HeaderMapAccess + ?Sized>(headers: &H) -> bool {
    const GRPC: &str = "application/grpc";
    headers.get("content-type").is_some_and(|ct| {
        starts_with(ct, GRPC, false)
            && matches!(ct.as_bytes().get(GRPC.len()), None | Some(b'+' | b';'))
    })
}

/// `runtime_fraction` (a `RuntimeFractionalPercent`): nuncio has no runtime layer, so the
/// `default_value` applies, as in Envoy when the `runtime_key` is not set in the runtime.
fn parse_runtime_fraction(node: &Node) -> Result<(u64, u64)> {
    node.check_fields(&["default_value", "runtime_key"], &[])?;
    if let Some(key) = node.get("runtime_key") {
        key.as_str()?;
    }
    let value = node.required("default_value")?;
    value.check_fields(&["numerator", "denominator"], &[])?;
    let numerator = u64::from(value.opt("numerator", Node::as_u32)?.unwrap_or(0));
    let denominator = match value.get("denominator") {
        None => 100,
        Some(d) => match d.enum_str(&["HUNDRED", "TEN_THOUSAND", "MILLION"], &[])? {
            "TEN_THOUSAND" => 10_000,
            "MILLION" => 1_000_000,
            _ => 100,
        },
    };
    Ok((numerator, denominator))
}
