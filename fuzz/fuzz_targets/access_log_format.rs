//! Fuzzes what the access log and the admin's /stats parse from untrusted text: an access-log
//! format string (config) and a `/stats` query string (network). Any input gives a value or an
//! error, never a panic; a format that parses is also rendered, with every field set and with
//! none, and a stats query that parses renders a small store in its format.
//!
//! `cargo +nightly fuzz run access_log_format fuzz/corpus/access_log_format`
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use nuncio::access_log::{Formatter, HeaderList, ResponseFlag, StreamInfo, TimeFormat};
use nuncio::stats::{ImportMode, StatsRequest, Store, TagProducer, Unit};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = Vec::new();
    if let Ok(f) = Formatter::text(text) {
        let req = [(":path", "/x"), ("user-agent", "é\"\\\n")];
        let headers = HeaderList(&req);
        let mut info = StreamInfo {
            start_time: Some(UNIX_EPOCH + Duration::new(1_795_689_427, 221_744_123)),
            request_headers: Some(&headers),
            response_headers: Some(&headers),
            response_code: Some(200),
            duration: Some(Duration::from_millis(3)),
            downstream_remote_address: "[::1]:80".parse().ok(),
            upstream_host: "127.0.0.1:8080".parse().ok(),
            connection_id: Some(7),
            ..StreamInfo::default()
        };
        info.response_flags
            .set(ResponseFlag::UpstreamRequestTimeout);
        f.format(&info, &mut out);
        f.format(&StreamInfo::default(), &mut out);
    }
    if let Ok(t) = TimeFormat::parse(text) {
        t.write(
            UNIX_EPOCH + Duration::from_secs(u64::from(data.len() as u32) * 86_400_007),
            &mut out,
        );
    }
    if let Ok(req) = StatsRequest::from_query(text, data.first().is_some_and(|b| b & 1 == 1)) {
        // Built once: compiling the tag regexes per input would make the target crawl.
        static SETUP: OnceLock<(Store, TagProducer)> = OnceLock::new();
        let (store, tags) = SETUP.get_or_init(|| {
            let store = Store::new();
            store.counter("cluster.app.upstream_rq_200").inc();
            store
                .gauge(
                    "listener.127.0.0.1_80.worker_0.downstream_cx_active",
                    ImportMode::Accumulate,
                )
                .inc();
            store
                .histogram("http.ingress.downstream_rq_time", Unit::Milliseconds)
                .record(3);
            (store, TagProducer::new())
        });
        let _ = req.render(&store.snapshot(), tags);
    }
});
