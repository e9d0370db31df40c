//! Access-log hot path: what one line costs a worker. `cargo bench --bench access_log`.
//!
//! - `format/default` and `format/json`: formatting Envoy's default line / a 6-field
//!   json_format line for a proxied request into a reused buffer (no allocation).
//! - `log/default_to_file`: `AccessLog::log` end to end as a worker sees it: filter, format,
//!   append to the file buffer (the flush thread writes to a file in the temp dir meanwhile).
//!
//! Multiply by 1,000,000 for the cost of logging a million requests on one core.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use nuncio::access_log::{
    AccessLogConfig, AccessLogManager, Formatter, HeaderList, ResponseFlags, StreamInfo,
};
use nuncio::config::{parse_yaml, Node};

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/api/v1/items?page=2"),
    (":authority", "example.com"),
    ("user-agent", "wrk/4.2.0"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-request-id", "a0f21607-561b-4f96-b115-f829257433c9"),
];
const RESPONSE: &[(&str, &str)] = &[
    ("content-length", "4096"),
    ("x-envoy-upstream-service-time", "1"),
];

fn addr(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

fn bench(c: &mut Criterion) {
    let req = HeaderList(REQUEST);
    let resp = HeaderList(RESPONSE);
    let info = StreamInfo {
        start_time: Some(SystemTime::now()),
        request_headers: Some(&req),
        response_headers: Some(&resp),
        response_code: Some(200),
        response_flags: ResponseFlags::NONE,
        response_code_details: Some("via_upstream"),
        bytes_sent: 4096,
        duration: Some(Duration::from_micros(1500)),
        upstream_host: addr("127.0.0.1:8080"),
        upstream_cluster: Some("app"),
        downstream_remote_address: addr("127.0.0.1:50000"),
        protocol: Some("HTTP/1.1"),
        upstream_request_attempt_count: Some(1),
        connection_id: Some(42),
        ..StreamInfo::default()
    };

    let mut g = c.benchmark_group("format");
    let default = Formatter::envoy_default();
    let mut out = Vec::with_capacity(1024);
    g.bench_function("default", |b| {
        b.iter(|| {
            out.clear();
            default.format(black_box(&info), &mut out);
        })
    });
    let json_map = serde_yaml::from_str(
        "code: '%RESPONSE_CODE%'\npath: '%REQ(:PATH)%'\nua: '%REQ(USER-AGENT)%'\nbytes: '%BYTES_SENT%'\ndur: '%DURATION%'\nstart: '%START_TIME%'\n",
    )
    .expect("yaml");
    let json = Formatter::json(&json_map, false).expect("json format");
    g.bench_function("json", |b| {
        b.iter(|| {
            out.clear();
            json.format(black_box(&info), &mut out);
        })
    });
    g.finish();

    let dir = std::env::temp_dir().join(format!("nuncio-bench-access-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("access.log");
    let manager = AccessLogManager::new(Duration::from_millis(100)).expect("flush thread");
    let doc = parse_yaml(&format!(
        "- typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n    path: {}\n",
        path.display()
    ))
    .expect("yaml");
    let cfg = AccessLogConfig::parse_list(&Node::with_path(&doc, "access_log")).expect("config");
    let log = manager.create(&cfg[0]).expect("open");
    let mut g = c.benchmark_group("log");
    g.bench_function("default_to_file", |b| b.iter(|| log.log(black_box(&info))));
    g.finish();
    manager.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
