//! The route table (`router::RouteConfig`) as the router filter consumes it ([`RouteTable`]).
//! The codec's heads are read and edited through the router's `HeaderMapAccess` impls.
//!
//! Called by the router filter once per request (`route`) and once per response
//! (`finalize_response`).

use crate::router::{FormatterContext, Forward, RetryState, Route, RouteConfig, RouteResult};

use super::codec::{RequestHead, ResponseHead};
use super::conn_manager_io::{ForwardDecision, RouteDecision, RouteTable};

/// `RouteConfig` behind the router filter's [`RouteTable`].
pub struct ConfiguredRoutes {
    pub config: RouteConfig,
    /// The router's `suppress_envoy_headers` (no `x-envoy-expected-rq-timeout-ms`, no
    /// `x-envoy-original-path`).
    pub suppress_envoy_headers: bool,
}

impl ConfiguredRoutes {
    /// What the router needs of a forwarding route: the cluster, the timeouts and the retry
    /// state, with the request's control headers consumed and its edits applied.
    fn forward<'a>(
        &self,
        forward: Forward<'_>,
        head: &mut RequestHead,
        ctx: &FormatterContext,
        decision: &'a mut Option<ForwardDecision>,
    ) -> RouteDecision<'a> {
        let route_id = self.route_id(&forward.route);
        let cluster = forward.shared_cluster_name();
        // The timeouts first: `final_timeout` reads the per-try header that
        // `RetryState::create_from` removes with the other retry headers.
        let envoy_headers = !self.suppress_envoy_headers;
        let timeout = forward.final_timeout(head, envoy_headers);
        let retry = RetryState::create_from(forward.retry_policy_shared(), head);
        forward.finalize_request_headers(head, ctx, envoy_headers);
        RouteDecision::Forward(decision.insert(ForwardDecision {
            suppress_envoy_headers: self.suppress_envoy_headers,
            cluster,
            route_id,
            edits_response_headers: forward.route.edits_response_headers(),
            timeout: timeout.global_timeout,
            idle_timeout: forward.idle_timeout(),
            retry,
            per_try_timeout: timeout.per_try_timeout,
            per_try_idle_timeout: forward.retry_policy().per_try_idle_timeout,
        }))
    }

    /// `(virtual host index, route index)` of a matched route, packed.
    fn route_id(&self, route: &Route) -> usize {
        let vh = self
            .config
            .virtual_hosts
            .iter()
            .position(|v| std::ptr::eq(v, route.virtual_host))
            .unwrap_or(0);
        let entry = route
            .virtual_host
            .routes
            .iter()
            .position(|e| std::ptr::eq(e, route.entry))
            .unwrap_or(0);
        (vh << 20) | entry
    }
}

impl RouteTable for ConfiguredRoutes {
    fn route<'a>(
        &self,
        head: &mut RequestHead,
        random: u64,
        ctx: &FormatterContext,
        decision: &'a mut Option<ForwardDecision>,
    ) -> RouteDecision<'a> {
        match self.config.route(head, random) {
            RouteResult::Forward(forward) => self.forward(forward, head, ctx, decision),
            other => local_decision(other),
        }
    }

    fn route_name(&self, route_id: usize) -> &str {
        self.config
            .virtual_hosts
            .get(route_id >> 20)
            .and_then(|vh| vh.routes.get(route_id & 0xfffff))
            .map_or("", |entry| entry.name.as_str())
    }

    fn finalize_response(
        &self,
        route_id: usize,
        response: &mut ResponseHead,
        request: &RequestHead,
        ctx: &FormatterContext,
    ) {
        let Some(virtual_host) = self.config.virtual_hosts.get(route_id >> 20) else {
            return;
        };
        let Some(entry) = virtual_host.routes.get(route_id & 0xfffff) else {
            return;
        };
        let route = Route {
            config: &self.config,
            virtual_host,
            entry,
            matched_len: 0,
        };
        route.finalize_response_headers(response, request, ctx);
    }
}

/// The decisions of a request the proxy answers itself: no route (404), a redirect, a direct
/// response (kept apart from the forwarding path every proxied request takes).
#[inline(never)]
fn local_decision(result: RouteResult<'_>) -> RouteDecision<'static> {
    match result {
        RouteResult::DirectResponse(direct) => RouteDecision::DirectResponse {
            status: direct.status,
            body: direct.body.to_string(),
        },
        RouteResult::Redirect(redirect) => RouteDecision::Redirect {
            status: redirect.status,
            location: redirect.location,
        },
        // `Forward` is not reached: the caller takes it.
        RouteResult::NoRoute | RouteResult::Forward(_) => RouteDecision::NoRoute,
    }
}
