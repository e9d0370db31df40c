//! The admin server: what every admin request can read or change, and the dispatch of a
//! request to its handler (Envoy's `AdminImpl` with its handler table).
//!
//! Lives on the main thread (the admin listener runs on the main dispatcher), shared with the
//! admin filter of each admin connection through an `Arc`. Everything it reads is shared,
//! read-mostly state: the stats store (lock-free per-worker shards, summed on read), the
//! cluster manager's snapshots, host atomics, each dispatcher's `DispatcherStats` atomics. A
//! handler never posts to a worker and waits, so a slow or stuck worker cannot stall the admin
//! and the admin cannot stall a worker. What changes the server (quit, drain) goes through the
//! [`ServerControl`] the server installs.
//!
//! Built by `server::instance`: [`AdminServer::new`] before the workers start, then
//! `set_listeners`, `add_dispatcher`, `set_cluster_manager`, `set_control` as those exist.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use log::info;
use reactor::DispatcherStats;
use regex::Regex;

use super::clusters;
use super::endpoints;
use super::filter::AdminFilter;
use super::info;
use super::json::pretty;
use super::logging;
use super::query::Query;
use super::reactor_stats::{self, DispatcherEntry, DispatcherStatsFeeder};
use crate::access_log::{AccessLog, StreamInfo};
use crate::config::Bootstrap;
use crate::http::conn_manager_stats::HcmStats;
use crate::network::filter_chain::{FilterChain as FcChain, FilterChainManager};
use crate::network::listener::{FilterChain, ListenerConfig};
use crate::server::options::Options;
use crate::stats::{
    Counter, MemoryUse, ServerState, ServerStats, StatsRequest, StatsRequestError, Store,
    TagProducer,
};
use crate::upstream::cluster_manager::ClusterManagerHandle;

const TEXT: &str = "text/plain; charset=UTF-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=UTF-8";

/// What the admin asks the server to do; implemented by `server::instance`.
pub trait ServerControl: Send + Sync {
    /// Leave the main loop and shut down as after a second SIGTERM (`/quitquitquit`), once
    /// the response is written.
    fn quit(&self);
    /// `/drain_listeners`: stop every listener on every worker, connections already accepted
    /// continue; with `graceful`, drain the connections and stop the listeners after the
    /// drain time; with `skip_exit`, drain the connections and never stop the listeners.
    fn drain_listeners(&self, graceful: bool, skip_exit: bool);
    /// Reopen every access log file (`/reopen_logs`, SIGUSR1).
    fn reopen_logs(&self);
}

/// Something to do once the response is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterResponse {
    Nothing,
    Quit,
}

/// An admin response before HTTP framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub after: AfterResponse,
}

impl AdminResponse {
    fn new(status: u16, content_type: &'static str, body: String) -> AdminResponse {
        AdminResponse {
            status,
            content_type,
            body,
            after: AfterResponse::Nothing,
        }
    }

    fn text(status: u16, body: impl Into<String>) -> AdminResponse {
        AdminResponse::new(status, TEXT, body.into())
    }

    fn json(value: &serde_json::Value) -> AdminResponse {
        AdminResponse::new(200, JSON, pretty(value))
    }
}

/// The admin server's state.
pub struct AdminServer {
    state: AtomicU8,
    stats: Store,
    server_stats: ServerStats,
    tags: TagProducer,
    started: Instant,
    options: Options,
    bootstrap: Bootstrap,
    loaded: SystemTime,
    health_check_failed: Arc<AtomicBool>,
    listeners: Mutex<Vec<(String, SocketAddr)>>,
    dispatchers: Mutex<Vec<DispatcherEntry>>,
    clusters: Mutex<Option<ClusterManagerHandle>>,
    control: Mutex<Option<Box<dyn ServerControl>>>,
    access_logs: Mutex<Vec<AccessLog>>,
    http_stats: AdminHttpStats,
}

/// The admin's HTTP stats, as Envoy's admin connection manager keeps them: `http.admin.*` and
/// the per-listener `listener.admin.http.admin.downstream_rq_<n>xx` / `_completed`.
pub struct AdminHttpStats {
    pub hcm: HcmStats,
    listener_rq_xx: [Counter; 5],
    listener_rq_completed: Counter,
}

impl AdminHttpStats {
    fn new(store: &Store) -> AdminHttpStats {
        let listener = store.scope("listener.admin.http.admin");
        AdminHttpStats {
            hcm: HcmStats::new(store, "admin"),
            listener_rq_xx: std::array::from_fn(|i| {
                listener.counter(&format!("downstream_rq_{}xx", i + 1))
            }),
            listener_rq_completed: listener.counter("downstream_rq_completed"),
        }
    }

    /// One response sent.
    pub fn charge_response(&self, status: u16) {
        self.hcm.charge_response(status);
        self.hcm.downstream_rq_completed.inc();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.listener_rq_xx[class].inc();
        self.listener_rq_completed.inc();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is one assignment or push: a poisoned lock is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AdminServer {
    /// `stats` is the main thread's store; `health_check_failed` the flag the health_check
    /// filters read.
    pub fn new(
        stats: Store,
        options: Options,
        bootstrap: Bootstrap,
        health_check_failed: Arc<AtomicBool>,
    ) -> Arc<AdminServer> {
        let started = Instant::now();
        let stats_for_http = stats.clone();
        let server_stats = ServerStats::new(&stats, started);
        server_stats.set_concurrency(options.concurrency as u64);
        Arc::new(AdminServer {
            state: AtomicU8::new(ServerState::PreInitializing as u8),
            stats,
            server_stats,
            tags: TagProducer::new(),
            started,
            options,
            bootstrap,
            loaded: SystemTime::now(),
            health_check_failed,
            listeners: Mutex::new(Vec::new()),
            dispatchers: Mutex::new(Vec::new()),
            clusters: Mutex::new(None),
            control: Mutex::new(None),
            access_logs: Mutex::new(Vec::new()),
            http_stats: AdminHttpStats::new(&stats_for_http),
        })
    }

    /// Sets the server state (`/ready`, `server.state`, `server.live`).
    pub fn set_state(&self, state: ServerState) {
        self.state.store(state as u8, Ordering::Release);
        self.server_stats.set_state(state);
    }

    pub fn state(&self) -> ServerState {
        match self.state.load(Ordering::Acquire) {
            0 => ServerState::Live,
            1 => ServerState::Draining,
            3 => ServerState::Initializing,
            _ => ServerState::PreInitializing,
        }
    }

    /// The listeners `/listeners` shows, with their bound addresses.
    pub fn set_listeners(&self, listeners: Vec<(String, SocketAddr)>) {
        *lock(&self.listeners) = listeners;
    }

    /// A dispatcher for `/reactor` and the dispatcher histograms: `name` is its thread's
    /// (`main_thread`, `worker_0`), `stat_prefix` Envoy's (`server.`,
    /// `listener_manager.worker_0.`).
    pub fn add_dispatcher(&self, name: &str, stat_prefix: &str, stats: Arc<DispatcherStats>) {
        let entry = DispatcherEntry::new(name, stat_prefix, stats, &self.stats);
        lock(&self.dispatchers).push(entry);
    }

    /// The cluster manager `/clusters` reads.
    pub fn set_cluster_manager(&self, handle: ClusterManagerHandle) {
        *lock(&self.clusters) = Some(handle);
    }

    /// `http.admin.*` (updated by the admin filter).
    pub fn http_stats(&self) -> &AdminHttpStats {
        &self.http_stats
    }

    /// The admin's own access logs (`admin.access_log`).
    pub fn set_access_logs(&self, logs: Vec<AccessLog>) {
        *lock(&self.access_logs) = logs;
    }

    /// Logs one admin request to the admin's access logs (a buffered write, no I/O here).
    pub fn log_request(&self, info: &StreamInfo<'_>) {
        for log in lock(&self.access_logs).iter() {
            log.log(info);
        }
    }

    /// What quit/drain/reopen call.
    pub fn set_control(&self, control: Box<dyn ServerControl>) {
        *lock(&self.control) = Some(control);
    }

    /// The health-check-failed flag (shared with the health_check filters).
    pub fn health_check_failed(&self) -> &Arc<AtomicBool> {
        &self.health_check_failed
    }

    fn with_control(&self, f: impl FnOnce(&dyn ServerControl)) {
        if let Some(c) = lock(&self.control).as_deref() {
            f(c);
        }
    }

    /// Runs the server's quit (`/quitquitquit`, after its response is flushed).
    pub fn quit(&self) {
        self.with_control(|c| c.quit());
    }

    /// Reopens the access logs (SIGUSR1 and `/reopen_logs`).
    pub fn reopen_logs(&self) {
        self.with_control(|c| c.reopen_logs());
    }

    /// The listener config the admin listener runs: one catch-all filter chain whose only
    /// filter is the [`AdminFilter`](super::filter::AdminFilter).
    pub fn listener_config(self: &Arc<Self>, address: SocketAddr) -> Arc<ListenerConfig> {
        let server = self.clone();
        let chain = FilterChain {
            name: "admin".to_string(),
            filter_factories: vec![Arc::new(move |fm, _| {
                fm.add_read_filter(Box::new(AdminFilter::new(server.clone())))
            })],
        };
        let manager =
            match FilterChainManager::new(vec![FcChain::new(Default::default(), chain)], None) {
                Ok(m) => m,
                Err(e) => unreachable!("one catch-all chain always compiles: {e}"),
            };
        Arc::new(ListenerConfig {
            name: "admin".to_string(),
            address,
            filter_chains: manager,
            listener_filters: Vec::new(),
            listener_filters_timeout: std::time::Duration::ZERO,
            continue_on_listener_filters_timeout: false,
            per_connection_buffer_limit_bytes: 1024 * 1024,
            enable_reuse_port: false,
        })
    }

    /// Refreshes the `server.*` gauges and the dispatcher histograms (before `/stats`, and at
    /// every stats flush).
    pub fn refresh_stats(&self) {
        let total = total_connections(&self.stats);
        self.server_stats.flush(Instant::now(), total);
        DispatcherStatsFeeder::feed(&mut lock(&self.dispatchers));
    }

    /// The stats flush (Envoy's `stats_flush_interval`, every 5 s on the main thread):
    /// refreshes, then closes the histogram interval.
    pub fn flush_stats(&self) {
        self.refresh_stats();
        self.stats.merge_histograms();
    }

    /// Answers one request. `method` is the request's method token; `target` its
    /// request-target (path and query).
    pub fn handle(&self, method: &str, target: &str) -> AdminResponse {
        let query = Query::parse(target);
        let Some(endpoint) = endpoints::find(&query.path) else {
            return AdminResponse::text(404, format!("invalid path. {}", endpoints::help_text()));
        };
        if endpoint.mutates && method != "POST" {
            return AdminResponse::text(
                405,
                format!("Method {method} not allowed, POST required.\n"),
            );
        }
        self.dispatch(endpoint.path, &query)
    }

    fn dispatch(&self, path: &str, query: &Query) -> AdminResponse {
        match path {
            "/" => AdminResponse::new(200, HTML, endpoints::home_page()),
            "/help" => AdminResponse::text(200, endpoints::help_text()),
            "/ready" => {
                let state = self.state();
                let status = if state == ServerState::Live { 200 } else { 503 };
                AdminResponse::text(status, format!("{}\n", info::state_name(state)))
            }
            "/stats" | "/stats/prometheus" => self.stats_page(query, path == "/stats/prometheus"),
            "/clusters" => self.clusters_page(query),
            "/listeners" => {
                let listeners = lock(&self.listeners).clone();
                match query.get("format") {
                    Some("json") => AdminResponse::json(&info::listeners_json(&listeners)),
                    _ => AdminResponse::text(200, info::listeners_text(&listeners)),
                }
            }
            "/config_dump" => AdminResponse::json(&info::config_dump(&self.bootstrap, self.loaded)),
            "/server_info" => AdminResponse::json(&info::server_info(
                &self.options,
                &self.bootstrap,
                self.state(),
                self.started.elapsed(),
            )),
            "/memory" => AdminResponse::json(&info::memory(MemoryUse::read())),
            "/reactor" => {
                let snapshots: Vec<_> = lock(&self.dispatchers)
                    .iter()
                    .map(|d| (d.name.clone(), d.stats.snapshot()))
                    .collect();
                match query.get("format") {
                    Some("json") => AdminResponse::json(&reactor_stats::json(&snapshots)),
                    _ => AdminResponse::text(200, reactor_stats::text(&snapshots)),
                }
            }
            "/quitquitquit" => {
                info!("admin: /quitquitquit: shutting down");
                AdminResponse {
                    after: AfterResponse::Quit,
                    ..AdminResponse::text(200, "OK\n")
                }
            }
            "/healthcheck/fail" => {
                self.health_check_failed.store(true, Ordering::Release);
                AdminResponse::text(200, "OK\n")
            }
            "/healthcheck/ok" => {
                self.health_check_failed.store(false, Ordering::Release);
                AdminResponse::text(200, "OK\n")
            }
            "/drain_listeners" => {
                let graceful = query.has("graceful");
                let skip_exit = query.has("skip_exit");
                info!("admin: /drain_listeners (graceful: {graceful}, skip_exit: {skip_exit})");
                self.with_control(|c| c.drain_listeners(graceful, skip_exit));
                AdminResponse::text(200, "OK\n")
            }
            "/logging" => {
                let (status, body) = logging::handle_request(query);
                AdminResponse::text(status, body)
            }
            "/reset_counters" => {
                self.stats.reset_counters();
                AdminResponse::text(200, "OK\n")
            }
            "/reopen_logs" => {
                self.reopen_logs();
                AdminResponse::text(200, "OK\n")
            }
            _ => AdminResponse::text(404, format!("invalid path. {}", endpoints::help_text())),
        }
    }

    fn stats_page(&self, query: &Query, prometheus: bool) -> AdminResponse {
        let request = match StatsRequest::from_query(&query.raw, prometheus) {
            Ok(r) => r,
            Err(StatsRequestError::InvalidFormat(_)) => {
                return AdminResponse::text(400, "usage: /stats?format=(json|prometheus|text)\n")
            }
            Err(e) => return AdminResponse::text(400, format!("{e}\n")),
        };
        self.refresh_stats();
        let body = request.render(&self.stats.snapshot(), &self.tags);
        AdminResponse::new(200, request.content_type(), body)
    }

    fn clusters_page(&self, query: &Query) -> AdminResponse {
        let filter = match query.get("filter").filter(|f| !f.is_empty()) {
            Some(f) => match Regex::new(f) {
                Ok(re) => Some(re),
                Err(_) => return AdminResponse::text(400, format!("Invalid regex: {f}\n")),
            },
            None => None,
        };
        let snapshot = lock(&self.clusters)
            .as_ref()
            .map(|cm| cm.clusters())
            .unwrap_or_default();
        let snapshot = clusters::filtered(snapshot, filter.as_ref());
        match query.get("format") {
            Some("json") => AdminResponse::json(&clusters::json(&snapshot)),
            _ => AdminResponse::text(200, clusters::text(&snapshot)),
        }
    }
}

/// Envoy's `server.total_connections`: downstream connections open on the workers' listeners
/// (the sum of each listener's `downstream_cx_active`; the admin's own are not counted).
fn total_connections(store: &Store) -> u64 {
    store
        .gauges()
        .iter()
        .filter(|g| {
            g.name.starts_with("listener.")
                && !g.name.starts_with("listener.admin.")
                && g.name.ends_with(".downstream_cx_active")
                && !g.name.contains(".worker_")
        })
        .fold(0u64, |acc, g| acc.wrapping_add(g.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ImportMode;

    fn server() -> Arc<AdminServer> {
        let options = match crate::server::options::parse(Vec::<String>::new()) {
            Ok(crate::server::options::Command::Run(o)) => o,
            _ => unreachable!(),
        };
        let bootstrap = crate::config::load_str(crate::server::instance::DEFAULT_CONFIG).unwrap();
        AdminServer::new(Store::new(), options, bootstrap, Arc::default())
    }

    #[test]
    fn ready_follows_the_server_state() {
        let s = server();
        assert_eq!(s.handle("GET", "/ready").status, 503);
        assert_eq!(s.handle("GET", "/ready").body, "PRE_INITIALIZING\n");
        s.set_state(ServerState::Live);
        assert_eq!(s.handle("GET", "/ready").status, 200);
        assert_eq!(s.handle("GET", "/ready").body, "LIVE\n");
        s.set_state(ServerState::Draining);
        assert_eq!(s.handle("GET", "/ready").body, "DRAINING\n");
    }

    #[test]
    fn mutating_endpoints_need_post_and_unknown_paths_get_help() {
        let s = server();
        let r = s.handle("GET", "/healthcheck/fail");
        assert_eq!(r.status, 405);
        assert_eq!(r.body, "Method GET not allowed, POST required.\n");
        assert!(!s.health_check_failed().load(Ordering::Relaxed));
        assert_eq!(s.handle("POST", "/healthcheck/fail").body, "OK\n");
        assert!(s.health_check_failed().load(Ordering::Relaxed));
        s.handle("POST", "/healthcheck/ok");
        assert!(!s.health_check_failed().load(Ordering::Relaxed));
        let r = s.handle("GET", "/nope");
        assert_eq!(r.status, 404);
        assert!(r.body.starts_with("invalid path. admin commands are:\n"));
        assert_eq!(s.handle("POST", "/quitquitquit").after, AfterResponse::Quit);
    }

    #[test]
    fn stats_pages_and_errors() {
        let s = server();
        s.stats.counter("cluster.app.upstream_rq_total").add(12);
        let r = s.handle("GET", "/stats?filter=upstream_rq");
        assert_eq!(r.body, "cluster.app.upstream_rq_total: 12\n");
        assert_eq!(
            s.handle("GET", "/stats?type=Foo").body,
            "invalid &type= param\n"
        );
        assert_eq!(s.handle("GET", "/stats?format=xml").status, 400);
        let p = s.handle("GET", "/stats/prometheus");
        assert!(p
            .body
            .contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"app\"} 12\n"));
        assert_eq!(s.handle("POST", "/reset_counters").status, 200);
        assert!(s
            .handle("GET", "/stats?filter=upstream_rq")
            .body
            .contains(": 0\n"));
    }

    #[test]
    fn total_connections_sums_worker_listeners_only() {
        let store = Store::new();
        let g = |n: &str, v| store.gauge(n, ImportMode::Accumulate).set(v);
        g("listener.127.0.0.1_10000.downstream_cx_active", 3);
        g("listener.127.0.0.1_10000.worker_0.downstream_cx_active", 3);
        g("listener.admin.downstream_cx_active", 1);
        g("listener.[__1]_80.downstream_cx_active", 2);
        assert_eq!(total_connections(&store), 5);
    }
}
