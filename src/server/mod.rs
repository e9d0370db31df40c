//! The server: CLI options, main thread, workers (issue 3).
//!
//! `options` (the command line) → `instance` (Envoy's `InstanceImpl::run`: config, sockets,
//! admin, workers, main loop, drain) → `listener_manager` (config → built listeners, bound
//! sockets) and `worker` (one thread, one dispatcher, one connection handler each).

pub mod drain_manager;
pub mod instance;
pub mod listener_manager;
pub mod options;
pub mod worker;
