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
//! - All bytes live in one vector: a decoded map starts with the received head (copied once
//!   from the read buffer by the codec, names lower-cased there) and each entry is a pair of
//!   offsets into it; names and values added later are appended behind it (except the names of
//!   inline headers the proxy adds: those are their static constants). Getting a value is a
//!   slice, never an allocation.
//! - The byte vector and the entry vector come from the worker's free list
//!   (`http::header_pool`) and go back to it on drop, so building, editing, cloning and
//!   dropping the heads of a stream costs no `malloc` in steady state.
//! - Inline headers (`http::inline_header`, Envoy's O(1) inline headers): the names the proxy
//!   itself handles (hop-by-hop, `x-forwarded-*`, `x-envoy-*`, `date`, `server`, ...) are
//!   recognised once, when a field is stored, and the entry is tagged with its `InlineHeader`.
//!   The map keeps the set of inline names present (invariant: exactly the union of its
//!   entries' tags), so asking for, removing or adding an inline name that is absent (the usual
//!   case on the request path) is a bit test, and a present one is found by its tag.
//! - Other names are found by a linear scan with a length pre-check: HTTP/1 heads are small
//!   (typically under 20 fields) and the framing headers the proxy needs on every request
//!   (content-length, transfer-encoding, host, connection, upgrade, expect) are already digested
//!   by the codec into fields of `RequestHead`/`ResponseHead`.
//! - Pseudo-values (method, path, authority, status) are not entries: they are fields of
//!   `RequestHead`/`ResponseHead` (Envoy keeps them as `:method`, `:path`, ... entries), stored
//!   as spans of the same vector.

use super::header_pool;
use super::inline_header::{self, InlineHeader, InlineSet};
use std::fmt;

/// Where one name or value lives: `len` bytes at `start` of the map's byte vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// A span of `len` bytes at `start` of the received head (which starts the byte vector).
    pub(crate) fn received(start: usize, len: usize) -> Span {
        // The codec caps heads far below 4 GiB (max_request_headers_kb), so offsets fit in u32.
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    /// (start, len) within its storage.
    pub(crate) fn bounds(self) -> (usize, usize) {
        (self.start as usize, self.len as usize)
    }

    pub(crate) const EMPTY: Span = Span { start: 0, len: 0 };
}

/// One field: its name and value spans, and which inline header the name is (`None` for
/// other names). (`pub(crate)` for the free list's type only.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    name: Span,
    value: Span,
    inline: Option<InlineHeader>,
}

impl Entry {
    fn is(&self, header: InlineHeader) -> bool {
        self.inline == Some(header)
    }

    /// The name, from `bytes` (the map's byte vector). An inline header's name is its
    /// lower-case constant (a received one has exactly those bytes): the proxy's own inline
    /// fields (`x-forwarded-proto`, `server`, `date`, ...) are added without copying their
    /// names into the vector, and their name span only gives the length.
    #[inline]
    fn name<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        match self.inline {
            Some(header) => header.name().as_bytes(),
            None => resolve(bytes, self.name),
        }
    }
}

/// A name as a lookup key: an inline header (found by its tag) or any other name (found by
/// comparing names, case-insensitively).
#[derive(Clone, Copy)]
enum Key<'a> {
    Inline(InlineHeader),
    Name(&'a str),
}

impl<'a> Key<'a> {
    /// `name` as a key: inline when it is an inline header's (lower-case) name.
    #[inline]
    fn of(name: &'a str) -> Key<'a> {
        match inline_header::lookup(name.as_bytes()) {
            Some(header) => Key::Inline(header),
            None => Key::Name(name),
        }
    }
}

/// Room kept behind a received head for the fields the proxy adds (x-forwarded-proto,
/// x-envoy-expected-rq-timeout-ms, x-envoy-upstream-service-time, ...), so adding them does
/// not grow the vector.
const ADDED_BYTES: usize = 256;

/// Entries kept free behind the received ones, for the same reason.
const ADDED_ENTRIES: usize = 4;

/// An ordered multimap of lower-cased header names to byte values.
#[derive(Default)]
pub struct HeaderMap {
    /// The received head block (names lower-cased in place), then the bytes of names and values
    /// added after decoding; append-only. Empty (no capacity) until the first byte is stored.
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// The inline headers with at least one entry: exactly the union of the entries' tags.
    present: InlineSet,
}

impl HeaderMap {
    /// An empty map (allocates nothing until a field is added).
    pub fn new() -> HeaderMap {
        HeaderMap::default()
    }

    /// A map for a head of `fields` fields, whose entries the codec pushes as spans of the head
    /// it then copies in with [`copy_received`](Self::copy_received).
    pub(crate) fn for_received(fields: usize) -> HeaderMap {
        HeaderMap {
            bytes: Vec::new(),
            entries: header_pool::take_entries(fields + ADDED_ENTRIES),
            present: InlineSet::EMPTY,
        }
    }

    /// Adds an entry whose name and value are spans of the received head. The codec has
    /// validated them; the name is recognised in [`copy_received`](Self::copy_received).
    pub(crate) fn push_received(&mut self, name: Span, value: Span) {
        self.entries.push(Entry {
            name,
            value,
            inline: None,
        });
    }

    /// Copies the received head block the entries pushed so far point into, lower-cases their
    /// names in the copy and recognises the inline ones (the codec collects the offsets while
    /// httparse still borrows the read buffer, then copies the head out of it, so the read
    /// buffer stays unshared). Must be called before anything else is stored.
    pub(crate) fn copy_received(&mut self, head: &[u8]) {
        self.copy_head(head);
        for entry in &mut self.entries {
            let (start, len) = entry.name.bounds();
            if let Some(name) = self.bytes.get_mut(start..start + len) {
                to_lower_case(name);
                entry.inline = inline_header::lookup(name);
                if let Some(header) = entry.inline {
                    self.present.insert(header);
                }
            }
        }
    }

    /// [`push_received`](Self::push_received) of a field whose name the codec has already
    /// lower-cased in the head and recognised: `inline` is `inline_header::lookup` of it (its
    /// fast path does both while scanning the name, so the fields are not walked again).
    #[inline(always)]
    pub(crate) fn push_received_tagged(
        &mut self,
        name: Span,
        value: Span,
        inline: Option<InlineHeader>,
    ) {
        if let Some(header) = inline {
            self.present.insert(header);
        }
        self.entries.push(Entry {
            name,
            value,
            inline,
        });
    }

    /// [`copy_received`](Self::copy_received) for a head whose entries were all pushed by
    /// [`push_received_tagged`](Self::push_received_tagged): names lower-cased in place and
    /// tagged already, so the head is only copied.
    pub(crate) fn copy_received_tagged(&mut self, head: &[u8]) {
        self.copy_head(head);
        debug_assert!(self.entries.iter().all(|e| {
            let name = resolve(&self.bytes, e.name);
            !name.iter().any(u8::is_ascii_uppercase) && e.inline == inline_header::lookup(name)
        }));
    }

    /// Copies the received head block to the start of the byte vector.
    fn copy_head(&mut self, head: &[u8]) {
        debug_assert!(self.bytes.is_empty(), "the received head starts the vector");
        if self.bytes.capacity() == 0 {
            self.bytes = header_pool::take_bytes(head.len() + ADDED_BYTES);
        }
        self.bytes.clear();
        self.bytes.extend_from_slice(head);
    }

    /// The bytes of a span (of this map's storage).
    pub(crate) fn resolve(&self, span: Span) -> &[u8] {
        resolve(&self.bytes, span)
    }

    /// Makes room for `more` bytes, taking the vector from the worker's free list the first time.
    fn reserve(&mut self, more: usize) {
        if self.bytes.capacity() == 0 {
            self.bytes = header_pool::take_bytes(more);
        } else {
            self.bytes.reserve(more);
        }
    }

    /// Stores `bytes` and returns its span (for values that are not entries, such as a
    /// rewritten path).
    pub(crate) fn store(&mut self, bytes: &[u8]) -> Span {
        if bytes.is_empty() {
            return Span::EMPTY;
        }
        self.reserve(bytes.len());
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        Span {
            start: start as u32,
            len: bytes.len() as u32,
        }
    }

    /// Stores `bytes` sanitized: the characters that would split an HTTP/1 message (CR, LF,
    /// NUL) become spaces, and names are lower-cased. Config and formatter output go through
    /// here, so no caller can inject a header line.
    fn store_sanitized(&mut self, bytes: &[u8], lower: bool) -> Span {
        self.reserve(bytes.len());
        let start = self.bytes.len();
        // Copied whole, then checked eight bytes at a time: names and values from the config
        // and the proxy itself are clean, and a byte-by-byte pass cost ~7 instructions a byte.
        self.bytes.extend_from_slice(bytes);
        let stored = &mut self.bytes[start..];
        let n = stored.len();
        let mut words = stored.chunks_exact_mut(8);
        for word in &mut words {
            if !is_clean(read_word(word), lower) {
                sanitize(word, lower);
            }
        }
        // The last 1-7 bytes: checked as the (overlapping) last word when there is one.
        let tail_clean = n >= 8 && is_clean(read_word(&stored[n - 8..]), lower);
        if !tail_clean {
            sanitize(&mut stored[n - n % 8..], lower);
        }
        Span {
            start: start as u32,
            len: bytes.len() as u32,
        }
    }

    /// Stores the name of a new entry called `key`: an inline name as is (a lower-case
    /// constant), any other sanitized and lower-cased. Returns its span and inline header.
    #[inline]
    fn store_name(&mut self, key: Key<'_>) -> (Span, Option<InlineHeader>) {
        match key {
            // Not stored: see `Entry::name`. (The usual case: the names the proxy adds are
            // inline ones, so this arm is inlined into the callers and the other is not.)
            Key::Inline(header) => (Span::received(0, header.name().len()), Some(header)),
            Key::Name(name) => self.store_other_name(name),
        }
    }

    /// [`store_name`](Self::store_name) of a name that is not an inline one as given.
    #[inline(never)]
    fn store_other_name(&mut self, name: &str) -> (Span, Option<InlineHeader>) {
        let span = self.store_sanitized(name.as_bytes(), true);
        // `name` was not an inline name as given; lower-cased it may be one.
        (span, inline_header::lookup(self.resolve(span)))
    }

    /// Appends an entry, taking the entry vector from the worker's free list the first time.
    fn push(&mut self, entry: Entry) {
        if self.entries.capacity() == 0 {
            self.entries = header_pool::take_entries(1);
        }
        if let Some(header) = entry.inline {
            self.present.insert(header);
        }
        self.entries.push(entry);
    }

    /// Keeps the entries for which `keep` is true, in order, and recomputes the set of inline
    /// headers present. Returns how many entries were removed.
    fn retain_entries(&mut self, keep: impl FnMut(&[u8], &Entry) -> bool) -> usize {
        let removed = self.compact(keep);
        if removed != 0 {
            self.recompute_present();
        }
        removed
    }

    /// Sets the set of inline headers present from the entries (after a removal the caller
    /// cannot account for exactly).
    fn recompute_present(&mut self) {
        self.present = InlineSet::EMPTY;
        for header in self.entries.iter().filter_map(|e| e.inline) {
            self.present.insert(header);
        }
    }

    /// Keeps the entries for which `keep` is true, in order, leaving the set of inline headers
    /// present to the caller. Returns how many entries were removed.
    fn compact(&mut self, mut keep: impl FnMut(&[u8], &Entry) -> bool) -> usize {
        // Entries are small `Copy` values: compacted in place by hand (cheaper than
        // `Vec::retain`'s general machinery for the few entries of a head). The entries before
        // the first one removed stay where they are.
        let bytes = &self.bytes;
        let entries = &mut self.entries[..];
        let Some(first) = entries.iter().position(|e| !keep(bytes, e)) else {
            return 0;
        };
        let mut kept = first;
        for i in first + 1..entries.len() {
            let entry = entries[i];
            if keep(bytes, &entry) {
                entries[kept] = entry;
                kept += 1;
            }
        }
        let removed = entries.len() - kept;
        self.entries.truncate(kept);
        removed
    }

    /// True when entry `e` is called `key`.
    fn is(&self, e: &Entry, key: Key<'_>) -> bool {
        key_matches(&self.bytes, e, key)
    }

    /// True when no entry can be called `key`: an inline header not present. (False for other
    /// names, which are only settled by a scan.)
    fn surely_absent(&self, key: Key<'_>) -> bool {
        matches!(key, Key::Inline(header) if !self.present.has(header))
    }

    /// The entries worth scanning for `key`: none when it is surely absent.
    fn candidates(&self, key: Key<'_>) -> &[Entry] {
        if self.surely_absent(key) {
            &[]
        } else {
            &self.entries
        }
    }

    /// Number of entries (a repeated name counts once per line).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The inline headers present (exact: an inline header is in the set iff an entry has
    /// its name). Lets a pass over the fields be skipped when none of its names is there.
    pub fn inline_present(&self) -> InlineSet {
        self.present
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_key(Key::of(name))
    }

    /// The first value of the inline header `header`, if present.
    pub fn get_inline(&self, header: InlineHeader) -> Option<&[u8]> {
        self.get_key(Key::Inline(header))
    }

    fn get_key(&self, key: Key<'_>) -> Option<&[u8]> {
        self.candidates(key)
            .iter()
            .find(|e| self.is(e, key))
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

    /// True when at least one entry is the inline header `header` (a bit test).
    pub fn contains_inline(&self, header: InlineHeader) -> bool {
        self.present.has(header)
    }

    /// True when at least one entry is called one of `names` (inline names are a bit test
    /// each; the others a scan each).
    pub fn contains_any(&self, names: &[&str]) -> bool {
        names.iter().any(|name| self.contains(name))
    }

    /// Every value of `name`, in order of appearance.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all_key(Key::of(name))
    }

    /// Every value of the inline header `header`, in order of appearance.
    pub fn get_all_inline(&self, header: InlineHeader) -> impl Iterator<Item = &[u8]> + '_ {
        self.get_all_key(Key::Inline(header))
    }

    fn get_all_key<'a>(&'a self, key: Key<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.candidates(key)
            .iter()
            .filter(move |e| self.is(e, key))
            .map(move |e| self.resolve(e.value))
    }

    /// Sets `name` to the single value `value`: the first existing entry keeps its position and
    /// takes the value, later ones are removed; if absent, the entry is appended.
    pub fn insert(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let value = self.store_sanitized(value.as_ref(), false);
        self.insert_span(Key::of(name), value);
    }

    /// [`insert`](Self::insert) for a header the proxy generates itself: `name` is a
    /// lower-case token constant and `value` printable ASCII the proxy formatted (a number, an
    /// HTTP date, a fixed token such as `http`), so the sanitizing pass is skipped.
    /// Invariant (checked in debug builds): never a value from the config, a client or an
    /// upstream; those go through [`insert`](Self::insert).
    pub fn insert_generated(&mut self, name: &'static str, value: &[u8]) {
        debug_assert_generated(name, value);
        let value = self.store(value);
        self.insert_span(Key::of(name), value);
    }

    /// [`insert_generated`](Self::insert_generated) of the inline header `header`.
    pub fn insert_inline_generated(&mut self, header: InlineHeader, value: &[u8]) {
        debug_assert_generated(header.name(), value);
        let value = self.store(value);
        self.insert_span(Key::Inline(header), value);
    }

    /// [`insert`](Self::insert) of the inline header `header`.
    pub fn insert_inline(&mut self, header: InlineHeader, value: impl AsRef<[u8]>) {
        let value = self.store_sanitized(value.as_ref(), false);
        self.insert_span(Key::Inline(header), value);
    }

    /// Sets `key` to the stored `value` (see [`insert`](Self::insert)).
    fn insert_span(&mut self, key: Key<'_>, value: Span) {
        let first = self.candidates(key).iter().position(|e| self.is(e, key));
        match first {
            Some(first) => {
                self.entries[first].value = value;
                // Later entries of the name (rare) go.
                if self.entries[first + 1..].iter().any(|e| self.is(e, key)) {
                    // The first entry stays, so the set of inline headers present does too.
                    let mut index = 0;
                    self.compact(|bytes, e| {
                        index += 1;
                        index - 1 <= first || !key_matches(bytes, e, key)
                    });
                }
            }
            None => {
                let (name, inline) = self.store_name(key);
                self.push(Entry {
                    name,
                    value,
                    inline,
                });
            }
        }
    }

    /// [`append`](Self::append) for a header the proxy generates itself (the invariant of
    /// [`insert_generated`](Self::insert_generated): no sanitizing pass).
    pub fn append_generated(&mut self, name: &'static str, value: &[u8]) {
        self.push_generated(Key::of(name), name, value);
    }

    /// [`set`](Self::set) for a header the proxy generates itself (the invariant of
    /// [`insert_generated`](Self::insert_generated): no sanitizing pass).
    pub fn set_generated(&mut self, name: &'static str, value: &[u8]) {
        let key = Key::of(name);
        self.remove_key(key);
        self.push_generated(key, name, value);
    }

    /// Appends the generated header `name` (as `key`): `value` stored as is.
    fn push_generated(&mut self, key: Key<'_>, name: &'static str, value: &[u8]) {
        debug_assert_generated(name, value);
        let (name, inline) = self.store_name(key);
        let value = self.store(value);
        self.push(Entry {
            name,
            value,
            inline,
        });
    }

    /// Adds an entry at the end, keeping existing entries of the same name.
    pub fn append(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let (name, inline) = self.store_name(Key::of(name));
        let value = self.store_sanitized(value.as_ref(), false);
        self.push(Entry {
            name,
            value,
            inline,
        });
    }

    /// Replaces every entry called `name` with one `name: value` at the end (Envoy's
    /// `setReferenceKey`: remove, then append).
    pub fn set(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let key = Key::of(name);
        self.remove_key(key);
        let (name, inline) = self.store_name(key);
        let value = self.store_sanitized(value.as_ref(), false);
        self.push(Entry {
            name,
            value,
            inline,
        });
    }

    /// Removes every entry called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        self.remove_key(Key::of(name))
    }

    /// Removes every entry of the inline header `header`; returns how many were removed.
    pub fn remove_inline(&mut self, header: InlineHeader) -> usize {
        self.remove_key(Key::Inline(header))
    }

    #[inline]
    fn remove_key(&mut self, key: Key<'_>) -> usize {
        // Most removals are of a header that is not there (hop-by-hop, x-envoy-* controls): a
        // bit test settles an inline name where it is asked (this part is inlined), a
        // read-only scan any other (`compact` looks for the first match before it moves
        // anything).
        if self.surely_absent(key) {
            return 0;
        }
        self.remove_entries_of(key)
    }

    /// [`remove_key`](Self::remove_key) of a name that may be present.
    #[inline(never)]
    fn remove_entries_of(&mut self, key: Key<'_>) -> usize {
        match key {
            Key::Inline(header) => {
                let removed = self.compact(|_, e| !e.is(header));
                self.present = self.present.without(header);
                removed
            }
            Key::Name(_) => self.retain_entries(|bytes, e| !key_matches(bytes, e, key)),
        }
    }

    /// Removes every entry of the inline headers in `set`, in one pass (none when no header
    /// of `set` is present); returns how many were removed.
    pub fn remove_inline_set(&mut self, set: InlineSet) -> usize {
        if !self.present.intersects(set) {
            return 0;
        }
        let removed = self.compact(|_, e| !e.inline.is_some_and(|header| set.has(header)));
        // Every entry of `set` went, and every other entry stayed.
        self.present = self.present.difference(set);
        removed
    }

    /// Keeps the entries of the inline headers in `set` for which `keep(header, value)` is
    /// true, and every other entry, in one pass that calls `keep` on each entry of `set` in
    /// order (none when no header of `set` is present). Returns how many entries were removed.
    pub(crate) fn retain_inline(
        &mut self,
        set: InlineSet,
        mut keep: impl FnMut(InlineHeader, &[u8]) -> bool,
    ) -> usize {
        if !self.present.intersects(set) {
            return 0;
        }
        // The loop of `compact`, written out so that `keep` (the caller's, maybe large) runs
        // only for the entries of `set`; the entries before the first of them (most of a head)
        // are only looked at, not copied.
        let before = self.entries.len();
        let Some(first) = self
            .entries
            .iter()
            .position(|e| e.inline.is_some_and(|header| set.has(header)))
        else {
            return 0;
        };
        let mut kept = first;
        for i in first..before {
            let entry = self.entries[i];
            let stays = match entry.inline {
                Some(header) if set.has(header) => keep(header, resolve(&self.bytes, entry.value)),
                _ => true,
            };
            if stays {
                if kept != i {
                    self.entries[kept] = entry;
                }
                kept += 1;
            }
        }
        self.entries.truncate(kept);
        if kept != before {
            self.recompute_present();
        }
        before - kept
    }

    /// Keeps only the entries for which `keep(name, value)` is true. The name is given as
    /// bytes (lower-case ASCII): the hot-path callers compare it with constants, and a UTF-8
    /// check per entry would cost more than the comparison.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        self.retain_entries(|bytes, e| keep(e.name(bytes), resolve(bytes, e.value)));
    }

    /// The entries in order, as (lower-case name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.entries
            .iter()
            .map(move |e| (name_str(e.name(&self.bytes)), self.resolve(e.value)))
    }

    /// The entries in order as (inline header, name, value), names and values as raw bytes: what
    /// the encoder writes (no UTF-8 check of the names, which were validated or sanitized when
    /// stored), with the tag that spares it comparing names.
    pub(crate) fn iter_tagged(
        &self,
    ) -> impl Iterator<Item = (Option<InlineHeader>, &[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .map(move |e| (e.inline, e.name(&self.bytes), self.resolve(e.value)))
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

/// The invariant of the `*_generated` methods, checked in debug builds: the proxy formatted
/// the header itself, so its name is a lower-case token and its value printable ASCII.
fn debug_assert_generated(name: &str, value: &[u8]) {
    debug_assert!(
        name.bytes()
            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
        "generated header name {name:?}"
    );
    debug_assert!(
        value.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
        "generated value of {name}"
    );
}

/// Replaces CR, LF and NUL with spaces and, with `lower`, upper-case ASCII letters with
/// lower-case ones.
fn sanitize(bytes: &mut [u8], lower: bool) {
    for b in bytes {
        match *b {
            b'\r' | b'\n' | 0 => *b = b' ',
            c if lower => *b = c.to_ascii_lowercase(),
            _ => {}
        }
    }
}

/// The first eight bytes of `bytes` as a little-endian word.
fn read_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// True when [`sanitize`] would leave these eight bytes unchanged: none is CR, LF or NUL, and
/// (with `lower`) none is an upper-case ASCII letter.
fn is_clean(word: u64, lower: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Some byte of `x` is zero iff this is non-zero (the flag may also mark bytes above a
    // zero byte, which does not matter for "any").
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    if has_zero(word) || has_zero(word ^ (ONES * 0x0d)) || has_zero(word ^ (ONES * 0x0a)) {
        return false;
    }
    !lower || upper_case_bytes(word) == 0
}

/// The bytes of `span` in `bytes` (empty if out of range, which the map never produces).
fn resolve(bytes: &[u8], span: Span) -> &[u8] {
    let (start, len) = span.bounds();
    bytes.get(start..start + len).unwrap_or(&[])
}

/// True when `entry` is called `key`: by tag for an inline header, otherwise by name
/// (case-insensitively; length first, the cheap test).
fn key_matches(bytes: &[u8], entry: &Entry, key: Key<'_>) -> bool {
    match key {
        Key::Inline(header) => entry.is(header),
        Key::Name(name) => {
            entry.name.len as usize == name.len()
                && entry.name(bytes).eq_ignore_ascii_case(name.as_bytes())
        }
    }
}

/// Lower-cases an ASCII name in place, eight bytes at a time (names are short; the byte loop
/// of `make_ascii_lowercase` cost ~5 instructions a byte).
fn to_lower_case(name: &mut [u8]) {
    let n = name.len();
    if n < 8 {
        name.make_ascii_lowercase();
        return;
    }
    let mut at = 0;
    loop {
        let word = read_word(&name[at..]);
        let lower = lower_word(word);
        if lower != word {
            name[at..at + 8].copy_from_slice(&lower.to_le_bytes());
        }
        if at + 8 == n {
            return;
        }
        // The last word may overlap the one before: lower-casing twice is harmless.
        at = (at + 8).min(n - 8);
    }
}

/// `word` with its upper-case ASCII letters lower-cased (0x20 set on each).
fn lower_word(word: u64) -> u64 {
    word | (upper_case_bytes(word) >> 2)
}

/// Bit 7 set in each byte of `word` that is an upper-case ASCII letter, clear elsewhere.
fn upper_case_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // On the low seven bits (no carry between bytes): bit 7 of `+ 0x3f` is set from 'A' (0x41)
    // up, bit 7 of `+ 0x25` from '[' (0x5b) up; bytes >= 0x80 are not letters.
    let low = word & !HIGHS;
    low.wrapping_add(ONES * 0x3f) & !low.wrapping_add(ONES * 0x25) & !word & HIGHS
}

fn name_str(name: &[u8]) -> &str {
    // Names are HTTP tokens (ASCII), validated by the codec or sanitized on insert; a
    // non-UTF-8 name cannot be stored, so the fallback is never taken.
    std::str::from_utf8(name).unwrap_or("")
}

impl Clone for HeaderMap {
    /// A copy whose vectors also come from the worker's free list.
    fn clone(&self) -> HeaderMap {
        let mut copy = HeaderMap::new();
        copy.present = self.present;
        if !self.bytes.is_empty() {
            copy.bytes = header_pool::take_bytes(self.bytes.len() + ADDED_BYTES);
            copy.bytes.extend_from_slice(&self.bytes);
        }
        if !self.entries.is_empty() {
            copy.entries = header_pool::take_entries(self.entries.len() + ADDED_ENTRIES);
            copy.entries.extend_from_slice(&self.entries);
        }
        copy
    }
}

impl Drop for HeaderMap {
    /// The vectors go back to the worker's free list for the next message.
    fn drop(&mut self) {
        // Empty maps (a head taken over by the router leaves one behind) own nothing to give.
        if self.bytes.capacity() != 0 {
            header_pool::give_bytes(std::mem::take(&mut self.bytes));
        }
        if self.entries.capacity() != 0 {
            header_pool::give_entries(std::mem::take(&mut self.entries));
        }
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
    fn append_generated_adds_after_existing_entries() {
        let mut map = sample();
        map.append_generated("x-multi", b"3");
        let all: Vec<&[u8]> = map.get_all("x-multi").collect();
        assert_eq!(all, vec![&b"1"[..], &b"2"[..], &b"3"[..]]);
        assert_eq!(map.iter().last(), Some(("x-multi", &b"3"[..])));
    }

    #[test]
    fn contains_any_finds_one_of_several_names_in_any_case() {
        let map = sample();
        assert!(map.contains_any(&["missing", "x-multi"]));
        assert!(map.contains_any(&["ACCEPT"]));
        assert!(!map.contains_any(&["missing", "x-mult", "x-multi2"]));
        assert!(!map.contains_any(&[]));
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
    fn insert_generated_replaces_like_insert() {
        let mut map = sample();
        map.insert_generated("x-multi", b"3");
        let names: Vec<&str> = map.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["host", "accept", "x-multi"]);
        assert_eq!(map.get("x-multi"), Some(&b"3"[..]));
        map.insert_generated("date", b"Thu, 26 Nov 2026 18:00:00 GMT");
        assert_eq!(
            map.iter().last(),
            Some(("date", &b"Thu, 26 Nov 2026 18:00:00 GMT"[..]))
        );
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
    fn stored_bytes_are_sanitized_like_the_byte_by_byte_rule() {
        // Every byte value at every position of words and tails, with and without lower-casing.
        for lower in [false, true] {
            for b in 0..=255u8 {
                for len in [1usize, 7, 8, 9, 16, 23] {
                    for at in 0..len {
                        let mut input = vec![b'a'; len];
                        input[at] = b;
                        let mut expected = input.clone();
                        for c in &mut expected {
                            *c = match *c {
                                b'\r' | b'\n' | 0 => b' ',
                                c if lower => c.to_ascii_lowercase(),
                                c => c,
                            };
                        }
                        let mut map = HeaderMap::new();
                        let span = map.store_sanitized(&input, lower);
                        assert_eq!(
                            map.resolve(span),
                            &expected[..],
                            "byte {b:#x} at {at}/{len}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn names_are_lower_cased_like_the_byte_by_byte_rule() {
        for len in 0..24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut name = vec![b'A'; len];
                    name[at] = b;
                    let mut expected = name.clone();
                    expected.make_ascii_lowercase();
                    to_lower_case(&mut name);
                    assert_eq!(name, expected, "byte {b:#x} at {at}/{len}");
                }
            }
        }
    }

    #[test]
    fn received_entries_point_into_the_copied_head() {
        let mut map = HeaderMap::for_received(1);
        map.push_received(Span::received(0, 4), Span::received(6, 1));
        map.copy_received(b"HOST: a\r\n");
        assert_eq!(map.get("host"), Some(&b"a"[..]));
        assert_eq!(map.byte_size(), 5);
        let equal: HeaderMap = [("host", "a")].into_iter().collect();
        assert_eq!(map, equal);
    }

    #[test]
    fn a_dropped_map_gives_its_storage_to_the_next_one() {
        let map = sample();
        let (bytes, entries) = (map.bytes.as_ptr(), map.entries.as_ptr());
        drop(map);
        // The free list is last in, first out: the next map of this thread reuses both.
        let next = sample();
        assert_eq!(next.bytes.as_ptr(), bytes);
        assert_eq!(next.entries.as_ptr(), entries);
        let copy = next.clone();
        assert_eq!(copy, next);
        assert_ne!(copy.bytes.as_ptr(), next.bytes.as_ptr());
    }

    #[test]
    fn an_empty_map_owns_nothing() {
        let map = HeaderMap::new();
        assert_eq!((map.bytes.capacity(), map.entries.capacity()), (0, 0));
        let copy = map.clone();
        assert_eq!((copy.bytes.capacity(), copy.entries.capacity()), (0, 0));
    }

    #[test]
    fn inline_names_are_recognised_however_they_are_stored() {
        let mut map = HeaderMap::for_received(2);
        map.push_received(Span::received(0, 10), Span::received(12, 5));
        map.push_received(Span::received(19, 2), Span::received(23, 1));
        map.copy_received(b"CONNECTION: close\r\nXy: 1\r\n");
        assert!(map.contains_inline(InlineHeader::Connection));
        assert_eq!(
            map.get_inline(InlineHeader::Connection),
            Some(&b"close"[..])
        );
        assert_eq!(map.get("Connection"), Some(&b"close"[..]));
        assert_eq!(map.get("xy"), Some(&b"1"[..]));
        // Added with upper-case letters: lower-cased, then recognised.
        map.append("X-Forwarded-For", "a");
        map.insert("Date", "d");
        let present = map.inline_present();
        assert!(present.has(InlineHeader::XForwardedFor) && present.has(InlineHeader::Date));
        assert_eq!(map.get_all_inline(InlineHeader::XForwardedFor).count(), 1);
        assert_eq!(map.iter().last(), Some(("date", &b"d"[..])));
    }

    #[test]
    fn a_head_lower_cased_and_tagged_by_the_codec_keeps_its_tags() {
        let mut map = HeaderMap::for_received(2);
        map.push_received_tagged(
            Span::received(0, 10),
            Span::received(12, 5),
            Some(InlineHeader::Connection),
        );
        map.push_received_tagged(Span::received(19, 2), Span::received(23, 1), None);
        map.copy_received_tagged(b"connection: close\r\nxy: 1\r\n");
        assert_eq!(
            map.inline_present(),
            InlineSet::of(&[InlineHeader::Connection])
        );
        assert_eq!(
            map.get_inline(InlineHeader::Connection),
            Some(&b"close"[..])
        );
        assert_eq!(map.get("xy"), Some(&b"1"[..]));
    }

    #[test]
    fn the_present_set_is_exact_after_every_removal() {
        let mut map: HeaderMap = [
            ("x-forwarded-for", "1"),
            ("te", "trailers"),
            ("x-forwarded-for", "2"),
            ("accept", "*/*"),
            ("server", "s"),
        ]
        .into_iter()
        .collect();
        let union = |map: &HeaderMap| {
            InlineSet::of(
                &map.iter()
                    .filter_map(|(n, _)| inline_header::lookup(n.as_bytes()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(map.inline_present(), union(&map));
        // By a name with upper-case letters (not an inline key): still clears the bit.
        assert_eq!(map.remove("X-Forwarded-For"), 2);
        assert!(!map.contains_inline(InlineHeader::XForwardedFor));
        assert_eq!(map.inline_present(), union(&map));
        map.retain(|name, _| name != b"te");
        assert_eq!(map.inline_present(), union(&map));
        assert_eq!(
            map.remove_inline_set(InlineSet::of(&[InlineHeader::Server, InlineHeader::Te])),
            1
        );
        assert!(map.inline_present().is_empty());
        assert_eq!(
            map.remove_inline_set(InlineSet::of(&[InlineHeader::Server])),
            0
        );
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            vec![("accept", &b"*/*"[..])]
        );
        let copy = map.clone();
        assert_eq!(copy.inline_present(), map.inline_present());
    }

    #[test]
    fn insert_of_an_inline_header_keeps_the_first_position_and_drops_the_others() {
        let mut map: HeaderMap = [("server", "a"), ("x", "1"), ("server", "b")]
            .into_iter()
            .collect();
        map.insert_inline(InlineHeader::Server, "c");
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            vec![("server", &b"c"[..]), ("x", &b"1"[..])]
        );
        assert!(map.contains_inline(InlineHeader::Server));
    }

    #[test]
    fn set_moves_the_header_to_the_end() {
        let mut map: HeaderMap = [("x-request-id", "a"), ("x", "1"), ("x-request-id", "b")]
            .into_iter()
            .collect();
        map.set("x-request-id", "c");
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            vec![("x", &b"1"[..]), ("x-request-id", &b"c"[..])]
        );
        map.set("y", "2");
        assert_eq!(map.get("y"), Some(&b"2"[..]));
    }

    #[test]
    fn retain_filters_by_name_and_value() {
        let mut map = sample();
        map.retain(|name, value| name != b"x-multi" || value == b"2");
        assert_eq!(map.get_all("x-multi").collect::<Vec<_>>(), vec![&b"2"[..]]);
    }
}
