//! Helpers for the listener-filter and filter-chain tests: run the real `nuncio` binary on a
//! generated config (every port chosen by the OS, learnt from its log), read its `/stats`, and
//! "banner" upstreams on 127.0.0.1 that greet each connection with their name and then echo.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long anything may take before the test counts it as hung.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nuncio`, killed on drop.
pub struct Nuncio {
    child: Child,
    /// Listener name → bound address.
    pub listeners: HashMap<String, SocketAddr>,
    pub admin: SocketAddr,
    _config: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A config file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Nuncio {
    /// Starts nuncio on `config` (listeners and admin on port 0) and waits until every listener
    /// is bound and `/ready` answers 200.
    pub fn start(config: &str, listener_names: &[&str]) -> Nuncio {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "nuncio-upstream-test-{}-{n}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nuncio"))
            .args([
                "-c",
                path.to_str().unwrap(),
                "-l",
                "info",
                "--concurrency",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nuncio");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so nuncio never blocks on stderr.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut listeners = HashMap::new();
        let mut admin = None;
        while listeners.len() < listener_names.len() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("nuncio did not start (config:\n{config})"));
            if let Some(rest) = line.split("listener '").nth(1) {
                if let Some((name, addr)) = rest.split_once("' listening on ") {
                    listeners.insert(name.to_string(), addr.trim().parse().unwrap());
                }
            }
            if let Some(addr) = line.split("admin address: ").nth(1) {
                admin = Some(addr.trim().parse().unwrap());
            }
        }
        let nuncio = Nuncio {
            child,
            listeners,
            admin: admin.unwrap(),
            _config: tempfile_path::TempPath(path),
        };
        while http_get(nuncio.admin, "/ready").0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            thread::sleep(Duration::from_millis(10));
        }
        nuncio
    }

    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    /// The value of a counter or gauge from `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let (_, body) = http_get(self.admin, "/stats");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Waits until stat `name` reaches `value` (stats are updated as events happen, which may
    /// be just after the client saw the effect).
    pub fn wait_stat(&self, name: &str, value: u64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.stat(name);
            if v == value {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is {v}, expected {value}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Nuncio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET with `Connection: close`: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, TIMEOUT) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An upstream that, once a connection sends its first bytes, answers with `name` and a newline
/// and then echoes everything (first bytes included). (It waits for the client so that the
/// tests do not depend on how the proxy handles server-speaks-first upstreams.)
pub fn banner_upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
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
            });
        }
    });
    addr
}

/// A tcp_proxy filter chain entry to cluster `cluster` (YAML, indented for `filter_chains`).
pub fn tcp_proxy_chain(filter_chain_match: &str, cluster: &str) -> String {
    format!(
        "    - filter_chain_match: {filter_chain_match}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {cluster}
          cluster: {cluster}
"
    )
}

/// A STATIC cluster named `name` with one endpoint (YAML, indented for `clusters`).
pub fn static_cluster(name: &str, upstream: SocketAddr) -> String {
    format!(
        "  - name: {name}
    connect_timeout: 5s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
",
        upstream.port()
    )
}

/// Connects, sends `first` (e.g. a PROXY header and payload), and returns the stream.
pub fn connect_and_send(addr: SocketAddr, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
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
