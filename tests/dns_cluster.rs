//! A STRICT_DNS cluster through the real binary: tcp_proxy to a cluster whose endpoints are
//! named `localhost` (resolved with `dns_lookup_family: V4_ONLY`, refreshed every 50 ms), on
//! OS-chosen ports; round robin spreads the connections over both endpoints.

mod support;

use support::*;

#[test]
fn tcp_proxy_reaches_a_strict_dns_localhost_cluster() {
    let a = banner_upstream("a");
    let b = banner_upstream("b");
    let config = format!(
        "admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: front
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
{}  clusters:
  - name: backend
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 0.05s
    lb_policy: ROUND_ROBIN
    connect_timeout: 5s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: {} }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: {} }} }} }}
",
        tcp_proxy_chain("{}", "backend"),
        a.port(),
        b.port()
    );
    let nuncio = Nuncio::start(&config, &[]);
    let mut seen = Vec::new();
    for _ in 0..8 {
        let mut s = connect_and_send(nuncio.listener("front"), b"ping");
        let banner = read_banner(&mut s).expect("the proxy closed the connection");
        assert_eq!(read_n(&mut s, 4), b"ping");
        seen.push(banner);
    }
    assert!(seen.iter().any(|x| x == "a"), "{seen:?}");
    assert!(seen.iter().any(|x| x == "b"), "{seen:?}");
    nuncio.wait_stat("cluster.backend.upstream_cx_total", 8);
    // The admin's /clusters shows the resolved hosts under the name they came from.
    let (status, clusters) = http_get(nuncio.admin, "/clusters").expect("GET /clusters");
    assert_eq!(status, 200);
    for port in [a.port(), b.port()] {
        let line = format!("backend::127.0.0.1:{port}::hostname::localhost");
        assert!(clusters.contains(&line), "{line} not in:\n{clusters}");
    }
    assert!(clusters.contains("backend::default_priority::max_connections::1024"));
}
