//! `ClientCodec`: the upstream side of an HTTP/1 connection (Envoy's `ClientConnectionImpl`,
//! used by `CodecClient`).
//!
//! Encodes the request the router sends and decodes the upstream's response. Sans-IO like
//! `ServerCodec`. One request at a time (no upstream pipelining, as in Envoy): the request
//! head records what the response framing depends on (HEAD, CONNECT, upgrade), and bytes that
//! arrive while no request is outstanding are a protocol error (the pool must not reuse that
//! connection).
//!
//! A malformed response is a `CodecError`; the router turns it into Envoy's local reply
//! (502/503), never into garbage toward the client.

use super::super::header_map::HeaderMap;
use super::decode::{BodyDecoder, BodyEvent};
use super::encode::{self, BodyEncoder};
use super::error::CodecError;
use super::head::{BodyLength, Method, RequestHead, ResponseHead};
use super::parse::{self, find_head_end, RequestContext};
use super::{Http1Settings, ResponseEvent};
use bytes::BytesMut;
use std::sync::Arc;

#[derive(Debug)]
enum Reading {
    /// Waiting for a (final or 1xx) response head; `scanned` bytes already searched.
    Head { scanned: usize },
    /// Decoding the response body.
    Body(BodyDecoder),
    /// Failed for good.
    Failed(CodecError),
}

/// The client role of the HTTP/1 codec.
#[doc(alias = "ClientConnectionImpl")]
#[derive(Debug)]
pub struct ClientCodec {
    settings: Arc<Http1Settings>,
    reading: Reading,
    /// The request being written, `None` between requests.
    writing: Option<BodyEncoder>,
    /// The outstanding request, from `encode_headers` until its response is complete.
    request: Option<RequestContext>,
    /// The response said the connection closes after it.
    close_after_response: bool,
}

impl ClientCodec {
    pub fn new(settings: Arc<Http1Settings>) -> ClientCodec {
        ClientCodec {
            settings,
            reading: Reading::Head { scanned: 0 },
            writing: None,
            request: None,
            close_after_response: false,
        }
    }

    /// Writes a request head (always HTTP/1.1 upstream, `host` first, as Envoy does). Framing:
    /// `content-length` passed through; when `end_stream`, `content-length: 0` except for
    /// GET/HEAD/DELETE/TRACE/CONNECT (as Envoy); otherwise `transfer-encoding: chunked`. Upgrade and CONNECT requests
    /// become tunnels.
    pub fn encode_headers(&mut self, head: &RequestHead, end_stream: bool, out: &mut BytesMut) {
        encode::put_request_line_and_host(head, out);
        let fields = encode::put_fields(&head.headers, out);
        let tunnel = head.upgrade || head.method == Method::Connect;
        let encoder = if tunnel {
            BodyEncoder::Raw
        } else if fields.content_length {
            BodyEncoder::Length
        } else if end_stream {
            // Envoy announces an empty body explicitly unless the method has no body by
            // definition (its `requestShouldHaveNoBody`: GET, HEAD, DELETE, TRACE, CONNECT).
            if !matches!(
                head.method,
                Method::Get | Method::Head | Method::Delete | Method::Trace | Method::Connect
            ) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            BodyEncoder::Discard
        } else {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            BodyEncoder::Chunked
        };
        out.extend_from_slice(b"\r\n");
        self.request = Some(RequestContext {
            head: head.method == Method::Head,
            connect: head.method == Method::Connect,
            upgrade: head.upgrade,
        });
        self.writing = if end_stream && !tunnel {
            None
        } else {
            Some(encoder)
        };
    }

    /// Writes request body bytes; `end_stream` ends the request.
    pub fn encode_data(&mut self, data: &[u8], end_stream: bool, out: &mut BytesMut) {
        if let Some(encoder) = self.writing {
            encoder.data(data, out);
            if end_stream {
                encoder.end(None, out);
                self.writing = None;
            }
        }
    }

    /// Ends the request with trailers (written only when the body is chunked and
    /// `enable_trailers` is set).
    pub fn encode_trailers(&mut self, trailers: &HeaderMap, out: &mut BytesMut) {
        if let Some(encoder) = self.writing.take() {
            encoder.end(self.settings.enable_trailers.then_some(trailers), out);
        }
    }

    /// Decodes the next response event from `buf`. `Ok(None)`: more bytes needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ResponseEvent>, CodecError> {
        match &mut self.reading {
            Reading::Failed(error) => Err(*error),
            Reading::Head { scanned } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let Some(request) = self.request else {
                    return self.fail(CodecError::Malformed("response bytes without a request"));
                };
                // The common case first: the whole head came in one read, in the simple form.
                let fast = if *scanned == 0 {
                    parse::parse_simple_response(buf, &self.settings, request)
                } else {
                    None
                };
                let parsed = match fast {
                    Some(parsed) => parsed,
                    None => match general_response_head(buf, scanned, &self.settings, request) {
                        Some(parsed) => parsed,
                        None => return Ok(None),
                    },
                };
                let head = match parsed {
                    Ok(head) => head,
                    Err(error) => return self.fail(error),
                };
                *scanned = 0;
                if head.body == BodyLength::Empty && head.is_informational() {
                    // 100/102/103: not the response yet; the final head follows. Only after an
                    // `expect: 100-continue` or from an upstream sending early hints.
                    std::hint::cold_path();
                    return Ok(Some(ResponseEvent::Informational(head)));
                }
                self.close_after_response = !head.keep_alive;
                self.reading = Reading::Body(match head.body {
                    BodyLength::Empty => BodyDecoder::Length(0),
                    BodyLength::Length(n) => BodyDecoder::Length(n),
                    BodyLength::Chunked => BodyDecoder::chunked(),
                    BodyLength::CloseDelimited | BodyLength::Tunnel => BodyDecoder::Eof,
                });
                Ok(Some(ResponseEvent::Headers(head)))
            }
            Reading::Body(decoder) => {
                let max = self.settings.max_response_head_bytes();
                let count = self.settings.max_headers_count as usize;
                match decoder.decode(buf, max, count) {
                    Ok(None) => Ok(None),
                    Ok(Some(BodyEvent::Data(bytes))) => Ok(Some(ResponseEvent::Data(bytes))),
                    Ok(Some(BodyEvent::Trailers(map))) => Ok(Some(ResponseEvent::Trailers(map))),
                    Ok(Some(BodyEvent::End)) => {
                        self.reading = Reading::Head { scanned: 0 };
                        self.request = None;
                        Ok(Some(ResponseEvent::MessageComplete))
                    }
                    Err(error) => self.fail(error),
                }
            }
        }
    }

    /// The upstream closed. Ends a close-delimited body; `None` when idle between requests;
    /// `PrematureClose` when a response was owed or cut short.
    pub fn on_eof(&mut self, buf: &BytesMut) -> Result<Option<ResponseEvent>, CodecError> {
        match &self.reading {
            Reading::Failed(error) => Err(*error),
            Reading::Head { .. } if self.request.is_none() && buf.is_empty() => Ok(None),
            // Envoy: a close before any response byte is a reset ("connection termination",
            // 503); a close inside a head is a protocol error (502).
            Reading::Head { .. } if buf.is_empty() => self.fail(CodecError::PrematureClose),
            Reading::Head { .. } => self.fail(CodecError::Malformed(
                "connection closed inside a response head",
            )),
            Reading::Body(decoder) => match decoder.on_eof() {
                Ok(Some(_)) => {
                    self.reading = Reading::Head { scanned: 0 };
                    self.request = None;
                    self.close_after_response = true;
                    Ok(Some(ResponseEvent::MessageComplete))
                }
                Ok(None) => Ok(None),
                Err(error) => self.fail(error),
            },
        }
    }

    /// Reached only on a malformed response or an upstream that broke the framing.
    #[cold]
    fn fail(&mut self, error: CodecError) -> Result<Option<ResponseEvent>, CodecError> {
        self.reading = Reading::Failed(error);
        self.close_after_response = true;
        Err(error)
    }

    /// True when the connection may be reused for another request: no request outstanding,
    /// the request is fully written, and neither side asked to close.
    pub fn is_reusable(&self) -> bool {
        self.request.is_none()
            && self.writing.is_none()
            && !self.close_after_response
            && matches!(self.reading, Reading::Head { .. })
    }

    /// True while a response is owed.
    pub fn is_awaiting_response(&self) -> bool {
        self.request.is_some()
    }
}

/// The general path for a response head: `find_head_end`, then httparse. Reached only when the
/// head came in several reads or not in the simple form (`parse_fast`); upstreams practically
/// always send their head whole and simple. `None`: the head is not complete yet (`scanned`
/// bytes of it were searched).
#[cold]
fn general_response_head(
    buf: &mut BytesMut,
    scanned: &mut usize,
    settings: &Http1Settings,
    request: RequestContext,
) -> Option<Result<ResponseHead, CodecError>> {
    let Some(end) = find_head_end(buf, *scanned) else {
        if buf.len() > settings.max_response_head_bytes() {
            return Some(Err(CodecError::HeadersTooLarge));
        }
        *scanned = buf.len().saturating_sub(2);
        return None;
    };
    Some(parse::parse_response(buf, end, settings, request))
}
