//! The router filter (Envoy's `Router::Filter`): the terminal HTTP decoder filter. It routes the
//! request, picks a host, gets a connection from the worker's pool, sends the request upstream
//! and turns the upstream's response into events for the encoder chain; it owns retries (asking
//! the request's `RetryState`, within the cluster's `max_retries` breaker or retry budget), the
//! route timeout and Envoy's upstream local replies. It also plays the pool's part of Envoy's
//! `ConnPoolImplBase::newStreamImpl` (`new_stream`): a request without a ready connection is
//! pending, opens a connection or waits in the host pool's queue until `on_pool_wake`.
//!
//! Called by the connection manager (`http::conn_manager`): as the sink of the decoder filter
//! chain (`decode_*`), and with the upstream connection's bytes, events and timers
//! (`on_upstream_*`, `on_timer`). It calls the route table, the cluster view, the pool and the
//! I/O through `ConnectionIo`, and reports what the downstream must see as
//! [`UpstreamOutcome`]s, which the connection manager pushes through the encoder filters.
//!
//! Envoy's local replies, exactly (status, body, response flag, details):
//! - no route: 404, empty, `NR`, `route_not_found`
//! - unknown cluster: 503, empty, `NC`-like (`cluster_not_found`)
//! - no host: 503 `no healthy upstream`, `UH`
//! - circuit breaker: 503 `upstream connect error or disconnect/reset before headers. reset
//!   reason: overflow` + `x-envoy-overloaded: true`, `UO`
//! - connect failure: 503 `... reset reason: connection failure`, `UF`
//! - connection closed before the response head: 503 `... reset reason: connection
//!   termination`, `UC`
//! - route timeout: 504 `upstream request timeout`, `UT`

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::http::codec::{CodecError, Http1Settings, RequestHead, ResponseEvent, ResponseHead};
use crate::http::conn_manager_io::{
    ClusterView, ConnectionIo, ForwardDecision, HcmTimer, RouteDecision, RouteTable,
};
use crate::http::conn_manager_timers::TimerClock;
use crate::http::decimal::Decimal;
use crate::http::filter::{FilterCallbacks, LocalReply, ResponseFlag};
use crate::http::scratch;
use crate::http::HeaderMap;
use crate::router::{
    set_timeout_headers, FormatterContext, ResetReason as RetryResetReason, RetryPolicy,
    RetryState, RetryStatus, StartTime, TimeoutData,
};
use crate::upstream::cluster;
use crate::upstream::conn_pool::{
    ClientLife, ConnectDecision, IdleClient, PendingId, PendingState, PoolFailure, PoolKey,
};

use super::upstream_request::{UpstreamRequest, UpstreamState};

/// The prefix of Envoy's upstream reset bodies.
pub const RESET_BEFORE_HEADERS: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

/// What the downstream must see, produced from upstream events.
#[derive(Debug)]
pub enum UpstreamOutcome {
    /// The response head (`end_stream`: no body follows).
    Headers(ResponseHead, bool),
    Data(BytesMut, bool),
    Trailers(HeaderMap),
    /// The response ended after body data (an empty end-of-stream frame).
    End,
    /// Answer locally (nothing was sent downstream yet).
    LocalReply(LocalReply),
    /// The response had started: the downstream stream must be reset (connection closed).
    Reset,
}

/// Why an attempt failed before the response head (Envoy's `StreamResetReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    ConnectionFailure,
    ConnectionTimeout,
    ConnectionTermination,
    Overflow,
    ProtocolError,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::ConnectionFailure => "connection failure",
            ResetReason::ConnectionTimeout => "connection timeout",
            ResetReason::ConnectionTermination => "connection termination",
            ResetReason::Overflow => "overflow",
            ResetReason::ProtocolError => "protocol error",
        }
    }

    fn flag(self) -> ResponseFlag {
        match self {
            ResetReason::ConnectionFailure | ResetReason::ConnectionTimeout => {
                ResponseFlag::UpstreamConnectionFailure
            }
            ResetReason::ConnectionTermination => ResponseFlag::UpstreamConnectionTermination,
            ResetReason::Overflow => ResponseFlag::UpstreamOverflow,
            ResetReason::ProtocolError => ResponseFlag::UpstreamProtocolError,
        }
    }

    fn details(self) -> &'static str {
        match self {
            ResetReason::ConnectionFailure => {
                "upstream_reset_before_response_started{connection_failure}"
            }
            ResetReason::ConnectionTimeout => {
                "upstream_reset_before_response_started{connection_timeout}"
            }
            ResetReason::ConnectionTermination => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            ResetReason::Overflow => "upstream_reset_before_response_started{overflow}",
            ResetReason::ProtocolError => "upstream_reset_before_response_started{protocol_error}",
        }
    }

    /// The retry state's name for this reason.
    fn for_retry(self) -> RetryResetReason {
        match self {
            ResetReason::ConnectionFailure => RetryResetReason::ConnectionFailure,
            ResetReason::ConnectionTimeout => RetryResetReason::ConnectionTimeout,
            ResetReason::ConnectionTermination => RetryResetReason::ConnectionTermination,
            ResetReason::Overflow => RetryResetReason::Overflow,
            ResetReason::ProtocolError => RetryResetReason::ProtocolError,
        }
    }

    /// Envoy's local reply for a reset before the response head.
    pub fn local_reply(self) -> LocalReply {
        let status = if self == ResetReason::ProtocolError {
            502
        } else {
            503
        };
        let reply = LocalReply::new(
            status,
            format!("{RESET_BEFORE_HEADERS}{}", self.as_str()),
            self.details(),
        );
        if self == ResetReason::Overflow {
            reply.with_header("x-envoy-overloaded", "true")
        } else {
            reply
        }
    }
}

/// The router filter of one stream.
pub struct RouterFilter<U> {
    settings: Arc<Http1Settings>,
    /// The forwarding decision (cluster, timeout, retries), once routed.
    decision: Option<ForwardDecision>,
    cluster: Option<Rc<dyn ClusterView>>,
    /// The request head as sent upstream (kept for retries).
    request: Option<RequestHead>,
    /// Request body not yet written to the current attempt, plus (while retries are possible)
    /// everything already written, from `body_sent` on.
    body: BytesMut,
    /// Bytes of `body` already written to the current attempt.
    body_sent: usize,
    /// The body is kept for a retry (retries configured and the body fits the buffer limit).
    retain_body: bool,
    /// `body` holds every request body byte received so far: nothing written upstream was
    /// dropped yet, so the request can be sent again from the start (a retry, or the replay
    /// after a reused connection died under it).
    body_whole: bool,
    buffer_limit: usize,
    trailers: Option<HeaderMap>,
    /// The downstream request is complete.
    downstream_end: bool,
    /// When the downstream request completed (Envoy's `downstream_request_complete_time_`):
    /// a retry's `x-envoy-expected-rq-timeout-ms` is lowered by the time since.
    /// On the timer set's clock: the conversion of an event's time is shared by every reader
    /// of the same event (see `TimerClock`), and a duration is a subtraction of integers.
    downstream_end_at: Option<TimerClock>,
    upstream: Option<UpstreamRequest<U>>,
    /// The request's retry decisions (Envoy's `RetryStateImpl`); `None`: no retry possible
    /// (none configured or asked for, or the body grew too big to replay).
    retry: Option<RetryState<Arc<RetryPolicy>>>,
    /// A retry is waiting for its back-off: counted in the cluster's `max_retries` breaker
    /// (or retry budget) until it starts.
    retry_counted: bool,
    attempts: u32,
    /// The response head went downstream: no retry, no local reply any more.
    response_started: bool,
    /// Routing finished with a local reply or the stream is over: ignore everything.
    done: bool,
    /// Upstream read-disabled because the downstream is above its high watermark.
    upstream_read_disabled: bool,
    /// The host of the current attempt.
    pub upstream_host: Option<std::net::SocketAddr>,
    /// The worker pool of the current attempt's host, resolved once per attempt
    /// (`start_attempt`) and passed to every pool call of the attempt.
    pool: Option<PoolKey>,
    /// Downstream reads are disabled because request body piled up before the upstream could
    /// take it (one `read_disable(true)` outstanding).
    body_read_disabled: bool,
    /// Downstream reads are disabled because the upstream connection's write buffer is above
    /// its high watermark (one `read_disable(true)` outstanding).
    watermark_read_disabled: bool,
    /// A reused pooled connection died under this request before any response byte and the
    /// request was replayed once on a new connection.
    replayed_after_stale_connection: bool,
    /// The host of the current attempt (its per-host stats, the pool it waits in).
    attempt_host: Option<Arc<crate::upstream::cluster::Host>>,
    /// Waiting in the host pool's pending queue.
    pending: Option<PendingId>,
    /// Counted as pending (no connection yet): `upstream_rq_pending_active` and the
    /// `max_pending_requests` breaker, until attached to a connection or given up.
    pending_counted: bool,
    /// Counted as an active request (attached to a connection): `upstream_rq_active` and the
    /// `max_requests` breaker, until the attempt ends.
    request_counted: bool,
}

impl<U: Copy + Eq + std::hash::Hash + std::fmt::Debug> RouterFilter<U> {
    pub fn new(settings: Arc<Http1Settings>, buffer_limit: usize) -> Self {
        RouterFilter {
            settings,
            decision: None,
            cluster: None,
            request: None,
            body: BytesMut::new(),
            body_sent: 0,
            retain_body: false,
            body_whole: true,
            buffer_limit,
            trailers: None,
            downstream_end: false,
            downstream_end_at: None,
            upstream: None,
            retry: None,
            retry_counted: false,
            attempts: 0,
            response_started: false,
            done: false,
            upstream_read_disabled: false,
            upstream_host: None,
            pool: None,
            body_read_disabled: false,
            watermark_read_disabled: false,
            replayed_after_stale_connection: false,
            attempt_host: None,
            pending: None,
            pending_counted: false,
            request_counted: false,
        }
    }

    /// Attempts made (`%UPSTREAM_REQUEST_ATTEMPT_COUNT%`).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The upstream connection of the current attempt, if any.
    pub fn upstream_conn(&self) -> Option<U> {
        self.upstream.as_ref().map(|u| u.conn)
    }

    pub fn cluster_name(&self) -> Option<&str> {
        self.decision.as_ref().map(|d| &*d.cluster)
    }

    /// The matched route's id when it edits response headers (`RouteTable::finalize_response`
    /// has something to do).
    pub fn route_editing_response(&self) -> Option<usize> {
        self.decision
            .as_ref()
            .filter(|d| d.edits_response_headers)
            .map(|d| d.route_id)
    }

    /// The request head as forwarded (for response header edits).
    pub fn request(&self) -> Option<&RequestHead> {
        self.request.as_ref()
    }

    // === decoding: the request from downstream ===

    /// Envoy's `Router::Filter::decodeHeaders`: route, pick a host, get a connection.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_headers<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        head: &mut RequestHead,
        end_stream: bool,
        routes: &dyn RouteTable,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        stats: &crate::http::conn_manager_stats::HcmStats,
    ) {
        stats.rq_total.inc();
        let random = io.random();
        let ctx = FormatterContext {
            downstream_remote_address: cb.state.downstream.remote,
            downstream_direct_remote_address: cb.state.downstream.direct_remote,
            downstream_local_address: cb.state.downstream.local,
            upstream_host: None,
            // The stream started in this loop iteration (its headers just completed).
            start_time: StartTime::Since(cb.now),
            protocol: Some(head.version.as_str()),
        };
        let decision = match routes.route(head, random, &ctx, &mut self.decision) {
            RouteDecision::Forward(decision) => decision,
            other => {
                Self::answer_locally(other, head, cb, stats);
                self.done = true;
                return;
            }
        };
        debug!(
            "[C{}][S{}] ActiveStream::refreshCachedRoute: route '{}' matched: cluster '{}' match for URL '{}'",
            cb.connection_id,
            cb.stream_id,
            routes.route_name(decision.route_id),
            decision.cluster,
            head.path()
        );
        trace!(
            "[C{}][S{}] Router::Filter::decodeHeaders: cluster '{}' (end_stream={end_stream})",
            cb.connection_id,
            cb.stream_id,
            decision.cluster
        );
        let Some(cluster) = io.cluster(&decision.cluster) else {
            self.cluster_not_found(cb);
            return;
        };
        // Envoy's `refreshIdleTimeout`: the route's idle timeout becomes the stream's.
        cb.state.route_idle_timeout = decision.idle_timeout;
        self.retry = decision.retry.take().filter(|r| r.retries_remaining() > 0);
        self.retain_body = self.retry.is_some();
        self.downstream_end = end_stream;
        // The decoder chain has delivered the head: the router keeps it (to send it once the
        // connection is ready, and again on a retry) instead of a copy.
        self.request = Some(head.take());
        self.cluster = Some(cluster);
        if end_stream {
            self.arm_route_timeout(io);
        }
        self.start_attempt(cb, io);
    }

    /// The route table answers the request itself: no route (404, `NR`), a direct response
    /// or a redirect. Not the forwarding path (a proxied request never comes here).
    #[inline(never)]
    fn answer_locally(
        decision: RouteDecision<'_>,
        head: &RequestHead,
        cb: &mut FilterCallbacks,
        stats: &crate::http::conn_manager_stats::HcmStats,
    ) {
        match decision {
            RouteDecision::NoRoute => {
                debug!(
                    "[C{}][S{}] no route match for URL '{}'",
                    cb.connection_id,
                    cb.stream_id,
                    head.path()
                );
                stats.no_route.inc();
                cb.set_response_flag(ResponseFlag::NoRouteFound);
                cb.send_local_reply(LocalReply::new(404, "", "route_not_found"));
            }
            RouteDecision::DirectResponse { status, body } => {
                stats.rq_direct_response.inc();
                cb.send_local_reply(LocalReply::new(status, body, "direct_response"));
            }
            RouteDecision::Redirect { status, location } => {
                stats.rq_redirect.inc();
                cb.send_local_reply(
                    LocalReply::new(status, "", "direct_response")
                        .with_header("location", location),
                );
            }
            // Not reached: the caller forwards.
            RouteDecision::Forward(_) => {}
        }
    }

    /// The route names a cluster the cluster manager does not have (only possible with
    /// `cluster_header`): Envoy's 503 `cluster_not_found`. An error, not per request.
    #[cold]
    fn cluster_not_found(&mut self, cb: &mut FilterCallbacks) {
        // Not forwarded: the stream keeps no forwarding decision.
        let decision = self.decision.take();
        debug!(
            "[C{}][S{}] unknown cluster '{}'",
            cb.connection_id,
            cb.stream_id,
            decision.as_ref().map_or("", |d| &*d.cluster)
        );
        cb.send_local_reply(LocalReply::new(503, "", "cluster_not_found"));
        self.done = true;
    }

    /// Envoy's `decodeData`: stream to the upstream if connected, else buffer.
    pub fn decode_data<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        if self.done {
            return;
        }
        self.downstream_end |= end_stream;
        if self.retain_body && self.body.len() + data.len() > self.buffer_limit {
            // Too big to replay: no more retries for this request (Envoy's retry buffer limit).
            self.retain_body = false;
            self.retry = None;
        }
        self.body.extend_from_slice(data);
        data.clear();
        if end_stream {
            self.arm_route_timeout(io);
        }
        self.flush_request(cb, io);
        // Flow control: a body piling up before the upstream can take it stops the reads.
        let unsent = self.body.len() - self.body_sent;
        if unsent > self.buffer_limit && !self.body_read_disabled {
            io.read_disable(true);
            self.body_read_disabled = true;
        }
    }

    pub fn decode_trailers<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        trailers: &mut HeaderMap,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        if self.done {
            return;
        }
        self.downstream_end = true;
        self.trailers = Some(std::mem::take(trailers));
        self.arm_route_timeout(io);
        self.flush_request(cb, io);
    }

    /// The downstream request just completed (Envoy's `onRequestComplete`): the route timeout
    /// starts, and the per-try timers if the attempt's connection is ready.
    fn arm_route_timeout<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.downstream_end_at = Some(TimerClock::at(io.now()));
        if let Some(timeout) = self.decision.as_ref().and_then(|d| d.timeout) {
            io.arm_timer(HcmTimer::RouteTimeout, timeout);
        }
        if self.upstream.as_ref().is_some_and(|u| u.connected()) {
            self.setup_per_try_timeouts(io);
        }
    }

    /// Envoy's `UpstreamRequest::setupPerTryTimeout`, once per attempt, when both its
    /// connection is ready and the downstream request is complete (whichever comes last):
    /// `per_try_timeout` and `per_try_idle_timeout` start.
    fn setup_per_try_timeouts<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let (Some(upstream), Some(decision)) = (self.upstream.as_mut(), self.decision.as_ref())
        else {
            return;
        };
        if std::mem::replace(&mut upstream.per_try_armed, true) {
            return;
        }
        if let Some(timeout) = decision.per_try_timeout {
            io.arm_timer(HcmTimer::PerTryTimeout, timeout);
        }
        if let Some(timeout) = decision.per_try_idle_timeout {
            io.arm_timer(HcmTimer::PerTryIdleTimeout, timeout);
        }
    }

    /// The attempt is over: neither per-try timer may fire for it.
    fn disarm_per_try_timeouts<Io: ConnectionIo<Upstream = U>>(io: &mut Io) {
        io.disarm_timer(HcmTimer::PerTryTimeout);
        io.disarm_timer(HcmTimer::PerTryIdleTimeout);
    }

    /// Envoy's `doRetry` → `FilterUtility::setTimeoutHeaders`: a retry tells the upstream the
    /// time left, `x-envoy-expected-rq-timeout-ms` lowered by the time since the downstream
    /// request completed (zero if it has not yet).
    fn set_retry_timeout_headers(&mut self, now: Instant) {
        let (Some(decision), Some(request)) = (&self.decision, self.request.as_mut()) else {
            return;
        };
        let elapsed = self
            .downstream_end_at
            .map_or(Duration::ZERO, |at| at.elapsed_at(now));
        let timeout = TimeoutData {
            global_timeout: decision.timeout,
            per_try_timeout: decision.per_try_timeout,
        };
        set_timeout_headers(elapsed, &timeout, request, !decision.suppress_envoy_headers);
    }

    /// The router's `suppress_envoy_headers`: it adds no `x-envoy-*` header of its own.
    fn suppress_envoy_headers(&self) -> bool {
        self.decision
            .as_ref()
            .is_some_and(|d| d.suppress_envoy_headers)
    }

    /// Starts one try: pick a host, then a pooled or a new connection.
    fn start_attempt<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        self.attempts += 1;
        self.body_sent = 0;
        let Some(host) = self.choose_host(&*cluster) else {
            cluster.stats().upstream_cx_none_healthy.inc();
            self.no_healthy_upstream(cb, io);
            return;
        };
        self.upstream_host = Some(host.address());
        self.pool = Some(io.pools().key(cluster.name(), host.address()));
        if let Some(retry) = self.retry.as_mut() {
            retry.on_host_attempted(host.address());
        }
        trace!(
            "[C{}][S{}] UpstreamRequest::acceptHeadersFromRouter: attempt {} to {}",
            cb.connection_id,
            cb.stream_id,
            self.attempts,
            host.address()
        );
        self.attempt_host = Some(host);
        self.new_stream(cb, io);
    }

    /// Envoy's `sendNoHealthyUpstreamResponse`: 503 `no healthy upstream`, `UH`, charged as an
    /// upstream 503 (by `fail_locally`). An error: the cluster has no host to send to.
    #[cold]
    fn no_healthy_upstream<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        cb.set_response_flag(ResponseFlag::NoHealthyUpstream);
        self.fail_locally(
            LocalReply::new(503, "no healthy upstream", "no_healthy_upstream"),
            cb,
            io,
        );
    }

    /// Picks the attempt's host (Envoy's `LoadBalancerBase::chooseHost` with the router as its
    /// context): on a retry whose policy has a `retry_host_predicate`, a host it rejects is
    /// re-picked up to `host_selection_retry_max_attempts` times; the last pick is used if
    /// every pick is rejected.
    fn choose_host(
        &self,
        cluster: &dyn ClusterView,
    ) -> Option<Arc<crate::upstream::cluster::Host>> {
        let mut host = cluster.choose_host()?;
        let Some(retry) = self
            .retry
            .as_ref()
            .filter(|r| self.attempts > 1 && r.has_host_predicates())
        else {
            return Some(host);
        };
        for _ in 0..retry.host_selection_max_attempts() {
            if !retry.should_select_another_host(host.address()) {
                break;
            }
            host = cluster.choose_host()?;
        }
        Some(host)
    }

    /// Gets a connection to the attempt's host (Envoy's `ConnPoolImplBase::newStreamImpl`):
    /// a ready pooled one, else the stream becomes pending (`max_pending_requests`) and opens
    /// a new connection (`max_connections`) or waits in the pool's queue. Also what a woken
    /// pending stream runs again.
    fn new_stream<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        let (Some(cluster), Some(host_ref), Some(pool)) =
            (self.cluster.clone(), self.attempt_host.clone(), self.pool)
        else {
            return;
        };
        let rm = cluster.resource_manager();
        if !io.pools().pool_available(pool, rm) {
            self.pool_overflow(&*cluster, host_ref.address(), cb, io);
            return;
        }
        if !rm.requests.can_create() {
            // `max_requests` is full. Envoy checks it when attaching the stream to a
            // connection and counts it as a pending overflow; checked up front here, so a
            // stream never waits for a connection it could not use.
            self.pending_overflow(&*cluster, cb, io);
            return;
        }
        // The replay after a pooled connection died under the request (and any retry after
        // it) goes to a new connection while `max_connections` allows one: the connections
        // pooled next to the dead one were most likely closed by the same upstream at the
        // same moment (seen under load). At the limit a pooled one beats waiting forever.
        let ready = if self.replayed_after_stale_connection && rm.connections.can_create() {
            None
        } else {
            self.take_ready(&*cluster, &host_ref, pool, cb, io)
        };
        let Some((id, life)) = ready else {
            self.connect_or_wait(&cluster, &host_ref, pool, cb, io);
            return;
        };
        let was_waiting = self.pending.is_some();
        self.leave_queue(io, false);
        if was_waiting {
            self.count_overflow_for_waiters(&*cluster, &host_ref, pool, io);
        }
        debug!(
            "[C{}][S{}] ConnPoolImplBase::newStream: ready client {:?} to {}",
            cb.connection_id,
            cb.stream_id,
            id,
            host_ref.address()
        );
        io.adopt_upstream(id);
        self.upstream = Some(UpstreamRequest::new(
            host_ref,
            pool,
            id,
            true,
            life,
            self.settings.clone(),
        ));
        self.on_attached(&*cluster);
        self.on_pool_ready(cb, io);
    }

    /// `max_connection_pools` is full and the host has no pool on this worker: Envoy's
    /// cluster manager hands the router no pool (`upstream_cx_pool_overflow`). A limit.
    #[cold]
    fn pool_overflow<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cluster: &dyn ClusterView,
        host: std::net::SocketAddr,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        debug!(
            "[C{}][S{}] no connection pool for {}: max_connection_pools overflow",
            cb.connection_id, cb.stream_id, host
        );
        cluster.stats().upstream_cx_pool_overflow.inc();
        self.no_healthy_upstream(cb, io);
    }

    /// `max_requests` or `max_pending_requests` is full: Envoy's pending overflow. A limit.
    #[cold]
    fn pending_overflow<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cluster: &dyn ClusterView,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        cluster.stats().upstream_rq_pending_overflow.inc();
        self.overflow(cb, io);
    }

    /// No ready connection to the attempt's host: the stream is pending (Envoy's
    /// `newStreamImpl` past `hasActiveStreams`) and opens a new connection, or waits in the
    /// pool's queue when `max_connections` is full. Not per request on a warm keep-alive
    /// pool, but every request to an upstream that closes its connections comes here.
    #[inline(never)]
    fn connect_or_wait<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cluster: &Rc<dyn ClusterView>,
        host_ref: &Arc<crate::upstream::cluster::Host>,
        pool: PoolKey,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        let stats = cluster.stats();
        let rm = cluster.resource_manager();
        let host = host_ref.address();
        if !self.pending_counted {
            if !rm.pending_requests.can_create() {
                debug!(
                    "[C{}][S{}] max pending streams overflow",
                    cb.connection_id, cb.stream_id
                );
                self.pending_overflow(&**cluster, cb, io);
                return;
            }
            rm.pending_requests.inc();
            stats.upstream_rq_pending_total.inc();
            stats.upstream_rq_pending_active.inc();
            self.pending_counted = true;
        }
        let host_cx_active = || {
            host_ref
                .stats
                .cx_active
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let over_limit = match io.pools().connect_or_wait(pool, rm, host_cx_active) {
            ConnectDecision::Connect { over_limit } => over_limit,
            ConnectDecision::Wait => {
                self.wait_in_queue(&**cluster, host, pool, cb, io);
                return;
            }
        };
        self.leave_queue(io, false);
        if over_limit {
            stats.upstream_cx_overflow.inc();
        }
        let host_stats = &host_ref.stats;
        match io.connect(host, cluster.buffer_limit()) {
            Ok(id) => {
                debug!(
                    "[C{}][S{}] ConnPoolImplBase::newStream: new connection {:?} to {}",
                    cb.connection_id, cb.stream_id, id, host
                );
                stats.upstream_cx_total.inc();
                stats.upstream_cx_http1_total.inc();
                stats.upstream_cx_active.inc();
                cluster::inc(&host_stats.cx_total);
                cluster::inc(&host_stats.cx_active);
                self.upstream = Some(UpstreamRequest::new(
                    host_ref.clone(),
                    pool,
                    id,
                    false,
                    ClientLife::new(io.now()),
                    self.settings.clone(),
                ));
                io.arm_timer(HcmTimer::ConnectTimeout, cluster.connect_timeout());
            }
            Err(e) => self.connect_failed(&**cluster, host_ref, pool, e, cb, io),
        }
    }

    /// `max_connections` is full: the stream waits in the host pool's queue (or again, keeping
    /// its place, after a wake-up another stream won). A limit.
    #[cold]
    fn wait_in_queue<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cluster: &dyn ClusterView,
        host: std::net::SocketAddr,
        pool: PoolKey,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        cluster.stats().upstream_cx_overflow.inc();
        match self.pending {
            Some(id) => io.pools().wait_again(pool, id),
            None => {
                let waiter = io.waiter();
                self.pending = Some(io.pools().enqueue(pool, waiter));
            }
        }
        debug!(
            "[C{}][S{}] ConnPoolImplBase::newStream: pending: no connection to {} available (max_connections): queued",
            cb.connection_id,
            cb.stream_id,
            host
        );
    }

    /// The connect failed at once (no route to the host, out of ports): the attempt resets
    /// before headers (retry or 503 `UF`), and so does every stream waiting for the host. An
    /// error.
    #[cold]
    fn connect_failed<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cluster: &dyn ClusterView,
        host_ref: &Arc<crate::upstream::cluster::Host>,
        pool: PoolKey,
        e: std::io::Error,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        debug!(
            "[C{}][S{}] connect to {} failed at once: {}",
            cb.connection_id,
            cb.stream_id,
            host_ref.address(),
            e
        );
        io.pools()
            .on_stream_failed(pool, cluster.resource_manager());
        cluster.stats().upstream_cx_connect_fail.inc();
        cluster::inc(&host_ref.stats.cx_total);
        cluster::inc(&host_ref.stats.cx_connect_fail);
        self.pending_end();
        self.purge_pending(pool, PoolFailure::ConnectionFailure, io);
        self.on_reset_before_headers(ResetReason::ConnectionFailure, false, cb, io);
    }

    /// A usable idle connection to the attempt's host, lent to this stream. Idle connections
    /// the upstream closed are closed and dropped on the way.
    fn take_ready<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cluster: &dyn ClusterView,
        host_ref: &Arc<crate::upstream::cluster::Host>,
        pool: PoolKey,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) -> Option<(U, ClientLife)> {
        if !io.pools().has_ready(pool) {
            return None;
        }
        let rm = cluster.resource_manager();
        let now = io.now();
        let mut found = None;
        let mut dead = Vec::new();
        let mut expired = Vec::new();
        // Never lend a connection the upstream closed while it sat idle: ask the event loop,
        // and the socket after a long idle period.
        loop {
            let popped = io.pools().pop_idle(pool, rm, now, &mut expired);
            let Some(client) = popped else {
                break;
            };
            if io.upstream_usable(client.id, client.peek_before_reuse(now)) {
                io.pools().lend(pool, rm);
                found = Some((client.id, client.life));
                break;
            }
            io.pools().discard_idle(pool, rm);
            dead.push(client);
        }
        if !dead.is_empty() || !expired.is_empty() {
            Self::close_stale_idle(cluster, host_ref, dead, expired, now, cb, io);
        }
        found
    }

    /// Closes the pooled connections `take_ready` could not lend: closed by the upstream while
    /// idle (`dead`), or past the idle timeout before the worker's idle timer ran
    /// (`expired`, closed as the timer would have). Not per request: an upstream's
    /// keep-alive timeout, or a pool idle for the cluster's `idle_timeout`.
    #[cold]
    fn close_stale_idle<Io: ConnectionIo<Upstream = U>>(
        cluster: &dyn ClusterView,
        host_ref: &Arc<crate::upstream::cluster::Host>,
        dead: Vec<IdleClient<U>>,
        expired: Vec<IdleClient<U>>,
        now: Instant,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        let stats = cluster.stats();
        for IdleClient { id, life, .. } in dead {
            debug!(
                "[C{}][S{}] pooled connection {:?} closed by upstream while idle: not reused",
                cb.connection_id, cb.stream_id, id
            );
            io.close_upstream(id, crate::http::conn_manager_io::CloseHow::NoFlush);
            stats.upstream_cx_destroy_remote.inc();
            stats.upstream_cx_destroy.inc();
            stats.upstream_cx_active.dec();
            stats.record_cx_closed(&life, true, now);
            cluster::dec(&host_ref.stats.cx_active);
        }
        for IdleClient { id, life, .. } in expired {
            io.close_upstream(id, crate::http::conn_manager_io::CloseHow::NoFlush);
            stats.upstream_cx_idle_timeout.inc();
            stats.upstream_cx_destroy_local.inc();
            stats.upstream_cx_destroy.inc();
            stats.upstream_cx_active.dec();
            stats.record_cx_closed(&life, true, now);
            cluster::dec(&host_ref.stats.cx_active);
        }
    }

    /// The stream got its connection (Envoy's `attachStreamToClient`): it stops being
    /// pending and becomes an active request.
    fn on_attached(&mut self, cluster: &dyn ClusterView) {
        self.pending_end();
        cluster.resource_manager().requests.inc();
        self.request_counted = true;
        let stats = cluster.stats();
        stats.upstream_rq_total.inc();
        stats.upstream_rq_active.inc();
    }

    /// Leaves the pending state (`upstream_rq_pending_active`, the breaker's count). A test
    /// in the caller: only a stream that found no ready connection was pending.
    #[inline]
    fn pending_end(&mut self) {
        if std::mem::take(&mut self.pending_counted) {
            self.uncount_pending();
        }
    }

    /// [`pending_end`](Self::pending_end) of a stream that was pending.
    #[inline(never)]
    fn uncount_pending(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.resource_manager().pending_requests.dec();
            cluster.stats().upstream_rq_pending_active.dec();
        }
    }

    /// Leaves the active-request state (`upstream_rq_active`, the breaker's count).
    fn request_end(&mut self) {
        if !std::mem::take(&mut self.request_counted) {
            return;
        }
        if let Some(cluster) = &self.cluster {
            cluster.resource_manager().requests.dec();
            cluster.stats().upstream_rq_active.dec();
        }
    }

    /// Leaves the pool's pending queue if in it; `pass_on`: the stream gives up, so a
    /// notification it received goes to the next waiting stream. A test in the caller: only a
    /// stream that waited for a connection (`max_connections` full) is in the queue.
    #[inline]
    fn leave_queue<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io, pass_on: bool) {
        if let Some(id) = self.pending.take() {
            self.dequeue(id, io, pass_on);
        }
    }

    /// [`leave_queue`](Self::leave_queue) of a stream waiting in the queue as `id`.
    #[inline(never)]
    fn dequeue<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        id: PendingId,
        io: &mut Io,
        pass_on: bool,
    ) {
        let (Some(cluster), Some(pool)) = (self.cluster.clone(), self.pool) else {
            return;
        };
        let state = io.pools().cancel(pool, id, cluster.resource_manager());
        if pass_on && state == Some(PendingState::Notified) {
            self.notify_pool(pool, true, io);
        }
    }

    /// The stream gives up waiting (downstream gone, timeout, local reply).
    fn cancel_pending<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.leave_queue(io, true);
        self.pending_end();
    }

    /// A connection of `pool` was released to the pool or a connection slot freed up: wake
    /// the oldest waiting stream (of its host, or with `any_host` of any host of the cluster).
    fn notify_pool<Io: ConnectionIo<Upstream = U>>(
        &self,
        pool: PoolKey,
        any_host: bool,
        io: &mut Io,
    ) {
        if let Some(waiter) = io.pools().notify(pool, any_host) {
            io.wake(waiter);
        }
    }

    /// A connection attempt of `pool` failed: every stream waiting for its host fails too
    /// (Envoy's `purgePendingStreams`); each is woken to fail or retry.
    fn purge_pending<Io: ConnectionIo<Upstream = U>>(
        &self,
        pool: PoolKey,
        why: PoolFailure,
        io: &mut Io,
    ) {
        while let Some(waiter) = io.pools().fail_next(pool, why) {
            io.wake(waiter);
        }
    }

    /// A circuit breaker is full: Envoy's 503 with `x-envoy-overloaded`, `UO`. A limit.
    #[cold]
    fn overflow<Io: ConnectionIo<Upstream = U>>(&mut self, cb: &mut FilterCallbacks, io: &mut Io) {
        cb.set_response_flag(ResponseFlag::UpstreamOverflow);
        let mut reply = ResetReason::Overflow.local_reply();
        if self.suppress_envoy_headers() {
            reply
                .headers
                .retain(|(name, _)| *name != "x-envoy-overloaded");
        }
        self.fail_locally(reply, cb, io);
    }

    /// The pool woke this stream while it waits in the queue (Envoy's `onPoolReady` /
    /// `onPoolFailure` of a pending stream): a connection may be free now, or the host's
    /// connection attempt failed. Stale wake-ups (the stream moved on) are ignored.
    pub fn on_pool_wake<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        let (Some(id), Some(cluster), Some(pool)) = (self.pending, self.cluster.clone(), self.pool)
        else {
            return;
        };
        if self.done {
            return;
        }
        match io.pools().pending_state(pool, id) {
            None | Some(PendingState::Waiting) => return,
            Some(PendingState::Notified) => self.new_stream(cb, io),
            Some(PendingState::Failed(why)) => {
                io.pools().cancel(pool, id, cluster.resource_manager());
                self.pending = None;
                self.pending_end();
                cluster.stats().upstream_rq_pending_failure_eject.inc();
                let reason = match why {
                    PoolFailure::ConnectionFailure => ResetReason::ConnectionFailure,
                    PoolFailure::Timeout => ResetReason::ConnectionTimeout,
                };
                debug!(
                    "[C{}][S{}] pending stream failed: {}",
                    cb.connection_id,
                    cb.stream_id,
                    reason.as_str()
                );
                self.on_reset_before_headers(reason, false, cb, io);
            }
        }
        if let Some(reply) = cb.state.local_reply.take() {
            out.push(UpstreamOutcome::LocalReply(reply));
        }
    }

    /// The connection is ready for this request (Envoy's `onPoolReady`): send what we have;
    /// with the whole request at hand, the per-try timers start.
    fn on_pool_ready<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        if self.downstream_end {
            self.setup_per_try_timeouts(io);
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return;
        };
        let Some(request) = self.request.as_ref() else {
            return;
        };
        let body_pending = self.body.len() > self.body_sent;
        let end = self.downstream_end && !body_pending && self.trailers.is_none();
        trace!(
            "[C{}][S{}] UpstreamRequest::onPoolReady: RequestEncoderImpl::encodeHeaders (end_stream={end})",
            cb.connection_id,
            cb.stream_id
        );
        let conn = upstream.conn;
        // Encoded into the worker's scratch, handed to the connection's write buffer.
        let mut out = scratch::take_encode();
        upstream.encode_headers(request, end, io.now(), &mut out);
        if !end {
            // The body (and trailers) follow in the same write when already here.
            self.encode_request_body(&mut out, io);
        }
        io.write_upstream(conn, &mut out, false);
        scratch::give_encode(out);
    }

    /// Writes the request body (and trailers) the current attempt has not seen yet.
    fn flush_request<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        _cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        let Some(conn) = self.upstream.as_ref().map(|u| u.conn) else {
            return;
        };
        let mut out = scratch::take_encode();
        self.encode_request_body(&mut out, io);
        if !out.is_empty() {
            io.write_upstream(conn, &mut out, false);
        }
        scratch::give_encode(out);
    }

    /// Encodes into `out` the request body (and trailers) the current attempt has not seen
    /// yet, if its connection is ready for them.
    fn encode_request_body<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        out: &mut BytesMut,
        io: &mut Io,
    ) {
        let Some(upstream) = self.upstream.as_mut() else {
            return;
        };
        if !upstream.connected() || !upstream.headers_sent || upstream.request_complete {
            return;
        }
        let unsent = &self.body[self.body_sent..];
        let end = self.downstream_end && self.trailers.is_none();
        if !unsent.is_empty() || end {
            upstream.encode_data(unsent, end, out);
            self.body_sent = self.body.len();
        }
        if self.downstream_end && self.trailers.is_some() {
            // Envoy's HTTP/1 codec drops request trailers (no `enable_trailers`): the
            // chunked body just ends.
            upstream.encode_data(&[], true, out);
        }
        if !self.keep_written_body() {
            // Nothing to replay: drop what was written.
            self.body_whole &= self.body.is_empty();
            self.body.clear();
            self.body_sent = 0;
        }
        if self.body_read_disabled {
            // What piled up is now with the upstream connection (its watermarks take over).
            io.read_disable(false);
            self.body_read_disabled = false;
        }
    }

    /// Whether the body bytes written to the current attempt must be kept: for a retry, or
    /// for the replay on a new connection should the attempt's reused pooled connection turn
    /// out dead before any response byte (the upstream closed it while idle and the FIN was
    /// still in flight when it was lent). That replay is owed even without a retry policy;
    /// the bytes are kept only while such a death is possible (reused connection, no
    /// response byte yet, no replay made yet) and while they fit the buffer limit. Past it,
    /// they are dropped as written and such a request fails with Envoy's 503 as before.
    fn keep_written_body(&self) -> bool {
        if self.retain_body {
            return true;
        }
        let stale_possible = self.upstream.as_ref().is_some_and(|u| {
            !u.new_connection && u.state == UpstreamState::AwaitingHeaders && !u.response_bytes
        });
        stale_possible
            && self.body_whole
            && !self.replayed_after_stale_connection
            && self.body.len() <= self.buffer_limit
    }

    // === upstream events ===

    /// The new connection finished connecting (Envoy's `onPoolReady` for a new client).
    pub fn on_upstream_connected<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        io.disarm_timer(HcmTimer::ConnectTimeout);
        let new_connection = self.upstream.as_ref().filter(|u| u.new_connection);
        if let (Some(cluster), Some(upstream)) = (self.cluster.as_ref(), new_connection) {
            let took = io.now().saturating_duration_since(upstream.life.opened);
            cluster
                .stats()
                .upstream_cx_connect_ms
                .record(took.as_millis() as u64);
        }
        let new_host = new_connection.map(|u| u.upstream_host.clone());
        if let Some(cluster) = self.cluster.clone() {
            if self.upstream.is_some() && !self.request_counted {
                self.on_attached(&*cluster);
            }
            if let (Some(host), Some(pool)) = (new_host, self.pool) {
                self.count_overflow_for_waiters(&*cluster, &host, pool, io);
            }
        }
        if let Some(upstream) = self.upstream.as_mut() {
            upstream.state = UpstreamState::AwaitingHeaders;
        }
        self.on_pool_ready(cb, io);
    }

    /// A connection of `pool` was just handed to this stream (a new one connected, or a
    /// released one taken by a waiting stream): Envoy's `onUpstreamReady` then asks the
    /// breakers for a connection for the streams still waiting, and counts
    /// `upstream_cx_overflow` when refused (checked against Envoy 1.40: 3 and 5 requests at
    /// `max_connections: 1` count 4 and 8 while the first connects).
    fn count_overflow_for_waiters<Io: ConnectionIo<Upstream = U>>(
        &self,
        cluster: &dyn ClusterView,
        host_ref: &Arc<crate::upstream::cluster::Host>,
        pool: PoolKey,
        io: &mut Io,
    ) {
        let host_cx_active = || {
            host_ref
                .stats
                .cx_active
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        if io
            .pools()
            .waiters_refused(pool, cluster.resource_manager(), host_cx_active)
        {
            cluster.stats().upstream_cx_overflow.inc();
        }
    }

    /// Bytes from the upstream: decode the response, report outcomes.
    pub fn on_upstream_data<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        if let Some(upstream) = self.upstream.as_mut() {
            upstream.response_bytes |= !data.is_empty();
            // Envoy's `resetPerTryIdleTimer` on each piece of the response.
            if upstream.per_try_armed && !data.is_empty() {
                if let Some(idle) = self.decision.as_ref().and_then(|d| d.per_try_idle_timeout) {
                    io.arm_timer(HcmTimer::PerTryIdleTimeout, idle);
                }
            }
        }
        loop {
            let Some(upstream) = self.upstream.as_mut() else {
                data.clear();
                return;
            };
            let event = match upstream.decode(data) {
                Ok(Some(event)) => event,
                Ok(None) if end_stream => match upstream.on_eof(data) {
                    Ok(Some(event)) => event,
                    Ok(None) => {
                        self.on_upstream_closed(cb, io, out);
                        return;
                    }
                    Err(CodecError::PrematureClose)
                        if upstream.state != UpstreamState::Receiving && data.is_empty() =>
                    {
                        // Closed before any response: a reset, not a protocol error.
                        self.on_upstream_closed(cb, io, out);
                        return;
                    }
                    Err(e) => {
                        self.on_upstream_protocol_error(e, cb, io, out);
                        return;
                    }
                },
                Ok(None) => return,
                Err(e) => {
                    self.on_upstream_protocol_error(e, cb, io, out);
                    return;
                }
            };
            if !self.on_response_event(event, cb, io, out) {
                return;
            }
        }
    }

    /// One decoded response event. Returns false when decoding must stop (retry, done).
    fn on_response_event<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        event: ResponseEvent,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) -> bool {
        match event {
            ResponseEvent::Informational(head) => {
                // 100-continue was answered by the connection manager; Envoy drops upstream
                // 1xx heads (proxy_100_continue false).
                trace!(
                    "[C{}][S{}] dropping upstream {} response",
                    cb.connection_id,
                    cb.stream_id,
                    head.status
                );
                true
            }
            ResponseEvent::Headers(mut head) => {
                io.disarm_timer(HcmTimer::PerTryTimeout);
                let Some(cluster) = self.cluster.clone() else {
                    return false;
                };
                let status = head.status;
                let now = io.now();
                let Some(upstream) = self.upstream.as_mut() else {
                    return false;
                };
                upstream.charge_host(Some(status));
                let elapsed = upstream
                    .sent_at
                    .map(|t| t.elapsed_at(now))
                    .unwrap_or_default();
                if self.retry_response(&head, cb, io) {
                    cluster.stats().charge_retried_response(status);
                    debug!(
                        "[C{}][S{}] upstream {} is retriable: retrying",
                        cb.connection_id, cb.stream_id, status
                    );
                    self.abandon_attempt(io);
                    return false;
                }
                cluster.stats().charge_response(status);
                if !self.suppress_envoy_headers() {
                    let service_time = Decimal::new(elapsed.as_millis() as u64);
                    head.headers
                        .insert_generated("x-envoy-upstream-service-time", service_time.as_bytes());
                }
                self.response_started = true;
                let end = head.body.is_empty() && head.status != 101;
                debug!(
                    "[C{}][S{}] UpstreamRequest::decodeHeaders: upstream headers complete: {} (end_stream={end})",
                    cb.connection_id,
                    cb.stream_id,
                    head.status
                );
                out.push(UpstreamOutcome::Headers(head, end));
                if end {
                    // The codec still yields MessageComplete next; nothing more goes down.
                }
                true
            }
            ResponseEvent::Data(bytes) => {
                out.push(UpstreamOutcome::Data(bytes, false));
                true
            }
            ResponseEvent::Trailers(trailers) => {
                out.push(UpstreamOutcome::Trailers(trailers));
                true
            }
            ResponseEvent::MessageComplete => {
                match out.last_mut() {
                    // The head or the trailers already ended the stream.
                    Some(UpstreamOutcome::Headers(_, true))
                    | Some(UpstreamOutcome::Trailers(_)) => {}
                    // The end rides on the body chunk decoded with it (Envoy's codec hands the
                    // buffered body over with end_stream at onMessageComplete): one pass
                    // through the encoder chain, not two.
                    Some(UpstreamOutcome::Data(_, end)) => *end = true,
                    _ => out.push(UpstreamOutcome::End),
                }
                self.finish_upstream(io);
                false
            }
        }
    }

    /// Whether another attempt could be made at all: a retry state, nothing sent downstream
    /// yet, and the request body still at hand.
    fn can_retry(&self) -> bool {
        self.retry.is_some() && !self.response_started && (self.retain_body || self.body.is_empty())
    }

    /// Envoy's `shouldRetryHeaders` on a response head: true when a retry was scheduled (the
    /// response is dropped). Counts `upstream_rq_retry_success` when an earlier retry's answer
    /// is kept.
    fn retry_response<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        head: &ResponseHead,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) -> bool {
        if !self.can_retry() || !self.downstream_end {
            return false;
        }
        let (Some(cluster), Some(request)) = (self.cluster.clone(), self.request.as_ref()) else {
            return false;
        };
        let can_create = cluster.resource_manager().can_create_retry();
        let random = io.random();
        let Some(retry) = self.retry.as_mut() else {
            return false;
        };
        let status =
            retry.should_retry_headers(head.status, head, request, can_create, random, || {
                io.wall_now()
            });
        if !matches!(status, RetryStatus::Yes(_)) && retry.take_retry_success() {
            cluster.stats().upstream_rq_retry_success.inc();
        }
        self.apply_retry_status(status, cb, io)
    }

    /// Envoy's `shouldRetryReset` for an attempt that ended without a response head (`None`:
    /// its per-try timeout fired): true when a retry was scheduled. `request_sent`: the whole
    /// request had been written.
    fn retry_reset<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        reason: Option<ResetReason>,
        request_sent: bool,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) -> bool {
        if !self.can_retry() {
            return false;
        }
        let Some(cluster) = self.cluster.clone() else {
            return false;
        };
        let can_create = cluster.resource_manager().can_create_retry();
        let random = io.random();
        let Some(retry) = self.retry.as_mut() else {
            return false;
        };
        let status = match reason {
            Some(reason) => retry.should_retry_reset(
                reason.for_retry(),
                request_sent,
                false,
                can_create,
                random,
            ),
            // The per-try timeout is judged as a local reset of the attempt.
            None => retry.should_retry_per_try_timeout(false, can_create, random),
        };
        self.apply_retry_status(status, cb, io)
    }

    /// Acts on the retry state's answer (Envoy's router): `Yes` arms the back-off and holds a
    /// `max_retries` slot until the retry starts; `NoOverflow` (the breaker or budget is full,
    /// `upstream_rq_retry_overflow`) marks `UO` and `NoRetryLimitExceeded` marks `URX`, the
    /// attempt's outcome then goes to the client as it is.
    fn apply_retry_status<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        status: RetryStatus,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) -> bool {
        let Some(cluster) = self.cluster.clone() else {
            return false;
        };
        let stats = cluster.stats();
        match status {
            RetryStatus::Yes(delay) => {
                if !self.retry_counted {
                    cluster.resource_manager().retries.inc();
                    self.retry_counted = true;
                }
                debug!(
                    "[C{}][S{}] retrying in {delay:?}",
                    cb.connection_id, cb.stream_id
                );
                io.arm_timer(HcmTimer::RetryBackoff, delay);
                true
            }
            RetryStatus::NoOverflow => {
                stats.upstream_rq_retry_overflow.inc();
                cb.set_response_flag(ResponseFlag::UpstreamOverflow);
                false
            }
            RetryStatus::NoRetryLimitExceeded => {
                stats.upstream_rq_retry_limit_exceeded.inc();
                cb.set_response_flag(ResponseFlag::UpstreamRetryLimitExceeded);
                false
            }
            RetryStatus::No => false,
        }
    }

    /// The back-off is over or the stream ends: the retry leaves the `max_retries` breaker.
    fn retry_end(&mut self) {
        if std::mem::take(&mut self.retry_counted) {
            if let Some(cluster) = &self.cluster {
                cluster.resource_manager().retries.dec();
            }
        }
    }

    /// The response is complete: the connection goes back to the pool or is closed.
    fn finish_upstream<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        io.disarm_timer(HcmTimer::RouteTimeout);
        Self::disarm_per_try_timeouts(io);
        self.done = true;
        let Some(mut upstream) = self.upstream.take() else {
            return;
        };
        upstream.end_host_request();
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let stats = cluster.stats();
        self.request_end();
        let reusable = upstream.reusable();
        let settings = cluster.pool_settings();
        let now = io.now();
        if let Some(request_complete) = self.downstream_end_at {
            // Envoy's `onUpstreamComplete`: from the end of the downstream request (over every
            // attempt) to the end of the upstream response.
            let took = request_complete.elapsed_at(now);
            stats.record_upstream_rq_time(took.as_millis() as u64);
        }
        if self.upstream_read_disabled {
            io.read_disable_upstream(upstream.conn, false);
            self.upstream_read_disabled = false;
        }
        let pooled = io.pools().release(
            upstream.pool,
            &upstream.upstream_host,
            upstream.conn,
            upstream.life,
            reusable,
            &settings,
            cluster.resource_manager(),
            now,
        );
        if pooled {
            debug!(
                "UpstreamRequest::onUpstreamComplete: connection {:?} back to the pool",
                upstream.conn
            );
            io.release_upstream(upstream.conn);
            // Envoy's `onUpstreamReady`: the oldest stream waiting for this host gets it.
            self.notify_pool(upstream.pool, false, io);
        } else {
            if reusable {
                stats.upstream_cx_max_requests.inc();
            }
            debug!(
                "UpstreamRequest::onUpstreamComplete: closing connection {:?}",
                upstream.conn
            );
            stats.upstream_cx_destroy_local.inc();
            stats.upstream_cx_destroy.inc();
            stats.upstream_cx_active.dec();
            stats.record_cx_closed(&upstream.life, true, now);
            cluster::dec(&upstream.upstream_host.stats.cx_active);
            io.close_upstream(
                upstream.conn,
                crate::http::conn_manager_io::CloseHow::NoFlush,
            );
            // A connection slot freed up.
            self.notify_pool(upstream.pool, true, io);
        }
    }

    /// Drops the current attempt's connection (closed, never pooled).
    fn abandon_attempt<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.abandon_attempt_with(io, crate::http::conn_manager_io::CloseHow::NoFlush);
    }

    /// Drops the current attempt's connection, closing it `how`.
    fn abandon_attempt_with<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        io: &mut Io,
        how: crate::http::conn_manager_io::CloseHow,
    ) {
        let Some(mut upstream) = self.upstream.take() else {
            return;
        };
        upstream.end_host_request();
        cluster::dec(&upstream.upstream_host.stats.cx_active);
        self.request_end();
        self.pending_end();
        if let Some(cluster) = self.cluster.clone() {
            io.pools()
                .on_stream_failed(upstream.pool, cluster.resource_manager());
            let stats = cluster.stats();
            stats.upstream_cx_destroy_local.inc();
            stats.upstream_cx_destroy.inc();
            stats.upstream_cx_active.dec();
            stats.record_cx_closed(&upstream.life, upstream.connected(), io.now());
            if upstream.connected() {
                // Envoy's CodecClient closing with a request on it.
                stats.upstream_cx_destroy_with_active_rq.inc();
                stats.upstream_cx_destroy_local_with_active_rq.inc();
            }
        }
        io.disarm_timer(HcmTimer::ConnectTimeout);
        Self::disarm_per_try_timeouts(io);
        io.close_upstream(upstream.conn, how);
        self.notify_pool(upstream.pool, true, io);
    }

    /// The upstream connection closed (EOF or error) while this attempt used it.
    pub fn on_upstream_closed<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        let Some(mut upstream) = self.upstream.take() else {
            return;
        };
        upstream.end_host_request();
        cluster::dec(&upstream.upstream_host.stats.cx_active);
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let stats = cluster.stats();
        io.pools()
            .on_stream_failed(upstream.pool, cluster.resource_manager());
        self.request_end();
        self.pending_end();
        stats.upstream_cx_destroy.inc();
        stats.upstream_cx_destroy_remote.inc();
        stats.upstream_cx_active.dec();
        stats.record_cx_closed(&upstream.life, upstream.connected(), io.now());
        Self::disarm_per_try_timeouts(io);
        let reason = if upstream.connected() {
            stats.upstream_rq_rx_reset.inc();
            stats.upstream_cx_destroy_with_active_rq.inc();
            stats.upstream_cx_destroy_remote_with_active_rq.inc();
            ResetReason::ConnectionTermination
        } else {
            io.disarm_timer(HcmTimer::ConnectTimeout);
            stats.upstream_cx_connect_fail.inc();
            cluster::inc(&upstream.upstream_host.stats.cx_connect_fail);
            self.purge_pending(upstream.pool, PoolFailure::ConnectionFailure, io);
            ResetReason::ConnectionFailure
        };
        self.notify_pool(upstream.pool, true, io);
        debug!(
            "[C{}][S{}] upstream reset: {}",
            cb.connection_id,
            cb.stream_id,
            reason.as_str()
        );
        if self.response_started {
            cb.set_response_flag(ResponseFlag::UpstreamConnectionTermination);
            self.done = true;
            out.push(UpstreamOutcome::Reset);
            return;
        }
        // A pooled connection can pass the idle check and still die under the request (the
        // upstream's FIN was in flight). Nothing of a response arrived, so the request never
        // reached the application on that connection: replay it once on a new connection
        // instead of failing it (what a client would do, RFC 9112 §9.3.1). Its body was kept
        // for this (`keep_written_body`) unless it outgrew the buffer limit.
        let replayable = self.body_whole;
        if reason == ResetReason::ConnectionTermination
            && !upstream.new_connection
            && !upstream.response_bytes
            && !self.replayed_after_stale_connection
            && replayable
            && !self.done
        {
            debug!(
                "[C{}][S{}] reused connection {:?} closed before the response: replaying on a new connection",
                cb.connection_id,
                cb.stream_id,
                upstream.conn
            );
            self.replayed_after_stale_connection = true;
            self.start_attempt(cb, io);
            if let Some(reply) = cb.state.local_reply.take() {
                out.push(UpstreamOutcome::LocalReply(reply));
            }
            return;
        }
        self.on_reset_before_headers(reason, upstream.request_complete, cb, io);
        if let Some(reply) = cb.state.local_reply.take() {
            out.push(UpstreamOutcome::LocalReply(reply));
        }
    }

    fn on_upstream_protocol_error<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        error: CodecError,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        debug!(
            "[C{}][S{}] upstream protocol error: {}",
            cb.connection_id, cb.stream_id, error
        );
        if let Some(cluster) = self.cluster.clone() {
            cluster.stats().upstream_cx_protocol_error.inc();
        }
        self.abandon_attempt(io);
        cb.set_response_flag(ResponseFlag::UpstreamProtocolError);
        self.done = true;
        if self.response_started {
            out.push(UpstreamOutcome::Reset);
            return;
        }
        io.disarm_timer(HcmTimer::RouteTimeout);
        let reply = ResetReason::ProtocolError.local_reply();
        if let Some(cluster) = &self.cluster {
            cluster.stats().charge_response(reply.status);
        }
        out.push(UpstreamOutcome::LocalReply(reply));
    }

    /// A reset before the response head: retry, or Envoy's 503. `request_sent`: the whole
    /// request had been written upstream (for `reset-before-request`).
    fn on_reset_before_headers<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        reason: ResetReason,
        request_sent: bool,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        if self.retry_reset(Some(reason), request_sent, cb, io) {
            return;
        }
        cb.set_response_flag(reason.flag());
        self.fail_locally(reason.local_reply(), cb, io);
    }

    /// The router answers in the upstream's place before any response (Envoy's
    /// `onUpstreamAbort` after `chargeUpstreamAbort`): the reply's status is charged to the
    /// cluster as the upstream's (`upstream_rq_503`, `upstream_rq_5xx`, `upstream_rq_completed`).
    fn fail_locally<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        reply: LocalReply,
        cb: &mut FilterCallbacks,
        io: &mut Io,
    ) {
        if let Some(cluster) = &self.cluster {
            cluster.stats().charge_response(reply.status);
        }
        io.disarm_timer(HcmTimer::RouteTimeout);
        Self::disarm_per_try_timeouts(io);
        self.cancel_pending(io);
        self.retry_end();
        self.done = true;
        cb.send_local_reply(reply);
    }

    // === timers ===

    pub fn on_timer<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        timer: HcmTimer,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        match timer {
            HcmTimer::RetryBackoff if !self.done => {
                // Envoy's `doRetry`.
                self.retry_end();
                if let Some(cluster) = &self.cluster {
                    // Counted when the retry starts, as Envoy 1.40 shows them (both stay 0
                    // while the retry waits in its back-off; its max_retries slot is held).
                    cluster.stats().upstream_rq_retry.inc();
                    if self.retry.as_ref().is_some_and(|r| r.backoff_ratelimited()) {
                        cluster.stats().upstream_rq_retry_backoff_ratelimited.inc();
                    } else {
                        cluster.stats().upstream_rq_retry_backoff_exponential.inc();
                    }
                }
                self.set_retry_timeout_headers(io.now());
                self.start_attempt(cb, io);
                if let Some(reply) = cb.state.local_reply.take() {
                    out.push(UpstreamOutcome::LocalReply(reply));
                }
            }
            HcmTimer::ConnectTimeout => {
                let connecting = self.upstream.as_ref().is_some_and(|u| !u.connected());
                if !connecting {
                    return;
                }
                if let Some(cluster) = &self.cluster {
                    cluster.stats().upstream_cx_connect_timeout.inc();
                    cluster.stats().upstream_cx_connect_fail.inc();
                }
                if let Some(upstream) = &self.upstream {
                    cluster::inc(&upstream.upstream_host.stats.cx_connect_fail);
                    let pool = upstream.pool;
                    self.purge_pending(pool, PoolFailure::Timeout, io);
                }
                self.abandon_attempt(io);
                self.on_reset_before_headers(ResetReason::ConnectionTimeout, false, cb, io);
                if let Some(reply) = cb.state.local_reply.take() {
                    out.push(UpstreamOutcome::LocalReply(reply));
                }
            }
            HcmTimer::PerTryTimeout | HcmTimer::PerTryIdleTimeout => {
                let idle = timer == HcmTimer::PerTryIdleTimeout;
                // Envoy's `onPerTryTimeout` is ignored once the response started;
                // `onPerTryIdleTimeout` (no response byte for that long) also runs in the body.
                if self.done || self.upstream.is_none() || (self.response_started && !idle) {
                    return;
                }
                let details = if idle {
                    "upstream_per_try_idle_timeout"
                } else {
                    "upstream_per_try_timeout"
                };
                debug!("[C{}][S{}] {details}", cb.connection_id, cb.stream_id);
                if let Some(cluster) = &self.cluster {
                    let stats = cluster.stats();
                    let counter = if idle {
                        &stats.upstream_rq_per_try_idle_timeout
                    } else {
                        &stats.upstream_rq_per_try_timeout
                    };
                    counter.inc();
                }
                self.on_per_try_timeout(details, cb, io, out);
            }
            HcmTimer::RouteTimeout => {
                if self.done && self.upstream.is_none() {
                    return;
                }
                // Envoy's `onResponseTimeout` charges the attempt in flight (connected,
                // connecting or waiting for a connection; not a retry's back-off) and its host.
                let in_flight = self.upstream.is_some() || self.pending.is_some();
                if let Some(upstream) = &self.upstream {
                    cluster::inc(&upstream.upstream_host.stats.rq_timeout);
                }
                self.abandon_attempt(io);
                self.on_route_timeout(in_flight, cb, io, out);
            }
            _ => {}
        }
    }

    /// A per-try timer fired (Envoy's `onPerTryTimeoutCommon`): the host counts a timeout,
    /// the attempt's connection is closed, and the request is retried if its policy retries
    /// a reset (`reset`, `5xx`, `gateway-error`). Otherwise (Envoy's `chargeUpstreamAbort` and
    /// `onUpstreamTimeoutAbort`): the cluster is charged a 504 unless the response started, and
    /// the client gets 504 `upstream request timeout` with `UT` and `details`, or, mid-response,
    /// a reset. Unlike the route timeout it does not count `upstream_rq_timeout`.
    fn on_per_try_timeout<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        details: &'static str,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        if let Some(upstream) = &self.upstream {
            cluster::inc(&upstream.upstream_host.stats.rq_timeout);
        }
        self.abandon_attempt(io);
        if self.retry_reset(None, true, cb, io) {
            return;
        }
        io.disarm_timer(HcmTimer::RouteTimeout);
        io.disarm_timer(HcmTimer::RetryBackoff);
        self.retry_end();
        self.cancel_pending(io);
        cb.set_response_flag(ResponseFlag::UpstreamRequestTimeout);
        self.done = true;
        if self.response_started {
            cb.state.response_code_details = details;
            out.push(UpstreamOutcome::Reset);
            return;
        }
        if let Some(cluster) = &self.cluster {
            cluster.stats().charge_response(504);
        }
        out.push(UpstreamOutcome::LocalReply(LocalReply::new(
            504,
            "upstream request timeout",
            details,
        )));
    }

    /// The route's global timeout (Envoy's `onResponseTimeout` → `onUpstreamTimeoutAbort`):
    /// `upstream_rq_timeout`, `UT`, details `response_timeout`; a 504 charged to the cluster
    /// for an attempt `in_flight` before the response started; 504 `upstream request
    /// timeout` to the client, or a reset mid-response.
    fn on_route_timeout<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        in_flight: bool,
        cb: &mut FilterCallbacks,
        io: &mut Io,
        out: &mut Vec<UpstreamOutcome>,
    ) {
        io.disarm_timer(HcmTimer::RetryBackoff);
        self.retry_end();
        self.cancel_pending(io);
        if let Some(cluster) = &self.cluster {
            cluster.stats().upstream_rq_timeout.inc();
        }
        cb.set_response_flag(ResponseFlag::UpstreamRequestTimeout);
        self.done = true;
        if self.response_started {
            cb.state.response_code_details = "response_timeout";
            out.push(UpstreamOutcome::Reset);
            return;
        }
        if let (true, Some(cluster)) = (in_flight, &self.cluster) {
            cluster.stats().charge_response(504);
        }
        out.push(UpstreamOutcome::LocalReply(LocalReply::new(
            504,
            "upstream request timeout",
            "response_timeout",
        )));
    }

    // === flow control and teardown ===

    /// The downstream's write buffer crossed a watermark: pause or resume the upstream reads.
    pub fn on_downstream_watermark<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        above: bool,
        io: &mut Io,
    ) {
        if let Some(upstream) = &self.upstream {
            if above != self.upstream_read_disabled {
                io.read_disable_upstream(upstream.conn, above);
                self.upstream_read_disabled = above;
            }
        }
    }

    /// The upstream connection's write buffer crossed a watermark: pause or resume the
    /// downstream reads (request body flow control).
    pub fn on_upstream_watermark<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        above: bool,
        io: &mut Io,
    ) {
        if above != self.watermark_read_disabled {
            io.read_disable(above);
            self.watermark_read_disabled = above;
        }
    }

    /// The stream is going away (downstream reset or done): drop the attempt's connection
    /// unless it was already returned. The router's timers (route, per-try, back-off,
    /// connect) are stream timers: the connection manager disarms them all with the
    /// stream's (`ConnectionIo::disarm_stream_timers`, right after this).
    pub fn on_destroy<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.retry_end();
        if self.pending_counted {
            // Given up before getting a connection (waiting, or while connecting).
            if let Some(cluster) = &self.cluster {
                cluster.stats().upstream_rq_cancelled.inc();
            }
        }
        if self.upstream.is_some() {
            if let Some(cluster) = &self.cluster {
                cluster.stats().upstream_rq_tx_reset.inc();
            }
            // What was already written (the request, as Envoy would have sent it) still
            // reaches the upstream; then the connection closes.
            self.abandon_attempt_with(io, crate::http::conn_manager_io::CloseHow::FlushWrite);
        }
        self.cancel_pending(io);
        // Leave the downstream readable for the next request on the connection.
        if self.body_read_disabled {
            io.read_disable(false);
            self.body_read_disabled = false;
        }
        if self.watermark_read_disabled {
            io.read_disable(false);
            self.watermark_read_disabled = false;
        }
        self.done = true;
    }

    /// The response started downstream (a 101 turns the exchange into a tunnel).
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// Tunnel mode (after a 101): downstream bytes go straight to the upstream.
    pub fn tunnel_write<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        io: &mut Io,
    ) {
        if let Some(upstream) = &self.upstream {
            io.write_upstream(upstream.conn, data, end_stream);
        }
    }

    pub fn now_or(&self, now: Instant) -> Instant {
        now
    }
}
