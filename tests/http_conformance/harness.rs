//! Harness of the HTTP/1.1 conformance suite: a recording upstream, a raw-byte client, the
//! proxy under test (nuncio or a real Envoy) started with a generated front-proxy config, and
//! small independent HTTP/1 parsers used only to *judge* what crossed the wire (they are
//! deliberately not nuncio's codec, which is what is being judged).
//!
//! Everything listens on 127.0.0.1. The upstream binds port 0; the proxy's listener ports are
//! picked by binding port 0 and releasing it (the proxy binds them right after), and readiness
//! is checked by connecting, never by sleeping.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::cases::{Case, Listener, Reply, Step, Wait};
use std::collections::BTreeMap;

/// How long the client waits for more bytes before judging the connection open.
const QUIET: Duration = Duration::from_millis(300);
/// Upper bound on any one case.
const CASE_LIMIT: Duration = Duration::from_secs(8);

// === Recording upstream ===

#[derive(Default)]
struct Recording {
    /// Normalized requests (see `normalize_request`), in arrival order across connections.
    requests: Vec<String>,
    /// Script for this case: the reply to the n-th request received.
    replies: Vec<Reply>,
    /// Per upstream connection: the request line of a request received only in part.
    partial: BTreeMap<u64, String>,
    /// Bumped on every change, for `settle`.
    generation: u64,
    connections: u64,
}

/// An HTTP/1.1 origin on 127.0.0.1 that records every request it receives (normalized) and
/// answers from a per-case script.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    state: Arc<(Mutex<Recording>, Condvar)>,
}

/// Headers that the proxies add with varying values; not judged.
const IGNORED_HEADERS: &[&str] = &[
    "x-request-id",
    "x-forwarded-proto",
    "x-envoy-expected-rq-timeout-ms",
    "x-forwarded-for",
];

const DEFAULT_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

impl RecordingUpstream {
    pub fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let state: Arc<(Mutex<Recording>, Condvar)> = Arc::default();
        let accept_state = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = accept_state.clone();
                thread::spawn(move || serve_upstream_connection(stream, state));
            }
        });
        RecordingUpstream { addr, state }
    }

    /// Clears the recording and installs the script of the next case.
    pub fn reset(&self, replies: &[Reply]) {
        let mut rec = self.state.0.lock().unwrap();
        rec.requests.clear();
        rec.partial.clear();
        rec.replies = replies.to_vec();
        rec.generation += 1;
    }

    /// The requests recorded since the last reset, then those seen only in part.
    pub fn requests(&self) -> Vec<String> {
        let rec = self.state.0.lock().unwrap();
        let mut all = rec.requests.clone();
        all.extend(rec.partial.values().map(|line| format!("PARTIAL {line}")));
        all
    }

    /// Waits until the upstream has seen no change for `quiet` (what the proxy forwards after
    /// the client's last byte arrives asynchronously; there is no event for "nothing more").
    pub fn settle(&self, quiet: Duration) {
        let mut rec = self.state.0.lock().unwrap();
        loop {
            let seen = rec.generation;
            let (next, timeout) = self.state.1.wait_timeout(rec, quiet).unwrap();
            rec = next;
            if timeout.timed_out() && rec.generation == seen {
                return;
            }
        }
    }
}

fn record(state: &(Mutex<Recording>, Condvar), line: String) -> usize {
    let mut rec = state.0.lock().unwrap();
    rec.requests.push(line);
    rec.generation += 1;
    state.1.notify_all();
    rec.requests.len() - 1
}

fn set_partial(state: &(Mutex<Recording>, Condvar), id: u64, buf: &[u8]) {
    let mut rec = state.0.lock().unwrap();
    if buf.is_empty() {
        rec.partial.remove(&id);
    } else {
        let line = buf
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(&[]);
        let line = String::from_utf8_lossy(line);
        let line = line.strip_suffix(" HTTP/1.1").unwrap_or(&line).to_string();
        rec.partial.insert(id, line);
    }
    rec.generation += 1;
    state.1.notify_all();
}

fn serve_upstream_connection(mut stream: TcpStream, state: Arc<(Mutex<Recording>, Condvar)>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let id = {
        let mut rec = state.0.lock().unwrap();
        rec.connections += 1;
        rec.connections
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Parse every complete request in `buf`.
        loop {
            match parse_message(&buf, MessageKind::Request) {
                Parsed::Incomplete => {
                    set_partial(&state, id, &buf);
                    break;
                }
                Parsed::Invalid(why) => {
                    record(
                        &state,
                        format!("UNPARSEABLE ({why}) {:?}", String::from_utf8_lossy(&buf)),
                    );
                    return;
                }
                Parsed::Complete(message, used) => {
                    buf.drain(..used);
                    set_partial(&state, id, &[]);
                    let index = record(&state, normalize_request(&message));
                    let reply = state.0.lock().unwrap().replies.get(index).cloned();
                    match reply.unwrap_or(Reply::Ok) {
                        Reply::Ok => {
                            let _ = stream.write_all(DEFAULT_REPLY);
                        }
                        Reply::OkAfter(ms) => {
                            std::thread::sleep(std::time::Duration::from_millis(ms));
                            let _ = stream.write_all(DEFAULT_REPLY);
                        }
                        Reply::Raw(bytes) => {
                            let _ = stream.write_all(bytes);
                        }
                        Reply::RawThenClose(bytes) => {
                            let _ = stream.write_all(bytes);
                            let _ = stream.shutdown(Shutdown::Both);
                            return;
                        }
                        Reply::Tunnel(bytes) => {
                            let _ = stream.write_all(bytes);
                            tunnel_echo(stream, buf, &state);
                            return;
                        }
                    }
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// After a 101: record the tunnelled bytes (one record per read) and echo them back.
fn tunnel_echo(mut stream: TcpStream, pending: Vec<u8>, state: &(Mutex<Recording>, Condvar)) {
    let mut chunk = [0u8; 16 * 1024];
    let mut data = pending;
    loop {
        if !data.is_empty() {
            record(
                state,
                format!("TUNNEL {:?}", String::from_utf8_lossy(&data)),
            );
            let _ = stream.write_all(&data);
            data.clear();
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Long values (the size-limit cases) as `aaaa…(61408 bytes)`.
fn abbreviate(value: &str) -> String {
    if value.len() <= 64 {
        return value.to_string();
    }
    let head: String = value.chars().take(8).collect();
    format!("{head}…({} bytes)", value.len())
}

/// `METHOD target [name: value, ...] "body"` with ignored headers left out.
fn normalize_request(message: &Message) -> String {
    let headers: Vec<String> = message
        .headers
        .iter()
        .filter(|(name, _)| !IGNORED_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| format!("{name}: {}", abbreviate(value)))
        .collect();
    let mut line = format!("{} [{}]", message.start_line, headers.join(", "));
    if !message.body.is_empty() {
        line.push_str(&format!(" {:?}", String::from_utf8_lossy(&message.body)));
    }
    line
}

// === Independent HTTP/1 parsing (judge side) ===

pub struct Message {
    /// Request line without the version (`GET /x`), or the status code (`200`).
    pub start_line: String,
    pub status: u16,
    /// Lower-cased names, values as received (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub enum Parsed {
    Incomplete,
    Invalid(&'static str),
    Complete(Message, usize),
}

#[derive(Clone, Copy, PartialEq)]
pub enum MessageKind {
    Request,
    /// A response; `no_body` for answers to HEAD.
    Response {
        no_body: bool,
    },
}

/// Parses one strict HTTP/1.1 message (CRLF line ends, Content-Length or chunked framing; a
/// response without either is read to the end of `buf`, which the caller only does at EOF).
pub fn parse_message(buf: &[u8], kind: MessageKind) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Invalid("header line without colon");
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (start_line, status) = match kind {
        MessageKind::Request => {
            let parts: Vec<&str> = first.split(' ').collect();
            if parts.len() != 3 || parts[2] != "HTTP/1.1" {
                return Parsed::Invalid("request line");
            }
            (format!("{} {}", parts[0], parts[1]), 0)
        }
        MessageKind::Response { .. } => {
            let status = first
                .strip_prefix("HTTP/1.1 ")
                .or_else(|| first.strip_prefix("HTTP/1.0 "))
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse::<u16>().ok());
            let Some(status) = status else {
                return Parsed::Invalid("status line");
            };
            (status.to_string(), status)
        }
    };
    let body_start = head_end + 4;
    let no_body = match kind {
        MessageKind::Request => false,
        MessageKind::Response { no_body } => {
            no_body || (100..200).contains(&status) || status == 204 || status == 304
        }
    };
    let mut message = Message {
        start_line,
        status,
        headers: headers.clone(),
        body: Vec::new(),
    };
    if no_body || status == 101 {
        return Parsed::Complete(message, body_start);
    }
    let upgrade = header("upgrade").is_some() && kind == MessageKind::Request;
    if let Some(te) = header("transfer-encoding") {
        if te != "chunked" {
            return Parsed::Invalid("transfer-encoding");
        }
        let mut at = body_start;
        loop {
            let Some(line_end) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                return Parsed::Incomplete;
            };
            let size_text = String::from_utf8_lossy(&buf[at..at + line_end]).into_owned();
            let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
            let Ok(size) = usize::from_str_radix(&size_text, 16) else {
                return Parsed::Invalid("chunk size");
            };
            at += line_end + 2;
            if size == 0 {
                // Trailers up to an empty line.
                let Some(end) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Parsed::Incomplete;
                };
                if end == 0 {
                    return Parsed::Complete(message, at + 2);
                }
                let Some(end) = buf[at..].windows(4).position(|w| w == b"\r\n\r\n") else {
                    return Parsed::Incomplete;
                };
                let trailers = String::from_utf8_lossy(&buf[at..at + end]).into_owned();
                message
                    .headers
                    .push(("trailers".into(), trailers.replace("\r\n", "; ")));
                return Parsed::Complete(message, at + end + 4);
            }
            if buf.len() < at + size + 2 {
                return Parsed::Incomplete;
            }
            message.body.extend_from_slice(&buf[at..at + size]);
            if &buf[at + size..at + size + 2] != b"\r\n" {
                return Parsed::Invalid("chunk data end");
            }
            at += size + 2;
        }
    }
    if let Some(length) = header("content-length") {
        let Ok(length) = length.parse::<usize>() else {
            return Parsed::Invalid("content-length");
        };
        if buf.len() < body_start + length {
            return Parsed::Incomplete;
        }
        message.body = buf[body_start..body_start + length].to_vec();
        return Parsed::Complete(message, body_start + length);
    }
    match kind {
        MessageKind::Request => {
            if upgrade {
                // Tunnel bytes after an upgrade request are recorded by `tunnel_echo`.
            }
            Parsed::Complete(message, body_start)
        }
        MessageKind::Response { .. } => {
            message.body = buf[body_start..].to_vec();
            Parsed::Complete(message, buf.len())
        }
    }
}

// === Raw client ===

/// What the client saw.
pub struct Observed {
    pub statuses: Vec<u16>,
    pub closed: bool,
    /// Bodies of the responses (local replies are judged by status; bodies help diagnosis).
    pub bodies: Vec<String>,
}

/// Runs the client steps of `case` against `addr` and reads until EOF or quiet.
/// `expected_responses`: how many complete responses the table expects; the quiet period only
/// starts once they arrived (or at EOF / CASE_LIMIT), so a slow, loaded machine cannot make a
/// late response look like a missing one. Extra responses still show within the quiet period.
pub fn run_client(addr: SocketAddr, case: &Case, expected_responses: usize) -> Observed {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect to proxy");
    let _ = stream.set_nodelay(true);
    let mut raw = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 64 * 1024];
    // Reads what is available within `window` (with `until_quiet`, until `window` passes
    // without a byte, bounded by CASE_LIMIT); returns false on EOF/reset.
    let mut read_for =
        |stream: &mut TcpStream, raw: &mut Vec<u8>, window: Duration, until_quiet: bool| -> bool {
            let mut deadline = Instant::now() + window;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return true;
                }
                let _ = stream.set_read_timeout(Some(deadline - now));
                match stream.read(&mut chunk) {
                    Ok(0) => return false,
                    Ok(n) => {
                        raw.extend_from_slice(&chunk[..n]);
                        if until_quiet && started.elapsed() < CASE_LIMIT {
                            deadline = Instant::now() + window;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return true
                    }
                    Err(_) => return false,
                }
            }
        };
    for step in case.client.iter().cloned() {
        match step {
            Step::Send(bytes) => {
                if stream.write_all(bytes).is_err() {
                    closed = true;
                    break;
                }
            }
            Step::Pause(ms) => {
                // Pacing the client is the point of these steps (slowloris); read meanwhile.
                if !read_for(&mut stream, &mut raw, Duration::from_millis(ms), false) {
                    closed = true;
                    break;
                }
            }
            Step::ShutdownWrite => {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
    }
    if !closed {
        match case.wait {
            Wait::Quiet => loop {
                if !read_for(&mut stream, &mut raw, QUIET, true) {
                    closed = true;
                    break;
                }
                if started.elapsed() > CASE_LIMIT {
                    break;
                }
                let complete = parse_responses(&raw, case.head_request)
                    .0
                    .iter()
                    .filter(|&&s| s < 1000)
                    .count();
                if complete >= expected_responses {
                    break;
                }
            },
            Wait::UpTo(ms) => {
                let deadline = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < deadline {
                    if !read_for(&mut stream, &mut raw, deadline - Instant::now(), false) {
                        closed = true;
                        break;
                    }
                }
            }
        }
    }
    let (mut statuses, mut bodies, mut closing) = parse_responses(&raw, case.head_request);
    if closing && !closed {
        // The proxy announced `connection: close`; Envoy closes after its delayed-close
        // timeout (1 s by default). Wait for that EOF, bounded.
        let deadline = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < deadline {
            if !read_for(&mut stream, &mut raw, deadline - Instant::now(), false) {
                closed = true;
                break;
            }
        }
        (statuses, bodies, closing) = parse_responses(&raw, case.head_request);
        let _ = closing;
    }
    Observed {
        statuses,
        closed,
        bodies,
    }
}

/// Statuses and bodies of the responses in `raw`, and whether the proxy is expected to close
/// next (the last response said `connection: close`, or was cut short).
fn parse_responses(raw: &[u8], head_request: bool) -> (Vec<u16>, Vec<String>, bool) {
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    let mut closing = false;
    let mut truncated = false;
    let mut at = 0;
    while at < raw.len() {
        match parse_message(
            &raw[at..],
            MessageKind::Response {
                no_body: head_request,
            },
        ) {
            Parsed::Complete(message, used) => {
                closing = message
                    .headers
                    .iter()
                    .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
                statuses.push(message.status);
                bodies.push(String::from_utf8_lossy(&message.body).into_owned());
                at += used;
                if message.status == 101 {
                    bodies.push(format!("tunnel: {:?}", String::from_utf8_lossy(&raw[at..])));
                    break;
                }
            }
            Parsed::Incomplete => {
                // A head whose body never completed: reported as 1000 + status.
                let rest = &raw[at..];
                if let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                    if let Parsed::Complete(message, _) = parse_message(
                        &rest[..head_end + 4],
                        MessageKind::Response { no_body: true },
                    ) {
                        statuses.push(1000 + message.status);
                        truncated = true;
                    }
                }
                bodies.push(format!("incomplete: {:?}", String::from_utf8_lossy(rest)));
                break;
            }
            Parsed::Invalid(_) => {
                statuses.push(0);
                bodies.push(format!(
                    "garbage: {:?}",
                    String::from_utf8_lossy(&raw[at..])
                ));
                break;
            }
        }
    }
    (statuses, bodies, closing || truncated)
}

// === The proxy under test ===

pub enum ProxyKind {
    Nuncio,
    Envoy(PathBuf),
}

pub struct Proxy {
    child: Child,
    pub main: SocketAddr,
    pub http10: SocketAddr,
    _dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The front-proxy config both proxies run: listener `main` (defaults, plus timeouts short
/// enough for the slowloris and idle cases, and websocket upgrades) and listener `http10`
/// (accept_http_10), both routing `/` to the recording upstream.
pub fn front_proxy_config(main_port: u16, http10_port: u16, upstream: SocketAddr) -> String {
    let listener = |name: &str, port: u16, extra: &str| {
        format!(
            r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          request_headers_timeout: 2s
          common_http_protocol_options: {{idle_timeout: 3s}}
          upgrade_configs: [{{upgrade_type: websocket}}]
{extra}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        )
    };
    format!(
        r#"static_resources:
  listeners:
{}{}  clusters:
  - name: upstream
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
"#,
        listener("main", main_port, ""),
        listener(
            "http10",
            http10_port,
            "          http_protocol_options: {accept_http_10: true, default_host_for_http_10: default.host}\n"
        ),
        upstream.port()
    )
}

impl Proxy {
    pub fn start(kind: &ProxyKind, upstream: SocketAddr) -> Proxy {
        // Lanes start their proxies one at a time: a port from `free_port` is free only until
        // the proxy binds it, and both proxies bind with SO_REUSEPORT, so two proxies started
        // at once on the same released port would silently share it (and mix the lanes).
        static STARTING: Mutex<()> = Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!(
            "nuncio-conformance-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (main_port, http10_port) = (free_port(), free_port());
        let config = dir.join("front-proxy.yaml");
        std::fs::write(
            &config,
            front_proxy_config(main_port, http10_port, upstream),
        )
        .expect("write config");
        let mut command = match kind {
            ProxyKind::Nuncio => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_nuncio"));
                c.arg("-c")
                    .arg(&config)
                    .args(["--concurrency", "1", "-l", "error"]);
                c
            }
            ProxyKind::Envoy(binary) => {
                let mut c = Command::new(binary);
                c.arg("-c").arg(&config).args([
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "-l",
                    "error",
                ]);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the proxy");
        let proxy = Proxy {
            child,
            main: SocketAddr::from(([127, 0, 0, 1], main_port)),
            http10: SocketAddr::from(([127, 0, 0, 1], http10_port)),
            _dir: TempDir(dir),
        };
        for addr in [proxy.main, proxy.http10] {
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(addr).is_err() {
                assert!(Instant::now() < deadline, "proxy did not listen on {addr}");
                thread::sleep(Duration::from_millis(20));
            }
        }
        proxy
    }
}

// === Running and judging ===

/// What one case produced.
#[derive(Debug)]
pub struct Outcome {
    pub statuses: Vec<u16>,
    pub closed: bool,
    /// Complete requests the upstream received.
    pub upstream: Vec<String>,
    /// Requests the upstream saw only in part (the proxy gave up on them and reset the
    /// connection, so they can never complete). Whether a proxy forwards the head before
    /// finding the body broken is timing, so these are reported, not judged.
    pub partial: Vec<String>,
    pub bodies: Vec<String>,
}

/// One plain GET through `addr`, answered by the upstream's default reply: afterwards the
/// proxy holds an idle pooled connection to the upstream.
fn warm_up(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).expect("connect to proxy");
    let _ = stream.set_read_timeout(Some(CASE_LIMIT));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: warm\r\n\r\n")
        .expect("send the warm-up request");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while !matches!(
        parse_message(&raw, MessageKind::Response { no_body: false }),
        Parsed::Complete(..)
    ) {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => raw.extend_from_slice(&chunk[..n]),
            _ => panic!("no response to the warm-up request: {raw:?}"),
        }
    }
}

pub fn observe(
    proxy: &Proxy,
    upstream: &RecordingUpstream,
    case: &Case,
    expected_responses: usize,
) -> Outcome {
    let addr = match case.listener {
        Listener::Main => proxy.main,
        Listener::Http10 => proxy.http10,
    };
    if case.warm_pool {
        upstream.reset(&[]);
        warm_up(addr);
    }
    upstream.reset(&case.upstream);
    let observed = run_client(addr, case, expected_responses);
    upstream.settle(Duration::from_millis(250));
    let (partial, upstream) = upstream
        .requests()
        .into_iter()
        .partition(|r| r.starts_with("PARTIAL "));
    Outcome {
        statuses: observed.statuses,
        closed: observed.closed,
        upstream,
        partial,
        bodies: observed.bodies,
    }
}
