//! `envoy.filters.http.health_check` (Envoy's `HealthCheckFilter`), non-pass-through mode: a
//! request matching the configured `headers` is answered by the proxy itself, 200 while the
//! server is healthy and 503 once the admin's `POST /healthcheck/fail` set the server's
//! health-check-failed flag; other requests pass untouched.
//!
//! Built per stream by its factory (registered in `http::filter_registry`); called by the
//! stream's `FilterManager`; reads the shared flag the admin handler writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{self, Node};
use crate::http::filter::{
    FilterCallbacks, FilterHeadersStatus, LocalReply, RequestHead, ResponseFlag,
    StreamDecoderFilter,
};
use crate::http::filter_registry::{
    FilterChainBuilder, FilterFactoryCb, HttpFilterFactory, HttpFilterFactoryContext,
};

/// One `headers[]` entry: Envoy's `HeaderMatcher`, the forms a health check uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub rule: MatchRule,
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchRule {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Present(bool),
}

impl HeaderMatch {
    /// Matches against a request head; `:path`, `:authority`, `:method` name its fields.
    pub fn matches(&self, head: &RequestHead) -> bool {
        let value = match self.name.as_str() {
            ":path" => Some(head.path()),
            ":authority" | "host" => Some(head.authority()),
            ":method" => Some(head.method.as_str()),
            name => head.headers.get_str(name),
        };
        let matched = match (&self.rule, value) {
            (MatchRule::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (MatchRule::Exact(s), Some(v)) => v == s,
            (MatchRule::Prefix(s), Some(v)) => v.starts_with(s.as_str()),
            (MatchRule::Suffix(s), Some(v)) => v.ends_with(s.as_str()),
            (MatchRule::Contains(s), Some(v)) => v.contains(s.as_str()),
        };
        matched != self.invert
    }

    /// Parses a `HeaderMatcher` (`string_match`, the older `exact_match`/`prefix_match`/...,
    /// `present_match`).
    pub fn parse(node: &Node) -> config::Result<HeaderMatch> {
        node.check_fields(
            &[
                "name",
                "string_match",
                "exact_match",
                "prefix_match",
                "suffix_match",
                "contains_match",
                "present_match",
                "invert_match",
            ],
            &[
                "safe_regex_match",
                "range_match",
                "treat_missing_header_as_empty",
            ],
        )?;
        let name = node.required("name")?.non_empty_str()?.to_ascii_lowercase();
        let invert = node.opt("invert_match", Node::as_bool)?.unwrap_or(false);
        let legacy = |field: &str| node.opt(field, |n| n.as_str().map(str::to_string));
        let rule = if let Some(sm) = node.get("string_match") {
            sm.check_fields(
                &["exact", "prefix", "suffix", "contains", "ignore_case"],
                &["safe_regex"],
            )?;
            if sm.opt("ignore_case", Node::as_bool)? == Some(true) {
                return Err(sm.error_of(
                    config::ErrorKind::NotSupported,
                    "ignore_case is not supported by nuncio in health_check headers",
                ));
            }
            let get = |field: &str| sm.opt(field, |n| n.as_str().map(str::to_string));
            if let Some(s) = get("exact")? {
                MatchRule::Exact(s)
            } else if let Some(s) = get("prefix")? {
                MatchRule::Prefix(s)
            } else if let Some(s) = get("suffix")? {
                MatchRule::Suffix(s)
            } else if let Some(s) = get("contains")? {
                MatchRule::Contains(s)
            } else {
                return Err(sm.error("one of exact, prefix, suffix, contains is required"));
            }
        } else if let Some(s) = legacy("exact_match")? {
            MatchRule::Exact(s)
        } else if let Some(s) = legacy("prefix_match")? {
            MatchRule::Prefix(s)
        } else if let Some(s) = legacy("suffix_match")? {
            MatchRule::Suffix(s)
        } else if let Some(s) = legacy("contains_match")? {
            MatchRule::Contains(s)
        } else if let Some(p) = node.opt("present_match", Node::as_bool)? {
            MatchRule::Present(p)
        } else {
            // Envoy: a matcher with no rule matches when the header is present.
            MatchRule::Present(true)
        };
        Ok(HeaderMatch { name, rule, invert })
    }
}

/// The parsed filter config, shared by all workers.
#[derive(Debug)]
pub struct HealthCheckConfig {
    /// A request is a health check when every matcher matches.
    pub headers: Vec<HeaderMatch>,
    pub failed: Arc<AtomicBool>,
}

/// The filter of one stream.
pub struct HealthCheckFilter {
    config: Arc<HealthCheckConfig>,
}

impl HealthCheckFilter {
    pub fn new(config: Arc<HealthCheckConfig>) -> Self {
        HealthCheckFilter { config }
    }
}

impl StreamDecoderFilter for HealthCheckFilter {
    fn decode_headers(
        &mut self,
        headers: &mut RequestHead,
        _end_stream: bool,
        cb: &mut FilterCallbacks,
    ) -> FilterHeadersStatus {
        if !self.config.headers.iter().all(|m| m.matches(headers)) {
            return FilterHeadersStatus::Continue;
        }
        // Envoy answers at once, before the body (if any) arrives.
        if self.config.failed.load(Ordering::Relaxed) {
            cb.set_response_flag(ResponseFlag::FailedLocalHealthCheck);
            cb.send_local_reply(LocalReply::new(503, "", "health_check_failed"));
        } else {
            cb.send_local_reply(LocalReply::new(200, "", "health_check_ok"));
        }
        FilterHeadersStatus::StopIteration
    }
}

struct HealthCheckFactoryCb(Arc<HealthCheckConfig>);

impl FilterFactoryCb for HealthCheckFactoryCb {
    fn create_filters(&self, chain: &mut FilterChainBuilder) {
        chain.add_decoder_filter(Box::new(HealthCheckFilter::new(self.0.clone())));
    }
}

pub struct HealthCheckFactory;

impl HttpFilterFactory for HealthCheckFactory {
    fn name(&self) -> &'static str {
        "envoy.filters.http.health_check"
    }
    fn config_type(&self) -> &'static str {
        "envoy.extensions.filters.http.health_check.v3.HealthCheck"
    }
    fn create(
        &self,
        node: &Node,
        context: &HttpFilterFactoryContext,
    ) -> config::Result<Arc<dyn FilterFactoryCb>> {
        node.reject(
            "cache_time",
            "health check response caching only applies to pass-through mode",
        )?;
        node.reject(
            "cluster_min_healthy_percentages",
            "only applies to pass-through mode",
        )?;
        node.check_fields(&["pass_through_mode", "headers"], &[])?;
        let pass_through = node.required("pass_through_mode")?;
        if pass_through.bool_value()? {
            return Err(pass_through.error_of(
                config::ErrorKind::NotSupported,
                "pass_through_mode true is not supported by nuncio (only false)",
            ));
        }
        let headers = node.list("headers", HeaderMatch::parse)?;
        Ok(Arc::new(HealthCheckFactoryCb(Arc::new(
            HealthCheckConfig {
                headers,
                failed: context.health_check_failed.clone(),
            },
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::http::filter::StreamFilterState;
    use std::time::Instant;

    fn filter(yaml: &str, failed: bool) -> (HealthCheckFilter, Arc<AtomicBool>) {
        let doc = parse_yaml(yaml).unwrap();
        let context = HttpFilterFactoryContext::default();
        context.health_check_failed.store(failed, Ordering::Relaxed);
        let node = Node::root(&doc);
        let _ = HealthCheckFactory.create(&node, &context).unwrap();
        let config = HealthCheckConfig {
            headers: node.list("headers", HeaderMatch::parse).unwrap(),
            failed: context.health_check_failed.clone(),
        };
        (
            HealthCheckFilter::new(Arc::new(config)),
            context.health_check_failed,
        )
    }

    fn run(f: &mut HealthCheckFilter, path: &str) -> (FilterHeadersStatus, StreamFilterState) {
        let mut h = RequestHead::new(crate::http::codec::Method::Get, path, "x");
        let mut state = StreamFilterState::default();
        let status = f.decode_headers(
            &mut h,
            true,
            &mut FilterCallbacks {
                now: Instant::now(),
                connection_id: 0,
                stream_id: 0,
                state: &mut state,
            },
        );
        (status, state)
    }

    const CONFIG: &str =
        "pass_through_mode: false\nheaders:\n- name: :path\n  string_match: {exact: /healthz}\n";

    // === server healthy ===

    #[test]
    fn healthy_matching_request_gets_200_empty() {
        let (mut f, _) = filter(CONFIG, false);
        let (status, state) = run(&mut f, "/healthz");
        assert_eq!(status, FilterHeadersStatus::StopIteration);
        let reply = state.local_reply.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, ""));
    }

    #[test]
    fn other_paths_pass_through() {
        let (mut f, _) = filter(CONFIG, false);
        let (status, state) = run(&mut f, "/healthz/x");
        assert_eq!(status, FilterHeadersStatus::Continue);
        assert!(state.local_reply.is_none());
    }

    // === server failing health checks ===

    #[test]
    fn failed_flag_gives_503_and_flips_back() {
        let (mut f, flag) = filter(CONFIG, true);
        let (_, state) = run(&mut f, "/healthz");
        assert_eq!(state.local_reply.unwrap().status, 503);
        assert!(state
            .response_flags
            .has(ResponseFlag::FailedLocalHealthCheck));
        flag.store(false, Ordering::Relaxed);
        let (_, state) = run(&mut f, "/healthz");
        assert_eq!(state.local_reply.unwrap().status, 200);
    }

    // === config ===

    #[test]
    fn config_errors_name_the_field() {
        let doc = parse_yaml("pass_through_mode: true\n").unwrap();
        let err = HealthCheckFactory
            .create(&Node::root(&doc), &HttpFilterFactoryContext::default())
            .err()
            .unwrap();
        assert_eq!(err.path, "pass_through_mode");
        let doc = parse_yaml("headers: []\n").unwrap();
        let err = HealthCheckFactory
            .create(&Node::root(&doc), &HttpFilterFactoryContext::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "pass_through_mode: required field is missing"
        );
    }

    #[test]
    fn legacy_and_invert_matchers() {
        let doc = parse_yaml("- name: x-hc\n  exact_match: yes\n  invert_match: true\n").unwrap();
        let m = HeaderMatch::parse(&Node::root(&doc).as_list().unwrap()[0]).unwrap();
        let mut h = RequestHead::new(crate::http::codec::Method::Get, "/", "x");
        assert!(m.matches(&h));
        h.headers.insert("x-hc", "yes");
        assert!(!m.matches(&h));
    }
}
