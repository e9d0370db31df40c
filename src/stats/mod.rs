//! Stats: counters, gauges and histograms under Envoy's names (`server.*`, `listener.<addr>.*`,
//! `http.<prefix>.*`, `cluster.<name>.*`, `tcp.<prefix>.*`).
//!
//! Owns the `Store` (the registry, and one shard per worker that the hot path writes without
//! locks), the handles the data path keeps (`Counter`, `Gauge`, `Histogram`), the merged views
//! the admin endpoint reads (`Snapshot`), their renderings (`StatsRequest::render`: text, JSON,
//! Prometheus with Envoy's tag extraction) and the `server.*` gauges (`ServerStats`).
//!
//! Called by the server (creates the store, hands `store.for_worker()` to each worker, calls
//! `merge_histograms` and `ServerStats::flush` every stats flush interval), the data path
//! (creates handles at setup time, increments them per event) and the admin endpoint
//! (`StatsRequest::from_query(query)?.render(&store.snapshot(), &tag_producer)`,
//! `store.reset_counters()`). Calls `std`, `log` and `regex`.

mod counter;
mod gauge;
mod histogram;
mod json_format;
mod prometheus_format;
mod server_stats;
mod shard;
mod stats_request;
mod store;
mod tag_extractor;
mod text_format;

pub use counter::Counter;
pub use gauge::{Gauge, ImportMode};
pub use histogram::{
    Bin, Histogram, HistogramStatistics, Unit, DEFAULT_BUCKETS, SUPPORTED_QUANTILES,
};
pub use server_stats::{MemoryUse, ServerState, ServerStats};
pub use stats_request::{StatsFormat, StatsRequest, StatsRequestError, StatsType};
pub use store::{HistogramValue, Snapshot, StatValue, Store};
pub use tag_extractor::{Tag, TagProducer};
