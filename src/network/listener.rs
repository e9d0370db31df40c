//! Listeners: the built configuration every worker shares (Envoy's `Network::ListenerConfig`),
//! the listening socket, and accepting from it (Envoy's `Network::TcpListenerImpl`).
//!
//! `ListenerConfig` is built once on the main thread by the listener manager
//! (`server/listener_manager.rs`) and shared by the workers through an `Arc`. Each worker owns
//! a [`ListenerImpl`] per listener: a level-triggered read `FileEvent` on its socket. On each
//! event it accepts until `WouldBlock` or [`ACCEPT_BATCH`] sockets, handing each one to the
//! worker's `ConnectionHandler` (`ActiveTcpListener::onAccept`). When the process runs out of
//! file descriptors (EMFILE/ENFILE) accepting pauses for [`ACCEPT_BACKOFF`] instead of
//! spinning on a socket that stays readable, and the error is logged once per burst.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use mio::net::{TcpListener, TcpStream};
use reactor::{FileEvent, FileReadyType, Timer};

use super::filter_chain::FilterChainManager;
use super::filter_manager::FilterManager;
use super::listener_filter::ListenerFilterFactory;

/// Most sockets accepted per read event, so one busy listener cannot starve the loop (level
/// triggered: the rest are accepted on the next iteration).
pub const ACCEPT_BATCH: usize = 64;

/// How long accepting pauses after EMFILE/ENFILE.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Builds one network filter into a new connection's filter manager, on the worker that owns
/// the connection (Envoy's `Network::FilterFactoryCb`). The `usize` is the worker index, for
/// per-worker stats handles. Built from `typed_config` by a registered factory
/// (`src/filters/`).
pub type NetworkFilterFactoryCb = Arc<dyn Fn(&mut FilterManager, usize) + Send + Sync>;

/// A filter chain: its name and the factories of its filters, in order.
pub struct FilterChain {
    pub name: String,
    pub filter_factories: Vec<NetworkFilterFactoryCb>,
}

/// Everything a worker needs to run one listener (Envoy's `ListenerConfig`, built by
/// `ListenerImpl` in the listener manager).
pub struct ListenerConfig {
    /// `name` from the config (or the address when unnamed).
    pub name: String,
    /// The address it listens on, as configured (port 0 = OS-chosen, fixed at bind time).
    pub address: SocketAddr,
    /// Filter chains and their selection (`filter_chain_match`, `default_filter_chain`).
    pub filter_chains: FilterChainManager<FilterChain>,
    /// Listener filters, in order.
    pub listener_filters: Vec<Arc<dyn ListenerFilterFactory>>,
    /// Closes a socket whose listener filters have not finished (`listener_filters_timeout`,
    /// default 15 s; zero disables).
    pub listener_filters_timeout: Duration,
    /// `continue_on_listener_filters_timeout`: create the connection anyway on timeout.
    pub continue_on_listener_filters_timeout: bool,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB).
    pub per_connection_buffer_limit_bytes: u32,
    /// `enable_reuse_port` (default true): one socket per worker, balanced by the kernel.
    pub enable_reuse_port: bool,
}

/// The accepting half of one listener on one worker.
#[doc(alias = "TcpListenerImpl")]
pub struct ListenerImpl {
    /// `None` once stopped: closing the socket is what makes the kernel refuse new
    /// connections (a registered-but-ignored socket would still complete handshakes).
    socket: Option<TcpListener>,
    /// The read registration (level-triggered); `None` once the listener stopped.
    file_event: Option<FileEvent>,
    /// Re-enables accepting after an EMFILE/ENFILE pause.
    backoff_timer: Option<Timer>,
    /// Whether accepting is paused for EMFILE/ENFILE (logged once per pause).
    backing_off: bool,
}

/// What one accept pass found.
pub enum Accepted {
    /// A new socket and its peer.
    Socket(TcpStream, SocketAddr),
    /// Nothing more to accept right now.
    Done,
}

impl ListenerImpl {
    /// Wraps a bound, listening socket (non-blocking).
    pub fn new(socket: std::net::TcpListener) -> io::Result<ListenerImpl> {
        socket.set_nonblocking(true)?;
        Ok(ListenerImpl {
            socket: Some(TcpListener::from_std(socket)),
            file_event: None,
            backoff_timer: None,
            backing_off: false,
        })
    }

    /// The socket's fd, for registration.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_ref().map_or(-1, |s| s.as_raw_fd())
    }

    /// The bound address (the real port when configured with 0).
    pub fn local_address(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            Some(s) => s.local_addr(),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Attaches the registration and the backoff timer (created by the handler).
    pub fn set_events(&mut self, file_event: FileEvent, backoff_timer: Timer) {
        self.file_event = Some(file_event);
        self.backoff_timer = Some(backoff_timer);
    }

    /// Accepts one socket (Envoy's `TcpListenerImpl::onSocketEvent` loop body). Errors other
    /// than running out of descriptors are logged and skipped (a peer that reset before we
    /// accepted is not our problem).
    pub fn accept_one(&mut self) -> Accepted {
        let Some(socket) = &self.socket else {
            return Accepted::Done;
        };
        loop {
            match socket.accept() {
                Ok((stream, peer)) => {
                    trace!("ActiveTcpListener::onAccept: connection from {peer}");
                    return Accepted::Socket(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Done,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    self.pause_accepting(&e);
                    return Accepted::Done;
                }
                Err(e) => {
                    trace!("accept error (skipped): {e}");
                    continue;
                }
            }
        }
    }

    /// EMFILE/ENFILE: the socket stays readable but nothing can be accepted; stop listening
    /// for a moment instead of spinning, and say so once.
    fn pause_accepting(&mut self, error: &io::Error) {
        if !self.backing_off {
            warn!(
                "accept failed: {error}; pausing accepts for {:?} (raise the fd limit: ulimit -n)",
                ACCEPT_BACKOFF
            );
        }
        self.backing_off = true;
        if let Some(event) = &self.file_event {
            event.set_enabled(FileReadyType::NONE);
        }
        if let Some(timer) = &self.backoff_timer {
            timer.enable(ACCEPT_BACKOFF);
        }
    }

    /// The backoff timer fired: accept again. The next successful accept ends the burst.
    pub fn resume_accepting(&mut self) {
        if let Some(event) = &self.file_event {
            event.set_enabled(FileReadyType::READ);
        }
    }

    /// Marks the end of an EMFILE burst (after a successful accept).
    pub fn accepted_ok(&mut self) {
        self.backing_off = false;
    }

    /// Stops accepting for good (drain): unregisters the socket. Pending connections in the
    /// kernel's backlog are dropped with the socket.
    pub fn stop(&mut self) {
        self.file_event = None;
        self.backoff_timer = None;
        // Close the listen queue now (Linux: shutdown on a listening socket stops it and
        // resets what waits in its backlog), so new connections are refused instead of
        // piling up in a queue nobody accepts from (also for a socket shared by dup with
        // other workers); then drop our fd.
        let _ = nix::sys::socket::shutdown(self.raw_fd(), nix::sys::socket::Shutdown::Read);
        self.socket = None;
    }

    /// Whether the listener still accepts.
    pub fn is_listening(&self) -> bool {
        self.file_event.is_some()
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE
            || code == nix::libc::ENOBUFS || code == nix::libc::ENOMEM
    )
}

/// The stat name of a listener address, Envoy's form: `127.0.0.1_10000`, `[::1]_80`.
pub fn stat_address(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(a) => format!("{}_{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]_{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_stat_address_matches_envoy() {
        assert_eq!(
            stat_address("127.0.0.1:10000".parse().unwrap()),
            "127.0.0.1_10000"
        );
        assert_eq!(stat_address("[::1]:80".parse().unwrap()), "[::1]_80");
    }
}
