//! `StringMatcher`: Envoy's `envoy.type.matcher.v3.StringMatcher` (exact, prefix, suffix,
//! contains, safe_regex; `ignore_case` for all but the regex).
//!
//! Used by the header and query-parameter matchers of a route. Matching never allocates:
//! case-insensitive comparisons work on bytes with `eq_ignore_ascii_case` (Envoy lower-cases
//! ASCII only, too).

use regex::Regex;

use crate::config::{ErrorKind, Node, Result};

/// One string-matching rule.
#[derive(Clone, Debug)]
pub enum StringMatcher {
    /// The whole value equals the pattern.
    Exact { value: String, ignore_case: bool },
    /// The value starts with the pattern.
    Prefix { value: String, ignore_case: bool },
    /// The value ends with the pattern.
    Suffix { value: String, ignore_case: bool },
    /// The value contains the pattern.
    Contains { value: String, ignore_case: bool },
    /// The whole value matches the regex (RE2 full-match semantics).
    Regex(Regex),
}

impl StringMatcher {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatcher::Exact {
                value: p,
                ignore_case,
            } => eq(value, p, *ignore_case),
            StringMatcher::Prefix {
                value: p,
                ignore_case,
            } => starts_with(value, p, *ignore_case),
            StringMatcher::Suffix {
                value: p,
                ignore_case,
            } => {
                let (v, p) = (value.as_bytes(), p.as_bytes());
                v.len() >= p.len() && bytes_eq(&v[v.len() - p.len()..], p, *ignore_case)
            }
            StringMatcher::Contains {
                value: p,
                ignore_case,
            } => contains(value, p, *ignore_case),
            StringMatcher::Regex(re) => re.is_match(value),
        }
    }

    /// Reads a `StringMatcher` message.
    pub fn parse(node: &Node) -> Result<StringMatcher> {
        node.check_fields(
            &[
                "exact",
                "prefix",
                "suffix",
                "contains",
                "safe_regex",
                "ignore_case",
            ],
            &["custom"],
        )?;
        let ignore_case = node.opt("ignore_case", Node::as_bool)?.unwrap_or(false);
        let mut found = Vec::new();
        for field in ["exact", "prefix", "suffix", "contains", "safe_regex"] {
            if let Some(n) = node.get(field) {
                found.push((field, n));
            }
        }
        let (field, value) = match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(node.error_of(
                    ErrorKind::Missing,
                    "one of exact, prefix, suffix, contains, safe_regex is required",
                ))
            }
            _ => {
                return Err(found[1]
                    .1
                    .error("only one of exact, prefix, suffix, contains, safe_regex may be set"))
            }
        };
        let text = |n: &Node, non_empty: bool| -> Result<String> {
            let s = if non_empty {
                n.non_empty_str()?
            } else {
                n.as_str()?
            };
            Ok(s.to_string())
        };
        Ok(match field {
            "exact" => StringMatcher::Exact {
                value: text(&value, false)?,
                ignore_case,
            },
            "prefix" => StringMatcher::Prefix {
                value: text(&value, true)?,
                ignore_case,
            },
            "suffix" => StringMatcher::Suffix {
                value: text(&value, true)?,
                ignore_case,
            },
            "contains" => StringMatcher::Contains {
                value: text(&value, true)?,
                ignore_case,
            },
            _ => StringMatcher::Regex(parse_regex_matcher(&value)?),
        })
    }
}

/// Reads a `RegexMatcher` (`{ regex: "..." }`, optionally `google_re2: {}`) into a regex that
/// must match the whole input, as RE2's `FullMatch` does.
pub fn parse_regex_matcher(node: &Node) -> Result<Regex> {
    node.check_fields(&["regex", "google_re2"], &[])?;
    if let Some(re2) = node.get("google_re2") {
        // `max_program_size` is RE2-specific; an empty `google_re2: {}` is the default engine.
        re2.check_fields(&[], &["max_program_size"])?;
    }
    let regex_node = node.required("regex")?;
    full_match_regex(&regex_node, regex_node.as_str()?)
}

/// Compiles `pattern` anchored at both ends (`^(?:pattern)$`), reporting errors at `node`.
pub fn full_match_regex(node: &Node, pattern: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| node.error(format!("invalid regex '{pattern}': {e}")))
}

/// Compiles `pattern` unanchored (for `regex_rewrite`, which replaces every match).
pub fn search_regex(node: &Node, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| node.error(format!("invalid regex '{pattern}': {e}")))
}

fn eq(a: &str, b: &str, ignore_case: bool) -> bool {
    bytes_eq(a.as_bytes(), b.as_bytes(), ignore_case)
}

fn bytes_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `value` starts with `prefix` (ASCII case-insensitively if asked); compares bytes, so a
/// prefix length inside a multi-byte character cannot panic.
pub fn starts_with(value: &str, prefix: &str, ignore_case: bool) -> bool {
    let (v, p) = (value.as_bytes(), prefix.as_bytes());
    v.len() >= p.len() && bytes_eq(&v[..p.len()], p, ignore_case)
}

fn contains(haystack: &str, needle: &str, ignore_case: bool) -> bool {
    if !ignore_case {
        return haystack.contains(needle);
    }
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn matcher(yaml: &str) -> StringMatcher {
        let doc = parse_yaml(yaml).unwrap();
        StringMatcher::parse(&Node::root(&doc)).unwrap()
    }

    fn error(yaml: &str) -> String {
        let doc = parse_yaml(yaml).unwrap();
        StringMatcher::parse(&Node::root(&doc))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn exact_is_case_sensitive_unless_ignore_case() {
        let m = matcher("exact: Foo");
        assert!(m.matches("Foo"));
        assert!(!m.matches("foo"));
        assert!(!m.matches("Foo "));
        let m = matcher("{exact: Foo, ignore_case: true}");
        assert!(m.matches("fOO"));
    }

    #[test]
    fn prefix_suffix_contains() {
        assert!(matcher("prefix: ab").matches("abc"));
        assert!(!matcher("prefix: ab").matches("a"));
        assert!(matcher("{prefix: AB, ignore_case: true}").matches("abc"));
        assert!(matcher("suffix: bc").matches("abc"));
        assert!(!matcher("suffix: bc").matches("abC"));
        assert!(matcher("{suffix: BC, ignore_case: true}").matches("abc"));
        assert!(matcher("contains: b").matches("abc"));
        assert!(!matcher("contains: B").matches("abc"));
        assert!(matcher("{contains: B, ignore_case: true}").matches("abc"));
        assert!(!matcher("{contains: Bx, ignore_case: true}").matches("abc"));
    }

    #[test]
    fn prefix_on_multibyte_value_does_not_panic() {
        // A byte-length slice inside a multi-byte character must not panic.
        let m = matcher("{prefix: ab, ignore_case: true}");
        assert!(!m.matches("é"));
        let m = matcher("{suffix: ab, ignore_case: true}");
        assert!(!m.matches("xé"));
    }

    #[test]
    fn safe_regex_is_a_full_match() {
        let m = matcher("safe_regex: {regex: 'a+'}");
        assert!(m.matches("aaa"));
        assert!(!m.matches("aaab"));
        assert!(!m.matches("baaa"));
        let m = matcher("safe_regex: {regex: 'a|b'}");
        assert!(m.matches("b"));
        assert!(!m.matches("ab"));
    }

    #[test]
    fn config_errors_name_the_field() {
        assert_eq!(
            error("{exact: a, prefix: b}"),
            "prefix: only one of exact, prefix, suffix, contains, safe_regex may be set"
        );
        assert_eq!(error("prefix: ''"), "prefix: must not be empty");
        assert_eq!(error("custom: {}"), "custom: not supported by nuncio");
        assert!(
            error("safe_regex: {regex: '('}").starts_with("safe_regex.regex: invalid regex '('")
        );
        assert!(error("{}").contains("is required"));
    }
}
