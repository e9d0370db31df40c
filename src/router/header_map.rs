//! `HeaderMapAccess`: the little the route table needs from a header map.
//!
//! The route table matches on request headers and edits request and response headers, but it
//! must not depend on the codec's `HeaderMap` (src/http/codec/), which is built alongside it. This
//! trait is the contract: the codec's map implements it, and [`VecHeaderMap`] implements it for
//! tests and for callers that have no map of their own.
//!
//! Names are lower-case (the route table lower-cases every configured name at load time); an
//! implementation compares them as given. As in Envoy, the request line is reachable through
//! pseudo-header names:
//! - `:authority` (and its HTTP/1 spelling `host`) is the Host header,
//! - `:path` is the request target in origin form (path and query),
//! - `:method` and `:scheme` are the method and the scheme (`http`/`https`) the connection
//!   manager decided on.
//!
//! Setting `:path` or `:authority` rewrites the request line / Host header.
//!
//! Implemented here for the codec's types: `RequestHead` (pseudo-headers from its fields;
//! `:scheme` is the head's `scheme`, `http` when unset: the connection manager sets it),
//! `ResponseHead` and a bare `HeaderMap` (values that are not UTF-8 are invisible to the route
//! table, as they cannot match a configured string).

/// Read and write access to one message's headers. See the module docs for the name contract.
pub trait HeaderMapAccess {
    /// Every value of the header `name`, in the order they arrived. Empty when absent.
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a;

    /// Appends a header line `name: value` (after any existing ones).
    fn add(&mut self, name: &str, value: &str);

    /// Removes every header called `name`.
    fn remove(&mut self, name: &str);

    /// The first value of `name`.
    fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.get_all(name).next()
    }

    /// `:path` ("" when absent): what every route match reads first. The codec's request
    /// head answers from its field, without a lookup by name.
    fn request_path(&self) -> &str {
        self.get(":path").unwrap_or("")
    }

    /// Whether `name` is present (possibly with an empty value).
    fn contains(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// Whether any of the inline headers `names` is present. The codec's maps answer with a
    /// bit test (they track the inline headers they hold), so the router asks this before
    /// looking up (and removing) its control headers one by one: a request carries none of
    /// them in the usual case.
    fn contains_any(&self, names: InlineSet) -> bool {
        names.iter().any(|header| self.contains(header.name()))
    }

    /// Replaces every `name` header with one `name: value` (Envoy's `setReferenceKey`: remove,
    /// then append, so the header moves to the end).
    fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.add(name, value);
    }

    /// [`set`](Self::set) for a header the proxy generates itself (a lower-case constant name,
    /// a value it formatted, as bytes: a number): the codec's maps skip the sanitizing pass
    /// (`HeaderMap::set_generated`) and the UTF-8 check.
    fn set_generated(&mut self, name: &'static str, value: &[u8]) {
        // Generated values are ASCII (the invariant of `HeaderMap::set_generated`).
        self.set(name, std::str::from_utf8(value).unwrap_or(""));
    }
}

use crate::http::inline_header::InlineSet;

/// A header map as an ordered list of `(name, value)` pairs, names lower-case.
///
/// Pseudo-headers are plain entries here: `host` is stored as `:authority` (both names read it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VecHeaderMap {
    /// The header lines in order.
    pub entries: Vec<(String, String)>,
}

impl VecHeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map of `(name, value)` pairs; `host` is stored as `:authority`.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut map = VecHeaderMap::new();
        for (name, value) in pairs {
            map.add(&name.to_ascii_lowercase(), value);
        }
        map
    }

    /// A request with `:method GET`, `:scheme http`, the given authority and path, and extra
    /// headers.
    pub fn request(authority: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut map = VecHeaderMap::from_pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
        ]);
        for (name, value) in headers {
            map.add(&name.to_ascii_lowercase(), value);
        }
        map
    }

    /// The values of `name`, collected (for assertions).
    pub fn values<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.get_all(name).collect()
    }
}

/// `host` and `:authority` are one header.
fn canonical(name: &str) -> &str {
    if name == "host" {
        ":authority"
    } else {
        name
    }
}

impl HeaderMapAccess for VecHeaderMap {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical(name);
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn add(&mut self, name: &str, value: &str) {
        self.entries
            .push((canonical(name).to_string(), value.to_string()));
    }

    fn remove(&mut self, name: &str) {
        let name = canonical(name);
        self.entries.retain(|(n, _)| n != name);
    }
}

// === the codec's types ===

use crate::http::codec::{RequestHead, ResponseHead, Scheme};
use crate::http::inline_header::InlineHeader;
use crate::http::HeaderMap;

/// The values of one name: a pseudo-header's single value, or a header map's entries.
enum Values<'a, I> {
    One(Option<&'a str>),
    Many(I),
}

impl<'a, I: Iterator<Item = &'a str>> Iterator for Values<'a, I> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            Values::One(v) => v.take(),
            Values::Many(i) => i.next(),
        }
    }
}

fn utf8_values<'a>(map: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    map.get_all(name)
        .filter_map(|v| std::str::from_utf8(v).ok())
}

impl HeaderMapAccess for HeaderMap {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        utf8_values(self, name)
    }

    fn add(&mut self, name: &str, value: &str) {
        self.append(name, value);
    }

    fn remove(&mut self, name: &str) {
        HeaderMap::remove(self, name);
    }

    fn contains_any(&self, names: InlineSet) -> bool {
        self.inline_present().intersects(names)
    }

    fn set(&mut self, name: &str, value: &str) {
        HeaderMap::set(self, name, value);
    }

    fn set_generated(&mut self, name: &'static str, value: &[u8]) {
        HeaderMap::set_generated(self, name, value);
    }
}

impl HeaderMapAccess for RequestHead {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        match name {
            ":authority" | "host" => Values::One(Some(self.authority())),
            ":path" => Values::One(Some(self.path())),
            ":method" => Values::One(Some(self.method.as_str())),
            ":scheme" => Values::One(Some(match self.scheme {
                Some(Scheme::Https) => "https",
                _ => "http",
            })),
            _ => Values::Many(utf8_values(&self.headers, name)),
        }
    }

    fn request_path(&self) -> &str {
        self.path()
    }

    fn add(&mut self, name: &str, value: &str) {
        match name {
            ":authority" | "host" => self.set_authority(value),
            ":path" => self.set_path(value),
            ":scheme" => {
                self.scheme = Some(if value == "https" {
                    Scheme::Https
                } else {
                    Scheme::Http
                })
            }
            // The method is not editable by the route table.
            ":method" => {}
            _ => self.headers.append(name, value),
        }
    }

    fn remove(&mut self, name: &str) {
        // Pseudo-headers cannot be removed (the route table refuses to configure that).
        if !name.starts_with(':') && name != "host" {
            self.headers.remove(name);
        }
    }

    fn contains_any(&self, names: InlineSet) -> bool {
        // `host` is the authority here (always present), not a field of the map.
        (names.has(InlineHeader::Host) && self.contains("host"))
            || self.headers.inline_present().intersects(names)
    }

    fn set(&mut self, name: &str, value: &str) {
        match name {
            ":authority" | "host" | ":path" | ":scheme" | ":method" => {
                self.remove(name);
                self.add(name, value);
            }
            _ => self.headers.set(name, value),
        }
    }

    fn set_generated(&mut self, name: &'static str, value: &[u8]) {
        if name.starts_with(':') || name == "host" {
            self.set(name, std::str::from_utf8(value).unwrap_or(""));
            return;
        }
        self.headers.set_generated(name, value);
    }
}

impl HeaderMapAccess for ResponseHead {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        utf8_values(&self.headers, name)
    }

    fn add(&mut self, name: &str, value: &str) {
        self.headers.append(name, value);
    }

    fn remove(&mut self, name: &str) {
        self.headers.remove(name);
    }

    fn contains_any(&self, names: InlineSet) -> bool {
        self.headers.inline_present().intersects(names)
    }

    fn set(&mut self, name: &str, value: &str) {
        self.headers.set(name, value);
    }

    fn set_generated(&mut self, name: &'static str, value: &[u8]) {
        self.headers.set_generated(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_authority_are_one_header() {
        let mut map = VecHeaderMap::request("a.com", "/", &[]);
        assert_eq!(map.get("host"), Some("a.com"));
        map.set("host", "b.com");
        assert_eq!(map.values(":authority"), vec!["b.com"]);
    }

    #[test]
    fn request_head_pseudo_headers() {
        use crate::http::codec::Method;
        let mut head = RequestHead::new(Method::Post, "/a?b", "h.com:8080");
        head.headers.append("x-a", "1");
        head.headers.append("X-A", "2");
        assert_eq!(head.get(":path"), Some("/a?b"));
        assert_eq!(head.request_path(), "/a?b");
        assert_eq!(head.get("host"), Some("h.com:8080"));
        assert_eq!(head.get(":method"), Some("POST"));
        assert_eq!(head.get(":scheme"), Some("http"));
        assert_eq!(head.get_all("x-a").collect::<Vec<_>>(), vec!["1", "2"]);
        head.set(":path", "/new");
        head.set(":authority", "other.com");
        head.set("x-a", "3");
        head.remove("host");
        assert_eq!(head.path(), "/new");
        assert_eq!(head.authority(), "other.com");
        assert_eq!(
            head.headers.get_all("x-a").collect::<Vec<_>>(),
            vec![b"3".as_slice()]
        );
    }

    #[test]
    fn route_a_codec_request_head() {
        use crate::config::{parse_yaml, Node};
        use crate::http::codec::Method;
        use crate::router::{RouteConfig, RouteConfigOptions, RouteResult};
        let doc = parse_yaml(
            "virtual_hosts: [{name: a, domains: [h.com], routes: [{match: {prefix: /a, headers: [{name: x-a, string_match: {exact: '2'}}]}, route: {cluster: c, prefix_rewrite: /z}}]}]",
        )
        .unwrap();
        let config = RouteConfig::parse(&Node::root(&doc), &RouteConfigOptions::default()).unwrap();
        let mut head = RequestHead::new(Method::Get, "/a/b", "H.com");
        head.headers.append("x-a", "1");
        head.headers.append("x-a", "2");
        let RouteResult::Forward(f) = config.route(&head, 0) else {
            panic!("not routed");
        };
        assert_eq!(f.cluster_name(), "c");
        f.finalize_request_headers(&mut head, &Default::default(), true);
        assert_eq!(head.path(), "/z/b");
        assert_eq!(head.headers.get_str("x-envoy-original-path"), Some("/a/b"));
    }

    #[test]
    fn contains_any_and_set_generated_on_a_request_head() {
        use crate::http::codec::Method;
        use crate::http::inline_header::InlineHeader as H;
        let mut head = RequestHead::new(Method::Get, "/", "h.com");
        head.headers.append("x-a", "1");
        head.headers.append("X-Envoy-Retry-On", "5xx");
        head.headers.append("x-b", "2");
        assert!(head.contains_any(InlineSet::of(&[H::XEnvoyMaxRetries, H::XEnvoyRetryOn])));
        assert!(!head.contains_any(InlineSet::of(&[H::XEnvoyMaxRetries])));
        // `host` is the authority: always there.
        assert!(head.contains_any(InlineSet::of(&[H::Host])));
        // As `set`: every old value goes, the new one moves to the end.
        head.headers.append("x-a", "3");
        head.set_generated("x-a", b"4");
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["x-envoy-retry-on", "x-b", "x-a"]);
        assert_eq!(head.get("x-a"), Some("4"));
        let mut map = VecHeaderMap::from_pairs(&[("x-envoy-a", "1"), ("x-envoy-retry-on", "")]);
        assert!(map.contains_any(InlineSet::of(&[H::XEnvoyMaxRetries, H::XEnvoyRetryOn])));
        assert!(!map.contains_any(InlineSet::of(&[H::XEnvoyMaxRetries])));
        map.set_generated("x-envoy-a", b"2");
        assert_eq!(map.values("x-envoy-a"), vec!["2"]);
    }

    #[test]
    fn set_removes_every_value_and_appends() {
        let mut map = VecHeaderMap::from_pairs(&[("x", "1"), ("y", "2"), ("x", "3")]);
        map.set("x", "4");
        assert_eq!(
            map.entries,
            vec![("y".into(), "2".into()), ("x".into(), "4".into())]
        );
    }
}
