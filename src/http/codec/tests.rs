//! Codec tests, grouped by the state they exercise (smoltcp style). Expected statuses and
//! details strings are Envoy 1.40's, observed with a real Envoy (see
//! tests/http_conformance_cases.rs for the byte-level table).

use super::*;
use bytes::BytesMut;
use std::sync::Arc;

fn settings() -> Arc<Http1Settings> {
    Arc::new(Http1Settings::default())
}

/// A comparable summary of one request event.
fn summarize_request(event: &RequestEvent) -> String {
    match event {
        RequestEvent::Headers(head) => format!(
            "H {} {} {:?} auth={} scheme={:?} body={:?} ka={} up={} expect={} {:?}",
            head.method.as_str(),
            head.path(),
            head.version,
            head.authority(),
            head.scheme,
            head.body,
            head.keep_alive,
            head.upgrade,
            head.expect_continue,
            head.headers
        ),
        RequestEvent::Data(bytes) => format!("D {:?}", String::from_utf8_lossy(bytes)),
        RequestEvent::Trailers(map) => format!("T {map:?}"),
        RequestEvent::MessageComplete => "C".to_string(),
    }
}

/// Feeds `input` to a server codec in pieces of `step` bytes, answering each complete request
/// with an empty 200 so pipelined requests proceed. Data events are merged (their split
/// points legitimately depend on the read sizes). Returns the events and the error, if any.
fn serve(
    codec_settings: Arc<Http1Settings>,
    input: &[u8],
    step: usize,
) -> (Vec<String>, Option<CodecError>) {
    let mut codec = ServerCodec::new(codec_settings);
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut events: Vec<String> = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(event)) => {
                    let complete = matches!(event, RequestEvent::MessageComplete);
                    let line = summarize_request(&event);
                    match (events.last_mut(), line.strip_prefix("D ")) {
                        (Some(last), Some(more)) if last.starts_with("D ") => {
                            // Merge consecutive data: "D \"ab\"" + "D \"c\"" = "D \"abc\"".
                            last.truncate(last.len() - 1);
                            last.push_str(&more[1..]);
                        }
                        _ => events.push(line),
                    }
                    if complete {
                        codec.encode_headers(&ResponseHead::new(200), true, &mut out);
                    }
                }
                Err(error) => return (events, Some(error)),
            }
        }
    }
    (events, None)
}

/// `serve` at once and at every split size must agree; returns the at-once result.
fn serve_all_splits(input: &[u8]) -> (Vec<String>, Option<CodecError>) {
    serve_all_splits_with(settings(), input)
}

fn serve_all_splits_with(s: Arc<Http1Settings>, input: &[u8]) -> (Vec<String>, Option<CodecError>) {
    let whole = serve(s.clone(), input, input.len());
    for step in 1..input.len().min(64) {
        assert_eq!(
            serve(s.clone(), input, step),
            whole,
            "split into {step}-byte pieces"
        );
    }
    whole
}

/// The error a single request provokes.
fn reject(input: &[u8]) -> CodecError {
    match serve_all_splits(input) {
        (_, Some(error)) => error,
        (events, None) => panic!("accepted {input:?}: {events:?}"),
    }
}

/// The single request head `input` decodes to.
fn accept(input: &[u8]) -> RequestHead {
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(input);
    match codec.decode(&mut buf) {
        Ok(Some(RequestEvent::Headers(head))) => head,
        other => panic!("{input:?} gave {other:?}"),
    }
}

fn status_and_details(error: CodecError) -> (u16, &'static str) {
    (error.status(), error.details())
}

// === Head: request line ===

#[test]
fn head_origin_form_lower_cases_names_and_moves_host_to_authority() {
    let head = accept(b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Foo: Bar \r\n\r\n");
    assert_eq!(head.method, Method::Get);
    assert_eq!(head.path(), "/a/b?c=d");
    assert_eq!(head.authority(), "example.com");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.scheme, None);
    assert!(head.headers.get("host").is_none());
    assert_eq!(
        head.headers.iter().collect::<Vec<_>>(),
        vec![("x-foo", &b"Bar"[..])]
    );
    assert_eq!(head.body, BodyLength::Empty);
    assert!(head.keep_alive);
}

#[test]
fn head_absolute_form_authority_replaces_host() {
    let head = accept(b"GET http://foo.com/bar?x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((head.authority(), head.path()), ("foo.com", "/bar?x"));
    assert_eq!(head.scheme, Some(Scheme::Http));
    let head = accept(b"GET HTTPS://foo.com:8443 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((head.authority(), head.path()), ("foo.com:8443", "/"));
    assert_eq!(head.scheme, Some(Scheme::Https));
    let head = accept(b"GET http://foo.com?q HTTP/1.1\r\n\r\n");
    assert_eq!((head.authority(), head.path()), ("foo.com", "/?q"));
}

#[test]
fn head_connect_authority_form_is_a_tunnel() {
    let head = accept(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
    assert_eq!((head.authority(), head.path()), ("a:443", ""));
    assert_eq!(head.body, BodyLength::Tunnel);
    assert_eq!(
        reject(b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"),
        CodecError::InvalidUrl
    );
}

#[test]
fn head_asterisk_form_and_extension_methods() {
    let head = accept(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.path(), "*");
    let head = accept(b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.method, Method::Other("PURGE"));
    for method in ["QUERY", "PRI", "M-SEARCH", "get", "Get", "FOO_BAR"] {
        let input = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            status_and_details(reject(input.as_bytes())),
            (400, "http1.codec_error"),
            "{method}"
        );
    }
}

#[test]
fn head_leading_empty_lines_and_extra_spaces_are_tolerated() {
    let head = accept(b"\r\n\r\nGET  /  HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.path(), "/");
    let head = accept(b"GET / HTTP/1.1\nHost: a\n\n");
    assert_eq!(head.authority(), "a");
}

#[test]
fn head_bad_request_lines_are_codec_errors() {
    for input in [
        &b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(
            status_and_details(reject(input)),
            (400, "http1.codec_error"),
            "{input:?}"
        );
    }
    assert_eq!(
        status_and_details(reject(b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n")),
        (400, "http1.codec_error")
    );
    assert_eq!(
        status_and_details(reject(b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n")),
        (400, "http1.invalid_characters")
    );
}

#[test]
fn head_versions_other_than_1_1_get_426() {
    for input in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET /\r\n\r\n",
    ] {
        assert_eq!(
            status_and_details(reject(input)),
            (426, "low_version"),
            "{input:?}"
        );
    }
}

#[test]
fn head_http_1_0_accepted_when_configured() {
    let s = Arc::new(Http1Settings {
        accept_http_10: true,
        default_host_for_http_10: Some("default.host".into()),
        ..Http1Settings::default()
    });
    let (events, error) = serve_all_splits_with(s, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(error, None);
    assert!(events[0].contains("Http10 auth=default.host"), "{events:?}");
    assert!(events[0].contains("ka=false"), "{events:?}");
}

// === Head: header fields ===

#[test]
fn fields_with_control_characters_are_invalid_characters() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: z\r\n\r\n",
    ] {
        assert_eq!(
            status_and_details(reject(input)),
            (400, "http1.invalid_characters"),
            "{input:?}"
        );
    }
}

#[test]
fn fields_malformed_lines_are_codec_errors() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX\t: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    ] {
        assert_eq!(
            status_and_details(reject(input)),
            (400, "http1.codec_error"),
            "{input:?}"
        );
    }
}

#[test]
fn fields_obs_text_and_underscores_pass() {
    let head = accept(b"GET / HTTP/1.1\r\nHost: a\r\nX_Y: a\xffb\r\nX:\ta\t\r\n\r\n");
    assert_eq!(head.headers.get("x_y"), Some(&b"a\xffb"[..]));
    assert_eq!(head.headers.get("x"), Some(&b"a"[..]));
}

#[test]
fn fields_host_rules() {
    assert_eq!(
        status_and_details(reject(b"GET / HTTP/1.1\r\n\r\n")),
        (400, "missing_host_header")
    );
    assert_eq!(
        status_and_details(reject(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")),
        (400, "http.invalid_authority")
    );
    assert_eq!(
        reject(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        CodecError::MultipleHost
    );
    assert_eq!(accept(b"GET / HTTP/1.1\r\nHost: \r\n\r\n").authority(), "");
}

#[test]
fn fields_count_limit_counts_host() {
    let mut ok = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..99 {
        ok.extend_from_slice(format!("x{i}: y\r\n").as_bytes());
    }
    let mut too_many = ok.clone();
    too_many.extend_from_slice(b"x99: y\r\n\r\n");
    ok.extend_from_slice(b"\r\n");
    assert_eq!(accept(&ok).headers.len(), 99);
    assert_eq!(
        status_and_details(reject(&too_many)),
        (431, "http1.too_many_headers")
    );
}

#[test]
fn fields_size_limit_counts_raw_head_bytes() {
    // Envoy 1.40: 431 once request line + fields + blank line exceed 60 KiB.
    let head = |value_len: usize| {
        let mut input = b"GET / HTTP/1.1\r\nHost: a\r\nx: ".to_vec();
        input.extend(std::iter::repeat_n(b'a', value_len));
        input.extend_from_slice(b"\r\n\r\n");
        input
    };
    let at_limit = head(60 * 1024 - 32);
    assert_eq!(at_limit.len(), 60 * 1024);
    let mut codec = ServerCodec::new(settings());
    assert!(matches!(
        codec.decode(&mut BytesMut::from(&at_limit[..])),
        Ok(Some(_))
    ));
    let mut codec = ServerCodec::new(settings());
    assert_eq!(
        codec
            .decode(&mut BytesMut::from(&head(60 * 1024 - 31)[..]))
            .map(|_| ()),
        Err(CodecError::HeadersTooLarge)
    );
    // An endless head is cut off without waiting for its end.
    let mut codec = ServerCodec::new(settings());
    let mut endless = BytesMut::from(&b"GET / HTTP/1.1\r\nx: "[..]);
    endless.extend_from_slice(&[b'a'; 61 * 1024]);
    assert_eq!(
        codec.decode(&mut endless).map(|_| ()),
        Err(CodecError::HeadersTooLarge)
    );
}

#[test]
fn fields_connection_upgrade_and_expect_are_digested() {
    let head = accept(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
    assert!(!head.keep_alive);
    let head =
        accept(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert!(head.upgrade);
    assert_eq!(head.body, BodyLength::Tunnel);
    let head = accept(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert!(!head.upgrade);
    let head =
        accept(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert!(head.expect_continue);
}

// === Framing: Content-Length and Transfer-Encoding ===

#[test]
fn framing_content_length_and_transfer_encoding_together_is_400() {
    for input in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
    ] {
        assert_eq!(
            status_and_details(reject(input)),
            (400, "http1.content_length_and_chunked_not_allowed")
        );
    }
}

#[test]
fn framing_transfer_encoding_other_than_chunked_is_501() {
    for te in [
        "gzip",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "xchunked",
        "chunked;q=1",
    ] {
        let input =
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        assert_eq!(
            status_and_details(reject(input.as_bytes())),
            (501, "http1.invalid_transfer_encoding"),
            "{te}"
        );
    }
    let twice = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(reject(twice).status(), 501);
    let head = accept(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n");
    assert_eq!(head.body, BodyLength::Chunked);
}

#[test]
fn framing_bad_or_repeated_content_length_is_400() {
    for cl in [
        "3\r\nContent-Length: 3",
        "3\r\nContent-Length: 4",
        "3, 3",
        "+3",
        "",
        "0x3",
        "99999999999999999999999",
    ] {
        let input = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nabcd");
        assert_eq!(
            status_and_details(reject(input.as_bytes())),
            (400, "http1.codec_error"),
            "{cl}"
        );
    }
    let head = accept(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 03 \r\n\r\nabc");
    assert_eq!(head.body, BodyLength::Length(3));
    assert_eq!(head.headers.get("content-length"), Some(&b"03"[..]));
}

// === Body ===

#[test]
fn body_content_length_then_pipelined_request_waits_for_the_response() {
    let input = b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(&input[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(RequestEvent::Headers(_)))
    ));
    assert!(matches!(codec.decode(&mut buf), Ok(Some(RequestEvent::Data(d))) if &d[..] == b"abc"));
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(RequestEvent::MessageComplete))
    ));
    // The second request waits until the first is answered.
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert!(codec.is_responding());
    let mut out = BytesMut::new();
    codec.encode_headers(&ResponseHead::new(200), false, &mut out);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    codec.encode_data(b"done", true, &mut out);
    match codec.decode(&mut buf) {
        Ok(Some(RequestEvent::Headers(head))) => assert_eq!(head.path(), "/2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn body_chunked_with_trailers_and_split_invariance() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n";
    let (events, error) = serve_all_splits(input);
    assert_eq!(error, None);
    assert_eq!(events[1..], ["D \"abcde\"", "T {\"x-sum\": \"5\"}", "C"]);
}

#[test]
fn body_chunk_errors_come_after_the_head_and_stick() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let (events, error) = serve_all_splits(input);
    assert_eq!(events.len(), 1);
    assert_eq!(
        error.map(status_and_details),
        Some((400, "http1.codec_error"))
    );
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(&input[..]);
    let _ = codec.decode(&mut buf);
    assert!(codec.decode(&mut buf).is_err());
    assert!(codec.decode(&mut BytesMut::new()).is_err());
}

#[test]
fn body_smuggled_request_in_a_chunked_body_stays_body() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n";
    let (events, error) = serve_all_splits(input);
    assert_eq!(error, None);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[1].contains("GET /admin"));
}

#[test]
fn body_tunnel_takes_every_byte_until_eof() {
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(&b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\nraw bytes"[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(RequestEvent::Headers(_)))
    ));
    assert!(
        matches!(codec.decode(&mut buf), Ok(Some(RequestEvent::Data(d))) if &d[..] == b"raw bytes")
    );
    assert!(matches!(
        codec.on_eof(&buf),
        Ok(Some(RequestEvent::MessageComplete))
    ));
}

// === End of input ===

#[test]
fn eof_between_requests_is_clean_and_inside_one_is_premature() {
    let mut codec = ServerCodec::new(settings());
    assert!(matches!(codec.on_eof(&BytesMut::new()), Ok(None)));
    let mut buf = BytesMut::from(&b"GET / HT"[..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert_eq!(
        codec.on_eof(&buf).map(|_| ()),
        Err(CodecError::PrematureClose)
    );
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(&b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab"[..]);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    assert_eq!(
        codec.on_eof(&buf).map(|_| ()),
        Err(CodecError::PrematureClose)
    );
}

// === Split invariance over a mixed corpus ===

#[test]
fn split_anywhere_gives_the_same_events() {
    let corpus: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        b"\r\nPOST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n000a  ;e\r\n0123456789\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\nGET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeX\r\n",
    ];
    for input in corpus {
        serve_all_splits(input);
    }
}

// === Encoding: responses ===

fn respond(request: &[u8], head: ResponseHead, body: Option<&[u8]>) -> (String, bool) {
    let mut codec = ServerCodec::new(Arc::new(Http1Settings {
        accept_http_10: true,
        ..Http1Settings::default()
    }));
    let mut buf = BytesMut::from(request);
    while let Ok(Some(event)) = codec.decode(&mut buf) {
        if matches!(event, RequestEvent::MessageComplete) {
            break;
        }
    }
    let mut out = BytesMut::new();
    codec.encode_headers(&head, body.is_none(), &mut out);
    if let Some(body) = body {
        codec.encode_data(body, true, &mut out);
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        codec.should_close(),
    )
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn encode_content_length_is_passed_through() {
    let mut head = ResponseHead::new(200);
    head.headers.insert("content-length", "2");
    head.headers.insert("Server", "nuncio");
    assert_eq!(
        respond(GET, head, Some(b"ok")),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: nuncio\r\n\r\nok".into(),
            false
        )
    );
}

#[test]
fn encode_headers_only_response_gets_content_length_zero() {
    assert_eq!(
        respond(GET, ResponseHead::new(503), None),
        (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".into(),
            false
        )
    );
}

#[test]
fn encode_streamed_body_is_chunked_toward_http_1_1() {
    assert_eq!(
        respond(GET, ResponseHead::new(200), Some(b"abc")).0,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
}

#[test]
fn encode_streamed_body_is_close_delimited_toward_http_1_0() {
    assert_eq!(
        respond(
            b"GET / HTTP/1.0\r\n\r\n",
            ResponseHead::new(200),
            Some(b"abc")
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc".into(),
            true
        )
    );
}

#[test]
fn encode_http_1_0_keep_alive_with_length() {
    let mut head = ResponseHead::new(200);
    head.headers.insert("content-length", "3");
    assert_eq!(
        respond(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            head,
            Some(b"abc")
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\nabc".into(),
            false
        )
    );
}

#[test]
fn encode_response_to_head_has_no_body() {
    let mut head = ResponseHead::new(200);
    head.headers.insert("content-length", "10");
    assert_eq!(
        respond(
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            head,
            Some(b"0123456789")
        )
        .0,
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
    );
    assert_eq!(
        respond(GET, ResponseHead::new(204), None).0,
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
}

#[test]
fn encode_connection_close_when_the_request_asked() {
    assert_eq!(
        respond(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            ResponseHead::new(200),
            None
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
            true
        )
    );
}

#[test]
fn encode_continue_and_informational_do_not_end_the_response() {
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(
        &b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"[..],
    );
    assert!(
        matches!(codec.decode(&mut buf), Ok(Some(RequestEvent::Headers(h))) if h.expect_continue)
    );
    let mut out = BytesMut::new();
    codec.encode_100_continue(&mut out);
    codec.encode_headers(&ResponseHead::new(103), false, &mut out);
    assert!(codec.is_responding());
    codec.encode_headers(&ResponseHead::new(200), true, &mut out);
    assert!(!codec.is_responding());
    assert_eq!(
        &out[..],
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn encode_local_reply_after_a_codec_error_closes() {
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
    assert!(codec.decode(&mut buf).is_err());
    let mut out = BytesMut::new();
    codec.encode_headers(&ResponseHead::new(400), true, &mut out);
    assert!(codec.should_close());
    assert!(out.ends_with(b"connection: close\r\n\r\n"));
}

// === Client role ===

fn client_with_request(method: Method, upgrade: bool) -> (ClientCodec, String) {
    let mut codec = ClientCodec::new(settings());
    let mut head = RequestHead::new(method, "/p?q", "up.example");
    head.upgrade = upgrade;
    head.headers.append("X-Forwarded-Proto", "http");
    let mut out = BytesMut::new();
    codec.encode_headers(&head, true, &mut out);
    (codec, String::from_utf8_lossy(&out).into_owned())
}

fn summarize_response(event: &ResponseEvent) -> String {
    match event {
        ResponseEvent::Informational(head) => format!("I {}", head.status),
        ResponseEvent::Headers(head) => {
            format!(
                "H {} {:?} ka={} {:?}",
                head.status, head.body, head.keep_alive, head.headers
            )
        }
        ResponseEvent::Data(bytes) => format!("D {:?}", String::from_utf8_lossy(bytes)),
        ResponseEvent::Trailers(map) => format!("T {map:?}"),
        ResponseEvent::MessageComplete => "C".into(),
    }
}

/// Decodes `input` as the response to a request of `method`; `eof` closes afterwards.
fn receive(method: Method, input: &[u8], eof: bool) -> Result<Vec<String>, CodecError> {
    let mut whole = None;
    for step in (1..input.len().min(40)).chain([input.len().max(1)]) {
        let (mut codec, _) = client_with_request(method, false);
        let mut buf = BytesMut::new();
        let mut events: Vec<String> = Vec::new();
        let mut result = Ok(());
        'feed: for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(event)) => events.push(summarize_response(&event)),
                    Ok(None) => break,
                    Err(error) => {
                        result = Err(error);
                        break 'feed;
                    }
                }
            }
        }
        if eof && result.is_ok() {
            match codec.on_eof(&buf) {
                Ok(Some(event)) => events.push(summarize_response(&event)),
                Ok(None) => {}
                Err(error) => result = Err(error),
            }
        }
        // Merge data pieces so the split points do not matter.
        let mut merged: Vec<String> = Vec::new();
        for event in events {
            match (merged.last_mut(), event.strip_prefix("D ")) {
                (Some(last), Some(more)) if last.starts_with("D ") => {
                    last.truncate(last.len() - 1);
                    last.push_str(&more[1..]);
                }
                _ => merged.push(event),
            }
        }
        let outcome = result.map(|_| merged);
        match &whole {
            None => whole = Some(outcome),
            Some(first) => assert_eq!(first, &outcome, "split {step}"),
        }
    }
    whole.unwrap_or(Ok(vec![]))
}

#[test]
fn client_encodes_host_first_and_names_lower_case() {
    let (_, wire) = client_with_request(Method::Get, false);
    assert_eq!(
        wire,
        "GET /p?q HTTP/1.1\r\nhost: up.example\r\nx-forwarded-proto: http\r\n\r\n"
    );
    let trailers: HeaderMap = [("x-t", "1")].into_iter().collect();
    for (enable_trailers, end) in [(true, &b"0\r\nx-t: 1\r\n\r\n"[..]), (false, b"0\r\n\r\n")] {
        let mut codec = ClientCodec::new(Arc::new(Http1Settings {
            enable_trailers,
            ..Http1Settings::default()
        }));
        let mut out = BytesMut::new();
        codec.encode_headers(&RequestHead::new(Method::Post, "/", "a"), false, &mut out);
        codec.encode_data(b"xyz", false, &mut out);
        codec.encode_trailers(&trailers, &mut out);
        let mut expected =
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n"
                .to_vec();
        expected.extend_from_slice(end);
        assert_eq!(&out[..], &expected[..]);
    }
}

#[test]
fn client_content_length_and_chunked_responses() {
    assert_eq!(
        receive(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false
        )
        .unwrap(),
        [
            "H 200 Length(2) ka=true {\"content-length\": \"2\"}",
            "D \"ok\"",
            "C"
        ]
    );
    assert_eq!(
        receive(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nA: b\r\n\r\n",
            false
        )
        .unwrap()[1..],
        ["D \"ok\"", "T {\"a\": \"b\"}", "C"]
    );
}

#[test]
fn client_close_delimited_response_ends_at_eof() {
    assert_eq!(
        receive(Method::Get, b"HTTP/1.1 200 OK\r\n\r\nuntil close", true).unwrap(),
        ["H 200 CloseDelimited ka=false {}", "D \"until close\"", "C"]
    );
}

#[test]
fn client_bodiless_responses() {
    let with_length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(
        receive(Method::Head, with_length, false).unwrap()[1..],
        ["C"]
    );
    for status in ["204 No Content", "304 Not Modified"] {
        let input = format!("HTTP/1.1 {status}\r\n\r\n");
        assert_eq!(
            receive(Method::Get, input.as_bytes(), false).unwrap().len(),
            2
        );
    }
}

#[test]
fn client_informational_then_final() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        receive(Method::Get, input, false).unwrap(),
        [
            "I 100",
            "I 103",
            "H 200 Empty ka=true {\"content-length\": \"0\"}",
            "C"
        ]
    );
}

#[test]
fn client_unsolicited_101_is_an_error_and_solicited_is_a_tunnel() {
    assert_eq!(
        receive(
            Method::Get,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            false
        ),
        Err(CodecError::UnexpectedUpgrade)
    );
    let (mut codec, _) = client_with_request(Method::Get, true);
    let mut buf = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\n\r\nframes"[..]);
    assert!(
        matches!(codec.decode(&mut buf), Ok(Some(ResponseEvent::Headers(h))) if h.body == BodyLength::Tunnel)
    );
    assert!(
        matches!(codec.decode(&mut buf), Ok(Some(ResponseEvent::Data(d))) if &d[..] == b"frames")
    );
}

#[test]
fn client_connect_2xx_is_a_tunnel() {
    let (mut codec, wire) = client_with_request(Method::Connect, false);
    assert!(wire.starts_with("CONNECT up.example HTTP/1.1\r\n"));
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
    assert!(
        matches!(codec.decode(&mut buf), Ok(Some(ResponseEvent::Headers(h))) if h.body == BodyLength::Tunnel)
    );
}

#[test]
fn client_malformed_responses_are_errors() {
    for input in [
        &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        b"HTTP/1.1 099 Odd\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n",
    ] {
        assert!(receive(Method::Get, input, false).is_err(), "{input:?}");
    }
}

#[test]
fn client_premature_close_and_reuse() {
    assert_eq!(
        receive(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            true
        ),
        Err(CodecError::PrematureClose)
    );
    assert_eq!(
        receive(Method::Get, b"", true),
        Err(CodecError::PrematureClose)
    );
    let (mut codec, _) = client_with_request(Method::Get, false);
    assert!(!codec.is_reusable());
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..]);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    assert!(codec.is_reusable());
    assert!(matches!(codec.on_eof(&buf), Ok(None)));
    let mut stray = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
    assert!(codec.decode(&mut stray).is_err());
    assert!(!codec.is_reusable());
}

#[test]
fn client_connection_close_response_is_not_reusable() {
    let (mut codec, _) = client_with_request(Method::Get, false);
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"[..]);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    assert!(!codec.is_reusable());
}

#[test]
fn client_response_head_limit_is_80_kib() {
    let response = |value_len: usize| {
        let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx: ".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', value_len));
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes
    };
    let at_limit = response(80 * 1024 - 43);
    assert_eq!(at_limit.len(), 80 * 1024);
    let (mut codec, _) = client_with_request(Method::Get, false);
    assert!(matches!(
        codec.decode(&mut BytesMut::from(&at_limit[..])),
        Ok(Some(ResponseEvent::Headers(_)))
    ));
    let (mut codec, _) = client_with_request(Method::Get, false);
    let over = response(80 * 1024 - 42);
    assert_eq!(
        codec.decode(&mut BytesMut::from(&over[..])).map(|_| ()),
        Err(CodecError::HeadersTooLarge)
    );
}

#[test]
fn encode_upstream_close_does_not_close_downstream() {
    let mut head = ResponseHead::new(200);
    head.keep_alive = false; // e.g. decoded from a close-delimited upstream response
    assert_eq!(
        respond(GET, head, Some(b"abc")),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into(),
            false
        )
    );
    let mut head = ResponseHead::new(200);
    head.headers.insert("connection", "close");
    assert!(respond(GET, head, None).1);
}

#[test]
fn encode_refused_upgrade_closes_and_accepted_one_tunnels() {
    let upgrade =
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let mut head = ResponseHead::new(200);
    head.headers.insert("content-length", "2");
    assert_eq!(
        respond(upgrade, head, Some(b"ok")),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into(),
            true
        )
    );
    let mut codec = ServerCodec::new(settings());
    let mut buf = BytesMut::from(&upgrade[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(RequestEvent::Headers(_)))
    ));
    let mut out = BytesMut::new();
    codec.encode_headers(&ResponseHead::new(101), false, &mut out);
    codec.encode_data(b"frame", false, &mut out);
    assert_eq!(&out[..], b"HTTP/1.1 101 Switching Protocols\r\n\r\nframe");
    assert!(!codec.should_close());
}
