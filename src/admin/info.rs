//! The admin pages about the server itself: `/server_info`, `/memory`, `/listeners` and
//! `/config_dump`, in Envoy 1.40's JSON shapes (protobuf's JSON mapping: 64-bit numbers as
//! strings, durations as `"10s"`).
//!
//! Called by the admin server; pure functions of what the server hands them.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::json::from_yaml;
use crate::config::Bootstrap;
use crate::server::drain_manager::DrainStrategy;
use crate::server::options::{LogLevel, Mode, Options};
use crate::stats::{MemoryUse, ServerState};

/// The version string (`/server_info` `version`): Envoy's is `sha/version/status/build/ssl`;
/// ours keeps the version between slashes so the same parsers find it.
pub fn version_string() -> String {
    let build = if cfg!(debug_assertions) {
        "DEBUG"
    } else {
        "RELEASE"
    };
    format!("nuncio/{}/{build}", env!("CARGO_PKG_VERSION"))
}

/// Envoy's name for a server state.
pub fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Live => "LIVE",
        ServerState::Draining => "DRAINING",
        ServerState::PreInitializing => "PRE_INITIALIZING",
        ServerState::Initializing => "INITIALIZING",
    }
}

/// A duration as protobuf JSON writes it: whole seconds `"10s"`, else fractional `"0.5s"`.
pub fn proto_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let s = format!("{:.9}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0'))
    }
}

fn log_level_name(level: Option<LogLevel>) -> &'static str {
    match level {
        Some(LogLevel::Trace) => "trace",
        Some(LogLevel::Debug) => "debug",
        None | Some(LogLevel::Info) => "info",
        Some(LogLevel::Warn) => "warning",
        Some(LogLevel::Error) => "error",
        Some(LogLevel::Critical) => "critical",
        Some(LogLevel::Off) => "off",
    }
}

/// `/server_info`.
pub fn server_info(
    options: &Options,
    bootstrap: &Bootstrap,
    state: ServerState,
    uptime: Duration,
) -> Value {
    let uptime = format!("{}s", uptime.as_secs());
    let version = env!("CARGO_PKG_VERSION");
    let mut numbers = version.split('.').map(|n| n.parse::<u64>().unwrap_or(0));
    let node = bootstrap.node.clone().unwrap_or_default();
    json!({
        "version": version_string(),
        "state": state_name(state),
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
        "hot_restart_version": "disabled",
        "command_line_options": {
            "concurrency": options.concurrency,
            "config_path": options.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "log_level": log_level_name(options.log_level),
            "file_flush_interval": proto_duration(options.file_flush_interval),
            "drain_time": proto_duration(options.drain_time),
            "drain_strategy": match options.drain_strategy {
                DrainStrategy::Gradual => "Gradual",
                DrainStrategy::Immediate => "Immediate",
            },
            "mode": match options.mode { Mode::Serve => "Serve", Mode::Validate => "Validate" },
            "disable_hot_restart": true,
        },
        "node": {
            "id": node.id,
            "cluster": node.cluster,
            "user_agent_name": "nuncio",
            "user_agent_build_version": {
                "version": {
                    "major_number": numbers.next().unwrap_or(0),
                    "minor_number": numbers.next().unwrap_or(0),
                    "patch": numbers.next().unwrap_or(0),
                }
            }
        }
    })
}

/// `/memory`: Envoy's fields (tcmalloc's, as strings). Without tcmalloc, `allocated` and
/// `total_physical_bytes` are the resident set size, `heap_size` the data segment, and the
/// allocator-internal fields 0.
pub fn memory(mem: Option<MemoryUse>) -> Value {
    let (rss, data) = mem.map_or((0, 0), |m| (m.resident_bytes, m.data_bytes));
    json!({
        "allocated": rss.to_string(),
        "heap_size": data.to_string(),
        "pageheap_unmapped": "0",
        "pageheap_free": "0",
        "total_thread_cache": "0",
        "total_physical_bytes": rss.to_string(),
    })
}

/// `/listeners` text: `name::ip:port` per listener.
pub fn listeners_text(listeners: &[(String, SocketAddr)]) -> String {
    listeners
        .iter()
        .map(|(name, addr)| format!("{name}::{addr}\n"))
        .collect()
}

/// `/listeners?format=json`.
pub fn listeners_json(listeners: &[(String, SocketAddr)]) -> Value {
    let statuses: Vec<Value> = listeners
        .iter()
        .map(|(name, addr)| {
            json!({
                "name": name,
                "local_address": {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}},
            })
        })
        .collect();
    json!({ "listener_statuses": statuses })
}

/// `/config_dump`: the bootstrap as loaded, and its static clusters and listeners, as Envoy's
/// `BootstrapConfigDump`, `ClustersConfigDump` and `ListenersConfigDump`. `loaded` is when the
/// config was read (`last_updated`).
pub fn config_dump(bootstrap: &Bootstrap, loaded: SystemTime) -> Value {
    let last_updated = rfc3339_millis(loaded);
    let source = from_yaml(&bootstrap.source);
    let list = |key: &str| -> Vec<Value> {
        source
            .get("static_resources")
            .and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let typed = |type_url: &str, v: Value| {
        let mut m = Map::new();
        m.insert("@type".into(), type_url.into());
        if let Value::Object(fields) = v {
            m.extend(fields);
        }
        Value::Object(m)
    };
    let clusters: Vec<Value> = list("clusters")
        .into_iter()
        .map(|c| {
            json!({
                "cluster": typed("type.googleapis.com/envoy.config.cluster.v3.Cluster", c),
                "last_updated": last_updated,
            })
        })
        .collect();
    let listeners: Vec<Value> = list("listeners")
        .into_iter()
        .map(|l| {
            json!({
                "listener": typed("type.googleapis.com/envoy.config.listener.v3.Listener", l),
                "last_updated": last_updated,
            })
        })
        .collect();
    json!({
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": source,
                "last_updated": last_updated,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "static_clusters": clusters,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "static_listeners": listeners,
            },
        ]
    })
}

/// `2026-11-26T10:55:02.789Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_604_102_789);
        assert_eq!(rfc3339_millis(t), "2026-11-25T10:55:02.789Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(proto_duration(Duration::from_secs(10)), "10s");
        assert_eq!(proto_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn listeners_in_both_formats() {
        let l = vec![("echo".to_string(), "127.0.0.1:10000".parse().unwrap())];
        assert_eq!(listeners_text(&l), "echo::127.0.0.1:10000\n");
        assert_eq!(
            listeners_json(&l)["listener_statuses"][0]["local_address"]["socket_address"]
                ["port_value"],
            10000
        );
    }

    #[test]
    fn config_dump_has_envoy_sections() {
        let b = crate::config::load_str(
            "static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n    filter_chains: [{filters: [{name: envoy.filters.network.echo}]}]\n",
        )
        .unwrap();
        let d = config_dump(&b, UNIX_EPOCH);
        assert_eq!(
            d["configs"][0]["bootstrap"]["static_resources"]["listeners"][0]["name"],
            "l"
        );
        let l = &d["configs"][2]["static_listeners"][0]["listener"];
        assert_eq!(
            l["@type"],
            "type.googleapis.com/envoy.config.listener.v3.Listener"
        );
        assert_eq!(l["name"], "l");
        assert_eq!(d["configs"][1]["static_clusters"], json!([]));
    }
}
