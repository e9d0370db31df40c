//! `x-forwarded-for`, `use_remote_address`, `xff_num_trusted_hops`, `internal_address_config`
//! and the header sanitizing that follows from them, end to end: the real `nuncio` binary
//! between a raw-socket client on 127.0.0.1 and a recording upstream.
//!
//! Every expectation below was first observed on Envoy 1.40 with the same config and request
//! (the client is always 127.0.0.1, a loopback peer, so an appended hop is the proxy's own
//! local address rather than 127.0.0.1).

mod http_support;

use http_support::*;

/// Spoofable headers every request carries, as a client outside the trusted network would.
const SPOOFED: &str = "x-envoy-internal: true\r\n\
x-envoy-external-address: 9.9.9.9\r\n\
x-envoy-retry-on: 5xx\r\n\
x-envoy-max-retries: 2\r\n\
x-envoy-upstream-rq-timeout-ms: 4000\r\n\
x-envoy-force-trace: 1\r\n\
x-envoy-downstream-service-cluster: z\r\n\
x-envoy-original-path: /p\r\n\
x-envoy-foo: bar\r\n\
x-secret: s\r\n\
x-request-id: myid\r\n\
x-forwarded-proto: https\r\n";

const IAC_127: &str =
    "          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}, {address_prefix: 10.0.0.0, prefix_len: 8}]}\n";

/// A proxy with `hcm_extra` HCM fields and `internal_only_headers: [x-secret]`.
fn proxy(up: &HttpUpstream, hcm_extra: &str) -> Nuncio {
    let cfg = config(up.addr, hcm_extra, "", "", "").replace(
        "          route_config:\n",
        "          route_config:\n            internal_only_headers: [X-Secret]\n",
    );
    Nuncio::start(&cfg)
}

/// Sends `SPOOFED` plus `extra` header lines; returns what the upstream received.
fn send(proxy: &Nuncio, up: &HttpUpstream, extra: &str) -> Received {
    let before = up.requests().len();
    let r = request(
        proxy.listener,
        &format!("GET /a HTTP/1.1\r\nHost: h\r\n{SPOOFED}{extra}\r\n"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    up.requests()[before].clone()
}

fn local() -> String {
    nuncio::http::local_address::local_address().to_string()
}

fn assert_external(got: &Received, edge: bool) {
    for gone in [
        "x-envoy-internal",
        "x-envoy-retry-on",
        "x-envoy-max-retries",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-force-trace",
        "x-secret",
    ] {
        assert_eq!(got.header(gone), None, "{gone}: {got:?}");
    }
    assert_eq!(got.header("x-envoy-foo"), Some("bar"));
    // The router's own default timeout, not the client's 4000.
    assert_eq!(got.header("x-envoy-expected-rq-timeout-ms"), Some("15000"));
    for edge_only in [
        "x-envoy-downstream-service-cluster",
        "x-envoy-original-path",
    ] {
        assert_eq!(
            got.header(edge_only).is_none(),
            edge,
            "{edge_only}: {got:?}"
        );
    }
    assert_eq!(got.header("x-request-id") != Some("myid"), edge, "{got:?}");
}

fn assert_internal(got: &Received) {
    assert_eq!(got.header("x-envoy-internal"), Some("true"), "{got:?}");
    assert_eq!(got.header("x-envoy-external-address"), Some("9.9.9.9"));
    assert_eq!(got.header("x-envoy-downstream-service-cluster"), Some("z"));
    assert_eq!(got.header("x-envoy-force-trace"), Some("1"));
    assert_eq!(got.header("x-secret"), Some("s"));
    assert_eq!(got.header("x-request-id"), Some("myid"));
    // The router honoured the client's timeout.
    assert_eq!(got.header("x-envoy-expected-rq-timeout-ms"), Some("4000"));
}

// === use_remote_address: true (the edge) ===

#[test]
fn edge_without_internal_address_config_trusts_nobody() {
    let up = HttpUpstream::hello();
    let p = proxy(&up, "          use_remote_address: true\n");
    let got = send(&p, &up, "x-forwarded-for: 1.2.3.4\r\n");
    assert_external(&got, true);
    assert_eq!(
        got.header("x-forwarded-for"),
        Some(format!("1.2.3.4,{}", local()).as_str())
    );
    assert_eq!(got.header("x-envoy-external-address"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    // No x-forwarded-for at all: still external (loopback is not internal by default).
    let got = send(&p, &up, "");
    assert_external(&got, true);
    assert_eq!(got.header("x-forwarded-for"), Some(local().as_str()));
}

#[test]
fn edge_trusts_a_listed_peer_only_without_x_forwarded_for() {
    let up = HttpUpstream::hello();
    let p = proxy(
        &up,
        &format!("          use_remote_address: true\n{IAC_127}"),
    );
    let got = send(&p, &up, "");
    assert_internal(&got);
    assert_eq!(got.header("x-forwarded-for"), Some(local().as_str()));
    // A forwarded request is external even from an internal peer; so is an empty header.
    for xff in ["x-forwarded-for: 1.2.3.4\r\n", "x-forwarded-for:\r\n"] {
        let got = send(&p, &up, xff);
        assert_external(&got, true);
        assert_eq!(got.header("x-envoy-external-address"), Some("127.0.0.1"));
    }
}

#[test]
fn internal_address_config_without_ranges_is_envoys_legacy_set() {
    let up = HttpUpstream::hello();
    let p = proxy(
        &up,
        "          use_remote_address: true\n          internal_address_config: {unix_sockets: true}\n",
    );
    assert_internal(&send(&p, &up, ""));
}

#[test]
fn trusted_hops_take_the_client_from_x_forwarded_for() {
    let up = HttpUpstream::hello();
    let p = proxy(
        &up,
        "          use_remote_address: true\n          xff_num_trusted_hops: 2\n",
    );
    // Two lines are one list (joined with ','); the 2nd entry from the right is the client.
    let got = send(
        &p,
        &up,
        "x-forwarded-for: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\n",
    );
    assert_external(&got, true);
    assert_eq!(got.header("x-envoy-external-address"), Some("2.2.2.2"));
    assert_eq!(
        got.header("x-forwarded-for"),
        Some(format!("1.1.1.1,2.2.2.2, 3.3.3.3,{}", local()).as_str())
    );
    // The trusted proxy's x-forwarded-proto stands.
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    // Too few entries: the peer is the client.
    let got = send(&p, &up, "x-forwarded-for: 5.6.7.8\r\n");
    assert_eq!(got.header("x-envoy-external-address"), Some("127.0.0.1"));
}

// === use_remote_address: false (behind a trusted proxy) ===

#[test]
fn inner_proxy_decides_from_a_single_x_forwarded_for_entry() {
    let up = HttpUpstream::hello();
    let p = proxy(&up, IAC_127);
    let got = send(&p, &up, "x-forwarded-for: 10.1.1.1\r\n");
    assert_internal(&got);
    assert_eq!(got.header("x-forwarded-for"), Some("10.1.1.1"));
    // Two entries, an unparsable one, or none (even from an internal peer): external, but
    // not an edge: the inner hop's headers, request id and x-forwarded-proto stay.
    for xff in [
        "x-forwarded-for: 1.2.3.4, 10.1.1.1\r\n",
        "x-forwarded-for: garbage\r\n",
        "",
    ] {
        let got = send(&p, &up, xff);
        assert_external(&got, false);
        assert_eq!(got.header("x-envoy-external-address"), Some("9.9.9.9"));
        assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    }
}

// === what the router then does ===

#[test]
fn retry_headers_steer_the_router_only_from_internal_clients() {
    let up = HttpUpstream::start(|_, _| Reply::status(503));
    let raw =
        "GET / HTTP/1.1\r\nHost: h\r\nx-envoy-retry-on: 5xx\r\nx-envoy-max-retries: 2\r\n\r\n";
    let p = proxy(&up, "          use_remote_address: true\n");
    assert_eq!(request(p.listener, raw).unwrap().status, 503);
    assert_eq!(up.requests().len(), 1, "external: one attempt");
    drop(p);
    let p = proxy(
        &up,
        &format!("          use_remote_address: true\n{IAC_127}"),
    );
    assert_eq!(request(p.listener, raw).unwrap().status, 503);
    assert_eq!(up.requests().len(), 1 + 3, "internal: three attempts");
}

// === the access log sees the trusted client ===

#[test]
fn access_log_downstream_remote_address_is_the_final_remote_address() {
    let up = HttpUpstream::hello();
    let log = std::env::temp_dir().join(format!("nuncio-xff-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let hcm = format!(
        "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format: {{text_format_source: {{inline_string: \"%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\\n\"}}}}\n",
        log.display()
    );
    let p = Nuncio::start_with(
        &config(up.addr, &hcm, "", "", ""),
        &["--concurrency", "1", "--file-flush-interval-msec", "50"],
    );
    for xff in ["1.2.3.4", "1.2.3.4, 5.6.7.8", "garbage"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: {xff}\r\n\r\n");
        assert_eq!(request(p.listener, &raw).unwrap().status, 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= 3 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&log);
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Taken from x-forwarded-for: no port (Envoy logs `ip:0`); unparsable: the peer.
    assert_eq!(lines[0], "1.2.3.4:0 1.2.3.4");
    assert_eq!(lines[1], "5.6.7.8:0 5.6.7.8");
    assert!(
        lines[2].starts_with("127.0.0.1:") && lines[2].ends_with(" 127.0.0.1"),
        "{lines:?}"
    );
}

// === the route's header formatters see the trusted client ===

/// `request_headers_to_add` / `response_headers_to_add` with the downstream address
/// formatters: `%DOWNSTREAM_REMOTE_ADDRESS%` & co. are the final remote address (after
/// `x-forwarded-for` handling, port 0 when taken from the header), the `DIRECT` ones the peer,
/// `LOCAL` the listener side; `%UPSTREAM_HOST%` is empty on the request and the host on the
/// response. Observed identically on Envoy 1.40 for use_remote_address false / true /
/// true + xff_num_trusted_hops 1, with x-forwarded-for absent, `1.2.3.4` and `1.2.3.4, 5.6.7.8`.
#[test]
fn header_formatters_see_the_final_remote_address() {
    let up = HttpUpstream::hello();
    let formatters = [
        ("x-dra", "%DOWNSTREAM_REMOTE_ADDRESS%"),
        ("x-drawp", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
        ("x-drp", "%DOWNSTREAM_REMOTE_PORT%"),
        ("x-ddra", "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
        (
            "x-ddrawp",
            "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
        ),
        ("x-ddrp", "%DOWNSTREAM_DIRECT_REMOTE_PORT%"),
        ("x-dla", "%DOWNSTREAM_LOCAL_ADDRESS%"),
        ("x-dlawp", "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
        ("x-dlp", "%DOWNSTREAM_LOCAL_PORT%"),
        ("x-uh", "[%UPSTREAM_HOST%]"),
    ];
    let mut to_add = String::from("            request_headers_to_add:\n");
    for (name, value) in formatters {
        to_add += &format!("            - header: {{key: {name}, value: \"{value}\"}}\n");
    }
    to_add += "            response_headers_to_add:\n";
    for (name, value) in [
        ("x-rdra", "%DOWNSTREAM_REMOTE_ADDRESS%"),
        ("x-ruh", "%UPSTREAM_HOST%"),
    ] {
        to_add += &format!("            - header: {{key: {name}, value: \"{value}\"}}\n");
    }
    for (hcm, xff, remote) in [
        ("", "", None),
        ("", "1.2.3.4", Some("1.2.3.4")),
        ("", "1.2.3.4, 5.6.7.8", Some("5.6.7.8")),
        ("          use_remote_address: true\n", "1.2.3.4", None),
        (
            "          use_remote_address: true\n          xff_num_trusted_hops: 1\n",
            "1.2.3.4, 5.6.7.8",
            Some("5.6.7.8"),
        ),
    ] {
        let cfg = config(up.addr, hcm, "", "", "").replace(
            "          route_config:\n",
            &format!("          route_config:\n{to_add}"),
        );
        let p = Nuncio::start(&cfg);
        let mut client = Client::connect(p.listener);
        let peer = client.stream.local_addr().unwrap();
        let xff_line = if xff.is_empty() {
            String::new()
        } else {
            format!("x-forwarded-for: {xff}\r\n")
        };
        client.send(format!("GET / HTTP/1.1\r\nHost: h\r\n{xff_line}\r\n").as_bytes());
        let r = client.read_response().unwrap();
        assert_eq!(r.status, 200);
        let got = up.requests().pop().unwrap();
        let case = format!("{hcm:?} xff {xff:?}: {got:?}");
        let (dra, drawp, drp) = match remote {
            Some(ip) => (format!("{ip}:0"), ip.to_string(), "0".to_string()),
            None => (
                peer.to_string(),
                peer.ip().to_string(),
                peer.port().to_string(),
            ),
        };
        let listener = p.listener;
        let expected = [
            ("x-dra", dra.clone()),
            ("x-drawp", drawp),
            ("x-drp", drp),
            ("x-ddra", peer.to_string()),
            ("x-ddrawp", peer.ip().to_string()),
            ("x-ddrp", peer.port().to_string()),
            ("x-dla", listener.to_string()),
            ("x-dlawp", listener.ip().to_string()),
            ("x-dlp", listener.port().to_string()),
            ("x-uh", "[]".to_string()),
        ];
        for (name, value) in expected {
            assert_eq!(got.header(name), Some(value.as_str()), "{name}, {case}");
        }
        assert_eq!(r.header("x-rdra"), Some(dra.as_str()), "{case}");
        assert_eq!(
            r.header("x-ruh"),
            Some(up.addr.to_string().as_str()),
            "{case}"
        );
    }
}

// === original_ip_detection_extensions (use_remote_address: false) ===

const XFF_EXT: &str =
    "type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig";
const HEADER_EXT: &str = "type.googleapis.com/envoy.extensions.http.original_ip_detection.custom_header.v3.CustomHeaderConfig";

/// A proxy with one original IP detection extension (`type_url` + `fields`), 10/8 and
/// 127.0.0.1 internal, and the final remote address in `x-dra` upstream.
fn detecting_proxy(up: &HttpUpstream, type_url: &str, fields: &str) -> Nuncio {
    let hcm = format!(
        "{IAC_127}          original_ip_detection_extensions:\n          - name: detect\n            typed_config: {{\"@type\": {type_url}, {fields}}}\n"
    );
    let cfg = config(up.addr, &hcm, "", "", "").replace(
        "          route_config:\n",
        "          route_config:\n            request_headers_to_add: [{header: {key: x-dra, value: \"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\"}}]\n",
    );
    Nuncio::start(&cfg)
}

/// Sends `header` (if any); returns the status and, when forwarded, the upstream's
/// (x-dra, x-envoy-internal, x-forwarded-for).
fn detect(p: &Nuncio, up: &HttpUpstream, header: &str) -> (u16, Option<[Option<String>; 3]>) {
    let before = up.requests().len();
    let line = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    let r = request(
        p.listener,
        &format!("GET / HTTP/1.1\r\nHost: h\r\n{line}\r\n"),
    )
    .unwrap();
    let got = up.requests().get(before).map(|got| {
        ["x-dra", "x-envoy-internal", "x-forwarded-for"].map(|n| got.header(n).map(str::to_string))
    });
    (r.status, got)
}

fn seen(dra: &str, internal: bool, xff: Option<&str>) -> (u16, Option<[Option<String>; 3]>) {
    (
        200,
        Some([
            Some(dra.to_string()),
            internal.then(|| "true".to_string()),
            xff.map(str::to_string),
        ]),
    )
}

/// `envoy.http.original_ip_detection.xff` with `xff_trusted_cidrs` (Envoy 1.40 observed): a
/// trusted peer's x-forwarded-for is read from the right past the trusted entries (all
/// trusted: the leftmost); only a single entry may be internal; a garbled entry or no header
/// leaves the peer; an untrusted peer's header is ignored and the peer is appended.
#[test]
fn xff_extension_with_trusted_cidrs() {
    let up = HttpUpstream::hello();
    let trusted = detecting_proxy(
        &up,
        XFF_EXT,
        "xff_trusted_cidrs: {cidrs: [{address_prefix: 127.0.0.1, prefix_len: 32}, {address_prefix: 10.0.0.0, prefix_len: 8}]}",
    );
    let x = |v: &str| format!("x-forwarded-for: {v}");
    assert_eq!(detect(&trusted, &up, ""), seen("127.0.0.1", false, None));
    for (xff, dra, internal) in [
        ("1.2.3.4", "1.2.3.4", false),
        ("1.2.3.4,10.0.0.1", "1.2.3.4", false),
        ("10.0.0.2,10.0.0.1", "10.0.0.2", false),
        ("garbage,10.0.0.1", "127.0.0.1", false),
        ("10.0.0.3", "10.0.0.3", true),
    ] {
        assert_eq!(
            detect(&trusted, &up, &x(xff)),
            seen(dra, internal, Some(xff)),
            "{xff}"
        );
    }
    let untrusted = detecting_proxy(
        &up,
        XFF_EXT,
        "xff_trusted_cidrs: {cidrs: [{address_prefix: 192.168.0.0, prefix_len: 16}]}",
    );
    let local = local();
    assert_eq!(
        detect(&untrusted, &up, ""),
        seen("127.0.0.1", false, Some(&local))
    );
    assert_eq!(
        detect(&untrusted, &up, &x("10.0.0.3")),
        seen("127.0.0.1", false, Some(&format!("10.0.0.3,{local}")))
    );
    // skip_xff_append: false appends the peer after the detection.
    let appending = detecting_proxy(
        &up,
        XFF_EXT,
        "xff_num_trusted_hops: 1, skip_xff_append: false",
    );
    assert_eq!(
        detect(&appending, &up, &x("10.0.0.2,10.0.0.1")),
        seen(
            "10.0.0.2",
            false,
            Some(&format!("10.0.0.2,10.0.0.1,{local}"))
        )
    );
    assert_eq!(
        detect(&appending, &up, &x("1.2.3.4")),
        seen("127.0.0.1", false, Some(&format!("1.2.3.4,{local}")))
    );
}

/// `envoy.http.original_ip_detection.custom_header` (Envoy 1.40 observed): the header's
/// address is the client, internal only with `allow_extension_to_set_address_as_trusted`;
/// x-forwarded-for is not consulted; `reject_with_status` answers a request without a usable
/// header (a status outside 400-511 becomes 403) with an empty body and counts
/// `downstream_rq_rejected_via_ip_detection`.
#[test]
fn custom_header_extension_detects_or_rejects() {
    let up = HttpUpstream::hello();
    let trusting = detecting_proxy(
        &up,
        HEADER_EXT,
        "header_name: x-real-ip, allow_extension_to_set_address_as_trusted: true",
    );
    assert_eq!(
        detect(&trusting, &up, "x-real-ip: 10.0.0.9"),
        seen("10.0.0.9", true, None)
    );
    assert_eq!(
        detect(&trusting, &up, "x-real-ip: 1.2.3.4"),
        seen("1.2.3.4", false, None)
    );
    assert_eq!(
        detect(&trusting, &up, "x-real-ip: bad"),
        seen("127.0.0.1", false, None)
    );
    assert_eq!(
        detect(&trusting, &up, "x-forwarded-for: 10.0.0.3"),
        seen("127.0.0.1", false, Some("10.0.0.3"))
    );
    let plain = detecting_proxy(&up, HEADER_EXT, "header_name: x-real-ip");
    assert_eq!(
        detect(&plain, &up, "x-real-ip: 10.0.0.9"),
        seen("10.0.0.9", false, None)
    );

    let rejecting = detecting_proxy(
        &up,
        HEADER_EXT,
        "header_name: x-real-ip, reject_with_status: {code: Unauthorized}",
    );
    let r = request(
        rejecting.listener,
        "GET / HTTP/1.1\r\nHost: h\r\nx-real-ip: bad\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.body.len()), (401, 0), "{r:?}");
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(detect(&rejecting, &up, ""), (401, None));
    assert_eq!(
        detect(&rejecting, &up, "x-real-ip: 1.2.3.4"),
        seen("1.2.3.4", false, None)
    );
    rejecting.wait_stat("http.ingress.downstream_rq_rejected_via_ip_detection", 2);
    let to_403 = detecting_proxy(
        &up,
        HEADER_EXT,
        "header_name: x-real-ip, reject_with_status: {code: 200}",
    );
    assert_eq!(detect(&to_403, &up, ""), (403, None));
}

/// The extensions replace the HCM's XFF settings: mixing them is refused at start with
/// Envoy's message and the field's path, as is a bad extension config.
#[test]
fn original_ip_detection_config_errors_name_the_field() {
    let up = HttpUpstream::hello();
    let ext = format!(
        "          original_ip_detection_extensions:\n          - name: detect\n            typed_config: {{\"@type\": {XFF_EXT}, xff_num_trusted_hops: 1}}\n"
    );
    for (extra, message) in [
        (
            format!("          use_remote_address: true\n{ext}"),
            "original_ip_detection_extensions: Original IP detection extensions and use_remote_address may not be mixed",
        ),
        (
            format!("          xff_num_trusted_hops: 1\n{ext}"),
            "original_ip_detection_extensions: Original IP detection extensions and xff_num_trusted_hops may not be mixed",
        ),
        (
            ext.replace("xff_num_trusted_hops: 1", "xff_num_trusted_hops: 1, xff_trusted_cidrs: {cidrs: []}"),
            "typed_config: Cannot set both xff_num_trusted_hops and xff_trusted_cidrs",
        ),
        (
            ext.replace(XFF_EXT, HEADER_EXT).replace("xff_num_trusted_hops: 1", "header_name: x, reject_with_status: {code: 999}"),
            "typed_config.reject_with_status.code",
        ),
    ] {
        let path = std::env::temp_dir().join(format!("nuncio-oip-{}.yaml", std::process::id()));
        std::fs::write(&path, config(up.addr, &extra, "", "", "")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nuncio"))
            .args(["--mode", "validate", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}");
        assert!(stderr.contains(message), "{message} not in {stderr}");
    }
}
