//! Timers on a real dispatcher and clock: ordering, cancel, re-arm from a callback, precision.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use reactor::{Dispatcher, RunType, Timer};

#[test]
fn timers_fire_in_deadline_order_and_fifo_on_ties() {
    let d = Dispatcher::new("t").unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut timers = Vec::new();
    for (i, ms) in [(0, 30), (1, 10), (2, 20), (3, 10), (4, 20), (5, 10)] {
        let o = order.clone();
        let t = d.create_timer(move || o.borrow_mut().push(i));
        t.enable(Duration::from_millis(ms));
        timers.push(t);
    }
    d.run(RunType::Block).unwrap();
    assert_eq!(order.borrow().as_slice(), &[1, 3, 5, 2, 4, 0]);
}

#[test]
fn expiry_is_never_early_and_at_most_a_few_ms_late() {
    let d = Dispatcher::new("t").unwrap();
    let fired_at = Rc::new(Cell::new(None));
    let f = fired_at.clone();
    let t = d.create_timer(move || f.set(Some(Instant::now())));
    let start = Instant::now();
    t.enable(Duration::from_millis(25));
    assert!(t.enabled());
    d.run(RunType::Block).unwrap();
    let late = fired_at.get().unwrap() - start;
    assert!(late >= Duration::from_millis(25), "early: {late:?}");
    // The contract is 1 ms late under no load (the wheel's unit tests check it on a simulated
    // clock); a shared CI machine adds scheduling noise, so only gross lateness fails here.
    assert!(late < Duration::from_millis(25 + 250), "late: {late:?}");
    assert!(!t.enabled());
}

#[test]
fn disable_cancels_and_enable_re_arms() {
    let d = Dispatcher::new("t").unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let t = d.create_timer(move || c.set(c.get() + 1));
    t.enable(Duration::from_millis(1));
    t.disable();
    assert!(!t.enabled());
    d.run(RunType::Block).unwrap(); // nothing armed: returns at once
    assert_eq!(count.get(), 0);
    t.enable(Duration::from_millis(50));
    t.enable(Duration::from_millis(1)); // re-arm replaces the earlier deadline
    let (c, seen) = (count.clone(), Rc::new(Cell::new(None)));
    let s2 = seen.clone();
    let sentinel = d.create_timer(move || s2.set(Some(c.get())));
    sentinel.enable(Duration::from_millis(20));
    d.run(RunType::Block).unwrap();
    assert_eq!(seen.get(), Some(1), "fired before the 20 ms sentinel");
    assert_eq!(count.get(), 1, "and only once");
}

#[test]
fn a_timer_re_arms_itself_from_its_callback() {
    let d = Dispatcher::new("t").unwrap();
    let count = Rc::new(Cell::new(0));
    let me: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let (c, m) = (count.clone(), me.clone());
    let t = d.create_timer(move || {
        c.set(c.get() + 1);
        if c.get() < 5 {
            m.borrow().as_ref().unwrap().enable(Duration::ZERO);
        }
    });
    t.enable(Duration::ZERO);
    *me.borrow_mut() = Some(t);
    d.run(RunType::Block).unwrap();
    assert_eq!(count.get(), 5);
    assert_eq!(d.stats().snapshot().timers_fired_total, 5);
    me.borrow_mut().take();
}

#[test]
fn a_timer_disabled_or_dropped_by_an_earlier_callback_of_the_batch_does_not_fire() {
    let d = Dispatcher::new("t").unwrap();
    let fired = Rc::new(RefCell::new(Vec::new()));
    let victims: Rc<RefCell<Vec<Option<Timer>>>> = Rc::new(RefCell::new(Vec::new()));
    let (f, v) = (fired.clone(), victims.clone());
    let first = d.create_timer(move || {
        f.borrow_mut().push("first");
        let mut v = v.borrow_mut();
        v[0].as_ref().unwrap().disable();
        v[1] = None; // drop
    });
    for name in ["disabled", "dropped"] {
        let f = fired.clone();
        victims
            .borrow_mut()
            .push(Some(d.create_timer(move || f.borrow_mut().push(name))));
    }
    first.enable(Duration::from_millis(2));
    for v in victims.borrow().iter() {
        v.as_ref().unwrap().enable(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(5)); // all three due in the same sweep
    d.run(RunType::Block).unwrap();
    assert_eq!(fired.borrow().as_slice(), &["first"]);
}

#[test]
fn a_timer_can_drop_itself_from_its_callback() {
    let d = Dispatcher::new("t").unwrap();
    let me: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let m = me.clone();
    let t = d.create_timer(move || {
        m.borrow_mut().take();
    });
    t.enable(Duration::ZERO);
    *me.borrow_mut() = Some(t);
    d.run(RunType::Block).unwrap();
    assert!(me.borrow().is_none());
}

#[test]
fn many_timers() {
    let d = Dispatcher::new("t").unwrap();
    let count = Rc::new(Cell::new(0u32));
    let timers: Vec<Timer> = (0..10_000)
        .map(|i| {
            let c = count.clone();
            let t = d.create_timer(move || c.set(c.get() + 1));
            t.enable(Duration::from_millis(i % 20));
            t
        })
        .collect();
    for t in timers.iter().step_by(2) {
        t.disable();
    }
    assert_eq!(d.stats().snapshot().timers_armed, 5_000);
    d.run(RunType::Block).unwrap();
    assert_eq!(count.get(), 5_000);
    assert_eq!(d.stats().snapshot().timers_armed, 0);
}

#[test]
fn dropping_an_armed_timer_disarms_it() {
    let d = Dispatcher::new("t").unwrap();
    let t = d.create_timer(|| panic!("dropped timers never fire"));
    t.enable(Duration::ZERO);
    drop(t);
    d.run(RunType::Block).unwrap();
    assert_eq!(d.stats().snapshot().timers_fired_total, 0);
}

#[test]
fn callbacks_of_one_iteration_share_the_cached_time_and_timers_armed_there_count_from_it() {
    let d = Dispatcher::new("t").unwrap();
    let armed_at = Rc::new(Cell::new(None));
    let fired_at = Rc::new(Cell::new(None));
    let f = fired_at.clone();
    let d2 = d.clone();
    let second = Rc::new(d.create_timer(move || f.set(Some(d2.now()))));
    let (a, s, d3) = (armed_at.clone(), second.clone(), d.clone());
    let first = d.create_timer(move || {
        let base = d3.now();
        // A long batch: the loop's time does not move while its callbacks run...
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            d3.now(),
            base,
            "now() is the time cached when the poll returned"
        );
        // ...and a timer armed now counts its delay from that cached time.
        s.enable(Duration::from_millis(10));
        a.set(Some(base));
    });
    first.enable(Duration::ZERO);
    d.run(RunType::Block).unwrap();
    let (armed, fired) = (armed_at.get().unwrap(), fired_at.get().unwrap());
    assert!(
        fired >= armed + Duration::from_millis(10),
        "fired {:?} after the cached arm time",
        fired - armed
    );
}
