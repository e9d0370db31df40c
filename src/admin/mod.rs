//! The admin endpoint (issues 3 and 5): a listener on the main thread's dispatcher (the
//! `admin.address` of the config) answering plain HTTP/1.1 requests.
//!
//! Owns the admin network filter ([`AdminFilter`]) and the table of handlers. For now:
//! `GET /ready` (200 `LIVE` once every worker has its listeners up, 503 with the server state
//! before that and while draining, as Envoy) and `GET /stats` (every counter and gauge,
//! `name: value` per line, sorted). Each request gets one response and the connection is
//! closed after it (`Connection: close`), which every client handles.
//!
//! Built by `server::instance`, which runs it through a `ConnectionHandler` of its own on the
//! main thread (so the admin is a listener like any other). To add an endpoint, add an arm to
//! [`AdminServer::handle`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use log::debug;

use crate::network::connection::CloseType;
use crate::network::filter::{FilterContext, FilterStatus, ReadFilter};
use crate::network::filter_chain::{FilterChain as FcChain, FilterChainManager};
use crate::network::listener::{FilterChain, ListenerConfig};
use crate::stats::Store;

/// Requests larger than this are refused (431) and the connection closed.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The server's life, as `/ready` reports it (Envoy's `server.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ServerState {
    /// Starting: workers are not all listening yet.
    PreInitializing = 0,
    /// Every listener is up on every worker.
    Live = 1,
    /// SIGTERM/SIGINT received: listeners stopped, connections finishing.
    Draining = 2,
}

impl ServerState {
    fn as_str(self) -> &'static str {
        match self {
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
        }
    }
}

/// What the admin handlers read: shared with the main thread, which updates the state.
pub struct AdminServer {
    state: AtomicU8,
    stats: Store,
}

impl AdminServer {
    pub fn new(stats: Store) -> Arc<AdminServer> {
        Arc::new(AdminServer {
            state: AtomicU8::new(ServerState::PreInitializing as u8),
            stats,
        })
    }

    pub fn set_state(&self, state: ServerState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub fn state(&self) -> ServerState {
        match self.state.load(Ordering::Acquire) {
            1 => ServerState::Live,
            2 => ServerState::Draining,
            _ => ServerState::PreInitializing,
        }
    }

    /// The listener config the admin listener runs: one filter chain with the admin filter.
    pub fn listener_config(self: &Arc<Self>, address: std::net::SocketAddr) -> Arc<ListenerConfig> {
        let server = self.clone();
        let chain = FilterChain {
            name: "admin".to_string(),
            filter_factories: vec![Arc::new(move |fm, _| {
                fm.add_read_filter(Box::new(AdminFilter {
                    server: server.clone(),
                    request: BytesMut::new(),
                }))
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

    /// Answers one request: (status, content type, body).
    pub fn handle(&self, method: &str, path: &str) -> (u16, &'static str, String) {
        let path = path.split('?').next().unwrap_or(path);
        match (method, path) {
            ("GET" | "HEAD", "/ready") => {
                let state = self.state();
                let status = if state == ServerState::Live { 200 } else { 503 };
                (status, "text/plain", format!("{}\n", state.as_str()))
            }
            ("GET" | "HEAD", "/stats") => {
                let mut lines: Vec<String> = self
                    .stats
                    .counters()
                    .into_iter()
                    .chain(self.stats.gauges())
                    .map(|s| format!("{}: {}", s.name, s.value))
                    .collect();
                lines.sort();
                let mut body = lines.join("\n");
                body.push('\n');
                (200, "text/plain", body)
            }
            (_, "/ready" | "/stats") => (405, "text/plain", "method not allowed\n".into()),
            _ => (
                404,
                "text/plain",
                "invalid path. admin commands are: /ready, /stats\n".into(),
            ),
        }
    }
}

/// The admin endpoint as a network filter: buffers one request head, answers, closes.
struct AdminFilter {
    server: Arc<AdminServer>,
    request: BytesMut,
}

impl ReadFilter for AdminFilter {
    fn on_data(
        &mut self,
        data: &mut BytesMut,
        _end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus {
        self.request.extend_from_slice(data);
        data.clear();
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let (status, content_type, body, head_only) = match req.parse(&self.request) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("GET");
                let path = req.path.unwrap_or("/");
                debug!("[{}] admin: {method} {path}", cx.connection_id());
                let (s, t, b) = self.server.handle(method, path);
                (s, t, b, method == "HEAD")
            }
            Ok(httparse::Status::Partial) if self.request.len() < MAX_REQUEST_HEAD => {
                return FilterStatus::StopIteration
            }
            Ok(httparse::Status::Partial) => (431, "text/plain", String::new(), false),
            Err(_) => (400, "text/plain", String::new(), false),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut response = BytesMut::from(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        if !head_only {
            response.extend_from_slice(body.as_bytes());
        }
        cx.write(&mut response, false);
        cx.close(CloseType::FlushWrite);
        FilterStatus::StopIteration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_follows_the_server_state() {
        let server = AdminServer::new(Store::new());
        assert_eq!(server.handle("GET", "/ready").0, 503);
        server.set_state(ServerState::Live);
        assert_eq!(
            server.handle("GET", "/ready"),
            (200, "text/plain", "LIVE\n".into())
        );
        server.set_state(ServerState::Draining);
        assert_eq!(server.handle("GET", "/ready").2, "DRAINING\n");
        assert_eq!(server.handle("GET", "/nope").0, 404);
    }

    #[test]
    fn stats_lists_counters() {
        let store = Store::new();
        store.counter("a.b").add(3);
        let server = AdminServer::new(store);
        assert!(server.handle("GET", "/stats").2.contains("a.b: 3\n"));
    }
}
