//! Arbitrary admin requests (method and request-target) through `AdminServer::handle`: query
//! parsing, percent-decoding, stats filters compiled from the query, every endpoint's
//! rendering. Nothing an admin client sends may panic the server.
//!
//! Input: the first byte picks the method (GET, POST, HEAD, or the next bytes up to a space
//! as a token); the rest, as UTF-8 (lossy), is the request-target.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use nuncio::admin::AdminServer;
use nuncio::server::{instance, options};
use nuncio::stats::Store;

fn server() -> &'static Arc<AdminServer> {
    static SERVER: OnceLock<Arc<AdminServer>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let options = match options::parse(Vec::<String>::new()) {
            Ok(options::Command::Run(o)) => o,
            _ => unreachable!("no arguments parse to Run"),
        };
        let bootstrap =
            nuncio::config::load_str(instance::DEFAULT_CONFIG).expect("the default config loads");
        let store = Store::new();
        store.counter("cluster.app.upstream_rq_total").add(3);
        AdminServer::new(store, options, bootstrap, Arc::default())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (method, target) = match first % 4 {
        0 => ("GET", &*text),
        1 => ("POST", &*text),
        2 => ("HEAD", &*text),
        _ => text.split_once(' ').unwrap_or(("PUT", &*text)),
    };
    let response = server().handle(method, target);
    assert!((200..600).contains(&response.status));
});
