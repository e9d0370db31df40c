//! `RequestId`: a stream's `x-request-id`, kept inline (Envoy's `UUIDRequestIDExtension` value
//! as the stream sees it), and `uuid_v4`, the UUID version 4 Envoy generates for it.
//!
//! With `generate_request_id: true` (Envoy's default) every request gets one, so neither the
//! generation nor keeping it for the response (`always_set_request_id_in_response`) may
//! allocate: the UUID is formatted on the stack and the stream keeps a copy of at most
//! [`INLINE`] bytes inline. A longer client-supplied id (kept when the request is not an edge
//! request) is the one case that takes a heap block.
//!
//! Made by `conn_manager_utility::mutate_request_headers`; kept by the connection manager's
//! `ActiveStream` and read by `mutate_response_headers`.

use std::fmt;

/// Ids up to this many bytes are kept inline (a UUID is 36; tracing systems' ids fit too).
pub const INLINE: usize = 64;

/// The `x-request-id` a request left with.
#[derive(Clone, PartialEq, Eq)]
pub enum RequestId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Long(Box<str>),
}

impl RequestId {
    /// A copy of `id` (inline unless longer than [`INLINE`] bytes).
    pub fn new(id: &str) -> RequestId {
        if id.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            RequestId::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            RequestId::Long(id.into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Only a whole `&str` is ever copied into `bytes[..len]`.
            RequestId::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..*len as usize]).unwrap_or("")
            }
            RequestId::Long(id) => id,
        }
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A random UUID version 4 in its canonical text form (36 bytes, on the stack).
pub fn uuid_v4(mut random: impl FnMut() -> u64) -> RequestId {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&random().to_be_bytes());
    raw[8..].copy_from_slice(&random().to_be_bytes());
    // RFC 9562 §5.4: version 4, variant 10.
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; INLINE];
    let mut at = 0;
    for (i, b) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            bytes[at] = b'-';
            at += 1;
        }
        bytes[at] = HEX[(b >> 4) as usize];
        bytes[at + 1] = HEX[(b & 0xf) as usize];
        at += 2;
    }
    RequestId::Inline {
        len: at as u8,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v4_shape() {
        let mut n = 0u64;
        let id = uuid_v4(|| {
            n += 0x1111_1111_1111_1111;
            n
        });
        let id = id.as_str();
        assert_eq!(id.len(), 36);
        assert_eq!(id, "11111111-1111-4111-a222-222222222222");
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn short_ids_are_inline_long_ones_kept_whole() {
        let id = RequestId::new("abc");
        assert!(matches!(id, RequestId::Inline { len: 3, .. }));
        assert_eq!(id.as_str(), "abc");
        let long = "x".repeat(INLINE + 1);
        let id = RequestId::new(&long);
        assert!(matches!(id, RequestId::Long(_)));
        assert_eq!(id.as_str(), long);
        assert_eq!(RequestId::new(&long[..INLINE]).as_str(), &long[..INLINE]);
    }
}
