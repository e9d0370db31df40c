//! `AddressPair`: a connection's remote and local socket addresses in 16 bytes.
//!
//! Owned by [`Connection`](super::connection::Connection), which asks it for `remote()` and
//! `local()` (each a plain `SocketAddr`, rebuilt on the fly). Two `SocketAddr`s take 64 bytes
//! (each is sized for IPv6 with its flow info and scope id); almost every connection is IPv4 on
//! both ends, which fits in 12 bytes. The pair keeps IPv4 inline and boxes anything else, so an
//! idle keep-alive connection pays 16 bytes for its addresses instead of 64 (issue 4's
//! 512-byte budget). An IPv6 connection pays one 64-byte allocation instead.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// A remote and a local address; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPair {
    /// Both addresses are IPv4 (the common case): stored inline.
    V4 {
        remote_ip: [u8; 4],
        local_ip: [u8; 4],
        remote_port: u16,
        local_port: u16,
    },
    /// Anything else (IPv6 on either end): boxed.
    Other(Box<(SocketAddr, SocketAddr)>),
}

impl AddressPair {
    pub fn new(remote: SocketAddr, local: SocketAddr) -> AddressPair {
        match (remote, local) {
            (SocketAddr::V4(r), SocketAddr::V4(l)) => AddressPair::V4 {
                remote_ip: r.ip().octets(),
                local_ip: l.ip().octets(),
                remote_port: r.port(),
                local_port: l.port(),
            },
            _ => AddressPair::Other(Box::new((remote, local))),
        }
    }

    pub fn remote(&self) -> SocketAddr {
        match self {
            AddressPair::V4 {
                remote_ip,
                remote_port,
                ..
            } => v4(*remote_ip, *remote_port),
            AddressPair::Other(pair) => pair.0,
        }
    }

    pub fn local(&self) -> SocketAddr {
        match self {
            AddressPair::V4 {
                local_ip,
                local_port,
                ..
            } => v4(*local_ip, *local_port),
            AddressPair::Other(pair) => pair.1,
        }
    }

    /// Replaces the local address (a client connection learns it once connected).
    pub fn set_local(&mut self, local: SocketAddr) {
        *self = AddressPair::new(self.remote(), local);
    }
}

fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_pair_is_inline_and_round_trips() {
        // Two addresses in the space of a quarter of one SocketAddr pair: the reason it exists.
        assert_eq!(std::mem::size_of::<AddressPair>(), 16);
        let remote: SocketAddr = "127.0.0.1:51234".parse().unwrap();
        let local: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let pair = AddressPair::new(remote, local);
        assert!(matches!(pair, AddressPair::V4 { .. }));
        assert_eq!((pair.remote(), pair.local()), (remote, local));
    }

    #[test]
    fn ipv6_on_either_end_is_boxed_and_round_trips() {
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (remote, local) in [(v6, v4), (v4, v6), (v6, v6)] {
            let pair = AddressPair::new(remote, local);
            assert!(matches!(pair, AddressPair::Other(_)));
            assert_eq!((pair.remote(), pair.local()), (remote, local));
        }
    }

    #[test]
    fn set_local_switches_representation_as_needed() {
        let remote: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let mut pair = AddressPair::new(remote, "0.0.0.0:0".parse().unwrap());
        pair.set_local("127.0.0.1:40000".parse().unwrap());
        assert_eq!(pair.local(), "127.0.0.1:40000".parse().unwrap());
        pair.set_local("[::1]:1".parse().unwrap());
        assert_eq!(
            (pair.remote(), pair.local()),
            (remote, "[::1]:1".parse().unwrap())
        );
    }
}
