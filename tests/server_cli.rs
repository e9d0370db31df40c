//! The `nuncio` command line and process life, through the real binary: `--help`,
//! `--version`, unknown flags, `--mode validate`, config errors (message with the field's
//! path, exit 1), the example configs, and SIGTERM/SIGINT draining.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

#[test]
fn help_version_and_unknown_flags() {
    let (status, out, _) = run_to_end(&["--help"]);
    assert!(status.success());
    assert!(out.contains("--config-path") && out.contains("--drain-time-s"));
    let (status, out, _) = run_to_end(&["--version"]);
    assert!(status.success());
    assert!(out.starts_with("nuncio "));
    let (status, _, err) = run_to_end(&["--frobnicate"]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("unknown argument '--frobnicate'"), "{err}");
    let (status, _, err) = run_to_end(&["--concurrency", "many"]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("--concurrency"), "{err}");
}

#[test]
fn validate_mode_reports_ok_without_binding() {
    // The listener's port is taken: validate must not care (it binds nothing).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = simple_config("echo", ECHO_FILTER, "").replacen(
        "port_value: 0 }",
        &format!("port_value: {port} }}"),
        1,
    );
    let path = write_config(&config);
    let (status, out, _) = run_to_end(&["--mode", "validate", "-c", path.to_str().unwrap()]);
    assert!(status.success());
    assert_eq!(out.trim(), format!("configuration '{}' OK", path.display()));
    // The embedded default config validates too.
    let (status, out, _) = run_to_end(&["--mode", "validate"]);
    assert!(status.success());
    assert!(out.contains("OK"));
}

#[test]
fn example_configs_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let (status, out, err) = run_to_end(&["--mode", "validate", "-c", path.to_str().unwrap()]);
        assert!(status.success(), "{}: {out}{err}", path.display());
        checked += 1;
    }
    assert!(checked >= 2);
}

/// A config error: (what to change in a good tcp_proxy config, the expected message).
fn config_error_cases() -> Vec<(String, &'static str)> {
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let good = simple_config(
        "proxy",
        &tcp_proxy_filter("tp", "backend"),
        &cluster("backend", upstream, "1s"),
    );
    vec![
        (
            good.replace("cluster: backend\n", "cluster: x\n"),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster: cluster 'x' does not exist",
        ),
        (
            good.replace("stat_prefix: tp\n", "stat_prefix: tp\n          bogus_field: 1\n"),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.bogus_field: unknown field",
        ),
        (
            good.replace("          stat_prefix: tp\n", ""),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix: required field is missing",
        ),
        (
            good.replace("connect_timeout: 1s", "connect_timeout: 5ms"),
            "static_resources.clusters[0].connect_timeout:",
        ),
        (
            good.replacen("address: 127.0.0.1, port_value: 0", "address: not-an-ip, port_value: 0", 1),
            "static_resources.listeners[0].address.socket_address.address:",
        ),
        (
            good.replace(
                "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config: no network filter is registered for type",
        ),
        (
            good.replace("stat_prefix: tp\n", "stat_prefix: tp\n          hash_policy: []\n"),
            "typed_config.hash_policy: not supported by nuncio",
        ),
        (
            good.replace("port_value: 9 }", "port_value: 99999 }"),
            "static_resources.clusters[0].load_assignment",
        ),
        ("static_resources: [unclosed".to_string(), "line"),
        (
            good.replace("stat_prefix: tp\n", "stat_prefix: tp\n          idle_timeout: soon\n"),
            "typed_config.idle_timeout:",
        ),
    ]
}

#[test]
fn every_config_error_names_its_field_and_exits_1() {
    for (config, expected) in config_error_cases() {
        let path = write_config(&config);
        let path = path.to_str().unwrap();
        for mode in ["validate", "serve"] {
            let (status, _, err) = run_to_end(&["--mode", mode, "-c", path, "-l", "off"]);
            assert_eq!(
                status.code(),
                Some(1),
                "--mode {mode}: expected exit 1 for {expected}: {err}"
            );
            assert!(
                err.contains(expected),
                "--mode {mode}: expected '{expected}' in: {err}"
            );
        }
    }
    let (status, _, err) = run_to_end(&["-c", "/nonexistent/nuncio.yaml"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("cannot read config file '/nonexistent/nuncio.yaml'"),
        "{err}"
    );
}

#[test]
fn sigterm_drains_then_exits_0() {
    let upstream = Upstream::echo();
    let config = simple_config(
        "proxy",
        &tcp_proxy_filter("tp", "backend"),
        &cluster("backend", upstream.addr, "1s"),
    );
    let mut nuncio = Nuncio::start(&config, &[]);
    let addr = nuncio.listener("proxy");
    let mut held = connect(addr);
    held.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    held.read_exact(&mut buf).unwrap();

    nuncio.signal(Signal::SIGTERM);
    // Draining: not ready, no longer accepting, the held connection still works.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = http_get(nuncio.admin, "/ready").unwrap();
        if status == 503 {
            assert_eq!(body, "DRAINING\n");
            break;
        }
        assert!(Instant::now() < deadline, "never reported draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still accepting while draining"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    held.write_all(b"pong").unwrap();
    held.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert!(
        nuncio.wait_exit(Duration::from_millis(200)).is_none(),
        "exited before the connection closed"
    );
    // The last connection closes: the process exits 0, saying so.
    drop(held);
    let status = nuncio.wait_exit(TIMEOUT).expect("exits after the drain");
    assert_eq!(status.code(), Some(0));
    assert!(nuncio.logged("exiting"));
}

#[test]
fn second_signal_and_drain_time_end_the_drain() {
    let config = simple_config("echo", ECHO_FILTER, "");
    // A second SIGINT exits at once even with a connection open.
    let mut nuncio = Nuncio::start(&config, &[]);
    let _held = connect(nuncio.listener("echo"));
    nuncio.signal(Signal::SIGINT);
    let deadline = Instant::now() + TIMEOUT;
    while !nuncio.logged("caught SIGINT") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    nuncio.signal(Signal::SIGINT);
    assert_eq!(nuncio.wait_exit(TIMEOUT).and_then(|s| s.code()), Some(0));

    // --drain-time-s bounds the wait.
    let mut nuncio = Nuncio::start(&config, &["--drain-time-s", "1"]);
    let _held = connect(nuncio.listener("echo"));
    let started = Instant::now();
    nuncio.signal(Signal::SIGTERM);
    assert_eq!(nuncio.wait_exit(TIMEOUT).and_then(|s| s.code()), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(900));
}
