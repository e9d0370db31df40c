//! Route table hot path: what `RouteConfig::route` costs for a typical front-proxy config
//! (50 virtual hosts with exact and wildcard domains, 10 routes each with prefixes, a regex,
//! header and query matchers), and what the request header edits of a forwarded request cost.
//!
//! `cargo bench --bench route_table`. `route()` allocates nothing (tests/route_table_alloc.rs
//! proves it); `finalize_request_headers` allocates the values it adds (and this bench clones
//! the request each time). First figures (2026-11-26, shared 2-core machine at load ~18, so
//! wall times are inflated several-fold): route 1.2-1.4 µs, clone + route + finalize 8.9 µs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nuncio::config::{parse_yaml, Node};
use nuncio::router::{
    FormatterContext, RouteConfig, RouteConfigOptions, RouteResult, VecHeaderMap,
};

fn config_yaml() -> String {
    let mut yaml = String::from("name: front\nvirtual_hosts:\n");
    for i in 0..50 {
        let domains = match i % 3 {
            0 => format!("[\"svc{i}.example.com\", \"svc{i}.example.com:8080\"]"),
            1 => format!("[\"*.svc{i}.example.com\"]"),
            _ => format!("[\"svc{i}.*\"]"),
        };
        yaml.push_str(&format!(
            r#"- name: vh{i}
  domains: {domains}
  routes:
  - match: {{prefix: /admin, headers: [{{name: x-admin, string_match: {{exact: "yes"}}}}]}}
    route: {{cluster: admin}}
  - match: {{prefix: /api/v1/users, query_parameters: [{{name: debug}}]}}
    route: {{cluster: users-debug}}
  - match: {{safe_regex: {{regex: "/api/v1/orders/[0-9]+"}}}}
    route: {{cluster: orders}}
  - match: {{prefix: /api/v1/users}}
    route: {{cluster: users, prefix_rewrite: /users}}
  - match: {{prefix: /api/v2/, case_sensitive: false}}
    route: {{cluster: api-v2}}
  - match: {{path: /health}}
    direct_response: {{status: 200, body: {{inline_string: ok}}}}
  - match: {{path_separated_prefix: /static}}
    route: {{cluster: static}}
  - match: {{prefix: /old}}
    redirect: {{prefix_rewrite: /new}}
  - match: {{prefix: /canary, headers: [{{name: x-canary, present_match: true}}]}}
    route: {{cluster: canary}}
  - match: {{prefix: /}}
    route: {{cluster: web}}
    request_headers_to_add:
    - header: {{key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}
    - header: {{key: x-route, value: vh{i}}}
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
"#
        ));
    }
    yaml.push_str("- name: default\n  domains: [\"*\"]\n  routes: [{match: {prefix: /}, route: {cluster: web}}]\n");
    yaml
}

fn route_table(c: &mut Criterion) {
    let doc = parse_yaml(&config_yaml()).expect("bench config parses");
    let config = RouteConfig::parse(&Node::root(&doc), &RouteConfigOptions::default())
        .expect("bench config loads");
    let ua = [("user-agent", "wrk/4.2"), ("accept", "*/*")];
    let cases = [
        (
            "exact_host_prefix",
            VecHeaderMap::request("svc48.example.com", "/api/v1/users/42?x=1", &ua),
        ),
        (
            "suffix_wildcard_last_route",
            VecHeaderMap::request("a.svc49.example.com", "/index.html", &ua),
        ),
        (
            "prefix_wildcard_regex",
            VecHeaderMap::request("svc47.internal", "/api/v1/orders/123", &ua),
        ),
        (
            "default_host",
            VecHeaderMap::request("unknown.org", "/", &ua),
        ),
    ];
    let mut g = c.benchmark_group("route");
    for (name, req) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| match config.route(black_box(req), 7) {
                RouteResult::Forward(f) => black_box(f.cluster_name().len()),
                _ => 0,
            })
        });
    }
    g.finish();

    let ctx = FormatterContext {
        downstream_remote_address: Some("10.0.0.7:51234".parse().expect("literal address")),
        ..FormatterContext::default()
    };
    let base = VecHeaderMap::request("svc48.example.com", "/index.html", &ua);
    c.bench_function("finalize_request_headers", |b| {
        b.iter(|| {
            let mut req = base.clone();
            if let RouteResult::Forward(f) = config.route(&req, 7) {
                f.finalize_request_headers(&mut req, &ctx, true);
            }
            black_box(req.entries.len())
        })
    });
}

criterion_group!(benches, route_table);
criterion_main!(benches);
