//! Request and response header edits the connection manager makes around the filter chain
//! (Envoy's `ConnectionManagerUtility::mutateRequestHeaders` / `mutateResponseHeaders`):
//! hop-by-hop removal, `x-forwarded-for`, `x-forwarded-proto`, `x-request-id`, `server`, and
//! path normalization.
//!
//! Called by `ConnectionManager` when a request head arrives (before the decoder filters) and
//! when a response head leaves (after the encoder filters).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};

use super::codec::{RequestHead, ResponseHead};
use super::config::{HcmConfig, ServerHeaderTransformation};
use super::inline_header::{InlineHeader as H, InlineSet};
pub use super::request_id::{uuid_v4, RequestId};
use super::HeaderMap;

/// The hop-by-hop headers (RFC 9110 §7.6.1), never forwarded, and `te` (forwarded only as
/// `te: trailers`, re-added by the caller). `upgrade` and `connection` stay on an upgrade
/// being forwarded (as the peer wrote them).
const HOP_BY_HOP: InlineSet = InlineSet::of(&[
    H::Connection,
    H::KeepAlive,
    H::ProxyConnection,
    H::TransferEncoding,
    H::Te,
    H::Upgrade,
]);

/// True for a `connection` token that names no header to remove: the connection options the
/// codec handles itself.
fn is_connection_option(token: &[u8]) -> bool {
    // The exact (lower-case) spelling first: a fixed-size compare, where the case-insensitive
    // one goes byte by byte.
    match token.len() {
        0 => true,
        5 => token == b"close" || token.eq_ignore_ascii_case(b"close"),
        7 => token == b"upgrade" || token.eq_ignore_ascii_case(b"upgrade"),
        10 => token == b"keep-alive" || token.eq_ignore_ascii_case(b"keep-alive"),
        _ => false,
    }
}

/// Removes the hop-by-hop headers and every header the `connection` header names. `upgrade`
/// (and `connection: upgrade`) survive on an upgrade being forwarded; `te: trailers` survives.
/// One pass over the fields for the fixed names, which also reads the `te` and `connection`
/// values on the way; the names a `connection` header lists (rare) are removed one by one.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // The map knows which inline headers it holds: a head with none of these (a plain GET)
    // costs one bit test.
    if !headers.inline_present().intersects(HOP_BY_HOP) {
        return;
    }
    let removed = if keep_upgrade {
        HOP_BY_HOP.without(H::Connection).without(H::Upgrade)
    } else {
        HOP_BY_HOP
    };
    // `te: trailers` and the names a `connection` header lists (rare; collected lower-case)
    // are noted as their fields are visited.
    let mut te_trailers = false;
    let mut named: Vec<String> = Vec::new();
    headers.retain_inline(HOP_BY_HOP, |header, value| {
        match header {
            H::Te => {
                te_trailers |= value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
            }
            // The usual value is one option (`keep-alive`, `close`): settled without a split.
            H::Connection if !is_connection_option(value.trim_ascii()) => {
                collect_connection_names(value, &mut named)
            }
            _ => {}
        }
        !removed.has(header)
    });
    for name in &named {
        // Never let a client strip the framing or routing headers through `connection`.
        if !matches!(
            name.as_str(),
            "host" | "content-length" | ":authority" | ":path"
        ) {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.append("te", "trailers");
    }
}

/// Adds to `named` the header names a `connection` value lists (lower-cased), skipping the
/// connection options. Reached only for a value that is not one option alone.
#[inline(never)]
fn collect_connection_names(value: &[u8], named: &mut Vec<String>) {
    for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        if !is_connection_option(token) {
            named.push(String::from_utf8_lossy(token).to_ascii_lowercase());
        }
    }
}

/// Envoy's `mutateRequestHeaders`. Returns the request id and the final remote address.
///
/// The trust decision, as Envoy 1.40 makes it (each case checked against the real binary):
/// - the *final remote address* is the peer when `use_remote_address` (or, with
///   `xff_num_trusted_hops` N > 0, the N-th `x-forwarded-for` entry from the right, if it
///   parses); without `use_remote_address` it is the (N+1)-th entry from the right;
/// - the request is *internal* when `x-forwarded-for` held a single address (with
///   `use_remote_address`: none at all before the peer is appended) and the final remote
///   address is internal per `internal_address_config` (absent: nothing is);
/// - an *edge* request is an external one on a `use_remote_address` listener.
///
/// Internal requests get `x-envoy-internal: true`; external ones lose the headers that steer
/// the router ([`EXTERNAL_SANITIZED`]) and `route_config.internal_only_headers`; edge requests
/// also lose [`EDGE_SANITIZED`], get `x-envoy-external-address` and a fresh `x-request-id`.
pub fn mutate_request_headers(
    head: &mut RequestHead,
    config: &HcmConfig,
    remote: Option<SocketAddr>,
    keep_upgrade: bool,
    random: impl FnMut() -> u64,
) -> MutateRequestHeadersResult {
    remove_hop_by_hop(&mut head.headers, keep_upgrade);
    // The proxy answered `100-continue` itself; other expectations go through (Envoy).
    if head
        .headers
        .get_inline(H::Expect)
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    {
        head.headers.remove_inline(H::Expect);
    }
    // Clean proxy headers: only this proxy says whether a request is internal.
    head.headers.remove_inline(H::XEnvoyInternal);

    let headers = &mut head.headers;
    let peer = remote.map(|r| r.ip());
    let (final_remote, single_xff_address) = if config.use_remote_address {
        let single = !headers.contains_inline(H::XForwardedFor);
        // With trusted proxies in front, the client is the entry the outermost one appended;
        // if the header is short or garbled, fall back to the peer.
        let from_xff = match config.xff_num_trusted_hops {
            0 => None,
            hops => last_address_from_xff_mut(headers, hops - 1).0,
        };
        if let (false, Some(peer)) = (config.skip_xff_append, peer) {
            let hop = if peer.is_loopback() {
                config.local_address
            } else {
                peer
            };
            append_xff(headers, hop);
        }
        // A trusted proxy's `x-forwarded-proto` stands; an untrusted peer's is overwritten.
        if config.xff_num_trusted_hops == 0 || !headers.contains_inline(H::XForwardedProto) {
            headers.insert_inline_generated(H::XForwardedProto, b"http");
        }
        (from_xff.map(|ip| SocketAddr::new(ip, 0)).or(remote), single)
    } else {
        if !headers.contains_inline(H::XForwardedProto) {
            headers.insert_inline_generated(H::XForwardedProto, b"http");
        }
        if config.original_ip_detection.is_empty() {
            let (from_xff, single) =
                last_address_from_xff_mut(headers, config.xff_num_trusted_hops);
            (from_xff.map(|ip| SocketAddr::new(ip, 0)), single)
        } else {
            // The extensions in order; the first to detect an address (or to reject) decides.
            coalesce_xff(headers);
            let mut found = (None, false);
            for extension in &config.original_ip_detection {
                let detection = extension.detect(headers, peer);
                if !detection.skip_xff_append {
                    if let Some(peer) = peer {
                        let hop = if peer.is_loopback() {
                            config.local_address
                        } else {
                            peer
                        };
                        append_xff(headers, hop);
                    }
                }
                if let Some(status) = detection.reject_status {
                    return MutateRequestHeadersResult {
                        request_id: None,
                        final_remote_address: remote,
                        reject_status: Some(status),
                    };
                }
                if let Some(ip) = detection.address {
                    found = (
                        Some(SocketAddr::new(ip, 0)),
                        detection.allow_trusted_address_checks,
                    );
                    break;
                }
            }
            found
        }
    };
    let internal_request = single_xff_address
        && final_remote.is_some_and(|a| config.internal_address_config.is_internal(a.ip()));
    // No usable x-forwarded-for: the peer, for logs (after the trust decision, as in Envoy).
    let final_remote = final_remote.or(remote);
    let edge_request = !internal_request && config.use_remote_address;

    if internal_request {
        headers.insert_inline(H::XEnvoyInternal, "true");
    } else {
        // One pass over the entries, none when no sanitized name is present (the usual case);
        // `internal_only_headers` (config, usually none) one by one.
        headers.remove_inline_set(if edge_request {
            EXTERNAL_SANITIZED_SET.union(EDGE_SANITIZED_SET)
        } else {
            EXTERNAL_SANITIZED_SET
        });
        for name in &config.internal_only_headers {
            headers.remove(name);
        }
    }
    // The first ingress into the trusted network records who it trusted the request from.
    if let (true, Some(address)) = (edge_request, final_remote) {
        with_ip_text(address.ip(), |text| {
            headers.insert_inline(H::XEnvoyExternalAddress, text)
        });
    }
    // x-request-id: an edge proxy replaces the client's (unless told to keep it); any proxy
    // generates one when absent.
    if config.generate_request_id
        && ((edge_request && !config.preserve_external_request_id)
            || !headers.contains_inline(H::XRequestId))
    {
        headers.insert_inline(H::XRequestId, uuid_v4(random).as_str());
    }
    if config.normalize_path || config.merge_slashes {
        let path = head.path().to_string();
        let normalized = normalize_path(&path, config.normalize_path, config.merge_slashes);
        if normalized != path {
            head.set_path(&normalized);
        }
    }
    MutateRequestHeadersResult {
        request_id: head
            .headers
            .get_inline(H::XRequestId)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(RequestId::new),
        // An address taken from x-forwarded-for has no port (Envoy logs it as `ip:0`).
        final_remote_address: final_remote,
        reject_status: None,
    }
}

/// What [`mutate_request_headers`] tells the connection manager (Envoy's
/// `MutateRequestHeadersResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutateRequestHeadersResult {
    /// The `x-request-id` the request leaves with (for the response and logs).
    pub request_id: Option<RequestId>,
    /// The client as the trust decision saw it: the peer, or the `x-forwarded-for` entry
    /// chosen by `use_remote_address` / `xff_num_trusted_hops` (port 0). Access logs'
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    pub final_remote_address: Option<SocketAddr>,
    /// An original IP detection extension rejects the request with this status (Envoy's
    /// `reject_request`): answer it locally, with an empty body.
    pub reject_status: Option<u16>,
}

/// Removed from every external request: a client outside the trusted network must not steer
/// retries, timeouts, stats, tracing or path rewriting. Envoy 1.40's list, checked against the
/// binary (sent from an external and an internal peer: each reaches the upstream, or is
/// consumed by the router, only from the internal one).
const EXTERNAL_SANITIZED: [H; 15] = [
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
];
const EXTERNAL_SANITIZED_SET: InlineSet = InlineSet::of(&EXTERNAL_SANITIZED);

/// Also removed from edge requests (external, `use_remote_address`): what an inner Envoy
/// tells the next hop (its identity, the operation, the path before a rewrite), which a
/// client must not claim. (An external request from a trusted proxy keeps them.)
const EDGE_SANITIZED: [H; 4] = [
    H::XEnvoyDecoratorOperation,
    H::XEnvoyDownstreamServiceCluster,
    H::XEnvoyDownstreamServiceNode,
    H::XEnvoyOriginalPath,
];
const EDGE_SANITIZED_SET: InlineSet = InlineSet::of(&EDGE_SANITIZED);

/// Envoy's `Utility::getLastAddressFromXFF`: skipping the last `skip` entries of
/// `x-forwarded-for`, the address in the entry before them (if it parses), and whether the
/// header held exactly one entry and none was skipped.
fn last_address_from_xff_mut(headers: &mut HeaderMap, skip: u32) -> (Option<IpAddr>, bool) {
    coalesce_xff(headers);
    last_address_from_xff(headers, skip)
}

/// [`last_address_from_xff_mut`] on a map whose `x-forwarded-for` is already one line.
pub(super) fn last_address_from_xff(headers: &HeaderMap, skip: u32) -> (Option<IpAddr>, bool) {
    let Some(mut xff) = headers
        .get_inline(H::XForwardedFor)
        .and_then(|v| std::str::from_utf8(v).ok())
    else {
        return (None, false);
    };
    for _ in 0..skip {
        match xff.rfind(',') {
            Some(comma) => xff = &xff[..comma],
            None => return (None, false),
        }
    }
    let last_comma = xff.rfind(',');
    // A trailing comma leaves the whole remainder, which then fails to parse (as in Envoy).
    if let Some(comma) = last_comma.filter(|&c| c + 1 < xff.len()) {
        xff = &xff[comma + 1..];
    }
    match xff.trim().parse::<IpAddr>() {
        Ok(ip) => (Some(ip), last_comma.is_none() && skip == 0),
        Err(_) => (None, false),
    }
}

/// Envoy's codec joins repeated `x-forwarded-for` lines into one value with `,`; so does this
/// (only when the header is repeated, which clients rarely do).
fn coalesce_xff(headers: &mut HeaderMap) {
    if headers.get_all_inline(H::XForwardedFor).nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, value) in headers.get_all_inline(H::XForwardedFor).enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(value);
    }
    headers.insert_inline(H::XForwardedFor, joined);
}

/// Envoy's `Utility::appendXff`: `ip` joins the list with a bare `,`, or starts it.
fn append_xff(headers: &mut HeaderMap, ip: IpAddr) {
    thread_local!(static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) });
    coalesce_xff(headers);
    // The joined value is built in a per-thread buffer (the map cannot lend the old value
    // while it takes the new one): no allocation once the buffer has grown.
    with_ip_text(ip, |text| {
        SCRATCH.with(|scratch| {
            let mut value = scratch.borrow_mut();
            value.clear();
            if let Some(existing) = headers
                .get_inline(H::XForwardedFor)
                .filter(|v| !v.is_empty())
            {
                value.extend_from_slice(existing);
                value.push(b',');
            }
            value.extend_from_slice(text.as_bytes());
            headers.insert_inline(H::XForwardedFor, &value[..]);
        })
    });
}

/// Calls `f` with the text form of `ip`, formatted on the stack.
fn with_ip_text<R>(ip: IpAddr, f: impl FnOnce(&str) -> R) -> R {
    use std::io::Write;
    // The longest text form (an IPv4-mapped IPv6 address) is 45 bytes.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // Cannot fail: the buffer is larger than any address's text.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    f(std::str::from_utf8(&buf[..len]).unwrap_or(""))
}

/// RFC 3986 §5.2.4 dot-segment removal (`normalize_path`) and `//` merging (`merge_slashes`)
/// on the path part; the query is kept as is.
pub fn normalize_path(path: &str, dots: bool, merge: bool) -> String {
    let (p, query) = match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    let mut p = p.to_string();
    if merge {
        while p.contains("//") {
            p = p.replace("//", "/");
        }
    }
    if dots && p.starts_with('/') {
        let trailing = p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..");
        let mut out: Vec<&str> = Vec::new();
        for seg in p.split('/').skip(1) {
            match seg {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        let mut joined = String::with_capacity(p.len());
        for seg in &out {
            joined.push('/');
            joined.push_str(seg);
        }
        if joined.is_empty() || (trailing && !joined.ends_with('/')) {
            joined.push('/');
        }
        p = joined;
    }
    format!("{p}{query}")
}

/// Envoy's `mutateResponseHeaders`: hop-by-hop removal (a 101 keeps its upgrade headers),
/// `server`, and `x-request-id` when configured.
pub fn mutate_response_headers(
    head: &mut ResponseHead,
    config: &HcmConfig,
    request_id: Option<&str>,
) {
    remove_hop_by_hop(&mut head.headers, head.status == 101);
    // The upstream's keep-alive is its own hop's business: the downstream connection stays
    // open unless the client or the proxy decides otherwise.
    head.keep_alive = true;
    // Envoy keeps the upstream's `date` and adds one when absent.
    if !head.headers.contains_inline(H::Date) {
        with_http_date(|date| {
            head.headers
                .insert_inline_generated(H::Date, date.as_bytes())
        });
    }
    match config.server_header_transformation {
        ServerHeaderTransformation::Overwrite => {
            head.headers.insert_inline(H::Server, &config.server_name)
        }
        ServerHeaderTransformation::AppendIfAbsent if !head.headers.contains_inline(H::Server) => {
            head.headers.insert_inline(H::Server, &config.server_name)
        }
        _ => {}
    }
    if config.always_set_request_id_in_response {
        if let Some(id) = request_id {
            head.headers.insert_inline(H::XRequestId, id);
        }
    }
}

/// Calls `f` with the current time as an IMF-fixdate (`Thu, 26 Nov 2026 10:50:13 GMT`),
/// formatted at most once per second per thread (Envoy's `DateProvider` cache).
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    use std::cell::RefCell;
    thread_local!(static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != now {
            *cache = (now, http_date(now));
        }
        f(&cache.1)
    })
}

/// An IMF-fixdate for `secs` since the epoch (RFC 9110 §5.6.7).
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_sanitized_name_is_an_x_envoy_header() {
        let names = super::EXTERNAL_SANITIZED
            .iter()
            .chain(&super::EDGE_SANITIZED);
        assert!(names.into_iter().all(|n| n.name().starts_with("x-envoy-")));
    }

    #[test]
    fn http_date_format() {
        assert_eq!(super::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            super::http_date(1_795_690_213),
            "Thu, 26 Nov 2026 10:50:13 GMT"
        );
        assert_eq!(
            super::http_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.append("connection", "close, x-secret");
        h.append("x-secret", "1");
        h.append("keep-alive", "timeout=5");
        h.append("transfer-encoding", "chunked");
        h.append("te", "trailers, deflate");
        h.append("x-keep", "yes");
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.get_str("x-secret"), None);
        assert_eq!(h.get_str("connection"), None);
        assert_eq!(h.get_str("keep-alive"), None);
        assert_eq!(h.get_str("transfer-encoding"), None);
        assert_eq!(h.get_str("te"), Some("trailers"));
        assert_eq!(h.get_str("x-keep"), Some("yes"));
    }

    #[test]
    fn an_upgrade_keeps_connection_and_upgrade_but_not_the_names_connection_lists() {
        let mut h = HeaderMap::new();
        h.append("x-a", "1");
        h.append("connection", "Upgrade, x-secret");
        h.append("upgrade", "websocket");
        h.append("keep-alive", "timeout=5");
        h.append("x-secret", "1");
        h.append("connection", "keep-alive");
        remove_hop_by_hop(&mut h, true);
        let fields: Vec<_> = h.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
        assert_eq!(
            fields,
            [
                ("x-a", &b"1"[..]),
                ("connection", b"Upgrade, x-secret"),
                ("upgrade", b"websocket"),
                ("connection", b"keep-alive"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_vec()))
        );
        let present = h.inline_present();
        assert!(present.has(H::Connection) && present.has(H::Upgrade));
        assert!(!present.has(H::KeepAlive));
        // Without the upgrade everything hop-by-hop goes, and the set follows.
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.iter().count(), 1);
        assert!(!h.inline_present().intersects(HOP_BY_HOP));
    }

    #[test]
    fn path_normalization() {
        assert_eq!(
            normalize_path("/a/./b/../c?x=/../", true, false),
            "/a/c?x=/../"
        );
        assert_eq!(normalize_path("/../..", true, false), "/");
        assert_eq!(normalize_path("//a///b", false, true), "/a/b");
        assert_eq!(normalize_path("/a/b/", true, true), "/a/b/");
    }

    // === mutate_request_headers: Envoy 1.40's trust decision (cases run through the binary) ===

    use super::super::codec::Method;
    use super::super::filter_registry::HttpFilterFactoryContext;
    use crate::config::{parse_yaml, Node};

    /// An HCM config with `extra` fields; the local address is fixed at 192.0.2.9.
    fn hcm(extra: &str) -> HcmConfig {
        let yaml = format!(
            "stat_prefix: t\n{extra}\nroute_config: {{virtual_hosts: [], internal_only_headers: [X-Secret]}}\nhttp_filters: [{{name: envoy.filters.http.router}}]\n"
        );
        let doc = parse_yaml(&yaml).unwrap();
        let mut c =
            HcmConfig::parse(&Node::root(&doc), &HttpFilterFactoryContext::default()).unwrap();
        c.local_address = "192.0.2.9".parse().unwrap();
        c
    }

    const SPOOFED: [(&str, &str); 8] = [
        ("x-envoy-internal", "true"),
        ("x-envoy-external-address", "9.9.9.9"),
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-max-retries", "2"),
        ("x-envoy-downstream-service-cluster", "z"),
        ("x-envoy-original-path", "/p"),
        ("x-request-id", "myid"),
        ("x-secret", "s"),
    ];

    /// The headers after mutation of a request from `peer` carrying `SPOOFED` and `xff`.
    fn mutate(config: &HcmConfig, peer: &str, xff: &[&str]) -> HeaderMap {
        let mut head = RequestHead::new(Method::Get, "/", "h");
        for (name, value) in SPOOFED {
            head.headers.append(name, value);
        }
        for value in xff {
            head.headers.append("x-forwarded-for", value);
        }
        head.headers.append("x-forwarded-proto", "https");
        let mut n = 0;
        mutate_request_headers(
            &mut head,
            config,
            Some(peer.parse().unwrap()),
            false,
            || {
                n += 1;
                n
            },
        );
        head.headers
    }

    const I127: &str = "internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}, {address_prefix: 10.0.0.0, prefix_len: 8}]}";

    #[test]
    fn edge_request_from_loopback_appends_the_local_address() {
        let h = mutate(
            &hcm("use_remote_address: true"),
            "127.0.0.1:5000",
            &["1.2.3.4"],
        );
        assert_eq!(h.get_str("x-forwarded-for"), Some("1.2.3.4,192.0.2.9"));
        assert_eq!(h.get_str("x-envoy-external-address"), Some("127.0.0.1"));
        assert_eq!(h.get_str("x-forwarded-proto"), Some("http"));
        for gone in [
            "x-envoy-internal",
            "x-envoy-retry-on",
            "x-envoy-max-retries",
            "x-envoy-downstream-service-cluster",
            "x-envoy-original-path",
            "x-secret",
        ] {
            assert_eq!(h.get_str(gone), None, "{gone}");
        }
        assert_ne!(h.get_str("x-request-id"), Some("myid"));
    }

    #[test]
    fn edge_request_from_a_routable_peer_appends_the_peer() {
        let h = mutate(&hcm("use_remote_address: true"), "8.8.8.8:5000", &[]);
        assert_eq!(h.get_str("x-forwarded-for"), Some("8.8.8.8"));
        assert_eq!(h.get_str("x-envoy-external-address"), Some("8.8.8.8"));
    }

    #[test]
    fn internal_peer_without_xff_is_trusted() {
        let h = mutate(
            &hcm(&format!("use_remote_address: true\n{I127}")),
            "127.0.0.1:1",
            &[],
        );
        assert_eq!(h.get_str("x-envoy-internal"), Some("true"));
        assert_eq!(h.get_str("x-forwarded-for"), Some("192.0.2.9"));
        for kept in SPOOFED.iter().map(|(n, _)| *n) {
            assert!(h.contains(kept), "{kept}");
        }
        assert_eq!(h.get_str("x-envoy-external-address"), Some("9.9.9.9"));
        assert_eq!(h.get_str("x-request-id"), Some("myid"));
    }

    #[test]
    fn internal_peer_with_xff_is_external() {
        let c = hcm(&format!("use_remote_address: true\n{I127}"));
        let h = mutate(&c, "127.0.0.1:1", &["1.2.3.4"]);
        assert_eq!(h.get_str("x-envoy-internal"), None);
        assert_eq!(h.get_str("x-envoy-retry-on"), None);
        // Even an empty x-forwarded-for counts as "forwarded".
        let h = mutate(&c, "127.0.0.1:1", &[""]);
        assert_eq!(h.get_str("x-envoy-internal"), None);
        assert_eq!(h.get_str("x-forwarded-for"), Some("192.0.2.9"));
    }

    #[test]
    fn trusted_hops_pick_the_client_from_xff() {
        let c = hcm("use_remote_address: true\nxff_num_trusted_hops: 2");
        let h = mutate(&c, "127.0.0.1:1", &["1.1.1.1", "2.2.2.2, 3.3.3.3"]);
        assert_eq!(h.get_str("x-envoy-external-address"), Some("2.2.2.2"));
        assert_eq!(
            h.get_str("x-forwarded-for"),
            Some("1.1.1.1,2.2.2.2, 3.3.3.3,192.0.2.9")
        );
        // A trusted proxy's x-forwarded-proto stands.
        assert_eq!(h.get_str("x-forwarded-proto"), Some("https"));
        // Too few entries: the peer.
        let h = mutate(&c, "127.0.0.1:1", &["5.6.7.8"]);
        assert_eq!(h.get_str("x-envoy-external-address"), Some("127.0.0.1"));
    }

    #[test]
    fn without_use_remote_address_xff_decides() {
        let c = hcm(I127);
        let h = mutate(&c, "127.0.0.1:1", &["10.1.1.1"]);
        assert_eq!(h.get_str("x-envoy-internal"), Some("true"));
        assert_eq!(h.get_str("x-forwarded-for"), Some("10.1.1.1"));
        for xff in [
            &["1.2.3.4, 10.1.1.1"][..],
            &["garbage"],
            &[],
            &["10.1.1.1,"],
        ] {
            let h = mutate(&c, "127.0.0.1:1", xff);
            assert_eq!(h.get_str("x-envoy-internal"), None, "{xff:?}");
            assert_eq!(h.get_str("x-envoy-retry-on"), None, "{xff:?}");
            assert_eq!(h.get_str("x-secret"), None, "{xff:?}");
            // Not an edge: the inner hop's headers and request id stay.
            assert_eq!(h.get_str("x-envoy-external-address"), Some("9.9.9.9"));
            assert_eq!(h.get_str("x-envoy-original-path"), Some("/p"));
            assert_eq!(h.get_str("x-envoy-downstream-service-cluster"), Some("z"));
            assert_eq!(h.get_str("x-request-id"), Some("myid"));
            assert_eq!(h.get_str("x-forwarded-proto"), Some("https"));
        }
        // With a trusted hop the single-address condition never holds.
        let c = hcm(&format!("xff_num_trusted_hops: 1\n{I127}"));
        let h = mutate(&c, "127.0.0.1:1", &["10.1.1.1, 1.2.3.4"]);
        assert_eq!(h.get_str("x-envoy-internal"), None);
    }

    #[test]
    fn final_remote_address_is_the_trusted_client() {
        let final_of = |config: &HcmConfig, xff: Option<&str>| {
            let mut head = RequestHead::new(Method::Get, "/", "h");
            if let Some(xff) = xff {
                head.headers.append("x-forwarded-for", xff);
            }
            let peer = "127.0.0.1:4000".parse().unwrap();
            mutate_request_headers(&mut head, config, Some(peer), false, || 7)
                .final_remote_address
                .map(|a| a.to_string())
        };
        let inner = hcm("");
        assert_eq!(
            final_of(&inner, Some("1.2.3.4")).as_deref(),
            Some("1.2.3.4:0")
        );
        assert_eq!(
            final_of(&inner, Some("1.2.3.4, 5.6.7.8")).as_deref(),
            Some("5.6.7.8:0")
        );
        assert_eq!(
            final_of(&inner, Some("garbage")).as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(final_of(&inner, None).as_deref(), Some("127.0.0.1:4000"));
        let edge = hcm("use_remote_address: true");
        assert_eq!(
            final_of(&edge, Some("1.2.3.4")).as_deref(),
            Some("127.0.0.1:4000")
        );
        let hop = hcm("use_remote_address: true\nxff_num_trusted_hops: 1");
        assert_eq!(
            final_of(&hop, Some("1.2.3.4")).as_deref(),
            Some("1.2.3.4:0")
        );
    }

    #[test]
    fn skip_append_and_preserve_request_id() {
        let c = hcm(
            "use_remote_address: true\nskip_xff_append: true\npreserve_external_request_id: true",
        );
        let h = mutate(&c, "127.0.0.1:1", &["5.6.7.8"]);
        assert_eq!(h.get_str("x-forwarded-for"), Some("5.6.7.8"));
        assert_eq!(h.get_str("x-request-id"), Some("myid"));
        assert_eq!(h.get_str("x-envoy-external-address"), Some("127.0.0.1"));
    }
}
