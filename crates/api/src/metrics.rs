//! Prometheus metrics, one registry per application (so tests that start several servers in
//! one process do not share counters).

use axum::http::StatusCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub graphql_errors: IntCounterVec,
    /// Requests refused by a rate limit, by limit.
    pub rate_limited: IntCounterVec,
    /// The hot path's series, resolved once: a label lookup hashes its labels every time.
    graphql_ok: IntCounter,
    graphql_duration: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("taxbridge".into()), None)
            .unwrap_or_else(|_| unreachable!("a fixed, valid prefix"));
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let graphql_errors = IntCounterVec::new(
            Opts::new("graphql_errors_total", "GraphQL errors by extensions.code"),
            &["code"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused with RATE_LIMITED, by limit",
            ),
            &["limit"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(graphql_errors.clone()),
            Box::new(rate_limited.clone()),
        ] {
            registry
                .register(collector)
                .unwrap_or_else(|_| unreachable!("each metric is registered once"));
        }
        Self {
            graphql_ok: http_requests.with_label_values(&["/graphql", "200"]),
            graphql_duration: http_duration.with_label_values(&["/graphql"]),
            registry,
            http_requests,
            http_duration,
            graphql_errors,
            rate_limited,
        }
    }

    pub fn observe(&self, route: &str, status: StatusCode, took: Duration) {
        let seconds = took.as_secs_f64();
        if route == "/graphql" {
            self.graphql_duration.observe(seconds);
            if status == StatusCode::OK {
                self.graphql_ok.inc();
                return;
            }
        } else {
            self.http_duration
                .with_label_values(&[route])
                .observe(seconds);
        }
        self.http_requests
            .with_label_values(&[route, status.as_str()])
            .inc();
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
