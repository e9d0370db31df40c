//! `QueryParameterMatcher`: a route's `match.query_parameters[]` entry.
//!
//! Envoy parses the query without percent-decoding (`?a=%31` does not match `exact: "1"`), and
//! only the *first* occurrence of a key counts (`?a=2&a=1` does not match `exact: "1"`); a key
//! without `=` has the value `""`. Both verified on Envoy 1.40. As in Envoy's parser the query
//! runs to the end of `:path` (a `#fragment` stays part of the last value). `present_match`
//! (even `false`, as in Envoy), or no specifier, matches any value of a present key. Matching
//! scans the path in place, allocating nothing.

use super::string_matcher::StringMatcher;
use crate::config::{Node, Result};

/// One query-parameter condition.
#[derive(Clone, Debug)]
pub struct QueryParameterMatcher {
    /// The key, compared exactly (case-sensitively, undecoded).
    pub name: String,
    /// `None`: the key must be present.
    pub matcher: Option<StringMatcher>,
}

impl QueryParameterMatcher {
    /// Whether the query of `path` (the `:path` value) satisfies this condition.
    pub fn matches(&self, path: &str) -> bool {
        match first_value(path, &self.name) {
            None => false,
            Some(value) => self.matcher.as_ref().is_none_or(|m| m.matches(value)),
        }
    }

    /// Reads a `QueryParameterMatcher` message.
    pub fn parse(node: &Node) -> Result<QueryParameterMatcher> {
        node.check_fields(&["name", "string_match", "present_match"], &[])?;
        let name = node.required("name")?.non_empty_str()?.to_string();
        if node.has("string_match") && node.has("present_match") {
            return Err(node
                .required("present_match")?
                .error("only one of string_match, present_match may be set"));
        }
        let matcher = node.opt("string_match", StringMatcher::parse)?;
        // Envoy only asks whether a string matcher is configured: `present_match: false` is a
        // presence check too. Read it for its type, then do the same.
        node.opt("present_match", Node::as_bool)?;
        Ok(QueryParameterMatcher { name, matcher })
    }
}

/// The value of the first `key` parameter in the query of `path`, undecoded.
pub fn first_value<'p>(path: &'p str, key: &str) -> Option<&'p str> {
    let query = &path[path.find('?')? + 1..];
    query.split('&').find_map(|param| match param.find('=') {
        Some(eq) if &param[..eq] == key => Some(&param[eq + 1..]),
        None if param == key => Some(""),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn matcher(yaml: &str) -> QueryParameterMatcher {
        let doc = parse_yaml(yaml).unwrap();
        QueryParameterMatcher::parse(&Node::root(&doc)).unwrap()
    }

    #[test]
    fn first_occurrence_only_and_undecoded() {
        let m = matcher("{name: a, string_match: {exact: '1'}}");
        assert!(m.matches("/q?a=1"));
        assert!(m.matches("/q?b=1&a=1"));
        assert!(!m.matches("/q?a=2&a=1"));
        assert!(!m.matches("/q?a=%31"));
        assert!(!m.matches("/q?a"));
        assert!(!m.matches("/q"));
        assert!(!m.matches("/q?aa=1"));
        // The fragment is not cut off.
        assert!(!m.matches("/q?a=1#frag"));
    }

    #[test]
    fn presence() {
        let m = matcher("{name: b}");
        assert!(m.matches("/?b"));
        assert!(m.matches("/?b="));
        assert!(m.matches("/?x=1&b"));
        assert!(!m.matches("/?bb=1"));
        let m = matcher("{name: b, present_match: true}");
        assert!(m.matches("/?b=2"));
        assert!(!m.matches("/?c=2"));
    }

    #[test]
    fn value_may_contain_equals_sign() {
        assert_eq!(first_value("/?a=b=c", "a"), Some("b=c"));
        assert_eq!(first_value("/?&&a=1", "a"), Some("1"));
        assert_eq!(first_value("/?=1", ""), Some("1"));
    }
}
