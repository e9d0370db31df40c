//! The HTTP side of the test support: the real `nuncio` binary with one HTTP listener (see
//! `super::Nuncio` for how it starts), a scriptable HTTP/1.1 upstream on 127.0.0.1 that
//! records every byte it receives, a raw-socket HTTP client that reads exactly one response,
//! and the one-route proxy config the HTTP tests build on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[allow(unused_imports)]
pub use super::{refused_port, TIMEOUT};

/// A running nuncio with one HTTP listener (the first it logs): `support::Nuncio` plus that
/// address; everything else (`admin`, `log`, `stats`, `wait_stat`, `signal`, ...) derefs to it.
pub struct Nuncio {
    inner: super::Nuncio,
    pub listener: SocketAddr,
}

impl Deref for Nuncio {
    type Target = super::Nuncio;
    fn deref(&self) -> &super::Nuncio {
        &self.inner
    }
}

impl DerefMut for Nuncio {
    fn deref_mut(&mut self) -> &mut super::Nuncio {
        &mut self.inner
    }
}

impl Nuncio {
    /// Starts nuncio on `config` (one listener, an admin block) with one worker.
    pub fn start(config: &str) -> Nuncio {
        Self::start_with(config, &["--concurrency", "1"])
    }

    /// Starts nuncio on `config` with exactly `extra` as further arguments.
    pub fn start_with(config: &str, extra: &[&str]) -> Nuncio {
        let inner = super::Nuncio::spawn(config, extra);
        let listener = *inner
            .listener_order
            .first()
            .expect("the config has no listener");
        Nuncio { inner, listener }
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid() as u32
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `POST target` to the admin endpoint.
    pub fn admin_post(&self, target: &str) -> Response {
        request(
            self.admin,
            &format!("POST {target} HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"),
        )
        .expect("admin POST")
    }

    /// `VmRSS` in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.memory_kib().0
    }
}

/// One HTTP response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header lines (names lower-cased), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The raw head, for exact checks.
    pub head: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that reads whole responses.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (to a request that was not HEAD).
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        self.read_response_for(false)
    }

    pub fn read_response_for(&mut self, head_request: bool) -> std::io::Result<Response> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF before a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    break;
                }
            }
            let take = len.min(self.buf.len());
            body = self.buf.drain(..take).collect();
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if self.fill()? == 0 {
                        return Ok(Response {
                            status,
                            headers,
                            body,
                            head,
                        });
                    }
                };
                let size_line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
                        .unwrap_or(0);
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers up to the empty line.
                    loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            let line = self.buf.drain(..i + 2).collect::<Vec<_>>();
                            if line.len() == 2 {
                                break;
                            }
                            continue;
                        }
                        if self.fill()? == 0 {
                            break;
                        }
                    }
                    break;
                }
                while self.buf.len() < size + 2 {
                    if self.fill()? == 0 {
                        break;
                    }
                }
                body.extend(self.buf.drain(..size.min(self.buf.len())));
                let crlf = 2.min(self.buf.len());
                self.buf.drain(..crlf);
            }
        } else {
            while self.fill()? > 0 {}
            body = std::mem::take(&mut self.buf);
        }
        Ok(Response {
            status,
            headers,
            body,
            head,
        })
    }

    /// True when the peer closed (EOF within the timeout).
    pub fn closed(&mut self) -> bool {
        matches!(self.fill(), Ok(0) | Err(_))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `raw` on a new connection and reads one response.
pub fn request(addr: SocketAddr, raw: &str) -> std::io::Result<Response> {
    let mut c = Client::connect(addr);
    c.send(raw.as_bytes());
    c.read_response()
}

/// `GET path` with keep-alive on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: example.com\r\n\r\n"),
    )
    .expect("response")
}

// === the upstream ===

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Everything received for it, raw.
    pub raw: Vec<u8>,
    /// Which connection (accept order) it came on.
    pub connection: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the upstream answers: raw bytes, then whether to close.
pub struct Reply {
    pub bytes: Vec<u8>,
    pub close: bool,
    pub delay: Duration,
    /// How long after writing the reply a closing upstream waits before it hangs up.
    pub close_delay: Duration,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply {
            bytes: format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nserver: upstream\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
            close: false,
            delay: Duration::ZERO,
            close_delay: Duration::ZERO,
        }
    }
    pub fn raw(bytes: &str) -> Reply {
        Reply {
            bytes: bytes.as_bytes().to_vec(),
            close: false,
            delay: Duration::ZERO,
            close_delay: Duration::ZERO,
        }
    }
    pub fn status(code: u16) -> Reply {
        Reply::raw(&format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n"))
    }
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }
    /// Hangs up `delay` after the reply (an idle timeout that expires while the proxy is
    /// already reusing the connection).
    pub fn closing_after(mut self, delay: Duration) -> Reply {
        self.close = true;
        self.close_delay = delay;
        self
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Received, usize) -> Reply + Send + Sync;

/// A scriptable HTTP/1.1 upstream on 127.0.0.1:0: keep-alive, one thread per connection,
/// every request recorded.
pub struct HttpUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
}

impl HttpUpstream {
    /// `handler(request, n)` where `n` counts requests from 0.
    pub fn start(
        handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> HttpUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        HttpUpstream::start_on(listener, handler)
    }

    /// [`start`](Self::start) accepting on `listener` (e.g. one whose accept queue the test
    /// filled, so that connects to it stall until this starts accepting).
    pub fn start_on(
        listener: TcpListener,
        handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> HttpUpstream {
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (rec, conns) = (received.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = conns.fetch_add(1, Ordering::SeqCst);
                let (rec, handler) = (rec.clone(), handler.clone());
                thread::spawn(move || serve(stream, n, rec, handler));
            }
        });
        HttpUpstream {
            addr,
            received,
            connections,
        }
    }

    /// Answers every request `200 hello`.
    pub fn hello() -> HttpUpstream {
        HttpUpstream::start(|_, _| Reply::ok("hello"))
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(
    mut stream: TcpStream,
    conn: usize,
    rec: Arc<Mutex<Vec<Received>>>,
    handler: Arc<Handler>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let start: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut raw: Vec<u8> = buf.drain(..end).collect();
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < len {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            body = buf.drain(..len).collect();
            raw.extend_from_slice(&body);
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            // Read to the terminating 0-chunk and empty line (no trailers with CRLF pairs inside).
            loop {
                if let Some(i) = find(&buf, b"0\r\n\r\n") {
                    let all: Vec<u8> = buf.drain(..i + 5).collect();
                    raw.extend_from_slice(&all);
                    body = all;
                    break;
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
        let request = Received {
            method: start.first().cloned().unwrap_or_default(),
            path: start.get(1).cloned().unwrap_or_default(),
            headers,
            body,
            raw,
            connection: conn,
        };
        let n = {
            let mut rec = rec.lock().unwrap();
            rec.push(request.clone());
            rec.len() - 1
        };
        let reply = handler(&request, n);
        if !reply.delay.is_zero() {
            thread::sleep(reply.delay);
        }
        if stream.write_all(&reply.bytes).is_err() {
            return;
        }
        if reply.close {
            if !reply.close_delay.is_zero() {
                thread::sleep(reply.close_delay);
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// A config with one HTTP listener (port 0), `hcm_extra` fields in the HCM, `routes` as the
/// virtual host's routes, `filters` before the router, and cluster `app` at `upstream`.
pub fn config(
    upstream: SocketAddr,
    hcm_extra: &str,
    routes: &str,
    filters: &str,
    cluster_extra: &str,
) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{hcm_extra}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}              - match: {{prefix: "/"}}
                route: {{cluster: app}}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: app
    connect_timeout: 1s
{cluster_extra}    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        port = upstream.port()
    )
}

/// Reads a request head byte by byte up to its empty line (or EOF): for hand-written upstreams
/// that must leave the body in the socket.
pub fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    head
}

/// An upstream that answers every request `200` with a `content-length` body sent one byte
/// after each of `gaps` (the head goes at once).
pub fn trickling(gaps: &'static [u64]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            thread::spawn(move || {
                if !read_head(&mut s).ends_with(b"\r\n\r\n") {
                    return;
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    gaps.len()
                );
                for gap in gaps {
                    thread::sleep(Duration::from_millis(*gap));
                    if s.write_all(b"x").is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The simplest proxy config to `upstream`.
pub fn simple(upstream: SocketAddr) -> String {
    config(upstream, "", "", "", "")
}

/// Cluster `app`'s `circuit_breakers` with one (default priority) thresholds entry whose fields
/// are `thresholds` (e.g. `max_connections: 1, max_pending_requests: 1`): a `cluster_extra`
/// for [`config`].
pub fn breakers(thresholds: &str) -> String {
    format!("    circuit_breakers: {{thresholds: [{{{thresholds}}}]}}\n")
}

/// The simplest proxy config to `upstream` with [`breakers`]`(thresholds)`.
pub fn with_breakers(upstream: SocketAddr, thresholds: &str) -> String {
    config(upstream, "", "", "", &breakers(thresholds))
}
