//! The `server.*` gauges Envoy keeps (`ServerStats` in Envoy's `server.h`): live, state, uptime,
//! concurrency, memory_allocated, memory_heap_size, total_connections, version.
//!
//! Created once by the server on the main thread; `flush` is called every stats flush interval
//! (and by the admin endpoint before rendering, so `/stats` is current). Reads memory use from
//! `/proc/self/status`.

use std::time::Instant;

use super::{Gauge, ImportMode, Store};

/// The server's life-cycle state, as Envoy numbers it in `server.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Serving (0).
    Live = 0,
    /// Draining listeners before exit (1).
    Draining = 1,
    /// Before initialization started (2).
    PreInitializing = 2,
    /// Waiting for clusters and listeners to initialize (3).
    Initializing = 3,
}

/// The `server.*` gauges.
#[derive(Debug, Clone)]
pub struct ServerStats {
    live: Gauge,
    state: Gauge,
    uptime: Gauge,
    concurrency: Gauge,
    memory_allocated: Gauge,
    memory_heap_size: Gauge,
    total_connections: Gauge,
    started: Instant,
}

impl ServerStats {
    /// Registers the gauges in `store` (state `PreInitializing`, not live); `started` is the
    /// process start time that `server.uptime` counts from.
    pub fn new(store: &Store, started: Instant) -> ServerStats {
        let s = store.scope("server");
        let g = |name: &str| s.gauge(name, ImportMode::NeverImport);
        let stats = ServerStats {
            live: g("live"),
            state: g("state"),
            uptime: g("uptime"),
            concurrency: g("concurrency"),
            memory_allocated: g("memory_allocated"),
            memory_heap_size: g("memory_heap_size"),
            total_connections: g("total_connections"),
            started,
        };
        // Envoy's server.version is the build's SCM revision as a number; we have none.
        g("version").set(0);
        stats.set_state(ServerState::PreInitializing);
        stats
    }

    /// Sets `server.state`, and `server.live` to 1 exactly when the state is `Live`.
    pub fn set_state(&self, state: ServerState) {
        self.state.set(state as u64);
        self.live.set(u64::from(state == ServerState::Live));
    }

    /// Sets `server.concurrency` (the number of workers).
    pub fn set_concurrency(&self, workers: u64) {
        self.concurrency.set(workers);
    }

    /// Refreshes uptime and memory use, and sets `server.total_connections` (the sum of every
    /// listener's active downstream connections, which the caller knows).
    pub fn flush(&self, now: Instant, total_connections: u64) {
        self.uptime
            .set(now.saturating_duration_since(self.started).as_secs());
        if let Some(mem) = MemoryUse::read() {
            self.memory_allocated.set(mem.resident_bytes);
            self.memory_heap_size.set(mem.data_bytes);
        }
        self.total_connections.set(total_connections);
    }
}

/// The process's memory use as the kernel reports it in `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Resident set size in bytes, `VmRSS` (our `server.memory_allocated`; Envoy reports
    /// tcmalloc's allocated bytes, which we do not have without a custom allocator).
    pub resident_bytes: u64,
    /// Data segment size in bytes, `VmData` (our `server.memory_heap_size`).
    pub data_bytes: u64,
}

impl MemoryUse {
    /// Reads `/proc/self/status`; `None` where it does not exist or lacks the fields.
    pub fn read() -> Option<MemoryUse> {
        MemoryUse::parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Parses the `VmRSS:` and `VmData:` lines (`VmRSS:   1234 kB`).
    pub fn parse_status(status: &str) -> Option<MemoryUse> {
        let field = |key: &str| -> Option<u64> {
            let line = status.lines().find_map(|l| l.strip_prefix(key))?;
            let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib.saturating_mul(1024))
        };
        Some(MemoryUse {
            resident_bytes: field("VmRSS:")?,
            data_bytes: field("VmData:")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn state_live_and_uptime() {
        let store = Store::new();
        let t0 = Instant::now();
        let s = ServerStats::new(&store, t0);
        let value = |name: &str| store.gauge(name, ImportMode::NeverImport).value();
        assert_eq!(value("server.state"), 2);
        assert_eq!(value("server.live"), 0);
        s.set_state(ServerState::Live);
        s.set_concurrency(4);
        s.flush(t0 + Duration::from_secs(42), 17);
        assert_eq!(value("server.state"), 0);
        assert_eq!(value("server.live"), 1);
        assert_eq!(value("server.uptime"), 42);
        assert_eq!(value("server.concurrency"), 4);
        assert_eq!(value("server.total_connections"), 17);
        assert!(
            value("server.memory_allocated") > 0,
            "read from /proc/self/statm"
        );
        s.set_state(ServerState::Draining);
        assert_eq!((value("server.state"), value("server.live")), (1, 0));
    }

    #[test]
    fn status_parsing() {
        let status = "Name:\tnuncio\nVmData:\t   300 kB\nVmRSS:\t     250 kB\n";
        assert_eq!(
            MemoryUse::parse_status(status),
            Some(MemoryUse {
                resident_bytes: 250 * 1024,
                data_bytes: 300 * 1024
            })
        );
        assert_eq!(MemoryUse::parse_status("VmRSS: x kB\nVmData: 1 kB"), None);
        assert_eq!(MemoryUse::parse_status(""), None);
    }
}
