//! The fast path of head parsing: one pass over a request or response head in the simple form
//! that practically every client and upstream sends, instead of `find_head_end` (a pass to find
//! the blank line), httparse (a second pass) and `scan_fields` (a third, over the fields).
//!
//! Called by `ServerCodec`/`ClientCodec` (through `parse::parse_simple_request`/
//! `parse_simple_response`) when a head is first looked at; the general path in `parse` stays
//! the authority. The fast path accepts only a subset of what httparse accepts and answers
//! `None` for anything else (an incomplete head, an unusual but maybe valid byte, an error),
//! and the general path then decides, with its error classification. So every head it accepts
//! is parsed exactly as the general path parses it; the unit tests and the fuzz targets check
//! that on every head (`parse::check_fast_path`).
//!
//! The simple form:
//!
//! ```text
//! request-line = method SP target SP "HTTP/1." ("1" / "0") CRLF   ; a method Envoy knows,
//!                                                                  ; target bytes %x21-7E
//! status-line  = "HTTP/1." ("1" / "0") SP 3DIGIT [ SP reason ] CRLF ; reason: HTAB / %x20-7E
//! field-line   = token ":" *( SP / HTAB ) value CRLF               ; value: HTAB / %x20-7E
//! head         = start-line *field-line CRLF                        ; within the size and count limits
//! ```
//!
//! No bare LF, no obs-fold, no obs-text (bytes >= 0x80), one space between the parts of the
//! start line. Values lose their trailing spaces and tabs, as in httparse. While it scans a name
//! the fast path lower-cases it in the read buffer (the map stores names lower-cased anyway) and
//! recognises it as an inline header, so the head is copied out without a second pass over the
//! names.

use super::super::header_map::{HeaderMap, Span};
use super::super::inline_header::{self, InlineHeader};
use super::head::{Method, Version};
use super::parse::{Fields, Names, ParsedHead, RequestLine, StatusLine};
use super::Http1Settings;

/// Entries reserved for the map before the field count is known (the general parser knows it
/// first and reserves exactly; a larger head just grows the pooled vector).
const FIELDS_GUESS: usize = 16;

/// The longest method Envoy accepts (`UNSUBSCRIBE`).
const LONGEST_METHOD: usize = 11;

/// Scans the request head at the front of `buf`; `None` when it is not complete or not in the
/// simple form.
#[inline]
pub(super) fn scan_request(
    buf: &mut [u8],
    settings: &Http1Settings,
) -> Option<ParsedHead<RequestLine>> {
    // Most requests are GETs: one compare settles the method then.
    let (method, target_at) = if buf.starts_with(b"GET ") {
        (Method::Get, 4)
    } else {
        let space = buf
            .iter()
            .take(LONGEST_METHOD + 1)
            .position(|&b| b == b' ')?;
        (Method::from_bytes(&buf[..space])?, space + 1)
    };
    let target_len = visible_run(&buf[target_at..]);
    let at = target_at + target_len;
    let version = match buf.get(at..at + 11)? {
        b" HTTP/1.1\r\n" => Version::Http11,
        b" HTTP/1.0\r\n" => Version::Http10,
        _ => return None,
    };
    if target_len == 0 {
        return None;
    }
    let line = RequestLine {
        method,
        version,
        target_at,
        target_len,
    };
    scan_fields(buf, at + 11, settings.max_head_bytes(), settings, line)
}

/// Scans the response head at the front of `buf`; `None` when it is not complete or not in the
/// simple form.
#[inline]
pub(super) fn scan_response(
    buf: &mut [u8],
    settings: &Http1Settings,
) -> Option<ParsedHead<StatusLine>> {
    let version = match buf.get(..9)? {
        b"HTTP/1.1 " => Version::Http11,
        b"HTTP/1.0 " => Version::Http10,
        _ => return None,
    };
    let status = match *buf.get(9..12)? {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return None,
    };
    // The reason phrase is not kept (Envoy writes its own).
    let at = match buf.get(12)? {
        b' ' => 13 + text_run(&buf[13..]),
        _ => 12,
    };
    if buf.get(at..at + 2)? != b"\r\n" {
        return None;
    }
    let max_bytes = settings.max_response_head_bytes();
    scan_fields(
        buf,
        at + 2,
        max_bytes,
        settings,
        StatusLine { status, version },
    )
}

/// What distinguishes the two kinds of start line for the fields that follow.
trait StartLine {
    /// Requests: `host` is the authority, not an entry.
    const IS_REQUEST: bool;
}

impl StartLine for RequestLine {
    const IS_REQUEST: bool = true;
}

impl StartLine for StatusLine {
    const IS_REQUEST: bool = false;
}

/// Scans the field lines from `at` up to and including the blank line into the head that
/// starts with `line`: the fields as spans in its map, the framing facts, the head's end.
#[inline]
fn scan_fields<L: StartLine>(
    buf: &mut [u8],
    mut at: usize,
    max_bytes: usize,
    settings: &Http1Settings,
    line: L,
) -> Option<ParsedHead<L>> {
    let max_fields = settings.max_headers_count as usize;
    let mut head = ParsedHead {
        line,
        end: 0,
        map: HeaderMap::for_received(FIELDS_GUESS),
        facts: Fields::new(),
        names: Names::LowerCased,
    };
    let mut fields = 0;
    loop {
        if at > max_bytes || fields > max_fields {
            // The general parser answers 431 with the right detail.
            return None;
        }
        let name_len = lower_name(buf.get_mut(at..)?);
        let colon = at + name_len;
        if name_len == 0 {
            // Only the blank line ending the head may start with something else.
            if buf.get(at..at + 2)? != b"\r\n" {
                return None;
            }
            head.end = at + 2;
            return (head.end <= max_bytes).then_some(head);
        }
        if *buf.get(colon)? != b':' {
            return None;
        }
        let mut value_at = colon + 1;
        while matches!(buf.get(value_at), Some(b' ' | b'\t')) {
            value_at += 1;
        }
        let line_end = value_at + text_run(&buf[value_at..]);
        if buf.get(line_end..line_end + 2)? != b"\r\n" {
            return None;
        }
        let value = trim_end(&buf[value_at..line_end]);
        let name_span = Span::received(at, name_len);
        let value_span = Span::received(value_at, value.len());
        // Recognised once, here: the tag tells `note` the framing fields and goes with the
        // entry into the map (which needs no pass of its own over the names). Every request
        // has a `host` field: a four-byte compare settles it before the hash.
        let name = &buf[at..colon];
        let inline = if L::IS_REQUEST && name == b"host" {
            Some(InlineHeader::Host)
        } else {
            inline_header::lookup_inlined(name)
        };
        if head.facts.note(inline, value, value_span, L::IS_REQUEST) {
            head.map.push_received_tagged(name_span, value_span, inline);
        }
        fields += 1;
        at = line_end + 2;
    }
}

/// `value` without its trailing spaces and tabs.
fn trim_end(value: &[u8]) -> &[u8] {
    let mut end = value.len();
    while end > 0 && matches!(value[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &value[..end]
}

/// Token characters (RFC 9110 §5.6.2, httparse's set) mapped to their lower-case form; 0 for
/// every other byte.
static NAME_LOWER: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let token = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if token {
            table[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    table
};

/// Length of the token at the front of `bytes`, lower-cased in place. (Byte by byte through the
/// table: a word-at-a-time version for letters and `-` measured no faster on real names.)
fn lower_name(bytes: &mut [u8]) -> usize {
    let mut len = 0;
    for b in bytes.iter_mut() {
        let lower = NAME_LOWER[usize::from(*b)];
        if lower == 0 {
            break;
        }
        *b = lower;
        len += 1;
    }
    len
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (bit 7 of a byte) the bytes of `word` below `n` (`n` <= 0x80). A borrow may flag a
/// byte above a flagged one too, but the lowest flag is always exact.
fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// Flags the bytes of `word` that are 0x7f or above (the lowest flag is exact, as in [`below`]).
fn above_tilde(word: u64) -> u64 {
    (word.wrapping_add(ONES) | word) & HIGHS
}

/// Length of the run of bytes at the front of `bytes` that `accept` takes, eight bytes at a
/// time: `outside` flags the bytes of a word that may not belong (exact for the lowest flag),
/// and the first flagged byte is judged by `accept` on its own.
#[inline(always)]
fn run(bytes: &[u8], outside: impl Fn(u64) -> u64, accept: impl Fn(u8) -> bool) -> usize {
    let mut len = 0;
    loop {
        let Some(word) = bytes.get(len..len + 8) else {
            // Fewer than eight bytes left: one at a time.
            return len
                + bytes[len..]
                    .iter()
                    .position(|&b| !accept(b))
                    .unwrap_or(bytes.len() - len);
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let flags = outside(u64::from_le_bytes(w));
        if flags != 0 {
            let first = len + (flags.trailing_zeros() / 8) as usize;
            if !accept(bytes[first]) {
                return first;
            }
            // A byte the word test cannot vouch for but the set takes (a tab in a value).
            len = first + 1;
            continue;
        }
        len += 8;
    }
}

/// Length of the run of visible ASCII (%x21-7E: a request target) at the front of `bytes`.
fn visible_run(bytes: &[u8]) -> usize {
    run(
        bytes,
        |w| below(w, 0x21) | above_tilde(w),
        |b| (0x21..=0x7e).contains(&b),
    )
}

/// Length of the run of field-value text (HTAB, %x20-7E) at the front of `bytes`.
#[inline(always)]
fn text_run(bytes: &[u8]) -> usize {
    run(
        bytes,
        |w| below(w, 0x20) | above_tilde(w),
        |b| b == b'\t' || (0x20..=0x7e).contains(&b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_stop_at_the_first_byte_outside_their_set_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for stop in [0u8, b'\t', b'\r', b' ', 0x7f, 0x80, 0xff] {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = stop;
                    }
                    let text_stops = at < len && stop != b'\t' && stop != b' ';
                    let visible_stops = at < len;
                    let expect = |stops| if stops { at } else { len };
                    assert_eq!(text_run(&bytes), expect(text_stops), "{len} {at} {stop}");
                    assert_eq!(
                        visible_run(&bytes),
                        expect(visible_stops),
                        "{len} {at} {stop}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_are_lower_cased_up_to_the_first_non_token_byte() {
        let mut bytes = *b"Content-Length: Abc";
        assert_eq!(lower_name(&mut bytes), 14);
        assert_eq!(&bytes, b"content-length: Abc");
        let mut bytes = *b"A B";
        assert_eq!(lower_name(&mut bytes), 1);
        assert_eq!(&bytes, b"a B");
        // Every byte value at every position of a word and of the tail, against the table.
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'X'; len];
                    bytes[at] = b;
                    bytes.push(b':');
                    let mut expected = bytes.clone();
                    let mut expected_len = 0;
                    for e in expected.iter_mut() {
                        if NAME_LOWER[usize::from(*e)] == 0 {
                            break;
                        }
                        *e = NAME_LOWER[usize::from(*e)];
                        expected_len += 1;
                    }
                    assert_eq!(lower_name(&mut bytes), expected_len, "{len} {at} {b}");
                    assert_eq!(bytes, expected, "{len} {at} {b}");
                }
            }
        }
    }

    /// The start line, the fields (name, value) and the end of a scanned request head.
    type Scanned = (RequestLine, Vec<(String, String)>, usize);

    fn request(head: &[u8]) -> Option<Scanned> {
        let mut buf = head.to_vec();
        let parsed = scan_request(&mut buf, &Http1Settings::default())?;
        let mut map = parsed.map;
        map.copy_received_tagged(&buf[..parsed.end]);
        let fields = map
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        Some((parsed.line, fields, parsed.end))
    }

    #[test]
    fn a_simple_request_is_scanned_in_one_pass() {
        let head = b"GET /a?b HTTP/1.1\r\nHost: x\r\nUser-Agent:  curl \t\r\nX-Empty:\r\n\r\nBODY";
        let (line, fields, end) = request(head).expect("simple");
        assert_eq!(line.method, Method::Get);
        assert_eq!(line.version, Version::Http11);
        assert_eq!(&head[line.target_at..][..line.target_len], b"/a?b");
        assert_eq!(
            fields,
            [("user-agent", "curl"), ("x-empty", "")].map(|(n, v)| (n.into(), v.into()))
        );
        assert_eq!(end, head.len() - 4);
    }

    #[test]
    fn anything_unusual_or_incomplete_goes_to_the_general_parser() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n"[..],        // incomplete
            b"GET / HTTP/1.1\r\nHost: x\r\n\r",           // incomplete
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",        // two spaces
            b"get / HTTP/1.1\r\nHost: x\r\n\r\n",         // unknown method
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",           // bare LF
            b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",         // other version
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", // non-ASCII target
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",        // space before the colon
            b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",        // leading space
            b"GET / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",   // obs-fold
            b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n",  // obs-text
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",      // bare CR
            b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",       // NUL
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",           // bare LF end
        ] {
            assert!(
                request(head).is_none(),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn limits_are_left_to_the_general_parser() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            head.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(
            request(&head).is_none(),
            "101 fields > max_headers_count 100"
        );
        let long = format!("GET / HTTP/1.1\r\nh: {}\r\n\r\n", "v".repeat(60 * 1024));
        assert!(request(long.as_bytes()).is_none(), "over 60 KiB");
    }

    #[test]
    fn a_simple_response_is_scanned_in_one_pass() {
        let mut buf =
            b"HTTP/1.1 204 No Content\r\nServer: up\r\nConnection: close\r\n\r\n".to_vec();
        let parsed = scan_response(&mut buf, &Http1Settings::default()).expect("simple");
        assert_eq!(parsed.line.status, 204);
        assert_eq!(parsed.end, buf.len());
        assert_eq!(parsed.map.len(), 2);
        let mut buf = b"HTTP/1.0 200\r\n\r\n".to_vec();
        assert!(scan_response(&mut buf, &Http1Settings::default()).is_some());
        for head in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 \xff\r\n\r\n",
        ] {
            let mut buf = head.to_vec();
            assert!(
                scan_response(&mut buf, &Http1Settings::default()).is_none(),
                "{head:?}"
            );
        }
    }
}
