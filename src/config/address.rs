//! Addresses: `envoy.config.core.v3.Address` (`socket_address` only) and `CidrRange`.
//!
//! Listeners and the admin need an IP literal ([`parse_listen_address`]); cluster endpoints may
//! name a host for DNS clusters ([`parse_endpoint_address`]). Called by the listener, cluster and
//! admin parsers; filter_chain_match uses [`CidrRange`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::error::{ConfigError, Result};
use super::node::Node;

/// Fields of `Address` nuncio reads, and those Envoy has that it does not.
const ADDRESS_FIELDS: [&str; 1] = ["socket_address"];
const ADDRESS_UNSUPPORTED: [&str; 2] = ["pipe", "envoy_internal_address"];

/// Fields of `SocketAddress`.
const SOCKET_ADDRESS_FIELDS: [&str; 3] = ["address", "port_value", "protocol"];
const SOCKET_ADDRESS_UNSUPPORTED: [&str; 4] = [
    "named_port",
    "resolver_name",
    "ipv4_compat",
    "network_namespace_filepath",
];

/// The `socket_address` of an `Address`, as written: `address` (an IP literal or, for DNS
/// cluster endpoints, a host name) and `port_value`.
struct RawSocketAddress<'a> {
    host: &'a str,
    host_node: Node<'a>,
    port: u16,
    socket: Node<'a>,
}

fn socket_address<'a>(address: &Node<'a>) -> Result<RawSocketAddress<'a>> {
    address.check_fields(&ADDRESS_FIELDS, &ADDRESS_UNSUPPORTED)?;
    let socket = address.required("socket_address")?;
    socket.check_fields(&SOCKET_ADDRESS_FIELDS, &SOCKET_ADDRESS_UNSUPPORTED)?;
    // Envoy's default protocol is TCP; UDP listeners and endpoints are not implemented.
    socket.opt("protocol", |p| p.enum_str(&["TCP"], &["UDP"]))?;
    let host_node = socket.required("address")?;
    let host = host_node.non_empty_str()?;
    // Envoy requires the port (`port_specifier` is a required oneof); 0 lets the OS pick one.
    let port = socket.required("port_value")?.as_u32_in(0, 65535)? as u16;
    Ok(RawSocketAddress {
        host,
        host_node,
        port,
        socket,
    })
}

fn parse_ip(node: &Node<'_>, text: &str) -> Result<IpAddr> {
    text.parse::<IpAddr>()
        .map_err(|_| node.error(format!("malformed IP address: {text}")))
}

/// An `Address` that must be an IP literal and a port: listeners, the admin.
pub fn parse_listen_address(address: &Node<'_>) -> Result<SocketAddr> {
    let raw = socket_address(address)?;
    let ip = parse_ip(&raw.host_node, raw.host)?;
    Ok(SocketAddr::new(ip, raw.port))
}

/// Where an upstream endpoint is: an IP address, or a host name a DNS cluster resolves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    /// An IP literal and port: used as is (also in DNS clusters, where it resolves to itself).
    Ip(SocketAddr),
    /// A host name to resolve (STRICT_DNS and LOGICAL_DNS clusters only), and the port.
    Dns {
        /// The host name as written, e.g. `backend.internal`.
        hostname: String,
        /// The port the resolved addresses are used with.
        port: u16,
    },
}

impl EndpointAddress {
    /// The port, whichever the kind.
    pub fn port(&self) -> u16 {
        match self {
            EndpointAddress::Ip(addr) => addr.port(),
            EndpointAddress::Dns { port, .. } => *port,
        }
    }
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddress::Ip(addr) => write!(f, "{addr}"),
            EndpointAddress::Dns { hostname, port } => write!(f, "{hostname}:{port}"),
        }
    }
}

/// A host name as DNS accepts it: labels of letters, digits, `-` and `_`, separated by dots.
fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An endpoint `Address`. `allow_hostname` is true for DNS clusters; a STATIC cluster needs IP
/// literals (`malformed IP address: backend`). The port must be non-zero.
pub fn parse_endpoint_address(address: &Node<'_>, allow_hostname: bool) -> Result<EndpointAddress> {
    let raw = socket_address(address)?;
    if raw.port == 0 {
        return Err(ConfigError::invalid(
            raw.socket.field_path("port_value"),
            "an upstream endpoint needs a port_value between 1 and 65535",
        ));
    }
    match raw.host.parse::<IpAddr>() {
        Ok(ip) => Ok(EndpointAddress::Ip(SocketAddr::new(ip, raw.port))),
        Err(_) if !allow_hostname => Err(raw
            .host_node
            .error(format!("malformed IP address: {} (only STRICT_DNS and LOGICAL_DNS clusters resolve host names)", raw.host))),
        Err(_) if !valid_hostname(raw.host) => Err(raw
            .host_node
            .error(format!("invalid host name '{}'", raw.host))),
        Err(_) => Ok(EndpointAddress::Dns {
            hostname: raw.host.to_string(),
            port: raw.port,
        }),
    }
}

/// `envoy.config.core.v3.CidrRange`: an address prefix, e.g. `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CidrRange {
    /// The prefix, with the bits past `prefix_len` cleared (as Envoy does).
    pub address: IpAddr,
    /// Length of the prefix in bits: at most 32 for IPv4, 128 for IPv6. Envoy's default: 0.
    pub prefix_len: u8,
}

impl CidrRange {
    /// Reads `{ address_prefix, prefix_len }`.
    pub fn parse(node: &Node<'_>) -> Result<CidrRange> {
        node.check_fields(&["address_prefix", "prefix_len"], &[])?;
        let prefix_node = node.required("address_prefix")?;
        let ip = parse_ip(&prefix_node, prefix_node.as_str()?)?;
        // Envoy accepts a prefix_len longer than the address and treats it as the full length.
        let prefix_len = node.opt("prefix_len", Node::u32_value)?.unwrap_or(0);
        Ok(CidrRange::new(ip, prefix_len.min(128) as u8))
    }

    /// The range `ip/prefix_len` (`prefix_len` clamped to the family's width), masked.
    pub fn new(ip: IpAddr, prefix_len: u8) -> CidrRange {
        let (address, prefix_len) = match ip {
            IpAddr::V4(v4) => {
                let len = prefix_len.min(32);
                let mask = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
                (IpAddr::V4((u32::from(v4) & mask).into()), len)
            }
            IpAddr::V6(v6) => {
                let len = prefix_len.min(128);
                let mask = u128::MAX.checked_shl(128 - len as u32).unwrap_or(0);
                (IpAddr::V6((u128::from(v6) & mask).into()), len)
            }
        };
        CidrRange {
            address,
            prefix_len,
        }
    }

    /// Whether `ip` is inside the range (an address of the other family never is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        CidrRange::new(ip, self.prefix_len) == *self
    }
}

impl fmt::Display for CidrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn with_node<T>(yaml: &str, f: impl FnOnce(&Node<'_>) -> T) -> T {
        let v = parse_yaml(yaml).unwrap();
        let root = Node::root(&v);
        f(&root.required("a").unwrap())
    }

    fn err(yaml: &str, allow_hostname: bool) -> String {
        with_node(yaml, |n| {
            parse_endpoint_address(n, allow_hostname)
                .unwrap_err()
                .to_string()
        })
    }

    #[test]
    fn listen_addresses() {
        let a = with_node(
            "a: {socket_address: {address: '::1', port_value: 80}}",
            |n| parse_listen_address(n).unwrap(),
        );
        assert_eq!(a, "[::1]:80".parse().unwrap());
        let a = with_node(
            "a: {socket_address: {address: 127.0.0.1, portValue: 0, protocol: TCP}}",
            |n| parse_listen_address(n).unwrap(),
        );
        assert_eq!(a, "127.0.0.1:0".parse().unwrap());
        let e = with_node(
            "a: {socket_address: {address: localhost, port_value: 80}}",
            |n| parse_listen_address(n).unwrap_err().to_string(),
        );
        assert_eq!(
            e,
            "a.socket_address.address: malformed IP address: localhost"
        );
        let e = with_node(
            "a: {socket_address: {address: 1.2.3.4, port_value: 65536}}",
            |n| parse_listen_address(n).unwrap_err().to_string(),
        );
        assert_eq!(
            e,
            "a.socket_address.port_value: 65536 is out of range (expected an integer in 0..=65535)"
        );
        let e = with_node("a: {pipe: {path: /tmp/x}}", |n| {
            parse_listen_address(n).unwrap_err().to_string()
        });
        assert_eq!(e, "a.pipe: not supported by nuncio");
        let e = with_node(
            "a: {socket_address: {address: 1.2.3.4, protocol: UDP}}",
            |n| parse_listen_address(n).unwrap_err().to_string(),
        );
        assert_eq!(
            e,
            "a.socket_address.protocol: value 'UDP' is not supported by nuncio (supported: TCP)"
        );
        let e = with_node(
            "a: {socket_address: {address: 1.2.3.4, named_port: http}}",
            |n| parse_listen_address(n).unwrap_err().to_string(),
        );
        assert_eq!(e, "a.socket_address.named_port: not supported by nuncio");
    }

    #[test]
    fn endpoint_addresses() {
        let yaml = "a: {socket_address: {address: backend.local, port_value: 8080}}";
        assert_eq!(
            with_node(yaml, |n| parse_endpoint_address(n, true).unwrap()),
            EndpointAddress::Dns {
                hostname: "backend.local".into(),
                port: 8080
            }
        );
        assert_eq!(
            err(yaml, false),
            "a.socket_address.address: malformed IP address: backend.local (only STRICT_DNS and LOGICAL_DNS clusters resolve host names)"
        );
        assert_eq!(
            err(
                "a: {socket_address: {address: 'bad host', port_value: 1}}",
                true
            ),
            "a.socket_address.address: invalid host name 'bad host'"
        );
        assert_eq!(
            err("a: {socket_address: {address: 10.0.0.1}}", true),
            "a.socket_address.port_value: required field is missing"
        );
        assert_eq!(
            err("a: {socket_address: {address: 10.0.0.1, port_value: 0}}", true),
            "a.socket_address.port_value: an upstream endpoint needs a port_value between 1 and 65535"
        );
        assert_eq!(
            err("a: {socket_address: {address: '', port_value: 1}}", true),
            "a.socket_address.address: must not be empty"
        );
        assert_eq!(
            err("a: {}", true),
            "a.socket_address: required field is missing"
        );
    }

    #[test]
    fn cidr_ranges() {
        let r = with_node("a: {address_prefix: 10.1.2.3, prefix_len: 8}", |n| {
            CidrRange::parse(n).unwrap()
        });
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert!(r.contains("10.200.0.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
        let all = with_node("a: {address_prefix: 0.0.0.0}", |n| {
            CidrRange::parse(n).unwrap()
        });
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6 = with_node(
            "a: {address_prefix: '2001:db8::', prefix_len: {value: 32}}",
            |n| CidrRange::parse(n).unwrap(),
        );
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        let host = with_node("a: {address_prefix: 1.2.3.4, prefix_len: 32}", |n| {
            CidrRange::parse(n).unwrap()
        });
        assert!(host.contains("1.2.3.4".parse().unwrap()));
        assert!(!host.contains("1.2.3.5".parse().unwrap()));
        let long = with_node("a: {address_prefix: 1.2.3.4, prefix_len: 40}", |n| {
            CidrRange::parse(n).unwrap()
        });
        assert_eq!(long.to_string(), "1.2.3.4/32");
        let e = with_node("a: {address_prefix: 1.2.3}", |n| {
            CidrRange::parse(n).unwrap_err().to_string()
        });
        assert_eq!(e, "a.address_prefix: malformed IP address: 1.2.3");
    }
}
