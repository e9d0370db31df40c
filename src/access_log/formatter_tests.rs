//! Formatter tests against lines a real Envoy 1.40 wrote for the same requests (the config and
//! requests are described in each test; the expected strings are copied from Envoy's log files).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::formatter::{FormatError, Formatter};
use super::response_flags::{ResponseFlag, ResponseFlags};
use super::stream_info::{HeaderList, StreamInfo};

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("test address"))
}

fn start() -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::new(1_795_689_427, 221_744_123))
}

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/hello/world?q=1"),
    (":authority", "127.0.0.1:41187"),
    ("user-agent", "ua-test"),
    ("x-b", "bee"),
    ("x-request-id", "a0f21607-561b-4f96-b115-f829257433c9"),
];
const RESPONSE: &[(&str, &str)] = &[
    ("content-length", "6"),
    ("x-up", "1"),
    ("x-envoy-upstream-service-time", "3"),
];

/// `curl -H 'x-b: bee' -H 'User-Agent: ua-test' http://127.0.0.1:41187/hello/world?q=1` through
/// Envoy's HTTP connection manager to a Python upstream answering `hello\n`.
fn proxied() -> StreamInfo<'static> {
    StreamInfo {
        start_time: start(),
        request_headers: Some(&HeaderList(REQUEST)),
        response_headers: Some(&HeaderList(RESPONSE)),
        response_trailers: None,
        response_code: Some(200),
        response_flags: ResponseFlags::NONE,
        response_code_details: Some("via_upstream"),
        bytes_received: 0,
        bytes_sent: 6,
        duration: Some(Duration::from_micros(4_900)),
        request_duration: Some(Duration::from_micros(300)),
        response_duration: Some(Duration::from_micros(3_200)),
        upstream_host: addr("127.0.0.1:45977"),
        upstream_cluster: Some("app"),
        upstream_local_address: addr("127.0.0.1:57098"),
        downstream_remote_address: addr("127.0.0.1:40466"),
        downstream_local_address: addr("127.0.0.1:41187"),
        route_name: Some("main_route"),
        protocol: Some("HTTP/1.1"),
        upstream_request_attempt_count: Some(1),
        connection_id: Some(1),
        health_check: false,
    }
}

fn render(f: &Formatter, info: &StreamInfo<'_>) -> String {
    let mut out = Vec::new();
    f.format(info, &mut out);
    String::from_utf8(out).expect("utf-8 line")
}

const CUSTOM: &str = "%START_TIME(%Y/%m/%dT%H:%M:%S.%3f%z)%|%START_TIME(%s)%|%START_TIME(%s.%6f)%|%START_TIME%|\
%REQ(:PATH):5%|%REQ(X-NOPE)%|%RESP(X-UP)%|%RESP(CONTENT-LENGTH)%|%TRAILER(GRPC-STATUS)%|%RESPONSE_CODE%|\
%RESPONSE_FLAGS%|%RESPONSE_CODE_DETAILS%|%BYTES_RECEIVED%|%BYTES_SENT%|%DURATION%|%REQUEST_DURATION%|\
%RESPONSE_DURATION%|%UPSTREAM_HOST%|%UPSTREAM_CLUSTER%|%UPSTREAM_LOCAL_ADDRESS%|%DOWNSTREAM_REMOTE_ADDRESS%|\
%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|%DOWNSTREAM_LOCAL_ADDRESS%|%ROUTE_NAME%|%PROTOCOL%|\
%UPSTREAM_REQUEST_ATTEMPT_COUNT%|%CONNECTION_ID%|%%|%REQ(X-A?X-B)%\n";

#[test]
fn default_format_matches_envoy() {
    assert_eq!(
        render(&Formatter::envoy_default(), &proxied()),
        "[2026-11-26T10:37:07.221Z] \"GET /hello/world?q=1 HTTP/1.1\" 200 - 0 6 4 3 \"-\" \"ua-test\" \
         \"a0f21607-561b-4f96-b115-f829257433c9\" \"127.0.0.1:41187\" \"127.0.0.1:45977\"\n"
    );
}

#[test]
fn every_operator_matches_envoy() {
    let f = Formatter::text(CUSTOM).expect("valid format");
    assert_eq!(
        render(&f, &proxied()),
        "2026/11/26T10:37:07.221+0000|1795689427|1795689427.221744|2026-11-26T10:37:07.221Z|/hell|-|1|6|-|200|-|\
         via_upstream|0|6|4|0|3|127.0.0.1:45977|app|127.0.0.1:57098|127.0.0.1:40466|127.0.0.1|127.0.0.1:41187|\
         main_route|HTTP/1.1|1|1|%|bee\n"
    );
}

#[test]
fn direct_response_matches_envoy() {
    // `GET /nope` answered by a route's direct_response 404.
    let req: &[(&str, &str)] = &[
        (":method", "GET"),
        (":path", "/nope"),
        (":authority", "127.0.0.1:41187"),
    ];
    let info = StreamInfo {
        start_time: start(),
        request_headers: Some(&HeaderList(req)),
        response_headers: Some(&HeaderList(&[])),
        response_code: Some(404),
        response_code_details: Some("direct_response"),
        duration: Some(Duration::from_micros(200)),
        request_duration: Some(Duration::ZERO),
        downstream_remote_address: addr("127.0.0.1:40502"),
        downstream_local_address: addr("127.0.0.1:41187"),
        protocol: Some("HTTP/1.1"),
        upstream_request_attempt_count: Some(0),
        connection_id: Some(8),
        ..StreamInfo::default()
    };
    let f = Formatter::text(CUSTOM).expect("valid format");
    assert!(
        render(&f, &info).ends_with(
            "|/nope|-|-|-|-|404|-|direct_response|0|0|0|0|-|-|-|-|127.0.0.1:40502|127.0.0.1|127.0.0.1:41187|-|\
             HTTP/1.1|0|8|%|-\n"
        ),
        "{}",
        render(&f, &info)
    );
}

#[test]
fn tcp_proxy_default_line_matches_envoy() {
    // tcp_proxy with an access log and no format: one line per connection.
    let info = StreamInfo {
        start_time: Some(UNIX_EPOCH + Duration::from_millis(1_795_689_428_155)),
        bytes_received: 46,
        bytes_sent: 126,
        duration: Some(Duration::from_millis(4)),
        upstream_host: addr("127.0.0.1:45977"),
        ..StreamInfo::default()
    };
    assert_eq!(
        render(&Formatter::envoy_default(), &info),
        "[2026-11-26T10:37:08.155Z] \"- - -\" 0 - 46 126 4 - \"-\" \"-\" \"-\" \"-\" \"127.0.0.1:45977\"\n"
    );
}

#[test]
fn json_format_matches_envoy() {
    let yaml = r#"
code: "%RESPONSE_CODE%"
flags: "%RESPONSE_FLAGS%"
path: "%REQ(:PATH)%"
nope: "%REQ(X-NOPE)%"
bytes: "%BYTES_SENT%"
dur: "%DURATION%"
lit: "plain text"
mixed: "a %RESPONSE_CODE% b"
nested: { up: "%UPSTREAM_HOST%", n: 5 }
st: "%START_TIME%"
"#;
    let map: serde_yaml::Mapping = serde_yaml::from_str(yaml).expect("yaml");
    let f = Formatter::json(&map, false).expect("valid json_format");
    assert_eq!(
        render(&f, &proxied()),
        "{\"bytes\":6,\"code\":200,\"dur\":4,\"flags\":\"-\",\"lit\":\"plain text\",\"mixed\":\"a 200 b\",\
         \"nested\":{\"n\":5,\"up\":\"127.0.0.1:45977\"},\"nope\":null,\"path\":\"/hello/world?q=1\",\
         \"st\":\"2026-11-26T10:37:07.221Z\"}\n"
    );
    let mut info = proxied();
    info.upstream_host = None;
    let line = render(&f, &info);
    assert!(line.contains("\"nested\":{\"n\":5,\"up\":null}"), "{line}");
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    assert_eq!(parsed["code"], 200);

    let omit = Formatter::json(&map, true).expect("valid json_format");
    assert!(!render(&omit, &proxied()).contains("nope"));
}

#[test]
fn json_strings_are_escaped() {
    let req: &[(&str, &str)] = &[("user-agent", "a\"b\\c\n\u{1}é")];
    let map: serde_yaml::Mapping = serde_yaml::from_str("ua: \"%REQ(USER-AGENT)%\"").expect("yaml");
    let info = StreamInfo {
        request_headers: Some(&HeaderList(req)),
        ..StreamInfo::default()
    };
    let line = render(&Formatter::json(&map, false).expect("valid"), &info);
    assert_eq!(line, "{\"ua\":\"a\\\"b\\\\c\\n\\u0001é\"}\n");
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    assert_eq!(parsed["ua"], "a\"b\\c\n\u{1}é");
}

#[test]
fn flags_and_truncation() {
    let mut info = proxied();
    info.response_flags
        .set(ResponseFlag::UpstreamRequestTimeout);
    info.response_flags
        .set(ResponseFlag::UpstreamRetryLimitExceeded);
    let f =
        Formatter::text("%RESPONSE_FLAGS% %REQ(USER-AGENT):2% %REQ(:PATH):100%").expect("valid");
    assert_eq!(render(&f, &info), "UT,URX ua /hello/world?q=1");
    let req: &[(&str, &str)] = &[("x", "ééé")];
    let info = StreamInfo {
        request_headers: Some(&HeaderList(req)),
        ..StreamInfo::default()
    };
    assert_eq!(
        render(&Formatter::text("%REQ(X):2%").expect("valid"), &info),
        "éé"
    );
}

#[test]
fn bad_formats_name_the_problem_like_envoy() {
    assert_eq!(
        Formatter::text("%FOO_BAR%").unwrap_err().to_string(),
        "Not supported field in StreamInfo: FOO_BAR"
    );
    assert_eq!(
        Formatter::text("x %CONNECTION_ID% 50%").unwrap_err(),
        FormatError::Malformed("x %CONNECTION_ID% 50%".into())
    );
    for bad in [
        "%REQ(X-A%",
        "%REQ()%",
        "%REQ(X?)%",
        "%DURATION(x)%",
        "%REQ(A):x%",
        "%REQ(A):%",
        "%",
        "%%%",
        "%START_TIME(%Y",
    ] {
        assert!(Formatter::text(bad).is_err(), "{bad} accepted");
    }
    assert_eq!(
        render(
            &Formatter::text("100%% %%").expect("valid"),
            &StreamInfo::default()
        ),
        "100% %"
    );
}

#[test]
fn formatting_reuses_the_buffer() {
    let f = Formatter::envoy_default();
    let info = proxied();
    let mut out = Vec::with_capacity(4096);
    f.format(&info, &mut out);
    let cap = out.capacity();
    let ptr = out.as_ptr();
    for _ in 0..100 {
        out.clear();
        f.format(&info, &mut out);
    }
    assert_eq!((out.capacity(), out.as_ptr()), (cap, ptr));
}

#[test]
fn ipv6_and_ipv4_addresses() {
    let info = StreamInfo {
        downstream_remote_address: addr("[::1]:8080"),
        upstream_host: addr("10.0.255.7:65535"),
        ..StreamInfo::default()
    };
    let f = Formatter::text(
        "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_HOST%",
    )
    .expect("valid");
    assert_eq!(render(&f, &info), "[::1]:8080 ::1 10.0.255.7:65535");
}
