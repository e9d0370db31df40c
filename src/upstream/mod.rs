//! Clusters, load balancers, connection pools (issues 3 and 4).
