//! `Node`: a path-tracking reader over a parsed YAML document, the one way config is read.
//!
//! Every parser in nuncio (the Bootstrap here, each filter factory's `typed_config`, the route
//! table, access loggers) walks its part of the document with a `Node`, so that every error names
//! the field's full path from the document root:
//!
//! ```
//! use nuncio::config::{Node, parse_yaml};
//! let doc = parse_yaml("clusters:\n- name: app\n  connect_timeout: 5ms\n").unwrap();
//! let root = Node::root(&doc);
//! let cluster = &root.required("clusters").unwrap().as_list().unwrap()[0];
//! let err = cluster.required("connect_timeout").unwrap().duration().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "clusters[0].connect_timeout: expected a duration like \"5s\" or \"0.25s\", found \"5ms\""
//! );
//! ```
//!
//! Field names follow the protobuf JSON mapping Envoy loads YAML with: `port_value` and its
//! lowerCamelCase twin `portValue` are the same field. A YAML `null` (or an empty value) is the
//! same as an absent field, as in Envoy. Scalars follow the JSON mapping too: 64-bit (and
//! 32-bit) integers may be written as strings, wrappers like `UInt32Value` as a bare number or as
//! `{ value: N }`.
//!
//! Calls nothing but `serde_yaml`; called by every config parser.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::duration;
use super::error::{ConfigError, ErrorKind, Result};

/// The `"@type"` of a `TypedStruct` wrapper (both the old udpa and the xds names): its
/// `type_url` and `value` fields carry the real type and message.
const TYPED_STRUCT_URLS: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];

/// Parses YAML (or JSON) text into a value, resolving anchors, aliases and `<<` merge keys.
/// Syntax errors carry the line and column.
pub fn parse_yaml(text: &str) -> Result<Value> {
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| {
        let message = match e.location() {
            // serde_yaml appends its own " at line L column C"; keep only the reason.
            Some(at) => format!(
                "YAML syntax error at line {}, column {}: {}",
                at.line(),
                at.column(),
                strip_location(&e.to_string())
            ),
            None => format!("YAML error: {e}"),
        };
        ConfigError::new(ErrorKind::Syntax, "", message)
    })?;
    value
        .apply_merge()
        .map_err(|e| ConfigError::new(ErrorKind::Syntax, "", format!("YAML merge key: {e}")))?;
    Ok(value)
}

fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// A value in the config document and the path that leads to it.
///
/// Cheap to create (a borrow and a path string); parsers pass nodes by reference and create
/// children with [`get`](Node::get), [`required`](Node::required) and [`as_list`](Node::as_list).
#[derive(Clone, Debug)]
pub struct Node<'a> {
    value: &'a Value,
    path: String,
}

/// A filter's (or extension's) `typed_config`, kept uninterpreted for the factory that owns the
/// type: the type URL, the message's fields, and the path of the message in the document.
///
/// The factory reads it with [`TypedConfig::node`] (or [`Node::from_typed`]), so its errors
/// carry full paths too. A `TypedStruct` wrapper is already unwrapped here: `type_url` is the
/// inner type and `path` points at the wrapper's `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedConfig {
    /// The `"@type"`, e.g. `type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`.
    pub type_url: String,
    /// The message: a mapping (its `"@type"` key, if any, is ignored by [`Node::check_fields`]).
    pub value: Value,
    /// Path of `value` in the document, e.g. `static_resources.listeners[0].filter_chains[0].filters[0].typed_config`.
    pub path: String,
}

impl TypedConfig {
    /// A reader over the message, rooted at its path in the document.
    pub fn node(&self) -> Node<'_> {
        Node::with_path(&self.value, self.path.clone())
    }

    /// The message type name: the part of the URL after the last `/`
    /// (`envoy.extensions.filters.network.echo.v3.Echo`).
    pub fn type_name(&self) -> &str {
        type_name(&self.type_url)
    }
}

/// A part of the document kept as is for the module that owns it (the admin's `access_log`,
/// the runtime's static layer), with its path so that module's errors carry full paths.
#[derive(Clone, Debug, PartialEq)]
pub struct RawConfig {
    /// The YAML value, untouched.
    pub value: Value,
    /// Its path in the document.
    pub path: String,
}

impl RawConfig {
    /// Keeps (clones) what `node` points at.
    pub fn keep(node: &Node<'_>) -> RawConfig {
        RawConfig {
            value: node.value().clone(),
            path: node.path().to_string(),
        }
    }

    /// A reader over the kept value, rooted at its path.
    pub fn node(&self) -> Node<'_> {
        Node::with_path(&self.value, self.path.clone())
    }
}

/// The part of a type URL after its last `/`.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Describes a value's type for error messages: "a string", "a list", ...
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `port_value` -> `portValue`, the protobuf JSON name of a field.
fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn key_matches(key: &str, field: &str) -> bool {
    key == field || (field.contains('_') && key == camel_case(field))
}

/// The value of an absent message: `null`, which readers treat as an empty mapping.
static ABSENT: Value = Value::Null;

impl<'a> Node<'a> {
    /// The document root (empty path).
    pub fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    /// A node for `value`, reported under `path` (for values found elsewhere, e.g. a
    /// `TypedConfig` kept by a filter).
    pub fn with_path(value: &'a Value, path: impl Into<String>) -> Self {
        Node {
            value,
            path: path.into(),
        }
    }

    /// A node for a field that is absent (a `null` value: an empty message, an empty list),
    /// reported under `path`.
    pub fn absent(path: impl Into<String>) -> Node<'static> {
        Node {
            value: &ABSENT,
            path: path.into(),
        }
    }

    /// The reader for a filter's kept `typed_config`.
    pub fn from_typed(typed: &'a TypedConfig) -> Self {
        typed.node()
    }

    /// The path of this value, e.g. `static_resources.clusters[2].load_assignment`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw YAML value.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// An [`ErrorKind::Invalid`] error about this value.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.path.clone(), message)
    }

    /// An error of a given kind about this value.
    pub fn error_of(&self, kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError::new(kind, self.path.clone(), message)
    }

    /// The path of a field of this mapping (whether or not it is present).
    pub fn field_path(&self, field: &str) -> String {
        let plain = !field.is_empty()
            && field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.@/-:*".contains(c));
        match (plain, self.path.is_empty()) {
            (true, true) => field.to_string(),
            (true, false) => format!("{}.{}", self.path, field),
            // A key with spaces, control characters or nothing in it is shown quoted and
            // escaped, so the path stays one readable line: `a["bad key"]`.
            (false, _) => format!("{}[{:?}]", self.path, field),
        }
    }

    fn wrong_type(&self, expected: &str) -> ConfigError {
        let found = match self.value {
            Value::String(s) => format!("the string \"{s}\""),
            Value::Number(n) => format!("the number {n}"),
            Value::Bool(b) => format!("the boolean {b}"),
            other => kind_of(other).to_string(),
        };
        self.error_of(
            ErrorKind::WrongType,
            format!("expected {expected}, found {found}"),
        )
    }

    fn mapping(&self) -> Result<Option<&'a Mapping>> {
        match self.value {
            Value::Mapping(m) => Ok(Some(m)),
            Value::Null => Ok(None),
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    /// The key (as written) and value of `field` in this mapping, under its proto name or its
    /// lowerCamelCase JSON name.
    fn lookup(&self, field: &str) -> Option<(&'a str, &'a Value)> {
        let Value::Mapping(map) = self.value else {
            return None;
        };
        let camel = camel_case(field);
        map.iter().find_map(|(k, v)| match k.as_str() {
            Some(k) if (k == field || k == camel) && !v.is_null() => Some((k, v)),
            _ => None,
        })
    }

    /// The field `field` of this mapping, or `None` when it is absent or `null` (also when this
    /// is not a mapping: [`check_fields`](Node::check_fields) reports that).
    pub fn get(&self, field: &str) -> Option<Node<'a>> {
        self.lookup(field).map(|(key, value)| Node {
            value,
            path: self.field_path(key),
        })
    }

    /// Whether `field` is present (and not `null`).
    pub fn has(&self, field: &str) -> bool {
        self.lookup(field).is_some()
    }

    /// The field `field`, which must be present: `<path>.<field>: required field is missing`.
    pub fn required(&self, field: &str) -> Result<Node<'a>> {
        self.mapping()?;
        self.get(field).ok_or_else(|| {
            ConfigError::new(
                ErrorKind::Missing,
                self.field_path(field),
                "required field is missing",
            )
        })
    }

    /// Reads an optional field with `read`: `None` when absent.
    ///
    /// `node.opt("connect_timeout", Node::duration)?.unwrap_or(Duration::from_secs(5))`
    pub fn opt<T>(
        &self,
        field: &str,
        read: impl FnOnce(&Node<'a>) -> Result<T>,
    ) -> Result<Option<T>> {
        self.get(field).map(|n| read(&n)).transpose()
    }

    /// Reads every element of the list `field` with `read`; an absent field is an empty list.
    pub fn list<T>(
        &self,
        field: &str,
        mut read: impl FnMut(&Node<'a>) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self.get(field) {
            Some(list) => list.as_list()?.iter().map(&mut read).collect(),
            None => Ok(Vec::new()),
        }
    }

    /// Checks this is a mapping whose every field is in `supported`. A field in `unsupported`
    /// (one Envoy has and nuncio does not implement) gets `<path>.<field>: not supported by
    /// nuncio`; any other gets `<path>.<field>: unknown field (supported: a, b, c)`.
    /// `"@type"` is always accepted (it belongs to the enclosing `Any`).
    pub fn check_fields(&self, supported: &[&str], unsupported: &[&str]) -> Result<()> {
        let Some(map) = self.mapping()? else {
            return Ok(());
        };
        // (field, key as written) for each field seen, to catch `port_value` + `portValue`.
        let mut seen: Vec<(&str, &str)> = Vec::with_capacity(map.len());
        for key in map.keys() {
            let Some(key) = key.as_str() else {
                return Err(self.error_of(
                    ErrorKind::WrongType,
                    format!("field names must be strings, found {}", kind_of(key)),
                ));
            };
            if key == "@type" {
                continue;
            }
            if let Some(field) = supported.iter().find(|f| key_matches(key, f)) {
                if let Some((_, first)) = seen.iter().find(|(f, _)| f == field) {
                    return Err(ConfigError::invalid(
                        self.field_path(key),
                        format!("field given twice (as '{first}' and as '{key}')"),
                    ));
                }
                seen.push((field, key));
                continue;
            }
            let path = self.field_path(key);
            if unsupported.iter().any(|f| key_matches(key, f)) {
                return Err(ConfigError::new(
                    ErrorKind::NotSupported,
                    path,
                    "not supported by nuncio",
                ));
            }
            return Err(ConfigError::new(
                ErrorKind::UnknownField,
                path,
                format!("unknown field (supported: {})", supported.join(", ")),
            ));
        }
        Ok(())
    }

    /// Fails with `<path>.<field>: not supported by nuncio (<why>)` when `field` is present.
    /// Call before [`check_fields`](Node::check_fields) for fields that deserve an explanation.
    pub fn reject(&self, field: &str, why: &str) -> Result<()> {
        match self.get(field) {
            Some(node) => Err(node.error_of(
                ErrorKind::NotSupported,
                format!("not supported by nuncio ({why})"),
            )),
            None => Ok(()),
        }
    }

    /// The fields of a mapping whose keys are data (header maps, `json_format`), in document
    /// order.
    pub fn entries(&self) -> Result<Vec<(&'a str, Node<'a>)>> {
        let Some(map) = self.mapping()? else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|(k, v)| match k.as_str() {
                Some(key) => Ok((
                    key,
                    Node {
                        value: v,
                        path: self.field_path(key),
                    },
                )),
                None => Err(self.error_of(
                    ErrorKind::WrongType,
                    format!("field names must be strings, found {}", kind_of(k)),
                )),
            })
            .collect()
    }

    /// The elements of a list (`null` is an empty list), each with its `[i]` path.
    pub fn as_list(&self) -> Result<Vec<Node<'a>>> {
        match self.value {
            Value::Sequence(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{}]", self.path, i),
                })
                .collect()),
            Value::Null => Ok(Vec::new()),
            _ => Err(self.wrong_type("a list")),
        }
    }

    /// A string.
    pub fn as_str(&self) -> Result<&'a str> {
        match self.value {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type("a string")),
        }
    }

    /// A non-empty string.
    pub fn non_empty_str(&self) -> Result<&'a str> {
        let s = self.as_str()?;
        if s.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(s)
    }

    /// A boolean (`true`/`false`).
    pub fn as_bool(&self) -> Result<bool> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong_type("a boolean")),
        }
    }

    /// An integer, as a number or (JSON mapping) a decimal string, within `min..=max`.
    fn integer(&self, min: i128, max: i128) -> Result<i128> {
        let range = || format!("an integer in {min}..={max}");
        let n: i128 = match self.value {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    u as i128
                } else if let Some(i) = n.as_i64() {
                    i as i128
                } else {
                    return Err(self.wrong_type(&range()));
                }
            }
            Value::String(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| self.wrong_type(&range()))?,
            _ => return Err(self.wrong_type(&range())),
        };
        if n < min || n > max {
            return Err(self.error(format!("{n} is out of range (expected {})", range())));
        }
        Ok(n)
    }

    /// An unsigned 32-bit integer.
    pub fn as_u32(&self) -> Result<u32> {
        self.integer(0, u32::MAX as i128).map(|n| n as u32)
    }

    /// An unsigned 64-bit integer.
    pub fn as_u64(&self) -> Result<u64> {
        self.integer(0, u64::MAX as i128).map(|n| n as u64)
    }

    /// A signed 64-bit integer.
    pub fn as_i64(&self) -> Result<i64> {
        self.integer(i64::MIN as i128, i64::MAX as i128)
            .map(|n| n as i64)
    }

    /// An integer in `min..=max` (e.g. a port, a status code).
    pub fn as_u32_in(&self, min: u32, max: u32) -> Result<u32> {
        self.integer(min as i128, max as i128).map(|n| n as u32)
    }

    /// A floating point number (an integer is fine; a numeric string too, as in the JSON mapping).
    pub fn as_f64(&self) -> Result<f64> {
        let f = match self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match f {
            Some(f) if f.is_finite() => Ok(f),
            _ => Err(self.wrong_type("a number")),
        }
    }

    /// The value of a wrapper message (`UInt32Value`, `BoolValue`, ...): the bare value as in
    /// the JSON mapping, or the message form `{ value: ... }`.
    fn unwrap_wrapper(&self) -> Result<Node<'a>> {
        if let Value::Mapping(_) = self.value {
            self.check_fields(&["value"], &[])?;
            return self.required("value");
        }
        Ok(self.clone())
    }

    /// A `google.protobuf.UInt32Value`: `5` or `{ value: 5 }`.
    pub fn u32_value(&self) -> Result<u32> {
        self.unwrap_wrapper()?.as_u32()
    }

    /// A `google.protobuf.UInt64Value`: `5` or `{ value: 5 }`.
    pub fn u64_value(&self) -> Result<u64> {
        self.unwrap_wrapper()?.as_u64()
    }

    /// A `google.protobuf.BoolValue`: `true` or `{ value: true }`.
    pub fn bool_value(&self) -> Result<bool> {
        self.unwrap_wrapper()?.as_bool()
    }

    /// A `google.protobuf.DoubleValue`: `0.5` or `{ value: 0.5 }`.
    pub fn f64_value(&self) -> Result<f64> {
        self.unwrap_wrapper()?.as_f64()
    }

    /// A `google.protobuf.Duration`: `"5s"`, `"0.25s"`, or `{ seconds: 5, nanos: 250000000 }`.
    pub fn duration(&self) -> Result<Duration> {
        match self.value {
            Value::String(s) => duration::parse_duration_str(s).map_err(|m| self.error(m)),
            Value::Mapping(_) => {
                self.check_fields(&["seconds", "nanos"], &[])?;
                let seconds = self.opt("seconds", Node::as_i64)?.unwrap_or(0);
                let nanos = self.opt("nanos", Node::as_i64)?.unwrap_or(0);
                duration::from_parts(seconds, nanos).map_err(|m| self.error(m))
            }
            _ => Err(self.wrong_type("a duration like \"5s\" or \"0.25s\"")),
        }
    }

    /// A protobuf enum by name: one of `supported`; a name in `unsupported` (Envoy has it,
    /// nuncio does not) gets `not supported by nuncio`.
    pub fn enum_str(&self, supported: &[&str], unsupported: &[&str]) -> Result<&'a str> {
        let name = match self.value {
            Value::String(s) => s.as_str(),
            _ => return Err(self.wrong_type(&format!("one of {}", supported.join(", ")))),
        };
        if supported.contains(&name) {
            return Ok(name);
        }
        if unsupported.contains(&name) {
            return Err(self.error_of(
                ErrorKind::NotSupported,
                format!(
                    "value '{name}' is not supported by nuncio (supported: {})",
                    supported.join(", ")
                ),
            ));
        }
        Err(self.error(format!(
            "unknown value '{name}' (expected one of: {})",
            supported.join(", ")
        )))
    }

    /// This node as a `google.protobuf.Any`: its `"@type"` URL and the message node. A
    /// `TypedStruct` is unwrapped to its `type_url` and `value`.
    pub fn any(&self) -> Result<(&'a str, Node<'a>)> {
        self.mapping()?;
        let type_url = self.required("@type")?.non_empty_str()?;
        if !TYPED_STRUCT_URLS.contains(&type_url) {
            return Ok((type_url, self.clone()));
        }
        self.check_fields(&["type_url", "value"], &[])?;
        let inner_url = self.required("type_url")?.non_empty_str()?;
        let value = self
            .get("value")
            .unwrap_or_else(|| Node::absent(self.field_path("value")));
        value.mapping()?;
        Ok((inner_url, value))
    }

    /// This node as a `typed_config`, kept (cloned) for the factory of its type.
    pub fn typed_config(&self) -> Result<TypedConfig> {
        let (type_url, message) = self.any()?;
        Ok(TypedConfig {
            type_url: type_url.to_string(),
            value: message.value.clone(),
            path: message.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Value {
        parse_yaml(text).expect("test YAML parses")
    }

    fn err_string<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn paths_through_mappings_and_lists() {
        let v = doc("a:\n  b:\n  - c: 1\n  - c: x\n");
        let root = Node::root(&v);
        let items = root
            .required("a")
            .unwrap()
            .required("b")
            .unwrap()
            .as_list()
            .unwrap();
        assert_eq!(items[1].path(), "a.b[1]");
        assert_eq!(items[1].required("c").unwrap().path(), "a.b[1].c");
        assert_eq!(
            err_string(items[1].required("c").unwrap().as_u32()),
            "a.b[1].c: expected an integer in 0..=4294967295, found the string \"x\""
        );
        assert_eq!(
            err_string(items[0].required("d")),
            "a.b[0].d: required field is missing"
        );
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        let v = doc("a:\n  \"b c\": 1\n  \"\": 2\n  \"x\\ny\": 3\n  envoy.ext.v3.X: 4\n");
        let a = Node::root(&v).required("a").unwrap();
        let keys: Vec<String> = a
            .entries()
            .unwrap()
            .into_iter()
            .map(|(_, n)| n.path().to_string())
            .collect();
        assert_eq!(
            keys,
            ["a[\"b c\"]", "a[\"\"]", "a[\"x\\ny\"]", "a.envoy.ext.v3.X"]
        );
    }

    #[test]
    fn null_is_absent() {
        let v = doc("a: null\nb:\nc: []\n");
        let root = Node::root(&v);
        assert!(root.get("a").is_none());
        assert!(root.get("b").is_none());
        assert_eq!(
            err_string(root.required("b")),
            "b: required field is missing"
        );
        assert!(root.list("b", Node::as_str).unwrap().is_empty());
        assert!(root.required("c").unwrap().as_list().unwrap().is_empty());
    }

    #[test]
    fn camel_case_json_names() {
        let v = doc("portValue: 80\nname: x\n");
        let root = Node::root(&v);
        let port = root.required("port_value").unwrap();
        assert_eq!(port.path(), "portValue");
        assert_eq!(port.as_u32().unwrap(), 80);
        root.check_fields(&["port_value", "name"], &[]).unwrap();
        let both = doc("portValue: 80\nport_value: 81\n");
        assert_eq!(
            err_string(Node::root(&both).check_fields(&["port_value"], &[])),
            "port_value: field given twice (as 'portValue' and as 'port_value')"
        );
    }

    #[test]
    fn unknown_and_unsupported_fields() {
        let v = doc("x:\n  name: a\n  colour: red\n");
        let x = Node::root(&v).required("x").unwrap();
        assert_eq!(
            err_string(x.check_fields(&["name", "address"], &[])),
            "x.colour: unknown field (supported: name, address)"
        );
        assert_eq!(
            err_string(x.check_fields(&["name"], &["colour"])),
            "x.colour: not supported by nuncio"
        );
        let e = x.check_fields(&["name"], &["colour"]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        assert_eq!(
            err_string(x.reject("colour", "comes with TLS")),
            "x.colour: not supported by nuncio (comes with TLS)"
        );
        x.reject("shape", "whatever").unwrap();
        let not_map = doc("x: [1]\n");
        assert_eq!(
            err_string(
                Node::root(&not_map)
                    .required("x")
                    .unwrap()
                    .check_fields(&[], &[])
            ),
            "x: expected a mapping, found a list"
        );
        let int_key = doc("1: a\n");
        assert_eq!(
            err_string(Node::root(&int_key).check_fields(&["a"], &[])),
            "field names must be strings, found a number"
        );
    }

    #[test]
    fn scalars() {
        let v = doc("s: str\nb: true\nn: 7\nneg: -1\nbig: 4294967296\nq: \"12\"\nf: 0.5\nl: [1]\n");
        let r = Node::root(&v);
        let f = |name: &str| r.required(name).unwrap();
        assert_eq!(f("s").as_str().unwrap(), "str");
        assert!(f("b").as_bool().unwrap());
        assert_eq!(f("n").as_u32().unwrap(), 7);
        assert_eq!(f("q").as_u64().unwrap(), 12);
        assert_eq!(f("big").as_u64().unwrap(), 4_294_967_296);
        assert_eq!(f("neg").as_i64().unwrap(), -1);
        assert_eq!(f("f").as_f64().unwrap(), 0.5);
        assert_eq!(f("n").as_f64().unwrap(), 7.0);
        assert_eq!(
            err_string(f("n").as_str()),
            "n: expected a string, found the number 7"
        );
        assert_eq!(
            err_string(f("s").as_bool()),
            "s: expected a boolean, found the string \"str\""
        );
        assert_eq!(
            err_string(f("l").as_str()),
            "l: expected a string, found a list"
        );
        assert_eq!(
            err_string(f("neg").as_u32()),
            "neg: -1 is out of range (expected an integer in 0..=4294967295)"
        );
        assert_eq!(
            err_string(f("big").as_u32()),
            "big: 4294967296 is out of range (expected an integer in 0..=4294967295)"
        );
        assert_eq!(
            err_string(f("f").as_u32()),
            "f: expected an integer in 0..=4294967295, found the number 0.5"
        );
        assert_eq!(
            err_string(f("n").as_u32_in(1, 5)),
            "n: 7 is out of range (expected an integer in 1..=5)"
        );
    }

    #[test]
    fn wrappers() {
        let v = doc("a: 5\nb: {value: 6}\nc: {value: 7, other: 1}\nd: {}\ne: {value: true}\n");
        let r = Node::root(&v);
        assert_eq!(r.required("a").unwrap().u32_value().unwrap(), 5);
        assert_eq!(r.required("b").unwrap().u32_value().unwrap(), 6);
        assert_eq!(
            err_string(r.required("c").unwrap().u32_value()),
            "c.other: unknown field (supported: value)"
        );
        assert_eq!(
            err_string(r.required("d").unwrap().u32_value()),
            "d.value: required field is missing"
        );
        assert!(r.required("e").unwrap().bool_value().unwrap());
    }

    #[test]
    fn durations() {
        let v = doc("a: 0.25s\nb: {seconds: 5, nanos: 1000}\nc: 5\nd: 5ms\ne: {seconds: -1}\nf: {minutes: 1}\n");
        let r = Node::root(&v);
        assert_eq!(
            r.required("a").unwrap().duration().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            r.required("b").unwrap().duration().unwrap(),
            Duration::new(5, 1000)
        );
        assert_eq!(
            err_string(r.required("c").unwrap().duration()),
            "c: expected a duration like \"5s\" or \"0.25s\", found the number 5"
        );
        assert_eq!(
            err_string(r.required("d").unwrap().duration()),
            "d: expected a duration like \"5s\" or \"0.25s\", found \"5ms\""
        );
        assert_eq!(
            err_string(r.required("e").unwrap().duration()),
            "e: negative duration is not allowed"
        );
        assert_eq!(
            err_string(r.required("f").unwrap().duration()),
            "f.minutes: unknown field (supported: seconds, nanos)"
        );
        assert_eq!(
            r.opt("zz", Node::duration)
                .unwrap()
                .unwrap_or(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn enums() {
        let v = doc("t: STATIC\nu: EDS\nw: FOO\nn: 1\n");
        let r = Node::root(&v);
        let sup = ["STATIC", "STRICT_DNS"];
        assert_eq!(
            r.required("t").unwrap().enum_str(&sup, &["EDS"]).unwrap(),
            "STATIC"
        );
        assert_eq!(
            err_string(r.required("u").unwrap().enum_str(&sup, &["EDS"])),
            "u: value 'EDS' is not supported by nuncio (supported: STATIC, STRICT_DNS)"
        );
        assert_eq!(
            err_string(r.required("w").unwrap().enum_str(&sup, &["EDS"])),
            "w: unknown value 'FOO' (expected one of: STATIC, STRICT_DNS)"
        );
        assert_eq!(
            err_string(r.required("n").unwrap().enum_str(&sup, &[])),
            "n: expected one of STATIC, STRICT_DNS, found the number 1"
        );
    }

    #[test]
    fn typed_configs() {
        let v = doc(concat!(
            "f:\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.x.v3.Echo\n    a: 1\n",
            "g:\n  typed_config:\n    a: 1\n",
            "h:\n  typed_config:\n    \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n",
            "    type_url: type.googleapis.com/envoy.x.v3.Proxy\n    value:\n      cluster: c\n",
        ));
        let r = Node::root(&v);
        let tc = r
            .required("f")
            .unwrap()
            .required("typed_config")
            .unwrap()
            .typed_config()
            .unwrap();
        assert_eq!(tc.type_url, "type.googleapis.com/envoy.x.v3.Echo");
        assert_eq!(tc.type_name(), "envoy.x.v3.Echo");
        assert_eq!(tc.path, "f.typed_config");
        let n = Node::from_typed(&tc);
        n.check_fields(&["a"], &[]).unwrap();
        assert_eq!(
            err_string(n.check_fields(&["b"], &[])),
            "f.typed_config.a: unknown field (supported: b)"
        );
        assert_eq!(
            err_string(
                r.required("g")
                    .unwrap()
                    .required("typed_config")
                    .unwrap()
                    .typed_config()
            ),
            "g.typed_config.@type: required field is missing"
        );
        let ts = r
            .required("h")
            .unwrap()
            .required("typed_config")
            .unwrap()
            .typed_config()
            .unwrap();
        assert_eq!(ts.type_url, "type.googleapis.com/envoy.x.v3.Proxy");
        assert_eq!(ts.path, "h.typed_config.value");
        assert_eq!(
            ts.node().required("cluster").unwrap().as_str().unwrap(),
            "c"
        );
    }

    #[test]
    fn entries_in_order() {
        let v = doc("m:\n  z: 1\n  a: 2\n");
        let m = Node::root(&v).required("m").unwrap();
        let e = m.entries().unwrap();
        assert_eq!(e.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["z", "a"]);
        assert_eq!(e[1].1.path(), "m.a");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = parse_yaml("a: 1\nb: [1, 2\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert!(
            e.to_string()
                .starts_with("YAML syntax error at line 3, column 1: "),
            "{e}"
        );
        let e = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "YAML syntax error at line 1, column 1: duplicate entry with key \"a\""
        );
    }

    #[test]
    fn merge_keys_and_aliases() {
        let v = doc("base: &b\n  x: 1\nc:\n  <<: *b\n  y: 2\nd: *b\n");
        let r = Node::root(&v);
        assert_eq!(
            r.required("c")
                .unwrap()
                .required("x")
                .unwrap()
                .as_u32()
                .unwrap(),
            1
        );
        assert_eq!(
            r.required("d")
                .unwrap()
                .required("x")
                .unwrap()
                .as_u32()
                .unwrap(),
            1
        );
    }
}
