//! Access-log filters (Envoy's `AccessLog::Filter`, config `envoy.config.accesslog.v3.AccessLogFilter`):
//! decide per request whether a line is written.
//!
//! Supported: `status_code_filter`, `duration_filter`, `not_health_check_filter`,
//! `response_flag_filter`, `and_filter`, `or_filter`. Comparisons take `default_value`
//! (`runtime_key` is accepted: nuncio has no runtime layer, so the default is what counts).
//! Parsed from config with paths in every error; evaluated by `AccessLog::log`.

use crate::config::{ErrorKind, Node, Result};

use super::response_flags::{ResponseFlag, ResponseFlags};
use super::stream_info::StreamInfo;

/// A comparison operator (`ComparisonFilter.Op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComparisonOp {
    /// `EQ` (the default).
    Eq,
    /// `GE`.
    Ge,
    /// `LE`.
    Le,
    /// `NE`.
    Ne,
}

/// `ComparisonFilter`: `op` against a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// The operator.
    pub op: ComparisonOp,
    /// The right-hand side (`value.default_value`).
    pub value: u64,
}

impl Comparison {
    /// Whether `actual op value` holds.
    pub fn matches(&self, actual: u64) -> bool {
        match self.op {
            ComparisonOp::Eq => actual == self.value,
            ComparisonOp::Ge => actual >= self.value,
            ComparisonOp::Le => actual <= self.value,
            ComparisonOp::Ne => actual != self.value,
        }
    }

    fn parse(node: &Node<'_>) -> Result<Comparison> {
        node.check_fields(&["comparison"], &[])?;
        let cmp = node.required("comparison")?;
        cmp.check_fields(&["op", "value"], &[])?;
        let op = match cmp.opt("op", |n| n.enum_str(&["EQ", "GE", "LE", "NE"], &[]))? {
            None | Some("EQ") => ComparisonOp::Eq,
            Some("GE") => ComparisonOp::Ge,
            Some("LE") => ComparisonOp::Le,
            Some(_) => ComparisonOp::Ne,
        };
        let value = cmp.required("value")?;
        value.check_fields(&["default_value", "runtime_key"], &[])?;
        let value = value.required("default_value")?.as_u32()? as u64;
        Ok(Comparison { op, value })
    }
}

/// One access-log filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogFilter {
    /// `status_code_filter`: the response code (0 when there was none) compared.
    StatusCode(Comparison),
    /// `duration_filter`: `%DURATION%` in milliseconds (0 when unknown) compared.
    Duration(Comparison),
    /// `not_health_check_filter`: only requests the health_check filter did not answer.
    NotHealthCheck,
    /// `response_flag_filter`: any of these flags set; with no flags, any flag at all.
    ResponseFlag(ResponseFlags),
    /// `and_filter`: every sub-filter passes.
    And(Vec<AccessLogFilter>),
    /// `or_filter`: some sub-filter passes.
    Or(Vec<AccessLogFilter>),
}

const SUPPORTED: &[&str] = &[
    "status_code_filter",
    "duration_filter",
    "not_health_check_filter",
    "response_flag_filter",
    "and_filter",
    "or_filter",
];
const UNSUPPORTED: &[&str] = &[
    "traceable_filter",
    "runtime_filter",
    "header_filter",
    "grpc_status_filter",
    "extension_filter",
    "metadata_filter",
    "log_type_filter",
];

impl AccessLogFilter {
    /// Parses an `AccessLogFilter` message (exactly one of its filter fields).
    pub fn parse(node: &Node<'_>) -> Result<AccessLogFilter> {
        node.check_fields(SUPPORTED, UNSUPPORTED)?;
        let entries = node.entries()?;
        let mut set = entries.iter().filter(|(k, _)| *k != "@type");
        let Some((key, inner)) = set.next() else {
            return Err(node.error_of(
                ErrorKind::Missing,
                format!("one of {} is required", SUPPORTED.join(", ")),
            ));
        };
        if let Some((other, _)) = set.next() {
            return Err(node.error(format!(
                "only one filter may be set, found '{key}' and '{other}'"
            )));
        }
        match *key {
            "status_code_filter" | "statusCodeFilter" => {
                Ok(AccessLogFilter::StatusCode(Comparison::parse(inner)?))
            }
            "duration_filter" | "durationFilter" => {
                Ok(AccessLogFilter::Duration(Comparison::parse(inner)?))
            }
            "not_health_check_filter" | "notHealthCheckFilter" => {
                inner.check_fields(&[], &[])?;
                Ok(AccessLogFilter::NotHealthCheck)
            }
            "response_flag_filter" | "responseFlagFilter" => {
                inner.check_fields(&["flags"], &[])?;
                let mut flags = ResponseFlags::NONE;
                for flag in inner.list("flags", |n| Ok(n.clone()))? {
                    let code = flag.as_str()?;
                    match ResponseFlag::from_code(code) {
                        Some(f) => flags.set(f),
                        None => {
                            let known: Vec<&str> =
                                ResponseFlag::ALL.iter().map(|(_, c)| *c).collect();
                            return Err(flag.error(format!(
                                "unknown response flag '{code}' (known: {})",
                                known.join(", ")
                            )));
                        }
                    }
                }
                Ok(AccessLogFilter::ResponseFlag(flags))
            }
            _ => {
                // and_filter / or_filter: `filters`, at least two.
                inner.check_fields(&["filters"], &[])?;
                let filters = inner.list("filters", AccessLogFilter::parse)?;
                if filters.len() < 2 {
                    return Err(inner.error("'filters' needs at least 2 filters"));
                }
                Ok(if key.starts_with("and") {
                    AccessLogFilter::And(filters)
                } else {
                    AccessLogFilter::Or(filters)
                })
            }
        }
    }

    /// Whether a line should be written for `info`.
    pub fn evaluate(&self, info: &StreamInfo<'_>) -> bool {
        match self {
            AccessLogFilter::StatusCode(c) => c.matches(u64::from(info.response_code.unwrap_or(0))),
            AccessLogFilter::Duration(c) => {
                c.matches(info.duration.map_or(0, |d| d.as_millis() as u64))
            }
            AccessLogFilter::NotHealthCheck => !info.health_check,
            AccessLogFilter::ResponseFlag(flags) => {
                if flags.is_empty() {
                    !info.response_flags.is_empty()
                } else {
                    info.response_flags.intersects(*flags)
                }
            }
            AccessLogFilter::And(all) => all.iter().all(|f| f.evaluate(info)),
            AccessLogFilter::Or(any) => any.iter().any(|f| f.evaluate(info)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use std::time::Duration;

    fn parse(yaml: &str) -> Result<AccessLogFilter> {
        let doc = parse_yaml(yaml).expect("yaml");
        AccessLogFilter::parse(&Node::with_path(&doc, "filter"))
    }

    fn info(code: u16, ms: u64) -> StreamInfo<'static> {
        StreamInfo {
            response_code: Some(code),
            duration: Some(Duration::from_millis(ms)),
            ..StreamInfo::default()
        }
    }

    #[test]
    fn status_code_and_duration() {
        let f = parse("status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: k}}}").unwrap();
        assert!(f.evaluate(&info(503, 0)));
        assert!(!f.evaluate(&info(200, 0)));
        let f = parse("duration_filter: {comparison: {value: {default_value: 5}}}").unwrap();
        assert!(f.evaluate(&info(200, 5)));
        assert!(!f.evaluate(&info(200, 6)));
        let f =
            parse("status_code_filter: {comparison: {op: NE, value: {default_value: 0}}}").unwrap();
        assert!(
            !f.evaluate(&StreamInfo::default()),
            "no response code counts as 0"
        );
    }

    #[test]
    fn health_check_flags_and_combinations() {
        assert!(!parse("not_health_check_filter: {}")
            .unwrap()
            .evaluate(&StreamInfo {
                health_check: true,
                ..StreamInfo::default()
            }));
        let any = parse("response_flag_filter: {}").unwrap();
        let uh = parse("response_flag_filter: {flags: [UH, UF]}").unwrap();
        let mut i = info(503, 1);
        assert!(!any.evaluate(&i));
        i.response_flags.set(ResponseFlag::UpstreamRequestTimeout);
        assert!(any.evaluate(&i));
        assert!(!uh.evaluate(&i));
        i.response_flags
            .set(ResponseFlag::UpstreamConnectionFailure);
        assert!(uh.evaluate(&i));
        let and = parse(
            "and_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: {default_value: 500}}}}, {not_health_check_filter: {}}]}",
        )
        .unwrap();
        assert!(and.evaluate(&info(500, 0)));
        assert!(!and.evaluate(&info(499, 0)));
        let or = parse("or_filter: {filters: [{duration_filter: {comparison: {op: GE, value: {default_value: 1000}}}}, {response_flag_filter: {}}]}").unwrap();
        assert!(or.evaluate(&info(200, 1500)));
        assert!(!or.evaluate(&info(200, 10)));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            parse("response_flag_filter: {flags: [UH, XX]}")
                .unwrap_err()
                .to_string()
                .split(" (known")
                .next()
                .unwrap(),
            "filter.response_flag_filter.flags[1]: unknown response flag 'XX'"
        );
        assert_eq!(
            parse("header_filter: {}").unwrap_err().to_string(),
            "filter.header_filter: not supported by nuncio"
        );
        assert!(
            parse("status_code_filter: {comparison: {op: GT, value: {default_value: 1}}}")
                .unwrap_err()
                .to_string()
                .starts_with("filter.status_code_filter.comparison.op")
        );
        assert!(parse("{}").is_err());
        assert!(
            parse("not_health_check_filter: {}\nresponse_flag_filter: {}")
                .unwrap_err()
                .to_string()
                .contains("only one filter")
        );
        assert!(parse("and_filter: {filters: [{not_health_check_filter: {}}]}").is_err());
        assert!(parse("duration_filter: {comparison: {value: {default_value: -1}}}").is_err());
    }
}
