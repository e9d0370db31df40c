//! `RetryPolicy`: a route's (or virtual host's) `retry_policy`, as configured.
//!
//! Read at config load; the per-request decisions live in [`RetryState`](super::RetryState),
//! which starts from this policy and the request's `x-envoy-*` retry headers.
//!
//! `retry_on` is a comma-separated list (whitespace around items ignored). As in Envoy, an
//! unknown item is ignored (logged here at warn level): Envoy 1.40 accepts
//! `retry_on: "5xx,bogus"`.
//!
//! Extensions, chosen by their `typed_config`'s type URL as Envoy does (the `name` is not
//! looked at; without a `typed_config` Envoy 1.40 finds no implementation either):
//! - `retry_host_predicate`: `envoy.retry_host_predicates.previous_hosts` (a retry re-picks a
//!   host already attempted, up to `host_selection_retry_max_attempts` times, default 1);
//! - `retry_priority`: `envoy.retry_priorities.previous_priorities`, accepted and without
//!   effect: nuncio has one priority level, and Envoy's predicate then always falls back to the
//!   original priority load (every level excluded resets the exclusion).
//!
//! `rate_limited_retry_back_off` (Envoy's `RateLimitedRetryBackOff`): when a response is
//! retried with back-off and carries one of `reset_headers`, the retry waits for the interval
//! that header gives instead of the exponential back-off. Formats as Envoy 1.40 reads them:
//! `SECONDS` is a whole number of seconds (so `Retry-After: <HTTP date>` is not understood and
//! falls back to the exponential back-off, as in Envoy); `UNIX_TIMESTAMP` is the reset time in
//! whole Unix seconds (a time already past is ignored). The first header whose interval is at
//! most `max_interval` (default 300 s) wins; see [`ResetHeader::interval`].

use std::time::Duration;

use super::header_matcher::HeaderMatcher;
use crate::config::{ErrorKind, Node, Result};

/// How a rate-limit reset header states its time (Envoy's `ResetHeaderFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetHeaderFormat {
    /// `SECONDS` (the default): the interval in whole seconds, e.g. `Retry-After: 2`.
    Seconds,
    /// `UNIX_TIMESTAMP`: the reset time in whole seconds since the epoch.
    UnixTimestamp,
}

/// One of `rate_limited_retry_back_off.reset_headers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetHeader {
    /// The response header's name, lower-cased.
    pub name: String,
    /// How its value reads.
    pub format: ResetHeaderFormat,
}

impl ResetHeader {
    /// The interval this header asks for on `response` (Envoy's
    /// `ResetHeaderParserImpl::parseInterval`): `None` when absent, not a whole number
    /// (whitespace around it is allowed), or a Unix time already past. `now` is the wall clock,
    /// asked only for `UNIX_TIMESTAMP`.
    pub fn interval<H, C>(&self, response: &H, now: C) -> Option<Duration>
    where
        H: super::header_map::HeaderMapAccess + ?Sized,
        C: FnOnce() -> std::time::SystemTime,
    {
        let seconds: u64 = response.get(&self.name)?.trim().parse().ok()?;
        match self.format {
            ResetHeaderFormat::Seconds => Some(Duration::from_secs(seconds)),
            ResetHeaderFormat::UnixTimestamp => {
                let now = now().duration_since(std::time::UNIX_EPOCH).ok()?;
                if seconds < now.as_secs() {
                    return None;
                }
                // The current second may be partly gone: Envoy subtracts the exact time
                // (and so may get less than a millisecond, which the caller ignores).
                Some(Duration::from_secs(seconds).saturating_sub(now))
            }
        }
    }
}

/// `rate_limited_retry_back_off.max_interval`'s default (Envoy's 300 s).
pub const DEFAULT_RATE_LIMITED_MAX_INTERVAL: Duration = Duration::from_secs(300);

/// A set of retry conditions (Envoy's `RetryPolicy::RETRY_ON_*` bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: any 5xx response, and any reset / connect failure.
    pub const FIVE_XX: RetryOn = RetryOn(1 << 0);
    /// `gateway-error`: 502, 503, 504, and any reset / connect failure.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// `connect-failure`: the upstream connection could not be made (or timed out).
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 2);
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 3);
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM reset.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 4);
    /// `retriable-status-codes`: a status in `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 5);
    /// `reset`: any reset (no response headers).
    pub const RESET: RetryOn = RetryOn(1 << 6);
    /// `reset-before-request`: a reset before the request was fully sent upstream.
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 7);
    /// `envoy-ratelimited`: a response carrying `x-envoy-ratelimited`.
    pub const ENVOY_RATE_LIMITED: RetryOn = RetryOn(1 << 8);
    /// `retriable-headers`: a response matching `retriable_headers`.
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 9);
    /// `http3-post-connect-failure`: HTTP/3 only; accepted, never fires here.
    pub const HTTP3_POST_CONNECT_FAILURE: RetryOn = RetryOn(1 << 10);
    /// gRPC `cancelled` (grpc-status 1).
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 16);
    /// gRPC `deadline-exceeded` (4).
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 17);
    /// gRPC `resource-exhausted` (8).
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 18);
    /// gRPC `unavailable` (14).
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 19);
    /// gRPC `internal` (13).
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 20);

    /// The names Envoy accepts in `retry_on` and `x-envoy-retry-on`.
    const NAMES: &'static [(&'static str, RetryOn)] = &[
        ("5xx", RetryOn::FIVE_XX),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("retriable-4xx", RetryOn::RETRIABLE_4XX),
        ("refused-stream", RetryOn::REFUSED_STREAM),
        ("retriable-status-codes", RetryOn::RETRIABLE_STATUS_CODES),
        ("reset", RetryOn::RESET),
        ("reset-before-request", RetryOn::RESET_BEFORE_REQUEST),
        ("envoy-ratelimited", RetryOn::ENVOY_RATE_LIMITED),
        ("retriable-headers", RetryOn::RETRIABLE_HEADERS),
        (
            "http3-post-connect-failure",
            RetryOn::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("cancelled", RetryOn::GRPC_CANCELLED),
        ("deadline-exceeded", RetryOn::GRPC_DEADLINE_EXCEEDED),
        ("resource-exhausted", RetryOn::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", RetryOn::GRPC_UNAVAILABLE),
        ("internal", RetryOn::GRPC_INTERNAL),
    ];

    /// The gRPC conditions (the `x-envoy-retry-grpc-on` set).
    pub const ANY_GRPC: RetryOn = RetryOn(0x1f << 16);

    /// Parses a comma-separated list; also returns the items it did not know.
    pub fn parse(list: &str) -> (RetryOn, Vec<&str>) {
        let mut on = RetryOn::default();
        let mut unknown = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match RetryOn::NAMES.iter().find(|(name, _)| *name == item) {
                Some((_, bit)) => on = on | *bit,
                None => unknown.push(item),
            }
        }
        (on, unknown)
    }

    /// Whether any condition of `other` is in this set.
    pub fn any(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty (no retries).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

/// A `retry_host_predicate` (Envoy's `RetryHostPredicate` extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryHostPredicate {
    /// `envoy.retry_host_predicates.previous_hosts`: reject the hosts already attempted.
    PreviousHosts,
}

/// Type URL of `envoy.retry_host_predicates.previous_hosts`.
const PREVIOUS_HOSTS_TYPE: &str =
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
/// Type URL of `envoy.retry_priorities.previous_priorities`.
const PREVIOUS_PRIORITIES_TYPE: &str =
    "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig";
/// Envoy's other host predicates: known, not implemented.
const UNSUPPORTED_HOST_PREDICATES: &[&str] = &[
    "envoy.extensions.retry.host.omit_canary_hosts.v3.OmitCanaryHostsPredicate",
    "envoy.extensions.retry.host.omit_host_metadata.v3.OmitHostMetadataConfig",
];

/// The type URL of an extension entry's `typed_config` (Envoy's `getAndCheckFactory`): the
/// implementation is chosen by it; an entry without one names none.
fn extension_type<'a>(entry: &Node<'a>) -> Result<(&'a str, Node<'a>)> {
    entry.check_fields(&["name", "typed_config"], &[])?;
    let name = entry.required("name")?.non_empty_str()?;
    let Some(typed) = entry.get("typed_config") else {
        return Err(entry.error(format!(
            "Didn't find a registered implementation for '{name}' with type URL: ''"
        )));
    };
    let (url, message) = typed.any()?;
    Ok((crate::config::type_name(url), message))
}

impl RetryHostPredicate {
    fn parse(entry: &Node) -> Result<RetryHostPredicate> {
        let (type_name, message) = extension_type(entry)?;
        if type_name == PREVIOUS_HOSTS_TYPE {
            message.check_fields(&[], &[])?;
            return Ok(RetryHostPredicate::PreviousHosts);
        }
        let why = if UNSUPPORTED_HOST_PREDICATES.contains(&type_name) {
            format!("{type_name}: not supported by nuncio")
        } else {
            format!("Didn't find a registered implementation for type URL '{type_name}'")
        };
        Err(entry.required("typed_config")?.error(why))
    }
}

/// Reads a `retry_priority`: only `previous_priorities` exists (see the module docs).
fn parse_retry_priority(node: &Node) -> Result<()> {
    let (type_name, message) = extension_type(node)?;
    if type_name != PREVIOUS_PRIORITIES_TYPE {
        return Err(node.required("typed_config")?.error(format!(
            "Didn't find a registered implementation for type URL '{type_name}'"
        )));
    }
    message.check_fields(&["update_frequency"], &[])?;
    if let Some(n) = message.get("update_frequency") {
        if n.as_i64()? <= 0 {
            return Err(n.error("must be greater than 0"));
        }
    }
    Ok(())
}

/// Reads a `retry_options_predicates` entry: always an error, as in Envoy 1.40, which
/// registers no `envoy.retry_options_predicates` extension at all (its list of statically
/// linked extensions has no such category), so any entry fails there too. An empty list is
/// accepted, as Envoy accepts it.
fn parse_retry_options_predicate(entry: &Node) -> Result<()> {
    let (type_name, _) = extension_type(entry)?;
    Err(entry.required("typed_config")?.error(format!(
        "Didn't find a registered implementation for type URL '{type_name}': Envoy 1.40 ships \
         no retry options predicate (envoy.retry_options_predicates) extension, and neither \
         does nuncio"
    )))
}

/// Envoy's default retry back-off base interval (`upstream.base_retry_backoff_ms`).
pub const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

/// A configured retry policy. `Default` is what a route without one gets: no conditions, one
/// retry (used when the request asks for retries with `x-envoy-retry-on`).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// When to retry.
    pub retry_on: RetryOn,
    /// How many retries (not attempts); `x-envoy-max-retries` overrides it.
    pub num_retries: u32,
    /// A timeout for each attempt (`None`: only the route's global timeout).
    pub per_try_timeout: Option<Duration>,
    /// `per_try_idle_timeout`: an attempt that receives no response byte for this long is
    /// timed out (`None`: off). Unlike `per_try_timeout` it applies during the body too.
    pub per_try_idle_timeout: Option<Duration>,
    /// Statuses retried under `retriable-status-codes`.
    pub retriable_status_codes: Vec<u32>,
    /// Back-off base (default 25 ms).
    pub base_interval: Duration,
    /// Back-off cap (default 10 × base).
    pub max_interval: Duration,
    /// Response header conditions for `retriable-headers`.
    pub retriable_headers: Vec<HeaderMatcher>,
    /// When non-empty, retries happen only for requests matching one of these.
    pub retriable_request_headers: Vec<HeaderMatcher>,
    /// `retry_host_predicate`: a retry re-picks a host any of these rejects.
    pub host_predicates: Vec<RetryHostPredicate>,
    /// `host_selection_retry_max_attempts`: how many times a retry may re-pick (default 1).
    pub host_selection_max_attempts: u32,
    /// `rate_limited_retry_back_off.reset_headers` (empty: not configured).
    pub reset_headers: Vec<ResetHeader>,
    /// `rate_limited_retry_back_off.max_interval`: a longer reset interval is not used.
    pub reset_max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_on: RetryOn::default(),
            num_retries: 1,
            per_try_timeout: None,
            per_try_idle_timeout: None,
            retriable_status_codes: Vec::new(),
            base_interval: DEFAULT_BASE_INTERVAL,
            max_interval: DEFAULT_BASE_INTERVAL * 10,
            retriable_headers: Vec::new(),
            retriable_request_headers: Vec::new(),
            host_predicates: Vec::new(),
            host_selection_max_attempts: 1,
            reset_headers: Vec::new(),
            reset_max_interval: DEFAULT_RATE_LIMITED_MAX_INTERVAL,
        }
    }
}

impl RetryPolicy {
    /// Reads a `RetryPolicy` message.
    pub fn parse(node: &Node) -> Result<RetryPolicy> {
        node.check_fields(
            &[
                "retry_on",
                "num_retries",
                "per_try_timeout",
                "per_try_idle_timeout",
                "retriable_status_codes",
                "retry_back_off",
                "retriable_headers",
                "retriable_request_headers",
                "retry_host_predicate",
                "host_selection_retry_max_attempts",
                "retry_priority",
                "rate_limited_retry_back_off",
                "retry_options_predicates",
            ],
            &[],
        )?;
        let mut policy = RetryPolicy::default();
        if let Some(n) = node.get("retry_on") {
            let (on, unknown) = RetryOn::parse(n.as_str()?);
            for item in unknown {
                log::warn!(
                    "{}: unknown retry_on value '{item}' ignored (as Envoy does)",
                    n.path()
                );
            }
            policy.retry_on = on;
        }
        if let Some(n) = node.opt("num_retries", Node::u32_value)? {
            policy.num_retries = n;
        }
        policy.per_try_timeout = node
            .opt("per_try_timeout", Node::duration)?
            .filter(|d| !d.is_zero());
        policy.per_try_idle_timeout = node
            .opt("per_try_idle_timeout", Node::duration)?
            .filter(|d| !d.is_zero());
        policy.retriable_status_codes = node.list("retriable_status_codes", Node::as_u32)?;
        if let Some(backoff) = node.get("retry_back_off") {
            backoff.check_fields(&["base_interval", "max_interval"], &[])?;
            let base_node = backoff.required("base_interval")?;
            let base = base_node.duration()?;
            if base < Duration::from_millis(1) {
                return Err(base_node.error("must be at least 1ms"));
            }
            policy.base_interval = base;
            policy.max_interval = base * 10;
            if let Some(max_node) = backoff.get("max_interval") {
                let max = max_node.duration()?;
                if max < base {
                    return Err(max_node.error_of(
                        ErrorKind::Invalid,
                        "max_interval must be greater than or equal to the base_interval",
                    ));
                }
                policy.max_interval = max;
            }
        }
        policy.retriable_headers = node.list("retriable_headers", HeaderMatcher::parse)?;
        policy.retriable_request_headers =
            node.list("retriable_request_headers", HeaderMatcher::parse)?;
        policy.host_predicates = node.list("retry_host_predicate", RetryHostPredicate::parse)?;
        if let Some(n) = node.get("host_selection_retry_max_attempts") {
            policy.host_selection_max_attempts = n.as_u32()?;
        }
        node.opt("retry_priority", parse_retry_priority)?;
        node.list("retry_options_predicates", parse_retry_options_predicate)?;
        if let Some(n) = node.get("rate_limited_retry_back_off") {
            n.check_fields(&["reset_headers", "max_interval"], &[])?;
            let headers = n.required("reset_headers")?;
            policy.reset_headers = n.list("reset_headers", parse_reset_header)?;
            if policy.reset_headers.is_empty() {
                return Err(headers.error("must have at least one entry"));
            }
            if let Some(max) = n.get("max_interval") {
                let interval = max.duration()?;
                if interval.is_zero() {
                    return Err(max.error("must be greater than 0s"));
                }
                policy.reset_max_interval = interval;
            }
        }
        Ok(policy)
    }
}

/// One `reset_headers` entry: `name` (non-empty) and `format` (default `SECONDS`).
fn parse_reset_header(node: &Node) -> Result<ResetHeader> {
    node.check_fields(&["name", "format"], &[])?;
    let name_node = node.required("name")?;
    let name = name_node.as_str()?;
    if name.is_empty() {
        return Err(name_node.error("must not be empty"));
    }
    let format = match node
        .opt("format", |f| {
            f.enum_str(&["SECONDS", "UNIX_TIMESTAMP"], &[])
        })?
        .unwrap_or("SECONDS")
    {
        "UNIX_TIMESTAMP" => ResetHeaderFormat::UnixTimestamp,
        _ => ResetHeaderFormat::Seconds,
    };
    Ok(ResetHeader {
        name: name.to_ascii_lowercase(),
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn policy(yaml: &str) -> Result<RetryPolicy> {
        let doc = parse_yaml(yaml).unwrap();
        RetryPolicy::parse(&Node::root(&doc))
    }

    #[test]
    fn retry_on_list_parsing() {
        let (on, unknown) = RetryOn::parse(" 5xx , connect-failure,,bogus");
        assert_eq!(on, RetryOn::FIVE_XX | RetryOn::CONNECT_FAILURE);
        assert_eq!(unknown, vec!["bogus"]);
        let (on, _) = RetryOn::parse("unavailable,cancelled");
        assert!(on.any(RetryOn::ANY_GRPC));
        assert!(!on.any(RetryOn::FIVE_XX));
    }

    #[test]
    fn defaults() {
        let p = policy("retry_on: 5xx").unwrap();
        assert_eq!(p.num_retries, 1);
        assert_eq!(p.base_interval, Duration::from_millis(25));
        assert_eq!(p.max_interval, Duration::from_millis(250));
        assert_eq!(p.per_try_timeout, None);
        assert_eq!(p.per_try_idle_timeout, None);
    }

    #[test]
    fn full_policy() {
        let p = policy(
            r#"
retry_on: "retriable-status-codes,reset"
num_retries: 3
per_try_timeout: 0.5s
per_try_idle_timeout: 0.2s
retriable_status_codes: [418, 503]
retry_back_off: {base_interval: 0.1s}
"#,
        )
        .unwrap();
        assert_eq!(p.num_retries, 3);
        assert_eq!(p.per_try_timeout, Some(Duration::from_millis(500)));
        assert_eq!(p.per_try_idle_timeout, Some(Duration::from_millis(200)));
        assert_eq!(p.retriable_status_codes, vec![418, 503]);
        assert_eq!(p.base_interval, Duration::from_millis(100));
        assert_eq!(p.max_interval, Duration::from_secs(1));
    }

    #[test]
    fn errors() {
        assert_eq!(
            policy("retry_back_off: {base_interval: 1s, max_interval: 0.5s}")
                .unwrap_err()
                .to_string(),
            "retry_back_off.max_interval: max_interval must be greater than or equal to the base_interval"
        );
        assert_eq!(
            policy("retry_back_off: {max_interval: 0.5s}")
                .unwrap_err()
                .to_string(),
            "retry_back_off.base_interval: required field is missing"
        );
        assert_eq!(
            policy("retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}]")
                .unwrap_err()
                .to_string(),
            "retry_host_predicate[0]: Didn't find a registered implementation for 'envoy.retry_host_predicates.previous_hosts' with type URL: ''"
        );
        assert_eq!(
            policy(&format!("retry_host_predicate: [{{name: x, typed_config: {{\"@type\": type.googleapis.com/{}}}}}]", UNSUPPORTED_HOST_PREDICATES[0]))
                .unwrap_err()
                .to_string(),
            "retry_host_predicate[0].typed_config: envoy.extensions.retry.host.omit_canary_hosts.v3.OmitCanaryHostsPredicate: not supported by nuncio"
        );
        assert_eq!(
            policy(&format!("retry_priority: {{name: p, typed_config: {{\"@type\": type.googleapis.com/{PREVIOUS_PRIORITIES_TYPE}, update_frequency: 0}}}}"))
                .unwrap_err()
                .to_string(),
            "retry_priority.typed_config.update_frequency: must be greater than 0"
        );
    }

    #[test]
    fn host_predicates_and_priority() {
        let p = policy(&format!(
            r#"
retry_on: 5xx
retry_host_predicate:
- name: envoy.retry_host_predicates.previous_hosts
  typed_config: {{"@type": type.googleapis.com/{PREVIOUS_HOSTS_TYPE}}}
host_selection_retry_max_attempts: 5
retry_priority:
  name: envoy.retry_priorities.previous_priorities
  typed_config: {{"@type": type.googleapis.com/{PREVIOUS_PRIORITIES_TYPE}, update_frequency: 2}}
"#
        ))
        .unwrap();
        assert_eq!(p.host_predicates, [RetryHostPredicate::PreviousHosts]);
        assert_eq!(p.host_selection_max_attempts, 5);
        assert_eq!(
            policy("retry_on: 5xx").unwrap().host_selection_max_attempts,
            1
        );
    }

    #[test]
    fn rate_limited_retry_back_off() {
        let p = policy(
            "{retry_on: 5xx, rate_limited_retry_back_off: {reset_headers: [{name: Retry-After}, {name: x-rl, format: UNIX_TIMESTAMP}]}}",
        )
        .unwrap();
        assert_eq!(
            p.reset_headers,
            vec![
                ResetHeader {
                    name: "retry-after".into(),
                    format: ResetHeaderFormat::Seconds
                },
                ResetHeader {
                    name: "x-rl".into(),
                    format: ResetHeaderFormat::UnixTimestamp
                },
            ]
        );
        assert_eq!(p.reset_max_interval, Duration::from_secs(300));
        for (yaml, err) in [
            ("{}", "reset_headers"),
            (
                "{reset_headers: []}",
                "reset_headers: must have at least one entry",
            ),
            ("{reset_headers: [{name: ''}]}", "name: must not be empty"),
            ("{reset_headers: [{name: a, format: HTTP_DATE}]}", "format"),
            (
                "{reset_headers: [{name: a}], max_interval: 0s}",
                "max_interval: must be greater than 0s",
            ),
        ] {
            let e = policy(&format!(
                "{{retry_on: 5xx, rate_limited_retry_back_off: {yaml}}}"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("rate_limited_retry_back_off") && e.contains(err),
                "{yaml}: {e}"
            );
        }
    }

    #[test]
    fn retry_options_predicates_exist_in_no_build() {
        assert!(policy("{retry_on: 5xx, retry_options_predicates: []}").is_ok());
        let e = policy("{retry_on: 5xx, retry_options_predicates: [{name: x, typed_config: {'@type': type.googleapis.com/google.protobuf.Struct}}]}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retry_options_predicates[0].typed_config: Didn't find a registered implementation for type URL 'google.protobuf.Struct': Envoy 1.40 ships no retry options predicate"),
            "{e}"
        );
    }
}
