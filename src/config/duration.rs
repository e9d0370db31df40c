//! `google.protobuf.Duration` in Envoy's YAML: the JSON-mapping string (`"5s"`, `"0.25s"`,
//! `"1.000340012s"`) or the message form `{ seconds: 5, nanos: 250000000 }`.
//!
//! Called by [`Node::duration`](super::Node::duration); pure functions, no paths (the caller adds
//! the path to the message).

use std::time::Duration;

/// The largest duration protobuf allows: 10,000 years, in seconds.
pub const MAX_SECONDS: u64 = 315_576_000_000;

/// Parses the JSON-mapping form: decimal seconds with up to 9 fractional digits and an `s`
/// suffix. Negative durations are refused: no Envoy field nuncio reads accepts one.
pub fn parse_duration_str(text: &str) -> Result<Duration, String> {
    let expected = || format!("expected a duration like \"5s\" or \"0.25s\", found \"{text}\"");
    let Some(number) = text.strip_suffix('s') else {
        return Err(expected());
    };
    if number.starts_with('-') {
        return Err(format!("negative duration \"{text}\" is not allowed"));
    }
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > 9
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(expected());
    }
    let seconds: u64 = whole.parse().map_err(|_| too_large(text))?;
    if seconds > MAX_SECONDS {
        return Err(too_large(text));
    }
    // Right-pad the fraction to nanoseconds: "25" -> 250_000_000.
    let nanos = if fraction.is_empty() {
        0
    } else {
        let padded = format!("{fraction:0<9}");
        padded.parse::<u32>().map_err(|_| expected())?
    };
    Ok(Duration::new(seconds, nanos))
}

/// Builds a duration from the message form's `seconds` and `nanos` fields, with protobuf's
/// range rules (and no negatives).
pub fn from_parts(seconds: i64, nanos: i64) -> Result<Duration, String> {
    if seconds < 0 || nanos < 0 {
        return Err("negative duration is not allowed".to_string());
    }
    if seconds as u64 > MAX_SECONDS {
        return Err(format!(
            "duration of {seconds} seconds is out of range (at most {MAX_SECONDS})"
        ));
    }
    if nanos > 999_999_999 {
        return Err(format!("nanos {nanos} is out of range (0..=999999999)"));
    }
    Ok(Duration::new(seconds as u64, nanos as u32))
}

fn too_large(text: &str) -> String {
    format!("duration \"{text}\" is out of range (at most {MAX_SECONDS}s)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_forms() {
        assert_eq!(parse_duration_str("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration_str("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration_str("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration_str("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_str("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_duration_str("3600s"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "5",
            "5ms",
            "s",
            ".5s",
            "1.s",
            "1.0000000001s",
            "1 s",
            "+1s",
            "1e3s",
            "",
        ] {
            assert_eq!(
                parse_duration_str(bad),
                Err(format!(
                    "expected a duration like \"5s\" or \"0.25s\", found \"{bad}\""
                )),
                "{bad}"
            );
        }
        assert_eq!(
            parse_duration_str("-1s"),
            Err("negative duration \"-1s\" is not allowed".to_string())
        );
        assert_eq!(
            parse_duration_str("99999999999999999999999s"),
            Err(
                "duration \"99999999999999999999999s\" is out of range (at most 315576000000s)"
                    .to_string()
            )
        );
        assert_eq!(
            parse_duration_str("315576000001s"),
            Err("duration \"315576000001s\" is out of range (at most 315576000000s)".to_string())
        );
    }

    #[test]
    fn parts() {
        assert_eq!(from_parts(1, 500_000_000), Ok(Duration::from_millis(1500)));
        assert!(from_parts(-1, 0).is_err());
        assert!(from_parts(0, 1_000_000_000).is_err());
        assert!(from_parts(i64::MAX, 0).is_err());
    }
}
