//! Stats: counters, gauges and histograms under Envoy's names (`server.*`, `listener.<addr>.*`,
//! `http.<prefix>.*`, `cluster.<name>.*`, `tcp.<prefix>.*`).
//!
//! Owns the `Store` (the registry, and one shard per worker that the hot path writes without
//! locks), the handles the data path keeps (`Counter`, `Gauge`, `Histogram`), and the merged
//! views the admin endpoint reads. Called by the server (creates the store, hands
//! `store.for_worker()` to each worker), the data path (creates handles at setup time, increments
//! them per event) and the admin endpoint (reads, renders, resets). Calls nothing but `std` and
//! `log`.

mod counter;
mod gauge;
mod histogram;
mod shard;
mod store;

pub use counter::Counter;
pub use gauge::{Gauge, ImportMode};
pub use histogram::{
    Bin, Histogram, HistogramStatistics, Unit, DEFAULT_BUCKETS, SUPPORTED_QUANTILES,
};
pub use store::{HistogramValue, StatValue, Store};
