//! `envoy.filters.http.local_ratelimit` (Envoy's `LocalRateLimitFilter`): a token bucket shared by
//! every worker (`max_tokens`, `tokens_per_fill` every `fill_interval`, starting full); a request
//! finding it empty is answered `429 local_rate_limited` with `x-envoy-ratelimited: true` when
//! enforced, or only counted when merely enabled. `filter_enabled` / `filter_enforced` are
//! runtime fractional percents (their `default_value`; absent means 0%, as in Envoy).
//!
//! Stats, Envoy's names: `<stat_prefix>.http_local_rate_limit.{enabled,enforced,rate_limited,ok}`.
//!
//! Built per stream by its factory (`http::filter_registry`); called by the stream's
//! `FilterManager`; time comes in through the callbacks (sans-IO: tests move a simulated clock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{self, Node};
use crate::http::filter::{
    FilterCallbacks, FilterHeadersStatus, LocalReply, RequestHead, ResponseFlag,
    StreamDecoderFilter,
};
use crate::http::filter_registry::{
    FilterChainBuilder, FilterFactoryCb, HttpFilterFactory, HttpFilterFactoryContext,
};

/// Envoy's token bucket, refilled lazily from the time passed in: equivalent to its fill timer.
#[derive(Debug)]
pub struct TokenBucket {
    max_tokens: u32,
    tokens_per_fill: u32,
    fill_interval: Duration,
    tokens: u32,
    /// The time of the last whole fill interval accounted for (`None` until first use).
    last_fill: Option<Instant>,
}

impl TokenBucket {
    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> Self {
        TokenBucket {
            max_tokens,
            tokens_per_fill,
            fill_interval,
            tokens: max_tokens,
            last_fill: None,
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn consume(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.last_fill.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let interval = self.fill_interval.as_nanos().max(1);
        let fills = elapsed.as_nanos() / interval;
        if fills == 0 {
            return;
        }
        let added = fills.saturating_mul(self.tokens_per_fill as u128);
        self.tokens = (self.tokens as u128 + added).min(self.max_tokens as u128) as u32;
        // Keep the phase of the fill timer: advance by whole intervals only.
        let advance = Duration::from_nanos((fills * interval).min(u64::MAX as u128) as u64);
        self.last_fill = Some(last + advance);
    }
}

/// A `RuntimeFractionalPercent`'s default value, as numerator over denominator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FractionalPercent {
    pub numerator: u32,
    pub denominator: u32,
}

impl FractionalPercent {
    pub const ZERO: FractionalPercent = FractionalPercent {
        numerator: 0,
        denominator: 100,
    };

    /// Parses `{default_value: {numerator, denominator: HUNDRED|TEN_THOUSAND|MILLION}, runtime_key}`
    /// (the runtime key is accepted; nuncio has no runtime layer, so the default applies).
    pub fn parse_runtime(node: &Node) -> config::Result<FractionalPercent> {
        node.check_fields(&["default_value", "runtime_key"], &[])?;
        let Some(value) = node.get("default_value") else {
            return Ok(FractionalPercent::ZERO);
        };
        value.check_fields(&["numerator", "denominator"], &[])?;
        let numerator = value.opt("numerator", Node::as_u32)?.unwrap_or(0);
        let denominator = match value.get("denominator") {
            None => 100,
            Some(d) => match d.enum_str(&["HUNDRED", "TEN_THOUSAND", "MILLION"], &[])? {
                "HUNDRED" => 100,
                "TEN_THOUSAND" => 10_000,
                _ => 1_000_000,
            },
        };
        Ok(FractionalPercent {
            numerator: numerator.min(denominator),
            denominator,
        })
    }

    /// Whether a request with the random value `random` falls in the percentage (Envoy's
    /// `featureEnabled`: `random % denominator < numerator`).
    pub fn sample(&self, random: u64) -> bool {
        self.numerator >= self.denominator
            || (random % self.denominator as u64) < self.numerator as u64
    }
}

/// `<stat_prefix>.http_local_rate_limit.*`.
#[derive(Debug, Default)]
pub struct LocalRateLimitStats {
    pub enabled: AtomicU64,
    pub enforced: AtomicU64,
    pub rate_limited: AtomicU64,
    pub ok: AtomicU64,
}

impl LocalRateLimitStats {
    /// (full stat name, value) for the admin's /stats.
    pub fn values(&self, stat_prefix: &str) -> Vec<(String, u64)> {
        [
            ("enabled", &self.enabled),
            ("enforced", &self.enforced),
            ("ok", &self.ok),
            ("rate_limited", &self.rate_limited),
        ]
        .iter()
        .map(|(name, c)| {
            (
                format!("{stat_prefix}.http_local_rate_limit.{name}"),
                c.load(Ordering::Relaxed),
            )
        })
        .collect()
    }
}

/// The parsed config and the shared bucket.
#[derive(Debug)]
pub struct LocalRateLimitConfig {
    pub stat_prefix: String,
    pub status: u16,
    pub filter_enabled: FractionalPercent,
    pub filter_enforced: FractionalPercent,
    pub response_headers_to_add: Vec<(String, String)>,
    pub bucket: Mutex<TokenBucket>,
    pub stats: LocalRateLimitStats,
}

/// The filter of one stream.
pub struct LocalRateLimitFilter {
    config: Arc<LocalRateLimitConfig>,
}

/// A per-process xorshift for runtime sampling (not security relevant).
fn random() -> u64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) });
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

impl StreamDecoderFilter for LocalRateLimitFilter {
    fn decode_headers(
        &mut self,
        _headers: &mut RequestHead,
        _end_stream: bool,
        cb: &mut FilterCallbacks,
    ) -> FilterHeadersStatus {
        let config = &*self.config;
        if !config.filter_enabled.sample(random()) {
            return FilterHeadersStatus::Continue;
        }
        config.stats.enabled.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means another worker panicked mid-consume; the bucket is valid.
        let allowed = match config.bucket.lock() {
            Ok(mut bucket) => bucket.consume(cb.now),
            Err(poisoned) => poisoned.into_inner().consume(cb.now),
        };
        if allowed {
            config.stats.ok.fetch_add(1, Ordering::Relaxed);
            return FilterHeadersStatus::Continue;
        }
        config.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        if !config.filter_enforced.sample(random()) {
            return FilterHeadersStatus::Continue;
        }
        config.stats.enforced.fetch_add(1, Ordering::Relaxed);
        let mut reply = LocalReply::new(config.status, "local_rate_limited", "local_rate_limited")
            .with_header("x-envoy-ratelimited", "true");
        for (name, value) in &config.response_headers_to_add {
            reply.headers.push((leak_name(name), value.clone()));
        }
        cb.set_response_flag(ResponseFlag::RateLimited);
        cb.send_local_reply(reply);
        FilterHeadersStatus::StopIteration
    }
}

/// Header names of local replies are `&'static str`; configured names are interned once at
/// config time (bounded by the config's size).
fn leak_name(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

struct LocalRateLimitFactoryCb(Arc<LocalRateLimitConfig>);

impl FilterFactoryCb for LocalRateLimitFactoryCb {
    fn create_filters(&self, chain: &mut FilterChainBuilder) {
        chain.add_decoder_filter(Box::new(LocalRateLimitFilter {
            config: self.0.clone(),
        }));
    }
}

pub struct LocalRateLimitFactory;

impl LocalRateLimitFactory {
    pub fn parse(node: &Node) -> config::Result<LocalRateLimitConfig> {
        node.check_fields(
            &[
                "stat_prefix",
                "status",
                "token_bucket",
                "filter_enabled",
                "filter_enforced",
                "response_headers_to_add",
            ],
            &[
                "request_headers_to_add_when_not_enforced",
                "descriptors",
                "stage",
                "local_rate_limit_per_downstream_connection",
                "enable_x_ratelimit_headers",
                "vh_rate_limits",
                "always_consume_default_token_bucket",
                "rate_limited_as_resource_exhausted",
                "local_cluster_rate_limit",
                "rate_limits",
                "max_dynamic_descriptors",
            ],
        )?;
        let stat_prefix = node.required("stat_prefix")?.non_empty_str()?.to_string();
        let status = match node.get("status") {
            None => 429,
            Some(s) => {
                s.check_fields(&["code"], &[])?;
                // Envoy: a code below 400 is replaced by 429.
                let code = s.required("code")?.as_u32_in(100, 599)? as u16;
                if code < 400 {
                    429
                } else {
                    code
                }
            }
        };
        let tb = node.required("token_bucket")?;
        tb.check_fields(&["max_tokens", "tokens_per_fill", "fill_interval"], &[])?;
        let max_tokens = tb.required("max_tokens")?.as_u32_in(1, u32::MAX)?;
        let tokens_per_fill = tb.opt("tokens_per_fill", Node::u32_value)?.unwrap_or(1);
        let fill_node = tb.required("fill_interval")?;
        let fill_interval = fill_node.duration()?;
        if fill_interval < Duration::from_millis(50) {
            return Err(fill_node.error("fill_interval must be at least 50ms (Envoy's minimum)"));
        }
        let filter_enabled = node
            .opt("filter_enabled", FractionalPercent::parse_runtime)?
            .unwrap_or(FractionalPercent::ZERO);
        let filter_enforced = node
            .opt("filter_enforced", FractionalPercent::parse_runtime)?
            .unwrap_or(FractionalPercent::ZERO);
        let response_headers_to_add = node.list("response_headers_to_add", |option| {
            option.check_fields(
                &["header", "append", "append_action", "keep_empty_value"],
                &[],
            )?;
            let header = option.required("header")?;
            header.check_fields(&["key", "value"], &["raw_value"])?;
            Ok((
                header
                    .required("key")?
                    .non_empty_str()?
                    .to_ascii_lowercase(),
                header
                    .opt("value", |n| n.as_str().map(str::to_string))?
                    .unwrap_or_default(),
            ))
        })?;
        Ok(LocalRateLimitConfig {
            stat_prefix,
            status,
            filter_enabled,
            filter_enforced,
            response_headers_to_add,
            bucket: Mutex::new(TokenBucket::new(max_tokens, tokens_per_fill, fill_interval)),
            stats: LocalRateLimitStats::default(),
        })
    }
}

impl HttpFilterFactory for LocalRateLimitFactory {
    fn name(&self) -> &'static str {
        "envoy.filters.http.local_ratelimit"
    }
    fn config_type(&self) -> &'static str {
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    }
    fn create(
        &self,
        node: &Node,
        _context: &HttpFilterFactoryContext,
    ) -> config::Result<Arc<dyn FilterFactoryCb>> {
        Ok(Arc::new(LocalRateLimitFactoryCb(Arc::new(Self::parse(
            node,
        )?))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::http::filter::StreamFilterState;

    fn config(yaml: &str) -> Arc<LocalRateLimitConfig> {
        let doc = parse_yaml(yaml).unwrap();
        Arc::new(LocalRateLimitFactory::parse(&Node::root(&doc)).unwrap())
    }

    const ENFORCED: &str = "stat_prefix: rl
token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 1s}
filter_enabled: {runtime_key: e, default_value: {numerator: 100, denominator: HUNDRED}}
filter_enforced: {runtime_key: f, default_value: {numerator: 100, denominator: HUNDRED}}
";

    fn request(config: &Arc<LocalRateLimitConfig>, now: Instant) -> StreamFilterState {
        let mut f = LocalRateLimitFilter {
            config: config.clone(),
        };
        let mut state = StreamFilterState::default();
        f.decode_headers(
            &mut RequestHead::new(crate::http::codec::Method::Get, "/", "x"),
            true,
            &mut FilterCallbacks {
                now,
                connection_id: 0,
                stream_id: 0,
                state: &mut state,
            },
        );
        state
    }

    // === bucket full ===

    #[test]
    fn requests_within_the_bucket_pass() {
        let c = config(ENFORCED);
        let t0 = Instant::now();
        assert!(request(&c, t0).local_reply.is_none());
        assert!(request(&c, t0).local_reply.is_none());
        assert_eq!(c.stats.ok.load(Ordering::Relaxed), 2);
    }

    // === bucket empty ===

    #[test]
    fn empty_bucket_answers_429_with_header_and_flag() {
        let c = config(ENFORCED);
        let t0 = Instant::now();
        request(&c, t0);
        request(&c, t0);
        let state = request(&c, t0);
        let reply = state.local_reply.unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.body, "local_rate_limited");
        assert!(reply
            .headers
            .contains(&("x-envoy-ratelimited", "true".to_string())));
        assert!(state.response_flags.has(ResponseFlag::RateLimited));
        let stats: Vec<_> = c.stats.values("rl");
        assert!(stats.contains(&("rl.http_local_rate_limit.rate_limited".into(), 1)));
        assert!(stats.contains(&("rl.http_local_rate_limit.enforced".into(), 1)));
        assert!(stats.contains(&("rl.http_local_rate_limit.enabled".into(), 3)));
    }

    #[test]
    fn refill_adds_tokens_per_whole_interval_up_to_max() {
        let mut b = TokenBucket::new(3, 2, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.consume(t0));
        }
        assert!(!b.consume(t0 + Duration::from_millis(999)));
        assert!(b.consume(t0 + Duration::from_millis(1000)));
        assert!(b.consume(t0 + Duration::from_millis(1500)));
        assert!(!b.consume(t0 + Duration::from_millis(1999)));
        // Ten intervals later the bucket is full (3), not 20.
        let t = t0 + Duration::from_secs(12);
        assert!(b.consume(t) && b.consume(t) && b.consume(t));
        assert!(!b.consume(t));
    }

    // === enabled but not enforced ===

    #[test]
    fn not_enforced_counts_but_passes() {
        let c = config(
            "stat_prefix: rl\ntoken_bucket: {max_tokens: 1, fill_interval: 60s}\nfilter_enabled: {runtime_key: e, default_value: {numerator: 100}}\n",
        );
        let t0 = Instant::now();
        request(&c, t0);
        assert!(request(&c, t0).local_reply.is_none());
        assert_eq!(c.stats.rate_limited.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.enforced.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn absent_filter_enabled_means_disabled() {
        let c = config("stat_prefix: rl\ntoken_bucket: {max_tokens: 1, fill_interval: 60s}\n");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(request(&c, t0).local_reply.is_none());
        }
        assert_eq!(c.stats.enabled.load(Ordering::Relaxed), 0);
    }

    // === config ===

    #[test]
    fn config_errors_name_the_field() {
        let doc = parse_yaml("stat_prefix: x\ntoken_bucket: {max_tokens: 0, fill_interval: 1s}\n")
            .unwrap();
        let err = LocalRateLimitFactory::parse(&Node::root(&doc)).unwrap_err();
        assert_eq!(err.path, "token_bucket.max_tokens");
        let doc = parse_yaml(
            "stat_prefix: x\ntoken_bucket: {max_tokens: 1, fill_interval: 1s}\ndescriptors: []\n",
        )
        .unwrap();
        let err = LocalRateLimitFactory::parse(&Node::root(&doc)).unwrap_err();
        assert_eq!(err.path, "descriptors");
    }

    #[test]
    fn fractional_percent_sampling() {
        let half = FractionalPercent {
            numerator: 50,
            denominator: 100,
        };
        assert!(half.sample(149) && !half.sample(150));
        assert!(!FractionalPercent::ZERO.sample(0));
    }
}
