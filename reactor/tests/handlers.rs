//! Shared handlers: many file events and timers created with a token call one `EventHandler`,
//! which is told which one fired; they behave like events with closures of their own
//! (dropping one from a callback of its batch stops it, a timer fires once).

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use reactor::{
    Dispatcher, EventHandler, FileEvent, FileReadyType, FileTriggerType, RunType, Timer,
};

/// Records what fired; drops the events named in `drop_on_fire` when any event fires.
#[derive(Default)]
struct Recorder {
    fired: RefCell<Vec<(&'static str, u64, FileReadyType)>>,
    files: RefCell<Vec<Option<FileEvent>>>,
    timers: RefCell<Vec<Option<Timer>>>,
    drop_all_on_first: bool,
}

impl Recorder {
    fn fire(&self, kind: &'static str, token: u64, ready: FileReadyType) {
        let first = self.fired.borrow().is_empty();
        self.fired.borrow_mut().push((kind, token, ready));
        if first && self.drop_all_on_first {
            // Dropped while their events may already sit in this batch: none may fire.
            let files: Vec<_> = self.files.borrow_mut().drain(..).collect();
            let timers: Vec<_> = self.timers.borrow_mut().drain(..).collect();
            drop((files, timers));
        }
    }
}

impl EventHandler for Recorder {
    fn on_file_event(&self, token: u64, ready: FileReadyType) {
        self.fire("file", token, ready);
    }
    fn on_timer(&self, token: u64) {
        self.fire("timer", token, FileReadyType::NONE);
    }
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn one_handler_hears_each_event_with_its_token() {
    let d = Dispatcher::new("t").unwrap();
    let recorder = Rc::new(Recorder::default());
    let id = d.add_handler(recorder.clone());
    let (a, mut b) = pair();
    let (c, _d) = pair();
    let ea = d
        .create_file_event_for(
            a.as_raw_fd(),
            FileTriggerType::Edge,
            FileReadyType::READ,
            id,
            7,
        )
        .unwrap();
    let _ec = d
        .create_file_event_for(
            c.as_raw_fd(),
            FileTriggerType::Edge,
            FileReadyType::READ,
            id,
            8,
        )
        .unwrap();
    let t = d.create_timer_for(id, 9);
    t.enable(Duration::from_millis(1));
    b.write_all(b"x").unwrap();
    while recorder.fired.borrow().len() < 2 {
        d.run(RunType::NonBlock).unwrap();
    }
    let mut fired = recorder.fired.borrow().clone();
    fired.sort_by_key(|f| f.1);
    assert_eq!(
        fired,
        [
            ("file", 7, FileReadyType::READ),
            ("timer", 9, FileReadyType::NONE)
        ]
    );
    assert!(!t.enabled(), "a timer fires once");
    drop(ea);
}

#[test]
fn events_dropped_by_an_earlier_callback_of_the_batch_do_not_fire() {
    let d = Dispatcher::new("t").unwrap();
    let recorder = Rc::new(Recorder {
        drop_all_on_first: true,
        ..Default::default()
    });
    let id = d.add_handler(recorder.clone());
    let pairs: Vec<_> = (0..4).map(|_| pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let e = d
            .create_file_event_for(
                a.as_raw_fd(),
                FileTriggerType::Edge,
                FileReadyType::READ,
                id,
                i as u64,
            )
            .unwrap();
        recorder.files.borrow_mut().push(Some(e));
        (&*b).write_all(b"x").unwrap();
        let t = d.create_timer_for(id, 100 + i as u64);
        t.enable(Duration::ZERO);
        recorder.timers.borrow_mut().push(Some(t));
    }
    std::thread::sleep(Duration::from_millis(5));
    for _ in 0..3 {
        d.run(RunType::NonBlock).unwrap();
    }
    // The first callback (a timer: timers run before file events) dropped every event.
    assert_eq!(
        recorder.fired.borrow().len(),
        1,
        "{:?}",
        recorder.fired.borrow()
    );
}
