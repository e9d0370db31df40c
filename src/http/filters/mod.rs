//! The HTTP filters nuncio ships besides the router: each a decoder (and/or encoder) filter with
//! its config factory, registered in `http::filter_registry`.

pub mod health_check;
pub mod local_ratelimit;
