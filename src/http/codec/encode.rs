//! Serialization: message heads and body framing into the connection's output buffer.
//!
//! Called by `ServerCodec::encode_*` (responses) and `ClientCodec::encode_*` (requests). Writes
//! go into a caller-owned `BytesMut` that the connection reuses, so encoding does not allocate
//! once that buffer has grown to its working size. Header names are written as stored
//! (lower-case, as Envoy forwards them); the reason phrase is Envoy's for the status.

use super::super::decimal::Decimal;
use super::super::header_map::HeaderMap;
use super::super::inline_header::InlineHeader;
use super::head::{reason_phrase, status_line, Method, RequestHead};
use bytes::{BufMut, BytesMut};

/// How the body being written is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyEncoder {
    /// `content-length` was sent: body bytes go out as they are.
    Length,
    /// `transfer-encoding: chunked` was sent by us: each write is one chunk.
    Chunked,
    /// Close-delimited (HTTP/1.0 peer) or tunnel: bytes go out as they are.
    Raw,
    /// No body may be sent (response to HEAD, 204, 304): body bytes are dropped.
    Discard,
}

impl BodyEncoder {
    /// Frames `data` into `out`.
    pub(crate) fn data(self, data: &[u8], out: &mut BytesMut) {
        match self {
            BodyEncoder::Chunked if !data.is_empty() => {
                put_hex(data.len() as u64, out);
                out.put_slice(b"\r\n");
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            BodyEncoder::Length | BodyEncoder::Raw => out.put_slice(data),
            BodyEncoder::Chunked | BodyEncoder::Discard => {}
        }
    }

    /// Ends the body, with trailers when chunked.
    pub(crate) fn end(self, trailers: Option<&HeaderMap>, out: &mut BytesMut) {
        if self == BodyEncoder::Chunked {
            out.put_slice(b"0\r\n");
            if let Some(trailers) = trailers {
                let _ = put_fields(trailers, out);
            }
            out.put_slice(b"\r\n");
        }
    }
}

/// What the framing decisions need to know about the fields just written (collected on the
/// way, so the encoders do not search the map again).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WrittenFields {
    pub content_length: bool,
    pub connection: bool,
    /// A `connection` field lists the `close` option.
    pub connection_close: bool,
}

/// `name: value\r\n` for every entry (plus room for the framing lines the caller adds).
pub(crate) fn put_fields(headers: &HeaderMap, out: &mut BytesMut) -> WrittenFields {
    // One reservation and one fill for all the lines, then each line copied into its place,
    // names and values by a few word moves (`copy_short`): four appends per field, each with its
    // capacity check and a `memcpy` call, cost about twice as much.
    let start = out.len();
    let len = headers.encoded_len();
    out.reserve(len + 64);
    out.resize(start + len, 0);
    let mut lines = &mut out[start..];
    let mut written = WrittenFields::default();
    for (inline, name, value) in headers.iter_tagged() {
        // Stored names are lower-case and tagged when they are inline ones.
        match inline {
            Some(InlineHeader::ContentLength) => written.content_length = true,
            Some(InlineHeader::Connection) => {
                written.connection = true;
                written.connection_close |= value
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            _ => {}
        }
        let (line, rest) = std::mem::take(&mut lines).split_at_mut(name.len() + value.len() + 4);
        let (name_part, tail) = line.split_at_mut(name.len());
        copy_short(name_part, name);
        let (separator, tail) = tail.split_at_mut(2);
        separator.copy_from_slice(b": ");
        let (value_part, end) = tail.split_at_mut(value.len());
        copy_short(value_part, value);
        end.copy_from_slice(b"\r\n");
        lines = rest;
    }
    written
}

/// `dst.copy_from_slice(src)` without a call to `memcpy` for the short names and values of a
/// head (most are under 32 bytes): two overlapping moves of 16, 8 or 4 bytes, or byte by byte
/// below 4. Longer slices go to `copy_from_slice`.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if n != dst.len() || n > 32 {
        dst.copy_from_slice(src);
    } else if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// `HTTP/1.1 200 OK\r\n`.
pub(crate) fn put_status_line(status: u16, out: &mut BytesMut) {
    if let Some(line) = status_line(status) {
        out.put_slice(line.as_bytes());
        return;
    }
    out.reserve(48);
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(u64::from(status), out);
    out.put_u8(b' ');
    out.put_slice(reason_phrase(status).as_bytes());
    out.put_slice(b"\r\n");
}

/// `GET /path HTTP/1.1\r\nhost: authority\r\n` (CONNECT uses the authority as its target).
pub(crate) fn put_request_line_and_host(head: &RequestHead, out: &mut BytesMut) {
    // One reservation for the whole head (fields and framing included).
    let (path, authority) = (head.path_bytes(), head.authority_bytes());
    out.reserve(path.len() + 2 * authority.len() + head.headers.encoded_len() + 96);
    out.put_slice(head.method.as_str().as_bytes());
    out.put_u8(b' ');
    if head.method == Method::Connect {
        out.put_slice(authority);
    } else {
        out.put_slice(path);
    }
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(authority);
    out.put_slice(b"\r\n");
}

pub(crate) fn put_decimal(n: u64, out: &mut BytesMut) {
    out.put_slice(Decimal::new(n).as_bytes());
}

fn put_hex(mut n: u64, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_copies_copy_every_length() {
        for n in 0..70 {
            let src: Vec<u8> = (0..n as u8)
                .map(|b| b.wrapping_mul(7).wrapping_add(1))
                .collect();
            let mut dst = vec![0u8; n];
            copy_short(&mut dst, &src);
            assert_eq!(dst, src, "{n}");
        }
    }

    #[test]
    fn numbers() {
        let mut out = BytesMut::new();
        put_decimal(0, &mut out);
        out.put_u8(b' ');
        put_decimal(u64::MAX, &mut out);
        out.put_u8(b' ');
        put_hex(0x1f40, &mut out);
        assert_eq!(&out[..], b"0 18446744073709551615 1f40");
    }

    #[test]
    fn chunked_body_framing() {
        let mut out = BytesMut::new();
        BodyEncoder::Chunked.data(b"hello", &mut out);
        BodyEncoder::Chunked.data(b"", &mut out);
        let trailers: HeaderMap = [("x-sum", "1")].into_iter().collect();
        BodyEncoder::Chunked.end(Some(&trailers), &mut out);
        assert_eq!(&out[..], b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n");
    }

    #[test]
    fn discard_and_raw() {
        let mut out = BytesMut::new();
        BodyEncoder::Discard.data(b"dropped", &mut out);
        BodyEncoder::Raw.data(b"as is", &mut out);
        BodyEncoder::Raw.end(None, &mut out);
        assert_eq!(&out[..], b"as is");
    }

    #[test]
    fn status_line_uses_envoys_reason_phrase() {
        let mut out = BytesMut::new();
        put_status_line(431, &mut out);
        put_status_line(599, &mut out);
        put_status_line(200, &mut out);
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\nHTTP/1.1 599 Unknown\r\n\
               HTTP/1.1 200 OK\r\n"[..]
        );
    }
}
