//! `cluster.<name>.upstream_rq_*` / `upstream_cx_*` stats the router and the pools keep, with
//! Envoy's names. Handles are created once per cluster per worker; per-status-code counters
//! (`upstream_rq_200`) are created on first use and cached.

use std::cell::{OnceCell, RefCell};
use std::time::Instant;

use crate::stats::{Counter, Gauge, Histogram, ImportMode, Store, Unit};
use crate::upstream::conn_pool::ClientLife;

/// The stats of one cluster, as the router updates them.
pub struct ClusterStats {
    scope: Store,
    pub upstream_rq_total: Counter,
    pub upstream_rq_completed: Counter,
    pub upstream_rq_active: Gauge,
    /// Created at its first value, as Envoy charges it (`chargeResponseTiming`): a cluster
    /// that never answered has none in `/stats` (Envoy 1.40: absent after a 503 connect
    /// failure, where an eager one printed `No recorded values`).
    upstream_rq_time: OnceCell<Histogram>,
    pub upstream_cx_connect_ms: Histogram,
    pub upstream_cx_length_ms: Histogram,
    pub upstream_rq_per_cx: Histogram,
    pub upstream_rq_timeout: Counter,
    pub upstream_rq_per_try_timeout: Counter,
    pub upstream_rq_per_try_idle_timeout: Counter,
    pub upstream_rq_retry: Counter,
    pub upstream_rq_retry_success: Counter,
    pub upstream_rq_retry_overflow: Counter,
    pub upstream_rq_retry_limit_exceeded: Counter,
    pub upstream_rq_retry_backoff_exponential: Counter,
    pub upstream_rq_retry_backoff_ratelimited: Counter,
    pub upstream_rq_pending_overflow: Counter,
    pub upstream_rq_pending_total: Counter,
    pub upstream_rq_pending_active: Gauge,
    pub upstream_rq_pending_failure_eject: Counter,
    pub upstream_rq_cancelled: Counter,
    pub upstream_rq_rx_reset: Counter,
    pub upstream_rq_tx_reset: Counter,
    pub upstream_cx_total: Counter,
    pub upstream_cx_http1_total: Counter,
    pub upstream_cx_active: Gauge,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_cx_overflow: Counter,
    pub upstream_cx_pool_overflow: Counter,
    pub upstream_cx_idle_timeout: Counter,
    pub upstream_cx_max_requests: Counter,
    pub upstream_cx_destroy: Counter,
    pub upstream_cx_destroy_remote: Counter,
    pub upstream_cx_destroy_local: Counter,
    pub upstream_cx_destroy_with_active_rq: Counter,
    pub upstream_cx_destroy_local_with_active_rq: Counter,
    pub upstream_cx_destroy_remote_with_active_rq: Counter,
    pub upstream_cx_protocol_error: Counter,
    pub upstream_cx_none_healthy: Counter,
    pub upstream_cx_rx_bytes_total: Counter,
    pub upstream_cx_tx_bytes_total: Counter,
    by_code: ByCode,
    /// `retry.upstream_rq_<code>` / `retry.upstream_rq_<n>xx` (created on first use).
    retried_by_code: ByCode,
    /// `retry.upstream_rq_completed` (created on first use).
    retried_completed: OnceCell<Counter>,
}

impl ClusterStats {
    /// Records one upstream response time (`upstream_rq_time`, created at its first value).
    #[inline]
    pub fn record_upstream_rq_time(&self, ms: u64) {
        self.upstream_rq_time
            .get_or_init(|| self.scope.histogram("upstream_rq_time", Unit::Milliseconds))
            .record(ms);
    }

    /// Handles under `cluster.<name>.` of `store`.
    pub fn new(store: &Store, cluster: &str) -> ClusterStats {
        let scope = store.scope(&format!("cluster.{cluster}"));
        let c = |name: &str| scope.counter(name);
        ClusterStats {
            upstream_rq_total: c("upstream_rq_total"),
            upstream_rq_completed: c("upstream_rq_completed"),
            upstream_rq_active: scope.gauge("upstream_rq_active", ImportMode::Accumulate),
            upstream_rq_time: OnceCell::new(),
            upstream_cx_connect_ms: scope.histogram("upstream_cx_connect_ms", Unit::Milliseconds),
            upstream_cx_length_ms: scope.histogram("upstream_cx_length_ms", Unit::Milliseconds),
            upstream_rq_per_cx: scope.histogram("upstream_rq_per_cx", Unit::Unspecified),
            upstream_rq_timeout: c("upstream_rq_timeout"),
            upstream_rq_per_try_timeout: c("upstream_rq_per_try_timeout"),
            upstream_rq_per_try_idle_timeout: c("upstream_rq_per_try_idle_timeout"),
            upstream_rq_retry: c("upstream_rq_retry"),
            upstream_rq_retry_success: c("upstream_rq_retry_success"),
            upstream_rq_retry_overflow: c("upstream_rq_retry_overflow"),
            upstream_rq_retry_limit_exceeded: c("upstream_rq_retry_limit_exceeded"),
            upstream_rq_retry_backoff_exponential: c("upstream_rq_retry_backoff_exponential"),
            upstream_rq_retry_backoff_ratelimited: c("upstream_rq_retry_backoff_ratelimited"),
            upstream_rq_pending_overflow: c("upstream_rq_pending_overflow"),
            upstream_rq_pending_total: c("upstream_rq_pending_total"),
            upstream_rq_pending_active: scope
                .gauge("upstream_rq_pending_active", ImportMode::Accumulate),
            upstream_rq_pending_failure_eject: c("upstream_rq_pending_failure_eject"),
            upstream_rq_cancelled: c("upstream_rq_cancelled"),
            upstream_rq_rx_reset: c("upstream_rq_rx_reset"),
            upstream_rq_tx_reset: c("upstream_rq_tx_reset"),
            upstream_cx_total: c("upstream_cx_total"),
            upstream_cx_http1_total: c("upstream_cx_http1_total"),
            upstream_cx_active: scope.gauge("upstream_cx_active", ImportMode::Accumulate),
            upstream_cx_connect_fail: c("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: c("upstream_cx_connect_timeout"),
            upstream_cx_overflow: c("upstream_cx_overflow"),
            upstream_cx_pool_overflow: c("upstream_cx_pool_overflow"),
            upstream_cx_idle_timeout: c("upstream_cx_idle_timeout"),
            upstream_cx_max_requests: c("upstream_cx_max_requests"),
            upstream_cx_destroy: c("upstream_cx_destroy"),
            upstream_cx_destroy_remote: c("upstream_cx_destroy_remote"),
            upstream_cx_destroy_local: c("upstream_cx_destroy_local"),
            upstream_cx_destroy_with_active_rq: c("upstream_cx_destroy_with_active_rq"),
            upstream_cx_destroy_local_with_active_rq: c("upstream_cx_destroy_local_with_active_rq"),
            upstream_cx_destroy_remote_with_active_rq: c(
                "upstream_cx_destroy_remote_with_active_rq",
            ),
            upstream_cx_protocol_error: c("upstream_cx_protocol_error"),
            upstream_cx_none_healthy: c("upstream_cx_none_healthy"),
            upstream_cx_rx_bytes_total: c("upstream_cx_rx_bytes_total"),
            upstream_cx_tx_bytes_total: c("upstream_cx_tx_bytes_total"),
            by_code: ByCode::default(),
            retried_by_code: ByCode::default(),
            retried_completed: OnceCell::new(),
            scope,
        }
    }

    /// `upstream_rq_<code>`, `upstream_rq_<n>xx` and `upstream_rq_completed` for the answer
    /// a client gets, as its head goes out (Envoy's `chargeResponseStat`): the upstream's, or
    /// the router's in its place (a reset, a timeout, an overflow).
    pub fn charge_response(&self, status: u16) {
        self.by_code.charge(&self.scope, "", status);
        self.upstream_rq_completed.inc();
    }

    /// An upstream connection is gone, whatever closed it (Envoy's `ActiveClient` closing):
    /// `upstream_cx_length_ms` from its open to `now` (a failed connect counts too), and, if
    /// it ever connected, `upstream_rq_per_cx` with the requests it carried (Envoy records
    /// that one only for a completed handshake). The caller counts `upstream_cx_destroy*`.
    pub fn record_cx_closed(&self, life: &ClientLife, connected: bool, now: Instant) {
        let length = now.saturating_duration_since(life.opened);
        self.upstream_cx_length_ms.record(length.as_millis() as u64);
        if connected {
            self.upstream_rq_per_cx.record(u64::from(life.requests));
        }
    }

    /// A response that was retried (dropped): Envoy charges it under `retry.` only
    /// (`retry.upstream_rq_<code>`, `retry.upstream_rq_<n>xx`, `retry.upstream_rq_completed`),
    /// so the plain `upstream_rq_<code>` counts the answers clients got.
    pub fn charge_retried_response(&self, status: u16) {
        self.retried_by_code.charge(&self.scope, "retry.", status);
        self.retried_completed
            .get_or_init(|| self.scope.counter("retry.upstream_rq_completed"))
            .inc();
    }
}

/// `upstream_rq_<code>` and `upstream_rq_<n>xx` by status code, created on first use. A list
/// in the order the codes were first charged: a cluster answers a handful of codes and mostly
/// one (200), so the usual charge finds its counters at the first compare.
#[derive(Default)]
struct ByCode {
    codes: RefCell<Vec<(u16, Counter, Counter)>>,
}

impl ByCode {
    fn charge(&self, scope: &Store, prefix: &str, status: u16) {
        if let Some((_, code, class)) = self.codes.borrow().iter().find(|c| c.0 == status) {
            code.inc();
            class.inc();
            return;
        }
        self.add(scope, prefix, status);
    }

    /// The first charge of `status`: its counters are created (once per cluster, worker and
    /// status code).
    #[inline(never)]
    fn add(&self, scope: &Store, prefix: &str, status: u16) {
        let code = scope.counter(&format!("{prefix}upstream_rq_{status}"));
        let class = scope.counter(&format!("{prefix}upstream_rq_{}xx", status / 100));
        code.inc();
        class.inc();
        self.codes.borrow_mut().push((status, code, class));
    }
}
