//! Unit tests of `ConnectionManager` + `RouterFilter` + `ConnPools` driven through an
//! in-memory `ConnectionIo` with a simulated clock: bytes in, bytes out, no sockets.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::config::{parse_yaml, Node, Thresholds};
use crate::http::codec::{Http1Settings, RequestHead, ResponseHead};
use crate::http::config::HcmConfig;
use crate::http::conn_manager::{ConnectionManager, HcmShared, UpstreamEvent};
use crate::http::conn_manager_io::*;
use crate::http::conn_manager_stats::HcmStats;
use crate::http::filter_registry::HttpFilterFactoryContext;
use crate::router::upstream_stats::ClusterStats;
use crate::router::{RetryOn, RetryPolicy, RetryState};
use crate::stats::Store;
use crate::upstream::conn_pool::{ConnPools, PoolSettings};
use crate::upstream::resource_manager::{ResourceManager, ResourcePriority};

struct FakeCluster {
    host: Option<SocketAddr>,
    stats: ClusterStats,
    max_connections: u32,
    resources: ResourceManager,
}

impl FakeCluster {
    fn new(host: Option<SocketAddr>, thresholds: Thresholds) -> FakeCluster {
        FakeCluster {
            host,
            stats: ClusterStats::new(&Store::new(), "app"),
            max_connections: thresholds.max_connections,
            resources: ResourceManager::new(
                &thresholds,
                &Store::new(),
                "app",
                ResourcePriority::Default,
            ),
        }
    }
}

impl ClusterView for FakeCluster {
    fn name(&self) -> &str {
        "app"
    }
    fn choose_host(&self) -> Option<std::sync::Arc<crate::upstream::cluster::Host>> {
        self.host
            .map(|a| std::sync::Arc::new(crate::upstream::cluster::Host::new(a, "", 1)))
    }
    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            thresholds: Thresholds {
                max_connections: self.max_connections,
                ..Thresholds::default()
            },
            idle_timeout: Some(Duration::from_secs(3600)),
            max_requests_per_connection: None,
        }
    }
    fn buffer_limit(&self) -> u32 {
        1 << 20
    }
    fn resource_manager(&self) -> &ResourceManager {
        &self.resources
    }
    fn stats(&self) -> &ClusterStats {
        &self.stats
    }
}

/// `/direct` → 200 direct response; `/none` → no route; `/retry` → 5xx retried once with a
/// 1 s timeout; anything else → cluster `app` (timeout 2 s, or `missing`'s for `/missing`;
/// route `idle_timeout` 1 s for `/idle...`, 0 for `/noidle...`).
struct Routes;

impl RouteTable for Routes {
    fn route<'a>(
        &self,
        head: &mut RequestHead,
        _random: u64,
        _: &crate::router::FormatterContext,
        forward: &'a mut Option<ForwardDecision>,
    ) -> RouteDecision<'a> {
        let path = head.path().to_string();
        if path == "/direct" {
            return RouteDecision::DirectResponse {
                status: 200,
                body: "direct".into(),
            };
        }
        if path == "/none" {
            return RouteDecision::NoRoute;
        }
        let policy = RetryPolicy {
            retry_on: if path == "/retry" {
                RetryOn::FIVE_XX
            } else {
                RetryOn::default()
            },
            ..RetryPolicy::default()
        };
        let retry = RetryState::create(Arc::new(policy), head);
        // The route table sets the router's expected-timeout header (ConfiguredRoutes does it
        // through `router::final_timeout`).
        head.headers
            .insert("x-envoy-expected-rq-timeout-ms", "2000");
        RouteDecision::Forward(forward.insert(ForwardDecision {
            suppress_envoy_headers: false,
            cluster: if path == "/missing" {
                "missing".into()
            } else {
                "app".into()
            },
            route_id: 0,
            edits_response_headers: true,
            timeout: Some(Duration::from_secs(2)),
            idle_timeout: if path.starts_with("/idle") {
                Some(Duration::from_secs(1))
            } else if path.starts_with("/noidle") {
                Some(Duration::ZERO)
            } else {
                None
            },
            retry,
            per_try_timeout: None,
            per_try_idle_timeout: None,
        }))
    }
    fn finalize_response(
        &self,
        _: usize,
        response: &mut ResponseHead,
        _: &RequestHead,
        _: &crate::router::FormatterContext,
    ) {
        response.headers.insert("x-route", "yes");
    }
}

struct FakeIo {
    now: Instant,
    written: Vec<u8>,
    closed: Option<CloseHow>,
    timers: HashMap<HcmTimer, Instant>,
    next_upstream: u32,
    connects: Vec<(u32, SocketAddr)>,
    upstream_written: HashMap<u32, Vec<u8>>,
    upstream_closed: HashSet<u32>,
    /// Connections whose upstream closed while idle.
    dead: HashSet<u32>,
    pools: ConnPools<u32, ()>,
    /// Wake-ups the pools asked for.
    wakes: u32,
    cluster: Rc<FakeCluster>,
    fail_connect: bool,
    rng: u64,
    buffer_limit: u32,
}

impl FakeIo {
    fn new(host: Option<SocketAddr>) -> Self {
        FakeIo {
            now: Instant::now(),
            written: Vec::new(),
            closed: None,
            timers: HashMap::new(),
            next_upstream: 1,
            connects: Vec::new(),
            upstream_written: HashMap::new(),
            upstream_closed: HashSet::new(),
            dead: HashSet::new(),
            pools: ConnPools::default(),
            wakes: 0,
            cluster: Rc::new(FakeCluster::new(host, Thresholds::default())),
            fail_connect: false,
            rng: 7,
            buffer_limit: 1 << 20,
        }
    }

    fn take_written(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.written)).into_owned()
    }

    fn take_upstream(&mut self, id: u32) -> String {
        String::from_utf8_lossy(&self.upstream_written.remove(&id).unwrap_or_default()).into_owned()
    }

    /// Advances the clock and returns the timers that fired, earliest first.
    fn advance(&mut self, by: Duration) -> Vec<HcmTimer> {
        self.now += by;
        let mut fired: Vec<(Instant, HcmTimer)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(t, at)| (*at, *t))
            .collect();
        fired.sort_by_key(|(at, _)| *at);
        for (_, t) in &fired {
            self.timers.remove(t);
        }
        fired.into_iter().map(|(_, t)| t).collect()
    }
}

impl ConnectionIo for FakeIo {
    type Upstream = u32;
    type Waiter = ();
    fn now(&self) -> Instant {
        self.now
    }
    fn connection_id(&self) -> u64 {
        1
    }
    fn remote_address(&self) -> Option<SocketAddr> {
        "127.0.0.1:5000".parse().ok()
    }
    fn drain_close(&mut self) -> bool {
        false
    }
    fn buffer_limit(&self) -> u32 {
        self.buffer_limit
    }
    fn write(&mut self, data: &mut BytesMut, _end_stream: bool) {
        self.written.extend_from_slice(data);
        data.clear();
    }
    fn close(&mut self, how: CloseHow) {
        self.closed = Some(how);
    }
    fn read_disable(&mut self, _disable: bool) {}
    fn arm_timer(&mut self, timer: HcmTimer, after: Duration) {
        self.timers.insert(timer, self.now + after);
    }
    fn disarm_timer(&mut self, timer: HcmTimer) {
        self.timers.remove(&timer);
    }
    fn connect(&mut self, address: SocketAddr, _buffer_limit: u32) -> io::Result<u32> {
        if self.fail_connect {
            return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
        }
        let id = self.next_upstream;
        self.next_upstream += 1;
        self.connects.push((id, address));
        Ok(id)
    }
    fn write_upstream(&mut self, id: u32, data: &mut BytesMut, _end_stream: bool) {
        self.upstream_written
            .entry(id)
            .or_default()
            .extend_from_slice(data);
        data.clear();
    }
    fn close_upstream(&mut self, id: u32, _how: CloseHow) {
        self.upstream_closed.insert(id);
    }
    fn read_disable_upstream(&mut self, _id: u32, _disable: bool) {}
    fn adopt_upstream(&mut self, _id: u32) {}
    fn release_upstream(&mut self, _id: u32) {}
    fn upstream_usable(&mut self, id: u32, _peek: bool) -> bool {
        !self.dead.contains(&id) && !self.upstream_closed.contains(&id)
    }
    fn pools(&mut self) -> &mut ConnPools<u32, ()> {
        &mut self.pools
    }
    fn waiter(&self) {}
    fn wake(&mut self, _waiter: ()) {
        self.wakes += 1;
    }
    fn cluster(&mut self, name: &str) -> Option<Rc<dyn ClusterView>> {
        (name == "app").then(|| self.cluster.clone() as Rc<dyn ClusterView>)
    }
    fn random(&mut self) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.rng
    }
}

fn shared(extra: &str) -> Arc<HcmShared> {
    let yaml = format!(
        "stat_prefix: ingress
route_config: {{}}
http_filters:
- name: envoy.filters.http.router
{extra}"
    );
    let doc = parse_yaml(&yaml).unwrap();
    let config = HcmConfig::parse(&Node::root(&doc), &HttpFilterFactoryContext::default()).unwrap();
    Arc::new(HcmShared {
        routes: Arc::new(Routes),
        codec_settings: Arc::new(Http1Settings::default()),
        stats: HcmStats::new(&Store::new(), "ingress"),
        access_logs: Vec::new(),
        config,
    })
}

fn host() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn setup(extra: &str) -> (ConnectionManager<u32>, FakeIo, Arc<HcmShared>) {
    let shared = shared(extra);
    let mut hcm = ConnectionManager::new(shared.clone());
    let mut io = FakeIo::new(Some(host()));
    hcm.on_new_connection(&mut io);
    (hcm, io, shared)
}

fn send(hcm: &mut ConnectionManager<u32>, io: &mut FakeIo, bytes: &str) {
    let mut data = BytesMut::from(bytes);
    hcm.on_data(&mut data, false, io);
}

fn upstream_reply(hcm: &mut ConnectionManager<u32>, io: &mut FakeIo, id: u32, bytes: &str) {
    let mut data = BytesMut::from(bytes);
    hcm.on_upstream_data(id, &mut data, false, io);
}

const GET: &str = "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: upstream\r\n\r\nhi";

// === a proxied GET ===

#[test]
fn get_is_proxied_and_response_returned() {
    let (mut hcm, mut io, shared) = setup("");
    send(&mut hcm, &mut io, GET);
    assert_eq!(io.connects, [(1, host())]);
    assert!(
        io.take_upstream(1).is_empty(),
        "nothing written before connect"
    );
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    let up = io.take_upstream(1);
    assert!(
        up.starts_with("GET /a HTTP/1.1\r\nhost: example.com\r\n"),
        "{up}"
    );
    assert!(up.contains("x-forwarded-proto: http\r\n"), "{up}");
    assert!(up.contains("x-request-id: "), "{up}");
    assert!(
        up.contains("x-envoy-expected-rq-timeout-ms: 2000\r\n"),
        "{up}"
    );
    io.now += Duration::from_millis(3);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 200 OK\r\n"), "{down}");
    assert!(down.contains("server: nuncio\r\n"), "{down}");
    assert!(!down.contains("server: upstream"), "{down}");
    assert!(
        down.contains("x-envoy-upstream-service-time: 3\r\n"),
        "{down}"
    );
    assert!(down.contains("x-route: yes\r\n"), "{down}");
    assert!(down.ends_with("\r\n\r\nhi"), "{down}");
    assert_eq!(io.closed, None);
    assert!(!hcm.has_active_stream());
    assert_eq!(shared.stats.downstream_rq_2xx.value(), 1);
    assert_eq!(shared.stats.downstream_rq_completed.value(), 1);
    assert_eq!(io.cluster.stats.upstream_rq_total.value(), 1);
    // The connection went back to the pool.
    assert_eq!(
        io.pools.host_pool("app", host()).expect("pool").ready.len(),
        1
    );
}

#[test]
fn keep_alive_reuses_the_pooled_connection() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    io.take_written();
    io.take_upstream(1);
    send(&mut hcm, &mut io, GET);
    assert_eq!(io.connects.len(), 1, "no second connect");
    assert!(io.take_upstream(1).starts_with("GET /a HTTP/1.1"));
    upstream_reply(&mut hcm, &mut io, 1, OK);
    assert!(io.take_written().ends_with("hi"));
}

#[test]
fn pooled_connection_closed_while_idle_is_not_reused() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    io.take_written();
    io.dead.insert(1);
    send(&mut hcm, &mut io, GET);
    assert_eq!(io.connects.len(), 2, "a fresh connection");
    assert!(io.upstream_closed.contains(&1));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (mut hcm, mut io, _) = setup("");
    send(
        &mut hcm,
        &mut io,
        &format!("{GET}GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    let up = io.take_upstream(1);
    assert!(up.starts_with("GET /a ") && !up.contains("GET /b"), "{up}");
    upstream_reply(&mut hcm, &mut io, 1, OK);
    // The second request goes out on the same connection once the first is answered.
    let up = io.take_upstream(1);
    assert!(up.starts_with("GET /b "), "{up}");
    upstream_reply(&mut hcm, &mut io, 1, "HTTP/1.1 204 No Content\r\n\r\n");
    let down = io.take_written();
    let first = down.find("200 OK").unwrap();
    let second = down.find("204 No Content").unwrap();
    assert!(first < second);
}

#[test]
fn post_body_streams_upstream_and_chunked_response_is_relayed() {
    let (mut hcm, mut io, _) = setup("");
    send(
        &mut hcm,
        &mut io,
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel",
    );
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    send(&mut hcm, &mut io, "lo");
    let up = io.take_upstream(1);
    assert!(up.contains("content-length: 5\r\n"), "{up}");
    assert!(up.ends_with("\r\n\r\nhello"), "{up}");
    upstream_reply(
        &mut hcm,
        &mut io,
        1,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    let down = io.take_written();
    assert!(down.contains("transfer-encoding: chunked\r\n"), "{down}");
    assert!(down.ends_with("3\r\nabc\r\n0\r\n\r\n"), "{down}");
}

// === local replies ===

#[test]
fn no_route_is_404_empty() {
    let (mut hcm, mut io, shared) = setup("");
    send(&mut hcm, &mut io, "GET /none HTTP/1.1\r\nHost: h\r\n\r\n");
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 404 Not Found\r\n"), "{down}");
    assert!(down.contains("content-length: 0\r\n"), "{down}");
    assert_eq!(shared.stats.no_route.value(), 1);
    assert_eq!(io.closed, None);
}

#[test]
fn direct_response_has_text_plain_body() {
    let (mut hcm, mut io, shared) = setup("");
    send(&mut hcm, &mut io, "GET /direct HTTP/1.1\r\nHost: h\r\n\r\n");
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 200 OK\r\n"), "{down}");
    assert!(down.contains("content-type: text/plain\r\n"), "{down}");
    assert!(down.ends_with("\r\n\r\ndirect"), "{down}");
    assert_eq!(shared.stats.rq_direct_response.value(), 1);
}

#[test]
fn no_healthy_upstream_is_503() {
    let shared = shared("");
    let mut hcm = ConnectionManager::new(shared);
    let mut io = FakeIo::new(None);
    hcm.on_new_connection(&mut io);
    send(&mut hcm, &mut io, GET);
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{down}"
    );
    assert!(down.ends_with("no healthy upstream"), "{down}");
}

#[test]
fn connect_failure_is_503_with_envoys_body() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Closed, &mut io);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
    assert!(
        down.ends_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
        "{down}"
    );
    assert_eq!(io.cluster.stats.upstream_cx_connect_fail.value(), 1);
}

#[test]
fn route_timeout_is_504() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    for timer in io.advance(Duration::from_secs(2)) {
        hcm.on_timer(timer, &mut io);
    }
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{down}"
    );
    assert!(down.ends_with("upstream request timeout"), "{down}");
    assert!(io.upstream_closed.contains(&1));
    assert_eq!(io.cluster.stats.upstream_rq_timeout.value(), 1);
}

#[test]
fn retry_on_5xx_gets_the_second_answer() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, "GET /retry HTTP/1.1\r\nHost: h\r\n\r\n");
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(
        &mut hcm,
        &mut io,
        1,
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    );
    assert!(io.take_written().is_empty(), "the 503 is not forwarded");
    for timer in io.advance(Duration::from_millis(300)) {
        hcm.on_timer(timer, &mut io);
    }
    assert_eq!(io.connects.len(), 2);
    hcm.on_upstream_event(2, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 2, OK);
    assert!(io.take_written().starts_with("HTTP/1.1 200 OK"));
    assert_eq!(io.cluster.stats.upstream_rq_retry.value(), 1);
}

#[test]
fn circuit_breaker_overflow_is_503_overloaded() {
    let shared = shared("");
    let mut hcm = ConnectionManager::new(shared);
    let mut io = FakeIo::new(Some(host()));
    // No ready connection and no room to wait: Envoy's pending overflow.
    io.cluster = Rc::new(FakeCluster::new(
        Some(host()),
        Thresholds {
            max_pending_requests: 0,
            ..Thresholds::default()
        },
    ));
    hcm.on_new_connection(&mut io);
    send(&mut hcm, &mut io, GET);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
    assert!(down.contains("x-envoy-overloaded: true\r\n"), "{down}");
    assert!(down.ends_with("reset reason: overflow"), "{down}");
    assert_eq!(io.cluster.stats.upstream_rq_pending_overflow.value(), 1);
    assert!(io.connects.is_empty());
}

/// Two downstream connections on one worker whose cluster allows a single upstream connection
/// (`max_connections: 1`): the second stream to need one has to wait in the pending queue.
fn two_connections_sharing_one_upstream_slot(
) -> (ConnectionManager<u32>, ConnectionManager<u32>, FakeIo) {
    let shared = shared("");
    let mut first = ConnectionManager::new(shared.clone());
    let mut second = ConnectionManager::new(shared);
    let mut io = FakeIo::new(Some(host()));
    io.cluster = Rc::new(FakeCluster::new(
        Some(host()),
        Thresholds {
            max_connections: 1,
            ..Thresholds::default()
        },
    ));
    first.on_new_connection(&mut io);
    second.on_new_connection(&mut io);
    (first, second, io)
}

#[test]
fn a_stream_waits_for_a_busy_connection_at_max_connections() {
    let (mut first, mut second, mut io) = two_connections_sharing_one_upstream_slot();
    send(&mut first, &mut io, GET);
    first.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    io.take_upstream(1);
    // The second finds the only connection busy: it waits, no second connect.
    send(&mut second, &mut io, GET);
    assert_eq!(io.connects.len(), 1);
    let stats = &io.cluster.stats;
    assert_eq!(stats.upstream_rq_pending_active.value(), 1);
    assert_eq!(stats.upstream_rq_pending_total.value(), 2);
    assert_eq!(stats.upstream_cx_overflow.value(), 1);
    assert_eq!(io.take_written(), "");
    // The first response releases the connection: the waiting stream is woken and gets it.
    upstream_reply(&mut first, &mut io, 1, OK);
    assert!(io.take_written().starts_with("HTTP/1.1 200 OK"));
    assert_eq!(io.wakes, 1);
    second.on_pool_wake(&mut io);
    assert!(io.take_upstream(1).starts_with("GET /a HTTP/1.1"));
    upstream_reply(&mut second, &mut io, 1, OK);
    assert!(io.take_written().starts_with("HTTP/1.1 200 OK"));
    assert_eq!(io.connects.len(), 1);
    assert_eq!(io.cluster.stats.upstream_rq_pending_active.value(), 0);
    assert_eq!(io.cluster.resources.pending_requests.count(), 0);
    assert_eq!(io.cluster.resources.requests.count(), 0);
    assert_eq!(io.cluster.resources.connections.count(), 1);
}

#[test]
fn malformed_request_is_400_and_closes() {
    let (mut hcm, mut io, _) = setup("");
    send(
        &mut hcm,
        &mut io,
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{down}");
    assert!(down.contains("connection: close\r\n"), "{down}");
    assert!(io.closed.is_some());
    assert!(io.connects.is_empty());
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let (mut hcm, mut io, _) = setup("");
    send(
        &mut hcm,
        &mut io,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(io.take_written(), "HTTP/1.1 100 Continue\r\n\r\n");
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    assert!(!io.take_upstream(1).contains("expect:"));
}

// === timeouts ===

#[test]
fn idle_connection_times_out() {
    let (mut hcm, mut io, shared) = setup("common_http_protocol_options: {idle_timeout: 1s}\n");
    for timer in io.advance(Duration::from_secs(1)) {
        hcm.on_timer(timer, &mut io);
    }
    assert_eq!(io.closed, Some(CloseHow::FlushWrite));
    assert_eq!(shared.stats.downstream_cx_idle_timeout.value(), 1);
}

#[test]
fn stream_idle_timeout_on_incomplete_request_is_408() {
    let (mut hcm, mut io, _) = setup("stream_idle_timeout: 1s\n");
    send(
        &mut hcm,
        &mut io,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab",
    );
    for timer in io.advance(Duration::from_secs(1)) {
        hcm.on_timer(timer, &mut io);
    }
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{down}"
    );
    assert!(down.ends_with("stream timeout"), "{down}");
}

#[test]
fn request_header_timeout_is_408() {
    let (mut hcm, mut io, _) = setup("request_headers_timeout: 1s\n");
    send(&mut hcm, &mut io, "GET / HTTP/1.1\r\nHost");
    for timer in io.advance(Duration::from_secs(1)) {
        hcm.on_timer(timer, &mut io);
    }
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{down}"
    );
    assert!(down.ends_with("request header timeout"), "{down}");
}

#[test]
fn reused_connection_dying_before_the_response_is_replayed_once() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    io.take_written();
    // Passes the idle check, then the upstream's FIN arrives under the new request.
    send(&mut hcm, &mut io, GET);
    assert_eq!(io.connects.len(), 1);
    let mut eof = BytesMut::new();
    hcm.on_upstream_data(1, &mut eof, true, &mut io);
    assert_eq!(io.connects.len(), 2, "replayed on a new connection");
    assert!(io.take_written().is_empty(), "no 503 to the client");
    hcm.on_upstream_event(2, UpstreamEvent::Connected, &mut io);
    assert!(io.take_upstream(2).starts_with("GET /a "));
    upstream_reply(&mut hcm, &mut io, 2, OK);
    assert!(io.take_written().starts_with("HTTP/1.1 200 OK"));
}

/// A POST whose body was written to a reused connection that then dies before any response
/// byte (no retry policy): what reaches the new connection, and what the client gets.
fn post_on_a_dying_reused_connection(buffer_limit: u32, body: &str) -> (FakeIo, String) {
    let (mut hcm, mut io, _) = setup("");
    io.buffer_limit = buffer_limit;
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    io.take_written();
    let post = format!(
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    send(&mut hcm, &mut io, &post);
    assert!(io.take_upstream(1).ends_with(body), "body streamed at once");
    let mut eof = BytesMut::new();
    hcm.on_upstream_data(1, &mut eof, true, &mut io);
    if io.connects.len() == 2 {
        hcm.on_upstream_event(2, UpstreamEvent::Connected, &mut io);
    }
    let replayed = io.take_upstream(2);
    (io, replayed)
}

#[test]
fn reused_connection_dying_under_a_streamed_body_replays_the_kept_body() {
    let (mut io, replayed) = post_on_a_dying_reused_connection(1024, "hello body");
    assert_eq!(io.connects.len(), 2, "replayed on a new connection");
    assert!(replayed.starts_with("POST /p "), "{replayed}");
    assert!(replayed.ends_with("\r\n\r\nhello body"), "{replayed}");
    assert!(io.take_written().is_empty(), "no 503 to the client");
}

#[test]
fn a_body_past_the_buffer_limit_is_not_kept_and_the_dead_connection_is_503() {
    let (mut io, replayed) = post_on_a_dying_reused_connection(8, "more than eight bytes");
    assert_eq!(io.connects.len(), 1, "no replay");
    assert!(replayed.is_empty());
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
    assert!(
        down.ends_with("reset reason: connection termination"),
        "{down}"
    );
}

#[test]
fn upgrade_refused_by_the_upstream_closes_the_connection() {
    let (mut hcm, mut io, _) = setup("upgrade_configs: [{upgrade_type: websocket}]\n");
    send(
        &mut hcm,
        &mut io,
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 200 OK"), "{down}");
    assert!(down.contains("connection: close\r\n"), "{down}");
    assert!(io.closed.is_some());
}

#[test]
fn http_09_request_is_426() {
    let (mut hcm, mut io, _) = setup("");
    send(&mut hcm, &mut io, "GET /\r\n\r\n");
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{down}"
    );
}

#[test]
fn a_connect_failure_fails_the_streams_waiting_for_the_host() {
    let (mut first, mut second, mut io) = two_connections_sharing_one_upstream_slot();
    send(&mut first, &mut io, GET);
    send(&mut second, &mut io, GET);
    assert_eq!(io.connects.len(), 1);
    // The connection attempt fails: its stream and the waiting one both get Envoy's 503.
    first.on_upstream_event(1, UpstreamEvent::Closed, &mut io);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
    assert!(down.ends_with("reset reason: connection failure"), "{down}");
    assert_eq!(io.wakes, 1);
    second.on_pool_wake(&mut io);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
    assert!(down.ends_with("reset reason: connection failure"), "{down}");
    let stats = &io.cluster.stats;
    assert_eq!(stats.upstream_rq_pending_failure_eject.value(), 1);
    assert_eq!(stats.upstream_rq_pending_active.value(), 0);
    assert_eq!(io.cluster.resources.pending_requests.count(), 0);
    assert_eq!(io.cluster.resources.connections.count(), 0);
    assert_eq!(io.connects.len(), 1);
}

// === the connection's buffer limit (the listener's per_connection_buffer_limit_bytes) ===

/// A decoder filter that buffers the whole request body (like Envoy's buffer filter).
struct BufferAll;

impl crate::http::filter::StreamDecoderFilter for BufferAll {
    fn decode_headers(
        &mut self,
        _headers: &mut RequestHead,
        end_stream: bool,
        _cb: &mut crate::http::filter::FilterCallbacks,
    ) -> crate::http::filter::FilterHeadersStatus {
        if end_stream {
            crate::http::filter::FilterHeadersStatus::Continue
        } else {
            crate::http::filter::FilterHeadersStatus::StopIteration
        }
    }
    fn decode_data(
        &mut self,
        _data: &mut BytesMut,
        end_stream: bool,
        _cb: &mut crate::http::filter::FilterCallbacks,
    ) -> crate::http::filter::FilterDataStatus {
        if end_stream {
            crate::http::filter::FilterDataStatus::Continue
        } else {
            crate::http::filter::FilterDataStatus::StopIterationAndBuffer
        }
    }
}

struct BufferAllFactory;

impl crate::http::filter_registry::FilterFactoryCb for BufferAllFactory {
    fn create_filters(&self, chain: &mut crate::http::filter_registry::FilterChainBuilder) {
        chain.add_decoder_filter(Box::new(BufferAll));
    }
}

/// A connection manager whose chain buffers request bodies, on a connection with `limit`.
fn setup_buffering(limit: u32) -> (ConnectionManager<u32>, FakeIo, Arc<HcmShared>) {
    let base = shared("");
    let yaml = "stat_prefix: ingress\nroute_config: {}\nhttp_filters:\n- name: envoy.filters.http.router\n";
    let doc = parse_yaml(yaml).unwrap();
    let mut config =
        HcmConfig::parse(&Node::root(&doc), &HttpFilterFactoryContext::default()).unwrap();
    config
        .filters
        .insert(0, ("buffer_all".to_string(), Arc::new(BufferAllFactory)));
    let shared = Arc::new(HcmShared {
        routes: base.routes.clone(),
        codec_settings: base.codec_settings.clone(),
        stats: HcmStats::new(&Store::new(), "ingress"),
        access_logs: Vec::new(),
        config,
    });
    let mut hcm = ConnectionManager::new(shared.clone());
    let mut io = FakeIo::new(Some(host()));
    io.buffer_limit = limit;
    hcm.on_new_connection(&mut io);
    (hcm, io, shared)
}

#[test]
fn buffered_body_past_the_connection_limit_is_413() {
    let (mut hcm, mut io, shared) = setup_buffering(16);
    send(
        &mut hcm,
        &mut io,
        "POST /a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 32\r\n\r\n0123456789abcdef0123456789abcdef",
    );
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{down}"
    );
    assert!(down.ends_with("Payload Too Large"), "{down}");
    assert_eq!(shared.stats.downstream_rq_too_large.value(), 1);
    assert!(io.connects.is_empty(), "nothing went upstream");
}

#[test]
fn buffered_body_within_the_connection_limit_is_forwarded() {
    let (mut hcm, mut io, shared) = setup_buffering(64);
    send(
        &mut hcm,
        &mut io,
        "POST /a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 32\r\n\r\n0123456789abcdef0123456789abcdef",
    );
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    let up = io.take_upstream(1);
    assert!(
        up.ends_with("\r\n\r\n0123456789abcdef0123456789abcdef"),
        "{up}"
    );
    assert_eq!(shared.stats.downstream_rq_too_large.value(), 0);
}

// === drain (the drain manager's drain-close callback) ===

#[test]
fn drain_close_on_an_idle_connection_closes_it_after_drain_timeout() {
    let (mut hcm, mut io, shared) = setup("drain_timeout: 2s\n");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    io.take_written();
    hcm.on_drain_close(&mut io);
    hcm.on_drain_close(&mut io);
    assert_eq!(shared.stats.downstream_cx_drain_close.value(), 1, "once");
    assert_eq!(io.closed, None, "the grace period lets a racing request in");
    for timer in io.advance(Duration::from_secs(2)) {
        hcm.on_timer(timer, &mut io);
    }
    assert_eq!(io.closed, Some(CloseHow::FlushWrite));
}

#[test]
fn drain_close_during_a_stream_answers_it_with_connection_close() {
    let (mut hcm, mut io, shared) = setup("drain_timeout: 1s\n");
    send(&mut hcm, &mut io, GET);
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    hcm.on_drain_close(&mut io);
    // The drain timeout passes mid-stream: the stream is not cut.
    for timer in io.advance(Duration::from_secs(1)) {
        hcm.on_timer(timer, &mut io);
    }
    assert_eq!(io.closed, None);
    upstream_reply(&mut hcm, &mut io, 1, OK);
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 200 OK\r\n"), "{down}");
    assert!(down.contains("connection: close\r\n"), "{down}");
    assert_eq!(io.closed, Some(CloseHow::FlushWriteAndDelay));
    assert_eq!(shared.stats.downstream_cx_drain_close.value(), 1);
}

// === the route's idle_timeout (Envoy's refreshIdleTimeout) ===

/// Fires the timers due after `by`.
fn advance(hcm: &mut ConnectionManager<u32>, io: &mut FakeIo, by: Duration) {
    for timer in io.advance(by) {
        hcm.on_timer(timer, io);
    }
}

#[test]
fn route_idle_timeout_replaces_the_stream_idle_timeout() {
    let (mut hcm, mut io, shared) = setup("stream_idle_timeout: 10s\n");
    send(&mut hcm, &mut io, "GET /idle HTTP/1.1\r\nHost: h\r\n\r\n");
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    // The upstream never answers: the route's 1 s fires long before the HCM's 10 s.
    advance(&mut hcm, &mut io, Duration::from_millis(999));
    assert!(io.take_written().is_empty());
    advance(&mut hcm, &mut io, Duration::from_millis(1));
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{down}"
    );
    assert!(down.ends_with("stream timeout"), "{down}");
    assert_eq!(shared.stats.downstream_rq_idle_timeout.value(), 1);
}

#[test]
fn route_idle_timeout_applies_without_a_stream_idle_timeout_and_408s_an_incomplete_request() {
    let (mut hcm, mut io, _) = setup("stream_idle_timeout: 0s\n");
    send(
        &mut hcm,
        &mut io,
        "POST /idle HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    );
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    advance(&mut hcm, &mut io, Duration::from_secs(1));
    let down = io.take_written();
    assert!(
        down.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{down}"
    );
    assert!(down.ends_with("stream timeout"), "{down}");
}

#[test]
fn route_idle_timeout_zero_disables_the_stream_idle_timeout() {
    let (mut hcm, mut io, _) = setup("stream_idle_timeout: 1s\n");
    send(&mut hcm, &mut io, "GET /noidle HTTP/1.1\r\nHost: h\r\n\r\n");
    hcm.on_upstream_event(1, UpstreamEvent::Connected, &mut io);
    advance(&mut hcm, &mut io, Duration::from_millis(1500));
    assert!(io.take_written().is_empty(), "no stream idle timeout");
    // The route timeout (2 s) still applies.
    advance(&mut hcm, &mut io, Duration::from_millis(500));
    let down = io.take_written();
    assert!(down.starts_with("HTTP/1.1 504 "), "{down}");
    assert!(down.ends_with("upstream request timeout"), "{down}");
}
