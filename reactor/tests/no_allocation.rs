//! The dispatch hot path allocates nothing per event: after a warm-up, a ring of level- and
//! edge-triggered socketpairs runs thousands of events (plus a timer re-armed on every event and
//! an activation) without a single heap allocation on the dispatcher's thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use reactor::{Dispatcher, FileEvent, FileReadyType, FileTriggerType, RunType};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts, in a const
// thread-local that needs no allocation or lazy initialisation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
}

#[test]
fn steady_state_dispatch_does_not_allocate() {
    const PAIRS: usize = 64;
    let d = Dispatcher::new("t").unwrap();
    let socks: Rc<Vec<(UnixStream, UnixStream)>> = Rc::new(
        (0..PAIRS)
            .map(|_| {
                let (a, b) = UnixStream::pair().unwrap();
                a.set_nonblocking(true).unwrap();
                b.set_nonblocking(true).unwrap();
                (a, b)
            })
            .collect(),
    );
    let events_run = Rc::new(Cell::new(0u64));
    let idle = Rc::new(d.create_timer(|| {}));
    let mut evs: Vec<FileEvent> = Vec::new();
    for i in 0..PAIRS {
        // Half level, half edge: both paths are exercised.
        let trigger = if i % 2 == 0 {
            FileTriggerType::Level
        } else {
            FileTriggerType::Edge
        };
        let (s, n, t) = (socks.clone(), events_run.clone(), idle.clone());
        evs.push(
            d.create_file_event(
                s[i].1.as_raw_fd(),
                trigger,
                FileReadyType::READ,
                move |_| {
                    n.set(n.get() + 1);
                    t.enable(Duration::from_secs(30)); // the per-read idle timer re-arm
                    let mut buf = [0u8; 16];
                    while let Ok(1..) = (&s[i].1).read(&mut buf) {}
                    let _ = (&s[(i + 1) % PAIRS].0).write(b"x");
                },
            )
            .unwrap(),
        );
    }
    for k in 0..8 {
        (&socks[k * PAIRS / 8].0).write_all(b"x").unwrap();
    }
    // Warm-up: the reused buffers reach their working size.
    for _ in 0..200 {
        evs[0].activate(FileReadyType::READ);
        d.run(RunType::NonBlock).unwrap();
    }
    let before_events = events_run.get();
    let before = allocations();
    for _ in 0..500 {
        evs[0].activate(FileReadyType::READ);
        d.run(RunType::NonBlock).unwrap();
    }
    let allocated = allocations() - before;
    let ran = events_run.get() - before_events;
    assert!(ran > 2_000, "the ring kept going: {ran} events");
    assert_eq!(allocated, 0, "{allocated} allocations during {ran} events");
    drop(evs);
}
