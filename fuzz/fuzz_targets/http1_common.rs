#![allow(dead_code)] // each target uses a different part
//! Shared helpers of the HTTP/1 fuzz targets: drive a codec over some input and summarize
//! what it produced in a form that does not depend on how the input was split.

use bytes::BytesMut;
use nuncio::http::codec::{
    ClientCodec, CodecError, Http1Settings, Method, RequestEvent, RequestHead, ResponseEvent,
    ResponseHead, ServerCodec,
};
use std::sync::Arc;

/// One decoded event, split-independent (body bytes are merged by the caller).
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    Head(String),
    Data(Vec<u8>),
    Trailers(String),
    Complete,
    Error(CodecError),
}

pub fn request_summary(head: &RequestHead) -> String {
    format!(
        "{} {} {:?} auth={:?} scheme={:?} body={:?} ka={} up={} expect={} {:?}",
        head.method.as_str(),
        head.path(),
        head.version,
        head.authority(),
        head.scheme,
        head.body,
        head.keep_alive,
        head.upgrade,
        head.expect_continue,
        head.headers
    )
}

pub fn response_summary(head: &ResponseHead) -> String {
    format!(
        "{} {:?} body={:?} ka={} {:?}",
        head.status, head.version, head.body, head.keep_alive, head.headers
    )
}

fn push(seen: &mut Vec<Seen>, event: Seen) {
    if let (Some(Seen::Data(last)), Seen::Data(more)) = (seen.last_mut(), &event) {
        last.extend_from_slice(more);
        return;
    }
    seen.push(event);
}

pub fn settings(accept_http_10: bool) -> Arc<Http1Settings> {
    Arc::new(Http1Settings {
        accept_http_10,
        default_host_for_http_10: accept_http_10.then(|| "default".to_string()),
        ..Http1Settings::default()
    })
}

/// Runs a server codec over `pieces` (fed in order), answering each request so pipelined ones
/// proceed, then signals EOF. Calls `on_head` for every request head.
pub fn serve(
    settings: Arc<Http1Settings>,
    pieces: &[&[u8]],
    mut on_head: impl FnMut(&RequestHead),
) -> Vec<Seen> {
    let mut codec = ServerCodec::new(settings);
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut seen = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(RequestEvent::Headers(head))) => {
                    on_head(&head);
                    push(&mut seen, Seen::Head(request_summary(&head)));
                }
                Ok(Some(RequestEvent::Data(bytes))) => push(&mut seen, Seen::Data(bytes.to_vec())),
                Ok(Some(RequestEvent::Trailers(map))) => {
                    push(&mut seen, Seen::Trailers(format!("{map:?}")))
                }
                Ok(Some(RequestEvent::MessageComplete)) => {
                    push(&mut seen, Seen::Complete);
                    out.clear();
                    codec.encode_headers(&ResponseHead::new(200), false, &mut out);
                    codec.encode_data(b"ok", true, &mut out);
                }
                Err(error) => {
                    push(&mut seen, Seen::Error(error));
                    return seen;
                }
            }
        }
    }
    match codec.on_eof(&buf) {
        Ok(Some(_)) => push(&mut seen, Seen::Complete),
        Ok(None) => {}
        Err(error) => push(&mut seen, Seen::Error(error)),
    }
    seen
}

/// The request a response fuzz input answers, chosen by one byte.
pub fn request_for(selector: u8) -> RequestHead {
    let method = match selector % 4 {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Connect,
        _ => Method::Post,
    };
    let mut head = RequestHead::new(method, "/", "upstream");
    head.upgrade = selector & 0x04 != 0;
    head
}

/// Runs a client codec that sent `request` over the response `pieces`, then EOF.
pub fn receive(request: &RequestHead, pieces: &[&[u8]]) -> Vec<Seen> {
    let mut codec = ClientCodec::new(settings(false));
    let mut out = BytesMut::new();
    codec.encode_headers(request, true, &mut out);
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(ResponseEvent::Informational(head))) => {
                    assert!(head.is_informational());
                    push(&mut seen, Seen::Head(response_summary(&head)))
                }
                Ok(Some(ResponseEvent::Headers(head))) => {
                    push(&mut seen, Seen::Head(response_summary(&head)))
                }
                Ok(Some(ResponseEvent::Data(bytes))) => push(&mut seen, Seen::Data(bytes.to_vec())),
                Ok(Some(ResponseEvent::Trailers(map))) => {
                    push(&mut seen, Seen::Trailers(format!("{map:?}")))
                }
                Ok(Some(ResponseEvent::MessageComplete)) => {
                    push(&mut seen, Seen::Complete);
                    // One request, one response: anything after it is a stray byte.
                }
                Err(error) => {
                    push(&mut seen, Seen::Error(error));
                    return seen;
                }
            }
        }
    }
    match codec.on_eof(&buf) {
        Ok(Some(_)) => push(&mut seen, Seen::Complete),
        Ok(None) => {}
        Err(error) => push(&mut seen, Seen::Error(error)),
    }
    seen
}
