//! Bodies stream through the proxy in both directions with flow control: a large upload to a
//! stalled upstream and a large download to a stalled client never pile up in the proxy.
//! 1 GiB each in release builds (the CI's `cargo test --profile ci`: release optimisations), 128 MiB in debug builds.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::http::*;

const SIZE: u64 = if cfg!(debug_assertions) {
    128 << 20
} else {
    1 << 30
};
/// The proxy's resident memory must stay under this while streaming (its buffers are bounded
/// by the 1 MiB buffer limits and the watermarks, whatever the body size).
const RSS_LIMIT_KIB: u64 = 96 * 1024;

/// Samples the proxy's RSS until stopped; returns the maximum.
fn watch_rss(pid: u32, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            max = max.max(rss);
            thread::sleep(Duration::from_millis(20));
        }
        max
    })
}

#[test]
fn large_upload_to_a_slow_upstream_keeps_memory_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let got = received.clone();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_head(&mut s);
        // Stall first: the proxy must stop reading the client instead of buffering.
        thread::sleep(Duration::from_millis(1500));
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while total < SIZE {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        got.store(total, Ordering::SeqCst);
        let body = total.to_string();
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let proxy = Nuncio::start(&simple(addr));
    let stop = Arc::new(AtomicBool::new(false));
    let rss = watch_rss(proxy.pid(), stop.clone());
    let mut client = Client::connect(proxy.listener);
    client
        .send(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes());
    let chunk = vec![b'u'; 1 << 16];
    let mut sent = 0u64;
    while sent < SIZE {
        let n = chunk.len().min((SIZE - sent) as usize);
        client.stream.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
    }
    let r = client.read_response().unwrap();
    stop.store(true, Ordering::Relaxed);
    let max_rss = rss.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), SIZE.to_string());
    assert_eq!(received.load(Ordering::SeqCst), SIZE);
    eprintln!("max proxy RSS: {max_rss} KiB");
    assert!(max_rss < RSS_LIMIT_KIB, "proxy RSS reached {max_rss} KiB");
}

#[test]
fn large_download_to_a_slow_client_keeps_memory_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_head(&mut s);
        write!(s, "HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n").unwrap();
        let chunk = vec![b'd'; 1 << 16];
        let mut sent = 0u64;
        while sent < SIZE {
            let n = chunk.len().min((SIZE - sent) as usize);
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            sent += n as u64;
        }
    });
    let proxy = Nuncio::start(&simple(addr));
    let stop = Arc::new(AtomicBool::new(false));
    let rss = watch_rss(proxy.pid(), stop.clone());
    let mut client = Client::connect(proxy.listener);
    client.send(b"GET /down HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = read_head(&mut client.stream);
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Stall: the proxy must stop reading the upstream instead of buffering.
    thread::sleep(Duration::from_millis(1500));
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    while total < SIZE {
        let n = client.stream.read(&mut buf).unwrap();
        assert!(n > 0, "EOF after {total} bytes");
        total += n as u64;
    }
    stop.store(true, Ordering::Relaxed);
    let max_rss = rss.join().unwrap();
    assert_eq!(total, SIZE);
    eprintln!("max proxy RSS: {max_rss} KiB");
    assert!(max_rss < RSS_LIMIT_KIB, "proxy RSS reached {max_rss} KiB");
}
