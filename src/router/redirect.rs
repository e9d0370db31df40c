//! `RedirectAction`: a route's `redirect`, and the `Location` it answers with (Envoy's
//! `Http::Utility::newUri`).
//!
//! The Location is `scheme://host[port]path`:
//! - scheme: `scheme_redirect`, else `https` if `https_redirect`, else the request's `:scheme`;
//! - host: `host_redirect` (taken whole, port included), else the request's Host, whose port is
//!   dropped when a `port_redirect` is set, or when the scheme changes and the port is the
//!   default one of the request's `x-forwarded-proto` (`http` + `:80`, `https` + `:443`);
//! - port: `:<port_redirect>` when set;
//! - path: `path_redirect` (the request's query is appended unless `path_redirect` has its own
//!   or `strip_query`), else the request's path after `prefix_rewrite` / `regex_rewrite`;
//!   `strip_query` drops the query unless it came from `path_redirect`.
//!
//! Checked against Envoy 1.40 (tests below carry the observed Location strings).

use super::header_map::HeaderMapAccess;
use super::path_rewrite::PathRewrite;
use crate::config::{Node, Result};

/// A configured redirect.
#[derive(Clone, Debug)]
pub struct RedirectAction {
    scheme: Option<String>,
    host: Option<String>,
    /// `:<port>`.
    port: Option<String>,
    path: Option<String>,
    path_has_query: bool,
    rewrite: Option<PathRewrite>,
    strip_query: bool,
    /// 301 (default), 302, 303, 307 or 308.
    pub response_code: u16,
}

impl RedirectAction {
    /// Reads a `RedirectAction` message.
    pub fn parse(node: &Node) -> Result<RedirectAction> {
        node.check_fields(
            &[
                "https_redirect",
                "scheme_redirect",
                "host_redirect",
                "port_redirect",
                "path_redirect",
                "prefix_rewrite",
                "regex_rewrite",
                "response_code",
                "strip_query",
            ],
            &[],
        )?;
        if node.has("https_redirect") && node.has("scheme_redirect") {
            return Err(node
                .required("scheme_redirect")?
                .error("specify only one of https_redirect, scheme_redirect"));
        }
        let mut scheme = match node.get("scheme_redirect") {
            Some(n) => Some(n.non_empty_str()?.to_ascii_lowercase()),
            None => None,
        };
        if node.opt("https_redirect", Node::as_bool)?.unwrap_or(false) {
            scheme = Some("https".to_string());
        }
        let host = match node.get("host_redirect") {
            Some(n) => Some(header_safe(&n)?.to_string()).filter(|h| !h.is_empty()),
            None => None,
        };
        let port = node
            .opt("port_redirect", |n| n.as_u32_in(0, 65535))?
            .filter(|p| *p != 0)
            .map(|p| format!(":{p}"));
        let rewrite = PathRewrite::parse(node, &["path_redirect"])?;
        let path = match node.get("path_redirect") {
            Some(n) => Some(header_safe(&n)?.to_string()).filter(|p| !p.is_empty()),
            None => None,
        };
        let response_code = match node.get("response_code") {
            None => 301,
            Some(n) => match n.enum_str(
                &[
                    "MOVED_PERMANENTLY",
                    "FOUND",
                    "SEE_OTHER",
                    "TEMPORARY_REDIRECT",
                    "PERMANENT_REDIRECT",
                ],
                &[],
            )? {
                "FOUND" => 302,
                "SEE_OTHER" => 303,
                "TEMPORARY_REDIRECT" => 307,
                "PERMANENT_REDIRECT" => 308,
                _ => 301,
            },
        };
        Ok(RedirectAction {
            scheme,
            host,
            port,
            path_has_query: path.as_deref().is_some_and(|p| p.contains('?')),
            path,
            rewrite,
            strip_query: node.opt("strip_query", Node::as_bool)?.unwrap_or(false),
            response_code,
        })
    }

    /// The `Location` for `request`; `matched_len` is how much of `:path` the route matched
    /// (for `prefix_rewrite`).
    pub fn location<H: HeaderMapAccess + ?Sized>(&self, request: &H, matched_len: usize) -> String {
        let request_path = request.get(":path").unwrap_or("/");
        let rewritten;
        let path: &str = match &self.rewrite {
            Some(rewrite) if self.path.is_none() => {
                rewritten = rewrite.apply(request_path, matched_len);
                &rewritten
            }
            _ => request_path,
        };
        new_uri(
            request,
            self.scheme.as_deref(),
            self.host.as_deref(),
            self.port.as_deref(),
            self.path.as_deref().map(|p| (p, self.path_has_query)),
            path,
            self.strip_query,
        )
    }
}

/// The URI of a redirect (also used for the `Location` of a 201/3xx `direct_response`, with
/// every option off). `path_redirect` is `(path, has_query)`; `path` is the request's (possibly
/// rewritten) path.
pub fn new_uri<H: HeaderMapAccess + ?Sized>(
    request: &H,
    scheme_redirect: Option<&str>,
    host_redirect: Option<&str>,
    port_redirect: Option<&str>,
    path_redirect: Option<(&str, bool)>,
    path: &str,
    strip_query: bool,
) -> String {
    let scheme = scheme_redirect.unwrap_or_else(|| request.get(":scheme").unwrap_or("http"));
    let port = port_redirect.unwrap_or("");
    let host = match host_redirect {
        Some(h) => h,
        None => request_host(request, scheme, port),
    };
    let mut final_path = String::new();
    let mut path_has_query = false;
    match path_redirect {
        Some((p, true)) => {
            final_path.push_str(p);
            path_has_query = true;
        }
        Some((p, false)) => {
            final_path.push_str(p);
            if let Some(q) = path.find('?') {
                final_path.push_str(&path[q..]);
            }
        }
        None => final_path.push_str(path),
    }
    if !final_path.starts_with('/') {
        final_path.insert(0, '/');
    }
    if strip_query && !path_has_query {
        if let Some(q) = final_path.find('?') {
            final_path.truncate(q);
        }
    }
    format!("{scheme}://{host}{port}{final_path}")
}

/// The request's Host, without its port when a new port is set or when the scheme changes and
/// the port is the default of `x-forwarded-proto` (Envoy's `processRequestHost`).
fn request_host<'h, H: HeaderMapAccess + ?Sized>(
    request: &'h H,
    new_scheme: &str,
    new_port: &str,
) -> &'h str {
    let host = request.get(":authority").unwrap_or("");
    let port_start = if host.starts_with('[') {
        host.rfind("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    let Some(port_start) = port_start else {
        return host;
    };
    let port = &host[port_start..];
    let proto = request.get("x-forwarded-proto").unwrap_or("");
    let mut remove = !new_port.is_empty();
    if new_scheme != proto {
        remove |= proto.eq_ignore_ascii_case("https") && port == ":443";
        remove |= proto.eq_ignore_ascii_case("http") && port == ":80";
    }
    if remove {
        &host[..port_start]
    } else {
        host
    }
}

fn header_safe<'a>(n: &Node<'a>) -> Result<&'a str> {
    let s = n.as_str()?;
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(n.error("may not contain CR, LF or NUL"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::router::header_map::VecHeaderMap;

    fn redirect(yaml: &str) -> RedirectAction {
        let doc = parse_yaml(yaml).unwrap();
        RedirectAction::parse(&Node::root(&doc)).unwrap()
    }

    /// A plain-HTTP request as Envoy's connection manager presents it (x-forwarded-proto set).
    fn req(host: &str, path: &str) -> VecHeaderMap {
        VecHeaderMap::request(host, path, &[("x-forwarded-proto", "http")])
    }

    // Each case: (redirect config, route prefix, Host, :path, Location observed on Envoy 1.40).
    #[test]
    fn locations_match_envoy() {
        let cases = [
            (
                "host_redirect: new.com",
                "/r1",
                "h.com:8080",
                "/r1/a?q=1",
                "http://new.com/r1/a?q=1",
            ),
            (
                "https_redirect: true",
                "/r2",
                "h.com:8080",
                "/r2/a?q=1",
                "https://h.com:8080/r2/a?q=1",
            ),
            (
                "port_redirect: 8443",
                "/r3",
                "h.com:8080",
                "/r3/a?q=1",
                "http://h.com:8443/r3/a?q=1",
            ),
            (
                "path_redirect: /newpath",
                "/r4",
                "h.com:8080",
                "/r4/a?q=1",
                "http://h.com:8080/newpath?q=1",
            ),
            (
                "path_redirect: /newpath?x=1",
                "/r5",
                "h.com:8080",
                "/r5/a?q=1",
                "http://h.com:8080/newpath?x=1",
            ),
            (
                "{prefix_rewrite: /p6, strip_query: true, response_code: FOUND}",
                "/r6",
                "h.com:8080",
                "/r6/a?q=1",
                "http://h.com:8080/p6/a",
            ),
            (
                "{scheme_redirect: https, port_redirect: 443}",
                "/r7",
                "h.com:8080",
                "/r7/a",
                "https://h.com:443/r7/a",
            ),
            (
                "{scheme_redirect: http, host_redirect: 'x.com:9000'}",
                "/r8",
                "h.com:8080",
                "/r8/a",
                "http://x.com:9000/r8/a",
            ),
            (
                "{https_redirect: true, response_code: PERMANENT_REDIRECT}",
                "/r9",
                "h.com:8080",
                "/r9/a",
                "https://h.com:8080/r9/a",
            ),
            (
                "prefix_rewrite: /",
                "/ra",
                "h.com:8080",
                "/ra/b?x",
                "http://h.com:8080//b?x",
            ),
            (
                "prefix_rewrite: ''",
                "/rb/",
                "h.com:8080",
                "/rb/c?y",
                "http://h.com:8080/rb/c?y",
            ),
            (
                r#"regex_rewrite: {pattern: {regex: "^/rc/(.*)$"}, substitution: "/c/\\1"}"#,
                "/rc",
                "h.com:8080",
                "/rc/d/e?z=1",
                "http://h.com:8080/c/d/e?z=1",
            ),
            (
                "host_redirect: new.com",
                "/r1",
                "h.com",
                "/r1/a?q=1",
                "http://new.com/r1/a?q=1",
            ),
            (
                "https_redirect: true",
                "/r2",
                "h.com",
                "/r2/a",
                "https://h.com/r2/a",
            ),
            (
                "port_redirect: 8443",
                "/r3",
                "h.com",
                "/r3/a",
                "http://h.com:8443/r3/a",
            ),
            (
                "https_redirect: true",
                "/r2",
                "h.com:80",
                "/r2/a",
                "https://h.com/r2/a",
            ),
            (
                "https_redirect: true",
                "/r2",
                "h.com:443",
                "/r2/a",
                "https://h.com:443/r2/a",
            ),
            (
                "port_redirect: 8443",
                "/r3",
                "[::1]:80",
                "/r3/a",
                "http://[::1]:8443/r3/a",
            ),
            (
                "https_redirect: true",
                "/r2",
                "[::1]:80",
                "/r2/a",
                "https://[::1]/r2/a",
            ),
        ];
        for (yaml, prefix, host, path, want) in cases {
            let r = redirect(yaml);
            assert_eq!(
                r.location(&req(host, path), prefix.len()),
                want,
                "{yaml} {host}{path}"
            );
        }
    }

    #[test]
    fn scheme_follows_the_request() {
        let r = redirect("host_redirect: new.com");
        let mut request = req("h.com:443", "/r1/a");
        request.set(":scheme", "https");
        request.set("x-forwarded-proto", "https");
        assert_eq!(r.location(&request, 3), "https://new.com/r1/a");
    }

    #[test]
    fn response_codes() {
        assert_eq!(redirect("host_redirect: a").response_code, 301);
        assert_eq!(redirect("response_code: SEE_OTHER").response_code, 303);
        assert_eq!(
            redirect("response_code: TEMPORARY_REDIRECT").response_code,
            307
        );
    }

    #[test]
    fn errors() {
        let err = |y: &str| {
            let doc = parse_yaml(y).unwrap();
            RedirectAction::parse(&Node::root(&doc))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("{https_redirect: true, scheme_redirect: http}"),
            "scheme_redirect: specify only one of https_redirect, scheme_redirect"
        );
        assert_eq!(
            err("{path_redirect: /a, prefix_rewrite: /b}"),
            "path_redirect: specify only one of prefix_rewrite, regex_rewrite, path_redirect"
        );
        assert!(err("response_code: GONE").starts_with("response_code: unknown value 'GONE'"));
    }
}
