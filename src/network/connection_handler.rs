//! The per-worker connection handler: the worker's listeners, the sockets still in their
//! listener filters, and the slab of connections; and the one place every reactor callback of
//! the worker enters (Envoy's `ConnectionHandlerImpl`, `ActiveTcpListener`, `ActiveTcpSocket`,
//! and the `onFileEvent` entry of `ConnectionImpl`).
//!
//! # The connection model
//!
//! - Every connection of the worker, downstream (accepted) or upstream (client), lives in one
//!   `Slab<ActiveConnection>` and is named by a [`ConnectionId`] (slot + global id: a stale
//!   handle finds nothing, never another connection).
//! - The worker's state is one `Rc<RefCell<ConnectionHandler>>`. Reactor callbacks are thin:
//!   a connection's socket and timers carry a token routed by the worker's one shared handler
//!   (worker_events.rs) to `enter(&weak, |h| h.on_connection_event(id, ready))`. The
//!   `RefCell` is borrowed exactly once, at that boundary; the reactor never runs a callback
//!   from inside another, so the borrow cannot be taken twice.
//! - Filters are called with a [`FilterContext`] holding `&mut ConnectionHandler`; the filter
//!   itself is lent out of its slot for the call. Whatever a filter does that concerns another
//!   party (a write crossing the peer's high watermark, a close, `continue_reading`) is queued
//!   ([`ConnectionHandler::events`]) and delivered after it returns, from the top of the
//!   dispatch. No filter is ever re-entered, and none waits on another.
//! - Each connection has an [`ConnectionOwner`]: a downstream connection's data and events go
//!   to its own read filters; a client connection's go to the read filter that opened it (or
//!   to whichever filter it was handed to with `set_owner`). A client connection a per-worker
//!   pool keeps idle is owned by the pool ([`ConnectionOwner::Idle`]): its close goes to the
//!   worker's [`IdleConnectionCallbacks`], so a connection the peer closed while idle leaves
//!   the pool (and its circuit-breaker slot) at once, not when next popped.
//! - A closed connection stays in the slab until the end of the dispatch in which it closed
//!   (after its close event was delivered), then is reaped: its filters are dropped (their
//!   timers with them) and client connections it still owns are closed. This is our
//!   `deferredDelete`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use log::{error, warn};
use mio::net::TcpStream;
use reactor::{Dispatcher, FileEvent, FileReadyType, FileTriggerType, HandlerId, Timer};
use slab::Slab;

use super::connection::{
    CloseType, Connection, ConnectionEvent, ConnectionId, PendingWrite, State,
    DELAYED_CLOSE_TIMEOUT, READ_CHUNK,
};
use super::filter::FilterContext;
use super::filter_chain::ConnectionMatchInfo;
use super::filter_manager::FilterManager;
use super::listener::{Accepted, ListenerConfig, ListenerImpl, ACCEPT_BATCH};
use super::listener_filter::{
    ListenerFilter, ListenerFilterContext, ListenerFilterStatus, SocketAddresses,
};
use super::worker_events::{guard_matches, EventTarget, WorkerEvents};
use crate::server::drain_manager::{DrainManager, DrainSchedule};
use crate::stats::{Counter, Gauge, ImportMode, Store};
use crate::upstream::cluster_manager::ThreadLocalClusterManager;

/// The worker read buffer's size: a full read ([`READ_CHUNK`]) plus room for the starts of many
/// small messages, so that it starts over (an O(bytes kept) move) only every few dozen
/// requests rather than on every read.
const READ_SCRATCH_CAPACITY: usize = READ_CHUNK + 16 * 1024;

/// Where a connection's data and events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionOwner {
    /// A downstream connection: through its own read filters (`on_data`, `on_event`).
    FilterChain,
    /// A client connection: to read filter `filter` of connection `conn`
    /// (`on_upstream_data`, `on_upstream_event`). A `u32` index keeps the owner in 24 bytes.
    ReadFilter { conn: ConnectionId, filter: u32 },
    /// A client connection kept idle by a per-worker connection pool (Envoy's idle
    /// `ActiveClient`, which stays its connection's callbacks): its close goes to the worker's
    /// [`IdleConnectionCallbacks`]; bytes arriving while idle close it (nothing can answer
    /// them).
    Idle,
}

/// What a per-worker connection pool learns about the idle connections it keeps
/// ([`ConnectionOwner::Idle`]). Called from the top of a dispatch (never from inside a filter
/// callback).
pub trait IdleConnectionCallbacks {
    /// The idle connection `id` closed: by its peer (`remote`: FIN or RST) or by us (stray
    /// bytes). Returns a read filter to wake (`on_timer(token)`), e.g. a stream waiting for the
    /// connection slot this one freed.
    fn on_idle_close(&self, id: ConnectionId, remote: bool) -> Option<(ConnectionOwner, u64)>;

    /// The worker's idle timer fired (armed with [`ConnectionHandler::arm_idle_timer`]):
    /// returns the idle connections whose idle timeout expired (the handler closes them; they
    /// were taken out of the pool already) and when to fire again, if ever.
    fn on_idle_timer(
        &self,
        now: std::time::Instant,
    ) -> (Vec<ConnectionId>, Option<std::time::Duration>);
}

/// One connection in the worker's slab.
pub(crate) struct ActiveConnection {
    pub(crate) connection: Connection,
    pub(crate) filter_manager: FilterManager,
    pub(crate) owner: ConnectionOwner,
    /// The listener that accepted it (index into `listeners`), for its stats.
    listener: Option<u32>,
    /// Client connections its filters opened (closed when it is reaped, if still owned).
    owned: OwnedConnections,
}

/// The client connections a connection's filters own: almost always none or one (HTTP/1's
/// current upstream, tcp_proxy's), so one is kept inline and only a second one allocates
/// (a `Vec` would keep its capacity on every idle keep-alive connection).
#[derive(Debug, Default)]
enum OwnedConnections {
    #[default]
    None,
    One(ConnectionId),
    Many(Vec<ConnectionId>),
}

impl OwnedConnections {
    /// Adds `id`. A per-worker pool lends its connection to a stream's owner for each
    /// request: the owner then holds none, and the push is a store.
    #[inline]
    fn push(&mut self, id: ConnectionId) {
        match self {
            OwnedConnections::None => *self = OwnedConnections::One(id),
            _ => self.push_more(id),
        }
    }

    /// A second owned connection (tcp_proxy's next try while the first closes, an HTTP
    /// stream's retry while the failed attempt's connection is still owned).
    #[cold]
    fn push_more(&mut self, id: ConnectionId) {
        match self {
            OwnedConnections::None => *self = OwnedConnections::One(id),
            OwnedConnections::One(first) => *self = OwnedConnections::Many(vec![*first, id]),
            OwnedConnections::Many(ids) => ids.push(id),
        }
    }

    /// Removes `id` (nothing if it is not owned). The request path's case, the one owned
    /// connection given back to its pool, is a compare and a store.
    #[inline]
    fn remove(&mut self, id: ConnectionId) {
        match self {
            OwnedConnections::One(owned) if *owned == id => *self = OwnedConnections::None,
            OwnedConnections::Many(_) => self.remove_from_many(id),
            _ => {}
        }
    }

    #[cold]
    fn remove_from_many(&mut self, id: ConnectionId) {
        if let OwnedConnections::Many(ids) = self {
            ids.retain(|c| *c != id);
            match ids[..] {
                [] => *self = OwnedConnections::None,
                [one] => *self = OwnedConnections::One(one),
                _ => {}
            }
        }
    }

    fn as_slice(&self) -> &[ConnectionId] {
        match self {
            OwnedConnections::None => &[],
            OwnedConnections::One(id) => std::slice::from_ref(id),
            OwnedConnections::Many(ids) => ids,
        }
    }
}

/// A listener's per-worker stats (Envoy's `ListenerStats` and per-worker `worker_<n>.` ones).
struct ListenerStats {
    downstream_cx_total: Counter,
    downstream_cx_destroy: Counter,
    downstream_cx_active: Gauge,
    no_filter_chain_match: Counter,
    downstream_pre_cx_timeout: Counter,
    worker_cx_total: Counter,
    worker_cx_active: Gauge,
}

impl ListenerStats {
    fn new(scope: &Store, worker: &str) -> ListenerStats {
        ListenerStats {
            downstream_cx_total: scope.counter("downstream_cx_total"),
            downstream_cx_destroy: scope.counter("downstream_cx_destroy"),
            downstream_cx_active: scope.gauge("downstream_cx_active", ImportMode::Accumulate),
            no_filter_chain_match: scope.counter("no_filter_chain_match"),
            downstream_pre_cx_timeout: scope.counter("downstream_pre_cx_timeout"),
            worker_cx_total: scope.counter(&format!("{worker}.downstream_cx_total")),
            worker_cx_active: scope.gauge(
                &format!("{worker}.downstream_cx_active"),
                ImportMode::Accumulate,
            ),
        }
    }
}

/// One listener on this worker (Envoy's `ActiveTcpListener`).
pub(crate) struct ActiveTcpListener {
    config: Arc<ListenerConfig>,
    listener: ListenerImpl,
    stats: ListenerStats,
}

/// An accepted socket running its listener filters (Envoy's `ActiveTcpSocket`).
struct ActiveTcpSocket {
    listener: usize,
    stream: TcpStream,
    addresses: SocketAddresses,
    filters: Vec<Box<dyn ListenerFilter>>,
    /// The filter iteration is at; `on_accept` has run for it when `accepted`.
    index: usize,
    accepted: bool,
    file_event: Option<FileEvent>,
    _timeout: Option<Timer>,
}

/// The worker's L4 state: listeners, sockets in listener filters, connections, and the queue
/// of events waiting to be delivered.
#[doc(alias = "ConnectionHandlerImpl")]
pub struct ConnectionHandler {
    dispatcher: Dispatcher,
    this: Weak<RefCell<ConnectionHandler>>,
    /// The dispatcher's handler for this worker's connection events (worker_events.rs).
    events_handler: HandlerId,
    worker_index: usize,
    worker_name: String,
    stats: Store,
    listeners: Vec<ActiveTcpListener>,
    sockets: Slab<ActiveTcpSocket>,
    pub(crate) connections: Slab<ActiveConnection>,
    /// Connection events raised during this dispatch, delivered in order after the callback
    /// that raised them returns.
    pub(crate) events: VecDeque<(ConnectionId, ConnectionEvent)>,
    /// `continue_reading` requests: (connection, first filter to run).
    continue_reading: VecDeque<(ConnectionId, usize)>,
    /// Wake-ups of read filters by another filter (a connection pool waking a stream waiting
    /// for a connection): (connection, filter, token), delivered as `on_timer(token)`.
    wakeups: VecDeque<(ConnectionId, usize, u64)>,
    /// Connections closed during this dispatch, reaped at its end.
    closed: Vec<ConnectionId>,
    /// The delayed-close timers of connections closing with `FlushWriteAndDelay` (Envoy's
    /// `delayed_close_timer_`), kept here rather than in each connection: few connections
    /// ever have one. Dropped when the connection is reaped.
    delayed_close_timers: Vec<(ConnectionId, Timer)>,
    /// Connections written to during this dispatch, with the bytes they were given (their
    /// [`PendingWrite`]s), flushed at its end (see `write`).
    flush: Vec<PendingWrite>,
    /// The per-worker read buffer every read goes through (so idle connections own none).
    /// Reads land in its spare capacity; what the filters consume moves its start forward,
    /// and it starts over at the beginning of its allocation once less than a read's worth
    /// is left ([`READ_SCRATCH_CAPACITY`]).
    /// `None` only while lent out to a read (taking an `Option` costs less than a `BytesMut`).
    scratch: Option<BytesMut>,
    /// The worker's clusters (set by the worker at start; `None` on the main thread).
    cluster_manager: Option<Rc<ThreadLocalClusterManager>>,
    /// Where the close of an idle pooled connection goes (set by the pool on first use).
    idle_callbacks: Option<Rc<dyn IdleConnectionCallbacks>>,
    /// The pools' idle timeout timer (created on first use).
    idle_timer: Option<Timer>,
    /// The drain (SIGTERM, `/drain_listeners?graceful`); `None` until it starts.
    drain: Option<DrainManager>,
    /// The drain notices (`on_drain_close`) still to deliver under `gradual`, and their timer.
    drain_notices: Option<(DrainSchedule<ConnectionId>, Timer)>,
    /// Called once when draining and the last connection is gone.
    on_drained: Option<Box<dyn FnOnce()>>,
}

/// Runs `f` on the handler behind `weak`, then delivers queued events and reaps closed
/// connections: the boundary every reactor callback of the worker goes through.
pub(crate) fn enter(
    weak: &Weak<RefCell<ConnectionHandler>>,
    f: impl FnOnce(&mut ConnectionHandler),
) {
    let Some(rc) = weak.upgrade() else {
        return;
    };
    let Ok(mut handler) = rc.try_borrow_mut() else {
        // The reactor runs callbacks one at a time from its loop, never from inside a call
        // into it, so this cannot happen; losing an event beats a panic if it ever does.
        error!("reactor callback re-entered the connection handler; event dropped");
        debug_assert!(false, "re-entrant reactor callback");
        return;
    };
    f(&mut handler);
    handler.finish_dispatch();
}

impl ConnectionHandler {
    /// A handler for the worker running `dispatcher`. `stats` is the worker's store.
    pub fn new(
        dispatcher: Dispatcher,
        worker_index: usize,
        worker_name: &str,
        stats: Store,
    ) -> Rc<RefCell<ConnectionHandler>> {
        Rc::new_cyclic(|this| {
            let events = dispatcher.add_handler(Rc::new(WorkerEvents {
                handler: this.clone(),
            }));
            RefCell::new(ConnectionHandler {
                dispatcher,
                this: this.clone(),
                events_handler: events,
                worker_index,
                worker_name: worker_name.to_string(),
                stats,
                listeners: Vec::new(),
                sockets: Slab::new(),
                connections: Slab::new(),
                events: VecDeque::new(),
                continue_reading: VecDeque::new(),
                wakeups: VecDeque::new(),
                closed: Vec::new(),
                delayed_close_timers: Vec::new(),
                flush: Vec::new(),
                scratch: Some(BytesMut::with_capacity(READ_SCRATCH_CAPACITY)),
                cluster_manager: None,
                idle_callbacks: None,
                idle_timer: None,
                drain: None,
                drain_notices: None,
                on_drained: None,
            })
        })
    }

    /// Runs `f` on the handler as a reactor callback would (queued events delivered and closed
    /// connections reaped after it): for closures posted to the worker.
    pub fn run_on(
        handler: &Rc<RefCell<ConnectionHandler>>,
        f: impl FnOnce(&mut ConnectionHandler),
    ) {
        enter(&Rc::downgrade(handler), f);
    }

    /// Gives the worker its thread-local cluster manager.
    pub fn set_cluster_manager(&mut self, cluster_manager: Rc<ThreadLocalClusterManager>) {
        self.cluster_manager = Some(cluster_manager);
    }

    pub fn cluster_manager(&self) -> Option<Rc<ThreadLocalClusterManager>> {
        self.cluster_manager.clone()
    }

    /// Whether a pool registered the worker's [`IdleConnectionCallbacks`].
    pub fn has_idle_callbacks(&self) -> bool {
        self.idle_callbacks.is_some()
    }

    /// Registers where the close of [`ConnectionOwner::Idle`] connections goes.
    pub fn set_idle_callbacks(&mut self, callbacks: Rc<dyn IdleConnectionCallbacks>) {
        self.idle_callbacks = Some(callbacks);
    }

    /// (Re)arms the worker's idle timer: [`IdleConnectionCallbacks::on_idle_timer`] runs
    /// `after` from now.
    pub fn arm_idle_timer(&mut self, after: std::time::Duration) {
        let weak = self.this.clone();
        let dispatcher = &self.dispatcher;
        self.idle_timer
            .get_or_insert_with(|| {
                dispatcher.create_timer(move || enter(&weak, |h| h.on_idle_timer()))
            })
            .enable(after);
    }

    fn on_idle_timer(&mut self) {
        let Some(callbacks) = self.idle_callbacks.clone() else {
            return;
        };
        let (expired, next) = callbacks.on_idle_timer(self.dispatcher.now());
        for id in expired {
            debug!("[{id}] idle pooled connection timed out: closing");
            self.close(id, CloseType::NoFlush);
        }
        if let Some(after) = next {
            self.arm_idle_timer(after);
        }
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }
    pub fn worker_index(&self) -> usize {
        self.worker_index
    }
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Whether a response at `now` should close its connection (the drain manager's
    /// `drainClose()`, `random` a fresh random number): never unless draining.
    pub fn drain_close(&self, now: std::time::Instant, random: u64) -> bool {
        self.drain.is_some_and(|d| d.drain_close(now, random))
    }
    /// Connections alive on this worker (downstream and upstream).
    pub fn num_connections(&self) -> usize {
        self.connections.len()
    }

    /// The connection `id`, if it still exists.
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.connections
            .get(id.slot)
            .map(|a| &a.connection)
            .filter(|c| c.id() == id)
    }

    fn active_mut(&mut self, id: ConnectionId) -> Option<&mut ActiveConnection> {
        find(&mut self.connections, id)
    }

    // === Listeners (Envoy's ConnectionHandlerImpl::addListener) ===

    /// Starts accepting on `socket` for `config`; stats go under `stat_prefix`
    /// (`listener.127.0.0.1_10000`). Returns the bound address.
    pub fn add_listener(
        &mut self,
        config: Arc<ListenerConfig>,
        socket: std::net::TcpListener,
        stat_prefix: &str,
    ) -> io::Result<SocketAddr> {
        let index = self.listeners.len();
        let mut listener = ListenerImpl::new(socket)?;
        let weak = self.this.clone();
        let file_event = self.dispatcher.create_file_event(
            listener.raw_fd(),
            FileTriggerType::Level,
            FileReadyType::READ,
            move |_| enter(&weak, |h| h.on_listener_ready(index)),
        )?;
        let weak = self.this.clone();
        let backoff = self
            .dispatcher
            .create_timer(move || enter(&weak, |h| h.listeners[index].listener.resume_accepting()));
        listener.set_events(file_event, backoff);
        let address = listener.local_address()?;
        let worker = self.worker_name.clone();
        let scope = self.stats.scope(stat_prefix);
        self.listeners.push(ActiveTcpListener {
            config,
            listener,
            stats: ListenerStats::new(&scope, &worker),
        });
        Ok(address)
    }

    /// Stops accepting on every listener (drain, shutdown). Existing connections continue.
    pub fn stop_listeners(&mut self) {
        for l in &mut self.listeners {
            l.listener.stop();
        }
        // Sockets still in their listener filters are not connections yet: drop them.
        self.sockets.clear();
    }

    /// Enters drain mode under `drain` (its strategy and drain time): every downstream
    /// connection open now hears `on_drain_close` (so HTTP connections close once idle), all
    /// at once or spread over the first quarter of the drain time (`gradual`: the
    /// [`DrainSchedule`]); responses consult [`drain_close`](Self::drain_close). `on_drained`
    /// runs once no connection is left (maybe right away).
    pub fn start_draining(&mut self, mut drain: DrainManager, on_drained: Box<dyn FnOnce()>) {
        let now = self.dispatcher.now();
        drain.start(now);
        self.drain = Some(drain);
        self.on_drained = Some(on_drained);
        let downstream: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, a)| a.listener.is_some() && a.owner == ConnectionOwner::FilterChain)
            .map(|(_, a)| a.connection.id())
            .collect();
        let mut schedule = DrainSchedule::new(&drain, now, downstream);
        for id in schedule.due(now) {
            self.deliver_drain_notice(id);
        }
        if let Some(after) = schedule.next_after(now) {
            let weak = self.this.clone();
            let timer = self
                .dispatcher
                .create_timer(move || enter(&weak, |h| h.on_drain_notice_timer()));
            timer.enable(after);
            self.drain_notices = Some((schedule, timer));
        }
        self.check_drained();
    }

    /// The next drain notices are due (`gradual`).
    fn on_drain_notice_timer(&mut self) {
        let now = self.dispatcher.now();
        let Some((schedule, _)) = self.drain_notices.as_mut() else {
            return;
        };
        let due = schedule.due(now);
        let next = schedule.next_after(now);
        for id in due {
            self.deliver_drain_notice(id);
        }
        if let (Some(after), Some((_, timer))) = (next, &self.drain_notices) {
            timer.enable(after);
        }
    }

    /// Connection `id`'s read filters hear `on_drain_close` (nothing if it is gone).
    fn deliver_drain_notice(&mut self, id: ConnectionId) {
        self.for_each_read_filter(id, |f, cx| f.on_drain_close(cx));
    }

    /// Lends each read filter of connection `id` in turn to `call`, with its context (none if
    /// the connection is gone; a filter lent out already is skipped).
    fn for_each_read_filter(
        &mut self,
        id: ConnectionId,
        mut call: impl FnMut(&mut dyn super::filter::ReadFilter, &mut FilterContext<'_>),
    ) {
        let count = self
            .active_mut(id)
            .map_or(0, |a| a.filter_manager.read_filters.len());
        for index in 0..count {
            let Some(mut f) = self.lend_read_filter(id, index) else {
                continue;
            };
            let mut cx = FilterContext {
                handler: self,
                conn: id,
                filter_index: index,
            };
            call(&mut *f, &mut cx);
            self.put_back_read_filter(id, index, f);
        }
    }

    /// Drained once no downstream connection is left: what remains are idle pooled upstream
    /// connections (a busy one belongs to a downstream's filter), closed with the worker.
    /// Walks the connections: called only while draining.
    #[cold]
    fn check_drained(&mut self) {
        if self.drain.is_some()
            && self.on_drained.is_some()
            && !self.connections.iter().any(|(_, a)| a.listener.is_some())
        {
            if let Some(cb) = self.on_drained.take() {
                cb();
            }
        }
    }

    /// The listener's socket is readable: accept a batch (Envoy's `onSocketEvent`).
    fn on_listener_ready(&mut self, index: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some(active) = self.listeners.get_mut(index) else {
                return;
            };
            if !active.listener.is_listening() {
                return;
            }
            match active.listener.accept_one() {
                Accepted::Done => return,
                Accepted::Socket(stream, remote) => {
                    active.listener.accepted_ok();
                    self.on_accept(index, stream, remote);
                }
            }
        }
        // Batch cap reached: the level-triggered event fires again next iteration.
    }

    /// Envoy's `ActiveTcpListener::onAccept`: run the listener filters, or go straight to
    /// `new_connection` when there are none.
    fn on_accept(&mut self, index: usize, stream: TcpStream, remote: SocketAddr) {
        let config = self.listeners[index].config.clone();
        let local = stream.local_addr().unwrap_or(config.address);
        let addresses = SocketAddresses {
            remote,
            local,
            local_restored: false,
        };
        if config.listener_filters.is_empty() {
            self.new_connection(index, stream, addresses);
            return;
        }
        let filters = config
            .listener_filters
            .iter()
            .map(|f| f.create_filter())
            .collect();
        let entry = self.sockets.vacant_entry();
        let slot = entry.key();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let weak = self.this.clone();
        let file_event = match self.dispatcher.create_file_event(
            fd,
            FileTriggerType::Edge,
            FileReadyType::READ,
            move |_| enter(&weak, |h| h.continue_filter_chain(slot)),
        ) {
            Ok(e) => e,
            Err(e) => {
                warn!("cannot register accepted socket: {e}");
                return;
            }
        };
        let timeout = (!config.listener_filters_timeout.is_zero()).then(|| {
            let weak = self.this.clone();
            let timer = self
                .dispatcher
                .create_timer(move || enter(&weak, |h| h.on_listener_filters_timeout(slot)));
            timer.enable(config.listener_filters_timeout);
            timer
        });
        entry.insert(ActiveTcpSocket {
            listener: index,
            stream,
            addresses,
            filters,
            index: 0,
            accepted: false,
            file_event: Some(file_event),
            _timeout: timeout,
        });
        self.continue_filter_chain(slot);
    }

    /// Envoy's `ActiveTcpSocket::continueFilterChain`: runs the listener filters from where
    /// iteration stopped; peeks bytes for a filter that asked for them.
    fn continue_filter_chain(&mut self, slot: usize) {
        loop {
            let Some(socket) = self.sockets.get_mut(slot) else {
                return;
            };
            if socket.index == socket.filters.len() {
                let socket = self.sockets.remove(slot);
                drop(socket.file_event);
                self.new_connection(socket.listener, socket.stream, socket.addresses);
                return;
            }
            let filter = &mut socket.filters[socket.index];
            let mut cx = ListenerFilterContext::new(&mut socket.addresses);
            // How many bytes `on_data` saw in this pass (None: `on_accept` ran instead).
            let mut seen = None;
            let status = if !socket.accepted {
                socket.accepted = true;
                trace!("listener filter {}: onAccept", socket.index);
                filter.on_accept(&mut cx)
            } else {
                match peek_for(filter.as_mut(), &socket.stream) {
                    Peek::WouldBlock => return,
                    Peek::Closed => {
                        debug!("listener filter: peer closed before the filters finished");
                        self.sockets.remove(slot);
                        return;
                    }
                    Peek::Data(bytes, full) => {
                        let status = filter.on_data(&bytes, &mut cx);
                        seen = Some(bytes.len());
                        // A filter may raise max_read_bytes once it knows its header's
                        // length (proxy_protocol v2 with TLVs): only a filter still wanting
                        // more than it may read is stuck.
                        if status == ListenerFilterStatus::StopIteration
                            && full
                            && filter.max_read_bytes() <= bytes.len()
                            && !cx.close_requested()
                        {
                            debug!("listener filter wants more than it may read: closing");
                            self.sockets.remove(slot);
                            return;
                        }
                        status
                    }
                }
            };
            let (close, drain) = (cx.close_requested(), cx.drained());
            if close {
                debug!("listener filter {} rejected the socket", socket.index);
                self.sockets.remove(slot);
                return;
            }
            if drain > 0 && consume(&socket.stream, drain).is_err() {
                self.sockets.remove(slot);
                return;
            }
            match status {
                ListenerFilterStatus::Continue => {
                    socket.index += 1;
                    socket.accepted = false;
                }
                ListenerFilterStatus::StopIteration => {
                    if socket.filters[socket.index].max_read_bytes() == 0 {
                        // Nothing to peek for: only the timeout can move this socket on.
                        return;
                    }
                    // Bytes may already be waiting (no new edge would come): peek now, and
                    // run the filter again only if there is more than it has just seen (else
                    // wait for the next READ edge: re-running on the same bytes would spin).
                    if socket.accepted {
                        match peek_for(socket.filters[socket.index].as_mut(), &socket.stream) {
                            Peek::WouldBlock => return,
                            Peek::Data(bytes, _) if seen.is_some_and(|s| bytes.len() <= s) => {
                                return
                            }
                            _ => continue,
                        }
                    }
                }
            }
        }
    }

    fn on_listener_filters_timeout(&mut self, slot: usize) {
        let Some(socket) = self.sockets.try_remove(slot) else {
            return;
        };
        let listener = &self.listeners[socket.listener];
        listener.stats.downstream_pre_cx_timeout.inc();
        if listener.config.continue_on_listener_filters_timeout {
            self.new_connection(socket.listener, socket.stream, socket.addresses);
        } else {
            debug!("listener filters timed out: closing socket");
        }
    }

    /// Envoy's `ActiveTcpListener::newConnection`: picks the filter chain, creates the
    /// connection, builds its filters and runs `on_new_connection`.
    fn new_connection(&mut self, index: usize, stream: TcpStream, addresses: SocketAddresses) {
        let listener = &self.listeners[index];
        let config = listener.config.clone();
        let info = ConnectionMatchInfo::tcp(addresses.local, addresses.remote);
        let Some(chain) = config.filter_chains.find_filter_chain(&info) else {
            listener.stats.no_filter_chain_match.inc();
            debug!(
                "closing connection from {}: no matching filter chain found",
                addresses.remote
            );
            return;
        };
        listener.stats.downstream_cx_total.inc();
        listener.stats.downstream_cx_active.inc();
        listener.stats.worker_cx_total.inc();
        listener.stats.worker_cx_active.inc();

        let entry = self.connections.vacant_entry();
        let id = ConnectionId::allocate(entry.key());
        let connection = Connection::new_server(
            id,
            stream,
            addresses.remote,
            addresses.local,
            config.per_connection_buffer_limit_bytes,
        );
        let mut filter_manager = FilterManager::default();
        for factory in &chain.filter_factories {
            factory(&mut filter_manager, self.worker_index);
        }
        entry.insert(ActiveConnection {
            connection,
            filter_manager,
            owner: ConnectionOwner::FilterChain,
            listener: Some(index as u32),
            owned: OwnedConnections::None,
        });
        debug!(
            "[{id}] ActiveTcpListener::newConnection: from {} on {} ({}, filter chain '{}')",
            addresses.remote, addresses.local, self.worker_name, chain.name
        );
        if let Err(e) = self.register(id) {
            warn!("[{id}] cannot register connection: {e}");
            self.close(id, CloseType::NoFlush);
            return;
        }
        if self.connections[id.slot].filter_manager.is_empty() {
            debug!("[{id}] closing connection: no filters");
            self.close(id, CloseType::NoFlush);
            return;
        }
        // Envoy's initializeReadFilters: on_new_connection for each filter, in order.
        let mut empty = BytesMut::new();
        self.on_continue_reading(id, 0, &mut empty, false);
    }

    /// Registers connection `id`'s socket with the dispatcher, edge-triggered for read, write
    /// and peer close; the callback routes readiness back here by id.
    fn register(&mut self, id: ConnectionId) -> io::Result<()> {
        let weak = self.this.clone();
        let Some(active) = self.active_mut(id) else {
            return Ok(());
        };
        let Some(fd) = active.connection.raw_fd() else {
            return Ok(());
        };
        let interest = FileReadyType::READ | FileReadyType::WRITE | FileReadyType::CLOSED;
        let file_event = match EventTarget::connection(id).token() {
            Some(token) => self.dispatcher.create_file_event_for(
                fd,
                FileTriggerType::Edge,
                interest,
                self.events_handler,
                token,
            )?,
            None => self.dispatcher.create_file_event(
                fd,
                FileTriggerType::Edge,
                interest,
                move |ready| enter(&weak, |h| h.on_connection_event(id, ready)),
            )?,
        };
        if let Some(active) = self.active_mut(id) {
            active.connection.set_file_event(file_event, interest);
        }
        Ok(())
    }

    // === Connection events (Envoy's ConnectionImpl::onFileEvent) ===
    //
    // On the request path an event is "readable: read, hand the bytes to the owner" (the
    // write the owner makes is flushed at the end of the dispatch, see `finish_dispatch`).
    // Everything else a socket can report (a connect finishing, a write-ready edge after a
    // stalled flush, the peer's FIN, an error, bytes left over for later) happens once per
    // connection or under a limit, and lives in the out-of-line functions below the hot
    // ones, so the request path's code stays a few cache lines long.

    /// Readiness on a connection's socket: finish a connect, then write, then read, as Envoy
    /// orders them.
    fn on_connection_event(&mut self, id: ConnectionId, ready: FileReadyType) {
        trace!("[{id}] onFileEvent: {ready}");
        let Some(active) = find(&mut self.connections, id) else {
            return;
        };
        let connection = &mut active.connection;
        connection.on_readiness(ready);
        if connection.state() == State::Connecting {
            // Once per client connection.
            self.on_connect_ready(id, ready);
            return;
        }
        if connection.write_pending() {
            // Only after a flush stalled (the kernel's send buffer was full), or with our FIN
            // or a flushing close still to finish: a write is otherwise flushed in the
            // dispatch that made it.
            std::hint::cold_path();
            flush(connection, &mut self.events);
        }
        if ready.intersects(FileReadyType::READ | FileReadyType::CLOSED)
            || connection.dispatch_buffered_data
        {
            self.on_read_ready(id);
        }
    }

    /// The first readiness of a connecting client socket: the handshake finished (`Connected`
    /// is raised; the I/O waits for the next iteration) or failed (`RemoteClose`).
    #[cold]
    fn on_connect_ready(&mut self, id: ConnectionId, ready: FileReadyType) {
        let Some(active) = find(&mut self.connections, id) else {
            return;
        };
        let connection = &mut active.connection;
        match connection.finish_connect() {
            Ok(()) => {
                // The owner must hear `Connected` before any byte: deliver it (end of this
                // dispatch) and come back for the I/O on the next iteration.
                self.events.push_back((id, ConnectionEvent::Connected));
                // Flush what was written while connecting; read only what the kernel
                // already reported (a server-first greeting, a hang-up): bytes arriving
                // later raise a new edge, and a read now would mostly fail with WouldBlock.
                let read = ready & (FileReadyType::READ | FileReadyType::CLOSED);
                connection.activate(FileReadyType::WRITE | read);
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    && !ready.contains(FileReadyType::CLOSED) => {}
            Err(e) => {
                debug!(
                    "[{id}] connect to {} failed: {e}",
                    connection.remote_address()
                );
                connection.close_socket(ConnectionEvent::RemoteClose, &mut self.events);
            }
        }
    }

    /// Envoy's `onReadReady` → `onRead` → `FilterManagerImpl::onRead`: reads into the worker's
    /// scratch buffer (plus what the filters left last time), hands the bytes to the owner,
    /// keeps what is left, and applies the peer's FIN.
    fn on_read_ready(&mut self, id: ConnectionId) {
        let mut buf = self.scratch.take().unwrap_or_default();
        let Some(active) = find(&mut self.connections, id) else {
            self.scratch = Some(buf);
            return;
        };
        let connection = &mut active.connection;
        if connection.state() != State::Open || !connection.read_enabled() {
            self.scratch = Some(buf);
            return;
        }
        if let Some(kept) = connection.read_buffer.take() {
            // Bytes the filters left last time (see `keep_unconsumed`).
            std::hint::cold_path();
            buf.extend_from_slice(&kept);
        }
        let result = if connection.read_end_stream() {
            Default::default()
        } else {
            connection.read_into(&mut buf)
        };
        let dispatch_buffered = mem::take(&mut connection.dispatch_buffered_data);
        if result.error {
            std::hint::cold_path();
            connection.close_socket(ConnectionEvent::RemoteClose, &mut self.events);
            buf.clear();
            self.scratch = Some(buf);
            return;
        }
        let end_stream = connection.read_end_stream();
        let owner = active.owner;
        if result.bytes_read > 0 || result.end_stream || (dispatch_buffered && !buf.is_empty()) {
            self.dispatch_read(id, owner, &mut buf, end_stream);
        }
        // The filters may have closed the connection.
        if let Some(active) = find(&mut self.connections, id) {
            let connection = &mut active.connection;
            if connection.state() == State::Open && connection.read_end_stream() {
                // Once per connection: the peer's FIN was read (now or earlier).
                Self::on_read_end_stream(connection, result.end_stream, &mut self.events);
            }
            if connection.state() == State::Open && !buf.is_empty() {
                Self::keep_unconsumed(connection, &buf);
            }
        }
        buf.clear();
        self.scratch = Some(buf);
    }

    /// After a read on an open connection whose peer has ended its stream (`fin_now`: this
    /// read returned the EOF): without half-close the FIN closes the connection once our last
    /// bytes are flushed; with it, the connection closes once our FIN is out too.
    #[cold]
    fn on_read_end_stream(
        connection: &mut Connection,
        fin_now: bool,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        if fin_now && !connection.half_close_enabled() {
            trace!("[{}] remote close", connection.id());
            connection.close_raising(CloseType::FlushWrite, ConnectionEvent::RemoteClose, events);
        } else if connection.both_sides_half_closed() {
            connection.close_socket(ConnectionEvent::RemoteClose, events);
        }
    }

    /// Keeps the bytes the filters left unconsumed (in an allocation of their own size): only
    /// when a message is split across reads (a head not complete yet) or a filter stopped
    /// reading (flow control); a whole request is consumed by the read that brought it.
    #[cold]
    fn keep_unconsumed(connection: &mut Connection, buf: &[u8]) {
        connection.read_buffer = Some(Box::from(buf));
    }

    /// Hands bytes read on `id` to its `owner`: its own read filters, or the read filter that
    /// owns this client connection.
    fn dispatch_read(
        &mut self,
        id: ConnectionId,
        owner: ConnectionOwner,
        buf: &mut BytesMut,
        end: bool,
    ) {
        match owner {
            ConnectionOwner::FilterChain => self.on_continue_reading(id, 0, buf, end),
            ConnectionOwner::ReadFilter { conn, filter } => {
                let filter = filter as usize;
                let Some(mut f) = self.lend_read_filter(conn, filter) else {
                    Self::drop_orphaned_read(id, conn, buf);
                    return;
                };
                let mut cx = FilterContext {
                    handler: self,
                    conn,
                    filter_index: filter,
                };
                f.on_upstream_data(id, buf, end, &mut cx);
                self.put_back_read_filter(conn, filter, f);
            }
            ConnectionOwner::Idle => self.on_idle_connection_read(id, buf),
        }
    }

    /// Bytes (or a FIN) on a client connection whose owner is gone: dropped (its close is on
    /// its way; reaping closes the connections a reaped owner still held).
    #[cold]
    fn drop_orphaned_read(id: ConnectionId, owner: ConnectionId, buf: &mut BytesMut) {
        trace!("[{id}] owner {owner} is gone; dropping {} bytes", buf.len());
        buf.clear();
    }

    /// Bytes or a FIN on an idle pooled connection: nothing can answer stray bytes, so the
    /// connection closes (a FIN is handled by the close that follows the read).
    #[cold]
    fn on_idle_connection_read(&mut self, id: ConnectionId, buf: &mut BytesMut) {
        if !buf.is_empty() {
            debug!(
                "[{id}] {} bytes on an idle pooled connection: closing",
                buf.len()
            );
            buf.clear();
            self.close(id, CloseType::NoFlush);
        }
    }

    fn lend_read_filter(
        &mut self,
        conn: ConnectionId,
        index: usize,
    ) -> Option<Box<dyn super::filter::ReadFilter>> {
        self.active_mut(conn)?
            .filter_manager
            .read_filters
            .get_mut(index)?
            .filter
            .take()
    }

    // === What filters do through their context ===

    /// Envoy's `ConnectionImpl::write`: through the write filters (unless told not to), into
    /// the write buffer. The buffer is flushed at the end of this dispatch
    /// ([`finish_dispatch`](Self::finish_dispatch)), after the filters have queued everything
    /// they had for it, so what they write in one callback (a response head and its body)
    /// leaves in one syscall. Envoy activates the write event instead; flushing here costs the
    /// same syscall and saves a second trip through the reactor for every write. The first
    /// write into an empty buffer becomes the connection's [`PendingWrite`] in the flush list
    /// (later writes of this dispatch join it), handed back to the connection at the flush:
    /// the request path's bytes never pass through the buffer's queue.
    ///
    /// Not inlined: every filter's writes go through this one copy (two calls per request,
    /// from the HTTP connection manager and the router), and its callers stay short.
    #[inline(never)]
    pub(crate) fn write(
        &mut self,
        id: ConnectionId,
        data: &mut BytesMut,
        end_stream: bool,
        through_filter_chain: bool,
    ) {
        let Some(active) = find(&mut self.connections, id) else {
            // The connection is gone (its close is being delivered): nothing to write to.
            std::hint::cold_path();
            data.clear();
            return;
        };
        if through_filter_chain && active.filter_manager.write_filters.is_some() {
            self.write_through_filters(id, data, end_stream);
            return;
        }
        active
            .connection
            .write(data, end_stream, &mut self.flush, &mut self.events);
    }

    /// `write` on a connection with write filters: through them first (only where a filter
    /// chain configures one; no shipped one does).
    #[cold]
    fn write_through_filters(&mut self, id: ConnectionId, data: &mut BytesMut, end_stream: bool) {
        if self.on_write_filters(id, data, end_stream) == super::filter::FilterStatus::StopIteration
        {
            return;
        }
        let Some(active) = find(&mut self.connections, id) else {
            data.clear();
            return;
        };
        active
            .connection
            .write(data, end_stream, &mut self.flush, &mut self.events);
    }

    /// Envoy's `ConnectionImpl::close` (a `FlushWriteAndDelay` waits the default 1 s).
    pub(crate) fn close(&mut self, id: ConnectionId, close_type: CloseType) {
        self.close_after(id, close_type, DELAYED_CLOSE_TIMEOUT);
    }

    /// [`close`](Self::close) with `delay` as a `FlushWriteAndDelay`'s wait for the peer.
    pub(crate) fn close_after(&mut self, id: ConnectionId, close_type: CloseType, delay: Duration) {
        let weak = self.this.clone();
        let dispatcher = self.dispatcher.clone();
        let Some(active) = self
            .connections
            .get_mut(id.slot)
            .filter(|a| a.connection.id() == id)
        else {
            return;
        };
        if close_type == CloseType::FlushWriteAndDelay {
            // Created only when needed: an open connection carries no timer.
            let timer = match EventTarget::connection(id).token() {
                Some(token) => dispatcher.create_timer_for(self.events_handler, token),
                None => dispatcher
                    .create_timer(move || enter(&weak, |h| h.on_delayed_close_timeout(id))),
            };
            timer.enable(delay);
            // A second `FlushWriteAndDelay` re-arms with its own delay (Envoy's does too).
            self.delayed_close_timers.retain(|(c, _)| *c != id);
            self.delayed_close_timers.push((id, timer));
        }
        active.connection.close(close_type, &mut self.events);
    }

    fn on_delayed_close_timeout(&mut self, id: ConnectionId) {
        if self
            .active_mut(id)
            .is_some_and(|a| a.connection.awaiting_delayed_close())
        {
            self.for_each_read_filter(id, |f, _| f.on_delayed_close_timeout());
        }
        if let Some(active) = self
            .connections
            .get_mut(id.slot)
            .filter(|a| a.connection.id() == id)
        {
            active.connection.on_delayed_close_timeout(&mut self.events);
        }
    }

    pub(crate) fn read_disable(&mut self, id: ConnectionId, disable: bool) {
        if let Some(active) = self.active_mut(id) {
            active.connection.read_disable(disable);
        }
    }

    pub(crate) fn enable_half_close(&mut self, id: ConnectionId, enabled: bool) {
        if let Some(active) = self.active_mut(id) {
            active.connection.enable_half_close(enabled);
        }
    }

    pub(crate) fn queue_continue_reading(&mut self, id: ConnectionId, start: usize) {
        self.continue_reading.push_back((id, start));
    }

    /// Queues `on_timer(token)` for the read filter `owner` names (after the current callback).
    pub(crate) fn queue_wakeup(&mut self, owner: ConnectionOwner, token: u64) {
        if let ConnectionOwner::ReadFilter { conn, filter } = owner {
            self.wakeups.push_back((conn, filter as usize, token));
        }
    }

    /// A filter timer fired, or a queued wake-up is due: the read filter runs
    /// `on_timer(token)` (nothing if the connection or the filter is gone).
    fn on_filter_timer(&mut self, conn: ConnectionId, filter: usize, token: u64) {
        let Some(mut f) = self.lend_read_filter(conn, filter) else {
            return;
        };
        let mut cx = FilterContext {
            handler: self,
            conn,
            filter_index: filter,
        };
        f.on_timer(token, &mut cx);
        self.put_back_read_filter(conn, filter, f);
    }

    /// Envoy's `Dispatcher::createClientConnection` + `connect()`: a client connection whose
    /// data and events go to `owner`.
    pub(crate) fn create_client_connection(
        &mut self,
        address: SocketAddr,
        buffer_limit: u32,
        owner: ConnectionOwner,
    ) -> io::Result<ConnectionId> {
        let entry = self.connections.vacant_entry();
        let id = ConnectionId::allocate(entry.key());
        let connection = Connection::new_client(id, address, buffer_limit)?;
        entry.insert(ActiveConnection {
            connection,
            filter_manager: FilterManager::default(),
            owner,
            listener: None,
            owned: OwnedConnections::None,
        });
        if let Err(e) = self.register(id) {
            self.connections.remove(id.slot);
            return Err(e);
        }
        if let ConnectionOwner::ReadFilter { conn, .. } = owner {
            if let Some(parent) = self.active_mut(conn) {
                parent.owned.push(id);
            }
        }
        debug!("[{id}] ClientConnectionImpl::connect: connecting to {address}");
        Ok(id)
    }

    pub(crate) fn set_owner(&mut self, id: ConnectionId, owner: ConnectionOwner) {
        let Some(active) = self.active_mut(id) else {
            return;
        };
        let previous = mem::replace(&mut active.owner, owner);
        if let ConnectionOwner::ReadFilter { conn, .. } = previous {
            if let Some(parent) = self.active_mut(conn) {
                parent.owned.remove(id);
            }
        }
        if let ConnectionOwner::ReadFilter { conn, .. } = owner {
            if let Some(parent) = self.active_mut(conn) {
                parent.owned.push(id);
            }
        }
    }

    pub(crate) fn create_filter_timer(
        &mut self,
        conn: ConnectionId,
        filter: usize,
        token: u64,
    ) -> Timer {
        let target = EventTarget::filter_timer(conn, filter, token).and_then(|t| t.token());
        if let Some(target) = target {
            return self
                .dispatcher
                .create_timer_for(self.events_handler, target);
        }
        let weak = self.this.clone();
        self.dispatcher.create_timer(move || {
            enter(&weak, |h| h.on_filter_timer(conn, filter, token));
        })
    }

    /// The connection a reactor token's target belongs to, if it is still there.
    fn target_connection(&self, target: EventTarget) -> Option<ConnectionId> {
        let (slot, guard) = target.connection_slot();
        let id = self.connections.get(slot)?.connection.id();
        guard_matches(id, guard).then_some(id)
    }

    /// A file event of this worker's shared handler: a connection's socket.
    pub(crate) fn on_target_file_event(&mut self, target: EventTarget, ready: FileReadyType) {
        if let (EventTarget::Connection { .. }, Some(id)) = (target, self.target_connection(target))
        {
            self.on_connection_event(id, ready);
        }
    }

    /// A timer of this worker's shared handler: a delayed close or a read filter's timer.
    pub(crate) fn on_target_timer(&mut self, target: EventTarget) {
        let Some(id) = self.target_connection(target) else {
            return;
        };
        match target {
            EventTarget::Connection { .. } => self.on_delayed_close_timeout(id),
            EventTarget::FilterTimer { filter, token, .. } => {
                self.on_filter_timer(id, filter, u64::from(token))
            }
        }
    }

    // === The end of every dispatch ===

    /// Delivers queued events, `continue_reading` requests and wake-ups (which may queue
    /// more), flushes the connections written to, then reaps the connections that closed;
    /// repeats until nothing is left. Every reactor callback of the worker ends here (through
    /// `enter`), and filters only run inside one, so no write waits past its dispatch.
    ///
    /// On the request path only the flush has work: a keep-alive request raises no event
    /// (events are connects, closes and watermark crossings), resumes no reading and wakes
    /// no one (a stream waits for a connection only at a pool limit).
    fn finish_dispatch(&mut self) {
        loop {
            if !self.events.is_empty()
                || !self.continue_reading.is_empty()
                || !self.wakeups.is_empty()
            {
                std::hint::cold_path();
                self.deliver_next_queued();
            } else if !self.flush.is_empty() {
                self.flush_written();
            } else if !self.closed.is_empty() {
                std::hint::cold_path();
                self.reap();
            } else {
                break;
            }
        }
        if self.drain.is_some() {
            // Only while the server drains (SIGTERM, `/drain_listeners`).
            std::hint::cold_path();
            self.check_drained();
        }
    }

    /// Delivers the first queued item: an event, else a `continue_reading`, else a wake-up
    /// (one at a time, in that order: each may queue more of any kind).
    #[cold]
    fn deliver_next_queued(&mut self) {
        if let Some((id, event)) = self.events.pop_front() {
            self.deliver_event(id, event);
        } else if let Some((id, start)) = self.continue_reading.pop_front() {
            self.resume_reading(id, start);
        } else if let Some((conn, filter, token)) = self.wakeups.pop_front() {
            self.on_filter_timer(conn, filter, token);
        }
    }

    /// Flushes the connections written to during this dispatch, in the order they were first
    /// written to. A flush runs no filter (it only raises events), so it cannot queue another.
    fn flush_written(&mut self) {
        let mut written = mem::take(&mut self.flush);
        for pending in written.drain(..) {
            // A connection gone already was closed without flush: its bytes are dropped.
            if let Some(active) = find(&mut self.connections, pending.id) {
                let connection = &mut active.connection;
                connection.flush_pending(pending, &mut self.events);
                close_if_both_sides_done(connection, &mut self.events);
            }
        }
        self.flush = written; // keep the capacity: no allocation per dispatch
    }

    /// Delivers `event` of connection `id` to its owner.
    fn deliver_event(&mut self, id: ConnectionId, event: ConnectionEvent) {
        if matches!(
            event,
            ConnectionEvent::LocalClose | ConnectionEvent::RemoteClose
        ) {
            self.closed.push(id);
        }
        let Some(owner) = self.active_mut(id).map(|a| a.owner) else {
            return;
        };
        trace!("[{id}] raiseEvent: {event:?}");
        match owner {
            ConnectionOwner::FilterChain => {
                self.for_each_read_filter(id, |f, cx| f.on_event(event, cx));
            }
            ConnectionOwner::ReadFilter { conn, filter } => {
                let filter = filter as usize;
                let Some(mut f) = self.lend_read_filter(conn, filter) else {
                    return;
                };
                let mut cx = FilterContext {
                    handler: self,
                    conn,
                    filter_index: filter,
                };
                f.on_upstream_event(id, event, &mut cx);
                self.put_back_read_filter(conn, filter, f);
            }
            ConnectionOwner::Idle => {
                let remote = match event {
                    ConnectionEvent::RemoteClose => true,
                    ConnectionEvent::LocalClose => false,
                    _ => return,
                };
                let Some(callbacks) = self.idle_callbacks.clone() else {
                    return;
                };
                if let Some((owner, token)) = callbacks.on_idle_close(id, remote) {
                    self.queue_wakeup(owner, token);
                }
            }
        }
    }

    /// A queued `continue_reading`: offer the buffered bytes to the filters from `start`.
    fn resume_reading(&mut self, id: ConnectionId, start: usize) {
        let Some(active) = self.active_mut(id) else {
            return;
        };
        let end_stream = active.connection.read_end_stream();
        let kept = active.connection.read_buffer.take();
        // Through the worker's scratch, as a read is: the connection keeps only what is left.
        let mut buf = self.scratch.take().unwrap_or_default();
        if let Some(kept) = kept {
            buf.extend_from_slice(&kept);
        }
        self.on_continue_reading(id, start, &mut buf, end_stream);
        if let Some(active) = self.active_mut(id) {
            if !buf.is_empty() && active.connection.state() != State::Closed {
                active.connection.read_buffer = Some(Box::from(&buf[..]));
            }
        }
        buf.clear();
        self.scratch = Some(buf);
    }

    /// Removes the connections closed during this dispatch (our `deferredDelete`), updating
    /// listener stats and closing client connections they still own.
    fn reap(&mut self) {
        for id in mem::take(&mut self.closed) {
            if self.active_mut(id).is_none() {
                continue;
            }
            let active = self.connections.remove(id.slot);
            trace!("[{id}] reaped");
            if !self.delayed_close_timers.is_empty() {
                self.delayed_close_timers.retain(|(c, _)| *c != id);
            }
            if let Some(index) = active.listener {
                let stats = &self.listeners[index as usize].stats;
                stats.downstream_cx_destroy.inc();
                stats.downstream_cx_active.dec();
                stats.worker_cx_active.dec();
            }
            for &child in active.owned.as_slice() {
                let owned = self.active_mut(child).is_some_and(
                    |c| matches!(c.owner, ConnectionOwner::ReadFilter { conn, .. } if conn == id),
                );
                if owned {
                    // The owner asked for whatever close it wanted; finish what is in flight.
                    self.close(child, CloseType::FlushWrite);
                }
            }
            drop(active.filter_manager);
        }
    }
}

/// Envoy's `onWriteReady`: writes what `connection` has buffered, then closes it if that
/// finished both directions (our FIN sent after the peer's).
fn flush(connection: &mut Connection, events: &mut VecDeque<(ConnectionId, ConnectionEvent)>) {
    connection.on_write_ready(events);
    close_if_both_sides_done(connection, events);
}

/// After a flush: closes `connection` if both directions are finished (our FIN went out after
/// the peer's).
fn close_if_both_sides_done(
    connection: &mut Connection,
    events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
) {
    if connection.state() == State::Open && connection.both_sides_half_closed() {
        connection.close_socket(ConnectionEvent::LocalClose, events);
    }
}

/// The connection `id` in `connections`, if it is still there (a field-level borrow, so the
/// event queue can be borrowed beside it).
pub(crate) fn find(
    connections: &mut Slab<ActiveConnection>,
    id: ConnectionId,
) -> Option<&mut ActiveConnection> {
    // The connection in slot `id.slot` has that slot in its id: the global id tells the rest.
    connections
        .get_mut(id.slot)
        .filter(|a| a.connection.id().global == id.global)
}

/// What peeking at an accepted socket found.
enum Peek {
    /// Bytes (all not yet drained, up to the filter's limit) and whether the limit was hit.
    Data(Vec<u8>, bool),
    WouldBlock,
    Closed,
}

fn peek_for(filter: &mut dyn ListenerFilter, stream: &TcpStream) -> Peek {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let max = filter.max_read_bytes();
    if max == 0 {
        return Peek::WouldBlock;
    }
    let mut buf = vec![0u8; max];
    match recv(stream.as_raw_fd(), &mut buf, MsgFlags::MSG_PEEK) {
        Ok(0) => Peek::Closed,
        Ok(n) => {
            buf.truncate(n);
            Peek::Data(buf, n == max)
        }
        Err(nix::errno::Errno::EAGAIN) => Peek::WouldBlock,
        Err(nix::errno::Errno::EINTR) => Peek::WouldBlock,
        Err(_) => Peek::Closed,
    }
}

/// Reads away `len` bytes a listener filter consumed (they were peeked, so they are there).
fn consume(stream: &TcpStream, mut len: usize) -> io::Result<()> {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut sink = [0u8; 4096];
    while len > 0 {
        let want = len.min(sink.len());
        match recv(stream.as_raw_fd(), &mut sink[..want], MsgFlags::empty()) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len -= n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod owned_connections_tests {
    use super::*;

    fn id(slot: usize) -> ConnectionId {
        ConnectionId::allocate(slot)
    }

    #[test]
    fn one_owned_connection_is_kept_inline() {
        let (a, b, c) = (id(1), id(2), id(3));
        let mut owned = OwnedConnections::default();
        assert!(owned.as_slice().is_empty());
        owned.push(a);
        assert!(matches!(owned, OwnedConnections::One(_)));
        owned.push(b);
        owned.push(c);
        assert_eq!(owned.as_slice(), &[a, b, c]);
        owned.remove(b);
        assert_eq!(owned.as_slice(), &[a, c]);
        owned.remove(a);
        assert!(matches!(owned, OwnedConnections::One(x) if x == c));
        owned.remove(a);
        assert_eq!(owned.as_slice(), &[c]);
        owned.remove(c);
        assert!(matches!(owned, OwnedConnections::None));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use std::mem::size_of;

    /// Every connection of the worker, idle keep-alive ones included, is one slab entry: issue 4
    /// budgets 512 bytes of memory per idle HTTP connection, all of it included (this entry,
    /// its filters, its reactor registrations). These bounds make a field that grows the entry
    /// a conscious choice (was 360 bytes, with two full `SocketAddr`s, byte counters, an inline
    /// `VecDeque` write queue and `usize` indices).
    #[test]
    fn an_active_connection_stays_small() {
        assert!(
            size_of::<Connection>() <= 104,
            "{}",
            size_of::<Connection>()
        );
        assert!(size_of::<ConnectionOwner>() <= 24);
        assert!(size_of::<FilterManager>() <= 56);
        assert!(size_of::<OwnedConnections>() <= 24);
        assert!(
            size_of::<ActiveConnection>() <= 200,
            "{}",
            size_of::<ActiveConnection>()
        );
    }
}
