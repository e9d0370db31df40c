//! `trace!` and `debug!`: the `log` crate's macros, with the message kept off the hot path.
//!
//! A `log::trace!` expands, inline at its call site, to a level check followed by the code that
//! builds its `fmt::Arguments`. Nothing tells the compiler that the check almost always fails
//! (info is the default level), so that formatting code is laid out in the middle of the request
//! path: the path runs ~15k instructions per request, mostly straight-line, and every dead byte
//! between its live ones costs instruction-cache space. These wrappers make the same check and
//! mark the logging branch cold (`std::hint::cold_path`), so the compiler moves it out of line.
//! What gets logged, and when, is exactly as with `log`'s macros; the admin's `/logging` and
//! `-l` still decide. Declared first in lib.rs with `#[macro_use]`, so every module of the crate
//! calls them as plain `trace!(...)` / `debug!(...)`; info and above stay `log::info!` etc.

/// `log::trace!`, its formatting laid out as cold code (see the module docs).
macro_rules! trace {
    ($($arg:tt)+) => {
        if ::log::Level::Trace <= ::log::STATIC_MAX_LEVEL && ::log::Level::Trace <= ::log::max_level() {
            ::std::hint::cold_path();
            ::log::trace!($($arg)+);
        }
    };
}

/// `log::debug!`, its formatting laid out as cold code (see the module docs).
macro_rules! debug {
    ($($arg:tt)+) => {
        if ::log::Level::Debug <= ::log::STATIC_MAX_LEVEL && ::log::Level::Debug <= ::log::max_level() {
            ::std::hint::cold_path();
            ::log::debug!($($arg)+);
        }
    };
}
