//! The worker's scratch buffer for HTTP/1 bytes going out: the encoder writes into it
//! ([`take_encode`] / [`give_encode`]). (Body bytes coming in need none: the codec splits them
//! off the worker's read buffer, see `codec::decode`.)
//!
//! It relies on a property of `BytesMut`: a part split off a buffer shares its allocation, and
//! once every part has been dropped the buffer is the allocation's only owner again and its
//! next `reserve` starts over at the beginning of the same allocation. `Connection::write`
//! takes the encoded bytes with `split()`; they share this buffer until the kernel has them,
//! and the buffer keeps the rest of its capacity for the next message.
//!
//! In steady state it costs no allocation per request, and no connection or stream owns a
//! buffer of its own (an idle keep-alive connection must own no buffer). When the parts handed
//! out are still in flight (a write the kernel has not taken yet) and the room behind them is
//! used up, the buffer moves on to a fresh allocation of [`CHUNK`] bytes and the old one is
//! freed with its last part: one allocation per many messages.
//!
//! Called by the router filter and the connection manager.

use bytes::BytesMut;
use std::cell::RefCell;

/// Size of a fresh scratch allocation: many heads, or a few small bodies.
const CHUNK: usize = 32 * 1024;

/// The encode buffer is refreshed when less than this is left: a head plus a small body fits.
const LOW: usize = 8 * 1024;

thread_local! {
    static ENCODE: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// This worker's encode buffer, empty and with room for a head and a small body.
///
/// Use as `let mut out = take_encode(); ...encode...; io.write(.., &mut out); give_encode(out)`.
/// Taking (not borrowing) the buffer makes nesting harmless: a nested user finds an empty
/// buffer and allocates its own.
pub fn take_encode() -> BytesMut {
    let mut buf = ENCODE
        .try_with(|scratch| std::mem::take(&mut *scratch.borrow_mut()))
        .unwrap_or_default();
    if buf.capacity() < LOW {
        // Free when the written parts are gone (the allocation is reused from its start).
        buf.reserve(CHUNK);
    }
    buf
}

/// Gives the encode buffer back once its bytes were handed to a connection. Bytes left in it
/// (a caller that wrote nothing out) are discarded.
pub fn give_encode(mut buf: BytesMut) {
    buf.clear();
    let _ = ENCODE.try_with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        // Keep the larger of the two when a nested user gave one back first.
        if buf.capacity() >= scratch.capacity() {
            *scratch = buf;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_bytes_leave_and_the_allocation_is_reused() {
        let mut out = take_encode();
        let (start, capacity) = (out.as_ptr(), out.capacity());
        assert!(capacity >= LOW);
        out.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        // What Connection::write does with the bytes.
        let chunk = out.split().freeze();
        give_encode(out);
        assert_eq!(&chunk[..], b"GET / HTTP/1.1\r\n\r\n");
        drop(chunk); // the kernel took them
        let mut out = take_encode();
        // More than what is left behind the written bytes, but no more than the allocation:
        // the buffer starts over at the beginning of the same allocation.
        out.reserve(capacity - 8);
        assert_eq!(out.as_ptr(), start);
        give_encode(out);
    }

    #[test]
    fn nested_users_get_their_own_buffer() {
        let mut outer = take_encode();
        outer.extend_from_slice(b"outer");
        let inner = take_encode();
        assert!(inner.is_empty());
        give_encode(inner);
        give_encode(outer);
        assert!(take_encode().is_empty());
    }
}
