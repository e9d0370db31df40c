//! Per-worker HTTP/1.1 connection pools (Envoy's `ConnPoolImplBase` + `Http1::ConnPoolImpl`):
//! one pool per (cluster, host), each keeping its idle upstream connections for reuse.
//!
//! Called by the router filter (`router::upstream_request`) to get a connection for a stream
//! (`new_stream`) and to give it back when the response is done (`release`); it owns no
//! sockets: it decides, and the caller (the connection manager, through its `ConnectionIo`)
//! connects, writes and closes. Keyed by the caller's connection handle type `Id`.
//!
//! An HTTP/1.1 connection carries one stream at a time (no upstream pipelining). Client
//! states, as in Envoy's `ActiveClient`:
//! - `Connecting`: counted here, owned by the stream that asked for it until connected;
//! - `Busy`: lent to a stream (the pool only counts it);
//! - `Ready`: idle in [`HostPool::ready`], most recently used last (reused first: warm);
//! - `Draining` / `Closed`: not in the pool (closed by the caller, forgotten here).
//!
//! A pooled connection the upstream closed while idle must never be handed out (Envoy's most
//! complained-about 503): `new_stream` asks the caller's `usable(id)` (the connection is still
//! open and a non-blocking peek finds neither EOF nor stray bytes) before lending it, and drops
//! it otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Thresholds;

/// An idle connection waiting in a pool.
#[derive(Debug, Clone, Copy)]
pub struct IdleClient<Id> {
    pub id: Id,
    /// When it went idle (for the pool's idle timeout).
    pub since: Instant,
    /// Requests it has carried (for `max_requests_per_connection`).
    pub requests: u32,
}

/// The pool of one host of one cluster.
#[derive(Debug)]
pub struct HostPool<Id> {
    /// Every entry is Ready: open, idle, believed reusable. Most recently used last.
    pub ready: Vec<IdleClient<Id>>,
    /// Connections currently connecting or lent to a stream.
    pub busy: u32,
}

impl<Id> Default for HostPool<Id> {
    fn default() -> Self {
        HostPool {
            ready: Vec::new(),
            busy: 0,
        }
    }
}

/// What [`ConnPools::new_stream`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolDecision<Id> {
    /// Use this idle connection (now Busy); it has carried `requests` requests before.
    Reuse { id: Id, requests: u32 },
    /// Open a new connection (counted as Busy from now on).
    Connect,
    /// A circuit breaker is full (`x-envoy-overloaded`, UO); the stream must fail.
    Overflow(OverflowKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowKind {
    /// `max_requests` active requests on the cluster.
    Requests,
    /// `max_connections` reached and no idle connection (nuncio does not queue yet: Envoy
    /// would queue up to `max_pending_requests`; counted as `upstream_rq_pending_overflow`).
    Connections,
}

/// Settings of one cluster the pools apply.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub thresholds: Thresholds,
    /// Pooled-connection idle timeout (`common_http_protocol_options.idle_timeout`).
    pub idle_timeout: Option<Duration>,
    pub max_requests_per_connection: Option<u32>,
}

/// The per-cluster accounting the circuit breakers read.
#[derive(Debug)]
pub struct ClusterPools<Id> {
    pub hosts: HashMap<SocketAddr, HostPool<Id>>,
    /// Open connections (ready + busy) across the cluster's hosts on this worker.
    pub connections: u32,
    /// Requests in flight on this worker.
    pub active_requests: u32,
    /// Retries in flight on this worker.
    pub active_retries: u32,
}

impl<Id> Default for ClusterPools<Id> {
    fn default() -> Self {
        ClusterPools {
            hosts: HashMap::new(),
            connections: 0,
            active_requests: 0,
            active_retries: 0,
        }
    }
}

/// All pools of one worker.
#[derive(Debug)]
pub struct ConnPools<Id> {
    pub clusters: HashMap<String, ClusterPools<Id>>,
}

impl<Id> Default for ConnPools<Id> {
    fn default() -> Self {
        ConnPools {
            clusters: HashMap::new(),
        }
    }
}

impl<Id: Copy + PartialEq + std::fmt::Debug> ConnPools<Id> {
    pub fn cluster(&mut self, cluster: &str) -> &mut ClusterPools<Id> {
        if !self.clusters.contains_key(cluster) {
            self.clusters
                .insert(cluster.to_string(), ClusterPools::default());
        }
        // Invariant: inserted just above when absent.
        self.clusters
            .get_mut(cluster)
            .expect("cluster pools present")
    }

    /// Finds a connection for a new stream to `host` (Envoy's `newStream`): the composition of
    /// [`check_requests`](Self::check_requests), [`pop_idle`](Self::pop_idle) (each candidate
    /// judged by `usable(id)`; unusable ones are returned in `dead` for the caller to close)
    /// and [`connect_new`](Self::connect_new). Callers whose `usable` needs their own I/O call
    /// the three steps themselves.
    pub fn new_stream(
        &mut self,
        cluster: &str,
        host: SocketAddr,
        settings: &PoolSettings,
        now: Instant,
        mut usable: impl FnMut(Id) -> bool,
        dead: &mut Vec<Id>,
    ) -> PoolDecision<Id> {
        if let Err(kind) = self.check_requests(cluster, settings) {
            return PoolDecision::Overflow(kind);
        }
        while let Some(client) = self.pop_idle(cluster, host, settings, now, dead) {
            if usable(client.id) {
                self.lend(cluster, host);
                return PoolDecision::Reuse {
                    id: client.id,
                    requests: client.requests,
                };
            }
            self.discard_idle(cluster);
            dead.push(client.id);
        }
        match self.connect_new(cluster, host, settings) {
            Ok(()) => PoolDecision::Connect,
            Err(kind) => PoolDecision::Overflow(kind),
        }
    }

    /// The `max_requests` circuit breaker.
    pub fn check_requests(
        &mut self,
        cluster: &str,
        settings: &PoolSettings,
    ) -> Result<(), OverflowKind> {
        if self.cluster(cluster).active_requests >= settings.thresholds.max_requests {
            return Err(OverflowKind::Requests);
        }
        Ok(())
    }

    /// Takes the most recently used idle connection to `host` out of the pool (expired ones
    /// are dropped into `expired` for the caller to close). The caller then either
    /// [`lend`](Self::lend)s it or [`discard_idle`](Self::discard_idle)s it.
    pub fn pop_idle(
        &mut self,
        cluster: &str,
        host: SocketAddr,
        settings: &PoolSettings,
        now: Instant,
        expired: &mut Vec<Id>,
    ) -> Option<IdleClient<Id>> {
        let cp = self.cluster(cluster);
        let pool = cp.hosts.get_mut(&host)?;
        while let Some(client) = pool.ready.pop() {
            let too_old = settings
                .idle_timeout
                .is_some_and(|t| now.saturating_duration_since(client.since) >= t);
            if too_old {
                cp.connections = cp.connections.saturating_sub(1);
                expired.push(client.id);
                continue;
            }
            return Some(client);
        }
        None
    }

    /// A popped idle connection is lent to a stream (Ready -> Busy).
    pub fn lend(&mut self, cluster: &str, host: SocketAddr) {
        let cp = self.cluster(cluster);
        cp.active_requests += 1;
        cp.hosts.entry(host).or_default().busy += 1;
    }

    /// A popped idle connection turned out dead (closed by the upstream while idle).
    pub fn discard_idle(&mut self, cluster: &str) {
        let cp = self.cluster(cluster);
        cp.connections = cp.connections.saturating_sub(1);
    }

    /// Accounts a new connection for a stream, or refuses it (`max_connections`).
    pub fn connect_new(
        &mut self,
        cluster: &str,
        host: SocketAddr,
        settings: &PoolSettings,
    ) -> Result<(), OverflowKind> {
        let cp = self.cluster(cluster);
        if cp.connections >= settings.thresholds.max_connections {
            return Err(OverflowKind::Connections);
        }
        cp.connections += 1;
        cp.active_requests += 1;
        cp.hosts.entry(host).or_default().busy += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    /// The stream using a connection is done with it (Envoy's `onStreamClosed` +
    /// `onUpstreamReady`). `reusable`: the exchange ended cleanly with keep-alive on both sides.
    /// Returns true if the connection went back to the pool, false if the caller must close it.
    pub fn release(
        &mut self,
        cluster: &str,
        host: SocketAddr,
        id: Id,
        requests: u32,
        reusable: bool,
        settings: &PoolSettings,
        now: Instant,
    ) -> bool {
        let cp = self.cluster(cluster);
        cp.active_requests = cp.active_requests.saturating_sub(1);
        let pool = cp.hosts.entry(host).or_default();
        pool.busy = pool.busy.saturating_sub(1);
        let limit_reached = settings
            .max_requests_per_connection
            .is_some_and(|max| requests >= max);
        if !reusable || limit_reached {
            cp.connections = cp.connections.saturating_sub(1);
            return false;
        }
        pool.ready.push(IdleClient {
            id,
            since: now,
            requests,
        });
        true
    }

    /// A connection the stream was using failed or is gone before being released (connect
    /// failure, reset): forget it.
    pub fn on_stream_failed(&mut self, cluster: &str, host: SocketAddr) {
        let cp = self.cluster(cluster);
        cp.active_requests = cp.active_requests.saturating_sub(1);
        cp.connections = cp.connections.saturating_sub(1);
        if let Some(pool) = cp.hosts.get_mut(&host) {
            pool.busy = pool.busy.saturating_sub(1);
        }
    }

    /// An idle connection closed (the upstream hung up while it sat in the pool).
    pub fn on_idle_closed(&mut self, cluster: &str, host: SocketAddr, id: Id) -> bool {
        let cp = self.cluster(cluster);
        let Some(pool) = cp.hosts.get_mut(&host) else {
            return false;
        };
        let before = pool.ready.len();
        pool.ready.retain(|c| c.id != id);
        let removed = pool.ready.len() != before;
        if removed {
            cp.connections = cp.connections.saturating_sub(1);
        }
        removed
    }

    /// Idle connections past the idle timeout, removed from their pools for the caller to
    /// close.
    pub fn expire_idle(&mut self, cluster: &str, settings: &PoolSettings, now: Instant) -> Vec<Id> {
        let mut expired = Vec::new();
        let Some(timeout) = settings.idle_timeout else {
            return expired;
        };
        let cp = self.cluster(cluster);
        for pool in cp.hosts.values_mut() {
            pool.ready.retain(|c| {
                let keep = now.saturating_duration_since(c.since) < timeout;
                if !keep {
                    expired.push(c.id);
                }
                keep
            });
        }
        cp.connections = cp.connections.saturating_sub(expired.len() as u32);
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PoolSettings {
        PoolSettings {
            thresholds: Thresholds {
                max_connections: 2,
                max_pending_requests: 1024,
                max_requests: 3,
                max_retries: 3,
            },
            idle_timeout: Some(Duration::from_secs(60)),
            max_requests_per_connection: Some(3),
        }
    }

    fn host() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    // === empty pool ===

    #[test]
    fn empty_pool_connects_until_max_connections() {
        let mut p: ConnPools<u32> = ConnPools::default();
        let now = Instant::now();
        let mut dead = vec![];
        let s = settings();
        assert_eq!(
            p.new_stream("c", host(), &s, now, |_| true, &mut dead),
            PoolDecision::Connect
        );
        assert_eq!(
            p.new_stream("c", host(), &s, now, |_| true, &mut dead),
            PoolDecision::Connect
        );
        assert_eq!(
            p.new_stream("c", host(), &s, now, |_| true, &mut dead),
            PoolDecision::Overflow(OverflowKind::Connections)
        );
    }

    // === ready connections ===

    #[test]
    fn released_connection_is_reused_most_recent_first() {
        let mut p: ConnPools<u32> = ConnPools::default();
        let now = Instant::now();
        let s = settings();
        let mut dead = vec![];
        p.new_stream("c", host(), &s, now, |_| true, &mut dead);
        p.new_stream("c", host(), &s, now, |_| true, &mut dead);
        assert!(p.release("c", host(), 1, 1, true, &s, now));
        assert!(p.release("c", host(), 2, 1, true, &s, now));
        assert_eq!(
            p.new_stream("c", host(), &s, now, |_| true, &mut dead),
            PoolDecision::Reuse { id: 2, requests: 1 }
        );
    }

    #[test]
    fn idle_connection_closed_by_upstream_is_never_handed_out() {
        let mut p: ConnPools<u32> = ConnPools::default();
        let now = Instant::now();
        let s = settings();
        let mut dead = vec![];
        p.new_stream("c", host(), &s, now, |_| true, &mut dead);
        p.release("c", host(), 7, 1, true, &s, now);
        assert_eq!(
            p.new_stream("c", host(), &s, now, |id| id != 7, &mut dead),
            PoolDecision::Connect
        );
        assert_eq!(dead, [7]);
        assert_eq!(p.cluster("c").connections, 1);
    }

    #[test]
    fn idle_timeout_expires_connections() {
        let mut p: ConnPools<u32> = ConnPools::default();
        let now = Instant::now();
        let s = settings();
        let mut dead = vec![];
        p.new_stream("c", host(), &s, now, |_| true, &mut dead);
        p.release("c", host(), 7, 1, true, &s, now);
        let later = now + Duration::from_secs(61);
        assert_eq!(p.expire_idle("c", &s, later), [7]);
        assert_eq!(p.cluster("c").connections, 0);
    }

    // === busy connections ===

    #[test]
    fn max_requests_per_connection_closes_on_release() {
        let mut p: ConnPools<u32> = ConnPools::default();
        let now = Instant::now();
        let s = settings();
        let mut dead = vec![];
        p.new_stream("c", host(), &s, now, |_| true, &mut dead);
        assert!(!p.release("c", host(), 7, 3, true, &s, now));
        assert_eq!(p.cluster("c").connections, 0);
    }

    #[test]
    fn max_requests_overflows() {
        let mut p: ConnPools<u32> = ConnPools::default();
        let now = Instant::now();
        let mut s = settings();
        s.thresholds.max_connections = 10;
        let mut dead = vec![];
        for _ in 0..3 {
            p.new_stream("c", host(), &s, now, |_| true, &mut dead);
        }
        assert_eq!(
            p.new_stream("c", host(), &s, now, |_| true, &mut dead),
            PoolDecision::Overflow(OverflowKind::Requests)
        );
        p.on_stream_failed("c", host());
        assert_eq!(
            p.new_stream("c", host(), &s, now, |_| true, &mut dead),
            PoolDecision::Connect
        );
    }
}
