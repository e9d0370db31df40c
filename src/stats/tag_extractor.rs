//! Tag extraction (Envoy's `TagProducerImpl` with its default `TagExtractorImpl`s): turns a flat
//! stat name such as `cluster.app.upstream_rq_200` into a tag-extracted name
//! (`cluster.upstream_rq`) and tags (`envoy_response_code="200"`, `envoy_cluster_name="app"`),
//! so the Prometheus output has the metric names and labels that existing Envoy dashboards query.
//!
//! Called by the Prometheus renderer. Each extractor is a regex whose first capture group is cut
//! out of the name and whose second group (or first, if it has one) is the tag's value, as in
//! Envoy. Every extractor matches against the original name; the cuts are applied together at the
//! end. Tags are listed from the rightmost in the name to the leftmost, which is the order Envoy
//! 1.40 prints them in (`envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress"`).

use regex::Regex;

/// One extracted tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The Prometheus label name, e.g. `envoy_cluster_name`.
    pub name: &'static str,
    /// The value cut from the stat name, e.g. `app`.
    pub value: String,
}

struct TagExtractor {
    name: &'static str,
    /// Cheap pre-filter: the stat name must start with this (Envoy's extractor prefix).
    prefix: &'static str,
    regex: Regex,
}

/// The set of default tag extractors for the stat trees nuncio keeps.
pub struct TagProducer {
    extractors: Vec<TagExtractor>,
}

/// Envoy's default extractors (`source/common/config/well_known_names.cc`) for the trees nuncio
/// has, rewritten without look-around for the `regex` crate. Order matters only between two
/// extractors of the same tag: the first that matches wins.
const DEFAULT_EXTRACTORS: &[(&str, &str, &str)] = &[
    // cluster.(<cluster_name>.)*
    ("envoy_cluster_name", "cluster.", r"^cluster\.((.*?)\.)"),
    // *_rq(_<response_code>)
    ("envoy_response_code", "", r"_rq(_(\d{3}))$"),
    // *_rq(_<response_code_class>xx)
    ("envoy_response_code_class", "", r"_rq_((\d))xx$"),
    // http.(<stat_prefix>.)*
    (
        "envoy_http_conn_manager_prefix",
        "http.",
        r"^http\.((.*?)\.)",
    ),
    // listener.<address>.http.(<stat_prefix>.)*
    (
        "envoy_http_conn_manager_prefix",
        "listener.",
        r"^listener\..*?\.http\.((.*?)\.)",
    ),
    // listener.(<address>.)* : an IPv4 `127.0.0.1_10000` or IPv6 `[__1]_10000` address
    (
        "envoy_listener_address",
        "listener.",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    // listener.<address>.worker_(<id>.)* and server.worker_(<id>.)*
    (
        "envoy_worker_id",
        "listener.",
        r"^listener\.(?:.*?\.)?worker_((\d+)\.)",
    ),
    ("envoy_worker_id", "server.", r"^server\.worker_((\d+)\.)"),
    // tcp.(<stat_prefix>.)*
    ("envoy_tcp_prefix", "tcp.", r"^tcp\.((.*?)\.)"),
];

impl Default for TagProducer {
    fn default() -> TagProducer {
        TagProducer::new()
    }
}

impl TagProducer {
    /// The default extractors.
    pub fn new() -> TagProducer {
        let extractors = DEFAULT_EXTRACTORS
            .iter()
            .map(|&(name, prefix, re)| TagExtractor {
                name,
                prefix,
                // The patterns are constants tested below; failing to compile one is a bug.
                regex: Regex::new(re).expect("default tag extractor regex"),
            })
            .collect();
        TagProducer { extractors }
    }

    /// Splits `name` into its tag-extracted name and its tags (rightmost first).
    pub fn produce_tags(&self, name: &str) -> (String, Vec<Tag>) {
        // (position of the value in the name, tag, cut range)
        let mut found: Vec<(usize, Tag, std::ops::Range<usize>)> = Vec::new();
        for ex in &self.extractors {
            if !name.starts_with(ex.prefix) || found.iter().any(|(_, t, _)| t.name == ex.name) {
                continue;
            }
            let Some(caps) = ex.regex.captures(name) else {
                continue;
            };
            let (Some(cut), Some(value)) = (caps.get(1), caps.get(2).or_else(|| caps.get(1)))
            else {
                continue;
            };
            found.push((
                value.start(),
                Tag {
                    name: ex.name,
                    value: value.as_str().to_string(),
                },
                cut.range(),
            ));
        }
        let mut cuts: Vec<std::ops::Range<usize>> =
            found.iter().map(|(_, _, r)| r.clone()).collect();
        cuts.sort_by_key(|r| r.start);
        let mut extracted = String::with_capacity(name.len());
        let mut at = 0;
        for cut in cuts {
            if cut.start >= at {
                extracted.push_str(&name[at..cut.start]);
            }
            at = at.max(cut.end);
        }
        extracted.push_str(&name[at..]);
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        (extracted, found.into_iter().map(|(_, t, _)| t).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(name: &str) -> (String, Vec<(&'static str, String)>) {
        let (n, t) = TagProducer::new().produce_tags(name);
        (n, t.into_iter().map(|t| (t.name, t.value)).collect())
    }

    fn t(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|&(k, v)| (k, v.to_string())).collect()
    }

    // Each expectation below is what Envoy 1.40's /stats/prometheus printed for the same name.

    #[test]
    fn cluster_name_and_response_code() {
        assert_eq!(
            tags("cluster.app.upstream_rq_200"),
            (
                "cluster.upstream_rq".into(),
                t(&[
                    ("envoy_response_code", "200"),
                    ("envoy_cluster_name", "app")
                ])
            )
        );
        assert_eq!(
            tags("cluster.app.upstream_rq_2xx"),
            (
                "cluster.upstream_rq_xx".into(),
                t(&[
                    ("envoy_response_code_class", "2"),
                    ("envoy_cluster_name", "app")
                ])
            )
        );
        assert_eq!(
            tags("cluster.app.external.upstream_rq_501"),
            (
                "cluster.external.upstream_rq".into(),
                t(&[
                    ("envoy_response_code", "501"),
                    ("envoy_cluster_name", "app")
                ])
            )
        );
        assert_eq!(
            tags("cluster.app.upstream_rq_total"),
            (
                "cluster.upstream_rq_total".into(),
                t(&[("envoy_cluster_name", "app")])
            )
        );
        assert_eq!(
            tags("cluster_manager.active_clusters"),
            ("cluster_manager.active_clusters".into(), vec![])
        );
    }

    #[test]
    fn http_prefix_and_code_class() {
        assert_eq!(
            tags("http.ingress.downstream_rq_2xx"),
            (
                "http.downstream_rq_xx".into(),
                t(&[
                    ("envoy_response_code_class", "2"),
                    ("envoy_http_conn_manager_prefix", "ingress")
                ])
            )
        );
        assert_eq!(
            tags("http1.response_flood"),
            ("http1.response_flood".into(), vec![])
        );
    }

    #[test]
    fn listener_address_worker_and_http() {
        assert_eq!(
            tags("listener.127.0.0.1_10000.downstream_cx_total"),
            (
                "listener.downstream_cx_total".into(),
                t(&[("envoy_listener_address", "127.0.0.1_10000")])
            )
        );
        assert_eq!(
            tags("listener.127.0.0.1_0.worker_1.downstream_cx_total"),
            (
                "listener.worker_downstream_cx_total".into(),
                t(&[
                    ("envoy_worker_id", "1"),
                    ("envoy_listener_address", "127.0.0.1_0")
                ])
            )
        );
        assert_eq!(
            tags("listener.127.0.0.1_0.http.ingress.downstream_rq_5xx"),
            (
                "listener.http.downstream_rq_xx".into(),
                t(&[
                    ("envoy_response_code_class", "5"),
                    ("envoy_http_conn_manager_prefix", "ingress"),
                    ("envoy_listener_address", "127.0.0.1_0"),
                ])
            )
        );
        assert_eq!(
            tags("listener.[__1]_8080.no_filter_chain_match").1,
            t(&[("envoy_listener_address", "[__1]_8080")])
        );
        // A named (non-address) listener keeps its name in the metric, as Envoy's admin listener.
        assert_eq!(
            tags("listener.admin.downstream_cx_active"),
            ("listener.admin.downstream_cx_active".into(), vec![])
        );
    }

    #[test]
    fn server_worker_and_tcp_prefix() {
        assert_eq!(
            tags("server.worker_0.watchdog_miss"),
            (
                "server.worker_watchdog_miss".into(),
                t(&[("envoy_worker_id", "0")])
            )
        );
        assert_eq!(tags("server.live"), ("server.live".into(), vec![]));
        assert_eq!(
            tags("tcp.tcpfoo.downstream_cx_total"),
            (
                "tcp.downstream_cx_total".into(),
                t(&[("envoy_tcp_prefix", "tcpfoo")])
            )
        );
    }
}
