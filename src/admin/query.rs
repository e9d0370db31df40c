//! The admin request's path and query string (Envoy's `Http::Utility::QueryParamsMulti` as the
//! admin handlers see it): `/stats?filter=a%2Eb&usedonly` becomes the path `/stats` and the
//! ordered parameters `filter = "a.b"`, `usedonly = ""`.
//!
//! Called by the admin filter for every request; pure functions, no I/O.

/// A request target split into its path and decoded query parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// The path, percent-decoded, without the query string.
    pub path: String,
    /// `key=value` pairs in order; a bare `key` has an empty value. Keys and values are
    /// percent-decoded; `+` stays `+` (Envoy does not treat it as a space).
    pub params: Vec<(String, String)>,
    /// The raw query string (without `?`), for handlers that parse it themselves.
    pub raw: String,
}

impl Query {
    /// Splits and decodes `target` (`/path?a=1&b`). A `#fragment` is dropped.
    pub fn parse(target: &str) -> Query {
        let target = target.split('#').next().unwrap_or(target);
        let (path, raw) = target.split_once('?').unwrap_or((target, ""));
        let params = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query {
            path: percent_decode(path),
            params,
            raw: raw.to_string(),
        }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }
}

/// Decodes `%XX` escapes; a malformed escape is kept as written, and bytes that do not form
/// UTF-8 are replaced (U+FFFD) rather than refused.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_and_decodes_parameters() {
        let q = Query::parse("/stats?filter=cluster%5C.app&usedonly&type=Counters#x");
        assert_eq!(q.path, "/stats");
        assert_eq!(q.get("filter"), Some("cluster\\.app"));
        assert!(q.has("usedonly"));
        assert_eq!(q.get("usedonly"), Some(""));
        assert_eq!(q.get("type"), Some("Counters"));
        assert_eq!(q.get("nope"), None);
        assert_eq!(q.raw, "filter=cluster%5C.app&usedonly&type=Counters");
    }

    #[test]
    fn decoding_is_lenient() {
        assert_eq!(percent_decode("a%2Eb%"), "a.b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("x+y%20z"), "x+y z");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        let q = Query::parse("/logging?paths=admin%3Adebug%2Chttp%3Ainfo");
        assert_eq!(q.get("paths"), Some("admin:debug,http:info"));
        assert_eq!(Query::parse("/").params, vec![]);
    }
}
