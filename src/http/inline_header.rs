//! Inline headers: the header names the proxy itself reads, adds or removes on every request
//! (Envoy's `HeaderMapImpl` inline headers and its `StaticLookupTable`).
//!
//! A `HeaderMap` recognises these names once, when a field is stored (the codec's received
//! fields in `copy_received`, added fields in `insert`/`append`), tags the entry with its
//! [`InlineHeader`] and keeps an [`InlineSet`] of the inline names present. The passes of the
//! request path then cost a bit test in the usual case instead of a scan comparing names:
//! hop-by-hop removal (`conn_manager_utility`), the `x-envoy-*` sanitizing of external requests,
//! the router's control-header checks (`contains_any`), `x-forwarded-proto`, `date`, `server`.
//!
//! Owns the name table and [`lookup`] (name bytes -> inline header). Called by
//! `http::header_map`; the connection manager's header edits name inline headers directly.
//! Calls nothing.

/// A header name the proxy handles itself. The discriminant is the name's bit in an
/// [`InlineSet`], so there are at most 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum InlineHeader {
    // Framing and hop-by-hop (RFC 9110 §7.6.1).
    Connection,
    KeepAlive,
    ProxyConnection,
    TransferEncoding,
    Te,
    Upgrade,
    Expect,
    ContentLength,
    ContentType,
    Host,
    // Set or read by the connection manager on every message.
    Date,
    Server,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
    XEnvoyInternal,
    XEnvoyExternalAddress,
    XEnvoyUpstreamServiceTime,
    XEnvoyOverloaded,
    XEnvoyImmediateHealthCheckFail,
    // Removed from external requests (`EXTERNAL_SANITIZED`); the router's control headers.
    XEnvoyRetryOn,
    XEnvoyRetryGrpcOn,
    XEnvoyMaxRetries,
    XEnvoyRetriableStatusCodes,
    XEnvoyRetriableHeaderNames,
    XEnvoyUpstreamAltStatName,
    XEnvoyUpstreamRqTimeoutMs,
    XEnvoyUpstreamRqPerTryTimeoutMs,
    XEnvoyUpstreamRqTimeoutAltResponse,
    XEnvoyUpstreamStreamDurationMs,
    XEnvoyExpectedRqTimeoutMs,
    XEnvoyHedgeOnPerTryTimeout,
    XEnvoyForceTrace,
    XEnvoyIpTags,
    XEnvoyOriginalUrl,
    // Also removed from edge requests (`EDGE_SANITIZED`).
    XEnvoyDecoratorOperation,
    XEnvoyDownstreamServiceCluster,
    XEnvoyDownstreamServiceNode,
    XEnvoyOriginalPath,
}

use InlineHeader as H;

/// Every inline header, in discriminant order (`ALL[h as usize] == h`, checked by a test).
pub const ALL: [InlineHeader; 40] = [
    H::Connection,
    H::KeepAlive,
    H::ProxyConnection,
    H::TransferEncoding,
    H::Te,
    H::Upgrade,
    H::Expect,
    H::ContentLength,
    H::ContentType,
    H::Host,
    H::Date,
    H::Server,
    H::XForwardedFor,
    H::XForwardedProto,
    H::XForwardedHost,
    H::XRequestId,
    H::XEnvoyInternal,
    H::XEnvoyExternalAddress,
    H::XEnvoyUpstreamServiceTime,
    H::XEnvoyOverloaded,
    H::XEnvoyImmediateHealthCheckFail,
    H::XEnvoyRetryOn,
    H::XEnvoyRetryGrpcOn,
    H::XEnvoyMaxRetries,
    H::XEnvoyRetriableStatusCodes,
    H::XEnvoyRetriableHeaderNames,
    H::XEnvoyUpstreamAltStatName,
    H::XEnvoyUpstreamRqTimeoutMs,
    H::XEnvoyUpstreamRqPerTryTimeoutMs,
    H::XEnvoyUpstreamRqTimeoutAltResponse,
    H::XEnvoyUpstreamStreamDurationMs,
    H::XEnvoyExpectedRqTimeoutMs,
    H::XEnvoyHedgeOnPerTryTimeout,
    H::XEnvoyForceTrace,
    H::XEnvoyIpTags,
    H::XEnvoyOriginalUrl,
    H::XEnvoyDecoratorOperation,
    H::XEnvoyDownstreamServiceCluster,
    H::XEnvoyDownstreamServiceNode,
    H::XEnvoyOriginalPath,
];

impl InlineHeader {
    /// The lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            H::Connection => "connection",
            H::KeepAlive => "keep-alive",
            H::ProxyConnection => "proxy-connection",
            H::TransferEncoding => "transfer-encoding",
            H::Te => "te",
            H::Upgrade => "upgrade",
            H::Expect => "expect",
            H::ContentLength => "content-length",
            H::ContentType => "content-type",
            H::Host => "host",
            H::Date => "date",
            H::Server => "server",
            H::XForwardedFor => "x-forwarded-for",
            H::XForwardedProto => "x-forwarded-proto",
            H::XForwardedHost => "x-forwarded-host",
            H::XRequestId => "x-request-id",
            H::XEnvoyInternal => "x-envoy-internal",
            H::XEnvoyExternalAddress => "x-envoy-external-address",
            H::XEnvoyUpstreamServiceTime => "x-envoy-upstream-service-time",
            H::XEnvoyOverloaded => "x-envoy-overloaded",
            H::XEnvoyImmediateHealthCheckFail => "x-envoy-immediate-health-check-fail",
            H::XEnvoyRetryOn => "x-envoy-retry-on",
            H::XEnvoyRetryGrpcOn => "x-envoy-retry-grpc-on",
            H::XEnvoyMaxRetries => "x-envoy-max-retries",
            H::XEnvoyRetriableStatusCodes => "x-envoy-retriable-status-codes",
            H::XEnvoyRetriableHeaderNames => "x-envoy-retriable-header-names",
            H::XEnvoyUpstreamAltStatName => "x-envoy-upstream-alt-stat-name",
            H::XEnvoyUpstreamRqTimeoutMs => "x-envoy-upstream-rq-timeout-ms",
            H::XEnvoyUpstreamRqPerTryTimeoutMs => "x-envoy-upstream-rq-per-try-timeout-ms",
            H::XEnvoyUpstreamRqTimeoutAltResponse => "x-envoy-upstream-rq-timeout-alt-response",
            H::XEnvoyUpstreamStreamDurationMs => "x-envoy-upstream-stream-duration-ms",
            H::XEnvoyExpectedRqTimeoutMs => "x-envoy-expected-rq-timeout-ms",
            H::XEnvoyHedgeOnPerTryTimeout => "x-envoy-hedge-on-per-try-timeout",
            H::XEnvoyForceTrace => "x-envoy-force-trace",
            H::XEnvoyIpTags => "x-envoy-ip-tags",
            H::XEnvoyOriginalUrl => "x-envoy-original-url",
            H::XEnvoyDecoratorOperation => "x-envoy-decorator-operation",
            H::XEnvoyDownstreamServiceCluster => "x-envoy-downstream-service-cluster",
            H::XEnvoyDownstreamServiceNode => "x-envoy-downstream-service-node",
            H::XEnvoyOriginalPath => "x-envoy-original-path",
        }
    }
}

/// A set of inline headers (one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InlineSet(u64);

impl InlineSet {
    /// No header.
    pub const EMPTY: InlineSet = InlineSet(0);

    /// The set of `headers` (usable in constants).
    pub const fn of(headers: &[InlineHeader]) -> InlineSet {
        let mut bits = 0;
        let mut i = 0;
        while i < headers.len() {
            bits |= 1 << headers[i] as u8;
            i += 1;
        }
        InlineSet(bits)
    }

    /// This set and `other`.
    pub const fn union(self, other: InlineSet) -> InlineSet {
        InlineSet(self.0 | other.0)
    }

    /// This set without `header`.
    pub const fn without(self, header: InlineHeader) -> InlineSet {
        InlineSet(self.0 & !(1 << header as u8))
    }

    /// This set without the headers of `other`.
    pub const fn difference(self, other: InlineSet) -> InlineSet {
        InlineSet(self.0 & !other.0)
    }

    /// True when `header` is in the set.
    pub const fn has(self, header: InlineHeader) -> bool {
        self.0 & (1 << header as u8) != 0
    }

    /// True when the two sets share a header.
    pub const fn intersects(self, other: InlineSet) -> bool {
        self.0 & other.0 != 0
    }

    /// True for the empty set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The headers of the set, in discriminant order.
    pub fn iter(self) -> impl Iterator<Item = InlineHeader> {
        ALL.into_iter().filter(move |h| self.has(*h))
    }

    pub(crate) fn insert(&mut self, header: InlineHeader) {
        self.0 |= 1 << header as u8;
    }
}

/// The names, in discriminant order.
const NAMES: [&str; ALL.len()] = {
    let mut names = [""; ALL.len()];
    let mut i = 0;
    while i < ALL.len() {
        names[i] = ALL[i].name();
        i += 1;
    }
    names
};

/// Bits of the slot number: [`BY_HASH`] has 128 slots for 40 names.
const HASH_BITS: u32 = 7;

/// The multiplier of [`slot`], chosen so that no two inline names share a slot (a perfect
/// hash: `lookup` compares a name with one candidate at most). Adding a name may need a new
/// one: the build then fails at [`BY_HASH`], and the ignored test `find_a_multiplier` prints
/// one that works (`cargo test --lib find_a_multiplier -- --ignored --nocapture`).
const MULTIPLIER: u64 = 0xbb42_e4b2_bad2_bd1b;

const NONE: u8 = u8::MAX;

/// Slot -> index into [`ALL`] (`NONE` for an empty slot), built at compile time.
const BY_HASH: [u8; 1 << HASH_BITS] = {
    let mut table = [NONE; 1 << HASH_BITS];
    let mut i = 0;
    while i < ALL.len() {
        let slot = slot(NAMES[i].as_bytes(), MULTIPLIER);
        assert!(
            table[slot] == NONE,
            "two inline names share a slot: change MULTIPLIER"
        );
        table[slot] = i as u8;
        i += 1;
    }
    table
};

/// The inline header called `name` (lower-case bytes, compared exactly), if any. A name
/// with upper-case letters is not recognised: `HeaderMap` stores names lower-cased, and its
/// lookups by such a name fall back to comparing every entry. Costs a hash of two words and
/// one comparison.
#[inline]
pub fn lookup(name: &[u8]) -> Option<InlineHeader> {
    lookup_inlined(name)
}

/// [`lookup`] inlined into its caller: for the codec's scan that tags every received field
/// (`parse_fast::scan_fields`, once per field of every head), where the call's prologue and
/// epilogue cost a quarter of the lookup.
#[inline(always)]
pub(crate) fn lookup_inlined(name: &[u8]) -> Option<InlineHeader> {
    let index = BY_HASH[slot(name, MULTIPLIER)] as usize;
    let candidate = NAMES.get(index)?;
    same_bytes(candidate.as_bytes(), name).then_some(ALL[index])
}

/// The slot of `name`: its length and two of its words (the last eight bytes and eight from
/// the middle; short names whole), multiplied and cut to [`HASH_BITS`] bits. The `x-envoy-*`
/// names share their first eight bytes, so the words are taken from further on.
const fn slot(name: &[u8], multiplier: u64) -> usize {
    let n = name.len();
    let key = if n < 8 {
        short_key(name)
    } else {
        word_at(name, n - 8) ^ (word_at(name, n / 2 - 4) << 1)
    } ^ n as u64;
    (key.wrapping_mul(multiplier) >> (64 - HASH_BITS)) as usize
}

/// A name shorter than eight bytes as one word that, with its length, determines it: the first
/// and the last four bytes (overlapping) from four bytes up, the bytes themselves below.
#[inline(always)]
const fn short_key(name: &[u8]) -> u64 {
    let n = name.len();
    if n >= 4 {
        return half_word_at(name, 0) as u64 | (half_word_at(name, n - 4) as u64) << 32;
    }
    let mut word = 0u64;
    let mut i = 0;
    while i < n {
        word |= (name[i] as u64) << (8 * i);
        i += 1;
    }
    word
}

/// The eight bytes of `bytes` at `at` as a little-endian word (one load).
#[inline(always)]
const fn word_at(bytes: &[u8], at: usize) -> u64 {
    match bytes.split_at(at).1.first_chunk::<8>() {
        Some(word) => u64::from_le_bytes(*word),
        // Callers read whole words only: `at + 8 <= bytes.len()`.
        None => panic!("word_at past the end"),
    }
}

/// The four bytes of `bytes` at `at` as a little-endian number (one load).
#[inline(always)]
const fn half_word_at(bytes: &[u8], at: usize) -> u32 {
    match bytes.split_at(at).1.first_chunk::<4>() {
        Some(word) => u32::from_le_bytes(*word),
        None => panic!("half_word_at past the end"),
    }
}

/// `a == b`, eight bytes at a time from the end (the `x-envoy-*` names differ last).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return short_key(a) == short_key(b);
    }
    // The last word, then the others from the front (the last may overlap them).
    if word_at(a, n - 8) != word_at(b, n - 8) {
        return false;
    }
    let mut at = 0;
    while at + 8 < n {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += 8;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_header_at_its_bit() {
        assert!(ALL.len() <= 64, "an InlineSet has 64 bits");
        for (i, h) in ALL.iter().enumerate() {
            assert_eq!(*h as usize, i, "{h:?}");
        }
    }

    /// Prints a [`MULTIPLIER`] under which no two inline names share a slot.
    #[test]
    #[ignore = "a tool: run it when the build says two inline names share a slot"]
    fn find_a_multiplier() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        loop {
            // xorshift64: any odd multiplier is a candidate.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let multiplier = state | 1;
            let mut used = [false; 1 << HASH_BITS];
            if NAMES
                .iter()
                .all(|n| !std::mem::replace(&mut used[slot(n.as_bytes(), multiplier)], true))
            {
                println!("const MULTIPLIER: u64 = {multiplier:#018x};");
                return;
            }
        }
    }

    #[test]
    fn every_name_is_found_and_nothing_else() {
        for h in ALL {
            assert_eq!(lookup(h.name().as_bytes()), Some(h));
            let name = h.name().as_bytes();
            // One byte off anywhere, a byte longer or shorter: not inline.
            for at in 0..name.len() {
                let mut other = name.to_vec();
                other[at] ^= 0x01;
                assert_eq!(lookup(&other), None, "{other:?}");
            }
            assert_eq!(lookup(&name[1..]), None);
            assert_eq!(lookup(&[name, b"x"].concat()), None);
        }
        for other in ["", "user-agent", "accept", "HOST", "x-envoy-", "cookie"] {
            assert_eq!(lookup(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn names_are_lower_case_tokens() {
        for h in ALL {
            assert!(h
                .name()
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
    }

    #[test]
    fn sets() {
        let set = InlineSet::of(&[H::Te, H::XEnvoyOriginalPath]);
        assert!(set.has(H::Te) && set.has(H::XEnvoyOriginalPath) && !set.has(H::Host));
        assert!(set.intersects(InlineSet::of(&[H::Te])));
        assert!(!set.intersects(InlineSet::of(&[H::Host])));
        assert!(set.without(H::Te).without(H::XEnvoyOriginalPath).is_empty());
    }
}
