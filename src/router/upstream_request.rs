//! `UpstreamRequest`: one try of a request on one upstream connection (Envoy's
//! `UpstreamRequest` plus the `CodecClient` it talks through): the connection handle, the
//! client-role HTTP/1 codec, and where the exchange stands.
//!
//! Created by the router filter (`router::filter`) for each attempt; the router feeds it the
//! request (`encode_*`) and the upstream's bytes (`decode`), and decides from its state whether
//! the connection goes back to the pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::http::codec::{ClientCodec, CodecError, Http1Settings, RequestHead, ResponseEvent};
use crate::http::HeaderMap;

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
    pub conn: U,
    pub state: UpstreamState,
    pub codec: ClientCodec,
    /// Requests this connection has carried, this one included (`max_requests_per_connection`).
    pub requests: u32,
    /// The request head was written.
    pub headers_sent: bool,
    /// The whole request (end of stream) was written.
    pub request_complete: bool,
    /// When the request head went upstream (`x-envoy-upstream-service-time`,
    /// `upstream_rq_time`).
    pub sent_at: Option<Instant>,
    /// The connection was new (counted in `upstream_cx_*` when it connects).
    pub new_connection: bool,
}

impl<U: Copy> UpstreamRequest<U> {
    pub fn new(
        host: SocketAddr,
        conn: U,
        connected: bool,
        requests: u32,
        settings: Arc<Http1Settings>,
    ) -> Self {
        UpstreamRequest {
            host,
            conn,
            state: if connected {
                UpstreamState::AwaitingHeaders
            } else {
                UpstreamState::Connecting
            },
            codec: ClientCodec::new(settings),
            requests: requests + 1,
            headers_sent: false,
            request_complete: false,
            sent_at: None,
            new_connection: !connected,
        }
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
        self.sent_at = Some(now);
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
