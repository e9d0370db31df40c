//! The `envoy.filters.network.http_connection_manager` config (Envoy's
//! `HttpConnectionManager` message), parsed once at start into [`HcmConfig`], shared by every
//! connection of the listener on every worker.
//!
//! Called by the network filter factory (`http::conn_manager_factory`); read by the
//! `ConnectionManager` of each downstream connection. Every field Envoy has and nuncio does not
//! implement is rejected with its path; defaults are Envoy's.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, ErrorKind, Node};

use super::filter_registry::{self, FilterFactoryCb, HttpFilterEntry, HttpFilterFactoryContext};
use super::internal_address_config::InternalAddressConfig;
use super::original_ip_detection::OriginalIpDetection;

/// `codec_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecType {
    Auto,
    Http1,
}

/// `forward_client_cert_details` etc. are not supported; these are the supported fields.
#[derive(Clone)]
pub struct HcmConfig {
    /// `stat_prefix`: stats are `http.<stat_prefix>.*`.
    pub stat_prefix: String,
    pub codec_type: CodecType,
    /// The inline `route_config`, kept for the router (parsed by `router::`).
    pub route_config: config::TypedConfig,
    /// `http_filters` before the router, in order.
    pub filters: Vec<(String, Arc<dyn FilterFactoryCb>)>,
    /// The router's `suppress_envoy_headers`.
    pub suppress_envoy_headers: bool,
    /// `server_name` (default `envoy` in Envoy; `nuncio` here): the `server` response header.
    pub server_name: String,
    /// `server_header_transformation`: OVERWRITE (default), APPEND_IF_ABSENT, PASS_THROUGH.
    pub server_header_transformation: ServerHeaderTransformation,
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    /// `skip_xff_append`: do not append the peer to x-forwarded-for.
    pub skip_xff_append: bool,
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    /// `internal_address_config`: which final remote addresses are internal.
    pub internal_address_config: InternalAddressConfig,
    /// `original_ip_detection_extensions`, in order (empty: `x-forwarded-for` with
    /// `xff_num_trusted_hops`, Envoy's default XFF extension).
    pub original_ip_detection: Vec<OriginalIpDetection>,
    /// `route_config.internal_only_headers`, lower-cased: removed from external requests.
    pub internal_only_headers: Vec<String>,
    /// The proxy's own address (Envoy's `LocalInfo` address): appended to `x-forwarded-for`
    /// in place of a loopback peer.
    pub local_address: std::net::IpAddr,
    pub always_set_request_id_in_response: bool,
    /// `common_http_protocol_options.idle_timeout` (1 h; zero disables).
    pub idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_headers_count` (100).
    pub max_headers_count: u32,
    /// `common_http_protocol_options.max_connection_duration` (off).
    pub max_connection_duration: Option<Duration>,
    /// `common_http_protocol_options.max_requests_per_connection` (off).
    pub max_requests_per_connection: Option<u32>,
    /// `stream_idle_timeout` (5 min; zero disables).
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout` (off).
    pub request_timeout: Option<Duration>,
    /// `request_headers_timeout` (off).
    pub request_headers_timeout: Option<Duration>,
    /// `drain_timeout` (5 s).
    pub drain_timeout: Duration,
    /// `delayed_close_timeout` (1 s; zero disables).
    pub delayed_close_timeout: Option<Duration>,
    /// `upgrade_configs[].upgrade_type`, lower-cased, enabled ones only.
    pub upgrade_types: Vec<String>,
    pub normalize_path: bool,
    pub merge_slashes: bool,
    /// `http_protocol_options.accept_http_10`.
    pub accept_http_10: bool,
    /// `http_protocol_options.default_host_for_http_10`.
    pub default_host_for_http_10: Option<String>,
    /// `max_request_headers_kb` (60).
    pub max_request_headers_kb: u32,
    /// `access_log` entries, parsed by the access-log module.
    pub access_log: Vec<crate::access_log::AccessLogConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerHeaderTransformation {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

const SUPPORTED: &[&str] = &[
    "stat_prefix",
    "codec_type",
    "route_config",
    "http_filters",
    "server_name",
    "server_header_transformation",
    "use_remote_address",
    "xff_num_trusted_hops",
    "skip_xff_append",
    "generate_request_id",
    "preserve_external_request_id",
    "internal_address_config",
    "original_ip_detection_extensions",
    "always_set_request_id_in_response",
    "common_http_protocol_options",
    "stream_idle_timeout",
    "request_timeout",
    "request_headers_timeout",
    "drain_timeout",
    "delayed_close_timeout",
    "upgrade_configs",
    "normalize_path",
    "merge_slashes",
    "http_protocol_options",
    "max_request_headers_kb",
    "access_log",
];

const UNSUPPORTED: &[&str] = &[
    "scoped_routes",
    "http2_protocol_options",
    "http3_protocol_options",
    "tracing",
    "add_user_agent",
    "forward_client_cert_details",
    "set_current_client_cert_details",
    "proxy_100_continue",
    "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
    "via",
    "local_reply_config",
    "request_id_extension",
    "strip_matching_host_port",
    "strip_any_host_port",
    "path_with_escaped_slashes_action",
    "early_header_mutation_extensions",
    "stream_error_on_invalid_http_message",
    "access_log_options",
    "scheme_header_transformation",
    "strip_trailing_host_dot",
    "proxy_status_config",
    "typed_header_validation_config",
    "append_x_forwarded_port",
    "append_local_overload",
    "request_id_extension",
    "normalize_path_options",
    "max_request_headers_count",
    "server_header_transformation_options",
    "http_services",
];

fn opt_timeout(
    node: &Node,
    field: &str,
    default: Option<Duration>,
) -> config::Result<Option<Duration>> {
    match node.get(field) {
        None => Ok(default),
        Some(n) => {
            let d = n.duration()?;
            Ok(if d.is_zero() { None } else { Some(d) })
        }
    }
}

impl HcmConfig {
    /// Parses the `typed_config` of an `envoy.filters.network.http_connection_manager` filter.
    pub fn parse(node: &Node, context: &HttpFilterFactoryContext) -> config::Result<HcmConfig> {
        node.reject(
            "rds",
            "route discovery (RDS) is not implemented; use an inline route_config",
        )?;
        node.reject("scoped_routes", "scoped route discovery is not implemented")?;
        node.check_fields(SUPPORTED, UNSUPPORTED)?;
        let stat_prefix = node.required("stat_prefix")?.as_str()?.to_string();
        let codec_type =
            match node.get("codec_type") {
                None => CodecType::Auto,
                Some(n) => match n.enum_str(&["AUTO", "HTTP1"], &["HTTP2", "HTTP3"]) {
                    Ok("HTTP1") => CodecType::Http1,
                    Ok(_) => CodecType::Auto,
                    Err(_) if n.as_str().ok() == Some("HTTP2") => return Err(n.error_of(
                        ErrorKind::NotSupported,
                        "HTTP2 is not supported by nuncio yet (use AUTO or HTTP1: HTTP/1.1 only)",
                    )),
                    Err(e) => return Err(e),
                },
            };
        let route_node = node.get("route_config").ok_or_else(|| {
            node.error_of(
                ErrorKind::Missing,
                "route_config is required (nuncio has no RDS)",
            )
        })?;
        // Envoy keeps `internal_only_headers` on the route table but applies it in the HCM's
        // header sanitizing, before any filter runs; the router ignores the field.
        let internal_only_headers = route_node.list("internal_only_headers", |n| {
            Ok(n.non_empty_str()?.to_ascii_lowercase())
        })?;
        let route_config = config::TypedConfig {
            type_url: "envoy.config.route.v3.RouteConfiguration".into(),
            value: route_node.value().clone(),
            path: route_node.path().to_string(),
        };

        let mut filters = Vec::new();
        let entries = node.required("http_filters")?.as_list()?;
        let mut saw_router = false;
        let mut suppress_envoy_headers = false;
        for (i, entry) in entries.iter().enumerate() {
            match filter_registry::resolve(entry, context)? {
                HttpFilterEntry::Router {
                    suppress_envoy_headers: suppress,
                } if i + 1 == entries.len() => {
                    saw_router = true;
                    suppress_envoy_headers = suppress;
                }
                HttpFilterEntry::Router { .. } => {
                    return Err(entry.error(
                        "the router filter must be the last HTTP filter (a filter after it would never run)",
                    ))
                }
                HttpFilterEntry::Filter { name, factory } => filters.push((name, factory)),
            }
        }
        if !saw_router {
            return Err(ConfigErrorAt::field(node, "http_filters")
                .invalid("the last HTTP filter must be envoy.filters.http.router"));
        }

        let server_name = node
            .opt("server_name", |n| n.as_str().map(str::to_string))?
            .unwrap_or_else(|| "nuncio".to_string());
        let server_header_transformation = match node.get("server_header_transformation") {
            None => ServerHeaderTransformation::Overwrite,
            Some(n) => match n.enum_str(&["OVERWRITE", "APPEND_IF_ABSENT", "PASS_THROUGH"], &[])? {
                "APPEND_IF_ABSENT" => ServerHeaderTransformation::AppendIfAbsent,
                "PASS_THROUGH" => ServerHeaderTransformation::PassThrough,
                _ => ServerHeaderTransformation::Overwrite,
            },
        };
        let bool_field = |field: &str, default: bool| -> config::Result<bool> {
            Ok(node.opt(field, Node::bool_value)?.unwrap_or(default))
        };

        let mut idle_timeout = Some(Duration::from_secs(3600));
        let mut max_headers_count = 100;
        let mut max_connection_duration = None;
        let mut max_requests_per_connection = None;
        if let Some(common) = node.get("common_http_protocol_options") {
            common.check_fields(
                &[
                    "idle_timeout",
                    "max_headers_count",
                    "max_connection_duration",
                    "max_requests_per_connection",
                    "headers_with_underscores_action",
                ],
                &["max_stream_duration", "max_response_headers_kb"],
            )?;
            idle_timeout = opt_timeout(&common, "idle_timeout", idle_timeout)?;
            if let Some(n) = common.get("max_headers_count") {
                max_headers_count = n.u32_value()?.max(1);
            }
            max_connection_duration = opt_timeout(&common, "max_connection_duration", None)?;
            max_requests_per_connection = common
                .opt("max_requests_per_connection", Node::u32_value)?
                .filter(|n| *n > 0);
            if let Some(n) = common.get("headers_with_underscores_action") {
                n.enum_str(&["ALLOW"], &["REJECT_REQUEST", "DROP_HEADER"])?;
            }
        }

        let mut accept_http_10 = false;
        let mut default_host_for_http_10 = None;
        if let Some(h1) = node.get("http_protocol_options") {
            h1.check_fields(
                &["accept_http_10", "default_host_for_http_10"],
                &[
                    "allow_absolute_url",
                    "header_key_format",
                    "enable_trailers",
                    "allow_chunked_length",
                    "override_stream_error_on_invalid_http_message",
                    "send_fully_qualified_url",
                    "use_balsa_parser",
                    "allow_custom_methods",
                    "ignore_http_11_upgrade",
                ],
            )?;
            accept_http_10 = h1.opt("accept_http_10", Node::as_bool)?.unwrap_or(false);
            default_host_for_http_10 = h1.opt("default_host_for_http_10", |n| {
                n.as_str().map(str::to_string)
            })?;
        }

        let mut upgrade_types = Vec::new();
        for upgrade in node.list("upgrade_configs", |n| Ok(n.clone()))? {
            upgrade.check_fields(&["upgrade_type", "enabled"], &["filters"])?;
            let kind = upgrade.required("upgrade_type")?.non_empty_str()?;
            if upgrade.opt("enabled", Node::bool_value)?.unwrap_or(true) {
                if !kind.eq_ignore_ascii_case("websocket") {
                    return Err(upgrade.required("upgrade_type")?.error_of(
                        ErrorKind::NotSupported,
                        format!(
                            "upgrade type '{kind}' is not supported by nuncio (only websocket)"
                        ),
                    ));
                }
                upgrade_types.push(kind.to_ascii_lowercase());
            }
        }

        let max_request_headers_kb = match node.get("max_request_headers_kb") {
            None => 60,
            Some(n) => n.u32_value().and_then(|v| {
                if (1..=8192).contains(&v) {
                    Ok(v)
                } else {
                    Err(n.error("must be in 1..=8192"))
                }
            })?,
        };

        let access_log = match node.get("access_log") {
            Some(list) => crate::access_log::AccessLogConfig::parse_list(&list)?,
            None => Vec::new(),
        };

        let original_ip_detection = node.list(
            "original_ip_detection_extensions",
            OriginalIpDetection::parse,
        )?;
        if let (false, Some(list)) = (
            original_ip_detection.is_empty(),
            node.get("original_ip_detection_extensions"),
        ) {
            // Envoy 1.40's messages: the extensions replace the XFF settings.
            if node.opt("use_remote_address", Node::bool_value)? == Some(true) {
                return Err(list.error(
                    "Original IP detection extensions and use_remote_address may not be mixed",
                ));
            }
            if node.opt("xff_num_trusted_hops", Node::as_u32)?.unwrap_or(0) > 0 {
                return Err(list.error(
                    "Original IP detection extensions and xff_num_trusted_hops may not be mixed",
                ));
            }
        }

        Ok(HcmConfig {
            original_ip_detection,
            suppress_envoy_headers,
            stat_prefix,
            codec_type,
            route_config,
            filters,
            server_name,
            server_header_transformation,
            use_remote_address: bool_field("use_remote_address", false)?,
            xff_num_trusted_hops: node.opt("xff_num_trusted_hops", Node::as_u32)?.unwrap_or(0),
            skip_xff_append: bool_field("skip_xff_append", false)?,
            generate_request_id: bool_field("generate_request_id", true)?,
            preserve_external_request_id: bool_field("preserve_external_request_id", false)?,
            internal_address_config: InternalAddressConfig::parse(node)?,
            internal_only_headers,
            local_address: super::local_address::local_address(),
            always_set_request_id_in_response: bool_field(
                "always_set_request_id_in_response",
                false,
            )?,
            idle_timeout,
            max_headers_count,
            max_connection_duration,
            max_requests_per_connection,
            stream_idle_timeout: opt_timeout(
                node,
                "stream_idle_timeout",
                Some(Duration::from_secs(300)),
            )?,
            request_timeout: opt_timeout(node, "request_timeout", None)?,
            request_headers_timeout: opt_timeout(node, "request_headers_timeout", None)?,
            drain_timeout: opt_timeout(node, "drain_timeout", Some(Duration::from_secs(5)))?
                .unwrap_or(Duration::ZERO),
            delayed_close_timeout: opt_timeout(
                node,
                "delayed_close_timeout",
                Some(Duration::from_secs(1)),
            )?,
            upgrade_types,
            normalize_path: bool_field("normalize_path", false)?,
            merge_slashes: node.opt("merge_slashes", Node::as_bool)?.unwrap_or(false),
            accept_http_10,
            default_host_for_http_10,
            max_request_headers_kb,
            access_log,
        })
    }

    /// Whether `upgrade` (the request's `upgrade` header value) is configured.
    pub fn upgrade_allowed(&self, upgrade: &str) -> bool {
        self.upgrade_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(upgrade.trim()))
    }
}

/// Builds an error about a (possibly absent) field of a node.
struct ConfigErrorAt {
    path: String,
}

impl ConfigErrorAt {
    fn field(node: &Node, field: &str) -> Self {
        ConfigErrorAt {
            path: node.field_path(field),
        }
    }
    fn invalid(self, message: &str) -> config::ConfigError {
        config::ConfigError::invalid(self.path, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> config::Result<HcmConfig> {
        let doc = parse_yaml(yaml).unwrap();
        HcmConfig::parse(&Node::root(&doc), &HttpFilterFactoryContext::default())
    }

    const MINIMAL: &str = "stat_prefix: ingress
route_config: {virtual_hosts: []}
http_filters:
- name: envoy.filters.http.router
  typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
";

    #[test]
    fn defaults_are_envoys() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.stat_prefix, "ingress");
        assert_eq!(c.codec_type, CodecType::Auto);
        assert_eq!(c.server_name, "nuncio");
        assert!(c.generate_request_id);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(c.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.request_timeout, None);
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
        assert_eq!(c.delayed_close_timeout, Some(Duration::from_secs(1)));
        assert_eq!(c.max_request_headers_kb, 60);
        assert_eq!(c.max_headers_count, 100);
        assert!(c.filters.is_empty());
    }

    #[test]
    fn every_field_parses() {
        let c = parse(
            "stat_prefix: s
codec_type: HTTP1
server_name: edge
use_remote_address: true
xff_num_trusted_hops: 1
generate_request_id: false
always_set_request_id_in_response: true
common_http_protocol_options: {idle_timeout: 10s, max_headers_count: 50}
stream_idle_timeout: 0s
request_timeout: 2s
request_headers_timeout: 1s
drain_timeout: 3s
delayed_close_timeout: 0s
upgrade_configs: [{upgrade_type: websocket}]
normalize_path: true
merge_slashes: true
http_protocol_options: {accept_http_10: true, default_host_for_http_10: example.com}
max_request_headers_kb: 8
route_config: {virtual_hosts: []}
http_filters:
- name: envoy.filters.http.health_check
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
    pass_through_mode: false
    headers: [{name: \":path\", string_match: {exact: /healthz}}]
- name: envoy.filters.http.router
",
        )
        .unwrap();
        assert_eq!(c.codec_type, CodecType::Http1);
        assert_eq!(c.server_name, "edge");
        assert!(c.use_remote_address && !c.generate_request_id);
        assert_eq!(c.stream_idle_timeout, None);
        assert_eq!(c.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.delayed_close_timeout, None);
        assert!(c.upgrade_allowed("WebSocket"));
        assert!(c.accept_http_10);
        assert_eq!(c.default_host_for_http_10.as_deref(), Some("example.com"));
        assert_eq!(c.filters.len(), 1);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            parse(&MINIMAL.replace("stat_prefix: ingress", "stat_prefix: i\ncodec_type: HTTP2"))
                .err()
                .unwrap();
        assert_eq!(e.path, "codec_type");
        assert!(e.message.contains("HTTP2"), "{e}");
        let e = parse("stat_prefix: i\nrds: {route_config_name: x}\nhttp_filters: []\n")
            .err()
            .unwrap();
        assert_eq!(e.path, "rds");
        let e = parse("stat_prefix: i\nroute_config: {}\nhttp_filters:\n- name: envoy.filters.http.router\n- name: envoy.filters.http.health_check\n  typed_config: {\"@type\": x/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: false}\n")
            .err()
            .unwrap();
        assert_eq!(e.path, "http_filters[0]");
        let e = parse("stat_prefix: i\nroute_config: {}\nhttp_filters: []\n")
            .err()
            .unwrap();
        assert_eq!(e.path, "http_filters");
        let e = parse(
            "stat_prefix: i\nroute_config: {}\nhttp_filters:\n- name: envoy.filters.http.cors\n",
        )
        .err()
        .unwrap();
        assert_eq!(e.path, "http_filters[0]");
        let e = parse(&format!("{MINIMAL}tracing: {{}}\n")).err().unwrap();
        assert_eq!(e.to_string(), "tracing: not supported by nuncio");
    }
}
