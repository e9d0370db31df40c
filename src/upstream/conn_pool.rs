//! Per-worker HTTP/1.1 connection pools (Envoy's `ConnPoolImplBase` + `Http1::ConnPoolImpl`):
//! one pool per (cluster, host), each keeping its idle upstream connections for reuse and the
//! streams waiting for one (the pending queue).
//!
//! Called by the router filter (`router::filter`) to get a connection for a stream, to give it
//! back when the response is done, and to wait for one; it owns no sockets: it decides, and
//! the caller (the connection manager, through its `ConnectionIo`) connects, writes, closes and
//! wakes. Keyed by the caller's connection handle type `Id`; a waiting stream is named by the
//! caller's waiter handle `W` (whom to wake).
//!
//! `max_connection_pools`: a host pool counts in the breaker's `connection_pools` while it has
//! a connection (ready, busy, connecting) or a waiting stream, as Envoy's per-host pool lives
//! from the stream that creates it until it is idle (`ConnPoolMap::getPool`, deleted on its idle
//! callback). A stream whose host has no counted pool and no room for one is refused
//! ([`ConnPools::pool_available`]; the router answers Envoy's "no healthy upstream").
//!
//! The circuit breakers are not counted here but in the cluster's shared
//! [`ResourceManager`](super::resource_manager::ResourceManager) (one per cluster, every worker
//! counts into it): the pool calls `connections.inc()`/`dec()` as connections open and close;
//! the router counts pending streams, active requests and retries.
//!
//! An HTTP/1.1 connection carries one stream at a time (no upstream pipelining). Client
//! states, as in Envoy's `ActiveClient`:
//! - `Connecting`: counted in [`HostPool::busy`], owned by the stream that asked for it until
//!   connected (that stream is pending meanwhile, as in Envoy);
//! - `Busy`: lent to a stream (the pool only counts it);
//! - `Ready`: idle in [`HostPool::ready`], most recently used last (reused first: warm);
//! - `Draining` / `Closed`: not in the pool (closed by the caller, forgotten here).
//!
//! The pending queue (Envoy's `pending_streams_`): a stream that finds no ready connection and
//! may not open one (the `max_connections` breaker is full) waits in its host pool's FIFO
//! queue. When a connection is released to the pool or a connection slot frees up, the oldest
//! waiting stream is *notified* ([`ConnPools::notify`] returns whom to wake); woken, it asks
//! the pool again (a ready connection, or a new one) and, if it lost the race, waits again in
//! the same place. A connect failure fails every waiting stream of the host
//! ([`ConnPools::fail_next`], Envoy's `purgePendingStreams`). A stream that goes away while
//! waiting leaves the queue ([`ConnPools::cancel`]), passing a notification it got on.
//!
//! The pooled-connection idle timeout (`common_http_protocol_options.idle_timeout`) closes an
//! idle connection on time, as Envoy's `CodecClient` idle timer does: one worker timer, armed
//! for the earliest expiry ([`ConnPools::take_idle_timer_arm`] after a release), sweeps the
//! expired connections out ([`ConnPools::sweep_idle`]).
//!
//! A pooled connection the upstream closed while idle leaves the pool at once: the pool owns
//! its idle connections (the worker delivers their close to it, [`ConnPools::remove_idle`]),
//! so the connection gives back its `max_connections` slot and a waiting stream is woken, as
//! Envoy's idle `ActiveClient` does on its connection's close event.
//!
//! A pooled connection the upstream closed while idle must never be handed out (Envoy's most
//! complained-about 503): the caller asks `usable(id)` (the connection is still open, and
//! neither the event loop nor, after a long idle period ([`IdleClient::peek_before_reuse`]), a
//! non-blocking peek finds EOF or stray bytes) before lending a popped connection, and discards
//! it otherwise.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::cluster::Host;
use super::fast_hash::FastHashMap;
use super::resource_manager::ResourceManager;
use crate::config::Thresholds;

/// What an upstream connection carries from stream to stream, pooled or lent (Envoy keeps it
/// in its `ActiveClient`): when it was opened and how many requests it has carried. Read for
/// `max_requests_per_connection` on each release, and once at its close for Envoy's
/// `upstream_cx_length_ms` (open to close, connect time included) and `upstream_rq_per_cx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLife {
    /// When the connection was created (its connect started).
    pub opened: Instant,
    /// Requests it has carried (attached streams, the current one included).
    pub requests: u32,
}

impl ClientLife {
    /// A connection opened at `now`, no request yet.
    pub fn new(now: Instant) -> ClientLife {
        ClientLife {
            opened: now,
            requests: 0,
        }
    }
}

/// An idle connection waiting in a pool.
#[derive(Debug, Clone, Copy)]
pub struct IdleClient<Id> {
    pub id: Id,
    /// Its age and the requests it has carried.
    pub life: ClientLife,
    /// When it went idle + [`PEEK_AFTER_IDLE`] (see [`IdleClient::peek_before_reuse`]), and +
    /// the pool's idle timeout, if any: computed once as it goes idle, so that taking it out
    /// again (or sweeping the pool) compares instants instead of subtracting them.
    peek_after: Instant,
    expires: Option<Instant>,
}

/// How long a pooled connection must have sat idle before its reuse is preceded by a peek at
/// its socket (see [`IdleClient::peek_before_reuse`]).
pub const PEEK_AFTER_IDLE: Duration = Duration::from_millis(100);

impl<Id> IdleClient<Id> {
    /// `id` goes idle at `since`, in a pool whose idle timeout is `idle_timeout`.
    pub fn new(id: Id, since: Instant, life: ClientLife, idle_timeout: Option<Duration>) -> Self {
        IdleClient {
            id,
            life,
            peek_after: since + PEEK_AFTER_IDLE,
            expires: idle_timeout.map(|t| since + t),
        }
    }

    /// Whether the pool's idle timeout has passed at `now` (idle for at least `idle_timeout`).
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// Whether reusing this connection at `now` (the event loop's time) should first peek at
    /// its socket (one `recv(MSG_PEEK)`) for a FIN the event loop has not reported yet.
    ///
    /// What the kernel reported up to this iteration's poll has been handled (an idle
    /// connection's EOF closes it and takes it out of the pool), and what the poll collected
    /// for a callback still to run is visible without a syscall (the caller checks the
    /// connection's pending readiness). Only a FIN that arrived since the poll is unseen: a
    /// window of one loop iteration, micro- to milliseconds. An upstream closes an idle
    /// connection when its keep-alive timeout expires, and those are counted in seconds (nginx
    /// 75 s, Apache httpd 5 s, Node.js 5 s, gunicorn 2 s), far above 100 ms; a connection idle
    /// for less is not the one its upstream is timing out now. So a busy pool (connections
    /// reused within microseconds) never pays the syscall, and a connection idle long enough
    /// to be near a timeout pays one, nothing next to the request it carries. A FIN that
    /// still slips through (an upstream hanging up for another reason, or right after the
    /// peek) is covered by the router, which replays once a request that died on a reused
    /// connection before any response byte.
    pub fn peek_before_reuse(&self, now: Instant) -> bool {
        now >= self.peek_after
    }
}

/// Names one waiting stream in its host pool's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingId(u64);

/// Why the pool failed a waiting stream (Envoy's `PoolFailureReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolFailure {
    /// A connection attempt to the host failed.
    ConnectionFailure,
    /// A connection attempt to the host timed out.
    Timeout,
}

/// Where a waiting stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingState {
    /// Nothing for it yet.
    Waiting,
    /// A connection was released or a slot freed: it was woken to ask again.
    Notified,
    /// The host's connection attempt failed: it was woken to fail (or retry).
    Failed(PoolFailure),
}

/// A stream in the pending queue (Envoy's `PendingStream`).
#[derive(Debug, Clone, Copy)]
pub struct PendingStream<W> {
    pub id: PendingId,
    pub waiter: W,
    pub state: PendingState,
}

/// An idle connection that closed while it sat in a pool, taken out by
/// [`ConnPools::remove_idle`] (the caller updates the stats and wakes a waiting stream).
#[derive(Debug)]
pub struct ClosedIdle {
    pub cluster: String,
    pub host: SocketAddr,
    /// The pool it was in (for [`ConnPools::discard_idle`] and [`ConnPools::notify`]).
    pub key: PoolKey,
    /// The host's shared object (its per-host stats), as last released to the pool.
    pub upstream_host: Option<Arc<Host>>,
    /// Its age and the requests it carried (for the close's histograms).
    pub life: ClientLife,
}

/// The pool of one host of one cluster.
#[derive(Debug)]
pub struct HostPool<Id, W> {
    /// The host (its per-host stats), set when a connection is first released to the pool.
    pub host: Option<Arc<Host>>,
    /// Every entry is Ready: open, idle, believed reusable. Most recently used last.
    pub ready: Vec<IdleClient<Id>>,
    /// Connections currently connecting or lent to a stream.
    pub busy: u32,
    /// Streams waiting for a connection, oldest first. Keeps its capacity.
    pub pending: VecDeque<PendingStream<W>>,
    /// Counted in the cluster's `max_connection_pools` (it has a connection or a waiting
    /// stream).
    counted: bool,
}

impl<Id, W> Default for HostPool<Id, W> {
    fn default() -> Self {
        HostPool {
            host: None,
            ready: Vec::new(),
            busy: 0,
            pending: VecDeque::new(),
            counted: false,
        }
    }
}

impl<Id, W> HostPool<Id, W> {
    /// No connection at all (ready, busy or connecting): Envoy then opens one even when the
    /// `max_connections` breaker is full, so the queue of this host cannot stall.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.busy == 0
    }

    /// Keeps the `max_connection_pools` count in step: the pool counts while it has a
    /// connection or a waiting stream.
    fn sync_counted(&mut self, rm: &ResourceManager) {
        let live = !self.is_empty() || !self.pending.is_empty();
        if live != self.counted {
            if live {
                rm.connection_pools.inc();
            } else {
                rm.connection_pools.dec();
            }
            self.counted = live;
        }
    }
}

/// What [`ConnPools::connect_or_wait`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectDecision {
    /// Open a new connection (counted as Busy and in the breaker from now on).
    /// `over_limit`: opened although `max_connections` is full (the host had none).
    Connect { over_limit: bool },
    /// `max_connections` is full: the stream must wait (it is not queued yet).
    Wait,
}

/// Settings of one cluster the pools apply.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub thresholds: Thresholds,
    /// Pooled-connection idle timeout (`common_http_protocol_options.idle_timeout`).
    pub idle_timeout: Option<Duration>,
    pub max_requests_per_connection: Option<u32>,
}

/// Names one host pool of a [`ConnPools`]: the cluster's and the host's position in it,
/// resolved once per attempt by [`ConnPools::key`] (two hash lookups) so that every later
/// pool call of the attempt (about six per request: availability, pop, lend, release,
/// notify, ...) is two vector indexings instead of two hash lookups each.
///
/// Invariant: a key is only valid for the `ConnPools` that issued it (each worker has one);
/// pools are never removed from a `ConnPools`, so a key stays valid for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolKey {
    cluster: u32,
    host: u32,
}

/// The pools of one cluster on this worker.
#[derive(Debug)]
pub struct ClusterPools<Id, W> {
    /// The cluster's name (what [`ConnPools::sweep_idle`] and [`ClosedIdle`] report).
    pub name: String,
    /// Position of each host's pool in `hosts`.
    host_index: FastHashMap<SocketAddr, u32>,
    /// The host pools, in the order they were first used (never removed).
    pub hosts: Vec<(SocketAddr, HostPool<Id, W>)>,
}

impl<Id, W> ClusterPools<Id, W> {
    fn new(name: &str) -> Self {
        ClusterPools {
            name: name.to_string(),
            host_index: FastHashMap::default(),
            hosts: Vec::new(),
        }
    }
}

/// All pools of one worker.
#[derive(Debug)]
pub struct ConnPools<Id, W = ()> {
    /// Position of each cluster's pools in `clusters`.
    cluster_index: FastHashMap<String, u32>,
    /// The cluster pools, in the order they were first used (never removed: see [`PoolKey`]).
    clusters: Vec<ClusterPools<Id, W>>,
    /// The key [`key`](Self::key) returned last (out of range while there is none).
    last_key: PoolKey,
    next_pending: u64,
    /// When the worker's idle timer fires next (`None`: not armed).
    idle_sweep_at: Option<Instant>,
    /// The idle timer must be (re)armed this long from now (taken by the caller).
    idle_timer_arm: Option<Duration>,
}

impl<Id, W> Default for ConnPools<Id, W> {
    fn default() -> Self {
        ConnPools {
            cluster_index: FastHashMap::default(),
            clusters: Vec::new(),
            last_key: PoolKey {
                cluster: u32::MAX,
                host: u32::MAX,
            },
            next_pending: 0,
            idle_sweep_at: None,
            idle_timer_arm: None,
        }
    }
}

impl<Id: Copy + PartialEq + std::fmt::Debug, W: Copy> ConnPools<Id, W> {
    /// The key of the pool of `host` in `cluster`, creating the (empty, uncounted) pool on
    /// first use. The router resolves it once per attempt and passes it to every other call.
    pub fn key(&mut self, cluster: &str, host: SocketAddr) -> PoolKey {
        // The usual attempt goes where the last one went (one cluster, one host, or a
        // round robin over few): compared by name and address, that costs no hashing.
        let last = self.last_key;
        if let Some(pools) = self.clusters.get(last.cluster as usize) {
            if pools.name == cluster {
                if pools
                    .hosts
                    .get(last.host as usize)
                    .is_some_and(|(a, _)| *a == host)
                {
                    return last;
                }
                return self.host_key(last.cluster, host);
            }
        }
        self.key_slow(cluster, host)
    }

    /// [`key`](Self::key) of another cluster than the last one's: found by name.
    #[inline(never)]
    fn key_slow(&mut self, cluster: &str, host: SocketAddr) -> PoolKey {
        let c = match self.cluster_index.get(cluster) {
            Some(&c) => c,
            None => {
                let c = index_u32(self.clusters.len());
                self.clusters.push(ClusterPools::new(cluster));
                self.cluster_index.insert(cluster.to_string(), c);
                c
            }
        };
        self.host_key(c, host)
    }

    /// The key of `host`'s pool in the cluster pools `c` (created on first use); remembered
    /// for the next [`key`](Self::key).
    fn host_key(&mut self, c: u32, host: SocketAddr) -> PoolKey {
        let pools = &mut self.clusters[c as usize];
        let h = match pools.host_index.get(&host) {
            Some(&h) => h,
            None => {
                let h = index_u32(pools.hosts.len());
                pools.hosts.push((host, HostPool::default()));
                pools.host_index.insert(host, h);
                h
            }
        };
        self.last_key = PoolKey {
            cluster: c,
            host: h,
        };
        self.last_key
    }

    /// The pool `key` names (issued by this `ConnPools`: see [`PoolKey`]).
    fn pool(&mut self, key: PoolKey) -> &mut HostPool<Id, W> {
        &mut self.clusters[key.cluster as usize].hosts[key.host as usize].1
    }

    fn pool_ref(&self, key: PoolKey) -> &HostPool<Id, W> {
        &self.clusters[key.cluster as usize].hosts[key.host as usize].1
    }

    /// The pool of `host` in `cluster`, if one was ever used (for tests and diagnostics).
    pub fn host_pool(&self, cluster: &str, host: SocketAddr) -> Option<&HostPool<Id, W>> {
        let pools = &self.clusters[*self.cluster_index.get(cluster)? as usize];
        Some(&pools.hosts[*pools.host_index.get(&host)? as usize].1)
    }

    /// Whether a stream may use the pool `key` (Envoy's `ConnPoolMap::getPool`): the pool
    /// is counted (it has a connection or a waiter), or `max_connection_pools` has room.
    pub fn pool_available(&self, key: PoolKey, rm: &ResourceManager) -> bool {
        self.pool_ref(key).counted || rm.connection_pools.can_create()
    }

    /// Whether the pool has an idle connection (it may still turn out dead when popped).
    pub fn has_ready(&self, key: PoolKey) -> bool {
        !self.pool_ref(key).ready.is_empty()
    }

    /// Takes the most recently used idle connection of the pool out (expired ones leave
    /// the breaker and are dropped into `expired` for the caller to close). The caller
    /// then either [`lend`](Self::lend)s it or [`discard_idle`](Self::discard_idle)s it.
    pub fn pop_idle(
        &mut self,
        key: PoolKey,
        rm: &ResourceManager,
        now: Instant,
        expired: &mut Vec<IdleClient<Id>>,
    ) -> Option<IdleClient<Id>> {
        let pool = self.pool(key);
        while let Some(client) = pool.ready.pop() {
            // Its expiry came from the pool's settings when it was pooled (`release`).
            if client.expired(now) {
                rm.connections.dec();
                expired.push(client);
                continue;
            }
            // Not synced: the caller lends or discards it at once.
            return Some(client);
        }
        pool.sync_counted(rm);
        None
    }

    /// A popped idle connection is lent to a stream (Ready -> Busy).
    pub fn lend(&mut self, key: PoolKey, rm: &ResourceManager) {
        let pool = self.pool(key);
        pool.busy += 1;
        pool.sync_counted(rm);
    }

    /// A popped (or [removed](Self::remove_idle)) idle connection turned out dead (closed by
    /// the upstream while idle): it leaves the breaker.
    pub fn discard_idle(&mut self, key: PoolKey, rm: &ResourceManager) {
        rm.connections.dec();
        self.pool(key).sync_counted(rm);
    }

    /// No usable idle connection: open a new one if the `max_connections` breaker and the
    /// host's `per_host_thresholds` limit allow (or this pool has no connection at all, as
    /// Envoy does), else the stream must wait. `host_cx_active` reads the host's open
    /// connections over all workers (only asked under a per-host limit). On
    /// [`ConnectDecision::Connect`] the connection is counted (Busy, breaker).
    pub fn connect_or_wait(
        &mut self,
        key: PoolKey,
        rm: &ResourceManager,
        host_cx_active: impl FnOnce() -> u64,
    ) -> ConnectDecision {
        let pool = self.pool(key);
        let allowed = rm.can_create_connection(host_cx_active);
        if !allowed && !pool.is_empty() {
            return ConnectDecision::Wait;
        }
        pool.busy += 1;
        pool.sync_counted(rm);
        rm.connections.inc();
        ConnectDecision::Connect {
            over_limit: !allowed,
        }
    }

    /// A connection of the pool `key` was just handed to a stream (Envoy's `onUpstreamReady`):
    /// while other streams still wait, Envoy ends it with `tryCreateNewConnections`, which
    /// asks the breakers for a connection for them. True if that ask is refused: the caller
    /// counts `upstream_cx_overflow` once, as Envoy does on every such hand-out (3 requests at
    /// `max_connections: 1` count 4 while the first connects: two refused `newStream`s, its
    /// connect, the first release).
    pub fn waiters_refused(
        &self,
        key: PoolKey,
        rm: &ResourceManager,
        host_cx_active: impl FnOnce() -> u64,
    ) -> bool {
        !self.pool_ref(key).pending.is_empty() && !rm.can_create_connection(host_cx_active)
    }

    /// The stream using a connection of the pool `key` (to `host`) is done with it (Envoy's
    /// `onStreamClosed` + `onUpstreamReady`). `reusable`: the exchange ended cleanly with
    /// keep-alive on both sides. Returns true if the connection went back to the pool, false
    /// if the caller must close it. Either way the caller then [`notify`](Self::notify)s a
    /// waiting stream.
    #[allow(clippy::too_many_arguments)]
    pub fn release(
        &mut self,
        key: PoolKey,
        host: &Arc<Host>,
        id: Id,
        life: ClientLife,
        reusable: bool,
        settings: &PoolSettings,
        rm: &ResourceManager,
        now: Instant,
    ) -> bool {
        let pool = self.pool(key);
        pool.busy = pool.busy.saturating_sub(1);
        if !pool.host.as_ref().is_some_and(|h| Arc::ptr_eq(h, host)) {
            pool.host = Some(host.clone());
        }
        let limit_reached = settings
            .max_requests_per_connection
            .is_some_and(|max| life.requests >= max);
        if !reusable || limit_reached {
            rm.connections.dec();
            pool.sync_counted(rm);
            return false;
        }
        let client = IdleClient::new(id, now, life, settings.idle_timeout);
        let expires = client.expires;
        pool.ready.push(client);
        if let (Some(timeout), Some(at)) = (settings.idle_timeout, expires) {
            if self.idle_sweep_at.is_none_or(|sweep| at < sweep) {
                self.idle_sweep_at = Some(at);
                self.idle_timer_arm = Some(timeout);
            }
        }
        true
    }

    /// Whether the worker's idle timer must be (re)armed, and for how long from now (after a
    /// [`release`](Self::release) that pooled a connection expiring before the timer fires).
    pub fn take_idle_timer_arm(&mut self) -> Option<Duration> {
        self.idle_timer_arm.take()
    }

    /// The worker's idle timer fired: returns every idle connection idle for its cluster's
    /// `idle_timeout` (its expiry was set from the pool settings when it was pooled), with its
    /// cluster, and how long until the next one expires. The caller closes them; each close
    /// then takes its connection out of the pool like any close of an idle connection
    /// ([`remove_idle`](Self::remove_idle)).
    pub fn sweep_idle(&mut self, now: Instant) -> (Vec<(String, Id)>, Option<Duration>) {
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for cluster in &self.clusters {
            for client in cluster.hosts.iter().flat_map(|(_, pool)| &pool.ready) {
                let Some(at) = client.expires else {
                    continue;
                };
                if at <= now {
                    expired.push((cluster.name.clone(), client.id));
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        self.idle_sweep_at = next;
        (expired, next.map(|at| at.saturating_duration_since(now)))
    }

    /// A connection a stream was using (or connecting) failed or is gone before being
    /// released (connect failure, reset, abandoned): forget it.
    pub fn on_stream_failed(&mut self, key: PoolKey, rm: &ResourceManager) {
        rm.connections.dec();
        let pool = self.pool(key);
        pool.busy = pool.busy.saturating_sub(1);
        pool.sync_counted(rm);
    }

    /// The idle connection `id` closed while in the pool (the upstream's FIN or RST): takes
    /// it out. `None` if it is not idle in any pool (already popped, or never pooled). The
    /// caller then gives back its `max_connections` slot ([`discard_idle`](Self::discard_idle)),
    /// updates the stats and [`notify`](Self::notify)s a waiting stream of any host.
    pub fn remove_idle(&mut self, id: Id) -> Option<ClosedIdle> {
        for (c, cluster) in self.clusters.iter_mut().enumerate() {
            for (h, (address, pool)) in cluster.hosts.iter_mut().enumerate() {
                if let Some(index) = pool.ready.iter().position(|c| c.id == id) {
                    let client = pool.ready.remove(index);
                    return Some(ClosedIdle {
                        life: client.life,
                        cluster: cluster.name.clone(),
                        host: *address,
                        key: PoolKey {
                            cluster: index_u32(c),
                            host: index_u32(h),
                        },
                        upstream_host: pool.host.clone(),
                    });
                }
            }
        }
        None
    }

    // === the pending queue ===

    /// Queues a stream that must wait for a connection of the pool (at the back: FIFO).
    pub fn enqueue(&mut self, key: PoolKey, waiter: W) -> PendingId {
        self.next_pending += 1;
        let id = PendingId(self.next_pending);
        self.pool(key).pending.push_back(PendingStream {
            id,
            waiter,
            state: PendingState::Waiting,
        });
        id
    }

    /// Where the waiting stream `id` stands (`None`: not queued).
    pub fn pending_state(&self, key: PoolKey, id: PendingId) -> Option<PendingState> {
        let pool = self.pool_ref(key);
        pool.pending.iter().find(|p| p.id == id).map(|p| p.state)
    }

    /// A notified stream found nothing after all (another stream took the connection): it
    /// waits again, keeping its place.
    pub fn wait_again(&mut self, key: PoolKey, id: PendingId) {
        if let Some(p) = self.pool(key).pending.iter_mut().find(|p| p.id == id) {
            p.state = PendingState::Waiting;
        }
    }

    /// Removes `id` from the queue (it got a connection, failed, or its stream went away).
    /// Returns its state; a `Notified` one's notification must be passed on by the caller
    /// ([`notify`](Self::notify)) when the stream does not use it.
    pub fn cancel(
        &mut self,
        key: PoolKey,
        id: PendingId,
        rm: &ResourceManager,
    ) -> Option<PendingState> {
        let pool = self.pool(key);
        let index = pool.pending.iter().position(|p| p.id == id)?;
        let state = pool.pending.remove(index).map(|p| p.state);
        pool.sync_counted(rm);
        state
    }

    /// A connection of the pool became ready or a connection slot freed up: the oldest
    /// waiting stream of the pool's host (or, with `any_host`, of any host of the cluster, in
    /// the order the hosts were first used: a freed connection slot serves every host) is
    /// marked notified; the caller wakes the returned waiter.
    pub fn notify(&mut self, key: PoolKey, any_host: bool) -> Option<W> {
        let cluster = &mut self.clusters[key.cluster as usize];
        if let Some(w) = notify_oldest(&mut cluster.hosts[key.host as usize].1) {
            return Some(w);
        }
        if !any_host {
            return None;
        }
        cluster
            .hosts
            .iter_mut()
            .find_map(|(_, pool)| notify_oldest(pool))
    }

    /// A connection attempt of the pool failed: marks the next not-yet-failed stream of the
    /// host failed and returns whom to wake (call until `None`: Envoy's
    /// `purgePendingStreams`).
    pub fn fail_next(&mut self, key: PoolKey, why: PoolFailure) -> Option<W> {
        let p = self
            .pool(key)
            .pending
            .iter_mut()
            .find(|p| !matches!(p.state, PendingState::Failed(_)))?;
        p.state = PendingState::Failed(why);
        Some(p.waiter)
    }

    /// Streams waiting on this worker for `cluster` (all hosts).
    pub fn pending_count(&self, cluster: &str) -> usize {
        self.cluster_index.get(cluster).map_or(0, |&c| {
            self.clusters[c as usize]
                .hosts
                .iter()
                .map(|(_, h)| h.pending.len())
                .sum()
        })
    }
}

/// A pool position as stored in a [`PoolKey`]. A worker has far fewer than 2^32 clusters or
/// hosts per cluster (each is a config entry or a resolved address).
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn notify_oldest<Id, W: Copy>(pool: &mut HostPool<Id, W>) -> Option<W> {
    let p = pool
        .pending
        .iter_mut()
        .find(|p| p.state == PendingState::Waiting)?;
    p.state = PendingState::Notified;
    Some(p.waiter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Store;
    use crate::upstream::resource_manager::ResourcePriority;

    fn settings() -> PoolSettings {
        PoolSettings {
            thresholds: thresholds(),
            idle_timeout: Some(Duration::from_secs(60)),
            max_requests_per_connection: Some(3),
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            max_connections: 2,
            max_pending_requests: 1024,
            max_requests: 3,
            max_retries: 3,
            retry_budget: None,
            ..Thresholds::default()
        }
    }

    fn rm() -> ResourceManager {
        ResourceManager::new(&thresholds(), &Store::new(), "c", ResourcePriority::Default)
    }

    fn host() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    fn up() -> Arc<Host> {
        Arc::new(Host::new(host(), "", 1))
    }

    fn other() -> SocketAddr {
        "127.0.0.1:8081".parse().unwrap()
    }

    type Pools = ConnPools<u32, char>;

    /// A connection opened at `at` that has carried `requests`.
    fn served(requests: u32, at: Instant) -> ClientLife {
        ClientLife {
            opened: at,
            requests,
        }
    }

    // === empty pool ===

    #[test]
    fn connects_until_max_connections_then_waits() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let rm = rm();
        let connect = ConnectDecision::Connect { over_limit: false };
        assert_eq!(p.connect_or_wait(h, &rm, || 0), connect);
        assert_eq!(p.connect_or_wait(h, &rm, || 0), connect);
        assert_eq!(p.connect_or_wait(h, &rm, || 0), ConnectDecision::Wait);
        assert_eq!(rm.connections.count(), 2);
    }

    #[test]
    fn a_host_without_connections_gets_one_over_the_limit() {
        let mut p = Pools::default();
        let (h, o) = (p.key("c", host()), p.key("c", other()));
        let rm = rm();
        p.connect_or_wait(h, &rm, || 0);
        p.connect_or_wait(h, &rm, || 0);
        assert_eq!(
            p.connect_or_wait(o, &rm, || 0),
            ConnectDecision::Connect { over_limit: true }
        );
        assert_eq!(p.connect_or_wait(o, &rm, || 0), ConnectDecision::Wait);
    }

    // === ready connections ===

    #[test]
    fn released_connection_is_reused_most_recent_first() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let (s, rm, now) = (settings(), rm(), Instant::now());
        p.connect_or_wait(h, &rm, || 0);
        p.connect_or_wait(h, &rm, || 0);
        assert!(p.release(h, &up(), 1, served(1, now), true, &s, &rm, now));
        assert!(p.release(h, &up(), 2, served(1, now), true, &s, &rm, now));
        let mut dead = vec![];
        let client = p.pop_idle(h, &rm, now, &mut dead).unwrap();
        assert_eq!((client.id, client.life.requests), (2, 1));
        assert_eq!(rm.connections.count(), 2);
    }

    #[test]
    fn idle_timeout_expires_connections_on_pop() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let (s, rm, now) = (settings(), rm(), Instant::now());
        p.connect_or_wait(h, &rm, || 0);
        p.release(h, &up(), 7, served(1, now), true, &s, &rm, now);
        let later = now + Duration::from_secs(61);
        let mut expired = vec![];
        assert!(p.pop_idle(h, &rm, later, &mut expired).is_none());
        assert_eq!(expired.iter().map(|c| c.id).collect::<Vec<_>>(), [7]);
        assert_eq!(rm.connections.count(), 0);
    }

    #[test]
    fn an_idle_connection_closed_by_the_upstream_leaves_the_pool() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let (s, rm, now) = (settings(), rm(), Instant::now());
        p.connect_or_wait(h, &rm, || 0);
        p.connect_or_wait(h, &rm, || 0);
        p.release(h, &up(), 1, served(1, now), true, &s, &rm, now);
        p.release(h, &up(), 2, served(1, now), true, &s, &rm, now);
        let closed = p.remove_idle(1).expect("idle");
        assert_eq!((closed.cluster.as_str(), closed.host), ("c", host()));
        assert_eq!(
            closed.life,
            served(1, now),
            "its age and requests, for the histograms"
        );
        assert_eq!(closed.key, h);
        assert!(closed.upstream_host.is_some());
        p.discard_idle(h, &rm);
        assert_eq!(rm.connections.count(), 1);
        assert!(p.remove_idle(1).is_none(), "only once");
        let mut dead = vec![];
        let left = p.pop_idle(h, &rm, now, &mut dead).unwrap();
        assert_eq!(left.id, 2);
    }

    #[test]
    fn the_idle_timer_is_armed_for_the_earliest_expiry_and_sweeps_expired_connections() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let (s, rm, now) = (settings(), rm(), Instant::now());
        let timeout = s.idle_timeout.unwrap();
        p.connect_or_wait(h, &rm, || 0);
        p.connect_or_wait(h, &rm, || 0);
        p.release(h, &up(), 1, served(1, now), true, &s, &rm, now);
        assert_eq!(p.take_idle_timer_arm(), Some(timeout));
        // A later release expires later: the armed timer serves it.
        let later = now + Duration::from_secs(10);
        p.release(h, &up(), 2, served(1, later), true, &s, &rm, later);
        assert_eq!(p.take_idle_timer_arm(), None);
        let (expired, next) = p.sweep_idle(now + timeout);
        assert_eq!(expired, [("c".to_string(), 1)]);
        assert_eq!(next, Some(Duration::from_secs(10)));
        // Its close takes it out of the pool.
        p.remove_idle(1).unwrap();
        p.discard_idle(h, &rm);
        assert_eq!(rm.connections.count(), 1);
    }

    #[test]
    fn a_host_pool_counts_in_max_connection_pools_while_it_has_connections_or_waiters() {
        let thresholds = Thresholds {
            max_connection_pools: Some(1),
            ..thresholds()
        };
        let rm = ResourceManager::new(&thresholds, &Store::new(), "c", ResourcePriority::Default);
        let (s, now) = (settings(), Instant::now());
        let mut p = Pools::default();
        let (h, o) = (p.key("c", host()), p.key("c", other()));
        assert!(p.pool_available(h, &rm));
        p.connect_or_wait(h, &rm, || 0);
        assert_eq!(rm.connection_pools.count(), 1);
        assert!(p.pool_available(h, &rm), "its own pool exists");
        assert!(!p.pool_available(o, &rm), "no room for another host's");
        // Idle connections keep the pool; it goes when the last connection does.
        p.release(h, &up(), 1, served(1, now), true, &s, &rm, now);
        assert_eq!(rm.connection_pools.count(), 1);
        p.remove_idle(1).unwrap();
        p.discard_idle(h, &rm);
        assert_eq!(rm.connection_pools.count(), 0);
        assert!(p.pool_available(o, &rm));
        // A connect failure leaves the pool only when no stream waits for it either.
        p.connect_or_wait(h, &rm, || 0);
        let w = p.enqueue(h, 'w');
        p.on_stream_failed(h, &rm);
        assert_eq!(rm.connection_pools.count(), 1);
        p.cancel(h, w, &rm);
        assert_eq!(rm.connection_pools.count(), 0);
    }

    // === busy connections ===

    #[test]
    fn max_requests_per_connection_closes_on_release() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let (s, rm, now) = (settings(), rm(), Instant::now());
        p.connect_or_wait(h, &rm, || 0);
        assert!(!p.release(h, &up(), 7, served(3, now), true, &s, &rm, now));
        assert_eq!(rm.connections.count(), 0);
        assert!(p.host_pool("c", host()).expect("pool").is_empty());
    }

    // === pending streams ===

    #[test]
    fn waiting_streams_are_notified_oldest_first() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let a = p.enqueue(h, 'a');
        let b = p.enqueue(h, 'b');
        assert_eq!(p.notify(h, false), Some('a'));
        assert_eq!(p.pending_state(h, a), Some(PendingState::Notified));
        assert_eq!(p.notify(h, false), Some('b'));
        assert_eq!(p.notify(h, false), None);
        // 'a' lost the race: it waits again in its place and is next.
        p.wait_again(h, a);
        assert_eq!(p.cancel(h, b, &rm()), Some(PendingState::Notified));
        assert_eq!(p.notify(h, false), Some('a'));
        assert_eq!(p.pending_count("c"), 1);
    }

    #[test]
    fn a_freed_slot_serves_other_hosts() {
        let mut p = Pools::default();
        let (h, o) = (p.key("c", host()), p.key("c", other()));
        p.enqueue(o, 'x');
        assert_eq!(p.notify(h, false), None);
        assert_eq!(p.notify(h, true), Some('x'));
    }

    #[test]
    fn connect_failure_fails_every_waiting_stream() {
        let mut p = Pools::default();
        let h = p.key("c", host());
        let a = p.enqueue(h, 'a');
        p.enqueue(h, 'b');
        p.notify(h, false);
        let mut woken = vec![];
        while let Some(w) = p.fail_next(h, PoolFailure::ConnectionFailure) {
            woken.push(w);
        }
        assert_eq!(woken, ['a', 'b']);
        assert_eq!(
            p.cancel(h, a, &rm()),
            Some(PendingState::Failed(PoolFailure::ConnectionFailure))
        );
        assert_eq!(p.cancel(h, a, &rm()), None);
    }

    #[test]
    fn only_a_connection_idle_past_the_threshold_is_peeked_before_reuse() {
        let since = Instant::now();
        let client = IdleClient::new(1u32, since, served(1, since), None);
        assert!(
            !client.peek_before_reuse(since),
            "reused in the same iteration"
        );
        assert!(!client.peek_before_reuse(since + PEEK_AFTER_IDLE / 2));
        assert!(client.peek_before_reuse(since + PEEK_AFTER_IDLE));
        // A clock that went backwards (cached times of two workers never mix, but be safe).
        assert!(!client.peek_before_reuse(since - Duration::from_millis(1)));
    }
}
