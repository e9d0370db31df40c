//! The HTTP connection manager's connection-level behaviour end to end, through the real
//! `nuncio` binary with real clients and upstreams on 127.0.0.1: the drain sequence on
//! SIGTERM, per-route `idle_timeout`, `x-envoy-immediate-health-check-fail`, the listener's
//! `per_connection_buffer_limit_bytes`, and the trace-level call chain of one request.

mod http_support;

use std::time::{Duration, Instant};

use http_support::*;
use nix::sys::signal::Signal;

/// Waits until the admin's `/ready` says the server is draining.
fn wait_draining(proxy: &Nuncio) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = request(proxy.admin, "GET /ready HTTP/1.1\r\nhost: a\r\n\r\n").expect("/ready");
        if r.status == 503 {
            return;
        }
        assert!(Instant::now() < deadline, "never reported draining");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// === drain (Envoy's drain manager → ConnectionManagerImpl::startDrainSequence) ===

#[test]
fn drain_gives_keep_alive_connections_connection_close_and_counts_drain_close() {
    let up = HttpUpstream::hello();
    // A long drain_timeout: idle connections stay open, so each can still send one request.
    let cfg = config(up.addr, "          drain_timeout: 60s\n", "", "", "");
    let mut proxy = Nuncio::start_with(&cfg, &["--concurrency", "1", "--drain-time-s", "60"]);
    let mut a = Client::connect(proxy.listener);
    let mut b = Client::connect(proxy.listener);
    for c in [&mut a, &mut b] {
        c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        let r = c.read_response().expect("response before the drain");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None, "keep-alive before the drain");
    }
    proxy.signal(Signal::SIGTERM);
    wait_draining(&proxy);
    // Both connections heard the drain: counted once each, before any response.
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 2);

    a.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = a.read_response().expect("response during the drain");
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(a.closed(), "the connection closes after the response");
    assert_eq!(proxy.stat("http.ingress.downstream_cx_drain_close"), 2);

    // The last connection's response ends the drain well before --drain-time-s.
    let started = Instant::now();
    b.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = b.read_response().expect("response during the drain");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(b.closed());
    let status = proxy.wait_exit(TIMEOUT).expect("exits once drained");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn drain_answers_the_request_in_flight_and_closes_idle_connections_after_drain_timeout() {
    let up = HttpUpstream::start(|r, _| {
        if r.path == "/slow" {
            Reply::ok("slow").after(Duration::from_millis(300))
        } else {
            Reply::ok("hello")
        }
    });
    let cfg = config(up.addr, "          drain_timeout: 0.2s\n", "", "", "");
    let mut proxy = Nuncio::start_with(&cfg, &["--concurrency", "1", "--drain-time-s", "60"]);
    let mut idle = Client::connect(proxy.listener);
    idle.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(idle.read_response().unwrap().status, 200);
    let mut busy = Client::connect(proxy.listener);
    busy.send(b"GET /slow HTTP/1.1\r\nhost: h\r\n\r\n");
    let deadline = Instant::now() + TIMEOUT;
    while !up.requests().iter().any(|r| r.path == "/slow") {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    proxy.signal(Signal::SIGTERM);
    // The response in flight is delivered whole, says `connection: close`, and the connection
    // closes after it.
    let r = busy.read_response().expect("the in-flight response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(busy.closed());
    // The idle keep-alive connection is closed when drain_timeout ends.
    assert!(idle.closed(), "idle connection closed by the drain");
    let status = proxy.wait_exit(TIMEOUT).expect("exits once drained");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain ran {:?} of --drain-time-s 60",
        started.elapsed()
    );
}
