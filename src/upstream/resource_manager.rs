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
//! The gauge `cluster.<name>.circuit_breakers.<default|high>.<cx|rq_pending|rq|rq_retry|cx_pool>_open`
//! is 1 while the resource is at its limit; as in Envoy (`ManagedResourceImpl`) it moves only
//! when the resource is counted, so a limit of 0 leaves it at 0. With `track_remaining: true`
//! the gauges `remaining_cx`, `remaining_pending`, `remaining_rq`, `remaining_retries` and
//! `remaining_cx_pools` read `max - current` (they start at the max; without
//! `track_remaining` they do not exist).
//!
//! `max_connection_pools` (default unlimited) counts the per-worker, per-host connection pools
//! (`upstream::conn_pool`): a pool counts while it has a connection or a waiting stream.
//!
//! A `retry_budget` replaces `max_retries` (Envoy's `RetryBudgetImpl`): retries in flight may
//! reach `max(budget_percent × (active + pending requests), min_retry_concurrency)`, a limit
//! that moves with the load; ask [`ResourceManager::can_create_retry`]. As in Envoy, the
//! retries are still counted against `max_retries` underneath: `rq_retry_open` is 1 while the
//! retries in flight reach `max_retries` (3 unless set), whatever the budget allows, and
//! `remaining_retries` starts at `max_retries` and reads 0 once the budget is first used
//! (Envoy clears it: a remaining count makes no sense for a limit that moves with the load).

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
    /// `remaining_*` (with `track_remaining`): `max - current`.
    remaining: Option<Gauge>,
    /// A retry budget is in use: `remaining` reads 0 once the resource is used.
    clear_remaining: bool,
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
    fn new(max: u64, open: Gauge, remaining: Option<Gauge>) -> Resource {
        if let Some(remaining) = &remaining {
            remaining.set(max);
        }
        Resource {
            max,
            current: AtomicU64::new(0),
            open,
            remaining,
            clear_remaining: false,
        }
    }

    /// Envoy's `updateRemaining` (`clearRemainingGauge` under a retry budget).
    fn update_remaining(&self, current: u64) {
        if let Some(remaining) = &self.remaining {
            let value = if self.clear_remaining {
                0
            } else {
                self.max.saturating_sub(current)
            };
            remaining.set(value);
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
        self.update_remaining(now);
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
                self.update_remaining(previous + 1);
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
            self.update_remaining(previous - 1);
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
    /// Retries in flight, against `max_retries` (also under a retry budget, whose limit
    /// [`ResourceManager::can_create_retry`] applies on top).
    pub retries: Resource,
    /// The per-worker, per-host connection pools (`max_connection_pools`).
    pub connection_pools: Resource,
    /// When set, replaces the `max_retries` limit of `retries`.
    retry_budget: Option<RetryBudget>,
    /// `per_host_thresholds`' `max_connections` (Envoy's `maxConnectionsPerHost`), checked
    /// against the host's `cx_active` by [`ResourceManager::can_create_connection`].
    pub max_connections_per_host: Option<u32>,
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
        let gauge = |name: &str| scope.gauge(name, ImportMode::NeverImport);
        let resource = |max: u32, open: &str, remaining: &str| {
            let remaining = thresholds.track_remaining.then(|| gauge(remaining));
            Resource::new(u64::from(max), gauge(open), remaining)
        };
        let mut retries = resource(thresholds.max_retries, "rq_retry_open", "remaining_retries");
        retries.clear_remaining = thresholds.retry_budget.is_some();
        ResourceManager {
            connections: resource(thresholds.max_connections, "cx_open", "remaining_cx"),
            pending_requests: resource(
                thresholds.max_pending_requests,
                "rq_pending_open",
                "remaining_pending",
            ),
            requests: resource(thresholds.max_requests, "rq_open", "remaining_rq"),
            retries,
            connection_pools: Resource::new(
                thresholds.max_connection_pools.map_or(u64::MAX, u64::from),
                gauge("cx_pool_open"),
                thresholds
                    .track_remaining
                    .then(|| gauge("remaining_cx_pools")),
            ),
            retry_budget: thresholds.retry_budget,
            max_connections_per_host: None,
        }
    }

    /// Whether a new connection to a host with `host_cx_active` open connections (all
    /// workers) is allowed (Envoy's `HostImplBase::canCreateConnection`): below the per-host
    /// limit, if any, and below `max_connections`.
    pub fn can_create_connection(&self, host_cx_active: impl FnOnce() -> u64) -> bool {
        if let Some(max) = self.max_connections_per_host {
            if host_cx_active() >= u64::from(max) {
                return false;
            }
        }
        self.connections.can_create()
    }

    /// Whether one more retry may start (Envoy's `retries().canCreate()`): below
    /// `max_retries`, or below the retry budget's current limit when one is configured.
    pub fn can_create_retry(&self) -> bool {
        let Some(budget) = self.retry_budget else {
            return self.retries.can_create();
        };
        self.retries.update_remaining(0);
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
            ..Thresholds::default()
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
        // max_retries 0: never; its open gauge stays 0 (Envoy only sets it when counting).
        assert!(!rm.retries.can_create());
        let retry_open = store
            .scope("cluster.app.circuit_breakers.default")
            .gauge("rq_retry_open", ImportMode::NeverImport);
        assert_eq!(retry_open.value(), 0);
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
    fn remaining_gauges_with_track_remaining() {
        let store = Store::new();
        let thresholds = Thresholds {
            max_connections: 2,
            max_connection_pools: Some(3),
            track_remaining: true,
            ..Thresholds::default()
        };
        let rm = ResourceManager::new(&thresholds, &store, "t", ResourcePriority::Default);
        let scope = store.scope("cluster.t.circuit_breakers.default");
        let gauge = |name: &str| scope.gauge(name, ImportMode::NeverImport).value();
        assert_eq!(gauge("remaining_cx"), 2);
        assert_eq!(gauge("remaining_cx_pools"), 3);
        assert_eq!(gauge("remaining_rq"), 1024);
        assert_eq!(gauge("remaining_retries"), 3);
        rm.connections.inc();
        rm.connections.inc();
        rm.connections.inc();
        assert_eq!(gauge("remaining_cx"), 0, "never below 0");
        rm.connections.dec();
        rm.connections.dec();
        assert_eq!(gauge("remaining_cx"), 1);
        assert!(rm.connection_pools.try_inc());
        assert_eq!(gauge("remaining_cx_pools"), 2);
        // Without track_remaining there are no remaining gauges.
        let plain = Store::new();
        let _rm = ResourceManager::new(
            &Thresholds::default(),
            &plain,
            "p",
            ResourcePriority::Default,
        );
        assert!(!plain.gauges().iter().any(|g| g.name.contains("remaining")));
    }

    #[test]
    fn under_a_retry_budget_retries_still_count_against_max_retries() {
        let store = Store::new();
        let thresholds = Thresholds {
            max_retries: 2,
            track_remaining: true,
            retry_budget: Some(RetryBudget {
                budget_percent_hundredths: 10_000,
                min_retry_concurrency: 10,
            }),
            ..Thresholds::default()
        };
        let rm = ResourceManager::new(&thresholds, &store, "b", ResourcePriority::Default);
        let scope = store.scope("cluster.b.circuit_breakers.default");
        let gauge = |name: &str| scope.gauge(name, ImportMode::NeverImport).value();
        assert_eq!(
            gauge("remaining_retries"),
            2,
            "max_retries until first used"
        );
        assert!(rm.can_create_retry());
        assert_eq!(gauge("remaining_retries"), 0, "cleared under a budget");
        rm.retries.inc();
        rm.retries.inc();
        assert_eq!(gauge("rq_retry_open"), 1, "at max_retries");
        assert!(rm.can_create_retry(), "the budget still allows more");
        rm.retries.inc();
        rm.retries.dec();
        rm.retries.dec();
        assert_eq!(gauge("rq_retry_open"), 0);
        assert_eq!(gauge("remaining_retries"), 0);
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
