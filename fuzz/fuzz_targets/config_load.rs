//! Fuzzes the config loader: any bytes, as a config file, give a `Bootstrap` or a
//! `ConfigError`, never a panic. When the input loads, the kept typed configs are read back
//! through `Node` (what the filter factories do) to exercise that path too.
//!
//! `cargo +nightly fuzz run config_load fuzz/corpus/config_load`
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuncio::config::{load_str, Node};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(text) {
        Ok(bootstrap) => {
            for listener in &bootstrap.static_resources.listeners {
                for chain in listener
                    .filter_chains
                    .iter()
                    .chain(&listener.default_filter_chain)
                {
                    for filter in &chain.filters {
                        let node = filter.config_node();
                        let _ = node.check_fields(&["cluster", "stat_prefix"], &[]);
                        let _ = node.opt("cluster", Node::non_empty_str);
                        let _ = node.opt("idle_timeout", Node::duration);
                    }
                }
            }
            let _ = bootstrap.cluster_names();
        }
        Err(e) => {
            // Every error renders, and its path is one line (odd keys are quoted and escaped).
            assert!(!e.to_string().is_empty());
            assert!(!e.path.contains(['\n', '\r']), "path {:?}", e.path);
        }
    }
});
