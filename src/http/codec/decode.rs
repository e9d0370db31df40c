//! `BodyDecoder`: incremental body framing (RFC 9112 §6 and §7), resumable at any byte.
//!
//! Owned by `ServerCodec`/`ClientCodec` while they are in their `Body` reading state; called
//! with the connection's read buffer, it consumes framing bytes and hands body bytes out as a
//! `BytesMut` split off the front of the buffer (no copy). The part shares the buffer's
//! allocation until it is dropped: its users consume it within the event that read it (the
//! connection manager writes a response body to the client connection, which takes it when
//! the event's writes are flushed; the router copies a request body), so the worker's read
//! buffer is its allocation's only owner again before the next read and is reused in place
//! (`Connection`'s write buffer copies a small part the kernel would not take; a part kept
//! longer only costs that read buffer a fresh allocation). It keeps no bytes of its own:
//! everything it has not consumed stays in the caller's buffer, so a message fed one byte at
//! a time decodes exactly as the same message fed at once.
//!
//! The chunked decoder is a state machine with one state per position in the chunk grammar
//! (hyper's layout):
//!
//! ```text
//! chunk      = Size [SizeWs] [Extension] SizeLf  Body BodyCr BodyLf
//! last-chunk = Size("0") ... SizeLf  then Trailers (a header block ending in an empty line)
//! ```
//!
//! Strictness (checked against Envoy 1.40): chunk lines must end in CRLF (a bare LF is a 400);
//! the size is hex with leading zeros allowed and must fit 64 bits; whitespace may follow the
//! size; extensions after `;` are skipped; chunk data must be followed by exactly CRLF (Envoy
//! silently skips junk there; we answer 400, see the conformance table).

use super::super::header_map::{HeaderMap, Span};
use super::error::CodecError;
use bytes::{Buf, BytesMut};

/// What the decoder produced from the buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum BodyEvent {
    /// Body bytes (chunk framing removed).
    Data(BytesMut),
    /// The trailer section of a chunked body (only when it has fields).
    Trailers(HeaderMap),
    /// The body is complete.
    End,
}

/// Position in the chunked grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChunkedState {
    /// Reading hex digits of the chunk size.
    Size,
    /// Whitespace after the size, before `;` or CR.
    SizeWs,
    /// Inside a chunk extension (`;name=value`), skipped up to CR.
    Extension,
    /// Saw the CR ending the size line; expecting LF.
    SizeLf,
    /// Inside chunk data; `remaining` bytes to go.
    Body,
    /// Chunk data done; expecting CR.
    BodyCr,
    /// Expecting the LF after the data's CR.
    BodyLf,
    /// After the last chunk: the trailer section (possibly empty) up to an empty line.
    Trailers,
    /// The body is complete.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyDecoder {
    /// `content-length`: this many bytes remain.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked {
        state: ChunkedState,
        /// Size being parsed (in `Size`), or data bytes left (in `Body`).
        remaining: u64,
        /// Whether at least one hex digit was read for the current size.
        digits: bool,
        /// In `Trailers`: how many bytes of the trailer block were already searched for its end.
        scanned: usize,
    },
    /// Until the peer closes (responses without length) or forever (tunnels): every byte is body.
    Eof,
}

impl BodyDecoder {
    pub(crate) fn chunked() -> BodyDecoder {
        BodyDecoder::Chunked {
            state: ChunkedState::Size,
            remaining: 0,
            digits: false,
            scanned: 0,
        }
    }

    /// Decodes the next event from `buf`; `Ok(None)` means more bytes are needed (everything
    /// given has been consumed or is kept for later).
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_trailer_bytes: usize,
        max_trailers: usize,
    ) -> Result<Option<BodyEvent>, CodecError> {
        match self {
            BodyDecoder::Length(0) => Ok(Some(BodyEvent::End)),
            BodyDecoder::Length(remaining) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= take as u64;
                Ok(Some(BodyEvent::Data(take_bytes(buf, take))))
            }
            BodyDecoder::Eof => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(BodyEvent::Data(take_bytes(buf, buf.len()))))
            }
            BodyDecoder::Chunked {
                state,
                remaining,
                digits,
                scanned,
            } => decode_chunked(
                state,
                remaining,
                digits,
                scanned,
                buf,
                max_trailer_bytes,
                max_trailers,
            ),
        }
    }

    /// The peer closed: is the body complete?
    pub(crate) fn on_eof(&self) -> Result<Option<BodyEvent>, CodecError> {
        match self {
            BodyDecoder::Eof => Ok(Some(BodyEvent::End)),
            BodyDecoder::Length(0)
            | BodyDecoder::Chunked {
                state: ChunkedState::Done,
                ..
            } => Ok(None),
            _ => Err(CodecError::PrematureClose),
        }
    }
}

/// The chunked arm of [`BodyDecoder::decode`], out of line so that the Content-Length path
/// (every `GET` and most bodies) stays a few dense lines.
#[inline(never)]
fn decode_chunked(
    state: &mut ChunkedState,
    remaining: &mut u64,
    digits: &mut bool,
    scanned: &mut usize,
    buf: &mut BytesMut,
    max_trailer_bytes: usize,
    max_trailers: usize,
) -> Result<Option<BodyEvent>, CodecError> {
    loop {
        // States that consume many bytes at once.
        match *state {
            ChunkedState::Body => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= take as u64;
                if *remaining == 0 {
                    *state = ChunkedState::BodyCr;
                }
                return Ok(Some(BodyEvent::Data(take_bytes(buf, take))));
            }
            ChunkedState::Trailers => {
                return decode_trailers(state, scanned, buf, max_trailer_bytes, max_trailers)
            }
            ChunkedState::Done => return Ok(Some(BodyEvent::End)),
            _ => {}
        }
        // One byte of chunk framing.
        let Some(&byte) = buf.first() else {
            return Ok(None);
        };
        buf.advance(1);
        *state = match (*state, byte) {
            // Size: hex digits; leading zeros are fine (Envoy accepts `0000...3`), the value
            // must fit 64 bits.
            (ChunkedState::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                *remaining = remaining
                    .checked_mul(16)
                    .and_then(|r| r.checked_add(digit))
                    .ok_or(CodecError::InvalidChunk)?;
                *digits = true;
                ChunkedState::Size
            }
            // Whitespace after the size (Envoy accepts `3 \r\n` and `3 ;ext`).
            (ChunkedState::Size | ChunkedState::SizeWs, b' ' | b'\t') if *digits => {
                ChunkedState::SizeWs
            }
            (ChunkedState::Size | ChunkedState::SizeWs, b';') if *digits => ChunkedState::Extension,
            (ChunkedState::Size | ChunkedState::SizeWs, b'\r') if *digits => ChunkedState::SizeLf,
            // Extensions are ignored up to the CR; a bare LF or NUL inside is an error.
            (ChunkedState::Extension, b'\r') => ChunkedState::SizeLf,
            (ChunkedState::Extension, b'\n' | 0) => return Err(CodecError::InvalidChunk),
            (ChunkedState::Extension, _) => ChunkedState::Extension,
            (ChunkedState::SizeLf, b'\n') => {
                *digits = false;
                if *remaining == 0 {
                    *scanned = 0;
                    ChunkedState::Trailers
                } else {
                    ChunkedState::Body
                }
            }
            // Chunk data must be followed by exactly CRLF.
            (ChunkedState::BodyCr, b'\r') => ChunkedState::BodyLf,
            (ChunkedState::BodyLf, b'\n') => ChunkedState::Size,
            // Anything else (junk in the size, bare LF, a missing CRLF) breaks the framing.
            _ => return Err(CodecError::InvalidChunk),
        };
    }
}

/// The trailer section: either an immediate CRLF (no trailers) or header lines ending with an
/// empty line. Kept in `buf` until complete, then parsed at once with httparse.
fn decode_trailers(
    state: &mut ChunkedState,
    scanned: &mut usize,
    buf: &mut BytesMut,
    max_trailer_bytes: usize,
    max_trailers: usize,
) -> Result<Option<BodyEvent>, CodecError> {
    match buf.first() {
        None => return Ok(None),
        Some(b'\r') => {
            if buf.len() < 2 {
                return Ok(None);
            }
            if buf[1] != b'\n' {
                return Err(CodecError::InvalidChunk);
            }
            buf.advance(2);
            *state = ChunkedState::Done;
            return Ok(Some(BodyEvent::End));
        }
        Some(_) => {}
    }
    decode_trailer_fields(state, scanned, buf, max_trailer_bytes, max_trailers)
}

/// [`decode_trailers`] for a trailer section with fields. Reached only when a chunked body ends
/// with trailers (gRPC-style; rare over HTTP/1), so it stays out of the body path.
#[cold]
fn decode_trailer_fields(
    state: &mut ChunkedState,
    scanned: &mut usize,
    buf: &mut BytesMut,
    max_trailer_bytes: usize,
    max_trailers: usize,
) -> Result<Option<BodyEvent>, CodecError> {
    let Some(end) = find_crlf_crlf(buf, *scanned) else {
        if buf.len() > max_trailer_bytes {
            return Err(CodecError::HeadersTooLarge);
        }
        *scanned = buf.len().saturating_sub(3);
        return Ok(None);
    };
    if end > max_trailer_bytes {
        return Err(CodecError::HeadersTooLarge);
    }
    let mut raw = vec![httparse::EMPTY_HEADER; max_trailers + 1];
    let spans: Vec<(Span, Span)> = match httparse::parse_headers(&buf[..end], &mut raw) {
        Ok(httparse::Status::Complete((_, fields))) => {
            if fields.len() > max_trailers {
                return Err(CodecError::TooManyHeaders);
            }
            let base = buf.as_ptr() as usize;
            fields
                .iter()
                .map(|f| {
                    let value = trim_end(f.value);
                    (
                        Span::received(f.name.as_ptr() as usize - base, f.name.len()),
                        Span::received(value.as_ptr() as usize - base, value.len()),
                    )
                })
                .collect()
        }
        Ok(httparse::Status::Partial) => return Err(CodecError::InvalidChunk),
        Err(httparse::Error::TooManyHeaders) => return Err(CodecError::TooManyHeaders),
        Err(_) => return Err(super::parse::classify_invalid(&buf[..end])),
    };
    let mut trailers = HeaderMap::for_received(spans.len());
    for (name, value) in spans {
        trailers.push_received(name, value);
    }
    trailers.copy_received(&buf[..end]);
    buf.advance(end);
    *state = ChunkedState::Done;
    Ok(Some(BodyEvent::Trailers(trailers)))
}

/// The first `n` bytes of `buf`, split off it (no copy): they share `buf`'s allocation until
/// dropped (see the module docs).
fn take_bytes(buf: &mut BytesMut, n: usize) -> BytesMut {
    buf.split_to(n)
}

/// Trims trailing optional whitespace (RFC 9110 §5.5: OWS is not part of the value).
pub(crate) fn trim_end(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &value[..end]
}

/// Offset just past the first CRLF CRLF at or after `from`.
fn find_crlf_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 60 * 1024;

    /// Feeds `input` in pieces of `step` bytes and collects (data, trailers, ended).
    fn run(
        mut decoder: BodyDecoder,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, bool, usize), CodecError> {
        let mut buf = BytesMut::new();
        let (mut data, mut trailers, mut ended) = (Vec::new(), None, false);
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while !ended {
                match decoder.decode(&mut buf, MAX, 100)? {
                    None => break,
                    Some(BodyEvent::Data(bytes)) => data.extend_from_slice(&bytes),
                    Some(BodyEvent::Trailers(map)) => trailers = Some(map),
                    Some(BodyEvent::End) => ended = true,
                }
            }
        }
        Ok((data, trailers, ended, buf.len()))
    }

    fn every_split(
        decoder: BodyDecoder,
        input: &[u8],
    ) -> Result<(Vec<u8>, bool, usize), CodecError> {
        let whole = run(decoder, input, input.len())?;
        for step in 1..input.len() {
            assert_eq!(run(decoder, input, step), Ok(whole.clone()), "step {step}");
        }
        Ok((whole.0, whole.2, whole.3))
    }

    /// Body bytes leave without a copy: the part shares the read buffer's allocation, and once
    /// it is dropped the buffer reuses that allocation from its start (no allocation per read).
    #[test]
    fn body_bytes_are_split_off_the_read_buffer_not_copied() {
        let mut buf = BytesMut::with_capacity(1024);
        let start = buf.as_ptr();
        buf.extend_from_slice(b"hello, world");
        let mut decoder = BodyDecoder::Length(5);
        let Ok(Some(BodyEvent::Data(body))) = decoder.decode(&mut buf, MAX, 100) else {
            panic!("no body");
        };
        assert_eq!((&body[..], &buf[..]), (&b"hello"[..], &b", world"[..]));
        assert_eq!(body.as_ptr(), start, "the body is the buffer's own bytes");
        drop(body);
        buf.clear();
        // More than is left behind the split, no more than the allocation.
        buf.reserve(1024 - 2);
        assert_eq!(
            buf.as_ptr(),
            start,
            "the allocation is reused from its start"
        );
    }

    // === Length ===

    #[test]
    fn length_stops_at_the_announced_size_and_leaves_the_rest() {
        let got = every_split(BodyDecoder::Length(3), b"abcGET").unwrap();
        assert_eq!(got, (b"abc".to_vec(), true, 3));
    }

    #[test]
    fn length_zero_ends_at_once() {
        assert_eq!(
            every_split(BodyDecoder::Length(0), b"x").unwrap(),
            (vec![], true, 1)
        );
    }

    #[test]
    fn length_eof_before_the_end_is_premature() {
        assert_eq!(
            BodyDecoder::Length(2).on_eof(),
            Err(CodecError::PrematureClose)
        );
    }

    // === Eof ===

    #[test]
    fn eof_body_takes_everything_and_ends_on_close() {
        let got = every_split(BodyDecoder::Eof, b"all of it").unwrap();
        assert_eq!(got, (b"all of it".to_vec(), false, 0));
        assert_eq!(BodyDecoder::Eof.on_eof(), Ok(Some(BodyEvent::End)));
    }

    // === Chunked: Size / SizeWs / Extension / SizeLf ===

    #[test]
    fn chunked_basic_body_and_following_bytes_kept() {
        let got = every_split(BodyDecoder::chunked(), b"3\r\nabc\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(got, (b"abc".to_vec(), true, 4));
    }

    #[test]
    fn chunked_size_is_hex_with_leading_zeros() {
        let got = every_split(BodyDecoder::chunked(), b"000A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(got.0, b"0123456789");
    }

    #[test]
    fn chunked_size_whitespace_and_extensions_are_skipped() {
        let input = b"3 ;a=b\r\nabc\r\n2;x\r\nde\r\n1 \r\nf\r\n0;last\r\n\r\n";
        assert_eq!(
            every_split(BodyDecoder::chunked(), input).unwrap().0,
            b"abcdef"
        );
    }

    #[test]
    fn chunked_size_overflow_is_rejected() {
        let err = run(BodyDecoder::chunked(), b"fffffffffffffffff1\r\n", 1);
        assert_eq!(err, Err(CodecError::InvalidChunk));
        // 16 hex digits still fit.
        assert!(run(BodyDecoder::chunked(), b"ffffffffffffffff\r\n", 1).is_ok());
    }

    #[test]
    fn chunked_size_junk_is_rejected() {
        for input in [
            &b"zz\r\n"[..],
            b"0x3\r\n",
            b"\r\n",
            b" 3\r\n",
            b";x\r\n",
            b"-1\r\n",
        ] {
            assert_eq!(
                run(BodyDecoder::chunked(), input, 1),
                Err(CodecError::InvalidChunk),
                "{input:?}"
            );
        }
    }

    #[test]
    fn chunked_size_line_needs_crlf_not_bare_lf() {
        assert_eq!(
            run(BodyDecoder::chunked(), b"3\nabc\n0\n\n", 1),
            Err(CodecError::InvalidChunk)
        );
        assert_eq!(
            run(BodyDecoder::chunked(), b"3\rabc", 1),
            Err(CodecError::InvalidChunk)
        );
    }

    // === Chunked: Body / BodyCr / BodyLf ===

    #[test]
    fn chunked_data_must_end_with_crlf() {
        for input in [
            &b"3\r\nabcX\r\n0\r\n\r\n"[..],
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\rX",
        ] {
            assert_eq!(
                run(BodyDecoder::chunked(), input, 1),
                Err(CodecError::InvalidChunk),
                "{input:?}"
            );
        }
    }

    #[test]
    fn chunked_eof_inside_is_premature_and_after_done_is_fine() {
        let mut decoder = BodyDecoder::chunked();
        let mut buf = BytesMut::from(&b"3\r\nab"[..]);
        assert!(matches!(
            decoder.decode(&mut buf, MAX, 100),
            Ok(Some(BodyEvent::Data(_)))
        ));
        assert_eq!(decoder.on_eof(), Err(CodecError::PrematureClose));
        let mut buf = BytesMut::from(&b"c\r\n0\r\n\r\n"[..]);
        while decoder.decode(&mut buf, MAX, 100).unwrap() != Some(BodyEvent::End) {}
        assert_eq!(decoder.on_eof(), Ok(None));
    }

    // === Chunked: Trailers ===

    #[test]
    fn chunked_trailers_are_parsed_and_lower_cased() {
        let input = b"1\r\na\r\n0\r\nX-Checksum: abc \r\nX-Other: 1\r\n\r\nNEXT";
        let whole = run(BodyDecoder::chunked(), input, input.len()).unwrap();
        for step in 1..input.len() {
            assert_eq!(run(BodyDecoder::chunked(), input, step).unwrap(), whole);
        }
        let trailers = whole.1.unwrap();
        assert_eq!(trailers.get("x-checksum"), Some(&b"abc"[..]));
        assert_eq!(trailers.iter().next().unwrap().0, "x-checksum");
        assert_eq!(trailers.len(), 2);
        assert_eq!(whole.3, 4);
    }

    #[test]
    fn chunked_invalid_trailers_are_rejected() {
        let input = b"0\r\nX-Bad\0: 1\r\n\r\n";
        assert_eq!(
            run(BodyDecoder::chunked(), input, 1),
            Err(CodecError::InvalidCharacters)
        );
        let input = b"0\r\n\rX";
        assert_eq!(
            run(BodyDecoder::chunked(), input, 1),
            Err(CodecError::InvalidChunk)
        );
    }

    #[test]
    fn chunked_trailers_over_the_limit_are_rejected() {
        let mut decoder = BodyDecoder::chunked();
        let mut buf = BytesMut::from(&b"0\r\nx: "[..]);
        buf.extend_from_slice(&[b'a'; 100]);
        assert_eq!(
            decoder.decode(&mut buf, 50, 100),
            Err(CodecError::HeadersTooLarge)
        );
    }
}
