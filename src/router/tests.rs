//! Whole-table tests: a `route_config` in YAML, requests in, `RouteResult`s out. The expected
//! values are what Envoy 1.40 did with the same config (run with `direct_response` routes and
//! an echo upstream on 127.0.0.1); the per-concept files test their parts in detail.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::config::{parse_yaml, Node};

fn clusters() -> HashSet<String> {
    ["up", "a", "b", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn load_with(yaml: &str, port_stripping: PortStripping) -> Result<RouteConfig, String> {
    let doc = parse_yaml(yaml).map_err(|e| e.to_string())?;
    let clusters = clusters();
    let options = RouteConfigOptions {
        clusters: Some(&clusters),
        port_stripping,
    };
    RouteConfig::parse(&Node::root(&doc), &options).map_err(|e| e.to_string())
}

fn load(yaml: &str) -> RouteConfig {
    load_with(yaml, PortStripping::Keep).unwrap()
}

fn error(yaml: &str) -> String {
    load_with(yaml, PortStripping::Keep).unwrap_err()
}

/// The body of the direct response, or a description of another result.
fn answer(config: &RouteConfig, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let req = VecHeaderMap::request(host, path, headers);
    describe(config.route(&req, 0))
}

fn describe(result: RouteResult) -> String {
    match result {
        RouteResult::DirectResponse(d) => d.body.to_string(),
        RouteResult::Forward(f) => format!("forward:{}", f.cluster_name()),
        RouteResult::Redirect(r) => format!("{} {}", r.status, r.location),
        RouteResult::NoRoute => "404".to_string(),
    }
}

fn dr(body: &str) -> String {
    format!("direct_response: {{status: 200, body: {{inline_string: '{body}'}}}}")
}

// === virtual host selection ===

fn domains_config() -> RouteConfig {
    load(&format!(
        r#"
name: rc
virtual_hosts:
- name: exact
  domains: ["example.com", "Example.ORG"]
  routes: [{{match: {{prefix: /}}, {}}}]
- name: suffix
  domains: ["*.example.com"]
  routes: [{{match: {{prefix: /}}, {}}}]
- name: longsuffix
  domains: ["*-bar.example.com"]
  routes: [{{match: {{prefix: /}}, {}}}]
- name: prefix
  domains: ["foo.*", "withport.com:8080"]
  routes: [{{match: {{prefix: /}}, {}}}]
- name: port
  domains: ["port.com:81"]
  routes: [{{match: {{prefix: /}}, {}}}]
- name: default
  domains: ["*"]
  routes: [{{match: {{prefix: /}}, {}}}]
"#,
        dr("exact"),
        dr("suffix"),
        dr("longsuffix"),
        dr("prefix"),
        dr("port"),
        dr("default"),
    ))
}

#[test]
fn domain_precedence_as_envoy() {
    let c = domains_config();
    for (host, want) in [
        ("example.com", "exact"),
        ("EXAMPLE.com", "exact"),
        ("example.org", "exact"),
        ("a.example.com", "suffix"),
        ("x-bar.example.com", "longsuffix"),
        // The wildcard must cover at least one character.
        ("-bar.example.com", "suffix"),
        (".example.com", "default"),
        ("foo.bar", "prefix"),
        ("foo.", "default"),
        ("foo", "default"),
        // The port is part of the host.
        ("foo.x:80", "prefix"),
        ("example.com:80", "default"),
        ("withport.com:8080", "prefix"),
        ("withport.com", "default"),
        ("port.com:81", "port"),
        ("port.com", "default"),
        ("other", "default"),
    ] {
        assert_eq!(answer(&c, host, "/", &[]), want, "{host}");
    }
}

#[test]
fn exact_beats_suffix_beats_prefix() {
    let c = load(&format!(
        r#"
virtual_hosts:
- {{name: p, domains: ["api.*"], routes: [{{match: {{prefix: /}}, {}}}]}}
- {{name: s, domains: ["*.com"], routes: [{{match: {{prefix: /}}, {}}}]}}
- {{name: e, domains: ["api.x.com"], routes: [{{match: {{prefix: /}}, {}}}]}}
"#,
        dr("prefix"),
        dr("suffix"),
        dr("exact")
    ));
    assert_eq!(answer(&c, "api.x.com", "/", &[]), "exact");
    assert_eq!(answer(&c, "api.y.com", "/", &[]), "suffix");
    assert_eq!(answer(&c, "api.y.org", "/", &[]), "prefix");
    // No default virtual host: no route.
    assert_eq!(answer(&c, "other.org", "/", &[]), "404");
}

#[test]
fn port_stripping() {
    let yaml = format!(
        "virtual_hosts: [{{name: a, domains: [a.com], routes: [{{match: {{prefix: /}}, {}}}]}}]",
        dr("a")
    );
    let keep = load_with(&yaml, PortStripping::Keep).unwrap();
    assert_eq!(answer(&keep, "a.com:8080", "/", &[]), "404");
    let any = load_with(&yaml, PortStripping::Any).unwrap();
    assert_eq!(answer(&any, "a.com:8080", "/", &[]), "a");
    assert_eq!(answer(&any, "A.com", "/", &[]), "a");
    let matching = load_with(&yaml, PortStripping::Matching(8080)).unwrap();
    assert_eq!(answer(&matching, "a.com:8080", "/", &[]), "a");
    assert_eq!(answer(&matching, "a.com:9090", "/", &[]), "404");
    let ignore = load(&format!(
        "{{ignore_port_in_host_matching: true, {}}}",
        &yaml
    ));
    assert_eq!(answer(&ignore, "a.com:1", "/", &[]), "a");
}

#[test]
fn only_a_default_host_takes_requests_without_host() {
    let c = load(&format!(
        "virtual_hosts: [{{name: a, domains: ['*'], routes: [{{match: {{prefix: /}}, {}}}]}}]",
        dr("a")
    ));
    let mut req = VecHeaderMap::request("x", "/", &[]);
    req.remove(":authority");
    assert_eq!(describe(c.route(&req, 0)), "a");
    let c = domains_config();
    assert_eq!(describe(c.route(&req, 0)), "404");
}

#[test]
fn long_hosts_are_matched_too() {
    let long = format!("{}.example.com", "a".repeat(300));
    assert_eq!(
        answer(&domains_config(), &long.to_uppercase(), "/", &[]),
        "suffix"
    );
}

#[test]
fn domain_errors_use_envoy_wording() {
    assert_eq!(
        error("name: rc\nvirtual_hosts: [{name: a, domains: [x.com]}, {name: b, domains: [X.com]}]"),
        "virtual_hosts[1].domains[0]: Only unique values for domains are permitted. Duplicate entry of domain x.com in route rc"
    );
    assert_eq!(
        error("name: rc\nvirtual_hosts: [{name: a, domains: ['*']}, {name: b, domains: ['*']}]"),
        "virtual_hosts[1].domains[0]: Only a single wildcard domain is permitted in route rc"
    );
    assert_eq!(
        error("virtual_hosts: [{name: a, domains: ['*.a.com', '*.A.com']}]"),
        "virtual_hosts[0].domains[1]: Only unique values for domains are permitted. Duplicate entry of domain *.a.com in route "
    );
    assert_eq!(
        error("virtual_hosts: [{name: a, domains: []}]"),
        "virtual_hosts[0].domains: at least one domain is required"
    );
}

// === route matching ===

fn matching_config() -> RouteConfig {
    load(&format!(
        r#"
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - {{match: {{prefix: /hdr/invert, headers: [{{name: x-a, string_match: {{exact: v}}, invert_match: true}}]}}, {}}}
  - {{match: {{prefix: /hdr/legacy, headers: [{{name: x-a, exact_match: v}}]}}, {}}}
  - {{match: {{prefix: /hdr/host, headers: [{{name: host, string_match: {{exact: h.com}}}}]}}, {}}}
  - {{match: {{prefix: /hdr/both, headers: [{{name: x-a}}, {{name: x-b, string_match: {{prefix: p}}}}]}}, {}}}
  - {{match: {{prefix: /q, query_parameters: [{{name: a, string_match: {{exact: '1'}}}}]}}, {}}}
  - {{match: {{path_separated_prefix: /psp}}, {}}}
  - {{match: {{safe_regex: {{regex: '/re/[0-9]+'}}}}, {}}}
  - {{match: {{path: /Exact, case_sensitive: false}}, {}}}
  - {{match: {{path: /Exact}}, {}}}
  - {{match: {{prefix: /CaSe}}, {}}}
  - {{match: {{prefix: /first}}, {}}}
  - {{match: {{prefix: /first/second}}, {}}}
"#,
        dr("invert"),
        dr("legacy"),
        dr("host"),
        dr("both"),
        dr("query"),
        dr("psp"),
        dr("regex"),
        dr("exact-ci"),
        dr("never"),
        dr("case"),
        dr("first"),
        dr("second"),
    ))
}

#[test]
fn path_matchers_as_envoy() {
    let c = matching_config();
    for (path, want) in [
        ("/psp", "psp"),
        ("/psp/", "psp"),
        ("/psp/x", "psp"),
        ("/pspx", "404"),
        ("/psp?x", "psp"),
        ("/psp#x", "psp"),
        ("/re/123", "regex"),
        ("/re/123?x=1", "regex"),
        ("/re/12a", "404"),
        ("/RE/1", "404"),
        ("/exact", "exact-ci"),
        ("/EXACT?x", "exact-ci"),
        ("/Exact/", "404"),
        ("/CaSe/x", "case"),
        ("/case/x", "404"),
        // First match wins, even when a later route is more specific.
        ("/first/second", "first"),
    ] {
        assert_eq!(answer(&c, "h", path, &[]), want, "{path}");
    }
}

#[test]
fn header_matchers_as_envoy() {
    let c = matching_config();
    assert_eq!(answer(&c, "h", "/hdr/invert", &[]), "404");
    assert_eq!(answer(&c, "h", "/hdr/invert", &[("x-a", "v")]), "404");
    assert_eq!(answer(&c, "h", "/hdr/invert", &[("x-a", "w")]), "invert");
    assert_eq!(
        answer(&c, "h", "/hdr/invert", &[("x-a", "w"), ("x-a", "v")]),
        "404"
    );
    assert_eq!(
        answer(&c, "h", "/hdr/legacy", &[("x-a", "w"), ("x-a", "v")]),
        "legacy"
    );
    assert_eq!(answer(&c, "h.com", "/hdr/host", &[]), "host");
    assert_eq!(answer(&c, "h.org", "/hdr/host", &[]), "404");
    // Every header matcher must match.
    assert_eq!(
        answer(&c, "h", "/hdr/both", &[("x-a", ""), ("x-b", "pq")]),
        "both"
    );
    assert_eq!(answer(&c, "h", "/hdr/both", &[("x-b", "pq")]), "404");
    assert_eq!(
        answer(&c, "h", "/hdr/both", &[("x-a", ""), ("x-b", "q")]),
        "404"
    );
}

#[test]
fn query_parameters_as_envoy() {
    let c = matching_config();
    for (path, want) in [
        ("/q?a=1", "query"),
        ("/q?a=2&a=1", "404"),
        ("/q?b=1&a=1", "query"),
        ("/q?a", "404"),
        ("/q?a=%31", "404"),
        ("/q", "404"),
    ] {
        assert_eq!(answer(&c, "h", path, &[]), want, "{path}");
    }
}

#[test]
fn pseudo_header_and_missing_as_empty_matchers_as_envoy() {
    let c = load(&format!(
        r#"
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - {{match: {{prefix: /pfi, headers: [{{name: x-a, present_match: false, invert_match: true}}]}}, {}}}
  - {{match: {{prefix: /meth, headers: [{{name: ":method", string_match: {{exact: POST}}}}]}}, {}}}
  - {{match: {{prefix: /pathhdr, headers: [{{name: ":path", string_match: {{suffix: "?x"}}}}]}}, {}}}
  - {{match: {{prefix: /tmiss, headers: [{{name: x-t, string_match: {{exact: ""}}, treat_missing_header_as_empty: true}}]}}, {}}}
"#,
        dr("pfi"),
        dr("post"),
        dr("pathhdr"),
        dr("tmiss"),
    ));
    assert_eq!(answer(&c, "h", "/pfi", &[]), "404");
    assert_eq!(answer(&c, "h", "/pfi", &[("x-a", "1")]), "pfi");
    let mut post = VecHeaderMap::request("h", "/meth", &[]);
    post.set(":method", "POST");
    assert_eq!(describe(c.route(&post, 0)), "post");
    assert_eq!(answer(&c, "h", "/meth", &[]), "404");
    assert_eq!(answer(&c, "h", "/pathhdr?x", &[]), "pathhdr");
    assert_eq!(answer(&c, "h", "/pathhdr?y", &[]), "404");
    assert_eq!(answer(&c, "h", "/tmiss", &[]), "tmiss");
    assert_eq!(answer(&c, "h", "/tmiss", &[("x-t", "v")]), "404");
}

#[test]
fn runtime_fraction_and_grpc_matches() {
    let c = load(&format!(
        r#"
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - {{match: {{prefix: /, grpc: {{}}}}, {}}}
  - {{match: {{prefix: /, runtime_fraction: {{default_value: {{numerator: 25}}, runtime_key: canary}}}}, {}}}
  - {{match: {{prefix: /}}, {}}}
"#,
        dr("grpc"),
        dr("canary"),
        dr("stable"),
    ));
    let route = |random: u64, content_type: &str| {
        let req = VecHeaderMap::request("h", "/", &[("content-type", content_type)]);
        describe(c.route(&req, random))
    };
    assert_eq!(route(0, "application/grpc"), "grpc");
    assert_eq!(route(0, "application/grpc+proto"), "grpc");
    assert_eq!(route(0, "application/grpc;x=1"), "grpc");
    // random % 100 < 25 takes the canary.
    assert_eq!(route(0, "application/grpcx"), "canary");
    assert_eq!(route(124, "text/plain"), "canary");
    assert_eq!(route(125, "text/plain"), "stable");
    assert_eq!(route(99, "text/plain"), "stable");
}

#[test]
fn direct_response_status_range_as_envoy() {
    let route = |status: u32| {
        load_with(
            &format!("virtual_hosts: [{{name: a, domains: ['*'], routes: [{{match: {{prefix: /}}, direct_response: {{status: {status}}}}}]}}]"),
            PortStripping::Keep,
        )
    };
    assert!(route(199).is_err());
    assert!(route(200).is_ok());
    assert!(route(599).is_ok());
    assert!(route(600).is_err());
}

#[test]
fn route_errors_name_their_path() {
    let vh = |route: &str| {
        error(&format!(
            "virtual_hosts: [{{name: a, domains: ['*'], routes: [{route}]}}]"
        ))
    };
    assert_eq!(
        vh("{match: {prefix: /}, route: {cluster: nope}}"),
        "virtual_hosts[0].routes[0].route.cluster: route: unknown cluster 'nope'"
    );
    assert_eq!(
        vh("{match: {prefix: /}, route: {weighted_clusters: {clusters: [{name: up, weight: 1}, {name: nope, weight: 1}]}}}"),
        "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[1].name: route: unknown cluster 'nope'"
    );
    assert_eq!(
        vh("{match: {prefix: /}, route: {weighted_clusters: {clusters: [{name: up, weight: 0}]}}}"),
        "virtual_hosts[0].routes[0].route.weighted_clusters: Sum of weights in the weighted_cluster must be greater than 0."
    );
    assert_eq!(
        vh("{match: {prefix: /, bogus: 1}, route: {cluster: up}}"),
        "virtual_hosts[0].routes[0].match.bogus: unknown field (supported: prefix, path, safe_regex, path_separated_prefix, case_sensitive, headers, query_parameters, runtime_fraction, grpc)"
    );
    assert_eq!(
        vh("{match: {prefix: /, tls_context: {}}, route: {cluster: up}}"),
        "virtual_hosts[0].routes[0].match.tls_context: not supported by nuncio"
    );
    assert_eq!(
        vh("{match: {prefix: /}, route: {cluster: up}, typed_per_filter_config: {}}"),
        "virtual_hosts[0].routes[0].typed_per_filter_config: not supported by nuncio"
    );
    assert_eq!(
        vh("{match: {prefix: /, path: /a}, route: {cluster: up}}"),
        "virtual_hosts[0].routes[0].match.path: specify only one of prefix, path, safe_regex, path_separated_prefix"
    );
    assert_eq!(
        vh("{match: {prefix: /}}"),
        "virtual_hosts[0].routes[0]: one of route, redirect, direct_response is required"
    );
    assert_eq!(
        vh("{match: {prefix: /}, route: {cluster: up, prefix_rewrite: /b, regex_rewrite: {pattern: {regex: a}, substitution: b}}}"),
        "virtual_hosts[0].routes[0].route.regex_rewrite: specify only one of prefix_rewrite, regex_rewrite"
    );
    assert_eq!(
        vh("{match: {path_separated_prefix: /a/}, route: {cluster: up}}"),
        "virtual_hosts[0].routes[0].match.path_separated_prefix: must be non-empty, without '?' or '#', and must not end with '/'"
    );
    assert_eq!(
        error("{max_direct_response_body_size_bytes: 4, virtual_hosts: [{name: a, domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: 'hello'}}}]}]}"),
        "virtual_hosts[0].routes[0].direct_response.body: response body size is 5 bytes; maximum is 4"
    );
    assert_eq!(
        error("virtual_hosts: [{name: a, domains: ['*'], require_tls: ALL}]"),
        "virtual_hosts[0].require_tls: value 'ALL' is not supported by nuncio (supported: NONE)"
    );
    assert_eq!(error("vhds: {}"), "vhds: not supported by nuncio");
}

#[test]
fn validate_clusters_false_skips_the_check() {
    let c = load("{validate_clusters: false, virtual_hosts: [{name: a, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: nope}}]}]}");
    assert_eq!(answer(&c, "h", "/", &[]), "forward:nope");
}

// === route actions ===

fn action_config(extra_global: &str) -> RouteConfig {
    load(&format!(
        r#"
{extra_global}
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - match: {{prefix: /pr}}
    route: {{cluster: up, prefix_rewrite: /new}}
  - match: {{prefix: /rr}}
    route: {{cluster: up, regex_rewrite: {{pattern: {{regex: "^/rr/(.*)$"}}, substitution: "/x/\\1"}}}}
  - match: {{prefix: /hr}}
    route: {{cluster: up, host_rewrite_literal: rewritten.com}}
  - match: {{prefix: /xfh}}
    route: {{cluster: up, host_rewrite_literal: rewritten.com, append_x_forwarded_host: true}}
  - match: {{safe_regex: {{regex: "/re/.*"}}}}
    route: {{cluster: up, prefix_rewrite: /q}}
  - match: {{path: /exact}}
    route: {{cluster: up, prefix_rewrite: /e2}}
  - match: {{prefix: /CI, case_sensitive: false}}
    route: {{cluster: up, prefix_rewrite: /ci}}
  - match: {{prefix: /wc}}
    route:
      weighted_clusters:
        clusters:
        - {{name: a, weight: 1, request_headers_to_add: [{{header: {{key: x-order, value: wc}}}}]}}
        - {{name: b, weight: 2}}
        - {{name: c, weight: 0}}
  - match: {{prefix: /ch}}
    route: {{cluster_header: X-Cluster}}
  - match: {{prefix: /to}}
    route: {{cluster: up, timeout: 3s, idle_timeout: 7s, retry_policy: {{retry_on: 5xx, per_try_timeout: 1s}}}}
  - match: {{prefix: /zero}}
    route: {{cluster: up, timeout: 0s, idle_timeout: 0s}}
  - match: {{prefix: /dr301}}
    direct_response: {{status: 301}}
  - match: {{prefix: /dr201}}
    direct_response: {{status: 201, body: {{inline_string: made}}}}
  - match: {{prefix: /dr503}}
    direct_response: {{status: 503}}
  - match: {{prefix: /redir}}
    redirect: {{https_redirect: true}}
    response_headers_to_add: [{{header: {{key: x-order, value: route}}}}]
  - match: {{prefix: /}}
    route: {{cluster: up}}
    request_headers_to_add:
    - header: {{key: x-order, value: route}}
    - header: {{key: x-ow, value: route}}
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    - header: {{key: x-uh, value: "[%UPSTREAM_HOST%]"}}
    response_headers_to_add:
    - header: {{key: x-order, value: route}}
    - header: {{key: x-ow, value: route}}
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
  request_headers_to_add:
  - header: {{key: x-order, value: "vhost saw %REQ(x-order)%"}}
  - header: {{key: x-ow, value: vhost}}
    append_action: OVERWRITE_IF_EXISTS_OR_ADD
  response_headers_to_add:
  - header: {{key: x-order, value: vhost}}
  - header: {{key: x-ow, value: vhost}}
    append_action: OVERWRITE_IF_EXISTS_OR_ADD
request_headers_to_add:
- header: {{key: x-order, value: global}}
- header: {{key: x-ow, value: global}}
  append_action: OVERWRITE_IF_EXISTS_OR_ADD
response_headers_to_add:
- header: {{key: x-order, value: global}}
- header: {{key: x-ow, value: global}}
  append_action: OVERWRITE_IF_EXISTS_OR_ADD
"#
    ))
}

/// Routes `path` with Host `orig.com`, finalizes the request headers as the router would,
/// and returns (cluster, headers after).
fn forward(
    c: &RouteConfig,
    path: &str,
    headers: &[(&str, &str)],
    random: u64,
) -> (String, VecHeaderMap) {
    let mut req = VecHeaderMap::request("orig.com", path, headers);
    let cluster = match c.route(&req, random) {
        RouteResult::Forward(f) => {
            let name = f.cluster_name().to_string();
            f.finalize_request_headers(&mut req, &FormatterContext::default(), true);
            name
        }
        other => panic!("{path}: {other:?}"),
    };
    (cluster, req)
}

#[test]
fn path_rewrites_as_envoy() {
    let c = action_config("");
    for (path, want) in [
        ("/pr/a?q=1", "/new/a?q=1"),
        ("/rr/a/b?q=1", "/x/a/b?q=1"),
        ("/re/zz?y", "/q?y"),
        ("/exact?k", "/e2?k"),
        ("/ci/abc", "/ci/abc"),
        ("/CI/abc", "/ci/abc"),
    ] {
        let (_, req) = forward(&c, path, &[], 0);
        assert_eq!(req.get(":path"), Some(want), "{path}");
        assert_eq!(req.get("x-envoy-original-path"), Some(path), "{path}");
    }
    let (_, req) = forward(&c, "/other", &[], 0);
    assert!(!req.contains("x-envoy-original-path"));
}

#[test]
fn original_path_is_not_recorded_when_envoy_headers_are_suppressed() {
    let c = action_config("");
    let mut req = VecHeaderMap::request("h", "/pr/a", &[]);
    if let RouteResult::Forward(f) = c.route(&req, 0) {
        f.finalize_request_headers(&mut req, &FormatterContext::default(), false);
    }
    assert_eq!(req.get(":path"), Some("/new/a"));
    assert!(!req.contains("x-envoy-original-path"));
}

#[test]
fn host_rewrites_as_envoy() {
    let c = action_config("");
    let (_, req) = forward(&c, "/hr", &[], 0);
    assert_eq!(req.get("host"), Some("rewritten.com"));
    assert_eq!(req.get("x-envoy-original-host"), Some("orig.com"));
    assert!(!req.contains("x-forwarded-host"));
    let (_, req) = forward(&c, "/xfh", &[], 0);
    assert_eq!(req.get("x-forwarded-host"), Some("orig.com"));
    let (_, req) = forward(&c, "/xfh", &[("x-forwarded-host", "a.com")], 0);
    assert_eq!(req.values("x-forwarded-host"), vec!["a.com,orig.com"]);
    let (_, req) = forward(&c, "/xfh", &[("x-forwarded-host", "a.com,orig.com")], 0);
    assert_eq!(req.values("x-forwarded-host"), vec!["a.com,orig.com"]);
}

#[test]
fn request_header_order_as_envoy() {
    let c = action_config("");
    // Envoy 1.40 sent upstream: x-order: client, route, "vhost saw client", global; x-ow: global.
    let (_, req) = forward(&c, "/", &[("x-order", "client"), ("x-ow", "client")], 0);
    assert_eq!(
        req.values("x-order"),
        vec!["client", "route", "vhost saw client", "global"]
    );
    assert_eq!(req.values("x-ow"), vec!["global"]);
    // %UPSTREAM_HOST% is not known on the request path.
    assert_eq!(req.values("x-uh"), vec!["[]"]);
    // Weighted cluster edits go first: the virtual host saw "wc".
    let (cluster, req) = forward(&c, "/wc", &[], 0);
    assert_eq!(cluster, "a");
    assert_eq!(req.values("x-order"), vec!["wc", "vhost saw wc", "global"]);
}

#[test]
fn most_specific_header_mutations_wins() {
    let c = action_config("most_specific_header_mutations_wins: true");
    let (_, req) = forward(&c, "/", &[("x-ow", "client")], 0);
    assert_eq!(
        req.values("x-order"),
        vec!["global", "vhost saw global", "route"]
    );
    assert_eq!(req.values("x-ow"), vec!["route"]);
}

#[test]
fn response_header_order_as_envoy() {
    let c = action_config("");
    let req = VecHeaderMap::request("h", "/", &[]);
    let mut resp = VecHeaderMap::from_pairs(&[("x-ow", "upstream")]);
    match c.route(&req, 0) {
        RouteResult::Forward(f) => {
            f.finalize_response_headers(&mut resp, &req, &FormatterContext::default())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(resp.values("x-order"), vec!["route", "vhost", "global"]);
    assert_eq!(resp.values("x-ow"), vec!["global"]);
}

#[test]
fn weighted_clusters_follow_the_random_value() {
    let c = action_config("");
    // Weights a:1 b:2 c:0 -> 0 picks a, 1 and 2 pick b, 3 wraps to a; c never.
    let picks: Vec<String> = (0..6).map(|r| forward(&c, "/wc", &[], r).0).collect();
    assert_eq!(picks, vec!["a", "b", "b", "a", "b", "b"]);
}

#[test]
fn cluster_header() {
    let c = action_config("");
    let (cluster, _) = forward(&c, "/ch", &[("x-cluster", "b")], 0);
    assert_eq!(cluster, "b");
    let req = VecHeaderMap::request("h", "/ch", &[]);
    match c.route(&req, 0) {
        RouteResult::Forward(f) => {
            assert_eq!(f.cluster_name(), "");
            assert_eq!(f.cluster_not_found_response_code(), 503);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeouts_and_retry_policy() {
    let c = action_config("");
    let get = |path: &str| {
        let req = VecHeaderMap::request("h", path, &[]);
        match c.route(&req, 0) {
            RouteResult::Forward(f) => (
                f.timeout(),
                f.idle_timeout(),
                f.retry_policy().retry_on,
                f.retry_policy().per_try_timeout,
            ),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        get("/"),
        (
            Some(Duration::from_secs(15)),
            None,
            RetryOn::default(),
            None
        )
    );
    assert_eq!(
        get("/to"),
        (
            Some(Duration::from_secs(3)),
            Some(Duration::from_secs(7)),
            RetryOn::FIVE_XX,
            Some(Duration::from_secs(1))
        )
    );
    assert_eq!(
        get("/zero"),
        (None, Some(Duration::ZERO), RetryOn::default(), None)
    );
}

#[test]
fn virtual_host_retry_policy_applies_when_the_route_has_none() {
    let c = load(
        "virtual_hosts: [{name: a, domains: ['*'], retry_policy: {retry_on: reset, num_retries: 4}, routes: [{match: {prefix: /r}, route: {cluster: up, retry_policy: {retry_on: 5xx}}}, {match: {prefix: /}, route: {cluster: up}}]}]",
    );
    let policy = |path: &str| {
        let req = VecHeaderMap::request("h", path, &[]);
        match c.route(&req, 0) {
            RouteResult::Forward(f) => (f.retry_policy().retry_on, f.retry_policy().num_retries),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(policy("/r"), (RetryOn::FIVE_XX, 1));
    assert_eq!(policy("/"), (RetryOn::RESET, 4));
}

#[test]
fn direct_responses_as_envoy() {
    let c = action_config("");
    let route = |host: &str, path: &str| {
        let req = VecHeaderMap::request(host, path, &[("x-forwarded-proto", "http")]);
        match c.route(&req, 0) {
            RouteResult::DirectResponse(d) => (
                d.status,
                d.body.to_string(),
                d.location.clone(),
                d.content_type(),
            ),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        route("h.com:80", "/dr301?a"),
        (
            301,
            String::new(),
            Some("http://h.com:80/dr301?a".to_string()),
            None
        )
    );
    assert_eq!(
        route("h.com", "/dr201"),
        (
            201,
            "made".to_string(),
            Some("http://h.com/dr201".to_string()),
            Some("text/plain")
        )
    );
    assert_eq!(route("h.com", "/dr503"), (503, String::new(), None, None));
}

#[test]
fn redirect_carries_route_response_headers() {
    let c = action_config("");
    let req = VecHeaderMap::request("h.com:80", "/redir/x", &[("x-forwarded-proto", "http")]);
    match c.route(&req, 0) {
        RouteResult::Redirect(r) => {
            assert_eq!(
                (r.status, r.location.as_str()),
                (301, "https://h.com/redir/x")
            );
            let mut resp = VecHeaderMap::new();
            r.finalize_response_headers(&mut resp, &req, &FormatterContext::default());
            // Observed on Envoy: x-order: vhost, global on a redirect of the default vhost.
            assert_eq!(resp.values("x-order"), vec!["route", "vhost", "global"]);
        }
        other => panic!("{other:?}"),
    }
}

// === the router's sequence for one request ===

#[test]
fn forward_then_timeouts_then_retry_state() {
    let c = action_config("");
    let mut req = VecHeaderMap::request(
        "h",
        "/to",
        &[
            ("x-envoy-retry-on", "connect-failure"),
            ("x-envoy-max-retries", "2"),
        ],
    );
    let RouteResult::Forward(f) = c.route(&req, 0) else {
        panic!("not forwarded")
    };
    let t = final_timeout(f.timeout(), f.retry_policy(), &mut req, true);
    assert_eq!(t.per_try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(req.get("x-envoy-expected-rq-timeout-ms"), Some("1000"));
    let mut state = RetryState::create(f.retry_policy(), &mut req).unwrap();
    assert!(!req.contains("x-envoy-retry-on"));
    assert_eq!(
        state.retry_on(),
        RetryOn::FIVE_XX | RetryOn::CONNECT_FAILURE
    );
    assert_eq!(state.retries_remaining(), 2);
    assert!(matches!(
        state.should_retry_reset(ResetReason::ConnectionFailure, false, false, true, 3),
        RetryStatus::Yes(d) if d == Duration::from_millis(3)
    ));
}

#[test]
fn route_config_is_shared_across_workers() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RouteConfig>();
}
