//! `http.<stat_prefix>.*` stats of the HTTP connection manager and its router filter, with
//! Envoy's names (`ConnectionManagerNamedStats`, the router's `rq_total`/`no_route`/...).
//! Handles are created once per listener config (never looked up per request).

use crate::stats::{Counter, Gauge, Histogram, ImportMode, Store, Unit};

pub struct HcmStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub downstream_cx_http1_total: Counter,
    pub downstream_cx_http1_active: Gauge,
    pub downstream_cx_destroy: Counter,
    pub downstream_cx_destroy_remote: Counter,
    pub downstream_cx_destroy_local: Counter,
    pub downstream_cx_destroy_active_rq: Counter,
    pub downstream_cx_destroy_remote_active_rq: Counter,
    pub downstream_cx_destroy_local_active_rq: Counter,
    pub downstream_cx_idle_timeout: Counter,
    /// Closes whose `delayed_close_timeout` ran out before the client closed.
    pub downstream_cx_delayed_close_timeout: Counter,
    pub downstream_cx_drain_close: Counter,
    pub downstream_cx_protocol_error: Counter,
    pub downstream_cx_rx_bytes_total: Counter,
    pub downstream_cx_tx_bytes_total: Counter,
    pub downstream_cx_upgrades_total: Counter,
    pub downstream_cx_upgrades_active: Gauge,
    pub downstream_cx_length_ms: Histogram,
    pub downstream_rq_total: Counter,
    pub downstream_rq_http1_total: Counter,
    pub downstream_rq_active: Gauge,
    pub downstream_rq_completed: Counter,
    pub downstream_rq_1xx: Counter,
    pub downstream_rq_2xx: Counter,
    pub downstream_rq_3xx: Counter,
    pub downstream_rq_4xx: Counter,
    pub downstream_rq_5xx: Counter,
    pub downstream_rq_time: Histogram,
    pub downstream_rq_idle_timeout: Counter,
    pub downstream_rq_timeout: Counter,
    pub downstream_rq_header_timeout: Counter,
    pub downstream_rq_rx_reset: Counter,
    pub downstream_rq_tx_reset: Counter,
    pub downstream_rq_too_large: Counter,
    pub downstream_rq_ws_on_non_ws_route: Counter,
    pub downstream_rq_rejected_via_ip_detection: Counter,
    pub downstream_rq_response_before_rq_complete: Counter,
    pub rq_total: Counter,
    pub no_route: Counter,
    pub rq_direct_response: Counter,
    pub rq_redirect: Counter,
    pub rq_reset_after_downstream_response_started: Counter,
}

impl HcmStats {
    /// Handles under `http.<stat_prefix>.` of `store`.
    pub fn new(store: &Store, stat_prefix: &str) -> HcmStats {
        let scope = store.scope(&format!("http.{stat_prefix}"));
        let c = |name: &str| scope.counter(name);
        let g = |name: &str| scope.gauge(name, ImportMode::Accumulate);
        HcmStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: g("downstream_cx_active"),
            downstream_cx_http1_total: c("downstream_cx_http1_total"),
            downstream_cx_http1_active: g("downstream_cx_http1_active"),
            downstream_cx_destroy: c("downstream_cx_destroy"),
            downstream_cx_destroy_remote: c("downstream_cx_destroy_remote"),
            downstream_cx_destroy_local: c("downstream_cx_destroy_local"),
            downstream_cx_destroy_active_rq: c("downstream_cx_destroy_active_rq"),
            downstream_cx_destroy_remote_active_rq: c("downstream_cx_destroy_remote_active_rq"),
            downstream_cx_destroy_local_active_rq: c("downstream_cx_destroy_local_active_rq"),
            downstream_cx_idle_timeout: c("downstream_cx_idle_timeout"),
            downstream_cx_delayed_close_timeout: c("downstream_cx_delayed_close_timeout"),
            downstream_cx_drain_close: c("downstream_cx_drain_close"),
            downstream_cx_protocol_error: c("downstream_cx_protocol_error"),
            downstream_cx_rx_bytes_total: c("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: c("downstream_cx_tx_bytes_total"),
            downstream_cx_upgrades_total: c("downstream_cx_upgrades_total"),
            downstream_cx_upgrades_active: g("downstream_cx_upgrades_active"),
            downstream_cx_length_ms: scope.histogram("downstream_cx_length_ms", Unit::Milliseconds),
            downstream_rq_total: c("downstream_rq_total"),
            downstream_rq_http1_total: c("downstream_rq_http1_total"),
            downstream_rq_active: g("downstream_rq_active"),
            downstream_rq_completed: c("downstream_rq_completed"),
            downstream_rq_1xx: c("downstream_rq_1xx"),
            downstream_rq_2xx: c("downstream_rq_2xx"),
            downstream_rq_3xx: c("downstream_rq_3xx"),
            downstream_rq_4xx: c("downstream_rq_4xx"),
            downstream_rq_5xx: c("downstream_rq_5xx"),
            downstream_rq_time: scope.histogram("downstream_rq_time", Unit::Milliseconds),
            downstream_rq_idle_timeout: c("downstream_rq_idle_timeout"),
            downstream_rq_timeout: c("downstream_rq_timeout"),
            downstream_rq_header_timeout: c("downstream_rq_header_timeout"),
            downstream_rq_rx_reset: c("downstream_rq_rx_reset"),
            downstream_rq_tx_reset: c("downstream_rq_tx_reset"),
            downstream_rq_too_large: c("downstream_rq_too_large"),
            downstream_rq_ws_on_non_ws_route: c("downstream_rq_ws_on_non_ws_route"),
            downstream_rq_rejected_via_ip_detection: c("downstream_rq_rejected_via_ip_detection"),
            downstream_rq_response_before_rq_complete: c(
                "downstream_rq_response_before_rq_complete",
            ),
            rq_total: c("rq_total"),
            no_route: c("no_route"),
            rq_direct_response: c("rq_direct_response"),
            rq_redirect: c("rq_redirect"),
            rq_reset_after_downstream_response_started: c(
                "rq_reset_after_downstream_response_started",
            ),
        }
    }

    /// `downstream_rq_<n>xx` for a response status.
    pub fn charge_response(&self, status: u16) {
        match status / 100 {
            1 => self.downstream_rq_1xx.inc(),
            2 => self.downstream_rq_2xx.inc(),
            3 => self.downstream_rq_3xx.inc(),
            4 => self.downstream_rq_4xx.inc(),
            _ => self.downstream_rq_5xx.inc(),
        }
    }
}
