//! The cluster manager: Envoy's `ClusterManagerImpl` (main thread) and
//! `ThreadLocalClusterManagerImpl` (one per worker).
//!
//! [`ClusterManager::new`] runs on the main thread at startup: it builds every cluster's
//! [`ClusterInfo`], the host sets of STATIC clusters, and starts the DNS resolver thread for
//! STRICT_DNS and LOGICAL_DNS clusters. Each worker, on its own thread, calls
//! [`ClusterManagerHandle::register_worker`] once and keeps the returned
//! [`ThreadLocalClusterManager`]: its per-cluster [`ThreadLocalCluster`]s hold the current
//! host-set snapshot, a load balancer over it and the worker's own stats handles. The data path
//! (tcp_proxy, the router, connection pools) only ever talks to that thread-local object, which
//! needs no lock.
//!
//! How an update reaches the workers (Envoy's `ThreadLocal::Slot::runOnAllThreads`):
//! 1. the resolver thread reports an answer; the cluster manager, under its own lock (which no
//!    worker takes on the hot path), merges it into the cluster's hosts, keeping the `Arc<Host>`
//!    of every address it already had so that host counters carry on;
//! 2. if membership changed, it builds a new immutable `Arc<HostSet>` and posts a closure
//!    carrying it to every registered worker's dispatcher (the reactor's post queue);
//! 3. on the worker, the closure finds that worker's `ThreadLocalClusterManager` through a
//!    thread-local slot table (the closure must be `Send`; the manager is not) and swaps in
//!    the snapshot, rebuilding that cluster's load balancer.
//!
//! Registration takes the same lock as publication, so a worker registered while an update is
//! being published either sees the new snapshot in its initial state or receives the post.
//!
//! Difference from Envoy: Envoy merges DNS answers on the main thread's dispatcher; here the
//! resolver thread merges them under the manager's lock. The effect on workers is the same.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use reactor::{Dispatcher, Poster};

use super::cluster::{ClusterInfo, ClusterStats, Host};
use super::dns::{DnsError, DnsResolverThread, DnsTarget};
use super::fast_hash::FastHashMap;
use super::host_set::HostSet;
use super::load_balancer::{FastRandom, LoadBalancer, RandomGenerator};
use crate::config::{self, DiscoveryType, EndpointAddress};
use crate::stats::Store;

/// The index of a cluster in its manager: resolve a cluster name once at config time
/// ([`ClusterManagerHandle::cluster_id`]) and use the id per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId(usize);

#[cfg(test)]
impl ClusterId {
    /// An id for unit tests that key tables by cluster without building a manager.
    pub(crate) fn for_tests(index: usize) -> ClusterId {
        ClusterId(index)
    }
}

/// Why the cluster manager could not be built.
#[derive(Debug)]
pub enum ClusterManagerError {
    /// Two clusters with one name (the config parser normally catches this first).
    DuplicateCluster(String),
    /// The DNS resolver thread could not be started.
    ResolverThread(std::io::Error),
}

impl fmt::Display for ClusterManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterManagerError::DuplicateCluster(name) => {
                write!(f, "cluster manager: duplicate cluster '{name}'")
            }
            ClusterManagerError::ResolverThread(e) => {
                write!(
                    f,
                    "cluster manager: cannot start the DNS resolver thread: {e}"
                )
            }
        }
    }
}

impl std::error::Error for ClusterManagerError {}

/// One endpoint of a cluster as the manager tracks it: its hosts from the last resolution.
#[derive(Debug)]
struct EndpointState {
    /// STATIC endpoints and IP literals: fixed. DNS names: the last good answer.
    hosts: Vec<Arc<Host>>,
    /// Not yet resolved once (a DNS name at startup).
    pending: bool,
}

/// What a host is built from: its `lb_endpoints[]` entry and the locality of its group.
#[derive(Clone, Debug)]
struct EndpointConfig {
    endpoint: config::LbEndpoint,
    locality: config::Locality,
}

/// The mutable part, under `Shared::state`.
struct State {
    /// Per cluster, per endpoint (in `lb_endpoints` order).
    endpoints: Vec<Vec<EndpointState>>,
    /// Per cluster: the published snapshot.
    host_sets: Vec<Arc<HostSet>>,
    /// Every registered worker's post queue.
    workers: Vec<Poster>,
    /// DNS targets not yet answered once (success or failure): the "warming" clusters.
    warming: usize,
}

/// A DNS target: which endpoint of which cluster it feeds.
#[derive(Clone, Copy, Debug)]
struct TargetOwner {
    cluster: usize,
    endpoint: usize,
}

/// What the main thread, the resolver thread and every worker share.
struct Shared {
    /// Distinguishes managers in the workers' thread-local slot tables (tests create many).
    id: u64,
    clusters: Vec<Arc<ClusterInfo>>,
    /// Per cluster, per endpoint: the config (host name, weight, locality).
    endpoint_configs: Vec<Vec<EndpointConfig>>,
    by_name: FastHashMap<String, usize>,
    targets: Vec<TargetOwner>,
    state: Mutex<State>,
    /// Signalled when `warming` drops to zero.
    warmed: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update of `State` completes before the guard drops; a panic in between (a bug)
    // leaves at worst a stale snapshot, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(1);

/// The main thread's cluster manager. Dropping it stops DNS refreshes; workers keep their last
/// snapshots.
pub struct ClusterManager {
    shared: Arc<Shared>,
    _dns: Option<DnsResolverThread>,
}

impl fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterManager")
            .field("clusters", &self.shared.by_name.len())
            .finish()
    }
}

impl ClusterManager {
    /// Builds the clusters of the config, with their stats in `store` (the root scope), and
    /// starts resolving DNS clusters at once.
    pub fn new(
        clusters: &[config::Cluster],
        store: &Store,
    ) -> Result<ClusterManager, ClusterManagerError> {
        let mut by_name = FastHashMap::default();
        let mut infos = Vec::with_capacity(clusters.len());
        let mut endpoint_configs = Vec::with_capacity(clusters.len());
        let mut endpoints = Vec::with_capacity(clusters.len());
        let mut host_sets = Vec::with_capacity(clusters.len());
        let mut targets = Vec::new();
        let mut dns_targets = Vec::new();
        for (ci, cluster) in clusters.iter().enumerate() {
            if by_name.insert(cluster.name.clone(), ci).is_some() {
                return Err(ClusterManagerError::DuplicateCluster(cluster.name.clone()));
            }
            let info = Arc::new(ClusterInfo::new(cluster, store));
            let configs: Vec<EndpointConfig> = cluster
                .endpoints
                .iter()
                .flat_map(|group| {
                    group.lb_endpoints.iter().map(|endpoint| EndpointConfig {
                        endpoint: endpoint.clone(),
                        locality: group.locality.clone().unwrap_or_default(),
                    })
                })
                .collect();
            let is_dns = cluster.discovery_type != DiscoveryType::Static;
            let mut states = Vec::with_capacity(configs.len());
            for (ei, config) in configs.iter().enumerate() {
                match &config.endpoint.address {
                    EndpointAddress::Ip(address) => {
                        // A DNS cluster "resolves" an IP literal to itself, and Envoy then shows
                        // the literal as the host name.
                        let hostname = if is_dns {
                            address.ip().to_string()
                        } else {
                            String::new()
                        };
                        states.push(EndpointState {
                            hosts: vec![new_host(*address, config, &hostname)],
                            pending: false,
                        })
                    }
                    EndpointAddress::Dns { hostname, port } => {
                        targets.push(TargetOwner {
                            cluster: ci,
                            endpoint: ei,
                        });
                        dns_targets.push(DnsTarget {
                            hostname: hostname.clone(),
                            port: *port,
                            family: cluster.dns_lookup_family,
                            refresh_rate: cluster.dns_refresh_rate,
                        });
                        states.push(EndpointState {
                            hosts: Vec::new(),
                            pending: true,
                        });
                    }
                }
            }
            let hosts = merged_hosts(&states);
            set_membership_gauges(&info.stats, &hosts);
            host_sets.push(Arc::new(HostSet::new(hosts, 1)));
            infos.push(info);
            endpoint_configs.push(configs);
            endpoints.push(states);
        }
        let shared = Arc::new(Shared {
            id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
            clusters: infos,
            endpoint_configs,
            by_name,
            state: Mutex::new(State {
                endpoints,
                host_sets,
                workers: Vec::new(),
                warming: dns_targets.len(),
            }),
            targets,
            warmed: Condvar::new(),
        });
        let dns = if dns_targets.is_empty() {
            None
        } else {
            let callback_shared = Arc::clone(&shared);
            Some(
                DnsResolverThread::start(
                    dns_targets,
                    Box::new(move |target, result| callback_shared.on_dns_answer(target, result)),
                )
                .map_err(ClusterManagerError::ResolverThread)?,
            )
        };
        Ok(ClusterManager { shared, _dns: dns })
    }

    /// The handle workers (and the admin) use; `Send + Sync`, cheap to clone.
    pub fn handle(&self) -> ClusterManagerHandle {
        ClusterManagerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until every DNS name has been answered once (Envoy's cluster warming, which holds
    /// back listeners until upstreams are known), at most `timeout`. True when warm.
    pub fn wait_for_initial_dns(&self, timeout: Duration) -> bool {
        let state = lock(&self.shared.state);
        let (state, _) = self
            .shared
            .warmed
            .wait_timeout_while(state, timeout, |s| s.warming > 0)
            .unwrap_or_else(|e| e.into_inner());
        state.warming == 0
    }
}

impl Shared {
    /// The resolver thread's callback: merge, and publish if membership changed.
    fn on_dns_answer(&self, target: usize, result: Result<Vec<SocketAddr>, DnsError>) {
        let owner = self.targets[target];
        let info = &self.clusters[owner.cluster];
        let endpoint_config = &self.endpoint_configs[owner.cluster][owner.endpoint];
        let stats = &info.stats;
        stats.update_attempt.inc();
        let mut state = lock(&self.state);
        let endpoint = &mut state.endpoints[owner.cluster][owner.endpoint];
        if endpoint.pending {
            endpoint.pending = false;
            state.warming -= 1;
            if state.warming == 0 {
                self.warmed.notify_all();
            }
        }
        let mut addresses = match result {
            Ok(addresses) => addresses,
            Err(e) => {
                log::warn!("cluster '{}': {e}; keeping the previous hosts", info.name);
                stats.update_failure.inc();
                return;
            }
        };
        stats.update_success.inc();
        if addresses.is_empty() {
            stats.update_empty.inc();
        }
        if info.discovery_type == DiscoveryType::LogicalDns {
            // LOGICAL_DNS: new connections go to the first address only.
            addresses.truncate(1);
        }
        let hostname = match &endpoint_config.endpoint.address {
            EndpointAddress::Dns { hostname, .. } => hostname.as_str(),
            EndpointAddress::Ip(_) => "",
        };
        let endpoint = &mut state.endpoints[owner.cluster][owner.endpoint];
        let previous = std::mem::take(&mut endpoint.hosts);
        endpoint.hosts = addresses
            .iter()
            .map(|a| match previous.iter().find(|h| h.address() == *a) {
                Some(host) => Arc::clone(host),
                None => new_host(*a, endpoint_config, hostname),
            })
            .collect();
        let hosts = merged_hosts(&state.endpoints[owner.cluster]);
        let current = &state.host_sets[owner.cluster];
        if current.same_membership(&hosts) {
            stats.update_no_rebuild.inc();
            return;
        }
        let version = current.version() + 1;
        log::info!(
            "cluster '{}': membership changed to {:?}",
            info.name,
            hosts.iter().map(|h| h.address()).collect::<Vec<_>>()
        );
        stats.membership_change.inc();
        set_membership_gauges(stats, &hosts);
        let set = Arc::new(HostSet::new(hosts, version));
        state.host_sets[owner.cluster] = Arc::clone(&set);
        let (id, cluster) = (self.id, owner.cluster);
        state.workers.retain(|poster| {
            let set = Arc::clone(&set);
            // False: that worker's dispatcher is gone; forget it.
            poster.post(Box::new(move || deliver(id, cluster, set)))
        });
    }
}

/// A host for an endpoint's address; `hostname` is the DNS name it came from, unless the
/// endpoint names one itself (`endpoint.hostname`).
fn new_host(address: SocketAddr, config: &EndpointConfig, hostname: &str) -> Arc<Host> {
    let name = config.endpoint.hostname.as_deref().unwrap_or(hostname);
    Arc::new(Host::with_locality(
        address,
        name,
        config.endpoint.load_balancing_weight,
        config.locality.clone(),
    ))
}

/// The cluster's hosts: every endpoint's, in endpoint order.
fn merged_hosts(endpoints: &[EndpointState]) -> Vec<Arc<Host>> {
    endpoints
        .iter()
        .flat_map(|e| e.hosts.iter().cloned())
        .collect()
}

fn set_membership_gauges(stats: &ClusterStats, hosts: &[Arc<Host>]) {
    stats.membership_total.set(hosts.len() as u64);
    stats
        .membership_healthy
        .set(hosts.iter().filter(|h| h.healthy()).count() as u64);
    stats.max_host_weight.set(
        hosts
            .iter()
            .map(|h| u64::from(h.weight()))
            .max()
            .unwrap_or(0),
    );
}

thread_local! {
    /// This thread's registered thread-local cluster managers, by manager id (Envoy's TLS
    /// slots). Weak: the worker owns its manager; a post arriving after it is dropped is ignored.
    static SLOTS: RefCell<Vec<(u64, Weak<ThreadLocalClusterManager>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Runs on a worker thread (posted): hands the snapshot to that worker's manager.
fn deliver(manager_id: u64, cluster: usize, set: Arc<HostSet>) {
    let tlcm = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        slots.retain(|(_, weak)| weak.strong_count() > 0);
        slots
            .iter()
            .find(|(id, _)| *id == manager_id)
            .and_then(|(_, weak)| weak.upgrade())
    });
    if let Some(tlcm) = tlcm {
        tlcm.on_host_set_update(ClusterId(cluster), set);
    }
}

/// The `Send + Sync` face of the cluster manager, for workers and the admin endpoint.
#[derive(Clone)]
pub struct ClusterManagerHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ClusterManagerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterManagerHandle").finish()
    }
}

impl ClusterManagerHandle {
    /// The id of cluster `name`, or `None` if no such cluster (a config-time check).
    pub fn cluster_id(&self, name: &str) -> Option<ClusterId> {
        self.shared.by_name.get(name).copied().map(ClusterId)
    }

    /// The info of a cluster.
    pub fn info(&self, id: ClusterId) -> &Arc<ClusterInfo> {
        &self.shared.clusters[id.0]
    }

    /// Every cluster with its current hosts, in config order (the admin `/clusters` page). Takes
    /// the manager's lock: not for the data path.
    pub fn clusters(&self) -> Vec<(Arc<ClusterInfo>, Arc<HostSet>)> {
        let state = lock(&self.shared.state);
        self.shared
            .clusters
            .iter()
            .cloned()
            .zip(state.host_sets.iter().cloned())
            .collect()
    }

    /// This thread's thread-local cluster manager, if this thread registered as a worker of this
    /// manager (Envoy's TLS slot lookup). A filter that keeps only the handle (it is `Send`, so
    /// it fits in a shared filter config) finds its worker's manager here per connection.
    pub fn thread_local(&self) -> Option<Rc<ThreadLocalClusterManager>> {
        let id = self.shared.id;
        SLOTS.with(|slots| {
            slots
                .borrow()
                .iter()
                .find(|(slot_id, _)| *slot_id == id)
                .and_then(|(_, weak)| weak.upgrade())
        })
    }

    /// Called once by each worker, on the worker's thread, before it serves connections: its
    /// thread-local cluster manager, with the current snapshots, kept current from now on
    /// through `dispatcher`'s post queue. Stats handles come from `store` (the worker's shard).
    pub fn register_worker(
        &self,
        dispatcher: &Dispatcher,
        store: &Store,
    ) -> Rc<ThreadLocalClusterManager> {
        self.register_poster(dispatcher.poster(), store, FastRandom::new())
    }

    fn register_poster(
        &self,
        poster: Poster,
        store: &Store,
        mut random: FastRandom,
    ) -> Rc<ThreadLocalClusterManager> {
        // Under the lock: no update can be published between the snapshot and the poster's
        // registration.
        let mut state = lock(&self.shared.state);
        let clusters = self
            .shared
            .clusters
            .iter()
            .zip(state.host_sets.iter())
            .map(|(info, set)| ThreadLocalCluster {
                stats: ClusterStats::new(store, &info.name),
                lb: RefCell::new(LoadBalancer::new(
                    info.lb_policy,
                    Arc::clone(set),
                    &mut random,
                )),
                info: Arc::clone(info),
                random: RefCell::new(FastRandom::with_seed(random.random())),
                updates: Cell::new(0),
            })
            .collect();
        state.workers.push(poster);
        drop(state);
        let tlcm = Rc::new(ThreadLocalClusterManager {
            shared: Arc::clone(&self.shared),
            clusters,
        });
        SLOTS.with(|slots| {
            slots
                .borrow_mut()
                .push((self.shared.id, Rc::downgrade(&tlcm)))
        });
        tlcm
    }
}

/// A worker's view of every cluster (Envoy's `ThreadLocalClusterManagerImpl`). Lives on one
/// worker thread; never locked.
pub struct ThreadLocalClusterManager {
    shared: Arc<Shared>,
    clusters: Vec<ThreadLocalCluster>,
}

impl fmt::Debug for ThreadLocalClusterManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadLocalClusterManager")
            .field("clusters", &self.clusters.len())
            .finish()
    }
}

impl ThreadLocalClusterManager {
    /// The cluster named `name` (Envoy's `getThreadLocalCluster`). Prefer resolving the name to a
    /// [`ClusterId`] once and calling [`cluster`](Self::cluster).
    pub fn get(&self, name: &str) -> Option<&ThreadLocalCluster> {
        self.shared.by_name.get(name).map(|i| &self.clusters[*i])
    }

    /// The id of cluster `name`.
    pub fn cluster_id(&self, name: &str) -> Option<ClusterId> {
        self.shared.by_name.get(name).copied().map(ClusterId)
    }

    /// The cluster with this id (ids come from this manager, so always valid).
    pub fn cluster(&self, id: ClusterId) -> &ThreadLocalCluster {
        &self.clusters[id.0]
    }

    fn on_host_set_update(&self, id: ClusterId, set: Arc<HostSet>) {
        let cluster = &self.clusters[id.0];
        if set.version() <= cluster.host_set().version() {
            return;
        }
        let mut random = cluster.random.borrow_mut();
        *cluster.lb.borrow_mut() = LoadBalancer::new(cluster.info.lb_policy, set, &mut *random);
        cluster.updates.set(cluster.updates.get() + 1);
    }
}

/// One cluster on one worker (Envoy's `ThreadLocalClusterManagerImpl::ClusterEntry`): the
/// info, this worker's stats handles, and the load balancer over the current snapshot.
pub struct ThreadLocalCluster {
    info: Arc<ClusterInfo>,
    stats: ClusterStats,
    lb: RefCell<LoadBalancer>,
    random: RefCell<FastRandom>,
    /// How many snapshots this worker has received (for tests and introspection).
    updates: Cell<u64>,
}

impl fmt::Debug for ThreadLocalCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadLocalCluster")
            .field("name", &self.info.name)
            .finish()
    }
}

impl ThreadLocalCluster {
    pub fn info(&self) -> &Arc<ClusterInfo> {
        &self.info
    }

    /// This worker's handles of `cluster.<name>.*`.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The current snapshot.
    pub fn host_set(&self) -> Arc<HostSet> {
        Arc::clone(self.lb.borrow().host_set())
    }

    /// How many host-set updates this worker has applied.
    pub fn updates_received(&self) -> u64 {
        self.updates.get()
    }

    /// Picks a host for a new upstream connection or request (Envoy's `chooseHost`); `None`: no
    /// host (the caller counts `upstream_cx_none_healthy` and answers "no healthy upstream").
    /// Does not allocate.
    pub fn choose_host(&self) -> Option<Arc<Host>> {
        let mut random = self.random.borrow_mut();
        self.choose_host_with(&mut *random)
    }

    /// [`choose_host`](Self::choose_host) with the caller's randomness (deterministic tests).
    pub fn choose_host_with(&self, random: &mut impl RandomGenerator) -> Option<Arc<Host>> {
        let mut lb = self.lb.borrow_mut();
        if lb.in_panic() {
            self.stats.lb_healthy_panic.inc();
        }
        lb.choose_host(random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::RunType;
    use std::time::Instant;

    fn clusters(yaml: &str) -> Vec<config::Cluster> {
        config::load_str(yaml).unwrap().static_resources.clusters
    }

    const STATIC: &str = r#"
static_resources:
  clusters:
  - name: a
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1001 } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1002 } } }
          load_balancing_weight: 3
  - name: empty
"#;

    #[test]
    fn static_clusters_are_ready_at_once() {
        let store = Store::new();
        let cm = ClusterManager::new(&clusters(STATIC), &store).unwrap();
        assert!(cm.wait_for_initial_dns(Duration::ZERO));
        let handle = cm.handle();
        let all = handle.clusters();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0.name, "a");
        assert_eq!(all[0].1.len(), 2);
        assert_eq!(all[0].1.hosts()[1].weight(), 3);
        assert!(all[1].1.is_empty());
        assert_eq!(all[0].0.stats.membership_total.value(), 2);
        assert_eq!(all[0].0.stats.max_host_weight.value(), 3);

        let dispatcher = Dispatcher::new("worker_test").unwrap();
        assert!(handle.thread_local().is_none());
        let tlcm = handle.register_worker(&dispatcher, &store.for_worker());
        assert!(Rc::ptr_eq(&handle.thread_local().unwrap(), &tlcm));
        let id = tlcm.cluster_id("a").unwrap();
        assert_eq!(handle.cluster_id("a"), Some(id));
        assert!(tlcm.cluster_id("nope").is_none());
        let a = tlcm.cluster(id);
        let ports: Vec<u16> = (0..4)
            .map(|_| a.choose_host().unwrap().address().port())
            .collect();
        assert_eq!(ports.iter().filter(|p| **p == 1002).count(), 3, "{ports:?}");
        assert!(tlcm.get("empty").unwrap().choose_host().is_none());
        a.stats().upstream_cx_total.inc();
        assert_eq!(handle.info(id).stats.upstream_cx_total.value(), 1);
    }

    fn dns_yaml(refresh: &str, family: &str, kind: &str) -> String {
        format!(
            r#"
static_resources:
  clusters:
  - name: dns
    type: {kind}
    dns_refresh_rate: {refresh}
    dns_lookup_family: {family}
    load_assignment:
      cluster_name: dns
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: 7001 }} }} }}
"#
        )
    }

    /// Runs `dispatcher` until `done` or 10 s pass.
    fn run_until(dispatcher: &Dispatcher, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            dispatcher.run(RunType::NonBlock).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn strict_dns_resolves_localhost_and_reaches_the_worker_by_post() {
        let store = Store::new();
        let cm = ClusterManager::new(
            &clusters(&dns_yaml("3600s", "V4_ONLY", "STRICT_DNS")),
            &store,
        )
        .unwrap();
        // The worker registers before the answer: it starts empty and receives a post.
        let dispatcher = Dispatcher::new("worker_0").unwrap();
        let tlcm = cm
            .handle()
            .register_worker(&dispatcher, &store.for_worker());
        assert!(cm.wait_for_initial_dns(Duration::from_secs(10)));
        let dns = tlcm.get("dns").unwrap();
        run_until(&dispatcher, || !dns.host_set().is_empty());
        let set = dns.host_set();
        assert!(set
            .hosts()
            .iter()
            .any(|h| h.address() == "127.0.0.1:7001".parse().unwrap()));
        assert!(set.hosts().iter().all(|h| h.address().is_ipv4()));
        assert_eq!(set.hosts()[0].hostname(), "localhost");
        assert_eq!(dns.choose_host().unwrap().address().port(), 7001);
        let info = cm.handle().clusters()[0].0.clone();
        assert_eq!(info.stats.update_success.value(), 1);
        assert_eq!(info.stats.membership_change.value(), 1);

        // A worker registered after the answer starts with the hosts.
        let late = cm
            .handle()
            .register_worker(&dispatcher, &store.for_worker());
        assert!(!late.get("dns").unwrap().host_set().is_empty());
    }

    #[test]
    fn refresh_with_same_answer_does_not_rebuild_and_keeps_hosts() {
        let store = Store::new();
        let cm = ClusterManager::new(
            &clusters(&dns_yaml("0.02s", "V4_ONLY", "LOGICAL_DNS")),
            &store,
        )
        .unwrap();
        assert!(cm.wait_for_initial_dns(Duration::from_secs(10)));
        let handle = cm.handle();
        let info = handle.clusters()[0].0.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while info.stats.update_no_rebuild.value() < 2 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let set = &handle.clusters()[0].1;
        // LOGICAL_DNS: one host, the first address; published once.
        assert_eq!(set.len(), 1);
        assert_eq!(set.version(), 2);
        assert_eq!(info.stats.membership_change.value(), 1);
    }

    #[test]
    fn updates_reach_every_worker_thread_through_its_post_queue() {
        let store = Store::new();
        let cm = ClusterManager::new(
            &clusters(&dns_yaml("3600s", "V4_ONLY", "STRICT_DNS")),
            &store,
        )
        .unwrap();
        let handle = cm.handle();
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let handle = handle.clone();
                let store = store.for_worker();
                std::thread::spawn(move || {
                    let dispatcher = Dispatcher::new(&format!("worker_{i}")).unwrap();
                    let tlcm = handle.register_worker(&dispatcher, &store);
                    let dns = tlcm.get("dns").unwrap();
                    run_until(&dispatcher, || !dns.host_set().is_empty());
                    dns.choose_host().unwrap().address()
                })
            })
            .collect();
        for w in workers {
            assert_eq!(w.join().unwrap(), "127.0.0.1:7001".parse().unwrap());
        }
        drop(cm);
    }

    #[test]
    fn merge_keeps_host_identity_and_publishes_changes() {
        // Drive the merge directly, as the resolver thread would, with chosen answers.
        let store = Store::new();
        let cm = ClusterManager::new(
            &clusters(&dns_yaml("3600s", "V4_ONLY", "STRICT_DNS")),
            &store,
        )
        .unwrap();
        assert!(cm.wait_for_initial_dns(Duration::from_secs(10)));
        let shared = &cm.shared;
        let dispatcher = Dispatcher::new("worker_merge").unwrap();
        let poster = dispatcher.poster();
        let tlcm =
            cm.handle()
                .register_poster(poster, &store.for_worker(), FastRandom::with_seed(1));
        let dns = tlcm.get("dns").unwrap();
        let a: SocketAddr = "127.0.0.2:7001".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:7001".parse().unwrap();
        shared.on_dns_answer(0, Ok(vec![a]));
        run_until(&dispatcher, || {
            dns.host_set().hosts().iter().any(|h| h.address() == a)
        });
        let host_a = dns.host_set().hosts()[0].clone();
        super::super::cluster::inc(&host_a.stats.cx_total);

        shared.on_dns_answer(0, Ok(vec![b, a]));
        run_until(&dispatcher, || dns.host_set().len() == 2);
        let set = dns.host_set();
        assert_eq!(set.hosts()[0].address(), b);
        // `a` carried over: the same host, counters intact.
        assert!(Arc::ptr_eq(&set.hosts()[1], &host_a));
        assert_eq!(set.hosts()[1].stats.values()[2], ("cx_total", 1));

        // A failure keeps the hosts.
        let before = dns.updates_received();
        shared.on_dns_answer(
            0,
            Err(DnsError {
                hostname: "localhost".into(),
                error: std::io::Error::other("boom"),
            }),
        );
        dispatcher.run(RunType::NonBlock).unwrap();
        assert_eq!(dns.host_set().len(), 2);
        assert_eq!(dns.updates_received(), before);
        let info = cm.handle().clusters()[0].0.clone();
        assert_eq!(info.stats.update_failure.value(), 1);

        // An empty answer empties the cluster.
        shared.on_dns_answer(0, Ok(vec![]));
        run_until(&dispatcher, || dns.host_set().is_empty());
        assert!(dns.choose_host().is_none());
        assert_eq!(info.stats.update_empty.value(), 1);
        assert_eq!(info.stats.membership_total.value(), 0);
    }
}
