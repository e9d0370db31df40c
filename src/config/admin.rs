//! `envoy.config.bootstrap.v3.Admin`: where the admin endpoint listens, and its access log.
//!
//! Parsed by the Bootstrap parser; read by the admin server (src/admin/, issue 5), which also
//! interprets the kept `access_log` with the access-log parser.

use std::net::SocketAddr;

use super::address::parse_listen_address;
use super::error::Result;
use super::node::{Node, RawConfig};

/// Envoy's default `profile_path`.
pub const DEFAULT_PROFILE_PATH: &str = "/var/log/envoy/envoy.prof";

/// The `admin` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    /// `address.socket_address`. Default: none (no admin listener, as in Envoy).
    pub address: Option<SocketAddr>,
    /// `access_log` (a list of `AccessLog`), kept as written for the access-log parser.
    /// Default: none.
    pub access_log: Option<RawConfig>,
    /// `access_log_path` (deprecated in Envoy in favour of `access_log`). Default: none.
    pub access_log_path: Option<String>,
    /// `profile_path`. Default `/var/log/envoy/envoy.prof`.
    pub profile_path: String,
    /// Path of the block in the document (`admin`).
    pub path: String,
}

impl Admin {
    /// Reads the `admin` block.
    pub fn parse(node: &Node<'_>) -> Result<Admin> {
        node.check_fields(
            &["address", "access_log", "access_log_path", "profile_path"],
            &["socket_options", "ignore_global_conn_limit"],
        )?;
        let text = |field| node.opt(field, |n| n.as_str().map(str::to_string));
        Ok(Admin {
            address: node.opt("address", parse_listen_address)?,
            access_log: node.opt("access_log", |n| n.as_list().map(|_| RawConfig::keep(n)))?,
            access_log_path: text("access_log_path")?,
            profile_path: text("profile_path")?.unwrap_or_else(|| DEFAULT_PROFILE_PATH.to_string()),
            path: node.path().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> Result<Admin> {
        let v = parse_yaml(yaml).unwrap();
        Admin::parse(&Node::with_path(&v, "admin"))
    }

    #[test]
    fn admin_block() {
        let a = parse("{}").unwrap();
        assert_eq!(a.address, None);
        assert_eq!(a.profile_path, DEFAULT_PROFILE_PATH);
        let a = parse(
            "address: {socket_address: {address: 127.0.0.1, port_value: 9901}}\naccess_log_path: /dev/null\naccess_log:\n- name: envoy.access_loggers.stdout\n",
        )
        .unwrap();
        assert_eq!(a.address, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(a.access_log_path.as_deref(), Some("/dev/null"));
        let log = a.access_log.unwrap();
        assert_eq!(log.path, "admin.access_log");
        assert_eq!(
            log.node().as_list().unwrap()[0].path(),
            "admin.access_log[0]"
        );
        assert_eq!(
            parse("access_log: {name: x}").unwrap_err().to_string(),
            "admin.access_log: expected a list, found a mapping"
        );
        assert_eq!(
            parse("socket_options: []").unwrap_err().to_string(),
            "admin.socket_options: not supported by nuncio"
        );
    }
}
