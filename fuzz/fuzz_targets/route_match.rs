//! Routes arbitrary requests through a route table that uses every matcher and action, then
//! applies the result (header edits, rewrites, redirects, retry decisions) as the router would.
//! Nothing reachable from a request may panic.
//!
//! Input: NUL-separated fields `host \0 path \0 name=value \0 name=value ...`; the last byte
//! of a header field picks nothing special, the random value is the input's length.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nuncio::config::{parse_yaml, Node};
use nuncio::router::{
    final_timeout, FormatterContext, HeaderMapAccess, ResetReason, RetryState, RouteConfig,
    RouteConfigOptions, RouteResult, VecHeaderMap,
};

const CONFIG: &str = r#"
name: fuzz
request_headers_to_add:
- header: {key: x-global, value: "%REQ(x-in)%|%REQ(:path):5%|%START_TIME%"}
response_headers_to_add:
- header: {key: x-resp, value: "%REQ(host)%"}
virtual_hosts:
- name: exact
  domains: ["a.com", "a.com:8080", "[::1]:80"]
  routes:
  - match: {prefix: /h, runtime_fraction: {default_value: {numerator: 90}}, headers: [{name: x-a, string_match: {exact: v, ignore_case: true}}, {name: x-r, range_match: {start: -5, end: 50}}]}
    route: {cluster: c1, prefix_rewrite: /H}
  - match: {prefix: /q, query_parameters: [{name: a, string_match: {prefix: "1"}}, {name: b}]}
    route: {cluster: c1, regex_rewrite: {pattern: {regex: "(.)"}, substitution: "\\1\\1"}}
  - match: {safe_regex: {regex: "/re/[^/]*/(x|y)+"}}
    route: {cluster: c1, prefix_rewrite: /r, host_rewrite_literal: b.com, append_x_forwarded_host: true}
  - match: {path_separated_prefix: /psp, case_sensitive: false}
    redirect: {prefix_rewrite: /, strip_query: true}
  - match: {path: /exact, headers: [{name: x-p, present_match: false, invert_match: true}]}
    redirect: {https_redirect: true, port_redirect: 8443}
  - match: {prefix: /wc}
    route:
      weighted_clusters:
        clusters:
        - {name: c1, weight: 3, request_headers_to_add: [{header: {key: x-wc, value: one}, append_action: ADD_IF_ABSENT}]}
        - {name: c2, weight: 5}
      retry_policy: {retry_on: "5xx,reset,retriable-status-codes", retriable_status_codes: [418], num_retries: 3}
  - match: {prefix: /ch}
    route: {cluster_header: x-cluster}
  - match: {prefix: /}
    direct_response: {status: 302, body: {inline_string: moved}}
- name: wild
  domains: ["*.b.com", "c.*"]
  routes:
  - match: {prefix: /, headers: [{name: x-s, string_match: {contains: z, ignore_case: true}}]}
    redirect: {regex_rewrite: {pattern: {regex: "a*"}, substitution: "-"}}
  - match: {prefix: ""}
    redirect: {host_redirect: d.com, path_redirect: "/p?x=1"}
- name: default
  domains: ["*"]
  routes:
  - match: {prefix: /, case_sensitive: false}
    route: {cluster: c2, timeout: 1s, retry_policy: {retry_on: "connect-failure,gateway-error", per_try_timeout: 0.1s}}
    request_headers_to_remove: [x-in]
"#;

fn config() -> &'static RouteConfig {
    static CONFIG_CELL: OnceLock<RouteConfig> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        let doc = parse_yaml(CONFIG).expect("fuzz config is valid YAML");
        RouteConfig::parse(&Node::root(&doc), &RouteConfigOptions::default())
            .expect("fuzz config is a valid route_config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.split('\0');
    let host = fields.next().unwrap_or("");
    let path = fields.next().unwrap_or("/");
    let mut request = VecHeaderMap::request(host, path, &[]);
    for field in fields {
        let (name, value) = field.split_once('=').unwrap_or((field, ""));
        request.add(&name.to_ascii_lowercase(), value);
    }
    let ctx = FormatterContext::default();
    let original = request.clone();
    match config().route(&original, data.len() as u64) {
        RouteResult::Forward(f) => {
            let _ = f.cluster_name();
            let _ = final_timeout(f.timeout(), f.retry_policy(), &mut request, true);
            let state = RetryState::create(f.retry_policy(), &mut request);
            f.finalize_request_headers(&mut request, &ctx, true);
            let mut response = VecHeaderMap::from_pairs(&[("x-up", "1")]);
            f.finalize_response_headers(&mut response, &request, &ctx);
            if let Some(mut state) = state {
                let status = 400 + (data.len() % 200) as u16;
                let _ = state.should_retry_headers(
                    status,
                    &response,
                    &request,
                    true,
                    data.len() as u64,
                    || std::time::UNIX_EPOCH,
                );
                let _ = state.should_retry_reset(ResetReason::RemoteReset, false, false, true, 7);
            }
        }
        RouteResult::Redirect(r) => {
            let mut response = VecHeaderMap::new();
            r.finalize_response_headers(&mut response, &original, &ctx);
        }
        RouteResult::DirectResponse(d) => {
            let _ = d.content_type();
        }
        RouteResult::NoRoute => {}
    }
});
