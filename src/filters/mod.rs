//! Network and HTTP filters, and the registry of filter factories (issues 3 and 4).
pub mod proxy_protocol;
