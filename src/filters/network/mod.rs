//! Network (L4) filters: one file each (Envoy's `source/extensions/filters/network/`).

pub mod echo;
pub mod tcp_conn_pool;
pub mod tcp_proxy;
