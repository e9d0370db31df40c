//! The access-log formatter (Envoy's `SubstitutionFormatter`): a format string with
//! `%COMMAND%` operators, compiled once at config load, rendered per request into a reused
//! buffer.
//!
//! Text formats print an unset value as `-`; `json_format` prints a field that is a single
//! operator as a JSON number (codes, byte counts, durations), string, or `null` when unset, and
//! anything else as a string, with the keys sorted as Envoy prints them. Formatting allocates
//! nothing once the caller's buffer has grown to the line size (JSON escaping uses a
//! thread-local scratch buffer).
//!
//! Called by `AccessLog::log`; calls `StreamInfo` for the values.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::start_time::{push_num, TimeFormat};
use super::stream_info::{HeaderLookup, StreamInfo};

/// Envoy's default access log format (used when an access log has no `log_format`).
pub const DEFAULT_FORMAT: &str =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \
\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Which header map a header operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderSource {
    Request,
    Response,
    Trailer,
}

/// One command operator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    StartTime(TimeFormat),
    Header {
        source: HeaderSource,
        name: String,
        alt: Option<String>,
    },
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamLocalAddress,
    RouteName,
    Protocol,
    UpstreamRequestAttemptCount,
    ConnectionId,
}

/// What an operator wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Unset,
    Number,
    String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Op {
        op: Operator,
        max_len: Option<usize>,
    },
}

/// A compiled text format: literals and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TextFormat {
    parts: Vec<Part>,
}

/// A `json_format` value.
#[derive(Debug, Clone, PartialEq)]
enum JsonValue {
    /// A string with operators (or one operator alone: then typed).
    Format(TextFormat),
    /// A literal number, boolean or null, printed as written.
    Raw(String),
    Object(BTreeMap<String, JsonValue>),
}

/// A compiled access-log format.
#[derive(Debug, Clone, PartialEq)]
pub struct Formatter {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Text(TextFormat),
    Json {
        root: BTreeMap<String, JsonValue>,
        omit_empty_values: bool,
    },
}

/// Why a format was refused; the config parser prefixes the field's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `%NAME%` is not an operator we know (Envoy: `Not supported field in StreamInfo: NAME`).
    UnknownOperator(String),
    /// A `%` that does not start a well-formed operator.
    Malformed(String),
    /// A `json_format` value that is neither a string, a number, a boolean nor a mapping.
    BadJsonValue(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::UnknownOperator(name) => {
                write!(f, "Not supported field in StreamInfo: {name}")
            }
            FormatError::Malformed(why) => write!(f, "Incorrect configuration: {why}"),
            FormatError::BadJsonValue(key) => {
                write!(f, "json_format: the value of '{key}' must be a string, number, boolean or mapping")
            }
        }
    }
}

impl std::error::Error for FormatError {}

impl Formatter {
    /// Envoy's default format.
    pub fn envoy_default() -> Formatter {
        // DEFAULT_FORMAT is a constant checked by the tests.
        Formatter::text(DEFAULT_FORMAT).unwrap_or(Formatter {
            kind: Kind::Text(TextFormat { parts: Vec::new() }),
        })
    }

    /// Compiles a text format (`text_format_source.inline_string`, `text_format`, `format`).
    pub fn text(format: &str) -> Result<Formatter, FormatError> {
        Ok(Formatter {
            kind: Kind::Text(TextFormat::parse(format)?),
        })
    }

    /// Compiles a `json_format` mapping (a YAML value). Keys are printed sorted.
    pub fn json(
        map: &serde_yaml::Mapping,
        omit_empty_values: bool,
    ) -> Result<Formatter, FormatError> {
        Ok(Formatter {
            kind: Kind::Json {
                root: json_object(map)?,
                omit_empty_values,
            },
        })
    }

    /// Appends one formatted line to `out` (a JSON line ends in `\n`; a text format ends as
    /// written, and Envoy's default ends in `\n`).
    pub fn format(&self, info: &StreamInfo<'_>, out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Text(t) => t.write_text(info, out),
            Kind::Json {
                root,
                omit_empty_values,
            } => {
                write_json_object(root, info, *omit_empty_values, out);
                out.push(b'\n');
            }
        }
    }
}

fn json_object(map: &serde_yaml::Mapping) -> Result<BTreeMap<String, JsonValue>, FormatError> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let key = match k {
            serde_yaml::Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let value = match v {
            serde_yaml::Value::String(s) => JsonValue::Format(TextFormat::parse(s)?),
            serde_yaml::Value::Number(n) => JsonValue::Raw(n.to_string()),
            serde_yaml::Value::Bool(b) => JsonValue::Raw(b.to_string()),
            serde_yaml::Value::Null => JsonValue::Raw("null".into()),
            serde_yaml::Value::Mapping(m) => JsonValue::Object(json_object(m)?),
            _ => return Err(FormatError::BadJsonValue(key)),
        };
        out.insert(key, value);
    }
    Ok(out)
}

thread_local! {
    /// Scratch for one JSON value before escaping; grows to the longest value, then reused.
    static JSON_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn write_json_object(
    obj: &BTreeMap<String, JsonValue>,
    info: &StreamInfo<'_>,
    omit_empty: bool,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    let mut first = true;
    for (key, value) in obj {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        push_json_string(out, key.as_bytes());
        out.push(b':');
        let wrote_something = match value {
            JsonValue::Raw(raw) => {
                out.extend_from_slice(raw.as_bytes());
                true
            }
            JsonValue::Object(inner) => {
                write_json_object(inner, info, omit_empty, out);
                true
            }
            JsonValue::Format(format) => format.write_json(info, out),
        };
        if omit_empty && !wrote_something {
            out.truncate(mark);
            continue;
        }
        first = false;
    }
    out.push(b'}');
}

impl TextFormat {
    fn parse(format: &str) -> Result<TextFormat, FormatError> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let bytes = format.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                literal.push(bytes[i]);
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'%') {
                literal.push(b'%');
                i += 2;
                continue;
            }
            let (part, next) = parse_operator(format, i)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            i = next;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(TextFormat { parts })
    }

    fn write_text(&self, info: &StreamInfo<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Op { op, max_len } => {
                    if write_operator(op, *max_len, info, out) == Written::Unset {
                        out.push(b'-');
                    }
                }
            }
        }
    }

    /// Writes the value as JSON; returns false when it was a lone unset operator (`null`).
    fn write_json(&self, info: &StreamInfo<'_>, out: &mut Vec<u8>) -> bool {
        if let [Part::Op { op, max_len }] = self.parts.as_slice() {
            return JSON_SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                scratch.clear();
                match write_operator(op, *max_len, info, &mut scratch) {
                    Written::Unset => {
                        out.extend_from_slice(b"null");
                        false
                    }
                    Written::Number => {
                        out.extend_from_slice(&scratch);
                        true
                    }
                    Written::String => {
                        push_json_string(out, &scratch);
                        true
                    }
                }
            });
        }
        JSON_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            self.write_text(info, &mut scratch);
            push_json_string(out, &scratch);
        });
        true
    }
}

/// Parses the operator starting at `format[start] == '%'`; returns it and the index after it.
fn parse_operator(format: &str, start: usize) -> Result<(Part, usize), FormatError> {
    let malformed = || FormatError::Malformed(format.to_string());
    let rest = &format[start + 1..];
    let name_len = rest
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if name.is_empty() {
        return Err(malformed());
    }
    let mut at = start + 1 + name_len;
    // Optional `(argument)`. START_TIME's argument may itself contain `%` and `)`, so the
    // argument ends at the first `)` followed by `%` or by `:N%`.
    let mut arg = None;
    if format[at..].starts_with('(') {
        let close = (at + 1..format.len())
            .find(|&i| format.as_bytes()[i] == b')' && ends_operator(&format[i + 1..]))
            .ok_or_else(malformed)?;
        arg = Some(&format[at + 1..close]);
        at = close + 1;
    }
    // Optional `:N` maximum length (inside the operator: `%REQ(:PATH):5%`), then the `%`.
    let mut max_len = None;
    if format[at..].starts_with(':') {
        let digits = format[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            return Err(malformed());
        }
        max_len = Some(
            format[at + 1..at + 1 + digits]
                .parse()
                .map_err(|_| malformed())?,
        );
        at += 1 + digits;
    }
    if !format[at..].starts_with('%') {
        return Err(malformed());
    }
    at += 1;
    let header = |source| -> Result<Operator, FormatError> {
        let arg = arg.filter(|a| !a.is_empty()).ok_or_else(malformed)?;
        let (name, alt) = match arg.split_once('?') {
            Some((n, a)) => (n, Some(a.to_ascii_lowercase())),
            None => (arg, None),
        };
        if name.is_empty() || alt.as_deref() == Some("") {
            return Err(malformed());
        }
        Ok(Operator::Header {
            source,
            name: name.to_ascii_lowercase(),
            alt,
        })
    };
    let op = match name {
        "START_TIME" => match arg {
            Some(a) if !a.is_empty() => {
                Operator::StartTime(TimeFormat::parse(a).map_err(FormatError::Malformed)?)
            }
            _ => Operator::StartTime(TimeFormat::envoy_default()),
        },
        "REQ" => header(HeaderSource::Request)?,
        "RESP" => header(HeaderSource::Response)?,
        "TRAILER" => header(HeaderSource::Trailer)?,
        simple => {
            if arg.is_some() {
                return Err(malformed());
            }
            match simple {
                "RESPONSE_CODE" => Operator::ResponseCode,
                "RESPONSE_FLAGS" => Operator::ResponseFlags,
                "RESPONSE_CODE_DETAILS" => Operator::ResponseCodeDetails,
                "BYTES_RECEIVED" => Operator::BytesReceived,
                "BYTES_SENT" => Operator::BytesSent,
                "DURATION" => Operator::Duration,
                "REQUEST_DURATION" => Operator::RequestDuration,
                "RESPONSE_DURATION" => Operator::ResponseDuration,
                "UPSTREAM_HOST" => Operator::UpstreamHost,
                "UPSTREAM_CLUSTER" => Operator::UpstreamCluster,
                "UPSTREAM_LOCAL_ADDRESS" => Operator::UpstreamLocalAddress,
                "DOWNSTREAM_REMOTE_ADDRESS" => Operator::DownstreamRemoteAddress,
                "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                    Operator::DownstreamRemoteAddressWithoutPort
                }
                "DOWNSTREAM_LOCAL_ADDRESS" => Operator::DownstreamLocalAddress,
                "ROUTE_NAME" => Operator::RouteName,
                "PROTOCOL" => Operator::Protocol,
                "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Operator::UpstreamRequestAttemptCount,
                "CONNECTION_ID" => Operator::ConnectionId,
                other => return Err(FormatError::UnknownOperator(other.to_string())),
            }
        }
    };
    Ok((Part::Op { op, max_len }, at))
}

/// Whether `rest` (what follows a `)`) closes an operator: `%` or `:N%`.
fn ends_operator(rest: &str) -> bool {
    if rest.starts_with('%') {
        return true;
    }
    let Some(after) = rest.strip_prefix(':') else {
        return false;
    };
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && after[digits..].starts_with('%')
}

/// Writes one operator's value (nothing when unset) and says what it wrote.
fn write_operator(
    op: &Operator,
    max_len: Option<usize>,
    info: &StreamInfo<'_>,
    out: &mut Vec<u8>,
) -> Written {
    let start = out.len();
    let written = match op {
        Operator::StartTime(f) => match info.start_time {
            Some(t) => {
                f.write(t, out);
                Written::String
            }
            None => Written::Unset,
        },
        Operator::Header { source, name, alt } => {
            let map: Option<&dyn HeaderLookup> = match source {
                HeaderSource::Request => info.request_headers,
                HeaderSource::Response => info.response_headers,
                HeaderSource::Trailer => info.response_trailers,
            };
            let value = map.and_then(|m| {
                m.header(name)
                    .or_else(|| alt.as_deref().and_then(|a| m.header(a)))
            });
            str_value(value, out)
        }
        Operator::ResponseCode => number(u64::from(info.response_code.unwrap_or(0)), out),
        Operator::ResponseFlags => {
            info.response_flags.write_to(out);
            Written::String
        }
        Operator::ResponseCodeDetails => str_value(info.response_code_details, out),
        Operator::BytesReceived => number(info.bytes_received, out),
        Operator::BytesSent => number(info.bytes_sent, out),
        Operator::Duration => millis(info.duration, out),
        Operator::RequestDuration => millis(info.request_duration, out),
        Operator::ResponseDuration => millis(info.response_duration, out),
        Operator::UpstreamHost => address(info.upstream_host, true, out),
        Operator::UpstreamCluster => str_value(info.upstream_cluster, out),
        Operator::UpstreamLocalAddress => address(info.upstream_local_address, true, out),
        Operator::DownstreamRemoteAddress => address(info.downstream_remote_address, true, out),
        Operator::DownstreamRemoteAddressWithoutPort => {
            address(info.downstream_remote_address, false, out)
        }
        Operator::DownstreamLocalAddress => address(info.downstream_local_address, true, out),
        Operator::RouteName => str_value(info.route_name.filter(|r| !r.is_empty()), out),
        Operator::Protocol => str_value(info.protocol, out),
        Operator::UpstreamRequestAttemptCount => number(
            u64::from(info.upstream_request_attempt_count.unwrap_or(0)),
            out,
        ),
        Operator::ConnectionId => match info.connection_id {
            Some(id) => number(id, out),
            None => Written::Unset,
        },
    };
    if let Some(max) = max_len {
        truncate_utf8(out, start, max);
    }
    written
}

fn str_value(v: Option<&str>, out: &mut Vec<u8>) -> Written {
    match v {
        Some(s) => {
            out.extend_from_slice(s.as_bytes());
            Written::String
        }
        None => Written::Unset,
    }
}

fn number(n: u64, out: &mut Vec<u8>) -> Written {
    push_num(out, n, 1);
    Written::Number
}

fn millis(d: Option<Duration>, out: &mut Vec<u8>) -> Written {
    match d {
        Some(d) => number(d.as_millis() as u64, out),
        None => Written::Unset,
    }
}

fn address(a: Option<SocketAddr>, with_port: bool, out: &mut Vec<u8>) -> Written {
    let Some(a) = a else { return Written::Unset };
    match a {
        // The common case by hand: `fmt` machinery costs more than the rest of a line.
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_num(out, u64::from(*octet), 1);
            }
            if with_port {
                out.push(b':');
                push_num(out, u64::from(v4.port()), 1);
            }
        }
        SocketAddr::V6(_) => {
            // Writing to a Vec cannot fail.
            let _ = if with_port {
                write!(out, "{a}")
            } else {
                write!(out, "{}", a.ip())
            };
        }
    }
    Written::String
}

/// Keeps at most `max` characters of what was written after `start`.
fn truncate_utf8(out: &mut Vec<u8>, start: usize, max: usize) {
    let mut chars = 0;
    for (i, &b) in out[start..].iter().enumerate() {
        // Count UTF-8 lead bytes (not continuation bytes 0b10xx_xxxx).
        if b & 0xC0 != 0x80 {
            if chars == max {
                out.truncate(start + i);
                return;
            }
            chars += 1;
        }
    }
}

/// Appends `s` as a JSON string literal (invalid UTF-8 is replaced). Runs of bytes that need
/// no escaping are copied in one go.
fn push_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let text = String::from_utf8_lossy(s);
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}
