//! `envoy.filters.network.http_connection_manager`: the network read filter that runs the
//! sans-IO `ConnectionManager` on a downstream connection, and its factory (Envoy's
//! `HttpConnectionManagerFilterConfigFactory`).
//!
//! The filter translates between the worker's connection model (`network::filter`: a
//! `FilterContext` per callback, client connections whose events come back to their owner,
//! per-filter timers) and the connection manager's [`ConnectionIo`]. It also owns the two
//! per-worker things the router needs:
//! - the worker's HTTP/1 connection pools (`upstream::conn_pool`), in a thread-local: a pooled
//!   connection is handed to the filter of the stream using it (`set_owner`) and detached
//!   again when it goes back to the pool;
//! - the worker's view of each cluster ([`ClusterView`]), built lazily per worker.
//!
//! Called by the worker's `ConnectionHandler` (`on_new_connection`, `on_data`, `on_event`,
//! `on_upstream_data`, `on_upstream_event`, `on_timer`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use reactor::Timer;

use crate::config::{self, Bootstrap, EndpointAddress, Filter};
use crate::filters::{FactoryContext, NamedNetworkFilterConfigFactory};
use crate::network::connection::{CloseType, ConnectionEvent, ConnectionId, State};
use crate::network::connection_handler::{ConnectionOwner, IdleConnectionCallbacks};
use crate::network::filter::{FilterContext, FilterStatus, ReadFilter};
use crate::network::listener::NetworkFilterFactoryCb;
use crate::router::upstream_stats::ClusterStats;
use crate::router::RouteConfigOptions;
use crate::stats::Store;
use crate::upstream::cluster::Host;
use crate::upstream::conn_pool::{ConnPools, PoolSettings};
use crate::upstream::fast_hash::FastHashMap;
use crate::upstream::resource_manager::{ResourceManager, ResourcePriority};

use super::codec::Http1Settings;
use super::config::HcmConfig;
use super::conn_manager::{ConnectionManager, DownstreamEvent, HcmShared, UpstreamEvent};
use super::conn_manager_io::{CloseHow, ClusterView, ConnectionIo, HcmTimer};
use super::conn_manager_stats::HcmStats;
use super::conn_manager_timers::{HcmTimerSet, Rearm};
use super::filter_registry::HttpFilterFactoryContext;
use super::route_adapter::ConfiguredRoutes;

thread_local! {
    /// This worker's HTTP/1 connection pools (Envoy keeps them in the thread-local cluster).
    static POOLS: Rc<RefCell<Pools>> = Rc::new(RefCell::new(ConnPools::default()));
    /// This worker's cluster views, by name.
    static VIEWS: RefCell<FastHashMap<String, Rc<dyn ClusterView>>> = RefCell::new(FastHashMap::default());
    /// The view `CxIo::cluster` returned last and its name (views are never replaced; the
    /// name's buffer is reused): the usual request goes to the cluster the previous one went
    /// to, found by one name compare.
    static LAST_VIEW: RefCell<(String, Option<Rc<dyn ClusterView>>)> = const { RefCell::new((String::new(), None)) };
    /// This worker's random numbers (xorshift; the router's `random_value`), seeded on first
    /// use: one per worker rather than 8 more bytes on every connection.
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new(seed());
}

/// The worker's pools: upstream connections by id, waiting streams by their filter.
type Pools = ConnPools<ConnectionId, ConnectionOwner>;

/// The `on_timer` token of a pool wake-up (beyond every `HcmTimer` token).
const POOL_WAKE_TOKEN: u64 = 1 << 32;

/// The worker's pools as the owner of their idle connections (Envoy's idle `ActiveClient`
/// closing on its connection's close event): a connection the upstream closed while idle
/// leaves the pool at once, with its `max_connections` slot, `upstream_cx_active` and the
/// host's `cx_active`, and counts in `upstream_cx_destroy_remote` (`_local` when we closed it
/// for bytes it received while idle); a stream waiting for a slot is woken.
struct IdlePoolCallbacks;

impl IdleConnectionCallbacks for IdlePoolCallbacks {
    fn on_idle_close(&self, id: ConnectionId, remote: bool) -> Option<(ConnectionOwner, u64)> {
        POOLS.with(|pools| {
            // Never borrowed here: close events are delivered between filter callbacks.
            let mut pools = pools.try_borrow_mut().ok()?;
            let closed = pools.remove_idle(id)?;
            debug!(
                "[{id}] idle pooled connection to {} closed ({}): removed from the pool",
                closed.host,
                if remote { "remote" } else { "local" }
            );
            if let Some(host) = &closed.upstream_host {
                crate::upstream::cluster::dec(&host.stats.cx_active);
            }
            // The view exists: the connection was opened through it.
            let view = VIEWS.with(|views| views.borrow().get(&closed.cluster).cloned())?;
            pools.discard_idle(closed.key, view.resource_manager());
            let stats = view.stats();
            if remote {
                stats.upstream_cx_destroy_remote.inc();
            } else {
                stats.upstream_cx_destroy_local.inc();
            }
            stats.upstream_cx_destroy.inc();
            stats.upstream_cx_active.dec();
            stats.record_cx_closed(&closed.life, true, Instant::now());
            let waiter = pools.notify(closed.key, true)?;
            Some((waiter, POOL_WAKE_TOKEN))
        })
    }

    /// The pooled-connection idle timeout (Envoy's `CodecClient::onIdleTimeout`): the expired
    /// idle connections count in `upstream_cx_idle_timeout` and are closed by the caller; each
    /// close then comes back as [`on_idle_close`](Self::on_idle_close) (local): out of the
    /// pool, `upstream_cx_destroy_local`, its slot freed and a waiting stream woken.
    fn on_idle_timer(&self, now: Instant) -> (Vec<ConnectionId>, Option<Duration>) {
        POOLS.with(|pools| {
            let Ok(mut pools) = pools.try_borrow_mut() else {
                return (Vec::new(), Some(Duration::from_millis(1)));
            };
            let view = |name: &str| VIEWS.with(|views| views.borrow().get(name).cloned());
            let (expired, next) = pools.sweep_idle(now);
            let mut ids = Vec::with_capacity(expired.len());
            for (cluster, id) in expired {
                if let Some(view) = view(&cluster) {
                    view.stats().upstream_cx_idle_timeout.inc();
                }
                ids.push(id);
            }
            (ids, next)
        })
    }
}

/// The `on_timer` token of the filter's one reactor timer (every [`HcmTimer`] rides on it).
const TIMERS_TOKEN: u64 = 0;

/// The connection manager's timers: deadlines per kind, one reactor timer (created on first
/// use) armed for the earliest. An idle keep-alive connection owns one timer, not one per kind.
#[derive(Default)]
struct FilterTimers {
    timer: Option<Timer>,
    set: HcmTimerSet,
}

impl FilterTimers {
    /// Does what the timer set asked of the reactor timer. Most arms and every disarm answer
    /// `Keep` (lazy disarm; a new deadline after the armed one), so that case is inlined and
    /// free; the reactor is only called for the rest.
    #[inline]
    fn apply(&mut self, rearm: Rearm, cx: &mut FilterContext<'_>) {
        if rearm != Rearm::Keep {
            self.apply_to_reactor(rearm, cx);
        }
    }

    fn apply_to_reactor(&mut self, rearm: Rearm, cx: &mut FilterContext<'_>) {
        match rearm {
            Rearm::Keep => {}
            Rearm::Enable(after) => self
                .timer
                .get_or_insert_with(|| cx.create_timer(TIMERS_TOKEN))
                .enable(after),
            Rearm::Disable => {
                if let Some(timer) = &self.timer {
                    timer.disable();
                }
            }
        }
    }
}

/// A cluster's hosts and settings as read from the config, shared by every worker.
/// (Round robin over the endpoints; the cluster manager's per-worker load balancers replace it
/// once workers expose them to filters.)
pub struct StaticCluster {
    pub name: String,
    pub hosts: Vec<Arc<Host>>,
    next: AtomicUsize,
    pub connect_timeout: Duration,
    pub buffer_limit: u32,
    pub pool: PoolSettings,
    /// The circuit breakers (DEFAULT priority), shared by every worker.
    pub resources: ResourceManager,
}

impl StaticCluster {
    pub fn from_config(cluster: &config::Cluster, store: &Store) -> StaticCluster {
        let mut hosts = Vec::new();
        for endpoint in cluster.lb_endpoints() {
            match &endpoint.address {
                EndpointAddress::Ip(addr) => hosts.push(Arc::new(Host::new(*addr, "", 1))),
                EndpointAddress::Dns { hostname, port } => {
                    if let Ok(mut addrs) = (hostname.as_str(), *port).to_socket_addrs() {
                        hosts.extend(
                            addrs
                                .next()
                                .map(|addr| Arc::new(Host::new(addr, hostname.as_str(), 1))),
                        );
                    }
                }
            }
        }
        StaticCluster {
            name: cluster.name.clone(),
            hosts,
            next: AtomicUsize::new(0),
            connect_timeout: cluster.connect_timeout,
            buffer_limit: cluster.per_connection_buffer_limit_bytes,
            pool: PoolSettings {
                thresholds: cluster.circuit_breakers.default,
                idle_timeout: cluster.http_protocol_options.idle_timeout,
                max_requests_per_connection: cluster
                    .http_protocol_options
                    .max_requests_per_connection,
            },
            resources: ResourceManager::new(
                &cluster.circuit_breakers.default,
                store,
                &cluster.name,
                ResourcePriority::Default,
            ),
        }
    }
}

/// One cluster on one worker: the shared settings plus this worker's stats handles.
pub struct WorkerCluster {
    cluster: Arc<StaticCluster>,
    stats: ClusterStats,
}

impl ClusterView for WorkerCluster {
    fn name(&self) -> &str {
        &self.cluster.name
    }
    fn choose_host(&self) -> Option<Arc<Host>> {
        let hosts = &self.cluster.hosts;
        if hosts.is_empty() {
            return None;
        }
        let n = self.cluster.next.fetch_add(1, Ordering::Relaxed);
        Some(hosts[n % hosts.len()].clone())
    }
    fn connect_timeout(&self) -> Duration {
        self.cluster.connect_timeout
    }
    fn pool_settings(&self) -> PoolSettings {
        self.cluster.pool
    }
    fn resource_manager(&self) -> &ResourceManager {
        &self.cluster.resources
    }
    fn buffer_limit(&self) -> u32 {
        self.cluster.buffer_limit
    }
    fn stats(&self) -> &ClusterStats {
        &self.stats
    }
}

/// One cluster of the worker's cluster manager (load balancer over the current host-set
/// snapshot; settings from its `ClusterInfo`), plus the router's stats handles.
pub struct ManagedCluster {
    tlcm: Rc<crate::upstream::cluster_manager::ThreadLocalClusterManager>,
    id: crate::upstream::cluster_manager::ClusterId,
    /// The cluster's settings (its circuit breakers are shared by every worker).
    info: Arc<crate::upstream::cluster::ClusterInfo>,
    pool: PoolSettings,
    stats: ClusterStats,
}

impl ClusterView for ManagedCluster {
    fn name(&self) -> &str {
        &self.tlcm.cluster(self.id).info().name
    }
    fn choose_host(&self) -> Option<Arc<Host>> {
        self.tlcm.cluster(self.id).choose_host()
    }
    fn connect_timeout(&self) -> Duration {
        self.tlcm.cluster(self.id).info().connect_timeout
    }
    fn pool_settings(&self) -> PoolSettings {
        self.pool
    }
    fn resource_manager(&self) -> &ResourceManager {
        self.info.resource_manager(ResourcePriority::Default)
    }
    fn buffer_limit(&self) -> u32 {
        self.tlcm
            .cluster(self.id)
            .info()
            .per_connection_buffer_limit_bytes
    }
    fn stats(&self) -> &ClusterStats {
        &self.stats
    }
}

/// What every connection of this HCM config shares, plus how to build cluster views.
pub struct HcmFilterConfig {
    pub shared: Arc<HcmShared>,
    clusters: HashMap<String, Arc<StaticCluster>>,
    /// One store view per worker (stats handles are created on the worker that uses them).
    worker_stats: Vec<Store>,
    /// The server fails health checks (admin `POST /healthcheck/fail`): Envoy's drain manager
    /// then drain-closes (`drainClose()` is true for the DEFAULT drain type), so every
    /// response says `connection: close`.
    health_check_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// The network read filter of one downstream connection. It lives as long as its connection,
/// idle ones included, so it holds only what is per connection: the worker's pools, random
/// numbers and index are looked up per callback.
pub struct HttpConnectionManagerFilter {
    hcm: ConnectionManager<ConnectionId>,
    config: Arc<HcmFilterConfig>,
    timers: FilterTimers,
}

impl HttpConnectionManagerFilter {
    pub fn new(config: Arc<HcmFilterConfig>) -> Self {
        HcmTimerSet::init_origin();
        HttpConnectionManagerFilter {
            hcm: ConnectionManager::new(config.shared.clone()),
            config,
            timers: FilterTimers::default(),
        }
    }

    /// Runs `f` with the connection manager and a [`ConnectionIo`] over this callback's context.
    fn with_io<R>(
        &mut self,
        cx: &mut FilterContext<'_>,
        f: impl FnOnce(&mut ConnectionManager<ConnectionId>, &mut CxIo<'_, '_, '_>) -> R,
    ) -> R {
        let now = cx.dispatcher().now();
        POOLS.with(|pools| {
            let mut io = CxIo {
                cx,
                timers: &mut self.timers,
                pools: pools.borrow_mut(),
                config: &self.config,
                now,
            };
            f(&mut self.hcm, &mut io)
        })
    }
}

fn seed() -> u64 {
    let t = Instant::now();
    let addr = &t as *const Instant as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (nanos ^ addr.rotate_left(32)) | 1
}

/// [`ConnectionIo`] over one filter callback's context.
struct CxIo<'s, 'c, 'h> {
    cx: &'c mut FilterContext<'h>,
    timers: &'s mut FilterTimers,
    /// The worker's pools, borrowed for this one callback (callbacks never nest).
    pools: std::cell::RefMut<'s, Pools>,
    config: &'s Arc<HcmFilterConfig>,
    now: Instant,
}

fn close_type(how: CloseHow) -> CloseType {
    match how {
        CloseHow::FlushWrite => CloseType::FlushWrite,
        CloseHow::NoFlush => CloseType::NoFlush,
        CloseHow::FlushWriteAndDelay => CloseType::FlushWriteAndDelay,
    }
}

impl ConnectionIo for CxIo<'_, '_, '_> {
    type Upstream = ConnectionId;
    type Waiter = ConnectionOwner;

    fn now(&self) -> Instant {
        self.now
    }
    fn wall_now(&self) -> std::time::SystemTime {
        self.cx.dispatcher().wall_now()
    }
    fn connection_id(&self) -> u64 {
        self.cx.connection_id().global_id()
    }
    fn remote_address(&self) -> Option<SocketAddr> {
        self.cx.connection().map(|c| c.remote_address())
    }
    fn local_address(&self) -> Option<SocketAddr> {
        self.cx.connection().map(|c| c.local_address())
    }
    fn drain_close(&mut self) -> bool {
        if self.config.health_check_failed.load(Ordering::Relaxed) {
            return true;
        }
        if !self.cx.draining() {
            return false;
        }
        let random = self.random();
        self.cx.drain_close(self.now, random)
    }
    fn buffer_limit(&self) -> u32 {
        self.cx
            .connection()
            .map_or(crate::network::connection::DEFAULT_BUFFER_LIMIT, |c| {
                c.buffer_limit()
            })
    }
    fn write(&mut self, data: &mut BytesMut, end_stream: bool) {
        self.cx.write(data, end_stream);
    }
    fn close(&mut self, how: CloseHow) {
        // Envoy's `delayed_close_timeout` (1 s; 0 closes once flushed, without the wait).
        match (how, self.config.shared.config.delayed_close_timeout) {
            (CloseHow::FlushWriteAndDelay, Some(delay)) => self.cx.close_with_delay(delay),
            (CloseHow::FlushWriteAndDelay, None) => self.cx.close(CloseType::FlushWrite),
            _ => self.cx.close(close_type(how)),
        }
    }
    fn read_disable(&mut self, disable: bool) {
        self.cx.read_disable(disable);
    }
    fn arm_timer(&mut self, timer: HcmTimer, after: Duration) {
        let rearm = self.timers.set.arm(timer, self.now, after);
        self.timers.apply(rearm, self.cx);
    }
    fn disarm_timer(&mut self, timer: HcmTimer) {
        let rearm = self.timers.set.disarm(timer);
        self.timers.apply(rearm, self.cx);
    }
    fn disarm_stream_timers(&mut self) {
        let rearm = self.timers.set.disarm_stream();
        self.timers.apply(rearm, self.cx);
    }
    fn connect(&mut self, address: SocketAddr, buffer_limit: u32) -> io::Result<ConnectionId> {
        self.cx.create_client_connection(address, buffer_limit)
    }
    fn write_upstream(&mut self, id: ConnectionId, data: &mut BytesMut, end_stream: bool) {
        self.cx.write_to(id, data, end_stream);
    }
    fn close_upstream(&mut self, id: ConnectionId, how: CloseHow) {
        self.cx.close_connection(id, close_type(how));
    }
    fn read_disable_upstream(&mut self, id: ConnectionId, disable: bool) {
        self.cx.read_disable_connection(id, disable);
    }
    fn adopt_upstream(&mut self, id: ConnectionId) {
        let owner = self.cx.this_filter();
        self.cx.set_owner(id, owner);
    }
    fn release_upstream(&mut self, id: ConnectionId) {
        // Owned by the pool while idle: an EOF or stray bytes close it and take it out of the
        // pool (`IdlePoolCallbacks`); `upstream_usable` refuses it should it still be popped.
        if !self.cx.has_idle_callbacks() {
            self.cx.set_idle_callbacks(Rc::new(IdlePoolCallbacks));
        }
        self.cx.set_owner(id, ConnectionOwner::Idle);
        if let Some(after) = self.pools.take_idle_timer_arm() {
            self.cx.arm_idle_timer(after);
        }
    }
    fn upstream_usable(&mut self, id: ConnectionId, peek: bool) -> bool {
        let Some(conn) = self.cx.connection_of(id) else {
            return false;
        };
        if conn.state() != State::Open || conn.read_end_stream() || conn.read_buffer.is_some() {
            return false;
        }
        // A FIN (or stray bytes) collected by this iteration's poll whose callback has not run
        // yet, or, when asked, one that arrived since the poll: ask the socket.
        if !peek && !conn.read_event_pending() {
            return true;
        }
        match conn.raw_fd() {
            Some(fd) => peek_idle(fd),
            None => false,
        }
    }
    fn pools(&mut self) -> &mut Pools {
        &mut self.pools
    }
    fn waiter(&self) -> ConnectionOwner {
        self.cx.this_filter()
    }
    fn wake(&mut self, waiter: ConnectionOwner) {
        self.cx.wake(waiter, POOL_WAKE_TOKEN);
    }
    fn cluster(&mut self, name: &str) -> Option<Rc<dyn ClusterView>> {
        let last = LAST_VIEW.with(|last| match &*last.borrow() {
            (last, Some(view)) if last == name => Some(view.clone()),
            _ => None,
        });
        if last.is_some() {
            return last;
        }
        let found = VIEWS.with(|views| views.borrow().get(name).cloned());
        if let Some(view) = found {
            LAST_VIEW.with(|last| {
                let mut last = last.borrow_mut();
                last.0.clear();
                last.0.push_str(name);
                last.1 = Some(view.clone());
            });
            return Some(view);
        }
        let store = self
            .config
            .worker_stats
            .get(self.cx.worker_index())
            .cloned()
            .unwrap_or_default();
        // The worker's cluster manager when the server runs one (load-balancing policy, live
        // host sets); else the config's endpoints, round robin.
        if let Some(tlcm) = self.cx.cluster_manager() {
            let id = tlcm.cluster_id(name)?;
            let info = tlcm.cluster(id).info().clone();
            let view: Rc<dyn ClusterView> = Rc::new(ManagedCluster {
                pool: PoolSettings {
                    thresholds: info.resource_limits,
                    idle_timeout: info.http_protocol_options.idle_timeout,
                    max_requests_per_connection: info
                        .http_protocol_options
                        .max_requests_per_connection,
                },
                stats: ClusterStats::new(&store, name),
                info,
                tlcm,
                id,
            });
            VIEWS.with(|views| views.borrow_mut().insert(name.to_string(), view.clone()));
            return Some(view);
        }
        let cluster = self.config.clusters.get(name)?.clone();
        let store = self
            .config
            .worker_stats
            .get(self.cx.worker_index())
            .cloned()
            .unwrap_or_default();
        let view = Rc::new(WorkerCluster {
            stats: ClusterStats::new(&store, name),
            cluster,
        });
        VIEWS.with(|views| views.borrow_mut().insert(name.to_string(), view.clone()));
        Some(view)
    }
    fn random(&mut self) -> u64 {
        RNG.with(|rng| {
            let mut x = rng.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rng.set(x);
            x
        })
    }
}

/// True when an idle upstream socket has neither data nor EOF waiting.
fn peek_idle(fd: std::os::fd::RawFd) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut byte = [0u8; 1];
    match recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Err(nix::errno::Errno::EAGAIN) => true,
        // 0 = EOF; > 0 = unsolicited bytes; other errors = broken.
        _ => false,
    }
}

impl ReadFilter for HttpConnectionManagerFilter {
    fn on_new_connection(&mut self, cx: &mut FilterContext<'_>) -> FilterStatus {
        self.with_io(cx, |hcm, io| hcm.on_new_connection(io));
        FilterStatus::Continue
    }

    fn on_data(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus {
        self.with_io(cx, |hcm, io| hcm.on_data(data, end_stream, io));
        FilterStatus::StopIteration
    }

    fn on_event(&mut self, event: ConnectionEvent, cx: &mut FilterContext<'_>) {
        let event = match event {
            ConnectionEvent::RemoteClose => DownstreamEvent::RemoteClose,
            ConnectionEvent::LocalClose => DownstreamEvent::LocalClose,
            ConnectionEvent::AboveWriteBufferHighWatermark => DownstreamEvent::AboveHighWatermark,
            ConnectionEvent::BelowWriteBufferLowWatermark => DownstreamEvent::BelowLowWatermark,
            ConnectionEvent::Connected => return,
        };
        self.with_io(cx, |hcm, io| hcm.on_downstream_event(event, io));
    }

    fn on_delayed_close_timeout(&mut self) {
        self.config
            .shared
            .stats
            .downstream_cx_delayed_close_timeout
            .inc();
    }

    fn on_upstream_data(
        &mut self,
        upstream: ConnectionId,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) {
        self.with_io(cx, |hcm, io| {
            hcm.on_upstream_data(upstream, data, end_stream, io)
        });
    }

    fn on_upstream_event(
        &mut self,
        upstream: ConnectionId,
        event: ConnectionEvent,
        cx: &mut FilterContext<'_>,
    ) {
        let event = match event {
            ConnectionEvent::Connected => UpstreamEvent::Connected,
            ConnectionEvent::RemoteClose | ConnectionEvent::LocalClose => UpstreamEvent::Closed,
            ConnectionEvent::AboveWriteBufferHighWatermark => UpstreamEvent::AboveHighWatermark,
            ConnectionEvent::BelowWriteBufferLowWatermark => UpstreamEvent::BelowLowWatermark,
        };
        self.with_io(cx, |hcm, io| hcm.on_upstream_event(upstream, event, io));
    }

    fn on_timer(&mut self, token: u64, cx: &mut FilterContext<'_>) {
        if token == POOL_WAKE_TOKEN {
            self.with_io(cx, |hcm, io| hcm.on_pool_wake(io));
            return;
        }
        if token != TIMERS_TOKEN {
            return;
        }
        // The reactor timer fired: run every timer due, earliest first, then re-arm it for the
        // earliest deadline left (a callback may arm or disarm others on the way).
        let now = cx.dispatcher().now();
        let due = self.timers.set.fired(now);
        for timer in due.timers() {
            self.with_io(cx, |hcm, io| {
                if io.timers.set.take_due(timer, now) {
                    hcm.on_timer(timer, io);
                }
            });
        }
        let rearm = self.timers.set.rearm(now);
        self.timers.apply(rearm, cx);
    }

    fn on_drain_close(&mut self, cx: &mut FilterContext<'_>) {
        self.with_io(cx, |hcm, io| hcm.on_drain_close(io));
    }
}

/// Builds the shared config from a filter's `typed_config`.
pub fn build_config(
    filter: &Filter,
    bootstrap: &Bootstrap,
    store: &Store,
    worker_stats: &[Store],
    context: &HttpFilterFactoryContext,
    access_log_manager: Option<&crate::access_log::AccessLogManager>,
) -> config::Result<HcmFilterConfig> {
    let node = filter.config_node();
    let config = HcmConfig::parse(&node, context)?;
    let cluster_names: std::collections::HashSet<String> = bootstrap
        .static_resources
        .clusters
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let route_node = crate::config::Node::with_path(
        &config.route_config.value,
        config.route_config.path.clone(),
    );
    let routes = crate::router::RouteConfig::parse(
        &route_node,
        &RouteConfigOptions {
            clusters: Some(&cluster_names),
            ..RouteConfigOptions::default()
        },
    )?;
    let codec_settings = Arc::new(Http1Settings {
        max_request_headers_kb: config.max_request_headers_kb,
        max_headers_count: config.max_headers_count,
        accept_http_10: config.accept_http_10,
        default_host_for_http_10: config.default_host_for_http_10.clone(),
        ..Http1Settings::default()
    });
    let clusters = bootstrap
        .static_resources
        .clusters
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                Arc::new(StaticCluster::from_config(c, store)),
            )
        })
        .collect();
    let stats = HcmStats::new(store, &config.stat_prefix);
    let mut access_logs = Vec::new();
    if let Some(manager) = access_log_manager {
        for log in &config.access_log {
            access_logs.push(manager.create(log)?);
        }
    }
    let suppress_envoy_headers = config.suppress_envoy_headers;
    Ok(HcmFilterConfig {
        shared: Arc::new(HcmShared {
            config,
            routes: Arc::new(ConfiguredRoutes {
                suppress_envoy_headers,
                config: routes,
            }),
            codec_settings,
            stats,
            access_logs,
        }),
        clusters,
        worker_stats: worker_stats.to_vec(),
        health_check_failed: context.health_check_failed.clone(),
    })
}

/// The registry entry (Envoy's `HttpConnectionManagerFilterConfigFactory`).
pub struct HttpConnectionManagerFactory;

impl NamedNetworkFilterConfigFactory for HttpConnectionManagerFactory {
    fn name(&self) -> &'static str {
        "envoy.filters.network.http_connection_manager"
    }
    fn config_type(&self) -> &'static str {
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    }
    fn create_filter_factory(
        &self,
        filter: &Filter,
        cx: &FactoryContext<'_>,
    ) -> config::Result<NetworkFilterFactoryCb> {
        let context = HttpFilterFactoryContext {
            health_check_failed: health_check_failed_flag(),
            local_cluster: cx
                .bootstrap
                .node
                .as_ref()
                .map(|n| n.cluster.clone())
                .unwrap_or_default(),
        };
        let config = Arc::new(build_config(
            filter,
            cx.bootstrap,
            cx.stats,
            cx.worker_stats,
            &context,
            Some(cx.access_log_manager),
        )?);
        Ok(Arc::new(move |fm, _worker| {
            fm.add_read_filter(Box::new(HttpConnectionManagerFilter::new(config.clone())))
        }))
    }
}

/// The server-wide "failing health checks" flag (admin `POST /healthcheck/fail` sets it,
/// `POST /healthcheck/ok` clears it; the health_check filter reads it).
pub fn health_check_failed_flag() -> Arc<std::sync::atomic::AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    FLAG.get_or_init(|| Arc::new(std::sync::atomic::AtomicBool::new(false)))
        .clone()
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use std::mem::size_of;

    /// The filter is boxed per downstream connection and lives as long as it, idle or not
    /// (issue 4: 512 bytes per idle connection, everything included). Per-worker state (pools,
    /// random numbers, the worker index) is looked up per callback instead of held here; this
    /// was 256 bytes with them, a 32-byte inline pipelining buffer and nine inline deadlines.
    #[test]
    fn the_filter_of_an_idle_connection_stays_small() {
        assert!(
            size_of::<ConnectionManager<ConnectionId>>() <= 96,
            "{}",
            size_of::<ConnectionManager<ConnectionId>>()
        );
        assert!(
            size_of::<HttpConnectionManagerFilter>() <= 160,
            "{}",
            size_of::<HttpConnectionManagerFilter>()
        );
    }
}
