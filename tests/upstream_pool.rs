//! The upstream connection pool's pending queue and the cluster circuit breakers end to end:
//! the real `nuncio` binary between raw-socket clients and a real upstream on 127.0.0.1 whose
//! answers the test releases one by one (a gate), so "the connection is busy" is a fact, not
//! a timing guess. Stats are read from the admin `/stats`.

mod http_support;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use http_support::*;

const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// An upstream that holds every request until the test opens the gate once for it.
struct Gated {
    up: HttpUpstream,
    open: Sender<()>,
}

impl Gated {
    fn start() -> Gated {
        Gated::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn start_on(listener: std::net::TcpListener) -> Gated {
        let (open, rx): (Sender<()>, Receiver<()>) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let up = HttpUpstream::start_on(listener, move |req, _| {
            let _ = rx.lock().unwrap().recv_timeout(TIMEOUT);
            Reply::ok(&format!("answer {}", req.path))
        });
        Gated { up, open }
    }

    /// Lets one held request be answered.
    fn release_one(&self) {
        self.open.send(()).unwrap();
    }

    /// Waits until the upstream has received `n` requests.
    fn wait_received(&self, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.up.requests().len() < n {
            assert!(Instant::now() < deadline, "upstream never got {n} requests");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

fn send_get(proxy: &Nuncio, path: &str) -> Client {
    let mut c = Client::connect(proxy.listener);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    c
}

// === the pending queue ===

#[test]
fn at_max_connections_a_request_waits_for_the_busy_connection() {
    let gated = Gated::start();
    let proxy = Nuncio::start(&with_breakers(gated.up.addr, "max_connections: 1"));
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    let mut b = send_get(&proxy, "/b");
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 1);
    assert_eq!(proxy.stat("cluster.app.upstream_cx_overflow"), 1);
    assert_eq!(
        proxy.stat("cluster.app.circuit_breakers.default.cx_open"),
        1
    );
    assert_eq!(gated.up.requests().len(), 1, "b must wait, not be sent");

    gated.release_one();
    let ra = a.read_response().unwrap();
    assert_eq!((ra.status, ra.body_str().as_str()), (200, "answer /a"));
    // The released connection went to the waiting request.
    gated.wait_received(2);
    gated.release_one();
    let rb = b.read_response().unwrap();
    assert_eq!((rb.status, rb.body_str().as_str()), (200, "answer /b"));

    let requests = gated.up.requests();
    assert_eq!(
        requests.iter().map(|r| r.connection).collect::<Vec<_>>(),
        [0, 0],
        "both on the one connection"
    );
    assert_eq!(
        gated
            .up
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_rq_pending_total"], 2);
    assert_eq!(stats["cluster.app.upstream_rq_pending_active"], 0);
    assert_eq!(stats["cluster.app.upstream_rq_pending_overflow"], 0);
    assert_eq!(stats["cluster.app.upstream_cx_total"], 1);
}

/// `per_host_thresholds` (Envoy honours only its `max_connections`): at the host's limit a
/// request waits for the busy connection like at the cluster's, and counts
/// `upstream_cx_overflow`, but the cluster's `cx_open` breaker gauge stays 0 (Envoy 1.40 with
/// the same config: same order and connection count, cx_open 0).
#[test]
fn at_the_per_host_connection_limit_a_request_waits() {
    let gated = Gated::start();
    let proxy = Nuncio::start(&config(
        gated.up.addr,
        "",
        "",
        "",
        "    circuit_breakers: {per_host_thresholds: [{max_connections: 1, max_requests: 7}]}\n",
    ));
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    let mut b = send_get(&proxy, "/b");
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 1);
    assert_eq!(proxy.stat("cluster.app.upstream_cx_overflow"), 1);
    assert_eq!(
        proxy.stat("cluster.app.circuit_breakers.default.cx_open"),
        0
    );
    assert_eq!(gated.up.requests().len(), 1, "b must wait, not be sent");
    gated.release_one();
    assert_eq!(a.read_response().unwrap().body_str(), "answer /a");
    gated.wait_received(2);
    gated.release_one();
    assert_eq!(b.read_response().unwrap().body_str(), "answer /b");
    let connections: Vec<usize> = gated.up.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [0, 0], "both on the one connection");
    assert_eq!(proxy.stat("cluster.app.upstream_cx_total"), 1);
}

/// `upstream_cx_overflow` as Envoy 1.40 counts it (same config and requests): once per
/// `newStream` the `max_connections` breaker refuses, and once more each time a connection is
/// handed to a stream while others still wait (Envoy's `onUpstreamReady` asks the breaker for
/// them again). Here the connection is up before `/b` and `/c` arrive: 2, then 3 when `/a`'s
/// release goes to `/b` with `/c` still waiting, and `/c` taking it after `/b` counts none.
#[test]
fn cx_overflow_counts_each_refused_ask_for_waiting_streams() {
    let gated = Gated::start();
    let proxy = Nuncio::start(&with_breakers(gated.up.addr, "max_connections: 1"));
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    let mut waiting = [send_get(&proxy, "/b"), send_get(&proxy, "/c")];
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 2);
    assert_eq!(proxy.stat("cluster.app.upstream_cx_overflow"), 2);
    gated.release_one();
    assert_eq!(a.read_response().unwrap().body_str(), "answer /a");
    gated.wait_received(2);
    assert_eq!(proxy.stat("cluster.app.upstream_cx_overflow"), 3);
    for c in &mut waiting {
        gated.release_one();
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_cx_overflow"], 3);
    assert_eq!(stats["cluster.app.upstream_cx_total"], 1);
    assert_eq!(stats["cluster.app.upstream_rq_total"], 3);
}

/// The same while the first connection is still connecting (its SYN waits behind an upstream
/// accept queue the test filled): Envoy 1.40 counts 3 requests 2 before the connect, 3 at it
/// (`/a` attached, 2 still waiting), 4 at `/a`'s release; 5 requests 4, 5, then 8.
#[test]
fn cx_overflow_counts_while_the_first_connection_connects() {
    for (n, before, connected, end) in [(3, 2, 3, 4), (5, 4, 5, 8)] {
        // Backlog 0 holds one connection: the dummy fills it, so the proxy's SYN is dropped
        // and its connect completes at the SYN's retransmit (~1 s), once accepting starts.
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .unwrap();
        let any = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 0);
        nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any).unwrap();
        nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let listener = std::net::TcpListener::from(fd);
        let addr = listener.local_addr().unwrap();
        let dummy = std::net::TcpStream::connect(addr).unwrap();
        let config = with_breakers(addr, "max_connections: 1")
            .replace("connect_timeout: 1s", "connect_timeout: 10s");
        let proxy = Nuncio::start(&config);
        let mut clients: Vec<Client> = (0..n).map(|i| send_get(&proxy, &format!("/{i}"))).collect();
        proxy.wait_stat("cluster.app.upstream_rq_pending_active", n as u64);
        let stats = proxy.stats();
        assert_eq!(
            stats["cluster.app.upstream_rq_total"], 0,
            "still connecting"
        );
        assert_eq!(stats["cluster.app.upstream_cx_overflow"], before, "n={n}");
        let gated = Gated::start_on(listener);
        drop(dummy);
        gated.wait_received(1);
        proxy.wait_stat("cluster.app.upstream_rq_total", 1);
        assert_eq!(
            proxy.stat("cluster.app.upstream_cx_overflow"),
            connected,
            "n={n}"
        );
        for c in &mut clients {
            gated.release_one();
            assert_eq!(c.read_response().unwrap().status, 200);
        }
        let stats = proxy.stats();
        assert_eq!(stats["cluster.app.upstream_cx_overflow"], end, "n={n}");
        assert_eq!(stats["cluster.app.upstream_cx_total"], 1);
        assert_eq!(stats["cluster.app.upstream_rq_total"], n as u64);
    }
}

#[test]
fn waiting_requests_are_served_in_arrival_order() {
    let gated = Gated::start();
    let proxy = Nuncio::start(&with_breakers(gated.up.addr, "max_connections: 1"));
    let mut first = send_get(&proxy, "/0");
    gated.wait_received(1);
    let mut waiting = Vec::new();
    for i in 1..4 {
        waiting.push(send_get(&proxy, &format!("/{i}")));
        proxy.wait_stat("cluster.app.upstream_rq_pending_active", i);
    }
    gated.release_one();
    assert_eq!(first.read_response().unwrap().status, 200);
    for (i, c) in waiting.iter_mut().enumerate() {
        gated.release_one();
        let r = c.read_response().unwrap();
        assert_eq!(r.body_str(), format!("answer /{}", i + 1));
    }
    let paths: Vec<String> = gated.up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/0", "/1", "/2", "/3"]);
}

#[test]
fn max_pending_requests_overflow_is_503_overloaded() {
    let gated = Gated::start();
    let path = std::env::temp_dir().join(format!("nuncio-pool-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let hcm = format!(
        "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format: {{text_format_source: {{inline_string: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n\"}}}}\n",
        path.display()
    );
    let proxy = Nuncio::start_with(
        &config(
            gated.up.addr,
            &hcm,
            "",
            "",
            &breakers("max_connections: 1, max_pending_requests: 1"),
        ),
        &["--concurrency", "1", "--file-flush-interval-msec", "50"],
    );
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    let mut b = send_get(&proxy, "/b");
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 1);
    assert_eq!(
        proxy.stat("cluster.app.circuit_breakers.default.rq_pending_open"),
        1
    );
    // The queue is full: the third request is refused at once.
    let r = get(proxy.listener, "/c");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(r.body_str(), OVERFLOW_BODY);
    assert_eq!(proxy.stat("cluster.app.upstream_rq_pending_overflow"), 1);

    gated.release_one();
    gated.release_one();
    assert_eq!(a.read_response().unwrap().status, 200);
    assert_eq!(b.read_response().unwrap().status, 200);
    assert_eq!(gated.up.requests().len(), 2);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 3 {
            assert!(text.lines().any(|l| l == "/c 503 UO"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "access log: {text:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn max_pending_requests_zero_refuses_every_request_needing_a_connection() {
    // As Envoy: a request that finds no ready connection is pending while one is opened.
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&with_breakers(up.addr, "max_pending_requests: 0"));
    for _ in 0..2 {
        let r = get(proxy.listener, "/");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
        assert_eq!(r.body_str(), OVERFLOW_BODY);
    }
    assert!(up.requests().is_empty());
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_rq_pending_overflow"], 2);
    assert_eq!(stats["cluster.app.upstream_rq_pending_total"], 0);
    assert_eq!(stats["cluster.app.upstream_rq_total"], 0);
}

#[test]
fn a_waiting_request_whose_client_leaves_is_removed_from_the_queue() {
    let gated = Gated::start();
    let proxy = Nuncio::start(&with_breakers(
        gated.up.addr,
        "max_connections: 1, max_pending_requests: 1",
    ));
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    let b = send_get(&proxy, "/b");
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 1);
    drop(b);
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 0);
    assert_eq!(proxy.stat("cluster.app.upstream_rq_cancelled"), 1);
    assert_eq!(
        proxy.stat("cluster.app.circuit_breakers.default.rq_pending_open"),
        0
    );
    // The queue has room again, and the connection serves the next request after `a`.
    let mut c = send_get(&proxy, "/c");
    proxy.wait_stat("cluster.app.upstream_rq_pending_active", 1);
    gated.release_one();
    assert_eq!(a.read_response().unwrap().status, 200);
    gated.release_one();
    let rc = c.read_response().unwrap();
    assert_eq!((rc.status, rc.body_str().as_str()), (200, "answer /c"));
    let paths: Vec<String> = gated.up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/a", "/c"],
        "the cancelled request never went upstream"
    );
}

#[test]
fn a_waiting_request_times_out_with_504() {
    let gated = Gated::start();
    let routes =
        "              - match: {prefix: \"/t\"}\n                route: {cluster: app, timeout: 0.3s}\n";
    let proxy = Nuncio::start(&config(
        gated.up.addr,
        "",
        routes,
        "",
        &breakers("max_connections: 1"),
    ));
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    let r = get(proxy.listener, "/t");
    assert_eq!(r.status, 504);
    assert_eq!(r.body_str(), "upstream request timeout");
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_rq_timeout"], 1);
    assert_eq!(stats["cluster.app.upstream_rq_pending_active"], 0);
    gated.release_one();
    assert_eq!(a.read_response().unwrap().status, 200);
    assert_eq!(gated.up.requests().len(), 1);
}

// === circuit breakers shared by the workers ===

#[test]
fn max_requests_is_one_limit_for_all_workers() {
    let gated = Gated::start();
    let proxy = Nuncio::start_with(
        &with_breakers(gated.up.addr, "max_requests: 1"),
        &["--concurrency", "2"],
    );
    let mut a = send_get(&proxy, "/a");
    gated.wait_received(1);
    assert_eq!(
        proxy.stat("cluster.app.circuit_breakers.default.rq_open"),
        1
    );
    // Whichever worker takes these connections, the cluster already has its one request.
    for _ in 0..6 {
        let r = get(proxy.listener, "/b");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
    }
    assert_eq!(proxy.stat("cluster.app.upstream_rq_pending_overflow"), 6);
    gated.release_one();
    assert_eq!(a.read_response().unwrap().status, 200);
    proxy.wait_stat("cluster.app.circuit_breakers.default.rq_open", 0);
    gated.release_one();
    assert_eq!(get(proxy.listener, "/c").status, 200);
}

// === idle connections ===

#[test]
fn an_idle_connection_the_upstream_closes_frees_its_slot_and_stats_at_once() {
    // The upstream hangs up 50 ms after each answer, while the connection sits idle in the pool.
    let up = HttpUpstream::start(|_, _| Reply::ok("x").closing_after(Duration::from_millis(50)));
    let proxy = Nuncio::start(&with_breakers(up.addr, "max_connections: 1"));
    let cx_open = "cluster.app.circuit_breakers.default.cx_open";
    let r = get(proxy.listener, "/");
    assert_eq!(r.status, 200);
    // The pooled connection's close is seen while it is idle, without waiting for a request:
    // it leaves the pool, the breaker and upstream_cx_active (Envoy's idle ActiveClient).
    proxy.wait_stat("cluster.app.upstream_cx_destroy_remote", 1);
    proxy.wait_stat(cx_open, 0);
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_cx_active"], 0);
    assert_eq!(stats["cluster.app.upstream_cx_destroy"], 1);
    assert_eq!(stats["cluster.app.upstream_cx_destroy_local"], 0);
    // The next request gets a new connection (the slot is free), no 503.
    let r = get(proxy.listener, "/");
    assert_eq!(r.status, 200, "{r:?}");
    proxy.wait_stat("cluster.app.upstream_cx_destroy_remote", 2);
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_cx_total"], 2);
    assert_eq!(stats["cluster.app.upstream_cx_active"], 0);
    assert_eq!(stats["cluster.app.upstream_cx_overflow"], 0);
    assert_eq!(stats["http.ingress.downstream_rq_5xx"], 0);
    assert_eq!(stats[cx_open], 0);
}

// === max_connection_pools and track_remaining ===

#[test]
fn max_connection_pools_refuses_a_second_hosts_pool_and_remaining_gauges_track_it() {
    // Two hosts, round robin, one connection pool allowed: the first request's host keeps its
    // pool (its idle connection), the second host gets none. Checked against Envoy 1.40 (same
    // config): 200, then 503 `no healthy upstream`, then 200; the same stats.
    let a = HttpUpstream::start(|_, _| Reply::ok("a"));
    let b = HttpUpstream::start(|_, _| Reply::ok("b"));
    let one = format!(
        "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
        a.addr.port()
    );
    let two = format!(
        "{one}        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
        b.addr.port()
    );
    let config =
        with_breakers(a.addr, "track_remaining: true, max_connection_pools: 1").replace(&one, &two);
    let proxy = Nuncio::start_with(&config, &["--concurrency", "1"]);
    let cb = "cluster.app.circuit_breakers.default.";
    let stats = proxy.stats();
    for (name, value) in [
        ("remaining_cx", 1024),
        ("remaining_pending", 1024),
        ("remaining_rq", 1024),
        ("remaining_retries", 3),
        ("remaining_cx_pools", 1),
    ] {
        assert_eq!(stats[&format!("{cb}{name}")], value, "{name}");
    }
    assert!(
        !stats.contains_key("cluster.app.circuit_breakers.high.remaining_cx"),
        "no remaining gauges without track_remaining"
    );

    // Round robin starts anywhere: the first host answers, the other has no pool.
    let first = get(proxy.listener, "/").body_str();
    let r = get(proxy.listener, "/");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (503, "no healthy upstream")
    );
    assert_eq!(get(proxy.listener, "/").body_str(), first);
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_cx_pool_overflow"], 1);
    assert_eq!(stats["cluster.app.upstream_rq_503"], 1);
    assert_eq!(stats["cluster.app.upstream_cx_total"], 1);
    assert_eq!(stats[&format!("{cb}cx_pool_open")], 1);
    assert_eq!(stats[&format!("{cb}remaining_cx_pools")], 0);
    assert_eq!(
        stats[&format!("{cb}remaining_cx")],
        1023,
        "the idle connection"
    );
    assert_eq!(stats[&format!("{cb}remaining_rq")], 1024);
    let other = if first == "a" { &b } else { &a };
    assert!(other.requests().is_empty());
}

#[test]
fn an_idle_connection_past_the_pool_idle_timeout_is_closed_on_time() {
    // Envoy's upstream idle timeout (common_http_protocol_options.idle_timeout): the idle
    // pooled connection is closed by the proxy when it expires, not when next wanted.
    let up = HttpUpstream::hello();
    let options = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        common_http_protocol_options: {idle_timeout: 0.3s}\n        explicit_http_config: {http_protocol_options: {}}\n";
    let proxy = Nuncio::start(&config(
        up.addr,
        "",
        "",
        "",
        &format!("{options}{}", breakers("max_connections: 1")),
    ));
    assert_eq!(get(proxy.listener, "/").status, 200);
    proxy.wait_stat("cluster.app.upstream_cx_idle_timeout", 1);
    proxy.wait_stat("cluster.app.circuit_breakers.default.cx_open", 0);
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_cx_active"], 0);
    assert_eq!(stats["cluster.app.upstream_cx_destroy_local"], 1);
    assert_eq!(stats["cluster.app.upstream_cx_destroy_remote"], 0);
    // A new request opens a new connection.
    assert_eq!(get(proxy.listener, "/").status, 200);
    assert_eq!(proxy.stat("cluster.app.upstream_cx_total"), 2);
    // Each connect was timed (Envoy's upstream_cx_connect_ms histogram).
    let text = request(
        proxy.admin,
        "GET /stats?filter=upstream_cx_connect_ms HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap()
    .body_str();
    assert!(
        text.contains("cluster.app.upstream_cx_connect_ms: P0("),
        "{text}"
    );
}

// === connection histograms ===

#[test]
fn a_closed_upstream_connection_records_its_length_and_requests_carried() {
    // As Envoy 1.40 does with the same config and requests: three requests on one upstream
    // connection, the second answered after 300 ms, the third with `connection: close`. Nothing
    // is recorded while the connection lives; its close records one upstream_cx_length_ms
    // sample (open to close: in the 250..500 ms bucket) and one upstream_rq_per_cx sample of 3.
    let up = HttpUpstream::start(|_, n| match n {
        1 => Reply::ok("slow").after(Duration::from_millis(300)),
        2 => Reply::raw("HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nlast"),
        _ => Reply::ok("fast"),
    });
    let proxy = Nuncio::start(&simple(up.addr));
    let app = "envoy_cluster_name=\"app\"";
    let mut c = Client::connect(proxy.listener);
    for path in ["/a", "/b"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert_eq!(
        proxy
            .histogram("envoy_cluster_upstream_rq_per_cx", app)
            .count,
        0,
        "recorded at the close, not per request"
    );
    c.send(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    proxy.wait_stat("cluster.app.upstream_cx_destroy_local", 1);
    let per_cx = proxy.histogram("envoy_cluster_upstream_rq_per_cx", app);
    assert_eq!((per_cx.count, per_cx.sum), (1, 3.0), "{per_cx:?}");
    assert_eq!((per_cx.le("1"), per_cx.le("5")), (0, 1));
    let length = proxy.histogram("envoy_cluster_upstream_cx_length_ms", app);
    assert_eq!(length.count, 1, "{length:?}");
    assert_eq!((length.le("250"), length.le("500")), (0, 1), "{length:?}");
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_failed_connect_records_its_length_but_no_requests_per_connection() {
    // Envoy 1.40 against a refused port: upstream_cx_length_ms gets a sample (the connection
    // existed, 0 ms), upstream_rq_per_cx and upstream_cx_connect_ms none (it never connected).
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let proxy = Nuncio::start(&simple(dead));
    assert_eq!(get(proxy.listener, "/").status, 503);
    proxy.wait_stat("cluster.app.upstream_cx_connect_fail", 1);
    let app = "envoy_cluster_name=\"app\"";
    let count = |metric: &str| proxy.histogram(metric, app).count;
    assert_eq!(count("envoy_cluster_upstream_cx_length_ms"), 1);
    assert_eq!(count("envoy_cluster_upstream_rq_per_cx"), 0);
    assert_eq!(count("envoy_cluster_upstream_cx_connect_ms"), 0);
}
