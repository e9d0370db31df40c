//! Reactor micro-benchmarks (criterion): timer wheel arm/cancel, timers through the dispatcher,
//! post queue throughput, and a small pingpong ring in level and edge mode.
//!
//!     cargo bench -p reactor --bench reactor
//!
//! The side-by-side comparison with libevent is `benches/pingpong_vs_libevent.sh` (it runs the
//! `pingpong` example, the full-size workload). Figures are recorded in the README.
//!
//! A counting global allocator reports, before the benchmarks run, how many allocations one
//! million arms and cancels make on a warm wheel (the issue asks for "allocation-light").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reactor::{Dispatcher, FileEvent, FileReadyType, FileTriggerType, RunType, TimerWheel};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MILLION: usize = 1_000_000;

/// Arms `n` timers at spread deadlines, then cancels them all.
fn arm_and_cancel(wheel: &mut TimerWheel<usize>, keys: &mut Vec<reactor::WheelKey>, now: Instant) {
    keys.clear();
    for i in 0..keys.capacity() {
        keys.push(wheel.arm(now, Duration::from_millis((i % 60_000) as u64), i));
    }
    for k in keys.drain(..) {
        black_box(wheel.cancel(k));
    }
}

fn report_allocations() {
    let now = Instant::now();
    let mut wheel = TimerWheel::new(now);
    let mut keys = Vec::with_capacity(MILLION);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    arm_and_cancel(&mut wheel, &mut keys, now);
    let cold = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    arm_and_cancel(&mut wheel, &mut keys, now);
    let warm = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("timer wheel, 1,000,000 arms + cancels: {cold} allocations on a new wheel, {warm} on a warm one");
}

fn timer_wheel(c: &mut Criterion) {
    report_allocations();
    let mut g = c.benchmark_group("timer_wheel");
    g.sample_size(10);
    g.throughput(Throughput::Elements(MILLION as u64));
    let now = Instant::now();
    let mut wheel = TimerWheel::new(now);
    let mut keys = Vec::with_capacity(MILLION);
    g.bench_function("arm_then_cancel_1M", |b| {
        b.iter(|| arm_and_cancel(&mut wheel, &mut keys, now))
    });
    g.finish();

    let mut g = c.benchmark_group("timer_wheel_single");
    let mut wheel = TimerWheel::new(now);
    // 10,000 armed timers in the background, as on a busy worker.
    for i in 0..10_000 {
        wheel.arm(now, Duration::from_millis(i % 30_000), 0);
    }
    g.bench_function("arm_cancel_one", |b| {
        b.iter(|| {
            let k = wheel.arm(now, Duration::from_millis(15_000), 1);
            black_box(wheel.cancel(k))
        })
    });
    g.finish();
}

fn dispatcher_timers(c: &mut Criterion) {
    let d = Dispatcher::new("bench").unwrap();
    let timers: Vec<_> = (0..1_000).map(|_| d.create_timer(|| {})).collect();
    let mut g = c.benchmark_group("dispatcher_timer");
    g.throughput(Throughput::Elements(timers.len() as u64));
    // The proxy's pattern: every read re-arms the connection's idle timer.
    g.bench_function("re_enable_1000", |b| {
        b.iter(|| {
            for t in &timers {
                t.enable(Duration::from_secs(60));
            }
        })
    });
    g.finish();
}

fn posts(c: &mut Criterion) {
    let mut g = c.benchmark_group("post");
    const N: u64 = 10_000;
    g.throughput(Throughput::Elements(N));
    let d = Dispatcher::new("bench").unwrap();
    let poster = d.poster();
    g.bench_function("same_thread_10k", |b| {
        b.iter(|| {
            for _ in 0..N {
                poster.post(Box::new(|| {}));
            }
            d.run(RunType::NonBlock).unwrap();
        })
    });
    g.bench_function("cross_thread_10k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let done = Arc::new(AtomicUsize::new(0));
                let p = d.poster();
                let dn = done.clone();
                let start = Instant::now();
                let producer = std::thread::spawn(move || {
                    for _ in 0..N {
                        let dn = dn.clone();
                        p.post(Box::new(move || {
                            dn.fetch_add(1, Ordering::Relaxed);
                        }));
                    }
                });
                while done.load(Ordering::Relaxed) < N as usize {
                    d.run(RunType::NonBlock).unwrap();
                }
                total += start.elapsed();
                producer.join().unwrap();
            }
            total
        })
    });
    g.finish();
}

/// A small ring of the pingpong workload; returns events dispatched.
fn ring(pairs: usize, active: usize, writes: u64, trigger: FileTriggerType) -> u64 {
    struct Ring {
        socks: Vec<(UnixStream, UnixStream)>,
        writes: Cell<u64>,
        goal: u64,
        events: Cell<u64>,
        edge: bool,
        d: Dispatcher,
    }
    let d = Dispatcher::new("bench").unwrap();
    let socks = (0..pairs)
        .map(|_| {
            let (a, b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            b.set_nonblocking(true).unwrap();
            (a, b)
        })
        .collect();
    let r = Rc::new(Ring {
        socks,
        writes: Cell::new(0),
        goal: writes,
        events: Cell::new(0),
        edge: trigger == FileTriggerType::Edge,
        d: d.clone(),
    });
    let evs: Vec<FileEvent> = (0..pairs)
        .map(|i| {
            let r2 = r.clone();
            d.create_file_event(
                r.socks[i].1.as_raw_fd(),
                trigger,
                FileReadyType::READ,
                move |_| {
                    let r = &r2;
                    r.events.set(r.events.get() + 1);
                    let mut buf = [0u8; 64];
                    let want = if r.edge { 64 } else { 1 };
                    while let Ok(n @ 1..) = (&r.socks[i].1).read(&mut buf[..want]) {
                        for _ in 0..n {
                            if r.writes.get() >= r.goal {
                                r.d.exit();
                                return;
                            }
                            if let Ok(1) = (&r.socks[(i + 1) % r.socks.len()].0).write(b"x") {
                                r.writes.set(r.writes.get() + 1);
                            }
                        }
                        if !r.edge {
                            break;
                        }
                    }
                },
            )
            .unwrap()
        })
        .collect();
    for k in 0..active {
        (&r.socks[k * pairs / active].0).write_all(b"x").unwrap();
        r.writes.set(r.writes.get() + 1);
    }
    d.run(RunType::Block).unwrap();
    drop(evs);
    r.events.get()
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong_100_pairs_10_active");
    g.sample_size(10);
    const WRITES: u64 = 100_000;
    g.throughput(Throughput::Elements(WRITES));
    for (name, trigger) in [
        ("level", FileTriggerType::Level),
        ("edge", FileTriggerType::Edge),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(ring(100, 10, WRITES, trigger)))
        });
    }
    g.finish();
}

criterion_group!(benches, timer_wheel, dispatcher_timers, posts, pingpong);
criterion_main!(benches);
