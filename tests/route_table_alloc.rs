//! The route table's hot path allocates nothing: routing a request through a typical
//! `route_config` (domain wildcards, prefixes, header and query matchers, a regex) performs no
//! heap allocation once warm. Measured with a counting global allocator (this test binary
//! only), per thread so other tests cannot disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use nuncio::config::{parse_yaml, Node};
use nuncio::router::{RouteConfig, RouteConfigOptions, RouteResult, VecHeaderMap};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initializer, so touching it never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

const CONFIG: &str = r#"
name: front
virtual_hosts:
- name: api
  domains: ["api.example.com", "api.example.com:8080"]
  routes:
  - match: {prefix: /v1/users, headers: [{name: x-canary, string_match: {exact: "1"}}]}
    route: {cluster: users-canary}
  - match: {prefix: /v1/users, query_parameters: [{name: debug, present_match: true}]}
    route: {cluster: users-debug}
  - match: {safe_regex: {regex: "/v1/orders/[0-9]+"}}
    route: {cluster: orders}
  - match: {prefix: /v1/, case_sensitive: false}
    route: {cluster: api, timeout: 5s}
- name: wildcard
  domains: ["*.example.com"]
  routes:
  - match: {path_separated_prefix: /static}
    route: {cluster: static}
  - match: {prefix: /}
    route: {cluster: web}
- name: fallback
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: web}
"#;

#[test]
fn routing_a_request_does_not_allocate() {
    let doc = parse_yaml(CONFIG).unwrap();
    let config = RouteConfig::parse(&Node::root(&doc), &RouteConfigOptions::default()).unwrap();
    let requests = [
        VecHeaderMap::request(
            "API.example.com:8080",
            "/v1/users/7?x=1",
            &[("x-canary", "1")],
        ),
        VecHeaderMap::request("api.example.com", "/v1/users?a=1&debug", &[]),
        VecHeaderMap::request("api.example.com", "/v1/orders/123?z", &[]),
        VecHeaderMap::request("api.example.com", "/V1/other", &[("user-agent", "curl/8")]),
        VecHeaderMap::request("www.example.com", "/static/app.js", &[]),
        VecHeaderMap::request("www.example.com", "/index.html", &[]),
        VecHeaderMap::request("other.org", "/", &[]),
    ];
    let expected = [
        "users-canary",
        "users-debug",
        "orders",
        "api",
        "static",
        "web",
        "web",
    ];
    // Warm up (the regex engine builds its per-thread cache on first use).
    for req in &requests {
        let _ = config.route(req, 0);
    }
    let before = allocations();
    let mut routed = 0;
    for _ in 0..100 {
        for (req, want) in requests.iter().zip(expected) {
            match config.route(req, 7) {
                RouteResult::Forward(f) if f.cluster_name() == want => routed += 1,
                _ => {}
            }
        }
    }
    let after = allocations();
    // The counter does count.
    let probe = allocations();
    let boxed = std::hint::black_box(Box::new(routed));
    assert!(
        allocations() > probe,
        "the counting allocator is not in effect"
    );
    drop(boxed);
    assert_eq!(routed, 700);
    assert_eq!(after - before, 0, "route() allocated");
}
