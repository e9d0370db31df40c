//! The HTTP connection manager, router and connection pools end to end: the real `nuncio`
//! binary between real clients (raw sockets) and real upstreams on 127.0.0.1.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use support::http::*;

// === proxying ===

#[test]
fn get_is_proxied_with_keep_alive_and_one_upstream_connection() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    for _ in 0..3 {
        client.send(b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Custom: v\r\n\r\n");
        let r = client.read_response().expect("response");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body_str(), "hello");
        assert_eq!(r.header("server"), Some("nuncio"));
        assert!(r.header("x-envoy-upstream-service-time").is_some(), "{r:?}");
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        up.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "keep-alive upstream"
    );
    let first = &reqs[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("GET", "/a?b=1")
    );
    assert_eq!(first.header("host"), Some("example.com"));
    assert_eq!(first.header("x-custom"), Some("v"));
    assert_eq!(first.header("x-forwarded-proto"), Some("http"));
    let id = first.header("x-request-id").expect("x-request-id");
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "UUIDv4: {id}");
    assert!(first.header("x-envoy-expected-rq-timeout-ms").is_some());
    proxy.wait_stat("http.ingress.downstream_rq_2xx", 3);
    assert_eq!(proxy.stat("http.ingress.downstream_rq_total"), 3);
    assert_eq!(proxy.stat("cluster.app.upstream_rq_200"), 3);
    assert_eq!(proxy.stat("cluster.app.upstream_cx_total"), 1);
}

#[test]
fn request_id_is_kept_and_hop_by_hop_headers_removed() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&simple(up.addr));
    let r = request(
        proxy.listener,
        "GET / HTTP/1.1\r\nHost: h\r\nx-request-id: abc\r\nConnection: keep-alive, x-drop\r\nx-drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let got = &up.requests()[0];
    assert_eq!(got.header("x-request-id"), Some("abc"));
    assert_eq!(got.header("x-drop"), None);
    assert_eq!(got.header("keep-alive"), None);
    assert_eq!(got.header("te"), Some("trailers"));
}

#[test]
fn post_bodies_are_forwarded_with_content_length_and_chunked() {
    let up = HttpUpstream::start(|req, _| Reply::ok(&String::from_utf8_lossy(&req.body)));
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    client.send(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world");
    let r = client.read_response().unwrap();
    assert_eq!(r.body_str(), "hello world");
    client.send(
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let r = client.read_response().unwrap();
    assert_eq!(r.status, 200);
    let reqs = up.requests();
    assert_eq!(reqs[0].header("content-length"), Some("11"));
    assert_eq!(reqs[1].header("transfer-encoding"), Some("chunked"));
    assert!(String::from_utf8_lossy(&reqs[1].body).contains("hello"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = HttpUpstream::start(|req, _| Reply::ok(&req.path));
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\nGET /three HTTP/1.1\r\nHost: h\r\n\r\n");
    for path in ["/one", "/two", "/three"] {
        let r = client.read_response().unwrap();
        assert_eq!(r.body_str(), path);
    }
}

#[test]
fn chunked_response_with_trailers_is_relayed() {
    let up = HttpUpstream::start(|_, _| {
        Reply::raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n")
    });
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body_str(), "hello world");
    // The connection is still usable afterwards.
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status, 200);
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy_and_stripped() {
    let up = HttpUpstream::start(|req, _| Reply::ok(&String::from_utf8_lossy(&req.body)));
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.status, 100);
    client.send(b"body");
    let r = client.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "body"));
    assert_eq!(up.requests()[0].header("expect"), None);
}

// === the upstream side ===

#[test]
fn upstream_closing_idle_connections_never_causes_a_503() {
    // The upstream answers keep-alive and then hangs up (as an upstream's idle timeout would):
    // each pooled connection is dead by the time the next request wants it.
    let up = HttpUpstream::start(|_, _| Reply::ok("x").closing());
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    for i in 0..100 {
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = client.read_response().unwrap();
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        // Sometimes the FIN has arrived before the next request (caught by the idle check),
        // sometimes it is in flight (the request is replayed on a new connection).
        if i % 3 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(proxy.stat("http.ingress.downstream_rq_5xx"), 0);
}

#[test]
fn upstream_closing_idle_connections_under_concurrent_load_never_causes_a_503() {
    // As above with eight clients at once, and the upstream hanging up a little after each
    // answer: the FIN often arrives after the loop iteration that lends the connection has
    // polled (no idle check can see it), and the connections pooled next to the dead one are
    // as dead. The replay must go to a new connection, not the next pooled one.
    let up = HttpUpstream::start(|_, _| Reply::ok("x").closing_after(Duration::from_micros(300)));
    let proxy = Nuncio::start(&simple(up.addr));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let listener = proxy.listener;
            thread::spawn(move || {
                let mut client = Client::connect(listener);
                for i in 0..40 {
                    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
                    let r = client.read_response().unwrap();
                    assert_eq!(r.status, 200, "client {c} request {i}: {r:?}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(proxy.stat("http.ingress.downstream_rq_5xx"), 0);
}

#[test]
fn posts_on_reused_connections_the_upstream_closed_are_replayed_with_their_bodies() {
    // As above with POSTs (Content-Length and chunked) and no retry policy: the body has
    // already been written to the dead connection when it turns out dead, so the router must
    // have kept it to replay it on a new connection.
    let up = HttpUpstream::start(|req, _| {
        Reply::ok(&String::from_utf8_lossy(&req.body)).closing_after(Duration::from_micros(300))
    });
    let proxy = Nuncio::start(&simple(up.addr));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let listener = proxy.listener;
            thread::spawn(move || {
                let mut client = Client::connect(listener);
                for i in 0..40 {
                    let body = format!("client {c} request {i}");
                    if i % 2 == 0 {
                        client.send(
                            format!(
                                "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        );
                    } else {
                        client.send(
                            format!(
                                "POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        );
                    }
                    let r = client.read_response().unwrap();
                    assert_eq!(r.status, 200, "client {c} request {i}: {r:?}");
                    assert!(r.body_str().contains(&body), "client {c} request {i}: {r:?}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(proxy.stat("http.ingress.downstream_rq_5xx"), 0);
}

#[test]
fn upstream_connection_refused_is_503_with_envoys_body() {
    let addr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let proxy = Nuncio::start(&simple(addr));
    let r = get(proxy.listener, "/");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body_str(),
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    proxy.wait_stat("cluster.app.upstream_cx_connect_fail", 1);
    // Charged as the upstream's 503, as Envoy 1.40 does (`chargeUpstreamAbort`).
    let stats = proxy.stats();
    assert_eq!(stats["cluster.app.upstream_rq_503"], 1);
    assert_eq!(stats["cluster.app.upstream_rq_completed"], 1);
}

#[test]
fn upstream_rq_time_runs_to_the_end_of_the_response() {
    // Envoy 1.40's upstream_rq_time: from the end of the request to the end of the upstream
    // response, so a head at once and the body 400 ms later records ~400 ms, not ~0.
    let up = trickling(&[400]);
    let proxy = Nuncio::start(&simple(up));
    assert_eq!(get(proxy.listener, "/").body_str(), "x");
    let time = proxy.histogram(
        "envoy_cluster_upstream_rq_time",
        "envoy_cluster_name=\"app\"",
    );
    assert_eq!(time.count, 1, "{time:?}");
    assert_eq!((time.le("250"), time.le("1000")), (0, 1), "{time:?}");
}

#[test]
fn upstream_timeout_is_504() {
    let up = HttpUpstream::start(|_, _| Reply::ok("late").after(Duration::from_secs(3)));
    let routes = "              - match: {prefix: \"/slow\"}\n                route: {cluster: app, timeout: 0.3s}\n";
    let proxy = Nuncio::start(&config(up.addr, "", routes, "", ""));
    let r = get(proxy.listener, "/slow");
    assert_eq!(r.status, 504);
    assert_eq!(r.body_str(), "upstream request timeout");
    proxy.wait_stat("cluster.app.upstream_rq_timeout", 1);
    // Closed by us with the request on it (Envoy's CodecClient counters, checked on 1.40).
    assert_destroyed_with_active_rq(&proxy, 1, 0);
}

#[test]
fn start_time_in_response_headers_is_the_stream_start() {
    // Envoy 1.40, same route and a 600 ms upstream: `%START_TIME%` in response_headers_to_add
    // formats the stream's start (when the request arrived), the same instant as in
    // request_headers_to_add, not the time the response came back.
    let up = HttpUpstream::start(|_, _| Reply::ok("late").after(Duration::from_millis(600)));
    let value = "value: \"%START_TIME(%s.%3f)%\"";
    let routes = format!(
        "              - match: {{prefix: \"/slow\"}}\n                route: {{cluster: app}}\n                request_headers_to_add: [{{header: {{key: x-req-start, {value}}}}}]\n                response_headers_to_add: [{{header: {{key: x-start, {value}}}}}]\n"
    );
    let proxy = Nuncio::start(&config(up.addr, "", &routes, "", ""));
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let sent = wall();
    let r = get(proxy.listener, "/slow");
    let answered = wall();
    assert_eq!(r.status, 200);
    let secs = |v: Option<&str>| -> f64 { v.expect("header").parse().expect("%s.%3f") };
    let start = secs(r.header("x-start"));
    let upstream_saw = secs(up.requests()[0].header("x-req-start"));
    assert!(
        (start - upstream_saw).abs() <= 0.002,
        "one start for both sides: {start} vs {upstream_saw}"
    );
    assert!(
        start >= sent - 0.002 && start <= sent + 0.3,
        "the request's arrival ({sent}), not the response's: {start}"
    );
    assert!(answered - start >= 0.55, "{start} .. {answered}");
}

/// Envoy's `upstream_cx_destroy_{local_,remote_,}with_active_rq` of cluster `app`: the
/// connections closed with a request on them, by us (`local`) and by the upstream (`remote`).
fn assert_destroyed_with_active_rq(proxy: &Nuncio, local: u64, remote: u64) {
    let stats = proxy.stats();
    let stat = |name: &str| stats[&format!("cluster.app.upstream_cx_destroy_{name}with_active_rq")];
    assert_eq!(
        (stat("local_"), stat("remote_"), stat("")),
        (local, remote, local + remote),
        "(local, remote, total)"
    );
}

#[test]
fn upstream_closing_under_a_request_is_503_and_counted_with_active_rq() {
    let up = HttpUpstream::start(|_, _| Reply::raw("").closing());
    let proxy = Nuncio::start(&simple(up.addr));
    let r = get(proxy.listener, "/");
    assert_eq!(r.status, 503);
    assert!(r.body_str().ends_with("connection termination"), "{r:?}");
    assert_destroyed_with_active_rq(&proxy, 0, 1);
}

#[test]
fn retry_on_5xx_returns_the_retried_answer() {
    let up = HttpUpstream::start(|_, n| {
        if n == 0 {
            Reply::status(503)
        } else {
            Reply::ok("second")
        }
    });
    let routes = "              - match: {prefix: \"/r\"}\n                route: {cluster: app, retry_policy: {retry_on: 5xx, num_retries: 2}}\n";
    let proxy = Nuncio::start(&config(up.addr, "", routes, "", ""));
    let r = get(proxy.listener, "/r");
    assert_eq!((r.status, r.body_str().as_str()), (200, "second"));
    assert_eq!(up.requests().len(), 2);
    proxy.wait_stat("cluster.app.upstream_rq_retry", 1);
}

#[test]
fn x_envoy_max_retries_header_enables_retries() {
    let up = HttpUpstream::start(|_, n| {
        if n < 2 {
            Reply::status(502)
        } else {
            Reply::ok("third")
        }
    });
    // The router honours these headers only from an internal client (Envoy 1.40: no address
    // is internal unless `internal_address_config` lists it).
    let hcm = "          use_remote_address: true
          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}]}
";
    let proxy = Nuncio::start(&config(up.addr, hcm, "", "", ""));
    let r = request(
        proxy.listener,
        "GET / HTTP/1.1\r\nHost: h\r\nx-envoy-retry-on: gateway-error\r\nx-envoy-max-retries: 2\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "third"));
}

#[test]
fn malformed_upstream_response_is_a_local_reply() {
    let up = HttpUpstream::start(|_, _| Reply::raw("HTTP/1.1 abc\r\n\r\n").closing());
    let proxy = Nuncio::start(&simple(up.addr));
    let r = get(proxy.listener, "/");
    assert!(r.status == 502 || r.status == 503, "{r:?}");
    assert!(
        r.body_str()
            .starts_with("upstream connect error or disconnect/reset before headers"),
        "{r:?}"
    );
}

// === local replies from routes and the connection manager ===

#[test]
fn direct_response_and_redirect_and_no_route() {
    let up = HttpUpstream::hello();
    let routes = "              - match: {path: \"/direct\"}\n                direct_response: {status: 202, body: {inline_string: \"made here\"}}\n              - match: {path: \"/moved\"}\n                redirect: {path_redirect: \"/new\"}\n";
    let cfg = config(up.addr, "", routes, "", "");
    let proxy = Nuncio::start(&cfg);
    let r = get(proxy.listener, "/direct");
    assert_eq!((r.status, r.body_str().as_str()), (202, "made here"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = get(proxy.listener, "/moved");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://example.com/new"));
    assert!(up.requests().is_empty());

    let cfg = cfg.replace("domains: [\"*\"]", "domains: [\"only.example\"]");
    let proxy = Nuncio::start(&cfg);
    let r = get(proxy.listener, "/");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    proxy.wait_stat("http.ingress.no_route", 1);
}

#[test]
fn http_10_gets_426_unless_accepted() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&simple(up.addr));
    let r = request(proxy.listener, "GET / HTTP/1.0\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(r.status, 426);
    let cfg = config(
        up.addr,
        "          http_protocol_options: {accept_http_10: true}\n",
        "",
        "",
        "",
    );
    let proxy = Nuncio::start(&cfg);
    let r = request(proxy.listener, "GET / HTTP/1.0\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
}

#[test]
fn malformed_request_is_400_and_the_connection_closes() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.closed());
    assert!(up.requests().is_empty(), "nothing smuggled upstream");
}

#[test]
fn connection_close_from_the_client_is_honoured() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&simple(up.addr));
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.closed());
}

// === timeouts ===

#[test]
fn idle_connection_is_closed_after_idle_timeout() {
    let up = HttpUpstream::hello();
    let cfg = config(
        up.addr,
        "          common_http_protocol_options: {idle_timeout: 0.2s}\n          drain_timeout: 0.1s\n",
        "",
        "",
        "",
    );
    let proxy = Nuncio::start(&cfg);
    let mut client = Client::connect(proxy.listener);
    assert!(client.closed(), "closed by the idle timeout");
    proxy.wait_stat("http.ingress.downstream_cx_idle_timeout", 1);
}

#[test]
fn request_header_timeout_is_408() {
    let up = HttpUpstream::hello();
    let cfg = config(
        up.addr,
        "          request_headers_timeout: 0.2s\n",
        "",
        "",
        "",
    );
    let proxy = Nuncio::start(&cfg);
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET / HTTP/1.1\r\nHost");
    let r = client.read_response().unwrap();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (408, "request header timeout")
    );
}

#[test]
fn stream_idle_timeout_on_a_stalled_body_is_408() {
    let up = HttpUpstream::hello();
    let cfg = config(up.addr, "          stream_idle_timeout: 0.2s\n", "", "", "");
    let proxy = Nuncio::start(&cfg);
    let mut client = Client::connect(proxy.listener);
    client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    let r = client.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (408, "stream timeout"));
}

// === HTTP filters ===

#[test]
fn health_check_filter_answers_locally() {
    let up = HttpUpstream::hello();
    let filters = r#"          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: "/healthz"}}]
"#;
    let proxy = Nuncio::start(&config(up.addr, "", "", filters, ""));
    let r = get(proxy.listener, "/healthz");
    assert_eq!(r.status, 200);
    assert!(up.requests().is_empty());
    assert_eq!(get(proxy.listener, "/other").body_str(), "hello");
}

#[test]
fn local_ratelimit_answers_429_when_the_bucket_is_empty() {
    let up = HttpUpstream::hello();
    let filters = r#"          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: rl
              token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s}
              filter_enabled: {runtime_key: e, default_value: {numerator: 100, denominator: HUNDRED}}
              filter_enforced: {runtime_key: f, default_value: {numerator: 100, denominator: HUNDRED}}
"#;
    let proxy = Nuncio::start(&config(up.addr, "", "", filters, ""));
    assert_eq!(get(proxy.listener, "/").status, 200);
    assert_eq!(get(proxy.listener, "/").status, 200);
    let r = get(proxy.listener, "/");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (429, "local_rate_limited")
    );
    assert_eq!(r.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(up.requests().len(), 2);
}

// === upgrades ===

#[test]
fn websocket_upgrade_becomes_a_tunnel_when_configured() {
    // A raw upstream: answers 101 then echoes bytes upper-cased.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap();
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let up: Vec<u8> = buf[..n].to_ascii_uppercase();
            if s.write_all(&up).is_err() {
                return;
            }
        }
    });
    let cfg = config(
        addr,
        "          upgrade_configs: [{upgrade_type: websocket}]\n",
        "",
        "",
        "",
    );
    let proxy = Nuncio::start(&cfg);
    let mut client = Client::connect(proxy.listener);
    client
        .send(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let r = client.read_response_for(true).unwrap();
    assert_eq!(r.status, 101, "{r:?}");
    client.send(b"ping");
    let mut got = [0u8; 4];
    client.stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"PING");
}

#[test]
fn upgrade_without_upgrade_configs_is_403() {
    let up = HttpUpstream::hello();
    let proxy = Nuncio::start(&simple(up.addr));
    let r = request(
        proxy.listener,
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(up.requests().is_empty());
}

// === access log ===

#[test]
fn access_log_writes_one_line_per_request() {
    let up = HttpUpstream::hello();
    let (path, hcm) = file_access_log(
        "access",
        "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% %UPSTREAM_CLUSTER% %RESPONSE_CODE_DETAILS%",
    );
    let routes = "              - match: {path: \"/none\"}\n                direct_response: {status: 404}\n";
    let proxy = Nuncio::start_with(
        &config(up.addr, &hcm, routes, "", ""),
        &["--concurrency", "1", "--file-flush-interval-msec", "50"],
    );
    assert_eq!(get(proxy.listener, "/x").status, 200);
    assert_eq!(get(proxy.listener, "/none").status, 404);
    assert_eq!(
        access_log_lines(&path, 2),
        [
            "GET /x 200 - 5 app via_upstream",
            "GET /none 404 - 0 - direct_response"
        ]
    );
}

/// A file access log with `format` (one line per stream) as HCM config lines, and its path
/// (`tag` and the process id make it unique; any old file is removed).
fn file_access_log(tag: &str, format: &str) -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!("nuncio-http-{tag}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let hcm = format!(
        "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format: {{text_format_source: {{inline_string: \"{format}\\n\"}}}}\n",
        path.display()
    );
    (path, hcm)
}

/// The access log's lines once it has at least `n` (the log thread flushes every 50 ms in
/// these tests); fails after TIMEOUT.
fn access_log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(str::to_string).collect();
        }
        assert!(std::time::Instant::now() < deadline, "access log: {text:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The request id is one value everywhere: the generated UUID (or the client's id, kept on a
/// non-edge listener, however long) reaches the upstream, comes back in the response with
/// `always_set_request_id_in_response`, and is what the access log's `%REQ(X-REQUEST-ID)%`
/// prints.
#[test]
fn request_id_reaches_upstream_response_and_access_log() {
    let up = HttpUpstream::hello();
    let (path, log) = file_access_log("reqid", "%REQ(X-REQUEST-ID)%");
    let hcm = format!("          always_set_request_id_in_response: true\n{log}");
    let proxy = Nuncio::start_with(
        &config(up.addr, &hcm, "", "", ""),
        &["--concurrency", "1", "--file-flush-interval-msec", "50"],
    );
    let long = "l".repeat(100);
    let mut sent = Vec::new();
    for id in [None, Some("abc"), Some(long.as_str())] {
        let extra = id
            .map(|id| format!("x-request-id: {id}\r\n"))
            .unwrap_or_default();
        let r = request(
            proxy.listener,
            &format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n"),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let answered = r
            .header("x-request-id")
            .expect("x-request-id in the response");
        match id {
            Some(id) => assert_eq!(answered, id),
            None => assert_eq!(answered.len(), 36, "a UUID: {answered}"),
        }
        sent.push(answered.to_string());
    }
    let upstream: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("x-request-id").unwrap_or("").to_string())
        .collect();
    assert_eq!(upstream, sent);
    assert_eq!(access_log_lines(&path, 3), sent);
}

/// `cluster.<name>.upstream_rq_time` exists only once an upstream answered, as Envoy 1.40
/// creates it (same config: after a 503 connect failure `/stats` lists the cluster's other
/// histograms as `No recorded values` but not `upstream_rq_time`, and `/stats/prometheus` has
/// no `envoy_cluster_upstream_rq_time`); after an answer it is there with that one value.
#[test]
fn upstream_rq_time_appears_with_the_first_upstream_answer() {
    let refused: std::net::SocketAddr = format!("127.0.0.1:{}", support::refused_port())
        .parse()
        .unwrap();
    let up = HttpUpstream::hello();
    let config = support::http::config(refused, "", "", "", "").replace(
        "  clusters:\n",
        &format!(
            "  clusters:\n  - name: answers\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: answers\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]\n",
            up.addr.port()
        ),
    );
    let config = config.replace(
        "              routes:\n",
        "              routes:\n              - match: {prefix: \"/ok\"}\n                route: {cluster: answers}\n",
    );
    let proxy = Nuncio::start(&config);
    assert_eq!(get(proxy.listener, "/fails").status, 503);
    assert_eq!(get(proxy.listener, "/ok").status, 200);
    let (_, text) = support::http_get(proxy.admin, "/stats").unwrap();
    assert!(
        text.contains("cluster.app.upstream_cx_connect_ms: No recorded values"),
        "{text}"
    );
    assert!(!text.contains("cluster.app.upstream_rq_time:"), "{text}");
    assert!(
        text.contains("cluster.answers.upstream_rq_time: P0("),
        "{text}"
    );
    let (_, prom) = support::http_get(proxy.admin, "/stats/prometheus").unwrap();
    let rq_time: Vec<&str> = prom
        .lines()
        .filter(|l| l.starts_with("envoy_cluster_upstream_rq_time_count"))
        .collect();
    assert_eq!(
        rq_time,
        ["envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"answers\"} 1"]
    );
}
