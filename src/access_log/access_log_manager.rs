//! Access-log files and the thread that writes them (Envoy's `AccessLogManagerImpl` and
//! `AccessLogFileImpl`), and the running `AccessLog` (filter + formatter + file) the data path
//! calls.
//!
//! # Never blocking a worker
//! A worker formats a line into a thread-local buffer, then appends it to the file's in-memory
//! buffer under a mutex held only for that copy. A flush thread swaps each buffer out (a second,
//! recycled buffer takes its place, so no allocation in steady state) and writes it to the file,
//! every `flush_interval` (Envoy's `--file-flush-interval-msec`, 10 s by default) or as soon as a
//! buffer passes 64 KiB. Disk latency is paid on the flush thread only. If the disk stalls so
//! long that a buffer reaches 64 MiB, further lines are dropped (and counted) rather than
//! growing memory without bound.
//!
//! # Rotation and exit
//! `reopen_all` (SIGUSR1, admin `POST /reopen_logs`) asks the flush thread to reopen every file
//! by path before its next write: a log rotated by renaming keeps every line, the ones buffered
//! before the reopen landing in the new file. `shutdown` writes everything buffered and stops the
//! thread; call it on exit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{ConfigError, ErrorKind};

use super::config::{AccessLogConfig, Destination};
use super::filter::AccessLogFilter;
use super::formatter::Formatter;
use super::stream_info::StreamInfo;

/// Envoy's default `--file-flush-interval-msec`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// A buffer this large is flushed without waiting for the interval (Envoy's 64 KiB).
pub const FLUSH_SIZE: usize = 64 * 1024;
/// A buffer this large takes no more lines until flushed.
pub const MAX_BUFFER: usize = 64 * 1024 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a copy or a swap: a panic cannot leave the data half-made.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What wakes the flush thread.
#[derive(Default)]
struct WakeState {
    kicked: bool,
    shutdown: bool,
}

#[derive(Default)]
struct Wake {
    state: Mutex<WakeState>,
    cond: Condvar,
}

impl Wake {
    fn kick(&self) {
        lock(&self.state).kicked = true;
        self.cond.notify_one();
    }
}

/// The flush side of a file: the open handle and the recycled buffer. Only the flush thread (or
/// a synchronous `flush_all`) touches it.
struct FlushSide {
    file: Option<File>,
    spare: Vec<u8>,
    /// Set after a write error, so it is logged once per failure streak.
    failing: bool,
}

/// One destination's buffer, shared by every `AccessLog` writing to it.
pub struct AccessLogFile {
    destination: Destination,
    buffer: Mutex<Vec<u8>>,
    flush_side: Mutex<FlushSide>,
    reopen: AtomicBool,
    flush_pending: AtomicBool,
    dropped_lines: AtomicU64,
    wake: Arc<Wake>,
}

impl std::fmt::Debug for AccessLogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogFile")
            .field("destination", &self.destination)
            .finish()
    }
}

fn open(destination: &Destination) -> io::Result<Option<File>> {
    match destination {
        Destination::File(path) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Some),
        Destination::Stdout | Destination::Stderr => Ok(None),
    }
}

impl AccessLogFile {
    /// Appends one line (or several). Holds the buffer lock only for the copy.
    pub fn write(&self, data: &[u8]) {
        let len = {
            let mut buf = lock(&self.buffer);
            if buf.len() + data.len() > MAX_BUFFER {
                drop(buf);
                self.dropped_lines.fetch_add(1, Ordering::Relaxed);
                return;
            }
            buf.extend_from_slice(data);
            buf.len()
        };
        if len >= FLUSH_SIZE && !self.flush_pending.swap(true, Ordering::AcqRel) {
            self.wake.kick();
        }
    }

    /// Lines dropped because the buffer was full (the disk did not keep up).
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    /// Where this file writes.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Writes out what is buffered (on the flush thread, or synchronously from `flush_all`).
    fn flush(&self) {
        let mut side = lock(&self.flush_side);
        let side = &mut *side;
        std::mem::swap(&mut *lock(&self.buffer), &mut side.spare);
        self.flush_pending.store(false, Ordering::Release);
        if self.reopen.swap(false, Ordering::AcqRel) {
            // Close first, as Envoy does, so the old name is released before the new open.
            side.file = None;
            match open(&self.destination) {
                Ok(f) => side.file = f,
                Err(e) => log::error!("access log: cannot reopen {:?}: {e}", self.destination),
            }
        }
        if side.spare.is_empty() {
            return;
        }
        let result = match (&self.destination, side.file.as_mut()) {
            (Destination::Stdout, _) => io::stdout().lock().write_all(&side.spare),
            (Destination::Stderr, _) => io::stderr().lock().write_all(&side.spare),
            (Destination::File(_), Some(f)) => f.write_all(&side.spare),
            (Destination::File(_), None) => Err(io::Error::other("file is not open")),
        };
        match result {
            Ok(()) => side.failing = false,
            Err(e) => {
                if !side.failing {
                    log::error!(
                        "access log: write to {:?} failed: {e}; lines are lost until it recovers",
                        self.destination
                    );
                }
                side.failing = true;
            }
        }
        side.spare.clear();
    }
}

/// Shared between the manager handles and the flush thread.
struct Shared {
    files: Mutex<HashMap<Destination, Arc<AccessLogFile>>>,
    wake: Arc<Wake>,
    flush_interval: Duration,
}

impl Shared {
    fn files(&self) -> Vec<Arc<AccessLogFile>> {
        lock(&self.files).values().cloned().collect()
    }

    fn flush_all(&self) {
        for f in self.files() {
            f.flush();
        }
    }

    /// The flush thread: wake on the interval, a kick, or shutdown; flush everything.
    fn run(&self) {
        loop {
            let shutdown = {
                let state = lock(&self.wake.state);
                let (mut state, _) = self
                    .wake
                    .cond
                    .wait_timeout_while(state, self.flush_interval, |s| !s.kicked && !s.shutdown)
                    .unwrap_or_else(|e| e.into_inner());
                state.kicked = false;
                state.shutdown
            };
            self.flush_all();
            if shutdown {
                return;
            }
        }
    }
}

/// Owns every access-log file and the flush thread. Cheap to clone; create one per server.
#[derive(Clone)]
pub struct AccessLogManager {
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for AccessLogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogManager")
            .field("flush_interval", &self.shared.flush_interval)
            .finish()
    }
}

impl AccessLogManager {
    /// Starts the flush thread, which writes buffers every `flush_interval`.
    pub fn new(flush_interval: Duration) -> io::Result<AccessLogManager> {
        let shared = Arc::new(Shared {
            files: Mutex::new(HashMap::new()),
            wake: Arc::new(Wake::default()),
            flush_interval,
        });
        let runner = shared.clone();
        let handle = std::thread::Builder::new()
            .name("access_log_flush".into())
            .spawn(move || runner.run())?;
        Ok(AccessLogManager {
            shared,
            thread: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// The file for `destination`, opened (created, for append) on first use; every access log
    /// writing to the same place shares one buffer, so their lines never interleave mid-line.
    pub fn create_file(&self, destination: &Destination) -> io::Result<Arc<AccessLogFile>> {
        let mut files = lock(&self.shared.files);
        if let Some(f) = files.get(destination) {
            return Ok(f.clone());
        }
        let file = Arc::new(AccessLogFile {
            destination: destination.clone(),
            buffer: Mutex::new(Vec::new()),
            flush_side: Mutex::new(FlushSide {
                file: open(destination)?,
                spare: Vec::new(),
                failing: false,
            }),
            reopen: AtomicBool::new(false),
            flush_pending: AtomicBool::new(false),
            dropped_lines: AtomicU64::new(0),
            wake: self.shared.wake.clone(),
        });
        files.insert(destination.clone(), file.clone());
        Ok(file)
    }

    /// Builds a running access log from its config; an unopenable file is a config error at
    /// the `path` field (Envoy refuses to start too).
    pub fn create(&self, config: &AccessLogConfig) -> Result<AccessLog, ConfigError> {
        let file = self.create_file(&config.destination).map_err(|e| {
            let what = match &config.destination {
                Destination::File(p) => p.as_str(),
                _ => "stream",
            };
            ConfigError::new(
                ErrorKind::Io,
                config.destination_path.clone(),
                format!("cannot open access log '{what}': {e}"),
            )
        })?;
        Ok(AccessLog {
            inner: Arc::new(AccessLogInner {
                filter: config.filter.clone(),
                formatter: config.formatter.clone(),
                file,
            }),
        })
    }

    /// Reopens every file before its next write (log rotation) and wakes the flush thread.
    pub fn reopen_all(&self) {
        for f in self.shared.files() {
            f.reopen.store(true, Ordering::Release);
        }
        self.shared.wake.kick();
    }

    /// Writes everything buffered now, on the calling thread.
    pub fn flush_all(&self) {
        self.shared.flush_all();
    }

    /// Writes everything buffered and stops the flush thread (idempotent). Lines logged after
    /// this stay buffered until `flush_all`.
    pub fn shutdown(&self) {
        {
            lock(&self.shared.wake.state).shutdown = true;
            self.shared.wake.cond.notify_one();
        }
        if let Some(handle) = lock(&self.thread).take() {
            if handle.join().is_err() {
                log::error!("access log flush thread panicked");
            }
        }
        self.shared.flush_all();
    }
}

struct AccessLogInner {
    filter: Option<AccessLogFilter>,
    formatter: Formatter,
    file: Arc<AccessLogFile>,
}

/// A running access log (Envoy's `AccessLog::Instance`): cheap to clone, shared by workers.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<AccessLogInner>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("file", &self.inner.file)
            .finish()
    }
}

thread_local! {
    /// Each worker's line buffer: grows to the longest line, then is reused.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// Writes one line for `info` if the filter lets it through.
    pub fn log(&self, info: &StreamInfo<'_>) {
        let inner = &*self.inner;
        if inner.filter.as_ref().is_some_and(|f| !f.evaluate(info)) {
            return;
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            inner.formatter.format(info, &mut line);
            inner.file.write(&line);
        });
    }

    /// The file this log writes to.
    pub fn file(&self) -> &Arc<AccessLogFile> {
        &self.inner.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, Node};
    use std::time::Instant;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("nuncio-access-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn file_log(manager: &AccessLogManager, path: &std::path::Path, format: &str) -> AccessLog {
        let yaml = format!(
            "- typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n    path: {}\n    log_format: {{text_format_source: {{inline_string: \"{format}\"}}}}\n",
            path.display()
        );
        let doc = parse_yaml(&yaml).expect("yaml");
        let cfg =
            AccessLogConfig::parse_list(&Node::with_path(&doc, "access_log")).expect("config");
        manager.create(&cfg[0]).expect("open")
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rotation_loses_no_line() {
        let dir = temp_dir("rotate");
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let manager = AccessLogManager::new(Duration::from_millis(5)).expect("flush thread");
        let log = file_log(&manager, &path, "%CONNECTION_ID%\\n");
        let stop = Arc::new(AtomicBool::new(false));
        // Two writers log ids t, t+2, t+4, ... until told to stop; they return how many.
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (log, stop) = (log.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) || n < 1000 {
                        log.log(&StreamInfo {
                            connection_id: Some(t + 2 * n),
                            ..StreamInfo::default()
                        });
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let wait_for_lines = |p: &std::path::Path| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while lines(p).len() < 1000 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // Rotate while both threads write: rename, then reopen (what logrotate + SIGUSR1 do).
        wait_for_lines(&path);
        std::fs::rename(&path, &rotated).expect("rename");
        manager.reopen_all();
        wait_for_lines(&path);
        stop.store(true, Ordering::Relaxed);
        let total: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
        manager.shutdown();
        let (old, new) = (lines(&rotated), lines(&path));
        assert!(
            old.len() >= 1000 && new.len() >= 1000,
            "both files got lines: {} {}",
            old.len(),
            new.len()
        );
        let mut all: Vec<u64> = old
            .iter()
            .chain(new.iter())
            .map(|l| l.parse().expect("id"))
            .collect();
        all.sort_unstable();
        let logged = all.len() as u64;
        all.dedup();
        assert_eq!(
            (logged, all.len() as u64),
            (total, total),
            "every line exactly once"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn filters_apply_and_same_path_shares_one_file() {
        let dir = temp_dir("share");
        let path = dir.join("a.log");
        let manager = AccessLogManager::new(Duration::from_secs(3600)).expect("flush thread");
        let a = file_log(&manager, &path, "a %RESPONSE_CODE%\\n");
        let b = file_log(&manager, &path, "b %RESPONSE_CODE%\\n");
        assert!(Arc::ptr_eq(a.file(), b.file()));
        let doc =
            parse_yaml("status_code_filter: {comparison: {op: GE, value: {default_value: 500}}}")
                .expect("yaml");
        let filtered = AccessLog {
            inner: Arc::new(AccessLogInner {
                filter: Some(AccessLogFilter::parse(&Node::root(&doc)).expect("filter")),
                formatter: Formatter::text("f %RESPONSE_CODE%\n").expect("format"),
                file: a.file().clone(),
            }),
        };
        for code in [200, 503] {
            let info = StreamInfo {
                response_code: Some(code),
                ..StreamInfo::default()
            };
            a.log(&info);
            b.log(&info);
            filtered.log(&info);
        }
        // Nothing is written before a flush (interval is an hour, buffer is small).
        assert!(lines(&path).is_empty());
        manager.shutdown();
        assert_eq!(
            lines(&path),
            vec!["a 200", "b 200", "a 503", "b 503", "f 503"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_large_buffer_is_flushed_before_the_interval() {
        let dir = temp_dir("large");
        let path = dir.join("big.log");
        let manager = AccessLogManager::new(Duration::from_secs(3600)).expect("flush thread");
        let log = file_log(&manager, &path, "%REQ(X)%\\n");
        let value = "x".repeat(1000);
        let req = [("x", value.as_str())];
        let headers = super::super::stream_info::HeaderList(&req);
        let info = StreamInfo {
            request_headers: Some(&headers),
            ..StreamInfo::default()
        };
        for _ in 0..70 {
            log.log(&info);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(&path).len() < 65 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            lines(&path).len() >= 65,
            "flushed at 64 KiB without waiting an hour"
        );
        manager.shutdown();
        assert_eq!(lines(&path).len(), 70);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unopenable_file_is_a_config_error_at_its_path() {
        let manager = AccessLogManager::new(Duration::from_secs(1)).expect("flush thread");
        let doc = parse_yaml(
            "- typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n    path: /nonexistent-dir/x.log\n",
        )
        .expect("yaml");
        let cfg =
            AccessLogConfig::parse_list(&Node::with_path(&doc, "access_log")).expect("config");
        let err = manager.create(&cfg[0]).unwrap_err().to_string();
        assert!(err.starts_with("access_log[0].typed_config.path: cannot open access log '/nonexistent-dir/x.log': "), "{err}");
        manager.shutdown();
    }
}
