//! Circuit breakers: Envoy's `ResourceManagerImpl`, one per cluster per routing priority.
//!
//! Each limit of `circuit_breakers.thresholds` (`max_connections`, `max_pending_requests`,
//! `max_requests`, `max_retries`) is a [`Resource`]: a process-wide count shared by every worker
//! (the limits are per cluster, not per worker) against its maximum. The connection pools and the
//! router check [`Resource::can_create`] before opening a connection, queueing a request,
//! sending one or retrying, and count with [`Resource::inc`]/[`Resource::dec`]; on overflow they
//! count `upstream_cx_overflow` / `upstream_rq_pending_overflow` / `upstream_rq_retry_overflow`
//! and answer 503 with `x-envoy-overloaded: true`.
//!
//! As in Envoy, check and increment are two steps, so workers racing at the limit may overshoot
//! it by at most one each; [`Resource::try_inc`] is the exact alternative (a compare-and-swap).
//! The gauge `cluster.<name>.circuit_breakers.<default|high>.<cx|rq_pending|rq|rq_retry>_open`
//! is 1 while the resource is at its limit (`cx_pool_open` exists, as in Envoy's default stats,
//! and stays 0: `max_connection_pools` is not supported).
//!
//! A `retry_budget` replaces `max_retries` (Envoy's `RetryBudgetImpl`): retries in flight may
//! reach `max(budget_percent × (active + pending requests), min_retry_concurrency)`, a limit
//! that moves with the load; ask [`ResourceManager::can_create_retry`]. Its `rq_retry_open`
//! gauge is not maintained (it stays 0).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{RetryBudget, Thresholds};
use crate::stats::{Gauge, ImportMode, Store};

/// The routing priority of a route (`RoutingPriority`): each has its own thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResourcePriority {
    #[default]
    Default,
    High,
}

/// One limited resource.
pub struct Resource {
    max: u64,
    current: AtomicU64,
    /// 1 while `current >= max`.
    open: Gauge,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("max", &self.max)
            .field("current", &self.count())
            .finish()
    }
}

impl Resource {
    fn new(max: u32, open: Gauge) -> Resource {
        if max == 0 {
            open.set(1);
        }
        Resource {
            max: u64::from(max),
            current: AtomicU64::new(0),
            open,
        }
    }

    /// Whether one more may be created (Envoy's `canCreate`).
    pub fn can_create(&self) -> bool {
        self.count() < self.max
    }

    /// Counts one more (after [`can_create`](Self::can_create)).
    pub fn inc(&self) {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        if now == self.max {
            self.open.set(1);
        }
    }

    /// Counts one more if below the limit, atomically; false (and nothing counted) at the limit.
    pub fn try_inc(&self) -> bool {
        let result = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < self.max).then_some(c + 1)
            });
        match result {
            Ok(previous) => {
                if previous + 1 == self.max {
                    self.open.set(1);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Counts one fewer (never below zero).
    pub fn dec(&self) {
        let result = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
        if let Ok(previous) = result {
            if previous == self.max {
                self.open.set(0);
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

/// The resources of one cluster at one priority.
#[derive(Debug)]
pub struct ResourceManager {
    pub connections: Resource,
    pub pending_requests: Resource,
    pub requests: Resource,
    pub retries: Resource,
    /// When set, replaces the `max_retries` limit of `retries`.
    retry_budget: Option<RetryBudget>,
    /// `cx_pool_open` (always 0; kept so the stat exists as in Envoy).
    _cx_pool_open: Gauge,
}

impl ResourceManager {
    /// The resources for `thresholds`, with their gauges under
    /// `cluster.<cluster>.circuit_breakers.<priority>.` in `store` (the root scope).
    pub fn new(
        thresholds: &Thresholds,
        store: &Store,
        cluster: &str,
        priority: ResourcePriority,
    ) -> ResourceManager {
        let priority = match priority {
            ResourcePriority::Default => "default",
            ResourcePriority::High => "high",
        };
        let scope = store.scope(&format!("cluster.{cluster}.circuit_breakers.{priority}"));
        let open = |name: &str| scope.gauge(name, ImportMode::NeverImport);
        ResourceManager {
            connections: Resource::new(thresholds.max_connections, open("cx_open")),
            pending_requests: Resource::new(
                thresholds.max_pending_requests,
                open("rq_pending_open"),
            ),
            requests: Resource::new(thresholds.max_requests, open("rq_open")),
            retries: Resource::new(
                match thresholds.retry_budget {
                    Some(_) => u32::MAX,
                    None => thresholds.max_retries,
                },
                open("rq_retry_open"),
            ),
            retry_budget: thresholds.retry_budget,
            _cx_pool_open: open("cx_pool_open"),
        }
    }

    /// Whether one more retry may start (Envoy's `retries().canCreate()`): below
    /// `max_retries`, or below the retry budget's current limit when one is configured.
    pub fn can_create_retry(&self) -> bool {
        let Some(budget) = self.retry_budget else {
            return self.retries.can_create();
        };
        let active = self.requests.count() + self.pending_requests.count();
        let allowed = active * u64::from(budget.budget_percent_hundredths) / 10_000;
        self.retries.count() < allowed.max(u64::from(budget.min_retry_concurrency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(store: &Store) -> ResourceManager {
        let thresholds = Thresholds {
            max_connections: 2,
            max_pending_requests: 1,
            max_requests: 1024,
            max_retries: 0,
            retry_budget: None,
        };
        ResourceManager::new(&thresholds, store, "app", ResourcePriority::Default)
    }

    #[test]
    fn limits_and_open_gauges() {
        let store = Store::new();
        let rm = manager(&store);
        let open = store
            .scope("cluster.app.circuit_breakers.default")
            .gauge("cx_open", ImportMode::NeverImport);
        assert!(rm.connections.can_create());
        rm.connections.inc();
        assert_eq!(open.value(), 0);
        rm.connections.inc();
        assert!(!rm.connections.can_create());
        assert_eq!(open.value(), 1);
        assert_eq!(open.name(), "cluster.app.circuit_breakers.default.cx_open");
        rm.connections.dec();
        assert!(rm.connections.can_create());
        assert_eq!(open.value(), 0);
        rm.connections.dec();
        rm.connections.dec();
        assert_eq!(rm.connections.count(), 0);
        // max_retries 0: never, and open from the start.
        assert!(!rm.retries.can_create());
        let retry_open = store
            .scope("cluster.app.circuit_breakers.default")
            .gauge("rq_retry_open", ImportMode::NeverImport);
        assert_eq!(retry_open.value(), 1);
        assert!(!rm.retries.try_inc());
        assert_eq!(rm.requests.max(), 1024);
    }

    #[test]
    fn retry_budget_follows_the_load_and_replaces_max_retries() {
        let store = Store::new();
        let thresholds = Thresholds {
            max_retries: 0,
            retry_budget: Some(RetryBudget {
                budget_percent_hundredths: 2500,
                min_retry_concurrency: 1,
            }),
            ..Thresholds::default()
        };
        let rm = ResourceManager::new(&thresholds, &store, "b", ResourcePriority::Default);
        // Idle: min_retry_concurrency.
        assert!(rm.can_create_retry());
        rm.retries.inc();
        assert!(!rm.can_create_retry());
        // 8 requests in flight: 25% of them = 2 retries.
        for _ in 0..6 {
            rm.requests.inc();
        }
        rm.pending_requests.inc();
        rm.pending_requests.inc();
        assert!(rm.can_create_retry());
        rm.retries.inc();
        assert!(!rm.can_create_retry());
    }

    #[test]
    fn try_inc_is_exact_across_threads() {
        let store = Store::new();
        let rm = std::sync::Arc::new(manager(&store));
        let granted: usize = (0..4)
            .map(|_| {
                let rm = rm.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| rm.pending_requests.try_inc()).count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(granted, 1);
        assert_eq!(rm.pending_requests.count(), 1);
        let open = store
            .scope("cluster.app.circuit_breakers.default")
            .gauge("rq_pending_open", ImportMode::NeverImport);
        assert_eq!(open.value(), 1);
    }
}
