//! Load balancers: Envoy's `RoundRobinLoadBalancer`, `RandomLoadBalancer` and
//! `LeastRequestLoadBalancer` (all `ZoneAwareLoadBalancerBase`/`EdfLoadBalancerBase` children),
//! for one priority level.
//!
//! One [`LoadBalancer`] per cluster per worker, owned by the worker's thread-local cluster
//! manager and rebuilt over each new [`HostSet`] snapshot; the data path (tcp_proxy, the router)
//! calls [`LoadBalancer::choose_host`] for every upstream connection or request. A pick never
//! allocates: it indexes the snapshot's host list or pops and pushes one entry of a heap whose
//! capacity was reserved at build time. Randomness comes from a [`RandomGenerator`] passed in,
//! so tests pick deterministically.
//!
//! Envoy's semantics, reproduced:
//! - Hosts are taken from the healthy list, unless fewer than 50% of the hosts are healthy:
//!   then from all hosts ("panic mode", Envoy's default `healthy_panic_threshold`).
//! - ROUND_ROBIN: when all weights are equal, a plain rotation starting at a random offset (so
//!   workers do not march in step); otherwise earliest-deadline-first scheduling where a host of
//!   weight `w` is due every `1/w`, which interleaves hosts smoothly (weights 1, 2, 3 give
//!   `c b c a b c` per cycle, never a burst of one host), with a random number of initial picks.
//! - RANDOM: a uniform pick.
//! - LEAST_REQUEST: when all weights are equal, the "power of two choices": two random hosts
//!   (with replacement), the one with fewer active requests wins, the first on a tie; otherwise
//!   EDF with each host's weight divided by `active requests + 1` (Envoy's default
//!   `active_request_bias` of 1.0), recomputed when the host is rescheduled.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::cluster::Host;
use super::host_set::HostSet;
use crate::config::LbPolicy;

/// A source of random numbers (Envoy's `Random::RandomGenerator`).
pub trait RandomGenerator {
    fn random(&mut self) -> u64;
}

/// The default generator: xorshift64*, seeded from the standard library's per-process random
/// keys. Fast and good enough for spreading load; not for cryptography.
#[derive(Clone, Debug)]
pub struct FastRandom {
    state: u64,
}

impl FastRandom {
    /// A generator with a random seed.
    pub fn new() -> FastRandom {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x9E37_79B9_7F4A_7C15);
        FastRandom::with_seed(hasher.finish())
    }

    /// A generator with a fixed seed (0 is replaced: xorshift never leaves zero).
    pub fn with_seed(seed: u64) -> FastRandom {
        FastRandom {
            state: if seed == 0 {
                0x2545_F491_4F6C_DD1D
            } else {
                seed
            },
        }
    }
}

impl Default for FastRandom {
    fn default() -> Self {
        FastRandom::new()
    }
}

impl RandomGenerator for FastRandom {
    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Below this share of healthy hosts, Envoy balances over all hosts (`healthy_panic_threshold`).
const HEALTHY_PANIC_THRESHOLD_PERCENT: usize = 50;

/// One entry of the EDF heap: host `index` is due at `deadline`; `order` breaks ties first in,
/// first out (as Envoy's `order_offset_`).
#[derive(Debug)]
struct EdfEntry {
    deadline: f64,
    order: u64,
    index: usize,
}

impl PartialEq for EdfEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for EdfEntry {}
impl PartialOrd for EdfEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EdfEntry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then_with(|| other.order.cmp(&self.order))
    }
}

/// Earliest-deadline-first scheduling (Envoy's `EdfScheduler`).
#[derive(Debug)]
struct EdfScheduler {
    heap: BinaryHeap<EdfEntry>,
    current_time: f64,
    order: u64,
}

impl EdfScheduler {
    fn new(capacity: usize) -> EdfScheduler {
        EdfScheduler {
            heap: BinaryHeap::with_capacity(capacity),
            current_time: 0.0,
            order: 0,
        }
    }

    fn add(&mut self, weight: f64, index: usize) {
        self.heap.push(EdfEntry {
            deadline: self.current_time + 1.0 / weight,
            order: self.order,
            index,
        });
        self.order += 1;
    }

    /// Pops the host that is due first and reschedules it with `weight(index)`. The heap never
    /// grows past its initial size, so this does not allocate.
    fn pick_and_add(&mut self, weight: impl Fn(usize) -> f64) -> Option<usize> {
        let entry = self.heap.pop()?;
        self.current_time = entry.deadline;
        self.add(weight(entry.index), entry.index);
        Some(entry.index)
    }
}

/// The policy-specific state.
#[derive(Debug)]
enum Picker {
    /// Equal weights: rotate from `next`.
    RoundRobin {
        next: usize,
    },
    /// Unequal weights (round robin, or least request): EDF over the hosts.
    Edf(EdfScheduler),
    Random,
    /// Equal weights: two random choices.
    LeastRequestP2c,
}

/// A cluster's load balancer on one worker, over one host-set snapshot.
#[derive(Debug)]
pub struct LoadBalancer {
    policy: LbPolicy,
    host_set: Arc<HostSet>,
    /// Balancing over all hosts because too few are healthy.
    panic: bool,
    picker: Picker,
}

impl LoadBalancer {
    /// Builds the balancer for `policy` over `host_set` (call again on every new snapshot).
    pub fn new(
        policy: LbPolicy,
        host_set: Arc<HostSet>,
        random: &mut impl RandomGenerator,
    ) -> LoadBalancer {
        let all = host_set.hosts().len();
        let healthy = host_set.healthy_hosts().len();
        let panic = all > 0 && healthy * 100 < all * HEALTHY_PANIC_THRESHOLD_PERCENT;
        let hosts = if panic {
            host_set.hosts()
        } else {
            host_set.healthy_hosts()
        };
        let equal_weights = hosts.windows(2).all(|w| w[0].weight() == w[1].weight());
        let picker = match policy {
            LbPolicy::Random => Picker::Random,
            LbPolicy::RoundRobin if equal_weights => Picker::RoundRobin {
                next: if hosts.is_empty() {
                    0
                } else {
                    (random.random() % hosts.len() as u64) as usize
                },
            },
            LbPolicy::LeastRequest if equal_weights => Picker::LeastRequestP2c,
            LbPolicy::RoundRobin | LbPolicy::LeastRequest => {
                let mut edf = EdfScheduler::new(hosts.len());
                for (i, host) in hosts.iter().enumerate() {
                    edf.add(effective_weight(policy, host), i);
                }
                // Start each worker at a different point of the cycle.
                if !hosts.is_empty() {
                    let skips = random.random() % hosts.len() as u64;
                    for _ in 0..skips {
                        edf.pick_and_add(|i| effective_weight(policy, &hosts[i]));
                    }
                }
                Picker::Edf(edf)
            }
        };
        LoadBalancer {
            policy,
            host_set,
            panic,
            picker,
        }
    }

    /// The snapshot this balancer picks from.
    pub fn host_set(&self) -> &Arc<HostSet> {
        &self.host_set
    }

    /// True when too few hosts are healthy and picks come from all hosts (the caller counts
    /// `lb_healthy_panic` per pick).
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// Picks the host for the next connection or request (Envoy's `chooseHost`); `None` when the
    /// cluster has no host (the caller answers "no healthy upstream").
    pub fn choose_host(&mut self, random: &mut impl RandomGenerator) -> Option<Arc<Host>> {
        let hosts = if self.panic {
            self.host_set.hosts()
        } else {
            self.host_set.healthy_hosts()
        };
        if hosts.is_empty() {
            return None;
        }
        let n = hosts.len();
        let index = match &mut self.picker {
            Picker::RoundRobin { next } => {
                let i = *next % n;
                *next = next.wrapping_add(1);
                i
            }
            Picker::Random => (random.random() % n as u64) as usize,
            Picker::LeastRequestP2c => {
                let first = (random.random() % n as u64) as usize;
                let second = (random.random() % n as u64) as usize;
                if hosts[second].active_requests() < hosts[first].active_requests() {
                    second
                } else {
                    first
                }
            }
            Picker::Edf(edf) => {
                let policy = self.policy;
                edf.pick_and_add(|i| effective_weight(policy, &hosts[i]))?
            }
        };
        Some(Arc::clone(&hosts[index]))
    }
}

/// A host's EDF weight: its configured weight, divided by its load for least request.
fn effective_weight(policy: LbPolicy, host: &Host) -> f64 {
    let weight = f64::from(host.weight());
    match policy {
        LbPolicy::LeastRequest => weight / (host.active_requests() as f64 + 1.0),
        _ => weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::{inc, HealthFlag};

    /// Returns the given values in a cycle.
    struct Sequence(Vec<u64>, usize);

    impl RandomGenerator for Sequence {
        fn random(&mut self) -> u64 {
            let v = self.0[self.1 % self.0.len()];
            self.1 += 1;
            v
        }
    }

    fn zero() -> Sequence {
        Sequence(vec![0], 0)
    }

    fn set(weights: &[u32]) -> Arc<HostSet> {
        let hosts = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Host::new(
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    "",
                    *w,
                ))
            })
            .collect();
        Arc::new(HostSet::new(hosts, 1))
    }

    /// The index (port - 1000) of each of `n` picks.
    fn picks(lb: &mut LoadBalancer, random: &mut impl RandomGenerator, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| lb.choose_host(random).unwrap().address().port() - 1000)
            .collect()
    }

    fn counts(picks: &[u16], hosts: usize) -> Vec<usize> {
        (0..hosts)
            .map(|i| picks.iter().filter(|p| **p as usize == i).count())
            .collect()
    }

    // === round robin ===

    #[test]
    fn round_robin_rotates_from_a_random_start() {
        let mut r = Sequence(vec![1], 0);
        let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, set(&[1, 1, 1]), &mut r);
        assert_eq!(picks(&mut lb, &mut r, 7), [1, 2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn weighted_round_robin_is_smooth_and_proportional() {
        let mut r = zero();
        let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, set(&[1, 2, 3]), &mut r);
        let p = picks(&mut lb, &mut r, 600);
        assert_eq!(counts(&p, 3), [100, 200, 300]);
        // Each cycle of 6 holds exactly 1, 2, 3 picks of each host...
        for cycle in p.chunks(6) {
            assert_eq!(counts(cycle, 3), [1, 2, 3], "{cycle:?}");
        }
        // ...and the heavy host never runs three times in a row.
        assert!(!p.windows(3).any(|w| w.iter().all(|x| *x == 2)), "{p:?}");
    }

    #[test]
    fn weighted_round_robin_start_offset_differs_per_seed() {
        let mut a = zero();
        let mut b = Sequence(vec![2], 0);
        let mut lb_a = LoadBalancer::new(LbPolicy::RoundRobin, set(&[1, 5, 1]), &mut a);
        let mut lb_b = LoadBalancer::new(LbPolicy::RoundRobin, set(&[1, 5, 1]), &mut b);
        let pa = picks(&mut lb_a, &mut a, 7);
        let pb = picks(&mut lb_b, &mut b, 7);
        assert_ne!(pa, pb);
        assert_eq!(counts(&pa, 3), [1, 5, 1]);
    }

    // === random ===

    #[test]
    fn random_uses_the_generator() {
        let mut r = Sequence(vec![5, 3, 7, 0], 0);
        let mut lb = LoadBalancer::new(LbPolicy::Random, set(&[1, 1, 1, 1]), &mut r);
        assert_eq!(picks(&mut lb, &mut r, 4), [1, 3, 3, 0]);
        let mut fast = FastRandom::with_seed(42);
        let p = picks(&mut lb, &mut fast, 4000);
        for c in counts(&p, 4) {
            assert!((800..1200).contains(&c), "{c}");
        }
    }

    // === least request ===

    #[test]
    fn least_request_two_choices_prefers_fewer_active_requests() {
        let hosts = set(&[1, 1, 1]);
        for _ in 0..5 {
            inc(&hosts.hosts()[0].stats.rq_active);
        }
        inc(&hosts.hosts()[2].stats.rq_active);
        let mut r = zero();
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, hosts, &mut r);
        // Choices (0, 1): 1 is idle. (0, 2): 2 has fewer. (2, 1): 1. (1, 1): 1.
        let mut r = Sequence(vec![0, 1, 0, 2, 2, 1, 1, 1], 0);
        assert_eq!(picks(&mut lb, &mut r, 4), [1, 2, 1, 1]);
        // A tie keeps the first choice.
        let mut r = Sequence(vec![2, 1], 0);
        inc(&lb.host_set().hosts()[1].stats.rq_active);
        assert_eq!(picks(&mut lb, &mut r, 1), [2]);
    }

    #[test]
    fn weighted_least_request_divides_weight_by_load() {
        let hosts = set(&[2, 1]);
        let mut r = zero();
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, hosts.clone(), &mut r);
        // Idle: plain weighted 2:1.
        let p = picks(&mut lb, &mut r, 300);
        assert_eq!(counts(&p, 2), [200, 100]);
        // Host 0 carries 3 requests: its weight is 2/4 = 0.5 against host 1's 1.
        for _ in 0..3 {
            inc(&hosts.hosts()[0].stats.rq_active);
        }
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, hosts, &mut r);
        let p = picks(&mut lb, &mut r, 300);
        assert_eq!(counts(&p, 2), [100, 200]);
    }

    // === health ===

    #[test]
    fn unhealthy_hosts_are_skipped_until_panic() {
        let hosts = set(&[1, 1, 1]);
        hosts.hosts()[1].health_flag_set(HealthFlag::FAILED_ACTIVE_HC);
        let hosts = Arc::new(HostSet::new(hosts.hosts().to_vec(), 2));
        let mut r = zero();
        let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, hosts.clone(), &mut r);
        assert!(!lb.in_panic());
        assert_eq!(picks(&mut lb, &mut r, 4), [0, 2, 0, 2]);
        // Two of three unhealthy: below 50%, balance over all.
        hosts.hosts()[2].health_flag_set(HealthFlag::FAILED_ACTIVE_HC);
        let hosts = Arc::new(HostSet::new(hosts.hosts().to_vec(), 3));
        let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, hosts, &mut r);
        assert!(lb.in_panic());
        assert_eq!(picks(&mut lb, &mut r, 3), [0, 1, 2]);
    }

    #[test]
    fn empty_set_gives_no_host() {
        let mut r = zero();
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let mut lb = LoadBalancer::new(policy, Arc::new(HostSet::empty()), &mut r);
            assert!(lb.choose_host(&mut r).is_none());
            assert!(!lb.in_panic());
        }
    }

    #[test]
    fn single_host_always_wins() {
        let mut r = FastRandom::with_seed(7);
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let mut lb = LoadBalancer::new(policy, set(&[3]), &mut r);
            assert_eq!(picks(&mut lb, &mut r, 3), [0, 0, 0]);
        }
    }
}
