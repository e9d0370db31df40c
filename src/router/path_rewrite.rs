//! `PathRewrite`: a route's (or redirect's) `prefix_rewrite` or `regex_rewrite`.
//!
//! `prefix_rewrite` replaces the part of `:path` the route matched (the configured prefix or
//! path; for a `safe_regex` route, the whole path before the query) and keeps the rest,
//! query included: prefix `/ra` rewritten to `/` turns `/ra/b?x` into `//b?x`, exactly as Envoy
//! 1.40 does. An empty `prefix_rewrite` means no rewrite. `regex_rewrite` replaces every match
//! of its pattern in the path before the query, with RE2's `\1` back-references; the query is
//! kept.

use regex::Regex;

use super::string_matcher::search_regex;
use crate::config::{Node, Result};

/// One path rewrite.
#[derive(Clone, Debug)]
pub enum PathRewrite {
    /// Replace the matched prefix with this.
    Prefix(String),
    /// Replace every match of `regex` in the path (without query) with `replacement`, which
    /// is already in the `regex` crate's syntax (`${1}`).
    Regex { regex: Regex, replacement: String },
}

impl PathRewrite {
    /// Reads `prefix_rewrite` / `regex_rewrite` of a route action or redirect (at most one;
    /// `also_exclusive` lists further fields of the same oneof, e.g. `path_redirect`).
    pub fn parse(node: &Node, also_exclusive: &[&str]) -> Result<Option<PathRewrite>> {
        let mut set: Vec<&str> = ["prefix_rewrite", "regex_rewrite"]
            .into_iter()
            .chain(also_exclusive.iter().copied())
            .filter(|f| node.has(f))
            .collect();
        if set.len() > 1 {
            let names: Vec<&str> = ["prefix_rewrite", "regex_rewrite"]
                .into_iter()
                .chain(also_exclusive.iter().copied())
                .collect();
            let second = set.remove(1);
            return Err(node
                .required(second)?
                .error(format!("specify only one of {}", names.join(", "))));
        }
        if let Some(n) = node.get("prefix_rewrite") {
            let prefix = n.as_str()?;
            check_path_chars(&n, prefix)?;
            return Ok((!prefix.is_empty()).then(|| PathRewrite::Prefix(prefix.to_string())));
        }
        let Some(n) = node.get("regex_rewrite") else {
            return Ok(None);
        };
        n.check_fields(&["pattern", "substitution"], &[])?;
        let pattern = n.required("pattern")?;
        pattern.check_fields(&["regex", "google_re2"], &[])?;
        let regex_node = pattern.required("regex")?;
        let regex = search_regex(&regex_node, regex_node.non_empty_str()?)?;
        let sub_node = n.required("substitution")?;
        let substitution = sub_node.as_str()?;
        check_path_chars(&sub_node, substitution)?;
        let replacement = re2_substitution(substitution, regex.captures_len() - 1)
            .map_err(|m| sub_node.error(m))?;
        Ok(Some(PathRewrite::Regex { regex, replacement }))
    }

    /// The rewritten `:path`. `matched_len` is the length of the matched part (see module
    /// docs); it is at most the length of the path before the query.
    pub fn apply(&self, path: &str, matched_len: usize) -> String {
        match self {
            PathRewrite::Prefix(prefix) => {
                let rest = path.get(matched_len..).unwrap_or("");
                let mut out = String::with_capacity(prefix.len() + rest.len());
                out.push_str(prefix);
                out.push_str(rest);
                out
            }
            PathRewrite::Regex { regex, replacement } => {
                let end = path_end(path);
                let mut out = regex
                    .replace_all(&path[..end], replacement.as_str())
                    .into_owned();
                out.push_str(&path[end..]);
                out
            }
        }
    }
}

/// The length of the path before any `?query` or `#fragment` (Envoy's
/// `PathUtil::removeQueryAndFragment`).
pub fn path_end(path: &str) -> usize {
    path.find(['?', '#']).unwrap_or(path.len())
}

fn check_path_chars(node: &Node, value: &str) -> Result<()> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(node.error("may not contain CR, LF or NUL"));
    }
    Ok(())
}

/// Converts an RE2 rewrite string (`\0`-`\9` groups, `\\` a backslash) into the `regex` crate's
/// replacement syntax, checking group numbers against `groups` (as RE2's `CheckRewriteString`).
fn re2_substitution(sub: &str, groups: usize) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(sub.len() + 8);
    let mut chars = sub.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d @ '0'..='9') => {
                    let n = d as usize - '0' as usize;
                    if n > groups {
                        return Err(format!(
                            "substitution '{sub}' refers to group \\{n} but the pattern has {groups} capture group(s)"
                        ));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                _ => {
                    return Err(format!(
                    "substitution '{sub}': a backslash must be followed by a digit or a backslash"
                ))
                }
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn rewrite(yaml: &str) -> Result<Option<PathRewrite>> {
        let doc = parse_yaml(yaml).unwrap();
        PathRewrite::parse(&Node::root(&doc), &[])
    }

    #[test]
    fn prefix_rewrite_keeps_the_rest_and_the_query() {
        let r = rewrite("prefix_rewrite: /").unwrap().unwrap();
        assert_eq!(r.apply("/ra/b?x", 3), "//b?x");
        let r = rewrite("prefix_rewrite: /v2").unwrap().unwrap();
        assert_eq!(r.apply("/api/users?id=1", 4), "/v2/users?id=1");
        assert_eq!(r.apply("/api", 4), "/v2");
        assert!(rewrite("prefix_rewrite: ''").unwrap().is_none());
    }

    #[test]
    fn regex_rewrite_with_re2_groups_keeps_the_query() {
        let r =
            rewrite(r#"regex_rewrite: {pattern: {regex: "^/rc/(.*)$"}, substitution: "/c/\\1"}"#)
                .unwrap()
                .unwrap();
        assert_eq!(r.apply("/rc/d/e?z=1", 0), "/c/d/e?z=1");
        let r = rewrite(r#"regex_rewrite: {pattern: {regex: "o"}, substitution: "0$"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.apply("/foo/boo?o", 0), "/f0$0$/b0$0$?o");
        // Envoy's documented example.
        let r = rewrite(
            r#"regex_rewrite: {pattern: {regex: "^/service/([^/]+)(/.*)$"}, substitution: "\\2/instance/\\1"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.apply("/service/foo/v1/api", 0), "/v1/api/instance/foo");
    }

    #[test]
    fn empty_matches_and_dollars_as_envoy() {
        // Observed on Envoy 1.40: `x*` -> `-` turns /empty/ab into -/-e-m-p-t-y-/-a-b-.
        let r = rewrite(r#"regex_rewrite: {pattern: {regex: "x*"}, substitution: "-"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.apply("/empty/ab", 0), "-/-e-m-p-t-y-/-a-b-");
        // `$` is literal in an RE2 rewrite: /dollar -> /$1d.
        let r = rewrite(r#"regex_rewrite: {pattern: {regex: "dollar"}, substitution: "$1d"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.apply("/dollar", 0), "/$1d");
    }

    #[test]
    fn errors() {
        let err = |y: &str| rewrite(y).unwrap_err().to_string();
        assert_eq!(
            err(r#"{prefix_rewrite: /b, regex_rewrite: {pattern: {regex: a}, substitution: b}}"#),
            "regex_rewrite: specify only one of prefix_rewrite, regex_rewrite"
        );
        assert!(
            err(r#"regex_rewrite: {pattern: {regex: "(a)"}, substitution: "\\2"}"#)
                .contains("refers to group \\2 but the pattern has 1 capture group(s)")
        );
        assert!(
            err(r#"regex_rewrite: {pattern: {regex: "a"}, substitution: "\\x"}"#)
                .contains("a backslash must be followed")
        );
    }
}
