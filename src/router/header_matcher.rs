//! `HeaderMatcher`: a route's `match.headers[]` entry (also used by retry policies'
//! `retriable_headers` and `retriable_request_headers`).
//!
//! Semantics, as observed on Envoy 1.40:
//! - a header with several values matches when *any* value matches (`x-a: w` + `x-a: v` matches
//!   `exact: v`; the values are not joined with commas);
//! - an absent header never matches a value matcher, whatever `invert_match` says, unless
//!   `treat_missing_header_as_empty` is set (then the value is `""`);
//! - `present_match: B` matches when presence equals B, and `invert_match` flips it;
//! - no specifier at all means "present";
//! - the deprecated `exact_match`, `prefix_match`, `suffix_match`, `contains_match` and
//!   `safe_regex_match` are still accepted (Envoy logs a deprecation warning); a legacy
//!   `exact_match: ""` matches any value;
//! - `range_match` parses the value as Abseil's `SimpleAtoi` does (surrounding whitespace and a
//!   sign allowed) and matches `start <= v < end`.
//!
//! The name `host` reads the `:authority` header (see `HeaderMapAccess`).

use super::header_map::HeaderMapAccess;
use super::string_matcher::{parse_regex_matcher, StringMatcher};
use crate::config::{ErrorKind, Node, Result};

/// What a [`HeaderMatcher`] checks of each value.
#[derive(Clone, Debug)]
pub enum HeaderMatch {
    /// `string_match` or one of the legacy string fields.
    String(StringMatcher),
    /// Legacy `exact_match: ""`: any value.
    AnyValue,
    /// `range_match`: an integer in `[start, end)`.
    Range { start: i64, end: i64 },
    /// `present_match` (or no specifier: `Present(true)`).
    Present(bool),
}

/// One header condition of a route.
#[derive(Clone, Debug)]
pub struct HeaderMatcher {
    /// Lower-case header name.
    pub name: String,
    /// The condition on the values.
    pub matcher: HeaderMatch,
    /// Negates the result (see the module docs for absent headers).
    pub invert: bool,
    /// An absent header is matched as if its value were `""`.
    pub treat_missing_as_empty: bool,
}

const FIELDS: &[&str] = &[
    "name",
    "exact_match",
    "safe_regex_match",
    "range_match",
    "present_match",
    "prefix_match",
    "suffix_match",
    "contains_match",
    "string_match",
    "invert_match",
    "treat_missing_header_as_empty",
];

const SPECIFIERS: &[&str] = &[
    "exact_match",
    "safe_regex_match",
    "range_match",
    "present_match",
    "prefix_match",
    "suffix_match",
    "contains_match",
    "string_match",
];

impl HeaderMatcher {
    /// Whether `headers` satisfy this condition.
    pub fn matches<H: HeaderMapAccess + ?Sized>(&self, headers: &H) -> bool {
        if let HeaderMatch::Present(want) = self.matcher {
            return (headers.contains(&self.name) == want) != self.invert;
        }
        let mut values = headers.get_all(&self.name).peekable();
        if values.peek().is_none() {
            if !self.treat_missing_as_empty {
                return false;
            }
            return self.matches_value("") != self.invert;
        }
        values.any(|v| self.matches_value(v)) != self.invert
    }

    fn matches_value(&self, value: &str) -> bool {
        match &self.matcher {
            HeaderMatch::String(m) => m.matches(value),
            HeaderMatch::AnyValue => true,
            HeaderMatch::Range { start, end } => {
                simple_atoi(value).is_some_and(|v| v >= *start && v < *end)
            }
            HeaderMatch::Present(_) => true,
        }
    }

    /// Reads a `HeaderMatcher` message.
    pub fn parse(node: &Node) -> Result<HeaderMatcher> {
        node.check_fields(FIELDS, &[])?;
        let name = node.required("name")?.non_empty_str()?.to_ascii_lowercase();
        let specifiers: Vec<(&str, Node)> = SPECIFIERS
            .iter()
            .filter_map(|f| node.get(f).map(|n| (*f, n)))
            .collect();
        if specifiers.len() > 1 {
            return Err(specifiers[1]
                .1
                .error(format!("only one of {} may be set", SPECIFIERS.join(", "))));
        }
        let string = |n: &Node, build: fn(String) -> StringMatcher| -> Result<HeaderMatch> {
            Ok(HeaderMatch::String(build(n.as_str()?.to_string())))
        };
        let matcher = match specifiers.first() {
            None => HeaderMatch::Present(true),
            Some((field, n)) => match *field {
                "exact_match" => {
                    if n.as_str()?.is_empty() {
                        HeaderMatch::AnyValue
                    } else {
                        string(n, |value| StringMatcher::Exact {
                            value,
                            ignore_case: false,
                        })?
                    }
                }
                "prefix_match" => string(&non_empty(n)?, |value| StringMatcher::Prefix {
                    value,
                    ignore_case: false,
                })?,
                "suffix_match" => string(&non_empty(n)?, |value| StringMatcher::Suffix {
                    value,
                    ignore_case: false,
                })?,
                "contains_match" => string(&non_empty(n)?, |value| StringMatcher::Contains {
                    value,
                    ignore_case: false,
                })?,
                "safe_regex_match" => {
                    HeaderMatch::String(StringMatcher::Regex(parse_regex_matcher(n)?))
                }
                "string_match" => HeaderMatch::String(StringMatcher::parse(n)?),
                "present_match" => HeaderMatch::Present(n.as_bool()?),
                _ => {
                    n.check_fields(&["start", "end"], &[])?;
                    let start = n.opt("start", Node::as_i64)?.unwrap_or(0);
                    let end = n.opt("end", Node::as_i64)?.unwrap_or(0);
                    if start >= end {
                        return Err(n.error_of(
                            ErrorKind::Invalid,
                            format!("start ({start}) must be less than end ({end})"),
                        ));
                    }
                    HeaderMatch::Range { start, end }
                }
            },
        };
        Ok(HeaderMatcher {
            name,
            matcher,
            invert: node.opt("invert_match", Node::as_bool)?.unwrap_or(false),
            treat_missing_as_empty: node
                .opt("treat_missing_header_as_empty", Node::as_bool)?
                .unwrap_or(false),
        })
    }
}

fn non_empty<'a>(n: &Node<'a>) -> Result<Node<'a>> {
    n.non_empty_str()?;
    Ok(n.clone())
}

/// Abseil's `SimpleAtoi` for `int64`: ASCII whitespace around, an optional sign, decimal digits.
pub fn simple_atoi(value: &str) -> Option<i64> {
    let v = value.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `v` is "-digits" when negative, so i64::MIN parses too.
    if negative {
        v.parse().ok()
    } else {
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::router::header_map::VecHeaderMap;

    fn matcher(yaml: &str) -> HeaderMatcher {
        let doc = parse_yaml(yaml).unwrap();
        HeaderMatcher::parse(&Node::root(&doc)).unwrap()
    }

    fn req(headers: &[(&str, &str)]) -> VecHeaderMap {
        VecHeaderMap::request("h.com", "/", headers)
    }

    #[test]
    fn any_value_of_a_repeated_header_matches() {
        let m = matcher("{name: x-a, exact_match: v}");
        assert!(m.matches(&req(&[("x-a", "w"), ("x-a", "v")])));
        assert!(m.matches(&req(&[("x-a", "v"), ("x-a", "w")])));
        // Not joined with commas.
        let m = matcher("{name: x-m, string_match: {exact: 'a,b'}}");
        assert!(!m.matches(&req(&[("x-m", "a"), ("x-m", "b")])));
        assert!(m.matches(&req(&[("x-m", "a,b")])));
    }

    #[test]
    fn invert_applies_to_the_any_value_result() {
        let m = matcher("{name: x-a, string_match: {exact: v}, invert_match: true}");
        assert!(m.matches(&req(&[("x-a", "w")])));
        assert!(!m.matches(&req(&[("x-a", "v")])));
        assert!(!m.matches(&req(&[("x-a", "w"), ("x-a", "v")])));
    }

    #[test]
    fn absent_header_never_matches_a_value_even_inverted() {
        let m = matcher("{name: x-a, string_match: {exact: v}, invert_match: true}");
        assert!(!m.matches(&req(&[])));
        let m = matcher("{name: x-a, string_match: {exact: v}}");
        assert!(!m.matches(&req(&[])));
    }

    #[test]
    fn treat_missing_as_empty() {
        let m =
            matcher("{name: x-a, string_match: {exact: ''}, treat_missing_header_as_empty: true}");
        assert!(m.matches(&req(&[])));
        let m = matcher(
            "{name: x-a, string_match: {exact: v}, invert_match: true, treat_missing_header_as_empty: true}",
        );
        assert!(m.matches(&req(&[])));
    }

    #[test]
    fn present_match_and_its_inversion() {
        let present = matcher("{name: x-a, present_match: true}");
        let absent = matcher("{name: x-a, present_match: false}");
        let absent_inv = matcher("{name: x-a, present_match: false, invert_match: true}");
        let none = matcher("{name: x-a}");
        assert!(present.matches(&req(&[("x-a", "")])));
        assert!(!present.matches(&req(&[])));
        assert!(absent.matches(&req(&[])));
        assert!(!absent.matches(&req(&[("x-a", "1")])));
        assert!(absent_inv.matches(&req(&[("x-a", "1")])));
        assert!(!absent_inv.matches(&req(&[])));
        assert!(none.matches(&req(&[("x-a", "z")])));
        assert!(!none.matches(&req(&[])));
    }

    #[test]
    fn legacy_fields() {
        assert!(matcher("{name: x, exact_match: ''}").matches(&req(&[("x", "anything")])));
        assert!(matcher("{name: x, prefix_match: ab}").matches(&req(&[("x", "abc")])));
        assert!(matcher("{name: x, suffix_match: bc}").matches(&req(&[("x", "abc")])));
        assert!(matcher("{name: x, contains_match: b}").matches(&req(&[("x", "abc")])));
        assert!(
            matcher("{name: x, safe_regex_match: {regex: 'a.c'}}").matches(&req(&[("x", "abc")]))
        );
        assert!(
            !matcher("{name: x, safe_regex_match: {regex: 'a.'}}").matches(&req(&[("x", "abc")]))
        );
    }

    #[test]
    fn range_match_uses_simple_atoi() {
        let m = matcher("{name: x-r, range_match: {start: 10, end: 20}}");
        for (v, want) in [
            ("9", false),
            ("10", true),
            ("19", true),
            ("20", false),
            ("+15", true),
            (" 15 ", true),
            ("15x", false),
            ("", false),
            ("-5", false),
            ("1 5", false),
        ] {
            assert_eq!(m.matches(&req(&[("x-r", v)])), want, "{v:?}");
        }
        let m = matcher("{name: x-r, range_match: {start: -10, end: 0}}");
        assert!(m.matches(&req(&[("x-r", "-5")])));
        assert!(!m.matches(&req(&[("x-r", "--5")])));
        assert!(!m.matches(&req(&[("x-r", "+-5")])));
    }

    #[test]
    fn host_name_reads_the_authority() {
        let m = matcher("{name: Host, string_match: {exact: h.com}}");
        assert!(m.matches(&req(&[])));
        let m = matcher("{name: ':authority', string_match: {exact: h.com}}");
        assert!(m.matches(&req(&[])));
    }

    #[test]
    fn config_errors() {
        let err = |yaml: &str| {
            let doc = parse_yaml(yaml).unwrap();
            HeaderMatcher::parse(&Node::root(&doc))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("{exact_match: a}"), "name: required field is missing");
        assert!(
            err("{name: x, exact_match: a, prefix_match: b}").starts_with("prefix_match: only one")
        );
        assert_eq!(
            err("{name: x, range_match: {start: 5, end: 5}}"),
            "range_match: start (5) must be less than end (5)"
        );
        assert!(err("{name: x, bogus: 1}").starts_with("bogus: unknown field"));
    }
}
