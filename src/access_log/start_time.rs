//! `%START_TIME(format)%`: a compiled strftime-style format, always in UTC as Envoy prints.
//!
//! Written here rather than taken from a crate because the job is small and the hot path must
//! not allocate: a format is parsed once at config load into `TimeItem`s, and formatting a time
//! writes digits straight into the caller's buffer. Supported specifiers: `%Y %C %y %m %d %e %j
//! %H %I %M %S %p %a %A %b %B %h %Z %z %s %T %D %F %R %n %t %%`, Envoy's fractional seconds
//! `%f` (9 digits) and `%1f`..`%9f`, and `%E1S`..`%E9S` (seconds with n fractional digits).
//! An unknown specifier is printed as written (Envoy accepts any); a format ending in a lone `%`
//! or a malformed `%E` is a config error.

use std::time::{SystemTime, UNIX_EPOCH};

/// One piece of a compiled time format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeItem {
    Literal(String),
    Year,
    Century,
    Year2,
    Month,
    Day,
    DaySpacePadded,
    DayOfYear,
    Hour,
    Hour12,
    Minute,
    Second,
    AmPm,
    WeekdayShort,
    WeekdayLong,
    MonthShort,
    MonthLong,
    ZoneName,
    ZoneOffset,
    EpochSeconds,
    /// `%<n>f`: `n` fractional-second digits.
    Fraction(u8),
    /// `%E<n>S`: seconds, a dot, and `n` fractional digits.
    SecondsWithFraction(u8),
}

/// A compiled `START_TIME` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormat {
    items: Vec<TimeItem>,
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl TimeFormat {
    /// Envoy's default `%START_TIME%`: `2026-11-26T10:37:07.221Z`.
    pub fn envoy_default() -> TimeFormat {
        // The constant below is valid; a failure here is a bug caught by the tests.
        TimeFormat::parse("%Y-%m-%dT%H:%M:%E3SZ").unwrap_or(TimeFormat { items: Vec::new() })
    }

    /// Compiles `format`. The error names the offending specifier.
    pub fn parse(format: &str) -> Result<TimeFormat, String> {
        let mut items = Vec::new();
        let mut literal = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let Some(spec) = chars.next() else {
                return Err(format!("START_TIME format '{format}' ends with a lone '%'"));
            };
            let item = match spec {
                '%' => {
                    literal.push('%');
                    continue;
                }
                'n' => {
                    literal.push('\n');
                    continue;
                }
                't' => {
                    literal.push('\t');
                    continue;
                }
                'Y' => TimeItem::Year,
                'C' => TimeItem::Century,
                'y' => TimeItem::Year2,
                'm' => TimeItem::Month,
                'd' => TimeItem::Day,
                'e' => TimeItem::DaySpacePadded,
                'j' => TimeItem::DayOfYear,
                'H' => TimeItem::Hour,
                'I' => TimeItem::Hour12,
                'M' => TimeItem::Minute,
                'S' => TimeItem::Second,
                'p' => TimeItem::AmPm,
                'a' => TimeItem::WeekdayShort,
                'A' => TimeItem::WeekdayLong,
                'b' | 'h' => TimeItem::MonthShort,
                'B' => TimeItem::MonthLong,
                'Z' => TimeItem::ZoneName,
                'z' => TimeItem::ZoneOffset,
                's' => TimeItem::EpochSeconds,
                'f' => TimeItem::Fraction(9),
                'T' | 'D' | 'F' | 'R' => {
                    let expansion = match spec {
                        'T' => "%H:%M:%S",
                        'D' => "%m/%d/%y",
                        'F' => "%Y-%m-%d",
                        _ => "%H:%M",
                    };
                    flush(&mut literal, &mut items);
                    items.extend(TimeFormat::parse(expansion)?.items);
                    continue;
                }
                d @ '1'..='9' if chars.peek() == Some(&'f') => {
                    chars.next();
                    TimeItem::Fraction(d as u8 - b'0')
                }
                'E' => {
                    let digit = chars.next().filter(|d| ('1'..='9').contains(d));
                    match (digit, chars.next()) {
                        (Some(d), Some('S')) => TimeItem::SecondsWithFraction(d as u8 - b'0'),
                        _ => {
                            return Err(format!("START_TIME format '{format}': expected %E<1-9>S"))
                        }
                    }
                }
                // Envoy (absl::FormatTime) accepts any specifier; one we do not know is printed as
                // written, so a config that Envoy takes is never refused here.
                other => {
                    literal.push('%');
                    literal.push(other);
                    continue;
                }
            };
            flush(&mut literal, &mut items);
            items.push(item);
        }
        flush(&mut literal, &mut items);
        Ok(TimeFormat { items })
    }

    /// Appends `time` (UTC) formatted.
    pub fn write(&self, time: SystemTime, out: &mut Vec<u8>) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let nanos = since.subsec_nanos();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
        for item in &self.items {
            match item {
                TimeItem::Literal(s) => out.extend_from_slice(s.as_bytes()),
                TimeItem::Year => push_num(out, year as u64, 4),
                TimeItem::Century => push_num(out, (year / 100) as u64, 2),
                TimeItem::Year2 => push_num(out, (year % 100) as u64, 2),
                TimeItem::Month => push_num(out, month as u64, 2),
                TimeItem::Day => push_num(out, day as u64, 2),
                TimeItem::DaySpacePadded => {
                    if day < 10 {
                        out.push(b' ');
                    }
                    push_num(out, day as u64, 1);
                }
                TimeItem::DayOfYear => {
                    push_num(out, (days - days_from_civil(year, 1, 1) + 1) as u64, 3)
                }
                TimeItem::Hour => push_num(out, hour, 2),
                TimeItem::Hour12 => push_num(out, if hour % 12 == 0 { 12 } else { hour % 12 }, 2),
                TimeItem::Minute => push_num(out, minute, 2),
                TimeItem::Second => push_num(out, second, 2),
                TimeItem::AmPm => out.extend_from_slice(if hour < 12 { b"AM" } else { b"PM" }),
                TimeItem::WeekdayShort => {
                    out.extend_from_slice(&WEEKDAYS[weekday(days)].as_bytes()[..3])
                }
                TimeItem::WeekdayLong => out.extend_from_slice(WEEKDAYS[weekday(days)].as_bytes()),
                TimeItem::MonthShort => {
                    out.extend_from_slice(&MONTHS[month as usize - 1].as_bytes()[..3])
                }
                TimeItem::MonthLong => out.extend_from_slice(MONTHS[month as usize - 1].as_bytes()),
                TimeItem::ZoneName => out.extend_from_slice(b"UTC"),
                TimeItem::ZoneOffset => out.extend_from_slice(b"+0000"),
                TimeItem::EpochSeconds => push_num(out, secs, 1),
                TimeItem::Fraction(n) => push_fraction(out, nanos, *n),
                TimeItem::SecondsWithFraction(n) => {
                    push_num(out, second, 2);
                    out.push(b'.');
                    push_fraction(out, nanos, *n);
                }
            }
        }
    }
}

fn flush(literal: &mut String, items: &mut Vec<TimeItem>) {
    if !literal.is_empty() {
        items.push(TimeItem::Literal(std::mem::take(literal)));
    }
}

/// Appends `n` zero-padded to `width` digits, without allocating.
#[inline]
pub(crate) fn push_num(out: &mut Vec<u8>, n: u64, width: usize) {
    // Most calls are dates and small counts: one or two digits need no loop.
    if n < 100 && width <= 2 {
        if n >= 10 || width == 2 {
            out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        } else {
            out.push(b'0' + n as u8);
        }
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    if width > len {
        out.resize(out.len() + (width - len), b'0');
    }
    out.extend_from_slice(&digits[i..]);
}

/// The first `n` (1..=9) digits of the nanoseconds, truncated (not rounded), as Envoy does.
fn push_fraction(out: &mut Vec<u8>, nanos: u32, n: u8) {
    let n = n.clamp(1, 9) as u32;
    push_num(out, (nanos / 10u32.pow(9 - n)) as u64, n as usize);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
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

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// 0 = Sunday.
fn weekday(days: i64) -> usize {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-11-26T10:37:07.221744123Z, the start time of a request logged by Envoy 1.40.
    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_795_689_427, 221_744_123)
    }

    fn fmt(f: &str) -> String {
        let mut out = Vec::new();
        TimeFormat::parse(f)
            .expect("valid format")
            .write(t(), &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn matches_envoy_output() {
        // From Envoy 1.40's log of the same instant.
        let mut out = Vec::new();
        TimeFormat::envoy_default().write(t(), &mut out);
        assert_eq!(out, b"2026-11-26T10:37:07.221Z");
        assert_eq!(
            fmt("%Y/%m/%dT%H:%M:%S.%3f%z"),
            "2026/11/26T10:37:07.221+0000"
        );
        assert_eq!(fmt("%s"), "1795689427");
        assert_eq!(fmt("%s.%6f"), "1795689427.221744");
    }

    #[test]
    fn other_specifiers() {
        assert_eq!(
            fmt("%a %A %b %B %e %j %I%p %y %C %Z"),
            "Thu Thursday Nov November 26 330 10AM 26 20 UTC"
        );
        assert_eq!(
            fmt("%F %T %D %R %%"),
            "2026-11-26 10:37:07 11/26/26 10:37 %"
        );
        assert_eq!(fmt("%f|%1f|%E6S"), "221744123|2|07.221744");
        let mut out = Vec::new();
        TimeFormat::parse("%F %T")
            .unwrap()
            .write(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut out);
        assert_eq!(out, b"2000-02-29 00:00:00");
    }

    #[test]
    fn numbers_are_padded() {
        let num = |n, w| {
            let mut out = Vec::new();
            push_num(&mut out, n, w);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            [
                num(0, 1),
                num(7, 2),
                num(42, 1),
                num(99, 2),
                num(5, 3),
                num(100, 2)
            ],
            ["0", "07", "42", "99", "005", "100"]
        );
        assert_eq!(num(u64::MAX, 1), u64::MAX.to_string());
        assert_eq!(num(12, 4), "0012");
    }

    #[test]
    fn bad_formats_are_errors() {
        assert_eq!(fmt("%Q-%Y"), "%Q-2026");
        assert!(TimeFormat::parse("abc%").is_err());
        assert!(TimeFormat::parse("%E0S").is_err());
        assert!(TimeFormat::parse("%E3").is_err());
    }
}
