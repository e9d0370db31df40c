//! `ServerCodec`: the downstream side of an HTTP/1 connection (Envoy's `ServerConnectionImpl`).
//!
//! Decodes requests from the bytes the connection read and encodes the responses the HTTP
//! connection manager produces. Sans-IO: no socket, no clock; the caller passes its read buffer
//! to `decode` and its write buffer to `encode_*`.
//!
//! ```text
//! loop {
//!     match codec.decode(&mut read_buf)? {          // Ok(None): need more bytes
//!         Some(RequestEvent::Headers(head)) => ...  // decodeHeaders
//!         Some(RequestEvent::Data(bytes)) => ...    // decodeData
//!         Some(RequestEvent::Trailers(map)) => ...  // decodeTrailers
//!         Some(RequestEvent::MessageComplete) => ...// onMessageComplete
//!         None => break,
//!     }
//! }
//! codec.encode_headers(&response, end_stream, &mut write_buf); ...
//! ```
//!
//! Requests are answered one at a time, in order: after a request head the codec decodes that
//! request's body, but yields the next (pipelined) request head only once the response to the
//! current one has been fully encoded. Bytes of later requests simply wait in the read buffer,
//! so a smuggled request is parsed (and judged) on its own, after the first answer.

use super::super::header_map::HeaderMap;
use super::decode::{BodyDecoder, BodyEvent};
use super::encode::{self, BodyEncoder};
use super::error::CodecError;
use super::head::{BodyLength, Method, RequestHead, ResponseHead, Version};
use super::parse::{self, find_head_end};
use super::{Http1Settings, RequestEvent};
use bytes::{Buf, BytesMut};
use std::sync::Arc;

/// Reading side.
#[derive(Debug)]
enum Reading {
    /// Waiting for a request head; `scanned` bytes were already searched for its end.
    Head { scanned: usize },
    /// Decoding the body of the current request.
    Body(BodyDecoder),
    /// The codec failed; it yields this error forever (the connection must close).
    Failed(CodecError),
}

/// Writing side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writing {
    /// No response started (or only 1xx heads were written).
    Head,
    /// Writing the response body.
    Body(BodyEncoder),
    /// The response is complete.
    Done,
}

/// What the response encoder must know about the request it answers.
#[derive(Clone, Copy, Debug)]
struct Responding {
    head_request: bool,
    version: Version,
    keep_alive: bool,
    /// An upgrade or CONNECT request: only a 101 (or 2xx to CONNECT) keeps the connection.
    tunnel: bool,
    /// A CONNECT request (a 2xx answer opens the tunnel).
    connect: bool,
}

/// Skips the empty lines in front of a request line. False when the buffer ends inside one (a
/// lone CR): more bytes are needed. Reached only when a client sends CRLFs between requests,
/// which some old clients do after a POST body.
#[cold]
fn skip_empty_lines(buf: &mut BytesMut) -> bool {
    while matches!(buf.first(), Some(b'\r' | b'\n')) {
        if buf.first() == Some(&b'\r') && buf.get(1).is_none() {
            return false;
        }
        if buf.first() == Some(&b'\r') && buf.get(1) != Some(&b'\n') {
            break;
        }
        let skip = if buf.first() == Some(&b'\r') { 2 } else { 1 };
        buf.advance(skip);
    }
    true
}

/// The general path for a request head: `find_head_end`, then httparse. Reached only when the
/// head came in several reads or not in the simple form (`parse_fast`); practically every client
/// sends its head whole and simple. `None`: the head is not complete yet (`scanned` bytes of it
/// were searched).
#[cold]
fn general_request_head(
    buf: &mut BytesMut,
    scanned: &mut usize,
    settings: &Http1Settings,
) -> Option<Result<RequestHead, CodecError>> {
    let Some(end) = find_head_end(buf, *scanned) else {
        if buf.len() > settings.max_head_bytes() {
            return Some(Err(CodecError::HeadersTooLarge));
        }
        *scanned = buf.len().saturating_sub(2);
        return None;
    };
    Some(parse::parse_request(buf, end, settings))
}

/// The server role of the HTTP/1 codec.
#[doc(alias = "ServerConnectionImpl")]
#[derive(Debug)]
pub struct ServerCodec {
    settings: Arc<Http1Settings>,
    reading: Reading,
    writing: Writing,
    /// `Some` from a request head until its response is complete.
    responding: Option<Responding>,
    /// Set when the connection must close once the current response is written.
    close_after_response: bool,
}

impl ServerCodec {
    pub fn new(settings: Arc<Http1Settings>) -> ServerCodec {
        ServerCodec {
            settings,
            reading: Reading::Head { scanned: 0 },
            writing: Writing::Done,
            responding: None,
            close_after_response: false,
        }
    }

    /// Decodes the next event from `buf`, consuming the bytes it used. `Ok(None)` means more
    /// bytes are needed (or the next request must wait for the current response).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestEvent>, CodecError> {
        match &mut self.reading {
            Reading::Failed(error) => Err(*error),
            Reading::Head { scanned } => {
                if self.responding.is_some() {
                    return Ok(None);
                }
                // RFC 9112 §2.2: ignore empty lines before a request line (Envoy does).
                if *scanned == 0
                    && matches!(buf.first(), Some(b'\r' | b'\n'))
                    && !skip_empty_lines(buf)
                {
                    return Ok(None);
                }
                if buf.is_empty() {
                    return Ok(None);
                }
                // The common case first: the whole head came in one read, in the simple form.
                let fast = if *scanned == 0 {
                    parse::parse_simple_request(buf, &self.settings)
                } else {
                    None
                };
                let parsed = match fast {
                    Some(parsed) => parsed,
                    None => match general_request_head(buf, scanned, &self.settings) {
                        Some(parsed) => parsed,
                        None => return Ok(None),
                    },
                };
                let head = match parsed {
                    Ok(head) => head,
                    Err(error) => return self.fail(error),
                };
                self.start_request(&head);
                Ok(Some(RequestEvent::Headers(head)))
            }
            Reading::Body(decoder) => {
                let max = self.settings.max_head_bytes();
                let count = self.settings.max_headers_count as usize;
                match decoder.decode(buf, max, count) {
                    Ok(None) => Ok(None),
                    Ok(Some(BodyEvent::Data(bytes))) => Ok(Some(RequestEvent::Data(bytes))),
                    Ok(Some(BodyEvent::Trailers(map))) => Ok(Some(RequestEvent::Trailers(map))),
                    Ok(Some(BodyEvent::End)) => {
                        self.reading = Reading::Head { scanned: 0 };
                        Ok(Some(RequestEvent::MessageComplete))
                    }
                    Err(error) => self.fail(error),
                }
            }
        }
    }

    /// The downstream closed its sending side. Returns `MessageComplete` for a tunnel, `None`
    /// between requests, and `PrematureClose` in the middle of one (nothing to answer then).
    pub fn on_eof(&mut self, buf: &BytesMut) -> Result<Option<RequestEvent>, CodecError> {
        match &self.reading {
            Reading::Failed(error) => Err(*error),
            Reading::Head { .. } if buf.iter().all(|&b| b == b'\r' || b == b'\n') => Ok(None),
            Reading::Head { .. } => self.fail(CodecError::PrematureClose),
            Reading::Body(decoder) => match decoder.on_eof() {
                Ok(Some(_)) => {
                    self.reading = Reading::Head { scanned: 0 };
                    Ok(Some(RequestEvent::MessageComplete))
                }
                Ok(None) => Ok(None),
                Err(error) => self.fail(error),
            },
        }
    }

    /// Reached only on a malformed request or a peer that broke the framing.
    #[cold]
    fn fail(&mut self, error: CodecError) -> Result<Option<RequestEvent>, CodecError> {
        self.reading = Reading::Failed(error);
        self.close_after_response = true;
        Err(error)
    }

    fn start_request(&mut self, head: &RequestHead) {
        let tunnel = head.body == BodyLength::Tunnel;
        self.responding = Some(Responding {
            head_request: head.method == Method::Head,
            version: head.version,
            keep_alive: head.keep_alive,
            tunnel,
            connect: head.method == Method::Connect,
        });
        self.writing = Writing::Head;
        self.reading = Reading::Body(match head.body {
            BodyLength::Empty => BodyDecoder::Length(0),
            BodyLength::Length(n) => BodyDecoder::Length(n),
            BodyLength::Chunked => BodyDecoder::chunked(),
            BodyLength::CloseDelimited | BodyLength::Tunnel => BodyDecoder::Eof,
        });
    }

    /// True once the connection must be closed after the bytes already encoded are written
    /// (the request asked for it, the response is close-delimited, or decoding failed).
    pub fn should_close(&self) -> bool {
        self.close_after_response && self.responding.is_none()
    }

    /// True while a response is owed (a request head was decoded and its response is not
    /// complete).
    pub fn is_responding(&self) -> bool {
        self.responding.is_some()
    }

    /// Writes `100 Continue` (the connection manager answers `expect: 100-continue` itself).
    pub fn encode_100_continue(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    /// Writes a response head. `end_stream` means there is no body. To close the connection
    /// after this response, put `connection: close` in its headers. Adds the framing headers:
    /// `content-length` is passed through; otherwise `content-length: 0` when `end_stream`,
    /// `transfer-encoding: chunked` toward HTTP/1.1 clients, close-delimited toward HTTP/1.0.
    /// Adds `connection: close` when the connection will close after this response.
    pub fn encode_headers(&mut self, head: &ResponseHead, end_stream: bool, out: &mut BytesMut) {
        // A local reply to a request the codec rejected has no request context.
        let request = self.responding.unwrap_or(Responding {
            head_request: false,
            version: Version::Http11,
            keep_alive: false,
            tunnel: false,
            connect: false,
        });
        encode::put_status_line(head.status, out);
        let fields = encode::put_fields(&head.headers, out);
        if head.is_informational() && head.status != 101 {
            out.extend_from_slice(b"\r\n");
            return;
        }
        let switching = request.tunnel
            && (head.status == 101 || (request.connect && (200..300).contains(&head.status)));
        let no_body = request.head_request || head.status == 204 || head.status == 304;
        let has_length = fields.content_length;
        // `head.keep_alive` describes where the head came from (an upstream may close after
        // every response); it says nothing about this connection. The connection manager asks
        // for a close with a `connection: close` header, as Envoy's does.
        let mut close = !request.keep_alive
            || (request.tunnel && !switching)
            || matches!(self.reading, Reading::Failed(_))
            || fields.connection_close;
        let encoder = if switching {
            BodyEncoder::Raw
        } else if no_body {
            BodyEncoder::Discard
        } else if has_length {
            BodyEncoder::Length
        } else if end_stream {
            out.extend_from_slice(b"content-length: 0\r\n");
            BodyEncoder::Discard
        } else if request.version == Version::Http10 {
            close = true;
            BodyEncoder::Raw
        } else {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            BodyEncoder::Chunked
        };
        if close && !fields.connection {
            out.extend_from_slice(b"connection: close\r\n");
        } else if !close && request.version == Version::Http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.close_after_response |= close;
        self.writing = Writing::Body(encoder);
        if end_stream && !switching {
            self.finish_response();
        }
    }

    /// Whether body bytes of the current response go out exactly as they are (`content-length`
    /// or close-delimited framing: nothing around them, nothing dropped). The connection
    /// manager then writes a large body chunk to the connection itself, behind what was encoded
    /// so far, instead of copying it into `out`, and calls [`encode_data`](Self::encode_data)
    /// with no bytes for the end.
    pub fn body_is_verbatim(&self) -> bool {
        matches!(
            self.writing,
            Writing::Body(BodyEncoder::Length | BodyEncoder::Raw)
        )
    }

    /// Writes body bytes of the current response; `end_stream` ends it.
    pub fn encode_data(&mut self, data: &[u8], end_stream: bool, out: &mut BytesMut) {
        if let Writing::Body(encoder) = self.writing {
            encoder.data(data, out);
            if end_stream {
                encoder.end(None, out);
                self.finish_response();
            }
        }
    }

    /// Ends the current response with trailers (written only when the body is chunked and
    /// `enable_trailers` is set).
    pub fn encode_trailers(&mut self, trailers: &HeaderMap, out: &mut BytesMut) {
        if let Writing::Body(encoder) = self.writing {
            encoder.end(self.settings.enable_trailers.then_some(trailers), out);
            self.finish_response();
        }
    }

    fn finish_response(&mut self) {
        self.writing = Writing::Done;
        self.responding = None;
    }
}
