//! The per-connection upstream hot path allocates nothing: picking a host (every load-balancing
//! policy, weighted and not) and selecting a filter chain perform no heap allocation. Measured
//! with a counting global allocator (this test binary only), per thread so other tests cannot
//! disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use nuncio::config;
use nuncio::network::filter_chain::{ConnectionMatchInfo, FilterChainManager};
use nuncio::stats::Store;
use nuncio::upstream::cluster_manager::ClusterManager;
use reactor::Dispatcher;

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

#[test]
fn the_counter_counts() {
    let before = allocations();
    // black_box: the optimizer may not remove the allocation (CI tests in release mode).
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(16));
    assert_eq!(allocations() - before, 1);
    drop(v);
}

fn endpoint(port: u16, weight: u32) -> String {
    format!(
        "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n          load_balancing_weight: {weight}\n"
    )
}

fn cluster(name: &str, policy: &str, weights: &[u32]) -> String {
    let endpoints: String = weights
        .iter()
        .enumerate()
        .map(|(i, w)| endpoint(8000 + i as u16, *w))
        .collect();
    format!(
        "  - name: {name}\n    lb_policy: {policy}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{endpoints}"
    )
}

#[test]
fn choose_host_does_not_allocate() {
    let mut yaml = String::from("static_resources:\n  clusters:\n");
    let mut names = Vec::new();
    for policy in ["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"] {
        for (suffix, weights) in [("equal", [1, 1, 1]), ("weighted", [1, 2, 5])] {
            let name = format!("{}_{suffix}", policy.to_lowercase());
            yaml.push_str(&cluster(&name, policy, &weights));
            names.push(name);
        }
    }
    let bootstrap = config::load_str(&yaml).unwrap();
    let store = Store::new();
    let cm = ClusterManager::new(&bootstrap.static_resources.clusters, &store).unwrap();
    let dispatcher = Dispatcher::new("worker_alloc").unwrap();
    let tlcm = cm
        .handle()
        .register_worker(&dispatcher, &store.for_worker());
    let ids: Vec<_> = names.iter().map(|n| tlcm.cluster_id(n).unwrap()).collect();
    for id in &ids {
        for _ in 0..10 {
            tlcm.cluster(*id).choose_host().unwrap();
        }
    }
    let before = allocations();
    let mut picked = 0u64;
    for id in &ids {
        let cluster = tlcm.cluster(*id);
        for _ in 0..1000 {
            let host = cluster.choose_host().unwrap();
            picked += u64::from(host.address().port());
        }
    }
    assert_eq!(allocations() - before, 0, "host picks allocated");
    assert!(picked > 0);
}

#[test]
fn find_filter_chain_does_not_allocate() {
    let yaml = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filter_chain_match: { destination_port: 10000, source_ports: [1, 2] }
      filters: []
    - filter_chain_match: { prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }
      filters: []
    - filter_chain_match: { source_type: EXTERNAL, source_prefix_ranges: [{ address_prefix: 192.168.0.0, prefix_len: 16 }] }
      filters: []
    default_filter_chain: { filters: [] }
"#;
    let bootstrap = config::load_str(yaml).unwrap();
    let manager =
        FilterChainManager::from_listener(&bootstrap.static_resources.listeners[0], |c| {
            Ok(c.path.clone())
        })
        .unwrap();
    let infos: Vec<ConnectionMatchInfo<'static>> = [
        ("127.0.0.1:10000", "127.0.0.1:1"),
        ("10.1.1.1:80", "127.0.0.1:5"),
        ("1.1.1.1:80", "192.168.3.3:5"),
        ("1.1.1.1:80", "8.8.8.8:5"),
        ("[::1]:80", "[::1]:5"),
    ]
    .iter()
    .map(|(l, r)| ConnectionMatchInfo::tcp(l.parse().unwrap(), r.parse().unwrap()))
    .collect();
    let before = allocations();
    let mut found = 0;
    for _ in 0..1000 {
        for info in &infos {
            found += usize::from(manager.find_filter_chain(info).is_some());
        }
    }
    assert_eq!(allocations() - before, 0, "filter chain lookups allocated");
    assert_eq!(found, 5000);
}
