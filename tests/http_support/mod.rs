//! The HTTP test helpers under their older name: `support::http` (tests/support/http.rs) is
//! the one copy; new tests use `mod support;` and `support::http::...`.
#![allow(dead_code, unused_imports)]

#[path = "../support/mod.rs"]
mod support;

pub use support::http::*;
