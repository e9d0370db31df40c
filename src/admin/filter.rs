//! The admin endpoint as a network filter on the admin listener: HTTP/1.1 through the codec's
//! [`ServerCodec`], one [`AdminServer::handle`] call per request, keep-alive and pipelining as
//! the codec allows them.
//!
//! Installed by the admin listener's filter chain (`AdminServer::listener_config`), so it runs
//! on the main thread's dispatcher like any listener's filter runs on a worker. Request bodies
//! are read and ignored (no admin endpoint takes one). A request the codec refuses gets the
//! codec's status (400, 431, ...) with its reason phrase, and the connection is closed.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;

use super::server::{AdminResponse, AdminServer, AfterResponse};
use crate::access_log::StreamInfo;
use crate::http::codec::{reason_phrase, RequestEvent, RequestHead, ResponseHead, ServerCodec};
use crate::network::connection::{CloseType, ConnectionEvent};
use crate::network::filter::{FilterContext, FilterStatus, ReadFilter};

/// One admin connection.
pub struct AdminFilter {
    server: Arc<AdminServer>,
    codec: ServerCodec,
    /// The request being read (answered at its MessageComplete), when it started, and the
    /// body bytes received.
    request: Option<(RequestHead, SystemTime, Instant, u64)>,
    /// Set by `/quitquitquit`: quit once the connection is closed (response flushed).
    quit_on_close: bool,
    out: BytesMut,
    /// When the connection was accepted (`downstream_cx_length_ms`); `None` once closed.
    opened: Option<Instant>,
}

impl AdminFilter {
    pub fn new(server: Arc<AdminServer>) -> AdminFilter {
        AdminFilter {
            server,
            codec: ServerCodec::new(Arc::default()),
            request: None,
            quit_on_close: false,
            out: BytesMut::new(),
            opened: None,
        }
    }

    fn respond(&mut self, response: &AdminResponse) {
        self.server.http_stats().charge_response(response.status);
        let mut head = ResponseHead::new(response.status);
        head.headers.insert("content-type", response.content_type);
        head.headers.insert("cache-control", "no-cache, max-age=0");
        head.headers.insert("x-content-type-options", "nosniff");
        head.headers
            .insert("content-length", response.body.len().to_string());
        if response.after == AfterResponse::Quit {
            head.headers.insert("connection", "close");
        }
        let empty = response.body.is_empty();
        self.codec.encode_headers(&head, empty, &mut self.out);
        if !empty {
            self.codec
                .encode_data(response.body.as_bytes(), true, &mut self.out);
        }
    }
}

impl ReadFilter for AdminFilter {
    fn on_new_connection(&mut self, _cx: &mut FilterContext<'_>) -> FilterStatus {
        let s = &self.server.http_stats().hcm;
        s.downstream_cx_total.inc();
        s.downstream_cx_active.inc();
        s.downstream_cx_http1_total.inc();
        s.downstream_cx_http1_active.inc();
        self.opened = Some(Instant::now());
        FilterStatus::Continue
    }

    fn on_data(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus {
        let s = &self.server.http_stats().hcm;
        s.downstream_cx_rx_bytes_total.add(data.len() as u64);
        let before = self.out.len();
        loop {
            let event = match self.codec.decode(data) {
                Ok(Some(event)) => event,
                Ok(None) if end_stream => match self.codec.on_eof(data) {
                    Ok(Some(event)) => event,
                    Ok(None) | Err(_) => {
                        data.clear();
                        cx.close(CloseType::FlushWrite);
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    debug!(
                        "[{}] admin: bad request: {}",
                        cx.connection_id(),
                        e.details()
                    );
                    self.server
                        .http_stats()
                        .hcm
                        .downstream_cx_protocol_error
                        .inc();
                    data.clear();
                    let body = if e.status() == 400 && e.details() == "missing_host_header" {
                        String::new()
                    } else {
                        reason_phrase(e.status()).to_string()
                    };
                    self.respond(&AdminResponse {
                        status: e.status(),
                        content_type: "text/plain; charset=UTF-8",
                        body,
                        after: AfterResponse::Nothing,
                    });
                    cx.write(&mut self.out, false);
                    cx.close(CloseType::FlushWrite);
                    return FilterStatus::StopIteration;
                }
            };
            match event {
                RequestEvent::Headers(head) => {
                    let s = &self.server.http_stats().hcm;
                    s.downstream_rq_total.inc();
                    s.downstream_rq_http1_total.inc();
                    s.downstream_rq_active.inc();
                    self.request = Some((head, SystemTime::now(), Instant::now(), 0));
                }
                RequestEvent::Data(bytes) => {
                    if let Some(r) = self.request.as_mut() {
                        r.3 += bytes.len() as u64;
                    }
                }
                RequestEvent::Trailers(_) => {}
                RequestEvent::MessageComplete => {
                    let Some((head, start_time, started, received)) = self.request.take() else {
                        continue;
                    };
                    let (method, target) = (head.method.as_str(), head.path());
                    debug!("[{}] admin: {method} {target}", cx.connection_id());
                    let response = self.server.handle(method, target);
                    self.respond(&response);
                    let s = &self.server.http_stats().hcm;
                    s.downstream_rq_active.dec();
                    s.downstream_rq_time
                        .record(started.elapsed().as_millis() as u64);
                    if response.after == AfterResponse::Quit {
                        self.quit_on_close = true;
                    }
                    let connection = cx.connection();
                    self.server.log_request(&StreamInfo {
                        start_time: Some(start_time),
                        request_headers: Some(&head),
                        response_code: Some(response.status),
                        response_code_details: Some("admin_filter_response"),
                        bytes_received: received,
                        bytes_sent: response.body.len() as u64,
                        duration: Some(started.elapsed()),
                        downstream_remote_address: connection.map(|c| c.remote_address()),
                        downstream_local_address: connection.map(|c| c.local_address()),
                        protocol: Some(head.version.as_str()),
                        connection_id: Some(cx.connection_id().global_id()),
                        ..Default::default()
                    });
                }
            }
        }
        if !self.out.is_empty() {
            let written = self.out.len().saturating_sub(before);
            self.server
                .http_stats()
                .hcm
                .downstream_cx_tx_bytes_total
                .add(written as u64);
            cx.write(&mut self.out, false);
        }
        if self.codec.should_close() || self.quit_on_close {
            cx.close(CloseType::FlushWrite);
        }
        FilterStatus::StopIteration
    }

    fn on_event(&mut self, event: ConnectionEvent, _cx: &mut FilterContext<'_>) {
        let closed = matches!(
            event,
            ConnectionEvent::LocalClose | ConnectionEvent::RemoteClose
        );
        if let (true, Some(opened)) = (closed, self.opened.take()) {
            let s = &self.server.http_stats().hcm;
            s.downstream_cx_active.dec();
            s.downstream_cx_http1_active.dec();
            s.downstream_cx_destroy.inc();
            if event == ConnectionEvent::LocalClose {
                s.downstream_cx_destroy_local.inc();
            } else {
                s.downstream_cx_destroy_remote.inc();
            }
            if self.request.take().is_some() {
                s.downstream_rq_active.dec();
                s.downstream_cx_destroy_active_rq.inc();
            }
            s.downstream_cx_length_ms
                .record(opened.elapsed().as_millis() as u64);
        }
        if matches!(
            event,
            ConnectionEvent::LocalClose | ConnectionEvent::RemoteClose
        ) && self.quit_on_close
        {
            self.quit_on_close = false;
            self.server.quit();
        }
    }
}
