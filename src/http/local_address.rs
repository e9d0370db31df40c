//! The proxy's own address as Envoy's `LocalInfo` knows it (`Network::Utility::getLocalAddress`
//! for IPv4, Envoy's default `--local-address-ip-version`): the first IPv4 address of any
//! interface that is not loopback, or 127.0.0.1 when there is none.
//!
//! Looked up once per process (the first `HcmConfig::parse`) and kept on `HcmConfig`; read by
//! `conn_manager_utility::mutate_request_headers`, which appends it to `x-forwarded-for`
//! instead of a loopback peer (a loopback peer says nothing about where the request came from,
//! the proxy's own address at least names the hop).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// The local address, looked up on the first call.
pub fn local_address() -> IpAddr {
    static LOCAL: OnceLock<IpAddr> = OnceLock::new();
    *LOCAL.get_or_init(lookup)
}

fn lookup() -> IpAddr {
    let first = nix::ifaddrs::getifaddrs().ok().and_then(|mut addrs| {
        addrs.find_map(|ifaddr| {
            let ip = IpAddr::V4(ifaddr.address?.as_sockaddr_in()?.ip());
            (!ip.is_loopback()).then_some(ip)
        })
    });
    first.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_address_is_ipv4_and_stable() {
        let a = super::local_address();
        assert!(a.is_ipv4());
        assert_eq!(a, super::local_address());
    }
}
