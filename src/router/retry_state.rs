//! `RetryState`: the sans-IO retry decisions of one downstream request (Envoy's
//! `RetryStateImpl`).
//!
//! The router filter creates it when it routes a request ([`RetryState::create`], which also
//! consumes the `x-envoy-*` retry headers so they are not forwarded), then asks it after each
//! failed attempt: [`should_retry_headers`](RetryState::should_retry_headers) when response
//! headers arrive, [`should_retry_reset`](RetryState::should_retry_reset) when the attempt
//! ended without a response (connect failure, reset, per-try timeout). The answer is
//! [`RetryStatus::Yes`] with the back-off delay to wait before the next attempt, or why not.
//! Nothing here reads a clock or a random source: the caller passes a random `u64` in.
//!
//! The rules, in Envoy's order:
//! - `x-envoy-ratelimited` on a response: retry only under `envoy-ratelimited`;
//! - a response is retriable under `5xx` (500-599), `gateway-error` (502-504), `retriable-4xx`
//!   (409), `retriable-status-codes`, `retriable-headers`, or a gRPC condition on `grpc-status`;
//! - a reset is never retried for `Overflow`; a connect failure is retried under
//!   `connect-failure`; any reset under `reset-before-request` (if the request was not yet
//!   sent), `reset`, `5xx` or `gateway-error`; a refused stream under `refused-stream`;
//! - then the budget: none left -> [`RetryStatus::NoRetryLimitExceeded`]; else one is spent,
//!   and if the cluster's `max_retries` circuit breaker is full -> [`RetryStatus::NoOverflow`];
//! - the delay is fully jittered exponential back-off: `random % current` where `current`
//!   starts at the base interval and doubles each retry up to the max interval; except when
//!   the policy has `rate_limited_retry_back_off` and the retried response carries one of its
//!   reset headers with an interval `I` above 1 ms and at most its max: then the delay is
//!   Envoy's `JitteredLowerBoundBackOffStrategy`, `max(random % (1.5 I), I)`, for that retry
//!   only (the exponential back-off does not advance), and
//!   [`backoff_ratelimited`](RetryState::backoff_ratelimited) says so for the stats.
//!
//! Once the response has started towards the client no retry is possible: the caller says so
//! (`response_started`) and gets [`RetryStatus::No`].
//!
//! Host selection on a retry (Envoy's `shouldSelectAnotherHost`): the router reports each
//! attempt's host ([`RetryState::on_host_attempted`]); on a retry it re-picks a host the
//! policy's `retry_host_predicate` rejects ([`RetryState::should_select_another_host`]), at
//! most [`host_selection_max_attempts`](RetryState::host_selection_max_attempts) times.

use std::net::SocketAddr;
use std::ops::Deref;
use std::time::{Duration, SystemTime};

use super::header_map::HeaderMapAccess;
use super::header_matcher::{HeaderMatch, HeaderMatcher};
use super::retry_policy::{RetryHostPredicate, RetryOn, RetryPolicy};
use crate::http::inline_header::{InlineHeader, InlineSet};

/// Why an upstream attempt ended without a (complete) response head (Envoy's
/// `StreamResetReason`, the reasons an HTTP/1 upstream can produce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The connection could not be established (refused, unreachable).
    ConnectionFailure,
    /// The connect timeout expired.
    ConnectionTimeout,
    /// The connection closed (or errored) under the request.
    ConnectionTermination,
    /// We reset the stream (e.g. the per-try timeout fired).
    LocalReset,
    /// The upstream reset the stream.
    RemoteReset,
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM).
    RemoteRefusedStream,
    /// A pool or circuit-breaker overflow: never retried.
    Overflow,
    /// The upstream's response was malformed.
    ProtocolError,
}

/// The answer to "retry this attempt?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryStatus {
    /// Retry after this delay (a zero delay means "on the next loop iteration").
    Yes(Duration),
    /// Not retriable (or the response already started).
    No,
    /// Retriable, but the retry budget of the request is spent.
    NoRetryLimitExceeded,
    /// Retriable, but the cluster's `max_retries` circuit breaker is full.
    NoOverflow,
}

/// Envoy's `JitteredExponentialBackOffStrategy`, in milliseconds.
#[derive(Clone, Debug)]
struct BackOff {
    max_ms: u64,
    next_ms: u64,
}

impl BackOff {
    fn next(&mut self, random: u64) -> Duration {
        let current = self.next_ms.max(1);
        self.next_ms = if self.next_ms < self.max_ms / 2 {
            self.next_ms * 2
        } else {
            self.max_ms
        };
        Duration::from_millis((random % current).min(self.max_ms))
    }
}

enum Decision {
    No,
    RetryWithBackOff,
    RetryImmediately,
}

/// The retry bookkeeping of one downstream request. `P` holds the route's policy: a
/// reference, or an `Arc` when the state outlives the route lookup (the router filter).
#[derive(Debug, Clone)]
pub struct RetryState<P: Deref<Target = RetryPolicy>> {
    policy: P,
    retry_on: RetryOn,
    retries_remaining: u32,
    /// The policy's codes plus `x-envoy-retriable-status-codes`.
    extra_status_codes: Vec<u32>,
    /// Names from `x-envoy-retriable-header-names` (presence matchers).
    extra_retriable_headers: Vec<String>,
    backoff: BackOff,
    /// A retry was granted and no attempt has been judged since (for `retry_success` stats).
    retry_pending: bool,
    /// The hosts attempted so far (kept only when a host predicate needs them).
    attempted_hosts: Vec<SocketAddr>,
    /// The reset interval (ms) the response being judged asked for (`rate_limited_retry_back_off`).
    ratelimited_ms: Option<u64>,
    /// The last granted back-off came from a reset header, not the exponential back-off.
    backoff_ratelimited: bool,
}

/// The request headers `RetryState::create` reads and removes.
pub const RETRY_HEADERS: InlineSet = InlineSet::of(&[
    InlineHeader::XEnvoyRetryOn,
    InlineHeader::XEnvoyRetryGrpcOn,
    InlineHeader::XEnvoyMaxRetries,
    InlineHeader::XEnvoyHedgeOnPerTryTimeout,
    InlineHeader::XEnvoyRetriableHeaderNames,
    InlineHeader::XEnvoyRetriableStatusCodes,
    InlineHeader::XEnvoyUpstreamRqPerTryTimeoutMs,
]);

impl<P: Deref<Target = RetryPolicy>> RetryState<P> {
    /// Starts the retry state of a request routed with `policy` (Envoy's
    /// `RetryStateImpl::create`). Returns `None` when no retry can ever happen (neither the
    /// policy nor the request asks for one). Either way the retry headers are removed from
    /// `request` so they are not forwarded; call `final_timeout` first, it reads
    /// `x-envoy-upstream-rq-per-try-timeout-ms`.
    ///
    /// The `x-envoy-*` headers should only reach here from trusted clients: the connection
    /// manager strips them from external requests, as Envoy does.
    pub fn create<H: HeaderMapAccess + ?Sized>(policy: P, request: &mut H) -> Option<RetryState<P>>
    where
        P: Clone,
    {
        Self::create_from(&policy, request)
    }

    /// [`create`](Self::create) from a policy handle that is cloned (an `Arc`: a reference
    /// count) only when a state is created: a request routed without retries (the usual one)
    /// leaves the shared policy untouched.
    pub fn create_from<H: HeaderMapAccess + ?Sized>(
        policy: &P,
        request: &mut H,
    ) -> Option<RetryState<P>>
    where
        P: Clone,
    {
        // The usual request carries none of the control headers: one bit test settles that.
        let any_header = request.contains_any(RETRY_HEADERS);
        if policy.retry_on.is_empty() && !any_header {
            return None;
        }
        Self::create_slow(policy, request, any_header)
    }

    /// The retry policy asks for retries, or the request carries retry headers (a trusted
    /// client asking for retries): build the state and consume the headers.
    #[inline(never)]
    fn create_slow<H: HeaderMapAccess + ?Sized>(
        policy: &P,
        request: &mut H,
        any_header: bool,
    ) -> Option<RetryState<P>>
    where
        P: Clone,
    {
        let wanted = !policy.retry_on.is_empty()
            || (any_header
                && (request.contains("x-envoy-retry-on")
                    || request.contains("x-envoy-retry-grpc-on")));
        let state = if wanted {
            Some(RetryState::new(policy.clone(), request))
        } else {
            None
        };
        if any_header {
            for header in RETRY_HEADERS.iter() {
                request.remove(header.name());
            }
        }
        state
    }

    fn new<H: HeaderMapAccess + ?Sized>(policy: P, request: &H) -> Self {
        let mut retry_on = policy.retry_on;
        if let Some(v) = request.get("x-envoy-retry-on") {
            retry_on = retry_on | RetryOn::parse(v).0;
        }
        if let Some(v) = request.get("x-envoy-retry-grpc-on") {
            let grpc = RetryOn::parse(v).0;
            retry_on = retry_on | RetryOn(grpc.0 & RetryOn::ANY_GRPC.0);
        }
        if !policy.retriable_request_headers.is_empty()
            && !policy
                .retriable_request_headers
                .iter()
                .any(|m| m.matches(request))
        {
            retry_on = RetryOn::default();
        }
        let mut retries_remaining = policy.num_retries;
        if !retry_on.is_empty() {
            if let Some(n) = request
                .get("x-envoy-max-retries")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                retries_remaining = n.min(u64::from(u32::MAX)) as u32;
            }
        }
        let extra_status_codes = request
            .get("x-envoy-retriable-status-codes")
            .map(|v| {
                v.split(',')
                    .filter_map(|c| c.trim().parse::<u32>().ok())
                    .collect()
            })
            .unwrap_or_default();
        let extra_retriable_headers = request
            .get("x-envoy-retriable-header-names")
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let base_ms = (policy.base_interval.as_millis() as u64).max(1);
        let max_ms = (policy.max_interval.as_millis() as u64).max(base_ms);
        RetryState {
            policy,
            retry_on,
            retries_remaining,
            extra_status_codes,
            extra_retriable_headers,
            backoff: BackOff {
                max_ms,
                next_ms: base_ms,
            },
            retry_pending: false,
            attempted_hosts: Vec::new(),
            ratelimited_ms: None,
            backoff_ratelimited: false,
        }
    }

    /// An attempt goes to `host` (Envoy's `onHostAttempted`).
    pub fn on_host_attempted(&mut self, host: SocketAddr) {
        if !self.policy.host_predicates.is_empty() {
            self.attempted_hosts.push(host);
        }
    }

    /// Whether a retry must pick another host than `host` (a `retry_host_predicate` rejects
    /// it).
    pub fn should_select_another_host(&self, host: SocketAddr) -> bool {
        self.policy.host_predicates.iter().any(|p| match p {
            RetryHostPredicate::PreviousHosts => self.attempted_hosts.contains(&host),
        })
    }

    /// Whether host selection on a retry consults the predicates at all.
    pub fn has_host_predicates(&self) -> bool {
        !self.policy.host_predicates.is_empty()
    }

    /// How many times a retry may re-pick its host (`host_selection_retry_max_attempts`).
    pub fn host_selection_max_attempts(&self) -> u32 {
        self.policy.host_selection_max_attempts
    }

    /// The conditions in force (policy plus request headers).
    pub fn retry_on(&self) -> RetryOn {
        self.retry_on
    }

    /// Retries left.
    pub fn retries_remaining(&self) -> u32 {
        self.retries_remaining
    }

    /// Judges response headers with `status` from an attempt. `request` is the downstream
    /// request (for the `early-data` check of a retriable 425); `can_create_retry` is the
    /// cluster's `max_retries` circuit breaker; `random` feeds the jitter; `now` is the wall
    /// clock, asked only for a `UNIX_TIMESTAMP` reset header.
    ///
    /// When the answer is not `Yes` and a previous retry was granted, that retry succeeded:
    /// [`take_retry_success`](Self::take_retry_success) says so once (for
    /// `upstream_rq_retry_success`).
    pub fn should_retry_headers<R, Q, C>(
        &mut self,
        status: u16,
        response: &R,
        request: &Q,
        can_create_retry: bool,
        random: u64,
        now: C,
    ) -> RetryStatus
    where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
        C: FnOnce() -> SystemTime,
    {
        let decision = self.would_retry_from_headers(status, response, request);
        if matches!(decision, Decision::RetryWithBackOff) && !self.policy.reset_headers.is_empty() {
            self.ratelimited_ms = self.reset_interval_ms(response, now);
        }
        self.should_retry(decision, can_create_retry, random)
    }

    /// Envoy's `parseResetInterval`: the first reset header present whose interval is at most
    /// the max interval, if that interval is above 1 ms.
    fn reset_interval_ms<R, C>(&self, response: &R, now: C) -> Option<u64>
    where
        R: HeaderMapAccess + ?Sized,
        C: FnOnce() -> SystemTime,
    {
        // The wall clock is read at most once, and only for a UNIX_TIMESTAMP header.
        let mut now = Some(now);
        let mut wall = None;
        let mut wall_clock =
            || *wall.get_or_insert_with(|| now.take().map_or(SystemTime::UNIX_EPOCH, |f| f()));
        let interval = self.policy.reset_headers.iter().find_map(|h| {
            h.interval(response, &mut wall_clock)
                .filter(|i| *i <= self.policy.reset_max_interval)
        })?;
        let ms = interval.as_millis().min(u128::from(u64::MAX)) as u64;
        (ms > 1).then_some(ms)
    }

    /// Whether the last granted retry's back-off came from a rate-limit reset header
    /// (`upstream_rq_retry_backoff_ratelimited`) rather than the exponential back-off
    /// (`upstream_rq_retry_backoff_exponential`).
    pub fn backoff_ratelimited(&self) -> bool {
        self.backoff_ratelimited
    }

    /// Judges an attempt that ended without response headers. `request_sent`: the request
    /// was fully written upstream (for `reset-before-request`); `response_started`: part of a
    /// response already went to the client (then never retry).
    pub fn should_retry_reset(
        &mut self,
        reason: ResetReason,
        request_sent: bool,
        response_started: bool,
        can_create_retry: bool,
        random: u64,
    ) -> RetryStatus {
        if response_started {
            return RetryStatus::No;
        }
        let decision = self.would_retry_from_reset(reason, request_sent);
        self.should_retry(decision, can_create_retry, random)
    }

    /// A per-try timeout is judged as a local reset of the attempt (Envoy's
    /// `onPerTryTimeout`: retried under `reset`, `5xx` and `gateway-error`).
    pub fn should_retry_per_try_timeout(
        &mut self,
        response_started: bool,
        can_create_retry: bool,
        random: u64,
    ) -> RetryStatus {
        self.should_retry_reset(
            ResetReason::LocalReset,
            true,
            response_started,
            can_create_retry,
            random,
        )
    }

    /// Whether the last granted retry has been followed by a non-retried outcome; resets.
    pub fn take_retry_success(&mut self) -> bool {
        std::mem::take(&mut self.retry_pending)
    }

    fn would_retry_from_headers<R, Q>(&self, status: u16, response: &R, request: &Q) -> Decision
    where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
    {
        let on = self.retry_on;
        if response.contains("x-envoy-ratelimited") {
            return if on.any(RetryOn::ENVOY_RATE_LIMITED) {
                Decision::RetryWithBackOff
            } else {
                Decision::No
            };
        }
        if on.any(RetryOn::FIVE_XX) && (500..600).contains(&status) {
            return Decision::RetryWithBackOff;
        }
        if on.any(RetryOn::GATEWAY_ERROR) && (502..=504).contains(&status) {
            return Decision::RetryWithBackOff;
        }
        if on.any(RetryOn::RETRIABLE_4XX) && status == 409 {
            return Decision::RetryWithBackOff;
        }
        if on.any(RetryOn::RETRIABLE_STATUS_CODES) {
            let codes = self
                .policy
                .retriable_status_codes
                .iter()
                .chain(&self.extra_status_codes);
            for &code in codes {
                if code != u32::from(status) {
                    continue;
                }
                if status != 425 {
                    return Decision::RetryWithBackOff;
                }
                // 425 Too Early: retry (at once) only if the client did not send early data.
                if !request.contains("early-data") {
                    return Decision::RetryImmediately;
                }
            }
        }
        if on.any(RetryOn::RETRIABLE_HEADERS) {
            let configured = self
                .policy
                .retriable_headers
                .iter()
                .any(|m| m.matches(response));
            let named = self.extra_retriable_headers.iter().any(|name| {
                HeaderMatcher {
                    name: name.clone(),
                    matcher: HeaderMatch::Present(true),
                    invert: false,
                    treat_missing_as_empty: false,
                }
                .matches(response)
            });
            if configured || named {
                return Decision::RetryWithBackOff;
            }
        }
        if on.any(RetryOn::ANY_GRPC) {
            let grpc = response
                .get("grpc-status")
                .and_then(|s| s.trim().parse::<u32>().ok());
            let hit = match grpc {
                Some(1) => on.any(RetryOn::GRPC_CANCELLED),
                Some(4) => on.any(RetryOn::GRPC_DEADLINE_EXCEEDED),
                Some(8) => on.any(RetryOn::GRPC_RESOURCE_EXHAUSTED),
                Some(13) => on.any(RetryOn::GRPC_INTERNAL),
                Some(14) => on.any(RetryOn::GRPC_UNAVAILABLE),
                _ => false,
            };
            if hit {
                return Decision::RetryWithBackOff;
            }
        }
        Decision::No
    }

    fn would_retry_from_reset(&self, reason: ResetReason, request_sent: bool) -> Decision {
        let on = self.retry_on;
        match reason {
            // Overflow is the circuit breaker saying no: retrying would make it worse.
            ResetReason::Overflow => return Decision::No,
            ResetReason::ConnectionFailure | ResetReason::ConnectionTimeout
                if on.any(RetryOn::CONNECT_FAILURE) =>
            {
                return Decision::RetryWithBackOff
            }
            _ => {}
        }
        if on.any(RetryOn::RESET_BEFORE_REQUEST) && !request_sent {
            return Decision::RetryWithBackOff;
        }
        // Envoy counts any reset as a "5xx" (it will become a 503 for the client).
        if on.any(RetryOn::RESET | RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR) {
            return Decision::RetryWithBackOff;
        }
        if on.any(RetryOn::REFUSED_STREAM) && reason == ResetReason::RemoteRefusedStream {
            return Decision::RetryWithBackOff;
        }
        Decision::No
    }

    fn should_retry(
        &mut self,
        decision: Decision,
        can_create_retry: bool,
        random: u64,
    ) -> RetryStatus {
        let ratelimited_ms = self.ratelimited_ms.take();
        if matches!(decision, Decision::No) {
            return RetryStatus::No;
        }
        self.retry_pending = false;
        if self.retries_remaining == 0 {
            return RetryStatus::NoRetryLimitExceeded;
        }
        self.retries_remaining -= 1;
        if !can_create_retry {
            return RetryStatus::NoOverflow;
        }
        self.retry_pending = true;
        self.backoff_ratelimited = false;
        match (decision, ratelimited_ms) {
            (Decision::RetryImmediately, _) => RetryStatus::Yes(Duration::ZERO),
            (_, Some(min)) => {
                // Envoy's JitteredLowerBoundBackOffStrategy: random(min, 1.5 * min).
                self.backoff_ratelimited = true;
                let upper = min.saturating_add(min / 2);
                RetryStatus::Yes(Duration::from_millis((random % upper).max(min)))
            }
            _ => RetryStatus::Yes(self.backoff.next(random)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, Node};
    use crate::router::header_map::VecHeaderMap;

    #[test]
    fn every_retry_header_is_an_x_envoy_header() {
        assert!(RETRY_HEADERS
            .iter()
            .all(|h| h.name().starts_with("x-envoy-")));
    }

    fn policy(yaml: &str) -> RetryPolicy {
        let doc = parse_yaml(yaml).unwrap();
        RetryPolicy::parse(&Node::root(&doc)).unwrap()
    }

    fn state<'a>(
        p: &'a RetryPolicy,
        headers: &[(&str, &str)],
    ) -> Option<RetryState<&'a RetryPolicy>> {
        let mut req = VecHeaderMap::request("h", "/", headers);
        RetryState::create(p, &mut req)
    }

    fn status(s: &mut RetryState<&RetryPolicy>, code: u16) -> RetryStatus {
        let none = VecHeaderMap::new();
        s.should_retry_headers(code, &none, &none, true, 0, SystemTime::now)
    }

    fn reset(s: &mut RetryState<&RetryPolicy>, reason: ResetReason) -> RetryStatus {
        s.should_retry_reset(reason, true, false, true, 0)
    }

    const YES0: RetryStatus = RetryStatus::Yes(Duration::ZERO);

    // === create ===

    #[test]
    fn no_state_without_policy_or_header_and_headers_are_consumed() {
        let p = RetryPolicy::default();
        let mut req = VecHeaderMap::request(
            "h",
            "/",
            &[
                ("x-envoy-max-retries", "3"),
                ("x-envoy-retriable-status-codes", "418"),
            ],
        );
        assert!(RetryState::create(&p, &mut req).is_none());
        assert!(!req.contains("x-envoy-max-retries"));
        assert!(!req.contains("x-envoy-retriable-status-codes"));
    }

    #[test]
    fn retry_on_header_enables_retries_with_one_retry_by_default() {
        let p = RetryPolicy::default();
        let mut s = state(&p, &[("x-envoy-retry-on", "5xx")]).unwrap();
        assert_eq!(s.retries_remaining(), 1);
        assert_eq!(status(&mut s, 503), YES0);
        assert_eq!(status(&mut s, 503), RetryStatus::NoRetryLimitExceeded);
    }

    #[test]
    fn max_retries_header_overrides_only_when_retrying() {
        let p = policy("{retry_on: 5xx, num_retries: 2}");
        assert_eq!(
            state(&p, &[("x-envoy-max-retries", "5")])
                .unwrap()
                .retries_remaining(),
            5
        );
        assert_eq!(
            state(&p, &[("x-envoy-max-retries", "x")])
                .unwrap()
                .retries_remaining(),
            2
        );
        let none = RetryPolicy::default();
        // No retry_on at all: the header alone does not create a state.
        assert!(state(&none, &[("x-envoy-max-retries", "5")]).is_none());
    }

    #[test]
    fn retriable_request_headers_gate_every_retry() {
        let p = policy("{retry_on: 5xx, retriable_request_headers: [{name: ':method', string_match: {exact: GET}}]}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(status(&mut s, 503), YES0);
        let mut req = VecHeaderMap::request("h", "/", &[]);
        req.set(":method", "POST");
        let mut s = RetryState::create(&p, &mut req).unwrap();
        assert_eq!(status(&mut s, 503), RetryStatus::No);
    }

    // === responses ===

    #[test]
    fn five_xx_and_gateway_error() {
        let p = policy("retry_on: 5xx");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(status(&mut s, 404), RetryStatus::No);
        assert_eq!(status(&mut s, 500), YES0);
        let p = policy("{retry_on: gateway-error, num_retries: 10}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(status(&mut s, 500), RetryStatus::No);
        for code in [502, 503, 504] {
            assert_eq!(status(&mut s, code), YES0, "{code}");
        }
        assert_eq!(status(&mut s, 505), RetryStatus::No);
    }

    #[test]
    fn retriable_4xx_is_409_only() {
        let p = policy("{retry_on: retriable-4xx, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(status(&mut s, 400), RetryStatus::No);
        assert_eq!(status(&mut s, 409), YES0);
    }

    #[test]
    fn retriable_status_codes_from_policy_and_header() {
        let p = policy(
            "{retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 5}",
        );
        let mut s = state(&p, &[("x-envoy-retriable-status-codes", "429, x,404")]).unwrap();
        assert_eq!(status(&mut s, 418), YES0);
        assert_eq!(status(&mut s, 429), YES0);
        assert_eq!(status(&mut s, 404), YES0);
        assert_eq!(status(&mut s, 500), RetryStatus::No);
    }

    #[test]
    fn envoy_ratelimited_response_needs_its_own_condition() {
        let p = policy("retry_on: 5xx");
        let mut s = state(&p, &[]).unwrap();
        let limited = VecHeaderMap::from_pairs(&[("x-envoy-ratelimited", "true")]);
        let req = VecHeaderMap::new();
        assert_eq!(
            s.should_retry_headers(503, &limited, &req, true, 0, SystemTime::now),
            RetryStatus::No
        );
        let p = policy("retry_on: envoy-ratelimited");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(
            s.should_retry_headers(429, &limited, &req, true, 0, SystemTime::now),
            YES0
        );
    }

    #[test]
    fn retriable_headers_and_grpc() {
        let p = policy(
            "{retry_on: retriable-headers, num_retries: 5, retriable_headers: [{name: x-retry}]}",
        );
        let mut s = state(&p, &[("x-envoy-retriable-header-names", "X-Other")]).unwrap();
        let req = VecHeaderMap::new();
        let r1 = VecHeaderMap::from_pairs(&[("x-retry", "1")]);
        let r2 = VecHeaderMap::from_pairs(&[("x-other", "1")]);
        let r3 = VecHeaderMap::from_pairs(&[("x-nope", "1")]);
        assert_eq!(
            s.should_retry_headers(200, &r1, &req, true, 0, SystemTime::now),
            YES0
        );
        assert_eq!(
            s.should_retry_headers(200, &r2, &req, true, 0, SystemTime::now),
            YES0
        );
        assert_eq!(
            s.should_retry_headers(200, &r3, &req, true, 0, SystemTime::now),
            RetryStatus::No
        );

        let p = policy("retry_on: unavailable");
        let mut s = state(&p, &[]).unwrap();
        let r = VecHeaderMap::from_pairs(&[("grpc-status", "13")]);
        assert_eq!(
            s.should_retry_headers(200, &r, &req, true, 0, SystemTime::now),
            RetryStatus::No
        );
        let r = VecHeaderMap::from_pairs(&[("grpc-status", "14")]);
        assert_eq!(
            s.should_retry_headers(200, &r, &req, true, 0, SystemTime::now),
            YES0
        );
    }

    #[test]
    fn too_early_is_retried_immediately_unless_early_data() {
        let p = policy(
            "{retry_on: retriable-status-codes, retriable_status_codes: [425], num_retries: 3}",
        );
        let mut s = state(&p, &[]).unwrap();
        let none = VecHeaderMap::new();
        assert_eq!(
            s.should_retry_headers(425, &none, &none, true, 7, SystemTime::now),
            YES0
        );
        let early = VecHeaderMap::from_pairs(&[("early-data", "1")]);
        assert_eq!(
            s.should_retry_headers(425, &none, &early, true, 7, SystemTime::now),
            RetryStatus::No
        );
    }

    // === resets ===

    #[test]
    fn connect_failure_only_for_connection_failures() {
        let p = policy("{retry_on: connect-failure, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(reset(&mut s, ResetReason::ConnectionFailure), YES0);
        assert_eq!(reset(&mut s, ResetReason::ConnectionTimeout), YES0);
        assert_eq!(reset(&mut s, ResetReason::RemoteReset), RetryStatus::No);
        assert_eq!(status(&mut s, 503), RetryStatus::No);
    }

    #[test]
    fn resets_count_as_5xx() {
        for on in ["5xx", "gateway-error", "reset"] {
            let p = policy(&format!("{{retry_on: {on}, num_retries: 5}}"));
            let mut s = state(&p, &[]).unwrap();
            assert_eq!(reset(&mut s, ResetReason::RemoteReset), YES0, "{on}");
            assert_eq!(reset(&mut s, ResetReason::ConnectionFailure), YES0, "{on}");
            assert_eq!(
                reset(&mut s, ResetReason::Overflow),
                RetryStatus::No,
                "{on}"
            );
        }
    }

    #[test]
    fn reset_before_request_and_refused_stream() {
        let p = policy("{retry_on: reset-before-request, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(
            s.should_retry_reset(ResetReason::RemoteReset, false, false, true, 0),
            YES0
        );
        assert_eq!(
            s.should_retry_reset(ResetReason::RemoteReset, true, false, true, 0),
            RetryStatus::No
        );
        let p = policy("{retry_on: refused-stream, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(reset(&mut s, ResetReason::RemoteRefusedStream), YES0);
        assert_eq!(reset(&mut s, ResetReason::RemoteReset), RetryStatus::No);
    }

    #[test]
    fn never_once_the_response_started() {
        let p = policy("{retry_on: reset, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(
            s.should_retry_reset(ResetReason::RemoteReset, true, true, true, 0),
            RetryStatus::No
        );
        assert_eq!(
            s.should_retry_per_try_timeout(true, true, 0),
            RetryStatus::No
        );
        assert_eq!(s.retries_remaining(), 5);
    }

    #[test]
    fn per_try_timeout_is_a_local_reset() {
        let p = policy("{retry_on: connect-failure, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(
            s.should_retry_per_try_timeout(false, true, 0),
            RetryStatus::No
        );
        let p = policy("{retry_on: gateway-error, num_retries: 5}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(s.should_retry_per_try_timeout(false, true, 0), YES0);
    }

    /// Each case ran through Envoy 1.40 against an upstream answering `status`: the number of
    /// attempts the upstream saw.
    #[test]
    fn attempts_observed_on_envoy() {
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Headers, u16, u32)] = &[
            (&[("x-envoy-retry-on", "5xx")], 503, 2),
            (
                &[("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "3")],
                503,
                4,
            ),
            (&[("x-envoy-retry-on", "gateway-error")], 500, 1),
            (&[("x-envoy-retry-on", "gateway-error")], 502, 2),
            (&[("x-envoy-retry-on", "retriable-4xx")], 409, 2),
            (
                &[
                    ("x-envoy-retry-on", "retriable-status-codes"),
                    ("x-envoy-retriable-status-codes", "418"),
                ],
                418,
                2,
            ),
            (&[("x-envoy-retry-on", "retriable-status-codes")], 418, 1),
            (&[("x-envoy-max-retries", "3")], 503, 1),
            (
                &[("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "0")],
                503,
                1,
            ),
            (
                &[
                    ("x-envoy-retry-on", "retriable-status-codes"),
                    ("x-envoy-retriable-status-codes", "425"),
                ],
                425,
                2,
            ),
            (&[("x-envoy-retry-on", "bogus")], 503, 1),
        ];
        let p = RetryPolicy::default();
        for (headers, code, want) in cases {
            let mut attempts = 1;
            if let Some(mut s) = state(&p, headers) {
                while let RetryStatus::Yes(_) = status(&mut s, *code) {
                    attempts += 1;
                }
            }
            assert_eq!(attempts, *want, "{headers:?} {code}");
        }
        // retriable-headers with a header named by the request, on a 200.
        let mut s = state(
            &p,
            &[
                ("x-envoy-retry-on", "retriable-headers"),
                ("x-envoy-retriable-header-names", "x-up-resp"),
            ],
        )
        .unwrap();
        let resp = VecHeaderMap::from_pairs(&[("x-up-resp", "u")]);
        let req = VecHeaderMap::new();
        assert_eq!(
            s.should_retry_headers(200, &resp, &req, true, 0, SystemTime::now),
            YES0
        );
        assert_eq!(
            s.should_retry_headers(200, &resp, &req, true, 0, SystemTime::now),
            RetryStatus::NoRetryLimitExceeded
        );
    }

    // === budget, circuit breaker, back-off ===

    #[test]
    fn overflow_spends_a_retry() {
        let p = policy("{retry_on: 5xx, num_retries: 2}");
        let mut s = state(&p, &[]).unwrap();
        let none = VecHeaderMap::new();
        assert_eq!(
            s.should_retry_headers(503, &none, &none, false, 0, SystemTime::now),
            RetryStatus::NoOverflow
        );
        assert_eq!(s.retries_remaining(), 1);
    }

    #[test]
    fn retry_success_is_reported_once() {
        let p = policy("{retry_on: 5xx, num_retries: 2}");
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(status(&mut s, 503), YES0);
        assert_eq!(status(&mut s, 200), RetryStatus::No);
        assert!(s.take_retry_success());
        assert!(!s.take_retry_success());
    }

    #[test]
    fn previous_hosts_rejects_attempted_hosts_only() {
        let p = RetryPolicy {
            host_predicates: vec![RetryHostPredicate::PreviousHosts],
            host_selection_max_attempts: 4,
            ..policy("retry_on: 5xx")
        };
        let mut s = state(&p, &[]).unwrap();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert!(s.has_host_predicates());
        assert!(!s.should_select_another_host(a));
        s.on_host_attempted(a);
        assert!(s.should_select_another_host(a));
        assert!(!s.should_select_another_host(b));
        assert_eq!(s.host_selection_max_attempts(), 4);
        // Without a predicate nothing is kept or rejected.
        let plain = policy("retry_on: 5xx");
        let mut s = state(&plain, &[]).unwrap();
        s.on_host_attempted(a);
        assert!(!s.should_select_another_host(a));
    }

    #[test]
    fn jittered_exponential_backoff() {
        // base 25 ms, max 250 ms: the jitter windows are 25, 50, 100, 200, 250, 250.
        let p = policy("{retry_on: 5xx, num_retries: 10}");
        let mut s = state(&p, &[]).unwrap();
        let none = VecHeaderMap::new();
        let mut delays = Vec::new();
        for _ in 0..6 {
            match s.should_retry_headers(503, &none, &none, true, u64::MAX - 1, SystemTime::now) {
                RetryStatus::Yes(d) => delays.push(d.as_millis() as u64),
                other => panic!("{other:?}"),
            }
        }
        let windows = [25u64, 50, 100, 200, 250, 250];
        let want: Vec<u64> = windows.iter().map(|w| (u64::MAX - 1) % w).collect();
        assert_eq!(delays, want);
        // A random value below the window is the delay itself.
        let mut s = state(&p, &[]).unwrap();
        assert_eq!(
            s.should_retry_headers(503, &none, &none, true, 24, SystemTime::now),
            RetryStatus::Yes(Duration::from_millis(24))
        );
    }

    #[test]
    fn configured_backoff_caps_at_max() {
        let p = policy("{retry_on: 5xx, num_retries: 10, retry_back_off: {base_interval: 0.1s, max_interval: 0.15s}}");
        let mut s = state(&p, &[]).unwrap();
        let none = VecHeaderMap::new();
        let mut windows = Vec::new();
        for _ in 0..3 {
            // random = window - 1 reveals the window.
            let before = s.backoff.next_ms;
            windows.push(before);
            s.should_retry_headers(503, &none, &none, true, before - 1, SystemTime::now);
        }
        assert_eq!(windows, vec![100, 150, 150]);
    }

    const RATE_LIMITED: &str = "{retry_on: retriable-status-codes, retriable_status_codes: [429], num_retries: 5, rate_limited_retry_back_off: {reset_headers: [{name: Retry-After}, {name: x-ratelimit-reset, format: UNIX_TIMESTAMP}], max_interval: 10s}}";

    fn at(secs: u64, millis: u64) -> impl FnOnce() -> SystemTime {
        move || SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn rate_limited_backoff_uses_the_reset_header_once() {
        let p = policy(RATE_LIMITED);
        let mut s = state(&p, &[]).unwrap();
        let req = VecHeaderMap::new();
        let limited = VecHeaderMap::from_pairs(&[("retry-after", " 2 ")]);
        // random(2000, 3000): a small random gives the lower bound, a large one the jitter.
        assert_eq!(
            s.should_retry_headers(429, &limited, &req, true, 5, at(0, 0)),
            RetryStatus::Yes(Duration::from_millis(2000))
        );
        assert!(s.backoff_ratelimited());
        assert_eq!(
            s.should_retry_headers(429, &limited, &req, true, 2999, at(0, 0)),
            RetryStatus::Yes(Duration::from_millis(2999))
        );
        // Without the header: the exponential back-off, which had not advanced (window 25 ms).
        let none = VecHeaderMap::new();
        assert_eq!(
            s.should_retry_headers(429, &none, &req, true, 24, at(0, 0)),
            RetryStatus::Yes(Duration::from_millis(24))
        );
        assert!(!s.backoff_ratelimited());
    }

    #[test]
    fn rate_limited_headers_that_do_not_count() {
        let p = policy(RATE_LIMITED);
        let req = VecHeaderMap::new();
        for value in ["0", "11", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", ""] {
            let mut s = state(&p, &[]).unwrap();
            let r = VecHeaderMap::from_pairs(&[("retry-after", value)]);
            assert_eq!(
                s.should_retry_headers(429, &r, &req, true, 7, at(0, 0)),
                RetryStatus::Yes(Duration::from_millis(7)),
                "{value:?}"
            );
            assert!(!s.backoff_ratelimited(), "{value:?}");
        }
        // Too long in the first header: the next one is looked at.
        let mut s = state(&p, &[]).unwrap();
        let r = VecHeaderMap::from_pairs(&[("retry-after", "60"), ("x-ratelimit-reset", "1003")]);
        assert_eq!(
            s.should_retry_headers(429, &r, &req, true, 0, at(1000, 250)),
            RetryStatus::Yes(Duration::from_millis(2750))
        );
        // A reset time already past is ignored; a response not retried never uses it.
        let mut s = state(&p, &[]).unwrap();
        let r = VecHeaderMap::from_pairs(&[("x-ratelimit-reset", "999")]);
        assert_eq!(
            s.should_retry_headers(429, &r, &req, true, 3, at(1000, 0)),
            RetryStatus::Yes(Duration::from_millis(3))
        );
        let r = VecHeaderMap::from_pairs(&[("retry-after", "2")]);
        assert_eq!(
            s.should_retry_headers(200, &r, &req, true, 3, at(0, 0)),
            RetryStatus::No
        );
    }
}
