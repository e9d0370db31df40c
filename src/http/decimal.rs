//! `Decimal`: a `u64` written in decimal on the stack, for header values the proxy generates
//! per request (`x-envoy-expected-rq-timeout-ms`, `x-envoy-upstream-service-time`,
//! `content-length`) without the `String` that `to_string()` would allocate.
//!
//! Used by the router (its `x-envoy-*` headers) and the codec's encoder.

/// The decimal digits of one number (at most 20 for a `u64`).
#[derive(Clone, Copy)]
pub struct Decimal {
    digits: [u8; 20],
    start: u8,
}

impl Decimal {
    pub fn new(mut n: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal {
            digits,
            start: at as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start as usize..]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written into `digits[start..]`.
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

impl std::fmt::Debug for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn formats_like_to_string() {
        for n in [0, 7, 10, 15000, 1234567890, u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }
}
