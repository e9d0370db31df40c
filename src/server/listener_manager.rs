//! The listener manager: turns the config's listeners into built [`ListenerConfig`]s (filter
//! factories created and checked, filter chain matching compiled) and binds their sockets
//! (Envoy's `ListenerManagerImpl` and `ListenSocketFactoryImpl`).
//!
//! Called by `server::instance` on the main thread, at start and in `--mode validate` (which
//! builds everything but binds nothing). Calls the filter registry (`src/filters/`) and the
//! filter chain manager (`network/filter_chain.rs`).
//!
//! Sockets: with `enable_reuse_port` (Envoy's default since 1.19) each worker gets its own
//! SO_REUSEPORT socket and the kernel spreads new connections over them, so workers never
//! contend on one accept queue and no thundering herd wakes them all; the main thread binds
//! all of them at start, so a bad address fails the start, not a worker. A listener
//! configured with port 0 is bound once to learn its port, and the other workers' sockets
//! bind that same port. Without reuse_port, one socket is shared (duplicated) by all workers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

use crate::config::{self, Bootstrap, ConfigError};
use crate::filters::{self, FactoryContext};
use crate::network::filter_chain::FilterChainManager;
use crate::network::listener::{FilterChain, ListenerConfig};

/// Builds every listener of the config; the first error (with its path) stops the build.
pub fn build_listeners(cx: &FactoryContext<'_>) -> config::Result<Vec<Arc<ListenerConfig>>> {
    let bootstrap: &Bootstrap = cx.bootstrap;
    let mut built = Vec::new();
    for listener in &bootstrap.static_resources.listeners {
        built.push(Arc::new(build_listener(listener, cx)?));
    }
    Ok(built)
}

fn build_listener(
    listener: &config::Listener,
    cx: &FactoryContext<'_>,
) -> config::Result<ListenerConfig> {
    if listener.filter_chains.is_empty() && listener.default_filter_chain.is_none() {
        return Err(ConfigError::invalid(
            format!("{}.filter_chains", listener.path),
            "a listener needs at least one filter chain (or a default_filter_chain)",
        ));
    }
    let filter_chains =
        FilterChainManager::from_listener(listener, |chain| build_chain(chain, cx))?;
    let mut listener_filters = Vec::new();
    for filter in &listener.listener_filters {
        listener_filters.push(filters::create_listener_filter_factory(filter, cx)?);
    }
    Ok(ListenerConfig {
        name: listener.name.clone(),
        address: listener.address,
        filter_chains,
        listener_filters,
        listener_filters_timeout: listener.listener_filters_timeout,
        continue_on_listener_filters_timeout: false,
        per_connection_buffer_limit_bytes: listener.per_connection_buffer_limit_bytes,
        enable_reuse_port: listener.enable_reuse_port,
    })
}

fn build_chain(
    chain: &config::FilterChain,
    cx: &FactoryContext<'_>,
) -> config::Result<FilterChain> {
    let mut filter_factories = Vec::with_capacity(chain.filters.len());
    for filter in &chain.filters {
        filter_factories.push(filters::create_network_filter_factory(filter, cx)?);
    }
    if filter_factories.is_empty() {
        return Err(ConfigError::invalid(
            format!("{}.filters", chain.path),
            "a filter chain needs at least one filter",
        ));
    }
    Ok(FilterChain {
        name: chain.name.clone(),
        filter_factories,
    })
}

/// The sockets of one listener: one per worker (reuse_port) or one shared; and the address
/// they are bound to (the real port when configured with 0).
pub struct ListenSockets {
    pub address: SocketAddr,
    pub per_worker: Vec<std::net::TcpListener>,
}

/// Binds `config`'s sockets for `workers` workers.
pub fn bind_sockets(config: &ListenerConfig, workers: usize) -> io::Result<ListenSockets> {
    let first = bind_socket(config.address, config.enable_reuse_port)?;
    let address = first.local_addr()?;
    let mut per_worker = vec![first];
    for _ in 1..workers {
        let socket = if config.enable_reuse_port {
            bind_socket(address, true)?
        } else {
            per_worker[0].try_clone()?
        };
        per_worker.push(socket);
    }
    Ok(ListenSockets {
        address,
        per_worker,
    })
}

/// A listening TCP socket with SO_REUSEADDR (and SO_REUSEPORT when asked), non-blocking,
/// close-on-exec, backlog 1024.
fn bind_socket(address: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    if address.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    let backlog = Backlog::new(1024).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog)?;
    Ok(std::net::TcpListener::from(fd))
}
