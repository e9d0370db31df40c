//! Run types, exit, deferred deletion and re-entrancy of the loop itself.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use reactor::{Dispatcher, FileEvent, FileReadyType, FileTriggerType, RunType};

#[test]
fn block_returns_at_once_when_nothing_is_registered() {
    let d = Dispatcher::new("t").unwrap();
    d.run(RunType::Block).unwrap();
    assert_eq!(d.stats().snapshot().loop_iterations_total, 0);
}

#[test]
fn non_block_runs_one_pass_without_waiting() {
    let d = Dispatcher::new("t").unwrap();
    let t = d.create_timer(|| panic!("not due yet"));
    t.enable(Duration::from_secs(60));
    let start = Instant::now();
    d.run(RunType::NonBlock).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "did not wait for the timer"
    );
    assert_eq!(d.stats().snapshot().loop_iterations_total, 1);
}

#[test]
fn block_runs_until_the_last_timer_fired() {
    let d = Dispatcher::new("t").unwrap();
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let t = d.create_timer(move || f.set(f.get() + 1));
    t.enable(Duration::from_millis(5));
    d.run(RunType::Block).unwrap();
    assert_eq!(fired.get(), 1);
}

#[test]
fn run_until_exit_keeps_running_with_nothing_registered() {
    let d = Dispatcher::new("t").unwrap();
    // Nothing registered on this dispatcher; a thread exits it after a while.
    let poster = d.poster();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        poster.exit();
    });
    d.run(RunType::RunUntilExit).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    t.join().unwrap();
}

#[test]
fn exit_from_a_callback_returns_after_the_current_iteration() {
    let d = Dispatcher::new("t").unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let count = Rc::new(Cell::new(0));
    let (c, d2) = (count.clone(), d.clone());
    // Level-triggered and never drained: would fire forever.
    let _fe = d
        .create_file_event(
            b.as_raw_fd(),
            FileTriggerType::Level,
            FileReadyType::READ,
            move |_| {
                c.set(c.get() + 1);
                if c.get() == 3 {
                    d2.exit();
                }
            },
        )
        .unwrap();
    a.write_all(b"x").unwrap();
    d.run(RunType::RunUntilExit).unwrap();
    assert_eq!(count.get(), 3);
    // The exit request was consumed: the next run keeps going until exit again.
    let d3 = d.clone();
    let t = d.create_timer(move || d3.exit());
    t.enable(Duration::from_millis(5));
    d.run(RunType::RunUntilExit).unwrap();
    assert!(count.get() > 3);
}

#[test]
fn run_from_a_callback_is_an_error() {
    let d = Dispatcher::new("t").unwrap();
    let result = Rc::new(RefCell::new(None));
    let (r, d2) = (result.clone(), d.clone());
    let t = d.create_timer(move || *r.borrow_mut() = Some(d2.run(RunType::NonBlock).is_err()));
    t.enable(Duration::ZERO);
    d.run(RunType::Block).unwrap();
    assert_eq!(*result.borrow(), Some(true));
}

/// A connection-like object that closes itself from its own read callback.
struct Conn {
    event: Option<FileEvent>,
    _sock: UnixStream,
    dropped: Rc<Cell<bool>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

#[test]
fn deferred_delete_from_inside_the_objects_own_callback() {
    let d = Dispatcher::new("t").unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let dropped = Rc::new(Cell::new(false));
    let conn = Rc::new(RefCell::new(Conn {
        event: None,
        _sock: b,
        dropped: dropped.clone(),
    }));
    let conns: Rc<RefCell<Vec<Rc<RefCell<Conn>>>>> = Rc::new(RefCell::new(vec![conn.clone()]));
    let fd = conn.borrow()._sock.as_raw_fd();
    let (cs, d2, dr) = (conns.clone(), d.clone(), dropped.clone());
    let checked = Rc::new(Cell::new(false));
    let ch = checked.clone();
    let ev = d
        .create_file_event(fd, FileTriggerType::Edge, FileReadyType::READ, move |_| {
            // Close: remove from the owner's list and defer the drop; the object (and this very
            // closure, owned by its FileEvent) must survive until the callback returned.
            let me = cs.borrow_mut().pop().unwrap();
            d2.deferred_delete(Box::new(me));
            assert!(!dr.get(), "still alive inside its own callback");
            ch.set(true);
        })
        .unwrap();
    conn.borrow_mut().event = Some(ev);
    drop(conn);
    a.write_all(b"bye").unwrap();
    d.run(RunType::Block).unwrap();
    assert!(checked.get());
    assert!(dropped.get(), "reaped at the end of the iteration");
}

#[test]
fn deferred_objects_are_dropped_after_every_callback_of_the_iteration() {
    let d = Dispatcher::new("t").unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    struct Noisy(Rc<RefCell<Vec<&'static str>>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.0.borrow_mut().push("dropped");
        }
    }
    let (l1, l2, d2) = (log.clone(), log.clone(), d.clone());
    let t1 = d.create_timer(move || {
        l1.borrow_mut().push("timer 1");
        d2.deferred_delete(Box::new(Noisy(l1.clone())));
    });
    let t2 = d.create_timer(move || l2.borrow_mut().push("timer 2"));
    t1.enable(Duration::from_millis(1));
    t2.enable(Duration::from_millis(1));
    d.run(RunType::Block).unwrap();
    assert_eq!(log.borrow().as_slice(), &["timer 1", "timer 2", "dropped"]);
}

#[test]
fn now_is_cached_at_poll_return() {
    let d = Dispatcher::new("t").unwrap();
    let before = d.now();
    let seen = Rc::new(Cell::new(None));
    let (s, d2) = (seen.clone(), d.clone());
    let t = d.create_timer(move || {
        let a = d2.now();
        std::thread::sleep(Duration::from_millis(2));
        s.set(Some((a, d2.now())));
    });
    t.enable(Duration::from_millis(1));
    d.run(RunType::Block).unwrap();
    let (a, b) = seen.get().unwrap();
    assert_eq!(a, b, "constant during an iteration");
    assert!(a > before);
    assert_eq!(d.name(), "t");
}

#[test]
fn wall_now_is_read_once_per_iteration() {
    let d = Dispatcher::new("t").unwrap();
    let start = std::time::SystemTime::now();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, d2) = (seen.clone(), d.clone());
    let first = d.create_timer(move || {
        let a = d2.wall_now();
        std::thread::sleep(Duration::from_millis(2));
        s.borrow_mut().push((a, d2.wall_now()));
    });
    let (s, d3) = (seen.clone(), d.clone());
    let second = d.create_timer(move || {
        let a = d3.wall_now();
        s.borrow_mut().push((a, a));
    });
    first.enable(Duration::from_millis(1));
    second.enable(Duration::from_millis(30));
    d.run(RunType::Block).unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, seen[0].1, "constant during an iteration");
    assert!(seen[0].0 >= start);
    assert!(seen[1].0 > seen[0].0, "read again by a later iteration");
    // Outside `run`, the clock itself.
    assert!(d.wall_now() >= seen[1].0);
}
