//! `HeaderParser`: one level's `*_headers_to_add` / `*_headers_to_remove` (route config, virtual
//! host, route, weighted cluster), and how it edits a header map.
//!
//! Evaluation follows Envoy's `HeaderParser::evaluateHeaders`: first every header in
//! `headers_to_remove` is removed; then each `headers_to_add` value is formatted (all of them,
//! against the map as it is after the removals) and classified by its `append_action`:
//! - `APPEND_IF_EXISTS_OR_ADD` (the default, and legacy `append: true`): appended;
//! - `ADD_IF_ABSENT`: appended only if the header was absent;
//! - `OVERWRITE_IF_EXISTS_OR_ADD` (legacy `append: false`): replaces every value;
//! - `OVERWRITE_IF_EXISTS`: replaces every value, only if present.
//!
//! Then all overwrites are applied, then all appends. A value that formats to `""` is skipped
//! unless `keep_empty_value`. `:`-prefixed names and `host` may not be added or removed (Envoy's
//! wording). The order between levels is the caller's (`Route::finalize_request_headers`).

use super::formatter::{FormatterContext, HeaderFormatter};
use super::header_map::HeaderMapAccess;
use crate::config::{ErrorKind, Node, Result};

/// Envoy's `HeaderValueOption.HeaderAppendAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAction {
    /// Append a value; add the header if absent.
    AppendIfExistsOrAdd,
    /// Add only if the header is absent.
    AddIfAbsent,
    /// Replace every value; add if absent.
    OverwriteIfExistsOrAdd,
    /// Replace every value; do nothing if absent.
    OverwriteIfExists,
}

/// One `headers_to_add` entry.
#[derive(Clone, Debug)]
struct HeaderToAdd {
    name: String,
    value: HeaderFormatter,
    action: AppendAction,
    keep_empty_value: bool,
}

/// The header edits of one configuration level.
#[derive(Clone, Debug, Default)]
pub struct HeaderParser {
    to_add: Vec<HeaderToAdd>,
    to_remove: Vec<String>,
}

impl HeaderParser {
    /// Reads the lists `add_field` (HeaderValueOption[]) and `remove_field` (string[]) of `node`.
    pub fn parse(node: &Node, add_field: &str, remove_field: &str) -> Result<HeaderParser> {
        let to_add = node.list(add_field, parse_header_value_option)?;
        let to_remove = node.list(remove_field, |n| {
            let name = n.non_empty_str()?;
            check_header_name(n, name)?;
            if !is_modifiable(name) {
                return Err(n.error(":-prefixed or host headers may not be removed"));
            }
            Ok(name.to_ascii_lowercase())
        })?;
        Ok(HeaderParser { to_add, to_remove })
    }

    /// Whether this level edits nothing.
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty() && self.to_remove.is_empty()
    }

    /// Edits request headers; `%REQ(...)%` reads `headers` themselves (as edited by the levels
    /// evaluated before this one).
    pub fn evaluate_request<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &mut H,
        ctx: &FormatterContext,
    ) {
        self.evaluate(headers, |f, h, out| f.format(h, ctx, out));
    }

    /// Edits response headers; `%REQ(...)%` reads `request`.
    pub fn evaluate_response<R, Q>(&self, response: &mut R, request: &Q, ctx: &FormatterContext)
    where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
    {
        self.evaluate(response, |f, _, out| f.format(request, ctx, out));
    }

    fn evaluate<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &mut H,
        format: impl Fn(&HeaderFormatter, &H, &mut String),
    ) {
        if self.is_empty() {
            return;
        }
        for name in &self.to_remove {
            headers.remove(name);
        }
        // Decide every entry against the same state of the map, then apply (overwrites first).
        let mut overwrite: Vec<(&str, String)> = Vec::new();
        let mut append: Vec<(&str, String)> = Vec::new();
        for entry in &self.to_add {
            let mut value = String::new();
            format(&entry.value, headers, &mut value);
            if value.is_empty() && !entry.keep_empty_value {
                continue;
            }
            let present = || headers.contains(&entry.name);
            match entry.action {
                AppendAction::AppendIfExistsOrAdd => append.push((&entry.name, value)),
                AppendAction::AddIfAbsent if !present() => append.push((&entry.name, value)),
                AppendAction::AddIfAbsent => {}
                AppendAction::OverwriteIfExists if !present() => {}
                AppendAction::OverwriteIfExists | AppendAction::OverwriteIfExistsOrAdd => {
                    overwrite.push((&entry.name, value))
                }
            }
        }
        for (name, value) in overwrite {
            headers.set(name, &value);
        }
        for (name, value) in append {
            headers.add(name, &value);
        }
    }
}

fn parse_header_value_option(node: &Node) -> Result<HeaderToAdd> {
    node.check_fields(
        &["header", "append", "append_action", "keep_empty_value"],
        &[],
    )?;
    let header = node.required("header")?;
    header.check_fields(&["key", "value"], &["raw_value"])?;
    let key_node = header.required("key")?;
    let key = key_node.non_empty_str()?;
    check_header_name(&key_node, key)?;
    if !is_modifiable(key) {
        return Err(key_node.error(":-prefixed or host headers may not be modified"));
    }
    let value_node = header.get("value");
    let raw = match &value_node {
        Some(n) => n.as_str()?,
        None => "",
    };
    if raw.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        let n = value_node.unwrap_or_else(|| header.clone());
        return Err(n.error("header values may not contain CR, LF or NUL"));
    }
    let value = HeaderFormatter::parse(raw).map_err(|m| match &value_node {
        Some(n) => n.error(m),
        None => header.error(m),
    })?;
    let mut action = match node.get("append_action") {
        Some(n) => match n.enum_str(
            &[
                "APPEND_IF_EXISTS_OR_ADD",
                "ADD_IF_ABSENT",
                "OVERWRITE_IF_EXISTS_OR_ADD",
                "OVERWRITE_IF_EXISTS",
            ],
            &[],
        )? {
            "ADD_IF_ABSENT" => AppendAction::AddIfAbsent,
            "OVERWRITE_IF_EXISTS_OR_ADD" => AppendAction::OverwriteIfExistsOrAdd,
            "OVERWRITE_IF_EXISTS" => AppendAction::OverwriteIfExists,
            _ => AppendAction::AppendIfExistsOrAdd,
        },
        None => AppendAction::AppendIfExistsOrAdd,
    };
    if let Some(append) = node.get("append") {
        if action != AppendAction::AppendIfExistsOrAdd {
            return Err(append.error_of(
                ErrorKind::Invalid,
                "Both append and append_action are set and it's not allowed",
            ));
        }
        if !append.bool_value()? {
            action = AppendAction::OverwriteIfExistsOrAdd;
        }
    }
    Ok(HeaderToAdd {
        name: key.to_ascii_lowercase(),
        value,
        action,
        keep_empty_value: node
            .opt("keep_empty_value", Node::as_bool)?
            .unwrap_or(false),
    })
}

fn is_modifiable(name: &str) -> bool {
    !name.starts_with(':') && !name.eq_ignore_ascii_case("host")
}

/// RFC 9110 `token` characters (a leading `:` is let through for the modifiable check to name).
fn check_header_name(node: &Node, name: &str) -> Result<()> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let body = name.strip_prefix(':').unwrap_or(name);
    if body.is_empty() || !body.bytes().all(tchar) {
        return Err(node.error(format!("'{name}' is not a valid header name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::router::header_map::VecHeaderMap;

    fn parser(yaml: &str) -> HeaderParser {
        let doc = parse_yaml(yaml).unwrap();
        HeaderParser::parse(
            &Node::root(&doc),
            "request_headers_to_add",
            "request_headers_to_remove",
        )
        .unwrap()
    }

    fn error(yaml: &str) -> String {
        let doc = parse_yaml(yaml).unwrap();
        HeaderParser::parse(
            &Node::root(&doc),
            "request_headers_to_add",
            "request_headers_to_remove",
        )
        .unwrap_err()
        .to_string()
    }

    fn apply(p: &HeaderParser, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut map = VecHeaderMap::from_pairs(headers);
        p.evaluate_request(&mut map, &FormatterContext::default());
        map.entries
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn append_actions() {
        let p = parser(
            r#"
request_headers_to_add:
- header: {key: x-append, value: new}
- header: {key: x-absent, value: new}
  append_action: ADD_IF_ABSENT
- header: {key: x-over, value: new}
  append_action: OVERWRITE_IF_EXISTS_OR_ADD
- header: {key: x-over-if, value: new}
  append_action: OVERWRITE_IF_EXISTS
- header: {key: x-over-if-missing, value: new}
  append_action: OVERWRITE_IF_EXISTS
"#,
        );
        let out = apply(
            &p,
            &[
                ("x-append", "old"),
                ("x-absent", "old"),
                ("x-over", "old1"),
                ("x-over", "old2"),
                ("x-over-if", "old"),
                ("other", "o"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("x-append", "old"),
                ("x-absent", "old"),
                ("other", "o"),
                ("x-over", "new"),
                ("x-over-if", "new"),
                ("x-append", "new"),
            ])
        );
        let out = apply(&p, &[]);
        assert_eq!(
            out,
            pairs(&[("x-over", "new"), ("x-append", "new"), ("x-absent", "new")])
        );
    }

    /// The same edits run through Envoy 1.40 (echo upstream): the forwarded order is below.
    #[test]
    fn observed_on_envoy() {
        let p = parser(
            r#"
request_headers_to_add:
- header: {key: x-append, value: new}
- header: {key: x-absent, value: new}
  append_action: ADD_IF_ABSENT
- header: {key: x-absent2, value: new}
  append_action: ADD_IF_ABSENT
- header: {key: x-over, value: new}
  append_action: OVERWRITE_IF_EXISTS_OR_ADD
- header: {key: x-overif, value: new}
  append_action: OVERWRITE_IF_EXISTS
- header: {key: x-overif2, value: new}
  append_action: OVERWRITE_IF_EXISTS
- header: {key: x-legacy, value: new}
  append: false
- header: {key: x-dup, value: "1"}
- header: {key: x-dup, value: "2"}
  append_action: ADD_IF_ABSENT
request_headers_to_remove: [x-gone]
"#,
        );
        let out = apply(
            &p,
            &[
                ("x-append", "old"),
                ("x-absent", "old"),
                ("x-over", "o1"),
                ("x-over", "o2"),
                ("x-overif", "old"),
                ("x-legacy", "old"),
                ("x-gone", "1"),
                ("x-keep", "k"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("x-append", "old"),
                ("x-absent", "old"),
                ("x-keep", "k"),
                ("x-over", "new"),
                ("x-overif", "new"),
                ("x-legacy", "new"),
                ("x-append", "new"),
                ("x-absent2", "new"),
                ("x-dup", "1"),
                ("x-dup", "2"),
            ])
        );
    }

    #[test]
    fn legacy_append_false_overwrites() {
        let p = parser("request_headers_to_add: [{header: {key: X-A, value: v}, append: false}]");
        assert_eq!(
            apply(&p, &[("x-a", "1"), ("x-a", "2")]),
            pairs(&[("x-a", "v")])
        );
        let p = parser(
            "request_headers_to_add: [{header: {key: x-a, value: v}, append: {value: true}}]",
        );
        assert_eq!(
            apply(&p, &[("x-a", "1")]),
            pairs(&[("x-a", "1"), ("x-a", "v")])
        );
    }

    #[test]
    fn removal_happens_before_additions() {
        let p = parser(
            "{request_headers_to_add: [{header: {key: x-a, value: v}, append_action: ADD_IF_ABSENT}], request_headers_to_remove: [X-A]}",
        );
        assert_eq!(apply(&p, &[("x-a", "1")]), pairs(&[("x-a", "v")]));
    }

    #[test]
    fn add_if_absent_sees_the_map_before_this_level_adds() {
        let p = parser(
            r#"
request_headers_to_add:
- header: {key: x-a, value: "1"}
- header: {key: x-a, value: "2"}
  append_action: ADD_IF_ABSENT
"#,
        );
        assert_eq!(apply(&p, &[]), pairs(&[("x-a", "1"), ("x-a", "2")]));
    }

    #[test]
    fn empty_values_are_skipped_unless_kept() {
        let p = parser(
            r#"
request_headers_to_add:
- header: {key: x-missing, value: "%REQ(x-nothere)%"}
- header: {key: x-kept, value: "%REQ(x-nothere)%"}
  keep_empty_value: true
- header: {key: x-novalue}
"#,
        );
        assert_eq!(apply(&p, &[]), pairs(&[("x-kept", "")]));
    }

    #[test]
    fn req_reads_the_request_being_edited() {
        let p =
            parser("request_headers_to_add: [{header: {key: x-copy, value: 'was %REQ(x-in)%'}}]");
        assert_eq!(
            apply(&p, &[("x-in", "a")]),
            pairs(&[("x-in", "a"), ("x-copy", "was a")])
        );
    }

    #[test]
    fn response_side_reads_the_request() {
        let doc =
            parse_yaml("response_headers_to_add: [{header: {key: x-echo, value: '%REQ(x-in)%'}}]")
                .unwrap();
        let p = HeaderParser::parse(
            &Node::root(&doc),
            "response_headers_to_add",
            "response_headers_to_remove",
        )
        .unwrap();
        let request = VecHeaderMap::from_pairs(&[("x-in", "q")]);
        let mut response = VecHeaderMap::new();
        p.evaluate_response(&mut response, &request, &FormatterContext::default());
        assert_eq!(response.values("x-echo"), vec!["q"]);
    }

    #[test]
    fn config_errors_use_envoy_wording_and_paths() {
        assert_eq!(
            error("request_headers_to_add: [{header: {key: ':path', value: /x}}]"),
            "request_headers_to_add[0].header.key: :-prefixed or host headers may not be modified"
        );
        assert_eq!(
            error("request_headers_to_remove: [Host]"),
            "request_headers_to_remove[0]: :-prefixed or host headers may not be removed"
        );
        assert_eq!(
            error("request_headers_to_add: [{header: {key: x, value: y}, append: true, append_action: ADD_IF_ABSENT}]"),
            "request_headers_to_add[0].append: Both append and append_action are set and it's not allowed"
        );
        assert_eq!(
            error("request_headers_to_add: [{header: {key: x, value: '%FOO%'}}]"),
            "request_headers_to_add[0].header.value: Not supported field in StreamInfo: FOO"
        );
        assert_eq!(
            error("request_headers_to_add: [{header: {key: 'a b', value: y}}]"),
            "request_headers_to_add[0].header.key: 'a b' is not a valid header name"
        );
        assert_eq!(
            error("request_headers_to_add: [{header: {key: x, raw_value: eQ==}}]"),
            "request_headers_to_add[0].header.raw_value: not supported by nuncio"
        );
        assert!(
            error("request_headers_to_add: [{header: {key: x, value: \"a\\nb\"}}]")
                .ends_with("header values may not contain CR, LF or NUL")
        );
    }
}
