//! Shared helpers for the integration tests: run the real `nuncio` binary on a generated config
//! (OS-chosen ports), learn its addresses from its log, wait until `/ready` says LIVE, read its
//! stats; real upstreams on 127.0.0.1 (echo, banner, sink/source); config text builders.
//! `http` adds the HTTP side (a one-listener `Nuncio`, a raw HTTP client, a recording HTTP
//! upstream). A test includes it with `mod support;` (`tests/http_support/mod.rs` re-exports
//! `support::http` for tests written against the older name).
#![allow(dead_code)]

pub mod http;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One histogram's cumulative Prometheus lines ([`Nuncio::histogram`]).
#[derive(Debug, Default)]
pub struct PromHistogram {
    pub count: u64,
    pub sum: f64,
    /// `(le, samples at or below it)`, in the order printed.
    pub buckets: Vec<(String, u64)>,
}

impl PromHistogram {
    /// Samples at or below bucket bound `le` (as printed: `"0.5"`, `"250"`, `"+Inf"`).
    pub fn le(&self, le: &str) -> u64 {
        self.buckets
            .iter()
            .find(|(b, _)| b == le)
            .map_or_else(|| panic!("no bucket le={le} in {self:?}"), |(_, n)| *n)
    }
}

/// How long anything in a test may take before it counts as hung.
pub const TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);

/// Writes `text` to a fresh file in the temp dir and returns its path.
pub fn write_config(text: &str) -> PathBuf {
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("nuncio-test-{}-{n}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write test config");
    path
}

/// Runs the binary with `args` to completion: (status, stdout, stderr).
pub fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nuncio"))
        .args(args)
        .output()
        .expect("run nuncio");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `nuncio`, killed on drop.
pub struct Nuncio {
    child: Child,
    /// Listener name → bound address, from the `listener 'x' listening on a` log lines.
    pub listeners: HashMap<String, SocketAddr>,
    /// The listeners' addresses in the order they were logged.
    pub listener_order: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Every log line so far (the reader thread keeps appending).
    pub log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
    _config: TempFile,
}

/// A file removed on drop.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Nuncio {
    /// Starts nuncio on `config` (which must have an admin address) with `extra` arguments
    /// (two workers unless they say `--concurrency`) and waits until every listener is up and
    /// `/ready` answers 200.
    pub fn start(config: &str, extra: &[&str]) -> Nuncio {
        let mut args = Vec::new();
        if !extra.iter().any(|a| a.starts_with("--concurrency")) {
            args.extend(["--concurrency", "2"]);
        }
        args.extend(extra);
        Nuncio::spawn(config, &args)
    }

    /// Starts nuncio on `config` with exactly `args` after `-c FILE -l LEVEL`, and waits as
    /// `start` does. The level is `NUNCIO_TEST_LOG` (default `info`; setting it also echoes
    /// the log to the test's stderr).
    pub fn spawn(config: &str, args: &[&str]) -> Nuncio {
        let path = TempFile(write_config(config));
        let level = std::env::var("NUNCIO_TEST_LOG").unwrap_or_else(|_| "info".into());
        let echo = std::env::var_os("NUNCIO_TEST_LOG").is_some();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nuncio"))
            .arg("-c")
            .arg(&path.0)
            .args(["-l", &level])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nuncio");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        {
            let log = log.clone();
            thread::spawn(move || {
                // Keeps draining after the test stops listening, so nuncio never blocks on
                // a full stderr pipe.
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if echo {
                        eprintln!("{line}");
                    }
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut nuncio = Nuncio {
            child,
            listeners: HashMap::new(),
            listener_order: Vec::new(),
            admin: "127.0.0.1:0".parse().unwrap(),
            log,
            lines,
            _config: path,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match nuncio.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!(
                    "nuncio did not start; log:\n{}\nconfig:\n{config}",
                    nuncio.log.lock().unwrap().join("\n")
                ),
            };
            if let Some(rest) = line.split("listener '").nth(1) {
                if let Some((name, addr)) = rest.split_once("' listening on ") {
                    let addr: SocketAddr = addr.trim().parse().expect("address");
                    nuncio.listeners.insert(name.to_string(), addr);
                    nuncio.listener_order.push(addr);
                }
            }
            if let Some(addr) = line.split("admin address: ").nth(1) {
                nuncio.admin = addr.trim().parse().expect("admin address");
            }
            if line.contains("starting main dispatch loop") {
                break;
            }
        }
        nuncio.wait_ready();
        nuncio
    }

    /// The next log line (waiting at most `timeout`), for tests that follow the log.
    pub fn next_log_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The address of listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener '{name}' in {:?}", self.listeners))
    }

    /// Polls `/ready` until 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.admin, "/ready") {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("nuncio never became ready");
    }

    /// Every counter and gauge from the admin `/stats`.
    pub fn stats(&self) -> HashMap<String, u64> {
        let (status, body) = http_get(self.admin, "/stats").expect("GET /stats");
        assert_eq!(status, 200);
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    /// The cumulative samples of histogram `metric` (its Prometheus name, e.g.
    /// `envoy_cluster_upstream_rq_per_cx`) whose labels include `label` (e.g.
    /// `envoy_cluster_name="app"`), from `/stats?format=prometheus`.
    pub fn histogram(&self, metric: &str, label: &str) -> PromHistogram {
        let (status, body) =
            http_get(self.admin, "/stats?format=prometheus").expect("GET /stats?format=prometheus");
        assert_eq!(status, 200);
        let mut h = PromHistogram::default();
        for line in body.lines().filter(|l| l.contains(label)) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name.strip_prefix(metric) {
                Some("_count") => h.count = value.parse().expect("count"),
                Some("_sum") => h.sum = value.parse().expect("sum"),
                Some("_bucket") => {
                    let le = labels
                        .split("le=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next());
                    h.buckets
                        .push((le.unwrap_or("").to_string(), value.parse().expect("bucket")));
                }
                _ => {}
            }
        }
        h
    }

    /// One stat (0 if absent).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Polls stat `name` until it equals `value`; panics with the stats after the timeout.
    pub fn wait_stat(&self, name: &str, value: u64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stats = self.stats();
            if stats.get(name).copied().unwrap_or(0) == value {
                return;
            }
            if Instant::now() > deadline {
                let mut dump: Vec<_> = stats.into_iter().collect();
                dump.sort();
                panic!("stat {name} never became {value}: {dump:?}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Waits for the process to exit (at most `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether a log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// `VmRSS` and `VmHWM` of the process, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Nuncio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A connected client with a read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Reads until EOF.
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Reads until the peer closes: EOF, or a reset (a proxy closing a socket with unread input
/// makes the kernel send RST). Returns what was read.
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

// === Upstreams ===

/// An upstream on 127.0.0.1 served by `handler`, one thread per connection.
pub struct Upstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let count = accepted.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                let handler = handler.clone();
                thread::spawn(move || handler(stream));
            }
        });
        Upstream { addr, accepted }
    }

    /// Echoes every byte; half-closes after the client's FIN.
    pub fn echo() -> Upstream {
        Upstream::start(|mut s| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Sends `name` on accept, then echoes.
    pub fn banner(name: &'static str) -> Upstream {
        Upstream::start(move |mut s| {
            let _ = s.write_all(name.as_bytes());
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        })
    }
}

/// An upstream that, once a connection sends its first bytes, answers with `name` and a newline
/// and then echoes everything (first bytes included). (It waits for the client so that the
/// tests do not depend on how the proxy handles server-speaks-first upstreams; compare
/// `Upstream::banner`.)
pub fn banner_upstream(name: &'static str) -> SocketAddr {
    Upstream::start(move |mut stream| {
        let mut greeted = false;
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !greeted {
                        greeted = true;
                        if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
                            return;
                        }
                    }
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
    .addr
}

/// A port nothing listens on (bound, then closed: connecting is refused).
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Connects, sends `first` (e.g. a PROXY header and payload), and returns the stream.
pub fn connect_and_send(addr: SocketAddr, first: &[u8]) -> TcpStream {
    let mut s = connect(addr);
    s.set_nodelay(true).unwrap();
    s.write_all(first).unwrap();
    s
}

/// Reads the banner line the upstream sent (the name of the chain's cluster), or `None` if the
/// proxy closed the connection first.
pub fn read_banner(s: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) if byte[0] == b'\n' => return Some(String::from_utf8(line).unwrap()),
            Ok(_) => line.push(byte[0]),
        }
    }
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// True when the peer closes (EOF or reset) without sending anything (a read timeout is not a
/// close).
pub fn closed_without_data(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

// === Config text ===

/// A STATIC cluster `name` with one endpoint.
pub fn cluster(name: &str, addr: SocketAddr, connect_timeout: &str) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: {connect_timeout}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {ip}, port_value: {port} }}
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

/// A tcp_proxy filter chain entry to cluster `cluster` (YAML, indented for `filter_chains`).
pub fn tcp_proxy_chain(filter_chain_match: &str, cluster: &str) -> String {
    format!(
        "    - filter_chain_match: {filter_chain_match}
      filters:{}",
        tcp_proxy_filter(cluster, cluster)
    )
}

/// A tcp_proxy filter (list item) to `cluster` with `stat_prefix`.
pub fn tcp_proxy_filter(stat_prefix: &str, cluster: &str) -> String {
    format!(
        r#"
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {stat_prefix}
          cluster: {cluster}
"#
    )
}

/// The admin block on an OS-chosen port.
pub const ADMIN: &str = r#"
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
"#;

/// One listener `name` on an OS-chosen port whose single filter chain is `filters` (list
/// items), plus `clusters` (list items) and the admin block.
pub fn simple_config(name: &str, filters: &str, clusters: &str) -> String {
    let clusters = if clusters.is_empty() {
        String::new()
    } else {
        format!("  clusters:{clusters}")
    };
    format!(
        r#"
static_resources:
  listeners:
  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - filters:{filters}
{clusters}
{ADMIN}"#
    )
}

/// The echo filter (list item).
pub const ECHO_FILTER: &str = r#"
      - name: envoy.filters.network.echo
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo
"#;

// === Data ===

/// Deterministic pseudo-random bytes (xorshift64*), `len` of them, chunk by chunk.
pub struct Pattern {
    state: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern { state: seed | 1 }
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A streaming checksum (FNV-1a over 64-bit words, then the tail): order-sensitive and fast
/// enough for hundreds of MiB in a test.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Checksum {
    hash: u64,
    len: u64,
    pending: [u8; 8],
    npending: usize,
}

impl Checksum {
    pub fn new() -> Checksum {
        Checksum {
            hash: 0xcbf2_9ce4_8422_2325,
            ..Default::default()
        }
    }
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending == 8 {
                let word = u64::from_le_bytes(self.pending);
                self.hash = (self.hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
                self.npending = 0;
            }
        }
    }
    pub fn finish(&self) -> (u64, u64) {
        let mut h = self.hash;
        for b in &self.pending[..self.npending] {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h, self.len)
    }
}

/// Writes `len` pattern bytes from `seed` to `w`, returning their checksum.
pub fn send_pattern(w: &mut impl Write, seed: u64, len: usize) -> (u64, u64) {
    let mut p = Pattern::new(seed);
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        p.fill(&mut buf[..n]);
        sum.update(&buf[..n]);
        w.write_all(&buf[..n]).expect("write pattern");
        left -= n;
    }
    sum.finish()
}

/// Reads to EOF, returning the checksum of what was read.
pub fn receive_checksum(r: &mut impl Read) -> (u64, u64) {
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => sum.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {} bytes: {e}", sum.len),
        }
    }
    sum.finish()
}

/// Raises this process's fd limit to the hard limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    hard
}
