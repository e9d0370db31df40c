//! `envoy.filters.listener.proxy_protocol` through the real binary: PROXY v1 and v2 headers set
//! the connection's addresses (seen here through which filter chain serves the connection), the
//! payload after the header reaches the upstream byte for byte, and bad or missing headers close
//! the connection and are counted under Envoy 1.40's stat names.

mod support;

use std::io::Write;
use std::thread;
use std::time::Duration;

use support::*;

const PP_FILTER: &str = "    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
";

/// Listener `pp` (header required): destination port 443 → `https`, sources in 10.0.0.0/8 →
/// `ten`, anything else → the default chain (`default`). Listener `allow` (header optional,
/// stat_prefix `allow`) → `default`.
fn setup() -> Nuncio {
    let https = banner_upstream("https");
    let ten = banner_upstream("ten");
    let default = banner_upstream("default");
    let config = format!(
        "admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: pp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{PP_FILTER}    filter_chains:
{}{}    default_filter_chain:
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: default
          cluster: default
  - name: allow
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{PP_FILTER}        allow_requests_without_proxy_protocol: true
        stat_prefix: allow
    filter_chains:
{}  clusters:
{}{}{}",
        tcp_proxy_chain("{ destination_port: 443 }", "https"),
        tcp_proxy_chain(
            "{ source_prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }",
            "ten"
        ),
        tcp_proxy_chain("{}", "default"),
        cluster("https", https, "5s"),
        cluster("ten", ten, "5s"),
        cluster("default", default, "5s"),
    );
    Nuncio::start(&config, &[])
}

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut v = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    v.push(command);
    v.push(family);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Sends `header` + `payload`, expects chain `chain`, then the payload echoed unchanged.
fn expect_chain(nuncio: &Nuncio, listener: &str, header: &[u8], chain: &str) {
    let payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = header.to_vec();
    first.extend_from_slice(payload);
    let mut s = connect_and_send(nuncio.listener(listener), &first);
    let shown = String::from_utf8_lossy(&header[..header.len().min(48)]).into_owned();
    assert_eq!(read_banner(&mut s).as_deref(), Some(chain), "{shown:?}");
    assert_eq!(read_n(&mut s, payload.len()), payload);
}

#[test]
fn v1_header_sets_the_destination_port() {
    let nuncio = setup();
    expect_chain(
        &nuncio,
        "pp",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 443\r\n",
        "https",
    );
    expect_chain(
        &nuncio,
        "pp",
        b"PROXY TCP6 2001:db8::1 ::1 5555 443\r\n",
        "https",
    );
    nuncio.wait_stat("proxy_proto.versions.v1.found", 2);
    assert_eq!(nuncio.stat("downstream_cx_proxy_proto_error"), 0);
}

#[test]
fn v2_header_sets_the_source_address() {
    let nuncio = setup();
    let header = v2(
        0x21,
        0x11,
        &[10, 1, 2, 3, 192, 0, 2, 9, 0x30, 0x39, 0x1f, 0x90],
    );
    expect_chain(&nuncio, "pp", &header, "ten");
    nuncio.wait_stat("proxy_proto.versions.v2.found", 1);
}

#[test]
fn v2_with_large_tlvs_keeps_the_payload_intact() {
    let nuncio = setup();
    let mut body = vec![10, 9, 9, 9, 127, 0, 0, 1, 0, 1, 0, 2];
    body.push(0x05);
    body.extend_from_slice(&(20_000u16).to_be_bytes());
    body.resize(body.len() + 20_000, b'z');
    expect_chain(&nuncio, "pp", &v2(0x21, 0x11, &body), "ten");
}

#[test]
fn local_and_unknown_keep_the_socket_addresses() {
    let nuncio = setup();
    expect_chain(&nuncio, "pp", &v2(0x20, 0x00, &[]), "default");
    expect_chain(&nuncio, "pp", b"PROXY UNKNOWN\r\n", "default");
}

#[test]
fn header_split_across_many_writes() {
    let nuncio = setup();
    let header = b"PROXY TCP4 10.0.0.7 127.0.0.1 1000 443\r\n";
    let mut s = connect_and_send(nuncio.listener("pp"), &header[..1]);
    for byte in &header[1..] {
        thread::sleep(Duration::from_millis(2));
        s.write_all(&[*byte]).unwrap();
    }
    s.write_all(b"after").unwrap();
    // destination_port 443 outranks the source range.
    assert_eq!(read_banner(&mut s).as_deref(), Some("https"));
    assert_eq!(read_n(&mut s, 5), b"after");
}

#[test]
fn missing_and_malformed_headers_close_and_count() {
    let nuncio = setup();
    let mut s = connect_and_send(
        nuncio.listener("pp"),
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    );
    assert!(closed_without_data(&mut s));
    nuncio.wait_stat("proxy_proto.not_found_disallowed", 1);

    let mut s = connect_and_send(
        nuncio.listener("pp"),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\nhello",
    );
    assert!(closed_without_data(&mut s));
    nuncio.wait_stat("proxy_proto.versions.v1.error", 1);

    let mut s = connect_and_send(nuncio.listener("pp"), &v2(0x21, 0x00, b"abc"));
    assert!(closed_without_data(&mut s));
    nuncio.wait_stat("proxy_proto.versions.v2.error", 1);

    nuncio.wait_stat("downstream_cx_proxy_proto_error", 3);
    // None of them reached a filter chain.
    assert_eq!(nuncio.stat("tcp.default.downstream_cx_total"), 0);
}

#[test]
fn optional_header_passes_plain_connections_through() {
    let nuncio = setup();
    expect_chain(&nuncio, "allow", b"", "default");
    expect_chain(
        &nuncio,
        "allow",
        b"PROXY TCP4 10.0.0.1 127.0.0.1 1 443\r\n",
        "default",
    );
    nuncio.wait_stat("proxy_proto.allow.not_found_allowed", 1);
    nuncio.wait_stat("proxy_proto.allow.versions.v1.found", 1);
}
