//! Listeners, connections and the network filter manager (issue 3).

pub mod proxy_protocol;
