//! The level-triggered set: how the reactor provides `FileTriggerType::Level` on top of mio,
//! whose epoll registrations are all edge-triggered (`EPOLLET`).
//!
//! Owns a second epoll instance in which every level-triggered fd is registered *without*
//! `EPOLLET`, as libevent registers it. That instance's own fd is registered in mio's poll
//! (edge, readable), so the kernel tells mio when the set gains a ready fd. The dispatcher
//! calls [`LevelSet::harvest`] in step 2 of its loop, right after mio's poll, and reads the
//! harvested events in step 4 exactly like mio's. Nothing else calls it; it calls epoll (nix).
//!
//! # When to harvest
//! A harvest is an `epoll_wait` with a zero timeout on the set. It is needed when
//! - mio reported the set's token: an fd in it became ready (a new wake-up), or
//! - the previous harvest returned events: a level-triggered fd that is still ready is put
//!   back on the set's ready list by the kernel *without* a new wake-up, so mio would not
//!   report it again. [`LevelSet::maybe_ready`] says so, and the dispatcher then also polls
//!   mio with a zero timeout.
//!
//! A harvest that returns nothing proves the set's ready list empty; from then on any readiness
//! goes through a wake-up, which mio reports. So a level fd that stays ready fires on every
//! iteration, and an idle set costs nothing.
//!
//! # Why this, and not re-arming
//! The simple emulation re-arms each level-triggered fd after its callback (`EPOLL_CTL_MOD`
//! with `EPOLLET` makes the kernel re-check readiness and queue a fresh edge if the fd is still
//! ready). It is correct but costs one syscall per callback: in the `pingpong` benchmark it
//! measured 5% *more* CPU per event than libevent; the level set measured 5% less. With the
//! level set the per-event cost is libevent's (no syscall beyond the callback's own) and the
//! overhead is one zero-timeout `epoll_wait` per iteration while level fds are active,
//! amortised over the batch. A scheme where the callback reports whether it drained the fd
//! would avoid the syscall only for callbacks that read until `WouldBlock`, and would change
//! the callback's signature; the kernel already knows, so we ask it.
//!
//! This is Linux-specific (as is mio's epoll backend we build on).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::file_event::FileReadyType;

/// Most events one harvest returns; more wait for the next iteration (`maybe_ready` stays set).
const HARVEST_CAPACITY: usize = 1024;

pub(crate) struct LevelSet {
    epoll: Epoll,
    /// Reused harvest buffer; `len` entries are valid.
    buf: Vec<EpollEvent>,
    len: usize,
}

impl LevelSet {
    pub(crate) fn new() -> io::Result<LevelSet> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(LevelSet {
            epoll,
            buf: vec![EpollEvent::empty(); HARVEST_CAPACITY],
            len: 0,
        })
    }

    /// The set's own fd, to register in mio's poll.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }

    /// Whether the last harvest returned events (so the set may still hold ready fds).
    pub(crate) fn maybe_ready(&self) -> bool {
        self.len > 0
    }

    pub(crate) fn add(&self, fd: RawFd, key: usize, events: FileReadyType) -> io::Result<()> {
        let event = EpollEvent::new(epoll_flags(events), key as u64);
        Ok(self.epoll.add(borrow(fd), event)?)
    }

    pub(crate) fn modify(&self, fd: RawFd, key: usize, events: FileReadyType) -> io::Result<()> {
        let mut event = EpollEvent::new(epoll_flags(events), key as u64);
        Ok(self.epoll.modify(borrow(fd), &mut event)?)
    }

    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        Ok(self.epoll.delete(borrow(fd))?)
    }

    /// Collects the ready level-triggered fds without waiting.
    pub(crate) fn harvest(&mut self) -> io::Result<()> {
        self.len = 0;
        match self.epoll.wait(&mut self.buf, EpollTimeout::ZERO) {
            Ok(n) => self.len = n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The harvested (slab key, readiness) pairs.
    pub(crate) fn events(&self) -> impl Iterator<Item = (usize, FileReadyType)> + '_ {
        self.buf[..self.len]
            .iter()
            .map(|e| (e.data() as usize, from_epoll(e.events())))
    }
}

/// `fd` as the `AsFd` nix's epoll calls take.
fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the BorrowedFd is only passed to one epoll_ctl call and dropped with it (the
    // 'static lifetime never escapes these private helpers). The kernel treats the number as
    // plain data: a closed fd makes the call fail with EBADF, which is reported, nothing more.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The level-triggered interest for `events` (no `EPOLLET`). `EPOLLRDHUP` accompanies READ so
/// a hang-up is reported as CLOSED as well (mio does the same for its edge registrations).
fn epoll_flags(events: FileReadyType) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if events.intersects(FileReadyType::READ | FileReadyType::CLOSED) {
        flags |= EpollFlags::EPOLLRDHUP;
    }
    if events.contains(FileReadyType::READ) {
        flags |= EpollFlags::EPOLLIN;
    }
    if events.contains(FileReadyType::WRITE) {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

/// The same mapping as `FileReadyType::from_mio`, on raw epoll bits.
fn from_epoll(flags: EpollFlags) -> FileReadyType {
    let hup = flags.contains(EpollFlags::EPOLLHUP);
    let err = flags.contains(EpollFlags::EPOLLERR);
    let mut ready = FileReadyType::NONE;
    if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI | EpollFlags::EPOLLRDHUP)
        || hup
        || err
    {
        ready |= FileReadyType::READ;
    }
    if flags.contains(EpollFlags::EPOLLOUT) || hup || err {
        ready |= FileReadyType::WRITE;
    }
    if flags.contains(EpollFlags::EPOLLRDHUP) || hup {
        ready |= FileReadyType::CLOSED;
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_ready_fd_is_harvested_again_until_drained() {
        let mut set = LevelSet::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        set.add(b.as_raw_fd(), 7, FileReadyType::READ).unwrap();
        set.harvest().unwrap();
        assert!(!set.maybe_ready());
        a.write_all(b"x").unwrap();
        for _ in 0..3 {
            set.harvest().unwrap();
            assert_eq!(
                set.events().collect::<Vec<_>>(),
                vec![(7, FileReadyType::READ)]
            );
        }
        let mut buf = [0u8; 1];
        std::io::Read::read(&mut &b, &mut buf).unwrap();
        set.harvest().unwrap();
        assert!(!set.maybe_ready());
        set.delete(b.as_raw_fd()).unwrap();
    }

    #[test]
    fn hang_up_is_read_and_closed() {
        let mut set = LevelSet::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        set.add(
            b.as_raw_fd(),
            1,
            FileReadyType::READ | FileReadyType::CLOSED,
        )
        .unwrap();
        drop(a);
        set.harvest().unwrap();
        let (_, ready) = set.events().next().unwrap();
        assert!(
            ready.contains(FileReadyType::READ | FileReadyType::CLOSED),
            "{ready}"
        );
    }

    #[test]
    fn mapping() {
        assert_eq!(epoll_flags(FileReadyType::CLOSED), EpollFlags::EPOLLRDHUP);
        assert_eq!(from_epoll(EpollFlags::EPOLLOUT), FileReadyType::WRITE);
        assert_eq!(
            from_epoll(EpollFlags::EPOLLERR),
            FileReadyType::READ | FileReadyType::WRITE
        );
    }
}
