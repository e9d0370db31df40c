//! Every config in `configs/` runs as shipped (only its ports are moved to free ones) and does
//! what its header comment says. `front-proxy.yaml` has its own test (tests/http_front_proxy.rs);
//! a config added to `configs/` without a test here fails `every_example_config_is_tested`.

mod support;

use std::io::{Read, Write};

use support::*;

/// The shipped config `name`, with `(from, to)` text replacements (its ports).
fn shipped(name: &str, replacements: &[(String, String)]) -> String {
    let path = format!("{}/configs/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (from, to) in replacements {
        assert!(
            text.contains(from.as_str()),
            "{name} no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    text
}

/// `port` moved to one the OS chooses.
fn port_0(port: u16) -> (String, String) {
    (format!("port_value: {port}"), "port_value: 0".to_string())
}

/// Sends `payload`, half-closes, and returns everything read back until the proxy closes.
fn round_trip(addr: std::net::SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(payload).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    back
}

#[test]
fn every_example_config_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs"))
        .expect("configs/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "default.yaml",
            "echo.yaml",
            "front-proxy.yaml",
            "tcp_proxy.yaml"
        ],
        "a config was added or removed: give it a test (here) and update this list"
    );
}

/// The embedded default (`cargo run --release --`): HTTP answered directly, echo, admin.
#[test]
fn default_config_answers_http_and_echoes() {
    let text = shipped(
        "default.yaml",
        &[port_0(10000), port_0(10001), port_0(9901)],
    );
    let nuncio = Nuncio::start(&text, &[]);
    let (status, body) = http_get(nuncio.listener("http"), "/").expect("GET /");
    assert_eq!(status, 200);
    assert!(body.starts_with("Hello from nuncio."), "{body:?}");
    assert_eq!(round_trip(nuncio.listener("echo"), b"hello\n"), b"hello\n");
    nuncio.wait_stat("http.ingress_http.downstream_rq_2xx", 1);
}

/// `configs/echo.yaml`: every byte sent comes back.
#[test]
fn echo_config_echoes() {
    let text = shipped("echo.yaml", &[port_0(10000), port_0(9901)]);
    let nuncio = Nuncio::start(&text, &[]);
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(nuncio.listener("echo"), &payload), payload);
}

/// `configs/tcp_proxy.yaml`: connections are carried to the backend cluster.
#[test]
fn tcp_proxy_config_carries_connections_to_the_backend() {
    let backend = Upstream::echo();
    let text = shipped(
        "tcp_proxy.yaml",
        &[
            port_0(10000),
            port_0(9901),
            (
                "port_value: 8080".to_string(),
                format!("port_value: {}", backend.addr.port()),
            ),
        ],
    );
    let nuncio = Nuncio::start(&text, &[]);
    let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
    assert_eq!(round_trip(nuncio.listener("tcp_proxy"), &payload), payload);
    nuncio.wait_stat("tcp.tcp_backend.downstream_cx_total", 1);
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
