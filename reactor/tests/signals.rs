//! Signal delivery. Signals are process-wide, so every signal test lives in this one test
//! binary and runs under one lock: no other test in the process can race them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{raise, sigaction, SaFlags, SigAction, SigHandler, SigSet};
use reactor::{Dispatcher, RunType, Signal, SUPPORTED_SIGNALS};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handler currently installed for `signal` (read by swapping and restoring).
fn current_handler(signal: Signal) -> SigHandler {
    let probe = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs SIG_IGN for an instant and puts the previous action straight back.
    let old = unsafe { sigaction(signal, &probe) }.unwrap();
    unsafe { sigaction(signal, &old) }.unwrap();
    old.handler()
}

#[test]
fn each_supported_signal_is_delivered_on_the_dispatcher_thread() {
    let _g = serial();
    let d = Dispatcher::new("t").unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let thread = std::thread::current().id();
    let listeners: Vec<_> = SUPPORTED_SIGNALS
        .iter()
        .map(|&sig| {
            let s = seen.clone();
            d.listen_for_signal(sig, move || {
                assert_eq!(std::thread::current().id(), thread);
                s.borrow_mut().push(sig);
            })
            .unwrap()
        })
        .collect();
    for &sig in &SUPPORTED_SIGNALS {
        // Sent to the whole process from another thread, as `kill` would.
        std::thread::spawn(move || nix::sys::signal::kill(nix::unistd::getpid(), sig).unwrap())
            .join()
            .unwrap();
        // The byte is in the self-pipe before `kill` returns; a few passes pick it up.
        for _ in 0..5_000 {
            if seen.borrow().contains(&sig) {
                break;
            }
            d.run(RunType::NonBlock).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(seen.borrow().contains(&sig), "{sig} not delivered");
    }
    assert_eq!(seen.borrow().as_slice(), &SUPPORTED_SIGNALS);
    drop(listeners);
    for &sig in &SUPPORTED_SIGNALS {
        assert_eq!(current_handler(sig), SigHandler::SigDfl, "{sig} restored");
    }
}

#[test]
fn signals_coalesce_into_one_callback_per_wake_up() {
    let _g = serial();
    let d = Dispatcher::new("t").unwrap();
    let count = Rc::new(RefCell::new(0));
    let c = count.clone();
    let _l = d
        .listen_for_signal(Signal::SIGUSR1, move || *c.borrow_mut() += 1)
        .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    raise(Signal::SIGUSR1).unwrap();
    d.run(RunType::NonBlock).unwrap();
    d.run(RunType::NonBlock).unwrap();
    assert_eq!(*count.borrow(), 1);
    raise(Signal::SIGUSR1).unwrap();
    d.run(RunType::NonBlock).unwrap();
    assert_eq!(*count.borrow(), 2);
}

#[test]
fn one_listener_per_signal_and_only_supported_signals() {
    let _g = serial();
    let d = Dispatcher::new("t").unwrap();
    let other = Dispatcher::new("u").unwrap();
    let l = d.listen_for_signal(Signal::SIGHUP, || {}).unwrap();
    let err = other
        .listen_for_signal(Signal::SIGHUP, || {})
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    drop(l);
    let _again = other.listen_for_signal(Signal::SIGHUP, || {}).unwrap();
    let err = d.listen_for_signal(Signal::SIGUSR2, || {}).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("SIGUSR2"), "{err}");
}
