//! The `nuncio` binary: parses the command line, sets up logging and the panic policy, and
//! hands over to `server::instance::run` (see there for the startup sequence).

use std::io::Write;

use nuncio::server::{instance, options};

/// Exit status after a panic on any thread (EX_SOFTWARE).
const PANIC_EXIT: i32 = 70;

fn main() {
    let command = match options::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nuncio: {e}");
            std::process::exit(1);
        }
    };
    let options = match command {
        options::Command::Help => {
            print!("{}", options::USAGE);
            return;
        }
        options::Command::Version => {
            println!("nuncio {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        options::Command::Run(o) => o,
    };
    init_logging(&options);
    // A panicking worker must not leave the process half alive: log it and exit.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        log::error!(
            "panic on thread '{}': {info}; exiting",
            thread.name().unwrap_or("?")
        );
        default_hook(info);
        std::process::exit(PANIC_EXIT);
    }));
    std::process::exit(instance::run(&options));
}

/// env_logger with Envoy's line shape: `[time][thread][level] message`, installed through
/// `admin::logging` so that `POST /logging` changes levels live. `-l` wins over `RUST_LOG`;
/// without either, info. With `-l`, env_logger passes everything (but mio's own trace lines)
/// and the admin's level table decides; with `RUST_LOG`, its directives stay the outer bound.
fn init_logging(options: &options::Options) {
    let use_env = options.log_level.is_none() && std::env::var_os("RUST_LOG").is_some();
    let mut builder = if use_env {
        env_logger::Builder::from_env(env_logger::Env::default())
    } else {
        let mut b = env_logger::Builder::new();
        b.filter_level(log::LevelFilter::Trace);
        // mio's own trace lines would drown ours.
        b.filter_module("mio", log::LevelFilter::Info);
        b
    };
    builder.format(|buf, record| {
        let thread = std::thread::current();
        writeln!(
            buf,
            "[{}][{}][{}] {}",
            buf.timestamp_millis(),
            thread.name().unwrap_or("?"),
            record.level().as_str().to_lowercase(),
            record.args()
        )
    });
    let logger = builder.build();
    let level = match options.log_level {
        Some(level) => level.filter(),
        None if use_env => logger.filter(),
        None => log::LevelFilter::Info,
    };
    if let Err(e) = nuncio::admin::logging::init(logger, level) {
        eprintln!("nuncio: cannot install the logger: {e}");
    }
}
