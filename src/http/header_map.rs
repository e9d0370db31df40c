//! `HeaderMap`: the header fields of one HTTP message (Envoy's `Http::HeaderMap`).
//!
//! Owns the name/value pairs of a request, response or trailer section. The HTTP/1 codec
//! (`http::codec`) builds one per decoded head; the HTTP connection manager, the HTTP filters,
//! the router and the access log read and edit it; the codec's encoder serializes it again.
//!
//! Layout and costs:
//! - Names are stored lower-cased (HTTP/1 names are case-insensitive and Envoy forwards them
//!   lower-cased); lookups also compare case-insensitively, so `get("Host")` works too.
//! - Order is kept and a name may appear several times (`get_all`, `append`).
//! - A decoded map holds the received head as one `Bytes` (copied once from the read buffer by
//!   the codec) and each entry is a pair of offsets into it. Names and values added later go
//!   into a small owned buffer (reserved once, not grown per field). Getting a value is a
//!   slice, never an allocation.
//! - Lookups are a linear scan with a length pre-check: HTTP/1 heads are small (typically under
//!   20 fields) and the framing headers the proxy needs on every request (content-length,
//!   transfer-encoding, host, connection, upgrade, expect) are already digested by the codec into
//!   fields of `RequestHead`/`ResponseHead`, so the hot path does not search for them.
//! - Pseudo-values (method, path, authority, status) are not entries: they are fields of
//!   `RequestHead`/`ResponseHead` (Envoy keeps them as `:method`, `:path`, ... entries).

use bytes::Bytes;
use std::fmt;

/// Where one name or value lives: in the shared received bytes or in the owned buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
    owned: bool,
}

impl Span {
    /// A span of `len` bytes at `start` inside the received (shared) bytes.
    pub(crate) fn received(start: usize, len: usize) -> Span {
        // The codec caps heads far below 4 GiB (max_request_headers_kb), so offsets fit in u32.
        Span {
            start: start as u32,
            len: len as u32,
            owned: false,
        }
    }

    /// (start, len) within its storage.
    pub(crate) fn bounds(self) -> (usize, usize) {
        (self.start as usize, self.len as usize)
    }

    pub(crate) const EMPTY: Span = Span {
        start: 0,
        len: 0,
        owned: true,
    };
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    name: Span,
    value: Span,
}

/// First allocation of a map's owned storage.
const OWNED_RESERVE: usize = 256;

/// An ordered multimap of lower-cased header names to byte values.
#[derive(Clone, Default)]
pub struct HeaderMap {
    /// The head block this map was decoded from (names already lower-cased in place).
    received: Bytes,
    /// Bytes of names and values added after decoding; append-only.
    owned: Vec<u8>,
    entries: Vec<Entry>,
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> HeaderMap {
        HeaderMap::default()
    }

    /// A map whose entries will point into `received` (used by the codec).
    pub(crate) fn with_received(received: Bytes, capacity: usize) -> HeaderMap {
        HeaderMap {
            received,
            owned: Vec::new(),
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Adds an entry whose name and value are already in the received bytes. The codec has
    /// validated and lower-cased them.
    pub(crate) fn push_received(&mut self, name: Span, value: Span) {
        debug_assert!(!name.owned && !value.owned);
        self.entries.push(Entry { name, value });
    }

    /// Sets the received bytes the entries pushed so far point into (the codec collects the
    /// offsets while httparse still borrows the buffer, then freezes the buffer).
    pub(crate) fn set_received(&mut self, received: Bytes) {
        self.received = received;
    }

    /// The bytes of a span (of this map's storage).
    pub(crate) fn resolve(&self, span: Span) -> &[u8] {
        let (start, end) = (span.start as usize, span.start as usize + span.len as usize);
        let storage: &[u8] = if span.owned {
            &self.owned
        } else {
            &self.received
        };
        storage.get(start..end).unwrap_or(&[])
    }

    /// Stores `bytes` in the owned buffer and returns its span (for values that are not
    /// entries, such as a rewritten path).
    pub(crate) fn store(&mut self, bytes: &[u8]) -> Span {
        let start = self.owned.len();
        self.owned.extend_from_slice(bytes);
        Span {
            start: start as u32,
            len: bytes.len() as u32,
            owned: true,
        }
    }

    /// Stores `bytes` sanitized: the characters that would split an HTTP/1 message (CR, LF,
    /// NUL) become spaces, and names are lower-cased. Config and formatter output go through
    /// here, so no caller can inject a header line.
    fn store_sanitized(&mut self, bytes: &[u8], lower: bool) -> Span {
        if self.owned.capacity() == 0 {
            // The proxy adds a handful of fields per request (x-forwarded-proto, x-request-id,
            // x-envoy-expected-rq-timeout-ms, ...): one allocation holds them all.
            self.owned.reserve(OWNED_RESERVE.max(bytes.len()));
        }
        let start = self.owned.len();
        self.owned.extend(bytes.iter().map(|&b| match b {
            b'\r' | b'\n' | 0 => b' ',
            _ if lower => b.to_ascii_lowercase(),
            _ => b,
        }));
        Span {
            start: start as u32,
            len: bytes.len() as u32,
            owned: true,
        }
    }

    /// The (name, value) spans of every entry, in order (codec only).
    pub(crate) fn iter_spans(&self) -> impl Iterator<Item = (Span, Span)> + '_ {
        self.entries.iter().map(|e| (e.name, e.value))
    }

    /// Number of entries (a repeated name counts once per line).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn matches(&self, entry: &Entry, name: &str) -> bool {
        entry.name.len as usize == name.len()
            && self
                .resolve(entry.name)
                .eq_ignore_ascii_case(name.as_bytes())
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| self.matches(e, name))
            .map(|e| self.resolve(e.value))
    }

    /// The first value of `name` as text; `None` if absent or not UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// True when at least one entry is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of `name`, in order of appearance.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |e| self.matches(e, name))
            .map(move |e| self.resolve(e.value))
    }

    /// Sets `name` to the single value `value`: the first existing entry keeps its position and
    /// takes the value, later ones are removed; if absent, the entry is appended.
    pub fn insert(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let value = self.store_sanitized(value.as_ref(), false);
        match self.entries.iter().position(|e| self.matches(e, name)) {
            Some(first) => {
                self.entries[first].value = value;
                let mut index = 0;
                let entries = std::mem::take(&mut self.entries);
                self.entries = entries
                    .into_iter()
                    .filter(|e| {
                        index += 1;
                        index - 1 <= first || !self.matches(e, name)
                    })
                    .collect();
            }
            None => {
                let name = self.store_sanitized(name.as_bytes(), true);
                self.entries.push(Entry { name, value });
            }
        }
    }

    /// Adds an entry at the end, keeping existing entries of the same name.
    pub fn append(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let name = self.store_sanitized(name.as_bytes(), true);
        let value = self.store_sanitized(value.as_ref(), false);
        self.entries.push(Entry { name, value });
    }

    /// Removes every entry called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|e| !self.matches(e, name));
        self.entries = entries;
        before - self.entries.len()
    }

    /// Keeps only the entries for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|e| keep(self.name_str(e.name), self.resolve(e.value)));
        self.entries = entries;
    }

    fn name_str(&self, span: Span) -> &str {
        // Names are HTTP tokens (ASCII), validated by the codec or sanitized on insert; a
        // non-UTF-8 name cannot be stored, so the fallback is never taken.
        std::str::from_utf8(self.resolve(span)).unwrap_or("")
    }

    /// The entries in order, as (lower-case name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.entries
            .iter()
            .map(move |e| (self.name_str(e.name), self.resolve(e.value)))
    }

    /// Bytes the entries take as HTTP/1 field lines (`name: value\r\n`), for reserving output.
    pub fn encoded_len(&self) -> usize {
        self.byte_size() + 4 * self.entries.len()
    }

    /// Sum of name and value lengths (Envoy's `byteSize`).
    pub fn byte_size(&self) -> usize {
        self.entries
            .iter()
            .map(|e| (e.name.len + e.value.len) as usize)
            .sum()
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned())),
            )
            .finish()
    }
}

impl PartialEq for HeaderMap {
    /// Two maps are equal when they hold the same entries in the same order, wherever the bytes
    /// are stored.
    fn eq(&self, other: &HeaderMap) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl<'a> FromIterator<(&'a str, &'a str)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in iter {
            map.append(name, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderMap {
        [
            ("Host", "a"),
            ("Accept", "*/*"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn names_are_lower_cased_and_lookups_ignore_case() {
        let map = sample();
        assert_eq!(map.get("host"), Some(&b"a"[..]));
        assert_eq!(map.get("HOST"), Some(&b"a"[..]));
        assert_eq!(map.iter().next(), Some(("host", &b"a"[..])));
        assert_eq!(map.get_str("accept"), Some("*/*"));
        assert!(map.get("missing").is_none());
    }

    #[test]
    fn get_all_keeps_order_of_repeated_names() {
        let map = sample();
        let all: Vec<&[u8]> = map.get_all("x-multi").collect();
        assert_eq!(all, vec![&b"1"[..], &b"2"[..]]);
    }

    #[test]
    fn insert_replaces_all_values_at_first_position() {
        let mut map = sample();
        map.insert("x-multi", "3");
        let names: Vec<&str> = map.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["host", "accept", "x-multi"]);
        assert_eq!(map.get("x-multi"), Some(&b"3"[..]));
        map.insert("new", "v");
        assert_eq!(map.iter().last(), Some(("new", &b"v"[..])));
    }

    #[test]
    fn append_and_remove() {
        let mut map = sample();
        map.append("accept", "text/html");
        assert_eq!(map.get_all("accept").count(), 2);
        assert_eq!(map.remove("accept"), 2);
        assert_eq!(map.remove("accept"), 0);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn inserted_values_cannot_split_a_message() {
        let mut map = HeaderMap::new();
        map.insert("x", "a\r\nevil: 1\0");
        assert_eq!(map.get("x"), Some(&b"a  evil: 1 "[..]));
    }

    #[test]
    fn received_entries_point_into_shared_bytes() {
        let received = Bytes::from_static(b"host: a\r\n");
        let mut map = HeaderMap::with_received(received, 1);
        map.push_received(Span::received(0, 4), Span::received(6, 1));
        assert_eq!(map.get("host"), Some(&b"a"[..]));
        assert_eq!(map.byte_size(), 5);
        let equal: HeaderMap = [("host", "a")].into_iter().collect();
        assert_eq!(map, equal);
    }

    #[test]
    fn retain_filters_by_name_and_value() {
        let mut map = sample();
        map.retain(|name, value| name != "x-multi" || value == b"2");
        assert_eq!(map.get_all("x-multi").collect::<Vec<_>>(), vec![&b"2"[..]]);
    }
}
