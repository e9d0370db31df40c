//! `envoy.filters.network.tcp_proxy`: carries a downstream connection's bytes to an upstream
//! host of a cluster and back, half-close and flow control included (Envoy's
//! `TcpProxy::Filter` with its `UpstreamCallbacks`).
//!
//! Built by [`TcpProxyConfigFactory`] from the registry (config: `stat_prefix`, `cluster` or
//! `weighted_clusters`, `idle_timeout` (default 1 h, 0 disables), `max_connect_attempts`
//! (default 1), `access_log`). One [`TcpProxy`] per downstream connection; it opens the
//! upstream connection through its `FilterContext`, so the upstream's data and events come back
//! to it.
//!
//! The life of a proxied connection, as a state machine over [`Upstream`]:
//!
//! | state | event | action |
//! |---|---|---|
//! | – | `on_new_connection` | read-disable downstream; the cluster's `max_connections` or `max_pending_requests` full: UO, close; else connect (`Connecting`), or wait in the worker's pool for the host when the host's `max_connections` is reached (`Waiting`) |
//! | `Waiting` | granted a connection by the pool (wake-up timer) | connect (`Connecting`) |
//! | `Waiting` | downstream closed | leave the pool (`upstream_rq_cancelled`); seldom seen: the downstream is read-disabled, as in Envoy |
//! | `Connecting` | upstream `Connected` | read-enable downstream, arm idle timer (`Connected`) |
//! | `Connecting` | upstream closed / connect timer | count `connect_fail` (`connect_timeout`); retry up to `max_connect_attempts`, else close downstream |
//! | `Connected` | downstream data / FIN | write it upstream (FIN = `end_stream`) |
//! | `Connected` | upstream data / FIN | write it downstream |
//! | `Connected` | a write buffer above its high watermark | read-disable the other side until it drains below the low watermark |
//! | any | downstream closed | close upstream (flushing) |
//! | `Connected` | upstream closed | close downstream (flushing) |
//! | `Connected` | idle timer | count `idle_timeout`, close both |
//!
//! `access_log[]` writes one line per connection when the proxy is dropped (Envoy logs in
//! `~Filter`): addresses, upstream host and cluster, payload bytes each way, start time,
//! duration, connection id and response flags (`UF` connect failure or timeout, `URX` attempts
//! exhausted, `UH` no healthy upstream, `NC` no cluster); the HTTP operators print `-`.
//!
//! Stats as Envoy 1.40's TCP connection pool counts them (compared session by session): a
//! session is a pending request while its connection opens (`upstream_rq_pending_total`,
//! `_active`), then the connection's one request (`upstream_rq_total`, host `rq_total`); a
//! connect failure ejects it (`upstream_rq_pending_failure_eject`, then
//! `upstream_cx_connect_attempts_exceeded` once the attempts are spent); every close of a
//! connected upstream counts `upstream_cx_destroy_{local,remote}_with_active_rq`.
//!
//! A session over its host's `per_host_thresholds` `max_connections` waits in its worker's
//! pool for the host ([`tcp_conn_pool`](super::tcp_conn_pool)) as Envoy's TCP pool queues it.
//! One difference: a connect failure fails only the session whose connection it was, where
//! Envoy's pool also fails every session waiting for the host (`purgePendingStreams`); the
//! waiting ones here are granted connections of their own in turn.
//!
//! Hosts come from the worker's `ThreadLocalClusterManager` (its load balancer over the
//! current host-set snapshot); `cluster.<name>.*` stats are that worker's handles.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use reactor::Timer;

use crate::access_log::{AccessLog, AccessLogConfig, ResponseFlag, ResponseFlags, StreamInfo};
use crate::config::{self, Filter, Node};
use crate::network::connection::{CloseType, ConnectionEvent, ConnectionId};
use crate::network::filter::{FilterContext, FilterStatus, ReadFilter};
use crate::network::listener::NetworkFilterFactoryCb;
use crate::stats::{Counter, Store};
use crate::upstream::cluster::{self, ClusterStats, Host, HostStats};
use crate::upstream::cluster_manager::{ClusterId, ThreadLocalClusterManager};
use crate::upstream::resource_manager::ResourcePriority;

use super::super::{FactoryContext, NamedNetworkFilterConfigFactory};
use super::tcp_conn_pool::{self, Asked, Breakers, PoolKey, WakeUp};
use crate::upstream::resource_manager::ResourceManager;

/// Envoy's default `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

const CONNECT_TIMER: u64 = 1;
const IDLE_TIMER: u64 = 2;
/// The wake-up of a session waiting for a connection ([`tcp_conn_pool`]).
const WAKE_TIMER: u64 = 3;

/// `tcp.<stat_prefix>.*` on one worker.
pub struct TcpProxyStats {
    downstream_cx_total: Counter,
    downstream_cx_rx_bytes_total: Counter,
    downstream_cx_tx_bytes_total: Counter,
    downstream_flow_control_paused_reading_total: Counter,
    downstream_flow_control_resumed_reading_total: Counter,
    idle_timeout: Counter,
    upstream_flush_total: Counter,
}

impl TcpProxyStats {
    fn new(store: &Store, stat_prefix: &str) -> TcpProxyStats {
        let s = store.scope(&format!("tcp.{stat_prefix}"));
        TcpProxyStats {
            downstream_cx_total: s.counter("downstream_cx_total"),
            downstream_cx_rx_bytes_total: s.counter("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: s.counter("downstream_cx_tx_bytes_total"),
            downstream_flow_control_paused_reading_total: s
                .counter("downstream_flow_control_paused_reading_total"),
            downstream_flow_control_resumed_reading_total: s
                .counter("downstream_flow_control_resumed_reading_total"),
            idle_timeout: s.counter("idle_timeout"),
            upstream_flush_total: s.counter("upstream_flush_total"),
        }
    }
}

/// The parsed config, shared by every worker.
pub struct TcpProxyConfig {
    stat_prefix: String,
    /// `(cluster name, weight)`; one entry with weight 1 for `cluster`.
    clusters: Vec<(String, u32)>,
    total_weight: u32,
    idle_timeout: Option<Duration>,
    max_connect_attempts: u32,
    /// Indexed by worker.
    stats: Vec<TcpProxyStats>,
    /// `access_log[]`: one line per connection.
    access_logs: Vec<AccessLog>,
}

impl TcpProxyConfig {
    /// Reads the `TcpProxy` message at `node`, checking that clusters exist.
    pub fn parse(node: &Node<'_>, cx: &FactoryContext<'_>) -> config::Result<TcpProxyConfig> {
        node.check_fields(
            &[
                "stat_prefix",
                "cluster",
                "weighted_clusters",
                "idle_timeout",
                "max_connect_attempts",
                "access_log",
            ],
            &[
                "on_demand",
                "metadata_match",
                "tunneling_config",
                "downstream_idle_timeout",
                "upstream_idle_timeout",
                "max_downstream_connection_duration",
                "access_log_flush_interval",
                "flush_access_log_on_connected",
                "access_log_options",
                "hash_policy",
                "backoff_options",
                "proxy_protocol_tlvs",
                "max_early_data_bytes",
                "upstream_connect_mode",
            ],
        )?;
        let stat_prefix = node.required("stat_prefix")?.non_empty_str()?.to_string();
        let mut names: Vec<(String, u32, String)> = Vec::new();
        match (node.get("cluster"), node.get("weighted_clusters")) {
            (Some(c), None) => names.push((c.non_empty_str()?.to_string(), 1, c.path().into())),
            (None, Some(w)) => {
                w.check_fields(&["clusters"], &[])?;
                let list = w.required("clusters")?;
                for entry in list.as_list()? {
                    entry.check_fields(&["name", "weight"], &["metadata_match"])?;
                    let name = entry.required("name")?.non_empty_str()?.to_string();
                    let weight_node = entry.required("weight")?;
                    let weight = weight_node.u32_value()?;
                    if weight == 0 {
                        return Err(weight_node.error("must be at least 1"));
                    }
                    names.push((name, weight, entry.field_path("name")));
                }
                if names.is_empty() {
                    return Err(list.error("must name at least one cluster"));
                }
            }
            (Some(_), Some(_)) => {
                return Err(node.error("'cluster' and 'weighted_clusters' are exclusive"))
            }
            (None, None) => {
                return Err(node.error("one of 'cluster' or 'weighted_clusters' is required"))
            }
        }
        let mut clusters = Vec::with_capacity(names.len());
        for (name, weight, path) in names {
            if !cx.bootstrap.has_cluster(&name) {
                return Err(config::ConfigError::invalid(
                    path,
                    format!("cluster '{name}' does not exist"),
                ));
            }
            clusters.push((name, weight));
        }
        let total_weight = clusters.iter().map(|(_, w)| *w).sum();
        let idle_timeout = match node.opt("idle_timeout", Node::duration)? {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let max_connect_attempts = match node.get("max_connect_attempts") {
            Some(n) => {
                let v = n.u32_value()?;
                if v == 0 {
                    return Err(n.error("must be at least 1"));
                }
                v
            }
            None => 1,
        };
        let stats = cx
            .worker_stats
            .iter()
            .map(|s| TcpProxyStats::new(s, &stat_prefix))
            .collect();
        let access_logs = match node.get("access_log") {
            Some(list) => AccessLogConfig::parse_list(&list)?
                .iter()
                .map(|c| cx.access_log_manager.create(c))
                .collect::<config::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(TcpProxyConfig {
            stat_prefix,
            clusters,
            total_weight,
            idle_timeout,
            max_connect_attempts,
            stats,
            access_logs,
        })
    }

    /// Picks the cluster (by weight) for a new connection; `seed` varies per connection.
    fn pick_cluster(&self, seed: u64) -> &str {
        if self.clusters.len() == 1 {
            return &self.clusters[0].0;
        }
        // Weighted: a point in [0, total_weight) picks the cluster whose range holds it.
        let mut point = (mix(seed) % u64::from(self.total_weight.max(1))) as u32;
        for (cluster, weight) in &self.clusters {
            if point < *weight {
                return cluster;
            }
            point -= weight;
        }
        &self.clusters[0].0
    }
}

/// A cheap, well-spread hash of a connection id (splitmix64), for weighted picking.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The circuit breakers a session's pool asks: the cluster's resources and the host's open
/// connections (all workers), `upstream_cx_overflow` when they say no.
struct HostBreakers<'a> {
    resources: &'a ResourceManager,
    host: &'a Host,
    stats: &'a ClusterStats,
}

impl Breakers for HostBreakers<'_> {
    /// Envoy's `HostImpl::canCreateConnection`, with the connections granted but not yet
    /// opened counted as open.
    fn room(&self, granted: u32) -> bool {
        let granted = u64::from(granted);
        let host_open = self
            .host
            .stats
            .cx_active
            .load(std::sync::atomic::Ordering::Relaxed);
        let per_host = self
            .resources
            .max_connections_per_host
            .is_none_or(|max| host_open + granted < u64::from(max));
        let connections = &self.resources.connections;
        per_host && connections.count() + granted < connections.max()
    }

    fn overflow(&self) {
        self.stats.upstream_cx_overflow.inc();
    }
}

/// Where the upstream side of one proxied connection is.
enum Upstream {
    /// Not started (before `on_new_connection`) or given up.
    None,
    /// Waiting for room under `host`'s per-host `max_connections`, in this worker's pool for
    /// it; `wake_up` is the session's wake-up timer, shared with the pool.
    Waiting {
        host: Arc<Host>,
        attempt: u32,
        wake_up: Rc<dyn WakeUp>,
    },
    /// Connecting to a host; `attempt` counts from 1.
    Connecting { conn: ConnectionId, attempt: u32 },
    /// Bytes flow both ways.
    Connected(ConnectionId),
    /// The upstream connection closed after connecting; the downstream is being closed.
    Closed,
}

/// What the access log says about one connection, gathered as it goes (the part of Envoy's
/// connection `StreamInfo` tcp_proxy fills); written when the proxy is dropped.
#[derive(Default)]
struct SessionLog {
    start_time: Option<SystemTime>,
    started: Option<Instant>,
    connection_id: Option<u64>,
    downstream_remote: Option<SocketAddr>,
    downstream_local: Option<SocketAddr>,
    upstream_host: Option<SocketAddr>,
    upstream_local: Option<SocketAddr>,
    bytes_received: u64,
    bytes_sent: u64,
    flags: ResponseFlags,
}

/// One downstream connection's proxy.
pub struct TcpProxy {
    config: Arc<TcpProxyConfig>,
    worker: usize,
    /// The worker's cluster manager and the chosen cluster (set in `on_new_connection`).
    cluster: Option<(Rc<ThreadLocalClusterManager>, ClusterId)>,
    upstream: Upstream,
    connect_timer: Option<Timer>,
    idle_timer: Option<Timer>,
    log: SessionLog,
    /// The host of the current (or last) upstream connection: its per-host `cx_*` stats.
    upstream_host: Option<Arc<Host>>,
    /// When the current upstream connection was created (`upstream_cx_connect_ms`,
    /// `upstream_cx_length_ms`); taken when it is gone.
    upstream_opened: Option<Instant>,
}

impl TcpProxy {
    pub fn new(config: Arc<TcpProxyConfig>, worker: usize) -> TcpProxy {
        TcpProxy {
            config,
            worker,
            cluster: None,
            upstream: Upstream::None,
            connect_timer: None,
            idle_timer: None,
            log: SessionLog::default(),
            upstream_host: None,
            upstream_opened: None,
        }
    }

    fn stats(&self) -> Option<&TcpProxyStats> {
        self.config.stats.get(self.worker)
    }

    /// The current upstream host's per-host stats (`/clusters`); only `cx_*` for L4.
    fn host_stats(&self) -> Option<&HostStats> {
        self.upstream_host.as_deref().map(|h| &h.stats)
    }

    /// The chosen cluster's circuit breakers (default priority: tcp_proxy routes have none).
    fn resources(&self) -> Option<&ResourceManager> {
        self.cluster.as_ref().map(|(cm, id)| {
            cm.cluster(*id)
                .info()
                .resource_manager(ResourcePriority::Default)
        })
    }

    fn cluster_stats(&self) -> Option<&ClusterStats> {
        self.cluster
            .as_ref()
            .map(|(cm, id)| cm.cluster(*id).stats())
    }

    /// Envoy's `establishUpstreamConnection`: picks a host and connects; on an immediate
    /// failure, counts it and tries the next attempt or gives up.
    fn connect(&mut self, attempt: u32, cx: &mut FilterContext<'_>) {
        let Some((cm, id)) = self.cluster.clone() else {
            self.log.flags.set(ResponseFlag::NoClusterFound);
            self.give_up(cx);
            return;
        };
        let cluster = cm.cluster(id);
        let info = cluster.info();
        // Envoy checks the cluster's max_connections breaker here (its TCP pool would queue
        // the session behind connections that are never released): full -> UO, closed.
        if !info
            .resource_manager(ResourcePriority::Default)
            .connections
            .can_create()
        {
            debug!(
                "[{}] tcp_proxy: cluster '{}' is at max_connections",
                cx.connection_id(),
                info.name
            );
            self.refuse_overflow(cx);
            return;
        }
        let Some(chosen) = cluster.choose_host() else {
            debug!(
                "[{}] tcp_proxy: no healthy upstream in cluster '{}'",
                cx.connection_id(),
                info.name
            );
            if let Some(s) = self.cluster_stats() {
                s.upstream_cx_none_healthy.inc();
            }
            self.log.flags.set(ResponseFlag::NoHealthyUpstream);
            self.give_up(cx);
            return;
        };
        // Envoy's `ConnPoolImplBase::newStream`: the session becomes a pending stream of the
        // host's pool until its connection is up, if `max_pending_requests` has room.
        let resources = info.resource_manager(ResourcePriority::Default);
        if !resources.pending_requests.can_create() {
            debug!(
                "[{}] tcp_proxy: cluster '{}' is at max_pending_requests",
                cx.connection_id(),
                info.name
            );
            if let Some(s) = self.cluster_stats() {
                s.upstream_rq_pending_overflow.inc();
            }
            self.log.flags.set(ResponseFlag::UpstreamOverflow);
            self.give_up(cx);
            return;
        }
        resources.pending_requests.inc();
        if let Some(s) = self.cluster_stats() {
            s.upstream_rq_pending_total.inc();
            s.upstream_rq_pending_active.inc();
        }
        self.open_or_wait(chosen, attempt, cx);
    }

    /// Envoy's `tryCreateNewConnections` for this new pending session: a connection to
    /// `host` now if the breakers allow one (`per_host_thresholds`' max_connections, then
    /// the cluster's) or if this worker's pool for the host has none at all; otherwise
    /// `upstream_cx_overflow`, and the session waits in the pool (`Waiting`) until it is
    /// granted a connection (see [`tcp_conn_pool`]).
    fn open_or_wait(&mut self, host: Arc<Host>, attempt: u32, cx: &mut FilterContext<'_>) {
        let asked = self.with_breakers_of(&host, |key, breakers| {
            tcp_conn_pool::ask(key, breakers, || {
                Rc::new(cx.create_timer(WAKE_TIMER)) as Rc<dyn WakeUp>
            })
        });
        match asked {
            None => {}
            Some(Asked::Open) => self.open(host, attempt, cx),
            Some(Asked::Wait(wake_up)) => {
                debug!(
                    "[{}] tcp_proxy: host {} is at its per-host max_connections: waiting",
                    cx.connection_id(),
                    host.address()
                );
                self.upstream = Upstream::Waiting {
                    host,
                    attempt,
                    wake_up,
                };
            }
        }
    }

    /// Opens the session's connection to `host` (Envoy's `instantiateActiveClient`); an
    /// immediate failure counts as a connect failure of this attempt.
    /// The connection counts in this worker's pool for the host from here on.
    fn open(&mut self, chosen: Arc<Host>, attempt: u32, cx: &mut FilterContext<'_>) {
        let Some((cm, id)) = self.cluster.clone() else {
            return;
        };
        let cluster = cm.cluster(id);
        let info = cluster.info();
        let host = chosen.address();
        debug!(
            "[{}] tcp_proxy: connecting to {host} (cluster '{}', attempt {attempt})",
            cx.connection_id(),
            info.name
        );
        self.log.upstream_host = Some(host);
        cluster::inc(&chosen.stats.cx_total);
        self.upstream_host = Some(chosen);
        cluster.stats().upstream_cx_total.inc();
        match cx.create_client_connection(host, info.per_connection_buffer_limit_bytes) {
            Ok(conn) => {
                // Held while Connecting or Connected; `cx_slot_released` gives it back.
                info.resource_manager(ResourcePriority::Default)
                    .connections
                    .inc();
                if let Some(s) = self.cluster_stats() {
                    s.upstream_cx_active.inc();
                }
                if let Some(h) = self.host_stats() {
                    cluster::inc(&h.cx_active);
                }
                cx.enable_half_close_connection(conn, true);
                self.upstream = Upstream::Connecting { conn, attempt };
                self.upstream_opened = Some(Instant::now());
                let timer = self
                    .connect_timer
                    .get_or_insert_with(|| cx.create_timer(CONNECT_TIMER));
                timer.enable(info.connect_timeout);
            }
            Err(e) => {
                debug!(
                    "[{}] tcp_proxy: connect to {host} failed: {e}",
                    cx.connection_id()
                );
                if let Some(s) = self.cluster_stats() {
                    s.upstream_cx_connect_fail.inc();
                }
                self.log.flags.set(ResponseFlag::UpstreamConnectionFailure);
                if let Some(h) = self.host_stats() {
                    cluster::inc(&h.cx_connect_fail);
                }
                // The pending session fails with it (Envoy's purgePendingStreams), and the
                // pool's place is given back.
                self.pending_ended(true);
                self.with_breakers(tcp_conn_pool::connection_released);
                self.upstream = Upstream::None;
                self.retry_or_give_up(attempt, cx);
            }
        }
    }

    /// The session is no longer a pending stream of its pool: connected (`ejected` false),
    /// or failed with its connection attempt (`upstream_rq_pending_failure_eject`).
    fn pending_ended(&self, ejected: bool) {
        if let Some(r) = self.resources() {
            r.pending_requests.dec();
        }
        if let Some(s) = self.cluster_stats() {
            s.upstream_rq_pending_active.dec();
            if ejected {
                s.upstream_rq_pending_failure_eject.inc();
            }
        }
    }

    fn retry_or_give_up(&mut self, attempt: u32, cx: &mut FilterContext<'_>) {
        if attempt < self.config.max_connect_attempts {
            self.connect(attempt + 1, cx);
        } else {
            if let Some(s) = self.cluster_stats() {
                s.upstream_cx_connect_attempts_exceeded.inc();
            }
            // Envoy's `onInitFailure(UpstreamRetryLimitExceeded)`: a refused upstream logs `UF,URX`.
            self.log.flags.set(ResponseFlag::UpstreamRetryLimitExceeded);
            self.give_up(cx);
        }
    }

    /// No upstream: close the downstream without flushing (nothing was sent to it).
    /// Refuses the session as a circuit-breaker overflow (Envoy's UO): `upstream_cx_overflow`
    /// is counted and the downstream connection closed.
    fn refuse_overflow(&mut self, cx: &mut FilterContext<'_>) {
        if let Some(s) = self.cluster_stats() {
            s.upstream_cx_overflow.inc();
        }
        self.log.flags.set(ResponseFlag::UpstreamOverflow);
        self.give_up(cx);
    }

    fn give_up(&mut self, cx: &mut FilterContext<'_>) {
        self.upstream = Upstream::None;
        self.connect_timer = None;
        cx.close(CloseType::NoFlush);
    }

    /// The upstream connection (connecting or connected) is gone: `upstream_cx_active` and the
    /// host's `cx_active` fall, its slot in the cluster's `max_connections` breaker frees up,
    /// and then its place in this worker's pool for the host (which grants a waiting session
    /// a connection if the breakers now allow one).
    fn cx_slot_released(&self) {
        if let Some(s) = self.cluster_stats() {
            s.upstream_cx_active.dec();
        }
        if let Some(h) = self.host_stats() {
            cluster::dec(&h.cx_active);
        }
        if let Some(r) = self.resources() {
            r.connections.dec();
        }
        self.with_breakers(tcp_conn_pool::connection_released);
    }

    /// Runs `f` with this worker's pool key and breakers for the host of the current (or
    /// last) upstream connection.
    fn with_breakers(&self, f: impl FnOnce(PoolKey, &dyn Breakers)) {
        if let Some(host) = &self.upstream_host {
            self.with_breakers_of(host, f);
        }
    }

    /// Runs `f` with this worker's pool key and breakers for `host`.
    fn with_breakers_of<R>(
        &self,
        host: &Host,
        f: impl FnOnce(PoolKey, &dyn Breakers) -> R,
    ) -> Option<R> {
        let (cm, id) = self.cluster.as_ref()?;
        let cluster = cm.cluster(*id);
        let breakers = HostBreakers {
            resources: cluster.info().resource_manager(ResourcePriority::Default),
            host,
            stats: cluster.stats(),
        };
        Some(f((*id, host.address()), &breakers))
    }

    /// The session left its pool while waiting there (its downstream closed): Envoy's
    /// `onPendingStreamCancel`.
    fn cancel_waiting(&mut self) {
        let Upstream::Waiting { host, wake_up, .. } =
            std::mem::replace(&mut self.upstream, Upstream::None)
        else {
            return;
        };
        self.with_breakers_of(&host, |key, breakers| {
            tcp_conn_pool::leave(key, &wake_up, breakers)
        });
        self.pending_ended(false);
        if let Some(s) = self.cluster_stats() {
            s.upstream_rq_cancelled.inc();
        }
    }

    /// The upstream connection (connecting or connected) is gone: `upstream_cx_length_ms`
    /// from its creation, as Envoy's TCP pool records it for every connection it created,
    /// failed connects included (tcp_proxy has no `upstream_rq_per_cx`: that one is HTTP's).
    fn record_cx_length(&mut self) {
        let (Some(opened), Some(s)) = (self.upstream_opened.take(), self.cluster_stats()) else {
            return;
        };
        s.upstream_cx_length_ms
            .record(opened.elapsed().as_millis() as u64);
    }

    /// The upstream connection (once connected) is gone: count it. The session is its one
    /// stream for its whole life, so Envoy 1.40's TCP pool counts every such close as one with
    /// an active request too (`upstream_cx_destroy_{local,remote}_with_active_rq`: checked
    /// with the upstream closing first, the client's FIN and the client's RST).
    fn upstream_closed(&mut self, local: bool) {
        self.record_cx_length();
        self.cx_slot_released();
        if let Some(s) = self.cluster_stats() {
            s.upstream_cx_destroy.inc();
            s.upstream_cx_destroy_with_active_rq.inc();
            if local {
                s.upstream_cx_destroy_local.inc();
                s.upstream_cx_destroy_local_with_active_rq.inc();
            } else {
                s.upstream_cx_destroy_remote.inc();
                s.upstream_cx_destroy_remote_with_active_rq.inc();
            }
        }
    }

    /// Envoy's `~Filter` access logging: one line per configured log for this connection.
    fn write_access_logs(&self) {
        if self.config.access_logs.is_empty() {
            return;
        }
        let log = &self.log;
        let info = StreamInfo {
            start_time: log.start_time,
            response_flags: log.flags,
            bytes_received: log.bytes_received,
            bytes_sent: log.bytes_sent,
            duration: log.started.map(|t| t.elapsed()),
            upstream_host: log.upstream_host,
            upstream_cluster: self
                .cluster
                .as_ref()
                .map(|(cm, id)| cm.cluster(*id).info().name.as_str()),
            upstream_local_address: log.upstream_local,
            downstream_remote_address: log.downstream_remote,
            downstream_local_address: log.downstream_local,
            connection_id: log.connection_id,
            ..StreamInfo::default()
        };
        for access_log in &self.config.access_logs {
            access_log.log(&info);
        }
    }

    fn reset_idle_timer(&self) {
        if let (Some(timer), Some(timeout)) = (&self.idle_timer, self.config.idle_timeout) {
            timer.enable(timeout);
        }
    }
}

impl ReadFilter for TcpProxy {
    fn on_new_connection(&mut self, cx: &mut FilterContext<'_>) -> FilterStatus {
        if let Some(s) = self.stats() {
            s.downstream_cx_total.inc();
        }
        let seed = cx.connection_id().global_id();
        self.log.start_time = Some(SystemTime::now());
        self.log.started = Some(Instant::now());
        self.log.connection_id = Some(seed);
        if let Some(c) = cx.connection() {
            self.log.downstream_remote = Some(c.remote_address());
            self.log.downstream_local = Some(c.local_address());
        }
        let name = self.config.pick_cluster(seed);
        self.cluster = cx
            .cluster_manager()
            .and_then(|cm| cm.cluster_id(name).map(|id| (cm, id)));
        cx.enable_half_close(true);
        // Nothing is read until the upstream is there (Envoy does the same); the kernel
        // buffers what the client sends meanwhile.
        cx.read_disable(true);
        self.connect(1, cx);
        FilterStatus::StopIteration
    }

    fn on_data(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus {
        let Upstream::Connected(upstream) = self.upstream else {
            // Keep the bytes until connected (reads are disabled meanwhile).
            return FilterStatus::StopIteration;
        };
        if let Some(s) = self.stats() {
            s.downstream_cx_rx_bytes_total.add(data.len() as u64);
        }
        self.log.bytes_received += data.len() as u64;
        if let Some(s) = self.cluster_stats() {
            s.upstream_cx_tx_bytes_total.add(data.len() as u64);
        }
        cx.write_to(upstream, data, end_stream);
        self.reset_idle_timer();
        FilterStatus::StopIteration
    }

    fn on_event(&mut self, event: ConnectionEvent, cx: &mut FilterContext<'_>) {
        let upstream = match self.upstream {
            Upstream::Connected(c) | Upstream::Connecting { conn: c, .. } => Some(c),
            _ => None,
        };
        match event {
            // The downstream cannot take more: stop reading the upstream.
            ConnectionEvent::AboveWriteBufferHighWatermark => {
                if let Some(u) = upstream {
                    cx.read_disable_connection(u, true);
                }
            }
            ConnectionEvent::BelowWriteBufferLowWatermark => {
                if let Some(u) = upstream {
                    cx.read_disable_connection(u, false);
                }
            }
            ConnectionEvent::RemoteClose | ConnectionEvent::LocalClose => {
                self.connect_timer = None;
                self.idle_timer = None;
                match self.upstream {
                    Upstream::Connected(u) => {
                        // Its close event (or our Drop) counts it as destroyed.
                        let pending = cx
                            .connection_of(u)
                            .is_some_and(|c| c.write_buffer_len() > 0);
                        if pending {
                            if let Some(s) = self.stats() {
                                s.upstream_flush_total.inc();
                            }
                        }
                        cx.close_connection(u, CloseType::FlushWrite);
                    }
                    Upstream::Connecting { conn, .. } => {
                        // Not a connect failure: the downstream went away first.
                        self.upstream = Upstream::None;
                        self.record_cx_length();
                        self.cx_slot_released();
                        // Envoy's onPendingStreamCancel.
                        self.pending_ended(false);
                        if let Some(s) = self.cluster_stats() {
                            s.upstream_cx_destroy.inc();
                            s.upstream_cx_destroy_local.inc();
                            s.upstream_rq_cancelled.inc();
                        }
                        cx.close_connection(conn, CloseType::NoFlush)
                    }
                    Upstream::Waiting { .. } => self.cancel_waiting(),
                    _ => {}
                }
            }
            ConnectionEvent::Connected => {}
        }
    }

    fn on_upstream_data(
        &mut self,
        upstream: ConnectionId,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) {
        if !matches!(self.upstream, Upstream::Connected(u) if u == upstream) {
            data.clear();
            return;
        }
        if let Some(s) = self.stats() {
            s.downstream_cx_tx_bytes_total.add(data.len() as u64);
        }
        self.log.bytes_sent += data.len() as u64;
        if let Some(s) = self.cluster_stats() {
            s.upstream_cx_rx_bytes_total.add(data.len() as u64);
        }
        cx.write(data, end_stream);
        self.reset_idle_timer();
    }

    fn on_upstream_event(
        &mut self,
        upstream: ConnectionId,
        event: ConnectionEvent,
        cx: &mut FilterContext<'_>,
    ) {
        match (&self.upstream, event) {
            (Upstream::Connecting { conn, .. }, ConnectionEvent::Connected)
                if *conn == upstream =>
            {
                // Connected: let the downstream's bytes flow.
                trace!(
                    "[{}] tcp_proxy: upstream {upstream} connected",
                    cx.connection_id()
                );
                self.connect_timer = None;
                self.upstream = Upstream::Connected(upstream);
                if let (Some(opened), Some(s)) = (self.upstream_opened, self.cluster_stats()) {
                    s.upstream_cx_connect_ms
                        .record(opened.elapsed().as_millis() as u64);
                }
                // Envoy's attachStreamToClient: the session is the connection's request.
                self.pending_ended(false);
                if let Some(s) = self.cluster_stats() {
                    s.upstream_rq_total.inc();
                }
                // Envoy's pool tries again for its pending streams when one connects.
                self.with_breakers(tcp_conn_pool::connection_connected);
                if let Some(h) = self.host_stats() {
                    cluster::inc(&h.rq_total);
                }
                self.log.upstream_local = cx.connection_of(upstream).map(|c| c.local_address());
                if self.config.idle_timeout.is_some() {
                    self.idle_timer = Some(cx.create_timer(IDLE_TIMER));
                    self.reset_idle_timer();
                }
                cx.read_disable(false);
            }
            (
                Upstream::Connecting { conn, attempt },
                ConnectionEvent::RemoteClose | ConnectionEvent::LocalClose,
            ) if *conn == upstream => {
                // A close before Connected is a connect failure.
                let attempt = *attempt;
                self.record_cx_length();
                debug!(
                    "[{}] tcp_proxy: upstream connect failed (attempt {attempt})",
                    cx.connection_id()
                );
                if let Some(s) = self.cluster_stats() {
                    s.upstream_cx_connect_fail.inc();
                    s.upstream_cx_destroy.inc();
                    if event == ConnectionEvent::LocalClose {
                        s.upstream_cx_destroy_local.inc();
                    } else {
                        s.upstream_cx_destroy_remote.inc();
                    }
                }
                // Envoy's purgePendingStreams: the waiting session is failed.
                self.pending_ended(true);
                self.log.flags.set(ResponseFlag::UpstreamConnectionFailure);
                if let Some(h) = self.host_stats() {
                    cluster::inc(&h.cx_connect_fail);
                }
                self.cx_slot_released();
                self.upstream = Upstream::None;
                self.retry_or_give_up(attempt, cx);
            }
            (
                Upstream::Connected(u),
                ConnectionEvent::RemoteClose | ConnectionEvent::LocalClose,
            ) if *u == upstream => {
                self.upstream_closed(event == ConnectionEvent::LocalClose);
                self.upstream = Upstream::Closed;
                self.idle_timer = None;
                cx.close(CloseType::FlushWrite);
            }
            // The upstream cannot take more: stop reading the downstream.
            (Upstream::Connected(u), ConnectionEvent::AboveWriteBufferHighWatermark)
                if *u == upstream =>
            {
                if let Some(s) = self.stats() {
                    s.downstream_flow_control_paused_reading_total.inc();
                }
                cx.read_disable(true);
            }
            (Upstream::Connected(u), ConnectionEvent::BelowWriteBufferLowWatermark)
                if *u == upstream =>
            {
                if let Some(s) = self.stats() {
                    s.downstream_flow_control_resumed_reading_total.inc();
                }
                cx.read_disable(false);
            }
            // Events of an upstream we already let go of (timed out, retried).
            _ => trace!(
                "[{}] tcp_proxy: ignoring {event:?} of {upstream}",
                cx.connection_id()
            ),
        }
    }

    fn on_timer(&mut self, token: u64, cx: &mut FilterContext<'_>) {
        match (token, &self.upstream) {
            (CONNECT_TIMER, Upstream::Connecting { conn, attempt }) => {
                let (conn, attempt) = (*conn, *attempt);
                self.record_cx_length();
                debug!("[{}] tcp_proxy: connect timeout", cx.connection_id());
                if let Some(s) = self.cluster_stats() {
                    s.upstream_cx_connect_timeout.inc();
                    s.upstream_cx_connect_fail.inc();
                    s.upstream_cx_destroy.inc();
                    s.upstream_cx_destroy_local.inc();
                }
                self.pending_ended(true);
                self.log.flags.set(ResponseFlag::UpstreamConnectionFailure);
                if let Some(h) = self.host_stats() {
                    cluster::inc(&h.cx_connect_fail);
                }
                self.cx_slot_released();
                // Forget it first: its close event must not count as a second failure.
                self.upstream = Upstream::None;
                cx.close_connection(conn, CloseType::NoFlush);
                self.retry_or_give_up(attempt, cx);
            }
            (WAKE_TIMER, Upstream::Waiting { .. }) => {
                // Granted a connection by the pool (a wake-up is only ever a grant).
                let Upstream::Waiting {
                    host,
                    attempt,
                    wake_up,
                } = std::mem::replace(&mut self.upstream, Upstream::None)
                else {
                    return;
                };
                let granted = self.cluster.as_ref().is_some_and(|(_, id)| {
                    tcp_conn_pool::take_grant((*id, host.address()), &wake_up)
                });
                if granted {
                    self.open(host, attempt, cx);
                } else {
                    self.upstream = Upstream::Waiting {
                        host,
                        attempt,
                        wake_up,
                    };
                }
            }
            (IDLE_TIMER, Upstream::Connected(upstream)) => {
                debug!("[{}] tcp_proxy: idle timeout", cx.connection_id());
                if let Some(s) = self.stats() {
                    s.idle_timeout.inc();
                }
                let upstream = *upstream;
                cx.close_connection(upstream, CloseType::NoFlush);
                cx.close(CloseType::NoFlush);
            }
            _ => {}
        }
    }
}

impl Drop for TcpProxy {
    /// The downstream connection was reaped while its upstream was still flushing: the upstream
    /// finishes on its own (the handler closes it after the flush); count it gone now, as its
    /// close event will find no owner. The access log lines are written here, as Envoy writes
    /// them in `~Filter`.
    fn drop(&mut self) {
        self.write_access_logs();
        // Reaped while waiting for a connection, without a close event (worker shutdown).
        self.cancel_waiting();
        if matches!(self.upstream, Upstream::Connected(_)) {
            self.upstream = Upstream::Closed;
            self.upstream_closed(true);
        }
    }
}

/// The registry entry.
pub struct TcpProxyConfigFactory;

impl NamedNetworkFilterConfigFactory for TcpProxyConfigFactory {
    fn name(&self) -> &'static str {
        "envoy.filters.network.tcp_proxy"
    }
    fn config_type(&self) -> &'static str {
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
    }
    fn create_filter_factory(
        &self,
        filter: &Filter,
        cx: &FactoryContext<'_>,
    ) -> config::Result<NetworkFilterFactoryCb> {
        let config = Arc::new(TcpProxyConfig::parse(&filter.config_node(), cx)?);
        trace!("tcp_proxy '{}' configured", config.stat_prefix);
        Ok(Arc::new(move |fm, worker| {
            fm.add_read_filter(Box::new(TcpProxy::new(config.clone(), worker)))
        }))
    }
}
