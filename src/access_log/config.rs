//! The `access_log[]` config of the HTTP connection manager and tcp_proxy (Envoy's
//! `envoy.config.accesslog.v3.AccessLog`): a name, an optional `filter`, and a `typed_config`
//! for one of the loggers nuncio has:
//!
//! - `envoy.access_loggers.file`: `type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog`
//!   (`path`, `log_format`, and the deprecated `format` / `json_format` / `typed_json_format`);
//! - `envoy.access_loggers.stdout` / `stderr`: `...access_loggers.stream.v3.StdoutAccessLog` /
//!   `StderrAccessLog` (`log_format`).
//!
//! `log_format` (`SubstitutionFormatString`) takes `text_format_source` (`inline_string` or
//! `filename`), `text_format`, `json_format` and `omit_empty_values`; with none, Envoy's default
//! format is used. Parsed at config load (every error carries its path); turned into a running
//! `AccessLog` by `AccessLogManager::create`.

use crate::config::{ConfigError, ErrorKind, Node, Result, TypedConfig};

use super::filter::AccessLogFilter;
use super::formatter::{FormatError, Formatter};

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A file, opened for append (created if missing).
    File(String),
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// One parsed `access_log[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// The entry's `name` (informational).
    pub name: String,
    /// The entry's `filter`, if any.
    pub filter: Option<AccessLogFilter>,
    /// Where lines go.
    pub destination: Destination,
    /// How lines look.
    pub formatter: Formatter,
    /// Path of the field that names the destination (for an error opening the file).
    pub destination_path: String,
}

const FILE_TYPE: &str = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT_TYPE: &str = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR_TYPE: &str = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

impl AccessLogConfig {
    /// Parses the `access_log` field (a list; absent means none).
    pub fn parse_list(list: &Node<'_>) -> Result<Vec<AccessLogConfig>> {
        list.as_list()?.iter().map(AccessLogConfig::parse).collect()
    }

    /// Parses one `access_log[]` entry.
    pub fn parse(entry: &Node<'_>) -> Result<AccessLogConfig> {
        entry.check_fields(&["name", "filter", "typed_config"], &[])?;
        let name = entry
            .opt("name", |n| n.as_str().map(str::to_string))?
            .unwrap_or_default();
        let filter = entry.opt("filter", AccessLogFilter::parse)?;
        let typed = entry.opt("typed_config", |n| n.typed_config())?;
        AccessLogConfig::build(name, filter, typed.as_ref(), entry)
    }

    /// For callers that already split an entry into its `typed_config` (and kept the entry's
    /// node for the name and filter): the same as `parse(entry)`.
    pub fn from_typed(entry: &Node<'_>, typed: &TypedConfig) -> Result<AccessLogConfig> {
        entry.check_fields(&["name", "filter", "typed_config"], &[])?;
        let name = entry
            .opt("name", |n| n.as_str().map(str::to_string))?
            .unwrap_or_default();
        let filter = entry.opt("filter", AccessLogFilter::parse)?;
        AccessLogConfig::build(name, filter, Some(typed), entry)
    }

    fn build(
        name: String,
        filter: Option<AccessLogFilter>,
        typed: Option<&TypedConfig>,
        entry: &Node<'_>,
    ) -> Result<AccessLogConfig> {
        // The type URL decides; without a typed_config, the name does (as Envoy's factory lookup).
        let kind = match typed.map(TypedConfig::type_name) {
            Some(FILE_TYPE) => "file",
            Some(STDOUT_TYPE) => "stdout",
            Some(STDERR_TYPE) => "stderr",
            Some(other) => {
                return Err(ConfigError::new(
                    ErrorKind::NotSupported,
                    entry.field_path("typed_config"),
                    format!("access logger type '{other}' is not supported by nuncio (supported: file, stdout, stderr)"),
                ))
            }
            None => match name.as_str() {
                "envoy.access_loggers.file" | "envoy.file_access_log" => "file",
                "envoy.access_loggers.stdout" => "stdout",
                "envoy.access_loggers.stderr" => "stderr",
                _ => {
                    return Err(entry.error_of(
                        ErrorKind::Missing,
                        format!("typed_config is required for access logger '{name}'"),
                    ))
                }
            },
        };
        let absent = Node::absent(entry.field_path("typed_config"));
        let cfg = typed.map(TypedConfig::node).unwrap_or(absent);
        let (destination, destination_path) = match kind {
            "file" => {
                cfg.check_fields(
                    &[
                        "path",
                        "log_format",
                        "format",
                        "json_format",
                        "typed_json_format",
                    ],
                    &[],
                )?;
                let path = cfg.required("path")?;
                (
                    Destination::File(path.non_empty_str()?.to_string()),
                    path.path().to_string(),
                )
            }
            _ => {
                cfg.check_fields(&["log_format"], &[])?;
                let d = if kind == "stdout" {
                    Destination::Stdout
                } else {
                    Destination::Stderr
                };
                (d, cfg.path().to_string())
            }
        };
        let formatter = parse_formats(&cfg)?;
        Ok(AccessLogConfig {
            name,
            filter,
            destination,
            formatter,
            destination_path,
        })
    }
}

/// The formatter from `log_format` or the deprecated file fields; Envoy's default otherwise.
fn parse_formats(cfg: &Node<'_>) -> Result<Formatter> {
    if let Some(lf) = cfg.get("log_format") {
        return parse_substitution_format(&lf);
    }
    if let Some(f) = cfg.get("format") {
        return text(&f, f.as_str()?);
    }
    for field in ["json_format", "typed_json_format"] {
        if let Some(j) = cfg.get(field) {
            return json(&j, false);
        }
    }
    Ok(Formatter::envoy_default())
}

/// `SubstitutionFormatString`.
fn parse_substitution_format(node: &Node<'_>) -> Result<Formatter> {
    node.check_fields(
        &[
            "text_format",
            "text_format_source",
            "json_format",
            "omit_empty_values",
            "content_type",
        ],
        &["formatters", "json_format_options"],
    )?;
    let omit = node
        .opt("omit_empty_values", |n| n.as_bool())?
        .unwrap_or(false);
    let set: Vec<&str> = ["text_format", "text_format_source", "json_format"]
        .into_iter()
        .filter(|f| node.has(f))
        .collect();
    if set.len() > 1 {
        return Err(node.error(format!(
            "only one of text_format, text_format_source, json_format may be set, found {}",
            set.join(" and ")
        )));
    }
    if let Some(t) = node.get("text_format") {
        return text(&t, t.as_str()?);
    }
    if let Some(src) = node.get("text_format_source") {
        src.check_fields(
            &["inline_string", "filename"],
            &["inline_bytes", "environment_variable"],
        )?;
        if let Some(s) = src.get("inline_string") {
            return text(&s, s.as_str()?);
        }
        if let Some(f) = src.get("filename") {
            let file = f.non_empty_str()?;
            let content = std::fs::read_to_string(file)
                .map_err(|e| f.error_of(ErrorKind::Io, format!("cannot read '{file}': {e}")))?;
            return text(&f, &content);
        }
        return Err(src.error_of(
            ErrorKind::Missing,
            "one of inline_string, filename is required",
        ));
    }
    if let Some(j) = node.get("json_format") {
        return json(&j, omit);
    }
    // An empty log_format: Envoy's default.
    Ok(Formatter::envoy_default())
}

fn text(node: &Node<'_>, format: &str) -> Result<Formatter> {
    Formatter::text(format).map_err(|e| format_error(node, e))
}

fn json(node: &Node<'_>, omit_empty_values: bool) -> Result<Formatter> {
    match node.value() {
        serde_yaml::Value::Mapping(m) => {
            Formatter::json(m, omit_empty_values).map_err(|e| format_error(node, e))
        }
        _ => Err(node.error_of(ErrorKind::WrongType, "expected a mapping")),
    }
}

fn format_error(node: &Node<'_>, e: FormatError) -> ConfigError {
    node.error(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> Result<Vec<AccessLogConfig>> {
        let doc = parse_yaml(yaml).expect("yaml");
        AccessLogConfig::parse_list(&Node::with_path(&doc, "access_log"))
    }

    #[test]
    fn file_stdout_stderr_and_formats() {
        let logs = parse(
            r#"
- name: envoy.access_loggers.file
  filter: {not_health_check_filter: {}}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: /tmp/a.log
    log_format: {text_format_source: {inline_string: "%RESPONSE_CODE%\n"}}
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format: {json_format: {code: "%RESPONSE_CODE%"}, omit_empty_values: true}
- name: envoy.access_loggers.stderr
  typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog}
- name: envoy.access_loggers.stdout
- typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: /tmp/b.log
    format: "%PROTOCOL%\n"
"#,
        )
        .unwrap();
        assert_eq!(logs.len(), 5);
        assert_eq!(logs[0].destination, Destination::File("/tmp/a.log".into()));
        assert_eq!(logs[0].destination_path, "access_log[0].typed_config.path");
        assert_eq!(logs[0].filter, Some(AccessLogFilter::NotHealthCheck));
        assert_eq!(
            logs[0].formatter,
            Formatter::text("%RESPONSE_CODE%\n").unwrap()
        );
        assert_eq!(logs[1].destination, Destination::Stdout);
        assert_eq!(logs[2].destination, Destination::Stderr);
        assert_eq!(logs[2].formatter, Formatter::envoy_default());
        assert_eq!(logs[3].destination, Destination::Stdout);
        assert_eq!(logs[4].formatter, Formatter::text("%PROTOCOL%\n").unwrap());
    }

    #[test]
    fn errors_carry_paths() {
        let err = |yaml: &str| parse(yaml).unwrap_err().to_string();
        let file = "  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n";
        assert_eq!(
            err(&format!("- name: x\n{file}    path: /tmp/x\n    log_format: {{text_format_source: {{inline_string: \"%NOPE%\"}}}}\n")),
            "access_log[0].typed_config.log_format.text_format_source.inline_string: Not supported field in StreamInfo: NOPE"
        );
        assert_eq!(
            err(&format!("- name: x\n{file}")),
            "access_log[0].typed_config.path: required field is missing"
        );
        assert_eq!(
            err("- typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig}"),
            "access_log[0].typed_config: access logger type 'envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig' is not supported by nuncio (supported: file, stdout, stderr)"
        );
        assert!(err(&format!(
            "- name: x\n{file}    path: /tmp/x\n    bogus: 1\n"
        ))
        .starts_with("access_log[0].typed_config.bogus: unknown field"));
        assert_eq!(
            err("- name: envoy.access_loggers.file"),
            "access_log[0].typed_config.path: required field is missing"
        );
        assert_eq!(
            err("- name: custom"),
            "access_log[0]: typed_config is required for access logger 'custom'"
        );
        assert!(err(&format!(
            "- name: x\n{file}    path: /tmp/x\n    log_format: {{formatters: []}}\n"
        ))
        .ends_with("not supported by nuncio"));
        assert!(
            err("- filter: {header_filter: {}}\n  name: envoy.access_loggers.stdout")
                .starts_with("access_log[0].filter.header_filter")
        );
    }
}
