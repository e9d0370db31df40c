//! Access logs (Envoy's `AccessLog::Instance`, `SubstitutionFormatter`, `AccessLogFilter` and
//! `AccessLogManager`): one line per HTTP request or TCP connection, written by a separate
//! thread so a worker never blocks on a disk.
//!
//! Owns: the formatter (`formatter.rs`, command operators, `START_TIME` formats in
//! `start_time.rs`), the per-stream facts a line is made of (`stream_info.rs`), response flags
//! (`response_flags.rs`), filters (`filter.rs`), the `access_log[]` config (`config.rs`), and the
//! files with their buffers and flush thread (`access_log_manager.rs`).
//!
//! Called by the HTTP connection manager and tcp_proxy (parse `access_log` at config load with
//! `AccessLogConfig::parse_list`, build with `AccessLogManager::create`, then `AccessLog::log`
//! at the end of each stream), and by the server (`reopen_all` on SIGUSR1 and POST /reopen_logs,
//! `shutdown` on exit). Calls `config::Node` for parsing and `std::fs` for files.

mod access_log_manager;
mod config;
mod filter;
mod formatter;
#[cfg(test)]
mod formatter_tests;
mod response_flags;
mod start_time;
mod stream_info;

pub use access_log_manager::{
    AccessLog, AccessLogFile, AccessLogManager, DEFAULT_FLUSH_INTERVAL, FLUSH_SIZE, MAX_BUFFER,
};
pub use config::{AccessLogConfig, Destination};
pub use filter::{AccessLogFilter, Comparison, ComparisonOp};
pub use formatter::{FormatError, Formatter, DEFAULT_FORMAT};
pub use response_flags::{ResponseFlag, ResponseFlags};
pub use start_time::TimeFormat;
pub use stream_info::{HeaderList, HeaderLookup, StreamInfo};
