//! The route table (`router::RouteConfig`) as the router filter consumes it ([`RouteTable`]).
//! The codec's heads are read and edited through the router's `HeaderMapAccess` impls.
//!
//! Called by the router filter once per request (`route`) and once per response
//! (`finalize_response`).

use std::time::SystemTime;

use crate::router::{final_timeout, FormatterContext, RetryOn, Route, RouteConfig, RouteResult};

use super::codec::{RequestHead, ResponseHead};
use super::conn_manager_io::{ForwardDecision, RetrySettings, RouteDecision, RouteTable};

/// `RouteConfig` behind the router filter's [`RouteTable`].
pub struct ConfiguredRoutes {
    pub config: RouteConfig,
}

impl ConfiguredRoutes {
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

fn retry_settings(policy: &crate::router::RetryPolicy, head: &mut RequestHead) -> RetrySettings {
    let mut retry_on = policy.retry_on;
    let mut num_retries = policy.num_retries;
    // Envoy's request headers extend the route's policy.
    if let Some(value) = head.headers.get_str("x-envoy-retry-on").map(str::to_string) {
        let (extra, _) = RetryOn::parse(&value);
        retry_on = RetryOn(retry_on.0 | extra.0);
    }
    if let Some(n) = head
        .headers
        .get_str("x-envoy-max-retries")
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        num_retries = n;
    }
    head.headers.remove("x-envoy-retry-on");
    head.headers.remove("x-envoy-max-retries");
    let has = |flag: RetryOn| retry_on.any(flag);
    RetrySettings {
        retry_on_5xx: has(RetryOn::FIVE_XX),
        retry_on_gateway_error: has(RetryOn::GATEWAY_ERROR),
        retry_on_reset: has(RetryOn::RESET),
        retry_on_connect_failure: has(RetryOn::CONNECT_FAILURE),
        retry_on_retriable_4xx: has(RetryOn::RETRIABLE_4XX),
        retriable_status_codes: if has(RetryOn::RETRIABLE_STATUS_CODES) {
            policy
                .retriable_status_codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect()
        } else {
            Vec::new()
        },
        num_retries,
        per_try_timeout: None,
        base_interval: policy.base_interval,
        max_interval: policy.max_interval,
    }
}

impl RouteTable for ConfiguredRoutes {
    fn route(&self, head: &mut RequestHead, random: u64) -> RouteDecision {
        match self.config.route(head, random) {
            RouteResult::NoRoute => RouteDecision::NoRoute,
            RouteResult::DirectResponse(direct) => RouteDecision::DirectResponse {
                status: direct.status,
                body: direct.body.to_string(),
            },
            RouteResult::Redirect(redirect) => RouteDecision::Redirect {
                status: redirect.status,
                location: redirect.location.clone(),
            },
            RouteResult::Forward(forward) => {
                let route_id = self.route_id(&forward.route);
                let cluster = forward.cluster_name().to_string();
                let policy = forward.retry_policy();
                let mut retry = retry_settings(policy, head);
                let timeout = final_timeout(forward.timeout(), policy, head, true);
                retry.per_try_timeout = timeout.per_try_timeout;
                let ctx = FormatterContext {
                    start_time: SystemTime::now(),
                    protocol: Some("HTTP/1.1"),
                    ..FormatterContext::default()
                };
                forward.finalize_request_headers(head, &ctx, true);
                RouteDecision::Forward(ForwardDecision {
                    cluster,
                    route_id,
                    timeout: timeout.global_timeout,
                    retry,
                })
            }
        }
    }

    fn finalize_response(
        &self,
        route_id: usize,
        response: &mut ResponseHead,
        request: &RequestHead,
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
        route.finalize_response_headers(response, request, &FormatterContext::default());
    }
}
