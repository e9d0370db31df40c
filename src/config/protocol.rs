//! `envoy.config.core.v3.HttpProtocolOptions` (`common_http_protocol_options`): idle timeout,
//! header count limit, requests per connection.
//!
//! Shared by the cluster parser (upstream connections) and the HTTP connection manager's
//! parser (downstream connections, issue 4), which calls [`HttpProtocolOptions::parse`].

use std::time::Duration;

use super::error::Result;
use super::node::Node;

/// Envoy's default `idle_timeout`: one hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `max_headers_count`.
pub const DEFAULT_MAX_HEADERS_COUNT: u32 = 100;

const FIELDS: [&str; 3] = [
    "idle_timeout",
    "max_headers_count",
    "max_requests_per_connection",
];
const UNSUPPORTED: [&str; 4] = [
    "max_connection_duration",
    "max_response_headers_kb",
    "max_stream_duration",
    "headers_with_underscores_action",
];

/// `common_http_protocol_options`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpProtocolOptions {
    /// `idle_timeout`: close a connection with no active stream after this long. Default 1 h;
    /// `0s` disables it (`None`).
    pub idle_timeout: Option<Duration>,
    /// `max_headers_count`: more headers than this is a 431 (downstream) or an error
    /// (upstream). Default 100.
    pub max_headers_count: u32,
    /// `max_requests_per_connection`: close a connection after this many requests. Default:
    /// no limit (`None`; `0` also means no limit).
    pub max_requests_per_connection: Option<u32>,
}

impl Default for HttpProtocolOptions {
    fn default() -> Self {
        HttpProtocolOptions {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_headers_count: DEFAULT_MAX_HEADERS_COUNT,
            max_requests_per_connection: None,
        }
    }
}

impl HttpProtocolOptions {
    /// Reads `common_http_protocol_options`.
    pub fn parse(node: &Node<'_>) -> Result<HttpProtocolOptions> {
        node.check_fields(&FIELDS, &UNSUPPORTED)?;
        let idle_timeout = match node.opt("idle_timeout", Node::duration)? {
            Some(Duration::ZERO) => None,
            Some(timeout) => Some(timeout),
            None => Some(DEFAULT_IDLE_TIMEOUT),
        };
        let max_headers_count = match node.get("max_headers_count") {
            Some(n) => {
                let count = n.u32_value()?;
                if count == 0 {
                    return Err(n.error("must be at least 1"));
                }
                count
            }
            None => DEFAULT_MAX_HEADERS_COUNT,
        };
        let max_requests_per_connection = node
            .opt("max_requests_per_connection", Node::u32_value)?
            .filter(|&n| n > 0);
        Ok(HttpProtocolOptions {
            idle_timeout,
            max_headers_count,
            max_requests_per_connection,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> Result<HttpProtocolOptions> {
        let v = parse_yaml(yaml).unwrap();
        HttpProtocolOptions::parse(&Node::with_path(&v, "o"))
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("{}").unwrap(), HttpProtocolOptions::default());
        let o = parse("{idle_timeout: 0s, max_headers_count: 10, max_requests_per_connection: 5}")
            .unwrap();
        assert_eq!(o.idle_timeout, None);
        assert_eq!(o.max_headers_count, 10);
        assert_eq!(o.max_requests_per_connection, Some(5));
        assert_eq!(
            parse("{idle_timeout: 2s}").unwrap().idle_timeout,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse("{max_requests_per_connection: 0}")
                .unwrap()
                .max_requests_per_connection,
            None
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("{max_headers_count: 0}").unwrap_err().to_string(),
            "o.max_headers_count: must be at least 1"
        );
        assert_eq!(
            parse("{max_stream_duration: 1s}").unwrap_err().to_string(),
            "o.max_stream_duration: not supported by nuncio"
        );
    }
}
