//! The command line (Envoy's `OptionsImpl`): hand-written, because the flags are few and the
//! error messages are ours to choose.
//!
//! Called by `main.rs`; produces [`Options`] for `server::instance::run`. To add a flag, add a
//! field, a `match` arm in [`parse`] and a line in [`USAGE`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::drain_manager::DrainStrategy;

/// What to do with the config (Envoy's `--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run the proxy.
    Serve,
    /// Load and build the whole config (listeners, filter factories), bind nothing, report.
    Validate,
}

/// The log level (`-l`), Envoy's names; `critical` is logged as `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

impl LogLevel {
    /// The `log` filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Trace => log::LevelFilter::Trace,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
            LogLevel::Off => log::LevelFilter::Off,
        }
    }
}

/// Parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-c/--config-path`; `None`: the embedded default config.
    pub config_path: Option<PathBuf>,
    /// `--mode serve|validate` (default serve).
    pub mode: Mode,
    /// `--concurrency N`: worker threads (default: the number of cores).
    pub concurrency: usize,
    /// `-l/--log-level`; `None`: `RUST_LOG` if set, else info.
    pub log_level: Option<LogLevel>,
    /// `--drain-time-s` (default 600): how long connections may finish after SIGTERM/SIGINT.
    pub drain_time: Duration,
    /// `--drain-strategy gradual|immediate` (default gradual, as Envoy's): how connections are
    /// told to close during a drain (see `server::drain_manager`).
    pub drain_strategy: DrainStrategy,
    /// `--file-flush-interval-msec` (default 10000): how often access log files are flushed.
    pub file_flush_interval: Duration,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
    Version,
}

/// A command-line mistake; the message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

impl std::error::Error for OptionsError {}

/// `--help`.
pub const USAGE: &str = "\
nuncio: an Envoy-style L4/L7 proxy

USAGE:
    nuncio [-c FILE] [OPTIONS]

OPTIONS:
    -c, --config-path FILE   Envoy v3 YAML (or JSON) bootstrap config; without it, an embedded
                             default config serves HTTP on 127.0.0.1:10000 (curl it), echo on
                             127.0.0.1:10001 and the admin endpoint on 127.0.0.1:9901
        --mode MODE          serve (default) | validate: check the config and exit 0 or 1
        --concurrency N      worker threads (default: the number of cores)
    -l, --log-level LEVEL    trace | debug | info (default) | warn | error | critical | off;
                             RUST_LOG is used when -l is absent
        --drain-time-s N     seconds connections may finish after SIGTERM/SIGINT (default 600);
                             a second signal exits at once
        --drain-strategy S   gradual (default): connections are told to close spread over the
                             drain time | immediate: all as soon as the drain starts
        --file-flush-interval-msec N
                             how often buffered access log lines are written (default 10000)
        --version            print the version and exit
    -h, --help               print this help and exit
";

/// The number of cores (Envoy's default concurrency).
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses the arguments after the program name. `--flag value` and `--flag=value` both work.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, OptionsError> {
    let mut options = Options {
        config_path: None,
        mode: Mode::Serve,
        concurrency: default_concurrency(),
        log_level: None,
        drain_time: Duration::from_secs(600),
        drain_strategy: DrainStrategy::Gradual,
        file_flush_interval: Duration::from_secs(10),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, OptionsError> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => Err(OptionsError(format!("{name} needs a value"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            "-c" | "--config-path" => options.config_path = Some(value(&flag)?.into()),
            "--mode" => {
                options.mode = match value(&flag)?.as_str() {
                    "serve" => Mode::Serve,
                    "validate" => Mode::Validate,
                    other => {
                        return Err(OptionsError(format!(
                            "--mode: unknown mode '{other}' (serve or validate)"
                        )))
                    }
                }
            }
            "--concurrency" => {
                let v = value(&flag)?;
                options.concurrency = match v.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => n,
                    _ => {
                        return Err(OptionsError(format!(
                            "--concurrency: '{v}' is not a number of workers between 1 and 1024"
                        )))
                    }
                };
            }
            "-l" | "--log-level" => {
                let v = value(&flag)?;
                options.log_level = Some(match v.as_str() {
                    "trace" => LogLevel::Trace,
                    "debug" => LogLevel::Debug,
                    "info" => LogLevel::Info,
                    "warn" | "warning" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    "critical" => LogLevel::Critical,
                    "off" => LogLevel::Off,
                    _ => {
                        return Err(OptionsError(format!(
                        "--log-level: unknown level '{v}' (trace, debug, info, warn, error, critical, off)"
                    )))
                    }
                });
            }
            "--drain-time-s" => {
                let v = value(&flag)?;
                options.drain_time = match v.parse::<u64>() {
                    Ok(s) => Duration::from_secs(s),
                    Err(_) => {
                        return Err(OptionsError(format!(
                            "--drain-time-s: '{v}' is not a number of seconds"
                        )))
                    }
                };
            }
            "--drain-strategy" => {
                let v = value(&flag)?;
                options.drain_strategy = DrainStrategy::parse(&v).ok_or_else(|| {
                    OptionsError(format!(
                        "--drain-strategy: unknown strategy '{v}' (gradual, immediate)"
                    ))
                })?;
            }
            "--file-flush-interval-msec" => {
                let v = value(&flag)?;
                options.file_flush_interval = match v.parse::<u64>() {
                    Ok(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => {
                        return Err(OptionsError(format!(
                            "--file-flush-interval-msec: '{v}' is not a positive number of milliseconds"
                        )))
                    }
                };
            }
            other => return Err(OptionsError(format!("unknown argument '{other}'"))),
        }
    }
    Ok(Command::Run(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, OptionsError> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(o),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o.config_path, None);
        assert_eq!(o.mode, Mode::Serve);
        assert_eq!(o.drain_time, Duration::from_secs(600));
        assert_eq!(o.drain_strategy, DrainStrategy::Gradual, "Envoy's default");
        assert!(o.concurrency >= 1);
    }

    #[test]
    fn every_flag_in_both_forms() {
        let o = run(&[
            "-c",
            "a.yaml",
            "--mode=validate",
            "--concurrency",
            "3",
            "-l",
            "critical",
            "--drain-time-s=5",
            "--drain-strategy",
            "immediate",
            "--file-flush-interval-msec",
            "250",
        ])
        .unwrap();
        assert_eq!(o.config_path, Some(PathBuf::from("a.yaml")));
        assert_eq!(o.mode, Mode::Validate);
        assert_eq!(o.concurrency, 3);
        assert_eq!(o.log_level, Some(LogLevel::Critical));
        assert_eq!(o.drain_time, Duration::from_secs(5));
        assert_eq!(o.drain_strategy, DrainStrategy::Immediate);
        assert_eq!(o.file_flush_interval, Duration::from_millis(250));
        assert_eq!(
            run(&["--config-path=b.yaml"]).unwrap().config_path,
            Some(PathBuf::from("b.yaml"))
        );
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(run(&["--bogus"])
            .unwrap_err()
            .0
            .contains("unknown argument '--bogus'"));
        assert!(run(&["-c"]).unwrap_err().0.contains("needs a value"));
        assert!(run(&["--mode", "x"]).is_err());
        assert!(run(&["--drain-strategy", "slow"])
            .unwrap_err()
            .0
            .contains("gradual, immediate"));
        assert!(run(&["--concurrency", "0"]).is_err());
        assert!(run(&["-l", "loud"]).is_err());
        assert!(run(&["--drain-time-s", "-1"]).is_err());
        assert!(run(&["--file-flush-interval-msec", "0"]).is_err());
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(["--help".to_string()]).unwrap(), Command::Help);
        assert_eq!(parse(["--version".to_string()]).unwrap(), Command::Version);
    }
}
