//! The host's metrics, in the Prometheus text format: one typed handle per metric, process-wide,
//! so that any part of the host records what it does with a plain method call.
//!
//! Most metrics are recorded as things happen (requests, answer-cache look-ups, upstream calls,
//! connections). Two are read when scraped, from where they already live: the plugin's counters
//! ([`crate::runtime::PluginStats`], which restart with every loaded plugin, as Prometheus
//! counters may) and the number of orders in each state (from the order database).
//!
//! Names start with `reseller_`; money is an integer of ten-thousandths (`_e4`), as everywhere
//! else in the host.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::limits::Limit;

/// The counters of one loaded component (the plugin, its policy), as [`Metrics::render`] shows
/// them: read when scraped from the component's own statistics.
pub struct ComponentCounters<'a> {
    /// `plugin` or `policy`.
    pub component: &'a str,
    /// The component's name (its file, or `builtin`).
    pub name: &'a str,
    /// Calls made.
    pub calls: u64,
    /// Calls that faulted.
    pub faults: u64,
    /// Calls stopped by each limit.
    pub limit_hits: Vec<(Limit, u64)>,
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric the host records as things happen.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered, by route (the router's pattern, e.g. `/api/v1/orders/{id}/paid`,
    /// or `unmatched`) and status.
    pub http_requests: IntCounterVec,
    /// Time from a request's head to its answer, by route.
    pub http_latency: HistogramVec,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Times the connection cap (`server.max_connections`) was reached.
    pub connection_cap_reached: IntCounter,
    /// Price-list look-ups in the answer cache, by outcome (`hit`, `miss`).
    pub answer_cache: IntCounterVec,
    /// Answers the cache holds now.
    pub answer_cache_entries: IntGauge,
    /// Upstream calls a plugin made, by BILLmanager function and outcome (`answered`,
    /// `not_allowed`, `not_sent`, `in_doubt`).
    pub upstream_calls: IntCounterVec,
    /// Time an upstream call took, by function.
    pub upstream_latency: HistogramVec,
    /// Webhook deliveries to the billing system, by outcome (`delivered`, `failed`: it is
    /// tried again later).
    pub webhook_deliveries: IntCounterVec,
    /// Buy redirects, by outcome (`accepted`, `refused`) and reason (`module_mismatch`,
    /// `other_region` or none for an accepted Buy; why for a refused one: `not_sold`,
    /// `rate_limited`, `invalid:<parameter>`, …).
    pub buys: IntCounterVec,
    /// The partner's balance upstream when last read, in ten-thousandths, by currency.
    pub partner_balance_e4: IntGaugeVec,
    /// When the partner's balance was last read, in seconds since the Unix epoch.
    pub partner_balance_read_seconds: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Latency buckets from 100 µs to 30 s.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry.register(Box::new(c.clone())).expect("a new name");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(SECONDS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("a valid metric");
            registry.register(Box::new(h.clone())).expect("a new name");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid metric");
            registry.register(Box::new(g.clone())).expect("a new name");
            g
        };
        let http_requests = counters(
            "reseller_http_requests_total",
            "HTTP requests answered, by route and status.",
            &["route", "status"],
        );
        let http_latency = histogram(
            "reseller_http_request_duration_seconds",
            "Time from a request's head to its answer, by route.",
            &["route"],
        );
        let connections_open = gauge("reseller_connections_open", "Connections open now.");
        let connection_cap_reached = IntCounter::new(
            "reseller_connection_cap_reached_total",
            "Times the connection cap (server.max_connections) was reached.",
        )
        .expect("a valid metric");
        registry
            .register(Box::new(connection_cap_reached.clone()))
            .expect("a new name");
        let answer_cache = counters(
            "reseller_answer_cache_lookups_total",
            "Price-list look-ups in the answer cache, by outcome (hit, miss).",
            &["outcome"],
        );
        let answer_cache_entries = gauge(
            "reseller_answer_cache_entries",
            "Rendered price lists the answer cache holds now.",
        );
        let upstream_calls = counters(
            "reseller_upstream_calls_total",
            "Upstream calls a plugin made, by function and outcome.",
            &["function", "outcome"],
        );
        let upstream_latency = histogram(
            "reseller_upstream_call_duration_seconds",
            "Time an upstream call took, by function.",
            &["function"],
        );
        let webhook_deliveries = counters(
            "reseller_webhook_deliveries_total",
            "Webhook deliveries to the billing system, by outcome.",
            &["outcome"],
        );
        // Shown at 0 from the start, so that a rate over them is defined.
        for outcome in ["delivered", "failed"] {
            webhook_deliveries.with_label_values(&[outcome]);
        }
        let buys = counters(
            "reseller_buys_total",
            "Buy redirects from the panel, by outcome (accepted, refused) and reason.",
            &["outcome", "reason"],
        );
        buys.with_label_values(&["accepted", ""]);
        for outcome in ["hit", "miss"] {
            answer_cache.with_label_values(&[outcome]);
        }
        let partner_balance_e4 = IntGaugeVec::new(
            Opts::new(
                "reseller_partner_balance_e4",
                "The partner's balance upstream when last read, in ten-thousandths, by currency.",
            ),
            &["currency"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(partner_balance_e4.clone()))
            .expect("a new name");
        let partner_balance_read_seconds = gauge(
            "reseller_partner_balance_read_seconds",
            "When the partner's balance was last read, in seconds since the Unix epoch.",
        );
        Metrics {
            registry,
            http_requests,
            http_latency,
            connections_open,
            connection_cap_reached,
            answer_cache,
            answer_cache_entries,
            upstream_calls,
            upstream_latency,
            webhook_deliveries,
            buys,
            partner_balance_e4,
            partner_balance_read_seconds,
        }
    }

    /// Records an answered HTTP request.
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_latency
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// Records an upstream call of `function` and its outcome.
    pub fn upstream_call(&self, function: &str, outcome: &str, took: Duration) {
        self.upstream_calls
            .with_label_values(&[function, outcome])
            .inc();
        self.upstream_latency
            .with_label_values(&[function])
            .observe(took.as_secs_f64());
    }

    /// Records a webhook delivery's outcome (`delivered`, `failed`).
    pub fn webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries.with_label_values(&[outcome]).inc();
    }

    /// Records the partner's balance as just read upstream.
    pub fn partner_balance(&self, balance: &crate::money::Money, read_at_unix_seconds: i64) {
        self.partner_balance_e4
            .with_label_values(&[balance.currency.as_str()])
            .set(balance.amount.units());
        self.partner_balance_read_seconds.set(read_at_unix_seconds);
    }

    /// Everything in the text format: what was recorded, the counters of the plugin (and
    /// policy) in force, and `orders` (orders by state) when given.
    pub fn render(
        &self,
        components: &[ComponentCounters<'_>],
        orders: Option<&[(String, i64)]>,
    ) -> String {
        let scraped = Registry::new();
        let calls = IntCounterVec::new(
            Opts::new(
                "reseller_plugin_calls_total",
                "Calls into the loaded plugin and policy, by component and outcome (ok, fault); \
                 they restart when a plugin is loaded.",
            ),
            &["component", "name", "outcome"],
        )
        .expect("a valid metric");
        let hits = IntCounterVec::new(
            Opts::new(
                "reseller_plugin_limit_hits_total",
                "Calls into the loaded plugin and policy that hit a limit, by component and limit.",
            ),
            &["component", "name", "limit"],
        )
        .expect("a valid metric");
        for c in components {
            let (component, name) = (c.component, c.name);
            calls
                .with_label_values(&[component, name, "ok"])
                .inc_by(c.calls.saturating_sub(c.faults));
            calls
                .with_label_values(&[component, name, "fault"])
                .inc_by(c.faults);
            for (limit, n) in &c.limit_hits {
                hits.with_label_values(&[component, name, limit.key()])
                    .inc_by(*n);
            }
        }
        let _ = scraped.register(Box::new(calls));
        let _ = scraped.register(Box::new(hits));
        if let Some(orders) = orders {
            let gauge = IntGaugeVec::new(
                Opts::new("reseller_orders", "Orders in the database, by state."),
                &["state"],
            )
            .expect("a valid metric");
            for (state, count) in orders {
                gauge.with_label_values(&[state]).set(*count);
            }
            let _ = scraped.register(Box::new(gauge));
        }
        let mut families = self.registry.gather();
        families.extend(scraped.gather());
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a malformed family, which the checks above rule out.
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!("encoding the metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
