//! The HTTP connection manager's connection-level behaviour end to end, through the real
//! `nuncio` binary with real clients and upstreams on 127.0.0.1: the drain sequence on
//! SIGTERM, per-route `idle_timeout`, `x-envoy-immediate-health-check-fail`, the listener's
//! `per_connection_buffer_limit_bytes`, and the trace-level call chain of one request.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::http::*;

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

/// One worker, a 60 s drain time, every connection told at once.
const IMMEDIATE_60S: &[&str] = &[
    "--concurrency",
    "1",
    "--drain-time-s",
    "60",
    "--drain-strategy",
    "immediate",
];

#[test]
fn drain_gives_keep_alive_connections_connection_close_and_counts_drain_close() {
    let up = HttpUpstream::hello();
    // A long drain_timeout: idle connections stay open, so each can still send one request.
    let cfg = config(up.addr, "          drain_timeout: 60s\n", "", "", "");
    let mut proxy = Nuncio::start_with(&cfg, IMMEDIATE_60S);
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
    let mut proxy = Nuncio::start_with(&cfg, IMMEDIATE_60S);
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

/// The admin's `/drain_listeners?graceful` under `--drain-strategy immediate`: every HTTP
/// connection is drain-closed (`downstream_cx_drain_close`,
/// `connection: close` on its next response, an idle one closed after `drain_timeout` as on
/// SIGTERM), the listener keeps accepting during `--drain-time-s` (a new connection's response
/// says `connection: close` too) and then stops; the server stays LIVE and does not exit.
#[test]
fn admin_graceful_drain_listeners_drain_closes_http_connections() {
    let up = HttpUpstream::hello();
    let cfg = config(up.addr, "          drain_timeout: 0.3s\n", "", "", "");
    let mut proxy = Nuncio::start_with(
        &cfg,
        &[
            "--concurrency",
            "1",
            "--drain-time-s",
            "2",
            "--drain-strategy",
            "immediate",
        ],
    );
    let mut idle = Client::connect(proxy.listener);
    let mut busy = Client::connect(proxy.listener);
    for c in [&mut idle, &mut busy] {
        c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        let r = c.read_response().expect("response before the drain");
        assert_eq!(r.header("connection"), None, "keep-alive before the drain");
    }
    let started = Instant::now();
    assert_eq!(
        proxy.admin_post("/drain_listeners?graceful").body_str(),
        "OK\n"
    );
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 2);
    // A second call while the drain runs is ignored (Envoy).
    assert_eq!(
        proxy.admin_post("/drain_listeners?graceful").body_str(),
        "OK\n"
    );

    busy.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = busy.read_response().expect("response during the drain");
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(busy.closed(), "the connection closes after the response");

    // Still accepting during the drain time; a new connection is drain-closed too.
    let mut late = Client::connect(proxy.listener);
    late.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = late
        .read_response()
        .expect("a new connection during the drain");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(late.closed());
    assert_eq!(proxy.stat("http.ingress.downstream_cx_drain_close"), 3);

    // The idle connection goes once drain_timeout is over.
    assert!(idle.closed(), "idle connection closed by the drain");
    let ready = request(proxy.admin, "GET /ready HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
    assert_eq!(ready.status, 200, "a graceful drain is not a shutdown");

    // After --drain-time-s the listener stops; the server keeps running.
    proxy.wait_stat("listener_manager.listener_stopped", 1);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(proxy.listener).is_ok() {
        assert!(Instant::now() < deadline, "the listener still accepts");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(proxy.wait_exit(Duration::from_millis(300)), None, "no exit");
    let ready = request(proxy.admin, "GET /ready HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
    assert_eq!(ready.status, 200);
}

/// `skip_exit`: the connections are drained but the listeners never stop.
#[test]
fn admin_drain_listeners_skip_exit_drains_but_keeps_listening() {
    let up = HttpUpstream::hello();
    let mut proxy = Nuncio::start_with(
        &simple(up.addr),
        &[
            "--concurrency",
            "1",
            "--drain-time-s",
            "1",
            "--drain-strategy",
            "immediate",
        ],
    );
    let mut c = Client::connect(proxy.listener);
    c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(c.read_response().unwrap().header("connection"), None);
    assert_eq!(
        proxy
            .admin_post("/drain_listeners?graceful&skip_exit")
            .body_str(),
        "OK\n"
    );
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 1);
    c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(
        c.read_response().unwrap().header("connection"),
        Some("close")
    );
    // Past the drain time, still listening.
    assert_eq!(
        proxy.wait_exit(Duration::from_millis(1500)),
        None,
        "no exit"
    );
    let r = get(proxy.listener, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(proxy.stat("listener_manager.listener_stopped"), 0);
}

/// `--drain-strategy gradual` (the default, as Envoy's): the connections open when the drain
/// starts hear it one after the other over the first quarter of `--drain-time-s` (Envoy's
/// `startDrainSequence` schedule), not all at once.
#[test]
fn gradual_drain_notifies_open_connections_over_the_first_quarter_of_the_drain_time() {
    let up = HttpUpstream::hello();
    // drain_timeout 60 s: drain-closed idle connections stay, so each can be asked once more.
    let cfg = config(up.addr, "          drain_timeout: 60s\n", "", "", "");
    let proxy = Nuncio::start_with(&cfg, &["--concurrency", "1", "--drain-time-s", "16"]);
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(proxy.listener)).collect();
    for c in &mut clients {
        c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        assert_eq!(c.read_response().unwrap().header("connection"), None);
    }
    let started = Instant::now();
    proxy.admin_post("/drain_listeners?graceful");
    // Steps of 16 s / 4 / 4 = 1 s: the first connection at once, the last after 3 s.
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 1);
    let early = proxy.stat("http.ingress.downstream_cx_drain_close");
    assert!(
        early < 4 || started.elapsed() >= Duration::from_secs(3),
        "all {early} at once after {:?}",
        started.elapsed()
    );
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 4);
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    // Each heard it: its next response closes the connection.
    for c in &mut clients {
        c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        assert_eq!(
            c.read_response().unwrap().header("connection"),
            Some("close")
        );
        assert!(c.closed());
    }
}

/// `gradual`, a connection opened during the drain (no notice for it): Envoy's `drainClose()`
/// closes its responses with a probability of the whole seconds elapsed over the drain time,
/// so never in the first second and always once the drain time is over (both checked against
/// Envoy 1.40 with `--drain-time-s 2`).
#[test]
fn gradual_drain_closes_responses_with_a_probability_rising_over_the_drain_time() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start_with(
        &simple(up.addr),
        &["--concurrency", "1", "--drain-time-s", "2"],
    );
    let ask = |c: &mut Client| {
        c.send(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        c.read_response()
            .unwrap()
            .header("connection")
            .map(str::to_string)
    };
    // The admin answers before the worker runs the drain it posted; a connection accepted in
    // between would be one open at the drain's start, told to close at once. So a witness
    // connection, open before the drain, shows when the worker has started it: it is the one
    // connection the drain's first step notifies.
    let mut witness = Client::connect(proxy.listener);
    assert_eq!(ask(&mut witness), None);
    let started = Instant::now();
    proxy.admin_post("/drain_listeners?graceful");
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 1);
    let mut c = Client::connect(proxy.listener);
    while started.elapsed() < Duration::from_millis(700) {
        assert_eq!(ask(&mut c), None, "kept alive in the first second");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < Duration::from_millis(950),
        "the machine is too slow"
    );
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(started.elapsed()));
    assert_eq!(
        ask(&mut c).as_deref(),
        Some("close"),
        "always past the drain time"
    );
    assert!(c.closed());
    // The witness's notice and this connection's close.
    assert_eq!(proxy.stat("http.ingress.downstream_cx_drain_close"), 2);
}

// === the listener's per_connection_buffer_limit_bytes (Envoy's connection().bufferLimit()) ===

/// `config(...)` with `per_connection_buffer_limit_bytes: limit` on the HTTP listener.
fn with_listener_buffer_limit(config: &str, limit: u32) -> String {
    let anchor = "    filter_chains:\n";
    assert!(config.contains(anchor));
    config.replacen(
        anchor,
        &format!("    per_connection_buffer_limit_bytes: {limit}\n{anchor}"),
        1,
    )
}

/// POSTs `len` body bytes to `/r` (a route retrying 5xx once) on an upstream that fails
/// each path's first request; returns the status and how many requests the upstream saw.
fn post_with_retry(limit: Option<u32>, len: usize) -> (u16, usize) {
    let up = HttpUpstream::start(|_, n| {
        if n == 0 {
            Reply::status(503)
        } else {
            Reply::ok("second")
        }
    });
    let routes = "              - match: {prefix: \"/r\"}\n                route: {cluster: app, retry_policy: {retry_on: 5xx, num_retries: 1}}\n";
    let mut cfg = config(up.addr, "", routes, "", "");
    if let Some(limit) = limit {
        cfg = with_listener_buffer_limit(&cfg, limit);
    }
    let proxy = Nuncio::start(&cfg);
    let body = "x".repeat(len);
    let r = request(
        proxy.listener,
        &format!("POST /r HTTP/1.1\r\nhost: h\r\ncontent-length: {len}\r\n\r\n{body}"),
    )
    .expect("response");
    let requests = up.requests();
    for received in &requests {
        assert_eq!(received.body.len(), len, "the upstream got the whole body");
    }
    (r.status, requests.len())
}

#[test]
fn the_listener_buffer_limit_bounds_the_retry_buffer() {
    // Under the listener's 2 KiB limit the body is kept for the retry.
    assert_eq!(post_with_retry(Some(2048), 1000), (200, 2));
    // Past it the body is streamed without a copy: no retry, the 503 goes to the client.
    assert_eq!(post_with_retry(Some(2048), 8000), (503, 1));
    // Envoy's default (1 MiB) keeps the same body.
    assert_eq!(post_with_retry(None, 8000), (200, 2));
}

// === x-envoy-immediate-health-check-fail (Envoy's HealthCheckFilter + drain manager) ===

#[test]
fn failing_health_checks_mark_every_response_and_close_connections() {
    let up = HttpUpstream::hello();
    let filters = r#"          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: "/healthz"}}]
"#;
    let cfg = format!(
        "node: {{id: n1, cluster: front}}\n{}",
        config(up.addr, "", "", filters, "")
    );
    let proxy = Nuncio::start(&cfg);
    // Healthy: the answer names the local cluster; proxied responses are untouched.
    let r = get(proxy.listener, "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-envoy-upstream-healthchecked-cluster"),
        Some("front")
    );
    assert_eq!(r.header("x-envoy-immediate-health-check-fail"), None);
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET /other HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.header("x-envoy-immediate-health-check-fail"), None);
    assert_eq!(r.header("connection"), None);

    assert_eq!(proxy.admin_post("/healthcheck/fail").status, 200);
    // The keep-alive connection's next response: marked, and the connection drain-closes.
    client.send(b"GET /other HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    assert_eq!(
        r.header("x-envoy-immediate-health-check-fail"),
        Some("true"),
        "{r:?}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(client.closed());
    proxy.wait_stat("http.ingress.downstream_cx_drain_close", 1);
    // The health check itself: 503, immediate fail, the cluster.
    let r = get(proxy.listener, "/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("x-envoy-immediate-health-check-fail"),
        Some("true")
    );
    assert_eq!(
        r.header("x-envoy-upstream-healthchecked-cluster"),
        Some("front")
    );
    assert_eq!(r.header("connection"), Some("close"));

    assert_eq!(proxy.admin_post("/healthcheck/ok").status, 200);
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET /other HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.header("x-envoy-immediate-health-check-fail"), None);
    assert_eq!(r.header("connection"), None, "keep-alive again");
}

// === per-route idle_timeout (Envoy's ActiveStream::refreshIdleTimeout) ===

#[test]
fn route_idle_timeout_overrides_the_stream_idle_timeout() {
    // The upstream answers /idle and /off only after 1.5 s; /quick at once.
    let up = HttpUpstream::start(|r, _| {
        if r.path == "/quick" {
            Reply::ok("quick")
        } else {
            Reply::ok("late").after(Duration::from_millis(1500))
        }
    });
    let routes = "              - match: {prefix: \"/idle\"}\n                route: {cluster: app, idle_timeout: 0.3s}\n              - match: {prefix: \"/off\"}\n                route: {cluster: app, idle_timeout: 0s}\n";
    let cfg = config(
        up.addr,
        "          stream_idle_timeout: 1s\n",
        routes,
        "",
        "",
    );
    let proxy = Nuncio::start(&cfg);

    // The route's 0.3 s fires before the HCM's 1 s: 504, and the connection stays usable.
    let mut client = Client::connect(proxy.listener);
    let started = Instant::now();
    client.send(b"GET /idle HTTP/1.1\r\nhost: h\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (504, "stream timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.header("connection"), None, "{r:?}");
    client.send(b"GET /quick HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(client.read_response().unwrap().body_str(), "quick");

    // An incomplete request on that route: 408 and the connection closes.
    let mut client = Client::connect(proxy.listener);
    client.send(b"POST /idle HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\nabc");
    let r = client.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (408, "stream timeout"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(client.closed());

    // idle_timeout 0 disables the HCM's 1 s: the 1.5 s answer arrives.
    let r = get(proxy.listener, "/off");
    assert_eq!((r.status, r.body_str().as_str()), (200, "late"));
    proxy.wait_stat("http.ingress.downstream_rq_idle_timeout", 2);
}

// === the trace log of one request reads as Envoy's call chain ===

#[test]
fn trace_log_of_one_request_reads_as_envoys_call_chain() {
    let up = HttpUpstream::hello();
    let routes = "              - match: {prefix: \"/traced\"}\n                name: traced_route\n                route: {cluster: app}\n";
    let cfg = config(up.addr, "", routes, "", "");
    let proxy = Nuncio::start_with(&cfg, &["--concurrency", "1", "-l", "trace"]);
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET /traced HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(client.read_response().unwrap().body_str(), "hello");
    let done = "ConnectionManagerImpl::doEndStream: keep-alive";
    let deadline = Instant::now() + TIMEOUT;
    while !proxy.log_lines().iter().any(|l| l.contains(done)) {
        assert!(Instant::now() < deadline, "no '{done}' line");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The worker's lines (the admin's own connections run on the main thread).
    let lines: Vec<String> = proxy
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("[worker_0]"))
        .collect();
    // The downstream connection's id, from its newConnection line.
    let accepted = lines
        .iter()
        .find(|l| l.contains("ActiveTcpListener::newConnection"))
        .expect("newConnection line");
    let c = accepted
        .split("] [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("[C..] id")
        .to_string();
    let s = format!("[{c}][S1]");
    let c = format!("[{c}]");
    // (marker, what the line must also contain), in call order.
    let chain: Vec<(&str, String)> = vec![
        ("ActiveTcpListener::onAccept", String::new()),
        ("ActiveTcpListener::newConnection", c.clone()),
        ("ConnectionImpl::onReadReady", c.clone()),
        ("ConnectionManagerImpl::onData", c.clone()),
        ("Http1::ServerConnectionImpl::dispatch", c.clone()),
        ("Http1::ServerConnectionImpl::onHeadersComplete", s.clone()),
        ("Http1::ServerConnectionImpl::onMessageComplete", s.clone()),
        ("ActiveStream::decodeHeaders", s.clone()),
        ("route 'traced_route' matched: cluster 'app'", s.clone()),
        ("Router::Filter::decodeHeaders", s.clone()),
        ("UpstreamRequest::acceptHeadersFromRouter", s.clone()),
        ("ConnPoolImplBase::newStream: new connection", s.clone()),
        ("UpstreamRequest::onPoolReady", s.clone()),
        ("ConnectionImpl::write", String::new()),
        ("UpstreamRequest::decodeHeaders", s.clone()),
        ("ActiveStream::encodeHeaders", s.clone()),
        ("ConnectionImpl::write", c.clone()),
        (done, s.clone()),
    ];
    let mut at = 0;
    for (marker, also) in &chain {
        let found = lines[at..]
            .iter()
            .position(|l| l.contains(marker) && l.contains(also.as_str()));
        let Some(i) = found else {
            panic!(
                "no '{marker}' {also} line after line {at}:\n{}",
                lines.join("\n")
            );
        };
        at += i + 1;
    }
    // The upstream write names the upstream connection the pool created.
    let new_conn = lines
        .iter()
        .find(|l| l.contains("ConnPoolImplBase::newStream: new connection"))
        .unwrap();
    let upstream = new_conn
        .split("new connection ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("[{upstream}] ConnectionImpl::write"))),
        "no write on {upstream}"
    );
}

/// Sends `request` on a new connection and reads until the proxy closes it (EOF or reset):
/// what was read and how long after sending the close came.
fn until_closed(proxy: &Nuncio, request: &[u8]) -> (String, Duration) {
    use std::io::Write;
    let mut s = support::connect(proxy.listener);
    let sent = Instant::now();
    s.write_all(request).unwrap();
    let got = support::read_until_closed(&mut s);
    (String::from_utf8_lossy(&got).into_owned(), sent.elapsed())
}

/// A reply that closes the connection (a 400 for a malformed request, or a stream reset after
/// its response started: here the upstream sends half its body and hangs up) closes with
/// Envoy's delayed close: the proxy waits up to `delayed_close_timeout` (1 s) for the client
/// to close first, then closes and counts `downstream_cx_delayed_close_timeout`; at `0s` it
/// closes once the reply is flushed. Envoy 1.40, same config and requests: EOF after 1.00 s
/// and 1.05 s with the default, counted; 0.00 s and 0.05 s with 0s, not counted.
#[test]
fn a_closing_reply_waits_delayed_close_timeout_for_the_client() {
    let up = HttpUpstream::start(|_, _| {
        Reply::raw("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello").closing()
    });
    let bad: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nbad header\r\n\r\n";
    let get: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    for (delay, waits) in [("", true), ("          delayed_close_timeout: 0s\n", false)] {
        let proxy = Nuncio::start(&config(up.addr, delay, "", "", ""));
        for (request, head) in [(bad, "HTTP/1.1 400 Bad Request"), (get, "HTTP/1.1 200 OK")] {
            let (reply, took) = until_closed(&proxy, request);
            assert!(reply.starts_with(head), "{reply}");
            if waits {
                assert!(took >= Duration::from_millis(900), "closed after {took:?}");
            } else {
                assert!(took < Duration::from_millis(900), "closed after {took:?}");
            }
        }
        assert!(until_closed(&proxy, get).0.ends_with("\r\n\r\nhello"));
        let timeouts = "http.ingress.downstream_cx_delayed_close_timeout";
        if waits {
            proxy.wait_stat(timeouts, 3);
        } else {
            assert_eq!(proxy.stat(timeouts), 0);
        }
    }
}
