//! HTTP/1 codec hot path: what parsing and re-encoding one typical request and one typical
//! response costs, as the proxy does them per request (server decode + client encode of the
//! request; client decode + server encode of the response).
//!
//! `cargo bench --bench http1_codec`. The issue-4 budget is ~6 µs of proxy CPU per request; the
//! four codec steps together should stay a small fraction of it (about 1 µs or less).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use nuncio::http::codec::{
    ClientCodec, Http1Settings, RequestEvent, ResponseEvent, ResponseHead, ServerCodec,
};
use std::hint::black_box;
use std::sync::Arc;

/// What wrk sends (plus a few browser-like fields).
const REQUEST: &[u8] = b"GET /4k HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.5\r\nConnection: keep-alive\r\nCookie: session=abcdef0123456789\r\n\r\n";

/// A typical upstream answer with a small body.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\nETag: \"65f1-c\"\r\nAccept-Ranges: bytes\r\n\r\nhello world\n";

fn request_path(c: &mut Criterion) {
    let settings = Arc::new(Http1Settings::default());
    let mut g = c.benchmark_group("request");
    let mut read = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    g.bench_function("server_decode", |b| {
        let mut codec = ServerCodec::new(settings.clone());
        b.iter(|| {
            read.extend_from_slice(REQUEST);
            let head = match codec.decode(&mut read) {
                Ok(Some(RequestEvent::Headers(head))) => head,
                other => panic!("{other:?}"),
            };
            let _ = codec.decode(&mut read); // MessageComplete
            out.clear();
            codec.encode_headers(&ResponseHead::new(200), true, &mut out);
            black_box(head)
        })
    });
    let head = match ServerCodec::new(settings.clone()).decode(&mut BytesMut::from(REQUEST)) {
        Ok(Some(RequestEvent::Headers(head))) => head,
        other => panic!("{other:?}"),
    };
    g.bench_function("client_encode", |b| {
        let mut codec = ClientCodec::new(settings.clone());
        b.iter(|| {
            out.clear();
            codec.encode_headers(black_box(&head), true, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn response_path(c: &mut Criterion) {
    let settings = Arc::new(Http1Settings::default());
    let mut g = c.benchmark_group("response");
    let request = match ServerCodec::new(settings.clone()).decode(&mut BytesMut::from(REQUEST)) {
        Ok(Some(RequestEvent::Headers(head))) => head,
        other => panic!("{other:?}"),
    };
    let mut read = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    g.bench_function("client_decode", |b| {
        let mut codec = ClientCodec::new(settings.clone());
        b.iter(|| {
            out.clear();
            codec.encode_headers(&request, true, &mut out);
            read.extend_from_slice(RESPONSE);
            let mut head = None;
            loop {
                match codec.decode(&mut read) {
                    Ok(Some(ResponseEvent::Headers(h))) => head = Some(h),
                    Ok(Some(ResponseEvent::MessageComplete)) => break,
                    Ok(Some(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
            black_box(head)
        })
    });
    let response = {
        let mut codec = ClientCodec::new(settings.clone());
        codec.encode_headers(&request, true, &mut BytesMut::new());
        match codec.decode(&mut BytesMut::from(RESPONSE)) {
            Ok(Some(ResponseEvent::Headers(head))) => head,
            other => panic!("{other:?}"),
        }
    };
    g.bench_function("server_encode", |b| {
        let mut codec = ServerCodec::new(settings.clone());
        b.iter(|| {
            read.extend_from_slice(REQUEST);
            while let Ok(Some(event)) = codec.decode(&mut read) {
                if matches!(event, RequestEvent::MessageComplete) {
                    break;
                }
            }
            out.clear();
            codec.encode_headers(black_box(&response), false, &mut out);
            codec.encode_data(b"hello world\n", true, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, request_path, response_path);
criterion_main!(benches);
