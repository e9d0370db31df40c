//! Stats hot path: what a counter increment and a histogram record cost, and proof that two
//! workers incrementing the same counter do not contend when each has its own shard.
//!
//! `cargo bench --bench stats`. Compare `two_threads/own_shards` with `two_threads/one_shard`:
//! the first stays near the single-thread cost per increment; the second, where both threads hit
//! one cache line (what a naive shared `AtomicU64` does), is several times slower.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use nuncio::stats::{Counter, Store, Unit};

fn single_thread(c: &mut Criterion) {
    let store = Store::new().for_worker();
    let counter = store.counter("http.ingress.downstream_rq_total");
    let histogram = store.histogram("http.ingress.downstream_rq_time", Unit::Milliseconds);
    let mut g = c.benchmark_group("one_thread");
    g.bench_function("counter_inc", |b| b.iter(|| black_box(&counter).inc()));
    let mut v = 0u64;
    g.bench_function("histogram_record", |b| {
        b.iter(|| {
            v = (v + 7) % 5000;
            black_box(&histogram).record(v)
        })
    });
    g.finish();
}

/// Runs `iters` increments on each of two threads at once; returns the wall time.
fn run_pair(a: Counter, b: Counter, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(3));
    let spawn = |c: Counter| {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            for _ in 0..iters {
                black_box(&c).inc();
            }
        })
    };
    let (ta, tb) = (spawn(a), spawn(b));
    barrier.wait();
    let start = Instant::now();
    ta.join().expect("bench thread");
    tb.join().expect("bench thread");
    start.elapsed()
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");
    g.bench_function("own_shards", |b| {
        b.iter_custom(|iters| {
            let store = Store::new();
            let a = store.for_worker().counter("c");
            let b = store.for_worker().counter("c");
            run_pair(a, b, iters)
        })
    });
    g.bench_function("one_shard", |b| {
        b.iter_custom(|iters| {
            let store = Store::new().for_worker();
            run_pair(store.counter("c"), store.counter("c"), iters)
        })
    });
    g.finish();
}

criterion_group!(benches, single_thread, two_threads);
criterion_main!(benches);
