//! Clusters, load balancers, connection pools (issues 3 and 4).

pub mod cluster;
pub mod cluster_manager;
pub mod dns;
pub mod host_set;
pub mod load_balancer;
