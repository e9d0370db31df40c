//! HTTP/1.1: codec, connection manager, HTTP filter chain (issue 4).

pub mod codec;
pub mod decimal;
pub mod header_map;
mod header_pool;
pub mod inline_header;
pub mod scratch;

pub use header_map::HeaderMap;

pub mod config;
pub mod conn_manager;
pub mod conn_manager_io;
pub mod conn_manager_stats;
pub mod conn_manager_timers;
pub mod conn_manager_utility;
pub mod filter;
pub mod filter_manager;
pub mod filter_registry;
pub mod filters;
pub mod internal_address_config;
pub mod local_address;
pub mod original_ip_detection;
pub mod request_id;

pub mod conn_manager_filter;
#[cfg(test)]
mod conn_manager_tests;
pub mod route_adapter;
pub mod stream_slot;
