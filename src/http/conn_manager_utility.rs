//! Request and response header edits the connection manager makes around the filter chain
//! (Envoy's `ConnectionManagerUtility::mutateRequestHeaders` / `mutateResponseHeaders`):
//! hop-by-hop removal, `x-forwarded-for`, `x-forwarded-proto`, `x-request-id`, `server`, and
//! path normalization.
//!
//! Called by `ConnectionManager` when a request head arrives (before the decoder filters) and
//! when a response head leaves (after the encoder filters).

use std::net::SocketAddr;

use super::codec::{RequestHead, ResponseHead};
use super::config::{HcmConfig, ServerHeaderTransformation};
use super::HeaderMap;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers and every header the `connection` header names. `upgrade`
/// (and `connection: upgrade`) survive on an upgrade being forwarded; `te: trailers` survives.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut named: Vec<String> = Vec::new();
    for value in headers.get_all("connection") {
        for token in value.split(|&b| b == b',') {
            let token = String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase();
            if !token.is_empty() && token != "close" && token != "keep-alive" && token != "upgrade"
            {
                named.push(token);
            }
        }
    }
    for name in &named {
        // Never let a client strip the framing or routing headers through `connection`.
        if !matches!(
            name.as_str(),
            "host" | "content-length" | ":authority" | ":path"
        ) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        // An upgrade being forwarded keeps `connection` and `upgrade` as the peer wrote them.
        if keep_upgrade && (name == "upgrade" || name == "connection") {
            continue;
        }
        headers.remove(name);
    }
    let te_trailers = headers.get_str("te").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    });
    headers.remove("te");
    if te_trailers {
        headers.insert("te", "trailers");
    }
}

/// A random UUID version 4 in its canonical text form.
pub fn uuid_v4(mut random: impl FnMut() -> u64) -> String {
    let hi = random();
    let lo = random();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // One allocation, no per-byte formatting: this runs for most requests.
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

/// Envoy's `mutateRequestHeaders`. Returns the request id (for the response and logs).
pub fn mutate_request_headers(
    head: &mut RequestHead,
    config: &HcmConfig,
    remote: Option<SocketAddr>,
    keep_upgrade: bool,
    random: impl FnMut() -> u64,
) -> Option<String> {
    remove_hop_by_hop(&mut head.headers, keep_upgrade);
    // The proxy answered `100-continue` itself; other expectations go through (Envoy).
    if head
        .headers
        .get_str("expect")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    {
        head.headers.remove("expect");
    }

    // x-forwarded-for: the edge proxy (use_remote_address) appends the peer it saw.
    if config.use_remote_address && !config.skip_xff_append {
        if let Some(remote) = remote {
            let ip = remote.ip().to_string();
            match head.headers.get_str("x-forwarded-for") {
                Some(existing) if !existing.is_empty() => {
                    let joined = format!("{existing}, {ip}");
                    head.headers.insert("x-forwarded-for", joined);
                }
                _ => head.headers.insert("x-forwarded-for", ip),
            }
        }
    }
    // x-forwarded-proto: the edge sets it from the connection; inner hops keep what came.
    if config.use_remote_address || !head.headers.contains("x-forwarded-proto") {
        head.headers.insert("x-forwarded-proto", "http");
    }
    // x-request-id: kept if present (unless an edge proxy distrusts it), else generated.
    if config.generate_request_id {
        let edge_external = config.use_remote_address
            && !config.preserve_external_request_id
            && !remote.is_some_and(|r| is_internal(r.ip()));
        if edge_external || !head.headers.contains("x-request-id") {
            head.headers.insert("x-request-id", uuid_v4(random));
        }
    }
    if config.normalize_path || config.merge_slashes {
        let path = head.path().to_string();
        let normalized = normalize_path(&path, config.normalize_path, config.merge_slashes);
        if normalized != path {
            head.set_path(&normalized);
        }
    }
    head.headers.get_str("x-request-id").map(str::to_string)
}

/// Envoy's default internal addresses: RFC 1918, loopback, unique-local IPv6.
fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
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
    if !head.headers.contains("date") {
        with_http_date(|date| head.headers.insert("date", date));
    }
    match config.server_header_transformation {
        ServerHeaderTransformation::Overwrite => head.headers.insert("server", &config.server_name),
        ServerHeaderTransformation::AppendIfAbsent if !head.headers.contains("server") => {
            head.headers.insert("server", &config.server_name)
        }
        _ => {}
    }
    if config.always_set_request_id_in_response {
        if let Some(id) = request_id {
            head.headers.insert("x-request-id", id);
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
    fn uuid_v4_shape() {
        let mut n = 0u64;
        let id = uuid_v4(|| {
            n += 0x1111_1111_1111_1111;
            n
        });
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
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
}
