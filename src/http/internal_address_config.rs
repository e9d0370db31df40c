//! `HttpConnectionManager.internal_address_config` (Envoy's `InternalAddressConfig`): which
//! downstream addresses count as *internal*, the trust decision behind header sanitizing
//! (`x-envoy-internal`, the router-control `x-envoy-*` headers, `x-envoy-external-address`).
//!
//! Parsed by `HcmConfig::parse`; asked by `conn_manager_utility::mutate_request_headers` once
//! per request about the final remote address (the peer, or the `x-forwarded-for` entry chosen
//! by `xff_num_trusted_hops`).
//!
//! Envoy 1.40's three cases, each checked against the real binary:
//! - the field is absent: **no** address is internal (not even loopback or RFC 1918);
//! - the field is present with no `cidr_ranges` (`{}` or `{unix_sockets: true}`): Envoy's legacy
//!   set — 10/8, 172.16/12, 192.168/16, exactly 127.0.0.1, exactly ::1 and fd00::/8 (not the rest
//!   of 127/8, not fc00::/8, not IPv4-mapped IPv6);
//! - `cidr_ranges` given: exactly those ranges.
//!
//! `unix_sockets` makes a Unix-socket peer internal; nuncio's listeners are TCP only, so it is
//! parsed and kept but never consulted.

use std::net::IpAddr;

use crate::config::{self, CidrRange, Node};

/// Which addresses are internal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InternalAddressConfig {
    /// `internal_address_config` absent: nothing is internal.
    #[default]
    Unset,
    /// Present without `cidr_ranges`: Envoy's legacy private/loopback set.
    LegacyDefault { unix_sockets: bool },
    /// Present with `cidr_ranges`: an address is internal when a range contains it.
    Ranges {
        cidr_ranges: Vec<CidrRange>,
        unix_sockets: bool,
    },
}

impl InternalAddressConfig {
    /// Reads the `internal_address_config` field of an `HttpConnectionManager` (absent: Unset).
    pub fn parse(hcm: &Node<'_>) -> config::Result<InternalAddressConfig> {
        let Some(node) = hcm.get("internal_address_config") else {
            return Ok(InternalAddressConfig::Unset);
        };
        node.check_fields(&["unix_sockets", "cidr_ranges"], &[])?;
        let unix_sockets = node.opt("unix_sockets", Node::as_bool)?.unwrap_or(false);
        let cidr_ranges = node.list("cidr_ranges", CidrRange::parse)?;
        Ok(if cidr_ranges.is_empty() {
            InternalAddressConfig::LegacyDefault { unix_sockets }
        } else {
            InternalAddressConfig::Ranges {
                cidr_ranges,
                unix_sockets,
            }
        })
    }

    /// Whether a request whose final remote address is `ip` may be internal.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        match self {
            InternalAddressConfig::Unset => false,
            InternalAddressConfig::LegacyDefault { .. } => is_legacy_internal(ip),
            InternalAddressConfig::Ranges { cidr_ranges, .. } => {
                cidr_ranges.iter().any(|range| range.contains(ip))
            }
        }
    }
}

/// Envoy's `Network::Utility::isInternalAddress`: RFC 1918, the single loopback address of
/// each family, and the locally assigned half (fd00::/8) of RFC 4193's unique-local range.
fn is_legacy_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || u32::from(v4) == 0x7f00_0001,
        IpAddr::V6(v6) => v6.is_loopback() || v6.octets()[0] == 0xfd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> config::Result<InternalAddressConfig> {
        let doc = parse_yaml(yaml).unwrap();
        InternalAddressConfig::parse(&Node::root(&doc))
    }

    fn internal(config: &InternalAddressConfig, ip: &str) -> bool {
        config.is_internal(ip.parse().unwrap())
    }

    #[test]
    fn absent_means_nothing_is_internal() {
        let c = parse("stat_prefix: x").unwrap();
        assert_eq!(c, InternalAddressConfig::Unset);
        for ip in ["127.0.0.1", "10.1.1.1", "192.168.1.1", "::1", "fd00::1"] {
            assert!(!internal(&c, ip), "{ip}");
        }
    }

    #[test]
    fn present_without_ranges_is_envoys_legacy_set() {
        for yaml in [
            "internal_address_config: {}",
            "internal_address_config: {unix_sockets: true}",
        ] {
            let c = parse(yaml).unwrap();
            for ip in [
                "10.1.1.1",
                "172.16.0.1",
                "192.168.1.1",
                "127.0.0.1",
                "::1",
                "fd00::1",
            ] {
                assert!(internal(&c, ip), "{yaml}: {ip}");
            }
            for ip in [
                "172.32.0.1",
                "100.64.0.1",
                "127.9.9.9",
                "169.254.1.1",
                "8.8.8.8",
                "fc00::1",
                "::ffff:10.1.1.1",
            ] {
                assert!(!internal(&c, ip), "{yaml}: {ip}");
            }
        }
    }

    #[test]
    fn ranges_are_exactly_the_listed_ones() {
        let c = parse(
            "internal_address_config:
  cidr_ranges:
  - {address_prefix: 127.0.0.1, prefix_len: 32}
  - {address_prefix: 10.9.9.9, prefix_len: 8}
  - {address_prefix: 'fd00::', prefix_len: 8}",
        )
        .unwrap();
        assert!(internal(&c, "127.0.0.1"));
        assert!(internal(&c, "10.1.1.1"));
        assert!(internal(&c, "fd12::1"));
        assert!(!internal(&c, "127.0.0.2"));
        assert!(!internal(&c, "192.168.1.1"));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse("internal_address_config: {cidr: []}").unwrap_err();
        assert!(
            e.to_string().contains("internal_address_config.cidr"),
            "{e}"
        );
        let e =
            parse("internal_address_config: {cidr_ranges: [{address_prefix: nope}]}").unwrap_err();
        assert!(
            e.to_string()
                .contains("internal_address_config.cidr_ranges[0].address_prefix"),
            "{e}"
        );
    }
}
