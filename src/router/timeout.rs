//! The upstream timeouts of a routed request (Envoy's `FilterUtility::finalTimeout` and
//! `setTimeoutHeaders`).
//!
//! The route gives the global timeout (`timeout`, default 15 s, `0s` disables) and the retry
//! policy the per-try timeout. A trusted client may override both with
//! `x-envoy-upstream-rq-timeout-ms` and `x-envoy-upstream-rq-per-try-timeout-ms` (both are
//! consumed: not forwarded). A per-try timeout not shorter than the global one is dropped. The
//! upstream is told the time it has in `x-envoy-expected-rq-timeout-ms` (unless the router
//! suppresses Envoy headers). Called by the router filter before `RetryState::create`.
//!
//! What a route's timeouts come to without override headers (the usual request: they are
//! honoured only from trusted clients) does not depend on the request, so it is worked out
//! once at config load ([`RouteTimeouts`]), the header value formatted with it.

use std::time::Duration;

use super::header_map::HeaderMapAccess;
use super::retry_policy::RetryPolicy;
use crate::http::decimal::Decimal;
use crate::http::inline_header::{InlineHeader, InlineSet};

/// The headers through which a trusted client overrides the route's timeouts.
const OVERRIDE_HEADERS: InlineSet = InlineSet::of(&[
    InlineHeader::XEnvoyUpstreamRqTimeoutMs,
    InlineHeader::XEnvoyUpstreamRqPerTryTimeoutMs,
]);

/// The timeouts in force for one request; `None` means no timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutData {
    /// From the start of the first attempt until the upstream response is complete.
    pub global_timeout: Option<Duration>,
    /// For each attempt.
    pub per_try_timeout: Option<Duration>,
}

impl TimeoutData {
    /// The timeouts in force for `global` and `per_try`: a per-try timeout not shorter than
    /// the global one is dropped.
    fn of(global: Option<Duration>, per_try: Option<Duration>) -> TimeoutData {
        let per_try = match (per_try, global) {
            (Some(p), Some(g)) if p >= g => None,
            _ => per_try,
        };
        TimeoutData {
            global_timeout: global,
            per_try_timeout: per_try,
        }
    }
}

/// A route's timeouts as configured (its `timeout`, its retry policy's `per_try_timeout`) and
/// what they come to for a request without override headers, with the
/// `x-envoy-expected-rq-timeout-ms` value of its first attempt: all fixed at config load.
#[derive(Clone, Copy, Debug)]
pub struct RouteTimeouts {
    /// The route's `timeout` (`None`: disabled).
    route_timeout: Option<Duration>,
    /// The retry policy's `per_try_timeout`.
    per_try_timeout: Option<Duration>,
    /// The timeouts in force when no header overrides them.
    timeout: TimeoutData,
    /// `x-envoy-expected-rq-timeout-ms` for the first attempt (`None`: no timeout, no header).
    expected: Option<Decimal>,
}

impl RouteTimeouts {
    /// The timeouts of a route with `route_timeout` whose retry policy in force has
    /// `per_try_timeout`.
    pub fn new(
        route_timeout: Option<Duration>,
        per_try_timeout: Option<Duration>,
    ) -> RouteTimeouts {
        let timeout = TimeoutData::of(route_timeout, per_try_timeout);
        RouteTimeouts {
            route_timeout,
            per_try_timeout,
            timeout,
            expected: expected_timeout_ms(Duration::ZERO, &timeout).map(Decimal::new),
        }
    }

    /// [`final_timeout`] of a request routed here: the override headers are consumed (the
    /// timeouts then worked out for that request); else the load-time answer is used as is.
    pub fn final_timeout<H: HeaderMapAccess + ?Sized>(
        &self,
        request: &mut H,
        insert_expected_timeout: bool,
    ) -> TimeoutData {
        // The usual request carries neither header: one bit test settles that.
        if request.contains_any(OVERRIDE_HEADERS) {
            return override_timeout(
                self.route_timeout,
                self.per_try_timeout,
                request,
                insert_expected_timeout,
            );
        }
        if let (Some(expected), true) = (&self.expected, insert_expected_timeout) {
            request.set_generated(EXPECTED_TIMEOUT, expected.as_bytes());
        }
        self.timeout
    }
}

/// `x-envoy-expected-rq-timeout-ms`.
const EXPECTED_TIMEOUT: &str = "x-envoy-expected-rq-timeout-ms";

/// Computes the timeouts of a request routed with `route_timeout` and `policy`, consuming the
/// override headers and (if `insert_expected_timeout`) setting
/// `x-envoy-expected-rq-timeout-ms`. (The router asks its route's [`RouteTimeouts`], which
/// answers the same without the arithmetic.)
pub fn final_timeout<H: HeaderMapAccess + ?Sized>(
    route_timeout: Option<Duration>,
    policy: &RetryPolicy,
    request: &mut H,
    insert_expected_timeout: bool,
) -> TimeoutData {
    if request.contains_any(OVERRIDE_HEADERS) {
        return override_timeout(
            route_timeout,
            policy.per_try_timeout,
            request,
            insert_expected_timeout,
        );
    }
    let timeout = TimeoutData::of(route_timeout, policy.per_try_timeout);
    set_timeout_headers(Duration::ZERO, &timeout, request, insert_expected_timeout);
    timeout
}

/// [`final_timeout`] of a request with override headers (a trusted client's).
#[inline(never)]
fn override_timeout<H: HeaderMapAccess + ?Sized>(
    route_timeout: Option<Duration>,
    per_try_timeout: Option<Duration>,
    request: &mut H,
    insert_expected_timeout: bool,
) -> TimeoutData {
    let (global, per_try) = consume_override_headers(request, route_timeout, per_try_timeout);
    let timeout = TimeoutData::of(global, per_try);
    set_timeout_headers(Duration::ZERO, &timeout, request, insert_expected_timeout);
    timeout
}

/// A trusted client's `x-envoy-upstream-rq-timeout-ms` / `-per-try-timeout-ms` replace the
/// route's timeouts (a value that is not a number is ignored); both headers are removed.
fn consume_override_headers<H: HeaderMapAccess + ?Sized>(
    request: &mut H,
    mut global: Option<Duration>,
    mut per_try: Option<Duration>,
) -> (Option<Duration>, Option<Duration>) {
    const GLOBAL: &str = "x-envoy-upstream-rq-timeout-ms";
    const PER_TRY: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
    if let Some(ms) = header_ms(request, GLOBAL) {
        global = ms;
    }
    request.remove(GLOBAL);
    if let Some(ms) = header_ms(request, PER_TRY) {
        per_try = ms;
    }
    request.remove(PER_TRY);
    (global, per_try)
}

/// Sets `x-envoy-expected-rq-timeout-ms` for an attempt starting `elapsed` after the first:
/// the per-try timeout (or the global one), never past what is left of the global one, at
/// least 1 ms. Called again for each retry.
pub fn set_timeout_headers<H: HeaderMapAccess + ?Sized>(
    elapsed: Duration,
    timeout: &TimeoutData,
    request: &mut H,
    insert_expected_timeout: bool,
) {
    if !insert_expected_timeout {
        return;
    }
    if let Some(expected) = expected_timeout_ms(elapsed, timeout) {
        request.set_generated(EXPECTED_TIMEOUT, Decimal::new(expected).as_bytes());
    }
}

/// The `x-envoy-expected-rq-timeout-ms` value of an attempt starting `elapsed` after the
/// first (see [`set_timeout_headers`]); `None` without any timeout (no header).
fn expected_timeout_ms(elapsed: Duration, timeout: &TimeoutData) -> Option<u64> {
    let global = timeout.global_timeout.map_or(0, |d| d.as_millis() as u64);
    let mut expected = timeout.per_try_timeout.map_or(0, |d| d.as_millis() as u64);
    if expected == 0 {
        expected = global;
    }
    if expected == 0 {
        return None;
    }
    if global > 0 {
        let elapsed = elapsed.as_millis() as u64;
        expected = if elapsed >= global {
            1
        } else {
            expected.min(global - elapsed)
        };
    }
    Some(expected)
}

/// A header of milliseconds: `Some(None)` for `0` (no timeout), `None` if absent or not a
/// number (then ignored, as Envoy does).
fn header_ms<H: HeaderMapAccess + ?Sized>(request: &H, name: &str) -> Option<Option<Duration>> {
    let ms: u64 = request.get(name)?.trim().parse().ok()?;
    Some((ms > 0).then(|| Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::header_map::VecHeaderMap;

    const S15: Option<Duration> = Some(Duration::from_secs(15));

    #[test]
    fn route_timeout_and_expected_header() {
        let mut req = VecHeaderMap::request("h", "/", &[]);
        let t = final_timeout(S15, &RetryPolicy::default(), &mut req, true);
        assert_eq!(t.global_timeout, S15);
        assert_eq!(t.per_try_timeout, None);
        assert_eq!(req.get("x-envoy-expected-rq-timeout-ms"), Some("15000"));
    }

    #[test]
    fn no_timeout_no_header() {
        let mut req = VecHeaderMap::request("h", "/", &[]);
        let t = final_timeout(None, &RetryPolicy::default(), &mut req, true);
        assert_eq!(t.global_timeout, None);
        assert!(!req.contains("x-envoy-expected-rq-timeout-ms"));
    }

    #[test]
    fn header_overrides_are_consumed() {
        let mut req = VecHeaderMap::request(
            "h",
            "/",
            &[
                ("x-envoy-upstream-rq-timeout-ms", "2000"),
                ("x-envoy-upstream-rq-per-try-timeout-ms", "500"),
            ],
        );
        let t = final_timeout(S15, &RetryPolicy::default(), &mut req, true);
        assert_eq!(t.global_timeout, Some(Duration::from_secs(2)));
        assert_eq!(t.per_try_timeout, Some(Duration::from_millis(500)));
        assert!(!req.contains("x-envoy-upstream-rq-timeout-ms"));
        assert!(!req.contains("x-envoy-upstream-rq-per-try-timeout-ms"));
        assert_eq!(req.get("x-envoy-expected-rq-timeout-ms"), Some("500"));
    }

    #[test]
    fn zero_header_disables_and_junk_is_ignored() {
        let mut req = VecHeaderMap::request("h", "/", &[("x-envoy-upstream-rq-timeout-ms", "0")]);
        assert_eq!(
            final_timeout(S15, &RetryPolicy::default(), &mut req, true).global_timeout,
            None
        );
        let mut req = VecHeaderMap::request("h", "/", &[("x-envoy-upstream-rq-timeout-ms", "x")]);
        assert_eq!(
            final_timeout(S15, &RetryPolicy::default(), &mut req, true).global_timeout,
            S15
        );
        assert!(!req.contains("x-envoy-upstream-rq-timeout-ms"));
    }

    #[test]
    fn per_try_not_shorter_than_global_is_dropped() {
        let policy = RetryPolicy {
            per_try_timeout: Some(Duration::from_secs(20)),
            ..RetryPolicy::default()
        };
        let mut req = VecHeaderMap::request("h", "/", &[]);
        assert_eq!(
            final_timeout(S15, &policy, &mut req, false).per_try_timeout,
            None
        );
        assert!(!req.contains("x-envoy-expected-rq-timeout-ms"));
        // Without a global timeout the per-try timeout stays.
        let mut req = VecHeaderMap::request("h", "/", &[]);
        let t = final_timeout(None, &policy, &mut req, true);
        assert_eq!(t.per_try_timeout, Some(Duration::from_secs(20)));
        assert_eq!(req.get("x-envoy-expected-rq-timeout-ms"), Some("20000"));
    }

    #[test]
    fn route_timeouts_answer_as_final_timeout_does() {
        let per_try = |ms| RetryPolicy {
            per_try_timeout: Some(Duration::from_millis(ms)),
            ..RetryPolicy::default()
        };
        let policies = [RetryPolicy::default(), per_try(500), per_try(20_000)];
        let requests: [&[(&str, &str)]; 4] = [
            &[],
            &[("x-envoy-upstream-rq-timeout-ms", "2000")],
            &[("x-envoy-upstream-rq-per-try-timeout-ms", "300")],
            &[("x-envoy-upstream-rq-timeout-ms", "0")],
        ];
        for route_timeout in [S15, None, Some(Duration::from_micros(500))] {
            for policy in &policies {
                let route = RouteTimeouts::new(route_timeout, policy.per_try_timeout);
                for headers in requests {
                    for insert in [true, false] {
                        let mut expected = VecHeaderMap::request("h", "/", headers);
                        let mut got = expected.clone();
                        let want = final_timeout(route_timeout, policy, &mut expected, insert);
                        assert_eq!(route.final_timeout(&mut got, insert), want);
                        assert_eq!(got, expected, "{route_timeout:?} {policy:?} {headers:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn retries_get_what_is_left() {
        let t = TimeoutData {
            global_timeout: Some(Duration::from_secs(1)),
            per_try_timeout: Some(Duration::from_millis(400)),
        };
        let mut req = VecHeaderMap::new();
        set_timeout_headers(Duration::from_millis(800), &t, &mut req, true);
        assert_eq!(req.get("x-envoy-expected-rq-timeout-ms"), Some("200"));
        set_timeout_headers(Duration::from_millis(1500), &t, &mut req, true);
        assert_eq!(req.values("x-envoy-expected-rq-timeout-ms"), vec!["1"]);
    }
}
