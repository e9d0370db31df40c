//! The admin endpoint (issue 5): Envoy's admin HTTP API on its own listener (`admin.address`),
//! run by the main thread's dispatcher, never by a worker.
//!
//! Owns:
//! - `server`: [`AdminServer`], the state every request reads (stats store, server state,
//!   listeners, cluster manager, dispatchers' stats) and the dispatch of a request to its
//!   handler; [`ServerControl`], what the server lets the admin do to it (quit, drain, reopen).
//! - `filter`: the network filter that speaks HTTP/1.1 on admin connections through the codec;
//!   `access_log`: the admin's own access log (`admin.access_log`).
//! - `endpoints`: the endpoint table, `/help` and the `/` home page.
//! - `query`: path and query-string parsing with percent-decoding.
//! - the handlers' renderers: `clusters` (`/clusters` JSON), `info` (`/server_info`, `/memory`,
//!   `/listeners`, `/config_dump`), `reactor_stats` (`/reactor` and the dispatcher
//!   histograms), `logging` (the process logger whose levels `/logging` changes), `json`.
//!
//! Called by `server::instance` (builds the `AdminServer`, binds the admin listener on the main
//! dispatcher, installs the `ServerControl`, hands over each worker's `DispatcherStats`) and by
//! `main.rs` (`logging::init`). Calls `stats` (rendering), `upstream` (cluster snapshots),
//! `http::codec` and `reactor` (dispatcher stats snapshots). How it reads worker state without
//! blocking a worker: see `server.rs` and `reactor_stats.rs`.

pub mod access_log;
pub mod clusters;
pub mod endpoints;
pub mod filter;
pub mod info;
pub mod json;
pub mod logging;
pub mod query;
pub mod reactor_stats;
pub mod server;

pub use crate::stats::ServerState;
pub use server::{AdminResponse, AdminServer, AfterResponse, ServerControl};
