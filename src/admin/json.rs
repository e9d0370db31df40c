//! JSON for the admin endpoint: Envoy's pretty-printing (one space per level, as its protobuf
//! JSON printer does) and the conversion of the loaded YAML config into JSON for
//! `/config_dump`.
//!
//! Called by the handlers that answer JSON; uses `serde_json` (key order preserved).

use serde_json::{Map, Value};

/// `value` printed as Envoy prints admin JSON, with a trailing newline.
pub fn pretty(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing a `Value` into a Vec cannot fail (no I/O, string keys only).
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return "{}\n".to_string();
    }
    let mut s = String::from_utf8(out).unwrap_or_default();
    s.push('\n');
    s
}

/// A YAML value as JSON: mapping keys become strings, tags are dropped, non-finite floats
/// become strings (JSON has none).
pub fn from_yaml(value: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_u64() {
                Value::from(i)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(from_yaml).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => match from_yaml(other) {
                        Value::String(s) => s,
                        v => v.to_string(),
                    },
                };
                out.insert(key, from_yaml(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => from_yaml(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_prints_like_envoy() {
        let v = serde_json::json!({"a": [1, {"b": "c"}], "z": true});
        assert_eq!(
            pretty(&v),
            "{\n \"a\": [\n  1,\n  {\n   \"b\": \"c\"\n  }\n ],\n \"z\": true\n}\n"
        );
    }

    #[test]
    fn yaml_to_json_keeps_order_and_stringifies_keys() {
        let y: serde_yaml::Value =
            serde_yaml::from_str("z: 1\na: [x, 2.5, null]\n3: !t yes\n").unwrap();
        let j = from_yaml(&y);
        assert_eq!(j.to_string(), r#"{"z":1,"a":["x",2.5,null],"3":"yes"}"#);
    }
}
