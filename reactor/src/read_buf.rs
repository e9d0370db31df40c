//! Reading a socket straight into a buffer's spare capacity (libevent's `evbuffer_read`).
//!
//! `Read::read` wants an initialised `&mut [u8]`, so a caller reading into a growable buffer
//! must either zero the room first (a `memset` of the whole read size per read, whatever
//! arrives) or read into a zeroed scratch and copy the bytes over (a `memcpy` of every byte
//! read). [`recv_into`] does neither: the kernel writes into the buffer's uninitialised spare
//! capacity and only the bytes it wrote are added to the buffer. This is the one place the
//! proxy reads its sockets through, and the reactor is where its `unsafe` lives.
//!
//! Called by the proxy's `Connection::read_into`; calls `recv(2)` (socket_io.rs).

use std::io;
use std::os::fd::RawFd;

use bytes::BytesMut;

/// One `recv(2)` of at most `max` bytes from `fd` appended to `buf`; returns how many bytes
/// were read (0: the peer shut down its write side). Makes room for `max` bytes first if `buf`
/// has less spare capacity (the usual `reserve`: it reuses the buffer's allocation when nothing
/// else shares it). Errors are the socket's (`WouldBlock` for a drained non-blocking socket).
pub fn recv_into(fd: RawFd, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < max {
        buf.reserve(max);
    }
    let spare = buf.spare_capacity_mut();
    let want = max.min(spare.len());
    // SAFETY: `spare` is valid for writes of `spare.len() >= want` bytes and nothing else
    // refers to it while the call runs; recv(2) writes at most `want` bytes there and reads
    // none (uninitialised memory is fine for it).
    let n = unsafe { crate::socket_io::recv(fd, spare.as_mut_ptr().cast(), want) }?;
    // SAFETY: the kernel initialised the first `n <= want <= spare capacity` bytes after the
    // buffer's end, so the buffer's first `len + n` bytes are initialised.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    /// Waits (bounded) until `server` has `len` bytes to read, with a blocking peek.
    fn wait_readable(server: &TcpStream, len: usize) {
        server.set_nonblocking(false).unwrap();
        let mut peek = vec![0; len];
        while server.peek(&mut peek).unwrap() < len {}
        server.set_nonblocking(true).unwrap();
    }

    #[test]
    fn appends_what_was_read_after_what_the_buffer_holds() {
        let (mut client, server) = pair();
        client.write_all(b"hello world").unwrap();
        wait_readable(&server, 11);
        let mut buf = BytesMut::from(&b">"[..]);
        assert_eq!(recv_into(server.as_raw_fd(), &mut buf, 5).unwrap(), 5);
        assert_eq!(&buf[..], b">hello");
        assert_eq!(recv_into(server.as_raw_fd(), &mut buf, 64).unwrap(), 6);
        assert_eq!(&buf[..], b">hello world");
        let err = recv_into(server.as_raw_fd(), &mut buf, 64).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(&buf[..], b">hello world", "a failed read appends nothing");
        drop(client);
        server.set_nonblocking(false).unwrap();
        assert_eq!(
            recv_into(server.as_raw_fd(), &mut buf, 64).unwrap(),
            0,
            "EOF"
        );
    }

    #[test]
    fn reuses_the_buffer_once_its_bytes_are_gone() {
        let (mut client, server) = pair();
        let mut buf = BytesMut::with_capacity(256);
        let start = buf.as_ptr();
        for round in 0..100u8 {
            client.write_all(&[round; 100]).unwrap();
            wait_readable(&server, 100);
            assert_eq!(recv_into(server.as_raw_fd(), &mut buf, 128).unwrap(), 100);
            assert_eq!(&buf[..], &[round; 100][..]);
            let offset = buf.as_ptr() as usize - start as usize;
            assert!(
                offset + 100 <= 256,
                "round {round}: outside the first allocation"
            );
            let _ = buf.split_to(60); // consumed by a parser, dropped
            buf.clear();
        }
    }
}
