//! Envoy v3 YAML configuration: parsing with field paths in every error (issue 3).
//!
//! Owns the reading of the config file into typed structs. The entry points are
//! [`load_file`] and [`load_str`] (called by the CLI and the server at start, and by
//! `--mode validate`); the building block every other parser uses is [`Node`], a path-tracking
//! reader over the YAML document, so that any error names the field:
//! `static_resources.listeners[0].address.socket_address.port_value: 70000 is out of range ...`.
//!
//! Filters' `typed_config` is not interpreted here: it is kept as a [`TypedConfig`] for the
//! filter factory registered for its type (src/filters/), which reads it with
//! [`TypedConfig::node`].

mod duration;
mod error;
mod node;

pub use duration::parse_duration_str;
pub use error::{ConfigError, ErrorKind, Result};
pub use node::{parse_yaml, type_name, Node, TypedConfig};
