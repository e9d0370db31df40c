//! `StreamInfo`: what an access log line can say about one HTTP request or one TCP connection
//! (the part of Envoy's `StreamInfo` the command operators read).
//!
//! Filled by the HTTP connection manager at the end of a stream and by tcp_proxy at the end of a
//! connection, then passed by reference to `AccessLog::log`. It borrows everything it can
//! (header maps through the `HeaderLookup` trait, cluster and route names), so building one
//! copies nothing.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::response_flags::ResponseFlags;
use crate::router::HeaderMapAccess;

/// Read access to a header map, by lower-case name (`:path`, `:method` and `:authority`
/// included for request headers). Implemented for every `HeaderMapAccess` map of the HTTP layer.
pub trait HeaderLookup {
    /// The first value of header `name` (lower case), if present.
    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str>;
}

impl<T: HeaderMapAccess> HeaderLookup for T {
    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.get(name)
    }
}

/// Headers given as `(name, value)` pairs with lower-case names (tests, small fixed sets).
#[derive(Debug, Clone, Copy)]
pub struct HeaderList<'h>(pub &'h [(&'h str, &'h str)]);

impl HeaderLookup for HeaderList<'_> {
    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// One request or connection, as the access log sees it. `None` prints as `-`.
#[derive(Clone, Copy, Default)]
pub struct StreamInfo<'a> {
    /// When the first byte of the request (or the connection) arrived (`%START_TIME%`).
    pub start_time: Option<SystemTime>,
    /// Request headers (`%REQ(...)%`); `None` for TCP.
    pub request_headers: Option<&'a dyn HeaderLookup>,
    /// Response headers (`%RESP(...)%`).
    pub response_headers: Option<&'a dyn HeaderLookup>,
    /// Response trailers (`%TRAILER(...)%`).
    pub response_trailers: Option<&'a dyn HeaderLookup>,
    /// `%RESPONSE_CODE%` (prints 0 when there was none, as Envoy does).
    pub response_code: Option<u16>,
    /// `%RESPONSE_FLAGS%`.
    pub response_flags: ResponseFlags,
    /// `%RESPONSE_CODE_DETAILS%`, e.g. `via_upstream`, `route_not_found`.
    pub response_code_details: Option<&'a str>,
    /// `%BYTES_RECEIVED%`: body bytes (HTTP) or payload bytes (TCP) from downstream.
    pub bytes_received: u64,
    /// `%BYTES_SENT%`: body bytes (HTTP) or payload bytes (TCP) to downstream.
    pub bytes_sent: u64,
    /// `%DURATION%`: from start to the end of the stream.
    pub duration: Option<Duration>,
    /// `%REQUEST_DURATION%`: from start to the last byte of the request.
    pub request_duration: Option<Duration>,
    /// `%RESPONSE_DURATION%`: from start to the first byte of the upstream response.
    pub response_duration: Option<Duration>,
    /// `%UPSTREAM_HOST%`.
    pub upstream_host: Option<SocketAddr>,
    /// `%UPSTREAM_CLUSTER%`.
    pub upstream_cluster: Option<&'a str>,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    pub upstream_local_address: Option<SocketAddr>,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%` (and `..._WITHOUT_PORT`).
    pub downstream_remote_address: Option<SocketAddr>,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    pub downstream_local_address: Option<SocketAddr>,
    /// `%ROUTE_NAME%`.
    pub route_name: Option<&'a str>,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/1.0`; `None` for TCP.
    pub protocol: Option<&'a str>,
    /// `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`: 0 when no upstream request was made.
    pub upstream_request_attempt_count: Option<u32>,
    /// `%CONNECTION_ID%`: the downstream connection's id.
    pub connection_id: Option<u64>,
    /// Whether the health_check filter answered this request (for `not_health_check_filter`).
    pub health_check: bool,
}

impl std::fmt::Debug for StreamInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamInfo")
            .field("response_code", &self.response_code)
            .field("response_flags", &self.response_flags)
            .field("duration", &self.duration)
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}
