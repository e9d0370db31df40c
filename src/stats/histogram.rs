//! Histograms: the `Histogram` handle a worker records into, its per-shard bucket array, and the
//! merged `HistogramStatistics` the admin endpoint reads (Envoy's `ParentHistogramImpl` and
//! `HistogramStatisticsImpl`).
//!
//! Buckets are log-linear with two significant decimal digits, the scheme of Circonus'
//! circllhist that Envoy uses: a value `v >= 10` lands in the bin `[m * 10^(d-1), (m+1) *
//! 10^(d-1))` where `d = floor(log10 v)` and `m` is its leading two digits (10..=99); values 1..=9
//! land in `[v, v + 0.1)` (circllhist's bins for integers below ten) and 0 in an exact zero bin.
//! The relative error is thus at most 10%, and at most 1% above 100. Every bound of Envoy's
//! default Prometheus buckets is a bin edge, and percentiles are computed from the bins the way
//! Envoy 1.40 computes them (see `HistogramStatistics::quantile`), so `/stats` prints the numbers
//! Envoy prints.
//!
//! Storage: each shard (one per worker, see `store.rs`) owns one `HistogramShard` per histogram,
//! cache-line aligned, whose decades of 90 bins are allocated on first use. Recording is three
//! relaxed atomic adds on memory only that shard writes. Reads merge all shards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The unit a histogram's values are in (Envoy's `Histogram::Unit`). It is informational: the
/// values are recorded and printed as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// No unit given.
    Unspecified,
    /// Sizes in bytes.
    Bytes,
    /// Durations in microseconds.
    Microseconds,
    /// Durations in milliseconds.
    Milliseconds,
}

/// The quantiles Envoy prints in `/stats` (`P0 P25 … P100`), as fractions.
pub const SUPPORTED_QUANTILES: [f64; 10] =
    [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

/// Envoy's default histogram bucket bounds, used for the Prometheus `_bucket{le=…}` lines.
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Number of decades: a `u64` is below 10^20.
const DECADES: usize = 20;
/// Bins per decade: leading digits 10..=99 (decade 0 uses only its first ten: values 0..=9).
const BINS_PER_DECADE: usize = 90;

/// `10^i` for every decade of a `u64`.
const POW10: [u64; DECADES] = {
    let mut table = [1u64; DECADES];
    let mut i = 1;
    while i < DECADES {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// `floor(log10 value)` for `value >= 1`, from the bit length (`log10 2 ~ 1233 / 4096`) and one
/// table compare: a few instructions where `u64::ilog10` branches through a search.
fn decade_of(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    let guess = (bits * 1233) >> 12;
    guess - usize::from(value < POW10[guess])
}

/// Where a value lands: `(decade, bin index within the decade)`.
fn bin_of(value: u64) -> (usize, usize) {
    if value < 10 {
        return (0, value as usize);
    }
    let decade = decade_of(value);
    (decade, (value / POW10[decade - 1]) as usize - 10)
}

/// The `[left, left + width)` interval of a bin, in circllhist's terms.
fn bin_bounds(decade: usize, index: usize) -> (f64, f64) {
    if decade == 0 {
        if index == 0 {
            return (0.0, 0.0);
        }
        return (index as f64, 0.1);
    }
    let scale = 10f64.powi(decade as i32 - 1);
    ((index as f64 + 10.0) * scale, scale)
}

/// One decade of bins, aligned so that two shards' decades never share a cache line.
#[repr(align(128))]
struct Decade([AtomicU64; BINS_PER_DECADE]);

impl Decade {
    fn new() -> Box<Decade> {
        Box::new(Decade(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

/// One shard's part of one histogram: written only through the handles of that shard.
#[repr(align(128))]
pub(crate) struct HistogramShard {
    count: AtomicU64,
    sum: AtomicU64,
    decades: [OnceLock<Box<Decade>>; DECADES],
}

impl HistogramShard {
    pub(crate) fn new() -> HistogramShard {
        HistogramShard {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            decades: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn record(&self, value: u64, count: u64) {
        let (decade, index) = bin_of(value);
        self.decades[decade].get_or_init(Decade::new).0[index].fetch_add(count, Ordering::Relaxed);
        self.sum
            .fetch_add(value.wrapping_mul(count), Ordering::Relaxed);
        self.count.fetch_add(count, Ordering::Relaxed);
    }

    /// Adds this shard's bins into `bins` (indexed `decade * BINS_PER_DECADE + index`).
    fn merge_into(&self, bins: &mut [u64], sum: &mut u64) {
        for (decade, slot) in self.decades.iter().enumerate() {
            if let Some(d) = slot.get() {
                for (i, c) in d.0.iter().enumerate() {
                    bins[decade * BINS_PER_DECADE + i] += c.load(Ordering::Relaxed);
                }
            }
        }
        *sum = sum.wrapping_add(self.sum.load(Ordering::Relaxed));
    }
}

/// A histogram's identity, shared by all shards: its name, unit, `used` flag and every shard's
/// bins (the list grows when a new shard first asks for the histogram, at setup time).
pub(crate) struct HistogramStat {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) used: AtomicBool,
    pub(crate) shards: Mutex<Vec<Arc<HistogramShard>>>,
    /// Cumulative statistics at the last `merge` and the interval they closed.
    pub(crate) merged: Mutex<MergeState>,
}

/// What `Store::merge_histograms` keeps per histogram.
#[derive(Default)]
pub(crate) struct MergeState {
    last_cumulative: HistogramStatistics,
    pub(crate) interval: HistogramStatistics,
}

impl HistogramStat {
    /// Merges every shard into one `HistogramStatistics` (the admin's read path).
    pub(crate) fn statistics(&self) -> HistogramStatistics {
        let mut bins = vec![0u64; DECADES * BINS_PER_DECADE];
        let mut sum = 0u64;
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        for shard in shards.iter() {
            shard.merge_into(&mut bins, &mut sum);
        }
        HistogramStatistics::from_bins(&bins, sum)
    }

    /// Closes an interval (Envoy's `ParentHistogramImpl::merge`, run every stats flush): the
    /// interval statistics become what was recorded since the previous merge.
    pub(crate) fn merge(&self) {
        let now = self.statistics();
        let mut m = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        m.interval = now.since(&m.last_cumulative);
        m.last_cumulative = now;
    }

    /// The statistics of the last closed interval (empty before the first merge).
    pub(crate) fn interval(&self) -> HistogramStatistics {
        self.merged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .interval
            .clone()
    }
}

/// A handle to record values into a histogram from one shard (Envoy's `Histogram`). Obtain it at
/// setup time from a `Store`; `record` takes no lock and writes only this shard's memory.
#[derive(Clone)]
pub struct Histogram {
    shard: Arc<HistogramShard>,
    stat: Arc<HistogramStat>,
}

impl Histogram {
    pub(crate) fn new(shard: Arc<HistogramShard>, stat: Arc<HistogramStat>) -> Histogram {
        Histogram { shard, stat }
    }

    /// Records one value (in the histogram's unit).
    #[inline]
    pub fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `count` values equal to `value` at once (for feeding pre-bucketed counts, e.g.
    /// the reactor's own loop-duration buckets). Recording zero values changes nothing.
    #[inline]
    pub fn record_n(&self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        self.shard.record(value, count);
        // Read first: after the first record this line is only ever read, so it stays shared in
        // every core's cache instead of bouncing between workers.
        if !self.stat.used.load(Ordering::Relaxed) {
            self.stat.used.store(true, Ordering::Relaxed);
        }
    }

    /// The histogram's full name.
    pub fn name(&self) -> &str {
        &self.stat.name
    }

    /// The histogram's unit.
    pub fn unit(&self) -> Unit {
        self.stat.unit
    }

    /// Merges all shards (not for the hot path: it locks the shard list and walks every bin).
    pub fn statistics(&self) -> HistogramStatistics {
        self.stat.statistics()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("name", &self.stat.name)
            .finish()
    }
}

/// One non-empty bin of a merged histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// The bin's lower bound.
    pub left: f64,
    /// The bin's width (0 for the exact zero bin).
    pub width: f64,
    /// Number of values recorded in it.
    pub count: u64,
}

/// A merged, immutable view of a histogram (Envoy's `HistogramStatistics`): the non-empty bins
/// in increasing order, the sample count and the exact sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramStatistics {
    bins: Vec<Bin>,
    sample_count: u64,
    sample_sum: u64,
}

impl HistogramStatistics {
    fn from_bins(counts: &[u64], sample_sum: u64) -> HistogramStatistics {
        let mut bins = Vec::new();
        let mut sample_count = 0u64;
        for (i, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let (left, width) = bin_bounds(i / BINS_PER_DECADE, i % BINS_PER_DECADE);
            bins.push(Bin { left, width, count });
            sample_count += count;
        }
        HistogramStatistics {
            bins,
            sample_count,
            sample_sum,
        }
    }

    /// Builds statistics from raw values (tests and benchmarks).
    pub fn from_values(values: &[u64]) -> HistogramStatistics {
        let shard = HistogramShard::new();
        for &v in values {
            shard.record(v, 1);
        }
        let mut bins = vec![0u64; DECADES * BINS_PER_DECADE];
        let mut sum = 0;
        shard.merge_into(&mut bins, &mut sum);
        HistogramStatistics::from_bins(&bins, sum)
    }

    /// The difference `self - earlier` bin by bin, for interval histograms (values recorded
    /// since an earlier snapshot of the same histogram).
    pub fn since(&self, earlier: &HistogramStatistics) -> HistogramStatistics {
        let mut bins = Vec::with_capacity(self.bins.len());
        let mut old = earlier.bins.iter().peekable();
        let mut sample_count = 0;
        for bin in &self.bins {
            while old.peek().is_some_and(|o| o.left < bin.left) {
                old.next();
            }
            let before = match old.peek() {
                Some(o) if o.left == bin.left => o.count,
                _ => 0,
            };
            let count = bin.count.saturating_sub(before);
            if count > 0 {
                bins.push(Bin { count, ..*bin });
                sample_count += count;
            }
        }
        HistogramStatistics {
            bins,
            sample_count,
            sample_sum: self.sample_sum.wrapping_sub(earlier.sample_sum),
        }
    }

    /// Number of values recorded.
    pub fn sample_count(&self) -> u64 {
        self.sample_count
    }

    /// Exact sum of the values recorded.
    pub fn sample_sum(&self) -> u64 {
        self.sample_sum
    }

    /// The non-empty bins, in increasing order.
    pub fn bins(&self) -> &[Bin] {
        &self.bins
    }

    /// The approximate `q`-quantile (`q` in 0..=1), or `None` for an empty histogram (Envoy
    /// prints `nan`).
    ///
    /// This is what Envoy 1.40 prints (observed, not guessed): the `c` values of a bin
    /// `[left, left + width)` are taken to sit evenly inside it, at `left + width * (k + 1) /
    /// (c + 1)` for `k` in `0..c`, and the quantile is the `ceil(q * count)`-th of those values
    /// (a type-1, inverted-CDF quantile; the first value for `q = 0`). So a single sample of 3
    /// prints as 3.05 at every quantile, and two samples of 4 as 4.0333… and 4.0666….
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.sample_count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.sample_count as f64).ceil() as u64)
            .clamp(1, self.sample_count);
        let mut below = 0u64;
        for bin in &self.bins {
            if rank <= below + bin.count {
                let k = (rank - below) as f64; // 1-based position inside the bin
                return Some(bin.left + bin.width * k / (bin.count as f64 + 1.0));
            }
            below += bin.count;
        }
        // Unreachable while `sample_count` is the sum of the bins; answer the top bin's edge.
        self.bins.last().map(|b| b.left + b.width)
    }

    /// The quantiles of `SUPPORTED_QUANTILES`, in order.
    pub fn computed_quantiles(&self) -> [Option<f64>; 10] {
        SUPPORTED_QUANTILES.map(|q| self.quantile(q))
    }

    /// Number of values in bins lying wholly at or below `bound` (circllhist's
    /// `hist_approx_count_below`, which Envoy uses for its Prometheus buckets).
    pub fn count_below(&self, bound: f64) -> u64 {
        self.bins
            .iter()
            .take_while(|b| b.left + b.width <= bound)
            .map(|b| b.count)
            .sum()
    }

    /// Cumulative counts at each of `DEFAULT_BUCKETS`.
    pub fn computed_buckets(&self) -> [u64; DEFAULT_BUCKETS.len()] {
        DEFAULT_BUCKETS.map(|b| self.count_below(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decade_of_is_ilog10() {
        let mut values = vec![1, 9, u64::MAX, u64::MAX - 1];
        for p in POW10 {
            values.extend([p - 1, p, p + 1, p.saturating_mul(5)]);
        }
        for shift in 0..64 {
            values.extend([1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1]);
        }
        for v in values.into_iter().filter(|v| *v >= 1) {
            assert_eq!(decade_of(v), v.ilog10() as usize, "{v}");
        }
    }

    #[test]
    fn bins_have_two_significant_digits() {
        assert_eq!(bin_of(0), (0, 0));
        assert_eq!(bin_of(9), (0, 9));
        assert_eq!(bin_of(10), (1, 0));
        assert_eq!(bin_of(99), (1, 89));
        assert_eq!(bin_of(100), (2, 0));
        assert_eq!(bin_of(109), (2, 0));
        assert_eq!(bin_of(110), (2, 1));
        assert_eq!(bin_of(u64::MAX), (19, 8)); // 1.8e19
        assert_eq!(bin_bounds(2, 1), (110.0, 10.0));
        assert_eq!(bin_bounds(0, 3), (3.0, 0.1));
    }

    fn quantiles(values: &[u64]) -> Vec<f64> {
        let h = HistogramStatistics::from_values(values);
        h.computed_quantiles()
            .iter()
            .map(|q| q.expect("non-empty"))
            .collect()
    }

    #[test]
    fn one_value_sits_mid_bin_like_envoy() {
        // Envoy 1.40 prints one connection of 3 requests as P0(nan,3.05) ... P100(nan,3.05).
        assert_eq!(quantiles(&[3]), vec![3.05; 10]);
        assert_eq!(quantiles(&[265]), vec![265.0; 10]);
    }

    #[test]
    fn quantiles_match_envoy_output() {
        // Observed on Envoy 1.40 (`cluster.app.upstream_rq_time`, six requests of 0,0,0,0,3,18 ms):
        // P0(nan,0) P25(nan,0) P50(nan,0) P75(nan,3.05) P90(nan,18.5) ... P100(nan,18.5)
        assert_eq!(
            quantiles(&[0, 0, 0, 0, 3, 18]),
            vec![0.0, 0.0, 0.0, 3.05, 18.5, 18.5, 18.5, 18.5, 18.5, 18.5]
        );
        // Four connections of 150..170 ms (one in [150,160), three in [160,170)):
        // P0(155) P25(155) P50(162.5) P75(165) P90(167.5) ... P100(167.5)
        assert_eq!(
            quantiles(&[158, 161, 163, 166]),
            vec![155.0, 155.0, 162.5, 165.0, 167.5, 167.5, 167.5, 167.5, 167.5, 167.5]
        );
        // Two samples in one small bin print with full precision, as Envoy's
        // `P0(nan,2.033333333333333) P25(nan,2.066666666666667)` (`http.admin.downstream_cx_length_ms`).
        let q = quantiles(&[2, 2, 5, 6, 7, 7, 20]);
        assert_eq!(format!("{}", q[0]), "2.033333333333333");
        assert_eq!(format!("{}", q[1]), "2.066666666666667");
        assert_eq!(format!("{}", quantiles(&[6, 6])[9]), "6.066666666666666");
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let values: Vec<u64> = (1..=1000).collect();
        let h = HistogramStatistics::from_values(&values);
        assert_eq!(h.sample_count(), 1000);
        assert_eq!(h.sample_sum(), 500_500);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 500.0).abs() <= 10.0, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - 990.0).abs() <= 10.0, "{p99}");
        assert_eq!(h.quantile(1.0), Some(1050.0)); // 1000 alone in [1000, 1100)
        assert_eq!(HistogramStatistics::default().quantile(0.5), None);
    }

    #[test]
    fn zero_is_exact_and_counts_below_half() {
        let h = HistogramStatistics::from_values(&[0, 0, 3, 250, 7000]);
        assert_eq!(h.quantile(0.0), Some(0.0));
        let b = h.computed_buckets();
        assert_eq!(b[0], 2); // le=0.5
        assert_eq!(b[1], 2); // le=1
        assert_eq!(b[2], 3); // le=5
        assert_eq!(b[7], 3); // le=250: the bin [250,260) is not wholly below 250
        assert_eq!(b[8], 4); // le=500
        assert_eq!(b[11], 4); // le=5000
        assert_eq!(b[12], 5); // le=10000
    }

    #[test]
    fn since_subtracts_an_earlier_snapshot() {
        let shard = Arc::new(HistogramShard::new());
        let stat = Arc::new(HistogramStat {
            name: "h".into(),
            unit: Unit::Milliseconds,
            used: AtomicBool::new(false),
            shards: Mutex::new(vec![shard.clone()]),
            merged: Mutex::new(MergeState::default()),
        });
        let h = Histogram::new(shard, stat);
        h.record(5);
        h.record(50);
        let first = h.statistics();
        h.record_n(50, 1);
        h.record_n(500, 1);
        h.record_n(7, 0);
        let interval = h.statistics().since(&first);
        assert_eq!(interval.sample_count(), 2);
        assert_eq!(interval.sample_sum(), 550);
        assert_eq!(interval.bins().len(), 2);
        assert_eq!(interval.quantile(0.0), Some(50.5));
    }
}
