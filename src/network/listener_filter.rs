//! Listener filters: code that runs on an accepted socket before it becomes a connection
//! (Envoy's `Network::ListenerFilter`, `ListenerFilterCallbacks`, `ListenerFilterBuffer`).
//!
//! Owns the contract between the connection handler and a listener filter. Called by
//! `connection_handler.rs` (`ActiveTcpSocket`, Envoy's `ConnectionHandlerImpl::ActiveTcpSocket`),
//! which runs each listener's filters in order on every accepted socket; the filters call
//! nothing but the [`ListenerFilterContext`] they are handed.
//!
//! The protocol, sans-IO (the filter never touches the socket):
//! 1. [`ListenerFilter::on_accept`] runs once. `Continue` moves on to the next filter;
//!    `StopIteration` parks the socket until the filter has seen enough bytes.
//! 2. While parked, each time new bytes arrive the handler *peeks* (does not consume) up to
//!    [`ListenerFilter::max_read_bytes`] bytes and calls [`ListenerFilter::on_data`] with all
//!    bytes peeked so far. The filter returns `StopIteration` to wait for more, or consumes the
//!    bytes it used with [`ListenerFilterContext::drain`] and returns `Continue`
//!    (Envoy's `continueFilterChain(true)`): iteration resumes at the next filter.
//! 3. To reject the socket (a malformed header), the filter calls
//!    [`ListenerFilterContext::close`] and returns `StopIteration`; the handler closes it.
//!
//! The peer closing before the filters finish, or the listener's `listener_filters_timeout`
//! (default 15 s) expiring, closes the socket; filters need not handle either.

use std::net::SocketAddr;

/// What a listener filter tells the handler (Envoy's `Network::FilterStatus` for listener
/// filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerFilterStatus {
    /// Done with this socket: run the next listener filter (or create the connection).
    Continue,
    /// Wait: call `on_data` again when more bytes have arrived (or the socket is closing, if
    /// the filter called [`ListenerFilterContext::close`]).
    StopIteration,
}

/// A filter run on every socket accepted by a listener, before the filter chain is chosen.
///
/// One instance per accepted socket, created by a [`ListenerFilterFactory`]; it lives on the
/// worker that accepted the socket and is dropped when its socket moves on or closes.
pub trait ListenerFilter {
    /// The socket was just accepted (Envoy's `onAccept`).
    fn on_accept(&mut self, cx: &mut ListenerFilterContext<'_>) -> ListenerFilterStatus;

    /// How many bytes this filter wants to look at (Envoy's `maxReadBytes`). Asked again after
    /// every `on_data`, so a filter may raise it once a header announces its own length.
    fn max_read_bytes(&self) -> usize {
        0
    }

    /// Bytes are available (Envoy's `onData(ListenerFilterBuffer&)`): `peeked` is every byte
    /// received so far and not yet drained, at most `max_read_bytes` of them.
    fn on_data(
        &mut self,
        peeked: &[u8],
        cx: &mut ListenerFilterContext<'_>,
    ) -> ListenerFilterStatus {
        let _ = (peeked, cx);
        ListenerFilterStatus::Continue
    }
}

/// Creates the listener filter for each accepted socket (Envoy's `ListenerFilterFactoryCb`).
/// Built once from the config on the main thread and shared by every worker.
pub trait ListenerFilterFactory: Send + Sync {
    /// A fresh filter for one accepted socket.
    fn create_filter(&self) -> Box<dyn ListenerFilter>;
}

/// What a listener filter may do to the accepted socket (Envoy's `ListenerFilterCallbacks`
/// plus `ListenerFilterBuffer::drain`).
#[derive(Debug)]
pub struct ListenerFilterContext<'a> {
    addresses: &'a mut SocketAddresses,
    drain: usize,
    close: bool,
}

/// The addresses an accepted socket reports; listener filters may rewrite them (the PROXY
/// protocol's source and destination become the connection's remote and local addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketAddresses {
    /// The peer (Envoy's `connectionInfoProvider().remoteAddress()`).
    pub remote: SocketAddr,
    /// Our end (Envoy's `localAddress()`), the address the client connected to.
    pub local: SocketAddr,
    /// Whether `local` was set by a filter (Envoy's `localAddressRestored()`).
    pub local_restored: bool,
}

impl<'a> ListenerFilterContext<'a> {
    /// A context over `addresses` (used by the connection handler, and by filters' unit tests).
    pub fn new(addresses: &'a mut SocketAddresses) -> Self {
        ListenerFilterContext {
            addresses,
            drain: 0,
            close: false,
        }
    }

    /// The peer's address (as rewritten by earlier filters, if any).
    pub fn remote_address(&self) -> SocketAddr {
        self.addresses.remote
    }

    /// The local address (as rewritten by earlier filters, if any).
    pub fn local_address(&self) -> SocketAddr {
        self.addresses.local
    }

    /// Replaces the remote address (Envoy's `setRemoteAddress`).
    pub fn set_remote_address(&mut self, address: SocketAddr) {
        self.addresses.remote = address;
    }

    /// Replaces the local address (Envoy's `restoreLocalAddress`): filter chain matching on
    /// `destination_port`/`prefix_ranges` then uses it.
    pub fn set_local_address(&mut self, address: SocketAddr) {
        self.addresses.local = address;
        self.addresses.local_restored = true;
    }

    /// Consumes the first `len` bytes of the peeked data, so the connection's filters never see
    /// them (Envoy's `ListenerFilterBuffer::drain`). Cumulative within one `on_data` call.
    pub fn drain(&mut self, len: usize) {
        self.drain += len;
    }

    /// Rejects the socket: the handler closes it after the filter returns.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// Bytes the filter asked to drain during this call (read by the handler).
    pub fn drained(&self) -> usize {
        self.drain
    }

    /// Whether the filter asked to close the socket (read by the handler).
    pub fn close_requested(&self) -> bool {
        self.close
    }
}
