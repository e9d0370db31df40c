//! Head parsing: request and status lines and header fields (httparse), validated the way
//! Envoy 1.40 validates them, digested into a `RequestHead`/`ResponseHead`.
//!
//! Called by `ServerCodec` (requests) and `ClientCodec` (responses) once `find_head_end` has
//! seen the blank line ending a head, so httparse runs once per head rather than once per read
//! (a slowloris feeding one byte at a time costs a scan of the new byte, not a re-parse).
//!
//! One copy, no allocation: httparse gives slices into the read buffer; we keep them as
//! offsets, copy the head once into the `HeaderMap`'s own buffer (names lower-cased there; the
//! buffer comes from the worker's free list, `http::header_pool`) and consume it from the read
//! buffer. Splitting the head off the read buffer instead would share it, and the connection's
//! per-worker scratch buffer could then not be reused in place (the profile showed a
//! shared-promotion allocation plus a fresh 64 KiB read buffer per request). Only the fixed
//! array of httparse slots lives on the stack.
//!
//! Rules (each checked against Envoy 1.40; deliberate differences marked DIFF):
//! - head bytes (request line, fields, blank line) > `max_request_headers_kb` → 431
//!   `http1.headers_too_large`; more than `max_headers_count` fields → 431
//!   `http1.too_many_headers`.
//! - control characters (NUL, DEL, ...) anywhere in the head → 400 `http1.invalid_characters`;
//!   other malformations (space before the colon, empty name, bad method token, bare CR, obs-fold
//!   (DIFF: Envoy 1.40 unfolds), non-ASCII target) → 400 `http1.codec_error`.
//! - a well-formed version other than HTTP/1.1 (or HTTP/1.0 unless accepted) → 426 `low_version`.
//! - Content-Length and Transfer-Encoding together → 400
//!   `http1.content_length_and_chunked_not_allowed`; Transfer-Encoding other than exactly one
//!   `chunked` → 501 `http1.invalid_transfer_encoding`; a Content-Length that is not digits, is
//!   repeated (even with the same value) or overflows → 400 `http1.codec_error`.
//! - HTTP/1.1 without Host → 400 `missing_host_header`; a Host that is not an authority → 400
//!   `http.invalid_authority`; two Host fields → 400 (DIFF: Envoy joins them with a comma;
//!   RFC 9112 §3.2 requires 400).
//! - absolute-form targets: the URL's authority replaces Host, the path is kept in origin form.

use super::super::header_map::{HeaderMap, Span};
use super::super::inline_header::{self, InlineHeader, InlineHeader as H, InlineSet};
use super::decode::trim_end;
use super::error::CodecError;
use super::head::{BodyLength, Method, RequestHead, ResponseHead, Scheme, Version};
use super::Http1Settings;
use bytes::{Buf, BytesMut};
use std::mem::MaybeUninit;

/// httparse slots kept on the stack; a larger `max_headers_count` uses a heap array.
const STACK_HEADERS: usize = 128;

/// Offset just past the empty line that ends a head, searching from `from`. Accepts bare-LF
/// line ends as Envoy does (RFC 9112 §2.2 allows it); callers resume from `len - 2`.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(pos) = find_lf(buf.get(i..)?) {
        let lf = i + pos;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => i = lf + 1,
        }
    }
    None
}

/// Offset of the first `\n` in `bytes`, eight bytes per step: every head (and every read of
/// a trickled one) is searched for its end, so this runs over each byte received.
fn find_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = ONES * b'\n' as u64;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        // Bytes equal to `\n` become zero; `(x - 1) & !x & 0x80` flags a zero byte. A borrow
        // can flag a byte above a zero byte too, but never one below the first: the lowest
        // flag (little-endian: the first byte in memory) is exact.
        let x = u64::from_le_bytes(w) ^ LF;
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(offset + (zero.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|pos| offset + pos)
}

/// Why httparse refused a head: control characters get Envoy's `invalid_characters`, the rest
/// is a generic codec error.
pub(crate) fn classify_invalid(head: &[u8]) -> CodecError {
    let control = head
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f);
    if control {
        CodecError::InvalidCharacters
    } else {
        CodecError::Malformed("malformed message head")
    }
}

fn map_httparse_error(error: httparse::Error, head: &[u8]) -> CodecError {
    match error {
        httparse::Error::TooManyHeaders => CodecError::TooManyHeaders,
        httparse::Error::Version | httparse::Error::Token if well_formed_other_version(head) => {
            CodecError::UnsupportedVersion
        }
        _ => classify_invalid(head),
    }
}

/// True when the request line ends in a well-formed `HTTP/<digit>.<digit>` other than 1.0 and
/// 1.1, or is an HTTP/0.9 simple request (`GET /`): Envoy answers 426 to both.
fn well_formed_other_version(head: &[u8]) -> bool {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    if line.ends_with(b" ") {
        return false;
    }
    let parts: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .collect();
    match parts[..] {
        [method, target] => method.iter().all(u8::is_ascii_alphabetic) && target.starts_with(b"/"),
        [_, _, version] => matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit()
                && !(*major == b'1' && (*minor == b'0' || *minor == b'1'))),
        _ => false,
    }
}

/// Runs `parse` with enough httparse slots to detect one field more than allowed.
fn with_slots<'b, R>(
    max_headers: usize,
    parse: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> R,
) -> R {
    if max_headers < STACK_HEADERS {
        let mut stack = [const { MaybeUninit::<httparse::Header<'b>>::uninit() }; STACK_HEADERS];
        parse(&mut stack[..max_headers + 1])
    } else {
        let mut heap: Vec<MaybeUninit<httparse::Header<'b>>> =
            (0..=max_headers).map(|_| MaybeUninit::uninit()).collect();
        parse(&mut heap)
    }
}

/// The framing-relevant facts found in the header fields.
#[derive(Default)]
pub(super) struct Fields {
    host: Option<Span>,
    content_length: Option<u64>,
    /// Counts of the fields that may appear once (saturating: only 0, 1 and "more" matter).
    host_count: u8,
    content_length_count: u8,
    transfer_encoding_count: u8,
    transfer_encoding_chunked: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    connection_upgrade: bool,
    upgrade: bool,
    expect_continue: bool,
    content_length_valid: bool,
}

/// The longest name [`Fields::note`] acts on (`transfer-encoding`).
const LONGEST_FRAMING_NAME: usize = 17;

impl Fields {
    pub(super) fn new() -> Fields {
        Fields {
            content_length_valid: true,
            ..Fields::default()
        }
    }

    /// Records what one field means for the framing. `inline` is the field's name as an inline
    /// header (`inline_header::lookup` of the lower-cased name: all six names that matter here
    /// are inline ones, so a tag settles which it is), `value` is trimmed (`value_span` is
    /// where it lies in the head). Returns false for a request's `host`, which is not an entry
    /// of the map (it becomes the authority).
    #[inline(always)]
    pub(super) fn note(
        &mut self,
        inline: Option<InlineHeader>,
        value: &[u8],
        value_span: Span,
        is_request: bool,
    ) -> bool {
        match inline {
            Some(H::Host) if is_request => {
                self.host_count = self.host_count.saturating_add(1);
                self.host = Some(value_span);
                false
            }
            Some(header) if FRAMING.has(header) => {
                self.note_framing(header, value);
                true
            }
            _ => true,
        }
    }

    /// [`note`](Self::note) for one of the framing names but `host`.
    fn note_framing(&mut self, header: InlineHeader, value: &[u8]) {
        match header {
            H::ContentLength => {
                self.content_length_count = self.content_length_count.saturating_add(1);
                match parse_content_length(value) {
                    Some(n) => self.content_length = Some(n),
                    None => self.content_length_valid = false,
                }
            }
            H::TransferEncoding => {
                self.transfer_encoding_count = self.transfer_encoding_count.saturating_add(1);
                self.transfer_encoding_chunked = is_token(value, b"chunked");
            }
            // The usual value is one option (`keep-alive`, `close`): settled without a split.
            H::Connection if is_token(value, b"keep-alive") => self.connection_keep_alive = true,
            H::Connection if is_token(value, b"close") => self.connection_close = true,
            H::Connection => self.note_connection_options(value),
            // Envoy ignores an `h2c` upgrade over HTTP/1 (the connection manager strips it
            // and serves the request as plain HTTP/1.1).
            H::Upgrade => self.upgrade |= !is_token(trim_end(value.trim_ascii_start()), b"h2c"),
            H::Expect => self.expect_continue = is_token(value, b"100-continue"),
            _ => {}
        }
    }

    /// The options of a `connection` value that is not one option alone (`keep-alive,
    /// Upgrade` of a WebSocket handshake, a list of names to drop).
    #[inline(never)]
    fn note_connection_options(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',') {
            let token = trim_end(token.trim_ascii_start());
            if is_token(token, b"close") {
                self.connection_close = true;
            } else if is_token(token, b"keep-alive") {
                self.connection_keep_alive = true;
            } else if is_token(token, b"upgrade") {
                self.connection_upgrade = true;
            }
        }
    }
}

/// The inline headers [`Fields::note`] acts on besides `host`.
const FRAMING: InlineSet = InlineSet::of(&[
    H::ContentLength,
    H::TransferEncoding,
    H::Connection,
    H::Upgrade,
    H::Expect,
]);

/// True when `value` is the lower-case token `lower`, ignoring ASCII case: what
/// `eq_ignore_ascii_case` answers, with only the letters of the constant folded (about a third
/// of its instructions; these run on every head's framing fields).
#[inline(always)]
fn is_token(value: &[u8], lower: &[u8]) -> bool {
    value.len() == lower.len()
        && value.iter().zip(lower).all(|(&v, &l)| {
            let fold = if l.is_ascii_lowercase() { 0x20 } else { 0 };
            v | fold == l
        })
}

/// Records every field of `fields` (httparse's, names as received) into `map` (as offsets from
/// `base`), except `host` for requests, and collects the framing facts.
fn scan_fields(
    fields: &[httparse::Header<'_>],
    base: usize,
    map: &mut HeaderMap,
    is_request: bool,
) -> Fields {
    let mut facts = Fields::new();
    for field in fields {
        let name = field.name.as_bytes();
        let value = trim_end(field.value);
        let name_span = Span::received(name.as_ptr() as usize - base, name.len());
        let value_span = Span::received(value.as_ptr() as usize - base, value.len());
        // `note` wants the name as an inline header, recognised lower-cased; a longer name
        // than it knows is none of its names (the map recognises every entry's name when it
        // copies the head in).
        let mut lower = [0u8; LONGEST_FRAMING_NAME];
        let inline = lower.get_mut(..name.len()).and_then(|lower| {
            lower.copy_from_slice(name);
            lower.make_ascii_lowercase();
            inline_header::lookup(lower)
        });
        if facts.note(inline, value, value_span, is_request) {
            map.push_received(name_span, value_span);
        }
    }
    facts
}

/// A Content-Length value: one or more ASCII digits (leading zeros allowed, as in Envoy), no
/// sign, no list, no overflow.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Checks the Content-Length/Transfer-Encoding combination (same rules for both roles) and
/// returns the announced framing, `None` when neither is present.
fn message_framing(facts: &Fields) -> Result<Option<BodyLength>, CodecError> {
    if facts.transfer_encoding_count > 0 {
        if facts.content_length_count > 0 {
            return Err(CodecError::ContentLengthAndChunked);
        }
        if facts.transfer_encoding_count > 1 || !facts.transfer_encoding_chunked {
            return Err(CodecError::InvalidTransferEncoding);
        }
        return Ok(Some(BodyLength::Chunked));
    }
    if facts.content_length_count > 1 || !facts.content_length_valid {
        return Err(CodecError::InvalidContentLength);
    }
    Ok(facts.content_length.map(|n| {
        if n == 0 {
            BodyLength::Empty
        } else {
            BodyLength::Length(n)
        }
    }))
}

/// True for the characters an authority (`host[:port]`, IP literals, userinfo) may contain.
static AUTHORITY_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
                    | b'@'
            );
        b += 1;
    }
    table
};

/// True when `authority` has only characters an authority may contain (one table lookup a
/// byte: every request's Host goes through here).
fn valid_authority(authority: &[u8]) -> bool {
    authority
        .iter()
        .fold(true, |valid, &b| valid & AUTHORITY_CHARS[usize::from(b)])
}

/// The request target, split per RFC 9112 §3.2.
enum Target {
    /// origin-form `/p?q` or asterisk-form `*`: the path is the target itself.
    Path,
    /// absolute-form: scheme, authority offset/len, and the path part (may be empty or start
    /// with `?`, then the path is fixed up to begin with `/`).
    Absolute {
        scheme: Scheme,
        authority: (usize, usize),
        path: (usize, usize),
    },
    /// authority-form (CONNECT): the target is the authority, there is no path.
    Authority,
}

fn split_target(method: &Method, target: &[u8]) -> Result<Target, CodecError> {
    if target.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
        // httparse already refused controls and spaces; what is left is non-ASCII.
        return Err(CodecError::Malformed("non-ASCII request target"));
    }
    if target.contains(&b'#') {
        // A fragment is never sent (RFC 9110 §4.2.4); Envoy answers 400.
        return Err(CodecError::Malformed("fragment in the request target"));
    }
    if *method != Method::Connect && target.starts_with(b"/") {
        return Ok(Target::Path);
    }
    split_other_target(method, target)
}

/// [`split_target`] for the rarer forms: CONNECT's authority, `*`, an absolute URL. Reached
/// only by CONNECT, `OPTIONS *` and requests sent to a forward proxy.
#[cold]
fn split_other_target(method: &Method, target: &[u8]) -> Result<Target, CodecError> {
    if *method == Method::Connect {
        return if !target.is_empty() && valid_authority(target) && !target.starts_with(b"/") {
            Ok(Target::Authority)
        } else {
            Err(CodecError::InvalidUrl)
        };
    }
    if target == b"*" {
        return Ok(Target::Path);
    }
    let (scheme, rest_at) = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        (Scheme::Http, 7)
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        (Scheme::Https, 8)
    } else {
        return Err(CodecError::InvalidUrl);
    };
    let rest = &target[rest_at..];
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || !valid_authority(authority) {
        return Err(CodecError::InvalidUrl);
    }
    Ok(Target::Absolute {
        scheme,
        authority: (rest_at, authority_len),
        path: (rest_at + authority_len, rest.len() - authority_len),
    })
}

/// A request line as a parser found it (the target as an offset into the head).
pub(super) struct RequestLine {
    pub(super) method: Method,
    pub(super) version: Version,
    pub(super) target_at: usize,
    pub(super) target_len: usize,
}

/// A status line as a parser found it.
pub(super) struct StatusLine {
    pub(super) status: u16,
    pub(super) version: Version,
}

/// How the names of a parsed head are spelled in the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Names {
    /// As received: the copy into the map lower-cases them (the general parser).
    AsReceived,
    /// Already lower-cased in place, and each entry tagged with its inline header (the fast
    /// path does both while scanning them).
    LowerCased,
}

/// A head as either parser found it in `buf[..end]`, before Envoy's rules are applied: the start
/// line, the fields as spans in `map` (not yet holding the bytes), the framing facts.
pub(super) struct ParsedHead<L> {
    pub(super) line: L,
    pub(super) end: usize,
    pub(super) map: HeaderMap,
    pub(super) facts: Fields,
    pub(super) names: Names,
}

/// Parses the request head occupying `buf[..end]` (as found by `find_head_end`) with httparse,
/// the general parser, and splits it off `buf`.
pub(crate) fn parse_request(
    buf: &mut BytesMut,
    end: usize,
    settings: &Http1Settings,
) -> Result<RequestHead, CodecError> {
    if end > settings.max_head_bytes() {
        return Err(CodecError::HeadersTooLarge);
    }
    let max_headers = settings.max_headers_count as usize;
    let base = buf.as_ptr() as usize;
    let mut map = HeaderMap::new();
    // Everything httparse borrows is digested into offsets inside this block.
    let (line, facts) = with_slots(max_headers, |slots| {
        let mut request = httparse::Request::new(&mut []);
        let mut config = httparse::ParserConfig::default();
        // Envoy accepts `GET  / HTTP/1.1` (several spaces between the parts).
        config.allow_multiple_spaces_in_request_line_delimiters(true);
        match config.parse_request_with_uninit_headers(&mut request, &buf[..end], slots) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(CodecError::Malformed("incomplete request head"))
            }
            Err(error) => return Err(map_httparse_error(error, &buf[..end])),
        }
        if request.headers.len() > max_headers {
            return Err(CodecError::TooManyHeaders);
        }
        let (Some(method), Some(target), Some(version)) =
            (request.method, request.path, request.version)
        else {
            return Err(CodecError::Malformed("incomplete request line"));
        };
        let Some(method) = Method::from_token(method) else {
            return Err(CodecError::Malformed(
                "method unknown to Envoy's HTTP/1 parser",
            ));
        };
        map = HeaderMap::for_received(request.headers.len());
        let facts = scan_fields(request.headers, base, &mut map, true);
        let version = if version == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        let line = RequestLine {
            method,
            version,
            target_at: target.as_ptr() as usize - base,
            target_len: target.len(),
        };
        Ok((line, facts))
    })?;
    let parsed = ParsedHead {
        line,
        end,
        map,
        facts,
        names: Names::AsReceived,
    };
    finish_request(buf, parsed, settings)
}

/// The fast path for a request head: when the head at the front of `buf` is complete and in the
/// simple form (`parse_fast`), parses it in one pass and splits it off `buf`. `None`: use
/// `find_head_end` and [`parse_request`]; `buf` then holds the same head, at most with some
/// field names lower-cased, which changes nothing for the general parser (it lower-cases them
/// too, and no rule looks at the case of a name).
pub(crate) fn parse_simple_request(
    buf: &mut BytesMut,
    settings: &Http1Settings,
) -> Option<Result<RequestHead, CodecError>> {
    #[cfg(any(test, fuzzing))]
    let received = buf.clone();
    let parsed = super::parse_fast::scan_request(buf, settings)?;
    let result = finish_request(buf, parsed, settings);
    #[cfg(any(test, fuzzing))]
    check_fast_path(received, buf, &result, |buf, end| {
        parse_request(buf, end, settings)
    });
    Some(result)
}

/// Applies Envoy's request rules to a parsed head and splits it off `buf` (both parsers).
fn finish_request(
    buf: &mut BytesMut,
    parsed: ParsedHead<RequestLine>,
    settings: &Http1Settings,
) -> Result<RequestHead, CodecError> {
    let ParsedHead {
        line,
        end,
        mut map,
        facts,
        names,
    } = parsed;
    let RequestLine {
        method,
        version,
        target_at,
        target_len,
    } = line;
    let target = split_target(&method, &buf[target_at..target_at + target_len])?;
    if version == Version::Http10 && !settings.accept_http_10 {
        return Err(CodecError::UnsupportedVersion);
    }
    let framing = message_framing(&facts)?;
    if facts.host_count > 1 {
        return Err(CodecError::MultipleHost);
    }

    take_head(buf, end, &mut map, names);

    let path = Span::received(target_at, target_len);
    let mut head = RequestHead::from_parts(method, version, path, Span::EMPTY, map);
    match target {
        Target::Path => {}
        Target::Authority => {
            head.set_path("");
            head.set_authority_span(path);
        }
        Target::Absolute {
            scheme,
            authority,
            path,
        } => set_absolute_target(&mut head, target_at, scheme, authority, path),
    }
    if head.scheme.is_none() && !matches!(target, Target::Authority) {
        match (facts.host, version) {
            (Some(host), _) => {
                if !valid_authority(head.headers.resolve(host)) {
                    return Err(CodecError::InvalidAuthority);
                }
                head.set_authority_span(host);
            }
            (None, Version::Http11) => return Err(CodecError::MissingHost),
            (None, Version::Http10) => {
                if let Some(host) = &settings.default_host_for_http_10 {
                    head.set_authority(host);
                }
            }
        }
    } else if let Some(host) = facts.host {
        if !valid_authority(head.headers.resolve(host)) {
            return Err(CodecError::InvalidAuthority);
        }
    }

    head.keep_alive = match version {
        Version::Http11 => !facts.connection_close,
        Version::Http10 => facts.connection_keep_alive && !facts.connection_close,
    };
    head.upgrade = facts.connection_upgrade && facts.upgrade;
    head.expect_continue = facts.expect_continue;
    head.body = if head.upgrade || head.method == Method::Connect {
        if framing == Some(BodyLength::Chunked) && head.method == Method::Connect {
            // Envoy: `transfer-encoding` on CONNECT is a 501.
            return Err(CodecError::InvalidTransferEncoding);
        }
        BodyLength::Tunnel
    } else {
        framing.unwrap_or(BodyLength::Empty)
    };
    Ok(head)
}

/// Takes scheme, authority and path from an absolute-form target at `target_at` (offsets of
/// its parts relative to it). Reached only by requests sent to a forward proxy.
#[cold]
fn set_absolute_target(
    head: &mut RequestHead,
    target_at: usize,
    scheme: Scheme,
    authority: (usize, usize),
    path: (usize, usize),
) {
    head.scheme = Some(scheme);
    head.set_authority_span(Span::received(target_at + authority.0, authority.1));
    let span = Span::received(target_at + path.0, path.1);
    let suffix = head.headers.resolve(span);
    if suffix.starts_with(b"/") {
        head.set_path_span(span);
    } else {
        // `http://a` or `http://a?q`: origin form needs the leading slash.
        let mut fixed = Vec::with_capacity(suffix.len() + 1);
        fixed.push(b'/');
        fixed.extend_from_slice(suffix);
        head.set_path(std::str::from_utf8(&fixed).unwrap_or("/"));
    }
}

/// Copies `buf[..end]` (a parsed head whose field spans are in `map`) into the map, names
/// lower-cased, and consumes it from `buf`.
fn take_head(buf: &mut BytesMut, end: usize, map: &mut HeaderMap, names: Names) {
    match names {
        Names::AsReceived => map.copy_received(&buf[..end]),
        Names::LowerCased => map.copy_received_tagged(&buf[..end]),
    }
    buf.advance(end);
}

/// Unit tests and the fuzz targets (`cargo fuzz` builds with `--cfg fuzzing`) check every head
/// the fast path accepted against the general parser: same head (or error), same bytes left in
/// the buffer. `received` is the buffer as it was before the fast path ran. Not in the daemon,
/// not even a debug one: the check clones the buffer (allocations per request, which
/// tests/http_hot_path_alloc.rs counts in every build) and would panic on a disagreement.
#[cfg(any(test, fuzzing))]
fn check_fast_path<H: std::fmt::Debug>(
    mut received: BytesMut,
    buf: &BytesMut,
    fast: &Result<H, CodecError>,
    general: impl FnOnce(&mut BytesMut, usize) -> Result<H, CodecError>,
) {
    let end = find_head_end(&received, 0).expect("the fast path accepted a complete head");
    let general = general(&mut received, end);
    assert_eq!(
        format!("{fast:?}"),
        format!("{general:?}"),
        "fast path and httparse disagree on {:?}",
        String::from_utf8_lossy(&received)
    );
    if fast.is_ok() {
        assert_eq!(buf[..], received[..], "fast path consumed other bytes");
    }
}

/// What the client codec must remember about the request a response answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestContext {
    pub(crate) head: bool,
    pub(crate) connect: bool,
    pub(crate) upgrade: bool,
}

/// Parses the response head occupying `buf[..end]` with httparse, the general parser, and
/// splits it off `buf`.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    end: usize,
    settings: &Http1Settings,
    request: RequestContext,
) -> Result<ResponseHead, CodecError> {
    if end > settings.max_response_head_bytes() {
        return Err(CodecError::HeadersTooLarge);
    }
    let max_headers = settings.max_headers_count as usize;
    let base = buf.as_ptr() as usize;
    let mut map = HeaderMap::new();
    let (line, facts) = with_slots(max_headers, |slots| {
        let mut response = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        match config.parse_response_with_uninit_headers(&mut response, &buf[..end], slots) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(CodecError::Malformed("incomplete response head"))
            }
            Err(httparse::Error::TooManyHeaders) => return Err(CodecError::TooManyHeaders),
            Err(_) => return Err(classify_invalid(&buf[..end])),
        }
        if response.headers.len() > max_headers {
            return Err(CodecError::TooManyHeaders);
        }
        let (Some(status), Some(version)) = (response.code, response.version) else {
            return Err(CodecError::Malformed("incomplete status line"));
        };
        map = HeaderMap::for_received(response.headers.len());
        let facts = scan_fields(response.headers, base, &mut map, false);
        let version = if version == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        Ok((StatusLine { status, version }, facts))
    })?;
    let parsed = ParsedHead {
        line,
        end,
        map,
        facts,
        names: Names::AsReceived,
    };
    finish_response(buf, parsed, request)
}

/// The fast path for a response head, as [`parse_simple_request`] for requests.
pub(crate) fn parse_simple_response(
    buf: &mut BytesMut,
    settings: &Http1Settings,
    request: RequestContext,
) -> Option<Result<ResponseHead, CodecError>> {
    #[cfg(any(test, fuzzing))]
    let received = buf.clone();
    let parsed = super::parse_fast::scan_response(buf, settings)?;
    let result = finish_response(buf, parsed, request);
    #[cfg(any(test, fuzzing))]
    check_fast_path(received, buf, &result, |buf, end| {
        parse_response(buf, end, settings, request)
    });
    Some(result)
}

/// Applies the response rules to a parsed head and splits it off `buf` (both parsers).
fn finish_response(
    buf: &mut BytesMut,
    parsed: ParsedHead<StatusLine>,
    request: RequestContext,
) -> Result<ResponseHead, CodecError> {
    let ParsedHead {
        line: StatusLine { status, version },
        end,
        mut map,
        facts,
        names,
    } = parsed;
    if !(100..=599).contains(&status) {
        return Err(CodecError::Malformed("invalid status code"));
    }
    let framing = message_framing(&facts)?;

    take_head(buf, end, &mut map, names);

    // RFC 9112 §6.3, in order.
    let body = match status {
        101 if request.upgrade => BodyLength::Tunnel,
        101 => return Err(CodecError::UnexpectedUpgrade),
        100..=199 | 204 | 304 => BodyLength::Empty,
        _ if request.head => BodyLength::Empty,
        200..=299 if request.connect => BodyLength::Tunnel,
        _ => framing.unwrap_or(BodyLength::CloseDelimited),
    };
    let keep_alive = match version {
        Version::Http11 => !facts.connection_close,
        Version::Http10 => facts.connection_keep_alive && !facts.connection_close,
    } && body != BodyLength::CloseDelimited;
    // Built whole: no empty map made and dropped for the parsed one.
    Ok(ResponseHead {
        version,
        status,
        headers: map,
        body,
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_lf_finds_the_first_line_feed_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'a'; len];
                // Bytes that differ from `\n` by one bit or borrow around it must not match.
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = [b'\x0b', b'\t', b'\x8a', 0, b'a'][i % 5];
                }
                if at < len {
                    bytes[at] = b'\n';
                    if at + 1 < len {
                        bytes[at + 1] = b'\n';
                    }
                }
                let expected = bytes.iter().position(|&b| b == b'\n');
                assert_eq!(super::find_lf(&bytes), expected, "len {len} at {at}");
            }
        }
    }

    #[test]
    fn find_head_end_handles_crlf_and_bare_lf_and_resumes() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nh: a\r\n\r\nBODY", 0),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nh: a\n\nBODY", 0), Some(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nh: a\r\n\r", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nh: a\r\n", 0), None);
        let buf = b"GET / HTTP/1.1\r\nh: a\r\n\r\n";
        assert_eq!(find_head_end(buf, buf.len() - 4), Some(buf.len()));
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"03"), Some(3));
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b"+3",
            b"-3",
            b"3, 3",
            b"3 3",
            b"0x3",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn other_versions_are_recognised() {
        assert!(well_formed_other_version(b"GET / HTTP/1.2\r\n"));
        assert!(well_formed_other_version(b"GET / HTTP/2.0\r\n"));
        assert!(!well_formed_other_version(b"GET / http/1.1\r\n"));
        assert!(!well_formed_other_version(b"GET / HTTP/11\r\n"));
        assert!(!well_formed_other_version(b"GET /a b HTTP/1.1\r\n"));
        assert!(well_formed_other_version(b"GET /\r\n"));
        assert!(!well_formed_other_version(b"GET / HTTP/1.1 \r\n"));
    }

    #[test]
    fn is_token_is_eq_ignore_ascii_case_against_a_lower_case_constant() {
        for token in [&b"close"[..], b"keep-alive", b"100-continue", b"h2c"] {
            for i in 0..token.len() {
                for b in 0..=255u8 {
                    let mut value = token.to_vec();
                    value[i] = b;
                    assert_eq!(
                        is_token(&value, token),
                        value.eq_ignore_ascii_case(token),
                        "{value:?}"
                    );
                }
            }
            assert!(!is_token(&token[1..], token));
        }
    }

    #[test]
    fn authority_characters() {
        assert!(valid_authority(b"example.com:8080"));
        assert!(valid_authority(b"[::1]:80"));
        assert!(valid_authority(b""));
        assert!(!valid_authority(b"a b"));
        assert!(!valid_authority(b"a/b"));
    }
}
