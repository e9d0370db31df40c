//! Message heads: `RequestHead` and `ResponseHead`, what the codec hands to its caller.
//!
//! A head is the start line plus the header fields. The pseudo-values Envoy keeps as `:method`,
//! `:path`, `:authority`, `:scheme` and `:status` entries are plain fields here; the framing
//! facts the codec digested from the headers (body length, keep-alive, upgrade,
//! `expect: 100-continue`) are fields too, so the connection manager never has to look them up.
//! The `host` header of a request is not in `headers`: it is the `authority` (Envoy's
//! `:authority`), and the encoder writes it back as `host`.

use super::super::header_map::{HeaderMap, Span};

/// The protocol version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A request method. The common ones are variants; the other methods Envoy 1.40 accepts are
/// `Other` (Envoy's HTTP/1 parser only knows a fixed list; any other token is a 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other(&'static str),
}

/// The methods Envoy 1.40 accepts besides the variants (observed: `QUERY`, `PRI`, `M-SEARCH`,
/// lower-case or unknown tokens are answered 400 `http1.codec_error`).
const OTHER_METHODS: &[&str] = &[
    "ACL",
    "BIND",
    "CHECKOUT",
    "COPY",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "MSEARCH",
    "NOTIFY",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

impl Method {
    /// The method for a token (case-sensitive, RFC 9110 §9.1), `None` if Envoy would reject it.
    pub fn from_token(token: &str) -> Option<Method> {
        Method::from_bytes(token.as_bytes())
    }

    /// [`from_token`](Self::from_token) on the raw bytes of a request line (every accepted
    /// method is an ASCII token, so no UTF-8 check is needed first).
    pub(crate) fn from_bytes(token: &[u8]) -> Option<Method> {
        Some(match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            other => Method::Other(OTHER_METHODS.iter().find(|m| m.as_bytes() == other)?),
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(token) => token,
        }
    }
}

/// The scheme of an absolute-form request target (`http://host/path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// How the body of a message is delimited (RFC 9112 §6.3), as decided from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body: a request without Content-Length/Transfer-Encoding, a response to HEAD, 1xx,
    /// 204 or 304, or `content-length: 0`.
    Empty,
    /// Exactly this many bytes (`content-length`).
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// A response without length: the body ends when the upstream closes.
    CloseDelimited,
    /// After the head the connection is a byte tunnel in both directions (an upgrade or a
    /// CONNECT request; a 101 or a 2xx-to-CONNECT response).
    Tunnel,
}

impl BodyLength {
    /// True when the head is the whole message (Envoy's `end_stream` on `decodeHeaders`).
    pub fn is_empty(self) -> bool {
        self == BodyLength::Empty || self == BodyLength::Length(0)
    }
}

/// A decoded (or to-be-encoded) request head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: Method,
    pub version: Version,
    /// `Some` when the target was in absolute form; the path is then in origin form.
    pub scheme: Option<Scheme>,
    path: Span,
    authority: Span,
    /// The header fields, without `host` (that is `authority`).
    pub headers: HeaderMap,
    /// Body framing announced by the head.
    pub body: BodyLength,
    /// False when the client asked to close after this request (`connection: close`, or
    /// HTTP/1.0 without `connection: keep-alive`).
    pub keep_alive: bool,
    /// True for an upgrade request (`connection: upgrade` plus an `upgrade` header).
    pub upgrade: bool,
    /// True when the request carries `expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// A head for a request built by the proxy itself (tests, health checks).
    pub fn new(method: Method, path: &str, authority: &str) -> RequestHead {
        let mut headers = HeaderMap::new();
        let path = headers.store(path.as_bytes());
        let authority = headers.store(authority.as_bytes());
        RequestHead {
            method,
            version: Version::Http11,
            scheme: None,
            path,
            authority,
            headers,
            body: BodyLength::Empty,
            keep_alive: true,
            upgrade: false,
            expect_continue: false,
        }
    }

    /// Moves the head out, leaving an empty one behind (no allocation): for a stage that
    /// takes over a head the chain has already delivered (the router keeps the request it
    /// forwards).
    pub fn take(&mut self) -> RequestHead {
        std::mem::replace(
            self,
            RequestHead::from_parts(
                Method::Get,
                Version::Http11,
                Span::EMPTY,
                Span::EMPTY,
                HeaderMap::new(),
            ),
        )
    }

    /// Assembles a decoded head (codec only).
    pub(crate) fn from_parts(
        method: Method,
        version: Version,
        path: Span,
        authority: Span,
        headers: HeaderMap,
    ) -> RequestHead {
        RequestHead {
            method,
            version,
            scheme: None,
            path,
            authority,
            headers,
            body: BodyLength::Empty,
            keep_alive: true,
            upgrade: false,
            expect_continue: false,
        }
    }

    /// The path and query in origin form (`/a/b?c`), `*` for asterisk-form, empty for CONNECT.
    pub fn path(&self) -> &str {
        // The codec only accepts visible ASCII in the target, so this is valid UTF-8.
        std::str::from_utf8(self.headers.resolve(self.path)).unwrap_or("")
    }

    /// The path as stored, without the UTF-8 check of [`path`](Self::path) (the encoder
    /// writes bytes).
    pub(crate) fn path_bytes(&self) -> &[u8] {
        self.headers.resolve(self.path)
    }

    /// The authority as stored (see [`path_bytes`](Self::path_bytes)).
    pub(crate) fn authority_bytes(&self) -> &[u8] {
        self.headers.resolve(self.authority)
    }

    /// Replaces the path (route rewrites).
    pub fn set_path(&mut self, path: &str) {
        self.path = self.headers.store(path.as_bytes());
    }

    /// The authority: the `host` header, or the authority of an absolute-form target.
    pub fn authority(&self) -> &str {
        std::str::from_utf8(self.headers.resolve(self.authority)).unwrap_or("")
    }

    /// Replaces the authority (host rewrites).
    pub fn set_authority(&mut self, authority: &str) {
        self.authority = self.headers.store(authority.as_bytes());
    }

    pub(crate) fn set_path_span(&mut self, span: Span) {
        self.path = span;
    }

    pub(crate) fn set_authority_span(&mut self, span: Span) {
        self.authority = span;
    }
}

/// A decoded (or to-be-encoded) response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub headers: HeaderMap,
    /// Body framing announced by the head (and the request it answers).
    pub body: BodyLength,
    /// False when the upstream said `connection: close` (or spoke HTTP/1.0 without keep-alive).
    pub keep_alive: bool,
}

impl ResponseHead {
    /// A response head with no headers yet.
    pub fn new(status: u16) -> ResponseHead {
        ResponseHead {
            version: Version::Http11,
            status,
            headers: HeaderMap::new(),
            body: BodyLength::Empty,
            keep_alive: true,
        }
    }

    /// True for 1xx: not the final response.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// The statuses Envoy names, listed once for [`reason_phrase`] and [`status_line`].
macro_rules! named_statuses {
    ($($code:literal $phrase:literal,)*) => {
        /// The reason phrase Envoy writes for a status (the upstream's own phrase is not
        /// forwarded).
        pub fn reason_phrase(status: u16) -> &'static str {
            match status {
                $($code => $phrase,)*
                _ => "Unknown",
            }
        }

        /// The whole status line `HTTP/1.1 <status> <phrase>\r\n` for a status Envoy names,
        /// so the encoder writes it in one piece.
        pub(crate) fn status_line(status: u16) -> Option<&'static str> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", stringify!($code), " ", $phrase, "\r\n")),)*
                _ => None,
            }
        }
    };
}

named_statuses! {
    100 "Continue",
    101 "Switching Protocols",
    102 "Processing",
    103 "Early Hints",
    200 "OK",
    201 "Created",
    202 "Accepted",
    203 "Non-Authoritative Information",
    204 "No Content",
    205 "Reset Content",
    206 "Partial Content",
    207 "Multi-Status",
    208 "Already Reported",
    226 "IM Used",
    300 "Multiple Choices",
    301 "Moved Permanently",
    302 "Found",
    303 "See Other",
    304 "Not Modified",
    305 "Use Proxy",
    307 "Temporary Redirect",
    308 "Permanent Redirect",
    400 "Bad Request",
    401 "Unauthorized",
    402 "Payment Required",
    403 "Forbidden",
    404 "Not Found",
    405 "Method Not Allowed",
    406 "Not Acceptable",
    407 "Proxy Authentication Required",
    408 "Request Timeout",
    409 "Conflict",
    410 "Gone",
    411 "Length Required",
    412 "Precondition Failed",
    413 "Payload Too Large",
    414 "URI Too Long",
    415 "Unsupported Media Type",
    416 "Range Not Satisfiable",
    417 "Expectation Failed",
    421 "Misdirected Request",
    422 "Unprocessable Entity",
    423 "Locked",
    424 "Failed Dependency",
    426 "Upgrade Required",
    428 "Precondition Required",
    429 "Too Many Requests",
    431 "Request Header Fields Too Large",
    500 "Internal Server Error",
    501 "Not Implemented",
    502 "Bad Gateway",
    503 "Service Unavailable",
    504 "Gateway Timeout",
    505 "HTTP Version Not Supported",
    507 "Insufficient Storage",
    508 "Loop Detected",
    510 "Not Extended",
    511 "Network Authentication Required",
}
