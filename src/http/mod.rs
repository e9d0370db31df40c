//! HTTP/1.1: codec, connection manager, HTTP filter chain (issue 4).

pub mod codec;
pub mod header_map;

pub use header_map::HeaderMap;
