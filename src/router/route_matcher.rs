//! `RouteMatcher`: picks the virtual host for a request's Host (Envoy's `RouteMatcher`).
//!
//! Precedence, as Envoy 1.40 does it (all case-insensitive; the port is part of the host):
//! 1. an exact domain (`example.com`, `withport.com:8080`);
//! 2. the longest suffix wildcard (`*-bar.example.com` before `*.example.com`); the `*` must
//!    stand for at least one character, so `.example.com` does not match `*.example.com`;
//! 3. the longest prefix wildcard (`foo.*`), same rule;
//! 4. the default `*`.
//!
//! A domain given twice (in any virtual hosts, case-insensitively) and a second `*` are config
//! errors with Envoy's wording. With only a `*` virtual host every request goes there, even one
//! without a Host; otherwise a request without a Host has no route.
//!
//! The port can be left out of matching: `ignore_port_in_host_matching` in the route config,
//! or the connection manager's `strip_any_host_port` / `strip_matching_host_port`, given as a
//! [`PortStripping`] (Envoy strips the Host header itself in those cases: the connection manager
//! should call [`strip_port`] on the header it forwards).
//!
//! Lookup allocates nothing for hosts up to 256 bytes (lower-cased into a stack buffer).

use std::collections::HashMap;

use super::virtual_host::VirtualHost;
use crate::config::{ErrorKind, Node, Result};

/// Whether and which port to remove from the Host before matching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PortStripping {
    /// Match the Host as sent.
    #[default]
    Keep,
    /// `strip_any_host_port` / `ignore_port_in_host_matching`: drop any port.
    Any,
    /// `strip_matching_host_port`: drop the port if it is the listener's.
    Matching(u16),
}

/// The host without its port, if `stripping` says to remove it (Envoy's `getPortStart` +
/// `stripPortFromHost`): `[::1]:80` -> `[::1]`; a port must be all digits to be stripped
/// when matching the listener's.
pub fn strip_port(host: &str, stripping: PortStripping) -> &str {
    let Some(colon) = port_start(host) else {
        return host;
    };
    match stripping {
        PortStripping::Keep => host,
        PortStripping::Any => &host[..colon],
        PortStripping::Matching(listener) => match host[colon + 1..].parse::<u32>() {
            Ok(port) if port == u32::from(listener) => &host[..colon],
            _ => host,
        },
    }
}

/// Where the `:port` of a Host starts, if it has one (an IPv6 literal's colons are not ports).
fn port_start(host: &str) -> Option<usize> {
    let colon = host.rfind(':')?;
    match host.rfind(']') {
        Some(bracket) if bracket > colon => None,
        _ => Some(colon),
    }
}

/// Wildcard domains of one length (the part without `*`), for one kind of wildcard.
#[derive(Clone, Debug)]
struct Wildcards {
    len: usize,
    domains: HashMap<String, usize>,
}

/// The virtual host index of a route configuration.
#[derive(Clone, Debug, Default)]
pub struct RouteMatcher {
    exact: HashMap<String, usize>,
    /// `*.x.com` stored as `.x.com`, longest first.
    suffixes: Vec<Wildcards>,
    /// `x.*` stored as `x.`, longest first.
    prefixes: Vec<Wildcards>,
    default: Option<usize>,
}

impl RouteMatcher {
    /// Indexes the domains of `virtual_hosts` (parsed from `list`, for error paths).
    /// `config_name` is the route configuration's name, for Envoy's error wording.
    pub fn new(virtual_hosts: &[VirtualHost], list: &Node, config_name: &str) -> Result<Self> {
        let mut matcher = RouteMatcher::default();
        let vhost_nodes = list.as_list()?;
        for (index, vhost) in virtual_hosts.iter().enumerate() {
            for (d, domain) in vhost.domains.iter().enumerate() {
                let path = || match vhost_nodes.get(index) {
                    Some(n) => format!("{}.domains[{d}]", n.path()),
                    None => list.path().to_string(),
                };
                let domain = domain.to_ascii_lowercase();
                let duplicate = if domain == "*" {
                    if matcher.default.is_some() {
                        return Err(crate::config::ConfigError::new(
                            ErrorKind::Invalid,
                            path(),
                            format!(
                                "Only a single wildcard domain is permitted in route {config_name}"
                            ),
                        ));
                    }
                    matcher.default = Some(index);
                    false
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    insert_wildcard(&mut matcher.suffixes, suffix, index)
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    insert_wildcard(&mut matcher.prefixes, prefix, index)
                } else {
                    matcher.exact.insert(domain.clone(), index).is_some()
                };
                if duplicate {
                    return Err(crate::config::ConfigError::new(
                        ErrorKind::Invalid,
                        path(),
                        format!(
                            "Only unique values for domains are permitted. Duplicate entry of domain {domain} in route {config_name}"
                        ),
                    ));
                }
            }
        }
        matcher.suffixes.sort_by_key(|w| std::cmp::Reverse(w.len));
        matcher.prefixes.sort_by_key(|w| std::cmp::Reverse(w.len));
        Ok(matcher)
    }

    /// The index of the virtual host for `host` (gives the `:authority` value, `None` if the
    /// request has none; called only when some domain must be compared).
    #[inline]
    pub fn find<'h>(
        &self,
        host: impl FnOnce() -> Option<&'h str>,
        stripping: PortStripping,
    ) -> Option<usize> {
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            // Only a `*` virtual host (or none): the Host is not even read.
            return self.default;
        }
        self.find_domain(host()?, stripping)
    }

    /// [`find`](Self::find) when some domain must be compared with the Host.
    #[inline(never)]
    fn find_domain(&self, host: &str, stripping: PortStripping) -> Option<usize> {
        let host = strip_port(host, stripping);
        let mut buf = [0u8; 256];
        let owned;
        let lower: &str = if host.len() <= buf.len() {
            let dst = &mut buf[..host.len()];
            dst.copy_from_slice(host.as_bytes());
            dst.make_ascii_lowercase();
            // Only ASCII bytes changed, so this is still UTF-8.
            std::str::from_utf8(dst).ok()?
        } else {
            owned = host.to_ascii_lowercase();
            &owned
        };
        if let Some(&i) = self.exact.get(lower) {
            return Some(i);
        }
        let suffix = |len: usize| lower.get(lower.len() - len..);
        if let Some(i) = find_wildcard(&self.suffixes, lower, suffix) {
            return Some(i);
        }
        let prefix = |len: usize| lower.get(..len);
        if let Some(i) = find_wildcard(&self.prefixes, lower, prefix) {
            return Some(i);
        }
        self.default
    }
}

fn insert_wildcard(list: &mut Vec<Wildcards>, key: &str, index: usize) -> bool {
    let len = key.len();
    let group = match list.iter().position(|w| w.len == len) {
        Some(i) => &mut list[i],
        None => {
            list.push(Wildcards {
                len,
                domains: HashMap::new(),
            });
            let last = list.len() - 1;
            &mut list[last]
        }
    };
    group.domains.insert(key.to_string(), index).is_some()
}

fn find_wildcard<'h>(
    groups: &[Wildcards],
    host: &'h str,
    part: impl Fn(usize) -> Option<&'h str>,
) -> Option<usize> {
    groups
        .iter()
        // `>=`: the wildcard must stand for at least one character.
        .filter(|g| g.len < host.len())
        .find_map(|g| part(g.len).and_then(|p| g.domains.get(p).copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_rules() {
        assert_eq!(strip_port("a.com:80", PortStripping::Any), "a.com");
        assert_eq!(strip_port("a.com", PortStripping::Any), "a.com");
        assert_eq!(strip_port("[::1]:80", PortStripping::Any), "[::1]");
        assert_eq!(strip_port("[::1]", PortStripping::Any), "[::1]");
        assert_eq!(strip_port("a.com:80", PortStripping::Matching(80)), "a.com");
        assert_eq!(
            strip_port("a.com:81", PortStripping::Matching(80)),
            "a.com:81"
        );
        assert_eq!(
            strip_port("a.com:x", PortStripping::Matching(80)),
            "a.com:x"
        );
        assert_eq!(strip_port("a.com:80", PortStripping::Keep), "a.com:80");
    }
}
