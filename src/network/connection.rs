//! `Connection`: one TCP connection's socket, buffers, half-close state and flow control
//! (Envoy's `Network::ConnectionImpl` with its `RawBufferSocket`).
//!
//! Owns the socket and the bytes in flight: reads until the receive queue is drained (at most
//! the buffer limit per event; see [`Connection::read_into`] for how a drained queue is told
//! without a read that fails with `WouldBlock`), writes what the filters produced (`writev` over a chain of slices, never
//! copying), shuts down the write side once `end_stream` has been flushed, closes the socket,
//! and raises events (connected, closed, write-buffer watermarks) into the worker's queue.
//!
//! Called only by the worker's [`ConnectionHandler`](super::connection_handler) (which owns the
//! slab of connections and turns reactor callbacks into calls here, then feeds what was read to
//! the filters). Calls the socket (mio) and the reactor (its `FileEvent`), nothing
//! else: a connection knows neither its filters nor its owner, so it can never call back into
//! them while they are running.
//!
//! Invariants:
//! - An idle connection owns no buffer memory: `read_buffer` only holds bytes the filters left
//!   unconsumed, `write_buffer` only bytes not yet accepted by the kernel.
//! - `write_buffer` above `high_watermark` raises `AboveWriteBufferHighWatermark` once; it
//!   raises `BelowWriteBufferLowWatermark` once when it drains below `high_watermark / 2`.
//! - A closed connection has no socket and no file event; it stays in the slab (so its owner can
//!   still look at it while handling the close event) until the handler reaps it.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use reactor::{FileEvent, FileReadyType};

use super::address_pair::AddressPair;

/// Default `per_connection_buffer_limit_bytes` (Envoy's 1 MiB).
pub const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;

/// How many bytes one `read` asks the kernel for.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// How many buffer slices one `writev` hands the kernel.
const MAX_IOVECS: usize = 64;

/// Waiting chunks up to this size are copied out of a shared allocation when a write stalls
/// (see [`WriteBuffer::on_stall`]).
const MAX_COPIED_LEFTOVER: usize = 8 * 1024;

/// How many emptied write-buffer queues a worker keeps, and the largest one it keeps.
const MAX_FREE_QUEUES: usize = 64;
const MAX_KEPT_QUEUE_CAPACITY: usize = 64;

thread_local! {
    /// This worker's emptied write-buffer queues. A write buffer takes one when its first
    /// chunk arrives and gives it back once drained: an idle connection owns no queue, and a
    /// request costs no allocation for one. Boxed on purpose: the box is what a write buffer
    /// holds (one pointer), and recycling it saves its allocation too.
    #[allow(clippy::vec_box)]
    static FREE_QUEUES: std::cell::RefCell<Vec<Box<WriteQueue>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The process-wide connection counter behind the `C{n}` in log lines (Envoy's
/// `next_global_id_`), also the generation that makes a [`ConnectionId`] unique.
static NEXT_GLOBAL_ID: AtomicU64 = AtomicU64::new(0);

/// A handle naming a connection on its worker: the slab slot plus the connection's global id.
///
/// The id makes the handle unique for the life of the process: a stale handle whose slot was
/// reused by a newer connection simply finds nothing. `Display` is Envoy's `C{id}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId {
    pub(crate) slot: usize,
    pub(crate) global: u64,
}

impl ConnectionId {
    /// A handle for the connection about to occupy `slot`, with a fresh global id.
    pub(crate) fn allocate(slot: usize) -> ConnectionId {
        ConnectionId {
            slot,
            global: NEXT_GLOBAL_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The global id (the `n` of `C{n}`).
    pub fn global_id(&self) -> u64 {
        self.global
    }
}

/// `Debug` as `Display` (`C12`): the HTTP layer logs upstream handles through `Debug`.
impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.global)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.global)
    }
}

/// What a connection tells its owner (Envoy's `ConnectionEvent` plus the two watermark
/// callbacks of `ConnectionCallbacks`, which travel through the same queue here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A client connection finished connecting.
    Connected,
    /// The peer closed, or an error (including a failed connect) closed the socket.
    RemoteClose,
    /// We closed the socket (`close()`, or a flush finished).
    LocalClose,
    /// The write buffer went above the high watermark: stop producing data for it.
    AboveWriteBufferHighWatermark,
    /// The write buffer drained below the low watermark: produce again.
    BelowWriteBufferLowWatermark,
}

/// How to close (Envoy's `ConnectionCloseType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseType {
    /// Write what is buffered first, then close.
    FlushWrite,
    /// Close now; buffered data is dropped.
    NoFlush,
    /// Flush, then wait up to the delayed-close timeout for the peer to close first (so it
    /// reads our last bytes before a RST could destroy them).
    FlushWriteAndDelay,
}

/// The connection's life (Envoy's `Connection::State` plus `connecting_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A client connection waiting for the kernel to finish the handshake.
    Connecting,
    /// Reading and writing.
    Open,
    /// `close(FlushWrite*)` was called: no more reads; closes once the write buffer is empty
    /// (and, for `FlushWriteAndDelay`, the delay has passed).
    Closing,
    /// The socket is closed; waiting to be reaped.
    Closed,
}

/// What one read-ready event produced (Envoy's `IoResult` of `doRead`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadResult {
    /// Bytes appended to the buffer.
    pub bytes_read: usize,
    /// The peer shut down its write side (read returned 0).
    pub end_stream: bool,
    /// Stopped at the per-event limit with more possibly pending: read again next iteration.
    pub more_pending: bool,
    /// A socket error: the connection must close (RemoteClose).
    pub error: bool,
}

/// The write buffer: a queue of slices moved in without copying (Envoy's `Buffer::OwnedImpl`
/// used as a write buffer). Empty, it is one null pointer and owns no memory: its queue comes
/// from the worker's free list with the first chunk and goes back once drained (an idle
/// connection pays 8 bytes for it, a request no allocation).
///
/// Invariant: `queue` is `Some` exactly while bytes are waiting.
#[derive(Default)]
pub struct WriteBuffer {
    queue: Option<Box<WriteQueue>>,
}

/// The chunks waiting and their total length.
///
/// A chunk is a `BytesMut` split off the writer's buffer (never written through again: the
/// split gives it its own range of the allocation), so that a chunk written right behind the
/// previous one in the same allocation joins it (`try_unsplit`): a response head and its body,
/// encoded one after the other into the worker's encode buffer, leave as one slice in one
/// `write`.
#[derive(Default)]
struct WriteQueue {
    chunks: VecDeque<BytesMut>,
    len: usize,
    /// A flush left bytes the kernel would not take (see [`WriteBuffer::on_stall`]).
    stalled: bool,
}

impl WriteQueue {
    /// Drops the first `n < len` bytes: a flush the kernel took only part of (it pushed back).
    #[cold]
    fn consume_partial(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// The bytes a connection was given while its write buffer was empty, held by the worker's
/// [`ConnectionHandler`](super::connection_handler::ConnectionHandler) (its flush list) until
/// the end of the dispatch that wrote them, then handed back to
/// [`Connection::flush_pending`]. This is the request path's write (a request to the upstream,
/// a response head with its body): from the filter's buffer to one `send(2)` without a trip
/// through the write buffer's queue (and its free list).
///
/// Still the connection's buffered bytes in every respect: it counts them in
/// `write_buffer_len()`, the high watermark and a flushing close, and a close without flush in
/// the same dispatch drops them (the flush then finds the connection closed), exactly as
/// Envoy's write buffer does for a write followed by `close(NoFlush)`.
///
/// Two chunks at most: a chunk written right behind the last one in the same allocation joins
/// it (`try_unsplit`); one from another allocation (a body forwarded from the read buffer behind
/// a head encoded elsewhere) takes the second slot and leaves with the first in one `writev`.
/// A third allocation's bytes queue behind them in the write buffer.
pub(crate) struct PendingWrite {
    pub(crate) id: ConnectionId,
    first: BytesMut,
    second: BytesMut,
}

impl PendingWrite {
    fn new(id: ConnectionId, first: BytesMut) -> PendingWrite {
        PendingWrite {
            id,
            first,
            second: BytesMut::new(),
        }
    }

    /// Appends `chunk` (see the type's docs); gives it back when both slots are taken by other
    /// allocations.
    fn push(&mut self, chunk: BytesMut) -> Result<(), BytesMut> {
        if self.second.is_empty() {
            match self.first.try_unsplit(chunk) {
                Ok(()) => Ok(()),
                Err(chunk) => {
                    self.second = chunk;
                    Ok(())
                }
            }
        } else {
            self.second.try_unsplit(chunk)
        }
    }

    /// One `send` of the one chunk, or a `writev` of both.
    fn send(&self, socket: &mut TcpStream) -> io::Result<usize> {
        if self.second.is_empty() {
            reactor::send(socket.as_raw_fd(), &self.first)
        } else {
            socket.write_vectored(&[IoSlice::new(&self.first), IoSlice::new(&self.second)])
        }
    }
}

/// A `writev` of the waiting chunks (at most [`MAX_IOVECS`]): when several are waiting (a
/// head and a body from different buffers, or writes behind a stall).
#[inline(never)]
fn write_chunks(socket: &mut TcpStream, chunks: &VecDeque<BytesMut>) -> io::Result<usize> {
    match chunks.as_slices() {
        ([], []) => Ok(0),
        ([a, b], []) | ([a], [b]) => socket.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]),
        _ => {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (slot, chunk) in slices.iter_mut().zip(chunks.iter()) {
                *slot = IoSlice::new(chunk);
                n += 1;
            }
            socket.write_vectored(&slices[..n])
        }
    }
}

impl Drop for WriteBuffer {
    fn drop(&mut self) {
        self.clear();
    }
}

impl WriteBuffer {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// Appends `data`, taking its bytes (zero-copy: the filled part is split off, not copied;
    /// `data` keeps the rest of its capacity).
    pub fn move_in(&mut self, data: &mut BytesMut) {
        if data.is_empty() {
            return;
        }
        self.push_chunk(data.split());
    }

    fn push_chunk(&mut self, chunk: BytesMut) {
        let queue = self.queue.get_or_insert_with(take_free_queue);
        queue.len += chunk.len();
        let chunk = match queue.chunks.back_mut() {
            // Right behind the last chunk in the same allocation: one chunk (O(1)).
            Some(back) => match back.try_unsplit(chunk) {
                Ok(()) => return,
                Err(chunk) => chunk,
            },
            None => chunk,
        };
        queue.chunks.push_back(chunk);
        if queue.stalled {
            // Written behind a stall: it waits for the peer too.
            queue.chunks.back_mut().map(unpin);
        }
    }

    /// Puts what the kernel did not take of a pending write (`taken` of its bytes went out) in
    /// front of whatever is queued behind it: only when the kernel pushed back.
    #[cold]
    fn put_back(&mut self, pending: PendingWrite, taken: usize) {
        let PendingWrite {
            mut first,
            mut second,
            ..
        } = pending;
        let from_first = taken.min(first.len());
        first.advance(from_first);
        second.advance((taken - from_first).min(second.len()));
        for chunk in [second, first] {
            if !chunk.is_empty() {
                let queue = self.queue.get_or_insert_with(take_free_queue);
                queue.len += chunk.len();
                queue.chunks.push_front(chunk);
            }
        }
    }

    /// Called when a flush left bytes the kernel would not take: gives each waiting chunk of
    /// at most [`MAX_COPIED_LEFTOVER`] bytes that shares its allocation an allocation of its
    /// own, now and for chunks written until the queue drains. The chunks are often slices of
    /// a worker's scratch buffer (`http::scratch`'s 32 KiB encode and body buffers, a read
    /// buffer), and a slice kept by a peer that stopped reading would pin the whole allocation
    /// for as long as the peer stalls, one allocation per stalled connection. Copying a small
    /// leftover costs one allocation per stall instead; the chunks waiting were all seen at
    /// the first stall (and later ones on arrival), so no chunk is copied twice. Larger chunks
    /// stay: they fill much of what they pin. Runs only when the kernel pushed back (a full
    /// send buffer).
    #[cold]
    fn on_stall(&mut self) {
        if let Some(queue) = self.queue.as_mut() {
            if !queue.stalled {
                queue.stalled = true;
                queue.chunks.iter_mut().for_each(unpin);
            }
        }
    }

    /// Gives the queue back to the worker's free list (emptied), or frees it.
    fn release_queue(&mut self) {
        let Some(mut queue) = self.queue.take() else {
            return;
        };
        if queue.chunks.capacity() > MAX_KEPT_QUEUE_CAPACITY {
            return;
        }
        // Usually one chunk (a request; a response head with its body): popping it costs
        // less than `clear()`'s walk over the ring's two slices.
        while queue.chunks.pop_front().is_some() {}
        queue.len = 0;
        queue.stalled = false;
        let _ = FREE_QUEUES.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < MAX_FREE_QUEUES {
                free.push(queue);
            }
        });
    }

    /// One `send` of the one waiting chunk, or one `writev` of up to [`MAX_IOVECS`] of them;
    /// returns how many bytes the kernel took. One chunk is the request path's shape: a
    /// request, or a response head with its body (encoded one behind the other, they joined).
    fn write_to(&mut self, socket: &mut TcpStream) -> io::Result<usize> {
        let Some(queue) = self.queue.as_ref() else {
            return Ok(0);
        };
        let written = match queue.chunks.as_slices() {
            // A plain send(2): the same work for the kernel as a one-slice writev, and an
            // strace that reads like the data path.
            ([only], []) => reactor::send(socket.as_raw_fd(), only)?,
            _ => write_chunks(socket, &queue.chunks)?,
        };
        self.consume(written);
        Ok(written)
    }

    /// Drops the first `n` bytes.
    fn consume(&mut self, n: usize) {
        let Some(queue) = self.queue.as_mut() else {
            return;
        };
        if n >= queue.len {
            // All taken (the usual flush): no chunk to walk.
            self.release_queue();
            return;
        }
        queue.consume_partial(n);
    }

    /// Drops everything (close without flush). Releases the queue too.
    fn clear(&mut self) {
        self.release_queue();
    }
}

/// An emptied queue from the worker's free list, or a new one.
fn take_free_queue() -> Box<WriteQueue> {
    FREE_QUEUES
        .try_with(|free| free.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// `chunk` in an allocation of its own when it is small and shares its allocation (see
/// [`WriteBuffer::on_stall`]).
fn unpin(chunk: &mut BytesMut) {
    if chunk.len() > MAX_COPIED_LEFTOVER {
        return;
    }
    *chunk = match std::mem::take(chunk).freeze().try_into_mut() {
        // The allocation's only owner already: nothing is pinned, nothing to copy.
        Ok(own) => own,
        Err(shared) => BytesMut::from(&shared[..]),
    };
}

/// One TCP connection, downstream (accepted) or upstream (client).
#[doc(alias = "ConnectionImpl")]
pub struct Connection {
    id: ConnectionId,
    /// `None` once closed (dropping the stream closes the fd).
    socket: Option<TcpStream>,
    /// The registration with the worker's dispatcher; `None` once closed.
    file_event: Option<FileEvent>,
    /// What `file_event` is registered for, as last set.
    interest: FileReadyType,
    state: State,
    /// Why a `Closing` connection closes: the event raised when it finally does.
    closing_event: ConnectionEvent,
    /// Whether `Closing` waits for the delayed-close timer after the flush.
    delay_after_flush: bool,
    /// Remote and local address (16 bytes for IPv4).
    addresses: AddressPair,
    /// Bytes read and left unconsumed by the filters, in an allocation of their own size
    /// (`None` while idle). Reads go through the worker's scratch buffer.
    pub(crate) read_buffer: Option<Box<[u8]>>,
    write_buffer: WriteBuffer,
    /// Bytes of this connection's [`PendingWrite`], held by the handler until the end of the
    /// dispatch; part of the write buffer for every purpose. Never set together with queued
    /// bytes: a pending write starts only on an empty buffer, and is put in front of the queue
    /// if the kernel does not take all of it.
    pending_write: u32,
    /// Nested `read_disable(true)` calls not yet undone (Envoy's `read_disable_count_`).
    read_disable_count: u32,
    /// Buffered bytes must be offered to the filters on the next read event even if no new
    /// bytes arrive (set when reading is re-enabled; Envoy's `dispatch_buffered_data_`).
    pub(crate) dispatch_buffered_data: bool,
    /// The peer shut down its write side.
    read_end_stream: bool,
    /// The dispatcher reported CLOSED (the peer's FIN or a hang-up is queued behind any bytes):
    /// reads go on until the EOF or error is read, a short read no longer proves the queue
    /// drained. Sticky, as the hang-up is (nginx's `pending_eof`).
    peer_hung_up: bool,
    /// `end_stream` was written: shut down our write side once the buffer is flushed.
    write_end_stream: bool,
    /// The write side is shut down (FIN sent).
    write_shutdown: bool,
    /// Whether a read `end_stream` leaves the connection open for writing (Envoy's
    /// `enable_half_close_`); off: the peer's FIN closes the connection.
    half_close: bool,
    /// `per_connection_buffer_limit_bytes`: the read limit per event and the write buffer's
    /// high watermark.
    buffer_limit: u32,
    above_high_watermark: bool,
}

impl Connection {
    /// A connection over an accepted socket (state `Open`).
    pub fn new_server(
        id: ConnectionId,
        socket: TcpStream,
        remote_address: SocketAddr,
        local_address: SocketAddr,
        buffer_limit: u32,
    ) -> Connection {
        Connection::new(
            id,
            socket,
            State::Open,
            remote_address,
            local_address,
            buffer_limit,
        )
    }

    /// Starts a non-blocking connect to `address` (state `Connecting`; Envoy's
    /// `ClientConnectionImpl::connect`). Errors are immediate failures (e.g. no ports left).
    pub fn new_client(
        id: ConnectionId,
        address: SocketAddr,
        buffer_limit: u32,
    ) -> io::Result<Connection> {
        let socket = TcpStream::connect(address)?;
        let local = socket
            .local_addr()
            .unwrap_or_else(|_| unspecified_like(address));
        Ok(Connection::new(
            id,
            socket,
            State::Connecting,
            address,
            local,
            buffer_limit,
        ))
    }

    fn new(
        id: ConnectionId,
        socket: TcpStream,
        state: State,
        remote_address: SocketAddr,
        local_address: SocketAddr,
        buffer_limit: u32,
    ) -> Connection {
        // Latency matters more than segment count for a proxy (Envoy sets TCP_NODELAY too).
        let _ = socket.set_nodelay(true);
        Connection {
            id,
            socket: Some(socket),
            file_event: None,
            interest: FileReadyType::NONE,
            state,
            closing_event: ConnectionEvent::LocalClose,
            delay_after_flush: false,
            addresses: AddressPair::new(remote_address, local_address),
            read_buffer: None,
            write_buffer: WriteBuffer::default(),
            pending_write: 0,
            read_disable_count: 0,
            dispatch_buffered_data: false,
            read_end_stream: false,
            peer_hung_up: false,
            write_end_stream: false,
            write_shutdown: false,
            half_close: false,
            buffer_limit: buffer_limit.max(1),
            above_high_watermark: false,
        }
    }

    /// Attaches the dispatcher registration (created by the handler for `interest`, its
    /// callback routing events back here by id).
    pub(crate) fn set_file_event(&mut self, file_event: FileEvent, interest: FileReadyType) {
        self.file_event = Some(file_event);
        self.interest = interest;
    }

    /// The socket's fd, for registration.
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.socket.as_ref().map(|s| s.as_raw_fd())
    }

    // === Accessors ===

    pub fn id(&self) -> ConnectionId {
        self.id
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn remote_address(&self) -> SocketAddr {
        self.addresses.remote()
    }
    pub fn local_address(&self) -> SocketAddr {
        self.addresses.local()
    }
    /// Whether reads are enabled (Envoy's `readEnabled`).
    pub fn read_enabled(&self) -> bool {
        self.read_disable_count == 0
    }
    pub fn read_end_stream(&self) -> bool {
        self.read_end_stream
    }
    /// Bytes waiting in the write buffer (a pending write's included).
    pub fn write_buffer_len(&self) -> usize {
        self.write_buffer.len() + self.pending_write as usize
    }
    /// Whether [`on_write_ready`](Self::on_write_ready) has anything to do: bytes to write, our
    /// FIN to send, or a flushing close to finish. Most write-ready events find none (epoll
    /// reports a writable socket with every read event).
    pub fn write_pending(&self) -> bool {
        !self.write_buffer.is_empty()
            || (self.write_end_stream && !self.write_shutdown)
            || self.state == State::Closing
    }
    pub fn buffer_limit(&self) -> u32 {
        self.buffer_limit
    }
    pub fn above_high_watermark(&self) -> bool {
        self.above_high_watermark
    }
    /// Whether a read `end_stream` keeps the connection open (Envoy's `enableHalfClose`).
    pub fn enable_half_close(&mut self, enabled: bool) {
        self.half_close = enabled;
    }
    pub fn half_close_enabled(&self) -> bool {
        self.half_close
    }
    /// Both directions are finished (Envoy's `bothSidesHalfClosed`): time to close.
    pub fn both_sides_half_closed(&self) -> bool {
        self.read_end_stream && self.write_shutdown
    }

    // === Reading (Envoy's onReadReady → RawBufferSocket::doRead) ===

    /// Notes the readiness the dispatcher delivered for this socket, before any read: CLOSED
    /// is remembered (see [`read_into`](Self::read_into)).
    pub(crate) fn on_readiness(&mut self, ready: FileReadyType) {
        if ready.contains(FileReadyType::CLOSED) {
            self.peer_hung_up = true;
        }
    }

    /// Reads into `buf` until the receive queue is drained, EOF, an error, or the per-event
    /// limit (`buffer_limit`, counting what `buf` already holds). Never called while
    /// read-disabled.
    ///
    /// Drained means a read returned fewer bytes than asked while no hang-up was reported: TCP
    /// hands over everything queued up to the size asked, so the queue was empty, and the
    /// socket is registered edge-triggered for READ and CLOSED, so any byte or FIN arriving
    /// after the event was collected raises a new event (the reactor's file_event.rs
    /// guarantees both). This saves the read that would fail with `WouldBlock`: one syscall
    /// per request on each side of a proxy (nginx stops the same way). Once CLOSED was
    /// reported the EOF or the error is queued behind the bytes and raises no new event, so
    /// the loop reads until it gets it. An injected READ (`activate`) carries no readiness of
    /// its own; the remembered CLOSED covers it, and a hang-up not yet reported is still
    /// pending in the kernel and will be.
    pub fn read_into(&mut self, buf: &mut BytesMut) -> ReadResult {
        let mut result = ReadResult::default();
        let Some(fd) = self.raw_fd() else {
            return result;
        };
        let limit = self.buffer_limit as usize;
        let stop_when_drained = !self.peer_hung_up;
        loop {
            if buf.len() >= limit {
                // Envoy's shouldDrainReadBuffer: let the filters consume, come back next
                // iteration (edge-triggered: nothing else would wake us). Only with more
                // than the buffer limit queued in the kernel.
                std::hint::cold_path();
                result.more_pending = true;
                self.activate(FileReadyType::READ);
                break;
            }
            let want = READ_CHUNK.min(limit - buf.len());
            // Straight into `buf`'s spare capacity: no zero-filling, no copy.
            match reactor::recv_into(fd, buf, want) {
                Ok(n) if n > 0 => {
                    result.bytes_read += n;
                    if n < want && stop_when_drained {
                        break;
                    }
                }
                // The peer's FIN: once per connection.
                Ok(_) => {
                    std::hint::cold_path();
                    result.end_stream = true;
                    self.read_end_stream = true;
                    break;
                }
                // Only once the queue was drained by a read of exactly `want` bytes, or after
                // a hang-up was reported (see above); or a socket error.
                Err(e) => {
                    std::hint::cold_path();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            debug!("[{}] read error: {e}", self.id);
                            result.error = true;
                            break;
                        }
                    }
                }
            }
        }
        trace!(
            "[{}] ConnectionImpl::onReadReady: read {} bytes, end_stream {}",
            self.id,
            result.bytes_read,
            result.end_stream
        );
        result
    }

    /// `read_disable(true)` stops reading (nested: each call must be undone by a
    /// `read_disable(false)`); the kernel's receive window then pushes back on the peer.
    /// Returns whether the enabled state changed.
    pub fn read_disable(&mut self, disable: bool) -> bool {
        if self.state == State::Closed {
            return false;
        }
        if disable {
            self.read_disable_count += 1;
            if self.read_disable_count > 1 {
                return false;
            }
            trace!("[{}] readDisable: disable", self.id);
            self.update_interest();
            true
        } else {
            if self.read_disable_count == 0 {
                debug!("[{}] readDisable(false) while reading is enabled", self.id);
                return false;
            }
            self.read_disable_count -= 1;
            if self.read_disable_count > 0 {
                return false;
            }
            trace!("[{}] readDisable: enable", self.id);
            // Re-registering READ makes the kernel re-check the socket: bytes or a FIN that
            // arrived while disabled are reported (with CLOSED) by the next poll.
            self.update_interest();
            // Bytes already buffered must be offered again, and the next poll may come after
            // other work: read now (Envoy activates Read for both).
            self.dispatch_buffered_data = self.read_buffer.is_some();
            self.activate(FileReadyType::READ);
            true
        }
    }

    /// What the state allows: reads only while enabled and open.
    fn wanted_interest(&self) -> FileReadyType {
        let mut events = FileReadyType::WRITE;
        if self.read_disable_count == 0 && self.state == State::Open {
            events |= FileReadyType::READ | FileReadyType::CLOSED;
        }
        events
    }

    /// Registers [`wanted_interest`](Self::wanted_interest). Always an `epoll_ctl`, even when
    /// unchanged: the re-registration makes the kernel report the socket's readiness anew.
    fn update_interest(&mut self) {
        if let Some(event) = &self.file_event {
            self.interest = self.wanted_interest();
            event.set_enabled(self.interest);
        }
    }

    /// Whether the dispatcher has collected (or injected) READ or CLOSED for this socket that
    /// its callback has not handled yet: bytes, a FIN or an error wait behind the callback that
    /// is running now. Costs no syscall ([`FileEvent::pending`]).
    pub fn read_event_pending(&self) -> bool {
        self.file_event.as_ref().is_some_and(|event| {
            event
                .pending()
                .intersects(FileReadyType::READ | FileReadyType::CLOSED)
        })
    }

    pub(crate) fn activate(&self, events: FileReadyType) {
        if let Some(event) = &self.file_event {
            event.activate(events);
        }
    }

    // === Connecting (Envoy's onConnected, in onWriteReady) ===

    /// Called on the first readiness of a `Connecting` socket: `Ok` when the handshake
    /// succeeded (state becomes `Open`), the error otherwise.
    pub fn finish_connect(&mut self) -> io::Result<()> {
        let Some(socket) = self.socket.as_ref() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        // mio: a connect is complete once peer_addr succeeds.
        socket.peer_addr()?;
        if let Ok(local) = socket.local_addr() {
            self.addresses.set_local(local);
        }
        self.state = State::Open;
        // Usually registered for reading since the start (only a read_disable while
        // connecting narrowed it): then there is nothing to change and no epoll_ctl to pay.
        if self.wanted_interest() != self.interest {
            self.update_interest();
        }
        debug!("[{}] connected to {}", self.id, self.addresses.remote());
        Ok(())
    }

    // === Writing (Envoy's write → onWriteReady → RawBufferSocket::doWrite) ===

    /// Takes `data` (already through the write filters) into the write buffer. `end_stream`
    /// shuts down our write side once everything is flushed. Raises
    /// `AboveWriteBufferHighWatermark` into `events` when the buffer crosses the limit.
    ///
    /// The first write into the empty buffer of an open connection (the request path's) puts
    /// its bytes in `flush`, the worker's list of this dispatch's [`PendingWrite`]s: later
    /// writes of the dispatch join them there, and the caller hands each to
    /// [`flush_pending`](Self::flush_pending) once the filters are done, so what they wrote
    /// leaves in one syscall. Otherwise the bytes are queued and a flush is already due: bytes
    /// left behind by a flush wait for the kernel's next write-ready edge (the socket is
    /// registered edge-triggered for WRITE, and a flush only stops early on `WouldBlock`), and
    /// a connecting socket flushes once connected.
    ///
    /// Inlined into its one hot caller, `ConnectionHandler::write`.
    #[inline(always)]
    pub(crate) fn write(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        flush: &mut Vec<PendingWrite>,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        if self.write_end_stream || !matches!(self.state, State::Open | State::Connecting) {
            self.drop_late_write(data);
            return;
        }
        trace!(
            "[{}] ConnectionImpl::write: {} bytes, end_stream {}",
            self.id,
            data.len(),
            end_stream
        );
        self.write_end_stream = end_stream;
        if self.write_buffer_len() == 0 && self.state == State::Open {
            match u32::try_from(data.len()) {
                Ok(len) if len > 0 || end_stream => {
                    self.pending_write = len;
                    flush.push(PendingWrite::new(self.id, data.split()));
                }
                Ok(_) => {}
                // 4 GiB in one write: queued, with an empty pending write to flush it.
                Err(_) => self.write_through_queue(data, flush),
            }
        } else {
            self.append_write(data, flush);
        }
        if !self.above_high_watermark && self.write_buffer_len() > self.buffer_limit as usize {
            self.on_above_high_watermark(events);
        }
    }

    /// A first write too large for a pending write's count (4 GiB): queued, and an empty
    /// pending write makes the end of the dispatch flush the queue.
    #[cold]
    fn write_through_queue(&mut self, data: &mut BytesMut, flush: &mut Vec<PendingWrite>) {
        self.write_buffer.move_in(data);
        flush.push(PendingWrite::new(self.id, BytesMut::new()));
    }

    /// A write behind bytes already waiting: joined to this dispatch's pending write when
    /// there is one, else queued.
    fn append_write(&mut self, data: &mut BytesMut, flush: &mut [PendingWrite]) {
        let len = data.len();
        let total = u32::try_from(len)
            .ok()
            .and_then(|n| self.pending_write.checked_add(n));
        let pending = match total {
            Some(_) if self.pending_write > 0 && len > 0 => {
                let id = self.id;
                flush.iter_mut().rev().find(|pending| pending.id == id)
            }
            _ => None,
        };
        match (pending, total) {
            (Some(pending), Some(total)) => match pending.push(data.split()) {
                Ok(()) => self.pending_write = total,
                // A third allocation: queued behind the pending write.
                Err(chunk) => self.write_buffer.push_chunk(chunk),
            },
            _ => self.write_buffer.move_in(data),
        }
    }

    /// A write after `end_stream` or close: Envoy ignores it; the bytes are dropped. Only
    /// when a filter races a close (the peer reset while a response was in flight).
    #[cold]
    fn drop_late_write(&self, data: &mut BytesMut) {
        trace!(
            "[{}] dropping {} bytes written after close/end_stream",
            self.id,
            data.len()
        );
        data.clear();
    }

    /// The write buffer went above the limit (a peer slower than its source): only with
    /// more than `per_connection_buffer_limit_bytes` waiting.
    #[cold]
    fn on_above_high_watermark(&mut self, events: &mut VecDeque<(ConnectionId, ConnectionEvent)>) {
        self.above_high_watermark = true;
        trace!("[{}] write buffer above high watermark", self.id);
        events.push_back((self.id, ConnectionEvent::AboveWriteBufferHighWatermark));
    }

    /// Flushes the write buffer until it is empty or the kernel pushes back; sends the FIN
    /// after `end_stream`; finishes a flushing close. Raises `BelowWriteBufferLowWatermark`
    /// and close events into `events`. Never called while a pending write is held (it is
    /// flushed by [`flush_pending`](Self::flush_pending) in the dispatch that wrote it).
    ///
    /// The request path's writes leave through `flush_pending`; this runs after the kernel
    /// pushed back (on the next write-ready edge), for a connecting socket's first bytes, and
    /// to send our FIN or finish a flushing close.
    pub fn on_write_ready(&mut self, events: &mut VecDeque<(ConnectionId, ConnectionEvent)>) {
        debug_assert_eq!(self.pending_write, 0, "a pending write is flushed first");
        if !matches!(self.state, State::Open | State::Closing) {
            return;
        }
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        while !self.write_buffer.is_empty() {
            match self.write_buffer.write_to(socket) {
                Ok(0) => break,
                Ok(n) => {
                    trace!(
                        "[{}] ConnectionImpl::onWriteReady: wrote {n} bytes",
                        self.id
                    );
                }
                Err(e) => {
                    std::hint::cold_path();
                    match e.kind() {
                        // The kernel pushed back: the rest waits for the next write-ready edge.
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            debug!("[{}] write error: {e}", self.id);
                            self.close_socket(ConnectionEvent::RemoteClose, events);
                            return;
                        }
                    }
                }
            }
        }
        self.after_flush(events);
    }

    /// Flushes the pending write this connection's [`write`](Self::write) put in the flush
    /// list in this dispatch: one `send` (a `writev` for two chunks) that the kernel takes whole on the
    /// request path. What it does not take is queued (and waits for the next write-ready edge);
    /// then as [`on_write_ready`](Self::on_write_ready): the low watermark, our FIN, the end of
    /// a flushing close. A pending write dropped by a close in the meantime is not sent.
    pub(crate) fn flush_pending(
        &mut self,
        pending: PendingWrite,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        let len = self.pending_write as usize;
        if len == 0 {
            // No bytes held: an `end_stream` alone (or bytes that went to the queue), or a
            // close without flush dropped them (`on_write_ready` then does nothing).
            std::hint::cold_path();
            self.on_write_ready(events);
            return;
        }
        self.pending_write = 0;
        // Open or closing: a closed connection holds no pending write.
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let result = pending.send(socket);
        if !matches!(result, Ok(n) if n == len) {
            self.pending_not_taken(pending, result, events);
            return;
        }
        trace!(
            "[{}] ConnectionImpl::onWriteReady: wrote {len} bytes",
            self.id
        );
        if !self.write_buffer.is_empty() {
            // Bytes of a third allocation queued behind the pending write.
            std::hint::cold_path();
            self.on_write_ready(events);
            return;
        }
        self.after_flush(events);
    }

    /// The kernel took only part of a pending write, or none of it, or failed: the rest goes
    /// in front of the queue (where it waits for the next write-ready edge), or the connection
    /// closes on an error. Only when the peer's receive window is full, or on a reset.
    #[cold]
    fn pending_not_taken(
        &mut self,
        pending: PendingWrite,
        result: io::Result<usize>,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        match result {
            Ok(taken) => {
                // Part of it: try the rest at once, as a flush does (the kernel may take more).
                self.write_buffer.put_back(pending, taken);
                self.on_write_ready(events);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.write_buffer.put_back(pending, 0);
                self.on_write_ready(events);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_buffer.put_back(pending, 0);
                self.after_flush(events);
            }
            Err(e) => {
                debug!("[{}] write error: {e}", self.id);
                self.close_socket(ConnectionEvent::RemoteClose, events);
            }
        }
    }

    /// After a flush: the low watermark, a stall (bytes left for the next write-ready edge),
    /// our FIN after `end_stream`, the end of a flushing close.
    #[inline]
    fn after_flush(&mut self, events: &mut VecDeque<(ConnectionId, ConnectionEvent)>) {
        if self.above_high_watermark {
            self.check_low_watermark(events);
        }
        if !self.write_buffer.is_empty() {
            // The kernel pushed back: the rest waits for the peer, maybe long.
            self.write_buffer.on_stall();
            return;
        }
        if (self.write_end_stream && !self.write_shutdown) || self.state == State::Closing {
            // Once per connection: our FIN, or the end of a flushing close.
            self.on_write_buffer_drained(events);
        }
    }

    /// Raises `BelowWriteBufferLowWatermark` once the buffer drained below half the limit
    /// (only after it went above the limit).
    #[cold]
    fn check_low_watermark(&mut self, events: &mut VecDeque<(ConnectionId, ConnectionEvent)>) {
        if self.write_buffer_len() < self.low_watermark() {
            self.above_high_watermark = false;
            trace!("[{}] write buffer below low watermark", self.id);
            events.push_back((self.id, ConnectionEvent::BelowWriteBufferLowWatermark));
        }
    }

    /// Everything was flushed after `end_stream` was written (send our FIN) or after
    /// `close(FlushWrite*)` (close now, or let the delayed-close timer do it).
    #[cold]
    fn on_write_buffer_drained(&mut self, events: &mut VecDeque<(ConnectionId, ConnectionEvent)>) {
        if self.write_end_stream && !self.write_shutdown {
            trace!("[{}] write end_stream: shutdown(Write)", self.id);
            if let Some(socket) = self.socket.as_ref() {
                let _ = socket.shutdown(Shutdown::Write);
            }
            self.write_shutdown = true;
        }
        if self.state == State::Closing {
            if self.delay_after_flush {
                // FlushWriteAndDelay: the timer (armed at close) finishes the close; the peer
                // closing first finishes it sooner (see on_read_ready).
                return;
            }
            let event = self.closing_event;
            self.close_socket(event, events);
        }
    }

    fn low_watermark(&self) -> usize {
        (self.buffer_limit as usize) / 2
    }

    // === Closing (Envoy's close → closeSocket) ===

    /// Closes as `close_type` says. A flushing close with nothing buffered closes at once.
    pub fn close(
        &mut self,
        close_type: CloseType,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        self.close_raising(close_type, ConnectionEvent::LocalClose, events);
    }

    /// `close` raising `event` when the socket finally closes (RemoteClose when the peer's FIN
    /// is what ends a connection without half-close, but our last bytes still need flushing).
    pub(crate) fn close_raising(
        &mut self,
        close_type: CloseType,
        event: ConnectionEvent,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        match self.state {
            State::Closed => return,
            State::Closing if close_type != CloseType::NoFlush => return,
            _ => {}
        }
        let flush = close_type != CloseType::NoFlush && self.state != State::Connecting;
        if !flush || self.write_buffer_len() == 0 && close_type == CloseType::FlushWrite {
            self.close_socket(event, events);
            return;
        }
        debug!(
            "[{}] closing: {:?} with {} bytes buffered",
            self.id,
            close_type,
            self.write_buffer_len()
        );
        self.state = State::Closing;
        self.closing_event = event;
        // The caller arms the delayed-close timer (ConnectionHandler::close_after keeps it, so
        // that an open connection carries none).
        self.delay_after_flush = close_type == CloseType::FlushWriteAndDelay;
        self.update_interest();
        self.activate(FileReadyType::WRITE);
    }

    /// Whether the connection is closing and waits for its delayed-close timer.
    pub(crate) fn awaiting_delayed_close(&self) -> bool {
        self.state == State::Closing && self.delay_after_flush
    }

    /// The delayed-close timer fired: close now.
    pub(crate) fn on_delayed_close_timeout(
        &mut self,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        if self.state == State::Closing {
            debug!("[{}] delayed close timeout", self.id);
            let event = self.closing_event;
            self.close_socket(event, events);
        }
    }

    /// Closes the socket now and raises `event` (Envoy's `closeSocket`): the file event is
    /// dropped first, so no callback for this connection can run again.
    pub fn close_socket(
        &mut self,
        event: ConnectionEvent,
        events: &mut VecDeque<(ConnectionId, ConnectionEvent)>,
    ) {
        if self.state == State::Closed {
            return;
        }
        debug!("[{}] closeSocket: {:?}", self.id, event);
        self.state = State::Closed;
        self.file_event = None;
        self.write_buffer.clear();
        // A pending write held by the handler is dropped when it finds this.
        self.pending_write = 0;
        self.read_buffer = None;
        self.socket = None;
        events.push_back((self.id, event));
    }
}

/// How long `FlushWriteAndDelay` waits for the peer to close (Envoy's `delayed_close_timeout`
/// default, 1 s).
pub const DELAYED_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn unspecified_like(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl WriteBuffer {
        /// Moves a copy of `data` in (its own allocation: it joins no other chunk).
        fn push(&mut self, data: &[u8]) {
            self.move_in(&mut BytesMut::from(data));
        }
    }

    #[test]
    fn write_buffer_consumes_across_chunks() {
        let mut wb = WriteBuffer::default();
        wb.push(b"hello");
        wb.push(b"world");
        assert_eq!(chunks(&wb).len(), 2);
        wb.consume(7);
        assert_eq!(wb.len(), 3);
        assert_eq!(&wb.queue.as_ref().unwrap().chunks[0][..], b"rld");
    }

    #[test]
    fn a_drained_write_buffer_owns_no_queue_and_the_next_reuses_it() {
        let free = || FREE_QUEUES.with(|f| f.borrow().len());
        let mut wb = WriteBuffer::default();
        wb.push(b"hello");
        assert!(wb.queue.is_some());
        let before = free();
        wb.consume(5);
        assert!(
            wb.queue.is_none(),
            "drained: the queue went back to the worker"
        );
        assert_eq!(free(), before + 1);
        let mut other = WriteBuffer::default();
        other.push(b"x");
        assert_eq!(free(), before, "the next write buffer reuses it");
        drop(other);
        assert_eq!(
            free(),
            before + 1,
            "dropping a write buffer gives its queue back"
        );
    }

    #[test]
    fn move_in_takes_the_bytes() {
        let mut wb = WriteBuffer::default();
        let mut data = BytesMut::from(&b"abc"[..]);
        wb.move_in(&mut data);
        assert!(data.is_empty());
        assert_eq!(wb.len(), 3);
    }

    /// An open connection over real loopback TCP, and its peer (which never reads).
    fn open_connection() -> (Connection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, remote) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let local = accepted.local_addr().unwrap();
        let socket = TcpStream::from_std(accepted);
        let cx = Connection::new_server(ConnectionId::allocate(0), socket, remote, local, 1);
        (cx, peer)
    }

    /// More than the socket buffers hold (the peer never reads).
    fn filler() -> BytesMut {
        BytesMut::from(&vec![b'x'; 32 * 1024 * 1024][..])
    }

    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

    /// A worker scratch buffer (as `http::scratch` keeps them) holding an encoded response.
    fn scratch_with_response() -> (BytesMut, *const u8) {
        let mut scratch = BytesMut::with_capacity(32 * 1024);
        let start = scratch.as_ptr();
        scratch.extend_from_slice(RESPONSE);
        (scratch, start)
    }

    /// Whether `scratch` is its allocation's only owner again (it starts over at its start).
    fn unshared(mut scratch: BytesMut, start: *const u8) -> bool {
        scratch.try_reclaim(32 * 1024) && scratch.as_ptr() == start
    }

    #[test]
    fn a_partial_write_does_not_pin_the_scratch_it_came_from() {
        let (mut cx, _peer) = open_connection();
        let mut events = VecDeque::new();
        let (mut scratch, start) = scratch_with_response();
        let mut flush = Vec::new();
        cx.write(&mut filler(), false, &mut flush, &mut events);
        cx.write(&mut scratch, false, &mut flush, &mut events);
        assert_eq!(flush.len(), 1, "the second write joins the pending one");
        cx.flush_pending(flush.pop().unwrap(), &mut events);
        assert!(
            cx.write_buffer_len() > RESPONSE.len(),
            "the write did not stall"
        );
        assert_eq!(&chunks(&cx.write_buffer).back().unwrap()[..], RESPONSE);
        assert!(
            unshared(scratch, start),
            "the stalled chunk pins the scratch"
        );
    }

    #[test]
    fn a_write_behind_a_stall_does_not_pin_the_scratch_it_came_from() {
        let (mut cx, _peer) = open_connection();
        let mut events = VecDeque::new();
        let mut flush = Vec::new();
        cx.write(&mut filler(), false, &mut flush, &mut events);
        cx.flush_pending(flush.pop().unwrap(), &mut events);
        assert!(cx.write_buffer_len() > 0, "the filler did not stall");
        let (mut scratch, start) = scratch_with_response();
        cx.write(&mut scratch, false, &mut flush, &mut events);
        assert!(
            flush.is_empty(),
            "a stalled connection waits for the kernel's write-ready edge"
        );
        assert_eq!(&chunks(&cx.write_buffer).back().unwrap()[..], RESPONSE);
        assert!(
            unshared(scratch, start),
            "the waiting chunk pins the scratch"
        );
    }

    fn chunks(wb: &WriteBuffer) -> &VecDeque<BytesMut> {
        &wb.queue.as_ref().expect("bytes waiting").chunks
    }

    #[test]
    fn a_stall_copies_shared_small_chunks_once_and_keeps_large_ones() {
        let mut wb = WriteBuffer::default();
        let mut big = BytesMut::from(&vec![b'b'; MAX_COPIED_LEFTOVER + 1][..]);
        let big_ptr = big.as_ptr();
        wb.move_in(&mut big);
        let mut small = BytesMut::from(&b"small-and-more"[..]);
        wb.move_in(&mut small.split_to(5));
        let shared_ptr = chunks(&wb)[1].as_ptr();
        let mut own = BytesMut::from(&b"own"[..]);
        let own_ptr = own.as_ptr();
        wb.move_in(&mut own);
        drop(own); // the chunk is its allocation's only owner now
        wb.on_stall();
        assert_eq!(chunks(&wb)[0].as_ptr(), big_ptr, "a large chunk is kept");
        assert_eq!(&chunks(&wb)[1][..], b"small");
        assert_ne!(
            chunks(&wb)[1].as_ptr(),
            shared_ptr,
            "a small shared one is copied"
        );
        assert_eq!(chunks(&wb)[2].as_ptr(), own_ptr, "an unshared one is kept");
        let copied = chunks(&wb)[1].as_ptr();
        wb.on_stall();
        assert_eq!(
            chunks(&wb)[1].as_ptr(),
            copied,
            "a copied chunk is not copied again"
        );
        // Written behind the stall: copied on arrival.
        let mut behind = small.split_to(4);
        let behind_ptr = behind.as_ptr();
        wb.move_in(&mut behind);
        assert_eq!(&chunks(&wb)[3][..], b"-and");
        assert_ne!(chunks(&wb)[3].as_ptr(), behind_ptr);
        assert_eq!(wb.len(), MAX_COPIED_LEFTOVER + 1 + 5 + 3 + 4);
        // Drained, the queue forgets the stall: the next chunk is moved in, not copied.
        wb.consume(wb.len());
        let mut next = small.split_to(2);
        let next_ptr = next.as_ptr();
        wb.move_in(&mut next);
        assert_eq!(chunks(&wb)[0].as_ptr(), next_ptr);
    }

    #[test]
    fn a_chunk_written_right_behind_the_last_one_joins_it() {
        let mut wb = WriteBuffer::default();
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(b"head");
        wb.move_in(&mut out);
        out.extend_from_slice(b"body");
        wb.move_in(&mut out);
        assert_eq!(chunks(&wb).len(), 1, "one slice for the kernel");
        assert_eq!(&chunks(&wb)[0][..], b"headbody");
        wb.push(b"tail"); // another allocation: a chunk of its own
        assert_eq!(chunks(&wb).len(), 2);
        assert_eq!(wb.len(), 12);
        wb.consume(6);
        assert_eq!(&chunks(&wb)[0][..], b"dy");
        out.extend_from_slice(b"more");
        wb.move_in(&mut out);
        assert_eq!(chunks(&wb).len(), 3, "only the last chunk is joined");
        wb.consume(wb.len());
        assert!(wb.is_empty());
        assert!(out.try_reclaim(64), "every chunk let go of the buffer");
    }

    /// An open connection (buffer limit `limit`) and its peer, which reads with a timeout.
    fn open_connection_with_limit(limit: u32) -> (Connection, std::net::TcpStream) {
        let (mut cx, peer) = open_connection();
        cx.buffer_limit = limit;
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (cx, peer)
    }

    /// Everything the peer reads until our FIN (or a reset).
    fn read_to_end(peer: &mut std::net::TcpStream) -> Vec<u8> {
        use std::io::Read;
        let mut got = Vec::new();
        let _ = peer.read_to_end(&mut got);
        got
    }

    #[test]
    fn a_pending_write_joins_later_writes_and_counts_as_buffered() {
        let (mut cx, mut peer) = open_connection_with_limit(1024);
        let mut events = VecDeque::new();
        let mut flush = Vec::new();
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(b"head ");
        cx.write(&mut out, false, &mut flush, &mut events);
        assert!(out.is_empty(), "the bytes were taken");
        assert_eq!(cx.write_buffer_len(), 5);
        assert_eq!(cx.pending_write, 5);
        out.extend_from_slice(b"body ");
        cx.write(&mut out, false, &mut flush, &mut events);
        let mut other = BytesMut::from(&b"forwarded "[..]);
        cx.write(&mut other, false, &mut flush, &mut events);
        let mut third = BytesMut::from(&b"tail"[..]);
        cx.write(&mut third, true, &mut flush, &mut events);
        assert_eq!(flush.len(), 1, "one pending write per connection");
        assert_eq!(cx.write_buffer_len(), 24, "pending and queued bytes count");
        assert_eq!(flush[0].first.len(), 10, "same allocation: joined");
        assert_eq!(&flush[0].second[..], b"forwarded ", "another: second slot");
        assert_eq!(cx.write_buffer.len(), 4, "a third allocation: queued");
        cx.flush_pending(flush.pop().unwrap(), &mut events);
        assert_eq!(cx.write_buffer_len(), 0);
        assert!(events.is_empty(), "no watermark, no close: {events:?}");
        assert_eq!(read_to_end(&mut peer), b"head body forwarded tail");
        assert!(
            out.try_reclaim(64),
            "the flush let go of the writer's buffer"
        );
    }

    #[test]
    fn a_close_without_flush_drops_a_pending_write() {
        let (mut cx, mut peer) = open_connection_with_limit(1024);
        let mut events = VecDeque::new();
        let mut flush = Vec::new();
        cx.write(
            &mut BytesMut::from(&b"late"[..]),
            false,
            &mut flush,
            &mut events,
        );
        cx.close(CloseType::NoFlush, &mut events);
        assert_eq!(cx.write_buffer_len(), 0);
        cx.flush_pending(flush.pop().unwrap(), &mut events);
        assert_eq!(
            events.pop_front().map(|e| e.1),
            Some(ConnectionEvent::LocalClose)
        );
        drop(cx);
        assert_eq!(read_to_end(&mut peer), b"", "the bytes were dropped");
    }

    #[test]
    fn a_flushing_close_sends_a_pending_write_then_closes() {
        let (mut cx, mut peer) = open_connection_with_limit(1024);
        let mut events = VecDeque::new();
        let mut flush = Vec::new();
        cx.write(
            &mut BytesMut::from(&b"last"[..]),
            false,
            &mut flush,
            &mut events,
        );
        cx.close(CloseType::FlushWrite, &mut events);
        assert_eq!(cx.state(), State::Closing, "bytes still to flush");
        assert!(events.is_empty());
        cx.flush_pending(flush.pop().unwrap(), &mut events);
        assert_eq!(cx.state(), State::Closed);
        assert_eq!(
            events.pop_front().map(|e| e.1),
            Some(ConnectionEvent::LocalClose)
        );
        drop(cx);
        assert_eq!(read_to_end(&mut peer), b"last");
    }

    #[test]
    fn a_pending_write_above_the_limit_raises_both_watermarks() {
        let (mut cx, mut peer) = open_connection_with_limit(4);
        let mut events = VecDeque::new();
        let mut flush = Vec::new();
        cx.write(
            &mut BytesMut::from(&b"12345"[..]),
            true,
            &mut flush,
            &mut events,
        );
        assert_eq!(
            events.pop_front().map(|e| e.1),
            Some(ConnectionEvent::AboveWriteBufferHighWatermark)
        );
        cx.flush_pending(flush.pop().unwrap(), &mut events);
        assert_eq!(
            events.pop_front().map(|e| e.1),
            Some(ConnectionEvent::BelowWriteBufferLowWatermark)
        );
        assert_eq!(read_to_end(&mut peer), b"12345", "then our FIN");
    }

    #[test]
    fn an_end_stream_alone_is_flushed_as_our_fin() {
        let (mut cx, mut peer) = open_connection_with_limit(1024);
        let mut events = VecDeque::new();
        let mut flush = Vec::new();
        cx.write(&mut BytesMut::new(), true, &mut flush, &mut events);
        cx.flush_pending(flush.pop().expect("a flush is due"), &mut events);
        assert_eq!(read_to_end(&mut peer), b"");
        assert!(!cx.write_pending(), "the FIN went out");
    }

    #[test]
    fn connection_ids_are_unique_per_slot_reuse() {
        let a = ConnectionId::allocate(3);
        let b = ConnectionId::allocate(3);
        assert_ne!(a, b);
        assert_eq!(format!("{b}"), format!("C{}", b.global_id()));
    }
}
