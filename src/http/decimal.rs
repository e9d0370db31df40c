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
        // Two digits per division (a number the proxy writes, e.g. a 15000 ms timeout, takes
        // three steps instead of five).
        const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
            2021222324252627282930313233343536373839\
            4041424344454647484950515253545556575859\
            6061626364656667686970717273747576777879\
            8081828384858687888990919293949596979899";
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            at -= 2;
            digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            at -= 2;
            digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            at -= 1;
            digits[at] = b'0' + n as u8;
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
        for n in [0, 7, 9, 10, 99, 100, 101, 999, 15000, 1234567890, u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }
}
