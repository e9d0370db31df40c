//! Filter chain selection (`filter_chain_match`) through the real binary, in Envoy's precedence
//! order. Every socket is on 127.0.0.1, so the addresses a chain is matched on are set with
//! PROXY v1 headers (the listener's `proxy_protocol` filter runs before the chain is chosen, as
//! in Envoy); each chain proxies to an upstream that answers with the chain's name. Every
//! expectation in `precedence_follows_envoy` was checked against Envoy 1.40 with the same chains.

mod support;

use support::*;

/// Which chain serves a connection from `src` to `dst` (`None`: the connection was closed).
fn chain_for(nuncio: &Nuncio, listener: &str, src: &str, dst: &str) -> Option<String> {
    let (src_ip, src_port) = src.rsplit_once(':').unwrap();
    let (dst_ip, dst_port) = dst.rsplit_once(':').unwrap();
    let header = format!("PROXY TCP4 {src_ip} {dst_ip} {src_port} {dst_port}\r\nping");
    let mut s = connect_and_send(nuncio.listener(listener), header.as_bytes());
    let chain = read_banner(&mut s)?;
    assert_eq!(read_n(&mut s, 4), b"ping");
    Some(chain)
}

const CHAINS: [(&str, &str); 7] = [
    ("{ destination_port: 8443, source_ports: [1111] }", "a"),
    ("{ prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }", "b"),
    ("{ prefix_ranges: [{ address_prefix: 10.1.0.0, prefix_len: 16 }] }", "c"),
    (
        "{ prefix_ranges: [{ address_prefix: 10.1.0.0, prefix_len: 16 }], source_prefix_ranges: [{ address_prefix: 192.168.0.0, prefix_len: 16 }] }",
        "d",
    ),
    (
        "{ prefix_ranges: [{ address_prefix: 10.1.0.0, prefix_len: 16 }], source_prefix_ranges: [{ address_prefix: 192.168.1.0, prefix_len: 24 }], source_ports: [7] }",
        "e",
    ),
    ("{ source_type: SAME_IP_OR_LOOPBACK }", "f"),
    ("{ destination_port: 443 }", "tls_port"),
];

fn setup() -> Nuncio {
    let pp = "    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
";
    let mut chains = String::new();
    let mut clusters = String::new();
    for (m, name) in CHAINS {
        chains.push_str(&tcp_proxy_chain(m, name));
        clusters.push_str(&cluster(name, banner_upstream(name), "5s"));
    }
    clusters.push_str(&cluster("default", banner_upstream("default"), "5s"));
    let config = format!(
        "admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: fc
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{pp}    filter_chains:
{chains}    default_filter_chain:
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: default
          cluster: default
  - name: no_default
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{pp}    filter_chains:
{}  clusters:
{clusters}",
        tcp_proxy_chain("{ destination_port: 443 }", "tls_port"),
    );
    Nuncio::start(&config, &[])
}

#[test]
fn precedence_follows_envoy() {
    let n = setup();
    let pick = |src: &str, dst: &str| chain_for(&n, "fc", src, dst);
    // 1. destination_port outranks everything else...
    assert_eq!(pick("1.1.1.1:1111", "10.1.2.3:8443").as_deref(), Some("a"));
    // ...and once the port picked its branch there is no going back: the source port fails
    // there, so nothing matches and the default chain serves.
    assert_eq!(
        pick("1.1.1.1:2222", "10.1.2.3:8443").as_deref(),
        Some("default")
    );
    // 2. the longest destination prefix.
    assert_eq!(pick("1.1.1.1:5", "10.9.9.9:80").as_deref(), Some("b"));
    assert_eq!(pick("1.1.1.1:5", "10.1.2.3:80").as_deref(), Some("c"));
    // 7. then the longest source prefix, 8. then the source port.
    assert_eq!(pick("192.168.5.5:5", "10.1.2.3:80").as_deref(), Some("d"));
    assert_eq!(pick("192.168.1.5:7", "10.1.2.3:80").as_deref(), Some("e"));
    // 192.168.1.0/24 is the longest source match; its only port is 7: no match.
    assert_eq!(
        pick("192.168.1.5:8", "10.1.2.3:80").as_deref(),
        Some("default")
    );
    // 6. source type: loopback or the destination's own IP is "local".
    assert_eq!(pick("127.0.0.1:5", "172.16.0.1:80").as_deref(), Some("f"));
    assert_eq!(pick("172.16.0.1:5", "172.16.0.1:80").as_deref(), Some("f"));
    assert_eq!(
        pick("8.8.8.8:5", "172.16.0.1:80").as_deref(),
        Some("default")
    );
    // An exact destination port chain beats a local source.
    assert_eq!(
        pick("127.0.0.1:5", "172.16.0.1:443").as_deref(),
        Some("tls_port")
    );
}

#[test]
fn real_loopback_addresses_are_local() {
    let n = setup();
    // v2 LOCAL: the socket's own addresses (127.0.0.1 -> 127.0.0.1:<listener port>).
    let mut s = connect_and_send(
        n.listener("fc"),
        b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00ping",
    );
    assert_eq!(read_banner(&mut s).as_deref(), Some("f"));
}

#[test]
fn no_match_without_default_closes_and_counts() {
    let n = setup();
    assert_eq!(
        chain_for(&n, "no_default", "1.1.1.1:5", "10.0.0.1:443").as_deref(),
        Some("tls_port")
    );
    assert_eq!(
        chain_for(&n, "no_default", "1.1.1.1:5", "10.0.0.1:80"),
        None
    );
    let address = n.listener("no_default");
    n.wait_stat(
        &format!(
            "listener.{}_{}.no_filter_chain_match",
            address.ip(),
            address.port()
        ),
        1,
    );
}

#[test]
fn overlapping_matches_are_a_config_error() {
    let config = format!(
        "static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
{}{}  clusters:
{}",
        tcp_proxy_chain("{ source_ports: [1, 2] }", "x"),
        tcp_proxy_chain("{ source_ports: [2, 3] }", "x"),
        cluster("x", "127.0.0.1:9".parse().unwrap(), "5s"),
    );
    let path = std::env::temp_dir().join(format!("nuncio-fc-overlap-{}.yaml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nuncio"))
        .args(["--mode", "validate", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "static_resources.listeners[0].filter_chains[1].filter_chain_match: \
             multiple filter chains with overlapping matching rules are defined"
        ),
        "{stderr}"
    );
}
