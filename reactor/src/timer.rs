//! Timers: the user's [`Timer`] handle and the sans-IO [`TimerWheel`] behind it.
//!
//! Owns the timer wheel (libevent keeps a min-heap; Envoy's `TimerImpl` sits on it). The
//! [`Dispatcher`](crate::Dispatcher) owns one wheel, arms and cancels entries through the
//! [`Timer`] handle, asks it for the poll timeout (step 1 of the loop) and for the expired
//! entries (step 3). The wheel calls nothing: time is passed in, so tests drive it with a
//! simulated clock (`origin + Duration`) and it never reads one.
//!
//! # The wheel
//! A hashed timing wheel of [`SLOTS`] slots of one [`TICK`] (1 ms) each, about 4 s per
//! revolution. An entry with deadline tick `d` lives in slot `d % SLOTS`, in a doubly linked list
//! threaded through a [`slab::Slab`], so:
//! - arm is O(1): one slab insert, link at the tail of the slot's list, set the slot's bit in an
//!   occupancy bitmap;
//! - cancel is O(1): the [`WheelKey`] is the slab key; unlink, remove, clear the bit if empty;
//! - same-deadline FIFO: entries with the same deadline share a slot and are appended in arming
//!   order; expiry walks slots in tick order and each list head to tail;
//! - memory: one slab entry per armed timer (about 40 bytes), freed slots reused, so arming and
//!   cancelling a million timers allocates only while the slab grows.
//!
//! Deadlines are rounded *up* to the next tick, so a timer never fires early and, when the loop
//! wakes on time, at most one tick (1 ms) late. An entry whose deadline is more than one
//! revolution away sits in its slot and is skipped (not fired) by the sweeps of earlier
//! revolutions. If the loop stalled for more than a revolution, every slot is swept once and the
//! due entries are sorted by deadline (a stable sort, so FIFO ties survive).
//!
//! A tick-based wheel rather than a heap: O(1) arm and cancel matter because the proxy re-arms
//! idle and request timers on every read; the price is the 1 ms resolution, which is the
//! resolution of `epoll_wait`'s timeout anyway.

use std::rc::Weak;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::dispatcher::Inner;

/// Width of one wheel slot.
pub const TICK: Duration = Duration::from_millis(1);
/// Number of slots (a power of two): one revolution is `SLOTS * TICK`.
pub const SLOTS: usize = 4096;
const MASK: u64 = SLOTS as u64 - 1;
const WORDS: usize = SLOTS / 64;
/// A link of a slot's list: an entry's slab key, in 4 bytes rather than 8 (an armed timer
/// costs its entry, so every idle connection's timer pays for the links); `NIL` ends a list.
type Link = u32;
const NIL: Link = Link::MAX;
/// The farthest deadline a timer can have.
const MAX_TICK: u64 = u64::MAX / 4;

/// Identifies an armed entry of a [`TimerWheel`]. Valid until the entry expires or is cancelled;
/// after that the key may name another entry, so the owner must forget it (the dispatcher does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelKey(Link);

struct Entry<T> {
    deadline: u64,
    prev: Link,
    next: Link,
    value: T,
}

#[derive(Clone, Copy)]
struct Slot {
    head: Link,
    tail: Link,
}

/// A hashed timing wheel holding values of type `T`; see the module docs.
pub struct TimerWheel<T> {
    origin: Instant,
    /// Every tick below this one has been swept; arming never targets an earlier tick.
    next_tick: u64,
    slots: Box<[Slot]>,
    occupied: [u64; WORDS],
    entries: Slab<Entry<T>>,
    /// Reused by `expire`: (deadline, entry key) of the due entries.
    due: Vec<(u64, usize)>,
    /// A tick no entry is due before (at most the end of a revolution), remembered from the
    /// last `next_expiry` scan and lowered by every `arm`; `None` when unknown. A cancel leaves
    /// it a valid lower bound (the loop may wake once for nothing, then rescans), and reaching
    /// it in `expire` forgets it. Without it, every poll that blocks would rescan every armed
    /// entry beyond the current revolution: with 10,000 idle connections each holding a
    /// one-hour idle timer, 10,000 entries per loop iteration.
    earliest: Option<u64>,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose tick 0 starts at `origin`.
    pub fn new(origin: Instant) -> TimerWheel<T> {
        TimerWheel {
            origin,
            next_tick: 0,
            slots: vec![
                Slot {
                    head: NIL,
                    tail: NIL
                };
                SLOTS
            ]
            .into_boxed_slice(),
            occupied: [0; WORDS],
            entries: Slab::new(),
            due: Vec::new(),
            earliest: None,
        }
    }

    /// Number of armed entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tick that has started at `now` (floor).
    fn tick_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        (since.as_nanos() / TICK.as_nanos()) as u64
    }

    /// Arms `value` to expire `delay` after `now`.
    pub fn arm(&mut self, now: Instant, delay: Duration, value: T) -> WheelKey {
        let since = now
            .saturating_duration_since(self.origin)
            .saturating_add(delay);
        // Round up: never early. Clamp absurd delays (`Duration::MAX`) to a tick that is
        // still ~292 million years away rather than wrapping.
        let deadline = since
            .as_nanos()
            .div_ceil(TICK.as_nanos())
            .min(MAX_TICK as u128) as u64;
        let deadline = deadline.max(self.next_tick);
        if let Some(earliest) = &mut self.earliest {
            *earliest = (*earliest).min(deadline);
        }
        let slot = (deadline & MASK) as usize;
        let tail = self.slots[slot].tail;
        let key = self.entries.insert(Entry {
            deadline,
            prev: tail,
            next: NIL,
            value,
        });
        // Fewer than 4 billion armed timers: a process runs out of memory long before.
        debug_assert!(key < NIL as usize);
        let key = key as Link;
        if tail == NIL {
            self.slots[slot].head = key;
            self.occupied[slot / 64] |= 1 << (slot % 64);
        } else {
            self.entries[tail as usize].next = key;
        }
        self.slots[slot].tail = key;
        WheelKey(key)
    }

    /// Cancels an armed entry, returning its value; `None` if `key` names no entry.
    pub fn cancel(&mut self, key: WheelKey) -> Option<T> {
        let key = key.0 as usize;
        if !self.entries.contains(key) {
            return None;
        }
        self.unlink(key);
        Some(self.entries.remove(key).value)
    }

    fn unlink(&mut self, key: usize) {
        let (deadline, prev, next) = {
            let e = &self.entries[key];
            (e.deadline, e.prev, e.next)
        };
        let slot = (deadline & MASK) as usize;
        if prev == NIL {
            self.slots[slot].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.slots[slot].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.slots[slot].head == NIL {
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
    }

    /// The distance (in slots) from slot `start` to the first occupied slot at or after it,
    /// wrapping around, if it is at most `max` slots away. Only the bitmap words up to `max`
    /// are looked at: the sweep of a few ticks at each loop iteration costs a word or two, not
    /// the whole bitmap, however far away the armed entries are.
    fn next_occupied(&self, start: usize, max: usize) -> Option<usize> {
        let mut slot = start;
        let mut dist = 0; // from `start` to `slot`
        loop {
            let bit = slot % 64;
            let bits = self.occupied[slot / 64] & (!0u64 << bit);
            if bits != 0 {
                let d = dist + bits.trailing_zeros() as usize - bit;
                return (d <= max).then_some(d);
            }
            dist += 64 - bit; // to the start of the next word
            if dist > max {
                return None;
            }
            slot = (slot + 64 - bit) % SLOTS;
        }
    }

    /// How long after `now` the next entry is due (zero if one is already due); `None` when the
    /// wheel is empty. Used as the poll timeout. It may be earlier than the next deadline
    /// (after a cancel, or when only entries of later revolutions are left), never later.
    pub fn next_expiry(&mut self, now: Instant) -> Option<Duration> {
        if self.entries.is_empty() {
            self.earliest = None;
            return None;
        }
        let deadline = match self.earliest {
            Some(tick) => tick,
            None => {
                let tick = self.scan_next_deadline();
                self.earliest = Some(tick);
                tick
            }
        };
        let at = self.origin + tick_duration(deadline);
        Some(at.saturating_duration_since(now))
    }

    /// The tick of the earliest entry due within the current revolution, or the end of the
    /// revolution if none is: the slots and entries are walked, so this costs what is armed.
    fn scan_next_deadline(&self) -> u64 {
        // The first occupied slot holding an entry of the current revolution gives the answer.
        let revolution_end = self.next_tick + SLOTS as u64;
        let start = (self.next_tick & MASK) as usize;
        let mut pos = 0;
        let mut deadline = revolution_end; // only far entries: wake after one revolution, re-check
        while pos < SLOTS {
            let Some(d) = self.next_occupied((start + pos) % SLOTS, SLOTS - 1 - pos) else {
                break;
            };
            let dist = pos + d;
            let tick = self.next_tick + dist as u64;
            let mut k = self.slots[(tick & MASK) as usize].head;
            let mut found = false;
            while k != NIL {
                let entry = &self.entries[k as usize];
                if entry.deadline < revolution_end {
                    found = true;
                    break;
                }
                k = entry.next;
            }
            if found {
                deadline = tick;
                break;
            }
            pos = dist + 1;
        }
        deadline
    }

    /// Removes every entry due at `now` and appends their values to `out`, earliest deadline
    /// first, same-deadline entries in arming order.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        let now_tick = self.tick_at(now);
        if now_tick < self.next_tick {
            return;
        }
        let span = now_tick - self.next_tick; // slots to sweep, minus one
        let stalled = span >= SLOTS as u64;
        let limit = if stalled { SLOTS - 1 } else { span as usize };
        let start = (self.next_tick & MASK) as usize;
        self.due.clear();
        let mut pos = 0;
        while pos <= limit {
            let Some(d) = self.next_occupied((start + pos) % SLOTS, limit - pos) else {
                break;
            };
            let dist = pos + d;
            let slot = (start + dist) % SLOTS;
            let mut k = self.slots[slot].head;
            while k != NIL {
                let key = k as usize;
                let next = self.entries[key].next;
                if self.entries[key].deadline <= now_tick {
                    self.unlink(key);
                    self.due.push((self.entries[key].deadline, key));
                }
                k = next;
            }
            pos = dist + 1;
        }
        if stalled {
            self.due.sort_by_key(|&(deadline, _)| deadline);
        }
        for &(_, k) in &self.due {
            out.push(self.entries.remove(k).value);
        }
        if self.earliest.is_some_and(|tick| tick <= now_tick) {
            self.earliest = None; // reached: what is due next must be looked up again
        }
        self.next_tick = now_tick + 1;
    }
}

/// The offset of the start of `tick` from the origin.
fn tick_duration(tick: u64) -> Duration {
    Duration::from_nanos(tick.saturating_mul(TICK.as_nanos() as u64))
}

/// A one-shot timer on its dispatcher's wheel (Envoy's `TimerImpl`, libevent's `evtimer`).
/// Dropping it disarms it; a timer dropped or disabled by another callback of the same batch
/// does not fire.
pub struct Timer {
    pub(crate) inner: Weak<Inner>,
    pub(crate) key: usize,
}

impl Timer {
    /// Arms (or re-arms) the timer to fire once, `delay` from now. Re-arming moves it to the back
    /// of the queue of timers with the same deadline.
    pub fn enable(&self, delay: Duration) {
        if let Some(inner) = self.inner.upgrade() {
            inner.timer_enable(self.key, delay);
        }
    }

    /// Disarms the timer; a no-op if it is not armed.
    pub fn disable(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.timer_disable(self.key);
        }
    }

    /// Whether the timer is armed (and has not fired yet).
    pub fn enabled(&self) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|inner| inner.timer_enabled(self.key))
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.timer_drop(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The wheel on a simulated clock: `at(ms)` is `origin + ms`.
    use super::*;

    struct Sim {
        origin: Instant,
        wheel: TimerWheel<u32>,
        fired: Vec<u32>,
    }

    impl Sim {
        fn new() -> Sim {
            let origin = Instant::now();
            Sim {
                origin,
                wheel: TimerWheel::new(origin),
                fired: Vec::new(),
            }
        }
        fn at(&self, us: u64) -> Instant {
            self.origin + Duration::from_micros(us)
        }
        fn arm(&mut self, now_us: u64, delay_us: u64, v: u32) -> WheelKey {
            let now = self.at(now_us);
            self.wheel.arm(now, Duration::from_micros(delay_us), v)
        }
        /// Expires at `now_us` and returns what fired then.
        fn expire(&mut self, now_us: u64) -> Vec<u32> {
            self.fired.clear();
            let now = self.at(now_us);
            self.wheel.expire(now, &mut self.fired);
            self.fired.clone()
        }
    }

    /// Every armed timer is one entry (an idle keep-alive connection's idle timeout is one):
    /// 4-byte links keep the dispatcher's entries at 24 bytes (32 with 8-byte links).
    #[test]
    fn an_entry_stays_small() {
        assert!(std::mem::size_of::<Entry<usize>>() <= 24);
    }

    #[test]
    fn the_occupied_slot_search_looks_no_further_than_asked() {
        let mut s = Sim::new();
        s.arm(0, 200_000, 1); // tick 200, slot 200
        s.arm(0, 4_090_000, 2); // tick 4090, slot 4090
        let w = &s.wheel;
        assert_eq!(w.next_occupied(0, 199), None);
        assert_eq!(w.next_occupied(0, 200), Some(200));
        assert_eq!(w.next_occupied(201, 3_888), None);
        assert_eq!(w.next_occupied(201, 3_889), Some(3_889));
        // Wrapping around past the end of the bitmap.
        assert_eq!(w.next_occupied(4_091, SLOTS - 1), Some(205));
        assert_eq!(w.next_occupied(4_091, 204), None);
        assert_eq!(w.next_occupied(200, 0), Some(0));
    }

    #[test]
    fn never_fires_early_and_at_most_one_tick_late() {
        let mut s = Sim::new();
        s.arm(300, 2_500, 1); // due at 2.8 ms -> tick 3
        assert_eq!(s.expire(2_799), Vec::<u32>::new());
        assert_eq!(
            s.wheel.next_expiry(s.at(2_799)),
            Some(Duration::from_micros(201))
        );
        assert_eq!(s.expire(3_000), vec![1]);
        assert!(s.wheel.is_empty());
        assert_eq!(s.wheel.next_expiry(s.at(3_000)), None);
    }

    #[test]
    fn same_deadline_fires_in_arming_order() {
        let mut s = Sim::new();
        for v in 0..10 {
            s.arm(0, 5_000, v);
        }
        s.arm(0, 4_000, 100);
        assert_eq!(s.expire(10_000), vec![100, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn rearm_moves_to_the_back_of_its_deadline() {
        let mut s = Sim::new();
        let a = s.arm(0, 5_000, 1);
        s.arm(0, 5_000, 2);
        assert_eq!(s.wheel.cancel(a), Some(1));
        s.arm(0, 5_000, 1);
        assert_eq!(s.expire(5_000), vec![2, 1]);
    }

    #[test]
    fn cancel_is_exact() {
        let mut s = Sim::new();
        let keys: Vec<_> = (0..100)
            .map(|v| s.arm(0, 1_000 * (v as u64 % 7), v))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(s.wheel.cancel(*k), Some(i as u32));
            }
        }
        assert_eq!(s.wheel.len(), 50);
        let mut fired = s.expire(10_000);
        fired.sort();
        assert_eq!(fired, (0..100).filter(|v| v % 2 == 1).collect::<Vec<_>>());
        assert_eq!(s.wheel.cancel(keys[1]), None);
    }

    #[test]
    fn zero_delay_fires_at_the_next_sweep() {
        let mut s = Sim::new();
        assert!(s.expire(1_000).is_empty());
        s.arm(1_000, 0, 7); // tick 1 has already been swept: next tick
        assert_eq!(
            s.wheel.next_expiry(s.at(1_000)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(s.expire(2_000), vec![7]);
    }

    #[test]
    fn timers_beyond_one_revolution_wait_their_turn() {
        let mut s = Sim::new();
        let rev = SLOTS as u64 * 1_000;
        s.arm(0, rev + 3_000, 1); // same slot as tick 3, next revolution
        s.arm(0, 3_000, 2);
        assert_eq!(s.expire(3_000), vec![2]);
        // Only the far entry is left: the wheel asks to be woken at the end of this revolution
        // at the latest (early, harmless), never after the deadline.
        let t = s.wheel.next_expiry(s.at(3_000)).unwrap();
        assert!(t <= Duration::from_micros(rev), "{t:?}");
        assert!(s.expire(rev).is_empty());
        assert_eq!(
            s.wheel.next_expiry(s.at(rev)),
            Some(Duration::from_millis(3))
        );
        assert_eq!(s.expire(rev + 3_000), vec![1]);
    }

    #[test]
    fn a_stalled_loop_fires_everything_due_in_deadline_order() {
        let mut s = Sim::new();
        let rev = SLOTS as u64 * 1_000;
        s.arm(0, rev + 5_000, 3);
        s.arm(0, 9_000, 2);
        s.arm(0, 1_000, 1);
        s.arm(0, 3 * rev, 4);
        assert_eq!(s.expire(2 * rev), vec![1, 2, 3]);
        assert_eq!(s.expire(3 * rev), vec![4]);
    }

    #[test]
    fn next_expiry_scans_across_the_wrap() {
        let mut s = Sim::new();
        // Move the wheel close to the end of its first revolution, then arm across the wrap.
        let late = (SLOTS as u64 - 2) * 1_000;
        assert!(s.expire(late).is_empty());
        s.arm(late, 5_000, 1);
        assert_eq!(
            s.wheel.next_expiry(s.at(late)),
            Some(Duration::from_millis(5))
        );
        assert_eq!(s.expire(late + 4_999), Vec::<u32>::new());
        assert_eq!(s.expire(late + 5_000), vec![1]);
    }

    #[test]
    fn an_absurd_delay_neither_wraps_nor_panics() {
        let mut s = Sim::new();
        let far = s.wheel.arm(s.at(0), Duration::MAX, 1);
        s.arm(0, 1_000, 2);
        assert_eq!(s.expire(1_000), vec![2]);
        let t = s.wheel.next_expiry(s.at(1_000)).unwrap();
        assert!(
            t <= Duration::from_millis(SLOTS as u64 + 1),
            "wake within a revolution: {t:?}"
        );
        assert!(s.expire(10 * SLOTS as u64 * 1_000).is_empty());
        assert_eq!(s.wheel.cancel(far), Some(1));
    }

    #[test]
    fn next_expiry_is_remembered_lowered_by_arms_and_never_late() {
        let mut s = Sim::new();
        let a = s.arm(0, 5_000, 1);
        s.arm(0, 9_000, 2);
        assert_eq!(s.wheel.next_expiry(s.at(0)), Some(Duration::from_millis(5)));
        // An earlier arm lowers the remembered answer at once.
        let c = s.arm(0, 2_000, 3);
        assert_eq!(s.wheel.next_expiry(s.at(0)), Some(Duration::from_millis(2)));
        // Cancelling the earliest leaves an early answer: the loop wakes once for nothing...
        assert_eq!(s.wheel.cancel(c), Some(3));
        assert_eq!(s.wheel.cancel(a), Some(1));
        assert_eq!(s.wheel.next_expiry(s.at(0)), Some(Duration::from_millis(2)));
        assert!(s.expire(2_000).is_empty());
        // ...and once that time is reached, the answer is exact again.
        assert_eq!(
            s.wheel.next_expiry(s.at(2_000)),
            Some(Duration::from_millis(7))
        );
        assert_eq!(s.expire(9_000), vec![2]);
        assert_eq!(s.wheel.next_expiry(s.at(9_000)), None);
    }

    #[test]
    fn many_timers_arm_and_cancel() {
        let mut s = Sim::new();
        let keys: Vec<_> = (0..100_000u32)
            .map(|v| s.arm(0, (v as u64 % 10_000) * 997, v))
            .collect();
        assert_eq!(s.wheel.len(), 100_000);
        for k in keys {
            assert!(s.wheel.cancel(k).is_some());
        }
        assert!(s.wheel.is_empty());
        assert!(s.wheel.occupied.iter().all(|w| *w == 0));
        assert_eq!(s.wheel.next_expiry(s.at(0)), None);
    }
}
