//! The cross-thread post queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reactor::{Dispatcher, RunType};

#[test]
fn posts_from_several_threads_run_once_each_in_per_thread_fifo_order() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_000;
    let d = Dispatcher::new("t").unwrap();
    let seen: Arc<Mutex<Vec<(usize, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let poster = d.poster();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, s) = (poster.clone(), seen.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let s = s.clone();
                    assert!(p.post(Box::new(move || s.lock().unwrap().push((t, i)))));
                }
            })
        })
        .collect();
    // A watcher thread stops the loop once every post has run.
    let (p, s) = (poster.clone(), seen.clone());
    let stopper = std::thread::spawn(move || {
        while s.lock().unwrap().len() < THREADS * PER_THREAD {
            std::thread::sleep(Duration::from_millis(1));
        }
        p.exit();
    });
    d.run(RunType::RunUntilExit).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    stopper.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), THREADS * PER_THREAD);
    for t in 0..THREADS {
        let mine: Vec<usize> = seen
            .iter()
            .filter(|(tt, _)| *tt == t)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            mine,
            (0..PER_THREAD).collect::<Vec<_>>(),
            "thread {t} out of order"
        );
    }
    let snap = d.stats().snapshot();
    assert_eq!(snap.posts_run_total, (THREADS * PER_THREAD) as u64);
    assert_eq!(snap.post_queue_depth, 0);
}

#[test]
fn a_post_wakes_a_blocked_loop() {
    let d = Dispatcher::new("t").unwrap();
    let poster = d.poster();
    let ran = Arc::new(Mutex::new(false));
    let r = ran.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let p2 = poster.clone();
        poster.post(Box::new(move || {
            *r.lock().unwrap() = true;
            p2.exit();
        }));
    });
    d.run(RunType::RunUntilExit).unwrap(); // blocks with nothing registered until the post
    t.join().unwrap();
    assert!(*ran.lock().unwrap());
}

#[test]
fn a_post_made_from_a_post_runs_on_a_later_iteration() {
    let d = Dispatcher::new("t").unwrap();
    let p = d.poster();
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    p.clone().post(Box::new(move || {
        l.lock().unwrap().push("outer");
        let l2 = l.clone();
        p.post(Box::new(move || l2.lock().unwrap().push("inner")));
    }));
    d.run(RunType::NonBlock).unwrap();
    assert_eq!(log.lock().unwrap().as_slice(), &["outer"]);
    d.run(RunType::Block).unwrap();
    assert_eq!(log.lock().unwrap().as_slice(), &["outer", "inner"]);
}

#[test]
fn posting_to_a_dropped_dispatcher_fails_and_drops_the_callback() {
    let d = Dispatcher::new("t").unwrap();
    let p = d.poster();
    let witness = Arc::new(());
    let w = witness.clone();
    assert!(p.post(Box::new(move || drop(w))));
    drop(d);
    assert_eq!(
        Arc::strong_count(&witness),
        1,
        "queued callback dropped with the dispatcher"
    );
    assert!(!p.post(Box::new(|| {})));
}
