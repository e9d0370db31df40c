//! nuncio: an Envoy-style L4/L7 proxy built on `reactor`, our libevent.
//!
//! The modules follow Envoy's source tree; ARCHITECTURE.md maps each Envoy class to its type here
//! and walks one request from `epoll_wait` to the upstream and back.

#[macro_use]
mod log_macros;

pub mod access_log;
pub mod admin;
pub mod config;
pub mod filters;
pub mod http;
pub mod network;
pub mod router;
pub mod server;
pub mod stats;
pub mod upstream;
