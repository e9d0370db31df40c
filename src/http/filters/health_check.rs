//! `envoy.filters.http.health_check` (Envoy's `HealthCheckFilter`), non-pass-through mode: a
//! request matching the configured `headers` is answered by the proxy itself, 200 while the
//! server is healthy and 503 once the admin's `POST /healthcheck/fail` set the server's
//! health-check-failed flag; other requests pass untouched.
//!
//! Headers, as Envoy 1.40 sends them (checked against the real binary):
//! - the health check answer carries `x-envoy-upstream-healthchecked-cluster: <node.cluster>`
//!   (empty without a `node.cluster`), and while failing `x-envoy-immediate-health-check-fail:
//!   true`, so a downstream Envoy marks this host failed at once, without waiting for its
//!   active health checker's thresholds;
//! - while failing, every other response through the filter also carries
//!   `x-envoy-immediate-health-check-fail: true` (the encoder half, [`HealthCheckFailEncoder`]).
//!   It is added to streams created while the server is failing (a stream begun before
//!   `POST /healthcheck/fail` and answered after it goes without; Envoy checks when the
//!   response headers pass): the healthy path builds no encoder filter, so costs nothing.
//!
//! The other half of Envoy's feature, the router marking an upstream host whose response
//! carries `x-envoy-immediate-health-check-fail` as failing its active health check, needs
//! active health checking, which nuncio does not have: such a response is relayed unchanged.
//! (The failing server's responses also say `connection: close`: the drain manager drain-closes
//! while health checks fail, see `conn_manager_filter`.)
//!
//! Built per stream by its factory (registered in `http::filter_registry`); called by the
//! stream's `FilterManager`; reads the shared flag the admin handler writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{self, Node};
use crate::http::filter::{
    FilterCallbacks, FilterHeadersStatus, LocalReply, RequestHead, ResponseFlag, ResponseHead,
    StreamDecoderFilter, StreamEncoderFilter,
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
    /// `x-envoy-upstream-healthchecked-cluster` (the bootstrap's `node.cluster`).
    pub local_cluster: String,
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
        let reply = if self.config.failed.load(Ordering::Relaxed) {
            cb.set_response_flag(ResponseFlag::FailedLocalHealthCheck);
            LocalReply::new(503, "", "health_check_failed")
                .with_header(IMMEDIATE_HEALTH_CHECK_FAIL, "true")
        } else {
            LocalReply::new(200, "", "health_check_ok")
        };
        cb.send_local_reply(reply.with_header(
            "x-envoy-upstream-healthchecked-cluster",
            self.config.local_cluster.clone(),
        ));
        FilterHeadersStatus::StopIteration
    }
}

/// Envoy's `x-envoy-immediate-health-check-fail` header.
pub const IMMEDIATE_HEALTH_CHECK_FAIL: &str = "x-envoy-immediate-health-check-fail";

/// The encoder half of Envoy's `HealthCheckFilter::encodeHeaders`: while the server fails
/// health checks, a response that is not the health check answer says so.
pub struct HealthCheckFailEncoder {
    config: Arc<HealthCheckConfig>,
}

impl StreamEncoderFilter for HealthCheckFailEncoder {
    fn encode_headers(
        &mut self,
        headers: &mut ResponseHead,
        _end_stream: bool,
        cb: &mut FilterCallbacks,
    ) -> FilterHeadersStatus {
        let health_check_answer = cb.state.response_code_details.starts_with("health_check");
        if !health_check_answer && self.config.failed.load(Ordering::Relaxed) {
            headers.headers.insert(IMMEDIATE_HEALTH_CHECK_FAIL, "true");
        }
        FilterHeadersStatus::Continue
    }
}

struct HealthCheckFactoryCb(Arc<HealthCheckConfig>);

impl FilterFactoryCb for HealthCheckFactoryCb {
    fn create_filters(&self, chain: &mut FilterChainBuilder) {
        chain.add_decoder_filter(Box::new(HealthCheckFilter::new(self.0.clone())));
        if self.0.failed.load(Ordering::Relaxed) {
            chain.add_encoder_filter(Box::new(HealthCheckFailEncoder {
                config: self.0.clone(),
            }));
        }
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
                local_cluster: context.local_cluster.clone(),
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
            local_cluster: "front".to_string(),
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
        let reply = state.local_reply.clone().unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.headers,
            [
                (IMMEDIATE_HEALTH_CHECK_FAIL, "true".to_string()),
                (
                    "x-envoy-upstream-healthchecked-cluster",
                    "front".to_string()
                )
            ]
        );
        assert!(state
            .response_flags
            .has(ResponseFlag::FailedLocalHealthCheck));
        flag.store(false, Ordering::Relaxed);
        let (_, state) = run(&mut f, "/healthz");
        let reply = state.local_reply.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.headers,
            [(
                "x-envoy-upstream-healthchecked-cluster",
                "front".to_string()
            )]
        );
    }

    #[test]
    fn failing_server_marks_other_responses_immediate_fail() {
        let (f, flag) = filter(CONFIG, true);
        let mut encoder = HealthCheckFailEncoder { config: f.config };
        let mut state = StreamFilterState::default();
        let mut head = ResponseHead::new(200);
        let mut cb = FilterCallbacks {
            now: Instant::now(),
            connection_id: 0,
            stream_id: 0,
            state: &mut state,
        };
        encoder.encode_headers(&mut head, true, &mut cb);
        assert_eq!(
            head.headers.get_str(IMMEDIATE_HEALTH_CHECK_FAIL),
            Some("true")
        );
        // Healthy again by the time the response passes: no header.
        flag.store(false, Ordering::Relaxed);
        let mut head = ResponseHead::new(200);
        encoder.encode_headers(&mut head, true, &mut cb);
        assert_eq!(head.headers.get_str(IMMEDIATE_HEALTH_CHECK_FAIL), None);
    }

    #[test]
    fn the_encoder_half_exists_only_while_failing() {
        let (f, flag) = filter(CONFIG, false);
        let factory = HealthCheckFactoryCb(f.config);
        let mut chain = FilterChainBuilder::default();
        factory.create_filters(&mut chain);
        assert_eq!((chain.decoders.len(), chain.encoders.len()), (1, 0));
        flag.store(true, Ordering::Relaxed);
        let mut chain = FilterChainBuilder::default();
        factory.create_filters(&mut chain);
        assert_eq!((chain.decoders.len(), chain.encoders.len()), (1, 1));
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
