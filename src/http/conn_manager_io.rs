//! What the HTTP connection manager needs from the world around it, as one trait
//! ([`ConnectionIo`]), so that `ConnectionManager` is sans-IO: the network read filter
//! (`http::conn_manager_filter`) implements it over the worker's `FilterContext` (sockets,
//! timers, pools, clusters); unit tests implement it in memory with a simulated clock.
//!
//! Also the small views of the route table and of a cluster the router filter consumes
//! ([`RouteTable`], [`ClusterView`]), so the router filter does not depend on how those are
//! stored.

use std::fmt::Debug;
use std::hash::Hash;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::router::{FormatterContext, RetryPolicy, RetryState};
use crate::upstream::conn_pool::{ConnPools, PoolSettings};

use super::codec::{RequestHead, ResponseHead};

/// How to close a connection (Envoy's `ConnectionCloseType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseHow {
    /// Write what is buffered, then close.
    FlushWrite,
    /// Close now, dropping buffered data.
    NoFlush,
    /// Flush, then give the peer the delayed-close timeout to close first.
    FlushWriteAndDelay,
}

/// The connection manager's timers; at most one of each is armed at a time (HTTP/1 has one
/// stream at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HcmTimer {
    /// `common_http_protocol_options.idle_timeout`: no stream for this long closes the
    /// connection.
    ConnectionIdle,
    /// `stream_idle_timeout`: no activity on the stream.
    StreamIdle,
    /// `request_timeout`: the whole request must arrive within it.
    Request,
    /// `request_headers_timeout`: the request head must arrive within it.
    RequestHeaders,
    /// `drain_timeout` after a drain started.
    Drain,
    /// The route's `timeout` (Envoy's global timeout), from the end of the request.
    RouteTimeout,
    /// The retry policy's `per_try_timeout`.
    PerTryTimeout,
    /// The backoff before the next retry.
    RetryBackoff,
    /// The cluster's `connect_timeout`.
    ConnectTimeout,
    /// The retry policy's `per_try_idle_timeout`: re-armed by every response byte.
    PerTryIdleTimeout,
}

impl HcmTimer {
    pub const ALL: [HcmTimer; 10] = [
        HcmTimer::ConnectionIdle,
        HcmTimer::StreamIdle,
        HcmTimer::Request,
        HcmTimer::RequestHeaders,
        HcmTimer::Drain,
        HcmTimer::RouteTimeout,
        HcmTimer::PerTryTimeout,
        HcmTimer::RetryBackoff,
        HcmTimer::ConnectTimeout,
        HcmTimer::PerTryIdleTimeout,
    ];

    /// The timers that run only with a stream (all but the connection's idle, request
    /// headers and drain timers).
    pub const STREAM: [HcmTimer; 7] = [
        HcmTimer::StreamIdle,
        HcmTimer::Request,
        HcmTimer::RouteTimeout,
        HcmTimer::PerTryTimeout,
        HcmTimer::RetryBackoff,
        HcmTimer::ConnectTimeout,
        HcmTimer::PerTryIdleTimeout,
    ];

    pub fn token(self) -> u64 {
        self as u64
    }

    pub fn from_token(token: u64) -> Option<HcmTimer> {
        HcmTimer::ALL.get(token as usize).copied()
    }
}

/// One cluster as the router sees it on this worker.
pub trait ClusterView {
    fn name(&self) -> &str;
    /// The load balancer's pick (Envoy's `chooseHost`); `None`: no healthy host. The router
    /// counts the host's per-host stats (`cx_*`, `rq_*`, shown by `/clusters`) on it.
    fn choose_host(&self) -> Option<std::sync::Arc<crate::upstream::cluster::Host>>;
    fn connect_timeout(&self) -> Duration;
    fn pool_settings(&self) -> PoolSettings;
    /// The cluster's circuit breakers (DEFAULT priority), shared by every worker.
    fn resource_manager(&self) -> &crate::upstream::resource_manager::ResourceManager;
    /// `per_connection_buffer_limit_bytes` for upstream connections.
    fn buffer_limit(&self) -> u32;
    /// `cluster.<name>.*` stats.
    fn stats(&self) -> &crate::router::upstream_stats::ClusterStats;
}

/// The route table as the router filter uses it.
pub trait RouteTable: Send + Sync {
    /// Routes `head`, applying the matched route's request header edits and rewrites to it
    /// (their `%FORMATTER%` values read `ctx`). A forwarding decision is written into
    /// `forward`, where the router filter keeps it for the stream (a few hundred bytes: built
    /// in place, not moved), and returned borrowed from there.
    fn route<'a>(
        &self,
        head: &mut RequestHead,
        random: u64,
        ctx: &FormatterContext,
        forward: &'a mut Option<ForwardDecision>,
    ) -> RouteDecision<'a>;
    /// The matched route's `name` ("" when unnamed), for logs.
    fn route_name(&self, route_id: usize) -> &str {
        let _ = route_id;
        ""
    }
    /// Applies the matched route's response header edits (same `route_id` as returned).
    fn finalize_response(
        &self,
        route_id: usize,
        response: &mut ResponseHead,
        request: &RequestHead,
        ctx: &FormatterContext,
    );
}

/// What to do with a request.
#[derive(Debug)]
pub enum RouteDecision<'a> {
    /// 404, empty body, `NR`.
    NoRoute,
    /// A `direct_response`.
    DirectResponse { status: u16, body: String },
    /// A `redirect`: `location` header, empty body.
    Redirect { status: u16, location: String },
    /// Proxy to a cluster (the decision as stored in the router filter).
    Forward(&'a mut ForwardDecision),
}

/// The parts of a forwarding route the router filter needs.
#[derive(Debug)]
pub struct ForwardDecision {
    /// The cluster's name, shared with the route table.
    pub cluster: std::sync::Arc<str>,
    /// Identifies the route for `finalize_response`.
    pub route_id: usize,
    /// The route edits response headers (else `finalize_response` is not called).
    pub edits_response_headers: bool,
    /// The route timeout (default 15 s); `None` disables it.
    pub timeout: Option<Duration>,
    /// The route's `idle_timeout`: replaces the HCM's `stream_idle_timeout` for this stream
    /// (zero disables it); `None`: the HCM's applies.
    pub idle_timeout: Option<Duration>,
    /// The request's retry state (route policy + `x-envoy-*` retry headers, already removed
    /// from the request); `None`: no retry can happen.
    pub retry: Option<RetryState<Arc<RetryPolicy>>>,
    /// `per_try_timeout` (policy or `x-envoy-upstream-rq-per-try-timeout-ms`).
    pub per_try_timeout: Option<Duration>,
    /// The retry policy's `per_try_idle_timeout` (no header overrides it).
    pub per_try_idle_timeout: Option<Duration>,
    /// The router's `suppress_envoy_headers`: no `x-envoy-expected-rq-timeout-ms` on retries,
    /// no `x-envoy-upstream-service-time`, no `x-envoy-overloaded`.
    pub suppress_envoy_headers: bool,
}

/// The side effects the connection manager asks of its environment.
pub trait ConnectionIo {
    /// Handle of an upstream connection.
    type Upstream: Copy + Eq + Hash + Debug;
    /// Handle of a connection manager waiting in a pool's pending queue.
    type Waiter: Copy + Debug;

    /// The time of the current event (the dispatcher's cached time; simulated in tests).
    fn now(&self) -> Instant;
    /// The wall-clock time of the current event (the dispatcher's, read at most once per loop
    /// iteration): stream start times for access logs and `%START_TIME%`.
    fn wall_now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
    /// The downstream connection's id (for logs: `[C12]`).
    fn connection_id(&self) -> u64;
    fn remote_address(&self) -> Option<SocketAddr>;
    /// The listener-side address of the downstream connection.
    fn local_address(&self) -> Option<SocketAddr> {
        None
    }
    /// Whether this response should close its connection (Envoy's `drainClose()`, asked once
    /// per response): the server drains and its drain manager says so (always under
    /// `--drain-strategy immediate`, more and more likely over the drain time under
    /// `gradual`), or the admin's `/healthcheck/fail` is set.
    fn drain_close(&mut self) -> bool;
    /// The downstream connection's `per_connection_buffer_limit_bytes` (from its listener;
    /// Envoy's `connection().bufferLimit()`): each stream's buffer limit (413 past it) and the
    /// router's request-body watermark.
    fn buffer_limit(&self) -> u32;

    /// Writes to the downstream connection (takes the bytes).
    fn write(&mut self, data: &mut BytesMut, end_stream: bool);
    fn close(&mut self, how: CloseHow);
    fn read_disable(&mut self, disable: bool);
    fn arm_timer(&mut self, timer: HcmTimer, after: Duration);
    fn disarm_timer(&mut self, timer: HcmTimer);
    /// The stream ended: every stream timer ([`HcmTimer::STREAM`]) is disarmed (Envoy's
    /// timers go with their `ActiveStream`).
    fn disarm_stream_timers(&mut self) {
        for timer in HcmTimer::STREAM {
            self.disarm_timer(timer);
        }
    }

    /// Opens an upstream connection; its events come back to this connection manager.
    fn connect(&mut self, address: SocketAddr, buffer_limit: u32) -> io::Result<Self::Upstream>;
    fn write_upstream(&mut self, id: Self::Upstream, data: &mut BytesMut, end_stream: bool);
    fn close_upstream(&mut self, id: Self::Upstream, how: CloseHow);
    fn read_disable_upstream(&mut self, id: Self::Upstream, disable: bool);
    /// A pooled connection is lent to this connection manager: route its events here.
    fn adopt_upstream(&mut self, id: Self::Upstream);
    /// The connection goes back to the pool: its events no longer come here.
    fn release_upstream(&mut self, id: Self::Upstream);
    /// An idle pooled connection is still open and quiet (no EOF, no stray bytes) as far as
    /// the event loop knows; with `peek`, the socket itself is asked too (one syscall; see
    /// `IdleClient::peek_before_reuse` for when).
    fn upstream_usable(&mut self, id: Self::Upstream, peek: bool) -> bool;

    /// The worker's connection pools.
    fn pools(&mut self) -> &mut ConnPools<Self::Upstream, Self::Waiter>;
    /// Names this connection manager for a pool's pending queue (whom [`wake`](Self::wake)
    /// reaches).
    fn waiter(&self) -> Self::Waiter;
    /// Wakes the connection manager `waiter` names (it may be this one): its
    /// `on_pool_wake` runs after the current callback. Used by the pools' pending queue.
    fn wake(&mut self, waiter: Self::Waiter);
    /// A cluster of this worker's cluster manager.
    fn cluster(&mut self, name: &str) -> Option<Rc<dyn ClusterView>>;
    /// A random number (request ids, weighted clusters, retry jitter).
    fn random(&mut self) -> u64;
}
