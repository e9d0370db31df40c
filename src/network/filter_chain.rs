//! Filter chain selection: Envoy's `FilterChainManagerImpl`, sans-IO.
//!
//! A listener may carry several `filter_chains`, each with a `filter_chain_match`; when a
//! connection has been accepted and its listener filters are done (so the PROXY protocol has
//! already rewritten its addresses), the connection handler (`ActiveTcpListener`, owned by l4)
//! asks [`FilterChainManager::find_filter_chain`] which chain builds its network filters. The
//! payload `T` is whatever the listener stores per chain (its filter factories); this module
//! never looks inside it.
//!
//! Like Envoy, the match criteria are compiled at config time into nested lookup tables, one level
//! per criterion, in Envoy's precedence order:
//!
//! 1. `destination_port` (exact, else the catch-all 0)
//! 2. `prefix_ranges` on the destination IP (longest prefix, else the catch-all)
//! 3. `server_names` (exact, then `*.suffix` wildcards from the longest, else the catch-all)
//! 4. `transport_protocol` (exact, else the catch-all; the connection's is `raw_buffer` unless a
//!    listener filter detected another, as Envoy defaults it)
//! 5. `application_protocols` (the first of the connection's ALPN values that a chain names,
//!    else the catch-all)
//! 6. `source_type` (`SAME_IP_OR_LOOPBACK` or `EXTERNAL` when any chain names it, else `ANY`)
//! 7. `source_prefix_ranges` on the source IP (longest prefix, else the catch-all)
//! 8. `source_ports` (exact, else the catch-all)
//!
//! At every level only the most specific entry that matches is followed, and there is no
//! backtracking: a connection whose destination port names a chain, but whose other criteria do
//! not match that chain, gets no chain at all even if a port-less chain would have matched
//! (Envoy documents exactly this). When nothing matches, the `default_filter_chain` is used if
//! configured; otherwise the caller closes the connection and counts `no_filter_chain_match`.
//!
//! Selection does not allocate: every table is keyed so that a lookup borrows from the
//! connection's data.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{self, ConfigError, Listener};

pub use crate::config::{CidrRange, SourceType};

/// `0.0.0.0/0` and `::/0`: the catch-all Envoy stores for an empty list of ranges.
const ANY_V4: CidrRange = CidrRange {
    address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    prefix_len: 0,
};
const ANY_V6: CidrRange = CidrRange {
    address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    prefix_len: 0,
};

fn source_type_index(source_type: SourceType) -> usize {
    match source_type {
        SourceType::Any => 0,
        SourceType::SameIpOrLoopback => 1,
        SourceType::External => 2,
    }
}

/// One chain's `filter_chain_match` (every field optional; empty means "any").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterChainMatch {
    /// `destination_port`; `None` (or 0) matches any port.
    pub destination_port: Option<u16>,
    /// `prefix_ranges`: destination IP ranges.
    pub prefix_ranges: Vec<CidrRange>,
    /// `server_names`: exact names or `*.suffix` wildcards (matched against the TLS SNI).
    pub server_names: Vec<String>,
    /// `transport_protocol`: e.g. `raw_buffer` or `tls`; empty matches any.
    pub transport_protocol: String,
    /// `application_protocols`: ALPN values.
    pub application_protocols: Vec<String>,
    pub source_type: SourceType,
    /// `source_prefix_ranges`: source IP ranges.
    pub source_prefix_ranges: Vec<CidrRange>,
    /// `source_ports`.
    pub source_ports: Vec<u16>,
}

/// One entry of a listener's `filter_chains`.
#[derive(Clone, Debug)]
pub struct FilterChain<T> {
    /// The chain's `name` (may be empty), for error messages.
    pub name: String,
    pub filter_chain_match: FilterChainMatch,
    /// What the listener builds the connection's filters from.
    pub payload: T,
}

impl<T> FilterChain<T> {
    pub fn new(filter_chain_match: FilterChainMatch, payload: T) -> FilterChain<T> {
        FilterChain {
            name: String::new(),
            filter_chain_match,
            payload,
        }
    }
}

impl From<&config::FilterChainMatch> for FilterChainMatch {
    /// The config's match (which has no TLS criteria yet: they come with TLS).
    fn from(m: &config::FilterChainMatch) -> FilterChainMatch {
        FilterChainMatch {
            destination_port: m.destination_port,
            prefix_ranges: m.prefix_ranges.clone(),
            source_type: m.source_type,
            source_prefix_ranges: m.source_prefix_ranges.clone(),
            source_ports: m.source_ports.clone(),
            ..FilterChainMatch::default()
        }
    }
}

/// The match as Envoy prints it in errors: proto JSON of the fields that are set.
impl fmt::Display for FilterChainMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn strings(f: &mut fmt::Formatter<'_>, v: &[String]) -> fmt::Result {
            let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            write!(f, "[{}]", quoted.join(","))
        }
        fn ranges(f: &mut fmt::Formatter<'_>, v: &[CidrRange]) -> fmt::Result {
            let items: Vec<String> = v
                .iter()
                .map(|r| {
                    format!(
                        "{{\"address_prefix\":\"{}\",\"prefix_len\":{}}}",
                        r.address, r.prefix_len
                    )
                })
                .collect();
            write!(f, "[{}]", items.join(","))
        }
        let mut sep = "";
        let mut field = |f: &mut fmt::Formatter<'_>, name: &str| -> fmt::Result {
            let r = write!(f, "{sep}\"{name}\":");
            sep = ",";
            r
        };
        f.write_str("{")?;
        if let Some(port) = self.destination_port {
            field(f, "destination_port")?;
            write!(f, "{port}")?;
        }
        if !self.prefix_ranges.is_empty() {
            field(f, "prefix_ranges")?;
            ranges(f, &self.prefix_ranges)?;
        }
        if !self.server_names.is_empty() {
            field(f, "server_names")?;
            strings(f, &self.server_names)?;
        }
        if !self.transport_protocol.is_empty() {
            field(f, "transport_protocol")?;
            write!(f, "{:?}", self.transport_protocol)?;
        }
        if !self.application_protocols.is_empty() {
            field(f, "application_protocols")?;
            strings(f, &self.application_protocols)?;
        }
        match self.source_type {
            SourceType::Any => {}
            SourceType::SameIpOrLoopback => {
                field(f, "source_type")?;
                f.write_str("\"SAME_IP_OR_LOOPBACK\"")?;
            }
            SourceType::External => {
                field(f, "source_type")?;
                f.write_str("\"EXTERNAL\"")?;
            }
        }
        if !self.source_prefix_ranges.is_empty() {
            field(f, "source_prefix_ranges")?;
            ranges(f, &self.source_prefix_ranges)?;
        }
        if !self.source_ports.is_empty() {
            field(f, "source_ports")?;
            let ports: Vec<String> = self.source_ports.iter().map(u16::to_string).collect();
            write!(f, "[{}]", ports.join(","))?;
        }
        f.write_str("}")
    }
}

/// What the connection handler knows about a connection when it picks a chain.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionMatchInfo<'a> {
    /// The destination (local) address, after listener filters (e.g. PROXY protocol) ran.
    pub local: SocketAddr,
    /// The source (remote) address, after listener filters ran.
    pub remote: SocketAddr,
    /// The TLS SNI, if a listener filter found one.
    pub server_name: Option<&'a str>,
    /// The detected transport protocol; [`RAW_BUFFER`] when no listener filter set one.
    pub transport_protocol: &'a str,
    /// The ALPN values a listener filter found, in the client's order.
    pub application_protocols: &'a [&'a str],
}

/// The transport protocol Envoy assigns when no listener filter detected one.
pub const RAW_BUFFER: &str = "raw_buffer";

impl<'a> ConnectionMatchInfo<'a> {
    /// A plain TCP connection: no SNI, `raw_buffer`, no ALPN.
    pub fn tcp(local: SocketAddr, remote: SocketAddr) -> ConnectionMatchInfo<'static> {
        ConnectionMatchInfo {
            local,
            remote,
            server_name: None,
            transport_protocol: RAW_BUFFER,
            application_protocols: &[],
        }
    }
}

/// A config Envoy refuses. `chain` is the index into `filter_chains` of the chain at fault, so
/// the caller can name the path `filter_chains[N].filter_chain_match`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterChainError {
    /// Two chains with identical `filter_chain_match`: `chain` repeats the match of `first`.
    SameMatchingRules {
        chain: usize,
        name: String,
        first_name: String,
        matcher: String,
    },
    /// Two chains whose matches differ but overlap in a repeated field, so both would claim
    /// some connection.
    OverlappingMatchingRules { chain: usize },
    /// A server name like `www.*.com` or `*w.example.com`.
    PartialWildcard { chain: usize, server_name: String },
}

impl FilterChainError {
    /// The index in `filter_chains` of the chain at fault.
    pub fn chain(&self) -> usize {
        match self {
            FilterChainError::SameMatchingRules { chain, .. }
            | FilterChainError::OverlappingMatchingRules { chain }
            | FilterChainError::PartialWildcard { chain, .. } => *chain,
        }
    }
}

impl fmt::Display for FilterChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterChainError::SameMatchingRules {
                name,
                first_name,
                matcher,
                ..
            } => write!(
                f,
                "filter chain '{name}' has the same matching rules defined as '{first_name}'. \
                 duplicate matcher is: {matcher}"
            ),
            FilterChainError::OverlappingMatchingRules { .. } => {
                f.write_str("multiple filter chains with overlapping matching rules are defined")
            }
            FilterChainError::PartialWildcard { server_name, .. } => write!(
                f,
                "partial wildcards are not supported in \"server_names\" ('{server_name}')"
            ),
        }
    }
}

impl std::error::Error for FilterChainError {}

/// Index of a chain in [`FilterChainManager`]'s list.
type ChainIndex = usize;

/// A longest-prefix table: entries sorted by prefix length, longest first, so the first entry
/// containing an address is its longest match. Listener configs have a handful of ranges, for
/// which a scan beats a trie.
struct PrefixTable<C> {
    entries: Vec<(CidrRange, C)>,
}

impl<C: Default> PrefixTable<C> {
    fn new() -> Self {
        PrefixTable {
            entries: Vec::new(),
        }
    }

    /// The child for `range`, created on first use. Empty `ranges` in a match mean the
    /// catch-all, which Envoy stores as `0.0.0.0/0` and `::/0`.
    fn entry(&mut self, range: CidrRange) -> &mut C {
        let i = match self.entries.iter().position(|(r, _)| *r == range) {
            Some(i) => i,
            None => {
                self.entries.push((range, C::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    fn finish(&mut self) {
        self.entries
            .sort_by_key(|(range, _)| std::cmp::Reverse(range.prefix_len));
    }

    fn lookup(&self, ip: IpAddr) -> Option<&C> {
        self.entries
            .iter()
            .find(|(range, _)| range.contains(ip))
            .map(|(_, child)| child)
    }
}

impl<C: Default> Default for PrefixTable<C> {
    fn default() -> Self {
        Self::new()
    }
}

// The levels, innermost first. Each maps the criterion's value (or the catch-all: port 0, the
// empty string, the /0 ranges) to the next level.
type SourcePorts = HashMap<u16, ChainIndex>;
type SourceIps = PrefixTable<SourcePorts>;
type SourceTypes = [Option<SourceIps>; 3];
type ApplicationProtocols = HashMap<String, SourceTypes>;
type TransportProtocols = HashMap<String, ApplicationProtocols>;
type ServerNames = HashMap<String, TransportProtocols>;
type DestinationIps = PrefixTable<ServerNames>;
type DestinationPorts = HashMap<u16, DestinationIps>;

/// The compiled filter chains of one listener.
pub struct FilterChainManager<T> {
    chains: Vec<T>,
    default_chain: Option<T>,
    destination_ports: DestinationPorts,
}

impl<T> fmt::Debug for FilterChainManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterChainManager")
            .field("filter_chains", &self.chains.len())
            .field("default_filter_chain", &self.default_chain.is_some())
            .finish()
    }
}

impl<T> FilterChainManager<T> {
    /// Compiles `filter_chains` and the `default_filter_chain`, rejecting what Envoy rejects.
    pub fn new(
        filter_chains: Vec<FilterChain<T>>,
        default_filter_chain: Option<T>,
    ) -> Result<FilterChainManager<T>, FilterChainError> {
        let mut destination_ports = DestinationPorts::new();
        let mut chains = Vec::with_capacity(filter_chains.len());
        let mut seen: Vec<(FilterChainMatch, String)> = Vec::with_capacity(filter_chains.len());
        for (index, chain) in filter_chains.into_iter().enumerate() {
            let m = chain.filter_chain_match;
            if let Some((_, first_name)) = seen.iter().find(|(other, _)| *other == m) {
                return Err(FilterChainError::SameMatchingRules {
                    chain: index,
                    name: chain.name,
                    first_name: first_name.clone(),
                    matcher: m.to_string(),
                });
            }
            for name in &m.server_names {
                if name.contains('*') && !is_wildcard_server_name(name) {
                    return Err(FilterChainError::PartialWildcard {
                        chain: index,
                        server_name: name.clone(),
                    });
                }
            }
            add_chain(&mut destination_ports, &m, index)?;
            seen.push((m, chain.name));
            chains.push(chain.payload);
        }
        for ips in destination_ports.values_mut() {
            ips.finish();
            for names in ips.entries.iter_mut().map(|(_, c)| c) {
                for protos in names.values_mut().flat_map(|t| t.values_mut()) {
                    for types in protos.values_mut() {
                        for source_ips in types.iter_mut().flatten() {
                            source_ips.finish();
                        }
                    }
                }
            }
        }
        Ok(FilterChainManager {
            chains,
            default_chain: default_filter_chain,
            destination_ports,
        })
    }

    /// Compiles a listener's chains, building each chain's payload with `build` (e.g. its
    /// network filter factories). Errors name the offending field's path, e.g.
    /// `static_resources.listeners[0].filter_chains[1].filter_chain_match: multiple filter
    /// chains with overlapping matching rules are defined`.
    pub fn from_listener(
        listener: &Listener,
        mut build: impl FnMut(&config::FilterChain) -> config::Result<T>,
    ) -> config::Result<FilterChainManager<T>> {
        let mut chains = Vec::with_capacity(listener.filter_chains.len());
        for chain in &listener.filter_chains {
            chains.push(FilterChain {
                name: chain.name.clone(),
                filter_chain_match: FilterChainMatch::from(&chain.filter_chain_match),
                payload: build(chain)?,
            });
        }
        let default_chain = listener
            .default_filter_chain
            .as_ref()
            .map(&mut build)
            .transpose()?;
        FilterChainManager::new(chains, default_chain).map_err(|e| {
            let path = match listener.filter_chains.get(e.chain()) {
                Some(chain) => format!("{}.filter_chain_match", chain.path),
                None => listener.path.clone(),
            };
            ConfigError::invalid(path, e.to_string())
        })
    }

    /// The chain for a connection (Envoy's `findFilterChain`): the matching chain, else the
    /// default chain, else `None` (close the connection, count `no_filter_chain_match`).
    pub fn find_filter_chain(&self, info: &ConnectionMatchInfo<'_>) -> Option<&T> {
        match self.find_matching_chain(info) {
            Some(index) => Some(&self.chains[index]),
            None => self.default_chain.as_ref(),
        }
    }

    /// The configured chains, in config order.
    pub fn filter_chains(&self) -> &[T] {
        &self.chains
    }

    pub fn default_filter_chain(&self) -> Option<&T> {
        self.default_chain.as_ref()
    }

    fn find_matching_chain(&self, info: &ConnectionMatchInfo<'_>) -> Option<ChainIndex> {
        // 1. Destination port: exact, else the catch-all; never both.
        let ips = self
            .destination_ports
            .get(&info.local.port())
            .or_else(|| self.destination_ports.get(&0))?;
        // Addresses of IPv4 clients on a dual-stack socket come as `::ffff:a.b.c.d`; Envoy
        // reports (and matches) them as the IPv4 addresses they are.
        let local_ip = info.local.ip().to_canonical();
        let remote_ip = info.remote.ip().to_canonical();
        // 2. Destination IP: the longest prefix only.
        let names = ips.lookup(local_ip)?;
        // 3. Server name: exact, then wildcards from the most specific, then the catch-all.
        let transports = find_server_name(names, info.server_name.unwrap_or(""))?;
        // 4. Transport protocol.
        let alpns = transports
            .get(info.transport_protocol)
            .or_else(|| transports.get(""))?;
        // 5. Application protocols: the first of the connection's that some chain names.
        let types = info
            .application_protocols
            .iter()
            .find_map(|p| alpns.get(*p))
            .or_else(|| alpns.get(""))?;
        // 6. Source type. Envoy computes "local" only when a chain asks for a source type.
        let source_ips = {
            let [any, local, external] = types;
            let specific = if local.is_some() || external.is_some() {
                if remote_ip.is_loopback() || remote_ip == local_ip {
                    local
                } else {
                    external
                }
            } else {
                &None
            };
            specific.as_ref().or(any.as_ref())?
        };
        // 7. Source IP: the longest prefix only.
        let ports = source_ips.lookup(remote_ip)?;
        // 8. Source port: exact, else the catch-all.
        ports
            .get(&info.remote.port())
            .or_else(|| ports.get(&0))
            .copied()
    }
}

/// `*.example.com` is a wildcard; `*` alone, `w*.example.com` or `www.*.com` are partial.
fn is_wildcard_server_name(name: &str) -> bool {
    name.starts_with("*.") && !name[1..].contains('*')
}

fn find_server_name<'m>(
    names: &'m ServerNames,
    server_name: &str,
) -> Option<&'m TransportProtocols> {
    if let Some(t) = names.get(server_name) {
        return Some(t);
    }
    // "www.example.com" tries ".example.com" then ".com" (wildcards are stored without the '*').
    let mut rest = server_name;
    while let Some(dot) = rest.get(1..).and_then(|r| r.find('.')) {
        rest = &rest[dot + 1..];
        if rest.len() <= 1 {
            break;
        }
        if let Some(t) = names.get(rest) {
            return Some(t);
        }
    }
    names.get("")
}

/// Inserts one chain into every cell of the nested tables its match covers (the cartesian
/// product of its repeated fields). A cell already taken means two chains claim the same
/// connections.
fn add_chain(
    destination_ports: &mut DestinationPorts,
    m: &FilterChainMatch,
    index: ChainIndex,
) -> Result<(), FilterChainError> {
    let dst_ranges = ranges_or_any(&m.prefix_ranges);
    let src_ranges = ranges_or_any(&m.source_prefix_ranges);
    let server_names: Vec<&str> = if m.server_names.is_empty() {
        vec![""]
    } else {
        // The wildcard `*.example.com` is looked up as `.example.com`.
        m.server_names
            .iter()
            .map(|n| n.strip_prefix('*').unwrap_or(n))
            .collect()
    };
    let alpns: Vec<&str> = if m.application_protocols.is_empty() {
        vec![""]
    } else {
        m.application_protocols.iter().map(String::as_str).collect()
    };
    let src_ports: Vec<u16> = if m.source_ports.is_empty() {
        vec![0]
    } else {
        m.source_ports.clone()
    };
    let ips = destination_ports
        .entry(m.destination_port.unwrap_or(0))
        .or_default();
    for dst in &dst_ranges {
        let names = ips.entry(*dst);
        for name in &server_names {
            let transports = names.entry((*name).to_string()).or_default();
            let protos = transports.entry(m.transport_protocol.clone()).or_default();
            for alpn in &alpns {
                let types = protos.entry((*alpn).to_string()).or_default();
                let source_ips =
                    types[source_type_index(m.source_type)].get_or_insert_with(PrefixTable::new);
                for src in &src_ranges {
                    let ports = source_ips.entry(*src);
                    for port in &src_ports {
                        if ports.insert(*port, index).is_some() {
                            return Err(FilterChainError::OverlappingMatchingRules {
                                chain: index,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn ranges_or_any(ranges: &[CidrRange]) -> Vec<CidrRange> {
    if ranges.is_empty() {
        vec![ANY_V4, ANY_V6]
    } else {
        ranges.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> CidrRange {
        let (a, l) = s.split_once('/').unwrap();
        CidrRange::new(a.parse().unwrap(), l.parse().unwrap())
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Selects for a TCP connection from `remote` to `local`.
    fn pick<'a>(
        m: &'a FilterChainManager<&'static str>,
        local: &str,
        remote: &str,
    ) -> Option<&'a str> {
        m.find_filter_chain(&ConnectionMatchInfo::tcp(sa(local), sa(remote)))
            .copied()
    }

    fn chains<T>(chains: Vec<(FilterChainMatch, T)>) -> Vec<FilterChain<T>> {
        chains
            .into_iter()
            .map(|(m, payload)| FilterChain::new(m, payload))
            .collect()
    }

    fn manager(list: Vec<(FilterChainMatch, &'static str)>) -> FilterChainManager<&'static str> {
        FilterChainManager::new(chains(list), None).unwrap()
    }

    // === precedence, level by level ===

    #[test]
    fn single_chain_without_match_takes_everything() {
        let m = manager(vec![(FilterChainMatch::default(), "all")]);
        assert_eq!(pick(&m, "127.0.0.1:80", "127.0.0.1:5000"), Some("all"));
        assert_eq!(pick(&m, "[::1]:80", "[::1]:5000"), Some("all"));
    }

    #[test]
    fn destination_port_exact_beats_any_and_does_not_backtrack() {
        let m = manager(vec![
            (
                FilterChainMatch {
                    destination_port: Some(8080),
                    source_ports: vec![1111],
                    ..Default::default()
                },
                "port",
            ),
            (FilterChainMatch::default(), "any"),
        ]);
        assert_eq!(pick(&m, "127.0.0.1:8080", "127.0.0.1:1111"), Some("port"));
        assert_eq!(pick(&m, "127.0.0.1:9090", "127.0.0.1:1111"), Some("any"));
        // Port 8080 selects the first chain's branch; its source port fails; no fallback.
        assert_eq!(pick(&m, "127.0.0.1:8080", "127.0.0.1:2222"), None);
    }

    #[test]
    fn destination_ip_longest_prefix_wins() {
        let m = manager(vec![
            (
                FilterChainMatch {
                    prefix_ranges: vec![cidr("127.0.0.0/8")],
                    ..Default::default()
                },
                "slash8",
            ),
            (
                FilterChainMatch {
                    prefix_ranges: vec![cidr("127.0.0.2/32")],
                    ..Default::default()
                },
                "slash32",
            ),
            (FilterChainMatch::default(), "any"),
        ]);
        assert_eq!(pick(&m, "127.0.0.2:80", "127.0.0.1:1"), Some("slash32"));
        assert_eq!(pick(&m, "127.0.0.3:80", "127.0.0.1:1"), Some("slash8"));
        assert_eq!(pick(&m, "10.0.0.1:80", "127.0.0.1:1"), Some("any"));
        assert_eq!(pick(&m, "[::1]:80", "[::1]:1"), Some("any"));
    }

    #[test]
    fn destination_ip_beats_source_criteria() {
        // A more specific destination wins even though the other chain names the source.
        let m = manager(vec![
            (
                FilterChainMatch {
                    prefix_ranges: vec![cidr("127.0.0.2/32")],
                    source_ports: vec![7],
                    ..Default::default()
                },
                "dst",
            ),
            (
                FilterChainMatch {
                    source_prefix_ranges: vec![cidr("127.0.0.1/32")],
                    ..Default::default()
                },
                "src",
            ),
        ]);
        assert_eq!(pick(&m, "127.0.0.2:80", "127.0.0.1:7"), Some("dst"));
        assert_eq!(pick(&m, "127.0.0.2:80", "127.0.0.1:8"), None);
        assert_eq!(pick(&m, "127.0.0.3:80", "127.0.0.1:8"), Some("src"));
    }

    #[test]
    fn server_names_exact_then_wildcards_then_catch_all() {
        let m = manager(vec![
            (
                FilterChainMatch {
                    server_names: vec!["www.example.com".into()],
                    ..Default::default()
                },
                "exact",
            ),
            (
                FilterChainMatch {
                    server_names: vec!["*.example.com".into()],
                    ..Default::default()
                },
                "wild",
            ),
            (
                FilterChainMatch {
                    server_names: vec!["*.a.example.com".into()],
                    ..Default::default()
                },
                "wild_a",
            ),
            (FilterChainMatch::default(), "none"),
        ]);
        let with_sni = |sni: Option<&'static str>| {
            m.find_filter_chain(&ConnectionMatchInfo {
                server_name: sni,
                ..ConnectionMatchInfo::tcp(sa("127.0.0.1:1"), sa("127.0.0.1:2"))
            })
            .copied()
        };
        assert_eq!(with_sni(Some("www.example.com")), Some("exact"));
        assert_eq!(with_sni(Some("api.example.com")), Some("wild"));
        assert_eq!(with_sni(Some("x.a.example.com")), Some("wild_a"));
        assert_eq!(with_sni(Some("example.com")), Some("none"));
        assert_eq!(with_sni(Some("other.org")), Some("none"));
        assert_eq!(with_sni(None), Some("none"));
        assert_eq!(with_sni(Some(".")), Some("none"));
    }

    #[test]
    fn transport_and_application_protocols() {
        let m = manager(vec![
            (
                FilterChainMatch {
                    transport_protocol: "tls".into(),
                    application_protocols: vec!["h2".into()],
                    ..Default::default()
                },
                "tls_h2",
            ),
            (
                FilterChainMatch {
                    transport_protocol: "tls".into(),
                    ..Default::default()
                },
                "tls",
            ),
            (
                FilterChainMatch {
                    transport_protocol: RAW_BUFFER.into(),
                    ..Default::default()
                },
                "raw",
            ),
        ]);
        let base = ConnectionMatchInfo::tcp(sa("127.0.0.1:1"), sa("127.0.0.1:2"));
        assert_eq!(m.find_filter_chain(&base).copied(), Some("raw"));
        let tls = ConnectionMatchInfo {
            transport_protocol: "tls",
            application_protocols: &["http/1.1", "h2"],
            ..base
        };
        assert_eq!(m.find_filter_chain(&tls).copied(), Some("tls_h2"));
        let tls_h1 = ConnectionMatchInfo {
            application_protocols: &["http/1.1"],
            ..tls
        };
        assert_eq!(m.find_filter_chain(&tls_h1).copied(), Some("tls"));
    }

    #[test]
    fn source_type_local_and_external() {
        let both = manager(vec![
            (
                FilterChainMatch {
                    source_type: SourceType::SameIpOrLoopback,
                    ..Default::default()
                },
                "local",
            ),
            (
                FilterChainMatch {
                    source_type: SourceType::External,
                    ..Default::default()
                },
                "external",
            ),
        ]);
        assert_eq!(pick(&both, "10.0.0.1:80", "127.0.0.1:1"), Some("local"));
        assert_eq!(pick(&both, "10.0.0.1:80", "10.0.0.1:1"), Some("local"));
        assert_eq!(pick(&both, "10.0.0.1:80", "10.0.0.2:1"), Some("external"));
        assert_eq!(pick(&both, "[::1]:80", "[::1]:1"), Some("local"));

        // Only LOCAL named: external connections fall to ANY; local ones never do.
        let local_or_any = manager(vec![
            (
                FilterChainMatch {
                    source_type: SourceType::SameIpOrLoopback,
                    source_ports: vec![5],
                    ..Default::default()
                },
                "local",
            ),
            (FilterChainMatch::default(), "any"),
        ]);
        assert_eq!(
            pick(&local_or_any, "10.0.0.1:80", "10.0.0.2:9"),
            Some("any")
        );
        assert_eq!(
            pick(&local_or_any, "10.0.0.1:80", "127.0.0.1:5"),
            Some("local")
        );
        assert_eq!(pick(&local_or_any, "10.0.0.1:80", "127.0.0.1:9"), None);
    }

    #[test]
    fn source_prefix_longest_then_source_port() {
        let m = manager(vec![
            (
                FilterChainMatch {
                    source_prefix_ranges: vec![cidr("127.0.0.0/8")],
                    ..Default::default()
                },
                "src8",
            ),
            (
                FilterChainMatch {
                    source_prefix_ranges: vec![cidr("127.0.0.5/32")],
                    source_ports: vec![5000],
                    ..Default::default()
                },
                "src32_port",
            ),
            (
                FilterChainMatch {
                    source_prefix_ranges: vec![cidr("127.0.0.5/32")],
                    ..Default::default()
                },
                "src32",
            ),
        ]);
        assert_eq!(
            pick(&m, "127.0.0.1:80", "127.0.0.5:5000"),
            Some("src32_port")
        );
        assert_eq!(pick(&m, "127.0.0.1:80", "127.0.0.5:5001"), Some("src32"));
        assert_eq!(pick(&m, "127.0.0.1:80", "127.0.0.6:5000"), Some("src8"));
        assert_eq!(pick(&m, "127.0.0.1:80", "10.0.0.6:5000"), None);
    }

    #[test]
    fn ipv4_mapped_addresses_match_as_ipv4() {
        let m = manager(vec![
            (
                FilterChainMatch {
                    source_prefix_ranges: vec![cidr("192.168.0.0/16")],
                    ..Default::default()
                },
                "v4",
            ),
            (
                FilterChainMatch {
                    source_type: SourceType::SameIpOrLoopback,
                    ..Default::default()
                },
                "local",
            ),
        ]);
        assert_eq!(
            pick(&m, "[::ffff:10.0.0.1]:80", "[::ffff:192.168.1.1]:5"),
            Some("v4")
        );
        assert_eq!(
            pick(&m, "[::ffff:10.0.0.1]:80", "[::ffff:127.0.0.1]:5"),
            Some("local")
        );
    }

    #[test]
    fn repeated_fields_are_alternatives() {
        let m = manager(vec![(
            FilterChainMatch {
                prefix_ranges: vec![cidr("127.0.0.2/32"), cidr("127.0.0.3/32")],
                source_ports: vec![1, 2],
                ..Default::default()
            },
            "c",
        )]);
        assert_eq!(pick(&m, "127.0.0.3:80", "127.0.0.1:2"), Some("c"));
        assert_eq!(pick(&m, "127.0.0.2:80", "127.0.0.1:1"), Some("c"));
        assert_eq!(pick(&m, "127.0.0.4:80", "127.0.0.1:1"), None);
        assert_eq!(pick(&m, "127.0.0.2:80", "127.0.0.1:3"), None);
    }

    #[test]
    fn default_filter_chain_when_nothing_matches() {
        let m = FilterChainManager::new(
            chains(vec![(
                FilterChainMatch {
                    destination_port: Some(1),
                    ..Default::default()
                },
                "one",
            )]),
            Some("default"),
        )
        .unwrap();
        assert_eq!(pick(&m, "127.0.0.1:1", "127.0.0.1:9"), Some("one"));
        assert_eq!(pick(&m, "127.0.0.1:2", "127.0.0.1:9"), Some("default"));
        assert_eq!(m.filter_chains(), &["one"]);
        assert_eq!(m.default_filter_chain(), Some(&"default"));
        let only_default: FilterChainManager<&str> =
            FilterChainManager::new(vec![], Some("d")).unwrap();
        assert_eq!(pick(&only_default, "127.0.0.1:1", "127.0.0.1:9"), Some("d"));
        let nothing: FilterChainManager<&str> = FilterChainManager::new(vec![], None).unwrap();
        assert_eq!(pick(&nothing, "127.0.0.1:1", "127.0.0.1:9"), None);
    }

    // === config errors ===

    #[test]
    fn identical_matches_are_rejected() {
        let same = FilterChainMatch {
            destination_port: Some(80),
            ..Default::default()
        };
        let mut list = chains(vec![(same.clone(), 1), (same, 2)]);
        list[0].name = "a".into();
        list[1].name = "b".into();
        let err = FilterChainManager::new(list, None).unwrap_err();
        assert!(matches!(
            err,
            FilterChainError::SameMatchingRules { chain: 1, .. }
        ));
        assert_eq!(
            err.to_string(),
            "filter chain 'b' has the same matching rules defined as 'a'. \
             duplicate matcher is: {\"destination_port\":80}"
        );
        let err = FilterChainManager::new(
            chains(vec![
                (FilterChainMatch::default(), 1),
                (FilterChainMatch::default(), 2),
            ]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "filter chain '' has the same matching rules defined as ''. duplicate matcher is: {}"
        );
    }

    #[test]
    fn overlapping_matches_are_rejected() {
        let a = FilterChainMatch {
            source_ports: vec![1, 2],
            ..Default::default()
        };
        let b = FilterChainMatch {
            source_ports: vec![2, 3],
            ..Default::default()
        };
        let err = FilterChainManager::new(chains(vec![(a, 1), (b, 2)]), None).unwrap_err();
        assert_eq!(err, FilterChainError::OverlappingMatchingRules { chain: 1 });
        // The same range written two ways overlaps too.
        let a = FilterChainMatch {
            prefix_ranges: vec![cidr("10.1.2.3/8")],
            ..Default::default()
        };
        let b = FilterChainMatch {
            prefix_ranges: vec![cidr("10.0.0.0/8")],
            ..Default::default()
        };
        assert!(FilterChainManager::new(chains(vec![(a, 1), (b, 2)]), None).is_err());
    }

    #[test]
    fn from_listener_builds_payloads_and_names_paths() {
        let yaml = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - name: a
      filter_chain_match: { source_ports: [1, 2] }
      filters: []
    - name: b
      filter_chain_match: { destination_port: 10000, source_type: SAME_IP_OR_LOOPBACK }
      filters: []
    default_filter_chain: { name: d, filters: [] }
"#;
        let bootstrap = crate::config::load_str(yaml).unwrap();
        let listener = &bootstrap.static_resources.listeners[0];
        let m = FilterChainManager::from_listener(listener, |c| Ok(c.name.clone())).unwrap();
        let pick = |local: &str, remote: &str| {
            m.find_filter_chain(&ConnectionMatchInfo::tcp(sa(local), sa(remote)))
                .cloned()
        };
        assert_eq!(pick("127.0.0.1:10000", "127.0.0.1:9"), Some("b".into()));
        assert_eq!(pick("127.0.0.1:10001", "127.0.0.1:2"), Some("a".into()));
        assert_eq!(pick("127.0.0.1:10001", "127.0.0.1:3"), Some("d".into()));

        let overlapping = yaml.replace(
            "destination_port: 10000, source_type: SAME_IP_OR_LOOPBACK",
            "source_ports: [2, 3]",
        );
        let bootstrap = crate::config::load_str(&overlapping).unwrap();
        let err =
            FilterChainManager::from_listener(&bootstrap.static_resources.listeners[0], |_| Ok(()))
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "static_resources.listeners[0].filter_chains[1].filter_chain_match: \
             multiple filter chains with overlapping matching rules are defined"
        );
        // The builder's own errors pass through unchanged.
        let listener = &crate::config::load_str(yaml)
            .unwrap()
            .static_resources
            .listeners[0];
        let err = FilterChainManager::<()>::from_listener(listener, |c| {
            Err(ConfigError::invalid(c.path.clone(), "boom"))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "static_resources.listeners[0].filter_chains[0]: boom"
        );
    }

    #[test]
    fn partial_wildcards_are_rejected() {
        for bad in ["*", "w*.example.com", "www.*.com", "*.*.com"] {
            let m = FilterChainMatch {
                server_names: vec![bad.into()],
                ..Default::default()
            };
            assert!(
                matches!(
                    FilterChainManager::new(chains(vec![(m, 1)]), None),
                    Err(FilterChainError::PartialWildcard { chain: 0, .. })
                ),
                "{bad}"
            );
        }
    }
}
