//! Envoy's response flags (`StreamInfo::ResponseFlag`): why a request or connection ended the way
//! it did, printed by `%RESPONSE_FLAGS%` as comma-separated short codes (`UH`, `UF,URX`) or `-`,
//! and matched by `response_flag_filter`.
//!
//! The bit order is Envoy's, which is also the order the codes are printed in. This is the only
//! definition: the HTTP layer records the same type per stream (re-exported by `http::filter`)
//! and tcp_proxy per session.

/// One response flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ResponseFlag {
    /// LH: the local health check failed.
    FailedLocalHealthCheck = 1 << 0,
    /// UH: no healthy upstream host.
    NoHealthyUpstream = 1 << 1,
    /// UT: the upstream request timed out.
    UpstreamRequestTimeout = 1 << 2,
    /// LR: the connection was reset locally.
    LocalReset = 1 << 3,
    /// UR: the upstream reset the connection.
    UpstreamRemoteReset = 1 << 4,
    /// UF: connecting to the upstream failed.
    UpstreamConnectionFailure = 1 << 5,
    /// UC: the upstream connection was terminated.
    UpstreamConnectionTermination = 1 << 6,
    /// UO: upstream overflow (a circuit breaker was open).
    UpstreamOverflow = 1 << 7,
    /// NR: no route (or no filter chain) matched.
    NoRouteFound = 1 << 8,
    /// DI: a delay was injected.
    DelayInjected = 1 << 9,
    /// FI: a fault was injected.
    FaultInjected = 1 << 10,
    /// RL: rate limited.
    RateLimited = 1 << 11,
    /// UAEX: rejected by an external authorization service.
    UnauthorizedExternalService = 1 << 12,
    /// RLSE: the rate limit service failed.
    RateLimitServiceError = 1 << 13,
    /// DC: the downstream connection was terminated.
    DownstreamConnectionTermination = 1 << 14,
    /// URX: the retry limit (or connect attempts limit) was exceeded.
    UpstreamRetryLimitExceeded = 1 << 15,
    /// SI: the stream idle timeout fired.
    StreamIdleTimeout = 1 << 16,
    /// IH: invalid `x-envoy-*` request headers.
    InvalidEnvoyRequestHeaders = 1 << 17,
    /// DPE: downstream protocol error.
    DownstreamProtocolError = 1 << 18,
    /// UMSDR: the upstream request reached its max stream duration.
    UpstreamMaxStreamDurationReached = 1 << 19,
    /// RFCF: response served from a cache filter.
    ResponseFromCacheFilter = 1 << 20,
    /// NFCF: no filter config found.
    NoFilterConfigFound = 1 << 21,
    /// DT: a duration timeout fired (max_connection_duration, max_stream_duration).
    DurationTimeout = 1 << 22,
    /// UPE: upstream protocol error.
    UpstreamProtocolError = 1 << 23,
    /// NC: the route's cluster does not exist.
    NoClusterFound = 1 << 24,
    /// OM: rejected by the overload manager.
    OverloadManager = 1 << 25,
    /// DF: DNS resolution failed.
    DnsResolutionFailed = 1 << 26,
    /// DO: dropped by drop_overload.
    DropOverLoad = 1 << 27,
    /// DR: the downstream reset the stream.
    DownstreamRemoteReset = 1 << 28,
    /// UDO: dropped unconditionally by drop_overload.
    UnconditionalDropOverload = 1 << 29,
}

impl ResponseFlag {
    /// Every flag with its short code, in Envoy's printing order.
    pub const ALL: [(ResponseFlag, &'static str); 30] = [
        (ResponseFlag::FailedLocalHealthCheck, "LH"),
        (ResponseFlag::NoHealthyUpstream, "UH"),
        (ResponseFlag::UpstreamRequestTimeout, "UT"),
        (ResponseFlag::LocalReset, "LR"),
        (ResponseFlag::UpstreamRemoteReset, "UR"),
        (ResponseFlag::UpstreamConnectionFailure, "UF"),
        (ResponseFlag::UpstreamConnectionTermination, "UC"),
        (ResponseFlag::UpstreamOverflow, "UO"),
        (ResponseFlag::NoRouteFound, "NR"),
        (ResponseFlag::DelayInjected, "DI"),
        (ResponseFlag::FaultInjected, "FI"),
        (ResponseFlag::RateLimited, "RL"),
        (ResponseFlag::UnauthorizedExternalService, "UAEX"),
        (ResponseFlag::RateLimitServiceError, "RLSE"),
        (ResponseFlag::DownstreamConnectionTermination, "DC"),
        (ResponseFlag::UpstreamRetryLimitExceeded, "URX"),
        (ResponseFlag::StreamIdleTimeout, "SI"),
        (ResponseFlag::InvalidEnvoyRequestHeaders, "IH"),
        (ResponseFlag::DownstreamProtocolError, "DPE"),
        (ResponseFlag::UpstreamMaxStreamDurationReached, "UMSDR"),
        (ResponseFlag::ResponseFromCacheFilter, "RFCF"),
        (ResponseFlag::NoFilterConfigFound, "NFCF"),
        (ResponseFlag::DurationTimeout, "DT"),
        (ResponseFlag::UpstreamProtocolError, "UPE"),
        (ResponseFlag::NoClusterFound, "NC"),
        (ResponseFlag::OverloadManager, "OM"),
        (ResponseFlag::DnsResolutionFailed, "DF"),
        (ResponseFlag::DropOverLoad, "DO"),
        (ResponseFlag::DownstreamRemoteReset, "DR"),
        (ResponseFlag::UnconditionalDropOverload, "UDO"),
    ];

    /// The flag with this short code (`"UH"`), if any.
    pub fn from_code(code: &str) -> Option<ResponseFlag> {
        ResponseFlag::ALL
            .iter()
            .find(|(_, c)| *c == code)
            .map(|(f, _)| *f)
    }

    /// The flag's short code.
    pub fn code(self) -> &'static str {
        ResponseFlag::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("", |(_, c)| c)
    }
}

/// A set of response flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFlags(pub u32);

impl ResponseFlags {
    /// No flag.
    pub const NONE: ResponseFlags = ResponseFlags(0);

    /// Adds `flag`.
    pub fn set(&mut self, flag: ResponseFlag) {
        self.0 |= flag as u32;
    }

    /// Whether `flag` is set.
    pub fn has(self, flag: ResponseFlag) -> bool {
        self.0 & flag as u32 != 0
    }

    /// Whether any flag of `other` is set.
    pub fn intersects(self, other: ResponseFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Appends `%RESPONSE_FLAGS%`: the codes joined by `,`, or `-` when empty.
    pub fn write_to(self, out: &mut Vec<u8>) {
        if self.is_empty() {
            out.push(b'-');
            return;
        }
        let mut first = true;
        for (flag, code) in ResponseFlag::ALL {
            if self.has(flag) {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(code.as_bytes());
                first = false;
            }
        }
    }
}

impl From<ResponseFlag> for ResponseFlags {
    fn from(flag: ResponseFlag) -> ResponseFlags {
        ResponseFlags(flag as u32)
    }
}

impl std::fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_in_envoy_order() {
        let mut f = ResponseFlags::NONE;
        assert_eq!(f.to_string(), "-");
        f.set(ResponseFlag::UpstreamRetryLimitExceeded);
        f.set(ResponseFlag::DownstreamConnectionTermination);
        f.set(ResponseFlag::NoHealthyUpstream);
        assert_eq!(f.to_string(), "UH,DC,URX");
        assert_eq!(
            ResponseFlag::from_code("UPE"),
            Some(ResponseFlag::UpstreamProtocolError)
        );
        assert_eq!(ResponseFlag::from_code("XX"), None);
        assert_eq!(ResponseFlag::UpstreamOverflow.code(), "UO");
    }

    #[test]
    fn the_http_layer_records_these_flags() {
        // One definition: a stream's flags are the access log's, printed in Envoy's order.
        let mut http = crate::http::filter::ResponseFlags::default();
        http.set(crate::http::filter::ResponseFlag::StreamIdleTimeout);
        http.set(crate::http::filter::ResponseFlag::UpstreamRequestTimeout);
        assert_eq!(http.to_string(), "UT,SI");
    }
}
