//! Listeners, connections and the network filter manager (issue 3).
//!
//! The L4 data path of one worker, in the order a connection meets it: `listener` (accept),
//! `connection_handler` (listener filters, filter chain choice, the per-worker connection slab
//! and the dispatch of every reactor callback), `connection` (buffers, flow control, close),
//! `filter_manager` (the read and write filter lists) and `filter` (the traits filters
//! implement, and the context they act through).

pub mod address_pair;
pub mod connection;
pub mod connection_handler;
pub mod filter;
pub mod filter_chain;
pub mod filter_manager;
pub mod listener;
pub mod listener_filter;
pub mod proxy_protocol;
pub mod worker_events;
