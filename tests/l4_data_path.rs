//! Issue 3's data path through the real `nuncio` binary, real sockets on 127.0.0.1: echo,
//! tcp_proxy (bulk both ways, half-close, refused upstream), flow control under a memory bound,
//! thousands of concurrent connections, worker spreading, PROXY protocol, filter chain
//! selection and the tcp_proxy access log.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

fn tcp_proxy_to(upstream: SocketAddr, connect_timeout: &str) -> String {
    simple_config(
        "proxy",
        &tcp_proxy_filter("tp", "backend"),
        &cluster("backend", upstream, connect_timeout),
    )
}

#[test]
fn echo_round_trip() {
    let nuncio = Nuncio::start(&simple_config("echo", ECHO_FILTER, ""), &[]);
    let mut s = connect(nuncio.listener("echo"));
    s.write_all(b"hello nuncio").unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello nuncio");
    // A larger message and the FIN: everything comes back, then EOF.
    let sent = send_pattern(&mut s, 7, 3 * 1024 * 1024 + 5);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(receive_checksum(&mut s), sent);
}

#[test]
fn tcp_proxy_carries_64_mib_each_way() {
    const LEN: usize = 64 * 1024 * 1024;
    let received_upstream = Arc::new(std::sync::Mutex::new(None));
    let sink = received_upstream.clone();
    // The upstream sends its own 64 MiB while it reads the client's.
    let upstream = Upstream::start(move |s| {
        let mut writer = s.try_clone().unwrap();
        let sender = thread::spawn(move || {
            let sum = send_pattern(&mut writer, 2, LEN);
            writer.shutdown(Shutdown::Write).unwrap();
            sum
        });
        let mut reader = s;
        let got = receive_checksum(&mut reader);
        let sent = sender.join().unwrap();
        *sink.lock().unwrap() = Some((got, sent));
    });
    let nuncio = Nuncio::start(&tcp_proxy_to(upstream.addr, "1s"), &[]);
    let client = connect(nuncio.listener("proxy"));
    let mut writer = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let sum = send_pattern(&mut writer, 1, LEN);
        writer.shutdown(Shutdown::Write).unwrap();
        sum
    });
    let mut reader = client;
    let client_got = receive_checksum(&mut reader);
    let client_sent = sender.join().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let (upstream_got, upstream_sent) = loop {
        if let Some(r) = *received_upstream.lock().unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline, "upstream never finished");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(client_sent.1, LEN as u64);
    assert_eq!(upstream_got, client_sent, "client → upstream bytes differ");
    assert_eq!(client_got, upstream_sent, "upstream → client bytes differ");
    nuncio.wait_stat("tcp.tp.downstream_cx_rx_bytes_total", LEN as u64);
    nuncio.wait_stat("tcp.tp.downstream_cx_tx_bytes_total", LEN as u64);
    nuncio.wait_stat("cluster.backend.upstream_cx_total", 1);
    nuncio.wait_stat("cluster.backend.upstream_cx_destroy", 1);
    nuncio.wait_stat("cluster.backend.upstream_cx_active", 0);
}

#[test]
fn upstream_that_speaks_first_is_heard() {
    // The greeting arrives together with the connect completion: it must not be lost.
    let upstream = Upstream::banner("220 ready\r\n");
    let nuncio = Nuncio::start(&tcp_proxy_to(upstream.addr, "1s"), &[]);
    for _ in 0..20 {
        let mut s = connect(nuncio.listener("proxy"));
        let mut greeting = [0u8; 11];
        s.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"220 ready\r\n");
        s.write_all(b"QUIT").unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"QUIT");
    }
}

#[test]
fn half_close_in_both_directions() {
    // The upstream answers after the client's FIN, then closes.
    let after_fin = Upstream::start(|mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(b"reply to: ").unwrap();
        s.write_all(&got).unwrap();
    });
    let nuncio = Nuncio::start(&tcp_proxy_to(after_fin.addr, "1s"), &[]);
    let mut s = connect(nuncio.listener("proxy"));
    s.write_all(b"question").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"reply to: question");
    drop(nuncio);

    // The upstream finishes first; the client can still send, and the upstream still reads.
    let (tx, rx) = std::sync::mpsc::channel();
    let before = Upstream::start(move |mut s| {
        s.write_all(b"bye first").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        tx.send(got).unwrap();
    });
    let nuncio = Nuncio::start(&tcp_proxy_to(before.addr, "1s"), &[]);
    let mut s = connect(nuncio.listener("proxy"));
    let mut first = [0u8; 9];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"bye first");
    let mut one = [0u8; 1];
    assert_eq!(
        s.read(&mut one).unwrap(),
        0,
        "upstream FIN reaches the client"
    );
    s.write_all(b"still talking").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), b"still talking");
    assert_eq!(
        read_all(&mut s),
        b"",
        "closed once both directions are done"
    );
}

/// Envoy 1.40's TCP pool counts every close of a session's upstream connection as a close
/// with an active request: a client's FIN (the echo upstream then closes: remote) and a
/// client's RST (the proxy closes the upstream: local), as Envoy counts them for the same
/// sessions.
#[test]
fn a_session_upstream_close_counts_destroy_with_active_rq() {
    let upstream = Upstream::echo_mio();
    let nuncio = Nuncio::start(&tcp_proxy_to(upstream, "1s"), &[]);
    let round_trip = || {
        let mut s = connect(nuncio.listener("proxy"));
        s.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).unwrap();
        s
    };
    let s = round_trip();
    s.shutdown(Shutdown::Write).unwrap();
    nuncio.wait_stat(
        "cluster.backend.upstream_cx_destroy_remote_with_active_rq",
        1,
    );
    drop(s);
    let s = round_trip();
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &linger).unwrap();
    drop(s);
    nuncio.wait_stat(
        "cluster.backend.upstream_cx_destroy_local_with_active_rq",
        1,
    );
    nuncio.wait_stat("cluster.backend.upstream_cx_destroy_with_active_rq", 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_destroy"), 2);
    // Each session was one request of Envoy's TCP pool, pending while its connection opened.
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_total"), 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_pending_total"), 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_pending_active"), 0);
}

#[test]
fn refused_upstream_closes_downstream_promptly_and_counts() {
    let port = refused_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let nuncio = Nuncio::start(&tcp_proxy_to(addr, "5s"), &[]);
    let started = Instant::now();
    let mut s = connect(nuncio.listener("proxy"));
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the downstream is closed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed promptly, not after the connect timeout: {:?}",
        started.elapsed()
    );
    // The give-up is counted last, after the failed connect's other stats (the worker may be
    // preempted between them: waiting on an earlier one raced with the asserts below).
    nuncio.wait_stat("cluster.backend.upstream_cx_connect_attempts_exceeded", 1);
    nuncio.wait_stat("tcp.tp.downstream_cx_total", 1);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_connect_fail"), 1);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_active"), 0);
    // As Envoy 1.40 counts a refused session (same config, max_connect_attempts 1).
    for (stat, value) in [
        ("upstream_cx_connect_attempts_exceeded", 1),
        ("upstream_cx_destroy_remote", 1),
        ("upstream_rq_pending_total", 1),
        ("upstream_rq_pending_failure_eject", 1),
        ("upstream_rq_pending_active", 0),
        ("upstream_rq_total", 0),
    ] {
        assert_eq!(
            nuncio.stat(&format!("cluster.backend.{stat}")),
            value,
            "{stat}"
        );
    }
}

#[test]
fn max_connections_breaker_refuses_a_session_with_uo() {
    // The cluster has its one connection: Envoy refuses the next session at once (UO).
    refuses_second_session_with_uo("overflow", "{thresholds: [{max_connections: 1}]}");
}

/// `per_host_thresholds` max_connections: Envoy's TCP pool queues a session over the host's
/// limit until a connection to the host is gone, never opening one past the limit. Compared
/// with Envoy 1.40 on the same config and sessions: three sessions at a limit of 1 leave two
/// waiting (`upstream_cx_overflow` 2, `upstream_rq_pending_active` 2); the first one's close
/// lets the second connect (overflow 4: the third asks again when the second opens and when
/// it connects), and the second's close lets the third connect.
#[test]
fn per_host_max_connections_queues_sessions_until_a_connection_is_gone() {
    let upstream = Upstream::echo_mio();
    let config = tcp_proxy_to(upstream, "5s").replace(
        "    connect_timeout: 5s\n",
        "    connect_timeout: 5s\n    circuit_breakers: {per_host_thresholds: [{max_connections: 1}]}\n",
    );
    let nuncio = Nuncio::start(&config, &["--concurrency", "1"]);
    let addr = nuncio.listener("proxy");
    let echo = |s: &mut TcpStream, byte: u8| {
        s.write_all(&[byte]).unwrap();
        let mut got = [0u8; 1];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got[0], byte);
    };
    let mut first = connect(addr);
    echo(&mut first, b'a');
    // The second and third sessions wait; what they send stays in the kernel meanwhile.
    let mut second = connect(addr);
    second.write_all(b"b").unwrap();
    nuncio.wait_stat("cluster.backend.upstream_rq_pending_active", 1);
    let mut third = connect(addr);
    third.write_all(b"c").unwrap();
    nuncio.wait_stat("cluster.backend.upstream_rq_pending_active", 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_overflow"), 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_pending_total"), 3);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_total"), 1);
    second
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        second.read(&mut byte).is_err(),
        "a waiting session is neither served nor closed"
    );
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    drop(first);
    // The first session's connection is gone: the second connects and its byte goes through.
    second.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"b");
    nuncio.wait_stat("cluster.backend.upstream_cx_overflow", 4);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_pending_active"), 1);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_total"), 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_active"), 1);
    drop(second);
    third.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"c");
    echo(&mut third, b'd');
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_pending_active"), 0);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_total"), 3);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_total"), 3);
    assert_eq!(
        nuncio.stat("cluster.backend.upstream_rq_pending_overflow"),
        0
    );
}

/// With `max_pending_requests` full a session is refused at once (UO,
/// `upstream_rq_pending_overflow`). A waiting session's downstream is read-disabled, so a
/// client that gives up while waiting is only noticed once its turn comes (it is connected,
/// then closed): it keeps its place, and the session behind it is served next. All as Envoy
/// 1.40 does with the same config and sessions (overflow 4, 3 upstream connections).
#[test]
fn max_pending_requests_refuses_with_uo_and_a_quitter_keeps_its_place() {
    let upstream = Upstream::echo_mio();
    let config = tcp_proxy_to(upstream, "5s").replace(
        "    connect_timeout: 5s\n",
        "    connect_timeout: 5s\n    circuit_breakers: {thresholds: [{max_pending_requests: 2}], \
         per_host_thresholds: [{max_connections: 1}]}\n",
    );
    let nuncio = Nuncio::start(&config, &["--concurrency", "1"]);
    let addr = nuncio.listener("proxy");
    let mut first = connect(addr);
    first.write_all(b"a").unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();
    let quitter = connect(addr);
    nuncio.wait_stat("cluster.backend.upstream_rq_pending_active", 1);
    let mut patient = connect(addr);
    patient.write_all(b"p").unwrap();
    nuncio.wait_stat("cluster.backend.upstream_rq_pending_active", 2);
    // Two sessions wait: a third is over max_pending_requests and closed at once.
    let mut refused = connect(addr);
    assert_eq!(refused.read(&mut byte).unwrap_or(0), 0, "closed");
    nuncio.wait_stat("cluster.backend.upstream_rq_pending_overflow", 1);
    assert_eq!(
        nuncio.stat("cluster.backend.circuit_breakers.default.rq_pending_open"),
        1
    );
    drop(quitter);
    drop(first);
    patient.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"p");
    // The quitter had its connection first, then its close was seen.
    nuncio.wait_stat("cluster.backend.upstream_cx_destroy", 2);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_total"), 3);
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_overflow"), 4);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_pending_active"), 0);
    assert_eq!(nuncio.stat("cluster.backend.upstream_rq_cancelled"), 0);
    assert_eq!(
        nuncio.stat("cluster.backend.circuit_breakers.default.rq_pending_open"),
        0
    );
}

/// A tcp_proxy to one echo upstream with `circuit_breakers: BREAKERS` that allow one
/// connection: a first session is served, a second is closed at once with UO in the access log
/// and `upstream_cx_overflow`, and once the first ends a third is served (the slot is freed).
fn refuses_second_session_with_uo(tag: &str, breakers: &str) -> Nuncio {
    let upstream = Upstream::echo_mio();
    let log = std::env::temp_dir().join(format!("nuncio-l4-{tag}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let config = tcp_proxy_logged(
        upstream,
        &log,
        "              log_format: {text_format_source: {inline_string: \"%RESPONSE_FLAGS%\\n\"}}\n",
    )
    .replace(
        "    connect_timeout: 5s\n",
        &format!("    connect_timeout: 5s\n    circuit_breakers: {breakers}\n"),
    );
    let nuncio = Nuncio::start(&config, &["--file-flush-interval-msec", "50"]);
    let addr = nuncio.listener("proxy");
    let mut first = connect(addr);
    first.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();
    let mut second = connect(addr);
    assert_eq!(second.read(&mut byte).unwrap_or(0), 0, "closed");
    nuncio.wait_stat("cluster.backend.upstream_cx_overflow", 1);
    assert_eq!(first_log_line(&log), "UO");
    assert_eq!(nuncio.stat("cluster.backend.upstream_cx_total"), 1);
    drop(first);
    nuncio.wait_stat("cluster.backend.upstream_cx_active", 0);
    let mut third = connect(addr);
    third.write_all(b"y").unwrap();
    third.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"y");
    nuncio
}

#[test]
fn slow_reader_behind_fast_upstream_keeps_memory_bounded() {
    const LEN: u64 = 1024 * 1024 * 1024;
    let upstream = Upstream::start(|mut s| {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut left = LEN;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    let nuncio = Nuncio::start(&tcp_proxy_to(upstream.addr, "1s"), &["--concurrency", "1"]);
    let mut s = connect(nuncio.listener("proxy"));
    // Read slowly for a while: the proxy must stop reading the upstream, not buffer it.
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let slow_until = Instant::now() + Duration::from_millis(1500);
    let mut worst_rss = 0;
    while Instant::now() < slow_until {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        total += n as u64;
        // Pacing the reader (this sleep is the test's slowness, not synchronisation).
        thread::sleep(Duration::from_millis(5));
        worst_rss = worst_rss.max(nuncio.memory_kib().0);
    }
    // Then drain the rest fast.
    while total < LEN {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "EOF after {total} bytes");
        total += n as u64;
    }
    assert_eq!(total, LEN);
    let (rss, hwm) = nuncio.memory_kib();
    assert!(
        hwm < 64 * 1024,
        "peak RSS {hwm} KiB (now {rss} KiB, worst sampled {worst_rss} KiB) exceeds 64 MiB"
    );
}

#[test]
fn five_thousand_concurrent_connections() {
    const N: usize = 5000;
    raise_fd_limit();
    let upstream = Upstream::echo_mio();
    // Above the default max_connections (1024) of the cluster's circuit breaker, and above its
    // default max_pending_requests (1024): a session is a pending request of the TCP pool
    // while its connection opens, and on a loaded machine thousands are opening at once (Envoy
    // refuses those over the limit as UO, and so does nuncio). The connect
    // timeout is generous: a timer counts from its loop iteration's cached start (libevent's
    // and Envoy's rule too), and a worker starved of CPU on a loaded machine can spend more
    // than 5 s in the one iteration that accepts thousands of these sessions, so a 5 s timer
    // armed at its end fires in the next iteration, before the connect is seen (seen once in
    // ~60 loaded runs: a session closed, ECONNRESET on its read).
    let config = tcp_proxy_to(upstream, "60s").replace(
        "    connect_timeout: 60s\n",
        "    connect_timeout: 60s\n    circuit_breakers: {thresholds: [{max_connections: 100000, \
         max_pending_requests: 100000}]}\n",
    );
    let nuncio = Nuncio::start(&config, &[]);
    let addr = nuncio.listener("proxy");
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(connect(addr));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&(i as u64).to_le_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut buf = [0u8; 8];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), i as u64);
    }
    let active: u64 = nuncio.stat(&format!(
        "listener.{}_{}.downstream_cx_active",
        addr.ip(),
        addr.port()
    ));
    assert_eq!(active, N as u64);
    drop(clients);
    nuncio.wait_stat(
        &format!(
            "listener.{}_{}.downstream_cx_active",
            addr.ip(),
            addr.port()
        ),
        0,
    );
    nuncio.wait_stat("cluster.backend.upstream_cx_active", 0);
}

#[test]
fn connections_spread_over_all_workers() {
    let nuncio = Nuncio::start(
        &simple_config("echo", ECHO_FILTER, ""),
        &["--concurrency", "3"],
    );
    let addr = nuncio.listener("echo");
    for _ in 0..300 {
        let mut s = connect(addr);
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    }
    let prefix = format!("listener.{}_{}", addr.ip(), addr.port());
    nuncio.wait_stat(&format!("{prefix}.downstream_cx_total"), 300);
    for w in 0..3 {
        let n = nuncio.stat(&format!("{prefix}.worker_{w}.downstream_cx_total"));
        assert!(n > 0, "worker_{w} accepted no connection");
    }
}

/// A listener with the PROXY protocol listener filter whose only chain matches sources in
/// 10.0.0.0/8 and echoes.
fn proxy_protocol_config() -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: pp
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
    filter_chains:
    - filter_chain_match:
        source_prefix_ranges: [{{ address_prefix: 10.0.0.0, prefix_len: 8 }}]
      filters:{ECHO_FILTER}
{ADMIN}"#
    )
}

fn v2_header(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_v1_and_v2_set_the_remote_address() {
    let nuncio = Nuncio::start(&proxy_protocol_config(), &[]);
    let addr = nuncio.listener("pp");

    // v1: the source 10.1.2.3 selects the echo chain; the header is not echoed.
    let mut s = connect(addr);
    s.write_all(b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 80\r\nhello v1")
        .unwrap();
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello v1");

    // v2, the header and the data in separate writes.
    let mut s = connect(addr);
    s.write_all(&v2_header([10, 9, 8, 7], [127, 0, 0, 1], 1234, 80))
        .unwrap();
    s.flush().unwrap();
    thread::sleep(Duration::from_millis(20));
    s.write_all(b"hello v2").unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello v2");

    // A source outside 10/8 matches no chain: closed and counted.
    let mut s = connect(addr);
    s.write_all(b"PROXY TCP4 192.168.1.1 127.0.0.1 5555 80\r\nhello")
        .unwrap();
    assert_eq!(read_until_closed(&mut s), b"");
    let prefix = format!("listener.{}_{}", addr.ip(), addr.port());
    nuncio.wait_stat(&format!("{prefix}.no_filter_chain_match"), 1);

    // A malformed header closes the connection and is counted.
    let mut s = connect(addr);
    s.write_all(b"PROXY TCP4 not-an-address\r\n").unwrap();
    assert_eq!(read_until_closed(&mut s), b"");
    nuncio.wait_stat("downstream_cx_proxy_proto_error", 1);
}

/// A socket whose listener filters never finish (a PROXY header that never comes) is closed
/// after `listener_filters_timeout` and counted as `downstream_pre_cx_timeout`.
#[test]
fn listener_filters_timeout_closes_a_silent_socket() {
    let config = proxy_protocol_config().replace(
        "    listener_filters:\n",
        "    listener_filters_timeout: 0.2s\n    listener_filters:\n",
    );
    assert!(config.contains("listener_filters_timeout"));
    let nuncio = Nuncio::start(&config, &[]);
    let addr = nuncio.listener("pp");
    let started = std::time::Instant::now();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Nothing is sent: the PROXY filter waits until the timeout closes the socket.
    assert_eq!(read_until_closed(&mut s), b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "closed after {waited:?}, expected about 0.2 s"
    );
    let prefix = format!("listener.{}_{}", addr.ip(), addr.port());
    nuncio.wait_stat(&format!("{prefix}.downstream_pre_cx_timeout"), 1);
    assert_eq!(nuncio.stat(&format!("{prefix}.downstream_cx_total")), 0);
}

#[test]
fn filter_chain_precedence() {
    let by_port = Upstream::banner("PORT");
    let by_source = Upstream::banner("SOURCE");
    let by_default = Upstream::banner("DEFAULT");
    // Ports are chosen by the OS, so the chains match on what is fixed: destination IP
    // prefixes and source ports.
    let config = format!(
        r#"
static_resources:
  listeners:
  - name: a
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - name: wide
      filter_chain_match:
        prefix_ranges: [{{ address_prefix: 127.0.0.0, prefix_len: 8 }}]
      filters:{wide}
    - name: narrow
      filter_chain_match:
        prefix_ranges: [{{ address_prefix: 127.0.0.1, prefix_len: 32 }}]
      filters:{narrow}
  - name: b
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - name: only_port_1
      filter_chain_match:
        source_ports: [1]
      filters:{narrow}
    default_filter_chain:
      filters:{default}
  - name: c
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - name: only_port_1
      filter_chain_match:
        source_ports: [1]
      filters:{narrow}
  clusters:{c1}{c2}{c3}
{ADMIN}"#,
        wide = tcp_proxy_filter("wide", "by_source"),
        narrow = tcp_proxy_filter("narrow", "by_port"),
        default = tcp_proxy_filter("default", "by_default"),
        c1 = cluster("by_port", by_port.addr, "1s"),
        c2 = cluster("by_source", by_source.addr, "1s"),
        c3 = cluster("by_default", by_default.addr, "1s"),
    );
    let nuncio = Nuncio::start(&config, &[]);
    let banner = |listener: &str, len: usize| {
        let mut s = connect(nuncio.listener(listener));
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).map(|_| buf)
    };
    // The longest destination prefix wins.
    assert_eq!(banner("a", 4).unwrap(), b"PORT");
    // No chain matches: the default chain.
    assert_eq!(banner("b", 7).unwrap(), b"DEFAULT");
    // No chain matches and no default: closed, counted.
    assert!(banner("c", 1).is_err());
    let c = nuncio.listener("c");
    nuncio.wait_stat(
        &format!("listener.{}_{}.no_filter_chain_match", c.ip(), c.port()),
        1,
    );
}

impl Upstream {
    /// An echo upstream on one thread (mio), for thousands of connections.
    fn echo_mio() -> SocketAddr {
        use mio::net::TcpListener as MioListener;
        use mio::{Events, Interest, Poll, Token};
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        thread::spawn(move || {
            let mut poll = Poll::new().unwrap();
            let mut listener = MioListener::from_std(std_listener);
            poll.registry()
                .register(&mut listener, Token(usize::MAX), Interest::READABLE)
                .unwrap();
            let mut conns: slab::Slab<mio::net::TcpStream> = slab::Slab::new();
            let mut events = Events::with_capacity(1024);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                poll.poll(&mut events, None).unwrap();
                for ev in events.iter() {
                    if ev.token() == Token(usize::MAX) {
                        while let Ok((mut s, _)) = listener.accept() {
                            let e = conns.vacant_entry();
                            poll.registry()
                                .register(&mut s, Token(e.key()), Interest::READABLE)
                                .unwrap();
                            e.insert(s);
                        }
                        continue;
                    }
                    let key = ev.token().0;
                    let mut close = false;
                    if let Some(s) = conns.get_mut(key) {
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    close = true;
                                    break;
                                }
                                Ok(n) => {
                                    counter.fetch_add(n as u64, Ordering::Relaxed);
                                    // Tiny echoes: the socket buffer always has room.
                                    let _ = s.write_all(&buf[..n]);
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    close = true;
                                    break;
                                }
                            }
                        }
                    }
                    if close {
                        let mut s = conns.remove(key);
                        let _ = poll.registry().deregister(&mut s);
                    }
                }
            }
        });
        let _ = bytes;
        addr
    }
}

/// tcp_proxy to `upstream` with a file access log at `path` (`log_format` lines, if any,
/// indented under the logger's `typed_config`).
fn tcp_proxy_logged(upstream: SocketAddr, path: &std::path::Path, log_format: &str) -> String {
    let filter = format!(
        "{}          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n{log_format}",
        tcp_proxy_filter("tp", "backend"),
        path.display()
    );
    simple_config("proxy", &filter, &cluster("backend", upstream, "5s"))
}

/// Waits for the first line of the access log at `path`.
fn first_log_line(path: &std::path::Path) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no access log line in {path:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tcp_proxy_access_log_one_line_per_connection() {
    let dir = std::env::temp_dir();
    let pid = std::process::id();

    // A proxied connection: 5 bytes up, a 3-byte banner plus the 5 echoed bytes down.
    let upstream = Upstream::banner("hi ");
    let path = dir.join(format!("nuncio-tcp-access-{pid}.log"));
    let _ = std::fs::remove_file(&path);
    let format = "              log_format: {text_format_source: {inline_string: \"%BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %RESPONSE_FLAGS% %DOWNSTREAM_REMOTE_ADDRESS% %REQ(:PATH)%\\n\"}}\n";
    let nuncio = Nuncio::start(
        &tcp_proxy_logged(upstream.addr, &path, format),
        &["--file-flush-interval-msec", "100"],
    );
    let mut s = connect(nuncio.listener("proxy"));
    let client = s.local_addr().unwrap();
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi hello");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_all(&mut s),
        b"",
        "closed once both directions are done"
    );
    assert_eq!(
        first_log_line(&path),
        format!("5 8 {} backend - {client} -", upstream.addr)
    );
    let _ = std::fs::remove_file(&path);

    // A refused upstream, Envoy's default format: `UF,URX` (as Envoy 1.40 prints), no bytes,
    // the host it tried.
    let refused: SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let path = dir.join(format!("nuncio-tcp-access-uf-{pid}.log"));
    let _ = std::fs::remove_file(&path);
    let nuncio = Nuncio::start(
        &tcp_proxy_logged(refused, &path, ""),
        &["--file-flush-interval-msec", "100"],
    );
    let mut s = connect(nuncio.listener("proxy"));
    assert_eq!(read_all(&mut s), b"", "the downstream is closed");
    let line = first_log_line(&path);
    let (start, rest) = line.split_once("] ").expect("[START_TIME] first");
    assert!(start.starts_with("[20") && start.ends_with('Z'), "{line}");
    let (duration, tail) = rest
        .strip_prefix("\"- - -\" 0 UF,URX 0 0 ")
        .and_then(|r| r.split_once(' '))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(duration.parse::<u64>().is_ok(), "{line}");
    assert_eq!(tail, format!("- \"-\" \"-\" \"-\" \"-\" \"{refused}\""));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn tcp_proxy_records_upstream_connect_and_length_histograms() {
    // Envoy 1.40's TCP pool, same config: a session's upstream connection records
    // upstream_cx_connect_ms when it connects and upstream_cx_length_ms when it is gone;
    // upstream_rq_per_cx is HTTP's and stays empty.
    let up = Upstream::echo();
    let nuncio = Nuncio::start(&tcp_proxy_to(up.addr, "5s"), &[]);
    let backend = "envoy_cluster_name=\"backend\"";
    let count = |metric: &str| nuncio.histogram(metric, backend).count;
    let mut s = connect(nuncio.listener("proxy"));
    s.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut s, 4), b"ping");
    assert_eq!(count("envoy_cluster_upstream_cx_connect_ms"), 1);
    assert_eq!(
        count("envoy_cluster_upstream_cx_length_ms"),
        0,
        "still open"
    );
    drop(s);
    nuncio.wait_stat("cluster.backend.upstream_cx_destroy", 1);
    assert_eq!(count("envoy_cluster_upstream_cx_length_ms"), 1);
    assert_eq!(count("envoy_cluster_upstream_rq_per_cx"), 0);
}
