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

/// env_logger with Envoy's line shape: `[time][thread][level] message`. `-l` wins over
/// `RUST_LOG`; without either, info.
fn init_logging(options: &options::Options) {
    let mut builder = match options.log_level {
        Some(level) => {
            let mut b = env_logger::Builder::new();
            b.filter_level(level.filter());
            // mio's own trace lines would drown ours.
            b.filter_module("mio", level.filter().min(log::LevelFilter::Info));
            b
        }
        None => env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")),
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
    builder.init();
}
