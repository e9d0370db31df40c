//! `UpstreamRequest`: one try of a request on one upstream connection (Envoy's
//! `UpstreamRequest` plus the `CodecClient` it talks through): the connection handle, the
//! client-role HTTP/1 codec, and where the exchange stands.
//!
//! Created by the router filter (`router::filter`) for each attempt; the router feeds it the
//! request (`encode_*`) and the upstream's bytes (`decode`), and decides from its state whether
//! the connection goes back to the pool. It also counts the attempt into its host's per-host
//! stats (`rq_total`, `rq_active`, `rq_success`, `rq_error`: what `/clusters` prints and the
//! least-request balancer reads).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::http::codec::{ClientCodec, CodecError, Http1Settings, RequestHead, ResponseEvent};
use crate::http::conn_manager_timers::TimerClock;
use crate::http::HeaderMap;
use crate::upstream::cluster::{self, Host};
use crate::upstream::conn_pool::{ClientLife, PoolKey};

/// Where one attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamState {
    /// Waiting for the TCP connect of a new connection.
    Connecting,
    /// Connected; the request is being sent (or fully sent) and the response head is awaited.
    AwaitingHeaders,
    /// The response head arrived; its body is streaming.
    Receiving,
    /// The response is complete.
    Complete,
}

/// One attempt.
pub struct UpstreamRequest<U> {
    pub host: SocketAddr,
    /// The worker pool of `host` the connection belongs to (released or forgotten there).
    pub pool: PoolKey,
    pub conn: U,
    pub state: UpstreamState,
    pub codec: ClientCodec,
    /// When the connection was opened and the requests it has carried, this one included
    /// (`max_requests_per_connection`, `upstream_cx_connect_ms`, and at its close
    /// `upstream_cx_length_ms` and `upstream_rq_per_cx`).
    pub life: ClientLife,
    /// The request head was written.
    pub headers_sent: bool,
    /// The whole request (end of stream) was written.
    pub request_complete: bool,
    /// When the request head went upstream (`x-envoy-upstream-service-time`,
    /// `upstream_rq_time`).
    /// On the timer set's clock (see `TimerClock`).
    pub sent_at: Option<TimerClock>,
    /// The connection was new (counted in `upstream_cx_*` when it connects).
    pub new_connection: bool,
    /// The per-try timers run for this attempt (Envoy's `setupPerTryTimeout`: once the
    /// connection is ready and the downstream request is complete); until then a response byte
    /// has no idle timer to re-arm.
    pub per_try_armed: bool,
    /// A byte of the response arrived (the request reached the upstream application: no
    /// replay after the connection dies).
    pub response_bytes: bool,
    /// The host this attempt went to (its per-host stats).
    pub upstream_host: Arc<Host>,
    /// The attempt's outcome was counted in the host's `rq_success`/`rq_error`.
    host_charged: bool,
}

impl<U: Copy> UpstreamRequest<U> {
    /// A new attempt on `host` over `conn` (`connected`: a pooled connection; else a new one,
    /// connecting), which carries it as one more request: counted at once in the host's
    /// `rq_total` and `rq_active` (the latter until [`UpstreamRequest::end_host_request`]).
    pub fn new(
        host: Arc<Host>,
        pool: PoolKey,
        conn: U,
        connected: bool,
        life: ClientLife,
        settings: Arc<Http1Settings>,
    ) -> Self {
        cluster::inc(&host.stats.rq_total);
        cluster::inc(&host.stats.rq_active);
        UpstreamRequest {
            host: host.address(),
            pool,
            upstream_host: host,
            host_charged: false,
            conn,
            state: if connected {
                UpstreamState::AwaitingHeaders
            } else {
                UpstreamState::Connecting
            },
            codec: ClientCodec::new(settings),
            life: ClientLife {
                requests: life.requests + 1,
                ..life
            },
            headers_sent: false,
            request_complete: false,
            sent_at: None,
            new_connection: !connected,
            per_try_armed: false,
            response_bytes: false,
        }
    }

    /// Envoy's per-host `chargeUpstreamCode`, once per attempt: a response head below 500
    /// counts in the host's `rq_success`, a 5xx (`status`) or a reset/timeout (`None`) in
    /// `rq_error`.
    pub fn charge_host(&mut self, status: Option<u16>) {
        if self.host_charged {
            return;
        }
        self.host_charged = true;
        let stats = &self.upstream_host.stats;
        match status {
            Some(status) if status < 500 => cluster::inc(&stats.rq_success),
            _ => cluster::inc(&stats.rq_error),
        }
    }

    /// The attempt is over (complete, reset, abandoned): leaves the host's `rq_active`; an
    /// attempt that never got a response head counts as an error.
    pub fn end_host_request(&mut self) {
        self.charge_host(None);
        cluster::dec(&self.upstream_host.stats.rq_active);
    }

    pub fn connected(&self) -> bool {
        self.state != UpstreamState::Connecting
    }

    /// Encodes the request head (Envoy's `UpstreamRequest::encodeHeaders`).
    pub fn encode_headers(
        &mut self,
        head: &RequestHead,
        end_stream: bool,
        now: Instant,
        out: &mut BytesMut,
    ) {
        self.codec.encode_headers(head, end_stream, out);
        self.headers_sent = true;
        self.request_complete = end_stream;
        self.sent_at = Some(TimerClock::at(now));
    }

    pub fn encode_data(&mut self, data: &[u8], end_stream: bool, out: &mut BytesMut) {
        self.codec.encode_data(data, end_stream, out);
        self.request_complete |= end_stream;
    }

    pub fn encode_trailers(&mut self, trailers: &HeaderMap, out: &mut BytesMut) {
        self.codec.encode_trailers(trailers, out);
        self.request_complete = true;
    }

    /// Decodes the next response event from the upstream's bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ResponseEvent>, CodecError> {
        let event = self.codec.decode(buf)?;
        self.track(&event);
        Ok(event)
    }

    /// The upstream closed its side: ends a close-delimited body, or is an error.
    pub fn on_eof(&mut self, buf: &BytesMut) -> Result<Option<ResponseEvent>, CodecError> {
        let event = self.codec.on_eof(buf)?;
        self.track(&event);
        Ok(event)
    }

    fn track(&mut self, event: &Option<ResponseEvent>) {
        match event {
            Some(ResponseEvent::Headers(_)) => self.state = UpstreamState::Receiving,
            Some(ResponseEvent::MessageComplete) => self.state = UpstreamState::Complete,
            _ => {}
        }
    }

    /// The connection can go back to the pool: response complete, request fully written, and
    /// neither side asked to close.
    pub fn reusable(&self) -> bool {
        self.state == UpstreamState::Complete && self.request_complete && self.codec.is_reusable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::conn_pool::ConnPools;

    fn attempt(host: &Arc<Host>) -> UpstreamRequest<u32> {
        let pool = ConnPools::<u32>::default().key("c", host.address());
        UpstreamRequest::new(
            host.clone(),
            pool,
            1,
            true,
            ClientLife::new(Instant::now()),
            Arc::new(Http1Settings::default()),
        )
    }

    #[test]
    fn host_stats_count_each_attempt_once() {
        let host = Arc::new(Host::new("127.0.0.1:1".parse().unwrap(), "", 1));
        let stats = |name: &str| {
            host.stats
                .values()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .unwrap()
        };
        // A 200, then its end: one success.
        let mut ok = attempt(&host);
        assert_eq!(stats("rq_active"), 1);
        ok.charge_host(Some(200));
        ok.end_host_request();
        // A 503 (charged once even though the attempt is then abandoned): one error.
        let mut bad = attempt(&host);
        bad.charge_host(Some(503));
        bad.end_host_request();
        // A reset before any response head: one error.
        let mut reset = attempt(&host);
        reset.end_host_request();
        assert_eq!(stats("rq_total"), 3);
        assert_eq!(stats("rq_success"), 1);
        assert_eq!(stats("rq_error"), 2);
        assert_eq!(stats("rq_active"), 0);
    }
}
