//! The network filter traits and the context filters act through (Envoy's
//! `Network::ReadFilter`, `WriteFilter`, `FilterStatus`, and the `ReadFilterCallbacks` /
//! `WriteFilterCallbacks` / `Connection` methods a filter may call).
//!
//! Filters are trait objects (users plug them in through the filter registry in
//! `src/filters/`). They hold no pointer to their connection: every callback receives a
//! [`FilterContext`] naming the connection it runs for and exposing exactly what a filter may
//! do: write to its connection, close it, stop reading, open a client connection whose events
//! come back to it, arm timers, reach the worker's dispatcher, clusters and stats.
//!
//! Called by the worker's `ConnectionHandler` (which takes the filter out of its slot for the
//! call, so the context can hand out `&mut` access to everything else); the context calls back
//! into the handler. Nothing a filter does through the context calls another filter
//! synchronously: events it causes (a peer's watermark, a close) are queued and delivered after
//! it returns, which is why no filter can ever be re-entered.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use reactor::{Dispatcher, Timer};

use super::connection::{CloseType, Connection, ConnectionEvent, ConnectionId};
use super::connection_handler::{ConnectionHandler, ConnectionOwner};
use crate::upstream::cluster_manager::ThreadLocalClusterManager;

/// What a filter tells the filter manager after a callback (Envoy's `Network::FilterStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterStatus {
    /// Pass the data (or the new connection) on to the next filter.
    Continue,
    /// Stop here; the filter resumes iteration later with
    /// [`FilterContext::continue_reading`], or never (a terminal filter).
    StopIteration,
}

/// A filter on the read path of a connection (Envoy's `Network::ReadFilter`).
///
/// Besides the data of its own connection it receives, as the owner of the client connections
/// it opened, their data and events (`on_upstream_*`, Envoy's `UpstreamCallbacks`), and the
/// events of its own connection (`on_event`, Envoy's `ConnectionCallbacks`).
pub trait ReadFilter {
    /// The connection was created (Envoy's `onNewConnection`), before any data.
    fn on_new_connection(&mut self, cx: &mut FilterContext<'_>) -> FilterStatus {
        let _ = cx;
        FilterStatus::Continue
    }

    /// Bytes arrived (Envoy's `onData`). The filter consumes what it handles from `data`
    /// (`split`, `advance`, or by writing it elsewhere); what it leaves stays buffered and is
    /// offered again with the next bytes. `end_stream`: the peer will send nothing more.
    fn on_data(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus;

    /// An event on this filter's own connection: closed, or its write buffer crossed a
    /// watermark (Envoy's `ConnectionCallbacks::onEvent` and `onAbove/BelowWriteBufferHigh/
    /// LowWatermark`).
    fn on_event(&mut self, event: ConnectionEvent, cx: &mut FilterContext<'_>) {
        let _ = (event, cx);
    }

    /// This filter's connection is about to close because the peer did not close within a
    /// `FlushWriteAndDelay` close's delay (Envoy counts it in the connection stats the HCM
    /// sets: `downstream_cx_delayed_close_timeout`). Its close event follows.
    fn on_delayed_close_timeout(&mut self) {}

    /// Bytes arrived on a client connection this filter owns (Envoy's
    /// `UpstreamCallbacks::onUpstreamData`).
    fn on_upstream_data(
        &mut self,
        upstream: ConnectionId,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) {
        let _ = (upstream, end_stream, cx);
        data.clear();
    }

    /// An event on a client connection this filter owns: connected, closed (a close before
    /// `Connected` is a connect failure), watermarks.
    fn on_upstream_event(
        &mut self,
        upstream: ConnectionId,
        event: ConnectionEvent,
        cx: &mut FilterContext<'_>,
    ) {
        let _ = (upstream, event, cx);
    }

    /// A timer created with [`FilterContext::create_timer`] fired.
    fn on_timer(&mut self, token: u64, cx: &mut FilterContext<'_>) {
        let _ = (token, cx);
    }

    /// The server started draining (Envoy's drain-close callback, `DrainDecision::
    /// addOnDrainCloseCb`): a protocol-aware filter asks its peer to go away (the HTTP
    /// connection manager: `connection: close` on the next response, idle connections closed
    /// after `drain_timeout`). Default: nothing; the connection lives until its peer closes it
    /// or `--drain-time-s` runs out.
    fn on_drain_close(&mut self, cx: &mut FilterContext<'_>) {
        let _ = cx;
    }
}

/// A filter on the write path (Envoy's `Network::WriteFilter`): sees every write to its
/// connection made through the filter chain, in order, before it reaches the socket.
pub trait WriteFilter {
    /// Envoy's `onWrite`: may modify `data`; `StopIteration` drops it from this write.
    fn on_write(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus;
}

/// Everything a network filter may do, for the duration of one callback.
///
/// `connection()` is the connection the filter belongs to. Methods taking a [`ConnectionId`]
/// act on another connection (a client connection the filter owns); they do nothing if it is
/// gone.
pub struct FilterContext<'a> {
    pub(crate) handler: &'a mut ConnectionHandler,
    pub(crate) conn: ConnectionId,
    pub(crate) filter_index: usize,
}

impl<'a> FilterContext<'a> {
    /// The id of this filter's connection.
    pub fn connection_id(&self) -> ConnectionId {
        self.conn
    }

    /// This filter's connection (addresses, state, counters). It is always present during a
    /// callback (a closed connection stays until the end of the dispatch).
    pub fn connection(&self) -> Option<&Connection> {
        self.handler.connection(self.conn)
    }

    /// Another connection on this worker, e.g. a client connection the filter owns.
    pub fn connection_of(&self, id: ConnectionId) -> Option<&Connection> {
        self.handler.connection(id)
    }

    /// Writes to this filter's connection through its write filters (Envoy's
    /// `connection().write(data, end_stream)`). Takes the bytes out of `data`.
    pub fn write(&mut self, data: &mut BytesMut, end_stream: bool) {
        self.handler.write(self.conn, data, end_stream, true);
    }

    /// Writes to another connection (a client connection this filter owns), through its write
    /// filters.
    pub fn write_to(&mut self, id: ConnectionId, data: &mut BytesMut, end_stream: bool) {
        self.handler.write(id, data, end_stream, true);
    }

    /// Closes this filter's connection.
    pub fn close(&mut self, close_type: CloseType) {
        self.handler.close(self.conn, close_type);
    }

    /// Closes this filter's connection as `FlushWriteAndDelay` waiting up to `delay` (the
    /// HCM's `delayed_close_timeout`) for the peer to close first.
    pub fn close_with_delay(&mut self, delay: std::time::Duration) {
        self.handler
            .close_after(self.conn, CloseType::FlushWriteAndDelay, delay);
    }

    /// Closes another connection.
    pub fn close_connection(&mut self, id: ConnectionId, close_type: CloseType) {
        self.handler.close(id, close_type);
    }

    /// `readDisable` on this filter's connection (nested; see `Connection::read_disable`).
    pub fn read_disable(&mut self, disable: bool) {
        self.handler.read_disable(self.conn, disable);
    }

    /// `readDisable` on another connection.
    pub fn read_disable_connection(&mut self, id: ConnectionId, disable: bool) {
        self.handler.read_disable(id, disable);
    }

    /// Half-close mode for this filter's connection (Envoy's `enableHalfClose`): with it, the
    /// peer's FIN is delivered as `end_stream` and the connection stays open for writing.
    pub fn enable_half_close(&mut self, enabled: bool) {
        self.handler.enable_half_close(self.conn, enabled);
    }

    /// Half-close mode for another connection (a client connection this filter owns).
    pub fn enable_half_close_connection(&mut self, id: ConnectionId, enabled: bool) {
        self.handler.enable_half_close(id, enabled);
    }

    /// Resumes read-filter iteration after this filter returned `StopIteration` (Envoy's
    /// `continueReading`): the buffered bytes go to the filters after this one. Runs after
    /// the current callback returns.
    pub fn continue_reading(&mut self) {
        self.handler
            .queue_continue_reading(self.conn, self.filter_index + 1);
    }

    /// Opens a client connection to `address` (Envoy's `Dispatcher::createClientConnection`).
    /// Its data and events go to this filter's `on_upstream_data` / `on_upstream_event`; a
    /// failed connect arrives as `RemoteClose` before `Connected`.
    pub fn create_client_connection(
        &mut self,
        address: SocketAddr,
        buffer_limit: u32,
    ) -> io::Result<ConnectionId> {
        let owner = ConnectionOwner::ReadFilter {
            conn: self.conn,
            filter: self.filter_index as u32,
        };
        self.handler
            .create_client_connection(address, buffer_limit, owner)
    }

    /// Hands a client connection to another owner: e.g. a per-worker connection pool lending
    /// an upstream connection to the HTTP connection manager of a downstream connection, and
    /// taking it back when the stream is done.
    pub fn set_owner(&mut self, id: ConnectionId, owner: ConnectionOwner) {
        self.handler.set_owner(id, owner);
    }

    /// Whether the worker's [`IdleConnectionCallbacks`] are registered.
    ///
    /// [`IdleConnectionCallbacks`]: super::connection_handler::IdleConnectionCallbacks
    pub fn has_idle_callbacks(&self) -> bool {
        self.handler.has_idle_callbacks()
    }

    /// Registers the worker's callbacks for the close of idle pooled connections
    /// ([`ConnectionOwner::Idle`]).
    pub fn set_idle_callbacks(
        &mut self,
        callbacks: Rc<dyn super::connection_handler::IdleConnectionCallbacks>,
    ) {
        self.handler.set_idle_callbacks(callbacks);
    }

    /// (Re)arms the worker's idle timer (see `IdleConnectionCallbacks::on_idle_timer`).
    pub fn arm_idle_timer(&mut self, after: std::time::Duration) {
        self.handler.arm_idle_timer(after);
    }

    /// Wakes another read filter of this worker: its `on_timer(token)` runs after the current
    /// callback returns (never synchronously: no filter is re-entered). A per-worker pool uses
    /// it to tell a stream waiting for a connection that one is ready (Envoy calls the waiting
    /// stream's `onPoolReady` directly; here the wake-up is queued like a raised event).
    pub fn wake(&mut self, owner: ConnectionOwner, token: u64) {
        self.handler.queue_wakeup(owner, token);
    }

    /// The owner value that routes events to this very filter.
    pub fn this_filter(&self) -> ConnectionOwner {
        ConnectionOwner::ReadFilter {
            conn: self.conn,
            filter: self.filter_index as u32,
        }
    }

    /// A disarmed timer that calls this filter's `on_timer(token)`. Dropping it disarms it.
    pub fn create_timer(&mut self, token: u64) -> Timer {
        self.handler
            .create_filter_timer(self.conn, self.filter_index, token)
    }

    /// The worker's view of the clusters (host picking, per-worker cluster stats); `None` on
    /// the main thread (admin).
    pub fn cluster_manager(&self) -> Option<Rc<ThreadLocalClusterManager>> {
        self.handler.cluster_manager()
    }

    /// The worker's dispatcher (time, posting).
    pub fn dispatcher(&self) -> &Dispatcher {
        self.handler.dispatcher()
    }

    /// The index of the worker this runs on (selects per-worker stats handles).
    pub fn worker_index(&self) -> usize {
        self.handler.worker_index()
    }

    /// Whether the server is draining (stop keep-alive, close when idle).
    pub fn draining(&self) -> bool {
        self.handler.draining()
    }

    /// Whether a response at `now` should close its connection: the drain manager's
    /// `drainClose()` (`random`: a fresh random number); never unless draining.
    pub fn drain_close(&self, now: std::time::Instant, random: u64) -> bool {
        self.handler.drain_close(now, random)
    }
}
