//! Clusters, load balancers, connection pools (issues 3 and 4).
//!
//! The upstream side of the proxy, in the order a connection meets it:
//! - `cluster_manager`: Envoy's `ClusterManagerImpl` (main thread: builds every cluster from the
//!   config, owns DNS, publishes host-set snapshots) and `ThreadLocalClusterManager` (per worker:
//!   snapshot + load balancer + the worker's stats handles, updated through the post queue);
//! - `cluster`: `ClusterInfo` (settings, `cluster.<name>.*` stats, circuit breakers) and `Host`
//!   (address, weight, locality, per-host counters, health flags);
//! - `host_set`: the immutable snapshot of a cluster's hosts;
//! - `load_balancer`: round robin (EDF-weighted), random, least request;
//! - `resource_manager`: circuit breakers (max connections / pending / requests / retries);
//! - `dns`: the resolver thread for STRICT_DNS and LOGICAL_DNS clusters;
//! - `clusters_text`: the admin `/clusters` page in Envoy's text format.
//!
//! Called by the server (builds the manager, registers each worker), tcp_proxy and the router
//! (pick a host, count stats, check circuit breakers) and the admin endpoint (reads snapshots).

pub mod cluster;
pub mod cluster_manager;
pub mod clusters_text;
pub mod conn_pool;
pub mod dns;
pub mod fast_hash;
pub mod host_set;
pub mod load_balancer;
pub mod resource_manager;
