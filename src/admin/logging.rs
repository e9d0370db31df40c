//! Log levels that change while the server runs (Envoy's logger registry and the admin
//! `POST /logging` handler).
//!
//! Owns the process's `log::Log`: a thin wrapper around `env_logger`'s formatter that first asks
//! a table of named loggers (Envoy's names: `admin`, `connection`, `http`, `upstream`, ...)
//! whether the record's level is on for the logger its target (module path) belongs to. The
//! table is a set of atomics, so `POST /logging?level=debug` or `?paths=http:debug` takes effect
//! on every thread at once, without a lock on the logging path. `log::max_level` is kept at the
//! most verbose logger's level, so a disabled `debug!` still costs one atomic load.
//!
//! Called by `main.rs` ([`init`], once) and by the admin endpoint ([`handle_request`]).

use std::sync::atomic::{AtomicU8, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use super::query::Query;

/// Envoy's logger names and the module paths (log targets) each covers; a target belongs to
/// the first logger with a matching prefix, else to `main`.
pub const LOGGERS: &[(&str, &[&str])] = &[
    ("access_log", &["nuncio::access_log"]),
    ("admin", &["nuncio::admin"]),
    ("config", &["nuncio::config"]),
    ("connection", &["nuncio::network"]),
    ("filter", &["nuncio::filters"]),
    ("http", &["nuncio::http"]),
    ("main", &["nuncio::server", "nuncio"]),
    ("reactor", &["reactor", "mio"]),
    ("router", &["nuncio::router"]),
    ("stats", &["nuncio::stats"]),
    ("upstream", &["nuncio::upstream"]),
];

const MAIN: usize = 6;

/// Envoy's level names, in order of decreasing verbosity (`critical` logs as `error`).
const LEVELS: [&str; 7] = [
    "trace", "debug", "info", "warning", "error", "critical", "off",
];

/// Each logger's level, as an index into [`LEVELS`] (default info).
static CURRENT: [AtomicU8; LOGGERS.len()] = [const { AtomicU8::new(2) }; LOGGERS.len()];

/// A mistake in a `/logging` request; the text is Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggingError {
    UnknownLevel,
    UnknownLogger,
    EmptyNameOrLevel,
    InvalidParameterCount,
}

impl std::fmt::Display for LoggingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoggingError::UnknownLevel => "unknown logger level",
            LoggingError::UnknownLogger => "unknown logger name",
            LoggingError::EmptyNameOrLevel => "empty logger name or empty logger level",
            LoggingError::InvalidParameterCount => "invalid number of parameters",
        })
    }
}

impl std::error::Error for LoggingError {}

fn level_index(name: &str) -> Result<u8, LoggingError> {
    match name {
        "warn" => Ok(3),
        _ => LEVELS
            .iter()
            .position(|l| *l == name)
            .map(|i| i as u8)
            .ok_or(LoggingError::UnknownLevel),
    }
}

fn filter_of(index: u8) -> LevelFilter {
    match index {
        0 => LevelFilter::Trace,
        1 => LevelFilter::Debug,
        2 => LevelFilter::Info,
        3 => LevelFilter::Warn,
        4 | 5 => LevelFilter::Error,
        _ => LevelFilter::Off,
    }
}

fn index_of(filter: LevelFilter) -> u8 {
    match filter {
        LevelFilter::Trace => 0,
        LevelFilter::Debug => 1,
        LevelFilter::Info => 2,
        LevelFilter::Warn => 3,
        LevelFilter::Error => 4,
        LevelFilter::Off => 6,
    }
}

fn logger_index(name: &str) -> Result<usize, LoggingError> {
    LOGGERS
        .iter()
        .position(|(n, _)| *n == name)
        .ok_or(LoggingError::UnknownLogger)
}

/// The logger a log target (module path) belongs to.
fn logger_of(target: &str) -> usize {
    LOGGERS
        .iter()
        .position(|(_, prefixes)| {
            prefixes.iter().any(|p| {
                target
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
        })
        .unwrap_or(MAIN)
}

/// Whether a record of `level` from `target` is on.
pub fn enabled(target: &str, level: log::Level) -> bool {
    level <= filter_of(CURRENT[logger_of(target)].load(Ordering::Relaxed))
}

/// Keeps `log::max_level` at the most verbose logger's level.
fn update_max_level() {
    let most = CURRENT
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .min()
        .unwrap_or(2);
    log::set_max_level(filter_of(most));
}

/// Sets every logger to `level` (the `-l` flag, `/logging?level=`).
pub fn set_all(level: LevelFilter) {
    for l in &CURRENT {
        l.store(index_of(level), Ordering::Relaxed);
    }
    update_max_level();
}

/// `active loggers:` and one `  name: level` line per logger, as Envoy lists them.
pub fn active_loggers() -> String {
    let mut out = String::from("active loggers:\n");
    for (i, (name, _)) in LOGGERS.iter().enumerate() {
        let level = LEVELS[CURRENT[i].load(Ordering::Relaxed) as usize % LEVELS.len()];
        out.push_str(&format!("  {name}: {level}\n"));
    }
    out
}

/// Applies a `/logging` query: `level=L`, `paths=name:L,name:L`, or `name=L`. Nothing changes
/// when any part is wrong.
pub fn apply(query: &Query) -> Result<(), LoggingError> {
    match query.params.as_slice() {
        [] => Ok(()),
        [(key, value)] if key == "level" => {
            let level = level_index(value)?;
            for l in &CURRENT {
                l.store(level, Ordering::Relaxed);
            }
            update_max_level();
            Ok(())
        }
        [(key, value)] if key == "paths" => {
            let mut changes = Vec::new();
            for pair in value.split(',').filter(|p| !p.is_empty()) {
                let (name, level) = pair.split_once(':').unwrap_or((pair, ""));
                if name.is_empty() || level.is_empty() {
                    return Err(LoggingError::EmptyNameOrLevel);
                }
                changes.push((logger_index(name)?, level_index(level)?));
            }
            for (logger, level) in changes {
                CURRENT[logger].store(level, Ordering::Relaxed);
            }
            update_max_level();
            Ok(())
        }
        [(name, level)] => {
            let change = (logger_index(name)?, level_index(level)?);
            CURRENT[change.0].store(change.1, Ordering::Relaxed);
            update_max_level();
            Ok(())
        }
        _ => Err(LoggingError::InvalidParameterCount),
    }
}

/// The `/logging` endpoint: (status, body).
pub fn handle_request(query: &Query) -> (u16, String) {
    match apply(query) {
        Ok(()) => (200, active_loggers()),
        Err(e) => (
            400,
            format!(
                "error: {e}\n\n\
                 usage: /logging?<name>=<level> (change single level)\n\
                 usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
                 usage: /logging?level=<level> (change all levels)\n\
                 levels: trace debug info warning error critical off \n{}",
                active_loggers()
            ),
        ),
    }
}

/// The process logger: the table above decides, `env_logger` formats and writes.
struct AdminLogger {
    inner: env_logger::Logger,
}

impl Log for AdminLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        enabled(metadata.target(), metadata.level()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs `inner` as the process logger with every logger at `level`. Build `inner` with the
/// most verbose filter it should ever pass (trace, unless `RUST_LOG` narrows it): levels set
/// later through `/logging` cannot show what `inner` filters out.
pub fn init(inner: env_logger::Logger, level: LevelFilter) -> Result<(), log::SetLoggerError> {
    log::set_boxed_logger(Box::new(AdminLogger { inner }))?;
    set_all(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the levels are process-wide.
    #[test]
    fn levels_change_live_and_errors_change_nothing() {
        assert_eq!(logger_of("nuncio::http::conn_manager"), 5);
        assert_eq!(logger_of("nuncio::httpx"), MAIN);
        assert_eq!(logger_of("nuncio"), MAIN);
        assert_eq!(logger_of("reactor::dispatcher"), 7);

        let (status, body) = handle_request(&Query::parse("/logging?level=debug"));
        assert_eq!(status, 200);
        assert!(body.starts_with("active loggers:\n  access_log: debug\n"));
        assert!(enabled("nuncio::http::x", log::Level::Debug));
        assert!(!enabled("nuncio::http::x", log::Level::Trace));
        assert_eq!(log::max_level(), LevelFilter::Debug);

        let (status, body) =
            handle_request(&Query::parse("/logging?paths=http:trace,admin:warning"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("  http: trace\n") && body.contains("  admin: warning\n"));
        assert!(enabled("nuncio::http::x", log::Level::Trace));
        assert!(!enabled("nuncio::admin", log::Level::Info));
        assert_eq!(log::max_level(), LevelFilter::Trace);

        let (status, _) = handle_request(&Query::parse("/logging?router=critical"));
        assert_eq!(status, 200);
        assert!(active_loggers().contains("  router: critical\n"));

        for (q, e) in [
            ("level=loud", "error: unknown logger level\n\n"),
            (
                "paths=http:debug,nosuch:info",
                "error: unknown logger name\n\n",
            ),
            (
                "paths=http",
                "error: empty logger name or empty logger level\n\n",
            ),
            (
                "level=info&paths=http:info",
                "error: invalid number of parameters\n\n",
            ),
        ] {
            let (status, body) = handle_request(&Query::parse(&format!("/logging?{q}")));
            assert_eq!(status, 400);
            assert!(body.starts_with(e), "{q}: {body}");
            assert!(body.contains("  http: trace\n"), "nothing changed: {body}");
        }
        set_all(LevelFilter::Info);
        assert!(active_loggers().contains("  http: info\n"));
    }
}
