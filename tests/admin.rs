//! The admin endpoint end to end: the real `nuncio` binary with echo, tcp_proxy and HTTP
//! listeners on OS-chosen ports, real traffic through them first, then every admin endpoint
//! checked against the traffic sent (text, JSON parsed as JSON, Prometheus parsed by a
//! Prometheus text parser), the mutating endpoints, clean exit and log rotation.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::{request, Client, HttpUpstream, Response, TIMEOUT};
use support::Nuncio;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn temp_path(what: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("nuncio-admin-{}-{n}-{what}", std::process::id()))
}

/// A running nuncio (`support::Nuncio`, two workers) with helpers for its admin endpoint.
struct Server(Nuncio);

impl Deref for Server {
    type Target = Nuncio;
    fn deref(&self) -> &Nuncio {
        &self.0
    }
}

impl Server {
    fn start(config: &str, extra: &[&str]) -> Server {
        Server(Nuncio::start(config, extra))
    }

    fn call(&self, method: &str, target: &str) -> Response {
        request(
            self.admin,
            &format!("{method} {target} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"),
        )
        .expect("admin response")
    }

    fn get(&self, target: &str) -> Response {
        self.call("GET", target)
    }

    fn post(&self, target: &str) -> Response {
        self.call("POST", target)
    }

    fn json(&self, target: &str) -> Value {
        let r = self.get(target);
        assert_eq!(r.status, 200, "{target}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{target}"
        );
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{target} is not JSON: {e}"))
    }

    /// `/stats` as a map (counters and gauges).
    fn stats(&self, query: &str) -> HashMap<String, u64> {
        let r = self.get(&format!("/stats{query}"));
        assert_eq!(r.status, 200);
        r.body_str()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    /// Polls `/stats` until `name` is `value` (stats are written by the workers as they go).
    fn wait_stat(&self, name: &str, value: u64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.stats("").get(name).copied();
            if v == Some(value) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is {v:?}, never {value}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to exit; its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.0.wait_exit(TIMEOUT).expect("nuncio did not exit")
    }

    /// Waits for a log line containing `text`.
    fn wait_log(&self, text: &str) {
        if self.log.lock().unwrap().iter().any(|l| l.contains(text)) {
            return;
        }
        let deadline = Instant::now() + TIMEOUT;
        while let Some(line) =
            self.next_log_line(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(text) {
                return;
            }
        }
        panic!("no log line with '{text}'");
    }
}

/// A TCP echo upstream for the tcp_proxy; counts its connections.
fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, count)
}

/// Echo, tcp_proxy (to `tcp_upstream`) and HTTP (to `http_upstream`, health_check filter on
/// `/healthz`) listeners; `admin_extra` goes inside the admin block.
fn config(tcp_upstream: SocketAddr, http_upstream: SocketAddr, admin_extra: &str) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: echo
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.echo
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo}}
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp_backend
          cluster: backend
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: app}}
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{{name: ":path", string_match: {{exact: "/healthz"}}}}]
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {tcp}}}}}}}
  - name: app
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {http}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
{admin_extra}"#,
        tcp = tcp_upstream.port(),
        http = http_upstream.port(),
    )
}

fn echo_once(addr: SocketAddr, payload: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(payload).unwrap();
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, payload);
}

/// `listener.127.0.0.1_41721`.
fn listener_prefix(addr: SocketAddr) -> String {
    format!("listener.{}_{}", addr.ip(), addr.port())
}

const ECHO_CONNECTIONS: u64 = 5;
const TCP_CONNECTIONS: u64 = 3;
const HTTP_REQUESTS: u64 = 4;

/// Sends the traffic every endpoint test checks: echo and tcp_proxy connections, HTTP requests
/// on one keep-alive connection.
fn send_traffic(server: &Server) {
    for i in 0..ECHO_CONNECTIONS {
        echo_once(server.listener("echo"), format!("ping {i}").as_bytes());
    }
    for i in 0..TCP_CONNECTIONS {
        echo_once(server.listener("tcp"), format!("proxied {i}").as_bytes());
    }
    let mut client = Client::connect(server.listener("http"));
    for _ in 0..HTTP_REQUESTS {
        client.send(b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n");
        let r = client.read_response().expect("HTTP response");
        assert_eq!(r.status, 200);
    }
}

#[test]
fn counters_match_the_traffic_in_every_format() {
    let (tcp_up, tcp_count) = echo_upstream();
    let http_up = HttpUpstream::hello();
    let server = Server::start(&config(tcp_up, http_up.addr, ""), &[]);
    send_traffic(&server);
    let echo = listener_prefix(server.listener("echo"));
    let tcp = listener_prefix(server.listener("tcp"));
    server.wait_stat(&format!("{echo}.downstream_cx_destroy"), ECHO_CONNECTIONS);
    server.wait_stat("http.ingress.downstream_rq_2xx", HTTP_REQUESTS);
    assert_eq!(tcp_count.load(Ordering::SeqCst) as u64, TCP_CONNECTIONS);

    // The traffic's connections are all closed first (the HTTP client's close may still be on
    // its way), so that the two held below are the only ones open.
    server.wait_stat("server.total_connections", 0);
    // Two connections held open: server.total_connections counts them (and not the admin's).
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.listener("echo")).unwrap())
        .collect();
    server.wait_stat("server.total_connections", 2);

    // Text.
    let stats = server.stats("");
    let total_echo = ECHO_CONNECTIONS + 2;
    assert_eq!(stats[&format!("{echo}.downstream_cx_total")], total_echo);
    assert_eq!(stats[&format!("{echo}.downstream_cx_active")], 2);
    assert_eq!(
        stats[&format!("{tcp}.downstream_cx_total")],
        TCP_CONNECTIONS
    );
    assert_eq!(stats["http.ingress.downstream_rq_total"], HTTP_REQUESTS);
    assert_eq!(stats["server.live"], 1);
    assert_eq!(stats["server.state"], 0);
    assert_eq!(stats["server.concurrency"], 2);
    assert!(stats["server.memory_allocated"] > 0);
    let text = server.get("/stats").body_str();
    let names: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), sorted.len());
    for h in [
        "server.dispatcher.loop_duration_us: P0(",
        "server.dispatcher.poll_delay_us: ",
        "listener_manager.worker_0.dispatcher.loop_duration_us: P0(",
        "listener_manager.worker_1.dispatcher.loop_duration_us: ",
    ] {
        assert!(text.contains(h), "missing {h}");
    }

    // Filters, usedonly, type.
    let filtered = server.stats("?filter=ingress.downstream_rq_2xx");
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered["http.ingress.downstream_rq_2xx"], HTTP_REQUESTS);
    let escaped = server.stats("?filter=%5Eserver%5C.live%24");
    assert_eq!(escaped.keys().collect::<Vec<_>>(), vec!["server.live"]);
    let used = server.stats("?usedonly");
    assert!(used.contains_key(&format!("{echo}.downstream_cx_total")));
    let unused = format!("{echo}.no_filter_chain_match");
    assert!(stats.contains_key(&unused) && !used.contains_key(&unused));
    let counters = server.stats("?type=Counters");
    assert!(counters.contains_key("http.ingress.downstream_rq_total"));
    assert!(!counters.contains_key("server.live"));
    let gauges = server.stats("?type=Gauges");
    assert!(
        gauges.contains_key("server.live")
            && !gauges.contains_key("http.ingress.downstream_rq_total")
    );
    assert!(server
        .get("/stats?type=Histograms")
        .body_str()
        .lines()
        .all(|l| l.contains("P0(") || l.ends_with("No recorded values")));
    let bad = server.get("/stats?type=Foo");
    assert_eq!(
        (bad.status, bad.body_str().as_str()),
        (400, "invalid &type= param\n")
    );
    assert_eq!(server.get("/stats?filter=(").status, 400);

    // JSON.
    let json = server.json("/stats?format=json");
    let value = |name: &str| {
        json["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["value"].as_u64())
    };
    assert_eq!(
        value(&format!("{echo}.downstream_cx_total")),
        Some(total_echo)
    );
    assert_eq!(
        value("http.ingress.downstream_rq_total"),
        Some(HTTP_REQUESTS)
    );
    let histograms = json["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s.get("histograms"))
        .expect("histograms element");
    assert_eq!(
        histograms["supported_quantiles"].as_array().unwrap().len(),
        10
    );

    // Prometheus, through a Prometheus text parser.
    let prom = server.get("/stats/prometheus");
    assert_eq!(prom.status, 200);
    let body = prom.body_str();
    // The exposition format allows an empty label set (`name{} 1`, which Envoy prints for
    // untagged stats); prometheus-parse's sample regex does not, so drop the braces for it.
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.replacen("{} ", " ", 1))))
            .expect("Prometheus text format");
    let sample = |metric: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let echo_addr = format!("127.0.0.1_{}", server.listener("echo").port());
    assert_eq!(
        sample(
            "envoy_listener_downstream_cx_total",
            &[("envoy_listener_address", &echo_addr)]
        ),
        Some(total_echo as f64)
    );
    assert_eq!(
        sample(
            "envoy_http_downstream_rq_xx",
            &[
                ("envoy_response_code_class", "2"),
                ("envoy_http_conn_manager_prefix", "ingress")
            ]
        ),
        Some(HTTP_REQUESTS as f64)
    );
    assert_eq!(sample("envoy_server_live", &[]), Some(1.0));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "envoy_server_dispatcher_loop_duration_us"
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "histograms as _bucket/_sum/_count"
    );
    let prom_filtered = server.get("/stats/prometheus?filter=server_live|server\\.live");
    assert!(prom_filtered.body_str().contains("envoy_server_live"));

    // /listeners.
    let text = server.get("/listeners").body_str();
    for name in ["echo", "tcp", "http"] {
        assert!(
            text.contains(&format!("{name}::{}\n", server.listener(name))),
            "{text}"
        );
    }
    let json = server.json("/listeners?format=json");
    let statuses = json["listener_statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let http = statuses.iter().find(|s| s["name"] == "http").unwrap();
    assert_eq!(
        http["local_address"]["socket_address"]["port_value"],
        server.listener("http").port()
    );

    // /clusters: per-host counters of the tcp_proxy's upstream and the router's, as text and
    // JSON. tcp_proxy counts cx_* only; the router counts each request on its host. Wait for
    // the last proxied upstream connection to be torn down (its host gauge goes first).
    server.wait_stat("cluster.backend.upstream_cx_destroy", TCP_CONNECTIONS);
    let clusters = server.get("/clusters");
    assert_eq!(clusters.status, 200);
    let host_stat = |cluster: &str, host: SocketAddr, stat: &str| -> u64 {
        let prefix = format!("{cluster}::{host}::{stat}::");
        clusters
            .body_str()
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("{prefix} in {}", clusters.body_str()))
            .parse()
            .unwrap()
    };
    assert_eq!(host_stat("backend", tcp_up, "cx_total"), TCP_CONNECTIONS);
    assert_eq!(host_stat("backend", tcp_up, "cx_active"), 0);
    assert_eq!(host_stat("backend", tcp_up, "cx_connect_fail"), 0);
    // Envoy 1.40's TCP pool counts each session as a request of its host, too.
    assert_eq!(host_stat("backend", tcp_up, "rq_total"), TCP_CONNECTIONS);
    assert_eq!(host_stat("app", http_up.addr, "rq_total"), HTTP_REQUESTS);
    assert_eq!(host_stat("app", http_up.addr, "rq_success"), HTTP_REQUESTS);
    assert_eq!(host_stat("app", http_up.addr, "rq_error"), 0);
    assert_eq!(host_stat("app", http_up.addr, "rq_active"), 0);
    // One keep-alive downstream connection: the pool reuses one upstream connection.
    assert_eq!(host_stat("app", http_up.addr, "cx_total"), 1);
    assert_eq!(host_stat("app", http_up.addr, "cx_connect_fail"), 0);
    let json = server.json("/clusters?format=json");
    assert!(json["cluster_statuses"].is_array());
    let host = format!("backend::{tcp_up}::health_flags::healthy\n");
    assert!(
        clusters.body_str().contains(&host),
        "{}",
        clusters.body_str()
    );
    {
        let backend = json["cluster_statuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "backend")
            .expect("backend in /clusters?format=json");
        let address = &backend["host_statuses"][0]["address"]["socket_address"];
        assert_eq!(address["port_value"], tcp_up.port());
        assert_eq!(
            backend["host_statuses"][0]["stats"]
                .as_array()
                .unwrap()
                .len(),
            9
        );
        assert!(clusters
            .body_str()
            .contains("backend::default_priority::max_connections::1024\n"));
        assert_eq!(
            backend["circuit_breakers"]["thresholds"][1]["priority"],
            "HIGH"
        );
    }

    // /reactor: the main thread and both workers; the workers did the work.
    let json = server.json("/reactor?format=json");
    let dispatchers = json["dispatchers"].as_array().unwrap();
    let names: Vec<&str> = dispatchers
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["main_thread", "worker_0", "worker_1"]);
    let worker_events: u64 = dispatchers[1..]
        .iter()
        .map(|d| d["events_dispatched_total"].as_u64().unwrap())
        .sum();
    assert!(
        worker_events >= ECHO_CONNECTIONS + TCP_CONNECTIONS,
        "accepts and reads ran on the workers: {worker_events}"
    );
    assert!(
        dispatchers[0]["file_events_level"].as_u64().unwrap() >= 1,
        "the admin listener"
    );
    let text = server.get("/reactor").body_str();
    assert!(
        text.contains("worker_1:\n  loop_iterations_total: "),
        "{text}"
    );
    assert!(text.contains("  poll_wait_us: ["), "{text}");

    drop(held);
}

#[test]
fn server_pages_describe_the_running_server() {
    let (tcp_up, _) = echo_upstream();
    let http_up = HttpUpstream::hello();
    let server = Server::start(
        &config(tcp_up, http_up.addr, ""),
        &["--file-flush-interval-msec", "250"],
    );
    let info = server.json("/server_info");
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["concurrency"], 2);
    assert_eq!(info["command_line_options"]["file_flush_interval"], "0.25s");
    // Envoy 1.40's name and default.
    assert_eq!(info["command_line_options"]["drain_strategy"], "Gradual");
    assert!(info["version"]
        .as_str()
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
    assert!(info["uptime_current_epoch"]
        .as_str()
        .unwrap()
        .ends_with('s'));

    let dump = server.json("/config_dump");
    let configs = dump["configs"].as_array().unwrap();
    assert_eq!(
        configs[0]["@type"],
        "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"
    );
    let listeners = &configs[0]["bootstrap"]["static_resources"]["listeners"];
    assert_eq!(listeners[2]["name"], "http");
    assert_eq!(configs[2]["static_listeners"].as_array().unwrap().len(), 3);
    assert_eq!(configs[1]["static_clusters"][1]["cluster"]["name"], "app");

    let memory = server.json("/memory");
    let allocated: u64 = memory["allocated"].as_str().unwrap().parse().unwrap();
    assert!(allocated > 0);

    let help = server.get("/help");
    assert!(help.body_str().starts_with("admin commands are:\n"));
    assert!(help.body_str().contains("  /reactor: "));
    let home = server.get("/");
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=UTF-8")
    );
    assert!(home.body_str().contains("<a href='stats'>stats</a>"));
}

#[test]
fn admin_speaks_http_1_1() {
    let (tcp_up, _) = echo_upstream();
    let http_up = HttpUpstream::hello();
    let server = Server::start(&config(tcp_up, http_up.addr, ""), &[]);

    // Keep-alive: two requests, one connection; content-length framing.
    let mut client = Client::connect(server.admin);
    client.send(b"GET /ready HTTP/1.1\r\nhost: a\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "LIVE\n"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("connection"), None);
    // Pipelined, with a request body the admin ignores.
    client.send(b"GET /help HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabcGET /ready HTTP/1.1\r\nhost: a\r\n\r\n");
    assert!(client
        .read_response()
        .unwrap()
        .body_str()
        .starts_with("admin commands are:"));
    assert_eq!(client.read_response().unwrap().status, 200);
    // HEAD: the headers of GET, no body.
    client.send(b"HEAD /ready HTTP/1.1\r\nhost: a\r\n\r\n");
    let r = client.read_response_for(true).unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("5")));
    assert!(r.body.is_empty());

    // Mutating endpoints refuse GET, as Envoy.
    for path in [
        "/quitquitquit",
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/drain_listeners",
        "/logging",
        "/reset_counters",
        "/reopen_logs",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 405, "{path}");
        assert_eq!(r.body_str(), "Method GET not allowed, POST required.\n");
    }
    // Unknown paths: 404 with the help text.
    let r = server.get("/nope");
    assert_eq!(r.status, 404);
    assert!(r
        .body_str()
        .starts_with("invalid path. admin commands are:\n"));
    // A request the codec refuses: 400, connection closed.
    let mut bad = Client::connect(server.admin);
    bad.send(b"GET /ready HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n");
    let r = bad.read_response().unwrap();
    assert_eq!(r.status, 400);
    assert!(bad.closed());
    // Still alive (the GET /quitquitquit above did nothing).
    assert_eq!(server.get("/ready").status, 200);

    // Envoy's admin HTTP stats: 6 answers 2xx (with the start-up probe), 9 answers 4xx (7
    // GETs to POST endpoints, the 404, the 400); this request is counted after it renders.
    let stats = server.stats("?filter=http%5C.admin%5C.downstream_rq_");
    assert_eq!(stats["http.admin.downstream_rq_2xx"], 6, "{stats:?}");
    assert_eq!(stats["http.admin.downstream_rq_4xx"], 9);
    assert_eq!(stats["http.admin.downstream_rq_completed"], 15);
    assert_eq!(stats["listener.admin.http.admin.downstream_rq_4xx"], 9);
    assert_eq!(stats["http.admin.downstream_rq_active"], 1, "this one");
}

#[test]
fn mutating_endpoints_change_the_server() {
    let (tcp_up, _) = echo_upstream();
    let http_up = HttpUpstream::hello();
    let server = Server::start(&config(tcp_up, http_up.addr, ""), &[]);
    let http = server.listener("http");

    // Health checks: the health_check filter follows the admin's flag.
    assert_eq!(support::http::get(http, "/healthz").status, 200);
    assert_eq!(server.post("/healthcheck/fail").body_str(), "OK\n");
    assert_eq!(support::http::get(http, "/healthz").status, 503);
    assert_eq!(server.post("/healthcheck/ok").body_str(), "OK\n");
    assert_eq!(support::http::get(http, "/healthz").status, 200);

    // Reset counters: counters drop to 0, gauges stay.
    send_traffic(&server);
    let echo = listener_prefix(server.listener("echo"));
    server.wait_stat(&format!("{echo}.downstream_cx_destroy"), ECHO_CONNECTIONS);
    assert_eq!(server.post("/reset_counters").body_str(), "OK\n");
    let stats = server.stats("");
    assert_eq!(stats[&format!("{echo}.downstream_cx_total")], 0);
    assert_eq!(stats["http.ingress.downstream_rq_total"], 0);
    assert_eq!(stats["server.live"], 1);
    echo_once(server.listener("echo"), b"after reset");
    server.wait_stat(&format!("{echo}.downstream_cx_total"), 1);

    // Logging: levels change live; the admin logs each request at debug.
    let r = server.post("/logging?level=debug");
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("  admin: debug\n"));
    server.get("/stats?filter=marker_for_the_log");
    server.wait_log("admin: GET /stats?filter=marker_for_the_log");
    let r = server.post("/logging?paths=admin:warning,http:info");
    assert!(r.body_str().contains("  admin: warning\n") && r.body_str().contains("  http: info\n"));
    let r = server.post("/logging?level=loud");
    assert_eq!(r.status, 400);
    assert!(r.body_str().starts_with("error: unknown logger level\n"));

    // Drain listeners: new connections are refused, the open one is still served.
    let mut open = TcpStream::connect(server.listener("echo")).unwrap();
    open.set_read_timeout(Some(TIMEOUT)).unwrap();
    open.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).unwrap();
    assert_eq!(server.post("/drain_listeners").body_str(), "OK\n");
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(server.listener("echo")).is_ok() {
        assert!(Instant::now() < deadline, "the echo listener still accepts");
        thread::sleep(Duration::from_millis(5));
    }
    open.write_all(b"y").unwrap();
    open.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"y");
    assert_eq!(
        server.get("/ready").status,
        200,
        "draining listeners is not quitting"
    );
    let stats = server.stats("?filter=listener_manager");
    assert_eq!(stats["listener_manager.listener_stopped"], 3);
    assert_eq!(stats["listener_manager.total_listeners_active"], 3);
    assert_eq!(stats["listener_manager.workers_started"], 1);
}

/// Lines in the files at `paths` (missing files count 0).
fn lines_in(paths: &[&PathBuf]) -> usize {
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).map_or(0, |s| s.lines().count()))
        .sum()
}

#[test]
fn quitquitquit_exits_cleanly_and_writes_every_logged_line() {
    let (tcp_up, _) = echo_upstream();
    let http_up = HttpUpstream::hello();
    let log = temp_path("admin-access.log");
    let admin_log = format!("  access_log_path: {}\n", log.display());
    // A flush interval far beyond the test: only the clean exit writes the lines.
    let mut server = Server::start(
        &config(tcp_up, http_up.addr, &admin_log),
        &["--file-flush-interval-msec", "600000"],
    );
    for _ in 0..10 {
        assert_eq!(server.get("/ready").status, 200);
    }
    let r = server.post("/quitquitquit");
    assert_eq!((r.status, r.body_str().as_str()), (200, "OK\n"));
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    // The ready probe of Server::start, ten GETs and the POST.
    let text = std::fs::read_to_string(&log).expect("access log written at exit");
    assert_eq!(text.lines().count(), 12, "{text}");
    assert!(text
        .lines()
        .last()
        .unwrap()
        .contains("\"POST /quitquitquit HTTP/1.1\" 200"));
    let _ = std::fs::remove_file(&log);
}

#[test]
fn log_rotation_loses_no_line() {
    let (tcp_up, _) = echo_upstream();
    let http_up = HttpUpstream::hello();
    let log = temp_path("rotate.log");
    let rotated = temp_path("rotate.log.1");
    let rotated2 = temp_path("rotate.log.2");
    let admin_log = format!(
        r#"  access_log:
  - name: envoy.access_loggers.file
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
      path: {}
      log_format: {{text_format_source: {{inline_string: "%REQ(:PATH)% %RESPONSE_CODE%\n"}}}}
"#,
        log.display()
    );
    let mut server = Server::start(
        &config(tcp_up, http_up.addr, &admin_log),
        &["--file-flush-interval-msec", "20"],
    );
    let burst = |server: &Server, tag: &str| {
        for i in 0..50 {
            assert_eq!(server.get(&format!("/ready?{tag}{i}")).status, 200);
        }
    };
    // Waits until the flush thread has written `n` lines to `path` (so that a rotation splits
    // the lines where the test expects; the total is what "no line lost" is about).
    let wait_lines = |path: &PathBuf, n: usize| {
        let deadline = Instant::now() + TIMEOUT;
        while lines_in(&[path]) < n {
            assert!(
                Instant::now() < deadline,
                "{} has fewer than {n} lines",
                path.display()
            );
            thread::sleep(Duration::from_millis(5));
        }
    };
    // The ready probe of Server::start, then 50.
    burst(&server, "a");
    wait_lines(&log, 51);
    // Rotation by POST /reopen_logs: its own line and the next 50 go to the new file.
    std::fs::rename(&log, &rotated).unwrap();
    assert_eq!(server.post("/reopen_logs").status, 200);
    burst(&server, "b");
    wait_lines(&log, 51);
    // Rotation by SIGUSR1.
    std::fs::rename(&log, &rotated2).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid()),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    server.wait_log("caught SIGUSR1");
    burst(&server, "c");
    server.post("/quitquitquit");
    assert!(server.wait_exit().success());
    assert_eq!(lines_in(&[&log, &rotated, &rotated2]), 3 * 51);
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
    let (first, second, last) = (read(&rotated), read(&rotated2), read(&log));
    assert_eq!(first.lines().count(), 51);
    assert!(
        first.starts_with("/ready 200\n/ready?a0 200\n") && first.ends_with("/ready?a49 200\n")
    );
    assert_eq!(second.lines().count(), 51);
    assert!(second.starts_with("/reopen_logs 200\n/ready?b0 200\n"));
    assert!(
        last.starts_with("/ready?c0 200\n")
            && last.ends_with("/ready?c49 200\n/quitquitquit 200\n")
    );
    for p in [&log, &rotated, &rotated2] {
        let _ = std::fs::remove_file(p);
    }
}
