//! The parameters of an admin stats request (`/stats?filter=…&usedonly&type=…&format=…` and
//! `/stats/prometheus`), parsed from the query string, and the one call that renders a snapshot
//! for them (Envoy's `StatsParams` and `StatsRequest`).
//!
//! Called by the admin endpoint; calls the text, JSON and Prometheus renderers.

use regex::Regex;

use super::store::Snapshot;
use super::tag_extractor::TagProducer;
use super::{json_format, prometheus_format, text_format};

/// The output format (`format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsFormat {
    /// `name: value` lines (the default of `/stats`).
    Text,
    /// Envoy's `{"stats":[…]}` document.
    Json,
    /// The Prometheus text exposition format (the default of `/stats/prometheus`).
    Prometheus,
}

/// Which kinds of stat to show (`type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsType {
    /// Every kind (the default).
    All,
    /// Counters only.
    Counters,
    /// Gauges only.
    Gauges,
    /// Histograms only.
    Histograms,
}

/// Why a stats request was refused (the admin endpoint answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsRequestError {
    /// `filter=` is not a valid regular expression.
    InvalidRegex(String),
    /// `type=` is not one of All, Counters, Gauges, Histograms.
    InvalidType(String),
    /// `format=` is not one of text, json, prometheus.
    InvalidFormat(String),
}

impl std::fmt::Display for StatsRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Envoy says "Invalid re2 regex: …"; our engine is the regex crate.
            StatsRequestError::InvalidRegex(e) => write!(f, "Invalid regex: {e}"),
            StatsRequestError::InvalidType(_) => write!(f, "invalid &type= param"),
            StatsRequestError::InvalidFormat(v) => {
                write!(f, "invalid format '{v}': expected text, json or prometheus")
            }
        }
    }
}

impl std::error::Error for StatsRequestError {}

/// A parsed stats request.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    /// The output format.
    pub format: StatsFormat,
    /// Only stats whose full name matches (a search, not an anchored match, as in Envoy).
    pub filter: Option<Regex>,
    /// Only stats that were ever changed (`usedonly`).
    pub used_only: bool,
    /// Which kinds to show.
    pub stats_type: StatsType,
}

impl StatsRequest {
    /// Parses the query string (without the `?`) of `/stats`, or of `/stats/prometheus` when
    /// `prometheus_path` is true (whose format is always Prometheus). Unknown parameters are
    /// ignored, as Envoy does.
    pub fn from_query(
        query: &str,
        prometheus_path: bool,
    ) -> Result<StatsRequest, StatsRequestError> {
        let mut req = StatsRequest {
            format: if prometheus_path {
                StatsFormat::Prometheus
            } else {
                StatsFormat::Text
            },
            filter: None,
            used_only: false,
            stats_type: StatsType::All,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "usedonly" => req.used_only = true,
                "filter" if !value.is_empty() => {
                    let re = Regex::new(&value)
                        .map_err(|e| StatsRequestError::InvalidRegex(last_line(&e.to_string())))?;
                    req.filter = Some(re);
                }
                "type" => {
                    req.stats_type = match value.as_str() {
                        "All" => StatsType::All,
                        "Counters" => StatsType::Counters,
                        "Gauges" => StatsType::Gauges,
                        "Histograms" => StatsType::Histograms,
                        _ => return Err(StatsRequestError::InvalidType(value)),
                    }
                }
                "format" if !prometheus_path => {
                    req.format = match value.as_str() {
                        "text" => StatsFormat::Text,
                        "json" => StatsFormat::Json,
                        "prometheus" => StatsFormat::Prometheus,
                        _ => return Err(StatsRequestError::InvalidFormat(value)),
                    }
                }
                _ => {}
            }
        }
        Ok(req)
    }

    /// Whether a stat of this name and `used` flag passes `filter` and `usedonly`.
    pub fn shows(&self, name: &str, used: bool) -> bool {
        (!self.used_only || used) && self.filter.as_ref().is_none_or(|re| re.is_match(name))
    }

    /// The `content-type` of the rendered body (Envoy's).
    pub fn content_type(&self) -> &'static str {
        match self.format {
            StatsFormat::Json => "application/json",
            StatsFormat::Text | StatsFormat::Prometheus => "text/plain; charset=UTF-8",
        }
    }

    /// Renders `snapshot` for this request. `tags` is only used for Prometheus; build it once.
    pub fn render(&self, snapshot: &Snapshot, tags: &TagProducer) -> String {
        match self.format {
            StatsFormat::Text => text_format::render(snapshot, self),
            StatsFormat::Json => json_format::render(snapshot, self),
            StatsFormat::Prometheus => prometheus_format::render(snapshot, self, tags),
        }
    }

    pub(crate) fn counters(&self) -> bool {
        matches!(self.stats_type, StatsType::All | StatsType::Counters)
    }

    pub(crate) fn gauges(&self) -> bool {
        matches!(self.stats_type, StatsType::All | StatsType::Gauges)
    }

    pub(crate) fn histograms(&self) -> bool {
        matches!(self.stats_type, StatsType::All | StatsType::Histograms)
    }
}

/// The regex crate's errors are multi-line drawings; the last line says what is wrong.
fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Decodes `%XX` escapes (and leaves a malformed escape as it is); `+` stays `+`, as in Envoy's
/// query parser, so a filter like `a+b` keeps its regex meaning.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_query_parameters() {
        let r = StatsRequest::from_query(
            "filter=cluster%5C.app&usedonly&type=Counters&format=json",
            false,
        )
        .unwrap();
        assert_eq!(r.format, StatsFormat::Json);
        assert_eq!(r.stats_type, StatsType::Counters);
        assert!(r.used_only);
        assert!(r.shows("cluster.app.upstream_rq_total", true));
        assert!(!r.shows("cluster.app.upstream_rq_total", false));
        assert!(!r.shows("cluster_app", true));
        let r = StatsRequest::from_query("", true).unwrap();
        assert_eq!(r.format, StatsFormat::Prometheus);
        assert!(r.shows("anything", false));
    }

    #[test]
    fn bad_parameters_are_errors_with_envoy_messages() {
        let e = StatsRequest::from_query("filter=(", false).unwrap_err();
        assert!(matches!(e, StatsRequestError::InvalidRegex(_)));
        assert_eq!(e.to_string(), "Invalid regex: error: unclosed group");
        assert_eq!(
            StatsRequest::from_query("type=Foo", false)
                .unwrap_err()
                .to_string(),
            "invalid &type= param"
        );
        assert!(StatsRequest::from_query("format=xml", false).is_err());
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%2Eb%"), "a.b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("x+y"), "x+y");
    }
}
