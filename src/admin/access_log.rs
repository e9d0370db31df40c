//! The admin endpoint's own access log (`admin.access_log`, or the deprecated
//! `admin.access_log_path` with Envoy's default format): one line per admin request, through
//! the same `AccessLogManager` as every other access log (buffered, written by its flush
//! thread, reopened on SIGUSR1 and `POST /reopen_logs`).
//!
//! Built by `server::instance` at config load (errors carry the field's path); used by the
//! admin filter after each response.

use crate::access_log::{AccessLog, AccessLogConfig, AccessLogManager, Destination, Formatter};
use crate::config::{self, Admin};

/// The admin's access logs from its config block.
pub fn build(admin: &Admin, manager: &AccessLogManager) -> config::Result<Vec<AccessLog>> {
    let mut configs = match &admin.access_log {
        Some(raw) => AccessLogConfig::parse_list(&raw.node())?,
        None => Vec::new(),
    };
    if let Some(path) = &admin.access_log_path {
        configs.push(AccessLogConfig {
            name: "access_log_path".to_string(),
            filter: None,
            destination: Destination::File(path.clone()),
            formatter: Formatter::envoy_default(),
            destination_path: format!("{}.access_log_path", admin.path),
        });
    }
    configs.iter().map(|c| manager.create(c)).collect()
}
