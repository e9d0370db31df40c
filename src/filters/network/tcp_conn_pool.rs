//! The per-worker TCP connection pools of `tcp_proxy`: Envoy's `Tcp::ConnPoolImpl` (one per
//! worker, cluster and host), reduced to what a TCP proxy session needs from it. A session owns
//! its upstream connection for its whole life (tcp_proxy never returns one for reuse), so a
//! pool here is:
//!
//! - how many of this worker's sessions hold a connection to the host (connecting or
//!   connected): Envoy creates a connection for a waiting session even above the host's limit
//!   when its pool on this worker has none at all, so that no session waits on connections
//!   held by other workers, whose closes this worker never hears of;
//! - the sessions waiting, oldest first, because the host's `per_host_thresholds`
//!   `max_connections` was reached when they asked (Envoy's `pending_streams_`), each either
//!   still waiting or *granted* a connection that it opens when its wake-up runs.
//!
//! Envoy's `tryCreateNewConnections` runs when a session asks and when one of the pool's
//! connections is gone or connects: while sessions wait, up to three times, it asks the
//! circuit breakers for room (counting the granted connections not yet opened) and grants the
//! oldest waiting session a connection, or counts `upstream_cx_overflow` and stops. The
//! decisions and counts are made at the event, as Envoy makes them; only the opening is
//! deferred: a granted session is woken through its own wake-up timer, armed with no delay
//! (it runs on the next loop iteration, never inside the caller), because a connection can be
//! released where no filter context exists, when a session is dropped with its upstream still
//! flushing. A granted session that leaves before opening gives its grant back.
//!
//! Called by [`TcpProxy`](super::tcp_proxy::TcpProxy) only; the pools live in a thread-local
//! map because a worker is one thread and every session of that worker shares them. A pool
//! with no connection and no waiting session is removed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use reactor::Timer;

use crate::upstream::cluster_manager::ClusterId;

/// A pool is per cluster and host (the same address may serve two clusters, each with its own
/// circuit breakers).
pub type PoolKey = (ClusterId, SocketAddr);

/// How a waiting session is woken: its wake-up timer, armed to fire at once.
pub trait WakeUp {
    fn wake_up(&self);
}

impl WakeUp for Timer {
    fn wake_up(&self) {
        self.enable(Duration::ZERO);
    }
}

/// The circuit breakers of a pool's cluster and host, as the caller sees them.
pub trait Breakers {
    /// Whether one more connection to the host is allowed, with `granted` connections
    /// granted but not yet opened (Envoy's `canCreateConnection`).
    fn room(&self, granted: u32) -> bool;
    /// Counts `upstream_cx_overflow`.
    fn overflow(&self);
}

/// A session waiting for a connection.
struct Waiter {
    session: Rc<dyn WakeUp>,
    granted: bool,
}

#[derive(Default)]
struct HostPool {
    /// This worker's sessions holding a connection to the host (connecting or connected).
    connections: u32,
    /// Oldest first.
    waiting: VecDeque<Waiter>,
    /// Waiting sessions granted a connection they have not opened yet.
    granted: u32,
}

impl HostPool {
    /// Envoy's `tryCreateNewConnections`: up to three connections for the waiting sessions.
    fn try_grant(&mut self, breakers: &dyn Breakers) {
        for _ in 0..3 {
            let Some(i) = self.waiting.iter().position(|w| !w.granted) else {
                // Every waiting session has its connection coming.
                return;
            };
            let room = breakers.room(self.granted);
            if !room {
                breakers.overflow();
                // Envoy creates a connection anyway when its pool has none: no session
                // waits on connections that only other workers hold.
                if self.connections > 0 || self.granted > 0 {
                    return;
                }
            }
            self.granted += 1;
            self.waiting[i].granted = true;
            self.waiting[i].session.wake_up();
            if !room {
                return;
            }
        }
    }

    fn position(&self, session: &Rc<dyn WakeUp>) -> Option<usize> {
        self.waiting
            .iter()
            .position(|w| Rc::ptr_eq(&w.session, session))
    }
}

thread_local! {
    static POOLS: RefCell<HashMap<PoolKey, HostPool>> = RefCell::new(HashMap::new());
}

fn with_pool<R>(key: PoolKey, f: impl FnOnce(&mut HostPool) -> R) -> R {
    POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        let pool = pools.entry(key).or_default();
        let result = f(pool);
        if pool.connections == 0 && pool.waiting.is_empty() {
            pools.remove(&key);
        }
        result
    })
}

/// A new session asks for a connection to the host. `Open`: open it now (counted in the pool
/// as opened). `Wait`: the session was queued; it is woken through `wake_up` (created only
/// here, when needed) once granted a connection.
pub fn ask(
    key: PoolKey,
    breakers: &dyn Breakers,
    wake_up: impl FnOnce() -> Rc<dyn WakeUp>,
) -> Asked {
    with_pool(key, |pool| {
        let nobody_ahead = pool.waiting.is_empty();
        if nobody_ahead {
            // The breakers decide at once.
            let room = breakers.room(pool.granted);
            if !room {
                breakers.overflow();
            }
            if room || (pool.connections == 0 && pool.granted == 0) {
                pool.connections += 1;
                return Asked::Open;
            }
        }
        let session = wake_up();
        pool.waiting.push_back(Waiter {
            session: session.clone(),
            granted: false,
        });
        if !nobody_ahead {
            // Behind the others: the pool tries for the oldest.
            pool.try_grant(breakers);
        }
        Asked::Wait(session)
    })
}

/// The answer to [`ask`].
pub enum Asked {
    Open,
    Wait(Rc<dyn WakeUp>),
}

/// A woken session: whether it was granted a connection. If so it leaves the queue, counted
/// as holding a connection (it opens it now).
pub fn take_grant(key: PoolKey, session: &Rc<dyn WakeUp>) -> bool {
    with_pool(key, |pool| {
        let Some(i) = pool.position(session) else {
            return false;
        };
        if !pool.waiting[i].granted {
            return false;
        }
        pool.waiting.remove(i);
        pool.granted -= 1;
        pool.connections += 1;
        true
    })
}

/// A session's connection to the host is gone (closed, failed or timed out): the pool tries
/// for the waiting sessions.
pub fn connection_released(key: PoolKey, breakers: &dyn Breakers) {
    with_pool(key, |pool| {
        pool.connections = pool.connections.saturating_sub(1);
        pool.try_grant(breakers);
    });
}

/// A session's connection to the host connected: the pool tries for the waiting sessions.
pub fn connection_connected(key: PoolKey, breakers: &dyn Breakers) {
    with_pool(key, |pool| pool.try_grant(breakers));
}

/// A waiting session is gone (its downstream closed). A grant it had goes to the next one.
pub fn leave(key: PoolKey, session: &Rc<dyn WakeUp>, breakers: &dyn Breakers) {
    with_pool(key, |pool| {
        let Some(i) = pool.position(session) else {
            return;
        };
        if pool.waiting.remove(i).is_some_and(|left| left.granted) {
            pool.granted -= 1;
            pool.try_grant(breakers);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn key() -> PoolKey {
        (ClusterId::for_tests(7), "127.0.0.1:9".parse().unwrap())
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Session(Cell<u32>);

    impl WakeUp for Session {
        fn wake_up(&self) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// A host limit of `max` connections, `open` of them open (on any worker).
    struct Limit {
        max: u32,
        open: Cell<u32>,
        overflows: Cell<u32>,
    }

    impl Limit {
        fn new(max: u32) -> Limit {
            Limit {
                max,
                open: Cell::new(0),
                overflows: Cell::new(0),
            }
        }
    }

    impl Breakers for Limit {
        fn room(&self, granted: u32) -> bool {
            self.open.get() + granted < self.max
        }
        fn overflow(&self) {
            self.overflows.set(self.overflows.get() + 1);
        }
    }

    fn waits(asked: Asked) -> Rc<dyn WakeUp> {
        match asked {
            Asked::Wait(session) => session,
            Asked::Open => panic!("expected to wait"),
        }
    }

    fn session() -> (Rc<Session>, impl FnOnce() -> Rc<dyn WakeUp>) {
        let s = Rc::new(Session::default());
        let for_pool = s.clone();
        (s, move || for_pool as Rc<dyn WakeUp>)
    }

    /// Three sessions at a host limit of one: the first opens its connection, `b` and `c`
    /// wait.
    fn one_open_two_waiting(k: PoolKey, limit: &Limit) -> [(Rc<Session>, Rc<dyn WakeUp>); 2] {
        let (_, a) = session();
        assert!(matches!(ask(k, limit, a), Asked::Open));
        limit.open.set(1);
        let (b, wb) = session();
        let wb = waits(ask(k, limit, wb));
        let (c, wc) = session();
        let wc = waits(ask(k, limit, wc));
        [(b, wb), (c, wc)]
    }

    /// The life of three sessions at a host limit of one, with the counts Envoy 1.40 shows
    /// for the same sessions (`upstream_cx_overflow` 2, then 4).
    #[test]
    fn sessions_over_the_host_limit_wait_and_are_granted_in_order() {
        let (k, limit) = (key(), Limit::new(1));
        let [(b, wb), (c, wc)] = one_open_two_waiting(k, &limit);
        assert_eq!(limit.overflows.get(), 2);
        // The first connection is gone: b is granted one, c asks again and overflows.
        limit.open.set(0);
        connection_released(k, &limit);
        assert_eq!((b.0.get(), c.0.get(), limit.overflows.get()), (1, 0, 3));
        assert!(!take_grant(k, &wc), "c was not granted");
        assert!(take_grant(k, &wb));
        limit.open.set(1);
        // b connects: c asks again.
        connection_connected(k, &limit);
        assert_eq!((c.0.get(), limit.overflows.get()), (0, 4));
        limit.open.set(0);
        connection_released(k, &limit);
        assert_eq!(c.0.get(), 1);
        assert!(take_grant(k, &wc));
        connection_released(k, &limit);
        POOLS.with(|p| assert!(p.borrow().is_empty(), "an unused pool is removed"));
    }

    #[test]
    fn a_pool_without_connections_opens_one_above_the_limit() {
        // Another worker holds the host's only connection: this worker's pool has none.
        let (k, limit) = (key(), Limit::new(1));
        limit.open.set(1);
        let (_, a) = session();
        assert!(matches!(ask(k, &limit, a), Asked::Open));
        assert_eq!(limit.overflows.get(), 1);
        let (_, b) = session();
        waits(ask(k, &limit, b));
        assert_eq!(limit.overflows.get(), 2);
    }

    #[test]
    fn a_granted_session_that_leaves_gives_its_grant_to_the_next() {
        let (k, limit) = (key(), Limit::new(1));
        let [(b, wb), (c, wc)] = one_open_two_waiting(k, &limit);
        limit.open.set(0);
        connection_released(k, &limit);
        assert_eq!((b.0.get(), c.0.get()), (1, 0));
        leave(k, &wb, &limit);
        assert_eq!(c.0.get(), 1);
        assert!(take_grant(k, &wc));
        // Leaving twice, or after the grant was taken, changes nothing.
        leave(k, &wb, &limit);
        leave(k, &wc, &limit);
        assert_eq!(c.0.get(), 1);
    }

    #[test]
    fn a_waiting_session_that_leaves_ungranted_wakes_nobody() {
        let (k, limit) = (key(), Limit::new(1));
        let (_, a) = session();
        assert!(matches!(ask(k, &limit, a), Asked::Open));
        limit.open.set(1);
        let (b, wb) = session();
        let wb = waits(ask(k, &limit, wb));
        leave(k, &wb, &limit);
        assert_eq!(b.0.get(), 0);
        limit.open.set(0);
        connection_released(k, &limit);
        POOLS.with(|p| assert!(p.borrow().is_empty()));
    }
}
