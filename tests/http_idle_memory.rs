//! Memory per idle keep-alive HTTP connection: 2,000 connections through the real binary each
//! make one proxied `GET /` and then stay open, idle; the proxy's resident memory (VmRSS) may
//! grow by at most `LIMIT_BYTES` per connection (issue 4 aims at 512; nginx measures ~490;
//! this measured ~1,050 when written, ~800 after the encode buffer went, ~560 with the compact
//! connection entry and HCM filter, ~520 with token-dispatched reactor events).
//!
//! An idle connection owns no buffer, no stream and one timer: the slab entry, the HTTP
//! connection manager filter and the reactor registrations are what remain. The bound leaves
//! room for allocator noise (RSS moves in pages, arenas grow in steps) while failing loudly on
//! a per-connection buffer or stream kept between requests (those cost kilobytes each: before
//! the streams, outcome vectors, timers and write queues were released, this measured ~3.7 KB).

mod http_support;

use std::io::{Read, Write};
use std::net::TcpStream;

use http_support::*;

/// Idle connections opened (the test process needs this many sockets, plus a margin).
const CONNECTIONS: usize = 2000;
/// Allowed RSS growth per idle connection.
const LIMIT_BYTES: u64 = 640;

fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).expect("setrlimit");
    }
}

/// Sends one `GET /` and reads the whole `200 hello` response.
fn get_hello(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: idle\r\nuser-agent: idle-conns\r\n\r\n")
        .expect("write request");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !(got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"hello")) {
        let n = stream.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "closed before the response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn an_idle_keep_alive_connection_costs_at_most_640_bytes() {
    raise_fd_limit(CONNECTIONS as u64 + 256);
    let upstream = HttpUpstream::hello();
    let nuncio = Nuncio::start(&simple(upstream.addr));

    // Warm-up (like the benchmark's load phase before its idle test): the worker's scratch
    // buffers, free lists, pool and stats exist before the first measurement.
    let warm: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(nuncio.listener).expect("connect");
            for _ in 0..4 {
                get_hello(&mut s);
            }
            s
        })
        .collect();
    drop(warm);
    nuncio.wait_stat("http.ingress.downstream_cx_active", 0);
    let before = nuncio.rss_kib();

    let mut idle = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(nuncio.listener).expect("connect");
        get_hello(&mut s);
        idle.push(s);
    }
    nuncio.wait_stat("http.ingress.downstream_cx_active", CONNECTIONS as u64);
    let after = nuncio.rss_kib();
    let per_connection = after.saturating_sub(before) * 1024 / CONNECTIONS as u64;
    eprintln!(
        "RSS {before} KiB -> {after} KiB with {CONNECTIONS} idle connections: \
         {per_connection} bytes per connection"
    );
    assert!(
        per_connection <= LIMIT_BYTES,
        "{per_connection} bytes of RSS per idle keep-alive connection (limit {LIMIT_BYTES})"
    );
    // They are still usable.
    for s in idle.iter_mut().step_by(100) {
        get_hello(s);
    }
}
