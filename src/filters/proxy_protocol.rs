//! `envoy.filters.listener.proxy_protocol`: the listener filter that reads a PROXY protocol
//! header and makes the addresses it carries the connection's remote and local addresses
//! (Envoy's `Extensions::ListenerFilters::ProxyProtocol::Filter`).
//!
//! Built from the listener's `listener_filters[]` entry by [`ProxyProtocolFactory::from_config`]
//! (on the main thread); the connection handler (`network/listener_filter.rs`'s contract) asks the
//! factory for one [`ProxyProtocolFilter`] per accepted socket, peeks the socket's first bytes
//! into it, and resumes the filter chain when it returns `Continue`. The byte-level parsing lives
//! in [`crate::network::proxy_protocol`]; this file owns the config, the decisions and the stats.
//!
//! Stats (Envoy 1.40 names, in the server's root scope, shared by every listener with the same
//! `stat_prefix`): `downstream_cx_proxy_proto_error` for every malformed or missing header, and
//! `proxy_proto.[<stat_prefix>.]not_found_allowed`, `.not_found_disallowed`,
//! `.versions.v1.found|disallowed|error`, `.versions.v2.found|disallowed|error`.

use std::sync::Arc;

use crate::config::{Node, Result, TypedConfig};
use crate::network::listener_filter::{
    ListenerFilter, ListenerFilterContext, ListenerFilterFactory, ListenerFilterStatus,
};
use crate::network::proxy_protocol::{
    max_header_len, parse, ParseOptions, Parsed, ProxyProtocolError, ProxyProtocolVersion,
};
use crate::stats::{Counter, Store};

/// The filter's name in `listener_filters[].name`.
pub const NAME: &str = "envoy.filters.listener.proxy_protocol";
/// The `typed_config` type.
pub const TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol";

/// The counters of one version.
#[derive(Clone, Debug)]
pub struct VersionStats {
    pub found: Counter,
    pub disallowed: Counter,
    pub error: Counter,
}

/// The filter's counters (see the module docs for their names).
#[derive(Clone, Debug)]
pub struct ProxyProtocolStats {
    /// `downstream_cx_proxy_proto_error`, in the root scope.
    pub downstream_cx_proxy_proto_error: Counter,
    pub not_found_allowed: Counter,
    pub not_found_disallowed: Counter,
    pub v1: VersionStats,
    pub v2: VersionStats,
}

impl ProxyProtocolStats {
    /// The counters in `store` (the server's root scope).
    pub fn new(store: &Store, stat_prefix: &str) -> ProxyProtocolStats {
        let scope = if stat_prefix.is_empty() {
            store.scope("proxy_proto")
        } else {
            store.scope(&format!("proxy_proto.{stat_prefix}"))
        };
        let version = |v: &str| VersionStats {
            found: scope.counter(&format!("versions.{v}.found")),
            disallowed: scope.counter(&format!("versions.{v}.disallowed")),
            error: scope.counter(&format!("versions.{v}.error")),
        };
        ProxyProtocolStats {
            downstream_cx_proxy_proto_error: store.counter("downstream_cx_proxy_proto_error"),
            not_found_allowed: scope.counter("not_found_allowed"),
            not_found_disallowed: scope.counter("not_found_disallowed"),
            v1: version("v1"),
            v2: version("v2"),
        }
    }

    fn version(&self, version: ProxyProtocolVersion) -> &VersionStats {
        match version {
            ProxyProtocolVersion::V1 => &self.v1,
            ProxyProtocolVersion::V2 => &self.v2,
        }
    }
}

/// The parsed `typed_config`, shared by every filter the factory creates.
#[derive(Debug)]
pub struct ProxyProtocolFactory {
    options: ParseOptions,
    stats: Arc<ProxyProtocolStats>,
}

impl ProxyProtocolFactory {
    /// Reads the `ProxyProtocol` message (an absent `typed_config` means all defaults); the
    /// counters are created in `store`, the server's root scope.
    pub fn from_config(
        typed_config: Option<&TypedConfig>,
        store: &Store,
    ) -> Result<ProxyProtocolFactory> {
        let mut options = ParseOptions::default();
        let mut stat_prefix = "";
        if let Some(typed) = typed_config {
            let node = typed.node();
            node.reject("rules", "TLV-to-metadata rules; the TLVs are skipped")?;
            node.reject("pass_through_tlvs", "TLVs are skipped")?;
            node.check_fields(
                &[
                    "allow_requests_without_proxy_protocol",
                    "disallowed_versions",
                    "stat_prefix",
                ],
                &["tlv_location"],
            )?;
            options.allow_requests_without_proxy_protocol = node
                .opt("allow_requests_without_proxy_protocol", Node::as_bool)?
                .unwrap_or(false);
            for version in node.list("disallowed_versions", |n| n.enum_str(&["V1", "V2"], &[]))? {
                match version {
                    "V1" => options.v1_disallowed = true,
                    _ => options.v2_disallowed = true,
                }
            }
            stat_prefix = node.opt("stat_prefix", Node::as_str)?.unwrap_or("");
        }
        Ok(ProxyProtocolFactory {
            options,
            stats: Arc::new(ProxyProtocolStats::new(store, stat_prefix)),
        })
    }

    /// The counters, for the admin endpoint.
    pub fn stats(&self) -> &Arc<ProxyProtocolStats> {
        &self.stats
    }
}

impl ListenerFilterFactory for ProxyProtocolFactory {
    fn create_filter(&self) -> Box<dyn ListenerFilter> {
        Box::new(ProxyProtocolFilter {
            options: self.options,
            stats: Arc::clone(&self.stats),
            max_read_bytes: max_header_len(&[]),
        })
    }
}

/// One accepted socket's PROXY protocol reader.
pub struct ProxyProtocolFilter {
    options: ParseOptions,
    stats: Arc<ProxyProtocolStats>,
    /// How many bytes to peek: the v1 limit, raised to a v2 header's announced length.
    max_read_bytes: usize,
}

impl ListenerFilter for ProxyProtocolFilter {
    fn on_accept(&mut self, _cx: &mut ListenerFilterContext<'_>) -> ListenerFilterStatus {
        // Nothing can be decided before the first bytes.
        ListenerFilterStatus::StopIteration
    }

    fn max_read_bytes(&self) -> usize {
        self.max_read_bytes
    }

    fn on_data(
        &mut self,
        peeked: &[u8],
        cx: &mut ListenerFilterContext<'_>,
    ) -> ListenerFilterStatus {
        match parse(peeked, &self.options) {
            Ok(None) => {
                self.max_read_bytes = max_header_len(peeked);
                ListenerFilterStatus::StopIteration
            }
            Ok(Some(Parsed::Header(header))) => {
                self.stats.version(header.version).found.inc();
                if let Some((source, destination)) = header.addresses {
                    debug!(
                        "proxy_protocol: {} header: remote {} -> {}, local {} -> {}",
                        header.version,
                        cx.remote_address(),
                        source,
                        cx.local_address(),
                        destination
                    );
                    cx.set_remote_address(source);
                    cx.set_local_address(destination);
                } else {
                    debug!(
                        "proxy_protocol: {} header without addresses (LOCAL or UNKNOWN) from {}",
                        header.version,
                        cx.remote_address()
                    );
                }
                cx.drain(header.header_len);
                ListenerFilterStatus::Continue
            }
            Ok(Some(Parsed::NotPresent)) => {
                self.stats.not_found_allowed.inc();
                ListenerFilterStatus::Continue
            }
            Err(error) => {
                debug!("proxy_protocol: closing {}: {error}", cx.remote_address());
                match error {
                    ProxyProtocolError::NotFound => {
                        self.stats.not_found_disallowed.inc();
                        self.stats.downstream_cx_proxy_proto_error.inc();
                    }
                    ProxyProtocolError::Malformed(version, _) => {
                        self.stats.version(version).error.inc();
                        self.stats.downstream_cx_proxy_proto_error.inc();
                    }
                    ProxyProtocolError::Disallowed(version) => {
                        self.stats.version(version).found.inc();
                        self.stats.version(version).disallowed.inc();
                    }
                }
                cx.close();
                ListenerFilterStatus::StopIteration
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::network::listener_filter::SocketAddresses;

    fn factory(yaml: &str) -> Result<ProxyProtocolFactory> {
        let value = parse_yaml(yaml).unwrap();
        let typed = Node::with_path(&value, "listener_filters[0].typed_config").typed_config()?;
        ProxyProtocolFactory::from_config(Some(&typed), &Store::new())
    }

    fn addresses() -> SocketAddresses {
        SocketAddresses {
            remote: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:10000".parse().unwrap(),
            local_restored: false,
        }
    }

    /// Feeds `input` one byte more at a time, as successive peeks would show it; returns the
    /// final status, the addresses, the bytes drained and whether the filter closed the socket.
    fn run(
        f: &ProxyProtocolFactory,
        input: &[u8],
    ) -> (ListenerFilterStatus, SocketAddresses, usize, bool) {
        let mut filter = f.create_filter();
        let mut addrs = addresses();
        let mut cx = ListenerFilterContext::new(&mut addrs);
        assert_eq!(
            filter.on_accept(&mut cx),
            ListenerFilterStatus::StopIteration
        );
        let mut status = ListenerFilterStatus::StopIteration;
        let (mut drained, mut closed) = (0, false);
        for n in 1..=input.len() {
            let mut cx = ListenerFilterContext::new(&mut addrs);
            let peek = n.min(filter.max_read_bytes());
            status = filter.on_data(&input[..peek], &mut cx);
            drained = cx.drained();
            closed = cx.close_requested();
            if status == ListenerFilterStatus::Continue || closed {
                break;
            }
        }
        (status, addrs, drained, closed)
    }

    fn counters(f: &ProxyProtocolFactory) -> Vec<(String, u64)> {
        let s = f.stats();
        let mut all = vec![
            &s.downstream_cx_proxy_proto_error,
            &s.not_found_allowed,
            &s.not_found_disallowed,
        ];
        for v in [&s.v1, &s.v2] {
            all.extend([&v.disallowed, &v.error, &v.found]);
        }
        all.into_iter()
            .filter(|c| c.value() > 0)
            .map(|c| (c.name().to_string(), c.value()))
            .collect()
    }

    const DEFAULT: &str = "'@type': type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol";

    #[test]
    fn v1_header_sets_addresses_and_drains_only_the_header() {
        let f = factory(DEFAULT).unwrap();
        let (status, addrs, drained, closed) = run(
            &f,
            b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 443\r\nGET / HTTP/1.1\r\n",
        );
        assert_eq!(status, ListenerFilterStatus::Continue);
        assert!(!closed);
        assert_eq!(drained, 44);
        assert_eq!(addrs.remote, "192.0.2.1:5555".parse().unwrap());
        assert_eq!(addrs.local, "198.51.100.2:443".parse().unwrap());
        assert!(addrs.local_restored);
        assert_eq!(
            counters(&f),
            vec![("proxy_proto.versions.v1.found".to_string(), 1)]
        );
    }

    #[test]
    fn v2_local_keeps_socket_addresses() {
        let f = factory(DEFAULT).unwrap();
        let mut input = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00".to_vec();
        input.extend_from_slice(b"payload");
        let (status, addrs, drained, _) = run(&f, &input);
        assert_eq!(status, ListenerFilterStatus::Continue);
        assert_eq!(drained, 16);
        assert_eq!(addrs, addresses());
    }

    #[test]
    fn v2_with_large_tlvs_raises_max_read_bytes() {
        let f = factory(DEFAULT).unwrap();
        let mut input = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11".to_vec();
        input.extend_from_slice(&(12u16 + 1000).to_be_bytes());
        input.extend_from_slice(&[127, 0, 0, 9, 127, 0, 0, 10, 0, 1, 0, 2]);
        input.extend_from_slice(&[0xEE; 1000]);
        input.extend_from_slice(b"after");
        let (status, addrs, drained, _) = run(&f, &input);
        assert_eq!(status, ListenerFilterStatus::Continue);
        assert_eq!(drained, 16 + 12 + 1000);
        assert_eq!(addrs.remote, "127.0.0.9:1".parse().unwrap());
    }

    #[test]
    fn malformed_and_missing_headers_close_and_count() {
        let f = factory(DEFAULT).unwrap();
        let (_, addrs, drained, closed) = run(&f, b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
        assert!(closed);
        assert_eq!((addrs, drained), (addresses(), 0));
        let (.., closed) = run(&f, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(closed);
        assert_eq!(
            counters(&f),
            vec![
                ("downstream_cx_proxy_proto_error".to_string(), 2),
                ("proxy_proto.not_found_disallowed".to_string(), 1),
                ("proxy_proto.versions.v1.error".to_string(), 1),
            ]
        );
    }

    #[test]
    fn allow_without_header_and_stat_prefix() {
        let f = factory(&format!(
            "{DEFAULT}\nallow_requests_without_proxy_protocol: true\nstat_prefix: front"
        ))
        .unwrap();
        let (status, addrs, drained, closed) = run(&f, b"GET / HTTP/1.1\r\n");
        assert_eq!(status, ListenerFilterStatus::Continue);
        assert_eq!((addrs, drained, closed), (addresses(), 0, false));
        assert_eq!(
            counters(&f),
            vec![("proxy_proto.front.not_found_allowed".to_string(), 1)]
        );
    }

    #[test]
    fn disallowed_version_closes_without_an_error_count() {
        let f = factory(&format!("{DEFAULT}\ndisallowed_versions: [V1]")).unwrap();
        let (.., closed) = run(&f, b"PROXY UNKNOWN\r\n");
        assert!(closed);
        assert_eq!(
            counters(&f),
            vec![
                ("proxy_proto.versions.v1.disallowed".to_string(), 1),
                ("proxy_proto.versions.v1.found".to_string(), 1),
            ]
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = factory(&format!("{DEFAULT}\nrules: []")).unwrap_err();
        assert_eq!(err.path, "listener_filters[0].typed_config.rules");
        let err = factory(&format!("{DEFAULT}\npass_through_tlvs: {{}}")).unwrap_err();
        assert_eq!(
            err.path,
            "listener_filters[0].typed_config.pass_through_tlvs"
        );
        let err = factory(&format!("{DEFAULT}\nbogus: 1")).unwrap_err();
        assert_eq!(err.path, "listener_filters[0].typed_config.bogus");
        let err = factory(&format!("{DEFAULT}\ndisallowed_versions: [V3]")).unwrap_err();
        assert_eq!(
            err.path,
            "listener_filters[0].typed_config.disallowed_versions[0]"
        );
        assert!(ProxyProtocolFactory::from_config(None, &Store::new()).is_ok());
    }
}
