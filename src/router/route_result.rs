//! `RouteResult`: what the route table tells the router filter to do with a request, and the
//! header edits that come with it (Envoy's `Route`, `RouteEntry::finalizeRequestHeaders` /
//! `finalizeResponseHeaders`, `DirectResponseEntry`).
//!
//! Header edits run level by level. By default (Envoy 1.40, verified) the order is: weighted
//! cluster, route, virtual host, route config — so for an overwrite the route config wins, and
//! a `%REQ(x)%` at the virtual host sees what the route added. With
//! `most_specific_header_mutations_wins` the route config goes first and the route last
//! (the weighted cluster still first). After the header edits, the request's Host is
//! rewritten (keeping the old one in `x-envoy-original-host`, and in `x-forwarded-host` if
//! `append_x_forwarded_host`), then its path (keeping the old one in `x-envoy-original-path`);
//! the `x-envoy-*` records are left out when the router suppresses Envoy headers.

use std::time::Duration;

use super::config::RouteConfig;
use super::formatter::FormatterContext;
use super::header_map::HeaderMapAccess;
use super::header_parser::HeaderParser;
use super::redirect::new_uri;
use super::retry_policy::{RetryOn, RetryPolicy, DEFAULT_BASE_INTERVAL};
use super::route_entry::{
    DirectResponseAction, HostRewrite, RouteAction, RouteEntry, WeightedCluster,
};
use super::timeout::TimeoutData;
use super::virtual_host::VirtualHost;

/// The retry policy of a route that has none (and whose virtual host has none).
static NO_RETRY_POLICY: RetryPolicy = RetryPolicy {
    retry_on: RetryOn(0),
    num_retries: 1,
    per_try_timeout: None,
    per_try_idle_timeout: None,
    retriable_status_codes: Vec::new(),
    base_interval: DEFAULT_BASE_INTERVAL,
    max_interval: Duration::from_millis(250),
    retriable_headers: Vec::new(),
    retriable_request_headers: Vec::new(),
    host_predicates: Vec::new(),
    host_selection_max_attempts: 1,
    reset_headers: Vec::new(),
    reset_max_interval: super::retry_policy::DEFAULT_RATE_LIMITED_MAX_INTERVAL,
};

/// A matched route in its context (what Envoy hands around as `RouteConstSharedPtr`).
#[derive(Clone, Copy, Debug)]
pub struct Route<'c> {
    /// The route configuration.
    pub config: &'c RouteConfig,
    /// The virtual host that matched the Host.
    pub virtual_host: &'c VirtualHost,
    /// The route that matched.
    pub entry: &'c RouteEntry,
    /// How much of `:path` the route matched (what `prefix_rewrite` replaces).
    pub matched_len: usize,
}

impl<'c> Route<'c> {
    /// The route's `name`.
    pub fn name(&self) -> &'c str {
        &self.entry.name
    }

    /// The levels in evaluation order, for request or response edits; `first` (a weighted
    /// cluster's) always goes first. Levels that edit nothing are left out (`None`): the usual
    /// route table has none that do, and then nothing is evaluated per request.
    fn parsers(
        &self,
        first: Option<&'c HeaderParser>,
        pick: fn(Level<'c>) -> &'c HeaderParser,
    ) -> [Option<&'c HeaderParser>; 4] {
        let edits = |parser: &'c HeaderParser| (!parser.is_empty()).then_some(parser);
        let first = first.and_then(edits);
        let route = edits(pick(Level::Route(self.entry)));
        let vhost = edits(pick(Level::VirtualHost(self.virtual_host)));
        let global = edits(pick(Level::Config(self.config)));
        if self.config.most_specific_header_mutations_wins {
            [first, global, vhost, route]
        } else {
            [first, route, vhost, global]
        }
    }

    /// Whether some level edits response headers (else `finalize_response_headers` does
    /// nothing, and the caller need not prepare its context).
    pub fn edits_response_headers(&self) -> bool {
        self.entry.edits_response
    }

    /// Applies the response header edits of every level (no weighted cluster).
    pub fn finalize_response_headers<R, Q>(
        &self,
        response: &mut R,
        request: &Q,
        ctx: &FormatterContext,
    ) where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
    {
        finalize_response(self.parsers(None, response_parser), response, request, ctx);
    }
}

#[derive(Clone, Copy)]
enum Level<'c> {
    Route(&'c RouteEntry),
    VirtualHost(&'c VirtualHost),
    Config(&'c RouteConfig),
}

fn request_parser(level: Level<'_>) -> &HeaderParser {
    match level {
        Level::Route(r) => &r.request_headers,
        Level::VirtualHost(v) => &v.request_headers,
        Level::Config(c) => &c.request_headers,
    }
}

fn response_parser(level: Level<'_>) -> &HeaderParser {
    match level {
        Level::Route(r) => &r.response_headers,
        Level::VirtualHost(v) => &v.response_headers,
        Level::Config(c) => &c.response_headers,
    }
}

fn finalize_response<R, Q>(
    parsers: [Option<&HeaderParser>; 4],
    response: &mut R,
    request: &Q,
    ctx: &FormatterContext,
) where
    R: HeaderMapAccess + ?Sized,
    Q: HeaderMapAccess + ?Sized,
{
    for parser in parsers.into_iter().flatten() {
        parser.evaluate_response(response, request, ctx);
    }
}

/// The outcome of routing a request.
#[derive(Debug)]
pub enum RouteResult<'c> {
    /// Forward to a cluster.
    Forward(Forward<'c>),
    /// Answer with a redirect (no body, `content-length: 0`).
    Redirect(Redirect<'c>),
    /// Answer with a configured response.
    DirectResponse(DirectResponse<'c>),
    /// No virtual host or no route matched: Envoy answers 404 with an empty body, response flag
    /// `NR`, and counts `http.<prefix>.no_route`.
    NoRoute,
}

/// The cluster a `Forward` goes to.
#[derive(Clone, Debug)]
pub enum SelectedCluster<'c> {
    /// `cluster`.
    Named(&'c std::sync::Arc<str>),
    /// The pick among `weighted_clusters`.
    Weighted(&'c WeightedCluster),
    /// The value of `cluster_header` (empty when the header was absent: no such cluster).
    FromHeader(String),
}

/// "Forward this request to a cluster".
#[derive(Debug)]
pub struct Forward<'c> {
    /// The route.
    pub route: Route<'c>,
    /// Its `route` action.
    pub action: &'c RouteAction,
    /// The cluster chosen.
    pub cluster: SelectedCluster<'c>,
}

impl<'c> Forward<'c> {
    /// The name of the chosen cluster. If the cluster manager has no such cluster (possible
    /// only with `cluster_header`), Envoy answers [`cluster_not_found_response_code`]
    /// (503 by default) with an empty body and response flag `NC`.
    ///
    /// [`cluster_not_found_response_code`]: Self::cluster_not_found_response_code
    pub fn cluster_name(&self) -> &str {
        match &self.cluster {
            SelectedCluster::Named(n) => n,
            SelectedCluster::Weighted(w) => &w.name,
            SelectedCluster::FromHeader(n) => n,
        }
    }

    /// The name of the chosen cluster as a shared string: a reference count, not a copy, for
    /// `cluster` and `weighted_clusters` (the router keeps it for the life of the request).
    pub fn shared_cluster_name(&self) -> std::sync::Arc<str> {
        match &self.cluster {
            SelectedCluster::Named(n) => std::sync::Arc::clone(n),
            SelectedCluster::Weighted(w) => std::sync::Arc::clone(&w.name),
            SelectedCluster::FromHeader(n) => n.as_str().into(),
        }
    }

    /// The status for a missing cluster.
    pub fn cluster_not_found_response_code(&self) -> u16 {
        self.action.cluster_not_found_response_code
    }

    /// The route's timeout (`None`: disabled). See `final_timeout` for the header overrides.
    pub fn timeout(&self) -> Option<Duration> {
        self.action.timeout
    }

    /// The timeouts of this request (Envoy's `FilterUtility::finalTimeout`): the route's, or a
    /// trusted client's override headers (consumed); sets `x-envoy-expected-rq-timeout-ms`
    /// if `insert_expected_timeout`. Call before `RetryState::create` (see `final_timeout`).
    pub fn final_timeout<H: HeaderMapAccess + ?Sized>(
        &self,
        request: &mut H,
        insert_expected_timeout: bool,
    ) -> TimeoutData {
        self.action
            .timeouts
            .final_timeout(request, insert_expected_timeout)
    }

    /// The route's idle timeout (`None`: none set; zero: disables the stream idle timeout).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.action.idle_timeout
    }

    /// The retry policy in force: the route's, else the virtual host's, else none (which still
    /// allows retries asked for by `x-envoy-retry-on`, with one retry).
    pub fn retry_policy(&self) -> &'c RetryPolicy {
        self.action
            .retry_policy
            .as_deref()
            .or(self.route.virtual_host.retry_policy.as_deref())
            .unwrap_or(&NO_RETRY_POLICY)
    }

    /// [`retry_policy`](Self::retry_policy), shared: what a request's `RetryState` keeps
    /// beyond the route lookup (no allocation: the policies are shared, the default one too;
    /// `RetryState::create_from` clones the handle only for a request that may retry).
    pub fn retry_policy_shared(&self) -> &'c std::sync::Arc<RetryPolicy> {
        static DEFAULT: std::sync::OnceLock<std::sync::Arc<RetryPolicy>> =
            std::sync::OnceLock::new();
        self.action
            .retry_policy
            .as_ref()
            .or(self.route.virtual_host.retry_policy.as_ref())
            .unwrap_or_else(|| DEFAULT.get_or_init(|| std::sync::Arc::new(NO_RETRY_POLICY.clone())))
    }

    /// `auto_host_rewrite`: the router sets Host to the chosen upstream host's hostname (when
    /// it has one) after picking the host.
    pub fn auto_host_rewrite(&self) -> bool {
        self.action.host_rewrite == HostRewrite::Auto
    }

    /// Edits the request before it goes upstream (Envoy's `finalizeRequestHeaders`): header
    /// edits of every level, then Host rewrite, then path rewrite. `insert_envoy_headers` is
    /// the router's `!suppress_envoy_headers` (records `x-envoy-original-path`/`-host`).
    pub fn finalize_request_headers<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &mut H,
        ctx: &FormatterContext,
        insert_envoy_headers: bool,
    ) {
        // The usual route edits nothing: no header edits at any level, no Host or path
        // rewrite (`RouteEntry::edits_request`, decided at load).
        if !self.route.entry.edits_request {
            return;
        }
        self.edit_request_headers(headers, ctx, insert_envoy_headers);
    }

    /// The request edits of [`finalize_request_headers`](Self::finalize_request_headers),
    /// for a route that has some.
    #[inline(never)]
    fn edit_request_headers<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &mut H,
        ctx: &FormatterContext,
        insert_envoy_headers: bool,
    ) {
        let weighted = match &self.cluster {
            SelectedCluster::Weighted(w) => Some(w),
            _ => None,
        };
        let first = weighted.map(|w| &w.request_headers);
        for parser in self
            .route
            .parsers(first, request_parser)
            .into_iter()
            .flatten()
        {
            parser.evaluate_request(headers, ctx);
        }
        let literal = weighted.and_then(|w| w.host_rewrite_literal.as_deref()).or(
            match &self.action.host_rewrite {
                HostRewrite::Literal(h) => Some(h.as_str()),
                _ => None,
            },
        );
        if let Some(host) = literal {
            update_authority(
                headers,
                host,
                self.action.append_x_forwarded_host,
                insert_envoy_headers,
            );
        }
        if let Some(rewrite) = &self.action.path_rewrite {
            let Some(path) = headers.get(":path").map(str::to_string) else {
                return;
            };
            let new_path = rewrite.apply(&path, self.route.matched_len);
            if insert_envoy_headers {
                headers.set("x-envoy-original-path", &path);
            }
            headers.set(":path", &new_path);
        }
    }

    /// Rewrites Host to the upstream host's hostname for `auto_host_rewrite` (call after the
    /// host is chosen, with its hostname if it has one).
    pub fn apply_auto_host_rewrite<H: HeaderMapAccess + ?Sized>(
        &self,
        headers: &mut H,
        upstream_hostname: &str,
        insert_envoy_headers: bool,
    ) {
        if self.auto_host_rewrite() && !upstream_hostname.is_empty() {
            update_authority(
                headers,
                upstream_hostname,
                self.action.append_x_forwarded_host,
                insert_envoy_headers,
            );
        }
    }

    /// Edits the upstream's response before it goes to the client (Envoy's
    /// `finalizeResponseHeaders`); `%REQ(...)%` reads `request`.
    pub fn finalize_response_headers<R, Q>(
        &self,
        response: &mut R,
        request: &Q,
        ctx: &FormatterContext,
    ) where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
    {
        let first = match &self.cluster {
            SelectedCluster::Weighted(w) => Some(&w.response_headers),
            _ => None,
        };
        finalize_response(
            self.route.parsers(first, response_parser),
            response,
            request,
            ctx,
        );
    }
}

/// Envoy's `Utility::updateAuthority`: set Host, recording the old one.
fn update_authority<H: HeaderMapAccess + ?Sized>(
    headers: &mut H,
    host: &str,
    append_xfh: bool,
    insert_envoy_headers: bool,
) {
    if let Some(old) = headers.get(":authority").filter(|h| !h.is_empty()) {
        let old = old.to_string();
        if append_xfh {
            // Appended unless it already is the last entry, joined with ','.
            match headers.get("x-forwarded-host") {
                Some(xfh) if !xfh.is_empty() => {
                    if xfh.rsplit(',').next().map(str::trim) != Some(old.as_str()) {
                        let joined = format!("{xfh},{old}");
                        headers.set("x-forwarded-host", &joined);
                    }
                }
                _ => headers.set("x-forwarded-host", &old),
            }
        }
        if insert_envoy_headers {
            headers.set("x-envoy-original-host", &old);
        }
    }
    headers.set(":authority", host);
}

/// "Answer with a redirect".
#[derive(Debug)]
pub struct Redirect<'c> {
    /// The route.
    pub route: Route<'c>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// The `Location` header value.
    pub location: String,
}

impl Redirect<'_> {
    /// Adds the route's response header edits to the redirect response.
    pub fn finalize_response_headers<R, Q>(
        &self,
        response: &mut R,
        request: &Q,
        ctx: &FormatterContext,
    ) where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
    {
        self.route.finalize_response_headers(response, request, ctx);
    }
}

/// "Answer with this response".
#[derive(Debug)]
pub struct DirectResponse<'c> {
    /// The route.
    pub route: Route<'c>,
    /// The status.
    pub status: u16,
    /// The body (may be empty).
    pub body: &'c str,
    /// For a 201 or 3xx status, Envoy adds a `Location` built from the request.
    pub location: Option<String>,
}

impl<'c> DirectResponse<'c> {
    pub(crate) fn new<H: HeaderMapAccess + ?Sized>(
        route: Route<'c>,
        action: &'c DirectResponseAction,
        request: &H,
    ) -> Self {
        let status = action.status;
        let location = (status == 201 || (300..400).contains(&status)).then(|| {
            let path = request.get(":path").unwrap_or("/");
            new_uri(request, None, None, None, None, path, false)
        });
        DirectResponse {
            route,
            status,
            body: &action.body,
            location,
        }
    }

    /// `text/plain` when there is a body (Envoy's local reply), none otherwise.
    pub fn content_type(&self) -> Option<&'static str> {
        (!self.body.is_empty()).then_some("text/plain")
    }

    /// Adds the route's response header edits.
    pub fn finalize_response_headers<R, Q>(
        &self,
        response: &mut R,
        request: &Q,
        ctx: &FormatterContext,
    ) where
        R: HeaderMapAccess + ?Sized,
        Q: HeaderMapAccess + ?Sized,
    {
        self.route.finalize_response_headers(response, request, ctx);
    }
}
