//! `HeaderFormatter`: the `%COMMAND%` substitutions allowed in `request_headers_to_add` /
//! `response_headers_to_add` values (Envoy's substitution formatter, the commands a route table
//! commonly uses).
//!
//! Supported: `%DOWNSTREAM_REMOTE_ADDRESS%`, `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`,
//! `%DOWNSTREAM_REMOTE_PORT%` (the final remote address, after `x-forwarded-for` handling: an
//! address taken from the header has port 0), `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`,
//! `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%`, `%DOWNSTREAM_DIRECT_REMOTE_PORT%` (the
//! peer of the connection), `%DOWNSTREAM_LOCAL_ADDRESS%`,
//! `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`, `%DOWNSTREAM_LOCAL_PORT%`, `%UPSTREAM_HOST%`,
//! `%UPSTREAM_REMOTE_ADDRESS%`, `%START_TIME%` and `%START_TIME(format)%`, `%PROTOCOL%`,
//! `%REQ(name?alt):max%`, `%HOSTNAME%`, and `%%` for a literal `%`. An unknown command or a
//! stray `%` is a config error with Envoy's wording. As in Envoy's header formatters, a value
//! that is not available (no upstream host yet, a missing request header) formats as `""`, and
//! a header whose whole value is empty is not added unless `keep_empty_value` is set.
//!
//! Parsed once at config load into a list of parts; formatting appends to a caller's `String`.
//! Called by `HeaderParser`; calls nothing but `std`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::header_map::HeaderMapAccess;

/// What the formatter may read about the stream besides the request headers (Envoy's
/// `StreamInfo`, the part the route table uses). Filled by the connection manager / router.
#[derive(Clone, Debug)]
pub struct FormatterContext<'a> {
    /// The client's address after `x-forwarded-for` processing (Envoy's final remote address).
    pub downstream_remote_address: Option<SocketAddr>,
    /// The peer of the downstream connection.
    pub downstream_direct_remote_address: Option<SocketAddr>,
    /// The listener-side address of the downstream connection.
    pub downstream_local_address: Option<SocketAddr>,
    /// The upstream host the request went to (known on the response path only).
    pub upstream_host: Option<SocketAddr>,
    /// When the stream started (`%START_TIME%`), on the request and the response path alike.
    pub start_time: StartTime,
    /// `HTTP/1.1`, `HTTP/1.0`.
    pub protocol: Option<&'a str>,
}

impl Default for FormatterContext<'_> {
    fn default() -> Self {
        FormatterContext {
            downstream_remote_address: None,
            downstream_direct_remote_address: None,
            downstream_local_address: None,
            upstream_host: None,
            start_time: StartTime::At(UNIX_EPOCH),
            protocol: None,
        }
    }
}

/// When the stream started, as `%START_TIME%` formats it (Envoy's `StreamInfo::startTime()`:
/// the same instant in `request_headers_to_add`, `response_headers_to_add` and the access log,
/// however long the upstream took).
///
/// The connection manager gives the stream's start on the monotonic clock, which it keeps
/// anyway; the wall-clock time is derived from it only when a `%START_TIME%` is formatted
/// (two clock reads then), so building a context per request reads no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTime {
    /// A wall-clock time as such.
    At(SystemTime),
    /// The stream's start on the monotonic clock: the wall clock now, minus the time since.
    Since(Instant),
}

impl StartTime {
    /// The wall-clock time of the start.
    pub fn system_time(self) -> SystemTime {
        match self {
            StartTime::At(time) => time,
            StartTime::Since(started) => {
                let ago = started.elapsed();
                let now = SystemTime::now();
                now.checked_sub(ago).unwrap_or(now)
            }
        }
    }
}

/// One piece of a parsed format string.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Command {
        command: Command,
        max_length: Option<usize>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamRemotePort,
    DownstreamDirectRemoteAddress,
    DownstreamDirectRemoteAddressWithoutPort,
    DownstreamDirectRemotePort,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamLocalPort,
    UpstreamHost,
    StartTime(Vec<TimeItem>),
    Protocol,
    Req {
        name: String,
        alt: Option<String>,
    },
    /// Resolved when the config is loaded, as Envoy does.
    Hostname(String),
}

/// A piece of a `START_TIME` format (a strftime subset).
#[derive(Clone, Debug, PartialEq, Eq)]
enum TimeItem {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// `%E<n>S`: seconds with `n` fractional digits (`%E3S` -> `05.123`).
    SecondFraction(usize),
    /// `%<n>f`: `n` fractional digits alone.
    Fraction(usize),
    EpochSeconds,
    /// `%z`: always `+0000` (times are UTC).
    Offset,
}

/// A parsed header value format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderFormatter {
    parts: Vec<Part>,
}

impl HeaderFormatter {
    /// Parses `format`. The error is the message only; the caller adds the field's path.
    pub fn parse(format: &str) -> Result<HeaderFormatter, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = format.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                // Copy the run up to the next '%' (keeps multi-byte characters whole).
                let end = format[i..].find('%').map_or(format.len(), |j| i + j);
                literal.push_str(&format[i..end]);
                i = end;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'%') {
                literal.push('%');
                i += 2;
                continue;
            }
            let (part, len) = parse_command(&format[i..]).ok_or_else(|| {
                format!("Incorrect configuration: {format}. Couldn't find valid command at position {i}")
            })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part?);
            i += len;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(HeaderFormatter { parts })
    }

    /// The literal value when the format has no command (formatting it needs no context).
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Appends the formatted value to `out`. `request` serves `%REQ(...)%`.
    pub fn format<H: HeaderMapAccess + ?Sized>(
        &self,
        request: &H,
        ctx: &FormatterContext,
        out: &mut String,
    ) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Command {
                    command,
                    max_length,
                } => {
                    let start = out.len();
                    format_command(command, request, ctx, out);
                    if let Some(max) = max_length {
                        truncate_at_char(out, start + max);
                    }
                }
            }
        }
    }
}

fn truncate_at_char(out: &mut String, mut len: usize) {
    if len >= out.len() {
        return;
    }
    while !out.is_char_boundary(len) {
        len -= 1;
    }
    out.truncate(len);
}

fn format_command<H: HeaderMapAccess + ?Sized>(
    command: &Command,
    request: &H,
    ctx: &FormatterContext,
    out: &mut String,
) {
    // `write!` to a String cannot fail.
    match command {
        Command::DownstreamRemoteAddress => write_addr(out, ctx.downstream_remote_address),
        Command::DownstreamRemoteAddressWithoutPort => write_ip(out, ctx.downstream_remote_address),
        Command::DownstreamRemotePort => write_port(out, ctx.downstream_remote_address),
        Command::DownstreamDirectRemoteAddress => {
            write_addr(out, ctx.downstream_direct_remote_address)
        }
        Command::DownstreamDirectRemoteAddressWithoutPort => {
            write_ip(out, ctx.downstream_direct_remote_address)
        }
        Command::DownstreamDirectRemotePort => {
            write_port(out, ctx.downstream_direct_remote_address)
        }
        Command::DownstreamLocalAddress => write_addr(out, ctx.downstream_local_address),
        Command::DownstreamLocalAddressWithoutPort => write_ip(out, ctx.downstream_local_address),
        Command::DownstreamLocalPort => write_port(out, ctx.downstream_local_address),
        Command::UpstreamHost => write_addr(out, ctx.upstream_host),
        Command::StartTime(items) => format_time(items, ctx.start_time.system_time(), out),
        Command::Protocol => out.push_str(ctx.protocol.unwrap_or("")),
        Command::Req { name, alt } => {
            let value = request
                .get(name)
                .or_else(|| alt.as_deref().and_then(|a| request.get(a)));
            out.push_str(value.unwrap_or(""));
        }
        Command::Hostname(h) => out.push_str(h),
    }
}

fn write_addr(out: &mut String, addr: Option<SocketAddr>) {
    if let Some(a) = addr {
        let _ = write!(out, "{a}");
    }
}

fn write_ip(out: &mut String, addr: Option<SocketAddr>) {
    if let Some(a) = addr {
        let _ = write!(out, "{}", a.ip());
    }
}

fn write_port(out: &mut String, addr: Option<SocketAddr>) {
    if let Some(a) = addr {
        let _ = write!(out, "{}", a.port());
    }
}

/// Parses `%NAME(arg):max%` at the start of `s`. `None`: not a command at all (Envoy's
/// "Couldn't find valid command"); `Some((Err, _))`: a command we reject.
fn parse_command(s: &str) -> Option<(Result<Part, String>, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i == 1 {
        return None;
    }
    let name = &s[1..i];
    let mut arg = None;
    if b.get(i) == Some(&b'(') {
        let close = s[i..].find(')')? + i;
        arg = Some(&s[i + 1..close]);
        i = close + 1;
    }
    let mut max_length = None;
    if b.get(i) == Some(&b':') {
        let digits = s[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        max_length = s[i + 1..i + 1 + digits].parse().ok();
        i += 1 + digits;
    }
    if b.get(i) != Some(&b'%') {
        return None;
    }
    let part = command(name, arg).map(|command| Part::Command {
        command,
        max_length,
    });
    Some((part, i + 1))
}

fn command(name: &str, arg: Option<&str>) -> Result<Command, String> {
    let no_arg = |c: Command| match arg {
        None => Ok(c),
        Some(_) => Err(format!("{name} does not take a parameter")),
    };
    match name {
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Command::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Command::DownstreamRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_REMOTE_PORT" => no_arg(Command::DownstreamRemotePort),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => no_arg(Command::DownstreamDirectRemoteAddress),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Command::DownstreamDirectRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_DIRECT_REMOTE_PORT" => no_arg(Command::DownstreamDirectRemotePort),
        "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Command::DownstreamLocalAddress),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            no_arg(Command::DownstreamLocalAddressWithoutPort)
        }
        "DOWNSTREAM_LOCAL_PORT" => no_arg(Command::DownstreamLocalPort),
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => no_arg(Command::UpstreamHost),
        "PROTOCOL" => no_arg(Command::Protocol),
        "HOSTNAME" => no_arg(Command::Hostname(hostname())),
        "START_TIME" => Ok(Command::StartTime(parse_time_format(
            arg.unwrap_or("%Y-%m-%dT%H:%M:%E3SZ"),
        )?)),
        "REQ" => {
            let arg = arg
                .filter(|a| !a.is_empty())
                .ok_or_else(|| "REQ requires a header name: %REQ(name)%".to_string())?;
            let (name, alt) = match arg.split_once('?') {
                Some((n, a)) => (n, Some(a.to_ascii_lowercase())),
                None => (arg, None),
            };
            Ok(Command::Req {
                name: name.to_ascii_lowercase(),
                alt,
            })
        }
        _ => Err(format!("Not supported field in StreamInfo: {name}")),
    }
}

/// This machine's host name (the kernel's, as `gethostname` reads it), `-` if unknown.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

fn parse_time_format(fmt: &str) -> Result<Vec<TimeItem>, String> {
    let mut items = Vec::new();
    let mut literal = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let item = match chars.next() {
            Some('%') => {
                literal.push('%');
                continue;
            }
            Some('Y') => TimeItem::Year,
            Some('m') => TimeItem::Month,
            Some('d') => TimeItem::Day,
            Some('H') => TimeItem::Hour,
            Some('M') => TimeItem::Minute,
            Some('S') => TimeItem::Second,
            Some('s') => TimeItem::EpochSeconds,
            Some('z') => TimeItem::Offset,
            Some('E') => match (chars.next(), chars.next()) {
                (Some(d @ '1'..='9'), Some('S')) => {
                    TimeItem::SecondFraction(d as usize - '0' as usize)
                }
                _ => {
                    return Err(format!(
                        "START_TIME format '{fmt}': only %E<1-9>S is supported after %E"
                    ))
                }
            },
            Some(d @ '1'..='9') if chars.peek() == Some(&'f') => {
                chars.next();
                TimeItem::Fraction(d as usize - '0' as usize)
            }
            other => {
                return Err(format!(
                    "START_TIME format '{fmt}': specifier %{} is not supported by nuncio \
                     (supported: %Y %m %d %H %M %S %s %z %E<n>S %<n>f %%)",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        };
        if !literal.is_empty() {
            items.push(TimeItem::Literal(std::mem::take(&mut literal)));
        }
        items.push(item);
    }
    if !literal.is_empty() {
        items.push(TimeItem::Literal(literal));
    }
    Ok(items)
}

fn format_time(items: &[TimeItem], time: SystemTime, out: &mut String) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let nanos = since.subsec_nanos();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let tod = secs % 86_400;
    let fraction = |out: &mut String, digits: usize| {
        let s = format!("{nanos:09}");
        out.push_str(&s[..digits.min(9)]);
    };
    for item in items {
        let _ = match item {
            TimeItem::Literal(s) => {
                out.push_str(s);
                Ok(())
            }
            TimeItem::Year => write!(out, "{year:04}"),
            TimeItem::Month => write!(out, "{month:02}"),
            TimeItem::Day => write!(out, "{day:02}"),
            TimeItem::Hour => write!(out, "{:02}", tod / 3600),
            TimeItem::Minute => write!(out, "{:02}", tod / 60 % 60),
            TimeItem::Second => write!(out, "{:02}", tod % 60),
            TimeItem::SecondFraction(n) => {
                let _ = write!(out, "{:02}.", tod % 60);
                fraction(out, *n);
                Ok(())
            }
            TimeItem::Fraction(n) => {
                fraction(out, *n);
                Ok(())
            }
            TimeItem::EpochSeconds => write!(out, "{secs}"),
            TimeItem::Offset => {
                out.push_str("+0000");
                Ok(())
            }
        };
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::header_map::VecHeaderMap;
    use std::time::Duration;

    fn ctx() -> FormatterContext<'static> {
        FormatterContext {
            downstream_remote_address: Some("127.0.0.1:55124".parse().unwrap()),
            downstream_direct_remote_address: Some("127.0.0.2:41000".parse().unwrap()),
            downstream_local_address: Some("[::1]:8080".parse().unwrap()),
            upstream_host: None,
            // 2026-11-26T10:22:14.940Z
            start_time: StartTime::At(UNIX_EPOCH + Duration::from_millis(1_795_688_534_940)),
            protocol: Some("HTTP/1.1"),
        }
    }

    fn fmt(format: &str, req: &VecHeaderMap) -> String {
        let f = HeaderFormatter::parse(format).unwrap();
        let mut out = String::new();
        f.format(req, &ctx(), &mut out);
        out
    }

    #[test]
    fn the_envoy_observed_line() {
        // Same format as run through Envoy 1.40 (with its addresses and time).
        let req = VecHeaderMap::request("h.com", "/", &[("x-in", "hello")]);
        assert_eq!(
            fmt(
                "%DOWNSTREAM_REMOTE_ADDRESS%|%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|%PROTOCOL%|%REQ(x-in)%|%%|%START_TIME%|%UPSTREAM_HOST%",
                &req
            ),
            "127.0.0.1:55124|127.0.0.1|HTTP/1.1|hello|%|2026-11-26T10:22:14.940Z|"
        );
    }

    #[test]
    fn direct_remote_address_is_the_peer() {
        let req = VecHeaderMap::new();
        assert_eq!(
            fmt("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_DIRECT_REMOTE_PORT% %DOWNSTREAM_REMOTE_PORT%", &req),
            "127.0.0.2:41000 127.0.0.2 41000 55124"
        );
    }

    #[test]
    fn ipv6_local_address() {
        let req = VecHeaderMap::new();
        assert_eq!(
            fmt("%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_PORT%", &req),
            "[::1]:8080 ::1 8080"
        );
    }

    #[test]
    fn req_takes_the_first_value_the_alternative_and_a_max_length() {
        let req = VecHeaderMap::request(
            "h.com",
            "/p",
            &[("x-in", "a"), ("x-in", "b"), ("x-alt", "alt")],
        );
        assert_eq!(fmt("%REQ(X-IN)%", &req), "a");
        assert_eq!(fmt("%REQ(x-none?x-alt)%", &req), "alt");
        assert_eq!(fmt("%REQ(x-none)%", &req), "");
        assert_eq!(fmt("%REQ(x-alt):2%", &req), "al");
        assert_eq!(fmt("[%REQ(:path)%]", &req), "[/p]");
        assert_eq!(fmt("%REQ(host)%", &req), "h.com");
    }

    #[test]
    fn start_time_formats() {
        let req = VecHeaderMap::new();
        assert_eq!(fmt("%START_TIME(%s)%", &req), "1795688534");
        assert_eq!(
            fmt("%START_TIME(%Y/%m/%d %H:%M:%S %z)%", &req),
            "2026/11/26 10:22:14 +0000"
        );
        assert_eq!(
            fmt("%START_TIME(%E6S|%3f|%9f)%", &req),
            "14.940000|940|940000000"
        );
        assert!(HeaderFormatter::parse("%START_TIME(%a)%").is_err());
    }

    #[test]
    fn a_monotonic_start_formats_as_the_wall_clock_time_it_was() {
        let ago = Duration::from_secs(2);
        let Some(started) = Instant::now().checked_sub(ago) else {
            return; // a machine up for less than 2 s
        };
        let start = StartTime::Since(started).system_time();
        let back = SystemTime::now().duration_since(start).unwrap();
        assert!(
            back >= ago && back < ago + Duration::from_millis(100),
            "{back:?}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn literal_detection_and_percent_escape() {
        assert_eq!(
            HeaderFormatter::parse("a%%b").unwrap().as_literal(),
            Some("a%b")
        );
        assert_eq!(HeaderFormatter::parse("").unwrap().as_literal(), Some(""));
        assert_eq!(
            HeaderFormatter::parse("%PROTOCOL%").unwrap().as_literal(),
            None
        );
        assert_eq!(
            HeaderFormatter::parse("é%%ü").unwrap().as_literal(),
            Some("é%ü")
        );
    }

    #[test]
    fn errors_use_envoy_wording() {
        assert_eq!(
            HeaderFormatter::parse("100%").unwrap_err(),
            "Incorrect configuration: 100%. Couldn't find valid command at position 3"
        );
        assert_eq!(
            HeaderFormatter::parse("%FOO%").unwrap_err(),
            "Not supported field in StreamInfo: FOO"
        );
        assert!(HeaderFormatter::parse("%REQ(x%").is_err());
        assert!(HeaderFormatter::parse("%REQ()%").is_err());
        assert!(HeaderFormatter::parse("%PROTOCOL(x)%").is_err());
        assert!(HeaderFormatter::parse("%lower%").is_err());
    }

    #[test]
    fn hostname_is_resolved_at_parse_time() {
        let f = HeaderFormatter::parse("%HOSTNAME%").unwrap();
        let mut out = String::new();
        f.format(&VecHeaderMap::new(), &ctx(), &mut out);
        assert!(!out.is_empty());
    }
}
