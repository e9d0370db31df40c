//! `DrainManager`: how a draining server lets its connections go (Envoy's `DrainManagerImpl`,
//! `--drain-strategy` and `--drain-time-s`).
//!
//! Two decisions, both Envoy's:
//! - [`DrainManager::drain_close`] (Envoy's `drainClose()`): asked by the HTTP connection
//!   manager for each response while the server drains: should this response say
//!   `connection: close`? `immediate`: always. `gradual` (Envoy's default): with a probability
//!   that rises with the whole seconds elapsed since the drain started, `elapsed / drain_time`
//!   (0 in the first second, 1 from the end of the drain time on), so clients reconnect spread
//!   over the drain time instead of all at once. Checked against Envoy 1.40 with
//!   `--drain-time-s 8`: keep-alive clients polling every 200 ms got their `connection: close`
//!   between 1.4 s and 3.1 s, none in the first second.
//! - [`DrainSchedule`] (the callbacks of Envoy's `startDrainSequence`): when each connection
//!   registered for a drain notice hears it. `immediate`: all at once. `gradual`: connection `i`
//!   of `n` after `i / (4 n)` of the drain time, so every connection has heard it within the
//!   first quarter. Nuncio's HTTP connections take that notice (`ReadFilter::on_drain_close`:
//!   `connection: close` on the next response, idle ones closed after `drain_timeout`) so that a
//!   drain ends once clients are served; Envoy 1.40's HTTP/1 connections take none and stay
//!   open while idle.
//!
//! Sans-IO: time and randomness are passed in (tests use a simulated clock). Each worker's
//! connection handler (`network::connection_handler`) owns one, started by
//! `ConnectionHandler::start_draining` (SIGTERM, `/drain_listeners?graceful`).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// `--drain-strategy` (Envoy's `Server::DrainStrategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DrainStrategy {
    /// Connections are told to close spread over the drain time (Envoy's default).
    #[default]
    Gradual,
    /// Every connection is told to close as soon as the drain starts.
    Immediate,
}

impl DrainStrategy {
    /// The strategy named `name` on the command line.
    pub fn parse(name: &str) -> Option<DrainStrategy> {
        match name {
            "gradual" => Some(DrainStrategy::Gradual),
            "immediate" => Some(DrainStrategy::Immediate),
            _ => None,
        }
    }
}

impl fmt::Display for DrainStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrainStrategy::Gradual => "gradual",
            DrainStrategy::Immediate => "immediate",
        })
    }
}

/// One worker's drain state: not draining until [`start`](Self::start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainManager {
    strategy: DrainStrategy,
    drain_time: Duration,
    /// When the drain started (`None`: not draining).
    started: Option<Instant>,
}

impl DrainManager {
    pub fn new(strategy: DrainStrategy, drain_time: Duration) -> DrainManager {
        DrainManager {
            strategy,
            drain_time,
            started: None,
        }
    }

    /// The drain starts at `now` (a second call keeps the first start).
    pub fn start(&mut self, now: Instant) {
        self.started.get_or_insert(now);
    }

    pub fn draining(&self) -> bool {
        self.started.is_some()
    }

    pub fn strategy(&self) -> DrainStrategy {
        self.strategy
    }

    /// Envoy's `drainClose()`: whether a response at `now` should close its connection
    /// (`random`: a fresh random number). Never before the drain; `immediate`, a zero drain
    /// time or a drain past its time: always; `gradual`: when the whole seconds elapsed exceed
    /// `random % drain_time_s`, i.e. with probability `elapsed_s / drain_time_s`.
    pub fn drain_close(&self, now: Instant, random: u64) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        let drain_secs = self.drain_time.as_secs();
        if self.strategy == DrainStrategy::Immediate || drain_secs == 0 {
            return true;
        }
        let elapsed_secs = now.saturating_duration_since(started).as_secs();
        elapsed_secs >= drain_secs || elapsed_secs > random % drain_secs
    }

    /// When each of `count` connections hears the drain notice, as delays from the start:
    /// step `i` after `i / (4 count)` of the drain time under `gradual`, all at once under
    /// `immediate` (Envoy's `startDrainSequence`).
    pub fn notice_delay(&self, step: usize, count: usize) -> Duration {
        if self.strategy == DrainStrategy::Immediate || count == 0 {
            return Duration::ZERO;
        }
        self.drain_time.mul_f64(step as f64 / 4.0 / count as f64)
    }
}

/// The drain notices still to deliver, in order (the ids of the connections that were open
/// when the drain started), and when: [`DrainSchedule::due`] hands out those whose time came.
#[derive(Debug)]
pub struct DrainSchedule<Id> {
    queue: VecDeque<(Instant, Id)>,
}

impl<Id> DrainSchedule<Id> {
    /// The notices of `ids` (in order) for a drain `manager` started at `now`.
    pub fn new(manager: &DrainManager, now: Instant, ids: Vec<Id>) -> DrainSchedule<Id> {
        let count = ids.len();
        let queue = ids
            .into_iter()
            .enumerate()
            .map(|(step, id)| (now + manager.notice_delay(step, count), id))
            .collect();
        DrainSchedule { queue }
    }

    /// Takes the notices due at `now`, in order.
    pub fn due(&mut self, now: Instant) -> Vec<Id> {
        let ready = self.queue.iter().take_while(|(at, _)| *at <= now).count();
        self.queue.drain(..ready).map(|(_, id)| id).collect()
    }

    /// How long after `now` the next notice is due (`None`: none left).
    pub fn next_after(&self, now: Instant) -> Option<Duration> {
        self.queue
            .front()
            .map(|(at, _)| at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn started(strategy: DrainStrategy, secs: u64) -> (DrainManager, Instant) {
        let t0 = Instant::now();
        let mut m = DrainManager::new(strategy, Duration::from_secs(secs));
        m.start(t0);
        (m, t0)
    }

    /// Of the randoms `0..n`, how many close at `at`.
    fn closes(m: &DrainManager, at: Instant, n: u64) -> u64 {
        (0..n).filter(|&r| m.drain_close(at, r)).count() as u64
    }

    // === not draining ===

    #[test]
    fn nothing_closes_before_the_drain() {
        let m = DrainManager::new(DrainStrategy::Immediate, 8 * SEC);
        assert!(!m.draining());
        assert!(!m.drain_close(Instant::now(), 0));
    }

    // === immediate ===

    #[test]
    fn immediate_closes_every_response_and_notices_all_at_once() {
        let (m, t0) = started(DrainStrategy::Immediate, 8);
        assert!(m.drain_close(t0, 7));
        assert_eq!(m.notice_delay(9, 10), Duration::ZERO);
    }

    // === gradual ===

    #[test]
    fn gradual_probability_rises_with_whole_seconds_elapsed() {
        let (m, t0) = started(DrainStrategy::Gradual, 8);
        // Over the 8 residues of the random number: elapsed/8 of them close.
        assert_eq!(closes(&m, t0 + SEC / 2, 8), 0, "none in the first second");
        assert_eq!(closes(&m, t0 + SEC, 8), 1);
        assert_eq!(closes(&m, t0 + 2 * SEC + SEC / 2, 8), 2);
        assert_eq!(closes(&m, t0 + 7 * SEC, 8), 7);
        assert_eq!(
            closes(&m, t0 + 8 * SEC, 8),
            8,
            "all once the drain time is up"
        );
        assert_eq!(closes(&m, t0 + 60 * SEC, 8), 8);
    }

    #[test]
    fn gradual_with_a_zero_drain_time_closes_at_once() {
        let (m, t0) = started(DrainStrategy::Gradual, 0);
        assert!(m.drain_close(t0, 5));
    }

    #[test]
    fn a_second_start_keeps_the_first() {
        let (mut m, t0) = started(DrainStrategy::Gradual, 8);
        m.start(t0 + 5 * SEC);
        assert_eq!(closes(&m, t0 + 5 * SEC, 8), 5);
    }

    #[test]
    fn gradual_notices_spread_over_the_first_quarter() {
        let (m, t0) = started(DrainStrategy::Gradual, 8);
        let mut s = DrainSchedule::new(&m, t0, (0..4).collect());
        // Steps of 8 s / 4 / 4 = 0.5 s: 0, 0.5, 1.0, 1.5 s.
        assert_eq!(s.due(t0), [0]);
        assert_eq!(s.next_after(t0), Some(SEC / 2));
        assert_eq!(s.due(t0 + SEC / 4), Vec::<i32>::new());
        assert_eq!(s.due(t0 + SEC), [1, 2]);
        assert_eq!(s.next_after(t0 + SEC), Some(SEC / 2));
        assert_eq!(s.due(t0 + 2 * SEC), [3]);
        assert_eq!(s.next_after(t0 + 2 * SEC), None);
    }

    #[test]
    fn immediate_notices_are_all_due_at_the_start() {
        let (m, t0) = started(DrainStrategy::Immediate, 8);
        let mut s = DrainSchedule::new(&m, t0, vec!['a', 'b', 'c']);
        assert_eq!(s.due(t0), ['a', 'b', 'c']);
        assert_eq!(s.next_after(t0), None);
    }

    #[test]
    fn strategies_parse_by_envoy_name() {
        assert_eq!(
            DrainStrategy::parse("gradual"),
            Some(DrainStrategy::Gradual)
        );
        assert_eq!(
            DrainStrategy::parse("immediate"),
            Some(DrainStrategy::Immediate)
        );
        assert_eq!(DrainStrategy::parse("Gradual"), None);
        assert_eq!(DrainStrategy::default().to_string(), "gradual");
    }
}
