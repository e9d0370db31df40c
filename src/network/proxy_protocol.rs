//! The PROXY protocol header parser behind `envoy.filters.listener.proxy_protocol` (Envoy's
//! `ListenerFilters::ProxyProtocol::Filter::readProxyHeader` / `parseV1Header` / `parseV2Header`).
//!
//! A load balancer in front of the proxy (HAProxy, an AWS NLB, another Envoy) prepends one header
//! to the TCP stream that names the original client and destination. This module owns only the
//! byte-level parsing; it is sans-IO: the listener filter (`proxy_protocol_filter.rs`) peeks the
//! socket's first bytes, hands them all to [`parse`] on every readable event, and once a header
//! is found drains exactly [`ProxyProtocolHeader::header_len`] bytes — the bytes after the
//! header belong to the connection and are never consumed here.
//!
//! The two wire formats (haproxy's `proxy-protocol.txt`):
//! - v1, text: `PROXY TCP4|TCP6 <src ip> <dst ip> <src port> <dst port>\r\n`, or
//!   `PROXY UNKNOWN<anything>\r\n`; at most 107 bytes including the CRLF.
//! - v2, binary: the 12-byte signature `\r\n\r\n\0\r\nQUIT\n`, a version/command byte (`0x21`
//!   PROXY, `0x20` LOCAL), a family/protocol byte, a 16-bit big-endian length, then the
//!   addresses (12 bytes for AF_INET, 36 for AF_INET6) and TLVs, which we skip.
//!
//! Envoy's observable choices, reproduced here (checked against Envoy 1.40):
//! - Before 16 bytes have arrived, a CRLF makes the bytes a v1 candidate, so `GARBAGE\r\n` is a
//!   v1 error; with 16 or more bytes that start with neither signature the header is "not
//!   found" (a different stat: `proxy_proto.not_found_disallowed`).
//! - v1 ports go through an integer parse that accepts leading zeros and a `+`; v1 addresses
//!   must be canonical dotted quads / IPv6 text of the declared family; a trailing space before
//!   the CRLF is tolerated, an extra field is not.
//! - v2 `PROXY` with a family other than AF_INET/AF_INET6 (AF_UNSPEC, AF_UNIX) is an error; the
//!   LOCAL command carries no addresses (the connection keeps the socket's own). Lengths up to
//!   65535 are accepted (TLVs are skipped).
//! - With `allow_requests_without_proxy_protocol`, bytes that cannot be the start of the
//!   signature of an allowed version are passed through untouched ([`Parsed::NotPresent`]).
//! - A well-formed header of a disallowed version is refused (when requests without a header
//!   are not allowed) and counted both as found and as disallowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\x00\r\nQUIT\n";
/// The v1 signature (the `PROXY` keyword and its space).
pub const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the spec's 107 bytes).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header: signature, version/command, family, length.
pub const V2_HEADER_LEN: usize = 16;
/// The longest v2 header: the fixed part and a 16-bit length of addresses and TLVs.
pub const V2_MAX_LEN: usize = V2_HEADER_LEN + u16::MAX as usize;

const V2_ADDR_LEN_INET: usize = 12;
const V2_ADDR_LEN_INET6: usize = 36;

/// The protocol versions, as the config's `disallowed_versions` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

impl fmt::Display for ProxyProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyProtocolVersion::V1 => "v1",
            ProxyProtocolVersion::V2 => "v2",
        })
    }
}

/// A complete, valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyProtocolHeader {
    pub version: ProxyProtocolVersion,
    /// `(source, destination)`: the original client and the address it connected to. `None` for
    /// v1 `UNKNOWN` and the v2 LOCAL command: the connection keeps the socket's own addresses.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// How many bytes the header occupies at the start of the stream; the caller drains exactly
    /// these and leaves the rest for the connection.
    pub header_len: usize,
}

/// What [`parse`] found in a complete prefix of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A header; drain `header_len` bytes.
    Header(ProxyProtocolHeader),
    /// The stream does not start with a PROXY header and the config allows that: leave every
    /// byte in place (Envoy's `not_found_allowed`).
    NotPresent,
}

/// Why a stream was refused. Each variant maps to the stat Envoy bumps for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocolError {
    /// Neither signature, and requests without a header are not allowed
    /// (`proxy_proto.not_found_disallowed`).
    NotFound,
    /// A malformed header of this version (`proxy_proto.versions.<v>.error`).
    Malformed(ProxyProtocolVersion, &'static str),
    /// A well-formed header of a version the config disallows (Envoy counts it as
    /// `proxy_proto.versions.<v>.found` and `.disallowed`, but not as a
    /// `downstream_cx_proxy_proto_error`).
    Disallowed(ProxyProtocolVersion),
}

impl fmt::Display for ProxyProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyProtocolError::NotFound => f.write_str("no PROXY protocol header"),
            ProxyProtocolError::Malformed(v, why) => {
                write!(f, "malformed PROXY protocol {v} header: {why}")
            }
            ProxyProtocolError::Disallowed(v) => {
                write!(f, "PROXY protocol {v} header is disallowed by config")
            }
        }
    }
}

impl std::error::Error for ProxyProtocolError {}

/// What the parser needs from the filter's config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// `allow_requests_without_proxy_protocol`.
    pub allow_requests_without_proxy_protocol: bool,
    /// `disallowed_versions` containing V1.
    pub v1_disallowed: bool,
    /// `disallowed_versions` containing V2.
    pub v2_disallowed: bool,
}

impl ParseOptions {
    fn disallows(&self, version: ProxyProtocolVersion) -> bool {
        match version {
            ProxyProtocolVersion::V1 => self.v1_disallowed,
            ProxyProtocolVersion::V2 => self.v2_disallowed,
        }
    }
}

/// How many bytes the header at the start of `buf` may still need to be decided: the v2 length
/// once the v2 fixed part is in, else the v1 limit (which also covers the v2 fixed part). A
/// listener filter peeks this many bytes.
pub fn max_header_len(buf: &[u8]) -> usize {
    if buf.len() >= V2_HEADER_LEN && buf.starts_with(&V2_SIGNATURE) {
        V2_HEADER_LEN + u16::from_be_bytes([buf[14], buf[15]]) as usize
    } else {
        V1_MAX_LEN
    }
}

/// Parses the first bytes of a stream (everything received so far, from byte 0).
///
/// `Ok(None)`: not enough bytes yet, call again with more. `Ok(Some(_))`: decided. `Err`: the
/// connection must be closed. Calling again with a longer prefix of the same stream gives the
/// same answer once one was given, so the caller may simply re-parse its peek buffer.
pub fn parse(buf: &[u8], options: &ParseOptions) -> Result<Option<Parsed>, ProxyProtocolError> {
    // Only the signatures of allowed versions count here: with V1 disallowed, a v1 header is
    // just payload (as Envoy passes it through).
    if options.allow_requests_without_proxy_protocol
        && (options.v2_disallowed || !is_prefix_of(buf, &V2_SIGNATURE))
        && (options.v1_disallowed || !is_prefix_of(buf, V1_SIGNATURE))
    {
        return Ok(Some(Parsed::NotPresent));
    }
    let parsed = if buf.len() >= V2_SIGNATURE.len() && buf.starts_with(&V2_SIGNATURE) {
        parse_v2(buf)?
    } else if is_prefix_of(buf, &V2_SIGNATURE) {
        // Still possibly v2 (or, on a CRLF, a v1 candidate as Envoy treats it; the v2 signature
        // begins with CRLF, so wait for the signature to be decided).
        return Ok(None);
    } else if buf.len() >= V2_HEADER_LEN && !buf.starts_with(V1_SIGNATURE) {
        return Err(ProxyProtocolError::NotFound);
    } else {
        parse_v1(buf)?
    };
    match parsed {
        Some(header) if options.disallows(header.version) => {
            Err(ProxyProtocolError::Disallowed(header.version))
        }
        Some(header) => Ok(Some(Parsed::Header(header))),
        None => Ok(None),
    }
}

/// True when `buf` could be the start of `signature` (or contains all of it).
fn is_prefix_of(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn v1_error(why: &'static str) -> ProxyProtocolError {
    ProxyProtocolError::Malformed(ProxyProtocolVersion::V1, why)
}

fn v2_error(why: &'static str) -> ProxyProtocolError {
    ProxyProtocolError::Malformed(ProxyProtocolVersion::V2, why)
}

/// v1: find the CRLF within the first 107 bytes, then check the line.
fn parse_v1(buf: &[u8]) -> Result<Option<ProxyProtocolHeader>, ProxyProtocolError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(v1_error("no CRLF within 107 bytes"));
        }
        return Ok(None);
    };
    let header_len = cr + 2;
    let line = std::str::from_utf8(&buf[..cr]).map_err(|_| v1_error("not ASCII"))?;
    let rest = line
        .strip_prefix("PROXY ")
        .ok_or_else(|| v1_error("does not start with 'PROXY '"))?;
    if rest.starts_with("UNKNOWN") {
        // "the receiver must ignore anything presented before the CRLF is found"
        return Ok(Some(ProxyProtocolHeader {
            version: ProxyProtocolVersion::V1,
            addresses: None,
            header_len,
        }));
    }
    let mut fields = [""; 5];
    let mut count = 0;
    // A trailing space before the CRLF is tolerated (as Envoy does); empty fields elsewhere are
    // not, so `PROXY  TCP4` is an error.
    for field in rest.trim_end_matches(' ').split(' ') {
        if count == fields.len() {
            return Err(v1_error("too many fields"));
        }
        fields[count] = field;
        count += 1;
    }
    if count != fields.len() {
        return Err(v1_error("too few fields"));
    }
    let [family, src, dst, src_port, dst_port] = fields;
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match family {
        "TCP4" => (
            src.parse::<Ipv4Addr>()
                .map_err(|_| v1_error("bad IPv4 source address"))?
                .into(),
            dst.parse::<Ipv4Addr>()
                .map_err(|_| v1_error("bad IPv4 destination address"))?
                .into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>()
                .map_err(|_| v1_error("bad IPv6 source address"))?
                .into(),
            dst.parse::<Ipv6Addr>()
                .map_err(|_| v1_error("bad IPv6 destination address"))?
                .into(),
        ),
        _ => return Err(v1_error("unknown protocol family")),
    };
    let src_port: u16 = src_port.parse().map_err(|_| v1_error("bad source port"))?;
    let dst_port: u16 = dst_port
        .parse()
        .map_err(|_| v1_error("bad destination port"))?;
    Ok(Some(ProxyProtocolHeader {
        version: ProxyProtocolVersion::V1,
        addresses: Some((
            SocketAddr::new(src_ip, src_port),
            SocketAddr::new(dst_ip, dst_port),
        )),
        header_len,
    }))
}

/// v2: the signature is already matched; check the fixed part, then wait for the whole body.
fn parse_v2(buf: &[u8]) -> Result<Option<ProxyProtocolHeader>, ProxyProtocolError> {
    if buf.len() < V2_HEADER_LEN {
        return Ok(None);
    }
    let version_command = buf[12];
    let family_protocol = buf[13];
    let body_len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if version_command >> 4 != 2 {
        return Err(v2_error("unsupported version"));
    }
    let local = match version_command & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => return Err(v2_error("unsupported command")),
    };
    // Validate what the fixed part already tells before waiting for the body, so a bad header
    // is refused without buffering up to 64 KiB of it.
    let addr_len = if local {
        0
    } else {
        match family_protocol {
            // AF_INET or AF_INET6 with STREAM (1) or DGRAM (2), as Envoy accepts.
            0x11 | 0x12 => V2_ADDR_LEN_INET,
            0x21 | 0x22 => V2_ADDR_LEN_INET6,
            _ => return Err(v2_error("unsupported address family")),
        }
    };
    if body_len < addr_len {
        return Err(v2_error("length too short for the address family"));
    }
    let header_len = V2_HEADER_LEN + body_len;
    if buf.len() < header_len {
        return Ok(None);
    }
    let body = &buf[V2_HEADER_LEN..header_len];
    let addresses = match addr_len {
        0 => None,
        V2_ADDR_LEN_INET => {
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let src_port = u16::from_be_bytes([body[8], body[9]]);
            let dst_port = u16::from_be_bytes([body[10], body[11]]);
            Some((
                SocketAddr::new(src.into(), src_port),
                SocketAddr::new(dst.into(), dst_port),
            ))
        }
        _ => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&body[0..16]);
            dst.copy_from_slice(&body[16..32]);
            let src_port = u16::from_be_bytes([body[32], body[33]]);
            let dst_port = u16::from_be_bytes([body[34], body[35]]);
            Some((
                SocketAddr::new(Ipv6Addr::from(src).into(), src_port),
                SocketAddr::new(Ipv6Addr::from(dst).into(), dst_port),
            ))
        }
    };
    // The TLVs after the addresses (body[addr_len..]) are skipped: pass_through_tlvs is not
    // supported, and nothing here needs them.
    Ok(Some(ProxyProtocolHeader {
        version: ProxyProtocolVersion::V2,
        addresses,
        header_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: ParseOptions = ParseOptions {
        allow_requests_without_proxy_protocol: false,
        v1_disallowed: false,
        v2_disallowed: false,
    };

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(buf: &[u8]) -> ProxyProtocolHeader {
        match parse(buf, &STRICT) {
            Ok(Some(Parsed::Header(h))) => h,
            other => panic!("expected a header, got {other:?}"),
        }
    }

    fn malformed(buf: &[u8], version: ProxyProtocolVersion) {
        match parse(buf, &STRICT) {
            Err(ProxyProtocolError::Malformed(v, _)) if v == version => {}
            other => panic!("expected a {version} error for {buf:?}, got {other:?}"),
        }
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    const INET_BODY: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];

    /// Every strict prefix of a valid header needs more bytes; the whole gives the header.
    fn assert_incremental(full: &[u8], header_len: usize) {
        for n in 0..header_len {
            assert_eq!(parse(&full[..n], &STRICT), Ok(None), "prefix of {n} bytes");
        }
        assert_eq!(header(full).header_len, header_len);
    }

    // === v1 ===

    #[test]
    fn v1_tcp4() {
        let h = header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello");
        assert_eq!(h.version, ProxyProtocolVersion::V1);
        assert_eq!(h.addresses, Some((sa("1.2.3.4:1"), sa("5.6.7.8:2"))));
        assert_eq!(h.header_len, 32);
    }

    #[test]
    fn v1_tcp6() {
        let h = header(b"PROXY TCP6 ::1 2001:db8::2 65535 80\r\n");
        assert_eq!(
            h.addresses,
            Some((sa("[::1]:65535"), sa("[2001:db8::2]:80")))
        );
    }

    #[test]
    fn v1_unknown_keeps_socket_addresses() {
        for line in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN ffff garbage\r\n"] {
            let h = header(line);
            assert_eq!(h.addresses, None);
            assert_eq!(h.header_len, line.len());
        }
    }

    #[test]
    fn v1_byte_by_byte() {
        let full = b"PROXY TCP4 10.0.0.1 10.0.0.2 4000 80\r\nGET / HTTP/1.1\r\n";
        assert_incremental(full, 38);
    }

    #[test]
    fn v1_tolerates_what_envoy_tolerates() {
        // Trailing space, leading zeros and '+' in ports, ports 0.
        assert!(header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n")
            .addresses
            .is_some());
        assert!(header(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 +2\r\n")
            .addresses
            .is_some());
        assert!(header(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n")
            .addresses
            .is_some());
    }

    #[test]
    fn v1_malformed() {
        use ProxyProtocolVersion::V1;
        malformed(b"GARBAGE\r\n", V1);
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", V1);
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 extra\r\n", V1);
        malformed(b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", V1);
        malformed(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", V1);
        malformed(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", V1);
        malformed(b"PROXY TCP4 ::1 ::2 1 2\r\n", V1);
        malformed(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", V1);
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n", V1);
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", V1);
        malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx\r\n", V1);
        malformed(b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n", V1);
    }

    #[test]
    fn v1_line_limit() {
        // 107 bytes with the CRLF is the longest legal line.
        let mut ok = b"PROXY UNKNOWN ".to_vec();
        ok.resize(V1_MAX_LEN - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(header(&ok).header_len, V1_MAX_LEN);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN - 1, b'x');
        assert_eq!(parse(&long, &STRICT), Ok(None));
        long.extend_from_slice(b"x\r\n");
        malformed(&long, ProxyProtocolVersion::V1);
        // A bare LF is not a line end: Envoy keeps waiting, then gives up at the limit.
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nx", &STRICT),
            Ok(None)
        );
    }

    // === v2 ===

    #[test]
    fn v2_proxy_inet() {
        let mut buf = v2(0x21, 0x11, &INET_BODY);
        buf.extend_from_slice(b"hello");
        let h = header(&buf);
        assert_eq!(h.version, ProxyProtocolVersion::V2);
        assert_eq!(h.addresses, Some((sa("1.2.3.4:1"), sa("5.6.7.8:2"))));
        assert_eq!(h.header_len, 28);
        assert_incremental(&buf, 28);
    }

    #[test]
    fn v2_proxy_inet6_and_udp() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x1f, 0x90, 0x00, 0x50]);
        let h = header(&v2(0x21, 0x21, &body));
        assert_eq!(
            h.addresses,
            Some((sa("[2001:db8::1]:8080"), sa("[::1]:80")))
        );
        assert!(header(&v2(0x21, 0x12, &INET_BODY)).addresses.is_some());
    }

    #[test]
    fn v2_local_has_no_addresses() {
        assert_eq!(header(&v2(0x20, 0x00, &[])).addresses, None);
        // LOCAL ignores whatever family and body it carries.
        let h = header(&v2(0x20, 0x11, &INET_BODY));
        assert_eq!((h.addresses, h.header_len), (None, 28));
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut body = INET_BODY.to_vec();
        let tlv_len = 60_000u16;
        body.push(0x05);
        body.extend_from_slice(&tlv_len.to_be_bytes());
        body.resize(body.len() + tlv_len as usize, b'z');
        let mut buf = v2(0x21, 0x11, &body);
        let header_len = buf.len();
        buf.extend_from_slice(b"payload");
        assert_eq!(parse(&buf[..header_len - 1], &STRICT), Ok(None));
        let h = header(&buf);
        assert_eq!(h.header_len, header_len);
        assert_eq!(h.addresses, Some((sa("1.2.3.4:1"), sa("5.6.7.8:2"))));
    }

    #[test]
    fn max_header_len_grows_with_the_v2_length() {
        assert_eq!(max_header_len(b""), V1_MAX_LEN);
        assert_eq!(max_header_len(b"PROXY TCP4"), V1_MAX_LEN);
        let buf = v2(0x21, 0x11, &[0; 300]);
        assert_eq!(max_header_len(&buf[..15]), V1_MAX_LEN);
        assert_eq!(max_header_len(&buf[..16]), 316);
    }

    #[test]
    fn v2_malformed() {
        use ProxyProtocolVersion::V2;
        malformed(&v2(0x11, 0x11, &INET_BODY), V2); // version 1 in a v2 header
        malformed(&v2(0x22, 0x11, &INET_BODY), V2); // command 2
        malformed(&v2(0x21, 0x00, b"abc"), V2); // PROXY with AF_UNSPEC
        malformed(&v2(0x21, 0x31, &[0; 216]), V2); // AF_UNIX
        malformed(&v2(0x21, 0x21, &INET_BODY), V2); // AF_INET6 with an IPv4-sized body
        malformed(&v2(0x21, 0x11, &INET_BODY[..8]), V2);
        // Decided from the fixed part alone, before the body arrives.
        malformed(&v2(0x21, 0x31, &[])[..V2_HEADER_LEN], V2);
    }

    // === not a PROXY header ===

    #[test]
    fn not_found_once_sixteen_bytes_match_neither_signature() {
        assert_eq!(parse(&[b'A'; 15], &STRICT), Ok(None));
        assert_eq!(
            parse(&[b'A'; 16], &STRICT),
            Err(ProxyProtocolError::NotFound)
        );
        assert_eq!(
            parse(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &STRICT),
            Err(ProxyProtocolError::NotFound)
        );
    }

    #[test]
    fn allowed_without_header_passes_through_at_the_first_mismatch() {
        let allow = ParseOptions {
            allow_requests_without_proxy_protocol: true,
            ..STRICT
        };
        assert_eq!(parse(b"G", &allow), Ok(Some(Parsed::NotPresent)));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n", &allow),
            Ok(Some(Parsed::NotPresent))
        );
        assert_eq!(parse(b"PROX", &allow), Ok(None));
        assert_eq!(parse(b"\r\n\r\n", &allow), Ok(None));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &allow),
            Ok(Some(Parsed::Header(_)))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", &allow),
            Err(ProxyProtocolError::Malformed(ProxyProtocolVersion::V1, _))
        ));
    }

    #[test]
    fn disallowed_versions() {
        let no_v1 = ParseOptions {
            v1_disallowed: true,
            ..STRICT
        };
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", &no_v1),
            Err(ProxyProtocolError::Disallowed(ProxyProtocolVersion::V1))
        );
        assert!(matches!(
            parse(&v2(0x20, 0, &[]), &no_v1),
            Ok(Some(Parsed::Header(_)))
        ));
        // Allowed without a header: a disallowed version's header is just payload.
        let allow_no_v1 = ParseOptions {
            allow_requests_without_proxy_protocol: true,
            ..no_v1
        };
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", &allow_no_v1),
            Ok(Some(Parsed::NotPresent))
        );
        let no_v2 = ParseOptions {
            v2_disallowed: true,
            ..STRICT
        };
        assert_eq!(
            parse(&v2(0x20, 0, &[]), &no_v2),
            Err(ProxyProtocolError::Disallowed(ProxyProtocolVersion::V2))
        );
    }

    #[test]
    fn no_panic_on_any_short_input() {
        // Every 1- and 2-byte input, and each prefix of a v2 header with every family byte.
        for a in 0..=255u8 {
            let _ = parse(&[a], &STRICT);
            for b in 0..=255u8 {
                let _ = parse(&[a, b], &STRICT);
            }
            let buf = v2(0x21, a, &[a; 40]);
            for n in 0..buf.len() {
                let _ = parse(&buf[..n], &STRICT);
            }
        }
    }
}
