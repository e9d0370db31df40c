//! `HcmTimerSet`: the connection manager's ten timers ([`HcmTimer`]) multiplexed on one
//! reactor timer.
//!
//! Envoy gives each of a connection's timers (idle, stream idle, request, route, per-try, ...)
//! a timer object of its own; a keep-alive connection that served one request would then own
//! three or four reactor timers (each a slab slot and a boxed callback) while idle. Here the
//! HCM filter owns one reactor `Timer`, and this set keeps a deadline per kind and says when
//! that timer must be re-armed: for the earliest deadline, never later than it.
//!
//! Sans-IO: time is passed in, and every call returns a [`Rearm`] for the caller to apply to
//! its reactor timer (`http::conn_manager_filter` does). Disarming is lazy: the timer may fire
//! with nothing due, and is then re-armed for the earliest remaining deadline (or left off
//! when none is left).
//!
//! Invariants: `armed` is the deadline the reactor timer was last enabled for (`NONE` when
//! it is disabled or has fired); every set deadline is `>= armed` unless it was set since the
//! timer fired (then the caller re-arms).

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::conn_manager_io::HcmTimer;

/// No deadline / not armed.
const NONE: u64 = u64::MAX;

/// What the caller must do with its reactor timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rearm {
    /// Nothing to change.
    Keep,
    /// Enable (or re-enable) it to fire after this long.
    Enable(Duration),
    /// Disable it: no deadline is left.
    Disable,
}

/// The deadlines of one connection's timers (nanoseconds since a process-wide origin, so each
/// takes 8 bytes). The connection's own three are inline; the seven that only run with a stream
/// live in a block taken from the worker's free list while one of them is set, so an idle
/// keep-alive connection pays 8 bytes for them instead of 56 (and a request no allocation).
#[derive(Debug)]
pub struct HcmTimerSet {
    /// ConnectionIdle, RequestHeaders, Drain.
    connection: [u64; CONNECTION_TIMERS],
    armed: u64,
    /// StreamIdle, Request, RouteTimeout, PerTryTimeout, RetryBackoff, ConnectTimeout,
    /// PerTryIdleTimeout; `None` when none is set.
    stream: Option<Box<StreamDeadlines>>,
}

const CONNECTION_TIMERS: usize = 3;
type StreamDeadlines = [u64; HcmTimer::ALL.len() - CONNECTION_TIMERS];

/// Where a timer's deadline lives.
enum Place {
    Connection(usize),
    Stream(usize),
}

/// [`place`] as a table indexed by the timer's discriminant (a load instead of a jump table
/// on every arm and disarm): the index in its array, [`STREAM`] set for the stream block.
const STREAM: u8 = 0x80;
const PLACES: [u8; HcmTimer::ALL.len()] = {
    let mut places = [0u8; HcmTimer::ALL.len()];
    places[HcmTimer::ConnectionIdle as usize] = 0;
    places[HcmTimer::RequestHeaders as usize] = 1;
    places[HcmTimer::Drain as usize] = 2;
    places[HcmTimer::StreamIdle as usize] = STREAM;
    places[HcmTimer::Request as usize] = STREAM | 1;
    places[HcmTimer::RouteTimeout as usize] = STREAM | 2;
    places[HcmTimer::PerTryTimeout as usize] = STREAM | 3;
    places[HcmTimer::RetryBackoff as usize] = STREAM | 4;
    places[HcmTimer::ConnectTimeout as usize] = STREAM | 5;
    places[HcmTimer::PerTryIdleTimeout as usize] = STREAM | 6;
    places
};

#[inline]
fn place(timer: HcmTimer) -> Place {
    let at = PLACES[timer as usize];
    let i = usize::from(at & !STREAM);
    if at & STREAM == 0 {
        Place::Connection(i)
    } else {
        Place::Stream(i)
    }
}

thread_local! {
    /// This worker's unused stream-deadline blocks (see [`HcmTimerSet`]).
    #[allow(clippy::vec_box)]
    static FREE_STREAM_DEADLINES: RefCell<Vec<Box<StreamDeadlines>>> =
        const { RefCell::new(Vec::new()) };
}

/// How many unused blocks a worker keeps (one per connection with a stream in flight, at most).
const MAX_FREE_STREAM_DEADLINES: usize = 1024;

impl Default for HcmTimerSet {
    fn default() -> Self {
        HcmTimerSet {
            connection: [NONE; CONNECTION_TIMERS],
            armed: NONE,
            stream: None,
        }
    }
}

impl Drop for HcmTimerSet {
    fn drop(&mut self) {
        self.release_stream();
    }
}

/// The origin of every deadline (set once, before any deadline is computed from a later
/// `now`; an earlier `now` only makes a deadline fire a little sooner than its true value).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

thread_local! {
    /// The last conversion: every call of one event-loop iteration passes the same cached
    /// `now`, and comparing two `Instant`s is cheaper than subtracting them.
    static LAST: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

#[inline]
fn nanos(at: Instant) -> u64 {
    if let Ok(Some((last, ns))) = LAST.try_with(Cell::get) {
        if last == at {
            return ns;
        }
    }
    convert(at)
}

/// [`nanos`] for a new `now` (the first deadline of an event-loop iteration): out of line, so
/// that every other arm is a compare and a few stores.
#[inline(never)]
fn convert(at: Instant) -> u64 {
    let ns = u64::try_from(at.saturating_duration_since(origin()).as_nanos()).unwrap_or(NONE - 1);
    let _ = LAST.try_with(|last| last.set(Some((at, ns))));
    ns
}

/// An instant on the timer set's clock: nanoseconds since the process-wide origin, in 8 bytes
/// (an `Instant` takes 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerClock(u64);

impl TimerClock {
    pub fn at(instant: Instant) -> TimerClock {
        TimerClock(nanos(instant))
    }

    /// How long before `now` this instant was (zero if it is not before).
    pub fn elapsed_at(self, now: Instant) -> Duration {
        Duration::from_nanos(nanos(now).saturating_sub(self.0))
    }

    /// This instant as an `Instant` (for the rare reader that needs one).
    pub fn instant(self) -> Instant {
        origin() + Duration::from_nanos(self.0)
    }
}

impl HcmTimerSet {
    fn get(&self, timer: HcmTimer) -> u64 {
        match place(timer) {
            Place::Connection(i) => self.connection[i],
            Place::Stream(i) => self.stream.as_ref().map_or(NONE, |s| s[i]),
        }
    }

    /// Sets a deadline; a stream timer's takes the stream block from the worker's free list if
    /// none is held (once per request), and gives it back when its last deadline clears.
    #[inline(never)]
    fn set(&mut self, timer: HcmTimer, deadline: u64) {
        match place(timer) {
            Place::Connection(i) => self.connection[i] = deadline,
            Place::Stream(i) => {
                if deadline == NONE && self.stream.is_none() {
                    return;
                }
                let stream = self.stream.get_or_insert_with(|| {
                    let mut block = FREE_STREAM_DEADLINES
                        .try_with(|free| free.borrow_mut().pop())
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    *block = [NONE; HcmTimer::ALL.len() - CONNECTION_TIMERS];
                    block
                });
                stream[i] = deadline;
                if deadline == NONE && stream.iter().all(|d| *d == NONE) {
                    self.release_stream();
                }
            }
        }
    }

    /// Gives the stream block back to the worker's free list.
    #[inline(never)]
    fn release_stream(&mut self) {
        if let Some(block) = self.stream.take() {
            let _ = FREE_STREAM_DEADLINES.try_with(|free| {
                let mut free = free.borrow_mut();
                if free.len() < MAX_FREE_STREAM_DEADLINES {
                    free.push(block);
                }
            });
        }
    }

    /// Fixes the origin (call before the first `now` is taken, e.g. when the filter is built).
    pub fn init_origin() {
        origin();
    }

    /// Whether `timer` has a deadline.
    pub fn is_armed(&self, timer: HcmTimer) -> bool {
        self.get(timer) != NONE
    }

    /// Arms `timer` to fire `after` from `now` (replacing its previous deadline). Four arms
    /// per proxied request (stream idle twice, route timeout, connection idle), so the usual
    /// case is a few loads and stores: `now` converted already this iteration, the stream
    /// block taken already, a deadline after the armed one.
    #[inline]
    pub fn arm(&mut self, timer: HcmTimer, now: Instant, after: Duration) -> Rearm {
        let after_ns = u64::try_from(after.as_nanos()).unwrap_or(NONE - 1);
        let deadline = nanos(now).saturating_add(after_ns).min(NONE - 1);
        match place(timer) {
            Place::Connection(i) => self.connection[i] = deadline,
            Place::Stream(i) => match &mut self.stream {
                Some(stream) => stream[i] = deadline,
                None => self.set(timer, deadline),
            },
        }
        if deadline < self.armed {
            self.armed = deadline;
            Rearm::Enable(after)
        } else {
            Rearm::Keep
        }
    }

    /// Disarms `timer`. The reactor timer is left running, even when no deadline is left: it
    /// then fires once for nothing and is re-armed for the earliest deadline (or left off).
    /// A keep-alive connection under load disarms and re-arms the same timers on every
    /// request (connection idle, stream idle, route timeout): each new deadline lies after the
    /// one the reactor timer is still armed for, so nothing touches the reactor's timer wheel
    /// until that stale deadline passes (one spurious firing per route timeout, instead of
    /// five wheel updates per request).
    ///
    /// A stream timer's block stays taken until [`disarm_stream`](Self::disarm_stream), even
    /// when this was its last deadline: a stream disarms a dozen timers on its way, most of
    /// them never armed, and each is then a store.
    #[inline]
    pub fn disarm(&mut self, timer: HcmTimer) -> Rearm {
        match place(timer) {
            Place::Connection(i) => self.connection[i] = NONE,
            Place::Stream(i) => {
                if let Some(stream) = &mut self.stream {
                    stream[i] = NONE;
                }
            }
        }
        Rearm::Keep
    }

    /// The stream ended: every stream timer is disarmed and the block goes back to the
    /// worker's free list (an idle connection owns none). Lazy as [`disarm`](Self::disarm).
    #[inline]
    pub fn disarm_stream(&mut self) -> Rearm {
        if self.stream.is_some() {
            self.release_stream();
        }
        Rearm::Keep
    }

    /// The reactor timer fired at `now`: the timers due, earliest deadline first (ties in
    /// [`HcmTimer::ALL`] order). Their deadlines stay set until [`take_due`](Self::take_due).
    pub fn fired(&mut self, now: Instant) -> Due {
        self.armed = NONE;
        let now = nanos(now);
        let mut due = Due::default();
        for timer in HcmTimer::ALL {
            let deadline = self.get(timer);
            if deadline <= now {
                due.entries[due.len] = (deadline, timer);
                due.len += 1;
            }
        }
        due.entries[..due.len].sort_by_key(|(deadline, timer)| (*deadline, *timer as usize));
        due
    }

    /// Clears `timer` if it is (still) due at `now`: true means its callback runs now. A timer
    /// re-armed or disarmed by an earlier callback of the same firing is not due any more.
    pub fn take_due(&mut self, timer: HcmTimer, now: Instant) -> bool {
        if self.get(timer) <= nanos(now) {
            self.set(timer, NONE);
            true
        } else {
            false
        }
    }

    /// After a firing's callbacks: arm the reactor timer for the earliest deadline left.
    pub fn rearm(&mut self, now: Instant) -> Rearm {
        let earliest = HcmTimer::ALL
            .iter()
            .map(|timer| self.get(*timer))
            .min()
            .unwrap_or(NONE);
        if earliest == NONE {
            let was_armed = self.armed != NONE;
            self.armed = NONE;
            return if was_armed {
                Rearm::Disable
            } else {
                Rearm::Keep
            };
        }
        if earliest == self.armed {
            return Rearm::Keep;
        }
        self.armed = earliest;
        Rearm::Enable(Duration::from_nanos(earliest.saturating_sub(nanos(now))))
    }
}

/// The timers due in one firing, in the order their callbacks run.
#[derive(Debug)]
pub struct Due {
    entries: [(u64, HcmTimer); HcmTimer::ALL.len()],
    len: usize,
}

impl Default for Due {
    fn default() -> Self {
        Due {
            entries: [(NONE, HcmTimer::ConnectionIdle); HcmTimer::ALL.len()],
            len: 0,
        }
    }
}

impl Due {
    pub fn timers(&self) -> impl Iterator<Item = HcmTimer> + '_ {
        self.entries[..self.len].iter().map(|(_, timer)| *timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn start() -> Instant {
        HcmTimerSet::init_origin();
        Instant::now()
    }

    #[test]
    fn every_timer_has_a_place_of_its_own() {
        let mut connection = [false; CONNECTION_TIMERS];
        let mut stream = [false; HcmTimer::ALL.len() - CONNECTION_TIMERS];
        for timer in HcmTimer::ALL {
            let taken = match place(timer) {
                Place::Connection(i) => &mut connection[i],
                Place::Stream(i) => &mut stream[i],
            };
            assert!(!*taken, "{timer:?} shares its place");
            *taken = true;
        }
    }

    #[test]
    fn the_reactor_timer_follows_the_earliest_deadline() {
        let t0 = start();
        let mut set = HcmTimerSet::default();
        assert_eq!(
            set.arm(HcmTimer::ConnectionIdle, t0, 3600 * 1000 * MS),
            Rearm::Enable(3600 * 1000 * MS)
        );
        // An earlier deadline moves the reactor timer; a later one does not.
        assert_eq!(
            set.arm(HcmTimer::StreamIdle, t0, 300 * 1000 * MS),
            Rearm::Enable(300 * 1000 * MS)
        );
        assert_eq!(
            set.arm(HcmTimer::RouteTimeout, t0, 15 * 1000 * MS),
            Rearm::Enable(15 * 1000 * MS)
        );
        assert_eq!(set.arm(HcmTimer::Drain, t0, 20 * 1000 * MS), Rearm::Keep);
        // Disarming is lazy while deadlines remain.
        assert_eq!(set.disarm(HcmTimer::RouteTimeout), Rearm::Keep);
        // Fired at 15 s for the disarmed route timeout: nothing is due; re-armed for the
        // earliest deadline left (the drain, at 20 s).
        let t15 = t0 + 15 * 1000 * MS;
        assert_eq!(set.fired(t15).timers().count(), 0);
        assert_eq!(set.rearm(t15), Rearm::Enable(5 * 1000 * MS));
    }

    #[test]
    fn due_timers_fire_in_deadline_order_once() {
        let t0 = start();
        let mut set = HcmTimerSet::default();
        set.arm(HcmTimer::ConnectTimeout, t0, 10 * MS);
        set.arm(HcmTimer::StreamIdle, t0, 5 * MS);
        set.arm(HcmTimer::Request, t0, 10 * MS);
        set.arm(HcmTimer::ConnectionIdle, t0, 50 * MS);
        let t10 = t0 + 10 * MS;
        let due: Vec<_> = set.fired(t10).timers().collect();
        assert_eq!(
            due,
            [
                HcmTimer::StreamIdle,
                HcmTimer::Request,
                HcmTimer::ConnectTimeout
            ]
        );
        assert!(set.take_due(HcmTimer::StreamIdle, t10));
        // The first callback re-armed Request and disarmed ConnectTimeout: neither runs.
        assert_eq!(
            set.arm(HcmTimer::Request, t10, 10 * MS),
            Rearm::Enable(10 * MS)
        );
        set.disarm(HcmTimer::ConnectTimeout);
        assert!(!set.take_due(HcmTimer::Request, t10));
        assert!(!set.take_due(HcmTimer::ConnectTimeout, t10));
        assert!(!set.take_due(HcmTimer::StreamIdle, t10), "fires once");
        assert_eq!(
            set.rearm(t10),
            Rearm::Keep,
            "already armed for the request timeout"
        );
    }

    #[test]
    fn disarming_the_last_deadline_leaves_the_timer_to_fire_for_nothing() {
        let t0 = start();
        let mut set = HcmTimerSet::default();
        assert_eq!(set.disarm(HcmTimer::ConnectionIdle), Rearm::Keep);
        assert_eq!(set.arm(HcmTimer::ConnectionIdle, t0, MS), Rearm::Enable(MS));
        assert!(set.is_armed(HcmTimer::ConnectionIdle));
        assert_eq!(set.disarm(HcmTimer::ConnectionIdle), Rearm::Keep);
        assert!(!set.is_armed(HcmTimer::ConnectionIdle));
        // A later deadline rides on the stale one: the timer fires at 1 ms for nothing, then
        // is armed for the real deadline.
        assert_eq!(set.arm(HcmTimer::Request, t0, 5 * MS), Rearm::Keep);
        let t1 = t0 + MS;
        assert_eq!(set.fired(t1).timers().count(), 0);
        assert_eq!(set.rearm(t1), Rearm::Enable(4 * MS));
        let t5 = t0 + 5 * MS;
        assert_eq!(set.fired(t5).timers().count(), 1);
        assert!(set.take_due(HcmTimer::Request, t5));
        assert_eq!(set.rearm(t5), Rearm::Keep, "nothing left: stays off");
        // After a firing the next deadline arms the timer again.
        assert_eq!(set.arm(HcmTimer::Drain, t0, MS), Rearm::Enable(MS));
        let t1 = t0 + MS;
        assert_eq!(
            set.fired(t1).timers().collect::<Vec<_>>(),
            [HcmTimer::Drain]
        );
        assert!(set.take_due(HcmTimer::Drain, t1));
        assert_eq!(set.rearm(t1), Rearm::Keep, "already disarmed by the firing");
    }

    #[test]
    fn stream_deadlines_take_a_block_only_while_one_is_set() {
        let t0 = start();
        let mut set = HcmTimerSet::default();
        assert!(std::mem::size_of::<HcmTimerSet>() <= 40);
        set.arm(HcmTimer::ConnectionIdle, t0, MS);
        assert!(
            set.stream.is_none(),
            "an idle connection's timers are inline"
        );
        set.arm(HcmTimer::RouteTimeout, t0, 10 * MS);
        set.arm(HcmTimer::StreamIdle, t0, 20 * MS);
        assert!(set.stream.is_some());
        set.disarm(HcmTimer::StreamIdle);
        assert!(set.is_armed(HcmTimer::RouteTimeout));
        let t10 = t0 + 10 * MS;
        assert_eq!(
            set.fired(t10).timers().collect::<Vec<_>>(),
            [HcmTimer::ConnectionIdle, HcmTimer::RouteTimeout]
        );
        assert!(set.take_due(HcmTimer::ConnectionIdle, t10));
        assert!(set.take_due(HcmTimer::RouteTimeout, t10));
        assert!(
            set.stream.is_none(),
            "the block went back once the last one cleared"
        );
        assert_eq!(set.rearm(t10), Rearm::Keep, "the firing left it off");
    }

    #[test]
    fn a_stream_keeps_its_block_until_it_ends() {
        let t0 = start();
        let mut set = HcmTimerSet::default();
        set.arm(HcmTimer::StreamIdle, t0, 10 * MS);
        set.disarm(HcmTimer::StreamIdle);
        assert!(!set.is_armed(HcmTimer::StreamIdle));
        assert!(set.stream.is_some(), "kept while the stream runs");
        set.arm(HcmTimer::RouteTimeout, t0, 10 * MS);
        set.arm(HcmTimer::ConnectionIdle, t0, 20 * MS);
        assert_eq!(set.disarm_stream(), Rearm::Keep);
        assert!(set.stream.is_none(), "the block went back");
        assert!(!set.is_armed(HcmTimer::RouteTimeout));
        assert!(
            set.is_armed(HcmTimer::ConnectionIdle),
            "a connection timer stays"
        );
        // The reactor timer still fires at 10 ms, for nothing, and is re-armed.
        let t10 = t0 + 10 * MS;
        assert_eq!(set.fired(t10).timers().count(), 0);
        assert_eq!(set.rearm(t10), Rearm::Enable(10 * MS));
    }

    #[test]
    fn a_deadline_set_by_a_callback_is_armed_after_the_firing() {
        let t0 = start();
        let mut set = HcmTimerSet::default();
        set.arm(HcmTimer::ConnectionIdle, t0, MS);
        let t1 = t0 + MS;
        set.fired(t1);
        assert!(set.take_due(HcmTimer::ConnectionIdle, t1));
        // The idle callback starts the drain sequence: its deadline must get the timer.
        assert_eq!(set.arm(HcmTimer::Drain, t1, 5 * MS), Rearm::Enable(5 * MS));
        assert_eq!(set.rearm(t1), Rearm::Keep);
    }
}
