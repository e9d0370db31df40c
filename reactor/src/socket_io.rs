//! The data path's two socket syscalls, `recvfrom(2)` and `sendto(2)`, made directly.
//!
//! glibc's `recv` and `send` are POSIX cancellation points: each call switches the thread to
//! asynchronous cancellation around the syscall and back (`__pthread_enable_asynccancel`,
//! `__pthread_disable_asynccancel`), which costs more user-space instructions than the
//! wrapper itself. Cancellation is a `pthread_cancel` feature, which no Rust thread uses, so
//! the reactor issues the same syscalls through `syscall(2)` instead: the kernel does the same
//! work and strace shows the same calls (glibc's `recv`/`send` are `recvfrom`/`sendto` with
//! no address), at about a quarter of the user-space cost (callgrind: ~65 -> ~15
//! instructions a call, four calls per proxied request).
//!
//! Called by [`recv_into`](crate::recv_into) and the proxy's `WriteBuffer`; calls the kernel.

use std::io;
use std::os::fd::RawFd;

use nix::libc;

/// `recv(fd, buf, len, 0)`: reads at most `len` bytes into `buf`; the byte count or the
/// socket's error (`WouldBlock` for a drained non-blocking socket).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes (they need not be initialised).
pub(crate) unsafe fn recv(fd: RawFd, buf: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller guarantees `buf`; the null address arguments make recvfrom(2) a
    // plain recv(2). glibc's syscall() sets errno and returns -1 on failure.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf,
            len,
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `send(fd, data, MSG_NOSIGNAL)` (what `std`'s `TcpStream::write` does): the byte count the
/// kernel took, or the socket's error (`WouldBlock` when its send buffer is full; a peer that
/// reset gives `EPIPE`/`ECONNRESET`, never a SIGPIPE).
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads of `data.len()` bytes for the duration of the call;
    // the null address makes sendto(2) a plain send(2).
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            data.as_ptr(),
            data.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn send_and_recv_move_bytes_and_report_would_block() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        assert_eq!(send(server.as_raw_fd(), b"hello").unwrap(), 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is valid for 8 bytes.
        let err = unsafe { recv(server.as_raw_fd(), buf.as_mut_ptr(), buf.len()) }.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(client);
        server.set_nonblocking(false).unwrap();
        // SAFETY: as above.
        let n = unsafe { recv(server.as_raw_fd(), buf.as_mut_ptr(), buf.len()) }.unwrap();
        assert_eq!(n, 0, "EOF");
        let err = loop {
            // The peer is gone: the first send may still be accepted, a later one fails
            // (EPIPE or ECONNRESET) without a SIGPIPE.
            match send(server.as_raw_fd(), b"x") {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(matches!(
            err.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ));
    }
}
