//! DNS resolution for STRICT_DNS and LOGICAL_DNS clusters, off the worker threads (Envoy's
//! `Network::DnsResolver` plus the refresh timers of `StrictDnsClusterImpl::ResolveTarget` and
//! `LogicalDnsCluster`).
//!
//! Owns one resolver thread per cluster manager. The thread keeps a schedule of
//! [`DnsTarget`]s (one per host name to resolve), resolves each when it is due with the system
//! resolver (`getaddrinfo`, through std's `ToSocketAddrs`), hands every answer to the callback the
//! cluster manager gave it, and schedules the target again `dns_refresh_rate` later. A blocking
//! `getaddrinfo` therefore only ever delays other DNS refreshes, never a worker.
//!
//! What `dns_lookup_family` keeps of an answer ([`select_family`], sans-IO) follows Envoy:
//! `V4_ONLY`/`V6_ONLY` keep one family; `AUTO` prefers IPv6 and falls back to IPv4;
//! `V4_PREFERRED` prefers IPv4 and falls back to IPv6; `ALL` keeps both.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::DnsLookupFamily;

/// A failed resolution (the cluster keeps its previous hosts, and counts `update_failure`).
#[derive(Debug)]
pub struct DnsError {
    pub hostname: String,
    pub error: io::Error,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DNS resolution of '{}' failed: {}",
            self.hostname, self.error
        )
    }
}

impl std::error::Error for DnsError {}

/// Keeps the addresses `family` asks for, in the resolver's order, without duplicates.
pub fn select_family(addresses: &[SocketAddr], family: DnsLookupFamily) -> Vec<SocketAddr> {
    let has_v4 = addresses.iter().any(SocketAddr::is_ipv4);
    let has_v6 = addresses.iter().any(SocketAddr::is_ipv6);
    let keep = |a: &SocketAddr| match family {
        DnsLookupFamily::V4Only => a.is_ipv4(),
        DnsLookupFamily::V6Only => a.is_ipv6(),
        DnsLookupFamily::Auto => a.is_ipv6() || !has_v6,
        DnsLookupFamily::V4Preferred => a.is_ipv4() || !has_v4,
        DnsLookupFamily::All => true,
    };
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    for a in addresses.iter().filter(|a| keep(a)) {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// Resolves `hostname` with the system resolver (blocking) and keeps the `family` addresses,
/// each with `port`. An answer with no address of the family is an empty list, not an error.
pub fn resolve(
    hostname: &str,
    port: u16,
    family: DnsLookupFamily,
) -> Result<Vec<SocketAddr>, DnsError> {
    match (hostname, port).to_socket_addrs() {
        Ok(addresses) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            Ok(select_family(&addresses, family))
        }
        Err(error) => Err(DnsError {
            hostname: hostname.to_string(),
            error,
        }),
    }
}

/// One host name the resolver thread keeps fresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTarget {
    pub hostname: String,
    pub port: u16,
    pub family: DnsLookupFamily,
    pub refresh_rate: Duration,
}

/// When each target is due (sans-IO: the thread passes the time in).
#[derive(Debug)]
struct Schedule {
    due: Vec<Instant>,
}

impl Schedule {
    /// Every target is due at `now` (the first resolution happens at once).
    fn new(targets: usize, now: Instant) -> Schedule {
        Schedule {
            due: vec![now; targets],
        }
    }

    /// The target due first, and when.
    fn next(&self) -> Option<(usize, Instant)> {
        self.due
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, due)| *due)
    }

    fn resolved(&mut self, target: usize, now: Instant, refresh_rate: Duration) {
        self.due[target] = now + refresh_rate;
    }
}

/// What the resolver thread calls with each answer: the index of the target in the list given
/// to [`DnsResolverThread::start`], and the addresses (or the error).
pub type DnsCallback = Box<dyn FnMut(usize, Result<Vec<SocketAddr>, DnsError>) + Send>;

/// Shared with the thread: set `stop` and notify to end it.
struct Control {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The resolver thread. Dropping it stops the thread: at once when it is waiting; a
/// resolution in progress (a blocking `getaddrinfo` that may take the system resolver's
/// timeout) is abandoned: its answer is discarded and the thread exits on its own, so shutdown
/// never waits on DNS.
pub struct DnsResolverThread {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResolverThread {
    /// Starts resolving `targets`: each at once, then every `refresh_rate`.
    pub fn start(
        targets: Vec<DnsTarget>,
        mut callback: DnsCallback,
    ) -> io::Result<DnsResolverThread> {
        let control = Arc::new(Control {
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread_control = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name("dns_resolver".to_string())
            .spawn(move || {
                let mut schedule = Schedule::new(targets.len(), Instant::now());
                while let Some((index, due)) = schedule.next() {
                    // Sleep until the target is due, or until told to stop.
                    {
                        let mut stop = thread_control
                            .stop
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        loop {
                            if *stop {
                                return;
                            }
                            let now = Instant::now();
                            if now >= due {
                                break;
                            }
                            stop = thread_control
                                .wake
                                .wait_timeout(stop, due - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                    let target = &targets[index];
                    let result = resolve(&target.hostname, target.port, target.family);
                    // Told to stop while `getaddrinfo` ran: the answer is no longer wanted.
                    if *thread_control
                        .stop
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                    {
                        return;
                    }
                    match &result {
                        Ok(addresses) => {
                            debug!("dns: {} resolved to {:?}", target.hostname, addresses)
                        }
                        Err(e) => log::warn!("dns: {e}"),
                    }
                    callback(index, result);
                    schedule.resolved(index, Instant::now(), target.refresh_rate);
                }
            })?;
        Ok(DnsResolverThread {
            control,
            thread: Some(thread),
        })
    }
}

/// How long dropping the resolver waits for its thread before leaving it to finish alone.
const STOP_WAIT: Duration = Duration::from_millis(200);

impl Drop for DnsResolverThread {
    fn drop(&mut self) {
        *self.control.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.control.wake.notify_all();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if thread.is_finished() {
            // It returned (or panicked inside the callback); either way it is gone.
            let _ = thread.join();
        } else {
            debug!("dns: resolver thread busy in getaddrinfo; not waiting for it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn family_selection_follows_envoy() {
        let both = [
            sa("[::1]:80"),
            sa("127.0.0.1:80"),
            sa("[::2]:80"),
            sa("127.0.0.1:80"),
        ];
        let v4 = [sa("127.0.0.1:80")];
        let v6 = [sa("[::1]:80")];
        use DnsLookupFamily::*;
        assert_eq!(select_family(&both, V4Only), [sa("127.0.0.1:80")]);
        assert_eq!(
            select_family(&both, V6Only),
            [sa("[::1]:80"), sa("[::2]:80")]
        );
        assert_eq!(select_family(&both, Auto), [sa("[::1]:80"), sa("[::2]:80")]);
        assert_eq!(select_family(&v4, Auto), v4);
        assert_eq!(select_family(&both, V4Preferred), [sa("127.0.0.1:80")]);
        assert_eq!(select_family(&v6, V4Preferred), v6);
        assert_eq!(
            select_family(&both, All),
            [sa("[::1]:80"), sa("127.0.0.1:80"), sa("[::2]:80")]
        );
        assert!(select_family(&v6, V4Only).is_empty());
    }

    #[test]
    fn resolves_localhost_and_ip_literals() {
        let a = resolve("localhost", 8080, DnsLookupFamily::V4Only).unwrap();
        assert!(a.contains(&sa("127.0.0.1:8080")), "{a:?}");
        let a = resolve("127.0.0.1", 9, DnsLookupFamily::Auto).unwrap();
        assert_eq!(a, [sa("127.0.0.1:9")]);
        let e = resolve("name.invalid", 80, DnsLookupFamily::Auto).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("DNS resolution of 'name.invalid' failed"),
            "{e}"
        );
    }

    #[test]
    fn schedule_picks_the_earliest_due() {
        let t0 = Instant::now();
        let mut s = Schedule::new(2, t0);
        assert_eq!(s.next(), Some((0, t0)));
        s.resolved(0, t0, Duration::from_secs(5));
        assert_eq!(s.next(), Some((1, t0)));
        s.resolved(1, t0, Duration::from_secs(1));
        assert_eq!(s.next(), Some((1, t0 + Duration::from_secs(1))));
        assert_eq!(Schedule::new(0, t0).next(), None);
    }

    #[test]
    fn thread_resolves_at_once_then_refreshes_then_stops() {
        let (tx, rx) = mpsc::channel();
        let targets = vec![
            DnsTarget {
                hostname: "localhost".into(),
                port: 1,
                family: DnsLookupFamily::V4Only,
                refresh_rate: Duration::from_millis(20),
            },
            DnsTarget {
                hostname: "127.0.0.2".into(),
                port: 2,
                family: DnsLookupFamily::Auto,
                refresh_rate: Duration::from_secs(3600),
            },
        ];
        let thread = DnsResolverThread::start(
            targets,
            Box::new(move |i, r| {
                let _ = tx.send((i, r.map_err(|e| e.to_string())));
            }),
        )
        .unwrap();
        let mut seen = [0usize; 2];
        while seen[0] < 3 {
            let (i, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            seen[i] += 1;
            let addresses = r.unwrap();
            match i {
                0 => assert!(addresses.contains(&sa("127.0.0.1:1"))),
                _ => assert_eq!(addresses, [sa("127.0.0.2:2")]),
            }
        }
        // The slow target resolved once, at start.
        assert_eq!(seen[1], 1);
        let started = Instant::now();
        drop(thread);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Stopped: nothing more arrives (the sender is gone with the thread).
        while rx.try_recv().is_ok() {}
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
