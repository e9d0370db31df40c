//! A cluster's hosts at one moment: Envoy's `HostSetImpl` (one priority level) as an immutable
//! snapshot.
//!
//! The cluster manager builds a new `HostSet` whenever membership changes (startup, a DNS
//! refresh that returned different addresses) and publishes it as an `Arc<HostSet>` to every
//! worker; a worker's load balancer is rebuilt over it. Nothing in a snapshot changes after it is
//! built, so workers read it without locks; hosts that carry over from the previous snapshot are
//! the same `Arc<Host>`, so their counters continue.

use std::fmt;
use std::sync::Arc;

use super::cluster::Host;

/// The hosts of one cluster (nuncio has a single priority level, 0).
pub struct HostSet {
    hosts: Vec<Arc<Host>>,
    healthy_hosts: Vec<Arc<Host>>,
    /// Increases with every snapshot of the same cluster; lets a worker drop an out-of-order
    /// update (cannot happen through one FIFO post queue, but costs nothing to check).
    version: u64,
}

impl fmt::Debug for HostSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSet")
            .field("version", &self.version)
            .field(
                "hosts",
                &self.hosts.iter().map(|h| h.address()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl HostSet {
    /// A snapshot of `hosts`; the healthy subset is computed now.
    pub fn new(hosts: Vec<Arc<Host>>, version: u64) -> HostSet {
        let healthy_hosts = hosts.iter().filter(|h| h.healthy()).cloned().collect();
        HostSet {
            hosts,
            healthy_hosts,
            version,
        }
    }

    /// An empty set (a cluster whose DNS has not answered yet, or with no endpoints).
    pub fn empty() -> HostSet {
        HostSet::new(Vec::new(), 0)
    }

    /// Every host, in endpoint order.
    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }

    /// The hosts with no health flag raised, in endpoint order.
    pub fn healthy_hosts(&self) -> &[Arc<Host>] {
        &self.healthy_hosts
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True when the two sets hold the same addresses with the same weights in the same order
    /// (the cluster manager then skips publishing: Envoy's `update_no_rebuild`).
    pub fn same_membership(&self, other: &[Arc<Host>]) -> bool {
        self.hosts.len() == other.len()
            && self
                .hosts
                .iter()
                .zip(other)
                .all(|(a, b)| a.address() == b.address() && a.weight() == b.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::HealthFlag;

    fn host(addr: &str, weight: u32) -> Arc<Host> {
        Arc::new(Host::new(addr.parse().unwrap(), "", weight))
    }

    #[test]
    fn healthy_subset_and_membership() {
        let a = host("127.0.0.1:1", 1);
        let b = host("127.0.0.1:2", 1);
        b.health_flag_set(HealthFlag::FAILED_ACTIVE_HC);
        let set = HostSet::new(vec![a.clone(), b.clone()], 3);
        assert_eq!(set.len(), 2);
        assert_eq!(set.version(), 3);
        assert_eq!(set.healthy_hosts().len(), 1);
        assert!(Arc::ptr_eq(&set.healthy_hosts()[0], &a));
        assert!(set.same_membership(&[host("127.0.0.1:1", 1), host("127.0.0.1:2", 1)]));
        assert!(!set.same_membership(&[host("127.0.0.1:1", 1), host("127.0.0.1:2", 2)]));
        assert!(!set.same_membership(&[host("127.0.0.1:2", 1), host("127.0.0.1:1", 1)]));
        assert!(!set.same_membership(&[a]));
        assert!(HostSet::empty().is_empty());
    }
}
