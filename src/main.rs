//! The `nuncio` binary: see `server` for the startup sequence.

fn main() {
    eprintln!("nuncio: not yet implemented");
    std::process::exit(1);
}
