//! The route table (Envoy's `Router::ConfigImpl`, `RouteMatcher`, `VirtualHostImpl`,
//! `RouteEntryImplBase`) and the route-level decisions of the router: retry policy and retry
//! state, timeouts, redirects, direct responses, header edits with `%FORMATTER%` values.
//! Issue 4.
//!
//! Everything here is sans-IO: it reads a request's headers through [`HeaderMapAccess`] and
//! says what to do; no sockets, no clocks, no random source of its own (the caller passes a
//! random number and the time in).
//!
//! Who calls what:
//! - at config load, the HTTP connection manager's factory reads its `route_config` with
//!   [`RouteConfig::parse`] (giving the set of cluster names, and its host-port stripping);
//! - per request, the router filter (`router/filter.rs`, issue 4) calls
//!   [`RouteConfig::route`] and acts on the [`RouteResult`]:
//!   - [`RouteResult::Forward`]: `final_timeout`, [`RetryState::create`],
//!     [`Forward::finalize_request_headers`], pick a host of [`Forward::cluster_name`], send;
//!     on each failed attempt ask the `RetryState`; on the response,
//!     [`Forward::finalize_response_headers`];
//!   - [`RouteResult::Redirect`] / [`RouteResult::DirectResponse`]: a local reply with that
//!     status (and `Location`, body, `content-type`), after `finalize_response_headers`;
//!   - [`RouteResult::NoRoute`]: 404, empty body, response flag `NR`.
//!
//! Files, one concept each: `config.rs` (RouteConfig), `route_matcher.rs` (virtual host by
//! domain), `virtual_host.rs`, `route_entry.rs` (match + actions), `string_matcher.rs`,
//! `header_matcher.rs`, `query_parameter_matcher.rs`, `path_rewrite.rs`, `redirect.rs`,
//! `header_parser.rs` (headers to add/remove), `formatter.rs` (`%COMMAND%` values),
//! `retry_policy.rs`, `retry_state.rs`, `timeout.rs`, `route_result.rs`, `header_map.rs` (the
//! header access contract).

mod config;
mod formatter;
mod header_map;
mod header_matcher;
mod header_parser;
mod path_rewrite;
mod query_parameter_matcher;
mod redirect;
mod retry_policy;
mod retry_state;
mod route_entry;
mod route_matcher;
mod route_result;
mod string_matcher;
mod timeout;
mod virtual_host;

#[cfg(test)]
mod tests;

pub use config::{RouteConfig, RouteConfigOptions, DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE};
pub use formatter::{FormatterContext, HeaderFormatter, StartTime};
pub use header_map::{HeaderMapAccess, VecHeaderMap};
pub use header_matcher::{HeaderMatch, HeaderMatcher};
pub use header_parser::{AppendAction, HeaderParser};
pub use path_rewrite::PathRewrite;
pub use query_parameter_matcher::QueryParameterMatcher;
pub use redirect::RedirectAction;
pub use retry_policy::{RetryHostPredicate, RetryOn, RetryPolicy};
pub use retry_state::{ResetReason, RetryState, RetryStatus};
pub use route_entry::{
    Action, ClusterSpecifier, DirectResponseAction, HostRewrite, PathMatcher, RouteAction,
    RouteEntry, WeightedCluster, WeightedClusters, DEFAULT_ROUTE_TIMEOUT,
};
pub use route_matcher::{strip_port, PortStripping, RouteMatcher};
pub use route_result::{DirectResponse, Forward, Redirect, Route, RouteResult, SelectedCluster};
pub use string_matcher::StringMatcher;
pub use timeout::{final_timeout, set_timeout_headers, RouteTimeouts, TimeoutData};
pub use virtual_host::VirtualHost;

pub mod filter;
pub mod upstream_request;
pub mod upstream_stats;
