//! The HTTP connection manager of one downstream connection (Envoy's `ConnectionManagerImpl`
//! and its `ActiveStream`): drives the server codec over the connection's bytes, creates one
//! stream per request with its HTTP filter chain and router, and writes the responses back.
//!
//! Sans-IO: every side effect goes through [`ConnectionIo`] (implemented over the worker's
//! network `FilterContext` by `http::conn_manager_filter`, and in memory by the tests). Called
//! with:
//! - `on_data`: bytes from downstream (Envoy's `onData` → codec `dispatch`);
//! - `on_upstream_data` / `on_upstream_event`: the router's upstream connection;
//! - `on_downstream_event`: the downstream connection closed or crossed a watermark;
//! - `on_timer`: one of [`HcmTimer`].
//!
//! The request walk (ARCHITECTURE.md): `on_data` → `ServerCodec::decode` →
//! `on_request_headers` (Envoy's `ActiveStream::decodeHeaders`: header edits, filter chain
//! creation) → `FilterManager` decoder filters → `RouterFilter::decode_headers` (route, host,
//! pool, `UpstreamRequest::encode_headers`) → upstream bytes → `RouterFilter::on_upstream_data`
//! (`ClientCodec::decode`) → [`UpstreamOutcome`]s → encoder filters → [`DownstreamSink`]
//! (`ServerCodec::encode_*` → `ConnectionIo::write`, Envoy's `ConnectionImpl::write`).
//!
//! HTTP/1 has one stream at a time: the codec yields a pipelined request only once the
//! previous response is complete; its bytes wait in `pending_input` meanwhile.
//!
//! Memory: an idle keep-alive connection owns no buffer and no stream. The stream lives in a
//! [`StreamSlot`] (a heap block recycled per worker), the router's outcomes go through a
//! per-worker scratch vector, and `pending_input` is released once it is drained.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::router::filter::{RouterFilter, UpstreamOutcome};
use crate::router::{FormatterContext, StartTime};

use super::codec::{
    reason_phrase, CodecError, Http1Settings, Method, RequestEvent, RequestHead, ResponseHead,
    ServerCodec,
};
use super::config::HcmConfig;
use super::conn_manager_io::{CloseHow, ConnectionIo, HcmTimer, RouteTable};
use super::conn_manager_stats::HcmStats;
use super::conn_manager_timers::TimerClock;
use super::conn_manager_utility::{mutate_request_headers, mutate_response_headers};
use super::filter::{
    ChainSink, DownstreamAddresses, FilterCallbacks, LocalReply, ResponseFlag, StreamFilterState,
};
use super::filter_manager::{local_reply_headers, ChainOutcome, FilterManager};
use super::filter_registry::FilterChainBuilder;
use super::request_id::RequestId;
use super::scratch;
use super::stream_slot::StreamSlot;
use super::HeaderMap;

thread_local! {
    /// The worker's router-outcome scratch: the outcomes of the one upstream event being handled
    /// (callbacks never nest across connections; a nested use just gets an empty vector).
    static OUTCOMES: RefCell<Vec<UpstreamOutcome>> = const { RefCell::new(Vec::new()) };
}

/// The worker's outcome scratch (empty), taken for one event.
fn take_outcomes() -> Vec<UpstreamOutcome> {
    OUTCOMES
        .try_with(|o| std::mem::take(&mut *o.borrow_mut()))
        .unwrap_or_default()
}

/// Gives the (drained) scratch back, keeping the larger capacity.
fn return_outcomes(mut outcomes: Vec<UpstreamOutcome>) {
    outcomes.clear();
    let _ = OUTCOMES.try_with(|o| {
        let mut o = o.borrow_mut();
        if outcomes.capacity() > o.capacity() {
            *o = outcomes;
        }
    });
}

/// What every connection of one `http_connection_manager` config shares (built once).
pub struct HcmShared {
    pub config: HcmConfig,
    pub routes: Arc<dyn RouteTable>,
    pub codec_settings: Arc<Http1Settings>,
    pub stats: HcmStats,
    /// The `access_log`s, written at the end of each stream.
    pub access_logs: Vec<crate::access_log::AccessLog>,
}

/// What the access log needs of a stream, kept only when access logs are configured.
#[derive(Default)]
pub struct StreamLog {
    pub request: Option<RequestHead>,
    pub response: Option<ResponseHead>,
    /// Body bytes from / to downstream.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub start: Option<std::time::SystemTime>,
    /// The client after `x-forwarded-for` processing (Envoy's final remote address).
    pub downstream_remote: Option<std::net::SocketAddr>,
}

/// One request/response exchange (Envoy's `ActiveStream`).
pub struct ActiveStream<U> {
    pub id: u64,
    filters: FilterManager,
    state: StreamFilterState,
    router: RouterFilter<U>,
    /// The codec delivered the whole request (Envoy's `remote_complete`).
    request_complete: bool,
    /// The decoder chain got its end of stream.
    decode_end_pushed: bool,
    head_request: bool,
    /// When the request head completed, on the timer set's clock (`downstream_rq_time` is a
    /// subtraction of two integers, and the event's `now` is converted once for every user).
    started: TimerClock,
    /// The `x-request-id` the request left with (inline: no allocation per request).
    request_id: Option<RequestId>,
    /// The request asks for an upgrade we allow.
    upgrade: bool,
    response_status: Option<u16>,
    /// The stream idle timeout: the HCM's `stream_idle_timeout`, replaced by the route's
    /// `idle_timeout` once routed (`None`: off).
    idle_timeout: Option<Duration>,
    /// For the access log (empty unless access logs are configured).
    log: StreamLog,
}

/// The HTTP connection manager of one downstream connection.
pub struct ConnectionManager<U: 'static> {
    shared: Arc<HcmShared>,
    codec: ServerCodec,
    /// The active stream, if any (no memory while idle).
    stream: StreamSlot<ActiveStream<U>>,
    /// Pipelined bytes waiting for the current response to finish (`None` when empty: boxed,
    /// an idle connection pays one pointer for it).
    pending_input: Option<Box<BytesMut>>,
    /// Requests started on this connection; the latest stream's id is this count.
    requests: u32,
    /// A close was requested: ignore further input.
    closing: bool,
    /// The request-headers timer runs for the request being read.
    head_timer_armed: bool,
    /// Envoy's drain sequence started (idle timeout or server drain): no more keep-alive.
    draining: bool,
    /// After a 101: bytes pass through in both directions.
    tunnel: bool,
    /// When the connection was accepted, in the timer set's clock (8 bytes, not 16).
    created: Option<TimerClock>,
}

impl<U: Copy + Eq + std::hash::Hash + std::fmt::Debug + 'static> ConnectionManager<U> {
    pub fn new(shared: Arc<HcmShared>) -> Self {
        let codec = ServerCodec::new(shared.codec_settings.clone());
        ConnectionManager {
            shared,
            codec,
            stream: StreamSlot::empty(),
            pending_input: None,
            requests: 0,
            closing: false,
            head_timer_armed: false,
            draining: false,
            tunnel: false,
            created: None,
        }
    }

    pub fn has_active_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// The upstream connection the active stream uses, if any.
    pub fn upstream_conn(&self) -> Option<U> {
        self.stream.get().and_then(|s| s.router.upstream_conn())
    }

    /// The connection was accepted (Envoy's `onNewConnection`).
    pub fn on_new_connection<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let stats = &self.shared.stats;
        stats.downstream_cx_total.inc();
        stats.downstream_cx_active.inc();
        stats.downstream_cx_http1_total.inc();
        stats.downstream_cx_http1_active.inc();
        self.created = Some(TimerClock::at(io.now()));
        self.arm_idle(io);
    }

    fn arm_idle<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if let Some(idle) = self.shared.config.idle_timeout {
            io.arm_timer(HcmTimer::ConnectionIdle, idle);
        }
    }

    fn arm_head_timer<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if let Some(t) = self.shared.config.request_headers_timeout {
            io.arm_timer(HcmTimer::RequestHeaders, t);
            self.head_timer_armed = true;
        }
    }

    fn arm_stream_idle<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if let Some(idle) = self.stream.get().and_then(|s| s.idle_timeout) {
            io.arm_timer(HcmTimer::StreamIdle, idle);
        }
    }

    /// Envoy's `refreshIdleTimeout`: once the router matched a route with an `idle_timeout`,
    /// that is the stream's idle timeout from now on (zero disables it).
    fn refresh_idle_timeout<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if self
            .stream
            .get()
            .is_some_and(|s| s.state.route_idle_timeout.is_some())
        {
            self.apply_route_idle_timeout(io);
        }
    }

    /// [`refresh_idle_timeout`](Self::refresh_idle_timeout)'s work, for a route that sets an
    /// `idle_timeout` (out of line: most routes do not).
    #[inline(never)]
    fn apply_route_idle_timeout<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        let Some(route_idle) = stream.state.route_idle_timeout.take() else {
            return;
        };
        debug!(
            "[C{}][S{}] route idle timeout {:?} replaces the stream idle timeout",
            io.connection_id(),
            stream.id,
            route_idle
        );
        stream.idle_timeout = (!route_idle.is_zero()).then_some(route_idle);
        if stream.idle_timeout.is_some() {
            self.arm_stream_idle(io);
        } else {
            io.disarm_timer(HcmTimer::StreamIdle);
        }
    }

    // === downstream bytes (Envoy's ConnectionManagerImpl::onData) ===

    pub fn on_data<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        io: &mut Io,
    ) {
        self.shared
            .stats
            .downstream_cx_rx_bytes_total
            .add(data.len() as u64);
        if self.closing || self.tunnel {
            // Bytes after a close was asked for, or through an upgraded tunnel: neither is a
            // request to decode.
            self.on_data_not_decoded(data, end_stream, io);
            return;
        }
        trace!(
            "[C{}] ConnectionManagerImpl::onData: {} bytes (end_stream={end_stream})",
            io.connection_id(),
            data.len()
        );
        if self.stream.is_none() && !data.is_empty() && !self.head_timer_armed {
            // The first bytes of a request: the whole head must follow in time (armed once
            // per request, not per read, or a trickling client would keep pushing it back).
            self.arm_head_timer(io);
        }
        if self.pending_input.is_some() {
            self.dispatch_after_pending(data, io);
        } else {
            self.dispatch(data, io);
            if !data.is_empty() && self.codec.is_responding() && !self.closing {
                self.keep_pipelined(data);
            }
        }
        if end_stream && !self.closing {
            // The client half-closed: once per connection, not per request.
            std::hint::cold_path();
            self.on_downstream_eof(io);
        }
    }

    /// `on_data` while closing (dropped) or tunnelling (relayed upstream as they are).
    #[cold]
    fn on_data_not_decoded<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        io: &mut Io,
    ) {
        if !self.closing {
            if let Some(stream) = self.stream.get_mut() {
                stream.router.tunnel_write(data, end_stream, io);
            }
        }
        data.clear();
    }

    /// New bytes behind pipelined ones still waiting: they join the queue, which is decoded
    /// as far as the codec goes. Reached only by a client that pipelines (sends a request
    /// before the previous response), which browsers and load generators with keep-alive
    /// do not do.
    #[cold]
    fn dispatch_after_pending<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        data: &mut BytesMut,
        io: &mut Io,
    ) {
        let Some(mut buf) = self.pending_input.take() else {
            return;
        };
        buf.extend_from_slice(data);
        data.clear();
        self.dispatch(&mut buf, io);
        if !buf.is_empty() {
            self.pending_input = Some(buf);
        }
    }

    /// Pipelined: keeps the next request's bytes until this response is done. Copied out of
    /// the worker's read scratch, into an allocation of its own size. Reached only by a client
    /// that pipelines.
    #[cold]
    fn keep_pipelined(&mut self, data: &mut BytesMut) {
        self.pending_input = Some(Box::new(BytesMut::from(&data[..])));
        data.clear();
    }

    /// Decodes as many request events as `buf` holds and the codec yields.
    fn dispatch<Io: ConnectionIo<Upstream = U>>(&mut self, buf: &mut BytesMut, io: &mut Io) {
        trace!(
            "[C{}] Http1::ServerConnectionImpl::dispatch: parsing {} bytes",
            io.connection_id(),
            buf.len()
        );
        loop {
            if self.closing {
                buf.clear();
                return;
            }
            match self.codec.decode(buf) {
                Ok(Some(event)) => self.on_request_event(event, io),
                Ok(None) => return,
                Err(error) => {
                    buf.clear();
                    self.on_codec_error(error, io);
                    return;
                }
            }
        }
    }

    fn on_request_event<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        event: RequestEvent,
        io: &mut Io,
    ) {
        match event {
            RequestEvent::Headers(head) => self.on_request_headers(head, io),
            RequestEvent::Data(bytes) => {
                self.arm_stream_idle(io);
                self.push_request_data(bytes, false, io);
            }
            RequestEvent::Trailers(trailers) => {
                self.arm_stream_idle(io);
                self.push_request_trailers(trailers, io);
            }
            RequestEvent::MessageComplete => self.on_message_complete(io),
        }
    }

    /// Envoy's `ActiveStream::decodeHeaders`.
    fn on_request_headers<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        mut head: RequestHead,
        io: &mut Io,
    ) {
        io.disarm_timer(HcmTimer::RequestHeaders);
        self.head_timer_armed = false;
        io.disarm_timer(HcmTimer::ConnectionIdle);
        let shared = self.shared.clone();
        let stats = &shared.stats;
        stats.downstream_rq_total.inc();
        stats.downstream_rq_http1_total.inc();
        stats.downstream_rq_active.inc();
        self.requests += 1;
        let id = u64::from(self.requests);
        let conn_id = io.connection_id();
        let end_stream = head.body.is_empty();
        trace!(
            "[C{conn_id}][S{id}] Http1::ServerConnectionImpl::onHeadersComplete: {} {} {}",
            head.method.as_str(),
            head.authority(),
            head.path()
        );
        if end_stream {
            // No body: the codec has the whole message (Envoy defers decodeHeaders to here).
            trace!("[C{conn_id}][S{id}] Http1::ServerConnectionImpl::onMessageComplete");
        }
        debug!(
            "[C{conn_id}][S{id}] ActiveStream::decodeHeaders: request headers complete (end_stream={end_stream}): {} {} {}",
            head.method.as_str(),
            head.authority(),
            head.path()
        );
        // `head.upgrade` first: the usual request has no `upgrade` header to look up.
        let upgrade = head.upgrade && upgrade_allowed(&shared.config, &head);
        let buffer_limit = io.buffer_limit() as usize;
        let mut builder = FilterChainBuilder::default();
        for (_, factory) in &shared.config.filters {
            factory.create_filters(&mut builder);
        }
        // Built straight into the slot's (recycled) box: the stream is ~1.6 KB.
        self.stream.put_with(|| ActiveStream {
            id,
            filters: FilterManager::new(builder.decoders, builder.encoders, buffer_limit),
            state: StreamFilterState::default(),
            router: RouterFilter::new(shared.codec_settings.clone(), buffer_limit),
            // A head without body is the whole request (its MessageComplete follows).
            request_complete: end_stream,
            decode_end_pushed: end_stream,
            head_request: head.method == Method::Head,
            started: TimerClock::at(io.now()),
            request_id: None,
            upgrade,
            response_status: None,
            idle_timeout: shared.config.stream_idle_timeout,
            log: StreamLog::default(),
        });
        if head.expect_continue {
            self.send_100_continue(io);
        }
        // The peer's address, asked of the connection once.
        let remote = io.remote_address();
        let mutated =
            mutate_request_headers(&mut head, &shared.config, remote, upgrade, || io.random());
        if let Some(stream) = self.stream.get_mut() {
            stream.request_id = mutated.request_id;
            stream.log.downstream_remote = mutated.final_remote_address;
            stream.state.downstream = DownstreamAddresses {
                remote: mutated.final_remote_address,
                direct_remote: remote,
                local: io.local_address(),
            };
            if !shared.access_logs.is_empty() {
                keep_request_for_log(&mut stream.log, &head, io);
            }
        }
        if let Some(t) = shared.config.request_timeout {
            io.arm_timer(HcmTimer::Request, t);
        }
        self.arm_stream_idle(io);
        if mutated.reject_status.is_some() || (head.upgrade && !upgrade) {
            self.refuse_request(mutated.reject_status, io);
            return;
        }
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: conn_id,
            stream_id: id,
            state: &mut stream.state,
        };
        let mut sink = RouterSink {
            router: &mut stream.router,
            io,
            shared: &shared,
        };
        trace!(
            "[C{conn_id}][S{id}] FilterManager::decodeHeaders: through {} filters, then the router",
            stream.filters.decoder.len()
        );
        let outcome = stream
            .filters
            .decoder
            .push_headers(head, end_stream, &mut sink, &mut cb);
        self.after_decode(outcome, io);
    }

    /// Envoy answers `expect: 100-continue` itself (proxy_100_continue false). Only clients
    /// about to send a large body ask for it (curl above 1 MiB).
    #[cold]
    fn send_100_continue<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let mut out = scratch::take_encode();
        self.codec.encode_100_continue(&mut out);
        io.write(&mut out, false);
        scratch::give_encode(out);
    }

    /// The request is refused before the filter chain sees it: an original IP detection
    /// extension rejected it (`reject_status`, Envoy's `reject_request`: the status, an empty
    /// body), or it asks for an upgrade the config does not allow (403).
    #[cold]
    fn refuse_request<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        reject_status: Option<u16>,
        io: &mut Io,
    ) {
        let stats = &self.shared.stats;
        let reply = match reject_status {
            Some(status) => {
                stats.downstream_rq_rejected_via_ip_detection.inc();
                LocalReply::new(status, "", "rejecting_because_detection_failed")
            }
            None => {
                stats.downstream_rq_ws_on_non_ws_route.inc();
                LocalReply::new(403, "", "upgrade_failed")
            }
        };
        self.send_local_reply(reply, io);
    }

    fn push_request_data<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        mut data: BytesMut,
        end_stream: bool,
        io: &mut Io,
    ) {
        let shared = self.shared.clone();
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        if end_stream {
            stream.decode_end_pushed = true;
        }
        stream.log.bytes_received += data.len() as u64;
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: io.connection_id(),
            stream_id: stream.id,
            state: &mut stream.state,
        };
        let mut sink = RouterSink {
            router: &mut stream.router,
            io,
            shared: &shared,
        };
        let outcome = stream
            .filters
            .decoder
            .push_data(&mut data, end_stream, &mut sink, &mut cb);
        self.after_decode(outcome, io);
    }

    fn push_request_trailers<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        trailers: HeaderMap,
        io: &mut Io,
    ) {
        let shared = self.shared.clone();
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        stream.decode_end_pushed = true;
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: io.connection_id(),
            stream_id: stream.id,
            state: &mut stream.state,
        };
        let mut sink = RouterSink {
            router: &mut stream.router,
            io,
            shared: &shared,
        };
        let outcome = stream
            .filters
            .decoder
            .push_trailers(trailers, &mut sink, &mut cb);
        self.after_decode(outcome, io);
    }

    /// Envoy's `onMessageComplete`: the request is fully read.
    fn on_message_complete<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        if stream.request_complete {
            return;
        }
        stream.request_complete = true;
        io.disarm_timer(HcmTimer::Request);
        trace!(
            "[C{}][S{}] Http1::ServerConnectionImpl::onMessageComplete",
            io.connection_id(),
            stream.id
        );
        if !stream.decode_end_pushed {
            self.push_request_data(BytesMut::new(), true, io);
        }
        self.maybe_finish_stream(io);
    }

    /// Handles what a push through the decoder chain ended with.
    fn after_decode<Io: ConnectionIo<Upstream = U>>(&mut self, outcome: ChainOutcome, io: &mut Io) {
        self.refresh_idle_timeout(io);
        if outcome != ChainOutcome::Ok {
            self.on_decoder_stop(outcome, io);
        }
        self.maybe_finish_stream(io);
    }

    /// Sends the local reply a filter left on the stream when it stopped the chain
    /// (`ChainOutcome::LocalReply`, from the decoder or the encoder side).
    #[cold]
    fn send_filter_local_reply<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let reply = self
            .stream
            .get_mut()
            .and_then(|s| s.state.local_reply.take());
        if let Some(reply) = reply {
            self.send_local_reply(reply, io);
        }
    }

    /// A decoder filter asked for a local reply, or the request body overflowed the buffer
    /// limit (413): the request is answered here instead of by the upstream.
    #[cold]
    fn on_decoder_stop<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        outcome: ChainOutcome,
        io: &mut Io,
    ) {
        match outcome {
            ChainOutcome::Ok => {}
            ChainOutcome::LocalReply => self.send_filter_local_reply(io),
            ChainOutcome::BufferOverflow => {
                self.shared.stats.downstream_rq_too_large.inc();
                self.send_local_reply(
                    LocalReply::new(413, "Payload Too Large", "request_payload_too_large"),
                    io,
                );
            }
        }
    }

    /// Sends a local reply on the active stream (through the encoder filters), or resets the
    /// stream if its response already started. Out of line: local replies answer errors
    /// (no route, no healthy upstream, timeouts, limits), filters and direct responses, never
    /// a proxied response.
    #[inline(never)]
    fn send_local_reply<Io: ConnectionIo<Upstream = U>>(&mut self, reply: LocalReply, io: &mut Io) {
        let shared = self.shared.clone();
        if self.stream.is_some() {
            self.check_drain_close(io);
        }
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        debug!(
            "[C{}][S{}] local reply {} '{}' ({})",
            io.connection_id(),
            stream.id,
            reply.status,
            reply.body,
            reply.details
        );
        let head_request = stream.head_request;
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: io.connection_id(),
            stream_id: stream.id,
            state: &mut stream.state,
        };
        let drain_close = self.draining;
        let mut out = scratch::take_encode();
        let mut sink = DownstreamSink {
            codec: &mut self.codec,
            out: &mut out,
            io,
            shared: &shared,
            request_id: stream.request_id.as_ref().map(RequestId::as_str),
            status: &mut stream.response_status,
            log: (!shared.access_logs.is_empty()).then_some(&mut stream.log),
            // Envoy: an HTTP/1 response before the request is complete closes the connection.
            closing: drain_close || (!stream.request_complete && !stream.upgrade),
        };
        let sent = stream
            .filters
            .send_local_reply(reply, head_request, &mut sink, &mut cb);
        flush_downstream(&shared, &mut out, io);
        scratch::give_encode(out);
        if !sent {
            self.reset_stream(io);
        }
    }

    // === upstream side (events of the router's connection) ===

    pub fn on_upstream_data<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        upstream: U,
        data: &mut BytesMut,
        end_stream: bool,
        io: &mut Io,
    ) {
        let Some(stream) = self.stream.get_mut() else {
            // Bytes of an upstream whose stream is gone (the events of one poll were
            // collected before it ended).
            std::hint::cold_path();
            data.clear();
            return;
        };
        if stream.router.upstream_conn() != Some(upstream) {
            std::hint::cold_path();
            data.clear();
            return;
        }
        if self.tunnel {
            // Upgraded: the bytes go to the client as they are.
            std::hint::cold_path();
            io.write(data, end_stream);
            return;
        }
        self.arm_stream_idle(io);
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: io.connection_id(),
            stream_id: stream.id,
            state: &mut stream.state,
        };
        let mut outcomes = take_outcomes();
        stream
            .router
            .on_upstream_data(data, end_stream, &mut cb, io, &mut outcomes);
        self.process_outcomes(outcomes, io);
    }

    pub fn on_upstream_event<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        upstream: U,
        event: UpstreamEvent,
        io: &mut Io,
    ) {
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        if stream.router.upstream_conn() != Some(upstream) {
            return;
        }
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: io.connection_id(),
            stream_id: stream.id,
            state: &mut stream.state,
        };
        let mut outcomes = take_outcomes();
        match event {
            UpstreamEvent::Connected => {
                debug!(
                    "[C{}][S{}] CodecClient::onEvent: upstream {:?} connected",
                    cb.connection_id, cb.stream_id, upstream
                );
                stream.router.on_upstream_connected(&mut cb, io);
            }
            UpstreamEvent::Closed => {
                if self.tunnel {
                    // The upstream ended the tunnel: so do we.
                    self.closing = true;
                    io.close(CloseHow::FlushWrite);
                    return;
                }
                stream.router.on_upstream_closed(&mut cb, io, &mut outcomes);
            }
            UpstreamEvent::AboveHighWatermark => stream.router.on_upstream_watermark(true, io),
            UpstreamEvent::BelowLowWatermark => stream.router.on_upstream_watermark(false, io),
        }
        self.process_outcomes(outcomes, io);
    }

    /// Pushes the router's outcomes through the encoder filters to the downstream.
    ///
    /// A proxied response is a head, body and end (`Headers`, `Data`, `End`, maybe
    /// `Trailers`), each encoded into the worker's encode buffer and written once at the
    /// end. The rest (a local reply or reset from the router, a filter's stop, an upgrade's
    /// 101, a route's response header edits) is handed to functions of its own, out of the
    /// way of that path.
    fn process_outcomes<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        mut outcomes: Vec<UpstreamOutcome>,
        io: &mut Io,
    ) {
        let shared = self.shared.clone();
        // The worker's encode buffer, for every outcome of this event.
        let mut out = scratch::take_encode();
        for mut outcome in outcomes.drain(..) {
            if self.stream.is_none() {
                break;
            }
            if matches!(outcome, UpstreamOutcome::Headers(..)) {
                // Asked once per response, as its head goes out.
                self.check_drain_close(io);
            }
            let Some(stream) = self.stream.get_mut() else {
                break;
            };
            if let UpstreamOutcome::Headers(head, _) = &mut outcome {
                if head.status == 101 && stream.upgrade {
                    start_tunnel(&mut self.tunnel, &shared.stats);
                }
                if let Some(route_id) = stream.router.route_editing_response() {
                    finalize_route_response(&shared, stream, route_id, head);
                }
            }
            let mut cb = FilterCallbacks {
                now: io.now(),
                connection_id: io.connection_id(),
                stream_id: stream.id,
                state: &mut stream.state,
            };
            let drain_close = self.draining;
            let mut sink = DownstreamSink {
                codec: &mut self.codec,
                out: &mut out,
                io,
                shared: &shared,
                request_id: stream.request_id.as_ref().map(RequestId::as_str),
                status: &mut stream.response_status,
                log: (!shared.access_logs.is_empty()).then_some(&mut stream.log),
                closing: drain_close || (!stream.request_complete && !stream.upgrade),
            };
            let chain = &mut stream.filters.encoder;
            let result = match outcome {
                UpstreamOutcome::Headers(head, end) => {
                    chain.push_headers(head, end, &mut sink, &mut cb)
                }
                UpstreamOutcome::Data(mut data, end) => {
                    chain.push_data(&mut data, end, &mut sink, &mut cb)
                }
                UpstreamOutcome::Trailers(trailers) => {
                    chain.push_trailers(trailers, &mut sink, &mut cb)
                }
                UpstreamOutcome::End => {
                    chain.push_data(&mut BytesMut::new(), true, &mut sink, &mut cb)
                }
                UpstreamOutcome::LocalReply(reply) => {
                    self.on_router_local_reply(reply, &mut out, io);
                    ChainOutcome::Ok
                }
                UpstreamOutcome::Reset => {
                    self.on_router_reset(&mut out, io);
                    ChainOutcome::Ok
                }
            };
            if result != ChainOutcome::Ok {
                self.on_encoder_stop(result, &mut out, io);
            }
        }
        // One write for everything this event encoded, before the stream may end (and the
        // connection close) below.
        flush_downstream(&shared, &mut out, io);
        scratch::give_encode(out);
        return_outcomes(outcomes);
        self.maybe_finish_stream(io);
    }

    /// The router answers the request itself (no route, no healthy upstream, a timeout, an
    /// overflow, a direct response): what was encoded goes first, then the reply.
    #[cold]
    fn on_router_local_reply<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        reply: LocalReply,
        out: &mut BytesMut,
        io: &mut Io,
    ) {
        flush_downstream(&self.shared, out, io);
        self.send_local_reply(reply, io);
    }

    /// The upstream failed after the response started (it reset or closed mid-body): the
    /// stream is reset, which on HTTP/1 closes the connection.
    #[cold]
    fn on_router_reset<Io: ConnectionIo<Upstream = U>>(&mut self, out: &mut BytesMut, io: &mut Io) {
        self.shared
            .stats
            .rq_reset_after_downstream_response_started
            .inc();
        // What was relayed goes first; the close then ends the response.
        flush_downstream(&self.shared, out, io);
        self.reset_stream(io);
    }

    /// An encoder filter asked for a local reply, or the response overflowed the buffer
    /// limit: a reply of the connection manager's own follows what the chain encoded.
    #[cold]
    fn on_encoder_stop<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        result: ChainOutcome,
        out: &mut BytesMut,
        io: &mut Io,
    ) {
        flush_downstream(&self.shared, out, io);
        match result {
            ChainOutcome::Ok => {}
            ChainOutcome::LocalReply => self.send_filter_local_reply(io),
            ChainOutcome::BufferOverflow => {
                // Envoy: a response too big to buffer is a 500 if nothing was sent yet.
                self.send_local_reply(
                    LocalReply::new(500, "Internal Server Error", "response_payload_too_large"),
                    io,
                );
            }
        }
    }

    // === downstream connection events ===

    pub fn on_downstream_event<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        event: DownstreamEvent,
        io: &mut Io,
    ) {
        match event {
            DownstreamEvent::RemoteClose | DownstreamEvent::LocalClose => {
                self.on_connection_closed(event, io)
            }
            DownstreamEvent::AboveHighWatermark => {
                if let Some(stream) = self.stream.get_mut() {
                    stream.router.on_downstream_watermark(true, io);
                }
            }
            DownstreamEvent::BelowLowWatermark => {
                if let Some(stream) = self.stream.get_mut() {
                    stream.router.on_downstream_watermark(false, io);
                }
            }
        }
    }

    fn on_connection_closed<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        event: DownstreamEvent,
        io: &mut Io,
    ) {
        let stats = &self.shared.stats;
        stats.downstream_cx_destroy.inc();
        stats.downstream_cx_active.dec();
        stats.downstream_cx_http1_active.dec();
        if self.tunnel {
            stats.downstream_cx_upgrades_active.dec();
        }
        let remote = event == DownstreamEvent::RemoteClose;
        if remote {
            stats.downstream_cx_destroy_remote.inc();
        } else {
            stats.downstream_cx_destroy_local.inc();
        }
        if let Some(created) = self.created {
            stats
                .downstream_cx_length_ms
                .record(created.elapsed_at(io.now()).as_millis() as u64);
        }
        if let Some(stream) = self.stream.get_mut() {
            stats.downstream_cx_destroy_active_rq.inc();
            if remote {
                stats.downstream_cx_destroy_remote_active_rq.inc();
                stats.downstream_rq_rx_reset.inc();
                stream
                    .state
                    .response_flags
                    .set(ResponseFlag::DownstreamConnectionTermination);
            } else {
                stats.downstream_cx_destroy_local_active_rq.inc();
            }
            debug!(
                "[C{}][S{}] stream reset: connection closed",
                io.connection_id(),
                stream.id
            );
            self.destroy_stream(io);
        }
        self.closing = true;
        for timer in HcmTimer::ALL {
            io.disarm_timer(timer);
        }
    }

    /// The downstream half-closed: an incomplete request is a premature close.
    fn on_downstream_eof<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let mut empty = BytesMut::new();
        let no_input = BytesMut::new();
        let pending = self.pending_input.as_deref().unwrap_or(&no_input);
        match self.codec.on_eof(pending) {
            Ok(Some(RequestEvent::MessageComplete)) => self.on_message_complete(io),
            Ok(_) => {
                if self.stream.is_none() {
                    self.closing = true;
                    io.close(CloseHow::FlushWrite);
                }
            }
            Err(_) => {
                // A request cut short: nothing to answer (Envoy resets the stream).
                self.closing = true;
                if self.stream.is_some() {
                    self.shared.stats.downstream_rq_rx_reset.inc();
                    self.destroy_stream(io);
                }
                io.close(CloseHow::NoFlush);
            }
        }
        empty.clear();
    }

    // === timers ===

    pub fn on_timer<Io: ConnectionIo<Upstream = U>>(&mut self, timer: HcmTimer, io: &mut Io) {
        let stats = &self.shared.stats;
        match timer {
            HcmTimer::ConnectionIdle => {
                if self.stream.is_none() {
                    debug!("[C{}] idle timeout", io.connection_id());
                    stats.downstream_cx_idle_timeout.inc();
                    if self.requests == 0 {
                        // Nothing was ever said on this connection: just close it.
                        self.closing = true;
                        io.close(CloseHow::FlushWrite);
                    } else if !self.draining {
                        // Envoy's `startDrainSequence`: a next request would get
                        // `connection: close`; the connection closes after drain_timeout.
                        self.start_drain_sequence(io);
                    }
                }
            }
            HcmTimer::Drain => self.on_drain_timeout(io),
            HcmTimer::RequestHeaders => {
                stats.downstream_rq_header_timeout.inc();
                if self.stream.is_some() {
                    return;
                }
                debug!("[C{}] request header timeout", io.connection_id());
                self.reply_without_stream(408, "request header timeout", io);
            }
            HcmTimer::StreamIdle => {
                let Some(stream) = self.stream.get_mut() else {
                    return;
                };
                stats.downstream_rq_idle_timeout.inc();
                stream
                    .state
                    .response_flags
                    .set(ResponseFlag::StreamIdleTimeout);
                let request_complete = stream.request_complete;
                let status = if request_complete { 504 } else { 408 };
                self.send_local_reply(
                    LocalReply::new(status, "stream timeout", "stream_idle_timeout"),
                    io,
                );
                if !request_complete {
                    self.close_after_reply(io);
                }
                // A complete request's 504 keeps the connection (as Envoy 1.40 does).
            }
            HcmTimer::Request => {
                if self.stream.is_none() {
                    return;
                }
                stats.downstream_rq_timeout.inc();
                self.send_local_reply(
                    LocalReply::new(408, "request timeout", "request_overall_timeout"),
                    io,
                );
                self.close_after_reply(io);
            }
            router_timer => {
                let Some(stream) = self.stream.get_mut() else {
                    return;
                };
                let mut cb = FilterCallbacks {
                    now: io.now(),
                    connection_id: io.connection_id(),
                    stream_id: stream.id,
                    state: &mut stream.state,
                };
                let mut outcomes = take_outcomes();
                stream
                    .router
                    .on_timer(router_timer, &mut cb, io, &mut outcomes);
                self.process_outcomes(outcomes, io);
            }
        }
        self.maybe_finish_stream(io);
    }

    /// A connection pool woke this connection manager: the stream waiting for an upstream
    /// connection asks the pool again (Envoy's `onPoolReady` / `onPoolFailure` for a pending
    /// stream). A wake-up for a stream that is gone is ignored by the router.
    pub fn on_pool_wake<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        let mut cb = FilterCallbacks {
            now: io.now(),
            connection_id: io.connection_id(),
            stream_id: stream.id,
            state: &mut stream.state,
        };
        let mut outcomes = take_outcomes();
        stream.router.on_pool_wake(&mut cb, io, &mut outcomes);
        self.process_outcomes(outcomes, io);
        self.maybe_finish_stream(io);
    }

    /// A timeout answered an incomplete request: the connection cannot be reused.
    #[cold]
    fn close_after_reply<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.destroy_stream(io);
        self.closing = true;
        io.close(CloseHow::FlushWriteAndDelay);
    }

    /// The server started draining (the drain manager's drain-close callback). Envoy's
    /// `updateDrainState` + `startDrainSequence` for HTTP/1: counted once as
    /// `downstream_cx_drain_close`; the response in flight (or the next one) carries
    /// `connection: close` and the connection closes after it; a connection still idle when
    /// `drain_timeout` ends is closed (the grace period lets a request already on the wire be
    /// answered instead of meeting a closed socket). An upgraded tunnel runs on.
    pub fn on_drain_close<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if self.closing || self.tunnel || self.draining {
            return;
        }
        debug!("[C{}] drain closing connection", io.connection_id());
        self.shared.stats.downstream_cx_drain_close.inc();
        self.start_drain_sequence(io);
    }

    /// Envoy's drain check in `ActiveStream::encodeHeaders`, once per response: if the drain
    /// manager (or a failed health check) says this response closes the connection, the drain
    /// sequence starts (`connection: close` on it) and counts `downstream_cx_drain_close`.
    fn check_drain_close<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if self.draining || self.closing || !io.drain_close() {
            return;
        }
        // The server drains or fails health checks: once per connection.
        std::hint::cold_path();
        debug!("[C{}] drain closing connection", io.connection_id());
        self.shared.stats.downstream_cx_drain_close.inc();
        self.start_drain_sequence(io);
    }

    /// Envoy's `startDrainSequence`: no more keep-alive; `drain_timeout` later an idle
    /// connection closes (`onDrainTimeout`); zero closes an idle one now. At most once per
    /// connection (the server drains, or the connection idled out).
    #[cold]
    fn start_drain_sequence<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.draining = true;
        let drain = self.shared.config.drain_timeout;
        if drain.is_zero() {
            self.on_drain_timeout(io);
        } else {
            io.arm_timer(HcmTimer::Drain, drain);
        }
    }

    /// Envoy's `onDrainTimeout` → `checkForDeferredClose`: an idle connection closes now; one
    /// with a stream closes when that stream ends (its response says `connection: close`).
    /// Only on a draining connection.
    #[cold]
    fn on_drain_timeout<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        if self.stream.is_none() && !self.closing {
            debug!(
                "[C{}] drain timeout: closing idle connection",
                io.connection_id()
            );
            self.closing = true;
            io.close(CloseHow::FlushWrite);
        }
    }

    // === stream completion ===

    /// A malformed request (Envoy's codec error path): answer with the codec's status and
    /// close, since the framing of whatever follows is in doubt.
    #[cold]
    fn on_codec_error<Io: ConnectionIo<Upstream = U>>(&mut self, error: CodecError, io: &mut Io) {
        debug!(
            "[C{}] request decode error: {} ({})",
            io.connection_id(),
            error,
            error.details()
        );
        self.shared.stats.downstream_cx_protocol_error.inc();
        let status = error.status();
        if let Some(stream) = self.stream.get_mut() {
            stream
                .state
                .response_flags
                .set(ResponseFlag::DownstreamProtocolError);
            if !stream.filters.encoder.headers_delivered {
                self.send_local_reply(
                    LocalReply::new(status, reason_phrase(status), error.details()),
                    io,
                );
            }
            self.destroy_stream(io);
            self.closing = true;
            io.close(CloseHow::FlushWriteAndDelay);
            return;
        }
        if status == 0 {
            self.closing = true;
            io.close(CloseHow::NoFlush);
            return;
        }
        self.shared.stats.downstream_rq_total.inc();
        self.shared.stats.downstream_rq_http1_total.inc();
        self.reply_without_stream(status, reason_phrase(status), io);
    }

    /// A reply when no stream exists (the head never parsed or never came in time): straight
    /// to the codec, then close.
    #[cold]
    fn reply_without_stream<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        status: u16,
        body: &str,
        io: &mut Io,
    ) {
        let reply = LocalReply::new(status, body, "");
        let mut head = local_reply_headers(&reply);
        mutate_response_headers(&mut head, &self.shared.config, None);
        self.shared.stats.charge_response(status);
        self.shared.stats.downstream_rq_completed.inc();
        let mut out = scratch::take_encode();
        self.codec.encode_headers(&head, body.is_empty(), &mut out);
        if !body.is_empty() {
            self.codec.encode_data(body.as_bytes(), true, &mut out);
        }
        self.shared
            .stats
            .downstream_cx_tx_bytes_total
            .add(out.len() as u64);
        io.write(&mut out, false);
        scratch::give_encode(out);
        self.closing = true;
        io.close(CloseHow::FlushWriteAndDelay);
    }

    /// Resets the active stream after its response started: the only way to tell an HTTP/1
    /// client is to close the connection. Reached only when something failed mid-response
    /// (the upstream reset, a timeout, a filter's reply too late).
    #[cold]
    fn reset_stream<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        self.shared.stats.downstream_rq_tx_reset.inc();
        // The response flag is the cause's, set by whoever asked for the reset (UC for an
        // upstream that closed, UT for a timeout, UPE for a protocol error), as in Envoy.
        if self.stream.is_some() {
            self.destroy_stream(io);
        }
        self.closing = true;
        // What was already relayed reaches the client; the close tells it the rest never will.
        // Envoy's `doEndStream` puts the connection in its Closing drain state, which closes
        // with `FlushWriteAndDelay` (checked against Envoy 1.40: EOF 1 s after the reset).
        io.close(CloseHow::FlushWriteAndDelay);
    }

    /// Ends the stream once both directions are done (Envoy's `doEndStream`).
    fn maybe_finish_stream<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let Some(stream) = self.stream.get() else {
            return;
        };
        if !stream.filters.encoder.complete || self.tunnel {
            return;
        }
        // An upgrade the upstream refused (no 101): the connection's framing is in doubt.
        let request_complete = stream.request_complete && !stream.upgrade;
        let id = stream.id;
        self.destroy_stream(io);
        if self.closing {
            return;
        }
        let max_reached = self
            .shared
            .config
            .max_requests_per_connection
            .is_some_and(|max| self.requests >= max);
        if !request_complete || self.codec.should_close() || self.draining || max_reached {
            self.close_after_stream(request_complete, max_reached, id, io);
            return;
        }
        trace!(
            "[C{}][S{id}] ConnectionManagerImpl::doEndStream: keep-alive, waiting for the next request",
            io.connection_id()
        );
        self.arm_idle(io);
        if self.pending_input.is_some() {
            self.dispatch_pipelined(io);
        }
    }

    /// The stream ended and the connection does not stay open for another: the request
    /// said `connection: close` (or was HTTP/1.0), the connection is draining or reached
    /// `max_requests_per_connection`, or the response came before the request was complete.
    /// Out of line: a keep-alive connection ends this way once, not per request.
    #[inline(never)]
    fn close_after_stream<Io: ConnectionIo<Upstream = U>>(
        &mut self,
        request_complete: bool,
        max_reached: bool,
        id: u64,
        io: &mut Io,
    ) {
        if !request_complete {
            // HTTP/1: answered before the request was read; its remaining bytes cannot be
            // framed reliably, so the connection closes (Envoy does the same).
            self.shared
                .stats
                .downstream_rq_response_before_rq_complete
                .inc();
            trace!(
                "[C{}][S{id}] ConnectionManagerImpl::doEndStream: response before the request completed: close",
                io.connection_id()
            );
        } else {
            trace!(
                "[C{}][S{id}] ConnectionManagerImpl::doEndStream: close ({})",
                io.connection_id(),
                if self.codec.should_close() {
                    "connection: close"
                } else if max_reached {
                    "max_requests_per_connection"
                } else {
                    "draining"
                }
            );
        }
        self.closing = true;
        io.close(CloseHow::FlushWriteAndDelay);
    }

    /// The next pipelined request, waiting in `pending_input` since before this response
    /// ended. Reached only by a client that pipelines.
    #[cold]
    fn dispatch_pipelined<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let Some(mut buf) = self.pending_input.take() else {
            return;
        };
        self.arm_head_timer(io);
        self.dispatch(&mut buf, io);
        match &mut self.pending_input {
            Some(newer) => newer.extend_from_slice(&buf),
            None if !buf.is_empty() => self.pending_input = Some(buf),
            None => {}
        }
    }

    /// Stream teardown: stats, filters' `on_destroy`, the router's upstream, timers; then the
    /// slot is emptied. Done in place: the stream (~1.6 KB) is not moved out of its slot.
    fn destroy_stream<Io: ConnectionIo<Upstream = U>>(&mut self, io: &mut Io) {
        let Some(stream) = self.stream.get_mut() else {
            return;
        };
        let stats = &self.shared.stats;
        stats.downstream_rq_active.dec();
        if stream.filters.encoder.complete {
            stats.downstream_rq_completed.inc();
        }
        let elapsed = stream.started.elapsed_at(io.now());
        stats.downstream_rq_time.record(elapsed.as_millis() as u64);
        if !self.shared.access_logs.is_empty() {
            Self::write_access_logs(&self.shared, stream, elapsed, io);
        }
        stream.router.on_destroy(io);
        stream.filters.destroy();
        io.disarm_stream_timers();
        debug!(
            "[C{}][S{}] stream done: status={} flags={} details={} in {:?}",
            io.connection_id(),
            stream.id,
            stream
                .response_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            stream.state.response_flags,
            if stream.state.response_code_details.is_empty() {
                "via_upstream"
            } else {
                stream.state.response_code_details
            },
            elapsed
        );
        self.stream.clear();
    }
}

impl<U: Copy + Eq + std::hash::Hash + std::fmt::Debug + 'static> ConnectionManager<U> {
    /// Envoy's `ActiveStream::log()` at the end of the stream.
    #[inline(never)]
    fn write_access_logs<Io: ConnectionIo<Upstream = U>>(
        shared: &HcmShared,
        stream: &ActiveStream<U>,
        elapsed: std::time::Duration,
        io: &mut Io,
    ) {
        let details = if stream.state.response_code_details.is_empty() {
            stream.response_status.map(|_| "via_upstream")
        } else {
            Some(stream.state.response_code_details)
        };
        let info = crate::access_log::StreamInfo {
            start_time: stream.log.start,
            request_headers: stream
                .log
                .request
                .as_ref()
                .map(|h| h as &dyn crate::access_log::HeaderLookup),
            response_headers: stream
                .log
                .response
                .as_ref()
                .map(|h| h as &dyn crate::access_log::HeaderLookup),
            response_code: stream.response_status,
            response_flags: stream.state.response_flags,
            response_code_details: details,
            bytes_received: stream.log.bytes_received,
            bytes_sent: stream.log.bytes_sent,
            duration: Some(elapsed),
            upstream_host: stream.router.upstream_host,
            upstream_cluster: stream.router.cluster_name(),
            downstream_remote_address: stream.log.downstream_remote.or(io.remote_address()),
            protocol: Some("HTTP/1.1"),
            upstream_request_attempt_count: Some(stream.router.attempts()),
            connection_id: Some(io.connection_id()),
            health_check: stream
                .state
                .response_code_details
                .starts_with("health_check"),
            ..Default::default()
        };
        for log in &shared.access_logs {
            log.log(&info);
        }
    }
}

/// The route's response header edits (Envoy's `finalizeResponseHeaders`). Out of line: only
/// routes with `response_headers_to_add`/`_to_remove` (at any level) have them.
#[inline(never)]
fn finalize_route_response<U: Copy + Eq + std::hash::Hash + std::fmt::Debug>(
    shared: &HcmShared,
    stream: &ActiveStream<U>,
    route_id: usize,
    head: &mut ResponseHead,
) {
    let Some(request) = stream.router.request() else {
        return;
    };
    let downstream = stream.state.downstream;
    let ctx = FormatterContext {
        downstream_remote_address: downstream.remote,
        downstream_direct_remote_address: downstream.direct_remote,
        downstream_local_address: downstream.local,
        upstream_host: stream.router.upstream_host,
        start_time: StartTime::Since(stream.started.instant()),
        protocol: Some(request.version.as_str()),
    };
    shared
        .routes
        .finalize_response(route_id, head, request, &ctx);
}

/// The upstream answered an allowed upgrade with 101: from now on bytes pass through in both
/// directions (`tunnel`). Once per upgraded connection.
#[cold]
fn start_tunnel(tunnel: &mut bool, stats: &HcmStats) {
    *tunnel = true;
    stats.downstream_cx_upgrades_total.inc();
    stats.downstream_cx_upgrades_active.inc();
}

/// Whether the request's `upgrade` is one the config allows. Asked only of a request with an
/// `upgrade` header (websockets and the like: a connection's first request, at most).
#[cold]
fn upgrade_allowed(config: &HcmConfig, head: &RequestHead) -> bool {
    config.upgrade_allowed(head.headers.get_str("upgrade").unwrap_or(""))
}

/// Keeps what the access log needs of the request (only when access logs are configured;
/// out of line so that the request path without them stays short).
#[inline(never)]
fn keep_request_for_log<Io: ConnectionIo>(log: &mut StreamLog, head: &RequestHead, io: &mut Io) {
    log.request = Some(head.clone());
    log.start = Some(io.wall_now());
}

/// Events of the router's upstream connection, as the connection manager needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamEvent {
    Connected,
    /// Closed by either side, or a connect failure (before `Connected`).
    Closed,
    AboveHighWatermark,
    BelowLowWatermark,
}

/// Events of the downstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownstreamEvent {
    RemoteClose,
    LocalClose,
    AboveHighWatermark,
    BelowLowWatermark,
}

/// The decoder chain's end: the router filter.
struct RouterSink<'a, U, Io> {
    router: &'a mut RouterFilter<U>,
    io: &'a mut Io,
    shared: &'a HcmShared,
}

impl<U, Io> ChainSink<RequestHead> for RouterSink<'_, U, Io>
where
    U: Copy + Eq + std::hash::Hash + std::fmt::Debug,
    Io: ConnectionIo<Upstream = U>,
{
    fn on_headers(&mut self, head: &mut RequestHead, end_stream: bool, cb: &mut FilterCallbacks) {
        self.router.decode_headers(
            head,
            end_stream,
            self.shared.routes.as_ref(),
            cb,
            self.io,
            &self.shared.stats,
        );
    }
    fn on_data(&mut self, data: &mut BytesMut, end_stream: bool, cb: &mut FilterCallbacks) {
        self.router.decode_data(data, end_stream, cb, self.io);
    }
    fn on_trailers(&mut self, trailers: &mut HeaderMap, cb: &mut FilterCallbacks) {
        self.router.decode_trailers(trailers, cb, self.io);
    }
}

/// The encoder chain's end: the codec (Envoy's `ResponseEncoder`). What it encodes waits in
/// `out` until the caller's [`flush_downstream`] (`ConnectionImpl::write`); a large body chunk
/// the framing passes through as it is goes to the connection itself, behind `out`.
struct DownstreamSink<'a, Io> {
    codec: &'a mut ServerCodec,
    /// The worker's encode buffer (`http::scratch`), flushed by the caller.
    out: &'a mut BytesMut,
    io: &'a mut Io,
    shared: &'a HcmShared,
    request_id: Option<&'a str>,
    status: &'a mut Option<u16>,
    /// Set when access logs want the response head and byte counts.
    log: Option<&'a mut StreamLog>,
    /// The connection closes after this response (drain, max requests): `connection: close`.
    closing: bool,
}

/// Body chunks at least this large are written to the connection as they are when the framing
/// adds nothing around them (`content-length`, close-delimited): the chunk (a part of the
/// upstream connection's read buffer, `codec::decode`) is queued behind the encoded head, and
/// both leave in one `writev`, without a copy. Smaller ones are copied behind the head into
/// the encode buffer (one `send`): a second write costs more than copying a few hundred bytes.
const WRITE_BODY_AS_IS_MIN: usize = 2048;

/// Writes what the encoder chain encoded into `out` to the downstream connection (one write
/// per event: the response head and the body that came with it leave together, as Envoy's
/// codec output buffer is flushed to the connection once per dispatch).
fn flush_downstream<Io: ConnectionIo>(shared: &HcmShared, out: &mut BytesMut, io: &mut Io) {
    if !out.is_empty() {
        shared
            .stats
            .downstream_cx_tx_bytes_total
            .add(out.len() as u64);
        io.write(out, false);
    }
}

impl<Io: ConnectionIo> ChainSink<ResponseHead> for DownstreamSink<'_, Io> {
    fn on_headers(&mut self, head: &mut ResponseHead, end_stream: bool, cb: &mut FilterCallbacks) {
        mutate_response_headers(head, &self.shared.config, self.request_id);
        if self.closing {
            // Envoy: a draining HTTP/1 connection's response says `connection: close`.
            head.headers.insert("connection", "close");
        }
        *self.status = Some(head.status);
        if let Some(log) = self.log.as_deref_mut() {
            log.response = Some(head.clone());
        }
        self.shared.stats.charge_response(head.status);
        debug!(
            "[C{}][S{}] ActiveStream::encodeHeaders: encoding headers via codec (end_stream={end_stream}): {}",
            cb.connection_id,
            cb.stream_id,
            head.status
        );
        self.codec.encode_headers(head, end_stream, self.out);
    }
    fn on_data(&mut self, data: &mut BytesMut, end_stream: bool, cb: &mut FilterCallbacks) {
        trace!(
            "[C{}][S{}] ActiveStream::encodeData: encoding data via codec (size={} end_stream={end_stream})",
            cb.connection_id,
            cb.stream_id,
            data.len()
        );
        if let Some(log) = self.log.as_deref_mut() {
            log.bytes_sent += data.len() as u64;
        }
        if data.len() >= WRITE_BODY_AS_IS_MIN && self.codec.body_is_verbatim() {
            // What was encoded before it (the head) goes first; then the chunk itself.
            flush_downstream(self.shared, self.out, self.io);
            flush_downstream(self.shared, data, self.io);
            // The end of these framings writes nothing; the codec's response is done.
            self.codec.encode_data(&[], end_stream, self.out);
        } else {
            self.codec.encode_data(data, end_stream, self.out);
        }
        data.clear();
    }
    fn on_trailers(&mut self, trailers: &mut HeaderMap, cb: &mut FilterCallbacks) {
        trace!(
            "[C{}][S{}] ActiveStream::encodeTrailers: encoding trailers via codec",
            cb.connection_id,
            cb.stream_id
        );
        self.codec.encode_trailers(trailers, self.out);
    }
}
