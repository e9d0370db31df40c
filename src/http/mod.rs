//! HTTP/1.1: codec, connection manager, HTTP filter chain (issue 4).
