//! Signals delivered as ordinary events (libevent's `evsignal`, Envoy's `SignalEventImpl`).
//!
//! Owns the process-wide signal handler and the [`SignalEvent`] handle. Called by
//! [`Dispatcher::listen_for_signal`](crate::Dispatcher::listen_for_signal); calls `sigaction`
//! (via nix) and creates a level-triggered [`FileEvent`](crate::FileEvent) on its dispatcher.
//!
//! # The self-pipe
//! The handler runs on whatever thread the kernel picks and may only do async-signal-safe
//! work, so it does one thing: write the signal number, one byte, to the write end of a
//! non-blocking socketpair whose read end is registered on the listening dispatcher. The user's
//! callback then runs on the dispatcher's thread, at step 4 of an iteration like any file event,
//! never inside the handler. Signals that arrive while the byte is still unread coalesce (as
//! with any Unix signal): the callback runs once per wake-up, not once per signal.
//!
//! Why not `signalfd`: it requires the signal to be blocked in *every* thread of the process,
//! or the kernel may deliver it to an unblocked thread with the default action (termination),
//! and threads spawned by libraries (or the test harness) before the listener exists would not
//! inherit the mask. The self-pipe works whatever other threads do.
//!
//! Only one listener per signal per process; dropping it restores the default disposition.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::file_event::{FileEvent, FileReadyType, FileTriggerType};
use crate::Dispatcher;

/// The signals a dispatcher can listen for.
pub const SUPPORTED_SIGNALS: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
];

/// Write end of the self-pipe for each signal number, -1 when nobody listens.
static PIPE_WRITE_FDS: [AtomicI32; 32] = [const { AtomicI32::new(-1) }; 32];

extern "C" fn on_signal(signum: nix::libc::c_int) {
    let Some(slot) = usize::try_from(signum)
        .ok()
        .and_then(|i| PIPE_WRITE_FDS.get(i))
    else {
        return;
    };
    let fd = slot.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    let saved = nix::errno::Errno::last_raw();
    let byte = signum as u8;
    // SAFETY: write(2) is async-signal-safe; `fd` is a non-blocking socket kept open for as long
    // as it is published in PIPE_WRITE_FDS (SignalEvent::drop unpublishes it before closing),
    // and the buffer is a live local byte. A full pipe (EAGAIN) just coalesces the signal.
    unsafe {
        nix::libc::write(fd, (&byte as *const u8).cast(), 1);
    }
    nix::errno::Errno::set_raw(saved);
}

/// A signal listener. Dropping it stops listening and restores the default disposition.
pub struct SignalEvent {
    signal: Signal,
    // Field order matters: the file event (and with it the read end, owned by its callback) is
    // dropped before the write end.
    _file_event: FileEvent,
    _writer: UnixStream,
}

impl std::fmt::Debug for SignalEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalEvent")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

impl SignalEvent {
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

/// Errors a listener can hit, as `io::Error` with these messages.
fn unsupported(signal: Signal) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("reactor: cannot listen for {signal}: only SIGINT, SIGTERM, SIGHUP and SIGUSR1 are supported"),
    )
}

pub(crate) fn listen(
    dispatcher: &Dispatcher,
    signal: Signal,
    mut cb: impl FnMut() + 'static,
) -> io::Result<SignalEvent> {
    if !SUPPORTED_SIGNALS.contains(&signal) {
        return Err(unsupported(signal));
    }
    let slot = &PIPE_WRITE_FDS[signal as usize];
    let (mut reader, writer) = UnixStream::pair()?;
    reader.set_nonblocking(true)?;
    writer.set_nonblocking(true)?;
    let write_fd: RawFd = writer.as_raw_fd();
    if slot
        .compare_exchange(-1, write_fd, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("reactor: {signal} already has a listener in this process"),
        ));
    }
    let read_fd = reader.as_raw_fd();
    let file_event = dispatcher.create_file_event(
        read_fd,
        FileTriggerType::Level,
        FileReadyType::READ,
        move |_| {
            let mut buf = [0u8; 64];
            // Drain so the level-triggered event goes quiet until the next signal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            cb();
        },
    );
    let file_event = match file_event {
        Ok(fe) => fe,
        Err(e) => {
            slot.store(-1, Ordering::Release);
            return Err(e);
        }
    };
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: `on_signal` only does async-signal-safe work (an atomic load, write(2), errno).
    if let Err(e) = unsafe { sigaction(signal, &action) } {
        slot.store(-1, Ordering::Release);
        return Err(io::Error::from(e));
    }
    Ok(SignalEvent {
        signal,
        _file_event: file_event,
        _writer: writer,
    })
}

impl Drop for SignalEvent {
    fn drop(&mut self) {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: restoring the default disposition installs no handler code.
        if let Err(e) = unsafe { sigaction(self.signal, &default) } {
            log::error!(
                "reactor: restoring the default action of {} failed: {e}",
                self.signal
            );
        }
        // Unpublish before `_writer` closes. A handler already running on another thread that
        // loaded the fd just before this store could still write to it after it closes; the
        // window is a few instructions wide and only open while a signal races the drop.
        PIPE_WRITE_FDS[self.signal as usize].store(-1, Ordering::Release);
        // `_writer` closes after this body returns.
    }
}
